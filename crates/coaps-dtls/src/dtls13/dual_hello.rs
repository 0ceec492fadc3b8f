//! The DTLS 1.2 parts of a dual-version ClientHello ([`DtlsVersion::Auto`](crate::DtlsVersion::Auto)):
//! what the DTLS 1.3 client adds so that a DTLS 1.2 server can answer the same hello
//! (RFC 9147 §5.3, RFC 8446 §4.2.1, §4.1.2 legacy_session_id).

use crate::codec::*;
use crate::config::ClientConfig;
use crate::dtls13::msgs::{ClientExtension13, RawExtension};
use crate::msgs::SessionId;
use crate::resumption::Session;

/// What a dual-version ClientHello adds to the DTLS 1.3 one.
pub(crate) struct DualHelloExtras {
    /// The DTLS 1.2 suites we have credentials for, in configuration order, after the 1.3 ones.
    pub(crate) suites12: Vec<CipherSuite>,
    /// Extensions only a DTLS 1.2 server reads; inserted before psk_key_exchange_modes and
    /// pre_shared_key.
    pub(crate) extensions: Vec<ClientExtension13>,
    /// The DTLS 1.2 session ID to resume, if any (RFC 8446 §4.1.2 legacy_session_id).
    pub(crate) legacy_session_id: SessionId,
}

/// The DTLS 1.2 parts of a dual-version ClientHello, matching what the 1.2 client sends on its
/// own (`Conn12::client`): the same suite filter by credentials and the same extensions, minus
/// those the 1.3 hello already has (server_name, supported_groups, signature_algorithms,
/// server_certificate_type).
pub(crate) fn dual_hello_extras(config: &ClientConfig, resume: Option<&Session>) -> DualHelloExtras {
    let offered: Vec<_> = config
        .common
        .suites
        .iter()
        .filter(|s| if s.uses_psk() { config.psk.is_some() } else { config.verifier.is_some() })
        .collect();
    let mut extensions = Vec::new();
    if offered.iter().any(|s| s.uses_ecdhe()) {
        // RFC 8422 §5.1.2: ec_point_formats, list of one: uncompressed (0).
        extensions
            .push(ClientExtension13::Unknown(RawExtension { typ: ExtensionType::EcPointFormats, data: vec![1, 0] }));
    }
    if offered.iter().any(|s| !s.uses_psk()) && config.client_cert.as_ref().is_some_and(|k| k.chain.is_empty()) {
        extensions.push(ClientExtension13::ClientCertificateType(vec![CertificateType::RawPublicKey]));
    }
    extensions.push(ClientExtension13::ExtendedMasterSecret);
    extensions.push(ClientExtension13::RenegotiationInfo(Vec::new()));
    // A 1.2 session resumes only a suite we still offer (RFC 5246 §7.4.1.2).
    let legacy_session_id = resume
        .filter(|s| !s.is_dtls13_ticket() && !s.id.is_empty() && s.id.len() <= 32)
        .filter(|s| offered.iter().any(|o| o.suite == s.suite))
        .map_or_else(SessionId::default, |s| SessionId(s.id.clone()));
    DualHelloExtras { suites12: offered.iter().map(|s| s.suite).collect(), extensions, legacy_session_id }
}
