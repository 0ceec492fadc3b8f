//! DTLS 1.3 (RFC 9147) handshake messages and extensions, named as in RFC 8446 / RFC 9147.
//!
//! Section numbers are RFC 8446's, which RFC 9147 cites; RFC 9846 (which obsoletes 8446)
//! renumbers them (8446 §4.1.x → 9846 §4.2.x, §4.2.x → §4.3.x, §4.3.x → §4.4.x,
//! §4.4.2–4.4.4 → §4.5.1–4.5.3, §4.4.1 → §4.1, §4.6.x → §4.7.x) without changing the wire
//! formats used here.
//!
//! # What is (and is not) here
//!
//! * The hellos keep the DTLS 1.2 layout (RFC 9147 §5.3, §5.4): [`ClientHello13`],
//!   [`ServerHello13`] and [`HelloRetryRequest13`], told apart by [`ServerHelloMessage13`]
//!   through the special random ([`HELLO_RETRY_REQUEST_RANDOM`], RFC 8446 §4.1.3).
//! * The encrypted flight: [`EncryptedExtensions13`], [`CertificateRequest13`],
//!   [`Certificate13`], [`CertificateVerify13`], [`Finished13`].
//! * Post-handshake: [`NewSessionTicket13`], [`KeyUpdate`], [`NewConnectionId`],
//!   [`RequestConnectionId`], and the [`Ack`] content (RFC 9147 §7).
//! * Transcript helpers: [`transcript_bytes_13`], [`message_hash`],
//!   [`truncated_client_hello_transcript`], [`certificate_verify_content`].
//! * **No EndOfEarlyData**: RFC 9147 §5.6 omits it "both from the wire and the handshake
//!   transcript" (epochs mark the end of early data), so there is no type for it.
//!
//! # Decoding rules
//!
//! Every decoder is total and allocates at most a constant factor of its input. In each
//! extension block a repeated type is refused (RFC 8446 §4.2), and so is an extension this
//! module recognises in a message the RFC 8446 §4.2 table does not allow it in (the RFC
//! requires `illegal_parameter` for the latter; [`alert_for`] gives the right alert for each
//! decoding failure). Extensions this module does not recognise, including the TLS 1.2 ones a
//! dual-version peer sends, are kept verbatim as `Unknown`.

mod accessors;
mod codec_impls;
mod transcript;
mod types;

pub use transcript::*;
pub use types::*;

#[cfg(test)]
mod tests;

// The reasons and their alerts live beside `InvalidMessage`, so `error` maps every decoding
// failure to its alert without importing a message module.
pub use crate::codec::{
    REASON_DUPLICATE_KEY_SHARE, REASON_EXTENSION_NOT_ALLOWED, REASON_PSK_BINDER_COUNT, REASON_PSK_NOT_LAST, alert_for,
};
