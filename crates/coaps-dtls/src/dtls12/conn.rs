//! [`Conn12`], one DTLS 1.2 association as the rest of the crate sees it: the role-independent
//! [`Core`] plus, while the handshake runs, the role's handshake state, and the dispatch of
//! datagrams and handshake messages between the two. The public
//! [`Connection`](crate::Connection) wraps it; the call order is documented there.

use super::client::Client;
use super::engine::{Core, State};
use super::server::Server;
use crate::codec::{CipherSuite, HandshakeType};
use crate::config::{ClientConfig, ServerConfig};
use crate::crypto::SeededRng;
use crate::error::{ConfigError, Error, PeerMisbehaved, UsageError};
use crate::handshake::flight::RttSampleKind;
use crate::handshake::reassembly::HandshakeMessage;
use crate::msgs::ClientHello;
use crate::record;
use crate::resumption::{FetchedSession, Session};
use crate::types::{CloseReason, Event, PeerIdentity, Role, Stats};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The handshake state of either role.
// Boxed as a whole (`Option<Box<Hs>>`) and freed when the handshake ends, so the larger
// client variant costs a server nothing once idle; boxing inside would add an allocation.
#[allow(clippy::large_enum_variant)]
enum Hs {
    Client(Client),
    Server(Server),
}

impl Hs {
    fn expecting(&self) -> &'static str {
        match self {
            Self::Client(c) => c.expecting(),
            Self::Server(s) => s.expecting(),
        }
    }
}

/// One DTLS 1.2 association. See the module docs for the call order.
pub(crate) struct Conn12 {
    core: Core,
    /// `None` once the handshake is over: an idle association keeps no handshake state (nor
    /// the role's configuration beyond what the core reads). Boxed so it costs one pointer.
    hs: Option<Box<Hs>>,
}

impl fmt::Debug for Conn12 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.core;
        f.debug_struct("Conn12")
            .field("role", &c.role)
            .field("peer", &c.peer)
            .field("state", &c.state)
            .field("expecting", &self.hs.as_deref().map_or("nothing", Hs::expecting))
            .field("suite", &c.suite.map(|s| s.name))
            .field("identity", &c.identity)
            .field("stats", &c.out.stats)
            .finish_non_exhaustive()
    }
}

impl Conn12 {
    fn with(core: Core, hs: Result<Hs, Error>) -> Self {
        let mut c = Self { core, hs: None };
        match hs {
            Ok(hs) => c.hs = Some(Box::new(hs)),
            Err(e) => c.fail(e),
        }
        c
    }

    /// Starts a client handshake towards `peer`. `server_name` is checked against the server's
    /// certificate (a DNS name or an IP literal) and sent as SNI when it is a DNS name
    /// (RFC 6066 §3 forbids IP literals there). `resume` offers a session from an earlier
    /// connection ([`Connection::session`](crate::Connection::session)) for an abbreviated handshake.
    pub fn client(
        config: Arc<ClientConfig>,
        peer: SocketAddr,
        server_name: &str,
        resume: Option<Session>,
        rng: SeededRng,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        let (core, client) = Client::start(config, peer, server_name, resume, rng, now)?;
        Ok(Self::with(core, Ok(Hs::Client(client))))
    }

    /// Takes over the first ClientHello of a dual-version client (`crate::auto`) whose server
    /// answered in DTLS 1.2: the same bytes in the transcript and in the flight to retransmit,
    /// the same message and record numbering and retransmission timer, so a HelloVerifyRequest
    /// gets this ClientHello plus the cookie (RFC 6347 §4.2.1) and the 1.2 Finished covers
    /// exactly what was sent. `offered` is the 1.2 session in its legacy_session_id.
    pub(crate) fn client_adopt(
        config: Arc<ClientConfig>,
        peer: SocketAddr,
        server_name: &str,
        sent: crate::dtls13::engine::SentClientHello,
        offered: Option<Session>,
        now: Instant,
    ) -> Self {
        let (core, client) = Client::adopt(config, peer, server_name, sent, offered, now);
        Self::with(core, client.map(Hs::Client))
    }

    /// Creates the server side of an association from a ClientHello the endpoint has already
    /// accepted (cookie verified, or cookies disabled). `message_seq` is the ClientHello's;
    /// `cookie_rtt` the round trip of the cookie exchange, for the retransmission policy.
    /// `fetched` are the sessions a layer handed in for it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn server(
        config: Arc<ServerConfig>,
        peer: SocketAddr,
        ch: ClientHello,
        message_seq: u16,
        record_seq: u64,
        rng: SeededRng,
        now: Instant,
        cookie_rtt: Option<Duration>,
        fetched: &[FetchedSession],
    ) -> Self {
        let (core, server) = Server::accept(config, peer, ch, message_seq, record_seq, rng, now, cookie_rtt, fetched);
        Self::with(core, server.map(Hs::Server))
    }

    /// Whether this client still waits for the ServerHello.
    pub(crate) fn expects_server_hello(&self) -> bool {
        matches!(self.hs.as_deref(), Some(Hs::Client(c)) if c.expects_server_hello())
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.core.peer
    }

    /// The Connection IDs (RFC 9146), once negotiated.
    pub(crate) fn cids(&self) -> Option<&super::engine::Cids> {
        self.core.cid.negotiated.then_some(&self.core.cid)
    }

    /// Whether the last datagram held a record that authenticated and was newer than any
    /// before it (RFC 9146 §6).
    pub(crate) fn last_datagram_advanced(&self) -> bool {
        self.core.cid.advanced
    }

    /// Whether return routability checks were agreed (RFC 9853 §3).
    pub(crate) fn rrc_negotiated(&self) -> bool {
        self.core.cid.rrc
    }

    /// A sealed `return_routability_check` datagram (see `Core::seal_rrc`).
    pub(crate) fn seal_rrc(&mut self, msg: &crate::rrc::ReturnRoutabilityCheck) -> Option<Vec<u8>> {
        self.core.seal_rrc(msg)
    }

    /// The oldest `path_response` / `path_drop` received and not yet taken.
    pub(crate) fn take_rrc(&mut self) -> Option<crate::rrc::ReturnRoutabilityCheck> {
        self.core.cid.take_rrc()
    }

    /// Sends to `peer` from now on (the association moved, RFC 9146 §6).
    pub(crate) fn set_peer(&mut self, peer: SocketAddr) {
        self.core.peer = peer;
    }

    /// Client or server.
    pub fn role(&self) -> Role {
        self.core.role
    }

    /// Whether the handshake completed and the connection is open.
    pub fn is_established(&self) -> bool {
        self.core.state == State::Established
    }

    /// Whether the handshake is still running.
    pub fn is_handshaking(&self) -> bool {
        self.core.state == State::Handshaking
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.core.state == State::Closed
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.core.out.close_reason.as_deref()
    }

    /// The negotiated cipher suite.
    pub fn suite(&self) -> Option<CipherSuite> {
        self.core.suite.map(|s| s.suite)
    }

    /// The authenticated peer identity.
    pub fn peer_identity(&self) -> &PeerIdentity {
        &self.core.identity
    }

    /// What the client claimed to be before it was proven (servers).
    pub(crate) fn claimed_identity(&self) -> Option<&PeerIdentity> {
        self.core.out.claimed_identity.as_deref()
    }

    /// Whether the handshake was abbreviated (session resumption).
    pub fn is_resumed(&self) -> bool {
        self.core.resumed
    }

    /// Whether the handshake ran without extended_master_secret (RFC 7627).
    pub fn without_extended_master_secret(&self) -> bool {
        self.core.without_ems
    }

    pub(crate) fn write_epoch(&self) -> u16 {
        self.core.write_epoch
    }

    /// The session to offer for resumption on a later connection (client side), available once
    /// established and if the server issued a session ID.
    pub fn session(&self) -> Option<&Session> {
        self.core.session.as_deref()
    }

    /// Whether `client_hello_body` is the ClientHello that created this association (a
    /// retransmission or network duplicate of it).
    pub fn is_same_client_hello(&self, client_hello_body: &[u8]) -> bool {
        self.core.role == Role::Server
            && super::engine::hello_digest(&*self.core.common().provider, client_hello_body) == self.core.hello_digest
    }

    /// The ClientHello random of this handshake.
    pub fn client_random(&self) -> &[u8; 32] {
        &self.core.client_random
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.core.out.stats
    }

    /// When a datagram was last received from the peer (for idle expiry).
    pub fn last_activity(&self) -> Instant {
        self.core.last_activity
    }

    /// Largest application-data payload that fits one datagram at the configured MTU.
    pub fn max_payload(&self) -> usize {
        self.core.max_payload()
    }

    /// The next datagram to send to the peer.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.core.out.poll_transmit()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.core.out.poll_event()
    }

    /// When [`Connection::handle_timeout`](crate::Connection::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    /// Drives the retransmission timer (RFC 6347 §4.2.4.1).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
        self.drop_hs_if_closed();
    }

    /// Sends one application-data record.
    pub fn send(&mut self, data: &[u8]) -> Result<(), UsageError> {
        self.core.send(data)
    }

    /// Sends close_notify (RFC 5246 §7.2.1) and closes.
    pub fn close(&mut self) {
        self.core.close();
        self.drop_hs_if_closed();
    }

    /// Ends the association on a fatal error, with the alert the error maps to.
    pub(crate) fn fail(&mut self, e: Error) {
        self.core.fail(e);
        self.drop_hs_if_closed();
    }

    /// A closed association keeps no handshake state.
    fn drop_hs_if_closed(&mut self) {
        if self.core.state == State::Closed {
            self.hs = None;
        }
    }

    // ----------------------------------------------------------------------------------------
    // input

    /// Processes one datagram from the peer.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        if self.core.state == State::Closed {
            return;
        }
        self.core.out.stats.datagrams_received += 1;
        self.core.last_activity = now;
        let mut peer_repeated = false;
        let accept_hvr = self.expects_server_hello();
        self.core.cid.advanced = false;
        for rec in record::split_datagram_cid(datagram, self.core.cid.read().len()) {
            self.core.handle_record(rec.header, rec.cid, rec.fragment, &mut peer_repeated, accept_hvr);
            if self.core.state == State::Closed {
                self.hs = None;
                return;
            }
        }
        self.drain_handshake(now, &mut peer_repeated);
        self.drop_hs_if_closed();
        if peer_repeated {
            // RFC 6347 §4.2.4: a repeated peer flight means ours was lost: resend it.
            self.core.on_peer_repeated();
        }
    }

    /// Hands every complete handshake message to the role's state, and retries the records
    /// that waited for keys once a message has made them.
    fn drain_handshake(&mut self, now: Instant, peer_repeated: &mut bool) {
        if let Some(hvr) = self.core.pending_hvr.take()
            && let Some(Hs::Client(client)) = self.hs.as_deref_mut()
            && let Err(e) = client.handle_hello_verify_request(&mut self.core, now, &hvr.body, hvr.record_seq)
        {
            self.fail(e);
            return;
        }
        loop {
            while let Some(msg) = self.core.reasm.pop() {
                if let Err(e) = self.handle_handshake_message(now, msg) {
                    self.fail(e);
                    return;
                }
                if self.core.state == State::Closed {
                    return;
                }
            }
            if let Some(early) = self.core.take_early_records() {
                for (h, f) in early {
                    let accept_hvr = self.expects_server_hello();
                    let cid = if h.content_type == crate::codec::ContentType::Tls12Cid {
                        self.core.cid.read().to_vec()
                    } else {
                        Vec::new()
                    };
                    self.core.handle_record(h, &cid, &f, peer_repeated, accept_hvr);
                    if self.core.state == State::Closed {
                        return;
                    }
                }
                continue;
            }
            break;
        }
    }

    fn handle_handshake_message(&mut self, now: Instant, msg: HandshakeMessage) -> Result<(), Error> {
        let hs = self.hs.take();
        let core = &mut self.core;
        let typ = msg.msg_type;
        // The transcript (RFC 6347 §4.2.6) holds each message as if sent unfragmented. The
        // HelloVerifyRequest is excluded (RFC 6347 §4.2.1); Finished is added after checking.
        let before_len = core.transcript.len();
        if typ != HandshakeType::HelloVerifyRequest {
            msg.transcript_bytes(&mut core.transcript);
        }
        if core.timer_armed && typ != HandshakeType::HelloVerifyRequest {
            // The first message of the peer's next flight answers ours (RFC 6347 §4.2.4); the
            // timer measures it only if ours went out once. A HelloVerifyRequest is measured
            // as a cookie exchange, when it is acted upon.
            core.timer.on_answer(now, RttSampleKind::Flight);
        }
        let next = match hs.map(|b| *b) {
            Some(Hs::Client(c)) => c.handle(core, now, &msg, before_len)?.map(Hs::Client),
            Some(Hs::Server(s)) => s.handle(core, now, &msg, before_len)?.map(Hs::Server),
            None => return Err(Error::PeerMisbehaved(PeerMisbehaved::HandshakeMessageAfterHandshake)),
        };
        self.hs = next.map(Box::new);
        Ok(())
    }
}
