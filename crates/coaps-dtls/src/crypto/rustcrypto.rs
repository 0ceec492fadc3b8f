//! The default provider, on RustCrypto crates. (STUB)
