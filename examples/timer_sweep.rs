//! The retransmission-timer sweep of issue 11 on the `coaps-sim` network: DTLS 1.2 and 1.3 PSK
//! handshakes at RTT {50 ms, 500 ms, 1.5 s, 3 s} × loss {0, 10, 30 %} each way, with the RFC
//! 6347 timers, the `auto` link profile and the matching long-delay profile, over many seeds.
//! Prints a Markdown table: completion rate, median and 95th-percentile completion time,
//! spurious retransmitted datagrams, datagrams and bytes sent per handshake.
//!
//! ```text
//! cargo run --release --example timer_sweep [SEEDS]     # default 500 seeds per cell
//! ```
//!
//! What "spurious" means, and how a handshake is run: `coaps_test_support::sweep`.

use coaps_dtls::DtlsVersion;
use coaps_test_support::sweep;

fn main() {
    let seeds = match std::env::args().nth(1).map(|s| s.parse::<u64>()) {
        None => 500,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: timer_sweep [SEEDS]   (SEEDS: a positive number of seeds per cell, default 500)");
            std::process::exit(2);
        }
    };
    println!("{seeds} seeds per cell; PSK, cookie exchange on, fixed one-way latency RTT/2, loss each way.\n");
    println!("{}", sweep::HEADER);
    for version in [DtlsVersion::Dtls12, DtlsVersion::Dtls13] {
        for cell in sweep::sweep(version, seeds) {
            println!("{}", sweep::row(&cell));
        }
    }
}
