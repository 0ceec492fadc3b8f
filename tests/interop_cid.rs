//! Connection IDs, DTLS 1.2 (RFC 9146) and DTLS 1.3 (RFC 9147 §9), between `examples/dtls_echo`
//! and the wolfSSL 5.9.4 example programs (`--cid`, built with `--enable-dtlscid`), both roles,
//! and a NAT rebinding between two messages through a test-local UDP forwarder: the association
//! continues on the new port with no second handshake, and the old port gets nothing more.
//!
//! The rebinding between two of its messages runs between our own programs: the wolfSSL example
//! server filters datagrams by the peer address it set at accept (`wolfSSL_dtls_set_peer`), so
//! it never sees a rebound client, and the wolfSSL example client sends one message per
//! handshake. In DTLS 1.3 its Finished already carries our CID, so the wolfSSL client is rebound
//! between its Finished and its message instead.
//!
//! Without the wolfSSL programs the wolfSSL tests skip (with a notice) unless
//! `COAPS_REQUIRE_PEERS=1`; the rebinding test needs only `dtls_echo`.

use coaps_test_support::peers as common;
use coaps_test_support::wolfssl;

use common::*;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use wolfssl::*;

/// The CID `--cid wolf` makes a wolfSSL program ask for, in hex.
const WOLF_CID_HEX: &str = "776f6c66";

/// The `cid in=IN out=OUT` pair printed on a line of `text`.
fn cids_printed(text: &str) -> Option<(String, String)> {
    let at = text.find("cid in=")?;
    let mut words = text[at..].lines().next()?.split_whitespace().skip(1);
    let inn = words.next()?.strip_prefix("in=")?.to_owned();
    let out = words.next()?.strip_prefix("out=")?.to_owned();
    Some((inn, out))
}

/// Our server (DTLS 1.2, certificate) with `--cid 6`; the wolfSSL DTLS 1.2 client asks for the
/// CID "wolf" (`--cid wolf`). Both sides report the CIDs of the other, and the echo flows over tls12_cid records.
#[test]
fn wolfssl_12_client_with_cid_to_our_server() {
    let Some(wolf) = require_wolfssl() else { return };
    let mut args = echo_server_cert_args();
    args.extend(strings(&["--dtls", "1.2", "--cid", "6"]));
    let (server, addr) = start_echo_server13(&args);
    let mut cargs = wolf_client_cert_args(false);
    cargs.extend(strings(&["--cid", "wolf"]));
    let mut client = wolf.client(Dtls::V12, None, addr, &cargs);
    match client.wait_exit(PEER_TIMEOUT) {
        Some(s) if s.success() => {}
        status => panic!("wolfSSL client failed ({status:?})\n{}\n{}", client.dump(), server.dump()),
    }
    assert_stdout(&client, "CID extension was negotiated", "CID negotiated");
    assert_stdout(&client, WOLF_HELLO, "echo from our server");
    assert!(server.wait_for_output("cid in=", PEER_TIMEOUT), "{}", server.dump());
    let (inn, out) = cids_printed(&server.stderr()).unwrap();
    assert_eq!(out, WOLF_CID_HEX, "our server sends the wolfSSL client's CID\n{}", server.dump());
    assert_eq!(inn.len(), 12, "our 6-byte CID");
    // wolfSSL prints the CID it sends, ours, byte by byte in hex without zero padding
    // (`Sending CID is f9819f6b11d` for f9 81 9f 6b 11 0d).
    let ours_spaced: String =
        (0..12).step_by(2).map(|i| format!("{:x}", u8::from_str_radix(&inn[i..i + 2], 16).expect("hex CID"))).collect();
    let printed: String = client.stdout().to_lowercase().chars().filter(|c| c.is_ascii_hexdigit()).collect();
    assert!(printed.contains(&ours_spaced), "wolfSSL sends our CID {inn}\n{}", client.dump());
}

/// Our client with `--cid 4` against the wolfSSL DTLS 1.2 echo server with `--cid wolf`.
#[test]
fn our_12_client_with_cid_to_wolfssl_server() {
    let Some(wolf) = require_wolfssl() else { return };
    dtls_echo();
    let mut sargs = wolf_server_cert_args(false);
    sargs.extend(strings(&["-e", "--cid", "wolf"]));
    let (mut server, addr) = wolf.server(Dtls::V12, None, &sargs);
    let text = message_for("cid to wolfssl");
    let mut args = strings(&["--dtls", "1.2", "--cid", "4"]);
    args.extend(echo_client_cert_args());
    args.extend(["--message".into(), text.clone()]);
    let client = run_echo_client(addr, &args);
    assert_stdout(&client, &text, "echo from the wolfSSL server");
    let (inn, out) = cids_printed(&client.stderr()).expect("our client prints the CIDs");
    assert_eq!(out, WOLF_CID_HEX, "{}", client.dump());
    assert_eq!(inn.len(), 8);
    expect_wolf_success(&mut server);
    assert_stdout(&server, "CID extension was negotiated", "CID negotiated");
}

/// Our client offers a zero-length CID ("send yours, I want none") to the wolfSSL server.
#[test]
fn our_12_client_with_empty_cid_to_wolfssl_server() {
    let Some(wolf) = require_wolfssl() else { return };
    dtls_echo();
    let mut sargs = wolf_server_cert_args(false);
    sargs.extend(strings(&["-e", "--cid", "wolf"]));
    let (mut server, addr) = wolf.server(Dtls::V12, None, &sargs);
    let text = message_for("empty cid");
    let mut args = strings(&["--dtls", "1.2", "--cid", "0"]);
    args.extend(echo_client_cert_args());
    args.extend(["--message".into(), text.clone()]);
    let client = run_echo_client(addr, &args);
    assert_stdout(&client, &text, "echo");
    assert_eq!(cids_printed(&client.stderr()), Some(("-".into(), WOLF_CID_HEX.into())), "{}", client.dump());
    expect_wolf_success(&mut server);
    assert_stdout(&server, "other peer provided empty CID", "wolfSSL saw our empty CID");
}

// =============================================================================================
// NAT rebinding
// =============================================================================================

/// A one-client UDP forwarder that plays a NAT: it forwards the client's datagrams to the
/// server from a back socket, and after the client has been quiet for `idle` (between two
/// messages) it moves to a fresh back socket, i.e. a new source port. Datagrams the server
/// still sends to an abandoned port are counted, not forwarded.
/// When the NAT gives the client a new source port.
#[derive(Clone, Copy)]
enum Rebind {
    /// Before a client datagram that follows this much silence (between two messages).
    AfterIdle(Duration),
    /// Once, before the client datagram that follows its first DTLS 1.3 record with a CID
    /// (RFC 9147 §4: a unified header with the C bit), i.e. after the client's Finished flight.
    AfterFirstCid13Record,
    /// Once, before the client datagram that follows its first DTLS 1.2 `tls12_cid` record
    /// (RFC 9146 §4: content type 25), i.e. after the datagram with the client's Finished.
    AfterFirstCid12Record,
}

/// Whether a DTLS 1.2 datagram holds a `tls12_cid` record (walking the record headers; the
/// first CID record ends the walk, so its CID length never matters).
fn has_cid12_record(d: &[u8]) -> bool {
    let mut i = 0;
    while i + 13 <= d.len() {
        if d[i] == 25 {
            return true;
        }
        i += 13 + usize::from(u16::from_be_bytes([d[i + 11], d[i + 12]]));
    }
    false
}

struct RebindingNat {
    addr: SocketAddr,
    rebinds: Arc<AtomicUsize>,
    to_old_ports: Arc<AtomicUsize>,
    ports: Arc<Mutex<Vec<u16>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RebindingNat {
    fn start(upstream: SocketAddr, idle: Duration) -> Self {
        Self::start_with(upstream, Rebind::AfterIdle(idle))
    }

    fn start_with(upstream: SocketAddr, policy: Rebind) -> Self {
        let front = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        front.set_nonblocking(true).unwrap();
        let addr = front.local_addr().unwrap();
        let (rebinds, to_old_ports) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let ports = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r2, o2, p2, s2) = (rebinds.clone(), to_old_ports.clone(), ports.clone(), stop.clone());
        let back = move || {
            let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            s.connect(upstream).unwrap();
            s.set_nonblocking(true).unwrap();
            p2.lock().unwrap().push(s.local_addr().unwrap().port());
            s
        };
        let thread = thread::spawn(move || {
            let mut current = back();
            let mut old: Vec<UdpSocket> = Vec::new();
            let mut client: Option<SocketAddr> = None;
            let mut last_from_client: Option<Instant> = None;
            let mut cid13_seen = false;
            let mut cid12_seen = false;
            let mut rebound_once = false;
            let mut buf = vec![0u8; 65536];
            let end = Instant::now() + Duration::from_secs(60);
            while !s2.load(Ordering::Relaxed) && Instant::now() < end {
                let mut busy = false;
                while let Ok((n, from)) = front.recv_from(&mut buf) {
                    busy = true;
                    client = Some(from);
                    let rebind = match policy {
                        Rebind::AfterIdle(idle) => last_from_client.is_some_and(|t| t.elapsed() >= idle),
                        Rebind::AfterFirstCid13Record => cid13_seen && !rebound_once,
                        Rebind::AfterFirstCid12Record => cid12_seen && !rebound_once,
                    };
                    if rebind {
                        old.push(std::mem::replace(&mut current, back()));
                        r2.fetch_add(1, Ordering::Relaxed);
                        rebound_once = true;
                    }
                    cid13_seen |= n > 0 && buf[0] & 0xf0 == 0x30;
                    cid12_seen |= has_cid12_record(&buf[..n]);
                    last_from_client = Some(Instant::now());
                    let _ = current.send(&buf[..n]);
                }
                while let Ok(n) = current.recv(&mut buf) {
                    busy = true;
                    if let Some(c) = client {
                        let _ = front.send_to(&buf[..n], c);
                    }
                }
                for s in &old {
                    while s.recv(&mut buf).is_ok() {
                        o2.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if !busy {
                    thread::sleep(Duration::from_millis(1));
                }
            }
        });
        Self { addr, rebinds, to_old_ports, ports, stop, thread: Some(thread) }
    }
}

impl Drop for RebindingNat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Our client sends three messages 900 ms apart through the NAT, which gives it a new source
/// port before the second and the third: one handshake on the server, two `address changed`
/// lines naming the NAT's ports, every message echoed, nothing sent to an abandoned port.
#[test]
fn rebinding_between_messages_keeps_the_association() {
    let (server, addr) = start_echo_server13(&strings(&["--dtls", "1.2", "--cid", "5", "--psk", &psk_arg()]));
    let nat = RebindingNat::start(addr, Duration::from_millis(500));
    let text = message_for("rebinding");
    let args = strings(&[
        "--dtls",
        "1.2",
        "--cid",
        "3",
        "--psk",
        &psk_arg(),
        "--count",
        "3",
        "--interval",
        "900",
        "--message",
        &text,
    ]);
    let client = run_echo_client(nat.addr, &args);
    assert_eq!(client.stdout_count(&text), 3, "three echoes\n{}\n{}", client.dump(), server.dump());
    assert!(server.wait_for_output("address changed", PEER_TIMEOUT), "{}", server.dump());
    // The server logs the second move once the datagram is in; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.stderr().matches("address changed").count() < 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let log = server.stderr();
    assert_eq!(nat.rebinds.load(Ordering::Relaxed), 2, "{log}");
    assert_eq!(log.matches(": connected").count(), 1, "no new handshake\n{log}");
    assert_eq!(log.matches("address changed").count(), 2, "{log}");
    let ports = nat.ports.lock().unwrap().clone();
    for pair in ports.windows(2) {
        let line = format!("address changed: 127.0.0.1:{} -> 127.0.0.1:{}", pair[0], pair[1]);
        assert!(log.contains(&line), "expected `{line}`\n{log}");
    }
    assert!(log.contains(", cid in="), "{log}");
    assert_eq!(nat.to_old_ports.load(Ordering::Relaxed), 0, "the old address got datagrams\n{log}");
}

// =============================================================================================
// DTLS 1.3 (RFC 9147 §9)
// =============================================================================================

/// Our DTLS 1.3 server with `--cid 6`; the wolfSSL DTLS 1.3 client asks for the CID "wolf".
#[test]
fn wolfssl_13_client_with_cid_to_our_server() {
    let Some(wolf) = require_wolfssl() else { return };
    let mut args = echo_server_cert_args();
    args.extend(strings(&["--dtls", "1.3", "--cid", "6"]));
    let (server, addr) = start_echo_server13(&args);
    let mut cargs = wolf_client_cert_args(false);
    cargs.extend(strings(&["--cid", "wolf"]));
    let mut client = wolf.client(Dtls::V13, None, addr, &cargs);
    match client.wait_exit(PEER_TIMEOUT) {
        Some(s) if s.success() => {}
        status => panic!("wolfSSL client failed ({status:?})\n{}\n{}", client.dump(), server.dump()),
    }
    assert_stdout(&client, Dtls::V13.wolf_line(), "DTLS 1.3");
    assert_stdout(&client, "CID extension was negotiated", "CID negotiated");
    assert_stdout(&client, WOLF_HELLO, "echo from our server");
    assert!(server.wait_for_output("cid in=", PEER_TIMEOUT), "{}", server.dump());
    let (inn, out) = cids_printed(&server.stderr()).unwrap();
    assert_eq!(out, WOLF_CID_HEX, "our server sends the wolfSSL client's CID\n{}", server.dump());
    assert_eq!(inn.len(), 12, "our 6-byte CID");
    let ours: String =
        (0..12).step_by(2).map(|i| format!("{:x}", u8::from_str_radix(&inn[i..i + 2], 16).expect("hex CID"))).collect();
    let printed: String = client.stdout().to_lowercase().chars().filter(|c| c.is_ascii_hexdigit()).collect();
    assert!(printed.contains(&ours), "wolfSSL sends our CID {inn}\n{}", client.dump());
}

/// Our DTLS 1.3 client with `--cid 4` against the wolfSSL DTLS 1.3 echo server with `--cid wolf`.
#[test]
fn our_13_client_with_cid_to_wolfssl_server() {
    let Some(wolf) = require_wolfssl() else { return };
    dtls_echo();
    let mut sargs = wolf_server_cert_args(false);
    sargs.extend(strings(&["-e", "--cid", "wolf"]));
    let (mut server, addr) = wolf.server(Dtls::V13, None, &sargs);
    let text = message_for("cid13 to wolfssl");
    let mut args = strings(&["--dtls", "1.3", "--cid", "4"]);
    args.extend(echo_client_cert_args());
    args.extend(["--message".into(), text.clone()]);
    let client = run_echo_client(addr, &args);
    assert_stdout(&client, &text, "echo from the wolfSSL server");
    let (inn, out) = cids_printed(&client.stderr()).expect("our client prints the CIDs");
    assert_eq!(out, WOLF_CID_HEX, "{}", client.dump());
    assert_eq!(inn.len(), 8);
    expect_wolf_success(&mut server);
    assert_stdout(&server, Dtls::V13.wolf_line(), "DTLS 1.3");
    assert_stdout(&server, "CID extension was negotiated", "CID negotiated");
    // wolfSSL prints each byte of the CID it sends in hex without zero padding.
    let unpadded: String =
        (0..8).step_by(2).map(|i| format!("{:x}", u8::from_str_radix(&inn[i..i + 2], 16).expect("hex CID"))).collect();
    assert_stdout(&server, &format!("Sending CID is {unpadded}"), "the wolfSSL server sends our CID");
}

/// Our DTLS 1.3 client offers a zero-length CID ("send yours, I want none").
#[test]
fn our_13_client_with_empty_cid_to_wolfssl_server() {
    let Some(wolf) = require_wolfssl() else { return };
    dtls_echo();
    let mut sargs = wolf_server_cert_args(false);
    sargs.extend(strings(&["-e", "--cid", "wolf"]));
    let (mut server, addr) = wolf.server(Dtls::V13, None, &sargs);
    let text = message_for("empty cid13");
    let mut args = strings(&["--dtls", "1.3", "--cid", "0"]);
    args.extend(echo_client_cert_args());
    args.extend(["--message".into(), text.clone()]);
    let client = run_echo_client(addr, &args);
    assert_stdout(&client, &text, "echo");
    assert_eq!(cids_printed(&client.stderr()), Some(("-".into(), WOLF_CID_HEX.into())), "{}", client.dump());
    expect_wolf_success(&mut server);
    assert_stdout(&server, "CID extension was negotiated", "CID negotiated");
}

/// `rebinding_between_messages_keeps_the_association` in DTLS 1.3.
#[test]
fn rebinding_between_messages_keeps_the_association_13() {
    let (server, addr) = start_echo_server13(&strings(&["--dtls", "1.3", "--cid", "5", "--psk", &psk_arg()]));
    let nat = RebindingNat::start(addr, Duration::from_millis(500));
    let text = message_for("rebinding13");
    let args = strings(&[
        "--dtls",
        "1.3",
        "--cid",
        "3",
        "--psk",
        &psk_arg(),
        "--count",
        "3",
        "--interval",
        "900",
        "--message",
        &text,
    ]);
    let client = run_echo_client(nat.addr, &args);
    assert_eq!(client.stdout_count(&text), 3, "three echoes\n{}\n{}", client.dump(), server.dump());
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.stderr().matches("address changed").count() < 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let log = server.stderr();
    assert_eq!(nat.rebinds.load(Ordering::Relaxed), 2, "{log}");
    assert_eq!(log.matches(": connected").count(), 1, "no new handshake\n{log}");
    assert_eq!(log.matches("address changed").count(), 2, "{log}");
    let ports = nat.ports.lock().unwrap().clone();
    for pair in ports.windows(2) {
        let line = format!("address changed: 127.0.0.1:{} -> 127.0.0.1:{}", pair[0], pair[1]);
        assert!(log.contains(&line), "expected `{line}`\n{log}");
    }
    assert!(log.contains(", cid in="), "{log}");
    assert_eq!(nat.to_old_ports.load(Ordering::Relaxed), 0, "the old address got datagrams\n{log}");
}

/// The wolfSSL DTLS 1.3 client through a NAT that gives it a new source port after its first
/// record with a CID (its Finished flight): our server moves the association on the next
/// authenticated record, answers on the new port, and runs one handshake only.
#[test]
fn wolfssl_13_client_rebound_after_its_finished_keeps_the_association() {
    let Some(wolf) = require_wolfssl() else { return };
    let mut args = echo_server_cert_args();
    args.extend(strings(&["--dtls", "1.3", "--cid", "6"]));
    let (server, addr) = start_echo_server13(&args);
    let nat = RebindingNat::start_with(addr, Rebind::AfterFirstCid13Record);
    let mut cargs = wolf_client_cert_args(false);
    cargs.extend(strings(&["--cid", "wolf"]));
    let mut client = wolf.client(Dtls::V13, None, nat.addr, &cargs);
    match client.wait_exit(PEER_TIMEOUT) {
        Some(s) if s.success() => {}
        status => panic!("wolfSSL client failed ({status:?})\n{}\n{}", client.dump(), server.dump()),
    }
    assert_stdout(&client, "CID extension was negotiated", "CID negotiated");
    assert_stdout(&client, WOLF_HELLO, "echo from our server after the rebinding");
    assert!(server.wait_for_output("address changed", PEER_TIMEOUT), "{}", server.dump());
    let log = server.stderr();
    assert_eq!(nat.rebinds.load(Ordering::Relaxed), 1, "{log}");
    assert_eq!(log.matches(": connected").count(), 1, "one handshake\n{log}");
    let ports = nat.ports.lock().unwrap().clone();
    let line = format!("address changed: 127.0.0.1:{} -> 127.0.0.1:{}", ports[0], ports[1]);
    assert!(log.contains(&line), "expected `{line}`\n{log}");
    // (The old port may still get our ACK of the Finished and the NewSessionTicket: the client
    // sends its message right after its Finished, so they cross the rebinding. What reaches an
    // abandoned port after the move is checked with our own client above.)
}

/// The wolfSSL DTLS 1.2 client through a NAT that gives it a new source port after the
/// datagram with its Finished (its first `tls12_cid` record): our server moves the association
/// on the client's next authenticated record (RFC 9146 §6), answers on the new port, and runs
/// one handshake only.
#[test]
fn wolfssl_12_client_rebound_after_its_finished_keeps_the_association() {
    let Some(wolf) = require_wolfssl() else { return };
    let mut args = echo_server_cert_args();
    args.extend(strings(&["--dtls", "1.2", "--cid", "6"]));
    let (server, addr) = start_echo_server13(&args);
    let nat = RebindingNat::start_with(addr, Rebind::AfterFirstCid12Record);
    let mut cargs = wolf_client_cert_args(false);
    cargs.extend(strings(&["--cid", "wolf"]));
    let mut client = wolf.client(Dtls::V12, None, nat.addr, &cargs);
    match client.wait_exit(PEER_TIMEOUT) {
        Some(s) if s.success() => {}
        status => panic!("wolfSSL client failed ({status:?})\n{}\n{}", client.dump(), server.dump()),
    }
    assert_stdout(&client, "CID extension was negotiated", "CID negotiated");
    assert_stdout(&client, WOLF_HELLO, "echo from our server after the rebinding");
    assert!(server.wait_for_output("address changed", PEER_TIMEOUT), "{}", server.dump());
    let log = server.stderr();
    assert_eq!(nat.rebinds.load(Ordering::Relaxed), 1, "{log}");
    assert_eq!(log.matches(": connected").count(), 1, "one handshake\n{log}");
    let ports = nat.ports.lock().unwrap().clone();
    let line = format!("address changed: 127.0.0.1:{} -> 127.0.0.1:{}", ports[0], ports[1]);
    assert!(log.contains(&line), "expected `{line}`\n{log}");
}
