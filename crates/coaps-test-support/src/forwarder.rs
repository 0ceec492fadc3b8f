//! A recording UDP forwarder for replay tests: every client gets its own upstream socket to
//! the target (so the target sees one peer per client and answers find their way back), every
//! client datagram is recorded, and with `preplay` set a copy of a client's first datagram is
//! sent from an attacker's port just before the original (the pre-play of RFC 8446 §8). With
//! `race` set, the copy goes to another server at the same moment as the original goes to the
//! target (the race across nodes sharing a store); with `copies_after` set, that many copies
//! of the first datagram follow the client's first other datagram (its Finished, when the
//! first opened a handshake), alternately from the client's own upstream socket and from another port,
//! while the client's association lives.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// See the [module docs](self). Stops (and joins its thread) when dropped.
pub struct Forwarder {
    /// The port clients send to (on 127.0.0.1).
    pub port: u16,
    /// The first datagram of each client, in order.
    pub firsts: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Every client datagram, in order.
    pub all: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Pre-play each new client's first datagram from another port.
    pub preplay: Arc<AtomicBool>,
    /// Send a copy of each new client's first datagram to this server (from another port) as
    /// the original goes to the target.
    pub race: Arc<Mutex<Option<SocketAddr>>>,
    /// Copies of each new client's first datagram sent right after its first other datagram.
    pub copies_after: Arc<AtomicUsize>,
    /// The upstream socket of each client, in the order of `firsts`: replays from the
    /// client's own address (as the target sees it) after the client is gone.
    pub upstreams: Arc<Mutex<Vec<Arc<UdpSocket>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// Forwards 127.0.0.1:`port` to `target`.
    pub fn start(target: SocketAddr) -> Self {
        let listen = UdpSocket::bind("127.0.0.1:0").expect("bind the forwarder");
        listen.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        let port = listen.local_addr().unwrap().port();
        let (firsts, all) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
        let preplay = Arc::new(AtomicBool::new(false));
        let race = Arc::new(Mutex::new(None));
        let copies_after = Arc::new(AtomicUsize::new(0));
        let ups = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, a, p, s) = (firsts.clone(), all.clone(), preplay.clone(), stop.clone());
        let (r, c, us) = (race.clone(), copies_after.clone(), ups.clone());
        let thread = std::thread::spawn(move || {
            let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
            // Per client: its upstream socket, its first datagram, 2 once it sent another, and
            // the copies to send then.
            let mut upstreams: HashMap<SocketAddr, (Arc<UdpSocket>, Vec<u8>, usize, usize)> = HashMap::new();
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, from)) = listen.recv_from(&mut buf) {
                    a.lock().unwrap().push(buf[..n].to_vec());
                    let (up, first, seen, copies) = upstreams.entry(from).or_insert_with(|| {
                        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
                        u.connect(target).unwrap();
                        u.set_nonblocking(true).unwrap();
                        let u = Arc::new(u);
                        f.lock().unwrap().push(buf[..n].to_vec());
                        us.lock().unwrap().push(u.clone());
                        if p.load(Ordering::Relaxed) {
                            let _ = attacker.send_to(&buf[..n], target);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        if let Some(other) = *r.lock().unwrap() {
                            let _ = attacker.send_to(&buf[..n], other);
                        }
                        (u, buf[..n].to_vec(), 0, c.load(Ordering::Relaxed))
                    });
                    let _ = up.send(&buf[..n]);
                    // The first datagram that is not a retransmission of the first one: the
                    // server's answer to the first arrived, so its early data is decided.
                    if *seen < 2 && buf[..n] != first[..] {
                        *seen = 2;
                        for i in 0..*copies {
                            // Half from the client's own address (its live association), half
                            // from another port.
                            let _ = if i % 2 == 0 { up.send(first) } else { attacker.send_to(first, target) };
                        }
                    }
                }
                for (client, (up, ..)) in &upstreams {
                    while let Ok(n) = up.recv(&mut buf) {
                        let _ = listen.send_to(&buf[..n], client);
                    }
                }
            }
        });
        Self { port, firsts, all, preplay, race, copies_after, upstreams: ups, stop, thread: Some(thread) }
    }

    /// The address clients send to.
    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends `datagram` to `target` `times` times from fresh sockets, alternating between other
/// ports of 127.0.0.1 and of 127.0.0.2; returns how many went out.
pub fn replay(datagram: &[u8], target: SocketAddr, times: usize) -> usize {
    (0..times)
        .filter(|i| {
            let from = if i % 2 == 0 { "127.0.0.1:0" } else { "127.0.0.2:0" };
            UdpSocket::bind(from).and_then(|s| s.send_to(datagram, target)).is_ok()
        })
        .count()
}

/// Sends `datagram` `times` times from `socket` (connected to its target): replays from an
/// address the target has seen before.
pub fn replay_from(socket: &UdpSocket, datagram: &[u8], times: usize) -> usize {
    (0..times).filter(|_| socket.send(datagram).is_ok()).count()
}
