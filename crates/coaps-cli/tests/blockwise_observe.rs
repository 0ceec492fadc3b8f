//! Issue 12 findings 1 and 2 against real programs: block-wise transfer (RFC 7959) and
//! observe (RFC 7641) between `coaps` and libcoap 4.3.1 (OpenSSL backend), in both roles.
//! Missing programs skip the test with a message, or fail it under `COAPS_REQUIRE_PEERS=1`.

use coaps_test_support::cli as common;
use coaps_test_support::peers::UdpRelay;

use common::*;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(40);
const PSK: [&str; 4] = ["-u", "Client_identity", "-k", "secretPSK"];

/// 3000 bytes that are not text and not periodic at any block size.
fn body3000() -> Vec<u8> {
    (0..3000u32).map(|i| (i.wrapping_mul(7) + i / 256) as u8).collect()
}

fn write_temp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = coaps_test_support::peers::temp_path(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn coaps_cmd(args: &[&str]) -> Command {
    let mut c = coaps();
    c.args(args);
    c
}

/// `coap-server-openssl -d` creates resources on PUT: put `bytes` at `/path` with libcoap's
/// own client, so the resource exists before `coaps` touches it.
fn libcoap_put(port: u16, path: &str, bytes: &[u8]) {
    let file = write_temp(&format!("libcoap-put-{port}-{path}"), bytes);
    let mut cmd = Command::new("coap-client-openssl");
    cmd.args(["-B", "5", "-m", "put"]).args(PSK).arg("-f").arg(&file).arg(format!("coaps://127.0.0.1:{port}/{path}"));
    let out = run(cmd, LIMIT);
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn coaps_get_of_3000_bytes_from_coap_server_is_exact() {
    if !peer_available("coap-server-openssl") || !peer_available("coap-client-openssl") {
        return;
    }
    let (server, port) = libcoap_server("coap-server-openssl", &["-k", "secretPSK", "-d", "10"]);
    libcoap_put(port, "big", &body3000());
    let out = run(
        {
            let mut c = coaps_cmd(&["get"]);
            c.args(PSK).arg(format!("coaps://127.0.0.1:{port}/big"));
            c
        },
        LIMIT,
    );
    let log = server.stop();
    assert!(out.status.success(), "{}\n--- coap-server\n{log}", show(&out));
    assert_eq!(out.stdout.len(), 3000, "{}", show(&out));
    assert!(out.stdout == body3000(), "the bytes differ");
}

#[test]
fn coaps_put_file_and_stdin_then_coap_client_gets_the_same() {
    if !peer_available("coap-server-openssl") || !peer_available("coap-client-openssl") {
        return;
    }
    let (server, port) = libcoap_server("coap-server-openssl", &["-k", "secretPSK", "-d", "10"]);
    let file = write_temp("coaps-put-3000", &body3000());
    // -f FILE
    let out = run(
        {
            let mut c = coaps_cmd(&["put"]);
            c.args(PSK).arg("-f").arg(&file).arg(format!("coaps://127.0.0.1:{port}/fromfile"));
            c
        },
        LIMIT,
    );
    assert!(out.status.success(), "{}", show(&out));
    // -f - (stdin)
    let mut cmd = coaps_cmd(&["put"]);
    cmd.args(PSK).args(["-f", "-"]).arg(format!("coaps://127.0.0.1:{port}/fromstdin"));
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(&body3000()).unwrap();
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "coaps put -f - did not finish");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    for path in ["fromfile", "fromstdin"] {
        let got = coaps_test_support::peers::temp_path(&format!("libcoap-got-{port}-{path}"));
        let _ = std::fs::remove_file(&got);
        let mut cmd = Command::new("coap-client-openssl");
        cmd.args(["-B", "5", "-m", "get"])
            .args(PSK)
            .arg("-o")
            .arg(&got)
            .arg(format!("coaps://127.0.0.1:{port}/{path}"));
        let out = run(cmd, LIMIT);
        assert!(out.status.success(), "{}", show(&out));
        assert!(std::fs::read(&got).unwrap() == body3000(), "{path}: libcoap read back other bytes");
    }
    server.stop();
}

#[test]
fn coap_client_with_b64_fetches_all_of_large() {
    if !peer_available("coap-client-openssl") {
        return;
    }
    let server = serve(&PSK);
    let got = coaps_test_support::peers::temp_path(&format!("large-b64-{}", server.port));
    let _ = std::fs::remove_file(&got);
    let mut cmd = Command::new("coap-client-openssl");
    cmd.args(["-B", "10", "-b", "64", "-m", "get"])
        .args(PSK)
        .arg("-o")
        .arg(&got)
        .arg(format!("coaps://127.0.0.1:{}/large", server.port));
    let out = run(cmd, LIMIT);
    let log = server.guard.stop();
    assert!(out.status.success(), "{}\n--- coaps serve\n{log}", show(&out));
    let bytes = std::fs::read(&got).unwrap();
    assert_eq!(bytes.len(), 4096);
    assert!(bytes == coaps_cli::demo::large_body());
}

#[test]
fn coaps_get_large_with_block_size_and_output_file() {
    let server = serve(&[]);
    for b in ["16", "64", "1024"] {
        let got = coaps_test_support::peers::temp_path(&format!("coaps-large-{}-{b}", server.port));
        let out = run(
            {
                let mut c = coaps_cmd(&["get", "-b", b, "-o"]);
                c.arg(&got).arg(format!("coaps://127.0.0.1:{}/large", server.port));
                c
            },
            LIMIT,
        );
        assert!(out.status.success(), "{}", show(&out));
        assert!(out.stdout.is_empty(), "-o sends the payload to the file only");
        assert!(std::fs::read(&got).unwrap() == coaps_cli::demo::large_body(), "-b {b}");
    }
}

#[test]
fn interrupted_transfer_outputs_nothing() {
    let server = serve(&[]);
    let relay = UdpRelay::start(format!("127.0.0.1:{}", server.port).parse().unwrap());
    // 256 blocks of 16 bytes: the relay goes away mid-transfer.
    let mut cmd = coaps_cmd(&["get", "-b", "16", "-B", "3"]);
    cmd.arg(format!("coaps://127.0.0.1:{}/large", relay.addr().port()));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let deadline = Instant::now() + LIMIT;
    while relay.stats().to_server.len() < 30 {
        assert!(Instant::now() < deadline, "the transfer never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    let blocks_before = relay.stats().to_server.len();
    drop(relay);
    let out = child.wait_with_output().unwrap();
    assert!(blocks_before < 200, "the transfer should still be running when cut ({blocks_before} datagrams)");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(out.stdout.is_empty(), "a partial body was printed: {} bytes", out.stdout.len());
}

/// Time stamps `HH:MM:SS` in `text`.
fn clock_stamps(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 8 <= b.len() {
        let w = &b[i..i + 8];
        let digits = [0, 1, 3, 4, 6, 7].iter().all(|&k| w[k].is_ascii_digit());
        if digits && w[2] == b':' && w[5] == b':' {
            out.push(String::from_utf8_lossy(w).into_owned());
            i += 8;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn coaps_observes_clock_for_three_seconds() {
    let server = serve(&[]);
    let started = Instant::now();
    let out = run(
        {
            let mut c = coaps_cmd(&["get", "-s", "3"]);
            c.arg(format!("coaps://127.0.0.1:{}/clock", server.port));
            c
        },
        LIMIT,
    );
    let took = started.elapsed();
    let log = server.guard.stop();
    assert!(out.status.success(), "{}\n--- coaps serve\n{log}", show(&out));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    assert!(lines.len() >= 4, "the first answer and at least 3 notifications: {lines:?}");
    assert!(lines.iter().all(|l| clock_stamps(l).len() == 1 && l.len() == 8), "{lines:?}");
    let mut dedup = lines.clone();
    dedup.dedup();
    assert!(dedup.len() >= 3, "the time moves: {lines:?}");
    assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(15), "{took:?}");
}

#[test]
fn coap_client_observes_clock_on_coaps_serve() {
    if !peer_available("coap-client-openssl") {
        return;
    }
    let server = serve(&PSK);
    let mut cmd = Command::new("coap-client-openssl");
    cmd.args(["-B", "10", "-s", "3", "-m", "get"]).args(PSK).arg(format!("coaps://127.0.0.1:{}/clock", server.port));
    let out = run(cmd, LIMIT);
    let log = server.guard.stop();
    assert!(out.status.success(), "{}\n--- coaps serve\n{log}", show(&out));
    let stamps = clock_stamps(&String::from_utf8_lossy(&out.stdout));
    assert!(stamps.len() >= 3, "libcoap printed {stamps:?}\n{}", show(&out));
}

#[test]
fn coaps_observes_a_libcoap_resource() {
    if !peer_available("coap-server-openssl") {
        return;
    }
    let (server, port) = libcoap_server("coap-server-openssl", &["-k", "secretPSK"]);
    let out = run(
        {
            let mut c = coaps_cmd(&["get", "-s", "3"]);
            c.args(PSK).arg(format!("coaps://127.0.0.1:{port}/time"));
            c
        },
        LIMIT,
    );
    let log = server.stop();
    assert!(out.status.success(), "{}\n--- coap-server\n{log}", show(&out));
    let stamps = clock_stamps(&String::from_utf8_lossy(&out.stdout));
    assert!(stamps.len() >= 3, "{stamps:?}\n{}", show(&out));
}

#[test]
fn request_options_reach_the_server() {
    // -t/-A/-O/-N/-T are accepted and the request still works against coaps serve (the demo
    // ignores unknown elective options: 2048 is even, RFC 7252 §5.4.6; an odd, critical one
    // would be refused); usage errors exit 2 with a hint.
    let server = serve(&[]);
    let out = run(
        {
            let mut c = coaps_cmd(&["get", "-A", "text", "-O", "2048,abc", "-N", "-T", "0a0b0c"]);
            c.arg(format!("coaps://127.0.0.1:{}/hello", server.port));
            c
        },
        LIMIT,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Hello, CoAPS!");
    for (args, hint) in [
        (&["-b", "100"][..], "16, 32"),
        (&["-t", "jsn"][..], "content format"),
        (&["-T", "xyz"][..], "hex"),
        (&["-O", "a,b"][..], "-O NUM,VALUE"),
        (&["-e", "x", "-f", "y"][..], "cannot be used with"),
    ] {
        let out = run(
            {
                let mut c = coaps_cmd(&["get"]);
                c.args(args).arg("coaps://127.0.0.1:1/x");
                c
            },
            LIMIT,
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(hint), "{args:?}: {}", show(&out));
    }
    let out = run(
        {
            let mut c = coaps_cmd(&["put", "-f", "/nonexistent/file"]);
            c.arg("coaps://127.0.0.1:1/x");
            c
        },
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the payload file"));
    let out = run(coaps_cmd(&["fetch", "--help"]), LIMIT);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Exit status"), "{}", show(&out));
}

/// `--max-block-body`, `--max-block-buffer`, `--max-observers`, `--max-observers-per-peer`:
/// values out of range or at odds with each other are usage errors (exit 2, naming the flag).
#[test]
fn block_and_observe_limit_flags_refuse_absurd_values() {
    for (args, says) in [
        (&["--max-block-body", "0"][..], "--max-block-body"),
        (&["--max-block-body", "999999999999"][..], "--max-block-body"),
        (&["--max-block-buffer", "0"][..], "--max-block-buffer"),
        (&["--max-observers", "0"][..], "--max-observers"),
        (&["--max-observers-per-peer", "0"][..], "--max-observers-per-peer"),
        (&["--max-block-body", "2000000", "--max-block-buffer", "1000000"][..], "raise --max-block-buffer"),
        (&["--max-observers", "4", "--max-observers-per-peer", "8"][..], "lower it or raise --max-observers"),
    ] {
        let mut cmd = coaps_cmd(&["serve", "--listen", "127.0.0.1:0"]);
        cmd.args(args);
        let out = run(cmd, LIMIT);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{args:?}: {}", show(&out));
    }
    let mut help = coaps_cmd(&["serve", "--help"]);
    help.stdout(Stdio::piped());
    let text = String::from_utf8_lossy(&run(help, LIMIT).stdout).into_owned();
    for flag in ["--max-block-body", "--max-block-buffer", "--max-observers", "--max-observers-per-peer"] {
        assert!(text.contains(flag), "{flag} is documented in --help");
    }
}

/// `--max-block-body 1024`: a 2000-byte block-wise upload is refused by the block layer with
/// 4.13 and its limit (RFC 7959 §2.9.3), before the application sees it; by default the same
/// upload reaches the door, which refuses it with its own, smaller limit.
#[test]
fn max_block_body_bounds_block_wise_uploads() {
    let file = write_temp("coaps-max-block-body", &[b'x'; 2000]);
    for (serve_args, says) in
        [(&["--max-block-body", "1024"][..], "at most 1024 bytes"), (&[][..], "door commands are at most 64 bytes")]
    {
        let server = serve(serve_args);
        let mut cmd = coaps_cmd(&["post", "-b", "256", "-f"]);
        cmd.arg(&file).arg(format!("coaps://127.0.0.1:{}/actuators/door", server.port));
        let out = run(cmd, LIMIT);
        let log = server.guard.stop();
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(all.contains("4.13") || all.contains("Request Entity Too Large"), "{serve_args:?}: {all}\n{log}");
        assert!(all.contains(says), "{serve_args:?}: {all}\n{log}");
    }
}

/// `--max-observers 1`: a second observer of `/clock` is served a plain answer and the server
/// says why at warn.
#[test]
fn max_observers_limits_registrations() {
    let server = serve(&["--max-observers", "1", "--max-observers-per-peer", "1", "--threads", "1"]);
    let url = format!("coaps://127.0.0.1:{}/clock", server.port);
    let mut first = coaps_cmd(&["get", "-s", "4"]);
    first.arg(&url).stdout(Stdio::null()).stderr(Stdio::null());
    let mut first = first.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut second = coaps_cmd(&["get", "-s", "1"]);
    second.arg(&url);
    let out = run(second, LIMIT);
    let deadline = Instant::now() + LIMIT;
    while first.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = first.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = server.guard.stop();
    assert!(!String::from_utf8_lossy(&out.stdout).is_empty(), "the second client gets the clock: {}", show(&out));
    assert!(log.contains("observer limit reached, registration refused") && log.contains("WARN"), "{log}");
}
