//! Messages produced by wolfSSL 5.9.4 (DTLS 1.3) and published in RFC 8448 decode to the
//! expected fields and re-encode byte for byte; wolfSSL's PSK binders verify over the
//! truncated transcript this module builds.
use super::vectors::*;
use super::*;
use crate::crypto::CryptoProvider;
use crate::crypto::rustcrypto::RustCrypto;

/// Decodes `bytes` with `read_exact` and checks that encoding gives back the same bytes.
fn decode_exact<T: for<'x> Codec<'x>>(bytes: &[u8]) -> T {
    let v = T::read_exact(bytes).expect("captured message decodes");
    assert_eq!(v.to_vec(), bytes, "re-encoding differs from the capture");
    v
}

const WOLF_SIG_ALGS: [u16; 13] =
    [0x0603, 0x0503, 0x0403, 0x0806, 0x080b, 0x0805, 0x080a, 0x0804, 0x0809, 0x0601, 0x0501, 0x0401, 0x0301];
const WOLF_GROUPS: [u16; 9] = [0x11ec, 0x11ed, 0x11eb, 0x0019, 0x0018, 0x0017, 0x001d, 0x0015, 0x0100];

/// The extensions wolfSSL's `-Y` ClientHello carries in both modes, in its order.
fn check_wolf_common(ch: &ClientHello13) {
    assert_eq!(ch.legacy_version, ProtocolVersion::DTLS1_2);
    assert!(ch.legacy_session_id.0.is_empty());
    assert_eq!(ch.check_dtls13_legacy_fields(), Ok(()));
    assert_eq!(ch.supported_versions(), Some(&[ProtocolVersion::DTLS1_3][..]));
    assert!(ch.offers_version(ProtocolVersion::DTLS1_3));
    assert!(!ch.offers_version(ProtocolVersion::DTLS1_2));
    assert_eq!(ch.psk_key_exchange_modes(), Some(&[PskKeyExchangeMode::PskKe, PskKeyExchangeMode::PskDheKe][..]));
    let sig: Vec<u16> = ch.signature_algorithms().unwrap().iter().map(|&s| s.into()).collect();
    assert_eq!(sig, WOLF_SIG_ALGS);
    let groups: Vec<u16> = ch.supported_groups().unwrap().iter().map(|&g| g.into()).collect();
    assert_eq!(groups, WOLF_GROUPS);
    // -Y: one P-256 share, an uncompressed point.
    let shares = ch.key_shares().unwrap();
    assert_eq!(shares.len(), 1);
    assert_eq!(shares[0].group, NamedGroup::Secp256r1);
    assert_eq!(shares[0].key_exchange.len(), 65);
    assert_eq!(shares[0].key_exchange[0], 4);
    assert!(ch.key_share_for(NamedGroup::Secp256r1).is_some());
    assert!(ch.key_share_for(NamedGroup::X25519).is_none());
    // TLS 1.2 leftovers: encrypt_then_mac and session_ticket stay Unknown, renegotiation_info
    // is parsed.
    assert_eq!(
        ch.find_extension(ExtensionType::EncryptThenMac),
        Some(&ClientExtension13::Unknown(RawExtension { typ: ExtensionType::EncryptThenMac, data: vec![] }))
    );
    assert!(matches!(
        ch.find_extension(ExtensionType::SessionTicket),
        Some(ClientExtension13::Unknown(RawExtension { data, .. })) if data.is_empty()
    ));
    assert_eq!(
        ch.find_extension(ExtensionType::RenegotiationInfo),
        Some(&ClientExtension13::RenegotiationInfo(vec![]))
    );
    assert!(!ch.has_early_data());
    assert_eq!(ch.connection_id(), None);
    assert_eq!(ch.server_name(), None);
}

#[test]
fn wolfssl_certificate_mode_hellos() {
    let ch1: ClientHello13 = decode_exact(&hex(WOLF_CERT_CH1));
    check_wolf_common(&ch1);
    assert_eq!(ch1.cipher_suites.len(), 32);
    assert_eq!(
        ch1.cipher_suites[..5],
        [
            CipherSuite::Unknown(0x1302),
            CipherSuite::TLS_AES_128_GCM_SHA256,
            CipherSuite::TLS_CHACHA20_POLY1305_SHA256,
            CipherSuite::Unknown(0x1304),
            CipherSuite::TLS_AES_128_CCM_8_SHA256,
        ]
    );
    assert_eq!(ch1.cookie(), None);
    assert_eq!(ch1.pre_shared_key(), None);
    assert_eq!(ClientHello13::read_with_binders_offset(&hex(WOLF_CERT_CH1)).unwrap().1, None);

    let hrr_body = hex(WOLF_CERT_HRR);
    assert_eq!(ServerHelloMessage13::peek_selected_version(&hrr_body), Ok(Some(ProtocolVersion::DTLS1_3)));
    let ServerHelloMessage13::HelloRetryRequest(hrr) = decode_exact(&hrr_body) else { panic!("not an HRR") };
    assert_eq!(hrr.legacy_version, ProtocolVersion::DTLS1_2);
    assert!(hrr.legacy_session_id_echo.0.is_empty(), "DTLS 1.3 never echoes the session id");
    assert_eq!(hrr.cipher_suite, CipherSuite::Unknown(0x1302));
    assert_eq!(hrr.selected_version(), Some(ProtocolVersion::DTLS1_3));
    assert_eq!(hrr.selected_group(), None, "the P-256 share was acceptable");
    let cookie = hrr.cookie().expect("wolfSSL sends a cookie HRR by default");
    assert_eq!(cookie.len(), 0x53);

    // ClientHello2 echoes the cookie and is otherwise ClientHello1 (RFC 8446 §4.1.2).
    let ch2: ClientHello13 = decode_exact(&hex(WOLF_CERT_CH2));
    check_wolf_common(&ch2);
    assert_eq!(ch2.cookie(), Some(cookie));
    assert_eq!(ch2.random, ch1.random);
    assert_eq!(ch2.cipher_suites, ch1.cipher_suites);
    let mut without_cookie = ch2.clone();
    without_cookie.extensions.retain(|e| e.ext_type() != ExtensionType::Cookie);
    let mut ch1_sorted = ch1.extensions.clone();
    ch1_sorted.sort_by_key(|e| u16::from(e.ext_type()));
    without_cookie.extensions.sort_by_key(|e| u16::from(e.ext_type()));
    assert_eq!(without_cookie.extensions, ch1_sorted);

    let sh_body = hex(WOLF_CERT_SH);
    assert_eq!(ServerHelloMessage13::peek_selected_version(&sh_body), Ok(Some(ProtocolVersion::DTLS1_3)));
    let ServerHelloMessage13::ServerHello(sh) = decode_exact(&sh_body) else { panic!("not a ServerHello") };
    assert_eq!(sh.cipher_suite, hrr.cipher_suite);
    assert_eq!(sh.selected_version(), Some(ProtocolVersion::DTLS1_3));
    assert_eq!(sh.key_share().map(|k| (k.group, k.key_exchange.len())), Some((NamedGroup::Secp256r1, 65)));
    assert_eq!(sh.selected_identity(), None);
    assert_eq!(DowngradeSentinel::find(&sh.random), None);
}

#[test]
fn wolfssl_psk_mode_hellos() {
    let ch1_body = hex(WOLF_PSK_CH1);
    let (ch1, off1) = ClientHello13::read_with_binders_offset(&ch1_body).unwrap();
    assert_eq!(ch1.to_vec(), ch1_body);
    check_wolf_common(&ch1);
    assert_eq!(ch1.cipher_suites, [CipherSuite::TLS_AES_128_GCM_SHA256, CipherSuite::Unknown(0x00aa)]);
    let psk = ch1.pre_shared_key().expect("pre_shared_key offered");
    assert!(matches!(ch1.extensions.last(), Some(ClientExtension13::PreSharedKey(_))));
    // wolfSSL appends the hash name to the identity of an external PSK.
    assert_eq!(psk.identities, [PskIdentity { identity: b"Client_identitySHA256".to_vec(), obfuscated_ticket_age: 0 }]);
    assert_eq!(psk.binders.len(), 1);
    assert_eq!(psk.binders[0].len(), 32);
    assert_eq!(off1, Some(ch1_body.len() - 35));
    assert_eq!(ch1.psk_binders_offset(), off1);
    assert_eq!(&ch1_body[off1.unwrap()..][3..], &psk.binders[0][..]);

    let ServerHelloMessage13::HelloRetryRequest(hrr) = decode_exact(&hex(WOLF_PSK_HRR)) else { panic!("not an HRR") };
    assert_eq!(hrr.cipher_suite, CipherSuite::TLS_AES_128_GCM_SHA256);
    let (ch2, off2) = ClientHello13::read_with_binders_offset(&hex(WOLF_PSK_CH2)).unwrap();
    assert_eq!(ch2.cookie(), hrr.cookie());
    assert!(off2.is_some());

    let ServerHelloMessage13::ServerHello(sh) = decode_exact(&hex(WOLF_PSK_SH)) else { panic!("not a ServerHello") };
    assert_eq!(sh.selected_identity(), Some(0));
    assert_eq!(sh.key_share().map(|k| k.group), Some(NamedGroup::Secp256r1), "psk_dhe_ke");
    assert_eq!(sh.selected_version(), Some(ProtocolVersion::DTLS1_3));
}

// --- Binder check: a minimal HKDF over the crate's HMAC-SHA-256, with the DTLS 1.3 label
// prefix "dtls13" (RFC 9147 §5.9). Test-only; the key schedule proper lives elsewhere.

fn hkdf_expand_label(secret: &[u8; 32], label: &[u8], context: &[u8]) -> [u8; 32] {
    let mut info = vec![0, 32, (6 + label.len()) as u8];
    info.extend_from_slice(b"dtls13");
    info.extend_from_slice(label);
    info.push(context.len() as u8);
    info.extend_from_slice(context);
    // One HKDF-Expand block: T(1) = HMAC(PRK, info || 0x01).
    RustCrypto.hmac_sha256(secret, &[&info, &[1]])
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut h = RustCrypto.sha256();
    h.update(data);
    h.current()
}

/// binder = HMAC(finished_key, Transcript-Hash(...)) for an external PSK (RFC 8446 §4.2.11.2,
/// §7.1: binder_key = Derive-Secret(Early Secret, "ext binder", "")).
fn ext_binder(psk: &[u8], transcript: &[u8]) -> [u8; 32] {
    let early_secret = RustCrypto.hmac_sha256(&[0; 32], &[psk]);
    let binder_key = hkdf_expand_label(&early_secret, b"ext binder", &sha256(b""));
    let finished_key = hkdf_expand_label(&binder_key, b"finished", b"");
    RustCrypto.hmac_sha256(&finished_key, &[&sha256(transcript)])
}

const WOLF_TLS13_PSK: [u8; 32] = [
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45,
    0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
];

#[test]
fn wolfssl_binders_verify_over_truncated_transcripts() {
    // ClientHello1: Transcript-Hash(Truncate(ClientHello1)).
    let ch1_body = hex(WOLF_PSK_CH1);
    let (ch1, off1) = ClientHello13::read_with_binders_offset(&ch1_body).unwrap();
    let mut t1 = Vec::new();
    truncated_client_hello_transcript(&ch1_body, off1.unwrap(), &mut t1);
    assert_eq!(ext_binder(&WOLF_TLS13_PSK, &t1)[..], ch1.pre_shared_key().unwrap().binders[0][..]);
    // Any other cut misses.
    let mut wrong = Vec::new();
    truncated_client_hello_transcript(&ch1_body, off1.unwrap() + 2, &mut wrong);
    assert_ne!(ext_binder(&WOLF_TLS13_PSK, &wrong)[..], ch1.pre_shared_key().unwrap().binders[0][..]);

    // ClientHello2: Transcript-Hash(message_hash(CH1), HelloRetryRequest, Truncate(CH2)),
    // everything in the TLS-style (4-byte header) form of RFC 9147 §5.2.
    let ch2_body = hex(WOLF_PSK_CH2);
    let (ch2, off2) = ClientHello13::read_with_binders_offset(&ch2_body).unwrap();
    let mut ch1_msg = Vec::new();
    transcript_bytes_13(HandshakeType::ClientHello, &ch1_body, &mut ch1_msg);
    let mut t2 = Vec::new();
    message_hash(&sha256(&ch1_msg), &mut t2);
    assert_eq!(t2[..4], [254, 0, 0, 32]);
    transcript_bytes_13(HandshakeType::ServerHello, &hex(WOLF_PSK_HRR), &mut t2);
    truncated_client_hello_transcript(&ch2_body, off2.unwrap(), &mut t2);
    assert_eq!(ext_binder(&WOLF_TLS13_PSK, &t2)[..], ch2.pre_shared_key().unwrap().binders[0][..]);

    // A client rebuilding ClientHello2 with placeholder binders gets the same offset and,
    // after write_binders, wolfSSL's exact bytes.
    let mut rebuilt = ch2.clone();
    if let Some(ClientExtension13::PreSharedKey(p)) = rebuilt.extensions.last_mut() {
        p.binders = vec![vec![0; 32]];
    }
    let mut body = Vec::new();
    let off = rebuilt.encode_with_binders_offset(&mut body).unwrap();
    assert_eq!(Some(off), off2);
    let mut t = t2[..t2.len() - 4 - off].to_vec();
    truncated_client_hello_transcript(&body, off, &mut t);
    let binder = ext_binder(&WOLF_TLS13_PSK, &t).to_vec();
    write_binders(&mut body, off, &[binder]).unwrap();
    assert_eq!(body, ch2_body);
}

#[test]
fn rfc8448_server_hello_and_hello_retry_request() {
    let ServerHelloMessage13::ServerHello(sh) =
        decode_exact(&tls_body(RFC8448_SERVER_HELLO, HandshakeType::ServerHello))
    else {
        panic!("not a ServerHello")
    };
    assert_eq!(sh.legacy_version, ProtocolVersion(0x0303));
    assert_eq!(sh.cipher_suite, CipherSuite::TLS_AES_128_GCM_SHA256);
    assert_eq!(sh.selected_version(), Some(ProtocolVersion(0x0304)));
    assert_eq!(sh.key_share().map(|k| (k.group, k.key_exchange.len())), Some((NamedGroup::X25519, 32)));

    let body = tls_body(RFC8448_HELLO_RETRY_REQUEST, HandshakeType::ServerHello);
    let ServerHelloMessage13::HelloRetryRequest(hrr) = decode_exact(&body) else { panic!("not an HRR") };
    assert_eq!(hrr.selected_group(), Some(NamedGroup::Secp256r1));
    assert_eq!(hrr.cookie().map(<[u8]>::len), Some(0x72));
    assert_eq!(hrr.selected_version(), Some(ProtocolVersion(0x0304)));
    assert_eq!(HelloRetryRequest13::read_exact(&body).unwrap(), hrr);
    assert!(ServerHello13::read_exact(&body).is_err(), "the HRR random is not a ServerHello");
}

#[test]
fn rfc8448_server_flight() {
    let ee: EncryptedExtensions13 =
        decode_exact(&tls_body(RFC8448_ENCRYPTED_EXTENSIONS, HandshakeType::EncryptedExtensions));
    let groups: Vec<u16> = ee.supported_groups().unwrap().iter().map(|&g| g.into()).collect();
    assert_eq!(groups, [0x1d, 0x17, 0x18, 0x19, 0x100, 0x101, 0x102, 0x103, 0x104]);
    assert!(ee.has_server_name_ack());
    assert!(!ee.has_early_data());
    // record_size_limit (28) is not parsed here.
    assert_eq!(
        ee.find_extension(ExtensionType::Unknown(28)),
        Some(&EncryptedExtension13::Unknown(RawExtension { typ: ExtensionType::Unknown(28), data: vec![0x40, 0x01] }))
    );

    let cert_body = tls_body(RFC8448_CERTIFICATE, HandshakeType::Certificate);
    let cert = Certificate13::read_exact_with(&cert_body, CertificateType::X509).unwrap();
    assert_eq!(cert.to_vec(), cert_body);
    assert!(cert.certificate_request_context.is_empty());
    assert_eq!(cert.certificate_list.len(), 1);
    assert_eq!(cert.end_entity().map(<[u8]>::len), Some(0x1b0));
    assert_eq!(cert.end_entity().unwrap()[..2], [0x30, 0x82]);
    assert!(cert.certificate_list[0].extensions.is_empty());
    // The same bytes are a legal RawPublicKey Certificate too: one entry.
    assert!(Certificate13::read_exact_with(&cert_body, CertificateType::RawPublicKey).is_ok());

    let cv: CertificateVerify13 = decode_exact(&tls_body(RFC8448_CERTIFICATE_VERIFY, HandshakeType::CertificateVerify));
    assert_eq!(cv.algorithm, SignatureScheme::Unknown(0x0804), "rsa_pss_rsae_sha256");
    assert_eq!(cv.signature.len(), 128);

    let fin_body = tls_body(RFC8448_SERVER_FINISHED, HandshakeType::Finished);
    let fin = Finished13::read_exact_with(&fin_body, 32).unwrap();
    assert_eq!(fin.to_vec(), fin_body);
    assert_eq!(fin.verify_data[..4], [0x9b, 0x9b, 0x14, 0x1d]);
    assert!(Finished13::read_exact_with(&fin_body, 48).is_err());
    assert!(Finished13::read_exact_with(&fin_body, 31).is_err());
}

#[test]
fn rfc8448_new_session_ticket() {
    let nst: NewSessionTicket13 = decode_exact(&tls_body(RFC8448_NEW_SESSION_TICKET, HandshakeType::NewSessionTicket));
    assert_eq!(nst.ticket_lifetime, 30);
    assert_eq!(nst.ticket_age_add, 0xfad6_aac5);
    assert_eq!(nst.ticket_nonce, [0, 0]);
    assert_eq!(nst.ticket.len(), 0xb2);
    assert_eq!(nst.max_early_data_size(), Some(0x400));
}

#[test]
fn rfc8448_resumed_client_hello_in_dtls_layout() {
    // RFC 8448 §4's ClientHello is TLS: insert the empty DTLS legacy_cookie after the session id.
    let tls = tls_body(RFC8448_RESUMED_CLIENT_HELLO, HandshakeType::ClientHello);
    assert_eq!(tls.len(), 508);
    let mut body = tls[..35].to_vec();
    body.push(0);
    body.extend_from_slice(&tls[35..]);
    let (ch, off) = ClientHello13::read_with_binders_offset(&body).unwrap();
    assert_eq!(ch.to_vec(), body);
    assert!(ch.has_early_data());
    assert_eq!(ch.server_name(), Some(&b"server"[..]));
    assert_eq!(ch.psk_key_exchange_modes(), Some(&[PskKeyExchangeMode::PskDheKe][..]));
    let psk = ch.pre_shared_key().unwrap();
    assert_eq!(psk.identities.len(), 1);
    assert_eq!(psk.identities[0].identity.len(), 0xb2);
    assert_eq!(psk.identities[0].obfuscated_ticket_age, 0xfad6_aacb);
    // RFC 8448 prints the truncated ClientHello as 477 octets with its 4-byte header, i.e. a
    // 473-byte TLS body: 474 bytes with the DTLS cookie byte.
    assert_eq!(off, Some(474));
    let mut t = Vec::new();
    truncated_client_hello_transcript(&body, 474, &mut t);
    assert_eq!(t.len(), 478);
    assert_eq!(t[..4], [1, 0, 0x01, 0xfd], "the header keeps the full length");
    // padding (21) is kept verbatim.
    assert!(
        matches!(ch.find_extension(ExtensionType::Unknown(21)), Some(ClientExtension13::Unknown(r)) if r.data.len() == 0x57)
    );
}
