//! The bench harnesses themselves: every mode completes on both stacks with the expected
//! flights, resumption is really abbreviated, and the engine's cookie gate allocates nothing.
//! These keep the benches honest (a bench that silently measured a failing handshake, or a
//! full handshake labelled "resumed", would be worthless) and run in `cargo test`.

use coaps_bench_support::alloc::thread_allocations;
use coaps_bench_support::{CountingAlloc, Mode, ossl, ours};
use coaps_dtls::CipherSuite;
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::gate::{Gate, MAX_ANSWER_LEN, Verdict};
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

/// The production gate (the one the Tower `CookieLayer` and the `Endpoint` run) answers a
/// DTLS 1.2 ClientHello with a HelloVerifyRequest and a DTLS 1.3 one with a stateless
/// HelloRetryRequest without a single heap allocation.
#[test]
fn gate_answers_without_allocating() {
    let suite = CipherSuite::TLS_AES_128_CCM_8_SHA256;
    for (label, ch, server) in [
        ("DTLS 1.2 HelloVerifyRequest", ours::client_hello(Mode::PskCcm8), ours::configs(Mode::PskCcm8).0),
        (
            "DTLS 1.3 HelloRetryRequest",
            ours::client_hello13(Mode::PskCcm8, suite),
            ours::configs13(Mode::PskCcm8, suite).0,
        ),
    ] {
        let now = Instant::now();
        let mut rng = SeededRng::from_seed_u64(1);
        let gate = Gate::in_front(&server, now, &mut rng);
        let mut out = [0u8; MAX_ANSWER_LEN];
        let mut answer = |port: u16| {
            let peer: SocketAddr = ([203, 0, 113, 7], port).into();
            match gate.check(now, peer, &ch, &mut out, &mut rng) {
                Verdict::HelloVerifyRequest { len, rejected: false }
                | Verdict::HelloRetryRequest { len, rejected: false } => len,
                other => panic!("{label}: {other:?}"),
            }
        };
        // Warm up: the DTLS 1.3 cookie subkeys are derived once per secret, on first use.
        answer(1000);
        let probe = thread_allocations();
        drop(std::hint::black_box(vec![0u8; 8]));
        assert_eq!(thread_allocations(), probe + 1, "the counting allocator is not counting");
        let before = thread_allocations();
        for port in 1001..2001 {
            std::hint::black_box(answer(port));
        }
        assert_eq!(thread_allocations() - before, 0, "{label}: allocations in 1000 answers");
    }
}
