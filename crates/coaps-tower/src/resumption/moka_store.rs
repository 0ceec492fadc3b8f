use super::{AsyncSessionStore, StoreFuture};
use coaps_dtls::crypto::CryptoProvider;
use coaps_dtls::crypto::rustcrypto::RustCrypto;
use coaps_dtls::{DEFAULT_SESSION_LIFETIME, Zeroizing};
use moka::Expiry;
use moka::future::Cache;
use std::fmt;
use std::time::{Duration, Instant};

/// What the cache itself spends per entry beside the key and value bytes (moka's entry,
/// key hash, access-order and timer nodes, its hash-table slot; measured by
/// `benches/resumption.rs`), so the byte bound holds for the heap and not only for the
/// payloads.
pub const ENTRY_OVERHEAD: u32 = 292;

/// Limits of a [`MokaStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MokaConfig {
    /// Most sessions kept. Default 100,000.
    pub max_entries: u64,
    /// Most bytes kept: keys, encoded sessions and the cache's own overhead per entry
    /// ([`ENTRY_OVERHEAD`]). Default 64 MiB.
    pub max_bytes: u64,
    /// A session not looked up for this long is dropped even if its lifetime runs on;
    /// `None` keeps it for its whole lifetime. Default `None`.
    pub time_to_idle: Option<Duration>,
    /// No session is kept longer than this, whatever lifetime it was issued with (RFC 5246
    /// App. F.1.4 suggests at most 24 hours for session IDs; RFC 8446 §4.6.1 allows tickets
    /// seven days). Default 24 hours ([`DEFAULT_SESSION_LIFETIME`]).
    pub max_lifetime: Duration,
}

impl Default for MokaConfig {
    fn default() -> Self {
        Self { max_entries: 100_000, max_bytes: 64 << 20, time_to_idle: None, max_lifetime: DEFAULT_SESSION_LIFETIME }
    }
}

/// A store key as the cache holds it: the first 16 bytes of its SHA-256, one fixed-size
/// array (moka puts each key in an `Arc` of its own, so every byte of it is paid per session,
/// and a `Vec` would cost a second allocation). Two keys meet only by a SHA-256 collision in
/// 128 bits (about 2^64 keys for an even chance; session IDs and ticket IDs are random), and
/// a session fetched by the resumption layer is checked against the key it was offered under
/// ([`coaps_dtls::Session::store_key`]), so even then nobody resumes another's session.
type CacheKey = [u8; 16];

fn cache_key(key: &[u8]) -> CacheKey {
    let mut k = [0u8; 16];
    k.copy_from_slice(&RustCrypto.sha256_parts(&[key])[..16]);
    k
}

/// One cached session: its encoded bytes in one exact-size allocation (wiped on drop) and
/// its expiry. Cloned (copied) only by a `get`, which hands out a copy anyway.
#[derive(Clone)]
struct Entry {
    bytes: Zeroizing<Box<[u8]>>,
    /// The cache's expiry runs on its own clock and its maintenance may lag: `get` and
    /// `take` check this too, so an expired session is never handed out.
    /// Nanoseconds from the store's epoch: 8 bytes instead of an `Instant`'s 16 in every entry.
    expires: u64,
}

/// A point in time as nanoseconds from `epoch` (584 years fit; earlier counts as `epoch`).
fn since(epoch: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// Whether an entry's expiry is still ahead.
fn alive(epoch: Instant, expires: u64) -> bool {
    since(epoch, Instant::now()) < expires
}

struct PerEntryTtl {
    epoch: Instant,
}

impl PerEntryTtl {
    fn left(&self, value: &Entry, at: Instant) -> Duration {
        Duration::from_nanos(value.expires.saturating_sub(since(self.epoch, at)))
    }
}

impl Expiry<CacheKey, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _key: &CacheKey, value: &Entry, created_at: Instant) -> Option<Duration> {
        Some(self.left(value, created_at))
    }

    fn expire_after_update(
        &self,
        _key: &CacheKey,
        value: &Entry,
        updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.left(value, updated_at))
    }
}

/// The in-process session store: a moka cache bounded by entries and by bytes, with per-entry
/// time-to-live (each session's remaining lifetime, capped by [`MokaConfig::max_lifetime`])
/// and optional idle expiry. Eviction beyond the bounds follows moka's TinyLFU policy.
///
/// Clones share the cache.
#[derive(Clone)]
pub struct MokaStore {
    cache: Cache<CacheKey, Entry>,
    config: MokaConfig,
    /// Entries' expiry times count from here.
    epoch: Instant,
}

impl fmt::Debug for MokaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MokaStore")
            .field("config", &self.config)
            .field("entries", &self.cache.entry_count())
            .field("weighted_bytes", &self.cache.weighted_size())
            .finish()
    }
}

impl MokaStore {
    /// A store with these limits.
    pub fn new(config: MokaConfig) -> Self {
        let max_entries = config.max_entries.max(1);
        let max_bytes = config.max_bytes.max(u64::from(ENTRY_OVERHEAD));
        // One capacity bounds both: every entry weighs at least max_bytes / max_entries, so
        // a full cache holds at most max_entries entries, and at most max_bytes bytes.
        let floor = u32::try_from(max_bytes.div_ceil(max_entries)).unwrap_or(u32::MAX);
        let epoch = Instant::now();
        let mut builder = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(move |key: &CacheKey, value: &Entry| -> u32 {
                let bytes = key.len().saturating_add(value.bytes.len());
                u32::try_from(bytes).unwrap_or(u32::MAX).saturating_add(ENTRY_OVERHEAD).max(floor)
            })
            .expire_after(PerEntryTtl { epoch });
        if let Some(idle) = config.time_to_idle {
            builder = builder.time_to_idle(idle);
        }
        Self { cache: builder.build(), config, epoch }
    }

    /// The limits.
    pub fn config(&self) -> &MokaConfig {
        &self.config
    }

    /// Sessions kept (approximate until [`MokaStore::run_pending_tasks`]).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Bytes kept by the weigher's count (approximate until
    /// [`MokaStore::run_pending_tasks`]); at most [`MokaConfig::max_bytes`] once maintenance
    /// has run.
    pub fn weighted_bytes(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Runs the cache's pending maintenance (evictions, expiry) now; it otherwise runs as the
    /// cache is used.
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }

    fn fresh(&self, mut entry: Entry) -> Option<Zeroizing<Vec<u8>>> {
        // The entry is this call's own copy: its buffer moves out without another copy.
        alive(self.epoch, entry.expires).then(|| Zeroizing::new(std::mem::take(&mut *entry.bytes).into_vec()))
    }
}

impl AsyncSessionStore for MokaStore {
    fn put<'a>(&'a self, key: &'a [u8], session: Zeroizing<Vec<u8>>, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let ttl = ttl.min(self.config.max_lifetime);
            let Some(expires) = Instant::now().checked_add(ttl).map(|t| since(self.epoch, t)) else { return Ok(()) };
            if ttl.is_zero() {
                return Ok(());
            }
            // A copy of exactly the session's length: shrinking the `Vec` in place could
            // leave its old buffer unwiped in the allocator.
            let bytes = Zeroizing::new(Box::<[u8]>::from(&session[..]));
            self.cache.insert(cache_key(key), Entry { bytes, expires }).await;
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Zeroizing<Vec<u8>>>> {
        Box::pin(async move { Ok(self.cache.get(&cache_key(key)).await.and_then(|e| self.fresh(e))) })
    }

    fn take<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Zeroizing<Vec<u8>>>> {
        // moka's remove takes the entry out of its concurrent map in one step: of concurrent
        // removes of a key, one gets the value.
        Box::pin(async move { Ok(self.cache.remove(&cache_key(key)).await.and_then(|e| self.fresh(e))) })
    }

    /// moka's per-key compute runs calls on one key one after another: of concurrent calls,
    /// the first stores its value and every other one gets that value back (0-RTT replay
    /// records, ticket keys). An entry past its own expiry counts as absent.
    fn put_if_absent<'a>(
        &'a self,
        space: super::KeySpace,
        key: &'a [u8],
        value: Zeroizing<Vec<u8>>,
        ttl: Duration,
    ) -> StoreFuture<'a, Zeroizing<Vec<u8>>> {
        use moka::ops::compute::{CompResult, Op};
        Box::pin(async move {
            let ttl = ttl.min(self.config.max_lifetime);
            let expires = Instant::now().checked_add(ttl).filter(|_| !ttl.is_zero()).map(|t| since(self.epoch, t));
            let Some(expires) = expires else { return Ok(value) };
            let mut k = space.prefix().as_bytes().to_vec();
            k.extend_from_slice(key);
            let fresh = Entry { bytes: Zeroizing::new(Box::<[u8]>::from(&value[..])), expires };
            let epoch = self.epoch;
            let result = self
                .cache
                .entry(cache_key(&k))
                .and_compute_with(|old| async move {
                    match old.map(|e| e.into_value()) {
                        Some(e) if alive(epoch, e.expires) => Op::Nop,
                        _ => Op::Put(fresh),
                    }
                })
                .await;
            Ok(match result {
                CompResult::Unchanged(e) | CompResult::Inserted(e) | CompResult::ReplacedWith(e) => {
                    Zeroizing::new(e.into_value().bytes.to_vec())
                }
                CompResult::StillNone(_) | CompResult::Removed(_) => value,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn bytes(n: usize, v: u8) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(vec![v; n])
    }

    #[tokio::test]
    async fn get_take_and_expiry() {
        let store = MokaStore::new(MokaConfig { max_lifetime: Duration::from_millis(300), ..MokaConfig::default() });
        store.put(b"a", bytes(10, 1), Duration::from_secs(60)).await.unwrap();
        store.put(b"b", bytes(10, 2), Duration::from_millis(50)).await.unwrap();
        assert_eq!(store.get(b"a").await.unwrap().unwrap()[..], [1; 10]);
        assert_eq!(store.get(b"a").await.unwrap().unwrap()[..], [1; 10], "get leaves it");
        assert!(store.get(b"b").await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(store.get(b"b").await.unwrap().is_none(), "past its own TTL");
        assert!(store.take(b"a").await.unwrap().is_some());
        assert!(store.take(b"a").await.unwrap().is_none(), "taken once");
        // The lifetime cap shortens a longer TTL.
        store.put(b"c", bytes(10, 3), Duration::from_secs(3600)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(store.get(b"c").await.unwrap().is_none(), "past the store's lifetime cap");
        assert!(store.take(b"c").await.unwrap().is_none());
    }

    /// Keys are kept by a digest: every length and content stays a key of its own.
    #[tokio::test]
    async fn keys_of_every_length_stay_apart() {
        let store = MokaStore::new(MokaConfig::default());
        let keys: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![7; 31],
            vec![7; 32],
            vec![7; 33],
            [&[7u8; 32][..], &[0]].concat(),
            vec![9; 200],
            [&[9u8; 199][..], &[8]].concat(),
            [&[0xff][..], &[0; 32]].concat(),
        ];
        for (i, k) in keys.iter().enumerate() {
            store.put(k, bytes(5, i as u8), Duration::from_secs(60)).await.unwrap();
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(store.get(k).await.unwrap().unwrap()[..], [i as u8; 5], "key {i} ({} bytes)", k.len());
        }
        assert!(store.get(&[9; 201]).await.unwrap().is_none());
        assert!(store.take(&[7; 33]).await.unwrap().is_some());
        assert!(store.get(&[7; 33]).await.unwrap().is_none());
        assert!(store.get(&[7; 32]).await.unwrap().is_some(), "its 32-byte prefix is another key");
    }

    #[tokio::test]
    async fn idle_expiry() {
        let store =
            MokaStore::new(MokaConfig { time_to_idle: Some(Duration::from_millis(100)), ..MokaConfig::default() });
        store.put(b"idle", bytes(8, 1), Duration::from_secs(60)).await.unwrap();
        store.put(b"busy", bytes(8, 2), Duration::from_secs(60)).await.unwrap();
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(40)).await;
            assert!(store.get(b"busy").await.unwrap().is_some());
        }
        assert!(store.get(b"idle").await.unwrap().is_none(), "not looked up for longer than time_to_idle");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn take_is_atomic_across_tasks() {
        let store = Arc::new(MokaStore::new(MokaConfig::default()));
        for round in 0..200u32 {
            let key = round.to_be_bytes().to_vec();
            store.put(&key, bytes(64, 7), Duration::from_secs(60)).await.unwrap();
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let (store, key) = (store.clone(), key.clone());
                    tokio::spawn(async move { store.take(&key).await.unwrap().is_some() })
                })
                .collect();
            let mut won = 0;
            for t in tasks {
                won += usize::from(t.await.unwrap());
            }
            assert_eq!(won, 1, "round {round}: {won} takes succeeded");
        }
    }

    /// 100,000 distinct sessions (encoded DTLS 1.3 tickets are ~100-150 bytes) into a cache
    /// bounded at 1 MiB and at 5,000 entries: after maintenance it holds no more of either.
    #[tokio::test]
    async fn stays_within_its_bounds_under_100k_distinct_sessions() {
        for (max_entries, max_bytes) in [(5_000u64, 1u64 << 20), (100_000, 256 << 10)] {
            let store = MokaStore::new(MokaConfig { max_entries, max_bytes, ..MokaConfig::default() });
            for i in 0..100_000u32 {
                let key = [&i.to_be_bytes()[..], &[0x13; 12]].concat();
                store.put(&key, bytes(96 + (i % 64) as usize, i as u8), Duration::from_secs(600)).await.unwrap();
                if i % 10_000 == 0 {
                    store.run_pending_tasks().await;
                    assert!(store.weighted_bytes() <= max_bytes + 10_000 * 512, "far past the bound mid-run");
                }
            }
            store.run_pending_tasks().await;
            let (n, b) = (store.entry_count(), store.weighted_bytes());
            assert!(b <= max_bytes, "{b} bytes kept, bound {max_bytes}");
            assert!(n <= max_entries, "{n} entries kept, bound {max_entries}");
            assert!(n > 0, "the cache keeps something");
            // Its accounting is the real payloads plus the per-entry overhead, at least.
            assert!(b >= n * (96 + 16 + u64::from(ENTRY_OVERHEAD)), "{b} bytes for {n} entries");
        }
    }
}
