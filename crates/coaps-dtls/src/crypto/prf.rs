//! The TLS 1.2 PRF, P_SHA256 (RFC 5246 §5), and the key schedule built on it. (STUB)
