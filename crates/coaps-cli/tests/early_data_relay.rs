//! Captured 0-RTT flights replayed over real UDP against `coaps serve --early-data` with the
//! cookie exchange on (the default), stateful and sealed (`--tickets stateless`) tickets, both
//! policies: a recording forwarder sits between `coaps post --early-data` and the server, and
//! the client's first datagram (ClientHello + early POST) is sent again from other ports of
//! 127.0.0.1 and from 127.0.0.2, after the honest exchange and, as a pre-play, just before the
//! original. The demo door counts exactly one per honest command.

use coaps_test_support::cli::{coaps, run, serve, show};
use coaps_test_support::peers::temp_path;
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);
const REPLAYS: usize = 10;

/// A UDP forwarder to `target` recording the first datagram of every client; with `preplay`
/// set it sends a copy of that datagram from an attacker's port just before the original.
struct Forwarder {
    port: u16,
    firsts: Arc<Mutex<Vec<Vec<u8>>>>,
    preplay: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Forwarder {
    fn start(target: SocketAddr) -> Self {
        let listen = UdpSocket::bind("127.0.0.1:0").unwrap();
        listen.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        let port = listen.local_addr().unwrap().port();
        let firsts = Arc::new(Mutex::new(Vec::new()));
        let preplay = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, p, s) = (firsts.clone(), preplay.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut upstreams: HashMap<SocketAddr, UdpSocket> = HashMap::new();
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, from)) = listen.recv_from(&mut buf) {
                    let up = upstreams.entry(from).or_insert_with(|| {
                        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
                        u.connect(target).unwrap();
                        u.set_nonblocking(true).unwrap();
                        f.lock().unwrap().push(buf[..n].to_vec());
                        if p.load(Ordering::Relaxed) {
                            let _ = attacker.send_to(&buf[..n], target);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        u
                    });
                    let _ = up.send(&buf[..n]);
                }
                for (client, up) in &upstreams {
                    while let Ok(n) = up.recv(&mut buf) {
                        let _ = listen.send_to(&buf[..n], client);
                    }
                }
            }
        });
        Self { port, firsts, preplay, stop, thread: Some(thread) }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

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

/// Sends `datagram` to `target` from fresh sockets: other ports of 127.0.0.1 and 127.0.0.2.
fn replay(datagram: &[u8], target: SocketAddr) -> usize {
    let mut sent = 0;
    for i in 0..REPLAYS {
        let from = if i % 2 == 0 { "127.0.0.1:0" } else { "127.0.0.2:0" };
        if let Ok(s) = UdpSocket::bind(from)
            && s.send_to(datagram, target).is_ok()
        {
            sent += 1;
        }
    }
    sent
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
                assert_eq!(replay(&first, target), REPLAYS);
                // Give the server time to (not) run the replays.
                std::thread::sleep(Duration::from_millis(300));
                assert_eq!(door(relay.port, &file), before + honest, "{what} round {round} (pre-play {preplay})");
            }
        }
    }
}
