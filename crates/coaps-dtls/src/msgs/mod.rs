//! DTLS 1.2 handshake messages and extensions, named as in the RFCs.
//!
//! Messages whose layout depends on the negotiated key exchange (`ServerKeyExchange`,
//! `ClientKeyExchange`) or certificate type (`Certificate`) are decoded with `read_with`.

mod handshake;
pub use handshake::*;
mod accessors;
mod codec_impls;
#[cfg(test)]
mod tests;
