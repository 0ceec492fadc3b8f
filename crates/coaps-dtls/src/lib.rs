//! # coaps-dtls
//!
//! A sans-IO DTLS engine for CoAPS: DTLS 1.2 (RFC 6347) and DTLS 1.3 (RFC 9147), both roles.
//! It performs no I/O, reads no clock and owns no thread: datagrams and time go in through
//! `handle_*`, datagrams, timers and events come out through `poll_*`. Randomness is injected
//! and seedable, so every handshake can be replayed.
//!
//! * [`Endpoint`] multiplexes many peers behind one socket, behind its stateless cookie
//!   [`Gate`] (the same gate the Tower cookie layer runs in front of it).
//! * [`Connection`] is one association, DTLS 1.2 or 1.3 (or a dual-version client that lets
//!   the server choose, [`DtlsVersion::Auto`]).
//! * [`ServerConfig`] / [`ClientConfig`] hold credentials, suites, timers and limits.
//! * [`Session`] / [`SessionStore`] resume sessions (DTLS 1.2 session IDs, DTLS 1.3 tickets and
//!   0-RTT, [`EarlyDataConfig`]).
//! * [`LinkProfile`] sizes the handshake retransmission timers for the network a peer sits on
//!   (RFC 6298 estimates per peer; [`link`]).
//! * [`cert`] loads certificates and keys and verifies peers; [`crypto`] is the crypto provider
//!   interface (RustCrypto by default); [`suites`] names the cipher suites.
//!
//! # Layout
//!
//! ```text
//! types, error, codec          the vocabulary at the bottom of the module graph
//! config, resumption, suites   what the application sets and keeps
//! msgs, record, handshake      the DTLS 1.2 wire (messages, records, flights, reassembly),
//!                              which DTLS 1.3 reuses for its plaintext headers and hellos
//! dtls12/  dtls13/             one engine per version, same files: engine (the role-independent
//!                              record/flight core), client and server (one struct per handshake
//!                              state, consuming transitions), conn (the association: core + the
//!                              role's state); dtls13 adds early (0-RTT), msgs, record, key_schedule
//! tickets                      sealed (stateless) session tickets under rotating named keys
//! connection/                  the public Connection facade over both (+ the auto client)
//! gate/, endpoint              the one stateless cookie gate and the association table
//! link                         link profiles: retransmission policies over handshake::flight
//! ```
//!
//! No module imports another in a circle (`tests/module_graph.rs` checks it). Everything not
//! re-exported here is private; the `internal` module exposes engine internals to this
//! workspace's fuzz targets, benches and white-box tests only, and is not an API.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cert;
mod codec;
mod config;
mod connection;
pub mod crypto;
mod dtls12;
mod dtls13;
mod endpoint;
mod error;
pub mod gate;
mod handshake;
pub mod link;
mod msgs;
mod record;
mod resumption;
mod rrc;
pub mod suites;
mod tickets;
mod types;

pub use cert::CertificateError;
pub use codec::{AlertDescription, CipherSuite, InvalidMessage, ProtocolVersion};
pub use config::early_data::{DEFAULT_RESUMPTION_FRESHNESS, EarlyDataConfig, EarlyDataContext, ResumptionKeyExchange};
pub use config::quotas::QuotaConfig;
pub use config::{
    CertifiedKey, ClientAuth, ClientConfig, CommonConfig, ConnectionIdConfig, CookieConfig, DtlsVersion,
    MAX_PSK_IDENTITY_LEN, MAX_PSK_LEN, PeerVerifier, Psk, PskStore, RrcConfig, ServerConfig, StaticPsks,
};
pub use connection::{Connection, ConnectionIds};
pub use endpoint::{DatagramMeta, Endpoint, EndpointStats};
pub use error::{ConfigError, Error, Incompatible, PeerMisbehaved, UsageError};
pub use gate::{Gate, GateId, GateStats, Proof, Verdict};
pub use handshake::flight::{
    PolicyContext, RetransmitConfig, RetransmitPolicy, RetransmitPolicyFactory, Rfc6347Policy, RttSampleKind,
};
pub use handshake::reassembly::HelloReassemblyConfig;
pub use link::{LinkPolicyFactory, LinkProfile, RttEstimator, UnknownLinkProfile};
pub use resumption::{
    DEFAULT_SESSION_LIFETIME, DEFAULT_TICKET_LIFETIME, FetchedSession, MAX_TICKET_LIFETIME, MemorySessionStore,
    OfferedSessions, PskIdentities, SESSION_ENCODING_VERSION, Session, SessionDecodeError, SessionStore,
    offered_sessions,
};
pub use rrc::ReturnRoutabilityCheck;
pub use suites::{ALL_SUITES, SupportedSuite};
pub use tickets::{
    DEFAULT_TICKET_KEY_ROTATION, TICKET_FORMAT_VERSION, TICKET_KEY_NAME_LEN, TicketKey, TicketKeys, TicketMode,
};
pub use types::{CloseReason, Event, HandshakeFailure, PeerIdentity, Role, Stats, Transmit};
/// The zeroize-on-drop buffer [`SessionStore`] passes encoded sessions in.
pub use zeroize::Zeroizing;

/// Engine internals for this workspace's fuzz targets, benches and white-box tests (crafting
/// records, driving the gate by hand, known-answer vectors). Not an API: anything here may
/// change in any release.
#[doc(hidden)]
pub mod internal {
    #![allow(missing_docs)]
    pub mod codec {
        pub use crate::codec::*;
    }
    pub mod cookie {
        pub use crate::gate::cookie::*;
    }
    pub mod endpoint {
        pub use crate::endpoint::*;
    }
    pub mod handshake {
        pub use crate::handshake::*;
    }
    pub mod msgs {
        pub use crate::msgs::*;
    }
    pub mod record {
        pub use crate::record::*;
    }
    pub mod rrc {
        pub use crate::rrc::*;
    }
    pub mod msgs13 {
        pub use crate::dtls13::msgs::*;
    }
    pub mod record13 {
        pub use crate::dtls13::record::*;
    }
    pub mod tls13 {
        pub use crate::dtls13::key_schedule::*;
    }
    pub mod prf {
        pub use crate::crypto::prf::*;
    }
}
