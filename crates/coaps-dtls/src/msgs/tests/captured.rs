//! Messages produced by OpenSSL decode to the expected fields and re-encode byte for byte.
use super::vectors::*;
use super::*;

const OPENSSL_SIG_ALGS: [u16; 20] = [
    0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x0809, 0x080a, 0x080b, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601,
    0x0303, 0x0301, 0x0302, 0x0402, 0x0502, 0x0602,
];

fn sig_algs() -> Vec<SignatureScheme> {
    OPENSSL_SIG_ALGS.iter().map(|&v| SignatureScheme::from(v)).collect()
}

/// Decodes `hex_body` with `read` and checks that encoding gives back the same bytes.
fn decode_exact<T: for<'x> Codec<'x>>(hex_body: &str) -> T {
    let bytes = hex(hex_body);
    let v = T::read_exact(&bytes).expect("captured message decodes");
    assert_eq!(v.to_vec(), bytes, "re-encoding differs from the capture");
    v
}

#[test]
fn openssl_psk_client_hello() {
    let ch: ClientHello = decode_exact(CH_PSK);
    assert_eq!(ch.client_version, ProtocolVersion::DTLS1_2);
    assert!(ch.session_id.0.is_empty());
    assert!(ch.cookie.is_empty());
    assert_eq!(
        ch.cipher_suites,
        [CipherSuite::TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, CipherSuite::TLS_EMPTY_RENEGOTIATION_INFO_SCSV]
    );
    assert_eq!(u16::from(ch.cipher_suites[0]), 0xCCAB);
    assert!(ch.has_renegotiation_scsv());
    assert_eq!(ch.compression_methods, [Compression::Null]);
    assert_eq!(
        ch.extensions,
        [
            ClientExtension::SessionTicket(vec![]),
            ClientExtension::Unknown { typ: ExtensionType::EncryptThenMac, data: vec![] },
            ClientExtension::ExtendedMasterSecret,
            ClientExtension::SignatureAlgorithms(sig_algs()),
        ]
    );
    assert!(ch.has_extended_master_secret());
    assert_eq!(ch.session_ticket(), Some(&[][..]));
    assert_eq!(ch.signature_algorithms().map(<[_]>::len), Some(20));
    assert_eq!(ch.server_name(), None);
    assert_eq!(ch.supported_groups(), None);
    assert_eq!(ch.renegotiation_info(), None);
    assert_eq!(ch.server_certificate_types(), None);
    assert_eq!(ch.client_certificate_types(), None);
}

#[test]
fn openssl_ecdsa_client_hello() {
    let ch: ClientHello = decode_exact(CH_ECDSA);
    assert_eq!(
        ch.cipher_suites,
        [CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, CipherSuite::TLS_EMPTY_RENEGOTIATION_INFO_SCSV]
    );
    assert_eq!(ch.server_name(), Some(&b"coap.example"[..]));
    assert_eq!(
        ch.ec_point_formats(),
        Some(&[EcPointFormat::Uncompressed, EcPointFormat::Unknown(1), EcPointFormat::Unknown(2)][..])
    );
    assert_eq!(
        ch.supported_groups(),
        Some(
            &[
                NamedGroup::X25519,
                NamedGroup::Secp256r1,
                NamedGroup::Unknown(30),
                NamedGroup::Unknown(25),
                NamedGroup::Unknown(24)
            ][..]
        )
    );
    assert!(ch.signature_algorithms().unwrap().contains(&SignatureScheme::EcdsaSecp256r1Sha256));
    assert!(ch.has_extended_master_secret());
    let types: Vec<u16> = ch.extensions.iter().map(|e| e.ext_type().into()).collect();
    assert_eq!(types, [0, 11, 10, 35, 22, 23, 13]);
}

#[test]
fn openssl_hello_verify_request_and_cookie_echo() {
    let hvr: HelloVerifyRequest = decode_exact(PSK_HVR);
    assert_eq!(hvr.server_version, ProtocolVersion::DTLS1_0);
    assert_eq!(hvr.cookie.len(), 20);
    let ch: ClientHello = decode_exact(PSK_CH2);
    assert_eq!(ch.cookie, hvr.cookie);
    assert!(ch.has_extended_master_secret());
    assert_eq!(ch.cipher_suites[0], CipherSuite::TLS_PSK_WITH_CHACHA20_POLY1305_SHA256);

    let ch: ClientHello = decode_exact(ECDSA_CH2);
    assert_eq!(ch.cookie.len(), 20);
    assert_eq!(ch.server_name(), Some(&b"coap.example"[..]));
    assert_eq!(ch.supported_groups(), Some(&[NamedGroup::Secp256r1][..]));
}

#[test]
fn openssl_server_hellos() {
    let sh: ServerHello = decode_exact(PSK_SH);
    assert_eq!(sh.server_version, ProtocolVersion::DTLS1_2);
    assert!(sh.session_id.0.is_empty());
    assert_eq!(sh.cipher_suite, CipherSuite::TLS_PSK_WITH_CHACHA20_POLY1305_SHA256);
    assert_eq!(sh.compression_method, Compression::Null);
    assert_eq!(
        sh.extensions,
        [
            ServerExtension::RenegotiationInfo(vec![]),
            ServerExtension::SessionTicket,
            ServerExtension::ExtendedMasterSecret,
        ]
    );
    assert!(sh.has_extended_master_secret());
    assert!(sh.has_session_ticket_ack());
    assert!(!sh.has_server_name_ack());
    assert_eq!(sh.renegotiation_info(), Some(&[][..]));
    assert_eq!(sh.server_certificate_type(), None);
    assert_eq!(sh.client_certificate_type(), None);

    let sh: ServerHello = decode_exact(ECDSA_SH);
    assert_eq!(sh.cipher_suite, CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256);
    assert_eq!(
        sh.ec_point_formats(),
        Some(&[EcPointFormat::Uncompressed, EcPointFormat::Unknown(1), EcPointFormat::Unknown(2)][..])
    );
    assert!(sh.has_extended_master_secret());

    let sh: ServerHello = decode_exact(ECDHE_PSK_SH);
    assert_eq!(sh.cipher_suite, CipherSuite::TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256);
}

#[test]
fn openssl_certificate_and_certificate_request() {
    let bytes = hex(ECDSA_SERVER_CERT);
    let cert = Certificate::read_exact_with(&bytes, CertificateType::X509).unwrap();
    assert_eq!(cert.to_vec(), bytes);
    let Certificate::X509(list) = cert else { panic!("not X509") };
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].len(), 0x187);
    assert_eq!(&list[0][..2], &[0x30, 0x82]); // DER SEQUENCE, two-byte length
    assert!(list[0].windows(12).any(|w| w == b"coap.example"));

    let req: CertificateRequest = decode_exact(ECDSA_CERT_REQ);
    assert_eq!(
        req.certificate_types,
        [
            ClientCertificateType::Unknown(1), // rsa_sign
            ClientCertificateType::Unknown(2), // dss_sign
            ClientCertificateType::EcdsaSign
        ]
    );
    assert_eq!(req.supported_signature_algorithms, sig_algs());
    assert!(req.certificate_authorities.is_empty());
}

#[test]
fn openssl_key_exchanges() {
    use KeyExchangeAlgorithm as K;
    let bytes = hex(ECDSA_SKE);
    let ske = ServerKeyExchange::read_exact_with(&bytes, K::EcdheEcdsa).unwrap();
    assert_eq!(ske.to_vec(), bytes);
    let ServerKeyExchange::EcdheEcdsa { params, signature } = ske else { panic!("{ske:?}") };
    assert_eq!(params.curve_type, EcCurveType::NamedCurve);
    assert_eq!(params.named_curve, NamedGroup::Secp256r1);
    assert_eq!((params.public.len(), params.public[0]), (65, 4));
    assert_eq!(signature.scheme, SignatureScheme::EcdsaSecp256r1Sha256);
    assert_eq!(signature.signature[0], 0x30);
    assert_eq!(usize::from(signature.signature[1]) + 2, signature.signature.len());

    let bytes = hex(ECDHE_PSK_SKE);
    let ske = ServerKeyExchange::read_exact_with(&bytes, K::EcdhePsk).unwrap();
    assert_eq!(ske.to_vec(), bytes);
    let ServerKeyExchange::EcdhePsk { hint, params } = ske else { panic!("{ske:?}") };
    assert_eq!(hint, b"hint");
    assert_eq!(params.named_curve, NamedGroup::X25519);
    assert_eq!(params.public.len(), 32);

    let bytes = hex(PSK_CKE);
    let cke = ClientKeyExchange::read_exact_with(&bytes, K::Psk).unwrap();
    assert_eq!(cke.to_vec(), bytes);
    assert_eq!(cke, ClientKeyExchange::Psk { identity: b"Client_identity".to_vec() });

    let bytes = hex(ECDHE_PSK_CKE);
    let cke = ClientKeyExchange::read_exact_with(&bytes, K::EcdhePsk).unwrap();
    assert_eq!(cke.to_vec(), bytes);
    let ClientKeyExchange::EcdhePsk { identity, public } = cke else { panic!("{cke:?}") };
    assert_eq!(identity, b"Client_identity");
    assert_eq!(public.len(), 32);

    let bytes = hex(ECDSA_CKE);
    let cke = ClientKeyExchange::read_exact_with(&bytes, K::EcdheEcdsa).unwrap();
    assert_eq!(cke.to_vec(), bytes);
    let ClientKeyExchange::Ecdhe { public } = cke else { panic!("{cke:?}") };
    assert_eq!((public.len(), public[0]), (65, 4));

    // A layout read with the wrong key exchange is refused, not misread.
    assert!(ClientKeyExchange::read_exact_with(&hex(PSK_CKE), K::EcdheEcdsa).is_err());
    assert!(ServerKeyExchange::read_exact_with(&hex(ECDSA_SKE), K::EcdhePsk).is_err());
}

#[test]
fn openssl_certificate_verify_and_ticket() {
    let cv: DigitallySigned = decode_exact(ECDSA_CV);
    assert_eq!(cv.scheme, SignatureScheme::EcdsaSecp256r1Sha256);
    assert_eq!(cv.signature.len(), 0x48);

    let nst: NewSessionTicket = decode_exact(PSK_NST);
    assert_eq!(nst.lifetime_hint, 7200);
    assert_eq!(nst.ticket.len(), 192);
}
