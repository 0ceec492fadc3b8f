//! `ShardedServer` with 2 shards, each running the full server stack (cookie, handshake and
//! CoAP layers) on its own thread: 200 concurrent CoAP-over-DTLS clients, one confirmable GET
//! each. Every request reaches the application exactly once and gets its own answer, every
//! association lives in exactly one shard (all datagrams of a peer went to the shard holding
//! its association), and both shards served clients.

use coap_lite::{MessageClass, MessageType, Packet, RequestType, ResponseType};
use coaps_test_support::datagram::{bounded, client_config, server_config};
use coaps_tower::shard::{Shard, ShardedServer};
use coaps_tower::{Client, CoapLayer, CoapRequest, CookieLayer, HandshakeLayer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tower::{ServiceBuilder, service_fn};

const CLIENTS: usize = 200;
const SHARDS: usize = 2;

/// Per shard: the peers whose requests it served (peer → count), and the peers of every
/// datagram it received.
#[derive(Default)]
struct Seen {
    requests: Vec<HashMap<SocketAddr, usize>>,
    datagram_peers: Vec<HashMap<SocketAddr, usize>>,
}

fn get(i: usize) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Get);
    p.header.message_id = i as u16;
    p.set_token(vec![(i >> 8) as u8, i as u8]);
    p.add_option(coap_lite::CoapOption::UriPath, format!("client-{i}").into_bytes());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_serve_two_hundred_clients_each_request_once() {
    bounded(120, "sharded server", async {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen {
            requests: vec![HashMap::new(); SHARDS],
            datagram_peers: vec![HashMap::new(); SHARDS],
        }));
        let config = Arc::new(server_config());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shard_seen = seen.clone();
        let sharded = ShardedServer::new(socket, SHARDS);
        let totals = sharded.totals();
        let server = tokio::spawn(sharded.serve(
            move |shard| {
                let cookies = CookieLayer::for_server(&config);
                let handshake = HandshakeLayer::builder(config.clone()).behind(&cookies).build();
                let associations = handshake.associations();
                let cookie_counts = cookies.clone();
                let app_seen = shard_seen.clone();
                let app = service_fn(move |req: CoapRequest| {
                    *app_seen.lock().unwrap().requests[shard].entry(req.peer).or_default() += 1;
                    let mut resp = Packet::new();
                    resp.header.code = MessageClass::Response(ResponseType::Content);
                    resp.payload = req
                        .message
                        .get_option(coap_lite::CoapOption::UriPath)
                        .map_or_else(Vec::new, |p| p.iter().next().cloned().unwrap_or_default());
                    async move { Ok::<_, coaps_tower::BoxError>(resp) }
                });
                let dg_seen = shard_seen.clone();
                let service = ServiceBuilder::new()
                    .map_request(move |d: coaps_tower::Datagram| {
                        *dg_seen.lock().unwrap().datagram_peers[shard].entry(d.peer).or_default() += 1;
                        d
                    })
                    .layer(cookies)
                    .layer(handshake)
                    .layer(CoapLayer::new())
                    .service(app);
                Shard::new(service).out_of_band(associations.clone()).report(associations).report_cookies(cookie_counts)
            },
            async move {
                let _ = stopped.await;
            },
        ));

        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..CLIENTS {
            tasks.spawn(async move {
                let client = Client::connect(addr, client_config(), "localhost")
                    .await
                    .map_err(|e| format!("client {i}: connect: {e}"))?;
                let local = client.local_addr();
                let resp = client.send(get(i)).await.map_err(|e| format!("client {i}: {e}"))?;
                if resp.payload != format!("client-{i}").into_bytes() {
                    return Err(format!("client {i}: answer {:?}", String::from_utf8_lossy(&resp.payload)));
                }
                client.close().await;
                Ok::<SocketAddr, String>(local)
            });
        }
        let mut clients = Vec::new();
        let mut failures = Vec::new();
        while let Some(r) = tasks.join_next().await {
            match r.unwrap() {
                Ok(a) => clients.push(a),
                Err(e) => failures.push(e),
            }
        }
        assert!(failures.is_empty(), "{} clients failed: {:?}", failures.len(), &failures[..failures.len().min(5)]);
        stop.send(()).unwrap();
        let stats = server.await.unwrap().unwrap();
        eprintln!("routed per shard: {:?}, dropped {}", stats.routed, stats.dropped);

        let seen = seen.lock().unwrap();
        for peer in &clients {
            let served: Vec<usize> = (0..SHARDS).filter(|&s| seen.requests[s].contains_key(peer)).collect();
            assert_eq!(served.len(), 1, "{peer}: served by shards {served:?}");
            assert_eq!(seen.requests[served[0]][peer], 1, "{peer}: request reached the application more than once");
            let received: Vec<usize> = (0..SHARDS).filter(|&s| seen.datagram_peers[s].contains_key(peer)).collect();
            assert_eq!(received, served, "{peer}: datagrams reached shards {received:?}, association in {served:?}");
        }
        let total: usize = seen.requests.iter().map(|m| m.values().sum::<usize>()).sum();
        assert_eq!(total, CLIENTS, "application calls");
        for s in 0..SHARDS {
            assert!(!seen.requests[s].is_empty(), "shard {s} served nobody: {:?}", stats.routed);
        }
        assert_eq!(stats.dropped, 0);
        // The library user's totals: every shard's counters, summed.
        let h = totals.handshake();
        assert_eq!(h.endpoint.connections_created, CLIENTS as u64, "{h:?}");
        assert_eq!(h.records_to_inner, CLIENTS as u64, "{h:?}");
        let c = totals.cookies();
        assert!(c.cookies_verified >= CLIENTS as u64, "{c:?}");
        assert!(c.hello_retry_requests + c.hello_verify_requests >= CLIENTS as u64, "one cookie per client: {c:?}");
        assert_eq!(totals.half_open(), 0);
    })
    .await;
}

#[test]
fn by_peer_address_is_stable_and_in_range() {
    use coaps_tower::shard::{ByPeerAddress, ShardKey};
    let key = ByPeerAddress::new();
    let mut hits = [0usize; 3];
    for port in 1000..1300u16 {
        let peer: SocketAddr = ([127, 0, 0, 1], port).into();
        let s = key.shard(peer, b"first", 3);
        assert!(s < 3);
        assert_eq!(key.shard(peer, b"another datagram", 3), s, "same peer, same shard");
        hits[s] += 1;
    }
    assert!(hits.iter().all(|&h| h > 50), "{hits:?}");
    assert_eq!(key.shard(([10, 0, 0, 1], 5).into(), b"", 1), 0);
    // A closure is a key too (e.g. one reading a Connection ID first).
    let first_byte = |_: SocketAddr, payload: &[u8], n: usize| payload.first().map_or(0, |b| *b as usize % n);
    assert_eq!(first_byte.shard(([127, 0, 0, 1], 1).into(), &[7], 4), 3);
}
