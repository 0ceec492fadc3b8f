//! DTLS 1.3 0-RTT early data (RFC 8446 §4.2.10, RFC 9147 §5.6) end to end through the Tower
//! stack: `CookieLayer::for_server` → `HandshakeLayer::builder(..).behind(&cookies)` → inner
//! service, with `ServerConfig::early_data` on and the default session store.
//!
//! A raw-engine client (the `coaps-dtls` `Endpoint`) talks to the stack in memory, so the
//! addresses are chosen freely and every datagram is seen:
//!
//! * a 0-RTT resumption from the address its ticket was issued to skips the cookie exchange
//!   (RFC 9147 §5.1, `gate::Proof::ZeroRttResumption`): no HelloRetryRequest, the early record reaches
//!   the inner service once as `Secured { early_data: true }`, its answer reaches the client,
//!   and 1-RTT data afterwards has `early_data: false`;
//! * the same ticket from another address gets a HelloRetryRequest and no early data is
//!   delivered (a ClientHello after a HelloRetryRequest must not offer it, RFC 8446 §4.2.10);
//! * an early-data hook that refuses: nothing delivered as early data, the handshake completes;
//! * a replayed 0-RTT ClientHello datagram (same bytes, same address) finds its single-use
//!   ticket gone (RFC 8446 §8.1): a HelloRetryRequest, nothing delivered twice;
//! * the CoAP layer marks a request that arrived as 0-RTT (`CoapRequest::early_data`), and its
//!   deduplication (RFC 7252 §4.5) holds across early and 1-RTT copies of one Message ID;
//! * over UDP with `Server`, the tower `Client` resumes a DTLS 1.3 ticket and sends its first
//!   request as 0-RTT data (`Client::connect_early`).

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use coaps_dtls::cert;
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::crypto::rustcrypto::EcdsaP256SigningKey;
use coaps_dtls::internal::record13::{Record13, split_datagram13};
use coaps_dtls::{
    CertifiedKey, ClientConfig, DtlsVersion, EarlyDataConfig, Endpoint, Event, PeerIdentity, PeerVerifier, Psk,
    ServerConfig, Session, StaticPsks,
};
use coaps_tower::handshake::{Handshake, Worker};
use coaps_tower::{
    BoxError, Client, ClientOptions, Coap, CoapLayer, CoapRequest, Cookie, CookieLayer, Datagram, HandshakeLayer,
    Secured, Server,
};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::{Service, ServiceExt};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../coaps-dtls/tests/data");
const EARLY: &[u8] = b"GET /temperature (0-RTT)";
const LATER: &[u8] = b"1-RTT request";

fn server_addr() -> SocketAddr {
    "192.0.2.1:5684".parse().unwrap()
}

fn client_addr() -> SocketAddr {
    "192.0.2.2:40000".parse().unwrap()
}

fn psk() -> Psk {
    Psk::new("device-0rtt", b"0123456789abcdef".to_vec()).unwrap()
}

fn server_cert() -> CertifiedKey {
    let read = |name: &str| std::fs::read(format!("{DATA}/{name}")).expect("test data");
    let sk = cert::load_private_key_pem(&read("server.key")).unwrap();
    let bytes: [u8; 32] = sk.to_bytes().into();
    let key = Arc::new(EcdsaP256SigningKey::from_bytes(&bytes).unwrap());
    CertifiedKey { chain: cert::load_certs_pem(&read("server.crt")).unwrap(), key }
}

/// A dual-version server (PSK and certificate, default session store) with `early` as its
/// 0-RTT policy.
fn server(early: Option<EarlyDataConfig>) -> Arc<ServerConfig> {
    Arc::new(ServerConfig {
        psks: Some(Arc::new(StaticPsks(vec![psk()]))),
        cert: Some(server_cert()),
        early_data: early,
        ..ServerConfig::default()
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Psk,
    Certificate,
}

fn client_config(mode: Mode) -> Arc<ClientConfig> {
    let mut c = ClientConfig { version: DtlsVersion::Dtls13, ..ClientConfig::default() };
    match mode {
        Mode::Psk => c.psk = Some(psk()),
        Mode::Certificate => {
            let roots = cert::load_certs_pem(&std::fs::read(format!("{DATA}/ca.crt")).unwrap()).unwrap();
            let v = coaps_dtls::cert::WebPkiVerifier::new(&roots).unwrap();
            c.verifier = Some(PeerVerifier::WebPki(Arc::new(v)));
        }
    }
    Arc::new(c)
}

/// Whether `datagram` is a plaintext (epoch 0) record holding a HelloRetryRequest (a
/// ServerHello-typed message with the special random, RFC 8446 §4.1.3).
fn is_hello_retry_request(datagram: &[u8]) -> bool {
    datagram.len() > 13 + 12 + 34
        && datagram[0] == 22
        && datagram[3..5] == [0, 0]
        && datagram[13] == 2
        && datagram[13 + 12 + 2..13 + 12 + 6] == [0xcf, 0x21, 0xad, 0x74]
}

// ---------------------------------------------------------------------------------------------
// The stack: CookieLayer → Handshake → inner, driven in memory
// ---------------------------------------------------------------------------------------------

/// Records every `Secured` it is called with and echoes its payload.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Secured>>>);

impl Service<Secured> for Recorder {
    type Response = Option<Vec<u8>>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Option<Vec<u8>>, BoxError>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, s: Secured) -> Self::Future {
        let echo = s.payload.clone();
        self.0.lock().unwrap().push(s);
        std::future::ready(Ok(Some(echo)))
    }
}

struct Stack<S> {
    cookies: CookieLayer,
    handshake: HandshakeLayer,
    svc: Cookie<Handshake<S>>,
    /// Not run: the tests drive every datagram themselves, and no timer has to fire.
    _worker: Worker,
}

impl<S> Stack<S>
where
    S: Service<Secured, Response = Option<Vec<u8>>> + Clone,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    fn new(config: Arc<ServerConfig>, inner: S, seed: u64) -> Self {
        let cookies = CookieLayer::for_server_with_rng(&config, SeededRng::from_seed_u64(seed));
        let handshake =
            HandshakeLayer::builder(config).behind(&cookies).rng(SeededRng::from_seed_u64(seed + 1)).build();
        let (inner, worker) = handshake.pair(inner);
        let svc = tower::Layer::layer(&cookies, inner);
        Self { cookies, handshake, svc, _worker: worker }
    }

    async fn call(&mut self, from: SocketAddr, payload: Vec<u8>) -> Vec<coaps_tower::Transmit> {
        self.svc.ready().await.unwrap().call(Datagram::new(from, payload)).await.unwrap().into_vec()
    }

    fn hrrs(&self) -> u64 {
        self.cookies.stats().hello_retry_requests
    }
}

/// A raw-engine DTLS 1.3 client at a chosen address, with everything it saw.
struct Peer {
    ep: Endpoint,
    addr: SocketAddr,
    events: Vec<Event>,
    /// Every datagram it sent, in order.
    sent: Vec<Vec<u8>>,
    /// HelloRetryRequests it received.
    hrrs: usize,
}

impl Peer {
    fn new(seed: u64, addr: SocketAddr) -> Self {
        Self {
            ep: Endpoint::client(SeededRng::from_seed_u64(seed)),
            addr,
            events: Vec::new(),
            sent: Vec::new(),
            hrrs: 0,
        }
    }

    /// A full handshake (or a resumption of `resume`, without early data).
    fn connect(seed: u64, addr: SocketAddr, mode: Mode, resume: Option<Session>) -> Self {
        let mut p = Self::new(seed, addr);
        p.ep.connect(Instant::now(), server_addr(), client_config(mode), "localhost", resume).unwrap();
        p
    }

    /// A resumption of `ticket` with `early` as 0-RTT data.
    fn connect_early(seed: u64, addr: SocketAddr, mode: Mode, ticket: Session, early: &[u8]) -> Self {
        let mut p = Self::new(seed, addr);
        p.ep.connect_with_early_data(
            Instant::now(),
            server_addr(),
            client_config(mode),
            "localhost",
            Some(ticket),
            early,
        )
        .unwrap();
        p
    }

    /// Shuttles datagrams between the client and the stack until both are quiet.
    async fn pump<S>(&mut self, stack: &mut Stack<S>)
    where
        S: Service<Secured, Response = Option<Vec<u8>>> + Clone,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        for _ in 0..20 {
            let mut quiet = true;
            while let Some(t) = self.ep.poll_transmit() {
                quiet = false;
                assert_eq!(t.destination, server_addr());
                self.sent.push(t.payload.clone());
                for a in stack.call(self.addr, t.payload).await {
                    assert_eq!(a.destination, self.addr);
                    self.deliver(&a.payload);
                }
            }
            while let Some((_, ev)) = self.ep.poll_event() {
                quiet = false;
                self.events.push(ev);
            }
            if quiet {
                return;
            }
        }
        panic!("no quiet after 20 rounds: {:?}", self.events);
    }

    fn deliver(&mut self, datagram: &[u8]) {
        if is_hello_retry_request(datagram) {
            self.hrrs += 1;
        }
        self.ep.handle_datagram(Instant::now(), server_addr(), datagram);
    }

    fn connected(&self) -> Option<bool> {
        self.events.iter().find_map(|e| match e {
            Event::Connected { resumed, .. } => Some(*resumed),
            _ => None,
        })
    }

    fn position(&self, f: impl Fn(&Event) -> bool) -> Option<usize> {
        self.events.iter().position(f)
    }

    fn app_data(&self) -> Vec<Vec<u8>> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::ApplicationData(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }

    fn ticket(&self) -> Option<Session> {
        self.ep.connection(&server_addr()).and_then(|c| c.session().cloned()).filter(Session::is_dtls13_ticket)
    }

    fn closed(&self) -> bool {
        self.events.iter().any(|e| matches!(e, Event::Closed(_)))
    }
}

/// A full DTLS 1.3 handshake from `addr` with one 1-RTT echo; returns the ticket the server
/// issued (RFC 8446 §4.6.1), after closing the association (close_notify through the stack).
async fn first_connection<S>(stack: &mut Stack<S>, mode: Mode, addr: SocketAddr) -> Session
where
    S: Service<Secured, Response = Option<Vec<u8>>> + Clone,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    let mut p = Peer::connect(100, addr, mode, None);
    p.pump(stack).await;
    assert_eq!(p.connected(), Some(false), "{mode:?}: a full handshake: {:?}", p.events);
    assert_eq!(p.hrrs, 1, "{mode:?}: the gate's cookie exchange");
    p.ep.send(server_addr(), b"first").unwrap();
    p.pump(stack).await;
    assert_eq!(p.app_data(), vec![b"first".to_vec()]);
    let ticket = p.ticket().unwrap_or_else(|| panic!("{mode:?}: no ticket: {:?}", p.events));
    assert_eq!(ticket.max_early_data_size(), Some(1024), "the ticket allows early data");
    p.ep.close(server_addr());
    p.pump(stack).await;
    assert_eq!(stack.handshake.associations().count(), 0, "closed");
    ticket
}

fn secured(seen: &Recorder) -> Vec<(Vec<u8>, bool)> {
    seen.0.lock().unwrap().iter().map(|s| (s.payload.clone(), s.early_data)).collect()
}

// ---------------------------------------------------------------------------------------------
// Accepted: no cookie exchange, delivered once as early data, answered, then 1-RTT
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn early_data_from_the_tickets_address_skips_the_cookie_and_arrives_once() {
    for (seed, mode) in [(1, Mode::Psk), (3, Mode::Certificate)] {
        let seen = Recorder::default();
        let mut stack = Stack::new(server(Some(EarlyDataConfig::default())), seen.clone(), seed);
        let ticket = first_connection(&mut stack, mode, client_addr()).await;
        seen.0.lock().unwrap().clear();
        let before = stack.cookies.stats();

        let mut p = Peer::connect_early(seed + 10, client_addr(), mode, ticket, EARLY);
        // The first datagram carries the ClientHello and the 0-RTT record (RFC 9147 §6.1):
        // the gate passes it without a cookie and the early record reaches the inner service
        // in the same call.
        let first = p.ep.poll_transmit().unwrap().payload;
        p.sent.push(first.clone());
        let answer = stack.call(p.addr, first).await;
        // The server's flight and the inner service's answer to the early request (0.5-RTT
        // data, RFC 8446 §2.3) in the exchange that answers the first datagram: the answer is
        // one epoch-3 record in a datagram of its own after the flight.
        assert!(answer.len() >= 2, "{mode:?}: flight and answer");
        assert_eq!(
            split_datagram13(&answer.last().unwrap().payload)
                .map(|r| match r {
                    Record13::Ciphertext(c) => c.header.epoch_bits,
                    Record13::Plaintext(_) => 0,
                })
                .collect::<Vec<_>>(),
            vec![3],
            "{mode:?}"
        );
        for a in answer {
            p.deliver(&a.payload);
        }
        assert_eq!(secured(&seen), vec![(EARLY.to_vec(), true)], "{mode:?}: delivered with the ClientHello");
        assert!(!stack.handshake.associations().is_established(&client_addr()), "{mode:?}: before the handshake");
        // One round trip: the client has the answer before it sends its Finished.
        assert_eq!(p.sent.len(), 1);
        while let Some((_, ev)) = p.ep.poll_event() {
            p.events.push(ev);
        }
        assert_eq!(p.app_data(), vec![EARLY.to_vec()], "{mode:?}: the answer within one round trip");
        p.pump(&mut stack).await;

        let after = stack.cookies.stats();
        assert_eq!(after.hello_retry_requests, before.hello_retry_requests, "{mode:?}: no HelloRetryRequest");
        assert_eq!(after.cookie_exempt, before.cookie_exempt + 1, "{mode:?}: {after:?}");
        assert_eq!(after.cookies_verified, before.cookies_verified, "{mode:?}: no cookie round trip");
        assert_eq!(p.hrrs, 0);
        assert_eq!(p.connected(), Some(true), "{mode:?}: resumed: {:?}", p.events);
        let accepted = p.position(|e| matches!(e, Event::EarlyDataAccepted)).expect("accepted");
        let connected = p.position(|e| matches!(e, Event::Connected { .. })).unwrap();
        assert!(accepted < connected);
        // Delivered once, whatever the rest of the handshake did.
        assert_eq!(p.app_data(), vec![EARLY.to_vec()], "{mode:?}: the answer to the early request");
        assert_eq!(stack.handshake.associations().stats().responses_dropped, 0);

        p.ep.send(server_addr(), LATER).unwrap();
        p.pump(&mut stack).await;
        assert_eq!(secured(&seen), vec![(EARLY.to_vec(), true), (LATER.to_vec(), false)], "{mode:?}");
        assert_eq!(p.app_data(), vec![EARLY.to_vec(), LATER.to_vec()]);
        let identity = stack.handshake.associations().identity(&client_addr()).unwrap();
        match mode {
            Mode::Psk => assert_eq!(identity, PeerIdentity::Psk(b"device-0rtt".to_vec())),
            Mode::Certificate => assert_eq!(identity, PeerIdentity::Anonymous),
        }
        assert_eq!(stack.handshake.associations().stats().unverified_client_hellos, 0);
    }
}

/// The exemption is by IP address (RFC 9147 §5.1 "the IP address matches"): a new source port
/// of the same host (a NAT rebinding, a restarted client) still skips the cookie.
#[tokio::test]
async fn early_data_from_another_port_of_the_same_host_is_exempt_too() {
    let seen = Recorder::default();
    let mut stack = Stack::new(server(Some(EarlyDataConfig::default())), seen.clone(), 21);
    let ticket = first_connection(&mut stack, Mode::Psk, client_addr()).await;
    seen.0.lock().unwrap().clear();
    let mut p = Peer::connect_early(22, "192.0.2.2:40001".parse().unwrap(), Mode::Psk, ticket, EARLY);
    p.pump(&mut stack).await;
    assert_eq!(p.hrrs, 0);
    assert!(p.events.iter().any(|e| matches!(e, Event::EarlyDataAccepted)));
    assert_eq!(secured(&seen), vec![(EARLY.to_vec(), true)]);
}

// ---------------------------------------------------------------------------------------------
// Another address: a HelloRetryRequest, no early data
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_same_ticket_from_another_address_gets_a_hello_retry_request_and_no_early_data() {
    let seen = Recorder::default();
    let mut stack = Stack::new(server(Some(EarlyDataConfig::default())), seen.clone(), 31);
    let ticket = first_connection(&mut stack, Mode::Psk, client_addr()).await;
    seen.0.lock().unwrap().clear();
    let hrrs = stack.hrrs();

    let elsewhere: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    let mut p = Peer::connect_early(32, elsewhere, Mode::Psk, ticket, EARLY);
    p.pump(&mut stack).await;
    assert_eq!(stack.hrrs(), hrrs + 1, "a cookie exchange");
    assert_eq!(stack.cookies.stats().cookie_exempt, 0);
    assert_eq!(p.hrrs, 1);
    // After a HelloRetryRequest the client may not offer early data (RFC 8446 §4.2.10): its
    // early data is rejected and never delivered, and the handshake still resumes the ticket.
    assert!(p.events.iter().any(|e| matches!(e, Event::EarlyDataRejected)), "{:?}", p.events);
    assert_eq!(p.connected(), Some(true), "{:?}", p.events);
    assert!(secured(&seen).is_empty(), "nothing delivered: {:?}", secured(&seen));
    // The application resends it as 1-RTT data.
    p.ep.send(server_addr(), EARLY).unwrap();
    p.pump(&mut stack).await;
    assert_eq!(secured(&seen), vec![(EARLY.to_vec(), false)]);
    assert_eq!(stack.handshake.associations().stats().endpoint.connections_created, 2);
}

// ---------------------------------------------------------------------------------------------
// The hook refuses: nothing delivered as early data, the handshake completes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_refusing_hook_delivers_nothing_early_and_the_handshake_completes() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let hook = EarlyDataConfig::with_hook(1024, move |ctx| {
        c.fetch_add(1, Ordering::SeqCst);
        assert_eq!(ctx.peer.ip(), client_addr().ip());
        assert_eq!(ctx.peer_identity, &PeerIdentity::Psk(b"device-0rtt".to_vec()));
        false
    });
    let seen = Recorder::default();
    let mut stack = Stack::new(server(Some(hook)), seen.clone(), 41);
    let ticket = first_connection(&mut stack, Mode::Psk, client_addr()).await;
    seen.0.lock().unwrap().clear();
    let hrrs = stack.hrrs();

    let mut p = Peer::connect_early(42, client_addr(), Mode::Psk, ticket, EARLY);
    p.ep.send_early_data(server_addr(), b"second early record").unwrap();
    p.pump(&mut stack).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the hook was asked once");
    // The gate's exemption does not ask the hook: still no cookie exchange.
    assert_eq!(stack.hrrs(), hrrs);
    assert!(p.events.iter().any(|e| matches!(e, Event::EarlyDataRejected)), "{:?}", p.events);
    assert_eq!(p.connected(), Some(true), "{:?}", p.events);
    assert!(secured(&seen).is_empty(), "nothing delivered: {:?}", secured(&seen));
    let skipped = stack.handshake.associations().stats();
    assert_eq!(skipped.records_to_inner, 1, "only the first connection's 1-RTT record: {skipped:?}");
    p.ep.send(server_addr(), LATER).unwrap();
    p.pump(&mut stack).await;
    assert_eq!(secured(&seen), vec![(LATER.to_vec(), false)]);
    assert_eq!(p.app_data(), vec![LATER.to_vec()]);
}

// ---------------------------------------------------------------------------------------------
// Replay of the 0-RTT ClientHello datagram
// ---------------------------------------------------------------------------------------------

/// The ticket that carried accepted early data is single-use (RFC 8446 §8.1): the same
/// ClientHello + 0-RTT datagram again, from the same address within the freshness window, goes
/// to the association it created (the gate remembers the 0-RTT hellos it passed), which does
/// not deliver the early data again; once the association is gone it gets a HelloRetryRequest
/// (from the endpoint, the ticket being spent) and no state, and from another host the gate's
/// HelloRetryRequest.
#[tokio::test]
async fn a_replayed_0rtt_client_hello_does_not_deliver_the_early_data_twice() {
    let seen = Recorder::default();
    let mut stack = Stack::new(server(Some(EarlyDataConfig::default())), seen.clone(), 51);
    let ticket = first_connection(&mut stack, Mode::Psk, client_addr()).await;
    seen.0.lock().unwrap().clear();

    let mut p = Peer::connect_early(52, client_addr(), Mode::Psk, ticket, EARLY);
    p.pump(&mut stack).await;
    assert!(p.events.iter().any(|e| matches!(e, Event::EarlyDataAccepted)));
    assert_eq!(secured(&seen), vec![(EARLY.to_vec(), true)]);
    let replay = p.sent[0].clone();
    let hrrs = stack.hrrs();
    let created = stack.handshake.associations().stats().endpoint.connections_created;

    // While the association is up: routed to it, not answered with a cookie exchange.
    let out = stack.call(client_addr(), replay.clone()).await;
    assert!(!out.iter().any(|t| is_hello_retry_request(&t.payload)), "no HelloRetryRequest: {out:?}");
    assert_eq!(stack.hrrs(), hrrs);
    for t in &out {
        p.deliver(&t.payload);
    }
    p.pump(&mut stack).await;
    assert!(!p.closed(), "{:?}", p.events);
    assert!(stack.handshake.associations().is_established(&client_addr()));
    assert_eq!(stack.handshake.associations().stats().endpoint.connections_created, created);
    p.ep.send(server_addr(), LATER).unwrap();
    p.pump(&mut stack).await;
    assert_eq!(secured(&seen), vec![(EARLY.to_vec(), true), (LATER.to_vec(), false)]);
    // Issue 15: 300 more copies (what a replaying attacker sends) are 300 repeats, and no
    // more exemptions or early data.
    for _ in 0..300 {
        let out = stack.call(client_addr(), replay.clone()).await;
        assert!(!out.iter().any(|t| is_hello_retry_request(&t.payload)));
    }
    assert!(stack.handshake.associations().is_established(&client_addr()));
    let s = stack.cookies.stats();
    assert_eq!((s.cookie_exempt, s.cookie_exempt_repeats), (1, 301), "{s:?}");

    // The early record alone again (a network duplicate of a later 0-RTT datagram): the
    // epoch-1 keys are gone once epoch-3 data arrived (RFC 9147 §5.6), so it is dropped.
    let out = stack.call(client_addr(), early_record_of(&replay)).await;
    assert!(out.is_empty());

    // After the association is gone, and from another host: the same.
    p.ep.close(server_addr());
    p.pump(&mut stack).await;
    assert_eq!(stack.handshake.associations().count(), 0);
    for from in [client_addr(), "203.0.113.9:5000".parse().unwrap()] {
        let out = stack.call(from, replay.clone()).await;
        assert!(out.len() == 1 && is_hello_retry_request(&out[0].payload), "{from}");
    }
    assert_eq!(stack.handshake.associations().count(), 0, "no state for a replay");
    assert_eq!(stack.handshake.associations().stats().endpoint.connections_created, created);
    assert_eq!(secured(&seen).iter().filter(|(_, early)| *early).count(), 1, "early data delivered once");
    // The first pass is the one exemption; the 302 copies from the client's address are
    // recognised as repeats and counted apart (issue 15: they were counted as exemptions).
    let s = stack.cookies.stats();
    assert_eq!((s.cookie_exempt, s.cookie_exempt_repeats), (1, 302), "{s:?}");
}

/// The records after the first (the ClientHello) of a DTLS 1.3 datagram: the 0-RTT record.
fn early_record_of(datagram: &[u8]) -> Vec<u8> {
    // The ClientHello is a plaintext DTLSPlaintext record with an explicit length.
    let len = usize::from(u16::from_be_bytes([datagram[11], datagram[12]]));
    let rest = datagram[13 + len..].to_vec();
    assert!(!rest.is_empty() && rest[0] & 0b1110_0000 == 0b0010_0000, "a unified-header record follows");
    rest
}

// ---------------------------------------------------------------------------------------------
// CoAP over 0-RTT: CoapRequest::early_data and deduplication
// ---------------------------------------------------------------------------------------------

/// Records (Message ID, early_data) of every request the application sees; answers 2.05.
#[derive(Clone, Default)]
struct App(Arc<Mutex<Vec<(u16, bool)>>>);

impl Service<CoapRequest> for App {
    type Response = Packet;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Packet, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: CoapRequest) -> Self::Future {
        self.0.lock().unwrap().push((req.message.header.message_id, req.early_data));
        let mut resp = req.response();
        resp.header.code = MessageClass::Response(ResponseType::Content);
        resp.payload = if req.early_data { b"early".to_vec() } else { b"1-rtt".to_vec() };
        std::future::ready(Ok(resp))
    }
}

fn coap_get(mid: u16, path: &str) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Get);
    p.header.message_id = mid;
    p.set_token(vec![0xe0, mid as u8]);
    p.add_option(CoapOption::UriPath, path.as_bytes().to_vec());
    p.to_bytes().unwrap()
}

fn coap_responses(p: &Peer) -> Vec<(u16, MessageType, String)> {
    p.app_data()
        .iter()
        .map(|d| {
            let r = Packet::from_bytes(d).unwrap();
            (r.header.message_id, r.header.get_type(), String::from_utf8_lossy(&r.payload).into_owned())
        })
        .collect()
}

#[tokio::test]
async fn coap_get_as_early_data_is_marked_and_dedup_holds() {
    let app = App::default();
    let mut stack = Stack::new(server(Some(EarlyDataConfig::default())), Coap::new(app.clone()), 61);
    let ticket = first_connection_coap(&mut stack).await;
    app.0.lock().unwrap().clear();

    // Accepted: the GET reaches the application once, marked early; its piggybacked answer
    // reaches the client. The client's retransmission of the same CON as 1-RTT data (it had
    // not seen the answer yet) gets the stored answer (RFC 7252 §4.5), not a second call.
    let get = coap_get(0x7001, "temperature");
    let mut p = Peer::connect_early(62, client_addr(), Mode::Psk, ticket, &get);
    p.pump(&mut stack).await;
    assert!(p.events.iter().any(|e| matches!(e, Event::EarlyDataAccepted)));
    assert_eq!(*app.0.lock().unwrap(), vec![(0x7001, true)]);
    assert_eq!(coap_responses(&p), vec![(0x7001, MessageType::Acknowledgement, "early".into())]);
    p.ep.send(server_addr(), &get).unwrap();
    p.pump(&mut stack).await;
    assert_eq!(*app.0.lock().unwrap(), vec![(0x7001, true)], "deduplicated");
    assert_eq!(coap_responses(&p)[1], (0x7001, MessageType::Acknowledgement, "early".into()));
    let next = p.ep.connection(&server_addr()).unwrap().session().cloned().filter(Session::is_dtls13_ticket);
    p.ep.close(server_addr());
    p.pump(&mut stack).await;
    let ticket = next.expect("the resumed connection issued a new ticket");
    app.0.lock().unwrap().clear();

    // Rejected by the DTLS layer (another address: a HelloRetryRequest): the early copy never
    // reaches the CoAP layer, so the same Message ID resent as 1-RTT data is new to it.
    let elsewhere: SocketAddr = "198.51.100.8:40000".parse().unwrap();
    let get = coap_get(0x7002, "temperature");
    let mut p = Peer::connect_early(63, elsewhere, Mode::Psk, ticket, &get);
    p.pump(&mut stack).await;
    assert!(p.events.iter().any(|e| matches!(e, Event::EarlyDataRejected)));
    assert!(app.0.lock().unwrap().is_empty());
    p.ep.send(server_addr(), &get).unwrap();
    p.pump(&mut stack).await;
    assert_eq!(*app.0.lock().unwrap(), vec![(0x7002, false)]);
    assert_eq!(coap_responses(&p), vec![(0x7002, MessageType::Acknowledgement, "1-rtt".into())]);
}

async fn first_connection_coap(stack: &mut Stack<Coap<App>>) -> Session {
    let mut p = Peer::connect(160, client_addr(), Mode::Psk, None);
    p.pump(stack).await;
    p.ep.send(server_addr(), &coap_get(0x1000, "first")).unwrap();
    p.pump(stack).await;
    assert_eq!(coap_responses(&p).len(), 1);
    let ticket = p.ticket().expect("ticket");
    p.ep.close(server_addr());
    p.pump(stack).await;
    ticket
}

// ---------------------------------------------------------------------------------------------
// Over UDP with `Server`: the tower `Client` resumes, the raw engine sends 0-RTT
// ---------------------------------------------------------------------------------------------

/// A `coaps_tower::Client` gets a DTLS 1.3 ticket (it arrives after the handshake, in a
/// NewSessionTicket), resumes with it through the full stack over UDP, and with
/// `Client::connect_early` sends its first request as 0-RTT data: accepted (no cookie
/// exchange, the application sees it as early data) or refused by the server's hook (sent
/// again as an ordinary request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_client_resumes_and_sends_its_first_request_as_early_data() {
    for accept in [true, false] {
        tower_client_round(accept).await;
    }
}

async fn tower_client_round(accept: bool) {
    async fn bounded<F: std::future::Future>(f: F) -> Result<F::Output, tokio::time::error::Elapsed> {
        tokio::time::timeout(Duration::from_secs(30), f).await
    }
    let config = server(Some(EarlyDataConfig::with_hook(1024, move |_| accept)));
    let cookies = CookieLayer::for_server(&config);
    let handshake = HandshakeLayer::builder(config).behind(&cookies).build();
    let associations = handshake.associations();
    let app = App::default();
    let service = tower::ServiceBuilder::new()
        .layer(cookies.clone())
        .layer(handshake)
        .layer(CoapLayer::new())
        .service(app.clone());
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(Server::new(socket).out_of_band(associations.clone()).serve(service, async move {
        let _ = stop_rx.await;
    }));

    let get = || {
        let mut p = Packet::new();
        p.header.code = MessageClass::Request(RequestType::Get);
        p.add_option(CoapOption::UriPath, b"t".to_vec());
        p
    };
    let first = bounded(Client::connect(addr, client_config(Mode::Psk), "localhost")).await.unwrap().unwrap();
    bounded(first.send(get())).await.unwrap().unwrap();
    // The NewSessionTicket comes after the handshake, in the answer to the client's Finished.
    let mut ticket = first.session();
    for _ in 0..100 {
        if ticket.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        ticket = first.session();
    }
    let ticket = ticket.expect("a DTLS 1.3 ticket once the NewSessionTicket arrived");
    assert!(ticket.is_dtls13_ticket());
    first.close().await;

    // A plain resumption: cookie exchange, 1-RTT request.
    let opts = ClientOptions { resume: Some(ticket.clone()), ..ClientOptions::default() };
    let again =
        bounded(Client::connect_with(addr, client_config(Mode::Psk), "localhost", opts)).await.unwrap().unwrap();
    assert!(again.info().resumed && !again.info().early_data_accepted);
    assert_eq!(bounded(again.send(get())).await.unwrap().unwrap().payload, b"1-rtt");
    let ticket2 = again.session().filter(|s| s.id != ticket.id).expect("a fresh ticket");
    again.close().await;
    assert_eq!(cookies.stats().hello_retry_requests, 2, "each connection went through the cookie exchange");
    app.0.lock().unwrap().clear();

    // The first request as 0-RTT data.
    let opts = ClientOptions { resume: Some(ticket2), ..ClientOptions::default() };
    let (early, response) = bounded(Client::connect_early(addr, client_config(Mode::Psk), "localhost", opts, get()))
        .await
        .unwrap()
        .unwrap();
    let resp = bounded(response).await.unwrap().unwrap();
    assert!(early.info().resumed);
    assert_eq!(early.info().early_data_accepted, accept);
    assert_eq!(resp.header.code, MessageClass::Response(ResponseType::Content));
    let seen = app.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].1, accept, "marked early only when accepted: {seen:?}");
    assert_eq!(resp.payload, if accept { &b"early"[..] } else { &b"1-rtt"[..] });
    let s = cookies.stats();
    assert_eq!((s.hello_retry_requests, s.cookie_exempt), (2, 1), "0-RTT from the ticket's address: {s:?}");
    assert_eq!(bounded(early.send(get())).await.unwrap().unwrap().payload, b"1-rtt");
    early.close().await;
    let _ = stop_tx.send(());
    bounded(server).await.unwrap().unwrap().unwrap();
}

/// A network duplicate of the 0-RTT ClientHello datagram while the server's flight is lost:
/// the single-use ticket is spent (RFC 8446 §8.1), so the copy is no exempt resumption any
/// more, but the gate remembers the 0-RTT hello it just passed and lets the copy through to
/// the association it created, which resends its flight (as the engine's endpoint does with a
/// retransmitted ClientHello). The client completes with its early data accepted and the
/// application runs the request once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_0rtt_client_hello_with_a_lost_flight_reaches_its_association() {
    let app = App::default();
    let mut stack = Stack::new(server(Some(EarlyDataConfig::default())), Coap::new(app.clone()), 71);
    let ticket = first_connection_coap(&mut stack).await;
    app.0.lock().unwrap().clear();
    let get = coap_get(0x7101, "temperature");
    let mut p = Peer::connect_early(72, client_addr(), Mode::Psk, ticket, &get);
    let first = p.ep.poll_transmit().unwrap().payload;
    let lost = stack.call(p.addr, first.clone()).await;
    assert!(!lost.is_empty(), "the server's flight, lost");
    assert_eq!(*app.0.lock().unwrap(), vec![(0x7101, true)]);
    let hrrs = stack.hrrs();
    let dup = stack.call(p.addr, first).await;
    assert!(!dup.iter().any(|t| is_hello_retry_request(&t.payload)), "no HelloRetryRequest for the copy");
    assert_eq!(stack.hrrs(), hrrs);
    assert!(!dup.is_empty(), "the association resends its flight");
    for t in &dup {
        p.deliver(&t.payload);
    }
    p.pump(&mut stack).await;
    assert_eq!(p.connected(), Some(true), "resumed: {:?}", p.events);
    assert!(p.events.iter().any(|e| matches!(e, Event::EarlyDataAccepted)), "{:?}", p.events);
    assert_eq!(*app.0.lock().unwrap(), vec![(0x7101, true)], "run once");
    // Its answer travelled (as 0.5-RTT data) with the lost flight: the client's CoAP
    // retransmission of the same message gets the stored answer (RFC 7252 §4.5).
    p.ep.send(server_addr(), &get).unwrap();
    p.pump(&mut stack).await;
    assert_eq!(*app.0.lock().unwrap(), vec![(0x7101, true)], "not run twice");
    let answers = coap_responses(&p);
    assert!(answers.contains(&(0x7101, MessageType::Acknowledgement, "early".into())), "{answers:?}");
}

// ---------------------------------------------------------------------------------------------
// Issue 10 (i): the pre-play of a copied 0-RTT datagram from another port of the same host
// ---------------------------------------------------------------------------------------------

/// Counts the POSTs the application runs (the demo's door); answers 2.04 Changed.
#[derive(Clone, Default)]
struct Door(Arc<AtomicUsize>);

impl Service<CoapRequest> for Door {
    type Response = Packet;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Packet, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: CoapRequest) -> Self::Future {
        let mut resp = req.response();
        if req.message.header.code == MessageClass::Request(RequestType::Post) {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            resp.header.code = MessageClass::Response(ResponseType::Changed);
            resp.payload = n.to_string().into_bytes();
        } else {
            resp.header.code = MessageClass::Response(ResponseType::Content);
            resp.payload = self.0.load(Ordering::SeqCst).to_string().into_bytes();
        }
        std::future::ready(Ok(resp))
    }
}

fn coap_post(mid: u16, path: &str) -> Vec<u8> {
    let mut p = Packet::from_bytes(&coap_get(mid, path)).unwrap();
    p.header.code = MessageClass::Request(RequestType::Post);
    p.to_bytes().unwrap()
}

/// An on-path attacker copies the honest client's first datagram (ClientHello + 0-RTT
/// `POST /actuators/door`) and delivers the copy from another port of the same host just
/// before the original (issue 10, attack (i)). The copy takes the single-use ticket; the
/// honest client's early data is then refused and it sends the same CoAP message again as
/// 1-RTT data (as `Client::connect_early` does). The door must open once.
#[tokio::test]
async fn a_pre_played_0rtt_post_from_another_port_runs_once() {
    for round in 0..100u16 {
        let door = Door::default();
        let mut stack =
            Stack::new(server(Some(EarlyDataConfig::default())), Coap::new(door.clone()), 300 + u64::from(round));
        let ticket = {
            let mut p = Peer::connect(400 + u64::from(round), client_addr(), Mode::Psk, None);
            p.pump(&mut stack).await;
            let ticket = p.ticket().expect("ticket");
            p.ep.close(server_addr());
            p.pump(&mut stack).await;
            ticket
        };
        let post = coap_post(0x5000 + round, "actuators/door");
        let mut honest = Peer::connect_early(500 + u64::from(round), client_addr(), Mode::Psk, ticket, &post);
        let first = honest.ep.poll_transmit().unwrap().payload;
        let attacker: SocketAddr = "192.0.2.2:40999".parse().unwrap();
        let _ = stack.call(attacker, first.clone()).await;
        honest.sent.push(first.clone());
        for a in stack.call(client_addr(), first).await {
            honest.deliver(&a.payload);
        }
        honest.pump(&mut stack).await;
        if !honest.events.iter().any(|e| matches!(e, Event::EarlyDataAccepted)) {
            // Refused: the same message again as 1-RTT data.
            honest.ep.send(server_addr(), &post).unwrap();
            honest.pump(&mut stack).await;
        }
        // The ticket is spent by the copy: a full handshake.
        assert!(honest.connected().is_some(), "{:?}", honest.events);
        assert_eq!(door.0.load(Ordering::SeqCst), 1, "round {round}: the door ran once");
    }
}
