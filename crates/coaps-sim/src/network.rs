//! The simulated datagram network: impairments, delivery queue, virtual clock, statistics.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::config::SimConfig;

/// A datagram handed out by [`Network::pop_due`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Sender address.
    pub from: SocketAddr,
    /// Destination address.
    pub to: SocketAddr,
    /// Payload as delivered (possibly corrupted).
    pub payload: Vec<u8>,
    /// Virtual time at which the datagram arrives.
    pub at: Instant,
}

/// Counters kept by a [`Network`], in total ([`Network::stats`]) and per direction
/// ([`Network::link_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams passed to [`Network::send`].
    pub sent: u64,
    /// Copies handed out by [`Network::pop_due`] (duplicates count separately).
    pub delivered: u64,
    /// Datagrams dropped by the random loss draw.
    pub dropped_loss: u64,
    /// Datagrams dropped because they exceeded the link MTU.
    pub dropped_mtu: u64,
    /// Datagrams dropped by the filter installed with [`Network::set_filter`].
    pub dropped_filter: u64,
    /// Datagrams that arrived at an address a NAT no longer maps ([`Network::rebind`]).
    pub dropped_unbound: u64,
    /// Extra copies created by the duplication draw.
    pub duplicated: u64,
    /// Copies that had one bit flipped.
    pub corrupted: u64,
    /// Payload bytes passed to [`Network::send`] (including datagrams later dropped).
    pub bytes_sent: u64,
    /// Payload bytes handed out by [`Network::pop_due`].
    pub bytes_delivered: u64,
}

impl NetStats {
    fn add(&mut self, other: &NetStats) {
        self.sent += other.sent;
        self.delivered += other.delivered;
        self.dropped_loss += other.dropped_loss;
        self.dropped_mtu += other.dropped_mtu;
        self.dropped_filter += other.dropped_filter;
        self.dropped_unbound += other.dropped_unbound;
        self.duplicated += other.duplicated;
        self.corrupted += other.corrupted;
        self.bytes_sent += other.bytes_sent;
        self.bytes_delivered += other.bytes_delivered;
    }
}

/// Why a datagram did not make it onto the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Random loss.
    Loss,
    /// Payload larger than the link MTU.
    Mtu,
    /// Rejected by the filter installed with [`Network::set_filter`].
    Filter,
    /// Arrived at an address a NAT forgot when its node was rebound ([`Network::rebind`]).
    Unbound,
}

/// What happened to a datagram, as recorded in the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceKind {
    /// The datagram was dropped when sent.
    Dropped(DropReason),
    /// A copy was queued for delivery at `deliver_at` (offset from [`Network::start`]).
    Scheduled {
        /// Arrival time, as an offset from the network's start.
        deliver_at: Duration,
        /// This copy is the extra one created by duplication.
        duplicate: bool,
        /// One bit of this copy was flipped.
        corrupted: bool,
    },
    /// A copy was handed out by [`Network::pop_due`].
    Delivered,
}

/// One entry of the network trace (see [`Network::set_tracing`]).
///
/// Times are offsets from [`Network::start`], so traces of two runs compare equal exactly when
/// the runs behaved identically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceEvent {
    /// Virtual time of the event, as an offset from the network's start.
    pub at: Duration,
    /// Sender address.
    pub from: SocketAddr,
    /// Destination address.
    pub to: SocketAddr,
    /// Payload length in bytes.
    pub len: usize,
    /// FNV-1a hash of the payload (after any corruption for scheduled/delivered copies).
    pub digest: u64,
    /// What happened.
    pub kind: TraceKind,
}

type Filter = Box<dyn FnMut(SocketAddr, SocketAddr, &[u8]) -> bool>;

#[derive(Debug)]
struct InFlight {
    from: SocketAddr,
    to: SocketAddr,
    payload: Vec<u8>,
}

/// A seeded, deterministic datagram network with a virtual clock.
///
/// Every random decision (loss, jitter, duplication, corruption) comes from one ChaCha8 stream
/// seeded by [`Network::new`], and the delivery queue is ordered by (arrival time, insertion
/// counter), so the same seed and the same sequence of calls give the same deliveries.
pub struct Network {
    seed: u64,
    rng: ChaCha8Rng,
    start: Instant,
    now: Instant,
    default_config: SimConfig,
    links: BTreeMap<(SocketAddr, SocketAddr), SimConfig>,
    queue: BTreeMap<(Instant, u64), InFlight>,
    next_seq: u64,
    stats: BTreeMap<(SocketAddr, SocketAddr), NetStats>,
    filter: Option<Filter>,
    tracing: bool,
    trace: Vec<TraceEvent>,
    /// NATs in front of nodes, by the node's own address ([`Network::rebind`]).
    nats: BTreeMap<SocketAddr, Nat>,
}

/// A NAT in front of one node: what the rest of the network sees of it.
#[derive(Debug, Clone)]
struct Nat {
    /// The address its datagrams leave with and arrive at.
    public: SocketAddr,
    /// Earlier public addresses (the node's own first): datagrams to them are dropped.
    forgotten: Vec<SocketAddr>,
    /// Rebindings still to come: (when, new public address).
    scheduled: Vec<(Instant, SocketAddr)>,
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("seed", &self.seed)
            .field("elapsed", &self.elapsed())
            .field("default_config", &self.default_config)
            .field("links", &self.links)
            .field("in_flight", &self.queue.len())
            .field("stats", &self.stats())
            .field("filter", &self.filter.is_some())
            .field("tracing", &self.tracing)
            .finish_non_exhaustive()
    }
}

impl Network {
    /// Creates a network whose randomness is derived from `seed`, with `config` applied to
    /// every direction that has no override. The virtual clock starts at an `Instant` captured
    /// now; only differences from [`start`](Self::start) are meaningful.
    pub fn new(seed: u64, config: SimConfig) -> Self {
        let start = Instant::now();
        Self {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            start,
            now: start,
            default_config: config,
            links: BTreeMap::new(),
            queue: BTreeMap::new(),
            next_seq: 0,
            stats: BTreeMap::new(),
            filter: None,
            tracing: false,
            trace: Vec::new(),
            nats: BTreeMap::new(),
        }
    }

    /// The seed this network was created with (print it when a test fails, to replay).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The instant the virtual clock started at.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time elapsed since [`start`](Self::start).
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Moves the clock forward to `t`. The clock never goes backwards: an earlier `t` is
    /// ignored. Datagrams are not delivered by this call; use [`pop_due`](Self::pop_due).
    pub fn advance_to(&mut self, t: Instant) {
        if t > self.now {
            self.now = t;
            self.apply_rebinds();
        }
    }

    /// Moves the clock forward by `d`.
    pub fn advance_by(&mut self, d: Duration) {
        self.now += d;
        self.apply_rebinds();
    }

    /// The configuration used for directions without an override.
    pub fn default_config(&self) -> &SimConfig {
        &self.default_config
    }

    /// Replaces the configuration used for directions without an override.
    pub fn set_default_config(&mut self, config: SimConfig) {
        self.default_config = config;
    }

    /// Overrides the configuration of the direction `from → to` only.
    pub fn set_link(&mut self, from: SocketAddr, to: SocketAddr, config: SimConfig) {
        self.links.insert((from, to), config);
    }

    /// Overrides the configuration of both directions between `a` and `b`.
    pub fn set_link_both(&mut self, a: SocketAddr, b: SocketAddr, config: SimConfig) {
        self.set_link(a, b, config);
        self.set_link(b, a, config);
    }

    /// Removes the override of the direction `from → to`.
    pub fn clear_link(&mut self, from: SocketAddr, to: SocketAddr) {
        self.links.remove(&(from, to));
    }

    /// The configuration in force for the direction `from → to`.
    pub fn link_config(&self, from: SocketAddr, to: SocketAddr) -> &SimConfig {
        self.links.get(&(from, to)).unwrap_or(&self.default_config)
    }

    /// Installs a filter consulted for every sent datagram before any impairment: returning
    /// `false` drops it (counted in [`NetStats::dropped_filter`]). Lets a test drop one chosen
    /// flight deterministically. The filter consumes no randomness.
    pub fn set_filter<F>(&mut self, filter: F)
    where
        F: FnMut(SocketAddr, SocketAddr, &[u8]) -> bool + 'static,
    {
        self.filter = Some(Box::new(filter));
    }

    /// Removes the filter installed with [`set_filter`](Self::set_filter).
    pub fn clear_filter(&mut self) {
        self.filter = None;
    }

    /// Turns recording of [`TraceEvent`]s on or off (off by default).
    pub fn set_tracing(&mut self, on: bool) {
        self.tracing = on;
    }

    /// The events recorded since tracing was turned on.
    pub fn trace(&self) -> &[TraceEvent] {
        &self.trace
    }

    /// Returns the recorded events and clears the trace.
    pub fn take_trace(&mut self) -> Vec<TraceEvent> {
        std::mem::take(&mut self.trace)
    }

    /// Sends `payload` from `from` to `to` at the current virtual time.
    ///
    /// In order: the filter may reject it; a payload larger than the link MTU is dropped; the
    /// loss draw may drop it; otherwise it is queued for `now + latency + U[0, jitter]`, a
    /// duplicate may be queued with an independent delay, and each queued copy may get one bit
    /// flipped.
    pub fn send(&mut self, from: SocketAddr, to: SocketAddr, payload: Vec<u8>) {
        let from = self.public_addr(from);
        let cfg = *self.link_config(from, to);
        let len = payload.len();
        {
            let st = self.stats.entry((from, to)).or_default();
            st.sent += 1;
            st.bytes_sent += len as u64;
        }

        if let Some(filter) = self.filter.as_mut()
            && !filter(from, to, &payload)
        {
            self.drop_datagram(from, to, &payload, DropReason::Filter);
            return;
        }
        if len > cfg.mtu {
            self.drop_datagram(from, to, &payload, DropReason::Mtu);
            return;
        }
        if self.chance(cfg.loss) {
            self.drop_datagram(from, to, &payload, DropReason::Loss);
            return;
        }

        let copy = self.chance(cfg.duplicate).then(|| payload.clone());
        self.enqueue(from, to, payload, &cfg, false);
        if let Some(copy) = copy {
            self.enqueue(from, to, copy, &cfg, true);
        }
    }

    /// Arrival time of the earliest queued datagram.
    pub fn next_delivery_time(&self) -> Option<Instant> {
        self.queue.keys().next().map(|&(at, _)| at)
    }

    /// Removes and returns the earliest queued datagram if it arrives at or before `now`.
    /// Datagrams with equal arrival times come out in the order they were queued.
    ///
    /// A datagram to a node behind a NAT ([`Network::rebind`]) is handed out addressed to the
    /// node itself; one to an address the NAT forgot is dropped ([`DropReason::Unbound`]).
    pub fn pop_due(&mut self, now: Instant) -> Option<Delivery> {
        loop {
            let entry = self.queue.first_entry()?;
            if entry.key().0 > now {
                return None;
            }
            let ((at, _), d) = entry.remove_entry();
            if self.nats.values().any(|n| n.forgotten.contains(&d.to)) {
                self.stats.entry((d.from, d.to)).or_default().dropped_unbound += 1;
                self.record(at, d.from, d.to, &d.payload, TraceKind::Dropped(DropReason::Unbound));
                continue;
            }
            let st = self.stats.entry((d.from, d.to)).or_default();
            st.delivered += 1;
            st.bytes_delivered += d.payload.len() as u64;
            self.record(at, d.from, d.to, &d.payload, TraceKind::Delivered);
            let to = self.nats.iter().find(|(_, n)| n.public == d.to).map_or(d.to, |(node, _)| *node);
            return Some(Delivery { from: d.from, to, payload: d.payload, at });
        }
    }

    /// Puts `node` behind a NAT that maps it to `public` from now on, as a NAT rebinding does
    /// after idle: `node`'s datagrams leave with source `public`, datagrams to `public` reach
    /// `node`, and datagrams to its earlier address (its own, or the last public one), even
    /// those already in flight, are dropped on arrival. `node` itself is not told.
    pub fn rebind(&mut self, node: SocketAddr, public: SocketAddr) {
        let nat =
            self.nats.entry(node).or_insert_with(|| Nat { public: node, forgotten: Vec::new(), scheduled: Vec::new() });
        if nat.public != public {
            let old = std::mem::replace(&mut nat.public, public);
            nat.forgotten.retain(|a| *a != public);
            nat.forgotten.push(old);
        }
    }

    /// [`Network::rebind`] at virtual time `at` (at once if that has passed).
    pub fn rebind_at(&mut self, node: SocketAddr, at: Instant, public: SocketAddr) {
        if at <= self.now {
            self.rebind(node, public);
            return;
        }
        let nat =
            self.nats.entry(node).or_insert_with(|| Nat { public: node, forgotten: Vec::new(), scheduled: Vec::new() });
        nat.scheduled.push((at, public));
        nat.scheduled.sort_by_key(|(t, _)| *t);
    }

    /// The address the rest of the network sees `node` at (itself unless rebound).
    pub fn public_addr(&self, node: SocketAddr) -> SocketAddr {
        self.nats.get(&node).map_or(node, |n| n.public)
    }

    /// Applies the rebindings due by `now`.
    fn apply_rebinds(&mut self) {
        let now = self.now;
        let due: Vec<(SocketAddr, SocketAddr)> = self
            .nats
            .iter_mut()
            .flat_map(|(node, n)| {
                let k = n.scheduled.iter().take_while(|(t, _)| *t <= now).count();
                n.scheduled.drain(..k).map(|(_, p)| (*node, p)).collect::<Vec<_>>()
            })
            .collect();
        for (node, public) in due {
            self.rebind(node, public);
        }
    }

    /// Number of datagrams queued and not yet delivered.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Totals over all directions.
    pub fn stats(&self) -> NetStats {
        let mut total = NetStats::default();
        for st in self.stats.values() {
            total.add(st);
        }
        total
    }

    /// Counters of the direction `from → to`.
    pub fn link_stats(&self, from: SocketAddr, to: SocketAddr) -> NetStats {
        self.stats.get(&(from, to)).copied().unwrap_or_default()
    }

    /// Payload bytes sent by `addr`, to any destination.
    pub fn bytes_sent_by(&self, addr: SocketAddr) -> u64 {
        self.stats.iter().filter(|((from, _), _)| *from == addr).map(|(_, st)| st.bytes_sent).sum()
    }

    fn drop_datagram(&mut self, from: SocketAddr, to: SocketAddr, payload: &[u8], r: DropReason) {
        let st = self.stats.entry((from, to)).or_default();
        match r {
            DropReason::Loss => st.dropped_loss += 1,
            DropReason::Mtu => st.dropped_mtu += 1,
            DropReason::Filter => st.dropped_filter += 1,
            DropReason::Unbound => st.dropped_unbound += 1,
        }
        self.record(self.now, from, to, payload, TraceKind::Dropped(r));
    }

    fn enqueue(&mut self, from: SocketAddr, to: SocketAddr, mut payload: Vec<u8>, cfg: &SimConfig, duplicate: bool) {
        let delay = cfg.latency + self.uniform_duration(cfg.jitter);
        let at = self.now + delay;
        // Always draw, so enabling corruption does not shift the other draws of this copy.
        let corrupt = self.chance(cfg.corrupt);
        let bit = self.rng.next_u64();
        let corrupted = corrupt && !payload.is_empty();
        if corrupted {
            let bits = payload.len() as u64 * 8;
            let bit = bit % bits;
            payload[(bit / 8) as usize] ^= 1 << (bit % 8);
        }
        {
            let st = self.stats.entry((from, to)).or_default();
            if duplicate {
                st.duplicated += 1;
            }
            if corrupted {
                st.corrupted += 1;
            }
        }
        self.record(
            self.now,
            from,
            to,
            &payload,
            TraceKind::Scheduled { deliver_at: at - self.start, duplicate, corrupted },
        );
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.insert((at, seq), InFlight { from, to, payload });
    }

    fn record(&mut self, at: Instant, from: SocketAddr, to: SocketAddr, payload: &[u8], kind: TraceKind) {
        if self.tracing {
            self.trace.push(TraceEvent {
                at: at - self.start,
                from,
                to,
                len: payload.len(),
                digest: fnv1a(payload),
                kind,
            });
        }
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// One draw, taken whatever `p` is, so that changing one probability does not shift the
    /// random stream seen by the others.
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in `[0, max]` at nanosecond resolution; one draw, even when `max` is zero.
    fn uniform_duration(&mut self, max: Duration) -> Duration {
        let max_ns = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        let x = self.rng.next_u64();
        let span = u128::from(max_ns) + 1;
        // Multiply-shift maps a 64-bit draw onto [0, span) without a modulo bias worth noting.
        let ns = ((u128::from(x) * span) >> 64) as u64;
        Duration::from_nanos(ns)
    }
}

fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
