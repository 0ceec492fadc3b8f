//! Session resumption end to end with the `coaps` binary:
//!
//! * `coaps get --session-file F` twice: the second prints `handshake: resumed`, DTLS 1.2 and
//!   1.3; the file is mode 0600; a truncated, tampered, foreign or unusable F gives a warning
//!   and a full handshake;
//! * two `coaps serve` processes on one private `redis-server`, behind one address (a UDP
//!   forwarder standing in for a load balancer): a session made on node A resumes on node B,
//!   DTLS 1.2 (session ID) and 1.3 (ticket); after node A restarts, a client resumes on A;
//!   Redis stopped mid-test: answers keep coming through full handshakes, and resumption
//!   returns once Redis is back;
//! * OpenSSL `s_client -dtls1_2 -reconnect -no_ticket` resumes with a session ID against
//!   `coaps serve`;
//! * RFC 5077 tickets, `--tickets stateful` and `stateless`: OpenSSL `s_client -dtls1_2
//!   -reconnect` and `gnutls-cli --resume` resume with a ticket; two `coaps serve
//!   --tickets stateless` on one Redis open each other's tickets (DTLS 1.2 with OpenSSL's
//!   saved session, DTLS 1.3 with `coaps get --session-file`);
//! * `--redis` without a usable key is a usage error.

use coaps_test_support::cli::{Server, coaps, run, serve, show};
use coaps_test_support::peers::{Peer, StdinMode, require_peer, temp_path};
use coaps_test_support::redis::RedisServer;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use coaps_dtls::crypto::CryptoProvider;
use coaps_dtls::crypto::rustcrypto::RustCrypto;

const LIMIT: Duration = Duration::from_secs(30);

fn get(port: u16, dtls: &str, file: &Path) -> Output {
    let mut cmd = coaps();
    cmd.arg("get")
        .arg(format!("coaps://127.0.0.1:{port}/hello"))
        .args(["--dtls", dtls, "-v", "-B", "15", "--session-file"])
        .arg(file);
    run(cmd, LIMIT)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The one `handshake:` line of `-v`.
fn handshake(o: &Output) -> String {
    assert!(o.status.success(), "{}", show(o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "Hello, CoAPS!\n", "{}", show(o));
    let lines: Vec<_> = stderr(o).lines().filter(|l| l.starts_with("handshake: ")).map(str::to_owned).collect();
    assert_eq!(lines.len(), 1, "{}", show(o));
    lines[0].clone()
}

fn version_name(dtls: &str) -> &'static str {
    if dtls == "1.3" { "DTLS 1.3" } else { "DTLS 1.2" }
}

#[test]
fn session_file_twice_resumes_and_is_private() {
    let server = serve(&[]);
    for dtls in ["1.2", "1.3"] {
        let file = temp_path("session");
        let v = version_name(dtls);
        assert_eq!(handshake(&get(server.port, dtls, &file)), format!("handshake: full ({v})"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        }
        for _ in 0..2 {
            let out = get(server.port, dtls, &file);
            assert_eq!(handshake(&out), format!("handshake: resumed ({v})"));
            assert!(!stderr(&out).contains("warning"), "{}", show(&out));
        }
    }
}

#[test]
fn damaged_foreign_or_unusable_session_files_mean_a_warning_and_a_full_handshake() {
    let server = serve(&[]);
    for dtls in ["1.2", "1.3"] {
        let v = version_name(dtls);
        let file = temp_path("session");
        handshake(&get(server.port, dtls, &file));
        let good = std::fs::read(&file).unwrap();

        let mut truncated = good.clone();
        truncated.truncate(good.len() / 2);
        let mut tampered = good.clone();
        tampered[good.len() / 2] ^= 0x20;
        for (what, bytes, says) in [
            ("truncated", truncated, "truncated or corrupted"),
            ("tampered", tampered, "truncated or corrupted"),
            ("foreign", b"-----BEGIN SSL SESSION PARAMETERS-----\n".to_vec(), "not a coaps session file"),
            ("empty", Vec::new(), "not a coaps session file"),
        ] {
            std::fs::write(&file, &bytes).unwrap();
            let out = get(server.port, dtls, &file);
            assert_eq!(handshake(&out), format!("handshake: full ({v})"), "{what}");
            assert!(stderr(&out).contains("warning") && stderr(&out).contains(says), "{what}: {}", show(&out));
            // The file was rewritten with the new session: the next run resumes.
            assert_eq!(handshake(&get(server.port, dtls, &file)), format!("handshake: resumed ({v})"), "{what}");
        }

        // A file saved for another server: a warning, a full handshake.
        let other = serve(&[]);
        std::fs::write(&file, &good).unwrap();
        let out = get(other.port, dtls, &file);
        assert_eq!(handshake(&out), format!("handshake: full ({v})"));
        assert!(stderr(&out).contains("no session for"), "{}", show(&out));
    }

    // Altered consistently (a secret byte flipped, the checksum recomputed): the abbreviated
    // handshake fails; the client says so and does a full handshake instead.
    let file = temp_path("session");
    handshake(&get(server.port, "1.2", &file));
    let mut bytes = std::fs::read(&file).unwrap();
    let body = bytes.len() - 32;
    // Inside the master secret: a DTLS 1.2 session ends with it, then (the server issued an
    // RFC 5077 ticket, 32 bytes in stateful mode) the u16-prefixed ticket.
    bytes[body - (2 + 32) - 10] ^= 0x01;
    let digest = RustCrypto.sha256_parts(&[&bytes[..body]]);
    bytes[body..].copy_from_slice(&digest);
    std::fs::write(&file, &bytes).unwrap();
    let out = get(server.port, "1.2", &file);
    assert_eq!(handshake(&out), "handshake: full (DTLS 1.2)");
    assert!(stderr(&out).contains("retrying with a full handshake"), "{}", show(&out));
    assert_eq!(handshake(&get(server.port, "1.2", &file)), "handshake: resumed (DTLS 1.2)");
}

#[test]
fn redis_without_its_key_or_with_a_bad_key_is_a_usage_error() {
    // --redis without its key, and a bad key file: usage errors too.
    let mut cmd = coaps();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--redis", "redis://127.0.0.1:1/"]);
    assert_eq!(run(cmd, LIMIT).status.code(), Some(2));
    let mut cmd = coaps();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--tickets", "sealed"]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("stateless"), "the error lists the modes: {}", show(&out));
    let key = temp_path("key");
    std::fs::write(&key, "not hex").unwrap();
    let mut cmd = coaps();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--redis", "redis://127.0.0.1:1/", "--session-key-file"]).arg(&key);
    let out = run(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("64 hex digits"), "{}", show(&out));
}

// ---------------------------------------------------------------------------------------------
// A cluster: two `coaps serve` on one Redis, behind one address
// ---------------------------------------------------------------------------------------------

/// A UDP forwarder standing in for a load balancer: clients talk to `addr()`, datagrams go to
/// whichever node `route_to` names last, answers come back. One client at a time (the tests
/// run their `coaps get`s one after another).
struct Balancer {
    front: SocketAddr,
    upstream: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Balancer {
    fn start(port: u16) -> Self {
        let front_sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let back_sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        for s in [&front_sock, &back_sock] {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        }
        let front = front_sock.local_addr().unwrap();
        let upstream = Arc::new(AtomicU16::new(port));
        let stop = Arc::new(AtomicBool::new(false));
        let client = Arc::new(std::sync::Mutex::new(None::<SocketAddr>));
        let (f1, b1) = (front_sock.try_clone().unwrap(), back_sock.try_clone().unwrap());
        let (up, st, cl) = (upstream.clone(), stop.clone(), client.clone());
        let t1 = std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !st.load(Ordering::Relaxed) {
                if let Ok((n, from)) = f1.recv_from(&mut buf) {
                    *cl.lock().unwrap() = Some(from);
                    let _ = b1.send_to(&buf[..n], (Ipv4Addr::LOCALHOST, up.load(Ordering::Relaxed)));
                }
            }
        });
        let (st, cl) = (stop.clone(), client);
        let t2 = std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !st.load(Ordering::Relaxed) {
                if let Ok((n, _)) = back_sock.recv_from(&mut buf)
                    && let Some(c) = *cl.lock().unwrap()
                {
                    let _ = front_sock.send_to(&buf[..n], c);
                }
            }
        });
        Self { front, upstream, stop, threads: vec![t1, t2] }
    }

    fn route_to(&self, port: u16) {
        self.upstream.store(port, Ordering::Relaxed);
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn node(redis: &RedisServer, key: &Path) -> Server {
    let key = key.to_str().unwrap();
    serve(&["--redis", &redis.url(), "--session-key-file", key])
}

/// Waits (bounded) until `f` resumes, retrying with fresh full handshakes in between (each
/// run rewrites the file); panics with the last output otherwise.
fn eventually_resumed(mut f: impl FnMut() -> Output, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let out = f();
        if handshake(&out).starts_with("handshake: resumed") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "resumption did not return
{}",
            show(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn two_servers_on_one_redis_resume_each_others_clients() {
    let Some(mut redis) = RedisServer::start() else { return };
    let key = temp_path("store-key");
    std::fs::write(
        &key,
        format!(
            "{}
",
            "5e".repeat(32)
        ),
    )
    .unwrap();
    let a = node(&redis, &key);
    let b = node(&redis, &key);
    let lb = Balancer::start(a.port);
    let port = lb.front.port();
    // The first `coaps get` may race the nodes' first Redis connection: a full handshake then.
    for dtls in ["1.2", "1.3"] {
        let v = version_name(dtls);
        let file = temp_path("session");
        lb.route_to(a.port);
        eventually_resumed(|| get(port, dtls, &file), Duration::from_secs(10));
        // Made on A (the file's newest session now comes from A): resumes on B.
        lb.route_to(a.port);
        assert_eq!(handshake(&get(port, dtls, &file)), format!("handshake: resumed ({v})"));
        lb.route_to(b.port);
        assert_eq!(handshake(&get(port, dtls, &file)), format!("handshake: resumed ({v})"), "A -> B");
        lb.route_to(a.port);
        assert_eq!(handshake(&get(port, dtls, &file)), format!("handshake: resumed ({v})"), "B -> A");
    }

    // Node A restarts: a client that last spoke to it resumes on the new process.
    let file = temp_path("session");
    lb.route_to(a.port);
    eventually_resumed(|| get(port, "1.3", &file), Duration::from_secs(10));
    let log = a.guard.stop();
    assert!(!log.contains("panicked"), "{log}");
    let a2 = node(&redis, &key);
    lb.route_to(a2.port);
    eventually_resumed(|| get(port, "1.3", &file), Duration::from_secs(10));

    // Redis stops: every request is still answered, through full handshakes.
    redis.stop();
    for dtls in ["1.2", "1.3"] {
        let out = get(port, dtls, &temp_path("session"));
        assert!(handshake(&out).starts_with("handshake: full"), "{}", show(&out));
    }
    let out = get(port, "1.3", &file);
    assert!(handshake(&out).starts_with("handshake: full"), "{}", show(&out));
    // Redis is back (empty): resumption returns once the nodes have reconnected.
    redis.restart();
    lb.route_to(b.port);
    eventually_resumed(|| get(port, "1.3", &file), Duration::from_secs(20));
    lb.route_to(a2.port);
    let file12 = temp_path("session");
    eventually_resumed(|| get(port, "1.2", &file12), Duration::from_secs(20));
    for n in [a2, b] {
        let log = n.guard.stop();
        assert!(!log.contains("panicked"), "{log}");
        assert!(log.contains("WARN") || log.contains("warn"), "the outage was logged at warn: {log}");
    }
}

// ---------------------------------------------------------------------------------------------
// OpenSSL
// ---------------------------------------------------------------------------------------------

#[test]
fn openssl_s_client_reconnect_resumes_with_a_session_id() {
    if !require_peer("openssl") {
        return;
    }
    let server = serve(&["--dtls", "1.2"]);
    let key_hex: String = b"coaps-demo-key".iter().map(|b| format!("{b:02x}")).collect();
    let connect = format!("127.0.0.1:{}", server.port);
    let args = [
        "s_client",
        "-dtls1_2",
        "-connect",
        &connect,
        "-psk",
        &key_hex,
        "-psk_identity",
        "coaps-demo",
        "-cipher",
        "PSK-CHACHA20-POLY1305",
        "-reconnect",
        "-no_ticket",
    ];
    let mut client = Peer::spawn("openssl s_client", "openssl", args, StdinMode::Piped);
    let reused = "Reused, TLSv1.2, Cipher is PSK-CHACHA20-POLY1305";
    assert!(
        // Generous: on a loaded machine s_client may retransmit its way through.
        client.wait_for_stdout_count(reused, 5, Duration::from_secs(60)),
        "s_client did not resume 5 times
{}",
        client.dump()
    );
    assert_eq!(client.stdout_count("New, TLSv1.2"), 1, "{}", client.dump());
    client.kill();
}

// ---------------------------------------------------------------------------------------------
// RFC 5077 tickets
// ---------------------------------------------------------------------------------------------

fn demo_key_hex() -> String {
    b"coaps-demo-key".iter().map(|b| format!("{b:02x}")).collect()
}

fn s_client_args(port: u16, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "s_client",
        "-dtls1_2",
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-psk",
        &demo_key_hex(),
        "-psk_identity",
        "coaps-demo",
        "-cipher",
        "PSK-CHACHA20-POLY1305",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn openssl_s_client_reconnect_resumes_with_a_ticket_in_both_modes() {
    if !require_peer("openssl") {
        return;
    }
    for mode in ["stateful", "stateless"] {
        let server = serve(&["--dtls", "1.2", "--tickets", mode]);
        let mut client =
            Peer::spawn("openssl s_client", "openssl", s_client_args(server.port, &["-reconnect"]), StdinMode::Piped);
        let reused = "Reused, TLSv1.2, Cipher is PSK-CHACHA20-POLY1305";
        assert!(
            client.wait_for_stdout_count(reused, 5, Duration::from_secs(60)),
            "{mode}: s_client did not resume 5 times\n{}",
            client.dump()
        );
        assert_eq!(client.stdout_count("New, TLSv1.2"), 1, "{mode}: {}", client.dump());
        // The server sent a ticket and, issuing one, an empty session ID (RFC 5077 §3.4): the
        // ticket is the only way back to the session.
        assert!(client.stdout().contains("TLS session ticket lifetime hint: 86400"), "{mode}: {}", client.dump());
        client.kill();
    }
}

#[test]
fn gnutls_cli_resumes_with_a_ticket_in_both_modes() {
    if !require_peer("gnutls-cli") {
        return;
    }
    let priority =
        "NONE:+VERS-DTLS1.2:+COMP-NULL:+SIGN-ALL:+GROUP-SECP256R1:+AEAD:+SHA256:+CTYPE-X509:+CHACHA20-POLY1305:+PSK";
    for mode in ["stateful", "stateless"] {
        let server = serve(&["--dtls", "1.2", "--tickets", mode]);
        let port = server.port.to_string();
        let key = demo_key_hex();
        let args = [
            "--udp",
            "-p",
            &port,
            "127.0.0.1",
            "--priority",
            priority,
            "--pskusername",
            "coaps-demo",
            "--pskkey",
            &key,
            "--resume",
        ];
        let mut client = Peer::spawn("gnutls-cli", "gnutls-cli", args, StdinMode::Piped);
        assert!(
            client.wait_for_output("*** This is a resumed session", Duration::from_secs(30)),
            "{mode}: gnutls-cli did not resume\n{}",
            client.dump()
        );
        client.kill();
    }
}

#[test]
fn two_stateless_servers_on_one_redis_open_each_others_tickets() {
    let Some(redis) = RedisServer::start() else { return };
    let key = temp_path("store-key");
    std::fs::write(&key, format!("{}\n", "3c".repeat(32))).unwrap();
    let key = key.to_str().unwrap().to_owned();
    let args = ["--redis", &redis.url(), "--session-key-file", &key, "--tickets", "stateless"];
    let a = serve(&args);
    let b = serve(&args);

    // DTLS 1.3, our client: a ticket from A resumes on B. The nodes load the shared keys from
    // Redis just after they start: until then a ticket may not open elsewhere.
    let lb = Balancer::start(a.port);
    let port = lb.front.port();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let file = temp_path("session");
        lb.route_to(a.port);
        let first = get(port, "1.3", &file);
        assert!(handshake(&first).starts_with("handshake: full"), "{}", show(&first));
        lb.route_to(b.port);
        let out = get(port, "1.3", &file);
        if handshake(&out) == "handshake: resumed (DTLS 1.3)" {
            break;
        }
        assert!(Instant::now() < deadline, "node B never opened node A's ticket\n{}", show(&out));
        std::thread::sleep(Duration::from_millis(300));
    }

    // DTLS 1.2, OpenSSL: the session saved from A (a ticket, no session ID) resumes on B.
    if require_peer("openssl") {
        let sess = temp_path("sess.pem");
        let sess = sess.to_str().unwrap();
        let mut first =
            Peer::spawn("openssl s_client", "openssl", s_client_args(a.port, &["-sess_out", sess]), StdinMode::Piped);
        assert!(first.wait_for_output("New, TLSv1.2", Duration::from_secs(30)), "{}", first.dump());
        first.close_stdin();
        first.wait_exit(Duration::from_secs(10));
        let mut second =
            Peer::spawn("openssl s_client", "openssl", s_client_args(b.port, &["-sess_in", sess]), StdinMode::Piped);
        assert!(
            second.wait_for_output("Reused, TLSv1.2", Duration::from_secs(30)),
            "node B did not resume node A's DTLS 1.2 ticket\n{}",
            second.dump()
        );
        second.kill();
    }
    for n in [a, b] {
        let log = n.guard.stop();
        assert!(!log.contains("panicked"), "{log}");
    }
}
