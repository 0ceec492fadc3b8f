//! # coaps
//!
//! CoAP over DTLS (CoAPS, RFC 7252 §9) for Rust. This facade re-exports the workspace crates:
//! [`dtls`] is the sans-IO DTLS engine, [`tower`] the layers, transport and client.
//!
//! The repository's README follows; its Rust examples are compiled as doctests of this crate.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub use coaps_dtls as dtls;
pub use coaps_tower as tower;
