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
use coaps_test_support::redis::RedisServer;
use coaps_tower::early_data::ECHO;
use coaps_tower::resumption::{AsyncSessionStore, MokaConfig, MokaStore, RedisConfig, RedisStore, ResumptionLayer};
use coaps_tower::{
    Associations, BoxError, CoapLayer, CoapRequest, Datagram, EarlyDataLayer, EarlyDataPolicy, HandshakeLayer,
    Transmits,
};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::util::BoxService;
use tower::{Service, ServiceBuilder, ServiceExt};

fn server_addr() -> SocketAddr {
    "192.0.2.1:5684".parse().unwrap()
}

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

/// One server node on `store`, with the door behind the 0-RTT filter.
struct Node {
    svc: BoxService<Datagram, Transmits, BoxError>,
    resumption: ResumptionLayer,
    associations: Associations,
    early: EarlyDataLayer,
}

impl Node {
    fn new(store: Arc<dyn AsyncSessionStore>, seed: u64, door: &Door, policy: EarlyDataPolicy) -> Self {
        let resumption = ResumptionLayer::without_cookie_layer(store).lookup_timeout(Duration::from_secs(3));
        let handshake = HandshakeLayer::builder(server_config())
            .rng(SeededRng::from_seed_u64(seed))
            .on_session(resumption.session_sink())
            .own_gate()
            .build();
        let associations = handshake.associations();
        let early = EarlyDataLayer::new().policy(policy).echo_key([0x42; 32]);
        let svc = ServiceBuilder::new()
            .layer(resumption.clone())
            .layer(handshake)
            .layer(CoapLayer::new())
            .layer(early.clone())
            .service(door.clone())
            .boxed();
        Self { svc, resumption, associations, early }
    }

    async fn call(&mut self, from: SocketAddr, payload: Vec<u8>) -> Vec<Vec<u8>> {
        let out = self.svc.ready().await.unwrap().call(Datagram::new(from, payload)).await.expect("the stack answers");
        out.into_iter().map(|t| t.payload).collect()
    }

    /// Datagrams sent out of band (answers to held requests), after letting spawned tasks run.
    async fn drain(&self) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        for _ in 0..5 {
            tokio::task::yield_now().await;
            while let Some(t) = self.associations.try_next_transmit() {
                out.push((t.destination, t.payload));
            }
        }
        out
    }

    async fn stored(&self, n: u64) {
        for _ in 0..600 {
            if self.resumption.stats().sessions_stored >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{n} sessions not stored: {:?}", self.resumption.stats());
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
    node.stored(stored).await;
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
                let _ = b.associations.close_all();
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
                stored = a.resumption.stats().sessions_stored;
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
