//! # coaps-dtls
//!
//! A sans-IO DTLS 1.2 (RFC 6347) engine for CoAPS. It performs no I/O, reads no clock and owns
//! no thread: datagrams and time go in through `handle_*`, datagrams, timers and events come
//! out through `poll_*`. Randomness is injected and seedable, so every handshake can be
//! replayed.
//!
//! * [`Endpoint`] multiplexes many peers behind one socket, behind its stateless cookie
//!   [`Gate`] (the same gate the Tower cookie layer runs in front of it).
//! * [`Connection`] is one association.
//! * [`ServerConfig`] / [`ClientConfig`] hold credentials, suites, timers and limits.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auto;
pub mod cert;
pub mod codec;
pub mod config;
pub mod connection;
mod connection13;
pub mod crypto;
pub mod early13;
pub mod endpoint;
pub mod error;
pub mod gate;
pub mod handshake;
pub mod msgs;
pub mod msgs13;
pub mod record;
pub mod record13;
pub mod resumption;
pub mod suites;
mod types;

/// The cookie secrets and views, at their former path (now [`gate::cookie`]).
pub use gate::cookie;

pub use config::{
    CertifiedKey, ClientAuth, ClientConfig, CommonConfig, DtlsVersion, PeerVerifier, Psk, PskStore, ServerConfig,
    StaticPsks,
};
pub use connection::Connection;
pub use early13::{EarlyDataConfig, EarlyDataContext, ResumptionKeyExchange};
pub use endpoint::{DatagramMeta, Endpoint, EndpointStats};
pub use error::Error;
pub use gate::{Gate, GateId, GateStats, Proof, Verdict};
pub use resumption::{MemorySessionStore, Session, SessionStore};
pub use types::{CloseReason, Event, PeerIdentity, Role, Stats, Transmit};
