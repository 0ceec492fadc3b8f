//! Issue 15: the CoAP message rules (RFC 7252 §3, §5.4.1, §5.10.2, §5.10.8) enforced by
//! `coaps serve`, table-driven (each option class × CON/NON × method) over a raw DTLS engine
//! that can send any bytes as application data; the door counter must not move on any refused
//! request. And deduplication keyed by association: a new session from the same address that
//! reuses a Message ID and token gets a fresh answer.

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
    fn connect(sock: UdpSocket, peer: SocketAddr) -> Self {
        let mut conn = Conn { sock, ep: Endpoint::client(SeededRng::from_os()), peer };
        let config = ClientConfig {
            psk: Some(Psk::new(b"rules".to_vec(), b"rules-key".to_vec()).unwrap()),
            ..Default::default()
        };
        conn.ep.connect(Instant::now(), peer, Arc::new(config), "127.0.0.1", None).unwrap();
        conn.flush();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if conn.pump().0 {
                return conn;
            }
        }
        panic!("no handshake with coaps serve");
    }

    fn flush(&mut self) {
        while let Some(t) = self.ep.poll_transmit() {
            self.sock.send_to(&t.payload, t.destination).unwrap();
        }
    }

    /// One round: a datagram (or a short wait), timers, events. Returns (connected, data).
    fn pump(&mut self) -> (bool, Vec<Vec<u8>>) {
        let mut buf = vec![0u8; 65536];
        let wait = self.ep.poll_timeout().map_or(Duration::from_millis(50), |t| {
            t.saturating_duration_since(Instant::now()).min(Duration::from_millis(50))
        });
        self.sock.set_read_timeout(Some(wait.max(Duration::from_millis(1)))).unwrap();
        if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
            self.ep.handle_datagram(Instant::now(), from, &buf[..n]);
        }
        self.ep.handle_timeout(Instant::now());
        self.flush();
        let (mut connected, mut data) = (false, Vec::new());
        while let Some((_, ev)) = self.ep.poll_event() {
            match ev {
                Event::Connected { .. } => connected = true,
                Event::ApplicationData(d) => data.push(d),
                Event::Closed(r) => panic!("association closed: {r:?}"),
                _ => {}
            }
        }
        (connected, data)
    }

    /// Sends `datagram`, then a GET of the door as a probe, and collects every answer until
    /// the probe's arrives (the server answers one association's records in order, so an
    /// answer to `datagram` comes first). Returns the other answers and the probe's answer.
    fn send_and_probe(&mut self, datagram: &[u8], probe_mid: u16) -> (Vec<Packet>, Packet) {
        self.ep.send(self.peer, datagram).unwrap();
        self.ep.send(self.peer, &request(MessageType::Confirmable, RequestType::Get, probe_mid, b"probe")).unwrap();
        self.flush();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut others = Vec::new();
        while Instant::now() < deadline {
            for d in self.pump().1 {
                let p = Packet::from_bytes(&d).expect("coaps serve sends valid CoAP");
                if p.header.message_id == probe_mid && p.get_token() == b"probe" {
                    return (others, p);
                }
                others.push(p);
            }
        }
        panic!("no answer to the probe GET");
    }
}

fn request(ty: MessageType, method: RequestType, mid: u16, token: &[u8]) -> Vec<u8> {
    packet(ty, method, mid, token).to_bytes().unwrap()
}

fn packet(ty: MessageType, method: RequestType, mid: u16, token: &[u8]) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(ty);
    p.header.code = MessageClass::Request(method);
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    p.add_option(CoapOption::UriPath, b"actuators".to_vec());
    p.add_option(CoapOption::UriPath, b"door".to_vec());
    p
}

#[derive(Debug, Clone, Copy)]
enum Class {
    Plain,
    UnknownCritical,
    UnknownElective,
    MalformedCritical,
    ProxyUri,
    ProxyScheme,
    IfMatchStale,
    IfMatchCurrent,
    IfNoneMatch,
    EmptyPayload,
    TokenLength9,
    OptionPastEnd,
}

const CLASSES: [Class; 12] = [
    Class::Plain,
    Class::UnknownCritical,
    Class::UnknownElective,
    Class::MalformedCritical,
    Class::ProxyUri,
    Class::ProxyScheme,
    Class::IfMatchStale,
    Class::IfMatchCurrent,
    Class::IfNoneMatch,
    Class::EmptyPayload,
    Class::TokenLength9,
    Class::OptionPastEnd,
];

#[derive(Debug, PartialEq)]
enum Expect {
    Code(ResponseType),
    Reset,
    Silence,
}

impl Class {
    fn datagram(self, mut p: Packet, etag: &[u8]) -> Vec<u8> {
        p.payload = b"open".to_vec();
        match self {
            Class::Plain | Class::EmptyPayload | Class::TokenLength9 | Class::OptionPastEnd => {}
            Class::UnknownCritical => p.add_option(CoapOption::Unknown(65001), b"x".to_vec()),
            Class::UnknownElective => p.add_option(CoapOption::Unknown(65000), b"x".to_vec()),
            Class::MalformedCritical => p.add_option(CoapOption::IfNoneMatch, b"x".to_vec()),
            Class::ProxyUri => p.add_option(CoapOption::ProxyUri, b"coap://192.0.2.1/door".to_vec()),
            Class::ProxyScheme => p.add_option(CoapOption::ProxyScheme, b"coap".to_vec()),
            Class::IfMatchStale => p.add_option(CoapOption::IfMatch, b"stale".to_vec()),
            Class::IfMatchCurrent => p.add_option(CoapOption::IfMatch, etag.to_vec()),
            Class::IfNoneMatch => p.add_option(CoapOption::IfNoneMatch, vec![]),
        }
        let mut bytes = p.to_bytes().unwrap();
        let body = p.payload.len();
        match self {
            Class::EmptyPayload => bytes.truncate(bytes.len() - body),
            Class::TokenLength9 => bytes[0] = (bytes[0] & 0xf0) | 9,
            Class::OptionPastEnd => {
                bytes.truncate(bytes.len() - body - 1);
                bytes.push(0x0c);
            }
            _ => {}
        }
        bytes
    }

    /// What the demo answers (its door: POST/PUT run a command, GET reads it, others 4.05).
    fn expect(self, con: bool, method: RequestType) -> (Expect, bool) {
        let update = matches!(method, RequestType::Post | RequestType::Put);
        let app = match method {
            RequestType::Get => ResponseType::Content,
            RequestType::Post | RequestType::Put => ResponseType::Changed,
            _ => ResponseType::MethodNotAllowed,
        };
        match self {
            Class::Plain | Class::UnknownElective | Class::IfMatchCurrent => (Expect::Code(app), update),
            Class::UnknownCritical | Class::MalformedCritical if con => (Expect::Code(ResponseType::BadOption), false),
            Class::UnknownCritical | Class::MalformedCritical => (Expect::Silence, false),
            Class::ProxyUri | Class::ProxyScheme => (Expect::Code(ResponseType::ProxyingNotSupported), false),
            Class::IfMatchStale | Class::IfNoneMatch if update => {
                (Expect::Code(ResponseType::PreconditionFailed), false)
            }
            Class::IfMatchStale | Class::IfNoneMatch => (Expect::Code(app), false),
            Class::EmptyPayload | Class::TokenLength9 | Class::OptionPastEnd if con => (Expect::Reset, false),
            Class::EmptyPayload | Class::TokenLength9 | Class::OptionPastEnd => (Expect::Silence, false),
        }
    }
}

fn door_count(probe: &Packet) -> u64 {
    assert_eq!(probe.header.code, MessageClass::Response(ResponseType::Content));
    String::from_utf8(probe.payload.clone()).unwrap().parse().unwrap()
}

#[test]
fn coap_rules_table_against_coaps_serve() {
    let server = serve(&["-u", "rules", "-k", "rules-key"]);
    let peer: SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
    let mut conn = Conn::connect(UdpSocket::bind("127.0.0.1:0").unwrap(), peer);
    let methods = [RequestType::Get, RequestType::Post, RequestType::Put, RequestType::Delete];
    let mut mid = 0x2000u16;
    let (_, mut probe) =
        conn.send_and_probe(&request(MessageType::Confirmable, RequestType::Get, 0x1fff, b"g"), 0x1ffe);
    let mut rows = 0;
    for class in CLASSES {
        for con in [true, false] {
            for method in methods {
                mid += 2;
                let ty = if con { MessageType::Confirmable } else { MessageType::NonConfirmable };
                let token = [0xd0, mid as u8];
                let etag = probe.get_first_option(CoapOption::ETag).cloned().expect("the door has an ETag");
                let before = door_count(&probe);
                let datagram = class.datagram(packet(ty, method, mid, &token), &etag);
                let (answers, next) = conn.send_and_probe(&datagram, mid + 1);
                let what = format!("{class:?} {} {method:?}", if con { "CON" } else { "NON" });
                let (expect, runs) = class.expect(con, method);
                assert_eq!(door_count(&next) - before, u64::from(runs), "{what}: the door moves only when it runs");
                probe = next;
                let ours: Vec<&Packet> = answers
                    .iter()
                    .filter(|p| if con { p.header.message_id == mid } else { p.get_token() == token })
                    .collect();
                match expect {
                    Expect::Silence => assert!(ours.is_empty(), "{what}: answered {ours:?}"),
                    Expect::Reset => {
                        assert_eq!(ours.len(), 1, "{what}: {answers:?}");
                        assert_eq!(ours[0].header.get_type(), MessageType::Reset, "{what}");
                        assert_eq!(ours[0].header.code, MessageClass::Empty, "{what}");
                    }
                    Expect::Code(code) => {
                        assert_eq!(ours.len(), 1, "{what}: {answers:?}");
                        let r = ours[0];
                        assert_eq!(r.header.code, MessageClass::Response(code), "{what}");
                        assert_eq!(r.get_token(), token, "{what}");
                        let ty = if con { MessageType::Acknowledgement } else { MessageType::NonConfirmable };
                        assert_eq!(r.header.get_type(), ty, "{what}");
                    }
                }
                rows += 1;
            }
        }
    }
    assert_eq!(rows, 12 * 2 * 4);
    // Plain, UnknownElective and IfMatchCurrent × CON/NON × POST/PUT ran; nothing else did.
    assert_eq!(door_count(&probe), 12);
    conn.ep.close(peer);
    conn.flush();
}

/// Issue 15, item 5: session 1 runs `POST /actuators/door` (Message ID M, token T) and
/// closes; session 2 from the same UDP socket (same address and port) sends the same M and T
/// within the exchange lifetime: it is a new request, not the stored answer of session 1.
#[test]
fn a_new_session_from_the_same_address_gets_a_fresh_answer() {
    let server = serve(&["-u", "rules", "-k", "rules-key"]);
    let peer: SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut post = packet(MessageType::Confirmable, RequestType::Post, 0x4242, b"same");
    post.payload = b"open".to_vec();
    let post = post.to_bytes().unwrap();
    let mut answers = Vec::new();
    for session in 0..2 {
        let mut conn = Conn::connect(sock.try_clone().unwrap(), peer);
        let (mut got, probe) = conn.send_and_probe(&post, 0x100 + session);
        assert_eq!(got.len(), 1, "session {session}: {got:?}");
        let r = got.remove(0);
        assert_eq!(r.header.code, MessageClass::Response(ResponseType::Changed));
        assert_eq!(door_count(&probe), u64::from(session) + 1, "session {session}: the command ran");
        answers.push(r.payload);
        // Within the session, the same message again is a duplicate: the stored answer.
        let (again, probe) = conn.send_and_probe(&post, 0x200 + session);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].payload, answers[usize::from(session)], "session {session}: replayed");
        assert_eq!(door_count(&probe), u64::from(session) + 1, "session {session}: a duplicate does not run");
        conn.ep.close(peer);
        conn.flush();
    }
    assert_eq!(answers, vec![b"1".to_vec(), b"2".to_vec()]);
}
