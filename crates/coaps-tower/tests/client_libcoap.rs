//! The client against real peers: libcoap 4.3.1's example servers (`coap-server-openssl`,
//! `coap-server-gnutls`), with PSK and with certificates (mutual authentication), including a
//! separate response (`/async`). Skipped with a printed reason when a program is missing,
//! unless `COAPS_REQUIRE_PEERS=1`.

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use coaps_dtls::cert::{self, WebPkiVerifier};
use coaps_dtls::crypto::rustcrypto::EcdsaP256SigningKey;
use coaps_dtls::{CertifiedKey, ClientConfig, PeerIdentity, PeerVerifier, Psk};
use coaps_tower::{Client, ClientError, ClientOptions, TransmissionParams};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../coaps-dtls/tests/data");
/// libcoap's `-k` takes the key as ASCII.
const KEY: &str = "secretPSK";

/// Kills the server by PID when the test ends, however it ends.
struct ServerGuard {
    child: Child,
    coaps: SocketAddr,
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn program_available(name: &str) -> bool {
    let found = Command::new(name).arg("-?").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        if std::env::var("COAPS_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("{name} is required (COAPS_REQUIRE_PEERS=1) but was not found");
        }
        eprintln!("SKIPPED: {name} not found (install libcoap3-bin; set COAPS_REQUIRE_PEERS=1 to make this fatal)");
    }
    found
}

/// A port P with P and P+1 free for both UDP and TCP (libcoap listens on coap/coap+tcp at P
/// and coaps/coaps+tcp at P+1).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let Ok(s) = UdpSocket::bind("127.0.0.1:0") else { continue };
        let p = s.local_addr().unwrap().port();
        if p == u16::MAX {
            continue;
        }
        let ok = UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
            && TcpListener::bind(("127.0.0.1", p)).is_ok()
            && TcpListener::bind(("127.0.0.1", p + 1)).is_ok();
        if ok {
            return p;
        }
    }
    panic!("no free port pair")
}

/// Starts `program` with `args` on a free port pair; waits (bounded) until its DTLS port is
/// bound.
fn start(program: &str, args: &[&str]) -> ServerGuard {
    for _attempt in 0..3 {
        let port = free_port_pair();
        let child = Command::new(program)
            .args(["-A", "127.0.0.1", "-p", &port.to_string(), "-v", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let mut guard = ServerGuard { child, coaps: SocketAddr::from(([127, 0, 0, 1], port + 1)) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = guard.child.try_wait() {
                break; // exited (port taken in between?): try another port
            }
            // Bound by the server: our bind fails.
            if UdpSocket::bind(guard.coaps).is_err() {
                return guard;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("{program} did not start");
}

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DATA}/{name}")).expect("test data")
}

fn psk_config() -> Arc<ClientConfig> {
    // libcoap's server takes any identity for its -k key.
    let psk = Psk::new(b"coaps-tower-client".to_vec(), KEY.as_bytes().to_vec()).unwrap();
    Arc::new(ClientConfig { psk: Some(psk), ..ClientConfig::default() })
}

fn cert_config() -> Arc<ClientConfig> {
    let roots = cert::load_certs_pem(&data("ca.crt")).unwrap();
    let verifier = PeerVerifier::WebPki(Arc::new(WebPkiVerifier::new(&roots).unwrap()));
    let sk = cert::load_private_key_pem(&data("client.key")).unwrap();
    let bytes: [u8; 32] = sk.to_bytes().into();
    let key = Arc::new(EcdsaP256SigningKey::from_bytes(&bytes).unwrap());
    let chain = cert::load_certs_pem(&data("client.crt")).unwrap();
    Arc::new(ClientConfig {
        verifier: Some(verifier),
        client_cert: Some(CertifiedKey { chain, key }),
        ..ClientConfig::default()
    })
}

fn get(path: &[&str]) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Request(RequestType::Get);
    for seg in path {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    p
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f).await.expect("test step took too long")
}

/// The checks every server and credential kind goes through.
async fn exercise(server: &ServerGuard, config: Arc<ClientConfig>, name: &str) -> Client {
    let opts = ClientOptions { rng_seed: None, ..ClientOptions::default() };
    let client = bounded(Client::connect_with(server.coaps, config, name, opts)).await.expect("handshake");

    // GET / : libcoap's banner, piggybacked.
    let resp = bounded(client.send(get(&[]))).await.expect("GET /");
    assert_eq!(resp.header.code, MessageClass::Response(ResponseType::Content));
    assert_eq!(resp.header.get_type(), MessageType::Acknowledgement);
    let text = String::from_utf8_lossy(&resp.payload).into_owned();
    assert!(text.contains("libcoap"), "unexpected banner: {text}");

    // GET /time : the server clock as text.
    let resp = bounded(client.send(get(&["time"]))).await.expect("GET /time");
    assert_eq!(resp.header.code, MessageClass::Response(ResponseType::Content));
    assert!(!resp.payload.is_empty());

    // GET /.well-known/core : link format listing /time.
    let resp = bounded(client.send(get(&[".well-known", "core"]))).await.expect("discovery");
    assert!(String::from_utf8_lossy(&resp.payload).contains("</time>"));

    // Unknown resource: 4.04.
    let resp = bounded(client.send(get(&["no-such-resource"]))).await.unwrap();
    assert_eq!(resp.header.code, MessageClass::Response(ResponseType::NotFound));

    // NON request: NON response.
    let mut non = get(&[]);
    non.header.set_type(MessageType::NonConfirmable);
    let resp = bounded(client.send(non)).await.expect("NON GET");
    assert_eq!(resp.header.get_type(), MessageType::NonConfirmable);
    assert_eq!(resp.header.code, MessageClass::Response(ResponseType::Content));

    // Separate response: /async?1 answers with an Empty ACK, then a CON 2.05 "done" after 1 s,
    // which the client acknowledges (RFC 7252 §5.2.2).
    let mut slow = get(&["async"]);
    slow.add_option(CoapOption::UriQuery, b"1".to_vec());
    let started = Instant::now();
    let resp = bounded(client.send(slow)).await.expect("separate response");
    assert_eq!(resp.header.get_type(), MessageType::Confirmable, "a separate response, not piggybacked");
    assert_eq!(resp.header.code, MessageClass::Response(ResponseType::Content));
    assert_eq!(resp.payload, b"done");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Had the client not acknowledged it, the server would retransmit and block the next
    // exchange; this one completes promptly.
    let resp = bounded(client.send(get(&["time"]))).await.unwrap();
    assert_eq!(resp.header.code, MessageClass::Response(ResponseType::Content));
    client
}

#[tokio::test]
async fn openssl_server_psk() {
    if !program_available("coap-server-openssl") {
        return;
    }
    let server = start("coap-server-openssl", &["-k", KEY]);
    let client = exercise(&server, psk_config(), "127.0.0.1").await;
    assert_eq!(client.info().identity, PeerIdentity::Psk(b"coaps-tower-client".to_vec()));
    bounded(client.close()).await;
    assert!(matches!(bounded(client.send(get(&[]))).await, Err(ClientError::Closed(_))));
}

#[tokio::test]
async fn openssl_server_certificates() {
    if !program_available("coap-server-openssl") {
        return;
    }
    let (crt, key, ca) = (format!("{DATA}/server.crt"), format!("{DATA}/server.key"), format!("{DATA}/ca.crt"));
    let server = start("coap-server-openssl", &["-c", &crt, "-j", &key, "-C", &ca]);
    let client = exercise(&server, cert_config(), "localhost").await;
    assert!(matches!(client.info().identity, PeerIdentity::Certificate(ref c) if !c.is_empty()));
    bounded(client.close()).await;
}

#[tokio::test]
async fn openssl_server_resumes_our_session() {
    if !program_available("coap-server-openssl") {
        return;
    }
    let server = start("coap-server-openssl", &["-k", KEY]);
    let first = bounded(Client::connect(server.coaps, psk_config(), "127.0.0.1")).await.unwrap();
    bounded(first.send(get(&[]))).await.unwrap();
    let Some(session) = first.session() else {
        panic!("coap-server-openssl issues a session ID");
    };
    bounded(first.close()).await;
    let opts = ClientOptions { resume: Some(session), ..ClientOptions::default() };
    let second = bounded(Client::connect_with(server.coaps, psk_config(), "127.0.0.1", opts)).await.unwrap();
    assert!(second.info().resumed, "abbreviated handshake with libcoap/OpenSSL");
    bounded(second.send(get(&[]))).await.unwrap();
}

#[tokio::test]
async fn gnutls_server_psk() {
    if !program_available("coap-server-gnutls") {
        return;
    }
    let server = start("coap-server-gnutls", &["-k", KEY]);
    let client = exercise(&server, psk_config(), "127.0.0.1").await;
    bounded(client.close()).await;
}

#[tokio::test]
async fn gnutls_server_certificates() {
    if !program_available("coap-server-gnutls") {
        return;
    }
    let (crt, key, ca) = (format!("{DATA}/server.crt"), format!("{DATA}/server.key"), format!("{DATA}/ca.crt"));
    let server = start("coap-server-gnutls", &["-c", &crt, "-j", &key, "-C", &ca]);
    let client = exercise(&server, cert_config(), "localhost").await;
    bounded(client.close()).await;
}

#[tokio::test]
async fn wrong_key_never_completes_and_reports_it() {
    if !program_available("coap-server-openssl") {
        return;
    }
    let server = start("coap-server-openssl", &["-k", KEY]);
    let bad = Psk::new(b"coaps-tower-client".to_vec(), b"wrong".to_vec()).unwrap();
    let mut common = coaps_dtls::CommonConfig::default();
    common.retransmit.initial = Duration::from_millis(100);
    common.retransmit.handshake_timeout = Duration::from_secs(3);
    let cfg = Arc::new(ClientConfig { psk: Some(bad), common, ..ClientConfig::default() });
    let opts = ClientOptions { transmission: TransmissionParams::default(), ..ClientOptions::default() };
    let err = bounded(Client::connect_with(server.coaps, cfg, "127.0.0.1", opts)).await.unwrap_err();
    assert!(matches!(err, ClientError::Handshake(_)), "{err:?}");
    eprintln!("wrong key: {err}");
}
