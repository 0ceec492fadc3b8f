//! The bench harnesses themselves: every mode completes on both stacks with the expected
//! flights, resumption is really abbreviated, and the engine's cookie gate allocates nothing.
//! These keep the benches honest (a bench that silently measured a failing handshake, or a
//! full handshake labelled "resumed", would be worthless) and run in `cargo test`.

use coaps_bench_support::alloc::thread_allocations;
use coaps_bench_support::{CountingAlloc, Mode, ossl, ours};
use coaps_dtls::StatelessOutcome;
use std::net::SocketAddr;
use std::time::Instant;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn every_mode_completes_on_both_stacks_with_a_cookie_round_trip() {
    for mode in Mode::ALL {
        let o = ours::Harness::new(mode).handshake(false);
        let t = ossl::Harness::new(mode).handshake(false);
        for (stack, o) in [("coaps", o), ("openssl", t)] {
            // CH, HVR, CH+cookie, server flight, client flight, server CCS+Finished.
            assert_eq!((o.wire.c2s_datagrams, o.wire.s2c_datagrams), (3, 3), "{mode} {stack}: {:?}", o.wire);
            assert!(o.wire.hello_verify_request_bytes < o.wire.client_hello_bytes, "{mode} {stack}: amplification");
        }
    }
}

#[test]
fn resumption_is_abbreviated_on_both_stacks() {
    for mode in [Mode::PskCcm8, Mode::EcdsaCcm8] {
        let mut o = ours::Harness::new(mode);
        o.prime_session();
        let mut t = ossl::Harness::new(mode);
        t.prime_session();
        // `handshake(true)` panics unless both sides report a resumed session.
        for (stack, w) in [("coaps", o.handshake(true).wire), ("openssl", t.handshake(true).wire)] {
            assert_eq!((w.c2s_datagrams, w.s2c_datagrams), (3, 2), "{mode} {stack}: {w:?}");
        }
    }
}

#[test]
fn cookie_gate_answers_without_allocating() {
    let ch = ours::client_hello(Mode::PskCcm8);
    let mut h = ours::Harness::new(Mode::PskCcm8);
    let now = Instant::now();
    let mut out = [0u8; 256];
    let mut answer = |port: u16| {
        let peer: SocketAddr = ([203, 0, 113, 7], port).into();
        h.server.stateless_check(now, peer, &ch, &mut out)
    };
    assert!(matches!(answer(1000), StatelessOutcome::HelloVerifyRequest(_)));
    let probe = thread_allocations();
    drop(std::hint::black_box(vec![0u8; 8]));
    assert_eq!(thread_allocations(), probe + 1, "the counting allocator is not counting");
    let before = thread_allocations();
    for port in 1001..2001 {
        assert!(matches!(answer(port), StatelessOutcome::HelloVerifyRequest(_)));
    }
    assert_eq!(thread_allocations() - before, 0, "allocations in 1000 HelloVerifyRequests");
}
