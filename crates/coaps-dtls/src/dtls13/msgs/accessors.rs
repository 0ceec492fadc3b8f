//! Typed look-ups of extensions, and the DTLS 1.3 checks of the ClientHello legacy fields.
//!
//! Decoding guarantees at most one extension per type (RFC 8446 §4.2), so "the" extension of a
//! type is well defined for decoded messages; for hand-built ones the first match wins.
use super::types::*;
use crate::codec::*;

/// `find_map` over an extension list, for one variant.
macro_rules! find_ext {
    ($exts:expr, $pat:pat => $out:expr) => {
        $exts.iter().find_map(|e| match e {
            $pat => Some($out),
            _ => None,
        })
    };
}

impl ClientHello13 {
    /// The extension of type `typ`, if present.
    pub fn find_extension(&self, typ: ExtensionType) -> Option<&ClientExtension13> {
        self.extensions.iter().find(|e| e.ext_type() == typ)
    }

    /// supported_versions in the client's preference order (RFC 8446 §4.2.1), if present.
    /// Without it the ClientHello is a DTLS 1.2 one.
    pub fn supported_versions(&self) -> Option<&[ProtocolVersion]> {
        find_ext!(self.extensions, ClientExtension13::SupportedVersions(v) => v.as_slice())
    }

    /// Whether supported_versions offers `version`.
    pub fn offers_version(&self, version: ProtocolVersion) -> bool {
        self.supported_versions().is_some_and(|v| v.contains(&version))
    }

    /// key_share client_shares (RFC 8446 §4.2.8), if the extension is present (it may be
    /// empty, asking for a HelloRetryRequest).
    pub fn key_shares(&self) -> Option<&[KeyShareEntry]> {
        find_ext!(self.extensions, ClientExtension13::KeyShare(k) => k.as_slice())
    }

    /// The key_share entry for `group`, if offered.
    pub fn key_share_for(&self, group: NamedGroup) -> Option<&KeyShareEntry> {
        self.key_shares()?.iter().find(|k| k.group == group)
    }

    /// supported_groups (RFC 8446 §4.2.7), if present.
    pub fn supported_groups(&self) -> Option<&[NamedGroup]> {
        find_ext!(self.extensions, ClientExtension13::SupportedGroups(g) => g.as_slice())
    }

    /// signature_algorithms (RFC 8446 §4.2.3), if present.
    pub fn signature_algorithms(&self) -> Option<&[SignatureScheme]> {
        find_ext!(self.extensions, ClientExtension13::SignatureAlgorithms(s) => s.as_slice())
    }

    /// signature_algorithms_cert (RFC 8446 §4.2.3), if present; when absent,
    /// signature_algorithms applies to certificates too.
    pub fn signature_algorithms_cert(&self) -> Option<&[SignatureScheme]> {
        find_ext!(self.extensions, ClientExtension13::SignatureAlgorithmsCert(s) => s.as_slice())
    }

    /// psk_key_exchange_modes (RFC 8446 §4.2.9), if present.
    pub fn psk_key_exchange_modes(&self) -> Option<&[PskKeyExchangeMode]> {
        find_ext!(self.extensions, ClientExtension13::PskKeyExchangeModes(m) => m.as_slice())
    }

    /// pre_shared_key (RFC 8446 §4.2.11), if present.
    pub fn pre_shared_key(&self) -> Option<&OfferedPsks> {
        find_ext!(self.extensions, ClientExtension13::PreSharedKey(p) => p)
    }

    /// Whether early_data is offered (RFC 8446 §4.2.10).
    pub fn has_early_data(&self) -> bool {
        self.extensions.iter().any(|e| matches!(e, ClientExtension13::EarlyData))
    }

    /// The cookie echoed from a HelloRetryRequest (RFC 8446 §4.2.2), if present.
    pub fn cookie(&self) -> Option<&[u8]> {
        find_ext!(self.extensions, ClientExtension13::Cookie(c) => c.as_slice())
    }

    /// The CID the client wants to receive (RFC 9146 §3), if connection_id is present.
    pub fn connection_id(&self) -> Option<&[u8]> {
        find_ext!(self.extensions, ClientExtension13::ConnectionId(c) => c.as_slice())
    }

    /// The host_name(0) entry of server_name (RFC 6066 §3), if present.
    pub fn server_name(&self) -> Option<&[u8]> {
        find_ext!(self.extensions, ClientExtension13::ServerName(n) => n)?
            .iter()
            .find(|n| n.name_type == 0)
            .map(|n| n.name.as_slice())
    }

    /// certificate_authorities (RFC 8446 §4.2.4), if present.
    pub fn certificate_authorities(&self) -> Option<&[Vec<u8>]> {
        find_ext!(self.extensions, ClientExtension13::CertificateAuthorities(c) => c.as_slice())
    }

    /// server_certificate_types (RFC 7250 §3) in the client's preference order, if present.
    pub fn server_certificate_types(&self) -> Option<&[CertificateType]> {
        find_ext!(self.extensions, ClientExtension13::ServerCertificateType(t) => t.as_slice())
    }

    /// client_certificate_types (RFC 7250 §3) in the client's preference order, if present.
    pub fn client_certificate_types(&self) -> Option<&[CertificateType]> {
        find_ext!(self.extensions, ClientExtension13::ClientCertificateType(t) => t.as_slice())
    }

    /// The checks a server makes on the legacy fields before negotiating DTLS 1.3, with the
    /// alert each failure calls for:
    /// * legacy_version must be {254,253} (RFC 9147 §5.3; RFC 9846 §4.2.2 makes any other value
    ///   a `protocol_version` abort);
    /// * legacy_cookie must be empty, else `illegal_parameter` (RFC 9147 §5.3);
    /// * legacy_compression_methods must be exactly `[null]`, else `illegal_parameter`
    ///   (RFC 8446 §4.1.2).
    pub fn check_dtls13_legacy_fields(&self) -> Result<(), AlertDescription> {
        if self.legacy_version != ProtocolVersion::DTLS1_2 {
            return Err(AlertDescription::ProtocolVersion);
        }
        if !self.legacy_cookie.is_empty() || self.legacy_compression_methods != [Compression::Null] {
            return Err(AlertDescription::IllegalParameter);
        }
        Ok(())
    }

    /// Where the binders list starts in this hello's encoding, if pre_shared_key is offered
    /// (see [`ClientHello13::read_with_binders_offset`]).
    pub fn psk_binders_offset(&self) -> Option<usize> {
        let mut scratch = Vec::new();
        self.encode_with_binders_offset(&mut scratch)
    }
}

impl ServerHello13 {
    /// The extension of type `typ`, if present.
    pub fn find_extension(&self, typ: ExtensionType) -> Option<&ServerHelloExtension13> {
        self.extensions.iter().find(|e| e.ext_type() == typ)
    }

    /// supported_versions.selected_version (RFC 8446 §4.2.1), if present.
    pub fn selected_version(&self) -> Option<ProtocolVersion> {
        find_ext!(self.extensions, ServerHelloExtension13::SupportedVersions(v) => *v)
    }

    /// key_share.server_share (RFC 8446 §4.2.8), if present.
    pub fn key_share(&self) -> Option<&KeyShareEntry> {
        find_ext!(self.extensions, ServerHelloExtension13::KeyShare(k) => k)
    }

    /// pre_shared_key.selected_identity (RFC 8446 §4.2.11), if present.
    pub fn selected_identity(&self) -> Option<u16> {
        find_ext!(self.extensions, ServerHelloExtension13::PreSharedKey(i) => *i)
    }

    /// The CID the server wants to receive (RFC 9146 §3), if connection_id is present.
    pub fn connection_id(&self) -> Option<&[u8]> {
        find_ext!(self.extensions, ServerHelloExtension13::ConnectionId(c) => c.as_slice())
    }
}

impl HelloRetryRequest13 {
    /// The extension of type `typ`, if present.
    pub fn find_extension(&self, typ: ExtensionType) -> Option<&HelloRetryExtension13> {
        self.extensions.iter().find(|e| e.ext_type() == typ)
    }

    /// supported_versions.selected_version (RFC 8446 §4.2.1), if present.
    pub fn selected_version(&self) -> Option<ProtocolVersion> {
        find_ext!(self.extensions, HelloRetryExtension13::SupportedVersions(v) => *v)
    }

    /// key_share.selected_group (RFC 8446 §4.2.8), if present.
    pub fn selected_group(&self) -> Option<NamedGroup> {
        find_ext!(self.extensions, HelloRetryExtension13::KeyShare(g) => *g)
    }

    /// The cookie the client must echo (RFC 8446 §4.2.2), if present.
    pub fn cookie(&self) -> Option<&[u8]> {
        find_ext!(self.extensions, HelloRetryExtension13::Cookie(c) => c.as_slice())
    }
}

impl EncryptedExtensions13 {
    /// The extension of type `typ`, if present.
    pub fn find_extension(&self, typ: ExtensionType) -> Option<&EncryptedExtension13> {
        self.extensions.iter().find(|e| e.ext_type() == typ)
    }

    /// Whether the server accepted early data (RFC 8446 §4.2.10).
    pub fn has_early_data(&self) -> bool {
        self.extensions.iter().any(|e| matches!(e, EncryptedExtension13::EarlyData))
    }

    /// Whether the server acknowledged server_name (RFC 6066 §3).
    pub fn has_server_name_ack(&self) -> bool {
        self.extensions.iter().any(|e| matches!(e, EncryptedExtension13::ServerName))
    }

    /// The server's supported_groups (RFC 8446 §4.2.7), if sent.
    pub fn supported_groups(&self) -> Option<&[NamedGroup]> {
        find_ext!(self.extensions, EncryptedExtension13::SupportedGroups(g) => g.as_slice())
    }

    /// The selected server certificate type (RFC 7250 §3), if the extension is present.
    pub fn server_certificate_type(&self) -> Option<CertificateType> {
        find_ext!(self.extensions, EncryptedExtension13::ServerCertificateType(t) => *t)
    }

    /// The selected client certificate type (RFC 7250 §3), if the extension is present.
    pub fn client_certificate_type(&self) -> Option<CertificateType> {
        find_ext!(self.extensions, EncryptedExtension13::ClientCertificateType(t) => *t)
    }
}

impl CertificateRequest13 {
    /// signature_algorithms (RFC 8446 §4.3.2: it MUST be present; absent is a
    /// `missing_extension` abort for the caller).
    pub fn signature_algorithms(&self) -> Option<&[SignatureScheme]> {
        find_ext!(self.extensions, CertificateRequestExtension13::SignatureAlgorithms(s) => s.as_slice())
    }

    /// signature_algorithms_cert (RFC 8446 §4.2.3), if present.
    pub fn signature_algorithms_cert(&self) -> Option<&[SignatureScheme]> {
        find_ext!(self.extensions, CertificateRequestExtension13::SignatureAlgorithmsCert(s) => s.as_slice())
    }

    /// certificate_authorities (RFC 8446 §4.2.4), if present.
    pub fn certificate_authorities(&self) -> Option<&[Vec<u8>]> {
        find_ext!(self.extensions, CertificateRequestExtension13::CertificateAuthorities(c) => c.as_slice())
    }
}

impl NewSessionTicket13 {
    /// early_data.max_early_data_size (RFC 8446 §4.2.10), if the ticket allows 0-RTT.
    pub fn max_early_data_size(&self) -> Option<u32> {
        find_ext!(self.extensions, NewSessionTicketExtension13::EarlyData(m) => *m)
    }
}

impl Certificate13 {
    /// The end-entity certificate (or SPKI): the first entry's data (RFC 8446 §4.4.2).
    pub fn end_entity(&self) -> Option<&[u8]> {
        self.certificate_list.first().map(|e| e.data.as_slice())
    }
}
