use super::{AsyncSessionStore, KeySpace, StoreError, StoreFuture};
use coaps_dtls::crypto::rustcrypto::RustCrypto;
use coaps_dtls::crypto::{AeadAlgorithm, CryptoProvider, RecordAead, Rng, SeededRng};
use coaps_dtls::{DEFAULT_SESSION_LIFETIME, Zeroizing};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The first byte of a sealed value: the sealing format's version.
const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// How to reach Redis and how to seal what goes there.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` (Redis 7 or Valkey, standalone).
    pub url: String,
    /// The 32-byte ChaCha20-Poly1305 key that seals every value (RFC 8439): the same on every
    /// node of a cluster, and secret like the sessions it protects.
    pub key: Zeroizing<[u8; 32]>,
    /// Put before every key, so several clusters can share one Redis. Default `coaps:`.
    pub prefix: String,
    /// Longest wait for one Redis command. Default 400 ms (within the layer's default
    /// look-up timeout, and well within the 1 s first retransmission timer of DTLS).
    pub op_timeout: Duration,
    /// Longest wait for one connection attempt. Default 1 s.
    pub connect_timeout: Duration,
    /// No session is kept longer than this. Default 24 hours.
    pub max_lifetime: Duration,
}

impl RedisConfig {
    /// A configuration with the defaults for `url` and `key`.
    pub fn new(url: impl Into<String>, key: [u8; 32]) -> Self {
        Self {
            url: url.into(),
            key: Zeroizing::new(key),
            prefix: "coaps:".into(),
            op_timeout: Duration::from_millis(400),
            connect_timeout: Duration::from_secs(1),
            max_lifetime: DEFAULT_SESSION_LIFETIME,
        }
    }
}

/// Never shows the sealing key (nor a password in the URL).
impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("prefix", &self.prefix)
            .field("op_timeout", &self.op_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .finish_non_exhaustive()
    }
}

/// Counters of a [`RedisStore`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisStats {
    /// Commands that failed (not connected, connection lost, timeout).
    pub errors: u64,
    /// Values that did not open under the store key (forged, truncated, sealed under another
    /// key or for another key): treated as absent.
    pub unsealing_failures: u64,
    /// Connections made (the first and every reconnection by the background task).
    pub connections: u64,
}

struct Inner {
    /// `None` until the background task has connected once; from then on the connection
    /// manager reconnects by itself (with back-off) after a loss.
    conn: Mutex<Option<ConnectionManager>>,
    aead: Box<dyn RecordAead>,
    rng: Mutex<SeededRng>,
    prefix: String,
    op_timeout: Duration,
    max_lifetime: Duration,
    errors: AtomicU64,
    unsealing_failures: AtomicU64,
    connections: AtomicU64,
    closed: AtomicBool,
}

/// Sessions in Redis, shared by every server pointed at it: a session issued by one node
/// resumes on any other, and outlives restarts.
///
/// * Values are sealed with ChaCha20-Poly1305 under [`RedisConfig::key`] (a fresh random
///   nonce each, the Redis key as associated data, so a value moved to another key does not
///   open): secrets are never stored in clear.
/// * Each entry carries its expiry as a Redis TTL (`SET … PX`), the session's remaining
///   lifetime capped by [`RedisConfig::max_lifetime`].
/// * [`AsyncSessionStore::take`] is `GETDEL` (Redis ≥ 6.2), atomic across nodes.
/// * An outage never blocks: every command is bounded by [`RedisConfig::op_timeout`] and
///   fails with a [`StoreError`] (the layer gives a full handshake); the connection is made,
///   and remade after a loss, in the background with exponential back-off.
///
/// Clones share the connection.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("connected", &self.is_connected())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

impl RedisStore {
    /// A store for `config`. Returns at once: the connection is made on a task spawned on the
    /// current tokio runtime (so this panics outside one), retried with back-off until it
    /// succeeds; until then every command fails fast with [`StoreError::Unavailable`]. Fails
    /// only for a URL that is not a Redis URL.
    pub fn connect(config: RedisConfig) -> Result<Self, StoreError> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| StoreError::Unavailable(format!("invalid Redis URL: {e}")))?;
        let aead = RustCrypto
            .aead(AeadAlgorithm::ChaCha20Poly1305, &config.key[..])
            .map_err(|_| StoreError::Unavailable("the sealing key was refused".into()))?;
        let inner = Arc::new(Inner {
            conn: Mutex::new(None),
            aead,
            rng: Mutex::new(SeededRng::from_os()),
            prefix: config.prefix,
            op_timeout: config.op_timeout,
            max_lifetime: config.max_lifetime,
            errors: AtomicU64::new(0),
            unsealing_failures: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(config.connect_timeout)
            .set_response_timeout(config.op_timeout)
            // Reconnection after a loss: 3 tries, 50 ms × 2^n with jitter, at most 2 s apart;
            // a failed round is started again by the next command.
            .set_number_of_retries(3)
            .set_exponent_base(2)
            .set_factor(50)
            .set_max_delay(2000);
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                match ConnectionManager::new_with_config(client.clone(), manager_config.clone()).await {
                    Ok(conn) => {
                        let Some(inner) = weak.upgrade() else { return };
                        inner.connections.fetch_add(1, Ordering::Relaxed);
                        *inner.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
                        tracing::info!("session store: connected to Redis");
                        return;
                    }
                    Err(e) => {
                        if weak.upgrade().is_none_or(|i| i.closed.load(Ordering::Relaxed)) {
                            return;
                        }
                        tracing::warn!(error = %e, retry_in = ?delay, "session store: cannot connect to Redis");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        Ok(Self { inner })
    }

    /// Whether the first connection has been made (after a later loss this stays true while
    /// the connection manager reconnects).
    pub fn is_connected(&self) -> bool {
        self.inner.conn.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// The counters so far.
    pub fn stats(&self) -> RedisStats {
        RedisStats {
            errors: self.inner.errors.load(Ordering::Relaxed),
            unsealing_failures: self.inner.unsealing_failures.load(Ordering::Relaxed),
            connections: self.inner.connections.load(Ordering::Relaxed),
        }
    }

    fn redis_key(&self, space: KeySpace, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.inner.prefix.len() + 2 + key.len() * 2);
        k.extend_from_slice(self.inner.prefix.as_bytes());
        k.extend_from_slice(space.prefix().as_bytes());
        for b in key {
            k.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        k
    }

    /// `version || nonce || ChaCha20-Poly1305(value)` with the Redis key as associated data.
    fn seal(&self, redis_key: &[u8], value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.inner.rng.lock().unwrap_or_else(|e| e.into_inner()).fill(&mut nonce);
        let mut buf = Zeroizing::new(value.to_vec());
        self.inner
            .aead
            .seal_in_place(&nonce, redis_key, &mut buf)
            .map_err(|_| StoreError::Unavailable("sealing failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    fn open(&self, redis_key: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let opened = (|| {
            let (&version, rest) = sealed.split_first()?;
            if version != SEAL_VERSION || rest.len() < NONCE_LEN + TAG_LEN {
                return None;
            }
            let (nonce, ct) = rest.split_at(NONCE_LEN);
            let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
            let mut buf = Zeroizing::new(ct.to_vec());
            self.inner.aead.open_in_place(&nonce, redis_key, &mut buf).ok()?;
            Some(buf)
        })();
        if opened.is_none() {
            self.inner.unsealing_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("session store: a Redis value did not open under the store key: ignored");
        }
        opened
    }

    fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let conn = self.inner.conn.lock().unwrap_or_else(|e| e.into_inner()).clone();
        conn.ok_or_else(|| {
            self.inner.errors.fetch_add(1, Ordering::Relaxed);
            StoreError::Unavailable("not connected to Redis yet".into())
        })
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.connection()?;
        let r = tokio::time::timeout(self.inner.op_timeout, cmd.query_async::<T>(&mut conn)).await;
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.inner.errors.fetch_add(1, Ordering::Relaxed);
                Err(StoreError::Unavailable(e.to_string()))
            }
            Err(_) => {
                self.inner.errors.fetch_add(1, Ordering::Relaxed);
                Err(StoreError::Timeout)
            }
        }
    }

    async fn fetch(&self, key: &[u8], command: &str) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let rk = self.redis_key(KeySpace::Sessions, key);
        let mut cmd = redis::cmd(command);
        cmd.arg(&rk[..]);
        let v: Option<Vec<u8>> = self.run(cmd).await?;
        Ok(v.and_then(|sealed| self.open(&rk, &sealed)))
    }
}

impl AsyncSessionStore for RedisStore {
    fn put<'a>(&'a self, key: &'a [u8], session: Zeroizing<Vec<u8>>, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let ms = ttl.min(self.inner.max_lifetime).as_millis();
            if ms == 0 {
                return Ok(());
            }
            let rk = self.redis_key(KeySpace::Sessions, key);
            let sealed = self.seal(&rk, &session)?;
            let mut cmd = redis::cmd("SET");
            cmd.arg(&rk[..]).arg(sealed).arg("PX").arg(u64::try_from(ms).unwrap_or(u64::MAX));
            self.run::<()>(cmd).await
        })
    }

    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Zeroizing<Vec<u8>>>> {
        Box::pin(self.fetch(key, "GET"))
    }

    fn take<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Zeroizing<Vec<u8>>>> {
        Box::pin(self.fetch(key, "GETDEL"))
    }

    /// `SET key value NX PX ttl`, then `GET key`: the first node's value wins everywhere.
    fn put_if_absent<'a>(
        &'a self,
        space: KeySpace,
        key: &'a [u8],
        value: Zeroizing<Vec<u8>>,
        ttl: Duration,
    ) -> StoreFuture<'a, Zeroizing<Vec<u8>>> {
        Box::pin(async move {
            let rk = self.redis_key(space, key);
            let sealed = self.seal(&rk, &value)?;
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let mut cmd = redis::cmd("SET");
            cmd.arg(&rk[..]).arg(sealed).arg("NX").arg("PX").arg(ms);
            self.run::<Option<String>>(cmd).await?;
            let mut cmd = redis::cmd("GET");
            cmd.arg(&rk[..]);
            let v: Option<Vec<u8>> = self.run(cmd).await?;
            v.and_then(|sealed| self.open(&rk, &sealed))
                .ok_or_else(|| StoreError::Unavailable("ticket key vanished or did not open".into()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sealed_values_open_only_under_their_key_and_redis_key() {
        let store = RedisStore::connect(RedisConfig::new("redis://127.0.0.1:1/", [7; 32])).unwrap();
        let other = RedisStore::connect(RedisConfig::new("redis://127.0.0.1:1/", [8; 32])).unwrap();
        let rk = store.redis_key(KeySpace::Sessions, b"\x01\xff");
        assert_eq!(rk, b"coaps:s:01ff");
        let secret = b"master secret bytes 0123456789";
        let sealed = store.seal(&rk, secret).unwrap();
        assert!(!sealed.windows(8).any(|w| secret.windows(8).any(|s| s == w)), "no secret in clear");
        assert_eq!(store.open(&rk, &sealed).unwrap()[..], secret[..]);
        // Another store key, another Redis key, any truncation or flipped bit: refused.
        assert!(other.open(&rk, &sealed).is_none());
        assert!(store.open(b"coaps:s:02", &sealed).is_none());
        for n in 0..sealed.len() {
            assert!(store.open(&rk, &sealed[..n]).is_none(), "{n}-byte prefix opened");
        }
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x40;
            assert!(store.open(&rk, &t).is_none(), "flipped byte {i} opened");
        }
        assert_eq!(store.stats().unsealing_failures, 1 + 2 * sealed.len() as u64);
        assert_eq!(other.stats().unsealing_failures, 1);
        // Two seals of one value differ (fresh nonces).
        assert_ne!(store.seal(&rk, secret).unwrap(), sealed);
    }

    #[tokio::test]
    async fn without_redis_commands_fail_fast() {
        let store = RedisStore::connect(RedisConfig::new("redis://127.0.0.1:1/", [7; 32])).unwrap();
        let t = std::time::Instant::now();
        assert!(store.get(b"k").await.is_err());
        assert!(store.put(b"k", Zeroizing::new(vec![1]), Duration::from_secs(1)).await.is_err());
        assert!(t.elapsed() < Duration::from_millis(500));
        assert!(RedisStore::connect(RedisConfig::new("not a url", [0; 32])).is_err());
    }
}
