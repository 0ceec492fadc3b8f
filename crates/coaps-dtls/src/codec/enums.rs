//! Registry enums (IANA TLS registries). Unknown code points are kept as `Unknown(n)` so that
//! nothing a peer sends is lost or misread.

use super::reader::{InvalidMessage, Reader, put_u16};

macro_rules! registry_enum {
    ($(#[$m:meta])* $name:ident: $ty:ty { $($(#[$vm:meta])* $var:ident = $val:expr,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vm])* $var,)*
            /// A code point this implementation does not know.
            Unknown($ty),
        }

        impl From<$ty> for $name {
            fn from(v: $ty) -> Self {
                match v {
                    $($val => Self::$var,)*
                    other => Self::Unknown(other),
                }
            }
        }

        impl From<$name> for $ty {
            fn from(v: $name) -> $ty {
                match v {
                    $($name::$var => $val,)*
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}

macro_rules! registry_u8 {
    ($($t:tt)*) => {
        registry_enum!($($t)*);
        impl_u8!($($t)*);
    };
}
macro_rules! impl_u8 {
    ($(#[$m:meta])* $name:ident: $ty:ty { $($rest:tt)* }) => {
        impl $name {
            /// Decodes one byte.
            pub fn read(r: &mut Reader<'_>) -> Result<Self, InvalidMessage> {
                Ok(Self::from(r.u8(stringify!($name))?))
            }
            /// Appends one byte.
            pub fn encode(self, out: &mut Vec<u8>) {
                out.push(self.into());
            }
        }
    };
}
macro_rules! registry_u16 {
    ($($t:tt)*) => {
        registry_enum!($($t)*);
        impl_u16!($($t)*);
    };
}
macro_rules! impl_u16 {
    ($(#[$m:meta])* $name:ident: $ty:ty { $($rest:tt)* }) => {
        impl $name {
            /// Decodes two bytes.
            pub fn read(r: &mut Reader<'_>) -> Result<Self, InvalidMessage> {
                Ok(Self::from(r.u16(stringify!($name))?))
            }
            /// Appends two bytes.
            pub fn encode(self, out: &mut Vec<u8>) {
                put_u16(out, self.into());
            }
        }
    };
}

registry_u8! {
    /// TLS ContentType (RFC 5246 §6.2.1, RFC 9146 §4).
    ContentType: u8 {
        /// change_cipher_spec(20)
        ChangeCipherSpec = 20,
        /// alert(21)
        Alert = 21,
        /// handshake(22)
        Handshake = 22,
        /// application_data(23)
        ApplicationData = 23,
        /// heartbeat(24)
        Heartbeat = 24,
        /// tls12_cid(25), RFC 9146
        Tls12Cid = 25,
        /// ack(26), RFC 9147 §7
        Ack = 26,
        /// return_routability_check(27), RFC 9853 §4 (IANA's value for the draft's TBD2)
        ReturnRoutabilityCheck = 27,
    }
}

registry_u8! {
    /// rrc_msg_type (RFC 9853 §4, the TLS RRC Message Types registry).
    RrcMsgType: u8 {
        /// path_challenge(0)
        PathChallenge = 0,
        /// path_response(1)
        PathResponse = 1,
        /// path_drop(2)
        PathDrop = 2,
    }
}

registry_u8! {
    /// HandshakeType (RFC 5246 §7.4, RFC 6347 §4.3.2).
    HandshakeType: u8 {
        /// hello_request(0)
        HelloRequest = 0,
        /// client_hello(1)
        ClientHello = 1,
        /// server_hello(2)
        ServerHello = 2,
        /// hello_verify_request(3), RFC 6347 §4.2.1
        HelloVerifyRequest = 3,
        /// new_session_ticket(4), RFC 5077
        NewSessionTicket = 4,
        /// end_of_early_data(5)
        EndOfEarlyData = 5,
        /// encrypted_extensions(8)
        EncryptedExtensions = 8,
        /// request_connection_id(9), RFC 9147 §9
        RequestConnectionId = 9,
        /// new_connection_id(10), RFC 9147 §9
        NewConnectionId = 10,
        /// certificate(11)
        Certificate = 11,
        /// server_key_exchange(12)
        ServerKeyExchange = 12,
        /// certificate_request(13)
        CertificateRequest = 13,
        /// server_hello_done(14)
        ServerHelloDone = 14,
        /// certificate_verify(15)
        CertificateVerify = 15,
        /// client_key_exchange(16)
        ClientKeyExchange = 16,
        /// finished(20)
        Finished = 20,
        /// key_update(24)
        KeyUpdate = 24,
        /// message_hash(254), RFC 8446 §4.4.1
        MessageHash = 254,
    }
}

registry_u8! {
    /// AlertLevel (RFC 5246 §7.2).
    AlertLevel: u8 {
        /// warning(1)
        Warning = 1,
        /// fatal(2)
        Fatal = 2,
    }
}

registry_u8! {
    /// AlertDescription (RFC 5246 §7.2, RFC 4279 §2, RFC 8446 §6).
    AlertDescription: u8 {
        /// close_notify(0)
        CloseNotify = 0,
        /// unexpected_message(10)
        UnexpectedMessage = 10,
        /// bad_record_mac(20)
        BadRecordMac = 20,
        /// record_overflow(22)
        RecordOverflow = 22,
        /// handshake_failure(40)
        HandshakeFailure = 40,
        /// bad_certificate(42)
        BadCertificate = 42,
        /// unsupported_certificate(43)
        UnsupportedCertificate = 43,
        /// certificate_revoked(44)
        CertificateRevoked = 44,
        /// certificate_expired(45)
        CertificateExpired = 45,
        /// certificate_unknown(46)
        CertificateUnknown = 46,
        /// illegal_parameter(47)
        IllegalParameter = 47,
        /// unknown_ca(48)
        UnknownCa = 48,
        /// access_denied(49)
        AccessDenied = 49,
        /// decode_error(50)
        DecodeError = 50,
        /// decrypt_error(51)
        DecryptError = 51,
        /// too_many_cids_requested(52), RFC 9147 §9
        TooManyCidsRequested = 52,
        /// protocol_version(70)
        ProtocolVersion = 70,
        /// insufficient_security(71)
        InsufficientSecurity = 71,
        /// internal_error(80)
        InternalError = 80,
        /// user_canceled(90)
        UserCanceled = 90,
        /// no_renegotiation(100)
        NoRenegotiation = 100,
        /// missing_extension(109)
        MissingExtension = 109,
        /// unsupported_extension(110)
        UnsupportedExtension = 110,
        /// unrecognized_name(112)
        UnrecognizedName = 112,
        /// unknown_psk_identity(115), RFC 4279 §2
        UnknownPskIdentity = 115,
        /// certificate_required(116), RFC 8446 §6.2
        CertificateRequired = 116,
    }
}

registry_u8! {
    /// CompressionMethod (RFC 5246 §7.4.1.2). Only `null` is ever used.
    Compression: u8 {
        /// null(0)
        Null = 0,
    }
}

registry_u8! {
    /// ECPointFormat (RFC 8422 §5.1.2).
    EcPointFormat: u8 {
        /// uncompressed(0)
        Uncompressed = 0,
    }
}

registry_u8! {
    /// ECCurveType (RFC 8422 §5.4).
    EcCurveType: u8 {
        /// named_curve(3)
        NamedCurve = 3,
    }
}

registry_u8! {
    /// ClientCertificateType in CertificateRequest (RFC 5246 §7.4.4, RFC 8422 §5.5).
    ClientCertificateType: u8 {
        /// ecdsa_sign(64)
        EcdsaSign = 64,
    }
}

registry_u8! {
    /// CertificateType for the client/server_certificate_type extensions (RFC 7250 §3).
    CertificateType: u8 {
        /// X509(0)
        X509 = 0,
        /// RawPublicKey(2)
        RawPublicKey = 2,
    }
}

registry_u8! {
    /// PskKeyExchangeMode (RFC 8446 §4.2.9).
    PskKeyExchangeMode: u8 {
        /// psk_ke(0): PSK-only key establishment
        PskKe = 0,
        /// psk_dhe_ke(1): PSK with (EC)DHE key establishment
        PskDheKe = 1,
    }
}

registry_u8! {
    /// KeyUpdateRequest (RFC 8446 §4.6.3).
    KeyUpdateRequest: u8 {
        /// update_not_requested(0)
        UpdateNotRequested = 0,
        /// update_requested(1)
        UpdateRequested = 1,
    }
}

registry_u8! {
    /// ConnectionIdUsage in NewConnectionId (RFC 9147 §9).
    ConnectionIdUsage: u8 {
        /// cid_immediate(0)
        CidImmediate = 0,
        /// cid_spare(1)
        CidSpare = 1,
    }
}

registry_u16! {
    /// Cipher suites this stack knows by name (IANA TLS Cipher Suites registry).
    #[allow(non_camel_case_types)]
    CipherSuite: u16 {
        /// TLS_AES_128_GCM_SHA256 (RFC 8446 §B.4), DTLS 1.3 only
        TLS_AES_128_GCM_SHA256 = 0x1301,
        /// TLS_CHACHA20_POLY1305_SHA256 (RFC 8446 §B.4), DTLS 1.3 only
        TLS_CHACHA20_POLY1305_SHA256 = 0x1303,
        /// TLS_AES_128_CCM_8_SHA256 (RFC 8446 §B.4), DTLS 1.3 only; RFC 9147 §4.5.3 forbids it
        /// without additional forgery safeguards
        TLS_AES_128_CCM_8_SHA256 = 0x1305,
        /// TLS_PSK_WITH_AES_128_GCM_SHA256 (RFC 5487)
        TLS_PSK_WITH_AES_128_GCM_SHA256 = 0x00A8,
        /// TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 §3.3)
        TLS_EMPTY_RENEGOTIATION_INFO_SCSV = 0x00FF,
        /// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (RFC 5289)
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 = 0xC02B,
        /// TLS_PSK_WITH_AES_128_CCM_8 (RFC 6655); mandatory for CoAP PSK mode (RFC 7252 §9.1.3.1)
        TLS_PSK_WITH_AES_128_CCM_8 = 0xC0A8,
        /// TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 (RFC 7251); mandatory for CoAP RPK and certificate modes
        TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 = 0xC0AE,
        /// TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 (RFC 7905)
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 = 0xCCA9,
        /// TLS_PSK_WITH_CHACHA20_POLY1305_SHA256 (RFC 7905)
        TLS_PSK_WITH_CHACHA20_POLY1305_SHA256 = 0xCCAB,
        /// TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256 (RFC 7905)
        TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256 = 0xCCAC,
    }
}

registry_u16! {
    /// ExtensionType (IANA TLS ExtensionType Values).
    ExtensionType: u16 {
        /// server_name(0), RFC 6066
        ServerName = 0,
        /// supported_groups(10), RFC 8422
        SupportedGroups = 10,
        /// ec_point_formats(11), RFC 8422
        EcPointFormats = 11,
        /// signature_algorithms(13), RFC 5246 §7.4.1.4.1
        SignatureAlgorithms = 13,
        /// client_certificate_type(19), RFC 7250
        ClientCertificateType = 19,
        /// server_certificate_type(20), RFC 7250
        ServerCertificateType = 20,
        /// encrypt_then_mac(22), RFC 7366 (not used with AEAD suites)
        EncryptThenMac = 22,
        /// extended_master_secret(23), RFC 7627
        ExtendedMasterSecret = 23,
        /// session_ticket(35), RFC 5077
        SessionTicket = 35,
        /// pre_shared_key(41), RFC 8446 §4.2.11
        PreSharedKey = 41,
        /// early_data(42), RFC 8446 §4.2.10
        EarlyData = 42,
        /// supported_versions(43), RFC 8446 §4.2.1
        SupportedVersions = 43,
        /// cookie(44), RFC 8446 §4.2.2
        Cookie = 44,
        /// psk_key_exchange_modes(45), RFC 8446 §4.2.9
        PskKeyExchangeModes = 45,
        /// certificate_authorities(47), RFC 8446 §4.2.4
        CertificateAuthorities = 47,
        /// signature_algorithms_cert(50), RFC 8446 §4.2.3
        SignatureAlgorithmsCert = 50,
        /// key_share(51), RFC 8446 §4.2.8
        KeyShare = 51,
        /// connection_id(54), RFC 9146 §3 (used by DTLS 1.3 too, RFC 9147 §9)
        ConnectionId = 54,
        /// rrc(61), RFC 9853 §3 (IANA's value for the draft's TBD1)
        Rrc = 61,
        /// renegotiation_info(0xff01), RFC 5746
        RenegotiationInfo = 0xff01,
    }
}

registry_u16! {
    /// NamedGroup (RFC 8422 §5.1.1).
    NamedGroup: u16 {
        /// secp256r1(23)
        Secp256r1 = 23,
        /// x25519(29)
        X25519 = 29,
    }
}

registry_u16! {
    /// SignatureScheme / SignatureAndHashAlgorithm (RFC 5246 §7.4.1.4.1, RFC 8446 §4.2.3).
    SignatureScheme: u16 {
        /// ecdsa_secp256r1_sha256(0x0403)
        EcdsaSecp256r1Sha256 = 0x0403,
    }
}

/// DTLS protocol versions as on the wire (RFC 6347 §4.1: one's complement of the TLS version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolVersion(pub u16);

impl ProtocolVersion {
    /// DTLS 1.0, {254, 255}; the version HelloVerifyRequest carries (RFC 6347 §4.2.1).
    pub const DTLS1_0: Self = Self(0xFEFF);
    /// DTLS 1.2, {254, 253}.
    pub const DTLS1_2: Self = Self(0xFEFD);
    /// DTLS 1.3, {254, 252}.
    pub const DTLS1_3: Self = Self(0xFEFC);

    /// Decodes two bytes.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, InvalidMessage> {
        Ok(Self(r.u16("ProtocolVersion")?))
    }
    /// Appends two bytes.
    pub fn encode(self, out: &mut Vec<u8>) {
        put_u16(out, self.0);
    }
}

/// `IllegalValue` reason: pre_shared_key is not the last ClientHello extension.
pub const REASON_PSK_NOT_LAST: &str = "pre_shared_key is not the last extension";
/// `IllegalValue` reason: a recognised extension appears in a message that does not allow it.
pub const REASON_EXTENSION_NOT_ALLOWED: &str = "extension not allowed in this message";
/// `IllegalValue` reason: two key_share entries for the same group.
pub const REASON_DUPLICATE_KEY_SHARE: &str = "duplicate group in key_share";
/// `IllegalValue` reason: pre_shared_key has a different number of identities and binders.
pub const REASON_PSK_BINDER_COUNT: &str = "pre_shared_key identities and binders differ in number";

/// The alert to send for a decoding failure of a DTLS 1.3 message.
///
/// Most failures are `decode_error` (RFC 8446 §6.2), but RFC 8446 asks for
/// `illegal_parameter` when pre_shared_key is not last (§4.2.11), when a recognised extension
/// appears in a message that does not allow it (§4.2), and permits it for repeated key_share
/// groups (§4.2.8). A binder count that does not match the identities means the binder for
/// the selected PSK is missing, which §4.2.11 treats the same way.
pub fn alert_for(e: &InvalidMessage) -> AlertDescription {
    match e {
        InvalidMessage::IllegalValue(
            REASON_PSK_NOT_LAST | REASON_EXTENSION_NOT_ALLOWED | REASON_DUPLICATE_KEY_SHARE | REASON_PSK_BINDER_COUNT,
        ) => AlertDescription::IllegalParameter,
        _ => AlertDescription::DecodeError,
    }
}
