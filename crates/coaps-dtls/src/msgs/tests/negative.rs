//! Malformed input is refused with an error.
use super::vectors::*;
use super::*;
use InvalidMessage::*;

/// Offset just past compression_methods of an encoded ClientHello: the only place a hello may
/// legally end early, because the extensions block is optional (RFC 5246 §7.4.1.2).
fn client_hello_ext_offset(b: &[u8]) -> usize {
    let mut at = 2 + 32;
    at += 1 + usize::from(b[at]); // session_id
    at += 1 + usize::from(b[at]); // cookie
    at += 2 + usize::from(u16::from_be_bytes([b[at], b[at + 1]])); // cipher_suites
    at + 1 + usize::from(b[at]) // compression_methods
}

fn server_hello_ext_offset(b: &[u8]) -> usize {
    let at = 2 + 32;
    at + 1 + usize::from(b[at]) + 2 + 1
}

#[test]
fn every_client_hello_truncation_fails() {
    let hellos = [hex(CH_PSK), hex(CH_ECDSA), hex(PSK_CH2), hex(ECDSA_CH2), full_client_hello().to_vec()];
    for full in hellos {
        let whole = ClientHello::read_exact(&full).unwrap();
        let ext_at = client_hello_ext_offset(&full);
        for n in 0..full.len() {
            let r = ClientHello::read_exact(&full[..n]);
            if n == ext_at {
                // Without its extensions block this is the same hello minus extensions.
                let mut expect = whole.clone();
                expect.extensions.clear();
                assert_eq!(r, Ok(expect));
            } else {
                assert!(matches!(r, Err(Truncated(_))), "prefix {n} of {}: {r:?}", full.len());
            }
        }
    }
}

#[test]
fn every_server_hello_truncation_fails() {
    let hellos = [hex(PSK_SH), hex(ECDSA_SH), hex(ECDHE_PSK_SH), full_server_hello().to_vec()];
    for full in hellos {
        let whole = ServerHello::read_exact(&full).unwrap();
        let ext_at = server_hello_ext_offset(&full);
        for n in 0..full.len() {
            let r = ServerHello::read_exact(&full[..n]);
            if n == ext_at {
                let mut expect = whole.clone();
                expect.extensions.clear();
                assert_eq!(r, Ok(expect));
            } else {
                assert!(matches!(r, Err(Truncated(_))), "prefix {n} of {}: {r:?}", full.len());
            }
        }
    }
}

/// Encodings of every other message, each with the decoder that accepts it.
fn other_messages() -> Vec<(Vec<u8>, Decoder)> {
    use KeyExchangeAlgorithm as K;
    vec![
        (hex(PSK_HVR), check::<HelloVerifyRequest>),
        (hex(PSK_NST), check::<NewSessionTicket>),
        (hex(ECDSA_CV), check::<DigitallySigned>),
        (hex(ECDSA_CERT_REQ), check::<CertificateRequest>),
        (hex(ECDSA_SERVER_CERT), |b| check_cert(b, CertificateType::X509)),
        (Certificate::RawPublicKey(vec![1; 40]).to_vec(), |b| check_cert(b, CertificateType::RawPublicKey)),
        (hex(ECDSA_SKE), |b| check_ske(b, K::EcdheEcdsa)),
        (hex(ECDHE_PSK_SKE), |b| check_ske(b, K::EcdhePsk)),
        (ServerKeyExchange::Psk { hint: b"h".to_vec() }.to_vec(), |b| check_ske(b, K::Psk)),
        (hex(PSK_CKE), |b| check_cke(b, K::Psk)),
        (hex(ECDHE_PSK_CKE), |b| check_cke(b, K::EcdhePsk)),
        (hex(ECDSA_CKE), |b| check_cke(b, K::EcdheEcdsa)),
        (ecdh_params().to_vec(), check::<ServerEcdhParams>),
        (all_client_extensions().to_vec(), check::<Vec<ClientExtension>>),
        (all_server_extensions().to_vec(), check::<Vec<ServerExtension>>),
    ]
}

#[test]
fn every_truncation_of_other_messages_fails() {
    for (full, decode) in other_messages() {
        assert_eq!(decode(&full), Ok(()));
        for n in 0..full.len() {
            assert!(decode(&full[..n]).is_err(), "prefix {n} of {full:02x?} decoded");
        }
    }
}

#[test]
fn trailing_bytes_fail() {
    let mut all = other_messages();
    for h in [CH_PSK, CH_ECDSA, PSK_CH2] {
        all.push((hex(h), check::<ClientHello>));
    }
    for h in [PSK_SH, ECDSA_SH] {
        all.push((hex(h), check::<ServerHello>));
    }
    for (mut full, decode) in all {
        full.push(0);
        assert!(decode(&full).is_err(), "{full:02x?} with a trailing byte decoded");
    }
    // After an extensions block the error is specifically TrailingData.
    let mut ch = hex(CH_PSK);
    ch.push(0);
    assert!(matches!(ClientHello::read_exact(&ch), Err(TrailingData(_))));
}

/// Builds a ClientHello body from raw fields (each slice already includes its length prefix).
fn raw_ch(session_id: &[u8], cookie: &[u8], suites: &[u8], comp: &[u8], ext: &[u8]) -> Vec<u8> {
    let mut b = vec![0xfe, 0xfd];
    b.extend([0u8; 32]);
    for part in [session_id, cookie, suites, comp, ext] {
        b.extend_from_slice(part);
    }
    b
}

const SUITES: &[u8] = &[0, 2, 0xcc, 0xab];
const COMP: &[u8] = &[1, 0];

#[test]
fn client_hello_field_bounds() {
    let ch = |sid: &[u8], cookie: &[u8], suites: &[u8], comp: &[u8]| {
        ClientHello::read_exact(&raw_ch(sid, cookie, suites, comp, &[]))
    };
    assert!(ch(&[0], &[0], SUITES, COMP).is_ok());

    // session_id: ≤ 32 bytes.
    let mut sid = vec![32];
    sid.extend([1; 32]);
    assert!(ch(&sid, &[0], SUITES, COMP).is_ok());
    let mut sid = vec![33];
    sid.extend([1; 33]);
    assert!(matches!(ch(&sid, &[0], SUITES, COMP), Err(IllegalValue(_))));

    // cookie up to 255 bytes is fine.
    let mut cookie = vec![255];
    cookie.extend([9; 255]);
    assert_eq!(ch(&[0], &cookie, SUITES, COMP).unwrap().cookie.len(), 255);

    // cipher_suites: even length, at least one suite.
    assert!(matches!(ch(&[0], &[0], &[0, 3, 0xcc, 0xab, 0], COMP), Err(IllegalValue(_))));
    assert!(matches!(ch(&[0], &[0], &[0, 1, 0xcc], COMP), Err(IllegalValue(_))));
    assert!(matches!(ch(&[0], &[0], &[0, 0], COMP), Err(IllegalValue(_))));

    // compression_methods: at least one.
    assert!(matches!(ch(&[0], &[0], SUITES, &[0]), Err(IllegalValue(_))));
}

#[test]
fn server_hello_session_id_bound() {
    let mut sh = full_server_hello();
    sh.extensions.clear();
    sh.session_id = SessionId(vec![1; 32]);
    let mut bytes = sh.to_vec();
    assert!(ServerHello::read_exact(&bytes).is_ok());
    // Claim 33 bytes of session_id; the extra byte comes from the following fields.
    bytes[34] = 33;
    assert!(matches!(ServerHello::read_exact(&bytes), Err(IllegalValue(_))));
}

fn ext_block(exts: &[&[u8]]) -> Vec<u8> {
    let body: Vec<u8> = exts.concat();
    let mut b = (body.len() as u16).to_be_bytes().to_vec();
    b.extend(body);
    b
}

#[test]
fn duplicate_extensions_fail() {
    let ems: &[u8] = &[0, 23, 0, 0];
    let unknown: &[u8] = &[0x44, 0x44, 0, 1, 7];
    let ch = |exts: &[&[u8]]| ClientHello::read_exact(&raw_ch(&[0], &[0], SUITES, COMP, &ext_block(exts)));
    assert!(ch(&[ems, unknown]).is_ok());
    assert!(matches!(ch(&[ems, unknown, ems]), Err(IllegalValue(_))));
    assert!(matches!(ch(&[unknown, ems, unknown]), Err(IllegalValue(_))));

    let mut sh = full_server_hello();
    sh.extensions = vec![ServerExtension::ExtendedMasterSecret, ServerExtension::ExtendedMasterSecret];
    assert!(matches!(ServerHello::read_exact(&sh.to_vec()), Err(IllegalValue(_))));
    sh.extensions = vec![
        ServerExtension::ServerCertificateType(CertificateType::X509),
        ServerExtension::ServerCertificateType(CertificateType::RawPublicKey),
    ];
    assert!(matches!(ServerHello::read_exact(&sh.to_vec()), Err(IllegalValue(_))));
}

#[test]
fn many_duplicate_extensions_are_refused_quickly() {
    // 16 383 copies of an empty unknown extension fill a maximal block.
    let one: &[u8] = &[0x44, 0x44, 0, 0];
    let block = ext_block(&vec![one; 16_383]);
    assert!(matches!(Vec::<ClientExtension>::read_exact(&block), Err(IllegalValue(_))));
    assert!(matches!(Vec::<ServerExtension>::read_exact(&block), Err(IllegalValue(_))));
}

#[test]
fn malformed_client_extension_data() {
    let bad: &[(&[u8], &str)] = &[
        (&[0, 23, 0, 1, 0], "extended_master_secret with data"),
        (&[0, 0, 0, 2, 0, 0], "empty ServerNameList"),
        (&[0, 0, 0, 5, 0, 3, 0, 0, 0], "empty HostName"),
        (&[0, 0, 0, 6, 0, 5, 0, 0, 1, b'a'], "ServerNameList overruns"),
        (&[0, 0, 0, 6, 0, 4, 0, 0, 2, b'a'], "HostName overruns"),
        (&[0, 0, 0, 7, 0, 4, 0, 0, 1, b'a', 9], "data after ServerNameList"),
        (&[0, 0, 0, 10, 0, 8, 0, 0, 1, b'a', 0, 0, 1, b'b'], "two host_names"),
        (&[0, 10, 0, 2, 0, 0], "empty supported_groups"),
        (&[0, 10, 0, 3, 0, 1, 0], "odd supported_groups"),
        (&[0, 10, 0, 0], "supported_groups without its list"),
        (&[0, 11, 0, 1, 0], "empty ec_point_formats"),
        (&[0, 13, 0, 2, 0, 0], "empty signature_algorithms"),
        (&[0, 13, 0, 5, 0, 3, 4, 3, 4], "odd signature_algorithms"),
        (&[0xff, 1, 0, 0], "renegotiation_info without its length"),
        (&[0xff, 1, 0, 2, 0, 0], "data after renegotiated_connection"),
        (&[0xff, 1, 0, 2, 5, 0], "renegotiated_connection overruns"),
        (&[0, 19, 0, 1, 0], "empty client_certificate_types"),
        (&[0, 20, 0, 1, 0], "empty server_certificate_types"),
        (&[0, 20, 0, 2, 2, 0], "server_certificate_types overruns"),
        (&[0, 20, 0, 1], "extension_data overruns"),
        (&[0, 54, 0, 0], "connection_id without its length"),
        (&[0, 54, 0, 2, 3, 1], "cid overruns"),
        (&[0, 54, 0, 2, 0, 0], "data after cid"),
        (&[0, 61, 0, 1, 0], "rrc with data"),
        (&[0, 61, 0, 2, 0], "rrc data overruns"),
    ];
    for (wire, why) in bad {
        assert!(ClientExtension::read_exact(wire).is_err(), "{why} decoded");
        assert!(Vec::<ClientExtension>::read_exact(&ext_block(&[wire])).is_err(), "{why} decoded in a block");
    }
    // Known-good counterparts, so the table above fails for the stated reason.
    assert!(ClientExtension::read_exact(&[0, 0, 0, 6, 0, 4, 0, 0, 1, b'a']).is_ok());
    assert!(ClientExtension::read_exact(&[0, 0, 0, 5, 0, 3, 9, 0, 0]).is_ok()); // unknown name_type may be empty
    assert!(ClientExtension::read_exact(&[0, 35, 0, 0]).is_ok());
    assert!(ClientExtension::read_exact(&[0xff, 1, 0, 1, 0]).is_ok());
    // RFC 9146 §3: an empty CID is legal ("send mine, I want none").
    assert_eq!(ClientExtension::read_exact(&[0, 54, 0, 1, 0]), Ok(ClientExtension::ConnectionId(vec![])));
    assert_eq!(ClientExtension::read_exact(&[0, 54, 0, 2, 1, 7]), Ok(ClientExtension::ConnectionId(vec![7])));
    // RFC 9853 §3: rrc's extension_data is empty.
    assert_eq!(ClientExtension::read_exact(&[0, 61, 0, 0]), Ok(ClientExtension::Rrc));
}

#[test]
fn malformed_server_extension_data() {
    let bad: &[(&[u8], &str)] = &[
        (&[0, 0, 0, 1, 0], "server_name ack with data"),
        (&[0, 35, 0, 1, 0], "session_ticket ack with data"),
        (&[0, 23, 0, 1, 0], "extended_master_secret with data"),
        (&[0, 11, 0, 1, 0], "empty ec_point_formats"),
        (&[0, 19, 0, 0], "client_certificate_type without its byte"),
        (&[0, 20, 0, 2, 1, 2], "server_certificate_type as a list"),
        (&[0xff, 1, 0, 2, 0, 0], "data after renegotiated_connection"),
        (&[0, 54, 0, 0], "connection_id without its length"),
        (&[0, 54, 0, 3, 3, 1, 2], "cid overruns"),
        (&[0, 54, 0, 3, 1, 1, 2], "data after cid"),
        (&[0, 61, 0, 1, 0], "rrc with data"),
    ];
    for (wire, why) in bad {
        assert!(ServerExtension::read_exact(wire).is_err(), "{why} decoded");
    }
    assert_eq!(ServerExtension::read_exact(&[0, 54, 0, 3, 2, 1, 2]), Ok(ServerExtension::ConnectionId(vec![1, 2])));
    assert_eq!(ServerExtension::read_exact(&[0, 61, 0, 0]), Ok(ServerExtension::Rrc));
    assert_eq!(
        ServerExtension::read_exact(&[0, 20, 0, 1, 2]),
        Ok(ServerExtension::ServerCertificateType(CertificateType::RawPublicKey))
    );
    // Extensions a server has no business sending are kept for the state machine to refuse.
    assert_eq!(
        ServerExtension::read_exact(&[0, 10, 0, 4, 0, 2, 0, 23]),
        Ok(ServerExtension::Unknown { typ: ExtensionType::SupportedGroups, data: vec![0, 2, 0, 23] })
    );
}

#[test]
fn malformed_certificates() {
    let x = |b: &[u8]| Certificate::read_exact_with(b, CertificateType::X509);
    let rpk = |b: &[u8]| Certificate::read_exact_with(b, CertificateType::RawPublicKey);
    assert!(matches!(x(&[0, 0, 3, 0, 0, 0]), Err(IllegalValue(_))), "empty ASN.1Cert");
    assert!(matches!(x(&[0, 0, 4, 0, 0, 2, 1]), Err(Truncated(_))), "cert overruns list");
    assert!(matches!(x(&[0, 0, 5, 0, 0, 1, 1, 0]), Err(Truncated(_))), "junk after a cert");
    assert!(matches!(x(&[0xff, 0xff, 0xff]), Err(Truncated(_))), "huge declared length");
    assert!(matches!(rpk(&[0, 0, 0]), Err(IllegalValue(_))), "empty SubjectPublicKeyInfo");
    assert!(matches!(Certificate::read_exact_with(&[0, 0, 0], CertificateType::Unknown(1)), Err(IllegalValue(_))));
}

#[test]
fn malformed_key_exchange() {
    use KeyExchangeAlgorithm as K;
    // ServerECDHParams: explicit curves are not readable, the point is <1..2^8-1>.
    assert!(matches!(ServerEcdhParams::read_exact(&[1, 0, 23, 1, 4]), Err(IllegalValue(_))));
    assert!(matches!(ServerEcdhParams::read_exact(&[3, 0, 23, 0]), Err(IllegalValue(_))));
    assert!(ServerEcdhParams::read_exact(&[3, 0, 23, 1, 4]).is_ok());
    assert!(matches!(ServerKeyExchange::read_exact_with(&[0, 0, 3, 0, 29, 0], K::EcdhePsk), Err(IllegalValue(_))));
    // ecdh_Yc is <1..2^8-1>.
    assert!(matches!(ClientKeyExchange::read_exact_with(&[0], K::EcdheEcdsa), Err(IllegalValue(_))));
    assert!(matches!(ClientKeyExchange::read_exact_with(&[0, 1, b'i', 0], K::EcdhePsk), Err(IllegalValue(_))));
    // The ECDHE_ECDSA form needs its signature.
    assert!(matches!(ServerKeyExchange::read_exact_with(&ecdh_params().to_vec(), K::EcdheEcdsa), Err(Truncated(_))));
}

#[test]
fn malformed_certificate_request() {
    let cr = |b: &[u8]| CertificateRequest::read_exact(b);
    assert!(cr(&[1, 64, 0, 2, 4, 3, 0, 0]).is_ok());
    assert!(matches!(cr(&[0, 0, 2, 4, 3, 0, 0]), Err(IllegalValue(_))), "no certificate_types");
    assert!(matches!(cr(&[1, 64, 0, 0, 0, 0]), Err(IllegalValue(_))), "no signature algorithms");
    assert!(matches!(cr(&[1, 64, 0, 3, 4, 3, 4, 0, 0]), Err(IllegalValue(_))), "odd signature algorithms");
    assert!(matches!(cr(&[1, 64, 0, 2, 4, 3, 0, 2, 0, 0]), Err(IllegalValue(_))), "empty DN");
    assert!(matches!(cr(&[1, 64, 0, 2, 4, 3, 0, 3, 0, 2, 0x30]), Err(Truncated(_))), "DN overruns");
}
