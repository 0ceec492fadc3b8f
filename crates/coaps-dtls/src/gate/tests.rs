use super::*;
use crate::codec::{NamedGroup, ProtocolVersion};
use crate::config::{ClientConfig, DtlsVersion, Psk, StaticPsks};
use crate::crypto::SeededRng;
use crate::crypto::rustcrypto::RustCrypto;
use crate::dtls13::msgs::transcript_bytes_13;
use crate::endpoint::Endpoint;

fn psk() -> Psk {
    Psk::new("gate", b"0123456789abcdef".to_vec()).unwrap()
}

fn server() -> Arc<ServerConfig> {
    Arc::new(ServerConfig { psks: Some(Arc::new(StaticPsks(vec![psk()]))), ..ServerConfig::default() })
}

fn first_datagram(version: DtlsVersion, seed: u64) -> Vec<u8> {
    let mut c = Endpoint::client(SeededRng::from_seed_u64(seed));
    let config = Arc::new(ClientConfig { psk: Some(psk()), version, ..ClientConfig::default() });
    c.connect(Instant::now(), "192.0.2.1:5684".parse().unwrap(), config, "localhost", None).unwrap();
    c.poll_transmit().unwrap().payload
}

fn peer() -> SocketAddr {
    "192.0.2.9:4000".parse().unwrap()
}

/// The HelloRetryRequest written in place is byte for byte the one the message codec builds
/// (`connection13::hello_retry_request`, framed as the endpoint framed it before the gate wrote
/// answers into a caller's buffer), with and without a key share request.
#[test]
fn hello_retry_request_written_in_place_matches_the_codec() {
    let datagram = first_datagram(DtlsVersion::Dtls13, 1);
    let FirstRecord::ClientHello(hello) = FirstRecord::parse(&datagram) else { panic!("not a ClientHello") };
    let now = Instant::now();
    let keys = CookieKeys::new(CookieConfig::default(), now, &mut SeededRng::from_seed_u64(2));
    for (suite, needs_group) in [
        (CipherSuite::TLS_AES_128_GCM_SHA256, false),
        (CipherSuite::TLS_CHACHA20_POLY1305_SHA256, true),
        (CipherSuite::TLS_AES_128_CCM_8_SHA256, true),
    ] {
        let mut out = [0u8; MAX_ANSWER_LEN];
        let n = write_hello_retry_request(&RustCrypto, &keys, now, peer(), &hello, suite, needs_group, &mut out)
            .expect("written");

        let mut t = Vec::new();
        transcript_bytes_13(HandshakeType::ClientHello, hello.body, &mut t);
        let state = HrrState {
            client_hello1_hash: RustCrypto.sha256_parts(&[&t]),
            cipher_suite: suite.into(),
            group: if needs_group { u16::from(NamedGroup::Secp256r1) } else { 0 },
        };
        let cookie = keys.generate13(&RustCrypto, now, peer(), &state).unwrap();
        let hrr = crate::dtls13::server::hello_retry_request(&state, cookie.as_bytes());
        let mut hs = Vec::new();
        HandshakeHeader {
            msg_type: HandshakeType::ServerHello,
            length: hrr.len() as u32,
            message_seq: 0,
            fragment_offset: 0,
            fragment_length: hrr.len() as u32,
        }
        .encode(&mut hs);
        hs.extend_from_slice(&hrr);
        let mut want = Vec::new();
        crate::dtls13::record::encode_plaintext13(
            ContentType::Handshake,
            0,
            hello.record.sequence_number,
            &hs,
            &mut want,
        );
        assert_eq!(out[..n], want[..], "{suite:?} needs_group {needs_group}");

        // Too small a buffer, or too small a ClientHello (amplification): nothing written.
        assert_eq!(
            write_hello_retry_request(&RustCrypto, &keys, now, peer(), &hello, suite, needs_group, &mut out[..n - 1]),
            None
        );
        let tiny = ClientHelloRecord { datagram: &datagram[..n / 3 - 1], ..hello };
        assert_eq!(
            write_hello_retry_request(&RustCrypto, &keys, now, peer(), &tiny, suite, needs_group, &mut out),
            None
        );
    }
}

/// Wherever the full DTLS 1.3 decoding accepts a ClientHello, the borrowed view reads the same
/// facts from it: on the engine's own hellos and on thousands of mutations of them.
#[test]
fn view13_agrees_with_the_full_decoding() {
    let mut rng = SeededRng::from_seed_u64(5);
    let mut checked = 0;
    for seed in 0..4 {
        let datagram = first_datagram(DtlsVersion::Dtls13, seed);
        let FirstRecord::ClientHello(hello) = FirstRecord::parse(&datagram) else { panic!() };
        for round in 0..3000 {
            let mut body = hello.body.to_vec();
            if round > 0 {
                let mut pick = [0u8; 4];
                rng.fill(&mut pick);
                let i = usize::from(u16::from_be_bytes([pick[0], pick[1]])) % body.len();
                body[i] = pick[2];
                if pick[3] & 1 == 1 {
                    let j = (i + 1) % body.len();
                    body[j] ^= pick[3];
                }
            }
            let (Ok(full), Ok(view)) = (ClientHello13::read_exact(&body), ClientHelloView::parse(&body)) else {
                continue;
            };
            checked += 1;
            let v13 = ClientHello13View::parse(&view);
            assert_eq!(v13.is_some(), full.offers_version(ProtocolVersion::DTLS1_3), "round {round}");
            let Some(v13) = v13 else { continue };
            assert_eq!(v13.cookie, full.cookie());
            assert_eq!(v13.key_share_secp256r1, full.key_share_for(NamedGroup::Secp256r1).is_some());
            assert_eq!(v13.pre_shared_key, full.pre_shared_key().is_some());
            assert_eq!(v13.early_data, full.has_early_data());
            let suites = [CipherSuite::TLS_AES_128_CCM_8_SHA256, CipherSuite::TLS_AES_128_GCM_SHA256];
            assert_eq!(v13.choose_suite(&suites), suites.iter().copied().find(|s| full.cipher_suites.contains(s)));
        }
    }
    assert!(checked > 100, "too few mutations decoded: {checked}");
}

/// One gate for both versions: a DTLS 1.2 ClientHello gets a HelloVerifyRequest, a DTLS 1.3 one
/// a HelloRetryRequest; each second ClientHello is proven with what its version needs.
#[test]
fn one_gate_answers_both_versions() {
    let now = Instant::now();
    let mut rng = SeededRng::from_seed_u64(3);
    let gate = Gate::in_front(&server(), now, &mut rng);
    let mut out = [0u8; MAX_ANSWER_LEN];
    for version in [DtlsVersion::Dtls12, DtlsVersion::Dtls13] {
        let mut c = Endpoint::client(SeededRng::from_seed_u64(7));
        let config = Arc::new(ClientConfig { psk: Some(psk()), version, ..ClientConfig::default() });
        let server_addr = "192.0.2.1:5684".parse().unwrap();
        c.connect(now, server_addr, config, "localhost", None).unwrap();
        let ch1 = c.poll_transmit().unwrap().payload;
        let len = match gate.check(now, peer(), &ch1, &mut out, &mut rng) {
            Verdict::HelloVerifyRequest { len, rejected: false } if version == DtlsVersion::Dtls12 => len,
            Verdict::HelloRetryRequest { len, rejected: false } if version == DtlsVersion::Dtls13 => len,
            other => panic!("{version:?}: {other:?}"),
        };
        c.handle_datagram(now, server_addr, &out[..len]);
        let ch2 = c.poll_transmit().unwrap().payload;
        let later = now + Duration::from_millis(30);
        match gate.check(later, peer(), &ch2, &mut out, &mut rng) {
            Verdict::Proven(p) => {
                assert_eq!(p.is_dtls13(), version == DtlsVersion::Dtls13);
                assert_eq!(p.rtt_sample(), Some(Duration::from_millis(30)));
            }
            other => panic!("{version:?}: {other:?}"),
        }
        // From another address, the same cookie is refused and a fresh answer goes out.
        let other: SocketAddr = "192.0.2.10:4000".parse().unwrap();
        assert!(matches!(
            gate.check(later, other, &ch2, &mut out, &mut rng),
            Verdict::HelloVerifyRequest { rejected: true, .. } | Verdict::HelloRetryRequest { rejected: true, .. }
        ));
    }
    let s = gate.stats();
    assert_eq!((s.hello_verify_requests, s.hello_retry_requests, s.cookies_verified, s.cookies_rejected), (2, 2, 2, 2));
    // Not a ClientHello: not the gate's business.
    assert_eq!(gate.check(now, peer(), &[23, 0xfe, 0xfd, 0, 1], &mut out, &mut rng), Verdict::NotClientHello);
    assert_eq!(gate.check(now, peer(), &[], &mut out, &mut rng), Verdict::NotClientHello);
}

/// Gates have distinct identities; the endpoint behind a gate shares its DTLS 1.3 secrets.
#[test]
fn identities_and_shared_secrets() {
    let now = Instant::now();
    let mut rng = SeededRng::from_seed_u64(4);
    let a = Gate::in_front(&server(), now, &mut rng);
    let b = Gate::in_front(&server(), now, &mut rng);
    assert_ne!(a.id(), b.id());
    let e = Endpoint::server_behind_gate(server(), SeededRng::from_seed_u64(5), now, a.keys13().clone());
    assert!(e.gate().unwrap().keys13().same_as(a.keys13()));
    assert!(!e.gate().unwrap().keys13().same_as(b.keys13()));
}
