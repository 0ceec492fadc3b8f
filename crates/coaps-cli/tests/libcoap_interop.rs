//! libcoap 4.3.1 interop, both DTLS backends (OpenSSL and GnuTLS), PSK and certificates:
//! libcoap clients against `coaps serve`, and `coaps get` against libcoap servers.
//! Missing programs skip the test with a message, or fail it under `COAPS_REQUIRE_PEERS=1`.

use coaps_test_support::cli as common;

use common::*;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(40);

// The libcoap clients' own wait (-B) is kept short: a handshake that needs a retransmission
// (as one did when the server repeated a record number after the HelloVerifyRequest, which
// GnuTLS drops as a replay) shows up as a failure, not as a slow pass.

/// `coap-client-<backend> ... coaps://127.0.0.1:PORT/hello` against `coaps serve`.
fn libcoap_client_fetches_hello(backend: &str, serve_args: &[&str], client_args: &[&str]) {
    let program = format!("coap-client-{backend}");
    if !peer_available(&program) {
        return;
    }
    let server = serve(serve_args);
    let mut cmd = Command::new(&program);
    cmd.args(["-B", "3", "-m", "get"]).args(client_args).arg(format!("coaps://127.0.0.1:{}/hello", server.port));
    let out = run(cmd, LIMIT);
    let log = server.guard.stop();
    assert!(out.status.success(), "{}\n--- coaps serve stderr\n{log}", show(&out));
    // libcoap logs its warnings on stdout too: the payload is the last line.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().last(), Some("Hello, CoAPS!"), "{}\n--- coaps serve\n{log}", show(&out));
}

fn psk_serve() -> Vec<&'static str> {
    vec!["-u", "Client_identity", "-k", "secretPSK"]
}

fn cert_serve() -> Vec<String> {
    vec!["--cert".into(), data("server.crt"), "--key".into(), data("server.key"), "--client-ca".into(), data("ca.crt")]
}

fn cert_client() -> Vec<String> {
    vec!["-c".into(), data("client.crt"), "-j".into(), data("client.key"), "-C".into(), data("ca.crt")]
}

#[test]
fn coap_client_openssl_psk() {
    libcoap_client_fetches_hello("openssl", &psk_serve(), &["-u", "Client_identity", "-k", "secretPSK"]);
}

#[test]
fn coap_client_gnutls_psk() {
    libcoap_client_fetches_hello("gnutls", &psk_serve(), &["-u", "Client_identity", "-k", "secretPSK"]);
}

#[test]
fn coap_client_openssl_certificates() {
    let (s, c) = (cert_serve(), cert_client());
    libcoap_client_fetches_hello(
        "openssl",
        &s.iter().map(String::as_str).collect::<Vec<_>>(),
        &c.iter().map(String::as_str).collect::<Vec<_>>(),
    );
}

#[test]
fn coap_client_gnutls_certificates() {
    let (s, c) = (cert_serve(), cert_client());
    libcoap_client_fetches_hello(
        "gnutls",
        &s.iter().map(String::as_str).collect::<Vec<_>>(),
        &c.iter().map(String::as_str).collect::<Vec<_>>(),
    );
}

/// A wrong key is refused: the libcoap client fails, and fetches nothing.
#[test]
fn coap_client_openssl_wrong_psk_is_refused() {
    if !peer_available("coap-client-openssl") {
        return;
    }
    let server = serve(&psk_serve());
    let mut cmd = Command::new("coap-client-openssl");
    cmd.args(["-B", "3", "-m", "get", "-u", "Client_identity", "-k", "wrongPSK"])
        .arg(format!("coaps://127.0.0.1:{}/hello", server.port));
    let out = run(cmd, LIMIT);
    drop(server);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Hello"), "{}", show(&out));
}

/// `coaps get` against `coap-server-<backend>` (which serves its own greeting on `/`).
fn coaps_get_from_libcoap(backend: &str, server_args: &[&str], get_args: &[&str], host: &str) {
    let program = format!("coap-server-{backend}");
    if !peer_available(&program) {
        return;
    }
    let (guard, dtls_port) = libcoap_server(&program, server_args);
    let mut cmd = coaps();
    cmd.arg("get").arg(format!("coaps://{host}:{dtls_port}/")).args(get_args).args(["-v", "-B", "15"]);
    let out = run(cmd, LIMIT);
    let log = guard.stop();
    assert!(out.status.success(), "{}\n--- {program} stderr\n{log}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("This is a test server made with libcoap"), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("2.05 Content"), "{}", show(&out));

    // A missing resource is a 4.04 with exit status 4.
    let (guard, dtls_port) = libcoap_server(&program, server_args);
    let mut cmd = coaps();
    cmd.arg("get").arg(format!("coaps://{host}:{dtls_port}/no/such/resource")).args(get_args).args(["-B", "15"]);
    let out = run(cmd, LIMIT);
    drop(guard);
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("4.04 Not Found"), "{}", show(&out));
}

#[test]
fn coaps_get_from_coap_server_openssl_psk() {
    coaps_get_from_libcoap("openssl", &["-k", "secretPSK"], &["-u", "Client_identity", "-k", "secretPSK"], "127.0.0.1");
}

#[test]
fn coaps_get_from_coap_server_gnutls_psk() {
    coaps_get_from_libcoap("gnutls", &["-k", "secretPSK"], &["-u", "Client_identity", "-k", "secretPSK"], "127.0.0.1");
}

fn cert_server_args() -> Vec<String> {
    vec!["-c".into(), data("server.crt"), "-j".into(), data("server.key"), "-C".into(), data("ca.crt")]
}

fn cert_get_args() -> Vec<String> {
    vec!["--ca".into(), data("ca.crt"), "--cert".into(), data("client.crt"), "--key".into(), data("client.key")]
}

#[test]
fn coaps_get_from_coap_server_openssl_certificates() {
    let (s, g) = (cert_server_args(), cert_get_args());
    let s: Vec<&str> = s.iter().map(String::as_str).collect();
    let g: Vec<&str> = g.iter().map(String::as_str).collect();
    // Both names in the server certificate's subjectAltName: an IP address and a DNS name.
    coaps_get_from_libcoap("openssl", &s, &g, "127.0.0.1");
    coaps_get_from_libcoap("openssl", &s, &g, "localhost");
}

#[test]
fn coaps_get_from_coap_server_gnutls_certificates() {
    let (s, g) = (cert_server_args(), cert_get_args());
    let s: Vec<&str> = s.iter().map(String::as_str).collect();
    let g: Vec<&str> = g.iter().map(String::as_str).collect();
    coaps_get_from_libcoap("gnutls", &s, &g, "127.0.0.1");
    coaps_get_from_libcoap("gnutls", &s, &g, "localhost");
}

/// The server certificate checked against the wrong CA: a readable certificate error, exit 1.
#[test]
fn coaps_get_refuses_a_certificate_from_an_unknown_ca() {
    if !peer_available("coap-server-openssl") {
        return;
    }
    let s = cert_server_args();
    let (guard, dtls_port) = libcoap_server("coap-server-openssl", &s.iter().map(String::as_str).collect::<Vec<_>>());
    let mut cmd = coaps();
    // The client's own certificate as "CA": it did not issue the server's.
    cmd.arg("get").arg(format!("coaps://127.0.0.1:{dtls_port}/")).args(["--ca", &data("client.crt"), "-B", "15"]);
    let out = run(cmd, LIMIT);
    drop(guard);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate"), "{}", show(&out));
    assert!(out.stdout.is_empty(), "{}", show(&out));
}
