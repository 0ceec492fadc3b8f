//! Malformed input is refused with the right error: every truncation, trailing bytes, repeated
//! extensions, pre_shared_key not last, extensions in messages that do not allow them, and the
//! RFC bounds of each field.
use super::vectors::*;
use super::*;

/// Every proper prefix of `bytes` fails to decode with `decode`, except `allowed` (the cut
/// right before a hello's optional extensions block), and so does one more byte.
fn all_truncations_fail(
    name: &str,
    bytes: &[u8],
    allowed: Option<usize>,
    decode: impl Fn(&[u8]) -> Result<(), InvalidMessage>,
) {
    assert!(decode(bytes).is_ok(), "{name}: the full message must decode");
    for n in 0..bytes.len() {
        if Some(n) != allowed {
            assert!(decode(&bytes[..n]).is_err(), "{name}: prefix of {n}/{} bytes decoded", bytes.len());
        }
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert!(decode(&longer).is_err(), "{name}: a trailing byte was accepted");
}

/// Where a ClientHello's extensions block starts.
fn ch_fixed_len(bytes: &[u8]) -> usize {
    let mut ch = ClientHello13::read_exact(bytes).unwrap();
    ch.extensions.clear();
    ch.to_vec().len() - 2
}

#[test]
fn every_truncation_fails() {
    let cert = full_certificate().to_vec();
    let rpk = rpk_certificate().to_vec();
    let fin = vec![0x42; 32];
    // legacy_version, random, empty session id, suite, compression.
    let sh_fixed = Some(2 + 32 + 1 + 2 + 1);
    let hellos: Vec<(&str, Vec<u8>, Decoder)> = vec![
        ("ClientHello13", full_client_hello().to_vec(), check::<ClientHello13>),
        ("wolfSSL CH1", hex(WOLF_CERT_CH1), check::<ClientHello13>),
        ("wolfSSL PSK CH2", hex(WOLF_PSK_CH2), check_ch_binders),
    ];
    for (name, bytes, decode) in &hellos {
        all_truncations_fail(name, bytes, Some(ch_fixed_len(bytes)), decode);
    }
    let cases: Vec<(&str, Vec<u8>, Option<usize>, Decoder)> = vec![
        ("ServerHello13", full_server_hello().to_vec(), sh_fixed, check::<ServerHelloMessage13>),
        ("wolfSSL SH", hex(WOLF_CERT_SH), sh_fixed, check::<ServerHelloMessage13>),
        ("HelloRetryRequest13", full_hrr().to_vec(), sh_fixed, check::<ServerHelloMessage13>),
        ("wolfSSL HRR", hex(WOLF_PSK_HRR), sh_fixed, check::<HelloRetryRequest13>),
        ("EncryptedExtensions13", full_encrypted_extensions().to_vec(), None, check::<EncryptedExtensions13>),
        ("CertificateRequest13", full_certificate_request().to_vec(), None, check::<CertificateRequest13>),
        ("NewSessionTicket13", full_new_session_ticket().to_vec(), None, check::<NewSessionTicket13>),
        ("Ack", full_ack().to_vec(), None, check::<Ack>),
        (
            "NewConnectionId",
            NewConnectionId { cids: vec![vec![1], vec![2, 3]], usage: ConnectionIdUsage::CidImmediate }.to_vec(),
            None,
            check::<NewConnectionId>,
        ),
        ("KeyUpdate", vec![1], None, check::<KeyUpdate>),
        ("RequestConnectionId", vec![3], None, check::<RequestConnectionId>),
        (
            "CertificateVerify13",
            CertificateVerify13 { algorithm: SignatureScheme::EcdsaSecp256r1Sha256, signature: vec![1; 70] }.to_vec(),
            None,
            check::<CertificateVerify13>,
        ),
        ("Finished13", fin, None, |b| check_finished(b, 32)),
    ];
    for (name, bytes, allowed, decode) in &cases {
        all_truncations_fail(name, bytes, *allowed, decode);
    }
    all_truncations_fail("Certificate13/X509", &cert, None, |b| check_cert(b, CertificateType::X509));
    all_truncations_fail("Certificate13/RPK", &rpk, None, |b| check_cert(b, CertificateType::RawPublicKey));
    // peek_selected_version too (the ServerHello carries supported_versions).
    let sh = full_server_hello().to_vec();
    for n in (0..sh.len()).filter(|&n| Some(n) != sh_fixed) {
        assert!(ServerHelloMessage13::peek_selected_version(&sh[..n]).is_err(), "peek, prefix {n}");
    }
}

#[test]
fn hello_prefix_at_extensions_boundary() {
    // "every truncation fails" holds for the hellos except the cut right before the
    // extensions block, which is how a DTLS 1.2 hello without extensions looks.
    for bytes in [full_server_hello().to_vec(), full_hrr().to_vec()] {
        let fixed = 2 + 32 + 1 + 2 + 1;
        let m = ServerHelloMessage13::read_exact(&bytes[..fixed]).unwrap();
        match m {
            ServerHelloMessage13::ServerHello(sh) => assert!(sh.extensions.is_empty()),
            ServerHelloMessage13::HelloRetryRequest(hrr) => assert!(hrr.extensions.is_empty()),
        }
        assert_eq!(ServerHelloMessage13::peek_selected_version(&bytes[..fixed]), Ok(None));
    }
}

#[test]
fn duplicate_extensions_refused() {
    let dup = InvalidMessage::IllegalValue("duplicate extension");
    let mut ch = full_client_hello();
    ch.extensions.insert(0, ClientExtension13::EarlyData);
    assert_eq!(ClientHello13::read_exact(&ch.to_vec()), Err(dup));
    let mut ch = full_client_hello();
    ch.extensions
        .insert(3, ClientExtension13::Unknown(RawExtension { typ: ExtensionType::Unknown(0x1a1a), data: vec![] }));
    assert_eq!(ClientHello13::read_exact(&ch.to_vec()), Err(dup));

    let mut sh = full_server_hello();
    sh.extensions.push(ServerHelloExtension13::SupportedVersions(ProtocolVersion::DTLS1_2));
    assert_eq!(ServerHelloMessage13::read_exact(&sh.to_vec()), Err(dup));
    assert_eq!(ServerHelloMessage13::peek_selected_version(&sh.to_vec()), Err(dup));
    let mut hrr = full_hrr();
    hrr.extensions.push(HelloRetryExtension13::Cookie(vec![1]));
    assert_eq!(ServerHelloMessage13::read_exact(&hrr.to_vec()), Err(dup));
    let mut ee = full_encrypted_extensions();
    ee.extensions.push(EncryptedExtension13::ServerName);
    assert_eq!(EncryptedExtensions13::read_exact(&ee.to_vec()), Err(dup));
    let mut cr = full_certificate_request();
    cr.extensions.push(CertificateRequestExtension13::SignatureAlgorithms(vec![SignatureScheme::EcdsaSecp256r1Sha256]));
    assert_eq!(CertificateRequest13::read_exact(&cr.to_vec()), Err(dup));
    let mut nst = full_new_session_ticket();
    nst.extensions.push(NewSessionTicketExtension13::EarlyData(0));
    assert_eq!(NewSessionTicket13::read_exact(&nst.to_vec()), Err(dup));
    let mut cert = full_certificate();
    cert.certificate_list[0].extensions.push(RawExtension { typ: ExtensionType::Unknown(5), data: vec![] });
    assert_eq!(Certificate13::read_exact_with(&cert.to_vec(), CertificateType::X509), Err(dup));
}

#[test]
fn pre_shared_key_must_be_last() {
    let psk_not_last = InvalidMessage::IllegalValue(REASON_PSK_NOT_LAST);
    let mut ch = full_client_hello();
    let psk = ch.extensions.pop().unwrap();
    ch.extensions.insert(0, psk.clone());
    assert_eq!(ClientHello13::read_exact(&ch.to_vec()), Err(psk_not_last));
    let mut ch = full_client_hello();
    let n = ch.extensions.len();
    ch.extensions.swap(n - 1, n - 2);
    assert_eq!(ClientHello13::read_with_binders_offset(&ch.to_vec()).map(|_| ()), Err(psk_not_last));
    assert_eq!(alert_for(&psk_not_last), AlertDescription::IllegalParameter);
    // The only extension: last.
    let mut ch = full_client_hello();
    ch.extensions = vec![psk];
    assert!(ClientHello13::read_with_binders_offset(&ch.to_vec()).unwrap().1.is_some());
    // In ServerHello it may be anywhere (RFC 8446 §4.2).
    let mut sh = full_server_hello();
    sh.extensions.rotate_left(2);
    assert!(ServerHello13::read_exact(&sh.to_vec()).is_ok());
}

#[test]
fn recognised_extensions_outside_their_messages_refused() {
    let not_allowed = Err(InvalidMessage::IllegalValue(REASON_EXTENSION_NOT_ALLOWED));
    let raw = |t: ExtensionType, data: Vec<u8>| RawExtension { typ: t, data };
    // ServerHello: not cookie, early_data, server_name, signature_algorithms, ...
    for t in
        [ExtensionType::Cookie, ExtensionType::EarlyData, ExtensionType::ServerName, ExtensionType::SignatureAlgorithms]
    {
        let mut sh = full_server_hello();
        sh.extensions.push(ServerHelloExtension13::Unknown(raw(t, vec![])));
        assert_eq!(ServerHello13::read_exact(&sh.to_vec()).map(|_| ()), not_allowed, "{t:?} in ServerHello");
    }
    // HelloRetryRequest: not pre_shared_key nor connection_id.
    for t in [ExtensionType::PreSharedKey, ExtensionType::ConnectionId] {
        let mut hrr = full_hrr();
        hrr.extensions.push(HelloRetryExtension13::Unknown(raw(t, vec![0, 0])));
        assert_eq!(HelloRetryRequest13::read_exact(&hrr.to_vec()).map(|_| ()), not_allowed, "{t:?} in HRR");
    }
    // EncryptedExtensions: not key_share, supported_versions, pre_shared_key, cookie.
    for t in
        [ExtensionType::KeyShare, ExtensionType::SupportedVersions, ExtensionType::PreSharedKey, ExtensionType::Cookie]
    {
        let ee = EncryptedExtensions13 { extensions: vec![EncryptedExtension13::Unknown(raw(t, vec![0, 1]))] };
        assert_eq!(EncryptedExtensions13::read_exact(&ee.to_vec()).map(|_| ()), not_allowed, "{t:?} in EE");
    }
    // CertificateRequest: not supported_groups; server_name passes (RFC 9261).
    let cr = CertificateRequest13 {
        certificate_request_context: vec![],
        extensions: vec![CertificateRequestExtension13::Unknown(raw(
            ExtensionType::SupportedGroups,
            vec![0, 2, 0, 23],
        ))],
    };
    assert_eq!(CertificateRequest13::read_exact(&cr.to_vec()).map(|_| ()), not_allowed);
    // Certificate entries: none of the recognised ones.
    let mut cert = rpk_certificate();
    cert.certificate_list[0].extensions.push(raw(ExtensionType::SignatureAlgorithms, vec![0, 2, 4, 3]));
    assert_eq!(Certificate13::read_exact_with(&cert.to_vec(), CertificateType::RawPublicKey).map(|_| ()), not_allowed);
    // NewSessionTicket: only early_data.
    let mut nst = full_new_session_ticket();
    nst.extensions.push(NewSessionTicketExtension13::Unknown(raw(ExtensionType::KeyShare, vec![])));
    assert_eq!(NewSessionTicket13::read_exact(&nst.to_vec()).map(|_| ()), not_allowed);
    assert_eq!(
        alert_for(&InvalidMessage::IllegalValue(REASON_EXTENSION_NOT_ALLOWED)),
        AlertDescription::IllegalParameter
    );
}

/// Builds a ClientHello whose only extension is `typ` with `data`, and decodes it.
fn ch_with(typ: u16, data: &[u8]) -> Result<ClientHello13, InvalidMessage> {
    let mut ch = full_client_hello();
    ch.extensions =
        vec![ClientExtension13::Unknown(RawExtension { typ: ExtensionType::Unknown(0xabcd), data: vec![] })];
    let mut bytes = ch.to_vec();
    // Replace the placeholder extension block (the last 6 bytes) and fix the block length.
    bytes.truncate(bytes.len() - 6);
    let mut block = Vec::new();
    put_u16(&mut block, typ);
    put_u16(&mut block, data.len() as u16);
    block.extend_from_slice(data);
    put_u16(&mut bytes, block.len() as u16);
    bytes.extend_from_slice(&block);
    ClientHello13::read_exact(&bytes)
}

#[test]
fn client_extension_bounds() {
    // The helper itself: a well-formed extension decodes.
    assert_eq!(ch_with(44, &[0, 1, 9]).unwrap().cookie(), Some(&[9][..]));
    let bad: &[(u16, &[u8], &str)] = &[
        (43, &[0], "supported_versions empty"),
        (43, &[3, 0xfe, 0xfc, 0xfe], "supported_versions odd"),
        (43, &[2, 0xfe, 0xfc, 0], "supported_versions trailing"),
        (51, &[0, 4, 0, 23, 0, 0], "key_exchange empty"),
        (51, &[0, 10, 0, 23, 0, 1, 4, 0, 23, 0, 1, 4], "key_share duplicate group"),
        (51, &[0, 6, 0, 23, 0, 1, 4], "key_share list longer than the data"),
        (45, &[0], "ke_modes empty"),
        (42, &[0], "early_data not empty"),
        (44, &[0, 0], "cookie empty"),
        (44, &[0, 2, 1], "cookie truncated"),
        (10, &[0, 0], "supported_groups empty"),
        (10, &[0, 3, 0, 23, 0], "supported_groups odd"),
        (13, &[0, 0], "signature_algorithms empty"),
        (50, &[0, 1, 4], "signature_algorithms_cert odd"),
        (47, &[0, 0], "certificate_authorities empty"),
        (47, &[0, 2, 0, 0], "empty DistinguishedName"),
        (54, &[2, 1], "cid truncated"),
        (54, &[0, 0], "cid trailing"),
        (0, &[0, 0], "server_name empty list"),
        (0, &[0, 3, 0, 0, 0], "empty host_name"),
        (19, &[0], "client_certificate_types empty"),
        (23, &[0], "extended_master_secret not empty"),
        (0xff01, &[], "renegotiation_info missing its length"),
    ];
    for (typ, data, what) in bad {
        assert!(ch_with(*typ, data).is_err(), "{what} accepted");
    }
    assert_eq!(
        ch_with(51, &[0, 10, 0, 23, 0, 1, 4, 0, 23, 0, 1, 4]).map(|_| ()),
        Err(InvalidMessage::IllegalValue(REASON_DUPLICATE_KEY_SHARE))
    );
    // An empty client_shares asks for an HRR and is legal; so is an empty cid.
    assert_eq!(ch_with(51, &[0, 0]).unwrap().key_shares(), Some(&[][..]));
    assert_eq!(ch_with(54, &[0]).unwrap().connection_id(), Some(&[][..]));
}

/// OfferedPsks bytes from identities (identity, age) and binder lengths.
fn psk_bytes(ids: &[(&[u8], u32)], binders: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    put_len_prefixed(&mut out, LenPrefix::U16, |o| {
        for (id, age) in ids {
            put_u16(o, id.len() as u16);
            o.extend_from_slice(id);
            put_u32(o, *age);
        }
    });
    put_len_prefixed(&mut out, LenPrefix::U16, |o| {
        for &n in binders {
            o.push(n as u8);
            o.extend(std::iter::repeat_n(0xb0, n));
        }
    });
    out
}

#[test]
fn offered_psks_bounds() {
    assert!(OfferedPsks::read_exact(&psk_bytes(&[(b"id", 1)], &[32])).is_ok());
    assert!(OfferedPsks::read_exact(&psk_bytes(&[(b"id", 1)], &[255])).is_ok());
    assert!(OfferedPsks::read_exact(&psk_bytes(&[(b"id", 1)], &[31])).is_err(), "binder < 32");
    assert!(OfferedPsks::read_exact(&psk_bytes(&[(b"", 1)], &[32])).is_err(), "empty identity");
    assert!(OfferedPsks::read_exact(&psk_bytes(&[], &[])).is_err(), "no identities");
    assert_eq!(
        OfferedPsks::read_exact(&psk_bytes(&[(b"a", 1), (b"b", 2)], &[32])),
        Err(InvalidMessage::IllegalValue(REASON_PSK_BINDER_COUNT))
    );
    assert_eq!(
        OfferedPsks::read_exact(&psk_bytes(&[(b"a", 1)], &[32, 32])),
        Err(InvalidMessage::IllegalValue(REASON_PSK_BINDER_COUNT))
    );
    assert_eq!(alert_for(&InvalidMessage::IllegalValue(REASON_PSK_BINDER_COUNT)), AlertDescription::IllegalParameter);
}

#[test]
fn server_side_bounds() {
    // ServerHello.random equal to the HRR value is refused by ServerHello13 and vice versa.
    let mut hrr_as_sh = full_server_hello();
    hrr_as_sh.random = Random(HELLO_RETRY_REQUEST_RANDOM);
    assert!(ServerHello13::read_exact(&hrr_as_sh.to_vec()).is_err());
    // Read as an HRR, whose key_share is a bare group: the ServerHello key_share is refused.
    assert!(ServerHelloMessage13::read_exact(&hrr_as_sh.to_vec()).is_err());
    assert!(HelloRetryRequest13::read_exact(&full_server_hello().to_vec()).is_err());
    // supported_versions in a ServerHello is exactly one version.
    let mut sh = full_server_hello();
    sh.extensions =
        vec![ServerHelloExtension13::Unknown(RawExtension { typ: ExtensionType::Unknown(0x1a1a), data: vec![] })];
    let mut bytes = sh.to_vec();
    let n = bytes.len();
    bytes[n - 4..n - 2].copy_from_slice(&[0, 43]);
    assert!(ServerHello13::read_exact(&bytes).is_err(), "empty selected_version");
    assert!(ServerHelloMessage13::peek_selected_version(&bytes).is_err());
    // HRR cookie must not be empty; key_share is a bare group (two bytes).
    let mut hrr = full_hrr();
    hrr.extensions = vec![HelloRetryExtension13::Cookie(vec![])];
    assert!(HelloRetryRequest13::read_exact(&hrr.to_vec()).is_err());
    hrr.extensions = vec![HelloRetryExtension13::Unknown(RawExtension {
        typ: ExtensionType::Unknown(0x1a1a),
        data: vec![0, 23, 0],
    })];
    let mut bytes = hrr.to_vec();
    let n = bytes.len();
    bytes[n - 7..n - 5].copy_from_slice(&[0, 51]);
    assert!(HelloRetryRequest13::read_exact(&bytes).is_err(), "key_share with trailing data");
    // EncryptedExtensions early_data must be empty; certificate types are single bytes.
    let ee = EncryptedExtensions13 {
        extensions: vec![EncryptedExtension13::Unknown(RawExtension {
            typ: ExtensionType::Unknown(0x1a1a),
            data: vec![1, 2, 3, 4],
        })],
    };
    let mut bytes = ee.to_vec();
    bytes[2..4].copy_from_slice(&[0, 42]);
    assert!(EncryptedExtensions13::read_exact(&bytes).is_err());
    bytes[2..4].copy_from_slice(&[0, 20]);
    assert!(EncryptedExtensions13::read_exact(&bytes).is_err());
}

#[test]
fn authentication_and_post_handshake_bounds() {
    // RawPublicKey: at most one entry; an unknown certificate type has no layout.
    let mut two = rpk_certificate();
    two.certificate_list.push(two.certificate_list[0].clone());
    assert!(Certificate13::read_exact_with(&two.to_vec(), CertificateType::X509).is_ok());
    assert!(Certificate13::read_exact_with(&two.to_vec(), CertificateType::RawPublicKey).is_err());
    assert!(Certificate13::read_exact_with(&rpk_certificate().to_vec(), CertificateType::Unknown(1)).is_err());
    // Empty cert_data.
    let mut empty = rpk_certificate();
    empty.certificate_list[0].data.clear();
    assert!(Certificate13::read_exact_with(&empty.to_vec(), CertificateType::X509).is_err());
    // NewSessionTicket: empty ticket refused, early_data is exactly a u32.
    let mut nst = full_new_session_ticket();
    nst.ticket.clear();
    assert!(NewSessionTicket13::read_exact(&nst.to_vec()).is_err());
    let nst = NewSessionTicket13 {
        ticket_lifetime: 0,
        ticket_age_add: 0,
        ticket_nonce: vec![],
        ticket: vec![1],
        extensions: vec![NewSessionTicketExtension13::Unknown(RawExtension {
            typ: ExtensionType::Unknown(0x1a1a),
            data: vec![0, 0, 1],
        })],
    };
    let mut bytes = nst.to_vec();
    let n = bytes.len();
    bytes[n - 7..n - 5].copy_from_slice(&[0, 42]);
    assert!(NewSessionTicket13::read_exact(&bytes).is_err());
    // ACK: a whole number of 16-byte record numbers.
    assert!(Ack::read_exact(&[0, 15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    assert!(Ack::read_exact(&[0, 1, 0]).is_err());
    // Finished: exactly the hash length.
    assert!(Finished13::read_exact_with(&[0; 33], 32).is_err());
}

#[test]
fn alert_mapping() {
    assert_eq!(alert_for(&InvalidMessage::Truncated("x")), AlertDescription::DecodeError);
    assert_eq!(alert_for(&InvalidMessage::TrailingData("x")), AlertDescription::DecodeError);
    assert_eq!(alert_for(&InvalidMessage::IllegalValue("duplicate extension")), AlertDescription::DecodeError);
    assert_eq!(
        alert_for(&InvalidMessage::IllegalValue(REASON_DUPLICATE_KEY_SHARE)),
        AlertDescription::IllegalParameter
    );
}
