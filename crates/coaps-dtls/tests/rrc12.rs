//! RFC 9853 return routability checks over DTLS 1.2 Connection IDs, between our own client
//! and server endpoints: negotiation, the challenge and response on the wire, the
//! amplification bound that only a matching `path_response` lifts, the fallback to the old
//! address when nobody answers, and the attacks of RFC 9146 §6 with and without RRC.

use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{ConnectionIdConfig, DtlsVersion, Endpoint, Event, RrcConfig, ServerConfig};
use coaps_test_support::dtls::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TLS12_CID: u8 = 25;
const RETURN_ROUTABILITY_CHECK: u8 = 27;

fn new_addr() -> SocketAddr {
    "10.0.0.2:40001".parse().unwrap()
}

fn victim() -> SocketAddr {
    "198.51.100.7:5683".parse().unwrap()
}

/// Client and server endpoints; datagrams move only when a test says so, so each step of a
/// check can be looked at.
struct Pair {
    server: Endpoint,
    client: Endpoint,
    /// The client's address as the server sees it.
    nat: SocketAddr,
    now: Instant,
    /// Every datagram the server sent: (destination, bytes).
    server_sent: Vec<(SocketAddr, Vec<u8>)>,
    echoes: Vec<Vec<u8>>,
    server_events: Vec<(SocketAddr, Event)>,
    /// How many of `server_sent` `run` has forwarded (each once).
    delivered: usize,
}

fn cid(len: usize, rrc: bool) -> ConnectionIdConfig {
    ConnectionIdConfig::new(len).with_rrc(rrc.then(RrcConfig::default))
}

impl Pair {
    fn new(server_cid: Option<ConnectionIdConfig>, client_cid: Option<ConnectionIdConfig>) -> Self {
        let (server_cfg, client_cfg) = configs(Mode::Psk, None);
        let mut s: ServerConfig = (*server_cfg).clone();
        s.connection_id = server_cid;
        let mut c = (*client_cfg).clone();
        c.version = DtlsVersion::Dtls12;
        c.connection_id = client_cid;
        let now = Instant::now();
        let server = Endpoint::server(Arc::new(s), SeededRng::from_seed_u64(11), now);
        let mut client = Endpoint::client(SeededRng::from_seed_u64(12));
        client.connect(now, server_addr(), Arc::new(c), "localhost", None).unwrap();
        let mut p = Self {
            server,
            client,
            nat: client_addr(),
            now,
            server_sent: Vec::new(),
            echoes: Vec::new(),
            server_events: Vec::new(),
            delivered: 0,
        };
        p.run();
        assert!(p.client.connection(&server_addr()).is_some_and(|c| c.is_established()));
        p.server_sent.clear();
        p.delivered = 0;
        p
    }

    /// Delivers until quiet, without advancing time: the client's datagrams arrive from `nat`,
    /// the server's reach the client only when sent to `nat`.
    fn run(&mut self) {
        for _ in 0..100 {
            let mut moved = false;
            while let Some(t) = self.client.poll_transmit() {
                moved = true;
                self.server.handle_datagram(self.now, self.nat, &t.payload);
            }
            self.drain_server();
            let sent: Vec<_> = self.server_sent.iter().skip(self.delivered).cloned().collect();
            self.delivered = self.server_sent.len();
            for (dest, d) in sent {
                if dest == self.nat {
                    moved = true;
                    self.client.handle_datagram(self.now, server_addr(), &d);
                }
            }
            while let Some((_, ev)) = self.client.poll_event() {
                if let Event::ApplicationData(d) = ev {
                    self.echoes.push(d);
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn drain_server(&mut self) {
        while let Some((peer, ev)) = self.server.poll_event() {
            if let Event::ApplicationData(d) = &ev {
                self.server.send(peer, d).unwrap();
            }
            self.server_events.push((peer, ev));
        }
        while let Some(t) = self.server.poll_transmit() {
            self.server_sent.push((t.destination, t.payload));
        }
    }

    /// The client's next record, taken off the wire.
    fn intercept_client(&mut self, data: &[u8]) -> Vec<u8> {
        self.client.send(server_addr(), data).unwrap();
        let t = self.client.poll_transmit().unwrap();
        assert!(self.client.poll_transmit().is_none());
        t.payload
    }

    fn sent_to(&self, addr: SocketAddr) -> Vec<&Vec<u8>> {
        self.server_sent.iter().filter(|(a, _)| *a == addr).map(|(_, d)| d).collect()
    }

    /// Runs the server's timers up to `until`.
    fn advance(&mut self, until: Instant) {
        for _ in 0..100 {
            match self.server.poll_timeout() {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.server.handle_timeout(self.now);
                    self.drain_server();
                }
                _ => break,
            }
        }
        self.now = until;
    }
}

#[test]
fn rrc_is_agreed_only_beside_a_cid_and_when_both_sides_want_it() {
    let cases = [
        (Some(cid(8, true)), Some(cid(4, true)), true),
        (Some(cid(8, true)), Some(cid(0, true)), true),
        (Some(cid(8, false)), Some(cid(4, true)), false),
        (Some(cid(8, true)), Some(cid(4, false)), false),
        (None, Some(cid(4, true)), false),
        (Some(cid(8, true)), None, false),
    ];
    for (i, (s, c, want)) in cases.into_iter().enumerate() {
        let p = Pair::new(s, c);
        let on_client = p.client.connection(&server_addr()).unwrap().rrc_negotiated();
        let on_server = p.server.connection(&client_addr()).unwrap().rrc_negotiated();
        assert_eq!((on_client, on_server), (want, want), "case {i}");
    }
    // On by default wherever CIDs are.
    assert!(ConnectionIdConfig::default().return_routability_check.is_some());
}

#[test]
fn rebinding_with_rrc_challenge_response_lift_the_bound_and_the_old_address_gets_nothing() {
    // The client wants no CID, so the server's records to it are plain and show their type.
    let mut p = Pair::new(Some(cid(8, true)), Some(cid(0, true)));
    p.client.send(server_addr(), b"one").unwrap();
    p.run();
    let old = p.nat;
    p.nat = new_addr();
    p.server_sent.clear();
    p.delivered = 0;
    // The first record from the new address moves the association; nothing reaches the client
    // yet, so each step can be checked.
    let two = p.intercept_client(b"two");
    p.server.handle_datagram(p.now, new_addr(), &two);
    p.drain_server();
    assert!(p.server.connection(&new_addr()).is_some());
    assert!(p.server.is_address_unchecked(&new_addr()));
    let st = p.server.stats();
    assert_eq!((st.address_changes, st.path_challenges_sent), (1, 1));
    let to_new = p.sent_to(new_addr());
    assert_eq!(to_new[0][0], RETURN_ROUTABILITY_CHECK, "RFC 9853 §5.1: the challenge goes first, protected");
    assert_eq!(u16::from_be_bytes([to_new[0][3], to_new[0][4]]), 1, "in the current epoch");
    // A second fresh record from there does not check the path under RRC.
    let three = p.intercept_client(b"three");
    p.server.handle_datagram(p.now, new_addr(), &three);
    p.drain_server();
    assert!(p.server.is_address_unchecked(&new_addr()), "only a path_response lifts the bound");
    // Within the bound: 3x what came from the new address.
    let sent: usize = p.sent_to(new_addr()).iter().map(|d| d.len()).sum();
    assert!(sent <= 3 * (two.len() + three.len()), "{sent} bytes for {} received", two.len() + three.len());
    // The client answers the challenge at once; the response lifts the bound.
    let pending: Vec<Vec<u8>> = p.sent_to(new_addr()).into_iter().cloned().collect();
    p.delivered = p.server_sent.len();
    for d in &pending {
        p.client.handle_datagram(p.now, server_addr(), d);
    }
    let mut responses = 0;
    while let Some(t) = p.client.poll_transmit() {
        responses += 1;
        assert_eq!(t.payload[0], TLS12_CID, "the response carries the server's CID");
        p.server.handle_datagram(p.now, new_addr(), &t.payload);
    }
    assert_eq!(responses, 1, "exactly one path_response per challenge (RFC 9853 §5.4)");
    p.drain_server();
    let st = p.server.stats();
    assert_eq!(st.paths_validated, 1);
    assert!(!p.server.is_address_unchecked(&new_addr()));
    // Unbounded now: a large burst goes through.
    p.run();
    let big = vec![9u8; 1000];
    for _ in 0..5 {
        p.client.send(server_addr(), &big).unwrap();
    }
    p.run();
    assert_eq!(p.echoes.iter().filter(|e| e.len() == 1000).count(), 5, "echoes after validation");
    assert!(p.sent_to(old).is_empty(), "the old address got {:?}", p.sent_to(old));
    assert_eq!(p.server.stats().connections_created, 1);
    assert_eq!(p.server.connection_count(), 1);
    // The timer of the finished check is gone: nothing moves later.
    p.advance(p.now + Duration::from_secs(5));
    assert!(p.server.connection(&new_addr()).is_some());
    assert_eq!(p.server.stats().path_checks_failed, 0);
}

#[test]
fn without_rrc_the_second_authenticated_record_checks_the_path() {
    let mut p = Pair::new(Some(cid(8, false)), Some(cid(4, true)));
    p.nat = new_addr();
    p.client.send(server_addr(), b"one").unwrap();
    p.run();
    p.client.send(server_addr(), b"two").unwrap();
    p.run();
    assert!(!p.server.is_address_unchecked(&new_addr()));
    assert_eq!(p.server.stats().path_challenges_sent, 0);
    assert_eq!(p.echoes, vec![b"one".to_vec(), b"two".to_vec()]);
}

/// An attacker copies a fresh record and sends it from a victim's address first: the
/// association moves there (it authenticates and is newest), but the victim gets at most 3x
/// the copied bytes whatever the application sends, with RRC (the challenge counts too) and
/// without. With RRC, nobody answers, and after T the association is back at the client's
/// address without the client doing anything.
#[test]
fn a_copied_cid_record_from_a_victim_address_gets_at_most_the_amplification_limit() {
    for rrc in [true, false] {
        let mut p = Pair::new(Some(cid(8, rrc)), Some(cid(4, rrc)));
        let copied = p.intercept_client(b"small");
        p.server.handle_datagram(p.now, victim(), &copied);
        assert!(p.server.connection(&victim()).is_some(), "rrc {rrc}: RFC 9146 §6 moves it");
        let big = vec![7u8; 1000];
        for _ in 0..20 {
            p.server.send(victim(), &big).unwrap();
        }
        p.drain_server();
        let to_victim = |p: &Pair| -> usize { p.sent_to(victim()).iter().map(|d| d.len()).sum() };
        assert!(to_victim(&p) <= 3 * copied.len(), "rrc {rrc}: {} bytes to the victim", to_victim(&p));
        assert!(p.server.stats().amplification_dropped >= 19, "rrc {rrc}");
        if rrc {
            assert!(p.server.stats().path_challenges_sent >= 1);
            // Challenges are paced within T; none answered, the check gives up.
            p.advance(p.now + Duration::from_millis(1500));
            assert!(to_victim(&p) <= 3 * copied.len(), "rrc {rrc}: {} bytes after T", to_victim(&p));
            let st = p.server.stats();
            assert_eq!(st.path_checks_failed, 1);
            assert!(st.path_challenges_sent <= 3);
            assert!(p.server.connection(&client_addr()).is_some(), "back at the last checked address");
            assert!(!p.server.is_address_unchecked(&client_addr()));
            assert!(
                p.server_events
                    .iter()
                    .any(|(a, e)| *a == client_addr() && *e == Event::AddressChanged { old: victim() })
            );
            let before = p.server_sent.len();
            p.delivered = before;
            p.client.send(server_addr(), b"after").unwrap();
            p.run();
            assert!(p.echoes.contains(&b"after".to_vec()));
            assert!(p.server_sent[before..].iter().all(|(a, _)| *a == client_addr()));
        } else {
            // The real client's next record brings the association back.
            p.client.send(server_addr(), b"back").unwrap();
            p.run();
            assert!(p.server.connection(&client_addr()).is_some());
        }
        assert!(p.server.connection(&victim()).is_none(), "rrc {rrc}");
        assert_eq!(p.server.stats().connections_created, 1, "rrc {rrc}");
    }
}

/// A replayed old record from a new address moves nothing and, under RRC, starts no check.
#[test]
fn a_replayed_record_from_a_new_address_does_not_move_the_association() {
    for rrc in [true, false] {
        let mut p = Pair::new(Some(cid(8, rrc)), Some(cid(4, rrc)));
        let old_record = p.intercept_client(b"first");
        p.server.handle_datagram(p.now, p.nat, &old_record);
        p.run();
        p.client.send(server_addr(), b"second").unwrap();
        p.run();
        let sent_before = p.server_sent.len();
        p.server.handle_datagram(p.now, victim(), &old_record);
        p.drain_server();
        let st = p.server.stats();
        assert_eq!(st.address_changes, 0, "rrc {rrc}");
        assert_eq!(st.address_changes_refused, 1, "rrc {rrc}");
        assert_eq!(st.path_challenges_sent, 0, "rrc {rrc}");
        assert!(p.server.connection(&victim()).is_none());
        assert!(p.server_sent[sent_before..].iter().all(|(a, _)| *a != victim()), "rrc {rrc}");
        assert_eq!(p.echoes, vec![b"first".to_vec(), b"second".to_vec()], "rrc {rrc}");
    }
}

/// A response from a third address belongs to no check: the association moves on (a fresh
/// record), the stale response is discarded and a new check starts there.
#[test]
fn a_path_response_from_another_address_does_not_validate() {
    let mut p = Pair::new(Some(cid(8, true)), Some(cid(4, true)));
    let copied = p.intercept_client(b"x");
    p.server.handle_datagram(p.now, victim(), &copied);
    p.drain_server();
    let challenge = p.sent_to(victim())[0].clone();
    p.client.handle_datagram(p.now, server_addr(), &challenge);
    let response = p.client.poll_transmit().unwrap().payload;
    let third: SocketAddr = "203.0.113.9:7000".parse().unwrap();
    p.server.handle_datagram(p.now, third, &response);
    p.drain_server();
    let st = p.server.stats();
    assert_eq!(st.paths_validated, 0);
    assert_eq!(st.rrc_discarded, 1);
    assert!(p.server.is_address_unchecked(&third));
    assert_eq!(st.path_challenges_sent, 2, "one check per move");
}

fn enhanced(len: usize) -> ConnectionIdConfig {
    ConnectionIdConfig::new(len).with_rrc(Some(RrcConfig { enhanced: true, ..RrcConfig::default() }))
}

/// RFC 9853 §5.2 against the race of §7: the attacker's copy from the victim's address moves
/// the association, the enhanced check challenges the old address, the real client answers
/// from there, and the association goes straight back. The victim gets no challenge at all.
#[test]
fn enhanced_check_keeps_the_old_address_when_it_answers() {
    let mut p = Pair::new(Some(enhanced(8)), Some(cid(4, true)));
    let copied = p.intercept_client(b"raced");
    p.server.handle_datagram(p.now, victim(), &copied);
    p.drain_server();
    assert!(p.server.connection(&victim()).is_some());
    let to_old: Vec<Vec<u8>> = p.sent_to(client_addr()).into_iter().cloned().collect();
    assert_eq!(to_old.len(), 1, "the challenge goes to the old address first");
    assert_eq!(p.server.stats().path_challenges_sent, 1);
    // The victim got at most the echo of the copied record, within the bound; no challenge.
    let to_victim: usize = p.sent_to(victim()).iter().map(|d| d.len()).sum();
    assert!(to_victim <= 3 * copied.len());
    // The real client, still at the old address, answers.
    p.delivered = p.server_sent.len();
    p.client.handle_datagram(p.now, server_addr(), &to_old[0]);
    while let Some((_, ev)) = p.client.poll_event() {
        let _ = ev;
    }
    let response = p.client.poll_transmit().unwrap().payload;
    p.server.handle_datagram(p.now, client_addr(), &response);
    p.drain_server();
    assert!(p.server.connection(&client_addr()).is_some(), "back at the address that answered");
    assert!(p.server.connection(&victim()).is_none());
    assert!(!p.server.is_address_unchecked(&client_addr()));
    // Nothing more is due: no challenge to the victim after T.
    let challenges = p.server.stats().path_challenges_sent;
    p.advance(p.now + Duration::from_secs(3));
    assert_eq!(p.server.stats().path_challenges_sent, challenges);
    assert_eq!(p.server.stats().path_checks_failed, 0);
    assert_eq!(p.server.stats().paths_validated, 0);
    assert_eq!(p.server.stats().address_changes, 2, "to the victim and straight back");
    p.client.send(server_addr(), b"still here").unwrap();
    p.run();
    assert!(p.echoes.contains(&b"still here".to_vec()));
}

/// A real NAT rebinding under the enhanced check: the old address is gone, so its challenge
/// goes unanswered; after T the new address is challenged and validated.
#[test]
fn enhanced_check_moves_to_the_new_address_when_the_old_one_is_silent() {
    let mut p = Pair::new(Some(enhanced(8)), Some(cid(4, true)));
    let old = p.nat;
    p.nat = new_addr();
    p.client.send(server_addr(), b"after rebinding").unwrap();
    p.run();
    assert!(p.server.is_address_unchecked(&new_addr()));
    assert_eq!(p.sent_to(old).len(), 1, "one challenge to the old address (its first of three)");
    // T passes with the old address silent: paced challenges there, then the new one.
    let deadline = p.now + Duration::from_millis(1100);
    p.advance(deadline);
    p.run();
    let st = p.server.stats();
    assert_eq!(st.paths_validated, 1, "{st:?}");
    assert!(!p.server.is_address_unchecked(&new_addr()));
    assert!(p.server.connection(&new_addr()).is_some());
    assert!(p.sent_to(old).len() <= 3);
    assert_eq!(p.echoes, vec![b"after rebinding".to_vec()]);
}
