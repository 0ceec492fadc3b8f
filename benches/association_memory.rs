//! Heap per established, idle DTLS association, this engine beside OpenSSL, and through the
//! Tower handshake layer. Not a timing bench: it prints a table.
//!
//! Method: establish N server-side associations in memory (a fresh client per handshake,
//! dropped afterwards, as a peer that went quiet), drain every event and datagram so queues are
//! empty, and compare the bytes in use on the heap before and after, divided by N. The heap is
//! read with glibc's `mallinfo2()` (main arena + mmapped blocks), so it covers the Rust
//! allocator and OpenSSL's C allocations alike, malloc's chunk overhead included; the Rust
//! allocator's own count of live bytes (requested sizes) is shown beside it, so the C share is
//! the difference. Everything runs on the main thread (glibc reports the main arena only).
//!
//! * **coaps**: one `coaps_dtls::Endpoint`, N × `ours::Harness::establish`. "idle" is after
//!   the server's kept last flight is released (RFC 6347 §4.2.4: the server holds its final
//!   flight until the peer's first record or the handshake budget; here the budget is run
//!   out with `handle_timeout`); "just established" is before that.
//! * **openssl**: N server `SslStream`s over in-memory pipes, kept alive after the handshake
//!   (the pipes are this harness's, a few dozen bytes each, and count against OpenSSL).
//! * **tower**: `CookieLayer` + `HandshakeLayer` + an echo service, N datagram-level
//!   handshakes from client endpoints, each followed by one application-data record (which
//!   releases the kept flight, as a peer's first request does) — what a `serve` stack holds.
//!
//! "no cache" rows switch the server's session cache off (engine `session_store: None`,
//! OpenSSL `SSL_SESS_CACHE_OFF`): the association alone. The other rows keep each stack's
//! default session cache, which stores one session per full handshake.
//!
//! `cargo bench --bench association_memory`; `COAPS_MEM_N` (default 10000) and
//! `COAPS_MEM_N_OPENSSL` (default: the same) change N; arguments filter
//! the rows (`cargo bench --bench association_memory -- coaps tower`: the rows whose
//! "stack mode" contains any of them).

use coaps_bench_support::alloc::live_bytes;
use coaps_bench_support::{CountingAlloc, Mode, heap, ossl, ours};
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{CipherSuite, Connection, Endpoint, Event, PeerIdentity, ServerConfig};
use coaps_tower::{BoxError, CookieLayer, Datagram, HandshakeLayer, Secured};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Heap in use (mallinfo2) and Rust live bytes.
#[derive(Clone, Copy)]
struct Snapshot {
    heap: usize,
    rust: i64,
}

fn snapshot() -> Snapshot {
    Snapshot { heap: heap::in_use(), rust: live_bytes() }
}

fn per(before: Snapshot, after: Snapshot, n: usize) -> (f64, f64) {
    ((after.heap as f64 - before.heap as f64) / n as f64, (after.rust - before.rust) as f64 / n as f64)
}

fn row(stack: &str, what: &str, n: usize, secs: f64, (total, rust): (f64, f64)) {
    println!(
        "| {stack:<7} | {what:<44} | {n:>6} | {total:>10.0} | {:>8.2} | {rust:>10.0} | {:>8.0} | {secs:>5.1} |",
        total / 1024.0,
        total - rust
    );
}

fn ours(mode: Mode, n: usize, cache: bool) {
    let mut h = ours::Harness::with(mode, |c| {
        if !cache {
            c.session_store = None;
        }
    });
    // Lazily built state (CPU-feature probes, the session store's first allocation) first.
    h.handshake(false);
    heap::trim();
    let t = Instant::now();
    let before = snapshot();
    for _ in 0..n {
        h.establish();
    }
    assert_eq!(h.server.connection_count(), n, "every association kept");
    assert!(h.server.poll_transmit().is_none() && h.server.poll_event().is_none());
    let fresh = snapshot();
    // Run out the handshake budget: the kept last flights are released.
    let later = h.now() + Duration::from_secs(3600);
    assert!(h.server.poll_timeout().is_some_and(|t| t <= later));
    h.server.handle_timeout(later);
    assert!(h.server.poll_transmit().is_none() && h.server.poll_event().is_none());
    assert_eq!(h.server.poll_timeout(), None, "an idle association has no timer");
    let idle = snapshot();
    let secs = t.elapsed().as_secs_f64();
    let cache_label = if cache { "" } else { ", no cache" };
    row("coaps", &format!("{mode}{cache_label}, just established"), n, secs, per(before, fresh, n));
    row("coaps", &format!("{mode}{cache_label}, idle"), n, secs, per(before, idle, n));
    drop(h);
}

/// DTLS 1.3 server associations (external PSK, TLS_AES_128_CCM_8_SHA256): "idle" once every
/// retransmission timer has run out (the client endpoint acknowledges the NewSessionTicket
/// before it is dropped, so normally none is left).
fn ours13(n: usize, cache: bool) {
    let mode = Mode::PskCcm8;
    let mut h = ours::Harness::with13(mode, CipherSuite::TLS_AES_128_CCM_8_SHA256, |c| {
        if !cache {
            c.session_store = None;
        }
    });
    h.handshake(false);
    heap::trim();
    let t = Instant::now();
    let before = snapshot();
    for _ in 0..n {
        h.establish();
    }
    assert_eq!(h.server.connection_count(), n, "every association kept");
    assert!(h.server.poll_transmit().is_none() && h.server.poll_event().is_none());
    let later = h.now() + Duration::from_secs(3600);
    if h.server.poll_timeout().is_some_and(|t| t <= later) {
        h.server.handle_timeout(later);
    }
    assert!(h.server.poll_transmit().is_none() && h.server.poll_event().is_none());
    assert_eq!(h.server.poll_timeout(), None, "an idle association has no timer");
    let idle = snapshot();
    let secs = t.elapsed().as_secs_f64();
    let cache_label = if cache { "" } else { ", no cache" };
    row("coaps", &format!("dtls13 {mode}{cache_label}, idle"), n, secs, per(before, idle, n));
    drop(h);
}

fn openssl(mode: Mode, n: usize, cache: bool) {
    let mut h = ossl::Harness::with_options(mode, true, cache);
    h.handshake(false);
    heap::trim();
    let t = Instant::now();
    let before = snapshot();
    let mut kept = Vec::with_capacity(n);
    for _ in 0..n {
        kept.push(h.establish());
    }
    let after = snapshot();
    let secs = t.elapsed().as_secs_f64();
    let cache_label = if cache { "" } else { ", no cache" };
    row("openssl", &format!("{mode}{cache_label}, idle"), n, secs, per(before, after, n));
    drop(kept);
}

/// N handshakes through `CookieLayer` + `HandshakeLayer` (+ echo), each followed by one
/// application-data record.
fn tower(n: usize, cache: bool) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let (server_config, client_config) = ours::configs(Mode::PskCcm8);
    let mut server_config: ServerConfig = (*server_config).clone();
    if !cache {
        server_config.session_store = None;
    }
    rt.block_on(async move {
        let server_config = Arc::new(server_config);
        let cookies = CookieLayer::for_server(&server_config);
        let handshake = HandshakeLayer::builder(server_config)
            .behind(&cookies)
            .max_associations(n + 16)
            .max_handshakes(n + 16)
            .rng(SeededRng::from_seed_u64(7))
            .build();
        let associations = handshake.associations();
        let mut service = ServiceBuilder::new()
            .layer(cookies)
            .layer(handshake)
            .service(service_fn(|s: Secured| async move { Ok::<_, BoxError>(Some(s.payload)) }));
        let server_addr: SocketAddr = "192.0.2.1:5684".parse().expect("addr");
        let mut one = async |i: usize| {
            let client_addr = SocketAddr::from(([198, 51, 100, (i / 60_000) as u8 + 1], 1024 + (i % 60_000) as u16));
            let mut client = Endpoint::client(SeededRng::from_seed_u64(i as u64 + 1));
            client.connect(Instant::now(), server_addr, client_config.clone(), "localhost", None).expect("connect");
            let mut echoed = false;
            for _ in 0..16 {
                let mut moved = false;
                while let Some(t) = client.poll_transmit() {
                    let d = Datagram::new(client_addr, t.payload);
                    let answers = service.ready().await.expect("ready").call(d).await.expect("call");
                    for a in answers {
                        client.handle_datagram(Instant::now(), server_addr, &a.payload);
                    }
                    moved = true;
                }
                while let Some((_, event)) = client.poll_event() {
                    match event {
                        Event::Connected { .. } => client.send(server_addr, b"hello").expect("send"),
                        Event::ApplicationData(_) => echoed = true,
                        Event::Closed(r) => panic!("closed: {r:?}"),
                        _ => {}
                    }
                }
                if echoed || !moved {
                    break;
                }
            }
            assert!(echoed, "tower handshake {i} did not complete");
        };
        one(0).await;
        heap::trim();
        let t = Instant::now();
        let before = snapshot();
        for i in 1..=n {
            one(i).await;
        }
        let after = snapshot();
        assert_eq!(associations.count(), n + 1);
        assert!(associations.try_next_transmit().is_none(), "nothing out of band");
        let label = if cache { "psk-ccm8, 1 record each" } else { "psk-ccm8, no cache, 1 record each" };
        row("tower", label, n, t.elapsed().as_secs_f64(), per(before, after, n));
    });
}

fn main() {
    let n = env_n("COAPS_MEM_N", 10_000);
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wanted = |s: &str| filter.is_empty() || filter.iter().any(|f| s.contains(f.as_str()));

    println!("Heap per established association (server side), mallinfo2 uordblks + hblkhd, main thread");
    println!();
    println!(
        "| {:<7} | {:<44} | {:>6} | {:>10} | {:>8} | {:>10} | {:>8} | {:>5} |",
        "stack", "mode / state", "N", "B / assoc", "KiB", "Rust B", "C B", "s"
    );
    println!("|{:-<9}|{:-<46}|{:-<8}|{:-<12}|{:-<10}|{:-<12}|{:-<10}|{:-<7}|", "", "", "", "", "", "", "", "");
    for mode in [Mode::PskCcm8, Mode::PskChaCha, Mode::EcdsaCcm8] {
        // The session cache costs the same whatever the mode: shown for the PSK modes only,
        // which keeps the run short (the ECDSA handshakes take most of it).
        let caches: &[bool] = if mode.uses_psk() { &[false, true] } else { &[false] };
        for &cache in caches {
            if wanted(&format!("coaps {mode}")) {
                ours(mode, n, cache);
            }
            if wanted(&format!("openssl {mode}")) {
                openssl(mode, env_n("COAPS_MEM_N_OPENSSL", n), cache);
            }
        }
    }
    for cache in [false, true] {
        if wanted("coaps dtls13 psk-ccm8") {
            ours13(n, cache);
        }
    }
    if wanted("tower psk-ccm8") {
        tower(n, false);
        tower(n, true);
    }
    println!();
    println!("B / assoc: heap bytes in use per association (malloc chunk headers and padding included).");
    println!("Rust B: the Rust allocator's live bytes per association (requested sizes); C B = the rest");
    println!("(OpenSSL's own mallocs, plus malloc's chunk overhead on the Rust allocations).");
    println!();
    let entry = size_of::<(SocketAddr, Box<Connection>)>();
    println!(
        "Inline sizes (bytes): Connection {}, SocketAddr {}, PeerIdentity {}, Event {}.",
        size_of::<Connection>(),
        size_of::<SocketAddr>(),
        size_of::<PeerIdentity>(),
        size_of::<Event>(),
    );
    println!(
        "The engine's table is a HashMap<SocketAddr, Box<Connection>> (hashbrown): {} buckets of {entry} + 1 B for {n}",
        buckets(n)
    );
    println!(
        "entries (load factor 7/8, then doubling) = {:.0} B per association, plus the boxed Connection ({} B chunk).",
        buckets(n) as f64 * (entry + 1) as f64 / n as f64,
        malloc_chunk(size_of::<Connection>()),
    );
}

/// glibc's chunk size for a request: 8 bytes of header, rounded up to 16, at least 32.
fn malloc_chunk(request: usize) -> usize {
    (request + 8).div_ceil(16).max(2) * 16
}

/// hashbrown's bucket count for `n` entries grown one by one: the next power of two ≥ n·8/7.
fn buckets(n: usize) -> usize {
    if n < 8 { if n < 4 { 4 } else { 8 } } else { (n * 8).div_ceil(7).next_power_of_two() }
}
