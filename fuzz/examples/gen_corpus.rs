//! Writes seed corpora under `fuzz/corpus/<target>/` from real recorded handshakes.
//!
//! `cargo run --release --example gen_corpus [OUT_DIR]` (default: `corpus` next to Cargo.toml).
//! Every endpoint seed is checked to replay to a completed handshake before it is written.

use coaps_dtls::internal::codec::{Codec, NamedGroup, SignatureScheme};
use coaps_dtls::internal::codec::{ContentType, HandshakeType, Reader};
use coaps_dtls::internal::msgs::{HandshakeHeader, KeyExchangeAlgorithm};
use coaps_dtls::internal::msgs13::*;
use coaps_dtls::internal::record::split_datagram;
use coaps_dtls::internal::record13::{Record13, split_datagram13};
use coaps_fuzz::dtls13;
use coaps_fuzz::scenario::{self, Transcript};
use coaps_fuzz::targets13::msgs13_selector;
use std::path::{Path, PathBuf};

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::write(d.join(name), bytes).expect("write");
}

fn kx_byte(kx: KeyExchangeAlgorithm) -> u8 {
    match kx {
        KeyExchangeAlgorithm::Psk => 0,
        KeyExchangeAlgorithm::EcdhePsk => 1,
        KeyExchangeAlgorithm::EcdheEcdsa => 2,
    }
}

/// Unfragmented plaintext handshake messages go to the per-message targets.
fn messages(dir: &Path, tag: &str, t: &Transcript, rpk: bool) {
    let kx = kx_byte(t.kx.expect("connected"));
    for (i, d) in t.to_server.iter().chain(&t.to_client).enumerate() {
        write(dir, "record", &format!("{tag}_{i:02}"), d);
        for rec in split_datagram(d) {
            if rec.header.content_type != ContentType::Handshake || rec.header.epoch != 0 {
                continue;
            }
            let mut r = Reader::new(rec.fragment);
            while let Ok((h, body)) = HandshakeHeader::read_fragment(&mut r) {
                if h.fragment_offset != 0 || h.fragment_length != h.length {
                    continue;
                }
                let name = format!("{tag}_{i:02}_{}", h.message_seq);
                let with = |b: u8| [&[b][..], body].concat();
                match h.msg_type {
                    HandshakeType::ClientHello => {
                        write(dir, "client_hello", &name, body);
                        write(dir, "cookie_view", &name, body);
                    }
                    HandshakeType::ServerHello => write(dir, "server_hello", &name, body),
                    HandshakeType::HelloVerifyRequest => write(dir, "hello_verify_request", &name, body),
                    HandshakeType::Certificate => {
                        // The client's certificate in mutual mode is X.509 even when the server's is raw.
                        let raw = rpk && i >= t.to_server.len();
                        write(dir, "certificate", &name, &with(u8::from(raw)));
                    }
                    HandshakeType::ServerKeyExchange => write(dir, "server_key_exchange", &name, &with(kx)),
                    HandshakeType::ClientKeyExchange => write(dir, "client_key_exchange", &name, &with(kx)),
                    HandshakeType::CertificateRequest => write(dir, "certificate_request", &name, body),
                    _ => {}
                }
            }
        }
    }
}

/// DTLS 1.3 seeds: recorded handshakes for the endpoint targets (raw scripts and structured
/// mode), their plaintext hellos, and encoded examples of every other 1.3 message.
fn dtls13_seeds(dir: &Path) {
    // (server flags, client flags, tag); see `dtls13::server_config13` / `client_config13`.
    let runs: &[(u8, u8, &str)] = &[
        (0, 0, "psk_hrr"),
        (1, 0, "psk_nocookie"),
        (0, 1, "x509_hrr"),
        (1, 1, "x509_nocookie"),
        (4, 2, "rpk"),
        (2, 3, "mutual"),
        (8, 1, "x509_13only"),
        (16, 16, "resume_psk"),
        (17, 17, "resume_x509_nocookie"),
    ];
    let mut hellos = Vec::new();
    for &(s, c, tag) in runs {
        let (to_server, to_client, echoed) = dtls13::record_run13(s, c);
        assert!(echoed, "1.3 {tag}: no echo");
        let ss = dtls13::script13(s, &to_server);
        let cs = dtls13::script13(c, &to_client);
        assert!(dtls13::replay_connects13(&ss, true), "1.3 {tag}: server replay does not connect");
        assert!(dtls13::replay_connects13(&cs, false), "1.3 {tag}: client replay does not connect");
        write(dir, "server_endpoint13", tag, &ss);
        write(dir, "client_endpoint13", tag, &cs);
        // Structured mode from the same pair, unmutated: the fuzzer mutates from there.
        write(dir, "server_endpoint13", &format!("{tag}_mitm"), &[s, 1 | (c << 1)]);
        write(dir, "client_endpoint13", &format!("{tag}_mitm"), &[c, 1 | (s << 1)]);
        for (i, d) in to_server.iter().chain(&to_client).enumerate() {
            write(dir, "record13", &format!("{tag}_{i:02}"), &[&[0u8][..], d].concat());
            for rec in split_datagram13(d) {
                let Record13::Plaintext(raw) = rec else { continue };
                let mut r = Reader::new(raw.fragment);
                while let Ok((h, body)) = HandshakeHeader::read_fragment(&mut r) {
                    if h.fragment_offset != 0 || h.fragment_length != h.length {
                        continue;
                    }
                    let name = format!("{tag}_{i:02}_{}", h.message_seq);
                    match h.msg_type {
                        HandshakeType::ClientHello => {
                            write(dir, "client_hello13", &name, body);
                            hellos.push(body.to_vec());
                        }
                        HandshakeType::ServerHello => write(dir, "server_hello13", &name, body),
                        _ => {}
                    }
                }
            }
        }
        println!("1.3 {tag}: {} datagrams to server, {} to client", to_server.len(), to_client.len());
    }
    let msg = |name: &str, body: Vec<u8>| [vec![msgs13_selector(name)], body].concat();
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, ch) in hellos.iter().enumerate() {
        let ch = ClientHello13::read_exact(ch).expect("recorded hello decodes");
        for (j, e) in ch.extensions.iter().enumerate() {
            seeds.push((format!("ext_{i}_{j}"), msg("ClientExtension", e.to_vec())));
            match e {
                ClientExtension13::PreSharedKey(p) => seeds.push((format!("psk_{i}"), msg("OfferedPsks", p.to_vec()))),
                ClientExtension13::KeyShare(k) => seeds.push((format!("ks_{i}"), msg("KeyShareEntry", k[0].to_vec()))),
                _ => {}
            }
        }
    }
    let data = |n: &str| {
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/coaps-dtls/tests/data").join(n))
            .expect("test data")
    };
    let chain = coaps_dtls::cert::load_certs_pem(&data("server.crt")).expect("certs");
    let sk = coaps_dtls::cert::load_private_key_pem(&data("server.key")).expect("key");
    let bytes: [u8; 32] = sk.to_bytes().into();
    let key = coaps_dtls::crypto::rustcrypto::EcdsaP256SigningKey::from_bytes(&bytes).expect("key");
    let spki = coaps_dtls::crypto::SigningKey::public_key_spki(&key);
    let entries = |v: Vec<Vec<u8>>| v.into_iter().map(|data| CertificateEntry { data, extensions: vec![] }).collect();
    seeds.extend([
        (
            "ee".into(),
            msg(
                "EncryptedExtensions",
                EncryptedExtensions13 {
                    extensions: vec![
                        EncryptedExtension13::ServerName,
                        EncryptedExtension13::SupportedGroups(vec![NamedGroup::Secp256r1]),
                        EncryptedExtension13::EarlyData,
                        EncryptedExtension13::ServerCertificateType(coaps_dtls::internal::codec::CertificateType::RawPublicKey),
                    ],
                }
                .to_vec(),
            ),
        ),
        (
            "cr".into(),
            msg(
                "CertificateRequest",
                CertificateRequest13 {
                    certificate_request_context: vec![],
                    extensions: vec![
                        CertificateRequestExtension13::SignatureAlgorithms(vec![SignatureScheme::EcdsaSecp256r1Sha256]),
                        CertificateRequestExtension13::CertificateAuthorities(vec![b"CN=ca".to_vec()]),
                    ],
                }
                .to_vec(),
            ),
        ),
        (
            "cert_x509".into(),
            msg(
                "CertificateX509",
                Certificate13 { certificate_request_context: vec![], certificate_list: entries(chain) }.to_vec(),
            ),
        ),
        (
            "cert_rpk".into(),
            msg(
                "CertificateRpk",
                Certificate13 { certificate_request_context: vec![], certificate_list: entries(vec![spki]) }.to_vec(),
            ),
        ),
        (
            "cv".into(),
            msg(
                "CertificateVerify",
                CertificateVerify13 { algorithm: SignatureScheme::EcdsaSecp256r1Sha256, signature: vec![0x30; 71] }
                    .to_vec(),
            ),
        ),
        ("finished".into(), msg("Finished", vec![0x5a; 32])),
        (
            "nst".into(),
            msg(
                "NewSessionTicket",
                NewSessionTicket13 {
                    ticket_lifetime: 7200,
                    ticket_age_add: 0x0102_0304,
                    ticket_nonce: vec![0],
                    ticket: vec![7; 16],
                    extensions: vec![NewSessionTicketExtension13::EarlyData(1024)],
                }
                .to_vec(),
            ),
        ),
        ("key_update_0".into(), msg("KeyUpdate", vec![0])),
        ("key_update_1".into(), msg("KeyUpdate", vec![1])),
        (
            "ack".into(),
            msg(
                "Ack",
                Ack {
                    record_numbers: vec![
                        RecordNumber { epoch: 2, sequence_number: 0 },
                        RecordNumber { epoch: 3, sequence_number: 5 },
                    ],
                }
                .to_vec(),
            ),
        ),
        ("new_cid".into(), msg("NewConnectionId", vec![0, 3, 2, 0xaa, 0xbb, 0])),
        ("request_cid".into(), msg("RequestConnectionId", vec![2])),
    ]);
    for (name, bytes) in seeds {
        write(dir, "msgs13", &name, &bytes);
    }
    // Structured record-layer seeds (selector bit 4) and cookie seeds: byte patterns.
    for (i, sel) in [0x10u8, 0x11, 0x12, 0x16].iter().enumerate() {
        let pattern: Vec<u8> = (0..200u32).map(|x| (x.wrapping_mul(37) ^ (i as u32 * 11)) as u8).collect();
        write(dir, "record13", &format!("ops_{i}"), &[&[*sel][..], &pattern].concat());
        write(dir, "cookie13", &format!("seed_{i}"), &pattern[i * 20..]);
    }
}

fn main() {
    let out: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    // (server flags, client flags, tag)
    let runs: &[(u8, u8, &str)] = &[
        (0, 0, "psk_any"),
        (0, 4, "ecdhe_psk"),
        (0, 8, "psk_ccm8"),
        (0, 1, "x509"),
        (4, 2, "rpk"),
        (2, 3, "mutual"),
        (1, 0, "nocookie_psk"),
        (1, 1, "nocookie_x509"),
    ];
    for &(s, c, tag) in runs {
        let t = scenario::run(s, c);
        assert!(t.echoed, "{tag}: no echo");
        let ss = scenario::script(s, &t.to_server);
        let cs = scenario::script(c, &t.to_client);
        assert!(scenario::server_replay_connects(&ss), "{tag}: server replay does not connect");
        assert!(scenario::client_replay_connects(&cs), "{tag}: client replay does not connect");
        write(&out, "server_endpoint", tag, &ss);
        write(&out, "client_endpoint", tag, &cs);
        // Server seeds with the handshake interleaved with a second peer's garbage.
        let mut mixed = vec![s];
        for (i, d) in t.to_server.iter().enumerate() {
            coaps_fuzz::encode_op(&mut mixed, 0, 0, d);
            coaps_fuzz::encode_op(&mut mixed, 1 + (i as u8 % 2), 1, &d[..d.len() / 2]);
        }
        write(&out, "server_endpoint", &format!("{tag}_mixed"), &mixed);
        messages(&out, tag, &t, s & 4 != 0 && c & 3 == 2);
        println!("{tag}: {} datagrams to server, {} to client", t.to_server.len(), t.to_client.len());
    }
    dtls13_seeds(&out);
    // Reassembly has its own input encoding: a few byte patterns to start from.
    for (i, seed) in
        [&[0u8; 0][..], &[0xff, 0xff, 0, 22, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 4, 1, 2, 3, 4, 1][..]].iter().enumerate()
    {
        write(&out, "reassembly", &format!("seed_{i}"), seed);
    }
}
