//! The `coap_layer` target: raw CoAP datagrams (the plaintext of DTLS application-data
//! records) through `coaps_tower::CoapLayer` over a door actuator like the demo's.
//!
//! Input: `flags:u8`, then steps `ctl:u8 len:u16be datagram` (a short tail is taken as is).
//! Flags: bit 0 the application proxies, bit 1 it recognises no option at all, bit 2 a 64-byte
//! response cap, bit 3 a two-entry deduplication store. `ctl & 3` picks one of four
//! associations (0 and 1 share a PSK identity, 2 is another identity, 3 is anonymous); bit 2
//! replaces the association by a hand-built record (no association known).
//!
//! Checked for every datagram: no panic; the answer is bounded by the response cap, is valid
//! CoAP, and is an ACK (piggybacked, same Message ID) or a Reset (same Message ID) for a CON
//! request and never an ACK for a NON one; whatever the rules refuse (Reset, 4.02, 4.05,
//! 5.05, silence for a malformed or refused message) never reaches the application; the
//! application never sees a critical option it does not recognise, nor Proxy-Uri/Scheme
//! unless it proxies; the total pre-parser (`rules::scan`) accepts nothing coap-lite rejects.

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use coaps_dtls::PeerIdentity;
use coaps_tower::coap::rules::{self, MessageRules, Precondition, UnderstoodOptions};
use coaps_tower::coap::{CoapConfig, CoapLayer};
use coaps_tower::{Association, CoapRequest, Secured};
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use tower::{Layer, Service};

/// The demo door: POST/PUT count a command unless If-Match/If-None-Match fails (4.12); GET
/// answers the count and echoes the payload twice (so large requests hit the response cap).
#[derive(Clone)]
struct Door {
    commands: Arc<AtomicU64>,
    calls: Arc<AtomicU64>,
    rules: MessageRules,
}

impl Service<CoapRequest> for Door {
    type Response = Packet;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Packet, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: CoapRequest) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        for (&number, _) in req.message.options() {
            assert!(
                !rules::is_critical(number) || self.rules.understood.contains(number),
                "critical option {number} reached the application"
            );
            assert!(
                self.rules.proxy || !matches!(number, rules::PROXY_URI | rules::PROXY_SCHEME),
                "Proxy-Uri/Scheme reached an application that does not proxy"
            );
        }
        let MessageClass::Request(method) = req.message.header.code else {
            panic!("a non-request reached the application: {}", req.message.header.code)
        };
        let mut resp = req.response();
        let n = self.commands.load(Ordering::SeqCst);
        match method {
            RequestType::Post | RequestType::Put => {
                if rules::preconditions(&req.message, Some(&n.to_be_bytes())) == Precondition::Failed {
                    resp.header.code = MessageClass::Response(ResponseType::PreconditionFailed);
                } else {
                    self.commands.fetch_add(1, Ordering::SeqCst);
                    resp.header.code = MessageClass::Response(ResponseType::Changed);
                }
            }
            _ => {
                resp.header.code = MessageClass::Response(ResponseType::Content);
                resp.add_option(CoapOption::ETag, n.to_be_bytes().to_vec());
                resp.payload = [req.message.payload.as_slice(), &req.message.payload].concat();
            }
        }
        std::future::ready(Ok(resp))
    }
}

/// Runs `f` to completion on the spot: every future here is ready at once (the door answers
/// synchronously and every exchange finishes before the next datagram).
fn now_or_never<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the CoAP layer left a request pending over a ready application"),
    }
}

/// The `coap_layer` target.
pub fn coap_layer(data: &[u8]) {
    let Some((&flags, mut script)) = data.split_first() else { return };
    let understood = if flags & 2 != 0 { UnderstoodOptions::none() } else { UnderstoodOptions::default() };
    let rules = MessageRules { understood, proxy: flags & 1 != 0 };
    let mut config = CoapConfig { rules: rules.clone(), ..CoapConfig::default() };
    if flags & 4 != 0 {
        config.max_message_size = 64;
    }
    if flags & 8 != 0 {
        config.max_dedup_entries = 2;
    }
    let cap = config.max_message_size.max(64);
    let door = Door { commands: Arc::default(), calls: Arc::default(), rules };
    let mut svc = CoapLayer::with_config(config).layer(door.clone());
    while let Some((&ctl, rest)) = script.split_first() {
        let (len, rest) = match rest {
            [a, b, rest @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), rest),
            _ => (0, &[][..]),
        };
        let (datagram, rest) = rest.split_at(len.min(rest.len()));
        script = rest;
        let index = ctl & 3;
        let identity = match index {
            0 | 1 => PeerIdentity::Psk(b"door-1".to_vec()),
            2 => PeerIdentity::Psk(b"door-2".to_vec()),
            _ => PeerIdentity::Anonymous,
        };
        let association =
            if ctl & 4 != 0 { Association::unknown() } else { Association::from_client_random([index; 32]) };
        let msg = Secured {
            peer: format!("192.0.2.{}:5683", index + 1).parse().expect("literal"),
            identity,
            payload: datagram.to_vec(),
            early_data: false,
            handshake: Default::default(),
            association,
        };
        let scanned = rules::scan(datagram);
        if scanned.is_ok() {
            assert!(Packet::from_bytes(datagram).is_ok(), "scan accepts what coap-lite rejects: {datagram:02x?}");
        }
        let calls = door.calls.load(Ordering::SeqCst);
        now_or_never(std::future::poll_fn(|cx| svc.poll_ready(cx))).expect("ready");
        let answer = now_or_never(svc.call(msg)).expect("the CoAP layer does not fail");
        let ran = door.calls.load(Ordering::SeqCst) > calls;
        let Some(answer) = answer else { continue };
        assert!(answer.len() <= cap, "answer of {} bytes over the cap {cap}", answer.len());
        let resp = Packet::from_bytes(&answer).expect("the layer emits valid CoAP");
        assert_eq!(resp.header.get_version(), 1);
        let (b0, mid) = (datagram[0], u16::from_be_bytes([datagram[2], datagram[3]]));
        let con = (b0 >> 4) & 3 == 0;
        match resp.header.get_type() {
            MessageType::Reset => {
                assert!(con, "a Reset for a NON message");
                assert_eq!(resp.header.message_id, mid);
                assert!(!ran, "a Reset for a request that ran");
            }
            MessageType::Acknowledgement => {
                assert!(con, "an ACK for a NON message");
                assert_eq!(resp.header.message_id, mid);
                let token = scanned.as_ref().expect("answered with an ACK, so well formed").token;
                assert_eq!(resp.get_token(), token);
            }
            MessageType::NonConfirmable => assert!(!con, "a NON answer to a CON request"),
            MessageType::Confirmable => panic!("the layer sent a CON"),
        }
        let refused = matches!(
            resp.header.code,
            MessageClass::Response(
                ResponseType::BadOption | ResponseType::ProxyingNotSupported | ResponseType::MethodNotAllowed
            )
        );
        if refused {
            assert!(!ran, "refused with {} yet the application ran", resp.header.code);
        }
    }
}
