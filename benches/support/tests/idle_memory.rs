//! An idle server association stays under 1 KiB of Rust heap with a suite whose key state is
//! small (ChaCha20-Poly1305: a 32-byte key per direction). AES suites add the AES key schedule,
//! 704 bytes per direction with the `aes` crate (see `cargo bench --bench association_memory`).
//!
//! One test in its own binary: it reads the process-wide live-bytes counter, which other test
//! threads would disturb.

use coaps_bench_support::alloc::live_bytes;
use coaps_bench_support::{CountingAlloc, Mode, ours};
use std::time::Duration;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn idle_psk_chacha20_association_is_under_one_kib() {
    const N: usize = 200;
    let mut h = ours::Harness::with(Mode::PskChaCha, |c| c.session_store = None);
    h.handshake(false);
    let before = live_bytes();
    for _ in 0..N {
        h.establish();
    }
    assert_eq!(h.server.connection_count(), N);
    let established = live_bytes();
    // The handshake budget runs out: the kept last flights go.
    h.server.handle_timeout(h.now() + Duration::from_secs(3600));
    assert!(h.server.poll_transmit().is_none() && h.server.poll_event().is_none());
    assert_eq!(h.server.connection_count(), N);
    let idle = live_bytes();
    let per = (idle - before) as f64 / N as f64;
    assert!(idle < established, "releasing the kept flights freed nothing");
    assert!(per < 1024.0, "{per:.0} bytes per idle association");
}
