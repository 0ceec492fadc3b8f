//! DTLS 1.2 Connection IDs through the Tower stack (cookie layer → handshake layer → echo) on
//! a real loopback socket: a client whose source port changes between two requests keeps its
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
