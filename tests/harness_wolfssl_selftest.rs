//! Proves the wolfSSL part of the interop harness (`tests/common/wolfssl.rs`) with wolfSSL on
//! both ends, in DTLS 1.3: the command lines, ports, ready detection, output capture and PID
//! cleanup, and every output line and debug-log marker that `tests/interop_wolfssl.rs` relies
//! on. Needs no code from this crate, so it passes before our DTLS 1.3 engine exists.
//!
//! Skips (with a notice) when the wolfSSL programs are not built, unless
//! `COAPS_REQUIRE_PEERS=1`; build them with `bash scripts/ci-peers.sh`.

use coaps_test_support::peers as common;
use coaps_test_support::wolfssl;

use common::*;
use std::net::UdpSocket;
use std::time::Duration;
use wolfssl::*;

/// Certificate mode, each target suite, mutual authentication (the server requires the client
/// certificate by default), stateless HRR with a cookie (the server's default): both exit 0,
/// data flows both ways, both print the version and suite.
#[test]
fn wolfssl_cert_mode_each_suite() {
    let Some(wolf) = require_wolfssl() else { return };
    for suite in [TLS13_CHACHA20, TLS13_AES128_GCM, TLS13_AES128_CCM8] {
        let mut args = wolf_server_cert_args(true);
        args.extend(suite.wolf_args());
        let (mut server, addr) = wolf.server(Dtls::V13, None, &args);
        let mut args = wolf_client_cert_args(true);
        args.extend(suite.wolf_args());
        let mut client = wolf.client(Dtls::V13, None, addr, &args);
        expect_wolf_success(&mut client);
        expect_wolf_success(&mut server);
        for peer in [&client, &server] {
            assert_stdout(peer, Dtls::V13.wolf_line(), suite.iana);
            assert_stdout(peer, &suite.wolf_line(), suite.iana);
            assert_stdout(peer, "SSL curve name is SECP256R1", suite.iana);
        }
        assert_stdout(&client, WOLF_REPLY, "server to client");
        // The server's cookie HRR, seen from both ends.
        assert_log(&client, LOG_HRR_RECEIVED, "client got the HRR");
        assert_log(&client, LOG_COOKIE_RECEIVED, "HRR carried a cookie");
        assert_log(&server, LOG_COOKIE_RECEIVED, "second ClientHello echoed the cookie");
    }
}

/// `-J n` turns the server's cookie exchange off: no HRR at all.
#[test]
fn wolfssl_server_without_cookie_sends_no_hrr() {
    let Some(wolf) = require_wolfssl() else { return };
    let mut args = wolf_server_cert_args(false);
    args.extend(strings(&["-J", "n"]));
    let (mut server, addr) = wolf.server(Dtls::V13, None, &args);
    let mut client = wolf.client(Dtls::V13, None, addr, &wolf_client_cert_args(false));
    expect_wolf_success(&mut client);
    expect_wolf_success(&mut server);
    assert_stdout(&client, WOLF_REPLY, "server to client");
    assert_no_log(&client, LOG_HRR_RECEIVED, "-J n");
    assert_no_log(&server, LOG_COOKIE_RECEIVED, "-J n");
}

/// Client `-J`: the first ClientHello has no key share, so the server's HRR picks the group.
#[test]
fn wolfssl_client_without_key_share_gets_hrr() {
    let Some(wolf) = require_wolfssl() else { return };
    let mut args = wolf_server_cert_args(false);
    args.extend(strings(&["-J", "n"]));
    let (mut server, addr) = wolf.server(Dtls::V13, None, &args);
    let mut args = wolf_client_cert_args(false);
    args.push("-J".into());
    let mut client = wolf.client(Dtls::V13, None, addr, &args);
    expect_wolf_success(&mut client);
    expect_wolf_success(&mut server);
    assert_log(&client, LOG_NO_KEY_SHARE, "-J");
    assert_log(&client, LOG_HRR_RECEIVED, "-J");
    assert_stdout(&client, WOLF_REPLY, "server to client");
}

/// Echo mode (`-e`): the client prints its own message back, so both directions carried data.
#[test]
fn wolfssl_server_echo_mode() {
    let Some(wolf) = require_wolfssl() else { return };
    let mut args = wolf_server_cert_args(false);
    args.push("-e".into());
    let (mut server, addr) = wolf.server(Dtls::V13, None, &args);
    let mut client = wolf.client(Dtls::V13, None, addr, &wolf_client_cert_args(false));
    expect_wolf_success(&mut client);
    // The echo loop ends at the client's close_notify.
    expect_wolf_success(&mut server);
    assert_stdout(&client, WOLF_HELLO, "echo");
    assert!(!client.stdout().contains(WOLF_REPLY), "{}", client.dump());
}

/// External PSK with the hard-coded TLS 1.3 key: psk_dhe_ke by default, psk_ke with `-K` on
/// both sides (the server then prints no curve and the client computes no ECDHE secret).
#[test]
fn wolfssl_psk_modes() {
    let Some(wolf) = require_wolfssl() else { return };
    for (modes, extra) in [("psk_dhe_ke", &[][..]), ("psk_ke", &["-K"][..])] {
        let mut args = strings(&["-s", "-e"]);
        args.extend(TLS13_AES128_GCM.wolf_args());
        args.extend(strings(extra));
        let (mut server, addr) = wolf.server(Dtls::V13, None, &args);
        let mut args = strings(&["-s"]);
        args.extend(TLS13_AES128_GCM.wolf_args());
        args.extend(strings(extra));
        let mut client = wolf.client(Dtls::V13, None, addr, &args);
        expect_wolf_success(&mut client);
        expect_wolf_success(&mut server);
        assert_stdout(&client, WOLF_HELLO, modes);
        assert_stdout(&server, &TLS13_AES128_GCM.wolf_line(), modes);
        if modes == "psk_dhe_ke" {
            assert_stdout(&server, "SSL curve name is SECP256R1", modes);
            assert_log(&client, LOG_ECDHE, modes);
        } else {
            assert!(!server.stdout().contains("SSL curve name"), "psk_ke used a curve\n{}", server.dump());
            assert_no_log(&client, LOG_ECDHE, modes);
        }
    }
}

/// The PSK identity in the wolfSSL client's first ClientHello: `Client_identitySHA256` by
/// default, `Client_identity` with `--openssl-psk`. A bare UDP socket plays the server.
#[test]
fn wolfssl_client_psk_identity() {
    let Some(wolf) = require_wolfssl() else { return };
    for (extra, identity, not_followed_by) in
        [(&[][..], WOLF_CLIENT_PSK_IDENTITY, ""), (&["--openssl-psk"][..], WOLF_PSK_IDENTITY, "SHA256")]
    {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(PEER_TIMEOUT)).unwrap();
        let mut args = strings(&["-s"]);
        args.extend(TLS13_AES128_GCM.wolf_args());
        args.extend(strings(extra));
        let client = wolf.client(Dtls::V13, None, sock.local_addr().unwrap(), &args);
        let mut buf = [0u8; 65536];
        let (n, _) = sock.recv_from(&mut buf).unwrap_or_else(|e| panic!("no ClientHello: {e}\n{}", client.dump()));
        let hello = &buf[..n];
        let at = hello
            .windows(identity.len())
            .position(|w| w == identity.as_bytes())
            .unwrap_or_else(|| panic!("identity {identity} not in the ClientHello ({n} bytes)"));
        if !not_followed_by.is_empty() {
            assert!(!hello[at + identity.len()..].starts_with(not_followed_by.as_bytes()));
        }
        drop(client);
    }
}

/// Resumption with a ticket (`-r` on both): the second connection is abbreviated on both ends.
#[test]
fn wolfssl_resumption() {
    let Some(wolf) = require_wolfssl() else { return };
    let mut args = wolf_server_cert_args(false);
    args.extend(strings(&["-r", "-e"]));
    let (mut server, addr) = wolf.server(Dtls::V13, None, &args);
    let mut args = wolf_client_cert_args(false);
    args.push("-r".into());
    let mut client = wolf.client(Dtls::V13, None, addr, &args);
    expect_wolf_success(&mut client);
    expect_wolf_success(&mut server);
    assert_stdout(&client, "reused session id", "client resumed");
    assert_stdout(&server, "SSL reused session", "server resumed");
    assert_stdout(&client, WOLF_HELLO, "first connection echo");
    assert_stdout(&client, WOLF_RESUME_MSG, "resumed connection echo");
}

/// 0-RTT: accepted when the server skips the cookie (`-J n`); not even sent after the HRR.
#[test]
fn wolfssl_early_data() {
    let Some(wolf) = require_wolfssl() else { return };
    for (cookie, accepted) in [(false, true), (true, false)] {
        let mut args = wolf_server_cert_args(false);
        args.extend(strings(&["-r", "-0", "-e"]));
        if !cookie {
            args.extend(strings(&["-J", "n"]));
        }
        let (mut server, addr) = wolf.server(Dtls::V13, None, &args);
        let mut args = wolf_client_cert_args(false);
        args.extend(strings(&["-r", "-0"]));
        let mut client = wolf.client(Dtls::V13, None, addr, &args);
        expect_wolf_success(&mut client);
        expect_wolf_success(&mut server);
        assert_stdout(&client, "reused session id", "resumed");
        let early = format!("Early Data Client message: {WOLF_EARLY_MSG}");
        if accepted {
            assert_stdout(&server, &early, "0-RTT without cookie");
            assert_stdout(&server, "Early Data was accepted", "0-RTT without cookie");
        } else {
            assert!(!server.stdout().contains(&early), "{}", server.dump());
            assert!(!server.stdout().contains("Early Data was accepted"), "{}", server.dump());
        }
    }
}

/// KeyUpdate: the client's `-I` and the server's `-U` both send one with update_requested, and
/// the other side answers with its own.
#[test]
fn wolfssl_key_update() {
    let Some(wolf) = require_wolfssl() else { return };
    // Client-initiated, against the echo server.
    let mut args = wolf_server_cert_args(false);
    args.push("-e".into());
    let (mut server, addr) = wolf.server(Dtls::V13, None, &args);
    let mut args = wolf_client_cert_args(false);
    args.push("-I".into());
    let mut client = wolf.client(Dtls::V13, None, addr, &args);
    expect_wolf_success(&mut client);
    expect_wolf_success(&mut server);
    assert_stdout(&client, WOLF_HELLO, "echo after KeyUpdate");
    assert_log(&client, LOG_KEY_UPDATE_SENT, "client -I");
    assert_log(&server, LOG_KEY_UPDATE_RECEIVED, "client -I");
    assert_log(&client, LOG_KEY_UPDATE_RECEIVED, "server's answer");

    // Server-initiated, before its reply.
    let mut args = wolf_server_cert_args(false);
    args.push("-U".into());
    let (mut server, addr) = wolf.server(Dtls::V13, None, &args);
    let mut client = wolf.client(Dtls::V13, None, addr, &wolf_client_cert_args(false));
    expect_wolf_success(&mut client);
    expect_wolf_success(&mut server);
    assert_stdout(&client, WOLF_REPLY, "reply after KeyUpdate");
    assert_log(&server, LOG_KEY_UPDATE_SENT, "server -U");
    assert_log(&client, LOG_KEY_UPDATE_RECEIVED, "server -U");
}

/// `-u 300` on both sides, through the relay: no datagram over 300 bytes (the value counts
/// the UDP payload), and the certificate flights are fragmented.
#[test]
fn wolfssl_mtu_300_through_relay() {
    let Some(wolf) = require_wolfssl() else { return };
    let mut args = wolf_server_cert_args(true);
    args.push("-e".into());
    let (mut server, addr) = wolf.server(Dtls::V13, Some(300), &args);
    let relay = UdpRelay::start(addr);
    let mut args = wolf_client_cert_args(true);
    args.push("-Y".into());
    let mut client = wolf.client(Dtls::V13, Some(300), relay.addr(), &args);
    expect_wolf_success(&mut client);
    expect_wolf_success(&mut server);
    assert_stdout(&client, WOLF_HELLO, "echo");
    let stats = relay.stats();
    let max = stats.to_server.iter().chain(&stats.to_client).max().copied().unwrap_or(0);
    assert!(max <= 300, "datagram of {max} bytes with -u 300: {stats:?}");
    assert!(stats.to_client.iter().filter(|&&n| n == 300).count() >= 1, "server flight not fragmented: {stats:?}");
    assert!(stats.to_server.iter().filter(|&&n| n == 300).count() >= 1, "client flight not fragmented: {stats:?}");
}

/// `-v 3`: DTLS 1.2, for the version line the interop tests check.
#[test]
fn wolfssl_dtls12() {
    let Some(wolf) = require_wolfssl() else { return };
    let mut args = wolf_server_cert_args(false);
    args.push("-e".into());
    let (mut server, addr) = wolf.server(Dtls::V12, None, &args);
    let mut client = wolf.client(Dtls::V12, None, addr, &wolf_client_cert_args(false));
    expect_wolf_success(&mut client);
    expect_wolf_success(&mut server);
    assert_stdout(&client, Dtls::V12.wolf_line(), "-v 3");
    assert_stdout(&server, Dtls::V12.wolf_line(), "-v 3");
    assert_stdout(&client, WOLF_HELLO, "echo");
}

/// A DTLS 1.3-only client and a DTLS 1.2-only server do not agree on anything.
#[test]
fn wolfssl_version_mismatch_fails() {
    let Some(wolf) = require_wolfssl() else { return };
    let (_server, addr) = wolf.server(Dtls::V12, None, &wolf_server_cert_args(false));
    let mut client = wolf.client(Dtls::V13, None, addr, &wolf_client_cert_args(false));
    client.expect_failure(PEER_TIMEOUT);
    assert!(!client.stdout().contains(WOLF_REPLY));
}

/// Ready detection, distinct ports for concurrent servers, and drop kills by PID.
#[test]
fn wolfssl_servers_start_on_distinct_ports_and_die_on_drop() {
    let Some(wolf) = require_wolfssl() else { return };
    let (mut a, addr_a) = wolf.server(Dtls::V13, None, &wolf_server_cert_args(false));
    let (b, addr_b) = wolf.server(Dtls::V13, None, &wolf_server_cert_args(false));
    assert_ne!(addr_a.port(), addr_b.port());
    assert!(a.is_running());
    // Still waiting for its one client: it does not exit by itself.
    assert!(a.wait_exit(Duration::from_millis(300)).is_none());
    let pids = [a.pid(), b.pid()];
    drop(a);
    drop(b);
    for pid in pids {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "wolfSSL server {pid} survived drop");
    }
    // Nothing holds the killed server's port any more.
    UdpSocket::bind(addr_a).expect("port of the killed server is free");
}
