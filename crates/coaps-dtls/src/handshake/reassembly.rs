//! Handshake message reassembly (RFC 6347 §4.2.3). (STUB API)
