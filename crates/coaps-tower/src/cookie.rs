//! The stateless cookie gate (RFC 6347 §4.2.1, RFC 9147 §5.1) as a layer of its own.
//!
//! [`CookieLayer`] sits in front of any datagram-level service
//! (`Service<Datagram, Response = Transmits>`). For each datagram:
//!
//! * an epoch-0 ClientHello **without a valid cookie** is answered by the layer alone, from
//!   the datagram only (no state is kept), and the inner service is **never called**: a
//!   spoofed source address costs the server one MAC and one small datagram, never an
//!   association (DESIGN: "no state before proof"). A DTLS 1.2 ClientHello gets a
//!   HelloVerifyRequest; a ClientHello offering DTLS 1.3 (supported_versions, RFC 9147 §5.3),
//!   when the server accepts 1.3, gets a stateless HelloRetryRequest whose encrypted cookie
//!   carries the hash of that ClientHello, the chosen suite and key-share group, bound to the
//!   client's address and the issue time (never a HelloVerifyRequest in 1.3);
//! * a ClientHello whose cookie verifies (either version) passes to the inner service with
//!   [`Datagram::cookie`] set to [`CookieVerified`] (the cookie's age is an RTT sample);
//! * a DTLS 1.3 ClientHello that resumes one of the server's tickets with 0-RTT early data
//!   from the address the ticket was issued to passes marked without a cookie exchange
//!   (`rtt_sample: None`, counted in [`CookieStats::cookie_exempt`]) when the server allows it
//!   ([`coaps_dtls::EarlyDataConfig::skip_cookie_on_resumption`], RFC 9147 §5.1): a
//!   HelloRetryRequest would forbid the early data (RFC 8446 §4.2.10). With a
//!   [`ResumptionLayer`](crate::resumption::ResumptionLayer) behind (its store holds the
//!   tickets), every cookie-less DTLS 1.3 ClientHello that offers a PSK and may skip the cookie
//!   ([`Gate::may_skip_cookie`]) goes on with that mark undecided: the resumption layer fetches
//!   the ticket, asks this gate again and answers with its HelloRetryRequest if the exemption
//!   does not hold. Each such hello costs a store look-up before its address is proven, so
//!   their rate is bounded: at most [`CookieLayer::psk_lookup_budget`] per second (default
//!   [`DEFAULT_PSK_LOOKUPS_PER_SECOND`]); beyond it a hello meets the gate like any other
//!   cookie-less one (a stateless HelloRetryRequest, counted in
//!   [`CookieStats::psk_lookups_over_budget`]), and an honest client resumes after the cookie
//!   round trip;
//! * everything else (records of established associations, alerts, fragments) passes through
//!   untouched.
//!
//! The 1.2 cookie is the one of [`coaps_dtls::gate::cookie`]: `HMAC(secret, client address and port,
//! ClientHello parameters)` with a secret that rotates every
//! [`CookieConfig::rotate_every`]; cookies made with the previous secret stay valid for one
//! more period. The HelloVerifyRequest is never larger than the ClientHello that caused it,
//! and the HelloRetryRequest never larger than three times it (RFC 9147 §5.1), so the gate
//! cannot be used for amplification.
//!
//! The decision is [`coaps_dtls::gate::Gate`]'s, the same gate the engine's endpoint runs for its
//! own cookie exchange: the layer adds only the locks around its secret rotation and the
//! Tower plumbing. Neither allocates for an answer: its bytes are written into the received
//! datagram's own buffer (which the layer owns by then) and travel in [`Transmits`]' inline
//! slot (`tests/cookie_layer_allocations.rs` counts).
//!
//! # Version awareness and the shared 1.3 secrets
//!
//! [`CookieLayer::for_server`] builds the gate from the server's [`ServerConfig`]: 1.3 when
//! `dtls13` is on (with the suites it accepts), 1.2 when `dtls12` is on (a 1.3-only server
//! drops 1.2 ClientHellos, as its endpoint would), cookie timing from
//! [`ServerConfig::cookie`]. [`CookieLayer::new`] (timing only) knows no server and
//! answers every ClientHello, 1.3 ones included, with a HelloVerifyRequest: fine for a
//! 1.2-only stack, but a DTLS 1.3 client cannot use it.
//!
//! The server behind the gate must open the 1.3 cookie of the second ClientHello to rebuild
//! its transcript (`message_hash(ClientHello1) || HelloRetryRequest`, RFC 8446 §4.4.1), so
//! it needs the gate's secrets: build
//! [`HandshakeLayer`](crate::handshake::HandshakeLayer) with
//! [`HandshakeBuilder::behind(&cookie_layer)`](crate::handshake::HandshakeBuilder::behind),
//! which shares them (one [`SharedCookieKeys`] set: every clone of the layer and the
//! handshake layer's endpoint see the same current and previous secret; whoever first sees a
//! rotation due performs it). Every mark carries the identity of the gate that made it, so a
//! stack wired any other way fails loudly instead of timing DTLS 1.3 clients out: see
//! [the handshake layer's wiring checks](crate::handshake#wiring).
//!
//! # Example
//!
//! ```
//! use coaps_tower::cookie::CookieLayer;
//! use coaps_tower::{BoxError, Datagram, Transmits};
//! use coaps_dtls::CookieConfig;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let cookies = CookieLayer::new(CookieConfig::default()); // DTLS 1.2 only
//! let stats = cookies.clone();
//! let service = ServiceBuilder::new()
//!     .layer(cookies)
//!     .service(service_fn(|d: Datagram| async move {
//!         // Only proven ClientHellos and non-ClientHello records get here.
//!         Ok::<Transmits, BoxError>(Transmits::new())
//!     }));
//!
//! // A first ClientHello (no cookie), as a DTLS 1.2 client sends it.
//! let client_hello = coaps_tower::cookie::example_client_hello();
//! let peer = "127.0.0.1:40000".parse()?;
//! let answer = service.oneshot(Datagram::new(peer, client_hello)).await?;
//! assert_eq!(answer.len(), 1); // the HelloVerifyRequest, sent back to `peer`
//! assert_eq!(answer[0].destination, peer);
//! assert_eq!(answer[0].payload[13], 3); // handshake type hello_verify_request
//! assert_eq!(stats.stats().hello_verify_requests, 1);
//! # Ok(())
//! # }
//! ```

use crate::types::{CookieVerified, Datagram, Transmit, Transmits};
use coaps_dtls::CookieConfig;
use coaps_dtls::ServerConfig;
use coaps_dtls::crypto::rustcrypto::RustCrypto;
use coaps_dtls::crypto::{CryptoProvider, SeededRng};
use coaps_dtls::gate::cookie::SharedCookieKeys;
use coaps_dtls::gate::{Gate, GateId, GateStats, MAX_ANSWER_LEN, Proof, Verdict};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower_layer::Layer;
use tower_service::Service;

/// Counters of a cookie gate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CookieStats {
    /// HelloVerifyRequests sent (DTLS 1.2 ClientHellos without a valid cookie).
    pub hello_verify_requests: u64,
    /// Stateless HelloRetryRequests sent (DTLS 1.3 ClientHellos without a valid cookie).
    pub hello_retry_requests: u64,
    /// ClientHellos whose cookie verified and that were passed on, marked.
    pub cookies_verified: u64,
    /// DTLS 1.3 ClientHellos passed on, marked, without a cookie exchange: 0-RTT resumptions
    /// from the address their ticket was issued to (RFC 9147 §5.1,
    /// [`EarlyDataConfig::skip_cookie_on_resumption`](coaps_dtls::EarlyDataConfig::skip_cookie_on_resumption)).
    pub cookie_exempt: u64,
    /// Copies of an exempt 0-RTT ClientHello (same address, same random) passed on again, to
    /// reach the association the first one created (network duplicates or replays): counted
    /// here, not in `cookie_exempt`.
    pub cookie_exempt_repeats: u64,
    /// ClientHellos that carried a cookie that did not verify (stale, forged, for another
    /// address or other parameters). Each also got a fresh HelloVerifyRequest or
    /// HelloRetryRequest.
    pub cookies_rejected: u64,
    /// ClientHellos dropped: unparsable, a version the server does not accept, or an answer
    /// would have broken the amplification limit (RFC 6347 §4.2.1, RFC 9147 §5.1).
    pub dropped: u64,
    /// Fragmented ClientHellos reassembled in the bounded area and then gated like whole ones
    /// ([`ServerConfig::hello_reassembly`]; only gates built with [`CookieLayer::for_server`]).
    pub hellos_reassembled: u64,
    /// ClientHello fragments refused by that area (inconsistent, or beyond its limits).
    pub hello_fragments_refused: u64,
    /// Cookie-less DTLS 1.3 ClientHellos offering a PSK that would have gone on to the
    /// resumption layer's store but arrived beyond [`CookieLayer::psk_lookup_budget`] in their
    /// second: each got the gate's answer instead (a HelloRetryRequest, counted there too).
    pub psk_lookups_over_budget: u64,
}

/// Totals over several stacks (e.g. one per thread, see [`crate::shard`]).
impl std::ops::AddAssign for CookieStats {
    fn add_assign(&mut self, o: Self) {
        // Destructured without `..`: a new counter must be added here too.
        let CookieStats {
            hello_verify_requests,
            hello_retry_requests,
            cookies_verified,
            cookie_exempt,
            cookie_exempt_repeats,
            cookies_rejected,
            dropped,
            hellos_reassembled,
            hello_fragments_refused,
            psk_lookups_over_budget,
        } = o;
        self.hello_verify_requests += hello_verify_requests;
        self.hello_retry_requests += hello_retry_requests;
        self.cookies_verified += cookies_verified;
        self.cookie_exempt += cookie_exempt;
        self.cookie_exempt_repeats += cookie_exempt_repeats;
        self.cookies_rejected += cookies_rejected;
        self.dropped += dropped;
        self.hellos_reassembled += hellos_reassembled;
        self.hello_fragments_refused += hello_fragments_refused;
        self.psk_lookups_over_budget += psk_lookups_over_budget;
    }
}

impl std::iter::Sum for CookieStats {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), |mut a, b| {
            a += b;
            a
        })
    }
}

impl From<GateStats> for CookieStats {
    fn from(s: GateStats) -> Self {
        Self {
            hello_verify_requests: s.hello_verify_requests,
            hello_retry_requests: s.hello_retry_requests,
            cookies_verified: s.cookies_verified,
            cookie_exempt: s.cookie_exempt,
            cookie_exempt_repeats: s.cookie_exempt_repeats,
            cookies_rejected: s.cookies_rejected,
            dropped: s.dropped,
            hellos_reassembled: s.hellos_reassembled,
            hello_fragments_refused: s.hello_fragments_refused,
            psk_lookups_over_budget: 0,
        }
    }
}

/// Default of [`CookieLayer::psk_lookup_budget`]: store look-ups per second for cookie-less
/// ClientHellos that offer a PSK (one look-up per hello: its up to four keys are read
/// concurrently under one timeout). A look-up takes well under a millisecond on moka or a nearby
/// Redis, so this keeps a flood of such hellos to a small share of one core and of the store,
/// while a busy server's honest 0-RTT resumptions rarely reach it (those beyond it still
/// resume, one cookie round trip later and without their early data).
pub const DEFAULT_PSK_LOOKUPS_PER_SECOND: u32 = 1000;

/// The per-second budget of store look-ups for unproven PSK hellos: fixed one-second
/// windows, so no window of the gate's clock holds more than the budget.
#[derive(Debug)]
struct LookupBudget {
    per_second: AtomicU32,
    /// Start of the current window and the look-ups granted in it.
    window: Mutex<(Instant, u32)>,
    over: AtomicU64,
}

impl LookupBudget {
    fn new(now: Instant) -> Self {
        Self {
            per_second: AtomicU32::new(DEFAULT_PSK_LOOKUPS_PER_SECOND),
            window: Mutex::new((now, 0)),
            over: AtomicU64::new(0),
        }
    }

    /// Whether one more look-up fits in the window of `now` (granting it if so).
    fn take(&self, now: Instant) -> bool {
        let limit = self.per_second.load(Ordering::Relaxed);
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if now.saturating_duration_since(w.0) >= Duration::from_secs(1) {
            *w = (now, 0);
        }
        if w.1 < limit {
            w.1 += 1;
            return true;
        }
        drop(w);
        self.over.fetch_add(1, Ordering::Relaxed);
        false
    }
}

/// The gate a [`CookieLayer`] and all its clones share, with the randomness for its secret
/// rotation and whether the layer wraps a service yet.
pub(crate) struct SharedGate {
    gate: Gate,
    rng: Mutex<SeededRng>,
    /// Set once [`Layer::layer`] has run: a handshake layer `.behind()` this layer checks it
    /// on first use, so a cookie layer left out of the stack fails loudly.
    layered: AtomicBool,
    /// A resumption layer behind this one keeps sessions the gate cannot see: it decides the
    /// cookie exemption of a resumption (RFC 9147 §5.1) once it has fetched the ticket.
    sessions_behind: AtomicBool,
    /// Bounds the rate of those look-ups: each costs a store round trip before the client's
    /// address is proven.
    budget: LookupBudget,
}

impl fmt::Debug for SharedGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedGate").field("gate", &self.gate).finish_non_exhaustive()
    }
}

impl SharedGate {
    fn new(gate: impl FnOnce(Instant, &mut SeededRng) -> Gate, mut rng: SeededRng) -> Self {
        let now = Instant::now();
        let gate = gate(now, &mut rng);
        Self {
            gate,
            rng: Mutex::new(rng),
            layered: AtomicBool::new(false),
            sessions_behind: AtomicBool::new(false),
            budget: LookupBudget::new(now),
        }
    }

    pub(crate) fn id(&self) -> GateId {
        self.gate.id()
    }

    pub(crate) fn gate_keys13(&self) -> SharedCookieKeys {
        self.gate.keys13().clone()
    }

    pub(crate) fn is_layered(&self) -> bool {
        self.layered.load(Ordering::Acquire)
    }

    fn check(&self, now: Instant, peer: SocketAddr, datagram: &[u8], out: &mut [u8]) -> Verdict {
        // A poisoned lock only means another thread panicked mid-draw: the RNG is intact.
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        self.gate.check(now, peer, datagram, out, &mut *rng)
    }

    /// The gate's decision on a ClientHello with the sessions a layer behind fetched for it
    /// ([`Gate::check_hello_with`]); what is not a whole ClientHello is
    /// [`Verdict::NotClientHello`].
    pub(crate) fn check_with(
        &self,
        now: Instant,
        peer: SocketAddr,
        datagram: &[u8],
        fetched: &[coaps_dtls::FetchedSession],
        out: &mut [u8],
    ) -> Verdict {
        let coaps_dtls::gate::FirstRecord::ClientHello(hello) = coaps_dtls::gate::FirstRecord::parse(datagram) else {
            return Verdict::NotClientHello;
        };
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        self.gate.check_hello_with(now, peer, &hello, fetched, out, &mut *rng)
    }

    /// A resumption layer behind decides the cookie exemption of resumptions it can fetch.
    pub(crate) fn set_sessions_behind(&self) {
        self.sessions_behind.store(true, Ordering::Release);
    }

    /// Whether a cookie-less ClientHello should go on undecided, for the resumption layer
    /// behind to decide its cookie exemption with the ticket it fetches.
    /// Beyond the look-up budget of `now`'s second it does not: the gate answers it alone.
    fn defer_exemption(&self, now: Instant, datagram: &[u8]) -> bool {
        self.sessions_behind.load(Ordering::Acquire) && self.gate.may_skip_cookie(datagram) && self.budget.take(now)
    }

    fn stats(&self) -> CookieStats {
        CookieStats { psk_lookups_over_budget: self.budget.over.load(Ordering::Relaxed), ..self.gate.stats().into() }
    }
}

/// The mark of a ClientHello the gate proved.
fn mark(gate: &SharedGate, proof: Proof) -> CookieVerified {
    CookieVerified { rtt_sample: proof.rtt_sample(), gate: gate.id() }
}

/// Layer that applies the stateless cookie gate; see the [module docs](self).
///
/// Clones share the same secrets and counters, so a clone kept aside reads the
/// [`stats`](Self::stats) of the services the layer built.
#[derive(Clone, Debug)]
pub struct CookieLayer {
    gate: Arc<SharedGate>,
}

impl CookieLayer {
    /// A DTLS 1.2 gate with the given timing, the RustCrypto provider and a secret from the OS
    /// RNG. It knows no server configuration, so it answers every ClientHello, DTLS 1.3 ones
    /// included, with a HelloVerifyRequest: use [`CookieLayer::for_server`] for a server that
    /// accepts DTLS 1.3.
    pub fn new(config: CookieConfig) -> Self {
        Self::with_provider(config, Arc::new(RustCrypto), SeededRng::from_os())
    }

    /// [`CookieLayer::new`] with a chosen crypto provider and RNG (seed it for reproducible
    /// tests).
    pub fn with_provider(config: CookieConfig, provider: Arc<dyn CryptoProvider>, rng: SeededRng) -> Self {
        let gate = SharedGate::new(|now, rng| Gate::dtls12_in_front(config, provider, now, rng), rng);
        Self { gate: Arc::new(gate) }
    }

    /// The version-aware gate of a server with `config` (see the [module docs](self)): DTLS
    /// 1.3 ClientHellos get a stateless HelloRetryRequest when `config.dtls13`, DTLS 1.2 ones a
    /// HelloVerifyRequest when `config.dtls12`. Timing from [`ServerConfig::cookie`] (the
    /// default when `None`), crypto from its provider, secrets from the OS RNG. Give the same
    /// layer to [`HandshakeBuilder::behind`](crate::handshake::HandshakeBuilder::behind).
    pub fn for_server(config: &Arc<ServerConfig>) -> Self {
        Self::for_server_with_rng(config, SeededRng::from_os())
    }

    /// [`CookieLayer::for_server`] with a chosen RNG (seed it for reproducible tests).
    pub fn for_server_with_rng(config: &Arc<ServerConfig>, rng: SeededRng) -> Self {
        Self { gate: Arc::new(SharedGate::new(|now, rng| Gate::in_front(config, now, rng), rng)) }
    }

    /// The DTLS 1.3 cookie secrets of this gate (shared by every clone), for an endpoint
    /// behind it ([`coaps_dtls::Endpoint::server_behind_gate`]).
    pub fn shared_keys13(&self) -> SharedCookieKeys {
        self.gate.gate.keys13().clone()
    }

    /// The identity of this layer's gate, which every mark it puts on a datagram carries
    /// ([`CookieVerified::gate`]).
    pub fn gate_id(&self) -> GateId {
        self.gate.id()
    }

    /// The counters so far.
    pub fn stats(&self) -> CookieStats {
        self.gate.stats()
    }

    /// At most `per_second` cookie-less DTLS 1.3 ClientHellos that offer a PSK go on, in any
    /// one-second window, to a [`ResumptionLayer`](crate::resumption::ResumptionLayer) behind
    /// for a store look-up before their address is proven (the RFC 9147 §5.1 cookie skip of
    /// resumptions); the rest get the stateless HelloRetryRequest, as any cookie-less hello
    /// does (see the [module docs](self)). Default [`DEFAULT_PSK_LOOKUPS_PER_SECOND`]; 0 sends
    /// every such hello through the cookie exchange. Applies to every clone.
    pub fn psk_lookup_budget(self, per_second: u32) -> Self {
        self.gate.budget.per_second.store(per_second, Ordering::Relaxed);
        self
    }

    pub(crate) fn shared_gate(&self) -> Arc<SharedGate> {
        self.gate.clone()
    }
}

impl<S> Layer<S> for CookieLayer {
    type Service = Cookie<S>;

    fn layer(&self, inner: S) -> Cookie<S> {
        self.gate.layered.store(true, Ordering::Release);
        Cookie { inner, gate: self.gate.clone() }
    }
}

/// The service built by [`CookieLayer`].
#[derive(Clone, Debug)]
pub struct Cookie<S> {
    inner: S,
    gate: Arc<SharedGate>,
}

impl<S> Cookie<S> {
    /// Wraps `inner` with a fresh gate (see [`CookieLayer::new`]).
    pub fn new(inner: S, config: CookieConfig) -> Self {
        CookieLayer::new(config).layer(inner)
    }

    /// The counters so far (shared with the layer and every clone).
    pub fn stats(&self) -> CookieStats {
        self.gate.stats()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> Service<Datagram> for Cookie<S>
where
    S: Service<Datagram, Response = Transmits>,
{
    type Response = Transmits;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut d: Datagram) -> Self::Future {
        let (now, peer) = (d.received_at, d.peer);
        // RFC 9147 §5.1: a resumption from the ticket's address may skip the cookie, but the
        // ticket is in the resumption layer's store. That layer fetches it (without taking it),
        // asks this gate with it, and answers with the HelloRetryRequest itself when the
        // exemption does not hold. Unmarked, the hello would fail its wiring check, so it goes
        // on with the exempt mark, which the endpoint behind checks again in any case.
        if self.gate.defer_exemption(now, &d.payload) {
            d.cookie = Some(mark(&self.gate, Proof::ZeroRttResumption));
            return ResponseFuture::inner(self.inner.call(d));
        }
        let mut out = [0u8; MAX_ANSWER_LEN];
        let verdict = match self.gate.check(now, peer, &d.payload, &mut out) {
            Verdict::Fragment if self.gate.gate.reassembles() => {
                // RFC 9147 §5.1: a small-MTU client fragments its ClientHello (the second one
                // carries the cookie). The bounded area holds the pieces; the whole hello then
                // meets the same gate. Fragments also pass on unmarked, for the association
                // that the same ClientHello may already have (its retransmission).
                let Some(hello) = self.gate.gate.reassemble(now, peer, &d.payload).hello else {
                    return ResponseFuture::inner(self.inner.call(d));
                };
                let verdict = self.gate.check(now, peer, &hello, &mut out);
                if let Verdict::Proven(_) = verdict {
                    d.payload = hello;
                }
                verdict
            }
            verdict => verdict,
        };
        match verdict {
            Verdict::NotClientHello | Verdict::Fragment => ResponseFuture::inner(self.inner.call(d)),
            Verdict::Proven(proof) => {
                d.cookie = Some(mark(&self.gate, proof));
                ResponseFuture::inner(self.inner.call(d))
            }
            Verdict::HelloVerifyRequest { len, rejected } | Verdict::HelloRetryRequest { len, rejected } => {
                if rejected {
                    tracing::debug!(%peer, "ClientHello cookie rejected");
                }
                // The received datagram's buffer is ours now and (except for some
                // HelloRetryRequests, up to three times larger) already large enough: the
                // answer goes out in it, without a fresh allocation.
                let mut payload = std::mem::take(&mut d.payload);
                payload.clear();
                payload.extend_from_slice(&out[..len]);
                ResponseFuture::answer(Transmits::one(Transmit { destination: peer, payload }))
            }
            Verdict::Alert { len, description } => {
                crate::log::hello_refused(peer, description);
                ResponseFuture::answer(Transmits::one(Transmit { destination: peer, payload: out[..len].to_vec() }))
            }
            Verdict::Drop => ResponseFuture::answer(Transmits::new()),
        }
    }
}

pin_project! {
    /// Response future of [`Cookie`]: the inner service's, or the gate's own answer (no box).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Answer { transmits: Option<Transmits> },
    }
}

impl<F> ResponseFuture<F> {
    fn inner(future: F) -> Self {
        Self { kind: Kind::Inner { future } }
    }

    fn answer(transmits: Transmits) -> Self {
        Self { kind: Kind::Answer { transmits: Some(transmits) } }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { .. } => f.write_str("ResponseFuture::Inner"),
            Kind::Answer { transmits } => {
                f.debug_struct("ResponseFuture::Answer").field("transmits", transmits).finish()
            }
        }
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Transmits, E>>,
{
    type Output = Result<Transmits, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Answer { transmits } => Poll::Ready(Ok(transmits.take().unwrap_or_default())),
        }
    }
}

/// A first ClientHello (DTLS 1.2, no cookie, one PSK suite) as one datagram, for examples and
/// tests of the datagram-level layers.
#[doc(hidden)]
pub fn example_client_hello() -> Vec<u8> {
    example_client_hello_with(&[0x42; 32], &[])
}

/// [`example_client_hello`] with a chosen random and cookie.
#[doc(hidden)]
pub fn example_client_hello_with(random: &[u8; 32], cookie: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&[0xfe, 0xfd]); // client_version DTLS 1.2
    body.extend_from_slice(random);
    body.push(0); // session_id
    body.push(cookie.len() as u8);
    body.extend_from_slice(cookie);
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0xa8, 0x00, 0xff]); // PSK_WITH_AES_128_CCM_8, SCSV
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    // Extensions: extended_master_secret, plus padding so the datagram is clearly larger
    // than a HelloVerifyRequest even without a cookie.
    let ext = [0x00, 0x17, 0x00, 0x00, 0x00, 0x15, 0x00, 0x10];
    body.extend_from_slice(&((ext.len() + 16) as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    body.extend_from_slice(&[0u8; 16]);
    let len = (body.len() as u32).to_be_bytes();
    let mut hs = vec![1]; // client_hello
    hs.extend_from_slice(&len[1..]);
    hs.extend_from_slice(&[0, 0]); // message_seq
    hs.extend_from_slice(&[0, 0, 0]); // fragment_offset
    hs.extend_from_slice(&len[1..]); // fragment_length
    hs.extend_from_slice(&body);
    let mut d = vec![22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0];
    d.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    d.extend_from_slice(&hs);
    d
}

/// Extracts the cookie of a HelloVerifyRequest datagram (tests).
#[doc(hidden)]
pub fn hello_verify_request_cookie(datagram: &[u8]) -> Option<&[u8]> {
    // Record header (13) and handshake header (12): type hello_verify_request (3), then
    // server_version (2) and the cookie behind its length byte.
    if datagram.get(13) != Some(&3) {
        return None;
    }
    let len = usize::from(*datagram.get(13 + 12 + 2)?);
    datagram.get(13 + 12 + 3..13 + 12 + 3 + len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts calls; answers nothing.
    #[derive(Clone, Default)]
    struct Counting(Arc<AtomicUsize>, Arc<Mutex<Vec<Datagram>>>);

    impl Service<Datagram> for Counting {
        type Response = Transmits;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Transmits, Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, d: Datagram) -> Self::Future {
            self.0.fetch_add(1, Ordering::SeqCst);
            self.1.lock().unwrap().push(d);
            std::future::ready(Ok(Transmits::new()))
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    fn gate() -> (Cookie<Counting>, Counting) {
        let inner = Counting::default();
        let layer =
            CookieLayer::with_provider(CookieConfig::default(), Arc::new(RustCrypto), SeededRng::from_seed_u64(7));
        (layer.layer(inner.clone()), inner)
    }

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn cookieless_client_hello_is_answered_alone() {
        let (mut svc, inner) = gate();
        let ch = example_client_hello();
        let out = block_on(svc.call(Datagram::new(peer(1), ch.clone()))).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].destination, peer(1));
        assert!(out[0].payload.len() <= ch.len(), "no amplification");
        // Record sequence number echoed (RFC 6347 §4.2.1), version DTLS 1.0.
        assert_eq!(&out[0].payload[1..3], &[0xfe, 0xff]);
        assert_eq!(&out[0].payload[5..11], &ch[5..11]);
        assert!(hello_verify_request_cookie(&out[0].payload).is_some());
        assert_eq!(inner.0.load(Ordering::SeqCst), 0);
        assert_eq!(svc.stats().hello_verify_requests, 1);
    }

    #[test]
    fn valid_cookie_passes_marked_and_other_traffic_untouched() {
        let (mut svc, inner) = gate();
        let random = [9u8; 32];
        let hvr = block_on(svc.call(Datagram::new(peer(2), example_client_hello_with(&random, &[])))).unwrap();
        let cookie = hello_verify_request_cookie(&hvr[0].payload).unwrap().to_vec();
        let ch2 = example_client_hello_with(&random, &cookie);
        let out = block_on(svc.call(Datagram::new(peer(2), ch2.clone()))).unwrap();
        assert!(out.is_empty());
        assert_eq!(inner.0.load(Ordering::SeqCst), 1);
        let seen = inner.1.lock().unwrap()[0].clone();
        assert_eq!(seen.payload, ch2);
        assert!(seen.cookie.is_some());

        // The same cookie from another port: rejected, fresh HVR, inner not called.
        let out = block_on(svc.call(Datagram::new(peer(3), ch2.clone()))).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(inner.0.load(Ordering::SeqCst), 1);
        // Same cookie with another random: the parameters are bound too.
        let forged = example_client_hello_with(&[1u8; 32], &cookie);
        block_on(svc.call(Datagram::new(peer(2), forged))).unwrap();
        assert_eq!(inner.0.load(Ordering::SeqCst), 1);
        assert_eq!(svc.stats().cookies_rejected, 2);

        // An application-data record (epoch 1) passes unmarked.
        let app = vec![23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 2, 0xaa, 0xbb];
        block_on(svc.call(Datagram::new(peer(2), app.clone()))).unwrap();
        assert_eq!(inner.0.load(Ordering::SeqCst), 2);
        let seen = inner.1.lock().unwrap()[1].clone();
        assert_eq!(seen.payload, app);
        assert!(seen.cookie.is_none());
        let s = svc.stats();
        assert_eq!((s.hello_verify_requests, s.cookies_verified, s.cookies_rejected), (3, 1, 2));
    }

    #[test]
    fn broken_client_hellos_are_dropped_not_passed() {
        let (mut svc, inner) = gate();
        let mut ch = example_client_hello();
        // Cipher-suite vector of odd length: the view refuses it.
        let suites_at = 13 + 12 + 2 + 32 + 1 + 1;
        ch[suites_at + 1] = 3;
        let out = block_on(svc.call(Datagram::new(peer(4), ch))).unwrap();
        assert!(out.is_empty());
        assert_eq!(inner.0.load(Ordering::SeqCst), 0);
        assert_eq!(svc.stats().dropped, 1);
        // Garbage that is no record at all passes (the handshake layer drops it, counted there).
        block_on(svc.call(Datagram::new(peer(4), vec![1, 2, 3]))).unwrap();
        assert_eq!(inner.0.load(Ordering::SeqCst), 1);
    }
}
