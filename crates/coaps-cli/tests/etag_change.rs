//! `coaps get` of a resource whose representation changes mid-transfer (RFC 7959 §2.4: the
//! ETag tells the blocks of one representation from another's) never outputs a spliced body:
//! one change restarts the transfer and the whole new representation is printed; a resource
//! that changes on every request ends in exit code 1 with the documented message and nothing
//! on stdout. The server is a CoAPS stack of this workspace whose application answers Block2
//! itself (no `BlockLayer`, which would keep one representation per transfer).

use coap_lite::{CoapOption, MessageClass, Packet, ResponseType};
use coaps_dtls::{Psk, ServerConfig, StaticPsks};
use coaps_test_support::cli::*;
use coaps_tower::block::BlockOption;
use coaps_tower::{CoapLayer, CoapRequest, CookieLayer, HandshakeLayer, Server};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tower::ServiceBuilder;

const BODY: usize = 3000;
const LIMIT: Duration = Duration::from_secs(40);

/// Representation `version`: 3000 bytes, every one of them the version's low byte, so any
/// splice of two versions shows.
fn body(version: u64) -> Vec<u8> {
    vec![version as u8; BODY]
}

/// Answers `GET /once` (changes once: when block 1 is first asked for) and `GET /always`
/// (changes on every request) one Block2 block at a time, with the version as ETag.
fn answer(req: &CoapRequest, once: &AtomicU64, always: &AtomicU64) -> Packet {
    let mut res = req.response();
    let path: Vec<String> = req
        .message
        .get_option(CoapOption::UriPath)
        .map(|l| l.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect())
        .unwrap_or_default();
    let block = BlockOption::from_packet(&req.message, CoapOption::Block2)
        .and_then(Result::ok)
        .unwrap_or(BlockOption::new(0, false, 2));
    let version = match path.join("/").as_str() {
        "once" => {
            if block.num >= 1 {
                let _ = once.compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst);
            }
            once.load(Ordering::SeqCst)
        }
        "always" => always.fetch_add(1, Ordering::SeqCst),
        _ => {
            res.header.code = MessageClass::Response(ResponseType::NotFound);
            return res;
        }
    };
    let full = body(version);
    let start = (block.offset()).min(BODY);
    let end = (start + block.size()).min(BODY);
    res.header.code = MessageClass::Response(ResponseType::Content);
    res.add_option(CoapOption::ETag, version.to_be_bytes().to_vec());
    BlockOption::new(block.num, end < BODY, block.szx).set_in(&mut res, CoapOption::Block2);
    res.payload = full[start..end].to_vec();
    res
}

/// Starts the server on its own thread and runtime; returns its port (the thread ends with the
/// test process).
fn start_server() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let psk = Psk::new("etag-test", b"etag-test-key".to_vec()).unwrap();
            let config =
                Arc::new(ServerConfig { psks: Some(Arc::new(StaticPsks(vec![psk]))), ..ServerConfig::default() });
            let cookies = CookieLayer::for_server(&config);
            let handshake = HandshakeLayer::builder(config).behind(&cookies).build();
            let associations = handshake.associations();
            let (once, always) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(100)));
            let app = tower::service_fn(move |req: CoapRequest| {
                let res = answer(&req, &once, &always);
                async move { Ok::<_, Infallible>(res) }
            });
            let service = ServiceBuilder::new().layer(cookies).layer(handshake).layer(CoapLayer::new()).service(app);
            socket.set_nonblocking(true).unwrap();
            let socket = tokio::net::UdpSocket::from_std(socket).unwrap();
            let _ = Server::new(socket).out_of_band(associations).serve(service, std::future::pending::<()>()).await;
        });
    });
    port
}

fn get(port: u16, path: &str) -> std::process::Output {
    let mut cmd = coaps();
    cmd.args(["get", "-u", "etag-test", "-k", "etag-test-key", "-b", "64", "-B", "20"]);
    cmd.arg(format!("coaps://127.0.0.1:{port}/{path}"));
    run(cmd, LIMIT)
}

#[test]
fn a_changed_representation_is_fetched_again_whole() {
    let port = start_server();
    let out = get(port, "once");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // Block 0 of version 0, then version 1 from block 1 on: the client starts again and
    // prints version 1 only.
    // (A terminal-friendly newline may follow the body.)
    let body = out.stdout.strip_suffix(b"\n").unwrap_or(&out.stdout);
    assert_eq!(body.len(), BODY, "{}", show(&out));
    assert!(body.iter().all(|&b| b == 1), "a spliced body was printed: {:?}", &body[..80]);
}

#[test]
fn a_representation_that_keeps_changing_ends_in_exit_1_and_no_output() {
    let port = start_server();
    let out = get(port, "always");
    assert_eq!(out.status.code(), Some(1), "documented: exit 1 for a transfer changed mid-way: {}", show(&out));
    assert!(out.stdout.is_empty(), "nothing of the body is printed: {} bytes", out.stdout.len());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the resource changed during the block-wise transfer (ETag changed"), "{err}");
}
