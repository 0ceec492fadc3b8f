//! Encoders and decoders for the messages in `handshake.rs`.
//!
//! Decoders are total and allocate at most a constant factor of their input: every length is
//! checked against the bytes actually present (through [`Reader::take`]) before anything is
//! collected. Encoders assume the value respects the RFC bounds documented on each field; an
//! oversized field is a caller bug and trips a `debug_assert!` instead of silently writing a
//! wrong length prefix.
use super::handshake::*;
use crate::codec::blocks::*;
use crate::codec::*;

// ---------------------------------------------------------------------------------------------
// Shared fields

impl<'a> Codec<'a> for Random {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        Ok(Self(r.array("Random")?))
    }
}

/// `opaque SessionID<0..32>` (RFC 5246 §7.4.1.2): longer is illegal.
impl<'a> Codec<'a> for SessionId {
    fn encode(&self, out: &mut Vec<u8>) {
        debug_assert!(self.0.len() <= 32, "SessionID longer than 32 bytes");
        put_vec_u8(out, &self.0);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let id = r.vec_u8("SessionID")?;
        if id.len() > 32 {
            return Err(InvalidMessage::IllegalValue("SessionID longer than 32 bytes"));
        }
        Ok(Self(id.to_vec()))
    }
}

/// `ServerName` (RFC 6066 §3). Only host_name(0) is defined, as `HostName<1..2^16-1>`; RFC 6066
/// requires every future name type to begin with a 16-bit length, so other types are read as
/// `opaque<0..2^16-1>` and kept.
impl<'a> Codec<'a> for ServerName {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.name_type);
        put_vec_u16(out, &self.name);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let name_type = r.u8("ServerName.name_type")?;
        let name = r.vec_u16("ServerName.name")?;
        if name_type == 0 && name.is_empty() {
            return Err(InvalidMessage::IllegalValue("empty HostName"));
        }
        Ok(Self { name_type, name: name.to_vec() })
    }
}

// ---------------------------------------------------------------------------------------------
// Extensions

impl ClientExtension {
    /// The `ExtensionType` this extension is sent as.
    pub fn ext_type(&self) -> ExtensionType {
        match self {
            Self::ServerName(_) => ExtensionType::ServerName,
            Self::SupportedGroups(_) => ExtensionType::SupportedGroups,
            Self::EcPointFormats(_) => ExtensionType::EcPointFormats,
            Self::SignatureAlgorithms(_) => ExtensionType::SignatureAlgorithms,
            Self::ExtendedMasterSecret => ExtensionType::ExtendedMasterSecret,
            Self::RenegotiationInfo(_) => ExtensionType::RenegotiationInfo,
            Self::SessionTicket(_) => ExtensionType::SessionTicket,
            Self::ClientCertificateType(_) => ExtensionType::ClientCertificateType,
            Self::ServerCertificateType(_) => ExtensionType::ServerCertificateType,
            Self::ConnectionId(_) => ExtensionType::ConnectionId,
            Self::Rrc => ExtensionType::Rrc,
            Self::Unknown { typ, .. } => *typ,
        }
    }

    fn encode_data(&self, out: &mut Vec<u8>) {
        match self {
            Self::ServerName(names) => put_len_prefixed(out, LenPrefix::U16, |o| {
                for n in names {
                    n.encode(o);
                }
            }),
            Self::SupportedGroups(g) => put_list_u16(out, g),
            Self::EcPointFormats(f) => put_list_u8(out, f),
            Self::SignatureAlgorithms(s) => put_list_u16(out, s),
            Self::ExtendedMasterSecret | Self::Rrc => {}
            Self::RenegotiationInfo(rc) | Self::ConnectionId(rc) => put_vec_u8(out, rc),
            Self::SessionTicket(t) => out.extend_from_slice(t),
            Self::ClientCertificateType(t) | Self::ServerCertificateType(t) => put_list_u8(out, t),
            Self::Unknown { data, .. } => out.extend_from_slice(data),
        }
    }

    fn read_data(typ: ExtensionType, data: &[u8]) -> Result<Self, InvalidMessage> {
        Ok(match typ {
            // RFC 6066 §3: ServerNameList server_name_list<1..2^16-1>, at most one name per type.
            ExtensionType::ServerName => parse_ext_data(data, "server_name", |r| {
                let list = r.vec_u16("ServerNameList")?;
                if list.is_empty() {
                    return Err(InvalidMessage::IllegalValue("empty ServerNameList"));
                }
                let mut lr = Reader::new(list);
                let mut names = Vec::new();
                while !lr.is_empty() {
                    names.push(ServerName::read(&mut lr)?);
                }
                check_unique(
                    names.iter().map(|n| u16::from(n.name_type)).collect(),
                    "duplicate name_type in server_name",
                )?;
                Ok(Self::ServerName(names))
            })?,
            // RFC 8422 §5.1.1: NamedCurve named_curve_list<2..2^16-1>.
            ExtensionType::SupportedGroups => parse_ext_data(data, "supported_groups", |r| {
                Ok(Self::SupportedGroups(read_list_u16(r, 1, "supported_groups")?))
            })?,
            // RFC 8422 §5.1.2: ECPointFormat ec_point_format_list<1..2^8-1>.
            ExtensionType::EcPointFormats => parse_ext_data(data, "ec_point_formats", |r| {
                Ok(Self::EcPointFormats(read_list_u8(r, 1, "ec_point_formats")?))
            })?,
            // RFC 5246 §7.4.1.4.1: supported_signature_algorithms<2..2^16-2>.
            ExtensionType::SignatureAlgorithms => parse_ext_data(data, "signature_algorithms", |r| {
                Ok(Self::SignatureAlgorithms(read_list_u16(r, 1, "signature_algorithms")?))
            })?,
            ExtensionType::ExtendedMasterSecret => {
                expect_empty_data(data, "extended_master_secret data")?;
                Self::ExtendedMasterSecret
            }
            // RFC 5746 §3.2: opaque renegotiated_connection<0..255>.
            ExtensionType::RenegotiationInfo => parse_ext_data(data, "renegotiation_info", |r| {
                Ok(Self::RenegotiationInfo(r.vec_u8("renegotiated_connection")?.to_vec()))
            })?,
            // RFC 5077 §3.2: the data is the ticket itself (possibly empty).
            ExtensionType::SessionTicket => Self::SessionTicket(data.to_vec()),
            // RFC 7250 §3: CertificateType client/server_certificate_types<1..2^8-1>.
            ExtensionType::ClientCertificateType => parse_ext_data(data, "client_certificate_type", |r| {
                Ok(Self::ClientCertificateType(read_list_u8(r, 1, "client_certificate_types")?))
            })?,
            ExtensionType::ServerCertificateType => parse_ext_data(data, "server_certificate_type", |r| {
                Ok(Self::ServerCertificateType(read_list_u8(r, 1, "server_certificate_types")?))
            })?,
            // RFC 9146 §3: opaque cid<0..2^8-1>.
            ExtensionType::ConnectionId => {
                parse_ext_data(data, "connection_id", |r| Ok(Self::ConnectionId(r.vec_u8("cid")?.to_vec())))?
            }
            // RFC 9853 §3: the extension_data field is empty.
            ExtensionType::Rrc => {
                expect_empty_data(data, "rrc data")?;
                Self::Rrc
            }
            typ => Self::Unknown { typ, data: data.to_vec() },
        })
    }
}

/// One `Extension` (RFC 5246 §7.4.1.4): `{ExtensionType extension_type; opaque
/// extension_data<0..2^16-1>}`, with the data of known types parsed in full.
impl<'a> Codec<'a> for ClientExtension {
    fn encode(&self, out: &mut Vec<u8>) {
        self.ext_type().encode(out);
        put_len_prefixed(out, LenPrefix::U16, |o| self.encode_data(o));
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let typ = ExtensionType::read(r)?;
        let data = r.vec_u16("extension_data")?;
        Self::read_data(typ, data)
    }
}

/// A ClientHello `extensions<0..2^16-1>` block. RFC 5246 §7.4.1.4: "There MUST NOT be more
/// than one extension of the same type", so a repeated type is `IllegalValue`.
impl<'a> Codec<'a> for Vec<ClientExtension> {
    fn encode(&self, out: &mut Vec<u8>) {
        put_ext_block(out, self, ClientExtension::ext_type, ClientExtension::encode_data);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        read_ext_block(r, "extensions", "duplicate extension in ClientHello", ClientExtension::read_data)
    }
}

impl ServerExtension {
    /// The `ExtensionType` this extension is sent as.
    pub fn ext_type(&self) -> ExtensionType {
        match self {
            Self::ServerName => ExtensionType::ServerName,
            Self::EcPointFormats(_) => ExtensionType::EcPointFormats,
            Self::ExtendedMasterSecret => ExtensionType::ExtendedMasterSecret,
            Self::RenegotiationInfo(_) => ExtensionType::RenegotiationInfo,
            Self::SessionTicket => ExtensionType::SessionTicket,
            Self::ClientCertificateType(_) => ExtensionType::ClientCertificateType,
            Self::ServerCertificateType(_) => ExtensionType::ServerCertificateType,
            Self::ConnectionId(_) => ExtensionType::ConnectionId,
            Self::Rrc => ExtensionType::Rrc,
            Self::Unknown { typ, .. } => *typ,
        }
    }

    fn encode_data(&self, out: &mut Vec<u8>) {
        match self {
            Self::ServerName | Self::ExtendedMasterSecret | Self::SessionTicket | Self::Rrc => {}
            Self::EcPointFormats(f) => put_list_u8(out, f),
            Self::RenegotiationInfo(rc) | Self::ConnectionId(rc) => put_vec_u8(out, rc),
            Self::ClientCertificateType(t) | Self::ServerCertificateType(t) => t.encode(out),
            Self::Unknown { data, .. } => out.extend_from_slice(data),
        }
    }

    fn read_data(typ: ExtensionType, data: &[u8]) -> Result<Self, InvalidMessage> {
        Ok(match typ {
            // RFC 6066 §3: the server's acknowledgement has empty extension_data.
            ExtensionType::ServerName => {
                expect_empty_data(data, "server_name acknowledgement")?;
                Self::ServerName
            }
            ExtensionType::EcPointFormats => parse_ext_data(data, "ec_point_formats", |r| {
                Ok(Self::EcPointFormats(read_list_u8(r, 1, "ec_point_formats")?))
            })?,
            ExtensionType::ExtendedMasterSecret => {
                expect_empty_data(data, "extended_master_secret data")?;
                Self::ExtendedMasterSecret
            }
            ExtensionType::RenegotiationInfo => parse_ext_data(data, "renegotiation_info", |r| {
                Ok(Self::RenegotiationInfo(r.vec_u8("renegotiated_connection")?.to_vec()))
            })?,
            // RFC 5077 §3.2: the server's SessionTicket extension is empty.
            ExtensionType::SessionTicket => {
                expect_empty_data(data, "session_ticket acknowledgement")?;
                Self::SessionTicket
            }
            // RFC 7250 §3: in ServerHello, a single CertificateType.
            ExtensionType::ClientCertificateType => parse_ext_data(data, "client_certificate_type", |r| {
                Ok(Self::ClientCertificateType(CertificateType::read(r)?))
            })?,
            ExtensionType::ServerCertificateType => parse_ext_data(data, "server_certificate_type", |r| {
                Ok(Self::ServerCertificateType(CertificateType::read(r)?))
            })?,
            // RFC 9146 §3: opaque cid<0..2^8-1>.
            ExtensionType::ConnectionId => {
                parse_ext_data(data, "connection_id", |r| Ok(Self::ConnectionId(r.vec_u8("cid")?.to_vec())))?
            }
            // RFC 9853 §3: the extension_data field is empty.
            ExtensionType::Rrc => {
                expect_empty_data(data, "rrc data")?;
                Self::Rrc
            }
            typ => Self::Unknown { typ, data: data.to_vec() },
        })
    }
}

/// One ServerHello `Extension`; see [`ClientExtension`]'s impl.
impl<'a> Codec<'a> for ServerExtension {
    fn encode(&self, out: &mut Vec<u8>) {
        self.ext_type().encode(out);
        put_len_prefixed(out, LenPrefix::U16, |o| self.encode_data(o));
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let typ = ExtensionType::read(r)?;
        let data = r.vec_u16("extension_data")?;
        Self::read_data(typ, data)
    }
}

/// A ServerHello `extensions<0..2^16-1>` block; repeated types are `IllegalValue`
/// (RFC 5246 §7.4.1.4).
impl<'a> Codec<'a> for Vec<ServerExtension> {
    fn encode(&self, out: &mut Vec<u8>) {
        put_ext_block(out, self, ServerExtension::ext_type, ServerExtension::encode_data);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        read_ext_block(r, "extensions", "duplicate extension in ServerHello", ServerExtension::read_data)
    }
}

// ---------------------------------------------------------------------------------------------
// Hellos

/// ClientHello (RFC 5246 §7.4.1.2 with the DTLS cookie after session_id, RFC 6347 §4.2.1).
///
/// The extensions block is optional: RFC 5246 §7.4.1.2 detects it by bytes following
/// compression_methods, so `read` expects the reader to end where the handshake body ends.
/// Empty `extensions` are encoded by omitting the block.
impl<'a> Codec<'a> for ClientHello {
    fn encode(&self, out: &mut Vec<u8>) {
        self.client_version.encode(out);
        self.random.encode(out);
        self.session_id.encode(out);
        put_vec_u8(out, &self.cookie);
        put_list_u16(out, &self.cipher_suites);
        put_list_u8(out, &self.compression_methods);
        if !self.extensions.is_empty() {
            self.extensions.encode(out);
        }
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let client_version = ProtocolVersion::read(r)?;
        let random = Random::read(r)?;
        let session_id = SessionId::read(r)?;
        // RFC 6347 §4.2.1: opaque cookie<0..2^8-1>, bounded by its one-byte length.
        let cookie = r.vec_u8("ClientHello.cookie")?.to_vec();
        // RFC 5246 §7.4.1.2: CipherSuite cipher_suites<2..2^16-2>.
        let cipher_suites = read_list_u16(r, 1, "ClientHello.cipher_suites")?;
        // RFC 5246 §7.4.1.2: CompressionMethod compression_methods<1..2^8-1>.
        let compression_methods = read_list_u8(r, 1, "ClientHello.compression_methods")?;
        let extensions = if r.is_empty() { Vec::new() } else { Vec::<ClientExtension>::read(r)? };
        Ok(Self { client_version, random, session_id, cookie, cipher_suites, compression_methods, extensions })
    }
}

/// HelloVerifyRequest (RFC 6347 §4.2.1): `{ProtocolVersion server_version; opaque
/// cookie<0..2^8-1>}`.
impl<'a> Codec<'a> for HelloVerifyRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        self.server_version.encode(out);
        put_vec_u8(out, &self.cookie);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let server_version = ProtocolVersion::read(r)?;
        let cookie = r.vec_u8("HelloVerifyRequest.cookie")?.to_vec();
        Ok(Self { server_version, cookie })
    }
}

/// ServerHello (RFC 5246 §7.4.1.3). As for ClientHello, the extensions block is optional and
/// omitted when empty.
impl<'a> Codec<'a> for ServerHello {
    fn encode(&self, out: &mut Vec<u8>) {
        self.server_version.encode(out);
        self.random.encode(out);
        self.session_id.encode(out);
        self.cipher_suite.encode(out);
        self.compression_method.encode(out);
        if !self.extensions.is_empty() {
            self.extensions.encode(out);
        }
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let server_version = ProtocolVersion::read(r)?;
        let random = Random::read(r)?;
        let session_id = SessionId::read(r)?;
        let cipher_suite = CipherSuite::read(r)?;
        let compression_method = Compression::read(r)?;
        let extensions = if r.is_empty() { Vec::new() } else { Vec::<ServerExtension>::read(r)? };
        Ok(Self { server_version, random, session_id, cipher_suite, compression_method, extensions })
    }
}

// ---------------------------------------------------------------------------------------------
// Key exchange and authentication

/// ServerECDHParams (RFC 8422 §5.4). Only `named_curve` has a layout this stack can read: the
/// explicit_prime / explicit_char2 forms are deprecated, so any other curve_type is illegal.
impl<'a> Codec<'a> for ServerEcdhParams {
    fn encode(&self, out: &mut Vec<u8>) {
        self.curve_type.encode(out);
        self.named_curve.encode(out);
        put_vec_u8(out, &self.public);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let curve_type = EcCurveType::read(r)?;
        if curve_type != EcCurveType::NamedCurve {
            return Err(InvalidMessage::IllegalValue("ECCurveType other than named_curve"));
        }
        let named_curve = NamedGroup::read(r)?;
        // ECPoint: opaque point<1..2^8-1>.
        let public = read_nonempty_u8(r, "ServerECDHParams.point")?.to_vec();
        Ok(Self { curve_type, named_curve, public })
    }
}

/// `digitally-signed` (RFC 5246 §4.7): SignatureAndHashAlgorithm then
/// `opaque signature<0..2^16-1>`.
impl<'a> Codec<'a> for DigitallySigned {
    fn encode(&self, out: &mut Vec<u8>) {
        self.scheme.encode(out);
        put_vec_u16(out, &self.signature);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let scheme = SignatureScheme::read(r)?;
        let signature = r.vec_u16("digitally-signed.signature")?.to_vec();
        Ok(Self { scheme, signature })
    }
}

/// CertificateRequest (RFC 5246 §7.4.4).
impl<'a> Codec<'a> for CertificateRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        put_list_u8(out, &self.certificate_types);
        put_list_u16(out, &self.supported_signature_algorithms);
        put_len_prefixed(out, LenPrefix::U16, |o| {
            for dn in &self.certificate_authorities {
                put_vec_u16(o, dn);
            }
        });
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        // ClientCertificateType certificate_types<1..2^8-1>.
        let certificate_types = read_list_u8(r, 1, "CertificateRequest.certificate_types")?;
        // SignatureAndHashAlgorithm supported_signature_algorithms<2..2^16-2>.
        let supported_signature_algorithms = read_list_u16(r, 1, "CertificateRequest.supported_signature_algorithms")?;
        // DistinguishedName certificate_authorities<0..2^16-1>, each opaque<1..2^16-1>.
        let cas = r.vec_u16("CertificateRequest.certificate_authorities")?;
        let mut cr = Reader::new(cas);
        let mut certificate_authorities = Vec::new();
        while !cr.is_empty() {
            let dn = cr.vec_u16("DistinguishedName")?;
            if dn.is_empty() {
                return Err(InvalidMessage::IllegalValue("empty DistinguishedName"));
            }
            certificate_authorities.push(dn.to_vec());
        }
        Ok(Self { certificate_types, supported_signature_algorithms, certificate_authorities })
    }
}

/// NewSessionTicket (RFC 5077 §3.3): `{uint32 ticket_lifetime_hint; opaque
/// ticket<0..2^16-1>}`. An empty ticket is legal: it is how a server withdraws its offer.
impl<'a> Codec<'a> for NewSessionTicket {
    fn encode(&self, out: &mut Vec<u8>) {
        put_u32(out, self.lifetime_hint);
        put_vec_u16(out, &self.ticket);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let lifetime_hint = r.u32("NewSessionTicket.ticket_lifetime_hint")?;
        let ticket = r.vec_u16("NewSessionTicket.ticket")?.to_vec();
        Ok(Self { lifetime_hint, ticket })
    }
}

impl Certificate {
    /// Decodes a Certificate message body of the negotiated certificate type.
    ///
    /// X.509 (RFC 5246 §7.4.2): `ASN.1Cert certificate_list<0..2^24-1>`, each
    /// `opaque ASN.1Cert<1..2^24-1>`. RawPublicKey (RFC 7250 §3): a single
    /// `opaque ASN.1_subjectPublicKeyInfo<1..2^24-1>`. Any other type has no known layout and
    /// is `IllegalValue`.
    pub fn read_with(r: &mut Reader<'_>, typ: CertificateType) -> Result<Self, InvalidMessage> {
        match typ {
            CertificateType::X509 => {
                let list = r.vec_u24("certificate_list")?;
                let mut lr = Reader::new(list);
                let mut certs = Vec::new();
                while !lr.is_empty() {
                    let c = lr.vec_u24("ASN.1Cert")?;
                    if c.is_empty() {
                        return Err(InvalidMessage::IllegalValue("empty ASN.1Cert"));
                    }
                    certs.push(c.to_vec());
                }
                Ok(Self::X509(certs))
            }
            CertificateType::RawPublicKey => {
                let spki = r.vec_u24("ASN.1_subjectPublicKeyInfo")?;
                if spki.is_empty() {
                    return Err(InvalidMessage::IllegalValue("empty ASN.1_subjectPublicKeyInfo"));
                }
                Ok(Self::RawPublicKey(spki.to_vec()))
            }
            CertificateType::Unknown(_) => Err(InvalidMessage::IllegalValue("certificate type")),
        }
    }

    /// Decodes a complete Certificate body, refusing trailing bytes.
    pub fn read_exact_with(bytes: &[u8], typ: CertificateType) -> Result<Self, InvalidMessage> {
        let mut r = Reader::new(bytes);
        let v = Self::read_with(&mut r, typ)?;
        r.expect_empty("Certificate")?;
        Ok(v)
    }

    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::X509(certs) => put_len_prefixed(out, LenPrefix::U24, |o| {
                for c in certs {
                    put_vec_u24(o, c);
                }
            }),
            Self::RawPublicKey(spki) => put_vec_u24(out, spki),
        }
    }

    /// The encoding in a fresh vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }
}

impl ServerKeyExchange {
    /// Decodes a ServerKeyExchange body for the negotiated key exchange: PSK (RFC 4279 §2)
    /// `psk_identity_hint<0..2^16-1>`; ECDHE_PSK (RFC 5489 §2) the hint then ServerECDHParams;
    /// ECDHE_ECDSA (RFC 8422 §5.4) ServerECDHParams then `digitally-signed`.
    pub fn read_with(r: &mut Reader<'_>, kx: KeyExchangeAlgorithm) -> Result<Self, InvalidMessage> {
        Ok(match kx {
            KeyExchangeAlgorithm::Psk => Self::Psk { hint: r.vec_u16("psk_identity_hint")?.to_vec() },
            KeyExchangeAlgorithm::EcdhePsk => {
                let hint = r.vec_u16("psk_identity_hint")?.to_vec();
                let params = ServerEcdhParams::read(r)?;
                Self::EcdhePsk { hint, params }
            }
            KeyExchangeAlgorithm::EcdheEcdsa => {
                let params = ServerEcdhParams::read(r)?;
                let signature = DigitallySigned::read(r)?;
                Self::EcdheEcdsa { params, signature }
            }
        })
    }

    /// Decodes a complete ServerKeyExchange body, refusing trailing bytes.
    pub fn read_exact_with(bytes: &[u8], kx: KeyExchangeAlgorithm) -> Result<Self, InvalidMessage> {
        let mut r = Reader::new(bytes);
        let v = Self::read_with(&mut r, kx)?;
        r.expect_empty("ServerKeyExchange")?;
        Ok(v)
    }

    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Psk { hint } => put_vec_u16(out, hint),
            Self::EcdhePsk { hint, params } => {
                put_vec_u16(out, hint);
                params.encode(out);
            }
            Self::EcdheEcdsa { params, signature } => {
                params.encode(out);
                signature.encode(out);
            }
        }
    }

    /// The encoding in a fresh vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }
}

impl ClientKeyExchange {
    /// Decodes a ClientKeyExchange body for the negotiated key exchange: PSK (RFC 4279 §2)
    /// `psk_identity<0..2^16-1>`; ECDHE_PSK (RFC 5489 §2) the identity then
    /// `ecdh_Yc<1..2^8-1>`; ECDHE_ECDSA (RFC 8422 §5.7) `ecdh_Yc<1..2^8-1>`.
    pub fn read_with(r: &mut Reader<'_>, kx: KeyExchangeAlgorithm) -> Result<Self, InvalidMessage> {
        Ok(match kx {
            KeyExchangeAlgorithm::Psk => Self::Psk { identity: r.vec_u16("psk_identity")?.to_vec() },
            KeyExchangeAlgorithm::EcdhePsk => {
                let identity = r.vec_u16("psk_identity")?.to_vec();
                let public = read_nonempty_u8(r, "ecdh_Yc")?.to_vec();
                Self::EcdhePsk { identity, public }
            }
            KeyExchangeAlgorithm::EcdheEcdsa => Self::Ecdhe { public: read_nonempty_u8(r, "ecdh_Yc")?.to_vec() },
        })
    }

    /// Decodes a complete ClientKeyExchange body, refusing trailing bytes.
    pub fn read_exact_with(bytes: &[u8], kx: KeyExchangeAlgorithm) -> Result<Self, InvalidMessage> {
        let mut r = Reader::new(bytes);
        let v = Self::read_with(&mut r, kx)?;
        r.expect_empty("ClientKeyExchange")?;
        Ok(v)
    }

    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Psk { identity } => put_vec_u16(out, identity),
            Self::EcdhePsk { identity, public } => {
                put_vec_u16(out, identity);
                put_vec_u8(out, public);
            }
            Self::Ecdhe { public } => put_vec_u8(out, public),
        }
    }

    /// The encoding in a fresh vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }
}
