//! A real peer through the whole datagram stack: `openssl s_client -dtls1_2 -psk` against
//! `serve` + `CookieLayer` + `HandshakeLayer` + an echo service on loopback.
//!
//! Skipped (with a message) when `openssl` is not installed, unless `COAPS_REQUIRE_PEERS=1`.

use coaps_test_support::datagram as datagram_support;

use datagram_support::*;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn openssl_available() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("COAPS_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("openssl is not installed but COAPS_REQUIRE_PEERS=1: apt-get install openssl");
        }
        eprintln!("skipping: openssl not installed (apt-get install openssl)");
    }
    ok
}

/// Kills the child (by its own handle) when the test ends, even on panic.
struct Peer {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    fn spawn(args: &[String]) -> Self {
        let mut child = Command::new("openssl")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn openssl");
        let output = Arc::new(Mutex::new(String::new()));
        for mut pipe in
            [Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>, Box::new(child.stderr.take().unwrap())]
        {
            let output = output.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    output.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Self { child, output }
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    async fn wait_for(&self, text: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.output().contains(text) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_through_cookie_and_handshake_layers() {
    if !openssl_available() {
        return;
    }
    bounded(60, "openssl interop", async {
        let mut server = TestServer::start(Opts::default(), tower::layer::util::Identity::new()).await;
        let args: Vec<String> = [
            "s_client",
            "-dtls1_2",
            "-connect",
            &server.addr.to_string(),
            "-psk",
            PSK_HEX,
            "-psk_identity",
            PSK_IDENTITY,
            "-cipher",
            "PSK-AES128-CCM8",
            "-trace",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut peer = Peer::spawn(&args);
        assert!(
            peer.wait_for("Cipher is PSK-AES128-CCM8", Duration::from_secs(20)).await,
            "no handshake\n{}",
            peer.output()
        );

        peer.send_line("hello-tower");
        assert!(peer.wait_for("echo:hello-tower", Duration::from_secs(20)).await, "no echo\n{}", peer.output());
        peer.send_line("second-line");
        assert!(peer.wait_for("echo:second-line", Duration::from_secs(20)).await, "no echo\n{}", peer.output());

        let out = peer.output();
        // -trace shows the stateless cookie exchange: HelloVerifyRequest, then a second
        // ClientHello carrying the cookie.
        assert!(out.contains("HelloVerifyRequest"), "no HelloVerifyRequest in the trace\n{out}");
        assert!(out.matches("ClientHello, Length=").count() >= 2, "no second ClientHello\n{out}");

        // The cookie layer answered the first ClientHello alone: the layer behind it saw
        // only the proven one.
        let cookie = server.cookies.stats();
        assert!(cookie.hello_verify_requests >= 1, "{cookie:?}");
        assert!(cookie.cookies_verified >= 1, "{cookie:?}");
        assert_eq!(server.probe.client_hellos_unmarked.load(Ordering::SeqCst), 0);
        assert!(server.probe.client_hellos_marked.load(Ordering::SeqCst) >= 1);
        assert_eq!(server.app_calls(), 2);
        assert_eq!(server.associations.count(), 1);
        let stats = server.associations.stats();
        assert_eq!(stats.endpoint.connections_created, 1);
        assert_eq!(stats.unverified_client_hellos, 0);

        // Graceful shutdown: s_client sees our close_notify.
        server.shutdown().await.unwrap();
        assert_eq!(server.associations.count(), 0);
        // -trace prints the received alert ("Received Record ... description=close notify(0)")
        // and s_client then reports "closed".
        assert!(
            peer.wait_for("description=close notify", Duration::from_secs(10)).await,
            "s_client did not receive close_notify\n{}",
            peer.output()
        );
        let out = peer.output();
        let received_alert = out
            .split("Received Record")
            .skip(1)
            .any(|r| r.split("Sent Record").next().is_some_and(|r| r.contains("description=close notify")));
        assert!(received_alert, "close_notify was not received (only sent?)\n{out}");
    })
    .await;
}
