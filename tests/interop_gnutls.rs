//! Interop of `examples/dtls_echo` with GnuTLS 3.7 `gnutls-serv --udp` / `gnutls-cli --udp`:
//! both roles, PSK and ECDHE-ECDSA suites, cookies, fragmentation, client certificates and
//! resumption. Command lines and quirks: the project notes' `reference/peers.md` (outside this
//! repository), GnuTLS section.
//!
//! GnuTLS quirks the tests rely on:
//! * `gnutls-serv --echo` echoes every record; it binds the wildcard addresses and serves until
//!   killed. In certificate mode it sends an (optional) CertificateRequest by default, so our
//!   client must answer it with an empty Certificate when it has none.
//! * `gnutls-cli` 3.7.9 segfaults after every ECDHE-PSK handshake (in print_info): it is not
//!   used as an ECDHE-PSK client; the s_client tests cover that role.
//! * `--mtu N` counts the UDP payload.

use coaps_test_support::peers as common;

use common::*;
use std::net::SocketAddr;
use std::sync::OnceLock;

/// The `--pskpasswd` file: `Client_identity:<hex key>`.
fn psk_passwd_file() -> String {
    static FILE: OnceLock<String> = OnceLock::new();
    FILE.get_or_init(|| {
        let path = temp_path("psk.passwd");
        std::fs::write(&path, format!("{PSK_IDENTITY}:{PSK_HEX}\n")).expect("write psk file");
        path.to_string_lossy().into_owned()
    })
    .clone()
}

// ---------------------------------------------------------------------------------------------
// Our client against gnutls-serv
// ---------------------------------------------------------------------------------------------

/// Starts `gnutls-serv --udp --echo` on a fresh port, restricted to `suite`, with the
/// credentials it needs; `extra` comes last. Waits until it listens on IPv4.
fn gnutls_serv(suite: &Suite, extra: &[String]) -> (Peer, SocketAddr) {
    // Build our side first: the first build takes a while, the peer should not wait for it.
    dtls_echo();
    let addr = free_local_addr();
    let mut args = strings(&["--udp", "--echo", "-p"]);
    args.push(addr.port().to_string());
    args.extend(["--priority".into(), suite.gnutls_priority()]);
    match suite.auth {
        Auth::Psk | Auth::EcdhePsk => {
            args.extend(["--pskpasswd".into(), psk_passwd_file()]);
            args.extend(strings(&["--pskhint", "hint"]));
        }
        Auth::EcdheEcdsa => {
            args.extend(["--x509certfile".into(), cert("server.crt")]);
            args.extend(["--x509keyfile".into(), cert("server.key")]);
        }
    }
    args.extend(extra.iter().cloned());
    let server = Peer::spawn("gnutls-serv", "gnutls-serv", &args, StdinMode::Null);
    let ready = format!("IPv4 0.0.0.0 port {}...done", addr.port());
    assert!(server.wait_for_output(&ready, PEER_TIMEOUT), "gnutls-serv did not start\n{}", server.dump());
    (server, addr)
}

/// Runs our client against an echo server; asserts the echo and exit 0.
fn client_echo(connect: SocketAddr, suite: &Suite, extra: &[String], tag: &str) -> Peer {
    let text = message_for(tag);
    let mut args = echo_client_args(suite);
    args.extend(extra.iter().cloned());
    args.extend(["--message".into(), text.clone()]);
    let mut client = start_echo_client(connect, &args);
    client.expect_success(PEER_TIMEOUT);
    assert!(client.stdout().contains(&text), "no echo printed\n{}", client.dump());
    client
}

fn client_to_gnutls_serv(suite: &Suite) {
    if !require_peers(&["gnutls-serv", "openssl"]) {
        return;
    }
    let (mut server, addr) = gnutls_serv(suite, &[]);
    client_echo(addr, suite, &[], suite.openssl);
    assert!(server.is_running(), "gnutls-serv died\n{}", server.dump());
}

#[test]
fn client_to_gnutls_serv_psk_chacha20() {
    client_to_gnutls_serv(&PSK_CHACHA20);
}

#[test]
fn client_to_gnutls_serv_ecdhe_psk_chacha20() {
    client_to_gnutls_serv(&ECDHE_PSK_CHACHA20);
}

#[test]
fn client_to_gnutls_serv_ecdsa_chacha20() {
    client_to_gnutls_serv(&ECDSA_CHACHA20);
}

#[test]
fn client_to_gnutls_serv_psk_ccm8() {
    client_to_gnutls_serv(&PSK_CCM8);
}

#[test]
fn client_to_gnutls_serv_ecdsa_ccm8() {
    client_to_gnutls_serv(&ECDSA_CCM8);
}

#[test]
fn client_to_gnutls_serv_psk_gcm() {
    client_to_gnutls_serv(&PSK_GCM);
}

#[test]
fn client_to_gnutls_serv_ecdsa_gcm() {
    client_to_gnutls_serv(&ECDSA_GCM);
}

/// gnutls-serv `--nocookie`: the server answers the first ClientHello with its ServerHello.
#[test]
fn client_to_gnutls_serv_without_cookie() {
    if !require_peers(&["gnutls-serv", "openssl"]) {
        return;
    }
    for suite in [&PSK_CHACHA20, &ECDSA_CCM8] {
        let (_server, addr) = gnutls_serv(suite, &strings(&["--nocookie"]));
        client_echo(addr, suite, &[], "no cookie");
    }
}

/// `--mtu 300` on both: every datagram either way is at most 300 bytes, and gnutls-serv's
/// certificate flight needs several of them.
#[test]
fn client_to_gnutls_serv_mtu_300() {
    if !require_peers(&["gnutls-serv", "openssl"]) {
        return;
    }
    let suite = &ECDSA_CHACHA20;
    let (_server, addr) = gnutls_serv(suite, &strings(&["--mtu", "300"]));
    let relay = UdpRelay::start(addr);
    client_echo(relay.addr(), suite, &strings(&["--mtu", "300"]), "mtu 300");
    let stats = relay.stats();
    let ours = stats.to_server.iter().max().copied().unwrap_or(0);
    assert!(ours <= 300, "our client sent a {ours}-byte datagram: {stats:?}");
    assert!(stats.to_client.iter().all(|&n| n <= 300), "{stats:?}");
}

/// gnutls-serv requires a client certificate (`-r`): ours is accepted; without one we fail.
#[test]
fn client_certificate_to_gnutls_serv() {
    if !require_peers(&["gnutls-serv", "openssl"]) {
        return;
    }
    let suite = &ECDSA_CCM8;
    let require = ["-r".into(), "--x509cafile".into(), cert("ca.crt")];
    let (_server, addr) = gnutls_serv(suite, &require);
    let client_cert = ["--cert".into(), cert("client.crt"), "--key".into(), cert("client.key")];
    client_echo(addr, suite, &client_cert, "client cert");

    let text = message_for("no client cert");
    let mut args = echo_client_args(suite);
    args.extend(["--message".into(), text.clone()]);
    let mut client = start_echo_client(addr, &args);
    client.expect_failure(PEER_TIMEOUT);
    assert!(!client.stdout().contains(&text));
}

/// Session-ID resumption with gnutls-serv `--noticket`, and with its default (tickets).
#[test]
fn client_resumes_with_gnutls_serv() {
    if !require_peers(&["gnutls-serv", "openssl"]) {
        return;
    }
    for (suite, extra) in
        [(&PSK_CCM8, strings(&["--noticket"])), (&ECDSA_CHACHA20, strings(&["--noticket"])), (&ECDSA_CCM8, vec![])]
    {
        let (_server, addr) = gnutls_serv(suite, &extra);
        let client = client_echo(addr, suite, &strings(&["--resume"]), "resume");
        assert!(client.stderr().contains("resumed"), "not resumed\n{}", client.dump());
    }
}

/// RFC 5077 ticket resumption: with `--nodb` gnutls-serv keeps no session cache, so only the
/// ticket it issued can resume.
#[test]
fn client_resumes_with_a_ticket_from_gnutls_serv() {
    if !require_peers(&["gnutls-serv", "openssl"]) {
        return;
    }
    for suite in [&PSK_CCM8, &ECDSA_CHACHA20] {
        let (_server, addr) = gnutls_serv(suite, &strings(&["--nodb"]));
        let client = client_echo(addr, suite, &strings(&["--resume"]), "resume-ticket");
        assert!(client.stderr().contains("resumed"), "{}: not resumed\n{}", suite.iana, client.dump());
    }
}

/// Our dual-version client (`--dtls auto`: one ClientHello offering DTLS 1.3 and 1.2) against
/// gnutls-serv, which speaks DTLS 1.2 only: with its cookie exchange, without it, and resuming.
#[test]
fn client_auto_falls_back_to_dtls12_with_gnutls_serv() {
    if !require_peers(&["gnutls-serv", "openssl"]) {
        return;
    }
    let auto = |suite: &Suite| {
        let suites = format!("TLS_CHACHA20_POLY1305_SHA256,TLS_AES_128_GCM_SHA256,{}", suite.iana);
        strings(&["--dtls", "auto", "--suites", &suites])
    };
    for (suite, extra) in [
        (&PSK_CHACHA20, vec![]),
        (&ECDSA_CHACHA20, vec![]),
        (&PSK_CCM8, strings(&["--nocookie"])),
        (&ECDSA_CCM8, strings(&["--nocookie"])),
    ] {
        let (mut server, addr) = gnutls_serv(suite, &extra);
        client_echo(addr, suite, &auto(suite), "auto");
        assert!(server.is_running(), "gnutls-serv died\n{}", server.dump());
    }
    let suite = &ECDSA_CHACHA20;
    let (_server, addr) = gnutls_serv(suite, &strings(&["--noticket"]));
    let mut args = auto(suite);
    args.push("--resume".into());
    let client = client_echo(addr, suite, &args, "auto resume");
    assert!(client.stderr().contains("resumed"), "not resumed\n{}", client.dump());
}

// ---------------------------------------------------------------------------------------------
// gnutls-cli against our server
// ---------------------------------------------------------------------------------------------

fn spawn_gnutls_cli(connect: SocketAddr, suite: &Suite, extra: &[String]) -> Peer {
    assert_ne!(suite.auth, Auth::EcdhePsk, "gnutls-cli 3.7.9 crashes after ECDHE-PSK handshakes");
    let mut args = strings(&["--udp", "-p"]);
    args.push(connect.port().to_string());
    args.push(connect.ip().to_string());
    args.extend(["--priority".into(), suite.gnutls_priority()]);
    match suite.auth {
        Auth::Psk | Auth::EcdhePsk => {
            args.extend(strings(&["--pskusername", PSK_IDENTITY, "--pskkey", PSK_HEX]));
        }
        Auth::EcdheEcdsa => {
            // The host argument is 127.0.0.1: the certificate's IP SAN is checked.
            args.extend(["--x509cafile".into(), cert("ca.crt")]);
        }
    }
    args.extend(extra.iter().cloned());
    Peer::spawn("gnutls-cli", "gnutls-cli", &args, StdinMode::Piped)
}

/// Handshake, one line up, its echo back, clean close at stdin EOF; returns the finished
/// gnutls-cli.
fn gnutls_cli_echo(connect: SocketAddr, suite: &Suite, extra: &[String], tag: &str) -> Peer {
    let mut client = spawn_gnutls_cli(connect, suite, extra);
    assert!(
        client.wait_for_output("- Simple Client Mode", PEER_TIMEOUT),
        "gnutls-cli did not complete the handshake\n{}",
        client.dump()
    );
    let text = message_for(tag);
    client.write_stdin(format!("{text}\n").as_bytes()).unwrap();
    assert!(client.wait_for_stdout_count(&text, 1, PEER_TIMEOUT), "no echo from our server\n{}", client.dump());
    client.close_stdin();
    client.expect_success(PEER_TIMEOUT);
    client
}

fn gnutls_cli_to_server(suite: &Suite) {
    if !require_peers(&["gnutls-cli", "openssl"]) {
        return;
    }
    let (mut server, addr) = start_echo_server(&echo_server_args(suite));
    gnutls_cli_echo(addr, suite, &[], suite.openssl);
    assert!(server.is_running(), "our server died\n{}", server.dump());
}

#[test]
fn gnutls_cli_to_server_psk_chacha20() {
    gnutls_cli_to_server(&PSK_CHACHA20);
}

#[test]
fn gnutls_cli_to_server_ecdsa_chacha20() {
    gnutls_cli_to_server(&ECDSA_CHACHA20);
}

#[test]
fn gnutls_cli_to_server_psk_ccm8() {
    gnutls_cli_to_server(&PSK_CCM8);
}

#[test]
fn gnutls_cli_to_server_ecdsa_ccm8() {
    gnutls_cli_to_server(&ECDSA_CCM8);
}

#[test]
fn gnutls_cli_to_server_psk_gcm() {
    gnutls_cli_to_server(&PSK_GCM);
}

#[test]
fn gnutls_cli_to_server_ecdsa_gcm() {
    gnutls_cli_to_server(&ECDSA_GCM);
}

/// Our server without the cookie exchange.
#[test]
fn gnutls_cli_to_server_without_cookie() {
    if !require_peers(&["gnutls-cli", "openssl"]) {
        return;
    }
    let suite = &ECDSA_CHACHA20;
    let mut args = echo_server_args(suite);
    args.push("--no-cookie".into());
    let (_server, addr) = start_echo_server(&args);
    gnutls_cli_echo(addr, suite, &[], "no cookie");
}

/// `--mtu 300` on both: no datagram from our server exceeds 300 bytes.
#[test]
fn gnutls_cli_to_server_mtu_300() {
    if !require_peers(&["gnutls-cli", "openssl"]) {
        return;
    }
    let suite = &ECDSA_CCM8;
    let mut args = echo_server_args(suite);
    args.extend(strings(&["--mtu", "300"]));
    let (_server, addr) = start_echo_server(&args);
    let relay = UdpRelay::start(addr);
    gnutls_cli_echo(relay.addr(), suite, &strings(&["--mtu", "300"]), "mtu 300");
    let stats = relay.stats();
    let ours = stats.to_client.iter().max().copied().unwrap_or(0);
    assert!(ours <= 300, "our server sent a {ours}-byte datagram: {stats:?}");
    assert!(stats.to_client.len() >= 4, "{stats:?}");
}

/// Our server requires a client certificate: gnutls-cli with one gets through, without one
/// is refused.
#[test]
fn gnutls_cli_certificate_required_by_server() {
    if !require_peers(&["gnutls-cli", "openssl"]) {
        return;
    }
    let suite = &ECDSA_CHACHA20;
    let mut args = echo_server_args(suite);
    args.extend(["--client-ca".into(), cert("ca.crt")]);
    let (mut server, addr) = start_echo_server(&args);
    let with_cert = ["--x509certfile".into(), cert("client.crt"), "--x509keyfile".into(), cert("client.key")];
    gnutls_cli_echo(addr, suite, &with_cert, "with client cert");

    let mut without = spawn_gnutls_cli(addr, suite, &[]);
    expect_refused(&mut without, "- Simple Client Mode");
    assert!(server.is_running(), "our server died\n{}", server.dump());
}

/// gnutls-cli `--resume`: two connections, the second one resumed.
#[test]
fn gnutls_cli_resumes_with_server() {
    if !require_peers(&["gnutls-cli", "openssl"]) {
        return;
    }
    for (suite, extra) in [
        (&PSK_CHACHA20, strings(&["--resume", "--noticket"])),
        (&ECDSA_CCM8, strings(&["--resume", "--noticket"])),
        (&ECDSA_CHACHA20, strings(&["--resume"])),
    ] {
        let (_server, addr) = start_echo_server(&echo_server_args(suite));
        let client = gnutls_cli_echo(addr, suite, &extra, "resume");
        assert!(
            client.output().contains("*** This is a resumed session"),
            "gnutls-cli did not resume\n{}",
            client.dump()
        );
    }
}
