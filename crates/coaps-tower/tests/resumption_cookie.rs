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
//!   refusal window none is accepted.

use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{
    ClientConfig, DtlsVersion, EarlyDataConfig, Endpoint, Event, Psk, ServerConfig, Session, StaticPsks, TicketKeys,
    TicketMode,
};
use coaps_test_support::redis::RedisServer;
use coaps_tower::resumption::{AsyncSessionStore, MokaConfig, MokaStore, RedisConfig, RedisStore, ResumptionLayer};
use coaps_tower::{BoxError, CookieLayer, Datagram, HandshakeLayer, Secured, Transmits};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tower::util::BoxService;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

fn server_addr() -> SocketAddr {
    "192.0.2.1:5684".parse().unwrap()
}

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
}

impl Setup {
    fn early() -> Self {
        Self { early: true, skip_1rtt: false, sealed: None, startup_refusal: Duration::ZERO }
    }
}

/// One server as `coaps serve` stacks it: cookie layer (cookies on), resumption layer, handshake
/// layer, echo.
struct Node {
    svc: BoxService<Datagram, Transmits, BoxError>,
    cookies: CookieLayer,
    resumption: ResumptionLayer,
}

impl Node {
    fn new(store: Arc<dyn AsyncSessionStore>, seed: u64, setup: &Setup) -> Self {
        let mut config = ServerConfig {
            psks: Some(Arc::new(StaticPsks(vec![psk()]))),
            session_store: None,
            skip_cookie_on_resumption: setup.skip_1rtt,
            ..ServerConfig::default()
        };
        if setup.early {
            config.early_data = Some(EarlyDataConfig::default());
        }
        if let Some(keys) = &setup.sealed {
            config.tickets = TicketMode::Stateless(keys.clone());
        }
        let config = Arc::new(config);
        let cookies = CookieLayer::for_server_with_rng(&config, SeededRng::from_seed_u64(seed));
        let mut resumption = ResumptionLayer::behind(store, &cookies)
            .lookup_timeout(Duration::from_secs(3))
            .startup_refusal(setup.startup_refusal);
        if let Some(keys) = &setup.sealed {
            resumption = resumption.ticket_keys(keys.clone());
        }
        let handshake = HandshakeLayer::builder(config)
            .rng(SeededRng::from_seed_u64(seed + 1))
            .on_session(resumption.session_sink())
            .behind(&cookies)
            .build();
        let svc = ServiceBuilder::new()
            .layer(cookies.clone())
            .layer(resumption.clone())
            .layer(handshake)
            .service(service_fn(|s: Secured| async move { Ok::<_, BoxError>(Some(s.payload)) }))
            .boxed();
        Self { svc, cookies, resumption }
    }

    async fn stored(&self, n: u64) {
        for _ in 0..500 {
            if self.resumption.stats().sessions_stored >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{n} sessions not stored: {:?}", self.resumption.stats());
    }
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
    let hrrs_before = node.cookies.stats().hello_retry_requests;
    let config = Arc::new(ClientConfig { version: DtlsVersion::Dtls13, psk: Some(psk()), ..ClientConfig::default() });
    let mut ep = Endpoint::client(SeededRng::from_seed_u64(seed));
    let now = Instant::now();
    match early {
        None => ep.connect(now, server_addr(), config, "localhost", resume).unwrap(),
        Some(e) => ep.connect_with_early_data(now, server_addr(), config, "localhost", resume, e).unwrap(),
    }
    let (mut resumed, mut early_accepted, mut echoed) = (None, false, false);
    for _ in 0..40 {
        let mut quiet = true;
        while let Some(t) = ep.poll_transmit() {
            quiet = false;
            let answers = node.svc.ready().await.unwrap().call(Datagram::new(from, t.payload)).await.unwrap();
            for a in answers {
                ep.handle_datagram(Instant::now(), server_addr(), &a.payload);
            }
        }
        while let Some((_, ev)) = ep.poll_event() {
            quiet = false;
            match ev {
                Event::Connected { resumed: r, .. } => {
                    resumed = Some(r);
                    ep.send(server_addr(), b"ping").unwrap();
                }
                Event::EarlyDataAccepted => early_accepted = true,
                Event::ApplicationData(d) if d == b"ping" => echoed = true,
                Event::Closed(r) => panic!("closed: {r:?}"),
                _ => {}
            }
        }
        if quiet && echoed {
            break;
        }
    }
    assert!(echoed, "no echo (resumed {resumed:?})");
    let session = ep.connection(&server_addr()).and_then(|c| c.session().cloned());
    ep.close(server_addr());
    while let Some(t) = ep.poll_transmit() {
        let _ = node.svc.ready().await.unwrap().call(Datagram::new(from, t.payload)).await;
    }
    let hrrs = node.cookies.stats().hello_retry_requests - hrrs_before;
    Outcome { resumed: resumed.expect("connected"), early_accepted, hrrs, session }
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
    let mut node = Node::new(moka(), 1, &Setup::early());
    let t = ticket(&mut node, 10).await;
    node.stored(1).await;
    // Another address: the HelloRetryRequest (no early data after it), and the ticket stays.
    let other = connect(&mut node, 11, addr(20, 1), Some(t.clone()), Some(b"GET /a")).await;
    assert_eq!(other.hrrs, 1, "{other:?}");
    assert!(other.resumed && !other.early_accepted, "{other:?}");
    // The ticket's address (another port): no cookie round trip, early data accepted.
    let same = connect(&mut node, 12, addr(10, 2), Some(t.clone()), Some(b"GET /a")).await;
    assert_eq!(same.hrrs, 0, "{same:?}: {:?}", node.cookies.stats());
    assert!(same.resumed && same.early_accepted, "the HelloRetryRequest spent the ticket: {same:?}");
    assert!(node.cookies.stats().cookie_exempt >= 1);
    // A replay of the ticket: taken, so no early data.
    let replay = connect(&mut node, 13, addr(10, 3), Some(t), Some(b"GET /a")).await;
    assert!(!replay.early_accepted, "{replay:?}");
}

#[tokio::test]
async fn one_rtt_resumption_from_the_tickets_address_skips_the_cookie_when_configured() {
    for skip in [false, true] {
        let setup = Setup { early: false, skip_1rtt: skip, ..Setup::early() };
        let mut node = Node::new(moka(), 2, &setup);
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
    let mut node = Node::new(moka(), 3, &setup);
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
        let mut a = Node::new(store.clone(), seed, &setup);
        let mut b = Node::new(store, seed + 10, &setup);
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
    let mut node = Node::new(moka(), 5, &setup);
    let t = ticket(&mut node, 50).await;
    let o = connect(&mut node, 51, addr(10, 1), Some(t), Some(b"GET /s")).await;
    assert!(o.resumed && !o.early_accepted, "{o:?}");
    assert_eq!(node.resumption.stats().zero_rtt_refused_at_start, 1);
}
