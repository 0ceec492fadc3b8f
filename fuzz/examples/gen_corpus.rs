//! Writes seed corpora under `fuzz/corpus/<target>/` from real recorded handshakes.
//!
//! `cargo run --release --example gen_corpus [OUT_DIR]` (default: `corpus` next to Cargo.toml).
//! Every endpoint seed is checked to replay to a completed handshake before it is written.

use coaps_dtls::codec::{ContentType, HandshakeType, Reader};
use coaps_dtls::msgs::{HandshakeHeader, KeyExchangeAlgorithm};
use coaps_dtls::record::split_datagram;
use coaps_fuzz::scenario::{self, Transcript};
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
    // Reassembly has its own input encoding: a few byte patterns to start from.
    for (i, seed) in
        [&[0u8; 0][..], &[0xff, 0xff, 0, 22, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 4, 1, 2, 3, 4, 1][..]].iter().enumerate()
    {
        write(&out, "reassembly", &format!("seed_{i}"), seed);
    }
}
