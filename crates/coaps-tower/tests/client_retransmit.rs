//! The client against an in-process CoAPS server (the `coaps-dtls` engine on a tokio socket,
//! answering through the `CoapLayer`), with a lossy UDP relay in between: confirmable
//! retransmission, timeouts, deduplication end to end, NON requests, close, handshake errors.

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use coaps_dtls::RetransmitConfig;
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{
    ClientConfig, CloseReason, CommonConfig, Endpoint, Event, PeerIdentity, Psk, ServerConfig, StaticPsks,
};
use coaps_tower::coap::CoapLayer;
use coaps_tower::{Client, ClientError, ClientOptions, CoapRequest, Secured, TransmissionParams};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tower::{Layer, Service, ServiceExt, service_fn};

/// DTLS content type of application data (RFC 5246 §6.2.1): the first byte of its record.
const APPLICATION_DATA: u8 = 23;

fn psk() -> Psk {
    Psk::new(b"relay-test".to_vec(), b"relay-test-key-16".to_vec()).unwrap()
}

/// What the in-process server saw.
#[derive(Default)]
struct ServerLog {
    app_calls: AtomicUsize,
    closed: Mutex<Vec<CloseReason>>,
}

/// Starts the server: every request gets 2.05 with payload "n=<call count> <path>".
async fn start_server() -> (SocketAddr, Arc<ServerLog>) {
    let log = Arc::new(ServerLog::default());
    let cfg = Arc::new(ServerConfig { psks: Some(Arc::new(StaticPsks(vec![psk()]))), ..ServerConfig::default() });
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let log2 = log.clone();
    let app = service_fn(move |req: CoapRequest| {
        let n = log2.app_calls.fetch_add(1, Ordering::SeqCst) + 1;
        let path: Vec<String> = req
            .message
            .get_option(CoapOption::UriPath)
            .map(|l| l.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect())
            .unwrap_or_default();
        let mut resp = req.response();
        resp.header.code = MessageClass::Response(ResponseType::Content);
        resp.payload = format!("n={n} /{}", path.join("/")).into_bytes();
        async move { Ok::<_, Infallible>(resp) }
    });
    let mut coap = CoapLayer::new().layer(app);
    let log3 = log.clone();
    tokio::spawn(async move {
        let mut ep = Endpoint::server(cfg, SeededRng::from_seed_u64(7), Instant::now());
        let mut ids: HashMap<SocketAddr, PeerIdentity> = HashMap::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let wait =
                ep.poll_timeout().map_or(Duration::from_secs(1), |t| t.saturating_duration_since(Instant::now()));
            if let Ok(Ok((n, from))) = tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
                ep.handle_datagram(Instant::now(), from, &buf[..n]);
            }
            ep.handle_timeout(Instant::now());
            while let Some((peer, ev)) = ep.poll_event() {
                match ev {
                    Event::Connected { identity, .. } => {
                        ids.insert(peer, identity);
                    }
                    Event::ApplicationData(d) => {
                        let msg = Secured {
                            peer,
                            identity: ids.get(&peer).cloned().unwrap_or_default(),
                            payload: d,
                            early_data: false,
                            handshake: Default::default(),
                            association: Default::default(),
                        };
                        if let Ok(Some(out)) = coap.ready().await.unwrap().call(msg).await {
                            let _ = ep.send(peer, &out);
                        }
                    }
                    Event::Closed(r) => log3.closed.lock().unwrap().push(r),
                    _ => {}
                }
            }
            while let Some(t) = ep.poll_transmit() {
                let _ = sock.send_to(&t.payload, t.destination).await;
            }
        }
    });
    (addr, log)
}

/// What the relay drops, and what it counted.
#[derive(Default)]
struct Relay {
    /// Client→server application-data datagrams still to drop (`usize::MAX`: all).
    drop_up: AtomicUsize,
    /// Server→client application-data datagrams still to drop.
    drop_down: AtomicUsize,
    up_app_data: AtomicUsize,
    up_dropped: AtomicUsize,
    down_dropped: AtomicUsize,
}

fn take_one(budget: &AtomicUsize) -> bool {
    budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| if n == 0 { None } else { Some(n - 1) }).is_ok()
}

/// A UDP relay in front of `server`: handshake records pass, application data is dropped per
/// the budgets (only after the handshake, since those are epoch-1 application records).
async fn start_relay(server: SocketAddr, relay: Arc<Relay>) -> SocketAddr {
    let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    back.connect(server).await.unwrap();
    let addr = front.local_addr().unwrap();
    tokio::spawn(async move {
        let mut client: Option<SocketAddr> = None;
        let (mut a, mut b) = (vec![0u8; 4096], vec![0u8; 4096]);
        loop {
            tokio::select! {
                Ok((n, from)) = front.recv_from(&mut a) => {
                    client = Some(from);
                    if a[0] == APPLICATION_DATA {
                        relay.up_app_data.fetch_add(1, Ordering::SeqCst);
                        if take_one(&relay.drop_up) {
                            relay.up_dropped.fetch_add(1, Ordering::SeqCst);
                            continue;
                        }
                    }
                    let _ = back.send(&a[..n]).await;
                }
                Ok(n) = back.recv(&mut b) => {
                    if b[0] == APPLICATION_DATA && take_one(&relay.drop_down) {
                        relay.down_dropped.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    if let Some(c) = client {
                        let _ = front.send_to(&b[..n], c).await;
                    }
                }
            }
        }
    });
    addr
}

fn client_config() -> Arc<ClientConfig> {
    Arc::new(ClientConfig { psk: Some(psk()), ..ClientConfig::default() })
}

/// Short timers so the tests run fast. (ACK_TIMEOUT below 1 s is for loopback tests only:
/// RFC 7252 §4.8.1.)
fn fast(ack_ms: u64, factor: f64) -> ClientOptions {
    ClientOptions {
        transmission: TransmissionParams {
            ack_timeout: Duration::from_millis(ack_ms),
            ack_random_factor: factor,
            response_timeout: Duration::from_secs(2),
            ..TransmissionParams::default()
        },
        rng_seed: Some(1),
        ..ClientOptions::default()
    }
}

fn get(path: &str) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Request(RequestType::Get);
    p.add_option(CoapOption::UriPath, path.as_bytes().to_vec());
    p
}

fn post(path: &str) -> Packet {
    let mut p = get(path);
    p.header.code = MessageClass::Request(RequestType::Post);
    p
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f).await.expect("test step took too long")
}

#[tokio::test]
async fn request_completes_when_first_transmissions_are_lost() {
    let (server, log) = start_server().await;
    let relay = Arc::new(Relay::default());
    let front = start_relay(server, relay.clone()).await;
    let client = bounded(Client::connect_with(front, client_config(), "localhost", fast(100, 1.5))).await.unwrap();
    relay.drop_up.store(2, Ordering::SeqCst);
    let started = Instant::now();
    let resp = bounded(client.send(post("lossy"))).await.expect("completes after retransmissions");
    assert_eq!(resp.header.code, MessageClass::Response(ResponseType::Content));
    assert_eq!(resp.header.get_type(), MessageType::Acknowledgement);
    assert_eq!(resp.payload, b"n=1 /lossy");
    assert_eq!(relay.up_dropped.load(Ordering::SeqCst), 2);
    // Original + 2 retransmissions (more only if a loaded machine delays the answer past the
    // third timeout).
    assert!(relay.up_app_data.load(Ordering::SeqCst) >= 3);
    // Two timeouts passed: the first in [100, 150] ms, the second doubled.
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    assert_eq!(log.app_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn lost_responses_are_replayed_by_the_server_dedup_not_reprocessed() {
    let (server, log) = start_server().await;
    let relay = Arc::new(Relay::default());
    let front = start_relay(server, relay.clone()).await;
    let client = bounded(Client::connect_with(front, client_config(), "localhost", fast(100, 1.0))).await.unwrap();
    relay.drop_down.store(2, Ordering::SeqCst);
    let resp = bounded(client.send(post("once"))).await.unwrap();
    assert_eq!(resp.payload, b"n=1 /once");
    assert_eq!(relay.down_dropped.load(Ordering::SeqCst), 2);
    assert!(relay.up_app_data.load(Ordering::SeqCst) >= 3, "the client retransmitted at least twice");
    assert_eq!(log.app_calls.load(Ordering::SeqCst), 1, "the POST reached the application once (RFC 7252 §4.5)");
}

#[tokio::test]
async fn request_fails_with_timeout_after_max_retransmit() {
    let (server, log) = start_server().await;
    let relay = Arc::new(Relay::default());
    let front = start_relay(server, relay.clone()).await;
    let client = bounded(Client::connect_with(front, client_config(), "localhost", fast(50, 1.0))).await.unwrap();
    relay.drop_up.store(usize::MAX, Ordering::SeqCst);
    let started = Instant::now();
    let err = bounded(client.send(get("void"))).await.expect_err("nothing gets through");
    assert!(matches!(err, ClientError::Timeout), "{err:?}");
    let elapsed = started.elapsed();
    // 1 + MAX_RETRANSMIT transmissions, waiting 50 × (1 + 2 + 4 + 8 + 16) ms in all.
    assert_eq!(relay.up_app_data.load(Ordering::SeqCst), 5);
    assert!(elapsed >= Duration::from_millis(1550), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(log.app_calls.load(Ordering::SeqCst), 0);
    // The association is still usable.
    relay.drop_up.store(0, Ordering::SeqCst);
    assert_eq!(bounded(client.send(get("after"))).await.unwrap().payload, b"n=1 /after");
}

#[tokio::test]
async fn max_retransmit_is_configurable() {
    let (server, _log) = start_server().await;
    let relay = Arc::new(Relay::default());
    let front = start_relay(server, relay.clone()).await;
    let mut opts = fast(30, 1.0);
    opts.transmission.max_retransmit = 1;
    let client = bounded(Client::connect_with(front, client_config(), "localhost", opts)).await.unwrap();
    relay.drop_up.store(usize::MAX, Ordering::SeqCst);
    let err = bounded(client.send(get("x"))).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout));
    assert_eq!(relay.up_app_data.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn non_request_gets_non_response_and_times_out_when_lost() {
    let (server, log) = start_server().await;
    let relay = Arc::new(Relay::default());
    let front = start_relay(server, relay.clone()).await;
    let mut opts = fast(50, 1.0);
    opts.transmission.response_timeout = Duration::from_millis(300);
    let client = bounded(Client::connect_with(front, client_config(), "localhost", opts)).await.unwrap();
    let mut non = get("non");
    non.header.set_type(MessageType::NonConfirmable);
    let resp = bounded(client.send(non.clone())).await.unwrap();
    assert_eq!(resp.header.get_type(), MessageType::NonConfirmable);
    assert_eq!(resp.payload, b"n=1 /non");
    relay.drop_up.store(1, Ordering::SeqCst);
    let err = bounded(client.send(non)).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout), "a NON is never retransmitted: {err:?}");
    assert_eq!(relay.up_app_data.load(Ordering::SeqCst), 2);
    assert_eq!(log.app_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn concurrent_requests_are_matched_by_token() {
    let (server, _log) = start_server().await;
    let mut opts = fast(200, 1.5);
    opts.transmission.nstart = 4;
    let client = bounded(Client::connect_with(server, client_config(), "localhost", opts)).await.unwrap();
    let futs: Vec<_> = (0..8).map(|i| client.send(get(&format!("r{i}")))).collect();
    let results = bounded(async {
        let mut v = Vec::new();
        for f in futs {
            v.push(f.await);
        }
        v
    })
    .await;
    for (i, r) in results.into_iter().enumerate() {
        let p = r.unwrap();
        let text = String::from_utf8(p.payload).unwrap();
        assert!(text.ends_with(&format!("/r{i}")), "response {i} is {text}");
    }
}

#[tokio::test]
async fn service_composes_with_tower_timeout_and_reports_connection_info() {
    let (server, _log) = start_server().await;
    let client = bounded(Client::connect(server, client_config(), "localhost")).await.unwrap();
    assert_eq!(client.info().identity, PeerIdentity::Psk(b"relay-test".to_vec()), "the PSK both sides proved");
    assert!(!client.info().resumed);
    let session = client.session().expect("the engine's server issues a session ID");
    let mut svc = tower::ServiceBuilder::new().timeout(Duration::from_secs(5)).service(client.clone());
    let resp = bounded(svc.ready().await.unwrap().call(get("svc"))).await.unwrap();
    assert_eq!(resp.header.code, MessageClass::Response(ResponseType::Content));

    // Resumption with the session from the first association.
    let opts = ClientOptions { resume: Some(session), ..ClientOptions::default() };
    let again = bounded(Client::connect_with(server, client_config(), "localhost", opts)).await.unwrap();
    assert!(again.info().resumed, "abbreviated handshake");
    assert!(bounded(again.send(get("resumed"))).await.is_ok());
}

#[tokio::test]
async fn close_sends_close_notify_and_fails_later_requests() {
    let (server, log) = start_server().await;
    let client = bounded(Client::connect(server, client_config(), "localhost")).await.unwrap();
    bounded(client.send(get("a"))).await.unwrap();
    bounded(client.close()).await;
    assert!(!client.is_open());
    let err = bounded(client.send(get("b"))).await.unwrap_err();
    assert!(matches!(err, ClientError::Closed(CloseReason::Local)), "{err:?}");
    let mut svc = client.clone();
    assert!(futures_poll_ready(&mut svc).is_err());
    bounded(async {
        while log.closed.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(log.closed.lock().unwrap()[0], CloseReason::PeerClosed, "the server got close_notify");
}

fn futures_poll_ready(svc: &mut Client) -> Result<(), ClientError> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match svc.poll_ready(&mut cx) {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => panic!("the client is always ready or failed"),
    }
}

#[tokio::test]
async fn dropping_every_handle_closes_the_association() {
    let (server, log) = start_server().await;
    let client = bounded(Client::connect(server, client_config(), "localhost")).await.unwrap();
    bounded(client.send(get("a"))).await.unwrap();
    drop(client);
    bounded(async {
        while log.closed.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(log.closed.lock().unwrap()[0], CloseReason::PeerClosed);
}

#[tokio::test]
async fn unknown_psk_identity_fails_the_handshake_with_the_reason() {
    let (server, _log) = start_server().await;
    // The server answers an unknown identity with a fatal alert (RFC 4279 §2). (A wrong key
    // with a known identity cannot be told from noise: the server drops the undecryptable
    // Finished silently, RFC 6347 §4.1.2.7, and the handshake times out.)
    let bad = Psk::new(b"stranger".to_vec(), b"relay-test-key-16".to_vec()).unwrap();
    let cfg = Arc::new(ClientConfig { psk: Some(bad), ..ClientConfig::default() });
    let err = bounded(Client::connect(server, cfg, "localhost")).await.unwrap_err();
    match &err {
        ClientError::Handshake(CloseReason::Error(e)) => assert!(e.to_string().contains("alert"), "{e}"),
        other => panic!("expected a handshake error, got {other:?}"),
    }
    assert!(err.to_string().starts_with("DTLS handshake failed"), "{err}");
}

#[tokio::test]
async fn nobody_listening_fails_the_handshake_with_timeout() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap(); // bound, never answers
    let common = CommonConfig {
        retransmit: RetransmitConfig {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
            max_retransmissions: 2,
            handshake_timeout: Duration::from_secs(2),
            ..RetransmitConfig::default()
        },
        ..CommonConfig::default()
    };
    let cfg = Arc::new(ClientConfig { psk: Some(psk()), common, ..ClientConfig::default() });
    let err = bounded(Client::connect(silent.local_addr().unwrap(), cfg, "localhost")).await.unwrap_err();
    assert!(matches!(err, ClientError::Handshake(CloseReason::Error(coaps_dtls::Error::HandshakeTimeout))), "{err:?}");
}

#[tokio::test]
async fn invalid_requests_are_refused_locally() {
    let (server, log) = start_server().await;
    let client = bounded(Client::connect(server, client_config(), "localhost")).await.unwrap();
    let mut resp_code = get("x");
    resp_code.header.code = MessageClass::Response(ResponseType::Content);
    assert!(matches!(bounded(client.send(resp_code)).await, Err(ClientError::InvalidRequest(_))));
    let mut ack = get("x");
    ack.header.set_type(MessageType::Acknowledgement);
    assert!(matches!(bounded(client.send(ack)).await, Err(ClientError::InvalidRequest(_))));
    let mut big = post("big");
    big.payload = vec![0; 5000];
    assert!(matches!(bounded(client.send(big)).await, Err(ClientError::MessageTooLarge { .. })));
    assert_eq!(log.app_calls.load(Ordering::SeqCst), 0);
    // A caller-chosen token is kept.
    let mut tok = get("tok");
    tok.set_token(vec![0xde, 0xad]);
    assert_eq!(bounded(client.send(tok)).await.unwrap().get_token(), &[0xde, 0xad]);
}
