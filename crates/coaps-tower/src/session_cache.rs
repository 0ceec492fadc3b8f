//! The client's side of resumption: the sessions and tickets a [`Client`](crate::Client)
//! received, per server (name and port), kept for the next connection and savable across
//! process restarts (a device that sleeps, reboots, wakes and resumes in one round trip).
//!
//! * A DTLS 1.2 session ID may be resumed any number of times while it lives: the cache keeps
//!   the newest one per server.
//! * DTLS 1.3 tickets are kept newest first, up to [`SessionCache::per_server`] per server;
//!   [`SessionCache::take`] hands out the newest and forgets it, because a client should not
//!   offer one ticket twice (RFC 8446 §C.4: reuse lets observers link connections; a server
//!   may also take a 0-RTT ticket on first use, §8.1). Each resumption brings a fresh one.
//! * Expired sessions are dropped when met; the number of servers is bounded too (the least
//!   recently updated goes first).
//!
//! # Saved form
//!
//! [`SessionCache::save`] writes every unexpired session in [`Session::encode`]'s format
//! (secrets included: keep the bytes like a key, e.g. in a file of mode 0600) and
//! [`SessionCache::load`] reads them back; a truncated, altered or foreign file is refused with
//! a [`SessionFileError`], never a panic. Format (integers big-endian):
//!
//! ```text
//! "COAPS-SESSIONS" u8 version (1)
//! u16 servers; each: u8 name length, name, u16 port, u8 sessions; each: u16 length, Session::encode
//! [32] SHA-256 of everything before (detects truncation and corruption; it is no signature)
//! ```

use coaps_dtls::crypto::CryptoProvider;
use coaps_dtls::crypto::rustcrypto::RustCrypto;
use coaps_dtls::{Session, SessionDecodeError, Zeroizing};
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

const MAGIC: &[u8; 14] = b"COAPS-SESSIONS";
const FILE_VERSION: u8 = 1;
const DIGEST_LEN: usize = 32;

/// Default [`SessionCache::new`] bounds: servers.
pub const DEFAULT_MAX_SERVERS: usize = 64;
/// Default [`SessionCache::new`] bounds: DTLS 1.3 tickets per server.
pub const DEFAULT_TICKETS_PER_SERVER: usize = 4;

/// Why [`SessionCache::load`] refused its input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionFileError {
    /// Not a session file (another kind of file, or empty).
    Foreign,
    /// A session-file version this build does not read.
    UnknownVersion(u8),
    /// Truncated or altered: the checksum does not match, or the structure is broken.
    Corrupted(&'static str),
    /// A session inside does not decode.
    Session(SessionDecodeError),
}

impl fmt::Display for SessionFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Foreign => f.write_str("not a coaps session file"),
            Self::UnknownVersion(v) => write!(f, "session file version {v} is not supported by this build"),
            Self::Corrupted(w) => write!(f, "session file truncated or corrupted ({w})"),
            Self::Session(e) => write!(f, "session file holds an invalid session: {e}"),
        }
    }
}

impl std::error::Error for SessionFileError {}

struct Server {
    name: String,
    port: u16,
    /// Newest first. At most one DTLS 1.2 session.
    sessions: VecDeque<Session>,
}

struct Inner {
    /// Most recently updated first.
    servers: VecDeque<Server>,
    max_servers: usize,
    per_server: usize,
}

/// Sessions per server name and port; see the [module docs](self). Clones share the cache.
#[derive(Clone)]
pub struct SessionCache {
    inner: Arc<Mutex<Inner>>,
}

/// Shows servers and counts, never a session's secrets.
impl fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.lock();
        let mut l = f.debug_list();
        for s in &g.servers {
            l.entry(&format_args!("{}:{} ({} sessions)", s.name, s.port, s.sessions.len()));
        }
        l.finish()
    }
}

impl Default for SessionCache {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SERVERS, DEFAULT_TICKETS_PER_SERVER)
    }
}

impl SessionCache {
    /// An empty cache for at most `max_servers` servers and `per_server` DTLS 1.3 tickets
    /// each (both at least 1).
    pub fn new(max_servers: usize, per_server: usize) -> Self {
        let inner = Inner { servers: VecDeque::new(), max_servers: max_servers.max(1), per_server: per_server.max(1) };
        Self { inner: Arc::new(Mutex::new(inner)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Most DTLS 1.3 tickets kept per server.
    pub fn per_server(&self) -> usize {
        self.lock().per_server
    }

    /// Keeps `session`, received from `server_name` on `port`, as the newest for that server.
    pub fn insert(&self, server_name: &str, port: u16, session: Session) {
        let mut g = self.lock();
        let per_server = g.per_server;
        let i = match g.servers.iter().position(|s| s.name == server_name && s.port == port) {
            Some(i) => i,
            None => {
                g.servers.push_front(Server { name: server_name.to_owned(), port, sessions: VecDeque::new() });
                let max = g.max_servers;
                g.servers.truncate(max);
                0
            }
        };
        let mut server = g.servers.remove(i).expect("index from position");
        server.sessions.retain(|s| s.id != session.id && (session.is_dtls13_ticket() || s.is_dtls13_ticket()));
        server.sessions.push_front(session);
        server.sessions.truncate(per_server);
        g.servers.push_front(server);
    }

    /// The newest unexpired session for `server_name` on `port`, to resume with; a DTLS 1.3
    /// ticket is removed (offered once), a DTLS 1.2 session stays. Expired ones are dropped.
    pub fn take(&self, server_name: &str, port: u16, now: Instant) -> Option<Session> {
        let mut g = self.lock();
        let server = g.servers.iter_mut().find(|s| s.name == server_name && s.port == port)?;
        server.sessions.retain(|s| !s.is_expired(now));
        let newest = server.sessions.front()?.clone();
        if newest.is_dtls13_ticket() {
            server.sessions.pop_front();
        }
        Some(newest)
    }

    /// The sessions kept for `server_name` on `port`, newest first, expired ones included.
    pub fn sessions(&self, server_name: &str, port: u16) -> Vec<Session> {
        let g = self.lock();
        g.servers
            .iter()
            .find(|s| s.name == server_name && s.port == port)
            .map(|s| s.sessions.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of sessions kept, all servers together.
    pub fn len(&self) -> usize {
        self.lock().servers.iter().map(|s| s.sessions.len()).sum()
    }

    /// Whether no session is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The saved form of every unexpired session (see the [module docs](self#saved-form)).
    /// `now` and `wall` are two readings of the monotonic and wall clocks taken together
    /// ([`Session::encode`]).
    pub fn save(&self, now: Instant, wall: SystemTime) -> Zeroizing<Vec<u8>> {
        let g = self.lock();
        let mut out = Zeroizing::new(Vec::with_capacity(256));
        out.extend_from_slice(MAGIC);
        out.push(FILE_VERSION);
        let servers: Vec<&Server> =
            g.servers.iter().filter(|s| s.sessions.iter().any(|x| !x.is_expired(now))).collect();
        out.extend_from_slice(&(servers.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
        for s in servers.into_iter().take(usize::from(u16::MAX)) {
            let name = &s.name.as_bytes()[..s.name.len().min(255)];
            out.push(name.len() as u8);
            out.extend_from_slice(name);
            out.extend_from_slice(&s.port.to_be_bytes());
            let live: Vec<Zeroizing<Vec<u8>>> = s
                .sessions
                .iter()
                .filter(|x| !x.is_expired(now))
                .take(255)
                .map(|x| x.encode(now, wall))
                .filter(|b| b.len() <= usize::from(u16::MAX))
                .collect();
            out.push(live.len() as u8);
            for b in live {
                out.extend_from_slice(&(b.len() as u16).to_be_bytes());
                out.extend_from_slice(&b);
            }
        }
        let digest = RustCrypto.sha256_parts(&[&out[..]]);
        out.extend_from_slice(&digest);
        out
    }

    /// Reads what [`SessionCache::save`] wrote, into a cache with the default bounds (see
    /// [`SessionCache::new`]). Total: any input gives a cache or a [`SessionFileError`].
    /// Expired sessions are read too (they are dropped when met, so a caller can tell "expired"
    /// from "none").
    pub fn load(bytes: &[u8], now: Instant, wall: SystemTime) -> Result<Self, SessionFileError> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(SessionFileError::Foreign);
        }
        let version = *bytes.get(MAGIC.len()).ok_or(SessionFileError::Corrupted("no version"))?;
        if version != FILE_VERSION {
            return Err(SessionFileError::UnknownVersion(version));
        }
        if bytes.len() < MAGIC.len() + 1 + DIGEST_LEN {
            return Err(SessionFileError::Corrupted("too short"));
        }
        let (body, digest) = bytes.split_at(bytes.len() - DIGEST_LEN);
        if RustCrypto.sha256_parts(&[body]) != digest {
            return Err(SessionFileError::Corrupted("checksum"));
        }
        let mut r = Cursor { b: &body[MAGIC.len() + 1..] };
        let cache = SessionCache::default();
        let n_servers = r.u16()?;
        let mut servers = Vec::new();
        for _ in 0..n_servers {
            let name_len = usize::from(r.u8()?);
            let name =
                std::str::from_utf8(r.take(name_len)?).map_err(|_| SessionFileError::Corrupted("server name"))?;
            let port = r.u16()?;
            let n = r.u8()?;
            let mut sessions = Vec::new();
            for _ in 0..n {
                let len = usize::from(r.u16()?);
                let s = Session::decode(r.take(len)?, now, wall).map_err(SessionFileError::Session)?;
                sessions.push(s);
            }
            servers.push((name.to_owned(), port, sessions));
        }
        if !r.b.is_empty() {
            return Err(SessionFileError::Corrupted("trailing bytes"));
        }
        // Inserted oldest first, so the order (servers and sessions) comes out as saved.
        for (name, port, sessions) in servers.into_iter().rev() {
            for s in sessions.into_iter().rev() {
                cache.insert(&name, port, s);
            }
        }
        Ok(cache)
    }
}

struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SessionFileError> {
        if self.b.len() < n {
            return Err(SessionFileError::Corrupted("truncated"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    fn u8(&mut self) -> Result<u8, SessionFileError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, SessionFileError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
}
