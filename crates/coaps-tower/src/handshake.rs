//! The association table: DTLS 1.2 and 1.3 handshakes, timers, and sealing / opening of application
//! data, as a datagram-level service.
//!
//! [`HandshakeLayer`] wraps an inner `Service<Secured, Response = Option<Vec<u8>>>` (the
//! application, or the CoAP layer) into a `Service<Datagram, Response = Transmits>`:
//!
//! * it keeps one [`coaps_dtls::Connection`] per peer address, inside a
//!   [`coaps_dtls::Endpoint`];
//! * handshake datagrams are answered with the next flight, directly in the response;
//! * every application-data record is decrypted and handed to the inner service as
//!   [`Secured`], with the identity the peer proved in the handshake; what the inner service
//!   answers (`Some(bytes)`) is sealed into a record for the same peer and returned;
//! * a worker task drives the timers: handshake retransmissions (RFC 6347 §4.2.4) and idle
//!   expiry. What it produces, and whatever is sent on the application's initiative
//!   ([`Associations::send`], [`Associations::close`], graceful shutdown's close_notify), is
//!   not the answer to any received datagram: it goes to the **outbox**, a bounded queue that
//!   the transport drains ([`Server::out_of_band`](crate::transport::Server::out_of_band)
//!   takes the [`Associations`] handle).
//!
//! # Cookies
//!
//! A ClientHello that starts a handshake must carry proof that the peer owns its address
//! before any state is created (RFC 6347 §4.2.1, DESIGN "no state before proof"). There is one
//! stateless gate, [`coaps_dtls::gate::Gate`], and the builder makes you say where it runs:
//!
//! * [`HandshakeBuilder::behind(&cookie_layer)`](HandshakeBuilder::behind): a
//!   [`CookieLayer`](crate::cookie::CookieLayer) in front runs it and marks the ClientHellos it
//!   proved ([`Datagram::cookie`]); the handshake layer shares the layer's DTLS 1.3 cookie
//!   secrets (one [`SharedCookieKeys`] set, rotation included), because the endpoint rebuilds a
//!   DTLS 1.3 transcript from the cookie of the second ClientHello (RFC 8446 §4.4.1). The
//!   recommended stack.
//! * [`HandshakeBuilder::own_gate`] (and [`HandshakeLayer::new`]): no cookie layer; the
//!   endpoint runs the gate itself with the [`ServerConfig::cookie`] timing, answering
//!   HelloVerifyRequests (DTLS 1.2) and stateless HelloRetryRequests (DTLS 1.3).
//!   `ServerConfig::cookie = None` switches the exchange off (DTLS 1.3 still gets a stateless
//!   HelloRetryRequest when it must ask for a key share).
//! * Either way, the endpoint never gives a DTLS 1.3 ClientHello without a valid cookie an
//!   association when a gate is in front ([`Endpoint::server_behind_gate`]), whatever mark
//!   the datagram carries.
//!
//! # Wiring
//!
//! A stack wired wrong fails to compile or fails loudly, never by timing DTLS 1.3 clients out
//! (a DTLS 1.3 client takes one HelloRetryRequest only, so a second gate with other secrets
//! answering its cookie with a fresh one leaves it waiting):
//!
//! * `build()` exists only once the gate is chosen, so forgetting the choice does not compile:
//!
//! ```compile_fail,E0599
//! # use std::sync::Arc;
//! let server = Arc::new(coaps_dtls::ServerConfig::default());
//! let layer = coaps_tower::HandshakeLayer::builder(server).build(); // neither .behind() nor .own_gate()
//! ```
//!
//! * every mark carries the identity of the gate that made it ([`CookieVerified::gate`]). A
//!   marked datagram reaching a layer built with [`HandshakeBuilder::own_gate`] (a cookie layer
//!   in front after all), or marked by another cookie layer than the one given to
//!   [`HandshakeBuilder::behind`], makes the service fail with a [`WiringError`] (and a
//!   `tracing::error!`) that says how to fix the stack;
//! * a layer built `.behind(&cookie_layer)` fails the same way on first use when that cookie
//!   layer wraps no service, and on any ClientHello it did not mark (it is not in front). Such
//!   ClientHellos create no state and are counted in
//!   [`HandshakeStats::unverified_client_hellos`].
//!
//! # Early data (DTLS 1.3 0-RTT)
//!
//! With [`ServerConfig::early_data`] set, a resuming client may send application data with its
//! ClientHello (RFC 8446 §4.2.10, RFC 9147 §5.6). What the engine accepts reaches the inner
//! service as [`Secured`] with `early_data: true`, before the handshake completes (1-RTT data
//! always has `early_data: false`); rejected early data never reaches it. Early data can be
//! replayed by an attacker across connections (RFC 8446 §8; the engine's single-use tickets
//! and freshness window narrow this), so the inner service must only act on what is safe to
//! repeat. The answers to early data go out at once, as 0.5-RTT data (RFC 8446 §2.3): the
//! engine's server has its epoch-3 sending keys from its own Finished on, so the answer
//! follows the server's flight in the same exchange and the client has it after one round
//! trip. (The engine holds it until the client's Finished only when the three-times
//! amplification limit of an unproven address would be exceeded, RFC 9147 §5.1; see
//! [`coaps_dtls::Connection::send`].) Every answer goes only to the association that asked:
//! when a new handshake from the same address has replaced it (RFC 6347 §4.2.8) — another
//! ClientHello random or another peer identity — the answer is dropped and counted in
//! [`HandshakeStats::responses_dropped`].
//!
//! Each early record carries a [`Handshaken`] signal, resolved when the association's client
//! Finished arrives (or negatively when it fails, is replaced or is forgotten first): what
//! [`EarlyDataLayer`](crate::EarlyDataLayer) holds unsafe 0-RTT requests on. An early record
//! whose answer is not ready at once (such a held request) does not hold back the datagram's
//! answer, which carries the server's flight the client needs to finish: it moves to a task of
//! its own, and its answer goes out through the out-of-band queue
//! ([`Associations::next_transmit`]) when it comes, right after the client's Finished.
//!
//! A 0-RTT resumption from the address its ticket was issued to comes without a cookie
//! (RFC 9147 §5.1, [`coaps_dtls::EarlyDataConfig::skip_cookie_on_resumption`]): a
//! [`CookieLayer`](crate::cookie::CookieLayer) in front passes it marked with
//! `rtt_sample: None`, and the internal gate lets it through to the endpoint, which checks the
//! same condition again.
//!
//! # Sessions
//!
//! By default issued DTLS 1.2 sessions and DTLS 1.3 tickets stay in the engine's in-process
//! store ([`ServerConfig::session_store`]). For a store outside the process (a resumption layer
//! over moka or Redis: [`ResumptionLayer`](crate::resumption::ResumptionLayer)), [`HandshakeBuilder::on_session`] receives every issued session, and the
//! sessions such a layer fetched for a ClientHello ([`coaps_dtls::offered_sessions`]) travel in
//! [`Datagram::sessions`] to the engine, which uses them before its own store (see
//! [`coaps_dtls::SessionStore`]). A 0-RTT ticket's early data is accepted only if the layer
//! fetched it with an atomic take ([`coaps_dtls::FetchedSession::taken`]). The cookie
//! exemption of a resumption (RFC 9147 §5.1) sees handed-in tickets where the gate runs
//! inside the endpoint ([`HandshakeBuilder::own_gate`]); with a [`CookieLayer`](crate::CookieLayer) in front and a
//! resumption layer behind it, the cookie layer leaves that decision to the resumption layer,
//! which fetches the ticket, asks the gate, and takes the ticket only once the exemption holds
//! (see [`crate::resumption`]); the endpoint checks it again.
//!
//! # Limits
//!
//! [`ServerConfig::max_connections`] bounds the associations and
//! [`ServerConfig::max_handshakes`] the half-open ones; [`ServerConfig::quotas`]
//! ([`QuotaConfig`], set with the builder's [`HandshakeBuilder::quotas`] and the setters
//! beside it) keeps one host from filling them:
//!
//! * half-open handshakes per source address and per /24 (IPv4) or /56 (IPv6) prefix are
//!   capped, and one whose peer has sent nothing for the half-open lifetime (33 s: longer than
//!   every RFC 6347 §4.2.4.1 back-off gap up to the sixth retransmission) is forgotten;
//! * at `max_handshakes` the least recently heard half-open handshake is evicted for a new
//!   proven ClientHello, so a burst of abandoned handshakes does not refuse new clients;
//! * associations per source address (and, when set, per authenticated identity) are capped;
//! * at `max_connections` the least-recently-active association idle for at least
//!   [`QuotaConfig::min_idle_to_evict`] is evicted for a new handshake, never an active one
//!   before an idle one; if none is idle enough the ClientHello is refused.
//!
//! Every refusal and eviction is counted by reason in [`HandshakeStats::endpoint`] and logged
//! with `tracing::warn!`, at most one line per reason every 10 s (with the number since the
//! last line). The bookkeeping is O(1) per datagram (O(log n) for timers): no decision scans
//! the table. Established peers' records never wait on a limit. Associations without traffic
//! for [`HandshakeBuilder::idle_timeout`] (default 5 minutes) are forgotten by the worker. Out-of-band datagrams wait in an outbox
//! of [`HandshakeBuilder::outbox_capacity`] datagrams; beyond it they are dropped (and
//! counted), as the network could have dropped them.
//!
//! # Worker
//!
//! As with `tower::buffer::Buffer`, the worker is spawned on the current tokio runtime when
//! the layer wraps a service (so [`Layer::layer`] panics outside a runtime), or handed to the
//! caller by [`HandshakeLayer::pair`]. It ends once the layer, its services and every
//! [`Associations`] handle are dropped.
//!
//! # Example
//!
//! A cookie layer, the handshake layer and an echo service; a DTLS 1.3 client endpoint from
//! `coaps-dtls` talks to the stack over an in-memory "network" (the cookie layer answers its
//! first ClientHello with a stateless HelloRetryRequest).
//!
//! ```
//! use coaps_dtls::crypto::SeededRng;
//! use coaps_dtls::{ClientConfig, DtlsVersion, Endpoint, Event, PeerIdentity, Psk, ServerConfig, StaticPsks};
//! use coaps_tower::cookie::CookieLayer;
//! use coaps_tower::handshake::HandshakeLayer;
//! use coaps_tower::{BoxError, Datagram, Secured};
//! use std::sync::Arc;
//! use std::time::Instant;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let psk = Psk::new("device-1", b"0123456789abcdef".to_vec())?;
//! let server = ServerConfig { psks: Some(Arc::new(StaticPsks(vec![psk.clone()]))), ..ServerConfig::default() };
//!
//! let server = Arc::new(server);
//! let cookies = CookieLayer::for_server(&server);
//! let handshake = HandshakeLayer::builder(server).behind(&cookies).build();
//! let associations = handshake.associations();
//! let mut service = ServiceBuilder::new()
//!     .layer(cookies)
//!     .layer(handshake)
//!     .service(service_fn(|s: Secured| async move {
//!         assert_eq!(s.identity, PeerIdentity::Psk(b"device-1".to_vec()));
//!         Ok::<_, BoxError>(Some(s.payload)) // echo
//!     }));
//!
//! let (server_addr, client_addr) = ("192.0.2.1:5684".parse()?, "192.0.2.2:40000".parse()?);
//! let mut client = Endpoint::client(SeededRng::from_seed_u64(1));
//! let config = Arc::new(ClientConfig { psk: Some(psk), version: DtlsVersion::Dtls13, ..ClientConfig::default() });
//! client.connect(Instant::now(), server_addr, config, "localhost", None)?;
//! let mut echo = None;
//! for _ in 0..10 {
//!     while let Some(t) = client.poll_transmit() {
//!         let answers = service.ready().await?.call(Datagram::new(client_addr, t.payload)).await?;
//!         for a in answers {
//!             client.handle_datagram(Instant::now(), server_addr, &a.payload);
//!         }
//!     }
//!     while let Some((_, event)) = client.poll_event() {
//!         match event {
//!             Event::Connected { .. } => client.send(server_addr, b"hello")?,
//!             Event::ApplicationData(data) => echo = Some(data),
//!             _ => {}
//!         }
//!     }
//! }
//! assert_eq!(echo.as_deref(), Some(&b"hello"[..]));
//! assert_eq!(associations.count(), 1);
//! # Ok(())
//! # }
//! ```

use crate::cookie::{CookieStats, SharedGate};
use crate::types::{
    Association, BoxError, CookieVerified, Datagram, DisplayAddr, Handshaken, Secured, Transmit, Transmits,
};
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::gate::FirstRecord;
use coaps_dtls::gate::cookie::SharedCookieKeys;
use coaps_dtls::{
    DatagramMeta, Endpoint, EndpointStats, Event, PeerIdentity, QuotaConfig, ServerConfig, Session, UsageError,
};
use pin_project_lite::pin_project;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tower_layer::Layer;
use tower_service::Service;

/// Default [`HandshakeBuilder::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default [`HandshakeBuilder::outbox_capacity`].
pub const DEFAULT_OUTBOX_CAPACITY: usize = 4096;

/// Counters of the handshake layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandshakeStats {
    /// The endpoint's counters (datagrams, associations created, limits hit, …).
    pub endpoint: EndpointStats,
    /// The endpoint's own cookie gate's counters, when the layer runs it
    /// ([`HandshakeBuilder::own_gate`]).
    pub cookie: Option<CookieStats>,
    /// ClientHellos refused because they carried no mark of the cookie layer given to
    /// [`HandshakeBuilder::behind`] (see [the wiring checks](self#wiring)).
    pub unverified_client_hellos: u64,
    /// Application-data records handed to the inner service.
    pub records_to_inner: u64,
    /// Responses of the inner service that could not be sealed (peer gone or replaced by
    /// another association, too large).
    pub responses_dropped: u64,
    /// Associations forgotten after the idle timeout.
    pub expired_idle: u64,
    /// Out-of-band datagrams dropped because the outbox was full.
    pub outbox_dropped: u64,
}

/// Totals over several stacks (e.g. one per thread, see [`crate::shard`]); the cookie
/// counters are summed over the stacks that have them.
impl std::ops::AddAssign for HandshakeStats {
    fn add_assign(&mut self, o: Self) {
        // Destructured without `..`: a new counter must be added here too.
        let HandshakeStats {
            endpoint,
            cookie,
            unverified_client_hellos,
            records_to_inner,
            responses_dropped,
            expired_idle,
            outbox_dropped,
        } = o;
        self.endpoint += endpoint;
        self.cookie = match (self.cookie, cookie) {
            (Some(mut a), Some(b)) => {
                a += b;
                Some(a)
            }
            (a, b) => a.or(b),
        };
        self.unverified_client_hellos += unverified_client_hellos;
        self.records_to_inner += records_to_inner;
        self.responses_dropped += responses_dropped;
        self.expired_idle += expired_idle;
        self.outbox_dropped += outbox_dropped;
    }
}

impl std::iter::Sum for HandshakeStats {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), |mut a, b| {
            a += b;
            a
        })
    }
}

/// Where [`HandshakeBuilder::on_session`] sends issued sessions.
#[derive(Clone)]
struct SessionSink(Arc<dyn Fn(SocketAddr, Session) + Send + Sync>);

impl fmt::Debug for SessionSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSink")
    }
}

/// Builds a [`HandshakeLayer`]; see the [module docs](self).
///
/// `G` records where the stateless cookie gate runs: [`wiring::Unwired`] until
/// [`HandshakeBuilder::behind`] or [`HandshakeBuilder::own_gate`] chooses, and only then is
/// there a `build()` (see [the wiring checks](self#wiring)).
#[derive(Debug)]
pub struct HandshakeBuilder<G = wiring::Unwired> {
    config: ServerConfig,
    idle_timeout: Duration,
    gate: G,
    outbox_capacity: usize,
    rng: Option<SeededRng>,
    on_session: Option<SessionSink>,
}

/// The states of a [`HandshakeBuilder`]: where the stateless cookie gate runs.
pub mod wiring {
    use crate::cookie::SharedGate;
    use std::sync::Arc;

    /// Not chosen yet: no `build()`.
    #[derive(Debug)]
    pub struct Unwired;

    /// The endpoint runs the gate itself ([`HandshakeBuilder::own_gate`](super::HandshakeBuilder::own_gate)).
    #[derive(Debug)]
    pub struct OwnGate;

    /// A cookie layer in front runs it ([`HandshakeBuilder::behind`](super::HandshakeBuilder::behind)).
    #[derive(Debug)]
    pub struct Behind(pub(crate) Arc<SharedGate>);
}

impl HandshakeBuilder<wiring::Unwired> {
    /// A [`CookieLayer`](crate::cookie::CookieLayer) in front runs the stateless gate: every
    /// ClientHello that starts a handshake must carry its mark, and the layer shares the cookie
    /// layer's DTLS 1.3 secrets: a DTLS 1.3 client's second ClientHello, marked by the layer,
    /// carries a cookie sealed with them, from which the endpoint rebuilds the handshake
    /// transcript (RFC 8446 §4.4.1). Build the cookie layer with
    /// [`CookieLayer::for_server`](crate::cookie::CookieLayer::for_server) on the same
    /// configuration so it answers DTLS 1.3 with a HelloRetryRequest, and put it in front:
    /// `ServiceBuilder::new().layer(cookie_layer).layer(handshake_layer)`.
    ///
    /// Marks of another gate, a cookie layer that wraps no service, or an unmarked ClientHello
    /// make the service fail loudly (see [the wiring checks](self#wiring)). Whatever is in
    /// front, the endpoint never gives a DTLS 1.3 ClientHello without a valid cookie an
    /// association (RFC 9147 §5.1: no state before proof).
    pub fn behind(self, cookies: &crate::cookie::CookieLayer) -> HandshakeBuilder<wiring::Behind> {
        self.wire(wiring::Behind(cookies.shared_gate()))
    }

    /// No cookie layer in front: the endpoint runs the stateless gate itself, with the
    /// [`ServerConfig::cookie`] timing (`None` switches the exchange off). A datagram marked by
    /// a cookie layer makes the service fail loudly: use [`HandshakeBuilder::behind`] when a
    /// cookie layer is in front.
    pub fn own_gate(self) -> HandshakeBuilder<wiring::OwnGate> {
        self.wire(wiring::OwnGate)
    }

    fn wire<G>(self, gate: G) -> HandshakeBuilder<G> {
        HandshakeBuilder {
            config: self.config,
            idle_timeout: self.idle_timeout,
            gate,
            outbox_capacity: self.outbox_capacity,
            rng: self.rng,
            on_session: self.on_session,
        }
    }
}

impl HandshakeBuilder<wiring::Behind> {
    /// The layer, with an empty association table, behind the cookie layer.
    pub fn build(self) -> HandshakeLayer {
        let front = self.gate.0.clone();
        let keys13 = front.gate_keys13();
        self.build_with(Wiring::Behind(front), Some(keys13))
    }
}

impl HandshakeBuilder<wiring::OwnGate> {
    /// The layer, with an empty association table and its own gate.
    pub fn build(self) -> HandshakeLayer {
        self.build_with(Wiring::OwnGate, None)
    }
}

impl<G> HandshakeBuilder<G> {
    /// Associations without any datagram for this long are forgotten (no close_notify: the
    /// peer is presumed gone). Default [`DEFAULT_IDLE_TIMEOUT`].
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Most associations at once (sets [`ServerConfig::max_connections`]).
    pub fn max_associations(mut self, n: usize) -> Self {
        self.config.max_connections = n;
        self
    }

    /// Most half-open handshakes at once (sets [`ServerConfig::max_handshakes`]); at the
    /// limit the least recently heard one is evicted for a new one.
    pub fn max_handshakes(mut self, n: usize) -> Self {
        self.config.max_handshakes = n;
        self
    }

    /// All per-source and per-identity limits at once (sets [`ServerConfig::quotas`]; see
    /// [the limits](self#limits)). Default [`QuotaConfig::default`].
    pub fn quotas(mut self, quotas: QuotaConfig) -> Self {
        self.config.quotas = quotas;
        self
    }

    /// How long a half-open handshake may go without a datagram from its peer
    /// ([`QuotaConfig::half_open_lifetime`], default 33 s).
    pub fn half_open_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.quotas.half_open_lifetime = lifetime;
        self
    }

    /// Most half-open handshakes from one source address
    /// ([`QuotaConfig::max_half_open_per_address`], default 32).
    pub fn max_half_open_per_address(mut self, n: usize) -> Self {
        self.config.quotas.max_half_open_per_address = n;
        self
    }

    /// Most half-open handshakes from one /24 or /56 prefix
    /// ([`QuotaConfig::max_half_open_per_prefix`], default 128).
    pub fn max_half_open_per_prefix(mut self, n: usize) -> Self {
        self.config.quotas.max_half_open_per_prefix = n;
        self
    }

    /// Most associations with one source address
    /// ([`QuotaConfig::max_associations_per_address`], default 256).
    pub fn max_associations_per_address(mut self, n: usize) -> Self {
        self.config.quotas.max_associations_per_address = n;
        self
    }

    /// Most associations of one authenticated identity
    /// ([`QuotaConfig::max_associations_per_identity`], default no limit).
    pub fn max_associations_per_identity(mut self, n: usize) -> Self {
        self.config.quotas.max_associations_per_identity = n;
        self
    }

    /// Most out-of-band datagrams waiting for the transport. Default
    /// [`DEFAULT_OUTBOX_CAPACITY`].
    pub fn outbox_capacity(mut self, n: usize) -> Self {
        self.outbox_capacity = n;
        self
    }

    /// The RNG that seeds every association and the cookie secret (seed it for reproducible
    /// tests). Default: seeded from the OS.
    pub fn rng(mut self, rng: SeededRng) -> Self {
        self.rng = Some(rng);
        self
    }

    /// Hands every session the server issues to `sink`, with the peer it was issued to: DTLS
    /// 1.2 session IDs after full handshakes and DTLS 1.3 tickets
    /// ([`Event::SessionIssued`], [`Event::TicketIssued`]); sets
    /// [`ServerConfig::session_events`]. This is the seam for a resumption layer with an
    /// external store: it keeps [`Session::encode`]'s bytes under [`Session::store_key`] for
    /// [`Session::ttl`], and on a later ClientHello fetches what
    /// [`coaps_dtls::offered_sessions`] lists and hands it in as [`Datagram::sessions`]. Set
    /// [`ServerConfig::session_store`] to `None` so the engine keeps no copy of its own.
    ///
    /// `sink` runs synchronously on the task that handled the datagram, outside the layer's
    /// lock: keep it short (send to a channel, spawn the store write).
    pub fn on_session(mut self, sink: impl Fn(SocketAddr, Session) + Send + Sync + 'static) -> Self {
        self.config.session_events = true;
        self.on_session = Some(SessionSink(Arc::new(sink)));
        self
    }

    fn build_with(self, wiring: Wiring, front_keys13: Option<SharedCookieKeys>) -> HandshakeLayer {
        let rng = self.rng.unwrap_or_else(SeededRng::from_os);
        let mut config = self.config;
        let now = Instant::now();
        let endpoint = match front_keys13 {
            // The gate in front proves the peer; the endpoint must not issue DTLS 1.2 cookies of
            // its own, which would not verify against the front gate's secret, and opens the
            // front gate's DTLS 1.3 cookies.
            Some(k) => {
                config.cookie = None;
                Endpoint::server_behind_gate(Arc::new(config), rng, now, k)
            }
            None => Endpoint::server(Arc::new(config), rng, now),
        };
        let sweep_every = (self.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                endpoint,
                outbox: VecDeque::new(),
                last_now: now,
                next_sweep: now + sweep_every,
                worker_deadline: None,
                issued: Vec::new(),
                early_waiters: HashMap::new(),
                limit_log: LimitLog::default(),
                alerts_seen: (0, 0),
            }),
            on_session: self.on_session,
            wiring,
            wiring_error_logged: AtomicBool::new(false),
            idle_timeout: self.idle_timeout,
            sweep_every,
            outbox_capacity: self.outbox_capacity,
            outbox_ready: Notify::new(),
            worker_wake: Arc::new(Notify::new()),
            worker_started: AtomicBool::new(false),
            unverified_client_hellos: AtomicU64::new(0),
            records_to_inner: AtomicU64::new(0),
            responses_dropped: AtomicU64::new(0),
            expired_idle: AtomicU64::new(0),
            outbox_dropped: AtomicU64::new(0),
            limit_warning: crate::log::RateLimited::new(crate::log::WARN_EVERY),
            reassembly_warning: crate::log::RateLimited::new(crate::log::WARN_EVERY),
        });
        HandshakeLayer { shared }
    }
}

struct State {
    endpoint: Endpoint,
    outbox: VecDeque<Transmit>,
    /// The engine wants a clock that never goes back; datagram timestamps and the worker's
    /// clock readings interleave, so every input is clamped to the latest time seen.
    last_now: Instant,
    next_sweep: Instant,
    /// When the worker will next wake up on its own; a new, earlier timer wakes it early.
    worker_deadline: Option<Instant>,
    /// Issued sessions waiting for the [`HandshakeBuilder::on_session`] sink, which never runs
    /// under the lock.
    issued: Vec<(SocketAddr, Session)>,
    /// Associations that delivered 0-RTT data and whose handshake has not completed yet: the
    /// ClientHello random and the signal handed out with their early records
    /// ([`Handshaken`]), resolved by the client's Finished or by the association's end.
    early_waiters: HashMap<SocketAddr, ([u8; 32], tokio::sync::watch::Sender<Option<bool>>)>,
    limit_log: LimitLog,
    /// The own gate's (protocol_version, handshake_failure) alert counts already logged.
    alerts_seen: (u64, u64),
}

/// The stateless alerts a gate wrote: protocol_version, handshake_failure.
fn gate_alerts(g: &coaps_dtls::gate::Gate) -> (u64, u64) {
    let s = g.stats();
    (s.protocol_version_alerts, s.handshake_failure_alerts)
}

/// Rate limit of the refusal and eviction log lines: one per reason every
/// [`LIMIT_LOG_EVERY`], with the number since the last line.
#[derive(Default)]
struct LimitLog {
    seen: [u64; LIMIT_REASONS.len()],
    logged: [u64; LIMIT_REASONS.len()],
    last: [Option<Instant>; LIMIT_REASONS.len()],
}

const LIMIT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Reads one counter of the endpoint.
type Counter = fn(&EndpointStats) -> u64;

/// Each refusal and eviction counter of the endpoint, with what its log line says.
const LIMIT_REASONS: [(Counter, &str); 8] = [
    (|s| s.refused_half_open_per_address, "ClientHellos refused: source address at its half-open limit"),
    (|s| s.refused_half_open_per_prefix, "ClientHellos refused: /24 or /56 prefix at its half-open limit"),
    (|s| s.refused_associations_per_address, "ClientHellos refused: source address at its association limit"),
    (|s| s.refused_associations_per_identity, "handshakes closed: identity at its association limit"),
    (|s| s.refused_table_full, "ClientHellos refused: association table full and no association idle enough to evict"),
    (|s| s.evicted_half_open, "half-open handshakes evicted (least recently heard) at max_handshakes"),
    (|s| s.evicted_idle, "idle associations evicted (least recently active) at max_connections"),
    (|s| s.expired_half_open, "half-open handshakes forgotten after the half-open lifetime"),
];

impl LimitLog {
    /// Logs what the counters in `stats` say happened since the last line of each reason, at
    /// most once per [`LIMIT_LOG_EVERY`] per reason (`peer`: the datagram's, if any).
    fn note(&mut self, now: Instant, stats: &EndpointStats, peer: Option<SocketAddr>) {
        for (i, (counter, what)) in LIMIT_REASONS.iter().enumerate() {
            let n = counter(stats);
            if n == self.seen[i] {
                continue;
            }
            self.seen[i] = n;
            if self.last[i].is_some_and(|t| now.saturating_duration_since(t) < LIMIT_LOG_EVERY) {
                continue;
            }
            let since = n - self.logged[i];
            match peer {
                Some(peer) => tracing::warn!(%peer, count = since, total = n, "{what}"),
                None => tracing::warn!(count = since, total = n, "{what}"),
            }
            self.logged[i] = n;
            self.last[i] = Some(now);
        }
    }
}

/// The association a record came from. A new handshake from the same address can replace it
/// (RFC 6347 §4.2.8) while the inner service works: the answer only goes to an association
/// with the same ClientHello random and the same peer identity, never to another principal
/// that took over the address.
#[derive(Clone)]
struct Asker {
    client_random: [u8; 32],
    identity: PeerIdentity,
}

fn asker(c: &coaps_dtls::Connection) -> Asker {
    Asker { client_random: *c.client_random(), identity: c.peer_identity().clone() }
}

impl State {
    /// The signal for 0-RTT data of the association at `peer` (ClientHello `random`).
    fn early_signal(&mut self, peer: SocketAddr, random: [u8; 32]) -> Handshaken {
        if let Some((r, tx)) = self.early_waiters.get(&peer)
            && *r == random
        {
            let rx = tx.subscribe();
            return Handshaken::from_receiver(rx);
        }
        let (tx, signal) = Handshaken::pending();
        if let Some((_, old)) = self.early_waiters.insert(peer, (random, tx)) {
            old.send_replace(Some(false));
        }
        signal
    }

    /// The handshake at `peer` completed (`true`: the client's Finished verified) or ended.
    fn resolve_early(&mut self, peer: &SocketAddr, completed: bool) {
        if let Some((random, tx)) = self.early_waiters.remove(peer) {
            let same = self.endpoint.connection(peer).is_some_and(|c| *c.client_random() == random);
            tx.send_replace(Some(completed && same));
        }
    }

    /// Resolves the signals of associations that are gone or were replaced.
    fn sweep_early(&mut self) {
        let endpoint = &self.endpoint;
        self.early_waiters.retain(|peer, (random, tx)| {
            let alive = endpoint.connection(peer).is_some_and(|c| *c.client_random() == *random);
            if !alive {
                tx.send_replace(Some(false));
            }
            alive
        });
    }

    fn now(&mut self, t: Instant) -> Instant {
        self.last_now = self.last_now.max(t);
        self.last_now
    }
}

/// Where the stateless gate runs, checked on every datagram (see [the wiring checks](self#wiring)).
enum Wiring {
    OwnGate,
    Behind(Arc<SharedGate>),
}

/// A stack wired so that handshakes could not complete (see [the wiring checks](self#wiring)):
/// the message says what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WiringError {
    message: &'static str,
}

impl fmt::Display for WiringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)
    }
}

impl std::error::Error for WiringError {}

impl WiringError {
    pub(crate) fn new(message: &'static str) -> Self {
        Self { message }
    }
}

const MARK_WITH_OWN_GATE: &str = "coaps-tower: a ClientHello marked by a CookieLayer reached a HandshakeLayer that runs its \
     own cookie gate, whose DTLS 1.3 secrets differ (DTLS 1.3 clients would time out): build the handshake layer \
     with HandshakeLayer::builder(..).behind(&cookie_layer) instead of .own_gate() / HandshakeLayer::new";
const MARK_OF_ANOTHER_GATE: &str = "coaps-tower: a ClientHello marked by another CookieLayer than the one given to \
     HandshakeLayer::builder(..).behind(&cookie_layer) (DTLS 1.3 clients would time out): pass the CookieLayer \
     that is in front of this handshake layer to .behind()";
const FRONT_NOT_LAYERED: &str = "coaps-tower: the CookieLayer given to HandshakeLayer::builder(..).behind(&cookie_layer) \
     wraps no service: put it in front of the handshake layer, \
     ServiceBuilder::new().layer(cookie_layer).layer(handshake_layer)";
const UNMARKED_BEHIND: &str = "coaps-tower: a ClientHello without the mark of the CookieLayer given to \
     HandshakeLayer::builder(..).behind(&cookie_layer) reached the handshake layer: that CookieLayer is not in \
     front of it; stack them as ServiceBuilder::new().layer(cookie_layer).layer(handshake_layer)";

struct Shared {
    state: Mutex<State>,
    on_session: Option<SessionSink>,
    wiring: Wiring,
    /// The first wiring error goes to `tracing::error!`, the next ones to `debug!`: one loud
    /// line is enough, and a flood must not flood the log too.
    wiring_error_logged: AtomicBool,
    idle_timeout: Duration,
    sweep_every: Duration,
    outbox_capacity: usize,
    outbox_ready: Notify,
    worker_wake: Arc<Notify>,
    worker_started: AtomicBool,
    unverified_client_hellos: AtomicU64,
    records_to_inner: AtomicU64,
    responses_dropped: AtomicU64,
    expired_idle: AtomicU64,
    outbox_dropped: AtomicU64,
    /// New handshakes refused at a limit (associations, half-open): one warning a while.
    limit_warning: crate::log::RateLimited,
    /// ClientHello fragments refused or partial ClientHellos evicted by the reassembly limits.
    reassembly_warning: crate::log::RateLimited,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Lets the worker notice at once that there is nothing left to drive.
        self.worker_wake.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another thread while holding the lock leaves the engine consistent at
        // record granularity; refusing all further service would be worse.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks that the stack is wired so that `d` can do what it should (see [the wiring
    /// checks](self#wiring)).
    fn check_wiring(&self, d: &Datagram) -> Result<(), WiringError> {
        let message = match (&self.wiring, d.cookie) {
            (Wiring::OwnGate, None) => return Ok(()),
            (Wiring::OwnGate, Some(_)) => MARK_WITH_OWN_GATE,
            (Wiring::Behind(front), _) if !front.is_layered() => FRONT_NOT_LAYERED,
            (Wiring::Behind(front), Some(CookieVerified { gate, .. })) if gate != front.id() => MARK_OF_ANOTHER_GATE,
            (Wiring::Behind(_), Some(_)) => return Ok(()),
            (Wiring::Behind(_), None) => match FirstRecord::parse(&d.payload) {
                FirstRecord::ClientHello(_) => {
                    self.unverified_client_hellos.fetch_add(1, Ordering::Relaxed);
                    UNMARKED_BEHIND
                }
                FirstRecord::ClientHelloFragment | FirstRecord::Other => return Ok(()),
            },
        };
        if self.wiring_error_logged.swap(true, Ordering::Relaxed) {
            tracing::debug!(peer = %d.peer, "{message}");
        } else {
            tracing::error!(peer = %d.peer, "{message}");
        }
        Err(WiringError { message })
    }

    /// Checks the wiring, then runs the engine on one datagram. Returns what to send back and
    /// the application records to hand to the inner service.
    fn handle(&self, mut d: Datagram) -> Result<(Transmits, VecDeque<(Secured, Asker)>), WiringError> {
        self.check_wiring(&d)?;
        let mut app = VecDeque::new();
        let mut st = self.lock();
        let now = st.now(d.received_at);
        // The cookie round trip the layer in front measured feeds the new association's
        // retransmission policy; sessions a layer in front fetched resume it.
        let mut meta = DatagramMeta::new().with_sessions(std::mem::take(&mut d.sessions));
        meta.cookie_rtt = d.cookie.and_then(|c| c.rtt_sample);
        // One copy of the counters before and one after feed both loggers.
        let before = st.endpoint.stats();
        st.endpoint.handle_datagram_with(now, d.peer, &d.payload, meta);
        let after = st.endpoint.stats();
        st.limit_log.note(now, &after, Some(d.peer));
        self.log_refusals(&mut st, d.peer, &before, &after);
        let mut out = Transmits::new();
        while let Some(t) = st.endpoint.poll_transmit() {
            out.push(t);
        }
        while let Some((peer, event)) = st.endpoint.poll_event() {
            match event {
                Event::ApplicationData(payload) => {
                    match st.endpoint.connection(&peer).map(asker) {
                        Some(a) => app.push_back((
                            Secured {
                                peer,
                                identity: a.identity.clone(),
                                payload,
                                early_data: false,
                                handshake: Handshaken::complete(),
                                association: Association::from_client_random(a.client_random),
                            },
                            a,
                        )),
                        // Data and a fatal error (or close_notify) in one datagram: without the
                        // association the identity is unknown, so the data cannot be authorized.
                        None => tracing::debug!(%peer, "application data from a closed association dropped"),
                    }
                }
                Event::Connected { identity, suite, resumed } => {
                    let conn = st.endpoint.connection(&peer);
                    let version = conn.map(|c| c.version());
                    let without_ems = conn.is_some_and(|c| c.without_extended_master_secret());
                    crate::log::established(peer, &identity, suite, resumed, version, without_ems);
                    st.resolve_early(&peer, true);
                }
                Event::HandshakeFailed(f) => crate::log::handshake_failed(peer, &f),
                Event::Closed(reason) => {
                    tracing::debug!(peer = %DisplayAddr(peer), ?reason, "DTLS association closed");
                    st.resolve_early(&peer, false);
                }
                // 0-RTT data the DTLS layer accepted (RFC 8446 §4.2.10): marked as early data so
                // the CoAP policy can refuse what is not safe to replay.
                Event::EarlyData(payload) => match st.endpoint.connection(&peer).map(asker) {
                    Some(a) => {
                        let handshake = st.early_signal(peer, a.client_random);
                        let identity = a.identity.clone();
                        let association = Association::from_client_random(a.client_random);
                        app.push_back((
                            Secured { peer, identity, payload, early_data: true, handshake, association },
                            a,
                        ))
                    }
                    None => tracing::debug!(%peer, "early data from a closed association dropped"),
                },
                Event::SessionIssued(s) | Event::TicketIssued(s) => self.queue_issued(&mut st, peer, *s),
                // RFC 9146 §6: a CID record moved the association; what it carried comes with
                // the new address.
                Event::AddressChanged { old } => tracing::debug!(%old, new = %peer, "DTLS association moved"),
                _ => {}
            }
        }
        while let Some(t) = st.endpoint.poll_transmit() {
            out.push(t);
        }
        let issued = std::mem::take(&mut st.issued);
        let wake = match (st.endpoint.poll_timeout(), st.worker_deadline) {
            (Some(t), Some(w)) => t < w,
            (Some(_), None) => true,
            (None, _) => false,
        };
        drop(st);
        self.deliver_issued(issued);
        if wake {
            self.worker_wake.notify_one();
        }
        self.records_to_inner.fetch_add(app.len() as u64, Ordering::Relaxed);
        Ok((out, app))
    }

    /// Says what the endpoint refused while handling one datagram from `peer`, from its
    /// counters: limits reached at warn (rate-limited: a flood must not flood the log), a
    /// version mismatch its own gate answered at info.
    fn log_refusals(&self, st: &mut State, peer: SocketAddr, before: &EndpointStats, after: &EndpointStats) {
        let limited = after.dropped_limit - before.dropped_limit;
        if limited > 0 {
            crate::telemetry::dropped("limit", limited);
            self.limit_warning.warn(|suppressed| {
                tracing::warn!(
                    peer = %DisplayAddr(peer),
                    associations = st.endpoint.connection_count(),
                    suppressed,
                    "new DTLS handshake refused: the association or half-open handshake limit is reached \
                     (raise --max-peers / ServerConfig::max_connections or max_handshakes)"
                )
            });
        }
        let reassembly = (after.hello_fragments_refused - before.hello_fragments_refused)
            + (after.hellos_evicted - before.hellos_evicted);
        if reassembly > 0 {
            crate::telemetry::dropped("reassembly", reassembly);
            self.reassembly_warning.warn(|suppressed| {
                tracing::warn!(
                    peer = %DisplayAddr(peer),
                    suppressed,
                    "ClientHello fragments dropped: the reassembly limits are reached \
                     (ServerConfig::hello_reassembly)"
                )
            });
        }
        // The endpoint counts a ClientHello its own gate answered with an alert as an unknown
        // peer's datagram: only then are the gate's counters read.
        if after.dropped_unknown_peer > before.dropped_unknown_peer {
            let alerts = st.endpoint.gate().map_or((0, 0), gate_alerts);
            if alerts.0 > st.alerts_seen.0 {
                crate::log::hello_refused(peer, coaps_dtls::AlertDescription::ProtocolVersion);
            }
            if alerts.1 > st.alerts_seen.1 {
                crate::log::hello_refused(peer, coaps_dtls::AlertDescription::HandshakeFailure);
            }
            st.alerts_seen = alerts;
        }
    }

    /// Seals a response of the inner service for `peer`, if the association that asked is still
    /// the one at `peer`; an answer to early data goes out as 0.5-RTT data (see the module
    /// docs, "Early data").
    fn seal(&self, peer: SocketAddr, asked: &Asker, payload: &[u8], out: &mut Transmits) {
        let mut st = self.lock();
        let same = st
            .endpoint
            .connection(&peer)
            .is_some_and(|c| *c.client_random() == asked.client_random && *c.peer_identity() == asked.identity);
        if !same {
            self.responses_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "answer for a closed or replaced association dropped");
        } else if let Err(e) = st.endpoint.send(peer, payload) {
            self.responses_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, error = %e, "response not sent");
        }
        while let Some(t) = st.endpoint.poll_transmit() {
            out.push(t);
        }
    }

    /// Queues datagrams for the transport, dropping what does not fit.
    fn push_outbox(&self, st: &mut State, transmits: impl IntoIterator<Item = Transmit>) {
        let mut pushed = false;
        for t in transmits {
            if st.outbox.len() >= self.outbox_capacity {
                self.outbox_dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                st.outbox.push_back(t);
                pushed = true;
            }
        }
        if pushed {
            self.outbox_ready.notify_one();
        }
    }

    /// Moves the endpoint's pending datagrams to the outbox and logs its events.
    fn flush_to_outbox(&self, st: &mut State) {
        let mut ts = Vec::new();
        while let Some(t) = st.endpoint.poll_transmit() {
            ts.push(t);
        }
        self.push_outbox(st, ts);
        while let Some((peer, event)) = st.endpoint.poll_event() {
            // Only timers and local closes run here: no application data can appear.
            match event {
                Event::SessionIssued(s) | Event::TicketIssued(s) => self.queue_issued(st, peer, *s),
                Event::HandshakeFailed(f) => crate::log::handshake_failed(peer, &f),
                Event::Closed(reason) => {
                    tracing::debug!(peer = %DisplayAddr(peer), ?reason, "DTLS association closed (timer or local close)");
                    st.resolve_early(&peer, false);
                }
                event => tracing::debug!(%peer, ?event, "DTLS event (timer or local close)"),
            }
        }
    }

    /// Keeps an issued session for the sink (dropped when there is none).
    fn queue_issued(&self, st: &mut State, peer: SocketAddr, session: Session) {
        if self.on_session.is_some() {
            st.issued.push((peer, session));
        }
    }

    /// Runs the [`HandshakeBuilder::on_session`] sink; call without the lock held.
    fn deliver_issued(&self, issued: Vec<(SocketAddr, Session)>) {
        if let Some(sink) = &self.on_session {
            for (peer, session) in issued {
                (sink.0)(peer, session);
            }
        }
    }

    /// One round of the worker: timers, idle expiry. Returns when to run again.
    fn tick(&self, now: Instant) -> Instant {
        let mut st = self.lock();
        let now = st.now(now);
        st.endpoint.handle_timeout(now);
        let stats = st.endpoint.stats();
        st.limit_log.note(now, &stats, None);
        if now >= st.next_sweep {
            if let Some(idle_since) = now.checked_sub(self.idle_timeout) {
                let n = st.endpoint.expire_idle(idle_since);
                if n > 0 {
                    self.expired_idle.fetch_add(n as u64, Ordering::Relaxed);
                    tracing::debug!(expired = n, "idle associations forgotten");
                }
            }
            st.sweep_early();
            st.next_sweep = now + self.sweep_every;
        }
        self.flush_to_outbox(&mut st);
        let next = st.endpoint.poll_timeout().map_or(st.next_sweep, |t| t.min(st.next_sweep));
        st.worker_deadline = Some(next);
        let issued = std::mem::take(&mut st.issued);
        drop(st);
        self.deliver_issued(issued);
        next
    }
}

async fn run_worker(shared: Weak<Shared>, wake: Arc<Notify>) {
    loop {
        let next = match shared.upgrade() {
            Some(s) => s.tick(Instant::now()),
            None => return,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = wake.notified() => {}
        }
    }
}

/// The timer worker of a [`HandshakeLayer`], for callers that run it themselves
/// ([`HandshakeLayer::pair`]). It completes once the layer, its services and every
/// [`Associations`] handle are dropped.
pub struct Worker {
    future: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

impl Future for Worker {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.future.as_mut().poll(cx)
    }
}

/// Layer that terminates DTLS; see the [module docs](self).
///
/// Clones share one association table: every service built from this layer (or a clone)
/// serves the same peers.
#[derive(Clone)]
pub struct HandshakeLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for HandshakeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeLayer").field("associations", &self.associations().count()).finish_non_exhaustive()
    }
}

impl HandshakeLayer {
    /// A layer with default options and its own cookie gate (`builder(config).own_gate().build()`).
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self::builder(config).own_gate().build()
    }

    /// Options: where the cookie gate runs (required: [`HandshakeBuilder::behind`] or
    /// [`HandshakeBuilder::own_gate`]), limits, idle timeout, RNG.
    pub fn builder(config: Arc<ServerConfig>) -> HandshakeBuilder {
        HandshakeBuilder {
            config: (*config).clone(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            gate: wiring::Unwired,
            outbox_capacity: DEFAULT_OUTBOX_CAPACITY,
            rng: None,
            on_session: None,
        }
    }

    /// The handle on the association table: counts, out-of-band sending, shutdown. Give it
    /// to the transport with [`Server::out_of_band`](crate::transport::Server::out_of_band).
    pub fn associations(&self) -> Associations {
        Associations { shared: self.shared.clone() }
    }

    /// Wraps `inner` and returns the timer worker instead of spawning it (as
    /// `tower::buffer::Buffer::pair` does): the caller must run it. Services built afterwards
    /// by [`Layer::layer`] share this worker and spawn none.
    pub fn pair<S>(&self, inner: S) -> (Handshake<S>, Worker) {
        self.shared.worker_started.store(true, Ordering::SeqCst);
        (Handshake { inner, shared: self.shared.clone() }, self.worker())
    }

    fn worker(&self) -> Worker {
        let future = run_worker(Arc::downgrade(&self.shared), self.shared.worker_wake.clone());
        Worker { future: Box::pin(future) }
    }
}

impl<S> Layer<S> for HandshakeLayer {
    type Service = Handshake<S>;

    /// # Panics
    ///
    /// The first call spawns the timer worker with `tokio::spawn`, which panics outside a
    /// tokio runtime. Use [`HandshakeLayer::pair`] to run the worker yourself.
    fn layer(&self, inner: S) -> Handshake<S> {
        if !self.shared.worker_started.swap(true, Ordering::SeqCst) {
            tokio::spawn(self.worker());
        }
        Handshake { inner, shared: self.shared.clone() }
    }
}

/// A handle on the association table of a [`HandshakeLayer`] (cheap to clone).
#[derive(Clone)]
pub struct Associations {
    shared: Arc<Shared>,
}

impl fmt::Debug for Associations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Associations").field("count", &self.count()).finish_non_exhaustive()
    }
}

impl Associations {
    /// Number of associations, established or handshaking.
    pub fn count(&self) -> usize {
        self.shared.lock().endpoint.connection_count()
    }

    /// Number of half-open handshakes (admitted, not yet complete).
    pub fn half_open_count(&self) -> usize {
        self.shared.lock().endpoint.half_open_count()
    }

    /// Whether `peer` has an established association.
    pub fn is_established(&self, peer: &SocketAddr) -> bool {
        self.shared.lock().endpoint.connection(peer).is_some_and(|c| c.is_established())
    }

    /// The identity `peer` proved, if it has an established association.
    pub fn identity(&self, peer: &SocketAddr) -> Option<PeerIdentity> {
        let st = self.shared.lock();
        st.endpoint.connection(peer).filter(|c| c.is_established()).map(|c| c.peer_identity().clone())
    }

    /// Counters.
    pub fn stats(&self) -> HandshakeStats {
        let s = &self.shared;
        let (endpoint, own_gate) = {
            let st = s.lock();
            (st.endpoint.stats(), st.endpoint.gate().map(|g| g.stats().into()))
        };
        HandshakeStats {
            endpoint,
            cookie: match s.wiring {
                Wiring::OwnGate => own_gate,
                Wiring::Behind(_) => None,
            },
            unverified_client_hellos: s.unverified_client_hellos.load(Ordering::Relaxed),
            records_to_inner: s.records_to_inner.load(Ordering::Relaxed),
            responses_dropped: s.responses_dropped.load(Ordering::Relaxed),
            expired_idle: s.expired_idle.load(Ordering::Relaxed),
            outbox_dropped: s.outbox_dropped.load(Ordering::Relaxed),
        }
    }

    /// Seals `data` for an established `peer` on the server's initiative (e.g. a CoAP
    /// notification); the record goes out through the outbox.
    pub fn send(&self, peer: SocketAddr, data: &[u8]) -> Result<(), UsageError> {
        let mut st = self.shared.lock();
        st.endpoint.send(peer, data)?;
        self.shared.flush_to_outbox(&mut st);
        Ok(())
    }

    /// Sends close_notify to `peer` (through the outbox) and forgets the association.
    pub fn close(&self, peer: SocketAddr) {
        let mut st = self.shared.lock();
        st.endpoint.close(peer);
        self.shared.flush_to_outbox(&mut st);
    }

    /// Closes every association and returns everything still to send: the close_notify
    /// alerts (RFC 5246 §7.2.1) and whatever was waiting in the outbox. The transport's
    /// graceful shutdown calls this.
    pub fn close_all(&self) -> Transmits {
        let mut st = self.shared.lock();
        let mut out: Transmits = st.outbox.drain(..).collect();
        st.endpoint.close_all();
        while let Some(t) = st.endpoint.poll_transmit() {
            out.push(t);
        }
        while st.endpoint.poll_event().is_some() {}
        out
    }

    /// The next out-of-band datagram, without waiting.
    pub fn try_next_transmit(&self) -> Option<Transmit> {
        self.shared.lock().outbox.pop_front()
    }

    /// Waits for the next out-of-band datagram (timer retransmissions, alerts, server-initiated
    /// records). Meant for one consumer: the transport.
    pub async fn next_transmit(&self) -> Transmit {
        loop {
            if let Some(t) = self.try_next_transmit() {
                return t;
            }
            // `notify_one` stores a permit when nobody waits, so a push between the check
            // above and this await is not missed.
            self.shared.outbox_ready.notified().await;
        }
    }
}

/// The service built by [`HandshakeLayer`].
///
/// It is always ready: handshakes never wait on the application. The inner service's
/// readiness is awaited inside the response future, before each application record.
pub struct Handshake<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for Handshake<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), shared: self.shared.clone() }
    }
}

impl<S: fmt::Debug> fmt::Debug for Handshake<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S> Handshake<S> {
    /// The handle on the association table.
    pub fn associations(&self) -> Associations {
        Associations { shared: self.shared.clone() }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S> Service<Datagram> for Handshake<S>
where
    S: Service<Secured, Response = Option<Vec<u8>>> + Clone,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Transmits;
    type Error = BoxError;
    type Future = ResponseFuture<S, S::Future>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, d: Datagram) -> Self::Future {
        let (out, pending) = match self.shared.handle(d) {
            Ok(handled) => handled,
            Err(e) => return ResponseFuture { kind: Kind::Failed { error: Some(e) } },
        };
        if pending.is_empty() {
            return ResponseFuture { kind: Kind::Ready { transmits: Some(out) } };
        }
        ResponseFuture {
            kind: Kind::Serving {
                call: Call::Idle,
                job: Job { service: self.inner.clone(), shared: self.shared.clone(), pending, out },
            },
        }
    }
}

struct Job<S> {
    service: S,
    shared: Arc<Shared>,
    pending: VecDeque<(Secured, Asker)>,
    out: Transmits,
}

pin_project! {
    /// Response future of [`Handshake`]: ready at once for handshake traffic (no box), or
    /// serving the datagram's application records one after the other.
    pub struct ResponseFuture<S, F> {
        #[pin]
        kind: Kind<S, F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, F> {
        Ready { transmits: Option<Transmits> },
        Failed { error: Option<WiringError> },
        Serving { #[pin] call: Call<F>, job: Job<S> },
    }
}

pin_project! {
    #[project = CallProj]
    enum Call<F> {
        Idle,
        Running { #[pin] future: F, peer: SocketAddr, asked: Asker },
        // 0-RTT data: boxed so that, when its answer is not ready at once (an unsafe request
        // deferred until the client's Finished, see `Handshaken`), it can move to a task of
        // its own instead of holding back the server's flight, which the client needs before
        // it can send that Finished.
        Early { future: Option<Pin<Box<F>>>, peer: SocketAddr, asked: Asker },
    }
}

impl<S, F> fmt::Debug for ResponseFuture<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Ready { .. } => f.write_str("ResponseFuture::Ready"),
            Kind::Failed { error } => f.debug_struct("ResponseFuture::Failed").field("error", error).finish(),
            Kind::Serving { job, .. } => {
                f.debug_struct("ResponseFuture::Serving").field("pending", &job.pending.len()).finish_non_exhaustive()
            }
        }
    }
}

impl<S, F, E> Future for ResponseFuture<S, F>
where
    S: Service<Secured, Response = Option<Vec<u8>>, Future = F, Error = E>,
    F: Future<Output = Result<Option<Vec<u8>>, E>> + Send + 'static,
    E: Into<BoxError>,
{
    type Output = Result<Transmits, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (mut call, job) = match self.project().kind.project() {
            KindProj::Ready { transmits } => return Poll::Ready(Ok(transmits.take().unwrap_or_default())),
            KindProj::Failed { error } => {
                let error = error.take().unwrap_or(WiringError { message: "coaps-tower: response polled again" });
                return Poll::Ready(Err(error.into()));
            }
            KindProj::Serving { call, job } => (call, job),
        };
        loop {
            let result = match call.as_mut().project() {
                CallProj::Running { future, peer, asked } => {
                    let peer = *peer;
                    match ready!(future.poll(cx)) {
                        Ok(response) => {
                            if let Some(payload) = response {
                                job.shared.seal(peer, asked, &payload, &mut job.out);
                            }
                            Ok(())
                        }
                        Err(e) => Err(e.into()),
                    }
                }
                CallProj::Early { future, peer, asked } => {
                    let peer = *peer;
                    let Some(mut fut) = future.take() else { return Poll::Ready(Ok(std::mem::take(&mut job.out))) };
                    match fut.as_mut().poll(cx) {
                        Poll::Ready(Ok(response)) => {
                            if let Some(payload) = response {
                                job.shared.seal(peer, asked, &payload, &mut job.out);
                            }
                            Ok(())
                        }
                        Poll::Ready(Err(e)) => Err(e.into()),
                        Poll::Pending => match tokio::runtime::Handle::try_current() {
                            Ok(rt) => {
                                let shared = job.shared.clone();
                                let asked = asked.clone();
                                rt.spawn(async move {
                                    if let Ok(Some(payload)) = fut.await {
                                        let mut out = Transmits::new();
                                        shared.seal(peer, &asked, &payload, &mut out);
                                        let mut st = shared.lock();
                                        shared.push_outbox(&mut st, out);
                                    }
                                });
                                Ok(())
                            }
                            // No runtime to hand it to: wait here, as for 1-RTT data.
                            Err(_) => {
                                *future = Some(fut);
                                return Poll::Pending;
                            }
                        },
                    }
                }
                CallProj::Idle => {
                    if job.pending.is_empty() {
                        return Poll::Ready(Ok(std::mem::take(&mut job.out)));
                    }
                    match ready!(job.service.poll_ready(cx)) {
                        Ok(()) => {
                            if let Some((record, asked)) = job.pending.pop_front() {
                                let peer = record.peer;
                                let early = record.early_data;
                                let future = job.service.call(record);
                                if early {
                                    call.set(Call::Early { future: Some(Box::pin(future)), peer, asked });
                                } else {
                                    call.set(Call::Running { future, peer, asked });
                                }
                            }
                            continue;
                        }
                        Err(e) => Err(e.into()),
                    }
                }
            };
            match result {
                Ok(()) => call.set(Call::Idle),
                Err(e) => {
                    // The datagram's handshake output must not be lost with the error.
                    let out = std::mem::take(&mut job.out);
                    let mut st = job.shared.lock();
                    job.shared.push_outbox(&mut st, out);
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coaps_dtls::{ClientConfig, Psk, StaticPsks};

    fn psk() -> Psk {
        Psk::new("unit", b"0123456789abcdef".to_vec()).unwrap()
    }

    fn server_config() -> Arc<ServerConfig> {
        Arc::new(ServerConfig { psks: Some(Arc::new(StaticPsks(vec![psk()]))), ..ServerConfig::default() })
    }

    #[derive(Clone)]
    struct Echo;
    impl Service<Secured> for Echo {
        type Response = Option<Vec<u8>>;
        type Error = BoxError;
        type Future = std::future::Ready<Result<Option<Vec<u8>>, BoxError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, s: Secured) -> Self::Future {
            std::future::ready(Ok(Some(s.payload)))
        }
    }

    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f)
    }

    async fn call(svc: &mut Handshake<Echo>, peer: SocketAddr, payload: Vec<u8>) -> Transmits {
        std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
        svc.call(Datagram::new(peer, payload)).await.unwrap()
    }

    /// Runs a client endpoint against the service until it is connected and got an echo.
    async fn handshake_and_echo(svc: &mut Handshake<Echo>, client_addr: SocketAddr) -> (Vec<u8>, Endpoint) {
        let server_addr: SocketAddr = "192.0.2.1:5684".parse().unwrap();
        let mut client = Endpoint::client(SeededRng::from_seed_u64(3));
        let config = Arc::new(ClientConfig { psk: Some(psk()), ..ClientConfig::default() });
        client.connect(Instant::now(), server_addr, config, "localhost", None).unwrap();
        for _ in 0..10 {
            while let Some(t) = client.poll_transmit() {
                for a in call(svc, client_addr, t.payload).await {
                    client.handle_datagram(Instant::now(), server_addr, &a.payload);
                }
            }
            while let Some((_, ev)) = client.poll_event() {
                match ev {
                    Event::Connected { .. } => client.send(server_addr, b"ping").unwrap(),
                    Event::ApplicationData(d) => return (d, client),
                    _ => {}
                }
            }
        }
        panic!("no echo");
    }

    #[test]
    fn internal_gate_then_handshake_then_echo() {
        run(async {
            let layer = HandshakeLayer::builder(server_config()).rng(SeededRng::from_seed_u64(1)).own_gate().build();
            let (mut svc, _worker) = layer.pair(Echo);
            let peer: SocketAddr = "192.0.2.2:1000".parse().unwrap();
            assert_eq!(handshake_and_echo(&mut svc, peer).await.0, b"ping");
            let a = layer.associations();
            assert_eq!(a.count(), 1);
            assert!(a.is_established(&peer));
            assert_eq!(a.identity(&peer), Some(PeerIdentity::Psk(b"unit".to_vec())));
            let s = a.stats();
            assert_eq!(s.cookie.unwrap().hello_verify_requests, 1);
            assert_eq!(s.records_to_inner, 1);
            // Graceful shutdown: one close_notify (an encrypted alert record) for the peer.
            let bye = a.close_all();
            assert_eq!(bye.len(), 1);
            assert_eq!(bye[0].destination, peer);
            assert_eq!(bye[0].payload[0], 21, "alert record");
            assert_eq!(a.count(), 0);
        });
    }

    /// `call`, returning the service's error as well.
    async fn try_call<S: Service<Datagram, Response = Transmits, Error = BoxError>>(
        svc: &mut S,
        peer: SocketAddr,
        payload: Vec<u8>,
    ) -> Result<Transmits, BoxError> {
        std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
        svc.call(Datagram::new(peer, payload)).await
    }

    /// A handshake layer `.behind(&cookies)` whose cookie layer wraps no service fails loudly on
    /// its first datagram, with the fix in the message, and creates no state.
    #[test]
    fn behind_a_cookie_layer_that_wraps_nothing_fails_loudly() {
        run(async {
            let cookies = crate::cookie::CookieLayer::for_server(&server_config());
            let layer = HandshakeLayer::builder(server_config()).behind(&cookies).build();
            let (mut svc, _worker) = layer.pair(Echo);
            let peer: SocketAddr = "10.0.0.1:2000".parse().unwrap();
            let e = try_call(&mut svc, peer, crate::cookie::example_client_hello()).await.unwrap_err();
            assert!(e.is::<WiringError>(), "{e}");
            assert!(e.to_string().contains("ServiceBuilder::new().layer(cookie_layer).layer(handshake_layer)"), "{e}");
            assert_eq!(layer.associations().count(), 0);
            assert_eq!(layer.associations().stats().endpoint.datagrams_received, 0);
        });
    }

    /// Behind a cookie layer that is not in front (it wraps something else), every unmarked
    /// ClientHello is refused loudly, counted, and creates no state.
    #[test]
    fn behind_a_cookie_layer_not_in_front_refuses_unmarked_client_hellos_loudly() {
        run(async {
            let cookies = crate::cookie::CookieLayer::for_server(&server_config());
            let _elsewhere = tower_layer::Layer::layer(&cookies, Echo);
            let layer = HandshakeLayer::builder(server_config()).behind(&cookies).build();
            let (mut svc, _worker) = layer.pair(Echo);
            for port in 0..50u16 {
                let peer = SocketAddr::from(([10, 0, 0, 1], 2000 + port));
                let e = try_call(&mut svc, peer, crate::cookie::example_client_hello()).await.unwrap_err();
                assert!(e.to_string().contains("is not in front of it"), "{e}");
            }
            let s = layer.associations().stats();
            assert_eq!(layer.associations().count(), 0);
            assert_eq!(s.unverified_client_hellos, 50);
            assert_eq!(s.endpoint.connections_created, 0);
            assert!(s.cookie.is_none());
        });
    }

    /// A cookie layer in front of a handshake layer with its own gate (the `.behind()` that was
    /// forgotten): the first marked ClientHello fails loudly, naming the fix, where it used to
    /// draw a second HelloRetryRequest that left DTLS 1.3 clients waiting until they timed out.
    #[test]
    fn cookie_layer_in_front_of_an_own_gate_fails_loudly() {
        run(async {
            let cookies = crate::cookie::CookieLayer::for_server(&server_config());
            let layer = HandshakeLayer::builder(server_config()).own_gate().build();
            let (inner, _worker) = layer.pair(Echo);
            let mut stack = tower_layer::Layer::layer(&cookies, inner);
            let server_addr: SocketAddr = "192.0.2.1:5684".parse().unwrap();
            let peer: SocketAddr = "192.0.2.2:1000".parse().unwrap();
            let mut client = Endpoint::client(SeededRng::from_seed_u64(3));
            let config = Arc::new(ClientConfig {
                psk: Some(psk()),
                version: coaps_dtls::DtlsVersion::Dtls13,
                ..ClientConfig::default()
            });
            client.connect(Instant::now(), server_addr, config, "localhost", None).unwrap();
            let ch1 = client.poll_transmit().unwrap().payload;
            let hrr = try_call(&mut stack, peer, ch1).await.unwrap();
            client.handle_datagram(Instant::now(), server_addr, &hrr[0].payload);
            let ch2 = client.poll_transmit().unwrap().payload;
            let e = try_call(&mut stack, peer, ch2).await.unwrap_err();
            assert!(e.is::<WiringError>(), "{e}");
            assert!(e.to_string().contains("HandshakeLayer::builder(..).behind(&cookie_layer)"), "{e}");
            assert_eq!(layer.associations().count(), 0);
        });
    }

    /// A handshake layer `.behind()` one cookie layer, with another cookie layer in front: the
    /// marks are not its gate's, so it fails loudly.
    #[test]
    fn marks_of_another_cookie_layer_fail_loudly() {
        run(async {
            let ours = crate::cookie::CookieLayer::for_server(&server_config());
            let theirs = crate::cookie::CookieLayer::for_server(&server_config());
            let _ = tower_layer::Layer::layer(&ours, Echo);
            let layer = HandshakeLayer::builder(server_config()).behind(&ours).build();
            let (inner, _worker) = layer.pair(Echo);
            let mut stack = tower_layer::Layer::layer(&theirs, inner);
            let peer: SocketAddr = "192.0.2.2:1000".parse().unwrap();
            let random = [5u8; 32];
            let hvr = try_call(&mut stack, peer, crate::cookie::example_client_hello_with(&random, &[])).await.unwrap();
            let cookie = crate::cookie::hello_verify_request_cookie(&hvr[0].payload).unwrap().to_vec();
            let ch2 = crate::cookie::example_client_hello_with(&random, &cookie);
            let e = try_call(&mut stack, peer, ch2).await.unwrap_err();
            assert!(e.to_string().contains("another CookieLayer"), "{e}");
            assert_eq!(layer.associations().count(), 0);
        });
    }

    #[test]
    fn association_limit_refuses_new_peers_not_established_ones() {
        run(async {
            let layer = HandshakeLayer::builder(server_config()).max_associations(1).own_gate().build();
            let (mut svc, _worker) = layer.pair(Echo);
            let first: SocketAddr = "192.0.2.5:1000".parse().unwrap();
            let (_, mut first_client) = handshake_and_echo(&mut svc, first).await;
            // A second peer gets its cookie (stateless) but no association.
            let server_addr: SocketAddr = "192.0.2.1:5684".parse().unwrap();
            let second: SocketAddr = "192.0.2.6:1000".parse().unwrap();
            let mut client = Endpoint::client(SeededRng::from_seed_u64(9));
            let config = Arc::new(ClientConfig { psk: Some(psk()), ..ClientConfig::default() });
            client.connect(Instant::now(), server_addr, config, "localhost", None).unwrap();
            for _ in 0..3 {
                while let Some(t) = client.poll_transmit() {
                    for a in call(&mut svc, second, t.payload).await {
                        client.handle_datagram(Instant::now(), server_addr, &a.payload);
                    }
                }
            }
            let a = layer.associations();
            assert_eq!(a.count(), 1);
            assert!(a.stats().endpoint.dropped_limit >= 1);
            // The established peer is still served.
            assert_eq!(echo_again(&mut svc, &mut first_client, first, b"still here").await, b"still here");
        });
    }

    /// One echo over an established client endpoint.
    async fn echo_again(svc: &mut Handshake<Echo>, client: &mut Endpoint, peer: SocketAddr, msg: &[u8]) -> Vec<u8> {
        let server_addr: SocketAddr = "192.0.2.1:5684".parse().unwrap();
        client.send(server_addr, msg).unwrap();
        while let Some(t) = client.poll_transmit() {
            for a in call(svc, peer, t.payload).await {
                client.handle_datagram(Instant::now(), server_addr, &a.payload);
            }
        }
        while let Some((_, ev)) = client.poll_event() {
            if let Event::ApplicationData(d) = ev {
                return d;
            }
        }
        panic!("no echo");
    }

    #[test]
    fn worker_retransmits_a_lost_flight_through_the_outbox() {
        run(async {
            let layer = HandshakeLayer::builder(server_config()).own_gate().build();
            let (mut svc, worker) = layer.pair(Echo);
            tokio::spawn(worker);
            let associations = layer.associations();
            let server_addr: SocketAddr = "192.0.2.1:5684".parse().unwrap();
            let peer: SocketAddr = "192.0.2.7:1000".parse().unwrap();
            let mut client = Endpoint::client(SeededRng::from_seed_u64(11));
            let config = Arc::new(ClientConfig { psk: Some(psk()), ..ClientConfig::default() });
            client.connect(Instant::now(), server_addr, config, "localhost", None).unwrap();
            // ClientHello -> HelloVerifyRequest -> ClientHello with cookie -> server flight,
            // which the "network" loses.
            let ch1 = client.poll_transmit().unwrap();
            for a in call(&mut svc, peer, ch1.payload).await {
                client.handle_datagram(Instant::now(), server_addr, &a.payload);
            }
            let ch2 = client.poll_transmit().unwrap();
            let lost = call(&mut svc, peer, ch2.payload).await;
            assert!(!lost.is_empty());
            assert_eq!(associations.count(), 1);
            assert_eq!(associations.half_open_count(), 1);
            assert_eq!(associations.stats().endpoint.retransmissions_dtls12, 0);
            // The worker's retransmission timer fires (RFC 6347 §4.2.4.1, initial 1 s) and the
            // flight comes out of band.
            let again = tokio::time::timeout(Duration::from_secs(5), associations.next_transmit()).await.unwrap();
            assert_eq!(again.destination, peer);
            assert_eq!(again.payload[0], 22, "a handshake record");
            client.handle_datagram(Instant::now(), server_addr, &again.payload);
            while let Some(t) = associations.try_next_transmit() {
                client.handle_datagram(Instant::now(), server_addr, &t.payload);
            }
            // The client completes the handshake on the retransmitted flight.
            while let Some(t) = client.poll_transmit() {
                for a in call(&mut svc, peer, t.payload).await {
                    client.handle_datagram(Instant::now(), server_addr, &a.payload);
                }
            }
            assert!(associations.is_established(&peer));
            assert_eq!(associations.half_open_count(), 0);
            // The endpoint's totals (the `coaps_retransmissions_total` metric) saw the timer.
            let e = associations.stats().endpoint;
            assert!(e.retransmissions_dtls12 >= 1, "{e:?}");
            assert_eq!(e.retransmissions_dtls13, 0);
            // Summing two stacks' counters (one per thread) adds every field.
            let two: HandshakeStats = [associations.stats(), associations.stats()].into_iter().sum();
            assert_eq!(two.endpoint.retransmissions_dtls12, 2 * e.retransmissions_dtls12);
            assert_eq!(two.endpoint.connections_created, 2);
            assert_eq!(two.cookie.map(|c| c.hello_verify_requests), Some(2));
        });
    }

    #[test]
    fn worker_expires_idle_associations() {
        run(async {
            let layer =
                HandshakeLayer::builder(server_config()).idle_timeout(Duration::from_millis(200)).own_gate().build();
            let (mut svc, worker) = layer.pair(Echo);
            tokio::spawn(worker);
            let peer: SocketAddr = "192.0.2.3:1000".parse().unwrap();
            handshake_and_echo(&mut svc, peer).await;
            assert_eq!(layer.associations().count(), 1);
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(layer.associations().count(), 0);
            assert_eq!(layer.associations().stats().expired_idle, 1);
        });
    }
}
