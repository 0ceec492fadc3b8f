//! The CoAP layer called directly with `Secured` records built from coap-lite packets.

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use coaps_dtls::PeerIdentity;
use coaps_tower::coap::{Coap, CoapConfig, CoapLayer};
use coaps_tower::{BoxError, CoapRequest, Secured};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

const PEER: &str = "192.0.2.7:5000";

fn peer() -> SocketAddr {
    PEER.parse().unwrap()
}

fn request(ty: MessageType, method: RequestType, mid: u16, token: &[u8]) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(ty);
    p.header.code = MessageClass::Request(method);
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    p.add_option(CoapOption::UriPath, b"sensor".to_vec());
    p
}

fn secured(payload: Vec<u8>) -> Secured {
    Secured {
        peer: peer(),
        identity: PeerIdentity::Psk(b"dev-1".to_vec()),
        payload,
        early_data: false,
        handshake: Default::default(),
        association: Default::default(),
    }
}

fn sec(p: &Packet) -> Secured {
    secured(p.to_bytes().unwrap())
}

/// An application that counts its calls and answers 2.05 with "n=<count>", so a replay is
/// distinguishable from a second processing.
fn counting_app(
    calls: Arc<AtomicUsize>,
) -> impl Service<CoapRequest, Response = Packet, Error = Infallible, Future: Send> + Clone {
    service_fn(move |req: CoapRequest| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            let mut resp = req.response();
            resp.header.code = MessageClass::Response(ResponseType::Content);
            resp.payload = format!("n={n}").into_bytes();
            Ok::<_, Infallible>(resp)
        }
    })
}

async fn call<S>(svc: &mut S, msg: Secured) -> Option<Packet>
where
    S: Service<Secured, Response = Option<Vec<u8>>, Error = BoxError>,
{
    let out = tokio::time::timeout(Duration::from_secs(5), svc.ready().await.unwrap().call(msg))
        .await
        .expect("bounded")
        .expect("the CoAP layer does not fail");
    out.map(|b| Packet::from_bytes(&b).expect("the layer emits valid CoAP"))
}

#[tokio::test]
async fn con_get_gets_piggybacked_content() {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let seen2 = seen.clone();
    let app = service_fn(move |req: CoapRequest| {
        *seen2.lock().unwrap() = Some((req.peer, req.identity.clone(), req.early_data, req.message.clone()));
        let mut resp = req.response();
        resp.payload = b"21.5 C".to_vec();
        async move { Ok::<_, Infallible>(resp) }
    });
    let mut svc = CoapLayer::new().layer(app);
    let get = request(MessageType::Confirmable, RequestType::Get, 0x1234, &[1, 2, 3]);
    let resp = call(&mut svc, sec(&get)).await.expect("answered");
    assert_eq!(resp.header.get_type(), MessageType::Acknowledgement);
    assert_eq!(resp.header.code, MessageClass::Response(ResponseType::Content));
    assert_eq!(resp.header.message_id, 0x1234);
    assert_eq!(resp.get_token(), &[1, 2, 3]);
    assert_eq!(resp.payload, b"21.5 C");
    let (p, id, early, msg) = seen.lock().unwrap().take().expect("the app was called");
    assert_eq!(p, peer());
    assert_eq!(id, PeerIdentity::Psk(b"dev-1".to_vec()));
    assert!(!early);
    assert_eq!(msg.get_first_option(CoapOption::UriPath), Some(&b"sensor".to_vec()));
}

#[tokio::test]
async fn layer_fixes_type_mid_and_token_whatever_the_app_sets() {
    let app = service_fn(|_req: CoapRequest| async {
        let mut p = Packet::new(); // CON, MID 0, no token: all wrong for a response
        p.header.code = MessageClass::Response(ResponseType::Changed);
        Ok::<_, Infallible>(p)
    });
    let mut svc = CoapLayer::new().layer(app);
    let resp = call(&mut svc, sec(&request(MessageType::Confirmable, RequestType::Put, 77, &[9]))).await.unwrap();
    assert_eq!(resp.header.get_type(), MessageType::Acknowledgement);
    assert_eq!(resp.header.message_id, 77);
    assert_eq!(resp.get_token(), &[9]);
    assert_eq!(resp.header.code, MessageClass::Response(ResponseType::Changed));
}

#[tokio::test]
async fn non_request_gets_non_response_with_new_mid() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = CoapLayer::new().layer(counting_app(calls.clone()));
    let r1 = call(&mut svc, sec(&request(MessageType::NonConfirmable, RequestType::Get, 500, &[0xaa]))).await.unwrap();
    let r2 = call(&mut svc, sec(&request(MessageType::NonConfirmable, RequestType::Get, 501, &[0xbb]))).await.unwrap();
    for (r, tok) in [(&r1, 0xaa), (&r2, 0xbb)] {
        assert_eq!(r.header.get_type(), MessageType::NonConfirmable);
        assert_eq!(r.get_token(), &[tok]);
        assert_eq!(r.header.code, MessageClass::Response(ResponseType::Content));
    }
    // Fresh Message IDs of our own, distinct from each other (RFC 7252 §5.2.3, §4.4).
    assert_ne!(r1.header.message_id, r2.header.message_id);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn duplicate_con_post_is_processed_once_and_replayed() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = CoapLayer::new().layer(counting_app(calls.clone()));
    let post = request(MessageType::Confirmable, RequestType::Post, 42, &[7, 7]);
    let first = svc.ready().await.unwrap().call(sec(&post)).await.unwrap().unwrap();
    let second = svc.ready().await.unwrap().call(sec(&post)).await.unwrap().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a duplicate POST must not reach the application");
    assert_eq!(first, second, "the stored response bytes are replayed");
    assert_eq!(Packet::from_bytes(&first).unwrap().payload, b"n=1");
    // The same authenticated peer from another address (a new port, a replayed 0-RTT copy,
    // issue 10) is the same CoAP endpoint (RFC 7252 §9.1.1): still a duplicate.
    let mut moved = sec(&post);
    moved.peer = "192.0.2.8:5000".parse().unwrap();
    let r = svc.ready().await.unwrap().call(moved).await.unwrap().unwrap();
    assert_eq!(r, first);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Another identity using the same Message ID is a different exchange.
    let mut other = sec(&post);
    other.identity = PeerIdentity::Psk(b"dev-2".to_vec());
    let r = svc.ready().await.unwrap().call(other).await.unwrap().unwrap();
    assert_eq!(Packet::from_bytes(&r).unwrap().payload, b"n=2");
    // Anonymous peers are told apart by address.
    for addr in ["192.0.2.9:5000", "192.0.2.9:5001"] {
        let mut anon = sec(&post);
        anon.identity = PeerIdentity::Anonymous;
        anon.peer = addr.parse().unwrap();
        svc.ready().await.unwrap().call(anon).await.unwrap().unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn duplicate_non_is_ignored() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = CoapLayer::new().layer(counting_app(calls.clone()));
    let non = request(MessageType::NonConfirmable, RequestType::Post, 43, &[1]);
    assert!(call(&mut svc, sec(&non)).await.is_some());
    assert!(call(&mut svc, sec(&non)).await.is_none(), "RFC 7252 §4.5: duplicate NON silently ignored");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// An app that waits for a permit before answering, counting calls.
fn gated_app(
    calls: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
) -> impl Service<CoapRequest, Response = Packet, Error = Infallible, Future: Send> + Clone {
    service_fn(move |req: CoapRequest| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        let gate = gate.clone();
        async move {
            gate.acquire().await.unwrap().forget();
            let mut resp = req.response();
            resp.payload = format!("n={n}").into_bytes();
            Ok::<_, Infallible>(resp)
        }
    })
}

#[tokio::test]
async fn concurrent_duplicate_waits_for_the_first_and_is_not_processed() {
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let mut svc = CoapLayer::new().layer(gated_app(calls.clone(), gate.clone()));
    let post = request(MessageType::Confirmable, RequestType::Post, 9, &[5]);
    let f1 = svc.ready().await.unwrap().call(sec(&post));
    let f2 = svc.ready().await.unwrap().call(sec(&post));
    let f3 = svc.ready().await.unwrap().call(sec(&post));
    let t1 = tokio::spawn(f1);
    let t2 = tokio::spawn(f2);
    let t3 = tokio::spawn(f3);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!t2.is_finished() && !t3.is_finished(), "duplicates wait for the first copy's response");
    gate.add_permits(10);
    let (r1, r2, r3) =
        tokio::time::timeout(Duration::from_secs(5), async { (t1.await, t2.await, t3.await) }).await.expect("bounded");
    let (r1, r2, r3) = (r1.unwrap().unwrap().unwrap(), r2.unwrap().unwrap().unwrap(), r3.unwrap().unwrap().unwrap());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(r1, r2);
    assert_eq!(r1, r3);
    assert_eq!(Packet::from_bytes(&r1).unwrap().header.message_id, 9);
}

#[tokio::test]
async fn cancelled_first_copy_lets_a_retransmission_through() {
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let mut svc = CoapLayer::new().layer(gated_app(calls.clone(), gate.clone()));
    let post = request(MessageType::Confirmable, RequestType::Post, 10, &[5]);
    let f1 = svc.ready().await.unwrap().call(sec(&post));
    let f2 = tokio::spawn(svc.ready().await.unwrap().call(sec(&post)));
    drop(f1); // the caller gave up on the first copy
    let waited = tokio::time::timeout(Duration::from_secs(5), f2).await.expect("bounded").unwrap().unwrap();
    assert_eq!(waited, None, "the waiting duplicate gets no answer when the first copy is cancelled");
    gate.add_permits(1);
    let r = call(&mut svc, sec(&post)).await.expect("processed afresh");
    assert_eq!(r.payload, b"n=2");
    assert_eq!(svc.dedup_len(), 1);
}

#[tokio::test]
async fn garbage_and_non_requests() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = CoapLayer::new().layer(counting_app(calls.clone()));
    // Shorter than a header: dropped.
    assert!(call(&mut svc, secured(vec![0x40, 0x01, 0x00])).await.is_none());
    assert!(call(&mut svc, secured(vec![])).await.is_none());
    // Version 2: silently ignored (RFC 7252 §3).
    assert!(call(&mut svc, secured(vec![0x80, 0x01, 0x00, 0x01])).await.is_none());
    // CON GET with token length 9 (a format error past the header): Reset with its MID.
    let rst = call(&mut svc, secured(vec![0x49, 0x01, 0xab, 0xcd, 1, 2, 3, 4, 5, 6, 7, 8, 9])).await.unwrap();
    assert_eq!(rst.header.get_type(), MessageType::Reset);
    assert_eq!(rst.header.code, MessageClass::Empty);
    assert_eq!(rst.header.message_id, 0xabcd);
    assert!(rst.get_token().is_empty() && rst.payload.is_empty());
    // CON with a truncated option (delta 1, length 5, 1 byte present): Reset.
    let rst = call(&mut svc, secured(vec![0x40, 0x01, 0x00, 0x02, 0x15, 0x61])).await.unwrap();
    assert_eq!((rst.header.get_type(), rst.header.message_id), (MessageType::Reset, 2));
    // The same as NON: silently ignored.
    assert!(call(&mut svc, secured(vec![0x50, 0x01, 0x00, 0x03, 0x15, 0x61])).await.is_none());
    // CON carrying a response (we asked nothing) and CON with a reserved class 7.00: Reset.
    for code in [0x45, 0xe0] {
        let rst = call(&mut svc, secured(vec![0x40, code, 0x00, 0x04])).await.unwrap();
        assert_eq!((rst.header.get_type(), rst.header.message_id), (MessageType::Reset, 4));
    }
    // ACK and RST from the peer never reach the application and get no answer (§4.2).
    assert!(call(&mut svc, secured(vec![0x60, 0x00, 0x00, 0x05])).await.is_none());
    assert!(call(&mut svc, secured(vec![0x60, 0x45, 0x00, 0x06])).await.is_none());
    assert!(call(&mut svc, secured(vec![0x70, 0x00, 0x00, 0x07])).await.is_none());
    assert!(call(&mut svc, sec(&request(MessageType::Acknowledgement, RequestType::Get, 8, &[]))).await.is_none());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(svc.dedup_len(), 0, "nothing rejected takes a dedup entry");
}

#[tokio::test]
async fn empty_con_ping_gets_reset_and_empty_non_is_ignored() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = CoapLayer::new().layer(counting_app(calls.clone()));
    let rst = call(&mut svc, secured(vec![0x40, 0x00, 0x12, 0x34])).await.expect("a ping is answered");
    assert_eq!(rst.header.get_type(), MessageType::Reset);
    assert_eq!(rst.header.message_id, 0x1234);
    // An Empty CON with a token is a format error (§4.1): still a Reset.
    let rst = call(&mut svc, secured(vec![0x41, 0x00, 0x12, 0x35, 0xff])).await.unwrap();
    assert_eq!((rst.header.get_type(), rst.header.message_id), (MessageType::Reset, 0x1235));
    assert!(call(&mut svc, secured(vec![0x50, 0x00, 0x12, 0x36])).await.is_none());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn unknown_method_gets_4_05_without_the_app() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = CoapLayer::new().layer(counting_app(calls.clone()));
    let r = call(&mut svc, secured(vec![0x41, 0x08, 0x00, 0x09, 0x77])).await.unwrap();
    assert_eq!(r.header.code, MessageClass::Response(ResponseType::MethodNotAllowed));
    assert_eq!(r.header.get_type(), MessageType::Acknowledgement);
    assert_eq!((r.header.message_id, r.get_token()), (9, &[0x77][..]));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn dedup_store_is_bounded() {
    let calls = Arc::new(AtomicUsize::new(0));
    let cfg = CoapConfig { max_dedup_entries: 2, ..CoapConfig::default() };
    let mut svc = CoapLayer::with_config(cfg).layer(counting_app(calls.clone()));
    for mid in 1..=50u16 {
        call(&mut svc, sec(&request(MessageType::Confirmable, RequestType::Post, mid, &[]))).await.unwrap();
        assert!(svc.dedup_len() <= 2);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 50);
    // The newest is still remembered...
    let r = call(&mut svc, sec(&request(MessageType::Confirmable, RequestType::Post, 50, &[]))).await.unwrap();
    assert_eq!(r.payload, b"n=50");
    // ...the oldest was evicted, so its retransmission is processed again.
    let r = call(&mut svc, sec(&request(MessageType::Confirmable, RequestType::Post, 1, &[]))).await.unwrap();
    assert_eq!(r.payload, b"n=51");
}

#[tokio::test(start_paused = true)]
async fn dedup_entries_expire_after_exchange_lifetime() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc: Coap<_> = CoapLayer::new().layer(counting_app(calls.clone()));
    let post = request(MessageType::Confirmable, RequestType::Post, 3, &[]);
    call(&mut svc, sec(&post)).await.unwrap();
    tokio::time::advance(Duration::from_secs(246)).await;
    assert_eq!(call(&mut svc, sec(&post)).await.unwrap().payload, b"n=1", "within EXCHANGE_LIFETIME: replayed");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(svc.dedup_len(), 0);
    assert_eq!(call(&mut svc, sec(&post)).await.unwrap().payload, b"n=2", "after 247 s the MID is new again");
}

#[tokio::test]
async fn application_error_is_5_00() {
    let app = service_fn(|_req: CoapRequest| async { Err::<Packet, _>(std::io::Error::other("database down")) });
    let mut svc = CoapLayer::new().layer(app);
    let r = call(&mut svc, sec(&request(MessageType::Confirmable, RequestType::Get, 11, &[4]))).await.unwrap();
    assert_eq!(r.header.code, MessageClass::Response(ResponseType::InternalServerError));
    assert_eq!((r.header.get_type(), r.header.message_id, r.get_token()), (MessageType::Acknowledgement, 11, &[4][..]));
}

#[tokio::test]
async fn non_response_code_from_app_is_5_00() {
    let app = service_fn(|req: CoapRequest| async move { Ok::<_, Infallible>(req.message) }); // echoes the request
    let mut svc = CoapLayer::new().layer(app);
    let r = call(&mut svc, sec(&request(MessageType::Confirmable, RequestType::Get, 12, &[]))).await.unwrap();
    assert_eq!(r.header.code, MessageClass::Response(ResponseType::InternalServerError));
}

#[tokio::test]
async fn oversized_response_becomes_5_00() {
    let app = service_fn(|req: CoapRequest| async move {
        let mut resp = req.response();
        resp.payload = vec![b'x'; 2000];
        Ok::<_, Infallible>(resp)
    });
    let mut svc = CoapLayer::new().layer(app);
    let bytes = svc
        .ready()
        .await
        .unwrap()
        .call(sec(&request(MessageType::Confirmable, RequestType::Get, 13, &[1])))
        .await
        .unwrap()
        .unwrap();
    assert!(bytes.len() <= coaps_tower::coap::DEFAULT_MAX_MESSAGE_SIZE);
    let r = Packet::from_bytes(&bytes).unwrap();
    assert_eq!(r.header.code, MessageClass::Response(ResponseType::InternalServerError));
    assert_eq!(r.payload, b"response too large");
    assert_eq!((r.header.message_id, r.get_token()), (13, &[1][..]));
    // A custom cap applies too.
    let app = service_fn(|req: CoapRequest| async move {
        let mut resp = req.response();
        resp.payload = vec![b'y'; 100];
        Ok::<_, Infallible>(resp)
    });
    let mut svc = CoapLayer::with_config(CoapConfig { max_message_size: 64, ..Default::default() }).layer(app);
    let r = call(&mut svc, sec(&request(MessageType::Confirmable, RequestType::Get, 14, &[]))).await.unwrap();
    assert_eq!(r.header.code, MessageClass::Response(ResponseType::InternalServerError));
}

fn max_age(p: &Packet) -> Option<Vec<u8>> {
    p.get_first_option(CoapOption::MaxAge).cloned()
}

#[tokio::test(start_paused = true)]
async fn tower_timeout_around_the_app_gives_5_03() {
    let gate = Arc::new(Semaphore::new(0)); // never opened: the app hangs
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(CoapLayer::new())
        .timeout(Duration::from_millis(100))
        .service(gated_app(calls.clone(), gate));
    let post = request(MessageType::Confirmable, RequestType::Post, 20, &[2]);
    let r = call(&mut svc, sec(&post)).await.unwrap();
    assert_eq!(r.header.code, MessageClass::Response(ResponseType::ServiceUnavailable));
    assert_eq!(max_age(&r), Some(vec![1]), "Max-Age tells the client when to retry (§5.9.3.4)");
    assert_eq!((r.header.message_id, r.get_token()), (20, &[2][..]));
    // The 5.03 is the stored answer for this exchange: a retransmission gets it again.
    let again = call(&mut svc, sec(&post)).await.unwrap();
    assert_eq!(again, r);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn timeout_behind_a_buffer_is_still_recognised() {
    let gate = Arc::new(Semaphore::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(CoapLayer::new())
        .buffer(8)
        .timeout(Duration::from_millis(100))
        .service(gated_app(calls, gate));
    let r = call(&mut svc, sec(&request(MessageType::Confirmable, RequestType::Get, 21, &[]))).await.unwrap();
    assert_eq!(r.header.code, MessageClass::Response(ResponseType::ServiceUnavailable));
}

#[tokio::test]
async fn concurrency_limit_with_load_shed_gives_5_03_and_recovers() {
    let gate = Arc::new(Semaphore::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(CoapLayer::new())
        .load_shed()
        .concurrency_limit(1)
        .service(gated_app(calls.clone(), gate.clone()));
    let first = svc.ready().await.unwrap().call(sec(&request(MessageType::Confirmable, RequestType::Get, 30, &[])));
    let first = tokio::spawn(first);
    // The single slot is taken: the next request is shed, answered 5.03, and the app is not
    // called for it.
    let shed = call(&mut svc, sec(&request(MessageType::Confirmable, RequestType::Get, 31, &[]))).await.unwrap();
    assert_eq!(shed.header.code, MessageClass::Response(ResponseType::ServiceUnavailable));
    assert_eq!(shed.header.message_id, 31);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    gate.add_permits(10);
    let first = tokio::time::timeout(Duration::from_secs(5), first).await.unwrap().unwrap().unwrap().unwrap();
    assert_eq!(Packet::from_bytes(&first).unwrap().header.code, MessageClass::Response(ResponseType::Content));
    let ok = call(&mut svc, sec(&request(MessageType::Confirmable, RequestType::Get, 32, &[]))).await.unwrap();
    assert_eq!(ok.header.code, MessageClass::Response(ResponseType::Content));
}

#[tokio::test]
async fn concurrency_limit_applies_backpressure_through_the_layer() {
    let gate = Arc::new(Semaphore::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(CoapLayer::new())
        .concurrency_limit(1)
        .service(gated_app(calls.clone(), gate.clone()));
    let mut a = svc.clone();
    let fa = a.ready().await.unwrap().call(sec(&request(MessageType::Confirmable, RequestType::Get, 40, &[])));
    let fa = tokio::spawn(fa);
    let mut b = svc.clone();
    // poll_ready of the CoAP service reports the limit: not ready while the slot is taken.
    assert!(tokio::time::timeout(Duration::from_millis(100), b.ready()).await.is_err());
    gate.add_permits(10);
    fa.await.unwrap().unwrap().unwrap();
    let r = call(&mut b, sec(&request(MessageType::Confirmable, RequestType::Get, 41, &[]))).await.unwrap();
    assert_eq!(r.payload, b"n=2");
    // Clones share one dedup store.
    let r = call(&mut b, sec(&request(MessageType::Confirmable, RequestType::Get, 40, &[]))).await.unwrap();
    assert_eq!(r.payload, b"n=1");
}
