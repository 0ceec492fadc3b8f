//! CoAP requests per second over established DTLS sessions on loopback: the Tower stack
//! (`serve` + `CookieLayer` + `HandshakeLayer` + `CoapLayer` + a trivial application) beside
//! libcoap 4.3.1's `coap-server-openssl`, under the same load generator in the same run.
//!
//! * **Generator** (this process): N concurrent `coaps_tower::Client`s, each over its own DTLS
//!   association (PSK), each sending confirmable GETs back to back (one outstanding at a time,
//!   NSTART = 1) on a 2-worker tokio runtime. After a warm-up, completed 2.05 responses are
//!   counted for a fixed window.
//! * **Target A, coaps**: this same binary re-run as a server process
//!   (`COAPS_RPS_ROLE=server`), one thread (tokio current-thread runtime), answering 2.05
//!   "hello" to any GET.
//! * **Target B, libcoap**: `coap-server-openssl -A 127.0.0.1 -p PORT -k KEY` (DTLS on
//!   PORT+1), whose GET `/` answers 2.05 with its banner (one thread, as libcoap runs).
//!
//! Both servers are separate processes, started at the beginning and killed by PID at the end;
//! the runs alternate between them per client count. Besides requests/s (wall clock), the
//! server's CPU time per request is read from `/proc/<pid>/stat`: on a machine whose cores are
//! shared with the generator, it is the fairer efficiency figure.
//!
//! `cargo bench --bench coap_rps`. Environment: `COAPS_RPS_SECS` (window, default 5),
//! `COAPS_RPS_WARMUP` (default 1), `COAPS_RPS_CLIENTS` (default `16,64`), `COAPS_RPS_ROUNDS`
//! (default 2; the order of the two servers alternates per round), `COAPS_RPS_SUITE`
//! (OpenSSL or IANA name, default `PSK-AES128-CCM8`, the suite RFC 7252 §9.1.3.1 mandates),
//! `COAPS_RPS_LIBCOAP` (program, default `coap-server-openssl`). Without libcoap the bench
//! runs the coaps target alone and says so.

use coap_lite::{MessageClass, Packet, RequestType, ResponseType};
use coaps_bench_support::cpu::process_cpu;
use coaps_dtls::{ClientConfig, CommonConfig, Psk, ServerConfig, StaticPsks, suites};
use coaps_tower::{BoxError, Client, CoapLayer, CoapRequest, CookieLayer, HandshakeLayer, Server};
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tower::ServiceBuilder;

/// libcoap's `-k` takes the key as ASCII; our server holds the same key.
const KEY: &str = "secretPSK";
const IDENTITY: &[u8] = b"coaps-bench";
const ROLE: &str = "COAPS_RPS_ROLE";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn common() -> CommonConfig {
    let name = std::env::var("COAPS_RPS_SUITE").unwrap_or_else(|_| "PSK-AES128-CCM8".into());
    let suite = *suites::by_name(&name).unwrap_or_else(|| panic!("unknown suite {name}"));
    assert!(suite.uses_psk() && !suite.uses_ecdhe(), "{name}: this bench runs plain PSK suites");
    CommonConfig { suites: vec![suite], ..CommonConfig::default() }
}

fn psk() -> Psk {
    Psk::new(IDENTITY.to_vec(), KEY.as_bytes().to_vec()).expect("psk")
}

// ---------------------------------------------------------------------------------------------
// Target A: the server process.

fn serve() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let config =
            ServerConfig { common: common(), psks: Some(Arc::new(StaticPsks(vec![psk()]))), ..Default::default() };
        let config = Arc::new(config);
        // The version-aware gate (the clients here speak DTLS 1.2: HelloVerifyRequest path).
        let cookies = CookieLayer::for_server(&config);
        let handshake = HandshakeLayer::builder(config).behind(&cookies).build();
        let associations = handshake.associations();
        let service = ServiceBuilder::new().layer(cookies).layer(handshake).layer(CoapLayer::new()).service_fn(
            |req: CoapRequest| async move {
                let mut resp = req.response();
                resp.header.code = MessageClass::Response(ResponseType::Content);
                resp.payload = b"hello".to_vec();
                Ok::<_, Infallible>(resp)
            },
        );
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let server = Server::new(socket).out_of_band(associations);
        println!("READY {}", server.local_addr().expect("addr").port());
        // Runs until killed.
        server.serve(service, std::future::pending::<()>()).await.expect("serve");
    });
}

// ---------------------------------------------------------------------------------------------
// Server processes.

/// A server process, killed by PID when dropped.
struct Target {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Target {
    fn cpu(&self) -> Duration {
        process_cpu(self.child.id()).unwrap_or_default()
    }
}

fn start_coaps() -> Target {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .env(ROLE, "server")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the coaps server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("READY line");
    let port: u16 = line.trim().strip_prefix("READY ").and_then(|p| p.parse().ok()).expect("READY <port>");
    Target { name: "coaps", child, addr: SocketAddr::from(([127, 0, 0, 1], port)) }
}

/// A port P with P and P+1 free for UDP and TCP (libcoap listens on coap/coap+tcp at P and
/// coaps/coaps+tcp at P+1).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let Ok(s) = UdpSocket::bind("127.0.0.1:0") else { continue };
        let p = s.local_addr().expect("addr").port();
        if p == u16::MAX {
            continue;
        }
        if UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
            && TcpListener::bind(("127.0.0.1", p)).is_ok()
            && TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
        {
            return p;
        }
    }
    panic!("no free port pair")
}

fn start_libcoap(program: &str) -> Option<Target> {
    for _ in 0..3 {
        let port = free_port_pair();
        let child = match Command::new(program)
            .args(["-A", "127.0.0.1", "-p", &port.to_string(), "-k", KEY])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                println!("libcoap target SKIPPED: cannot start {program}: {e}");
                return None;
            }
        };
        let mut t = Target { name: "libcoap", child, addr: SocketAddr::from(([127, 0, 0, 1], port + 1)) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = t.child.try_wait() {
                break; // exited (port taken in between?): another port
            }
            if UdpSocket::bind(t.addr).is_err() {
                return Some(t); // bound by the server
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    println!("libcoap target SKIPPED: {program} did not start");
    None
}

// ---------------------------------------------------------------------------------------------
// The generator.

fn get() -> Packet {
    let mut p = Packet::new(); // Confirmable
    p.header.code = MessageClass::Request(RequestType::Get);
    p
}

struct RunResult {
    requests: u64,
    errors: u64,
    secs: f64,
    server_cpu: Duration,
    generator_cpu: Duration,
    suite: String,
}

async fn run(target: &Target, clients: usize, warmup: Duration, window: Duration) -> Result<RunResult, BoxError> {
    let config = Arc::new(ClientConfig { common: common(), psk: Some(psk()), ..ClientConfig::default() });
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let config = config.clone();
        let addr = target.addr;
        connecting.spawn(async move { Client::connect(addr, config, "localhost").await });
    }
    let mut all = Vec::with_capacity(clients);
    while let Some(r) = tokio::time::timeout(Duration::from_secs(30), connecting.join_next()).await? {
        all.push(r??);
    }
    let suite = suites::lookup(all[0].info().suite).map_or("?".into(), |s| s.name.to_string());

    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for c in &all {
        let (c, done, failed, stop) = (c.clone(), done.clone(), failed.clone(), stop.clone());
        load.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match c.send(get()).await {
                    Ok(r) if r.header.code == MessageClass::Response(ResponseType::Content) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    tokio::time::sleep(warmup).await;
    let me = std::process::id();
    let (d0, f0, s0, g0, t0) =
        (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed), target.cpu(), process_cpu(me), Instant::now());
    tokio::time::sleep(window).await;
    let (d1, f1, s1, g1, t1) =
        (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed), target.cpu(), process_cpu(me), Instant::now());
    stop.store(true, Ordering::Relaxed);
    // Requests in flight finish (or time out) before the clients close.
    let _ = tokio::time::timeout(Duration::from_secs(15), async { while load.join_next().await.is_some() {} }).await;
    load.abort_all();
    for c in &all {
        let _ = tokio::time::timeout(Duration::from_secs(2), c.close()).await;
    }
    Ok(RunResult {
        requests: d1 - d0,
        errors: f1 - f0,
        secs: (t1 - t0).as_secs_f64(),
        server_cpu: s1.saturating_sub(s0),
        generator_cpu: g1.zip(g0).map_or(Duration::ZERO, |(a, b)| a.saturating_sub(b)),
        suite,
    })
}

fn generator() {
    let window = Duration::from_secs_f64(env_or("COAPS_RPS_SECS", 5.0));
    let warmup = Duration::from_secs_f64(env_or("COAPS_RPS_WARMUP", 1.0));
    let counts: Vec<usize> =
        env_or("COAPS_RPS_CLIENTS", "16,64".to_string()).split(',').filter_map(|c| c.trim().parse().ok()).collect();
    let program = env_or("COAPS_RPS_LIBCOAP", "coap-server-openssl".to_string());
    let rounds: usize = env_or("COAPS_RPS_ROUNDS", 2).max(1);

    let mut targets = vec![start_coaps()];
    targets.extend(start_libcoap(&program));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");

    println!();
    println!(
        "CoAP GET over DTLS 1.2 (PSK), loopback, confirmable, 1 outstanding per client; {:.0} s window after {:.0} s warm-up",
        window.as_secs_f64(),
        warmup.as_secs_f64()
    );
    println!(
        "machine: {} CPU(s) shared by generator and server",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!(
        "| {:<7} | {:>7} | {:<28} | {:>9} | {:>6} | {:>13} | {:>13} | {:>10} |",
        "server", "clients", "suite", "req/s", "errors", "server CPU %", "server µs/req", "gen µs/req"
    );
    println!("|{:-<9}|{:-<9}|{:-<30}|{:-<11}|{:-<8}|{:-<15}|{:-<15}|{:-<12}|", "", "", "", "", "", "", "", "");
    // (clients, server, requests, seconds, server CPU)
    let mut totals: Vec<(usize, &'static str, u64, f64, Duration)> = Vec::new();
    for (round, &n) in (0..rounds).flat_map(|r| counts.iter().map(move |n| (r, n))) {
        // Alternate which server goes first, so a load change on the machine does not always
        // favour the same one.
        let order: Vec<&Target> =
            if round % 2 == 0 { targets.iter().collect() } else { targets.iter().rev().collect() };
        for t in order {
            match rt.block_on(run(t, n, warmup, window)) {
                Ok(r) => {
                    let rps = r.requests as f64 / r.secs;
                    let per =
                        |d: Duration| if r.requests > 0 { d.as_secs_f64() * 1e6 / r.requests as f64 } else { 0.0 };
                    println!(
                        "| {:<7} | {n:>7} | {:<28} | {rps:>9.0} | {:>6} | {:>13.0} | {:>13.1} | {:>10.1} |",
                        t.name,
                        r.suite,
                        r.errors,
                        r.server_cpu.as_secs_f64() * 100.0 / r.secs,
                        per(r.server_cpu),
                        per(r.generator_cpu),
                    );
                    match totals.iter_mut().find(|x| x.0 == n && x.1 == t.name) {
                        Some(x) => {
                            x.2 += r.requests;
                            x.3 += r.secs;
                            x.4 += r.server_cpu;
                        }
                        None => totals.push((n, t.name, r.requests, r.secs, r.server_cpu)),
                    }
                }
                Err(e) => println!("| {:<7} | {n:>7} | run failed: {e} |", t.name),
            }
        }
    }
    println!();
    println!("Over all {rounds} round(s):");
    for &n in &counts {
        let find = |name| {
            totals.iter().find(|r| r.0 == n && r.1 == name).map(|r| {
                let rps = r.2 as f64 / r.3;
                let us = r.4.as_secs_f64() * 1e6 / r.2.max(1) as f64;
                println!("{n:>3} clients, {name:<7}: {rps:>8.0} req/s, {us:>5.1} µs server CPU per request");
                (rps, us)
            })
        };
        if let (Some(a), Some(b)) = (find("coaps"), find("libcoap")) {
            println!(
                "{n:>3} clients: coaps / libcoap = {:.2}x requests/s, {:.2}x server CPU per request",
                a.0 / b.0,
                a.1 / b.1
            );
        }
    }
    println!();
    println!("server CPU % = server process CPU time over the window (100 % = one core); µs/req = CPU time per");
    println!("completed request. coaps answers 5 bytes (\"hello\"); libcoap's GET / answers its banner with");
    println!("Content-Format and Max-Age options. Both servers are single-threaded processes.");
    drop(targets);
}

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("server") {
        serve();
    } else {
        generator();
    }
}
