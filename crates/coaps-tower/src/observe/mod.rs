//! Observing resources (RFC 7641) in both roles.
//!
//! * Server: [`ObserveLayer`] / [`Observe`] register a GET carrying Observe=0 when the
//!   application marks its answer observable (by putting an Observe option in a 2.xx
//!   response; the layer replaces the value with its sequence number, and strips the option
//!   from every response that did not register, §4.1). [`Observers::changed`] tells the
//!   driver ([`Observers::drive`]) that a resource changed: it re-runs the application with
//!   each observer's stored request and sends the answer as a notification through the
//!   association (a sink, usually [`Associations::send`](crate::Associations::send)).
//!   Notifications are non-confirmable, except one confirmable at least every
//!   [`ObserveConfig::con_interval`] (24 h, §4.5) to learn whether the client is still
//!   interested. An observer is removed on a GET with Observe=1 and its token (§3.6), on a
//!   Reset answering a notification (§3.6, §4.5; the [`CoapLayer`](crate::CoapLayer) reports
//!   Empty messages through [`Observers::empty_hook`]), when a confirmable notification stays
//!   unacknowledged for [`ObserveConfig::ack_wait`], when the sink reports the association gone,
//!   and after an error notification (§4.2).
//! * Client: [`client::observe`] yields the notifications of one observation in order,
//!   dropping those older than the newest seen (§3.4), and [`client::Observation::cancel`]
//!   deregisters.
//!
//! # Why not coap-lite's `Subject`
//!
//! coap-lite's `observe::Subject` keeps observers per resource path with no bound on
//! resources or observers, and needs `Display` endpoints; it sends nothing. The registry here
//! bounds observers per peer and in total ([`ObserveConfig`]) and keys them by (peer,
//! resource) as §4.1 asks: a second registration of the same resource by the same peer
//! replaces the first, so a peer cannot grow the table by re-registering.
//!
//! # Example
//!
//! ```
//! use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
//! use coaps_tower::observe::{ObserveConfig, ObserveLayer, Observers};
//! use coaps_tower::{BoxError, CoapRequest};
//! use std::convert::Infallible;
//! use std::sync::{Arc, Mutex};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let sent: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
//! let log = sent.clone();
//! let observers = Observers::new(ObserveConfig::default(), move |_peer, bytes: &[u8]| {
//!     log.lock().unwrap().push(bytes.to_vec());
//!     true // the association is still there
//! });
//! let app = tower::service_fn(|req: CoapRequest| async move {
//!     let mut resp = req.response();
//!     resp.header.code = MessageClass::Response(ResponseType::Content);
//!     resp.set_observe_value(0); // observable
//!     resp.payload = b"21:00:00".to_vec();
//!     Ok::<_, Infallible>(resp)
//! });
//! let svc = ServiceBuilder::new().layer(ObserveLayer::new(observers.clone())).service(app.clone());
//! tokio::spawn(observers.clone().drive(app));
//!
//! let mut get = Packet::new();
//! get.header.code = MessageClass::Request(RequestType::Get);
//! get.set_token(vec![1, 2]);
//! get.set_observe_value(0); // register
//! get.add_option(CoapOption::UriPath, b"clock".to_vec());
//! let req = CoapRequest {
//!     message: get,
//!     peer: "192.0.2.1:40000".parse()?,
//!     identity: coaps_dtls::PeerIdentity::Anonymous,
//!     early_data: false,
//!     handshake: coaps_tower::Handshaken::complete(),
//!     association: coaps_tower::Association::unknown(),
//! };
//! let first = svc.oneshot(req).await?;
//! assert!(first.get_observe_value().is_some(), "registered");
//! assert_eq!(observers.len(), 1);
//!
//! observers.changed("clock");
//! for _ in 0..100 {
//!     if !sent.lock().unwrap().is_empty() { break }
//!     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//! }
//! let n = Packet::from_bytes(&sent.lock().unwrap()[0]).unwrap();
//! assert_eq!(n.get_token(), &[1, 2]);
//! assert_eq!(n.payload, b"21:00:00");
//! # Ok(())
//! # }
//! ```

pub mod client;

use crate::types::{BoxError, CoapRequest};
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use pin_project_lite::pin_project;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tower_layer::Layer;
use tower_service::Service;

/// Limits and timers of the server role.
#[derive(Debug, Clone)]
pub struct ObserveConfig {
    /// Observers in total; beyond, registrations are answered without Observe (§4.1: not
    /// added to the list). Default 10 000.
    pub max_observers: usize,
    /// Observers per peer address. Default 16.
    pub max_per_peer: usize,
    /// At least one notification in this interval is confirmable (§4.5: "at least every 24
    /// hours"). Default 24 h.
    pub con_interval: Duration,
    /// How long a confirmable notification may stay unacknowledged before the observer is
    /// removed (MAX_TRANSMIT_WAIT, RFC 7252 §4.8.2). Default 93 s.
    pub ack_wait: Duration,
    /// Largest encoded notification; a larger one ends the observation. Default
    /// [`DEFAULT_MAX_MESSAGE_SIZE`](crate::coap::DEFAULT_MAX_MESSAGE_SIZE).
    pub max_message_size: usize,
}

impl Default for ObserveConfig {
    fn default() -> Self {
        Self {
            max_observers: 10_000,
            max_per_peer: 16,
            con_interval: Duration::from_secs(24 * 3600),
            ack_wait: crate::coap::max_transmit_wait(Duration::from_secs(2)),
            max_message_size: crate::coap::DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

type Sink = Arc<dyn Fn(SocketAddr, &[u8]) -> bool + Send + Sync>;

/// Reports Empty ACK and Reset messages from peers to [`Observers`]; give it to
/// [`CoapLayer::on_empty`](crate::CoapLayer::on_empty).
#[derive(Clone)]
pub struct EmptyHook(pub(crate) Arc<dyn Fn(SocketAddr, MessageType, u16) + Send + Sync>);

impl fmt::Debug for EmptyHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EmptyHook")
    }
}

impl EmptyHook {
    /// A hook calling `f(peer, type, message_id)` for each Empty ACK or Reset.
    pub fn new(f: impl Fn(SocketAddr, MessageType, u16) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Reports one Empty message (what the CoAP layer does).
    pub fn invoke(&self, peer: SocketAddr, ty: MessageType, mid: u16) {
        (self.0)(peer, ty, mid)
    }
}

struct Entry {
    token: Vec<u8>,
    /// The registering request (Observe removed), re-run for each notification.
    request: CoapRequest,
    seq: u32,
    last_con: Instant,
    /// A confirmable notification awaiting its ACK.
    pending_con: Option<(u16, Instant)>,
    /// The Message ID of the latest notification, to match a Reset.
    last_mid: Option<u16>,
}

/// (peer, Uri-Path joined by `/`).
type Key = (SocketAddr, String);

#[derive(Default)]
struct State {
    entries: HashMap<Key, Entry>,
    per_peer: HashMap<SocketAddr, usize>,
    dirty: HashSet<String>,
}

impl State {
    fn remove(&mut self, key: &Key) -> Option<Entry> {
        let e = self.entries.remove(key)?;
        if let Some(n) = self.per_peer.get_mut(&key.0) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&key.0);
            }
        }
        Some(e)
    }
}

struct Registry {
    config: ObserveConfig,
    state: Mutex<State>,
    wake: Arc<tokio::sync::Notify>,
    sink: Sink,
    next_mid: AtomicU16,
}

/// The observer registry shared by [`Observe`] services and the notification driver.
#[derive(Clone)]
pub struct Observers {
    reg: Arc<Registry>,
}

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observers").field("config", &self.reg.config).field("len", &self.len()).finish_non_exhaustive()
    }
}

fn path_of(p: &Packet) -> String {
    let segs: Vec<String> = p
        .get_option(CoapOption::UriPath)
        .map(|l| l.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect())
        .unwrap_or_default();
    segs.join("/")
}

impl Observers {
    /// A registry sending notifications through `sink(peer, bytes)`, which answers `false`
    /// when `peer` has no association any more (the observer is then removed).
    pub fn new(config: ObserveConfig, sink: impl Fn(SocketAddr, &[u8]) -> bool + Send + Sync + 'static) -> Self {
        let mut seed = [0u8; 2];
        coaps_dtls::crypto::Rng::fill(&mut coaps_dtls::crypto::SeededRng::from_os(), &mut seed);
        Self {
            reg: Arc::new(Registry {
                config,
                state: Mutex::default(),
                wake: Arc::new(tokio::sync::Notify::new()),
                sink: Arc::new(sink),
                next_mid: AtomicU16::new(u16::from_be_bytes(seed)),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Entries are inserted and removed whole.
        self.reg.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Observers registered now.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether none is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Observers of the resource at `path` (Uri-Path segments joined by `/`, no leading `/`).
    pub fn observers_of(&self, path: &str) -> usize {
        self.lock().entries.keys().filter(|k| k.1 == path).count()
    }

    /// Says the resource at `path` changed: the driver notifies its observers. Cheap when
    /// nobody observes it.
    pub fn changed(&self, path: &str) {
        let mut st = self.lock();
        if st.entries.keys().any(|k| k.1 == path) {
            st.dirty.insert(path.to_owned());
            drop(st);
            self.reg.wake.notify_one();
        }
    }

    /// Forgets every observer of `peer` (its association closed).
    pub fn forget_peer(&self, peer: SocketAddr) {
        let mut st = self.lock();
        let keys: Vec<Key> = st.entries.keys().filter(|k| k.0 == peer).cloned().collect();
        for k in keys {
            st.remove(&k);
        }
    }

    /// The hook for [`CoapLayer::on_empty`](crate::CoapLayer::on_empty): an Empty ACK
    /// acknowledges a confirmable notification; a Reset matching a notification removes its
    /// observer (§3.6).
    pub fn empty_hook(&self) -> EmptyHook {
        let me = self.clone();
        EmptyHook::new(move |peer, ty, mid| me.on_empty(peer, ty, mid))
    }

    fn on_empty(&self, peer: SocketAddr, ty: MessageType, mid: u16) {
        let mut st = self.lock();
        let keys: Vec<Key> = st.entries.keys().filter(|k| k.0 == peer).cloned().collect();
        for k in keys {
            let Some(e) = st.entries.get_mut(&k) else { continue };
            match ty {
                MessageType::Acknowledgement if e.pending_con.is_some_and(|(m, _)| m == mid) => e.pending_con = None,
                MessageType::Reset if e.last_mid == Some(mid) || e.pending_con.is_some_and(|(m, _)| m == mid) => {
                    tracing::debug!(%peer, path = %k.1, "observe: Reset to a notification, observer removed");
                    st.remove(&k);
                }
                _ => {}
            }
        }
    }

    /// Registers (or replaces, §4.1) the observation of `req`; `false` when a limit refuses it.
    fn register(&self, req: &CoapRequest) -> bool {
        let key = (req.peer, path_of(&req.message));
        let mut st = self.lock();
        let exists = st.entries.contains_key(&key);
        if !exists {
            if st.entries.len() >= self.reg.config.max_observers {
                tracing::warn!(peer = %req.peer, limit = self.reg.config.max_observers, "observe: observer limit reached, registration refused");
                return false;
            }
            if st.per_peer.get(&req.peer).copied().unwrap_or(0) >= self.reg.config.max_per_peer {
                tracing::debug!(peer = %req.peer, "observe: per-peer observer limit reached, registration refused");
                return false;
            }
            *st.per_peer.entry(req.peer).or_default() += 1;
        }
        let mut request = req.clone();
        request.message.clear_option(CoapOption::Observe);
        let entry = Entry {
            token: req.message.get_token().to_vec(),
            request,
            seq: 1,
            last_con: Instant::now(),
            pending_con: None,
            last_mid: None,
        };
        st.entries.insert(key, entry);
        true
    }

    /// GET with Observe=1 (§3.6): removes the observation of the same resource and token.
    fn deregister(&self, req: &CoapRequest) {
        let key = (req.peer, path_of(&req.message));
        let mut st = self.lock();
        if st.entries.get(&key).is_some_and(|e| e.token == req.message.get_token()) {
            st.remove(&key);
        }
    }

    /// Sends notifications whenever [`Observers::changed`] is called, re-running `app` for
    /// each observer. Runs until every clone of the registry is gone; spawn it.
    pub async fn drive<S>(self, app: S)
    where
        S: Service<CoapRequest, Response = Packet> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
    {
        let weak = Arc::downgrade(&self.reg);
        let wake = self.reg.wake.clone();
        drop(self);
        loop {
            let notified = wake.notified();
            tokio::pin!(notified);
            // Registered before the dirty set is read, so no change is missed.
            notified.as_mut().enable();
            let Some(reg) = weak.upgrade() else { return };
            let me = Observers { reg };
            let dirty: Vec<String> = me.lock().dirty.drain().collect();
            for path in &dirty {
                me.notify_path(path, app.clone()).await;
            }
            // Hold no strong reference while idle, so dropping the registry ends the driver.
            drop(me);
            if dirty.is_empty() {
                let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
            }
        }
    }

    async fn notify_path<S>(&self, path: &str, app: S)
    where
        S: Service<CoapRequest, Response = Packet> + Clone,
        S::Error: Into<BoxError>,
    {
        let now = Instant::now();
        let targets: Vec<(Key, CoapRequest)> = {
            let mut st = self.lock();
            let wait = self.reg.config.ack_wait;
            let stale: Vec<Key> = st
                .entries
                .iter()
                .filter(|(k, e)| {
                    k.1 == path && e.pending_con.is_some_and(|(_, t)| now.saturating_duration_since(t) >= wait)
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in stale {
                tracing::debug!(peer = %k.0, path = %k.1, "observe: confirmable notification never acknowledged, observer removed");
                st.remove(&k);
            }
            st.entries.iter().filter(|(k, _)| k.1 == path).map(|(k, e)| (k.clone(), e.request.clone())).collect()
        };
        for (key, req) in targets {
            let mut svc = app.clone();
            let result = match std::future::poll_fn(|cx| svc.poll_ready(cx)).await {
                Ok(()) => svc.call(req).await,
                Err(e) => Err(e),
            };
            let resp = match result {
                Ok(r) => r,
                Err(e) => {
                    let e: BoxError = e.into();
                    tracing::debug!(error = %e, "observe: the application failed a notification");
                    continue;
                }
            };
            self.send_notification(&key, resp, now);
        }
    }

    fn send_notification(&self, key: &Key, mut resp: Packet, now: Instant) {
        let mid = self.reg.next_mid.fetch_add(1, Ordering::Relaxed);
        let mut st = self.lock();
        let Some(e) = st.entries.get_mut(key) else { return };
        let ok = u8::from(resp.header.code) >> 5 == 2;
        let con = now.saturating_duration_since(e.last_con) >= self.reg.config.con_interval && e.pending_con.is_none();
        resp.header.set_version(1);
        resp.header.set_type(if con { MessageType::Confirmable } else { MessageType::NonConfirmable });
        resp.header.message_id = mid;
        resp.set_token(e.token.clone());
        resp.clear_option(CoapOption::Observe);
        if ok {
            // 24-bit sequence (§3.4, §4.4).
            e.seq = (e.seq + 1) & 0xFF_FFFF;
            resp.set_observe_value(e.seq);
        }
        e.last_mid = Some(mid);
        if con {
            e.last_con = now;
            e.pending_con = Some((mid, now));
        }
        let bytes = match resp.to_bytes_with_limit(self.reg.config.max_message_size) {
            Ok(b) => b,
            Err(_) => {
                tracing::warn!(peer = %key.0, path = %key.1, "observe: notification too large, observer removed");
                st.remove(key);
                return;
            }
        };
        if !ok {
            // An error notification ends the observation (§4.2).
            st.remove(key);
        }
        drop(st);
        if !(self.reg.sink)(key.0, &bytes) {
            self.lock().remove(key);
        }
    }
}

/// A [`Layer`] producing [`Observe`] services that register with one [`Observers`].
#[derive(Debug, Clone)]
pub struct ObserveLayer {
    observers: Observers,
}

impl ObserveLayer {
    /// Registers observations in `observers`.
    pub fn new(observers: Observers) -> Self {
        Self { observers }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner, observers: self.observers.clone() }
    }
}

/// The registration middleware. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    observers: Observers,
}

/// What the request asks of the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    Nothing,
    Register,
    Deregister,
}

impl<S, E> Service<CoapRequest> for Observe<S>
where
    S: Service<CoapRequest, Response = Packet, Error = E>,
    E: Into<BoxError>,
{
    type Response = Packet;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: CoapRequest) -> Self::Future {
        let get = matches!(req.message.header.code, MessageClass::Request(RequestType::Get | RequestType::Fetch));
        let ask = match (get, req.message.get_observe_value()) {
            (true, Some(Ok(0))) => Ask::Register,
            (true, Some(Ok(1))) => Ask::Deregister,
            _ => Ask::Nothing,
        };
        if ask == Ask::Deregister {
            self.observers.deregister(&req);
        }
        let kept = (ask == Ask::Register).then(|| {
            let mut r = req.clone();
            r.message.payload.clear();
            if matches!(r.message.header.code, MessageClass::Request(RequestType::Fetch)) {
                r.message.payload.clone_from(&req.message.payload);
            }
            r
        });
        ResponseFuture { future: self.inner.call(req), register: kept, observers: Some(self.observers.clone()) }
    }
}

pin_project! {
    /// The future of [`Observe`].
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        register: Option<CoapRequest>,
        observers: Option<Observers>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").field("registering", &self.register.is_some()).finish()
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Packet, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Packet, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut resp = ready!(this.future.poll(cx)).map_err(Into::into)?;
        let observable =
            resp.get_option(CoapOption::Observe).is_some_and(|l| !l.is_empty()) && u8::from(resp.header.code) >> 5 == 2;
        resp.clear_option(CoapOption::Observe);
        if let (Some(req), Some(obs)) = (this.register.take(), this.observers.take())
            && observable
            && obs.register(&req)
        {
            // The first sequence number; notifications count up from it (§3.4).
            resp.set_observe_value(1);
        }
        Poll::Ready(Ok(resp))
    }
}
