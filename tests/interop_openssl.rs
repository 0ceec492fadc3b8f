//! Interop of `examples/dtls_echo` with OpenSSL 3.0 `openssl s_server` / `s_client -dtls1_2`,
//! both roles, every supported suite, cookies, fragmentation, client certificates, name checks
//! and resumption. Command lines and quirks: the project notes' `reference/peers.md` (outside this
//! repository), section (b).
//!
//! OpenSSL quirks the tests rely on:
//! * `s_server` and `s_client` end the connection at stdin EOF, so their stdin stays piped open.
//! * `s_server` does not echo (`-rev` is refused with DTLS): it prints what it receives, and the
//!   test writes the same text to its stdin ([`echo_by_hand`]) so our client gets its echo.
//! * `s_server` without `-listen` cannot query the path MTU and falls back to 256 bytes, so
//!   every certificate flight from it is fragmented even on loopback.
//! * Lines starting with `Q`, `R`, `k`, ... are commands to s_server/s_client: messages start
//!   with `hello`.

use coaps_test_support::peers as common;

use common::*;
use std::net::SocketAddr;

// ---------------------------------------------------------------------------------------------
// Our client against openssl s_server
// ---------------------------------------------------------------------------------------------

/// Starts `openssl s_server -dtls1_2` on a fresh port with the credentials `suite` needs and
/// waits until it accepts. `extra` comes last (e.g. `-naccept 2`, `-listen`, `-mtu 300`).
fn s_server(suite: &Suite, extra: &[String]) -> (Peer, SocketAddr) {
    s_server_with_cert(suite, "server", extra)
}

/// [`s_server`] serving the certificate `<name>.crt` / `<name>.key` for ECDSA suites.
fn s_server_with_cert(suite: &Suite, name: &str, extra: &[String]) -> (Peer, SocketAddr) {
    // Build our side first: the first build takes a while, the peer should not wait for it.
    dtls_echo();
    let addr = free_local_addr();
    let mut args = strings(&["s_server", "-dtls1_2", "-accept"]);
    args.push(addr.to_string());
    match suite.auth {
        Auth::Psk | Auth::EcdhePsk => {
            args.extend(strings(&["-nocert", "-psk", PSK_HEX, "-psk_hint", "hint"]));
        }
        Auth::EcdheEcdsa => {
            args.extend(["-cert".into(), cert(&format!("{name}.crt"))]);
            args.extend(["-key".into(), cert(&format!("{name}.key"))]);
        }
    }
    args.extend(strings(&["-groups", "P-256", "-cipher", suite.openssl]));
    if !extra.iter().any(|a| a == "-naccept") {
        args.extend(strings(&["-naccept", "1"]));
    }
    args.extend(extra.iter().cloned());
    let server = Peer::spawn("openssl s_server", "openssl", &args, StdinMode::Piped);
    assert!(server.wait_for_output("ACCEPT", PEER_TIMEOUT), "s_server did not start\n{}", server.dump());
    (server, addr)
}

/// Runs our client (credentials for `suite`, then `client_extra`) against `server`, echoing by
/// hand through s_server's stdin. Asserts that s_server received the text with the expected
/// suite and that our client printed the echo and exited 0.
fn client_echo_via_s_server(
    server: &mut Peer,
    connect: SocketAddr,
    suite: &Suite,
    client_extra: &[String],
    tag: &str,
) -> Peer {
    let text = message_for(tag);
    let mut args = echo_client_args(suite);
    args.extend(client_extra.iter().cloned());
    args.extend(["--message".into(), text.clone()]);
    let mut client = start_echo_client(connect, &args);
    let status = echo_by_hand(server, &mut client, &text, PEER_TIMEOUT);
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("dtls_echo client exited with {s}\n{}", client.dump()),
        None => panic!("dtls_echo client did not finish\n{}", client.dump()),
    }
    let cipher = format!("CIPHER is {}", suite.openssl);
    assert!(server.output().contains(&cipher), "expected {cipher}\n{}", server.dump());
    assert!(server.stdout().contains(&text), "s_server got no data\n{}", server.dump());
    assert!(client.stdout().contains(&text), "no echo printed\n{}", client.dump());
    client
}

fn client_to_s_server(suite: &Suite) {
    if !require_peer("openssl") {
        return;
    }
    let (mut server, addr) = s_server(suite, &[]);
    client_echo_via_s_server(&mut server, addr, suite, &[], suite.openssl);
    // -naccept 1: s_server ends cleanly once our client closed the connection (close_notify).
    server.expect_success(PEER_TIMEOUT);
}

#[test]
fn client_to_s_server_psk_chacha20() {
    client_to_s_server(&PSK_CHACHA20);
}

#[test]
fn client_to_s_server_ecdhe_psk_chacha20() {
    client_to_s_server(&ECDHE_PSK_CHACHA20);
}

#[test]
fn client_to_s_server_ecdsa_chacha20() {
    client_to_s_server(&ECDSA_CHACHA20);
}

#[test]
fn client_to_s_server_psk_ccm8() {
    client_to_s_server(&PSK_CCM8);
}

#[test]
fn client_to_s_server_ecdsa_ccm8() {
    client_to_s_server(&ECDSA_CCM8);
}

#[test]
fn client_to_s_server_psk_gcm() {
    client_to_s_server(&PSK_GCM);
}

#[test]
fn client_to_s_server_ecdsa_gcm() {
    client_to_s_server(&ECDSA_GCM);
}

/// `-listen`: stateless cookie exchange (DTLSv1_listen) and a connected socket, so the server
/// flight comes unfragmented.
#[test]
fn client_to_s_server_stateless_cookie() {
    if !require_peer("openssl") {
        return;
    }
    for suite in [&PSK_CCM8, &ECDSA_CHACHA20] {
        let (mut server, addr) = s_server(suite, &strings(&["-listen"]));
        client_echo_via_s_server(&mut server, addr, suite, &[], "listen");
        server.expect_success(PEER_TIMEOUT);
    }
}

/// `-mtu 300` on s_server and `--mtu 300` on our client: both sides fragment, and no datagram
/// of ours exceeds 300 bytes (whether our MTU counts the IP or the UDP payload).
#[test]
fn client_to_s_server_mtu_300() {
    if !require_peer("openssl") {
        return;
    }
    let suite = &ECDSA_CCM8;
    let (mut server, addr) = s_server(suite, &strings(&["-mtu", "300"]));
    let relay = UdpRelay::start(addr);
    client_echo_via_s_server(&mut server, relay.addr(), suite, &strings(&["--mtu", "300"]), "mtu 300");
    let stats = relay.stats();
    let ours = stats.to_server.iter().max().copied().unwrap_or(0);
    assert!(ours <= 300, "our client sent a {ours}-byte datagram: {stats:?}");
    // The certificate flight was fragmented (OpenSSL overshoots its limit by a few bytes).
    assert!(stats.to_client.iter().all(|&n| n <= 300), "{stats:?}");
    assert!(stats.to_client.len() >= 4, "{stats:?}");
}

/// s_server requires a client certificate (`-Verify 1`): our client presents one.
#[test]
fn client_certificate_to_s_server() {
    if !require_peer("openssl") {
        return;
    }
    for suite in [&ECDSA_CHACHA20, &ECDSA_CCM8] {
        let ca = cert("ca.crt");
        let (mut server, addr) = s_server(suite, &strings(&["-Verify", "1", "-CAfile", &ca]));
        let client_cert = ["--cert".into(), cert("client.crt"), "--key".into(), cert("client.key")];
        client_echo_via_s_server(&mut server, addr, suite, &client_cert, "client cert");
        assert!(
            server.stdout().contains("subject=CN = client"),
            "s_server saw no client certificate\n{}",
            server.dump()
        );
    }
}

/// s_server requires a client certificate and our client has none: the handshake fails.
#[test]
fn client_without_certificate_refused_by_s_server() {
    if !require_peer("openssl") {
        return;
    }
    let suite = &ECDSA_CHACHA20;
    let ca = cert("ca.crt");
    let (_server, addr) = s_server(suite, &strings(&["-Verify", "1", "-CAfile", &ca]));
    let mut args = echo_client_args(suite);
    args.extend(["--message".into(), message_for("no client cert")]);
    let mut client = start_echo_client(addr, &args);
    client.expect_failure(PEER_TIMEOUT);
    assert!(!client.stdout().contains(&message_for("no client cert")));
}

/// The server certificate is valid for localhost/127.0.0.1, not for example.com.
#[test]
fn client_rejects_wrong_server_name() {
    if !require_peer("openssl") {
        return;
    }
    let suite = &ECDSA_CHACHA20;
    let (_server, addr) = s_server(suite, &[]);
    let text = message_for("wrong name");
    let args = [
        "--ca".into(),
        cert("ca.crt"),
        "--server-name".into(),
        "example.com".into(),
        "--suites".into(),
        suite.iana.into(),
        "--message".into(),
        text.clone(),
    ];
    let mut client = start_echo_client(addr, &args);
    expect_client_error(&mut client, &["name", "certificate", "host", "verif"]);
    assert!(!client.stdout().contains(&text));
}

/// A certificate from the trusted CA, but for `wrong.example` only: refused for `localhost`.
#[test]
fn client_rejects_certificate_for_other_host() {
    if !require_peer("openssl") {
        return;
    }
    let suite = &ECDSA_CHACHA20;
    let (_server, addr) = s_server_with_cert(suite, "wrong-host", &[]);
    let text = message_for("other host");
    let mut args = echo_client_args(suite); // --server-name localhost
    args.extend(["--message".into(), text.clone()]);
    let mut client = start_echo_client(addr, &args);
    expect_client_error(&mut client, &["name", "certificate", "host", "verif"]);
    assert!(!client.stdout().contains(&text));
}

/// A certificate for localhost issued by a CA our client does not trust: refused.
#[test]
fn client_rejects_untrusted_issuer() {
    if !require_peer("openssl") {
        return;
    }
    let suite = &ECDSA_CCM8;
    let (_server, addr) = s_server_with_cert(suite, "other-server", &[]);
    let text = message_for("untrusted issuer");
    let mut args = echo_client_args(suite);
    args.extend(["--message".into(), text.clone()]);
    let mut client = start_echo_client(addr, &args);
    expect_client_error(&mut client, &["certificate", "issuer", "trust", "verif", "ca"]);
    assert!(!client.stdout().contains(&text));
}

/// Our client with a PSK the server does not share fails (bad Finished / bad record MAC).
#[test]
fn client_with_wrong_psk_fails() {
    if !require_peer("openssl") {
        return;
    }
    let suite = &PSK_CHACHA20;
    let (_server, addr) = s_server(suite, &[]);
    let text = message_for("wrong psk");
    let args = [
        "--psk".into(),
        format!("{PSK_IDENTITY}:ffeeddccbbaa99887766554433221100"),
        "--suites".into(),
        suite.iana.into(),
        "--message".into(),
        text.clone(),
    ];
    let mut client = start_echo_client(addr, &args);
    client.expect_failure(PEER_TIMEOUT);
    assert!(!client.stdout().contains(&text));
}

/// Session-ID resumption (`-no_ticket`): the second handshake is abbreviated on both ends.
#[test]
fn client_resumes_session_id_with_s_server() {
    if !require_peer("openssl") {
        return;
    }
    for suite in [&PSK_CHACHA20, &ECDSA_CHACHA20] {
        let (mut server, addr) = s_server(suite, &strings(&["-naccept", "2", "-no_ticket"]));
        let client = client_echo_via_s_server(&mut server, addr, suite, &strings(&["--resume"]), "resume");
        assert!(client.stderr().contains("resumed"), "not resumed\n{}", client.dump());
        assert!(server.stdout().contains("Reused session-id"), "s_server did not resume\n{}", server.dump());
        server.expect_success(PEER_TIMEOUT);
    }
}

/// Resumption against s_server's defaults (it issues tickets to clients that ask): whether our
/// client uses a ticket or the session ID, the second handshake must be abbreviated.
#[test]
fn client_resumes_with_s_server_defaults() {
    if !require_peer("openssl") {
        return;
    }
    let suite = &ECDSA_CCM8;
    let (mut server, addr) = s_server(suite, &strings(&["-naccept", "2"]));
    let client = client_echo_via_s_server(&mut server, addr, suite, &strings(&["--resume"]), "resume");
    assert!(client.stderr().contains("resumed"), "not resumed\n{}", client.dump());
    assert!(server.stdout().contains("Reused session-id"), "{}", server.dump());
}

/// RFC 5077 ticket resumption: with `-no_cache` s_server keeps no sessions, so only the
/// ticket it issued can resume (our client offers it with a session ID of its own making,
/// which s_server echoes, RFC 5077 §3.4).
#[test]
fn client_resumes_with_a_ticket_from_s_server() {
    if !require_peer("openssl") {
        return;
    }
    for suite in [&PSK_CHACHA20, &ECDSA_CCM8] {
        let (mut server, addr) = s_server(suite, &strings(&["-naccept", "2", "-no_cache"]));
        let client = client_echo_via_s_server(&mut server, addr, suite, &strings(&["--resume"]), "resume-ticket");
        assert!(client.stderr().contains("resumed"), "{}: not resumed\n{}", suite.iana, client.dump());
        assert!(server.stdout().contains("Reused session-id"), "{}", server.dump());
    }
}

/// `--dtls auto` with the 1.3 suites in front of `suite`: one ClientHello offering DTLS 1.3
/// and 1.2 (supported_versions, key_share and, with a PSK, pre_shared_key next to the 1.2
/// extensions). Later `--suites` replaces the one [`echo_client_args`] gives.
fn auto_args(suite: &Suite) -> Vec<String> {
    let suites = format!("TLS_CHACHA20_POLY1305_SHA256,TLS_AES_128_GCM_SHA256,{}", suite.iana);
    strings(&["--dtls", "auto", "--suites", &suites])
}

/// Our dual-version client against the DTLS 1.2-only s_server: with its default cookie
/// exchange (the HelloVerifyRequest makes our client continue in 1.2, its second ClientHello
/// still offering 1.3), with `-listen`, and resuming the 1.2 session ID it got.
#[test]
fn client_auto_falls_back_to_dtls12_with_s_server() {
    if !require_peer("openssl") {
        return;
    }
    for (suite, extra) in [
        (&PSK_CHACHA20, vec![]),
        (&ECDSA_CHACHA20, vec![]),
        (&PSK_CCM8, strings(&["-listen"])),
        (&ECDSA_CCM8, strings(&["-listen"])),
    ] {
        let (mut server, addr) = s_server(suite, &extra);
        client_echo_via_s_server(&mut server, addr, suite, &auto_args(suite), "auto");
        server.expect_success(PEER_TIMEOUT);
    }
    let suite = &ECDSA_CHACHA20;
    let (mut server, addr) = s_server(suite, &strings(&["-naccept", "2", "-no_ticket"]));
    let mut args = auto_args(suite);
    args.push("--resume".into());
    let client = client_echo_via_s_server(&mut server, addr, suite, &args, "auto resume");
    assert!(client.stderr().contains("resumed"), "not resumed\n{}", client.dump());
    assert!(server.stdout().contains("Reused session-id"), "s_server did not resume\n{}", server.dump());
}

// ---------------------------------------------------------------------------------------------
// openssl s_client against our server
// ---------------------------------------------------------------------------------------------

/// `openssl s_client -dtls1_2` arguments for `suite` (credentials, `-cipher`), then `extra`.
fn s_client_args(connect: SocketAddr, suite: &Suite, extra: &[String]) -> Vec<String> {
    let mut args = strings(&["s_client", "-dtls1_2", "-connect"]);
    args.push(connect.to_string());
    match suite.auth {
        Auth::Psk | Auth::EcdhePsk => {
            args.extend(strings(&["-psk", PSK_HEX, "-psk_identity", PSK_IDENTITY]));
        }
        Auth::EcdheEcdsa => {
            args.extend(["-CAfile".into(), cert("ca.crt")]);
            args.extend(strings(&["-verify_return_error", "-verify_hostname", "localhost"]));
        }
    }
    args.extend(strings(&["-groups", "P-256", "-cipher", suite.openssl]));
    args.extend(extra.iter().cloned());
    args
}

fn spawn_s_client(connect: SocketAddr, suite: &Suite, extra: &[String]) -> Peer {
    let args = s_client_args(connect, suite, extra);
    Peer::spawn("openssl s_client", "openssl", &args, StdinMode::Piped)
}

/// What s_client prints once a full (`New`) or abbreviated (`Reused`) handshake completed.
fn negotiated(kind: &str, suite: &Suite) -> String {
    format!("{kind}, TLSv1.2, Cipher is {}", suite.openssl)
}

/// Handshake, one line up, its echo back, clean close; returns the finished s_client.
fn s_client_echo(connect: SocketAddr, suite: &Suite, extra: &[String], tag: &str) -> Peer {
    let mut client = spawn_s_client(connect, suite, extra);
    assert!(
        client.wait_for_output(&format!("Cipher is {}", suite.openssl), PEER_TIMEOUT),
        "s_client did not complete the handshake\n{}",
        client.dump()
    );
    let text = message_for(tag);
    client.write_stdin(format!("{text}\n").as_bytes()).unwrap();
    assert!(client.wait_for_stdout_count(&text, 1, PEER_TIMEOUT), "no echo from our server\n{}", client.dump());
    client.close_stdin();
    client.expect_success(PEER_TIMEOUT);
    client
}

fn s_client_to_server(suite: &Suite) {
    if !require_peer("openssl") {
        return;
    }
    let (mut server, addr) = start_echo_server(&echo_server_args(suite));
    let client = s_client_echo(addr, suite, &[], suite.openssl);
    assert!(client.stdout().contains(&negotiated("New", suite)), "{}", client.dump());
    assert!(server.is_running(), "our server died\n{}", server.dump());
}

#[test]
fn s_client_to_server_psk_chacha20() {
    s_client_to_server(&PSK_CHACHA20);
}

#[test]
fn s_client_to_server_ecdhe_psk_chacha20() {
    s_client_to_server(&ECDHE_PSK_CHACHA20);
}

#[test]
fn s_client_to_server_ecdsa_chacha20() {
    s_client_to_server(&ECDSA_CHACHA20);
}

#[test]
fn s_client_to_server_psk_ccm8() {
    s_client_to_server(&PSK_CCM8);
}

#[test]
fn s_client_to_server_ecdsa_ccm8() {
    s_client_to_server(&ECDSA_CCM8);
}

#[test]
fn s_client_to_server_psk_gcm() {
    s_client_to_server(&PSK_GCM);
}

#[test]
fn s_client_to_server_ecdsa_gcm() {
    s_client_to_server(&ECDSA_GCM);
}

/// By default our server answers the first ClientHello with a HelloVerifyRequest
/// (RFC 6347 §4.2.1); `--no-cookie` skips it. `-trace` makes s_client name every message.
#[test]
fn s_client_sees_cookie_exchange_unless_disabled() {
    if !require_peer("openssl") {
        return;
    }
    let suite = &PSK_CCM8;
    let trace = strings(&["-trace"]);

    let (_server, addr) = start_echo_server(&echo_server_args(suite));
    let client = s_client_echo(addr, suite, &trace, "cookie");
    assert!(client.stdout().contains("HelloVerifyRequest"), "{}", client.dump());

    let mut no_cookie = echo_server_args(suite);
    no_cookie.push("--no-cookie".into());
    let (_server, addr) = start_echo_server(&no_cookie);
    let client = s_client_echo(addr, suite, &trace, "no cookie");
    assert!(!client.stdout().contains("HelloVerifyRequest"), "{}", client.dump());
    assert!(client.stdout().contains("ServerHello"), "{}", client.dump());
}

/// Our server with `--mtu 300` against s_client `-mtu 300`: no datagram from our server exceeds
/// 300 bytes, so its certificate flight was fragmented, and s_client reassembled it.
#[test]
fn s_client_to_server_mtu_300() {
    if !require_peer("openssl") {
        return;
    }
    for suite in [&ECDSA_CHACHA20, &ECDSA_GCM] {
        let mut args = echo_server_args(suite);
        args.extend(strings(&["--mtu", "300"]));
        let (_server, addr) = start_echo_server(&args);
        let relay = UdpRelay::start(addr);
        s_client_echo(relay.addr(), suite, &strings(&["-mtu", "300"]), "mtu 300");
        let stats = relay.stats();
        let ours = stats.to_client.iter().max().copied().unwrap_or(0);
        assert!(ours <= 300, "our server sent a {ours}-byte datagram: {stats:?}");
        // ServerHello + ~450-byte Certificate + ServerKeyExchange + ServerHelloDone.
        assert!(stats.to_client.len() >= 4, "{stats:?}");
    }
}

/// Our server requires a client certificate (`--client-ca`): s_client with one gets through,
/// s_client without one is refused, and the server keeps serving afterwards.
#[test]
fn s_client_certificate_required_by_server() {
    if !require_peer("openssl") {
        return;
    }
    let suite = &ECDSA_CHACHA20;
    let mut args = echo_server_args(suite);
    args.extend(["--client-ca".into(), cert("ca.crt")]);
    let (mut server, addr) = start_echo_server(&args);

    let with_cert = ["-cert".into(), cert("client.crt"), "-key".into(), cert("client.key")];
    s_client_echo(addr, suite, &with_cert, "with client cert");

    let mut without = spawn_s_client(addr, suite, &[]);
    expect_refused_by_alert(&mut without);

    assert!(server.is_running(), "our server died\n{}", server.dump());
    s_client_echo(addr, suite, &with_cert, "after refusal");
}

/// A client certificate from an unrelated CA is refused too.
#[test]
fn s_client_certificate_from_untrusted_issuer_refused() {
    if !require_peer("openssl") {
        return;
    }
    let suite = &ECDSA_CCM8;
    let mut args = echo_server_args(suite);
    args.extend(["--client-ca".into(), cert("ca.crt")]);
    let (_server, addr) = start_echo_server(&args);
    // other-server.crt is a valid certificate, but not from ca.crt (and not for clientAuth).
    let foreign = ["-cert".into(), cert("other-server.crt"), "-key".into(), cert("other-server.key")];
    let mut client = spawn_s_client(addr, suite, &foreign);
    expect_refused_by_alert(&mut client);
}

/// s_client with a PSK our server does not know is refused, and the server survives it.
#[test]
fn s_client_with_wrong_psk_refused() {
    if !require_peer("openssl") {
        return;
    }
    let suite = &PSK_GCM;
    let (mut server, addr) = start_echo_server(&echo_server_args(suite));
    let args = [
        "s_client",
        "-dtls1_2",
        "-connect",
        &addr.to_string(),
        "-psk",
        "ffeeddccbbaa99887766554433221100",
        "-psk_identity",
        PSK_IDENTITY,
        "-cipher",
        suite.openssl,
    ];
    let mut client = Peer::spawn("openssl s_client", "openssl", args, StdinMode::Piped);
    // Our server ends the handshake at once with a fatal bad_record_mac on the Finished it
    // cannot decrypt (RFC 5246 §7.4.9). OpenSSL then still prints its session summary ("New,
    // TLSv1.2, Cipher is …", from the ServerHello), so the proof of the refusal is the alert
    // and a failed exit within the refusal bound, not the absence of that line.
    let status = client.wait_exit(REFUSAL_TIMEOUT);
    assert!(status.is_some_and(|s| !s.success()), "s_client did not fail at once ({status:?})\n{}", client.dump());
    assert!(client.stderr().contains("alert bad record mac"), "no bad_record_mac alert\n{}", client.dump());
    assert!(server.is_running(), "our server died\n{}", server.dump());
    s_client_echo(addr, suite, &[], "after wrong psk");
}

/// s_client session resumption against our server: `-sess_out`, then `-sess_in` on a new
/// connection (new source port) prints `Reused`.
fn s_client_resumes(suite: &Suite, extra: &[&str]) {
    let (_server, addr) = start_echo_server(&echo_server_args(suite));
    let session = temp_path("s_client-session.pem");
    let session = session.to_string_lossy().into_owned();

    let mut first = strings(extra);
    first.extend(["-sess_out".into(), session.clone()]);
    let client = s_client_echo(addr, suite, &first, "first");
    assert!(client.stdout().contains(&negotiated("New", suite)), "{}", client.dump());

    let mut second = strings(extra);
    second.extend(["-sess_in".into(), session]);
    let client = s_client_echo(addr, suite, &second, "resumed");
    assert!(client.stdout().contains(&negotiated("Reused", suite)), "s_client did not resume\n{}", client.dump());
}

#[test]
fn s_client_resumes_session_id() {
    if !require_peer("openssl") {
        return;
    }
    s_client_resumes(&PSK_CHACHA20, &["-no_ticket"]);
    s_client_resumes(&ECDSA_CCM8, &["-no_ticket"]);
}

/// s_client offers a session ticket extension by default; our server may issue a ticket or
/// fall back to its session cache, but must resume either way.
#[test]
fn s_client_resumes_with_defaults() {
    if !require_peer("openssl") {
        return;
    }
    s_client_resumes(&ECDSA_CHACHA20, &[]);
}
