//! `ResumptionLayer` between a `CookieLayer` and a `HandshakeLayer`, over a `MokaStore` and
//! over a `RedisStore` on a private `redis-server`:
//!
//! * two stacks ("nodes") on one store resume each other's clients, DTLS 1.2 (session ID) and
//!   1.3 (ticket); a node rebuilt from scratch (a restart) resumes a client it served before;
//! * Redis stopped mid-test: clients still connect through full handshakes, the failures are
//!   counted, and resumption returns once Redis is back;
//! * stored entries that are forged, truncated, expired, stored under another key, tampered
//!   with in Redis, or replayed after a `take` give a full handshake, never a crash;
//! * a stack wired wrong fails the call with a `WiringError`.

use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{
    ClientConfig, DtlsVersion, EarlyDataConfig, Endpoint, Psk, ServerConfig, Session, StaticPsks, Zeroizing,
};
use coaps_test_support::cluster::{self, Node, Outcome, client_addr, server_addr};
use coaps_test_support::redis::RedisServer;
use coaps_tower::handshake::WiringError;
use coaps_tower::resumption::{
    AsyncSessionStore, MokaConfig, MokaStore, RedisConfig, RedisStore, ResumptionLayer, StoreFuture,
};
use coaps_tower::{BoxError, CookieLayer, Datagram, HandshakeLayer, Secured, Transmits};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const STORE_KEY: [u8; 32] = [0x5e; 32];

fn addr(n: u16) -> SocketAddr {
    client_addr(n)
}

fn psk() -> Psk {
    Psk::new("device-resume", b"0123456789abcdef".to_vec()).unwrap()
}

fn server_config(early: bool) -> Arc<ServerConfig> {
    let mut c = ServerConfig {
        psks: Some(Arc::new(StaticPsks(vec![psk()]))),
        // Sessions live in the layer's store only.
        session_store: None,
        ..ServerConfig::default()
    };
    if early {
        c.early_data = Some(EarlyDataConfig::default());
        c.cookie = None;
    }
    Arc::new(c)
}

fn client_config(version: DtlsVersion) -> Arc<ClientConfig> {
    Arc::new(ClientConfig { version, psk: Some(psk()), ..ClientConfig::default() })
}

/// One server: cookie layer, resumption layer over `store`, handshake layer, echo.
fn node(store: Arc<dyn AsyncSessionStore>, seed: u64) -> Node {
    Node::builder(server_config(false), store).seed(seed).build()
}

/// No cookie layer, 0-RTT accepted: the first ClientHello (with its early data) reaches the
/// resumption layer, which takes the ticket.
fn early_node(store: Arc<dyn AsyncSessionStore>, seed: u64) -> Node {
    Node::builder(server_config(true), store).seed(seed).without_cookie_layer().build()
}

/// A raw-engine client from `from`: connects (resuming `resume`, with `early` as 0-RTT data),
/// sends one echo, closes.
async fn connect(
    node: &mut Node,
    seed: u64,
    from: SocketAddr,
    version: DtlsVersion,
    resume: Option<Session>,
    early: Option<&[u8]>,
) -> Outcome {
    cluster::connect(node, seed, from, client_config(version), resume, early).await
}

fn moka() -> Arc<dyn AsyncSessionStore> {
    Arc::new(MokaStore::new(MokaConfig::default()))
}

fn redis_store(server: &RedisServer) -> RedisStore {
    let mut config = RedisConfig::new(server.url(), STORE_KEY);
    config.op_timeout = Duration::from_secs(2);
    RedisStore::connect(config).unwrap()
}

async fn connected(store: &RedisStore) {
    for _ in 0..500 {
        if store.is_connected() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the Redis store did not connect: {store:?}");
}

/// Full handshake on `a`, resumption on `b`; returns the store writes seen by `a`.
async fn across(a: &mut Node, b: &mut Node, version: DtlsVersion, seed: u64) {
    let first = connect(a, seed, addr(0), version, None, None).await;
    assert!(!first.resumed);
    a.stored(1).await;
    let session = first.session.expect("a session to resume");
    let second = connect(b, seed + 1, addr(1), version, Some(session), None).await;
    assert!(second.resumed, "{version:?}: node B did not resume node A's session: {:?}", b.resumption.stats());
    assert_eq!(b.resumption.stats().sessions_fetched, 1);
}

#[tokio::test]
async fn two_nodes_on_one_moka_store_resume_each_other() {
    for (i, version) in [DtlsVersion::Dtls12, DtlsVersion::Dtls13].into_iter().enumerate() {
        let store = moka();
        let mut a = node(store.clone(), 10 + i as u64);
        let mut b = node(store, 20 + i as u64);
        across(&mut a, &mut b, version, 100 + 10 * i as u64).await;
    }
}

#[tokio::test]
async fn two_nodes_on_one_redis_resume_each_other_and_after_a_restart() {
    let Some(redis) = RedisServer::start() else { return };
    for (i, version) in [DtlsVersion::Dtls12, DtlsVersion::Dtls13].into_iter().enumerate() {
        let i = i as u64;
        let (sa, sb) = (redis_store(&redis), redis_store(&redis));
        connected(&sa).await;
        connected(&sb).await;
        let mut a = node(Arc::new(sa), 30 + i);
        let mut b = node(Arc::new(sb), 40 + i);
        across(&mut a, &mut b, version, 200 + 10 * i).await;

        // Node A restarts (a new stack, a new connection, nothing in memory) and resumes a
        // client that last spoke to it.
        let last = connect(&mut a, 300 + i, addr(2), version, None, None).await;
        a.stored(2).await;
        drop(a);
        let sa = redis_store(&redis);
        connected(&sa).await;
        let mut a = node(Arc::new(sa), 50 + i);
        let again = connect(&mut a, 310 + i, addr(3), version, last.session, None).await;
        assert!(again.resumed, "{version:?}: no resumption after the restart: {:?}", a.resumption.stats());
    }
    // Nothing in Redis is in clear: every value is sealed, and none holds the PSK.
    let keys = redis.keys("coaps:s:*");
    assert!(!keys.is_empty());
    for k in keys {
        let v = coaps_test_support::redis::bulk(&redis.command(&[b"GET", &k])).unwrap();
        assert_eq!(v[0], 1, "sealing format version");
        let ttl = String::from_utf8(redis.command(&[b"PTTL", &k])).unwrap();
        let ms: i64 = ttl.trim().trim_start_matches(':').parse().unwrap();
        assert!(ms > 0 && ms <= 24 * 3600 * 1000, "entry TTL {ms} ms");
    }
}

#[tokio::test]
async fn redis_outage_means_full_handshakes_then_resumption_returns() {
    let Some(mut redis) = RedisServer::start() else { return };
    let store = redis_store(&redis);
    connected(&store).await;
    let store = Arc::new(store);
    let mut node = node(store.clone(), 60);
    let first = connect(&mut node, 400, addr(0), DtlsVersion::Dtls13, None, None).await;
    node.stored(1).await;

    redis.stop();
    // Every client still gets its answer, through a full handshake.
    for n in 0..3u16 {
        let o = connect(&mut node, 410 + u64::from(n), addr(10 + n), DtlsVersion::Dtls13, first.session.clone(), None)
            .await;
        assert!(!o.resumed);
    }
    let s = node.resumption.stats();
    assert!(s.store_errors >= 3, "outage counted: {s:?}");
    assert!(store.stats().errors >= 3);

    // Redis is back (empty): once reconnected, a new session is stored and resumes again.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    loop {
        assert!(Instant::now() < deadline, "resumption did not return: {:?} {:?}", node.resumption.stats(), store);
        n += 1;
        let stored_before = node.resumption.stats().sessions_stored;
        let full = connect(&mut node, 500 + n, addr(100 + n as u16), DtlsVersion::Dtls13, None, None).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if node.resumption.stats().sessions_stored == stored_before {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let r = connect(&mut node, 600 + n, addr(200 + n as u16), DtlsVersion::Dtls13, full.session, None).await;
        if r.resumed {
            break;
        }
    }
}

/// Bad entries under the key a client offers: each gives a full handshake.
#[tokio::test]
async fn forged_truncated_expired_and_moved_entries_are_refused() {
    let store = Arc::new(MokaStore::new(MokaConfig::default()));
    let mut node = node(store.clone(), 70);
    for version in [DtlsVersion::Dtls12, DtlsVersion::Dtls13] {
        let a = connect(&mut node, 700, addr(0), version, None, None).await.session.unwrap();
        let b = connect(&mut node, 701, addr(1), version, None, None).await.session.unwrap();
        let (now, wall) = (Instant::now(), SystemTime::now());
        let good = a.encode(now, wall);
        let ttl = Duration::from_secs(600);
        let mut truncated = good.to_vec();
        truncated.truncate(good.len() - 5);
        let mut forged = good.to_vec();
        forged[1] = 0x77; // unknown kind
        // Issued two days ago by its wall clock: past any lifetime.
        let expired = a.encode(now, wall - Duration::from_secs(2 * 86_400));
        let moved = b.encode(now, wall); // a valid session stored under a's key
        let refused_before = node.resumption.stats().entries_refused;
        let cases: [(&str, Vec<u8>); 5] = [
            ("truncated", truncated),
            ("forged", forged),
            ("expired", expired.to_vec()),
            ("moved", moved.to_vec()),
            ("garbage", vec![0xff; 3]),
        ];
        for (i, (what, bytes)) in cases.into_iter().enumerate() {
            store.put(a.store_key(), Zeroizing::new(bytes), ttl).await.unwrap();
            let o = connect(&mut node, 710 + i as u64, addr(10 + i as u16), version, Some(a.clone()), None).await;
            assert!(!o.resumed, "{version:?}: a {what} entry resumed");
        }
        assert_eq!(node.resumption.stats().entries_refused - refused_before, 5);
        // And the good one resumes.
        store.put(a.store_key(), good, ttl).await.unwrap();
        let o = connect(&mut node, 720, addr(20), version, Some(a.clone()), None).await;
        assert!(o.resumed, "{version:?}");
    }
}

#[tokio::test]
async fn a_value_tampered_with_in_redis_is_refused() {
    let Some(redis) = RedisServer::start() else { return };
    let store = redis_store(&redis);
    connected(&store).await;
    let store = Arc::new(store);
    let mut node = node(store.clone(), 80);
    let s = connect(&mut node, 800, addr(0), DtlsVersion::Dtls12, None, None).await.session.unwrap();
    node.stored(1).await;
    let keys = redis.keys("coaps:s:*");
    assert_eq!(keys.len(), 1);
    let mut v = coaps_test_support::redis::bulk(&redis.command(&[b"GET", &keys[0]])).unwrap();
    let last = v.len() - 1;
    v[last] ^= 1;
    assert!(redis.command(&[b"SET", &keys[0], &v]).starts_with(b"+OK"));
    let o = connect(&mut node, 801, addr(1), DtlsVersion::Dtls12, Some(s), None).await;
    assert!(!o.resumed);
    assert_eq!(store.stats().unsealing_failures, 1);
}

/// RFC 8446 §8.1: a 0-RTT ticket taken by one node is gone for every node; a replay of the
/// same ticket gets a full handshake (and its early data is not accepted).
#[tokio::test]
async fn a_ticket_replayed_after_take_gets_a_full_handshake() {
    let redis = RedisServer::start();
    let mut stores: Vec<(&str, Arc<dyn AsyncSessionStore>)> = vec![("moka", moka())];
    if let Some(r) = &redis {
        let s = redis_store(r);
        connected(&s).await;
        stores.push(("redis", Arc::new(s)));
    }
    for (what, store) in stores {
        let mut a = early_node(store.clone(), 90);
        let mut b = early_node(store, 91);
        let ticket = connect(&mut a, 900, addr(0), DtlsVersion::Dtls13, None, None).await.session.unwrap();
        a.stored(1).await;
        assert!(ticket.allows_early_data());
        let first = connect(&mut a, 901, addr(1), DtlsVersion::Dtls13, Some(ticket.clone()), Some(b"GET /t")).await;
        assert!(first.resumed && first.early_accepted, "{what}: {first:?}");
        let replay = connect(&mut b, 902, addr(2), DtlsVersion::Dtls13, Some(ticket), Some(b"GET /t")).await;
        assert!(!replay.resumed && !replay.early_accepted, "{what}: the taken ticket resumed again: {replay:?}");
    }
}

/// Runs a DTLS 1.2 client through `svc` (its cookie round trip included) and returns the
/// first error the stack answered with.
async fn first_error<S>(mut svc: S) -> Option<BoxError>
where
    S: Service<Datagram, Response = Transmits, Error = BoxError>,
{
    let mut ep = Endpoint::client(SeededRng::from_seed_u64(5));
    ep.connect(Instant::now(), server_addr(), client_config(DtlsVersion::Dtls12), "localhost", None).unwrap();
    for _ in 0..4 {
        while let Some(t) = ep.poll_transmit() {
            match svc.ready().await.unwrap().call(Datagram::new(addr(0), t.payload)).await {
                Ok(answers) => {
                    for a in answers {
                        ep.handle_datagram(Instant::now(), server_addr(), &a.payload);
                    }
                }
                Err(e) => return Some(e),
            }
        }
    }
    None
}

#[tokio::test]
async fn miswired_stacks_fail_loudly() {
    let config = server_config(false);
    let echo = || service_fn(|s: Secured| async move { Ok::<_, BoxError>(Some(s.payload)) });
    let wiring = |e: Option<BoxError>| {
        let e = e.expect("the stack failed");
        e.downcast_ref::<WiringError>().map(ToString::to_string).unwrap_or_else(|| panic!("not a WiringError: {e}"))
    };

    // Behind a cookie layer that is not in front.
    let cookies = CookieLayer::for_server(&config);
    let resumption = ResumptionLayer::behind(moka(), &cookies);
    let handshake = HandshakeLayer::builder(config.clone()).on_session(resumption.session_sink()).own_gate().build();
    let msg = wiring(first_error(ServiceBuilder::new().layer(resumption).layer(handshake).service(echo())).await);
    assert!(msg.contains("wraps no service"), "{msg}");

    // Behind a cookie layer, but another one is in front.
    let (front, other) = (CookieLayer::for_server(&config), CookieLayer::for_server(&config));
    let resumption = ResumptionLayer::behind(moka(), &other);
    let _layered = ServiceBuilder::new().layer(other.clone()).service(echo());
    let handshake =
        HandshakeLayer::builder(config.clone()).on_session(resumption.session_sink()).behind(&front).build();
    let svc = ServiceBuilder::new().layer(front).layer(resumption).layer(handshake).service(echo());
    let msg = wiring(first_error(svc).await);
    assert!(msg.contains("another CookieLayer"), "{msg}");

    // The sink never taken.
    let cookies = CookieLayer::for_server(&config);
    let resumption = ResumptionLayer::behind(moka(), &cookies);
    let handshake = HandshakeLayer::builder(config.clone()).behind(&cookies).build();
    let svc = ServiceBuilder::new().layer(cookies).layer(resumption.clone()).layer(handshake).service(echo());
    let msg = wiring(first_error(svc).await);
    assert!(msg.contains("session_sink"), "{msg}");
    assert!(resumption.stats().wiring_errors >= 1);

    // Built without a cookie layer, yet behind one.
    let cookies = CookieLayer::for_server(&config);
    let resumption = ResumptionLayer::without_cookie_layer(moka());
    let handshake =
        HandshakeLayer::builder(config.clone()).on_session(resumption.session_sink()).behind(&cookies).build();
    let svc = ServiceBuilder::new().layer(cookies).layer(resumption).layer(handshake).service(echo());
    let msg = wiring(first_error(svc).await);
    assert!(msg.contains("ResumptionLayer::behind"), "{msg}");

    // Wired right: no error.
    let mut node = node(moka(), 99);
    let o = connect(&mut node, 990, addr(0), DtlsVersion::Dtls12, None, None).await;
    assert!(!o.resumed);
}

/// A moka store that counts the look-ups (`get` and `take`) reaching it.
#[derive(Debug)]
struct CountingStore {
    inner: MokaStore,
    lookups: std::sync::atomic::AtomicU64,
}

impl CountingStore {
    fn lookups(&self) -> u64 {
        self.lookups.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl AsyncSessionStore for CountingStore {
    fn put<'a>(&'a self, key: &'a [u8], session: Zeroizing<Vec<u8>>, ttl: Duration) -> StoreFuture<'a, ()> {
        self.inner.put(key, session, ttl)
    }
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Zeroizing<Vec<u8>>>> {
        self.lookups.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.get(key)
    }
    fn take<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Zeroizing<Vec<u8>>>> {
        self.lookups.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.take(key)
    }
}

/// Issue 9: the configured external PSK identity is the engine's business, never a store
/// look-up. A DTLS 1.3 external-PSK handshake costs none; a ticket resumption exactly one
/// (the ticket), whatever else the ClientHello offers.
#[tokio::test]
async fn external_psk_identities_cost_no_store_look_up() {
    let store = Arc::new(CountingStore { inner: MokaStore::new(MokaConfig::default()), lookups: Default::default() });
    let mut n = node(store.clone(), 70);
    let first = connect(&mut n, 700, addr(70), DtlsVersion::Dtls13, None, None).await;
    assert!(!first.resumed);
    assert_eq!(store.lookups(), 0, "an external PSK handshake looked the store up: {:?}", n.resumption.stats());
    assert_eq!(n.resumption.stats().external_psks_skipped, 1, "{:?}", n.resumption.stats());
    n.stored(1).await;
    let ticket = first.session.expect("a ticket");
    let second = connect(&mut n, 701, addr(71), DtlsVersion::Dtls13, Some(ticket), None).await;
    assert!(second.resumed, "{:?}", n.resumption.stats());
    assert_eq!(store.lookups(), 1, "{:?}", n.resumption.stats());
    let stats = n.resumption.stats();
    assert_eq!((stats.sessions_fetched, stats.misses), (1, 0), "{stats:?}");
}
