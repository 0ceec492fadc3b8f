//! DTLS 1.2 Connection IDs (RFC 9146): negotiation in both roles, the `tls12_cid` record
//! format on the wire, and CID-first demultiplexing in the endpoint: a client whose NAT binding
//! changes keeps its association, while forged, replayed or copied records cannot move it or
//! make the server flood another address.

use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{ConnectionIdConfig, DtlsVersion, Endpoint, Event, ServerConfig};
use coaps_test_support::dtls::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TLS12_CID: u8 = 25;

/// A client and a server endpoint with a NAT in between: the server sees the client as
/// `nat`, which a test changes to simulate a rebinding. Datagrams the server sends to an
/// address that is not the client's current one are kept in `elsewhere`.
struct Pair {
    server: Endpoint,
    client: Endpoint,
    nat: SocketAddr,
    now: Instant,
    /// Application data the client received.
    echoes: Vec<Vec<u8>>,
    /// Datagrams the server sent elsewhere than the client's current address.
    elsewhere: Vec<(SocketAddr, Vec<u8>)>,
    /// Datagrams the client sent, as the server got them.
    client_sent: Vec<Vec<u8>>,
    /// Datagrams the server sent to the client.
    server_sent: Vec<Vec<u8>>,
    /// Server events (peer, event).
    server_events: Vec<(SocketAddr, Event)>,
    /// The server echoes application data back.
    echo: bool,
}

impl Pair {
    fn new(server_cfg: Arc<ServerConfig>, client_cid: Option<ConnectionIdConfig>, mode: Mode) -> Self {
        let (_, client_cfg) = configs(mode, None);
        let mut client_cfg = (*client_cfg).clone();
        client_cfg.version = DtlsVersion::Dtls12;
        client_cfg.connection_id = client_cid;
        let now = Instant::now();
        let server = Endpoint::server(server_cfg, SeededRng::from_seed_u64(1), now);
        let mut client = Endpoint::client(SeededRng::from_seed_u64(2));
        client.connect(now, server_addr(), Arc::new(client_cfg), "localhost", None).unwrap();
        let mut p = Self {
            server,
            client,
            nat: client_addr(),
            now,
            echoes: Vec::new(),
            elsewhere: Vec::new(),
            client_sent: Vec::new(),
            server_sent: Vec::new(),
            server_events: Vec::new(),
            echo: true,
        };
        p.run();
        assert!(p.client.connection(&server_addr()).is_some_and(|c| c.is_established()), "handshake failed");
        p
    }

    /// Shuttles datagrams until both sides are quiet (bounded).
    fn run(&mut self) {
        for _ in 0..200 {
            let mut moved = false;
            while let Some(t) = self.client.poll_transmit() {
                moved = true;
                self.client_sent.push(t.payload.clone());
                self.server.handle_datagram(self.now, self.nat, &t.payload);
            }
            while let Some((peer, ev)) = self.server.poll_event() {
                if let (true, Event::ApplicationData(d)) = (self.echo, &ev) {
                    self.server.send(peer, d).unwrap();
                }
                self.server_events.push((peer, ev));
            }
            while let Some(t) = self.server.poll_transmit() {
                moved = true;
                if t.destination == self.nat {
                    self.server_sent.push(t.payload.clone());
                    self.client.handle_datagram(self.now, server_addr(), &t.payload);
                } else {
                    self.elsewhere.push((t.destination, t.payload));
                }
            }
            while let Some((_, ev)) = self.client.poll_event() {
                if let Event::ApplicationData(d) = ev {
                    self.echoes.push(d);
                }
            }
            if !moved {
                if let Some(t) = self.server.poll_timeout().into_iter().chain(self.client.poll_timeout()).min() {
                    if t > self.now + Duration::from_secs(1) {
                        return;
                    }
                    self.now = t;
                    self.server.handle_timeout(self.now);
                    self.client.handle_timeout(self.now);
                } else {
                    return;
                }
            }
        }
    }

    fn client_send(&mut self, data: &[u8]) {
        self.client.send(server_addr(), data).unwrap();
        self.run();
    }

    /// The client's next datagram, taken off the wire instead of delivered.
    fn intercept_client(&mut self, data: &[u8]) -> Vec<u8> {
        self.client.send(server_addr(), data).unwrap();
        let t = self.client.poll_transmit().unwrap();
        assert!(self.client.poll_transmit().is_none());
        t.payload
    }
}

fn with_server_cid(cid: Option<ConnectionIdConfig>, mode: Mode) -> Arc<ServerConfig> {
    let (server, _) = configs(mode, None);
    let mut s = (*server).clone();
    s.connection_id = cid;
    Arc::new(s)
}

#[test]
fn cids_are_negotiated_both_ways_and_carried_in_tls12_cid_records() {
    for mode in [Mode::Psk, Mode::EcdhePsk, Mode::EcdsaX509] {
        let server_cfg = with_server_cid(Some(ConnectionIdConfig::new(6).with_prefix(*b"\x0a\x0b")), mode);
        let mut p = Pair::new(server_cfg, Some(ConnectionIdConfig::new(4)), mode);
        let c = p.client.connection(&server_addr()).unwrap().connection_ids().expect("client: CIDs negotiated");
        let s = p.server.connection(&client_addr()).unwrap().connection_ids().expect("server: CIDs negotiated");
        assert_eq!(c.incoming.len(), 4, "{mode:?}");
        assert_eq!(c.outgoing.len(), 6, "{mode:?}");
        assert_eq!(&c.outgoing[..2], b"\x0a\x0b", "{mode:?}: the server's prefix leads its CID");
        assert_eq!((s.incoming.clone(), s.outgoing.clone()), (c.outgoing.clone(), c.incoming.clone()), "{mode:?}");
        assert_eq!(p.server.cid_count(), 1);

        p.client_sent.clear();
        p.server_sent.clear();
        p.client_send(b"hello over cid");
        assert_eq!(p.echoes, vec![b"hello over cid".to_vec()], "{mode:?}");
        // RFC 9146 §4: outer type tls12_cid, the receiver's CID after the sequence number.
        let up = &p.client_sent[0];
        assert_eq!(up[0], TLS12_CID, "{mode:?}");
        assert_eq!(&up[11..17], &s.incoming[..], "{mode:?}");
        let down = &p.server_sent[0];
        assert_eq!(down[0], TLS12_CID, "{mode:?}");
        assert_eq!(&down[11..15], &c.incoming[..], "{mode:?}");
        // The header grows by the CID and the ciphertext by the inner content type.
        let len = u16::from_be_bytes([up[17], up[18]]) as usize;
        assert_eq!(up.len(), 13 + 6 + len, "{mode:?}");
    }
}

#[test]
fn zero_length_cid_means_send_theirs_but_receive_plain_records() {
    let mode = Mode::Psk;
    let mut p =
        Pair::new(with_server_cid(Some(ConnectionIdConfig::new(5)), mode), Some(ConnectionIdConfig::new(0)), mode);
    let c = p.client.connection(&server_addr()).unwrap().connection_ids().unwrap();
    assert!(c.incoming.is_empty());
    assert_eq!(c.outgoing.len(), 5);
    p.client_sent.clear();
    p.server_sent.clear();
    p.client_send(b"x");
    assert_eq!(p.echoes, vec![b"x".to_vec()]);
    assert_eq!(p.client_sent[0][0], TLS12_CID, "the client sends the server's CID");
    assert_eq!(p.server_sent[0][0], 23, "RFC 9146 §3: no CID this way, plain application_data");
}

#[test]
fn no_cid_unless_both_sides_want_it() {
    let mode = Mode::Psk;
    // The client does not offer: the server's default does not impose one.
    let mut p = Pair::new(with_server_cid(Some(ConnectionIdConfig::default()), mode), None, mode);
    assert!(p.server.connection(&client_addr()).unwrap().connection_ids().is_none());
    p.client_sent.clear();
    p.client_send(b"plain");
    assert_eq!(p.client_sent[0][0], 23);
    assert_eq!(p.server.cid_count(), 0);
    // The server refuses: the client falls back to plain records.
    let mut p = Pair::new(with_server_cid(None, mode), Some(ConnectionIdConfig::new(4)), mode);
    assert!(p.client.connection(&server_addr()).unwrap().connection_ids().is_none());
    p.client_sent.clear();
    p.client_send(b"plain");
    assert_eq!(p.echoes, vec![b"plain".to_vec()]);
    assert_eq!(p.client_sent[0][0], 23);
}

#[test]
fn default_server_answers_a_client_that_asks() {
    let mode = Mode::EcdsaX509;
    let (server, _) = configs(mode, None);
    let p = Pair::new(server, Some(ConnectionIdConfig::new(3)), mode);
    let s = p.server.connection(&client_addr()).unwrap().connection_ids().expect("on by default when asked");
    assert_eq!(s.incoming.len(), ConnectionIdConfig::default().len);
}

#[test]
fn rebinding_keeps_the_association_and_the_old_address_gets_nothing() {
    for mode in [Mode::Psk, Mode::EcdsaX509] {
        let mut p =
            Pair::new(with_server_cid(Some(ConnectionIdConfig::new(8)), mode), Some(ConnectionIdConfig::new(4)), mode);
        p.client_send(b"one");
        let old = p.nat;
        let new: SocketAddr = "10.0.0.2:40001".parse().unwrap();
        p.nat = new;
        p.client_send(b"two");
        p.client_send(b"three");
        assert_eq!(p.echoes, vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()], "{mode:?}");
        let st = p.server.stats();
        assert_eq!(st.connections_created, 1, "{mode:?}: no new handshake");
        assert_eq!(p.server.connection_count(), 1, "{mode:?}");
        assert_eq!(st.address_changes, 1, "{mode:?}");
        assert!(p.server.connection(&old).is_none() && p.server.connection(&new).is_some(), "{mode:?}");
        assert!(p.elsewhere.is_empty(), "{mode:?}: the old address got {:?}", p.elsewhere);
        assert!(
            p.server_events.iter().any(|(peer, e)| *peer == new && *e == Event::AddressChanged { old }),
            "{mode:?}: {:?}",
            p.server_events
        );
        // The second record from the new address checked the path.
        assert!(!p.server.is_address_unchecked(&new), "{mode:?}");
        assert_eq!(st.amplification_dropped, 0, "{mode:?}");
    }
}

#[test]
fn replayed_or_forged_cid_records_from_elsewhere_do_not_move_the_association() {
    let mode = Mode::Psk;
    let mut p =
        Pair::new(with_server_cid(Some(ConnectionIdConfig::new(8)), mode), Some(ConnectionIdConfig::new(4)), mode);
    p.client_send(b"genuine");
    let seen = p.client_sent.last().unwrap().clone();
    let attacker: SocketAddr = "192.0.2.66:666".parse().unwrap();
    // Replayed: authentic but not new.
    p.server.handle_datagram(p.now, attacker, &seen);
    // Forged: the CID is right, the ciphertext altered.
    let fresh = p.intercept_client(b"next");
    let mut forged = fresh.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    p.server.handle_datagram(p.now, attacker, &forged);
    // A record whose sequence number was raised: the AEAD covers it.
    let mut bumped = fresh.clone();
    bumped[10] = bumped[10].wrapping_add(7);
    p.server.handle_datagram(p.now, attacker, &bumped);
    p.run();
    assert!(p.server.connection(&attacker).is_none());
    assert!(p.server.connection(&client_addr()).is_some());
    assert_eq!(p.server.stats().address_changes, 0);
    assert_eq!(p.server.stats().address_changes_refused, 3);
    assert!(p.elsewhere.is_empty(), "nothing went to the attacker: {:?}", p.elsewhere);
    // The genuine record still works from the real address afterwards.
    p.server.handle_datagram(p.now, p.nat, &fresh);
    p.run();
    assert_eq!(p.echoes, vec![b"genuine".to_vec(), b"next".to_vec()]);
}

#[test]
fn a_copied_record_cannot_make_the_server_flood_a_victim() {
    let mode = Mode::Psk;
    let mut p =
        Pair::new(with_server_cid(Some(ConnectionIdConfig::new(8)), mode), Some(ConnectionIdConfig::new(4)), mode);
    p.echo = false;
    // An on-path copy of a fresh record reaches the server from the victim's address first.
    let copied = p.intercept_client(b"small");
    let victim: SocketAddr = "198.51.100.7:5683".parse().unwrap();
    p.server.handle_datagram(p.now, victim, &copied);
    assert!(p.server.connection(&victim).is_some(), "RFC 9146 §6: an authentic, newer record moves it");
    assert!(p.server.is_address_unchecked(&victim));
    // The application then sends a lot to what it believes is its peer.
    let big = vec![7u8; 1000];
    for _ in 0..20 {
        p.server.send(victim, &big).unwrap();
    }
    p.run();
    let to_victim: usize = p.elsewhere.iter().filter(|(a, _)| *a == victim).map(|(_, d)| d.len()).sum();
    assert!(to_victim <= 3 * copied.len(), "{to_victim} bytes to the victim for {} received", copied.len());
    assert!(p.server.stats().amplification_dropped >= 19);
    // The real client's next record brings the association back.
    p.client_send(b"back");
    assert!(p.server.connection(&client_addr()).is_some());
    assert!(p.server.connection(&victim).is_none());
    assert_eq!(p.server.stats().connections_created, 1);
}

#[test]
fn a_cid_collision_is_not_indexed_twice() {
    // Two clients, a server with one-byte CIDs all equal (prefix only): the second association
    // keeps its address demultiplexing and the first keeps its CID.
    let mode = Mode::Psk;
    let cfg = with_server_cid(Some(ConnectionIdConfig::new(1).with_prefix(*b"\x42")), mode);
    let mut p = Pair::new(cfg.clone(), Some(ConnectionIdConfig::new(4)), mode);
    let (_, client_cfg) = configs(mode, None);
    let mut c2cfg = (*client_cfg).clone();
    c2cfg.version = DtlsVersion::Dtls12;
    c2cfg.connection_id = Some(ConnectionIdConfig::new(4));
    let mut c2 = Endpoint::client(SeededRng::from_seed_u64(9));
    let a2: SocketAddr = "10.0.0.9:9999".parse().unwrap();
    c2.connect(p.now, server_addr(), Arc::new(c2cfg), "localhost", None).unwrap();
    let mut got = Vec::new();
    let mut sent = false;
    for _ in 0..50 {
        while let Some(t) = c2.poll_transmit() {
            p.server.handle_datagram(p.now, a2, &t.payload);
        }
        while let Some((peer, ev)) = p.server.poll_event() {
            if let Event::ApplicationData(d) = ev {
                p.server.send(peer, &d).unwrap();
            }
        }
        while let Some(t) = p.server.poll_transmit() {
            if t.destination == a2 {
                c2.handle_datagram(p.now, server_addr(), &t.payload);
            }
        }
        while let Some((_, ev)) = c2.poll_event() {
            if let Event::ApplicationData(d) = ev {
                got.push(d);
            }
        }
        if !sent && c2.connection(&server_addr()).is_some_and(|c| c.is_established()) {
            c2.send(server_addr(), b"second, by address").unwrap();
            sent = true;
        }
    }
    assert_eq!(got, vec![b"second, by address".to_vec()]);
    assert_eq!(
        p.server.connection(&a2).unwrap().connection_ids().unwrap().incoming,
        p.server.connection(&client_addr()).unwrap().connection_ids().unwrap().incoming,
        "the collision happened"
    );
    assert_eq!(p.server.cid_count(), 1);
    p.client_send(b"first still routed");
    assert_eq!(p.echoes.last().unwrap(), b"first still routed");
}

/// xorshift64*: reproducible loss and rebinding points per seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Under 20 % loss each way, the client's NAT rebinds at random moments: during the cookie
/// exchange, and between (and during) messages. Over many seeds the client completes, every message is
/// eventually echoed (the application resends what got no echo), the server never holds more
/// than one association for it and never runs a second handshake once the first completed.
#[test]
fn rebinding_mid_handshake_and_mid_session_under_loss() {
    let mode = Mode::Psk;
    let server_cfg = with_server_cid(Some(ConnectionIdConfig::new(8)), mode);
    let (_, client_cfg) = configs(mode, None);
    let mut client_cfg = (*client_cfg).clone();
    client_cfg.version = DtlsVersion::Dtls12;
    client_cfg.connection_id = Some(ConnectionIdConfig::new(4));
    let client_cfg = Arc::new(client_cfg);
    let mut moved_total = 0;
    for seed in 1..=150u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut now = Instant::now();
        let mut server = Endpoint::server(server_cfg.clone(), SeededRng::from_seed_u64(seed), now);
        let mut client = Endpoint::client(SeededRng::from_seed_u64(seed + 1000));
        client.connect(now, server_addr(), client_cfg.clone(), "localhost", None).unwrap();
        let mut port = 40000u16;
        let mut nat: SocketAddr = format!("10.0.0.2:{port}").parse().unwrap();
        let messages: Vec<Vec<u8>> = (0..4).map(|i| format!("m{i}").into_bytes()).collect();
        let mut next = 0usize;
        let mut echoed = vec![false; messages.len()];
        let mut last_send = now;
        let mut connected_at_server = 0;
        for _step in 0..20_000 {
            // DTLS 1.2 handshake records before the keys carry no CID: a rebinding between
            // the server's new association and the client's Finished cannot be followed
            // (the client would time out and start over). Before the association (during the
            // cookie exchange) and once the client is established, it may happen any time.
            let client_done = client.connection(&server_addr()).is_some_and(|c| c.is_established());
            if (server.connection_count() == 0 || client_done) && rng.chance(3) {
                port += 1;
                nat = format!("10.0.0.2:{port}").parse().unwrap();
            }
            let established = client.connection(&server_addr()).is_some_and(|c| c.is_established());
            if established && next < messages.len() && (next == 0 || echoed[next - 1]) {
                client.send(server_addr(), &messages[next]).unwrap();
                last_send = now;
                next += 1;
            } else if established && next > 0 && !echoed[next - 1] && now - last_send > Duration::from_secs(2) {
                // Application-level retry of a message whose echo did not come.
                client.send(server_addr(), &messages[next - 1]).unwrap();
                last_send = now;
            }
            let mut moved = false;
            while let Some(t) = client.poll_transmit() {
                moved = true;
                if !rng.chance(20) {
                    server.handle_datagram(now, nat, &t.payload);
                }
            }
            while let Some((peer, ev)) = server.poll_event() {
                match ev {
                    Event::ApplicationData(d) => {
                        server.send(peer, &d).unwrap();
                    }
                    Event::Connected { .. } => connected_at_server += 1,
                    _ => {}
                }
            }
            while let Some(t) = server.poll_transmit() {
                moved = true;
                // Only the current binding reaches the client.
                if t.destination == nat && !rng.chance(20) {
                    client.handle_datagram(now, server_addr(), &t.payload);
                }
            }
            while let Some((_, ev)) = client.poll_event() {
                if let Event::ApplicationData(d) = ev
                    && let Some(i) = messages.iter().position(|m| *m == d)
                {
                    echoed[i] = true;
                }
            }
            if echoed.iter().all(|e| *e) {
                break;
            }
            assert!(server.connection_count() <= 1, "seed {seed}: {} associations", server.connection_count());
            if !moved {
                let t = [server.poll_timeout(), client.poll_timeout(), Some(now + Duration::from_millis(500))]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap();
                now = t.max(now + Duration::from_millis(1));
                server.handle_timeout(now);
                client.handle_timeout(now);
            }
            assert!(
                client.connection(&server_addr()).is_some_and(|c| !c.is_closed()),
                "seed {seed}: the client gave up"
            );
        }
        assert!(echoed.iter().all(|e| *e), "seed {seed}: echoes {echoed:?}");
        let st = server.stats();
        assert!(connected_at_server <= 1, "seed {seed}: {connected_at_server} handshakes completed");
        moved_total += st.address_changes;
    }
    assert!(moved_total > 50, "rebinding happened while the association was in use ({moved_total} moves)");
}
