//! DTLS 1.3 through the Tower stack: `CookieLayer::for_server` answers a DTLS 1.3 ClientHello
//! with a stateless HelloRetryRequest (never a HelloVerifyRequest), and
//! `HandshakeLayer::builder(..).behind(&cookies)` opens the cookie of the second ClientHello
//! with the shared secrets. Shown with our `Client` (PSK and certificates) and the raw engine,
//! a DTLS 1.2 client on the same server, a spoofed DTLS 1.3 ClientHello flood that creates no
//! state, and the wolfSSL 5.9.4 example client (skipped with a notice when it is not built,
//! unless `COAPS_REQUIRE_PEERS=1`).

use coaps_test_support::datagram as datagram_support;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use coaps_dtls::CipherSuite;
use coaps_dtls::cert::{self, WebPkiVerifier};
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::crypto::rustcrypto::EcdsaP256SigningKey;
use coaps_dtls::{
    CertifiedKey, ClientConfig, DtlsVersion, Endpoint, Event, PeerIdentity, PeerVerifier, Psk, ServerConfig, StaticPsks,
};
use coaps_tower::handshake::Handshake;
use coaps_tower::{
    BoxError, Client, CoapLayer, CoapRequest, CookieLayer, CookieVerified, Datagram, HandshakeLayer, Secured, Server,
    Transmits,
};
use datagram_support::{Opts, TestServer, bounded};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tower::{Service, ServiceBuilder, ServiceExt};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../coaps-dtls/tests/data");
const PSK_ID: &str = "device-13";
const PSK_KEY: &[u8] = b"0123456789abcdef";

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DATA}/{name}")).expect("test data")
}

fn server_cert() -> CertifiedKey {
    let sk = cert::load_private_key_pem(&data("server.key")).unwrap();
    let bytes: [u8; 32] = sk.to_bytes().into();
    let key = Arc::new(EcdsaP256SigningKey::from_bytes(&bytes).unwrap());
    CertifiedKey { chain: cert::load_certs_pem(&data("server.crt")).unwrap(), key }
}

fn psk() -> Psk {
    Psk::new(PSK_ID, PSK_KEY.to_vec()).unwrap()
}

/// A dual-version (1.2 + 1.3, the default) server with a PSK and a certificate, plus `extra`
/// PSKs.
fn dual_server(extra: Vec<Psk>) -> Arc<ServerConfig> {
    let mut psks = vec![psk()];
    psks.extend(extra);
    Arc::new(ServerConfig {
        psks: Some(Arc::new(StaticPsks(psks))),
        cert: Some(server_cert()),
        ..ServerConfig::default()
    })
}

fn psk_client(version: DtlsVersion) -> Arc<ClientConfig> {
    Arc::new(ClientConfig { version, psk: Some(psk()), ..ClientConfig::default() })
}

fn cert_client(version: DtlsVersion) -> Arc<ClientConfig> {
    let roots = cert::load_certs_pem(&data("ca.crt")).unwrap();
    let verifier = PeerVerifier::WebPki(Arc::new(WebPkiVerifier::new(&roots).unwrap()));
    Arc::new(ClientConfig { version, verifier: Some(verifier), ..ClientConfig::default() })
}

fn is_13_suite(s: CipherSuite) -> bool {
    [
        CipherSuite::TLS_CHACHA20_POLY1305_SHA256,
        CipherSuite::TLS_AES_128_GCM_SHA256,
        CipherSuite::TLS_AES_128_CCM_8_SHA256,
    ]
    .contains(&s)
}

fn get(path: &str) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Get);
    p.add_option(CoapOption::UriPath, path.as_bytes().to_vec());
    p
}

/// Whether `datagram` is a plaintext (epoch 0) record holding a ServerHello-typed handshake
/// message: the HelloRetryRequest (RFC 8446 §4.1.4 gives it the ServerHello type).
fn is_hello_retry_request(datagram: &[u8]) -> bool {
    datagram.len() > 13 + 12 + 34 && datagram[0] == 22 && datagram[3..5] == [0, 0] && datagram[13] == 2
        // The HelloRetryRequest random (RFC 8446 §4.1.3).
        && datagram[13 + 12 + 2..13 + 12 + 6] == [0xcf, 0x21, 0xad, 0x74]
}

// ---------------------------------------------------------------------------------------------
// CoAP over DTLS 1.3: Server + CookieLayer + HandshakeLayer + CoapLayer + app
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coap_clients_of_both_versions_through_the_full_stack() {
    let config = dual_server(Vec::new());
    let cookies = CookieLayer::for_server(&config);
    let handshake = HandshakeLayer::builder(config).behind(&cookies).build();
    let associations = handshake.associations();
    let app = tower::service_fn(|req: CoapRequest| async move {
        let mut response = req.response();
        response.header.code = MessageClass::Response(ResponseType::Content);
        let who = match &req.identity {
            PeerIdentity::Psk(id) => String::from_utf8_lossy(id).into_owned(),
            PeerIdentity::Anonymous => "anonymous".into(),
            other => format!("{other:?}"),
        };
        response.payload = format!("hello {who}").into_bytes();
        Ok::<_, Infallible>(response)
    });
    let service = ServiceBuilder::new().layer(cookies.clone()).layer(handshake).layer(CoapLayer::new()).service(app);
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(Server::new(socket).out_of_band(associations.clone()).serve(service, async move {
        let _ = stop_rx.await;
    }));

    let cases = [
        ("DTLS 1.3 PSK", psk_client(DtlsVersion::Dtls13), true, format!("hello {PSK_ID}")),
        ("DTLS 1.3 certificate", cert_client(DtlsVersion::Dtls13), true, "hello anonymous".to_owned()),
        ("DTLS 1.2 PSK", psk_client(DtlsVersion::Dtls12), false, format!("hello {PSK_ID}")),
        ("DTLS 1.2 certificate", cert_client(DtlsVersion::Dtls12), false, "hello anonymous".to_owned()),
    ];
    for (what, client_config, v13, want) in cases {
        let client = bounded(30, what, Client::connect(addr, client_config, "localhost"))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(is_13_suite(client.info().suite), v13, "{what}: negotiated {:?}", client.info().suite);
        for _ in 0..3 {
            let resp = bounded(30, what, client.send(get("hello"))).await.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(resp.header.code, MessageClass::Response(ResponseType::Content), "{what}");
            assert_eq!(String::from_utf8_lossy(&resp.payload), want, "{what}");
        }
        client.close().await;
    }
    let s = cookies.stats();
    // Every 1.3 client went through exactly one stateless HelloRetryRequest, every 1.2 client
    // through one HelloVerifyRequest, and all four came back with a valid cookie.
    assert_eq!((s.hello_retry_requests, s.hello_verify_requests, s.cookies_verified), (2, 2, 4), "{s:?}");
    assert_eq!(s.cookies_rejected, 0, "{s:?}");
    let h = associations.stats();
    assert_eq!(h.endpoint.connections_created, 4, "{h:?}");
    assert_eq!(h.unverified_client_hellos, 0, "{h:?}");
    assert_eq!(h.endpoint.hello_retry_requests, 0, "the endpoint never had to answer an unproven 1.3 ClientHello");
    let _ = stop_tx.send(());
    bounded(10, "shutdown", server).await.unwrap().unwrap();
}

// ---------------------------------------------------------------------------------------------
// The raw engine as a DTLS 1.3 client of the datagram-level stack (cookie → handshake → echo)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_engine_dtls13_clients_psk_and_certificate() {
    let config = dual_server(vec![datagram_support::psk()]);
    let mut server = TestServer::start_with(config, Opts::default(), tower::layer::util::Identity::new()).await;
    for (seed, (what, config)) in
        [("PSK", psk_client(DtlsVersion::Dtls13)), ("certificate", cert_client(DtlsVersion::Dtls13))]
            .into_iter()
            .enumerate()
    {
        let mut c = bounded(
            30,
            what,
            datagram_support::Client::connect_with(server.addr, seed as u64 + 1, config, Duration::from_secs(20)),
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        let conn = c.endpoint.connection(&server.addr).unwrap();
        assert!(is_13_suite(conn.suite().unwrap()), "{what}: {:?}", conn.suite());
        c.request(b"over 1.3", 5, Duration::from_secs(2)).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    // A 1.2 client of the same server still works (HelloVerifyRequest path).
    let mut c12 = datagram_support::Client::connect(server.addr, 9, Duration::from_secs(20)).await.unwrap();
    c12.request(b"over 1.2", 5, Duration::from_secs(2)).await.unwrap();
    let p = &server.probe;
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(p.client_hellos_unmarked.load(SeqCst), 0, "nothing unproven got past the cookie layer");
    assert_eq!(p.client_hellos_marked.load(SeqCst), 3);
    let s = server.cookies.stats();
    assert_eq!((s.hello_retry_requests, s.hello_verify_requests), (2, 1), "{s:?}");
    assert_eq!(server.associations.count(), 3);
    server.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Spoofed DTLS 1.3 ClientHellos: stateless answers, no association
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Echo;
impl Service<Secured> for Echo {
    type Response = Option<Vec<u8>>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Option<Vec<u8>>, BoxError>>;
    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, s: Secured) -> Self::Future {
        std::future::ready(Ok(Some(s.payload)))
    }
}

/// The first ClientHello of a DTLS 1.3 engine client.
fn client_hello13(seed: u64, server: SocketAddr) -> (Endpoint, Vec<u8>) {
    let mut client = Endpoint::client(SeededRng::from_seed_u64(seed));
    client.connect(Instant::now(), server, psk_client(DtlsVersion::Dtls13), "localhost", None).unwrap();
    let ch = client.poll_transmit().unwrap().payload;
    (client, ch)
}

async fn call<S>(svc: &mut S, d: Datagram) -> Transmits
where
    S: Service<Datagram, Response = Transmits>,
    S::Error: std::fmt::Debug,
{
    svc.ready().await.unwrap().call(d).await.unwrap()
}

#[tokio::test]
async fn spoofed_dtls13_client_hellos_create_no_association() {
    let config = dual_server(Vec::new());
    let cookies = CookieLayer::for_server_with_rng(&config, SeededRng::from_seed_u64(5));
    let handshake = HandshakeLayer::builder(config).behind(&cookies).rng(SeededRng::from_seed_u64(6)).build();
    let (inner, _worker) = handshake.pair(Echo);
    let mut direct: Handshake<Echo> = inner.clone();
    let mut stack = tower::Layer::layer(&cookies, inner);
    let server_addr: SocketAddr = "192.0.2.1:5684".parse().unwrap();

    // A flood of cookie-less DTLS 1.3 ClientHellos from spoofed addresses: each gets one
    // stateless HelloRetryRequest (no HelloVerifyRequest), within the 3x amplification limit
    // (RFC 9147 §5.1), and nothing reaches the handshake layer.
    const SPOOFED: u16 = 2000;
    let (_, ch1) = client_hello13(1, server_addr);
    for i in 0..SPOOFED {
        let peer = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 40000 + i));
        let out = call(&mut stack, Datagram::new(peer, ch1.clone())).await;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].destination, peer);
        assert!(is_hello_retry_request(&out[0].payload), "not an HRR: {:02x?}", &out[0].payload[..20]);
        assert!(out[0].payload.len() <= 3 * ch1.len());
    }
    let h = handshake.associations().stats();
    assert_eq!(handshake.associations().count(), 0);
    assert_eq!(h.endpoint.datagrams_received, 0, "the handshake layer never saw the flood: {h:?}");
    let s = cookies.stats();
    assert_eq!((s.hello_retry_requests, s.hello_verify_requests), (u64::from(SPOOFED), 0), "{s:?}");

    // A real client: its cookie-bearing second ClientHello, replayed from another address, is
    // refused (the cookie binds the address) and creates nothing.
    let client_addr: SocketAddr = "192.0.2.2:40000".parse().unwrap();
    let (mut client, ch1) = client_hello13(2, server_addr);
    let hrr = call(&mut stack, Datagram::new(client_addr, ch1)).await;
    client.handle_datagram(Instant::now(), server_addr, &hrr[0].payload);
    let ch2 = client.poll_transmit().unwrap().payload;
    let other: SocketAddr = "192.0.2.3:40000".parse().unwrap();
    let out = call(&mut stack, Datagram::new(other, ch2.clone())).await;
    assert!(out.len() == 1 && is_hello_retry_request(&out[0].payload), "a fresh HRR for the replay");
    assert_eq!(cookies.stats().cookies_rejected, 1);
    assert_eq!(handshake.associations().count(), 0);

    // The endpoint behind the cookie layer refuses a DTLS 1.3 ClientHello without a valid
    // cookie even when a (forged) mark of the right cookie layer says it was proven: a
    // stateless HRR, no association. Unmarked, it is refused loudly (the cookie layer is not
    // in front on that path).
    let forged = Datagram {
        cookie: Some(CookieVerified { rtt_sample: Some(Duration::ZERO), gate: cookies.gate_id() }),
        ..Datagram::new("192.0.2.4:40000".parse().unwrap(), client_hello13(3, server_addr).1)
    };
    let out = call(&mut direct, forged).await;
    assert!(out.len() == 1 && is_hello_retry_request(&out[0].payload));
    let unmarked = Datagram::new("192.0.2.5:40000".parse().unwrap(), client_hello13(4, server_addr).1);
    let e = direct.ready().await.unwrap().call(unmarked).await.unwrap_err();
    assert!(e.to_string().contains("is not in front of it"), "{e}");
    let h = handshake.associations().stats();
    assert_eq!(handshake.associations().count(), 0);
    assert_eq!(h.endpoint.connections_created, 0, "{h:?}");
    assert_eq!(h.unverified_client_hellos, 1, "{h:?}");

    // The genuine client from its own address completes and is echoed.
    let mut pending = call(&mut stack, Datagram::new(client_addr, ch2)).await;
    let mut echoed = None;
    for _ in 0..10 {
        for t in std::mem::take(&mut pending) {
            client.handle_datagram(Instant::now(), server_addr, &t.payload);
        }
        while let Some((_, ev)) = client.poll_event() {
            match ev {
                Event::Connected { .. } => client.send(server_addr, b"genuine").unwrap(),
                Event::ApplicationData(d) => echoed = Some(d),
                Event::Closed(r) => panic!("closed: {r:?}"),
                e @ (Event::EarlyData(_) | Event::EarlyDataAccepted | Event::EarlyDataRejected) => {
                    panic!("no early data was offered: {e:?}")
                }
                _ => {}
            }
        }
        while let Some(t) = client.poll_transmit() {
            pending.extend(call(&mut stack, Datagram::new(client_addr, t.payload)).await);
        }
    }
    assert_eq!(echoed.as_deref(), Some(&b"genuine"[..]));
    assert_eq!(handshake.associations().count(), 1);
    assert!(handshake.associations().is_established(&client_addr));
}

/// The handshake layer with its own internal gate (no cookie layer in front) is version-aware
/// too: the same HelloRetryRequest, and its endpoint opens the cookie.
#[tokio::test]
async fn internal_gate_answers_dtls13_with_hello_retry_request() {
    let handshake =
        HandshakeLayer::builder(dual_server(Vec::new())).rng(SeededRng::from_seed_u64(8)).own_gate().build();
    let (mut svc, _worker) = handshake.pair(Echo);
    let server_addr: SocketAddr = "192.0.2.1:5684".parse().unwrap();
    let client_addr: SocketAddr = "192.0.2.9:40000".parse().unwrap();
    let (mut client, ch1) = client_hello13(7, server_addr);
    let mut pending = call(&mut svc, Datagram::new(client_addr, ch1)).await;
    assert!(pending.len() == 1 && is_hello_retry_request(&pending[0].payload));
    let mut connected = false;
    for _ in 0..10 {
        for t in std::mem::take(&mut pending) {
            client.handle_datagram(Instant::now(), server_addr, &t.payload);
        }
        while let Some((_, ev)) = client.poll_event() {
            connected |= matches!(ev, Event::Connected { .. });
        }
        while let Some(t) = client.poll_transmit() {
            pending.extend(call(&mut svc, Datagram::new(client_addr, t.payload)).await);
        }
    }
    assert!(connected);
    let s = handshake.associations().stats();
    assert_eq!(s.cookie.unwrap().hello_retry_requests, 1, "{s:?}");
    assert!(handshake.associations().is_established(&client_addr));
}

// ---------------------------------------------------------------------------------------------
// The wolfSSL 5.9.4 example client (DTLS 1.3) through the Tower stack
// ---------------------------------------------------------------------------------------------

/// The wolfSSL build, if any: `$COAPS_WOLFSSL_DIR`, `$COAPS_PEERS_DIR/wolfssl-5.9.4`,
/// `<repo>/target/peers/wolfssl-5.9.4` (as `tests/common/wolfssl.rs` of the repository root).
/// Missing: a skip notice, or a panic with `COAPS_REQUIRE_PEERS=1`.
fn wolfssl_dir() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(d) = std::env::var_os("COAPS_WOLFSSL_DIR") {
        candidates.push(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("COAPS_PEERS_DIR") {
        candidates.push(PathBuf::from(d).join("wolfssl-5.9.4"));
    }
    candidates.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/peers/wolfssl-5.9.4"));
    if let Some(d) = candidates.iter().find(|d| d.join("examples/client/client").is_file()) {
        return Some(d.clone());
    }
    let how = "build it with `bash scripts/ci-peers.sh` or set COAPS_WOLFSSL_DIR";
    if std::env::var("COAPS_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!(
            "the wolfSSL 5.9.4 example client is not built but COAPS_REQUIRE_PEERS=1: {how}; searched {candidates:?}"
        );
    }
    eprintln!("skipping: wolfSSL 5.9.4 example client not built ({how}); searched {candidates:?}");
    None
}

/// Runs the wolfSSL DTLS 1.3 client against `addr` (blocking, bounded) and returns its
/// exit success, stdout and stderr.
fn run_wolfssl_client(root: &PathBuf, addr: SocketAddr, args: &[String]) -> (bool, String, String) {
    run_wolfssl_client_mtu(root, addr, None, args)
}

/// [`run_wolfssl_client`] with `-u MTU` (the client fragments to it).
fn run_wolfssl_client_mtu(
    root: &PathBuf,
    addr: SocketAddr,
    mtu: Option<u16>,
    args: &[String],
) -> (bool, String, String) {
    let mut child = Command::new(root.join("examples/client/client"))
        .current_dir(root)
        .arg("-u")
        .args(mtu.map(|m| m.to_string()))
        .args(["-v", "4", "-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the wolfSSL client");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wolfssl_dtls13_client_through_cookie_and_handshake_layers() {
    let Some(root) = wolfssl_dir() else { return };
    // The wolfSSL client's 1.3 PSK: identity `Client_identity` + the suite's last 6 characters,
    // key 0123456789abcdef x 2 as hex (wolfssl/test.h).
    let wolf_key: Vec<u8> = (0..32).map(|i| [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef][i % 8]).collect();
    let wolf_psk = Psk::new("Client_identitySHA256", wolf_key).unwrap();
    let mut server =
        TestServer::start_with(dual_server(vec![wolf_psk]), Opts::default(), tower::layer::util::Identity::new()).await;
    let ca = format!("{DATA}/ca.crt");
    let runs: [(&str, Vec<String>); 2] = [
        // Certificate, P-256 key share offered (-Y): the HRR is only the cookie's.
        ("certificate", vec!["-A".into(), ca, "-x".into(), "-Y".into()]),
        // External PSK (psk_dhe_ke).
        ("PSK", vec!["-s".into(), "-Y".into()]),
    ];
    for (what, args) in runs {
        let addr = server.addr;
        let r = root.clone();
        let (ok, stdout, stderr) =
            tokio::task::spawn_blocking(move || run_wolfssl_client(&r, addr, &args)).await.unwrap();
        let dump = format!("--- stdout\n{stdout}\n--- stderr (tail)\n{}", tail(&stderr, 40));
        assert!(ok, "{what}: the wolfSSL client failed through the Tower stack\n{dump}");
        assert!(stdout.contains("SSL version is DTLSv1.3"), "{what}: not DTLS 1.3\n{dump}");
        assert!(stdout.contains("echo:hello wolfssl!"), "{what}: no echo\n{dump}");
        // The debug build logs the HelloRetryRequest and its cookie.
        if stderr.contains("wolfSSL Entering") {
            assert!(stderr.contains("HelloRetryRequest format"), "{what}: no HRR\n{dump}");
            assert!(stderr.contains("Cookie extension received"), "{what}: no cookie\n{dump}");
        } else {
            eprintln!("note: the wolfSSL build logs nothing on stderr; the HRR is shown by the gate's counters only");
        }
    }
    let s = server.cookies.stats();
    assert_eq!(s.hello_verify_requests, 0, "never a HelloVerifyRequest in 1.3: {s:?}");
    assert!(s.hello_retry_requests >= 2 && s.cookies_verified >= 2, "{s:?}");
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(server.probe.client_hellos_unmarked.load(SeqCst), 0);
    assert!(server.app_calls() >= 2);
    server.shutdown().await.unwrap();
}

/// RFC 9147 §5.1: a wolfSSL client with a 300-byte MTU fragments its second ClientHello (the
/// one carrying our cookie); the cookie layer reassembles it in its bounded area and gates the
/// whole hello, so a small-MTU DTLS 1.3 client reaches a Tower server too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wolfssl_dtls13_client_with_mtu_300_through_the_cookie_layer() {
    let Some(root) = wolfssl_dir() else { return };
    let mut config = (*dual_server(Vec::new())).clone();
    config.common.mtu = 300;
    let mut server =
        TestServer::start_with(Arc::new(config), Opts::default(), tower::layer::util::Identity::new()).await;
    let args: Vec<String> = vec!["-A".into(), format!("{DATA}/ca.crt"), "-x".into(), "-Y".into()];
    let addr = server.addr;
    let r = root.clone();
    let (ok, stdout, stderr) =
        tokio::task::spawn_blocking(move || run_wolfssl_client_mtu(&r, addr, Some(300), &args)).await.unwrap();
    let dump = format!("--- stdout\n{stdout}\n--- stderr (tail)\n{}", tail(&stderr, 40));
    assert!(ok, "the wolfSSL client (MTU 300) failed through the Tower stack\n{dump}");
    assert!(stdout.contains("SSL version is DTLSv1.3"), "not DTLS 1.3\n{dump}");
    assert!(stdout.contains("echo:hello wolfssl!"), "no echo\n{dump}");
    let s = server.cookies.stats();
    assert!(s.hellos_reassembled >= 1, "the second ClientHello came in fragments: {s:?}");
    assert!(s.hello_retry_requests >= 1 && s.cookies_verified >= 1, "{s:?}");
    assert_eq!(s.hello_verify_requests, 0, "{s:?}");
    server.shutdown().await.unwrap();
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// The gate and the endpoint agree; the gate follows the server's versions
// ---------------------------------------------------------------------------------------------

/// The gate in front answers with byte for byte the HelloRetryRequest an endpoint sharing the
/// same secrets sends, and a second ClientHello answering it opens at both.
#[test]
fn gate_and_endpoint_send_the_same_hello_retry_request() {
    use coaps_dtls::gate::{Gate, MAX_ANSWER_LEN, Proof, Verdict};
    let config = dual_server(Vec::new());
    let now = Instant::now();
    let mut rng = SeededRng::from_seed_u64(11);
    let gate = Gate::in_front(&config, now, &mut rng);
    let mut endpoint =
        Endpoint::server_behind_gate(config.clone(), SeededRng::from_seed_u64(12), now, gate.keys13().clone());
    let server_addr: SocketAddr = "192.0.2.1:5684".parse().unwrap();
    let peer: SocketAddr = "192.0.2.20:40000".parse().unwrap();
    let (mut client, ch1) = client_hello13(13, server_addr);
    let mut out = [0u8; MAX_ANSWER_LEN];

    let verdict = gate.check(now, peer, &ch1, &mut out, &mut rng);
    endpoint.handle_datagram(now, peer, &ch1);
    let from_endpoint = endpoint.poll_transmit().expect("the endpoint answers with an HRR").payload;
    assert_eq!(endpoint.connection_count(), 0);
    let Verdict::HelloRetryRequest { len, rejected: false } = verdict else { panic!("{verdict:?}") };
    assert_eq!(out[..len], from_endpoint[..]);

    client.handle_datagram(now, server_addr, &out[..len]);
    let ch2 = client.poll_transmit().unwrap().payload;
    let verdict = gate.check(now, peer, &ch2, &mut out, &mut rng);
    assert!(matches!(verdict, Verdict::Proven(Proof::Cookie13 { .. })), "{verdict:?}");
    endpoint.handle_datagram(now, peer, &ch2);
    assert_eq!(endpoint.connection_count(), 1, "the endpoint opened the shared cookie");
    // A 1.2 ClientHello gets the 1.2 answer from the same gate.
    let mut c12 = Endpoint::client(SeededRng::from_seed_u64(14));
    c12.connect(now, server_addr, psk_client(DtlsVersion::Dtls12), "localhost", None).unwrap();
    let ch12 = c12.poll_transmit().unwrap().payload;
    assert!(matches!(gate.check(now, peer, &ch12, &mut out, &mut rng), Verdict::HelloVerifyRequest { .. }));
}

/// The Tower `CookieLayer` and an `Endpoint` whose secrets were drawn from the same seed answer
/// the same DTLS 1.2 and DTLS 1.3 ClientHellos with the same bytes: one gate, two users.
#[tokio::test]
async fn cookie_layer_and_endpoint_answer_byte_for_byte() {
    let config = dual_server(Vec::new());
    assert!(config.cookie.is_some(), "the endpoint runs its cookie exchange");
    let cookies = CookieLayer::for_server_with_rng(&config, SeededRng::from_seed_u64(31));
    let t0 = Instant::now();
    let mut endpoint = Endpoint::server(config.clone(), SeededRng::from_seed_u64(31), t0);
    let mut svc = tower::Layer::layer(
        &cookies,
        tower::service_fn(|_: Datagram| async { Ok::<Transmits, Infallible>(Transmits::new()) }),
    );
    let server_addr: SocketAddr = "192.0.2.1:5684".parse().unwrap();
    let mut c12 = Endpoint::client(SeededRng::from_seed_u64(32));
    c12.connect(t0, server_addr, psk_client(DtlsVersion::Dtls12), "localhost", None).unwrap();
    let ch12 = c12.poll_transmit().unwrap().payload;
    let (_, ch13) = client_hello13(33, server_addr);
    // Cookies carry their issue time in milliseconds since the secret was drawn: half a
    // millisecond of slack absorbs the microseconds between the two constructions.
    let at = t0 + Duration::from_micros(250_500);
    for (i, ch) in [ch12, ch13].into_iter().enumerate() {
        let peer = SocketAddr::from(([192, 0, 2, 40], 40000 + i as u16));
        let d = Datagram { received_at: at, ..Datagram::new(peer, ch.clone()) };
        let from_layer = call(&mut svc, d).await;
        endpoint.handle_datagram(at, peer, &ch);
        let from_endpoint = endpoint.poll_transmit().expect("the endpoint answers");
        assert_eq!(from_layer.len(), 1);
        assert_eq!(from_layer[0].payload, from_endpoint.payload, "ClientHello {i}");
        assert_eq!(from_layer[0].destination, from_endpoint.destination);
    }
    let s = cookies.stats();
    assert_eq!((s.hello_verify_requests, s.hello_retry_requests), (1, 1));
}

/// A 1.3-only server's gate drops DTLS 1.2 ClientHellos (as its endpoint would); a 1.2-only
/// server's gate answers everything with a HelloVerifyRequest.
#[tokio::test]
async fn gate_follows_the_server_versions() {
    let server_addr: SocketAddr = "192.0.2.1:5684".parse().unwrap();
    let peer: SocketAddr = "192.0.2.21:40000".parse().unwrap();
    let (_, ch13) = client_hello13(15, server_addr);
    let mut c12 = Endpoint::client(SeededRng::from_seed_u64(16));
    c12.connect(Instant::now(), server_addr, psk_client(DtlsVersion::Dtls12), "localhost", None).unwrap();
    let ch12 = c12.poll_transmit().unwrap().payload;
    let only = |v12: bool, v13: bool| {
        let mut c = (*dual_server(Vec::new())).clone();
        (c.dtls12, c.dtls13) = (v12, v13);
        Arc::new(c)
    };
    let is_hvr = |d: &[u8]| d.len() > 13 && d[0] == 22 && d[13] == 3;

    let cookies = CookieLayer::for_server(&only(false, true));
    let mut svc = tower::Layer::layer(
        &cookies,
        tower::service_fn(|_: Datagram| async { Ok::<Transmits, Infallible>(Transmits::new()) }),
    );
    // A DTLS 1.2-only ClientHello gets one fatal protocol_version alert (RFC 8446 App. D.2),
    // smaller than the ClientHello; nothing is kept.
    let answer = call(&mut svc, Datagram::new(peer, ch12.clone())).await;
    assert_eq!(answer.len(), 1);
    assert_eq!(
        &answer[0].payload[..],
        &[21, 254, 253, 0, 0, ch12[5], ch12[6], ch12[7], ch12[8], ch12[9], ch12[10], 0, 2, 2, 70]
    );
    assert!(answer[0].payload.len() < ch12.len());
    assert!(is_hello_retry_request(&call(&mut svc, Datagram::new(peer, ch13.clone())).await[0].payload));
    assert_eq!(cookies.stats().dropped, 0);

    let cookies = CookieLayer::for_server(&only(true, false));
    let mut svc = tower::Layer::layer(
        &cookies,
        tower::service_fn(|_: Datagram| async { Ok::<Transmits, Infallible>(Transmits::new()) }),
    );
    assert!(is_hvr(&call(&mut svc, Datagram::new(peer, ch12)).await[0].payload));
    assert!(is_hvr(&call(&mut svc, Datagram::new(peer, ch13)).await[0].payload));
    assert_eq!(cookies.stats().hello_retry_requests, 0);
}

/// A server and a client that share no cipher suite: the client is told at once with a fatal
/// handshake_failure, never left retransmitting into silence. DTLS 1.3 to a 1.3-only server:
/// the cookie gate answers statelessly (RFC 8446 §4.1.1, §6.2); DTLS 1.2: the handshake does
/// after the cookie exchange (RFC 5246 §7.4.1.3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_common_cipher_suite_ends_in_handshake_failure_at_once() {
    use coaps_dtls::suites::ALL_SUITES;
    let pick = |s: CipherSuite| ALL_SUITES.iter().copied().filter(|x| x.suite == s).collect::<Vec<_>>();
    let cases = [
        (
            DtlsVersion::Dtls13,
            (false, true),
            (vec![], vec![CipherSuite::TLS_CHACHA20_POLY1305_SHA256]),
            (vec![], vec![CipherSuite::TLS_AES_128_CCM_8_SHA256]),
        ),
        (
            DtlsVersion::Dtls12,
            (true, false),
            (pick(CipherSuite::TLS_PSK_WITH_AES_128_CCM_8), vec![]),
            (pick(CipherSuite::TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256), vec![]),
        ),
    ];
    for (version, (v12, v13), server_suites, client_suites) in cases {
        let mut config = (*dual_server(Vec::new())).clone();
        (config.dtls12, config.dtls13) = (v12, v13);
        (config.common.suites, config.common.suites13) = server_suites;
        let config = Arc::new(config);
        let cookies = CookieLayer::for_server(&config);
        let handshake = HandshakeLayer::builder(config).behind(&cookies).build();
        let associations = handshake.associations();
        let echo = tower::service_fn(|s: Secured| async move { Ok::<_, Infallible>(Some(s.payload)) });
        let service = ServiceBuilder::new().layer(cookies.clone()).layer(handshake).service(echo);
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(Server::new(socket).out_of_band(associations.clone()).serve(service, async move {
            let _ = stop_rx.await;
        }));
        let mut client = (*psk_client(version)).clone();
        (client.common.suites, client.common.suites13) = client_suites;
        let start = Instant::now();
        let err = match bounded(30, "no common suite", Client::connect(addr, Arc::new(client), "localhost")).await {
            Ok(_) => panic!("{version:?}: connected without a common suite"),
            Err(e) => e,
        };
        let took = start.elapsed();
        let text = format!("{err:?}");
        assert!(text.contains("HandshakeFailure"), "{version:?}: {text}");
        assert!(took < Duration::from_secs(2), "{version:?}: told after {took:?}, not at once");
        if version == DtlsVersion::Dtls13 {
            // Stateless: no association, one alert from the gate.
            assert_eq!(cookies.stats().hello_retry_requests, 0);
            assert_eq!(associations.stats().endpoint.connections_created, 0);
        }
        let _ = stop_tx.send(());
        bounded(10, "shutdown", server).await.unwrap().unwrap();
    }
}
