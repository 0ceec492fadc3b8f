//! Session state for session-ID resumption (RFC 5246 §7.4.1.2) and a store trait with an
//! in-memory implementation. The moka/Redis stores come later as a Tower layer.

use crate::codec::CipherSuite;
use crate::types::PeerIdentity;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// What a resumed session needs. The extended_master_secret flag is part of it because a
/// resumption must match the original session's EMS status (RFC 7627 §5.3).
#[derive(Clone)]
pub struct Session {
    /// The session ID (server-chosen, up to 32 bytes).
    pub id: Vec<u8>,
    /// Cipher suite of the original handshake.
    pub suite: CipherSuite,
    /// Whether the master secret was derived with extended_master_secret.
    pub extended_master_secret: bool,
    /// The authenticated peer identity of the original handshake.
    pub peer_identity: PeerIdentity,
    /// When the session was established.
    pub established_at: Instant,
    pub(crate) master_secret: Zeroizing<[u8; 48]>,
    /// DTLS 1.3: the resumption PSK (RFC 8446 §4.6.1) and the ticket parameters; `None` for a
    /// DTLS 1.2 session.
    pub(crate) ticket13: Option<Ticket13>,
}

/// What a DTLS 1.3 ticket resumes with (RFC 8446 §4.6.1).
#[derive(Clone)]
pub(crate) struct Ticket13 {
    pub(crate) psk: Zeroizing<[u8; 32]>,
    pub(crate) age_add: u32,
    pub(crate) lifetime: std::time::Duration,
    /// max_early_data_size of the ticket's early_data extension; 0 when it allows no early data
    /// (RFC 8446 §4.2.10).
    pub(crate) max_early_data: u32,
    /// Server side: the address the ticket was issued to, for skipping the cookie exchange on
    /// resumption from the same address (RFC 9147 §5.1).
    pub(crate) client_ip: Option<std::net::IpAddr>,
}

impl Session {
    /// Whether this is a DTLS 1.3 ticket (else a DTLS 1.2 session ID).
    pub fn is_dtls13_ticket(&self) -> bool {
        self.ticket13.is_some()
    }

    /// DTLS 1.3: the most 0-RTT data the ticket allows (its early_data extension,
    /// RFC 8446 §4.2.10); `None` when it allows none or this is not a 1.3 ticket.
    pub fn max_early_data_size(&self) -> Option<u32> {
        self.ticket13.as_ref().map(|t| t.max_early_data).filter(|&m| m > 0)
    }

    /// The 48-byte master secret.
    pub fn master_secret(&self) -> &[u8; 48] {
        &self.master_secret
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id_len", &self.id.len())
            .field("suite", &self.suite)
            .field("extended_master_secret", &self.extended_master_secret)
            .field("peer_identity", &self.peer_identity)
            .finish_non_exhaustive()
    }
}

/// Server-side session storage keyed by session ID.
pub trait SessionStore: Send + Sync + fmt::Debug {
    /// Stores a session.
    fn put(&self, session: Session);
    /// Looks a session up; `now` lets the store expire it.
    fn get(&self, id: &[u8], now: Instant) -> Option<Session>;
    /// Forgets a session.
    fn remove(&self, id: &[u8]);
}

/// Session IDs, oldest first, for eviction.
type InsertionOrder = VecDeque<Vec<u8>>;

/// A bounded in-memory store: oldest sessions are evicted first, and sessions older than the
/// lifetime are refused (RFC 5246 App. F.1.4 suggests at most 24 hours).
#[derive(Debug)]
pub struct MemorySessionStore {
    capacity: usize,
    lifetime: Duration,
    inner: Mutex<(HashMap<Vec<u8>, Session>, InsertionOrder)>,
}

impl MemorySessionStore {
    /// A store holding at most `capacity` sessions for at most `lifetime`.
    pub fn new(capacity: usize, lifetime: Duration) -> Self {
        Self { capacity: capacity.max(1), lifetime, inner: Mutex::new((HashMap::new(), VecDeque::new())) }
    }

    /// Number of stored sessions.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|g| g.0.len()).unwrap_or(0)
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SessionStore for MemorySessionStore {
    fn put(&self, session: Session) {
        let Ok(mut g) = self.inner.lock() else { return };
        let (map, order) = &mut *g;
        if map.insert(session.id.clone(), session.clone()).is_none() {
            order.push_back(session.id);
        }
        while map.len() > self.capacity {
            match order.pop_front() {
                Some(old) => {
                    map.remove(&old);
                }
                None => break,
            }
        }
    }

    fn get(&self, id: &[u8], now: Instant) -> Option<Session> {
        let g = self.inner.lock().ok()?;
        let s = g.0.get(id)?;
        (now.saturating_duration_since(s.established_at) <= self.lifetime).then(|| s.clone())
    }

    fn remove(&self, id: &[u8]) {
        if let Ok(mut g) = self.inner.lock() {
            g.0.remove(id);
            g.1.retain(|k| k != id);
        }
    }
}
