//! Shared test fixtures: configurations for every key-exchange mode, and a simulator node
//! that wraps an [`Endpoint`].

pub mod inject;

use coaps_dtls::cert::{self, PinnedKeys, WebPkiVerifier};
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::crypto::rustcrypto::EcdsaP256SigningKey;
use coaps_dtls::suites::{self, SupportedSuite};
use coaps_dtls::{
    CertifiedKey, ClientAuth, ClientConfig, CommonConfig, Endpoint, Event, PeerVerifier, Psk, ServerConfig, Session,
    StaticPsks,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The engine's test fixtures (`crates/coaps-dtls/tests/data`).
pub const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../coaps-dtls/tests/data");

pub fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DATA}/{name}")).expect("test data")
}

pub fn signing_key(name: &str) -> Arc<EcdsaP256SigningKey> {
    let sk = cert::load_private_key_pem(&read(name)).expect("key");
    let bytes: [u8; 32] = sk.to_bytes().into();
    Arc::new(EcdsaP256SigningKey::from_bytes(&bytes).expect("key"))
}

/// A certificate chain with its key on the build's default provider (aws-lc-rs with the
/// `aws-lc` feature), so that the interop suites sign with the provider under test.
pub fn certified(cert_name: &str, key_name: &str) -> CertifiedKey {
    let sk = cert::load_private_key_pem(&read(key_name)).expect("key");
    let bytes: [u8; 32] = sk.to_bytes().into();
    let key = coaps_dtls::crypto::providers::default_provider().ecdsa_p256_signing_key(&bytes).expect("key");
    CertifiedKey { chain: cert::load_certs_pem(&read(cert_name)).expect("certs"), key }
}

pub fn webpki() -> PeerVerifier {
    let roots = cert::load_certs_pem(&read("ca.crt")).expect("ca");
    PeerVerifier::WebPki(Arc::new(WebPkiVerifier::new(&roots).expect("roots")))
}

pub fn psk() -> Psk {
    Psk::new(b"Client_identity".to_vec(), vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]).unwrap()
}

/// The key-exchange modes the engine supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Psk,
    EcdhePsk,
    EcdsaX509,
    EcdsaRawPublicKey,
    EcdsaMutual,
}

pub const ALL_MODES: [Mode; 5] =
    [Mode::Psk, Mode::EcdhePsk, Mode::EcdsaX509, Mode::EcdsaRawPublicKey, Mode::EcdsaMutual];

pub fn suite(name: &str) -> SupportedSuite {
    *suites::by_name(name).expect("suite")
}

pub fn configs(mode: Mode, suite_list: Option<Vec<SupportedSuite>>) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let mut common = CommonConfig::default();
    if let Some(s) = suite_list {
        common.suites = s;
    } else {
        common.suites = match mode {
            Mode::Psk => vec![suite("TLS_PSK_WITH_AES_128_CCM_8")],
            Mode::EcdhePsk => vec![suite("TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256")],
            _ => vec![suite("TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8")],
        };
    }
    let mut server = ServerConfig { common: common.clone(), ..ServerConfig::default() };
    let mut client = ClientConfig { common, ..ClientConfig::default() };
    match mode {
        Mode::Psk | Mode::EcdhePsk => {
            server.psks = Some(Arc::new(StaticPsks(vec![psk()])));
            client.psk = Some(psk());
        }
        Mode::EcdsaX509 | Mode::EcdsaMutual => {
            server.cert = Some(certified("server.crt", "server.key"));
            client.verifier = Some(webpki());
            if mode == Mode::EcdsaMutual {
                server.client_auth = ClientAuth::Required(webpki());
                client.client_cert = Some(certified("client.crt", "client.key"));
            }
        }
        Mode::EcdsaRawPublicKey => {
            let key = signing_key("server.key");
            let spki = coaps_dtls::crypto::SigningKey::public_key_spki(&*key);
            server.cert = Some(CertifiedKey { chain: Vec::new(), key });
            server.raw_public_key = true;
            client.verifier = Some(PeerVerifier::Pinned(Arc::new(PinnedKeys::new(vec![spki]))));
        }
    }
    (Arc::new(server), Arc::new(client))
}

pub fn server_addr() -> SocketAddr {
    "10.0.0.1:5684".parse().unwrap()
}
pub fn client_addr() -> SocketAddr {
    "10.0.0.2:40000".parse().unwrap()
}

/// Runs `client` against `server` until the client has its echo or is closed, within 900
/// simulated seconds and 200 000 steps. The error names what failed, with both sides' events.
pub fn run_to_echo(sim: &mut coaps_sim::Simulation, client: &mut Node, server: &mut Node) -> Result<(), String> {
    let r = sim.run_until(
        &mut (&mut *client, &mut *server),
        |_, (c, _)| c.got_echo || c.closed_reason().is_some(),
        Duration::from_secs(900),
        200_000,
    );
    r.map_err(|e| format!("{e}; client events {:?}; server events {:?}", client.events, server.events))?;
    if !client.got_echo {
        return Err(format!("client closed: {:?}; server events {:?}", client.closed_reason(), server.events));
    }
    Ok(())
}

/// A simulator node: an endpoint plus, on clients, an application that sends one message
/// after the handshake and resends it (as CoAP would) until the echo arrives.
pub struct Node {
    pub addr: SocketAddr,
    pub ep: Endpoint,
    pub events: Vec<(SocketAddr, Event)>,
    pub echo: bool,
    pub message: Option<(SocketAddr, Vec<u8>)>,
    pub resend_at: Option<Instant>,
    pub connected: bool,
    pub got_echo: bool,
    pub session: Option<Session>,
    pub resumed: bool,
}

impl Node {
    pub fn server(config: Arc<ServerConfig>, seed: u64, now: Instant) -> Self {
        Self::new(server_addr(), Endpoint::server(config, SeededRng::from_seed_u64(seed), now), true)
    }

    pub fn client(config: Arc<ClientConfig>, seed: u64, now: Instant, resume: Option<Session>, message: &[u8]) -> Self {
        let mut ep = Endpoint::client(SeededRng::from_seed_u64(seed));
        ep.connect(now, server_addr(), config, "localhost", resume).expect("connect");
        let mut n = Self::new(client_addr(), ep, false);
        n.message = Some((server_addr(), message.to_vec()));
        n
    }

    fn new(addr: SocketAddr, ep: Endpoint, echo: bool) -> Self {
        Self {
            addr,
            ep,
            events: Vec::new(),
            echo,
            message: None,
            resend_at: None,
            connected: false,
            got_echo: false,
            session: None,
            resumed: false,
        }
    }

    fn drain(&mut self, now: Instant) {
        while let Some((peer, ev)) = self.ep.poll_event() {
            match &ev {
                Event::Connected { resumed, .. } => {
                    self.connected = true;
                    self.resumed = *resumed;
                    if let Some((to, m)) = self.message.clone() {
                        let _ = self.ep.send(to, &m);
                        self.resend_at = Some(now + Duration::from_millis(500));
                    }
                }
                Event::ApplicationData(d) => {
                    if self.echo {
                        let _ = self.ep.send(peer, d);
                    } else if self.message.as_ref().is_some_and(|(_, m)| m == d) {
                        self.got_echo = true;
                        self.resend_at = None;
                        self.session = self.ep.connection(&peer).and_then(|c| c.session().cloned());
                    }
                }
                _ => {}
            }
            self.events.push((peer, ev));
        }
    }

    pub fn closed_reason(&self) -> Option<String> {
        self.events.iter().find_map(|(_, e)| match e {
            Event::Closed(r) => Some(format!("{r:?}")),
            _ => None,
        })
    }
}

impl coaps_sim::Endpoint for Node {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        self.ep.handle_datagram(now, from, payload);
        self.drain(now);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        if self.resend_at.is_some_and(|t| t <= now) && !self.got_echo {
            if let Some((to, m)) = self.message.clone() {
                let _ = self.ep.send(to, &m);
            }
            self.resend_at = Some(now + Duration::from_millis(500));
        }
        self.drain(now);
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        self.drain(now);
        self.ep.poll_transmit().map(|t| (t.destination, t.payload))
    }
    fn poll_timeout(&self) -> Option<Instant> {
        match (self.ep.poll_timeout(), self.resend_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
