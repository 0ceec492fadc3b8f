//! The CoAP message layer: turns an application `Service<CoapRequest, Response = Packet>` into
//! the `Service<Secured, Response = Option<Vec<u8>>>` that the handshake layer calls with each
//! decrypted application-data record.
//!
//! What it does, in the order a record meets it:
//!
//! 1. **Header checks** (RFC 7252 §3, §4.2, §4.3). Fewer than 4 bytes, or a version other than
//!    1: silently dropped. ACK and RST from the peer: dropped (a server layer sends no
//!    confirmable messages, so there is nothing for them to match); Empty ones are reported to
//!    [`CoapLayer::on_empty`] for the observe registry's notifications (RFC 7641 §3.6, §4.5). An Empty confirmable message
//!    (the "CoAP ping"), a confirmable message with a response code or a reserved class (1, 6,
//!    7), or one with a format error past its header: answered with a Reset carrying its
//!    Message ID. The same cases in a non-confirmable message are silently ignored (§4.3 makes
//!    the Reset optional; staying silent gives an attacker nothing to reflect).
//!    Format errors past the header (token length 9–15, options running past the end, a
//!    payload marker with no payload) are found by a total pre-parser over the raw bytes
//!    ([`rules::scan`]), since coap-lite accepts some of them.
//! 2. **Unknown methods** (0.08–0.31) get 4.05 Method Not Allowed without reaching the
//!    application (§5.8).
//! 3. **Option rules** ([`rules`], [`CoapConfig::rules`]): an unrecognised critical option
//!    gets 4.02 Bad Option (CON) or silence (NON) and nothing runs (§5.4.1); unrecognised
//!    elective options are ignored; Proxy-Uri / Proxy-Scheme get 5.05 unless the application
//!    proxies (§5.10.2).
//! 4. **Deduplication** (§4.5), keyed by (association, Message ID, token), for
//!    [`CoapConfig::exchange_lifetime`] (EXCHANGE_LIFETIME, 247 s, §4.8.2). A duplicate
//!    confirmable request is answered with the stored response bytes; a duplicate that arrives
//!    while the first copy is still being processed waits for that response and gets the same
//!    bytes (it never reaches the application). A duplicate non-confirmable request is silently
//!    ignored, as §4.5 says. The store holds at most [`CoapConfig::max_dedup_entries`] entries,
//!    oldest evicted first. Over DTLS the CoAP endpoint is the security association
//!    (§9.1.1): the key holds the association the handshake layer names
//!    ([`Secured::association`], its ClientHello random) and who the peer **authenticated**
//!    as (PSK identity, end-entity certificate, raw public key), never its address. A new
//!    session from the same address, by the same principal or another, is a new endpoint and
//!    never gets a previous session's stored answer. A copy of a 0-RTT flight replayed from
//!    another port or host (a "pre-play", RFC 8446 §8, issue 10) carries the same ClientHello,
//!    so it and the honest client's 1-RTT resend of the same message share one entry and the
//!    request runs once. The token is part of the key: devices that share one PSK identity
//!    draw Message IDs that collide, while a retransmission or a replayed copy repeats the
//!    token. A record built by hand ([`Association::unknown`]) is keyed by identity, or by
//!    address when anonymous.
//! 5. **The application** sees a [`CoapRequest`] with the peer's address and authenticated
//!    identity.
//! 6. **Response shaping**: a confirmable request gets a piggybacked response (type ACK, the
//!    request's Message ID and token, §5.2.1); a non-confirmable request gets a
//!    non-confirmable response with a fresh Message ID and the request's token (§5.2.3). The
//!    application only chooses code, options and payload; a packet whose code is not a response
//!    code is replaced by 5.00.
//! 7. **Size cap**: the response is encoded with
//!    [`to_bytes_with_limit`](coap_lite::Packet::to_bytes_with_limit)`(`[`CoapConfig::max_message_size`]`)`.
//!    A response that does not fit becomes **5.00 Internal Server Error** with the diagnostic
//!    payload `response too large` (§5.5.2). Not 4.13: that code says the *request* was too
//!    large, which would send the client looking for a fault it did not commit. (Block-wise
//!    transfer, RFC 7959, is the real fix: put a [`BlockLayer`](crate::block::BlockLayer)
//!    between this layer and the application.)
//!
//! # Errors of the application
//!
//! The application's error type only has to be `Into<BoxError>`, so ordinary tower middleware
//! composes around it. An error becomes a response, never a dropped request:
//! [`tower::timeout::error::Elapsed`] and [`tower::load_shed::error::Overloaded`] (found
//! anywhere in the error's `source()` chain, so a `Buffer` in between does not hide them) become
//! **5.03 Service Unavailable** with Max-Age [`CoapConfig::retry_after`] (§5.9.3.4: a temporary
//! condition, retry later); anything else becomes **5.00 Internal Server Error** (§5.9.3.1).
//! The error response is stored for deduplication like any other, so a retransmission gets the
//! same answer (§4.5).
//!
//! Errors from the inner service's `poll_ready` are passed up as [`BoxError`].
//!
//! # Example
//!
//! ```
//! use coap_lite::{MessageClass, MessageType, Packet, RequestType, ResponseType};
//! use coaps_dtls::PeerIdentity;
//! use coaps_tower::coap::CoapLayer;
//! use coaps_tower::{BoxError, CoapRequest, Secured};
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let svc = ServiceBuilder::new()
//!     .layer(CoapLayer::new())
//!     // Ordinary tower middleware wraps the application: a timeout becomes 5.03.
//!     .timeout(Duration::from_secs(5))
//!     .concurrency_limit(64)
//!     .service_fn(|req: CoapRequest| async move {
//!         let mut resp = req.response();
//!         resp.header.code = MessageClass::Response(ResponseType::Content);
//!         resp.payload = format!("hello {:?}", req.identity).into_bytes();
//!         Ok::<_, Infallible>(resp)
//!     });
//!
//! // What the handshake layer would hand over: a confirmable GET.
//! let mut get = Packet::new();
//! get.header.set_type(MessageType::Confirmable);
//! get.header.code = MessageClass::Request(RequestType::Get);
//! get.header.message_id = 0x1234;
//! get.set_token(vec![0xab]);
//! let secured = Secured {
//!     peer: "192.0.2.1:40000".parse()?,
//!     identity: PeerIdentity::Psk(b"sensor-7".to_vec()),
//!     payload: get.to_bytes().expect("a small packet encodes"),
//!     early_data: false,
//!     handshake: coaps_tower::Handshaken::complete(),
//!     association: coaps_tower::Association::unknown(),
//! };
//!
//! let bytes = svc.oneshot(secured).await?.expect("a confirmable request is answered");
//! let resp = Packet::from_bytes(&bytes).expect("a valid response");
//! assert_eq!(resp.header.get_type(), MessageType::Acknowledgement); // piggybacked
//! assert_eq!(resp.header.message_id, 0x1234);
//! assert_eq!(resp.get_token(), &[0xab]);
//! assert_eq!(resp.payload, b"hello Psk(\"sensor-7\")");
//! # Ok(())
//! # }
//! ```

pub mod rules;

use crate::types::{Association, BoxError, CoapRequest, Secured};
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, ResponseType};
use coaps_dtls::PeerIdentity;
use pin_project_lite::pin_project;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

/// EXCHANGE_LIFETIME with the default transmission parameters (RFC 7252 §4.8.2): how long a
/// Message ID stays meaningful, hence how long a response is kept for duplicates.
pub const EXCHANGE_LIFETIME: Duration = Duration::from_secs(247);

/// EXCHANGE_LIFETIME for another ACK_TIMEOUT, the other parameters at their RFC 7252 §4.8
/// defaults (MAX_RETRANSMIT 4, ACK_RANDOM_FACTOR 1.5, MAX_LATENCY 100 s, PROCESSING_DELAY =
/// ACK_TIMEOUT): MAX_TRANSMIT_SPAN + 2 × MAX_LATENCY + PROCESSING_DELAY (§4.8.2). 247 s for 2 s.
pub fn exchange_lifetime(ack_timeout: Duration) -> Duration {
    max_transmit_span(ack_timeout) + Duration::from_secs(200) + ack_timeout
}

/// MAX_TRANSMIT_SPAN = ACK_TIMEOUT × (2^MAX_RETRANSMIT − 1) × ACK_RANDOM_FACTOR (RFC 7252
/// §4.8.2), with the defaults MAX_RETRANSMIT 4 and ACK_RANDOM_FACTOR 1.5. 45 s for 2 s.
pub fn max_transmit_span(ack_timeout: Duration) -> Duration {
    ack_timeout.saturating_mul(15).mul_f64(1.5)
}

/// MAX_TRANSMIT_WAIT = ACK_TIMEOUT × (2^(MAX_RETRANSMIT + 1) − 1) × ACK_RANDOM_FACTOR (RFC 7252
/// §4.8.2), with the same defaults. 93 s for 2 s.
pub fn max_transmit_wait(ack_timeout: Duration) -> Duration {
    ack_timeout.saturating_mul(31).mul_f64(1.5)
}

/// Default bound on the deduplication store. At the default lifetime this covers a sustained
/// 40 requests per second; each entry holds at most one response of
/// [`DEFAULT_MAX_MESSAGE_SIZE`] bytes, so the store stays under ~11 MB.
pub const DEFAULT_MAX_DEDUP_ENTRIES: usize = 10_000;

/// Default cap on an encoded response: the 1152-byte datagram of RFC 7252 §4.6 (the default
/// `CommonConfig::mtu` of `coaps-dtls`) minus the largest DTLS 1.2 record overhead of the
/// supported suites (13-byte header, 8-byte explicit nonce, 16-byte tag), so the sealed record
/// still fits the datagram.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1152 - 13 - 8 - 16;

/// How many duplicates of one confirmable request may wait for its first copy's response.
/// Beyond that, further copies are dropped: the peer retransmits, and a later copy gets the
/// stored answer.
const MAX_WAITERS: usize = 4;

/// Settings of the CoAP layer.
#[derive(Debug, Clone)]
pub struct CoapConfig {
    /// How long a response is kept to answer duplicates (RFC 7252 §4.5 and §4.8.2).
    /// Default [`EXCHANGE_LIFETIME`].
    pub exchange_lifetime: Duration,
    /// Most entries in the deduplication store; the oldest is evicted first. Default
    /// [`DEFAULT_MAX_DEDUP_ENTRIES`]. An evicted exchange's retransmission is processed again,
    /// so size this for the request rate times the lifetime.
    pub max_dedup_entries: usize,
    /// Largest encoded response; larger ones become 5.00. Default [`DEFAULT_MAX_MESSAGE_SIZE`].
    pub max_message_size: usize,
    /// Max-Age sent with 5.03 Service Unavailable (RFC 7252 §5.9.3.4), telling the client when
    /// to retry. Default 1 s.
    pub retry_after: Duration,
    /// The options the application recognises and whether it proxies (RFC 7252 §5.4.1,
    /// §5.10.2). Default [`MessageRules::default`](rules::MessageRules::default).
    pub rules: rules::MessageRules,
}

impl CoapConfig {
    /// The defaults, with the deduplication lifetime derived (RFC 7252 §4.8.2,
    /// [`exchange_lifetime`]) from the largest ACK_TIMEOUT a client on `profile` uses
    /// ([`coaps_dtls::link::LinkParams::max_ack_timeout`]): a client whose ACK_TIMEOUT follows
    /// a long RTT retransmits for longer, and its late duplicates must still be recognised.
    /// Never shorter than the default [`EXCHANGE_LIFETIME`].
    pub fn for_link(profile: coaps_dtls::LinkProfile) -> Self {
        let lifetime = exchange_lifetime(profile.params().max_ack_timeout).max(EXCHANGE_LIFETIME);
        Self { exchange_lifetime: lifetime, ..Self::default() }
    }
}

impl Default for CoapConfig {
    fn default() -> Self {
        Self {
            exchange_lifetime: EXCHANGE_LIFETIME,
            max_dedup_entries: DEFAULT_MAX_DEDUP_ENTRIES,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            retry_after: Duration::from_secs(1),
            rules: rules::MessageRules::default(),
        }
    }
}

/// A [`Layer`] producing [`Coap`] services. Each [`Layer::layer`] call gets its own
/// deduplication store, shared by the clones of the service it returns.
#[derive(Debug, Clone, Default)]
pub struct CoapLayer {
    config: CoapConfig,
    on_empty: Option<crate::observe::EmptyHook>,
}

impl CoapLayer {
    /// A layer with the default [`CoapConfig`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A layer with `config`.
    pub fn with_config(config: CoapConfig) -> Self {
        Self { config, on_empty: None }
    }

    /// Reports each Empty ACK and Reset from a peer to `hook` (they match no request here;
    /// the observe registry matches them to its notifications, RFC 7641 §3.6, §4.5).
    pub fn on_empty(mut self, hook: crate::observe::EmptyHook) -> Self {
        self.on_empty = Some(hook);
        self
    }
}

impl<S> Layer<S> for CoapLayer {
    type Service = Coap<S>;
    fn layer(&self, inner: S) -> Coap<S> {
        let mut c = Coap::with_config(inner, self.config.clone());
        if let Some(h) = &self.on_empty
            && let Some(shared) = Arc::get_mut(&mut c.shared)
        {
            shared.on_empty = Some(h.clone());
        }
        c
    }
}

/// The CoAP message layer over an application service. See the [module docs](self).
pub struct Coap<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for Coap<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), shared: self.shared.clone() }
    }
}

impl<S> fmt::Debug for Coap<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coap")
            .field("config", &self.shared.config)
            .field("dedup_entries", &self.shared.lock().entries.len())
            .finish_non_exhaustive()
    }
}

impl<S> Coap<S> {
    /// Wraps `inner` with the default configuration.
    pub fn new(inner: S) -> Self {
        Self::with_config(inner, CoapConfig::default())
    }

    /// Wraps `inner` with `config`.
    pub fn with_config(inner: S, config: CoapConfig) -> Self {
        // Message IDs of our non-confirmable responses start at a random value (RFC 7252 §4.4)
        // so they do not collide across restarts.
        let mut seed = [0u8; 2];
        coaps_dtls::crypto::Rng::fill(&mut coaps_dtls::crypto::SeededRng::from_os(), &mut seed);
        let shared = Shared {
            config,
            store: Mutex::new(Store::default()),
            next_mid: AtomicU16::new(u16::from_be_bytes(seed)),
            on_empty: None,
        };
        Self { inner, shared: Arc::new(shared) }
    }

    /// Number of entries in the deduplication store (after expiring old ones).
    pub fn dedup_len(&self) -> usize {
        let mut store = self.shared.lock();
        store.expire(Instant::now(), &self.shared.config);
        store.entries.len()
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, E> Service<Secured> for Coap<S>
where
    S: Service<CoapRequest, Response = Packet, Error = E>,
    E: Into<BoxError>,
{
    type Response = Option<Vec<u8>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, msg: Secured) -> Self::Future {
        let data = &msg.payload;
        let Some(head) = Head::parse(data) else {
            tracing::trace!(peer = %msg.peer, len = data.len(), "CoAP: not a CoAP v1 message, dropped");
            return ResponseFuture::ready(None);
        };
        let con = match head.ty {
            MessageType::Confirmable => true,
            MessageType::NonConfirmable => false,
            // §4.2: ACK/RST that match nothing are silently ignored; this layer sends no CON.
            // Notifications (RFC 7641) are matched by the observe registry, if any.
            ty @ (MessageType::Acknowledgement | MessageType::Reset) => {
                if let (0, Some(h)) = (head.code, &self.shared.on_empty) {
                    h.invoke(msg.peer, ty, head.mid);
                }
                return ResponseFuture::ready(None);
            }
        };
        // §4.2/§4.3: reject what we lack context for. A CON gets a Reset, a NON is ignored.
        let reject = || ResponseFuture::ready(con.then(|| reset(head.mid)));
        if head.code == 0 || head.code >> 5 != 0 {
            // Empty (ping, or an Empty message with bytes after the header: a format error), a
            // response we never asked for, or a reserved class.
            return reject();
        }
        // coap-lite accepts some format errors (§3): the raw bytes decide.
        let scanned = match rules::scan(data) {
            Ok(s) => s,
            Err(error) => {
                tracing::debug!(peer = %msg.peer, ?error, "CoAP: message format error");
                return reject();
            }
        };
        let Ok(mut packet) = Packet::from_bytes(data) else { return reject() };
        let MessageClass::Request(_) = packet.header.code else {
            // 0.08–0.31: a method we do not know (§5.8).
            let resp = self.shared.error_packet(ResponseType::MethodNotAllowed);
            let bytes = self.shared.encode(resp, con, head.mid, packet.get_token());
            return ResponseFuture::ready(Some(bytes));
        };
        match self.shared.config.rules.check(&scanned.options) {
            Ok(checked) => rules::strip(&mut packet, &checked.strip),
            Err(refusal) => {
                tracing::debug!(peer = %msg.peer, ?refusal, con, "CoAP: request refused before the application");
                let answer = refusal.response_code(con).map(|code| {
                    let mut resp = self.shared.error_packet(code);
                    resp.payload = refusal.diagnostic().into_bytes();
                    self.shared.encode(resp, con, head.mid, packet.get_token())
                });
                return ResponseFuture::ready(answer);
            }
        }

        let key = (Who::of(msg.peer, &msg.identity, msg.association), head.mid, token_key(packet.get_token()));
        let id = {
            let mut store = self.shared.lock();
            let now = Instant::now();
            store.expire(now, &self.shared.config);
            // A request from a completed handshake (1-RTT data) takes over an exchange still
            // waiting on another association's handshake (0-RTT data deferred by
            // `EarlyDataLayer`): that one never ran, and may belong to a replayed copy whose
            // handshake never completes (issue 10). The superseded copy is then never run.
            if let Some(entry) = store.entries.get(&key)
                && matches!(entry.state, EntryState::Pending(_))
                && !entry.handshake.is_complete()
                && msg.handshake.is_complete()
                && let Some(old) = store.entries.remove(&key)
            {
                old.superseded.store(true, Ordering::Release);
            }
            if let Some(entry) = store.entries.get_mut(&key) {
                return match &mut entry.state {
                    // §4.5: the same ACK for every copy of a CON; copies of a NON are ignored.
                    EntryState::Done(bytes) => ResponseFuture::ready(if con { bytes.clone() } else { None }),
                    EntryState::Pending(waiters) if con && waiters.len() < MAX_WAITERS => {
                        let (tx, rx) = oneshot::channel();
                        waiters.push(tx);
                        ResponseFuture { kind: Kind::Duplicate { rx } }
                    }
                    EntryState::Pending(_) => ResponseFuture::ready(None),
                };
            }
            store.insert(key, now, &self.shared.config, msg.handshake.clone())
        };
        let exchange = Exchange {
            shared: self.shared.clone(),
            key,
            id: id.0,
            superseded: id.1,
            con,
            mid: head.mid,
            token: packet.get_token().to_vec(),
            finished: false,
        };
        let req = CoapRequest {
            message: packet,
            peer: msg.peer,
            identity: msg.identity,
            early_data: msg.early_data,
            handshake: msg.handshake,
            association: msg.association,
        };
        ResponseFuture { kind: Kind::Inner { future: self.inner.call(req), exchange: Some(exchange) } }
    }
}

/// The four fixed header bytes (RFC 7252 §3).
#[derive(Debug, Clone, Copy)]
struct Head {
    ty: MessageType,
    code: u8,
    mid: u16,
}

impl Head {
    /// `None` for what must be silently dropped: shorter than a header, or not version 1 (§3).
    fn parse(data: &[u8]) -> Option<Self> {
        let [b0, code, m0, m1, ..] = *data else { return None };
        if b0 >> 6 != 1 {
            return None;
        }
        let ty = match (b0 >> 4) & 0b11 {
            0 => MessageType::Confirmable,
            1 => MessageType::NonConfirmable,
            2 => MessageType::Acknowledgement,
            _ => MessageType::Reset,
        };
        Some(Self { ty, code, mid: u16::from_be_bytes([m0, m1]) })
    }
}

/// An Empty Reset echoing `mid` (RFC 7252 §4.2): version 1, type RST, no token.
pub(crate) fn reset(mid: u16) -> Vec<u8> {
    let [a, b] = mid.to_be_bytes();
    vec![0x70, 0x00, a, b]
}

/// An Empty Acknowledgement echoing `mid` (RFC 7252 §4.2).
pub(crate) fn empty_ack(mid: u16) -> Vec<u8> {
    let [a, b] = mid.to_be_bytes();
    vec![0x60, 0x00, a, b]
}

/// (endpoint, Message ID, token): the token is part of the key because many devices may
/// share one PSK identity (each with its own random Message IDs, which then collide), while a
/// retransmission, and a replayed copy, always repeat the token of the original.
type Key = (Who, u16, [u8; 9]);

/// A token (at most 8 bytes, RFC 7252 §3) as a fixed key: its length, then its bytes.
fn token_key(token: &[u8]) -> [u8; 9] {
    let mut k = [0u8; 9];
    let n = token.len().min(8);
    k[0] = n as u8;
    k[1..=n].copy_from_slice(&token[..n]);
    k
}

/// The CoAP endpoint a Message ID belongs to (RFC 7252 §4.5, §9.1.1): the security
/// association, named by the handshake layer (its ClientHello random), together with the
/// authenticated identity (a SHA-256 digest, so a certificate is not copied into every entry).
/// Without a known association (a record built by hand): the identity, or the address when
/// anonymous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Who {
    Address(SocketAddr),
    Identity([u8; 32]),
    Association { identity: [u8; 32], client_random: [u8; 32] },
}

impl Who {
    fn of(peer: SocketAddr, identity: &PeerIdentity, association: Association) -> Self {
        use coaps_dtls::crypto::CryptoProvider;
        let h = |tag: &[u8], bytes: &[u8]| coaps_dtls::crypto::rustcrypto::RustCrypto.sha256_parts(&[tag, bytes]);
        let digest = match identity {
            PeerIdentity::Anonymous => h(b"anonymous", &[]),
            PeerIdentity::Psk(id) => h(b"psk", id),
            PeerIdentity::Certificate(chain) => h(b"x509", chain.first().map_or(&[][..], Vec::as_slice)),
            PeerIdentity::RawPublicKey(spki) => h(b"rpk", spki),
        };
        match (association.client_random(), identity) {
            (Some(&client_random), _) => Self::Association { identity: digest, client_random },
            (None, PeerIdentity::Anonymous) => Self::Address(peer),
            (None, _) => Self::Identity(digest),
        }
    }
}

struct Shared {
    config: CoapConfig,
    store: Mutex<Store>,
    next_mid: AtomicU16,
    on_empty: Option<crate::observe::EmptyHook>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves the store consistent enough: entries are only
        // inserted or removed whole.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn error_packet(&self, code: ResponseType) -> Packet {
        let mut p = Packet::new();
        p.header.code = MessageClass::Response(code);
        if code == ResponseType::ServiceUnavailable {
            let secs = u32::try_from(self.config.retry_after.as_secs()).unwrap_or(u32::MAX);
            p.add_option(CoapOption::MaxAge, uint_option(secs));
        }
        p
    }

    /// Shapes `resp` as the answer to the request (`con`, `mid`, `token`) and encodes it within
    /// the size cap.
    fn encode(&self, mut resp: Packet, con: bool, mid: u16, token: &[u8]) -> Vec<u8> {
        let class = u8::from(resp.header.code) >> 5;
        if !matches!(class, 2 | 4 | 5) || !matches!(resp.header.code, MessageClass::Response(_)) {
            tracing::warn!(code = %resp.header.code, "CoAP: application answered with a non-response code; sending 5.00");
            resp = self.error_packet(ResponseType::InternalServerError);
        }
        let shape = |p: &mut Packet| {
            p.header.set_version(1);
            if con {
                p.header.set_type(MessageType::Acknowledgement);
                p.header.message_id = mid;
            } else {
                p.header.set_type(MessageType::NonConfirmable);
                p.header.message_id = self.next_mid.fetch_add(1, Ordering::Relaxed);
            }
            p.set_token(token.to_vec());
        };
        shape(&mut resp);
        match resp.to_bytes_with_limit(self.config.max_message_size) {
            Ok(bytes) => bytes,
            Err(_) => {
                tracing::warn!(limit = self.config.max_message_size, "CoAP: response too large; sending 5.00");
                let mut p = self.error_packet(ResponseType::InternalServerError);
                p.payload = b"response too large".to_vec();
                shape(&mut p);
                // Header, token (≤ 8) and an 18-byte diagnostic: always small.
                p.to_bytes_unlimited().unwrap_or_else(|_| reset(mid))
            }
        }
    }
}

/// A CoAP uint option value: big-endian, no leading zero bytes (RFC 7252 §3.2).
fn uint_option(v: u32) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|&&x| x == 0).count();
    b[skip..].to_vec()
}

/// Whether `err` says the request was never run ([`crate::early_data::NotRun`]).
fn is_not_run(err: &BoxError) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err.as_ref());
    while let Some(e) = cur {
        if e.is::<crate::early_data::NotRun>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The response code for an error of the application service.
fn error_code(err: &BoxError) -> ResponseType {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err.as_ref());
    while let Some(e) = cur {
        if e.is::<tower::timeout::error::Elapsed>() || e.is::<tower::load_shed::error::Overloaded>() {
            return ResponseType::ServiceUnavailable;
        }
        cur = e.source();
    }
    ResponseType::InternalServerError
}

enum EntryState {
    /// The first copy is with the application; duplicates of a CON wait here.
    Pending(Vec<oneshot::Sender<Option<Vec<u8>>>>),
    /// The answer to replay (`None` for a NON request: duplicates are ignored).
    Done(Option<Vec<u8>>),
}

struct Entry {
    /// Distinguishes this entry from a later one under the same key, so a stale
    /// [`Exchange`] never touches its successor.
    id: u64,
    state: EntryState,
    /// The handshake of the association the first copy came from.
    handshake: crate::types::Handshaken,
    /// Set when a 1-RTT copy took the exchange over: the first copy must not run.
    superseded: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Default)]
struct Store {
    entries: HashMap<Key, Entry>,
    /// Insertion order (key, id, time), oldest first: every live entry has exactly one element
    /// here, so bounding this bounds the map.
    order: VecDeque<(Key, u64, Instant)>,
    next_id: u64,
}

impl Store {
    fn remove_if(&mut self, key: &Key, id: u64) -> Option<Entry> {
        match self.entries.get(key) {
            Some(e) if e.id == id => self.entries.remove(key),
            _ => None,
        }
    }

    fn expire(&mut self, now: Instant, config: &CoapConfig) {
        while let Some(&(key, id, at)) = self.order.front() {
            if now.saturating_duration_since(at) < config.exchange_lifetime {
                break;
            }
            self.order.pop_front();
            self.remove_if(&key, id);
        }
    }

    fn insert(
        &mut self,
        key: Key,
        now: Instant,
        config: &CoapConfig,
        handshake: crate::types::Handshaken,
    ) -> (u64, Arc<std::sync::atomic::AtomicBool>) {
        while self.order.len() >= config.max_dedup_entries.max(1) {
            let Some((k, id, _)) = self.order.pop_front() else { break };
            if self.remove_if(&k, id).is_some() {
                tracing::debug!(peer = ?k.0, mid = k.1, "CoAP: dedup store full, evicted the oldest exchange");
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let superseded = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let entry = Entry { id, state: EntryState::Pending(Vec::new()), handshake, superseded: superseded.clone() };
        self.entries.insert(key, entry);
        self.order.push_back((key, id, now));
        (id, superseded)
    }
}

/// The first copy of a request, on its way through the application. Dropped unfinished (the
/// caller cancelled), it removes its pending entry so a retransmission is processed afresh.
struct Exchange {
    shared: Arc<Shared>,
    key: Key,
    id: u64,
    superseded: Arc<std::sync::atomic::AtomicBool>,
    con: bool,
    mid: u16,
    token: Vec<u8>,
    finished: bool,
}

impl Exchange {
    fn finish(mut self, resp: Packet) -> Vec<u8> {
        self.finished = true;
        let bytes = self.shared.encode(resp, self.con, self.mid, &self.token);
        let mut store = self.shared.lock();
        if let Some(entry) = store.entries.get_mut(&self.key).filter(|e| e.id == self.id) {
            let stored = self.con.then(|| bytes.clone());
            if let EntryState::Pending(waiters) = std::mem::replace(&mut entry.state, EntryState::Done(stored)) {
                for w in waiters {
                    let _ = w.send(Some(bytes.clone()));
                }
            }
        }
        bytes
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if !self.finished {
            // Dropping the entry drops its waiters' senders: they resolve to "no answer".
            let mut store = self.shared.lock();
            store.remove_if(&self.key, self.id);
        }
    }
}

pin_project! {
    /// The future returned by [`Coap`]: the bytes to send back (or nothing).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        // Answered without the application: a Reset, a replay, 4.05, or nothing.
        Ready { response: Option<Option<Vec<u8>>> },
        // A duplicate waiting for the first copy's answer.
        Duplicate { rx: oneshot::Receiver<Option<Vec<u8>>> },
        // The first copy, with the application.
        Inner { #[pin] future: F, exchange: Option<Exchange> },
    }
}

impl<F> ResponseFuture<F> {
    fn ready(response: Option<Vec<u8>>) -> Self {
        Self { kind: Kind::Ready { response: Some(response) } }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Ready { .. } => "ready",
            Kind::Duplicate { .. } => "duplicate",
            Kind::Inner { .. } => "inner",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Packet, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Option<Vec<u8>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Ready { response } => Poll::Ready(Ok(response.take().flatten())),
            // The first copy was cancelled: no answer; the peer's next retransmission is
            // processed afresh.
            KindProj::Duplicate { rx } => Poll::Ready(Ok(ready!(Pin::new(rx).poll(cx)).ok().flatten())),
            KindProj::Inner { future, exchange } => {
                if exchange.as_ref().is_some_and(|x| x.superseded.load(Ordering::Acquire)) {
                    // A 1-RTT copy took over (see `call`): this one never reaches the
                    // application; dropping the exchange leaves its successor alone.
                    exchange.take();
                    return Poll::Ready(Ok(None));
                }
                let result = ready!(future.poll(cx));
                let Some(exchange) = exchange.take() else { return Poll::Ready(Ok(None)) };
                let resp = match result {
                    Ok(resp) => resp,
                    Err(e) => {
                        let e: BoxError = e.into();
                        if is_not_run(&e) {
                            // Never run (0-RTT data whose handshake never completed): no
                            // answer, and no stored one, so a later copy is processed afresh.
                            drop(exchange);
                            return Poll::Ready(Ok(None));
                        }
                        let code = error_code(&e);
                        tracing::debug!(error = %e, code = %MessageClass::Response(code), "CoAP: application error");
                        exchange.shared.error_packet(code)
                    }
                };
                Poll::Ready(Ok(Some(exchange.finish(resp))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_values_follow_rfc7252() {
        assert_eq!(exchange_lifetime(Duration::from_secs(2)), EXCHANGE_LIFETIME);
        assert_eq!(max_transmit_span(Duration::from_secs(2)), Duration::from_secs(45));
        assert_eq!(max_transmit_wait(Duration::from_secs(2)), Duration::from_secs(93));
        assert_eq!(CoapConfig::for_link(coaps_dtls::LinkProfile::Ethernet).exchange_lifetime, EXCHANGE_LIFETIME);
        // NB-IoT: ACK_TIMEOUT up to 30 s, 30 × 15 × 1.5 + 200 + 30.
        assert_eq!(CoapConfig::for_link(coaps_dtls::LinkProfile::NbIot).exchange_lifetime, Duration::from_secs(905));
    }

    #[test]
    fn head_parse_rejects_short_and_wrong_version() {
        assert!(Head::parse(&[0x40, 0x01, 0x00]).is_none());
        assert!(Head::parse(&[0x80, 0x01, 0x00, 0x01]).is_none(), "version 2");
        let h = Head::parse(&[0x50, 0x02, 0x12, 0x34]).unwrap();
        assert_eq!(h.ty, MessageType::NonConfirmable);
        assert_eq!((h.code, h.mid), (0x02, 0x1234));
    }

    #[test]
    fn uint_option_is_minimal() {
        assert_eq!(uint_option(0), Vec::<u8>::new());
        assert_eq!(uint_option(1), vec![1]);
        assert_eq!(uint_option(0x0100), vec![1, 0]);
    }

    #[test]
    fn reset_and_ack_bytes() {
        let r = Packet::from_bytes(&reset(0xbeef)).unwrap();
        assert_eq!(r.header.get_type(), MessageType::Reset);
        assert_eq!(r.header.code, MessageClass::Empty);
        assert_eq!(r.header.message_id, 0xbeef);
        let a = Packet::from_bytes(&empty_ack(7)).unwrap();
        assert_eq!(a.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(a.header.message_id, 7);
    }

    #[test]
    fn store_bounded_and_expiring() {
        let cfg = CoapConfig { max_dedup_entries: 3, exchange_lifetime: Duration::from_secs(10), ..Default::default() };
        let mut s = Store::default();
        let t0 = Instant::now();
        let peer = Who::Address("127.0.0.1:1".parse().unwrap());
        for mid in 0..10u16 {
            s.insert((peer, mid, token_key(&[])), t0, &cfg, Default::default());
            assert!(s.entries.len() <= 3 && s.order.len() <= 3);
        }
        assert!(
            s.entries.contains_key(&(peer, 9, token_key(&[]))) && !s.entries.contains_key(&(peer, 6, token_key(&[])))
        );
        s.expire(t0 + Duration::from_secs(10), &cfg);
        assert!(s.entries.is_empty() && s.order.is_empty());
    }
}
