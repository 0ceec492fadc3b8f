//! Shared harness for the interop tests against real DTLS peers (OpenSSL, GnuTLS, ...).
//!
//! Everything here is `std` only. Every wait is bounded, so a hung peer fails its test instead of
//! hanging CI, and every child process is killed by PID when its [`Peer`] is dropped (also when
//! the test panics, in which case the peer's output is printed to help debugging).
//!
//! Peers that are not installed make a test return early ("skipping ...") unless
//! `COAPS_REQUIRE_PEERS=1`, which CI sets so that a missing package is an error.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Default bound for every wait on a peer (handshake, output, exit).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(20);

/// Test PSK identity (the one the OpenSSL/GnuTLS/libcoap examples use).
pub const PSK_IDENTITY: &str = "Client_identity";
/// Test PSK, hex.
pub const PSK_HEX: &str = "0102030405060708090a0b0c0d0e0f10";

/// `--psk` argument for `dtls_echo`: `IDENTITY:HEXKEY`.
pub fn psk_arg() -> String {
    format!("{PSK_IDENTITY}:{PSK_HEX}")
}

// ---------------------------------------------------------------------------------------------
// Cipher suites
// ---------------------------------------------------------------------------------------------

/// How a suite authenticates, which decides the peer's command-line options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Plain PSK (RFC 4279).
    Psk,
    /// ECDHE-PSK (RFC 5489).
    EcdhePsk,
    /// ECDHE with an ECDSA P-256 certificate (RFC 8422).
    EcdheEcdsa,
}

/// One of the cipher suites `dtls_echo` supports, with its name in each peer's vocabulary.
#[derive(Clone, Copy, Debug)]
pub struct Suite {
    /// IANA code point.
    pub code: u16,
    /// IANA name, as `dtls_echo --suites` takes it.
    pub iana: &'static str,
    /// OpenSSL name, for `-cipher`.
    pub openssl: &'static str,
    /// GnuTLS priority tokens (cipher and key exchange), appended to [`GNUTLS_BASE_PRIORITY`].
    pub gnutls: &'static str,
    /// Authentication kind.
    pub auth: Auth,
}

impl Suite {
    /// Full GnuTLS priority string restricting the handshake to this suite.
    pub fn gnutls_priority(&self) -> String {
        format!("{GNUTLS_BASE_PRIORITY}:{}", self.gnutls)
    }
}

/// DTLS 1.2 only, null compression, P-256 only, AEAD only (see peers.md, GnuTLS section).
pub const GNUTLS_BASE_PRIORITY: &str =
    "NONE:+VERS-DTLS1.2:+COMP-NULL:+SIGN-ALL:+GROUP-SECP256R1:+AEAD:+SHA256:+CTYPE-X509";

/// TLS_PSK_WITH_CHACHA20_POLY1305_SHA256 (RFC 7905).
pub const PSK_CHACHA20: Suite = Suite {
    code: 0xccab,
    iana: "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256",
    openssl: "PSK-CHACHA20-POLY1305",
    gnutls: "+CHACHA20-POLY1305:+PSK",
    auth: Auth::Psk,
};
/// TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256 (RFC 7905).
pub const ECDHE_PSK_CHACHA20: Suite = Suite {
    code: 0xccac,
    iana: "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
    openssl: "ECDHE-PSK-CHACHA20-POLY1305",
    gnutls: "+CHACHA20-POLY1305:+ECDHE-PSK",
    auth: Auth::EcdhePsk,
};
/// TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 (RFC 7905).
pub const ECDSA_CHACHA20: Suite = Suite {
    code: 0xcca9,
    iana: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    openssl: "ECDHE-ECDSA-CHACHA20-POLY1305",
    gnutls: "+CHACHA20-POLY1305:+ECDHE-ECDSA",
    auth: Auth::EcdheEcdsa,
};
/// TLS_PSK_WITH_AES_128_CCM_8 (RFC 6655).
pub const PSK_CCM8: Suite = Suite {
    code: 0xc0a8,
    iana: "TLS_PSK_WITH_AES_128_CCM_8",
    openssl: "PSK-AES128-CCM8",
    gnutls: "+AES-128-CCM-8:+PSK",
    auth: Auth::Psk,
};
/// TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 (RFC 7251).
pub const ECDSA_CCM8: Suite = Suite {
    code: 0xc0ae,
    iana: "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8",
    openssl: "ECDHE-ECDSA-AES128-CCM8",
    gnutls: "+AES-128-CCM-8:+ECDHE-ECDSA",
    auth: Auth::EcdheEcdsa,
};
/// TLS_PSK_WITH_AES_128_GCM_SHA256 (RFC 5487).
pub const PSK_GCM: Suite = Suite {
    code: 0x00a8,
    iana: "TLS_PSK_WITH_AES_128_GCM_SHA256",
    openssl: "PSK-AES128-GCM-SHA256",
    gnutls: "+AES-128-GCM:+PSK",
    auth: Auth::Psk,
};
/// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (RFC 5289).
pub const ECDSA_GCM: Suite = Suite {
    code: 0xc02b,
    iana: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    openssl: "ECDHE-ECDSA-AES128-GCM-SHA256",
    gnutls: "+AES-128-GCM:+ECDHE-ECDSA",
    auth: Auth::EcdheEcdsa,
};

/// All suites `dtls_echo` supports.
pub const ALL_SUITES: [Suite; 7] =
    [PSK_CHACHA20, ECDHE_PSK_CHACHA20, ECDSA_CHACHA20, PSK_CCM8, ECDSA_CCM8, PSK_GCM, ECDSA_GCM];

/// A message that no peer treats as a command: OpenSSL `s_server`/`s_client` act on lines
/// starting with `Q`, `q`, `R`, `r`, `k`, `K`, ... when not quiet.
pub fn message_for(tag: &str) -> String {
    format!("hello coaps interop {tag}")
}

// ---------------------------------------------------------------------------------------------
// Peers on PATH
// ---------------------------------------------------------------------------------------------

/// Debian package that provides a peer program.
pub fn package_for(tool: &str) -> &'static str {
    match tool {
        "openssl" => "openssl",
        t if t.starts_with("gnutls-") => "gnutls-bin",
        t if t.starts_with("coap-") => "libcoap3-bin",
        "redis-server" => "redis-server",
        _ => "(unknown package)",
    }
}

/// Full path of `tool` if it is an executable on `PATH`.
pub fn find_on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(tool)).find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

/// Whether the test may use `tool`. When it is missing: panics if `COAPS_REQUIRE_PEERS=1` (CI),
/// otherwise prints a skip notice on stderr and returns `false` so the test can return early.
pub fn require_peer(tool: &str) -> bool {
    if find_on_path(tool).is_some() {
        return true;
    }
    let package = package_for(tool);
    if std::env::var("COAPS_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{tool} is not installed but COAPS_REQUIRE_PEERS=1: apt-get install {package}");
    }
    eprintln!("skipping: {tool} not installed (apt-get install {package})");
    false
}

/// [`require_peer`] for several tools; true only if all are available.
pub fn require_peers(tools: &[&str]) -> bool {
    // Check every tool (no short circuit) so each missing one is reported.
    let available: Vec<bool> = tools.iter().map(|t| require_peer(t)).collect();
    available.into_iter().all(|ok| ok)
}

// ---------------------------------------------------------------------------------------------
// Ports and temporary files
// ---------------------------------------------------------------------------------------------

fn handed_out_ports() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(Default::default)
}

/// A UDP port that was free a moment ago on every IPv4 address (and on IPv6 if the host has
/// it), and that this process has not handed out before, so parallel tests do not collide.
pub fn free_udp_port() -> u16 {
    let mut used = handed_out_ports().lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        // The wildcard bind makes the kernel pick a port unused on 127.0.0.1 *and* 0.0.0.0
        // (gnutls-serv binds the wildcard addresses).
        let port = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            .and_then(|s| s.local_addr())
            .expect("bind an ephemeral UDP port")
            .port();
        if used.contains(&port) {
            continue;
        }
        // gnutls-serv also binds [::]:port; skip ports taken there. Hosts without IPv6 fail
        // with another error, which is fine.
        if let Err(e) = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port))
            && e.kind() == io::ErrorKind::AddrInUse
        {
            continue;
        }
        used.insert(port);
        return port;
    }
    panic!("no free UDP port found after 1000 attempts");
}

/// `127.0.0.1:port` with a fresh port from [`free_udp_port`].
pub fn free_local_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_udp_port()))
}

/// Directory for this test process's temporary files (inside the Cargo target dir).
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = target_dir().join("tmp").join(format!("coaps-interop-{}", std::process::id()));
        // A leftover from an earlier process with the same PID is stale.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    })
}

/// A fresh, not yet existing file path in [`scratch_dir`], e.g. for `-sess_out`.
pub fn temp_path(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    scratch_dir().join(format!("{n}-{name}"))
}

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

/// The workspace root (this crate lives in `crates/coaps-test-support`), whichever package's
/// tests run: the scripts, the examples and the default target directory are found from it.
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().and_then(Path::parent).map_or_else(|| here.to_path_buf(), Path::to_path_buf)
}

/// The Cargo target directory: `$CARGO_TARGET_DIR` (relative to the workspace root) or
/// `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    let root = workspace_root();
    // `join` keeps an absolute path as is.
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |t| root.join(t))
}

fn manifest_dir() -> PathBuf {
    workspace_root()
}

/// Directory with the test PKI, generated once per test process by `scripts/gen-certs.sh` and
/// `scripts/gen-extra-certs.sh` (needs the `openssl` program). Files (keys are PKCS#8 PEM):
///
/// * `ca.crt`, `ca.key`: the trusted P-256 test CA;
/// * `server.crt`/`server.key`, `client.crt`/`client.key`: issued by it, SAN `DNS:localhost,
///   IP:127.0.0.1`, EKU serverAuth / clientAuth;
/// * `wrong-host.crt`/`.key`: issued by the trusted CA, SAN `DNS:wrong.example` only;
/// * `other-ca.crt`/`.key`: an unrelated CA, and `other-server.crt`/`.key` issued by it for
///   `localhost`/`127.0.0.1`.
pub fn certs() -> &'static Path {
    static CERTS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = CERTS.get_or_init(|| {
        let dir = scratch_dir().join("certs");
        let scripts = manifest_dir().join("scripts");
        for script in ["gen-certs.sh", "gen-extra-certs.sh"] {
            let out = Command::new("bash")
                .arg(scripts.join(script))
                .arg(&dir)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("running bash {script}: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "{script} failed ({}):\n{}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        Ok(dir)
    });
    match result {
        Ok(dir) => dir,
        Err(e) => panic!("generating test certificates: {e}"),
    }
}

/// Path of one file in [`certs`], as a `String` for command lines.
pub fn cert(name: &str) -> String {
    let p = certs().join(name);
    assert!(p.exists(), "no such test certificate file: {}", p.display());
    p.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------------------------
// The dtls_echo example
// ---------------------------------------------------------------------------------------------

/// Path of the release build of `examples/dtls_echo.rs`, built once per test process with
/// `cargo build --release --example dtls_echo`. Panics (in every caller) if the build fails.
///
/// `COAPS_DTLS_ECHO=/path/to/program` skips the build and uses that program instead (any
/// implementation of the same command line, e.g. to check the tests themselves).
pub fn dtls_echo() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BIN.get_or_init(|| match std::env::var_os("COAPS_DTLS_ECHO") {
        Some(p) => Ok(PathBuf::from(p)),
        None => build_dtls_echo(),
    });
    match built {
        Ok(p) => p.clone(),
        Err(e) => panic!("building the dtls_echo example failed:\n{e}"),
    }
}

fn build_dtls_echo() -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let manifest = manifest_dir();
    let out = Command::new(cargo)
        .current_dir(&manifest)
        .args(["build", "--release", "--example", "dtls_echo"])
        .arg("--manifest-path")
        .arg(manifest.join("Cargo.toml"))
        .args(["--message-format", "json-render-diagnostics"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "cargo build --release --example dtls_echo: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // Cargo reports where it put the executable; this honours CARGO_TARGET_DIR and
    // `build.target-dir` from config files alike.
    let reported = stdout
        .lines()
        .filter(|l| l.contains("\"compiler-artifact\"") && l.contains("\"dtls_echo\""))
        .find_map(|l| json_string_field(l, "executable"))
        .map(PathBuf::from);
    let path = reported.unwrap_or_else(|| {
        target_dir().join("release").join("examples").join(format!("dtls_echo{}", std::env::consts::EXE_SUFFIX))
    });
    if path.is_file() { Ok(path) } else { Err(format!("built, but {} does not exist", path.display())) }
}

/// The string value of `"key":"..."` in one line of JSON (enough for Cargo's messages).
fn json_string_field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut out = String::new();
    let mut chars = line[start..].chars();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                c => out.push(c),
            },
            c => out.push(c),
        }
    }
}

/// Starts `dtls_echo server --listen 127.0.0.1:PORT <args>` on a fresh port and waits until it
/// prints `listening on`. Returns the peer and the address it listens on.
pub fn start_echo_server<S: AsRef<OsStr>>(args: &[S]) -> (Peer, SocketAddr) {
    let addr = free_local_addr();
    let mut cmd = Command::new(dtls_echo());
    cmd.arg("server").arg("--listen").arg(addr.to_string()).args(args);
    let server = Peer::from_command("dtls_echo server", cmd, StdinMode::Null);
    if !server.wait_for_output("listening on", PEER_TIMEOUT) {
        panic!("dtls_echo server did not start listening\n{}", server.dump());
    }
    (server, addr)
}

/// Starts `dtls_echo client --connect ADDR <args>` (the caller passes `--message`).
pub fn start_echo_client<S: AsRef<OsStr>>(connect: SocketAddr, args: &[S]) -> Peer {
    let mut cmd = Command::new(dtls_echo());
    // The OpenSSL and GnuTLS peers speak DTLS 1.2; dtls_echo's client defaults to 1.3.
    let args: Vec<&OsStr> = args.iter().map(|a| a.as_ref()).collect();
    cmd.arg("client").arg("--connect").arg(connect.to_string());
    if !args.iter().any(|a| *a == OsStr::new("--dtls")) {
        cmd.args(["--dtls", "1.2"]);
    }
    cmd.args(args);
    Peer::from_command("dtls_echo client", cmd, StdinMode::Null)
}

// ---------------------------------------------------------------------------------------------
// Peer processes
// ---------------------------------------------------------------------------------------------

/// What the child gets as stdin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StdinMode {
    /// `/dev/null` (EOF at once).
    Null,
    /// A pipe held open until [`Peer::close_stdin`] or drop; write with [`Peer::write_stdin`].
    /// OpenSSL `s_server` and `s_client` end the connection at stdin EOF.
    Piped,
}

#[derive(Default)]
struct Captured {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    open_pipes: u8,
}

#[derive(Default)]
struct Shared {
    captured: Mutex<Captured>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        self.captured.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A child process (a DTLS peer) whose stdout and stderr are collected in the background.
/// Dropping it kills the process by PID and reaps it.
pub struct Peer {
    name: String,
    command_line: String,
    child: Child,
    stdin: Option<ChildStdin>,
    shared: Arc<Shared>,
    status: Option<ExitStatus>,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// Spawns `program args...`.
    pub fn spawn<P, I, S>(name: &str, program: P, args: I, stdin: StdinMode) -> Peer
    where
        P: AsRef<OsStr>,
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(program);
        cmd.args(args);
        Peer::from_command(name, cmd, stdin)
    }

    /// Spawns a prepared command (for extra environment variables, working directory, ...).
    /// Stdin/stdout/stderr are overridden.
    pub fn from_command(name: &str, mut cmd: Command, stdin: StdinMode) -> Peer {
        let command_line = format!(
            "{} {}",
            cmd.get_program().to_string_lossy(),
            cmd.get_args().map(|a| shell_quote(&a.to_string_lossy())).collect::<Vec<_>>().join(" ")
        );
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(match stdin {
            StdinMode::Null => Stdio::null(),
            StdinMode::Piped => Stdio::piped(),
        });
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {name} ({command_line}): {e}"));
        let shared = Arc::new(Shared::default());
        shared.lock().open_pipes = 2;
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        collect(out, Arc::clone(&shared), false);
        collect(err, Arc::clone(&shared), true);
        Peer { name: name.to_owned(), command_line, stdin: child.stdin.take(), child, shared, status: None }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The peer's name, as given to `spawn`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Everything the peer wrote on stdout so far (lossy UTF-8).
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.shared.lock().stdout).into_owned()
    }

    /// Everything the peer wrote on stderr so far (lossy UTF-8).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.shared.lock().stderr).into_owned()
    }

    /// Stdout followed by stderr.
    pub fn output(&self) -> String {
        let c = self.shared.lock();
        let mut s = String::from_utf8_lossy(&c.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&c.stderr));
        s
    }

    /// Number of (non-overlapping) occurrences of `pattern` on stdout.
    pub fn stdout_count(&self, pattern: &str) -> usize {
        self.stdout().matches(pattern).count()
    }

    /// Waits until `pattern` appears on stdout or stderr. False on timeout, or as soon as the
    /// process has closed both pipes without printing it (it will not come any more).
    pub fn wait_for_output(&self, pattern: &str, timeout: Duration) -> bool {
        self.wait_until(timeout, |c| contains(&c.stdout, pattern) || contains(&c.stderr, pattern))
    }

    /// Waits until `pattern` appears at least `n` times on stdout (see [`Self::wait_for_output`]).
    pub fn wait_for_stdout_count(&self, pattern: &str, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |c| String::from_utf8_lossy(&c.stdout).matches(pattern).count() >= n)
    }

    fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&Captured) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut c = self.shared.lock();
        loop {
            if done(&c) {
                return true;
            }
            if c.open_pipes == 0 {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            c = self.shared.changed.wait_timeout(c, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Exit status if the process has exited (non-blocking).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running. After an
    /// exit it also waits (briefly) for the output pipes to drain, so [`Self::output`] is complete.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                // A grandchild could hold the pipes open; do not wait for it forever.
                self.wait_until(Duration::from_secs(2), |_| false);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for exit with status 0 within `timeout`; panics with the peer's output otherwise.
    pub fn expect_success(&mut self, timeout: Duration) {
        match self.wait_exit(timeout) {
            Some(s) if s.success() => {}
            Some(s) => panic!("{} exited with {s}\n{}", self.name, self.dump()),
            None => panic!("{} did not exit within {timeout:?}\n{}", self.name, self.dump()),
        }
    }

    /// Waits for a non-zero exit within `timeout`; panics with the peer's output otherwise.
    pub fn expect_failure(&mut self, timeout: Duration) -> ExitStatus {
        match self.wait_exit(timeout) {
            Some(s) if !s.success() => s,
            Some(s) => panic!("{} unexpectedly succeeded ({s})\n{}", self.name, self.dump()),
            None => panic!("{} did not exit within {timeout:?}\n{}", self.name, self.dump()),
        }
    }

    /// Writes to the child's stdin (only with [`StdinMode::Piped`]) and flushes.
    pub fn write_stdin(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "stdin is not piped or was closed"))?;
        stdin.write_all(bytes)?;
        stdin.flush()
    }

    /// Closes the child's stdin (EOF).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Kills the process (by PID) and reaps it. Idempotent.
    pub fn kill(&mut self) {
        self.stdin = None;
        if self.try_status().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// Command line, status and captured output, for failure messages.
    pub fn dump(&self) -> String {
        let c = self.shared.lock();
        format!(
            "==== {} (pid {}, {}) ====\n$ {}\n---- stdout ----\n{}\n---- stderr ----\n{}\n==== end {} ====",
            self.name,
            self.child.id(),
            match self.status {
                Some(s) => s.to_string(),
                None => "running".to_owned(),
            },
            self.command_line,
            String::from_utf8_lossy(&c.stdout),
            String::from_utf8_lossy(&c.stderr),
            self.name,
        )
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let was_running = self.try_status().is_none();
        self.kill();
        if thread::panicking() {
            eprintln!("{}{}", if was_running { "(killed by the harness)\n" } else { "" }, self.dump());
        }
    }
}

fn collect<R: Read + Send + 'static>(mut pipe: R, shared: Arc<Shared>, is_stderr: bool) {
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) | Err(_) => 0,
                Ok(n) => n,
            };
            let mut c = shared.lock();
            if n == 0 {
                c.open_pipes -= 1;
                shared.changed.notify_all();
                return;
            }
            if is_stderr {
                c.stderr.extend_from_slice(&buf[..n]);
            } else {
                c.stdout.extend_from_slice(&buf[..n]);
            }
            shared.changed.notify_all();
        }
    });
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=,+@%".contains(&b)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Plays echo server through a non-echoing peer (OpenSSL `s_server` prints what it receives and
/// sends what it reads on stdin): each time `server` has printed `text` once more on stdout,
/// writes `text` to its stdin. Runs until `client` exits or `timeout`; returns the client's exit
/// status (`None` on timeout).
pub fn echo_by_hand(server: &mut Peer, client: &mut Peer, text: &str, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut answered = 0;
    loop {
        if let Some(status) = client.try_status() {
            client.wait_exit(Duration::ZERO);
            return Some(status);
        }
        let seen = server.stdout_count(text);
        if seen > answered {
            // If s_server is gone the write fails and the client's result tells the story.
            let _ = server.write_stdin(text.as_bytes());
            answered = seen;
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// UDP relay (to observe datagram sizes)
// ---------------------------------------------------------------------------------------------

/// Sizes of the datagrams a [`UdpRelay`] forwarded, in order.
#[derive(Clone, Debug, Default)]
pub struct RelayStats {
    /// UDP payload sizes from clients to the server.
    pub to_server: Vec<usize>,
    /// UDP payload sizes from the server to clients.
    pub to_client: Vec<usize>,
}

/// A transparent loopback UDP relay: clients talk to [`UdpRelay::addr`], the relay forwards to
/// the upstream server from one socket per client (so the server still sees distinct peers),
/// and records every datagram size. Stops on drop.
pub struct UdpRelay {
    addr: SocketAddr,
    stats: Arc<Mutex<RelayStats>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for UdpRelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpRelay").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl UdpRelay {
    /// Starts relaying to `upstream`.
    pub fn start(upstream: SocketAddr) -> UdpRelay {
        let front = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind relay socket");
        front.set_nonblocking(true).expect("nonblocking");
        let addr = front.local_addr().expect("relay addr");
        let stats = Arc::new(Mutex::new(RelayStats::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (stats2, stop2) = (Arc::clone(&stats), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            let mut backs: HashMap<SocketAddr, UdpSocket> = HashMap::new();
            let mut buf = vec![0u8; 65536];
            while !stop2.load(Ordering::Relaxed) {
                let mut idle = true;
                while let Ok((n, from)) = front.recv_from(&mut buf) {
                    idle = false;
                    let back = backs.entry(from).or_insert_with(|| {
                        let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind relay");
                        s.connect(upstream).expect("connect relay");
                        s.set_nonblocking(true).expect("nonblocking");
                        s
                    });
                    stats2.lock().unwrap_or_else(|e| e.into_inner()).to_server.push(n);
                    let _ = back.send(&buf[..n]);
                }
                for (client, back) in &backs {
                    while let Ok(n) = back.recv(&mut buf) {
                        idle = false;
                        stats2.lock().unwrap_or_else(|e| e.into_inner()).to_client.push(n);
                        let _ = front.send_to(&buf[..n], client);
                    }
                }
                if idle {
                    thread::sleep(Duration::from_millis(1));
                }
            }
        });
        UdpRelay { addr, stats, stop, thread: Some(thread) }
    }

    /// Address clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of the datagram sizes seen so far.
    pub fn stats(&self) -> RelayStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// dtls_echo arguments
// ---------------------------------------------------------------------------------------------

/// `dtls_echo client` credentials for `suite`: the test PSK, or the test CA with server name
/// `localhost`; plus `--suites`.
pub fn echo_client_args(suite: &Suite) -> Vec<String> {
    let mut args = match suite.auth {
        Auth::Psk | Auth::EcdhePsk => vec!["--psk".to_owned(), psk_arg()],
        Auth::EcdheEcdsa => vec!["--ca".to_owned(), cert("ca.crt"), "--server-name".to_owned(), "localhost".to_owned()],
    };
    args.extend(["--suites".to_owned(), suite.iana.to_owned()]);
    args
}

/// `dtls_echo server` credentials for `suite`: the test PSK, or the test server certificate;
/// plus `--suites`.
pub fn echo_server_args(suite: &Suite) -> Vec<String> {
    let mut args = match suite.auth {
        Auth::Psk | Auth::EcdhePsk => vec!["--psk".to_owned(), psk_arg()],
        Auth::EcdheEcdsa => vec!["--cert".to_owned(), cert("server.crt"), "--key".to_owned(), cert("server.key")],
    };
    args.extend(["--suites".to_owned(), suite.iana.to_owned()]);
    args
}

/// Owned command-line arguments from string slices.
pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// Bound for negative tests: a peer that was refused should give up well within this.
pub const REFUSAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Asserts that a third-party client did not get through: it must not print `success_marker`
/// (its "handshake done" line); if it exits within [`REFUSAL_TIMEOUT`] the status must be a
/// failure. (A server may refuse by alert, which ends the peer at once, or by silence.)
pub fn expect_refused(client: &mut Peer, success_marker: &str) {
    let status = client.wait_exit(REFUSAL_TIMEOUT);
    assert!(
        !client.output().contains(success_marker),
        "{} completed the handshake but should have been refused\n{}",
        client.name(),
        client.dump()
    );
    if let Some(s) = status {
        assert!(!s.success(), "{} exited with success\n{}", client.name(), client.dump());
    }
}

/// Asserts that an OpenSSL client was refused by a fatal alert from our server. OpenSSL's
/// summary still names the cipher when the refusal comes after the client's last flight (a
/// client certificate refused at the end of the handshake), so the success marker cannot
/// tell; the alert and the exit status can.
pub fn expect_refused_by_alert(client: &mut Peer) {
    let status = client.wait_exit(REFUSAL_TIMEOUT);
    assert!(
        status.is_some_and(|s| !s.success()),
        "{} was not refused (still running or exited with success)\n{}",
        client.name(),
        client.dump()
    );
    assert!(
        client.output().contains("SSL alert number"),
        "{} failed without receiving an alert from our server\n{}",
        client.name(),
        client.dump()
    );
}

/// Asserts that `dtls_echo client` failed (non-zero exit within [`PEER_TIMEOUT`]) and that its
/// stderr mentions one of `words` (case-insensitive), so it failed for the expected reason.
pub fn expect_client_error(client: &mut Peer, words: &[&str]) {
    client.expect_failure(PEER_TIMEOUT);
    let stderr = client.stderr().to_lowercase();
    assert!(
        words.iter().any(|w| stderr.contains(&w.to_lowercase())),
        "dtls_echo client failed, but its stderr mentions none of {words:?}\n{}",
        client.dump()
    );
}
