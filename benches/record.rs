//! Record protection: seal + open of one application_data record of 64, 256 and 1024 bytes for
//! each AEAD, this engine beside OpenSSL's EVP in the same criterion group.
//!
//! * `coaps seal`: `RecordProtection::seal` of a complete record (header, explicit nonce, tag)
//!   into a reused buffer.
//! * `coaps seal+open`: the same, then `split_datagram` and `RecordProtection::open`.
//! * `openssl oneshot seal+open`: `openssl::symm::encrypt_aead` + `decrypt_aead` with the same
//!   key, nonce and additional data (a new `EVP_CIPHER_CTX` and key schedule per call). For
//!   AES-128-CCM-8 the same steps through `CipherCtx`: `encrypt_aead` keys the context before
//!   it sets the tag length, and OpenSSL fixes CCM's tag length when the key is set, so it
//!   cannot produce an 8-byte CCM tag (it fails with an empty error stack).
//! * `openssl keyed seal+open`: two `CipherCtx`s keyed once, only the nonce set per record, as
//!   OpenSSL's own record layer does: the fair comparison for the AEAD work itself.
//!
//! Throughput is payload bytes per second. Time is thread CPU time (`COAPS_BENCH_WALL=1` for
//! wall time). Before timing, the engine's records are checked against OpenSSL's AEAD output
//! byte for byte, so both sides provably do the same work.
//!
//! `cargo bench --bench record`

use coaps_bench_support::cpu::{ThreadCpuTime, wall_time_requested};
use coaps_bench_support::report::{duration, mean_ns};
use coaps_dtls::crypto::AeadAlgorithm;
use coaps_dtls::crypto::rustcrypto::RustCrypto;
use coaps_dtls::internal::codec::{ContentType, ProtocolVersion};
use coaps_dtls::internal::record::{RecordHeader, RecordProtection, split_datagram};
use criterion::measurement::Measurement;
use criterion::{BenchmarkId, Criterion, Throughput};
use openssl::cipher::{Cipher, CipherRef};
use openssl::cipher_ctx::CipherCtx;
use openssl::symm;
use std::hint::black_box;
use std::time::Duration;

const SIZES: [usize; 3] = [64, 256, 1024];
const EPOCH: u16 = 1;
const SEQ: u64 = 5;
const KEY: [u8; 32] = [0x11; 32];
const IV: [u8; 12] = [0x22; 12];

fn algs() -> [(AeadAlgorithm, &'static str); 3] {
    [
        (AeadAlgorithm::ChaCha20Poly1305, "chacha20-poly1305"),
        (AeadAlgorithm::Aes128Ccm8, "aes-128-ccm-8"),
        (AeadAlgorithm::Aes128Gcm, "aes-128-gcm"),
    ]
}

fn cipher(alg: AeadAlgorithm) -> (&'static CipherRef, symm::Cipher) {
    match alg {
        AeadAlgorithm::ChaCha20Poly1305 => (Cipher::chacha20_poly1305(), symm::Cipher::chacha20_poly1305()),
        AeadAlgorithm::Aes128Ccm8 => (Cipher::aes_128_ccm(), symm::Cipher::aes_128_ccm()),
        AeadAlgorithm::Aes128Gcm => (Cipher::aes_128_gcm(), symm::Cipher::aes_128_gcm()),
    }
}

/// What the record layer feeds the AEAD for record (EPOCH, SEQ): nonce (RFC 7905 §2 for
/// ChaCha20, RFC 5288 §3 / RFC 6655 §3 for the AES modes), additional data (RFC 5246
/// §6.2.3.3 with DTLS's epoch || sequence_number) and the explicit nonce carried in the record.
struct Inputs {
    key: Vec<u8>,
    nonce: [u8; 12],
    aad: [u8; 13],
    explicit: Vec<u8>,
}

fn inputs(alg: AeadAlgorithm, len: usize) -> Inputs {
    let seq_num = (u64::from(EPOCH) << 48) | SEQ;
    let mut nonce = [0u8; 12];
    let explicit = match alg {
        AeadAlgorithm::ChaCha20Poly1305 => {
            nonce = IV;
            for (n, s) in nonce[4..].iter_mut().zip(seq_num.to_be_bytes()) {
                *n ^= s;
            }
            Vec::new()
        }
        _ => {
            nonce[..4].copy_from_slice(&IV[..4]);
            nonce[4..].copy_from_slice(&seq_num.to_be_bytes());
            seq_num.to_be_bytes().to_vec()
        }
    };
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&seq_num.to_be_bytes());
    aad[8] = ContentType::ApplicationData.into();
    aad[9..11].copy_from_slice(&ProtocolVersion::DTLS1_2.0.to_be_bytes());
    aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
    Inputs { key: KEY[..alg.key_len()].to_vec(), nonce, aad, explicit }
}

fn protection(alg: AeadAlgorithm) -> RecordProtection {
    RecordProtection::new(&RustCrypto, alg, &KEY[..alg.key_len()], &IV[..alg.fixed_iv_len()]).expect("keys")
}

fn seal(p: &RecordProtection, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    p.seal(ContentType::ApplicationData, ProtocolVersion::DTLS1_2, EPOCH, SEQ, payload, out).expect("seal");
}

fn open(p: &RecordProtection, datagram: &[u8]) -> Vec<u8> {
    let rec = split_datagram(datagram).next().expect("record");
    p.open(&rec.header, rec.fragment).expect("open")
}

/// OpenSSL with keyed contexts: only the nonce changes per record.
struct Keyed {
    enc: CipherCtx,
    dec: CipherCtx,
    ccm: bool,
    tag_len: usize,
}

impl Keyed {
    fn new(alg: AeadAlgorithm) -> Self {
        let (c, _) = cipher(alg);
        let key = &KEY[..alg.key_len()];
        let ccm = alg == AeadAlgorithm::Aes128Ccm8;
        let mut enc = CipherCtx::new().unwrap();
        let mut dec = CipherCtx::new().unwrap();
        enc.encrypt_init(Some(c), None, None).unwrap();
        dec.decrypt_init(Some(c), None, None).unwrap();
        enc.set_iv_length(12).unwrap();
        dec.set_iv_length(12).unwrap();
        if ccm {
            enc.set_tag_length(8).unwrap();
            dec.set_tag_length(8).unwrap();
        }
        enc.encrypt_init(None, Some(key), None).unwrap();
        dec.decrypt_init(None, Some(key), None).unwrap();
        Self { enc, dec, ccm, tag_len: alg.tag_len() }
    }

    /// Seals `pt` into `ct` (same length) and `tag`.
    fn seal(&mut self, i: &Inputs, pt: &[u8], ct: &mut [u8], tag: &mut [u8]) {
        let e = &mut self.enc;
        e.encrypt_init(None, None, Some(&i.nonce)).unwrap();
        if self.ccm {
            e.set_data_len(pt.len()).unwrap();
        }
        e.cipher_update(&i.aad, None).unwrap();
        let n = e.cipher_update(pt, Some(ct)).unwrap();
        e.cipher_final(&mut ct[n..]).unwrap();
        e.tag(&mut tag[..self.tag_len]).unwrap();
    }

    /// Opens `ct` + `tag` into `pt`; panics on authentication failure.
    fn open(&mut self, i: &Inputs, ct: &[u8], tag: &[u8], pt: &mut [u8]) {
        let d = &mut self.dec;
        d.decrypt_init(None, None, Some(&i.nonce)).unwrap();
        if self.ccm {
            d.set_tag(tag).unwrap();
            d.set_data_len(ct.len()).unwrap();
        }
        d.cipher_update(&i.aad, None).unwrap();
        let n = d.cipher_update(ct, Some(pt)).expect("authentic");
        if !self.ccm {
            d.set_tag(tag).unwrap();
            d.cipher_final(&mut pt[n..]).expect("authentic");
        }
    }
}

/// The engine's record must be header || explicit nonce || OpenSSL's ciphertext || tag, and
/// both OpenSSL paths must open it.
fn cross_check(alg: AeadAlgorithm, len: usize) {
    let payload = vec![0xA5u8; len];
    let i = inputs(alg, len);
    let mut tag = vec![0u8; alg.tag_len()];
    let ct = oneshot_seal(alg, &i, &payload, &mut tag);
    assert_eq!(oneshot_open(alg, &i, &ct, &tag), payload);
    let mut record = Vec::new();
    seal(&protection(alg), &payload, &mut record);
    let mut expected = record[..RecordHeader::LEN].to_vec();
    expected.extend_from_slice(&i.explicit);
    expected.extend_from_slice(&ct);
    expected.extend_from_slice(&tag);
    assert_eq!(record, expected, "{alg:?}/{len}: engine and OpenSSL disagree");
    assert_eq!(open(&protection(alg), &record), payload);
    let mut k = Keyed::new(alg);
    let (mut ct2, mut tag2) = (vec![0u8; len], vec![0u8; alg.tag_len()]);
    k.seal(&i, &payload, &mut ct2, &mut tag2);
    assert_eq!((&ct2, &tag2), (&ct, &tag), "{alg:?}/{len}: keyed OpenSSL differs");
    let mut pt = vec![0u8; len];
    k.open(&i, &ct, &tag, &mut pt);
    assert_eq!(pt, payload);
}

/// One-shot OpenSSL seal: a fresh context and key schedule.
fn oneshot_seal(alg: AeadAlgorithm, i: &Inputs, pt: &[u8], tag: &mut [u8]) -> Vec<u8> {
    if alg == AeadAlgorithm::Aes128Ccm8 {
        let mut ct = vec![0u8; pt.len()];
        Keyed::new(alg).seal(i, pt, &mut ct, tag);
        ct
    } else {
        symm::encrypt_aead(cipher(alg).1, &i.key, Some(&i.nonce), &i.aad, pt, tag).expect("openssl seal")
    }
}

/// One-shot OpenSSL open: a fresh context and key schedule.
fn oneshot_open(alg: AeadAlgorithm, i: &Inputs, ct: &[u8], tag: &[u8]) -> Vec<u8> {
    if alg == AeadAlgorithm::Aes128Ccm8 {
        let mut pt = vec![0u8; ct.len()];
        Keyed::new(alg).open(i, ct, tag, &mut pt);
        pt
    } else {
        symm::decrypt_aead(cipher(alg).1, &i.key, Some(&i.nonce), &i.aad, ct, tag).expect("openssl open")
    }
}

fn bench<M: Measurement>(c: &mut Criterion<M>) {
    for (alg, name) in algs() {
        let mut g = c.benchmark_group(format!("record/{name}"));
        for len in SIZES {
            cross_check(alg, len);
            g.throughput(Throughput::Bytes(len as u64));
            let payload = vec![0xA5u8; len];
            let p = protection(alg);
            let mut out = Vec::with_capacity(len + 64);
            g.bench_with_input(BenchmarkId::new("coaps seal", len), &payload, |b, pt| {
                b.iter(|| seal(&p, black_box(pt), &mut out))
            });
            g.bench_with_input(BenchmarkId::new("coaps seal+open", len), &payload, |b, pt| {
                b.iter(|| {
                    seal(&p, black_box(pt), &mut out);
                    open(&p, &out)
                })
            });
            let i = inputs(alg, len);
            let mut tag = vec![0u8; alg.tag_len()];
            g.bench_with_input(BenchmarkId::new("openssl oneshot seal+open", len), &payload, |b, pt| {
                b.iter(|| {
                    let ct = oneshot_seal(alg, &i, black_box(pt), &mut tag);
                    oneshot_open(alg, &i, &ct, &tag)
                })
            });
            let mut k = Keyed::new(alg);
            let (mut ct, mut pt_out) = (vec![0u8; len], vec![0u8; len]);
            g.bench_with_input(BenchmarkId::new("openssl keyed seal+open", len), &payload, |b, pt| {
                b.iter(|| {
                    k.seal(&i, black_box(pt), &mut ct, &mut tag);
                    k.open(&i, &ct, &tag, &mut pt_out);
                })
            });
        }
        g.finish();
    }
}

fn table() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut lines = Vec::new();
    for (_, name) in algs() {
        for len in SIZES {
            let g = format!("record/{name}");
            let get = |f: &str| mean_ns(root, &g, &format!("{f}/{len}"));
            if let (Some(s), Some(so), Some(one), Some(keyed)) = (
                get("coaps seal"),
                get("coaps seal+open"),
                get("openssl oneshot seal+open"),
                get("openssl keyed seal+open"),
            ) {
                lines.push(format!(
                    "| {name} | {len} | {} | {} | {} | {} | {:.2} |",
                    duration(s),
                    duration(so),
                    duration(one),
                    duration(keyed),
                    keyed / so
                ));
            }
        }
    }
    if !lines.is_empty() {
        println!(
            "\n| AEAD | bytes | coaps seal | coaps seal+open | openssl oneshot seal+open | openssl keyed seal+open | coaps/openssl-keyed speed |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for l in lines {
            println!("{l}");
        }
    }
}

fn run<M: Measurement>(c: Criterion<M>) {
    let mut c = c
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
}

fn main() {
    coaps_bench_support::report::mark_start();
    if wall_time_requested() {
        run(Criterion::default());
    } else {
        run(Criterion::default().with_measurement(ThreadCpuTime));
    }
    table();
}
