//! Bad-input injection harness shared by `bad_input.rs` (DTLS 1.2) and `bad_input13.rs`
//! (DTLS 1.3): a server and two clients, A and B, on a lossless FIFO wire driven step by step,
//! a deterministic garbage source, and the bad-input classes with the generators both versions
//! share.

use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{ClientConfig, CloseReason, Endpoint, Event, ServerConfig, Session, Stats};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}
pub fn server() -> SocketAddr {
    addr("10.0.0.1:5684")
}
pub fn a_addr() -> SocketAddr {
    addr("10.0.0.2:40000")
}
pub fn b_addr() -> SocketAddr {
    addr("10.0.0.3:40001")
}
pub fn attacker() -> SocketAddr {
    addr("10.0.0.66:6666")
}

/// xorshift64*: deterministic garbage.
pub struct Prng(pub u64);
impl Prng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
    /// A random IPv4 source address (port never 0), for spoofed datagrams.
    pub fn addr(&mut self) -> SocketAddr {
        let ip = std::net::Ipv4Addr::from(self.next_u64() as u32);
        let port = (self.next_u64() as u16).max(1);
        SocketAddr::from((ip, port))
    }
}

#[derive(Debug, Clone)]
pub struct Wire {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub payload: Vec<u8>,
}

pub struct Client {
    pub addr: SocketAddr,
    pub ep: Endpoint,
    pub msg: &'static [u8],
    pub connected: bool,
    pub echoed: bool,
    pub closed: Option<CloseReason>,
    pub data_events: usize,
}

impl Client {
    /// A client at `addr` that has not connected yet.
    pub fn new(addr: SocketAddr, ep: Endpoint, msg: &'static [u8]) -> Self {
        Self { addr, ep, msg, connected: false, echoed: false, closed: None, data_events: 0 }
    }
}

/// When [`World::run_to_end`] stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// As soon as every client has its echo or is closed (at most 10 000 steps).
    WhenDone,
    /// When nothing is queued and no timer is pending, so every flight is acknowledged (at
    /// most 20 000 steps).
    WhenIdle,
}

/// Configurations of one scenario, and the rules its run is held to.
#[derive(Clone)]
pub struct Setup {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
    /// Tickets for A and B (resumption mode).
    pub resume: [Option<Session>; 2],
    /// Whether A starts a KeyUpdate once echoed (post-handshake traffic in the matrix).
    pub key_update: bool,
    /// At most this many bytes may answer each byte a spoofed source sent: 1 under DTLS 1.2
    /// (RFC 6347 §4.2.1), 3 under DTLS 1.3 (RFC 9147 §5.1).
    pub amplification: usize,
    pub settle: Settle,
}

impl Setup {
    /// A DTLS 1.2 scenario: no amplification at all, stop once both clients are echoed.
    pub fn dtls12(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Self {
        Self { server, client, resume: [None, None], key_update: false, amplification: 1, settle: Settle::WhenDone }
    }

    /// A DTLS 1.3 scenario (the configurations must select 1.3): A updates its keys once
    /// echoed, runs settle when idle.
    pub fn dtls13(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Self {
        Self { server, client, resume: [None, None], key_update: true, amplification: 3, settle: Settle::WhenIdle }
    }
}

pub struct World {
    pub now: Instant,
    pub server: Endpoint,
    pub clients: Vec<Client>,
    pub queue: VecDeque<Wire>,
    /// Every datagram delivered, in order.
    pub log: Vec<Wire>,
    pub server_events: Vec<(SocketAddr, Event)>,
    /// Datagrams the server addressed to the attacker (answers to spoofed input).
    pub to_attacker: Vec<Vec<u8>>,
    pub max_connections: usize,
    pub key_update: bool,
    pub key_update_started: bool,
    pub amplification: usize,
    pub settle: Settle,
}

impl World {
    pub fn new(s: &Setup, seed: u64, now: Instant) -> Self {
        let mut w = Self {
            now,
            server: Endpoint::server(s.server.clone(), SeededRng::from_seed_u64(seed), now),
            clients: Vec::new(),
            queue: VecDeque::new(),
            log: Vec::new(),
            server_events: Vec::new(),
            to_attacker: Vec::new(),
            max_connections: 0,
            key_update: s.key_update,
            key_update_started: false,
            amplification: s.amplification,
            settle: s.settle,
        };
        for (i, (a, msg)) in
            [(a_addr(), &b"message from A"[..]), (b_addr(), &b"message from B"[..])].into_iter().enumerate()
        {
            let mut ep = Endpoint::client(SeededRng::from_seed_u64(seed + 1 + i as u64));
            let resume = s.resume[i].clone().map(|mut t| {
                t.established_at = now;
                t
            });
            ep.connect(now, server(), s.client.clone(), "localhost", resume).unwrap();
            w.clients.push(Client::new(a, ep, msg));
        }
        w.collect();
        w
    }

    pub fn collect(&mut self) {
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
                    Event::ApplicationData(d) => {
                        c.data_events += 1;
                        c.echoed |= d == c.msg;
                    }
                    Event::Closed(r) => c.closed = Some(r),
                    e @ (Event::EarlyData(_) | Event::EarlyDataAccepted | Event::EarlyDataRejected) => {
                        panic!("these clients offer no early data: {e:?}")
                    }
                    // Issued sessions are reported to servers only.
                    _ => {}
                }
            }
            while let Some(t) = c.ep.poll_transmit() {
                self.queue.push_back(Wire { from: c.addr, to: t.destination, payload: t.payload });
            }
        }
        // Post-handshake traffic: once A has its echo it updates its keys (RFC 9147 §8).
        if self.key_update && !self.key_update_started && self.clients[0].echoed {
            self.key_update_started = true;
            let now = self.now;
            let _ = self.clients[0].ep.key_update(now, server());
            while let Some(t) = self.clients[0].ep.poll_transmit() {
                self.queue.push_back(Wire { from: a_addr(), to: t.destination, payload: t.payload });
            }
        }
        self.max_connections = self.max_connections.max(self.server.connection_count());
    }

    /// Delivers the next queued datagram, or fires the earliest timer. False when idle.
    pub fn step(&mut self) -> bool {
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

    pub fn a(&self) -> &Client {
        &self.clients[0]
    }
    pub fn b(&self) -> &Client {
        &self.clients[1]
    }
    pub fn done(&self) -> bool {
        self.clients.iter().all(|c| c.echoed || c.closed.is_some())
    }

    /// Runs until the scenario's [`Settle`] point.
    pub fn run_to_end(&mut self) {
        let (limit, stop_when_done) = match self.settle {
            Settle::WhenDone => (10_000, true),
            Settle::WhenIdle => (20_000, false),
        };
        for _ in 0..limit {
            if (stop_when_done && self.done()) || !self.step() {
                return;
            }
        }
        panic!("run did not settle");
    }

    /// Datagrams of A's exchange delivered so far (either direction).
    pub fn a_delivered(&self) -> usize {
        self.log.iter().filter(|w| w.from == a_addr() || w.to == a_addr()).count()
    }

    pub fn server_stats(&self, peer: SocketAddr) -> Stats {
        self.server.connection(&peer).map(|c| c.stats()).unwrap_or_default()
    }

    /// Injects `datagrams` into the server from `from` (answers to A go on the wire to A);
    /// checks amplification and that strangers get no state.
    pub fn inject_server(&mut self, from: SocketAddr, datagrams: &[Vec<u8>]) {
        for d in datagrams {
            let before = self.to_attacker.iter().map(Vec::len).sum::<usize>();
            self.server.handle_datagram(self.now, from, d);
            self.collect();
            let answered = self.to_attacker.iter().map(Vec::len).sum::<usize>() - before;
            // RFC 6347 §4.2.1, RFC 9147 §5.1: a spoofed source gets no more than the
            // version's amplification factor times what it sent.
            assert!(
                answered <= self.amplification * d.len(),
                "amplification: {answered} bytes answered to {} sent",
                d.len()
            );
            assert!(self.server.connection(&attacker()).is_none(), "an association for spoofed input");
            assert!(self.server.connection_count() <= 2, "more associations than real peers");
        }
    }

    /// Injects into client A as if from the server.
    pub fn inject_client(&mut self, datagrams: &[Vec<u8>]) {
        for d in datagrams {
            self.clients[0].ep.handle_datagram(self.now, server(), d);
            self.collect();
            assert!(self.clients[0].ep.connection_count() <= 1);
        }
    }

    /// A sends one more message after everything settled and must get it back.
    pub fn a_talks_again(&mut self) -> bool {
        if self.clients[0].closed.is_some() || !self.clients[0].connected {
            return false;
        }
        self.clients[0].echoed = false;
        if self.clients[0].ep.send(server(), b"message from A").is_err() {
            return false;
        }
        self.collect();
        self.run_to_end();
        self.clients[0].echoed
    }
}

/// What an injection matrix found, run by run.
#[derive(Debug, Default)]
pub struct Tally {
    /// Bad datagrams injected.
    pub injected: usize,
    /// Runs in which a forged message ended A's handshake cleanly.
    pub clean_failures: usize,
    /// Runs that broke A when they must not have.
    pub failures: Vec<String>,
}

impl Tally {
    /// Panics with every run that broke A.
    pub fn assert_no_failures(&self) {
        assert!(
            self.failures.is_empty(),
            "{} injection runs broke A:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

impl World {
    /// Judges a run that went on to its end after an injection (`what` names it): at most two
    /// associations ever, none for the attacker, B untouched; A connected and echoed (and, with
    /// `talk_again`, able to talk once more), or, where `may_break_a`, failed cleanly.
    pub fn judge(&mut self, what: &str, may_break_a: bool, talk_again: bool, tally: &mut Tally) {
        assert!(self.max_connections <= 2, "{what}: {} associations", self.max_connections);
        assert!(self.server.connection(&attacker()).is_none(), "{what}");
        // B never shares anything with A's injections: it must always be unaffected.
        assert!(self.b().echoed && self.b().closed.is_none(), "{what}: B harmed: {:?}", self.b().closed);
        let a_ok = self.a().echoed && self.a().closed.is_none() && (!talk_again || self.a_talks_again());
        if !a_ok && may_break_a {
            // A clean failure: A learns of it (alert or retransmission budget) and the server
            // holds no half-dead association for A.
            assert!(
                self.a().closed.is_some(),
                "{what}: A left hanging (connected {}); server {:?}, A's association established {:?}",
                self.a().connected,
                self.server.stats(),
                self.server.connection(&a_addr()).map(|c| c.is_established())
            );
            assert!(
                self.server.connection(&a_addr()).is_none_or(|c| !c.is_established()),
                "{what}: server kept an association A gave up on"
            );
            tally.clean_failures += 1;
        } else if !a_ok {
            tally.failures.push(format!(
                "{what}: A connected {} echoed {} closed {:?}",
                self.a().connected,
                self.a().echoed,
                self.a().closed
            ));
        }
    }

    /// Both clients send their message again; true when both get it back.
    pub fn everyone_talks_again(&mut self) -> bool {
        for c in &mut self.clients {
            c.echoed = false;
            c.ep.send(server(), c.msg).unwrap();
        }
        self.collect();
        self.run_to_end();
        self.a().echoed && self.b().echoed
    }

    /// Application data the server delivered from `peer` so far.
    pub fn server_data_events(&self, peer: SocketAddr) -> usize {
        self.server_events.iter().filter(|(p, e)| *p == peer && matches!(e, Event::ApplicationData(_))).count()
    }

    /// The payloads delivered so far that `keep` selects.
    pub fn delivered(&self, keep: impl Fn(&Wire) -> bool) -> Vec<Vec<u8>> {
        self.log.iter().filter(|w| keep(w)).map(|w| w.payload.clone()).collect()
    }
}

/// Bad-input classes of the issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Truncated,
    Flipped,
    Replayed,
    Oversized,
    Garbage,
    /// Records of the version under test that no endpoint should accept: wrong epochs,
    /// versions, content types or header forms (see each file's `bad_inputs`).
    BadRecords,
    /// Someone else's datagrams replayed verbatim.
    Reflected,
}
pub const CLASSES: [Class; 7] = [
    Class::Truncated,
    Class::Flipped,
    Class::Replayed,
    Class::Oversized,
    Class::Garbage,
    Class::BadRecords,
    Class::Reflected,
];

/// A DTLSPlaintext record (RFC 6347 §4.1, RFC 9147 §4).
pub fn record(content_type: u8, version: u16, epoch: u16, seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![content_type];
    v.extend_from_slice(&version.to_be_bytes());
    v.extend_from_slice(&epoch.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes()[2..]);
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Every datagram cut at each of `cuts`, at its middle, one byte short and at one random
/// length.
pub fn truncations(recorded: &[Vec<u8>], cuts: &[usize], rng: &mut Prng) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for d in recorded {
        let mut cuts = cuts.to_vec();
        cuts.extend([d.len() / 2, d.len().saturating_sub(1)]);
        cuts.push(1 + rng.below(d.len().max(1)));
        cuts.sort_unstable();
        cuts.dedup();
        out.extend(cuts.into_iter().filter(|&c| c < d.len()).map(|c| d[..c].to_vec()));
    }
    out
}

/// Every datagram with one bit, then one whole byte, flipped at each of `at` and at four
/// random positions.
pub fn flips(recorded: &[Vec<u8>], at: &[usize], rng: &mut Prng) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for d in recorded {
        let mut at = at.to_vec();
        at.extend((0..4).map(|_| rng.below(d.len().max(1))));
        for i in at.into_iter().filter(|&i| i < d.len()) {
            for mask in [0x01, 0xff] {
                let mut f = d.clone();
                f[i] ^= mask;
                out.push(f);
            }
        }
    }
    out
}

/// The recorded datagrams in order, then in reverse.
pub fn replays(recorded: &[Vec<u8>]) -> Vec<Vec<u8>> {
    recorded.iter().chain(recorded.iter().rev()).cloned().collect()
}

/// Oversized plaintext input: a 65535-byte datagram of garbage, a handshake record header
/// claiming 65535 bytes in a short and in a full datagram, and a ClientHello fragment
/// announcing a 16 MB message.
pub fn oversized_plaintext(rng: &mut Prng) -> Vec<Vec<u8>> {
    let mut out = vec![rng.bytes(65_535)];
    let mut hdr = record(22, 0xfefd, 0, 7, &[]);
    hdr[11] = 0xff;
    hdr[12] = 0xff;
    out.push(hdr.clone());
    let mut big = hdr;
    big.extend(rng.bytes(65_535));
    out.push(big);
    let mut hs = vec![1, 0xff, 0xff, 0xff, 0, 1, 0, 0, 0, 0, 0, 16];
    hs.extend(rng.bytes(16));
    out.push(record(22, 0xfefd, 0, 8, &hs));
    out
}

/// 2000 empty epoch-0 handshake records in one datagram.
pub fn many_plaintext_records() -> Vec<u8> {
    (0..2000).flat_map(|s| record(22, 0xfefd, 0, s, &[])).collect()
}

/// A copy of the ClientHello datagram `ch` with a fresh random, from a random address.
pub fn spoofed_client_hello(ch: &[u8], rng: &mut Prng) -> (SocketAddr, Vec<u8>) {
    let mut d = ch.to_vec();
    // record header (13) + handshake header (12) + client_version (2): then the random.
    d[27..59].copy_from_slice(&rng.bytes(32));
    (rng.addr(), d)
}

/// `n` datagrams of random bytes, each shorter than 1500.
pub fn garbage(rng: &mut Prng, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let len = rng.below(1500);
            rng.bytes(len)
        })
        .collect()
}
