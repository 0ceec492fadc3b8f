//! DTLS 1.3 (RFC 9147): the association engine of both roles with 0-RTT early data
//! ([`engine`]), the 1.3 handshake messages ([`msgs`]), the record layer with encrypted record
//! numbers and the unified header ([`record`]), and the key schedule ([`key_schedule`]).
//!
//! DTLS 1.3 keeps the DTLS 1.2 plaintext record and handshake headers, the alert format and
//! the hello structures a 1.2 server reads, so it builds on the shared [`crate::record`] and
//! [`crate::msgs`] modules; nothing in DTLS 1.2 imports this module except the 1.2 client's
//! hand-over from a dual-version hello.

pub(crate) mod dual_hello;
pub mod engine;
pub mod key_schedule;
pub mod msgs;
pub mod record;
