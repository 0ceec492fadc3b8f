//! This engine, client and server on one thread, datagrams handed over in memory.

use crate::{Mode, Outcome, PSK_IDENTITY, PSK_KEY, Wire, read_data};
use coaps_dtls::CipherSuite;
use coaps_dtls::cert::{self, WebPkiVerifier};
use coaps_dtls::crypto::rustcrypto::EcdsaP256SigningKey;
use coaps_dtls::crypto::{CryptoProvider, SeededRng};
use coaps_dtls::{
    CertifiedKey, ClientConfig, CommonConfig, DtlsVersion, Endpoint, Event, PeerVerifier, Psk, ServerConfig, Session,
    StaticPsks, suites,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The server's address (documentation range: nothing is ever sent anywhere).
pub const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 5684);

/// The PSK both sides hold.
pub fn psk() -> Psk {
    Psk::new(PSK_IDENTITY.to_vec(), PSK_KEY.to_vec()).expect("psk")
}

fn signing_key(name: &str) -> Arc<EcdsaP256SigningKey> {
    let sk = cert::load_private_key_pem(&read_data(name)).expect("key");
    let bytes: [u8; 32] = sk.to_bytes().into();
    Arc::new(EcdsaP256SigningKey::from_bytes(&bytes).expect("key"))
}

/// Server and client configurations for `mode`, with the engine's defaults otherwise (cookie
/// exchange on, session store on, extended_master_secret required, MTU 1152).
pub fn configs(mode: Mode) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let suite = *suites::by_name(mode.openssl_cipher()).expect("suite");
    let common = CommonConfig { suites: vec![suite], ..CommonConfig::default() };
    let mut server = ServerConfig { common: common.clone(), ..ServerConfig::default() };
    let mut client = ClientConfig { common, ..ClientConfig::default() };
    if mode.uses_psk() {
        server.psks = Some(Arc::new(StaticPsks(vec![psk()])));
        client.psk = Some(psk());
    } else {
        server.cert = Some(CertifiedKey {
            chain: cert::load_certs_pem(&read_data("server.crt")).expect("certs"),
            key: signing_key("server.key"),
        });
        let roots = cert::load_certs_pem(&read_data("ca.crt")).expect("ca");
        client.verifier = Some(PeerVerifier::WebPki(Arc::new(WebPkiVerifier::new(&roots).expect("roots"))));
    }
    (Arc::new(server), Arc::new(client))
}

/// `configs` (or [`configs13`]) with `provider` on both sides, the server's certificate key
/// included (so that its signatures are that provider's too).
pub fn with_provider(
    (mut server, mut client): (Arc<ServerConfig>, Arc<ClientConfig>),
    provider: &Arc<dyn CryptoProvider>,
) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let s = Arc::make_mut(&mut server);
    s.common.provider = provider.clone();
    if let Some(cert) = &mut s.cert {
        let sk = cert::load_private_key_pem(&read_data("server.key")).expect("key");
        let bytes: [u8; 32] = sk.to_bytes().into();
        cert.key = provider.ecdsa_p256_signing_key(&bytes).expect("key");
    }
    Arc::make_mut(&mut client).common.provider = provider.clone();
    (server, client)
}

/// DTLS 1.3 configurations: `mode` says how to authenticate (a PSK mode: external PSK, which
/// the server takes as psk_dhe_ke since the client always sends a key share; the ECDSA mode:
/// the P-256 certificate), `suite` is the only 1.3 suite offered. Otherwise as [`configs`].
pub fn configs13(mode: Mode, suite: CipherSuite) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let (mut server, mut client) = configs(mode);
    Arc::make_mut(&mut server).common.suites13 = vec![suite];
    let c = Arc::make_mut(&mut client);
    c.common.suites13 = vec![suite];
    c.version = DtlsVersion::Dtls13;
    (server, client)
}

/// A long-lived server endpoint and the client configuration; each [`Harness::handshake`] runs
/// a fresh client endpoint from a new source port to completion.
#[derive(Debug)]
pub struct Harness {
    /// The server.
    pub server: Endpoint,
    client_config: Arc<ClientConfig>,
    now: Instant,
    counter: u64,
    session: Option<Session>,
    keep: bool,
}

impl Harness {
    /// A server for `mode` with `server_config` adjusted by `tweak` (e.g. cookies off).
    pub fn with(mode: Mode, tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        Self::from_configs(configs(mode), tweak)
    }

    /// A DTLS 1.3 server and client (see [`configs13`]), `server_config` adjusted by `tweak`.
    /// [`Harness::prime_session`] then keeps the ticket the server sends after the handshake.
    pub fn with13(mode: Mode, suite: CipherSuite, tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        Self::from_configs(configs13(mode, suite), tweak)
    }

    /// [`Harness::with`] (`suite13` = `None`) or [`Harness::with13`] with `provider` on both
    /// sides (see [`with_provider`]).
    pub fn with_provider_of(
        mode: Mode,
        suite13: Option<CipherSuite>,
        provider: &Arc<dyn CryptoProvider>,
        tweak: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        let configs = match suite13 {
            None => configs(mode),
            Some(suite) => configs13(mode, suite),
        };
        Self::from_configs(with_provider(configs, provider), tweak)
    }

    fn from_configs(
        (mut server_config, client_config): (Arc<ServerConfig>, Arc<ClientConfig>),
        tweak: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        tweak(Arc::make_mut(&mut server_config));
        let now = Instant::now();
        Self {
            server: Endpoint::server(server_config, SeededRng::from_seed_u64(0x5e7e), now),
            client_config,
            now,
            counter: 0,
            session: None,
            keep: false,
        }
    }

    /// Adjusts the client configuration (e.g. the resumption key exchange).
    pub fn tweak_client(&mut self, tweak: impl FnOnce(&mut ClientConfig)) {
        tweak(Arc::make_mut(&mut self.client_config));
    }

    /// A server for `mode` with the default configuration.
    pub fn new(mode: Mode) -> Self {
        Self::with(mode, |_| {})
    }

    /// Runs one full handshake and keeps its session for [`Harness::handshake`] with
    /// `resume = true`.
    pub fn prime_session(&mut self) {
        let (outcome, session) = self.run(None);
        assert!(!outcome.resumed);
        self.session = Some(session.expect("the server issued no session"));
    }

    /// The session [`Harness::prime_session`] kept (the client's copy: the server's fields).
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// One complete handshake from a new client (new port, new seed). With `resume`, the
    /// client offers the session of [`Harness::prime_session`].
    ///
    /// # Panics
    /// If the handshake does not complete, or a resumption was asked for and not granted.
    pub fn handshake(&mut self, resume: bool) -> Outcome {
        let session = if resume { Some(self.session.clone().expect("prime_session first")) } else { None };
        let (outcome, newest) = self.run(session);
        assert_eq!(outcome.resumed, resume, "resumption not as asked");
        if resume && let Some(newest) = newest {
            // As a real client does: resume next time with the newest ticket. The bounded
            // session store evicts old tickets as every handshake gets a new one, so the primed
            // ticket alone would stop working after many iterations.
            self.session = Some(newest);
        }
        outcome
    }

    /// One complete full handshake from a new client address, like [`Harness::handshake`], but
    /// the server **keeps** the association (the client endpoint is dropped, as a peer that
    /// went quiet). Every server event and datagram is drained, so the server's queues are
    /// empty. At most 65 000 addresses per harness (192.0.2.x, ports 1024–65023 … wrapping into
    /// further hosts).
    ///
    /// # Panics
    /// If the handshake does not complete.
    pub fn establish(&mut self) -> Outcome {
        self.keep = true;
        let (outcome, _) = self.run(None);
        self.keep = false;
        outcome
    }

    /// The time the harness runs at (every handshake happens at this instant).
    pub fn now(&self) -> Instant {
        self.now
    }

    fn client_addr(&self) -> SocketAddr {
        let port = 1024 + (self.counter % 60_000) as u16;
        let host = 2 + (self.counter / 60_000 % 250) as u8;
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, host)), port)
    }

    /// A DTLS 1.3 resumption of the [`Harness::prime_session`] ticket whose ClientHello carries
    /// `request` as 0-RTT early data (the server must allow it), counted like
    /// [`Harness::handshake`]: every datagram until none moves, the post-handshake flights
    /// included. The server forgets the association afterwards.
    ///
    /// # Panics
    /// If the handshake does not complete, is not resumed, or the server does not deliver
    /// `request` as early data.
    pub fn handshake_early(&mut self, request: &[u8]) -> Outcome {
        let session = self.session.clone().expect("prime_session first");
        let (outcome, newest) = self.run_with(Some(session), Some(request), None);
        assert!(outcome.resumed, "0-RTT needs a resumption");
        // A ticket that carried accepted early data is single-use (RFC 8446 §8.1).
        self.session = Some(newest.expect("a new ticket"));
        outcome
    }

    /// One handshake (a full one, or with `resume` a resumption of the
    /// [`Harness::prime_session`] session) from a new client, followed by one request and its
    /// answer, the way a battery device spends a wake-up (`coaps energy`'s rows): the client
    /// sends `request` as soon as it is connected, or with `early` as 0-RTT early data beside
    /// its ClientHello (DTLS 1.3; the server must allow it, and `resume` must be set); the
    /// server answers every delivery of `request` with `answer` as soon as it has it (after a
    /// 0-RTT request as 0.5-RTT data, RFC 8446 §2.3). Counted like [`Harness::handshake`]:
    /// every datagram until none moves; [`Wire::answer_round_trips`] tells when the client had
    /// the answer.
    ///
    /// # Panics
    /// If the handshake does not complete, the resumption is not as asked, or the client never
    /// gets the answer.
    pub fn exchange(&mut self, resume: bool, early: bool, request: &[u8], answer: &[u8]) -> Outcome {
        assert!(resume || !early, "0-RTT needs a resumption");
        let session = if resume { Some(self.session.clone().expect("prime_session first")) } else { None };
        let (outcome, newest) = self.run_with(session, early.then_some(request), Some((request, answer)));
        assert_eq!(outcome.resumed, resume, "resumption not as asked");
        if resume && let Some(newest) = newest {
            // The newest ticket, as in `handshake`; after accepted early data the old one is
            // single-use anyway (RFC 8446 §8.1).
            self.session = Some(newest);
        }
        outcome
    }

    fn run(&mut self, resume: Option<Session>) -> (Outcome, Option<Session>) {
        self.run_with(resume, None, None)
    }

    /// `early`: 0-RTT data beside the ClientHello. `exchange`: (request, answer) as in
    /// [`Harness::exchange`] (an early request is `early` as well).
    fn run_with(
        &mut self,
        resume: Option<Session>,
        early: Option<&[u8]>,
        exchange: Option<(&[u8], &[u8])>,
    ) -> (Outcome, Option<Session>) {
        self.counter += 1;
        let now = self.now;
        let client_addr = self.client_addr();
        let mut client = Endpoint::client(SeededRng::from_seed_u64(self.counter));
        let config = self.client_config.clone();
        match early {
            Some(data) => client.connect_with_early_data(now, SERVER, config, "localhost", resume, data),
            None => client.connect(now, SERVER, config, "localhost", resume),
        }
        .expect("connect");
        let mut early_delivered = false;
        // The request still has to go once connected: no 0-RTT, or the server rejected it.
        let mut request_pending = exchange.is_some() && early.is_none();
        let mut answered = false;

        let mut wire = Wire::default();
        let (mut client_done, mut server_done) = (None, None);
        for _ in 0..32 {
            let mut moved = false;
            while let Some(t) = client.poll_transmit() {
                wire.c2s(t.payload.len());
                self.server.handle_datagram(now, client_addr, &t.payload);
                moved = true;
            }
            // The server's events before its datagrams go, so an answer leaves with the flight
            // it follows (as a server that answers from its event loop does).
            while let Some((peer, ev)) = self.server.poll_event() {
                match ev {
                    Event::Connected { resumed, .. } => server_done = server_done.or(Some(resumed)),
                    Event::EarlyData(d) => {
                        early_delivered |= early == Some(&d[..]);
                        answer_request(&mut self.server, peer, &d, exchange);
                    }
                    Event::ApplicationData(d) => answer_request(&mut self.server, peer, &d, exchange),
                    Event::Closed(reason) => panic!("server: {peer} closed: {reason:?}"),
                    _ => {}
                }
            }
            while let Some(t) = self.server.poll_transmit() {
                wire.s2c(t.payload.len());
                client.handle_datagram(now, SERVER, &t.payload);
                moved = true;
            }
            while let Some((peer, ev)) = client.poll_event() {
                match ev {
                    Event::Connected { resumed, .. } if client_done.is_none() => {
                        client_done = Some(resumed);
                        wire.round_trips = wire.s2c_flights;
                        if request_pending && let Some((request, _)) = exchange {
                            client.send(peer, request).expect("send the request");
                            request_pending = false;
                        }
                    }
                    Event::EarlyDataRejected => request_pending = exchange.is_some(),
                    Event::ApplicationData(d) if !answered && exchange.is_some_and(|(_, a)| d == a) => {
                        answered = true;
                        wire.answer_round_trips = wire.s2c_flights;
                    }
                    Event::Closed(reason) => panic!("client: {peer} closed: {reason:?}"),
                    _ => {}
                }
            }
            if !moved {
                break;
            }
        }
        let (Some(c), Some(s)) = (client_done, server_done) else {
            panic!(
                "handshake did not complete: client {client:?} {:?}, server {:?}",
                client.connection(&SERVER).map(|c| (
                    c.version(),
                    c.is_handshaking(),
                    c.close_reason().cloned(),
                    c.stats()
                )),
                self.server
            );
        };
        assert_eq!(early_delivered, early.is_some(), "early data delivered as such");
        assert_eq!(answered, exchange.is_some(), "the client got the answer");
        let session = client.connection(&SERVER).and_then(|c| c.session().cloned());
        if !self.keep {
            // Forget the association (no close_notify: that is not handshake work) so the
            // table does not grow over millions of iterations.
            self.server.expire_idle(now + Duration::from_secs(1));
        }
        (Outcome { resumed: c && s, wire }, session)
    }
}

/// How soon the server had the client's first application byte (see
/// [`Harness::first_byte`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstByte {
    /// The server took the data as 0-RTT early data.
    pub early: bool,
    /// Server flights the client had received when the server got the data: 0 for accepted
    /// 0-RTT, 1 for a 1-RTT resumption.
    pub round_trips: usize,
    /// UDP payload bytes on the wire (both directions) until then, the data's record included.
    pub bytes: usize,
    /// Datagrams until then.
    pub datagrams: usize,
}

impl Harness {
    /// DTLS 1.3 resumption of the [`Harness::prime_session`] ticket that sends `data` as soon as
    /// it can: as 0-RTT early data with `early` (the server must allow it), else right after
    /// `Connected`. Measures what crossed the wire until the server delivered it.
    ///
    /// # Panics
    /// If the server never delivers the data.
    pub fn first_byte(&mut self, data: &[u8], early: bool) -> FirstByte {
        self.resume_sending(data, early, None, false).expect("the server never delivered the data")
    }

    /// Like [`Harness::first_byte`], but until the client has the server's `answer` to `data`:
    /// the server answers as soon as it has the request (as 0.5-RTT data when the request
    /// came as 0-RTT data, RFC 8446 §2.3). `round_trips` counts the server flights the
    /// client had received then (the answer's datagram counts with the flight it follows).
    pub fn answer(&mut self, data: &[u8], answer: &[u8], early: bool) -> FirstByte {
        self.resume_sending(data, early, Some(answer), false)
            .unwrap_or_else(|| panic!("the client never got the answer"))
    }

    /// Like [`Harness::answer`] with `data` offered as 0-RTT data, but the server holds it
    /// when it arrives early and answers only once the handshake completes (the client's
    /// Finished), as `coaps_tower::EarlyDataLayer` defers an unsafe request (a POST). When the
    /// server refuses the early data (after a HelloRetryRequest, RFC 8446 §4.2.10), the client
    /// sends `data` again once connected, as `coaps_tower::Client::connect_early` does; the
    /// refused copy's bytes count too.
    pub fn answer_deferred(&mut self, data: &[u8], answer: &[u8]) -> FirstByte {
        self.resume_sending(data, true, Some(answer), true).unwrap_or_else(|| panic!("the client never got the answer"))
    }

    /// [`Harness::first_byte`] of a 0-RTT request that the client sends again once connected
    /// if the server refused its early data (see [`Harness::answer_deferred`]).
    pub fn first_byte_or_resent(&mut self, data: &[u8]) -> FirstByte {
        self.resume_sending(data, true, None, true).expect("the server never delivered the data")
    }

    /// Drives a resumption of the primed ticket by a fresh client that sends `data` (as 0-RTT
    /// early data with `early`, else on `Connected`). Without `answer`, stops once the server
    /// has `data` (measured then); with it, the server answers every delivery of `data` with
    /// `answer` and the run stops (measured) once the client has the answer. `None` when that
    /// never happens. Either way the server forgets the association afterwards.
    fn resume_sending(&mut self, data: &[u8], early: bool, answer: Option<&[u8]>, defer: bool) -> Option<FirstByte> {
        self.counter += 1;
        let now = self.now;
        let client_addr = self.client_addr();
        let session = self.session.clone().expect("prime_session first");
        let mut client = Endpoint::client(SeededRng::from_seed_u64(self.counter));
        if early {
            client.connect_with_early_data(now, SERVER, self.client_config.clone(), "localhost", Some(session), data)
        } else {
            client.connect(now, SERVER, self.client_config.clone(), "localhost", Some(session))
        }
        .expect("connect");
        let measure = |early: bool, wire: &Wire| FirstByte {
            early,
            round_trips: wire.s2c_flights,
            bytes: wire.bytes(),
            datagrams: wire.datagrams(),
        };
        let mut wire = Wire::default();
        let mut was_early = false;
        let mut result = None;
        // A deferred request's association, until its handshake completes; whether the client
        // saw its early data accepted.
        let mut held = None;
        let mut accepted = false;
        'run: for _ in 0..32 {
            let mut moved = false;
            while let Some(t) = client.poll_transmit() {
                wire.c2s(t.payload.len());
                self.server.handle_datagram(now, client_addr, &t.payload);
                moved = true;
            }
            while let Some((peer, ev)) = self.server.poll_event() {
                if let Event::EarlyData(d) | Event::ApplicationData(d) = &ev
                    && d == data
                    && result.is_none()
                {
                    was_early = matches!(ev, Event::EarlyData(_));
                    match answer {
                        Some(_) if defer && was_early => held = Some(peer),
                        Some(answer) => self.server.send(peer, answer).expect("answer"),
                        None => result = Some(measure(was_early, &wire)),
                    }
                } else if let (Event::Connected { .. }, Some(answer)) = (&ev, answer)
                    && held == Some(peer)
                {
                    held = None;
                    self.server.send(peer, answer).expect("answer");
                }
            }
            if result.is_some() {
                break;
            }
            while let Some(t) = self.server.poll_transmit() {
                wire.s2c(t.payload.len());
                client.handle_datagram(now, SERVER, &t.payload);
                moved = true;
            }
            while let Some((peer, ev)) = client.poll_event() {
                match ev {
                    Event::EarlyDataAccepted => accepted = true,
                    Event::Connected { .. } if !early || (defer && !accepted) => client.send(peer, data).expect("send"),
                    Event::ApplicationData(d) if answer.is_some_and(|a| d == a) => {
                        result = Some(measure(was_early, &wire));
                        break 'run;
                    }
                    Event::Closed(r) => panic!("closed: {r:?}"),
                    _ => {}
                }
            }
            if !moved {
                break;
            }
        }
        self.server.expire_idle(now + Duration::from_secs(1));
        // What the server still had to send belongs to the forgotten association.
        while self.server.poll_transmit().is_some() {}
        while self.server.poll_event().is_some() {}
        result
    }
}

/// The server's side of [`Harness::exchange`]: `answer` to every delivery of `request`.
fn answer_request(server: &mut Endpoint, peer: SocketAddr, data: &[u8], exchange: Option<(&[u8], &[u8])>) {
    if let Some((request, answer)) = exchange
        && data == request
    {
        server.send(peer, answer).expect("answer");
    }
}

/// The first datagram a DTLS 1.3 client sends in `mode` with `suite` (see [`configs13`]): a
/// ClientHello without a cookie, which draws a stateless HelloRetryRequest.
pub fn client_hello13(mode: Mode, suite: CipherSuite) -> Vec<u8> {
    let (_, client_config) = configs13(mode, suite);
    let mut client = Endpoint::client(SeededRng::from_seed_u64(1));
    client.connect(Instant::now(), SERVER, client_config, "localhost", None).expect("connect");
    client.poll_transmit().expect("ClientHello").payload
}

/// The first datagram a client sends in `mode`: a ClientHello without a cookie.
pub fn client_hello(mode: Mode) -> Vec<u8> {
    let (_, client_config) = configs(mode);
    let mut client = Endpoint::client(SeededRng::from_seed_u64(1));
    client.connect(Instant::now(), SERVER, client_config, "localhost", None).expect("connect");
    client.poll_transmit().expect("ClientHello").payload
}
