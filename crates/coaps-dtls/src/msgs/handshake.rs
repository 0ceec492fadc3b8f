use crate::codec::*;

/// `Handshake` header, 12 bytes in DTLS (RFC 6347 §4.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeHeader {
    /// msg_type
    pub msg_type: HandshakeType,
    /// length of the whole message body (uint24)
    pub length: u32,
    /// message_seq
    pub message_seq: u16,
    /// fragment_offset (uint24)
    pub fragment_offset: u32,
    /// fragment_length (uint24)
    pub fragment_length: u32,
}

impl HandshakeHeader {
    /// Encoded size.
    pub const LEN: usize = 12;

    /// Decodes a header and returns it with its fragment, checking that the fragment lies
    /// within `length` and within the input.
    pub fn read_fragment<'a>(r: &mut Reader<'a>) -> Result<(Self, &'a [u8]), InvalidMessage> {
        let msg_type = HandshakeType::read(r)?;
        let length = r.u24("Handshake.length")?;
        let message_seq = r.u16("Handshake.message_seq")?;
        let fragment_offset = r.u24("Handshake.fragment_offset")?;
        let fragment_length = r.u24("Handshake.fragment_length")?;
        if u64::from(fragment_offset) + u64::from(fragment_length) > u64::from(length) {
            return Err(InvalidMessage::IllegalValue("Handshake fragment beyond length"));
        }
        let body = r.take(fragment_length as usize, "Handshake fragment")?;
        Ok((Self { msg_type, length, message_seq, fragment_offset, fragment_length }, body))
    }

    /// Appends the 12 header bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.msg_type.encode(out);
        put_u24(out, self.length);
        put_u16(out, self.message_seq);
        put_u24(out, self.fragment_offset);
        put_u24(out, self.fragment_length);
    }
}

/// `Random`, 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Random(pub [u8; 32]);

/// `SessionID<0..32>`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct SessionId(pub Vec<u8>);

/// One entry of the server_name extension (RFC 6066 §3); only host_name(0) exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerName {
    /// NameType
    pub name_type: u8,
    /// HostName bytes
    pub name: Vec<u8>,
}

/// Extensions a client may send in ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientExtension {
    /// server_name (RFC 6066 §3)
    ServerName(Vec<ServerName>),
    /// supported_groups (RFC 8422 §5.1.1)
    SupportedGroups(Vec<NamedGroup>),
    /// ec_point_formats (RFC 8422 §5.1.2)
    EcPointFormats(Vec<EcPointFormat>),
    /// signature_algorithms (RFC 5246 §7.4.1.4.1)
    SignatureAlgorithms(Vec<SignatureScheme>),
    /// extended_master_secret, empty (RFC 7627 §5.1)
    ExtendedMasterSecret,
    /// renegotiation_info with renegotiated_connection (empty on an initial handshake, RFC 5746)
    RenegotiationInfo(Vec<u8>),
    /// session_ticket (RFC 5077 §3.2)
    SessionTicket(Vec<u8>),
    /// client_certificate_type (RFC 7250 §3)
    ClientCertificateType(Vec<CertificateType>),
    /// server_certificate_type (RFC 7250 §3)
    ServerCertificateType(Vec<CertificateType>),
    /// connection_id (RFC 9146 §3): the CID the client wants to receive, `cid<0..2^8-1>`
    /// (empty: it sends the server's CID but wants none itself)
    ConnectionId(Vec<u8>),
    /// rrc (RFC 9853 §3), empty: the client can answer return routability checks
    Rrc,
    /// Anything else, kept verbatim.
    Unknown {
        /// extension_type
        typ: ExtensionType,
        /// extension_data
        data: Vec<u8>,
    },
}

/// Extensions a server may send in ServerHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerExtension {
    /// server_name, empty acknowledgement (RFC 6066 §3)
    ServerName,
    /// ec_point_formats (RFC 8422 §5.2)
    EcPointFormats(Vec<EcPointFormat>),
    /// extended_master_secret, empty (RFC 7627 §5.1)
    ExtendedMasterSecret,
    /// renegotiation_info (RFC 5746)
    RenegotiationInfo(Vec<u8>),
    /// session_ticket, empty acknowledgement (RFC 5077 §3.2)
    SessionTicket,
    /// client_certificate_type, the selected type (RFC 7250 §3)
    ClientCertificateType(CertificateType),
    /// server_certificate_type, the selected type (RFC 7250 §3)
    ServerCertificateType(CertificateType),
    /// connection_id (RFC 9146 §3): the CID the server wants to receive, `cid<0..2^8-1>`
    ConnectionId(Vec<u8>),
    /// rrc (RFC 9853 §3), empty: the server agrees to return routability checks
    Rrc,
    /// Anything else, kept verbatim.
    Unknown {
        /// extension_type
        typ: ExtensionType,
        /// extension_data
        data: Vec<u8>,
    },
}

/// ClientHello (RFC 6347 §4.2.1 adds `cookie`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// client_version
    pub client_version: ProtocolVersion,
    /// random
    pub random: Random,
    /// session_id
    pub session_id: SessionId,
    /// cookie<0..2^8-1>
    pub cookie: Vec<u8>,
    /// cipher_suites<2..2^16-2>
    pub cipher_suites: Vec<CipherSuite>,
    /// compression_methods<1..2^8-1>
    pub compression_methods: Vec<Compression>,
    /// extensions (absent and empty are both decoded as empty)
    pub extensions: Vec<ClientExtension>,
}

/// HelloVerifyRequest (RFC 6347 §4.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloVerifyRequest {
    /// server_version (DTLS 1.0 by convention)
    pub server_version: ProtocolVersion,
    /// cookie<0..2^8-1>
    pub cookie: Vec<u8>,
}

/// ServerHello (RFC 5246 §7.4.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// server_version
    pub server_version: ProtocolVersion,
    /// random
    pub random: Random,
    /// session_id
    pub session_id: SessionId,
    /// cipher_suite
    pub cipher_suite: CipherSuite,
    /// compression_method
    pub compression_method: Compression,
    /// extensions
    pub extensions: Vec<ServerExtension>,
}

/// Certificate (RFC 5246 §7.4.2; RFC 7250 §3 for raw public keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Certificate {
    /// `ASN.1Cert certificate_list<0..2^24-1>`, end-entity first.
    X509(Vec<Vec<u8>>),
    /// `opaque ASN.1_subjectPublicKeyInfo<1..2^24-1>`.
    RawPublicKey(Vec<u8>),
}

/// ServerECDHParams (RFC 8422 §5.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEcdhParams {
    /// curve_type (named_curve)
    pub curve_type: EcCurveType,
    /// namedcurve
    pub named_curve: NamedGroup,
    /// point<1..2^8-1>
    pub public: Vec<u8>,
}

/// digitally-signed struct (RFC 5246 §4.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigitallySigned {
    /// SignatureAndHashAlgorithm
    pub scheme: SignatureScheme,
    /// signature<0..2^16-1>, DER ECDSA-Sig-Value for ECDSA
    pub signature: Vec<u8>,
}

/// The key exchange of a cipher suite; selects the ServerKeyExchange / ClientKeyExchange layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyExchangeAlgorithm {
    /// PSK (RFC 4279 §2)
    Psk,
    /// ECDHE_PSK (RFC 5489 §2)
    EcdhePsk,
    /// ECDHE_ECDSA (RFC 8422)
    EcdheEcdsa,
}

/// ServerKeyExchange (RFC 4279 §2, RFC 5489 §2, RFC 8422 §5.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerKeyExchange {
    /// psk_identity_hint<0..2^16-1>
    Psk {
        /// psk_identity_hint
        hint: Vec<u8>,
    },
    /// psk_identity_hint followed by ServerECDHParams, unsigned
    EcdhePsk {
        /// psk_identity_hint
        hint: Vec<u8>,
        /// params
        params: ServerEcdhParams,
    },
    /// ServerECDHParams and a signature over client_random || server_random || params
    EcdheEcdsa {
        /// params
        params: ServerEcdhParams,
        /// signed_params
        signature: DigitallySigned,
    },
}

/// CertificateRequest (RFC 5246 §7.4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRequest {
    /// certificate_types<1..2^8-1>
    pub certificate_types: Vec<ClientCertificateType>,
    /// supported_signature_algorithms<2..2^16-2>
    pub supported_signature_algorithms: Vec<SignatureScheme>,
    /// certificate_authorities<0..2^16-1>, each a DER DistinguishedName
    pub certificate_authorities: Vec<Vec<u8>>,
}

/// ClientKeyExchange (RFC 4279 §2, RFC 5489 §2, RFC 8422 §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKeyExchange {
    /// psk_identity<0..2^16-1>
    Psk {
        /// psk_identity
        identity: Vec<u8>,
    },
    /// psk_identity then ecdh_Yc<1..2^8-1>
    EcdhePsk {
        /// psk_identity
        identity: Vec<u8>,
        /// ecdh_Yc
        public: Vec<u8>,
    },
    /// ecdh_Yc<1..2^8-1>
    Ecdhe {
        /// ecdh_Yc
        public: Vec<u8>,
    },
}

/// NewSessionTicket (RFC 5077 §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSessionTicket {
    /// ticket_lifetime_hint in seconds
    pub lifetime_hint: u32,
    /// ticket<0..2^16-1>
    pub ticket: Vec<u8>,
}

/// Alert (RFC 5246 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alert {
    /// level
    pub level: AlertLevel,
    /// description
    pub description: AlertDescription,
}

impl Alert {
    /// Decodes the two alert bytes (exactly two).
    pub fn read_exact(bytes: &[u8]) -> Result<Self, InvalidMessage> {
        let mut r = Reader::new(bytes);
        let level = AlertLevel::read(&mut r)?;
        let description = AlertDescription::read(&mut r)?;
        r.expect_empty("Alert")?;
        Ok(Self { level, description })
    }
    /// The two alert bytes.
    pub fn encode(&self) -> [u8; 2] {
        [self.level.into(), self.description.into()]
    }
}
