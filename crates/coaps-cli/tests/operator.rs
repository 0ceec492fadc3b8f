//! What an operator sees (issue 12): each failure class logged by `coaps serve` at its default
//! level with the client's hint matching the cause; the protocol_version alert and the
//! `--allow-no-ems` switch against OpenSSL; `/metrics` after a scripted session.

use coaps_test_support::cli::*;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn get(port: u16, extra: &[&str]) -> std::process::Output {
    let mut cmd = coaps();
    cmd.arg("get").arg(format!("coaps://127.0.0.1:{port}/hello")).args(extra).args(["-B", "8"]);
    run(cmd, LIMIT)
}

/// Sends SIGTERM to the server (by PID) so it shuts down cleanly, then collects its log.
fn terminate(server: Server) -> String {
    let pid = server.guard.child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    std::thread::sleep(Duration::from_millis(500));
    server.guard.stop()
}

#[test]
fn each_failure_is_logged_by_the_server_and_hinted_to_the_client() {
    let (ca, crt, key) = (data("ca.crt"), data("server.crt"), data("server.key"));
    // (server args, client args, server log must contain, the identity it must name (`None`:
    // none is known), client stderr must contain).
    type Row<'a> = (&'a [&'a str], &'a [&'a str], &'a str, Option<&'a str>, &'a str);
    let table: &[Row] = &[
        (
            &["-u", "alice", "-k", "alice-key", "--dtls", "1.2"],
            &["-u", "mallory", "-k", "alice-key", "--dtls", "1.2"],
            "unknown PSK identity",
            Some("identity=PSK \"mallory\""),
            "does not know this PSK identity",
        ),
        (
            &["-u", "alice", "-k", "alice-key"],
            &["-u", "mallory", "-k", "alice-key", "--dtls", "1.3"],
            "version=\"DTLS 1.3\"",
            Some("identity=PSK \"mallory\""),
            "may not know this PSK identity",
        ),
        // A wrong key: the client's Finished does not decrypt (1.2, bad_record_mac) or its
        // binder does not verify (1.3, decrypt_error); both sides say so at once.
        (
            &["-u", "alice", "-k", "alice-key", "--dtls", "1.2"],
            &["-u", "alice", "-k", "not-alices-key", "--dtls", "1.2"],
            "wrong PSK key",
            Some("identity=PSK \"alice\""),
            "the PSK key is wrong, check -k",
        ),
        (
            &["-u", "alice", "-k", "alice-key"],
            &["-u", "alice", "-k", "not-alices-key", "--dtls", "1.3"],
            "wrong PSK key",
            Some("identity=PSK \"alice\""),
            "the PSK key is wrong, check -k",
        ),
        (
            &["--cert", &crt, "--key", &key, "--client-ca", &ca, "--dtls", "1.2"],
            &["--ca", &ca, "--dtls", "1.2"],
            "the client sent no certificate",
            None,
            "client certificate",
        ),
        (
            &["--dtls", "1.3"],
            &["--dtls", "1.2"],
            "offers only DTLS 1.2",
            None,
            "does not speak DTLS 1.2: try --dtls 1.3",
        ),
    ];
    for (serve_args, client_args, logged, identity, hinted) in table {
        let server = serve(serve_args);
        let start = Instant::now();
        let out = get(server.port, client_args);
        let took = start.elapsed();
        let log = server.guard.stop();
        assert_eq!(out.status.code(), Some(1), "{serve_args:?} / {client_args:?}: {}", show(&out));
        assert!(stderr(&out).contains(hinted), "{client_args:?}: hint {hinted:?} missing: {}", show(&out));
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("DTLS handshake")).collect();
        let line = lines.iter().find(|l| l.contains(logged) && l.contains("INFO") && l.contains("127.0.0.1:"));
        let line =
            line.unwrap_or_else(|| panic!("{serve_args:?}: no INFO line with {logged:?} in the server log:\n{log}"));
        match identity {
            Some(id) => assert!(line.contains(id), "{client_args:?}: the line should name {id}: {line}"),
            None => assert!(!line.contains("identity="), "{client_args:?}: no identity is known: {line}"),
        }
        assert!(!log.contains("::ffff:"), "IPv4-mapped addresses print as IPv4:\n{log}");
        assert!(took < Duration::from_secs(8), "{client_args:?} took {took:?}: the client should be told at once");
    }
}

#[test]
fn requests_are_logged_with_query_identity_and_version() {
    let server = serve(&["-u", "sensor-17", "-k", "sensor-key"]);
    let mut cmd = coaps();
    cmd.arg("get").arg(format!("coaps://127.0.0.1:{}/hello?x=1&y=2", server.port));
    cmd.args(["-u", "sensor-17", "-k", "sensor-key", "-v", "7"]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("DTLS 1.3") && err.contains("authenticated with our PSK \"sensor-17\""), "{err}");
    assert!(err.contains("UriQuery=\"x=1\"") && err.contains("< Acknowledgement 2.05 Content"), "-v 7: {err}");
    let log = server.guard.stop();
    assert!(log.contains("GET /hello?x=1&y=2 -> 2.05 Content"), "{log}");
    assert!(log.contains("identity=PSK \"sensor-17\""), "{log}");
    assert!(log.contains("DTLS association established") && log.contains("version=\"DTLS 1.3\""), "{log}");
}

fn openssl_available() -> bool {
    peer_available("openssl")
}

/// `openssl s_client` with the demo PSK, stdin closed (it ends after the handshake).
fn s_client(port: u16, extra: &[&str], conf: Option<&std::path::Path>) -> (String, Duration) {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")]);
    cmd.args(["-psk_identity", "coaps-demo", "-psk", &hex(b"coaps-demo-key")]).args(extra);
    if let Some(c) = conf {
        cmd.env("OPENSSL_CONF", c);
    }
    let start = Instant::now();
    let out = run(cmd, Duration::from_secs(20));
    (format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)), start.elapsed())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn openssl_dtls12_against_a_dtls13_only_server_gets_protocol_version_at_once() {
    if !openssl_available() {
        return;
    }
    let server = serve(&["--dtls", "1.3"]);
    let (out, took) = s_client(server.port, &["-dtls1_2"], None);
    let log = server.guard.stop();
    assert!(out.contains("alert protocol version"), "{out}");
    assert!(took < Duration::from_secs(3), "took {took:?}: {out}");
    assert!(log.contains("offers only DTLS 1.2"), "{log}");
}

#[test]
fn a_client_without_extended_master_secret_needs_allow_no_ems() {
    if !openssl_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("coaps-no-ems-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("openssl.cnf");
    std::fs::write(
        &conf,
        "openssl_conf = openssl_init\n[openssl_init]\nssl_conf = ssl_module\n[ssl_module]\n\
         system_default = no_ems\n[no_ems]\nOptions = -ExtendedMasterSecret\n",
    )
    .unwrap();
    let args = ["-dtls1_2", "-cipher", "PSK-AES128-CCM8"];
    let server = serve(&["--dtls", "1.2"]);
    let (out, _) = s_client(server.port, &args, Some(&conf));
    let log = server.guard.stop();
    assert!(!out.contains("Extended master secret: yes"), "the conf file must turn EMS off: {out}");
    assert!(out.contains("handshake failure"), "refused by default: {out}");
    assert!(log.contains("does not offer extended_master_secret") && log.contains("--allow-no-ems"), "{log}");

    let server = serve(&["--dtls", "1.2", "--allow-no-ems"]);
    let (out, _) = s_client(server.port, &args, Some(&conf));
    let log = server.guard.stop();
    assert!(out.contains("Extended master secret: no") && out.contains("Cipher is PSK-AES128-CCM8"), "{out}");
    assert!(log.contains("--allow-no-ems") && log.contains("WARN"), "a warning at start: {log}");
    assert!(log.contains("WITHOUT extended_master_secret"), "and in the handshake line: {log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `GET /metrics` over a plain TCP connection, as curl would.
fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

#[test]
fn metrics_count_a_scripted_session() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let server = serve(&["-u", "alice", "-k", "alice-key", "--metrics", &addr]);
    let alice = ["-u", "alice", "-k", "alice-key"];
    for (path, extra) in [("/hello", &alice[..]), ("/hello", &alice[..]), ("/nope", &alice[..])] {
        let mut cmd = coaps();
        cmd.arg("get").arg(format!("coaps://127.0.0.1:{}{path}", server.port)).args(extra);
        run(cmd, LIMIT);
    }
    let bad = get(server.port, &["-u", "mallory", "-k", "alice-key", "--dtls", "1.2"]);
    assert_eq!(bad.status.code(), Some(1));
    let text = scrape(port);
    let log = terminate(server);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    for line in [
        "coaps_handshakes_total{version=\"1.3\",mode=\"full\",outcome=\"ok\"} 3",
        "coaps_handshakes_total{version=\"1.2\",mode=\"full\",outcome=\"unknown_psk_identity\"} 1",
        "coaps_requests_total{method=\"GET\",code=\"2.05\"} 2",
        "coaps_requests_total{method=\"GET\",code=\"4.04\"} 1",
        "coaps_hello_retry_requests_sent_total 3",
        "coaps_cookies_sent_total{kind=\"hello_verify_request\"} 1",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    assert!(text.contains("# TYPE coaps_associations gauge"), "{text}");
    // Nothing half-open once the clients are done; the retransmission counters exist per
    // version (their values depend on timing, not asserted here).
    assert!(text.contains("coaps_half_open 0\n"), "{text}");
    assert!(text.contains("coaps_retransmissions_total{version=\"1.2\"}"), "{text}");
    assert!(text.contains("coaps_retransmissions_total{version=\"1.3\"}"), "{text}");
    assert!(log.contains("summary: 4 handshakes (1 failed), 3 requests"), "{log}");
}

/// `--max-peers 2` with two observers holding their associations: further clients are refused,
/// and the server says so at warn, once (rate-limited) however many ClientHellos it refuses.
#[test]
fn max_peers_reached_is_logged_once_at_warn() {
    // One thread: each would have its own share of the table and its own rate limit.
    let server = serve(&["--max-peers", "2", "--threads", "1"]);
    let url = |path: &str| format!("coaps://127.0.0.1:{}{path}", server.port);
    let spawn = |args: &[&str], path: &str| {
        let mut c = coaps();
        c.args(args).arg(url(path)).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        c.spawn().unwrap()
    };
    let mut holders = vec![spawn(&["get", "-s", "6"], "/clock")];
    std::thread::sleep(Duration::from_millis(700));
    holders.push(spawn(&["get", "-s", "6"], "/clock"));
    std::thread::sleep(Duration::from_millis(1000));
    // Three more clients while both associations are active (none idle long enough to evict).
    let refused: Vec<_> = (0..3).map(|_| spawn(&["get", "-B", "3"], "/hello")).collect();
    let deadline = Instant::now() + LIMIT;
    let mut codes = Vec::new();
    for mut c in refused.into_iter().chain(holders) {
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                codes.push(s.code());
                break;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let log = server.guard.stop();
    assert_eq!(&codes[..3], &[Some(1); 3], "the refused clients time out: {codes:?}\n{log}");
    assert_eq!(&codes[3..], &[Some(0); 2], "the observers are served: {codes:?}\n{log}");
    let warn: Vec<&str> = log.lines().filter(|l| l.contains("WARN") && l.contains("limit is reached")).collect();
    assert_eq!(warn.len(), 1, "one rate-limited warning for every refusal:\n{log}");
    assert!(warn[0].contains("--max-peers") && warn[0].contains("127.0.0.1:"), "{}", warn[0]);
    let table_full: Vec<&str> =
        log.lines().filter(|l| l.contains("WARN") && l.contains("association table full")).collect();
    assert_eq!(table_full.len(), 1, "the per-reason line is rate-limited too:\n{log}");
}
