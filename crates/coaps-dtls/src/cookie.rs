//! Stateless cookies for HelloVerifyRequest (RFC 6347 §4.2.1). (STUB API)
