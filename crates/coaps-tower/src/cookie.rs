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
//!   HelloRetryRequest would forbid the early data (RFC 8446 §4.2.10);
//! * everything else (records of established associations, alerts, fragments) passes through
//!   untouched.
//!
//! The 1.2 cookie is the one of [`coaps_dtls::internal::cookie`]: `HMAC(secret, client address and port,
//! ClientHello parameters)` with a secret that rotates every
//! [`CookieConfig::rotate_every`]; cookies made with the previous secret stay valid for one
//! more period. The HelloVerifyRequest is never larger than the ClientHello that caused it,
//! and the HelloRetryRequest never larger than three times it (RFC 9147 §5.1), so the gate
//! cannot be used for amplification. A 1.2 answer allocates only the answer; a 1.3 answer
//! also decodes the ClientHello (a few small vectors, freed before returning).
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
//! rotation due performs it). It also makes the handshake layer refuse unmarked
//! ClientHellos, so a misordered stack fails closed.
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
//!         Ok::<Transmits, BoxError>(Vec::new())
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
use coaps_dtls::ServerConfig;
use coaps_dtls::crypto::rustcrypto::RustCrypto;
use coaps_dtls::crypto::{CryptoProvider, SeededRng};
use coaps_dtls::internal::codec::{ContentType, HandshakeType, Reader};
use coaps_dtls::internal::cookie::{
    ClientHelloView, CookieConfig, CookieKeys, SharedCookieKeys, write_hello_verify_request,
};
use coaps_dtls::internal::endpoint::{
    Stateless13, cookie13_config, reassemble_client_hello, starts_with_client_hello_fragment, stateless_check13,
};
use coaps_dtls::internal::handshake::reassembly::HelloReassembly;
use coaps_dtls::internal::msgs::HandshakeHeader;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
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
}

/// What the gate decided about one datagram.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Not a first ClientHello: not the gate's business.
    PassThrough,
    /// A ClientHello whose cookie verified.
    Verified(CookieVerified),
    /// The datagram completed a fragmented ClientHello, which verified: pass this
    /// one-record datagram (the whole ClientHello) on instead of the last fragment.
    Reassembled(CookieVerified, Vec<u8>),
    /// Answer with this HelloVerifyRequest or HelloRetryRequest, and nothing else.
    Answer(Transmit),
    /// A broken ClientHello: drop it.
    Drop,
}

struct Keys {
    keys: CookieKeys,
    rng: SeededRng,
}

/// The shared, stateless (per peer) cookie gate: the current and previous secrets, and
/// counters. Used by [`CookieLayer`] and, when no cookie layer is in front, by the handshake
/// layer itself.
pub(crate) struct CookieGate {
    keys: Mutex<Keys>,
    /// DTLS 1.3 cookie secrets, shared with the endpoint behind the gate.
    keys13: SharedCookieKeys,
    /// The server's configuration: `Some` makes the gate version-aware.
    server: Option<Arc<ServerConfig>>,
    /// Fragmented ClientHellos being reassembled (RFC 9147 §5.1), bounded by the server's
    /// [`ServerConfig::hello_reassembly`]; `None` without a server configuration.
    hellos: Option<Mutex<HelloReassembly>>,
    /// Recently passed 0-RTT ClientHellos (peer, random), oldest first; see
    /// [`CookieGate::recent_zero_rtt`].
    recent_exempt: Mutex<std::collections::VecDeque<(Instant, SocketAddr, [u8; 32])>>,
    provider: Arc<dyn CryptoProvider>,
    hello_verify_requests: AtomicU64,
    hello_retry_requests: AtomicU64,
    cookies_verified: AtomicU64,
    cookie_exempt: AtomicU64,
    cookies_rejected: AtomicU64,
    dropped: AtomicU64,
    hellos_reassembled: AtomicU64,
    hello_fragments_refused: AtomicU64,
}

impl fmt::Debug for CookieGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieGate").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl CookieGate {
    /// A gate with `config` timing for 1.2; version-aware when `server` is given (1.3 cookie
    /// timing from [`cookie13_config`]).
    pub(crate) fn new(
        config: CookieConfig,
        server: Option<Arc<ServerConfig>>,
        provider: Arc<dyn CryptoProvider>,
        mut rng: SeededRng,
    ) -> Self {
        let now = Instant::now();
        let keys = CookieKeys::new(config, now, &mut rng);
        let c13 = match &server {
            Some(s) => cookie13_config(s),
            None => cookie13_config(&ServerConfig { cookie: Some(config), ..ServerConfig::default() }),
        };
        let keys13 = SharedCookieKeys::new(CookieKeys::new(c13, now, &mut rng));
        let hellos = server.as_ref().map(|s| Mutex::new(HelloReassembly::new(s.hello_reassembly)));
        Self {
            keys: Mutex::new(Keys { keys, rng }),
            keys13,
            hellos,
            recent_exempt: Mutex::new(std::collections::VecDeque::new()),
            server,
            provider,
            hello_verify_requests: AtomicU64::new(0),
            hello_retry_requests: AtomicU64::new(0),
            cookies_verified: AtomicU64::new(0),
            cookie_exempt: AtomicU64::new(0),
            cookies_rejected: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            hellos_reassembled: AtomicU64::new(0),
            hello_fragments_refused: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> CookieStats {
        CookieStats {
            hello_verify_requests: self.hello_verify_requests.load(Ordering::Relaxed),
            hello_retry_requests: self.hello_retry_requests.load(Ordering::Relaxed),
            cookies_verified: self.cookies_verified.load(Ordering::Relaxed),
            cookie_exempt: self.cookie_exempt.load(Ordering::Relaxed),
            cookies_rejected: self.cookies_rejected.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            hellos_reassembled: self.hellos_reassembled.load(Ordering::Relaxed),
            hello_fragments_refused: self.hello_fragments_refused.load(Ordering::Relaxed),
        }
    }

    /// Most 0-RTT ClientHellos remembered by [`CookieGate::remember_zero_rtt`].
    const MAX_RECENT_ZERO_RTT: usize = 1024;

    /// Remembers the (peer, random) of a 0-RTT ClientHello passed without a cookie, for the
    /// server's ticket-age freshness window (RFC 8446 §8.3). Only hellos whose binder verified
    /// get here, so a spoofer cannot fill it; it is bounded all the same (oldest dropped).
    fn remember_zero_rtt(&self, server: &ServerConfig, now: Instant, peer: SocketAddr, body: &[u8]) {
        let Some(random) = body.get(2..34).and_then(|r| <[u8; 32]>::try_from(r).ok()) else { return };
        let window = server.early_data.as_ref().map_or(std::time::Duration::ZERO, |e| e.freshness_window);
        let mut recent = self.recent_exempt.lock().unwrap_or_else(|e| e.into_inner());
        while recent.front().is_some_and(|(t, _, _)| now.saturating_duration_since(*t) > window)
            || recent.len() >= Self::MAX_RECENT_ZERO_RTT
        {
            recent.pop_front();
        }
        recent.push_back((now, peer, random));
    }

    /// Whether the cookie-less ClientHello `body` from `peer` repeats one that
    /// [`CookieGate::remember_zero_rtt`] recorded within the freshness window (a network
    /// duplicate or a retransmission whose answer was lost). The endpoint behind the gate
    /// routes such a copy to the association the first one created (same random), and
    /// without one it sends its own HelloRetryRequest: nothing new is created from it.
    fn recent_zero_rtt(&self, server: &ServerConfig, now: Instant, peer: SocketAddr, body: &[u8]) -> bool {
        let Some(random) = body.get(2..34) else { return false };
        let Some(window) = server.early_data.as_ref().map(|e| e.freshness_window) else { return false };
        let recent = self.recent_exempt.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().any(|(t, p, r)| *p == peer && &r[..] == random && now.saturating_duration_since(*t) <= window)
    }

    /// The DTLS 1.3 cookie secrets, to share with the endpoint behind the gate.
    pub(crate) fn keys13(&self) -> &SharedCookieKeys {
        &self.keys13
    }

    /// Decides on one datagram, allocating only the answer for 1.2 (RFC 6347 §4.2.1,
    /// RFC 9147 §5.1).
    pub(crate) fn check(&self, now: Instant, peer: SocketAddr, datagram: &[u8]) -> Verdict {
        if let Some(hellos) = &self.hellos
            && starts_with_client_hello_fragment(datagram)
        {
            // RFC 9147 §5.1: a small-MTU client fragments its ClientHello (the second one
            // carries the cookie). The bounded area holds the pieces; the whole hello then
            // meets the same gate. Fragments also pass on unmarked, for the association that
            // the same ClientHello may already have (its retransmission).
            let r = reassemble_client_hello(&mut hellos.lock().unwrap_or_else(|e| e.into_inner()), now, peer, datagram);
            self.hello_fragments_refused.fetch_add(r.fragments_refused, Ordering::Relaxed);
            let Some(hello) = r.hello else { return Verdict::PassThrough };
            self.hellos_reassembled.fetch_add(1, Ordering::Relaxed);
            return match self.check(now, peer, &hello) {
                Verdict::Verified(v) => Verdict::Reassembled(v, hello),
                other => other,
            };
        }
        let Some((record_seq, body)) = first_client_hello(datagram) else { return Verdict::PassThrough };
        if let Some(server) = &self.server {
            if server.dtls13 {
                if self.recent_zero_rtt(server, now, peer, body) {
                    // A copy of a 0-RTT ClientHello this gate just passed (its ticket is
                    // spent now, so it is no longer exempt): it goes to the association it
                    // created, as the engine's endpoint routes it, instead of getting a
                    // HelloRetryRequest the waiting client would take and restart on.
                    self.cookie_exempt.fetch_add(1, Ordering::Relaxed);
                    return Verdict::Verified(CookieVerified { rtt_sample: None });
                }
                let decision = {
                    let mut k = self.keys.lock().unwrap_or_else(|e| e.into_inner());
                    let keys13 = self.keys13.lock(now, &mut k.rng);
                    stateless_check13(server, &keys13, now, peer, datagram)
                };
                match decision {
                    Stateless13::NotDtls13 => {}
                    Stateless13::Verified(info) => {
                        self.cookies_verified.fetch_add(1, Ordering::Relaxed);
                        return Verdict::Verified(CookieVerified { rtt_sample: Some(info.age) });
                    }
                    Stateless13::CookieExempt => {
                        self.cookie_exempt.fetch_add(1, Ordering::Relaxed);
                        self.remember_zero_rtt(server, now, peer, body);
                        return Verdict::Verified(CookieVerified { rtt_sample: None });
                    }
                    Stateless13::HelloRetryRequest { datagram, rejected } => {
                        if rejected {
                            tracing::debug!(%peer, "DTLS 1.3 ClientHello cookie rejected");
                            self.cookies_rejected.fetch_add(1, Ordering::Relaxed);
                        }
                        self.hello_retry_requests.fetch_add(1, Ordering::Relaxed);
                        return Verdict::Answer(Transmit { destination: peer, payload: datagram });
                    }
                    Stateless13::Drop => {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                        return Verdict::Drop;
                    }
                }
            }
            if !server.dtls12 {
                // A DTLS 1.3-only server: a ClientHello without (usable) 1.3 gets no answer.
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return Verdict::Drop;
            }
        }
        let Ok(view) = ClientHelloView::parse(body) else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Verdict::Drop;
        };
        let mut buf = [0u8; 64];
        let written = {
            // A poisoned lock only means another thread panicked mid-HMAC: the keys are intact.
            let mut k = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            let Keys { keys, rng } = &mut *k;
            keys.rotate_if_due(now, rng);
            if !view.cookie.is_empty() {
                match keys.verify(&*self.provider, now, peer, &view.params, view.cookie) {
                    Ok(info) => {
                        self.cookies_verified.fetch_add(1, Ordering::Relaxed);
                        return Verdict::Verified(CookieVerified { rtt_sample: Some(info.age) });
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "ClientHello cookie rejected");
                        self.cookies_rejected.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            let cookie = keys.generate(&*self.provider, now, peer, &view.params);
            write_hello_verify_request(record_seq, cookie.as_bytes(), &mut buf)
        };
        match written {
            // Never answer with more than was received: no amplification (RFC 6347 §4.2.1).
            Some(n) if n <= datagram.len() => {
                self.hello_verify_requests.fetch_add(1, Ordering::Relaxed);
                Verdict::Answer(Transmit { destination: peer, payload: buf[..n].to_vec() })
            }
            _ => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Verdict::Drop
            }
        }
    }
}

/// The record sequence number and body of the ClientHello that starts `datagram`, if the
/// datagram starts with an unfragmented epoch-0 ClientHello: the only kind a server can check
/// without keeping state (it cannot reassemble before the cookie round trip; the engine's
/// endpoint applies the same rule).
pub(crate) fn first_client_hello(datagram: &[u8]) -> Option<(u64, &[u8])> {
    let rec = coaps_dtls::internal::record::split_datagram(datagram).next()?;
    if rec.header.content_type != ContentType::Handshake || rec.header.epoch != 0 {
        return None;
    }
    let mut r = Reader::new(rec.fragment);
    let (hdr, body) = HandshakeHeader::read_fragment(&mut r).ok()?;
    if hdr.msg_type != HandshakeType::ClientHello || hdr.fragment_offset != 0 || hdr.fragment_length != hdr.length {
        return None;
    }
    Some((rec.header.sequence_number, body))
}

/// Layer that applies the stateless cookie gate; see the [module docs](self).
///
/// Clones share the same secrets and counters, so a clone kept aside reads the
/// [`stats`](Self::stats) of the services the layer built.
#[derive(Clone, Debug)]
pub struct CookieLayer {
    gate: Arc<CookieGate>,
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
        Self { gate: Arc::new(CookieGate::new(config, None, provider, rng)) }
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
        let timing = config.cookie.unwrap_or_default();
        let provider = config.common.provider.clone();
        Self { gate: Arc::new(CookieGate::new(timing, Some(config.clone()), provider, rng)) }
    }

    /// The DTLS 1.3 cookie secrets of this gate (shared by every clone), for an endpoint
    /// behind it ([`coaps_dtls::Endpoint::server_behind_gate`]).
    pub fn shared_keys13(&self) -> SharedCookieKeys {
        self.gate.keys13().clone()
    }

    /// The counters so far.
    pub fn stats(&self) -> CookieStats {
        self.gate.stats()
    }
}

impl<S> Layer<S> for CookieLayer {
    type Service = Cookie<S>;

    fn layer(&self, inner: S) -> Cookie<S> {
        Cookie { inner, gate: self.gate.clone() }
    }
}

/// The service built by [`CookieLayer`].
#[derive(Clone, Debug)]
pub struct Cookie<S> {
    inner: S,
    gate: Arc<CookieGate>,
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
        match self.gate.check(d.received_at, d.peer, &d.payload) {
            Verdict::PassThrough => ResponseFuture::inner(self.inner.call(d)),
            Verdict::Verified(v) => {
                d.cookie = Some(v);
                ResponseFuture::inner(self.inner.call(d))
            }
            Verdict::Reassembled(v, hello) => {
                d.cookie = Some(v);
                d.payload = hello;
                ResponseFuture::inner(self.inner.call(d))
            }
            Verdict::Answer(t) => ResponseFuture::answer(vec![t]),
            Verdict::Drop => ResponseFuture::answer(Vec::new()),
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
    let rec = coaps_dtls::internal::record::split_datagram(datagram).next()?;
    let mut r = Reader::new(rec.fragment);
    let (hdr, body) = HandshakeHeader::read_fragment(&mut r).ok()?;
    if hdr.msg_type != HandshakeType::HelloVerifyRequest {
        return None;
    }
    let len = usize::from(*body.get(2)?);
    body.get(3..3 + len)
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
            std::future::ready(Ok(Vec::new()))
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
