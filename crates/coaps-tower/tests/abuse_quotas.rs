//! Issue 15, over real UDP on loopback against `CookieLayer` + `HandshakeLayer` + echo: one host
//! (127.0.0.1, many ports) abuses the association table while honest clients on other loopback
//! addresses (127.0.0.2 and up: Linux routes all of 127/8) connect, and every honest client is
//! served. Latencies (handshake + one echo, p50/p99) are printed (`--nocapture`), not asserted.
//!
//! * half-open flood: 2 000 ports each answer the cookie challenge and walk away, DTLS 1.2 and
//!   1.3, with a wrong PSK and with no credential (against the certificate);
//! * association hoarding: one client opens 5 000 associations, idles, then sends keepalives.

use coaps_dtls::cert;
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::crypto::rustcrypto::EcdsaP256SigningKey;
use coaps_dtls::{CertifiedKey, ClientConfig, DtlsVersion, Endpoint, PeerVerifier, Psk, ServerConfig, StaticPsks};
use coaps_test_support::datagram::{self as support, Client, Opts, TestServer, bounded};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../coaps-dtls/tests/data");
const FLOOD_PORTS: usize = 2_000;
/// Honest source addresses: 127.0.0.2 ..= 127.0.0.9.
const HONEST_ADDRESSES: u8 = 8;

fn server_cert() -> CertifiedKey {
    let read = |name: &str| std::fs::read(format!("{DATA}/{name}")).expect("test data");
    let sk = cert::load_private_key_pem(&read("server.key")).unwrap();
    let bytes: [u8; 32] = sk.to_bytes().into();
    let key = Arc::new(EcdsaP256SigningKey::from_bytes(&bytes).unwrap());
    CertifiedKey { chain: cert::load_certs_pem(&read("server.crt")).unwrap(), key }
}

/// `coaps serve`'s shape: PSK and certificate, both versions, 1 000 associations of which at
/// most 500 half-open, default quotas.
fn server_config() -> ServerConfig {
    ServerConfig {
        psks: Some(Arc::new(StaticPsks(vec![support::psk()]))),
        cert: Some(server_cert()),
        max_connections: 1_000,
        max_handshakes: 500,
        ..ServerConfig::default()
    }
}

fn honest_config(version: DtlsVersion) -> Arc<ClientConfig> {
    match version {
        DtlsVersion::Dtls12 => support::client_config(),
        _ => Arc::new(ClientConfig { version, psk: Some(support::psk()), ..ClientConfig::default() }),
    }
}

#[derive(Debug, Clone, Copy)]
enum Variant {
    WrongPsk,
    NoCredential,
}

fn flood_config(version: DtlsVersion, variant: Variant) -> Arc<ClientConfig> {
    let mut c = ClientConfig { version, ..ClientConfig::default() };
    match variant {
        Variant::WrongPsk => c.psk = Some(Psk::new("mallory", b"not the key at all".to_vec()).unwrap()),
        Variant::NoCredential => {
            // Offers the certificate suites (it needs a verifier for that) and holds nothing of
            // its own; it never gets as far as checking the server.
            let roots = cert::load_certs_pem(&std::fs::read(format!("{DATA}/ca.crt")).unwrap()).unwrap();
            let v = cert::WebPkiVerifier::new(&roots).unwrap();
            c.verifier = Some(PeerVerifier::WebPki(Arc::new(v)));
        }
    }
    Arc::new(c)
}

/// One abandoned handshake from a fresh port of 127.0.0.1: the first ClientHello, the cookie
/// answer, the second ClientHello (which proves the address), then silence. True when the
/// cookie round trip completed and the second ClientHello went out.
async fn abandon(server: SocketAddr, config: Arc<ClientConfig>, seed: u64) -> bool {
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0").await else { return false };
    let mut ep = Endpoint::client(SeededRng::from_seed_u64(seed));
    ep.connect(Instant::now(), server, config, "localhost", None).unwrap();
    let Some(ch1) = ep.poll_transmit() else { return false };
    let mut buf = [0u8; 4096];
    // Loopback drops datagrams when 200 sockets send at once: resend the first ClientHello
    // (as the attacker would) up to three times.
    let mut answer = None;
    for _ in 0..3 {
        let _ = sock.send_to(&ch1.payload, server).await;
        if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_secs(1), sock.recv_from(&mut buf)).await {
            answer = Some(n);
            break;
        }
    }
    let Some(n) = answer else { return false };
    ep.handle_datagram(Instant::now(), server, &buf[..n]);
    let mut sent = false;
    while let Some(t) = ep.poll_transmit() {
        sent |= sock.send_to(&t.payload, server).await.is_ok();
    }
    sent
}

/// A fresh honest client from 127.0.0.`ip`: handshake plus one echo; the time both took.
/// With `close` it then sends close_notify (else it leaves its association to idle).
async fn honest(server: SocketAddr, ip: u8, version: DtlsVersion, seed: u64, close: bool) -> Result<Duration, String> {
    let t0 = Instant::now();
    let bind: SocketAddr = format!("127.0.0.{ip}:0").parse().unwrap();
    let mut c = Client::connect_from(bind, server, seed, honest_config(version), Duration::from_secs(10)).await?;
    c.request(format!("hello from 127.0.0.{ip}").as_bytes(), 5, Duration::from_secs(1)).await?;
    let took = t0.elapsed();
    if close {
        c.endpoint.close(server);
        while let Some(t) = c.endpoint.poll_transmit() {
            let _ = c.socket.send_to(&t.payload, t.destination).await;
        }
    }
    Ok(took)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn report(what: &str, mut lat: Vec<Duration>) -> String {
    lat.sort();
    format!(
        "{what}: {} honest clients served, handshake + echo p50 {:?} p99 {:?} max {:?}",
        lat.len(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat.last().unwrap()
    )
}

/// Honest clients, four at a time (each pausing 20 ms between clients), alternating DTLS 1.2
/// and 1.3 and the addresses 127.0.0.2..=9, until `stop` is set and at least `min` were
/// served. Any failure fails.
async fn honest_until(server: SocketAddr, stop: Arc<AtomicBool>, min: usize, seed0: u64, close: bool) -> Vec<Duration> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (stop, next) = (stop.clone(), next.clone());
        set.spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) && i >= min {
                    return lat;
                }
                let ip = 2 + (i % usize::from(HONEST_ADDRESSES)) as u8;
                let version = if i % 2 == 0 { DtlsVersion::Dtls12 } else { DtlsVersion::Dtls13 };
                match honest(server, ip, version, seed0 + i as u64, close).await {
                    Ok(d) => lat.push(d),
                    Err(e) => panic!("honest client {i} from 127.0.0.{ip} ({version:?}) not served: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.unwrap());
    }
    all
}

async fn half_open_flood(version: DtlsVersion, variant: Variant) {
    let what = format!("half-open flood, {version:?}, {variant:?}");
    bounded(55, &what.clone(), async move {
        let server =
            TestServer::start_with(Arc::new(server_config()), Opts::default(), tower::layer::util::Identity::new())
                .await;
        let addr = server.addr;
        let stop = Arc::new(AtomicBool::new(false));
        let honest_task = tokio::spawn(honest_until(addr, stop.clone(), 40, 1_000, true));

        // The flood: 2 000 ports, 200 at a time, as fast as the loop answers.
        let t0 = Instant::now();
        let config = flood_config(version, variant);
        let mut proved = 0;
        for batch in 0..FLOOD_PORTS / 200 {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..200 {
                let seed = (batch * 200 + i) as u64;
                set.spawn(abandon(addr, config.clone(), 0xf100d + seed));
            }
            while let Some(r) = set.join_next().await {
                proved += usize::from(r.unwrap());
            }
        }
        let flood_time = t0.elapsed();
        stop.store(true, Ordering::Relaxed);
        let lat = honest_task.await.unwrap();
        let s = server.associations.stats().endpoint;
        eprintln!("{}", report(&what, lat));
        eprintln!(
            "{what}: {proved}/{FLOOD_PORTS} ports proved their address in {flood_time:?}; refused per address {}, \
             per prefix {}, evicted half-open {}, expired {}, created {}",
            s.refused_half_open_per_address,
            s.refused_half_open_per_prefix,
            s.evicted_half_open,
            s.expired_half_open,
            s.connections_created
        );
        assert!(proved >= FLOOD_PORTS * 9 / 10, "{what}: the flood was not real: {proved} cookie round trips");
        if matches!((version, variant), (DtlsVersion::Dtls13, Variant::WrongPsk)) {
            // The binder of the second ClientHello does not verify (RFC 8446 §4.2.11): the
            // handshake fails at once and nothing stays half-open.
            assert_eq!(s.refused_half_open_per_address, 0, "{what}: {s:?}");
            assert_eq!(server.associations.half_open_count(), 0, "{what}: half-open state left behind");
        } else {
            // Most of the host's proven ClientHellos hit its per-address share (32); the rest
            // were admitted, or lost on a busy loopback.
            assert!(
                s.refused_half_open_per_address as usize >= proved / 2,
                "{what}: the per-address limit did not hold the flood: {s:?}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_flood_dtls12_wrong_psk() {
    half_open_flood(DtlsVersion::Dtls12, Variant::WrongPsk).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_flood_dtls12_no_credential() {
    half_open_flood(DtlsVersion::Dtls12, Variant::NoCredential).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_flood_dtls13_wrong_psk() {
    half_open_flood(DtlsVersion::Dtls13, Variant::WrongPsk).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_flood_dtls13_no_credential() {
    half_open_flood(DtlsVersion::Dtls13, Variant::NoCredential).await;
}

/// One authenticated client (the shared PSK) opens 5 000 associations from 127.0.0.1, idles,
/// then sends keepalives on every one it still has; a table of 300 with 1 s as the idle time
/// that allows eviction. Honest clients are served in both phases: the hoarder holds at most
/// its per-address share (256), and a full table sheds the least-recently-active idle
/// association.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_hoarding_associations_does_not_lock_others_out() {
    bounded(58, "hoarding", async {
        let mut config = server_config();
        config.max_connections = 300;
        config.max_handshakes = 150;
        config.quotas.min_idle_to_evict = Duration::from_secs(1);
        let server =
            TestServer::start_with(Arc::new(config), Opts::default(), tower::layer::util::Identity::new()).await;
        let addr = server.addr;

        // 5 000 attempts, 1 000 at a time; the refused ones give up after 3 s.
        let t0 = Instant::now();
        let mut hoard = Vec::new();
        for batch in 0..5 {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..1_000u64 {
                let seed = 0x4_0a4d + batch * 1_000 + i;
                set.spawn(Client::connect_with(addr, seed, support::client_config(), Duration::from_secs(3)));
            }
            while let Some(r) = set.join_next().await {
                if let Ok(c) = r.unwrap() {
                    hoard.push(c);
                }
            }
        }
        let s = server.associations.stats().endpoint;
        eprintln!(
            "hoarder: {} of 5000 associations in {:?}; refused per address {}, half-open per address {}",
            hoard.len(),
            t0.elapsed(),
            s.refused_associations_per_address,
            s.refused_half_open_per_address
        );
        // Never more than its per-address share; on a loaded machine some of its 5 000
        // attempts give up (3 s) before a slot frees, so it may end below the cap, but the cap
        // must have been what stopped it.
        let cap = coaps_dtls::QuotaConfig::default().max_associations_per_address;
        assert!(hoard.len() <= cap, "{} associations over the cap {cap}", hoard.len());
        assert!(hoard.len() >= cap / 2, "only {} associations: the cap was not exercised", hoard.len());
        assert!(s.refused_associations_per_address > 0, "the per-address cap never refused the hoarder");

        // Idle phase: 80 honest clients (kept connected) fill the table past 300.
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let stop = Arc::new(AtomicBool::new(true));
        let idle_phase = honest_until(addr, stop.clone(), 80, 7_000, false).await;
        let after_idle = server.associations.stats().endpoint;

        // Keepalive phase: the hoarder talks on every association it still has (those evicted
        // get no answer) and keeps talking every 300 ms; once the honest clients of the idle
        // phase have been idle for the eviction time, 80 more honest clients come.
        let t1 = Instant::now();
        let talking = Arc::new(AtomicBool::new(true));
        let answered = Arc::new(AtomicUsize::new(0));
        let mut set = tokio::task::JoinSet::new();
        for (i, mut c) in hoard.into_iter().enumerate() {
            let (talking, answered) = (talking.clone(), answered.clone());
            set.spawn(async move {
                if c.request(format!("keepalive {i}").as_bytes(), 1, Duration::from_millis(500)).await.is_err() {
                    return false;
                }
                answered.fetch_add(1, Ordering::Relaxed);
                let mut n = 0;
                while talking.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    n += 1;
                    if c.request(format!("keepalive {i}.{n}").as_bytes(), 2, Duration::from_millis(500)).await.is_err()
                    {
                        return false;
                    }
                }
                true
            });
        }
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let alive = answered.load(Ordering::Relaxed);
        let keepalive_phase = honest_until(addr, stop.clone(), 80, 9_000, false).await;
        talking.store(false, Ordering::Relaxed);
        let mut kept = 0;
        while let Some(r) = set.join_next().await {
            kept += usize::from(r.unwrap());
        }
        let s = server.associations.stats().endpoint;
        eprintln!("{}", report("hoarder idle", idle_phase));
        eprintln!("{}", report("hoarder sending keepalives", keepalive_phase));
        eprintln!(
            "hoarder: {alive} associations answered keepalives, {kept} kept answering to the end ({:?}); \
             evicted idle {} (after the idle phase {}), refused table full {}, associations now {}",
            t1.elapsed(),
            s.evicted_idle,
            after_idle.evicted_idle,
            s.refused_table_full,
            server.associations.count()
        );
        assert!(after_idle.evicted_idle > 0, "the full table evicted nobody: {after_idle:?}");
        assert!(alive < 256, "idle hoarded associations were evicted first: {alive} still answer");
        assert_eq!(kept, alive, "an active association was evicted while idle ones remained");
        assert!(server.associations.count() <= 300);
    })
    .await;
}
