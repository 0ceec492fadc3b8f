//! Real handshakes between the fuzz targets' own server and client endpoints, recorded as
//! seed inputs. Everything is seeded and the clock never moves, so replaying the client's
//! datagrams into a fresh [`crate::new_server`] (or the server's into a fresh
//! [`crate::new_client`]) reproduces the same handshake, and the fuzzer starts from it.

use crate::{encode_op, new_client, new_server, peer, server_addr};
use coaps_dtls::{Endpoint, Event};
use std::time::Instant;

/// A recorded exchange.
#[derive(Debug, Default)]
pub struct Transcript {
    /// Datagrams the client sent to the server, in delivery order.
    pub to_server: Vec<Vec<u8>>,
    /// Datagrams the server sent to the client, in delivery order.
    pub to_client: Vec<Vec<u8>>,
    /// Whether the client got its message echoed back.
    pub echoed: bool,
    /// The suite's key exchange, once connected.
    pub kx: Option<coaps_dtls::internal::msgs::KeyExchangeAlgorithm>,
}

/// Runs one handshake plus one echoed message with no loss at a fixed instant.
pub fn run(server_flags: u8, client_flags: u8) -> Transcript {
    let now = Instant::now();
    let mut server = new_server(server_flags, now);
    let mut client = new_client(client_flags, now);
    let client_addr = peer(true, 0);
    let mut t = Transcript::default();
    let mut sent_message = false;
    for _ in 0..100 {
        let mut progressed = false;
        while let Some(tx) = client.poll_transmit() {
            assert_eq!(tx.destination, server_addr());
            t.to_server.push(tx.payload.clone());
            server.handle_datagram(now, client_addr, &tx.payload);
            progressed = true;
        }
        while let Some((p, ev)) = server.poll_event() {
            if let Event::ApplicationData(d) = ev {
                server.send(p, &d).expect("echo");
            }
        }
        while let Some(tx) = server.poll_transmit() {
            assert_eq!(tx.destination, client_addr);
            t.to_client.push(tx.payload.clone());
            client.handle_datagram(now, server_addr(), &tx.payload);
            progressed = true;
        }
        while let Some((p, ev)) = client.poll_event() {
            match ev {
                Event::Connected { suite, .. } => {
                    t.kx = coaps_dtls::suites::lookup(suite).map(|s| s.kx);
                    if !sent_message {
                        client.send(p, b"fuzz seed message").expect("send");
                        sent_message = true;
                    }
                }
                Event::ApplicationData(d) => t.echoed |= d == b"fuzz seed message",
                Event::Closed(r) => panic!("seed handshake {server_flags}/{client_flags} closed: {r:?}"),
                _ => {}
            }
        }
        if !progressed {
            break;
        }
    }
    t
}

/// The script replaying `datagrams` from peer 0 with the clock still.
pub fn script(flags: u8, datagrams: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![flags];
    for d in datagrams {
        encode_op(&mut out, 0, 0, d);
    }
    out
}

/// Replays a server-side script and reports whether the recorded client's association came
/// up, which proves the seeds really reach the end of the handshake.
pub fn server_replay_connects(script: &[u8]) -> bool {
    let (&flags, rest) = script.split_first().expect("flags");
    let now = Instant::now();
    let mut ep: Endpoint = new_server(flags, now);
    let mut connected = false;
    for op in crate::ops(rest) {
        ep.handle_datagram(now, peer(true, op.peer), op.datagram);
        while ep.poll_transmit().is_some() {}
        while let Some((_, ev)) = ep.poll_event() {
            connected |= matches!(ev, Event::Connected { .. });
        }
    }
    connected
}

/// Like [`server_replay_connects`] for a client-side script.
pub fn client_replay_connects(script: &[u8]) -> bool {
    let (&flags, rest) = script.split_first().expect("flags");
    let now = Instant::now();
    let mut ep = new_client(flags, now);
    let mut connected = false;
    for op in crate::ops(rest) {
        ep.handle_datagram(now, peer(false, op.peer), op.datagram);
        while ep.poll_transmit().is_some() {}
        while let Some((_, ev)) = ep.poll_event() {
            connected |= matches!(ev, Event::Connected { .. });
        }
    }
    connected
}
