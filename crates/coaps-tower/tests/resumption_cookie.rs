//! The cookie exemption of resumptions (RFC 9147 §5.1) with the sessions in a
//! `ResumptionLayer`'s store behind a `CookieLayer` (the stack of `coaps serve`), and the
//! single use of sealed tickets' 0-RTT through `AsyncSessionStore::put_if_absent`:
//!
//! * a 0-RTT resumption from the ticket's address passes the cookie layer without a
//!   HelloRetryRequest and its early data is accepted; from another address it gets the
//!   HelloRetryRequest, and that does not spend the ticket;
//! * with `ServerConfig::skip_cookie_on_resumption` a 1-RTT resumption from the ticket's
//!   address needs no cookie round trip either; without it, it does;
//! * a sealed (stateless) ticket's early data is accepted once across two nodes on one moka
//!   store and one Redis: a replay on either node resumes without it; within the start-up
//!   refusal window none is accepted;
//! * a flood of cookie-less ClientHellos offering random PSK identities costs at most the
//!   cookie layer's look-up budget of store reads per second, and an honest resumption still
//!   works meanwhile.

use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{
    ClientConfig, DtlsVersion, EarlyDataConfig, Endpoint, Psk, ServerConfig, Session, StaticPsks, TicketKeys, Zeroizing,
};
use coaps_test_support::cluster::{self, Node};
use coaps_test_support::redis::RedisServer;
use coaps_tower::Datagram;
use coaps_tower::resumption::{AsyncSessionStore, MokaConfig, MokaStore, RedisConfig, RedisStore, StoreFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Port `n` of host `host` (192.0.2.`host`).
fn addr(host: u8, n: u16) -> SocketAddr {
    SocketAddr::new([192, 0, 2, host].into(), 40000 + n)
}

fn psk() -> Psk {
    Psk::new("device-exempt", b"0123456789abcdef".to_vec()).unwrap()
}

#[derive(Clone)]
struct Setup {
    early: bool,
    skip_1rtt: bool,
    sealed: Option<TicketKeys>,
    startup_refusal: Duration,
    psk_lookup_budget: Option<u32>,
}

impl Setup {
    fn early() -> Self {
        Self { early: true, skip_1rtt: false, sealed: None, startup_refusal: Duration::ZERO, psk_lookup_budget: None }
    }

    /// One server as `coaps serve` stacks it (cluster node: cookie layer, resumption layer,
    /// handshake layer, echo).
    fn node(&self, store: Arc<dyn AsyncSessionStore>, seed: u64) -> Node {
        let mut config = ServerConfig {
            psks: Some(Arc::new(StaticPsks(vec![psk()]))),
            session_store: None,
            skip_cookie_on_resumption: self.skip_1rtt,
            ..ServerConfig::default()
        };
        if self.early {
            config.early_data = Some(EarlyDataConfig::default());
        }
        let mut b = Node::builder(Arc::new(config), store).seed(seed).startup_refusal(self.startup_refusal);
        if let Some(keys) = &self.sealed {
            b = b.stateless_tickets(keys.clone());
        }
        if let Some(n) = self.psk_lookup_budget {
            b = b.psk_lookup_budget(n);
        }
        b.build()
    }
}

fn client_config() -> Arc<ClientConfig> {
    Arc::new(ClientConfig { version: DtlsVersion::Dtls13, psk: Some(psk()), ..ClientConfig::default() })
}

#[derive(Debug)]
struct Outcome {
    resumed: bool,
    early_accepted: bool,
    /// HelloRetryRequests the node sent for this connection.
    hrrs: u64,
    session: Option<Session>,
}

/// A client from `from`: connects (resuming `resume`, with `early` as 0-RTT data), one echo,
/// close.
async fn connect(
    node: &mut Node,
    seed: u64,
    from: SocketAddr,
    resume: Option<Session>,
    early: Option<&[u8]>,
) -> Outcome {
    let hrrs_before = node.hello_retry_requests();
    let o = cluster::connect(node, seed, from, client_config(), resume, early).await;
    let hrrs = node.hello_retry_requests() - hrrs_before;
    Outcome { resumed: o.resumed, early_accepted: o.early_accepted, hrrs, session: o.session }
}

fn moka() -> Arc<dyn AsyncSessionStore> {
    Arc::new(MokaStore::new(MokaConfig::default()))
}

async fn redis(server: &RedisServer) -> Arc<dyn AsyncSessionStore> {
    let mut config = RedisConfig::new(server.url(), [0x5e; 32]);
    config.op_timeout = Duration::from_secs(2);
    let store = RedisStore::connect(config).unwrap();
    for _ in 0..500 {
        if store.is_connected() {
            return Arc::new(store);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the Redis store did not connect: {store:?}");
}

/// A full handshake from host 10: a ticket issued to 192.0.2.10.
async fn ticket(node: &mut Node, seed: u64) -> Session {
    let first = connect(node, seed, addr(10, 0), None, None).await;
    assert!(!first.resumed && first.hrrs == 1, "{first:?}");
    let t = first.session.expect("a ticket");
    assert!(t.allows_early_data() || node.resumption.stats().sessions_stored == 0);
    t
}

#[tokio::test]
async fn zero_rtt_from_the_tickets_address_skips_the_cookie_with_the_layers_store() {
    let mut node = Setup::early().node(moka(), 1);
    let t = ticket(&mut node, 10).await;
    node.stored(1).await;
    // Another address: the HelloRetryRequest (no early data after it), and the ticket stays.
    let other = connect(&mut node, 11, addr(20, 1), Some(t.clone()), Some(b"GET /a")).await;
    assert_eq!(other.hrrs, 1, "{other:?}");
    assert!(other.resumed && !other.early_accepted, "{other:?}");
    // The ticket's address (another port): no cookie round trip, early data accepted.
    let same = connect(&mut node, 12, addr(10, 2), Some(t.clone()), Some(b"GET /a")).await;
    assert_eq!(same.hrrs, 0, "{same:?}: {:?}", node.cookies.as_ref().unwrap().stats());
    assert!(same.resumed && same.early_accepted, "the HelloRetryRequest spent the ticket: {same:?}");
    assert!(node.cookies.as_ref().unwrap().stats().cookie_exempt >= 1);
    // A replay of the ticket: taken, so no early data.
    let replay = connect(&mut node, 13, addr(10, 3), Some(t), Some(b"GET /a")).await;
    assert!(!replay.early_accepted, "{replay:?}");
}

#[tokio::test]
async fn one_rtt_resumption_from_the_tickets_address_skips_the_cookie_when_configured() {
    for skip in [false, true] {
        let setup = Setup { early: false, skip_1rtt: skip, ..Setup::early() };
        let mut node = setup.node(moka(), 2);
        let t = ticket(&mut node, 20).await;
        node.stored(1).await;
        let same = connect(&mut node, 21, addr(10, 1), Some(t.clone()), None).await;
        assert!(same.resumed, "{same:?}");
        assert_eq!(same.hrrs, u64::from(!skip), "skip_cookie_on_resumption {skip}: {same:?}");
        // Another address always pays the cookie round trip.
        let other = connect(&mut node, 22, addr(20, 1), Some(t), None).await;
        assert!(other.resumed && other.hrrs == 1, "{other:?}");
    }
}

#[tokio::test]
async fn one_rtt_resumption_of_a_sealed_ticket_skips_the_cookie() {
    let keys = TicketKeys::new(Duration::from_secs(3600), SystemTime::now());
    let setup = Setup { early: false, skip_1rtt: true, sealed: Some(keys), ..Setup::early() };
    let mut node = setup.node(moka(), 3);
    let t = ticket(&mut node, 30).await;
    let same = connect(&mut node, 31, addr(10, 1), Some(t), None).await;
    assert!(same.resumed && same.hrrs == 0, "{same:?}");
}

/// RFC 8446 §8.1-§8.2: a sealed ticket carries 0-RTT once across the nodes of one store.
#[tokio::test]
async fn a_sealed_tickets_early_data_is_accepted_once_across_two_nodes() {
    let redis_server = RedisServer::start();
    let mut stores = vec![("moka", moka())];
    if let Some(r) = &redis_server {
        stores.push(("redis", redis(r).await));
    }
    for (i, (what, store)) in stores.into_iter().enumerate() {
        let keys = TicketKeys::new(Duration::from_secs(3600), SystemTime::now());
        let setup = Setup { sealed: Some(keys), ..Setup::early() };
        let seed = 100 * (i as u64 + 1);
        let mut a = setup.node(store.clone(), seed);
        let mut b = setup.node(store, seed + 10);
        let t = ticket(&mut a, seed + 20).await;
        let first = connect(&mut a, seed + 21, addr(10, 1), Some(t.clone()), Some(b"GET /s")).await;
        assert!(first.resumed && first.early_accepted && first.hrrs == 0, "{what}: {first:?}");
        for (n, node) in [&mut a, &mut b].into_iter().enumerate() {
            let replay =
                connect(node, seed + 22 + n as u64, addr(10, 2 + n as u16), Some(t.clone()), Some(b"GET /s")).await;
            assert!(replay.resumed && !replay.early_accepted, "{what}: replay {n} got early data: {replay:?}");
        }
        assert_eq!(a.resumption.stats().zero_rtt_recorded, 1, "{what}");
        assert_eq!(a.resumption.stats().zero_rtt_replays + b.resumption.stats().zero_rtt_replays, 2, "{what}");
    }
}

/// Records may have been lost before a start: no sealed ticket carries 0-RTT within the window.
#[tokio::test]
async fn no_sealed_0rtt_within_the_startup_refusal() {
    let keys = TicketKeys::new(Duration::from_secs(3600), SystemTime::now());
    let setup = Setup { sealed: Some(keys), startup_refusal: Duration::from_secs(3600), ..Setup::early() };
    let mut node = setup.node(moka(), 5);
    let t = ticket(&mut node, 50).await;
    let o = connect(&mut node, 51, addr(10, 1), Some(t), Some(b"GET /s")).await;
    assert!(o.resumed && !o.early_accepted, "{o:?}");
    assert_eq!(node.resumption.stats().zero_rtt_refused_at_start, 1);
}

/// Counts the reads (`get`, `take`; `put_if_absent` reads through `get`) that reach the store.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn AsyncSessionStore>,
    reads: AtomicU64,
}

impl AsyncSessionStore for Counting {
    fn put<'a>(&'a self, key: &'a [u8], session: Zeroizing<Vec<u8>>, ttl: Duration) -> StoreFuture<'a, ()> {
        self.inner.put(key, session, ttl)
    }
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Zeroizing<Vec<u8>>>> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.get(key)
    }
    fn take<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Zeroizing<Vec<u8>>>> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.take(key)
    }
}

/// Issue 10: each cookie-less PSK hello the cookie layer defers to the resumption layer costs
/// a store look-up before its address is proven. A flood of them with random identities (from
/// random addresses, for 2.5 s) gets at most the budget of look-ups per second; the rest get the
/// stateless HelloRetryRequest, counted; an honest 0-RTT resumption during the flood resumes.
#[tokio::test]
async fn a_flood_of_cookieless_psk_hellos_costs_at_most_the_budget_of_lookups_per_second() {
    const BUDGET: u64 = 50;
    let store = Arc::new(Counting { inner: moka(), reads: AtomicU64::new(0) });
    let setup = Setup { psk_lookup_budget: Some(BUDGET as u32), ..Setup::early() };
    let mut node = setup.node(store.clone(), 9);
    let t = ticket(&mut node, 90).await;
    node.stored(1).await;
    // The template: a real 0-RTT ClientHello; each copy gets a random ticket in place of the
    // real one (same length), so each is a store miss, and the binder fails if ever checked.
    let mut ep = Endpoint::client(SeededRng::from_seed_u64(91));
    ep.connect_with_early_data(
        Instant::now(),
        cluster::server_addr(),
        client_config(),
        "localhost",
        Some(t.clone()),
        b"x",
    )
    .unwrap();
    let template = ep.poll_transmit().unwrap().payload;
    let id = t.store_key().to_vec();
    let at = template.windows(id.len()).position(|w| w == id.as_slice()).expect("the ticket in the hello");
    let mut rng = SeededRng::from_seed_u64(92);
    let reads_before = store.reads.load(Ordering::Relaxed);
    let cookies = node.cookies.clone().unwrap();
    let (over_before, hrrs_before) = (cookies.stats().psk_lookups_over_budget, cookies.stats().hello_retry_requests);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut honest = None;
    while started.elapsed() < Duration::from_millis(2500) {
        for _ in 0..50 {
            let mut hello = template.clone();
            coaps_dtls::crypto::Rng::fill(&mut rng, &mut hello[at..at + id.len()]);
            let from = SocketAddr::new([198, 51, 100, (sent % 250) as u8 + 1].into(), 1024 + (sent % 60000) as u16);
            let _ = node.call(Datagram::new(from, hello)).await.expect("the stack answers");
            sent += 1;
        }
        if honest.is_none() && started.elapsed() > Duration::from_millis(1200) {
            // Mid-flood, from the ticket's address: the budget of this second may be spent, so
            // it may take the cookie round trip, but it resumes.
            honest = Some(connect(&mut node, 93, addr(10, 7), Some(t.clone()), Some(b"GET /a")).await);
        }
    }
    let elapsed = started.elapsed();
    let reads = store.reads.load(Ordering::Relaxed) - reads_before;
    let s = cookies.stats();
    let over = s.psk_lookups_over_budget - over_before;
    eprintln!(
        "{sent} hellos in {elapsed:?}: {reads} store reads, {over} over the budget, {} HelloRetryRequests; honest \
         {honest:?}",
        s.hello_retry_requests - hrrs_before
    );
    let honest = honest.expect("an honest resumption mid-flood");
    assert!(honest.resumed, "{honest:?}");
    // Fixed one-second windows: the flood spans at most whole seconds + 1 of them (+ 1 for the
    // honest client's own reads).
    let windows = elapsed.as_secs() + 2;
    assert!(sent > 4 * BUDGET * windows, "the flood is too small to test the budget: {sent}");
    // The budget counts hellos passed on for a look-up; each offers two keys here (the random
    // ticket and the external PSK's identity, which the layer cannot tell from a ticket), read
    // concurrently under one bound (at most 4 per hello).
    let looked_up = sent - over;
    assert!(looked_up <= BUDGET * windows, "{looked_up} hellos looked up in {elapsed:?} (budget {BUDGET}/s)");
    assert!(looked_up >= BUDGET, "the budget was used: {looked_up}");
    assert!(reads <= 4 * (looked_up + 2), "{reads} store reads for {looked_up} hellos");
    assert!(s.hello_retry_requests - hrrs_before >= over, "each got a HelloRetryRequest");
}
