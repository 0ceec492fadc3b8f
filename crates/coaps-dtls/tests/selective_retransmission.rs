//! DTLS 1.3 selective retransmission flight by flight (RFC 9147 §5.8.1, §7.1, §7.2), with a
//! tiny MTU so that every certificate flight spans several datagrams: specific datagrams are
//! dropped, and exactly the records they carried come back, prompted by the receiver's ACK of
//! the partial flight a quarter of the retransmission timeout later.
//!
//! Records are protected, but their sizes are not: a record's fragment length is its
//! ciphertext length minus the tag, the inner content type and the 12-byte handshake header.
//! Fragment boundaries are deterministic, so "the same records" means the same fragment sizes
//! in the same order, and the handshake then completing without any timer retransmission
//! shows that they were the missing bytes.

use coaps_test_support::dtls as common;

use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{DtlsVersion, Endpoint, Event};
use common::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MTU: usize = 200;
/// ChaCha20-Poly1305 (the first 1.3 suite) tag.
const TAG: usize = 16;

/// Fragment body lengths of the handshake records in `d`, plaintext (the ServerHello) or
/// protected.
fn fragment_lengths(d: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = d;
    while let Some(&first) = rest.first() {
        if first == 22 {
            // DTLSPlaintext: 13-byte header, then a 12-byte handshake header.
            let len = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
            out.push(len - 12);
            rest = &rest[13 + len..];
        } else {
            assert_eq!(first & 0xe0, 0x20, "unified header");
            let seq_len = if first & 0x08 != 0 { 2 } else { 1 };
            let (hdr, len) = if first & 0x04 != 0 {
                let at = 1 + seq_len;
                (at + 2, usize::from(u16::from_be_bytes([rest[at], rest[at + 1]])))
            } else {
                (1 + seq_len, rest.len() - 1 - seq_len)
            };
            out.push(len - TAG - 1 - 12);
            rest = &rest[hdr + len..];
        }
    }
    out
}

fn drain(ep: &mut Endpoint) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| ep.poll_transmit()).map(|t| t.payload).collect()
}

fn deliver(ep: &mut Endpoint, now: Instant, from: SocketAddr, ds: &[Vec<u8>]) {
    for d in ds {
        ep.handle_datagram(now, from, d);
    }
}

fn connected(ep: &mut Endpoint) -> bool {
    std::iter::from_fn(|| ep.poll_event()).any(|(_, e)| matches!(e, Event::Connected { .. }))
}

struct Pair {
    client: Endpoint,
    server: Endpoint,
    t0: Instant,
}

fn pair() -> Pair {
    let (server_cfg, mut client_cfg) = configs(Mode::EcdsaMutual, None);
    let mut s = (*server_cfg).clone();
    s.common.mtu = MTU;
    // No HRR: the test is about the certificate flights.
    s.cookie = None;
    let c = Arc::make_mut(&mut client_cfg);
    c.common.mtu = MTU;
    c.version = DtlsVersion::Dtls13;
    let t0 = Instant::now();
    let server = Endpoint::server(Arc::new(s), SeededRng::from_seed_u64(1), t0);
    let mut client = Endpoint::client(SeededRng::from_seed_u64(2));
    client.connect(t0, server_addr(), client_cfg, "localhost", None).unwrap();
    Pair { client, server, t0 }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn lost_datagrams_come_back_exactly_after_the_partial_ack() {
    let Pair { mut client, mut server, t0 } = pair();
    let ch = drain(&mut client);
    deliver(&mut server, t0, client_addr(), &ch);

    // Flight 2/3: ServerHello .. Finished, with the certificate spread over several datagrams.
    let flight = drain(&mut server);
    assert!(flight.len() >= 4, "{} datagrams", flight.len());
    assert!(flight.iter().all(|d| d.len() <= MTU));
    let layout: Vec<Vec<usize>> = flight.iter().map(|d| fragment_lengths(d)).collect();
    // Lose the second and the fourth datagram (certificate fragments).
    let lost = [1, 3];
    let kept: Vec<Vec<u8>> =
        flight.iter().enumerate().filter(|(i, _)| !lost.contains(i)).map(|(_, d)| d.clone()).collect();
    deliver(&mut client, t0 + ms(20), server_addr(), &kept);
    assert!(drain(&mut client).is_empty(), "nothing to say before the ACK timer");

    // RFC 9147 §7.1: the client acknowledges the partial flight a quarter RTO (1 s) after it
    // began to arrive; the server's own timer would fire only at 1 s.
    assert_eq!(client.poll_timeout(), Some(t0 + ms(20) + ms(250)));
    assert_eq!(server.poll_timeout(), Some(t0 + ms(1000)));
    client.handle_timeout(t0 + ms(270));
    let ack = drain(&mut client);
    assert_eq!(ack.len(), 1, "one ACK datagram");

    // RFC 9147 §7.2: the server resends exactly the fragments of the lost datagrams, at once.
    server.handle_datagram(t0 + ms(290), client_addr(), &ack[0]);
    let resent = drain(&mut server);
    let expected: Vec<Vec<usize>> = lost.iter().map(|&i| layout[i].clone()).collect();
    let got: Vec<Vec<usize>> = resent.iter().map(|d| fragment_lengths(d)).collect();
    assert_eq!(got, expected, "exactly the lost records come back (full layout {layout:?})");
    let st = server.connection(&client_addr()).unwrap().stats();
    assert_eq!(st.retransmissions, 1);
    assert_eq!(st.records_retransmitted, expected.iter().map(Vec::len).sum::<usize>() as u64);
    assert_eq!(st.whole_flight_records, 0, "no timer fired");
    // A partial ACK does not back the timer off: it runs one RTO from the resend.
    assert_eq!(server.poll_timeout(), Some(t0 + ms(290) + ms(1000)));

    // With the missing records the client completes and sends its own certificate flight.
    deliver(&mut client, t0 + ms(310), server_addr(), &resent);
    let flight4 = drain(&mut client);
    assert!(flight4.len() >= 3, "{} datagrams", flight4.len());
    let layout4: Vec<Vec<usize>> = flight4.iter().map(|d| fragment_lengths(d)).collect();
    // Lose the first one; the server acknowledges the rest a quarter RTO later.
    deliver(&mut server, t0 + ms(330), client_addr(), &flight4[1..]);
    assert!(drain(&mut server).is_empty());
    assert_eq!(server.poll_timeout(), Some(t0 + ms(330) + ms(250)));
    server.handle_timeout(t0 + ms(580));
    let ack = drain(&mut server);
    assert_eq!(ack.len(), 1);
    client.handle_datagram(t0 + ms(600), server_addr(), &ack[0]);
    let resent4 = drain(&mut client);
    assert_eq!(resent4.iter().map(|d| fragment_lengths(d)).collect::<Vec<_>>(), vec![layout4[0].clone()]);
    let cst = client.connection(&server_addr()).unwrap().stats();
    assert_eq!((cst.retransmissions, cst.whole_flight_records), (1, 0));
    assert_eq!(cst.records_retransmitted, layout4[0].len() as u64);

    // The server completes: ACK of the final flight and the NewSessionTicket.
    deliver(&mut server, t0 + ms(620), client_addr(), &resent4);
    assert!(connected(&mut server));
    let after = drain(&mut server);
    deliver(&mut client, t0 + ms(640), server_addr(), &after);
    assert!(connected(&mut client));
    // Nothing was ever resent by a timer.
    assert_eq!(server.connection(&client_addr()).unwrap().stats().whole_flight_records, 0);
    assert_eq!(client.connection(&server_addr()).unwrap().stats().whole_flight_records, 0);
}

#[test]
fn a_lost_ack_falls_back_to_the_timer_and_a_second_gap_gets_a_second_ack() {
    let Pair { mut client, mut server, t0 } = pair();
    let ch = drain(&mut client);
    deliver(&mut server, t0, client_addr(), &ch);
    let flight = drain(&mut server);
    let layout: Vec<Vec<usize>> = flight.iter().map(|d| fragment_lengths(d)).collect();
    let whole: usize = layout.iter().map(Vec::len).sum();
    let lost = [2, 3];
    let kept: Vec<Vec<u8>> =
        flight.iter().enumerate().filter(|(i, _)| !lost.contains(i)).map(|(_, d)| d.clone()).collect();
    deliver(&mut client, t0 + ms(20), server_addr(), &kept);

    // The client's ACK is lost: the server's timer fires at 1 s and, knowing nothing was
    // received, resends the whole flight.
    client.handle_timeout(t0 + ms(270));
    assert_eq!(drain(&mut client).len(), 1, "the ACK (lost)");
    server.handle_timeout(t0 + ms(1000));
    let again = drain(&mut server);
    assert_eq!(again.iter().map(|d| fragment_lengths(d)).collect::<Vec<_>>(), layout);
    let st = server.connection(&client_addr()).unwrap().stats();
    assert_eq!(
        (st.retransmissions, st.records_retransmitted, st.whole_flight_records),
        (1, whole as u64, whole as u64)
    );

    // Of that copy only the first lost datagram's arrives; the client acknowledges everything
    // it has (the old records and the new one) a quarter of its RTO after the new record.
    deliver(&mut client, t0 + ms(1020), server_addr(), &again[2..3]);
    assert_eq!(client.poll_timeout(), Some(t0 + ms(1020) + ms(250)));
    client.handle_timeout(t0 + ms(1270));
    let ack = drain(&mut client);
    assert_eq!(ack.len(), 1);
    server.handle_datagram(t0 + ms(1290), client_addr(), &ack[0]);
    let resent = drain(&mut server);
    assert_eq!(resent.iter().map(|d| fragment_lengths(d)).collect::<Vec<_>>(), vec![layout[3].clone()]);
    deliver(&mut client, t0 + ms(1310), server_addr(), &resent);
    assert!(!drain(&mut client).is_empty(), "the client's flight: the server's is complete");
}

#[test]
fn whole_flight_mode_ignores_partial_acks() {
    let (server_cfg, mut client_cfg) = configs(Mode::EcdsaX509, None);
    let mut s = (*server_cfg).clone();
    s.common.mtu = MTU;
    s.cookie = None;
    s.common.selective_retransmission = false;
    let c = Arc::make_mut(&mut client_cfg);
    c.common.mtu = MTU;
    c.common.selective_retransmission = false;
    c.version = DtlsVersion::Dtls13;
    let t0 = Instant::now();
    let mut server = Endpoint::server(Arc::new(s), SeededRng::from_seed_u64(1), t0);
    let mut client = Endpoint::client(SeededRng::from_seed_u64(2));
    client.connect(t0, server_addr(), client_cfg, "localhost", None).unwrap();
    let ch = drain(&mut client);
    deliver(&mut server, t0, client_addr(), &ch);
    let flight = drain(&mut server);
    deliver(&mut client, t0 + ms(20), server_addr(), &flight[..flight.len() - 1]);
    // No partial ACK: the client just waits (its own timer is stopped by the ServerHello).
    assert_eq!(client.poll_timeout(), None);
    server.handle_timeout(t0 + ms(1000));
    assert_eq!(drain(&mut server).len(), flight.len(), "the whole flight again");
}

/// RFC 9147 §5.8.1: a server in FINISHED answers a retransmitted client Finished with its ACK
/// for at least twice the MSL (240 s), so it keeps the epoch-2 receiving keys that long; then
/// it drops them (an idle association's memory) and such a record is one of an unknown epoch.
#[test]
fn the_server_acknowledges_a_repeated_client_finished_until_the_linger_ends() {
    let Pair { mut client, mut server, t0 } = pair();
    let mut now = t0;
    let mut fin = Vec::new();
    for _ in 0..20 {
        now += ms(5);
        let c = drain(&mut client);
        deliver(&mut server, now, client_addr(), &c);
        if connected(&mut client) {
            fin = c;
            break;
        }
        let s = drain(&mut server);
        deliver(&mut client, now, server_addr(), &s);
        if connected(&mut client) {
            fin = drain(&mut client);
            deliver(&mut server, now, client_addr(), &fin);
            break;
        }
    }
    assert!(!fin.is_empty() && connected(&mut server), "handshake completed");
    let established = now;
    // The server's ACK (and ticket) are lost: the client resends its Finished on its timer.
    drop(drain(&mut server));
    let at = client.poll_timeout().expect("the client's final flight is on a timer");
    client.handle_timeout(at);
    let again = drain(&mut client);
    assert!(!again.is_empty(), "the client resent its Finished");
    let invalid = |s: &Endpoint| s.connection(&client_addr()).unwrap().stats().records_invalid;
    let before = invalid(&server);
    deliver(&mut server, at, client_addr(), &again);
    assert!(!drain(&mut server).is_empty(), "the repeat is acknowledged");
    assert_eq!(invalid(&server), before);

    // Run the server's timers out (its ticket's retransmissions end with the handshake
    // budget); the last deadline is the end of the linger.
    let mut last = None;
    for _ in 0..64 {
        let Some(t) = server.poll_timeout() else { break };
        last = Some(t);
        server.handle_timeout(t);
        drop(drain(&mut server));
    }
    assert_eq!(server.poll_timeout(), None, "an idle association has no timer");
    let last = last.expect("the linger deadline");
    assert!(last >= established + Duration::from_secs(240), "kept for 2 MSL, not {:?}", last - established);
    deliver(&mut server, last + ms(1), client_addr(), &again);
    assert!(drain(&mut server).is_empty(), "the epoch-2 keys are gone");
    assert!(invalid(&server) > before, "records of an unknown epoch");
}

/// Alerts in the clear are believed only before the peer has keys: an established association
/// whose epoch-2 keys are gone (the client's once its final flight is acknowledged, the
/// server's after the linger) still ignores a forged plaintext fatal alert.
#[test]
fn idle_associations_without_epoch_2_keys_ignore_plaintext_alerts() {
    let Pair { mut client, mut server, t0 } = pair();
    let mut now = t0;
    for _ in 0..20 {
        now += ms(5);
        let c = drain(&mut client);
        deliver(&mut server, now, client_addr(), &c);
        let s = drain(&mut server);
        deliver(&mut client, now, server_addr(), &s);
        if c.is_empty() && s.is_empty() {
            break;
        }
    }
    // Past the server's linger: every timer has run out.
    let later = now + Duration::from_secs(3600);
    client.handle_timeout(later);
    server.handle_timeout(later);
    assert_eq!((client.poll_timeout(), server.poll_timeout()), (None, None), "idle");
    let forged: Vec<u8> = [21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 2, 2, 40].to_vec();
    let established = |ep: &Endpoint, peer: SocketAddr| ep.connection(&peer).is_some_and(|c| c.is_established());
    client.handle_datagram(later, server_addr(), &forged);
    server.handle_datagram(later, client_addr(), &forged);
    assert!(established(&client, server_addr()), "the client ignored the forged alert");
    assert!(established(&server, client_addr()), "the server ignored the forged alert");
    let client_stats = client.connection(&server_addr()).unwrap().stats();
    assert!(client_stats.records_invalid >= 1, "counted as invalid");
}
