//! The wolfSSL 5.9.4 example programs as DTLS 1.2/1.3 peers, on top of the generic harness in
//! `tests/common/mod.rs`. wolfSSL is the only DTLS 1.3 implementation available offline here
//! (OpenSSL 3.0 and GnuTLS 3.7 stop at DTLS 1.2).
//!
//! The programs are not a Debian package: `bash scripts/ci-peers.sh` builds them (once, about
//! 1-2 minutes) into `target/peers/wolfssl-5.9.4` (or `$COAPS_PEERS_DIR/wolfssl-5.9.4`).
//! `COAPS_WOLFSSL_DIR=/path/to/wolfssl-5.9.4` points the tests at another build of the same
//! programs. Tests skip with a notice when no build is found, unless `COAPS_REQUIRE_PEERS=1`.
//!
//! What the examples do, read from `examples/{client,server}/*.c` and `wolfssl/test.h` of the
//! 5.9.4 source, and checked with wolfSSL on both ends (`tests/harness_wolfssl_selftest.rs`):
//! * Both must run from the wolfSSL source root (default files are `certs/...`); the server
//!   refuses to start without `certs/dh2048.pem` (the build script creates it).
//! * `-u [MTU]` selects DTLS, the optional value sets the MTU (the UDP payload size, not the IP
//!   MTU); `-v 3` is DTLS 1.2, `-v 4` DTLS 1.3 only. The server binds 127.0.0.1 and serves one
//!   connection (two with `-r`), then exits.
//! * The client sends `hello wolfssl!` (`resuming wolfssl!` on the resumed connection, and
//!   `A drop of info` as early data with `-0`) and prints the first record it gets back on a
//!   line of its own. The server prints `Client message: ...` (not reliably: its read loop can
//!   swallow the record when an ACK arrives right behind it), answers
//!   `I hear you fa shizzle!`, or echoes every record with `-e`. Both print `SSL version is
//!   DTLSv1.3`, `SSL cipher suite is <IANA name>`, `SSL curve name is SECP256R1` (the server
//!   omits the curve after a psk_ke handshake) and, when resumed, `SSL reused session`
//!   (server) / `reused session id` (client).
//! * Certificates: `-c CERT -k KEY -A CA`. The server requires a client certificate unless
//!   `-d`; the client loads one unless `-x`.
//! * PSK (`-s`) keys are hard-coded: 32 bytes `0123456789abcdef` x 4 in (D)TLS 1.3. The client's
//!   identity is `Client_identity` followed by the last 6 characters of the suite name
//!   (`Client_identitySHA256`), or plain `Client_identity` with `--openssl-psk`; the server
//!   accepts any identity that starts with `Client_identity`. `-K` restricts both to psk_ke.
//! * The debug build logs every step on stderr; a few of those lines are the only evidence of
//!   some events (HelloRetryRequest, cookie, KeyUpdate, ECDHE): see the `LOG_*` constants.

use crate::peers::{PEER_TIMEOUT, Peer, StdinMode, dtls_echo, free_local_addr, start_echo_client, temp_path};
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// The wolfSSL release whose examples the tests drive.
pub const WOLFSSL_VERSION: &str = "5.9.4";

/// What the wolfSSL client sends on its first connection.
pub const WOLF_HELLO: &str = "hello wolfssl!";
/// What the wolfSSL client sends on the resumed connection (`-r`).
pub const WOLF_RESUME_MSG: &str = "resuming wolfssl!";
/// What the wolfSSL client sends as 0-RTT data on the resumed connection (`-r -0`).
pub const WOLF_EARLY_MSG: &str = "A drop of info";
/// The wolfSSL server's reply (without `-e`).
pub const WOLF_REPLY: &str = "I hear you fa shizzle!";

/// Identity the wolfSSL server accepts (any identity starting with it).
pub const WOLF_PSK_IDENTITY: &str = "Client_identity";
/// Identity the wolfSSL client sends with a `*-SHA256` suite (its default PSK callback
/// appends the last 6 characters of the suite name).
pub const WOLF_CLIENT_PSK_IDENTITY: &str = "Client_identitySHA256";
/// The examples' hard-coded (D)TLS 1.3 PSK (`wolfssl/test.h`, `my_psk_*_tls13_cb`).
pub const WOLF_PSK13_HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Debug log (client): the client received a HelloRetryRequest.
pub const LOG_HRR_RECEIVED: &str = "HelloRetryRequest format";
/// Debug log (either side): a cookie extension arrived (client: in the HRR; server: echoed in
/// the second ClientHello).
pub const LOG_COOKIE_RECEIVED: &str = "Cookie extension received";
/// Debug log (client `-J`): the first ClientHello carries no key share.
pub const LOG_NO_KEY_SHARE: &str = "Sending no key share to trigger HRR";
/// Debug log: this side sent a KeyUpdate.
pub const LOG_KEY_UPDATE_SENT: &str = "Leaving SendTls13KeyUpdate, return 0";
/// Debug log: this side received a KeyUpdate.
pub const LOG_KEY_UPDATE_RECEIVED: &str = "Entering DoTls13KeyUpdate";
/// Debug log: this side computed an ECDHE shared secret.
pub const LOG_ECDHE: &str = "Entering EccSharedSecret";

/// A TLS 1.3 cipher suite with its name in each vocabulary.
#[derive(Clone, Copy, Debug)]
pub struct Suite13 {
    /// IANA name: what `dtls_echo --suites` takes and what wolfSSL prints.
    pub iana: &'static str,
    /// wolfSSL's name, for `-l`.
    pub wolfssl: &'static str,
}

/// TLS_CHACHA20_POLY1305_SHA256 (RFC 8446 §B.4).
pub const TLS13_CHACHA20: Suite13 =
    Suite13 { iana: "TLS_CHACHA20_POLY1305_SHA256", wolfssl: "TLS13-CHACHA20-POLY1305-SHA256" };
/// TLS_AES_128_GCM_SHA256 (RFC 8446 §B.4).
pub const TLS13_AES128_GCM: Suite13 = Suite13 { iana: "TLS_AES_128_GCM_SHA256", wolfssl: "TLS13-AES128-GCM-SHA256" };
/// TLS_AES_128_CCM_8_SHA256 (RFC 8446 §B.4).
pub const TLS13_AES128_CCM8: Suite13 =
    Suite13 { iana: "TLS_AES_128_CCM_8_SHA256", wolfssl: "TLS13-AES128-CCM-8-SHA256" };

impl Suite13 {
    /// `-l <name>` for the wolfSSL programs.
    pub fn wolf_args(&self) -> Vec<String> {
        vec!["-l".into(), self.wolfssl.into()]
    }

    /// The line both wolfSSL programs print once this suite was negotiated.
    pub fn wolf_line(&self) -> String {
        format!("SSL cipher suite is {}", self.iana)
    }
}

/// DTLS version for the wolfSSL programs (`-v`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtls {
    /// DTLS 1.2 only (`-v 3`).
    V12,
    /// DTLS 1.3 only (`-v 4`).
    V13,
}

impl Dtls {
    /// The line both wolfSSL programs print once this version was negotiated.
    pub fn wolf_line(self) -> &'static str {
        match self {
            Dtls::V12 => "SSL version is DTLSv1.2",
            Dtls::V13 => "SSL version is DTLSv1.3",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Dtls::V12 => "3",
            Dtls::V13 => "4",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Locating the build
// ---------------------------------------------------------------------------------------------

fn repo_root() -> PathBuf {
    crate::peers::workspace_root()
}

/// Where the tests look for the wolfSSL build, in order: `$COAPS_WOLFSSL_DIR`,
/// `$COAPS_PEERS_DIR/wolfssl-5.9.4`, `<repo>/target/peers/wolfssl-5.9.4` (the default of
/// `scripts/build-wolfssl.sh`).
pub fn wolfssl_candidates() -> Vec<PathBuf> {
    let dir = format!("wolfssl-{WOLFSSL_VERSION}");
    let mut v = Vec::new();
    if let Some(d) = std::env::var_os("COAPS_WOLFSSL_DIR") {
        v.push(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("COAPS_PEERS_DIR") {
        v.push(PathBuf::from(d).join(&dir));
    }
    v.push(repo_root().join("target").join("peers").join(&dir));
    v
}

fn is_built(root: &Path) -> bool {
    ["examples/client/client", "examples/server/server", "certs/dh2048.pem"].iter().all(|f| root.join(f).is_file())
}

/// The first candidate that holds both programs and `certs/dh2048.pem`.
pub fn wolfssl_dir() -> Option<PathBuf> {
    wolfssl_candidates().into_iter().find(|d| is_built(d))
}

/// The wolfSSL programs, if built. When they are not: panics if `COAPS_REQUIRE_PEERS=1` (CI),
/// otherwise prints a skip notice on stderr and returns `None` so the test can return early.
pub fn require_wolfssl() -> Option<Wolfssl> {
    if let Some(root) = wolfssl_dir() {
        return Some(Wolfssl { root });
    }
    let searched: Vec<String> = wolfssl_candidates().iter().map(|p| p.display().to_string()).collect();
    let how = "build them with `bash scripts/ci-peers.sh` (or scripts/build-wolfssl.sh DIR and COAPS_WOLFSSL_DIR=DIR)";
    if std::env::var("COAPS_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!(
            "the wolfSSL {WOLFSSL_VERSION} example programs are not built but COAPS_REQUIRE_PEERS=1: {how}; \
             searched {searched:?}"
        );
    }
    eprintln!("skipping: wolfSSL {WOLFSSL_VERSION} examples not built ({how}); searched {searched:?}");
    None
}

// ---------------------------------------------------------------------------------------------
// Certificates: the P-256 test PKI checked into the repository
// ---------------------------------------------------------------------------------------------

/// Absolute path of a file of the static test PKI in `crates/coaps-dtls/tests/data/` (a P-256
/// CA `ca.crt`, and `server.crt`/`server.key`, `client.crt`/`client.key` issued by it for
/// `localhost` and `127.0.0.1`; keys are PKCS#8 PEM). Static files, so no `openssl` is needed.
pub fn data_cert(name: &str) -> String {
    let p = repo_root().join("crates/coaps-dtls/tests/data").join(name);
    assert!(p.is_file(), "no such test certificate file: {}", p.display());
    p.to_string_lossy().into_owned()
}

/// wolfSSL server certificate options. It always gets `-A` (its default CA file does not exist
/// in the build); without `require_client_cert` it also gets `-d` (no CertificateRequest).
pub fn wolf_server_cert_args(require_client_cert: bool) -> Vec<String> {
    let mut v = vec![
        "-c".into(),
        data_cert("server.crt"),
        "-k".into(),
        data_cert("server.key"),
        "-A".into(),
        data_cert("ca.crt"),
    ];
    if !require_client_cert {
        v.push("-d".into());
    }
    v
}

/// wolfSSL client certificate options: trust the test CA; present the client certificate if
/// `with_client_cert`, else `-x` (its default certificate files do not exist in the build).
pub fn wolf_client_cert_args(with_client_cert: bool) -> Vec<String> {
    let mut v = vec!["-A".into(), data_cert("ca.crt")];
    if with_client_cert {
        v.extend(["-c".into(), data_cert("client.crt"), "-k".into(), data_cert("client.key")]);
    } else {
        v.push("-x".into());
    }
    v
}

/// `dtls_echo server` certificate options (the static test PKI).
pub fn echo_server_cert_args() -> Vec<String> {
    vec!["--cert".into(), data_cert("server.crt"), "--key".into(), data_cert("server.key")]
}

/// `dtls_echo client` options to verify the server certificate for `localhost`.
pub fn echo_client_cert_args() -> Vec<String> {
    vec!["--ca".into(), data_cert("ca.crt"), "--server-name".into(), "localhost".into()]
}

/// `dtls_echo --psk` value with the wolfSSL test key and `identity`.
pub fn echo_psk_arg(identity: &str) -> String {
    format!("{identity}:{WOLF_PSK13_HEX}")
}

// ---------------------------------------------------------------------------------------------
// Running the programs
// ---------------------------------------------------------------------------------------------

/// A located wolfSSL build.
#[derive(Clone, Debug)]
pub struct Wolfssl {
    root: PathBuf,
}

impl Wolfssl {
    /// The wolfSSL source root (the programs' working directory).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn command(&self, program: &str, version: Dtls, mtu: Option<u16>) -> Command {
        let mut cmd = Command::new(self.root.join("examples").join(program).join(program));
        cmd.current_dir(&self.root).arg("-u");
        if let Some(m) = mtu {
            // `-u` takes an optional value: the next argument if it does not start with `-`.
            cmd.arg(m.to_string());
        }
        cmd.args(["-v", version.flag()]);
        cmd
    }

    /// Starts `examples/server/server -u [MTU] -v 3|4 -p PORT -R READYFILE <args>` on a fresh
    /// port and waits until it has bound it. Returns the peer and its address.
    pub fn server<S: AsRef<OsStr>>(&self, version: Dtls, mtu: Option<u16>, args: &[S]) -> (Peer, SocketAddr) {
        let addr = free_local_addr();
        let ready = temp_path("wolfssl-server-ready");
        let mut cmd = self.command("server", version, mtu);
        cmd.arg("-p").arg(addr.port().to_string()).arg("-R").arg(&ready).args(args);
        let mut server = Peer::from_command("wolfSSL server", cmd, StdinMode::Null);
        // The server writes its port to the ready file right after bind().
        let deadline = Instant::now() + PEER_TIMEOUT;
        while !std::fs::read_to_string(&ready).is_ok_and(|s| !s.trim().is_empty()) {
            if !server.is_running() || Instant::now() >= deadline {
                server.wait_exit(Duration::from_millis(500));
                panic!("wolfSSL server did not start\n{}", server.dump());
            }
            thread::sleep(Duration::from_millis(10));
        }
        (server, addr)
    }

    /// Starts `examples/client/client -u [MTU] -v 3|4 -h IP -p PORT <args>`.
    pub fn client<S: AsRef<OsStr>>(&self, version: Dtls, mtu: Option<u16>, connect: SocketAddr, args: &[S]) -> Peer {
        let mut cmd = self.command("client", version, mtu);
        cmd.arg("-h").arg(connect.ip().to_string()).arg("-p").arg(connect.port().to_string()).args(args);
        Peer::from_command("wolfSSL client", cmd, StdinMode::Null)
    }
}

// ---------------------------------------------------------------------------------------------
// dtls_echo with the DTLS 1.3 options
// ---------------------------------------------------------------------------------------------

/// The DTLS 1.3 options of `dtls_echo` these tests use, for failure messages.
pub const ECHO_13_FLAGS: &str = "--dtls 1.2|1.3|auto, --psk in 1.3, --accept-early-data (server), \
                                 --early-data TEXT with --resume (client)";

/// Panics with a clear message if `dtls_echo` exited with its usage status (2): the DTLS 1.3
/// options are not implemented (yet).
pub fn fail_if_usage_error(peer: &mut Peer, status: Option<ExitStatus>) {
    if status.and_then(|s| s.code()) == Some(2) {
        panic!(
            "{} rejected its command line: examples/dtls_echo does not implement the DTLS 1.3 options \
             yet ({ECHO_13_FLAGS})\n{}",
            peer.name(),
            peer.dump()
        );
    }
}

/// Like `common::start_echo_server`, with a clear message when `dtls_echo` does not know the
/// DTLS 1.3 options yet.
pub fn start_echo_server13<S: AsRef<OsStr>>(args: &[S]) -> (Peer, SocketAddr) {
    let addr = free_local_addr();
    let mut cmd = Command::new(dtls_echo());
    cmd.arg("server").arg("--listen").arg(addr.to_string()).args(args);
    let mut server = Peer::from_command("dtls_echo server", cmd, StdinMode::Null);
    if !server.wait_for_output("listening on", PEER_TIMEOUT) {
        let status = server.wait_exit(Duration::from_secs(1));
        fail_if_usage_error(&mut server, status);
        panic!("dtls_echo server did not start listening\n{}", server.dump());
    }
    (server, addr)
}

/// Runs `dtls_echo client --connect ADDR <args>` to completion and asserts exit 0 (with a clear
/// message for a usage error).
pub fn run_echo_client<S: AsRef<OsStr>>(connect: SocketAddr, args: &[S]) -> Peer {
    let mut client = start_echo_client(connect, args);
    let status = client.wait_exit(PEER_TIMEOUT);
    fail_if_usage_error(&mut client, status);
    match status {
        Some(s) if s.success() => client,
        Some(s) => panic!("dtls_echo client exited with {s}\n{}", client.dump()),
        None => panic!("dtls_echo client did not finish within {PEER_TIMEOUT:?}\n{}", client.dump()),
    }
}

/// Runs `dtls_echo client` and asserts that it failed (non-zero exit other than a usage error).
pub fn run_echo_client_expect_failure<S: AsRef<OsStr>>(connect: SocketAddr, args: &[S]) -> Peer {
    let mut client = start_echo_client(connect, args);
    let status = client.wait_exit(PEER_TIMEOUT);
    fail_if_usage_error(&mut client, status);
    match status {
        Some(s) if !s.success() => client,
        Some(s) => panic!("dtls_echo client unexpectedly succeeded ({s})\n{}", client.dump()),
        None => panic!("dtls_echo client did not finish within {PEER_TIMEOUT:?}\n{}", client.dump()),
    }
}

/// Waits for a wolfSSL program to exit with status 0; panics with its output otherwise.
pub fn expect_wolf_success(peer: &mut Peer) {
    peer.expect_success(PEER_TIMEOUT);
}

/// Asserts that `peer`'s stdout contains `text`, naming `what` in the failure message.
pub fn assert_stdout(peer: &Peer, text: &str, what: &str) {
    assert!(peer.stdout().contains(text), "{what}: expected `{text}` on {} stdout\n{}", peer.name(), peer.dump());
}

/// Asserts that `peer`'s stderr (the wolfSSL debug log) contains `text`.
pub fn assert_log(peer: &Peer, text: &str, what: &str) {
    assert!(peer.stderr().contains(text), "{what}: expected `{text}` in {} stderr\n{}", peer.name(), peer.dump());
}

/// Asserts that `peer`'s stderr does not contain `text`.
pub fn assert_no_log(peer: &Peer, text: &str, what: &str) {
    assert!(!peer.stderr().contains(text), "{what}: unexpected `{text}` in {} stderr\n{}", peer.name(), peer.dump());
}
