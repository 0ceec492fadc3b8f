//! The 0-RTT idempotency filter: what a CoAP request that arrived as DTLS 1.3 early data may
//! do (issue 10; the profile is written down in `docs/0rtt.md`).
//!
//! 0-RTT data can be replayed by anyone who captured it (RFC 8446 §8): the copy of a
//! ClientHello with its early request, sent to another node, from another address, or before
//! the original (a "pre-play"), may be accepted where the original is not. [`EarlyDataLayer`]
//! sits between [`CoapLayer`](crate::CoapLayer) and the application and, for every request
//! with [`CoapRequest::early_data`] set:
//!
//! * **safe methods** (GET, FETCH: RFC 7252 §5.8, RFC 8132 §2) run at once and their answer
//!   leaves as 0.5-RTT data with the server's flight (one round trip);
//! * **every other method**, by default ([`EarlyDataPolicy::Defer`]), is **held** until the
//!   association's handshake completes ([`Handshaken`]: the client's Finished proves a live
//!   client that holds the keys, which a replayed flight never has) and then runs once; its
//!   answer leaves with the handshake's last flight, so it costs no round trip more than the
//!   same request sent as 1-RTT data. Holding is bounded per association by a count
//!   ([`EarlyDataLayer::max_deferred`]) and by bytes ([`EarlyDataLayer::max_deferred_bytes`],
//!   default the engine's `max_early_data_size`), and in time
//!   ([`EarlyDataLayer::defer_timeout`]); what exceeds them, and what is held when the
//!   handshake fails, times out or the association is replaced, is **dropped, counted and never
//!   run**, and leaves no answer in the CoAP deduplication store, so the client's 1-RTT
//!   retransmission runs afresh;
//! * with [`EarlyDataPolicy::Reject`] it is answered **4.01 Unauthorized with an Echo option**
//!   (RFC 9175 §2.4) without reaching the application. The Echo value is a timestamp and an
//!   HMAC-SHA-256 tag over it and the peer (its authenticated identity, or its address when
//!   anonymous), under a key shared by a cluster ([`EarlyDataLayer::echo_key`]). The client
//!   repeats the request after the handshake with the Echo value; a 1-RTT request whose Echo
//!   is forged, stale ([`EarlyDataLayer::echo_lifetime`]) or another peer's gets 4.01 with a
//!   fresh Echo and never runs;
//! * an **allow-list** ([`EarlyDataLayer::allow`]: method + path pattern) runs what the
//!   application knows to be idempotent at once, too.
//!
//! Requests that arrived as 1-RTT data pass untouched (with [`EarlyDataPolicy::Reject`], their
//! Echo option, if any, is checked first).
//!
//! # Example
//!
//! ```
//! use coap_lite::{MessageClass, MessageType, Packet, RequestType, ResponseType};
//! use coaps_dtls::PeerIdentity;
//! use coaps_tower::early_data::{EarlyDataLayer, EarlyDataPolicy, ECHO};
//! use coaps_tower::{BoxError, CoapLayer, CoapRequest, Handshaken, Secured};
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let svc = ServiceBuilder::new()
//!     .layer(CoapLayer::new())
//!     .layer(EarlyDataLayer::new().policy(EarlyDataPolicy::Reject))
//!     .service_fn(|req: CoapRequest| async move {
//!         let mut resp = req.response();
//!         resp.header.code = MessageClass::Response(ResponseType::Changed);
//!         Ok::<_, Infallible>(resp)
//!     });
//!
//! // A POST that arrived as 0-RTT data, its handshake not complete yet.
//! let mut post = Packet::new();
//! post.header.set_type(MessageType::Confirmable);
//! post.header.code = MessageClass::Request(RequestType::Post);
//! post.header.message_id = 7;
//! let (_finished, handshake) = Handshaken::pending();
//! let secured = Secured {
//!     peer: "192.0.2.1:40000".parse()?,
//!     identity: PeerIdentity::Psk(b"door-7".to_vec()),
//!     payload: post.to_bytes().expect("a small packet encodes"),
//!     early_data: true,
//!     handshake,
//!     association: coaps_tower::Association::unknown(),
//! };
//! let bytes = svc.oneshot(secured).await?.expect("answered");
//! let resp = Packet::from_bytes(&bytes).expect("a valid response");
//! assert_eq!(resp.header.code, MessageClass::Response(ResponseType::Unauthorized));
//! assert!(resp.get_option(coap_lite::CoapOption::Unknown(ECHO)).is_some());
//! # Ok(())
//! # }
//! ```
//!
//! [`CoapRequest::early_data`]: crate::CoapRequest::early_data
//! [`Handshaken`]: crate::Handshaken

mod echo;
mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::{
    AllowRule, DEFAULT_DEFER_TIMEOUT, DEFAULT_ECHO_LIFETIME, DEFAULT_MAX_DEFERRED, DEFAULT_MAX_DEFERRED_BYTES,
    EarlyDataLayer, EarlyDataPolicy, EarlyDataStats,
};
pub use service::EarlyData;

/// The CoAP Echo option number (RFC 9175 §2.2.1).
pub const ECHO: u16 = 252;

/// The error a held 0-RTT request resolves to when it is never run (its handshake failed,
/// timed out or was replaced, or it exceeded the limits). [`CoapLayer`](crate::CoapLayer)
/// answers nothing for it and stores nothing, so a later copy runs afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotRun;

impl std::fmt::Display for NotRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("0-RTT request not run: its handshake never completed or it exceeded the limits")
    }
}

impl std::error::Error for NotRun {}
