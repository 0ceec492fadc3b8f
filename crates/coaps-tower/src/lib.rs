//! # coaps-tower
//!
//! CoAPS as a stack of Tower layers over the sans-IO engine in `coaps-dtls`.
//!
//! ```text
//! UdpSocket ─▶ serve() ─▶ CookieLayer ─▶ HandshakeLayer ─▶ CoapLayer ─▶ your Service<CoapRequest>
//!              datagrams   stateless      association       coap-lite codec,
//!                          HelloVerify-   table, timers,    dedup (RFC 7252 §4.5),
//!                          Request        seal / open       piggybacked ACK, RST
//! ```
//!
//! A [`ResumptionLayer`] between the cookie and handshake layers keeps resumable sessions in a
//! moka cache or, with the `redis` feature, in Redis shared by a cluster ([`resumption`]).
//!
//! Between the CoAP layer and the application, [`block::BlockLayer`] does block-wise transfer
//! (RFC 7959) and [`observe::ObserveLayer`] registers observers (RFC 7641); the [`Client`]
//! side of both is in [`block::client`] and [`observe::client`].
//!
//! Datagram-level services take a [`Datagram`] and answer with the datagrams to send
//! ([`Transmits`]). The handshake layer hands decrypted application data to its inner service
//! as [`Secured`] (with the peer's authenticated identity) and seals what that service answers.
//! The CoAP layer turns [`Secured`] into [`CoapRequest`]s for the application.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod block;
pub mod client;
pub mod coap;
pub mod cookie;
pub mod early_data;
pub mod handshake;
mod log;
pub mod observe;
pub mod resumption;
pub mod retransmit;
pub mod session_cache;
pub mod shard;
pub mod telemetry;
pub mod transport;
pub mod types;

pub use client::{Client, ClientOptions, ClientStats, ConnectionInfo, Error as ClientError, TransmissionParams};
pub use coap::{Coap, CoapConfig, CoapLayer};
pub use cookie::{Cookie, CookieLayer, CookieStats};
pub use early_data::{EarlyData, EarlyDataLayer, EarlyDataPolicy, EarlyDataStats};
pub use handshake::{Associations, Handshake, HandshakeLayer, HandshakeStats};
pub use resumption::{AsyncSessionStore, MokaConfig, MokaStore, Resumption, ResumptionLayer, ResumptionStats};
pub use retransmit::{RetransmitLayer, RetransmitStats};
pub use session_cache::SessionCache;
pub use transport::{OutOfBand, Server, serve};
pub use types::*;
