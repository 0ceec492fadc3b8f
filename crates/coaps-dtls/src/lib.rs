//! # coaps-dtls
//!
//! A sans-IO DTLS 1.2 (RFC 6347) engine for CoAPS. It performs no I/O, reads no clock and owns
//! no thread: datagrams and time go in through `handle_*`, datagrams, timers and events come
//! out through `poll_*`. Randomness is injected and seedable, so every handshake can be
//! replayed.
//!
//! * [`Endpoint`] multiplexes many peers behind one socket, with the stateless cookie gate.
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
pub mod cookie;
pub mod crypto;
pub mod early13;
pub mod endpoint;
pub mod error;
pub mod handshake;
pub mod msgs;
pub mod msgs13;
pub mod record;
pub mod record13;
pub mod resumption;
pub mod suites;
mod types;

pub use config::{
    CertifiedKey, ClientAuth, ClientConfig, CommonConfig, DtlsVersion, PeerVerifier, Psk, PskStore, ServerConfig,
    StaticPsks,
};
pub use connection::Connection;
pub use early13::{EarlyDataConfig, EarlyDataContext, ResumptionKeyExchange};
pub use endpoint::{DatagramMeta, Endpoint, EndpointStats, Stateless13, StatelessOutcome};
pub use error::Error;
pub use resumption::{
    FetchedSession, MemorySessionStore, OfferedSessions, Session, SessionDecodeError, SessionStore, offered_sessions,
};
pub use types::{CloseReason, Event, PeerIdentity, Role, Stats, Transmit};
