//! The engine's client and server as [`Peer`]s, for the cross pairs with wolfSSL. (The engine
//! against itself runs through `coaps_bench_support::ours::Harness`, as in `benches/handshake.rs`.)

use crate::Peer;
use coaps_bench_support::ours::SERVER;
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{ClientConfig, Endpoint, Event, Session};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// A fresh client endpoint connecting to [`SERVER`].
#[derive(Debug)]
pub struct Client {
    ep: Endpoint,
    now: Instant,
    done: Option<bool>,
}

impl Client {
    /// Starts a handshake (the ClientHello is queued); `session` to offer a ticket.
    pub fn new(config: Arc<ClientConfig>, seed: u64, session: Option<Session>, now: Instant) -> Self {
        let mut ep = Endpoint::client(SeededRng::from_seed_u64(seed));
        ep.connect(now, SERVER, config, "localhost", session).expect("connect");
        Self { ep, now, done: None }
    }

    /// The session to resume with (carries the ticket once the NewSessionTicket arrived).
    pub fn session(&self) -> Option<Session> {
        self.ep.connection(&SERVER).and_then(|c| c.session().cloned())
    }
}

impl Peer for Client {
    fn deliver(&mut self, datagram: &[u8]) {
        self.ep.handle_datagram(self.now, SERVER, datagram);
    }
    fn transmit(&mut self) -> Option<Vec<u8>> {
        self.ep.poll_transmit().map(|t| t.payload)
    }
    fn connected(&mut self) -> Option<bool> {
        drain(&mut self.ep, &mut self.done);
        self.done
    }
}

/// A long-lived server endpoint seen from one client address (the caller forgets the
/// association afterwards with `Endpoint::expire_idle`, like the support crate's harness).
#[derive(Debug)]
pub struct Server<'a> {
    ep: &'a mut Endpoint,
    peer: SocketAddr,
    now: Instant,
    done: Option<bool>,
}

impl<'a> Server<'a> {
    /// `ep` answers datagrams from `peer`.
    pub fn new(ep: &'a mut Endpoint, peer: SocketAddr, now: Instant) -> Self {
        Self { ep, peer, now, done: None }
    }
}

impl Peer for Server<'_> {
    fn deliver(&mut self, datagram: &[u8]) {
        self.ep.handle_datagram(self.now, self.peer, datagram);
    }
    fn transmit(&mut self) -> Option<Vec<u8>> {
        self.ep.poll_transmit().map(|t| {
            debug_assert_eq!(t.destination, self.peer);
            t.payload
        })
    }
    fn connected(&mut self) -> Option<bool> {
        drain(self.ep, &mut self.done);
        self.done
    }
}

fn drain(ep: &mut Endpoint, done: &mut Option<bool>) {
    while let Some((peer, ev)) = ep.poll_event() {
        match ev {
            Event::Connected { resumed, .. } => *done = Some(resumed),
            Event::Closed(reason) => panic!("{peer} closed: {reason:?}"),
            _ => {}
        }
    }
}
