//! Bytes and datagrams on the wire per handshake mode, this engine beside OpenSSL, both with the
//! cookie exchange (HelloVerifyRequest round trip included) and without. Not a timing bench:
//! it runs each handshake once in memory and prints a table. The engine's heap allocations per
//! handshake (client and server together) are counted too; OpenSSL's go through `malloc`, not
//! the Rust allocator, so they are not.
//!
//! `cargo bench --bench wire_bytes`

use coaps_bench_support::alloc::thread_allocations as allocations;
use coaps_bench_support::{CountingAlloc, Mode, Outcome, ossl, ours};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn row(label: &str, stack: &str, cookies: bool, o: &Outcome, allocs: Option<u64>) {
    let w = &o.wire;
    let hvr = if cookies { format!("{} + {}", w.client_hello_bytes, w.hello_verify_request_bytes) } else { "-".into() };
    println!(
        "| {label:<36} | {stack:<7} | {:>3} / {:>5} | {:>3} / {:>5} | {:>3} | {:>5} | {hvr:>11} | {:>6} |",
        w.c2s_datagrams,
        w.c2s_bytes,
        w.s2c_datagrams,
        w.s2c_bytes,
        w.datagrams(),
        w.bytes(),
        allocs.map_or("-".into(), |a| a.to_string()),
    );
}

fn main() {
    println!("Bytes on the wire per DTLS 1.2 handshake (UDP payloads; MTU 1152; in memory, no loss)");
    println!();
    println!("| {:<36} | {:<7} | c→s dg / B  | s→c dg / B  | dg  | bytes | CH1 + HVR B | allocs |", "mode", "stack");
    println!("|{:-<38}|{:-<9}|{:-<13}|{:-<13}|{:-<5}|{:-<7}|{:-<13}|{:-<8}|", "", "", "", "", "", "", "", "");
    for cookies in [true, false] {
        for mode in Mode::ALL {
            for resume in [false, true] {
                if resume && !matches!(mode, Mode::PskCcm8 | Mode::EcdsaCcm8) {
                    continue;
                }
                let label = format!(
                    "{}{}{}",
                    if resume { "resumed " } else { "" },
                    mode,
                    if cookies { "" } else { " (no cookie)" }
                );
                let mut h = ours::Harness::with(mode, |c| {
                    if !cookies {
                        c.cookie = None;
                    }
                });
                if resume {
                    h.prime_session();
                }
                // One handshake first, so lazily built state (e.g. the CPU-feature probes) is
                // not counted.
                h.handshake(resume);
                let before = allocations();
                let o = h.handshake(resume);
                let allocs = allocations() - before;
                row(&label, "coaps", cookies, &o, Some(allocs));

                let mut h = ossl::Harness::with_cookies(mode, cookies);
                if resume {
                    h.prime_session();
                }
                let o = h.handshake(resume);
                row(&label, "openssl", cookies, &o, None);
            }
        }
    }
    println!();
    println!("dg = datagrams; CH1 + HVR = first ClientHello + HelloVerifyRequest (the cookie round trip).");
    println!("OpenSSL: session tickets off (session-ID resumption, like the engine); cookie = 16-byte HMAC-SHA-256.");
}
