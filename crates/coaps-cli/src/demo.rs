//! The demo application `coaps serve` hosts: a plain `tower::Service<CoapRequest>` that knows
//! nothing about DTLS. The CoAP layer below it has already decoded the message, removed
//! duplicates and will fix the response's type, message ID and token.
//!
//! | path | method | answer |
//! |---|---|---|
//! | `/hello` | GET | 2.05 `Hello, CoAPS!` (text/plain) |
//! | `/.well-known/core` | GET | 2.05 the resources in CoRE Link Format (RFC 6690, content-format 40) |
//! | `/actuators/door` | POST, PUT | runs the command in the payload (e.g. `open`), 2.04 Changed with the number of commands run so far |
//! | `/actuators/door` | GET | 2.05 that number |
//! | `/clock` | GET | 2.05 the UTC time `HH:MM:SS`; observable (RFC 7641), changes every second |
//! | `/large` | GET | 2.05 [`LARGE_LEN`] deterministic bytes ([`large_body`]), sent block-wise (RFC 7959) |
//!
//! The door carries an ETag ([`door_etag`]: the command count), sent with its 2.05 and 2.04
//! answers. A POST or PUT with `If-Match` naming another ETag, or with `If-None-Match` (the
//! door always exists), answers 4.12 Precondition Failed and runs nothing (RFC 7252
//! §5.10.8); the check and the count move together, so two commands racing on one ETag run
//! once.
//!
//! Any other path answers 4.04 Not Found; a known path with another method answers
//! 4.05 Method Not Allowed (RFC 7252 §5.9.2.6).
//!
//! ```
//! use coap_lite::{MessageClass, Packet, RequestType, ResponseType};
//! use coaps_cli::demo::Demo;
//! use coaps_tower::CoapRequest;
//! use tower::ServiceExt;
//!
//! let mut message = Packet::new();
//! message.header.code = MessageClass::Request(RequestType::Get);
//! message.add_option(coap_lite::CoapOption::UriPath, b"hello".to_vec());
//! let request = CoapRequest {
//!     message,
//!     peer: "127.0.0.1:40000".parse().unwrap(),
//!     identity: coaps_dtls::PeerIdentity::Psk(b"coaps-demo".to_vec()),
//!     early_data: false,
//!     handshake: coaps_tower::Handshaken::complete(),
//!     association: coaps_tower::Association::unknown(),
//! };
//! let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! let response = rt.block_on(Demo::new().oneshot(request)).unwrap();
//! assert_eq!(response.header.code, MessageClass::Response(ResponseType::Content));
//! assert_eq!(response.payload, b"Hello, CoAPS!");
//! ```

use coap_lite::{CoapOption, ContentFormat, MessageClass, Packet, RequestType, ResponseType};
use coaps_tower::coap::rules::{Precondition, preconditions};
use coaps_tower::{BoxError, CoapRequest};
use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tower_service::Service;

/// The body of `GET /hello`.
pub const HELLO: &str = "Hello, CoAPS!";

/// Longest door command accepted; a longer payload answers 4.13 Request Entity Too Large.
pub const MAX_COMMAND_LEN: usize = 64;

/// The resource directory served at `/.well-known/core` (RFC 6690 §5: `</path>;attr=value`,
/// comma separated).
pub const WELL_KNOWN_CORE: &str = concat!(
    "</hello>;rt=\"demo.hello\";ct=0,",
    "</actuators/door>;rt=\"demo.door\";if=\"core.a\";ct=0,",
    "</clock>;rt=\"demo.clock\";obs;ct=0,",
    "</large>;rt=\"demo.large\";ct=0;sz=4096"
);

/// The Uri-Path of the observable clock.
pub const CLOCK_PATH: &str = "clock";

/// Length of `GET /large`.
pub const LARGE_LEN: usize = 4096;

/// The body of `GET /large`: 64 lines of 64 bytes, line `n` being `n` in 4 digits, a space, 58
/// letters starting at `a + n mod 26`, and a newline. The same on every server, so a client
/// can check a block-wise transfer byte for byte.
pub fn large_body() -> Vec<u8> {
    let mut out = Vec::with_capacity(LARGE_LEN);
    for line in 0..LARGE_LEN / 64 {
        out.extend_from_slice(format!("{line:04} ").as_bytes());
        out.extend((0..58).map(|i| b'a' + ((line + i) % 26) as u8));
        out.push(b'\n');
    }
    out
}

/// The current UTC time of day, `HH:MM:SS`.
pub fn clock_text() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

/// Tells `observers` that `/clock` changed, every second (runs until the runtime stops).
pub async fn tick_clock(observers: coaps_tower::observe::Observers) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        observers.changed(CLOCK_PATH);
    }
}

/// The door's ETag after `commands` commands (RFC 7252 §5.10.6): the count, big-endian,
/// without leading zero bytes but at least one byte (an ETag is 1 to 8 bytes).
pub fn door_etag(commands: u64) -> Vec<u8> {
    let b = commands.to_be_bytes();
    let skip = b.iter().take_while(|&&x| x == 0).count().min(7);
    b[skip..].to_vec()
}

/// The demo application. Clones share the door's command counter.
#[derive(Debug, Clone, Default)]
pub struct Demo {
    door_commands: Arc<AtomicU64>,
}

impl Demo {
    /// A fresh demo with the door counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many door commands have run so far.
    pub fn door_commands(&self) -> u64 {
        self.door_commands.load(Ordering::SeqCst)
    }

    fn handle(&self, req: &CoapRequest) -> Packet {
        let mut res = req.response();
        let path = uri_path(&req.message);
        let method = match req.message.header.code {
            MessageClass::Request(m) => m,
            // The CoAP layer hands only requests up; anything else is not for the application.
            _ => return status(res, ResponseType::BadRequest, "not a request"),
        };
        let segments: Vec<&[u8]> = path.iter().map(Vec::as_slice).collect();
        match segments.as_slice() {
            [b"hello"] => match method {
                RequestType::Get => content(res, ContentFormat::TextPlain, HELLO.as_bytes().to_vec()),
                _ => method_not_allowed(res),
            },
            [b".well-known", b"core"] => match method {
                RequestType::Get => {
                    content(res, ContentFormat::ApplicationLinkFormat, WELL_KNOWN_CORE.as_bytes().to_vec())
                }
                _ => method_not_allowed(res),
            },
            [b"clock"] => match method {
                RequestType::Get => {
                    let mut res = content(res, ContentFormat::TextPlain, clock_text().into_bytes());
                    // Observable: the observe layer registers a GET with Observe=0 (RFC 7641 §4.1).
                    res.set_observe_value(0);
                    res
                }
                _ => method_not_allowed(res),
            },
            [b"large"] => match method {
                RequestType::Get => content(res, ContentFormat::TextPlain, large_body()),
                _ => method_not_allowed(res),
            },
            [b"actuators", b"door"] => match method {
                RequestType::Get => {
                    let n = self.door_commands();
                    res.add_option(CoapOption::ETag, door_etag(n));
                    content(res, ContentFormat::TextPlain, n.to_string().into_bytes())
                }
                RequestType::Post | RequestType::Put => {
                    let command = &req.message.payload;
                    if command.len() > MAX_COMMAND_LEN {
                        return status(
                            res,
                            ResponseType::RequestEntityTooLarge,
                            &format!("door commands are at most {MAX_COMMAND_LEN} bytes"),
                        );
                    }
                    // The precondition is checked against the count the command replaces, so a
                    // command that lost a race with another re-checks against the new ETag.
                    let mut current = self.door_commands();
                    let n = loop {
                        if preconditions(&req.message, Some(&door_etag(current))) == Precondition::Failed {
                            return status(res, ResponseType::PreconditionFailed, "the door changed (ETag)");
                        }
                        match self.door_commands.compare_exchange(
                            current,
                            current + 1,
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        ) {
                            Ok(_) => break current + 1,
                            Err(now) => current = now,
                        }
                    };
                    tracing::info!(
                        peer = %coaps_tower::DisplayAddr(req.peer),
                        identity = %req.identity,
                        command = %String::from_utf8_lossy(command),
                        total = n,
                        "door command executed"
                    );
                    res.header.code = MessageClass::Response(ResponseType::Changed);
                    res.set_content_format(ContentFormat::TextPlain);
                    res.add_option(CoapOption::ETag, door_etag(n));
                    res.payload = n.to_string().into_bytes();
                    res
                }
                _ => method_not_allowed(res),
            },
            _ => {
                res.header.code = MessageClass::Response(ResponseType::NotFound);
                res
            }
        }
    }
}

/// The method's name as RFC 7252 §12.1.1 and RFC 8132 §6 write it.
fn method_name(m: RequestType) -> &'static str {
    match m {
        RequestType::Get => "GET",
        RequestType::Post => "POST",
        RequestType::Put => "PUT",
        RequestType::Delete => "DELETE",
        RequestType::Fetch => "FETCH",
        RequestType::Patch => "PATCH",
        RequestType::IPatch => "iPATCH",
        _ => "UNKNOWN",
    }
}

/// The Uri-Path options of `packet`, in order (RFC 7252 §5.10.1: one option per segment).
fn uri_path(packet: &Packet) -> Vec<Vec<u8>> {
    packet.get_option(CoapOption::UriPath).map(|l| l.iter().cloned().collect()).unwrap_or_default()
}

fn content(mut res: Packet, format: ContentFormat, payload: Vec<u8>) -> Packet {
    res.header.code = MessageClass::Response(ResponseType::Content);
    res.set_content_format(format);
    res.payload = payload;
    res
}

fn method_not_allowed(mut res: Packet) -> Packet {
    res.header.code = MessageClass::Response(ResponseType::MethodNotAllowed);
    res
}

/// An error response with a diagnostic payload (RFC 7252 §5.5.2).
fn status(mut res: Packet, code: ResponseType, diagnostic: &str) -> Packet {
    res.header.code = MessageClass::Response(code);
    res.payload = diagnostic.as_bytes().to_vec();
    res
}

impl Service<CoapRequest> for Demo {
    type Response = Packet;
    type Error = BoxError;
    type Future = Ready<Result<Packet, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: CoapRequest) -> Self::Future {
        let res = self.handle(&req);
        let path: Vec<String> =
            uri_path(&req.message).iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect();
        let query: Vec<String> = req
            .message
            .get_option(CoapOption::UriQuery)
            .map(|l| l.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect())
            .unwrap_or_default();
        let query = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
        let method = match req.message.header.code {
            MessageClass::Request(m) => method_name(m),
            _ => "NOT-A-REQUEST",
        };
        let code = crate::client::code_text(res.header.code);
        coaps_tower::telemetry::request(method, code.split(' ').next().unwrap_or_default().to_owned());
        tracing::info!(
            peer = %coaps_tower::DisplayAddr(req.peer),
            identity = %req.identity,
            "{method} /{}{query} -> {code}",
            path.join("/"),
        );
        ready(Ok(res))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coap_lite::MessageType;
    use coaps_dtls::PeerIdentity;
    use tower::ServiceExt;

    fn request(method: RequestType, path: &str, payload: &[u8]) -> CoapRequest {
        let mut message = Packet::new();
        message.header.set_type(MessageType::Confirmable);
        message.header.code = MessageClass::Request(method);
        message.header.message_id = 0x1234;
        message.set_token(vec![0xa1, 0xb2]);
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            message.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
        }
        message.payload = payload.to_vec();
        CoapRequest {
            message,
            peer: "127.0.0.1:40000".parse().unwrap(),
            identity: PeerIdentity::Psk(b"coaps-demo".to_vec()),
            early_data: false,
            handshake: coaps_tower::Handshaken::complete(),
            association: coaps_tower::Association::unknown(),
        }
    }

    fn call(demo: &Demo, method: RequestType, path: &str, payload: &[u8]) -> Packet {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(demo.clone().oneshot(request(method, path, payload))).unwrap()
    }

    fn code(p: &Packet) -> MessageClass {
        p.header.code
    }

    #[test]
    fn hello() {
        let res = call(&Demo::new(), RequestType::Get, "/hello", b"");
        assert_eq!(code(&res), MessageClass::Response(ResponseType::Content));
        assert_eq!(res.payload, b"Hello, CoAPS!");
        assert_eq!(res.get_content_format(), Some(ContentFormat::TextPlain));
        // The skeleton from CoapRequest::response: piggybacked ACK, same MID and token.
        assert_eq!(res.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(res.header.message_id, 0x1234);
        assert_eq!(res.get_token(), &[0xa1, 0xb2]);
    }

    #[test]
    fn well_known_core_is_link_format_listing_every_resource() {
        let res = call(&Demo::new(), RequestType::Get, "/.well-known/core", b"");
        assert_eq!(code(&res), MessageClass::Response(ResponseType::Content));
        assert_eq!(res.get_content_format(), Some(ContentFormat::ApplicationLinkFormat));
        let body = String::from_utf8(res.payload).unwrap();
        // Parse it back with coap-lite's RFC 6690 parser.
        let targets: Vec<String> =
            coap_lite::link_format::LinkFormatParser::new(&body).map(|link| link.unwrap().0.to_string()).collect();
        assert_eq!(targets, ["/hello", "/actuators/door", "/clock", "/large"]);
        // Every advertised resource answers GET with 2.05.
        let demo = Demo::new();
        for t in targets {
            assert_eq!(code(&call(&demo, RequestType::Get, &t, b"")), MessageClass::Response(ResponseType::Content));
        }
    }

    #[test]
    fn door_counts_commands_for_post_and_put() {
        let demo = Demo::new();
        let get = |d: &Demo| call(d, RequestType::Get, "/actuators/door", b"").payload;
        assert_eq!(get(&demo), b"0");
        let r1 = call(&demo, RequestType::Post, "/actuators/door", b"open");
        assert_eq!(code(&r1), MessageClass::Response(ResponseType::Changed));
        assert_eq!(r1.payload, b"1");
        let r2 = call(&demo, RequestType::Put, "/actuators/door", b"close");
        assert_eq!(code(&r2), MessageClass::Response(ResponseType::Changed));
        assert_eq!(r2.payload, b"2");
        assert_eq!(get(&demo), b"2");
        assert_eq!(demo.door_commands(), 2);
        // A clone shares the counter (the server clones the service per request).
        assert_eq!(get(&demo.clone()), b"2");
    }

    #[test]
    fn oversized_door_command_is_refused_and_not_counted() {
        let demo = Demo::new();
        let res = call(&demo, RequestType::Post, "/actuators/door", &[b'x'; MAX_COMMAND_LEN + 1]);
        assert_eq!(code(&res), MessageClass::Response(ResponseType::RequestEntityTooLarge));
        assert_eq!(demo.door_commands(), 0);
        let ok = call(&demo, RequestType::Post, "/actuators/door", &[b'x'; MAX_COMMAND_LEN]);
        assert_eq!(code(&ok), MessageClass::Response(ResponseType::Changed));
    }

    #[test]
    fn door_preconditions_follow_its_etag() {
        let demo = Demo::new();
        let with = |opt: CoapOption, value: &[u8]| {
            let mut req = request(RequestType::Post, "/actuators/door", b"open");
            req.message.add_option(opt, value.to_vec());
            req
        };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let run = |req: CoapRequest| rt.block_on(demo.clone().oneshot(req)).unwrap();
        let get = call(&demo, RequestType::Get, "/actuators/door", b"");
        let etag = get.get_first_option(CoapOption::ETag).cloned().expect("the door has an ETag");
        assert_eq!(etag, door_etag(0));
        // Another ETag: 4.12, nothing runs.
        let stale = run(with(CoapOption::IfMatch, &door_etag(7)));
        assert_eq!(code(&stale), MessageClass::Response(ResponseType::PreconditionFailed));
        assert_eq!(demo.door_commands(), 0);
        // The door exists: If-None-Match fails.
        let none = run(with(CoapOption::IfNoneMatch, b""));
        assert_eq!(code(&none), MessageClass::Response(ResponseType::PreconditionFailed));
        assert_eq!(demo.door_commands(), 0);
        // The current ETag: runs once, and the ETag moves on, so the same request again fails.
        let ok = run(with(CoapOption::IfMatch, &etag));
        assert_eq!(code(&ok), MessageClass::Response(ResponseType::Changed));
        assert_eq!(ok.get_first_option(CoapOption::ETag), Some(&door_etag(1)));
        let again = run(with(CoapOption::IfMatch, &etag));
        assert_eq!(code(&again), MessageClass::Response(ResponseType::PreconditionFailed));
        // An empty If-Match only asks that the door exists.
        assert_eq!(code(&run(with(CoapOption::IfMatch, b""))), MessageClass::Response(ResponseType::Changed));
        assert_eq!(demo.door_commands(), 2);
        assert_eq!(door_etag(0), vec![0]);
        assert_eq!(door_etag(0x1_0000), vec![1, 0, 0]);
    }

    #[test]
    fn unknown_paths_are_not_found() {
        let demo = Demo::new();
        for path in ["/", "/hello/world", "/Hello", "/actuators", "/actuators/window", "/.well-known"] {
            let res = call(&demo, RequestType::Get, path, b"");
            assert_eq!(code(&res), MessageClass::Response(ResponseType::NotFound), "{path}");
        }
        // Also for methods that would be allowed on a known path.
        let res = call(&demo, RequestType::Post, "/nothing", b"open");
        assert_eq!(code(&res), MessageClass::Response(ResponseType::NotFound));
        assert_eq!(demo.door_commands(), 0);
    }

    #[test]
    fn wrong_methods_are_not_allowed() {
        let demo = Demo::new();
        let cases = [
            (RequestType::Post, "/hello"),
            (RequestType::Put, "/hello"),
            (RequestType::Delete, "/hello"),
            (RequestType::Delete, "/.well-known/core"),
            (RequestType::Post, "/.well-known/core"),
            (RequestType::Delete, "/actuators/door"),
            (RequestType::Fetch, "/actuators/door"),
        ];
        for (m, path) in cases {
            let res = call(&demo, m, path, b"open");
            assert_eq!(code(&res), MessageClass::Response(ResponseType::MethodNotAllowed), "{m:?} {path}");
        }
        assert_eq!(demo.door_commands(), 0, "a refused method must not run a command");
    }

    #[test]
    fn a_non_request_is_a_bad_request() {
        let mut req = request(RequestType::Get, "/hello", b"");
        req.message.header.code = MessageClass::Response(ResponseType::Content);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let res = rt.block_on(Demo::new().oneshot(req)).unwrap();
        assert_eq!(code(&res), MessageClass::Response(ResponseType::BadRequest));
    }
}
