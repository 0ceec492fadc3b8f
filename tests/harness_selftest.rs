//! Proves the interop harness (`tests/common`) on its own, with OpenSSL on both ends: process
//! spawning, output capture, bounded waits, stdin piping, PID cleanup, ports, certificates and
//! the UDP relay. Needs no code from this crate, so it runs before `dtls_echo` exists.

use coaps_test_support::peers as common;

use common::*;
use std::time::{Duration, Instant};

fn s_server(port: u16, extra: &[&str]) -> Peer {
    let port = port.to_string();
    let mut args = vec!["s_server", "-dtls1_2", "-accept"];
    let accept = format!("127.0.0.1:{port}");
    args.push(&accept);
    args.extend_from_slice(&["-naccept", "1"]);
    args.extend_from_slice(extra);
    let server = Peer::spawn("openssl s_server", "openssl", &args, StdinMode::Piped);
    assert!(server.wait_for_output("ACCEPT", PEER_TIMEOUT), "s_server did not start\n{}", server.dump());
    server
}

fn s_client(port: u16, extra: &[&str]) -> Peer {
    let connect = format!("127.0.0.1:{port}");
    let mut args = vec!["s_client", "-dtls1_2", "-connect", &connect];
    args.extend_from_slice(extra);
    Peer::spawn("openssl s_client", "openssl", &args, StdinMode::Piped)
}

/// Data flows both ways between s_client and s_server through the `Peer` API, and both exit
/// cleanly when the client closes its stdin.
#[test]
fn openssl_psk_data_flows_both_ways() {
    if !require_peer("openssl") {
        return;
    }
    let port = free_udp_port();
    let psk = ["-nocert", "-psk", PSK_HEX, "-psk_hint", "hint", "-cipher", PSK_CHACHA20.openssl];
    let mut server = s_server(port, &psk);
    let mut client = s_client(port, &["-psk", PSK_HEX, "-psk_identity", PSK_IDENTITY, "-cipher", PSK_CHACHA20.openssl]);
    let negotiated = format!("Cipher is {}", PSK_CHACHA20.openssl);
    assert!(client.wait_for_output(&negotiated, PEER_TIMEOUT), "no handshake\n{}", client.dump());

    let up = message_for("client to server");
    client.write_stdin(format!("{up}\n").as_bytes()).unwrap();
    assert!(server.wait_for_output(&up, PEER_TIMEOUT), "{}", server.dump());

    let down = message_for("server to client");
    server.write_stdin(format!("{down}\n").as_bytes()).unwrap();
    assert!(client.wait_for_output(&down, PEER_TIMEOUT), "{}", client.dump());

    client.close_stdin();
    client.expect_success(PEER_TIMEOUT);
    // -naccept 1: the server ends after its only connection.
    server.expect_success(PEER_TIMEOUT);
}

/// `echo_by_hand` turns s_server into an echo server for a client that sends without a newline
/// and exits on its own (like `dtls_echo client`).
#[test]
fn echo_by_hand_through_s_server() {
    if !require_peer("openssl") {
        return;
    }
    let port = free_udp_port();
    let mut server = s_server(port, &["-nocert", "-psk", PSK_HEX, "-cipher", PSK_CCM8.openssl]);
    let text = message_for("by hand");
    // s_client closes the connection and exits 2 s after sending, at stdin EOF.
    let script = format!(
        "(printf '%s' \"$0\"; sleep 2) | openssl s_client -dtls1_2 -connect 127.0.0.1:{port} \
         -psk {PSK_HEX} -psk_identity {PSK_IDENTITY} -cipher {}",
        PSK_CCM8.openssl
    );
    let mut client = Peer::spawn("sh | s_client", "sh", ["-c", script.as_str(), text.as_str()], StdinMode::Null);
    let status = echo_by_hand(&mut server, &mut client, &text, PEER_TIMEOUT);
    assert!(status.is_some_and(|s| s.success()), "{}", client.dump());
    // Once from s_server's stdin, never echoed locally by s_client.
    assert_eq!(client.stdout_count(&text), 1, "{}", client.dump());
    server.expect_success(PEER_TIMEOUT);
}

/// Waits are bounded, a process that never prints the pattern fails fast once it exits, and
/// drop kills a running peer by PID.
#[test]
fn waits_are_bounded_and_drop_kills_by_pid() {
    if !require_peer("openssl") {
        return;
    }
    let port = free_udp_port();
    let mut server = s_server(port, &["-nocert", "-psk", PSK_HEX]);
    let start = Instant::now();
    assert!(!server.wait_for_output("this is never printed", Duration::from_millis(300)));
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(5));
    assert!(server.wait_exit(Duration::from_millis(200)).is_none());
    assert!(server.is_running());

    let pid = server.pid();
    let proc_entry = std::path::PathBuf::from(format!("/proc/{pid}"));
    assert!(proc_entry.exists(), "s_server pid {pid} not found");
    drop(server);
    // Reaped, so not even a zombie is left.
    assert!(!proc_entry.exists(), "s_server pid {pid} survived drop");

    // A process that exits without printing the pattern ends the wait early.
    let quick = Peer::spawn("openssl version", "openssl", ["version"], StdinMode::Null);
    let start = Instant::now();
    assert!(!quick.wait_for_output("not in the version string", PEER_TIMEOUT));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(quick.output().contains("OpenSSL"));
}

/// Ports handed out are distinct and bindable.
#[test]
fn free_ports_are_distinct_and_bindable() {
    let ports: Vec<u16> = (0..64).map(|_| free_udp_port()).collect();
    let mut unique = ports.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ports.len());
    for p in ports.iter().take(8) {
        std::net::UdpSocket::bind(("127.0.0.1", *p)).expect("port handed out is bindable");
    }
}

/// The generated PKI has the properties the negative tests rely on.
#[test]
fn certificates_have_the_expected_properties() {
    if !require_peer("openssl") {
        return;
    }
    let verify = |ca: &str, leaf: &str, extra: &[&str]| -> bool {
        let mut cmd = std::process::Command::new("openssl");
        cmd.args(["verify", "-CAfile", &cert(ca)]).args(extra).arg(cert(leaf));
        cmd.output().expect("run openssl verify").status.success()
    };
    let localhost = ["-verify_hostname", "localhost"];
    assert!(verify("ca.crt", "server.crt", &localhost));
    assert!(verify("ca.crt", "server.crt", &["-verify_ip", "127.0.0.1"]));
    assert!(verify("ca.crt", "client.crt", &[]));
    assert!(!verify("ca.crt", "server.crt", &["-verify_hostname", "example.com"]));
    // Trusted CA, wrong name.
    assert!(verify("ca.crt", "wrong-host.crt", &["-verify_hostname", "wrong.example"]));
    assert!(!verify("ca.crt", "wrong-host.crt", &localhost));
    // Right name, unrelated CA.
    assert!(verify("other-ca.crt", "other-server.crt", &localhost));
    assert!(!verify("ca.crt", "other-server.crt", &localhost));
    for key in ["server.key", "client.key", "wrong-host.key", "other-server.key"] {
        let pem = std::fs::read_to_string(cert(key)).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{key} is not PKCS#8");
    }
}

/// The relay forwards a whole handshake and records datagram sizes; with `-mtu 300` on both
/// OpenSSL ends no UDP payload exceeds 300 - 28 bytes and the certificate flight is split.
#[test]
fn relay_observes_mtu_limited_handshake() {
    if !require_peer("openssl") {
        return;
    }
    let port = free_udp_port();
    let mut server = s_server(
        port,
        &[
            "-cert",
            &cert("server.crt"),
            "-key",
            &cert("server.key"),
            "-groups",
            "P-256",
            "-cipher",
            ECDSA_CHACHA20.openssl,
            "-mtu",
            "300",
        ],
    );
    let relay = UdpRelay::start(([127, 0, 0, 1], port).into());
    let mut client = s_client(
        relay.addr().port(),
        &[
            "-CAfile",
            &cert("ca.crt"),
            "-verify_return_error",
            "-groups",
            "P-256",
            "-cipher",
            ECDSA_CHACHA20.openssl,
            "-mtu",
            "300",
        ],
    );
    assert!(client.wait_for_output("Cipher is ECDHE-ECDSA-CHACHA20-POLY1305", PEER_TIMEOUT), "{}", client.dump());
    let text = message_for("via relay");
    client.write_stdin(format!("{text}\n").as_bytes()).unwrap();
    assert!(server.wait_for_output(&text, PEER_TIMEOUT), "{}", server.dump());
    client.close_stdin();
    client.expect_success(PEER_TIMEOUT);
    server.expect_success(PEER_TIMEOUT);

    let stats = relay.stats();
    assert!(!stats.to_server.is_empty() && !stats.to_client.is_empty());
    let max = stats.to_server.iter().chain(&stats.to_client).max().copied().unwrap();
    // OpenSSL counts -mtu as the IP MTU but overshoots the 272-byte UDP payload by a few bytes.
    assert!(max <= 300, "datagram of {max} bytes with -mtu 300: {stats:?}");
    // ServerHello..ServerHelloDone with a ~500-byte certificate cannot fit in 2 datagrams.
    assert!(stats.to_client.len() >= 4, "{stats:?}");
}
