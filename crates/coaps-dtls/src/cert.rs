//! Credentials: PEM loading, X.509 path validation (rustls-webpki) with server name checks,
//! and raw public keys (RFC 7250) pinned by SubjectPublicKeyInfo. (STUB API)
