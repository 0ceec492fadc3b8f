//! 200 concurrent DTLS clients through one `serve` + `CookieLayer` + `HandshakeLayer`: every
//! one completes a handshake (with the cookie exchange) and gets 20 echoes; then the idle
//! timeout empties the association table.

use coaps_test_support::datagram as datagram_support;

use datagram_support::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const CLIENTS: usize = 200;
const MESSAGES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_twenty_echoes_each_then_idle_expiry() {
    bounded(120, "200 clients", async {
        // The 200 clients stand for 200 hosts but share 127.0.0.1: the per-address half-open
        // quota (issue 15) is raised as 200 hosts would not meet it. With the default of 32,
        // clients beyond it wait for retransmissions and, on a loaded machine, time out.
        let opts = Opts { idle_timeout: Duration::from_secs(2), max_half_open_per_host: CLIENTS, ..Opts::default() };
        let mut server = TestServer::start(opts, tower::layer::util::Identity::new()).await;
        let addr = server.addr;
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..CLIENTS {
            tasks.spawn(async move {
                let mut c = Client::connect(addr, 1000 + i as u64, Duration::from_secs(30))
                    .await
                    .map_err(|e| format!("client {i}: {e}"))?;
                let mut worst = Duration::ZERO;
                for m in 0..MESSAGES {
                    let msg = format!("client {i} message {m}");
                    let rtt = c
                        .request(msg.as_bytes(), 10, Duration::from_secs(1))
                        .await
                        .map_err(|e| format!("client {i}: {e}"))?;
                    worst = worst.max(rtt);
                }
                // The client vanishes without close_notify: only the idle timeout cleans up.
                Ok::<Duration, String>(worst)
            });
        }
        let mut worst = Duration::ZERO;
        let mut failures = Vec::new();
        while let Some(r) = tasks.join_next().await {
            match r.unwrap() {
                Ok(w) => worst = worst.max(w),
                Err(e) => failures.push(e),
            }
        }
        let elapsed = started.elapsed();
        assert!(failures.is_empty(), "{} clients failed: {:?}", failures.len(), &failures[..failures.len().min(5)]);
        eprintln!("{CLIENTS} clients x {MESSAGES} echoes in {elapsed:?}, worst echo round trip {worst:?}");

        // At least once each (more only if an application-level retry fired).
        assert!(server.app_calls() >= CLIENTS * MESSAGES, "app calls {}", server.app_calls());
        let stats = server.associations.stats();
        assert_eq!(stats.endpoint.connections_created, CLIENTS as u64, "{stats:?}");
        assert!(server.cookies.stats().hello_verify_requests >= CLIENTS as u64);
        assert_eq!(server.probe.client_hellos_unmarked.load(Ordering::SeqCst), 0);
        let count = server.associations.count();
        assert!(count > 0 && count <= CLIENTS, "count {count}");

        // Idle timeout 2 s, swept every 0.5 s.
        let t = Instant::now();
        assert!(
            eventually(Duration::from_secs(6), || server.associations.count() == 0).await,
            "associations left: {}",
            server.associations.count()
        );
        eprintln!("association table empty {:?} after the last echo", t.elapsed());
        assert_eq!(server.associations.stats().expired_idle, CLIENTS as u64);
        server.shutdown().await.unwrap();
    })
    .await;
}
