use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coaps_sim::{
    DropReason, Endpoint, EndpointSet, NetStats, Network, SimConfig, SimError, Simulation, TraceKind, check_seeds,
};

fn a() -> SocketAddr {
    "10.0.0.1:5684".parse().unwrap()
}
fn b() -> SocketAddr {
    "10.0.0.2:5684".parse().unwrap()
}

/// (arrival offset, from, to, payload) for every delivered datagram.
type Trace = Vec<(Duration, SocketAddr, SocketAddr, Vec<u8>)>;

/// Sends `n` numbered datagrams each way, one every millisecond, and records every delivery.
fn run_trace(seed: u64, cfg: SimConfig, n: u32) -> (Trace, NetStats) {
    let mut net = Network::new(seed, cfg);
    let start = net.start();
    let mut trace = Vec::new();
    for i in 0..n {
        net.send(a(), b(), i.to_be_bytes().to_vec());
        net.send(b(), a(), (i | 0x8000_0000).to_be_bytes().to_vec());
        net.advance_by(Duration::from_millis(1));
        while let Some(d) = net.pop_due(net.now()) {
            trace.push((d.at - start, d.from, d.to, d.payload));
        }
    }
    while let Some(t) = net.next_delivery_time() {
        net.advance_to(t);
        while let Some(d) = net.pop_due(net.now()) {
            trace.push((d.at - start, d.from, d.to, d.payload));
        }
    }
    (trace, net.stats())
}

fn rough() -> SimConfig {
    SimConfig::default().with_jitter(Duration::from_millis(30)).with_loss(0.2).with_duplicate(0.1).with_corrupt(0.05)
}

#[test]
fn same_seed_same_trace() {
    let (t1, s1) = run_trace(42, rough(), 500);
    let (t2, s2) = run_trace(42, rough(), 500);
    assert!(t1.len() > 500, "trace too short to be meaningful: {}", t1.len());
    assert_eq!(t1, t2);
    assert_eq!(s1, s2);
}

#[test]
fn same_seed_same_event_trace() {
    let run = |seed| {
        let mut net = Network::new(seed, rough().with_mtu(3));
        net.set_tracing(true);
        for i in 0..200u32 {
            let len = (i % 5) as usize;
            net.send(a(), b(), vec![i as u8; len]);
            net.advance_by(Duration::from_millis(2));
        }
        net.advance_by(Duration::from_secs(1));
        while net.pop_due(net.now()).is_some() {}
        net.take_trace()
    };
    let t1 = run(9);
    assert_eq!(t1, run(9));
    assert_ne!(t1, run(10));
    // Every kind of event shows up, so the comparison covers all of them.
    assert!(t1.iter().any(|e| e.kind == TraceKind::Dropped(DropReason::Mtu)));
    assert!(t1.iter().any(|e| e.kind == TraceKind::Dropped(DropReason::Loss)));
    assert!(t1.iter().any(|e| e.kind == TraceKind::Delivered));
    assert!(t1.iter().any(|e| matches!(e.kind, TraceKind::Scheduled { duplicate: true, .. })));
    assert!(t1.iter().any(|e| matches!(e.kind, TraceKind::Scheduled { corrupted: true, .. })));
}

#[test]
fn different_seed_different_trace() {
    let (t1, _) = run_trace(1, rough(), 500);
    let (t2, _) = run_trace(2, rough(), 500);
    assert_ne!(t1, t2);
}

#[test]
fn loss_rate_matches() {
    let mut net = Network::new(3, SimConfig::default().with_loss(0.2));
    for i in 0..10_000u32 {
        net.send(a(), b(), i.to_be_bytes().to_vec());
    }
    let st = net.stats();
    assert_eq!(st.sent, 10_000);
    // Binomial(10000, 0.2) has sd 40; allow 5 sd.
    assert!((1800..=2200).contains(&st.dropped_loss), "dropped {}", st.dropped_loss);
    assert_eq!(net.in_flight() as u64, 10_000 - st.dropped_loss);
    net.advance_by(Duration::from_secs(1));
    let mut delivered = 0;
    while net.pop_due(net.now()).is_some() {
        delivered += 1;
    }
    assert_eq!(delivered, 10_000 - st.dropped_loss);
    assert_eq!(net.stats().delivered, delivered);
}

#[test]
fn no_loss_means_everything_arrives_on_time_and_in_order() {
    let lat = Duration::from_millis(25);
    let mut net = Network::new(5, SimConfig::default().with_latency(lat));
    let start = net.start();
    for i in 0..100u8 {
        net.send(a(), b(), vec![i]);
        net.advance_by(Duration::from_millis(1));
    }
    // Nothing is due before the first arrival.
    assert_eq!(net.next_delivery_time(), Some(start + lat));
    assert!(net.pop_due(start + lat - Duration::from_nanos(1)).is_none());
    net.advance_by(Duration::from_secs(1));
    let mut got = Vec::new();
    while let Some(d) = net.pop_due(net.now()) {
        assert_eq!(d.at, start + lat + Duration::from_millis(u64::from(d.payload[0])));
        got.push(d.payload[0]);
    }
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}

#[test]
fn jitter_reorders_within_bounds() {
    let lat = Duration::from_millis(10);
    let jit = Duration::from_millis(20);
    let mut net = Network::new(11, SimConfig::default().with_latency(lat).with_jitter(jit));
    let start = net.start();
    for i in 0..100u8 {
        net.send(a(), b(), vec![i]);
        net.advance_by(Duration::from_millis(1));
    }
    net.advance_by(Duration::from_secs(1));
    let mut got = Vec::new();
    while let Some(d) = net.pop_due(net.now()) {
        let sent_at = start + Duration::from_millis(u64::from(d.payload[0]));
        let delay = d.at - sent_at;
        assert!(delay >= lat && delay <= lat + jit, "delay {delay:?}");
        got.push(d.payload[0]);
    }
    assert_eq!(got.len(), 100);
    let inversions = got.windows(2).filter(|w| w[0] > w[1]).count();
    assert!(inversions > 10, "only {inversions} inversions: {got:?}");
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..100).collect::<Vec<_>>());
}

#[test]
fn mtu_drops_oversized() {
    let mut net = Network::new(0, SimConfig::default().with_mtu(100));
    net.send(a(), b(), vec![0; 99]);
    net.send(a(), b(), vec![1; 100]);
    net.send(a(), b(), vec![2; 101]);
    net.send(a(), b(), vec![3; 1500]);
    let st = net.stats();
    assert_eq!(st.dropped_mtu, 2);
    assert_eq!(st.sent, 4);
    assert_eq!(st.bytes_sent, 99 + 100 + 101 + 1500);
    net.advance_by(Duration::from_secs(1));
    let lens: Vec<_> = std::iter::from_fn(|| net.pop_due(net.now())).map(|d| d.payload.len()).collect();
    assert_eq!(lens, vec![99, 100]);
}

#[test]
fn duplication_produces_duplicates() {
    let mut net = Network::new(4, SimConfig::default().with_duplicate(1.0));
    for i in 0..50u8 {
        net.send(a(), b(), vec![i]);
    }
    net.advance_by(Duration::from_secs(1));
    let mut counts = [0u32; 50];
    while let Some(d) = net.pop_due(net.now()) {
        counts[usize::from(d.payload[0])] += 1;
    }
    assert!(counts.iter().all(|&c| c == 2), "{counts:?}");
    assert_eq!(net.stats().duplicated, 50);
    assert_eq!(net.stats().delivered, 100);

    let mut net = Network::new(4, SimConfig::default().with_duplicate(0.5));
    for _ in 0..10_000 {
        net.send(a(), b(), vec![0]);
    }
    let dup = net.stats().duplicated;
    assert!((4800..=5200).contains(&dup), "duplicated {dup}");
}

#[test]
fn corruption_flips_exactly_one_bit() {
    let mut net = Network::new(8, SimConfig::default().with_corrupt(1.0));
    let original = vec![0x5a; 64];
    for _ in 0..200 {
        net.send(a(), b(), original.clone());
    }
    // An empty payload has no bit to flip.
    net.send(a(), b(), Vec::new());
    net.advance_by(Duration::from_secs(1));
    let mut positions = std::collections::BTreeSet::new();
    while let Some(d) = net.pop_due(net.now()) {
        if d.payload.is_empty() {
            continue;
        }
        let diff: u32 = d.payload.iter().zip(&original).map(|(x, y)| (x ^ y).count_ones()).sum();
        assert_eq!(diff, 1);
        let byte = d.payload.iter().zip(&original).position(|(x, y)| x != y);
        positions.insert(byte);
    }
    assert_eq!(net.stats().corrupted, 200);
    assert!(positions.len() > 20, "flips are spread over the payload");
}

#[test]
fn per_direction_config() {
    let mut net = Network::new(6, SimConfig::default());
    net.set_link(a(), b(), SimConfig::default().with_loss(1.0));
    net.set_link(b(), a(), SimConfig::default().with_latency(Duration::from_millis(50)));
    for _ in 0..10 {
        net.send(a(), b(), vec![1]);
        net.send(b(), a(), vec![2, 2]);
    }
    assert_eq!(net.link_stats(a(), b()).dropped_loss, 10);
    assert_eq!(net.link_stats(b(), a()).dropped_loss, 0);
    assert_eq!(net.next_delivery_time(), Some(net.start() + Duration::from_millis(50)));
    assert_eq!(net.bytes_sent_by(a()), 10);
    assert_eq!(net.bytes_sent_by(b()), 20);
    net.clear_link(a(), b());
    net.send(a(), b(), vec![3]);
    assert_eq!(net.link_stats(a(), b()).dropped_loss, 10);
    assert_eq!(net.in_flight(), 11);
}

#[test]
fn filter_drops_chosen_datagram() {
    let mut net = Network::new(0, SimConfig::default());
    let mut n = 0;
    net.set_filter(move |from, _to, _p| {
        if from == a() {
            n += 1;
            n != 2
        } else {
            true
        }
    });
    for i in 0..4u8 {
        net.send(a(), b(), vec![i]);
    }
    net.advance_by(Duration::from_secs(1));
    let got: Vec<u8> = std::iter::from_fn(|| net.pop_due(net.now())).map(|d| d.payload[0]).collect();
    assert_eq!(got, vec![0, 2, 3]);
    assert_eq!(net.stats().dropped_filter, 1);
}

// ---------------------------------------------------------------------------------------------
// Endpoints

/// Sends `ping <seq>` and retransmits with exponential backoff until a matching pong arrives.
struct Pinger {
    addr: SocketAddr,
    peer: SocketAddr,
    rto: Duration,
    timer: Option<Instant>,
    pending: bool,
    sent: u32,
    done_at: Option<Instant>,
}

impl Pinger {
    fn new(addr: SocketAddr, peer: SocketAddr) -> Self {
        Self { addr, peer, rto: Duration::from_millis(100), timer: None, pending: true, sent: 0, done_at: None }
    }
}

impl Endpoint for Pinger {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        if from == self.peer && payload.starts_with(b"pong ") && self.done_at.is_none() {
            self.done_at = Some(now);
            self.timer = None;
            self.pending = false;
        }
    }
    fn handle_timeout(&mut self, _now: Instant) {
        self.pending = true;
        self.rto = (self.rto * 2).min(Duration::from_secs(2));
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        if !self.pending || self.done_at.is_some() {
            return None;
        }
        self.pending = false;
        self.timer = Some(now + self.rto);
        self.sent += 1;
        Some((self.peer, format!("ping {}", self.sent).into_bytes()))
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }
}

/// Answers every `ping <seq>` with `pong <seq>`.
struct Ponger {
    addr: SocketAddr,
    out: Vec<(SocketAddr, Vec<u8>)>,
    pings: u32,
}

impl Ponger {
    fn new(addr: SocketAddr) -> Self {
        Self { addr, out: Vec::new(), pings: 0 }
    }
}

impl Endpoint for Ponger {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn handle_datagram(&mut self, _now: Instant, from: SocketAddr, payload: &[u8]) {
        if let Some(seq) = payload.strip_prefix(b"ping ") {
            self.pings += 1;
            let mut reply = b"pong ".to_vec();
            reply.extend_from_slice(seq);
            self.out.push((from, reply));
        }
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn poll_transmit(&mut self, _now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        if self.out.is_empty() { None } else { Some(self.out.remove(0)) }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

#[test]
fn ping_pong_without_loss_takes_one_round_trip() {
    let mut sim = Simulation::new(Network::new(0, SimConfig::default()));
    let mut pinger = Pinger::new(a(), b());
    let mut ponger = Ponger::new(b());
    sim.run_until(&mut (&mut pinger, &mut ponger), |_, (p, _)| p.done_at.is_some(), Duration::from_secs(10), 100)
        .unwrap();
    assert_eq!(pinger.sent, 1);
    assert_eq!(pinger.done_at, Some(sim.network().start() + Duration::from_millis(20)));
    assert_eq!(sim.elapsed(), Duration::from_millis(20));
    // The pinger's timer was disarmed, so the system goes idle.
    sim.run_until_idle(&mut (&mut pinger, &mut ponger), Duration::from_secs(10), 100).unwrap();
    assert_eq!(sim.network().stats().delivered, 2);
}

fn ping_pong_seed(seed: u64, cfg: SimConfig) -> Result<(u32, Duration), SimError> {
    let mut sim = Simulation::new(Network::new(seed, cfg));
    let mut pinger = Pinger::new(a(), b());
    let mut ponger = Ponger::new(b());
    sim.run_until(&mut (&mut pinger, &mut ponger), |_, (p, _)| p.done_at.is_some(), Duration::from_secs(120), 10_000)?;
    Ok((pinger.sent, sim.elapsed()))
}

#[test]
fn ping_pong_completes_under_30_percent_loss_over_1000_seeds() {
    let cfg = SimConfig::default().with_loss(0.3).with_jitter(Duration::from_millis(5));
    let mut retransmitted = 0;
    check_seeds(0..1000, |seed| {
        let (sent, _) = ping_pong_seed(seed, cfg)?;
        if sent > 1 {
            retransmitted += 1;
        }
        Ok::<_, SimError>(())
    });
    // P(first exchange fails) = 1 - 0.7^2 = 0.51, so about 510 of the seeds retransmit.
    assert!((400..=620).contains(&retransmitted), "retransmitted in {retransmitted} seeds");
}

#[test]
fn ping_pong_is_replayable() {
    let cfg = SimConfig::default().with_loss(0.3).with_jitter(Duration::from_millis(5));
    for seed in 0..20 {
        assert_eq!(ping_pong_seed(seed, cfg), ping_pong_seed(seed, cfg));
    }
}

#[test]
fn run_until_respects_deadline() {
    // The peer never hears anything: the pinger backs off forever.
    let mut sim = Simulation::new(Network::new(0, SimConfig::default().with_loss(1.0)));
    let mut pinger = Pinger::new(a(), b());
    let mut ponger = Ponger::new(b());
    let err = sim
        .run_until(&mut (&mut pinger, &mut ponger), |_, (p, _)| p.done_at.is_some(), Duration::from_secs(10), 1_000_000)
        .unwrap_err();
    let SimError::Deadline { elapsed, steps } = err else {
        panic!("expected a deadline error, got {err}");
    };
    assert!(elapsed <= Duration::from_secs(10), "{elapsed:?}");
    // Timers fire at 100, 300, 700, 1500, 3100, 5100, 7100 and 9100 ms (backoff doubling,
    // capped at 2 s); the ninth ping arms one for 11.1 s, past the deadline.
    assert_eq!(elapsed, Duration::from_millis(9100));
    assert_eq!(steps, 8);
    assert_eq!(pinger.sent, 9);
    // The deadline is relative to the call: a second call makes further progress.
    let err =
        sim.run_until(&mut (&mut pinger, &mut ponger), |_, _| false, Duration::from_secs(10), 1_000_000).unwrap_err();
    assert!(matches!(err, SimError::Deadline { elapsed, .. } if elapsed > Duration::from_secs(10)));
}

#[test]
fn run_until_respects_step_limit() {
    let mut sim = Simulation::new(Network::new(0, SimConfig::default().with_loss(1.0)));
    let mut pinger = Pinger::new(a(), b());
    let mut ponger = Ponger::new(b());
    let err =
        sim.run_until(&mut (&mut pinger, &mut ponger), |_, _| false, Duration::from_secs(1_000_000), 5).unwrap_err();
    assert!(matches!(err, SimError::StepLimit { steps: 5, .. }), "{err}");
    assert_eq!(sim.steps(), 5);
    // Zero steps allowed: the condition is still checked first.
    sim.run_until(&mut (&mut pinger, &mut ponger), |_, _| true, Duration::ZERO, 0).unwrap();
}

/// Transmits on every poll, forever.
struct Chatterbox(SocketAddr, SocketAddr);

impl Endpoint for Chatterbox {
    fn addr(&self) -> SocketAddr {
        self.0
    }
    fn handle_datagram(&mut self, _: Instant, _: SocketAddr, _: &[u8]) {}
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_transmit(&mut self, _: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        Some((self.1, vec![0]))
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

#[test]
fn runaway_transmitter_is_bounded_by_steps() {
    let mut sim = Simulation::new(Network::new(0, SimConfig::default()));
    sim.set_max_transmits_per_poll(10);
    let mut chatter = Chatterbox(a(), b());
    let mut eps: [&mut dyn Endpoint; 1] = [&mut chatter];
    let err = sim.run_until(&mut eps, |_, _| false, Duration::from_secs(1), 3).unwrap_err();
    assert!(matches!(err, SimError::StepLimit { steps: 3, .. }), "{err}");
    assert_eq!(sim.network().stats().sent, 30);
    // The clock does not move while an endpoint is still draining.
    assert_eq!(sim.elapsed(), Duration::ZERO);
}

#[test]
fn stalled_and_undeliverable() {
    let mut sim = Simulation::new(Network::new(0, SimConfig::default()));
    // The pinger talks to an address with no endpoint and gives up after its timer is cleared.
    let mut pinger = Pinger::new(a(), b());
    let mut set: Vec<Box<dyn Endpoint>> = Vec::new();
    set.push(Box::new(Ponger::new(b())));
    let err = sim.run_until(&mut set, |_, _| false, Duration::from_secs(1), 100).unwrap_err();
    assert!(matches!(err, SimError::Stalled { steps: 0, .. }), "{err}");

    let mut eps: Vec<&mut dyn Endpoint> = vec![&mut pinger];
    sim.step(&mut eps[..]);
    sim.step(&mut eps[..]);
    assert_eq!(sim.undeliverable(), 1);
    assert_eq!(eps.len(), 1);
}

#[test]
fn step_by_step_inspection() {
    let mut sim = Simulation::new(Network::new(0, SimConfig::default()));
    let mut pinger = Pinger::new(a(), b());
    let mut ponger = Ponger::new(b());
    {
        let mut eps: [&mut dyn Endpoint; 2] = [&mut pinger, &mut ponger];
        // Step 1: ping sent, clock jumps to its arrival at 10 ms, ponger handles it.
        assert!(sim.step(&mut eps));
    }
    assert_eq!(ponger.pings, 1);
    assert_eq!(sim.elapsed(), Duration::from_millis(10));
    assert!(pinger.done_at.is_none());
    {
        let mut eps: [&mut dyn Endpoint; 2] = [&mut pinger, &mut ponger];
        assert!(sim.step(&mut eps));
        assert!(!sim.step(&mut eps), "nothing left to do");
    }
    assert!(pinger.done_at.is_some());
    assert_eq!(sim.elapsed(), Duration::from_millis(20));
}

/// Arms a timer in the past once.
struct LateTimer {
    at: Option<Instant>,
    fired_at: Option<Instant>,
}

impl Endpoint for LateTimer {
    fn addr(&self) -> SocketAddr {
        a()
    }
    fn handle_datagram(&mut self, _: Instant, _: SocketAddr, _: &[u8]) {}
    fn handle_timeout(&mut self, now: Instant) {
        self.fired_at = Some(now);
        self.at = None;
    }
    fn poll_transmit(&mut self, _: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.at
    }
}

#[test]
fn past_timer_fires_now_without_moving_clock_back() {
    let mut net = Network::new(0, SimConfig::default());
    net.advance_by(Duration::from_secs(5));
    let past = net.start() + Duration::from_secs(1);
    let mut sim = Simulation::new(net);
    let mut t = LateTimer { at: Some(past), fired_at: None };
    assert!(sim.step(&mut (&mut t,)));
    assert_eq!(t.fired_at, Some(sim.network().start() + Duration::from_secs(5)));
    assert_eq!(sim.elapsed(), Duration::from_secs(5));
    assert!(!sim.step(&mut (&mut t,)));
}

#[test]
fn endpoint_set_tuple_indexing() {
    let mut p = Pinger::new(a(), b());
    let mut q = Ponger::new(b());
    let set = (&mut p, &mut q);
    assert_eq!(EndpointSet::len(&set), 2);
    assert_eq!(set.endpoint(0).addr(), a());
    assert_eq!(set.endpoint(1).addr(), b());
}

#[test]
#[should_panic(expected = "seed 3 failed")]
fn check_seeds_names_failing_seed() {
    check_seeds(0..10, |seed| if seed == 3 { Err("boom") } else { Ok(()) });
}

#[test]
#[should_panic(expected = "seed 2 panicked: kaboom")]
fn check_seeds_names_panicking_seed() {
    check_seeds(0..10, |seed| {
        assert!(seed != 2, "kaboom");
        Ok::<(), String>(())
    });
}

/// A NAT rebinding: after it, the node's datagrams leave from the new public address, replies
/// to it reach the node, and what was sent to the old address (even in flight before) is
/// dropped as unbound. The node itself never learns its public address.
#[test]
fn rebind_at_moves_a_node_behind_a_nat() {
    let mut net = Network::new(3, SimConfig::ideal().with_latency(Duration::from_millis(10)));
    let public: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    let start = net.start();
    net.rebind_at(a(), start + Duration::from_millis(50), public);
    net.send(a(), b(), b"before".to_vec());
    net.advance_by(Duration::from_millis(10));
    let d = net.pop_due(net.now()).unwrap();
    assert_eq!((d.from, d.to), (a(), b()));
    // In flight to the old address when the NAT rebinds: lost.
    net.advance_by(Duration::from_millis(35));
    net.send(b(), a(), b"late reply".to_vec());
    net.advance_by(Duration::from_millis(10));
    assert_eq!(net.public_addr(a()), public);
    assert!(net.pop_due(net.now()).is_none());
    assert_eq!(net.link_stats(b(), a()).dropped_unbound, 1);
    // After: from the new address, and replies there reach the node.
    net.send(a(), b(), b"after".to_vec());
    net.advance_by(Duration::from_millis(10));
    let d = net.pop_due(net.now()).unwrap();
    assert_eq!(d.from, public);
    net.send(b(), d.from, b"reply".to_vec());
    net.advance_by(Duration::from_millis(10));
    let d = net.pop_due(net.now()).unwrap();
    assert_eq!((d.to, &d.payload[..]), (a(), &b"reply"[..]), "handed to the node under its own address");
    // A second rebinding forgets the first public address too.
    let public2: SocketAddr = "192.0.2.1:40001".parse().unwrap();
    net.rebind(a(), public2);
    net.send(b(), public, b"stale".to_vec());
    net.advance_by(Duration::from_millis(10));
    assert!(net.pop_due(net.now()).is_none());
    assert_eq!(net.stats().dropped_unbound, 2);
}
