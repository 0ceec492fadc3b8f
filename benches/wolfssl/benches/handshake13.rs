//! DTLS 1.3 full handshakes per second: the coaps engine beside wolfSSL 5.9.4, in one criterion
//! run, client and server on one thread, datagrams handed over in memory. One iteration = one
//! complete handshake (both sides, the post-handshake ACK and NewSessionTicket included), so
//! criterion's "elements/s" is handshakes per second on one core.
//!
//! Groups `dtls13/<mode>`, each with four pairs: `coaps` (engine client and server, through
//! `coaps_bench_support::ours::Harness` exactly as `benches/handshake.rs`), `wolfssl` (wolfSSL
//! client and server), and the cross pairs `coaps_client-wolfssl_server` and
//! `wolfssl_client-coaps_server`. Modes: ECDHE-ECDSA (P-256 certificate of
//! `crates/coaps-dtls/tests/data`, verified for `localhost`), external PSK with ECDHE
//! (psk_dhe_ke), and ticket resumption (psk_dhe_ke, ECDSA base); each with the HelloRetryRequest
//! cookie on (the default of both servers) and the full ones also with it off. Groups
//! `dtls12/<mode>`: the engine's DTLS 1.2 and OpenSSL's for the nearest modes, for "1.3 beside
//! 1.2" in the same run.
//!
//! With `--features aws-lc` the engine pair also runs on the aws-lc-rs provider
//! (`coaps-aws-lc`); `coaps` is always the RustCrypto provider. The cross pairs use the
//! build's default provider (aws-lc-rs with the feature).
//!
//! Suite: TLS_CHACHA20_POLY1305_SHA256 (`COAPS_BENCH_SUITE13=aes128gcm` for
//! TLS_AES_128_GCM_SHA256), P-256 only, MTU 1152 on both stacks. Time is this thread's CPU time
//! (`COAPS_BENCH_WALL=1` for wall time). A ratio table is printed at the end.

use coaps_bench_support::cpu::{ThreadCpuTime, wall_time_requested};
use coaps_bench_support::report::{duration, mean_ns, per_second};
use coaps_bench_support::{Mode, ossl, ours};
use coaps_bench_wolfssl::wolf::{Conn, Ctx};
use coaps_bench_wolfssl::{Auth, Suite13, Traffic, coaps, handshake};
use coaps_dtls::crypto::providers::all_providers;
use coaps_dtls::crypto::{CryptoProvider, SeededRng};
use coaps_dtls::{ClientConfig, Endpoint, ServerConfig};
use criterion::measurement::Measurement;
use criterion::{Criterion, Throughput};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A DTLS 1.3 mode.
#[derive(Debug, Clone, Copy)]
struct Case {
    label: &'static str,
    auth: Auth,
    cookie: bool,
    resume: bool,
}

const CASES: [Case; 5] = [
    Case { label: "ecdhe-ecdsa", auth: Auth::Cert, cookie: true, resume: false },
    Case { label: "psk-dhe", auth: Auth::PskDhe, cookie: true, resume: false },
    Case { label: "resumed-ecdhe-ecdsa", auth: Auth::Cert, cookie: true, resume: true },
    Case { label: "ecdhe-ecdsa-nocookie", auth: Auth::Cert, cookie: false, resume: false },
    Case { label: "psk-dhe-nocookie", auth: Auth::PskDhe, cookie: false, resume: false },
];

/// The pairs measured in each `dtls13/*` group (criterion function names).
const PAIRS: [&str; 4] = ["coaps", "wolfssl", "coaps_client-wolfssl_server", "wolfssl_client-coaps_server"];

impl Case {
    fn group(&self) -> String {
        format!("dtls13/{}", self.label)
    }
    /// The support crate's mode with the same authentication (its 1.3 configurations take the
    /// mode for that, see `ours::configs13`), also the engine's and OpenSSL's DTLS 1.2 row.
    fn mode(&self) -> Mode {
        match self.auth {
            Auth::Cert => Mode::EcdsaCcm8,
            Auth::PskDhe => Mode::EcdhePskChaCha,
        }
    }
    fn group12(&self) -> String {
        format!("dtls12/{}{}", if self.resume { "resumed-" } else { "" }, self.mode())
    }
    fn configs(&self, suite: Suite13) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let (mut server, client) = ours::configs13(self.mode(), suite.coaps());
        if !self.cookie {
            Arc::make_mut(&mut server).cookie = None;
        }
        (server, client)
    }
}

/// Client addresses for the engine's server, one per handshake (as the support harness does).
fn client_addr(n: u64) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2 + (n / 60_000 % 250) as u8)), 1024 + (n % 60_000) as u16)
}

/// wolfSSL against wolfSSL.
struct WolfPair {
    client: Ctx,
    server: Ctx,
    case: Case,
    session: Option<coaps_bench_wolfssl::wolf::Session>,
}

impl WolfPair {
    fn new(case: Case, suite: Suite13) -> Self {
        Self { client: Ctx::client(case.auth, suite), server: Ctx::server(case.auth, suite), case, session: None }
    }
    fn run(&mut self, check: Option<Suite13>) -> Traffic {
        let mut s = Conn::new(&self.server, self.case.cookie, None);
        let mut c = Conn::new(&self.client, true, self.session.as_ref());
        let t = handshake(&mut c, &mut s);
        if let Some(suite) = check {
            for side in [&c, &s] {
                assert_eq!(side.negotiated(), ("DTLSv1.3".into(), suite.code()), "wolfSSL negotiated");
            }
            if self.case.resume && self.session.is_none() {
                self.session = Some(c.session().expect("wolfSSL client has no session"));
            }
        }
        t
    }
}

/// The engine's client against wolfSSL's server.
struct CoapsToWolf {
    client: Arc<ClientConfig>,
    server: Ctx,
    case: Case,
    suite: Suite13,
    seed: u64,
    now: Instant,
    session: Option<coaps_dtls::Session>,
}

impl CoapsToWolf {
    fn new(case: Case, suite: Suite13) -> Self {
        let (_, client) = case.configs(suite);
        let server = Ctx::server(case.auth, suite);
        Self { client, server, case, suite, seed: 0, now: Instant::now(), session: None }
    }
    fn run(&mut self, prime: bool) -> Traffic {
        self.seed += 1;
        let mut c = coaps::Client::new(self.client.clone(), self.seed, self.session.clone(), self.now);
        let mut s = Conn::new(&self.server, self.case.cookie, None);
        let t = handshake(&mut c, &mut s);
        if prime {
            assert_eq!(s.negotiated(), ("DTLSv1.3".into(), self.suite.code()), "wolfSSL server negotiated");
            if self.case.resume && self.session.is_none() {
                self.session = Some(c.session().expect("engine client has no session"));
            }
        }
        t
    }
}

/// wolfSSL's client against the engine's (long-lived) server.
struct WolfToCoaps {
    client: Ctx,
    server: Endpoint,
    case: Case,
    suite: Suite13,
    n: u64,
    now: Instant,
    session: Option<coaps_bench_wolfssl::wolf::Session>,
}

impl WolfToCoaps {
    fn new(case: Case, suite: Suite13) -> Self {
        let (server, _) = case.configs(suite);
        let now = Instant::now();
        Self {
            client: Ctx::client(case.auth, suite),
            server: Endpoint::server(server, SeededRng::from_seed_u64(0x5e7e), now),
            case,
            suite,
            n: 0,
            now,
            session: None,
        }
    }
    fn run(&mut self, prime: bool) -> Traffic {
        self.n += 1;
        let mut c = Conn::new(&self.client, true, self.session.as_ref());
        let t = {
            let mut s = coaps::Server::new(&mut self.server, client_addr(self.n), self.now);
            handshake(&mut c, &mut s)
        };
        if prime {
            assert_eq!(c.negotiated(), ("DTLSv1.3".into(), self.suite.code()), "wolfSSL client negotiated");
            if self.case.resume && self.session.is_none() {
                self.session = Some(c.session().expect("wolfSSL client has no session"));
            }
        }
        // Forget the association (no close_notify), as `ours::Harness` does.
        self.server.expire_idle(self.now + Duration::from_secs(1));
        t
    }
}

/// The support harness's counters as a [`Traffic`].
fn from_wire(o: coaps_bench_support::Outcome) -> Traffic {
    let w = o.wire;
    Traffic {
        c2s_datagrams: w.c2s_datagrams,
        c2s_bytes: w.c2s_bytes,
        s2c_datagrams: w.s2c_datagrams,
        s2c_bytes: w.s2c_bytes,
        flights: w.flights(),
        resumed: o.resumed,
    }
}

/// Runs `f` once to prime (resumption) and once more to check, returning that handshake's traffic.
fn prime_and_check(resume: bool, mut f: impl FnMut(bool) -> Traffic) -> Traffic {
    let first = f(true);
    assert!(!first.resumed, "the priming handshake resumed");
    let t = f(false);
    assert_eq!(t.resumed, resume, "resumption not as asked: {t:?}");
    t
}

fn bench<M: Measurement>(c: &mut Criterion<M>, suite: Suite13, traffic: &mut Vec<(String, &'static str, Traffic)>) {
    for case in CASES {
        let mut g = c.benchmark_group(case.group());
        g.throughput(Throughput::Elements(1));
        let resume = case.resume;

        // The engine pair once per provider of the build: `coaps` on RustCrypto, and with
        // `--features aws-lc` also `coaps-aws-lc`.
        for provider in all_providers() {
            let mut ours = ours::Harness::with_provider_of(case.mode(), Some(suite.coaps()), &provider, |s| {
                if !case.cookie {
                    s.cookie = None;
                }
            });
            if resume {
                ours.prime_session();
            }
            let id = engine_id(&*provider);
            if id == PAIRS[0] {
                traffic.push((case.label.into(), PAIRS[0], from_wire(ours.handshake(resume))));
            }
            g.bench_function(id, |b| b.iter(|| black_box(ours.handshake(resume))));
        }

        let mut wolf = WolfPair::new(case, suite);
        traffic.push((case.label.into(), PAIRS[1], prime_and_check(resume, |_| wolf.run(Some(suite)))));
        g.bench_function(PAIRS[1], |b| {
            b.iter(|| {
                let t = wolf.run(None);
                assert_eq!(t.resumed, resume);
                black_box(t)
            })
        });

        let mut c2w = CoapsToWolf::new(case, suite);
        traffic.push((case.label.into(), PAIRS[2], prime_and_check(resume, |p| c2w.run(p))));
        g.bench_function(PAIRS[2], |b| {
            b.iter(|| {
                let t = c2w.run(false);
                assert_eq!(t.resumed, resume);
                black_box(t)
            })
        });

        let mut w2c = WolfToCoaps::new(case, suite);
        traffic.push((case.label.into(), PAIRS[3], prime_and_check(resume, |p| w2c.run(p))));
        g.bench_function(PAIRS[3], |b| {
            b.iter(|| {
                let t = w2c.run(false);
                assert_eq!(t.resumed, resume);
                black_box(t)
            })
        });
        g.finish();
    }

    // DTLS 1.2 beside it: the engine and OpenSSL, the modes the 1.3 rows compare with.
    for case in CASES.iter().filter(|c| c.cookie) {
        let mut g = c.benchmark_group(case.group12());
        g.throughput(Throughput::Elements(1));
        let resume = case.resume;
        // RustCrypto explicitly: with `--features aws-lc` the default provider is aws-lc-rs.
        let rustcrypto: Arc<dyn CryptoProvider> = Arc::new(coaps_dtls::crypto::rustcrypto::RustCrypto);
        let mut ours = ours::Harness::with_provider_of(case.mode(), None, &rustcrypto, |_| {});
        let mut theirs = ossl::Harness::new(case.mode());
        if resume {
            ours.prime_session();
            theirs.prime_session();
        }
        g.bench_function("coaps", |b| b.iter(|| black_box(ours.handshake(resume))));
        g.bench_function("openssl", |b| b.iter(|| black_box(theirs.handshake(resume))));
        g.finish();
    }
}

/// The criterion function id of the engine pair on `provider` (`coaps` for RustCrypto).
fn engine_id(provider: &dyn CryptoProvider) -> String {
    match provider.name() {
        "rustcrypto" => PAIRS[0].to_owned(),
        other => format!("coaps-{other}"),
    }
}

fn rate(group: &str, function: &str) -> Option<f64> {
    mean_ns(env!("CARGO_MANIFEST_DIR"), group, function)
}

fn cell(ns: Option<f64>) -> String {
    ns.map_or_else(|| "–".into(), |ns| format!("{} ({})", per_second(ns), duration(ns)))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", b / a),
        _ => "–".into(),
    }
}

fn table(suite: Suite13, traffic: &[(String, &'static str, Traffic)]) {
    println!(
        "\n| DTLS 1.3 mode | coaps ↔ coaps | wolfSSL ↔ wolfSSL | coaps/wolfSSL rate | coaps client → wolfSSL server | \
         wolfSSL client → coaps server | DTLS 1.2 row | coaps 1.2 | OpenSSL 1.2 | coaps-aws-lc ↔ coaps-aws-lc | \
         aws-lc/wolfSSL rate |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|");
    let mut any = false;
    for case in CASES {
        let g = case.group();
        let [ours, wolf, c2w, w2c] = PAIRS.map(|p| rate(&g, p));
        let fast = rate(&g, "coaps-aws-lc");
        if [ours, wolf, c2w, w2c].iter().all(Option::is_none) {
            continue;
        }
        any = true;
        let g12 = case.group12();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            case.label,
            cell(ours),
            cell(wolf),
            ratio(ours, wolf),
            cell(c2w),
            cell(w2c),
            g12.trim_start_matches("dtls12/"),
            cell(rate(&g12, "coaps")),
            cell(rate(&g12, "openssl")),
            cell(fast),
            ratio(fast, wolf),
        );
    }
    if !any {
        return;
    }
    println!(
        "\nhandshakes/s (CPU per handshake), client and server on one thread. coaps/wolfSSL rate > 1: the \
         engine pair does more handshakes per CPU second than the wolfSSL pair. 1.3 suite {:?}, P-256; \
         \"-nocookie\": neither server sends the HelloRetryRequest cookie (engine: `cookie: None`; wolfSSL: \
         `wolfSSL_disable_hrr_cookie`). DTLS 1.2 rows: cookie exchange on (HelloVerifyRequest), suites as named.",
        suite.coaps()
    );
    println!("\n| DTLS 1.3 mode | pair | datagrams c→s / s→c | bytes c→s / s→c | flights |");
    println!("|---|---|---:|---:|---:|");
    for (label, pair, t) in traffic {
        println!(
            "| {label} | {pair} | {} / {} | {} / {} | {} |",
            t.c2s_datagrams, t.s2c_datagrams, t.c2s_bytes, t.s2c_bytes, t.flights
        );
    }
}

fn run<M: Measurement>(c: Criterion<M>, suite: Suite13, traffic: &mut Vec<(String, &'static str, Traffic)>) {
    let mut c = c
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench(&mut c, suite, traffic);
    c.final_summary();
}

fn main() {
    coaps_bench_support::report::mark_start();
    let suite = Suite13::from_env();
    let mut traffic = Vec::new();
    if wall_time_requested() {
        run(Criterion::default(), suite, &mut traffic);
    } else {
        run(Criterion::default().with_measurement(ThreadCpuTime), suite, &mut traffic);
    }
    table(suite, &traffic);
}
