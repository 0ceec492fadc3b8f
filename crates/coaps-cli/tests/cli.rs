//! `coaps serve` and `coaps get|post|put|delete` against each other, and the command line's
//! error messages.

use coaps_test_support::cli as common;

use common::*;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

fn get(port: u16, path: &str, extra: &[&str]) -> std::process::Output {
    let mut cmd = coaps();
    cmd.arg("get").arg(format!("coaps://127.0.0.1:{port}{path}")).args(extra).args(["-B", "15"]);
    run(cmd, LIMIT)
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn demo_credentials_end_to_end() {
    let server = serve(&[]);
    let out = get(server.port, "/hello", &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stdout(&out), "Hello, CoAPS!\n");
    assert!(stderr(&out).contains("demo PSK"), "the client says it uses the demo key: {}", show(&out));
    let log = server.guard.stop();
    assert!(log.contains("WARNING") && log.contains("PUBLIC DEMO PSK") && log.contains("coaps-demo-key"), "{log}");
}

#[test]
fn resources_codes_and_exit_status() {
    let server = serve(&["-u", "alice", "-k", "alice-key", "-u", "bob", "--psk-hex", "00ff10"]);
    let alice = ["-u", "alice", "-k", "alice-key"];

    let out = get(server.port, "/hello", &[&alice[..], &["-v"]].concat());
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "Hello, CoAPS!\n"), "{}", show(&out));
    assert!(stderr(&out).contains("2.05 Content"), "-v prints the code: {}", show(&out));

    // The binary key, given as hex.
    let out = get(server.port, "/hello", &["-u", "bob", "--psk-hex", "00FF10"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    let out = get(server.port, "/.well-known/core", &alice);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(stdout(&out).contains("</hello>") && stdout(&out).contains("</actuators/door>"), "{}", show(&out));

    let out = get(server.port, "/no/such/thing", &alice);
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(stderr(&out).contains("4.04 Not Found"), "{}", show(&out));
    assert!(out.stdout.is_empty());

    let mut cmd = coaps();
    cmd.arg("delete").arg(format!("coaps://127.0.0.1:{}/hello", server.port)).args(alice);
    let out = run(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(stderr(&out).contains("4.05 Method Not Allowed"), "{}", show(&out));

    for (method, expect) in [("post", "1"), ("put", "2")] {
        let mut cmd = coaps();
        cmd.arg(method).arg(format!("coaps://127.0.0.1:{}/actuators/door", server.port)).args(alice);
        cmd.args(["-e", "open", "-v"]);
        let out = run(cmd, LIMIT);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        assert_eq!(stdout(&out).trim_end(), expect);
        assert!(stderr(&out).contains("2.04 Changed"), "{}", show(&out));
    }
    let out = get(server.port, "/actuators/door", &alice);
    assert_eq!(stdout(&out).trim_end(), "2", "{}", show(&out));

    // No demo key once real credentials are configured.
    let out = get(server.port, "/hello", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    // Wrong key for a known identity, and an unknown identity: readable refusals.
    // (Both are refused at once: bad_record_mac for the wrong key, unknown_psk_identity.)
    for creds in [["-u", "alice", "-k", "wrong"], ["-u", "mallory", "-k", "alice-key"]] {
        let mut cmd = coaps();
        cmd.arg("get").arg(format!("coaps://127.0.0.1:{}/hello", server.port)).args(creds).args(["-B", "3"]);
        let out = run(cmd, LIMIT);
        assert_eq!(out.status.code(), Some(1), "{}", show(&out));
        assert!(stderr(&out).contains("error:"), "{}", show(&out));
        assert!(out.stdout.is_empty());
    }
    let log = server.guard.stop();
    assert!(!log.contains("DEMO"), "no demo warning with real credentials: {log}");
}

#[test]
fn psk_file_serves_its_identities() {
    let dir = std::env::temp_dir().join(format!("coaps-cli-psk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keys.txt");
    std::fs::write(&file, "# test keys\nsensor:text key: with colon\n\ngateway:hex:0102030405\n").unwrap();
    let server = serve(&["--psk-file", file.to_str().unwrap()]);
    let out = get(server.port, "/hello", &["-u", "sensor", "-k", "text key: with colon"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = get(server.port, "/hello", &["-u", "gateway", "--psk-hex", "0102030405"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    drop(server);

    std::fs::write(&file, "ok:1\nno-colon\nx:hex:abc\n").unwrap();
    let mut cmd = coaps();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--psk-file", file.to_str().unwrap()]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("keys.txt") && err.contains("line 2") && err.contains("line 3"), "{}", show(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn client_usage_errors_explain_themselves() {
    let mut cmd = coaps();
    cmd.args(["get", "coap://127.0.0.1/hello"]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("only coaps://"), "{}", show(&out));

    let mut cmd = coaps();
    cmd.args(["get", "coaps://127.0.0.1/hello", "--ca", "/nonexistent/ca.pem"]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("/nonexistent/ca.pem"), "{}", show(&out));

    let mut cmd = coaps();
    cmd.args(["get", "coaps://127.0.0.1/hello", "-k", "key"]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("-u <IDENTITY>"), "{}", show(&out));

    let mut cmd = coaps();
    cmd.args(["serve", "--cert", &data("server.crt"), "--key", &data("client.key")]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("does not match"), "{}", show(&out));
}

#[test]
fn nobody_listening_fails_fast_with_a_reason() {
    // A port that was free a moment ago: nothing answers, the kernel sends port unreachable,
    // which ends the attempt at once although the timeout (-B) is the default 10 s.
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let start = std::time::Instant::now();
    let mut cmd = coaps();
    cmd.arg("get").arg(format!("coaps://127.0.0.1:{port}/hello"));
    let out = run(cmd, LIMIT);
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("nothing listens on that port"), "{}", show(&out));
    assert!(took < Duration::from_secs(1), "took {took:?}: {}", show(&out));
}

#[test]
fn certificate_mode_between_coaps_and_coaps() {
    let server = serve(&["--cert", &data("server.crt"), "--key", &data("server.key"), "--client-ca", &data("ca.crt")]);
    let (ca, cert, key) = (data("ca.crt"), data("client.crt"), data("client.key"));
    let out = get(server.port, "/hello", &["--ca", &ca, "--cert", &cert, "--key", &key]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "Hello, CoAPS!\n"), "{}", show(&out));
    // Without a client certificate the server refuses (client certificates are required).
    let out = get(server.port, "/hello", &["--ca", &data("ca.crt")]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(out.stdout.is_empty());
}

/// The default listen address is the IPv6 wildcard; it must take IPv4 clients too.
#[test]
fn ipv6_wildcard_listener_serves_ipv4_and_ipv6_clients() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback on this host");
        return;
    }
    let server = serve_on("[::]:0", &[]);
    for host in ["127.0.0.1", "[::1]"] {
        let mut cmd = coaps();
        cmd.arg("get").arg(format!("coaps://{host}:{}/hello", server.port)).args(["-B", "15"]);
        let out = run(cmd, LIMIT);
        assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "Hello, CoAPS!\n"), "{host}: {}", show(&out));
    }
}

/// `coaps serve` speaks DTLS 1.3 and 1.2 by default (`--dtls auto`): `coaps get --dtls 1.3`
/// reaches it through the version-aware cookie layer (stateless HelloRetryRequest), in PSK and
/// certificate mode, and a DTLS 1.2 client still does; the default client (`--dtls auto`) gets
/// 1.3 from a dual or 1.3-only server and falls back to 1.2 with a 1.2-only one. `--dtls 1.2` /
/// `--dtls 1.3` on the server refuse the other version.
#[test]
fn dtls13_get_against_coaps_serve() {
    let is_13 = |o: &std::process::Output| {
        let e = stderr(o);
        e.contains("connected to")
            && ["CHACHA20_POLY1305_SHA256", "AES_128_GCM_SHA256", "AES_128_CCM_8_SHA256"].iter().any(|s| e.contains(s))
            && !e.contains("_WITH_")
    };
    let server = serve(&["--cert", &data("server.crt"), "--key", &data("server.key"), "-u", "dev", "-k", "dev-key"]);
    let psk = ["-u", "dev", "-k", "dev-key"];
    let out = get(server.port, "/hello", &[&psk[..], &["--dtls", "1.3", "-v"]].concat());
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "Hello, CoAPS!\n"), "{}", show(&out));
    assert!(is_13(&out), "a DTLS 1.3 suite: {}", show(&out));
    let ca = data("ca.crt");
    let out = get(server.port, "/hello", &["--ca", &ca, "--dtls", "1.3", "-v"]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "Hello, CoAPS!\n"), "{}", show(&out));
    assert!(is_13(&out), "a DTLS 1.3 suite: {}", show(&out));
    // A DTLS 1.2 client on the same server.
    let out = get(server.port, "/hello", &[&psk[..], &["--dtls", "1.2", "-v"]].concat());
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "Hello, CoAPS!\n"), "{}", show(&out));
    assert!(!is_13(&out) && stderr(&out).contains("_WITH_"), "a DTLS 1.2 suite: {}", show(&out));
    // The default client offers both (`--dtls auto`): the server picks 1.3.
    for extra in [&psk[..], &["--ca", &ca]] {
        let out = get(server.port, "/hello", &[extra, &["-v"]].concat());
        assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "Hello, CoAPS!\n"), "{}", show(&out));
        assert!(is_13(&out), "auto against a dual server: DTLS 1.3: {}", show(&out));
    }
    drop(server);

    // Client certificates required, DTLS 1.3.
    let server = serve(&["--cert", &data("server.crt"), "--key", &data("server.key"), "--client-ca", &ca]);
    let (cert, key) = (data("client.crt"), data("client.key"));
    let out = get(server.port, "/hello", &["--ca", &ca, "--cert", &cert, "--key", &key, "--dtls", "1.3"]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "Hello, CoAPS!\n"), "{}", show(&out));
    let out = get_quick(server.port, "/hello", &["--ca", &ca, "--dtls", "1.3"]);
    assert_eq!(out.status.code(), Some(1), "no client certificate: refused: {}", show(&out));
    drop(server);

    // One version only.
    let server = serve(&["--dtls", "1.3"]);
    let out = get(server.port, "/hello", &["--dtls", "1.3"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = get_quick(server.port, "/hello", &["--dtls", "1.2"]);
    assert_eq!(out.status.code(), Some(1), "a 1.3-only server refuses DTLS 1.2: {}", show(&out));
    let out = get(server.port, "/hello", &["-v"]);
    assert_eq!(out.status.code(), Some(0), "auto reaches a 1.3-only server: {}", show(&out));
    assert!(is_13(&out), "{}", show(&out));
    drop(server);
    let server = serve(&["--dtls", "1.2"]);
    let out = get_quick(server.port, "/hello", &["--dtls", "1.3"]);
    assert_eq!(out.status.code(), Some(1), "a 1.2-only server refuses DTLS 1.3: {}", show(&out));
    let out = get(server.port, "/hello", &["-v"]);
    assert_eq!(out.status.code(), Some(0), "auto falls back to DTLS 1.2: {}", show(&out));
    assert!(!is_13(&out) && stderr(&out).contains("_WITH_"), "a DTLS 1.2 suite: {}", show(&out));
}

/// [`get`] that gives up after 3 s (for refusals that stall rather than fail).
fn get_quick(port: u16, path: &str, extra: &[&str]) -> std::process::Output {
    let mut cmd = coaps();
    cmd.arg("get").arg(format!("coaps://127.0.0.1:{port}{path}")).args(extra).args(["-B", "3"]);
    run(cmd, LIMIT)
}

/// `coaps serve --cid LEN --cid-prefix HEX` and `coaps get --cid LEN`: a DTLS 1.2 request with
/// Connection IDs is answered; out-of-range lengths and a prefix longer than the CID are usage
/// errors that say how to fix them.
#[test]
fn connection_ids_end_to_end_and_usage_errors() {
    let server = serve(&["--cid", "6", "--cid-prefix", "0a0b"]);
    let out = get(server.port, "/hello", &["--dtls", "1.2", "--cid", "4"]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "Hello, CoAPS!\n"), "{}", show(&out));
    let out = get(server.port, "/hello", &["--dtls", "1.2", "--cid", "0"]);
    assert_eq!(out.status.code(), Some(0), "an empty CID: {}", show(&out));
    drop(server);

    let out = get(1, "/hello", &["--cid", "300"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("--cid"), "{}", show(&out));

    let mut cmd = coaps();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--cid", "2", "--cid-prefix", "0a0b0c"]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("make --cid at least the prefix length"), "{}", show(&out));
    let mut cmd = coaps();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--cid-prefix", "0g"]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("--cid-prefix"), "{}", show(&out));
}
