//! THE stateless cookie gate (RFC 6347 §4.2.1, RFC 9147 §5.1): one implementation, used by the
//! [`Endpoint`](crate::Endpoint) for its own cookie exchange and by a gate in front of it (the
//! Tower `CookieLayer`).
//!
//! A ClientHello from a peer that has not proven it owns its address gets an answer computed
//! from the datagram alone, and the server keeps nothing (DESIGN "no state before proof"):
//!
//! * DTLS 1.2: a HelloVerifyRequest whose cookie is an HMAC over the client's address and the
//!   ClientHello parameters ([`cookie::CookieKeys::generate`]), never larger than the
//!   ClientHello;
//! * DTLS 1.3 (supported_versions offers it, RFC 9147 §5.3): a HelloRetryRequest whose cookie
//!   carries the encrypted hash of the ClientHello and the HelloRetryRequest's choices
//!   ([`cookie::CookieKeys::generate13`]), never more than three times the bytes received;
//! * a DTLS 1.3 resumption from the address its ticket was issued to passes without a
//!   cookie when the server allows it (RFC 9147 §5.1): a 0-RTT one with
//!   [`EarlyDataConfig::skip_cookie_on_resumption`](crate::EarlyDataConfig::skip_cookie_on_resumption), any one with
//!   [`ServerConfig::skip_cookie_on_resumption`]. The ticket may be in the in-process
//!   store, handed in by a layer ([`Gate::check_hello_with`]), or sealed
//!   ([`TicketMode::Stateless`](crate::TicketMode::Stateless): the gate opens it).
//!
//! A ClientHello whose cookie verifies comes out as a [`Proof`]. The datagram is split once
//! ([`FirstRecord::parse`]) and the ClientHello read once into one borrowed view that feeds
//! both version checks; the answer is written into the caller's buffer. Nothing on that path
//! allocates (measured by `benches/cookie_flood.rs` and asserted by the
//! `gate_answers_without_allocating` test). Fragmented ClientHellos (a small-MTU client,
//! RFC 9147 §5.1) wait in a bounded area ([`Gate::reassemble`]) until whole.
//!
//! # Example
//!
//! ```
//! use coaps_dtls::crypto::SeededRng;
//! use coaps_dtls::gate::{Gate, MAX_ANSWER_LEN, Proof, Verdict};
//! use coaps_dtls::{ClientConfig, DtlsVersion, Endpoint, Psk, ServerConfig, StaticPsks};
//! use std::sync::Arc;
//! use std::time::Instant;
//!
//! let psk = Psk::new("device-1", b"0123456789abcdef".to_vec()).unwrap();
//! let server = Arc::new(ServerConfig { psks: Some(Arc::new(StaticPsks(vec![psk.clone()]))), ..ServerConfig::default() });
//! let mut rng = SeededRng::from_seed_u64(1);
//! let now = Instant::now();
//! let gate = Gate::in_front(&server, now, &mut rng);
//!
//! // A DTLS 1.3 client's first ClientHello draws a stateless HelloRetryRequest.
//! let server_addr = "192.0.2.1:5684".parse().unwrap();
//! let peer = "192.0.2.2:40000".parse().unwrap();
//! let mut client = Endpoint::client(SeededRng::from_seed_u64(2));
//! let config = Arc::new(ClientConfig { psk: Some(psk), version: DtlsVersion::Dtls13, ..ClientConfig::default() });
//! client.connect(now, server_addr, config, "localhost", None).unwrap();
//! let ch1 = client.poll_transmit().unwrap().payload;
//! let mut out = [0u8; MAX_ANSWER_LEN];
//! let Verdict::HelloRetryRequest { len, .. } = gate.check(now, peer, &ch1, &mut out, &mut rng) else { panic!() };
//!
//! // Its second ClientHello carries the cookie: proven, with the state to rebuild the transcript.
//! client.handle_datagram(now, server_addr, &out[..len]);
//! let ch2 = client.poll_transmit().unwrap().payload;
//! let verdict = gate.check(now, peer, &ch2, &mut out, &mut rng);
//! assert!(matches!(verdict, Verdict::Proven(Proof::Cookie13 { .. })));
//! assert_eq!(gate.stats().hello_retry_requests, 1);
//! ```

pub mod cookie;
mod hello;

pub use hello::{ClientHello13View, ClientHelloRecord, FirstRecord};

use self::cookie::{
    ClientHelloView, CookieConfig, CookieInfo, CookieKeys, HrrState, SharedCookieKeys, write_hello_verify_request,
};
use crate::codec::{AlertDescription, CipherSuite, Codec, ContentType, HandshakeType, ProtocolVersion, Reader};
use crate::config::ServerConfig;
use crate::crypto::{CryptoProvider, Rng};
use crate::dtls13::msgs::{ClientHello13, HELLO_RETRY_REQUEST_RANDOM};
use crate::handshake::reassembly::HelloReassembly;
use crate::msgs::HandshakeHeader;
use crate::record::RecordHeader;
use crate::resumption::FetchedSession;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A buffer of this many bytes holds any answer the gate writes (a HelloVerifyRequest with
/// this engine's cookie is 49 bytes, a HelloRetryRequest at most 141).
pub const MAX_ANSWER_LEN: usize = 256;

/// The secrets' timing for DTLS 1.3 HelloRetryRequest cookies of a server with `config`.
///
/// A DTLS 1.3 client accepts only one HelloRetryRequest (RFC 8446 §4.1.4), so its cookie must
/// stay valid for the client's whole retransmission budget: the configured timing
/// ([`ServerConfig::cookie`], or the default) stretched to at least the longest budget of
/// this server's associations ([`CommonConfig::longest_handshake_timeout`]: a link profile's
/// policy may allow more than the configured budget), so the cookie stays under the current
/// or previous secret for at least as long.
///
/// [`CommonConfig::longest_handshake_timeout`]: crate::CommonConfig::longest_handshake_timeout
pub fn cookie13_config(config: &ServerConfig) -> CookieConfig {
    let budget = config.common.longest_handshake_timeout();
    let c13 = config.cookie.unwrap_or_default();
    CookieConfig { rotate_every: c13.rotate_every.max(budget), lifetime: c13.lifetime.max(budget) }
}

/// Which gate made a [`Proof`]: what lets a handshake layer behind a gate check that the proof
/// on a datagram comes from the gate whose secrets it shares, and fail loudly otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GateId(u64);

impl GateId {
    fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// How a ClientHello showed that it may get an association.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// A DTLS 1.2 cookie verified (RFC 6347 §4.2.1).
    Cookie12(CookieInfo),
    /// A DTLS 1.3 HelloRetryRequest cookie verified (RFC 9147 §5.1); `state` rebuilds the
    /// transcript `message_hash(ClientHello1) || HelloRetryRequest` (RFC 8446 §4.4.1).
    Cookie13 {
        /// What the HelloRetryRequest carried.
        state: HrrState,
        /// The cookie's age.
        info: CookieInfo,
    },
    /// The cookie exchange is off ([`ServerConfig::cookie`] `None`; a DTLS 1.3 ClientHello
    /// then still needs a cookie when the HelloRetryRequest must ask for a key share).
    NotRequired {
        /// The ClientHello is a DTLS 1.3 one.
        dtls13: bool,
    },
    /// No cookie, and none needed: a resumption (0-RTT, or any with
    /// [`ServerConfig::skip_cookie_on_resumption`]) with a fresh ticket issued to this address
    /// (RFC 9147 §5.1), or a copy of one this gate just passed.
    ZeroRttResumption,
}

impl Proof {
    /// The time from issuing the cookie to receiving it back: an upper bound on one round
    /// trip, usable as an RTT sample. `None` when no cookie was exchanged.
    pub fn rtt_sample(&self) -> Option<Duration> {
        match self {
            Self::Cookie12(info) | Self::Cookie13 { info, .. } => Some(info.age),
            Self::NotRequired { .. } | Self::ZeroRttResumption => None,
        }
    }

    /// Whether the proven ClientHello negotiates DTLS 1.3.
    pub fn is_dtls13(&self) -> bool {
        match self {
            Self::Cookie12(_) => false,
            Self::NotRequired { dtls13 } => *dtls13,
            Self::Cookie13 { .. } | Self::ZeroRttResumption => true,
        }
    }
}

/// What the gate decided about one datagram from a peer without an association.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not a ClientHello: not the gate's business (records of associations, alerts, noise).
    NotClientHello,
    /// A fragment of a ClientHello: for [`Gate::reassemble`].
    Fragment,
    /// Answer with the HelloVerifyRequest of `len` bytes written to the output buffer, and
    /// nothing else.
    HelloVerifyRequest {
        /// Its length.
        len: usize,
        /// The ClientHello carried a cookie that did not verify (stale, forged, other address).
        rejected: bool,
    },
    /// Answer with the stateless HelloRetryRequest datagram of `len` bytes written to the
    /// output buffer, and nothing else.
    HelloRetryRequest {
        /// Its length.
        len: usize,
        /// The ClientHello carried a cookie that did not verify (stale, forged, other address).
        rejected: bool,
    },
    /// The peer has proven its address (or needs not): it may get an association.
    Proven(Proof),
    /// Answer with the fatal alert datagram of `len` bytes written to the output buffer, and
    /// nothing else: a ClientHello that offers no version this server speaks gets a
    /// protocol_version alert (RFC 8446 §4.2.1 and Appendix D.2, through RFC 9147 §5.3), so
    /// the client stops at once instead of retransmitting into silence; a DTLS 1.3 ClientHello
    /// to a 1.3-only server sharing no cipher suite with it gets handshake_failure (RFC 8446
    /// §4.1.1 and §6.2). The alert is 15 bytes, smaller than any ClientHello, and the gate
    /// keeps no state for it.
    Alert {
        /// Its length.
        len: usize,
        /// What it says.
        description: AlertDescription,
    },
    /// Drop it: unparsable, a version the server does not accept, an output buffer too small,
    /// or an answer that would break the amplification limit.
    Drop,
}

/// Counters of a [`Gate`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateStats {
    /// HelloVerifyRequests written (DTLS 1.2 ClientHellos without a valid cookie).
    pub hello_verify_requests: u64,
    /// Stateless HelloRetryRequests written (DTLS 1.3 ClientHellos without a valid cookie).
    pub hello_retry_requests: u64,
    /// ClientHellos whose cookie verified.
    pub cookies_verified: u64,
    /// DTLS 1.3 0-RTT resumptions passed without a cookie (RFC 9147 §5.1), each counted once.
    pub cookie_exempt: u64,
    /// Copies of an exempt 0-RTT ClientHello (same address, same random) passed on again to
    /// the association it created (network duplicates or replays): not new exemptions.
    pub cookie_exempt_repeats: u64,
    /// ClientHellos whose cookie did not verify (each also got a fresh answer).
    pub cookies_rejected: u64,
    /// ClientHellos dropped (see [`Verdict::Drop`]).
    pub dropped: u64,
    /// protocol_version alerts written (see [`Verdict::Alert`]).
    pub protocol_version_alerts: u64,
    /// handshake_failure alerts written: DTLS 1.3 ClientHellos to a 1.3-only server that share
    /// no cipher suite with it (see [`Verdict::Alert`]).
    pub handshake_failure_alerts: u64,
    /// ClientHello fragments taken into the reassembly area.
    pub hello_fragments: u64,
    /// ClientHello fragments refused by that area (inconsistent, or beyond its limits).
    pub hello_fragments_refused: u64,
    /// Fragmented ClientHellos made whole.
    pub hellos_reassembled: u64,
    /// Partial ClientHellos dropped to stay within the limits, or expired.
    pub hellos_evicted: u64,
}

#[derive(Default)]
struct Counters {
    hello_verify_requests: AtomicU64,
    hello_retry_requests: AtomicU64,
    cookies_verified: AtomicU64,
    cookie_exempt: AtomicU64,
    cookie_exempt_repeats: AtomicU64,
    cookies_rejected: AtomicU64,
    dropped: AtomicU64,
    protocol_version_alerts: AtomicU64,
    handshake_failure_alerts: AtomicU64,
    hello_fragments: AtomicU64,
    hello_fragments_refused: AtomicU64,
    hellos_reassembled: AtomicU64,
    hellos_evicted: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What [`Gate::reassemble`] did with one datagram.
#[derive(Debug, Default)]
pub struct HelloFragments {
    /// The ClientHello this datagram completed, as the one-record, one-fragment datagram it
    /// would have been unfragmented (RFC 6347 §4.2.3: the same message), for [`Gate::check`].
    pub hello: Option<Vec<u8>>,
    /// ClientHello fragments taken into the area.
    pub fragments_taken: u64,
    /// Fragments refused (inconsistent, or beyond the area's limits); nothing was stored.
    pub fragments_refused: u64,
    /// Partial hellos evicted meanwhile (to make room, or expired).
    pub evicted: u64,
}

/// A 0-RTT ClientHello a gate in front passed: when, from whom, its random.
type RecentZeroRtt = (Instant, SocketAddr, [u8; 32]);

/// Most 0-RTT ClientHellos a gate in front remembers (see [`Gate::in_front`]).
const MAX_RECENT_ZERO_RTT: usize = 1024;

/// The stateless cookie gate of one server; see the [module docs](self).
///
/// Every method takes `&self` (secrets, the reassembly area and counters sit behind locks and
/// atomics), so one gate serves many tasks. Randomness for secret rotation is injected into
/// each call, as everywhere in this engine.
pub struct Gate {
    id: GateId,
    config: Arc<ServerConfig>,
    /// DTLS 1.2 cookie secrets; `None`: the 1.2 cookie exchange is off.
    keys12: Option<Mutex<CookieKeys>>,
    /// DTLS 1.3 cookie secrets: kept even with the 1.2 exchange off, because a HelloRetryRequest
    /// that asks for a key share must stay stateless too. Shareable with an endpoint behind.
    keys13: SharedCookieKeys,
    /// A DTLS 1.3 ClientHello needs a valid cookie even with `ServerConfig::cookie` `None`.
    require_cookie13: bool,
    /// Fragmented ClientHellos being reassembled (RFC 9147 §5.1), bounded by
    /// [`ServerConfig::hello_reassembly`].
    hellos: Option<Mutex<HelloReassembly>>,
    /// A gate in front of an endpoint: recently passed 0-RTT ClientHellos (time, peer, random),
    /// oldest first, so a copy of one goes to the association it created instead of drawing a
    /// HelloRetryRequest the waiting client would take and restart on.
    recent_zero_rtt: Option<Mutex<VecDeque<RecentZeroRtt>>>,
    counters: Counters,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").field("id", &self.id).field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl Gate {
    /// The gate of a server endpoint with `config`: the DTLS 1.2 cookie exchange on when
    /// [`ServerConfig::cookie`] is set, DTLS 1.3 HelloRetryRequest cookies with
    /// [`cookie13_config`] timing, a reassembly area bounded by
    /// [`ServerConfig::hello_reassembly`]. Secrets are drawn from `rng` (1.2 first, then 1.3).
    pub fn new(config: Arc<ServerConfig>, now: Instant, rng: &mut dyn Rng) -> Self {
        let keys12 = config.cookie.map(|c| Mutex::new(CookieKeys::new(c, now, rng)));
        let keys13 = SharedCookieKeys::new(CookieKeys::new(cookie13_config(&config), now, rng));
        let hellos = Some(Mutex::new(HelloReassembly::new(config.hello_reassembly)));
        Self {
            id: GateId::fresh(),
            config,
            keys12,
            keys13,
            require_cookie13: false,
            hellos,
            recent_zero_rtt: None,
            counters: Counters::default(),
        }
    }

    /// The gate in front of an endpoint (the Tower `CookieLayer`): the cookie exchange always
    /// on, with [`ServerConfig::cookie`] timing or the default, and a short memory of the 0-RTT
    /// ClientHellos it passed (bounded; only hellos whose binder verified get there).
    pub fn in_front(config: &ServerConfig, now: Instant, rng: &mut dyn Rng) -> Self {
        let mut config = config.clone();
        config.cookie = Some(config.cookie.unwrap_or_default());
        let mut gate = Self::new(Arc::new(config), now, rng);
        gate.require_cookie13 = true;
        gate.recent_zero_rtt = Some(Mutex::new(VecDeque::new()));
        gate
    }

    /// A DTLS 1.2-only gate in front of an endpoint, knowing only cookie `timing` and a crypto
    /// provider: every ClientHello, DTLS 1.3 ones included, gets a HelloVerifyRequest, and
    /// fragments pass unreassembled.
    pub fn dtls12_in_front(
        timing: CookieConfig,
        provider: Arc<dyn CryptoProvider>,
        now: Instant,
        rng: &mut dyn Rng,
    ) -> Self {
        let mut config = ServerConfig { cookie: Some(timing), dtls13: false, ..ServerConfig::default() };
        config.common.provider = provider;
        let mut gate = Self::in_front(&config, now, rng);
        gate.hellos = None;
        gate
    }

    /// Shares `keys13` (those of a gate in front) and requires a valid DTLS 1.3 cookie
    /// whatever [`ServerConfig::cookie`] says: the gate of an endpoint behind another gate.
    pub(crate) fn behind(&mut self, keys13: SharedCookieKeys) {
        self.keys13 = keys13;
        self.require_cookie13 = true;
    }

    /// This gate's identity (see [`GateId`]).
    pub fn id(&self) -> GateId {
        self.id
    }

    /// The server configuration the gate decides for.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// The DTLS 1.3 cookie secrets, to share with an endpoint behind this gate
    /// ([`Endpoint::server_behind_gate`](crate::Endpoint::server_behind_gate)).
    pub fn keys13(&self) -> &SharedCookieKeys {
        &self.keys13
    }

    /// The counters so far.
    pub fn stats(&self) -> GateStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GateStats {
            hello_verify_requests: l(&c.hello_verify_requests),
            hello_retry_requests: l(&c.hello_retry_requests),
            cookies_verified: l(&c.cookies_verified),
            cookie_exempt: l(&c.cookie_exempt),
            cookie_exempt_repeats: l(&c.cookie_exempt_repeats),
            cookies_rejected: l(&c.cookies_rejected),
            dropped: l(&c.dropped),
            protocol_version_alerts: l(&c.protocol_version_alerts),
            handshake_failure_alerts: l(&c.handshake_failure_alerts),
            hello_fragments: l(&c.hello_fragments),
            hello_fragments_refused: l(&c.hello_fragments_refused),
            hellos_reassembled: l(&c.hellos_reassembled),
            hellos_evicted: l(&c.hellos_evicted),
        }
    }

    /// Decides on one datagram from `peer` (a peer without an association, or one starting
    /// over) and writes any answer into `out` (at least [`MAX_ANSWER_LEN`] bytes). Allocates
    /// nothing.
    pub fn check(&self, now: Instant, peer: SocketAddr, datagram: &[u8], out: &mut [u8], rng: &mut dyn Rng) -> Verdict {
        match FirstRecord::parse(datagram) {
            FirstRecord::ClientHello(hello) => self.check_hello(now, peer, &hello, out, rng),
            FirstRecord::ClientHelloFragment => Verdict::Fragment,
            FirstRecord::Other => Verdict::NotClientHello,
        }
    }

    /// [`Gate::check`] on a ClientHello already split off its datagram.
    pub fn check_hello(
        &self,
        now: Instant,
        peer: SocketAddr,
        hello: &ClientHelloRecord<'_>,
        out: &mut [u8],
        rng: &mut dyn Rng,
    ) -> Verdict {
        self.check_hello_with(now, peer, hello, &[], out, rng)
    }

    /// [`Gate::check_hello`] with the sessions a resumption layer fetched for what the
    /// ClientHello offers ([`crate::offered_sessions`]): a 0-RTT resumption of a handed-in
    /// ticket is exempt from the cookie exchange as one from the in-process store is
    /// (RFC 9147 §5.1), and psk_ke with a handed-in ticket needs no key share.
    pub fn check_hello_with(
        &self,
        now: Instant,
        peer: SocketAddr,
        hello: &ClientHelloRecord<'_>,
        fetched: &[FetchedSession],
        out: &mut [u8],
        rng: &mut dyn Rng,
    ) -> Verdict {
        let Ok(view) = ClientHelloView::parse(hello.body) else { return self.drop() };
        let config = &*self.config;
        if config.dtls13 {
            if self.recent_zero_rtt(now, peer, view.params.random) {
                bump(&self.counters.cookie_exempt_repeats);
                return Verdict::Proven(Proof::ZeroRttResumption);
            }
            // DTLS 1.3 for clients that offer it with a suite this server accepts (RFC 9147
            // §5.3), DTLS 1.2 otherwise.
            if let Some(v13) = ClientHello13View::parse(&view)
                && let Some(suite) = v13.choose_suite(&config.common.suites13)
            {
                return self.check13(now, peer, hello, &v13, suite, fetched, out, rng);
            }
        }
        if !config.dtls12 {
            // A DTLS 1.3-only server. A ClientHello that does not offer DTLS 1.3 at all gets a
            // protocol_version alert (RFC 8446 Appendix D.2); one that offers it with no suite
            // in common gets handshake_failure (RFC 8446 §4.1.1: "If the server is unable to
            // negotiate a supported set of parameters ... it MUST abort the handshake with
            // either a handshake_failure or insufficient_security fatal alert"), stateless too.
            let (description, counter) = if ClientHello13View::parse(&view).is_some() {
                (AlertDescription::HandshakeFailure, &self.counters.handshake_failure_alerts)
            } else {
                (AlertDescription::ProtocolVersion, &self.counters.protocol_version_alerts)
            };
            return match write_alert(hello.record.sequence_number, description, out) {
                Some(len) if len < hello.datagram.len() => {
                    bump(counter);
                    Verdict::Alert { len, description }
                }
                _ => self.drop(),
            };
        }
        self.check12(now, peer, hello, &view, out, rng)
    }

    /// Whether the cookie-less DTLS 1.3 ClientHello opening `datagram` is one this gate would
    /// pass without a cookie exchange if its first PSK were a session it can see (RFC 9147
    /// §5.1): it offers a PSK, and the server skips the cookie for such a resumption. A layer
    /// keeping sessions in a store of its own fetches the first PSK for such a hello and asks
    /// again with [`Gate::check_hello_with`] (before taking anything: a HelloRetryRequest
    /// must not spend a ticket). Parses the hello's view only; allocates nothing.
    pub fn may_skip_cookie(&self, datagram: &[u8]) -> bool {
        let FirstRecord::ClientHello(hello) = FirstRecord::parse(datagram) else { return false };
        let Ok(view) = ClientHelloView::parse(hello.body) else { return false };
        self.config.dtls13
            && ClientHello13View::parse(&view).is_some_and(|v13| {
                v13.choose_suite(&self.config.common.suites13).is_some() && may_skip_cookie(&self.config, &v13)
            })
    }

    fn drop(&self) -> Verdict {
        bump(&self.counters.dropped);
        Verdict::Drop
    }

    /// RFC 6347 §4.2.1.
    fn check12(
        &self,
        now: Instant,
        peer: SocketAddr,
        hello: &ClientHelloRecord<'_>,
        view: &ClientHelloView<'_>,
        out: &mut [u8],
        rng: &mut dyn Rng,
    ) -> Verdict {
        let Some(keys) = &self.keys12 else { return Verdict::Proven(Proof::NotRequired { dtls13: false }) };
        let provider = &*self.config.common.provider;
        // A poisoned lock only means another thread panicked mid-HMAC: the secrets are intact.
        let mut keys = keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.rotate_if_due(now, rng);
        let mut rejected = false;
        if !view.cookie.is_empty() {
            if let Ok(info) = keys.verify(provider, now, peer, &view.params, view.cookie) {
                bump(&self.counters.cookies_verified);
                return Verdict::Proven(Proof::Cookie12(info));
            }
            bump(&self.counters.cookies_rejected);
            rejected = true;
        }
        let cookie = keys.generate(provider, now, peer, &view.params);
        drop(keys);
        match write_hello_verify_request(hello.record.sequence_number, cookie.as_bytes(), out) {
            // Never answer with more than was received: no amplification (RFC 6347 §4.2.1).
            Some(n) if n <= hello.datagram.len() => {
                bump(&self.counters.hello_verify_requests);
                Verdict::HelloVerifyRequest { len: n, rejected }
            }
            _ => self.drop(),
        }
    }

    /// RFC 9147 §5.1.
    #[allow(clippy::too_many_arguments)]
    fn check13(
        &self,
        now: Instant,
        peer: SocketAddr,
        hello: &ClientHelloRecord<'_>,
        v13: &ClientHello13View<'_>,
        suite: CipherSuite,
        fetched: &[FetchedSession],
        out: &mut [u8],
        rng: &mut dyn Rng,
    ) -> Verdict {
        let config = &*self.config;
        let full = FullHello::new(hello.body);
        let needs_group = needs_group(config, v13, &full, now, fetched);
        let provider = &*config.common.provider;
        let keys = self.keys13.lock(now, rng);
        let mut rejected = false;
        match v13.cookie {
            Some(cookie) => match keys.verify13(provider, now, peer, cookie) {
                Ok((state, info)) => {
                    bump(&self.counters.cookies_verified);
                    return Verdict::Proven(Proof::Cookie13 { state, info });
                }
                Err(_) => {
                    bump(&self.counters.cookies_rejected);
                    rejected = true;
                }
            },
            None if !needs_group && config.cookie.is_none() && !self.require_cookie13 => {
                return Verdict::Proven(Proof::NotRequired { dtls13: true });
            }
            // RFC 9147 §5.1: no cookie for a fresh 0-RTT resumption from the ticket's address
            // with a valid binder (a HelloRetryRequest would forbid the early data, RFC 8446
            // §4.2.10).
            None if !needs_group && cookie_exempt(config, v13, &full, peer, now, fetched) => {
                drop(keys);
                bump(&self.counters.cookie_exempt);
                self.remember_zero_rtt(now, peer, hello.body);
                return Verdict::Proven(Proof::ZeroRttResumption);
            }
            None => {}
        }
        match write_hello_retry_request(provider, &keys, now, peer, hello, suite, needs_group, out) {
            Some(len) => {
                bump(&self.counters.hello_retry_requests);
                Verdict::HelloRetryRequest { len, rejected }
            }
            None => self.drop(),
        }
    }

    /// The stateless HelloRetryRequest for `hello` into `out`, whatever cookie it carries: for
    /// an endpoint that refuses a cookie the gate verified (a replay older than the
    /// association it would replace, RFC 9147 §5.11). `None` where [`Gate::check`] drops.
    pub(crate) fn hello_retry_request(
        &self,
        now: Instant,
        peer: SocketAddr,
        hello: &ClientHelloRecord<'_>,
        fetched: &[FetchedSession],
        out: &mut [u8],
        rng: &mut dyn Rng,
    ) -> Option<usize> {
        let config = &*self.config;
        let view = ClientHelloView::parse(hello.body).ok()?;
        let v13 = ClientHello13View::parse(&view)?;
        let suite = v13.choose_suite(&config.common.suites13)?;
        let needs_group = needs_group(config, &v13, &FullHello::new(hello.body), now, fetched);
        let keys = self.keys13.lock(now, rng);
        let n = write_hello_retry_request(&*config.common.provider, &keys, now, peer, hello, suite, needs_group, out)?;
        bump(&self.counters.hello_retry_requests);
        Some(n)
    }

    /// Whether the cookie-less ClientHello with `random` from `peer` repeats a 0-RTT one this
    /// gate passed within the server's freshness window (a network duplicate, or a
    /// retransmission whose answer was lost). Only a gate in front remembers: an endpoint
    /// routes such a copy to the association the first one created.
    fn recent_zero_rtt(&self, now: Instant, peer: SocketAddr, random: &[u8]) -> bool {
        let Some(recent) = &self.recent_zero_rtt else { return false };
        let Some(window) = self.config.early_data.as_ref().map(|e| e.freshness_window) else { return false };
        let recent = recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().any(|(t, p, r)| *p == peer && &r[..] == random && now.saturating_duration_since(*t) <= window)
    }

    /// Remembers a 0-RTT ClientHello passed without a cookie, for the server's ticket-age
    /// freshness window (RFC 8446 §8.3). Bounded: the oldest go first.
    fn remember_zero_rtt(&self, now: Instant, peer: SocketAddr, body: &[u8]) {
        let Some(recent) = &self.recent_zero_rtt else { return };
        let Some(random) = body.get(2..34).and_then(|r| <[u8; 32]>::try_from(r).ok()) else { return };
        let window = self.config.early_data.as_ref().map_or(Duration::ZERO, |e| e.freshness_window);
        let mut recent = recent.lock().unwrap_or_else(|e| e.into_inner());
        while recent.front().is_some_and(|(t, _, _)| now.saturating_duration_since(*t) > window)
            || recent.len() >= MAX_RECENT_ZERO_RTT
        {
            recent.pop_front();
        }
        recent.push_back((now, peer, random));
    }

    /// Whether this gate reassembles fragmented ClientHellos.
    pub fn reassembles(&self) -> bool {
        self.hellos.is_some()
    }

    /// Takes the epoch-0 ClientHello fragments of `datagram` from `peer` into the bounded
    /// area (RFC 9147 §5.1: a small-MTU client fragments its ClientHello; RFC 6347 §4.2.3).
    /// The whole hello, once complete, goes through [`Gate::check`] like any other. Allocates
    /// only what the area holds and the completed hello.
    pub fn reassemble(&self, now: Instant, peer: SocketAddr, datagram: &[u8]) -> HelloFragments {
        let mut out = HelloFragments::default();
        let Some(area) = &self.hellos else { return out };
        let mut area = area.lock().unwrap_or_else(|e| e.into_inner());
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
        drop(area);
        let c = &self.counters;
        c.hello_fragments.fetch_add(out.fragments_taken, Ordering::Relaxed);
        c.hello_fragments_refused.fetch_add(out.fragments_refused, Ordering::Relaxed);
        c.hellos_evicted.fetch_add(out.evicted, Ordering::Relaxed);
        let Some((version, hello)) = done else { return out };
        bump(&c.hellos_reassembled);
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

    /// Forgets partial ClientHellos older than the area's lifetime; returns how many.
    pub fn expire(&self, now: Instant) -> u64 {
        let Some(area) = &self.hellos else { return 0 };
        let mut area = area.lock().unwrap_or_else(|e| e.into_inner());
        let before = area.evicted();
        area.expire(now);
        let n = area.evicted() - before;
        self.counters.hellos_evicted.fetch_add(n, Ordering::Relaxed);
        n
    }

    /// Partial ClientHellos in the reassembly area and the bytes they hold.
    pub fn hello_reassembly_usage(&self) -> (usize, usize) {
        self.hellos.as_ref().map_or((0, 0), |h| {
            let h = h.lock().unwrap_or_else(|e| e.into_inner());
            (h.len(), h.bytes())
        })
    }
}

/// A ClientHello body and its full decoding, made at most once and only when a PSK look-up
/// needs the identities: the flood path never decodes, and a 0-RTT psk_ke hello is not decoded
/// once for the key-share question and again for the cookie exemption.
struct FullHello<'a> {
    body: &'a [u8],
    decoded: std::cell::OnceCell<Option<ClientHello13>>,
}

impl<'a> FullHello<'a> {
    fn new(body: &'a [u8]) -> Self {
        Self { body, decoded: std::cell::OnceCell::new() }
    }

    fn get(&self) -> Option<&ClientHello13> {
        self.decoded.get_or_init(|| ClientHello13::read_exact(self.body).ok()).as_ref()
    }
}

/// Whether the HelloRetryRequest must ask for a secp256r1 key share: none was sent, and the
/// ClientHello cannot complete with psk_ke alone (RFC 8446 §4.2.9), which only a ClientHello
/// offering psk_ke and a PSK can (the look-up needs the identities).
fn needs_group(
    config: &ServerConfig,
    v13: &ClientHello13View<'_>,
    full: &FullHello<'_>,
    now: Instant,
    fetched: &[FetchedSession],
) -> bool {
    let psk_ke_alone = || {
        v13.psk_ke
            && v13.pre_shared_key
            && full.get().is_some_and(|ch| crate::dtls13::early::psk_ke_possible(config, ch, now, fetched))
    };
    !v13.key_share_secp256r1 && !psk_ke_alone()
}

/// Whether the cookie-less ClientHello is exempt from the cookie exchange (RFC 9147 §5.1, see
/// [`Proof::ZeroRttResumption`]). Only a ClientHello offering a PSK, to a server that allows
/// the exemption for it, is decoded in full.
fn cookie_exempt(
    config: &ServerConfig,
    v13: &ClientHello13View<'_>,
    full: &FullHello<'_>,
    peer: SocketAddr,
    now: Instant,
    fetched: &[FetchedSession],
) -> bool {
    may_skip_cookie(config, v13)
        && full.get().is_some_and(|ch| crate::dtls13::early::cookie_exempt(config, ch, full.body, peer, now, fetched))
}

/// Whether a cookie-less ClientHello is of the kind the server exempts from the cookie
/// exchange when its first PSK checks out: it offers a PSK, with early data to a server that
/// skips the cookie for 0-RTT, or at all to one that skips it for every resumption.
fn may_skip_cookie(config: &ServerConfig, v13: &ClientHello13View<'_>) -> bool {
    v13.cookie.is_none()
        && v13.pre_shared_key
        && ((v13.early_data && config.early_data.as_ref().is_some_and(|e| e.skip_cookie_on_resumption))
            || config.skip_cookie_on_resumption)
}

/// Writes the stateless HelloRetryRequest datagram for `hello` (RFC 9147 §5.1, RFC 8446
/// §4.1.4) into `out`: one plaintext record reusing the ClientHello's record number, a
/// ServerHello-typed handshake message with the HelloRetryRequest random, supported_versions
/// (DTLS 1.3), key_share (when `needs_group`: secp256r1) and the cookie. `None` when it would
/// exceed three times the bytes received (the amplification limit before the address is
/// proven) or `out` is too small.
#[allow(clippy::too_many_arguments)]
fn write_hello_retry_request(
    provider: &dyn CryptoProvider,
    keys: &CookieKeys,
    now: Instant,
    peer: SocketAddr,
    hello: &ClientHelloRecord<'_>,
    suite: CipherSuite,
    needs_group: bool,
    out: &mut [u8],
) -> Option<usize> {
    // The ClientHello as the transcript hashes it (RFC 8446 §4.4.1: TLS-style header).
    let len = u32::try_from(hello.body.len()).ok().filter(|l| *l <= 0xff_ffff)?.to_be_bytes();
    let header = [u8::from(HandshakeType::ClientHello), len[1], len[2], len[3]];
    let state = HrrState {
        client_hello1_hash: provider.sha256_parts(&[&header, hello.body]),
        cipher_suite: suite.into(),
        group: if needs_group { SECP256R1 } else { 0 },
    };
    let cookie = keys.generate13(provider, now, peer, &state).ok()?;
    let cookie = cookie.as_bytes();
    let exts_len = 6 + if needs_group { 6 } else { 0 } + 6 + cookie.len();
    let body_len = 2 + 32 + 1 + 2 + 1 + 2 + exts_len;
    let fragment_len = HandshakeHeader::LEN + body_len;
    let total = RecordHeader::LEN + fragment_len;
    // RFC 9147 §5.1: at most three times the bytes received before the address is proven.
    if total > 3 * hello.datagram.len() {
        return None;
    }
    let mut w = Writer { out: out.get_mut(..total)?, at: 0 };
    // Record header: RFC 9147 §5.1 reuses the ClientHello's record number; plaintext records
    // carry DTLS 1.2 as legacy_record_version.
    w.put(&[u8::from(ContentType::Handshake)]);
    w.u16(0xfefd);
    w.u16(0);
    w.put(&hello.record.sequence_number.to_be_bytes()[2..]);
    w.u16(fragment_len as u16);
    // Handshake header: server_hello, message_seq 0, unfragmented.
    let body24 = (body_len as u32).to_be_bytes();
    w.put(&[u8::from(HandshakeType::ServerHello)]);
    w.put(&body24[1..]);
    w.u16(0);
    w.put(&[0, 0, 0]);
    w.put(&body24[1..]);
    // RFC 8446 §4.1.4 / RFC 9147 §5.4: legacy_version DTLS 1.2, the special random, an empty
    // legacy_session_id_echo (DTLS servers MUST NOT echo it), the suite, null compression.
    w.u16(0xfefd);
    w.put(&HELLO_RETRY_REQUEST_RANDOM);
    w.put(&[0]);
    w.u16(u16::from(suite));
    w.put(&[0]);
    w.u16(exts_len as u16);
    w.u16(EXT_SUPPORTED_VERSIONS);
    w.u16(2);
    w.u16(0xfefc);
    if needs_group {
        w.u16(EXT_KEY_SHARE);
        w.u16(2);
        w.u16(SECP256R1);
    }
    w.u16(EXT_COOKIE);
    w.u16(2 + cookie.len() as u16);
    w.u16(cookie.len() as u16);
    w.put(cookie);
    (w.at == total).then_some(total)
}

const EXT_SUPPORTED_VERSIONS: u16 = 43;
const EXT_COOKIE: u16 = 44;
const EXT_KEY_SHARE: u16 = 51;
const SECP256R1: u16 = 23;

/// Writes into a slice already cut to the exact length.
struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    /// Total: a length miscomputed above leaves `at` off the end, which the caller checks,
    /// instead of panicking.
    fn put(&mut self, b: &[u8]) {
        if let Some(dst) = self.out.get_mut(self.at..self.at + b.len()) {
            dst.copy_from_slice(b);
        }
        self.at += b.len();
    }

    fn u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests;

/// Writes a plaintext fatal alert record (epoch 0) echoing the ClientHello's record sequence
/// number, as the HelloVerifyRequest does (RFC 6347 §4.2.1), so a client can match it to what
/// it sent. The record version is DTLS 1.2's: the client offered nothing newer, and RFC 9147
/// §4 fixes 1.2's value for DTLS 1.3's plaintext records as well.
fn write_alert(client_record_seq: u64, description: AlertDescription, out: &mut [u8]) -> Option<usize> {
    if client_record_seq >= 1 << 48 {
        return None;
    }
    let out = out.get_mut(..15)?;
    out[0] = ContentType::Alert.into();
    out[1..3].copy_from_slice(&ProtocolVersion::DTLS1_2.0.to_be_bytes());
    out[3..5].copy_from_slice(&0u16.to_be_bytes());
    out[5..11].copy_from_slice(&client_record_seq.to_be_bytes()[2..]);
    out[11..13].copy_from_slice(&2u16.to_be_bytes());
    // AlertLevel fatal (2), RFC 5246 §7.2.
    out[13] = 2;
    out[14] = description.into();
    Some(15)
}
