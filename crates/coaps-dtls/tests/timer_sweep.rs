//! Issue 11's simulator sweep, on a few seeds (`examples/timer_sweep.rs` prints the full
//! table): at RTT {50 ms, 500 ms, 1.5 s, 3 s} × loss {0, 10, 30 %}, the tuned timers (`auto`
//! and the matching long-delay profile) never complete fewer handshakes than the RFC 6347
//! timers, and from 500 ms on they send fewer spurious datagrams (summed over the losses);
//! where the RFC's 1 s is shorter than the RTT (1.5 s, 3 s) also no more at every loss, and
//! strictly fewer without loss.

use coaps_dtls::DtlsVersion;
use coaps_test_support::sweep::{self, Cell, Timers};
use std::time::Duration;

/// Seeds per cell; `COAPS_SWEEP_SEEDS` overrides. Debug builds (slow P-256 in DTLS 1.3) run
/// fewer.
fn seeds() -> u64 {
    std::env::var("COAPS_SWEEP_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(if cfg!(debug_assertions) {
        8
    } else {
        40
    })
}

fn check(version: DtlsVersion) {
    let cells = sweep::sweep(version, seeds());
    println!("{}", sweep::HEADER);
    for c in &cells {
        println!("{}", sweep::row(c));
    }
    let rfc = |c: &Cell| {
        cells.iter().find(|r| r.timers == Timers::Rfc && r.rtt == c.rtt && r.loss == c.loss).expect("the RFC cell")
    };
    for c in cells.iter().filter(|c| c.timers != Timers::Rfc) {
        let r = rfc(c);
        let what = format!("{version:?} {} at {:?}, loss {}", c.timers.label(), c.rtt, c.loss);
        assert!(c.completed >= r.completed, "{what}: {} completed, RFC timers {}", c.completed, r.completed);
        if c.rtt > Duration::from_secs(1) {
            // The RFC's 1 s fires before the answer can come: strictly fewer where it does.
            assert!(c.spurious <= r.spurious, "{what}: {} spurious datagrams, RFC timers {}", c.spurious, r.spurious);
            if c.loss == 0.0 {
                assert!(
                    r.spurious > 0 && c.spurious < r.spurious,
                    "{what}: {} spurious, RFC {}",
                    c.spurious,
                    r.spurious
                );
            }
        }
    }
    for rtt in sweep::RTTS_MS.map(Duration::from_millis).into_iter().filter(|r| *r >= Duration::from_millis(500)) {
        let sum = |t: &dyn Fn(Timers) -> bool| {
            cells.iter().filter(|c| c.rtt == rtt && t(c.timers)).map(|c| c.spurious).sum::<u64>()
        };
        let rfc_total = sum(&|t| t == Timers::Rfc);
        for profile in [coaps_dtls::LinkProfile::Auto, sweep::matching_profile(rtt)] {
            let tuned = sum(&|t| t == Timers::Link(profile));
            let what = format!(
                "{version:?} {profile} at {rtt:?}: {tuned} spurious datagrams over all losses, RFC {rfc_total}"
            );
            // Issue 11: fewer spurious datagrams at RTT >= 500 ms. At 500 ms the RFC's 1 s never
            // fires before a first answer could come; what the definition counts there are
            // timers firing within an RTT of a peer-triggered resend of the same flight under
            // loss, which the tuned timers' longer intervals make rarer (40 seeds: RFC 0.61
            // per 1.2 handshake over the three losses, auto 0.33, lte-m 0.43).
            assert!(tuned < rfc_total, "{what}");
        }
    }
}

#[test]
fn tuned_timers_dtls12() {
    check(DtlsVersion::Dtls12);
}

#[test]
fn tuned_timers_dtls13() {
    check(DtlsVersion::Dtls13);
}
