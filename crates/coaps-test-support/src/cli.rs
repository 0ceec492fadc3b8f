//! Helpers for the end-to-end tests: the built `coaps` binary, real peers, bounded waits,
//! free ports and PID-based cleanup.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `coaps` binary under test: `$COAPS_BIN`, or the one Cargo built beside the running test
/// executable (`target/<profile>/coaps`; Cargo builds a package's binaries before its
/// integration tests, so this holds for the `coaps-cli` tests).
pub fn coaps() -> Command {
    let bin = std::env::var_os("COAPS_BIN").map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("the test executable's path");
        // target/<profile>/deps/<test>-<hash> -> target/<profile>/coaps
        let profile_dir =
            exe.parent().and_then(|deps| deps.parent()).expect("test executable under target/<profile>/deps");
        profile_dir.join(format!("coaps{}", std::env::consts::EXE_SUFFIX))
    });
    assert!(bin.is_file(), "no coaps binary at {} (build it, or set COAPS_BIN)", bin.display());
    let mut c = Command::new(bin);
    c.env_remove("RUST_LOG");
    c
}

/// Test certificates shared with coaps-dtls.
pub fn data(name: &str) -> String {
    let p = PathBuf::from(crate::dtls::DATA).join(name);
    p.to_str().unwrap().to_owned()
}

/// Whether `program` is installed; when it is not, prints why the test is skipped, or panics
/// under `COAPS_REQUIRE_PEERS=1` (see [`crate::peers::require_peer`]).
pub fn peer_available(program: &str) -> bool {
    crate::peers::require_peer(program)
}

/// Runs `cmd` to completion, killing it (by PID) if it takes longer than `limit`.
pub fn run(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
            panic!("{cmd:?} did not finish within {limit:?}; stderr:\n{}", String::from_utf8_lossy(&stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    let stderr = err.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    Output { status, stdout, stderr }
}

fn drain(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        let _ = tx.send(v);
    });
    rx
}

/// Shows an output for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A child process killed by PID when dropped.
pub struct Guard {
    /// The process.
    pub child: Child,
    /// Its stderr, collected in the background (available after it is killed).
    stderr: Option<mpsc::Receiver<Vec<u8>>>,
}

impl Guard {
    /// Kills the process and returns what it wrote on stderr.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let err = self.stderr.take().and_then(|r| r.recv_timeout(Duration::from_secs(5)).ok()).unwrap_or_default();
        String::from_utf8_lossy(&err).into_owned()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `coaps serve`.
pub struct Server {
    /// The process.
    pub guard: Guard,
    /// The port it listens on.
    pub port: u16,
}

/// Starts `coaps serve --listen 127.0.0.1:0 ARGS` and waits (bounded) for its
/// `listening on ADDR` line to learn the port.
pub fn serve(args: &[&str]) -> Server {
    serve_on("127.0.0.1:0", args)
}

/// [`serve`] on another listen address.
pub fn serve_on(listen: &str, args: &[&str]) -> Server {
    let mut cmd = coaps();
    cmd.args(["serve", "--listen", listen]).args(args);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn coaps serve");
    let stdout = child.stdout.take().unwrap();
    let stderr = drain(child.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(l)) = lines.next() {
            let _ = tx.send(l);
        }
        for _ in lines {}
    });
    let mut guard = Guard { child, stderr: Some(stderr) };
    let line = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(l) => l,
        Err(_) => {
            let _ = guard.child.kill();
            let _ = guard.child.wait();
            let err = guard.stderr.take().unwrap().recv_timeout(Duration::from_secs(2)).unwrap_or_default();
            panic!("coaps serve did not start within 10 s; stderr:\n{}", String::from_utf8_lossy(&err));
        }
    };
    let addr = line
        .strip_prefix("listening on ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line from coaps serve: {line}"));
    let port = addr.rsplit(':').next().unwrap().parse().unwrap();
    Server { guard, port }
}

/// A port P on 127.0.0.1 with P and P+1 free now (libcoap servers take `-p P` and put DTLS
/// on P+1).
pub fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p < 65534 && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free pair of UDP ports");
}

/// Starts a libcoap server (`program` with `args`, `-A 127.0.0.1 -p P` added) and waits,
/// bounded, until it holds its DTLS port P+1. Returns it and P+1.
pub fn libcoap_server(program: &str, args: &[&str]) -> (Guard, u16) {
    for _attempt in 0..3 {
        let p = free_port_pair();
        let mut cmd = Command::new(program);
        cmd.args(["-A", "127.0.0.1", "-p", &p.to_string()]).args(args);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn libcoap server");
        let stderr = drain(child.stderr.take().unwrap());
        let mut guard = Guard { child, stderr: Some(stderr) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if UdpSocket::bind(("127.0.0.1", p + 1)).is_err() {
                // Bound by the server (or, rarely, by someone else: the exchange would then fail).
                return (guard, p + 1);
            }
            if let Ok(Some(_)) = guard.child.try_wait() {
                break; // it exited (port taken meanwhile?): try another pair
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = guard.child.kill();
    }
    panic!("{program} did not start");
}

/// `coaps METHOD coaps://127.0.0.1:PORT/actuators/door --dtls 1.3 -v --session-file FILE`
/// (the demo door; `-e open` for every method but GET), with `--early-data` when `early`:
/// the client of the 0-RTT tests. Bounded by 30 s.
pub fn door_request(method: &str, port: u16, file: &Path, early: bool) -> Output {
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
    run(cmd, Duration::from_secs(30))
}

/// The `early data: ...` line `coaps -v` printed on stderr.
pub fn early_data_line(o: &Output) -> Option<String> {
    String::from_utf8_lossy(&o.stderr).lines().find(|l| l.starts_with("early data: ")).map(str::to_owned)
}

/// The demo door's command count on the server at `port` (a GET with `file` as session file).
pub fn door_count(port: u16, file: &Path) -> u64 {
    let o = door_request("get", port, file, false);
    assert!(o.status.success(), "{}", show(&o));
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or_else(|_| panic!("a count: {}", show(&o)))
}

/// A free TCP port on 127.0.0.1 (for `serve --metrics`).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET /metrics` from a `coaps serve --metrics 127.0.0.1:PORT` (bounded by 5 s), as curl would.
pub fn scrape_metrics(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

/// The sum of the samples of `name` in a Prometheus text whose labels contain every one of
/// `labels` (`key="value"` each); 0 when there is none.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name && labels.iter().all(|want| rest.contains(want))).then(|| value.parse::<f64>().ok())?
        })
        .map(|v| v as u64)
        .sum()
}
