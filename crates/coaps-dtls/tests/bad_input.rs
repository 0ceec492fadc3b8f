//! Bad input against a server endpoint in every handshake state: "truncated, oversized,
//! garbage and replayed datagrams in every handshake state never panic, never allocate without
//! bound, and never harm other associations".
//!
//! A server and two clients, A and B, run real handshakes concurrently over a lossless FIFO
//! wire driven step by step. After every datagram of A's handshake a fresh, identical run
//! (everything is seeded) is stopped and one class of bad input is injected into the server,
//! from A's own address or from an attacker's; then the run continues and must end with A and
//! B connected and their application data echoed.

mod common;

use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{CloseReason, Endpoint, Event, ServerConfig};
use common::*;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}
fn server() -> SocketAddr {
    addr("10.0.0.1:5684")
}
fn a_addr() -> SocketAddr {
    addr("10.0.0.2:40000")
}
fn b_addr() -> SocketAddr {
    addr("10.0.0.3:40001")
}
fn attacker() -> SocketAddr {
    addr("10.0.0.66:6666")
}

/// xorshift64*: deterministic garbage.
struct Prng(u64);
impl Prng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[derive(Debug, Clone)]
struct Wire {
    from: SocketAddr,
    to: SocketAddr,
    payload: Vec<u8>,
}

struct Client {
    addr: SocketAddr,
    ep: Endpoint,
    msg: &'static [u8],
    connected: bool,
    echoed: bool,
    closed: Option<CloseReason>,
}

struct World {
    now: Instant,
    server: Endpoint,
    clients: Vec<Client>,
    queue: VecDeque<Wire>,
    /// Every datagram delivered, in order.
    log: Vec<Wire>,
    server_events: Vec<(SocketAddr, Event)>,
    /// Datagrams the server addressed to the attacker (answers to spoofed input).
    to_attacker: Vec<Vec<u8>>,
    max_connections: usize,
}

impl World {
    fn new(server_cfg: Arc<ServerConfig>, client_cfg: Arc<coaps_dtls::ClientConfig>, seed: u64) -> Self {
        let now = Instant::now();
        let mut w = Self {
            now,
            server: Endpoint::server(server_cfg, SeededRng::from_seed_u64(seed), now),
            clients: Vec::new(),
            queue: VecDeque::new(),
            log: Vec::new(),
            server_events: Vec::new(),
            to_attacker: Vec::new(),
            max_connections: 0,
        };
        for (i, (a, msg)) in
            [(a_addr(), &b"message from A"[..]), (b_addr(), &b"message from B"[..])].into_iter().enumerate()
        {
            let mut ep = Endpoint::client(SeededRng::from_seed_u64(seed + 1 + i as u64));
            ep.connect(now, server(), client_cfg.clone(), "localhost", None).unwrap();
            w.clients.push(Client { addr: a, ep, msg, connected: false, echoed: false, closed: None });
        }
        w.collect();
        w
    }

    fn collect(&mut self) {
        while let Some((p, ev)) = self.server.poll_event() {
            if let Event::ApplicationData(d) = &ev {
                let _ = self.server.send(p, d);
            }
            self.server_events.push((p, ev));
        }
        while let Some(t) = self.server.poll_transmit() {
            if t.destination == attacker() {
                self.to_attacker.push(t.payload);
            } else {
                self.queue.push_back(Wire { from: server(), to: t.destination, payload: t.payload });
            }
        }
        for c in &mut self.clients {
            while let Some((p, ev)) = c.ep.poll_event() {
                match ev {
                    Event::Connected { .. } => {
                        c.connected = true;
                        c.ep.send(p, c.msg).unwrap();
                    }
                    Event::ApplicationData(d) => c.echoed |= d == c.msg,
                    Event::Closed(r) => c.closed = Some(r),
                    Event::EarlyData(_) | Event::EarlyDataAccepted | Event::EarlyDataRejected => {}
                }
            }
            while let Some(t) = c.ep.poll_transmit() {
                self.queue.push_back(Wire { from: c.addr, to: t.destination, payload: t.payload });
            }
        }
        self.max_connections = self.max_connections.max(self.server.connection_count());
    }

    /// Delivers the next queued datagram, or fires the earliest timer. False when idle.
    fn step(&mut self) -> bool {
        if let Some(w) = self.queue.pop_front() {
            if w.to == server() {
                self.server.handle_datagram(self.now, w.from, &w.payload);
            } else if let Some(c) = self.clients.iter_mut().find(|c| c.addr == w.to) {
                c.ep.handle_datagram(self.now, w.from, &w.payload);
            }
            self.log.push(w);
            self.collect();
            return true;
        }
        let timers =
            std::iter::once(self.server.poll_timeout()).chain(self.clients.iter().map(|c| c.ep.poll_timeout()));
        let Some(t) = timers.flatten().min() else { return false };
        self.now = self.now.max(t);
        self.server.handle_timeout(self.now);
        for c in &mut self.clients {
            c.ep.handle_timeout(self.now);
        }
        self.collect();
        true
    }

    fn a(&self) -> &Client {
        &self.clients[0]
    }
    fn b(&self) -> &Client {
        &self.clients[1]
    }
    fn done(&self) -> bool {
        self.clients.iter().all(|c| c.echoed || c.closed.is_some())
    }

    fn run_to_end(&mut self) {
        for _ in 0..10_000 {
            if self.done() || !self.step() {
                return;
            }
        }
        panic!("run did not settle");
    }

    /// Datagrams of A's handshake delivered so far (either direction).
    fn a_delivered(&self) -> usize {
        self.log.iter().filter(|w| w.from == a_addr() || w.to == a_addr()).count()
    }

    /// Injects `datagrams` into the server from `from`; answers to A go on the wire to A.
    fn inject(&mut self, from: SocketAddr, datagrams: &[Vec<u8>]) {
        for d in datagrams {
            let before = self.to_attacker.iter().map(Vec::len).sum::<usize>();
            self.server.handle_datagram(self.now, from, d);
            self.collect();
            let answered = self.to_attacker.iter().map(Vec::len).sum::<usize>() - before;
            // RFC 6347 §4.2.1: a spoofed source must not get more bytes than it sent.
            assert!(answered <= d.len(), "amplification: {answered} bytes answered to {} sent", d.len());
            assert!(self.server.connection(&attacker()).is_none(), "an association for spoofed input");
            assert!(self.server.connection_count() <= 2, "more associations than real peers");
        }
    }
}

/// Bad-input classes of the issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Truncated,
    Flipped,
    Replayed,
    Oversized,
    Garbage,
    /// Epoch 1, epoch 2, unknown content types, wrong versions.
    BadRecords,
    /// Someone else's datagrams (the server's own, B's) replayed verbatim.
    Reflected,
}
const CLASSES: [Class; 7] = [
    Class::Truncated,
    Class::Flipped,
    Class::Replayed,
    Class::Oversized,
    Class::Garbage,
    Class::BadRecords,
    Class::Reflected,
];

impl Class {
    /// Whether injecting this class from A's own address may legitimately end A's handshake.
    ///
    /// DTLS 1.2 handshake messages are unauthenticated until Finished (RFC 6347 §4.2,
    /// RFC 5246 §7.4.9), so whoever can send from A's address can forge an in-sequence message
    /// that the server must treat as A's: a flipped message_seq turns an old message into the
    /// next expected one, and a reflected flight is a well-formed message of the wrong kind.
    /// The engine must then fail the handshake cleanly (both sides see `Closed`), never hang,
    /// and never touch B. Every other class must leave A's handshake intact.
    fn may_break_a(self) -> bool {
        matches!(self, Class::Flipped | Class::Reflected)
    }
}

fn record(content_type: u8, version: u16, epoch: u16, seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![content_type];
    v.extend_from_slice(&version.to_be_bytes());
    v.extend_from_slice(&epoch.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes()[2..]);
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn bad_inputs(class: Class, recorded: &[Vec<u8>], rng: &mut Prng) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    match class {
        Class::Truncated => {
            for d in recorded {
                let mut cuts = vec![0, 1, 3, 12, 13, 14, 25, d.len() / 2, d.len().saturating_sub(1)];
                cuts.push(1 + rng.below(d.len().max(1)));
                cuts.sort_unstable();
                cuts.dedup();
                out.extend(cuts.into_iter().filter(|&c| c < d.len()).map(|c| d[..c].to_vec()));
            }
        }
        Class::Flipped => {
            for d in recorded {
                // Header fields first (type, version, epoch, seq, length, handshake type,
                // length, message_seq, fragment offset/length), then random positions.
                let mut at = vec![0, 2, 4, 10, 11, 12, 13, 15, 18, 21, 24];
                at.extend((0..4).map(|_| rng.below(d.len().max(1))));
                for i in at.into_iter().filter(|&i| i < d.len()) {
                    for mask in [0x01, 0xff] {
                        let mut f = d.clone();
                        f[i] ^= mask;
                        out.push(f);
                    }
                }
            }
        }
        Class::Replayed | Class::Reflected => {
            out.extend(recorded.iter().cloned());
            out.extend(recorded.iter().rev().cloned());
        }
        Class::Oversized => {
            out.push(rng.bytes(65_535));
            // A handshake record header claiming 65535 bytes, in a short and in a full datagram.
            let mut hdr = record(22, 0xfefd, 0, 7, &[]);
            hdr[11] = 0xff;
            hdr[12] = 0xff;
            out.push(hdr.clone());
            let mut big = hdr.clone();
            big.extend(rng.bytes(65_535));
            out.push(big);
            // A ClientHello fragment announcing a 16 MB message.
            let mut hs = vec![1, 0xff, 0xff, 0xff, 0, 1, 0, 0, 0, 0, 0, 16];
            hs.extend(rng.bytes(16));
            out.push(record(22, 0xfefd, 0, 8, &hs));
            // Many records in one datagram.
            let mut many = Vec::new();
            for s in 0..2000 {
                many.extend(record(22, 0xfefd, 0, s, &[]));
            }
            out.push(many);
        }
        Class::Garbage => {
            for _ in 0..40 {
                let n = rng.below(1500);
                out.push(rng.bytes(n));
            }
            // Garbage behind a plausible handshake record header.
            for _ in 0..20 {
                let n = rng.below(300);
                out.push(record(22, 0xfefd, 0, rng.below(100) as u64, &rng.bytes(n)));
            }
        }
        Class::BadRecords => {
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
        }
    }
    out
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
    let mut reference = World::new(server_cfg.clone(), client_cfg.clone(), seed);
    reference.run_to_end();
    assert!(reference.a().echoed && reference.b().echoed, "{mode:?}: reference run failed");
    let a_total = reference.a_delivered();
    let all: Vec<Vec<u8>> = reference.log.iter().map(|w| w.payload.clone()).collect();
    let mut injected = 0;
    let mut failures = Vec::new();
    let mut clean_failures = 0;
    for point in (0..=a_total).step_by(point_stride) {
        for class in CLASSES {
            for from in [a_addr(), attacker()] {
                let mut w = World::new(server_cfg.clone(), client_cfg.clone(), seed);
                while w.a_delivered() < point && w.step() {}
                // From A's address: A's own old datagrams (what an on-path attacker saw), or for
                // `Reflected` everyone else's so far; from a stranger, anything of the exchange.
                let recorded: Vec<Vec<u8>> = if from != a_addr() {
                    all.clone()
                } else {
                    let own = |x: &&Wire| (x.from == a_addr()) != (class == Class::Reflected);
                    w.log.iter().filter(own).map(|x| x.payload.clone()).collect()
                };
                let mut rng = Prng(0x9e37_79b9_7f4a_7c15 ^ (point as u64) << 8 ^ class as u64);
                let bad = bad_inputs(class, &recorded, &mut rng);
                injected += bad.len();
                w.inject(from, &bad);
                w.run_to_end();
                let what = format!("{mode:?} point {point}/{a_total} {class:?} from {from}");
                assert!(w.max_connections <= 2, "{what}: {} associations", w.max_connections);
                assert!(w.server.connection(&attacker()).is_none(), "{what}");
                // B never shares anything with A's injections: it must always be unaffected.
                assert!(w.b().echoed && w.b().closed.is_none(), "{what}: B harmed: {:?}", w.b().closed);
                let a_ok = w.a().echoed && w.a().closed.is_none();
                if !a_ok && from == a_addr() && class.may_break_a() {
                    // A clean failure: A learns of it (alert or retransmission budget) and the
                    // server holds no half-dead association for A.
                    assert!(w.a().closed.is_some(), "{what}: A left hanging (connected {})", w.a().connected);
                    assert!(
                        w.server.connection(&a_addr()).is_none_or(|c| !c.is_established()),
                        "{what}: server kept an association A gave up on"
                    );
                    clean_failures += 1;
                } else if !a_ok {
                    failures.push(format!(
                        "{what}: A connected {} echoed {} closed {:?}",
                        w.a().connected,
                        w.a().echoed,
                        w.a().closed
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} injection runs broke A:\n{}", failures.len(), failures.join("\n"));
    eprintln!("{mode:?}: {clean_failures} forged-message runs ended A's handshake cleanly");
    injected
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

fn spoofed(ch: &[u8], rng: &mut Prng) -> (SocketAddr, Vec<u8>) {
    let mut d = ch.to_vec();
    // record header (13) + handshake header (12) + client_version (2): then the random.
    d[27..59].copy_from_slice(&rng.bytes(32));
    let ip = std::net::Ipv4Addr::from(rng.next() as u32);
    let port = (rng.next() as u16).max(1);
    (SocketAddr::from((ip, port)), d)
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
        let (from, d) = spoofed(&ch, &mut rng);
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
fn half_open_limit_holds_without_cookies_and_spares_established_peers() {
    let (psk_server, client_cfg) = configs(Mode::Psk, None);
    let server_cfg = Arc::new(ServerConfig { cookie: None, max_handshakes: 100, ..(*psk_server).clone() });
    let mut w = World::new(server_cfg, client_cfg, 5);
    w.run_to_end();
    assert!(w.a().echoed && w.b().echoed);
    assert_eq!(w.server.connection_count(), 2);

    let ch = client_hello_datagram();
    let mut rng = Prng(7);
    let flood = 1_000;
    for _ in 0..flood {
        let (from, d) = spoofed(&ch, &mut rng);
        w.server.handle_datagram(w.now, from, &d);
        while w.server.poll_transmit().is_some() {}
        assert!(w.server.connection_count() <= 102, "half-open limit exceeded: {}", w.server.connection_count());
    }
    assert_eq!(w.server.connection_count(), 102, "100 half-open plus A and B");
    assert_eq!(w.server.stats().dropped_limit, flood - 100);

    // Established peers still talk.
    for c in &mut w.clients {
        c.echoed = false;
        c.ep.send(server(), c.msg).unwrap();
    }
    w.collect();
    w.run_to_end();
    assert!(w.a().echoed && w.b().echoed, "established peers harmed by the flood");

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
    let mut w = World::new(server_cfg, client_cfg, 9);
    w.run_to_end();
    assert!(w.a().echoed && w.b().echoed);
    let app = w
        .log
        .iter()
        .find(|x| x.from == a_addr() && x.payload.first() == Some(&23) && x.payload[3..5] == [0, 1])
        .expect("A's application data on the wire")
        .payload
        .clone();
    let data_events = |w: &World| {
        w.server_events.iter().filter(|(p, e)| *p == a_addr() && matches!(e, Event::ApplicationData(_))).count()
    };
    let events_before = data_events(&w);
    let replayed_before = w.server.connection(&a_addr()).unwrap().stats().records_replayed;
    w.server.handle_datagram(w.now, a_addr(), &app);
    w.collect();
    assert_eq!(data_events(&w), events_before, "a replayed record was delivered again");
    assert_eq!(w.server.connection(&a_addr()).unwrap().stats().records_replayed, replayed_before + 1);
    // From another address it reaches no association at all.
    w.server.handle_datagram(w.now, attacker(), &app);
    w.collect();
    assert_eq!(data_events(&w), events_before);
    assert!(w.server.connection(&attacker()).is_none());
    // And the association still works.
    w.clients[0].echoed = false;
    w.clients[0].ep.send(server(), b"message from A").unwrap();
    w.collect();
    w.run_to_end();
    assert!(w.a().echoed);
}

/// Regression: a replay of the cookie-bearing ClientHello that created an association passed
/// the cookie gate again (the cookie was still fresh) and replaced the live association with a
/// new half-open one. RFC 6347 §4.2.8: an association is not destroyed before the client
/// demonstrates reachability, and a replay demonstrates nothing.
#[test]
fn replayed_client_hello_does_not_replace_an_established_association() {
    let (server_cfg, client_cfg) = configs(Mode::Psk, None);
    let mut w = World::new(server_cfg, client_cfg, 13);
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
    w.clients[0].echoed = false;
    w.clients[0].ep.send(server(), b"message from A").unwrap();
    w.collect();
    w.run_to_end();
    assert!(w.a().echoed, "A's association was replaced");
}

/// Regression: the cookie binds version, random, session_id, suites and compression methods
/// but not the extensions, so a replayed cookie-bearing ClientHello with an extension byte
/// altered still passed the gate and replaced A's established association.
#[test]
fn altered_replay_of_the_client_hello_does_not_replace_an_established_association() {
    let (server_cfg, client_cfg) = configs(Mode::Psk, None);
    let mut w = World::new(server_cfg, client_cfg, 17);
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
    w.clients[0].echoed = false;
    w.clients[0].ep.send(server(), b"message from A").unwrap();
    w.collect();
    w.run_to_end();
    assert!(w.a().echoed, "A's association was replaced");
}
