//! The handshakes themselves: each [`Mode`] is run in-process between a client and a server
//! [`Endpoint`] over a [`coaps_sim`] network with the given one-way delay and loss, and every
//! datagram is counted where it is sent.
//!
//! A row's run is what a battery device does when it wakes ([`run`]): the handshake, then one
//! CoAP request ([`request`], the same bytes in every mode) and the server's answer
//! ([`answer`]), until the client has the answer. The 1-RTT modes send the request once
//! connected; the 0-RTT mode sends it as early data beside its ClientHello and the server
//! answers it as 0.5-RTT data right behind its Finished (RFC 8446 §2.3). [`run_handshake`] runs
//! the handshake alone (the timer sweep).
//!
//! The configurations are the ones of the `wire_bytes` bench (`benches/support/src/ours.rs`):
//! one CCM_8 suite (RFC 7925's mandatory one), the engine's defaults otherwise (cookie exchange
//! on, session store on, MTU 1152), the same test certificates, PSK and server name, so a
//! lossless run carries the bench's bytes. `crates/coaps-cli/tests/energy.rs` checks that
//! against the bench's own harness.

use coap_lite::{CoapOption, ContentFormat, MessageClass, MessageType, Packet, RequestType, ResponseType};
use coaps_dtls::cert::{self, WebPkiVerifier};
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::crypto::rustcrypto::EcdsaP256SigningKey;
use coaps_dtls::{
    CertifiedKey, CipherSuite, ClientConfig, CommonConfig, DtlsVersion, EarlyDataConfig, Endpoint, Event, LinkProfile,
    PeerVerifier, Psk, ServerConfig, Session, StaticPsks, suites,
};
use coaps_sim::{Network, SimConfig, Simulation};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A handshake mode: a row of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// DTLS 1.2, TLS_PSK_WITH_AES_128_CCM_8, with the HelloVerifyRequest cookie exchange
    /// (RFC 6347 §4.2.1).
    Dtls12Psk,
    /// The same without the cookie exchange.
    Dtls12PskNoCookie,
    /// DTLS 1.2, TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, P-256 server certificate the client
    /// verifies; cookie exchange on.
    Dtls12EcdheEcdsa,
    /// DTLS 1.2 session-ID resumption (RFC 5246 §7.3) of a PSK session; cookie exchange on.
    Dtls12Resumption,
    /// DTLS 1.3 full handshake with the P-256 certificate, TLS_AES_128_CCM_8_SHA256; the
    /// server's HelloRetryRequest cookie on (RFC 9147 §5.1).
    Dtls13Cert,
    /// DTLS 1.3 with the external PSK (psk_dhe_ke: the client always sends a key share).
    Dtls13Psk,
    /// DTLS 1.3 ticket resumption (RFC 8446 §2.2) of a PSK session, psk_dhe_ke; from the
    /// ticket's address the server skips the HelloRetryRequest cookie (RFC 9147 §5.1,
    /// [`ServerConfig::skip_cookie_on_resumption`], as `coaps serve` does).
    Dtls13Resumption,
    /// DTLS 1.3 ticket resumption whose ClientHello carries a 32-byte request as 0-RTT early
    /// data (RFC 8446 §2.3); from the ticket's address the server skips the cookie
    /// (RFC 9147 §5.1, [`EarlyDataConfig::skip_cookie_on_resumption`]).
    Dtls13ZeroRtt,
}

/// The request of every row: a confirmable CoAP GET of `/sensors/temperature` with an 8-byte
/// token (RFC 7252 §3), 32 bytes. GET because a request in 0-RTT early data can be replayed,
/// so it must be safe and idempotent (RFC 8470 §2.1, RFC 8446 §8); the same bytes go in every
/// mode, so the modes differ only in their handshakes.
pub fn request() -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Get);
    p.header.message_id = 0x7d01;
    p.set_token(TOKEN.to_vec());
    p.add_option(CoapOption::UriPath, b"sensors".to_vec());
    p.add_option(CoapOption::UriPath, b"temperature".to_vec());
    p.to_bytes().expect("a valid CoAP message")
}

/// The server's answer to [`request`]: the piggybacked ACK, 2.05 Content, text/plain, a
/// 6-byte reading (RFC 7252 §5.2.1).
pub fn answer() -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Acknowledgement);
    p.header.code = MessageClass::Response(ResponseType::Content);
    p.header.message_id = 0x7d01;
    p.set_token(TOKEN.to_vec());
    p.set_content_format(ContentFormat::TextPlain);
    p.payload = b"21.5 C".to_vec();
    p.to_bytes().expect("a valid CoAP message")
}

const TOKEN: [u8; 8] = [0x5e, 0x17, 0xa3, 0x09, 0xc4, 0x2b, 0x71, 0xd8];

/// RFC 7252 §4.8's MAX_RETRANSMIT: how often the client sends the request again when no answer
/// comes within its ACK_TIMEOUT (doubling each time).
const MAX_RETRANSMIT: u32 = 4;

impl Mode {
    /// Every mode, in the report's order.
    pub const ALL: [Mode; 8] = [
        Mode::Dtls12Psk,
        Mode::Dtls12PskNoCookie,
        Mode::Dtls12EcdheEcdsa,
        Mode::Dtls12Resumption,
        Mode::Dtls13Cert,
        Mode::Dtls13Psk,
        Mode::Dtls13Resumption,
        Mode::Dtls13ZeroRtt,
    ];

    /// The name on the command line and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Dtls12Psk => "dtls1.2-psk",
            Mode::Dtls12PskNoCookie => "dtls1.2-psk-nocookie",
            Mode::Dtls12EcdheEcdsa => "dtls1.2-ecdhe-ecdsa",
            Mode::Dtls12Resumption => "dtls1.2-resumption",
            Mode::Dtls13Cert => "dtls1.3-cert",
            Mode::Dtls13Psk => "dtls1.3-psk",
            Mode::Dtls13Resumption => "dtls1.3-resumption",
            Mode::Dtls13ZeroRtt => "dtls1.3-0rtt",
        }
    }

    /// The mode called `name`.
    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == name)
    }

    fn dtls13(self) -> bool {
        matches!(self, Mode::Dtls13Cert | Mode::Dtls13Psk | Mode::Dtls13Resumption | Mode::Dtls13ZeroRtt)
    }

    fn certificate(self) -> bool {
        matches!(self, Mode::Dtls12EcdheEcdsa | Mode::Dtls13Cert)
    }

    fn resumes(self) -> bool {
        matches!(self, Mode::Dtls12Resumption | Mode::Dtls13Resumption | Mode::Dtls13ZeroRtt)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which retransmission timer both sides run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timers {
    /// RFC 6347 §4.2.4.1: 1 s initial timeout, doubling to 60 s (the engine's default).
    Rfc6347,
    /// A link profile's policy ([`LinkProfile`]), with the run's RTT as its hint: on the
    /// long-delay profiles an initial timeout of max(floor, 5 × RTT), back-off kept until a
    /// flight is answered, and a handshake budget in time; see [`link_retransmit_policy`].
    Link(LinkProfile),
}

impl Timers {
    /// The name in the JSON and the plots.
    pub fn name(self) -> &'static str {
        match self {
            Timers::Rfc6347 => "rfc6347",
            Timers::Link(p) => p.name(),
        }
    }
}

/// The timers of issue 11 as `coaps --link PROFILE --rtt MS` runs them: `profile`'s policy
/// factory with `rtt` as the estimate before any sample (the seed: "set the initial timer to
/// 5× the measured RTT"), installed in `common` with the profile's handshake budget (in time,
/// not only in tries).
pub fn link_retransmit_policy(profile: LinkProfile, rtt: Duration, common: &mut CommonConfig) {
    profile.policy().with_rtt_hint(rtt).install(common);
}

/// The network a handshake runs over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Round-trip time: each direction gets half as fixed latency. Airtime is not part of it
    /// (the radio model adds it).
    pub rtt: Duration,
    /// Probability that a datagram is lost, each direction independently.
    pub loss: f64,
    /// Seed of the network's random decisions (and of the endpoints' RNGs).
    pub seed: u64,
}

/// What one handshake did, counted from the run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transcript {
    /// Sizes (UDP payload bytes) of the datagrams the client sent, retransmissions included.
    pub up: Vec<usize>,
    /// Sizes of the datagrams the server sent to the client.
    pub down: Vec<usize>,
    /// Sizes of the datagrams the client received (`down` less those lost).
    pub received: Vec<usize>,
    /// Round trips the client waited through until it was connected: the times a datagram
    /// reached it after it had sent (at an earlier instant) since the last one (lossless: the
    /// server flights it had received when connected, the `wire_bytes` bench's RT).
    pub round_trips: usize,
    /// Round trips, counted the same way, until the client had the answer to its request
    /// (`None` for [`run_handshake`]); lossless: the bench's `answer_round_trips`.
    pub answer_round_trips: Option<usize>,
    /// Flight retransmissions of both sides (the engines' `Stats::retransmissions`).
    pub retransmissions: u64,
    /// Times the client sent the CoAP request again (RFC 7252 §4.2) because no answer came
    /// within its ACK_TIMEOUT.
    pub request_retransmissions: u64,
    /// From the client's first datagram until it reported `Connected`.
    pub completion: Duration,
    /// From the client's first datagram until it had the answer to its request (`None` for
    /// [`run_handshake`]).
    pub answered: Option<Duration>,
    /// From the client's first datagram until the last datagram it sent or received.
    pub active: Duration,
    /// The session was resumed (resumption modes).
    pub resumed: bool,
    /// The server delivered the request as 0-RTT early data (the 0-RTT mode).
    pub early_data_accepted: bool,
    /// CoAP message bytes of the request and of the answer (0 for [`run_handshake`]).
    pub request_bytes: usize,
    /// See `request_bytes`.
    pub answer_bytes: usize,
}

/// A failed run: the handshake gave up or the simulation hit its bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed(pub String);

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failed {}

/// The server's address (documentation range; nothing leaves the process).
const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 5684);
const SERVER_NAME: &str = "localhost";
/// The PSK of the bench and the engine's tests.
const PSK_IDENTITY: &[u8] = b"Client_identity";
const PSK_KEY: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
// The engine's test certificates (P-256, CN/SAN localhost), embedded so the command needs no
// files; the same ones the bench reads.
const SERVER_CERT: &[u8] = include_bytes!("../../../coaps-dtls/tests/data/server.crt");
const SERVER_KEY: &[u8] = include_bytes!("../../../coaps-dtls/tests/data/server.key");
const CA_CERT: &[u8] = include_bytes!("../../../coaps-dtls/tests/data/ca.crt");
/// Virtual-time bound of one run: above the longest handshake budget of the profiles the
/// radios use (`nb-iot`: 20 minutes), which is also how long a DTLS 1.2 server keeps its last
/// flight when no application data follows, and the runs go on until no timer is armed.
const RUN_LIMIT: Duration = Duration::from_secs(3600);
/// How long the lossless priming handshake may take to settle (below the 240 s for which a
/// DTLS 1.3 server keeps its epoch-2 keys).
const PRIME_SETTLE: Duration = Duration::from_secs(200);
const STEP_LIMIT: usize = 100_000;

fn psk() -> Psk {
    Psk::new(PSK_IDENTITY.to_vec(), PSK_KEY.to_vec()).expect("a 16-byte PSK is valid")
}

/// Server and client configurations of `mode` (see the module docs), with `timers`.
pub fn configs(mode: Mode, timers: Timers, rtt: Duration) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let suite_name = if mode.certificate() { "ECDHE-ECDSA-AES128-CCM8" } else { "PSK-AES128-CCM8" };
    let suite = *suites::by_name(suite_name).expect("a built-in suite");
    let mut common = CommonConfig { suites: vec![suite], ..CommonConfig::default() };
    if mode.dtls13() {
        common.suites13 = vec![CipherSuite::TLS_AES_128_CCM_8_SHA256];
    }
    if let Timers::Link(profile) = timers {
        link_retransmit_policy(profile, rtt, &mut common);
    }
    let mut server = ServerConfig { common: common.clone(), ..ServerConfig::default() };
    let mut client = ClientConfig { common, ..ClientConfig::default() };
    if mode.dtls13() {
        client.version = DtlsVersion::Dtls13;
    }
    if mode.certificate() {
        let key = cert::load_private_key_pem(SERVER_KEY).expect("embedded key");
        let bytes: [u8; 32] = key.to_bytes().into();
        server.cert = Some(CertifiedKey {
            chain: cert::load_certs_pem(SERVER_CERT).expect("embedded certificate"),
            key: Arc::new(EcdsaP256SigningKey::from_bytes(&bytes).expect("embedded key")),
        });
        let roots = cert::load_certs_pem(CA_CERT).expect("embedded CA");
        client.verifier = Some(PeerVerifier::WebPki(Arc::new(WebPkiVerifier::new(&roots).expect("embedded CA"))));
    } else {
        server.psks = Some(Arc::new(StaticPsks(vec![psk()])));
        client.psk = Some(psk());
    }
    if mode == Mode::Dtls12PskNoCookie {
        server.cookie = None;
    }
    if mode == Mode::Dtls13ZeroRtt {
        server.early_data = Some(EarlyDataConfig::default());
    }
    if mode == Mode::Dtls13Resumption {
        server.skip_cookie_on_resumption = true;
    }
    (Arc::new(server), Arc::new(client))
}

/// The CoAP exchange after the handshake, from one side's view.
struct Exchange {
    request: Vec<u8>,
    answer: Vec<u8>,
    /// Client: the request still has to be sent once connected (a 1-RTT mode, or the server
    /// did not take the 0-RTT data).
    pending: bool,
    /// Client: when it had the answer, and the round trips by then.
    answered: Option<(Instant, usize)>,
    /// Client: RFC 7252 §4.2 retransmission of the confirmable request: when it is due, the
    /// current timeout (ACK_TIMEOUT, doubling), tries so far.
    deadline: Option<Instant>,
    timeout: Duration,
    tries: u32,
    retransmissions: u64,
}

impl Exchange {
    fn new(pending: bool, ack_timeout: Duration) -> Self {
        Self {
            request: request(),
            answer: answer(),
            pending,
            answered: None,
            deadline: None,
            timeout: ack_timeout,
            tries: 0,
            retransmissions: 0,
        }
    }
}

/// One side, counting what it sends and receives.
struct Side {
    addr: SocketAddr,
    ep: Endpoint,
    sent: Vec<usize>,
    received: Vec<usize>,
    first_sent: Option<Instant>,
    last_sent: Option<Instant>,
    last_activity: Option<Instant>,
    awaiting_answer: bool,
    round_trips: usize,
    connected: Option<Instant>,
    round_trips_at_connect: usize,
    resumed: bool,
    early_data: Option<Vec<u8>>,
    closed: Option<String>,
    exchange: Option<Exchange>,
}

impl Side {
    fn new(addr: SocketAddr, ep: Endpoint) -> Self {
        Self {
            addr,
            ep,
            sent: Vec::new(),
            received: Vec::new(),
            first_sent: None,
            last_sent: None,
            last_activity: None,
            awaiting_answer: false,
            round_trips: 0,
            connected: None,
            round_trips_at_connect: 0,
            resumed: false,
            early_data: None,
            closed: None,
            exchange: None,
        }
    }

    fn drain(&mut self, now: Instant) {
        while let Some((peer, ev)) = self.ep.poll_event() {
            match ev {
                Event::Connected { resumed, .. } if self.connected.is_none() => {
                    self.connected = Some(now);
                    self.resumed = resumed;
                    self.round_trips_at_connect = self.round_trips;
                    if let Some(x) = self.exchange.as_mut().filter(|x| x.pending) {
                        x.pending = false;
                        x.deadline = Some(now + x.timeout);
                        if let Err(e) = self.ep.send(peer, &x.request) {
                            self.closed = Some(format!("sending the request: {e}"));
                        }
                    }
                }
                Event::EarlyDataRejected => {
                    if let Some(x) = &mut self.exchange {
                        x.pending = true;
                    }
                }
                Event::EarlyData(d) => {
                    self.answer_request(peer, &d);
                    self.early_data = Some(d);
                }
                Event::ApplicationData(d) => {
                    self.answer_request(peer, &d);
                    if let Some(x) = self.exchange.as_mut().filter(|x| x.answered.is_none() && d == x.answer) {
                        x.answered = Some((now, self.round_trips));
                        x.deadline = None;
                    }
                }
                Event::Closed(r) => self.closed = Some(format!("{r:?}")),
                _ => {}
            }
        }
    }

    /// Server: answers every delivery of the request, as a CoAP server answers a duplicate
    /// from its deduplication store (RFC 7252 §4.5).
    fn answer_request(&mut self, peer: SocketAddr, data: &[u8]) {
        if let Some(x) = self.exchange.as_ref().filter(|x| x.request == data)
            && let Err(e) = self.ep.send(peer, &x.answer)
        {
            self.closed = Some(format!("sending the answer: {e}"));
        }
    }

    /// Client: the request's retransmission timer (RFC 7252 §4.2). Before `Connected` a 0-RTT
    /// request rides the ClientHello's retransmissions, so only the timer moves on.
    fn coap_timeout(&mut self, now: Instant) {
        let connected = self.connected.is_some();
        let Some(x) = self.exchange.as_mut() else { return };
        let Some(deadline) = x.deadline.filter(|d| *d <= now) else { return };
        if x.tries >= MAX_RETRANSMIT {
            x.deadline = None;
            self.closed = Some(format!("no answer to the request after {} retransmissions", x.tries));
            return;
        }
        x.tries += 1;
        x.timeout *= 2;
        x.deadline = Some(deadline.max(now) + x.timeout);
        if connected {
            x.retransmissions += 1;
            if let Err(e) = self.ep.send(SERVER, &x.request) {
                self.closed = Some(format!("sending the request again: {e}"));
            }
        }
    }
}

impl coaps_sim::Endpoint for Side {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        self.received.push(payload.len());
        self.last_activity = Some(now);
        // A datagram that arrives at the very instant this side sent was already on its way:
        // the same round trip.
        if self.awaiting_answer && self.last_sent.is_some_and(|t| t < now) {
            self.round_trips += 1;
            self.awaiting_answer = false;
        }
        self.ep.handle_datagram(now, from, payload);
        self.drain(now);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.coap_timeout(now);
        self.ep.handle_timeout(now);
        self.drain(now);
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        self.drain(now);
        let t = self.ep.poll_transmit()?;
        self.sent.push(t.payload.len());
        self.first_sent.get_or_insert(now);
        self.last_sent = Some(now);
        self.last_activity = Some(now);
        self.awaiting_answer = true;
        Some((t.destination, t.payload))
    }
    fn poll_timeout(&self) -> Option<Instant> {
        let coap = self.exchange.as_ref().and_then(|x| x.deadline);
        match (self.ep.poll_timeout(), coap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn client_addr(n: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 40_000 + n)
}

/// The CoAP ACK_TIMEOUT the client starts from: with a link profile the one that follows its
/// RTT estimate ([`coaps_dtls::LinkPolicyFactory::ack_timeout`], as `coaps get --link` uses),
/// else RFC 7252 §4.8's 2 s. The lower end of the RFC's random range, so runs stay
/// reproducible.
pub fn ack_timeout(timers: Timers, rtt: Duration) -> Duration {
    match timers {
        Timers::Rfc6347 => Duration::from_secs(2),
        Timers::Link(profile) => profile.policy().with_rtt_hint(rtt).ack_timeout(SERVER),
    }
}

/// Runs `mode` once over `link` with `timers`: the handshake, then the request and its answer
/// (see the module docs); returns what crossed the wire. Resumption modes first run a full
/// handshake on the same network without loss to get the session; only the resumed one is
/// counted. `Err` when the handshake or the request gave up.
pub fn run(mode: Mode, link: Link, timers: Timers) -> Result<Transcript, Failed> {
    run_inner(mode, link, timers, true)
}

/// [`run`] without the request: the handshake alone.
pub fn run_handshake(mode: Mode, link: Link, timers: Timers) -> Result<Transcript, Failed> {
    run_inner(mode, link, timers, false)
}

fn run_inner(mode: Mode, link: Link, timers: Timers, with_request: bool) -> Result<Transcript, Failed> {
    let (mut server_config, client_config) = configs(mode, timers, link.rtt);
    // The model compares retransmission timers: a silent client on a slow lossy link must not
    // die on the server's 15 s half-open lifetime first (as `serve --link` lengthens it).
    std::sync::Arc::make_mut(&mut server_config).quotas.half_open_lifetime = Duration::from_secs(3600);
    let one_way = link.rtt / 2;
    let quiet = SimConfig::ideal().with_latency(one_way);
    let network = Network::new(link.seed, quiet);
    let mut sim = Simulation::new(network);
    let now = sim.now();
    let mut server = Side::new(SERVER, Endpoint::server(server_config, SeededRng::from_seed_u64(0x5e7e), now));

    let session = if mode.resumes() { Some(prime(&mut sim, &mut server, &client_config, link.seed)?) } else { None };

    sim.network_mut().set_default_config(quiet.with_loss(link.loss));
    let mut ep = Endpoint::client(SeededRng::from_seed_u64(link.seed ^ 0xc2));
    let early = mode == Mode::Dtls13ZeroRtt;
    let connected = if early {
        ep.connect_with_early_data(sim.now(), SERVER, client_config, SERVER_NAME, session, &request())
    } else {
        ep.connect(sim.now(), SERVER, client_config, SERVER_NAME, session)
    };
    connected.map_err(|e| Failed(format!("connect: {e}")))?;
    let mut client = Side::new(client_addr(2), ep);
    if with_request {
        let mut x = Exchange::new(!early, ack_timeout(timers, link.rtt));
        if early {
            // The request leaves now, beside the ClientHello.
            x.deadline = Some(sim.now() + x.timeout);
        }
        client.exchange = Some(x);
        server.exchange = Some(Exchange::new(false, Duration::ZERO));
    }
    server.sent.clear();
    let done = |c: &Side, s: &Side| {
        let finished = match &c.exchange {
            Some(x) if with_request => x.answered.is_some(),
            _ => c.connected.is_some(),
        };
        (finished && s.connected.is_some()) || c.closed.is_some()
    };
    sim.run_until(&mut (&mut client, &mut server), |_, (c, s)| done(c, s), RUN_LIMIT, STEP_LIMIT)
        .map_err(|e| Failed(format!("{mode}: {e}")))?;
    if let Some(r) = &client.closed {
        return Err(Failed(format!("{mode}: the client gave up: {r}")));
    }
    // The rest of the exchange (the 1.2 server's last flight after its own Connected, 1.3's
    // NewSessionTicket and ACKs) is counted too, as the bench counts it: until nothing is in
    // flight and no timer is armed.
    sim.run_until_idle(&mut (&mut client, &mut server), RUN_LIMIT, STEP_LIMIT)
        .map_err(|e| Failed(format!("{mode} after the handshake: {e}")))?;

    let (Some(start), Some(connected), Some(last)) = (client.first_sent, client.connected, client.last_activity) else {
        return Err(Failed(format!("{mode}: the client never connected")));
    };
    let stats = |ep: &Endpoint, peer| ep.connection(&peer).map_or(0, |c| c.stats().retransmissions);
    let answered = client.exchange.as_ref().and_then(|x| x.answered);
    Ok(Transcript {
        up: client.sent,
        down: server.sent,
        received: client.received,
        round_trips: client.round_trips_at_connect,
        answer_round_trips: answered.map(|(_, rt)| rt),
        retransmissions: stats(&client.ep, SERVER) + stats(&server.ep, client.addr),
        request_retransmissions: client.exchange.as_ref().map_or(0, |x| x.retransmissions),
        completion: connected - start,
        answered: answered.map(|(at, _)| at - start),
        active: last - start,
        resumed: client.resumed && server.resumed,
        early_data_accepted: early && server.early_data == Some(request()),
        request_bytes: if with_request { request().len() } else { 0 },
        answer_bytes: if with_request { answer().len() } else { 0 },
    })
}

/// A full handshake by another client (same host, another port) on the lossless network,
/// run to the end so a DTLS 1.3 client has its NewSessionTicket; returns the session.
fn prime(sim: &mut Simulation, server: &mut Side, config: &Arc<ClientConfig>, seed: u64) -> Result<Session, Failed> {
    let mut ep = Endpoint::client(SeededRng::from_seed_u64(seed ^ 0xc1));
    ep.connect(sim.now(), SERVER, config.clone(), SERVER_NAME, None).map_err(|e| Failed(format!("connect: {e}")))?;
    let mut first = Side::new(client_addr(1), ep);
    // Until nothing is in flight, but not through the timer a DTLS 1.3 server keeps its
    // epoch-2 keys by (2 MSL, RFC 9147 §5.8.1): the simulated clock would run minutes ahead
    // of the wall clock the session store dates tickets by, and the ticket would look too
    // old for 0-RTT (RFC 8446 §8.3).
    match sim.run_until_idle(&mut (&mut first, &mut *server), PRIME_SETTLE, STEP_LIMIT) {
        Ok(()) | Err(coaps_sim::SimError::Deadline { .. }) => {}
        Err(e) => return Err(Failed(format!("priming handshake: {e}"))),
    }
    server.connected = None;
    let session = first.ep.connection(&SERVER).and_then(|c| c.session().cloned());
    session.ok_or_else(|| Failed("priming handshake: no session issued".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use coaps_dtls::PolicyContext;

    fn lossless(rtt_ms: u64) -> Link {
        Link { rtt: Duration::from_millis(rtt_ms), loss: 0.0, seed: 1 }
    }

    #[test]
    fn names_round_trip() {
        for m in Mode::ALL {
            assert_eq!(Mode::from_name(m.name()), Some(m));
        }
        assert_eq!(Mode::from_name("dtls1.4"), None);
    }

    #[test]
    fn link_timer_is_the_profiles_with_the_rtt_hint() {
        let ctx = PolicyContext::new(SERVER, coaps_dtls::Role::Client);
        let policy = |profile, ms| {
            let mut common = CommonConfig::default();
            link_retransmit_policy(profile, Duration::from_millis(ms), &mut common);
            common.retransmit_policy.expect("installed").build(&ctx)
        };
        // NB-IoT: max(5 s floor, 5 × RTT), a budget of 20 minutes.
        assert_eq!(policy(LinkProfile::NbIot, 1000).initial_timeout(), Duration::from_secs(5));
        assert_eq!(policy(LinkProfile::NbIot, 1500).initial_timeout(), Duration::from_millis(7500));
        assert_eq!(policy(LinkProfile::NbIot, 1500).handshake_timeout(), Some(Duration::from_secs(1200)));
        // Wi-Fi keeps RFC 6347's 1 s.
        assert_eq!(policy(LinkProfile::Wifi, 10).initial_timeout(), Duration::from_secs(1));
    }

    #[test]
    fn lossless_psk_handshake_counts_like_the_flights() {
        let t = run_handshake(Mode::Dtls12Psk, lossless(100), Timers::Rfc6347).unwrap();
        // CH1, CH2, CKE+CCS+Finished up; HVR, ServerHello..Done, CCS+Finished down.
        assert_eq!((t.up.len(), t.down.len(), t.round_trips, t.retransmissions), (3, 3, 3, 0));
        assert_eq!(t.received, t.down);
        assert_eq!(t.completion, Duration::from_millis(300));
        assert_eq!((t.answered, t.answer_round_trips, t.request_bytes), (None, None, 0));
        let no_cookie = run_handshake(Mode::Dtls12PskNoCookie, lossless(100), Timers::Rfc6347).unwrap();
        assert_eq!((no_cookie.up.len(), no_cookie.down.len(), no_cookie.round_trips), (2, 2, 2));
        assert_eq!(no_cookie.completion, Duration::from_millis(200));
    }

    #[test]
    fn the_request_is_a_32_byte_coap_get_and_the_answer_its_piggybacked_content() {
        let req = Packet::from_bytes(&request()).unwrap();
        assert_eq!(request().len(), 32);
        assert_eq!(req.header.code, MessageClass::Request(RequestType::Get));
        assert_eq!(req.get_token(), &TOKEN[..]);
        let ans = Packet::from_bytes(&answer()).unwrap();
        assert_eq!(ans.header.get_type(), MessageType::Acknowledgement);
        assert_eq!((ans.header.message_id, ans.get_token()), (req.header.message_id, &TOKEN[..]));
        assert_eq!(ans.header.code, MessageClass::Response(ResponseType::Content));
    }

    #[test]
    fn every_mode_ends_with_the_answer_one_round_trip_after_connecting_except_0_rtt() {
        for mode in Mode::ALL {
            let hs = run_handshake(mode, lossless(100), Timers::Rfc6347).unwrap();
            let t = run(mode, lossless(100), Timers::Rfc6347).unwrap();
            assert_eq!(t.round_trips, hs.round_trips, "{mode}: the same handshake");
            let extra = usize::from(mode != Mode::Dtls13ZeroRtt);
            assert_eq!(t.answer_round_trips, Some(t.round_trips + extra), "{mode}: {t:?}");
            let rt = t.answer_round_trips.unwrap() as u32;
            assert_eq!(t.answered, Some(Duration::from_millis(100) * rt), "{mode}: {t:?}");
            assert_eq!((t.retransmissions, t.request_retransmissions), (0, 0), "{mode}");
            assert_eq!((t.request_bytes, t.answer_bytes), (32, answer().len()));
            assert_eq!(t.early_data_accepted, mode == Mode::Dtls13ZeroRtt, "{mode}");
            // The request and the answer are on the wire: at least their bytes and a record
            // header each way more than the handshake alone (0-RTT's request was there already).
            let (up, down) = (t.up.iter().sum::<usize>(), t.down.iter().sum::<usize>());
            let (hs_up, hs_down) = (hs.up.iter().sum::<usize>(), hs.down.iter().sum::<usize>());
            if mode != Mode::Dtls13ZeroRtt {
                assert!(up > hs_up + 32, "{mode}: {up} vs {hs_up}");
            }
            assert!(down > hs_down + answer().len(), "{mode}: {down} vs {hs_down}");
        }
    }

    #[test]
    fn resumption_and_zero_rtt_are_what_they_say() {
        let r = run(Mode::Dtls12Resumption, lossless(100), Timers::Rfc6347).unwrap();
        assert!(r.resumed);
        assert_eq!(r.round_trips, 2);
        let r = run(Mode::Dtls13Resumption, lossless(100), Timers::Rfc6347).unwrap();
        assert!(r.resumed && !r.early_data_accepted);
        assert_eq!(r.round_trips, 1, "no HelloRetryRequest from the ticket's address");
        assert_eq!(r.answered, Some(Duration::from_millis(200)), "the request's own round trip");
        let z = run(Mode::Dtls13ZeroRtt, lossless(100), Timers::Rfc6347).unwrap();
        assert!(z.resumed && z.early_data_accepted);
        assert_eq!(z.round_trips, 1);
        assert_eq!(z.completion, Duration::from_millis(100));
        assert_eq!(z.answered, Some(Duration::from_millis(100)), "the answer came as 0.5-RTT data");
    }

    #[test]
    fn rfc_timers_fire_spuriously_when_the_rtt_exceeds_them_and_the_nb_iot_profile_does_not() {
        let slow = lossless(1500);
        let rfc = run_handshake(Mode::Dtls12Psk, slow, Timers::Rfc6347).unwrap();
        let lpwan = run_handshake(Mode::Dtls12Psk, slow, Timers::Link(LinkProfile::NbIot)).unwrap();
        assert!(rfc.retransmissions > 0, "1 s timer under a 1.5 s RTT: {rfc:?}");
        assert!(rfc.up.len() > 3);
        assert_eq!(lpwan.retransmissions, 0, "{lpwan:?}");
        assert_eq!((lpwan.up.len(), lpwan.down.len()), (3, 3));
        // The CoAP ACK_TIMEOUT follows the profile too (7.5 s at 1.5 s): no spurious request.
        let lpwan = run(Mode::Dtls12Psk, slow, Timers::Link(LinkProfile::NbIot)).unwrap();
        assert_eq!((lpwan.retransmissions, lpwan.request_retransmissions), (0, 0), "{lpwan:?}");
    }

    #[test]
    fn loss_costs_retransmissions_and_time() {
        let link = |seed| Link { rtt: Duration::from_millis(100), loss: 0.3, seed };
        let lossy = (0..16)
            .filter_map(|seed| run_handshake(Mode::Dtls12Psk, link(seed), Timers::Rfc6347).ok())
            .collect::<Vec<_>>();
        assert!(lossy.len() >= 12, "most handshakes complete at 30 % loss: {}", lossy.len());
        assert!(lossy.iter().any(|t| t.retransmissions > 0 && t.completion > Duration::from_secs(1)));
        assert!(lossy.iter().all(|t| t.up.len() >= 3 && t.received.len() <= t.down.len()));
        // A lost request or answer is sent again after the CoAP ACK_TIMEOUT (RFC 7252 §4.2).
        let exchanges = (0..16)
            .filter_map(|seed| run(Mode::Dtls13Resumption, link(seed), Timers::Rfc6347).ok())
            .collect::<Vec<_>>();
        assert!(exchanges.len() >= 12, "{}", exchanges.len());
        assert!(exchanges.iter().all(|t| t.answered.is_some_and(|a| a >= t.completion)));
        assert!(exchanges.iter().any(|t| t.request_retransmissions > 0), "{exchanges:?}");
    }
}
