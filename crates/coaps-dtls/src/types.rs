//! The vocabulary every other module speaks: roles, peer identities, events, close reasons,
//! counters and datagrams to send. It sits at the bottom of the module graph and imports
//! nothing from a state machine, so the DTLS 1.2 and 1.3 engines, the endpoint, the
//! configuration and the resumption store can all use it without importing each other.

use crate::codec::{CipherSuite, ProtocolVersion};
use crate::error::Error;
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Which side of the handshake this connection plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends the ClientHello.
    Client,
    /// Answers it.
    Server,
}

/// Who the peer proved to be.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum PeerIdentity {
    /// Not authenticated (a server that did not ask for a client certificate).
    #[default]
    Anonymous,
    /// The PSK identity the client used.
    Psk(Vec<u8>),
    /// The verified certificate chain, end-entity first.
    Certificate(Vec<Vec<u8>>),
    /// The pinned raw public key (SubjectPublicKeyInfo DER, RFC 7250).
    RawPublicKey(Vec<u8>),
}

impl fmt::Debug for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Psk(id) => write!(f, "Psk({:?})", String::from_utf8_lossy(id)),
            Self::Certificate(c) => write!(f, "Certificate(chain of {})", c.len()),
            Self::RawPublicKey(k) => write!(f, "RawPublicKey({} bytes)", k.len()),
        }
    }
}

/// For logs and people: `PSK "sensor-17"` (the identity as escaped text: non-printable
/// bytes as `\xNN`), `certificate CN=device-1, SAN=device-1.example, sha256:0123456789abcdef`
/// (the end-entity certificate's subject commonName, first DNS subjectAltName and the first 8
/// bytes of its SHA-256 fingerprint), `raw public key sha256:…` (of the SubjectPublicKeyInfo),
/// or `anonymous`. Names are informational: authorise on the identity itself.
impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("anonymous"),
            Self::Psk(id) => write!(f, "PSK \"{}\"", id.escape_ascii()),
            Self::Certificate(chain) => match chain.first() {
                None => f.write_str("certificate (empty chain)"),
                Some(ee) => {
                    f.write_str("certificate ")?;
                    let (cn, san) = crate::cert::subject_names(ee);
                    if let Some(cn) = cn {
                        write!(f, "CN={}, ", cn.escape_debug())?;
                    }
                    if let Some(san) = san {
                        write!(f, "SAN={}, ", san.escape_debug())?;
                    }
                    write!(f, "sha256:{}", ShortFingerprint(ee))
                }
            },
            Self::RawPublicKey(spki) => write!(f, "raw public key sha256:{}", ShortFingerprint(spki)),
        }
    }
}

/// The first 8 bytes of a SHA-256 fingerprint in lower-case hex: enough to tell keys apart in
/// a log, short enough to read.
struct ShortFingerprint<'a>(&'a [u8]);

impl fmt::Display for ShortFingerprint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.0);
        digest[..8].iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// What [`Event::HandshakeFailed`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeFailure {
    /// The DTLS version the association was speaking (a dual-version client that had not
    /// heard from the server yet reports DTLS 1.3).
    pub version: ProtocolVersion,
    /// Our side of the handshake.
    pub role: Role,
    /// The identity the peer proved or, on a server, claimed (the PSK identity it offered,
    /// the certificate it sent, even when that is what failed); [`PeerIdentity::Anonymous`]
    /// when it failed before any.
    pub identity: PeerIdentity,
    /// Why it failed.
    pub reason: CloseReason,
    /// Records of the handshake that failed authentication and were dropped (RFC 6347
    /// §4.1.2.7): with a timeout, the sign of a wrong PSK key.
    pub records_auth_failed: u64,
}

/// Why a connection closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// [`Connection::close`](crate::Connection::close) was called.
    Local,
    /// The peer sent close_notify.
    PeerClosed,
    /// A fatal error.
    Error(Error),
}

/// Something the application should know. More kinds may be added: match with a wildcard arm.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The handshake completed.
    Connected {
        /// The authenticated peer.
        identity: PeerIdentity,
        /// The negotiated suite.
        suite: CipherSuite,
        /// Whether this was an abbreviated (resumed) handshake.
        resumed: bool,
    },
    /// One application-data record.
    ApplicationData(Vec<u8>),
    /// Server, DTLS 1.3: one record of 0-RTT early data (epoch 1, RFC 9147 §6.1) that the
    /// server accepted (RFC 8446 §4.2.10; see [`EarlyDataConfig`](crate::EarlyDataConfig)). It comes before
    /// [`Event::Connected`], or just after when reordered, never after the first 1-RTT record.
    /// Early data can be replayed by an attacker (RFC 8446 §8): act only on idempotent requests.
    /// [`Connection::peer_identity`](crate::Connection::peer_identity) already reports the identity bound to the resumed ticket.
    EarlyData(Vec<u8>),
    /// Client, DTLS 1.3: the server accepted our 0-RTT early data (early_data in its
    /// EncryptedExtensions). Comes before [`Event::Connected`].
    EarlyDataAccepted,
    /// Client, DTLS 1.3: our 0-RTT early data was not delivered: the server rejected it, a
    /// HelloRetryRequest came first, or the ticket did not allow it. Comes before
    /// [`Event::Connected`]; send the data again as 1-RTT data if it still matters.
    EarlyDataRejected,
    /// The connection is closed; nothing more will be sent or received.
    Closed(CloseReason),
    /// The handshake ended in an error before [`Event::Connected`]: what is known of the peer and why,
    /// for logs and metrics. The [`Event::Closed`] with the same reason comes next.
    HandshakeFailed(Box<HandshakeFailure>),
    /// Server, DTLS 1.2: a full handshake issued this session ID (RFC 5246 §7.4.1.2), for an
    /// external store to keep under [`Session::store_key`](crate::Session::store_key) for
    /// [`Session::ttl`](crate::Session::ttl). Only with
    /// [`ServerConfig::session_events`](crate::ServerConfig::session_events); comes before
    /// [`Event::Connected`].
    SessionIssued(Box<Session>),
    /// Server, DTLS 1.3: a NewSessionTicket was sent with this ticket (RFC 8446 §4.6.1), for
    /// an external store as [`Event::SessionIssued`]. A ticket that
    /// [allows early data](crate::Session::allows_early_data) must be fetched from that store
    /// with an atomic take (RFC 8446 §8.1). Only with
    /// [`ServerConfig::session_events`](crate::ServerConfig::session_events).
    TicketIssued(Box<Session>),
    /// Server, DTLS 1.2 with Connection IDs: the association moved to the address this event
    /// comes with, from `old` (RFC 9146 §6: on a record that authenticated and was newer than
    /// any before). Until a second such record arrives from the new address, what is sent
    /// there is limited (an attacker may have copied the record from another address).
    AddressChanged {
        /// The address the association had.
        old: std::net::SocketAddr,
    },
}

/// Counters for what was dropped and sent. Transient noise is counted, never reported as an
/// error (RFC 6347 §4.1.2.7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handled.
    pub datagrams_received: u64,
    /// Records dropped as malformed or unexpected.
    pub records_invalid: u64,
    /// Records that failed authentication.
    pub records_auth_failed: u64,
    /// Records dropped by the anti-replay window.
    pub records_replayed: u64,
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Bytes sent (UDP payload).
    pub bytes_sent: u64,
    /// Flight retransmissions (timer or peer-triggered; in DTLS 1.3 also those prompted by a
    /// partial ACK).
    pub retransmissions: u64,
    /// DTLS 1.3 server: epoch-1 (0-RTT) records skipped because early data was rejected
    /// (RFC 8446 §4.2.10), up to max_early_data_size bytes; beyond that they count as invalid.
    pub early_records_skipped: u64,
    /// DTLS 1.3: handshake records sent again, counting only the unacknowledged fragments that
    /// were resent (RFC 9147 §7.2). Not counted for DTLS 1.2, which resends whole flights.
    pub records_retransmitted: u64,
    /// DTLS 1.3: records a whole-flight retransmission (RFC 6347 §4.2.4) would have sent at
    /// the same timer- or peer-triggered retransmissions, for comparison with
    /// `records_retransmitted`.
    pub whole_flight_records: u64,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

/// What an association hands back to its caller: datagrams, events, counters and why it
/// closed. The DTLS 1.2 and 1.3 state machines share it.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    pub(crate) transmits: VecDeque<Vec<u8>>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) stats: Stats,
    /// Boxed: only closed associations need it.
    pub(crate) close_reason: Option<Box<CloseReason>>,
    /// Server: the identity the client claimed before it was proven (the PSK identity it
    /// offered, the certificate it sent), for [`HandshakeFailure::identity`].
    /// Boxed: only a server association between the client's claim and its proof needs it.
    pub(crate) claimed_identity: Option<Box<PeerIdentity>>,
}

impl Outputs {
    pub(crate) fn push_datagram(&mut self, d: Vec<u8>) {
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += d.len() as u64;
        self.transmits.push_back(d);
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let d = self.transmits.pop_front();
        if self.transmits.is_empty() {
            // An idle association should not keep queue capacity around.
            self.transmits.shrink_to_fit();
        }
        d
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front();
        if self.events.is_empty() {
            self.events.shrink_to_fit();
        }
        e
    }

    pub(crate) fn closed(&mut self, reason: CloseReason) {
        self.close_reason = Some(Box::new(reason.clone()));
        self.events.push_back(Event::Closed(reason));
    }
}

// The resumable session is vocabulary too (events carry it); its encoding, store and
// accessors live in `resumption`.

/// What a resumed session needs. The extended_master_secret flag is part of it because a
/// resumption must match the original session's EMS status (RFC 7627 §5.3).
#[derive(Clone)]
pub struct Session {
    /// The session ID (DTLS 1.2, server-chosen, up to 32 bytes) or the ticket (DTLS 1.3, the
    /// PSK identity the client offers, RFC 8446 §4.2.11).
    pub id: Vec<u8>,
    /// Cipher suite of the original handshake.
    pub suite: CipherSuite,
    /// Whether the master secret was derived with extended_master_secret.
    pub extended_master_secret: bool,
    /// The authenticated peer identity of the original handshake.
    pub peer_identity: PeerIdentity,
    /// When the session was established (a DTLS 1.3 ticket: when it was issued or received).
    pub established_at: Instant,
    /// How long the session may be resumed after `established_at`.
    pub(crate) lifetime: Duration,
    pub(crate) master_secret: Zeroizing<[u8; 48]>,
    /// DTLS 1.3: the resumption PSK (RFC 8446 §4.6.1) and the ticket parameters; `None` for a
    /// DTLS 1.2 session.
    pub(crate) ticket13: Option<Ticket13>,
    /// Client, DTLS 1.2: the RFC 5077 ticket the server gave for this session, offered in the
    /// SessionTicket extension to resume it (RFC 5077 §3.1); `id` is then the server's session
    /// ID, often empty (§3.4).
    pub(crate) ticket12: Option<Vec<u8>>,
}

/// What a DTLS 1.3 ticket resumes with (RFC 8446 §4.6.1).
#[derive(Clone)]
pub(crate) struct Ticket13 {
    pub(crate) psk: Zeroizing<[u8; 32]>,
    pub(crate) age_add: u32,
    /// max_early_data_size of the ticket's early_data extension; 0 when it allows no early data
    /// (RFC 8446 §4.2.10).
    pub(crate) max_early_data: u32,
    /// Server side: the address the ticket was issued to, for skipping the cookie exchange on
    /// resumption from the same address (RFC 9147 §5.1).
    pub(crate) client_ip: Option<std::net::IpAddr>,
}
