//! The Tower `CookieLayer`, the path a server really runs, answers a flood of spoofed
//! ClientHellos (a DTLS 1.2 HelloVerifyRequest, a DTLS 1.3 stateless HelloRetryRequest) without
//! a single heap allocation per answer: the answer is written into the received datagram's
//! buffer and travels in `Transmits`' inline slot (DESIGN "no state before proof").

use coaps_bench_support::alloc::thread_allocations;
use coaps_bench_support::{CountingAlloc, Mode, ours};
use coaps_dtls::CipherSuite;
use coaps_dtls::crypto::SeededRng;
use coaps_tower::{CookieLayer, Datagram, Transmits};
use std::net::SocketAddr;
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use tower::{Layer, Service};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn cookie_layer_answers_without_allocating() {
    let suite = CipherSuite::TLS_AES_128_CCM_8_SHA256;
    for (label, ch, server) in [
        ("DTLS 1.2 HelloVerifyRequest", ours::client_hello(Mode::PskCcm8), ours::configs(Mode::PskCcm8).0),
        (
            "DTLS 1.3 HelloRetryRequest",
            ours::client_hello13(Mode::PskCcm8, suite),
            ours::configs13(Mode::PskCcm8, suite).0,
        ),
    ] {
        // The inner service must never see a spoofed ClientHello.
        let inner = tower::service_fn(|_: Datagram| async {
            Err::<Transmits, std::io::Error>(std::io::Error::other("passed"))
        });
        let mut svc = CookieLayer::for_server_with_rng(&server, SeededRng::from_seed_u64(7)).layer(inner);
        let now = Instant::now();
        // The received datagrams exist before the count starts: the transport allocated them.
        let datagrams: Vec<Datagram> = (0..1001u16)
            .map(|port| {
                let peer: SocketAddr = ([203, 0, 113, 7], 1000 + port).into();
                let mut d = Datagram::new(peer, ch.clone());
                d.received_at = now;
                d
            })
            .collect();
        let mut counted = 0;
        let mut answered = 0;
        for (i, d) in datagrams.into_iter().enumerate() {
            let before = thread_allocations();
            let mut f = std::pin::pin!(svc.call(d));
            let Poll::Ready(Ok(answer)) = f.as_mut().poll(&mut Context::from_waker(Waker::noop())) else {
                panic!("{label}: the cookie layer did not answer at once")
            };
            // The first answer warms up (the DTLS 1.3 cookie subkeys are derived once).
            if i > 0 {
                counted += thread_allocations() - before;
            }
            assert_eq!(answer.len(), 1, "{label}: one answer");
            answered += usize::from(!answer[0].payload.is_empty());
        }
        let probe = thread_allocations();
        drop(std::hint::black_box(vec![0u8; 8]));
        assert_eq!(thread_allocations(), probe + 1, "the counting allocator is not counting");
        assert_eq!(answered, 1001, "{label}");
        assert_eq!(counted, 0, "{label}: allocations in 1000 answers");
    }
}
