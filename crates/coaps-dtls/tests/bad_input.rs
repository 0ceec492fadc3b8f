//! Bad input against a server endpoint in every handshake state: "truncated, oversized,
//! garbage and replayed datagrams in every handshake state never panic, never allocate without
//! bound, and never harm other associations".
//!
//! A server and two clients, A and B, run real handshakes concurrently over a lossless FIFO
//! wire driven step by step. After every datagram of A's handshake a fresh, identical run
//! (everything is seeded) is stopped and one class of bad input is injected into the server,
//! from A's own address or from an attacker's; then the run continues and must end with A and
//! B connected and their application data echoed.

use coaps_test_support::dtls as common;

use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{Endpoint, ServerConfig};
use common::inject::*;
use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A DTLS 1.2 world: both clients start now.
fn world(server_cfg: Arc<ServerConfig>, client_cfg: Arc<coaps_dtls::ClientConfig>, seed: u64) -> World {
    World::new(&Setup::dtls12(server_cfg, client_cfg), seed, Instant::now())
}

/// Whether injecting this class from A's own address may legitimately end A's handshake.
///
/// DTLS 1.2 handshake messages are unauthenticated until Finished (RFC 6347 §4.2,
/// RFC 5246 §7.4.9), so whoever can send from A's address can forge an in-sequence message
/// that the server must treat as A's: a flipped message_seq turns an old message into the
/// next expected one, and a reflected flight is a well-formed message of the wrong kind.
/// The engine must then fail the handshake cleanly (both sides see `Closed`), never hang,
/// and never touch B. Likewise a protected record that does not decrypt while A's handshake
/// runs is taken for A's Finished and ends it with bad_record_mac (RFC 5246 §7.4.9: that is
/// how a wrong PSK key shows at once); whoever can send from A's address could end it as well
/// with a plaintext alert. Every other class must leave A's handshake intact.
fn may_break_a(class: Class) -> bool {
    matches!(class, Class::Flipped | Class::Reflected | Class::BadRecords)
}

fn bad_inputs(class: Class, recorded: &[Vec<u8>], rng: &mut Prng) -> Vec<Vec<u8>> {
    match class {
        Class::Truncated => truncations(recorded, &[0, 1, 3, 12, 13, 14, 25], rng),
        // Header fields first (type, version, epoch, seq, length, handshake type, length,
        // message_seq, fragment offset/length), then random positions.
        Class::Flipped => flips(recorded, &[0, 2, 4, 10, 11, 12, 13, 15, 18, 21, 24], rng),
        Class::Replayed | Class::Reflected => replays(recorded),
        Class::Oversized => {
            let mut out = oversized_plaintext(rng);
            // Many records in one datagram.
            out.push(many_plaintext_records());
            out
        }
        Class::Garbage => {
            let mut out = garbage(rng, 40);
            // Garbage behind a plausible handshake record header.
            for _ in 0..20 {
                let n = rng.below(300);
                out.push(record(22, 0xfefd, 0, rng.below(100) as u64, &rng.bytes(n)));
            }
            out
        }
        Class::BadRecords => {
            let mut out = Vec::new();
            let payloads: Vec<Vec<u8>> =
                recorded.iter().take(4).map(|d| d[13.min(d.len())..].to_vec()).chain([rng.bytes(40)]).collect();
            for p in &payloads {
                for (ct, epoch, version) in [
                    (23, 1, 0xfefd),
                    (22, 1, 0xfefd),
                    (21, 1, 0xfefd),
                    (22, 2, 0xfefd),
                    (23, 0xffff, 0xfefd),
                    (0, 0, 0xfefd),
                    (19, 0, 0xfefd),
                    (99, 1, 0xfefd),
                    (255, 0, 0xfefd),
                    (22, 0, 0x0303),
                    (22, 0, 0xfefc),
                    (22, 0, 0x0000),
                ] {
                    out.push(record(ct, version, epoch, rng.below(1 << 20) as u64, p));
                }
            }
            // More epoch-1 records than the early-record buffer holds.
            for s in 0..40 {
                out.push(record(22, 0xfefd, 1, s, &rng.bytes(48)));
            }
            out
        }
    }
}

fn seeds_debug_or_release(debug: u64, release: u64) -> u64 {
    if cfg!(debug_assertions) { debug } else { release }
}

/// Runs the whole matrix for one mode. Returns how many injections were made.
fn matrix(mode: Mode, mtu: usize, point_stride: usize) -> usize {
    let (mut server_cfg, mut client_cfg) = configs(mode, None);
    Arc::make_mut(&mut server_cfg).common.mtu = mtu;
    Arc::make_mut(&mut client_cfg).common.mtu = mtu;
    let seed = 11;
    let mut reference = world(server_cfg.clone(), client_cfg.clone(), seed);
    reference.run_to_end();
    assert!(reference.a().echoed && reference.b().echoed, "{mode:?}: reference run failed");
    let a_total = reference.a_delivered();
    let all = reference.delivered(|_| true);
    let mut tally = Tally::default();
    for point in (0..=a_total).step_by(point_stride) {
        for class in CLASSES {
            for from in [a_addr(), attacker()] {
                let mut w = world(server_cfg.clone(), client_cfg.clone(), seed);
                while w.a_delivered() < point && w.step() {}
                // From A's address: A's own old datagrams (what an on-path attacker saw), or for
                // `Reflected` everyone else's so far; from a stranger, anything of the exchange.
                let recorded = if from != a_addr() {
                    all.clone()
                } else {
                    w.delivered(|x| (x.from == a_addr()) != (class == Class::Reflected))
                };
                let mut rng = Prng(0x9e37_79b9_7f4a_7c15 ^ (point as u64) << 8 ^ class as u64);
                let bad = bad_inputs(class, &recorded, &mut rng);
                tally.injected += bad.len();
                w.inject_server(from, &bad);
                w.run_to_end();
                let what = format!("{mode:?} point {point}/{a_total} {class:?} from {from}");
                w.judge(&what, from == a_addr() && may_break_a(class), false, &mut tally);
            }
        }
    }
    tally.assert_no_failures();
    eprintln!("{mode:?}: {} forged-message runs ended A's handshake cleanly", tally.clean_failures);
    tally.injected
}

#[test]
fn bad_input_at_every_point_of_a_psk_handshake() {
    let n = matrix(Mode::Psk, 1152, 1);
    eprintln!("PSK: {n} bad datagrams injected");
}

#[test]
fn bad_input_at_every_point_of_a_fragmented_certificate_handshake() {
    // 300-byte datagrams fragment the certificate flight, so injections land mid-reassembly.
    let n = matrix(Mode::EcdsaMutual, 300, seeds_debug_or_release(3, 1) as usize);
    eprintln!("ECDSA mutual: {n} bad datagrams injected");
}

/// A real first ClientHello datagram (PSK client), to spoof from.
fn client_hello_datagram() -> Vec<u8> {
    let (_, client_cfg) = configs(Mode::Psk, None);
    let mut ep = Endpoint::client(SeededRng::from_seed_u64(99));
    ep.connect(Instant::now(), server(), client_cfg, "localhost", None).unwrap();
    ep.poll_transmit().unwrap().payload
}

#[test]
fn spoofed_client_hellos_leave_no_state_behind_the_cookie_gate() {
    let (server_cfg, _) = configs(Mode::Psk, None);
    assert!(server_cfg.cookie.is_some());
    let now = Instant::now();
    let mut ep = Endpoint::server(server_cfg, SeededRng::from_seed_u64(1), now);
    let ch = client_hello_datagram();
    let mut rng = Prng(42);
    let mut answers = 0;
    for _ in 0..10_000 {
        let (from, d) = spoofed_client_hello(&ch, &mut rng);
        ep.handle_datagram(now, from, &d);
        while let Some(t) = ep.poll_transmit() {
            assert_eq!(t.destination, from);
            assert!(t.payload.len() <= d.len(), "HelloVerifyRequest larger than the ClientHello");
            answers += 1;
        }
        assert_eq!(ep.connection_count(), 0);
    }
    assert_eq!(ep.connection_count(), 0);
    assert_eq!(ep.stats().hello_verify_requests, 10_000);
    assert_eq!(answers, 10_000);
    assert_eq!(ep.stats().connections_created, 0);
    assert_eq!(ep.poll_timeout(), None, "a stateless gate arms no timer");
}

#[test]
fn half_open_limit_holds_without_cookies_evicts_the_oldest_and_spares_established_peers() {
    let (psk_server, client_cfg) = configs(Mode::Psk, None);
    let server_cfg = Arc::new(ServerConfig { cookie: None, max_handshakes: 100, ..(*psk_server).clone() });
    let mut w = world(server_cfg, client_cfg, 5);
    w.run_to_end();
    assert!(w.a().echoed && w.b().echoed);
    assert_eq!(w.server.connection_count(), 2);

    let ch = client_hello_datagram();
    let mut rng = Prng(7);
    let flood = 1_000;
    for _ in 0..flood {
        let (from, d) = spoofed_client_hello(&ch, &mut rng);
        w.server.handle_datagram(w.now, from, &d);
        while w.server.poll_transmit().is_some() {}
        assert!(w.server.connection_count() <= 102, "half-open limit exceeded: {}", w.server.connection_count());
    }
    assert_eq!(w.server.connection_count(), 102, "100 half-open plus A and B");
    // At the limit the oldest half-open handshake makes room for the newest (a burst of
    // abandoned handshakes cannot lock new clients out); nobody established is touched.
    assert_eq!(w.server.stats().evicted_half_open, flood - 100);
    assert_eq!(w.server.stats().dropped_limit, 0);
    assert_eq!(w.server.half_open_count(), 100);

    // Established peers still talk.
    assert!(w.everyone_talks_again(), "established peers harmed by the flood");

    // The half-open handshakes give up on their own and free their slots.
    let start = w.now;
    while let Some(t) = w.server.poll_timeout() {
        w.now = w.now.max(t);
        w.server.handle_timeout(w.now);
        while w.server.poll_transmit().is_some() {}
        while w.server.poll_event().is_some() {}
        assert!(w.now - start < Duration::from_secs(3600), "half-open handshakes never expire");
    }
    assert_eq!(w.server.connection_count(), 2, "only A and B remain");
}

#[test]
fn replayed_application_data_is_dropped_and_counted() {
    let (server_cfg, client_cfg) = configs(Mode::Psk, None);
    let mut w = world(server_cfg, client_cfg, 9);
    w.run_to_end();
    assert!(w.a().echoed && w.b().echoed);
    let app = w
        .log
        .iter()
        .find(|x| x.from == a_addr() && x.payload.first() == Some(&23) && x.payload[3..5] == [0, 1])
        .expect("A's application data on the wire")
        .payload
        .clone();
    let events_before = w.server_data_events(a_addr());
    let replayed_before = w.server.connection(&a_addr()).unwrap().stats().records_replayed;
    w.server.handle_datagram(w.now, a_addr(), &app);
    w.collect();
    assert_eq!(w.server_data_events(a_addr()), events_before, "a replayed record was delivered again");
    assert_eq!(w.server.connection(&a_addr()).unwrap().stats().records_replayed, replayed_before + 1);
    // From another address it reaches no association at all.
    w.server.handle_datagram(w.now, attacker(), &app);
    w.collect();
    assert_eq!(w.server_data_events(a_addr()), events_before);
    assert!(w.server.connection(&attacker()).is_none());
    // And the association still works.
    assert!(w.a_talks_again());
}

/// Regression: a replay of the cookie-bearing ClientHello that created an association passed
/// the cookie gate again (the cookie was still fresh) and replaced the live association with a
/// new half-open one. RFC 6347 §4.2.8: an association is not destroyed before the client
/// demonstrates reachability, and a replay demonstrates nothing.
#[test]
fn replayed_client_hello_does_not_replace_an_established_association() {
    let (server_cfg, client_cfg) = configs(Mode::Psk, None);
    let mut w = world(server_cfg, client_cfg, 13);
    w.run_to_end();
    assert!(w.a().echoed);
    let from_a: Vec<Vec<u8>> = w.log.iter().filter(|x| x.from == a_addr()).map(|x| x.payload.clone()).collect();
    // A's second datagram is its ClientHello with the cookie.
    let ch2 = from_a[1].clone();
    assert_eq!((ch2[0], ch2[13]), (22, 1), "a ClientHello record");
    let created = w.server.stats().connections_created;
    for _ in 0..3 {
        w.server.handle_datagram(w.now, a_addr(), &ch2);
        w.collect();
    }
    assert_eq!(w.server.stats().connections_created, created, "a replay created an association");
    assert!(w.server.connection(&a_addr()).unwrap().is_established());
    w.run_to_end();
    assert!(w.a_talks_again(), "A's association was replaced");
}

/// Regression: the cookie binds version, random, session_id, suites and compression methods
/// but not the extensions, so a replayed cookie-bearing ClientHello with an extension byte
/// altered still passed the gate and replaced A's established association.
#[test]
fn altered_replay_of_the_client_hello_does_not_replace_an_established_association() {
    let (server_cfg, client_cfg) = configs(Mode::Psk, None);
    let mut w = world(server_cfg, client_cfg, 17);
    w.run_to_end();
    assert!(w.a().echoed);
    let mut ch2 = w.log.iter().filter(|x| x.from == a_addr()).nth(1).unwrap().payload.clone();
    assert_eq!((ch2[0], ch2[13]), (22, 1), "a ClientHello record");
    // Another server name in the SNI extension: well-formed, and not bound by the cookie.
    let sni = ch2.windows(9).position(|x| x == b"localhost").expect("SNI in the ClientHello");
    ch2[sni] = b'm';
    let created = w.server.stats().connections_created;
    w.server.handle_datagram(w.now, a_addr(), &ch2);
    w.collect();
    assert_eq!(w.server.stats().connections_created, created, "an altered replay created an association");
    assert!(w.server.connection(&a_addr()).unwrap().is_established());
    w.run_to_end();
    assert!(w.a_talks_again(), "A's association was replaced");
}
