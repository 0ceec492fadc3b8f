//! The CoAP message rules of `CoapLayer` (RFC 7252 §3, §5.4, §5.10), table-driven: every
//! option class × CON/NON × method, against a door actuator that counts what it runs and uses
//! the If-Match helper; and deduplication keyed by association (issue 15, item 5).

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use coaps_dtls::PeerIdentity;
use coaps_tower::coap::rules::{Precondition, preconditions};
use coaps_tower::coap::{CoapConfig, CoapLayer};
use coaps_tower::{Association, BoxError, CoapRequest, Secured};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tower::{Layer, Service, ServiceExt, service_fn};

/// A door: POST and PUT run a command (the counter moves) unless their If-Match /
/// If-None-Match fails against the ETag (the count); GET reads the count. `calls` counts every
/// request that reaches the application at all.
#[derive(Clone, Default)]
struct Door {
    commands: Arc<AtomicU64>,
    calls: Arc<AtomicU64>,
}

impl Door {
    fn app(&self) -> impl Service<CoapRequest, Response = Packet, Error = Infallible, Future: Send> + Clone {
        let door = self.clone();
        service_fn(move |req: CoapRequest| {
            door.calls.fetch_add(1, Ordering::SeqCst);
            let mut resp = req.response();
            let method = match req.message.header.code {
                MessageClass::Request(m) => m,
                _ => unreachable!("the CoAP layer hands up requests only"),
            };
            let n = door.commands.load(Ordering::SeqCst);
            match method {
                RequestType::Post | RequestType::Put => {
                    if preconditions(&req.message, Some(&n.to_be_bytes())) == Precondition::Failed {
                        resp.header.code = MessageClass::Response(ResponseType::PreconditionFailed);
                    } else {
                        let n = door.commands.fetch_add(1, Ordering::SeqCst) + 1;
                        resp.header.code = MessageClass::Response(ResponseType::Changed);
                        resp.payload = n.to_string().into_bytes();
                    }
                }
                _ => {
                    resp.header.code = MessageClass::Response(ResponseType::Content);
                    resp.add_option(CoapOption::ETag, n.to_be_bytes().to_vec());
                    resp.payload = n.to_string().into_bytes();
                }
            }
            async move { Ok::<_, Infallible>(resp) }
        })
    }
}

fn secured(payload: Vec<u8>) -> Secured {
    Secured {
        peer: "192.0.2.7:5000".parse().unwrap(),
        identity: PeerIdentity::Psk(b"dev-1".to_vec()),
        payload,
        early_data: false,
        handshake: Default::default(),
        association: Association::from_client_random([1; 32]),
    }
}

async fn call<S>(svc: &mut S, msg: Secured) -> Option<Vec<u8>>
where
    S: Service<Secured, Response = Option<Vec<u8>>, Error = BoxError>,
{
    tokio::time::timeout(Duration::from_secs(5), svc.ready().await.unwrap().call(msg))
        .await
        .expect("bounded")
        .expect("the CoAP layer does not fail")
}

fn request(ty: MessageType, method: RequestType, mid: u16) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(ty);
    p.header.code = MessageClass::Request(method);
    p.header.message_id = mid;
    p.set_token(vec![0xd0, mid as u8]);
    p.add_option(CoapOption::UriPath, b"actuators".to_vec());
    p.add_option(CoapOption::UriPath, b"door".to_vec());
    p.payload = b"open".to_vec();
    p
}

/// A class of request and what must happen to it.
#[derive(Debug, Clone, Copy)]
enum Class {
    Plain,
    UnknownCritical,
    UnknownElective,
    /// A recognised critical option with a malformed value (If-None-Match carries none).
    MalformedCritical,
    /// A repeated non-repeatable critical option (Accept twice).
    RepeatedCritical,
    ProxyUri,
    ProxyScheme,
    IfMatchStale,
    IfMatchCurrent,
    IfNoneMatch,
    /// Payload marker and no payload (§3).
    EmptyPayload,
    /// Token Length 9 (§3).
    TokenLength9,
    /// An option whose length runs past the end.
    OptionPastEnd,
    /// Option delta nibble 15 that is not the payload marker.
    ReservedNibble,
}

#[derive(Debug, PartialEq)]
enum Expect {
    /// The application runs; the answer has this code.
    Runs(ResponseType),
    /// Answered with this code without the application.
    Refused(ResponseType),
    /// An Empty Reset echoing the Message ID.
    Reset,
    /// Nothing at all.
    Silence,
}

impl Class {
    const ALL: [Class; 14] = [
        Class::Plain,
        Class::UnknownCritical,
        Class::UnknownElective,
        Class::MalformedCritical,
        Class::RepeatedCritical,
        Class::ProxyUri,
        Class::ProxyScheme,
        Class::IfMatchStale,
        Class::IfMatchCurrent,
        Class::IfNoneMatch,
        Class::EmptyPayload,
        Class::TokenLength9,
        Class::OptionPastEnd,
        Class::ReservedNibble,
    ];

    /// The datagram for `p` in this class; `etag` is the door's current ETag.
    fn datagram(self, mut p: Packet, etag: &[u8]) -> Vec<u8> {
        match self {
            Class::Plain | Class::EmptyPayload | Class::TokenLength9 | Class::OptionPastEnd | Class::ReservedNibble => {
            }
            Class::UnknownCritical => p.add_option(CoapOption::Unknown(65001), b"x".to_vec()),
            Class::UnknownElective => p.add_option(CoapOption::Unknown(65000), b"x".to_vec()),
            Class::MalformedCritical => p.add_option(CoapOption::IfNoneMatch, b"x".to_vec()),
            Class::RepeatedCritical => {
                p.add_option(CoapOption::Accept, vec![0]);
                p.add_option(CoapOption::Accept, vec![50]);
            }
            Class::ProxyUri => p.add_option(CoapOption::ProxyUri, b"coap://192.0.2.1/door".to_vec()),
            Class::ProxyScheme => p.add_option(CoapOption::ProxyScheme, b"coap".to_vec()),
            Class::IfMatchStale => p.add_option(CoapOption::IfMatch, b"stale".to_vec()),
            Class::IfMatchCurrent => p.add_option(CoapOption::IfMatch, etag.to_vec()),
            Class::IfNoneMatch => p.add_option(CoapOption::IfNoneMatch, vec![]),
        }
        let mut bytes = p.to_bytes().unwrap();
        match self {
            Class::EmptyPayload => {
                // Everything up to and including the payload marker.
                let cut = bytes.len() - p.payload.len();
                bytes.truncate(cut);
                assert_eq!(bytes.last(), Some(&0xff));
            }
            Class::TokenLength9 => {
                bytes[0] = (bytes[0] & 0xf0) | 9;
            }
            Class::OptionPastEnd => {
                // Drop the payload and marker, then claim 12 more bytes of option value.
                let cut = bytes.len() - p.payload.len() - 1;
                bytes.truncate(cut);
                bytes.push(0x0c);
            }
            Class::ReservedNibble => {
                let cut = bytes.len() - p.payload.len() - 1;
                bytes.truncate(cut);
                bytes.extend_from_slice(&[0xf1, 0x00]);
            }
            _ => {}
        }
        bytes
    }

    fn expect(self, con: bool, method: RequestType) -> Expect {
        let updates = matches!(method, RequestType::Post | RequestType::Put);
        let ok = if updates { ResponseType::Changed } else { ResponseType::Content };
        match self {
            Class::Plain | Class::UnknownElective | Class::IfMatchCurrent => Expect::Runs(ok),
            Class::UnknownCritical | Class::MalformedCritical | Class::RepeatedCritical if con => {
                Expect::Refused(ResponseType::BadOption)
            }
            Class::UnknownCritical | Class::MalformedCritical | Class::RepeatedCritical => Expect::Silence,
            Class::ProxyUri | Class::ProxyScheme => Expect::Refused(ResponseType::ProxyingNotSupported),
            // The application's own rule: it runs, and refuses to change the door.
            Class::IfMatchStale | Class::IfNoneMatch if updates => Expect::Runs(ResponseType::PreconditionFailed),
            Class::IfMatchStale | Class::IfNoneMatch => Expect::Runs(ok),
            Class::EmptyPayload | Class::TokenLength9 | Class::OptionPastEnd | Class::ReservedNibble if con => {
                Expect::Reset
            }
            Class::EmptyPayload | Class::TokenLength9 | Class::OptionPastEnd | Class::ReservedNibble => Expect::Silence,
        }
    }
}

#[tokio::test]
async fn every_option_class_by_type_and_method() {
    let door = Door::default();
    let mut svc = CoapLayer::new().layer(door.app());
    let methods = [RequestType::Get, RequestType::Post, RequestType::Put, RequestType::Delete, RequestType::Fetch];
    let mut mid = 0x100u16;
    let mut rows = 0;
    for class in Class::ALL {
        for con in [true, false] {
            for method in methods {
                mid += 1;
                let ty = if con { MessageType::Confirmable } else { MessageType::NonConfirmable };
                let etag = door.commands.load(Ordering::SeqCst).to_be_bytes();
                let datagram = class.datagram(request(ty, method, mid), &etag);
                let (calls, commands) = (door.calls.load(Ordering::SeqCst), door.commands.load(Ordering::SeqCst));
                let answer = call(&mut svc, secured(datagram)).await;
                let what = format!("{class:?} {} {method:?}", if con { "CON" } else { "NON" });
                let ran = door.calls.load(Ordering::SeqCst) - calls;
                let moved = door.commands.load(Ordering::SeqCst) - commands;
                let expect = class.expect(con, method);
                match &expect {
                    Expect::Runs(code) => {
                        assert_eq!(ran, 1, "{what}: the application runs once");
                        let changed = *code == ResponseType::Changed;
                        assert_eq!(moved, u64::from(changed), "{what}: the door moves only on 2.04");
                    }
                    _ => assert_eq!((ran, moved), (0, 0), "{what}: nothing reaches the application"),
                }
                match expect {
                    Expect::Runs(code) | Expect::Refused(code) => {
                        let r = Packet::from_bytes(&answer.unwrap_or_else(|| panic!("{what}: no answer")))
                            .expect("valid CoAP");
                        assert_eq!(r.header.code, MessageClass::Response(code), "{what}");
                        assert_eq!(r.get_token(), &[0xd0, mid as u8], "{what}");
                        if con {
                            // Piggybacked (§5.2.1).
                            assert_eq!(r.header.get_type(), MessageType::Acknowledgement, "{what}");
                            assert_eq!(r.header.message_id, mid, "{what}");
                        } else {
                            assert_eq!(r.header.get_type(), MessageType::NonConfirmable, "{what}");
                        }
                        if code == ResponseType::BadOption {
                            let diagnostic = String::from_utf8(r.payload).unwrap();
                            assert!(diagnostic.contains("not understood"), "{what}: {diagnostic}");
                        }
                    }
                    Expect::Reset => {
                        let [a, b] = mid.to_be_bytes();
                        assert_eq!(answer, Some(vec![0x70, 0x00, a, b]), "{what}: an Empty Reset (§4.2)");
                    }
                    Expect::Silence => assert_eq!(answer, None, "{what}"),
                }
                rows += 1;
            }
        }
    }
    assert_eq!(rows, 14 * 2 * 5);
    // The rows that run a command: Plain, UnknownElective, IfMatchCurrent × CON/NON × POST/PUT.
    assert_eq!(door.commands.load(Ordering::SeqCst), 3 * 2 * 2);
}

/// The application's own options, and proxying, are configuration.
#[tokio::test]
async fn declared_options_and_proxying_pass() {
    use coaps_tower::coap::rules::{MessageRules, UnderstoodOptions};
    let door = Door::default();
    let rules = MessageRules { understood: UnderstoodOptions::default().with(65001), proxy: true };
    let mut svc = CoapLayer::with_config(CoapConfig { rules, ..Default::default() }).layer(door.app());
    for (mid, option, value) in [(1u16, 65001u16, &b"x"[..]), (2, 35, b"coap://192.0.2.1/door"), (3, 39, b"coap")] {
        let mut p = request(MessageType::Confirmable, RequestType::Post, mid);
        p.add_option(CoapOption::from(option), value.to_vec());
        let r = Packet::from_bytes(&call(&mut svc, secured(p.to_bytes().unwrap())).await.unwrap()).unwrap();
        assert_eq!(r.header.code, MessageClass::Response(ResponseType::Changed), "option {option}");
    }
    assert_eq!(door.commands.load(Ordering::SeqCst), 3);
    // A recognised elective option with a malformed value is removed before the application.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let mut svc = CoapLayer::new().layer(service_fn(move |req: CoapRequest| {
        seen2.lock().unwrap().push(req.message.clone());
        let resp = req.response();
        async move { Ok::<_, Infallible>(resp) }
    }));
    let mut p = request(MessageType::Confirmable, RequestType::Get, 9);
    p.add_option(CoapOption::Observe, vec![1, 2, 3, 4]); // at most 3 bytes (RFC 7641 §2)
    p.add_option(CoapOption::MaxAge, vec![1]);
    p.add_option(CoapOption::MaxAge, vec![2]); // not repeatable
    call(&mut svc, secured(p.to_bytes().unwrap())).await.unwrap();
    let got = seen.lock().unwrap()[0].clone();
    assert!(got.get_option(CoapOption::Observe).is_none());
    assert_eq!(got.get_option(CoapOption::MaxAge).unwrap().len(), 1);
    assert_eq!(got.get_option(CoapOption::UriPath).unwrap().len(), 2);
}

/// Issue 15, item 5: a new session from the same address that reuses the Message ID and token
/// of the previous session's request gets a fresh answer, never the stored one, whether it is
/// the same principal or another; a copy on the first association (a replayed 0-RTT flight
/// carries the same ClientHello random) still gets the stored answer.
#[tokio::test]
async fn a_new_session_from_the_same_address_never_gets_the_old_answer() {
    let door = Door::default();
    let mut svc = CoapLayer::new().layer(door.app());
    let post = request(MessageType::Confirmable, RequestType::Post, 0x4242).to_bytes().unwrap();
    let on = |random: u8, identity: &[u8]| {
        let mut s = secured(post.clone());
        s.association = Association::from_client_random([random; 32]);
        s.identity = PeerIdentity::Psk(identity.to_vec());
        s
    };
    let payload = |b: Option<Vec<u8>>| Packet::from_bytes(&b.unwrap()).unwrap().payload;
    assert_eq!(payload(call(&mut svc, on(1, b"alice")).await), b"1");
    // Session 2: same address, same principal, same Message ID and token.
    assert_eq!(payload(call(&mut svc, on(2, b"alice")).await), b"2");
    // Its own retransmission is a duplicate.
    assert_eq!(payload(call(&mut svc, on(2, b"alice")).await), b"2");
    // Session 3: another principal took the address over.
    assert_eq!(payload(call(&mut svc, on(3, b"mallory")).await), b"3");
    // A copy on the first association (same ClientHello) is the first exchange.
    assert_eq!(payload(call(&mut svc, on(1, b"alice")).await), b"1");
    assert_eq!(door.commands.load(Ordering::SeqCst), 3);
    assert_eq!(door.calls.load(Ordering::SeqCst), 3);
}
