//! Tests for the DTLS 1.3 message codec: captured wolfSSL and RFC 8448 messages, round trips,
//! negative cases and a seeded fuzz loop.
use super::*;
use crate::codec::fuzzing::Decoder;
use crate::codec::*;

mod captured;
mod fuzz;
mod negative;
mod roundtrip;
mod vectors;

/// Decodes hex, skipping whitespace (test vectors only).
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex length");
    digits
        .chunks_exact(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).expect("ascii"), 16).expect("hex digit"))
        .collect()
}

/// The body of an RFC 8448 message, after checking its 4-byte TLS header.
fn tls_body(s: &str, typ: HandshakeType) -> Vec<u8> {
    let m = hex(s);
    assert_eq!(HandshakeType::from(m[0]), typ);
    let len = u32::from_be_bytes([0, m[1], m[2], m[3]]) as usize;
    assert_eq!(len, m.len() - 4, "header length");
    m[4..].to_vec()
}

fn ks(group: NamedGroup, n: usize) -> KeyShareEntry {
    KeyShareEntry { group, key_exchange: (0..n).map(|i| i as u8).collect() }
}

fn offered_psks() -> OfferedPsks {
    OfferedPsks {
        identities: vec![
            PskIdentity { identity: b"ticket-one".to_vec(), obfuscated_ticket_age: 0xdead_beef },
            PskIdentity { identity: b"Client_identity".to_vec(), obfuscated_ticket_age: 0 },
        ],
        binders: vec![vec![0xb1; 32], vec![0xb2; 48]],
    }
}

/// A ClientHello using every ClientExtension13 variant, pre_shared_key last.
fn full_client_hello() -> ClientHello13 {
    ClientHello13 {
        legacy_version: ProtocolVersion::DTLS1_2,
        random: Random([0x5a; 32]),
        legacy_session_id: SessionId(vec![]),
        legacy_cookie: vec![],
        cipher_suites: vec![
            CipherSuite::TLS_AES_128_GCM_SHA256,
            CipherSuite::TLS_CHACHA20_POLY1305_SHA256,
            CipherSuite::TLS_AES_128_CCM_8_SHA256,
            CipherSuite::Unknown(0x1302),
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
        ],
        legacy_compression_methods: vec![Compression::Null],
        extensions: all_client_extensions(),
    }
}

fn all_client_extensions() -> Vec<ClientExtension13> {
    vec![
        ClientExtension13::ServerName(vec![ServerName { name_type: 0, name: b"coap.example".to_vec() }]),
        ClientExtension13::SupportedGroups(vec![
            NamedGroup::X25519,
            NamedGroup::Secp256r1,
            NamedGroup::Unknown(0x11ec),
        ]),
        ClientExtension13::SignatureAlgorithms(vec![
            SignatureScheme::EcdsaSecp256r1Sha256,
            SignatureScheme::Unknown(0x0807),
        ]),
        ClientExtension13::SignatureAlgorithmsCert(vec![SignatureScheme::EcdsaSecp256r1Sha256]),
        ClientExtension13::SupportedVersions(vec![ProtocolVersion::DTLS1_3, ProtocolVersion::DTLS1_2]),
        ClientExtension13::KeyShare(vec![ks(NamedGroup::X25519, 32), ks(NamedGroup::Secp256r1, 65)]),
        ClientExtension13::PskKeyExchangeModes(vec![PskKeyExchangeMode::PskDheKe, PskKeyExchangeMode::PskKe]),
        ClientExtension13::EarlyData,
        ClientExtension13::Cookie(vec![0xc0; 40]),
        ClientExtension13::CertificateAuthorities(vec![vec![0x30, 0x00], vec![0x30, 0x03, 1, 2, 3]]),
        ClientExtension13::ConnectionId(vec![]),
        ClientExtension13::ClientCertificateType(vec![CertificateType::RawPublicKey]),
        ClientExtension13::ServerCertificateType(vec![CertificateType::RawPublicKey, CertificateType::X509]),
        ClientExtension13::ExtendedMasterSecret,
        ClientExtension13::RenegotiationInfo(vec![]),
        ClientExtension13::Unknown(RawExtension { typ: ExtensionType::Unknown(0x1a1a), data: vec![3, 9] }),
        ClientExtension13::Unknown(RawExtension { typ: ExtensionType::SessionTicket, data: vec![] }),
        ClientExtension13::PreSharedKey(offered_psks()),
    ]
}

fn full_server_hello() -> ServerHello13 {
    ServerHello13 {
        legacy_version: ProtocolVersion::DTLS1_2,
        random: Random([0xa5; 32]),
        legacy_session_id_echo: SessionId(vec![]),
        cipher_suite: CipherSuite::TLS_CHACHA20_POLY1305_SHA256,
        legacy_compression_method: Compression::Null,
        extensions: vec![
            ServerHelloExtension13::SupportedVersions(ProtocolVersion::DTLS1_3),
            ServerHelloExtension13::KeyShare(ks(NamedGroup::Secp256r1, 65)),
            ServerHelloExtension13::PreSharedKey(1),
            ServerHelloExtension13::ConnectionId(vec![7, 7, 7, 7]),
            ServerHelloExtension13::Unknown(RawExtension { typ: ExtensionType::ExtendedMasterSecret, data: vec![] }),
        ],
    }
}

fn full_hrr() -> HelloRetryRequest13 {
    HelloRetryRequest13 {
        legacy_version: ProtocolVersion::DTLS1_2,
        legacy_session_id_echo: SessionId(vec![]),
        cipher_suite: CipherSuite::TLS_AES_128_GCM_SHA256,
        legacy_compression_method: Compression::Null,
        extensions: vec![
            HelloRetryExtension13::SupportedVersions(ProtocolVersion::DTLS1_3),
            HelloRetryExtension13::KeyShare(NamedGroup::Secp256r1),
            HelloRetryExtension13::Cookie(vec![0xcc; 60]),
            HelloRetryExtension13::Unknown(RawExtension { typ: ExtensionType::Unknown(0xfe0d), data: vec![1] }),
        ],
    }
}

fn full_encrypted_extensions() -> EncryptedExtensions13 {
    EncryptedExtensions13 {
        extensions: vec![
            EncryptedExtension13::ServerName,
            EncryptedExtension13::SupportedGroups(vec![NamedGroup::Secp256r1]),
            EncryptedExtension13::EarlyData,
            EncryptedExtension13::ClientCertificateType(CertificateType::X509),
            EncryptedExtension13::ServerCertificateType(CertificateType::RawPublicKey),
            EncryptedExtension13::Unknown(RawExtension { typ: ExtensionType::Unknown(28), data: vec![0x40, 0x01] }),
        ],
    }
}

fn full_certificate_request() -> CertificateRequest13 {
    CertificateRequest13 {
        certificate_request_context: vec![9, 8, 7],
        extensions: vec![
            CertificateRequestExtension13::SignatureAlgorithms(vec![SignatureScheme::EcdsaSecp256r1Sha256]),
            CertificateRequestExtension13::SignatureAlgorithmsCert(vec![SignatureScheme::Unknown(0x0804)]),
            CertificateRequestExtension13::CertificateAuthorities(vec![vec![0x30, 0x00]]),
            CertificateRequestExtension13::Unknown(RawExtension { typ: ExtensionType::ServerName, data: vec![] }),
            CertificateRequestExtension13::Unknown(RawExtension { typ: ExtensionType::Unknown(48), data: vec![0, 0] }),
        ],
    }
}

fn full_certificate() -> Certificate13 {
    Certificate13 {
        certificate_request_context: vec![],
        certificate_list: vec![
            CertificateEntry {
                data: vec![0x30; 300],
                extensions: vec![RawExtension { typ: ExtensionType::Unknown(5), data: vec![1, 0, 0, 1, 0xaa] }],
            },
            CertificateEntry { data: vec![0x31; 10], extensions: vec![] },
        ],
    }
}

fn rpk_certificate() -> Certificate13 {
    Certificate13 {
        certificate_request_context: vec![1, 2],
        certificate_list: vec![CertificateEntry { data: vec![0x30, 0x59, 0x30, 0x13], extensions: vec![] }],
    }
}

fn full_new_session_ticket() -> NewSessionTicket13 {
    NewSessionTicket13 {
        ticket_lifetime: 604_800,
        ticket_age_add: 0x0102_0304,
        ticket_nonce: vec![0, 1],
        ticket: vec![0x7e; 100],
        extensions: vec![
            NewSessionTicketExtension13::EarlyData(1024),
            NewSessionTicketExtension13::Unknown(RawExtension { typ: ExtensionType::Unknown(0x5a5a), data: vec![] }),
        ],
    }
}

fn full_ack() -> Ack {
    Ack {
        record_numbers: vec![
            RecordNumber { epoch: 2, sequence_number: 0 },
            RecordNumber { epoch: 2, sequence_number: 1 },
            RecordNumber { epoch: u64::MAX, sequence_number: 0x0000_ffff_ffff_ffff },
        ],
    }
}

fn check<T: for<'x> Codec<'x> + PartialEq + std::fmt::Debug>(b: &[u8]) -> Result<(), InvalidMessage> {
    let v = T::read_exact(b)?;
    assert_eq!(T::read_exact(&v.to_vec()).as_ref(), Ok(&v), "re-encoding changed {v:?}");
    Ok(())
}

fn check_cert(b: &[u8], typ: CertificateType) -> Result<(), InvalidMessage> {
    let v = Certificate13::read_exact_with(b, typ)?;
    assert_eq!(Certificate13::read_exact_with(&v.to_vec(), typ).as_ref(), Ok(&v));
    Ok(())
}

fn check_finished(b: &[u8], len: usize) -> Result<(), InvalidMessage> {
    let v = Finished13::read_exact_with(b, len)?;
    assert_eq!(Finished13::read_exact_with(&v.to_vec(), len).as_ref(), Ok(&v));
    Ok(())
}

fn check_ch_binders(b: &[u8]) -> Result<(), InvalidMessage> {
    let (ch, off) = ClientHello13::read_with_binders_offset(b)?;
    let mut out = Vec::new();
    assert_eq!(ch.encode_with_binders_offset(&mut out), off);
    Ok(())
}

fn check_peek(b: &[u8]) -> Result<(), InvalidMessage> {
    let v = ServerHelloMessage13::peek_selected_version(b)?;
    // Whatever the full decoder accepts, peek agrees with it.
    if let Ok(ServerHelloMessage13::ServerHello(sh)) = ServerHelloMessage13::read_exact(b) {
        assert_eq!(v, sh.selected_version());
    }
    Ok(())
}

/// Every decoder, by name, for the fuzz and truncation loops.
fn all_decoders() -> Vec<(&'static str, Decoder)> {
    vec![
        ("ClientHello13", check::<ClientHello13>),
        ("ClientHello13+binders", check_ch_binders),
        ("ServerHello13", check::<ServerHello13>),
        ("HelloRetryRequest13", check::<HelloRetryRequest13>),
        ("ServerHelloMessage13", check::<ServerHelloMessage13>),
        ("peek_selected_version", check_peek),
        ("EncryptedExtensions13", check::<EncryptedExtensions13>),
        ("CertificateRequest13", check::<CertificateRequest13>),
        ("CertificateVerify13", check::<CertificateVerify13>),
        ("NewSessionTicket13", check::<NewSessionTicket13>),
        ("KeyUpdate", check::<KeyUpdate>),
        ("NewConnectionId", check::<NewConnectionId>),
        ("RequestConnectionId", check::<RequestConnectionId>),
        ("Ack", check::<Ack>),
        ("KeyShareEntry", check::<KeyShareEntry>),
        ("OfferedPsks", check::<OfferedPsks>),
        ("ClientExtension13", check::<ClientExtension13>),
        ("Vec<ClientExtension13>", check::<Vec<ClientExtension13>>),
        ("CertificateEntry", check::<CertificateEntry>),
        ("Certificate13/X509", |b| check_cert(b, CertificateType::X509)),
        ("Certificate13/RPK", |b| check_cert(b, CertificateType::RawPublicKey)),
        ("Certificate13/Unknown", |b| check_cert(b, CertificateType::Unknown(1))),
        ("Finished13/32", |b| check_finished(b, 32)),
        ("Finished13/0", |b| check_finished(b, 0)),
    ]
}
