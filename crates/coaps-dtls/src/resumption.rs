//! Resumable sessions: DTLS 1.2 session IDs (RFC 5246 §7.4.1.2) and DTLS 1.3 tickets
//! (RFC 8446 §4.6.1), their versioned byte encoding, and a store trait over those bytes with
//! an in-memory implementation.
//!
//! # Where sessions live
//!
//! The engine never waits on a store (DESIGN principle 2). Two ways of keeping sessions exist
//! side by side:
//!
//! * **In-process**: [`ServerConfig::session_store`](crate::ServerConfig::session_store), a
//!   synchronous [`SessionStore`] the engine writes issued sessions to and reads them from. The
//!   default is a [`MemorySessionStore`].
//! * **External** (a moka or Redis store behind an async Tower layer): the layer reads what a
//!   ClientHello offers with [`offered_sessions`], fetches those keys asynchronously, decodes
//!   them with [`Session::decode`] and hands them in with the datagram
//!   ([`DatagramMeta::sessions`](crate::DatagramMeta::sessions)). Issued sessions come out as
//!   [`Event::SessionIssued`](crate::Event::SessionIssued) /
//!   [`Event::TicketIssued`](crate::Event::TicketIssued) when
//!   [`ServerConfig::session_events`](crate::ServerConfig::session_events) is set; the layer
//!   stores [`Session::encode`]'s bytes under [`Session::store_key`] for [`Session::ttl`].
//!   With `session_store: None` and `session_events: true` the engine keeps nothing itself.
//!
//! Handed-in sessions are looked at first, the in-process store after.
//!
//! # Single use of 0-RTT tickets
//!
//! RFC 8446 §8.1: a ticket whose early data is accepted must not be accepted again. The engine
//! takes such a ticket out of its in-process store with the atomic [`SessionStore::take`]
//! before accepting 0-RTT, and accepts the early data of a handed-in ticket only when it was
//! fetched with `take` ([`FetchedSession::taken`]): with a store shared by several nodes, only
//! the node whose `take` returned the ticket accepts its early data.

use crate::codec::{CipherSuite, ContentType, HandshakeType, Reader};
use crate::types::PeerIdentity;
pub use crate::types::Session;
pub(crate) use crate::types::Ticket13;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
/// The buffer type of encoded sessions ([`SessionStore`]): wiped when dropped.
pub use zeroize::Zeroizing;

/// RFC 8446 §4.6.1: a ticket lifetime is at most seven days (604800 seconds).
pub const MAX_TICKET_LIFETIME: Duration = Duration::from_secs(604_800);
/// Default lifetime of a DTLS 1.3 ticket
/// ([`ServerConfig::ticket_lifetime`](crate::ServerConfig::ticket_lifetime)).
pub const DEFAULT_TICKET_LIFETIME: Duration = Duration::from_secs(7200);
/// Default lifetime of a DTLS 1.2 session (RFC 5246 App. F.1.4 suggests at most 24 hours;
/// [`ServerConfig::session_lifetime`](crate::ServerConfig::session_lifetime)).
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The current version of [`Session::encode`]'s format (its first byte).
pub const SESSION_ENCODING_VERSION: u8 = 1;

const KIND_DTLS12: u8 = 1;
const KIND_DTLS13: u8 = 2;

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

    /// Whether the ticket allows 0-RTT early data (RFC 8446 §4.2.10). A store keeping such a
    /// ticket must be able to hand it out once only ([`SessionStore::take`], RFC 8446 §8.1).
    pub fn allows_early_data(&self) -> bool {
        self.max_early_data_size().is_some()
    }

    /// Client, DTLS 1.2: the RFC 5077 session ticket the server issued for this session, which
    /// the client offers to resume it.
    pub fn session_ticket(&self) -> Option<&[u8]> {
        self.ticket12.as_deref()
    }

    /// The 48-byte master secret (DTLS 1.2; all zero for a DTLS 1.3 ticket).
    pub fn master_secret(&self) -> &[u8; 48] {
        &self.master_secret
    }

    /// The key a store keeps this session under: the session ID (DTLS 1.2), the RFC 5077 ticket
    /// a DTLS 1.2 client holds (a stateful ticket is the server's store key), or the ticket,
    /// which is the PSK identity the client offers (DTLS 1.3). [`offered_sessions`] lists the
    /// same keys from a ClientHello.
    pub fn store_key(&self) -> &[u8] {
        self.ticket12.as_deref().unwrap_or(&self.id)
    }

    /// How long the session may be resumed after it was established (the ticket_lifetime of a
    /// DTLS 1.3 ticket, RFC 8446 §4.6.1).
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// When the session can no longer be resumed.
    pub fn expires_at(&self) -> Instant {
        self.established_at.checked_add(self.lifetime).unwrap_or(self.established_at)
    }

    /// How much longer the session can be resumed at `now`: the TTL to store it with.
    pub fn ttl(&self, now: Instant) -> Duration {
        self.expires_at().saturating_duration_since(now)
    }

    /// Whether the session is past its lifetime at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.established_at) > self.lifetime
    }

    /// The versioned byte form of this session, for a store that lives outside the process
    /// (or outlives it). The bytes hold the session's secret (master secret or resumption
    /// PSK): keep them like a key.
    ///
    /// `established_at` is an [`Instant`], which means nothing in another process; it is
    /// written as wall-clock time (unix milliseconds), converted with the pair `now` / `wall`,
    /// two readings of the monotonic and the wall clock taken together (the engine uses its
    /// `now` and [`CommonConfig::wall_clock`](crate::CommonConfig::wall_clock)).
    /// [`Session::decode`] converts back with its own pair. The issue time is rounded down to
    /// the millisecond, so a decoded session is never younger than the original; nodes whose
    /// wall clocks disagree see the session older or younger by the difference.
    ///
    /// Format (version [`SESSION_ENCODING_VERSION`]), all integers big-endian:
    ///
    /// ```text
    /// u8  version (1)          u8  kind (1 = DTLS 1.2 session, 2 = DTLS 1.3 ticket)
    /// u16 id length, id        u16 cipher suite            u8 flags (bit 0: EMS, bit 1: ticket)
    /// u64 issued (unix ms)     u32 lifetime (ms; longer lifetimes are written as u32::MAX)
    /// peer identity: u8 tag (0 anonymous, 1 PSK, 2 certificate chain, 3 raw public key), then
    ///     PSK / raw key: u16 length, bytes; chain: u16 count, each u32 length, bytes
    /// kind 1: master secret [48], then with flag bit 1 the RFC 5077 ticket: u16 length, ticket
    /// kind 2: resumption PSK [32], u32 ticket_age_add, u32 max_early_data_size,
    ///         client IP: u8 tag (0 none, 4 IPv4 [4], 6 IPv6 [16])
    /// ```
    pub fn encode(&self, now: Instant, wall: SystemTime) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(128 + self.id.len()));
        out.push(SESSION_ENCODING_VERSION);
        out.push(if self.ticket13.is_some() { KIND_DTLS13 } else { KIND_DTLS12 });
        // A ticket is at most 2^16-1 bytes on the wire (RFC 8446 §4.6.1), a session ID 32.
        let id = &self.id[..self.id.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(id.len() as u16).to_be_bytes());
        out.extend_from_slice(id);
        out.extend_from_slice(&u16::from(self.suite).to_be_bytes());
        out.push(u8::from(self.extended_master_secret) | (u8::from(self.ticket12.is_some()) << 1));
        out.extend_from_slice(&issued_unix_ms(self.established_at, now, wall).to_be_bytes());
        let lifetime_ms = u32::try_from(self.lifetime.as_millis()).unwrap_or(u32::MAX);
        out.extend_from_slice(&lifetime_ms.to_be_bytes());
        match &self.peer_identity {
            PeerIdentity::Anonymous => out.push(0),
            PeerIdentity::Psk(id) => {
                out.push(1);
                put_u16_bytes(&mut out, id);
            }
            PeerIdentity::Certificate(chain) => {
                out.push(2);
                let n = chain.len().min(usize::from(u16::MAX));
                out.extend_from_slice(&(n as u16).to_be_bytes());
                for c in &chain[..n] {
                    let c = &c[..c.len().min(u32::MAX as usize)];
                    out.extend_from_slice(&(c.len() as u32).to_be_bytes());
                    out.extend_from_slice(c);
                }
            }
            PeerIdentity::RawPublicKey(k) => {
                out.push(3);
                put_u16_bytes(&mut out, k);
            }
        }
        match &self.ticket13 {
            None => {
                out.extend_from_slice(&self.master_secret[..]);
                if let Some(t) = &self.ticket12 {
                    put_u16_bytes(&mut out, t);
                }
            }
            Some(t) => {
                out.extend_from_slice(&t.psk[..]);
                out.extend_from_slice(&t.age_add.to_be_bytes());
                out.extend_from_slice(&t.max_early_data.to_be_bytes());
                match t.client_ip {
                    None => out.push(0),
                    Some(IpAddr::V4(a)) => {
                        out.push(4);
                        out.extend_from_slice(&a.octets());
                    }
                    Some(IpAddr::V6(a)) => {
                        out.push(6);
                        out.extend_from_slice(&a.octets());
                    }
                }
            }
        }
        out
    }

    /// Reads what [`Session::encode`] wrote. Total: truncated, altered or foreign input, or an
    /// unknown format version, gives a [`SessionDecodeError`], never a panic, and allocates no
    /// more than the input's size. `now` / `wall` convert the stored wall-clock issue time
    /// back to an [`Instant`] (see [`Session::encode`]); an issue time in the future (another
    /// node's clock runs ahead) is taken as `now`. Expiry is not checked here: see
    /// [`Session::is_expired`].
    pub fn decode(bytes: &[u8], now: Instant, wall: SystemTime) -> Result<Session, SessionDecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("version")?;
        if version != SESSION_ENCODING_VERSION {
            return Err(SessionDecodeError::UnknownVersion(version));
        }
        let kind = r.u8("kind")?;
        if kind != KIND_DTLS12 && kind != KIND_DTLS13 {
            return Err(SessionDecodeError::Invalid("kind"));
        }
        let id = r.vec_u16("id")?.to_vec();
        let suite = CipherSuite::from(r.u16("suite")?);
        let flags = r.u8("flags")?;
        let has_ticket12 = flags & 2 != 0;
        if flags > 3 || (has_ticket12 && kind != KIND_DTLS12) {
            return Err(SessionDecodeError::Invalid("flags"));
        }
        // A DTLS 1.2 session resumed by its ticket may have no session ID (RFC 5077 §3.4).
        if (id.is_empty() && !has_ticket12) || (kind == KIND_DTLS12 && id.len() > 32) {
            return Err(SessionDecodeError::Invalid("id length"));
        }
        let issued_ms = u64::from_be_bytes(r.array::<8>("issued")?);
        let lifetime = Duration::from_millis(u64::from(r.u32("lifetime")?));
        let peer_identity = match r.u8("peer identity")? {
            0 => PeerIdentity::Anonymous,
            1 => PeerIdentity::Psk(r.vec_u16("PSK identity")?.to_vec()),
            2 => {
                let n = r.u16("chain length")?;
                let mut chain = Vec::new();
                for _ in 0..n {
                    let len = r.u32("certificate length")? as usize;
                    chain.push(r.take(len, "certificate")?.to_vec());
                }
                PeerIdentity::Certificate(chain)
            }
            3 => PeerIdentity::RawPublicKey(r.vec_u16("raw public key")?.to_vec()),
            _ => return Err(SessionDecodeError::Invalid("peer identity")),
        };
        let mut master_secret = Zeroizing::new([0u8; 48]);
        let mut ticket12 = None;
        let ticket13 = if kind == KIND_DTLS12 {
            master_secret.copy_from_slice(r.take(48, "master secret")?);
            if has_ticket12 {
                let t = r.vec_u16("session ticket")?;
                if t.is_empty() {
                    return Err(SessionDecodeError::Invalid("session ticket"));
                }
                ticket12 = Some(t.to_vec());
            }
            None
        } else {
            let mut psk = Zeroizing::new([0u8; 32]);
            psk.copy_from_slice(r.take(32, "resumption PSK")?);
            let age_add = r.u32("ticket_age_add")?;
            let max_early_data = r.u32("max_early_data_size")?;
            let client_ip = match r.u8("client IP")? {
                0 => None,
                4 => Some(IpAddr::from(r.array::<4>("IPv4 address")?)),
                6 => Some(IpAddr::from(r.array::<16>("IPv6 address")?)),
                _ => return Err(SessionDecodeError::Invalid("client IP")),
            };
            Some(Ticket13 { psk, age_add, max_early_data, client_ip })
        };
        if !r.is_empty() {
            return Err(SessionDecodeError::TrailingBytes);
        }
        let issued =
            UNIX_EPOCH.checked_add(Duration::from_millis(issued_ms)).ok_or(SessionDecodeError::Unrepresentable)?;
        let established_at = match wall.duration_since(issued) {
            Ok(age) => now.checked_sub(age).ok_or(SessionDecodeError::Unrepresentable)?,
            Err(_) => now,
        };
        Ok(Session {
            id,
            suite,
            extended_master_secret: flags & 1 != 0,
            peer_identity,
            established_at,
            lifetime,
            master_secret,
            ticket13,
            ticket12,
        })
    }
}

fn put_u16_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let b = &b[..b.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

/// `established_at` as unix milliseconds, by the `now` / `wall` pair; rounded down.
fn issued_unix_ms(established_at: Instant, now: Instant, wall: SystemTime) -> u64 {
    let issued = match now.checked_duration_since(established_at) {
        Some(age) => wall.checked_sub(age),
        None => wall.checked_add(established_at.duration_since(now)),
    }
    .unwrap_or(wall);
    let since = issued.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// Constant-time on the secrets, so comparing sessions leaks nothing about them.
impl PartialEq for Session {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        let secrets = bool::from(self.master_secret[..].ct_eq(&other.master_secret[..]))
            & match (&self.ticket13, &other.ticket13) {
                (None, None) => true,
                (Some(a), Some(b)) => {
                    bool::from(a.psk[..].ct_eq(&b.psk[..]))
                        & (a.age_add == b.age_add)
                        & (a.max_early_data == b.max_early_data)
                        & (a.client_ip == b.client_ip)
                }
                _ => false,
            };
        secrets
            && self.id == other.id
            && self.suite == other.suite
            && self.extended_master_secret == other.extended_master_secret
            && self.peer_identity == other.peer_identity
            && self.established_at == other.established_at
            && self.lifetime == other.lifetime
            && self.ticket12 == other.ticket12
    }
}

impl Eq for Session {}

/// Never shows the master secret or the resumption PSK.
impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Session");
        d.field("id_len", &self.id.len())
            .field("suite", &self.suite)
            .field("extended_master_secret", &self.extended_master_secret)
            .field("peer_identity", &self.peer_identity)
            .field("lifetime", &self.lifetime)
            .field("dtls13_ticket", &self.ticket13.is_some())
            .field("session_ticket_len", &self.ticket12.as_ref().map(Vec::len));
        if let Some(t) = &self.ticket13 {
            d.field("max_early_data", &t.max_early_data).field("client_ip", &t.client_ip);
        }
        d.finish_non_exhaustive()
    }
}

/// Why [`Session::decode`] refused its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionDecodeError {
    /// The input ended early.
    Truncated(&'static str),
    /// A format version this build does not read (written by a newer one, or garbage).
    UnknownVersion(u8),
    /// A field holds a value the format does not allow.
    Invalid(&'static str),
    /// Bytes follow the session.
    TrailingBytes,
    /// The issue time cannot be expressed on this process's monotonic clock (issued before
    /// what its [`Instant`] can represent).
    Unrepresentable,
}

impl fmt::Display for SessionDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated(w) => write!(f, "encoded session truncated in {w}"),
            Self::UnknownVersion(v) => write!(f, "unknown encoded-session version {v}"),
            Self::Invalid(w) => write!(f, "invalid {w} in encoded session"),
            Self::TrailingBytes => f.write_str("bytes after the encoded session"),
            Self::Unrepresentable => f.write_str("encoded session issued too long ago for this clock"),
        }
    }
}

impl std::error::Error for SessionDecodeError {}

impl From<crate::codec::InvalidMessage> for SessionDecodeError {
    fn from(e: crate::codec::InvalidMessage) -> Self {
        match e {
            crate::codec::InvalidMessage::Truncated(w) => Self::Truncated(w),
            crate::codec::InvalidMessage::TrailingData(_) => Self::TrailingBytes,
            crate::codec::InvalidMessage::IllegalValue(w) => Self::Invalid(w),
        }
    }
}

/// A session a layer fetched from its store for one ClientHello and hands in with it
/// ([`DatagramMeta::sessions`](crate::DatagramMeta::sessions)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedSession {
    /// The decoded session.
    pub session: Session,
    /// It was fetched with [`SessionStore::take`] (so it is gone from the store): only then may
    /// its 0-RTT early data be accepted (single use, RFC 8446 §8.1). Fetch the first ticket of
    /// a ClientHello that offers early data ([`OfferedSessions::early_data`]) this way, once the
    /// ClientHello has passed the cookie gate.
    pub taken: bool,
}

impl FetchedSession {
    /// A session read with [`SessionStore::get`]: it resumes, but never with 0-RTT.
    pub fn from_get(session: Session) -> Self {
        Self { session, taken: false }
    }

    /// A session read with [`SessionStore::take`]: it may carry 0-RTT.
    pub fn from_take(session: Session) -> Self {
        Self { session, taken: true }
    }
}

/// Where the server found the session it resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionSource {
    /// Handed in with the datagram; `taken` as in [`FetchedSession::taken`].
    Fetched { taken: bool },
    /// The in-process [`ServerConfig::session_store`](crate::ServerConfig::session_store).
    Store,
}

/// Server: the unexpired session under `key`, handed-in ones first, then the in-process store.
/// `dtls13` selects tickets (else DTLS 1.2 session IDs).
pub(crate) fn find_session(
    config: &crate::ServerConfig,
    fetched: &[FetchedSession],
    key: &[u8],
    dtls13: bool,
    now: Instant,
) -> Option<(Session, SessionSource)> {
    let usable = |s: &Session| s.store_key() == key && s.is_dtls13_ticket() == dtls13 && !s.is_expired(now);
    if let Some(f) = fetched.iter().find(|f| usable(&f.session)) {
        return Some((f.session.clone(), SessionSource::Fetched { taken: f.taken }));
    }
    let store = config.session_store.as_ref()?;
    let bytes = store.get(key, now)?;
    let s = Session::decode(&bytes, now, (config.common.wall_clock)()).ok()?;
    usable(&s).then_some((s, SessionSource::Store))
}

/// Server: stores `session` in the in-process store, if any, for its remaining lifetime.
pub(crate) fn store_session(config: &crate::ServerConfig, session: &Session, now: Instant) {
    if let Some(store) = &config.session_store {
        let bytes = session.encode(now, (config.common.wall_clock)());
        store.put(session.store_key(), bytes, session.ttl(now), now);
    }
}

/// Server-side storage of encoded sessions ([`Session::encode`]), keyed by session ID or ticket
/// ([`Session::store_key`]), with expiry. Implementations must be safe to share between
/// threads and, for [`SessionStore::take`], atomic.
pub trait SessionStore: Send + Sync + fmt::Debug {
    /// Stores `session` under `key` for `ttl` from `now` (the store may keep it shorter,
    /// never longer).
    fn put(&self, key: &[u8], session: Zeroizing<Vec<u8>>, ttl: Duration, now: Instant);
    /// The session under `key`, if present and not expired at `now`; it stays stored.
    fn get(&self, key: &[u8], now: Instant) -> Option<Zeroizing<Vec<u8>>>;
    /// Removes the session under `key` and returns it, in one atomic step: of any number of
    /// concurrent `take`s of one key, at most one returns it (single-use tickets,
    /// RFC 8446 §8.1). Expired sessions are removed and not returned.
    fn take(&self, key: &[u8], now: Instant) -> Option<Zeroizing<Vec<u8>>>;
}

struct Entry {
    /// Exact size (no spare capacity), wiped on drop.
    bytes: Zeroizing<Box<[u8]>>,
    expires: Instant,
    /// Which `order` position is this entry's: a key put again or taken leaves a stale one.
    seq: u64,
}

#[derive(Default)]
struct Table {
    /// Each key is stored once: `order` shares its allocation.
    map: HashMap<Arc<[u8]>, Entry>,
    /// Keys in the order they were put, oldest first, for eviction; a position whose sequence
    /// number is not its entry's any more is stale and skipped.
    order: VecDeque<(u64, Arc<[u8]>)>,
    next_seq: u64,
}

impl Table {
    /// Drops the stale positions once they outnumber the live ones (amortised O(1) per call,
    /// so `take` needs no scan and `order` stays within twice the map).
    fn compact(&mut self) {
        if self.order.len() > 2 * self.map.len() + 32 {
            let map = &self.map;
            self.order.retain(|(seq, k)| map.get(k).is_some_and(|e| e.seq == *seq));
        }
    }
}

/// A bounded, expiring, thread-safe in-memory store: oldest sessions are evicted first when
/// full, and no session is kept past its TTL or past `max_lifetime` (RFC 5246 App. F.1.4
/// suggests at most 24 hours for session IDs).
pub struct MemorySessionStore {
    capacity: usize,
    max_lifetime: Duration,
    inner: Mutex<Table>,
}

impl fmt::Debug for MemorySessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySessionStore")
            .field("capacity", &self.capacity)
            .field("max_lifetime", &self.max_lifetime)
            .field("len", &self.len())
            .finish()
    }
}

impl MemorySessionStore {
    /// A store holding at most `capacity` sessions, each for at most `max_lifetime`.
    pub fn new(capacity: usize, max_lifetime: Duration) -> Self {
        Self { capacity: capacity.max(1), max_lifetime, inner: Mutex::new(Table::default()) }
    }

    /// Number of stored sessions (expired ones included until they are looked up or evicted).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // The table stays consistent at every step, so a panic elsewhere does not poison it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SessionStore for MemorySessionStore {
    fn put(&self, key: &[u8], session: Zeroizing<Vec<u8>>, ttl: Duration, now: Instant) {
        let Some(expires) = now.checked_add(ttl.min(self.max_lifetime)) else { return };
        // An exact-size copy: the encoder's buffer may have spare capacity, kept as long as
        // the session otherwise (and dropping `session` wipes it).
        let bytes = Zeroizing::new(Box::<[u8]>::from(&session[..]));
        let mut g = self.lock();
        let t = &mut *g;
        let seq = t.next_seq;
        t.next_seq += 1;
        let key: Arc<[u8]> = Arc::from(key);
        t.map.insert(key.clone(), Entry { bytes, expires, seq });
        t.order.push_back((seq, key));
        while t.map.len() > self.capacity {
            let Some((seq, old)) = t.order.pop_front() else { break };
            if t.map.get(&old).is_some_and(|e| e.seq == seq) {
                t.map.remove(&old);
            }
        }
        t.compact();
    }

    fn get(&self, key: &[u8], now: Instant) -> Option<Zeroizing<Vec<u8>>> {
        let g = self.lock();
        g.map.get(key).filter(|e| now < e.expires).map(|e| Zeroizing::new(e.bytes.to_vec()))
    }

    fn take(&self, key: &[u8], now: Instant) -> Option<Zeroizing<Vec<u8>>> {
        let mut g = self.lock();
        let mut e = g.map.remove(key)?;
        // Its place in `order` goes stale (skipped by its sequence number), no scan here.
        g.compact();
        (now < e.expires).then(|| Zeroizing::new(std::mem::take(&mut *e.bytes).into_vec()))
    }
}

/// The sessions a ClientHello datagram offers for resumption, borrowed from the datagram: the
/// DTLS 1.2 legacy session_id (RFC 5246 §7.4.1.2), the DTLS 1.2 SessionTicket extension
/// (RFC 5077 §3.2) and the DTLS 1.3 pre_shared_key identities (RFC 8446 §4.2.11), with
/// whether early_data is offered (§4.2.10). Made by [`offered_sessions`]; allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferedSessions<'a> {
    session_id: &'a [u8],
    /// The SessionTicket extension's data (empty when absent or empty).
    ticket: &'a [u8],
    /// The identities vector of pre_shared_key, without its length prefix.
    identities: &'a [u8],
    early_data: bool,
}

impl<'a> OfferedSessions<'a> {
    /// The DTLS 1.2 session ID the client asks to resume, if not empty.
    pub fn session_id(&self) -> Option<&'a [u8]> {
        (!self.session_id.is_empty()).then_some(self.session_id)
    }

    /// The DTLS 1.2 RFC 5077 ticket the client asks to resume with, if the SessionTicket
    /// extension is present and not empty.
    pub fn session_ticket(&self) -> Option<&'a [u8]> {
        (!self.ticket.is_empty()).then_some(self.ticket)
    }

    /// The DTLS 1.3 PSK identities (tickets or external PSK identities), in the client's order.
    /// Only the first may carry early data (RFC 8446 §4.2.10).
    pub fn psk_identities(&self) -> PskIdentities<'a> {
        PskIdentities { r: Reader::new(self.identities) }
    }

    /// Whether the ClientHello offers 0-RTT early data (the early_data extension). If so, fetch
    /// its first PSK identity with [`SessionStore::take`] (see [`FetchedSession::taken`]).
    pub fn early_data(&self) -> bool {
        self.early_data
    }

    /// Every store key offered: the session ID, the 1.2 ticket, then the PSK identities.
    pub fn keys(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.session_id().into_iter().chain(self.session_ticket()).chain(self.psk_identities())
    }

    /// Whether nothing is offered.
    pub fn is_empty(&self) -> bool {
        self.session_id.is_empty() && self.ticket.is_empty() && self.identities.is_empty()
    }
}

/// The PSK identities of a ClientHello ([`OfferedSessions::psk_identities`]).
#[derive(Debug, Clone)]
pub struct PskIdentities<'a> {
    r: Reader<'a>,
}

impl<'a> Iterator for PskIdentities<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let id = self.r.vec_u16("identity").ok()?;
        self.r.u32("obfuscated_ticket_age").ok()?;
        Some(id)
    }
}

/// extension_type pre_shared_key (RFC 8446 §4.2).
const EXT_PRE_SHARED_KEY: u16 = 41;
/// extension_type early_data (RFC 8446 §4.2).
const EXT_EARLY_DATA: u16 = 42;
/// extension_type SessionTicket (RFC 5077 §3.2).
const EXT_SESSION_TICKET: u16 = 35;

/// What the ClientHello that starts `datagram` offers for resumption, or `None` when the
/// datagram does not start with a whole, well-formed epoch-0 ClientHello in one record and one
/// fragment (a layer sees fragmented ClientHellos reassembled by the cookie gate). Reads
/// nothing but the datagram and allocates nothing; a malformed pre_shared_key extension lists
/// no identities. Works for DTLS 1.2 and 1.3 ClientHellos alike (RFC 6347 §4.2.2,
/// RFC 9147 §5.3).
pub fn offered_sessions(datagram: &[u8]) -> Option<OfferedSessions<'_>> {
    let mut rec = Reader::new(datagram);
    // DTLSPlaintext: type, version, epoch, sequence_number, length (RFC 6347 §4.1).
    if rec.u8("type").ok()? != u8::from(ContentType::Handshake) {
        return None;
    }
    rec.u16("version").ok()?;
    if rec.u16("epoch").ok()? != 0 {
        return None;
    }
    rec.u48("sequence_number").ok()?;
    let mut hs = Reader::new(rec.vec_u16("fragment").ok()?);
    // Handshake header: msg_type, length, message_seq, fragment_offset, fragment_length.
    if hs.u8("msg_type").ok()? != u8::from(HandshakeType::ClientHello) {
        return None;
    }
    let length = hs.u24("length").ok()?;
    hs.u16("message_seq").ok()?;
    if hs.u24("fragment_offset").ok()? != 0 || hs.u24("fragment_length").ok()? != length {
        return None;
    }
    let mut ch = Reader::new(hs.take(length as usize, "body").ok()?);
    ch.u16("client_version").ok()?;
    ch.take(32, "random").ok()?;
    let session_id = ch.vec_u8("session_id").ok()?;
    if session_id.len() > 32 {
        return None;
    }
    ch.vec_u8("cookie").ok()?;
    ch.vec_u16("cipher_suites").ok()?;
    ch.vec_u8("compression_methods").ok()?;
    let mut out = OfferedSessions { session_id, ticket: &[], identities: &[], early_data: false };
    if ch.is_empty() {
        return Some(out);
    }
    let mut exts = Reader::new(ch.vec_u16("extensions").ok()?);
    while !exts.is_empty() {
        let ty = exts.u16("extension_type").ok()?;
        let data = exts.vec_u16("extension_data").ok()?;
        match ty {
            EXT_EARLY_DATA => out.early_data = true,
            EXT_SESSION_TICKET => out.ticket = data,
            EXT_PRE_SHARED_KEY => {
                let mut r = Reader::new(data);
                if let Ok(ids) = r.vec_u16("identities") {
                    out.identities = ids;
                }
            }
            _ => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    fn session12(now: Instant) -> Session {
        Session {
            id: vec![0x12; 32],
            suite: CipherSuite::from(0xC0A8),
            extended_master_secret: true,
            peer_identity: PeerIdentity::Psk(b"device-1".to_vec()),
            established_at: now - Duration::from_secs(30),
            lifetime: DEFAULT_SESSION_LIFETIME,
            master_secret: Zeroizing::new([0xA5; 48]),
            ticket12: None,
            ticket13: None,
        }
    }

    fn ticket13(now: Instant) -> Session {
        Session {
            id: vec![0x13; 16],
            suite: CipherSuite::TLS_AES_128_GCM_SHA256,
            extended_master_secret: true,
            peer_identity: PeerIdentity::Certificate(vec![vec![1, 2, 3], vec![4; 300]]),
            established_at: now - Duration::from_millis(1500),
            lifetime: DEFAULT_TICKET_LIFETIME,
            master_secret: Zeroizing::new([0; 48]),
            ticket12: None,
            ticket13: Some(Ticket13 {
                psk: Zeroizing::new([0x5A; 32]),
                age_add: 0xDEAD_BEEF,
                max_early_data: 1024,
                client_ip: Some("2001:db8::7".parse().unwrap()),
            }),
        }
    }

    /// Decoding rounds the issue time down to the millisecond: equal up to that.
    fn same(a: &Session, b: &Session) {
        let drift = a.established_at.saturating_duration_since(b.established_at)
            + b.established_at.saturating_duration_since(a.established_at);
        assert!(drift < Duration::from_millis(2), "issue time moved by {drift:?}");
        let mut b = b.clone();
        b.established_at = a.established_at;
        assert_eq!(*a, b);
    }

    #[test]
    fn round_trip_both_kinds_and_across_clocks() {
        let now = Instant::now();
        let wall = SystemTime::now();
        for s in [session12(now), ticket13(now)] {
            let bytes = s.encode(now, wall);
            assert_eq!(bytes[0], SESSION_ENCODING_VERSION);
            let d = Session::decode(&bytes, now, wall).unwrap();
            same(&s, &d);
            assert_eq!(d.master_secret(), s.master_secret());
            assert_eq!(d.is_dtls13_ticket(), s.is_dtls13_ticket());
            assert_eq!(d.allows_early_data(), s.allows_early_data());
            // Another process, a minute later on both of its clocks: the session is a minute older.
            let (later, later_wall) = (now + Duration::from_secs(60), wall + Duration::from_secs(60));
            let d2 = Session::decode(&bytes, later, later_wall).unwrap();
            let age = later.duration_since(d2.established_at);
            let want = now.duration_since(s.established_at) + Duration::from_secs(60);
            assert!(age >= want && age < want + Duration::from_millis(2), "{age:?} vs {want:?}");
        }
        // Every peer identity kind and no client IP.
        for id in [PeerIdentity::Anonymous, PeerIdentity::RawPublicKey(vec![9; 91])] {
            let mut s = ticket13(now);
            s.peer_identity = id;
            s.ticket13.as_mut().unwrap().client_ip = Some("192.0.2.9".parse().unwrap());
            same(&s, &Session::decode(&s.encode(now, wall), now, wall).unwrap());
            s.ticket13.as_mut().unwrap().client_ip = None;
            same(&s, &Session::decode(&s.encode(now, wall), now, wall).unwrap());
        }
    }

    #[test]
    fn a_dtls12_ticket_session_round_trips_without_a_session_id() {
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut s = session12(now);
        s.id.clear();
        s.ticket12 = Some(vec![0x77; 150]);
        let bytes = s.encode(now, wall);
        same(&s, &Session::decode(&bytes, now, wall).unwrap());
        for n in 0..bytes.len() {
            assert!(Session::decode(&bytes[..n], now, wall).is_err(), "prefix of {n} bytes decoded");
        }
        // Without the ticket flag, an empty session ID is refused.
        s.ticket12 = None;
        assert!(Session::decode(&s.encode(now, wall), now, wall).is_err());
    }

    #[test]
    fn issue_time_in_the_future_is_taken_as_now() {
        let now = Instant::now();
        let wall = SystemTime::now();
        let bytes = ticket13(now).encode(now, wall + Duration::from_secs(3600));
        let d = Session::decode(&bytes, now, wall).unwrap();
        assert_eq!(d.established_at, now);
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        let now = Instant::now();
        let wall = SystemTime::now();
        for s in [session12(now), ticket13(now)] {
            let bytes = s.encode(now, wall);
            for n in 0..bytes.len() {
                assert!(Session::decode(&bytes[..n], now, wall).is_err(), "prefix of {n} bytes decoded");
            }
            let mut longer = bytes.to_vec();
            longer.push(0);
            assert_eq!(Session::decode(&longer, now, wall), Err(SessionDecodeError::TrailingBytes));
            let mut v2 = bytes.to_vec();
            v2[0] = 2;
            assert_eq!(Session::decode(&v2, now, wall), Err(SessionDecodeError::UnknownVersion(2)));
        }
    }

    #[test]
    fn garbage_never_panics() {
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let valid = ticket13(now).encode(now, wall);
        for i in 0..20_000 {
            let len = (next() % 200) as usize;
            let mut g: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if i % 2 == 0 && !g.is_empty() {
                // Mostly valid headers, so the decoder gets past the first checks.
                g[0] = SESSION_ENCODING_VERSION;
            }
            let _ = Session::decode(&g, now, wall);
            // Single-byte corruption of a valid encoding: an error or a session, never a panic.
            let mut c = valid.to_vec();
            let at = (next() as usize) % c.len();
            c[at] ^= (next() as u8) | 1;
            let _ = Session::decode(&c, now, wall);
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let now = Instant::now();
        for s in [session12(now), ticket13(now)] {
            let text = format!("{s:?} {:?}", FetchedSession::from_take(s.clone()));
            // The secrets are runs of 0xA5 (165) and 0x5A (90), in any notation Debug uses.
            for secret in ["165, 165", "90, 90", "a5a5", "A5A5", "5a5a", "5A5A"] {
                assert!(!text.contains(secret), "{text}");
            }
            assert!(!text.contains("master_secret: [") && !text.contains("psk:"), "{text}");
        }
    }

    #[test]
    fn memory_store_expires_bounds_and_takes_once() {
        let now = Instant::now();
        let store = MemorySessionStore::new(2, Duration::from_secs(100));
        let b = |v: u8| Zeroizing::new(vec![v]);
        store.put(b"a", b(1), Duration::from_secs(10), now);
        assert_eq!(store.get(b"a", now + Duration::from_secs(9)).as_deref().map(|v| v.as_slice()), Some(&[1][..]));
        assert!(store.get(b"a", now + Duration::from_secs(10)).is_none(), "expired at its TTL");
        // The store's own cap applies to longer TTLs.
        store.put(b"b", b(2), Duration::from_secs(1000), now);
        assert!(store.get(b"b", now + Duration::from_secs(101)).is_none());
        // Bounded: the oldest goes.
        store.put(b"c", b(3), Duration::from_secs(10), now);
        assert_eq!(store.len(), 2);
        assert!(store.get(b"a", now).is_none());
        assert!(store.take(b"c", now).is_some());
        assert!(store.take(b"c", now).is_none());
        assert!(store.get(b"c", now).is_none());
    }

    /// `take` leaves a stale eviction position behind instead of scanning: those stay bounded,
    /// and a key put again after a take is evicted by its new position, not its old one.
    #[test]
    fn memory_store_stale_positions_stay_bounded_and_are_skipped() {
        let now = Instant::now();
        let ttl = Duration::from_secs(10);
        let store = MemorySessionStore::new(3, Duration::from_secs(100));
        let b = |v: u8| Zeroizing::new(vec![v]);
        for i in 0..10_000u32 {
            store.put(&i.to_be_bytes(), b(1), ttl, now);
            assert!(store.take(&i.to_be_bytes(), now).is_some());
        }
        assert!(store.lock().order.len() <= 32 + 2 * 3, "{} positions kept", store.lock().order.len());
        store.put(b"x", b(1), ttl, now);
        store.put(b"y", b(2), ttl, now);
        assert!(store.take(b"x", now).is_some());
        store.put(b"x", b(3), ttl, now);
        store.put(b"z", b(4), ttl, now);
        store.put(b"w", b(5), ttl, now);
        assert!(store.get(b"y", now).is_none(), "y is the oldest live one");
        for (k, v) in [(&b"x"[..], 3), (b"z", 4), (b"w", 5)] {
            assert_eq!(store.get(k, now).as_deref().map(|v| v.as_slice()), Some(&[v][..]));
        }
    }

    #[test]
    fn memory_store_take_is_atomic_across_threads() {
        const THREADS: usize = 8;
        let store = Arc::new(MemorySessionStore::new(1000, Duration::from_secs(60)));
        let now = Instant::now();
        for round in 0..200u32 {
            let key = round.to_be_bytes();
            store.put(&key, Zeroizing::new(vec![7; 64]), Duration::from_secs(60), now);
            let barrier = Arc::new(Barrier::new(THREADS));
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    let (store, barrier) = (store.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        store.take(&key, now).is_some()
                    })
                })
                .collect();
            let won = handles.into_iter().map(|h| h.join().unwrap()).filter(|&w| w).count();
            assert_eq!(won, 1, "round {round}: {won} takes succeeded");
        }
        assert!(store.is_empty());
    }

    #[test]
    fn offered_sessions_refuses_what_is_not_a_client_hello() {
        assert!(offered_sessions(&[]).is_none());
        assert!(offered_sessions(&[22, 0xfe, 0xfd, 0, 0]).is_none());
        // An application-data record.
        let mut d = vec![23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 2, 1, 2];
        assert!(offered_sessions(&d).is_none());
        d[0] = 22;
        assert!(offered_sessions(&d).is_none());
    }
}
