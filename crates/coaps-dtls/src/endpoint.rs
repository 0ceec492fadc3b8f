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
use crate::codec::{ContentType, HandshakeType, NamedGroup, ProtocolVersion, Reader};
use crate::config::{ClientConfig, ServerConfig};
use crate::connection::Connection;
use crate::cookie::{ClientHelloView, CookieKeys, write_hello_verify_request};
use crate::cookie::{CookieConfig, CookieInfo, HrrState, SharedCookieKeys};
use crate::crypto::{CryptoProvider, SeededRng};
use crate::dtls13::msgs::{ClientHello13, message_hash, transcript_bytes_13};
use crate::error::{ConfigError, UsageError};
use crate::handshake::reassembly::HelloReassembly;
use crate::msgs::{ClientHello, HandshakeHeader};
use crate::record::RecordHeader;
use crate::resumption::{FetchedSession, Session};
use crate::types::Event;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

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
    /// ([`offered_sessions`](crate::resumption::offered_sessions)): DTLS 1.2 session IDs and
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

/// What the stateless gate decided about a datagram from a peer with no association.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatelessOutcome {
    /// Not a ClientHello that can start a handshake: drop it.
    Drop,
    /// Answer with the HelloVerifyRequest of this many bytes written to the output buffer.
    HelloVerifyRequest(usize),
    /// The cookie verified (or cookies are off): the peer may get an association.
    Accept,
}

/// What the DTLS 1.3 half of the stateless gate ([`stateless_check13`]) decided about a
/// datagram from a peer without an association.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stateless13 {
    /// Not a ClientHello this server answers in DTLS 1.3 (1.3 off, not offered, no common
    /// suite, not a single-fragment ClientHello): the DTLS 1.2 gate decides.
    NotDtls13,
    /// Answer with this stateless HelloRetryRequest datagram, and nothing else. `rejected`
    /// tells that the ClientHello carried a cookie that did not verify.
    HelloRetryRequest {
        /// The datagram (one plaintext record).
        datagram: Vec<u8>,
        /// The ClientHello carried a cookie that did not verify (stale, forged, other address).
        rejected: bool,
    },
    /// The cookie verified: the peer proved its address and may get an association.
    Verified(CookieInfo),
    /// No cookie, and none needed: a 0-RTT resumption with a ticket issued to this address
    /// (RFC 9147 §5.1; [`crate::EarlyDataConfig::skip_cookie_on_resumption`]). The endpoint
    /// behind the gate checks the same condition again before it creates an association.
    CookieExempt,
    /// Do not answer (the HelloRetryRequest would exceed the amplification limit).
    Drop,
}

/// The secrets' timing for DTLS 1.3 HelloRetryRequest cookies of a server with `config`.
///
/// A DTLS 1.3 client accepts only one HelloRetryRequest (RFC 8446 §4.1.4), so its cookie must
/// stay valid for the client's whole retransmission budget: the configured timing
/// ([`ServerConfig::cookie`], or the default) stretched to at least that budget, so the cookie
/// stays under the current or previous secret for at least as long.
pub fn cookie13_config(config: &ServerConfig) -> CookieConfig {
    let budget = config.common.retransmit.handshake_timeout;
    let c13 = config.cookie.unwrap_or_default();
    CookieConfig { rotate_every: c13.rotate_every.max(budget), lifetime: c13.lifetime.max(budget) }
}

/// The DTLS 1.3 stateless gate on its own (the Tower cookie layer calls it): for a datagram
/// from a peer without an association, decides whether it is a DTLS 1.3 ClientHello (RFC 9147
/// §5.3 supported_versions, with a suite `server` accepts) and, if so, whether its cookie
/// verifies under `keys` or it gets a stateless HelloRetryRequest carrying the encrypted hash
/// of the ClientHello bound to `peer` (RFC 9147 §5.1). The answer is byte for byte what an
/// [`Endpoint`] sharing `keys` sends. Keeps no state; never a HelloVerifyRequest in 1.3.
pub fn stateless_check13(
    server: &ServerConfig,
    keys: &CookieKeys,
    now: Instant,
    peer: SocketAddr,
    datagram: &[u8],
) -> Stateless13 {
    if !server.dtls13 {
        return Stateless13::NotDtls13;
    }
    let Some((rec, _hdr, body)) = first_client_hello(datagram) else { return Stateless13::NotDtls13 };
    let Ok(ch13) = ClientHello13::read_exact(body) else { return Stateless13::NotDtls13 };
    if !ch13.offers_version(ProtocolVersion::DTLS1_3) {
        return Stateless13::NotDtls13;
    }
    let Some((suite, needs_group)) = crate::dtls13::engine::server_choose(server, &ch13) else {
        return Stateless13::NotDtls13;
    };
    // The same two exceptions as `Endpoint::accept13`, so gate and endpoint agree.
    let needs_group = needs_group && !crate::dtls13::engine::psk_ke_possible(server, &ch13, now);
    if ch13.cookie().is_none() && !needs_group && crate::dtls13::engine::cookie_exempt(server, &ch13, body, peer, now) {
        return Stateless13::CookieExempt;
    }
    let provider = &*server.common.provider;
    let mut rejected = false;
    if let Some(cookie) = ch13.cookie() {
        match keys.verify13(provider, now, peer, cookie) {
            Ok((_, info)) => return Stateless13::Verified(info),
            Err(_) => rejected = true,
        }
    }
    match hello_retry_datagram(provider, keys, now, peer, rec.sequence_number, body, suite, needs_group, datagram.len())
    {
        Some(datagram) => Stateless13::HelloRetryRequest { datagram, rejected },
        None => Stateless13::Drop,
    }
}

/// The stateless HelloRetryRequest for a first ClientHello `body` (RFC 9147 §5.1), or `None`
/// when it would exceed three times the `received` bytes (the amplification limit before the
/// address is proven).
#[allow(clippy::too_many_arguments)]
fn hello_retry_datagram(
    provider: &dyn CryptoProvider,
    keys: &CookieKeys,
    now: Instant,
    peer: SocketAddr,
    record_seq: u64,
    body: &[u8],
    suite: crate::codec::CipherSuite,
    needs_group: bool,
    received: usize,
) -> Option<Vec<u8>> {
    let mut t = Vec::new();
    transcript_bytes_13(HandshakeType::ClientHello, body, &mut t);
    let mut h = provider.sha256();
    h.update(&t);
    let state = HrrState {
        client_hello1_hash: h.current(),
        cipher_suite: suite.into(),
        group: if needs_group { u16::from(NamedGroup::Secp256r1) } else { 0 },
    };
    let cookie = keys.generate13(provider, now, peer, &state).ok()?;
    let hrr = crate::dtls13::engine::hello_retry_request(&state, cookie.as_bytes());
    let mut hs = Vec::with_capacity(HandshakeHeader::LEN + hrr.len());
    HandshakeHeader {
        msg_type: HandshakeType::ServerHello,
        length: hrr.len() as u32,
        message_seq: 0,
        fragment_offset: 0,
        fragment_length: hrr.len() as u32,
    }
    .encode(&mut hs);
    hs.extend_from_slice(&hrr);
    let mut out = Vec::with_capacity(RecordHeader::LEN + hs.len());
    // RFC 6347 §4.2.1 / RFC 9147 §5.1: reuse the ClientHello's record number.
    crate::dtls13::record::encode_plaintext13(ContentType::Handshake, 0, record_seq, &hs, &mut out);
    // RFC 9147 §5.1: at most three times the bytes received before the address is proven.
    (out.len() <= 3 * received).then_some(out)
}

/// A DTLS endpoint: a server accepting many peers, a client connecting to some, or both.
pub struct Endpoint {
    server: Option<Arc<ServerConfig>>,
    cookies: Option<CookieKeys>,
    /// Secrets for DTLS 1.3 HelloRetryRequest cookies: kept even when the 1.2 cookie exchange
    /// is off, because an HRR that asks for a key share must stay stateless too. Shared with a
    /// gate in front ([`Endpoint::server_behind_gate`]).
    cookies13: Option<SharedCookieKeys>,
    /// Behind a gate: a DTLS 1.3 ClientHello needs a valid cookie whatever `cookie` says.
    require_cookie13: bool,
    connections: HashMap<SocketAddr, Connection>,
    /// Fragmented ClientHellos being reassembled, before any cookie check (servers only).
    hellos: Option<HelloReassembly>,
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

/// A datagram that starts with a whole ClientHello in one record and one fragment. Fragmented
/// ClientHellos go through the endpoint's bounded reassembly area first (see
/// [`crate::handshake::reassembly::HelloReassemblyConfig`]).
fn first_client_hello(datagram: &[u8]) -> Option<(RecordHeader, HandshakeHeader, &[u8])> {
    let rec = crate::record::split_datagram(datagram).next()?;
    if rec.header.content_type != ContentType::Handshake || rec.header.epoch != 0 {
        return None;
    }
    let mut r = Reader::new(rec.fragment);
    let (hdr, body) = HandshakeHeader::read_fragment(&mut r).ok()?;
    if hdr.msg_type != HandshakeType::ClientHello || hdr.fragment_offset != 0 || hdr.fragment_length != hdr.length {
        return None;
    }
    Some((rec.header, hdr, body))
}

/// Whether `datagram` starts with a record holding a fragment (not the whole) of a ClientHello:
/// what goes to a [`HelloReassembly`] area instead of the stateless cookie gate.
pub fn starts_with_client_hello_fragment(datagram: &[u8]) -> bool {
    let Some(rec) = crate::record::split_datagram(datagram).next() else { return false };
    if rec.header.content_type != ContentType::Handshake || rec.header.epoch != 0 {
        return false;
    }
    let mut r = Reader::new(rec.fragment);
    HandshakeHeader::read_fragment(&mut r).is_ok_and(|(hdr, _)| {
        hdr.msg_type == HandshakeType::ClientHello && (hdr.fragment_offset != 0 || hdr.fragment_length != hdr.length)
    })
}

/// What [`reassemble_client_hello`] did with one datagram.
#[derive(Debug, Default)]
pub struct HelloFragments {
    /// The ClientHello this datagram completed, as the one-record, one-fragment datagram it
    /// would have been unfragmented (RFC 6347 §4.2.3: the same message), for the stateless gate.
    pub hello: Option<Vec<u8>>,
    /// ClientHello fragments taken into the area.
    pub fragments_taken: u64,
    /// Fragments refused (inconsistent, or beyond the area's limits); nothing was stored.
    pub fragments_refused: u64,
    /// Partial hellos evicted meanwhile (to make room, or expired).
    pub evicted: u64,
}

/// Takes the epoch-0 ClientHello fragments of `datagram` from `peer` into `area` (RFC 9147
/// §5.1: a small-MTU client fragments its ClientHello). The [`Endpoint`] uses it in front of its
/// cookie gate; a stateless gate in front of an endpoint (the Tower cookie layer) uses it the
/// same way, so both accept the same fragmented hellos within the same bounds.
pub fn reassemble_client_hello(
    area: &mut HelloReassembly,
    now: Instant,
    peer: SocketAddr,
    datagram: &[u8],
) -> HelloFragments {
    let mut out = HelloFragments::default();
    let evicted_before = area.evicted();
    let mut done = None;
    for rec in crate::record::split_datagram(datagram) {
        if rec.header.content_type != ContentType::Handshake || rec.header.epoch != 0 {
            continue;
        }
        let mut r = Reader::new(rec.fragment);
        while let Ok((hdr, frag)) = HandshakeHeader::read_fragment(&mut r) {
            match area.insert(now, peer, rec.header.sequence_number, &hdr, frag) {
                Ok(whole) => {
                    out.fragments_taken += 1;
                    if let Some(h) = whole {
                        done = Some((rec.header.version, h));
                    }
                }
                Err(_) => out.fragments_refused += 1,
            }
        }
    }
    out.evicted = area.evicted() - evicted_before;
    let Some((version, hello)) = done else { return out };
    let mut hs = Vec::with_capacity(HandshakeHeader::LEN + hello.body.len());
    HandshakeHeader {
        msg_type: HandshakeType::ClientHello,
        length: hello.body.len() as u32,
        message_seq: hello.message_seq,
        fragment_offset: 0,
        fragment_length: hello.body.len() as u32,
    }
    .encode(&mut hs);
    hs.extend_from_slice(&hello.body);
    let mut dgram = Vec::with_capacity(RecordHeader::LEN + hs.len());
    // The area caps a hello at one record's worth, so the length fits.
    RecordHeader {
        content_type: ContentType::Handshake,
        version,
        epoch: 0,
        sequence_number: hello.record_seq,
        length: hs.len() as u16,
    }
    .encode(&mut dgram);
    dgram.extend_from_slice(&hs);
    out.hello = Some(dgram);
    out
}

impl Endpoint {
    /// A server endpoint. `rng` seeds every association and the cookie secret.
    pub fn server(config: Arc<ServerConfig>, mut rng: SeededRng, now: Instant) -> Self {
        let cookies = config.cookie.map(|c| CookieKeys::new(c, now, &mut rng));
        let cookies13 = Some(SharedCookieKeys::new(CookieKeys::new(cookie13_config(&config), now, &mut rng)));
        let hellos = Some(HelloReassembly::new(config.hello_reassembly));
        Self {
            server: Some(config),
            cookies,
            cookies13,
            require_cookie13: false,
            connections: HashMap::new(),
            hellos,
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
        e.cookies13 = Some(cookies13);
        e.require_cookie13 = true;
        e
    }

    /// A client-only endpoint.
    pub fn client(rng: SeededRng) -> Self {
        Self {
            server: None,
            cookies: None,
            cookies13: None,
            require_cookie13: false,
            connections: HashMap::new(),
            hellos: None,
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

    /// The stateless gate, usable on its own (the cookie layer calls it): decides on a
    /// datagram from a peer without an association and, when a HelloVerifyRequest is the
    /// answer, writes it into `out`. It allocates nothing (RFC 6347 §4.2.1; DESIGN "no state
    /// before proof").
    pub fn stateless_check(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
    ) -> StatelessOutcome {
        let Some(server) = &self.server else { return StatelessOutcome::Drop };
        let Some((rec, _hdr, body)) = first_client_hello(datagram) else {
            return StatelessOutcome::Drop;
        };
        let Ok(view) = ClientHelloView::parse(body) else { return StatelessOutcome::Drop };
        let Some(keys) = &mut self.cookies else { return StatelessOutcome::Accept };
        keys.rotate_if_due(now, &mut self.rng);
        let provider = &*server.common.provider;
        if !view.cookie.is_empty() {
            if keys.verify(provider, now, peer, &view.params, view.cookie).is_ok() {
                return StatelessOutcome::Accept;
            }
            self.stats.cookies_rejected += 1;
        }
        let cookie = keys.generate(provider, now, peer, &view.params);
        match write_hello_verify_request(rec.sequence_number, cookie.as_bytes(), out) {
            // Never answer with more than was received: no amplification (RFC 6347 §4.2.1).
            Some(n) if n <= datagram.len() => {
                self.stats.hello_verify_requests += 1;
                StatelessOutcome::HelloVerifyRequest(n)
            }
            _ => StatelessOutcome::Drop,
        }
    }

    /// Processes one datagram from `peer`.
    pub fn handle_datagram(&mut self, now: Instant, peer: SocketAddr, datagram: &[u8]) {
        self.handle_datagram_with(now, peer, datagram, DatagramMeta::default());
    }

    /// Processes one datagram from `peer` with what the layers in front learned about it
    /// (see [`DatagramMeta`]).
    pub fn handle_datagram_with(&mut self, now: Instant, peer: SocketAddr, datagram: &[u8], meta: DatagramMeta) {
        self.stats.datagrams_received += 1;
        if self.hellos.is_some() && starts_with_client_hello_fragment(datagram) {
            // A retransmission of the ClientHello that created the association is its business
            // (it triggers our flight's retransmission), as an unfragmented one would be.
            if let Some(conn) = self.connections.get_mut(&peer) {
                conn.handle_datagram(now, datagram);
                self.collect(peer);
            }
            if let Some(hello) = self.reassemble_hello(now, peer, datagram) {
                self.handle_hello_or_other(now, peer, &hello, true, meta);
            }
            return;
        }
        self.handle_hello_or_other(now, peer, datagram, false, meta);
    }

    /// Takes the ClientHello fragments of `datagram` into the reassembly area (see
    /// [`reassemble_client_hello`]). Nothing of it reaches an association or a cookie check
    /// before it is whole.
    fn reassemble_hello(&mut self, now: Instant, peer: SocketAddr, datagram: &[u8]) -> Option<Vec<u8>> {
        let area = self.hellos.as_mut()?;
        let r = reassemble_client_hello(area, now, peer, datagram);
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
        reassembled: bool,
        meta: DatagramMeta,
    ) {
        let existing = self.connections.get(&peer);
        let starts_with_ch = first_client_hello(datagram);
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
            (Some(c), Some((_, _, body))) => {
                c.is_same_client_hello(body)
                    || ClientHelloView::parse(body).is_ok_and(|v| {
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
        // DTLS 1.3 for clients that offer it (RFC 9147 §5.3 supported_versions), 1.2 otherwise.
        if server.dtls13
            && let Some((rec, hdr, body)) = starts_with_ch
            && let Ok(ch13) = ClientHello13::read_exact(body)
            && ch13.offers_version(ProtocolVersion::DTLS1_3)
            && crate::dtls13::engine::server_choose(&server, &ch13).is_some()
        {
            self.accept13(now, peer, server, rec, hdr, body, ch13, datagram, meta);
            return;
        }
        if !server.dtls12 {
            // A DTLS 1.3-only server: a ClientHello without 1.3 gets no answer and no state.
            self.stats.dropped_unknown_peer += 1;
            return;
        }
        let mut buf = [0u8; 256];
        match self.stateless_check(now, peer, datagram, &mut buf) {
            StatelessOutcome::Drop => self.stats.dropped_unknown_peer += 1,
            StatelessOutcome::HelloVerifyRequest(n) => {
                self.transmits.push_back(Transmit { destination: peer, payload: buf[..n].to_vec() })
            }
            StatelessOutcome::Accept => {
                let Some((rec, hdr, body)) = starts_with_ch else { return };
                let handshaking = self.connections.values().filter(|c| c.is_handshaking()).count();
                if handshaking >= server.max_handshakes
                    || (self.connections.len() >= server.max_connections && !self.connections.contains_key(&peer))
                {
                    self.stats.dropped_limit += 1;
                    return;
                }
                let Ok(ch) = ClientHello::read_exact(body) else {
                    self.stats.dropped_unknown_peer += 1;
                    return;
                };
                let cookie_rtt = meta.cookie_rtt.or_else(|| self.own_cookie_age(&server, now, peer, body));
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
        }
    }

    /// The DTLS 1.3 cookie gate: a ClientHello without a valid cookie gets a stateless
    /// HelloRetryRequest carrying the encrypted hash of the ClientHello (RFC 9147 §5.1); one
    /// with a valid cookie gets an association whose transcript starts with
    /// `message_hash(ClientHello1) || HelloRetryRequest` (RFC 8446 §4.4.1).
    #[allow(clippy::too_many_arguments)]
    fn accept13(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        server: Arc<ServerConfig>,
        rec: RecordHeader,
        hdr: HandshakeHeader,
        body: &[u8],
        ch13: ClientHello13,
        datagram: &[u8],
        meta: DatagramMeta,
    ) {
        // Sessions a layer in front fetched for this ClientHello (DESIGN: the engine never awaits).
        let fetched = &meta.sessions[..];
        let received = datagram.len();
        let Some((suite, needs_group)) = crate::dtls13::engine::server_choose(&server, &ch13) else { return };
        // psk_ke needs no key share (RFC 8446 §4.2.9): no HRR just to ask for one.
        let needs_group = needs_group && !crate::dtls13::engine::psk_ke_possible_with(&server, &ch13, now, fetched);
        let Some(shared) = &self.cookies13 else { return };
        let keys = shared.lock(now, &mut self.rng);
        let provider = server.common.provider.clone();
        let mut cookie_age = None;
        let prefix = match ch13.cookie() {
            Some(cookie) => match keys.verify13(&*provider, now, peer, cookie) {
                // RFC 9147 §5.11: an existing association goes only once the client shows
                // reachability. The 1.3 cookie does not bind the random, so a cookie issued
                // before the association's last activity is an (altered) replay: it proves nothing.
                Ok((_, info))
                    if self.connections.get(&peer).is_some_and(|c| {
                        now.checked_sub(info.age).is_none_or(|issued| issued <= c.last_activity())
                    }) =>
                {
                    self.stats.cookies_rejected += 1;
                    None
                }
                Ok((state, info)) => {
                    let mut prefix = Vec::new();
                    message_hash(&state.client_hello1_hash, &mut prefix);
                    let hrr = crate::dtls13::engine::hello_retry_request(&state, cookie);
                    transcript_bytes_13(HandshakeType::ServerHello, &hrr, &mut prefix);
                    cookie_age = Some(info.age);
                    Some(prefix)
                }
                Err(_) => {
                    self.stats.cookies_rejected += 1;
                    None
                }
            },
            None if server.cookie.is_none() && !needs_group && !self.require_cookie13 => Some(Vec::new()),
            // RFC 9147 §5.1: no cookie for a fresh 0-RTT resumption from the ticket's address
            // with a valid binder (the stateless gate in front passes it as
            // `Stateless13::CookieExempt`).
            None if !needs_group
                && crate::dtls13::engine::cookie_exempt_with(&server, &ch13, body, peer, now, fetched) =>
            {
                Some(Vec::new())
            }
            None => None,
        };
        let Some(prefix) = prefix else {
            let hrr = hello_retry_datagram(
                &*provider,
                &keys,
                now,
                peer,
                rec.sequence_number,
                body,
                suite,
                needs_group,
                received,
            );
            drop(keys);
            if let Some(out) = hrr {
                self.stats.hello_retry_requests += 1;
                self.transmits.push_back(Transmit { destination: peer, payload: out });
            }
            return;
        };
        drop(keys);
        let handshaking = self.connections.values().filter(|c| c.is_handshaking()).count();
        if handshaking >= server.max_handshakes
            || (self.connections.len() >= server.max_connections && !self.connections.contains_key(&peer))
        {
            self.stats.dropped_limit += 1;
            return;
        }
        let mut c = crate::dtls13::engine::Conn13::server(
            server,
            peer,
            ch13,
            body,
            hdr.message_seq,
            rec.sequence_number,
            prefix,
            self.rng.fork(),
            now,
            // A gate in front measured the same exchange, from its own clock.
            meta.cookie_rtt.or(cookie_age),
            fetched,
        );
        // 0-RTT records packed behind the ClientHello (RFC 8446 §4.2.10).
        c.handle_rest_of_first_datagram(now, datagram);
        self.connections.insert(peer, Connection::from13(c));
        self.stats.connections_created += 1;
        self.collect(peer);
    }

    /// The age of the DTLS 1.2 cookie in `client_hello` that this endpoint's own gate just
    /// accepted: the round trip of its HelloVerifyRequest (RFC 6347 §4.2.1), for the
    /// association's retransmission policy. [`Endpoint::stateless_check`] answers only
    /// accept or not, so the cookie is verified once more here: one HMAC per association
    /// created, beside a handshake's public-key operations.
    fn own_cookie_age(
        &self,
        server: &ServerConfig,
        now: Instant,
        peer: SocketAddr,
        client_hello: &[u8],
    ) -> Option<std::time::Duration> {
        let keys = self.cookies.as_ref()?;
        let view = ClientHelloView::parse(client_hello).ok()?;
        let info = keys.verify(&*server.common.provider, now, peer, &view.params, view.cookie).ok()?;
        Some(info.age)
    }

    /// Partial ClientHellos in the reassembly area and the bytes they hold (never more than
    /// [`HelloReassemblyConfig`](crate::handshake::reassembly::HelloReassemblyConfig) allows).
    pub fn hello_reassembly_usage(&self) -> (usize, usize) {
        self.hellos.as_ref().map_or((0, 0), |h| (h.len(), h.bytes()))
    }

    /// Drives every association's timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(area) = self.hellos.as_mut() {
            let before = area.evicted();
            area.expire(now);
            self.stats.hellos_evicted += area.evicted() - before;
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
