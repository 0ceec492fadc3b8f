//! Issue 10 over real UDP: captured 0-RTT flights (ClientHello + early `POST`, `PUT` or
//! `DELETE /actuators/door`) replayed against `coaps serve --early-data` with the cookie
//! exchange on (the default), two servers on one private Redis (`--redis`, one session key),
//! stateful and sealed (`--tickets stateless`) tickets, both policies (`defer`, `reject`).
//!
//! A recording forwarder sits between `coaps post|put|delete --early-data` and server A. Each
//! honest command's first datagram is replayed 100 times in each case: (a) to A while the
//! honest association lives, right after the client's Finished (half from the client's own
//! address, half from another port); (b) to A from the client's address after the client closed; (c) to A from other
//! ports of 127.0.0.1 and from 127.0.0.2; (d) to server B; (e) to A restarted (same port,
//! Redis and keys), within its start-up refusal window and again after it. (f) 100 pre-plays
//! (the copy sent from another port 20 ms before the original) and 100 two-node races (the
//! copy to B as the original goes to A), with fresh honest commands.
//!
//! Replays are fired without waiting for answers; one bounded wait for silence follows. The
//! assertions are on the servers' own counters (`--metrics`): the application ran each method
//! exactly once per honest command, the door count rose by one per honest POST or PUT, and no
//! flight's early data was accepted twice (early data accepted, counted by the 0-RTT filter as
//! deferred or rejected, at most once per 0-RTT flight, across every server).

use coaps_test_support::cli::{
    Server, door_count, door_request, early_data_line, free_tcp_port, metric, scrape_metrics, serve_on, show,
};
use coaps_test_support::forwarder::{Forwarder, replay, replay_from};
use coaps_test_support::peers::temp_path;
use coaps_test_support::redis::RedisServer;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const REPLAYS: usize = 100;
/// Pre-play rounds, and as many two-node races.
const ROUNDS: usize = 100;
/// The start-up refusal window (`--early-data-window`), which is also the ticket-age window.
const WINDOW: Duration = Duration::from_secs(2);
const METHODS: [&str; 3] = ["post", "put", "delete"];

/// One `coaps serve` with its metrics port and the arguments to restart it with.
struct Node {
    server: Server,
    metrics: u16,
    args: Vec<String>,
    started: Instant,
}

impl Node {
    fn start(listen: &str, args: Vec<String>) -> Node {
        let metrics = free_tcp_port();
        let mut all = args.clone();
        all.extend(["--metrics".into(), format!("127.0.0.1:{metrics}")]);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let started = Instant::now();
        let server = serve_on(listen, &refs);
        Node { server, metrics, args, started }
    }

    fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.server.port).into()
    }

    /// The same server killed and started again on the same port (bounded retries while the
    /// port is released), with the same store, key and arguments.
    fn restart(self) -> Node {
        let (port, args) = (self.server.port, self.args.clone());
        let _ = self.server.guard.stop();
        Node::start(&format!("127.0.0.1:{port}"), args)
    }

    fn counts(&self) -> Counts {
        let text = scrape_metrics(self.metrics);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        let mut c = Counts {
            early: metric(&text, "coaps_early_data_total", &["result=\"deferred\""])
                + metric(&text, "coaps_early_data_total", &["result=\"rejected\""]),
            ..Counts::default()
        };
        for (i, m) in ["POST", "PUT", "DELETE"].into_iter().enumerate() {
            c.run[i] = metric(&text, "coaps_requests_total", &[&format!("method=\"{m}\"")]);
        }
        c
    }
}

/// A server's counters: unsafe requests whose early data was accepted (deferred or rejected
/// by the 0-RTT filter), and requests the application ran, per method (POST, PUT, DELETE).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    early: u64,
    run: [u64; 3],
}

impl std::ops::Add for Counts {
    type Output = Counts;
    fn add(self, o: Counts) -> Counts {
        Counts { early: self.early + o.early, run: [0, 1, 2].map(|i| self.run[i] + o.run[i]) }
    }
}

/// What the honest clients did.
#[derive(Debug, Default, Clone, Copy)]
struct Honest {
    /// Commands per method (POST, PUT, DELETE).
    commands: [u64; 3],
    /// Commands sent as 0-RTT data (a ticket allowed it).
    early_sent: u64,
    /// Of those, the ones whose early data the server accepted.
    early_accepted: u64,
}

impl Honest {
    fn add(&mut self, o: Honest) {
        for i in 0..3 {
            self.commands[i] += o.commands[i];
        }
        self.early_sent += o.early_sent;
        self.early_accepted += o.early_accepted;
    }
}

/// One honest command through `relay`; returns the `early data:` line.
fn command(honest: &mut Honest, method_index: usize, relay: u16, file: &Path, what: &str) -> String {
    let method = METHODS[method_index];
    let o = door_request(method, relay, file, true);
    // The demo door has no DELETE: the application answers 4.05 (exit status 4), once.
    let want = if method == "delete" { 4 } else { 0 };
    assert_eq!(o.status.code(), Some(want), "{what} {method}: {}", show(&o));
    let line = early_data_line(&o).unwrap_or_else(|| panic!("{what} {method}: no early data line: {}", show(&o)));
    honest.commands[method_index] += 1;
    if line != "early data: not sent (no ticket that allows it)" {
        honest.early_sent += 1;
    }
    if line == "early data: accepted" {
        honest.early_accepted += 1;
    }
    line
}

/// Waits (bounded, 5 s) until the counters of `nodes` stay the same for 300 ms.
fn silence(nodes: &[&Node]) -> Counts {
    let total = || nodes.iter().map(|n| n.counts()).fold(Counts::default(), |a, b| a + b);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = total();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = total();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// `rounds` honest commands through `relay` (pre-playing or racing), with a session file of
/// their own.
fn rounds(relay: u16, rounds: usize, what: String) -> Honest {
    let file = temp_path("early-round");
    let mut honest = Honest::default();
    // The first command has no ticket yet: a full handshake (still an honest command).
    command(&mut honest, 0, relay, &file, &what);
    for r in 0..rounds {
        command(&mut honest, r % 3, relay, &file, &format!("{what} round {r}"));
    }
    honest
}

fn scenario(redis_url: &str, key: &Path, tickets: &str, policy: &str) {
    let what = format!("{tickets} {policy}");
    let args: Vec<String> = [
        "--early-data",
        "--early-data-policy",
        policy,
        "--tickets",
        tickets,
        "--early-data-window",
        &WINDOW.as_secs().to_string(),
        "--redis",
        redis_url,
        "--session-key-file",
        key.to_str().unwrap(),
        // Replays from 127.0.0.1 leave half-open handshakes (sealed tickets resume without
        // their early data): the per-address quotas would otherwise refuse the honest clients
        // that share the address, and this test is about the replays reaching the 0-RTT checks.
        "--max-peers",
        "20000",
        "--max-half-open",
        "10000",
        "--max-half-open-per-address",
        "10000",
        "--max-half-open-per-prefix",
        "10000",
        "--max-peers-per-address",
        "20000",
    ]
    .map(str::to_owned)
    .to_vec();
    let a = Node::start("127.0.0.1:0", args.clone());
    let b = Node::start("127.0.0.1:0", args);
    // Sealed tickets: no 0-RTT during the start-up refusal.
    std::thread::sleep(WINDOW + Duration::from_millis(200));
    let relay = Forwarder::start(a.addr());
    let file = temp_path("early-relay");
    let mut honest = Honest::default();
    // A full handshake for the first ticket (an honest command too).
    let line = command(&mut honest, 0, relay.port, &file, &what);
    assert_eq!(line, "early data: not sent (no ticket that allows it)");
    let mut flights = Vec::new();
    for (i, method) in METHODS.iter().enumerate() {
        // (a) while the honest association lives (after the client's Finished).
        relay.copies_after.store(REPLAYS, Ordering::Relaxed);
        let line = command(&mut honest, i, relay.port, &file, &what);
        relay.copies_after.store(0, Ordering::Relaxed);
        assert_eq!(line, "early data: accepted", "{what} {method}");
        let first = relay.firsts.lock().unwrap().last().cloned().expect("a captured flight");
        let own = relay.upstreams.lock().unwrap().last().cloned().expect("its upstream socket");
        // (b) from the honest client's address after it closed, (c) from other ports and
        // 127.0.0.2, (d) to the second server.
        assert_eq!(replay_from(&own, &first, REPLAYS), REPLAYS);
        assert_eq!(replay(&first, a.addr(), REPLAYS), REPLAYS);
        assert_eq!(replay(&first, b.addr(), REPLAYS), REPLAYS);
        flights.push(first);
    }
    // (f) pre-plays and two-node races, in two threads of fresh honest commands.
    let pre = Forwarder::start(a.addr());
    pre.preplay.store(true, Ordering::Relaxed);
    let race = Forwarder::start(a.addr());
    *race.race.lock().unwrap() = Some(b.addr());
    let (pre_port, race_port) = (pre.port, race.port);
    let (w1, w2) = (what.clone(), what.clone());
    let t1 = std::thread::spawn(move || rounds(pre_port, ROUNDS, format!("{w1} pre-play")));
    let t2 = std::thread::spawn(move || rounds(race_port, ROUNDS, format!("{w2} race")));
    honest.add(t1.join().expect("pre-play rounds"));
    honest.add(t2.join().expect("race rounds"));
    // Pre-played and raced flights are replays too: after the rounds, once more to both.
    for f in pre.firsts.lock().unwrap().iter().chain(race.firsts.lock().unwrap().iter()).step_by(10) {
        flights.push(f.clone());
    }
    silence(&[&a, &b]);
    let a_counts = a.counts();
    let reader = temp_path("early-door");
    let doors_ab = door_count(a.server.port, &reader) + door_count(b.server.port, &reader);

    // (e) A restarted on the same port, Redis and keys: the captured flights within its
    // start-up refusal window, then after it.
    let a2 = a.restart();
    for f in &flights {
        assert_eq!(replay(f, a2.addr(), REPLAYS), REPLAYS);
    }
    assert!(a2.started.elapsed() < WINDOW, "{what}: the replays took longer than the start-up window");
    std::thread::sleep(WINDOW + Duration::from_millis(200));
    for f in &flights {
        assert_eq!(replay(f, a2.addr(), REPLAYS), REPLAYS);
    }
    silence(&[&a2, &b]);
    let (a2_counts, b_counts) = (a2.counts(), b.counts());
    assert_eq!(a2_counts, Counts::default(), "{what}: the restarted server ran or accepted a replay");
    let total = a_counts + b_counts + a2_counts;
    let doors = doors_ab + door_count(a2.server.port, &reader);
    eprintln!(
        "{what}: {} 0-RTT flights replayed {} times in all; honest {honest:?}; servers ran {:?}, accepted early data \
         {} times (A {a_counts:?}, B {b_counts:?}); door {doors}",
        flights.len(),
        (3 * 4 + 2 * flights.len()) * REPLAYS,
        total.run,
        total.early
    );
    assert_eq!(total.run, honest.commands, "{what}: each method ran once per honest command");
    assert_eq!(doors, honest.commands[0] + honest.commands[1], "{what}: the door counted once per POST or PUT");
    assert!(
        total.early >= honest.early_accepted && total.early <= honest.early_sent,
        "{what}: early data accepted {} times for {} 0-RTT flights ({} accepted for the honest client)",
        total.early,
        honest.early_sent,
        honest.early_accepted
    );
}

#[test]
fn captured_0rtt_flights_replayed_100_times_everywhere_run_once_per_command() {
    let Some(redis) = RedisServer::start() else { return };
    let key: PathBuf = temp_path("early-relay-key");
    std::fs::write(&key, "5e".repeat(32)).unwrap();
    let started = Instant::now();
    // The four configurations at once, each on its own Redis database.
    let threads: Vec<_> =
        [("stateful", "defer"), ("stateful", "reject"), ("stateless", "defer"), ("stateless", "reject")]
            .into_iter()
            .enumerate()
            .map(|(db, (tickets, policy))| {
                let (url, key) = (format!("{}{}", redis.url(), db + 1), key.clone());
                std::thread::spawn(move || scenario(&url, &key, tickets, policy))
            })
            .collect();
    let mut failed = Vec::new();
    for t in threads {
        if let Err(e) = t.join() {
            failed.push(e);
        }
    }
    eprintln!("all four configurations in {:?}", started.elapsed());
    if let Some(e) = failed.into_iter().next() {
        std::panic::resume_unwind(e);
    }
}
