//! Bad input against DTLS 1.3 (RFC 9147): the guarantees `bad_input.rs` gives DTLS 1.2, for
//! the 1.3 server endpoint (stateless HelloRetryRequest gate) and the 1.3 client.
//!
//! A server and two 1.3 clients, A and B, run real handshakes concurrently over a lossless
//! FIFO wire driven step by step. After every datagram of A's exchange a fresh, identical run
//! (everything is seeded and the clock starts at the same instant) is stopped and one class of
//! bad input is injected: into the server from A's address or from an attacker's, or into A
//! from the server's address. The run then continues and A and B must end connected with
//! their application data echoed, and A must still be able to talk afterwards. Modes: external
//! PSK behind the cookie exchange (HRR), ECDHE with certificates, mutual authentication with
//! fragmented flights, and ticket resumption; the post-handshake NewSessionTicket, its ACK
//! and a KeyUpdate are part of A's exchange.
//!
//! RFC 9147 §4.5.2: invalid records are discarded silently (and counted here, in [`Stats`]);
//! §5.1: the server keeps no state before the cookie round trip and answers an unproven
//! address with at most three times what it received.

use coaps_test_support::dtls as common;

use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{DtlsVersion, Endpoint, Event, Session};
use common::inject::*;
use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn setup(mode: Mode, mtu: usize) -> Setup {
    let (mut s, mut c) = configs(mode, None);
    Arc::make_mut(&mut s).common.mtu = mtu;
    let cm = Arc::make_mut(&mut c);
    cm.common.mtu = mtu;
    cm.version = DtlsVersion::Dtls13;
    Setup::dtls13(s, c)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    ServerFromA,
    ServerFromAttacker,
    ClientFromServer,
}

/// Whether this class, sent from A's own address to the server or from the server's to A,
/// may legitimately end A's handshake: the hellos travel in the clear and unauthenticated
/// (RFC 9147 §5), so a flipped ServerHello is a well-formed, wrong ServerHello that the
/// client must abort on (RFC 8446 §4.1.3), a flipped ClientHello a new ClientHello, and a
/// reflected hello a message of the wrong kind. The engine must fail cleanly: A sees
/// `Closed`, the server keeps no established association A gave up on, B is untouched.
/// Every other class must leave A intact.
fn may_break_a(class: Class, target: Target) -> bool {
    target != Target::ServerFromAttacker && matches!(class, Class::Flipped | Class::Reflected)
}

/// A DTLSPlaintext record (RFC 9147 §4).
fn plain(content_type: u8, epoch: u16, seq: u64, payload: &[u8]) -> Vec<u8> {
    record(content_type, 0xfefd, epoch, seq, payload)
}

/// A DTLSCiphertext record with a unified header (RFC 9147 §4): `001CSLEE`.
fn unified(epoch_bits: u8, seq16: bool, length: Option<u16>, cid: bool, body: &[u8]) -> Vec<u8> {
    let mut first = 0x20 | (epoch_bits & 3);
    if cid {
        first |= 0x10;
    }
    if seq16 {
        first |= 0x08;
    }
    if length.is_some() {
        first |= 0x04;
    }
    let mut v = vec![first, 0x5a];
    if seq16 {
        v.push(0xa5);
    }
    if let Some(l) = length {
        v.extend_from_slice(&l.to_be_bytes());
    }
    v.extend_from_slice(body);
    v
}

fn bad_inputs(class: Class, recorded: &[Vec<u8>], rng: &mut Prng) -> Vec<Vec<u8>> {
    match class {
        Class::Truncated => truncations(recorded, &[0, 1, 2, 3, 4, 5, 12, 13, 14, 25], rng),
        // Plaintext header fields, unified header bytes, handshake header, then random
        // positions (inside ciphertext: authentication failures).
        Class::Flipped => flips(recorded, &[0, 1, 2, 4, 10, 11, 12, 13, 15, 18, 21, 24], rng),
        Class::Replayed | Class::Reflected => replays(recorded),
        Class::Oversized => {
            let mut out = oversized_plaintext(rng);
            // Unified headers claiming 65535 bytes, and a record of 2^14 + 257 bytes (over the
            // RFC 8446 §5.2 ceiling).
            out.push(unified(3, true, Some(0xffff), false, &rng.bytes(100)));
            out.push(unified(2, true, Some(16_641), false, &rng.bytes(16_641)));
            out.push(unified(3, false, None, false, &rng.bytes(65_000)));
            // Many records in one datagram.
            let mut many = Vec::new();
            for _ in 0..2000 {
                many.extend(unified(3, false, Some(16), false, &rng.bytes(16)));
            }
            out.push(many);
            out.push(many_plaintext_records());
            out
        }
        Class::Garbage => {
            let mut out = garbage(rng, 40);
            for _ in 0..40 {
                // Garbage behind a plausible unified header or handshake record header.
                let n = rng.below(300);
                let first = 0x20 | (rng.next_u64() as u8 & 0x0f);
                out.push([&[first][..], &rng.bytes(n)].concat());
                out.push(plain(22, 0, rng.below(100) as u64, &rng.bytes(n)));
            }
            out
        }
        Class::BadRecords => {
            let mut out = Vec::new();
            for epoch_bits in 0..4 {
                for (seq16, length) in [(false, None), (true, None), (false, Some(40)), (true, Some(40))] {
                    out.push(unified(epoch_bits, seq16, length, false, &rng.bytes(40)));
                    // With a CID (unknown, or none negotiated) and too short to sample (§4.2.3).
                    out.push(unified(epoch_bits, seq16, length, true, &rng.bytes(40)));
                    out.push(unified(epoch_bits, seq16, length.map(|_| 15), false, &rng.bytes(15)));
                    // A length running past the datagram.
                    out.push(unified(epoch_bits, seq16, Some(41), false, &rng.bytes(40)));
                }
            }
            // Content types that never travel in the clear in 1.3 (§4.1), ACKs in the clear,
            // plaintext handshake records of later epochs, DTLS 1.2 types.
            for (ct, epoch) in [(23, 0), (23, 3), (26, 0), (26, 2), (22, 2), (22, 3), (20, 0), (25, 0), (24, 0)] {
                out.push(plain(ct, epoch, rng.below(1 << 20) as u64, &rng.bytes(32)));
            }
            // More held-back records than the early buffer takes.
            for s in 0..40u8 {
                out.push(unified(3, false, None, false, &[&[s][..], &rng.bytes(47)].concat()));
                out.push(unified(2, false, None, false, &[&[s][..], &rng.bytes(47)].concat()));
            }
            out
        }
    }
}

/// Runs the injection matrix over one scenario. Returns how many datagrams were injected.
fn matrix(name: &str, s: &Setup, point_stride: usize) -> usize {
    matrix_with(name, s, point_stride, true)
}

/// [`matrix`]; `attacker_has_future`: the attacker injects every datagram of the reference
/// run, also those the peers have not sent yet at the injection point (identical, the runs
/// being seeded). With Connection IDs such a pre-played record is authentic and newer than any
/// before, and RFC 9146 §6 lets it move the association to the attacker's address (under the
/// amplification limit, `cid13.rs`); that scenario gives the attacker only what was sent.
fn matrix_with(name: &str, s: &Setup, point_stride: usize, attacker_has_future: bool) -> usize {
    let seed = 21;
    let base = Instant::now();
    let mut reference = World::new(s, seed, base);
    reference.run_to_end();
    assert!(reference.a().echoed && reference.b().echoed, "{name}: reference run failed");
    if s.key_update {
        let c = reference.server.connection(&a_addr()).unwrap();
        assert_eq!(c.send_epoch(), 4, "{name}: the KeyUpdate completed");
    }
    assert!(reference.a_talks_again(), "{name}: reference A cannot talk after the KeyUpdate");
    let a_total = reference.a_delivered();
    let all = reference.delivered(|_| true);
    let mut tally = Tally::default();
    for point in (0..=a_total).step_by(point_stride) {
        for class in CLASSES {
            for target in [Target::ServerFromA, Target::ServerFromAttacker, Target::ClientFromServer] {
                let mut w = World::new(s, seed, base);
                while w.a_delivered() < point && w.step() {}
                let recorded = match target {
                    Target::ServerFromAttacker if attacker_has_future => all.clone(),
                    Target::ServerFromAttacker => w.delivered(|_| true),
                    Target::ServerFromA => w.delivered(|x| (x.from == a_addr()) != (class == Class::Reflected)),
                    Target::ClientFromServer => {
                        w.delivered(|x| (x.from == server() && x.to == a_addr()) != (class == Class::Reflected))
                    }
                };
                let mut rng =
                    Prng(0x9e37_79b9_7f4a_7c15 ^ ((point as u64) << 8) ^ ((class as u64) << 4) ^ target as u64);
                let bad = bad_inputs(class, &recorded, &mut rng);
                tally.injected += bad.len();
                match target {
                    Target::ServerFromA => w.inject_server(a_addr(), &bad),
                    Target::ServerFromAttacker => w.inject_server(attacker(), &bad),
                    Target::ClientFromServer => w.inject_client(&bad),
                }
                w.run_to_end();
                let what = format!("{name} point {point}/{a_total} {class:?} {target:?}");
                w.judge(&what, may_break_a(class, target), true, &mut tally);
            }
        }
    }
    tally.assert_no_failures();
    eprintln!(
        "{name}: {} bad datagrams injected, {} forged-hello runs ended A cleanly",
        tally.injected, tally.clean_failures
    );
    tally.injected
}

fn stride(debug: usize) -> usize {
    if cfg!(debug_assertions) { debug } else { 1 }
}

#[test]
fn bad_input_at_every_point_of_a_dtls13_psk_handshake_with_hrr() {
    let s = setup(Mode::Psk, 1152);
    assert!(s.server.cookie.is_some(), "cookies on: the HRR path");
    matrix("PSK+HRR", &s, stride(1));
}

#[test]
fn bad_input_at_every_point_of_a_dtls13_certificate_handshake() {
    matrix("X.509", &setup(Mode::EcdsaX509, 1152), stride(2));
}

#[test]
fn bad_input_at_every_point_of_a_fragmented_dtls13_mutual_handshake() {
    // 300-byte datagrams fragment both certificate flights: injections land mid-reassembly.
    matrix("mutual/300", &setup(Mode::EcdsaMutual, 300), stride(3));
}

/// With Connection IDs (RFC 9147 §9): records are found by CID, so an attacker's copies,
/// truncations and forgeries of CID records reach A's association from another address; none
/// of them may move it, break it or draw more than the amplification limit.
#[test]
fn bad_input_at_every_point_of_a_dtls13_handshake_with_cids() {
    let (mut srv, mut cli) = configs(Mode::Psk, None);
    Arc::make_mut(&mut srv).connection_id = Some(coaps_dtls::ConnectionIdConfig::new(6));
    let c = Arc::make_mut(&mut cli);
    c.version = DtlsVersion::Dtls13;
    c.connection_id = Some(coaps_dtls::ConnectionIdConfig::new(4));
    let s = Setup::dtls13(srv, cli);
    let mut reference = World::new(&s, 21, Instant::now());
    reference.run_to_end();
    let ids = reference.server.connection(&a_addr()).and_then(|c| c.connection_ids());
    assert!(ids.is_some_and(|i| i.incoming.len() == 6 && i.outgoing.len() == 4), "CIDs negotiated");
    matrix_with("PSK+CID", &s, stride(2), false);
}

#[test]
fn bad_input_at_every_point_of_a_dtls13_resumption() {
    let mut s = setup(Mode::EcdsaX509, 1152);
    let base = Instant::now();
    let mut first = World::new(&s, 31, base);
    first.run_to_end();
    let tickets: Vec<Session> = first
        .clients
        .iter()
        .map(|c| c.ep.connection(&server()).and_then(|x| x.session().cloned()).expect("ticket after the handshake"))
        .collect();
    assert!(tickets.iter().all(Session::is_dtls13_ticket));
    s.resume = [Some(tickets[0].clone()), Some(tickets[1].clone())];
    // The server's session store lives in its configuration, shared by every run.
    let mut again = World::new(&s, 31, base);
    again.run_to_end();
    assert!(again.server.connection(&a_addr()).is_some_and(|c| c.is_resumed()), "the reference run resumes");
    matrix("resumption", &s, stride(2));
}

/// Datagrams A's association drops while established: truncated, flipped and garbage
/// records are counted as invalid or failing authentication; a replayed application record
/// is counted as a replay and never delivered twice (RFC 9147 §4.5.1).
#[test]
fn dtls13_bad_records_are_dropped_and_counted_and_replays_never_delivered() {
    let s = Setup { key_update: false, ..setup(Mode::Psk, 1152) };
    let mut w = World::new(&s, 5, Instant::now());
    w.run_to_end();
    assert!(w.a().echoed && w.b().echoed);
    // A's application record: its first epoch-3 datagram (its message, sent on Connected;
    // the ACK of the server's NewSessionTicket comes later).
    let app = w
        .log
        .iter()
        .find(|x| x.from == a_addr() && x.payload[0] & 0xe3 == 0x23)
        .expect("A's epoch-3 record")
        .payload
        .clone();
    let events = w.server_data_events(a_addr());
    let before = w.server_stats(a_addr());
    w.inject_server(a_addr(), &[app.clone(), app.clone()]);
    let after = w.server_stats(a_addr());
    assert_eq!(w.server_data_events(a_addr()), events, "a replayed record was delivered again");
    assert_eq!(after.records_replayed, before.records_replayed + 2);

    let mut flipped = app.clone();
    *flipped.last_mut().unwrap() ^= 1;
    w.inject_server(a_addr(), &[flipped]);
    let s2 = w.server_stats(a_addr());
    assert_eq!(s2.records_auth_failed, after.records_auth_failed + 1, "a flipped tag fails authentication");

    let garbage = vec![
        app[..3].to_vec(),                                    // header only
        unified(3, false, None, false, &[0; 10]),             // shorter than the sample
        unified(3, false, None, true, &[0; 40]),              // a CID
        vec![0x17, 0xfe, 0xfd, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0], // DTLS 1.2 app data header
        plain(23, 0, 1, b"cleartext application data"),
    ];
    let n = garbage.len() as u64;
    w.inject_server(a_addr(), &garbage);
    let s3 = w.server_stats(a_addr());
    assert_eq!(s3.records_invalid, s2.records_invalid + n, "each malformed datagram counted once");
    assert_eq!(s3.records_auth_failed, s2.records_auth_failed);
    assert_eq!(w.server_data_events(a_addr()), events);
    // Garbage into A's client side is counted there too, and A still works.
    let c0 = w.a().ep.connection(&server()).unwrap().stats();
    w.inject_client(&garbage);
    let c1 = w.a().ep.connection(&server()).unwrap().stats();
    assert_eq!(c1.records_invalid, c0.records_invalid + n);
    assert!(w.a_talks_again(), "A's association survives");
    assert!(w.server.connection(&a_addr()).unwrap().is_established());
}

/// A real first 1.3 ClientHello datagram.
fn client_hello13_datagram(mode: Mode, seed: u64) -> Vec<u8> {
    let s = setup(mode, 1152);
    let mut ep = Endpoint::client(SeededRng::from_seed_u64(seed));
    ep.connect(Instant::now(), server(), s.client, "localhost", None).unwrap();
    ep.poll_transmit().unwrap().payload
}

/// RFC 9147 §5.1: the server answers a ClientHello without a valid cookie with a stateless
/// HelloRetryRequest and no state, and "MUST NOT" send more than three times the bytes it
/// received to an address it has not verified. Here the HRR is also measured against the
/// smallest 1.3 ClientHello our client sends (external PSK, one key share).
#[test]
fn spoofed_dtls13_client_hellos_leave_no_state_and_hrr_stays_under_3x() {
    let s = setup(Mode::Psk, 1152);
    let now = Instant::now();
    let mut ep = Endpoint::server(s.server.clone(), SeededRng::from_seed_u64(1), now);
    let ch = client_hello13_datagram(Mode::Psk, 99);
    let mut rng = Prng(42);
    let mut max_ratio: f64 = 0.0;
    for _ in 0..10_000 {
        let (from, d) = spoofed_client_hello(&ch, &mut rng);
        ep.handle_datagram(now, from, &d);
        let t = ep.poll_transmit().expect("a HelloRetryRequest");
        assert_eq!(t.destination, from);
        assert_eq!(t.payload[13], 2, "a server_hello message (HRR)");
        assert!(t.payload.len() <= 3 * d.len(), "HRR of {} bytes for a {}-byte ClientHello", t.payload.len(), d.len());
        max_ratio = max_ratio.max(t.payload.len() as f64 / d.len() as f64);
        assert!(ep.poll_transmit().is_none());
        assert_eq!(ep.connection_count(), 0);
    }
    let st = ep.stats();
    assert_eq!((st.hello_retry_requests, st.connections_created, st.hello_verify_requests), (10_000, 0, 0));
    assert_eq!(ep.poll_timeout(), None, "a stateless gate arms no timer");
    // Our HRR carries supported_versions and a 69-byte cookie: it is in fact smaller than the
    // ClientHello, so not even the 3x allowance is used.
    assert!(max_ratio < 1.0, "HRR/ClientHello ratio {max_ratio}");
    eprintln!("HRR/ClientHello byte ratio: {max_ratio:.2}");

    // A tiny, syntactically valid 1.3 ClientHello without a key share (an HRR must ask for
    // one): the answer would exceed 3x, so none is sent.
    let mut d = ch.clone();
    let body = &ch[25..];
    let mut chm =
        <coaps_dtls::internal::msgs13::ClientHello13 as coaps_dtls::internal::codec::Codec>::read_exact(body).unwrap();
    chm.extensions.retain(|e| matches!(e, coaps_dtls::internal::msgs13::ClientExtension13::SupportedVersions(_)));
    chm.extensions.push(coaps_dtls::internal::msgs13::ClientExtension13::PskKeyExchangeModes(vec![
        coaps_dtls::internal::codec::PskKeyExchangeMode::PskKe,
    ]));
    let small = coaps_dtls::internal::codec::Codec::to_vec(&chm);
    d.truncate(13);
    let mut hs = vec![1];
    hs.extend_from_slice(&(small.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&[0, 0, 0, 0, 0]);
    hs.extend_from_slice(&(small.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&small);
    d[11..13].copy_from_slice(&(hs.len() as u16).to_be_bytes());
    d.extend_from_slice(&hs);
    let from = rng.addr();
    ep.handle_datagram(now, from, &d);
    let answered: usize = std::iter::from_fn(|| ep.poll_transmit()).map(|t| t.payload.len()).sum();
    assert!(answered <= 3 * d.len(), "{answered} bytes answered to a {}-byte ClientHello", d.len());
    assert_eq!(ep.connection_count(), 0);
}

/// Plays one cookie exchange by hand: CH1 from `client_at` to the server, the HRR back, and
/// returns the client's CH2 (with the cookie) and the client endpoint.
fn cookie_exchange(ep: &mut Endpoint, now: Instant, seed: u64) -> (Vec<u8>, Endpoint) {
    let s = setup(Mode::Psk, 1152);
    let mut client = Endpoint::client(SeededRng::from_seed_u64(seed));
    client.connect(now, server(), s.client, "localhost", None).unwrap();
    let ch1 = client.poll_transmit().unwrap().payload;
    ep.handle_datagram(now, a_addr(), &ch1);
    let hrr = ep.poll_transmit().expect("HRR").payload;
    assert_eq!(ep.connection_count(), 0);
    client.handle_datagram(now, server(), &hrr);
    let ch2 = client.poll_transmit().expect("CH2").payload;
    (ch2, client)
}

/// A second ClientHello whose cookie was issued to another address, or has expired, is
/// refused without state: counted, answered with a fresh stateless HRR at most.
#[test]
fn dtls13_cookie_for_another_address_or_expired_is_refused_without_state() {
    let s = setup(Mode::Psk, 1152);
    let now = Instant::now();
    let mut ep = Endpoint::server(s.server.clone(), SeededRng::from_seed_u64(3), now);
    let (ch2, _) = cookie_exchange(&mut ep, now, 7);
    // From another address (and another port of the same host).
    for other in [attacker(), addr("10.0.0.2:40001")] {
        ep.handle_datagram(now, other, &ch2);
        while ep.poll_transmit().is_some() {}
        assert_eq!(ep.connection_count(), 0, "{other}: state for a cookie bound to A");
    }
    assert_eq!(ep.stats().cookies_rejected, 2);
    assert_eq!(ep.stats().connections_created, 0);
    // Expired: the 1.3 cookie lives as long as the handshake budget (at least the cookie
    // lifetime); past both it is refused even from the right address.
    let life = s.server.cookie.unwrap().lifetime.max(s.server.common.retransmit.handshake_timeout);
    let late = now + life + Duration::from_secs(1);
    ep.handle_datagram(late, a_addr(), &ch2);
    while ep.poll_transmit().is_some() {}
    assert_eq!(ep.connection_count(), 0, "state for an expired cookie");
    assert_eq!(ep.stats().cookies_rejected, 3);
    // A flipped cookie byte.
    let mut bad = ch2.clone();
    let pos = bad.len() - 40;
    bad[pos] ^= 1;
    ep.handle_datagram(now, a_addr(), &bad);
    while ep.poll_transmit().is_some() {}
    assert_eq!(ep.connection_count(), 0);
    // The genuine CH2 in time, from A, is accepted.
    ep.handle_datagram(now, a_addr(), &ch2);
    assert_eq!(ep.connection_count(), 1, "the valid cookie is accepted");
}

/// Half-open 1.3 handshakes (valid cookies, then silence) are bounded by max_handshakes (the
/// oldest evicted for the newest) and do not starve established peers; they expire on their own.
#[test]
fn dtls13_half_open_flood_is_bounded_by_max_handshakes() {
    let mut s = setup(Mode::Psk, 1152);
    Arc::make_mut(&mut s.server).max_handshakes = 20;
    s.key_update = false;
    let now = Instant::now();
    let mut w = World::new(&s, 5, now);
    w.run_to_end();
    assert!(w.a().echoed && w.b().echoed);
    let mut rng = Prng(9);
    let flood = 60;
    for i in 0..flood {
        // Each flooder completes the cookie round trip from its own address (it can receive),
        // then never answers the server's flight.
        let from = rng.addr();
        let mut client = Endpoint::client(SeededRng::from_seed_u64(1000 + i));
        client.connect(w.now, server(), s.client.clone(), "localhost", None).unwrap();
        let ch1 = client.poll_transmit().unwrap().payload;
        w.server.handle_datagram(w.now, from, &ch1);
        let hrr = w.server.poll_transmit().unwrap().payload;
        client.handle_datagram(w.now, server(), &hrr);
        let ch2 = client.poll_transmit().unwrap().payload;
        w.server.handle_datagram(w.now, from, &ch2);
        while let Some(t) = w.server.poll_transmit() {
            assert_eq!(t.destination, from);
        }
        assert!(w.server.connection_count() <= 22, "half-open limit exceeded: {}", w.server.connection_count());
    }
    assert_eq!(w.server.connection_count(), 22, "20 half-open plus A and B");
    // At the limit the least recently heard half-open handshake makes room for the newest.
    assert_eq!(w.server.stats().evicted_half_open, flood - 20);
    assert_eq!(w.server.stats().dropped_limit, 0);
    assert!(w.everyone_talks_again(), "established peers harmed by the flood");
    assert_eq!(w.server.connection_count(), 2, "the half-open handshakes expired");
}

/// Regression: the DTLS 1.3 cookie binds the address, not the ClientHello's random, so a
/// replay of A's second ClientHello with its random altered passed the gate again and
/// replaced A's live association (half-open or established). RFC 9147 §5.11: an association
/// is not destroyed before the client shows reachability, and an old cookie shows none. A
/// client really starting over on the same address (fresh ClientHello, fresh cookie) still
/// replaces it.
#[test]
fn altered_replay_of_a_dtls13_client_hello_does_not_replace_the_association() {
    let s = Setup { key_update: false, ..setup(Mode::EcdsaX509, 1152) };
    let mut w = World::new(&s, 17, Instant::now());
    w.run_to_end();
    assert!(w.a().echoed);
    let ch2 = w.log.iter().filter(|x| x.from == a_addr()).nth(1).unwrap().payload.clone();
    assert_eq!((ch2[0], ch2[13]), (22, 1), "a ClientHello record");
    let created = w.server.stats().connections_created;
    for at in [27, 40, 58] {
        // Bytes of the random (record 13 + handshake 12 + legacy_version 2 = 27).
        let mut d = ch2.clone();
        d[at] ^= 0x55;
        w.server.handle_datagram(w.now, a_addr(), &d);
        w.collect();
        assert_eq!(w.server.stats().connections_created, created, "an altered replay created an association");
        assert!(w.server.connection(&a_addr()).is_some_and(|c| c.is_established()));
    }
    w.run_to_end();
    assert!(w.a_talks_again(), "A's association was replaced");

    // A genuine restart from A's address a little later: a new handshake replaces the old one.
    w.now += Duration::from_secs(1);
    let mut fresh = Endpoint::client(SeededRng::from_seed_u64(4242));
    fresh.connect(w.now, server(), s.client.clone(), "localhost", None).unwrap();
    w.clients[0] = Client::new(a_addr(), fresh, b"message from A");
    w.collect();
    w.run_to_end();
    assert!(w.a().echoed, "a restarted client could not replace its old association");
    assert_eq!(w.server.stats().connections_created, created + 1);
}

/// Regression: a DTLS 1.3 message carrying an extension it does not allow was answered with
/// decode_error; RFC 8446 §4.2 requires illegal_parameter ("If an implementation receives an
/// extension which it recognizes and which is not specified for the message in which it
/// appears, it MUST abort the handshake with an illegal_parameter alert").
#[test]
fn dtls13_extension_not_allowed_in_server_hello_gets_illegal_parameter() {
    let mut s = setup(Mode::EcdsaX509, 1152);
    Arc::make_mut(&mut s.server).cookie = None;
    let now = Instant::now();
    let mut server_ep = Endpoint::server(s.server.clone(), SeededRng::from_seed_u64(1), now);
    let mut client = Endpoint::client(SeededRng::from_seed_u64(2));
    client.connect(now, server(), s.client.clone(), "localhost", None).unwrap();
    let ch = client.poll_transmit().unwrap().payload;
    server_ep.handle_datagram(now, a_addr(), &ch);
    let flight = server_ep.poll_transmit().unwrap().payload;
    // The ServerHello record first: 13-byte header, 12-byte handshake header, then the body.
    assert_eq!((flight[0], flight[13]), (22, 2));
    let rec_len = usize::from(u16::from_be_bytes([flight[11], flight[12]]));
    let mut body = flight[25..13 + rec_len].to_vec();
    // legacy_version 2, random 32, empty session id 1, suite 2, compression 1: extensions.
    assert_eq!(body[34], 0, "no legacy_session_id_echo in DTLS 1.3");
    let ext_len = u16::from_be_bytes([body[38], body[39]]) + 4;
    body[38..40].copy_from_slice(&ext_len.to_be_bytes());
    body.extend_from_slice(&[0, 42, 0, 0]); // early_data: not allowed in ServerHello
    let n = (body.len() as u32).to_be_bytes();
    let mut hs = vec![2, n[1], n[2], n[3], flight[17], flight[18], 0, 0, 0, n[1], n[2], n[3]];
    hs.extend_from_slice(&body);
    let mut d = flight[..11].to_vec();
    d.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    d.extend_from_slice(&hs);
    client.handle_datagram(now, server(), &d);
    let alert = client.poll_transmit().expect("an alert").payload;
    assert_eq!(alert[0], 21, "a plaintext alert record (no handshake keys yet)");
    assert_eq!(&alert[13..], [2, 47], "fatal illegal_parameter");
    let closed = std::iter::from_fn(|| client.poll_event()).any(|(_, e)| matches!(e, Event::Closed(_)));
    assert!(closed);
}
