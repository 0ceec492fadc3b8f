//! Many associations behind one socket: the stateless cookie gate (RFC 6347 §4.2.1), the
//! association table keyed by peer address, and the limits that keep a flood of new
//! handshakes from starving established peers.
//!
//! # Call order (sans-IO contract)
//!
//! ```text
//! loop {
//!     datagram from socket  -> endpoint.handle_datagram(now, peer, &bytes)
//!     timer fired           -> endpoint.handle_timeout(now)
//!     then drain:              endpoint.poll_transmit()  -> send to transmit.destination
//!                              endpoint.poll_event()     -> (peer, Event)
//!     sleep until              endpoint.poll_timeout()
//! }
//! ```

use crate::codec::Codec;
use crate::codec::HandshakeType;
use crate::config::{ClientConfig, ServerConfig};
use crate::connection::Connection;
use crate::crypto::SeededRng;
use crate::dtls13::msgs::{ClientHello13, message_hash, transcript_bytes_13};
use crate::error::{ConfigError, UsageError};
use crate::gate::cookie::{ClientHelloView, SharedCookieKeys};
use crate::gate::{ClientHelloRecord, FirstRecord, Gate, MAX_ANSWER_LEN, Proof, Verdict};
use crate::msgs::ClientHello;
use crate::resumption::{FetchedSession, Session};
use crate::types::Event;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

pub use crate::gate::cookie13_config;
pub use crate::types::Transmit;

/// What the layers in front of an endpoint learned about one datagram, handed in with it
/// ([`Endpoint::handle_datagram_with`]): the engine never waits on a store or a clock of its
/// own (DESIGN principle 2), so whatever needs an asynchronous look-up arrives here as a plain
/// input.
#[derive(Debug, Default, Clone)]
#[non_exhaustive]
pub struct DatagramMeta {
    /// The round trip a stateless cookie gate in front measured for this peer: from issuing
    /// the cookie to receiving it back in this ClientHello.
    pub cookie_rtt: Option<std::time::Duration>,

    /// Sessions a resumption layer fetched for what this ClientHello offers
    /// ([`offered_sessions`](crate::offered_sessions)): DTLS 1.2 session IDs and
    /// DTLS 1.3 tickets, looked at before the in-process
    /// [`ServerConfig::session_store`]. Only a ClientHello that creates an association uses
    /// them; 0-RTT is accepted only with a ticket [taken](FetchedSession::taken) from the store
    /// (RFC 8446 §8.1).
    pub sessions: Vec<FetchedSession>,
}

impl DatagramMeta {
    /// Nothing learned.
    pub fn new() -> Self {
        Self::default()
    }

    /// With `sessions` handed in (see [`DatagramMeta::sessions`]).
    pub fn with_sessions(mut self, sessions: Vec<FetchedSession>) -> Self {
        self.sessions = sessions;
        self
    }
}

/// Endpoint-level counters (per-connection ones are in [`crate::Stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Datagrams handled.
    pub datagrams_received: u64,
    /// HelloVerifyRequests sent.
    pub hello_verify_requests: u64,
    /// ClientHellos whose cookie did not verify (stale, forged, or for another address).
    pub cookies_rejected: u64,
    /// Datagrams from unknown peers that were not a usable ClientHello.
    pub dropped_unknown_peer: u64,
    /// New handshakes refused because a limit was reached.
    pub dropped_limit: u64,
    /// Associations created.
    pub connections_created: u64,
    /// Stateless DTLS 1.3 HelloRetryRequests sent (RFC 9147 §5.1).
    pub hello_retry_requests: u64,
    /// ClientHello fragments taken into the reassembly area.
    pub hello_fragments: u64,
    /// ClientHello fragments refused by the reassembly area (too long, inconsistent, or
    /// reassembly off).
    pub hello_fragments_refused: u64,
    /// ClientHellos reassembled and handed to the cookie gate.
    pub hellos_reassembled: u64,
    /// Partial ClientHellos dropped to stay within the limits, or expired.
    pub hellos_evicted: u64,
}

/// A DTLS endpoint: a server accepting many peers, a client connecting to some, or both.
pub struct Endpoint {
    server: Option<Arc<ServerConfig>>,
    /// The stateless cookie gate and the fragmented-ClientHello area (servers only): the same
    /// [`Gate`] a gate in front runs, sharing its DTLS 1.3 secrets when behind one
    /// ([`Endpoint::server_behind_gate`]).
    gate: Option<Gate>,
    connections: HashMap<SocketAddr, Connection>,
    rng: SeededRng,
    transmits: VecDeque<Transmit>,
    events: VecDeque<(SocketAddr, Event)>,
    stats: EndpointStats,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("server", &self.server.is_some())
            .field("connections", &self.connections.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// A server endpoint. `rng` seeds every association and the cookie secret.
    pub fn server(config: Arc<ServerConfig>, mut rng: SeededRng, now: Instant) -> Self {
        let gate = Some(Gate::new(config.clone(), now, &mut rng));
        Self {
            server: Some(config),
            gate,
            connections: HashMap::new(),
            rng,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: EndpointStats::default(),
        }
    }

    /// A server endpoint behind a stateless gate (such as the Tower cookie layer) that shares
    /// its DTLS 1.3 cookie secrets `cookies13`: a second ClientHello that passed the gate
    /// carries a cookie sealed with them, from which the endpoint rebuilds the transcript
    /// (`message_hash(ClientHello1) || HelloRetryRequest`, RFC 8446 §4.4.1). Make them with
    /// [`cookie13_config`] so they outlive the client's retransmission budget.
    ///
    /// A DTLS 1.3 ClientHello without a valid cookie never gets an association here, even with
    /// [`ServerConfig::cookie`] `None` (which only switches the endpoint's own DTLS 1.2 cookie
    /// exchange off, the gate having run it): it is answered with a stateless
    /// HelloRetryRequest, so a spoofed 1.3 ClientHello that bypassed the gate creates no state.
    pub fn server_behind_gate(
        config: Arc<ServerConfig>,
        rng: SeededRng,
        now: Instant,
        cookies13: SharedCookieKeys,
    ) -> Self {
        let mut e = Self::server(config, rng, now);
        if let Some(g) = e.gate.as_mut() {
            g.behind(cookies13);
        }
        e
    }

    /// The endpoint's stateless cookie gate (servers only): its counters, its DTLS 1.3 secrets.
    pub fn gate(&self) -> Option<&Gate> {
        self.gate.as_ref()
    }

    /// A client-only endpoint.
    pub fn client(rng: SeededRng) -> Self {
        Self {
            server: None,
            gate: None,
            connections: HashMap::new(),
            rng,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: EndpointStats::default(),
        }
    }

    /// Starts a handshake with `peer`. See [`Connection::client`].
    pub fn connect(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        config: Arc<ClientConfig>,
        server_name: &str,
        resume: Option<Session>,
    ) -> Result<(), ConfigError> {
        let conn = Connection::client(config, peer, server_name, resume, self.rng.fork(), now)?;
        self.connections.insert(peer, conn);
        self.stats.connections_created += 1;
        self.collect(peer);
        Ok(())
    }

    /// Starts a DTLS 1.3 resumption that sends `early_data` as 0-RTT data. See
    /// [`Connection::client_with_early_data`].
    pub fn connect_with_early_data(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        config: Arc<ClientConfig>,
        server_name: &str,
        resume: Option<Session>,
        early_data: &[u8],
    ) -> Result<(), ConfigError> {
        let conn =
            Connection::client_with_early_data(config, peer, server_name, resume, early_data, self.rng.fork(), now)?;
        self.connections.insert(peer, conn);
        self.stats.connections_created += 1;
        self.collect(peer);
        Ok(())
    }

    /// Sends one more record of 0-RTT data to `peer`. See [`Connection::send_early_data`].
    pub fn send_early_data(&mut self, peer: SocketAddr, data: &[u8]) -> Result<(), UsageError> {
        let conn = self.connections.get_mut(&peer).ok_or(UsageError::NotConnected)?;
        conn.send_early_data(data)?;
        self.collect(peer);
        Ok(())
    }

    /// Processes one datagram from `peer`.
    pub fn handle_datagram(&mut self, now: Instant, peer: SocketAddr, datagram: &[u8]) {
        self.handle_datagram_with(now, peer, datagram, DatagramMeta::default());
    }

    /// Processes one datagram from `peer` with what the layers in front learned about it
    /// (see [`DatagramMeta`]).
    pub fn handle_datagram_with(&mut self, now: Instant, peer: SocketAddr, datagram: &[u8], meta: DatagramMeta) {
        self.stats.datagrams_received += 1;
        // The datagram's first record is split and its handshake header read once, here.
        let first = FirstRecord::parse(datagram);
        if first == FirstRecord::ClientHelloFragment && self.gate.as_ref().is_some_and(Gate::reassembles) {
            // A retransmission of the ClientHello that created the association is its business
            // (it triggers our flight's retransmission), as an unfragmented one would be.
            if let Some(conn) = self.connections.get_mut(&peer) {
                conn.handle_datagram(now, datagram);
                self.collect(peer);
            }
            if let Some(hello) = self.reassemble_hello(now, peer, datagram) {
                self.handle_hello_or_other(now, peer, &hello, FirstRecord::parse(&hello), true, meta);
            }
            return;
        }
        self.handle_hello_or_other(now, peer, datagram, first, false, meta);
    }

    /// Takes the ClientHello fragments of `datagram` into the gate's reassembly area (see
    /// [`Gate::reassemble`]). Nothing of it reaches an association or a cookie check before it
    /// is whole.
    fn reassemble_hello(&mut self, now: Instant, peer: SocketAddr, datagram: &[u8]) -> Option<Vec<u8>> {
        let r = self.gate.as_ref()?.reassemble(now, peer, datagram);
        self.stats.hello_fragments += r.fragments_taken;
        self.stats.hello_fragments_refused += r.fragments_refused;
        self.stats.hellos_evicted += r.evicted;
        if r.hello.is_some() {
            self.stats.hellos_reassembled += 1;
        }
        r.hello
    }

    /// A datagram from `peer`, possibly a ClientHello (`reassembled` when it was rebuilt from
    /// fragments that the peer's association, if any, has already seen).
    fn handle_hello_or_other(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        datagram: &[u8],
        first: FirstRecord<'_>,
        reassembled: bool,
        meta: DatagramMeta,
    ) {
        let existing = self.connections.get(&peer);
        let starts_with_ch = first.client_hello().copied();
        let route_to_existing = match (existing, &starts_with_ch) {
            (None, _) => false,
            (Some(_), None) => true,
            // A retransmission (or network duplicate) of the ClientHello that created this
            // association goes to it: it triggers our flight's retransmission. Any other one
            // (a new handshake on the same 5-tuple, RFC 6347 §4.2.8, or the same client
            // answering a fresh cookie) must pass the cookie gate, and then replaces the old
            // association: the latest proven ClientHello wins. A cookie-less duplicate of the
            // first ClientHello of the same handshake also goes to the association, so it does
            // not draw a fresh cookie that would restart the client. Once established, no
            // ClientHello with the association's own random replaces it: the cookie binds
            // neither the extensions nor the record, so an altered replay of the cookie-bearing
            // ClientHello still verifies within the cookie lifetime, yet shows no reachability
            // (RFC 6347 §4.2.8); a client really starting over sends a fresh random.
            (Some(c), Some(hello)) => {
                c.is_same_client_hello(hello.body)
                    || ClientHelloView::parse(hello.body).is_ok_and(|v| {
                        v.params.random == c.client_random() && (v.cookie.is_empty() || c.is_established())
                    })
            }
        };
        if route_to_existing {
            if reassembled {
                return;
            }
            if let Some(conn) = self.connections.get_mut(&peer) {
                conn.handle_datagram(now, datagram);
            }
            self.collect(peer);
            return;
        }
        let Some(server) = self.server.clone() else {
            self.stats.dropped_unknown_peer += 1;
            return;
        };
        let (Some(hello), Some(gate)) = (starts_with_ch, self.gate.as_ref()) else {
            self.stats.dropped_unknown_peer += 1;
            return;
        };
        let mut buf = [0u8; MAX_ANSWER_LEN];
        match gate.check_hello_with(now, peer, &hello, &meta.sessions, &mut buf, &mut self.rng) {
            Verdict::HelloVerifyRequest { len, rejected } => {
                self.stats.cookies_rejected += u64::from(rejected);
                self.stats.hello_verify_requests += 1;
                self.transmits.push_back(Transmit { destination: peer, payload: buf[..len].to_vec() });
            }
            Verdict::HelloRetryRequest { len, rejected } => {
                self.stats.cookies_rejected += u64::from(rejected);
                self.stats.hello_retry_requests += 1;
                self.transmits.push_back(Transmit { destination: peer, payload: buf[..len].to_vec() });
            }
            Verdict::Alert { len, .. } => {
                self.stats.dropped_unknown_peer += 1;
                self.transmits.push_back(Transmit { destination: peer, payload: buf[..len].to_vec() });
            }
            Verdict::Proven(proof) if proof.is_dtls13() => {
                self.accept13(now, peer, server, &hello, proof, meta);
            }
            Verdict::Proven(proof) => {
                let handshaking = self.connections.values().filter(|c| c.is_handshaking()).count();
                if handshaking >= server.max_handshakes
                    || (self.connections.len() >= server.max_connections && !self.connections.contains_key(&peer))
                {
                    self.stats.dropped_limit += 1;
                    return;
                }
                let Ok(ch) = ClientHello::read_exact(hello.body) else {
                    self.stats.dropped_unknown_peer += 1;
                    return;
                };
                let (rec, hdr) = (hello.record, hello.handshake);
                // A gate in front measured the cookie exchange from its own clock; else ours did.
                let cookie_rtt = meta.cookie_rtt.or(proof.rtt_sample());
                let rng = self.rng.fork();
                let conn = Connection::server12(
                    server,
                    peer,
                    ch,
                    hdr.message_seq,
                    rec.sequence_number,
                    rng,
                    now,
                    cookie_rtt,
                    &meta.sessions,
                );
                self.connections.insert(peer, conn);
                self.stats.connections_created += 1;
                self.collect(peer);
            }
            Verdict::Drop | Verdict::NotClientHello | Verdict::Fragment => self.stats.dropped_unknown_peer += 1,
        }
    }

    /// A DTLS 1.3 ClientHello the gate let through: the association's transcript starts with
    /// `message_hash(ClientHello1) || HelloRetryRequest` when a cookie proved the address
    /// (RFC 8446 §4.4.1), and is empty otherwise.
    fn accept13(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        server: Arc<ServerConfig>,
        hello: &ClientHelloRecord<'_>,
        proof: Proof,
        meta: DatagramMeta,
    ) {
        // Sessions a layer in front fetched for this ClientHello (DESIGN: the engine never awaits).
        let fetched = &meta.sessions[..];
        // A gate in front measured the cookie exchange from its own clock; else ours did.
        let cookie_rtt = meta.cookie_rtt.or(proof.rtt_sample());
        let (rec, hdr, body, datagram) = (hello.record, hello.handshake, hello.body, hello.datagram);
        // The full decoding waits until the address is proven: the gate's view borrowed.
        let Ok(ch13) = ClientHello13::read_exact(body) else {
            self.stats.dropped_unknown_peer += 1;
            return;
        };
        let prefix = match proof {
            // RFC 9147 §5.11: an existing association goes only once the client shows
            // reachability. The 1.3 cookie does not bind the random, so a cookie issued before
            // the association's last activity is an (altered) replay: it proves nothing.
            Proof::Cookie13 { info, .. }
                if self
                    .connections
                    .get(&peer)
                    .is_some_and(|c| now.checked_sub(info.age).is_none_or(|issued| issued <= c.last_activity())) =>
            {
                self.stats.cookies_rejected += 1;
                let mut buf = [0u8; MAX_ANSWER_LEN];
                let Some(gate) = self.gate.as_ref() else { return };
                if let Some(n) = gate.hello_retry_request(now, peer, hello, fetched, &mut buf, &mut self.rng) {
                    self.stats.hello_retry_requests += 1;
                    self.transmits.push_back(Transmit { destination: peer, payload: buf[..n].to_vec() });
                }
                return;
            }
            Proof::Cookie13 { state, .. } => {
                let Some(cookie) = ch13.cookie() else { return };
                let mut prefix = Vec::new();
                message_hash(&state.client_hello1_hash, &mut prefix);
                let hrr = crate::dtls13::server::hello_retry_request(&state, cookie);
                transcript_bytes_13(HandshakeType::ServerHello, &hrr, &mut prefix);
                prefix
            }
            Proof::Cookie12(_) | Proof::NotRequired { .. } | Proof::ZeroRttResumption => Vec::new(),
        };
        let handshaking = self.connections.values().filter(|c| c.is_handshaking()).count();
        if handshaking >= server.max_handshakes
            || (self.connections.len() >= server.max_connections && !self.connections.contains_key(&peer))
        {
            self.stats.dropped_limit += 1;
            return;
        }
        let mut c = crate::dtls13::conn::Conn13::server(
            server,
            peer,
            ch13,
            body,
            hdr.message_seq,
            rec.sequence_number,
            prefix,
            self.rng.fork(),
            now,
            cookie_rtt,
            fetched,
        );
        // 0-RTT records packed behind the ClientHello (RFC 8446 §4.2.10).
        c.handle_rest_of_first_datagram(now, datagram);
        self.connections.insert(peer, Connection::from13(c));
        self.stats.connections_created += 1;
        self.collect(peer);
    }

    /// Partial ClientHellos in the reassembly area and the bytes they hold (never more than
    /// [`HelloReassemblyConfig`](crate::handshake::reassembly::HelloReassemblyConfig) allows).
    pub fn hello_reassembly_usage(&self) -> (usize, usize) {
        self.gate.as_ref().map_or((0, 0), Gate::hello_reassembly_usage)
    }

    /// Drives every association's timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(gate) = self.gate.as_ref() {
            self.stats.hellos_evicted += gate.expire(now);
        }
        let due: Vec<SocketAddr> = self
            .connections
            .iter()
            .filter(|(_, c)| c.poll_timeout().is_some_and(|t| t <= now))
            .map(|(a, _)| *a)
            .collect();
        for peer in due {
            if let Some(c) = self.connections.get_mut(&peer) {
                c.handle_timeout(now);
            }
            self.collect(peer);
        }
    }

    /// The earliest timer of any association.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.connections.values().filter_map(|c| c.poll_timeout()).min()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event, with the peer it concerns.
    pub fn poll_event(&mut self) -> Option<(SocketAddr, Event)> {
        self.events.pop_front()
    }

    /// Sends application data to an established peer.
    pub fn send(&mut self, peer: SocketAddr, data: &[u8]) -> Result<(), UsageError> {
        let conn = self.connections.get_mut(&peer).ok_or(UsageError::NotConnected)?;
        conn.send(data)?;
        self.collect(peer);
        Ok(())
    }

    /// Starts a DTLS 1.3 KeyUpdate with `peer` (see [`Connection::key_update`]).
    pub fn key_update(&mut self, now: Instant, peer: SocketAddr) -> Result<(), UsageError> {
        let conn = self.connections.get_mut(&peer).ok_or(UsageError::NotConnected)?;
        conn.key_update(now)?;
        self.collect(peer);
        Ok(())
    }

    /// Sends close_notify to `peer` and forgets the association.
    pub fn close(&mut self, peer: SocketAddr) {
        if let Some(c) = self.connections.get_mut(&peer) {
            c.close();
        }
        self.collect(peer);
    }

    /// Sends close_notify to every peer (graceful shutdown).
    pub fn close_all(&mut self) {
        let peers: Vec<SocketAddr> = self.connections.keys().copied().collect();
        for p in peers {
            self.close(p);
        }
    }

    /// Forgets associations idle since before `idle_since` (no close_notify: the peer is gone).
    pub fn expire_idle(&mut self, idle_since: Instant) -> usize {
        let before = self.connections.len();
        self.connections.retain(|_, c| c.last_activity() >= idle_since);
        before - self.connections.len()
    }

    /// The association with `peer`.
    pub fn connection(&self, peer: &SocketAddr) -> Option<&Connection> {
        self.connections.get(peer)
    }

    /// Number of associations (established or handshaking).
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Counters.
    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    fn collect(&mut self, peer: SocketAddr) {
        let Some(conn) = self.connections.get_mut(&peer) else { return };
        while let Some(payload) = conn.poll_transmit() {
            self.transmits.push_back(Transmit { destination: peer, payload });
        }
        while let Some(ev) = conn.poll_event() {
            self.events.push_back((peer, ev));
        }
        if conn.is_closed() {
            self.connections.remove(&peer);
        }
    }
}
