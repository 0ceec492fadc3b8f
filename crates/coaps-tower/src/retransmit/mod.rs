//! Per-peer retransmission tuning for the handshake layer: RTT estimates (RFC 6298) that size
//! the engine's retransmission timers per association, by [`LinkProfile`].
//!
//! [`RetransmitLayer`] sits between the [`CookieLayer`](crate::CookieLayer) and the
//! [`HandshakeLayer`](crate::HandshakeLayer), at the datagram level:
//!
//! ```text
//! CookieLayer ─▶ RetransmitLayer ─▶ HandshakeLayer ─▶ …
//!  measures the   takes the cookie    the engine builds each association's policy from the
//!  cookie RTT     RTT as a sample     same LinkPolicyFactory; its samples feed the table
//! ```
//!
//! * The first sample of a peer is the cookie round trip the cookie layer measured
//!   ([`CookieVerified::rtt_sample`](crate::CookieVerified::rtt_sample)): the layer records it
//!   before the ClientHello reaches the handshake layer, so the association created for it
//!   already sizes its first flight from it.
//! * Later samples come from the engine: each association's policy
//!   ([`coaps_dtls::link::LinkPolicy`]) reports the round trips of flights sent once and, in
//!   DTLS 1.3, of ACKs (Karn's rule, RFC 6298 §3) to the same per-peer table, so the next
//!   association of that peer starts from its estimate.
//! * The table is bounded ([`LinkPolicyFactory::with_capacity`], least recently used peers
//!   evicted), and the profile can be chosen per peer by address prefix
//!   ([`LinkPolicyFactory::with_prefix`]).
//!
//! The engine's policy comes from its configuration: call [`RetransmitLayer::install`] on the
//! [`ServerConfig`](coaps_dtls::ServerConfig) before building the handshake layer from it. The
//! installed factory leaves the cookie sample to this layer
//! ([`LinkPolicyFactory::take_cookie_samples`]), so it is not counted twice. Without a cookie
//! layer in front (the endpoint's own gate), install a plain [`LinkPolicyFactory`] instead.
//! DTLS 1.3 cookies then outlive the installed profiles' longest handshake budget by
//! themselves (a 1.3 client takes one HelloRetryRequest only, RFC 8446 §4.1.4; see
//! [`cookie13_config`](coaps_dtls::gate::cookie13_config)); a DTLS 1.2 client whose late second
//! ClientHello carries an expired cookie gets a fresh HelloVerifyRequest, so 1.2 cookies can
//! keep their lifetime ([`LinkProfile::cookie_lifetime`] says how long they would have to live
//! to spare that round trip).
//!
//! # Example
//!
//! ```
//! use coaps_dtls::crypto::SeededRng;
//! use coaps_dtls::{ClientConfig, DtlsVersion, Endpoint, Event, LinkProfile, Psk, ServerConfig, StaticPsks};
//! use coaps_tower::retransmit::RetransmitLayer;
//! use coaps_tower::{BoxError, CookieLayer, Datagram, HandshakeLayer, Secured};
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let psk = Psk::new("device-1", b"0123456789abcdef".to_vec())?;
//! let mut server = ServerConfig { psks: Some(Arc::new(StaticPsks(vec![psk.clone()]))), ..ServerConfig::default() };
//! let retransmit = RetransmitLayer::new(LinkProfile::Auto.policy());
//! retransmit.install(&mut server);
//! let server = Arc::new(server);
//! let cookies = CookieLayer::for_server(&server);
//! let handshake = HandshakeLayer::builder(server).behind(&cookies).build();
//! let mut service = ServiceBuilder::new()
//!     .layer(cookies)
//!     .layer(retransmit.clone())
//!     .layer(handshake)
//!     .service(service_fn(|s: Secured| async move { Ok::<_, BoxError>(Some(s.payload)) }));
//!
//! // A DTLS 1.3 client 1.5 s away (a virtual clock: each datagram arrives 750 ms later).
//! let (server_addr, client_addr) = ("192.0.2.1:5684".parse()?, "192.0.2.2:40000".parse()?);
//! let mut client = Endpoint::client(SeededRng::from_seed_u64(1));
//! let config = Arc::new(ClientConfig { psk: Some(psk), version: DtlsVersion::Dtls13, ..ClientConfig::default() });
//! let mut now = Instant::now();
//! client.connect(now, server_addr, config, "localhost", None)?;
//! for _ in 0..4 {
//!     let sent: Vec<_> = std::iter::from_fn(|| client.poll_transmit()).collect();
//!     now += Duration::from_millis(750);
//!     for t in sent {
//!         let mut d = Datagram::new(client_addr, t.payload);
//!         d.received_at = now;
//!         for answer in service.ready().await?.call(d).await? {
//!             client.handle_datagram(now + Duration::from_millis(750), server_addr, &answer.payload);
//!         }
//!     }
//!     now += Duration::from_millis(750);
//! }
//! assert!(std::iter::from_fn(|| client.poll_event()).any(|(_, e)| matches!(e, Event::Connected { .. })));
//! // The cookie round trip was the peer's first sample, the server's flight answered by the
//! // client's Finished a further one (reported by the engine): `auto` now waits at least
//! // 2 × SRTT, where the RFC's 1 s would have fired before every answer.
//! assert_eq!(retransmit.stats().cookie_samples, 1);
//! let estimate = retransmit.factory().estimate(client_addr).expect("an estimate");
//! assert!(estimate.samples() >= 2);
//! let rtt = estimate.srtt();
//! assert!(rtt >= Duration::from_millis(1500) && rtt < Duration::from_millis(1501));
//! assert!(retransmit.factory().initial_timeout(client_addr) >= rtt * 2);
//! # Ok(())
//! # }
//! ```

mod future;
mod layer;
mod service;

pub use coaps_dtls::{LinkPolicyFactory, LinkProfile};
pub use future::ResponseFuture;
pub use layer::{RetransmitLayer, RetransmitStats};
pub use service::Retransmit;
