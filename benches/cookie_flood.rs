//! A flood of spoofed ClientHellos (no cookie, a new source port each time): how many
//! HelloVerifyRequests per second the server answers, and how many heap allocations each answer
//! costs.
//!
//! * `coaps`: `Endpoint::stateless_check` (the zero-allocation cookie gate) into a stack buffer.
//! * `openssl`: what a server on the `openssl` crate does (the crate has no `DTLSv1_listen`): a
//!   fresh `Ssl` with `SSL_OP_COOKIE_EXCHANGE` per ClientHello, driven until it has written the
//!   HelloVerifyRequest.
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
use coaps_dtls::StatelessOutcome;
use criterion::measurement::Measurement;
use criterion::{Criterion, Throughput};
use openssl::ssl::{ErrorCode, SslStream};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const GROUP: &str = "cookie_flood/hello_verify_request";

/// Spoofed sources: one address, a new port per datagram.
fn spoofed(i: u64) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), 1024 + (i % 64_000) as u16)
}

/// Answers one spoofed ClientHello through the engine's gate; returns the HVR length.
fn ours_answer(server: &mut coaps_dtls::Endpoint, now: Instant, i: u64, ch: &[u8], out: &mut [u8; 256]) -> usize {
    match server.stateless_check(now, spoofed(i), ch, out) {
        StatelessOutcome::HelloVerifyRequest(n) => n,
        other => panic!("expected a HelloVerifyRequest, got {other:?}"),
    }
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

fn allocation_count(ch: &[u8]) {
    let mut h = ours::Harness::new(Mode::PskCcm8);
    let now = Instant::now();
    let mut out = [0u8; 256];
    // Warm up: first calls may initialise lazily (CPU feature detection).
    for i in 0..16 {
        ours_answer(&mut h.server, now, i, ch, &mut out);
    }
    // The counter must see a heap allocation, or a 0 below would mean nothing.
    let probe = allocations();
    black_box(vec![0u8; 16]);
    assert!(allocations() > probe, "the counting allocator is not installed");
    const N: u64 = 10_000;
    let before = allocations();
    for i in 0..N {
        black_box(ours_answer(&mut h.server, now, i, black_box(ch), &mut out));
    }
    let total = allocations() - before;
    println!(
        "allocations per HelloVerifyRequest: {} ({total} in {N} answers)",
        if total.is_multiple_of(N) { format!("{}", total / N) } else { format!("{:.3}", total as f64 / N as f64) }
    );
    if total > 0 && std::env::var_os("COAPS_ALLOC_TRACE").is_some() {
        trace(true);
        ours_answer(&mut h.server, now, N, ch, &mut out);
        trace(false);
    }
}

fn bench<M: Measurement>(c: &mut Criterion<M>, ch: &[u8]) {
    let mut g = c.benchmark_group(GROUP);
    g.throughput(Throughput::Elements(1));
    let mut h = ours::Harness::new(Mode::PskCcm8);
    let now = Instant::now();
    let mut out = [0u8; 256];
    let mut i = 0u64;
    g.bench_function("coaps", |b| {
        b.iter(|| {
            i += 1;
            ours_answer(&mut h.server, now, i, black_box(ch), &mut out)
        })
    });
    let theirs = ossl::Harness::new(Mode::PskCcm8);
    g.bench_function("openssl", |b| b.iter(|| openssl_answer(&theirs, black_box(ch))));
    g.finish();
}

fn run<M: Measurement>(c: Criterion<M>, ch: &[u8]) {
    let mut c = c
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench(&mut c, ch);
    c.final_summary();
}

fn main() {
    coaps_bench_support::report::mark_start();
    // The engine's own first ClientHello: realistic size and extensions.
    let ch = ours::client_hello(Mode::PskCcm8);
    let mut out = [0u8; 256];
    let mut h = ours::Harness::new(Mode::PskCcm8);
    let hvr = ours_answer(&mut h.server, Instant::now(), 0, &ch, &mut out);
    let theirs = openssl_answer(&ossl::Harness::new(Mode::PskCcm8), &ch);
    println!("ClientHello {} B -> HelloVerifyRequest: coaps {hvr} B, openssl {theirs} B", ch.len());
    allocation_count(&ch);

    if wall_time_requested() {
        run(Criterion::default(), &ch);
    } else {
        run(Criterion::default().with_measurement(ThreadCpuTime), &ch);
    }

    let root = env!("CARGO_MANIFEST_DIR");
    if let (Some(o), Some(t)) = (mean_ns(root, GROUP, "coaps"), mean_ns(root, GROUP, "openssl")) {
        println!("\n| HelloVerifyRequests | coaps/s | openssl/s | coaps CPU | openssl CPU | ratio |");
        println!("|---|---:|---:|---:|---:|---:|");
        println!(
            "| spoofed ClientHello, new port each | {} | {} | {} | {} | {:.1} |",
            per_second(o),
            per_second(t),
            duration(o),
            duration(t),
            t / o
        );
    }
}
