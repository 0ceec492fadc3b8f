//! Captured 0-RTT flights replayed over real UDP against `coaps serve --early-data` with the
//! cookie exchange on (the default), stateful and sealed (`--tickets stateless`) tickets, both
//! policies: a recording forwarder sits between `coaps post --early-data` and the server, and
//! the client's first datagram (ClientHello + early POST) is sent again from other ports of
//! 127.0.0.1 and from 127.0.0.2, after the honest exchange and, as a pre-play, just before the
//! original. The demo door counts exactly one per honest command.

use coaps_test_support::cli::{coaps, run, serve, show};
use coaps_test_support::forwarder::{Forwarder, replay};
use coaps_test_support::peers::temp_path;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::Ordering;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);
const REPLAYS: usize = 10;

fn request(method: &str, port: u16, file: &Path, early: bool) -> Output {
    let mut cmd = coaps();
    cmd.arg(method)
        .arg(format!("coaps://127.0.0.1:{port}/actuators/door"))
        .args(["--dtls", "1.3", "-v", "-B", "15", "--session-file"])
        .arg(file);
    if method != "get" {
        cmd.args(["-e", "open"]);
    }
    if early {
        cmd.arg("--early-data");
    }
    run(cmd, LIMIT)
}

fn early_line(o: &Output) -> Option<String> {
    String::from_utf8_lossy(&o.stderr).lines().find(|l| l.starts_with("early data: ")).map(str::to_owned)
}

fn door(port: u16, file: &Path) -> u64 {
    let o = request("get", port, file, false);
    assert!(o.status.success(), "{}", show(&o));
    String::from_utf8_lossy(&o.stdout).trim().parse().expect("a count")
}

#[test]
fn replayed_and_preplayed_0rtt_flights_run_the_door_once_per_command() {
    for tickets in ["stateful", "stateless"] {
        for policy in ["defer", "reject"] {
            let what = format!("{tickets} {policy}");
            let server = serve(&[
                "--early-data",
                "--early-data-policy",
                policy,
                "--tickets",
                tickets,
                "--early-data-window",
                "1",
            ]);
            let target: SocketAddr = ([127, 0, 0, 1], server.port).into();
            // Sealed tickets: no 0-RTT during the start-up refusal (one window).
            std::thread::sleep(Duration::from_millis(1200));
            let relay = Forwarder::start(target);
            let file = temp_path("early-relay");
            let before = door(relay.port, &file);
            let mut honest = 0;
            for (round, preplay) in [false, true, false].into_iter().enumerate() {
                relay.preplay.store(preplay, Ordering::Relaxed);
                relay.firsts.lock().unwrap().clear();
                let o = request("post", relay.port, &file, true);
                relay.preplay.store(false, Ordering::Relaxed);
                assert!(o.status.success(), "{what} round {round}: {}", show(&o));
                honest += 1;
                if !preplay {
                    assert_eq!(early_line(&o).as_deref(), Some("early data: accepted"), "{what}: {}", show(&o));
                }
                let first = relay.firsts.lock().unwrap().first().cloned().expect("a captured flight");
                assert_eq!(replay(&first, target, REPLAYS), REPLAYS);
                // Give the server time to (not) run the replays.
                std::thread::sleep(Duration::from_millis(300));
                assert_eq!(door(relay.port, &file), before + honest, "{what} round {round} (pre-play {preplay})");
            }
        }
    }
}
