//! Issue 10: replays of a captured 0-RTT flight carrying `POST /actuators/door` against the
//! stack `ResumptionLayer → HandshakeLayer → CoapLayer → EarlyDataLayer → door`, in memory
//! (addresses chosen freely, every datagram seen):
//!
//! * the race across two nodes sharing one session store (moka; Redis when installed): the
//!   copy goes to node B as the original goes to node A; the ticket is taken once, and the
//!   door opens once per honest command, under both policies, for POST, PUT and DELETE;
//! * the captured flight replayed 100 times to the same node while the association lives,
//!   after it closed, from other ports and another host, to a second node, and to a node
//!   restarted on the same store;
//! * with the `reject` policy: 4.01 + Echo, the retry with the Echo runs; forged, stale and
//!   another peer's Echo values are refused and never run;
//! * a GET in 0-RTT is answered in the first round trip; a deferred POST is answered in the
//!   exchange that carries the client's Finished.

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{ClientConfig, DtlsVersion, EarlyDataConfig, Endpoint, Event, Psk, ServerConfig, Session, StaticPsks};
use coaps_test_support::cluster::{self, server_addr};
use coaps_test_support::redis::RedisServer;
use coaps_tower::early_data::ECHO;
use coaps_tower::resumption::{AsyncSessionStore, MokaConfig, MokaStore, RedisConfig, RedisStore};
use coaps_tower::{CoapLayer, CoapRequest, Datagram, EarlyDataLayer, EarlyDataPolicy};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::{Service, ServiceBuilder};

fn addr(host: u8, port: u16) -> SocketAddr {
    SocketAddr::new([192, 0, 2, host].into(), port)
}

fn psk() -> Psk {
    Psk::new("door-0rtt", b"0123456789abcdef".to_vec()).unwrap()
}

fn server_config() -> Arc<ServerConfig> {
    Arc::new(ServerConfig {
        psks: Some(Arc::new(StaticPsks(vec![psk()]))),
        session_store: None,
        early_data: Some(EarlyDataConfig::default()),
        cookie: None,
        ..ServerConfig::default()
    })
}

fn client_config() -> Arc<ClientConfig> {
    Arc::new(ClientConfig { version: DtlsVersion::Dtls13, psk: Some(psk()), ..ClientConfig::default() })
}

/// The door: counts POST, PUT and DELETE (each an actuator command); GET returns the count.
#[derive(Clone, Default)]
struct Door(Arc<AtomicUsize>);

impl Door {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Service<CoapRequest> for Door {
    type Response = Packet;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Packet, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: CoapRequest) -> Self::Future {
        let mut resp = req.response();
        if req.message.header.code == MessageClass::Request(RequestType::Get) {
            resp.header.code = MessageClass::Response(ResponseType::Content);
            resp.payload = self.count().to_string().into_bytes();
        } else {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            resp.header.code = MessageClass::Response(ResponseType::Changed);
            resp.payload = n.to_string().into_bytes();
        }
        std::future::ready(Ok(resp))
    }
}

/// One server node on `store` (a [`cluster::Node`] without a cookie layer), with the door
/// behind the 0-RTT filter.
struct Node {
    node: cluster::Node,
    early: EarlyDataLayer,
}

impl Node {
    fn new(store: Arc<dyn AsyncSessionStore>, seed: u64, door: &Door, policy: EarlyDataPolicy) -> Self {
        Self::with(store, seed, door, EarlyDataLayer::new().policy(policy).echo_key([0x42; 32]))
    }

    fn with(store: Arc<dyn AsyncSessionStore>, seed: u64, door: &Door, early: EarlyDataLayer) -> Self {
        let app = ServiceBuilder::new().layer(CoapLayer::new()).layer(early.clone()).service(door.clone());
        let node = cluster::Node::builder(server_config(), store).seed(seed).without_cookie_layer().build_with(app);
        Self { node, early }
    }

    async fn call(&mut self, from: SocketAddr, payload: Vec<u8>) -> Vec<Vec<u8>> {
        let out = self.node.call(Datagram::new(from, payload)).await.expect("the stack answers");
        out.into_iter().map(|t| t.payload).collect()
    }

    /// Datagrams sent out of band (answers to held requests), after letting spawned tasks run.
    async fn drain(&self) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        for _ in 0..5 {
            tokio::task::yield_now().await;
            while let Some(t) = self.node.associations.try_next_transmit() {
                out.push((t.destination, t.payload));
            }
        }
        out
    }
}

fn request(method: RequestType, mid: u16, path: &str, echo: Option<&[u8]>) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(method);
    p.header.message_id = mid;
    p.set_token(mid.to_be_bytes().to_vec());
    for seg in path.split('/') {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    if let Some(e) = echo {
        p.add_option(CoapOption::Unknown(ECHO), e.to_vec());
    }
    p
}

/// A raw-engine DTLS 1.3 client.
struct Client {
    ep: Endpoint,
    from: SocketAddr,
    events: Vec<Event>,
    answers: Vec<Packet>,
    /// Datagrams sent, and round trips until the first answer.
    sent: Vec<Vec<u8>>,
}

impl Client {
    fn new(seed: u64, from: SocketAddr) -> Self {
        Self {
            ep: Endpoint::client(SeededRng::from_seed_u64(seed)),
            from,
            events: Vec::new(),
            answers: Vec::new(),
            sent: Vec::new(),
        }
    }

    fn deliver(&mut self, d: &[u8]) {
        self.ep.handle_datagram(Instant::now(), server_addr(), d);
        while let Some((_, ev)) = self.ep.poll_event() {
            if let Event::ApplicationData(d) = &ev {
                self.answers.push(Packet::from_bytes(d).expect("a CoAP answer"));
            }
            self.events.push(ev);
        }
    }

    async fn pump(&mut self, node: &mut Node) {
        for _ in 0..30 {
            let mut quiet = true;
            while let Some(t) = self.ep.poll_transmit() {
                quiet = false;
                self.sent.push(t.payload.clone());
                for a in node.call(self.from, t.payload).await {
                    self.deliver(&a);
                }
            }
            for (to, a) in node.drain().await {
                if to == self.from {
                    quiet = false;
                    self.deliver(&a);
                }
            }
            while let Some((_, ev)) = self.ep.poll_event() {
                quiet = false;
                self.events.push(ev);
            }
            if quiet {
                return;
            }
        }
        panic!("no quiet: {:?}", self.events);
    }

    fn accepted(&self) -> bool {
        self.events.iter().any(|e| matches!(e, Event::EarlyDataAccepted))
    }

    fn connected(&self) -> bool {
        self.events.iter().any(|e| matches!(e, Event::Connected { .. }))
    }

    fn ticket(&self) -> Option<Session> {
        self.ep.connection(&server_addr()).and_then(|c| c.session().cloned()).filter(Session::is_dtls13_ticket)
    }

    fn answer(&self, mid: u16) -> Option<&Packet> {
        self.answers.iter().find(|a| a.get_token() == mid.to_be_bytes())
    }
}

/// A full handshake on `node` from `from`; returns the ticket.
async fn ticket(node: &mut Node, seed: u64, from: SocketAddr, stored: u64) -> Session {
    let mut c = Client::new(seed, from);
    c.ep.connect(Instant::now(), server_addr(), client_config(), "localhost", None).unwrap();
    c.pump(node).await;
    assert!(c.connected(), "{:?}", c.events);
    // The NewSessionTicket follows the handshake: one 1-RTT exchange brings it.
    c.ep.send(server_addr(), &request(RequestType::Get, 1, "actuators/door", None).to_bytes().unwrap()).unwrap();
    c.pump(node).await;
    let t = c.ticket().expect("a ticket");
    assert!(t.allows_early_data());
    c.ep.close(server_addr());
    c.pump(node).await;
    node.node.stored(stored).await;
    t
}

/// Finishes an honest command whose first datagram was already handled (its answers in
/// `first_answers`): pumps the handshake, repeats the command as 1-RTT data if the early data
/// was refused (the same message, as `Client::connect_early` does), and under the reject
/// policy retries with the Echo of a 4.01. Returns the final answer's code.
async fn finish_honest(c: &mut Client, node: &mut Node, first_answers: Vec<Vec<u8>>, cmd: &Packet) -> MessageClass {
    for a in first_answers {
        c.deliver(&a);
    }
    c.pump(node).await;
    assert!(c.connected(), "{:?}", c.events);
    let mid = cmd.header.message_id;
    if c.answer(mid).is_none() {
        c.ep.send(server_addr(), &cmd.to_bytes().unwrap()).unwrap();
        c.pump(node).await;
    }
    let answer = c.answer(mid).cloned().unwrap_or_else(|| panic!("no answer: {:?}", c.events));
    if answer.header.code != MessageClass::Response(ResponseType::Unauthorized) {
        return answer.header.code;
    }
    let echo = answer.get_option(CoapOption::Unknown(ECHO)).and_then(|v| v.front()).expect("4.01 carries an Echo");
    let method = match cmd.header.code {
        MessageClass::Request(m) => m,
        _ => unreachable!(),
    };
    let retry = request(method, mid.wrapping_add(1), "actuators/door", Some(echo));
    c.ep.send(server_addr(), &retry.to_bytes().unwrap()).unwrap();
    c.pump(node).await;
    c.answer(mid.wrapping_add(1)).expect("an answer to the retry").header.code
}

fn moka() -> Arc<dyn AsyncSessionStore> {
    Arc::new(MokaStore::new(MokaConfig::default()))
}

async fn stores(redis: &Option<RedisServer>) -> Vec<(&'static str, Arc<dyn AsyncSessionStore>)> {
    let mut out: Vec<(&'static str, Arc<dyn AsyncSessionStore>)> = vec![("moka", moka())];
    if let Some(r) = redis {
        let mut config = RedisConfig::new(r.url(), [0x5e; 32]);
        config.op_timeout = Duration::from_secs(2);
        let s = RedisStore::connect(config).unwrap();
        for _ in 0..500 {
            if s.is_connected() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(s.is_connected(), "Redis did not connect");
        out.push(("redis", Arc::new(s)));
    }
    out
}

/// Issue 10, attack (ii): two nodes on one store; the attacker's copy of the honest 0-RTT
/// flight reaches node B as the original reaches node A (concurrently). At most one of them
/// gets the ticket (atomic `take`), and the door opens once per honest command, under both
/// policies, for POST, PUT and DELETE; 100 races per store and policy.
#[tokio::test]
async fn the_two_node_race_opens_the_door_once_per_command() {
    let redis = RedisServer::start();
    for (what, store) in stores(&redis).await {
        for policy in [EarlyDataPolicy::Defer, EarlyDataPolicy::Reject] {
            let door = Door::default();
            let mut a = Node::new(store.clone(), 1, &door, policy);
            let mut b = Node::new(store.clone(), 2, &door, policy);
            let mut stored = 0;
            let mut both_accepted = 0;
            let mut b_won = 0u32;
            let rounds: u16 = 100;
            for round in 0..rounds {
                stored += 1;
                let t = ticket(&mut a, 1000 + u64::from(round), addr(10, 1000 + round), stored).await;
                let method = [RequestType::Post, RequestType::Put, RequestType::Delete][usize::from(round % 3)];
                let cmd = request(method, 0x4000 + round * 4, "actuators/door", None);
                let mut c = Client::new(5000 + u64::from(round), addr(10, 1000 + round));
                c.ep.connect_with_early_data(
                    Instant::now(),
                    server_addr(),
                    client_config(),
                    "localhost",
                    Some(t),
                    &cmd.to_bytes().unwrap(),
                )
                .unwrap();
                let first = c.ep.poll_transmit().unwrap().payload;
                c.sent.push(first.clone());
                let attacker = addr(66, 4000 + round);
                let before = door.count();
                let b_before = b.early.stats();
                // Which call the runtime polls first alternates: the copy wins the ticket in even
                // rounds, the original in odd ones.
                let (copy, original) = if round % 2 == 0 {
                    tokio::join!(b.call(attacker, first.clone()), a.call(c.from, first))
                } else {
                    let (original, copy) = tokio::join!(a.call(c.from, first.clone()), b.call(attacker, first));
                    (copy, original)
                };
                let _ = copy;
                let code = finish_honest(&mut c, &mut a, original, &cmd).await;
                assert_eq!(code, MessageClass::Response(ResponseType::Changed), "{what} {policy:?} round {round}");
                // The copy's association on B never completes: close everything there, so a
                // held copy would have its last chance to run.
                let _ = b.node.associations.close_all();
                let _ = b.drain().await;
                tokio::task::yield_now().await;
                assert_eq!(door.count(), before + 1, "{what} {policy:?} round {round}: once per command");
                let b_after = b.early.stats();
                let b_took = b_after.deferred + b_after.rejected > b_before.deferred + b_before.rejected;
                b_won += u32::from(b_took);
                if b_took && c.accepted() {
                    both_accepted += 1;
                }
                // The ticket A issued in the resumed handshake is written too.
                stored = a.node.resumption.stats().sessions_stored;
            }
            assert_eq!(both_accepted, 0, "{what} {policy:?}: a ticket accepted twice");
            let s = b.early.stats();
            assert_eq!(s.deferred_run, 0, "{what} {policy:?}: a copy ran on B: {s:?}");
            eprintln!(
                "{what} {policy:?}: the copy won the ticket {b_won} of {rounds}; A {:?}; B {s:?}",
                a.early.stats()
            );
        }
    }
}

/// A resumed 0-RTT client from `from` with `cmd` as early data on `node`; returns the client
/// and the answers to its first datagram.
async fn early(node: &mut Node, seed: u64, from: SocketAddr, t: Session, cmd: &Packet) -> (Client, Vec<Vec<u8>>) {
    let mut c = Client::new(seed, from);
    c.ep.connect_with_early_data(
        Instant::now(),
        server_addr(),
        client_config(),
        "localhost",
        Some(t),
        &cmd.to_bytes().unwrap(),
    )
    .unwrap();
    let first = c.ep.poll_transmit().unwrap().payload;
    c.sent.push(first.clone());
    let answers = node.call(from, first).await;
    (c, answers)
}

/// A GET in 0-RTT is answered with the server's first flight: the client sends one datagram
/// and has the answer before its Finished. A deferred POST is answered in the exchange of the
/// client's Finished: the same datagrams as a 1-RTT request sent with the Finished.
#[tokio::test]
async fn a_0rtt_get_is_answered_in_one_round_trip_and_a_deferred_post_with_the_finished() {
    let door = Door::default();
    let mut node = Node::new(moka(), 7, &door, EarlyDataPolicy::Defer);
    let t = ticket(&mut node, 70, addr(20, 1), 1).await;
    let get = request(RequestType::Get, 0x100, "actuators/door", None);
    let (mut c, answers) = early(&mut node, 71, addr(20, 1), t, &get).await;
    for a in &answers {
        c.deliver(a);
    }
    assert!(c.accepted());
    assert_eq!(c.sent.len(), 1, "one datagram from the client");
    assert_eq!(c.answer(0x100).map(|a| a.header.code), Some(MessageClass::Response(ResponseType::Content)));
    assert!(!node.node.associations.is_established(&addr(20, 1)), "answered before the handshake completed");
    eprintln!(
        "0-RTT GET: 1 datagram out, {} datagrams back ({} bytes) until the answer",
        answers.len(),
        answers.iter().map(Vec::len).sum::<usize>()
    );
    c.pump(&mut node).await;
    let t = c.ticket().expect("a new ticket");
    c.ep.close(server_addr());
    c.pump(&mut node).await;
    node.node.stored(2).await;

    let post = request(RequestType::Post, 0x200, "actuators/door", None);
    let (mut c, answers) = early(&mut node, 72, addr(20, 1), t, &post).await;
    for a in &answers {
        c.deliver(a);
    }
    assert!(c.accepted());
    assert!(c.answer(0x200).is_none(), "held until the handshake completes");
    assert_eq!(door.count(), 0);
    // The client's Finished: the held POST runs and its answer follows at once.
    let finished = c.ep.poll_transmit().expect("the client's Finished").payload;
    assert!(c.ep.poll_transmit().is_none(), "one datagram");
    let mut back = node.call(c.from, finished).await;
    back.extend(node.drain().await.into_iter().map(|(_, d)| d));
    for a in &back {
        c.deliver(a);
    }
    assert_eq!(c.answer(0x200).map(|a| a.header.code), Some(MessageClass::Response(ResponseType::Changed)));
    assert_eq!(door.count(), 1);
    assert_eq!(node.early.stats().deferred_run, 1);
}

/// Reject policy: 4.01 + Echo for the 0-RTT POST, never run; the retry with the Echo runs
/// once; retries with a forged, stale or another peer's Echo get 4.01 and never run.
#[tokio::test]
async fn reject_policy_answers_4_01_with_echo_and_refuses_bad_echo_values() {
    let door = Door::default();
    let mut node = Node::new(moka(), 8, &door, EarlyDataPolicy::Reject);
    let t = ticket(&mut node, 80, addr(30, 1), 1).await;
    let post = request(RequestType::Post, 0x300, "actuators/door", None);
    let (mut c, answers) = early(&mut node, 81, addr(30, 1), t, &post).await;
    for a in &answers {
        c.deliver(a);
    }
    c.pump(&mut node).await;
    assert!(c.accepted());
    let a = c.answer(0x300).expect("answered in 0.5-RTT").clone();
    assert_eq!(a.header.code, MessageClass::Response(ResponseType::Unauthorized));
    let echo = a.get_option(coap_lite::CoapOption::Unknown(ECHO)).and_then(|v| v.front()).unwrap().clone();
    assert_eq!(door.count(), 0);

    let mut forged = echo.clone();
    *forged.last_mut().unwrap() ^= 1;
    let other_peer = node.early.issue_echo(addr(30, 1), &coaps_dtls::PeerIdentity::Psk(b"someone-else".to_vec()));
    let stale = {
        // An Echo issued 60 s ago by a node with the same key (default lifetime 30 s).
        let old = EarlyDataLayer::new()
            .echo_key([0x42; 32])
            .wall_clock(|| std::time::SystemTime::now() - Duration::from_secs(60));
        old.issue_echo(addr(30, 1), &coaps_dtls::PeerIdentity::Psk(b"door-0rtt".to_vec()))
    };
    for (i, bad) in [forged, other_peer, stale, b"short".to_vec()].into_iter().enumerate() {
        let mid = 0x310 + i as u16;
        c.ep.send(server_addr(), &request(RequestType::Post, mid, "actuators/door", Some(&bad)).to_bytes().unwrap())
            .unwrap();
        c.pump(&mut node).await;
        let a = c.answer(mid).expect("answered");
        assert_eq!(a.header.code, MessageClass::Response(ResponseType::Unauthorized), "bad Echo {i}");
        assert!(a.get_option(coap_lite::CoapOption::Unknown(ECHO)).is_some(), "with a fresh Echo");
    }
    assert_eq!(door.count(), 0, "never run");
    assert_eq!(node.early.stats().echo_refused, 4);
    c.ep.send(server_addr(), &request(RequestType::Post, 0x320, "actuators/door", Some(&echo)).to_bytes().unwrap())
        .unwrap();
    c.pump(&mut node).await;
    assert_eq!(c.answer(0x320).map(|a| a.header.code), Some(MessageClass::Response(ResponseType::Changed)));
    assert_eq!(door.count(), 1);
    assert_eq!(node.early.stats().echo_verified, 1);
}

/// Bad input: more held early data than allowed, and early data on an unknown or an already
/// taken ticket: refused, counted, never run.
#[tokio::test]
async fn too_much_early_data_and_unknown_or_taken_tickets_are_refused() {
    let door = Door::default();
    let mut node = Node::new(moka(), 9, &door, EarlyDataPolicy::Defer);
    let t = ticket(&mut node, 90, addr(40, 1), 1).await;
    // A POST whose payload exceeds the held-bytes limit (1024 by default) but fits the
    // engine's max_early_data_size is not: make the layer's limit smaller instead.
    let door2 = Door::default();
    let mut small = Node::with(moka(), 91, &door2, EarlyDataLayer::new().max_deferred_bytes(32));
    let t2 = ticket(&mut small, 92, addr(40, 2), 1).await;
    let mut big = request(RequestType::Post, 0x400, "actuators/door", None);
    big.payload = vec![b'x'; 64];
    let (mut c, answers) = early(&mut small, 93, addr(40, 2), t2, &big).await;
    for a in &answers {
        c.deliver(a);
    }
    c.pump(&mut small).await;
    assert!(c.accepted() && c.connected());
    assert_eq!(small.early.stats().over_limit, 1);
    assert!(c.answer(0x400).is_none(), "no answer");
    assert_eq!(door2.count(), 0, "never run");
    // The client's 1-RTT retransmission of the same message is new to the CoAP layer.
    c.ep.send(server_addr(), &big.to_bytes().unwrap()).unwrap();
    c.pump(&mut small).await;
    assert_eq!(door2.count(), 1);

    // A ticket taken once (its early data accepted) and a ticket this store never issued.
    let post = request(RequestType::Post, 0x500, "actuators/door", None);
    let (mut c, answers) = early(&mut node, 94, addr(40, 1), t.clone(), &post).await;
    for a in answers {
        c.deliver(&a);
    }
    c.pump(&mut node).await;
    assert_eq!(door.count(), 1);
    let misses = node.node.resumption.stats().misses;
    let unknown = {
        let other = Node::new(moka(), 95, &Door::default(), EarlyDataPolicy::Defer);
        let mut other = other;
        ticket(&mut other, 96, addr(40, 1), 1).await
    };
    for (i, t) in [t, unknown].into_iter().enumerate() {
        let from = addr(40, 10 + i as u16);
        let (mut c, answers) = early(&mut node, 97 + i as u64, from, t, &post).await;
        for a in answers {
            c.deliver(&a);
        }
        c.pump(&mut node).await;
        assert!(!c.accepted(), "{i}: early data refused");
    }
    // Counted: every ClientHello that offers the spent or unknown ticket is a miss (at least
    // one per connection).
    assert!(node.node.resumption.stats().misses >= misses + 2, "{:?}", node.node.resumption.stats());
    assert_eq!(door.count(), 1, "never run");
}

/// The captured first datagram of an honest 0-RTT command (ClientHello + early POST, PUT or
/// DELETE) replayed 100 times in each of: (a) to the same node while the association lives,
/// (b) after it closed, (c) from other ports and another host, (d) to a second node on the
/// same store, (e) to a node restarted on the same store. The door opens once per honest
/// command, under both policies.
#[tokio::test]
async fn a_captured_0rtt_flight_replayed_100_times_everywhere_runs_once() {
    for policy in [EarlyDataPolicy::Defer, EarlyDataPolicy::Reject] {
        for (k, method) in [RequestType::Post, RequestType::Put, RequestType::Delete].into_iter().enumerate() {
            let store = moka();
            let door = Door::default();
            let seed = 10_000 + 100 * k as u64;
            let mut a = Node::new(store.clone(), seed, &door, policy);
            let mut b = Node::new(store.clone(), seed + 1, &door, policy);
            let honest = addr(50, 1000);
            let t = ticket(&mut a, seed + 2, honest, 1).await;
            let cmd = request(method, 0x600, "actuators/door", None);
            let (mut c, answers) = early(&mut a, seed + 3, honest, t, &cmd).await;
            let captured = c.sent[0].clone();
            let code = finish_honest(&mut c, &mut a, answers, &cmd).await;
            assert_eq!(code, MessageClass::Response(ResponseType::Changed));
            assert_eq!(door.count(), 1);
            let what = format!("{policy:?} {method:?}");

            // (a) while the association lives.
            for _ in 0..100 {
                let _ = a.call(honest, captured.clone()).await;
            }
            let _ = a.drain().await;
            assert_eq!(door.count(), 1, "{what} (a)");
            // (c) other ports of the honest host and another host, while it lives.
            for i in 0..100u16 {
                let from = if i % 2 == 0 { addr(50, 2000 + i) } else { addr(51, 2000 + i) };
                let _ = a.call(from, captured.clone()).await;
            }
            // (d) the second node.
            for i in 0..100u16 {
                let _ = b.call(addr(52, 3000 + i), captured.clone()).await;
            }
            // (b) after the honest association closed.
            c.ep.close(server_addr());
            c.pump(&mut a).await;
            for i in 0..100u16 {
                let from = if i % 2 == 0 { honest } else { addr(53, 4000 + i) };
                let _ = a.call(from, captured.clone()).await;
            }
            // (e) a node restarted on the same store.
            drop(a);
            let mut restarted = Node::new(store.clone(), seed + 4, &door, policy);
            for i in 0..100u16 {
                let _ = restarted.call(addr(54, 5000 + i), captured.clone()).await;
            }
            // Every half-open association of a replay ends: a held copy has its last chance.
            for n in [&b, &restarted] {
                let _ = n.node.associations.close_all();
                let _ = n.drain().await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(door.count(), 1, "{what}: the door opened once");
            let s = (b.early.stats(), restarted.early.stats());
            assert_eq!(s.0.deferred_run + s.1.deferred_run, 0, "{what}: {s:?}");
            // The door opens again for a new honest command: nothing is stuck.
            let mut fresh = Node::new(store, seed + 5, &door, policy);
            let t = ticket(&mut fresh, seed + 6, addr(55, 1), 1).await;
            let cmd = request(method, 0x700, "actuators/door", None);
            let (mut c, answers) = early(&mut fresh, seed + 7, addr(55, 1), t, &cmd).await;
            let _ = finish_honest(&mut c, &mut fresh, answers, &cmd).await;
            assert_eq!(door.count(), 2, "{what}");
        }
    }
}
