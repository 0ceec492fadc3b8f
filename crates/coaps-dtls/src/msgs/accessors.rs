//! Typed look-ups of the extensions in ClientHello and ServerHello.
//!
//! Decoding guarantees at most one extension per type (RFC 5246 §7.4.1.4), so "the" extension
//! of a type is well defined for decoded hellos; for hand-built ones the first match wins.
use super::handshake::*;
use crate::codec::*;

impl ClientHello {
    /// Whether this (DTLS 1.2-decoded) ClientHello offered DTLS 1.3 in supported_versions: then a
    /// 1.2 ServerHello must not carry the downgrade sentinel (RFC 8446 §4.1.3).
    pub(crate) fn offers_dtls13(&self) -> bool {
        self.extensions.iter().any(|e| match e {
            ClientExtension::Unknown { typ: ExtensionType::SupportedVersions, data } => {
                let mut r = Reader::new(data);
                r.vec_u8("supported_versions").is_ok_and(|v| {
                    v.chunks_exact(2).any(|p| u16::from_be_bytes([p[0], p[1]]) == ProtocolVersion::DTLS1_3.0)
                })
            }
            _ => false,
        })
    }

    /// The extension of type `typ`, if present.
    pub fn find_extension(&self, typ: ExtensionType) -> Option<&ClientExtension> {
        self.extensions.iter().find(|e| e.ext_type() == typ)
    }

    /// The host_name(0) entry of server_name (RFC 6066 §3), if present.
    pub fn server_name(&self) -> Option<&[u8]> {
        match self.find_extension(ExtensionType::ServerName)? {
            ClientExtension::ServerName(names) => names.iter().find(|n| n.name_type == 0).map(|n| n.name.as_slice()),
            _ => None,
        }
    }

    /// Whether extended_master_secret (RFC 7627 §5.1) is offered.
    pub fn has_extended_master_secret(&self) -> bool {
        self.extensions.iter().any(|e| matches!(e, ClientExtension::ExtendedMasterSecret))
    }

    /// supported_groups (RFC 8422 §5.1.1), if present.
    pub fn supported_groups(&self) -> Option<&[NamedGroup]> {
        self.extensions.iter().find_map(|e| match e {
            ClientExtension::SupportedGroups(g) => Some(g.as_slice()),
            _ => None,
        })
    }

    /// ec_point_formats (RFC 8422 §5.1.2), if present.
    pub fn ec_point_formats(&self) -> Option<&[EcPointFormat]> {
        self.extensions.iter().find_map(|e| match e {
            ClientExtension::EcPointFormats(f) => Some(f.as_slice()),
            _ => None,
        })
    }

    /// signature_algorithms (RFC 5246 §7.4.1.4.1), if present.
    pub fn signature_algorithms(&self) -> Option<&[SignatureScheme]> {
        self.extensions.iter().find_map(|e| match e {
            ClientExtension::SignatureAlgorithms(s) => Some(s.as_slice()),
            _ => None,
        })
    }

    /// renegotiated_connection from renegotiation_info (RFC 5746 §3.2), if the extension is
    /// present.
    pub fn renegotiation_info(&self) -> Option<&[u8]> {
        self.extensions.iter().find_map(|e| match e {
            ClientExtension::RenegotiationInfo(rc) => Some(rc.as_slice()),
            _ => None,
        })
    }

    /// Whether cipher_suites carries TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 §3.3), which
    /// counts as an empty renegotiation_info.
    pub fn has_renegotiation_scsv(&self) -> bool {
        self.cipher_suites.contains(&CipherSuite::TLS_EMPTY_RENEGOTIATION_INFO_SCSV)
    }

    /// The session_ticket extension data (RFC 5077 §3.2; empty asks for a new ticket), if
    /// present.
    pub fn session_ticket(&self) -> Option<&[u8]> {
        self.extensions.iter().find_map(|e| match e {
            ClientExtension::SessionTicket(t) => Some(t.as_slice()),
            _ => None,
        })
    }

    /// server_certificate_types (RFC 7250 §3) in the client's preference order, if present.
    pub fn server_certificate_types(&self) -> Option<&[CertificateType]> {
        self.extensions.iter().find_map(|e| match e {
            ClientExtension::ServerCertificateType(t) => Some(t.as_slice()),
            _ => None,
        })
    }

    /// client_certificate_types (RFC 7250 §3) in the client's preference order, if present.
    pub fn client_certificate_types(&self) -> Option<&[CertificateType]> {
        self.extensions.iter().find_map(|e| match e {
            ClientExtension::ClientCertificateType(t) => Some(t.as_slice()),
            _ => None,
        })
    }
}

impl ClientHello {
    /// The CID the client asks to receive (RFC 9146 §3), if it offers connection_id.
    pub fn connection_id(&self) -> Option<&[u8]> {
        self.extensions.iter().find_map(|e| match e {
            ClientExtension::ConnectionId(c) => Some(c.as_slice()),
            _ => None,
        })
    }
}

impl ClientHello {
    /// Whether the client offers the rrc extension (RFC 9853 §3).
    pub fn offers_rrc(&self) -> bool {
        self.extensions.iter().any(|e| matches!(e, ClientExtension::Rrc))
    }
}

impl ServerHello {
    /// The CID the server asks to receive (RFC 9146 §3), if it accepted connection_id.
    pub fn connection_id(&self) -> Option<&[u8]> {
        self.extensions.iter().find_map(|e| match e {
            ServerExtension::ConnectionId(c) => Some(c.as_slice()),
            _ => None,
        })
    }

    /// The extension of type `typ`, if present.
    pub fn find_extension(&self, typ: ExtensionType) -> Option<&ServerExtension> {
        self.extensions.iter().find(|e| e.ext_type() == typ)
    }

    /// Whether extended_master_secret (RFC 7627 §5.1) was accepted.
    pub fn has_extended_master_secret(&self) -> bool {
        self.extensions.iter().any(|e| matches!(e, ServerExtension::ExtendedMasterSecret))
    }

    /// renegotiated_connection from renegotiation_info (RFC 5746 §3.2), if present.
    pub fn renegotiation_info(&self) -> Option<&[u8]> {
        self.extensions.iter().find_map(|e| match e {
            ServerExtension::RenegotiationInfo(rc) => Some(rc.as_slice()),
            _ => None,
        })
    }

    /// ec_point_formats (RFC 8422 §5.2), if present.
    pub fn ec_point_formats(&self) -> Option<&[EcPointFormat]> {
        self.extensions.iter().find_map(|e| match e {
            ServerExtension::EcPointFormats(f) => Some(f.as_slice()),
            _ => None,
        })
    }

    /// Whether the server acknowledged server_name (RFC 6066 §3).
    pub fn has_server_name_ack(&self) -> bool {
        self.extensions.iter().any(|e| matches!(e, ServerExtension::ServerName))
    }

    /// Whether the server will send a NewSessionTicket (RFC 5077 §3.2).
    pub fn has_session_ticket_ack(&self) -> bool {
        self.extensions.iter().any(|e| matches!(e, ServerExtension::SessionTicket))
    }

    /// The selected server certificate type (RFC 7250 §3), if the extension is present.
    pub fn server_certificate_type(&self) -> Option<CertificateType> {
        self.extensions.iter().find_map(|e| match e {
            ServerExtension::ServerCertificateType(t) => Some(*t),
            _ => None,
        })
    }

    /// The selected client certificate type (RFC 7250 §3), if the extension is present.
    pub fn client_certificate_type(&self) -> Option<CertificateType> {
        self.extensions.iter().find_map(|e| match e {
            ServerExtension::ClientCertificateType(t) => Some(*t),
            _ => None,
        })
    }
}
