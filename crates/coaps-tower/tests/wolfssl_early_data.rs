//! wolfSSL's DTLS 1.3 example client with 0-RTT early data (`-r -0`: it resumes with our
//! ticket and sends `A drop of info` as early data) against the Tower stack as `coaps serve`
//! builds it: cookie layer (cookies on), resumption layer over moka, handshake layer. The
//! early data is accepted without a cookie round trip (RFC 9147 §5.1) and delivered to the
//! application once, marked as early data; every ClientHello the client sent, replayed over
//! UDP from other ports of 127.0.0.1 and from 127.0.0.2, delivers nothing more.

use coaps_dtls::cert;
use coaps_dtls::crypto::rustcrypto::EcdsaP256SigningKey;
use coaps_dtls::{CertifiedKey, EarlyDataConfig, ServerConfig};
use coaps_test_support::forwarder::{Forwarder, replay};
use coaps_test_support::wolfssl::{Dtls, WOLF_EARLY_MSG, require_wolfssl, wolf_client_cert_args};
use coaps_tower::resumption::{MokaConfig, MokaStore, ResumptionLayer};
use coaps_tower::{BoxError, CookieLayer, HandshakeLayer, Secured, Server};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tower::{ServiceBuilder, service_fn};

/// A record the application received: whether it came as early data, and its payload.
type Delivered = (bool, Vec<u8>);

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../coaps-dtls/tests/data");

fn server_cert() -> CertifiedKey {
    let data = |n: &str| std::fs::read(format!("{DATA}/{n}")).expect("test data");
    let sk = cert::load_private_key_pem(&data("server.key")).unwrap();
    let bytes: [u8; 32] = sk.to_bytes().into();
    let key = Arc::new(EcdsaP256SigningKey::from_bytes(&bytes).unwrap());
    CertifiedKey { chain: cert::load_certs_pem(&data("server.crt")).unwrap(), key }
}

/// A ClientHello datagram (plaintext handshake record, client_hello).
fn is_client_hello(d: &[u8]) -> bool {
    d.len() > 25 && d[0] == 22 && d[13] == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wolfssl_0rtt_is_delivered_once_through_the_cookie_and_resumption_layers() {
    let Some(wolf) = require_wolfssl() else { return };
    let config = Arc::new(ServerConfig {
        cert: Some(server_cert()),
        session_store: None,
        early_data: Some(EarlyDataConfig::default()),
        ..ServerConfig::default()
    });
    let cookies = CookieLayer::for_server(&config);
    let resumption = ResumptionLayer::behind(MokaStore::new(MokaConfig::default()), &cookies);
    let handshake = HandshakeLayer::builder(config).on_session(resumption.session_sink()).behind(&cookies).build();
    let associations = handshake.associations();
    // What the application saw: (arrived as early data, payload).
    let seen: Arc<Mutex<Vec<Delivered>>> = Arc::default();
    let app_seen = seen.clone();
    let service = ServiceBuilder::new().layer(cookies.clone()).layer(resumption.clone()).layer(handshake).service(
        service_fn(move |s: Secured| {
            app_seen.lock().unwrap().push((s.early_data, s.payload.clone()));
            // No 0.5-RTT answer: the example client fails its connect on application data
            // that arrives before the handshake completes (wolfSSL error -441).
            async move { Ok::<_, BoxError>((!s.early_data).then_some(s.payload)) }
        }),
    );
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(Server::new(socket).out_of_band(associations).serve(service, async move {
        let _ = stopped.await;
    }));

    let relay = Forwarder::start(addr);
    let mut args = wolf_client_cert_args(false);
    args.extend(["-r".into(), "-0".into()]);
    let to = relay.addr();
    let client = tokio::task::spawn_blocking(move || {
        let mut c = wolf.client(Dtls::V13, None, to, &args);
        let status = c.wait_exit(Duration::from_secs(30));
        (status, c.dump())
    })
    .await
    .unwrap();
    assert!(client.0.is_some_and(|s| s.success()), "the wolfSSL client failed\n{}", client.1);
    let early = |seen: &[(bool, Vec<u8>)]| seen.iter().filter(|(e, p)| *e && p == WOLF_EARLY_MSG.as_bytes()).count();
    {
        let seen = seen.lock().unwrap();
        assert_eq!(early(&seen), 1, "the 0-RTT data, delivered once as early data: {seen:?}\n{}", client.1);
    }
    let stats = cookies.stats();
    assert!(stats.cookie_exempt >= 1, "the resumption skipped the cookie: {stats:?}");

    // Every ClientHello the client sent (the full handshake's two and the 0-RTT one with its
    // early record), replayed from other ports and another loopback address.
    let hellos: Vec<Vec<u8>> = relay.all.lock().unwrap().iter().filter(|d| is_client_hello(d)).cloned().collect();
    assert!(hellos.len() >= 3, "{} ClientHellos captured", hellos.len());
    for h in &hellos {
        assert_eq!(replay(h, addr, 10), 10);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(early(&seen.lock().unwrap()), 1, "a replay delivered the early data again");
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
