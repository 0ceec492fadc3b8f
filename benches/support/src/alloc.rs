//! A counting global allocator (allocation calls, and live bytes). A bench binary installs it with
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: coaps_bench_support::CountingAlloc = coaps_bench_support::CountingAlloc;
//! ```
//!
//! and reads [`allocations`] before and after the code under test. With [`trace`] switched on,
//! each allocation made by the current thread also prints a backtrace to stderr, which is how
//! an unexpected allocation is located.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static TRACE: AtomicBool = AtomicBool::new(false);

thread_local! {
    // Const-initialised, so touching them never allocates (no recursion into the allocator).
    static IN_TRACE: Cell<bool> = const { Cell::new(false) };
    static THREAD_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting every `alloc`, `alloc_zeroed` and `realloc` call.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

/// Heap allocations (including reallocations) made by the whole process so far.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Bytes the Rust allocator has handed out and not yet been given back (requested sizes, not
/// counting `malloc`'s per-chunk overhead), whole process. Allocations made by C code
/// (OpenSSL) do not go through it: see [`crate::heap`] for those.
pub fn live_bytes() -> i64 {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// Heap allocations (including reallocations) made by the calling thread so far: unaffected by
/// other threads, such as a test harness's.
pub fn thread_allocations() -> u64 {
    THREAD_ALLOCATIONS.try_with(Cell::get).unwrap_or(0)
}

/// Switches printing a backtrace for each allocation on or off.
pub fn trace(on: bool) {
    TRACE.store(on, Ordering::SeqCst);
}

fn count(layout: Layout) {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    let _ = THREAD_ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    if TRACE.load(Ordering::Relaxed) {
        let _ = IN_TRACE.try_with(|busy| {
            if !busy.replace(true) {
                // Capturing and printing allocate; the guard keeps those out of the trace.
                let bt = std::backtrace::Backtrace::force_capture();
                eprintln!("allocation of {} bytes at:\n{bt}", layout.size());
                busy.set(false);
            }
        });
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is `System`'s; the counting touches only atomics and a const
// thread-local, neither of which allocates.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout);
        // SAFETY: forwarded contract (see above).
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout);
        // SAFETY: forwarded contract (see above).
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(layout);
        // SAFETY: forwarded contract (see above).
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded contract (see above).
        unsafe { System.dealloc(ptr, layout) }
    }
}
