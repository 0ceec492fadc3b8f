//! `coaps relay`: a UDP impairment relay, for tests and for users without `tc netem`.
//!
//! Every client (source address) gets its own upstream socket connected to the target, so the
//! target sees one peer per client and its answers find their way back. Each datagram, in
//! either direction, is lost with probability `--loss`, otherwise delivered after `--delay` plus
//! a uniform draw in `[0, --jitter]`, and delivered a second time (with its own delay) with
//! probability `--duplicate`. All draws come from one ChaCha stream seeded by `--seed`.

use crate::cli::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE, RelayArgs};
use coaps_dtls::crypto::{Rng, SeededRng};
use std::collections::HashMap;
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;

/// The impairments of both directions.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    /// One-way delay.
    pub delay: Duration,
    /// Upper bound of the extra uniform delay.
    pub jitter: Duration,
    /// Loss probability in [0, 1].
    pub loss: f64,
    /// Duplication probability in [0, 1].
    pub duplicate: f64,
}

/// Counts of one direction.
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams received from the sender.
    pub received: AtomicU64,
    /// Their bytes.
    pub received_bytes: AtomicU64,
    /// Datagrams sent on (duplicates included).
    pub forwarded: AtomicU64,
    /// Their bytes.
    pub forwarded_bytes: AtomicU64,
    /// Datagrams dropped by `--loss`.
    pub lost: AtomicU64,
    /// Extra copies sent by `--duplicate`.
    pub duplicated: AtomicU64,
}

impl Counters {
    /// One line of the exit report.
    pub fn line(&self, direction: &str) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "{direction}: received {} datagrams ({} bytes), forwarded {} datagrams ({} bytes), lost {}, duplicated {}",
            g(&self.received),
            g(&self.received_bytes),
            g(&self.forwarded),
            g(&self.forwarded_bytes),
            g(&self.lost),
            g(&self.duplicated)
        )
    }
}

/// The relay's shared state.
#[derive(Debug)]
struct Relay {
    impairment: Impairment,
    rng: Mutex<SeededRng>,
    up: Counters,
    down: Counters,
}

impl Relay {
    fn unit(&self) -> f64 {
        let mut b = [0u8; 8];
        self.rng.lock().unwrap_or_else(|e| e.into_inner()).fill(&mut b);
        (u64::from_be_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The delays of the copies to deliver: none (lost), one, or two (duplicated).
    fn fate(&self, counters: &Counters) -> Vec<Duration> {
        let i = &self.impairment;
        if self.unit() < i.loss {
            counters.lost.fetch_add(1, Ordering::Relaxed);
            return Vec::new();
        }
        let copies = if self.unit() < i.duplicate {
            counters.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        (0..copies).map(|_| i.delay + i.jitter.mul_f64(self.unit())).collect()
    }
}

enum Dest {
    Client(Arc<UdpSocket>, SocketAddr),
    Target(Arc<UdpSocket>),
}

/// Sends `payload` after each delay of its fate, counting what went out.
fn deliver(relay: &Arc<Relay>, upstream: bool, payload: Vec<u8>, dest: Dest) {
    let counters = if upstream { &relay.up } else { &relay.down };
    counters.received.fetch_add(1, Ordering::Relaxed);
    counters.received_bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
    let dest = Arc::new(dest);
    let payload = Arc::new(payload);
    for delay in relay.fate(counters) {
        let (relay, dest, payload) = (relay.clone(), dest.clone(), payload.clone());
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let sent = match &*dest {
                Dest::Client(sock, to) => sock.send_to(&payload, to).await,
                Dest::Target(sock) => sock.send(&payload).await,
            };
            if sent.is_ok() {
                let c = if upstream { &relay.up } else { &relay.down };
                c.forwarded.fetch_add(1, Ordering::Relaxed);
                c.forwarded_bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
            }
        });
    }
}

fn resolve(what: &str, s: &str) -> Result<SocketAddr, String> {
    s.to_socket_addrs()
        .map_err(|e| format!("{what} `{s}`: {e} (write ADDR:PORT, e.g. 127.0.0.1:5684)"))?
        .next()
        .ok_or_else(|| format!("{what} `{s}` resolves to no address"))
}

/// Forwards between clients on `listen` and `target` until the future is dropped.
async fn forward(relay: Arc<Relay>, listen: Arc<UdpSocket>, target: SocketAddr, max_clients: usize) {
    let mut clients: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = listen.recv_from(&mut buf).await else { continue };
        let upstream = match clients.get(&from) {
            Some(u) => u.clone(),
            None => {
                if clients.len() >= max_clients {
                    tracing::warn!(%from, "relay: too many clients, datagram dropped");
                    continue;
                }
                let bind: SocketAddr = if target.is_ipv4() {
                    (Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let sock = match UdpSocket::bind(bind).await {
                    Ok(s) if s.connect(target).await.is_ok() => Arc::new(s),
                    _ => {
                        tracing::warn!(%from, "relay: cannot open an upstream socket");
                        continue;
                    }
                };
                // The target's answers to this client.
                let (relay, sock2, listen2) = (relay.clone(), sock.clone(), listen.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        match sock2.recv(&mut buf).await {
                            Ok(n) => deliver(&relay, false, buf[..n].to_vec(), Dest::Client(listen2.clone(), from)),
                            // ICMP port unreachable from the target: keep listening.
                            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                });
                clients.insert(from, sock.clone());
                sock
            }
        };
        deliver(&relay, true, buf[..n].to_vec(), Dest::Target(upstream));
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs the relay. Returns the exit status.
pub async fn run(args: RelayArgs) -> u8 {
    let (listen, target) = match (resolve("--listen", &args.listen), resolve("--target", &args.target)) {
        (Ok(l), Ok(t)) => (l, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let sock = match UdpSocket::bind(listen).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e} (is the port taken? use --listen ADDR:PORT)");
            return EXIT_FAILURE;
        }
    };
    let local = sock.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let relay = Arc::new(Relay {
        impairment: Impairment {
            delay: Duration::from_millis(args.delay),
            jitter: Duration::from_millis(args.jitter),
            loss: args.loss / 100.0,
            duplicate: args.duplicate / 100.0,
        },
        rng: Mutex::new(SeededRng::from_seed_u64(args.seed)),
        up: Counters::default(),
        down: Counters::default(),
    });
    // On stdout, flushed, so scripts and tests can wait for it and read the port.
    println!("relaying {local} -> {target}");
    let _ = std::io::stdout().flush();
    let duration = async {
        match args.duration {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = forward(relay.clone(), sock, target, args.max_clients as usize) => {}
        _ = signal() => {}
        _ = duration => {}
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", relay.up.line("client->target"));
    let _ = writeln!(out, "{}", relay.down.line("target->client"));
    let _ = out.flush();
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(loss: f64, duplicate: f64, seed: u64) -> Relay {
        Relay {
            impairment: Impairment {
                delay: Duration::from_millis(100),
                jitter: Duration::from_millis(50),
                loss,
                duplicate,
            },
            rng: Mutex::new(SeededRng::from_seed_u64(seed)),
            up: Counters::default(),
            down: Counters::default(),
        }
    }

    #[test]
    fn fates_follow_the_probabilities_and_the_seed() {
        let r = relay(0.3, 0.1, 7);
        let fates: Vec<_> = (0..10_000).map(|_| r.fate(&r.up)).collect();
        let lost = fates.iter().filter(|f| f.is_empty()).count();
        let doubled = fates.iter().filter(|f| f.len() == 2).count();
        assert!((2700..3300).contains(&lost), "{lost}");
        assert!((500..900).contains(&doubled), "{doubled}");
        assert_eq!(r.up.lost.load(Ordering::Relaxed), lost as u64);
        let delays = fates.iter().flatten();
        assert!(delays.clone().all(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_millis(150)));
        // The same seed replays the same decisions.
        let again = relay(0.3, 0.1, 7);
        assert!((0..10_000).all(|i| again.fate(&again.up) == fates[i]));
        let clean = relay(0.0, 0.0, 1);
        assert!((0..1000).all(|_| clean.fate(&clean.up).len() == 1));
    }
}
