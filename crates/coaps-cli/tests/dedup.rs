//! RFC 7252 §4.5: a confirmable POST received twice (a retransmission whose ACK was lost) runs
//! once. The test drives the DTLS engine directly, so it can send the very same CoAP message
//! twice over one association, which no well-behaved client does on purpose.

use coaps_test_support::cli as common;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{ClientConfig, Endpoint, Event, Psk};
use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Conn {
    sock: UdpSocket,
    ep: Endpoint,
    peer: SocketAddr,
}

impl Conn {
    fn flush(&mut self) {
        while let Some(t) = self.ep.poll_transmit() {
            self.sock.send_to(&t.payload, t.destination).unwrap();
        }
    }

    /// Pumps the engine until `want` events of application data arrived, or the deadline.
    fn wait_for(&mut self, want: usize, deadline: Instant) -> (bool, Vec<Vec<u8>>) {
        let mut buf = vec![0u8; 65536];
        let mut connected = false;
        let mut data = Vec::new();
        while Instant::now() < deadline && (data.len() < want || (want == 0 && !connected)) {
            let wait = self.ep.poll_timeout().map_or(Duration::from_millis(100), |t| {
                t.saturating_duration_since(Instant::now()).min(Duration::from_millis(100))
            });
            self.sock.set_read_timeout(Some(wait.max(Duration::from_millis(1)))).unwrap();
            if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
                self.ep.handle_datagram(Instant::now(), from, &buf[..n]);
            }
            self.ep.handle_timeout(Instant::now());
            self.flush();
            while let Some((_, ev)) = self.ep.poll_event() {
                match ev {
                    Event::Connected { .. } => connected = true,
                    Event::ApplicationData(d) => data.push(d),
                    Event::Closed(r) => panic!("association closed: {r:?}"),
                    _ => {}
                }
            }
        }
        (connected, data)
    }
}

fn request(method: RequestType, mid: u16, token: &[u8], path: &[&str], payload: &[u8]) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(method);
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    for s in path {
        p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
    }
    p.payload = payload.to_vec();
    p.to_bytes().unwrap()
}

#[test]
fn duplicated_confirmable_post_runs_once() {
    let server = serve(&["-u", "dedup", "-k", "dedup-key"]);
    let peer: SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut conn = Conn { sock, ep: Endpoint::client(SeededRng::from_os()), peer };
    let config =
        ClientConfig { psk: Some(Psk::new(b"dedup".to_vec(), b"dedup-key".to_vec()).unwrap()), ..Default::default() };
    conn.ep.connect(Instant::now(), peer, Arc::new(config), "127.0.0.1", None).unwrap();
    conn.flush();
    let deadline = Instant::now() + Duration::from_secs(15);
    let (connected, _) = conn.wait_for(0, deadline);
    assert!(connected, "no handshake with coaps serve");

    // The same CON POST twice (same message ID, same token), as a retransmission would be.
    let post = request(RequestType::Post, 0x4242, b"\x01\x02\x03\x04", &["actuators", "door"], b"open");
    conn.ep.send(conn.peer, &post).unwrap();
    conn.flush();
    let (_, first) = conn.wait_for(1, deadline);
    conn.ep.send(conn.peer, &post).unwrap();
    conn.flush();
    let (_, second) = conn.wait_for(1, deadline);
    assert_eq!(first.len(), 1, "no answer to the POST");
    assert_eq!(second.len(), 1, "no answer to the duplicate: the ACK must be sent again (RFC 7252 §4.5)");
    for d in first.iter().chain(&second) {
        let p = Packet::from_bytes(d).unwrap();
        assert_eq!(p.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(p.header.message_id, 0x4242);
        assert_eq!(p.header.code, MessageClass::Response(ResponseType::Changed));
        assert_eq!(p.get_token(), b"\x01\x02\x03\x04");
        assert_eq!(p.payload, b"1", "the duplicate gets the first answer again, not a second execution");
    }

    // And the counter says one command ran.
    let get = request(RequestType::Get, 0x4243, b"\x05", &["actuators", "door"], b"");
    conn.ep.send(conn.peer, &get).unwrap();
    conn.flush();
    let (_, got) = conn.wait_for(1, deadline);
    let p = Packet::from_bytes(got.first().expect("no answer to GET")).unwrap();
    assert_eq!(p.header.code, MessageClass::Response(ResponseType::Content));
    assert_eq!(p.payload, b"1");
    conn.ep.close(conn.peer);
    conn.flush();
}
