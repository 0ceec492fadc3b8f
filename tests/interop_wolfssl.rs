//! DTLS 1.3 interop of `examples/dtls_echo` with the wolfSSL 5.9.4 example client and server
//! (the only DTLS 1.3 peer available offline), both roles: ECDHE with certificates for each
//! target suite, HelloRetryRequest (cookie and key share), external PSK (psk_dhe_ke and psk_ke),
//! resumption with a ticket, KeyUpdate, fragmentation under a 300-byte MTU, 0-RTT, client
//! certificates, and version negotiation of the dual-version server (including a DTLS 1.2-only
//! OpenSSL client). What the wolfSSL programs print and how they are driven:
//! `tests/common/wolfssl.rs`, proven wolfSSL-to-wolfSSL by `tests/harness_wolfssl_selftest.rs`.
//!
//! The wolfSSL programs are built by `bash scripts/ci-peers.sh`; without them the tests skip
//! (with a notice) unless `COAPS_REQUIRE_PEERS=1`.
//!
//! `dtls_echo` options used here beyond the DTLS 1.2 ones: `--dtls 1.2|1.3|auto` (server default
//! `auto`, client default `1.3`), `--psk` in 1.3, server `--accept-early-data`, client
//! `--early-data TEXT` (with `--resume`: sent as 0-RTT on the resumed connection; prints
//! `early data accepted` or `early data rejected` on stderr). Until they exist, every test fails
//! with "does not implement the DTLS 1.3 options yet".

use coaps_test_support::peers as common;
use coaps_test_support::wolfssl;

use common::*;
use std::net::SocketAddr;
use wolfssl::*;

const SUITES: [Suite13; 3] = [TLS13_CHACHA20, TLS13_AES128_GCM, TLS13_AES128_CCM8];

/// `dtls_echo client` options: DTLS 1.3, verify the server certificate, send `text`.
fn our_cert_client(text: &str) -> Vec<String> {
    let mut args = strings(&["--dtls", "1.3"]);
    args.extend(echo_client_cert_args());
    args.extend(["--message".into(), text.into()]);
    args
}

/// `dtls_echo client` options: DTLS 1.3 with the wolfSSL test PSK, send `text`.
fn our_psk_client(text: &str) -> Vec<String> {
    let mut args = strings(&["--dtls", "1.3", "--psk"]);
    args.push(echo_psk_arg(WOLF_PSK_IDENTITY));
    args.extend(["--message".into(), text.into()]);
    args
}

/// A wolfSSL DTLS 1.3 echo server (`-e`) with the test certificate (no client certificate
/// requested) and `extra` options.
fn wolf_echo_server(wolf: &Wolfssl, extra: &[&str]) -> (Peer, SocketAddr) {
    // Build our side first: the first build takes a while, the peer should not wait for it.
    dtls_echo();
    let mut args = wolf_server_cert_args(false);
    args.push("-e".into());
    args.extend(strings(extra));
    wolf.server(Dtls::V13, None, &args)
}

/// Asserts that a wolfSSL program negotiated DTLS 1.3 (and `suite` if given).
fn assert_wolf_13(peer: &Peer, suite: Option<&Suite13>) {
    assert_stdout(peer, Dtls::V13.wolf_line(), "DTLS 1.3 negotiated");
    if let Some(s) = suite {
        assert_stdout(peer, &s.wolf_line(), "suite negotiated");
    }
}

/// Runs a wolfSSL DTLS 1.3 client with `args` against our server (`server`, at `addr`); asserts
/// exit 0, DTLS 1.3, and that it printed `reply` (what our server echoed). Failure messages
/// show both sides.
fn wolf_client_ok(
    wolf: &Wolfssl,
    server: &Peer,
    mtu: Option<u16>,
    addr: SocketAddr,
    args: &[String],
    reply: &str,
) -> Peer {
    let mut client = wolf.client(Dtls::V13, mtu, addr, args);
    match client.wait_exit(PEER_TIMEOUT) {
        Some(s) if s.success() => {}
        status => panic!(
            "the wolfSSL DTLS 1.3 client failed against our server ({})\n{}\n{}",
            status.map_or_else(|| "still running".to_owned(), |s| s.to_string()),
            client.dump(),
            server.dump()
        ),
    }
    assert_wolf_13(&client, None);
    assert_stdout(&client, reply, "echo from our server");
    client
}

// =============================================================================================
// Our client against the wolfSSL server
// =============================================================================================

/// ECDHE (P-256) with the server certificate, one suite; the wolfSSL server's default stateless
/// HRR with a cookie comes first.
fn client_to_wolfssl(suite: Suite13) {
    let Some(wolf) = require_wolfssl() else { return };
    let (mut server, addr) = wolf_echo_server(&wolf, &["-l", suite.wolfssl]);
    let text = message_for(suite.iana);
    let client = run_echo_client(addr, &our_cert_client(&text));
    assert_stdout(&client, &text, "echo from the wolfSSL server");
    // The echo loop ends at our close_notify.
    expect_wolf_success(&mut server);
    assert_wolf_13(&server, Some(&suite));
    assert_stdout(&server, "SSL curve name is SECP256R1", "ECDHE on P-256");
}

#[test]
fn client_to_wolfssl_chacha20() {
    client_to_wolfssl(TLS13_CHACHA20);
}

#[test]
fn client_to_wolfssl_aes128_gcm() {
    client_to_wolfssl(TLS13_AES128_GCM);
}

#[test]
fn client_to_wolfssl_aes128_ccm8() {
    client_to_wolfssl(TLS13_AES128_CCM8);
}

/// The wolfSSL server answers the first ClientHello with a HelloRetryRequest carrying a cookie
/// (its default, RFC 9147 §5.1): our second ClientHello must echo it, which the server logs.
#[test]
fn client_answers_wolfssl_hrr_cookie() {
    let Some(wolf) = require_wolfssl() else { return };
    let (mut server, addr) = wolf_echo_server(&wolf, &[]);
    let text = message_for("hrr cookie");
    let client = run_echo_client(addr, &our_cert_client(&text));
    assert_stdout(&client, &text, "echo after HRR");
    expect_wolf_success(&mut server);
    assert_log(&server, LOG_COOKIE_RECEIVED, "our second ClientHello echoed the cookie");
}

/// External PSK, psk_dhe_ke (the wolfSSL server prefers it when a key share is offered), each
/// suite. The server's PSK callback takes any identity starting with `Client_identity`.
#[test]
fn client_to_wolfssl_psk_dhe_ke() {
    let Some(wolf) = require_wolfssl() else { return };
    dtls_echo();
    for suite in SUITES {
        let (mut server, addr) = wolf.server(Dtls::V13, None, &["-s", "-e", "-l", suite.wolfssl]);
        let text = message_for(&format!("psk_dhe_ke {}", suite.iana));
        let client = run_echo_client(addr, &our_psk_client(&text));
        assert_stdout(&client, &text, "echo from the wolfSSL server");
        expect_wolf_success(&mut server);
        assert_wolf_13(&server, Some(&suite));
        assert_stdout(&server, "SSL curve name is SECP256R1", "psk_dhe_ke uses ECDHE");
    }
}

/// External PSK, psk_ke: `-K` makes the wolfSSL server refuse (EC)DHE with a PSK, so the
/// handshake only completes if our client offers psk_ke in psk_key_exchange_modes
/// (RFC 8446 §4.2.9; RFC 9846 §4.3.9). The server then prints no curve.
#[test]
fn client_to_wolfssl_psk_ke() {
    let Some(wolf) = require_wolfssl() else { return };
    dtls_echo();
    let suite = TLS13_AES128_CCM8;
    let (mut server, addr) = wolf.server(Dtls::V13, None, &["-s", "-K", "-e", "-l", suite.wolfssl]);
    let text = message_for("psk_ke");
    let mut client = start_echo_client(addr, &our_psk_client(&text));
    let status = client.wait_exit(PEER_TIMEOUT);
    fail_if_usage_error(&mut client, status);
    assert!(
        status.is_some_and(|s| s.success()),
        "psk_ke handshake failed: does our client offer psk_ke in psk_key_exchange_modes? (wolfSSL -K \
         only accepts psk_ke)\n{}\n{}",
        client.dump(),
        server.dump()
    );
    assert_stdout(&client, &text, "echo from the wolfSSL server");
    expect_wolf_success(&mut server);
    assert_wolf_13(&server, Some(&suite));
    assert!(!server.stdout().contains("SSL curve name"), "not psk_ke: the server used a curve\n{}", server.dump());
}

/// Resumption with the NewSessionTicket the wolfSSL server sends after the handshake
/// (`-r`: it serves two connections).
#[test]
fn client_resumes_with_wolfssl_ticket() {
    let Some(wolf) = require_wolfssl() else { return };
    let (mut server, addr) = wolf_echo_server(&wolf, &["-r"]);
    let text = message_for("resume");
    let mut args = our_cert_client(&text);
    args.push("--resume".into());
    let client = run_echo_client(addr, &args);
    assert!(client.stderr().contains("resumed"), "our client did not resume\n{}", client.dump());
    assert_eq!(client.stdout_count(&text), 2, "one echo per connection\n{}", client.dump());
    expect_wolf_success(&mut server);
    assert_stdout(&server, "SSL reused session", "the wolfSSL server resumed");
}

/// The wolfSSL server (`-U`) sends a KeyUpdate with update_requested after reading our message
/// and sends its reply under the new keys: our client must process the KeyUpdate (and ACK it,
/// RFC 9147 §8) to decrypt the reply.
#[test]
fn client_handles_wolfssl_key_update() {
    let Some(wolf) = require_wolfssl() else { return };
    dtls_echo();
    let mut args = wolf_server_cert_args(false);
    args.push("-U".into());
    let (server, addr) = wolf.server(Dtls::V13, None, &args);
    let text = message_for("key update");
    let client = run_echo_client(addr, &our_cert_client(&text));
    assert_stdout(&client, WOLF_REPLY, "reply sent under the updated keys");
    assert_log(&server, LOG_KEY_UPDATE_SENT, "the wolfSSL server sent a KeyUpdate");
    // Our message reached the server: it prints it, or at least its read of that many bytes
    // is in the debug log (its read loop can swallow the line when an ACK follows at once).
    let read = format!("Leaving wolfSSL_read_internal, return {}", text.len());
    assert!(
        server.stdout().contains(&format!("Client message: {text}")) || server.stderr().contains(&read),
        "the wolfSSL server did not read our message\n{}",
        server.dump()
    );
}

/// `--mtu 300` on our client, `-u 300` on the wolfSSL server, which requires our client
/// certificate: both certificate flights are fragmented (the server's by wolfSSL, ours by us)
/// and reassembled on the other side; no datagram exceeds 300 bytes.
#[test]
fn client_to_wolfssl_mtu_300() {
    let Some(wolf) = require_wolfssl() else { return };
    dtls_echo();
    let mut args = wolf_server_cert_args(true);
    args.push("-e".into());
    let (mut server, addr) = wolf.server(Dtls::V13, Some(300), &args);
    let relay = UdpRelay::start(addr);
    let text = message_for("mtu 300");
    let mut args = our_cert_client(&text);
    args.extend(["--cert".into(), data_cert("client.crt"), "--key".into(), data_cert("client.key")]);
    args.extend(strings(&["--mtu", "300"]));
    let client = run_echo_client(relay.addr(), &args);
    assert_stdout(&client, &text, "echo");
    expect_wolf_success(&mut server);
    let stats = relay.stats();
    let ours = stats.to_server.iter().max().copied().unwrap_or(0);
    assert!(ours <= 300, "our client sent a {ours}-byte datagram: {stats:?}");
    assert!(stats.to_client.iter().all(|&n| n <= 300), "{stats:?}");
    // ServerHello + encrypted EncryptedExtensions..Finished with a ~440-byte certificate.
    assert!(stats.to_client.len() >= 4, "{stats:?}");
    // ClientHello (twice, HRR) + Certificate (~440 bytes), CertificateVerify, Finished.
    assert!(stats.to_server.len() >= 4, "{stats:?}");
}

/// Our client's 0-RTT data, accepted: the wolfSSL server (`-r -0 -J n`; it only takes early
/// data without its cookie HRR) prints it as early data, and our client says so.
#[test]
fn client_early_data_accepted_by_wolfssl() {
    let Some(wolf) = require_wolfssl() else { return };
    let (mut server, addr) = wolf_echo_server(&wolf, &["-r", "-0", "-J", "n"]);
    let text = message_for("after early data");
    let early = message_for("early data");
    let mut args = our_cert_client(&text);
    args.extend(["--resume".into(), "--early-data".into(), early.clone()]);
    let client = run_echo_client(addr, &args);
    assert!(client.stderr().contains("resumed"), "not resumed\n{}", client.dump());
    assert!(client.stderr().contains("early data accepted"), "early data not accepted\n{}", client.dump());
    assert_eq!(client.stdout_count(&text), 2, "one echo per connection\n{}", client.dump());
    expect_wolf_success(&mut server);
    assert_stdout(&server, &format!("Early Data Client message: {early}"), "the server read our 0-RTT data");
    assert_stdout(&server, "Early Data was accepted", "the server accepted 0-RTT");
}

/// Our client's 0-RTT data, rejected: with its cookie HRR the wolfSSL server cannot take early
/// data (a client must not send it after an HRR, RFC 8446 §4.2.10); the connection still
/// resumes and the normal message still flows.
#[test]
fn client_early_data_rejected_after_wolfssl_hrr() {
    let Some(wolf) = require_wolfssl() else { return };
    let (mut server, addr) = wolf_echo_server(&wolf, &["-r", "-0"]);
    let text = message_for("after rejected early data");
    let early = message_for("rejected early data");
    let mut args = our_cert_client(&text);
    args.extend(["--resume".into(), "--early-data".into(), early.clone()]);
    let client = run_echo_client(addr, &args);
    assert!(client.stderr().contains("early data rejected"), "expected a rejection\n{}", client.dump());
    assert!(client.stderr().contains("resumed"), "not resumed\n{}", client.dump());
    assert_eq!(client.stdout_count(&text), 2, "one echo per connection\n{}", client.dump());
    expect_wolf_success(&mut server);
    assert!(!server.stdout().contains(&early), "rejected early data reached the server\n{}", server.dump());
}

/// The wolfSSL server requires a client certificate without `-d`: ours is verified against the
/// test CA; without one our client is refused.
#[test]
fn client_certificate_to_wolfssl() {
    let Some(wolf) = require_wolfssl() else { return };
    dtls_echo();
    let mut args = wolf_server_cert_args(true);
    args.push("-e".into());
    let (mut server, addr) = wolf.server(Dtls::V13, None, &args);
    let text = message_for("client cert");
    let mut with_cert = our_cert_client(&text);
    with_cert.extend(["--cert".into(), data_cert("client.crt"), "--key".into(), data_cert("client.key")]);
    let client = run_echo_client(addr, &with_cert);
    assert_stdout(&client, &text, "echo");
    expect_wolf_success(&mut server);

    let (_server, addr) = wolf.server(Dtls::V13, None, &wolf_server_cert_args(true));
    let text = message_for("no client cert");
    let client = run_echo_client_expect_failure(addr, &our_cert_client(&text));
    assert!(!client.stdout().contains(&text), "{}", client.dump());
}

/// `--dtls auto` on our client: DTLS 1.3 with a 1.3 server, DTLS 1.2 with a 1.2-only server.
#[test]
fn client_auto_negotiates_each_version_with_wolfssl() {
    let Some(wolf) = require_wolfssl() else { return };
    dtls_echo();
    for version in [Dtls::V13, Dtls::V12] {
        let mut args = wolf_server_cert_args(false);
        args.push("-e".into());
        let (mut server, addr) = wolf.server(version, None, &args);
        let text = message_for(&format!("auto {version:?}"));
        let mut args = strings(&["--dtls", "auto"]);
        args.extend(echo_client_cert_args());
        args.extend(["--message".into(), text.clone()]);
        let client = run_echo_client(addr, &args);
        assert_stdout(&client, &text, "echo");
        expect_wolf_success(&mut server);
        assert_stdout(&server, version.wolf_line(), "negotiated version");
    }
}

/// `--dtls 1.3` on our client does not fall back to DTLS 1.2.
#[test]
fn client_13_only_refuses_wolfssl_12_server() {
    let Some(wolf) = require_wolfssl() else { return };
    dtls_echo();
    let (_server, addr) = wolf.server(Dtls::V12, None, &wolf_server_cert_args(false));
    let text = message_for("1.3 only");
    let client = run_echo_client_expect_failure(addr, &our_cert_client(&text));
    assert!(!client.stdout().contains(&text), "{}", client.dump());
}

// =============================================================================================
// The wolfSSL client against our server
// =============================================================================================

/// ECDHE with our server certificate, one suite. The wolfSSL client's default ClientHello
/// offers ML-KEM hybrids first and key shares for secp256r1 and ffdhe2048: our server must pick
/// secp256r1. Our server's default cookie HRR comes first.
fn wolfssl_client_to_server(suite: Suite13) {
    let Some(wolf) = require_wolfssl() else { return };
    let (mut server, addr) = start_echo_server13(&echo_server_cert_args());
    let mut args = wolf_client_cert_args(false);
    args.extend(suite.wolf_args());
    let client = wolf_client_ok(&wolf, &server, None, addr, &args, WOLF_HELLO);
    assert_wolf_13(&client, Some(&suite));
    assert!(server.is_running(), "our server died\n{}", server.dump());
}

#[test]
fn wolfssl_client_to_server_chacha20() {
    wolfssl_client_to_server(TLS13_CHACHA20);
}

#[test]
fn wolfssl_client_to_server_aes128_gcm() {
    wolfssl_client_to_server(TLS13_AES128_GCM);
}

#[test]
fn wolfssl_client_to_server_aes128_ccm8() {
    wolfssl_client_to_server(TLS13_AES128_CCM8);
}

/// Our server's default HelloRetryRequest carries a cookie (RFC 9147 §5.1) which the wolfSSL
/// client echoes; with `--no-cookie` and a P-256 key share (`-Y`) there is no HRR at all.
#[test]
fn wolfssl_client_gets_hrr_cookie_unless_disabled() {
    let Some(wolf) = require_wolfssl() else { return };
    let mut args = wolf_client_cert_args(false);
    args.push("-Y".into());

    let (server, addr) = start_echo_server13(&echo_server_cert_args());
    let client = wolf_client_ok(&wolf, &server, None, addr, &args, WOLF_HELLO);
    assert_log(&client, LOG_HRR_RECEIVED, "our server sent an HRR");
    assert_log(&client, LOG_COOKIE_RECEIVED, "the HRR carried a cookie");

    let mut no_cookie = echo_server_cert_args();
    no_cookie.push("--no-cookie".into());
    let (server, addr) = start_echo_server13(&no_cookie);
    let client = wolf_client_ok(&wolf, &server, None, addr, &args, WOLF_HELLO);
    assert_no_log(&client, LOG_HRR_RECEIVED, "--no-cookie and a usable key share need no HRR");
}

/// The wolfSSL client's `-J` sends no key share: our server's single HRR must select P-256
/// (and carry the cookie too: a second HRR would abort the handshake, RFC 8446 §4.1.4).
#[test]
fn wolfssl_client_without_key_share_gets_one_hrr() {
    let Some(wolf) = require_wolfssl() else { return };
    let (server, addr) = start_echo_server13(&echo_server_cert_args());
    let mut args = wolf_client_cert_args(false);
    args.push("-J".into());
    let client = wolf_client_ok(&wolf, &server, None, addr, &args, WOLF_HELLO);
    assert_log(&client, LOG_NO_KEY_SHARE, "-J");
    assert_eq!(client.stderr().matches(LOG_HRR_RECEIVED).count(), 1, "exactly one HRR\n{}", client.dump());
    assert_stdout(&client, "SSL curve name is SECP256R1", "P-256 selected");
}

/// External PSK from the wolfSSL client: it offers psk_ke and psk_dhe_ke with key shares, and
/// our server should choose psk_dhe_ke (forward secrecy): the client then computes an ECDHE
/// secret. Its identity is `Client_identitySHA256` (see `tests/common/wolfssl.rs`).
#[test]
fn wolfssl_client_psk_dhe_ke_to_server() {
    let Some(wolf) = require_wolfssl() else { return };
    let args = strings(&["--psk", &echo_psk_arg(WOLF_CLIENT_PSK_IDENTITY)]);
    let (mut server, addr) = start_echo_server13(&args);
    for suite in SUITES {
        let mut args = strings(&["-s"]);
        args.extend(suite.wolf_args());
        let client = wolf_client_ok(&wolf, &server, None, addr, &args, WOLF_HELLO);
        assert_wolf_13(&client, Some(&suite));
        assert_log(&client, LOG_ECDHE, "our server chose psk_dhe_ke");
    }
    assert!(server.is_running(), "our server died\n{}", server.dump());
}

/// External PSK, psk_ke only (`-K`): our server must complete without (EC)DHE.
#[test]
fn wolfssl_client_psk_ke_to_server() {
    let Some(wolf) = require_wolfssl() else { return };
    let args = strings(&["--psk", &echo_psk_arg(WOLF_CLIENT_PSK_IDENTITY)]);
    let (server, addr) = start_echo_server13(&args);
    let mut args = strings(&["-s", "-K"]);
    args.extend(TLS13_AES128_GCM.wolf_args());
    let client = wolf_client_ok(&wolf, &server, None, addr, &args, WOLF_HELLO);
    assert_no_log(&client, LOG_ECDHE, "psk_ke has no ECDHE");
}

/// The wolfSSL client (`-r`) resumes with the ticket our server issued.
#[test]
fn wolfssl_client_resumes_with_ticket() {
    let Some(wolf) = require_wolfssl() else { return };
    let (server, addr) = start_echo_server13(&echo_server_cert_args());
    let mut args = wolf_client_cert_args(false);
    args.push("-r".into());
    let client = wolf_client_ok(&wolf, &server, None, addr, &args, WOLF_HELLO);
    assert_stdout(&client, "reused session id", "the wolfSSL client resumed");
    assert_stdout(&client, WOLF_RESUME_MSG, "echo on the resumed connection");
}

/// The wolfSSL client (`-r`) resumes with a stateless ticket: the session sealed into the
/// ticket, opened by our server without any store.
#[test]
fn wolfssl_client_resumes_with_stateless_ticket() {
    let Some(wolf) = require_wolfssl() else { return };
    let mut args = echo_server_cert_args();
    args.push("--stateless-tickets".into());
    let (server, addr) = start_echo_server13(&args);
    let mut args = wolf_client_cert_args(false);
    args.push("-r".into());
    let client = wolf_client_ok(&wolf, &server, None, addr, &args, WOLF_HELLO);
    assert_stdout(&client, "reused session id", "the wolfSSL client resumed");
    assert_stdout(&client, WOLF_RESUME_MSG, "echo on the resumed connection");
}

/// The wolfSSL client (`-I`) sends a KeyUpdate with update_requested before its message: our
/// server must switch its receiving keys, ACK it, and send its own KeyUpdate before the echo
/// (RFC 8446 §4.6.3 / RFC 9846 §4.7.3; RFC 9147 §8).
#[test]
fn wolfssl_client_key_update_to_server() {
    let Some(wolf) = require_wolfssl() else { return };
    let (server, addr) = start_echo_server13(&echo_server_cert_args());
    let mut args = wolf_client_cert_args(false);
    args.push("-I".into());
    let client = wolf_client_ok(&wolf, &server, None, addr, &args, WOLF_HELLO);
    assert_log(&client, LOG_KEY_UPDATE_SENT, "the wolfSSL client sent a KeyUpdate");
    assert_log(&client, LOG_KEY_UPDATE_RECEIVED, "our server answered with its own KeyUpdate");
}

/// `-u 300` on the wolfSSL client, `--mtu 300` on our server, which requires the client
/// certificate: the client's second ClientHello (with our HRR cookie) is fragmented and
/// reassembled in front of the cookie gate, our certificate flight is fragmented, and we
/// reassemble the client's; no datagram exceeds 300 bytes.
#[test]
fn wolfssl_client_mtu_300_to_server() {
    let Some(wolf) = require_wolfssl() else { return };
    let mut args = echo_server_cert_args();
    args.extend(["--client-ca".into(), data_cert("ca.crt")]);
    args.extend(strings(&["--mtu", "300"]));
    let (server, addr) = start_echo_server13(&args);
    let relay = UdpRelay::start(addr);
    let mut args = wolf_client_cert_args(true);
    args.push("-Y".into());
    wolf_client_ok(&wolf, &server, Some(300), relay.addr(), &args, WOLF_HELLO);
    let stats = relay.stats();
    let ours = stats.to_client.iter().max().copied().unwrap_or(0);
    assert!(ours <= 300, "our server sent a {ours}-byte datagram: {stats:?}");
    assert!(stats.to_server.iter().all(|&n| n <= 300), "{stats:?}");
    // HRR, ServerHello, and EncryptedExtensions..Finished with a ~440-byte certificate.
    assert!(stats.to_client.len() >= 4, "{stats:?}");
}

/// 0-RTT from the wolfSSL client (`-r -0`: `A drop of info` as early data on the resumed
/// connection), accepted by our server (`--accept-early-data`; `--no-cookie` because after an
/// HRR early data is always rejected): our server echoes it, and the wolfSSL client prints that
/// echo as its reply (it comes before the echo of `resuming wolfssl!`).
#[test]
fn wolfssl_client_early_data_accepted_by_server() {
    let Some(wolf) = require_wolfssl() else { return };
    let mut args = echo_server_cert_args();
    args.extend(strings(&["--accept-early-data", "--no-cookie"]));
    let (server, addr) = start_echo_server13(&args);
    let mut args = wolf_client_cert_args(false);
    args.extend(strings(&["-r", "-0"]));
    let client = wolf_client_ok(&wolf, &server, None, addr, &args, WOLF_HELLO);
    assert_stdout(&client, "reused session id", "the wolfSSL client resumed");
    assert_stdout(&client, WOLF_EARLY_MSG, "our server accepted and echoed the 0-RTT data");
}

/// Our server requires a client certificate (`--client-ca`): the wolfSSL client's is verified;
/// without one (`-x`) the wolfSSL client is refused.
#[test]
fn wolfssl_client_certificate_required_by_server() {
    let Some(wolf) = require_wolfssl() else { return };
    let mut args = echo_server_cert_args();
    args.extend(["--client-ca".into(), data_cert("ca.crt")]);
    let (mut server, addr) = start_echo_server13(&args);
    wolf_client_ok(&wolf, &server, None, addr, &wolf_client_cert_args(true), WOLF_HELLO);

    let mut client = wolf.client(Dtls::V13, None, addr, &wolf_client_cert_args(false));
    client.expect_failure(PEER_TIMEOUT);
    assert!(!client.stdout().contains(WOLF_HELLO), "{}", client.dump());
    assert!(server.is_running(), "our server died\n{}", server.dump());
}

/// `--dtls 1.3` on our server: the DTLS 1.3 client gets through.
#[test]
fn wolfssl_client_to_server_13_only() {
    let Some(wolf) = require_wolfssl() else { return };
    let mut args = echo_server_cert_args();
    args.extend(strings(&["--dtls", "1.3"]));
    let (server, addr) = start_echo_server13(&args);
    wolf_client_ok(&wolf, &server, None, addr, &wolf_client_cert_args(false), WOLF_HELLO);
}

// =============================================================================================
// DTLS 1.2 clients against the dual-version server (`--dtls auto`, the default)
// =============================================================================================

/// A DTLS 1.2-only wolfSSL client (`-v 3`) reaches our server in its default `auto` mode.
#[test]
fn wolfssl_dtls12_client_reaches_dual_version_server() {
    let Some(wolf) = require_wolfssl() else { return };
    let (mut server, addr) = start_echo_server13(&echo_server_cert_args());
    let mut client = wolf.client(Dtls::V12, None, addr, &wolf_client_cert_args(false));
    expect_wolf_success(&mut client);
    assert_stdout(&client, Dtls::V12.wolf_line(), "DTLS 1.2 negotiated");
    assert_stdout(&client, WOLF_HELLO, "echo from our server");
    // And a DTLS 1.3 client right after, on the same server.
    wolf_client_ok(&wolf, &server, None, addr, &wolf_client_cert_args(false), WOLF_HELLO);
    assert!(server.is_running(), "our server died\n{}", server.dump());
}

/// `openssl s_client -dtls1_2` against our server: handshake, one line up, its echo back.
fn s_client_echo(addr: SocketAddr, creds: &[String], tag: &str) -> Peer {
    let mut args = strings(&["s_client", "-dtls1_2", "-connect"]);
    args.push(addr.to_string());
    args.extend(creds.iter().cloned());
    let mut client = Peer::spawn("openssl s_client", "openssl", &args, StdinMode::Piped);
    assert!(
        client.wait_for_output("New, TLSv1.2, Cipher is", PEER_TIMEOUT),
        "s_client did not complete a DTLS 1.2 handshake with our dual-version server\n{}",
        client.dump()
    );
    let text = message_for(tag);
    client.write_stdin(format!("{text}\n").as_bytes()).unwrap();
    assert!(client.wait_for_stdout_count(&text, 1, PEER_TIMEOUT), "no echo from our server\n{}", client.dump());
    client.close_stdin();
    client.expect_success(PEER_TIMEOUT);
    client
}

/// A DTLS 1.2-only OpenSSL client still reaches a dual-version server: with certificates, and
/// with a PSK, on the same server (which serves both).
#[test]
fn openssl_dtls12_client_reaches_dual_version_server() {
    if !require_peer("openssl") {
        return;
    }
    dtls_echo();
    let mut args = echo_server_cert_args();
    args.extend(["--psk".into(), psk_arg()]);
    let (mut server, addr) = start_echo_server13(&args);
    let ca = data_cert("ca.crt");
    let cert_creds =
        strings(&["-CAfile", &ca, "-verify_return_error", "-verify_hostname", "localhost", "-groups", "P-256"]);
    s_client_echo(addr, &cert_creds, "dtls 1.2 certificate");
    let psk_creds = strings(&["-psk", PSK_HEX, "-psk_identity", PSK_IDENTITY, "-cipher", PSK_CCM8.openssl]);
    s_client_echo(addr, &psk_creds, "dtls 1.2 psk");
    assert!(server.is_running(), "our server died\n{}", server.dump());
}

/// `--dtls 1.3` on our server refuses a DTLS 1.2-only client (no silent downgrade).
#[test]
fn server_13_only_refuses_openssl_dtls12_client() {
    if !require_peer("openssl") {
        return;
    }
    dtls_echo();
    let mut args = echo_server_cert_args();
    args.extend(strings(&["--dtls", "1.3"]));
    let (server, addr) = start_echo_server13(&args);
    let ca = data_cert("ca.crt");
    let mut s_args = strings(&["s_client", "-dtls1_2", "-connect"]);
    s_args.push(addr.to_string());
    s_args.extend(strings(&["-CAfile", &ca, "-verify_return_error", "-groups", "P-256"]));
    let mut client = Peer::spawn("openssl s_client", "openssl", &s_args, StdinMode::Piped);
    expect_refused(&mut client, "New, TLSv1.2, Cipher is");
    drop(server);
}
