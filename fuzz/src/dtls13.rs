//! DTLS 1.3 endpoint targets: configurations, a reference ticket for resumption, the
//! server and client endpoint targets and the man-in-the-middle mode that mutates a real
//! handshake's datagrams in flight.

use crate::{
    SERVER_NAME, advance_of, client_config, drain, encode_op, ops, peer, run_client_script, server_addr, server_config,
    settle,
};
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::Zeroizing;
use coaps_dtls::{ClientConfig, DtlsVersion, Endpoint, Event, ServerConfig, Session, SessionStore};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// Seed of the server endpoint in the 1.3 targets.
pub const SERVER_SEED13: u64 = 0x5e7e_1300;
/// Seed of the client endpoint in the 1.3 targets.
pub const CLIENT_SEED13: u64 = 0xc11e_1300;

/// A read-only session store holding one ticket, re-dated to the lookup time so a fuzz run of
/// any length keeps resuming; `put` is ignored and `take` leaves the ticket in place so
/// iterations stay independent.
#[derive(Debug)]
struct FixedStore(Session);

impl SessionStore for FixedStore {
    fn put(&self, _: &[u8], _: Zeroizing<Vec<u8>>, _: Duration, _: Instant) {}
    fn get(&self, id: &[u8], now: Instant) -> Option<Zeroizing<Vec<u8>>> {
        (id == self.0.id).then(|| {
            let mut s = self.0.clone();
            s.established_at = now;
            s.encode(now, SystemTime::now())
        })
    }
    fn take(&self, id: &[u8], now: Instant) -> Option<Zeroizing<Vec<u8>>> {
        self.get(id, now)
    }
}

/// The ticket of a reference PSK handshake: (server's issued session, client's session).
fn reference_ticket() -> &'static (Session, Session) {
    static T: OnceLock<(Session, Session)> = OnceLock::new();
    T.get_or_init(|| {
        let mut s = (*server_config13(0)).clone();
        // The external-store mode: the server keeps nothing and reports the ticket.
        s.session_store = None;
        s.session_events = true;
        let now = Instant::now();
        let mut server = Endpoint::server(Arc::new(s), SeededRng::from_seed_u64(1), now);
        let mut client = Endpoint::client(SeededRng::from_seed_u64(2));
        client.connect(now, server_addr(), client_config13(0), SERVER_NAME, None).expect("connect");
        let mut issued = None;
        for _ in 0..50 {
            while let Some(t) = client.poll_transmit() {
                server.handle_datagram(now, peer(true, 0), &t.payload);
            }
            while let Some(t) = server.poll_transmit() {
                client.handle_datagram(now, server_addr(), &t.payload);
            }
            while let Some((_, ev)) = server.poll_event() {
                if let Event::TicketIssued(t) = ev {
                    issued.get_or_insert(*t);
                }
            }
            while client.poll_event().is_some() {}
        }
        let c = client.connection(&server_addr()).and_then(|c| c.session().cloned()).expect("client got a ticket");
        (issued.expect("server issued a ticket"), c)
    })
}

/// Server configuration of the 1.3 targets: [`server_config`]'s bits 0-2 (bit 0 cookies off,
/// bit 1 optional client certificate, bit 2 raw public keys), bit 3 DTLS 1.3 only (no 1.2
/// fallback), bit 4 a session store holding the reference ticket (resumption).
pub fn server_config13(flags: u8) -> Arc<ServerConfig> {
    static C: [OnceLock<Arc<ServerConfig>>; 256] = [const { OnceLock::new() }; 256];
    crate::once_per_flags(&C, flags, |flags| {
        let mut cfg = (*server_config(flags & 7)).clone();
        cfg.dtls13 = true;
        cfg.dtls12 = flags & 8 == 0;
        cfg.session_store = None;
        if flags & 16 != 0 {
            cfg.session_store = Some(Arc::new(FixedStore(reference_ticket().0.clone())));
        }
        cfg
    })
}

/// Client configuration of the 1.3 targets: [`client_config`]'s modes (bits 0-1: external
/// PSK, X.509, raw public key, X.509 with a client certificate) offering DTLS 1.3. Bit 4 (see
/// [`new_client13`]) resumes the reference ticket.
pub fn client_config13(flags: u8) -> Arc<ClientConfig> {
    static C: [OnceLock<Arc<ClientConfig>>; 256] = [const { OnceLock::new() }; 256];
    crate::once_per_flags(&C, flags, |flags| {
        let mut cfg = (*client_config(flags & 3)).clone();
        cfg.version = DtlsVersion::Dtls13;
        cfg
    })
}

/// A fresh 1.3 server endpoint.
pub fn new_server13(flags: u8, now: Instant) -> Endpoint {
    Endpoint::server(server_config13(flags), SeededRng::from_seed_u64(SERVER_SEED13), now)
}

/// A fresh 1.3 client endpoint that has sent its ClientHello; bit 4 of `flags` offers the
/// reference ticket.
pub fn new_client13(flags: u8, now: Instant) -> Endpoint {
    let resume = (flags & 16 != 0).then(|| {
        let mut s = reference_ticket().1.clone();
        s.established_at = now;
        s
    });
    let mut ep = Endpoint::client(SeededRng::from_seed_u64(CLIENT_SEED13));
    ep.connect(now, server_addr(), client_config13(flags), SERVER_NAME, resume).expect("connect");
    ep
}

/// Input of the endpoint targets: `flags:u8 mode:u8 rest`.
fn header(data: &[u8]) -> Option<(u8, u8, &[u8])> {
    match data {
        [flags, mode, rest @ ..] => Some((*flags, *mode, rest)),
        _ => None,
    }
}

/// A DTLS 1.3 server endpoint. Input: server flags ([`server_config13`]), a mode byte, then:
///
/// * mode bit 0 clear: a script of datagrams from four peers with the clock moving, as in
///   `server_endpoint` ([`crate::ops`]);
/// * mode bit 0 set: structured: a real 1.3 client (flags `mode >> 1`, see
///   [`client_config13`]) starts from a valid ClientHello and every datagram it sends is
///   mutated as the rest of the input says ([`mitm`]), so the fuzzer gets past the cookie gate
///   and the first checks.
///
/// Checks: no datagram over the MTU, never more associations than peers, and a stateless
/// answer (HelloRetryRequest) never larger than 3 times what the unknown peer sent.
pub fn server_endpoint13(data: &[u8]) {
    let Some((flags, mode, rest)) = header(data) else { return };
    if mode & 1 == 1 {
        mitm(flags, mode >> 1, rest, Direction::ToServer);
        return;
    }
    let mut now = Instant::now();
    let mut ep = new_server13(flags, now);
    let mtu = coaps_dtls::CommonConfig::default().mtu;
    for op in ops(rest) {
        now += op.advance;
        ep.handle_timeout(now);
        drain(&mut ep, mtu);
        let from = peer(true, op.peer);
        let known = ep.connection(&from).is_some();
        let hrr_before = ep.stats().hello_retry_requests;
        ep.handle_datagram(now, from, op.datagram);
        if !known && ep.connection(&from).is_none() {
            // RFC 9147 §5.1: a stateless answer is at most three times the datagram.
            let mut answered = 0;
            while let Some(t) = ep.poll_transmit() {
                assert!(t.payload.len() <= mtu);
                answered += t.payload.len();
            }
            assert!(answered <= 3 * op.datagram.len(), "{answered} bytes answered to {}", op.datagram.len());
            assert!(ep.stats().hello_retry_requests - hrr_before <= 1);
        }
        drain(&mut ep, mtu);
        assert!(ep.connection_count() <= 3, "more associations than peers");
    }
    settle(&mut ep, now, mtu);
}

/// A DTLS 1.3 client endpoint after its ClientHello. Input: client flags
/// ([`client_config13`]; bit 4 resumes a ticket), a mode byte, then:
///
/// * mode bit 0 clear: a script of datagrams from the server and three strangers;
/// * mode bit 0 set: a real 1.3 server (flags `mode >> 1`, see [`server_config13`]) answers,
///   and every datagram it sends is mutated as the rest of the input says ([`mitm`]).
pub fn client_endpoint13(data: &[u8]) {
    let Some((flags, mode, rest)) = header(data) else { return };
    if mode & 1 == 1 {
        mitm(mode >> 1, flags, rest, Direction::ToClient);
        return;
    }
    let now = Instant::now();
    run_client_script(&mut new_client13(flags, now), now, rest);
}

/// Which datagrams [`mitm`] mutates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server (the server is the target).
    ToServer,
    /// Server to client (the client is the target).
    ToClient,
}

/// Applies one mutation from `ctl` to `d`: returns the datagrams to deliver instead.
/// `ctl & 7`: 0 pass, 1 drop, 2 flip one byte (`pos:u16 xor:u8`), 3 truncate (`len:u16`),
/// 4 duplicate, 5 replace (`n:u8` bytes), 6 append (`n:u8` bytes), 7 several flips (`k:u8`
/// then `k` times `pos:u16 xor:u8`). `ctl >> 3` moves the clock first ([`advance_of`]).
fn mutate(ctl: u8, d: Vec<u8>, input: &mut &[u8]) -> Vec<Vec<u8>> {
    fn take<'a>(input: &mut &'a [u8], n: usize) -> &'a [u8] {
        let (a, b) = input.split_at(n.min(input.len()));
        *input = b;
        a
    }
    fn u16_of(input: &mut &[u8]) -> usize {
        let b = take(input, 2);
        usize::from(u16::from_be_bytes([b.first().copied().unwrap_or(0), b.get(1).copied().unwrap_or(0)]))
    }
    fn u8_of(input: &mut &[u8]) -> u8 {
        take(input, 1).first().copied().unwrap_or(0)
    }
    fn flip(d: &mut [u8], input: &mut &[u8]) {
        let (pos, x) = (u16_of(input), u8_of(input));
        if !d.is_empty() {
            let n = d.len();
            d[pos % n] ^= x.max(1);
        }
    }
    let mut d = d;
    match ctl & 7 {
        0 => vec![d],
        1 => vec![],
        2 => {
            flip(&mut d, input);
            vec![d]
        }
        3 => {
            let n = u16_of(input) % d.len().max(1);
            d.truncate(n);
            vec![d]
        }
        4 => vec![d.clone(), d],
        5 => {
            let n = usize::from(u8_of(input));
            vec![take(input, n).to_vec()]
        }
        6 => {
            let n = usize::from(u8_of(input));
            d.extend_from_slice(take(input, n));
            vec![d]
        }
        _ => {
            for _ in 0..u8_of(input) % 8 {
                flip(&mut d, input);
            }
            vec![d]
        }
    }
}

/// How many datagrams [`mitm`] delivers at most. A complete handshake with a
/// HelloRetryRequest, an echoed message and every retransmission budget spent takes well under
/// a hundred. Some mutations start exchanges that never settle and grow by a datagram or two
/// per round (see the fuzz README): past this point they only repeat the same code, at up to
/// 50,000 datagrams and a second per execution.
const MAX_DELIVERIES: usize = 400;

/// A real 1.3 handshake (server flags, client flags as in [`server_config13`] /
/// [`client_config13`]) plus one echoed message, with every datagram in direction `dir`
/// mutated by the next control byte of `input` (see `mutate`; once the input runs out
/// datagrams pass unchanged). Both endpoints check the MTU; the server never has more than
/// one association. With no mutation at all, both sides must connect.
pub fn mitm(server_flags: u8, client_flags: u8, mut input: &[u8], dir: Direction) {
    let mut now = Instant::now();
    let mut server = new_server13(server_flags, now);
    let mut client = new_client13(client_flags, now);
    let mtu = coaps_dtls::CommonConfig::default().mtu;
    let client_addr = peer(true, 0);
    let mut pristine = true;
    let (mut client_up, mut server_up, mut sent) = (false, false, false);
    let mut delivered = 0usize;
    for _ in 0..200 {
        if delivered >= MAX_DELIVERIES {
            break;
        }
        let mut to_server = Vec::new();
        let mut to_client = Vec::new();
        while let Some(t) = client.poll_transmit() {
            assert!(t.payload.len() <= mtu);
            to_server.push(t.payload);
        }
        while let Some(t) = server.poll_transmit() {
            assert!(t.payload.len() <= mtu);
            assert_eq!(t.destination, client_addr);
            to_client.push(t.payload);
        }
        if to_server.is_empty() && to_client.is_empty() {
            // Idle: fire the earliest timer, or stop.
            let Some(t) = [client.poll_timeout(), server.poll_timeout()].into_iter().flatten().min() else { break };
            now = now.max(t);
            client.handle_timeout(now);
            server.handle_timeout(now);
        }
        // The attacker's direction: each datagram takes one control byte of the input (clock
        // step and mutation) while input lasts; the other direction passes untouched.
        let mut intercept = |this: Direction, d: Vec<u8>, now: &mut Instant| {
            if dir != this || input.is_empty() {
                return vec![d];
            }
            let ctl = input[0];
            input = &input[1..];
            pristine &= ctl == 0;
            *now += advance_of(ctl >> 3);
            mutate(ctl, d, &mut input)
        };
        for d in to_server {
            for d in intercept(Direction::ToServer, d, &mut now) {
                if delivered < MAX_DELIVERIES {
                    delivered += 1;
                    server.handle_datagram(now, client_addr, &d);
                }
            }
        }
        for d in to_client {
            for d in intercept(Direction::ToClient, d, &mut now) {
                if delivered < MAX_DELIVERIES {
                    delivered += 1;
                    client.handle_datagram(now, server_addr(), &d);
                }
            }
        }
        while let Some((p, ev)) = server.poll_event() {
            match ev {
                Event::Connected { .. } => server_up = true,
                Event::ApplicationData(d) | Event::EarlyData(d) => {
                    let _ = server.send(p, &d);
                }
                _ => {}
            }
        }
        while let Some((p, ev)) = client.poll_event() {
            if let Event::Connected { .. } = ev {
                client_up = true;
                if !sent {
                    let _ = client.send(p, b"fuzz 1.3 message");
                    sent = true;
                }
            }
        }
        assert!(server.connection_count() <= 1, "more associations than peers");
        assert!(client.connection_count() <= 1);
    }
    // Unmodified traffic completes, except for the one incompatible pair: a client that
    // accepts only raw public keys and a server without one.
    if pristine && !(client_flags & 3 == 2 && server_flags & 4 == 0) {
        assert!(client_up && server_up, "an unmodified 1.3 handshake did not complete");
    }
    settle(&mut server, now, mtu);
    settle(&mut client, now, mtu);
}

/// Appends a raw-mode script step; see [`crate::encode_op`].
pub fn script13(flags: u8, datagrams: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![flags, 0];
    for d in datagrams {
        encode_op(&mut out, 0, 0, d);
    }
    out
}

/// A recorded 1.3 exchange: datagrams to the server, to the client, and whether both
/// connected and the client's message was echoed.
pub fn record_run13(server_flags: u8, client_flags: u8) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, bool) {
    let now = Instant::now();
    let mut server = new_server13(server_flags, now);
    let mut client = new_client13(client_flags, now);
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    let mut echoed = false;
    for _ in 0..50 {
        while let Some(t) = client.poll_transmit() {
            server.handle_datagram(now, peer(true, 0), &t.payload);
            to_server.push(t.payload);
        }
        while let Some((p, ev)) = server.poll_event() {
            if let Event::ApplicationData(d) = ev {
                let _ = server.send(p, &d);
            }
        }
        while let Some(t) = server.poll_transmit() {
            client.handle_datagram(now, server_addr(), &t.payload);
            to_client.push(t.payload);
        }
        while let Some((p, ev)) = client.poll_event() {
            match ev {
                Event::Connected { .. } => {
                    let _ = client.send(p, b"fuzz 1.3 message");
                }
                Event::ApplicationData(d) => echoed |= d == b"fuzz 1.3 message",
                Event::Closed(r) => panic!("seed handshake {server_flags}/{client_flags} closed: {r:?}"),
                _ => {}
            }
        }
    }
    (to_server, to_client, echoed)
}

/// Replays a raw-mode script into a fresh endpoint (server if `server`, else client) and
/// reports whether its association came up: proof the seeds reach the end of the handshake.
pub fn replay_connects13(script: &[u8], server: bool) -> bool {
    let Some((flags, _, rest)) = header(script) else { return false };
    let now = Instant::now();
    let mut ep = if server { new_server13(flags, now) } else { new_client13(flags, now) };
    let mut connected = false;
    for op in ops(rest) {
        ep.handle_datagram(now, peer(server, op.peer), op.datagram);
        while ep.poll_transmit().is_some() {}
        while let Some((_, ev)) = ep.poll_event() {
            connected |= matches!(ev, Event::Connected { .. });
        }
    }
    connected
}
