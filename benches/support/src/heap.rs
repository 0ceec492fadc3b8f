//! Bytes in use on the C heap, from glibc's `mallinfo2()`: covers both the Rust allocator
//! (which is `malloc` underneath, through `std::alloc::System`) and OpenSSL's own `malloc`s.
//!
//! glibc reports the **main arena** only (`mallinfo(3)`, BUGS): measure on the main thread,
//! before any other thread allocates much (a `harness = false` bench's `main` is fine; a
//! `#[test]` thread is not).

/// Bytes in use: `uordblks` (allocated chunks in the main arena, including malloc's 8-byte
/// chunk headers and alignment padding) plus `hblkhd` (large blocks served by `mmap`).
pub fn in_use() -> usize {
    // SAFETY: `mallinfo2` takes no arguments, only reads the allocator's counters under its
    // own lock, and returns a plain struct by value (glibc ≥ 2.33).
    #[allow(unsafe_code)]
    let m = unsafe { libc::mallinfo2() };
    m.uordblks + m.hblkhd
}

/// Gives free memory back to the system (`malloc_trim(0)`); does not change [`in_use`], but
/// keeps the process's footprint small between measurements.
pub fn trim() {
    // SAFETY: `malloc_trim` only releases free memory; no pointer is passed.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}
