//! The retransmission-timer sweep of issue 11: DTLS handshakes on the `coaps-sim` network
//! over RTT × loss × seeds, with the RFC 6347 timers, the `auto` link profile and the matching
//! long-delay profile (`examples/timer_sweep.rs` prints the table; `coaps-dtls`'
//! `tests/timer_sweep.rs` checks it on a few seeds).
//!
//! One handshake: a client and a server endpoint (PSK, cookie exchange on, cookies valid for
//! `nb-iot`'s `LinkProfile::cookie_lifetime`) on a link with a
//! fixed one-way latency of RTT / 2 and the given loss each way, both sides with the same
//! policy; a fresh policy factory per handshake (no estimate carried between seeds). It ends
//! when both sides are connected, when either gives up, or after 30 virtual minutes.
//!
//! A retransmission is **spurious** when the timer fired less than one RTT after the flight's
//! previous transmission, every datagram of which had been delivered (not lost): its answer
//! was still on the way. Peer-triggered retransmissions (a DTLS 1.2 endpoint resending its
//! flight on receiving a repeated one) are in the datagram and byte counts, not in this one.

use crate::dtls::{Mode, configs};
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{ClientConfig, DtlsVersion, Endpoint, Event, LinkProfile, ServerConfig};
use coaps_sim::{Network, SimConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The timer policies compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timers {
    /// RFC 6347 §4.2.4.1: 1 s doubling to 60 s, the default budget (no policy factory).
    Rfc,
    /// A link profile on both sides.
    Link(LinkProfile),
}

impl Timers {
    /// The label in the table.
    pub fn label(self) -> String {
        match self {
            Self::Rfc => "rfc6347".into(),
            Self::Link(p) => p.to_string(),
        }
    }

    fn install(self, common: &mut coaps_dtls::CommonConfig) {
        if let Self::Link(p) = self {
            p.policy().install(common);
        }
    }
}

/// The long-delay profile whose typical RTT matches `rtt`: 802.15.4 up to 100 ms, LTE-M up to
/// 1 s, NB-IoT beyond.
pub fn matching_profile(rtt: Duration) -> LinkProfile {
    if rtt <= Duration::from_millis(100) {
        LinkProfile::Ieee802154
    } else if rtt <= Duration::from_secs(1) {
        LinkProfile::LteM
    } else {
        LinkProfile::NbIot
    }
}

/// One handshake's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Both sides connected.
    pub completed: bool,
    /// Virtual time from the first ClientHello to the last side connected (or to the end).
    pub time: Duration,
    /// Spurious retransmitted datagrams, both sides (see the module docs).
    pub spurious: u64,
    /// Datagrams sent, both sides.
    pub datagrams: u64,
    /// Bytes sent (UDP payload), both sides.
    pub bytes: u64,
}

struct Side {
    addr: SocketAddr,
    peer: SocketAddr,
    ep: Endpoint,
    connected: bool,
    closed: bool,
    /// The last burst this side sent: when, and whether every datagram of it got through.
    last_burst: Option<(Instant, bool)>,
    spurious: u64,
}

impl Side {
    fn retransmissions(&self) -> u64 {
        self.ep.connection(&self.peer).map_or(0, |c| c.stats().retransmissions)
    }

    fn events(&mut self) {
        while let Some((_, e)) = self.ep.poll_event() {
            match e {
                Event::Connected { .. } => self.connected = true,
                Event::Closed(_) => self.closed = true,
                _ => {}
            }
        }
    }

    /// Sends what the endpoint has; `timer_retransmission` when a timer just resent a flight.
    fn flush(&mut self, net: &mut Network, rtt: Duration, timer_retransmission: bool) {
        let now = net.now();
        let mut sent = 0u64;
        let mut all_delivered = true;
        while let Some(t) = self.ep.poll_transmit() {
            let lost_before = net.stats().dropped_loss;
            net.send(self.addr, t.destination, t.payload);
            all_delivered &= net.stats().dropped_loss == lost_before;
            sent += 1;
        }
        if sent == 0 {
            return;
        }
        if timer_retransmission
            && let Some((at, delivered)) = self.last_burst
            && delivered
            && now.saturating_duration_since(at) < rtt
        {
            self.spurious += sent;
        }
        self.last_burst = Some((now, all_delivered));
    }
}

const SERVER: &str = "10.0.0.1:5684";
const CLIENT: &str = "10.0.0.2:40000";

/// The configurations of one run: PSK (`TLS_PSK_WITH_AES_128_CCM_8` in 1.2, the external PSK
/// in 1.3), cookies on, `timers` on both sides.
pub fn run_configs(version: DtlsVersion, timers: Timers) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let (server, client) = configs(Mode::Psk, None);
    let mut server = Arc::unwrap_or_clone(server);
    let mut client = Arc::unwrap_or_clone(client);
    client.version = version;
    server.dtls13 = version == DtlsVersion::Dtls13;
    timers.install(&mut server.common);
    // The same server for every policy, with cookies that outlive the longest retransmission
    // span compared (nb-iot's budget): with the default 60 s, a second ClientHello retransmitted
    // for longer than that carries an expired cookie, and a DTLS 1.3 client cannot take a second
    // HelloRetryRequest (RFC 8446 §4.1.4), so the handshake dies on the cookie, not on the timers.
    let lifetime = LinkProfile::NbIot.cookie_lifetime();
    server.cookie = Some(coaps_dtls::CookieConfig { lifetime, rotate_every: lifetime });
    // Likewise a handshake whose peer is silent for longer than the default 15 s half-open
    // lifetime (a 5 x RTT timer doubling at 3 s RTT) would die on that quota, not on the timers.
    server.quotas.half_open_lifetime = lifetime;
    timers.install(&mut client.common);
    (Arc::new(server), Arc::new(client))
}

/// One handshake with `timers` at `rtt` and `loss` (each way, 0..1), on `seed`.
pub fn handshake(version: DtlsVersion, timers: Timers, rtt: Duration, loss: f64, seed: u64) -> Outcome {
    let (server_cfg, client_cfg) = run_configs(version, timers);
    let mut net = Network::new(seed, SimConfig::ideal().with_latency(rtt / 2).with_loss(loss).with_mtu(1500));
    let start = net.now();
    let (s_addr, c_addr): (SocketAddr, SocketAddr) = (SERVER.parse().unwrap(), CLIENT.parse().unwrap());
    let mut server = Side {
        addr: s_addr,
        peer: c_addr,
        ep: Endpoint::server(server_cfg, SeededRng::from_seed_u64(seed ^ 0x5eed), start),
        connected: false,
        closed: false,
        last_burst: None,
        spurious: 0,
    };
    let mut client_ep = Endpoint::client(SeededRng::from_seed_u64(seed ^ 0xc1));
    client_ep.connect(start, s_addr, client_cfg, "localhost", None).expect("connect");
    let mut client = Side {
        addr: c_addr,
        peer: s_addr,
        ep: client_ep,
        connected: false,
        closed: false,
        last_burst: None,
        spurious: 0,
    };
    client.flush(&mut net, rtt, false);
    let limit = start + Duration::from_secs(1800);
    let mut done_at = None;
    for _ in 0..100_000 {
        if client.connected && server.connected {
            done_at = Some(net.now());
            break;
        }
        if client.closed || server.closed {
            break;
        }
        let next =
            [net.next_delivery_time(), client.ep.poll_timeout(), server.ep.poll_timeout()].into_iter().flatten().min();
        let Some(next) = next.filter(|t| *t <= limit) else { break };
        net.advance_to(next.max(net.now()));
        let now = net.now();
        while let Some(d) = net.pop_due(now) {
            let side = if d.to == s_addr { &mut server } else { &mut client };
            side.ep.handle_datagram(now, d.from, &d.payload);
            side.events();
            side.flush(&mut net, rtt, false);
        }
        for side in [&mut client, &mut server] {
            if side.ep.poll_timeout().is_some_and(|t| t <= now) {
                let before = side.retransmissions();
                side.ep.handle_timeout(now);
                side.events();
                let fired = side.retransmissions() > before;
                side.flush(&mut net, rtt, fired);
            }
        }
    }
    let stats = net.stats();
    Outcome {
        completed: done_at.is_some(),
        time: done_at.unwrap_or(net.now()).saturating_duration_since(start),
        spurious: client.spurious + server.spurious,
        datagrams: stats.sent,
        bytes: stats.bytes_sent,
    }
}

/// A cell of the table: one policy at one RTT and loss, over seeds.
#[derive(Debug, Clone)]
pub struct Cell {
    /// DTLS version.
    pub version: DtlsVersion,
    /// The policy.
    pub timers: Timers,
    /// Round-trip time.
    pub rtt: Duration,
    /// Loss each way, 0..1.
    pub loss: f64,
    /// Handshakes run.
    pub runs: u64,
    /// Handshakes completed.
    pub completed: u64,
    /// Median completion time of the completed ones.
    pub median: Duration,
    /// 95th percentile completion time of the completed ones.
    pub p95: Duration,
    /// Spurious retransmitted datagrams, total.
    pub spurious: u64,
    /// Datagrams sent, total.
    pub datagrams: u64,
    /// Bytes sent, total.
    pub bytes: u64,
}

impl Cell {
    /// Completion rate in percent.
    pub fn completion(&self) -> f64 {
        100.0 * self.completed as f64 / self.runs.max(1) as f64
    }
}

/// Runs `seeds` handshakes of one cell.
pub fn cell(version: DtlsVersion, timers: Timers, rtt: Duration, loss: f64, seeds: std::ops::Range<u64>) -> Cell {
    let outcomes: Vec<Outcome> = seeds.map(|s| handshake(version, timers, rtt, loss, s)).collect();
    let mut times: Vec<Duration> = outcomes.iter().filter(|o| o.completed).map(|o| o.time).collect();
    times.sort();
    let pct = |p: usize| times.get((times.len() * p).div_ceil(100).saturating_sub(1)).copied().unwrap_or_default();
    Cell {
        version,
        timers,
        rtt,
        loss,
        runs: outcomes.len() as u64,
        completed: times.len() as u64,
        median: pct(50),
        p95: pct(95),
        spurious: outcomes.iter().map(|o| o.spurious).sum(),
        datagrams: outcomes.iter().map(|o| o.datagrams).sum(),
        bytes: outcomes.iter().map(|o| o.bytes).sum(),
    }
}

/// The RTTs of the sweep.
pub const RTTS_MS: [u64; 4] = [50, 500, 1500, 3000];
/// The losses of the sweep (each way).
pub const LOSSES: [f64; 3] = [0.0, 0.1, 0.3];

/// The whole sweep for `version`: every RTT × loss × {RFC, auto, matching profile}.
pub fn sweep(version: DtlsVersion, seeds: u64) -> Vec<Cell> {
    let mut cells = Vec::new();
    for rtt in RTTS_MS.map(Duration::from_millis) {
        for loss in LOSSES {
            for timers in [Timers::Rfc, Timers::Link(LinkProfile::Auto), Timers::Link(matching_profile(rtt))] {
                cells.push(cell(version, timers, rtt, loss, 0..seeds));
            }
        }
    }
    cells
}

/// The table header of [`row`].
pub const HEADER: &str = "| DTLS | RTT | loss | timers | completed | median | p95 | spurious/hs | datagrams/hs | bytes/hs |\n\
                          |---|---|---|---|---|---|---|---|---|---|";

/// One Markdown table row.
pub fn row(c: &Cell) -> String {
    let per = |n: u64| n as f64 / c.runs.max(1) as f64;
    format!(
        "| {} | {} ms | {:.0} % | {} | {:.1} % | {:.2} s | {:.2} s | {:.2} | {:.1} | {:.0} |",
        if c.version == DtlsVersion::Dtls13 { "1.3" } else { "1.2" },
        c.rtt.as_millis(),
        c.loss * 100.0,
        c.timers.label(),
        c.completion(),
        c.median.as_secs_f64(),
        c.p95.as_secs_f64(),
        per(c.spurious),
        per(c.datagrams),
        per(c.bytes)
    )
}
