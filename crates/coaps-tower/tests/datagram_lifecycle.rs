//! The transport's behaviour around the stack: graceful shutdown sends close_notify, a slow
//! application request does not block the socket loop, and ordinary tower middleware
//! (`RateLimit`) wrapped around the datagram service acts on the socket loop.

use coaps_test_support::datagram as datagram_support;

use coaps_dtls::CloseReason;
use coaps_tower::cookie::{example_client_hello_with, hello_verify_request_cookie};
use datagram_support::*;
use std::time::{Duration, Instant};
use tower::limit::RateLimitLayer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_sends_close_notify_to_every_peer() {
    bounded(30, "shutdown", async {
        let mut server = TestServer::start(Opts::default(), tower::layer::util::Identity::new()).await;
        let mut clients = Vec::new();
        for i in 0..3 {
            let mut c = Client::connect(server.addr, 100 + i, Duration::from_secs(10)).await.unwrap();
            c.request(format!("hi {i}").as_bytes(), 3, Duration::from_secs(1)).await.unwrap();
            clients.push(c);
        }
        assert_eq!(server.associations.count(), 3);
        server.shutdown().await.expect("serve returns Ok on shutdown");
        assert_eq!(server.associations.count(), 0);
        for c in &mut clients {
            assert_eq!(c.wait_closed(Duration::from_secs(5)).await, Some(CloseReason::PeerClosed));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_does_not_block_other_peers() {
    bounded(30, "slow request", async {
        let mut server = TestServer::start(Opts::default(), tower::layer::util::Identity::new()).await;
        let mut slow = Client::connect(server.addr, 1, Duration::from_secs(10)).await.unwrap();
        let mut fast = Client::connect(server.addr, 2, Duration::from_secs(10)).await.unwrap();
        let start = Instant::now();
        let slow_task = tokio::spawn(async move { slow.request(b"slow please", 1, SLOW * 3).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut worst = Duration::ZERO;
        for m in 0..10 {
            worst = worst.max(fast.request(format!("fast {m}").as_bytes(), 3, Duration::from_secs(1)).await.unwrap());
        }
        let fast_done = start.elapsed();
        let slow_rtt = slow_task.await.unwrap().unwrap();
        eprintln!("fast: 10 echoes done after {fast_done:?} (worst {worst:?}); slow echo after {slow_rtt:?}");
        assert!(fast_done < SLOW, "the fast client waited for the slow request: {fast_done:?}");
        assert!(slow_rtt >= SLOW, "{slow_rtt:?}");
        server.shutdown().await.unwrap();
    })
    .await;
}

/// Sends `n` first ClientHellos at once from one socket and returns the arrival times of the
/// HelloVerifyRequests (relative to the send), waiting at most `wait`.
async fn challenge_burst(server: std::net::SocketAddr, n: usize, wait: Duration) -> Vec<Duration> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let start = Instant::now();
    for i in 0..n {
        let mut random = [0u8; 32];
        random[0] = i as u8;
        sock.send_to(&example_client_hello_with(&random, &[]), server).await.unwrap();
    }
    let mut arrivals = Vec::new();
    let mut buf = [0u8; 512];
    while arrivals.len() < n {
        match tokio::time::timeout_at((start + wait).into(), sock.recv_from(&mut buf)).await {
            Ok(Ok((len, _))) => {
                assert!(hello_verify_request_cookie(&buf[..len]).is_some());
                arrivals.push(start.elapsed());
            }
            _ => break,
        }
    }
    arrivals
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_around_the_datagram_service_paces_the_socket_loop() {
    bounded(30, "rate limit", async {
        const BURST: usize = 20;
        const PER_WINDOW: u64 = 5;
        const WINDOW: Duration = Duration::from_millis(400);

        // Control: without a limit the whole burst is answered at once.
        let mut plain = TestServer::start(Opts::default(), tower::layer::util::Identity::new()).await;
        let control = challenge_burst(plain.addr, BURST, Duration::from_secs(5)).await;
        assert_eq!(control.len(), BURST);
        assert!(control[BURST - 1] < WINDOW, "control burst took {:?}", control[BURST - 1]);
        plain.shutdown().await.unwrap();

        // RateLimit(5 per 400 ms) around CookieLayer + HandshakeLayer: the loop reads the
        // next datagram only when the limit allows, so the burst is answered in windows.
        let mut limited = TestServer::start(Opts::default(), RateLimitLayer::new(PER_WINDOW, WINDOW)).await;
        let arrivals = challenge_burst(limited.addr, BURST, Duration::from_secs(10)).await;
        eprintln!("control: last answer after {:?}; rate limited: {arrivals:?}", control[BURST - 1]);
        assert_eq!(arrivals.len(), BURST, "delayed, not dropped: the socket buffer held the burst");
        let windows = BURST as u64 / PER_WINDOW;
        assert!(
            arrivals[BURST - 1] >= WINDOW * (windows as u32 - 1) - Duration::from_millis(50),
            "the burst went through too fast: {arrivals:?}"
        );
        // No window ever answers more than the limit.
        for (i, t) in arrivals.iter().enumerate() {
            let in_window =
                arrivals.iter().filter(|u| **u >= *t && **u < *t + WINDOW - Duration::from_millis(20)).count();
            assert!(in_window as u64 <= PER_WINDOW, "{in_window} answers within one window from #{i}: {arrivals:?}");
        }
        limited.shutdown().await.unwrap();
    })
    .await;
}
