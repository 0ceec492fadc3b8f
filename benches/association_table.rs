//! The cost of the two things a server does under its table lock on every datagram, at
//! association tables of 1 000, 10 000 and 100 000 established associations (issue 15: it used
//! to count half-open handshakes by scanning the table for every admitted ClientHello):
//!
//! * **admit**: a proven ClientHello from a new address creates a half-open association
//!   (quota bookkeeping, the association, its first flight), which is then closed again so the
//!   table keeps its size (the close is in the measured time too). The cookie exchange is off
//!   so one datagram is one admission; the gate's cost is `cookie_flood`'s.
//! * **route**: one 64-byte application-data record from an established peer: the look-up,
//!   the least-recently-active bookkeeping, decryption and the event (the record is sealed by
//!   the client outside the measured time).
//!
//! * **route_cid**: the same record from a client with Connection IDs (RFC 9146, 8-byte CIDs
//!   both ways), found by its CID in a table where every association has one (CID-first
//!   demultiplexing), from the address it is filed under.
//! * **route_cid_rebound**: that record from a new address each time: the CID index look-up,
//!   the authentication that RFC 9146 §6 asks before a move, and the move itself (RRC off,
//!   so no challenge is sealed; the new address stays bounded).
//!
//! Before the timing it prints, from the same endpoints, the bytes of a 64-byte
//! application-data record and of a whole handshake with and without CIDs.
//!
//! Quotas are lifted (the harness's peers share few addresses); the session store is off so
//! the table alone grows. No OpenSSL row: OpenSSL has no association table (the application
//! demultiplexes), so there is nothing of its to compare; the ratio printed is each row against
//! the 1 000-association row. `COAPS_TABLE_SIZES=1000,100000` picks the sizes.
//!
//! `cargo bench --bench association_table`

use coaps_bench_support::cpu::{ThreadCpuTime, wall_time_requested};
use coaps_bench_support::report::{duration, mean_ns};
use coaps_bench_support::{Mode, ours};
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{ConnectionIdConfig, Endpoint, QuotaConfig};
use criterion::measurement::Measurement;
use criterion::{BatchSize, BenchmarkId, Criterion};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

const GROUP: &str = "association_table";
const MODE: Mode = Mode::PskCcm8;

fn sizes() -> Vec<usize> {
    std::env::var("COAPS_TABLE_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000])
}

/// Moves datagrams between the server and one client until neither has anything to send.
fn pump(server: &mut Endpoint, client: &mut Endpoint, at: SocketAddr, now: Instant) {
    for _ in 0..32 {
        let mut moved = false;
        while let Some(t) = client.poll_transmit() {
            server.handle_datagram(now, at, &t.payload);
            moved = true;
        }
        while let Some(t) = server.poll_transmit() {
            if t.destination == at {
                client.handle_datagram(now, ours::SERVER, &t.payload);
            }
            moved = true;
        }
        while server.poll_event().is_some() {}
        while client.poll_event().is_some() {}
        if !moved {
            return;
        }
    }
}

fn new_address(i: u64) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8)), 40_000)
}

fn bench<M: Measurement>(c: &mut Criterion<M>) {
    let mut group = c.benchmark_group(GROUP);
    group.sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    let hello = ours::client_hello(MODE);
    for n in sizes() {
        let t0 = Instant::now();
        let mut h = ours::Harness::with(MODE, |s| {
            s.connection_id = Some(ConnectionIdConfig::new(8).with_rrc(None));
            s.cookie = None;
            s.session_store = None;
            s.max_connections = n + 100;
            s.quotas = QuotaConfig {
                max_half_open_per_address: usize::MAX,
                max_half_open_per_prefix: usize::MAX,
                max_associations_per_address: usize::MAX,
                ..QuotaConfig::default()
            };
        });
        // Every association in the table has a CID, so the CID index is as large as the table.
        h.tweak_client(|c| c.connection_id = Some(ConnectionIdConfig::new(8).with_rrc(None)));
        for _ in 0..n {
            h.establish();
        }
        let now = h.now();
        let client_at: SocketAddr = "198.51.100.1:4000".parse().unwrap();
        let mut client = Endpoint::client(SeededRng::from_seed_u64(42));
        client.connect(now, ours::SERVER, ours::configs(MODE).1, "localhost", None).unwrap();
        pump(&mut h.server, &mut client, client_at, now);
        assert!(client.connection(&ours::SERVER).is_some_and(|c| c.is_established()));
        let cid_at: SocketAddr = "198.51.100.2:4000".parse().unwrap();
        let mut cid_client = Endpoint::client(SeededRng::from_seed_u64(43));
        let mut cid_cfg = (*ours::configs(MODE).1).clone();
        cid_cfg.connection_id = Some(ConnectionIdConfig::new(8).with_rrc(None));
        cid_client.connect(now, ours::SERVER, Arc::new(cid_cfg), "localhost", None).unwrap();
        pump(&mut h.server, &mut cid_client, cid_at, now);
        assert!(cid_client.connection(&ours::SERVER).and_then(|c| c.connection_ids()).is_some());
        assert_eq!(h.server.connection_count(), n + 2);
        assert!(h.server.cid_count() >= n, "{} CIDs indexed", h.server.cid_count());
        eprintln!("{n} associations established in {:?}", t0.elapsed());

        let server = &mut h.server;
        let mut i = 0u64;
        group.bench_function(BenchmarkId::new("admit", n), |b| {
            b.iter(|| {
                i += 1;
                let peer = new_address(i);
                server.handle_datagram(now, peer, &hello);
                server.close(peer);
                while let Some(t) = server.poll_transmit() {
                    black_box(t);
                }
                while server.poll_event().is_some() {}
            })
        });
        assert_eq!(server.connection_count(), n + 2, "every admission was closed again");
        assert!(server.stats().connections_created >= i, "the ClientHellos were admitted");
        let payload = [0x42u8; 64];
        group.bench_function(BenchmarkId::new("route", n), |b| {
            b.iter_batched(
                || {
                    client.send(ours::SERVER, &payload).unwrap();
                    client.poll_transmit().unwrap().payload
                },
                |record| {
                    server.handle_datagram(now, client_at, &record);
                    while let Some(e) = server.poll_event() {
                        black_box(e);
                    }
                },
                BatchSize::SmallInput,
            )
        });
        assert!(server.connection(&client_at).is_some_and(|c| c.is_established()));
        group.bench_function(BenchmarkId::new("route_cid", n), |b| {
            b.iter_batched(
                || {
                    cid_client.send(ours::SERVER, &payload).unwrap();
                    cid_client.poll_transmit().unwrap().payload
                },
                |record| {
                    server.handle_datagram(now, cid_at, &record);
                    while let Some(e) = server.poll_event() {
                        black_box(e);
                    }
                },
                BatchSize::SmallInput,
            )
        });
        assert!(server.connection(&cid_at).is_some_and(|c| c.is_established()));
        let moves = server.stats().address_changes;
        let mut j = 0u64;
        let mut home = cid_at;
        group.bench_function(BenchmarkId::new("route_cid_rebound", n), |b| {
            b.iter_batched(
                || {
                    cid_client.send(ours::SERVER, &payload).unwrap();
                    j += 1;
                    (
                        cid_client.poll_transmit().unwrap().payload,
                        SocketAddr::new(cid_at.ip(), 10_000 + (j % 50_000) as u16),
                    )
                },
                |(record, from)| {
                    server.handle_datagram(now, from, &record);
                    home = from;
                    while let Some(e) = server.poll_event() {
                        black_box(e);
                    }
                    while let Some(t) = server.poll_transmit() {
                        black_box(t);
                    }
                },
                BatchSize::SmallInput,
            )
        });
        assert!(server.connection(&home).is_some_and(|c| c.is_established()), "the association followed");
        assert!(server.stats().address_changes > moves, "records from new addresses moved it");
    }
    group.finish();
}

/// Bytes of one handshake (both directions) and of one 64-byte application-data record from
/// the client, with the client's `cid` (and the server's default 8-byte CIDs).
fn wire(cid: Option<ConnectionIdConfig>) -> (usize, usize) {
    let (server_cfg, client_cfg) = ours::configs(MODE);
    let mut s = (*server_cfg).clone();
    s.cookie = None;
    s.connection_id = Some(ConnectionIdConfig::new(8));
    let now = Instant::now();
    let mut server = Endpoint::server(Arc::new(s), SeededRng::from_seed_u64(1), now);
    let mut c = (*client_cfg).clone();
    c.connection_id = cid;
    let mut client = Endpoint::client(SeededRng::from_seed_u64(2));
    client.connect(now, ours::SERVER, Arc::new(c), "localhost", None).unwrap();
    let at: SocketAddr = "198.51.100.1:4000".parse().unwrap();
    let mut bytes = 0;
    for _ in 0..32 {
        let mut moved = false;
        while let Some(t) = client.poll_transmit() {
            bytes += t.payload.len();
            server.handle_datagram(now, at, &t.payload);
            moved = true;
        }
        while let Some(t) = server.poll_transmit() {
            bytes += t.payload.len();
            client.handle_datagram(now, ours::SERVER, &t.payload);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert!(client.connection(&ours::SERVER).is_some_and(|c| c.is_established()));
    client.send(ours::SERVER, &[0u8; 64]).unwrap();
    (bytes, client.poll_transmit().unwrap().payload.len())
}

fn main() {
    coaps_bench_support::report::mark_start();
    let (hs0, rec0) = wire(None);
    let (hs8, rec8) = wire(Some(ConnectionIdConfig::new(8).with_rrc(None)));
    let (hs8r, _) = wire(Some(ConnectionIdConfig::new(8)));
    println!("\n| DTLS 1.2 ({}) | handshake bytes (both ways, no cookie) | 64-byte record |", MODE.label());
    println!("|---|---:|---:|");
    println!("| no CID | {hs0} | {rec0} |");
    println!("| 8-byte CIDs both ways | {hs8} (+{}) | {rec8} (+{}) |", hs8 - hs0, rec8 - rec0);
    println!("| 8-byte CIDs + rrc | {hs8r} (+{}) | {rec8} (+{}) |", hs8r - hs0, rec8 - rec0);
    if wall_time_requested() {
        bench(&mut Criterion::default().configure_from_args());
    } else {
        bench(&mut Criterion::default().with_measurement(ThreadCpuTime).configure_from_args());
    }
    let root = env!("CARGO_MANIFEST_DIR");
    println!(
        "\n| association table | admit a handshake (+ close) | vs 1 000 | route a record | vs 1 000 | route by CID | vs address | CID from a new address (move) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let base = |f: &str| mean_ns(root, GROUP, &format!("{f}/1000"));
    for n in sizes() {
        let cell = |f: &str| match (mean_ns(root, GROUP, &format!("{f}/{n}")), base(f)) {
            (Some(ns), Some(b)) => (duration(ns), format!("{:.2}", ns / b)),
            (Some(ns), None) => (duration(ns), "-".into()),
            _ => ("-".into(), "-".into()),
        };
        let (a, ar) = cell("admit");
        let (r, rr) = cell("route");
        let ns = |f: &str| mean_ns(root, GROUP, &format!("{f}/{n}"));
        let (rc, vs) = match (ns("route_cid"), ns("route")) {
            (Some(c), Some(a)) => (duration(c), format!("{:.2}", c / a)),
            (Some(c), None) => (duration(c), "-".into()),
            _ => ("-".into(), "-".into()),
        };
        let mv = ns("route_cid_rebound").map_or("-".into(), duration);
        println!("| {n} | {a} | {ar} | {r} | {rr} | {rc} | {vs} | {mv} |");
    }
}
