use super::service::EarlyData;
use crate::types::Handshaken;
use coap_lite::RequestType;
use coaps_dtls::PeerIdentity;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tower_layer::Layer;

/// What happens to an unsafe request (POST, PUT, DELETE, PATCH, iPATCH) that arrived as 0-RTT
/// data and is not on the allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EarlyDataPolicy {
    /// Held until the handshake completes, then run once (the default).
    #[default]
    Defer,
    /// Answered 4.01 Unauthorized with an Echo option (RFC 9175 §2.4); the client repeats it
    /// after the handshake with the Echo value.
    Reject,
}

/// One allow-list entry: a method and a path pattern. Segments of the pattern match the
/// request's Uri-Path options one by one; `*` matches any one segment, a final `**` any rest.
#[derive(Debug, Clone, PartialEq)]
pub struct AllowRule {
    method: RequestType,
    pattern: Vec<String>,
}

impl AllowRule {
    /// `method` on paths matching `pattern` (`"actuators/*/state"`, `"lights/**"`).
    pub fn new(method: RequestType, pattern: &str) -> Self {
        let pattern = pattern.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect();
        Self { method, pattern }
    }

    pub(crate) fn matches(&self, method: RequestType, path: &[&[u8]]) -> bool {
        if method != self.method {
            return false;
        }
        let mut i = 0;
        for (n, seg) in self.pattern.iter().enumerate() {
            if seg == "**" && n + 1 == self.pattern.len() {
                return true;
            }
            match path.get(i) {
                Some(p) if seg == "*" || seg.as_bytes() == *p => i += 1,
                _ => return false,
            }
        }
        i == path.len()
    }
}

/// Counters of an [`EarlyDataLayer`] (shared by its clones and services).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EarlyDataStats {
    /// 0-RTT requests with a safe method (GET, FETCH) run at once.
    pub safe_run_early: u64,
    /// 0-RTT requests on the allow-list run at once.
    pub allowed_run_early: u64,
    /// Unsafe 0-RTT requests held until the handshake completes.
    pub deferred: u64,
    /// Held requests run once their handshake completed.
    pub deferred_run: u64,
    /// Held requests dropped because the handshake failed, timed out or was replaced.
    pub deferred_dropped: u64,
    /// Unsafe 0-RTT requests refused because the association's held count or bytes were full.
    pub over_limit: u64,
    /// Unsafe 0-RTT requests answered 4.01 + Echo ([`EarlyDataPolicy::Reject`]).
    pub rejected: u64,
    /// 1-RTT requests whose Echo verified.
    pub echo_verified: u64,
    /// 1-RTT requests whose Echo was forged, stale or another peer's: answered 4.01, not run.
    pub echo_refused: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) safe_run_early: AtomicU64,
    pub(crate) allowed_run_early: AtomicU64,
    pub(crate) deferred: AtomicU64,
    pub(crate) deferred_run: AtomicU64,
    pub(crate) deferred_dropped: AtomicU64,
    pub(crate) over_limit: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) echo_verified: AtomicU64,
    pub(crate) echo_refused: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Whose holds these are: the association (handshake) when the handshake layer named it, so a
/// Connection ID that moves the association to a new address (RFC 9146 §6, RFC 9147 §9) keeps
/// its holds, and a new association at the same address starts with none; the address only for
/// requests built by hand.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum HoldKey {
    Association(crate::types::Association),
    Address(SocketAddr),
}

impl HoldKey {
    pub(crate) fn of(req: &crate::types::CoapRequest) -> Self {
        match req.association.client_random() {
            Some(_) => Self::Association(req.association),
            None => Self::Address(req.peer),
        }
    }
}

/// What one association holds.
pub(crate) struct Held {
    pub(crate) handshake: Handshaken,
    pub(crate) count: usize,
    pub(crate) bytes: usize,
}

pub(crate) struct Shared {
    pub(crate) policy: EarlyDataPolicy,
    pub(crate) allow: Vec<AllowRule>,
    pub(crate) max_deferred: usize,
    pub(crate) max_deferred_bytes: usize,
    pub(crate) defer_timeout: Duration,
    pub(crate) echo_key: [u8; 32],
    pub(crate) echo_lifetime: Duration,
    pub(crate) wall_clock: fn() -> SystemTime,
    pub(crate) held: Mutex<HashMap<HoldKey, Held>>,
    pub(crate) counters: Counters,
}

impl Shared {
    pub(crate) fn held(&self) -> MutexGuard<'_, HashMap<HoldKey, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What an Echo value is bound to: the authenticated identity, or the address of an
    /// anonymous peer.
    pub(crate) fn echo_peer(peer: SocketAddr, identity: &PeerIdentity) -> Vec<u8> {
        match identity {
            PeerIdentity::Anonymous => format!("addr:{peer}").into_bytes(),
            PeerIdentity::Psk(id) => [&b"psk:"[..], id].concat(),
            PeerIdentity::Certificate(chain) => [&b"x509:"[..], chain.first().map_or(&[][..], Vec::as_slice)].concat(),
            PeerIdentity::RawPublicKey(spki) => [&b"rpk:"[..], spki].concat(),
        }
    }
}

/// Layer that applies the 0-RTT policy of the [module docs](super) to the requests of an
/// application. Clones share the configuration, the held requests and the counters.
#[derive(Clone)]
pub struct EarlyDataLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for EarlyDataLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("EarlyDataLayer")
            .field("policy", &s.policy)
            .field("allow", &s.allow)
            .field("max_deferred", &s.max_deferred)
            .field("max_deferred_bytes", &s.max_deferred_bytes)
            .field("defer_timeout", &s.defer_timeout)
            .field("echo_lifetime", &s.echo_lifetime)
            .finish_non_exhaustive()
    }
}

impl Default for EarlyDataLayer {
    fn default() -> Self {
        Self::new()
    }
}

/// Default [`EarlyDataLayer::max_deferred`].
pub const DEFAULT_MAX_DEFERRED: usize = 4;
/// Default [`EarlyDataLayer::max_deferred_bytes`]: the engine's default `max_early_data_size`.
pub const DEFAULT_MAX_DEFERRED_BYTES: usize = 1024;
/// Default [`EarlyDataLayer::defer_timeout`]: longer than a handshake on a slow link takes.
pub const DEFAULT_DEFER_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`EarlyDataLayer::echo_lifetime`].
pub const DEFAULT_ECHO_LIFETIME: Duration = Duration::from_secs(30);

impl EarlyDataLayer {
    /// Policy [`EarlyDataPolicy::Defer`], no allow-list, a random Echo key and the defaults
    /// above.
    pub fn new() -> Self {
        let mut key = [0u8; 32];
        coaps_dtls::crypto::Rng::fill(&mut coaps_dtls::crypto::SeededRng::from_os(), &mut key);
        Self {
            shared: Arc::new(Shared {
                policy: EarlyDataPolicy::Defer,
                allow: Vec::new(),
                max_deferred: DEFAULT_MAX_DEFERRED,
                max_deferred_bytes: DEFAULT_MAX_DEFERRED_BYTES,
                defer_timeout: DEFAULT_DEFER_TIMEOUT,
                echo_key: key,
                echo_lifetime: DEFAULT_ECHO_LIFETIME,
                wall_clock: SystemTime::now,
                held: Mutex::new(HashMap::new()),
                counters: Counters::default(),
            }),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared {
        Arc::get_mut(&mut self.shared).expect("configure the EarlyDataLayer before cloning it")
    }

    /// What happens to unsafe 0-RTT requests. Call before cloning the layer (as every setter).
    pub fn policy(mut self, policy: EarlyDataPolicy) -> Self {
        self.shared_mut().policy = policy;
        self
    }

    /// Also runs `method` on paths matching `pattern` at once in 0-RTT (see [`AllowRule`]):
    /// only for requests the application knows to be idempotent, since a replay runs them
    /// again.
    pub fn allow(mut self, method: RequestType, pattern: &str) -> Self {
        self.shared_mut().allow.push(AllowRule::new(method, pattern));
        self
    }

    /// Most requests held per association (default [`DEFAULT_MAX_DEFERRED`]).
    pub fn max_deferred(mut self, n: usize) -> Self {
        self.shared_mut().max_deferred = n;
        self
    }

    /// Most payload and option bytes held per association (default
    /// [`DEFAULT_MAX_DEFERRED_BYTES`]; match the engine's `max_early_data_size`).
    pub fn max_deferred_bytes(mut self, n: usize) -> Self {
        self.shared_mut().max_deferred_bytes = n;
        self
    }

    /// Longest a request is held for its handshake (default [`DEFAULT_DEFER_TIMEOUT`]).
    pub fn defer_timeout(mut self, d: Duration) -> Self {
        self.shared_mut().defer_timeout = d;
        self
    }

    /// The key of Echo values: give every node of a cluster the same one, so a retry that
    /// reaches another node verifies. Default: random per layer.
    pub fn echo_key(mut self, key: [u8; 32]) -> Self {
        self.shared_mut().echo_key = key;
        self
    }

    /// How long an Echo value is accepted after it was issued (default
    /// [`DEFAULT_ECHO_LIFETIME`]; whole seconds).
    pub fn echo_lifetime(mut self, d: Duration) -> Self {
        self.shared_mut().echo_lifetime = d;
        self
    }

    /// The wall clock of Echo timestamps (default `SystemTime::now`).
    pub fn wall_clock(mut self, clock: fn() -> SystemTime) -> Self {
        self.shared_mut().wall_clock = clock;
        self
    }

    /// The counters so far.
    pub fn stats(&self) -> EarlyDataStats {
        let c = &self.shared.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EarlyDataStats {
            safe_run_early: l(&c.safe_run_early),
            allowed_run_early: l(&c.allowed_run_early),
            deferred: l(&c.deferred),
            deferred_run: l(&c.deferred_run),
            deferred_dropped: l(&c.deferred_dropped),
            over_limit: l(&c.over_limit),
            rejected: l(&c.rejected),
            echo_verified: l(&c.echo_verified),
            echo_refused: l(&c.echo_refused),
        }
    }

    /// A fresh Echo value for `peer`, as this layer would put in a 4.01 (for tests and for
    /// applications that ask for freshness themselves, RFC 9175 §2.4).
    pub fn issue_echo(&self, peer: SocketAddr, identity: &PeerIdentity) -> Vec<u8> {
        super::echo::issue(&self.shared.echo_key, (self.shared.wall_clock)(), &Shared::echo_peer(peer, identity))
    }
}

impl<S> Layer<S> for EarlyDataLayer {
    type Service = EarlyData<S>;
    fn layer(&self, inner: S) -> EarlyData<S> {
        EarlyData::new(inner, self.shared.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_rules_match_segments() {
        let r = AllowRule::new(RequestType::Put, "lights/*/state");
        assert!(r.matches(RequestType::Put, &[b"lights", b"3", b"state"]));
        assert!(!r.matches(RequestType::Post, &[b"lights", b"3", b"state"]));
        assert!(!r.matches(RequestType::Put, &[b"lights", b"3"]));
        assert!(!r.matches(RequestType::Put, &[b"lights", b"3", b"state", b"x"]));
        let all = AllowRule::new(RequestType::Put, "lights/**");
        assert!(all.matches(RequestType::Put, &[b"lights", b"1", b"2"]));
        assert!(!all.matches(RequestType::Put, &[b"doors"]));
    }
}
