//! Block-wise transfer (RFC 7959) and observe (RFC 7641) end to end: the `Client` against the
//! full server stack (cookie, handshake, CoAP, block and observe layers) on 127.0.0.1, and the
//! layers fed bad input directly (blocks that jump, overlap or never end, lying Size1, a
//! thousand observers from one peer, an observe storm).

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use coaps_test_support::datagram::{client_config, server_config};
use coaps_tower::block::client::{BlockError, BlockwiseOptions, send_blockwise};
use coaps_tower::block::{BlockConfig, BlockLayer, BlockOption};
use coaps_tower::observe::{ObserveConfig, ObserveLayer, Observers};
use coaps_tower::transport::Server;
use coaps_tower::{BoxError, Client, CoapLayer, CoapRequest, CookieLayer, HandshakeLayer, Handshaken};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

const LIMIT: Duration = Duration::from_secs(30);

fn body(n: usize, salt: u8) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ salt).collect()
}

fn path_of(p: &Packet) -> String {
    let segs: Vec<String> = p
        .get_option(CoapOption::UriPath)
        .map(|l| l.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect())
        .unwrap_or_default();
    segs.join("/")
}

/// The application: `/big` (4096 bytes), `/changing` (a different body on every call),
/// `/echo` (answers the request payload, so uploads can be checked), `/tick` (observable,
/// counts calls).
#[derive(Clone, Default)]
struct App {
    calls: Arc<AtomicU64>,
    uploads: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl App {
    fn answer(&self, req: CoapRequest) -> Packet {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let mut resp = req.response();
        resp.header.code = MessageClass::Response(ResponseType::Content);
        match path_of(&req.message).as_str() {
            "big" => resp.payload = body(4096, 0),
            "changing" => resp.payload = body(3000, n as u8 | 1),
            "echo" => {
                self.uploads.lock().unwrap().push(req.message.payload.clone());
                resp.header.code = MessageClass::Response(ResponseType::Changed);
                resp.payload = req.message.payload.clone();
            }
            "tick" => {
                resp.set_observe_value(0);
                resp.payload = format!("tick {n}").into_bytes();
            }
            _ => resp.header.code = MessageClass::Response(ResponseType::NotFound),
        }
        resp
    }
}

struct Running {
    addr: SocketAddr,
    app: App,
    observers: Observers,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Running {
    start_with(ObserveConfig::default()).await
}

async fn start_with(observe: ObserveConfig) -> Running {
    let config = Arc::new(server_config());
    let cookies = CookieLayer::for_server(&config);
    let handshake = HandshakeLayer::builder(config).behind(&cookies).build();
    let associations = handshake.associations();
    let sink = associations.clone();
    let observers = Observers::new(observe, move |peer, bytes: &[u8]| sink.send(peer, bytes).is_ok());
    let app = App::default();
    let a2 = app.clone();
    let svc_app = service_fn(move |req: CoapRequest| {
        let r = a2.answer(req);
        async move { Ok::<_, Infallible>(r) }
    });
    tokio::spawn(observers.clone().drive(svc_app.clone()));
    let service = ServiceBuilder::new()
        .layer(cookies)
        .layer(handshake)
        .layer(CoapLayer::new().on_empty(observers.empty_hook()))
        .layer(BlockLayer::new())
        .layer(ObserveLayer::new(observers.clone()))
        .service(svc_app);
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(Server::new(socket).out_of_band(associations).serve(service, async move {
        let _ = stopped.await;
    }));
    Running { addr, app, observers, _stop: stop }
}

fn get(path: &str) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Request(RequestType::Get);
    p.add_option(CoapOption::UriPath, path.as_bytes().to_vec());
    p
}

#[tokio::test]
async fn client_follows_block2_to_the_exact_body() {
    let s = start().await;
    let client =
        tokio::time::timeout(LIMIT, Client::connect(s.addr, client_config(), "localhost")).await.unwrap().unwrap();
    // A plain send gets only the first block: the data-loss case of issue 12.
    let first = client.send(get("big")).await.unwrap();
    assert_eq!(first.payload.len(), 1024);
    let b2 = BlockOption::from_packet(&first, CoapOption::Block2).unwrap().unwrap();
    assert!(b2.more);
    // Block-wise: the whole body, every size.
    for szx in [None, Some(2), Some(6), Some(0)] {
        let opts = BlockwiseOptions { szx, ..Default::default() };
        let resp = tokio::time::timeout(LIMIT, send_blockwise(&client, get("big"), &opts)).await.unwrap().unwrap();
        assert_eq!(resp.payload, body(4096, 0), "szx {szx:?}");
        assert!(resp.get_option(CoapOption::Block2).is_none_or(|l| l.is_empty()), "{szx:?}");
    }
    client.close().await;
}

#[tokio::test]
async fn client_uploads_block1_with_size1() {
    let s = start().await;
    let client = Client::connect(s.addr, client_config(), "localhost").await.unwrap();
    let mut put = Packet::new();
    put.header.code = MessageClass::Request(RequestType::Put);
    put.add_option(CoapOption::UriPath, b"echo".to_vec());
    put.payload = body(3000, 9);
    // Too large for one record: refused without block-wise.
    assert!(client.send(put.clone()).await.is_err());
    for szx in [None, Some(4)] {
        let resp = send_blockwise(&client, put.clone(), &BlockwiseOptions { szx, ..Default::default() }).await.unwrap();
        assert_eq!(resp.header.code, MessageClass::Response(ResponseType::Changed));
        // The echoed body comes back block-wise too: both directions, the same bytes.
        assert_eq!(resp.payload, body(3000, 9));
    }
    let uploads = s.app.uploads.lock().unwrap().clone();
    assert_eq!(uploads.len(), 2, "the application saw each upload once, whole");
    assert!(uploads.iter().all(|u| *u == body(3000, 9)));
    client.close().await;
}

#[tokio::test]
async fn changed_representation_is_never_spliced() {
    let s = start().await;
    let client = Client::connect(s.addr, client_config(), "localhost").await.unwrap();
    let err = send_blockwise(&client, get("changing"), &BlockwiseOptions { max_restarts: 3, ..Default::default() })
        .await
        .unwrap_err();
    assert!(matches!(err, BlockError::Changed { restarts: 3 }), "{err}");
    assert!(err.to_string().contains("changed"), "{err}");
    client.close().await;
}

#[tokio::test]
async fn client_observes_and_cancels() {
    let s = start().await;
    let client = Client::connect(s.addr, client_config(), "localhost").await.unwrap();
    let mut obs = coaps_tower::observe::client::observe(&client, get("tick")).await.unwrap();
    assert!(obs.is_registered());
    assert_eq!(s.observers.observers_of("tick"), 1);
    let first = obs.next().await.unwrap();
    assert!(first.payload.starts_with(b"tick "));
    let mut seen = Vec::new();
    for _ in 0..3 {
        s.observers.changed("tick");
        let n = tokio::time::timeout(LIMIT, obs.next()).await.unwrap().unwrap();
        seen.push(n.get_observe_value().unwrap().unwrap());
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
    let bye = obs.cancel().await.unwrap();
    assert!(bye.get_observe_value().is_none(), "a deregistering GET gets a plain answer");
    assert_eq!(s.observers.len(), 0, "deregistered by GET with Observe=1");
    client.close().await;
}

/// With the confirmable interval at zero every notification is a CON: the client acknowledges
/// each (the Empty ACK reaches the registry through `CoapLayer::on_empty`), so the observation
/// lives on; once the client forgets the token it answers the next CON with a Reset, which
/// ends the registration (RFC 7641 §3.6, §4.5).
#[tokio::test]
async fn confirmable_notifications_are_acknowledged_and_reset_when_unwanted() {
    let s = start_with(ObserveConfig { con_interval: Duration::ZERO, ..Default::default() }).await;
    let client = Client::connect(s.addr, client_config(), "localhost").await.unwrap();
    let mut obs = coaps_tower::observe::client::observe(&client, get("tick")).await.unwrap();
    obs.next().await.unwrap();
    for _ in 0..3 {
        s.observers.changed("tick");
        let n = tokio::time::timeout(LIMIT, obs.next()).await.unwrap().unwrap();
        assert_eq!(n.header.get_type(), MessageType::Confirmable);
        // Let the ACK arrive before the next change, or the next notification goes as NON
        // (one CON outstanding at a time).
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.observers.len(), 1, "acknowledged notifications keep the observer");
    drop(obs);
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !s.observers.is_empty() && tokio::time::Instant::now() < deadline {
        s.observers.changed("tick");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(s.observers.is_empty(), "the client's Reset deregistered it");
    assert!(client.is_open(), "while the association stays up");
    client.close().await;
}

#[tokio::test]
async fn unacknowledged_confirmable_notification_removes_the_observer() {
    let (mut svc, observers, sent) = observe_svc(ObserveConfig {
        con_interval: Duration::ZERO,
        ack_wait: Duration::from_millis(50),
        ..Default::default()
    });
    svc.ready().await.unwrap().call(register("x", "192.0.2.9:9", b"t")).await.unwrap();
    observers.changed("x");
    let deadline = tokio::time::Instant::now() + LIMIT;
    while sent.lock().unwrap().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let n = Packet::from_bytes(&sent.lock().unwrap()[0].1).unwrap();
    assert_eq!(n.header.get_type(), MessageType::Confirmable);
    // Never acknowledged: after ack_wait, the next change drops the observer.
    tokio::time::sleep(Duration::from_millis(100)).await;
    observers.changed("x");
    while !observers.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(observers.is_empty());
}

#[tokio::test]
async fn dropped_observation_is_ended_by_reset_or_close() {
    let s = start().await;
    let client = Client::connect(s.addr, client_config(), "localhost").await.unwrap();
    let obs = coaps_tower::observe::client::observe(&client, get("tick")).await.unwrap();
    drop(obs);
    // NON notifications to a client that forgot the token are ignored; the association
    // closing ends the registration (the sink reports the peer gone).
    client.close().await;
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !s.observers.is_empty() && tokio::time::Instant::now() < deadline {
        s.observers.changed("tick");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.observers.len(), 0);
}

// ---------------------------------------------------------------------------------------------
// Bad input, straight into the layers.
// ---------------------------------------------------------------------------------------------

fn request(method: RequestType, path: &str, peer: &str) -> CoapRequest {
    let mut m = Packet::new();
    m.header.set_type(MessageType::Confirmable);
    m.header.code = MessageClass::Request(method);
    m.add_option(CoapOption::UriPath, path.as_bytes().to_vec());
    CoapRequest {
        message: m,
        peer: peer.parse().unwrap(),
        identity: coaps_dtls::PeerIdentity::Anonymous,
        early_data: false,
        handshake: Handshaken::complete(),
        association: coaps_tower::Association::unknown(),
    }
}

fn block1(num: u32, more: bool, szx: u8, payload: Vec<u8>) -> CoapRequest {
    let mut r = request(RequestType::Put, "echo", "192.0.2.1:1000");
    BlockOption::new(num, more, szx).set_in(&mut r.message, CoapOption::Block1);
    r.message.payload = payload;
    r
}

fn code(p: &Packet) -> ResponseType {
    match p.header.code {
        MessageClass::Response(r) => r,
        other => panic!("not a response: {other:?}"),
    }
}

type BlockSvc = coaps_tower::block::Block<tower::util::BoxCloneService<CoapRequest, Packet, Infallible>>;

fn block_svc(config: BlockConfig) -> (BlockSvc, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let app = tower::util::BoxCloneService::new(service_fn(move |req: CoapRequest| {
        c2.fetch_add(1, Ordering::SeqCst);
        let mut r = req.response();
        r.header.code = MessageClass::Response(ResponseType::Changed);
        r.payload = (req.message.payload.len() as u32).to_be_bytes().to_vec();
        async move { Ok::<_, Infallible>(r) }
    }));
    (BlockLayer::with_config(config).layer(app), calls)
}

async fn call(svc: &mut BlockSvc, req: CoapRequest) -> Packet {
    svc.ready().await.unwrap().call(req).await.unwrap()
}

#[tokio::test]
async fn block1_jumps_overlaps_and_orphans_get_4_08() {
    let (mut svc, calls) = block_svc(BlockConfig::default());
    // Orphan: block 3 with nothing before it.
    let r = call(&mut svc, block1(3, true, 2, vec![0; 64])).await;
    assert_eq!(code(&r), ResponseType::RequestEntityIncomplete);
    // Start, then jump.
    assert_eq!(code(&call(&mut svc, block1(0, true, 2, vec![1; 64])).await), ResponseType::Continue);
    let r = call(&mut svc, block1(2, true, 2, vec![2; 64])).await;
    assert_eq!(code(&r), ResponseType::RequestEntityIncomplete);
    assert!(String::from_utf8_lossy(&r.payload).contains("expected byte 64"), "{:?}", r.payload);
    // The jump dropped the transfer: start again, then overlap (block 0 again after block 1).
    assert_eq!(code(&call(&mut svc, block1(0, true, 2, vec![1; 64])).await), ResponseType::Continue);
    assert_eq!(code(&call(&mut svc, block1(1, true, 2, vec![1; 64])).await), ResponseType::Continue);
    let r = call(&mut svc, block1(1, false, 2, vec![9; 10])).await;
    assert_eq!(code(&r), ResponseType::RequestEntityIncomplete, "an overlap is not spliced");
    // A non-final block of the wrong size.
    let r = call(&mut svc, block1(0, true, 2, vec![1; 63])).await;
    assert_eq!(code(&r), ResponseType::BadRequest);
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no partial or spliced body reached the application");
    assert_eq!(svc.transfers(), 0);
    // A correct sequence does reach it, whole.
    call(&mut svc, block1(0, true, 2, vec![1; 64])).await;
    let r = call(&mut svc, block1(1, false, 2, vec![1; 5])).await;
    assert_eq!(code(&r), ResponseType::Changed);
    assert_eq!(r.payload, 69u32.to_be_bytes());
    let echo = BlockOption::from_packet(&r, CoapOption::Block1).unwrap().unwrap();
    assert_eq!((echo.num, echo.more), (1, false));
}

#[tokio::test]
async fn never_ending_and_lying_uploads_are_bounded() {
    let max = 4096;
    let (mut svc, calls) = block_svc(BlockConfig { max_body_size: max, ..Default::default() });
    // Size1 announcing too much: refused at once, with the limit in Size1 (RFC 7959 §4).
    let mut r = block1(0, true, 6, vec![0; 1024]);
    r.message.add_option(CoapOption::Size1, 1_000_000u32.to_be_bytes().to_vec());
    let resp = call(&mut svc, r).await;
    assert_eq!(code(&resp), ResponseType::RequestEntityTooLarge);
    assert_eq!(resp.get_option(CoapOption::Size1).unwrap().front().unwrap(), &4096u32.to_be_bytes()[2..].to_vec());
    // Size1 announcing little, then blocks that never end: cut at the limit, nothing kept.
    let mut r = block1(0, true, 6, vec![0; 1024]);
    r.message.add_option(CoapOption::Size1, vec![10]);
    assert_eq!(code(&call(&mut svc, r).await), ResponseType::Continue);
    let mut last = ResponseType::Continue;
    for num in 1..100 {
        last = code(&call(&mut svc, block1(num, true, 6, vec![0; 1024])).await);
        if last != ResponseType::Continue {
            assert_eq!(num, 4, "refused at the first block past {max} bytes");
            break;
        }
        assert!(svc.buffered_bytes() <= max);
    }
    assert_eq!(last, ResponseType::RequestEntityTooLarge);
    assert_eq!(svc.transfers(), 0);
    assert_eq!(svc.buffered_bytes(), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // Block numbers at the 20-bit end do not overflow anything.
    let r = call(&mut svc, block1(0xF_FFFF, true, 6, vec![0; 1024])).await;
    assert_eq!(code(&r), ResponseType::RequestEntityIncomplete);
}

#[tokio::test]
async fn transfers_are_bounded_per_peer_and_in_total() {
    let (mut svc, _) =
        block_svc(BlockConfig { max_transfers_per_peer: 3, max_buffered_bytes: 64 * 10, ..Default::default() });
    // One peer opening 50 uploads on 50 paths keeps at most 3.
    for i in 0..50 {
        let mut r = request(RequestType::Put, &format!("p{i}"), "192.0.2.1:1000");
        BlockOption::new(0, true, 2).set_in(&mut r.message, CoapOption::Block1);
        r.message.payload = vec![0; 64];
        assert_eq!(code(&call(&mut svc, r).await), ResponseType::Continue);
        assert!(svc.transfers() <= 3);
    }
    // Many peers: the byte budget holds; beyond it, 5.03.
    let mut refused = 0;
    for i in 0..50 {
        let mut r = request(RequestType::Put, "x", &format!("192.0.2.{}:1000", i + 2));
        BlockOption::new(0, true, 2).set_in(&mut r.message, CoapOption::Block1);
        r.message.payload = vec![0; 64];
        if code(&call(&mut svc, r).await) == ResponseType::ServiceUnavailable {
            refused += 1;
        }
        assert!(svc.buffered_bytes() <= 64 * 10);
    }
    assert!(refused >= 40, "{refused}");
}

#[tokio::test]
async fn block2_past_the_end_and_bad_options_are_refused() {
    let app = service_fn(|req: CoapRequest| async move {
        let mut r = req.response();
        r.header.code = MessageClass::Response(ResponseType::Content);
        r.payload = vec![5; 3000];
        Ok::<_, Infallible>(r)
    });
    let mut svc = BlockLayer::new().layer(app);
    let mut r = request(RequestType::Get, "x", "192.0.2.1:1");
    BlockOption::new(100, false, 6).set_in(&mut r.message, CoapOption::Block2);
    let resp = svc.ready().await.unwrap().call(r).await.unwrap();
    assert_eq!(code(&resp), ResponseType::BadOption);
    let mut r = request(RequestType::Get, "x", "192.0.2.1:1");
    r.message.add_option(CoapOption::Block2, vec![1, 2, 3, 4]);
    let resp = svc.ready().await.unwrap().call(r).await.unwrap();
    assert_eq!(code(&resp), ResponseType::BadOption);
    let mut r = request(RequestType::Get, "x", "192.0.2.1:1");
    r.message.add_option(CoapOption::Block1, vec![0x0f]);
    let resp = svc.ready().await.unwrap().call(r).await.unwrap();
    assert_eq!(code(&resp), ResponseType::BadOption);
    // The last block of 3000 bytes at 1024: 952 bytes, M=0.
    let mut r = request(RequestType::Get, "x", "192.0.2.1:1");
    BlockOption::new(2, false, 6).set_in(&mut r.message, CoapOption::Block2);
    let resp = svc.ready().await.unwrap().call(r).await.unwrap();
    assert_eq!(resp.payload.len(), 952);
    let b = BlockOption::from_packet(&resp, CoapOption::Block2).unwrap().unwrap();
    assert_eq!((b.num, b.more), (2, false));
}

type Sent = Arc<Mutex<Vec<(SocketAddr, Vec<u8>)>>>;

fn observe_svc(
    config: ObserveConfig,
) -> (coaps_tower::observe::Observe<tower::util::BoxCloneService<CoapRequest, Packet, BoxError>>, Observers, Sent) {
    let sent: Sent = Arc::default();
    let s2 = sent.clone();
    let observers = Observers::new(config, move |peer, bytes: &[u8]| {
        s2.lock().unwrap().push((peer, bytes.to_vec()));
        true
    });
    let app = tower::util::BoxCloneService::new(service_fn(|req: CoapRequest| async move {
        let mut r = req.response();
        r.header.code = MessageClass::Response(ResponseType::Content);
        r.set_observe_value(0);
        r.payload = b"v".to_vec();
        Ok::<_, BoxError>(r)
    }));
    tokio::spawn(observers.clone().drive(app.clone()));
    (ObserveLayer::new(observers.clone()).layer(app), observers, sent)
}

fn register(path: &str, peer: &str, token: &[u8]) -> CoapRequest {
    let mut r = request(RequestType::Get, path, peer);
    r.message.set_token(token.to_vec());
    r.message.set_observe_value(0);
    r
}

#[tokio::test]
async fn a_thousand_observers_from_one_peer_are_bounded() {
    let (mut svc, observers, _) =
        observe_svc(ObserveConfig { max_per_peer: 8, max_observers: 100, ..Default::default() });
    let mut registered = 0;
    for i in 0..1000u32 {
        // Half on the same resource with new tokens (replaced, §4.1), half on new resources.
        let path = if i % 2 == 0 { "same".to_owned() } else { format!("r{i}") };
        let resp = svc.ready().await.unwrap().call(register(&path, "192.0.2.1:1", &i.to_be_bytes())).await.unwrap();
        registered += usize::from(resp.get_observe_value().is_some());
        assert!(observers.len() <= 8);
    }
    assert_eq!(observers.len(), 8);
    assert_eq!(observers.observers_of("same"), 1, "one entry per peer and resource");
    assert!(registered >= 500, "re-registrations of a registered resource stay accepted: {registered}");
    // Many peers: the total bound holds, the refused get a plain answer (no Observe).
    for i in 0..300u32 {
        let resp = svc
            .ready()
            .await
            .unwrap()
            .call(register("same", &format!("10.0.{}.{}:5", i / 250, i % 250), b"t"))
            .await
            .unwrap();
        assert!(observers.len() <= 100);
        if observers.len() == 100 && i > 200 {
            assert!(resp.get_observe_value().is_none());
        }
    }
    assert_eq!(observers.len(), 100);
}

#[tokio::test]
async fn observe_storm_stays_bounded_and_reset_deregisters() {
    let (mut svc, observers, sent) = observe_svc(ObserveConfig::default());
    let hook = observers.empty_hook();
    for round in 0..200u32 {
        for p in 0..10u32 {
            let peer = format!("192.0.2.{p}:7");
            let req = register("storm", &peer, &round.to_be_bytes());
            svc.ready().await.unwrap().call(req).await.unwrap();
            observers.changed("storm");
            observers.changed("nobody-observes-this");
        }
        assert!(observers.len() <= 10);
    }
    assert_eq!(observers.len(), 10);
    // The driver coalesces changes: notifications were sent, far fewer than the changes.
    let deadline = tokio::time::Instant::now() + LIMIT;
    while sent.lock().unwrap().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!sent.lock().unwrap().is_empty());
    // A deregistering GET with a wrong token changes nothing; the right token removes.
    let mut bye = request(RequestType::Get, "storm", "192.0.2.0:7");
    bye.message.set_token(vec![0xde, 0xad]);
    bye.message.set_observe_value(1);
    svc.ready().await.unwrap().call(bye.clone()).await.unwrap();
    assert_eq!(observers.len(), 10);
    bye.message.set_token(199u32.to_be_bytes().to_vec());
    svc.ready().await.unwrap().call(bye).await.unwrap();
    assert_eq!(observers.len(), 9);
    // A Reset answering a peer's latest notification removes that observer (RFC 7641 §3.6);
    // Resets and ACKs matching nothing change nothing.
    sent.lock().unwrap().clear();
    observers.changed("storm");
    let deadline = tokio::time::Instant::now() + LIMIT;
    let peer: SocketAddr = "192.0.2.3:7".parse().unwrap();
    let mid = loop {
        if let Some((_, b)) = sent.lock().unwrap().iter().find(|(p, _)| *p == peer) {
            let n = Packet::from_bytes(b).unwrap();
            assert_eq!(n.header.get_type(), MessageType::NonConfirmable, "NON unless 24 h since the last CON");
            break n.header.message_id;
        }
        assert!(tokio::time::Instant::now() < deadline, "no notification to {peer}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for m in (0..1000u16).map(|i| mid.wrapping_add(1000 + i)) {
        hook.invoke(peer, MessageType::Reset, m);
        hook.invoke(peer, MessageType::Acknowledgement, m);
    }
    assert_eq!(observers.len(), 9);
    hook.invoke(peer, MessageType::Reset, mid);
    assert_eq!(observers.len(), 8);
}
