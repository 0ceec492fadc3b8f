//! Heap of the session caches (issue 9), in its own binary: it reads the process-wide
//! live-bytes counter, which other test threads would disturb, so the two figures run one
//! after the other in one test.
//!
//! * **An idle association with the cache on, all in**: the engine's default in-memory
//!   [`MemorySessionStore`](coaps_dtls::MemorySessionStore) holds one session per full
//!   handshake, so each idle server association also costs its cached session.
//! * **moka heap per cached session** (the `ResumptionLayer`'s `MokaStore`): what the cache
//!   spends beyond the key and the encoded session (secrets included), and whether its
//!   weigher's [`ENTRY_OVERHEAD`] covers it, so the byte bound holds for the heap.
//!
//! Both print their figures (`cargo test --release -p coaps-bench-support --test cache_memory
//! -- --nocapture`); `benches/resumption.rs` prints the moka figure with 100,000 sessions.

use coaps_bench_support::alloc::live_bytes;
use coaps_bench_support::{CountingAlloc, Mode, ours};
use coaps_dtls::Zeroizing;
use coaps_tower::resumption::{AsyncSessionStore, ENTRY_OVERHEAD, MokaConfig, MokaStore};
use std::time::{Duration, Instant, SystemTime};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn session_caches_stay_within_their_budgets() {
    idle_association_with_the_cache();
    moka_per_session();
}

fn idle_association_with_the_cache() {
    const N: usize = 200;
    let mut h = ours::Harness::new(Mode::PskChaCha);
    h.handshake(false);
    let before = live_bytes();
    for _ in 0..N {
        h.establish();
    }
    h.server.handle_timeout(h.now() + Duration::from_secs(3600));
    assert!(h.server.poll_transmit().is_none() && h.server.poll_event().is_none());
    assert_eq!(h.server.connection_count(), N);
    let per = (live_bytes() - before) as f64 / N as f64;
    eprintln!("psk-chacha20 with the in-memory session cache: {per:.0} bytes per idle association, all in");
    // Measured 1,282 B: about 1,020 for the association, 260 for its session in the store
    // (119 encoded, its key once, the map and eviction-order slots). Issue 9's target is
    // 1 KiB all in, not met yet; this budget keeps it from growing.
    const BUDGET: f64 = 1300.0;
    assert!(per <= BUDGET, "{per:.0} bytes per idle association with its cached session");
}

fn moka_per_session() {
    const N: u64 = 20_000;
    let mut h = ours::Harness::new(Mode::PskChaCha);
    h.prime_session();
    let session = h.session().expect("a session").clone();
    let encoded = session.encode(Instant::now(), SystemTime::now());
    let key = session.store_key().to_vec();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let store = MokaStore::new(MokaConfig { max_entries: N * 2, max_bytes: u64::MAX >> 1, ..MokaConfig::default() });
    // The cache's own first allocations (its tables) are not per session.
    rt.block_on(async {
        store.put(b"warm-up", Zeroizing::new(encoded.to_vec()), Duration::from_secs(60)).await.unwrap();
        store.run_pending_tasks().await;
    });
    let before = live_bytes();
    rt.block_on(async {
        for i in 0..N {
            let mut k = key.clone();
            k[..8].copy_from_slice(&i.to_be_bytes());
            store.put(&k, Zeroizing::new(encoded.to_vec()), Duration::from_secs(3600)).await.unwrap();
        }
        store.run_pending_tasks().await;
    });
    let per = (live_bytes() - before) as f64 / N as f64;
    assert_eq!(store.entry_count(), N + 1, "every session kept");
    let beyond = per - (key.len() + encoded.len()) as f64;
    eprintln!(
        "moka: {per:.0} bytes per cached session = key {} + encoded session {} + {beyond:.0} of the cache's own \
         (the weigher counts {ENTRY_OVERHEAD})",
        key.len(),
        encoded.len()
    );
    assert!(beyond <= f64::from(ENTRY_OVERHEAD), "the weigher undercounts: {beyond:.0} > {ENTRY_OVERHEAD}");
    drop(store);
}
