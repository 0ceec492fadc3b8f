//! Client and server configuration. Every limit has a number here, with a sane default.

pub mod early_data;
pub mod quotas;

use crate::cert::{PinnedKeys, WebPkiVerifier};
use crate::crypto::{CryptoProvider, SigningKey};
use crate::handshake::flight::{PolicyContext, RetransmitConfig, RetransmitPolicyFactory, RetransmitTimer};
use crate::resumption::{MemorySessionStore, SessionStore};
use crate::suites::{ALL_SUITES, SupportedSuite};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use zeroize::Zeroizing;

/// RFC 4279 §5.3: identities up to 128 bytes and keys up to 64 bytes MUST be accepted.
pub const MAX_PSK_IDENTITY_LEN: usize = 128;
/// See [`MAX_PSK_IDENTITY_LEN`].
pub const MAX_PSK_LEN: usize = 64;

/// A pre-shared key and its identity. The key never appears in `Debug`.
#[derive(Clone)]
pub struct Psk {
    /// The identity sent in ClientKeyExchange.
    pub identity: Vec<u8>,
    key: Zeroizing<Vec<u8>>,
}

impl Psk {
    /// A PSK; refuses empty or over-long identities and keys (RFC 4279 §5.3 limits).
    pub fn new(identity: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Result<Self, String> {
        let identity = identity.into();
        let key = Zeroizing::new(key.into());
        if identity.is_empty() || identity.len() > MAX_PSK_IDENTITY_LEN {
            return Err(format!("PSK identity must be 1..={MAX_PSK_IDENTITY_LEN} bytes, got {}", identity.len()));
        }
        if key.is_empty() || key.len() > MAX_PSK_LEN {
            return Err(format!("PSK must be 1..={MAX_PSK_LEN} bytes, got {}", key.len()));
        }
        Ok(Self { identity, key })
    }
    /// The key bytes.
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Psk")
            .field("identity", &String::from_utf8_lossy(&self.identity))
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Server-side PSK lookup by identity.
pub trait PskStore: Send + Sync + fmt::Debug {
    /// The key for `identity`, if known.
    fn key_for(&self, identity: &[u8]) -> Option<Zeroizing<Vec<u8>>>;
}

/// A fixed set of PSKs.
#[derive(Debug, Default, Clone)]
pub struct StaticPsks(pub Vec<Psk>);

impl PskStore for StaticPsks {
    fn key_for(&self, identity: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        self.0.iter().find(|p| p.identity == identity).map(|p| Zeroizing::new(p.key().to_vec()))
    }
}

/// A certificate chain (or a raw public key) with its private key.
#[derive(Clone)]
pub struct CertifiedKey {
    /// DER certificates, end-entity first. Empty means raw public key only.
    pub chain: Vec<Vec<u8>>,
    /// The private key.
    pub key: Arc<dyn SigningKey>,
}

impl fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedKey").field("chain_len", &self.chain.len()).finish_non_exhaustive()
    }
}

/// How the peer's certificate or raw public key is checked.
#[derive(Debug, Clone)]
pub enum PeerVerifier {
    /// X.509 path validation to configured roots (and, on a client, the server name).
    WebPki(Arc<WebPkiVerifier>),
    /// RFC 7250 raw public keys, accepted only if pinned.
    Pinned(Arc<PinnedKeys>),
}

/// Settings shared by both roles.
#[derive(Clone)]
pub struct CommonConfig {
    /// The crypto provider; [`crate::crypto::providers::default_provider`] unless set.
    pub provider: Arc<dyn CryptoProvider>,
    /// Cipher suites in preference order.
    pub suites: Vec<SupportedSuite>,
    /// Largest UDP payload to send (PMTU minus IP/UDP headers). Handshake messages are
    /// fragmented to fit (RFC 6347 §4.1.1.1). Default 1152, the CoAP-over-DTLS guidance.
    pub mtu: usize,
    /// Handshake retransmission timer values (RFC 6347 §4.2.4.1): the limits of every
    /// association, and the timeouts of the default policy.
    pub retransmit: RetransmitConfig,
    /// Builds each association's retransmission policy (initial timeout, doubling cap, RTT
    /// samples; see [`RetransmitPolicy`](crate::handshake::flight::RetransmitPolicy)). `None`
    /// (the default): RFC 6347 §4.2.4.1 timing with `retransmit.initial` and `retransmit.max`.
    pub retransmit_policy: Option<Arc<dyn RetransmitPolicyFactory>>,
    /// Require extended_master_secret (RFC 7627); default true.
    pub require_extended_master_secret: bool,
    /// Bytes of handshake data buffered for reassembly per connection.
    pub max_reassembly_bytes: usize,
    /// Epoch-1 records held while their keys are not yet known (reordering).
    pub max_early_records: usize,
    /// DTLS 1.3 reliability (RFC 9147 §7): acknowledge a partial peer flight after a quarter of
    /// the retransmission timeout, and resend only the fragments the peer has not
    /// acknowledged. Default true. `false` resends whole flights on every timeout and sends no
    /// partial ACKs (ACKs of final flights, NewSessionTicket and KeyUpdate stay), which is how
    /// DTLS 1.2 always works; it exists to measure the difference and for peers that mishandle
    /// ACKs.
    pub selective_retransmission: bool,
    /// DTLS 1.3 cipher suites in preference order (RFC 9147). AES-128-CCM-8 comes last: it is
    /// used only with its forgery limit enforced (RFC 9147 §4.5.3).
    pub suites13: Vec<crate::codec::CipherSuite>,
    /// Wall clock for certificate validity. The engine reads no clock itself; this hook is the
    /// one place wall time enters, and tests may fix it.
    pub wall_clock: fn() -> SystemTime,
}

impl fmt::Debug for CommonConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommonConfig")
            .field("suites", &self.suites.iter().map(|s| s.name).collect::<Vec<_>>())
            .field("mtu", &self.mtu)
            .field("retransmit", &self.retransmit)
            .field("retransmit_policy", &self.retransmit_policy)
            .field("require_extended_master_secret", &self.require_extended_master_secret)
            .finish_non_exhaustive()
    }
}

impl CommonConfig {
    /// The retransmission timer of a new association with `peer`, with the policy
    /// `retransmit_policy` builds (or the default one).
    pub(crate) fn retransmit_timer(
        &self,
        peer: std::net::SocketAddr,
        role: crate::types::Role,
        cookie_rtt: Option<Duration>,
    ) -> RetransmitTimer {
        let context = PolicyContext { peer, role, cookie_rtt, retransmit: self.retransmit };
        RetransmitTimer::for_association(self.retransmit_policy.as_deref(), &context)
    }

    /// The longest handshake any association of this configuration may run: the configured
    /// [`RetransmitConfig::handshake_timeout`](crate::RetransmitConfig::handshake_timeout), or
    /// the policy factory's longest budget when that is longer
    /// ([`RetransmitPolicyFactory::longest_handshake_timeout`](crate::RetransmitPolicyFactory::longest_handshake_timeout)).
    pub fn longest_handshake_timeout(&self) -> Duration {
        let policies = self.retransmit_policy.as_ref().and_then(|f| f.longest_handshake_timeout());
        policies.map_or(self.retransmit.handshake_timeout, |p| p.max(self.retransmit.handshake_timeout))
    }
}

impl Default for CommonConfig {
    fn default() -> Self {
        Self {
            provider: crate::crypto::providers::default_provider(),
            suites: ALL_SUITES.to_vec(),
            suites13: vec![
                crate::codec::CipherSuite::TLS_CHACHA20_POLY1305_SHA256,
                crate::codec::CipherSuite::TLS_AES_128_GCM_SHA256,
                crate::codec::CipherSuite::TLS_AES_128_CCM_8_SHA256,
            ],
            mtu: 1152,
            retransmit: RetransmitConfig::default(),
            retransmit_policy: None,
            require_extended_master_secret: true,
            max_reassembly_bytes: crate::handshake::reassembly::DEFAULT_MAX_BUFFERED,
            max_early_records: 16,
            selective_retransmission: true,
            wall_clock: SystemTime::now,
        }
    }
}

/// The DTLS version a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DtlsVersion {
    /// DTLS 1.2 (RFC 6347).
    #[default]
    Dtls12,
    /// DTLS 1.3 (RFC 9147).
    Dtls13,
    /// Both, in one ClientHello that a DTLS 1.3 and a DTLS 1.2 server can each answer:
    /// supported_versions lists DTLS 1.3 then 1.2 (RFC 9147 §5.3, RFC 8446 §4.2.1), the 1.3
    /// suites precede the 1.2 ones, and the 1.2 extensions (extended_master_secret,
    /// renegotiation_info, ec_point_formats) travel next to the 1.3 ones (key_share,
    /// pre_shared_key last). The server's answer decides: a 1.3 ServerHello or
    /// HelloRetryRequest continues in DTLS 1.3; a HelloVerifyRequest or a 1.2 ServerHello
    /// continues in DTLS 1.2 with the same ClientHello. A 1.2 ServerHello carrying the
    /// RFC 8446 §4.1.3 downgrade sentinel is refused with `illegal_parameter`.
    ///
    /// Resumption: a DTLS 1.3 ticket is offered as a 1.3 PSK; a DTLS 1.2 session ID goes in
    /// legacy_session_id (RFC 8446 §4.1.2) and resumes only if the server still picks 1.2.
    Auto,
}

/// Connection IDs (RFC 9146 for DTLS 1.2, RFC 9147 §9 for DTLS 1.3; one configuration for
/// both): the CIDs this side asks its peer to put in the records it sends here, so that
/// records find their association whatever address they come from (a NAT rebinding changes
/// it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionIdConfig {
    /// Length of the CIDs this side issues, `prefix` included, at most 255 (the wire limit,
    /// RFC 9146 §3). 0: this side uses none, but sends the peer's. All CIDs an endpoint issues
    /// have this one length, which is how it finds the CID in a record (RFC 9146 §4).
    pub len: usize,
    /// Leading bytes of every CID issued (a server identifier a load balancer routes on, see
    /// the deployment notes in the crate docs); the rest is random. Cut to `len`.
    pub prefix: Vec<u8>,
    /// DTLS 1.3 (RFC 9147 §9): the most CIDs held per association in each direction, the
    /// handshake's included. This side issues at most this many (answering
    /// `RequestConnectionId` with fewer, down to none, and aborting with
    /// `too_many_cids_requested` a peer that asks again after such an answer), and keeps at
    /// most this many of the peer's, ignoring the rest of a `NewConnectionId` (the RFC allows
    /// either; ignoring keeps a chatty but honest peer connected and costs nothing). Default 4.
    pub max_cids: usize,
    /// Return routability checks (RFC 9853): offered by a client and accepted by a server
    /// along with the CID; default on. `None`: not offered, and a server keeps bounding what
    /// it sends to a new address until a second authenticated record arrives from there.
    pub return_routability_check: Option<RrcConfig>,
}

/// Return routability checks (RFC 9853 §5): a server whose association moves to a new
/// address sends a `path_challenge` there and lifts the amplification bound only on the
/// matching `path_response`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RrcConfig {
    /// The timer T after which an unanswered check gives up and the association goes back to
    /// its last checked address (RFC 9853 §5.5: 1 s when the path's RTT is unknown). The
    /// challenge is sent up to [`RrcConfig::challenges`] times within it, evenly paced.
    pub timeout: Duration,
    /// `path_challenge` messages per check, at least 1 (RFC 9853 §5.3 allows several, paced,
    /// against loss; each counts against the amplification bound).
    pub challenges: u8,
    /// RFC 9853 §5.2's enhanced check, against an off-path attacker who races the peer's
    /// records from another address: the old address is challenged first; a `path_response`
    /// keeps the association there, a `path_drop` or no answer within T leads to the basic
    /// check of the new address. Default false (the basic check of §5.1: a rebound peer is
    /// checked in one round trip instead of after T).
    pub enhanced: bool,
}

impl Default for RrcConfig {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(1), challenges: 3, enhanced: false }
    }
}

impl ConnectionIdConfig {
    /// CIDs of `len` random bytes, no prefix.
    pub fn new(len: usize) -> Self {
        Self {
            len: len.min(255),
            prefix: Vec::new(),
            max_cids: 4,
            return_routability_check: Some(RrcConfig::default()),
        }
    }

    /// At most `max` CIDs per association and direction (see [`ConnectionIdConfig::max_cids`];
    /// at least 1, the handshake's).
    pub fn with_max_cids(mut self, max: usize) -> Self {
        self.max_cids = max.max(1);
        self
    }

    /// CIDs that start with `prefix` (see [`ConnectionIdConfig::prefix`]).
    pub fn with_prefix(mut self, prefix: impl Into<Vec<u8>>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// With return routability checks configured as `rrc` (`None`: not used).
    pub fn with_rrc(mut self, rrc: Option<RrcConfig>) -> Self {
        self.return_routability_check = rrc;
        self
    }

    /// A fresh CID: the prefix, then random bytes, `len` in all (at most 255).
    pub fn generate(&self, rng: &mut dyn crate::crypto::Rng) -> Vec<u8> {
        let len = self.len.min(255);
        let mut cid = vec![0u8; len];
        let fixed = self.prefix.len().min(len);
        cid[..fixed].copy_from_slice(&self.prefix[..fixed]);
        rng.fill(&mut cid[fixed..]);
        cid
    }
}

impl Default for ConnectionIdConfig {
    /// 8 random bytes: 2^64 values, so collisions among even millions of associations are
    /// rare (an endpoint still refuses a duplicate).
    fn default() -> Self {
        Self::new(8)
    }
}

/// Client configuration.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Shared settings.
    pub common: CommonConfig,
    /// The version to offer; [`DtlsVersion::Auto`] offers both and lets the server choose.
    pub version: DtlsVersion,
    /// PSK to offer PSK suites with.
    pub psk: Option<Psk>,
    /// How to check the server's certificate; without one, certificate suites are not offered.
    pub verifier: Option<PeerVerifier>,
    /// Certificate to present when the server asks for one.
    pub client_cert: Option<CertifiedKey>,
    /// DTLS 1.3: the key exchange when resuming a ticket (RFC 8446 §4.2.9); default
    /// psk_dhe_ke (a fresh key share beside the ticket).
    pub resumption_key_exchange: crate::config::early_data::ResumptionKeyExchange,
    /// DTLS 1.2: offer the SessionTicket extension (RFC 5077 §3.2), keep the ticket the
    /// server sends in the [`Session`](crate::Session), and offer it to resume; default true
    /// (as OpenSSL, GnuTLS and mbedTLS clients do). Session-ID resumption works either way.
    pub session_tickets: bool,
    /// Offer the connection_id extension (RFC 9146 §3) with a CID made from this; default
    /// `None` (not offered). `len` 0 offers an empty CID: the client sends the server's CID
    /// but wants none in the records it receives.
    pub connection_id: Option<ConnectionIdConfig>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            common: CommonConfig::default(),
            version: DtlsVersion::default(),
            psk: None,
            verifier: None,
            client_cert: None,
            resumption_key_exchange: Default::default(),
            session_tickets: true,
            connection_id: None,
        }
    }
}

/// Client certificate policy on the server.
#[derive(Debug, Clone, Default)]
pub enum ClientAuth {
    /// Do not ask for a certificate.
    #[default]
    None,
    /// Ask; accept a client that sends none.
    Optional(PeerVerifier),
    /// Ask; refuse a client that sends none.
    Required(PeerVerifier),
}

/// Server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Shared settings.
    pub common: CommonConfig,
    /// Accept DTLS 1.3 from clients that offer it; default true.
    pub dtls13: bool,
    /// Accept DTLS 1.2; default true. With only `dtls13`, a 1.2-only client is refused.
    pub dtls12: bool,
    /// PSK lookup; without one, PSK suites are not accepted.
    pub psks: Option<Arc<dyn PskStore>>,
    /// psk_identity_hint to send (RFC 4279 §5.2 says not to without a profile); default none.
    pub psk_hint: Option<Vec<u8>>,
    /// Certificate and key; without one, ECDSA suites are not accepted.
    pub cert: Option<CertifiedKey>,
    /// Offer raw public keys (RFC 7250) to clients that ask for them.
    pub raw_public_key: bool,
    /// Client certificate policy.
    pub client_auth: ClientAuth,
    /// The in-process store of issued DTLS 1.2 sessions and DTLS 1.3 tickets, which the
    /// engine reads and writes synchronously (default: a [`MemorySessionStore`] of 10 000
    /// sessions). `None` keeps nothing in process: resumption then works only with sessions
    /// handed in by a layer ([`DatagramMeta::sessions`](crate::DatagramMeta::sessions)), and
    /// sessions are issued only with [`ServerConfig::session_events`].
    pub session_store: Option<Arc<dyn SessionStore>>,
    /// Report every session the server issues as [`Event::SessionIssued`](crate::Event::SessionIssued)
    /// (DTLS 1.2, after a full handshake) or [`Event::TicketIssued`](crate::Event::TicketIssued)
    /// (DTLS 1.3), for an external store; default false. With `session_store: None` this is
    /// the **external-store mode**: the server still issues session IDs and tickets but keeps
    /// nothing; a layer stores the events' sessions ([`Session::encode`](crate::Session::encode))
    /// and hands them back in with later ClientHellos (see [`crate::SessionStore`] and [`crate::offered_sessions`]).
    pub session_events: bool,
    /// How long a DTLS 1.2 session can be resumed; default 24 hours (RFC 5246 App. F.1.4
    /// suggests no more).
    pub session_lifetime: Duration,
    /// The ticket_lifetime of the DTLS 1.3 tickets the server issues (RFC 8446 §4.6.1), also
    /// how long the server accepts them; default 7200 s. RFC 8446 §4.6.1 allows at most
    /// 604800 s (seven days): longer values are clamped to that. Zero issues no tickets. A
    /// store may keep a ticket for less (the default [`MemorySessionStore`] keeps sessions at
    /// most 24 hours); the server then forgets it sooner than the client does and answers with
    /// a full handshake.
    pub ticket_lifetime: Duration,
    /// What the tickets the server issues hold: a key into the session store
    /// ([`TicketMode::Stateful`](crate::TicketMode::Stateful), the default) or the session itself, sealed under rotating
    /// ticket keys ([`TicketMode::Stateless`](crate::TicketMode::Stateless)), which the server opens with no store look-up
    /// and never stores. Session IDs (DTLS 1.2) are stateful either way.
    pub tickets: crate::tickets::TicketMode,
    /// Stateless cookie exchange (RFC 6347 §4.2.1); `None` switches it off.
    pub cookie: Option<CookieConfig>,
    /// Most associations (established or not) at once.
    pub max_connections: usize,
    /// Most handshakes in progress at once. When it is reached, the oldest half-open
    /// handshake is evicted for a new proven ClientHello, so a burst of abandoned handshakes
    /// cannot refuse new clients (per-source limits in [`ServerConfig::quotas`] keep one host
    /// from causing the pressure).
    pub max_handshakes: usize,
    /// Per-source and per-identity limits and the half-open lifetime (see [`QuotaConfig`](quotas::QuotaConfig)).
    pub quotas: quotas::QuotaConfig,
    /// DTLS 1.3 0-RTT early data (RFC 8446 §4.2.10, RFC 9147 §5.6); `None` (the default)
    /// issues tickets without early data and rejects any offered.
    pub early_data: Option<crate::config::early_data::EarlyDataConfig>,
    /// Skip the DTLS 1.3 HelloRetryRequest cookie for any resumption of one of our tickets
    /// (with or without early data) from the IP address the ticket was issued to, whose first
    /// binder verifies and whose ticket age is fresh (RFC 9147 §5.1: "the server MAY choose not
    /// to do a cookie exchange when a session is resumed ... and the IP address matches one
    /// associated with the PSK"; freshness as RFC 8446 §8.3, within
    /// [`EarlyDataConfig::freshness_window`](crate::EarlyDataConfig::freshness_window) or
    /// [`DEFAULT_RESUMPTION_FRESHNESS`](crate::DEFAULT_RESUMPTION_FRESHNESS) without early data). Saves the
    /// cookie round trip of a 1-RTT resumption; the answer carries no certificate, so it stays
    /// within the three-times amplification limit. Default false (0-RTT resumptions are
    /// exempt already by [`EarlyDataConfig::skip_cookie_on_resumption`](crate::EarlyDataConfig::skip_cookie_on_resumption)).
    pub skip_cookie_on_resumption: bool,
    /// Limits of the reassembly area for fragmented ClientHellos, in front of the cookie gate
    /// (a client with a small MTU fragments its ClientHello, RFC 9147 §5.1).
    pub hello_reassembly: crate::handshake::reassembly::HelloReassemblyConfig,
    /// Accept the connection_id extension (RFC 9146 §3) of clients that offer it, answering
    /// with a CID made from this; default 8-byte CIDs. `None` ignores the extension (no CIDs).
    /// A client that does not offer it never gets one.
    pub connection_id: Option<ConnectionIdConfig>,
}

impl ServerConfig {
    /// The lifetime of issued DTLS 1.3 tickets: [`ServerConfig::ticket_lifetime`] clamped to
    /// RFC 8446 §4.6.1's seven days, in whole seconds (the unit of ticket_lifetime).
    pub fn effective_ticket_lifetime(&self) -> Duration {
        Duration::from_secs(self.ticket_lifetime.min(crate::resumption::MAX_TICKET_LIFETIME).as_secs())
    }

    /// Whether the server issues session IDs and tickets: it keeps them in its store or
    /// reports them as events.
    pub(crate) fn issues_sessions(&self) -> bool {
        self.session_store.is_some() || self.session_events
    }

    /// Whether the server issues tickets: stateless ones need no store.
    pub(crate) fn issues_tickets(&self) -> bool {
        self.issues_sessions() || self.tickets.keys().is_some()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            common: CommonConfig::default(),
            dtls13: true,
            dtls12: true,
            psks: None,
            psk_hint: None,
            cert: None,
            raw_public_key: false,
            client_auth: ClientAuth::None,
            session_store: Some(Arc::new(MemorySessionStore::new(10_000, Duration::from_secs(24 * 3600)))),
            session_events: false,
            session_lifetime: crate::resumption::DEFAULT_SESSION_LIFETIME,
            ticket_lifetime: crate::resumption::DEFAULT_TICKET_LIFETIME,
            tickets: crate::tickets::TicketMode::Stateful,
            cookie: Some(CookieConfig::default()),
            max_connections: 100_000,
            max_handshakes: 1_000,
            quotas: quotas::QuotaConfig::default(),
            early_data: None,
            skip_cookie_on_resumption: false,
            hello_reassembly: Default::default(),
            connection_id: Some(ConnectionIdConfig::default()),
        }
    }
}

/// Timing of the stateless cookie secrets (RFC 6347 §4.2.1, RFC 9147 §5.1), for
/// [`ServerConfig::cookie`] and the cookie gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieConfig {
    /// How often the secret changes (RFC 6347 §4.2.1: "change the secret frequently").
    /// Cookies made with the previous secret stay valid for one more period.
    pub rotate_every: Duration,
    /// Cookies older than this are refused, whatever secret made them.
    pub lifetime: Duration,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self { rotate_every: Duration::from_secs(60), lifetime: Duration::from_secs(60) }
    }
}
