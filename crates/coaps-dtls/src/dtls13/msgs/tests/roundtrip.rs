//! Every message and extension variant survives encode → decode, with the exact bytes the RFC
//! layouts give; transcript helpers produce the RFC byte strings.
use super::*;
use crate::types::Role;

fn roundtrip<T: for<'x> Codec<'x> + PartialEq + std::fmt::Debug>(v: &T) -> Vec<u8> {
    let bytes = v.to_vec();
    assert_eq!(T::read_exact(&bytes).as_ref(), Ok(v));
    bytes
}

#[test]
fn client_hello_every_extension() {
    let ch = full_client_hello();
    let bytes = roundtrip(&ch);
    for e in &ch.extensions {
        roundtrip(e);
    }
    // Accessors see every extension.
    assert_eq!(ch.server_name(), Some(&b"coap.example"[..]));
    assert_eq!(ch.supported_versions().unwrap()[0], ProtocolVersion::DTLS1_3);
    assert_eq!(ch.key_share_for(NamedGroup::Secp256r1).map(|k| k.key_exchange.len()), Some(65));
    assert_eq!(ch.supported_groups().unwrap().len(), 3);
    assert_eq!(ch.signature_algorithms().unwrap().len(), 2);
    assert_eq!(ch.signature_algorithms_cert(), Some(&[SignatureScheme::EcdsaSecp256r1Sha256][..]));
    assert_eq!(ch.psk_key_exchange_modes().unwrap()[0], PskKeyExchangeMode::PskDheKe);
    assert_eq!(ch.pre_shared_key(), Some(&offered_psks()));
    assert!(ch.has_early_data());
    assert_eq!(ch.cookie(), Some(&[0xc0; 40][..]));
    assert_eq!(ch.connection_id(), Some(&[][..]));
    assert_eq!(ch.certificate_authorities().map(<[_]>::len), Some(2));
    assert_eq!(ch.server_certificate_types().unwrap()[0], CertificateType::RawPublicKey);
    assert_eq!(ch.client_certificate_types(), Some(&[CertificateType::RawPublicKey][..]));
    assert_eq!(ch.find_extension(ExtensionType::ExtendedMasterSecret), Some(&ClientExtension13::ExtendedMasterSecret));
    assert_eq!(ch.find_extension(ExtensionType::Unknown(0x7777)), None);

    // The binders are the tail: 2 + (1 + 32) + (1 + 48) bytes.
    let (decoded, off) = ClientHello13::read_with_binders_offset(&bytes).unwrap();
    assert_eq!(decoded, ch);
    assert_eq!(off, Some(bytes.len() - 84));
    assert_eq!(ch.psk_binders_offset(), off);
    assert_eq!(bytes[off.unwrap()..off.unwrap() + 3], [0, 82, 32]);
    // Relative to where the body starts in the output buffer.
    let mut out = vec![0xee; 7];
    assert_eq!(ch.encode_with_binders_offset(&mut out), off);
}

#[test]
fn client_hello_fixed_layout() {
    let ch = ClientHello13 {
        legacy_version: ProtocolVersion::DTLS1_2,
        random: Random([1; 32]),
        legacy_session_id: SessionId(vec![]),
        legacy_cookie: vec![],
        cipher_suites: vec![CipherSuite::TLS_AES_128_CCM_8_SHA256],
        legacy_compression_methods: vec![Compression::Null],
        extensions: vec![ClientExtension13::SupportedVersions(vec![ProtocolVersion::DTLS1_3])],
    };
    let mut want = vec![0xfe, 0xfd];
    want.extend_from_slice(&[1; 32]);
    want.extend_from_slice(&[0, 0, 0, 2, 0x13, 0x05, 1, 0, 0, 7, 0, 43, 0, 3, 2, 0xfe, 0xfc]);
    assert_eq!(roundtrip(&ch), want);
    assert_eq!(ch.psk_binders_offset(), None);
    // A DTLS 1.2 ClientHello without extensions decodes with none.
    let no_ext = &want[..want.len() - 9];
    let ch12 = ClientHello13::read_exact(no_ext).unwrap();
    assert!(ch12.extensions.is_empty());
    assert_eq!(ch12.supported_versions(), None);
}

#[test]
fn legacy_field_checks() {
    let ok = full_client_hello();
    assert_eq!(ok.check_dtls13_legacy_fields(), Ok(()));
    let mut c = ok.clone();
    c.legacy_cookie = vec![1];
    assert_eq!(c.check_dtls13_legacy_fields(), Err(AlertDescription::IllegalParameter));
    let mut c = ok.clone();
    c.legacy_compression_methods = vec![Compression::Null, Compression::Unknown(1)];
    assert_eq!(c.check_dtls13_legacy_fields(), Err(AlertDescription::IllegalParameter));
    let mut c = ok;
    c.legacy_version = ProtocolVersion::DTLS1_3;
    assert_eq!(c.check_dtls13_legacy_fields(), Err(AlertDescription::ProtocolVersion));
}

#[test]
fn server_hello_and_hrr() {
    let sh = full_server_hello();
    let bytes = roundtrip(&sh);
    assert_eq!(ServerHelloMessage13::read_exact(&bytes), Ok(ServerHelloMessage13::ServerHello(sh.clone())));
    assert_eq!(ServerHelloMessage13::peek_selected_version(&bytes), Ok(Some(ProtocolVersion::DTLS1_3)));
    assert_eq!(sh.selected_version(), Some(ProtocolVersion::DTLS1_3));
    assert_eq!(sh.key_share().map(|k| k.group), Some(NamedGroup::Secp256r1));
    assert_eq!(sh.selected_identity(), Some(1));
    assert_eq!(sh.connection_id(), Some(&[7, 7, 7, 7][..]));
    assert!(sh.find_extension(ExtensionType::ExtendedMasterSecret).is_some());

    let hrr = full_hrr();
    let bytes = roundtrip(&hrr);
    assert_eq!(bytes[2..34], HELLO_RETRY_REQUEST_RANDOM);
    let msg = ServerHelloMessage13::HelloRetryRequest(hrr.clone());
    assert_eq!(roundtrip(&msg), bytes);
    assert_eq!(ServerHelloMessage13::peek_selected_version(&bytes), Ok(Some(ProtocolVersion::DTLS1_3)));
    assert_eq!(hrr.selected_group(), Some(NamedGroup::Secp256r1));
    assert_eq!(hrr.cookie(), Some(&[0xcc; 60][..]));
    assert_eq!(hrr.selected_version(), Some(ProtocolVersion::DTLS1_3));
    assert!(hrr.find_extension(ExtensionType::Unknown(0xfe0d)).is_some());
}

#[test]
fn server_hello_layout_and_peek_on_dtls12() {
    // key_share in ServerHello is one KeyShareEntry; pre_shared_key a bare u16.
    let sh = ServerHello13 {
        legacy_version: ProtocolVersion::DTLS1_2,
        random: Random([2; 32]),
        legacy_session_id_echo: SessionId(vec![]),
        cipher_suite: CipherSuite::TLS_AES_128_GCM_SHA256,
        legacy_compression_method: Compression::Null,
        extensions: vec![
            ServerHelloExtension13::KeyShare(KeyShareEntry { group: NamedGroup::X25519, key_exchange: vec![9; 2] }),
            ServerHelloExtension13::PreSharedKey(0),
        ],
    };
    let bytes = sh.to_vec();
    assert_eq!(bytes[34..], [0, 0x13, 0x01, 0, 0, 16, 0, 51, 0, 6, 0, 29, 0, 2, 9, 9, 0, 41, 0, 2, 0, 0]);
    assert_eq!(ServerHelloMessage13::peek_selected_version(&bytes), Ok(None));
    // A DTLS 1.2 ServerHello (from the 1.2 codec) with a server_name ack: not a DTLS 1.3 one,
    // and peek says so without tripping over the extension.
    let sh12 = crate::msgs::ServerHello {
        server_version: ProtocolVersion::DTLS1_2,
        random: crate::msgs::Random([3; 32]),
        session_id: SessionId(vec![5; 32]),
        cipher_suite: CipherSuite::TLS_PSK_WITH_AES_128_CCM_8,
        compression_method: Compression::Null,
        extensions: vec![crate::msgs::ServerExtension::ServerName, crate::msgs::ServerExtension::ExtendedMasterSecret],
    };
    let b12 = sh12.to_vec();
    assert_eq!(ServerHelloMessage13::peek_selected_version(&b12), Ok(None));
    assert_eq!(ServerHelloMessage13::read_exact(&b12), Err(InvalidMessage::IllegalValue(REASON_EXTENSION_NOT_ALLOWED)));
    let mut bare = sh12.clone();
    bare.extensions.clear();
    assert_eq!(ServerHelloMessage13::peek_selected_version(&bare.to_vec()), Ok(None));
}

#[test]
fn server_parameters_and_authentication() {
    let ee = full_encrypted_extensions();
    roundtrip(&ee);
    assert!(ee.has_early_data());
    assert!(ee.has_server_name_ack());
    assert_eq!(ee.supported_groups(), Some(&[NamedGroup::Secp256r1][..]));
    assert_eq!(ee.server_certificate_type(), Some(CertificateType::RawPublicKey));
    assert_eq!(ee.client_certificate_type(), Some(CertificateType::X509));
    assert_eq!(EncryptedExtensions13::default().to_vec(), [0, 0]);
    assert_eq!(roundtrip(&EncryptedExtensions13::default()), [0, 0]);

    let cr = full_certificate_request();
    let bytes = roundtrip(&cr);
    assert_eq!(bytes[..4], [3, 9, 8, 7]);
    assert_eq!(cr.signature_algorithms(), Some(&[SignatureScheme::EcdsaSecp256r1Sha256][..]));
    assert_eq!(cr.signature_algorithms_cert(), Some(&[SignatureScheme::Unknown(0x0804)][..]));
    assert_eq!(cr.certificate_authorities().map(<[_]>::len), Some(1));

    for (cert, typ) in [(full_certificate(), CertificateType::X509), (rpk_certificate(), CertificateType::RawPublicKey)]
    {
        let bytes = cert.to_vec();
        assert_eq!(Certificate13::read_exact_with(&bytes, typ).as_ref(), Ok(&cert));
    }
    assert_eq!(
        rpk_certificate().to_vec(),
        [2, 1, 2, 0, 0, 9, 0, 0, 4, 0x30, 0x59, 0x30, 0x13, 0, 0],
        "context, list<2^24>, entry<2^24>, extensions<2^16>"
    );
    assert_eq!(full_certificate().end_entity().map(<[u8]>::len), Some(300));
    // An empty list (a client without a certificate) decodes.
    let empty = Certificate13 { certificate_request_context: vec![4], certificate_list: vec![] };
    assert_eq!(Certificate13::read_exact_with(&empty.to_vec(), CertificateType::X509), Ok(empty.clone()));
    assert_eq!(empty.end_entity(), None);

    let cv = CertificateVerify13 { algorithm: SignatureScheme::EcdsaSecp256r1Sha256, signature: vec![0x30; 71] };
    assert_eq!(roundtrip(&cv)[..4], [4, 3, 0, 71]);

    let fin = Finished13 { verify_data: vec![0xf1; 32] };
    assert_eq!(Finished13::read_exact_with(&fin.to_vec(), 32), Ok(fin.clone()));
    assert_eq!(fin.to_vec(), [0xf1; 32]);
}

#[test]
fn post_handshake_messages() {
    let nst = full_new_session_ticket();
    let bytes = roundtrip(&nst);
    assert_eq!(bytes[..11], [0, 9, 0x3a, 0x80, 1, 2, 3, 4, 2, 0, 1]);
    assert_eq!(nst.max_early_data_size(), Some(1024));

    for (k, b) in [(KeyUpdateRequest::UpdateNotRequested, 0), (KeyUpdateRequest::UpdateRequested, 1)] {
        assert_eq!(roundtrip(&KeyUpdate { request_update: k }), [b]);
    }
    // Other values decode, for the caller to answer with illegal_parameter.
    assert_eq!(KeyUpdate::read_exact(&[2]), Ok(KeyUpdate { request_update: KeyUpdateRequest::Unknown(2) }));

    let ncid = NewConnectionId { cids: vec![vec![1, 2, 3], vec![]], usage: ConnectionIdUsage::CidSpare };
    assert_eq!(roundtrip(&ncid), [0, 5, 3, 1, 2, 3, 0, 1]);
    assert_eq!(roundtrip(&RequestConnectionId { num_cids: 5 }), [5]);

    let ack = full_ack();
    let bytes = roundtrip(&ack);
    assert_eq!(bytes.len(), 2 + 3 * 16);
    assert_eq!(bytes[..2], [0, 48]);
    assert_eq!(bytes[2..18], [0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        bytes[34..],
        [0xff; 8].into_iter().chain([0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).collect::<Vec<_>>()[..]
    );
    assert_eq!(roundtrip(&Ack::default()), [0, 0]);
}

#[test]
fn registry_code_points() {
    assert_eq!(u16::from(CipherSuite::TLS_AES_128_GCM_SHA256), 0x1301);
    assert_eq!(u16::from(CipherSuite::TLS_CHACHA20_POLY1305_SHA256), 0x1303);
    assert_eq!(u16::from(CipherSuite::TLS_AES_128_CCM_8_SHA256), 0x1305);
    let exts = [
        (ExtensionType::PreSharedKey, 41),
        (ExtensionType::EarlyData, 42),
        (ExtensionType::SupportedVersions, 43),
        (ExtensionType::Cookie, 44),
        (ExtensionType::PskKeyExchangeModes, 45),
        (ExtensionType::CertificateAuthorities, 47),
        (ExtensionType::SignatureAlgorithmsCert, 50),
        (ExtensionType::KeyShare, 51),
        (ExtensionType::ConnectionId, 54),
    ];
    for (t, v) in exts {
        assert_eq!(u16::from(t), v);
        assert_eq!(ExtensionType::from(v), t);
    }
    assert_eq!(u8::from(PskKeyExchangeMode::PskKe), 0);
    assert_eq!(u8::from(PskKeyExchangeMode::PskDheKe), 1);
    assert_eq!(u8::from(KeyUpdateRequest::UpdateNotRequested), 0);
    assert_eq!(u8::from(KeyUpdateRequest::UpdateRequested), 1);
    assert_eq!(u8::from(HandshakeType::RequestConnectionId), 9);
    assert_eq!(u8::from(HandshakeType::NewConnectionId), 10);
    assert_eq!(u8::from(AlertDescription::TooManyCidsRequested), 52);
    assert_eq!(u8::from(AlertDescription::CertificateRequired), 116);
}

#[test]
fn transcript_helpers() {
    let mut out = vec![0xaa];
    transcript_bytes_13(HandshakeType::Finished, &[1, 2, 3], &mut out);
    assert_eq!(out, [0xaa, 20, 0, 0, 3, 1, 2, 3]);

    let mut mh = Vec::new();
    message_hash(&[7; 32], &mut mh);
    let mut want = vec![254, 0, 0, 32];
    want.extend_from_slice(&[7; 32]);
    assert_eq!(mh, want);

    let body: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
    let mut t = Vec::new();
    truncated_client_hello_transcript(&body, 250, &mut t);
    assert_eq!(t[..4], [1, 0, 1, 44]);
    assert_eq!(t[4..], body[..250]);
}

#[test]
fn certificate_verify_content_matches_rfc_example() {
    // RFC 8446 §4.4.3 (RFC 9846 §4.5.2): the server content for a transcript hash of 32 × 01.
    let want = hex(concat!(
        "2020202020202020202020202020202020202020202020202020202020202020",
        "2020202020202020202020202020202020202020202020202020202020202020",
        "544c5320312e332c207365727665722043657274696669636174655665726966",
        "79",
        "00",
        "0101010101010101010101010101010101010101010101010101010101010101",
    ));
    assert_eq!(certificate_verify_content(Role::Server, &[1; 32]), want);
    let client = certificate_verify_content(Role::Client, &[1; 32]);
    assert_eq!(client.len(), want.len());
    assert_eq!(&client[64..97], b"TLS 1.3, client CertificateVerify");
    assert_eq!(client[97], 0);
}

#[test]
fn downgrade_sentinels() {
    assert_eq!(&DOWNGRADE_SENTINEL_DTLS12, b"DOWNGRD\x01");
    assert_eq!(&DOWNGRADE_SENTINEL_DTLS10, b"DOWNGRD\x00");
    let mut r = Random([0x44; 32]);
    assert_eq!(DowngradeSentinel::find(&r), None);
    DowngradeSentinel::Dtls12.apply(&mut r);
    assert_eq!(r.0[..24], [0x44; 24]);
    assert_eq!(DowngradeSentinel::find(&r), Some(DowngradeSentinel::Dtls12));
    DowngradeSentinel::Dtls10.apply(&mut r);
    assert_eq!(DowngradeSentinel::find(&r), Some(DowngradeSentinel::Dtls10));
    r.0[31] = 2;
    assert_eq!(DowngradeSentinel::find(&r), None);
    // The HelloRetryRequest random is SHA-256("HelloRetryRequest") (RFC 8446 §4.1.3).
    let mut h = crate::crypto::CryptoProvider::sha256(&crate::crypto::rustcrypto::RustCrypto);
    h.update(b"HelloRetryRequest");
    assert_eq!(h.current(), HELLO_RETRY_REQUEST_RANDOM);
}

#[test]
fn write_binders_checks_the_placeholder() {
    let ch = full_client_hello();
    let mut body = Vec::new();
    let off = ch.encode_with_binders_offset(&mut body).unwrap();
    let new = vec![vec![0x11; 32], vec![0x22; 48]];
    write_binders(&mut body, off, &new).unwrap();
    let decoded = ClientHello13::read_exact(&body).unwrap();
    assert_eq!(decoded.pre_shared_key().unwrap().binders, new);
    assert_eq!(decoded.pre_shared_key().unwrap().identities, offered_psks().identities);

    let before = body.clone();
    // Wrong total length, a binder too short, an offset past the end: refused, body untouched.
    assert!(write_binders(&mut body, off, &[vec![0x11; 32]]).is_err());
    assert!(write_binders(&mut body, off, &[vec![0x11; 31], vec![0x22; 49]]).is_err());
    assert!(write_binders(&mut body, before.len() + 1, &new).is_err());
    assert!(write_binders(&mut body, off + 1, &new).is_err());
    assert_eq!(body, before);
}

#[test]
fn dtls12_client_hello_decodes_as_client_hello13() {
    // A dual-version server decodes every ClientHello with ClientHello13 and negotiates DTLS
    // 1.2 when supported_versions is absent; a 1.2 hello after HelloVerifyRequest carries a
    // cookie, which ClientHello13 keeps (and check_dtls13_legacy_fields refuses for 1.3).
    use crate::msgs::{ClientExtension, ClientHello};
    let ch12 = ClientHello {
        client_version: ProtocolVersion::DTLS1_2,
        random: Random([9; 32]),
        session_id: SessionId(vec![1; 32]),
        cookie: vec![0xc0; 20],
        cipher_suites: vec![CipherSuite::TLS_PSK_WITH_AES_128_CCM_8, CipherSuite::TLS_EMPTY_RENEGOTIATION_INFO_SCSV],
        compression_methods: vec![Compression::Null],
        extensions: vec![
            ClientExtension::SupportedGroups(vec![NamedGroup::Secp256r1]),
            ClientExtension::EcPointFormats(vec![EcPointFormat::Uncompressed]),
            ClientExtension::ExtendedMasterSecret,
            ClientExtension::RenegotiationInfo(vec![]),
            ClientExtension::SessionTicket(vec![1, 2]),
            ClientExtension::Unknown { typ: ExtensionType::ConnectionId, data: vec![0] },
        ],
    };
    let bytes = ch12.to_vec();
    let ch = ClientHello13::read_exact(&bytes).unwrap();
    assert_eq!(ch.to_vec(), bytes);
    assert_eq!(ch.supported_versions(), None);
    assert_eq!(ch.legacy_cookie, vec![0xc0; 20]);
    assert_eq!(ch.legacy_session_id.0, vec![1; 32]);
    assert_eq!(ch.check_dtls13_legacy_fields(), Err(AlertDescription::IllegalParameter));
    assert_eq!(ch.connection_id(), Some(&[][..]));
    assert!(ch.find_extension(ExtensionType::ExtendedMasterSecret).is_some());
    assert!(matches!(ch.find_extension(ExtensionType::EcPointFormats), Some(ClientExtension13::Unknown(_))));
}
