//! # coaps-dtls
//!
//! A sans-IO DTLS 1.2 (RFC 6347) engine for CoAPS. It performs no I/O, reads no clock and owns
//! no thread: datagrams and time go in through `handle_*`, datagrams, timers and events come
//! out through `poll_*`. Randomness is injected and seedable.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cert;
pub mod codec;
pub mod cookie;
pub mod crypto;
pub mod handshake;
pub mod msgs;
pub mod record;
