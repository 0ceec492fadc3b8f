//! DTLS 1.3 Connection IDs (RFC 9147 §9, the extension of RFC 9146 §3): negotiation in both
//! roles, the CID in the unified header (RFC 9147 §4), NewConnectionId / RequestConnectionId
//! with their per-association cap, and the CID-first demultiplexing the endpoint shares with
//! DTLS 1.2: a client whose NAT binding changes keeps its association, while forged, replayed
//! or copied records cannot move it or make the server flood another address.

use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{CloseReason, ConnectionIdConfig, DtlsVersion, Endpoint, Event, ServerConfig, UsageError};
use coaps_test_support::dtls::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The unified header's fixed bits and C bit (RFC 9147 §4).
const FIXED_MASK: u8 = 0xe0;
const FIXED: u8 = 0x20;
const C_BIT: u8 = 0x10;

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
    /// Client events other than application data.
    client_events: Vec<Event>,
}

impl Pair {
    fn new(server_cfg: Arc<ServerConfig>, client_cid: Option<ConnectionIdConfig>, mode: Mode) -> Self {
        let (_, client_cfg) = configs(mode, None);
        let mut client_cfg = (*client_cfg).clone();
        client_cfg.version = DtlsVersion::Dtls13;
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
            client_events: Vec::new(),
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
                match ev {
                    Event::ApplicationData(d) => self.echoes.push(d),
                    other => self.client_events.push(other),
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

/// Whether `d` starts with a DTLS 1.3 ciphertext record that carries `cid` after its first byte.
fn carries_cid(d: &[u8], cid: &[u8]) -> bool {
    d[0] & FIXED_MASK == FIXED && d[0] & C_BIT != 0 && d.get(1..1 + cid.len()) == Some(cid)
}

#[test]
fn cids_are_negotiated_both_ways_and_carried_in_the_unified_header() {
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
        // RFC 9147 §9 example: the handshake's encrypted records carry the CIDs too (the
        // client's Finished flight, the server's flight after its ServerHello).
        assert!(p.client_sent.iter().any(|d| carries_cid(d, &s.incoming)), "{mode:?}: client's epoch-2 flight");
        assert!(
            p.server_sent.iter().any(|d| d.windows(1 + 4).any(|w| w[0] & 0xf0 == 0x30 && w[1..] == c.incoming[..])),
            "{mode:?}: server's epoch-2 flight"
        );

        p.client_sent.clear();
        p.server_sent.clear();
        p.client_send(b"hello over cid");
        assert_eq!(p.echoes, vec![b"hello over cid".to_vec()], "{mode:?}");
        let up = &p.client_sent[0];
        assert!(carries_cid(up, &s.incoming), "{mode:?}: {up:02x?}");
        let down = &p.server_sent[0];
        assert!(carries_cid(down, &c.incoming), "{mode:?}: {down:02x?}");
    }
}

/// The CID adds exactly its length to a record (RFC 9147 §4: the C bit is in the first byte);
/// prints the bytes per record of a one-byte message with and without CIDs.
#[test]
fn a_cid_costs_its_length_per_record() {
    let mode = Mode::Psk;
    let mut sizes = Vec::new();
    let mut suite = None;
    for (server_cid, client_cid) in [(None, None), (Some(8), Some(4)), (Some(4), Some(0))] {
        let mut p = Pair::new(
            with_server_cid(server_cid.map(ConnectionIdConfig::new), mode),
            client_cid.map(ConnectionIdConfig::new),
            mode,
        );
        let handshake: usize = p.client_sent.iter().chain(&p.server_sent).map(Vec::len).sum();
        println!("  handshake bytes (both ways, PSK) with CIDs {server_cid:?}/{client_cid:?}: {handshake}");
        p.client_sent.clear();
        p.server_sent.clear();
        p.client_send(b"x");
        sizes.push((p.client_sent[0].len(), p.server_sent[0].len()));
        suite = p.client.connection(&server_addr()).unwrap().suite();
    }
    let (up0, down0) = sizes[0];
    println!("DTLS 1.3 ({suite:?}), 1-byte application data: no CID {up0}/{down0} bytes up/down");
    println!("  CIDs 8 (server) / 4 (client): {}/{}", sizes[1].0, sizes[1].1);
    println!("  CIDs 4 (server) / 0 (client): {}/{}", sizes[2].0, sizes[2].1);
    assert_eq!(sizes[1], (up0 + 8, down0 + 4));
    assert_eq!(sizes[2], (up0 + 4, down0));
}

#[test]
fn zero_length_cid_means_send_theirs_but_receive_records_without() {
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
    assert!(carries_cid(&p.client_sent[0], &c.outgoing), "the client sends the server's CID");
    assert_eq!(p.server_sent[0][0] & (FIXED_MASK | C_BIT), FIXED, "no CID this way");
    // RFC 9147 §9: a side that receives an empty CID must not send NewConnectionId; the API
    // refuses it.
    let conn = p.client.connection(&server_addr()).unwrap();
    assert_eq!(conn.connection_id_counts(), (0, 1));
}

#[test]
fn no_cid_unless_both_sides_want_it() {
    let mode = Mode::Psk;
    let mut p = Pair::new(with_server_cid(Some(ConnectionIdConfig::default()), mode), None, mode);
    assert!(p.server.connection(&client_addr()).unwrap().connection_ids().is_none());
    p.client_sent.clear();
    p.client_send(b"plain");
    assert_eq!(p.client_sent[0][0] & C_BIT, 0);
    assert_eq!(p.server.cid_count(), 0);
    let mut p = Pair::new(with_server_cid(None, mode), Some(ConnectionIdConfig::new(4)), mode);
    assert!(p.client.connection(&server_addr()).unwrap().connection_ids().is_none());
    p.client_sent.clear();
    p.server_sent.clear();
    p.client_send(b"plain");
    assert_eq!(p.echoes, vec![b"plain".to_vec()]);
    assert_eq!(p.client_sent[0][0] & C_BIT, 0);
    assert_eq!(p.server_sent[0][0] & C_BIT, 0);
}

#[test]
fn a_record_with_a_foreign_cid_is_dropped() {
    let mode = Mode::Psk;
    let mut p =
        Pair::new(with_server_cid(Some(ConnectionIdConfig::new(6)), mode), Some(ConnectionIdConfig::new(4)), mode);
    let mut rec = p.intercept_client(b"z");
    // Same length, other CID: the index has none such, the address's association refuses it.
    rec[1] ^= 0xff;
    let before = p.server.connection(&client_addr()).unwrap().stats().records_invalid;
    p.server.handle_datagram(p.now, p.nat, &rec);
    p.run();
    assert!(p.echoes.is_empty());
    assert_eq!(p.server.connection(&client_addr()).unwrap().stats().records_invalid, before + 1);
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
    // The (encrypted) sequence number byte after the CID altered: the AEAD covers the header.
    let mut bumped = fresh.clone();
    bumped[1 + 8] = bumped[1 + 8].wrapping_add(7);
    p.server.handle_datagram(p.now, attacker, &bumped);
    // The CID itself is in the additional data too: the right association, a changed byte
    // elsewhere in the header (the first byte's length bit kept, the epoch bits kept).
    p.run();
    assert!(p.server.connection(&attacker).is_none());
    assert!(p.server.connection(&client_addr()).is_some());
    assert_eq!(p.server.stats().address_changes, 0);
    assert_eq!(p.server.stats().address_changes_refused, 3);
    assert!(p.elsewhere.is_empty(), "nothing went to the attacker: {:?}", p.elsewhere);
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
    let copied = p.intercept_client(b"small");
    let victim: SocketAddr = "198.51.100.7:5683".parse().unwrap();
    p.server.handle_datagram(p.now, victim, &copied);
    assert!(p.server.connection(&victim).is_some(), "an authentic, newer record moves it");
    assert!(p.server.is_address_unchecked(&victim));
    let big = vec![7u8; 1000];
    for _ in 0..20 {
        p.server.send(victim, &big).unwrap();
    }
    p.run();
    let to_victim: usize = p.elsewhere.iter().filter(|(a, _)| *a == victim).map(|(_, d)| d.len()).sum();
    assert!(to_victim <= 3 * copied.len(), "{to_victim} bytes to the victim for {} received", copied.len());
    assert!(p.server.stats().amplification_dropped >= 19);
    p.client_send(b"back");
    assert!(p.server.connection(&client_addr()).is_some());
    assert!(p.server.connection(&victim).is_none());
    assert_eq!(p.server.stats().connections_created, 1);
}

/// The client floods the server with NewConnectionId messages carrying many CIDs: the server
/// keeps at most `max_cids` of them (the current one included) and ignores the rest, and the
/// messages are acknowledged like any post-handshake message (the client's flight completes).
#[test]
fn new_connection_id_floods_are_bounded() {
    let mode = Mode::Psk;
    let server_cfg = with_server_cid(Some(ConnectionIdConfig::new(8).with_max_cids(3)), mode);
    let mut p = Pair::new(server_cfg, Some(ConnectionIdConfig::new(4).with_max_cids(200)), mode);
    let mut announced = 0;
    for round in 0..5 {
        announced += p.client.issue_connection_ids(p.now, server_addr(), 30, false).unwrap();
        // One NewConnectionId outstanding at a time (RFC 9147 §9).
        assert!(matches!(
            p.client.issue_connection_ids(p.now, server_addr(), 1, false),
            Err(UsageError::LimitReached(_))
        ));
        p.run();
        let held = p.server.connection(&client_addr()).unwrap().connection_id_counts().1;
        assert_eq!(held, 3, "round {round}: the server holds at most max_cids of the client's CIDs");
    }
    assert_eq!(announced, 150);
    assert_eq!(p.client.connection(&server_addr()).unwrap().connection_id_counts().0, 151);
    // Still usable, and the server still answers with the handshake's CID.
    p.client_send(b"after the flood");
    assert_eq!(p.echoes.last().unwrap(), b"after the flood");
    let c = p.client.connection(&server_addr()).unwrap().connection_ids().unwrap();
    assert!(carries_cid(p.server_sent.last().unwrap(), &c.incoming));
}

/// A NewConnectionId with usage cid_immediate switches the peer to the new CID at once.
#[test]
fn cid_immediate_switches_the_peer_to_the_new_cid() {
    let mode = Mode::Psk;
    let mut p =
        Pair::new(with_server_cid(Some(ConnectionIdConfig::new(8)), mode), Some(ConnectionIdConfig::new(4)), mode);
    // The server gives the client a new CID to use at once; its endpoint indexes it.
    assert_eq!(p.server.issue_connection_ids(p.now, client_addr(), 2, true).unwrap(), 2);
    p.run();
    assert_eq!(p.server.cid_count(), 3);
    let old = p.server.connection(&client_addr()).unwrap().connection_ids().unwrap().incoming;
    let now_used = p.client.connection(&server_addr()).unwrap().connection_ids().unwrap().outgoing;
    assert_ne!(old, now_used);
    assert_eq!(p.client.connection(&server_addr()).unwrap().connection_id_counts(), (1, 2));
    // A rebinding with the new CID finds the association by it.
    p.nat = "10.0.0.3:4444".parse().unwrap();
    p.client_sent.clear();
    p.client_send(b"new cid, new port");
    assert!(carries_cid(&p.client_sent[0], &now_used));
    assert_eq!(p.echoes.last().unwrap(), b"new cid, new port");
    assert_eq!(p.server.stats().address_changes, 1);
    assert_eq!(p.server.stats().connections_created, 1);
}

/// RequestConnectionId is answered with as many CIDs as the cap leaves (here all 3 asked),
/// then with none; a peer that asks again after an answer with fewer than it asked is aborted
/// with too_many_cids_requested (RFC 9147 §9).
#[test]
fn request_connection_id_is_bounded() {
    let mode = Mode::Psk;
    let server_cfg = with_server_cid(Some(ConnectionIdConfig::new(8).with_max_cids(4)), mode);
    let mut p = Pair::new(server_cfg, Some(ConnectionIdConfig::new(4).with_max_cids(16)), mode);
    p.client.request_connection_ids(p.now, server_addr(), 3).unwrap();
    assert!(matches!(p.client.request_connection_ids(p.now, server_addr(), 1), Err(UsageError::LimitReached(_))));
    p.run();
    // 3 more within the cap of 4: all indexed, the client holds them as spares.
    assert_eq!(p.server.connection(&client_addr()).unwrap().connection_id_counts().0, 4);
    assert_eq!(p.server.cid_count(), 4);
    assert_eq!(p.client.connection(&server_addr()).unwrap().connection_id_counts(), (1, 4));
    // Asked again: answered with none (the request is fulfilled, so the client may ask again).
    p.client.request_connection_ids(p.now, server_addr(), 2).unwrap();
    p.run();
    assert_eq!(p.client.connection(&server_addr()).unwrap().connection_id_counts(), (1, 4));
    assert!(p.server.connection(&client_addr()).is_some_and(|c| c.is_established()));
    // Once more after being told there are no more: too_many_cids_requested.
    p.client.request_connection_ids(p.now, server_addr(), 2).unwrap();
    p.run();
    assert!(p.server.connection(&client_addr()).is_none(), "the server closed the association");
    assert_eq!(p.server.cid_count(), 0, "its CIDs left the index");
    let alert = p.client_events.iter().any(|e| {
        matches!(
            e,
            Event::Closed(CloseReason::Error(coaps_dtls::Error::AlertReceived(
                coaps_dtls::AlertDescription::TooManyCidsRequested
            )))
        )
    });
    assert!(alert, "the client got too_many_cids_requested: {:?}", p.client_events);
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

/// Under 20 % loss each way the client's NAT rebinds at random moments between (and during)
/// messages. Over many seeds every message is eventually
/// echoed (the application resends what got no echo), the server never holds more than one
/// association and completes one handshake.
#[test]
fn rebinding_from_the_clients_finished_on_under_loss() {
    let mode = Mode::Psk;
    let server_cfg = with_server_cid(Some(ConnectionIdConfig::new(8)), mode);
    let (_, client_cfg) = configs(mode, None);
    let mut client_cfg = (*client_cfg).clone();
    client_cfg.version = DtlsVersion::Dtls13;
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
        let mut closed = None;
        for _step in 0..20_000 {
            // Not before the client is established. During the cookie exchange a rebinding
            // makes the second ClientHello's cookie (bound to the old address) fail, and
            // DTLS 1.3 allows one HelloRetryRequest only (RFC 8446 §4.1.4), so the client
            // times out (CIDs play no part before the ServerHello). Between the server's new
            // association and the client's receipt of the server's flight, the ServerHello
            // goes to the old address and the retransmitted ClientHello carries no CID. Once
            // the client has the flight, its Finished carries the CID: see
            // `rebinding_before_the_clients_finished_is_followed`.
            let client_done = client.connection(&server_addr()).is_some_and(|c| c.is_established());
            if client_done && rng.chance(3) {
                port += 1;
                nat = format!("10.0.0.2:{port}").parse().unwrap();
            }
            let established = client.connection(&server_addr()).is_some_and(|c| c.is_established());
            if established && next < messages.len() && (next == 0 || echoed[next - 1]) {
                client.send(server_addr(), &messages[next]).unwrap();
                last_send = now;
                next += 1;
            } else if established && next > 0 && !echoed[next - 1] && now - last_send > Duration::from_secs(2) {
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
                if t.destination == nat && !rng.chance(20) {
                    client.handle_datagram(now, server_addr(), &t.payload);
                }
            }
            while let Some((_, ev)) = client.poll_event() {
                if let Event::ApplicationData(d) = &ev
                    && let Some(i) = messages.iter().position(|m| m == d)
                {
                    echoed[i] = true;
                }
                if let Event::Closed(r) = ev {
                    closed = Some(r);
                }
            }
            if echoed.iter().all(|e| *e) {
                break;
            }
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
                "seed {seed}: the client gave up: {:?} {:?}",
                closed,
                std::iter::from_fn(|| client.poll_event()).collect::<Vec<_>>()
            );
        }
        assert!(echoed.iter().all(|e| *e), "seed {seed}: echoes {echoed:?}");
        assert!(connected_at_server <= 1, "seed {seed}: {connected_at_server} handshakes completed");
        assert!(server.connection_count() <= 1, "seed {seed}: {} associations", server.connection_count());
        moved_total += server.stats().address_changes;
    }
    assert!(moved_total > 50, "rebinding happened while the association was in use ({moved_total} moves)");
}

/// DTLS 1.3 puts the CID in the handshake's encrypted records (RFC 9147 §9 example): a NAT
/// rebinding after the client got the server's flight and before its Finished reaches the
/// server is followed, where DTLS 1.2 (plaintext handshake records, no CID) cannot follow it.
#[test]
fn rebinding_before_the_clients_finished_is_followed() {
    for mode in [Mode::Psk, Mode::EcdsaX509] {
        let server_cfg = with_server_cid(Some(ConnectionIdConfig::new(8)), mode);
        let (_, client_cfg) = configs(mode, None);
        let mut client_cfg = (*client_cfg).clone();
        client_cfg.version = DtlsVersion::Dtls13;
        client_cfg.connection_id = Some(ConnectionIdConfig::new(4));
        let now = Instant::now();
        let mut server = Endpoint::server(server_cfg, SeededRng::from_seed_u64(3), now);
        let mut client = Endpoint::client(SeededRng::from_seed_u64(4));
        client.connect(now, server_addr(), Arc::new(client_cfg), "localhost", None).unwrap();
        let old = client_addr();
        let new: SocketAddr = "10.0.0.2:50000".parse().unwrap();
        let mut nat = old;
        let mut to_old_after_move = 0;
        for _ in 0..50 {
            while let Some(t) = client.poll_transmit() {
                // The client's first encrypted record: its Finished flight, with the server's CID.
                if t.payload[0] & FIXED_MASK == FIXED && t.payload[0] & C_BIT != 0 && nat == old {
                    nat = new;
                }
                server.handle_datagram(now, nat, &t.payload);
            }
            while let Some(t) = server.poll_transmit() {
                if t.destination == nat {
                    client.handle_datagram(now, server_addr(), &t.payload);
                } else if nat == new {
                    to_old_after_move += 1;
                }
            }
            while server.poll_event().is_some() {}
            while client.poll_event().is_some() {}
        }
        assert_eq!(nat, new, "{mode:?}: the client's Finished carried a CID");
        assert!(client.connection(&server_addr()).is_some_and(|c| c.is_established()), "{mode:?}");
        assert!(server.connection(&new).is_some_and(|c| c.is_established()), "{mode:?}");
        assert!(server.connection(&old).is_none(), "{mode:?}");
        let st = server.stats();
        assert_eq!((st.connections_created, st.address_changes), (1, 1), "{mode:?}");
        assert_eq!(to_old_after_move, 0, "{mode:?}");
        client.send(server_addr(), b"after").unwrap();
        while let Some(t) = client.poll_transmit() {
            server.handle_datagram(now, nat, &t.payload);
        }
        let got: Vec<_> = std::iter::from_fn(|| server.poll_event()).collect();
        assert!(got.contains(&(new, Event::ApplicationData(b"after".to_vec()))), "{mode:?}: {got:?}");
    }
}

/// A dual-version client (DtlsVersion::Auto) offers its CID in the one ClientHello: a DTLS 1.3
/// server and a DTLS 1.2-only one both agree, and records carry the CIDs either way.
#[test]
fn an_auto_client_gets_cids_from_either_version() {
    let mode = Mode::EcdsaX509;
    for dtls13 in [true, false] {
        let (server, client_cfg) = configs(mode, None);
        let mut s = (*server).clone();
        s.connection_id = Some(ConnectionIdConfig::new(6));
        s.dtls13 = dtls13;
        let mut c = (*client_cfg).clone();
        c.version = DtlsVersion::Auto;
        c.connection_id = Some(ConnectionIdConfig::new(3));
        let now = Instant::now();
        let mut server = Endpoint::server(Arc::new(s), SeededRng::from_seed_u64(5), now);
        let mut client = Endpoint::client(SeededRng::from_seed_u64(6));
        client.connect(now, server_addr(), Arc::new(c), "localhost", None).unwrap();
        let mut echoed = false;
        let mut sent = false;
        for _ in 0..40 {
            while let Some(t) = client.poll_transmit() {
                server.handle_datagram(now, client_addr(), &t.payload);
            }
            while let Some((peer, ev)) = server.poll_event() {
                if let Event::ApplicationData(d) = ev {
                    server.send(peer, &d).unwrap();
                }
            }
            while let Some(t) = server.poll_transmit() {
                client.handle_datagram(now, server_addr(), &t.payload);
            }
            while let Some((_, ev)) = client.poll_event() {
                echoed |= ev == Event::ApplicationData(b"auto".to_vec());
            }
            if !sent && client.connection(&server_addr()).is_some_and(|c| c.is_established()) {
                client.send(server_addr(), b"auto").unwrap();
                sent = true;
            }
        }
        let conn = client.connection(&server_addr()).unwrap();
        let want = if dtls13 { coaps_dtls::ProtocolVersion::DTLS1_3 } else { coaps_dtls::ProtocolVersion::DTLS1_2 };
        assert_eq!(conn.version(), want);
        let ids = conn.connection_ids().expect("CIDs negotiated");
        assert_eq!((ids.incoming.len(), ids.outgoing.len()), (3, 6), "dtls13 {dtls13}");
        assert!(echoed, "dtls13 {dtls13}");
        assert_eq!(server.cid_count(), 1);
    }
}

/// An association the quotas evict (idle, table full) takes its CIDs out of the index: the
/// index holds only the CIDs of associations that exist, however many come and go.
#[test]
fn an_evicted_association_leaves_the_cid_index() {
    let mode = Mode::Psk;
    let (server, _) = configs(mode, None);
    let mut s = (*server).clone();
    s.connection_id = Some(ConnectionIdConfig::new(8));
    s.max_connections = 1;
    s.quotas.min_idle_to_evict = Duration::from_secs(1);
    let mut p = Pair::new(Arc::new(s), Some(ConnectionIdConfig::new(4)), mode);
    assert_eq!(p.server.cid_count(), 1);
    // A second client from another address, once the first has idled past the minimum.
    p.now += Duration::from_secs(5);
    let (_, client_cfg) = configs(mode, None);
    let mut cfg = (*client_cfg).clone();
    cfg.version = DtlsVersion::Dtls13;
    cfg.connection_id = Some(ConnectionIdConfig::new(4));
    let other: SocketAddr = "127.0.0.9:7000".parse().unwrap();
    let mut second = Endpoint::client(SeededRng::from_seed_u64(3));
    second.connect(p.now, server_addr(), Arc::new(cfg), "localhost", None).unwrap();
    for _ in 0..50 {
        let mut moved = false;
        while let Some(t) = second.poll_transmit() {
            moved = true;
            p.server.handle_datagram(p.now, other, &t.payload);
        }
        while let Some(t) = p.server.poll_transmit() {
            if t.destination == other {
                moved = true;
                second.handle_datagram(p.now, server_addr(), &t.payload);
            }
        }
        while p.server.poll_event().is_some() {}
        while second.poll_event().is_some() {}
        if !moved {
            break;
        }
    }
    assert!(second.connection(&server_addr()).is_some_and(|c| c.is_established()), "second handshake failed");
    assert!(p.server.connection(&client_addr()).is_none(), "the idle association was evicted");
    assert_eq!(p.server.stats().evicted_idle, 1);
    assert_eq!(p.server.cid_count(), 1, "only the live association's CID is indexed");
}
