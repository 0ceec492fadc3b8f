//! Resumption handshakes per second through the Tower stack with the `ResumptionLayer`
//! (`CookieLayer` + `ResumptionLayer` + `HandshakeLayer`), its store a `MokaStore` or a
//! `RedisStore` on a private loopback `redis-server`, beside the engine with its in-process
//! store and OpenSSL's session-ID resumption, in the same run (cookie exchange on everywhere;
//! one thread runs client and server, as in `benches/handshake.rs`).
//!
//! * `resumption/dtls12-session-id-<mode>`: DTLS 1.2 session ID; `coaps-engine` (in-process
//!   `MemorySessionStore`, the engine alone), `layer-moka`, `layer-redis`, `openssl`.
//! * `resumption/dtls13-ticket-psk`: DTLS 1.3 stateful ticket (psk_dhe_ke): `layer-moka`,
//!   `layer-redis` (each resumption also stores the new ticket the server issues).
//! * `resumption/dtls12-stateless-ticket-psk-chacha20`: DTLS 1.2 RFC 5077 ticket sealed by the
//!   server (`TicketMode::Stateless`), the layer over moka or Redis (the store is then out of
//!   the resumption's path; with Redis the ticket keys come from it through `TicketKeySync`),
//!   beside `openssl`: OpenSSL's own stateless tickets (no server session cache).
//! * `resumption/dtls13-stateless-ticket-psk`: DTLS 1.3 stateless ticket: `layer-moka`,
//!   `layer-redis`.
//! * `resumption/anti-replay-per-0rtt`: the store operation each accepted 0-RTT handshake adds
//!   for its anti-replay (RFC 8446 §8): `*-take`, the atomic single use of a stateful ticket
//!   (`AsyncSessionStore::take`; a 1-RTT resumption reads it with `get` instead), and
//!   `*-record`, the record of a sealed ticket's 0-RTT use (`put_if_absent` in
//!   `KeySpace::ZeroRtt`; Redis `SET NX PX`, with the store's sealing of the value), on moka
//!   and on Redis. No OpenSSL row: OpenSSL's DTLS has no 0-RTT.
//!
//! Criterion measures the bench thread's CPU time (`COAPS_BENCH_WALL=1`: wall time); Redis's
//! own CPU is in its process and not counted, so a wall-clock rate per row is printed too
//! (`COAPS_RESUME_WALL_N` handshakes each, default 2000). Then the heap per session cached in
//! moka (`COAPS_RESUME_MEM_N` sessions, default 100 000), counted by a `#[global_allocator]`.
//!
//! Each layer handshake ends with the client's close_notify through the stack (so the
//! association table does not grow): one record more than the engine and OpenSSL rows pay.

use coaps_bench_support::cpu::{ThreadCpuTime, wall_time_requested};
use coaps_bench_support::ours::{self, SERVER};
use coaps_bench_support::report::{duration, mean_ns, per_second};
use coaps_bench_support::{CountingAlloc, Mode, alloc, ossl};
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{
    CipherSuite, ClientConfig, Endpoint, Event, ServerConfig, Session, TicketKeys, TicketMode, Zeroizing,
};
use coaps_test_support::redis::RedisServer;
use coaps_tower::resumption::{
    AsyncSessionStore, KeySpace, MokaConfig, MokaStore, RedisConfig, RedisStore, ResumptionLayer, TicketKeySync,
};
use coaps_tower::{BoxError, CookieLayer, Datagram, HandshakeLayer, Secured, Transmits};
use criterion::measurement::Measurement;
use criterion::{BatchSize, Criterion, Throughput};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tower::util::BoxService;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const MODE: Mode = Mode::PskChaCha;
const GROUP12: &str = "resumption/dtls12-session-id-psk-chacha20";
const GROUP13: &str = "resumption/dtls13-ticket-psk";
const GROUP12_STATELESS: &str = "resumption/dtls12-stateless-ticket-psk-chacha20";
const GROUP13_STATELESS: &str = "resumption/dtls13-stateless-ticket-psk";
const GROUP_ANTI_REPLAY: &str = "resumption/anti-replay-per-0rtt";
/// Ticket-key period of the stateless rows: no rotation during a run.
const TICKET_KEY_PERIOD: Duration = Duration::from_secs(3600);

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The Tower stack with a resumption layer over `store`, and a client that resumes through it.
struct LayerHarness {
    rt: tokio::runtime::Runtime,
    svc: BoxService<Datagram, Transmits, BoxError>,
    resumption: ResumptionLayer,
    client_config: Arc<ClientConfig>,
    session: Option<Session>,
    counter: u64,
}

impl LayerHarness {
    /// `stateless`: the server seals its tickets under these keys (`TicketMode::Stateless`).
    fn new(
        rt: tokio::runtime::Runtime,
        store: Arc<dyn AsyncSessionStore>,
        v13: bool,
        stateless: Option<TicketKeys>,
    ) -> Self {
        let (mut server, client_config) =
            if v13 { ours::configs13(MODE, CipherSuite::TLS_CHACHA20_POLY1305_SHA256) } else { ours::configs(MODE) };
        Arc::make_mut(&mut server).session_store = None;
        if let Some(keys) = &stateless {
            Arc::make_mut(&mut server).tickets = TicketMode::Stateless(keys.clone());
        }
        let (svc, resumption) = rt.block_on(async {
            let server: Arc<ServerConfig> = server;
            let cookies = CookieLayer::for_server_with_rng(&server, SeededRng::from_seed_u64(1));
            let mut resumption = ResumptionLayer::behind(store, &cookies);
            if let Some(keys) = stateless.clone() {
                resumption = resumption.ticket_keys(keys);
            }
            let handshake = HandshakeLayer::builder(server)
                .rng(SeededRng::from_seed_u64(2))
                .max_associations(1 << 20)
                .on_session(resumption.session_sink())
                .behind(&cookies)
                .build();
            let svc = ServiceBuilder::new()
                .layer(cookies)
                .layer(resumption.clone())
                .layer(handshake)
                .service(service_fn(|s: Secured| async move { Ok::<_, BoxError>(Some(s.payload)) }))
                .boxed();
            (svc, resumption)
        });
        let mut h = Self { rt, svc, resumption, client_config, session: None, counter: 0 };
        let resumed = h.handshake();
        assert!(!resumed, "the first handshake is a full one");
        if stateless.is_some() {
            assert!(h.handshake(), "the second handshake resumes");
            // A 1.3 hello also offers the external PSK's identity, which the layer cannot tell
            // from a stateful ticket: that one is looked up (a miss).
            let stats = h.resumption.stats();
            assert_eq!(stats.sessions_fetched, 0, "a stateless ticket is opened, not fetched");
            if !v13 {
                assert_eq!(stats.hellos_looked_up, 0, "a 1.2 stateless ticket costs no look-up");
            }
            return h;
        }
        // The store write runs off the datagram path.
        h.rt.block_on(async {
            for _ in 0..1000 {
                if h.resumption.stats().sessions_stored > 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            panic!("no session stored: {:?}", h.resumption.stats());
        });
        assert!(h.handshake(), "the second handshake resumes");
        h
    }

    /// One handshake from a new client address, resuming the kept session; returns whether it
    /// resumed.
    fn handshake(&mut self) -> bool {
        self.counter += 1;
        let n = self.counter;
        let from = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2 + (n / 60_000 % 250) as u8)),
            1024 + (n % 60_000) as u16,
        );
        let mut client = Endpoint::client(SeededRng::from_seed_u64(n));
        client.connect(Instant::now(), SERVER, self.client_config.clone(), "localhost", self.session.clone()).unwrap();
        let svc = &mut self.svc;
        let resumed = self.rt.block_on(async {
            let mut resumed = None;
            for _ in 0..16 {
                let mut moved = false;
                while let Some(t) = client.poll_transmit() {
                    moved = true;
                    let answers = svc.ready().await.unwrap().call(Datagram::new(from, t.payload)).await.unwrap();
                    for a in answers {
                        client.handle_datagram(Instant::now(), SERVER, &a.payload);
                    }
                }
                while let Some((_, ev)) = client.poll_event() {
                    moved = true;
                    if let Event::Connected { resumed: r, .. } = ev {
                        resumed = Some(r);
                    }
                }
                if !moved {
                    break;
                }
            }
            let session = client.connection(&SERVER).and_then(|c| c.session().cloned());
            client.close(SERVER);
            while let Some(t) = client.poll_transmit() {
                let _ = svc.ready().await.unwrap().call(Datagram::new(from, t.payload)).await;
            }
            (resumed.expect("the handshake completed"), session)
        });
        let (resumed, session) = resumed;
        if self.session.is_none() {
            self.session = session;
        }
        resumed
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Keeps the Redis server alive for the run; `None` without `redis-server`.
fn redis() -> Option<RedisServer> {
    if coaps_test_support::peers::find_on_path("redis-server").is_none() {
        eprintln!("redis-server not installed: the layer-redis rows are skipped");
        return None;
    }
    RedisServer::start()
}

fn redis_store(rt: &tokio::runtime::Runtime, server: &RedisServer) -> Arc<dyn AsyncSessionStore> {
    rt.block_on(async {
        let s = RedisStore::connect(RedisConfig::new(server.url(), [0x5e; 32])).unwrap();
        for _ in 0..500 {
            if s.is_connected() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Arc::new(s) as Arc<dyn AsyncSessionStore>
    })
}

fn moka() -> Arc<dyn AsyncSessionStore> {
    Arc::new(MokaStore::new(MokaConfig::default()))
}

/// The layer harnesses of one group, by row name; `stateless`: stateless tickets (moka: keys
/// of this process; Redis: keys shared through the store, as `coaps serve --redis` has them).
fn layer_rows(redis: Option<&RedisServer>, v13: bool, stateless: bool) -> Vec<(&'static str, LayerHarness)> {
    let local_keys = stateless.then(|| TicketKeys::new(TICKET_KEY_PERIOD, SystemTime::now()));
    let mut rows = vec![("layer-moka", LayerHarness::new(runtime(), moka(), v13, local_keys))];
    if let Some(r) = redis {
        let rt = runtime();
        let store = redis_store(&rt, r);
        let shared_keys = stateless.then(|| {
            let sync = TicketKeySync::new(store.clone(), TICKET_KEY_PERIOD);
            rt.block_on(sync.refresh()).expect("ticket keys from Redis");
            sync.keys()
        });
        rows.push(("layer-redis", LayerHarness::new(rt, store, v13, shared_keys)));
    }
    rows
}

fn bench<M: Measurement>(c: &mut Criterion<M>, redis: Option<&RedisServer>) {
    let mut g = c.benchmark_group(GROUP12);
    g.throughput(Throughput::Elements(1));
    let mut engine = ours::Harness::new(MODE);
    engine.prime_session();
    g.bench_function("coaps-engine", |b| b.iter(|| black_box(engine.handshake(true))));
    for (name, mut h) in layer_rows(redis, false, false) {
        g.bench_function(name, |b| b.iter(|| assert!(black_box(h.handshake()))));
    }
    let mut theirs = ossl::Harness::new(MODE);
    theirs.prime_session();
    g.bench_function("openssl", |b| b.iter(|| black_box(theirs.handshake(true))));
    g.finish();

    let mut g = c.benchmark_group(GROUP12_STATELESS);
    g.throughput(Throughput::Elements(1));
    for (name, mut h) in layer_rows(redis, false, true) {
        g.bench_function(name, |b| b.iter(|| assert!(black_box(h.handshake()))));
    }
    let mut theirs = ossl::Harness::with_tickets(MODE);
    theirs.prime_session();
    g.bench_function("openssl", |b| b.iter(|| black_box(theirs.handshake(true))));
    g.finish();

    for (group, stateless) in [(GROUP13, false), (GROUP13_STATELESS, true)] {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(1));
        for (name, mut h) in layer_rows(redis, true, stateless) {
            g.bench_function(name, |b| b.iter(|| assert!(black_box(h.handshake()))));
        }
        g.finish();
    }
}

/// Wall-clock handshakes per second of each layer row (Redis's round trips included).
fn wall_rates(redis: Option<&RedisServer>) {
    let n = env_n("COAPS_RESUME_WALL_N", 2000);
    println!("\n| row | wall-clock resumptions/s ({n} sequential, client and server on one thread) |");
    println!("|---|---:|");
    for (group, v13, stateless) in [
        (GROUP12, false, false),
        (GROUP12_STATELESS, false, true),
        (GROUP13, true, false),
        (GROUP13_STATELESS, true, true),
    ] {
        for (name, mut h) in layer_rows(redis, v13, stateless) {
            let t = Instant::now();
            for _ in 0..n {
                assert!(h.handshake());
            }
            let rate = n as f64 / t.elapsed().as_secs_f64();
            println!("| {}/{name} | {rate:.0} |", group.trim_start_matches("resumption/"));
        }
    }
}

/// Heap per session cached in a MokaStore: live bytes after `n` inserts of real encoded DTLS
/// 1.2 sessions, per session, and beyond the key and encoded session (which holds the secret).
fn heap_per_session() {
    let n = env_n("COAPS_RESUME_MEM_N", 100_000);
    let rt = runtime();
    let (now, wall) = (Instant::now(), SystemTime::now());
    // A session the client holds has the server's fields: its encoding is the same size.
    let mut h = LayerHarness::new(runtime(), moka(), false, None);
    let session = h.session.take().expect("a session");
    let encoded = session.encode(now, wall);
    let key_len = session.store_key().len();
    let store =
        MokaStore::new(MokaConfig { max_entries: n as u64 * 2, max_bytes: u64::MAX >> 1, ..MokaConfig::default() });
    let before = alloc::live_bytes();
    rt.block_on(async {
        for i in 0..n as u64 {
            let mut key = session.store_key().to_vec();
            key[..8].copy_from_slice(&i.to_be_bytes());
            store.put(&key, Zeroizing::new(encoded.to_vec()), Duration::from_secs(3600)).await.unwrap();
        }
        store.run_pending_tasks().await;
    });
    let after = alloc::live_bytes();
    assert_eq!(store.entry_count(), n as u64, "every session kept");
    let per = (after - before) as f64 / n as f64;
    let payload = (key_len + encoded.len()) as f64;
    println!(
        "\nmoka heap per cached session ({n} DTLS 1.2 sessions): {per:.0} B, of which key {key_len} B + encoded \
         session {} B (secret included); {:.0} B beyond them (target <= 256 B); the weigher counts {} B per entry \
         of overhead",
        encoded.len(),
        per - payload,
        coaps_tower::resumption::ENTRY_OVERHEAD,
    );
    drop(store);
}

fn table(has_redis: bool) {
    let root = env!("CARGO_MANIFEST_DIR");
    println!("\n| group | row | resumptions/s (CPU) | CPU per resumption | openssl/row |");
    println!("|---|---|---:|---:|---:|");
    // Each 1.2 group is compared with OpenSSL's resumption of the same kind; the 1.3 groups
    // with OpenSSL's 1.2 session-ID resumption (the crate's OpenSSL harness is DTLS 1.2 only).
    let groups = [
        (GROUP12, GROUP12, true),
        (GROUP12_STATELESS, GROUP12_STATELESS, true),
        (GROUP13, GROUP12, false),
        (GROUP13_STATELESS, GROUP12, false),
    ];
    for (group, baseline, has_openssl) in groups {
        let openssl = mean_ns(root, baseline, "openssl");
        let mut rows = if group == GROUP12 { vec!["coaps-engine", "layer-moka"] } else { vec!["layer-moka"] };
        if has_redis {
            rows.push("layer-redis");
        }
        if has_openssl {
            rows.push("openssl");
        }
        for row in rows {
            let Some(ns) = mean_ns(root, group, row) else { continue };
            let ratio = openssl.map_or("-".to_owned(), |o| format!("{:.2}", o / ns));
            println!(
                "| {} | {row} | {} | {} | {ratio} |",
                group.trim_start_matches("resumption/"),
                per_second(ns),
                duration(ns)
            );
        }
    }
}

/// The stores of the anti-replay group, each with the runtime its futures run on.
fn anti_replay_stores(
    redis: Option<&RedisServer>,
) -> Vec<(&'static str, tokio::runtime::Runtime, Arc<dyn AsyncSessionStore>)> {
    let mut stores = vec![("moka", runtime(), moka())];
    if let Some(r) = redis {
        let rt = runtime();
        let store = redis_store(&rt, r);
        stores.push(("redis", rt, store));
    }
    stores
}

/// A 32-byte key, unique per `n` (a ticket's store key or a sealed ticket's ID).
fn anti_replay_key(n: u64) -> Vec<u8> {
    let mut k = vec![0xa5; 32];
    k[..8].copy_from_slice(&n.to_be_bytes());
    k
}

/// A stored session's size (an encoded DTLS 1.3 session is about 120 bytes).
const SESSION_BYTES: usize = 120;
/// As `coaps serve` keeps them: the 0-RTT record for twice the default 10 s window.
const RECORD_TTL: Duration = Duration::from_secs(20);

fn bench_anti_replay<M: Measurement>(c: &mut Criterion<M>, redis: Option<&RedisServer>) {
    let mut g = c.benchmark_group(GROUP_ANTI_REPLAY);
    g.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    for (name, rt, store) in anti_replay_stores(redis) {
        g.bench_function(format!("{name}-take"), |b| {
            b.iter_batched(
                || {
                    n += 1;
                    let key = anti_replay_key(n);
                    rt.block_on(store.put(&key, Zeroizing::new(vec![7; SESSION_BYTES]), RECORD_TTL)).unwrap();
                    key
                },
                |key| assert!(rt.block_on(store.take(&key)).unwrap().is_some(), "taken once"),
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("{name}-record"), |b| {
            b.iter(|| {
                n += 1;
                let key = anti_replay_key(n);
                let first = Zeroizing::new(n.to_be_bytes().to_vec());
                let got = rt.block_on(store.put_if_absent(KeySpace::ZeroRtt, &key, first.clone(), RECORD_TTL)).unwrap();
                assert!(*got == *first, "recorded first");
            })
        });
    }
    g.finish();
}

/// Wall-clock time per anti-replay operation (Redis's round trip and its own CPU included).
fn anti_replay_wall(redis: Option<&RedisServer>) {
    let count = env_n("COAPS_RESUME_WALL_N", 2000) as u64;
    println!("\n| anti-replay operation | wall time per 0-RTT handshake |");
    println!("|---|---:|");
    let mut n = 1u64 << 40;
    for (name, rt, store) in anti_replay_stores(redis) {
        let keys: Vec<Vec<u8>> = (0..count).map(|i| anti_replay_key(n + i)).collect();
        for k in &keys {
            rt.block_on(store.put(k, Zeroizing::new(vec![7; SESSION_BYTES]), RECORD_TTL)).unwrap();
        }
        let t = Instant::now();
        for k in &keys {
            assert!(rt.block_on(store.take(k)).unwrap().is_some());
        }
        println!("| {name}-take | {} |", duration(t.elapsed().as_nanos() as f64 / count as f64));
        n += count;
        let t = Instant::now();
        for i in 0..count {
            let v = Zeroizing::new(i.to_be_bytes().to_vec());
            rt.block_on(store.put_if_absent(KeySpace::ZeroRtt, &anti_replay_key(n + i), v, RECORD_TTL)).unwrap();
        }
        println!("| {name}-record | {} |", duration(t.elapsed().as_nanos() as f64 / count as f64));
        n += count;
    }
}

/// The anti-replay rows beside the CPU of a whole DTLS 1.3 ticket resumption through the
/// layer (on the same store): the share of a 0-RTT handshake the anti-replay check adds.
fn anti_replay_table(has_redis: bool) {
    let root = env!("CARGO_MANIFEST_DIR");
    println!("\n| anti-replay row | CPU per 0-RTT handshake | share of a 1.3 resumption through the layer |");
    println!("|---|---:|---:|");
    let stores: &[&str] = if has_redis { &["moka", "redis"] } else { &["moka"] };
    for store in stores {
        for (op, group) in [("take", GROUP13), ("record", GROUP13_STATELESS)] {
            let row = format!("{store}-{op}");
            let Some(ns) = mean_ns(root, GROUP_ANTI_REPLAY, &row) else { continue };
            let whole = mean_ns(root, group, &format!("layer-{store}"));
            let share = whole.map_or("-".to_owned(), |w| format!("{:.1} %", 100.0 * ns / w));
            println!("| {row} | {} | {share} |", duration(ns));
        }
    }
}

fn run<M: Measurement>(c: Criterion<M>, redis: Option<&RedisServer>) {
    let mut c = c
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench(&mut c, redis);
    bench_anti_replay(&mut c, redis);
    c.final_summary();
}

fn main() {
    coaps_bench_support::report::mark_start();
    let redis = redis();
    if wall_time_requested() {
        run(Criterion::default(), redis.as_ref());
    } else {
        run(Criterion::default().with_measurement(ThreadCpuTime), redis.as_ref());
    }
    table(redis.is_some());
    anti_replay_table(redis.is_some());
    wall_rates(redis.as_ref());
    anti_replay_wall(redis.as_ref());
    heap_per_session();
}
