//! Full DTLS 1.2 handshake CPU, client and server on one thread with datagrams handed over in
//! memory: this engine (`coaps`) beside OpenSSL (`openssl`) in the same criterion group, for
//! each mode, cookie exchange on for both. One iteration = one complete handshake (both
//! sides), so criterion's "elements/s" is handshakes per second on one core.
//!
//! Time is this thread's CPU time (see `coaps_bench_support::cpu`; `COAPS_BENCH_WALL=1` for
//! wall time). `cargo bench --bench handshake [-- FILTER]`; a ratio table is printed at the end.

use coaps_bench_support::cpu::{ThreadCpuTime, wall_time_requested};
use coaps_bench_support::report::{duration, mean_ns, per_second};
use coaps_bench_support::{Mode, ossl, ours};
use criterion::measurement::Measurement;
use criterion::{Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

/// (group name, mode, resumed)
fn cases() -> Vec<(String, Mode, bool)> {
    let mut v: Vec<_> = Mode::ALL.iter().map(|&m| (format!("handshake/{m}"), m, false)).collect();
    for m in [Mode::PskCcm8, Mode::EcdsaCcm8] {
        v.push((format!("handshake/resumed-{m}"), m, true));
    }
    v
}

fn bench<M: Measurement>(c: &mut Criterion<M>) {
    for (name, mode, resume) in cases() {
        let mut g = c.benchmark_group(&name);
        g.throughput(Throughput::Elements(1));
        let mut ours = ours::Harness::new(mode);
        let mut theirs = ossl::Harness::new(mode);
        if resume {
            ours.prime_session();
            theirs.prime_session();
        }
        g.bench_function("coaps", |b| b.iter(|| black_box(ours.handshake(resume))));
        g.bench_function("openssl", |b| b.iter(|| black_box(theirs.handshake(resume))));
        g.finish();
    }
}

fn table() {
    let root = env!("CARGO_MANIFEST_DIR");
    let rows: Vec<_> = cases()
        .into_iter()
        .filter_map(|(name, _, _)| Some((mean_ns(root, &name, "coaps")?, mean_ns(root, &name, "openssl")?, name)))
        .collect();
    if rows.is_empty() {
        return;
    }
    println!("\n| mode | coaps handshakes/s | openssl handshakes/s | coaps CPU | openssl CPU | coaps/openssl rate |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (ours, theirs, name) in rows {
        println!(
            "| {} | {} | {} | {} | {} | {:.2} |",
            name.trim_start_matches("handshake/"),
            per_second(ours),
            per_second(theirs),
            duration(ours),
            duration(theirs),
            theirs / ours
        );
    }
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
