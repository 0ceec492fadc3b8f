//! One DTLS 1.2 association with one peer (RFC 6347): the record layer state (epochs,
//! sequence numbers, replay window), the handshake state machines of both roles, flights and
//! their retransmission (RFC 6347 §4.2.4), alerts, and application data. The public
//! [`Connection`](crate::Connection) wraps it; the call order is documented there.

use crate::codec::*;
use crate::config::{ClientAuth, ClientConfig, CommonConfig, PeerVerifier, ServerConfig};
use crate::crypto::prf::{self, MasterSecret};
use crate::crypto::{EcdhKeyPair, Rng, SeededRng};
use crate::error::{ConfigError, Error, Incompatible, PeerMisbehaved, UsageError};
use crate::handshake::flight::{RetransmitTimer, RttSampleKind, fragment};
use crate::handshake::reassembly::{HandshakeMessage, Insert, Reassembler};
use crate::msgs::*;
use crate::record::{self, RecordHeader, RecordProtection, ReplayWindow};
use crate::resumption::{FetchedSession, Session};
use crate::suites::{self, SupportedSuite};
use crate::types::{CloseReason, Event, Outputs, PeerIdentity, Role, Stats};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshaking,
    Established,
    Closed,
}

/// A message of a flight, kept for retransmission (RFC 6347 §4.2.4: flights are resent whole).
#[derive(Debug)]
enum FlightMsg {
    Handshake { epoch: u16, msg_type: HandshakeType, message_seq: u16, body: Vec<u8> },
    ChangeCipherSpec,
}

/// Negotiated parameters of a handshake in progress.
struct HsData {
    suite: &'static SupportedSuite,
    client_random: [u8; 32],
    server_random: [u8; 32],
    session_id: Vec<u8>,
    ems: bool,
    cert_type: CertificateType,
}

enum Hs {
    // client states
    CExpectServerHello {
        ch: ClientHello,
        offered: Option<Session>,
    },
    CExpectCertificate {
        d: HsData,
    },
    CExpectServerKeyExchange {
        d: HsData,
        server_point: Option<[u8; 65]>,
        identity: PeerIdentity,
    },
    CExpectDone {
        d: HsData,
        server_point: Option<[u8; 65]>,
        identity: PeerIdentity,
        server_ecdh: Option<Vec<u8>>,
        cert_requested: bool,
    },
    CExpectFinished {
        d: HsData,
        master: MasterSecret,
        identity: PeerIdentity,
    },
    CExpectResumedFinished {
        d: HsData,
        master: MasterSecret,
        identity: PeerIdentity,
    },
    // server states
    SExpectCertificate {
        d: HsData,
        eph: Option<Box<dyn EcdhKeyPair>>,
    },
    SExpectClientKeyExchange {
        d: HsData,
        eph: Option<Box<dyn EcdhKeyPair>>,
        client: Option<([u8; 65], PeerIdentity)>,
    },
    SExpectCertificateVerify {
        d: HsData,
        master: MasterSecret,
        point: [u8; 65],
        identity: PeerIdentity,
    },
    SExpectFinished {
        d: HsData,
        master: MasterSecret,
        identity: PeerIdentity,
    },
    SExpectResumedFinished {
        d: HsData,
        master: MasterSecret,
        identity: PeerIdentity,
    },
    Done,
}

impl Hs {
    fn name(&self) -> &'static str {
        match self {
            Self::CExpectServerHello { .. } => "ServerHello",
            Self::CExpectCertificate { .. } => "Certificate",
            Self::CExpectServerKeyExchange { .. } => "ServerKeyExchange",
            Self::CExpectDone { .. } => "ServerHelloDone",
            Self::CExpectFinished { .. } | Self::CExpectResumedFinished { .. } => "Finished",
            Self::SExpectCertificate { .. } => "Certificate",
            Self::SExpectClientKeyExchange { .. } => "ClientKeyExchange",
            Self::SExpectCertificateVerify { .. } => "CertificateVerify",
            Self::SExpectFinished { .. } | Self::SExpectResumedFinished { .. } => "Finished",
            Self::Done => "nothing",
        }
    }
}

enum RoleConfig {
    Client { config: Arc<ClientConfig>, server_name: String },
    Server(Arc<ServerConfig>),
}

/// One DTLS 1.2 association. See the module docs for the call order.
pub(crate) struct Conn12 {
    role: Role,
    peer: SocketAddr,
    cfg: RoleConfig,
    /// Needed only during the handshake; dropped once it is over.
    rng: Option<Box<SeededRng>>,
    state: State,
    // record layer
    write_epoch: u16,
    write_seq: [u64; 2],
    write_prot: Option<RecordProtection>,
    read_prot: Option<RecordProtection>,
    replay: ReplayWindow,
    early_records: Vec<(RecordHeader, Vec<u8>)>,
    early_app_data: Vec<Vec<u8>>,
    // handshake
    /// `None` once the handshake is over: an idle association keeps no handshake state.
    hs: Option<Box<Hs>>,
    reasm: Reassembler,
    send_seq: u16,
    transcript: Vec<u8>,
    flight: Vec<FlightMsg>,
    timer: RetransmitTimer,
    timer_armed: bool,
    /// First message_seq of the peer flight we are waiting for (see `send_new_flight`).
    peer_flight_start: u16,
    /// A HelloVerifyRequest seen while waiting for ServerHello, handled outside the
    /// reassembler because a server may send a fresh one (new cookie) at any time.
    pending_hvr: Option<Vec<u8>>,
    /// We sent the handshake's last flight and must resend it if the peer repeats its own
    /// (RFC 6347 §4.2.4); cleared once the peer's application data proves it is done.
    holds_last_flight: bool,
    /// When the kept last flight is released if the peer stays silent.
    linger_until: Option<Instant>,
    // results
    suite: Option<&'static SupportedSuite>,
    identity: PeerIdentity,
    /// Client side only (the server's copy lives in its session store); boxed so a server
    /// association does not carry an empty `Session`'s size inline.
    session: Option<Box<Session>>,
    resumed: bool,
    client_random: [u8; 32],
    /// Digest of the ClientHello body that created this (server-side) association.
    hello_digest: [u8; 32],
    out: Outputs,
    /// Boxed: set once, at the end of the association's life.
    last_activity: Instant,
}

impl fmt::Debug for Conn12 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn12")
            .field("role", &self.role)
            .field("peer", &self.peer)
            .field("state", &self.state)
            .field("expecting", &self.hs.as_deref().map_or("nothing", Hs::name))
            .field("suite", &self.suite.map(|s| s.name))
            .field("identity", &self.identity)
            .field("stats", &self.out.stats)
            .finish_non_exhaustive()
    }
}

fn is_ip_literal(name: &str) -> bool {
    name.parse::<std::net::IpAddr>().is_ok()
}

/// Decodes a message whose layout depends on negotiated parameters, refusing trailing bytes.
fn read_all<'a, T>(
    body: &'a [u8],
    f: impl FnOnce(&mut Reader<'a>) -> Result<T, InvalidMessage>,
) -> Result<T, InvalidMessage> {
    let mut r = Reader::new(body);
    let v = f(&mut r)?;
    r.expect_empty(std::any::type_name::<T>())?;
    Ok(v)
}

fn encode_to_vec(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::new();
    f(&mut v);
    v
}

impl Conn12 {
    fn new(
        role: Role,
        peer: SocketAddr,
        cfg: RoleConfig,
        rng: SeededRng,
        now: Instant,
        timer: RetransmitTimer,
    ) -> Self {
        let common = match &cfg {
            RoleConfig::Client { config, .. } => &config.common,
            RoleConfig::Server(c) => &c.common,
        };
        let reasm = Reassembler::new(common.max_reassembly_bytes);
        Self {
            role,
            peer,
            cfg,
            rng: Some(Box::new(rng)),
            state: State::Handshaking,
            write_epoch: 0,
            write_seq: [0, 0],
            write_prot: None,
            read_prot: None,
            replay: ReplayWindow::default(),
            early_records: Vec::new(),
            early_app_data: Vec::new(),
            hs: None,
            reasm,
            send_seq: 0,
            transcript: Vec::new(),
            flight: Vec::new(),
            timer,
            timer_armed: false,
            peer_flight_start: 0,
            pending_hvr: None,
            holds_last_flight: false,
            linger_until: None,
            suite: None,
            identity: PeerIdentity::Anonymous,
            session: None,
            resumed: false,
            client_random: [0; 32],
            hello_digest: [0; 32],
            out: Outputs::default(),
            last_activity: now,
        }
    }

    fn rng(&mut self) -> &mut SeededRng {
        // Only the handshake draws randomness, and it runs while the RNG is present; the
        // fallback keeps this total rather than panicking.
        self.rng.get_or_insert_with(|| Box::new(SeededRng::from_os()))
    }

    fn common(&self) -> &CommonConfig {
        match &self.cfg {
            RoleConfig::Client { config, .. } => &config.common,
            RoleConfig::Server(c) => &c.common,
        }
    }

    /// Starts a client handshake towards `peer`. `server_name` is checked against the server's
    /// certificate (a DNS name or an IP literal) and sent as SNI when it is a DNS name
    /// (RFC 6066 §3 forbids IP literals there). `resume` offers a session from an earlier
    /// connection ([`Connection::session`]) for an abbreviated handshake.
    pub fn client(
        config: Arc<ClientConfig>,
        peer: SocketAddr,
        server_name: &str,
        resume: Option<Session>,
        rng: SeededRng,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        let timer = config.common.retransmit_timer(peer, Role::Client, None);
        let mut c = Self::new(
            Role::Client,
            peer,
            RoleConfig::Client { config: config.clone(), server_name: server_name.to_owned() },
            rng,
            now,
            timer,
        );
        let offered: Vec<&SupportedSuite> = config
            .common
            .suites
            .iter()
            .filter(|s| if s.uses_psk() { config.psk.is_some() } else { config.verifier.is_some() })
            .collect();
        if offered.is_empty() {
            return Err(ConfigError::new(
                "no credentials for any configured cipher suite: configure a PSK (PSK suites) or a CA / pinned key (ECDSA suites)",
            ));
        }
        let mut random = [0u8; 32];
        c.rng().fill(&mut random);
        c.client_random = random;
        let mut extensions = Vec::new();
        if !is_ip_literal(server_name) && !server_name.is_empty() {
            extensions.push(ClientExtension::ServerName(vec![ServerName {
                name_type: 0,
                name: server_name.as_bytes().to_vec(),
            }]));
        }
        if offered.iter().any(|s| s.uses_ecdhe()) {
            extensions.push(ClientExtension::SupportedGroups(vec![NamedGroup::Secp256r1]));
            extensions.push(ClientExtension::EcPointFormats(vec![EcPointFormat::Uncompressed]));
        }
        if offered.iter().any(|s| !s.uses_psk()) {
            extensions.push(ClientExtension::SignatureAlgorithms(vec![SignatureScheme::EcdsaSecp256r1Sha256]));
            if matches!(config.verifier, Some(PeerVerifier::Pinned(_))) {
                extensions.push(ClientExtension::ServerCertificateType(vec![CertificateType::RawPublicKey]));
            }
            if config.client_cert.as_ref().is_some_and(|k| k.chain.is_empty()) {
                extensions.push(ClientExtension::ClientCertificateType(vec![CertificateType::RawPublicKey]));
            }
        }
        extensions.push(ClientExtension::ExtendedMasterSecret);
        extensions.push(ClientExtension::RenegotiationInfo(Vec::new()));
        let offered_session = resume.filter(|s| offered.iter().any(|o| o.suite == s.suite) && !s.id.is_empty());
        let ch = ClientHello {
            client_version: ProtocolVersion::DTLS1_2,
            random: Random(random),
            session_id: SessionId(offered_session.as_ref().map(|s| s.id.clone()).unwrap_or_default()),
            cookie: Vec::new(),
            cipher_suites: offered.iter().map(|s| s.suite).collect(),
            compression_methods: vec![Compression::Null],
            extensions,
        };
        c.send_client_hello(now, &ch);
        c.hs = Some(Box::new(Hs::CExpectServerHello { ch, offered: offered_session }));
        Ok(c)
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
        // The 1.2 codec must re-encode the hello byte for byte, or a second ClientHello after a
        // HelloVerifyRequest would differ from the first in more than the cookie.
        let ch = ClientHello::read_exact(&sent.body).ok().filter(|ch| ch.to_vec() == sent.body);
        let rng = sent.rng.map_or_else(SeededRng::from_os, |b| *b);
        // The policy goes with the timer: it has already seen this ClientHello go out.
        let cfg = RoleConfig::Client { config, server_name: server_name.to_owned() };
        let mut c = Self::new(Role::Client, peer, cfg, rng, now, sent.timer);
        c.client_random = ch.as_ref().map_or([0; 32], |ch| ch.random.0);
        c.write_seq[0] = sent.next_record_seq;
        c.send_seq = sent.message_seq.wrapping_add(1);
        c.reasm.set_next_seq(sent.message_seq);
        c.peer_flight_start = sent.message_seq;
        let msg =
            HandshakeMessage { msg_type: HandshakeType::ClientHello, message_seq: sent.message_seq, body: sent.body };
        msg.transcript_bytes(&mut c.transcript);
        c.flight.push(FlightMsg::Handshake {
            epoch: 0,
            msg_type: HandshakeType::ClientHello,
            message_seq: msg.message_seq,
            body: msg.body,
        });
        c.timer_armed = sent.timer_armed;
        c.out = sent.out;
        c.last_activity = sent.last_activity;
        match ch {
            Some(ch) => {
                let offered = offered.filter(|s| !s.id.is_empty() && s.id == ch.session_id.0);
                c.hs = Some(Box::new(Hs::CExpectServerHello { ch, offered }));
            }
            None => {
                c.fail(Error::Config(ConfigError::new("the dual-version ClientHello does not round-trip as DTLS 1.2")))
            }
        }
        c
    }

    /// Whether this client still waits for the ServerHello.
    pub(crate) fn expects_server_hello(&self) -> bool {
        matches!(self.hs.as_deref(), Some(Hs::CExpectServerHello { .. }))
    }

    /// RFC 6347 §4.2.1: answer a HelloVerifyRequest with the ClientHello repeated plus the
    /// cookie. A server may issue a fresh cookie at any time (its old one expired while our
    /// ClientHello kept getting lost), so every new cookie gets a new ClientHello; a
    /// duplicate of the one we already answered is ignored.
    fn client_handle_hvr(&mut self, now: Instant, body: &[u8]) -> Result<(), Error> {
        let hvr = HelloVerifyRequest::read_exact(body)?;
        let Some(Hs::CExpectServerHello { ch, .. }) = self.hs.as_deref_mut() else { return Ok(()) };
        // A different cookie after we already answered one comes from a duplicate of our first
        // ClientHello; unless our retransmission timer has fired since (our ClientHello may be
        // lost, or its cookie expired), the server is already working on the answer we sent.
        if hvr.cookie == ch.cookie || (!ch.cookie.is_empty() && self.timer.retransmissions() == 0) {
            return Ok(());
        }
        ch.cookie = hvr.cookie;
        if self.timer_armed {
            self.timer.on_answer(now, RttSampleKind::Cookie);
        }
        let ch = ch.clone();
        self.send_client_hello(now, &ch);
        Ok(())
    }

    fn send_client_hello(&mut self, now: Instant, ch: &ClientHello) {
        // The server numbers its ServerHello after the ClientHello it answers.
        self.reasm.set_next_seq(self.send_seq);
        self.transcript.clear();
        let body = ch.to_vec();
        self.flight.clear();
        self.queue_handshake(HandshakeType::ClientHello, body);
        self.send_new_flight(now, true);
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
        let timer = config.common.retransmit_timer(peer, Role::Server, cookie_rtt);
        let mut c = Self::new(Role::Server, peer, RoleConfig::Server(config), rng, now, timer);
        c.client_random = ch.random.0;
        // RFC 6347 §4.2.2: after a stateless HelloVerifyRequest (message_seq 0) the server's next
        // message continues the numbering; matching the ClientHello's message_seq does that.
        c.send_seq = message_seq;
        // The stateless HelloVerifyRequest reused the first ClientHello's record sequence number
        // (RFC 6347 §4.2.1) and we keep no record of it; continuing from the second
        // ClientHello's number (as OpenSSL does) never repeats one, which peers such as GnuTLS
        // would drop as a replay.
        c.write_seq[0] = record_seq;
        c.reasm.set_next_seq(message_seq.wrapping_add(1));
        let msg = HandshakeMessage { msg_type: HandshakeType::ClientHello, message_seq, body: ch.to_vec() };
        c.hello_digest = hello_digest(&*c.common().provider, &msg.body);
        msg.transcript_bytes(&mut c.transcript);
        if let Err(e) = c.server_handle_client_hello(now, ch, fetched) {
            c.fail(e);
        }
        c
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Client or server.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the handshake completed and the connection is open.
    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    /// Whether the handshake is still running.
    pub fn is_handshaking(&self) -> bool {
        self.state == State::Handshaking
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.out.close_reason.as_deref()
    }

    /// The negotiated cipher suite.
    pub fn suite(&self) -> Option<CipherSuite> {
        self.suite.map(|s| s.suite)
    }

    /// The authenticated peer identity.
    pub fn peer_identity(&self) -> &PeerIdentity {
        &self.identity
    }

    /// Whether the handshake was abbreviated (session resumption).
    pub fn is_resumed(&self) -> bool {
        self.resumed
    }

    pub(crate) fn write_epoch(&self) -> u16 {
        self.write_epoch
    }

    /// The session to offer for resumption on a later connection (client side), available once
    /// established and if the server issued a session ID.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_deref()
    }

    /// Whether `client_hello_body` is the ClientHello that created this association (a
    /// retransmission or network duplicate of it).
    pub fn is_same_client_hello(&self, client_hello_body: &[u8]) -> bool {
        self.role == Role::Server && hello_digest(&*self.common().provider, client_hello_body) == self.hello_digest
    }

    /// The ClientHello random of this handshake.
    pub fn client_random(&self) -> &[u8; 32] {
        &self.client_random
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.out.stats
    }

    /// When a datagram was last received from the peer (for idle expiry).
    pub fn last_activity(&self) -> Instant {
        self.last_activity
    }

    /// Largest application-data payload that fits one datagram at the configured MTU.
    pub fn max_payload(&self) -> usize {
        let overhead = self.write_prot.as_ref().map_or(RecordHeader::LEN + 24, |p| p.overhead());
        self.common().mtu.saturating_sub(overhead).min(16384)
    }

    /// The next datagram to send to the peer.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.poll_transmit()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.poll_event()
    }

    /// When [`Connection::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Handshaking if self.timer_armed => self.timer.deadline(),
            State::Established => self.linger_until,
            _ => None,
        }
    }

    /// Drives the retransmission timer (RFC 6347 §4.2.4.1).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Established {
            if self.linger_until.is_some_and(|t| t <= now) {
                self.release_handshake();
            }
            return;
        }
        let Some(deadline) = self.poll_timeout() else { return };
        if now < deadline {
            return;
        }
        if self.timer.on_timeout(now).is_err() {
            self.timer_armed = false;
            self.fail(Error::HandshakeTimeout);
            return;
        }
        self.out.stats.retransmissions += 1;
        self.encode_flight();
    }

    /// Sends one application-data record.
    pub fn send(&mut self, data: &[u8]) -> Result<(), UsageError> {
        if self.state != State::Established {
            return Err(UsageError::NotConnected);
        }
        let max = self.max_payload();
        if data.len() > max {
            return Err(UsageError::MessageTooLarge { len: data.len(), max });
        }
        let mut out = Vec::with_capacity(data.len() + 64);
        self.write_record(ContentType::ApplicationData, data, &mut out).map_err(|e| match e {
            Error::LimitReached(w) => UsageError::LimitReached(w),
            _ => UsageError::Crypto,
        })?;
        self.push_datagram(out);
        Ok(())
    }

    /// Sends close_notify (RFC 5246 §7.2.1) and closes.
    pub fn close(&mut self) {
        if self.state == State::Closed {
            return;
        }
        self.send_alert(AlertLevel::Warning, AlertDescription::CloseNotify);
        self.closed(CloseReason::Local);
    }

    // ----------------------------------------------------------------------------------------
    // input

    /// Processes one datagram from the peer.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        if self.state == State::Closed {
            return;
        }
        self.out.stats.datagrams_received += 1;
        self.last_activity = now;
        let mut peer_repeated = false;
        for rec in record::split_datagram(datagram) {
            self.handle_record(rec.header, rec.fragment, &mut peer_repeated);
            if self.state == State::Closed {
                return;
            }
        }
        self.drain_handshake(now, &mut peer_repeated);
        if peer_repeated && self.state != State::Closed && !self.flight.is_empty() {
            // RFC 6347 §4.2.4: a repeated peer flight means ours was lost: resend it.
            if self.state == State::Handshaking || self.holds_last_flight {
                self.out.stats.retransmissions += 1;
                self.timer.note_retransmitted();
                self.encode_flight();
            }
        }
    }

    fn handle_record(&mut self, header: RecordHeader, fragment: &[u8], peer_repeated: &mut bool) {
        if header.version != ProtocolVersion::DTLS1_2 && header.version != ProtocolVersion::DTLS1_0 {
            self.out.stats.records_invalid += 1;
            return;
        }
        let plaintext: Vec<u8>;
        let payload: &[u8] = match header.epoch {
            0 => fragment,
            1 => {
                let Some(prot) = &self.read_prot else {
                    // Keys not derived yet: the record overtook the handshake message that
                    // makes them. Hold a bounded number and retry later.
                    if self.early_records.len() < self.common().max_early_records {
                        self.early_records.push((header, fragment.to_vec()));
                    } else {
                        self.out.stats.records_invalid += 1;
                    }
                    return;
                };
                if !self.replay.check(header.sequence_number) {
                    self.out.stats.records_replayed += 1;
                    return;
                }
                match prot.open(&header, fragment) {
                    Ok(p) => {
                        // RFC 6347 §4.1.2.6: the window moves only after authentication.
                        self.replay.mark(header.sequence_number);
                        plaintext = p;
                        &plaintext
                    }
                    Err(_) => {
                        self.out.stats.records_auth_failed += 1;
                        return;
                    }
                }
            }
            _ => {
                self.out.stats.records_invalid += 1;
                return;
            }
        };
        match header.content_type {
            ContentType::Handshake => self.handle_handshake_record(header.epoch, payload, peer_repeated),
            ContentType::ChangeCipherSpec => {
                if payload != [1] {
                    self.out.stats.records_invalid += 1;
                }
            }
            ContentType::Alert => self.handle_alert(header.epoch, payload),
            ContentType::ApplicationData if header.epoch == 1 => match self.state {
                State::Established => {
                    if self.holds_last_flight {
                        self.release_handshake();
                    }
                    self.out.events.push_back(Event::ApplicationData(payload.to_vec()));
                }
                State::Handshaking if self.early_app_data.len() < self.common().max_early_records => {
                    // Authenticated but the Finished that completes the handshake is still
                    // missing (reordering); deliver once it arrives.
                    self.early_app_data.push(payload.to_vec());
                }
                _ => self.out.stats.records_invalid += 1,
            },
            _ => self.out.stats.records_invalid += 1,
        }
    }

    fn handle_handshake_record(&mut self, epoch: u16, payload: &[u8], peer_repeated: &mut bool) {
        let mut r = Reader::new(payload);
        while !r.is_empty() {
            let Ok((hdr, frag)) = HandshakeHeader::read_fragment(&mut r) else {
                self.out.stats.records_invalid += 1;
                return;
            };
            // Finished must be protected by the new epoch; a plaintext one is forged or broken.
            if epoch == 0 && hdr.msg_type == HandshakeType::Finished {
                self.out.stats.records_invalid += 1;
                continue;
            }
            if epoch == 0
                && hdr.msg_type == HandshakeType::HelloVerifyRequest
                && hdr.fragment_offset == 0
                && hdr.fragment_length == hdr.length
                && matches!(self.hs.as_deref(), Some(Hs::CExpectServerHello { .. }))
            {
                self.pending_hvr = Some(frag.to_vec());
                continue;
            }
            if self.state == State::Established && hdr.message_seq >= self.reasm.next_seq() {
                // A new handshake message after the handshake: renegotiation, which this
                // implementation refuses (RFC 5746 §4.4 allows a no_renegotiation warning).
                if epoch == 1 && matches!(hdr.msg_type, HandshakeType::HelloRequest | HandshakeType::ClientHello) {
                    self.send_alert(AlertLevel::Warning, AlertDescription::NoRenegotiation);
                }
                self.out.stats.records_invalid += 1;
                continue;
            }
            match self.reasm.insert(&hdr, frag) {
                Ok(Insert::Old) if hdr.message_seq < self.peer_flight_start => *peer_repeated = true,
                Ok(_) => {}
                Err(_) => self.out.stats.records_invalid += 1,
            }
        }
    }

    fn handle_alert(&mut self, epoch: u16, payload: &[u8]) {
        let Ok(alert) = Alert::read_exact(payload) else {
            self.out.stats.records_invalid += 1;
            return;
        };
        // After the handshake, plaintext alerts are unauthenticated and could be spoofed.
        if self.state == State::Established && epoch == 0 {
            self.out.stats.records_invalid += 1;
            return;
        }
        if alert.description == AlertDescription::CloseNotify {
            if self.state == State::Established {
                self.send_alert(AlertLevel::Warning, AlertDescription::CloseNotify);
            }
            self.closed(CloseReason::PeerClosed);
        } else if alert.level == AlertLevel::Fatal || self.state == State::Handshaking {
            // RFC 6347 §4.1.2.7 treats alerts as fatal in practice; a warning during the
            // handshake (other than no_renegotiation) means the peer will not continue.
            if alert.level == AlertLevel::Fatal || alert.description != AlertDescription::NoRenegotiation {
                self.closed(CloseReason::Error(Error::AlertReceived(alert.description)));
            }
        }
    }

    fn drain_handshake(&mut self, now: Instant, peer_repeated: &mut bool) {
        if let Some(body) = self.pending_hvr.take()
            && let Err(e) = self.client_handle_hvr(now, &body)
        {
            self.fail(e);
            return;
        }
        loop {
            while let Some(msg) = self.reasm.pop() {
                if let Err(e) = self.handle_handshake_message(now, msg) {
                    self.fail(e);
                    return;
                }
                if self.state == State::Closed {
                    return;
                }
            }
            if self.read_prot.is_some() && !self.early_records.is_empty() {
                for (h, f) in std::mem::take(&mut self.early_records) {
                    self.handle_record(h, &f, peer_repeated);
                    if self.state == State::Closed {
                        return;
                    }
                }
                continue;
            }
            break;
        }
    }

    fn handle_handshake_message(&mut self, now: Instant, msg: HandshakeMessage) -> Result<(), Error> {
        let hs = self.hs.take().map_or(Hs::Done, |b| *b);
        let typ = msg.msg_type;
        // The transcript (RFC 6347 §4.2.6) holds each message as if sent unfragmented. The
        // HelloVerifyRequest is excluded (RFC 6347 §4.2.1); Finished is added after checking.
        let before_len = self.transcript.len();
        if typ != HandshakeType::HelloVerifyRequest {
            msg.transcript_bytes(&mut self.transcript);
        }
        let body = msg.body.as_slice();
        let unexpected = |hs: &Hs| Error::PeerMisbehaved(hs_unexpected(hs, typ));
        if self.timer_armed && typ != HandshakeType::HelloVerifyRequest {
            // The first message of the peer's next flight answers ours (RFC 6347 §4.2.4); the
            // timer measures it only if ours went out once. A HelloVerifyRequest is measured
            // as a cookie exchange, when it is acted upon.
            self.timer.on_answer(now, RttSampleKind::Flight);
        }
        let next = match (hs, typ) {
            (hs @ Hs::CExpectServerHello { .. }, HandshakeType::HelloVerifyRequest) => {
                self.hs = Some(Box::new(hs));
                return self.client_handle_hvr(now, body);
            }
            (Hs::CExpectServerHello { ch, offered }, HandshakeType::ServerHello) => {
                let sh = ServerHello::read_exact(body)?;
                self.client_handle_server_hello(ch, offered, sh)?
            }
            (Hs::CExpectCertificate { d }, HandshakeType::Certificate) => {
                let cert = read_all(body, |r| Certificate::read_with(r, d.cert_type))?;
                let (point, identity) = self.client_verify_server_cert(&cert)?;
                Hs::CExpectServerKeyExchange { d, server_point: Some(point), identity }
            }
            (Hs::CExpectServerKeyExchange { d, server_point, identity }, HandshakeType::ServerKeyExchange) => {
                let ske = read_all(body, |r| ServerKeyExchange::read_with(r, d.suite.kx))?;
                let server_ecdh = self.client_check_ske(&d, server_point.as_ref(), ske)?;
                Hs::CExpectDone { d, server_point, identity, server_ecdh, cert_requested: false }
            }
            (Hs::CExpectServerKeyExchange { d, server_point, identity }, HandshakeType::ServerHelloDone)
                if d.suite.kx == KeyExchangeAlgorithm::Psk =>
            {
                // RFC 4279 §2: ServerKeyExchange may be omitted when there is no hint.
                if !body.is_empty() {
                    return Err(InvalidMessage::TrailingData("ServerHelloDone").into());
                }
                self.client_send_final_flight(now, d, server_point, identity, None, false)?
            }
            (
                Hs::CExpectDone { d, server_point, identity, server_ecdh, cert_requested: false },
                HandshakeType::CertificateRequest,
            ) if d.suite.kx == KeyExchangeAlgorithm::EcdheEcdsa => {
                let cr = CertificateRequest::read_exact(body)?;
                if !cr.supported_signature_algorithms.contains(&SignatureScheme::EcdsaSecp256r1Sha256) {
                    // We can still answer with an empty Certificate; the server decides.
                }
                Hs::CExpectDone { d, server_point, identity, server_ecdh, cert_requested: true }
            }
            (
                Hs::CExpectDone { d, server_point, identity, server_ecdh, cert_requested },
                HandshakeType::ServerHelloDone,
            ) => {
                if !body.is_empty() {
                    return Err(InvalidMessage::TrailingData("ServerHelloDone").into());
                }
                self.client_send_final_flight(now, d, server_point, identity, server_ecdh, cert_requested)?
            }
            (Hs::CExpectFinished { d, master, identity }, HandshakeType::Finished) => {
                self.verify_peer_finished(now, &master, before_len, &msg, b"server finished", None)?;
                self.established(now, &d, &master, identity, false);
                Hs::Done
            }
            (Hs::CExpectResumedFinished { d, master, identity }, HandshakeType::Finished) => {
                self.verify_peer_finished(
                    now,
                    &master,
                    before_len,
                    &msg,
                    b"server finished",
                    Some(b"client finished"),
                )?;
                self.established(now, &d, &master, identity, true);
                Hs::Done
            }
            (Hs::SExpectCertificate { d, eph }, HandshakeType::Certificate) => {
                let cert = read_all(body, |r| Certificate::read_with(r, d.cert_type))?;
                let client = self.server_verify_client_cert(&cert)?;
                Hs::SExpectClientKeyExchange { d, eph, client }
            }
            (Hs::SExpectClientKeyExchange { d, eph, client }, HandshakeType::ClientKeyExchange) => {
                let cke = read_all(body, |r| ClientKeyExchange::read_with(r, d.suite.kx))?;
                self.server_handle_cke(d, eph, client, cke)?
            }
            (Hs::SExpectCertificateVerify { d, master, point, identity }, HandshakeType::CertificateVerify) => {
                let cv = DigitallySigned::read_exact(body)?;
                if cv.scheme != SignatureScheme::EcdsaSecp256r1Sha256 {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::CertificateVerifyUnofferedScheme));
                }
                // The signature covers every handshake message before CertificateVerify.
                self.common()
                    .provider
                    .ecdsa_p256_verify(&point, &self.transcript[..before_len], &cv.signature)
                    .map_err(|_| Error::DecryptError("client CertificateVerify"))?;
                Hs::SExpectFinished { d, master, identity }
            }
            (Hs::SExpectFinished { d, master, identity }, HandshakeType::Finished) => {
                self.verify_peer_finished(
                    now,
                    &master,
                    before_len,
                    &msg,
                    b"client finished",
                    Some(b"server finished"),
                )?;
                self.established(now, &d, &master, identity, false);
                Hs::Done
            }
            (Hs::SExpectResumedFinished { d, master, identity }, HandshakeType::Finished) => {
                self.verify_peer_finished(now, &master, before_len, &msg, b"client finished", None)?;
                self.established(now, &d, &master, identity, true);
                Hs::Done
            }
            (hs, _) => return Err(unexpected(&hs)),
        };
        self.hs = (!matches!(next, Hs::Done)).then(|| Box::new(next));
        Ok(())
    }

    // ----------------------------------------------------------------------------------------
    // client

    fn client_config(&self) -> (&Arc<ClientConfig>, &str) {
        match &self.cfg {
            RoleConfig::Client { config, server_name } => (config, server_name),
            RoleConfig::Server(_) => unreachable!("client state on a server connection"),
        }
    }

    fn client_handle_server_hello(
        &mut self,
        ch: ClientHello,
        offered: Option<Session>,
        sh: ServerHello,
    ) -> Result<Hs, Error> {
        let require_ems = self.common().require_extended_master_secret;
        if ch.offers_dtls13() {
            // RFC 8446 §4.1.3 (RFC 9147 §5.3): a client that offered 1.3 and gets a 1.2
            // ServerHello MUST abort with illegal_parameter if the server random ends with a
            // downgrade sentinel; a 1.3 server's answer (supported_versions) is no 1.2 one
            // either (§4.2.1), e.g. after an injected HelloVerifyRequest (see `crate::auto`).
            if crate::dtls13::msgs::DowngradeSentinel::find(&sh.random).is_some() {
                return Err(Error::PeerMisbehaved(PeerMisbehaved::DowngradeSentinel12));
            }
            if sh
                .extensions
                .iter()
                .any(|e| matches!(e, ServerExtension::Unknown { typ: ExtensionType::SupportedVersions, .. }))
            {
                return Err(Error::PeerMisbehaved(PeerMisbehaved::ServerHello13AfterFallback));
            }
        }
        if sh.server_version != ProtocolVersion::DTLS1_2 {
            return Err(Error::Incompatible(Incompatible::ServerVersionNot12));
        }
        if !ch.cipher_suites.contains(&sh.cipher_suite) {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::ServerChoseUnofferedSuite12));
        }
        let suite =
            suites::lookup(sh.cipher_suite).ok_or(Error::PeerMisbehaved(PeerMisbehaved::ServerChoseUnknownSuite))?;
        if sh.compression_method != Compression::Null {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::ServerChoseCompression));
        }
        let mut ems = false;
        let mut cert_type = CertificateType::X509;
        for ext in &sh.extensions {
            match ext {
                ServerExtension::ExtendedMasterSecret => ems = true,
                ServerExtension::RenegotiationInfo(v) if !v.is_empty() => {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::NonEmptyRenegotiationInfo));
                }
                ServerExtension::ServerCertificateType(t) => cert_type = *t,
                ServerExtension::Unknown { .. } => {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::UnsolicitedServerExtension));
                }
                _ => {}
            }
        }
        let d = HsData {
            suite,
            client_random: ch.random.0,
            server_random: sh.random.0,
            session_id: sh.session_id.0.clone(),
            ems,
            cert_type,
        };
        self.suite = Some(suite);
        if let Some(session) = offered.filter(|s| !sh.session_id.0.is_empty() && s.id == sh.session_id.0) {
            // Abbreviated handshake (RFC 5246 §7.3).
            if session.suite != suite.suite {
                return Err(Error::PeerMisbehaved(PeerMisbehaved::ResumedWithOtherSuite12));
            }
            if session.extended_master_secret != ems {
                // RFC 7627 §5.3: the resumed session must keep the original EMS status.
                return Err(Error::PeerMisbehaved(PeerMisbehaved::ResumptionChangedEms));
            }
            let master = MasterSecret::from_bytes(*session.master_secret());
            self.install_keys(&d, &master)?;
            return Ok(Hs::CExpectResumedFinished { d, master, identity: session.peer_identity.clone() });
        }
        if require_ems && !ems {
            return Err(Error::Incompatible(Incompatible::ServerWithoutEms));
        }
        Ok(match suite.kx {
            KeyExchangeAlgorithm::EcdheEcdsa => Hs::CExpectCertificate { d },
            _ => {
                let identity = PeerIdentity::Psk(
                    self.client_config().0.psk.as_ref().map(|p| p.identity.clone()).unwrap_or_default(),
                );
                Hs::CExpectServerKeyExchange { d, server_point: None, identity }
            }
        })
    }

    fn client_verify_server_cert(&self, cert: &Certificate) -> Result<([u8; 65], PeerIdentity), Error> {
        let (config, server_name) = self.client_config();
        let now = (config.common.wall_clock)();
        match (cert, &config.verifier) {
            (Certificate::X509(chain), Some(PeerVerifier::WebPki(v))) => {
                if chain.is_empty() {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::NoServerCertificate12));
                }
                let point = v.verify_server(chain, server_name, now)?;
                Ok((point, PeerIdentity::Certificate(chain.clone())))
            }
            (Certificate::RawPublicKey(spki), Some(PeerVerifier::Pinned(p))) => {
                let point = p.verify(spki)?;
                Ok((point, PeerIdentity::RawPublicKey(spki.clone())))
            }
            _ => Err(Error::Incompatible(Incompatible::ServerCertificateTypeMismatch)),
        }
    }

    fn client_check_ske(
        &self,
        d: &HsData,
        server_point: Option<&[u8; 65]>,
        ske: ServerKeyExchange,
    ) -> Result<Option<Vec<u8>>, Error> {
        let check_params = |p: &ServerEcdhParams| {
            if p.curve_type != EcCurveType::NamedCurve || p.named_curve != NamedGroup::Secp256r1 {
                Err(Error::PeerMisbehaved(PeerMisbehaved::ServerChoseUnofferedGroup))
            } else {
                Ok(())
            }
        };
        match (d.suite.kx, ske) {
            (KeyExchangeAlgorithm::Psk, ServerKeyExchange::Psk { .. }) => Ok(None),
            (KeyExchangeAlgorithm::EcdhePsk, ServerKeyExchange::EcdhePsk { params, .. }) => {
                check_params(&params)?;
                Ok(Some(params.public))
            }
            (KeyExchangeAlgorithm::EcdheEcdsa, ServerKeyExchange::EcdheEcdsa { params, signature }) => {
                check_params(&params)?;
                if signature.scheme != SignatureScheme::EcdsaSecp256r1Sha256 {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::ServerKeyExchangeUnofferedScheme));
                }
                let point = server_point.ok_or(Error::PeerMisbehaved(PeerMisbehaved::MissingServerCertificate))?;
                // RFC 8422 §5.4: signature over client_random || server_random || ServerECDHParams.
                let mut signed = Vec::with_capacity(64 + 70);
                signed.extend_from_slice(&d.client_random);
                signed.extend_from_slice(&d.server_random);
                params.encode(&mut signed);
                self.common()
                    .provider
                    .ecdsa_p256_verify(point, &signed, &signature.signature)
                    .map_err(|_| Error::DecryptError("ServerKeyExchange signature"))?;
                Ok(Some(params.public))
            }
            _ => Err(Error::PeerMisbehaved(PeerMisbehaved::ServerKeyExchangeMismatch)),
        }
    }

    fn client_send_final_flight(
        &mut self,
        now: Instant,
        d: HsData,
        server_point: Option<[u8; 65]>,
        identity: PeerIdentity,
        server_ecdh: Option<Vec<u8>>,
        cert_requested: bool,
    ) -> Result<Hs, Error> {
        let _ = server_point;
        let config = self.client_config().0.clone();
        let provider = config.common.provider.clone();
        self.flight.clear();
        let mut signing_key = None;
        if cert_requested {
            let cert = match &config.client_cert {
                Some(k) if d.cert_type == CertificateType::RawPublicKey || k.chain.is_empty() => {
                    signing_key = Some(k.key.clone());
                    Certificate::RawPublicKey(k.key.public_key_spki())
                }
                Some(k) => {
                    signing_key = Some(k.key.clone());
                    Certificate::X509(k.chain.clone())
                }
                // RFC 5246 §7.4.6: a client without a suitable certificate sends an empty one.
                None => Certificate::X509(Vec::new()),
            };
            self.queue_handshake(HandshakeType::Certificate, encode_to_vec(|o| cert.encode(o)));
        }
        let psk_identity = || config.psk.as_ref().map(|p| p.identity.clone()).unwrap_or_default();
        let (cke, pms) = match d.suite.kx {
            KeyExchangeAlgorithm::Psk => {
                let psk = config.psk.as_ref().ok_or(Error::Config(ConfigError::new("PSK suite without a PSK")))?;
                (ClientKeyExchange::Psk { identity: psk_identity() }, prf::psk_pre_master(psk.key()))
            }
            KeyExchangeAlgorithm::EcdhePsk => {
                let psk = config.psk.as_ref().ok_or(Error::Config(ConfigError::new("PSK suite without a PSK")))?;
                let peer = server_ecdh.ok_or(Error::PeerMisbehaved(PeerMisbehaved::MissingServerKeyExchange))?;
                let eph = provider.ecdh_p256(self.rng())?;
                let public = eph.public_key().to_vec();
                let z = eph.complete(&peer).map_err(|_| Error::PeerMisbehaved(PeerMisbehaved::InvalidEcdhPoint))?;
                (
                    ClientKeyExchange::EcdhePsk { identity: psk_identity(), public },
                    prf::ecdhe_psk_pre_master(&*z, psk.key()),
                )
            }
            KeyExchangeAlgorithm::EcdheEcdsa => {
                let peer = server_ecdh.ok_or(Error::PeerMisbehaved(PeerMisbehaved::MissingServerKeyExchange))?;
                let eph = provider.ecdh_p256(self.rng())?;
                let public = eph.public_key().to_vec();
                let z = eph.complete(&peer).map_err(|_| Error::PeerMisbehaved(PeerMisbehaved::InvalidEcdhPoint))?;
                (ClientKeyExchange::Ecdhe { public }, Zeroizing::new(z.to_vec()))
            }
        };
        self.queue_handshake(HandshakeType::ClientKeyExchange, encode_to_vec(|o| cke.encode(o)));
        let master = self.derive_master(&d, &pms);
        if let Some(key) = signing_key {
            // RFC 5246 §7.4.8: signature over all handshake messages so far.
            let signature = key.sign(&self.transcript)?;
            let cv = DigitallySigned { scheme: SignatureScheme::EcdsaSecp256r1Sha256, signature };
            self.queue_handshake(HandshakeType::CertificateVerify, cv.to_vec());
        }
        self.install_keys(&d, &master)?;
        self.queue_ccs_finished(&master, b"client finished");
        self.send_new_flight(now, true);
        Ok(Hs::CExpectFinished { d, master, identity })
    }

    // ----------------------------------------------------------------------------------------
    // server

    fn server_config(&self) -> Arc<ServerConfig> {
        match &self.cfg {
            RoleConfig::Server(c) => c.clone(),
            RoleConfig::Client { .. } => unreachable!("server state on a client connection"),
        }
    }

    fn server_handle_client_hello(
        &mut self,
        now: Instant,
        ch: ClientHello,
        fetched: &[FetchedSession],
    ) -> Result<(), Error> {
        let config_arc = self.server_config();
        let config = &*config_arc;
        let provider = config.common.provider.clone();
        // DTLS versions count down: 1.2 is 0xFEFD, so anything numerically above it is older.
        if ch.client_version.0 > ProtocolVersion::DTLS1_2.0 {
            return Err(Error::Incompatible(Incompatible::ClientWithoutDtls12));
        }
        if !ch.compression_methods.contains(&Compression::Null) {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::NullCompressionNotOffered));
        }
        let mut ems = false;
        let mut reneg = ch.cipher_suites.contains(&CipherSuite::TLS_EMPTY_RENEGOTIATION_INFO_SCSV);
        let mut groups_ok = true;
        let mut sigs_ok = true;
        let mut point_formats = false;
        let mut server_cert_types: Option<&[CertificateType]> = None;
        let mut client_cert_types: Option<&[CertificateType]> = None;
        for ext in &ch.extensions {
            match ext {
                ClientExtension::ExtendedMasterSecret => ems = true,
                ClientExtension::RenegotiationInfo(v) => {
                    if !v.is_empty() {
                        return Err(Error::PeerMisbehaved(PeerMisbehaved::RenegotiationInfoOnInitialHandshake));
                    }
                    reneg = true;
                }
                ClientExtension::SupportedGroups(g) => groups_ok = g.contains(&NamedGroup::Secp256r1),
                ClientExtension::SignatureAlgorithms(s) => sigs_ok = s.contains(&SignatureScheme::EcdsaSecp256r1Sha256),
                ClientExtension::EcPointFormats(f) => {
                    if !f.contains(&EcPointFormat::Uncompressed) {
                        return Err(Error::PeerMisbehaved(PeerMisbehaved::UncompressedPointsNotOffered));
                    }
                    point_formats = true;
                }
                ClientExtension::ServerCertificateType(t) => server_cert_types = Some(t),
                ClientExtension::ClientCertificateType(t) => client_cert_types = Some(t),
                _ => {}
            }
        }
        let mut server_random = [0u8; 32];
        self.rng().fill(&mut server_random);
        if config.dtls13 {
            // RFC 8446 §4.1.3 (RFC 9147 §5.3): a server that can do 1.3 and negotiates 1.2
            // MUST end its random with "DOWNGRD\x01", so that a 1.3 client whose offer was
            // stripped in transit notices.
            server_random[24..].copy_from_slice(&crate::dtls13::msgs::DowngradeSentinel::Dtls12.bytes());
        }

        // Session-ID resumption (RFC 5246 §7.4.1.2), with RFC 7627 §5.3's EMS rules: a
        // session handed in by a layer, else one from our store.
        if !ch.session_id.0.is_empty()
            && let Some((session, _)) = crate::resumption::find_session(config, fetched, &ch.session_id.0, false, now)
        {
            {
                if session.extended_master_secret && !ems {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::ResumptionWithoutEms));
                }
                let suite_ok = ch.cipher_suites.contains(&session.suite)
                    && config.common.suites.iter().any(|s| s.suite == session.suite);
                if suite_ok && session.extended_master_secret == ems {
                    let suite = suites::lookup(session.suite).ok_or(Error::Crypto)?;
                    let d = HsData {
                        suite,
                        client_random: ch.random.0,
                        server_random,
                        session_id: session.id.clone(),
                        ems,
                        cert_type: CertificateType::X509,
                    };
                    self.suite = Some(suite);
                    self.flight.clear();
                    let sh = self.server_hello(&d, reneg, false, None);
                    self.queue_handshake(HandshakeType::ServerHello, sh.to_vec());
                    let master = MasterSecret::from_bytes(*session.master_secret());
                    self.install_keys(&d, &master)?;
                    self.queue_ccs_finished(&master, b"server finished");
                    self.send_new_flight(now, true);
                    self.hs = Some(Box::new(Hs::SExpectResumedFinished {
                        d,
                        master,
                        identity: session.peer_identity.clone(),
                    }));
                    return Ok(());
                }
            }
        }
        if config.common.require_extended_master_secret && !ems {
            return Err(Error::Incompatible(Incompatible::ClientWithoutEms));
        }

        // Certificate type (RFC 7250 §4.2): the server's preference among the client's offer.
        let server_cert_type = match server_cert_types {
            None => (config.cert.as_ref().is_some_and(|c| !c.chain.is_empty())).then_some(CertificateType::X509),
            Some(types) => {
                if config.raw_public_key && config.cert.is_some() && types.contains(&CertificateType::RawPublicKey) {
                    Some(CertificateType::RawPublicKey)
                } else if types.contains(&CertificateType::X509)
                    && config.cert.as_ref().is_some_and(|c| !c.chain.is_empty())
                {
                    Some(CertificateType::X509)
                } else {
                    None
                }
            }
        };
        let suite = config
            .common
            .suites
            .iter()
            .find(|s| {
                ch.cipher_suites.contains(&s.suite)
                    && match s.kx {
                        KeyExchangeAlgorithm::Psk => config.psks.is_some(),
                        KeyExchangeAlgorithm::EcdhePsk => config.psks.is_some() && groups_ok,
                        KeyExchangeAlgorithm::EcdheEcdsa => server_cert_type.is_some() && groups_ok && sigs_ok,
                    }
            })
            .and_then(|s| suites::lookup(s.suite))
            .ok_or(Error::Incompatible(Incompatible::NoCommonSuite12))?;
        let ecdsa = suite.kx == KeyExchangeAlgorithm::EcdheEcdsa;
        let cert_type = server_cert_type.filter(|_| ecdsa).unwrap_or(CertificateType::X509);
        let (request_client_cert, client_cert_type) = match (&config.client_auth, ecdsa) {
            (ClientAuth::None, _) | (_, false) => (false, None),
            (ClientAuth::Optional(v) | ClientAuth::Required(v), true) => {
                let want = match v {
                    PeerVerifier::WebPki(_) => CertificateType::X509,
                    PeerVerifier::Pinned(_) => CertificateType::RawPublicKey,
                };
                match client_cert_types {
                    Some(t) if t.contains(&want) => (true, Some(want)),
                    Some(_) => (true, None),
                    None if want == CertificateType::X509 => (true, None),
                    None => (true, None),
                }
            }
        };
        let session_id = if config.issues_sessions() {
            let mut id = vec![0u8; 32];
            self.rng().fill(&mut id);
            id
        } else {
            Vec::new()
        };
        let d = HsData { suite, client_random: ch.random.0, server_random, session_id, ems, cert_type };
        self.suite = Some(suite);
        self.flight.clear();
        let sh = self.server_hello(
            &d,
            reneg,
            point_formats && suite.uses_ecdhe(),
            server_cert_types.map(|_| cert_type).filter(|_| ecdsa),
        );
        let mut sh = sh;
        if let Some(t) = client_cert_type {
            sh.extensions.push(ServerExtension::ClientCertificateType(t));
        }
        self.queue_handshake(HandshakeType::ServerHello, sh.to_vec());
        if ecdsa {
            let ck = config.cert.as_ref().ok_or(Error::Crypto)?;
            let cert = match cert_type {
                CertificateType::RawPublicKey => Certificate::RawPublicKey(ck.key.public_key_spki()),
                _ => Certificate::X509(ck.chain.clone()),
            };
            self.queue_handshake(HandshakeType::Certificate, encode_to_vec(|o| cert.encode(o)));
        }
        let hint = config.psk_hint.clone().unwrap_or_default();
        let eph = if suite.uses_ecdhe() { Some(provider.ecdh_p256(self.rng())?) } else { None };
        let params = eph.as_ref().map(|e| ServerEcdhParams {
            curve_type: EcCurveType::NamedCurve,
            named_curve: NamedGroup::Secp256r1,
            public: e.public_key().to_vec(),
        });
        let ske = match (suite.kx, params) {
            (KeyExchangeAlgorithm::Psk, _) if hint.is_empty() => None,
            (KeyExchangeAlgorithm::Psk, _) => Some(ServerKeyExchange::Psk { hint }),
            (KeyExchangeAlgorithm::EcdhePsk, Some(params)) => Some(ServerKeyExchange::EcdhePsk { hint, params }),
            (KeyExchangeAlgorithm::EcdheEcdsa, Some(params)) => {
                let ck = config.cert.as_ref().ok_or(Error::Crypto)?;
                let mut signed = Vec::with_capacity(64 + 70);
                signed.extend_from_slice(&d.client_random);
                signed.extend_from_slice(&d.server_random);
                params.encode(&mut signed);
                let signature = ck.key.sign(&signed)?;
                Some(ServerKeyExchange::EcdheEcdsa {
                    params,
                    signature: DigitallySigned { scheme: SignatureScheme::EcdsaSecp256r1Sha256, signature },
                })
            }
            _ => return Err(Error::Crypto),
        };
        if let Some(ske) = ske {
            self.queue_handshake(HandshakeType::ServerKeyExchange, encode_to_vec(|o| ske.encode(o)));
        }
        if request_client_cert {
            let cr = CertificateRequest {
                certificate_types: vec![ClientCertificateType::EcdsaSign],
                supported_signature_algorithms: vec![SignatureScheme::EcdsaSecp256r1Sha256],
                certificate_authorities: Vec::new(),
            };
            self.queue_handshake(HandshakeType::CertificateRequest, cr.to_vec());
        }
        self.queue_handshake(HandshakeType::ServerHelloDone, Vec::new());
        self.send_new_flight(now, true);
        self.hs = Some(Box::new(if request_client_cert {
            Hs::SExpectCertificate { d, eph }
        } else {
            Hs::SExpectClientKeyExchange { d, eph, client: None }
        }));
        Ok(())
    }

    fn server_hello(
        &self,
        d: &HsData,
        reneg: bool,
        point_formats: bool,
        cert_type: Option<CertificateType>,
    ) -> ServerHello {
        let mut extensions = Vec::new();
        if reneg {
            extensions.push(ServerExtension::RenegotiationInfo(Vec::new()));
        }
        if d.ems {
            extensions.push(ServerExtension::ExtendedMasterSecret);
        }
        if point_formats {
            extensions.push(ServerExtension::EcPointFormats(vec![EcPointFormat::Uncompressed]));
        }
        if let Some(t) = cert_type {
            extensions.push(ServerExtension::ServerCertificateType(t));
        }
        ServerHello {
            server_version: ProtocolVersion::DTLS1_2,
            random: Random(d.server_random),
            session_id: SessionId(d.session_id.clone()),
            cipher_suite: d.suite.suite,
            compression_method: Compression::Null,
            extensions,
        }
    }

    fn server_verify_client_cert(&self, cert: &Certificate) -> Result<Option<([u8; 65], PeerIdentity)>, Error> {
        let config = self.server_config();
        let now = (config.common.wall_clock)();
        let (verifier, required) = match &config.client_auth {
            ClientAuth::None => {
                return Err(Error::PeerMisbehaved(PeerMisbehaved::UnrequestedClientCertificate12));
            }
            ClientAuth::Optional(v) => (v, false),
            ClientAuth::Required(v) => (v, true),
        };
        match (cert, verifier) {
            (Certificate::X509(chain), _) if chain.is_empty() => {
                if required {
                    // RFC 5246 §7.4.6: the server may abort with handshake_failure.
                    Err(Error::Incompatible(Incompatible::ClientCertificateRequired12))
                } else {
                    Ok(None)
                }
            }
            (Certificate::X509(chain), PeerVerifier::WebPki(v)) => {
                let point = v.verify_client(chain, now)?;
                Ok(Some((point, PeerIdentity::Certificate(chain.clone()))))
            }
            (Certificate::RawPublicKey(spki), PeerVerifier::Pinned(p)) => {
                let point = p.verify(spki)?;
                Ok(Some((point, PeerIdentity::RawPublicKey(spki.clone()))))
            }
            _ => Err(Error::Incompatible(Incompatible::ClientCertificateTypeRefused)),
        }
    }

    fn server_handle_cke(
        &mut self,
        d: HsData,
        eph: Option<Box<dyn EcdhKeyPair>>,
        client: Option<([u8; 65], PeerIdentity)>,
        cke: ClientKeyExchange,
    ) -> Result<Hs, Error> {
        let config = self.server_config();
        let psk_for = |identity: &[u8]| -> Result<Zeroizing<Vec<u8>>, Error> {
            config.psks.as_ref().and_then(|s| s.key_for(identity)).ok_or(Error::UnknownPskIdentity)
        };
        let mut identity = PeerIdentity::Anonymous;
        let pms = match (d.suite.kx, cke) {
            (KeyExchangeAlgorithm::Psk, ClientKeyExchange::Psk { identity: id }) => {
                let key = psk_for(&id)?;
                identity = PeerIdentity::Psk(id);
                prf::psk_pre_master(&key)
            }
            (KeyExchangeAlgorithm::EcdhePsk, ClientKeyExchange::EcdhePsk { identity: id, public }) => {
                let key = psk_for(&id)?;
                identity = PeerIdentity::Psk(id);
                let eph = eph.ok_or(Error::Crypto)?;
                let z = eph.complete(&public).map_err(|_| Error::PeerMisbehaved(PeerMisbehaved::InvalidEcdhPoint))?;
                prf::ecdhe_psk_pre_master(&*z, &key)
            }
            (KeyExchangeAlgorithm::EcdheEcdsa, ClientKeyExchange::Ecdhe { public }) => {
                let eph = eph.ok_or(Error::Crypto)?;
                let z = eph.complete(&public).map_err(|_| Error::PeerMisbehaved(PeerMisbehaved::InvalidEcdhPoint))?;
                Zeroizing::new(z.to_vec())
            }
            _ => {
                return Err(Error::PeerMisbehaved(PeerMisbehaved::ClientKeyExchangeMismatch));
            }
        };
        let master = self.derive_master(&d, &pms);
        self.install_keys(&d, &master)?;
        Ok(match client {
            Some((point, id)) => Hs::SExpectCertificateVerify { d, master, point, identity: id },
            None => Hs::SExpectFinished { d, master, identity },
        })
    }

    // ----------------------------------------------------------------------------------------
    // shared handshake steps

    /// RFC 7627 §4 (session hash over the transcript through ClientKeyExchange) or the
    /// RFC 5246 §8.1 derivation.
    fn derive_master(&self, d: &HsData, pms: &[u8]) -> MasterSecret {
        let provider = &*self.common().provider;
        if d.ems {
            let mut h = provider.sha256();
            h.update(&self.transcript);
            MasterSecret::extended(provider, pms, &h.current())
        } else {
            MasterSecret::from_pre_master(provider, pms, &d.client_random, &d.server_random)
        }
    }

    fn install_keys(&mut self, d: &HsData, master: &MasterSecret) -> Result<(), Error> {
        let provider = self.common().provider.clone();
        let kb = prf::key_block(&*provider, master, d.suite.aead, &d.server_random, &d.client_random);
        let client = RecordProtection::new(&*provider, d.suite.aead, &kb.client_write_key, &kb.client_write_iv)?;
        let server = RecordProtection::new(&*provider, d.suite.aead, &kb.server_write_key, &kb.server_write_iv)?;
        let (write, read) = match self.role {
            Role::Client => (client, server),
            Role::Server => (server, client),
        };
        self.write_prot = Some(write);
        self.read_prot = Some(read);
        Ok(())
    }

    /// Checks the peer's Finished against the transcript before it (RFC 5246 §7.4.9) and, when
    /// `answer` names our label, sends our ChangeCipherSpec + Finished as the handshake's last
    /// flight, kept to be resent if the peer repeats its own (RFC 6347 §4.2.4).
    fn verify_peer_finished(
        &mut self,
        now: Instant,
        master: &MasterSecret,
        before_len: usize,
        msg: &HandshakeMessage,
        peer_label: &[u8],
        answer: Option<&[u8]>,
    ) -> Result<(), Error> {
        self.transcript.truncate(before_len);
        self.check_finished(master, peer_label, &msg.body)?;
        msg.transcript_bytes(&mut self.transcript);
        if let Some(label) = answer {
            self.flight.clear();
            self.queue_ccs_finished(master, label);
            self.send_new_flight(now, false);
            self.holds_last_flight = true;
        }
        Ok(())
    }

    fn check_finished(&self, master: &MasterSecret, label: &[u8], body: &[u8]) -> Result<(), Error> {
        let provider = &*self.common().provider;
        let mut h = provider.sha256();
        h.update(&self.transcript);
        let expected = prf::verify_data(provider, master, label, &h.current());
        if body.len() != expected.len() || !bool::from(expected.ct_eq(body)) {
            return Err(Error::DecryptError("Finished verify_data"));
        }
        Ok(())
    }

    fn queue_ccs_finished(&mut self, master: &MasterSecret, label: &[u8]) {
        let provider = self.common().provider.clone();
        let mut h = provider.sha256();
        h.update(&self.transcript);
        let vd = prf::verify_data(&*provider, master, label, &h.current());
        self.flight.push(FlightMsg::ChangeCipherSpec);
        self.write_epoch = 1;
        self.queue_handshake(HandshakeType::Finished, vd.to_vec());
    }

    fn established(&mut self, now: Instant, d: &HsData, master: &MasterSecret, identity: PeerIdentity, resumed: bool) {
        self.state = State::Established;
        self.timer_armed = false;
        self.timer.disarm();
        self.resumed = resumed;
        self.identity = identity.clone();
        self.transcript = Vec::new();
        if !d.session_id.is_empty() {
            let lifetime = match &self.cfg {
                RoleConfig::Server(c) => c.session_lifetime,
                // The client cannot know the server's lifetime; the server refuses what it
                // has forgotten, and a full handshake follows.
                RoleConfig::Client { .. } => crate::resumption::DEFAULT_SESSION_LIFETIME,
            };
            let session = Session {
                id: d.session_id.clone(),
                suite: d.suite.suite,
                extended_master_secret: d.ems,
                peer_identity: identity.clone(),
                established_at: now,
                lifetime,
                master_secret: Zeroizing::new(*master.as_bytes()),
                ticket13: None,
            };
            if let (RoleConfig::Server(c), false) = (&self.cfg, resumed) {
                crate::resumption::store_session(c, &session, now);
                if c.session_events {
                    self.out.events.push_back(Event::SessionIssued(Box::new(session.clone())));
                }
            }
            if self.role == Role::Client {
                // The server's copy lives in its session store; the client offers it later.
                self.session = Some(Box::new(session));
            }
        }
        self.out.events.push_back(Event::Connected { identity, suite: d.suite.suite, resumed });
        self.rng = None;
        let early = std::mem::take(&mut self.early_app_data);
        if self.holds_last_flight && early.is_empty() {
            // RFC 6347 §4.2.4: keep our last flight for a while in case the peer repeats its
            // own (for as long as its handshake may keep retrying); its first application
            // record, or this deadline, ends the need.
            self.linger_until = Some(now + self.common().retransmit.handshake_timeout);
        } else {
            self.release_handshake();
        }
        for data in early {
            self.out.events.push_back(Event::ApplicationData(data));
        }
    }

    /// Frees what only the handshake needed, so an idle association stays small.
    fn release_handshake(&mut self) {
        self.holds_last_flight = false;
        self.linger_until = None;
        self.flight = Vec::new();
        self.transcript = Vec::new();
        self.early_records = Vec::new();
        self.pending_hvr = None;
        self.reasm.shrink_to_fit();
    }

    /// Adds a handshake message to the current flight and to the transcript.
    fn queue_handshake(&mut self, msg_type: HandshakeType, body: Vec<u8>) {
        let message_seq = self.send_seq;
        self.send_seq = self.send_seq.wrapping_add(1);
        let msg = HandshakeMessage { msg_type, message_seq, body };
        msg.transcript_bytes(&mut self.transcript);
        let HandshakeMessage { body, .. } = msg;
        self.flight.push(FlightMsg::Handshake { epoch: self.write_epoch, msg_type, message_seq, body });
    }

    /// Sends a new flight. `expect_reply`: the peer answers it, so the retransmission timer
    /// runs (RFC 6347 §4.2.4); otherwise it is the handshake's last flight, resent only when
    /// the peer repeats its own.
    fn send_new_flight(&mut self, now: Instant, expect_reply: bool) {
        // Messages numbered below this belong to the peer flight ours answers: seeing one again
        // means our flight was lost. Messages at or above it are the peer's next flight, still
        // arriving, and must not trigger a resend (that would echo retransmissions forever).
        self.peer_flight_start = self.reasm.next_seq();
        self.encode_flight();
        self.timer_armed = self.timer.start_flight(now, expect_reply);
    }

    /// Encodes the current flight into datagrams, fragmenting to the MTU
    /// (RFC 6347 §4.2.3) and packing several records per datagram (§4.1.1).
    fn encode_flight(&mut self) {
        let mtu = self.common().mtu;
        let mut datagrams: Vec<Vec<u8>> = Vec::new();
        let mut cur: Vec<u8> = Vec::with_capacity(mtu);
        let mut scratch = Vec::new();
        let flight = std::mem::take(&mut self.flight);
        for msg in &flight {
            match msg {
                FlightMsg::ChangeCipherSpec => {
                    if cur.len() + RecordHeader::LEN + 1 > mtu && !cur.is_empty() {
                        datagrams.push(std::mem::replace(&mut cur, Vec::with_capacity(mtu)));
                    }
                    let seq = self.next_seq(0);
                    record::encode_plaintext(
                        ContentType::ChangeCipherSpec,
                        ProtocolVersion::DTLS1_2,
                        0,
                        seq,
                        &[1],
                        &mut cur,
                    );
                }
                FlightMsg::Handshake { epoch, msg_type, message_seq, body } => {
                    let overhead = if *epoch == 0 {
                        RecordHeader::LEN
                    } else {
                        self.write_prot.as_ref().map_or(RecordHeader::LEN + 24, |p| p.overhead())
                    };
                    let max_frag = mtu.saturating_sub(overhead).max(HandshakeHeader::LEN + 1);
                    for (hdr, frag) in fragment(*msg_type, *message_seq, body, max_frag) {
                        scratch.clear();
                        hdr.encode(&mut scratch);
                        scratch.extend_from_slice(frag);
                        if cur.len() + overhead + scratch.len() > mtu && !cur.is_empty() {
                            datagrams.push(std::mem::replace(&mut cur, Vec::with_capacity(mtu)));
                        }
                        let seq = self.next_seq(*epoch);
                        if *epoch == 0 {
                            record::encode_plaintext(
                                ContentType::Handshake,
                                ProtocolVersion::DTLS1_2,
                                0,
                                seq,
                                &scratch,
                                &mut cur,
                            );
                        } else if let Some(p) = &self.write_prot {
                            // Sealing fails only when the sequence space is exhausted; the
                            // record is then skipped and the timer gives up eventually.
                            let _ = p.seal(
                                ContentType::Handshake,
                                ProtocolVersion::DTLS1_2,
                                *epoch,
                                seq,
                                &scratch,
                                &mut cur,
                            );
                        }
                    }
                }
            }
        }
        self.flight = flight;
        if !cur.is_empty() {
            datagrams.push(cur);
        }
        for d in datagrams {
            self.push_datagram(d);
        }
    }

    fn next_seq(&mut self, epoch: u16) -> u64 {
        let i = usize::from(epoch.min(1));
        let s = self.write_seq[i];
        self.write_seq[i] += 1;
        s
    }

    fn write_record(&mut self, typ: ContentType, payload: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        let epoch = self.write_epoch;
        if self.write_seq[usize::from(epoch.min(1))] >= record::MAX_SEQ {
            // RFC 6347 §4.1: never let the sequence number wrap.
            return Err(Error::LimitReached("record sequence number space exhausted"));
        }
        let seq = self.next_seq(epoch);
        if epoch == 0 {
            record::encode_plaintext(typ, ProtocolVersion::DTLS1_2, 0, seq, payload, out);
        } else {
            let p = self.write_prot.as_ref().ok_or(Error::Crypto)?;
            p.seal(typ, ProtocolVersion::DTLS1_2, epoch, seq, payload, out)?;
        }
        Ok(())
    }

    fn push_datagram(&mut self, d: Vec<u8>) {
        self.out.push_datagram(d);
    }

    fn send_alert(&mut self, level: AlertLevel, description: AlertDescription) {
        let alert = Alert { level, description }.encode();
        let mut out = Vec::with_capacity(48);
        if self.write_record(ContentType::Alert, &alert, &mut out).is_ok() {
            self.push_datagram(out);
        }
    }

    pub(crate) fn fail(&mut self, e: Error) {
        if self.state == State::Closed {
            return;
        }
        if let Some(a) = e.alert() {
            self.send_alert(AlertLevel::Fatal, a);
        }
        self.closed(CloseReason::Error(e));
    }

    fn closed(&mut self, reason: CloseReason) {
        self.state = State::Closed;
        self.timer_armed = false;
        self.flight.clear();
        self.hs = None;
        self.out.closed(reason);
    }
}

fn hello_digest(provider: &dyn crate::crypto::CryptoProvider, body: &[u8]) -> [u8; 32] {
    let mut h = provider.sha256();
    h.update(body);
    h.current()
}

fn hs_unexpected(hs: &Hs, got: HandshakeType) -> PeerMisbehaved {
    let _ = got;
    match hs {
        Hs::Done => PeerMisbehaved::HandshakeMessageAfterHandshake,
        _ => PeerMisbehaved::HandshakeMessageOutOfOrder,
    }
}
