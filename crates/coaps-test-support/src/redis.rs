//! A private `redis-server` for a test: a free port on 127.0.0.1, nothing saved to disk
//! (`--save '' --appendonly no`), killed by PID when dropped. Never a fixed or shared port.

use crate::peers::{Peer, StdinMode, require_peer};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A running `redis-server`.
pub struct RedisServer {
    peer: Option<Peer>,
    port: u16,
}

impl RedisServer {
    /// Starts one on a free port and waits (bounded) until it answers PING. `None` when
    /// `redis-server` is not installed (the reason is printed; under `COAPS_REQUIRE_PEERS=1`
    /// this panics instead, see [`require_peer`]).
    pub fn start() -> Option<RedisServer> {
        if !require_peer("redis-server") {
            return None;
        }
        let mut last = String::new();
        for _attempt in 0..3 {
            let port = free_tcp_port();
            let mut server = RedisServer { peer: None, port };
            match server.spawn() {
                Ok(()) => return Some(server),
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (by PID): an outage. Everything it held is gone.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.peer.take() {
            p.kill();
        }
    }

    /// Starts it again on the same port (after [`RedisServer::stop`]), empty.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("redis-server did not restart: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Sends one command in the inline protocol and returns the raw reply (for tests that
    /// look at or tamper with what the store wrote). Bounded by a 5 s timeout.
    pub fn command(&self, args: &[&[u8]]) -> Vec<u8> {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).expect("connect to redis-server");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        s.write_all(&req).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        // One reply: read until a complete RESP value is in (simple line, or a bulk/array
        // whose announced length has arrived).
        loop {
            let n = s.read(&mut buf).expect("redis reply");
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            if reply_complete(&out) {
                break;
            }
        }
        out
    }

    /// The keys matching `pattern` (`KEYS`).
    pub fn keys(&self, pattern: &str) -> Vec<Vec<u8>> {
        parse_array(&self.command(&[b"KEYS", pattern.as_bytes()]))
    }

    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let args =
            ["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no"];
        let mut peer = Peer::spawn("redis-server", "redis-server", args, StdinMode::Null);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !peer.is_running() {
                return Err(peer.dump());
            }
            if let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut b = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut b).is_ok() && &b == b"+PONG\r\n" {
                    self.peer = Some(peer);
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("no PONG within 10 s\n{}", peer.dump()))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP port free on 127.0.0.1 a moment ago.
fn free_tcp_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("bind a TCP port").port()
}

fn reply_complete(b: &[u8]) -> bool {
    parse(b, 0).is_some()
}

/// Parses one RESP value at `at`; returns the end offset.
fn parse(b: &[u8], at: usize) -> Option<usize> {
    let line_end = at + b.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
    let head = std::str::from_utf8(&b[at + 1..line_end]).ok()?;
    match b.get(at)? {
        b'+' | b'-' | b':' => Some(line_end + 2),
        b'$' => {
            let n: i64 = head.parse().ok()?;
            if n < 0 {
                return Some(line_end + 2);
            }
            let end = line_end + 2 + n as usize + 2;
            (b.len() >= end).then_some(end)
        }
        b'*' => {
            let n: i64 = head.parse().ok()?;
            let mut pos = line_end + 2;
            for _ in 0..n.max(0) {
                pos = parse(b, pos)?;
            }
            Some(pos)
        }
        _ => None,
    }
}

/// The bulk strings of a RESP array reply.
fn parse_array(b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let Some(first_end) = b.windows(2).position(|w| w == b"\r\n") else { return out };
    let mut pos = first_end + 2;
    while pos < b.len() {
        let Some(le) = b[pos..].windows(2).position(|w| w == b"\r\n").map(|p| p + pos) else { break };
        let Ok(n) = std::str::from_utf8(&b[pos + 1..le]).unwrap_or("-1").parse::<i64>() else { break };
        if n < 0 {
            pos = le + 2;
            continue;
        }
        let start = le + 2;
        let end = start + n as usize;
        if end > b.len() {
            break;
        }
        out.push(b[start..end].to_vec());
        pos = end + 2;
    }
    out
}

/// The payload of a bulk-string reply (`None` for a nil reply).
pub fn bulk(reply: &[u8]) -> Option<Vec<u8>> {
    let le = reply.windows(2).position(|w| w == b"\r\n")?;
    if reply.first() != Some(&b'$') {
        return None;
    }
    let n: i64 = std::str::from_utf8(&reply[1..le]).ok()?.parse().ok()?;
    if n < 0 {
        return None;
    }
    reply.get(le + 2..le + 2 + n as usize).map(<[u8]>::to_vec)
}
