//! One DTLS 1.3 association (RFC 9147): the 1.3 handshake state machines of both roles over
//! the shared building blocks (reassembly, fragmentation, retransmission timer, cookies) and
//! the 1.3 record layer ([`super::record`]) and key schedule ([`super::key_schedule`]).
//!
//! Implemented: ECDHE (secp256r1) with X.509 or raw-public-key certificates, external PSK
//! (psk_dhe_ke and psk_ke), the stateless HelloRetryRequest cookie, the three 1.3 suites,
//! ACKs (RFC 9147 §7): of the final flight, and of a partial flight when the rest does not
//! follow promptly (§7.1); selective retransmission of only the unacknowledged fragments
//! (§5.8.1, §7.2); NewSessionTicket and PSK resumption (RFC 8446 §4.6.1, RFC 9147 §5.8.4);
//! 0-RTT early data with 0.5-RTT answers ([`early`]); KeyUpdate (RFC 9147 §8); close_notify.
//!
//! The public face is [`crate::Connection`], which dispatches to this type for 1.3.

use crate::codec::*;
use crate::config::{ClientAuth, ClientConfig, CommonConfig, PeerVerifier, ServerConfig};
use crate::crypto::{AeadAlgorithm, CryptoProvider, EcdhKeyPair, HashContext, Rng, SeededRng};
use crate::dtls13::key_schedule::{self as tls13, EarlySecret, HandshakeSecret, MasterSecret13, Secret, TrafficKeys};
use crate::dtls13::msgs::*;
use crate::dtls13::record::{
    self as record13, HeaderStyle, ReceiveEpoch13, Record13, RecordProtection13, SendEpoch13, encode_plaintext13,
};
use crate::error::{ConfigError, Error, Incompatible, PeerMisbehaved, UsageError};
use crate::handshake::flight::{Delivered, RetransmitConfig, RetransmitTimer, RttSampleKind, fragment, fragment_range};
use crate::handshake::reassembly::{HandshakeMessage, Insert, Reassembler};
use crate::msgs::{Alert, HandshakeHeader};
use crate::resumption::{FetchedSession, Session, SessionSource, Ticket13};
use crate::types::{CloseReason, Event, Outputs, PeerIdentity, Role, Stats};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use zeroize::Zeroizing;

mod early;
pub(crate) use early::{cookie_exempt, psk_ke_possible};

/// DTLS 1.3 epochs (RFC 9147 §6.1).
const EPOCH_PLAINTEXT: u64 = 0;
const EPOCH_HANDSHAKE: u64 = 2;
const EPOCH_APPLICATION: u64 = 3;

/// The 1.3 suites this engine implements, with their record protection.
pub fn suite13(suite: CipherSuite) -> Option<AeadAlgorithm> {
    Some(match suite {
        CipherSuite::TLS_CHACHA20_POLY1305_SHA256 => AeadAlgorithm::ChaCha20Poly1305,
        CipherSuite::TLS_AES_128_GCM_SHA256 => AeadAlgorithm::Aes128Gcm,
        CipherSuite::TLS_AES_128_CCM_8_SHA256 => AeadAlgorithm::Aes128Ccm8,
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshaking,
    Established,
    Closed,
}

/// A record to send: epoch, content type, plaintext, and the flight fragment it carries.
type Outgoing = (u64, ContentType, Vec<u8>, Option<Carried>);

/// The part of a flight message one record carries: index in the flight and body range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Carried {
    msg: usize,
    start: usize,
    end: usize,
}

/// A record of the current flight as sent, so that an ACK naming its record number marks the
/// fragment it carried as delivered (RFC 9147 §7.2: "this requires implementations to track
/// which messages appear in which records").
#[derive(Debug, Clone, Copy)]
struct SentRecord {
    epoch: u64,
    seq: u64,
    carried: Carried,
    acked: bool,
}

/// Most record numbers kept for the next ACK; a flight fragmented into more records than this
/// is acknowledged in part and the rest is resent (correct, only slower).
const MAX_TO_ACK: usize = 256;

/// Why (part of) the current flight is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// The retransmission timer fired (RFC 9147 §5.8.1, way 1).
    Timer,
    /// The peer repeated its previous flight and has acknowledged nothing of ours (way 3).
    PeerRepeated,
    /// An ACK acknowledged part of the flight (way 2, §7.2).
    PartialAck,
}

#[derive(Debug)]
struct FlightMsg {
    epoch: u64,
    msg_type: HandshakeType,
    message_seq: u16,
    body: Vec<u8>,
    /// What the peer has acknowledged of the body.
    delivered: Delivered,
}

impl FlightMsg {
    fn new(epoch: u64, msg_type: HandshakeType, message_seq: u16, body: Vec<u8>) -> Self {
        Self { epoch, msg_type, message_seq, body, delivered: Delivered::default() }
    }

    fn acked(&self) -> bool {
        self.delivered.is_complete(self.body.len())
    }

    /// Largest handshake fragment (header included) that fits one record in one datagram.
    fn max_fragment(&self, mtu: usize) -> usize {
        let overhead = if self.epoch == EPOCH_PLAINTEXT { 13 } else { 5 + 16 + 1 };
        mtu.saturating_sub(overhead).max(HandshakeHeader::LEN + 1)
    }
}

enum Hs {
    // client
    /// `eph` is `None` while no key share was sent (a psk_ke-only resumption): the P-256 key
    /// pair is only made once a HelloRetryRequest asks for one.
    CExpectServerHello {
        ch: ClientHello13,
        eph: Option<Box<dyn EcdhKeyPair>>,
        retried: bool,
    },
    CExpectEncryptedExtensions {
        k: Keys,
    },
    CExpectCertificateOrRequest {
        k: Keys,
    },
    CExpectCertificate {
        k: Keys,
    },
    CExpectCertificateVerify {
        k: Keys,
        point: [u8; 65],
    },
    CExpectFinished {
        k: Keys,
    },
    // server
    SExpectCertificate {
        k: Keys,
    },
    SExpectCertificateVerify {
        k: Keys,
        point: [u8; 65],
        identity: PeerIdentity,
    },
    SExpectFinished {
        k: Keys,
        identity: PeerIdentity,
    },
}

/// Secrets and parameters of a handshake in progress.
struct Keys {
    suite: CipherSuite,
    aead: AeadAlgorithm,
    /// Client: until its Finished. Server: `None`, the master secret is derived at its own
    /// Finished (see [`HalfRtt`]).
    hs_secret: Option<HandshakeSecret>,
    client_hs: Secret,
    server_hs: Secret,
    psk: bool,
    cert_type: CertificateType,
    cert_requested: Option<Vec<u8>>,
    identity: PeerIdentity,
}

/// Server, from its Finished to the client's (RFC 8446 §2.3 "0.5-RTT data", §4.4.4): the
/// secrets that are ready, and what bounds sending before the client has proven anything.
struct HalfRtt {
    master: MasterSecret13,
    /// Installed for receiving only once the client's Finished verifies (RFC 9147 §5.6 /
    /// RFC 8446 §4.4.4: epoch-3 data from the client is not accepted before).
    client_ap: Secret,
    server_ap: Secret,
    /// No CertificateRequest went out: the client is as authenticated now as it will be at its
    /// Finished (anonymous, or by the PSK / ticket it proved with its binder). With a
    /// CertificateRequest, sending waits for the client's Finished.
    may_send: bool,
    /// The client's address was proven by a cookie exchange (a HelloRetryRequest came first).
    address_verified: bool,
    /// Bytes received from the client so far: without a proven address, at most three times
    /// as many may be sent (RFC 9147 §5.1).
    received: u64,
    /// Application data that could not go yet (client authentication pending or amplification
    /// limit), sent at the client's Finished in order; bounded by `max_early_records`.
    held: Vec<Vec<u8>>,
}

enum RoleConfig {
    Client { config: Arc<ClientConfig>, server_name: String },
    Server(Arc<ServerConfig>),
}

/// A DTLS 1.3 association. See [`crate::Connection`] for the call order.
pub(crate) struct Conn13 {
    role: Role,
    peer: SocketAddr,
    cfg: RoleConfig,
    rng: Option<Box<SeededRng>>,
    state: State,
    plain_seq: u64,
    send_hs: Option<SendEpoch13>,
    send_app: Option<SendEpoch13>,
    recv_hs: Option<ReceiveEpoch13>,
    recv_app: Option<ReceiveEpoch13>,
    /// The application epoch before the last KeyUpdate, kept for records still in flight.
    recv_prev: Option<ReceiveEpoch13>,
    /// Current application traffic secrets (send, receive), for KeyUpdate (RFC 8446 §7.2).
    app_secrets: Option<Box<(Secret, Secret)>>,
    aead: Option<AeadAlgorithm>,
    /// Our KeyUpdate is sent and awaits its ACK; only then do we switch keys (RFC 9147 §8).
    key_update_pending: bool,
    auto_key_update: bool,
    /// Client: the ticket offered for resumption; then, the ticket the server issued.
    resume: Option<Session>,
    session: Option<Session>,
    res_master: Option<Box<Secret>>,
    resumed: bool,
    hs: Option<Box<Hs>>,
    reasm: Reassembler,
    send_seq: u16,
    transcript: Transcript,
    flight: Vec<FlightMsg>,
    /// Record numbers of the current flight's records (every transmission), with the
    /// fragment each carried.
    sent_records: Vec<SentRecord>,
    timer: RetransmitTimer,
    timer_armed: bool,
    peer_flight_start: u16,
    /// Handshake records of the peer's current flight received and buffered, to acknowledge
    /// (RFC 9147 §7); on a client also the plaintext ServerHello record.
    to_ack: Vec<RecordNumber>,
    ack_now: bool,
    /// When to acknowledge a partial peer flight whose rest has not followed (RFC 9147 §7.1).
    ack_deadline: Option<Instant>,
    /// A handshake record was accepted while handling the current datagram.
    hs_record_received: bool,
    early_records: Vec<Vec<u8>>,
    early_app_data: Vec<Vec<u8>>,
    /// 0-RTT state (RFC 8446 §4.2.10), see `early.rs`.
    early: Option<Box<early::Early>>,
    /// Server: 0.5-RTT state between its Finished and the client's.
    half_rtt: Option<Box<HalfRtt>>,
    suite: Option<CipherSuite>,
    identity: PeerIdentity,
    client_random: [u8; 32],
    hello_digest: [u8; 32],
    out: Outputs,
    last_activity: Instant,
}

impl fmt::Debug for Conn13 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn13")
            .field("role", &self.role)
            .field("peer", &self.peer)
            .field("state", &self.state)
            .field("suite", &self.suite)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

fn hash(provider: &dyn CryptoProvider, bytes: &[u8]) -> [u8; 32] {
    let mut h = provider.sha256();
    h.update(bytes);
    h.current()
}

fn provider(cfg: &RoleConfig) -> &dyn CryptoProvider {
    match cfg {
        RoleConfig::Client { config, .. } => &*config.common.provider,
        RoleConfig::Server(c) => &*c.common.provider,
    }
}

/// The handshake transcript as a running hash (RFC 8446 §4.4.1): each message is absorbed
/// once and a transcript hash finalizes a copy of the context, instead of hashing every byte
/// so far again at each of the handshake's transcript hashes. `None` until the first byte
/// (and again once the handshake is over), so an idle association holds no hash state.
#[derive(Default)]
struct Transcript(Option<Box<dyn HashContext>>);

impl Transcript {
    fn context(&mut self, provider: &dyn CryptoProvider) -> &mut Box<dyn HashContext> {
        self.0.get_or_insert_with(|| provider.sha256())
    }

    /// Absorbs bytes already in transcript form (the `message_hash || HRR` prefix).
    fn add_raw(&mut self, provider: &dyn CryptoProvider, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.context(provider).update(bytes);
        }
    }

    /// Absorbs a handshake message in its TLS 1.3 form (RFC 9147 §5.2), as
    /// [`transcript_bytes_13`] writes it.
    fn add(&mut self, provider: &dyn CryptoProvider, msg_type: HandshakeType, body: &[u8]) {
        debug_assert!(body.len() <= 0xff_ffff, "handshake body longer than 2^24-1");
        let len = (body.len() as u32).to_be_bytes();
        let header = [u8::from(msg_type), len[1], len[2], len[3]];
        let ctx = self.context(provider);
        ctx.update(&header);
        ctx.update(body);
    }

    /// The hash of the transcript so far followed by `more` (already in transcript form),
    /// leaving the transcript as it is: the PSK binders' partial transcript (RFC 8446
    /// §4.2.11.2).
    fn hash_with(&self, provider: &dyn CryptoProvider, more: &[u8]) -> [u8; 32] {
        let mut ctx = match &self.0 {
            Some(c) => c.fork(),
            None => provider.sha256(),
        };
        ctx.update(more);
        ctx.current()
    }

    fn hash(&self, provider: &dyn CryptoProvider) -> [u8; 32] {
        match &self.0 {
            Some(c) => c.current(),
            None => provider.sha256().current(),
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

fn is_ip_literal(name: &str) -> bool {
    name.parse::<std::net::IpAddr>().is_ok()
}

/// What a DTLS 1.3 HelloRetryRequest cookie carries so that the server can stay stateless
/// (RFC 9147 §5.1, RFC 8446 §4.2.2): the hash of the first ClientHello (the transcript restarts
/// with `message_hash(ClientHello1)`, RFC 8446 §4.4.1) and the parameters the HelloRetryRequest
/// chose, which the second ClientHello must honour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HrrState {
    /// SHA-256 of the first ClientHello (TLS-style transcript encoding).
    pub client_hello1_hash: [u8; 32],
    /// The cipher suite selected in the HelloRetryRequest.
    pub cipher_suite: u16,
    /// The key_share group requested in the HelloRetryRequest (0 when none was requested).
    pub group: u16,
}

/// The HelloRetryRequest a stateless server sends for `ch1`, rebuilt byte for byte from the
/// cookie when the second ClientHello returns it (RFC 9147 §5.1).
pub(crate) fn hello_retry_request(state: &HrrState, cookie: &[u8]) -> Vec<u8> {
    let mut extensions = vec![HelloRetryExtension13::SupportedVersions(ProtocolVersion::DTLS1_3)];
    if state.group != 0 {
        extensions.push(HelloRetryExtension13::KeyShare(NamedGroup::from(state.group)));
    }
    extensions.push(HelloRetryExtension13::Cookie(cookie.to_vec()));
    ServerHelloMessage13::HelloRetryRequest(HelloRetryRequest13 {
        legacy_version: ProtocolVersion::DTLS1_2,
        // RFC 9147 §5: DTLS servers MUST NOT echo the legacy_session_id.
        legacy_session_id_echo: SessionId::default(),
        cipher_suite: CipherSuite::from(state.cipher_suite),
        legacy_compression_method: Compression::Null,
        extensions,
    })
    .to_vec()
}

/// The server's choice for a ClientHello: suite and whether a key share must be requested.
pub(crate) fn server_choose(config: &ServerConfig, ch: &ClientHello13) -> Option<(CipherSuite, bool)> {
    let suite = config.common.suites13.iter().copied().find(|s| ch.cipher_suites.contains(s))?;
    let needs_group = ch.key_share_for(NamedGroup::Secp256r1).is_none();
    Some((suite, needs_group))
}

impl Conn13 {
    fn new(
        role: Role,
        peer: SocketAddr,
        cfg: RoleConfig,
        rng: SeededRng,
        now: Instant,
        cookie_rtt: Option<std::time::Duration>,
    ) -> Self {
        let common = match &cfg {
            RoleConfig::Client { config, .. } => &config.common,
            RoleConfig::Server(c) => &c.common,
        };
        Self {
            role,
            peer,
            reasm: Reassembler::new(common.max_reassembly_bytes),
            timer: common.retransmit_timer(peer, role, cookie_rtt),
            cfg,
            rng: Some(Box::new(rng)),
            state: State::Handshaking,
            plain_seq: 0,
            send_hs: None,
            send_app: None,
            recv_hs: None,
            recv_app: None,
            recv_prev: None,
            app_secrets: None,
            aead: None,
            key_update_pending: false,
            auto_key_update: false,
            resume: None,
            session: None,
            res_master: None,
            resumed: false,
            hs: None,
            send_seq: 0,
            transcript: Transcript::default(),
            flight: Vec::new(),
            sent_records: Vec::new(),
            timer_armed: false,
            peer_flight_start: 0,
            to_ack: Vec::new(),
            ack_now: false,
            ack_deadline: None,
            hs_record_received: false,
            early_records: Vec::new(),
            early_app_data: Vec::new(),
            early: None,
            half_rtt: None,
            suite: None,
            identity: PeerIdentity::Anonymous,
            client_random: [0; 32],
            hello_digest: [0; 32],
            out: Outputs::default(),
            last_activity: now,
        }
    }

    fn common(&self) -> &CommonConfig {
        match &self.cfg {
            RoleConfig::Client { config, .. } => &config.common,
            RoleConfig::Server(c) => &c.common,
        }
    }

    fn rng(&mut self) -> &mut SeededRng {
        self.rng.get_or_insert_with(|| Box::new(SeededRng::from_os()))
    }

    fn transcript_hash(&self) -> [u8; 32] {
        self.transcript.hash(provider(&self.cfg))
    }

    // ------------------------------------------------------------------------------------
    // client

    pub(crate) fn client(
        config: Arc<ClientConfig>,
        peer: SocketAddr,
        server_name: &str,
        resume: Option<Session>,
        rng: SeededRng,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        Self::client_early(config, peer, server_name, resume, None, rng, now)
    }

    /// A client that also sends `early_data` as 0-RTT data when the ticket allows it
    /// (RFC 8446 §4.2.10; see `early.rs`).
    pub(crate) fn client_early(
        config: Arc<ClientConfig>,
        peer: SocketAddr,
        server_name: &str,
        resume: Option<Session>,
        early_data: Option<&[u8]>,
        rng: SeededRng,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        let suites: Vec<CipherSuite> = config.common.suites13.clone();
        if suites.is_empty() {
            return Err(ConfigError::new("no DTLS 1.3 cipher suite configured: set CommonConfig::suites13"));
        }
        if config.psk.is_none() && config.verifier.is_none() {
            return Err(ConfigError::new(
                "DTLS 1.3 needs a PSK or a CA / pinned key: set ClientConfig::psk or ::verifier",
            ));
        }
        let mut c = Self::new(
            Role::Client,
            peer,
            RoleConfig::Client { config: config.clone(), server_name: server_name.to_owned() },
            rng,
            now,
            None,
        );
        let mut random = [0u8; 32];
        c.rng().fill(&mut random);
        c.client_random = random;
        // DtlsVersion::Auto: one ClientHello for a 1.3 and a 1.2 server (crate::auto).
        let dual = (config.version == crate::config::DtlsVersion::Auto)
            .then(|| crate::dtls13::dual_hello::dual_hello_extras(&config, resume.as_ref()));
        // A ticket is offered only for a suite we still allow (RFC 8446 §4.2.11: same hash).
        c.resume = resume.filter(|s| {
            suites.contains(&s.suite)
                && s.ticket13.is_some()
                && now.saturating_duration_since(s.established_at) < s.lifetime
        });
        let provider = config.common.provider.clone();
        // RFC 8446 §4.2.10: early data only with a ticket that allows this much of it.
        let offer_early = early_data.filter(|d| {
            c.resume.as_ref().and_then(|s| s.max_early_data_size()).is_some_and(|m| d.len() as u64 <= u64::from(m))
        });
        let (key_share, psk_modes) = early::resumption_modes(&config, c.resume.is_some());
        // A psk_ke-only resumption sends no key share: no P-256 scalar multiplication for it.
        let eph = if key_share { Some(provider.ecdh_p256(c.rng())?) } else { None };
        let mut extensions = vec![
            ClientExtension13::SupportedVersions(match dual {
                Some(_) => vec![ProtocolVersion::DTLS1_3, ProtocolVersion::DTLS1_2],
                None => vec![ProtocolVersion::DTLS1_3],
            }),
            ClientExtension13::SupportedGroups(vec![NamedGroup::Secp256r1]),
        ];
        if let Some(eph) = &eph {
            extensions.push(ClientExtension13::KeyShare(vec![KeyShareEntry {
                group: NamedGroup::Secp256r1,
                key_exchange: eph.public_key().to_vec(),
            }]));
        }
        if config.verifier.is_some() {
            extensions.push(ClientExtension13::SignatureAlgorithms(vec![SignatureScheme::EcdsaSecp256r1Sha256]));
            if matches!(config.verifier, Some(PeerVerifier::Pinned(_))) {
                extensions.push(ClientExtension13::ServerCertificateType(vec![CertificateType::RawPublicKey]));
            }
        }
        if !server_name.is_empty() && !is_ip_literal(server_name) {
            extensions.push(ClientExtension13::ServerName(vec![ServerName {
                name_type: 0,
                name: server_name.as_bytes().to_vec(),
            }]));
        }
        if let Some(d) = &dual {
            extensions.extend(d.extensions.iter().cloned());
        }
        let mut identities = Vec::new();
        if let Some(ticket) = &c.resume {
            // RFC 8446 §4.2.11.1: the ticket age in ms, obfuscated by the ticket's age_add.
            let age = now.saturating_duration_since(ticket.established_at).as_millis() as u32;
            let add = ticket.ticket13.as_ref().map_or(0, |t| t.age_add);
            identities.push(PskIdentity { identity: ticket.id.clone(), obfuscated_ticket_age: age.wrapping_add(add) });
        }
        if let Some(psk) = &config.psk {
            identities.push(PskIdentity { identity: psk.identity.clone(), obfuscated_ticket_age: 0 });
        }
        if offer_early.is_some() {
            extensions.push(ClientExtension13::EarlyData);
        }
        if !identities.is_empty() {
            extensions.push(ClientExtension13::PskKeyExchangeModes(psk_modes));
            // RFC 8446 §4.2.11: pre_shared_key is the last extension; binders are filled in
            // once the truncated ClientHello is known.
            let binders = vec![vec![0u8; 32]; identities.len()];
            extensions.push(ClientExtension13::PreSharedKey(OfferedPsks { identities, binders }));
        }
        let ch = ClientHello13 {
            legacy_version: ProtocolVersion::DTLS1_2,
            random: Random(random),
            legacy_session_id: dual.as_ref().map(|d| d.legacy_session_id.clone()).unwrap_or_default(),
            legacy_cookie: Vec::new(),
            cipher_suites: suites.into_iter().chain(dual.into_iter().flat_map(|d| d.suites12)).collect(),
            legacy_compression_methods: vec![Compression::Null],
            extensions,
        };
        c.send_client_hello(now, &ch).map_err(ConfigError::starting)?;
        c.hs = Some(Box::new(Hs::CExpectServerHello { ch, eph, retried: false }));
        match (offer_early, early_data) {
            (Some(d), _) => c.client_start_early_data(d).map_err(ConfigError::starting)?,
            (None, Some(_)) => c.out.events.push_back(Event::EarlyDataRejected),
            (None, None) => {}
        }
        Ok(c)
    }

    /// Encodes `ch` with its PSK binder computed over the transcript so far plus the truncated
    /// ClientHello (RFC 8446 §4.2.11.2), adds it to the transcript and sends it.
    fn send_client_hello(&mut self, now: Instant, ch: &ClientHello13) -> Result<(), Error> {
        let mut body = Vec::new();
        let offset = ch.encode_with_binders_offset(&mut body);
        if let (Some(off), RoleConfig::Client { config, .. }) = (offset, &self.cfg) {
            let mut partial = Vec::new();
            truncated_client_hello_transcript(&body, off, &mut partial);
            let th = self.transcript.hash_with(provider(&self.cfg), &partial);
            // One binder per identity, in order: the ticket (resumption binder key), then the
            // external PSK (RFC 8446 §7.1 "ext binder" / "res binder").
            let mut binders = Vec::new();
            if let Some(t) = self.resume.as_ref().and_then(|s| s.ticket13.as_ref()) {
                binders.push(tls13::psk_binder(&EarlySecret::new(Some(&t.psk[..])).binder_key(false), &th).to_vec());
            }
            if let Some(psk) = &config.psk {
                binders.push(tls13::psk_binder(&EarlySecret::new(Some(psk.key())).binder_key(true), &th).to_vec());
            }
            write_binders(&mut body, off, &binders)?;
        }
        self.reasm.set_next_seq(self.send_seq);
        self.flight.clear();
        self.queue(EPOCH_PLAINTEXT, HandshakeType::ClientHello, body);
        self.send_new_flight(now, true);
        Ok(())
    }

    fn client_config(&self) -> Result<(Arc<ClientConfig>, String), Error> {
        match &self.cfg {
            RoleConfig::Client { config, server_name } => Ok((config.clone(), server_name.clone())),
            RoleConfig::Server(_) => Err(Error::Crypto),
        }
    }

    fn client_handle_server_hello(
        &mut self,
        now: Instant,
        ch: ClientHello13,
        eph: Option<Box<dyn EcdhKeyPair>>,
        retried: bool,
        body: &[u8],
    ) -> Result<Option<Hs>, Error> {
        let (config, _) = self.client_config()?;
        let provider = config.common.provider.clone();
        match ServerHelloMessage13::read_exact(body)? {
            ServerHelloMessage13::HelloRetryRequest(hrr) => {
                if retried {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::SecondHelloRetryRequest));
                }
                if hrr.selected_version() != Some(ProtocolVersion::DTLS1_3) {
                    return Err(Error::Incompatible(Incompatible::HelloRetryRequestWithoutDtls13));
                }
                if !ch.cipher_suites.contains(&hrr.cipher_suite) {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::HelloRetryRequestUnofferedSuite));
                }
                if hrr.selected_group().is_some_and(|g| g != NamedGroup::Secp256r1) {
                    return Err(Error::Incompatible(Incompatible::HelloRetryRequestUnsupportedGroup));
                }
                // RFC 8446 §4.4.1: the transcript restarts with message_hash(ClientHello1).
                let ch1_hash = self.transcript.hash(&*provider);
                let mut restart = Vec::new();
                message_hash(&ch1_hash, &mut restart);
                self.transcript = Transcript::default();
                self.transcript.add_raw(&*provider, &restart);
                self.transcript.add(&*provider, HandshakeType::ServerHello, body);
                let mut ch2 = ch.clone();
                self.client_early_after_hrr(&mut ch2);
                let mut eph = eph;
                if hrr.selected_group() == Some(NamedGroup::Secp256r1) {
                    let pair = match eph {
                        Some(pair) => pair,
                        None => provider.ecdh_p256(self.rng())?,
                    };
                    early::add_key_share(&mut ch2, pair.public_key());
                    eph = Some(pair);
                }
                if let Some(cookie) = hrr.cookie() {
                    let pos = ch2
                        .extensions
                        .iter()
                        .position(|e| matches!(e, ClientExtension13::PreSharedKey(_)))
                        .unwrap_or(ch2.extensions.len());
                    ch2.extensions.insert(pos, ClientExtension13::Cookie(cookie.to_vec()));
                }
                self.send_client_hello(now, &ch2)?;
                Ok(Some(Hs::CExpectServerHello { ch: ch2, eph, retried: true }))
            }
            ServerHelloMessage13::ServerHello(sh) => {
                if sh.selected_version() != Some(ProtocolVersion::DTLS1_3) {
                    return Err(Error::Incompatible(Incompatible::ServerDidNotSelectDtls13));
                }
                if DowngradeSentinel::find(&sh.random).is_some() {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::DowngradeSentinel13));
                }
                if !ch.cipher_suites.contains(&sh.cipher_suite) {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::ServerChoseUnofferedSuite13));
                }
                let aead = suite13(sh.cipher_suite).ok_or(Error::PeerMisbehaved(PeerMisbehaved::UnknownSuite13))?;
                self.transcript.add(&*provider, HandshakeType::ServerHello, body);
                let ticket = self.resume.clone();
                let n_offered = usize::from(ticket.is_some()) + usize::from(config.psk.is_some());
                let chosen: Option<(Zeroizing<Vec<u8>>, PeerIdentity, bool)> = match sh.selected_identity() {
                    Some(i) if usize::from(i) >= n_offered => {
                        return Err(Error::PeerMisbehaved(PeerMisbehaved::ServerSelectedUnofferedPsk));
                    }
                    Some(0) if ticket.is_some() => ticket.as_ref().and_then(|t| {
                        let psk = t.ticket13.as_ref()?.psk.to_vec();
                        Some((Zeroizing::new(psk), t.peer_identity.clone(), true))
                    }),
                    Some(_) => config
                        .psk
                        .as_ref()
                        .map(|p| (Zeroizing::new(p.key().to_vec()), PeerIdentity::Psk(p.identity.clone()), false)),
                    None => None,
                };
                if let (Some((_, _, true)), Some(t)) = (&chosen, &ticket)
                    && t.suite != sh.cipher_suite
                {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::ResumedWithOtherSuite13));
                }
                let psk_used = chosen.is_some();
                self.resumed = chosen.as_ref().is_some_and(|c| c.2);
                let shared = match sh.key_share() {
                    Some(ks) if ks.group == NamedGroup::Secp256r1 => {
                        // RFC 8446 §4.2.8: the server's share answers one we sent.
                        let eph = eph.ok_or(Error::PeerMisbehaved(PeerMisbehaved::KeyShareNotOffered))?;
                        Some(
                            eph.complete(&ks.key_exchange)
                                .map_err(|_| Error::PeerMisbehaved(PeerMisbehaved::InvalidKeyShare))?,
                        )
                    }
                    Some(_) => {
                        return Err(Error::PeerMisbehaved(PeerMisbehaved::KeyShareUnofferedGroup));
                    }
                    None if psk_used => None,
                    None => return Err(Error::PeerMisbehaved(PeerMisbehaved::MissingKeyShare)),
                };
                let early = EarlySecret::new(chosen.as_ref().map(|c| &c.0[..]));
                let hs_secret = early.into_handshake(shared.as_ref().map(|z| &z[..]));
                let th = self.transcript_hash();
                let client_hs = hs_secret.client_handshake_traffic_secret(&th);
                let server_hs = hs_secret.server_handshake_traffic_secret(&th);
                self.send_hs = Some(SendEpoch13::new(EPOCH_HANDSHAKE, self.protection(aead, &client_hs)?));
                self.recv_hs = Some(ReceiveEpoch13::new(EPOCH_HANDSHAKE, self.protection(aead, &server_hs)?));
                self.suite = Some(sh.cipher_suite);
                let identity = chosen.map_or(PeerIdentity::Anonymous, |c| c.1);
                // The server's flight is answered by ours: stop retransmitting the ClientHello.
                self.timer_armed = false;
                Ok(Some(Hs::CExpectEncryptedExtensions {
                    k: Keys {
                        suite: sh.cipher_suite,
                        aead,
                        hs_secret: Some(hs_secret),
                        client_hs,
                        server_hs,
                        psk: psk_used,
                        cert_type: CertificateType::X509,
                        cert_requested: None,
                        identity,
                    },
                }))
            }
        }
    }

    fn protection(&self, aead: AeadAlgorithm, secret: &Secret) -> Result<RecordProtection13, Error> {
        Ok(RecordProtection13::new(&*self.common().provider, &TrafficKeys::derive(aead, secret))?)
    }

    fn client_verify_certificate(&self, k: &Keys, body: &[u8]) -> Result<([u8; 65], PeerIdentity), Error> {
        let (config, server_name) = self.client_config()?;
        let cert = Certificate13::read_exact_with(body, k.cert_type)?;
        let now = (config.common.wall_clock)();
        match (k.cert_type, &config.verifier) {
            (CertificateType::X509, Some(PeerVerifier::WebPki(v))) => {
                let chain: Vec<Vec<u8>> = cert.certificate_list.iter().map(|e| e.data.clone()).collect();
                if chain.is_empty() {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::EmptyServerCertificate13));
                }
                let point = v.verify_server(&chain, &server_name, now)?;
                Ok((point, PeerIdentity::Certificate(chain)))
            }
            (CertificateType::RawPublicKey, Some(PeerVerifier::Pinned(p))) => {
                let spki = cert.end_entity().map(|e| e.to_vec()).unwrap_or_default();
                let point = p.verify(&spki)?;
                Ok((point, PeerIdentity::RawPublicKey(spki)))
            }
            _ => Err(Error::Incompatible(Incompatible::CertificateTypeMismatch13)),
        }
    }

    fn verify_certificate_verify(
        &self,
        point: &[u8; 65],
        signer: Role,
        body: &[u8],
        th: &[u8; 32],
    ) -> Result<(), Error> {
        let cv = CertificateVerify13::read_exact(body)?;
        if cv.algorithm != SignatureScheme::EcdsaSecp256r1Sha256 {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::CertificateVerifyUnofferedScheme));
        }
        let content = certificate_verify_content(signer, th);
        self.common()
            .provider
            .ecdsa_p256_verify(point, &content, &cv.signature)
            .map_err(|_| Error::DecryptError("CertificateVerify"))
    }

    /// The client's last flight: optional Certificate + CertificateVerify and Finished in the
    /// handshake epoch (RFC 8446 §4.4), then application keys.
    fn client_finish(&mut self, now: Instant, k: Keys) -> Result<(), Error> {
        let (config, _) = self.client_config()?;
        let th_server_finished = self.transcript_hash();
        let master = k.hs_secret.ok_or(Error::Crypto)?.into_master();
        let client_ap = master.client_application_traffic_secret_0(&th_server_finished);
        let server_ap = master.server_application_traffic_secret_0(&th_server_finished);
        self.flight.clear();
        if let Some(context) = &k.cert_requested {
            let (entries, key) = match &config.client_cert {
                Some(ck) if k.cert_type == CertificateType::RawPublicKey || ck.chain.is_empty() => (
                    vec![CertificateEntry { data: ck.key.public_key_spki(), extensions: Vec::new() }],
                    Some(ck.key.clone()),
                ),
                Some(ck) => (
                    ck.chain.iter().map(|c| CertificateEntry { data: c.clone(), extensions: Vec::new() }).collect(),
                    Some(ck.key.clone()),
                ),
                None => (Vec::new(), None),
            };
            let cert = Certificate13 { certificate_request_context: context.clone(), certificate_list: entries };
            self.queue(EPOCH_HANDSHAKE, HandshakeType::Certificate, cert.to_vec());
            if let Some(key) = key {
                let content = certificate_verify_content(Role::Client, &self.transcript_hash());
                let signature = key.sign(&content)?;
                let cv = CertificateVerify13 { algorithm: SignatureScheme::EcdsaSecp256r1Sha256, signature };
                self.queue(EPOCH_HANDSHAKE, HandshakeType::CertificateVerify, cv.to_vec());
            }
        }
        let vd = tls13::finished_verify_data(&k.client_hs, &self.transcript_hash());
        self.queue(EPOCH_HANDSHAKE, HandshakeType::Finished, vd.to_vec());
        // RFC 8446 §7.1: the resumption secret hashes the transcript through client Finished.
        self.res_master = Some(Box::new(master.resumption_master_secret(&self.transcript_hash())));
        self.send_app = Some(SendEpoch13::new(EPOCH_APPLICATION, self.protection(k.aead, &client_ap)?));
        self.recv_app = Some(ReceiveEpoch13::new(EPOCH_APPLICATION, self.protection(k.aead, &server_ap)?));
        self.aead = Some(k.aead);
        self.app_secrets = Some(Box::new((client_ap, server_ap)));
        // RFC 9147 §5.8.3: the final flight is retransmitted until the server's ACK.
        self.send_new_flight(now, true);
        self.established(k.suite, k.identity);
        Ok(())
    }

    // ------------------------------------------------------------------------------------
    // server

    /// The server side, from a ClientHello that passed the cookie gate. `prefix` is the
    /// transcript before it (`message_hash(CH1) || HelloRetryRequest` after a stateless HRR,
    /// empty otherwise); `cookie_rtt` the round trip of the cookie exchange, for the
    /// retransmission policy.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn server(
        config: Arc<ServerConfig>,
        peer: SocketAddr,
        ch: ClientHello13,
        ch_body: &[u8],
        message_seq: u16,
        record_seq: u64,
        prefix: Vec<u8>,
        rng: SeededRng,
        now: Instant,
        cookie_rtt: Option<std::time::Duration>,
        fetched: &[FetchedSession],
    ) -> Self {
        let mut c = Self::new(Role::Server, peer, RoleConfig::Server(config), rng, now, cookie_rtt);
        c.client_random = ch.random.0;
        c.hello_digest = hash(&*c.common().provider, ch_body);
        c.send_seq = message_seq;
        c.plain_seq = record_seq;
        c.reasm.set_next_seq(message_seq.wrapping_add(1));
        c.transcript.add_raw(provider(&c.cfg), &prefix);
        if let Err(e) = c.server_handle_client_hello(now, ch, ch_body, fetched) {
            c.fail(e);
        }
        c
    }

    fn server_config(&self) -> Result<Arc<ServerConfig>, Error> {
        match &self.cfg {
            RoleConfig::Server(c) => Ok(c.clone()),
            RoleConfig::Client { .. } => Err(Error::Crypto),
        }
    }

    fn server_handle_client_hello(
        &mut self,
        now: Instant,
        ch: ClientHello13,
        ch_body: &[u8],
        fetched: &[FetchedSession],
    ) -> Result<(), Error> {
        let config = self.server_config()?;
        let provider = config.common.provider.clone();
        ch.check_dtls13_legacy_fields().map_err(|a| {
            Error::PeerMisbehaved(match a {
                AlertDescription::ProtocolVersion => PeerMisbehaved::Dtls13LegacyVersion,
                _ => PeerMisbehaved::Dtls13LegacyField,
            })
        })?;
        let (suite, _) = server_choose(&config, &ch).ok_or(Error::Incompatible(Incompatible::NoCommonSuite13))?;
        let aead = suite13(suite).ok_or(Error::Crypto)?;
        // PSK (RFC 8446 §4.2.11): the first offered identity we know, a ticket (handed in by a
        // layer, else from our session store) or an external PSK, with a valid binder.
        let mut psk_key: Option<Zeroizing<Vec<u8>>> = None;
        let mut identity = PeerIdentity::Anonymous;
        let mut selected: u16 = 0;
        let mut resumed_ticket: Option<(Session, u32, SessionSource)> = None;
        if let Some(offered) = ch.pre_shared_key() {
            for (i, id) in offered.identities.iter().enumerate() {
                let session = crate::resumption::find_session(&config, fetched, &id.identity, true, now)
                    .filter(|(t, _)| t.suite == suite);
                let ticket =
                    session.as_ref().and_then(|(t, _)| t.ticket13.clone().map(|tk| (tk, t.peer_identity.clone())));
                let (key, external, who) = match ticket {
                    Some((tk, who)) => (Zeroizing::new(tk.psk.to_vec()), false, who),
                    None => match config.psks.as_ref().and_then(|st| st.key_for(&id.identity)) {
                        Some(k) => (k, true, PeerIdentity::Psk(id.identity.clone())),
                        None => continue,
                    },
                };
                let (_, offset) = ClientHello13::read_with_binders_offset(ch_body)?;
                let off = offset.ok_or(Error::Crypto)?;
                let mut partial = Vec::new();
                truncated_client_hello_transcript(ch_body, off, &mut partial);
                let binder_key = EarlySecret::new(Some(&key)).binder_key(external);
                let expected = tls13::psk_binder(&binder_key, &self.transcript.hash_with(&*provider, &partial));
                let got = offered.binders.get(i).map(|b| b.as_slice()).unwrap_or_default();
                if got.len() != expected.len() || !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], got)) {
                    return Err(Error::DecryptError("PSK binder"));
                }
                self.resumed = !external;
                if !external {
                    resumed_ticket = session.map(|(s, source)| (s, id.obfuscated_ticket_age, source));
                }
                identity = who;
                psk_key = Some(key);
                selected = i as u16;
                break;
            }
        }
        let modes = ch.psk_key_exchange_modes().unwrap_or_default();
        let key_share = ch.key_share_for(NamedGroup::Secp256r1);
        let use_dhe = match &psk_key {
            Some(_) if modes.contains(&PskKeyExchangeMode::PskDheKe) && key_share.is_some() => true,
            Some(_) if modes.contains(&PskKeyExchangeMode::PskKe) => false,
            Some(_) => {
                return Err(Error::Incompatible(Incompatible::NoUsablePskMode));
            }
            None => {
                let sigs_ok =
                    ch.signature_algorithms().is_some_and(|s| s.contains(&SignatureScheme::EcdsaSecp256r1Sha256));
                if config.cert.is_none() || !sigs_ok {
                    return Err(Error::Incompatible(Incompatible::NoCommonAuthentication));
                }
                true
            }
        };
        let key_share = match (use_dhe, key_share) {
            (true, Some(ks)) => Some(ks.clone()),
            (true, None) => {
                return Err(Error::Incompatible(Incompatible::NoSecp256r1));
            }
            (false, _) => None,
        };
        let mut random = [0u8; 32];
        self.rng().fill(&mut random);
        let mut sh_ext = vec![ServerHelloExtension13::SupportedVersions(ProtocolVersion::DTLS1_3)];
        let shared = match key_share {
            Some(ks) => {
                let eph = provider.ecdh_p256(self.rng())?;
                sh_ext.push(ServerHelloExtension13::KeyShare(KeyShareEntry {
                    group: NamedGroup::Secp256r1,
                    key_exchange: eph.public_key().to_vec(),
                }));
                Some(
                    eph.complete(&ks.key_exchange)
                        .map_err(|_| Error::PeerMisbehaved(PeerMisbehaved::InvalidKeyShare))?,
                )
            }
            None => None,
        };
        if psk_key.is_some() {
            sh_ext.push(ServerHelloExtension13::PreSharedKey(selected));
        }
        let sh = ServerHelloMessage13::ServerHello(ServerHello13 {
            legacy_version: ProtocolVersion::DTLS1_2,
            random: Random(random),
            // RFC 9147 §5: never echo the legacy_session_id.
            legacy_session_id_echo: SessionId::default(),
            cipher_suite: suite,
            legacy_compression_method: Compression::Null,
            extensions: sh_ext,
        });
        let after_hrr = !self.transcript.is_empty();
        self.transcript.add(&*provider, HandshakeType::ClientHello, ch_body);
        let early_accepted = self.server_early_decision(
            &config,
            &ch,
            selected,
            resumed_ticket.as_ref().filter(|_| psk_key.is_some()),
            suite,
            aead,
            after_hrr,
            now,
        )?;
        self.flight.clear();
        self.queue(EPOCH_PLAINTEXT, HandshakeType::ServerHello, sh.to_vec());
        let early = EarlySecret::new(psk_key.as_deref().map(|k| &k[..]));
        let hs_secret = early.into_handshake(shared.as_ref().map(|z| &z[..]));
        let th = self.transcript_hash();
        let client_hs = hs_secret.client_handshake_traffic_secret(&th);
        let server_hs = hs_secret.server_handshake_traffic_secret(&th);
        self.send_hs = Some(SendEpoch13::new(EPOCH_HANDSHAKE, self.protection(aead, &server_hs)?));
        self.recv_hs = Some(ReceiveEpoch13::new(EPOCH_HANDSHAKE, self.protection(aead, &client_hs)?));
        self.suite = Some(suite);
        // Certificate type (RFC 7250 §4.2).
        let cert_type = match ch.server_certificate_types() {
            Some(t) if config.raw_public_key && t.contains(&CertificateType::RawPublicKey) => {
                CertificateType::RawPublicKey
            }
            _ => CertificateType::X509,
        };
        let mut ee = Vec::new();
        if ch.server_certificate_types().is_some() && psk_key.is_none() {
            ee.push(EncryptedExtension13::ServerCertificateType(cert_type));
        }
        if early_accepted {
            ee.push(EncryptedExtension13::EarlyData);
        }
        self.queue(
            EPOCH_HANDSHAKE,
            HandshakeType::EncryptedExtensions,
            EncryptedExtensions13 { extensions: ee }.to_vec(),
        );
        let mut cert_requested = None;
        if psk_key.is_none() {
            if !matches!(config.client_auth, ClientAuth::None) {
                let cr = CertificateRequest13 {
                    certificate_request_context: Vec::new(),
                    extensions: vec![CertificateRequestExtension13::SignatureAlgorithms(vec![
                        SignatureScheme::EcdsaSecp256r1Sha256,
                    ])],
                };
                self.queue(EPOCH_HANDSHAKE, HandshakeType::CertificateRequest, cr.to_vec());
                cert_requested = Some(Vec::new());
            }
            let ck = config.cert.as_ref().ok_or(Error::Crypto)?;
            let list = match cert_type {
                CertificateType::RawPublicKey => {
                    vec![CertificateEntry { data: ck.key.public_key_spki(), extensions: Vec::new() }]
                }
                _ => ck.chain.iter().map(|c| CertificateEntry { data: c.clone(), extensions: Vec::new() }).collect(),
            };
            let cert = Certificate13 { certificate_request_context: Vec::new(), certificate_list: list };
            self.queue(EPOCH_HANDSHAKE, HandshakeType::Certificate, cert.to_vec());
            let content = certificate_verify_content(Role::Server, &self.transcript_hash());
            let signature = ck.key.sign(&content)?;
            let cv = CertificateVerify13 { algorithm: SignatureScheme::EcdsaSecp256r1Sha256, signature };
            self.queue(EPOCH_HANDSHAKE, HandshakeType::CertificateVerify, cv.to_vec());
        }
        let vd = tls13::finished_verify_data(&server_hs, &self.transcript_hash());
        self.queue(EPOCH_HANDSHAKE, HandshakeType::Finished, vd.to_vec());
        let th_server_finished = self.transcript_hash();
        self.send_new_flight(now, true);
        // RFC 8446 §7.1 / §2.3: server_application_traffic_secret_0 hashes the transcript
        // through our Finished, so our epoch-3 sending keys exist now ("0.5-RTT data"); the
        // flight above is sealed and owns no epoch-3 record, so its retransmission and ACKs
        // are unaffected. Receiving in epoch 3 waits for the client's Finished.
        let master = hs_secret.into_master();
        let client_ap = master.client_application_traffic_secret_0(&th_server_finished);
        let server_ap = master.server_application_traffic_secret_0(&th_server_finished);
        self.send_app = Some(SendEpoch13::new(EPOCH_APPLICATION, self.protection(aead, &server_ap)?));
        self.aead = Some(aead);
        self.half_rtt = Some(Box::new(HalfRtt {
            master,
            client_ap,
            server_ap,
            may_send: cert_requested.is_none(),
            address_verified: after_hrr,
            // The ClientHello record (13-byte header, 12-byte handshake header) until the
            // whole first datagram is known.
            received: ch_body.len() as u64 + 25,
            held: Vec::new(),
        }));
        let k = Keys {
            suite,
            aead,
            hs_secret: None,
            client_hs,
            server_hs,
            psk: psk_key.is_some(),
            cert_type,
            cert_requested: cert_requested.clone(),
            identity,
        };
        self.hs = Some(Box::new(if cert_requested.is_some() {
            Hs::SExpectCertificate { k }
        } else {
            let identity = k.identity.clone();
            Hs::SExpectFinished { k, identity }
        }));
        Ok(())
    }

    fn server_verify_client_certificate(
        &self,
        k: &Keys,
        body: &[u8],
    ) -> Result<Option<([u8; 65], PeerIdentity)>, Error> {
        let config = self.server_config()?;
        let cert = Certificate13::read_exact_with(body, k.cert_type)?;
        let now = (config.common.wall_clock)();
        let (verifier, required) = match &config.client_auth {
            ClientAuth::None => {
                return Err(Error::PeerMisbehaved(PeerMisbehaved::UnrequestedClientCertificate13));
            }
            ClientAuth::Optional(v) => (v, false),
            ClientAuth::Required(v) => (v, true),
        };
        if cert.certificate_list.is_empty() {
            return if required {
                Err(Error::Incompatible(Incompatible::ClientCertificateRequired13))
            } else {
                Ok(None)
            };
        }
        let chain: Vec<Vec<u8>> = cert.certificate_list.iter().map(|e| e.data.clone()).collect();
        match verifier {
            PeerVerifier::WebPki(v) => Ok(Some((v.verify_client(&chain, now)?, PeerIdentity::Certificate(chain)))),
            PeerVerifier::Pinned(p) => {
                let spki = chain.into_iter().next().unwrap_or_default();
                Ok(Some((p.verify(&spki)?, PeerIdentity::RawPublicKey(spki))))
            }
        }
    }

    /// The client's Finished verified: the client's epoch-3 keys (derived at our Finished,
    /// RFC 8446 §7.1) are installed for receiving; our sending keys have been in place since
    /// our Finished and keep their record numbers. Held 0.5-RTT data goes out now.
    fn server_complete(&mut self, now: Instant, k: Keys, identity: PeerIdentity) -> Result<(), Error> {
        let hr = self.half_rtt.take().ok_or(Error::Crypto)?;
        let HalfRtt { master, client_ap, server_ap, held, .. } = *hr;
        self.recv_app = Some(ReceiveEpoch13::new(EPOCH_APPLICATION, self.protection(k.aead, &client_ap)?));
        self.app_secrets = Some(Box::new((server_ap, client_ap)));
        // RFC 9147 §7: acknowledge the client's final flight.
        self.ack_now = true;
        self.flight.clear();
        self.timer_armed = false;
        let res_master = master.resumption_master_secret(&self.transcript_hash());
        self.established(k.suite, identity.clone());
        for data in held {
            // The key usage limit cannot be reached this early; were it, the association ends.
            self.send_app_record(&data).map_err(|e| match e {
                UsageError::LimitReached(w) => Error::LimitReached(w),
                _ => Error::Crypto,
            })?;
        }
        self.issue_ticket(now, k.suite, identity, &res_master);
        Ok(())
    }

    // ------------------------------------------------------------------------------------
    // shared

    fn handle_message(&mut self, now: Instant, msg: HandshakeMessage) -> Result<(), Error> {
        let Some(hs) = self.hs.take().map(|b| *b) else {
            return self.handle_post_handshake(now, msg);
        };
        let body = msg.body.as_slice();
        let typ = msg.msg_type;
        if self.timer_armed {
            // The first message of the peer's next flight answers ours (RFC 9147 §5.8.2); the
            // timer measures it only if ours went out once. A HelloRetryRequest (a ServerHello
            // with the RFC 8446 §4.1.3 random) ends the stateless exchange.
            let hrr = typ == HandshakeType::ServerHello && body.get(2..34) == Some(&HELLO_RETRY_REQUEST_RANDOM[..]);
            let kind = if hrr { RttSampleKind::Cookie } else { RttSampleKind::Flight };
            self.timer.on_answer(now, kind);
        }
        // The transcript hash before this message: what CertificateVerify signs and Finished
        // MACs (RFC 8446 §4.4.3, §4.4.4); not needed for the other messages.
        let before = match typ {
            HandshakeType::CertificateVerify | HandshakeType::Finished => self.transcript_hash(),
            _ => [0; 32],
        };
        if typ != HandshakeType::ServerHello {
            self.transcript.add(provider(&self.cfg), typ, body);
        }
        let next = match (hs, typ) {
            (Hs::CExpectServerHello { ch, eph, retried }, HandshakeType::ServerHello) => {
                self.client_handle_server_hello(now, ch, eph, retried, body)?
            }
            (Hs::CExpectEncryptedExtensions { mut k }, HandshakeType::EncryptedExtensions) => {
                let ee = EncryptedExtensions13::read_exact(body)?;
                if let Some(t) = ee.server_certificate_type() {
                    k.cert_type = t;
                }
                self.client_early_outcome(ee.has_early_data())?;
                Some(if k.psk { Hs::CExpectFinished { k } } else { Hs::CExpectCertificateOrRequest { k } })
            }
            (Hs::CExpectCertificateOrRequest { mut k }, HandshakeType::CertificateRequest) => {
                let cr = CertificateRequest13::read_exact(body)?;
                k.cert_requested = Some(cr.certificate_request_context);
                Some(Hs::CExpectCertificate { k })
            }
            (Hs::CExpectCertificateOrRequest { k } | Hs::CExpectCertificate { k }, HandshakeType::Certificate) => {
                let (point, identity) = self.client_verify_certificate(&k, body)?;
                let mut k = k;
                k.identity = identity;
                Some(Hs::CExpectCertificateVerify { k, point })
            }
            (Hs::CExpectCertificateVerify { k, point }, HandshakeType::CertificateVerify) => {
                self.verify_certificate_verify(&point, Role::Server, body, &before)?;
                Some(Hs::CExpectFinished { k })
            }
            (Hs::CExpectFinished { k }, HandshakeType::Finished) => {
                let th = before;
                if !tls13::verify_finished(&k.server_hs, &th, body) {
                    return Err(Error::DecryptError("server Finished"));
                }
                self.client_finish(now, k)?;
                None
            }
            (Hs::SExpectCertificate { k }, HandshakeType::Certificate) => {
                match self.server_verify_client_certificate(&k, body)? {
                    Some((point, identity)) => Some(Hs::SExpectCertificateVerify { k, point, identity }),
                    None => {
                        let identity = k.identity.clone();
                        Some(Hs::SExpectFinished { k, identity })
                    }
                }
            }
            (Hs::SExpectCertificateVerify { k, point, identity }, HandshakeType::CertificateVerify) => {
                self.verify_certificate_verify(&point, Role::Client, body, &before)?;
                Some(Hs::SExpectFinished { k, identity })
            }
            (Hs::SExpectFinished { k, identity }, HandshakeType::Finished) => {
                let th = before;
                if !tls13::verify_finished(&k.client_hs, &th, body) {
                    return Err(Error::DecryptError("client Finished"));
                }
                self.server_complete(now, k, identity)?;
                None
            }
            (_, _) => {
                return Err(Error::PeerMisbehaved(PeerMisbehaved::HandshakeMessageOutOfOrder));
            }
        };
        self.hs = next.map(Box::new);
        Ok(())
    }
}

impl Conn13 {
    fn queue(&mut self, epoch: u64, msg_type: HandshakeType, body: Vec<u8>) {
        let message_seq = self.send_seq;
        self.send_seq = self.send_seq.wrapping_add(1);
        // RFC 9147 §5.2: the transcript uses the TLS 1.3 message form, without the DTLS fields.
        self.transcript.add(provider(&self.cfg), msg_type, &body);
        self.flight.push(FlightMsg::new(epoch, msg_type, message_seq, body));
    }

    fn send_new_flight(&mut self, now: Instant, expect_reply: bool) {
        self.peer_flight_start = self.reasm.next_seq();
        self.sent_records.clear();
        if self.state == State::Handshaking {
            // RFC 9147 §7: our next flight implicitly acknowledges the peer's, and ACKs cover
            // only the current flight, so the ACK list starts over.
            self.to_ack.clear();
            self.ack_deadline = None;
            self.hs_record_received = false;
        }
        self.encode_flight();
        self.timer_armed = self.timer.start_flight(now, expect_reply);
    }

    /// Sends the current flight again: only the fragments the peer has not acknowledged, split
    /// afresh to the MTU (RFC 9147 §5.8.1 SENDING state "SHOULD omit any messages or message
    /// fragments which have already been acknowledged", §7.2). The counters compare this with
    /// a whole-flight retransmission (RFC 6347 §4.2.4, still what DTLS 1.2 does) at the same
    /// timer or peer-triggered events; ACK-triggered resends have no whole-flight counterpart,
    /// so they count on the selective side only.
    fn retransmit(&mut self, why: Resend) {
        self.out.stats.retransmissions += 1;
        // Karn's rule (RFC 6298 §3): an answer after a resend is no RTT sample.
        self.timer.note_retransmitted();
        if why != Resend::PartialAck {
            let mtu = self.common().mtu;
            let whole: usize = self
                .flight
                .iter()
                .map(|m| fragment(m.msg_type, m.message_seq, &m.body, m.max_fragment(mtu)).len())
                .sum();
            self.out.stats.whole_flight_records += whole as u64;
        }
        let sent = self.encode_flight();
        self.out.stats.records_retransmitted += sent as u64;
    }

    /// Encodes the flight's unacknowledged fragments (RFC 9147 §7.2: only what the peer has
    /// not acknowledged is resent), fragmenting to the MTU and packing records into datagrams;
    /// every record but the last of a datagram carries its length (RFC 9147 §4). Returns the
    /// number of records written.
    fn encode_flight(&mut self) -> usize {
        let mtu = self.common().mtu;
        let mut items: Vec<Outgoing> = Vec::new();
        for (i, m) in self.flight.iter().enumerate() {
            let max_frag = m.max_fragment(mtu);
            for gap in m.delivered.gaps(m.body.len()) {
                for (hdr, frag) in fragment_range(m.msg_type, m.message_seq, &m.body, gap, max_frag) {
                    let start = hdr.fragment_offset as usize;
                    let carried = Carried { msg: i, start, end: start + frag.len() };
                    let mut p = Vec::with_capacity(HandshakeHeader::LEN + frag.len());
                    hdr.encode(&mut p);
                    p.extend_from_slice(frag);
                    items.push((m.epoch, ContentType::Handshake, p, Some(carried)));
                }
            }
        }
        let n = items.len();
        self.pack(items);
        n
    }

    fn sealed_len(&self, epoch: u64, len: usize, style: HeaderStyle) -> usize {
        let prot = match epoch {
            EPOCH_PLAINTEXT => None,
            EPOCH_HANDSHAKE => self.send_hs.as_ref().map(|s| s.protection()),
            _ => self.send_app.as_ref().map(|s| s.protection()),
        };
        prot.map_or(13 + len, |p| p.sealed_len(len, style))
    }

    fn pack(&mut self, items: Vec<Outgoing>) {
        let mtu = self.common().mtu;
        let mut datagrams: Vec<Vec<Outgoing>> = Vec::new();
        let mut cur: Vec<Outgoing> = Vec::new();
        let mut cur_len = 0;
        for it in items {
            let len = self.sealed_len(it.0, it.2.len(), HeaderStyle::FULL);
            if cur_len + len > mtu && !cur.is_empty() {
                datagrams.push(std::mem::take(&mut cur));
                cur_len = 0;
            }
            cur_len += len;
            cur.push(it);
        }
        if !cur.is_empty() {
            datagrams.push(cur);
        }
        for d in datagrams {
            let n = d.len();
            let mut out = Vec::with_capacity(mtu);
            for (i, (epoch, ct, plain, carried)) in d.into_iter().enumerate() {
                let last = i + 1 == n;
                let style = HeaderStyle { length: !last, ..HeaderStyle::choose(0, None, last) };
                if let Some(seq) = self.write_record(epoch, ct, &plain, &mut out, style)
                    && let Some(carried) = carried
                {
                    self.sent_records.push(SentRecord { epoch, seq, carried, acked: false });
                }
            }
            if !out.is_empty() {
                self.push_datagram(out);
            }
        }
    }

    /// Writes one record in `epoch`; returns its sequence number.
    fn write_record(
        &mut self,
        epoch: u64,
        ct: ContentType,
        plain: &[u8],
        out: &mut Vec<u8>,
        style: HeaderStyle,
    ) -> Option<u64> {
        match epoch {
            EPOCH_PLAINTEXT => {
                let seq = self.plain_seq;
                self.plain_seq += 1;
                encode_plaintext13(ct, EPOCH_PLAINTEXT, seq, plain, out);
                Some(seq)
            }
            EPOCH_HANDSHAKE => self.send_hs.as_mut()?.seal(ct, plain, out, style).ok(),
            _ => {
                let seq = self.send_app.as_mut()?.seal(ct, plain, out, style).ok()?;
                if ct == ContentType::ApplicationData && self.send_app.as_ref().is_some_and(|s| s.key_update_due()) {
                    // RFC 9846 §5.5: update the keys before the AEAD limits are reached.
                    self.auto_key_update = true;
                }
                Some(seq)
            }
        }
    }

    fn push_datagram(&mut self, d: Vec<u8>) {
        self.out.push_datagram(d);
    }

    fn current_epoch(&self) -> u64 {
        if let Some(a) = self.send_app.as_ref().filter(|_| self.state == State::Established) {
            a.epoch()
        } else if self.send_hs.is_some() {
            EPOCH_HANDSHAKE
        } else {
            EPOCH_PLAINTEXT
        }
    }

    fn send_alert(&mut self, level: AlertLevel, description: AlertDescription) {
        let alert = Alert { level, description }.encode();
        let epoch = self.current_epoch();
        let mut out = Vec::new();
        if self.write_record(epoch, ContentType::Alert, &alert, &mut out, HeaderStyle::choose(0, None, true)).is_some()
        {
            self.push_datagram(out);
        }
    }

    /// Sends an ACK of the handshake records received. During the handshake the list is kept
    /// and each ACK repeats it whole, since an earlier ACK may have been lost (RFC 9147 §7: an
    /// ACK lists the records of the current flight received so far); after the handshake each
    /// record is acknowledged once (§7, post-handshake messages). The list is cut to what fits
    /// one datagram, keeping the newest records, which are the likeliest not yet acknowledged
    /// (§7.1 "SHOULD favor including records which have not yet been acknowledged").
    fn send_ack(&mut self) {
        self.ack_now = false;
        self.ack_deadline = None;
        if self.to_ack.is_empty() {
            return;
        }
        self.to_ack.sort();
        self.to_ack.dedup();
        let mut numbers =
            if self.state == State::Handshaking { self.to_ack.clone() } else { std::mem::take(&mut self.to_ack) };
        // Record header (up to 5) + content type + tag (16) + the ACK's 2-byte length.
        let fit = self.common().mtu.saturating_sub(5 + 1 + 16 + 2) / 16;
        if numbers.len() > fit {
            numbers.drain(..numbers.len() - fit);
        }
        let ack = Ack { record_numbers: numbers };
        // A server that sends 0.5-RTT data has epoch-3 keys before the handshake completes;
        // its ACKs of the client's flight stay in epoch 2 until then.
        let epoch = match &self.send_app {
            Some(a) if self.state == State::Established => a.epoch(),
            _ => EPOCH_HANDSHAKE,
        };
        let mut out = Vec::new();
        if self
            .write_record(epoch, ContentType::Ack, &ack.to_vec(), &mut out, HeaderStyle::choose(0, None, true))
            .is_some()
        {
            self.push_datagram(out);
        }
    }

    /// RFC 9147 §7.2: every fragment carried by an acknowledged record is delivered, in
    /// whichever transmission it was acknowledged; a partial ACK that acknowledges something
    /// new makes us resend the rest at once; a complete one cancels retransmission.
    fn handle_ack(&mut self, body: &[u8]) {
        let Ok(ack) = Ack::read_exact(body) else {
            self.out.stats.records_invalid += 1;
            return;
        };
        let mut newly = false;
        let selective = self.common().selective_retransmission;
        for rn in &ack.record_numbers {
            for r in self.sent_records.iter_mut() {
                if r.epoch == rn.epoch && r.seq == rn.sequence_number && !r.acked {
                    r.acked = true;
                    if let Some(m) = self.flight.get_mut(r.carried.msg) {
                        m.delivered.insert(r.carried.start, r.carried.end);
                        newly = true;
                    }
                }
            }
        }
        if newly && self.timer_armed {
            // RFC 9147 §5.8.2: a message acknowledged without having been retransmitted gives
            // an RTT sample (only the first ACK of the flight's single transmission counts).
            self.timer.on_answer(self.last_activity, RttSampleKind::Ack);
        }
        if !selective && self.flight.iter().any(|m| !m.acked()) {
            // Whole-flight mode: only a complete ACK counts; the flight stays whole.
            for m in self.flight.iter_mut() {
                m.delivered = Delivered::default();
            }
            for r in self.sent_records.iter_mut() {
                r.acked = false;
            }
            newly = false;
        }
        if newly && self.timer_armed && self.flight.iter().any(|m| !m.acked()) {
            let now = self.last_activity;
            self.retransmit(Resend::PartialAck);
            self.timer.rearm(now);
        }
        if !self.flight.is_empty() && self.flight.iter().all(|m| m.acked()) {
            self.timer_armed = false;
            self.timer.disarm();
            if self.key_update_pending {
                self.switch_send_keys();
            }
            if self.state == State::Established {
                self.flight.clear();
                self.sent_records.clear();
            }
        }
    }

    pub(crate) fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        if self.state == State::Closed {
            return;
        }
        if let Some(hr) = self.half_rtt.as_mut() {
            hr.received += datagram.len() as u64;
        }
        self.out.stats.datagrams_received += 1;
        self.last_activity = now;
        let mut peer_repeated = false;
        self.hs_record_received = false;
        let mut records = record13::split_datagram13(datagram);
        for rec in records.by_ref() {
            self.handle_record(rec, &mut peer_repeated);
            if self.state == State::Closed {
                return;
            }
        }
        if records.hit_malformed() {
            self.out.stats.records_invalid += 1;
        }
        self.drain(now, &mut peer_repeated);
        if self.state == State::Closed {
            return;
        }
        if peer_repeated {
            if self.state == State::Established {
                // Our ACK (of the client's final flight, or of a KeyUpdate) was lost
                // (RFC 9147 §7): acknowledge the repeat.
                self.ack_now = true;
            } else if self.state == State::Handshaking
                && !self.flight.is_empty()
                && self.flight.iter().all(|m| m.delivered == Delivered::default())
            {
                // RFC 9147 §5.8.1 way 3: only when nothing of our flight was acknowledged;
                // otherwise the peer's ACK already told us what to resend.
                self.retransmit(Resend::PeerRepeated);
            }
        }
        if self.ack_now {
            self.send_ack();
        } else if self.hs_record_received
            && self.state == State::Handshaking
            && self.ack_deadline.is_none()
            && self.common().selective_retransmission
        {
            // RFC 9147 §7.1: part of the peer's flight arrived and the rest did not come with
            // it; acknowledge what we have if the rest is still missing after a quarter of the
            // retransmission timeout, so that the peer resends only the missing fragments.
            // (Reordered fragments alone do not trigger an ACK: with jitter they are common,
            // and an ACK for them would make the peer resend fragments still in flight.)
            self.ack_deadline = Some(now + self.timer.current() / 4);
        }
    }

    fn handle_record(&mut self, rec: Record13<'_>, peer_repeated: &mut bool) {
        match rec {
            Record13::Plaintext(raw) => {
                // Epoch 0: only the hellos travel in the clear; alerts in the clear are
                // believed only before the peer has keys.
                match raw.header.content_type {
                    ContentType::Handshake if raw.header.epoch == 0 => {
                        let seq = raw.header.sequence_number;
                        let accepted = self.handle_handshake_payload(EPOCH_PLAINTEXT, raw.fragment, seq, peer_repeated);
                        // The client acknowledges the ServerHello record with the rest of the
                        // server's flight, in epoch 2 (RFC 9147 §7: an ACK's epoch may be higher
                        // than the records it covers).
                        if accepted && self.role == Role::Client && self.state == State::Handshaking {
                            self.note_handshake_record(EPOCH_PLAINTEXT, seq);
                        }
                    }
                    ContentType::Alert if self.recv_hs.is_none() => self.handle_alert(raw.fragment),
                    _ => self.out.stats.records_invalid += 1,
                }
            }
            Record13::Ciphertext(ct) => {
                let bits = u64::from(ct.header.epoch_bits);
                // RFC 9147 §4.2.2: the epoch whose low bits match, newest first.
                let opened = if let Some(r) = self.recv_app.as_mut().filter(|r| r.epoch() & 3 == bits) {
                    let e = r.epoch();
                    r.open(&ct).map(|o| (e, o))
                } else if let Some(r) = self.recv_prev.as_mut().filter(|r| r.epoch() & 3 == bits) {
                    let e = r.epoch();
                    r.open(&ct).map(|o| (e, o))
                } else if bits == 1 && self.early.is_some() {
                    // 0-RTT data (RFC 9147 §6.1 epoch 1).
                    self.handle_early_record(&ct);
                    return;
                } else if let Some(r) = self.recv_hs.as_mut().filter(|_| bits == 2) {
                    r.open(&ct).map(|o| (EPOCH_HANDSHAKE, o))
                } else if (bits == 3 && self.recv_app.is_none())
                    || (bits == 2 && self.recv_hs.is_none() && self.state == State::Handshaking)
                {
                    // Application data that overtook the Finished that makes its keys, or
                    // the server's encrypted flight packed in the datagram after the
                    // ServerHello that makes its keys (the records are split before the
                    // ServerHello is processed): held and replayed once the keys exist.
                    if self.early_records.len() < self.common().max_early_records {
                        let mut v = ct.header_bytes.to_vec();
                        v.extend_from_slice(ct.encrypted_record);
                        self.early_records.push(v);
                    }
                    return;
                } else {
                    Err(record13::OpenError13::WrongEpoch)
                };
                let (epoch, o) = match opened {
                    Ok(x) => x,
                    Err(record13::OpenError13::Authentication) => {
                        self.out.stats.records_auth_failed += 1;
                        return;
                    }
                    Err(record13::OpenError13::Replay) => {
                        self.out.stats.records_replayed += 1;
                        return;
                    }
                    Err(_) => {
                        self.out.stats.records_invalid += 1;
                        return;
                    }
                };
                match o.content_type {
                    ContentType::Handshake => {
                        // RFC 9147 §7: acknowledge only records processed or buffered.
                        if self.handle_handshake_payload(epoch, &o.plaintext, o.seq, peer_repeated) {
                            self.note_handshake_record(epoch, o.seq);
                        }
                    }
                    ContentType::Ack => self.handle_ack(&o.plaintext),
                    ContentType::Alert => self.handle_alert(&o.plaintext),
                    ContentType::ApplicationData if epoch >= EPOCH_APPLICATION => {
                        self.end_early_epoch();
                        // Application data from the server does not prove that it has our
                        // Finished: it may be 0.5-RTT data (RFC 8446 §2.3). Only its ACK
                        // ends the retransmission of our final flight (RFC 9147 §5.8.3).
                        match self.state {
                            State::Established => self.out.events.push_back(Event::ApplicationData(o.plaintext)),
                            State::Handshaking if self.early_app_data.len() < self.common().max_early_records => {
                                self.early_app_data.push(o.plaintext)
                            }
                            _ => self.out.stats.records_invalid += 1,
                        }
                    }
                    _ => self.out.stats.records_invalid += 1,
                }
            }
        }
    }

    /// Feeds a handshake record's fragments to the reassembler; returns whether every one was
    /// buffered or already held, i.e. whether the record may be acknowledged (RFC 9147 §7).
    fn handle_handshake_payload(&mut self, epoch: u64, payload: &[u8], _seq: u64, peer_repeated: &mut bool) -> bool {
        let mut r = Reader::new(payload);
        let mut all = true;
        while !r.is_empty() {
            let Ok((hdr, frag)) = HandshakeHeader::read_fragment(&mut r) else {
                self.out.stats.records_invalid += 1;
                return false;
            };
            // Only the hellos may arrive in the clear (RFC 9147 §4.1).
            if epoch == EPOCH_PLAINTEXT
                && !matches!(hdr.msg_type, HandshakeType::ServerHello | HandshakeType::ClientHello)
            {
                self.out.stats.records_invalid += 1;
                all = false;
                continue;
            }
            match self.reasm.insert(&hdr, frag) {
                Ok(Insert::Old) if hdr.message_seq < self.peer_flight_start || self.state == State::Established => {
                    *peer_repeated = true
                }
                Ok(_) => {}
                Err(_) => {
                    self.out.stats.records_invalid += 1;
                    all = false;
                }
            }
        }
        all
    }

    fn note_handshake_record(&mut self, epoch: u64, seq: u64) {
        if self.to_ack.len() < MAX_TO_ACK {
            self.to_ack.push(RecordNumber { epoch, sequence_number: seq });
        }
        self.hs_record_received = true;
    }

    fn handle_alert(&mut self, payload: &[u8]) {
        let Ok(alert) = Alert::read_exact(payload) else {
            self.out.stats.records_invalid += 1;
            return;
        };
        if alert.description == AlertDescription::CloseNotify {
            if self.state == State::Established {
                self.send_alert(AlertLevel::Warning, AlertDescription::CloseNotify);
            }
            self.closed(CloseReason::PeerClosed);
        } else {
            // RFC 8446 §6: in TLS 1.3 every alert but close_notify and user_canceled is fatal.
            if alert.description != AlertDescription::UserCanceled {
                self.closed(CloseReason::Error(Error::AlertReceived(alert.description)));
            }
        }
    }

    fn drain(&mut self, now: Instant, peer_repeated: &mut bool) {
        loop {
            while let Some(msg) = self.reasm.pop() {
                if let Err(e) = self.handle_message(now, msg) {
                    self.fail(e);
                    return;
                }
                if self.state == State::Closed {
                    return;
                }
            }
            let (hs, app) = (self.recv_hs.is_some(), self.recv_app.is_some());
            let (ready, held): (Vec<_>, Vec<_>) = std::mem::take(&mut self.early_records)
                .into_iter()
                .partition(|d| if d.first().is_some_and(|b| b & 3 == 2) { hs } else { app });
            self.early_records = held;
            if !ready.is_empty() {
                for d in ready {
                    for rec in record13::split_datagram13(&d) {
                        self.handle_record(rec, peer_repeated);
                    }
                }
                continue;
            }
            break;
        }
    }

    fn established(&mut self, suite: CipherSuite, identity: PeerIdentity) {
        self.state = State::Established;
        self.identity = identity.clone();
        self.rng = None;
        self.transcript = Transcript::default();
        self.resume = None;
        self.out.events.push_back(Event::Connected { identity, suite, resumed: self.resumed });
        for d in std::mem::take(&mut self.early_app_data) {
            self.out.events.push_back(Event::ApplicationData(d));
        }
    }

    fn fail(&mut self, e: Error) {
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
        self.ack_deadline = None;
        self.flight.clear();
        self.hs = None;
        self.out.closed(reason);
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if self.ack_deadline.is_some_and(|d| d <= now) {
            self.send_ack();
        }
        let Some(deadline) = self.timer.deadline().filter(|_| self.timer_armed) else { return };
        if now < deadline {
            return;
        }
        if self.timer.on_timeout(now).is_err() {
            self.timer_armed = false;
            if self.state == State::Handshaking {
                self.fail(Error::HandshakeTimeout);
            }
            return;
        }
        self.retransmit(Resend::Timer);
        self.resend_early_records();
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let retransmit = if self.timer_armed { self.timer.deadline() } else { None };
        match (retransmit, self.ack_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.poll_transmit()
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.out.poll_event()
    }

    pub(crate) fn max_payload(&self) -> usize {
        let style = HeaderStyle::choose(0, None, true);
        self.send_app.as_ref().map_or(0, |s| s.protection().max_plaintext_len(self.common().mtu, style)).min(16384)
    }

    pub(crate) fn send(&mut self, data: &[u8]) -> Result<(), UsageError> {
        let half_rtt = self.state == State::Handshaking && self.half_rtt.is_some();
        if self.state != State::Established && !half_rtt {
            return Err(UsageError::NotConnected);
        }
        let max = self.max_payload();
        if data.len() > max {
            return Err(UsageError::MessageTooLarge { len: data.len(), max });
        }
        if half_rtt {
            return self.send_half_rtt(data);
        }
        self.send_app_record(data)
    }

    /// Server between its Finished and the client's (RFC 8446 §2.3 "0.5-RTT data"): sends
    /// now when no client certificate is pending and the address is proven or the three-times
    /// amplification limit allows it (RFC 9147 §5.1), else holds the data for the client's
    /// Finished, in order.
    fn send_half_rtt(&mut self, data: &[u8]) -> Result<(), UsageError> {
        let sealed = self.sealed_len(EPOCH_APPLICATION, data.len(), HeaderStyle::choose(0, None, true)) as u64;
        let max_held = self.common().max_early_records;
        let sent = self.out.stats.bytes_sent;
        let Some(hr) = self.half_rtt.as_mut() else { return Err(UsageError::NotConnected) };
        let within_limit = hr.address_verified || sent + sealed <= hr.received.saturating_mul(3);
        if hr.may_send && within_limit && hr.held.is_empty() {
            return self.send_app_record(data);
        }
        if hr.held.len() >= max_held {
            return Err(UsageError::LimitReached("0.5-RTT data held until the client's Finished"));
        }
        hr.held.push(data.to_vec());
        Ok(())
    }

    fn send_app_record(&mut self, data: &[u8]) -> Result<(), UsageError> {
        let mut out = Vec::with_capacity(data.len() + 32);
        let epoch = self.send_app.as_ref().map_or(EPOCH_APPLICATION, |a| a.epoch());
        self.write_record(epoch, ContentType::ApplicationData, data, &mut out, HeaderStyle::choose(0, None, true))
            .ok_or(UsageError::LimitReached("application key usage limit reached"))?;
        self.push_datagram(out);
        if std::mem::take(&mut self.auto_key_update) {
            self.initiate_key_update(self.last_activity, KeyUpdateRequest::UpdateNotRequested);
        }
        Ok(())
    }

    pub(crate) fn close(&mut self) {
        if self.state == State::Closed {
            return;
        }
        self.send_alert(AlertLevel::Warning, AlertDescription::CloseNotify);
        self.closed(CloseReason::Local);
    }

    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }
    pub(crate) fn role(&self) -> Role {
        self.role
    }
    pub(crate) fn is_established(&self) -> bool {
        self.state == State::Established
    }
    pub(crate) fn is_handshaking(&self) -> bool {
        self.state == State::Handshaking
    }
    pub(crate) fn is_closed(&self) -> bool {
        self.state == State::Closed
    }
    pub(crate) fn close_reason(&self) -> Option<&CloseReason> {
        self.out.close_reason.as_deref()
    }
    pub(crate) fn suite(&self) -> Option<CipherSuite> {
        self.suite
    }
    pub(crate) fn peer_identity(&self) -> &PeerIdentity {
        &self.identity
    }
    pub(crate) fn client_random(&self) -> &[u8; 32] {
        &self.client_random
    }
    pub(crate) fn is_same_client_hello(&self, body: &[u8]) -> bool {
        self.role == Role::Server && hash(&*self.common().provider, body) == self.hello_digest
    }
    pub(crate) fn stats(&self) -> Stats {
        self.out.stats
    }
    pub(crate) fn last_activity(&self) -> Instant {
        self.last_activity
    }
}

impl Conn13 {
    /// Post-handshake messages (RFC 9147 §5.8.4 / RFC 8446 §4.6): KeyUpdate is acted on and
    /// acknowledged; NewSessionTicket is acknowledged (resumption is not implemented yet).
    fn handle_post_handshake(&mut self, now: Instant, msg: HandshakeMessage) -> Result<(), Error> {
        self.ack_now = true;
        match msg.msg_type {
            HandshakeType::KeyUpdate => {
                let ku = KeyUpdate::read_exact(&msg.body)?;
                if matches!(ku.request_update, KeyUpdateRequest::Unknown(_)) {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::InvalidKeyUpdateRequest));
                }
                self.switch_recv_keys()?;
                if ku.request_update == KeyUpdateRequest::UpdateRequested && !self.key_update_pending {
                    // RFC 8446 §4.6.3: answer with our own KeyUpdate, not requesting another.
                    self.initiate_key_update(now, KeyUpdateRequest::UpdateNotRequested);
                }
                Ok(())
            }
            HandshakeType::NewSessionTicket => {
                let nst = NewSessionTicket13::read_exact(&msg.body)?;
                let max_early_data = nst.max_early_data_size().unwrap_or(0);
                if let (Some(rm), Some(suite), Role::Client) = (&self.res_master, self.suite, self.role) {
                    let psk = tls13::resumption_psk(rm, &nst.ticket_nonce);
                    // RFC 8446 §4.6.1: never longer than seven days.
                    let lifetime = std::time::Duration::from_secs(u64::from(nst.ticket_lifetime))
                        .min(crate::resumption::MAX_TICKET_LIFETIME);
                    if !lifetime.is_zero() {
                        self.session = Some(Session {
                            id: nst.ticket,
                            suite,
                            extended_master_secret: true,
                            peer_identity: self.identity.clone(),
                            established_at: now,
                            lifetime,
                            master_secret: Zeroizing::new([0; 48]),
                            ticket13: Some(Ticket13 {
                                psk: Zeroizing::new(*psk.as_bytes()),
                                age_add: nst.ticket_age_add,
                                max_early_data,
                                client_ip: None,
                            }),
                        });
                    }
                }
                Ok(())
            }
            _ => Err(Error::PeerMisbehaved(PeerMisbehaved::HandshakeMessageAfterHandshake)),
        }
    }

    /// Sends a KeyUpdate in the current epoch; our sending keys change once it is acknowledged
    /// (RFC 9147 §8), our receiving keys when the peer's KeyUpdate arrives.
    pub(crate) fn initiate_key_update(&mut self, now: Instant, request: KeyUpdateRequest) {
        if self.state != State::Established || self.key_update_pending || self.send_app.is_none() {
            return;
        }
        let epoch = self.send_app.as_ref().map_or(EPOCH_APPLICATION, |a| a.epoch());
        let message_seq = self.send_seq;
        self.send_seq = self.send_seq.wrapping_add(1);
        self.flight.clear();
        self.flight.push(FlightMsg::new(
            epoch,
            HandshakeType::KeyUpdate,
            message_seq,
            KeyUpdate { request_update: request }.to_vec(),
        ));
        self.key_update_pending = true;
        self.send_new_flight(now, true);
    }

    fn next_epoch_keys(&self, secret: &Secret) -> Result<(Secret, RecordProtection13), Error> {
        let aead = self.aead.ok_or(Error::Crypto)?;
        let next = tls13::next_application_traffic_secret(secret);
        let prot = self.protection(aead, &next)?;
        Ok((next, prot))
    }

    fn switch_send_keys(&mut self) {
        self.key_update_pending = false;
        let (Some(secrets), Some(send)) = (&self.app_secrets, &self.send_app) else { return };
        let epoch = send.epoch() + 1;
        if let Ok((next, prot)) = self.next_epoch_keys(&secrets.0) {
            self.send_app = Some(SendEpoch13::new(epoch, prot));
            if let Some(s) = self.app_secrets.as_mut() {
                s.0 = next;
            }
        }
        self.flight.clear();
        self.sent_records.clear();
    }

    fn switch_recv_keys(&mut self) -> Result<(), Error> {
        let (Some(secrets), Some(recv)) = (&self.app_secrets, &self.recv_app) else { return Err(Error::Crypto) };
        let epoch = recv.epoch() + 1;
        let (next, prot) = self.next_epoch_keys(&secrets.1)?;
        self.recv_prev = self.recv_app.take();
        self.recv_app = Some(ReceiveEpoch13::new(epoch, prot));
        if let Some(s) = self.app_secrets.as_mut() {
            s.1 = next;
        }
        Ok(())
    }
}

impl Conn13 {
    /// The epoch our application data is sent in (3, then one more per KeyUpdate).
    pub(crate) fn send_epoch(&self) -> u64 {
        self.send_app.as_ref().map_or(self.current_epoch(), |a| a.epoch())
    }
}

impl Conn13 {
    /// Server: one NewSessionTicket after the handshake (RFC 8446 §4.6.1), stored in the
    /// session store under a random ticket ID (and reported as [`Event::TicketIssued`] when
    /// configured) and retransmitted until acknowledged (RFC 9147 §5.8.4).
    fn issue_ticket(&mut self, now: Instant, suite: CipherSuite, identity: PeerIdentity, res_master: &Secret) {
        let Ok(config) = self.server_config() else { return };
        // RFC 8446 §4.6.1: at most seven days, in whole seconds; zero would be discarded.
        let lifetime = config.effective_ticket_lifetime();
        if !config.issues_sessions() || lifetime.is_zero() {
            return;
        }
        let mut id = vec![0u8; 16];
        let mut add = [0u8; 4];
        self.rng().fill(&mut id);
        self.rng().fill(&mut add);
        let nonce = vec![0u8];
        let psk = tls13::resumption_psk(res_master, &nonce);
        // RFC 8446 §4.2.10 / §4.6.1: the ticket allows 0-RTT only when the server takes it.
        let max_early_data = config.early_data.as_ref().map_or(0, |e| e.max_early_data_size);
        let session = Session {
            id: id.clone(),
            suite,
            extended_master_secret: true,
            peer_identity: identity,
            established_at: now,
            lifetime,
            master_secret: Zeroizing::new([0; 48]),
            ticket13: Some(Ticket13 {
                psk: Zeroizing::new(*psk.as_bytes()),
                age_add: u32::from_be_bytes(add),
                max_early_data,
                client_ip: Some(self.peer.ip()),
            }),
        };
        crate::resumption::store_session(&config, &session, now);
        if config.session_events {
            self.out.events.push_back(Event::TicketIssued(Box::new(session)));
        }
        let nst = NewSessionTicket13 {
            ticket_lifetime: lifetime.as_secs() as u32,
            ticket_age_add: u32::from_be_bytes(add),
            ticket_nonce: nonce,
            ticket: id,
            extensions: if max_early_data > 0 {
                vec![NewSessionTicketExtension13::EarlyData(max_early_data)]
            } else {
                Vec::new()
            },
        };
        let epoch = self.send_app.as_ref().map_or(EPOCH_APPLICATION, |a| a.epoch());
        let message_seq = self.send_seq;
        self.send_seq = self.send_seq.wrapping_add(1);
        self.flight.clear();
        self.flight.push(FlightMsg::new(epoch, HandshakeType::NewSessionTicket, message_seq, nst.to_vec()));
        self.send_new_flight(now, true);
    }

    pub(crate) fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    pub(crate) fn is_resumed(&self) -> bool {
        self.resumed
    }
}

/// What a DTLS 1.2 state machine needs to take over the first ClientHello of a dual-version
/// client (`crate::auto`): the bytes sent, their numbering, and the retransmission state.
pub(crate) struct SentClientHello {
    pub(crate) body: Vec<u8>,
    pub(crate) message_seq: u16,
    pub(crate) next_record_seq: u64,
    pub(crate) timer: RetransmitTimer,
    pub(crate) timer_armed: bool,
    pub(crate) rng: Option<Box<SeededRng>>,
    pub(crate) out: Outputs,
    pub(crate) last_activity: Instant,
}

impl Conn13 {
    /// Hands over the ClientHello of a client still waiting for the first ServerHello (no
    /// HelloRetryRequest seen), for a fallback to DTLS 1.2; `None` in any other state.
    pub(crate) fn take_first_client_hello(&mut self) -> Option<SentClientHello> {
        if self.role != Role::Client
            || self.state != State::Handshaking
            || !matches!(self.hs.as_deref(), Some(Hs::CExpectServerHello { retried: false, .. }))
        {
            return None;
        }
        let ch = self.flight.iter().find(|m| m.msg_type == HandshakeType::ClientHello)?;
        Some(SentClientHello {
            body: ch.body.clone(),
            message_seq: ch.message_seq,
            next_record_seq: self.plain_seq,
            // This state machine is dropped after the hand-over; its timer goes with the hello.
            timer: std::mem::replace(&mut self.timer, RetransmitTimer::new(RetransmitConfig::default())),
            timer_armed: self.timer_armed,
            rng: self.rng.take(),
            out: std::mem::take(&mut self.out),
            last_activity: self.last_activity,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::rustcrypto::RustCrypto;
    use sha2::{Digest, Sha256};

    /// The running transcript hashes exactly the bytes [`transcript_bytes_13`] lays out, at
    /// every point, and its binder hash covers the transcript plus the extra bytes without
    /// absorbing them. (Both sides of a handshake use `Transcript`, so an in-memory handshake
    /// alone would not notice a shared framing mistake.)
    #[test]
    fn running_transcript_matches_flat_bytes() {
        let p = RustCrypto;
        let mut t = Transcript::default();
        let mut flat = Vec::new();
        assert!(t.is_empty());
        assert_eq!(t.hash(&p), <[u8; 32]>::from(Sha256::digest(&flat)));
        let prefix = [0xfeu8, 0, 0, 32].iter().copied().chain([7u8; 32]).collect::<Vec<u8>>();
        t.add_raw(&p, &prefix);
        flat.extend_from_slice(&prefix);
        let bodies: [(HandshakeType, Vec<u8>); 3] = [
            (HandshakeType::ClientHello, vec![1; 300]),
            (HandshakeType::ServerHello, Vec::new()),
            (HandshakeType::Finished, (0..=255u8).cycle().take(70_000).collect()),
        ];
        for (typ, body) in &bodies {
            t.add(&p, *typ, body);
            transcript_bytes_13(*typ, body, &mut flat);
            assert_eq!(t.hash(&p), <[u8; 32]>::from(Sha256::digest(&flat)));
        }
        let more = b"truncated hello";
        let mut with_more = flat.clone();
        with_more.extend_from_slice(more);
        assert_eq!(t.hash_with(&p, more), <[u8; 32]>::from(Sha256::digest(&with_more)));
        assert_eq!(t.hash(&p), <[u8; 32]>::from(Sha256::digest(&flat)), "hash_with must not absorb");
        assert!(!t.is_empty());
        let empty = Transcript::default();
        assert_eq!(empty.hash_with(&p, more), <[u8; 32]>::from(Sha256::digest(more)));
    }
}
