//! The types that travel between the layers.

use coaps_dtls::{FetchedSession, PeerIdentity};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use coaps_dtls::Transmit;

/// The error type of every service in this crate, as in tower.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a datagram-level service answers with: the datagrams to send, in order (possibly none).
///
/// The first datagram is held inline: most answers are zero or one datagram (a cookie
/// challenge, a flight in one datagram, a sealed response), and the stateless cookie gate must
/// answer a flood of spoofed ClientHellos without touching the heap (DESIGN "no state before
/// proof"). Further datagrams go to a `Vec`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transmits {
    first: Option<Transmit>,
    rest: Vec<Transmit>,
}

impl Transmits {
    /// No datagrams.
    pub const fn new() -> Self {
        Self { first: None, rest: Vec::new() }
    }

    /// One datagram, without allocating.
    pub const fn one(transmit: Transmit) -> Self {
        Self { first: Some(transmit), rest: Vec::new() }
    }

    /// Appends a datagram.
    pub fn push(&mut self, transmit: Transmit) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(transmit);
        } else {
            self.rest.push(transmit);
        }
    }

    /// How many datagrams.
    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }

    /// The datagrams, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Transmit> + '_ {
        self.first.iter().chain(self.rest.iter())
    }

    /// The datagram at `index`, if any.
    pub fn get(&self, index: usize) -> Option<&Transmit> {
        match (index, &self.first) {
            (0, Some(t)) => Some(t),
            (i, Some(_)) => self.rest.get(i - 1),
            (i, None) => self.rest.get(i),
        }
    }

    /// The datagrams as a `Vec`.
    pub fn into_vec(self) -> Vec<Transmit> {
        self.into_iter().collect()
    }
}

impl std::ops::Index<usize> for Transmits {
    type Output = Transmit;
    fn index(&self, index: usize) -> &Transmit {
        match self.get(index) {
            Some(t) => t,
            None => panic!("Transmits index {index} out of range (len {})", self.len()),
        }
    }
}

impl IntoIterator for Transmits {
    type Item = Transmit;
    type IntoIter = std::iter::Chain<std::option::IntoIter<Transmit>, std::vec::IntoIter<Transmit>>;
    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}

impl<'a> IntoIterator for &'a Transmits {
    type Item = &'a Transmit;
    type IntoIter = std::iter::Chain<std::option::Iter<'a, Transmit>, std::slice::Iter<'a, Transmit>>;
    fn into_iter(self) -> Self::IntoIter {
        self.first.iter().chain(self.rest.iter())
    }
}

impl Extend<Transmit> for Transmits {
    fn extend<I: IntoIterator<Item = Transmit>>(&mut self, iter: I) {
        for t in iter {
            self.push(t);
        }
    }
}

impl FromIterator<Transmit> for Transmits {
    fn from_iter<I: IntoIterator<Item = Transmit>>(iter: I) -> Self {
        let mut out = Self::new();
        out.extend(iter);
        out
    }
}

impl From<Vec<Transmit>> for Transmits {
    fn from(v: Vec<Transmit>) -> Self {
        let mut it = v.into_iter();
        let first = it.next();
        Self { first, rest: it.collect() }
    }
}

impl From<Transmit> for Transmits {
    fn from(t: Transmit) -> Self {
        Self::one(t)
    }
}

/// One UDP datagram as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The sender.
    pub peer: SocketAddr,
    /// The UDP payload.
    pub payload: Vec<u8>,
    /// When it was received (the clock the layers run on).
    pub received_at: Instant,
    /// Set by [`CookieLayer`](crate::cookie::CookieLayer) when the datagram is a ClientHello
    /// whose cookie verified: the peer has proven it owns its address.
    pub cookie: Option<CookieVerified>,
    /// Sessions a resumption layer in front fetched for what this ClientHello offers
    /// ([`coaps_dtls::offered_sessions`]): [`HandshakeLayer`](crate::HandshakeLayer) hands
    /// them to the engine with the datagram ([`coaps_dtls::DatagramMeta::sessions`]). Empty
    /// unless such a layer filled it.
    pub sessions: Vec<FetchedSession>,
}

impl Datagram {
    /// A datagram received now from `peer`.
    pub fn new(peer: SocketAddr, payload: Vec<u8>) -> Self {
        Self { peer, payload, received_at: Instant::now(), cookie: None, sessions: Vec::new() }
    }
}

/// Proof, attached by [`CookieLayer`](crate::cookie::CookieLayer), that a ClientHello came back with a valid cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieVerified {
    /// Time between issuing the cookie and receiving it back: an upper bound on one round
    /// trip, usable as an RTT sample by retransmission tuning. `None` when no cookie was
    /// exchanged: a DTLS 1.3 0-RTT resumption from the address its ticket was issued to is
    /// exempt (RFC 9147 §5.1).
    pub rtt_sample: Option<Duration>,
    /// The gate that verified it ([`CookieLayer::gate_id`](crate::cookie::CookieLayer::gate_id)).
    /// A handshake layer behind a gate checks it is the one whose DTLS 1.3 secrets it shares,
    /// and fails loudly otherwise (see [the wiring checks](crate::handshake#wiring)).
    pub gate: coaps_dtls::GateId,
}

/// Decrypted application data from an authenticated peer: what the handshake layer hands to
/// its inner service. The inner service answers with `Option<Vec<u8>>`: a payload to seal and
/// send back to the same peer, or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secured {
    /// The peer's address.
    pub peer: SocketAddr,
    /// Who the peer proved to be in the handshake (PSK identity, certificate chain, raw key).
    pub identity: PeerIdentity,
    /// The plaintext of one application-data record.
    pub payload: Vec<u8>,
    /// Whether the record arrived as 0-RTT early data (always false with DTLS 1.2).
    pub early_data: bool,
    /// Whether the association's handshake has completed (see [`Handshaken`]).
    pub handshake: Handshaken,
    /// Which association (handshake) the record came from: what the CoAP layer keys
    /// deduplication on, so a new session from the same address is a new endpoint.
    pub association: Association,
}

/// The association a record came from, as the handshake layer names it: the ClientHello
/// random of its handshake (RFC 5246 §7.4.1.2, RFC 8446 §4.1.2), unique per handshake, kept
/// across a cookie exchange or a HelloRetryRequest, and repeated only by a copy of the same
/// ClientHello. A copy of a 0-RTT flight replayed onto another association (RFC 8446 §8) is
/// therefore the *same* exchange as the original for deduplication, while a new session from
/// the same address (or another principal that took the address over) never is.
///
/// [`Association::unknown`] (the default) is for records built by hand: the CoAP layer then
/// falls back to the peer's identity, or its address when anonymous.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Association(Option<[u8; 32]>);

impl Association {
    /// The association whose handshake had ClientHello random `random`.
    pub const fn from_client_random(random: [u8; 32]) -> Self {
        Self(Some(random))
    }

    /// No handshake known (a record built by hand).
    pub const fn unknown() -> Self {
        Self(None)
    }

    /// The ClientHello random, if known.
    pub const fn client_random(&self) -> Option<&[u8; 32]> {
        self.0.as_ref()
    }
}

impl std::fmt::Debug for Association {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A short prefix is enough to tell associations apart in logs.
        match &self.0 {
            Some(r) => write!(f, "Association({:02x}{:02x}{:02x}{:02x}…)", r[0], r[1], r[2], r[3]),
            None => f.write_str("Association(unknown)"),
        }
    }
}

/// A CoAP request for the application, with who sent it.
#[derive(Debug, Clone)]
pub struct CoapRequest {
    /// The decoded message (coap-lite).
    pub message: coap_lite::Packet,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The authenticated identity of the peer, for authorization.
    pub identity: PeerIdentity,
    /// Whether the message arrived as 0-RTT early data.
    pub early_data: bool,
    /// Whether the association's handshake has completed, and a way to wait for it: what
    /// [`EarlyDataLayer`](crate::early_data::EarlyDataLayer) defers unsafe 0-RTT requests on.
    pub handshake: Handshaken,
    /// The association (handshake) the request came over, whatever address it has now (a
    /// Connection ID may move it, RFC 9146 §6, RFC 9147 §9): what per-association state such as
    /// the early-data holds keys on. [`Association::unknown`] for requests built by hand.
    pub association: Association,
}

impl CoapRequest {
    /// A response skeleton for this request: piggybacked ACK for a confirmable request, NON
    /// for a non-confirmable one, same message ID and token, code 2.05 Content. The CoAP layer
    /// fixes type, message ID and token anyway, so the application only sets code and payload.
    pub fn response(&self) -> coap_lite::Packet {
        coap_lite::CoapResponse::new(&self.message).map(|r| r.message).unwrap_or_default()
    }
}

/// Whether the handshake of the association a record came from has completed: the client's
/// Finished arrived and verified, which proves a live client holding the session keys, not a
/// replay of its 0-RTT flight (RFC 8446 §8, §2.3). Records sent after the handshake (1-RTT
/// data) carry [`Handshaken::complete`]; 0-RTT records carry a pending signal that
/// [`HandshakeLayer`](crate::HandshakeLayer) resolves when the client's Finished arrives, or
/// resolves negatively when the association fails, is replaced or is forgotten first.
#[derive(Clone, Default)]
pub struct Handshaken {
    rx: Option<tokio::sync::watch::Receiver<Option<bool>>>,
}

impl Handshaken {
    /// Already complete (1-RTT data, or a record built by hand).
    pub const fn complete() -> Self {
        Self { rx: None }
    }

    /// A pending signal and the sender that resolves it: `Some(true)` once the handshake
    /// completed, `Some(false)` (or dropping the sender) when it never will.
    pub fn pending() -> (tokio::sync::watch::Sender<Option<bool>>, Self) {
        let (tx, rx) = tokio::sync::watch::channel(None);
        (tx, Self { rx: Some(rx) })
    }

    pub(crate) fn from_receiver(rx: tokio::sync::watch::Receiver<Option<bool>>) -> Self {
        Self { rx: Some(rx) }
    }

    /// `Some(true)` complete, `Some(false)` never will, `None` still pending.
    pub fn state(&self) -> Option<bool> {
        match &self.rx {
            None => Some(true),
            Some(rx) => match *rx.borrow() {
                Some(v) => Some(v),
                None if rx.has_changed().is_err() => Some(false),
                None => None,
            },
        }
    }

    /// Whether the handshake has completed.
    pub fn is_complete(&self) -> bool {
        self.state() == Some(true)
    }

    /// Waits until the handshake completed (`true`) or never will (`false`).
    pub async fn wait(self) -> bool {
        let Some(mut rx) = self.rx else { return true };
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.unwrap_or(false),
            Err(_) => false,
        }
    }
}

impl PartialEq for Handshaken {
    fn eq(&self, other: &Self) -> bool {
        match (&self.rx, &other.rx) {
            (None, None) => true,
            (Some(a), Some(b)) => a.same_channel(b),
            _ => false,
        }
    }
}

impl Eq for Handshaken {}

impl std::fmt::Debug for Handshaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state() {
            Some(true) => "complete",
            Some(false) => "failed",
            None => "pending",
        };
        f.write_str(state)
    }
}

/// A peer address for logs: an IPv4-mapped IPv6 address (`[::ffff:192.0.2.1]:5684`, what a
/// dual-stack socket reports for IPv4 clients, RFC 4291 §2.5.5.2) prints as the IPv4 address
/// it is (`192.0.2.1:5684`); every other address prints as usual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisplayAddr(pub SocketAddr);

impl std::fmt::Display for DisplayAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
                Some(v4) => write!(f, "{v4}:{}", a.port()),
                None => a.fmt(f),
            },
            a => a.fmt(f),
        }
    }
}
