//! A spoofed-ClientHello flood against `serve` + `CookieLayer` + `HandshakeLayer`: established
//! clients keep getting answers, and the flood creates no per-peer state.
//!
//! Two floods run at once: real UDP datagrams (fresh randoms, some with forged cookies) from
//! many local sockets through the socket loop, and datagrams from 20 000 fake (spoofed) peer
//! addresses handed straight to another instance of the same stack.

use coaps_test_support::datagram as datagram_support;

use coaps_tower::cookie::{example_client_hello_with, hello_verify_request_cookie};
use coaps_tower::{Datagram, Transmits};
use datagram_support::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tower::{Service, ServiceExt};

const LEGIT: usize = 8;
const FLOOD_SOCKETS: usize = 32;
const SPOOFED_PEERS: u32 = 20_000;
const FLOOD_FOR: Duration = Duration::from_secs(2);

/// A different 32-byte random each time (xorshift; the content does not matter, only that
/// every ClientHello is new).
fn random(state: &mut u64) -> [u8; 32] {
    let mut r = [0u8; 32];
    for chunk in r.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        chunk.copy_from_slice(&state.to_le_bytes());
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_client_hello_flood_creates_no_state_and_does_not_starve_peers() {
    bounded(120, "flood", async {
        let server = TestServer::start(Opts::default(), tower::layer::util::Identity::new()).await;
        let addr = server.addr;

        let mut clients = Vec::new();
        for i in 0..LEGIT {
            clients.push(Client::connect(addr, 7 + i as u64, Duration::from_secs(10)).await.unwrap());
        }
        assert_eq!(server.associations.count(), LEGIT);
        let hvr_before = server.cookies.stats().hello_verify_requests;

        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let max_count_seen = Arc::new(AtomicUsize::new(0));

        // Flood 1: real datagrams from many sockets, as fast as the loop can send them.
        let mut flood = tokio::task::JoinSet::new();
        for s in 0..FLOOD_SOCKETS {
            let (stop, sent) = (stop.clone(), sent.clone());
            flood.spawn(async move {
                let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ (s as u64 + 1);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Every fourth one carries a forged cookie of the right length.
                    let r = random(&mut state);
                    let cookie = if n.is_multiple_of(4) { r[..21].to_vec() } else { Vec::new() };
                    let _ = sock.send_to(&example_client_hello_with(&r, &cookie), addr).await;
                    sent.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                    // ~4 000 datagrams/s in all: well below what the server handles, far above
                    // what the legitimate clients send.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            });
        }
        // Flood 2: spoofed source addresses, straight into another instance of the stack.
        let mut direct = server.stack();
        let spoof = tokio::spawn(async move {
            let t0 = Instant::now();
            let mut state = 42u64;
            let mut answered = 0u32;
            for i in 0..SPOOFED_PEERS {
                let peer = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 5000 + (i % 1000) as u16));
                let d = Datagram::new(peer, example_client_hello_with(&random(&mut state), &[]));
                let out: Transmits = direct.ready().await.unwrap().call(d).await.unwrap();
                assert_eq!(out.len(), 1, "one HelloVerifyRequest per spoofed ClientHello");
                assert_eq!(out[0].destination, peer);
                assert!(hello_verify_request_cookie(&out[0].payload).is_some());
                answered += 1;
                if i.is_multiple_of(256) {
                    tokio::task::yield_now().await;
                }
            }
            eprintln!("spoofed flood: {answered} in {:?}", t0.elapsed());
            answered
        });
        // Watch the association table while the floods run.
        let watcher = {
            let (stop, max_seen, assoc) = (stop.clone(), max_count_seen.clone(), server.associations.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    max_seen.fetch_max(assoc.count(), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };

        // Meanwhile, the established clients keep talking, for the whole flood.
        let flood_start = Instant::now();
        let mut worst = Duration::ZERO;
        let mut exchanged = 0;
        let mut legit_tasks = tokio::task::JoinSet::new();
        for (i, mut c) in clients.into_iter().enumerate() {
            legit_tasks.spawn(async move {
                let mut worst = Duration::ZERO;
                let mut m = 0;
                while flood_start.elapsed() < FLOOD_FOR {
                    let msg = format!("legit {i} message {m}");
                    worst = worst.max(c.request(msg.as_bytes(), 5, Duration::from_secs(1)).await?);
                    m += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok::<(Duration, usize), String>((worst, m))
            });
        }
        while let Some(r) = legit_tasks.join_next().await {
            let (w, m) = r.unwrap().expect("an established client was starved");
            worst = worst.max(w);
            assert!(m >= 20, "a legitimate client exchanged only {m} messages in {FLOOD_FOR:?}");
            exchanged += m;
        }
        let answered = bounded(60, "spoofed flood", spoof).await.unwrap();
        stop.store(true, Ordering::Relaxed);
        while flood.join_next().await.is_some() {}
        watcher.await.unwrap();

        let udp_sent = sent.load(Ordering::Relaxed);
        let cookie = server.cookies.stats();
        let stats = server.associations.stats();
        eprintln!(
            "UDP flood: {udp_sent} ClientHellos; spoofed: {answered}; HVRs {} (rejected cookies {}); \
             {exchanged} legit echoes, worst round trip {worst:?}, over {:?}",
            cookie.hello_verify_requests - hvr_before,
            cookie.cookies_rejected,
            flood_start.elapsed()
        );
        assert_eq!(answered, SPOOFED_PEERS);
        assert!(udp_sent > 1000, "the UDP flood was too small to mean anything: {udp_sent}");
        // Every flood datagram the socket loop read was answered by the cookie layer alone.
        assert!(cookie.hello_verify_requests - hvr_before >= u64::from(SPOOFED_PEERS) + 1000, "{cookie:?}");
        assert!(cookie.cookies_rejected > 0, "{cookie:?}");
        assert_eq!(
            server.probe.client_hellos_unmarked.load(Ordering::SeqCst),
            0,
            "an unproven ClientHello got past the cookie layer"
        );
        assert_eq!(server.probe.client_hellos_marked.load(Ordering::SeqCst), LEGIT);
        // No state for the flood: the table never grew, no association was created.
        assert_eq!(max_count_seen.load(Ordering::Relaxed), LEGIT);
        assert_eq!(server.associations.count(), LEGIT);
        assert_eq!(stats.endpoint.connections_created, LEGIT as u64, "{stats:?}");
        assert_eq!(stats.unverified_client_hellos, 0);
        assert_eq!(stats.endpoint.dropped_limit, 0);
        assert!(server.app_calls() >= exchanged);
    })
    .await;
}
