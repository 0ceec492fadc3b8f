//! `--link` and `--rtt` over `coaps relay` (issue 11): at 750 ms each way, a client on the
//! `nb-iot` profile and a server on `auto` complete the handshake and a GET with exactly the
//! datagrams of a run without delay (no retransmission either way), in DTLS 1.2 and 1.3,
//! while the RFC timers of `ethernet` retransmit spuriously and still complete; a server on
//! `ethernet` whose `--link-prefix` gives the client's prefix `nb-iot` sends nothing twice,
//! and does when the prefix is another. And the usage errors of the new flags.

use coaps_test_support::cli as common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

/// Datagrams (and bytes) one direction of the relay received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Direction {
    datagrams: u64,
    bytes: u64,
}

/// The relay's exit report: `client->target` and `target->client`.
fn parse_report(stdout: &str) -> (Direction, Direction) {
    let parse = |prefix: &str| {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in the relay's report:\n{stdout}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        // "<dir>: received N datagrams (B bytes), forwarded …"
        let datagrams = words[2].parse().expect("datagram count");
        let bytes = words[4].trim_start_matches('(').parse().expect("byte count");
        Direction { datagrams, bytes }
    };
    (parse("client->target:"), parse("target->client:"))
}

/// Runs a relay in front of `port` with `delay` ms each way for `seconds`, and one GET
/// through it with `client_args`. Returns the GET's output and the relay's counts.
fn relayed_get(port: u16, delay: u64, seconds: u64, client_args: &[&str]) -> (Output, (Direction, Direction)) {
    let mut relay = coaps();
    relay.args(["relay", "--listen", "127.0.0.1:0", "--target", &format!("127.0.0.1:{port}")]);
    relay.args(["--delay", &delay.to_string(), "--duration", &seconds.to_string()]);
    relay.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = relay.spawn().expect("spawn coaps relay");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("coaps relay did not start within 10 s")
    });
    let relay_port: u16 = first
        .strip_prefix("relaying 127.0.0.1:")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line from coaps relay: {first}"));
    let mut get = coaps();
    get.arg("get").arg(format!("coaps://127.0.0.1:{relay_port}/hello")).args(client_args);
    get.args(["-v", "-B", &seconds.to_string()]);
    let out = run(get, LIMIT);
    // The relay stops by itself after `seconds`; whatever the client sent meanwhile (its
    // close_notify included) has been counted by then.
    let deadline = Instant::now() + Duration::from_secs(seconds + 10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("coaps relay did not stop after --duration {seconds}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let report: Vec<String> = rx.iter().collect();
    (out, parse_report(&report.join("\n")))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The "retransmissions: DTLS n" the client's `-v` reports.
fn dtls_retransmissions(o: &Output) -> u64 {
    let err = stderr(o);
    const KEY: &str = "retransmissions: DTLS ";
    let at = err.find(KEY).unwrap_or_else(|| panic!("no -v report: {}", show(o)));
    err[at + KEY.len()..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

/// The "ACK_TIMEOUT n ms" the client's `-v` reports.
fn ack_timeout_ms(o: &Output) -> u64 {
    const KEY: &str = "ACK_TIMEOUT ";
    let err = stderr(o);
    let at = err.find(KEY).unwrap_or_else(|| panic!("no -v report: {}", show(o)));
    err[at + KEY.len()..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

#[test]
fn nb_iot_profile_needs_no_retransmission_at_1500_ms_rtt() {
    let server = serve(&["--link", "auto"]);
    let port = server.port;
    // Each variant waits out its relay's duration: run them side by side.
    let variants = [
        ("1.2", "nb-iot", 0, 3),
        ("1.3", "nb-iot", 0, 3),
        ("1.2", "nb-iot", 750, 12),
        ("1.3", "nb-iot", 750, 12),
        ("1.2", "ethernet", 750, 12),
        ("1.3", "ethernet", 750, 12),
    ];
    let runs: Vec<_> = variants
        .iter()
        .map(|&(version, link, delay, seconds)| {
            std::thread::spawn(move || {
                (version, link, delay, relayed_get(port, delay, seconds, &["--dtls", version, "--link", link]))
            })
        })
        .collect();
    let results: Vec<_> = runs.into_iter().map(|h| h.join().expect("variant thread")).collect();
    for (version, link, delay, (out, _)) in &results {
        // RFC timers too: the answers to their spurious retransmissions are ignored.
        assert_eq!(out.status.code(), Some(0), "DTLS {version}, {link}, {delay} ms: {}", show(out));
    }
    let find = |v: &str, l: &str, d: u64| {
        results.iter().find(|r| r.0 == v && r.1 == l && r.2 == d).map(|r| &r.3).expect("variant")
    };
    for version in ["1.2", "1.3"] {
        let (_, baseline) = find(version, "nb-iot", 0);
        let (out, slow) = find(version, "nb-iot", 750);
        println!("DTLS {version}: no delay {baseline:?}; 750 ms nb-iot {slow:?}");
        // Same datagrams each way as without delay: nothing was sent twice, by either side.
        assert_eq!(
            (slow.0.datagrams, slow.1.datagrams),
            (baseline.0.datagrams, baseline.1.datagrams),
            "DTLS {version}: {}",
            show(out)
        );
        assert_eq!(dtls_retransmissions(out), 0, "{}", show(out));
        assert!(stderr(out).contains("CoAP 0"), "{}", show(out));
        assert!(stderr(out).contains("link nb-iot: RTT estimate SRTT"), "{}", show(out));
        // CoAP follows the estimate: ACK_TIMEOUT is 5 × SRTT, and SRTT ≥ the relay's 1.5 s.
        assert!(ack_timeout_ms(out) >= 7500, "{}", show(out));

        let (out, rfc) = find(version, "ethernet", 750);
        let extra = rfc.0.datagrams + rfc.1.datagrams - baseline.0.datagrams - baseline.1.datagrams;
        println!("DTLS {version}: 750 ms ethernet {rfc:?}: {extra} spurious datagrams");
        assert!(rfc.0.datagrams > baseline.0.datagrams, "RFC timers retransmit spuriously: {}", show(out));
        assert!(dtls_retransmissions(out) > 0, "{}", show(out));
        assert_eq!(ack_timeout_ms(out), 2000, "RFC 7252's ACK_TIMEOUT: {}", show(out));
    }
    drop(server);
}

/// `serve --link ethernet --link-prefix P=nb-iot`, DTLS 1.2, the client on `nb-iot` (it never
/// retransmits): with P the client's prefix the server's datagrams are those of a run without
/// delay; with another prefix its RFC timers resend its flights.
#[test]
fn link_prefix_gives_matching_clients_their_profile() {
    let matching = serve(&["--link", "ethernet", "--link-prefix", "127.0.0.0/8=nb-iot"]);
    let other = serve(&["--link", "ethernet", "--link-prefix", "10.0.0.0/8=nb-iot", "--link-prefix", "::1/128=lte-m"]);
    let variants = [(matching.port, 0, 3), (matching.port, 750, 12), (other.port, 750, 12)];
    let runs: Vec<_> = variants
        .iter()
        .map(|&(port, delay, seconds)| {
            std::thread::spawn(move || relayed_get(port, delay, seconds, &["--dtls", "1.2", "--link", "nb-iot"]))
        })
        .collect();
    let results: Vec<_> = runs.into_iter().map(|h| h.join().expect("variant thread")).collect();
    for (out, _) in &results {
        assert_eq!(out.status.code(), Some(0), "{}", show(out));
    }
    let (baseline, prefixed, unmatched) = (results[0].1, results[1].1, results[2].1);
    println!("no delay {baseline:?}; 750 ms, prefix matches {prefixed:?}; prefix does not match {unmatched:?}");
    assert_eq!(
        (prefixed.0.datagrams, prefixed.1.datagrams),
        (baseline.0.datagrams, baseline.1.datagrams),
        "the nb-iot prefix profile resends nothing: {}",
        show(&results[1].0)
    );
    assert!(
        unmatched.1.datagrams > baseline.1.datagrams,
        "outside its prefixes the server keeps ethernet's RFC timers: {unmatched:?} vs {baseline:?}"
    );
    drop((matching, other));
}

#[test]
fn link_and_rtt_usage_errors_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["get", "coaps://127.0.0.1/hello", "--rtt", "0"], "between 1 and 600000"),
        (&["get", "coaps://127.0.0.1/hello", "--rtt=-5"], "not a round-trip time"),
        (&["get", "coaps://127.0.0.1/hello", "--rtt", "86400000"], "out of range"),
        (&["get", "coaps://127.0.0.1/hello", "--rtt", "1.5s"], "whole milliseconds"),
        (&["put", "coaps://127.0.0.1/hello", "--link", "lora"], "unknown link profile `lora`"),
        (&["serve", "--link", "NB-IoT"], "expected one of: ethernet, wifi, 802.15.4, lte-m, nb-iot"),
        (&["serve", "--link-prefix", "10.0.0.0/8"], "is not PREFIX=PROFILE"),
        (&["serve", "--link-prefix", "10.0.0.0/33=nb-iot"], "invalid address prefix `10.0.0.0/33`"),
        (&["serve", "--link-prefix", "10.0.0.0/8=lora"], "unknown link profile `lora`"),
        (&["relay", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:9", "--loss", "150"], "from 0 to 100"),
        (&["relay", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:9", "--delay=-1"], "not a delay"),
        (&["relay", "--listen", "nowhere", "--target", "127.0.0.1:9"], "--listen `nowhere`"),
    ];
    for (args, expect) in cases {
        let mut cmd = coaps();
        cmd.args(*args);
        let out = run(cmd, LIMIT);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(stderr(&out).contains(expect), "{args:?} should say `{expect}`: {}", show(&out));
    }
}
