//! The per-association retransmission policy seam (`CommonConfig::retransmit_policy`), driven
//! sans-IO on a virtual clock: the policy's initial timeout times the first flight of DTLS 1.2
//! and 1.3 clients and servers, and the round trips the engine measures reach it — cookie
//! exchanges (from a gate in front through `DatagramMeta::cookie_rtt`, or the endpoint's own),
//! flights sent once, DTLS 1.3 ACKs — while the answer to a retransmitted flight is never
//! measured (Karn's rule, RFC 6298 §3).

use coaps_test_support::dtls as common;

use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{
    ClientConfig, DatagramMeta, DtlsVersion, Endpoint, PolicyContext, RetransmitPolicy, RetransmitPolicyFactory, Role,
    RttSampleKind, ServerConfig,
};
use common::Mode;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const SERVER: &str = "192.0.2.1:5684";
const CLIENT: &str = "198.51.100.7:40000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// What the recording policies of one factory saw.
#[derive(Debug, Default)]
struct Log {
    built: Vec<PolicyContext>,
    samples: Vec<(Role, Duration, RttSampleKind)>,
}

/// Builds policies with a fixed initial timeout (per role) that record every sample.
#[derive(Debug, Clone)]
struct Recorder {
    initial: Duration,
    server_initial: Duration,
    log: Arc<Mutex<Log>>,
}

impl Recorder {
    fn new(initial: Duration) -> Self {
        Self { initial, server_initial: initial, log: Arc::default() }
    }

    fn samples(&self, role: Role) -> Vec<(Duration, RttSampleKind)> {
        let log = self.log.lock().unwrap();
        log.samples.iter().filter(|s| s.0 == role).map(|s| (s.1, s.2)).collect()
    }

    fn built(&self) -> Vec<PolicyContext> {
        self.log.lock().unwrap().built.clone()
    }
}

#[derive(Debug)]
struct RecordingPolicy {
    role: Role,
    initial: Duration,
    log: Arc<Mutex<Log>>,
}

impl RetransmitPolicy for RecordingPolicy {
    fn initial_timeout(&self) -> Duration {
        self.initial
    }
    fn on_rtt_sample(&mut self, rtt: Duration, kind: RttSampleKind) {
        self.log.lock().unwrap().samples.push((self.role, rtt, kind));
    }
}

impl RetransmitPolicyFactory for Recorder {
    fn build(&self, context: &PolicyContext) -> Box<dyn RetransmitPolicy> {
        self.log.lock().unwrap().built.push(*context);
        let initial = if context.role == Role::Server { self.server_initial } else { self.initial };
        Box::new(RecordingPolicy { role: context.role, initial, log: self.log.clone() })
    }
}

/// PSK configurations for `version`, with `policy` on both sides and the server's own cookie
/// exchange on or off.
fn configs(
    version: DtlsVersion,
    policy: Option<&Recorder>,
    server_cookies: bool,
) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let (s, c) = common::configs(Mode::Psk, None);
    let (mut s, mut c) = ((*s).clone(), (*c).clone());
    c.version = version;
    if !server_cookies {
        s.cookie = None;
    }
    if let Some(p) = policy {
        let f: Arc<dyn RetransmitPolicyFactory> = Arc::new(p.clone());
        s.common.retransmit_policy = Some(f.clone());
        c.common.retransmit_policy = Some(f);
    }
    (Arc::new(s), Arc::new(c))
}

fn drain(e: &mut Endpoint) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| e.poll_transmit()).map(|t| t.payload).collect()
}

const VERSIONS: [DtlsVersion; 2] = [DtlsVersion::Dtls12, DtlsVersion::Dtls13];

/// The client's first flight (its ClientHello) is retransmitted exactly when the policy says,
/// then the interval doubles as RFC 6347 §4.2.4.1 asks.
fn client_first_timeout(version: DtlsVersion, policy: Option<&Recorder>) -> (Duration, Duration) {
    let (_, client_config) = configs(version, policy, true);
    let t0 = Instant::now();
    let mut client = Endpoint::client(SeededRng::from_seed_u64(1));
    client.connect(t0, addr(SERVER), client_config, "localhost", None).unwrap();
    let hello = drain(&mut client);
    assert_eq!(hello.len(), 1);
    let first = client.poll_timeout().expect("the ClientHello's timer runs") - t0;
    // Not a moment before.
    client.handle_timeout(t0 + first - Duration::from_nanos(1));
    assert!(drain(&mut client).is_empty(), "{version:?}: retransmitted before the timeout");
    client.handle_timeout(t0 + first);
    // The same ClientHello in a record with the next sequence number.
    let again = drain(&mut client);
    assert_eq!(again.len(), 1, "{version:?}: the ClientHello again at the timeout");
    assert_eq!(again[0][13..], hello[0][13..], "{version:?}: the ClientHello again at the timeout");
    let second = client.poll_timeout().unwrap() - (t0 + first);
    (first, second)
}

#[test]
fn policy_initial_timeout_times_the_clients_first_flight() {
    for version in VERSIONS {
        let policy = Recorder::new(ms(250));
        assert_eq!(client_first_timeout(version, Some(&policy)), (ms(250), ms(500)), "{version:?}");
        assert_eq!(policy.built().len(), 1, "{version:?}: one policy per association");
        assert_eq!(policy.built()[0].role, Role::Client);
        assert_eq!(policy.built()[0].peer, addr(SERVER));
        // The default stays RFC 6347 §4.2.4.1: 1 s, then 2 s.
        assert_eq!(client_first_timeout(version, None), (ms(1000), ms(2000)), "{version:?}");
    }
}

/// The server's first flight, after a ClientHello that needs no cookie exchange.
fn server_first_timeout(version: DtlsVersion, policy: Option<&Recorder>) -> (Duration, Duration) {
    let (server_config, _) = configs(version, policy, false);
    // The client keeps the default timing: only the server's policy is under test.
    let (_, client_config) = configs(version, None, false);
    let t0 = Instant::now();
    let mut server = Endpoint::server(server_config, SeededRng::from_seed_u64(2), t0);
    let mut client = Endpoint::client(SeededRng::from_seed_u64(3));
    client.connect(t0, addr(SERVER), client_config, "localhost", None).unwrap();
    for d in drain(&mut client) {
        server.handle_datagram(t0, addr(CLIENT), &d);
    }
    let flight = drain(&mut server);
    assert!(!flight.is_empty(), "{version:?}: the server answered");
    assert_eq!(server.connection_count(), 1);
    let first = server.poll_timeout().expect("the server's flight timer runs") - t0;
    server.handle_timeout(t0 + first - Duration::from_nanos(1));
    assert!(drain(&mut server).is_empty(), "{version:?}: retransmitted before the timeout");
    server.handle_timeout(t0 + first);
    assert!(!drain(&mut server).is_empty(), "{version:?}: the flight again at the timeout");
    let second = server.poll_timeout().unwrap() - (t0 + first);
    (first, second)
}

#[test]
fn policy_initial_timeout_times_the_servers_first_flight() {
    for version in VERSIONS {
        let policy = Recorder::new(ms(250));
        assert_eq!(server_first_timeout(version, Some(&policy)), (ms(250), ms(500)), "{version:?}");
        let built = policy.built();
        assert_eq!(built.len(), 1, "{version:?}");
        assert_eq!((built[0].role, built[0].peer, built[0].cookie_rtt), (Role::Server, addr(CLIENT), None));
        assert_eq!(server_first_timeout(version, None), (ms(1000), ms(2000)), "{version:?}");
    }
}

/// A network with a fixed one-way delay between one client and one server on a virtual clock.
/// `lose(to_server, n)` drops the n-th datagram (counted from 0) in that direction.
struct Net {
    client: Endpoint,
    server: Endpoint,
    now: Instant,
    delay: Duration,
    in_flight: VecDeque<(Instant, bool, Vec<u8>)>,
    sent: [usize; 2],
    lose: fn(bool, usize) -> bool,
}

impl Net {
    fn new(server_config: Arc<ServerConfig>, delay: Duration, lose: fn(bool, usize) -> bool) -> Self {
        let now = Instant::now();
        Self {
            client: Endpoint::client(SeededRng::from_seed_u64(10)),
            server: Endpoint::server(server_config, SeededRng::from_seed_u64(11), now),
            now,
            delay,
            in_flight: VecDeque::new(),
            sent: [0, 0],
            lose,
        }
    }

    fn collect(&mut self) {
        for (to_server, e) in [(true, &mut self.client), (false, &mut self.server)] {
            while let Some(t) = e.poll_transmit() {
                let n = &mut self.sent[usize::from(to_server)];
                if !(self.lose)(to_server, *n) {
                    self.in_flight.push_back((self.now + self.delay, to_server, t.payload));
                }
                *n += 1;
            }
        }
    }

    /// Runs every delivery and timer up to `until`.
    fn run(&mut self, until: Instant) {
        loop {
            self.collect();
            let next =
                [self.in_flight.iter().map(|d| d.0).min(), self.client.poll_timeout(), self.server.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
            let Some(next) = next.filter(|t| *t <= until) else { break };
            self.now = self.now.max(next);
            let now = self.now;
            while let Some(i) = self.in_flight.iter().position(|d| d.0 <= now) {
                let (_, to_server, d) = self.in_flight.remove(i).unwrap();
                if to_server {
                    self.server.handle_datagram(now, addr(CLIENT), &d);
                } else {
                    self.client.handle_datagram(now, addr(SERVER), &d);
                }
            }
            self.client.handle_timeout(now);
            self.server.handle_timeout(now);
        }
    }

    fn handshake(&mut self, client_config: Arc<ClientConfig>) {
        let t0 = self.now;
        self.client.connect(t0, addr(SERVER), client_config, "localhost", None).unwrap();
        self.run(t0 + Duration::from_secs(10));
        assert!(self.client.connection(&addr(SERVER)).is_some_and(|c| c.is_established()), "client established");
        assert!(self.server.connection(&addr(CLIENT)).is_some_and(|c| c.is_established()), "server established");
    }
}

fn no_loss(_: bool, _: usize) -> bool {
    false
}

/// Every exchange of a loss-free handshake with the endpoint's own cookie exchange is
/// measured: 2 × 40 ms each, with the kind of exchange it was.
#[test]
fn unretransmitted_exchanges_are_measured() {
    use RttSampleKind::{Ack, Cookie, Flight};
    let rtt = ms(80);
    for version in VERSIONS {
        let policy = Recorder::new(Duration::from_secs(1));
        let (server_config, client_config) = configs(version, Some(&policy), true);
        let mut net = Net::new(server_config, rtt / 2, no_loss);
        net.handshake(client_config);
        let (client, server) = (policy.samples(Role::Client), policy.samples(Role::Server));
        match version {
            // Client: ClientHello → HelloVerifyRequest, ClientHello → ServerHello…, final
            // flight → ChangeCipherSpec + Finished. Server: its own cookie's age (issued with
            // the HelloVerifyRequest, back with the second ClientHello), then its flight →
            // the client's final flight; its last flight expects no answer.
            DtlsVersion::Dtls12 => {
                assert_eq!(client, [(rtt, Cookie), (rtt, Flight), (rtt, Flight)], "1.2 client");
                assert_eq!(server, [(rtt, Cookie), (rtt, Flight)], "1.2 server");
            }
            // Client: ClientHello → HelloRetryRequest, ClientHello → ServerHello…, final
            // flight → the server's ACK. Server: the age of its HelloRetryRequest cookie, its
            // flight → the client's final flight, its NewSessionTicket → the client's ACK.
            _ => {
                assert_eq!(client, [(rtt, Cookie), (rtt, Flight), (rtt, Ack)], "1.3 client");
                assert_eq!(server, [(rtt, Cookie), (rtt, Flight), (rtt, Ack)], "1.3 server");
            }
        }
        let built = policy.built();
        assert_eq!(built.len(), 2, "one policy per association");
        let server_ctx = built.iter().find(|c| c.role == Role::Server).unwrap();
        assert_eq!(server_ctx.cookie_rtt, Some(rtt), "{version:?}: the factory knows the cookie round trip");
    }
}

/// Karn's rule: the server's first flight is lost, so the client's ClientHello goes out again
/// on its timer and the server resends its flight on seeing the repeat; neither answer is
/// measured. The exchanges after that still are.
#[test]
fn retransmitted_flights_are_not_measured() {
    use RttSampleKind::{Ack, Flight};
    let rtt = ms(80);
    // The server's first datagram (its first flight fits in one) is lost.
    fn lose_first_server_flight(to_server: bool, n: usize) -> bool {
        !to_server && n == 0
    }
    for version in VERSIONS {
        // The server's own timer must not fire when the client's second ClientHello arrives
        // (both would be 1 s after the first one, one way later): that would be a second
        // resend.
        let policy = Recorder { server_initial: ms(1500), ..Recorder::new(Duration::from_secs(1)) };
        let (server_config, client_config) = configs(version, Some(&policy), false);
        let mut net = Net::new(server_config, rtt / 2, lose_first_server_flight);
        net.handshake(client_config);
        let (client, server) = (policy.samples(Role::Client), policy.samples(Role::Server));
        let stats = net.client.connection(&addr(SERVER)).unwrap().stats();
        assert_eq!(stats.retransmissions, 1, "{version:?}: the ClientHello went out twice");
        match version {
            // Only the client's final flight, sent once, is measured.
            DtlsVersion::Dtls12 => {
                assert_eq!(client, [(rtt, Flight)], "1.2 client");
                assert_eq!(server, [], "1.2 server");
            }
            // The client's final flight (ACKed) and the server's NewSessionTicket (ACKed).
            _ => {
                assert_eq!(client, [(rtt, Ack)], "1.3 client");
                assert_eq!(server, [(rtt, Ack)], "1.3 server");
            }
        }
    }
}

/// A cookie round trip measured by a gate in front reaches the new association's policy
/// through `Endpoint::handle_datagram_with`: in the factory's context and as the first sample.
#[test]
fn gate_cookie_rtt_reaches_the_policy() {
    for version in VERSIONS {
        let policy = Recorder::new(ms(300));
        let (server_config, _) = configs(version, Some(&policy), false);
        let (_, client_config) = configs(version, None, false);
        let t0 = Instant::now();
        let mut server = Endpoint::server(server_config, SeededRng::from_seed_u64(2), t0);
        let mut client = Endpoint::client(SeededRng::from_seed_u64(3));
        client.connect(t0, addr(SERVER), client_config, "localhost", None).unwrap();
        let mut meta = DatagramMeta::new();
        meta.cookie_rtt = Some(ms(42));
        for d in drain(&mut client) {
            server.handle_datagram_with(t0, addr(CLIENT), &d, meta.clone());
        }
        assert_eq!(server.connection_count(), 1, "{version:?}");
        assert_eq!(policy.built()[0].cookie_rtt, Some(ms(42)), "{version:?}");
        assert_eq!(policy.samples(Role::Server), [(ms(42), RttSampleKind::Cookie)], "{version:?}");
        // The first flight is timed by the policy after it saw the sample.
        assert_eq!(server.poll_timeout(), Some(t0 + ms(300)), "{version:?}");
    }
}

/// A dual-version client that falls back to DTLS 1.2 on a HelloVerifyRequest keeps its one
/// policy (it has seen the first ClientHello go out), which measures the HelloVerifyRequest
/// round trip and the flights after it.
#[test]
fn auto_client_keeps_its_policy_through_the_fallback() {
    use RttSampleKind::{Cookie, Flight};
    let rtt = ms(80);
    let policy = Recorder::new(Duration::from_secs(1));
    let (server_config, client_config) = configs(DtlsVersion::Auto, Some(&policy), true);
    let server_config = Arc::new(ServerConfig { dtls13: false, ..(*server_config).clone() });
    let mut net = Net::new(server_config, rtt / 2, no_loss);
    net.handshake(client_config);
    assert_eq!(net.client.connection(&addr(SERVER)).unwrap().version(), coaps_dtls::ProtocolVersion::DTLS1_2);
    assert_eq!(policy.built().iter().filter(|c| c.role == Role::Client).count(), 1, "one client policy");
    assert_eq!(policy.samples(Role::Client), [(rtt, Cookie), (rtt, Flight), (rtt, Flight)]);
}

/// A policy whose handshake budget (in time) is longer than the configuration's.
#[derive(Debug)]
struct LongBudget(Duration);

impl RetransmitPolicy for LongBudget {
    fn initial_timeout(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn handshake_timeout(&self) -> Option<Duration> {
        Some(self.0)
    }
}

impl RetransmitPolicyFactory for LongBudget {
    fn build(&self, _: &PolicyContext) -> Box<dyn RetransmitPolicy> {
        Box::new(LongBudget(self.0))
    }
}

/// RFC 6347 §4.2.4: the DTLS 1.2 server keeps its last flight (ChangeCipherSpec + Finished) to
/// resend it if the client repeats its own, for the association's handshake budget: the
/// policy's, not the configuration's (which a link profile's long budget would otherwise have
/// to be copied into). A repeat of the client's final flight long after the configuration's
/// 120 s still gets the server's last flight again.
#[test]
fn the_last_flight_is_kept_for_the_policys_budget() {
    let budget = Duration::from_secs(600);
    for policy in [None, Some(LongBudget(budget))] {
        let (s, c) = configs(DtlsVersion::Dtls12, None, true);
        let (mut s, mut c) = ((*s).clone(), (*c).clone());
        if let Some(p) = &policy {
            let f: Arc<dyn RetransmitPolicyFactory> = Arc::new(LongBudget(p.0));
            s.common.retransmit_policy = Some(f.clone());
            c.common.retransmit_policy = Some(f);
        }
        let config_budget = s.common.retransmit.handshake_timeout;
        assert!(config_budget < budget);
        let mut net = Net::new(Arc::new(s), ms(40), no_loss);
        net.handshake(Arc::new(c));
        let linger =
            net.server.connection(&addr(CLIENT)).and_then(|c| c.poll_timeout()).expect("the last flight is kept");
        let kept = linger - net.now;
        let expected = policy.as_ref().map_or(config_budget, |p| p.0);
        // Established a few round trips before the end of `handshake`'s run.
        assert!(kept <= expected && kept > expected - Duration::from_secs(11), "kept {kept:?}, budget {expected:?}");
        // Past the configuration's budget: released without the policy, still kept with it.
        let later = net.now + config_budget;
        net.server.handle_timeout(later);
        let still = net.server.connection(&addr(CLIENT)).and_then(|c| c.poll_timeout());
        assert_eq!(still.is_some(), policy.is_some(), "{policy:?}: {still:?}");
    }
}
