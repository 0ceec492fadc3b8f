//! The DTLS 1.3 message and extension types. Encoders and decoders are in `codec_impls.rs`.
use crate::codec::*;
pub use crate::msgs::{Random, ServerName, SessionId};

/// `KeyShareEntry` (RFC 8446 §4.2.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyShareEntry {
    /// group
    pub group: NamedGroup,
    /// key_exchange<1..2^16-1>: for secp256r1 the uncompressed point (RFC 8446 §4.2.8.2), for
    /// x25519 the 32-byte u-coordinate
    pub key_exchange: Vec<u8>,
}

/// `PskIdentity` (RFC 8446 §4.2.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PskIdentity {
    /// identity<1..2^16-1>: a ticket or the label of an external PSK
    pub identity: Vec<u8>,
    /// obfuscated_ticket_age: (age in ms + ticket_age_add) mod 2^32 for tickets, 0 for
    /// external PSKs (RFC 8446 §4.2.11.1)
    pub obfuscated_ticket_age: u32,
}

/// `OfferedPsks` (RFC 8446 §4.2.11), the ClientHello form of pre_shared_key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedPsks {
    /// identities<7..2^16-1>, at least one
    pub identities: Vec<PskIdentity>,
    /// binders<33..2^16-1>, each `PskBinderEntry<32..255>`, one per identity in the same order
    pub binders: Vec<Vec<u8>>,
}

/// An extension kept verbatim: `{ExtensionType extension_type; opaque
/// extension_data<0..2^16-1>}` (RFC 8446 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawExtension {
    /// extension_type
    pub typ: ExtensionType,
    /// extension_data
    pub data: Vec<u8>,
}

/// Extensions a DTLS 1.3 client may send in ClientHello (RFC 8446 §4.2 table, "CH"), plus the
/// TLS 1.2 ones a dual-version client sends next to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientExtension13 {
    /// server_name (RFC 6066 §3)
    ServerName(Vec<ServerName>),
    /// supported_groups, `named_group_list<2..2^16-1>` (RFC 8446 §4.2.7)
    SupportedGroups(Vec<NamedGroup>),
    /// signature_algorithms, `supported_signature_algorithms<2..2^16-2>` (RFC 8446 §4.2.3)
    SignatureAlgorithms(Vec<SignatureScheme>),
    /// signature_algorithms_cert (RFC 8446 §4.2.3)
    SignatureAlgorithmsCert(Vec<SignatureScheme>),
    /// supported_versions, `versions<2..254>` in preference order (RFC 8446 §4.2.1; DTLS
    /// values per RFC 9147 §5.3)
    SupportedVersions(Vec<ProtocolVersion>),
    /// key_share, `client_shares<0..2^16-1>` (RFC 8446 §4.2.8); empty asks for an HRR
    KeyShare(Vec<KeyShareEntry>),
    /// psk_key_exchange_modes, `ke_modes<1..255>` (RFC 8446 §4.2.9)
    PskKeyExchangeModes(Vec<PskKeyExchangeMode>),
    /// pre_shared_key (RFC 8446 §4.2.11); always the last extension
    PreSharedKey(OfferedPsks),
    /// early_data, empty in ClientHello (RFC 8446 §4.2.10)
    EarlyData,
    /// cookie, `opaque cookie<1..2^16-1>` copied from the HelloRetryRequest (RFC 8446 §4.2.2)
    Cookie(Vec<u8>),
    /// certificate_authorities, DER DistinguishedNames (RFC 8446 §4.2.4)
    CertificateAuthorities(Vec<Vec<u8>>),
    /// connection_id, `opaque cid<0..2^8-1>` (RFC 9146 §3, RFC 9147 §9)
    ConnectionId(Vec<u8>),
    /// client_certificate_type, the types the client can send (RFC 7250 §3)
    ClientCertificateType(Vec<CertificateType>),
    /// server_certificate_type, the types the client accepts (RFC 7250 §3)
    ServerCertificateType(Vec<CertificateType>),
    /// extended_master_secret, empty; only meaningful if DTLS 1.2 is negotiated (RFC 7627)
    ExtendedMasterSecret,
    /// renegotiation_info; only meaningful if DTLS 1.2 is negotiated (RFC 5746)
    RenegotiationInfo(Vec<u8>),
    /// Anything else, kept verbatim.
    Unknown(RawExtension),
}

/// Extensions of a DTLS 1.3 ServerHello (RFC 8446 §4.2 table, "SH"; RFC 9146 adds
/// connection_id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerHelloExtension13 {
    /// supported_versions, `selected_version` (RFC 8446 §4.2.1)
    SupportedVersions(ProtocolVersion),
    /// key_share, `server_share` (RFC 8446 §4.2.8)
    KeyShare(KeyShareEntry),
    /// pre_shared_key, `selected_identity` (RFC 8446 §4.2.11)
    PreSharedKey(u16),
    /// connection_id, the CID the server wants to receive (RFC 9146 §3)
    ConnectionId(Vec<u8>),
    /// Anything else, kept verbatim (a DTLS 1.2 server's extensions land here).
    Unknown(RawExtension),
}

/// Extensions of a HelloRetryRequest (RFC 8446 §4.1.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloRetryExtension13 {
    /// supported_versions, `selected_version` (RFC 8446 §4.2.1)
    SupportedVersions(ProtocolVersion),
    /// key_share, `selected_group` only (RFC 8446 §4.2.8)
    KeyShare(NamedGroup),
    /// cookie, `opaque cookie<1..2^16-1>` (RFC 8446 §4.2.2)
    Cookie(Vec<u8>),
    /// Anything else, kept verbatim.
    Unknown(RawExtension),
}

/// Extensions of EncryptedExtensions (RFC 8446 §4.2 table, "EE").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncryptedExtension13 {
    /// server_name, empty acknowledgement (RFC 6066 §3)
    ServerName,
    /// supported_groups, the server's preference, informational (RFC 8446 §4.2.7)
    SupportedGroups(Vec<NamedGroup>),
    /// early_data, empty: the server accepts the 0-RTT data (RFC 8446 §4.2.10)
    EarlyData,
    /// client_certificate_type, the selected type (RFC 7250 §3)
    ClientCertificateType(CertificateType),
    /// server_certificate_type, the selected type (RFC 7250 §3)
    ServerCertificateType(CertificateType),
    /// Anything else, kept verbatim.
    Unknown(RawExtension),
}

/// Extensions of a DTLS 1.3 CertificateRequest (RFC 8446 §4.2 table, "CR").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateRequestExtension13 {
    /// signature_algorithms, which MUST be present (RFC 8446 §4.3.2)
    SignatureAlgorithms(Vec<SignatureScheme>),
    /// signature_algorithms_cert (RFC 8446 §4.2.3)
    SignatureAlgorithmsCert(Vec<SignatureScheme>),
    /// certificate_authorities, DER DistinguishedNames (RFC 8446 §4.2.4)
    CertificateAuthorities(Vec<Vec<u8>>),
    /// Anything else (oid_filters, server_name per RFC 9261, ...), kept verbatim.
    Unknown(RawExtension),
}

/// Extensions of a DTLS 1.3 NewSessionTicket (RFC 8446 §4.6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewSessionTicketExtension13 {
    /// early_data with `max_early_data_size` (RFC 8446 §4.2.10)
    EarlyData(u32),
    /// Anything else, kept verbatim (clients MUST ignore them, RFC 8446 §4.6.1).
    Unknown(RawExtension),
}

/// ClientHello as sent by a DTLS 1.3 client (RFC 9147 §5.3): the DTLS 1.2 layout, with the
/// version negotiated in supported_versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello13 {
    /// legacy_version, {254,253} (RFC 9147 §5.3)
    pub legacy_version: ProtocolVersion,
    /// random
    pub random: Random,
    /// legacy_session_id<0..32>
    pub legacy_session_id: SessionId,
    /// legacy_cookie<0..2^8-1>: MUST be empty in DTLS 1.3 (RFC 9147 §5.3); kept so that a
    /// dual-version server can decode a DTLS 1.2 ClientHello with this type
    pub legacy_cookie: Vec<u8>,
    /// cipher_suites<2..2^16-2>
    pub cipher_suites: Vec<CipherSuite>,
    /// legacy_compression_methods<1..2^8-1>: exactly `[null]` in DTLS 1.3
    pub legacy_compression_methods: Vec<Compression>,
    /// extensions, pre_shared_key last (absent and empty are both decoded as empty)
    pub extensions: Vec<ClientExtension13>,
}

/// ServerHello of a DTLS 1.3 server (RFC 8446 §4.1.3, RFC 9147 §5.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello13 {
    /// legacy_version, {254,253} (RFC 9147 §5.4)
    pub legacy_version: ProtocolVersion,
    /// random; never [`HELLO_RETRY_REQUEST_RANDOM`](super::HELLO_RETRY_REQUEST_RANDOM)
    pub random: Random,
    /// legacy_session_id_echo<0..32>: empty in DTLS 1.3, which never echoes (RFC 9147 §5)
    pub legacy_session_id_echo: SessionId,
    /// cipher_suite
    pub cipher_suite: CipherSuite,
    /// legacy_compression_method, null
    pub legacy_compression_method: Compression,
    /// extensions
    pub extensions: Vec<ServerHelloExtension13>,
}

/// HelloRetryRequest (RFC 8446 §4.1.4): a ServerHello whose random is
/// [`HELLO_RETRY_REQUEST_RANDOM`](super::HELLO_RETRY_REQUEST_RANDOM), which is implied and
/// not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloRetryRequest13 {
    /// legacy_version, {254,253}
    pub legacy_version: ProtocolVersion,
    /// legacy_session_id_echo<0..32>
    pub legacy_session_id_echo: SessionId,
    /// cipher_suite
    pub cipher_suite: CipherSuite,
    /// legacy_compression_method, null
    pub legacy_compression_method: Compression,
    /// extensions
    pub extensions: Vec<HelloRetryExtension13>,
}

/// A `server_hello` handshake body: RFC 8446 §4.1.3 says to look at the random first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerHelloMessage13 {
    /// A ServerHello.
    ServerHello(ServerHello13),
    /// A HelloRetryRequest.
    HelloRetryRequest(HelloRetryRequest13),
}

/// EncryptedExtensions (RFC 8446 §4.3.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EncryptedExtensions13 {
    /// extensions<0..2^16-1>
    pub extensions: Vec<EncryptedExtension13>,
}

/// CertificateRequest (RFC 8446 §4.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRequest13 {
    /// certificate_request_context<0..2^8-1>, empty in the main handshake
    pub certificate_request_context: Vec<u8>,
    /// extensions<0..2^16-1>; signature_algorithms MUST be among them
    pub extensions: Vec<CertificateRequestExtension13>,
}

/// `CertificateEntry` (RFC 8446 §4.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateEntry {
    /// `cert_data<1..2^24-1>` (a DER X.509 certificate) or
    /// `ASN1_subjectPublicKeyInfo<1..2^24-1>` (RawPublicKey, RFC 7250 §3): the same wire form
    pub data: Vec<u8>,
    /// extensions<0..2^16-1> (status_request, signed_certificate_timestamp, ...)
    pub extensions: Vec<RawExtension>,
}

/// Certificate (RFC 8446 §4.4.2). Decode with [`Certificate13::read_with`], which takes the
/// negotiated certificate type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate13 {
    /// certificate_request_context<0..2^8-1>: empty for the server, the CertificateRequest's
    /// for the client
    pub certificate_request_context: Vec<u8>,
    /// certificate_list<0..2^24-1>, end-entity first; at most one entry for RawPublicKey
    pub certificate_list: Vec<CertificateEntry>,
}

/// CertificateVerify (RFC 8446 §4.4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateVerify13 {
    /// algorithm
    pub algorithm: SignatureScheme,
    /// signature<0..2^16-1>, DER ECDSA-Sig-Value for ECDSA
    pub signature: Vec<u8>,
}

/// Finished (RFC 8446 §4.4.4): `opaque verify_data[Hash.length]`, so decoding needs the hash
/// length ([`Finished13::read_exact_with`]); 32 for every SHA-256 suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished13 {
    /// verify_data
    pub verify_data: Vec<u8>,
}

/// NewSessionTicket (RFC 8446 §4.6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSessionTicket13 {
    /// ticket_lifetime in seconds; servers MUST NOT send more than 604800 and clients MUST NOT
    /// use a ticket longer than that, whatever this says
    pub ticket_lifetime: u32,
    /// ticket_age_add
    pub ticket_age_add: u32,
    /// ticket_nonce<0..255>
    pub ticket_nonce: Vec<u8>,
    /// ticket<1..2^16-1>
    pub ticket: Vec<u8>,
    /// extensions<0..2^16-1>
    pub extensions: Vec<NewSessionTicketExtension13>,
}

/// KeyUpdate (RFC 8446 §4.6.3). A value other than the two defined decodes as
/// `KeyUpdateRequest::Unknown`, which the receiver MUST answer with `illegal_parameter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUpdate {
    /// request_update
    pub request_update: KeyUpdateRequest,
}

/// NewConnectionId (RFC 9147 §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConnectionId {
    /// cids<0..2^16-1>, each `ConnectionId<0..2^8-1>`
    pub cids: Vec<Vec<u8>>,
    /// usage
    pub usage: ConnectionIdUsage,
}

/// RequestConnectionId (RFC 9147 §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestConnectionId {
    /// num_cids
    pub num_cids: u8,
}

/// `RecordNumber` (RFC 9147 §7): a full epoch and sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordNumber {
    /// epoch
    pub epoch: u64,
    /// sequence_number
    pub sequence_number: u64,
}

/// ACK, content type 26 (RFC 9147 §7). Not a handshake message: it is never hashed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ack {
    /// record_numbers<0..2^16-1>, in increasing order when sent (a receiver need not check)
    pub record_numbers: Vec<RecordNumber>,
}
