//! Tests for the handshake message codec: captured OpenSSL messages, round trips, negative
//! cases and a seeded fuzz loop.
use super::*;
use crate::codec::fuzzing::Decoder;
use crate::codec::*;

mod captured;
mod fuzz;
mod negative;
mod roundtrip;
mod vectors;

/// Decodes a hex string (test vectors only).
fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit")).collect()
}

/// A ClientHello using every ClientExtension variant.
fn full_client_hello() -> ClientHello {
    ClientHello {
        client_version: ProtocolVersion::DTLS1_2,
        random: Random([0x5a; 32]),
        session_id: SessionId(vec![7; 32]),
        cookie: vec![0xc0; 20],
        cipher_suites: vec![
            CipherSuite::TLS_PSK_WITH_AES_128_CCM_8,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
            CipherSuite::Unknown(0x0a0a),
            CipherSuite::TLS_EMPTY_RENEGOTIATION_INFO_SCSV,
        ],
        compression_methods: vec![Compression::Null],
        extensions: all_client_extensions(),
    }
}

fn all_client_extensions() -> Vec<ClientExtension> {
    vec![
        ClientExtension::ServerName(vec![
            ServerName { name_type: 0, name: b"coap.example".to_vec() },
            ServerName { name_type: 7, name: vec![] },
        ]),
        ClientExtension::SupportedGroups(vec![NamedGroup::Secp256r1, NamedGroup::Unknown(0x11ec)]),
        ClientExtension::EcPointFormats(vec![EcPointFormat::Uncompressed]),
        ClientExtension::SignatureAlgorithms(vec![
            SignatureScheme::EcdsaSecp256r1Sha256,
            SignatureScheme::Unknown(0x0807),
        ]),
        ClientExtension::ExtendedMasterSecret,
        ClientExtension::RenegotiationInfo(vec![]),
        ClientExtension::SessionTicket(vec![1, 2, 3, 4]),
        ClientExtension::ClientCertificateType(vec![CertificateType::RawPublicKey]),
        ClientExtension::ServerCertificateType(vec![CertificateType::RawPublicKey, CertificateType::X509]),
        ClientExtension::ConnectionId(vec![0xc1, 0xd0]),
        ClientExtension::Unknown { typ: ExtensionType::Unknown(0x1a1a), data: vec![3, 9, 9, 9] },
        ClientExtension::Unknown { typ: ExtensionType::EncryptThenMac, data: vec![] },
    ]
}

/// A ServerHello using every ServerExtension variant.
fn full_server_hello() -> ServerHello {
    ServerHello {
        server_version: ProtocolVersion::DTLS1_2,
        random: Random([0xa5; 32]),
        session_id: SessionId(vec![1; 16]),
        cipher_suite: CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
        compression_method: Compression::Null,
        extensions: all_server_extensions(),
    }
}

fn all_server_extensions() -> Vec<ServerExtension> {
    vec![
        ServerExtension::ServerName,
        ServerExtension::EcPointFormats(vec![EcPointFormat::Uncompressed]),
        ServerExtension::ExtendedMasterSecret,
        ServerExtension::RenegotiationInfo(vec![0xaa; 24]),
        ServerExtension::SessionTicket,
        ServerExtension::ClientCertificateType(CertificateType::X509),
        ServerExtension::ServerCertificateType(CertificateType::RawPublicKey),
        ServerExtension::ConnectionId(vec![]),
        ServerExtension::Unknown { typ: ExtensionType::Unknown(0x1a1a), data: vec![0] },
    ]
}

fn ecdh_params() -> ServerEcdhParams {
    let mut point = vec![4u8];
    point.extend((0..64).map(|i| i as u8));
    ServerEcdhParams { curve_type: EcCurveType::NamedCurve, named_curve: NamedGroup::Secp256r1, public: point }
}

fn check<T: for<'x> Codec<'x> + PartialEq + std::fmt::Debug>(b: &[u8]) -> Result<(), InvalidMessage> {
    let v = T::read_exact(b)?;
    assert_eq!(T::read_exact(&v.to_vec()).as_ref(), Ok(&v), "re-encoding changed {v:?}");
    Ok(())
}

fn check_cert(b: &[u8], typ: CertificateType) -> Result<(), InvalidMessage> {
    let v = Certificate::read_exact_with(b, typ)?;
    assert_eq!(Certificate::read_exact_with(&v.to_vec(), typ).as_ref(), Ok(&v));
    Ok(())
}

fn check_ske(b: &[u8], kx: KeyExchangeAlgorithm) -> Result<(), InvalidMessage> {
    let v = ServerKeyExchange::read_exact_with(b, kx)?;
    assert_eq!(ServerKeyExchange::read_exact_with(&v.to_vec(), kx).as_ref(), Ok(&v));
    Ok(())
}

fn check_cke(b: &[u8], kx: KeyExchangeAlgorithm) -> Result<(), InvalidMessage> {
    let v = ClientKeyExchange::read_exact_with(b, kx)?;
    assert_eq!(ClientKeyExchange::read_exact_with(&v.to_vec(), kx).as_ref(), Ok(&v));
    Ok(())
}

/// Every decoder, by name, for the fuzz and truncation loops.
fn all_decoders() -> Vec<(&'static str, Decoder)> {
    use KeyExchangeAlgorithm as K;
    vec![
        ("ClientHello", check::<ClientHello>),
        ("ServerHello", check::<ServerHello>),
        ("HelloVerifyRequest", check::<HelloVerifyRequest>),
        ("ServerEcdhParams", check::<ServerEcdhParams>),
        ("DigitallySigned", check::<DigitallySigned>),
        ("CertificateRequest", check::<CertificateRequest>),
        ("NewSessionTicket", check::<NewSessionTicket>),
        ("ClientExtension", check::<ClientExtension>),
        ("ServerExtension", check::<ServerExtension>),
        ("Vec<ClientExtension>", check::<Vec<ClientExtension>>),
        ("Vec<ServerExtension>", check::<Vec<ServerExtension>>),
        ("Certificate/X509", |b| check_cert(b, CertificateType::X509)),
        ("Certificate/RPK", |b| check_cert(b, CertificateType::RawPublicKey)),
        ("Certificate/Unknown", |b| check_cert(b, CertificateType::Unknown(1))),
        ("ServerKeyExchange/Psk", |b| check_ske(b, K::Psk)),
        ("ServerKeyExchange/EcdhePsk", |b| check_ske(b, K::EcdhePsk)),
        ("ServerKeyExchange/EcdheEcdsa", |b| check_ske(b, K::EcdheEcdsa)),
        ("ClientKeyExchange/Psk", |b| check_cke(b, K::Psk)),
        ("ClientKeyExchange/EcdhePsk", |b| check_cke(b, K::EcdhePsk)),
        ("ClientKeyExchange/EcdheEcdsa", |b| check_cke(b, K::EcdheEcdsa)),
    ]
}
