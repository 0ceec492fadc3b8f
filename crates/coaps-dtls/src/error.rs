//! Errors. Only fatal conditions surface: transient noise (garbage datagrams, records that fail
//! authentication, replays) is dropped silently and counted in [`crate::Stats`]
//! (RFC 6347 §4.1.2.7).
//!
//! Fatal errors fall in three classes, each mapped to the alert that is sent (RFC 5246 §7.2.2):
//! the peer sent something undecodable ([`Error::InvalidMessage`]), the peer misbehaved
//! ([`Error::PeerMisbehaved`]), or the two sides cannot agree ([`Error::Incompatible`]).

use crate::cert::CertificateError;
use crate::codec::{AlertDescription, InvalidMessage};
use std::fmt;

/// Why a connection failed or closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A message could not be decoded (alert decode_error).
    InvalidMessage(InvalidMessage),
    /// The peer broke the protocol; the alert to send is attached.
    PeerMisbehaved(&'static str, AlertDescription),
    /// No common parameters (suite, group, certificate type, version, EMS…).
    Incompatible(&'static str, AlertDescription),
    /// The peer's certificate or raw public key was refused.
    Certificate(CertificateError),
    /// The PSK identity the client offered is not known (alert unknown_psk_identity, RFC 4279 §2).
    UnknownPskIdentity,
    /// A Finished or CertificateVerify did not verify (alert decrypt_error).
    DecryptError(&'static str),
    /// The peer sent a fatal alert.
    AlertReceived(AlertDescription),
    /// The handshake gave up after its retransmission budget (RFC 6347 §4.2.4).
    HandshakeTimeout,
    /// A local configuration problem (no credentials for any suite, …).
    Config(String),
    /// The operation needs an established connection.
    NotConnected,
    /// Application data larger than a record can carry at the configured MTU.
    MessageTooLarge {
        /// Bytes offered.
        len: usize,
        /// Largest payload that fits.
        max: usize,
    },
    /// A local resource limit was reached.
    LimitReached(&'static str),
    /// Internal cryptographic failure.
    Crypto,
}

impl Error {
    /// The alert this error is reported with, if any.
    pub fn alert(&self) -> Option<AlertDescription> {
        Some(match self {
            // decode_error, except where RFC 8446 asks for illegal_parameter (an extension in a
            // message that does not allow it, §4.2; pre_shared_key not last, §4.2.11).
            Self::InvalidMessage(e) => crate::codec::alert_for(e),
            Self::PeerMisbehaved(_, a) | Self::Incompatible(_, a) => *a,
            Self::Certificate(e) => e.alert(),
            Self::UnknownPskIdentity => AlertDescription::UnknownPskIdentity,
            Self::DecryptError(_) => AlertDescription::DecryptError,
            Self::Crypto => AlertDescription::InternalError,
            Self::AlertReceived(_)
            | Self::HandshakeTimeout
            | Self::Config(_)
            | Self::NotConnected
            | Self::MessageTooLarge { .. }
            | Self::LimitReached(_) => return None,
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidMessage(e) => write!(f, "invalid message: {e}"),
            Self::PeerMisbehaved(w, a) => write!(f, "peer misbehaved: {w} (alert {a:?})"),
            Self::Incompatible(w, a) => write!(f, "no common parameters: {w} (alert {a:?})"),
            Self::Certificate(e) => write!(f, "peer certificate refused: {e}"),
            Self::UnknownPskIdentity => f.write_str("unknown PSK identity"),
            Self::DecryptError(w) => write!(f, "verification failed: {w}"),
            Self::AlertReceived(a) => write!(f, "peer sent fatal alert {a:?}"),
            Self::HandshakeTimeout => f.write_str("handshake timed out (no answer from the peer)"),
            Self::Config(w) => write!(f, "configuration error: {w}"),
            Self::NotConnected => f.write_str("connection is not established"),
            Self::MessageTooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the {max}-byte record limit at this MTU")
            }
            Self::LimitReached(w) => write!(f, "limit reached: {w}"),
            Self::Crypto => f.write_str("internal cryptographic failure"),
        }
    }
}

impl std::error::Error for Error {}

impl From<InvalidMessage> for Error {
    fn from(e: InvalidMessage) -> Self {
        Self::InvalidMessage(e)
    }
}

impl From<CertificateError> for Error {
    fn from(e: CertificateError) -> Self {
        Self::Certificate(e)
    }
}

impl From<crate::crypto::CryptoError> for Error {
    fn from(_: crate::crypto::CryptoError) -> Self {
        Self::Crypto
    }
}
