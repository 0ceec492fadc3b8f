//! Full DTLS 1.2 handshake CPU, client and server on one thread with datagrams handed over in
//! memory: this engine (`coaps`) beside OpenSSL (`openssl`) in the same criterion group, for
//! each mode, cookie exchange on for both. One iteration = one complete handshake (both
//! sides), so criterion's "elements/s" is handshakes per second on one core.
//!
//! The engine's DTLS 1.3 modes run in the same process (groups `handshake/dtls13-…`, engine
//! only: the `openssl` crate's DTLS is 1.2; wolfSSL's DTLS 1.3 beside the engine's is the
//! separate `benches/wolfssl` crate, outside the workspace): ECDHE-ECDSA with the certificate, external PSK
//! (psk_dhe_ke), ticket resumption (psk_dhe_ke, and psk_ke without a key share, ECDSA base), each with the HelloRetryRequest
//! cookie (the server default), and the ECDSA and PSK ones without it. Their table rows compare
//! with OpenSSL's DTLS 1.2 figure for the nearest mode, measured in this run.
//!
//! Each mode runs once per crypto provider of the build: `coaps` is the default RustCrypto
//! provider, and with `--features aws-lc` also `coaps-aws-lc`; a table per provider.
//!
//! Time is this thread's CPU time (see `coaps_bench_support::cpu`; `COAPS_BENCH_WALL=1` for
//! wall time). `cargo bench --bench handshake [-- FILTER]`; a ratio table is printed at the end.

use coaps_bench_support::cpu::{ThreadCpuTime, wall_time_requested};
use coaps_bench_support::report::{duration, mean_ns, per_second};
use coaps_bench_support::{Mode, ossl, ours};
use coaps_dtls::CipherSuite;
use coaps_dtls::crypto::CryptoProvider;
use coaps_dtls::crypto::providers::all_providers;
use criterion::measurement::Measurement;
use criterion::{Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

/// The 1.3 suite of the `dtls13-*` cases: the engine's default (first in `suites13`).
const SUITE13: CipherSuite = CipherSuite::TLS_CHACHA20_POLY1305_SHA256;

/// One group: name, the 1.2 mode (for 1.3 cases: how to authenticate, and the OpenSSL 1.2
/// row to compare with), resumed, and for 1.3 whether the HRR cookie is on.
struct Case {
    name: String,
    mode: Mode,
    resume: bool,
    v13: Option<bool>,
    /// 1.3 resumption with psk_ke only (no key share, `ResumptionKeyExchange::PskKe`).
    psk_ke: bool,
    /// 1.3 resumption from the ticket's address without the cookie round trip
    /// (`ServerConfig::skip_cookie_on_resumption`, RFC 9147 §5.1).
    skip_cookie: bool,
    /// 1.3 resumption carrying a 32-byte request as 0-RTT early data (cookie skipped).
    early: bool,
}

fn cases() -> Vec<Case> {
    let mut v: Vec<_> = Mode::ALL
        .iter()
        .map(|&m| Case {
            name: format!("handshake/{m}"),
            mode: m,
            resume: false,
            v13: None,
            psk_ke: false,
            skip_cookie: false,
            early: false,
        })
        .collect();
    for m in [Mode::PskCcm8, Mode::EcdsaCcm8] {
        v.push(Case {
            name: format!("handshake/resumed-{m}"),
            mode: m,
            resume: true,
            v13: None,
            psk_ke: false,
            skip_cookie: false,
            early: false,
        });
    }
    for (label, mode, resume, cookie, psk_ke) in [
        ("dtls13-ecdhe-ecdsa", Mode::EcdsaCcm8, false, true, false),
        ("dtls13-psk-dhe", Mode::EcdhePskChaCha, false, true, false),
        ("dtls13-resumed-ecdhe-ecdsa", Mode::EcdsaCcm8, true, true, false),
        ("dtls13-resumed-psk-ke-ecdsa", Mode::EcdsaCcm8, true, true, true),
        ("dtls13-ecdhe-ecdsa-nocookie", Mode::EcdsaCcm8, false, false, false),
        ("dtls13-psk-dhe-nocookie", Mode::EcdhePskChaCha, false, false, false),
    ] {
        v.push(Case {
            name: format!("handshake/{label}"),
            mode,
            resume,
            v13: Some(cookie),
            psk_ke,
            skip_cookie: false,
            early: false,
        });
    }
    // Resumption without the cookie round trip from the ticket's address, and 0-RTT.
    for (label, early) in [("dtls13-resumed-psk-ke-ecdsa-skipcookie", false), ("dtls13-0rtt-psk-ke-ecdsa", true)] {
        v.push(Case {
            name: format!("handshake/{label}"),
            mode: Mode::EcdsaCcm8,
            resume: true,
            v13: Some(true),
            psk_ke: true,
            skip_cookie: true,
            early,
        });
    }
    v
}

/// The group whose OpenSSL figure a case is compared with.
fn openssl_group(case: &Case) -> String {
    if case.v13.is_none() {
        return case.name.clone();
    }
    format!("handshake/{}{}", if case.resume { "resumed-" } else { "" }, case.mode)
}

/// The criterion function id of the engine on `provider`: `coaps` for the default RustCrypto
/// provider (the id earlier runs used), `coaps-<name>` for the others.
fn function_id(provider: &dyn CryptoProvider) -> String {
    match provider.name() {
        "rustcrypto" => "coaps".to_owned(),
        other => format!("coaps-{other}"),
    }
}

fn bench<M: Measurement>(c: &mut Criterion<M>) {
    for case in cases() {
        let mut g = c.benchmark_group(&case.name);
        g.throughput(Throughput::Elements(1));
        let resume = case.resume;
        // Every provider of this build (RustCrypto; aws-lc-rs with `--features aws-lc`).
        for provider in all_providers() {
            let suite13 = case.v13.map(|_| SUITE13);
            let cookie = case.v13.unwrap_or(true);
            let mut ours = ours::Harness::with_provider_of(case.mode, suite13, &provider, |s| {
                if !cookie {
                    s.cookie = None;
                }
                s.skip_cookie_on_resumption = case.skip_cookie;
                if case.early {
                    s.early_data = Some(coaps_dtls::EarlyDataConfig::default());
                }
            });
            if case.psk_ke {
                ours.tweak_client(|c| c.resumption_key_exchange = coaps_dtls::ResumptionKeyExchange::PskKe);
            }
            if resume {
                ours.prime_session();
            }
            let id = function_id(&*provider);
            if case.early {
                g.bench_function(id, |b| b.iter(|| black_box(ours.handshake_early(&[0x42; 32]))));
            } else {
                g.bench_function(id, |b| b.iter(|| black_box(ours.handshake(resume))));
            }
        }
        if case.v13.is_none() {
            let mut theirs = ossl::Harness::new(case.mode);
            if resume {
                theirs.prime_session();
            }
            g.bench_function("openssl", |b| b.iter(|| black_box(theirs.handshake(resume))));
        }
        g.finish();
    }
}

fn table() {
    let root = env!("CARGO_MANIFEST_DIR");
    for provider in all_providers() {
        let id = function_id(&*provider);
        println!("\n{} provider (criterion function `{id}`):", provider.name());
        table_for(root, &id);
    }
}

fn table_for(root: &str, id: &str) {
    let rows: Vec<_> = cases()
        .into_iter()
        .filter_map(|case| {
            let theirs = openssl_group(&case);
            Some((mean_ns(root, &case.name, id)?, mean_ns(root, &theirs, "openssl")?, case.name, theirs))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    println!(
        "\n| mode | coaps handshakes/s | openssl (DTLS 1.2) row | openssl handshakes/s | coaps CPU | openssl CPU | coaps/openssl rate |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|");
    for (ours, theirs, name, theirs_name) in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.2} |",
            name.trim_start_matches("handshake/"),
            per_second(ours),
            theirs_name.trim_start_matches("handshake/"),
            per_second(theirs),
            duration(ours),
            duration(theirs),
            theirs / ours
        );
    }
    println!(
        "\ndtls13-* rows: this engine's DTLS 1.3 ({SUITE13:?}, P-256); OpenSSL's figure is its DTLS 1.2 row named \
         beside it. wolfSSL DTLS 1.3: `cd benches/wolfssl && cargo bench` (outside the workspace)."
    );
}

fn run<M: Measurement>(c: Criterion<M>) {
    let mut c = c
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
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
