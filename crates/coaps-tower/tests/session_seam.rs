//! The session seam (DESIGN "Sessions"): the engine keeps nothing itself
//! (`ServerConfig::session_store = None`), issued sessions come out through
//! `HandshakeBuilder::on_session` (engine events `SessionIssued` / `TicketIssued`), a stand-in
//! for a moka/Redis resumption layer stores their bytes (`Session::encode`) in an external map
//! behind asynchronous calls, and on the next ClientHello reads what it offers
//! (`offered_sessions`), fetches, decodes and hands the sessions in (`Datagram::sessions`):
//!
//! * a DTLS 1.2 session ID and a DTLS 1.3 ticket fetched that way resume; the same ClientHello
//!   without them gets a full handshake;
//! * single use of 0-RTT tickets (RFC 8446 §8.1): two resumptions of one ticket with early data
//!   from two addresses — through one stack with the external store's atomic `take`, and
//!   through two endpoints sharing one `MemorySessionStore` — get their early data accepted
//!   once; a ticket handed in without `take` resumes, but without 0-RTT.

use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{
    ClientConfig, DtlsVersion, EarlyDataConfig, Endpoint, Event, FetchedSession, MemorySessionStore, Psk, ServerConfig,
    Session, SessionStore, StaticPsks, offered_sessions,
};
use coaps_tower::handshake::{Handshake, Worker};
use coaps_tower::{BoxError, Datagram, HandshakeLayer, Secured};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tower::util::ServiceFn;
use tower::{Service, ServiceExt, service_fn};

fn server_addr() -> SocketAddr {
    "192.0.2.1:5684".parse().unwrap()
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::new([192, 0, 2, 10 + n].into(), 40000)
}

fn psk() -> Psk {
    Psk::new("device-sessions", b"0123456789abcdef".to_vec()).unwrap()
}

/// A PSK server that keeps no session itself.
fn server(early: Option<EarlyDataConfig>, cookies: bool) -> ServerConfig {
    let mut c = ServerConfig {
        psks: Some(Arc::new(StaticPsks(vec![psk()]))),
        session_store: None,
        early_data: early,
        ..ServerConfig::default()
    };
    if !cookies {
        c.cookie = None;
    }
    c
}

fn client(version: DtlsVersion) -> Arc<ClientConfig> {
    Arc::new(ClientConfig { version, psk: Some(psk()), ..ClientConfig::default() })
}

// ---------------------------------------------------------------------------------------------
// The external store and the resumption "layer" in front of the handshake layer
// ---------------------------------------------------------------------------------------------

/// A shared store outside the engine, reached only through `async` calls that yield and run on
/// spawned tasks (as a Redis client would). Values are `Session::encode`'s bytes.
#[derive(Clone, Default)]
struct ExternalStore(Arc<Mutex<Entries>>);

/// Key → (encoded session, expiry).
type Entries = HashMap<Vec<u8>, (Vec<u8>, Instant)>;

impl ExternalStore {
    async fn put(&self, key: Vec<u8>, bytes: Vec<u8>, ttl: Duration) {
        let map = self.0.clone();
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            map.lock().unwrap().insert(key, (bytes, Instant::now() + ttl));
        })
        .await
        .unwrap();
    }

    /// `take` removes atomically (one lock); `get` leaves the value.
    async fn fetch(&self, key: Vec<u8>, take: bool) -> Option<Vec<u8>> {
        let map = self.0.clone();
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            let mut m = map.lock().unwrap();
            let fresh = m.get(&key).is_some_and(|(_, exp)| Instant::now() < *exp);
            let v = if take { m.remove(&key) } else { m.get(&key).cloned() };
            v.filter(|_| fresh).map(|(b, _)| b)
        })
        .await
        .unwrap()
    }
}

/// What a resumption layer does with one datagram: fetch and decode what the ClientHello
/// offers and hand it in. The first ticket of a ClientHello offering early data is fetched
/// with `take` when `take_early` (single use), else with a plain get.
async fn fetch_offered(store: &ExternalStore, mut d: Datagram, take_early: bool) -> Datagram {
    let Some(offered) = offered_sessions(&d.payload) else { return d };
    let early = offered.early_data();
    let first_ticket = offered.psk_identities().next().map(<[u8]>::to_vec);
    let keys: Vec<Vec<u8>> = offered.keys().map(<[u8]>::to_vec).collect();
    for key in keys {
        let take = take_early && early && first_ticket.as_deref() == Some(&key[..]);
        let Some(bytes) = store.fetch(key, take).await else { continue };
        let session = Session::decode(&bytes, Instant::now(), SystemTime::now()).expect("decodes");
        d.sessions.push(if take { FetchedSession::from_take(session) } else { FetchedSession::from_get(session) });
    }
    d
}

type Echo = ServiceFn<fn(Secured) -> std::future::Ready<Result<Option<Vec<u8>>, BoxError>>>;

fn echo(s: Secured) -> std::future::Ready<Result<Option<Vec<u8>>, BoxError>> {
    std::future::ready(Ok(Some(s.payload)))
}

/// HandshakeLayer (its own cookie gate unless `cookies` is off) whose issued sessions go,
/// asynchronously, to `store`.
struct Stack {
    svc: Handshake<Echo>,
    layer: HandshakeLayer,
    store: ExternalStore,
    /// Sessions issued so far (how many went through the sink).
    issued: Arc<Mutex<Vec<Session>>>,
    _worker: Worker,
}

impl Stack {
    fn new(config: ServerConfig, seed: u64) -> Self {
        let store = ExternalStore::default();
        let issued = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Session>();
        let (s2, i2) = (store.clone(), issued.clone());
        // The layer's writer: encodes and stores each issued session off the datagram path.
        tokio::spawn(async move {
            while let Some(session) = rx.recv().await {
                let now = Instant::now();
                let bytes = session.encode(now, SystemTime::now()).to_vec();
                s2.put(session.store_key().to_vec(), bytes, session.ttl(now)).await;
                i2.lock().unwrap().push(session);
            }
        });
        let layer = HandshakeLayer::builder(Arc::new(config))
            .rng(SeededRng::from_seed_u64(seed))
            .on_session(move |_peer, session| {
                let _ = tx.send(session);
            })
            .own_gate()
            .build();
        let (svc, worker) = layer.pair(service_fn(echo as fn(_) -> _));
        Self { svc, layer, store, issued, _worker: worker }
    }

    async fn call(&mut self, d: Datagram) -> Vec<coaps_tower::Transmit> {
        self.svc.ready().await.unwrap().call(d).await.unwrap().into_vec()
    }

    /// Waits until the writer task has stored `n` sessions.
    async fn stored(&self, n: usize) {
        for _ in 0..1000 {
            // The writer stores before it records.
            if self.issued.lock().unwrap().len() >= n {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the writer stored {} sessions, not {n}", self.issued.lock().unwrap().len());
    }
}

/// How the stand-in resumption layer treats a client's ClientHellos.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Front {
    /// Hands nothing in.
    Nothing,
    /// Fetches with get, and with take for the ticket of a 0-RTT ClientHello.
    Fetch,
    /// Fetches everything with get (a store without take).
    GetOnly,
}

/// A raw-engine client at `addr`, with what it saw.
struct Peer {
    ep: Endpoint,
    addr: SocketAddr,
    events: Vec<Event>,
}

impl Peer {
    fn connect(
        seed: u64,
        addr: SocketAddr,
        version: DtlsVersion,
        resume: Option<Session>,
        early: Option<&[u8]>,
    ) -> Self {
        let mut ep = Endpoint::client(SeededRng::from_seed_u64(seed));
        match early {
            None => ep.connect(Instant::now(), server_addr(), client(version), "localhost", resume).unwrap(),
            Some(e) => ep
                .connect_with_early_data(Instant::now(), server_addr(), client(version), "localhost", resume, e)
                .unwrap(),
        }
        Self { ep, addr, events: Vec::new() }
    }

    async fn pump(&mut self, stack: &mut Stack, front: Front) {
        for _ in 0..30 {
            let mut quiet = true;
            while let Some(t) = self.ep.poll_transmit() {
                quiet = false;
                let mut d = Datagram::new(self.addr, t.payload);
                if front != Front::Nothing {
                    d = fetch_offered(&stack.store, d, front == Front::Fetch).await;
                }
                for a in stack.call(d).await {
                    self.ep.handle_datagram(Instant::now(), server_addr(), &a.payload);
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
        panic!("no quiet after 30 rounds: {:?}", self.events);
    }

    fn resumed(&self) -> Option<bool> {
        self.events.iter().find_map(|e| match e {
            Event::Connected { resumed, .. } => Some(*resumed),
            _ => None,
        })
    }

    fn early_accepted(&self) -> bool {
        self.events.contains(&Event::EarlyDataAccepted)
    }

    fn session(&self) -> Option<Session> {
        self.ep.connection(&server_addr()).and_then(|c| c.session().cloned())
    }

    /// One 1-RTT echo (brings a DTLS 1.3 client its NewSessionTicket), then close_notify.
    /// Returns the client's session from before the close.
    async fn echo_and_close(&mut self, stack: &mut Stack) -> Option<Session> {
        self.ep.send(server_addr(), b"ping").unwrap();
        self.pump(stack, Front::Nothing).await;
        assert!(self.events.contains(&Event::ApplicationData(b"ping".to_vec())), "{:?}", self.events);
        let session = self.session();
        self.ep.close(server_addr());
        self.pump(stack, Front::Nothing).await;
        session
    }
}

/// A full handshake; returns the client's session and the one the server issued (through the
/// sink, stored in the external map).
async fn first_connection(stack: &mut Stack, version: DtlsVersion) -> (Session, Session) {
    let mut p = Peer::connect(1, addr(0), version, None, None);
    p.pump(stack, Front::Fetch).await;
    assert_eq!(p.resumed(), Some(false), "{version:?}: {:?}", p.events);
    let client_side = p.echo_and_close(stack).await.unwrap_or_else(|| panic!("{version:?}: client got no session"));
    stack.stored(1).await;
    let server_side = stack.issued.lock().unwrap()[0].clone();
    assert_eq!(server_side.store_key(), client_side.store_key(), "the key the client will offer");
    assert_eq!(server_side.is_dtls13_ticket(), version == DtlsVersion::Dtls13);
    assert_eq!(stack.layer.associations().count(), 0);
    (client_side, server_side)
}

// ---------------------------------------------------------------------------------------------
// Resumption from a session fetched asynchronously
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn fetched_sessions_resume_and_missing_ones_do_not() {
    for version in [DtlsVersion::Dtls12, DtlsVersion::Dtls13] {
        let mut stack = Stack::new(server(None, true), 7);
        let (session, _) = first_connection(&mut stack, version).await;

        // Handed in: resumed.
        let mut p = Peer::connect(2, addr(1), version, Some(session.clone()), None);
        p.pump(&mut stack, Front::Fetch).await;
        assert_eq!(p.resumed(), Some(true), "{version:?}: {:?}", p.events);
        p.echo_and_close(&mut stack).await;

        // The same offer, nothing handed in: the engine has no copy, a full handshake.
        let mut p = Peer::connect(3, addr(2), version, Some(session.clone()), None);
        p.pump(&mut stack, Front::Nothing).await;
        assert_eq!(p.resumed(), Some(false), "{version:?}: {:?}", p.events);
        p.echo_and_close(&mut stack).await;
    }
}

#[tokio::test]
async fn lifetimes_come_from_the_config() {
    // RFC 8446 §4.6.1: at most seven days; longer is clamped, on the wire and in expiry.
    for (configured, expected) in [(Duration::from_secs(100), 100), (Duration::from_secs(30 * 86_400), 604_800)] {
        let mut stack = Stack::new(ServerConfig { ticket_lifetime: configured, ..server(None, true) }, 9);
        let (client_side, issued) = first_connection(&mut stack, DtlsVersion::Dtls13).await;
        assert_eq!(issued.lifetime(), Duration::from_secs(expected));
        assert_eq!(client_side.lifetime(), Duration::from_secs(expected), "NewSessionTicket.ticket_lifetime");
    }
    let mut stack = Stack::new(ServerConfig { session_lifetime: Duration::from_secs(3600), ..server(None, true) }, 10);
    let (_, issued) = first_connection(&mut stack, DtlsVersion::Dtls12).await;
    assert_eq!(issued.lifetime(), Duration::from_secs(3600));
    assert!(issued.ttl(Instant::now()) <= Duration::from_secs(3600));
}

// ---------------------------------------------------------------------------------------------
// Single use of 0-RTT tickets
// ---------------------------------------------------------------------------------------------

const EARLY: &[u8] = b"GET /t (0-RTT)";

#[tokio::test]
async fn one_ticket_two_addresses_one_early_data_through_the_external_store() {
    // No cookie exchange, so the first ClientHello (with its 0-RTT record) reaches the engine.
    let mut stack = Stack::new(server(Some(EarlyDataConfig::default()), false), 11);
    let (ticket, issued) = first_connection(&mut stack, DtlsVersion::Dtls13).await;
    assert!(issued.allows_early_data());
    let bytes = stack.store.fetch(issued.store_key().to_vec(), false).await.unwrap();

    let mut a = Peer::connect(20, addr(1), DtlsVersion::Dtls13, Some(ticket.clone()), Some(EARLY));
    let mut b = Peer::connect(21, addr(2), DtlsVersion::Dtls13, Some(ticket.clone()), Some(EARLY));
    a.pump(&mut stack, Front::Fetch).await;
    b.pump(&mut stack, Front::Fetch).await;
    assert!(a.early_accepted(), "{:?}", a.events);
    assert_eq!(a.resumed(), Some(true));
    assert!(!b.early_accepted(), "the ticket was taken: {:?}", b.events);
    assert!(b.events.contains(&Event::EarlyDataRejected));
    assert_eq!(b.resumed(), Some(false), "nothing left to resume with");

    // A store without take: the ticket resumes, but its early data is not accepted.
    stack.store.put(issued.store_key().to_vec(), bytes, Duration::from_secs(60)).await;
    let mut c = Peer::connect(22, addr(3), DtlsVersion::Dtls13, Some(ticket), Some(EARLY));
    c.pump(&mut stack, Front::GetOnly).await;
    assert_eq!(c.resumed(), Some(true), "{:?}", c.events);
    assert!(!c.early_accepted() && c.events.contains(&Event::EarlyDataRejected), "{:?}", c.events);
}

#[tokio::test]
async fn an_external_ticket_exempts_a_0rtt_resumption_from_the_cookie_exchange() {
    // Cookies on, the gate inside the handshake layer: a 0-RTT resumption from the address the
    // ticket was issued to skips the HelloRetryRequest (RFC 9147 §5.1) when the layer in front
    // hands the ticket in, as it would with the in-process store.
    let mut stack = Stack::new(server(Some(EarlyDataConfig::default()), true), 12);
    let (ticket, issued) = first_connection(&mut stack, DtlsVersion::Dtls13).await;
    let bytes = stack.store.fetch(issued.store_key().to_vec(), false).await.unwrap();

    // Not handed in: the gate knows no ticket, asks for a cookie, and the second ClientHello
    // may not carry early data (RFC 8446 §4.2.10).
    let mut without = Peer::connect(23, addr(0), DtlsVersion::Dtls13, Some(ticket.clone()), Some(EARLY));
    without.pump(&mut stack, Front::Nothing).await;
    assert!(without.events.contains(&Event::EarlyDataRejected), "{:?}", without.events);
    assert!(!without.early_accepted());

    // Handed in (taken, so single use holds): no cookie exchange, the early data is accepted.
    stack.store.put(issued.store_key().to_vec(), bytes, Duration::from_secs(60)).await;
    let hrr_before = stack.layer.associations().stats().endpoint.hello_retry_requests;
    let mut with = Peer::connect(24, addr(0), DtlsVersion::Dtls13, Some(ticket), Some(EARLY));
    with.pump(&mut stack, Front::Fetch).await;
    assert!(with.early_accepted(), "{:?}", with.events);
    assert_eq!(with.resumed(), Some(true));
    assert_eq!(
        stack.layer.associations().stats().endpoint.hello_retry_requests,
        hrr_before,
        "the exempt 0-RTT ClientHello drew no HelloRetryRequest"
    );
}

#[test]
fn one_ticket_two_endpoints_sharing_a_memory_store_one_early_data() {
    let store = Arc::new(MemorySessionStore::new(100, Duration::from_secs(3600)));
    let config = Arc::new(ServerConfig {
        session_store: Some(store.clone() as Arc<dyn SessionStore>),
        ..server(Some(EarlyDataConfig::default()), false)
    });
    let now = Instant::now();
    let mut servers = [
        Endpoint::server(config.clone(), SeededRng::from_seed_u64(30), now),
        Endpoint::server(config, SeededRng::from_seed_u64(31), now),
    ];
    // Runs client `c` against server `s` until both are quiet; returns the client's events.
    fn run(s: &mut Endpoint, c: &mut Endpoint, from: SocketAddr, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        for _ in 0..20 {
            while let Some(t) = c.poll_transmit() {
                s.handle_datagram(now, from, &t.payload);
            }
            while let Some(t) = s.poll_transmit() {
                c.handle_datagram(now, server_addr(), &t.payload);
            }
            while let Some((_, ev)) = c.poll_event() {
                if let Event::Connected { .. } = ev {
                    let _ = c.send(server_addr(), b"ping");
                }
                events.push(ev);
            }
            while s.poll_event().is_some() {}
        }
        events
    }
    let mut first = Endpoint::client(SeededRng::from_seed_u64(32));
    first.connect(now, server_addr(), client(DtlsVersion::Dtls13), "localhost", None).unwrap();
    run(&mut servers[0], &mut first, addr(0), now);
    let ticket = first.connection(&server_addr()).and_then(|c| c.session().cloned()).expect("ticket");
    assert_eq!(store.len(), 1);

    let mut accepted = 0;
    for (i, server) in servers.iter_mut().enumerate() {
        let mut c = Endpoint::client(SeededRng::from_seed_u64(40 + i as u64));
        c.connect_with_early_data(
            now,
            server_addr(),
            client(DtlsVersion::Dtls13),
            "localhost",
            Some(ticket.clone()),
            EARLY,
        )
        .unwrap();
        let events = run(server, &mut c, addr(1 + i as u8), now);
        assert!(events.iter().any(|e| matches!(e, Event::Connected { .. })), "{events:?}");
        accepted += usize::from(events.contains(&Event::EarlyDataAccepted));
    }
    assert_eq!(accepted, 1, "a single-use ticket's early data is accepted once");
}

// ---------------------------------------------------------------------------------------------
// What a ClientHello offers
// ---------------------------------------------------------------------------------------------

/// The first datagram of a client resuming `resume` (with `early` as 0-RTT data).
fn first_datagram(version: DtlsVersion, resume: Session, early: Option<&[u8]>) -> Vec<u8> {
    Peer::connect(50, addr(5), version, Some(resume), early).ep.poll_transmit().unwrap().payload
}

#[tokio::test]
async fn offered_sessions_lists_session_ids_tickets_and_early_data() {
    let mut stack = Stack::new(server(None, true), 13);
    let (session12, _) = first_connection(&mut stack, DtlsVersion::Dtls12).await;
    let d = first_datagram(DtlsVersion::Dtls12, session12.clone(), None);
    let o = offered_sessions(&d).expect("a ClientHello");
    // The server issued an RFC 5077 ticket and so no session ID (§3.4); the client offers the
    // ticket with a session ID of its own making, whose echo tells it the server resumed.
    assert!(session12.id.is_empty());
    let ticket12 = session12.session_ticket().expect("an RFC 5077 ticket");
    assert_eq!(o.session_ticket(), Some(ticket12));
    let sid = o.session_id().expect("a session ID of the client's making");
    assert_eq!(sid.len(), 32);
    assert_eq!(o.psk_identities().count(), 0);
    assert!(!o.early_data());
    assert_eq!(o.keys().collect::<Vec<_>>(), vec![sid, ticket12]);

    let mut stack = Stack::new(server(Some(EarlyDataConfig::default()), true), 14);
    let (ticket, _) = first_connection(&mut stack, DtlsVersion::Dtls13).await;
    for early in [None, Some(EARLY)] {
        let d = first_datagram(DtlsVersion::Dtls13, ticket.clone(), early);
        let o = offered_sessions(&d).expect("a ClientHello");
        // The ticket first, then the external PSK's identity (RFC 8446 §4.2.11).
        assert_eq!(o.psk_identities().collect::<Vec<_>>(), vec![&ticket.id[..], &b"device-sessions"[..]]);
        assert_eq!(o.early_data(), early.is_some());
        assert_eq!(o.session_id(), None, "RFC 9147 §5: no legacy session ID");
        // Every truncation: a refusal or a shorter list, never a panic.
        for n in 0..d.len() {
            let _ = offered_sessions(&d[..n]).map(|o| o.keys().count());
        }
    }
    // A dual-version client offers a DTLS 1.2 session only by its session ID (legacy_session_id);
    // its hello carries no SessionTicket extension, so a ticket-only session is not offered.
    let d = first_datagram(DtlsVersion::Auto, session12.clone(), None);
    assert_eq!(offered_sessions(&d).and_then(|o| o.session_id()), None);
    assert_eq!(offered_sessions(&d).and_then(|o| o.session_ticket()), None);
}
