//! Errors, in three types that never mix:
//!
//! * [`Error`]: why an association failed. Only fatal conditions surface: transient noise
//!   (garbage datagrams, records that fail authentication, replays) is dropped and counted in
//!   [`crate::Stats`] (RFC 6347 §4.1.2.7). Fatal errors caused by the peer fall in three
//!   classes: it sent something undecodable ([`Error::InvalidMessage`]), it misbehaved
//!   ([`Error::PeerMisbehaved`] with a named [`PeerMisbehaved`] cause), or the two sides cannot
//!   agree ([`Error::Incompatible`] with a named [`Incompatible`] cause). [`Error::alert`] maps
//!   every error to the alert that is sent (RFC 5246 §7.2.2, RFC 8446 §6.2), and each cause
//!   knows its own alert: the alert is chosen here and nowhere else.
//! * [`ConfigError`]: a connection could not be started with the configuration or the request
//!   it was given (nothing was sent); the message says what to change.
//! * [`UsageError`]: a call the association cannot serve in its current state (sending before
//!   the handshake completed, a record too large, KeyUpdate in DTLS 1.2, …); the association
//!   is unaffected.

use crate::cert::CertificateError;
use crate::codec::{AlertDescription, InvalidMessage};
use std::fmt;

/// Why a connection failed or closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A message could not be decoded (alert decode_error).
    InvalidMessage(InvalidMessage),
    /// The peer broke the protocol; the cause names the alert ([`PeerMisbehaved::alert`]).
    PeerMisbehaved(PeerMisbehaved),
    /// No common parameters (suite, group, certificate type, version, EMS…); the cause names the
    /// alert ([`Incompatible::alert`]).
    Incompatible(Incompatible),
    /// The peer's certificate or raw public key was refused.
    Certificate(CertificateError),
    /// The PSK identity the client offered is not known (alert unknown_psk_identity, RFC 4279 §2).
    UnknownPskIdentity,
    /// A Finished or CertificateVerify did not verify (alert decrypt_error).
    DecryptError(&'static str),
    /// DTLS 1.2: a protected record of the handshake (the peer's Finished) did not decrypt
    /// (alert bad_record_mac). Outside a handshake such records are dropped (RFC 6347
    /// §4.1.2.7), but a handshake whose Finished cannot be verified cannot complete (RFC 5246
    /// §7.4.9): with PSK, the sign of a wrong key.
    BadRecordMac(&'static str),
    /// The peer sent a fatal alert.
    AlertReceived(AlertDescription),
    /// The handshake gave up after its retransmission budget (RFC 6347 §4.2.4).
    HandshakeTimeout,
    /// A configuration problem found during the handshake (a suite chosen that the
    /// configuration cannot serve).
    Config(ConfigError),
    /// A local limit ended the association (e.g. the record sequence number space).
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
            Self::PeerMisbehaved(c) => c.alert(),
            Self::Incompatible(c) => c.alert(),
            Self::Certificate(e) => e.alert(),
            Self::UnknownPskIdentity => AlertDescription::UnknownPskIdentity,
            Self::DecryptError(_) => AlertDescription::DecryptError,
            Self::BadRecordMac(_) => AlertDescription::BadRecordMac,
            Self::Crypto => AlertDescription::InternalError,
            Self::AlertReceived(_) | Self::HandshakeTimeout | Self::Config(_) | Self::LimitReached(_) => return None,
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidMessage(e) => write!(f, "invalid message: {e}"),
            Self::PeerMisbehaved(c) => write!(f, "peer misbehaved: {c} (alert {:?})", c.alert()),
            Self::Incompatible(c) => write!(f, "no common parameters: {c} (alert {:?})", c.alert()),
            Self::Certificate(e) => write!(f, "peer certificate refused: {e}"),
            Self::UnknownPskIdentity => f.write_str("unknown PSK identity"),
            Self::DecryptError(w) => write!(f, "verification failed: {w}"),
            Self::BadRecordMac(w) => write!(f, "{w} did not decrypt (bad_record_mac)"),
            Self::AlertReceived(a) => write!(f, "peer sent fatal alert {a:?}"),
            Self::HandshakeTimeout => f.write_str("handshake timed out (no answer from the peer)"),
            Self::Config(e) => write!(f, "{e}"),
            Self::LimitReached(w) => write!(f, "limit reached: {w}"),
            Self::Crypto => f.write_str("internal cryptographic failure"),
        }
    }
}

impl std::error::Error for Error {}

/// A connection could not be started with the configuration or the request it was given.
/// Nothing was sent. The message says what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(std::borrow::Cow<'static, str>);

impl ConfigError {
    pub(crate) fn new(message: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Self(message.into())
    }

    /// A handshake that could not start: `cause` failed before anything was sent.
    pub(crate) fn starting(cause: impl fmt::Display) -> Self {
        Self(format!("could not start the handshake: {cause}").into())
    }

    /// What is wrong, and how to fix it.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration error: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

impl From<crate::crypto::CryptoError> for ConfigError {
    fn from(_: crate::crypto::CryptoError) -> Self {
        Self::new("the crypto provider failed while starting the handshake")
    }
}

/// A call the association cannot serve in its current state. The association is unaffected
/// (nothing was sent, nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsageError {
    /// The operation needs an established association (or, for 0-RTT data, one still
    /// waiting for the ServerHello after offering early data; for a peer address, one that
    /// exists).
    NotConnected,
    /// Application data larger than one record can carry at the configured MTU.
    MessageTooLarge {
        /// Bytes offered.
        len: usize,
        /// Largest payload that fits.
        max: usize,
    },
    /// A local limit refuses the data (the ticket's max_early_data_size, held 0.5-RTT records,
    /// the key usage limit, the record sequence number space).
    LimitReached(&'static str),
    /// The operation exists only in DTLS 1.3 (named), and this association speaks DTLS 1.2.
    Dtls13Only(&'static str),
    /// The crypto provider failed to seal the record.
    Crypto,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotConnected => f.write_str("connection is not established"),
            Self::MessageTooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the {max}-byte record limit at this MTU")
            }
            Self::LimitReached(w) => write!(f, "limit reached: {w}"),
            Self::Dtls13Only(w) => write!(f, "{w} exists only in DTLS 1.3"),
            Self::Crypto => f.write_str("internal cryptographic failure"),
        }
    }
}

impl std::error::Error for UsageError {}

/// How the peer broke the protocol. Each cause is named, and [`PeerMisbehaved::alert`] maps it
/// to the alert that is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerMisbehaved {
    /// DTLS 1.3 ServerHello after a HelloVerifyRequest (RFC 9147 §5.1: a 1.3 server sends none).
    ServerHello13AfterHelloVerifyRequest,
    /// CertificateVerify with an unoffered scheme (RFC 8446 §4.4.3).
    CertificateVerifyUnofferedScheme,
    /// Downgrade sentinel in a DTLS 1.2 ServerHello (RFC 8446 §4.1.3).
    DowngradeSentinel12,
    /// DTLS 1.3 ServerHello after falling back to DTLS 1.2.
    ServerHello13AfterFallback,
    /// Server chose a cipher suite we did not offer (RFC 5246 §7.4.1.3).
    ServerChoseUnofferedSuite12,
    /// Server chose an unknown cipher suite.
    ServerChoseUnknownSuite,
    /// Server chose compression (RFC 5246 §7.4.1.3).
    ServerChoseCompression,
    /// Non-empty renegotiation_info (RFC 5746 §3.4).
    NonEmptyRenegotiationInfo,
    /// Unsolicited extension in ServerHello (RFC 5246 §7.4.1.4).
    UnsolicitedServerExtension,
    /// Resumed session with a different cipher suite (RFC 5246 §7.4.1.3).
    ResumedWithOtherSuite12,
    /// Resumption changed extended_master_secret (RFC 7627 §5.3).
    ResumptionChangedEms,
    /// Server sent no certificate (RFC 5246 §7.4.2).
    NoServerCertificate12,
    /// Server chose a group we did not offer (RFC 8422 §5.4).
    ServerChoseUnofferedGroup,
    /// ServerKeyExchange signed with an unoffered scheme (RFC 5246 §7.4.3).
    ServerKeyExchangeUnofferedScheme,
    /// No server certificate.
    MissingServerCertificate,
    /// ServerKeyExchange does not match the suite.
    ServerKeyExchangeMismatch,
    /// Missing ServerKeyExchange.
    MissingServerKeyExchange,
    /// Invalid ECDH point (RFC 8422 §5.11).
    InvalidEcdhPoint,
    /// Null compression not offered (RFC 5246 §7.4.1.2).
    NullCompressionNotOffered,
    /// Renegotiation_info not empty on an initial handshake (RFC 5746 §3.6).
    RenegotiationInfoOnInitialHandshake,
    /// Uncompressed points not supported (RFC 8422 §5.1.2).
    UncompressedPointsNotOffered,
    /// Resumption without extended_master_secret (RFC 7627 §5.3).
    ResumptionWithoutEms,
    /// Unrequested client certificate (RFC 5246 §7.4.6).
    UnrequestedClientCertificate12,
    /// ClientKeyExchange does not match the suite.
    ClientKeyExchangeMismatch,
    /// Second HelloRetryRequest (RFC 8446 §4.1.4).
    SecondHelloRetryRequest,
    /// HRR chose an unoffered suite (RFC 8446 §4.1.4).
    HelloRetryRequestUnofferedSuite,
    /// Downgrade sentinel in ServerHello (RFC 8446 §4.1.3).
    DowngradeSentinel13,
    /// Server chose an unoffered suite (RFC 8446 §4.1.3).
    ServerChoseUnofferedSuite13,
    /// Unknown 1.3 suite.
    UnknownSuite13,
    /// Server selected an unoffered PSK (RFC 8446 §4.2.11).
    ServerSelectedUnofferedPsk,
    /// Resumption with another suite (RFC 8446 §4.2.11).
    ResumedWithOtherSuite13,
    /// Key share without one offered (RFC 8446 §4.2.8).
    KeyShareNotOffered,
    /// Invalid key share (RFC 8446 §4.2.8.2).
    InvalidKeyShare,
    /// Key share for an unoffered group (RFC 8446 §4.2.8).
    KeyShareUnofferedGroup,
    /// No key share (RFC 8446 §4.2.8).
    MissingKeyShare,
    /// Server sent no certificate (RFC 8446 §4.4.2.4).
    EmptyServerCertificate13,
    /// Unrequested certificate (RFC 8446 §4.4.2).
    UnrequestedClientCertificate13,
    /// Handshake message out of order (RFC 8446 §6).
    HandshakeMessageOutOfOrder,
    /// Invalid KeyUpdate request (RFC 8446 §4.6.3).
    InvalidKeyUpdateRequest,
    /// Handshake message after the handshake.
    HandshakeMessageAfterHandshake,
    /// Early_data accepted but not offered (RFC 8446 §4.2).
    EarlyDataAcceptedNotOffered,
    /// Early data accepted without the first PSK (RFC 8446 §4.2.10).
    EarlyDataWithoutFirstPsk,
    /// More early data than max_early_data_size (RFC 8446 §4.2.10).
    TooMuchEarlyData,
    /// Invalid legacy_version in a DTLS 1.3 ClientHello (RFC 9147 §5.3).
    Dtls13LegacyVersion,
    /// Invalid legacy field in a DTLS 1.3 ClientHello (RFC 9147 §5.3, RFC 8446 §4.1.2).
    Dtls13LegacyField,
    /// NewConnectionId or RequestConnectionId without the CIDs that allow it: none
    /// negotiated, or the sender receives (for RequestConnectionId: sends) an empty CID
    /// (RFC 9147 §9).
    ConnectionIdMessageNotAllowed,
    /// RequestConnectionId again after an answer that gave fewer CIDs than asked, the
    /// association's [`max_cids`](crate::ConnectionIdConfig::max_cids) being reached
    /// (RFC 9147 §9, too_many_cids_requested).
    TooManyCidsRequested,
    /// A NewConnectionId usage that RFC 9147 §9 does not define.
    UnknownConnectionIdUsage,
}

impl PeerMisbehaved {
    /// The alert this cause is reported with (RFC 5246 §7.2.2, RFC 8446 §6.2): the one place
    /// where a cause meets its alert.
    pub fn alert(self) -> AlertDescription {
        match self {
            Self::ServerHello13AfterHelloVerifyRequest
            | Self::CertificateVerifyUnofferedScheme
            | Self::DowngradeSentinel12
            | Self::ServerHello13AfterFallback
            | Self::ServerChoseUnofferedSuite12
            | Self::ServerChoseUnknownSuite
            | Self::ServerChoseCompression
            | Self::ResumedWithOtherSuite12
            | Self::ServerChoseUnofferedGroup
            | Self::ServerKeyExchangeUnofferedScheme
            | Self::InvalidEcdhPoint
            | Self::NullCompressionNotOffered
            | Self::UncompressedPointsNotOffered
            | Self::HelloRetryRequestUnofferedSuite
            | Self::DowngradeSentinel13
            | Self::ServerChoseUnofferedSuite13
            | Self::UnknownSuite13
            | Self::ServerSelectedUnofferedPsk
            | Self::ResumedWithOtherSuite13
            | Self::KeyShareNotOffered
            | Self::InvalidKeyShare
            | Self::KeyShareUnofferedGroup
            | Self::InvalidKeyUpdateRequest
            | Self::EarlyDataWithoutFirstPsk
            | Self::UnknownConnectionIdUsage
            | Self::Dtls13LegacyField => AlertDescription::IllegalParameter,
            Self::TooManyCidsRequested => AlertDescription::TooManyCidsRequested,
            Self::NonEmptyRenegotiationInfo
            | Self::ResumptionChangedEms
            | Self::NoServerCertificate12
            | Self::RenegotiationInfoOnInitialHandshake
            | Self::ResumptionWithoutEms => AlertDescription::HandshakeFailure,
            Self::UnsolicitedServerExtension | Self::EarlyDataAcceptedNotOffered => {
                AlertDescription::UnsupportedExtension
            }
            Self::MissingServerCertificate
            | Self::ServerKeyExchangeMismatch
            | Self::MissingServerKeyExchange
            | Self::UnrequestedClientCertificate12
            | Self::ClientKeyExchangeMismatch
            | Self::SecondHelloRetryRequest
            | Self::UnrequestedClientCertificate13
            | Self::HandshakeMessageOutOfOrder
            | Self::HandshakeMessageAfterHandshake
            | Self::ConnectionIdMessageNotAllowed
            | Self::TooMuchEarlyData => AlertDescription::UnexpectedMessage,
            Self::MissingKeyShare => AlertDescription::MissingExtension,
            Self::EmptyServerCertificate13 => AlertDescription::DecodeError,
            Self::Dtls13LegacyVersion => AlertDescription::ProtocolVersion,
        }
    }

    /// What went wrong, in words.
    pub fn description(self) -> &'static str {
        match self {
            Self::ServerHello13AfterHelloVerifyRequest => {
                "DTLS 1.3 ServerHello after a HelloVerifyRequest (RFC 9147 §5.1: a 1.3 server sends none)"
            }
            Self::CertificateVerifyUnofferedScheme => "CertificateVerify with an unoffered scheme",
            Self::DowngradeSentinel12 => "downgrade sentinel in a DTLS 1.2 ServerHello",
            Self::ServerHello13AfterFallback => "DTLS 1.3 ServerHello after falling back to DTLS 1.2",
            Self::ServerChoseUnofferedSuite12 => "server chose a cipher suite we did not offer",
            Self::ServerChoseUnknownSuite => "server chose an unknown cipher suite",
            Self::ServerChoseCompression => "server chose compression",
            Self::NonEmptyRenegotiationInfo => "non-empty renegotiation_info",
            Self::UnsolicitedServerExtension => "unsolicited extension in ServerHello",
            Self::ResumedWithOtherSuite12 => "resumed session with a different cipher suite",
            Self::ResumptionChangedEms => "resumption changed extended_master_secret",
            Self::NoServerCertificate12 => "server sent no certificate",
            Self::ServerChoseUnofferedGroup => "server chose a group we did not offer",
            Self::ServerKeyExchangeUnofferedScheme => "ServerKeyExchange signed with an unoffered scheme",
            Self::MissingServerCertificate => "no server certificate",
            Self::ServerKeyExchangeMismatch => "ServerKeyExchange does not match the suite",
            Self::MissingServerKeyExchange => "missing ServerKeyExchange",
            Self::InvalidEcdhPoint => "invalid ECDH point",
            Self::NullCompressionNotOffered => "null compression not offered",
            Self::RenegotiationInfoOnInitialHandshake => "renegotiation_info not empty on an initial handshake",
            Self::UncompressedPointsNotOffered => "uncompressed points not supported",
            Self::ResumptionWithoutEms => "resumption without extended_master_secret",
            Self::UnrequestedClientCertificate12 => "unrequested client certificate",
            Self::ClientKeyExchangeMismatch => "ClientKeyExchange does not match the suite",
            Self::SecondHelloRetryRequest => "second HelloRetryRequest",
            Self::HelloRetryRequestUnofferedSuite => "HRR chose an unoffered suite",
            Self::DowngradeSentinel13 => "downgrade sentinel in ServerHello",
            Self::ServerChoseUnofferedSuite13 => "server chose an unoffered suite",
            Self::UnknownSuite13 => "unknown 1.3 suite",
            Self::ServerSelectedUnofferedPsk => "server selected an unoffered PSK",
            Self::ResumedWithOtherSuite13 => "resumption with another suite",
            Self::KeyShareNotOffered => "key share without one offered",
            Self::InvalidKeyShare => "invalid key share",
            Self::KeyShareUnofferedGroup => "key share for an unoffered group",
            Self::MissingKeyShare => "no key share",
            Self::EmptyServerCertificate13 => "server sent no certificate",
            Self::UnrequestedClientCertificate13 => "unrequested certificate",
            Self::HandshakeMessageOutOfOrder => "handshake message out of order",
            Self::InvalidKeyUpdateRequest => "invalid KeyUpdate request",
            Self::HandshakeMessageAfterHandshake => "handshake message after the handshake",
            Self::EarlyDataAcceptedNotOffered => "early_data accepted but not offered",
            Self::EarlyDataWithoutFirstPsk => "early data accepted without the first PSK",
            Self::TooMuchEarlyData => "more early data than max_early_data_size",
            Self::Dtls13LegacyVersion => "invalid legacy_version in a DTLS 1.3 ClientHello",
            Self::Dtls13LegacyField => "invalid legacy field in a DTLS 1.3 ClientHello",
            Self::ConnectionIdMessageNotAllowed => "NewConnectionId or RequestConnectionId without a CID to allow it",
            Self::TooManyCidsRequested => "RequestConnectionId after the CID limit was reached",
            Self::UnknownConnectionIdUsage => "unknown NewConnectionId usage",
        }
    }
}

impl fmt::Display for PeerMisbehaved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// What the two sides could not agree on. Each cause is named, and [`Incompatible::alert`]
/// maps it to the alert that is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Incompatible {
    /// Server chose a DTLS version other than 1.2 (RFC 5246 §7.4.1.3).
    ServerVersionNot12,
    /// Server does not support extended_master_secret (RFC 7627) (RFC 7627 §5.3).
    ServerWithoutEms,
    /// Server certificate type does not match our verifier (RFC 7250 §4.2).
    ServerCertificateTypeMismatch,
    /// Client does not offer DTLS 1.2 (RFC 6347 §4.1).
    ClientWithoutDtls12,
    /// Client does not offer extended_master_secret (RFC 7627) (RFC 7627 §5.2).
    ClientWithoutEms,
    /// No cipher suite in common.
    NoCommonSuite12,
    /// Client certificate required (RFC 5246 §7.4.6).
    ClientCertificateRequired12,
    /// Client certificate type not accepted (RFC 7250 §4.2).
    ClientCertificateTypeRefused,
    /// HelloRetryRequest without DTLS 1.3 (RFC 8446 §4.1.4).
    HelloRetryRequestWithoutDtls13,
    /// HRR asks for a group we do not support (RFC 8446 §4.2.8).
    HelloRetryRequestUnsupportedGroup,
    /// Server did not select DTLS 1.3 (RFC 8446 §4.2.1).
    ServerDidNotSelectDtls13,
    /// Certificate type does not match our verifier (RFC 7250 §4.2).
    CertificateTypeMismatch13,
    /// No DTLS 1.3 cipher suite in common.
    NoCommonSuite13,
    /// No usable PSK key exchange mode (RFC 8446 §4.2.9).
    NoUsablePskMode,
    /// No PSK and no certificate / signature algorithm in common.
    NoCommonAuthentication,
    /// No secp256r1 key share (RFC 8446 §4.2.7).
    NoSecp256r1,
    /// Client certificate required (RFC 8446 §4.4.2.4).
    ClientCertificateRequired13,
}

impl Incompatible {
    /// The alert this cause is reported with (RFC 5246 §7.2.2, RFC 8446 §6.2): the one place
    /// where a cause meets its alert.
    pub fn alert(self) -> AlertDescription {
        match self {
            Self::ServerVersionNot12
            | Self::ClientWithoutDtls12
            | Self::HelloRetryRequestWithoutDtls13
            | Self::ServerDidNotSelectDtls13 => AlertDescription::ProtocolVersion,
            Self::ServerWithoutEms
            | Self::ClientWithoutEms
            | Self::NoCommonSuite12
            | Self::ClientCertificateRequired12
            | Self::NoCommonSuite13
            | Self::NoUsablePskMode
            | Self::NoCommonAuthentication
            | Self::NoSecp256r1 => AlertDescription::HandshakeFailure,
            Self::ServerCertificateTypeMismatch
            | Self::ClientCertificateTypeRefused
            | Self::CertificateTypeMismatch13 => AlertDescription::UnsupportedCertificate,
            Self::HelloRetryRequestUnsupportedGroup => AlertDescription::IllegalParameter,
            Self::ClientCertificateRequired13 => AlertDescription::CertificateRequired,
        }
    }

    /// What went wrong, in words.
    pub fn description(self) -> &'static str {
        match self {
            Self::ServerVersionNot12 => "server chose a DTLS version other than 1.2",
            Self::ServerWithoutEms => "server does not support extended_master_secret (RFC 7627)",
            Self::ServerCertificateTypeMismatch => "server certificate type does not match our verifier",
            Self::ClientWithoutDtls12 => "client does not offer DTLS 1.2",
            Self::ClientWithoutEms => "client does not offer extended_master_secret (RFC 7627)",
            Self::NoCommonSuite12 => "no cipher suite in common",
            Self::ClientCertificateRequired12 => "client certificate required",
            Self::ClientCertificateTypeRefused => "client certificate type not accepted",
            Self::HelloRetryRequestWithoutDtls13 => "HelloRetryRequest without DTLS 1.3",
            Self::HelloRetryRequestUnsupportedGroup => "HRR asks for a group we do not support",
            Self::ServerDidNotSelectDtls13 => "server did not select DTLS 1.3",
            Self::CertificateTypeMismatch13 => "certificate type does not match our verifier",
            Self::NoCommonSuite13 => "no DTLS 1.3 cipher suite in common",
            Self::NoUsablePskMode => "no usable PSK key exchange mode",
            Self::NoCommonAuthentication => "no PSK and no certificate / signature algorithm in common",
            Self::NoSecp256r1 => "no secp256r1 key share",
            Self::ClientCertificateRequired13 => "client certificate required",
        }
    }
}

impl fmt::Display for Incompatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_carry_the_alerts_the_rfcs_name() {
        // RFC 9147 §5.3 / RFC 8446 §4.2.2: a bad legacy_version is a protocol_version abort.
        assert_eq!(PeerMisbehaved::Dtls13LegacyVersion.alert(), AlertDescription::ProtocolVersion);
        // RFC 8446 §4.4.2.4 (1.3) vs RFC 5246 §7.4.6 (1.2): a missing client certificate.
        assert_eq!(Incompatible::ClientCertificateRequired13.alert(), AlertDescription::CertificateRequired);
        assert_eq!(Incompatible::ClientCertificateRequired12.alert(), AlertDescription::HandshakeFailure);
        // RFC 8446 §4.2.10: more early data than allowed is unexpected_message.
        assert_eq!(PeerMisbehaved::TooMuchEarlyData.alert(), AlertDescription::UnexpectedMessage);
        // RFC 8446 §4.1.3: the downgrade sentinel is illegal_parameter in both versions.
        assert_eq!(PeerMisbehaved::DowngradeSentinel12.alert(), AlertDescription::IllegalParameter);
        assert_eq!(PeerMisbehaved::DowngradeSentinel13.alert(), AlertDescription::IllegalParameter);
        // RFC 7627 §5.3: resuming without EMS is handshake_failure.
        assert_eq!(PeerMisbehaved::ResumptionWithoutEms.alert(), AlertDescription::HandshakeFailure);
    }

    #[test]
    fn errors_report_their_cause_and_alert() {
        let e = Error::PeerMisbehaved(PeerMisbehaved::InvalidEcdhPoint);
        assert_eq!(e.alert(), Some(AlertDescription::IllegalParameter));
        assert_eq!(e.to_string(), "peer misbehaved: invalid ECDH point (alert IllegalParameter)");
        let e = Error::Incompatible(Incompatible::NoCommonSuite12);
        assert_eq!(e.alert(), Some(AlertDescription::HandshakeFailure));
        assert_eq!(e.to_string(), "no common parameters: no cipher suite in common (alert HandshakeFailure)");
        // Configuration and usage errors are not association failures: no alert.
        assert_eq!(Error::Config(ConfigError::new("x")).alert(), None);
        assert_eq!(UsageError::Dtls13Only("KeyUpdate").to_string(), "KeyUpdate exists only in DTLS 1.3");
    }
}
