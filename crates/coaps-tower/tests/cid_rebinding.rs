//! Connection IDs through the Tower stack on a real loopback socket, DTLS 1.2 (cookie layer →
//! handshake layer → echo) and DTLS 1.3 (the same with CoAP): a client whose source port changes between two requests keeps its
//! association (no second handshake, one association), its old port gets nothing more, and a
//! copy of its record sent from another port by a third party does not take the association.

use coaps_test_support::datagram as datagram_support;

use coaps_dtls::{ClientConfig, ConnectionIdConfig, DtlsVersion};
use datagram_support::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;

fn cid_client() -> Arc<ClientConfig> {
    let mut c = (*client_config()).clone();
    c.version = DtlsVersion::Dtls12;
    c.connection_id = Some(ConnectionIdConfig::new(4));
    Arc::new(c)
}

fn cid_server() -> Arc<coaps_dtls::ServerConfig> {
    let mut s = server_config();
    s.connection_id = Some(ConnectionIdConfig::new(6));
    Arc::new(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_source_port_keeps_the_association() {
    bounded(30, "cid rebinding", async {
        let mut server =
            TestServer::start_with(cid_server(), Opts::default(), tower::layer::util::Identity::new()).await;
        let mut c = Client::connect_with(server.addr, 7, cid_client(), Duration::from_secs(10)).await.unwrap();
        assert!(c.endpoint.connection(&server.addr).unwrap().connection_ids().is_some(), "CIDs negotiated");
        c.request(b"before", 3, Duration::from_secs(1)).await.unwrap();
        let old_port = c.socket.local_addr().unwrap();
        // The NAT rebinds: same client state, new socket (port); keep the old one to listen.
        let old = std::mem::replace(&mut c.socket, UdpSocket::bind("127.0.0.1:0").await.unwrap());
        c.request(b"after", 1, Duration::from_secs(3)).await.expect("answered on the new port at once");
        c.request(b"and again", 1, Duration::from_secs(3)).await.unwrap();
        let st = server.associations.stats();
        assert_eq!(st.endpoint.connections_created, 1, "no second handshake");
        assert_eq!(server.associations.count(), 1);
        assert_eq!(st.endpoint.address_changes, 1);
        assert!(!server.associations.is_established(&old_port));
        assert!(server.associations.is_established(&c.socket.local_addr().unwrap()));
        let mut buf = [0u8; 2048];
        let got = tokio::time::timeout(Duration::from_millis(300), old.recv_from(&mut buf)).await;
        assert!(got.is_err(), "the old port got a datagram");
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_record_from_another_port_takes_nothing() {
    bounded(30, "cid replay", async {
        let mut server =
            TestServer::start_with(cid_server(), Opts::default(), tower::layer::util::Identity::new()).await;
        let mut c = Client::connect_with(server.addr, 8, cid_client(), Duration::from_secs(10)).await.unwrap();
        // Capture the client's next record as it goes out, deliver it, then replay it from
        // another socket.
        c.endpoint.send(server.addr, b"once").unwrap();
        let record = c.endpoint.poll_transmit().unwrap().payload;
        c.socket.send_to(&record, server.addr).await.unwrap();
        c.request(b"sync", 3, Duration::from_secs(1)).await.unwrap();
        let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        attacker.send_to(&record, server.addr).await.unwrap();
        let mut buf = [0u8; 2048];
        let got = tokio::time::timeout(Duration::from_millis(300), attacker.recv_from(&mut buf)).await;
        assert!(got.is_err(), "the replay drew an answer");
        c.request(b"still mine", 1, Duration::from_secs(3)).await.unwrap();
        let st = server.associations.stats();
        assert_eq!(st.endpoint.address_changes, 0);
        assert_eq!(st.endpoint.address_changes_refused, 1);
        assert!(server.associations.is_established(&c.socket.local_addr().unwrap()));
        server.shutdown().await.unwrap();
    })
    .await;
}

/// A one-client UDP relay that plays a NAT: the client sends to `addr`, the relay forwards from
/// its current back socket; [`Nat::rebind`] moves it to a fresh one (a new source port).
/// Datagrams the server still sends to an abandoned port are counted, not forwarded.
struct Nat {
    addr: std::net::SocketAddr,
    rebind: tokio::sync::mpsc::UnboundedSender<()>,
    to_old_ports: Arc<std::sync::atomic::AtomicUsize>,
    ports: Arc<std::sync::Mutex<Vec<std::net::SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Nat {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = front.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let to_old_ports = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ports = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (old_count, port_log) = (to_old_ports.clone(), ports.clone());
        let task = tokio::spawn(async move {
            let back = |log: Arc<std::sync::Mutex<Vec<std::net::SocketAddr>>>| async move {
                let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                s.connect(upstream).await.unwrap();
                log.lock().unwrap().push(s.local_addr().unwrap());
                s
            };
            let mut current = back(port_log.clone()).await;
            // Abandoned ports, read without the runtime: what arrives there is only counted.
            let mut old: Vec<std::net::UdpSocket> = Vec::new();
            let mut client = None;
            let (mut a, mut b, mut c) = ([0u8; 4096], [0u8; 4096], [0u8; 4096]);
            loop {
                for s in &old {
                    while s.recv(&mut c).is_ok() {
                        old_count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::select! {
                    r = front.recv_from(&mut a) => {
                        let Ok((n, from)) = r else { return };
                        client = Some(from);
                        let _ = current.send(&a[..n]).await;
                    }
                    r = current.recv(&mut b) => {
                        let Ok(n) = r else { return };
                        if let Some(cl) = client {
                            let _ = front.send_to(&b[..n], cl).await;
                        }
                    }
                    r = rx.recv() => {
                        if r.is_none() {
                            return;
                        }
                        let abandoned = std::mem::replace(&mut current, back(port_log.clone()).await);
                        old.push(abandoned.into_std().unwrap());
                    }
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
            }
        });
        Self { addr, rebind: tx, to_old_ports, ports, task }
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// DTLS 1.3 Connection IDs (RFC 9147 §9) through the whole Tower stack, CoAP included
/// (`Server` → `CookieLayer` → `HandshakeLayer` → `CoapLayer` → app), with the coaps
/// `Client` behind a NAT that changes its source port between two GETs: the GET after the
/// rebinding is answered, one handshake, one association, and the old port gets nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtls13_coap_get_after_a_rebinding_is_answered() {
    use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
    use coaps_tower::{Client, CoapLayer, CoapRequest, CookieLayer, HandshakeLayer, Server};
    use std::sync::atomic::Ordering;
    use tower::ServiceBuilder;
    bounded(60, "dtls13 cid rebinding through CoAP", async {
        let config = cid_server();
        let cookies = CookieLayer::for_server(&config);
        let handshake = HandshakeLayer::builder(config).behind(&cookies).build();
        let associations = handshake.associations();
        let app = tower::service_fn(|req: CoapRequest| async move {
            let mut response = req.response();
            response.header.code = MessageClass::Response(ResponseType::Content);
            response.payload = req.message.payload.clone();
            Ok::<_, std::convert::Infallible>(response)
        });
        let service = ServiceBuilder::new().layer(cookies).layer(handshake).layer(CoapLayer::new()).service(app);
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(Server::new(socket).out_of_band(associations.clone()).serve(service, async move {
            let _ = stop_rx.await;
        }));
        let nat = Nat::start(addr).await;
        let mut cfg = (*client_config()).clone();
        cfg.version = DtlsVersion::Dtls13;
        cfg.connection_id = Some(ConnectionIdConfig::new(4));
        let client = Client::connect(nat.addr, Arc::new(cfg), "localhost").await.expect("handshake");
        use coaps_dtls::CipherSuite as S;
        let suite = client.info().suite;
        assert!(
            [S::TLS_AES_128_GCM_SHA256, S::TLS_CHACHA20_POLY1305_SHA256, S::TLS_AES_128_CCM_8_SHA256].contains(&suite),
            "DTLS 1.3: {suite:?}"
        );
        let get = |text: &str| {
            let mut p = Packet::new();
            p.header.set_type(MessageType::Confirmable);
            p.header.code = MessageClass::Request(RequestType::Get);
            p.add_option(CoapOption::UriPath, b"echo".to_vec());
            p.payload = text.as_bytes().to_vec();
            p
        };
        let r = client.send(get("before")).await.expect("GET before the rebinding");
        assert_eq!(r.payload, b"before");
        let old_port = nat.ports.lock().unwrap()[0];
        assert!(associations.is_established(&old_port));
        nat.rebind.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = client.send(get("after")).await.expect("GET after the rebinding");
        assert_eq!(r.payload, b"after");
        let r = client.send(get("and again")).await.expect("a second GET after the rebinding");
        assert_eq!(r.payload, b"and again");
        let new_port = nat.ports.lock().unwrap()[1];
        let st = associations.stats();
        assert_eq!(st.endpoint.connections_created, 1, "no second handshake");
        assert_eq!(associations.count(), 1);
        assert_eq!(st.endpoint.address_changes, 1);
        assert!(!associations.is_established(&old_port));
        assert!(associations.is_established(&new_port));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(nat.to_old_ports.load(Ordering::Relaxed), 0, "the old port got a datagram");
        client.close().await;
        let _ = stop_tx.send(());
        let _ = server.await;
    })
    .await;
}
