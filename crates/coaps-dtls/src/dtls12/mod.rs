//! DTLS 1.2 (RFC 6347): the association engine of both roles ([`engine`]). Its wire messages
//! and record protection live in [`crate::msgs`] and [`crate::record`], which DTLS 1.3 reuses
//! for the plaintext record header, the handshake header, alerts and the hellos.

pub mod engine;
