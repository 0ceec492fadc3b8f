//! A flood of spoofed ClientHellos (no cookie, a new source port each time): how many stateless
//! answers per second the server gives, and how many heap allocations each answer costs.
//!
//! * `gate`: the production gate, `coaps_dtls::gate::Gate` (the one `CookieLayer` runs and the
//!   `Endpoint` runs for its own cookie exchange), into a stack buffer: a DTLS 1.2 ClientHello
//!   gets a HelloVerifyRequest, a DTLS 1.3 one a stateless HelloRetryRequest.
//! * `layer`: the same through the Tower `CookieLayer` service, as the transport calls it
//!   (`Datagram` in, `Transmits` out). The `Datagram`'s payload (the transport's receive
//!   buffer) is made outside the allocation count, inside the timing.
//! * `openssl`: what a server on the `openssl` crate does (the crate has no `DTLSv1_listen`): a
//!   fresh `Ssl` with `SSL_OP_COOKIE_EXCHANGE` per ClientHello, driven until it has written the
//!   HelloVerifyRequest (DTLS 1.2 only: the `openssl` crate has no DTLS 1.3).
//!
//! Allocations are counted with a counting `#[global_allocator]` (Rust heap only: OpenSSL's
//! `malloc`s are not seen). `COAPS_ALLOC_TRACE=1` prints a backtrace for each allocation made
//! on the gate's path. Time is thread CPU time (`COAPS_BENCH_WALL=1` for wall time).
//!
//! `cargo bench --bench cookie_flood`

use coaps_bench_support::alloc::{thread_allocations as allocations, trace};
use coaps_bench_support::cpu::{ThreadCpuTime, wall_time_requested};
use coaps_bench_support::ossl::{self, End};
use coaps_bench_support::report::{duration, mean_ns, per_second};
use coaps_bench_support::{CountingAlloc, Mode, ours};
use coaps_dtls::CipherSuite;
use coaps_dtls::ServerConfig;
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::gate::{Gate, MAX_ANSWER_LEN, Verdict};
use coaps_tower::{CookieLayer, Datagram, Transmits};
use criterion::measurement::Measurement;
use criterion::{Criterion, Throughput};
use openssl::ssl::{ErrorCode, SslStream};
use std::future::Future;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tower::{Layer, Service};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const HVR: &str = "cookie_flood/hello_verify_request";
const HRR: &str = "cookie_flood/hello_retry_request";
const SUITE13: CipherSuite = CipherSuite::TLS_AES_128_CCM_8_SHA256;

/// Spoofed sources: one address, a new port per datagram.
fn spoofed(i: u64) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), 1024 + (i % 64_000) as u16)
}

/// The production gate of a server with `config`, and its RNG.
fn gate(config: &ServerConfig) -> (Gate, SeededRng) {
    let mut rng = SeededRng::from_seed_u64(7);
    (Gate::in_front(config, Instant::now(), &mut rng), rng)
}

/// Answers one spoofed ClientHello through the gate; returns the answer's length.
fn gate_answer(g: &(Gate, SeededRng), rng: &mut SeededRng, now: Instant, i: u64, ch: &[u8], out: &mut [u8]) -> usize {
    match g.0.check(now, spoofed(i), ch, out, rng) {
        Verdict::HelloVerifyRequest { len, .. } | Verdict::HelloRetryRequest { len, .. } => len,
        other => panic!("expected a stateless answer, got {other:?}"),
    }
}

/// A `CookieLayer` service whose inner service must never be called.
fn layer(
    config: &Arc<ServerConfig>,
) -> coaps_tower::Cookie<impl Service<Datagram, Response = Transmits, Error = std::io::Error>> {
    let inner =
        tower::service_fn(|_: Datagram| async { Err::<Transmits, std::io::Error>(std::io::Error::other("passed")) });
    CookieLayer::for_server_with_rng(config, SeededRng::from_seed_u64(7)).layer(inner)
}

/// Answers one spoofed ClientHello through the layer; returns the answer's length. Counts the
/// allocations of the call (not of the received datagram) into `allocs`.
fn layer_answer<S>(svc: &mut coaps_tower::Cookie<S>, now: Instant, i: u64, ch: &[u8], allocs: &mut u64) -> usize
where
    S: Service<Datagram, Response = Transmits>,
    S::Error: std::fmt::Debug,
{
    let d = Datagram { peer: spoofed(i), payload: ch.to_vec(), received_at: now, cookie: None, sessions: Vec::new() };
    let before = allocations();
    let mut f = std::pin::pin!(svc.call(d));
    let Poll::Ready(Ok(t)) = f.as_mut().poll(&mut Context::from_waker(Waker::noop())) else {
        panic!("the cookie layer did not answer at once")
    };
    *allocs += allocations() - before;
    assert_eq!(t.len(), 1, "one answer");
    t[0].payload.len()
}

/// Answers one ClientHello the way an `openssl`-crate server would; returns the HVR length.
fn openssl_answer(h: &ossl::Harness, ch: &[u8]) -> usize {
    let (_client, server_end, _pipe) = End::pair();
    server_end.inject(ch.to_vec());
    let mut s = SslStream::new(h.server_ssl(), server_end).expect("SslStream");
    match s.do_handshake() {
        Err(e) if e.code() == ErrorCode::WANT_READ => {}
        other => panic!("expected WANT_READ after the HelloVerifyRequest, got {other:?}"),
    }
    s.get_ref().take_sent().expect("HelloVerifyRequest").len()
}

fn per_answer(total: u64, n: u64) -> String {
    if total.is_multiple_of(n) { format!("{}", total / n) } else { format!("{:.3}", total as f64 / n as f64) }
}

fn allocation_count(label: &str, config: &Arc<ServerConfig>, ch: &[u8]) {
    const N: u64 = 10_000;
    let g = gate(config);
    let mut rng = SeededRng::from_seed_u64(8);
    let now = Instant::now();
    let mut out = [0u8; MAX_ANSWER_LEN];
    // Warm up: first calls may initialise lazily (CPU feature detection, the 1.3 cookie subkeys).
    for i in 0..16 {
        gate_answer(&g, &mut rng, now, i, ch, &mut out);
    }
    // The counter must see a heap allocation, or a 0 below would mean nothing.
    let probe = allocations();
    black_box(vec![0u8; 16]);
    assert!(allocations() > probe, "the counting allocator is not installed");
    let before = allocations();
    for i in 0..N {
        black_box(gate_answer(&g, &mut rng, now, i, black_box(ch), &mut out));
    }
    let total = allocations() - before;
    println!("{label}: allocations per answer, gate: {} ({total} in {N} answers)", per_answer(total, N));
    if total > 0 && std::env::var_os("COAPS_ALLOC_TRACE").is_some() {
        trace(true);
        gate_answer(&g, &mut rng, now, N, ch, &mut out);
        trace(false);
    }
    let mut svc = layer(config);
    let mut warm = 0;
    for i in 0..16 {
        layer_answer(&mut svc, now, i, ch, &mut warm);
    }
    let mut total = 0;
    for i in 0..N {
        black_box(layer_answer(&mut svc, now, i, black_box(ch), &mut total));
    }
    println!("{label}: allocations per answer, CookieLayer: {} ({total} in {N} answers)", per_answer(total, N));
}

fn bench<M: Measurement>(c: &mut Criterion<M>, group: &str, config: &Arc<ServerConfig>, ch: &[u8], openssl: bool) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    let gt = gate(config);
    let mut rng = SeededRng::from_seed_u64(8);
    let now = Instant::now();
    let mut out = [0u8; MAX_ANSWER_LEN];
    let mut i = 0u64;
    g.bench_function("gate", |b| {
        b.iter(|| {
            i += 1;
            gate_answer(&gt, &mut rng, now, i, black_box(ch), &mut out)
        })
    });
    let mut svc = layer(config);
    let mut allocs = 0;
    g.bench_function("layer", |b| {
        b.iter(|| {
            i += 1;
            layer_answer(&mut svc, now, i, black_box(ch), &mut allocs)
        })
    });
    if openssl {
        let theirs = ossl::Harness::new(Mode::PskCcm8);
        g.bench_function("openssl", |b| b.iter(|| openssl_answer(&theirs, black_box(ch))));
    }
    g.finish();
}

fn run<M: Measurement>(c: Criterion<M>, cases: &[(&str, Arc<ServerConfig>, Vec<u8>, bool)]) {
    let mut c = c
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    for (group, config, ch, openssl) in cases {
        bench(&mut c, group, config, ch, *openssl);
    }
    c.final_summary();
}

fn main() {
    coaps_bench_support::report::mark_start();
    // The engine's own first ClientHellos: realistic sizes and extensions.
    let ch12 = ours::client_hello(Mode::PskCcm8);
    let ch13 = ours::client_hello13(Mode::PskCcm8, SUITE13);
    let (config12, _) = ours::configs(Mode::PskCcm8);
    let (config13, _) = ours::configs13(Mode::PskCcm8, SUITE13);
    let mut out = [0u8; MAX_ANSWER_LEN];
    let mut rng = SeededRng::from_seed_u64(8);
    let hvr = gate_answer(&gate(&config12), &mut rng, Instant::now(), 0, &ch12, &mut out);
    let hrr = gate_answer(&gate(&config13), &mut rng, Instant::now(), 0, &ch13, &mut out);
    let theirs = openssl_answer(&ossl::Harness::new(Mode::PskCcm8), &ch12);
    println!("DTLS 1.2 ClientHello {} B -> HelloVerifyRequest: coaps {hvr} B, openssl {theirs} B", ch12.len());
    println!("DTLS 1.3 ClientHello {} B -> HelloRetryRequest: coaps {hrr} B", ch13.len());
    allocation_count("DTLS 1.2 HelloVerifyRequest", &config12, &ch12);
    allocation_count("DTLS 1.3 HelloRetryRequest", &config13, &ch13);

    let cases = [(HVR, config12, ch12, true), (HRR, config13, ch13, false)];
    if wall_time_requested() {
        run(Criterion::default(), &cases);
    } else {
        run(Criterion::default().with_measurement(ThreadCpuTime), &cases);
    }

    let root = env!("CARGO_MANIFEST_DIR");
    println!("\n| spoofed ClientHello, new port each | answers/s | CPU per answer | vs openssl |");
    println!("|---|---:|---:|---:|");
    let theirs = mean_ns(root, HVR, "openssl");
    for (group, label) in [(HVR, "DTLS 1.2 HelloVerifyRequest"), (HRR, "DTLS 1.3 HelloRetryRequest")] {
        for (function, who) in [("gate", "coaps Gate"), ("layer", "coaps CookieLayer"), ("openssl", "openssl")] {
            if let Some(ns) = mean_ns(root, group, function) {
                let ratio = theirs.map_or(String::from("-"), |t| format!("{:.1}", t / ns));
                println!("| {label}, {who} | {} | {} | {ratio} |", per_second(ns), duration(ns));
            }
        }
    }
}
