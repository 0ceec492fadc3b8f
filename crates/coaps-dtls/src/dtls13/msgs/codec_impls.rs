//! Encoders and decoders for the types in `types.rs`.
//!
//! Decoders are total and allocate at most a constant factor of their input: every length is
//! checked against the bytes present (through [`Reader::take`]) before anything is collected.
//! Encoders assume the value respects the RFC bounds documented on each field; an oversized
//! field is a caller bug and trips a `debug_assert!` rather than writing a wrong length.
use super::types::*;
use super::{
    HELLO_RETRY_REQUEST_RANDOM, REASON_DUPLICATE_KEY_SHARE, REASON_EXTENSION_NOT_ALLOWED, REASON_PSK_BINDER_COUNT,
    REASON_PSK_NOT_LAST,
};
use crate::codec::blocks::*;
use crate::codec::*;

// ---------------------------------------------------------------------------------------------
// Small helpers (the shared vectors and extension blocks are in `codec::blocks`)

/// `DistinguishedName authorities<3..2^16-1>`, each `opaque DistinguishedName<1..2^16-1>`.
fn put_dn_list(out: &mut Vec<u8>, dns: &[Vec<u8>]) {
    put_len_prefixed(out, LenPrefix::U16, |o| {
        for dn in dns {
            put_vec_u16(o, dn);
        }
    });
}

/// Reads `DistinguishedName authorities<3..2^16-1>` (RFC 8446 §4.2.4): at least one name,
/// none empty.
fn read_dn_list(r: &mut Reader<'_>) -> Result<Vec<Vec<u8>>, InvalidMessage> {
    let list = read_nonempty_u16(r, "certificate_authorities")?;
    let mut lr = Reader::new(list);
    let mut dns = Vec::new();
    while !lr.is_empty() {
        dns.push(read_nonempty_u16(&mut lr, "DistinguishedName")?.to_vec());
    }
    Ok(dns)
}

/// The extension types this module parses. RFC 8446 §4.2: "If an implementation receives an
/// extension which it recognizes and which is not specified for the message in which it
/// appears, it MUST abort the handshake", so each of these is refused outside the messages
/// the §4.2 table (and RFC 9146 for connection_id) lists for it. Other types are kept as
/// `Unknown` wherever they appear.
const RECOGNISED: [ExtensionType; 14] = [
    ExtensionType::ServerName,
    ExtensionType::SupportedGroups,
    ExtensionType::SignatureAlgorithms,
    ExtensionType::ClientCertificateType,
    ExtensionType::ServerCertificateType,
    ExtensionType::PreSharedKey,
    ExtensionType::EarlyData,
    ExtensionType::SupportedVersions,
    ExtensionType::Cookie,
    ExtensionType::PskKeyExchangeModes,
    ExtensionType::CertificateAuthorities,
    ExtensionType::SignatureAlgorithmsCert,
    ExtensionType::KeyShare,
    ExtensionType::ConnectionId,
];

/// Keeps an extension this message does not parse: refused if it is recognised (and so not
/// allowed here, since the caller parses every allowed one it knows), otherwise kept verbatim.
/// `passthrough` lists recognised types allowed here but not parsed (server_name in
/// CertificateRequest, RFC 9261).
fn unparsed(typ: ExtensionType, data: &[u8], passthrough: &[ExtensionType]) -> Result<RawExtension, InvalidMessage> {
    if RECOGNISED.contains(&typ) && !passthrough.contains(&typ) {
        return Err(InvalidMessage::IllegalValue(REASON_EXTENSION_NOT_ALLOWED));
    }
    Ok(RawExtension { typ, data: data.to_vec() })
}

fn put_raw_data(raw: &RawExtension, out: &mut Vec<u8>) {
    out.extend_from_slice(&raw.data);
}

/// A selected version in ServerHello / HelloRetryRequest supported_versions (RFC 8446 §4.2.1).
fn read_selected_version(data: &[u8]) -> Result<ProtocolVersion, InvalidMessage> {
    parse_ext_data(data, "supported_versions.selected_version", ProtocolVersion::read)
}

/// An optional extensions block after the fixed fields of a hello: RFC 8446 §4.1.2 detects it
/// by bytes remaining, so the reader must end where the handshake body ends.
fn read_optional_block<'a, T>(
    r: &mut Reader<'a>,
    read: impl FnOnce(&mut Reader<'a>) -> Result<Vec<T>, InvalidMessage>,
) -> Result<Vec<T>, InvalidMessage> {
    if r.is_empty() { Ok(Vec::new()) } else { read(r) }
}

// ---------------------------------------------------------------------------------------------
// Shared structures

/// `KeyShareEntry` (RFC 8446 §4.2.8): `{NamedGroup group; opaque key_exchange<1..2^16-1>}`.
impl<'a> Codec<'a> for KeyShareEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        self.group.encode(out);
        put_vec_u16(out, &self.key_exchange);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let group = NamedGroup::read(r)?;
        let key_exchange = read_nonempty_u16(r, "KeyShareEntry.key_exchange")?.to_vec();
        Ok(Self { group, key_exchange })
    }
}

/// `PskIdentity` (RFC 8446 §4.2.11): `{opaque identity<1..2^16-1>; uint32
/// obfuscated_ticket_age}`.
impl<'a> Codec<'a> for PskIdentity {
    fn encode(&self, out: &mut Vec<u8>) {
        put_vec_u16(out, &self.identity);
        put_u32(out, self.obfuscated_ticket_age);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let identity = read_nonempty_u16(r, "PskIdentity.identity")?.to_vec();
        let obfuscated_ticket_age = r.u32("PskIdentity.obfuscated_ticket_age")?;
        Ok(Self { identity, obfuscated_ticket_age })
    }
}

impl OfferedPsks {
    /// Appends `PskBinderEntry binders<33..2^16-1>`, the tail of the ClientHello.
    pub fn encode_binders(&self, out: &mut Vec<u8>) {
        put_len_prefixed(out, LenPrefix::U16, |o| {
            for b in &self.binders {
                debug_assert!((32..=255).contains(&b.len()), "PskBinderEntry<32..255>");
                put_vec_u8(o, b);
            }
        });
    }

    /// Length of the encoded binders list, its two-byte length included: what
    /// `Truncate(ClientHello)` removes from the end of the ClientHello (RFC 8446 §4.2.11.2).
    pub fn binders_encoded_len(&self) -> usize {
        2 + self.binders.iter().map(|b| 1 + b.len()).sum::<usize>()
    }
}

/// `OfferedPsks` (RFC 8446 §4.2.11): `{PskIdentity identities<7..2^16-1>; PskBinderEntry
/// binders<33..2^16-1>}` with `opaque PskBinderEntry<32..255>`. The RFC requires one binder
/// per identity; a count mismatch is refused with [`REASON_PSK_BINDER_COUNT`].
impl<'a> Codec<'a> for OfferedPsks {
    fn encode(&self, out: &mut Vec<u8>) {
        put_len_prefixed(out, LenPrefix::U16, |o| {
            for id in &self.identities {
                id.encode(o);
            }
        });
        self.encode_binders(out);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let ids = read_nonempty_u16(r, "OfferedPsks.identities")?;
        let mut ir = Reader::new(ids);
        let mut identities = Vec::new();
        while !ir.is_empty() {
            identities.push(PskIdentity::read(&mut ir)?);
        }
        let bs = read_nonempty_u16(r, "OfferedPsks.binders")?;
        let mut br = Reader::new(bs);
        let mut binders = Vec::new();
        while !br.is_empty() {
            let b = br.vec_u8("PskBinderEntry")?;
            if b.len() < 32 {
                return Err(InvalidMessage::IllegalValue("PskBinderEntry shorter than 32 bytes"));
            }
            binders.push(b.to_vec());
        }
        if binders.len() != identities.len() {
            return Err(InvalidMessage::IllegalValue(REASON_PSK_BINDER_COUNT));
        }
        Ok(Self { identities, binders })
    }
}

/// `RawExtension`: one extension, data kept verbatim.
impl<'a> Codec<'a> for RawExtension {
    fn encode(&self, out: &mut Vec<u8>) {
        self.typ.encode(out);
        put_vec_u16(out, &self.data);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let typ = ExtensionType::read(r)?;
        let data = r.vec_u16("extension_data")?.to_vec();
        Ok(Self { typ, data })
    }
}

// ---------------------------------------------------------------------------------------------
// ClientHello extensions

impl ClientExtension13 {
    /// The `ExtensionType` this extension is sent as.
    pub fn ext_type(&self) -> ExtensionType {
        match self {
            Self::ServerName(_) => ExtensionType::ServerName,
            Self::SupportedGroups(_) => ExtensionType::SupportedGroups,
            Self::SignatureAlgorithms(_) => ExtensionType::SignatureAlgorithms,
            Self::SignatureAlgorithmsCert(_) => ExtensionType::SignatureAlgorithmsCert,
            Self::SupportedVersions(_) => ExtensionType::SupportedVersions,
            Self::KeyShare(_) => ExtensionType::KeyShare,
            Self::PskKeyExchangeModes(_) => ExtensionType::PskKeyExchangeModes,
            Self::PreSharedKey(_) => ExtensionType::PreSharedKey,
            Self::EarlyData => ExtensionType::EarlyData,
            Self::Cookie(_) => ExtensionType::Cookie,
            Self::CertificateAuthorities(_) => ExtensionType::CertificateAuthorities,
            Self::ConnectionId(_) => ExtensionType::ConnectionId,
            Self::ClientCertificateType(_) => ExtensionType::ClientCertificateType,
            Self::ServerCertificateType(_) => ExtensionType::ServerCertificateType,
            Self::ExtendedMasterSecret => ExtensionType::ExtendedMasterSecret,
            Self::RenegotiationInfo(_) => ExtensionType::RenegotiationInfo,
            Self::Unknown(raw) => raw.typ,
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
            Self::SignatureAlgorithms(s) | Self::SignatureAlgorithmsCert(s) => put_list_u16(out, s),
            Self::SupportedVersions(v) => {
                debug_assert!(v.len() <= 127, "versions<2..254>");
                put_len_prefixed(out, LenPrefix::U8, |o| {
                    for ver in v {
                        ver.encode(o);
                    }
                });
            }
            Self::KeyShare(shares) => put_len_prefixed(out, LenPrefix::U16, |o| {
                for s in shares {
                    s.encode(o);
                }
            }),
            Self::PskKeyExchangeModes(m) => put_list_u8(out, m),
            Self::PreSharedKey(psks) => psks.encode(out),
            Self::EarlyData | Self::ExtendedMasterSecret => {}
            Self::Cookie(c) => put_vec_u16(out, c),
            Self::CertificateAuthorities(dns) => put_dn_list(out, dns),
            Self::ConnectionId(cid) | Self::RenegotiationInfo(cid) => put_vec_u8(out, cid),
            Self::ClientCertificateType(t) | Self::ServerCertificateType(t) => put_list_u8(out, t),
            Self::Unknown(raw) => put_raw_data(raw, out),
        }
    }

    /// Decodes the data of one ClientHello extension. Every recognised type is allowed in
    /// ClientHello (RFC 8446 §4.2 table).
    pub fn read_data(typ: ExtensionType, data: &[u8]) -> Result<Self, InvalidMessage> {
        Ok(match typ {
            // RFC 6066 §3: ServerNameList server_name_list<1..2^16-1>, one name per type.
            ExtensionType::ServerName => parse_ext_data(data, "server_name", |r| {
                let list = read_nonempty_u16(r, "ServerNameList")?;
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
            // RFC 8446 §4.2.7: NamedGroup named_group_list<2..2^16-1>.
            ExtensionType::SupportedGroups => parse_ext_data(data, "supported_groups", |r| {
                Ok(Self::SupportedGroups(read_list_u16(r, 1, "supported_groups")?))
            })?,
            // RFC 8446 §4.2.3: SignatureScheme supported_signature_algorithms<2..2^16-2>.
            ExtensionType::SignatureAlgorithms => parse_ext_data(data, "signature_algorithms", |r| {
                Ok(Self::SignatureAlgorithms(read_list_u16(r, 1, "signature_algorithms")?))
            })?,
            ExtensionType::SignatureAlgorithmsCert => parse_ext_data(data, "signature_algorithms_cert", |r| {
                Ok(Self::SignatureAlgorithmsCert(read_list_u16(r, 1, "signature_algorithms_cert")?))
            })?,
            // RFC 8446 §4.2.1: ProtocolVersion versions<2..254>, so 1 to 127 entries.
            ExtensionType::SupportedVersions => parse_ext_data(data, "supported_versions", |r| {
                let list = r.vec_u8("supported_versions")?;
                if list.is_empty() || list.len() % 2 != 0 {
                    return Err(InvalidMessage::IllegalValue("supported_versions"));
                }
                Ok(Self::SupportedVersions(
                    list.chunks_exact(2).map(|c| ProtocolVersion(u16::from_be_bytes([c[0], c[1]]))).collect(),
                ))
            })?,
            // RFC 8446 §4.2.8: KeyShareEntry client_shares<0..2^16-1>; "Clients MUST NOT offer
            // multiple KeyShareEntry values for the same group" and servers MAY abort with
            // illegal_parameter, which this does.
            ExtensionType::KeyShare => parse_ext_data(data, "key_share", |r| {
                let list = r.vec_u16("client_shares")?;
                let mut lr = Reader::new(list);
                let mut shares = Vec::new();
                while !lr.is_empty() {
                    shares.push(KeyShareEntry::read(&mut lr)?);
                }
                check_unique(shares.iter().map(|s| u16::from(s.group)).collect(), REASON_DUPLICATE_KEY_SHARE)?;
                Ok(Self::KeyShare(shares))
            })?,
            // RFC 8446 §4.2.9: PskKeyExchangeMode ke_modes<1..255>.
            ExtensionType::PskKeyExchangeModes => parse_ext_data(data, "psk_key_exchange_modes", |r| {
                Ok(Self::PskKeyExchangeModes(read_list_u8(r, 1, "ke_modes")?))
            })?,
            ExtensionType::PreSharedKey => {
                parse_ext_data(data, "pre_shared_key", |r| Ok(Self::PreSharedKey(OfferedPsks::read(r)?)))?
            }
            // RFC 8446 §4.2.10: EarlyDataIndication is Empty in ClientHello.
            ExtensionType::EarlyData => {
                expect_empty_data(data, "early_data in ClientHello")?;
                Self::EarlyData
            }
            // RFC 8446 §4.2.2: opaque cookie<1..2^16-1>.
            ExtensionType::Cookie => {
                parse_ext_data(data, "cookie", |r| Ok(Self::Cookie(read_nonempty_u16(r, "cookie")?.to_vec())))?
            }
            ExtensionType::CertificateAuthorities => {
                parse_ext_data(data, "certificate_authorities", |r| Ok(Self::CertificateAuthorities(read_dn_list(r)?)))?
            }
            // RFC 9146 §3: opaque cid<0..2^8-1>.
            ExtensionType::ConnectionId => {
                parse_ext_data(data, "connection_id", |r| Ok(Self::ConnectionId(r.vec_u8("cid")?.to_vec())))?
            }
            // RFC 7250 §3: CertificateType client/server_certificate_types<1..2^8-1>.
            ExtensionType::ClientCertificateType => parse_ext_data(data, "client_certificate_type", |r| {
                Ok(Self::ClientCertificateType(read_list_u8(r, 1, "client_certificate_types")?))
            })?,
            ExtensionType::ServerCertificateType => parse_ext_data(data, "server_certificate_type", |r| {
                Ok(Self::ServerCertificateType(read_list_u8(r, 1, "server_certificate_types")?))
            })?,
            // RFC 7627 §5.1: empty.
            ExtensionType::ExtendedMasterSecret => {
                expect_empty_data(data, "extended_master_secret data")?;
                Self::ExtendedMasterSecret
            }
            // RFC 5746 §3.2: opaque renegotiated_connection<0..255>.
            ExtensionType::RenegotiationInfo => parse_ext_data(data, "renegotiation_info", |r| {
                Ok(Self::RenegotiationInfo(r.vec_u8("renegotiated_connection")?.to_vec()))
            })?,
            typ => Self::Unknown(RawExtension { typ, data: data.to_vec() }),
        })
    }
}

/// One ClientHello `Extension` (RFC 8446 §4.2), with the data of known types parsed in full.
impl<'a> Codec<'a> for ClientExtension13 {
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

/// A ClientHello `extensions` block: no repeated type (RFC 8446 §4.2) and pre_shared_key, if
/// present, last (RFC 8446 §4.2.11: "Servers MUST check that it is the last extension and
/// otherwise fail the handshake with an illegal_parameter alert"; [`REASON_PSK_NOT_LAST`]).
impl<'a> Codec<'a> for Vec<ClientExtension13> {
    fn encode(&self, out: &mut Vec<u8>) {
        put_ext_block(out, self, ClientExtension13::ext_type, ClientExtension13::encode_data);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let exts = read_ext_block(r, "ClientHello.extensions", "duplicate extension", ClientExtension13::read_data)?;
        if let Some(i) = exts.iter().position(|e| matches!(e, ClientExtension13::PreSharedKey(_)))
            && i + 1 != exts.len()
        {
            return Err(InvalidMessage::IllegalValue(REASON_PSK_NOT_LAST));
        }
        Ok(exts)
    }
}

// ---------------------------------------------------------------------------------------------
// ServerHello / HelloRetryRequest extensions

/// Recognised extensions allowed in ServerHello (RFC 8446 §4.2 table, RFC 9146 §3).
impl ServerHelloExtension13 {
    /// The `ExtensionType` this extension is sent as.
    pub fn ext_type(&self) -> ExtensionType {
        match self {
            Self::SupportedVersions(_) => ExtensionType::SupportedVersions,
            Self::KeyShare(_) => ExtensionType::KeyShare,
            Self::PreSharedKey(_) => ExtensionType::PreSharedKey,
            Self::ConnectionId(_) => ExtensionType::ConnectionId,
            Self::Unknown(raw) => raw.typ,
        }
    }

    fn encode_data(&self, out: &mut Vec<u8>) {
        match self {
            Self::SupportedVersions(v) => v.encode(out),
            Self::KeyShare(k) => k.encode(out),
            Self::PreSharedKey(i) => put_u16(out, *i),
            Self::ConnectionId(cid) => put_vec_u8(out, cid),
            Self::Unknown(raw) => put_raw_data(raw, out),
        }
    }

    /// Decodes the data of one ServerHello extension; a recognised type the RFC 8446 §4.2
    /// table does not allow in ServerHello is refused.
    pub fn read_data(typ: ExtensionType, data: &[u8]) -> Result<Self, InvalidMessage> {
        Ok(match typ {
            ExtensionType::SupportedVersions => Self::SupportedVersions(read_selected_version(data)?),
            // RFC 8446 §4.2.8: KeyShareServerHello { KeyShareEntry server_share; }.
            ExtensionType::KeyShare => {
                parse_ext_data(data, "key_share", |r| Ok(Self::KeyShare(KeyShareEntry::read(r)?)))?
            }
            // RFC 8446 §4.2.11: uint16 selected_identity.
            ExtensionType::PreSharedKey => {
                parse_ext_data(data, "pre_shared_key", |r| Ok(Self::PreSharedKey(r.u16("selected_identity")?)))?
            }
            ExtensionType::ConnectionId => {
                parse_ext_data(data, "connection_id", |r| Ok(Self::ConnectionId(r.vec_u8("cid")?.to_vec())))?
            }
            typ => Self::Unknown(unparsed(typ, data, &[])?),
        })
    }
}

impl HelloRetryExtension13 {
    /// The `ExtensionType` this extension is sent as.
    pub fn ext_type(&self) -> ExtensionType {
        match self {
            Self::SupportedVersions(_) => ExtensionType::SupportedVersions,
            Self::KeyShare(_) => ExtensionType::KeyShare,
            Self::Cookie(_) => ExtensionType::Cookie,
            Self::Unknown(raw) => raw.typ,
        }
    }

    fn encode_data(&self, out: &mut Vec<u8>) {
        match self {
            Self::SupportedVersions(v) => v.encode(out),
            Self::KeyShare(g) => g.encode(out),
            Self::Cookie(c) => put_vec_u16(out, c),
            Self::Unknown(raw) => put_raw_data(raw, out),
        }
    }

    /// Decodes the data of one HelloRetryRequest extension (RFC 8446 §4.1.4 lists
    /// supported_versions, cookie and key_share); other recognised types are refused.
    pub fn read_data(typ: ExtensionType, data: &[u8]) -> Result<Self, InvalidMessage> {
        Ok(match typ {
            ExtensionType::SupportedVersions => Self::SupportedVersions(read_selected_version(data)?),
            // RFC 8446 §4.2.8: KeyShareHelloRetryRequest { NamedGroup selected_group; }.
            ExtensionType::KeyShare => parse_ext_data(data, "key_share", |r| Ok(Self::KeyShare(NamedGroup::read(r)?)))?,
            ExtensionType::Cookie => {
                parse_ext_data(data, "cookie", |r| Ok(Self::Cookie(read_nonempty_u16(r, "cookie")?.to_vec())))?
            }
            typ => Self::Unknown(unparsed(typ, data, &[])?),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Hellos

/// ClientHello (RFC 9147 §5.3): the DTLS 1.2 layout with legacy_cookie after the session id.
///
/// The extensions block is optional on the wire (RFC 8446 §4.1.2 detects it by remaining
/// bytes), so `read` expects the reader to end where the handshake body ends. It is always
/// written, since a DTLS 1.3 ClientHello carries at least supported_versions. `read` keeps
/// legacy_cookie and the compression methods as sent: see
/// [`ClientHello13::check_dtls13_legacy_fields`].
impl<'a> Codec<'a> for ClientHello13 {
    fn encode(&self, out: &mut Vec<u8>) {
        self.legacy_version.encode(out);
        self.random.encode(out);
        self.legacy_session_id.encode(out);
        put_vec_u8(out, &self.legacy_cookie);
        put_list_u16(out, &self.cipher_suites);
        put_list_u8(out, &self.legacy_compression_methods);
        self.extensions.encode(out);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let legacy_version = ProtocolVersion::read(r)?;
        let random = Random::read(r)?;
        let legacy_session_id = SessionId::read(r)?;
        let legacy_cookie = r.vec_u8("ClientHello.legacy_cookie")?.to_vec();
        // CipherSuite cipher_suites<2..2^16-2>.
        let cipher_suites = read_list_u16(r, 1, "ClientHello.cipher_suites")?;
        // opaque legacy_compression_methods<1..2^8-1>.
        let legacy_compression_methods = read_list_u8(r, 1, "ClientHello.legacy_compression_methods")?;
        let extensions = read_optional_block(r, Vec::<ClientExtension13>::read)?;
        Ok(Self {
            legacy_version,
            random,
            legacy_session_id,
            legacy_cookie,
            cipher_suites,
            legacy_compression_methods,
            extensions,
        })
    }
}

impl ClientHello13 {
    /// Decodes a complete ClientHello body and, if it offers pre_shared_key, returns the
    /// offset in `body` where the binders list (its two-byte length included) starts:
    /// `body[..offset]` is what RFC 8446 §4.2.11.2's `Truncate(ClientHello)` keeps. See
    /// [`truncated_client_hello_transcript`](super::truncated_client_hello_transcript).
    pub fn read_with_binders_offset(body: &[u8]) -> Result<(Self, Option<usize>), InvalidMessage> {
        let ch = Self::read_exact(body)?;
        // pre_shared_key is the last extension, the binders its last field and the extensions
        // block the last field of the body, all decoded without trailing bytes: the binders
        // list is the tail of `body`.
        let offset = ch.pre_shared_key().map(|p| body.len() - p.binders_encoded_len());
        Ok((ch, offset))
    }

    /// Appends the encoding and returns the offset, relative to where this body starts in
    /// `out`, of the binders list if pre_shared_key is offered. A client encodes once with
    /// placeholder binders of the right lengths, computes the binders over the truncated
    /// transcript, then writes them with [`write_binders`](super::write_binders).
    pub fn encode_with_binders_offset(&self, out: &mut Vec<u8>) -> Option<usize> {
        let start = out.len();
        self.encode(out);
        let end = out.len() - start;
        self.pre_shared_key().map(|p| end - p.binders_encoded_len())
    }
}

/// ServerHello (RFC 8446 §4.1.3, RFC 9147 §5.4). A body whose random is the HelloRetryRequest
/// value is refused: decode `server_hello` bodies with [`ServerHelloMessage13`].
impl<'a> Codec<'a> for ServerHello13 {
    fn encode(&self, out: &mut Vec<u8>) {
        self.legacy_version.encode(out);
        self.random.encode(out);
        self.legacy_session_id_echo.encode(out);
        self.cipher_suite.encode(out);
        self.legacy_compression_method.encode(out);
        put_ext_block(out, &self.extensions, ServerHelloExtension13::ext_type, ServerHelloExtension13::encode_data);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let legacy_version = ProtocolVersion::read(r)?;
        let random = Random::read(r)?;
        if random.0 == HELLO_RETRY_REQUEST_RANDOM {
            return Err(InvalidMessage::IllegalValue("ServerHello with the HelloRetryRequest random"));
        }
        let legacy_session_id_echo = SessionId::read(r)?;
        let cipher_suite = CipherSuite::read(r)?;
        let legacy_compression_method = Compression::read(r)?;
        let extensions = read_optional_block(r, |r| {
            read_ext_block(r, "ServerHello.extensions", "duplicate extension", ServerHelloExtension13::read_data)
        })?;
        Ok(Self { legacy_version, random, legacy_session_id_echo, cipher_suite, legacy_compression_method, extensions })
    }
}

/// HelloRetryRequest (RFC 8446 §4.1.4): the ServerHello layout with the special random,
/// which `read` requires and `encode` writes.
impl<'a> Codec<'a> for HelloRetryRequest13 {
    fn encode(&self, out: &mut Vec<u8>) {
        self.legacy_version.encode(out);
        out.extend_from_slice(&HELLO_RETRY_REQUEST_RANDOM);
        self.legacy_session_id_echo.encode(out);
        self.cipher_suite.encode(out);
        self.legacy_compression_method.encode(out);
        put_ext_block(out, &self.extensions, HelloRetryExtension13::ext_type, HelloRetryExtension13::encode_data);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let legacy_version = ProtocolVersion::read(r)?;
        let random = Random::read(r)?;
        if random.0 != HELLO_RETRY_REQUEST_RANDOM {
            return Err(InvalidMessage::IllegalValue("HelloRetryRequest without its random"));
        }
        let legacy_session_id_echo = SessionId::read(r)?;
        let cipher_suite = CipherSuite::read(r)?;
        let legacy_compression_method = Compression::read(r)?;
        let extensions = read_optional_block(r, |r| {
            read_ext_block(r, "HelloRetryRequest.extensions", "duplicate extension", HelloRetryExtension13::read_data)
        })?;
        Ok(Self { legacy_version, legacy_session_id_echo, cipher_suite, legacy_compression_method, extensions })
    }
}

/// A `server_hello` body, told apart by its random (RFC 8446 §4.1.3: "implementations MUST
/// first examine the Random value").
///
/// A DTLS 1.2 ServerHello may carry extensions (server_name, certificate types) that are not
/// allowed in a DTLS 1.3 one and so fail here: a dual-version client should look at
/// [`ServerHelloMessage13::peek_selected_version`] first and decode with
/// [`crate::msgs::ServerHello`] when it is `None`.
impl<'a> Codec<'a> for ServerHelloMessage13 {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::ServerHello(sh) => sh.encode(out),
            Self::HelloRetryRequest(hrr) => hrr.encode(out),
        }
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let mut peek = r.clone();
        peek.take(2, "ServerHello.legacy_version")?;
        let random: [u8; 32] = peek.array("ServerHello.random")?;
        Ok(if random == HELLO_RETRY_REQUEST_RANDOM {
            Self::HelloRetryRequest(HelloRetryRequest13::read(r)?)
        } else {
            Self::ServerHello(ServerHello13::read(r)?)
        })
    }
}

impl ServerHelloMessage13 {
    /// The `selected_version` of a `server_hello` body's supported_versions extension, or
    /// `None` if there is none (a DTLS 1.2 ServerHello, RFC 8446 §4.2.1), looking at nothing
    /// else: the extensions are scanned as opaque entries.
    pub fn peek_selected_version(body: &[u8]) -> Result<Option<ProtocolVersion>, InvalidMessage> {
        let mut r = Reader::new(body);
        r.take(2 + 32, "ServerHello")?;
        SessionId::read(&mut r)?;
        r.take(2 + 1, "ServerHello")?;
        if r.is_empty() {
            return Ok(None);
        }
        let exts =
            read_ext_block(&mut r, "ServerHello.extensions", "duplicate extension", |typ, data| Ok((typ, data)))?;
        r.expect_empty("ServerHello")?;
        exts.into_iter()
            .find(|(t, _)| *t == ExtensionType::SupportedVersions)
            .map(|(_, data)| read_selected_version(data))
            .transpose()
    }
}

// ---------------------------------------------------------------------------------------------
// Server parameters

impl EncryptedExtension13 {
    /// The `ExtensionType` this extension is sent as.
    pub fn ext_type(&self) -> ExtensionType {
        match self {
            Self::ServerName => ExtensionType::ServerName,
            Self::SupportedGroups(_) => ExtensionType::SupportedGroups,
            Self::EarlyData => ExtensionType::EarlyData,
            Self::ClientCertificateType(_) => ExtensionType::ClientCertificateType,
            Self::ServerCertificateType(_) => ExtensionType::ServerCertificateType,
            Self::Unknown(raw) => raw.typ,
        }
    }

    fn encode_data(&self, out: &mut Vec<u8>) {
        match self {
            Self::ServerName | Self::EarlyData => {}
            Self::SupportedGroups(g) => put_list_u16(out, g),
            Self::ClientCertificateType(t) | Self::ServerCertificateType(t) => t.encode(out),
            Self::Unknown(raw) => put_raw_data(raw, out),
        }
    }

    /// Decodes the data of one EncryptedExtensions extension; a recognised type the RFC 8446
    /// §4.2 table does not allow in EncryptedExtensions is refused.
    pub fn read_data(typ: ExtensionType, data: &[u8]) -> Result<Self, InvalidMessage> {
        Ok(match typ {
            // RFC 6066 §3: the acknowledgement has empty extension_data.
            ExtensionType::ServerName => {
                expect_empty_data(data, "server_name acknowledgement")?;
                Self::ServerName
            }
            ExtensionType::SupportedGroups => parse_ext_data(data, "supported_groups", |r| {
                Ok(Self::SupportedGroups(read_list_u16(r, 1, "supported_groups")?))
            })?,
            // RFC 8446 §4.2.10: Empty in EncryptedExtensions.
            ExtensionType::EarlyData => {
                expect_empty_data(data, "early_data in EncryptedExtensions")?;
                Self::EarlyData
            }
            // RFC 7250 §3: the server's answer is a single CertificateType.
            ExtensionType::ClientCertificateType => parse_ext_data(data, "client_certificate_type", |r| {
                Ok(Self::ClientCertificateType(CertificateType::read(r)?))
            })?,
            ExtensionType::ServerCertificateType => parse_ext_data(data, "server_certificate_type", |r| {
                Ok(Self::ServerCertificateType(CertificateType::read(r)?))
            })?,
            typ => Self::Unknown(unparsed(typ, data, &[])?),
        })
    }
}

/// EncryptedExtensions (RFC 8446 §4.3.1): `Extension extensions<0..2^16-1>`.
impl<'a> Codec<'a> for EncryptedExtensions13 {
    fn encode(&self, out: &mut Vec<u8>) {
        put_ext_block(out, &self.extensions, EncryptedExtension13::ext_type, EncryptedExtension13::encode_data);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        Ok(Self {
            extensions: read_ext_block(
                r,
                "EncryptedExtensions.extensions",
                "duplicate extension",
                EncryptedExtension13::read_data,
            )?,
        })
    }
}

impl CertificateRequestExtension13 {
    /// The `ExtensionType` this extension is sent as.
    pub fn ext_type(&self) -> ExtensionType {
        match self {
            Self::SignatureAlgorithms(_) => ExtensionType::SignatureAlgorithms,
            Self::SignatureAlgorithmsCert(_) => ExtensionType::SignatureAlgorithmsCert,
            Self::CertificateAuthorities(_) => ExtensionType::CertificateAuthorities,
            Self::Unknown(raw) => raw.typ,
        }
    }

    fn encode_data(&self, out: &mut Vec<u8>) {
        match self {
            Self::SignatureAlgorithms(s) | Self::SignatureAlgorithmsCert(s) => put_list_u16(out, s),
            Self::CertificateAuthorities(dns) => put_dn_list(out, dns),
            Self::Unknown(raw) => put_raw_data(raw, out),
        }
    }

    /// Decodes the data of one CertificateRequest extension; a recognised type the RFC 8446
    /// §4.2 table does not allow in CertificateRequest is refused (server_name, which RFC 9261
    /// allows there, is kept verbatim).
    pub fn read_data(typ: ExtensionType, data: &[u8]) -> Result<Self, InvalidMessage> {
        Ok(match typ {
            ExtensionType::SignatureAlgorithms => parse_ext_data(data, "signature_algorithms", |r| {
                Ok(Self::SignatureAlgorithms(read_list_u16(r, 1, "signature_algorithms")?))
            })?,
            ExtensionType::SignatureAlgorithmsCert => parse_ext_data(data, "signature_algorithms_cert", |r| {
                Ok(Self::SignatureAlgorithmsCert(read_list_u16(r, 1, "signature_algorithms_cert")?))
            })?,
            ExtensionType::CertificateAuthorities => {
                parse_ext_data(data, "certificate_authorities", |r| Ok(Self::CertificateAuthorities(read_dn_list(r)?)))?
            }
            typ => Self::Unknown(unparsed(typ, data, &[ExtensionType::ServerName])?),
        })
    }
}

/// CertificateRequest (RFC 8446 §4.3.2): `{opaque certificate_request_context<0..2^8-1>;
/// Extension extensions<0..2^16-1>}`.
impl<'a> Codec<'a> for CertificateRequest13 {
    fn encode(&self, out: &mut Vec<u8>) {
        put_vec_u8(out, &self.certificate_request_context);
        put_ext_block(
            out,
            &self.extensions,
            CertificateRequestExtension13::ext_type,
            CertificateRequestExtension13::encode_data,
        );
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let certificate_request_context = r.vec_u8("certificate_request_context")?.to_vec();
        let extensions = read_ext_block(
            r,
            "CertificateRequest.extensions",
            "duplicate extension",
            CertificateRequestExtension13::read_data,
        )?;
        Ok(Self { certificate_request_context, extensions })
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication

/// `CertificateEntry` (RFC 8446 §4.4.2): the certificate (or SPKI) then
/// `Extension extensions<0..2^16-1>`. None of the extensions this module recognises is
/// allowed here ("CT" in the RFC 8446 §4.2 table), so they are refused; others are kept.
impl<'a> Codec<'a> for CertificateEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        put_vec_u24(out, &self.data);
        put_ext_block(out, &self.extensions, |e| e.typ, put_raw_data);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let data = read_nonempty_u24(r, "CertificateEntry.cert_data")?.to_vec();
        let extensions = read_ext_block(r, "CertificateEntry.extensions", "duplicate extension", |typ, data| {
            unparsed(typ, data, &[])
        })?;
        Ok(Self { data, extensions })
    }
}

impl Certificate13 {
    /// Decodes a Certificate body (RFC 8446 §4.4.2) of the negotiated certificate type:
    /// `certificate_request_context<0..2^8-1>` then `CertificateEntry
    /// certificate_list<0..2^24-1>`. X.509 entries hold `cert_data<1..2^24-1>`; RawPublicKey
    /// entries hold `ASN1_subjectPublicKeyInfo<1..2^24-1>` (RFC 7250 §3) and there is at most
    /// one ("the certificate_list MUST contain no more than one CertificateEntry"). Any other
    /// type has no TLS 1.3 layout and is `IllegalValue`. An empty list is decoded: it is legal
    /// from a client, and the server-side check (non-empty) is the caller's.
    pub fn read_with(r: &mut Reader<'_>, typ: CertificateType) -> Result<Self, InvalidMessage> {
        if matches!(typ, CertificateType::Unknown(_)) {
            return Err(InvalidMessage::IllegalValue("certificate type"));
        }
        let certificate_request_context = r.vec_u8("certificate_request_context")?.to_vec();
        let list = r.vec_u24("certificate_list")?;
        let mut lr = Reader::new(list);
        let mut certificate_list = Vec::new();
        while !lr.is_empty() {
            if typ == CertificateType::RawPublicKey && !certificate_list.is_empty() {
                return Err(InvalidMessage::IllegalValue("more than one RawPublicKey entry"));
            }
            certificate_list.push(CertificateEntry::read(&mut lr)?);
        }
        Ok(Self { certificate_request_context, certificate_list })
    }

    /// Decodes a complete Certificate body, refusing trailing bytes.
    pub fn read_exact_with(bytes: &[u8], typ: CertificateType) -> Result<Self, InvalidMessage> {
        let mut r = Reader::new(bytes);
        let v = Self::read_with(&mut r, typ)?;
        r.expect_empty("Certificate")?;
        Ok(v)
    }

    /// Appends the encoding (the same for both certificate types).
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_vec_u8(out, &self.certificate_request_context);
        put_len_prefixed(out, LenPrefix::U24, |o| {
            for e in &self.certificate_list {
                e.encode(o);
            }
        });
    }

    /// The encoding in a fresh vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }
}

/// CertificateVerify (RFC 8446 §4.4.3): `{SignatureScheme algorithm; opaque
/// signature<0..2^16-1>}`.
impl<'a> Codec<'a> for CertificateVerify13 {
    fn encode(&self, out: &mut Vec<u8>) {
        self.algorithm.encode(out);
        put_vec_u16(out, &self.signature);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let algorithm = SignatureScheme::read(r)?;
        let signature = r.vec_u16("CertificateVerify.signature")?.to_vec();
        Ok(Self { algorithm, signature })
    }
}

impl Finished13 {
    /// Decodes `opaque verify_data[Hash.length]` (RFC 8446 §4.4.4) for a hash of `hash_len`
    /// bytes.
    pub fn read_with(r: &mut Reader<'_>, hash_len: usize) -> Result<Self, InvalidMessage> {
        Ok(Self { verify_data: r.take(hash_len, "Finished.verify_data")?.to_vec() })
    }

    /// Decodes a complete Finished body: exactly `hash_len` bytes.
    pub fn read_exact_with(bytes: &[u8], hash_len: usize) -> Result<Self, InvalidMessage> {
        let mut r = Reader::new(bytes);
        let v = Self::read_with(&mut r, hash_len)?;
        r.expect_empty("Finished")?;
        Ok(v)
    }

    /// Appends verify_data (there is no length prefix).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.verify_data);
    }

    /// The encoding in a fresh vector.
    pub fn to_vec(&self) -> Vec<u8> {
        self.verify_data.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Post-handshake

impl NewSessionTicketExtension13 {
    /// The `ExtensionType` this extension is sent as.
    pub fn ext_type(&self) -> ExtensionType {
        match self {
            Self::EarlyData(_) => ExtensionType::EarlyData,
            Self::Unknown(raw) => raw.typ,
        }
    }

    fn encode_data(&self, out: &mut Vec<u8>) {
        match self {
            Self::EarlyData(max) => put_u32(out, *max),
            Self::Unknown(raw) => put_raw_data(raw, out),
        }
    }

    /// Decodes the data of one NewSessionTicket extension; early_data is the only recognised
    /// type allowed there (RFC 8446 §4.2 table).
    pub fn read_data(typ: ExtensionType, data: &[u8]) -> Result<Self, InvalidMessage> {
        Ok(match typ {
            // RFC 8446 §4.2.10: uint32 max_early_data_size.
            ExtensionType::EarlyData => {
                parse_ext_data(data, "early_data", |r| Ok(Self::EarlyData(r.u32("max_early_data_size")?)))?
            }
            typ => Self::Unknown(unparsed(typ, data, &[])?),
        })
    }
}

/// NewSessionTicket (RFC 8446 §4.6.1): `{uint32 ticket_lifetime; uint32 ticket_age_add;
/// opaque ticket_nonce<0..255>; opaque ticket<1..2^16-1>; Extension extensions<..>}`; RFC 8446
/// bounds the extensions by 2^16-2, RFC 9846 by 2^16-1, and the decoder accepts both.
impl<'a> Codec<'a> for NewSessionTicket13 {
    fn encode(&self, out: &mut Vec<u8>) {
        put_u32(out, self.ticket_lifetime);
        put_u32(out, self.ticket_age_add);
        put_vec_u8(out, &self.ticket_nonce);
        put_vec_u16(out, &self.ticket);
        put_ext_block(
            out,
            &self.extensions,
            NewSessionTicketExtension13::ext_type,
            NewSessionTicketExtension13::encode_data,
        );
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let ticket_lifetime = r.u32("ticket_lifetime")?;
        let ticket_age_add = r.u32("ticket_age_add")?;
        let ticket_nonce = r.vec_u8("ticket_nonce")?.to_vec();
        let ticket = read_nonempty_u16(r, "ticket")?.to_vec();
        let extensions = read_ext_block(
            r,
            "NewSessionTicket.extensions",
            "duplicate extension",
            NewSessionTicketExtension13::read_data,
        )?;
        Ok(Self { ticket_lifetime, ticket_age_add, ticket_nonce, ticket, extensions })
    }
}

/// KeyUpdate (RFC 8446 §4.6.3): one `KeyUpdateRequest` byte.
impl<'a> Codec<'a> for KeyUpdate {
    fn encode(&self, out: &mut Vec<u8>) {
        self.request_update.encode(out);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        Ok(Self { request_update: KeyUpdateRequest::read(r)? })
    }
}

/// NewConnectionId (RFC 9147 §9): `{ConnectionId cids<0..2^16-1>; ConnectionIdUsage usage}`
/// with `opaque ConnectionId<0..2^8-1>`.
impl<'a> Codec<'a> for NewConnectionId {
    fn encode(&self, out: &mut Vec<u8>) {
        put_len_prefixed(out, LenPrefix::U16, |o| {
            for c in &self.cids {
                put_vec_u8(o, c);
            }
        });
        self.usage.encode(out);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let list = r.vec_u16("NewConnectionId.cids")?;
        let mut lr = Reader::new(list);
        let mut cids = Vec::new();
        while !lr.is_empty() {
            cids.push(lr.vec_u8("ConnectionId")?.to_vec());
        }
        let usage = ConnectionIdUsage::read(r)?;
        Ok(Self { cids, usage })
    }
}

/// RequestConnectionId (RFC 9147 §9): `{uint8 num_cids}`.
impl<'a> Codec<'a> for RequestConnectionId {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.num_cids);
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        Ok(Self { num_cids: r.u8("RequestConnectionId.num_cids")? })
    }
}

/// `RecordNumber` (RFC 9147 §7): `{uint64 epoch; uint64 sequence_number}`.
impl<'a> Codec<'a> for RecordNumber {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.sequence_number.to_be_bytes());
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let epoch = u64::from_be_bytes(r.array("RecordNumber.epoch")?);
        let sequence_number = u64::from_be_bytes(r.array("RecordNumber.sequence_number")?);
        Ok(Self { epoch, sequence_number })
    }
}

/// ACK (RFC 9147 §7): `RecordNumber record_numbers<0..2^16-1>`, so the byte length is a
/// multiple of 16 (at most 4095 records).
impl<'a> Codec<'a> for Ack {
    fn encode(&self, out: &mut Vec<u8>) {
        debug_assert!(self.record_numbers.len() * 16 <= 0xffff, "record_numbers<0..2^16-1> too long");
        put_len_prefixed(out, LenPrefix::U16, |o| {
            for n in &self.record_numbers {
                n.encode(o);
            }
        });
    }
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage> {
        let list = r.vec_u16("ACK.record_numbers")?;
        if list.len() % 16 != 0 {
            return Err(InvalidMessage::IllegalValue("ACK.record_numbers"));
        }
        let mut lr = Reader::new(list);
        let mut record_numbers = Vec::with_capacity(list.len() / 16);
        while !lr.is_empty() {
            record_numbers.push(RecordNumber::read(&mut lr)?);
        }
        Ok(Self { record_numbers })
    }
}
