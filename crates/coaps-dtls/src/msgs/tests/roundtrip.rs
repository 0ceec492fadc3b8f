//! encode → decode → equal for every message and extension variant, plus byte-exact encodings
//! written out by hand from the RFC structures.
use super::*;

fn rt<T: for<'x> Codec<'x> + PartialEq + std::fmt::Debug>(v: &T) -> Vec<u8> {
    let bytes = v.to_vec();
    assert_eq!(T::read_exact(&bytes).as_ref(), Ok(v), "round trip of {v:?}");
    bytes
}

#[test]
fn every_client_extension_alone_and_in_a_block() {
    for e in all_client_extensions() {
        rt(&e);
        rt(&vec![e]);
    }
    rt(&all_client_extensions());
    rt(&Vec::<ClientExtension>::new());
}

#[test]
fn every_server_extension_alone_and_in_a_block() {
    for e in all_server_extensions() {
        rt(&e);
        rt(&vec![e]);
    }
    rt(&all_server_extensions());
    rt(&Vec::<ServerExtension>::new());
}

#[test]
fn extension_wire_bytes() {
    let enc = |e: ClientExtension| e.to_vec();
    assert_eq!(enc(ClientExtension::ExtendedMasterSecret), [0, 23, 0, 0]);
    assert_eq!(
        enc(ClientExtension::ServerName(vec![ServerName { name_type: 0, name: b"ab".to_vec() }])),
        [0, 0, 0, 7, 0, 5, 0, 0, 2, b'a', b'b']
    );
    assert_eq!(enc(ClientExtension::SupportedGroups(vec![NamedGroup::Secp256r1])), [0, 10, 0, 4, 0, 2, 0, 23]);
    assert_eq!(enc(ClientExtension::EcPointFormats(vec![EcPointFormat::Uncompressed])), [0, 11, 0, 2, 1, 0]);
    assert_eq!(
        enc(ClientExtension::SignatureAlgorithms(vec![SignatureScheme::EcdsaSecp256r1Sha256])),
        [0, 13, 0, 4, 0, 2, 4, 3]
    );
    assert_eq!(enc(ClientExtension::RenegotiationInfo(vec![])), [0xff, 1, 0, 1, 0]);
    assert_eq!(enc(ClientExtension::SessionTicket(vec![9, 8])), [0, 35, 0, 2, 9, 8]);
    assert_eq!(enc(ClientExtension::ServerCertificateType(vec![CertificateType::RawPublicKey])), [0, 20, 0, 2, 1, 2]);
    assert_eq!(enc(ClientExtension::ClientCertificateType(vec![CertificateType::X509])), [0, 19, 0, 2, 1, 0]);

    let enc = |e: ServerExtension| e.to_vec();
    assert_eq!(enc(ServerExtension::ServerName), [0, 0, 0, 0]);
    assert_eq!(enc(ServerExtension::SessionTicket), [0, 35, 0, 0]);
    assert_eq!(enc(ServerExtension::ExtendedMasterSecret), [0, 23, 0, 0]);
    assert_eq!(enc(ServerExtension::RenegotiationInfo(vec![5])), [0xff, 1, 0, 2, 1, 5]);
    assert_eq!(enc(ServerExtension::ServerCertificateType(CertificateType::RawPublicKey)), [0, 20, 0, 1, 2]);
    assert_eq!(enc(ServerExtension::ClientCertificateType(CertificateType::X509)), [0, 19, 0, 1, 0]);
    assert_eq!(
        enc(ServerExtension::Unknown { typ: ExtensionType::Unknown(0x1234), data: vec![1] }),
        [0x12, 0x34, 0, 1, 1]
    );
}

#[test]
fn client_hello_variants() {
    let full = full_client_hello();
    rt(&full);

    let mut bare = full.clone();
    bare.extensions.clear();
    bare.session_id = SessionId::default();
    bare.cookie = vec![0xee; 255];
    let bytes = rt(&bare);
    // Empty extensions are omitted: the body ends with compression_methods.
    assert_eq!(&bytes[bytes.len() - 2..], &[1, 0]);

    // Hand-built minimal hello: version, random, empty session_id, empty cookie, one suite,
    // null compression, an extensions block with extended_master_secret.
    let mut wire = vec![0xfe, 0xfd];
    wire.extend([0x11; 32]);
    wire.extend([0, 0, 0, 2, 0xc0, 0xa8, 1, 0, 0, 4, 0, 23, 0, 0]);
    let ch = ClientHello::read_exact(&wire).unwrap();
    assert_eq!(
        ch,
        ClientHello {
            client_version: ProtocolVersion::DTLS1_2,
            random: Random([0x11; 32]),
            session_id: SessionId::default(),
            cookie: vec![],
            cipher_suites: vec![CipherSuite::TLS_PSK_WITH_AES_128_CCM_8],
            compression_methods: vec![Compression::Null],
            extensions: vec![ClientExtension::ExtendedMasterSecret],
        }
    );
    assert_eq!(ch.to_vec(), wire);
}

#[test]
fn server_hello_variants() {
    let full = full_server_hello();
    rt(&full);
    let mut bare = full.clone();
    bare.extensions.clear();
    let bytes = rt(&bare);
    assert_eq!(bytes.len(), 2 + 32 + 1 + 16 + 2 + 1);

    // An empty but present extensions block decodes like an absent one.
    let mut with_empty_block = bytes.clone();
    with_empty_block.extend([0, 0]);
    assert_eq!(ServerHello::read_exact(&with_empty_block), Ok(bare));
}

#[test]
fn hello_verify_request() {
    let hvr = HelloVerifyRequest { server_version: ProtocolVersion::DTLS1_0, cookie: vec![3; 32] };
    let bytes = rt(&hvr);
    assert_eq!(&bytes[..3], &[0xfe, 0xff, 32]);
    rt(&HelloVerifyRequest { server_version: ProtocolVersion::DTLS1_2, cookie: vec![] });
    rt(&HelloVerifyRequest { server_version: ProtocolVersion::DTLS1_2, cookie: vec![1; 255] });
}

#[test]
fn key_exchange_pieces() {
    let params = ecdh_params();
    let bytes = rt(&params);
    assert_eq!(&bytes[..4], &[3, 0, 23, 65]);
    let sig = DigitallySigned { scheme: SignatureScheme::EcdsaSecp256r1Sha256, signature: vec![0x30; 70] };
    assert_eq!(&rt(&sig)[..4], &[4, 3, 0, 70]);
    rt(&DigitallySigned { scheme: SignatureScheme::Unknown(0x0804), signature: vec![] });
}

#[test]
fn certificate_request() {
    rt(&CertificateRequest {
        certificate_types: vec![ClientCertificateType::EcdsaSign],
        supported_signature_algorithms: vec![SignatureScheme::EcdsaSecp256r1Sha256],
        certificate_authorities: vec![],
    });
    let req = CertificateRequest {
        certificate_types: vec![ClientCertificateType::EcdsaSign, ClientCertificateType::Unknown(1)],
        supported_signature_algorithms: vec![SignatureScheme::EcdsaSecp256r1Sha256, SignatureScheme::Unknown(0x0401)],
        certificate_authorities: vec![vec![0x30, 0], vec![0x30; 300]],
    };
    let bytes = rt(&req);
    assert_eq!(&bytes[..10], &[2, 64, 1, 0, 4, 4, 3, 4, 1, 0x01]);
}

#[test]
fn new_session_ticket() {
    let bytes = rt(&NewSessionTicket { lifetime_hint: 0x01020304, ticket: vec![] });
    assert_eq!(bytes, [1, 2, 3, 4, 0, 0]);
    rt(&NewSessionTicket { lifetime_hint: u32::MAX, ticket: vec![0xab; 1000] });
}

#[test]
fn certificates() {
    let cases = [
        (Certificate::X509(vec![]), CertificateType::X509),
        (Certificate::X509(vec![vec![0x30; 500], vec![1]]), CertificateType::X509),
        (Certificate::RawPublicKey(vec![0x30; 91]), CertificateType::RawPublicKey),
    ];
    for (c, typ) in cases {
        let bytes = c.to_vec();
        assert_eq!(Certificate::read_exact_with(&bytes, typ), Ok(c));
    }
    assert_eq!(Certificate::X509(vec![]).to_vec(), [0, 0, 0]);
    assert_eq!(Certificate::X509(vec![vec![7]]).to_vec(), [0, 0, 4, 0, 0, 1, 7]);
    assert_eq!(Certificate::RawPublicKey(vec![7, 8]).to_vec(), [0, 0, 2, 7, 8]);
}

#[test]
fn key_exchange_messages() {
    use KeyExchangeAlgorithm as K;
    let skes = [
        (ServerKeyExchange::Psk { hint: vec![] }, K::Psk),
        (ServerKeyExchange::Psk { hint: b"coap".to_vec() }, K::Psk),
        (ServerKeyExchange::EcdhePsk { hint: vec![], params: ecdh_params() }, K::EcdhePsk),
        (
            ServerKeyExchange::EcdheEcdsa {
                params: ecdh_params(),
                signature: DigitallySigned { scheme: SignatureScheme::EcdsaSecp256r1Sha256, signature: vec![0x30; 71] },
            },
            K::EcdheEcdsa,
        ),
    ];
    for (m, kx) in skes {
        assert_eq!(ServerKeyExchange::read_exact_with(&m.to_vec(), kx), Ok(m));
    }
    assert_eq!(ServerKeyExchange::Psk { hint: vec![9] }.to_vec(), [0, 1, 9]);

    let ckes = [
        (ClientKeyExchange::Psk { identity: vec![] }, K::Psk),
        (ClientKeyExchange::Psk { identity: b"id".to_vec() }, K::Psk),
        (ClientKeyExchange::EcdhePsk { identity: b"id".to_vec(), public: vec![4; 65] }, K::EcdhePsk),
        (ClientKeyExchange::Ecdhe { public: vec![4; 65] }, K::EcdheEcdsa),
    ];
    for (m, kx) in ckes {
        assert_eq!(ClientKeyExchange::read_exact_with(&m.to_vec(), kx), Ok(m));
    }
    assert_eq!(ClientKeyExchange::EcdhePsk { identity: vec![1], public: vec![2] }.to_vec(), [0, 1, 1, 1, 2]);
}

#[test]
fn accessors_on_full_hellos() {
    let ch = full_client_hello();
    assert_eq!(ch.server_name(), Some(&b"coap.example"[..]));
    assert!(ch.has_extended_master_secret());
    assert_eq!(ch.supported_groups().unwrap()[0], NamedGroup::Secp256r1);
    assert_eq!(ch.ec_point_formats(), Some(&[EcPointFormat::Uncompressed][..]));
    assert_eq!(ch.signature_algorithms().unwrap().len(), 2);
    assert_eq!(ch.renegotiation_info(), Some(&[][..]));
    assert_eq!(ch.session_ticket(), Some(&[1, 2, 3, 4][..]));
    assert_eq!(ch.client_certificate_types(), Some(&[CertificateType::RawPublicKey][..]));
    assert_eq!(ch.server_certificate_types(), Some(&[CertificateType::RawPublicKey, CertificateType::X509][..]));
    assert!(ch.has_renegotiation_scsv());
    assert_eq!(
        ch.find_extension(ExtensionType::Unknown(0x1a1a)),
        Some(&ClientExtension::Unknown { typ: ExtensionType::Unknown(0x1a1a), data: vec![3, 9, 9, 9] })
    );
    assert_eq!(ch.find_extension(ExtensionType::Unknown(55)), None);

    let sh = full_server_hello();
    assert!(sh.has_extended_master_secret());
    assert!(sh.has_server_name_ack());
    assert!(sh.has_session_ticket_ack());
    assert_eq!(sh.renegotiation_info(), Some(&[0xaa; 24][..]));
    assert_eq!(sh.ec_point_formats(), Some(&[EcPointFormat::Uncompressed][..]));
    assert_eq!(sh.server_certificate_type(), Some(CertificateType::RawPublicKey));
    assert_eq!(sh.client_certificate_type(), Some(CertificateType::X509));
    assert_eq!(sh.find_extension(ExtensionType::SessionTicket), Some(&ServerExtension::SessionTicket));

    let mut bare = full_server_hello();
    bare.extensions.clear();
    assert!(!bare.has_extended_master_secret());
    assert_eq!(bare.renegotiation_info(), None);
    assert_eq!(bare.server_certificate_type(), None);
}
