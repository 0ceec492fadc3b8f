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

mod cid_index;
mod limits;
pub(crate) use limits::NO_SLOT;
mod path_check;
use limits::{Eviction, Limits, Refusal, Timers};

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
    /// New handshakes refused because a limit was reached (the sum of the `refused_*`
    /// counters).
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
    /// Associations that moved to a new peer address on a CID record (RFC 9146 §6).
    pub address_changes: u64,
    /// CID records from another address that did not move their association: not
    /// authenticated, not newer than every record before (replayed or reordered), or the new
    /// address already taken.
    pub address_changes_refused: u64,
    /// Datagrams not sent to a moved association's unchecked new address, over its
    /// amplification budget.
    pub amplification_dropped: u64,
    /// RFC 9853 `path_challenge` messages sent to moved associations' new addresses.
    pub path_challenges_sent: u64,
    /// New addresses shown to be the peer's by a matching `path_response` (RFC 9853 §5.1).
    pub paths_validated: u64,
    /// Return routability checks that ran out of time: the association went back to its last
    /// checked address.
    pub path_checks_failed: u64,
    /// Enhanced checks (RFC 9853 §5.2) that the old address answered: the association stayed
    /// there (went back).
    pub old_paths_kept: u64,
    /// `path_response` / `path_drop` messages silently discarded: no check under way, a
    /// wrong cookie, or from another address (RFC 9853 §5.4).
    pub rrc_discarded: u64,
    /// Proven ClientHellos refused: their source address already holds
    /// [`QuotaConfig::max_half_open_per_address`](crate::QuotaConfig::max_half_open_per_address) half-open handshakes.
    pub refused_half_open_per_address: u64,
    /// Proven ClientHellos refused: their /24 or /56 prefix already holds
    /// [`QuotaConfig::max_half_open_per_prefix`](crate::QuotaConfig::max_half_open_per_prefix) half-open handshakes.
    pub refused_half_open_per_prefix: u64,
    /// Proven ClientHellos refused: their source address already holds
    /// [`QuotaConfig::max_associations_per_address`](crate::QuotaConfig::max_associations_per_address) associations.
    pub refused_associations_per_address: u64,
    /// Completed handshakes closed: their identity already holds
    /// [`QuotaConfig::max_associations_per_identity`](crate::QuotaConfig::max_associations_per_identity) associations.
    pub refused_associations_per_identity: u64,
    /// Proven ClientHellos refused: the table was full and no association had been idle for
    /// [`QuotaConfig::min_idle_to_evict`](crate::QuotaConfig::min_idle_to_evict) (or a limit is zero).
    pub refused_table_full: u64,
    /// Oldest half-open handshakes evicted for a new one at [`ServerConfig::max_handshakes`].
    pub evicted_half_open: u64,
    /// Least-recently-active idle associations evicted for a new handshake at
    /// [`ServerConfig::max_connections`].
    pub evicted_idle: u64,
    /// Half-open handshakes forgotten after [`QuotaConfig::half_open_lifetime`](crate::QuotaConfig::half_open_lifetime).
    pub expired_half_open: u64,
    /// Flight retransmissions of DTLS 1.2 associations (RFC 6347 §4.2.4), summed over every
    /// association the endpoint held ([`crate::Stats::retransmissions`] of each).
    pub retransmissions_dtls12: u64,
    /// Flight retransmissions of DTLS 1.3 associations (RFC 9147 §5.8), likewise.
    pub retransmissions_dtls13: u64,
}

/// Totals over several endpoints (e.g. one per thread).
impl std::ops::AddAssign for EndpointStats {
    fn add_assign(&mut self, o: Self) {
        // Destructured without `..`: a new counter must be added here too.
        let EndpointStats {
            datagrams_received,
            hello_verify_requests,
            cookies_rejected,
            dropped_unknown_peer,
            dropped_limit,
            connections_created,
            hello_retry_requests,
            hello_fragments,
            hello_fragments_refused,
            hellos_reassembled,
            hellos_evicted,
            address_changes,
            address_changes_refused,
            amplification_dropped,
            refused_half_open_per_address,
            refused_half_open_per_prefix,
            refused_associations_per_address,
            refused_associations_per_identity,
            refused_table_full,
            evicted_half_open,
            evicted_idle,
            expired_half_open,
            retransmissions_dtls12,
            retransmissions_dtls13,
            path_challenges_sent,
            paths_validated,
            path_checks_failed,
            old_paths_kept,
            rrc_discarded,
        } = o;
        self.datagrams_received += datagrams_received;
        self.hello_verify_requests += hello_verify_requests;
        self.cookies_rejected += cookies_rejected;
        self.dropped_unknown_peer += dropped_unknown_peer;
        self.dropped_limit += dropped_limit;
        self.connections_created += connections_created;
        self.hello_retry_requests += hello_retry_requests;
        self.hello_fragments += hello_fragments;
        self.hello_fragments_refused += hello_fragments_refused;
        self.hellos_reassembled += hellos_reassembled;
        self.hellos_evicted += hellos_evicted;
        self.address_changes += address_changes;
        self.address_changes_refused += address_changes_refused;
        self.amplification_dropped += amplification_dropped;
        self.refused_half_open_per_address += refused_half_open_per_address;
        self.refused_half_open_per_prefix += refused_half_open_per_prefix;
        self.refused_associations_per_address += refused_associations_per_address;
        self.refused_associations_per_identity += refused_associations_per_identity;
        self.refused_table_full += refused_table_full;
        self.evicted_half_open += evicted_half_open;
        self.evicted_idle += evicted_idle;
        self.expired_half_open += expired_half_open;
        self.retransmissions_dtls12 += retransmissions_dtls12;
        self.retransmissions_dtls13 += retransmissions_dtls13;
        self.path_challenges_sent += path_challenges_sent;
        self.paths_validated += paths_validated;
        self.path_checks_failed += path_checks_failed;
        self.old_paths_kept += old_paths_kept;
        self.rrc_discarded += rrc_discarded;
    }
}

impl std::iter::Sum for EndpointStats {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), |mut a, b| {
            a += b;
            a
        })
    }
}

/// A DTLS endpoint: a server accepting many peers, a client connecting to some, or both.
pub struct Endpoint {
    server: Option<Arc<ServerConfig>>,
    /// The stateless cookie gate and the fragmented-ClientHello area (servers only): the same
    /// [`Gate`] a gate in front runs, sharing its DTLS 1.3 secrets when behind one
    /// ([`Endpoint::server_behind_gate`]).
    gate: Option<Gate>,
    connections: HashMap<SocketAddr, Connection>,
    /// CID-first demultiplexing (RFC 9146 §6).
    cids: cid_index::CidIndex,
    /// Return routability checks under way (RFC 9853).
    paths: path_check::PathChecks,
    /// Who holds the table (servers only): quotas and eviction order without scans.
    limits: Option<Limits>,
    /// Every association's next timer, in deadline order.
    timers: Timers,
    /// The latest time handed in, for the bookkeeping of paths that get no `now`.
    now: Instant,
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
        let limits = Some(Limits::new(config.quotas, config.max_connections, config.max_handshakes, now));
        Self {
            server: Some(config),
            gate,
            connections: HashMap::new(),
            cids: Default::default(),
            paths: Default::default(),
            limits,
            timers: Timers::default(),
            now,
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
            cids: Default::default(),
            paths: Default::default(),
            limits: None,
            timers: Timers::default(),
            now: Instant::now(),
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
        self.forget(peer);
        self.now = self.now.max(now);
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
        self.forget(peer);
        self.now = self.now.max(now);
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
        self.now = self.now.max(now);
        if let Some(home) = self.cid_home(peer, datagram) {
            return self.handle_cid_datagram(now, home, peer, datagram);
        }
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
                if let Some(l) = self.limits.as_mut() {
                    l.touch(now, conn.quota_slot, &peer);
                }
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
                let Ok(ch) = ClientHello::read_exact(hello.body) else {
                    self.stats.dropped_unknown_peer += 1;
                    return;
                };
                let Some(slot) = self.admit(now, peer) else { return };
                let (rec, hdr) = (hello.record, hello.handshake);
                // A gate in front measured the cookie exchange from its own clock; else ours did.
                let cookie_rtt = meta.cookie_rtt.or(proof.rtt_sample());
                let rng = self.rng.fork();
                let mut conn = Connection::server12(
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
                conn.quota_slot = slot;
                self.unindex_cid(peer);
                for cid in conn.issued_cids() {
                    self.cids.insert(&cid, peer);
                }
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
        let Some(slot) = self.admit(now, peer) else { return };
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
        self.unindex_cid(peer);
        let mut conn = Connection::from13(c);
        conn.quota_slot = slot;
        self.connections.insert(peer, conn);
        self.stats.connections_created += 1;
        self.collect(peer);
    }

    /// Makes room for a new server association with `peer` under the quotas
    /// ([`ServerConfig::quotas`]), forgetting what the bookkeeping evicts. A proven ClientHello
    /// from a peer that has an association starts over (RFC 6347 §4.2.8): the old one goes
    /// whatever the answer. The new association's bookkeeping slot, or `None` when refused
    /// (counted).
    fn admit(&mut self, now: Instant, peer: SocketAddr) -> Option<u32> {
        self.forget(peer);
        let Some(limits) = self.limits.as_mut() else { return Some(NO_SLOT) };
        let mut evicted = Vec::new();
        let verdict = limits.admit(now, peer, self.connections.len(), &mut evicted);
        for (victim, why) in evicted {
            match why {
                Eviction::HalfOpenPressure => self.stats.evicted_half_open += 1,
                Eviction::HalfOpenExpired => self.stats.expired_half_open += 1,
                Eviction::IdleTableFull => self.stats.evicted_idle += 1,
            }
            // Its CIDs leave the index with it, or the index would keep growing with stale ones.
            self.unindex_cid(victim);
            self.connections.remove(&victim);
            self.timers.set(victim, None);
        }
        match verdict {
            Ok(slot) => Some(slot),
            Err(why) => {
                self.count_refusal(why);
                None
            }
        }
    }

    fn count_refusal(&mut self, why: Refusal) {
        self.stats.dropped_limit += 1;
        let s = &mut self.stats;
        *match why {
            Refusal::HalfOpenPerAddress => &mut s.refused_half_open_per_address,
            Refusal::HalfOpenPerPrefix => &mut s.refused_half_open_per_prefix,
            Refusal::AssociationsPerAddress => &mut s.refused_associations_per_address,
            Refusal::AssociationsPerIdentity => &mut s.refused_associations_per_identity,
            Refusal::TableFull | Refusal::Disabled => &mut s.refused_table_full,
        } += 1;
    }

    /// Forgets the association with `peer` and its bookkeeping (no alert).
    fn forget(&mut self, peer: SocketAddr) {
        self.unindex_cid(peer);
        if let Some(conn) = self.connections.remove(&peer) {
            self.timers.set(peer, None);
            if let Some(l) = self.limits.as_mut() {
                l.remove(conn.quota_slot, &peer);
            }
        }
    }

    /// Half-open handshakes tracked by the quotas (servers; `0` for a client endpoint).
    pub fn half_open_count(&self) -> usize {
        self.limits.as_ref().map_or(0, Limits::half_open)
    }

    /// Partial ClientHellos in the reassembly area and the bytes they hold (never more than
    /// [`HelloReassemblyConfig`](crate::handshake::reassembly::HelloReassemblyConfig) allows).
    pub fn hello_reassembly_usage(&self) -> (usize, usize) {
        self.gate.as_ref().map_or((0, 0), Gate::hello_reassembly_usage)
    }

    /// Drives every association's timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if let Some(gate) = self.gate.as_ref() {
            self.stats.hellos_evicted += gate.expire(now);
        }
        self.rrc_timeout(now);
        if let Some(l) = self.limits.as_mut() {
            let mut expired = Vec::new();
            l.expire(now, &mut expired);
            for (peer, _) in expired {
                self.stats.expired_half_open += 1;
                self.unindex_cid(peer);
                self.connections.remove(&peer);
                self.timers.set(peer, None);
            }
        }
        for peer in self.timers.take_due(now) {
            if let Some(c) = self.connections.get_mut(&peer) {
                c.handle_timeout(now);
            }
            self.collect(peer);
        }
    }

    /// The earliest timer of any association.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let quota = self.limits.as_ref().and_then(Limits::next_deadline);
        let quota = match (quota, self.paths.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (self.timers.first(), quota) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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

    /// DTLS 1.3: announces up to `count` new CIDs to `peer` and indexes them (see
    /// [`Connection::issue_connection_ids`]).
    pub fn issue_connection_ids(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        count: usize,
        immediate: bool,
    ) -> Result<usize, UsageError> {
        let conn = self.connections.get_mut(&peer).ok_or(UsageError::NotConnected)?;
        let n = conn.issue_connection_ids(now, count, immediate)?;
        self.collect(peer);
        Ok(n)
    }

    /// DTLS 1.3: asks `peer` for `num_cids` more CIDs (see
    /// [`Connection::request_connection_ids`]).
    pub fn request_connection_ids(&mut self, now: Instant, peer: SocketAddr, num_cids: u8) -> Result<(), UsageError> {
        let conn = self.connections.get_mut(&peer).ok_or(UsageError::NotConnected)?;
        conn.request_connection_ids(now, num_cids)?;
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
    ///
    /// On a server the bookkeeping's least-recently-active order finds them without a scan of
    /// the table (associations a server endpoint started with [`Endpoint::connect`] are not
    /// in it and do not expire here).
    pub fn expire_idle(&mut self, idle_since: Instant) -> usize {
        if let Some(l) = self.limits.as_mut() {
            let mut idle = Vec::new();
            l.idle_since(idle_since, &mut idle);
            for peer in &idle {
                self.unindex_cid(*peer);
                self.connections.remove(peer);
                self.timers.set(*peer, None);
            }
            return idle.len();
        }
        let idle: Vec<SocketAddr> =
            self.connections.iter().filter(|(_, c)| c.last_activity() < idle_since).map(|(a, _)| *a).collect();
        for peer in &idle {
            self.forget(*peer);
        }
        idle.len()
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
        let (mut s, r) = (self.stats, self.paths.counts);
        s.path_challenges_sent = r.path_challenges_sent;
        s.paths_validated = r.paths_validated;
        s.path_checks_failed = r.path_checks_failed;
        s.old_paths_kept = r.old_paths_kept;
        s.rrc_discarded = r.rrc_discarded;
        s.amplification_dropped += r.amplification_dropped;
        s
    }

    fn collect(&mut self, peer: SocketAddr) {
        let Some(conn) = self.connections.get_mut(&peer) else { return };
        if let Some(l) = self.limits.as_mut()
            && conn.is_established()
            && l.is_half_open(conn.quota_slot, &peer)
            && let Err(why) = l.established(self.now, conn.quota_slot, &peer, conn.peer_identity())
        {
            // Over its identity's quota: nothing of it reaches the application, the peer is told.
            while conn.poll_event().is_some() {}
            conn.close();
            self.count_refusal(why);
        }
        let Some(conn) = self.connections.get_mut(&peer) else { return };
        let retransmitted = conn.take_retransmissions();
        if retransmitted > 0 {
            if conn.version() == crate::ProtocolVersion::DTLS1_3 {
                self.stats.retransmissions_dtls13 += retransmitted;
            } else {
                self.stats.retransmissions_dtls12 += retransmitted;
            }
        }
        // DTLS 1.3 issues CIDs in the ServerHello and in NewConnectionId (RFC 9147 §9).
        for cid in conn.take_unindexed_cids() {
            self.cids.insert(&cid, peer);
        }
        while let Some(payload) = conn.poll_transmit() {
            // RFC 9146 §6: a moved association's new address gets no more than its budget
            // until the path is checked.
            if !self.cids.may_send(peer, payload.len()) {
                self.stats.amplification_dropped += 1;
                continue;
            }
            self.transmits.push_back(Transmit { destination: peer, payload });
        }
        while let Some(ev) = conn.poll_event() {
            self.events.push_back((peer, ev));
        }
        if conn.is_closed() {
            self.forget(peer);
        } else {
            self.timers.set(peer, conn.poll_timeout());
        }
    }

    /// The association at `peer` is about to be replaced: its CIDs go out of the index.
    fn unindex_cid(&mut self, peer: SocketAddr) {
        self.paths.remove(&peer);
        for cid in self.connections.get(&peer).map(Connection::issued_cids).unwrap_or_default() {
            self.cids.remove(&cid, peer);
        }
    }

    /// The address the association a CID record belongs to is filed under (RFC 9146 §4,
    /// RFC 9147 §4): the datagram's first record is a `tls12_cid` record or a DTLS 1.3
    /// record with the C bit, with a CID this server issued (both versions share the CID
    /// length and the index). The
    /// association at the source address comes first when it issued that CID too (a
    /// collision: the index keeps the first association with a CID).
    ///
    /// An entry whose association is gone or was replaced (removed by a path that did not
    /// update the index) is dropped here, so it never misroutes.
    fn cid_home(&mut self, peer: SocketAddr, datagram: &[u8]) -> Option<SocketAddr> {
        let len = self.server.as_ref()?.connection_id.as_ref()?.len;
        let cid = crate::record::first_record_cid(datagram, len)
            .or_else(|| crate::dtls13::record::first_record_cid13(datagram, len))?;
        if self.connections.get(&peer).is_some_and(|c| c.issues_cid(cid)) {
            return Some(peer);
        }
        let home = self.cids.lookup(cid)?;
        if !self.connections.get(&home).is_some_and(|c| c.issues_cid(cid)) {
            self.cids.remove(cid, home);
            return None;
        }
        Some(home)
    }

    /// A datagram whose CID names the association at `home`, from `peer` (RFC 9146 §6): the
    /// association takes it whatever its source; it moves to `peer` only if a record in it
    /// authenticated and was newer than any before, and the new address then gets at most
    /// [`cid_index::AMPLIFICATION_FACTOR`] times what came from it until a second such record
    /// arrives from there.
    fn handle_cid_datagram(&mut self, now: Instant, home: SocketAddr, peer: SocketAddr, datagram: &[u8]) {
        let Some(conn) = self.connections.get_mut(&home) else { return };
        conn.handle_datagram(now, datagram);
        let advanced = conn.last_datagram_advanced();
        // RFC 9853 §5.1: with RRC only a path_response checks the path.
        let rrc = conn.rrc_negotiated();
        if advanced && let Some(l) = self.limits.as_mut() {
            l.touch(now, conn.quota_slot, &home);
        }
        if home == peer {
            self.cids.heard_from(peer, datagram.len(), advanced && !rrc);
            self.rrc_answers(now, home, peer);
        } else if advanced && !self.connections.contains_key(&peer) {
            if let Some(mut conn) = self.connections.remove(&home) {
                conn.set_peer(peer);
                let cids = conn.issued_cids();
                let conn_slot = conn.quota_slot;
                self.connections.insert(peer, conn);
                self.timers.set(home, None);
                if let Some(l) = self.limits.as_mut() {
                    l.moved(conn_slot, &home, peer);
                }
                for cid in &cids {
                    self.cids.moved(cid, home, peer, datagram.len());
                }
                self.stats.address_changes += 1;
                self.events.push_back((peer, Event::AddressChanged { old: home }));
                self.rrc_answers(now, peer, peer);
                self.rrc_after_move(now, home, peer);
                self.collect(peer);
                return;
            }
        } else {
            self.stats.address_changes_refused += 1;
            self.rrc_answers(now, home, peer);
        }
        self.collect(home);
    }

    /// Whether `peer` is the new address of an association that moved there and has not yet
    /// shown it is the peer's (see [`EndpointStats::amplification_dropped`]).
    pub fn is_address_unchecked(&self, peer: &SocketAddr) -> bool {
        self.cids.is_unchecked(peer)
    }

    /// Connection IDs indexed for CID-first demultiplexing.
    pub fn cid_count(&self) -> usize {
        self.cids.len()
    }

    // --------------------------------------------------------------------------------------
    // RFC 9853 return routability checks: `path_check` decides, the table moves here.

    fn rrc_after_move(&mut self, now: Instant, old: SocketAddr, new: SocketAddr) {
        let config = self
            .server
            .as_ref()
            .and_then(|s| s.connection_id.as_ref())
            .and_then(|c| c.return_routability_check)
            .unwrap_or_default();
        let Some(conn) = self.connections.get_mut(&new) else { return };
        let io = path_check::Io { cids: &mut self.cids, transmits: &mut self.transmits, rng: &mut self.rng };
        self.paths.after_move(now, old, new, conn, config, io);
    }

    fn rrc_answers(&mut self, now: Instant, home: SocketAddr, from: SocketAddr) {
        let Some(conn) = self.connections.get_mut(&home) else { return };
        let io = path_check::Io { cids: &mut self.cids, transmits: &mut self.transmits, rng: &mut self.rng };
        if let Some(back) = self.paths.answers(now, home, from, conn, io) {
            self.rrc_go_back(home, back);
        }
    }

    fn rrc_timeout(&mut self, now: Instant) {
        for at in self.paths.due(now) {
            let conn = self.connections.get_mut(&at);
            let io = path_check::Io { cids: &mut self.cids, transmits: &mut self.transmits, rng: &mut self.rng };
            if let Some(back) = self.paths.on_timeout(now, at, conn, io) {
                self.rrc_go_back(at, back);
            }
        }
    }

    /// Files the association at `at` under `back_to` again, its last checked address (unless
    /// another association took that address since: then it stays, bounded).
    fn rrc_go_back(&mut self, at: SocketAddr, back_to: SocketAddr) {
        if self.connections.contains_key(&back_to) {
            return;
        }
        let Some(mut conn) = self.connections.remove(&at) else { return };
        conn.set_peer(back_to);
        let cids = conn.issued_cids();
        let conn_slot = conn.quota_slot;
        self.connections.insert(back_to, conn);
        self.timers.set(at, None);
        if let Some(l) = self.limits.as_mut() {
            l.moved(conn_slot, &at, back_to);
        }
        for cid in &cids {
            self.cids.moved(cid, at, back_to, 0);
        }
        self.cids.heard_from(back_to, 0, true);
        self.events.push_back((back_to, Event::AddressChanged { old: at }));
        self.collect(back_to);
    }
}
