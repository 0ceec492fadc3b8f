//! Server stacks ("nodes") sharing one session store, as a cluster behind one address has
//! them, and a raw-engine client that connects through one: the set-up of the resumption and
//! ticket-rotation tests. A node is `CookieLayer` → `ResumptionLayer` (over the shared store)
//! → `HandshakeLayer` → echo (or the application of [`NodeBuilder::build_with`]), driven
//! in-process (no sockets): `Node::call` takes one datagram.

use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{ClientConfig, Endpoint, Event, ServerConfig, Session, TicketKeys, TicketMode};
use coaps_tower::resumption::{AsyncSessionStore, ResumptionLayer};
use coaps_tower::{Associations, BoxError, CookieLayer, Datagram, HandshakeLayer, Secured, Transmits};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::util::BoxService;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// The address every node answers from (one address for the cluster).
pub fn server_addr() -> SocketAddr {
    "192.0.2.1:5684".parse().unwrap()
}

/// A client address: `192.0.2.10`, port `40000 + n`.
pub fn client_addr(n: u16) -> SocketAddr {
    SocketAddr::new([192, 0, 2, 10].into(), 40000 + n)
}

/// How to build a [`Node`].
pub struct NodeBuilder {
    config: Arc<ServerConfig>,
    store: Arc<dyn AsyncSessionStore>,
    seed: u64,
    cookies: bool,
    lookup_timeout: Duration,
    ticket_keys: Option<TicketKeys>,
    startup_refusal: Option<Duration>,
    psk_lookup_budget: Option<u32>,
}

impl NodeBuilder {
    /// Seeds the node's randomness (cookie secrets from `seed`, the handshake layer's from
    /// `seed + 1`). Default 1.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// No cookie layer: every ClientHello (with its early data) reaches the resumption layer,
    /// and the handshake layer runs its own gate.
    pub fn without_cookie_layer(mut self) -> Self {
        self.cookies = false;
        self
    }

    /// The resumption layer's look-up bound. Default 3 s: generous, so a loaded CI machine
    /// does not turn a slow look-up into a full handshake.
    pub fn lookup_timeout(mut self, timeout: Duration) -> Self {
        self.lookup_timeout = timeout;
        self
    }

    /// Stateless tickets sealed under `keys` (engine and resumption layer).
    pub fn stateless_tickets(mut self, keys: TicketKeys) -> Self {
        self.ticket_keys = Some(keys);
        self
    }

    /// The resumption layer's start-up refusal of sealed tickets' 0-RTT
    /// ([`ResumptionLayer::startup_refusal`]). Default the layer's.
    pub fn startup_refusal(mut self, window: Duration) -> Self {
        self.startup_refusal = Some(window);
        self
    }

    /// The cookie layer's look-up budget ([`CookieLayer::psk_lookup_budget`]). Default the
    /// layer's.
    pub fn psk_lookup_budget(mut self, per_second: u32) -> Self {
        self.psk_lookup_budget = Some(per_second);
        self
    }

    /// The node, answering application data with an echo.
    pub fn build(self) -> Node {
        self.build_with(service_fn(|s: Secured| async move { Ok::<_, BoxError>(Some(s.payload)) }))
    }

    /// The node with `app` behind the handshake layer (e.g. `CoapLayer` → `EarlyDataLayer` →
    /// an application).
    pub fn build_with<S>(self, echo: S) -> Node
    where
        S: Service<Secured, Response = Option<Vec<u8>>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        let mut config = self.config.clone();
        if let Some(keys) = &self.ticket_keys {
            Arc::make_mut(&mut config).tickets = TicketMode::Stateless(keys.clone());
        }
        let rng = SeededRng::from_seed_u64(self.seed + 1);
        let (svc, resumption, cookie_layer, associations) = if self.cookies {
            let mut cookies = CookieLayer::for_server_with_rng(&config, SeededRng::from_seed_u64(self.seed));
            if let Some(n) = self.psk_lookup_budget {
                cookies = cookies.psk_lookup_budget(n);
            }
            let resumption = self.resumption(ResumptionLayer::behind(self.store.clone(), &cookies));
            let handshake =
                HandshakeLayer::builder(config).rng(rng).on_session(resumption.session_sink()).behind(&cookies).build();
            let associations = handshake.associations();
            let svc = ServiceBuilder::new()
                .layer(cookies.clone())
                .layer(resumption.clone())
                .layer(handshake)
                .service(echo)
                .boxed();
            (svc, resumption, Some(cookies), associations)
        } else {
            let resumption = self.resumption(ResumptionLayer::without_cookie_layer(self.store.clone()));
            let handshake =
                HandshakeLayer::builder(config).rng(rng).on_session(resumption.session_sink()).own_gate().build();
            let associations = handshake.associations();
            let svc = ServiceBuilder::new().layer(resumption.clone()).layer(handshake).service(echo).boxed();
            (svc, resumption, None, associations)
        };
        Node { svc, resumption, cookies: cookie_layer, associations }
    }

    fn resumption(&self, layer: ResumptionLayer) -> ResumptionLayer {
        let mut layer = layer.lookup_timeout(self.lookup_timeout);
        // As `coaps serve` does: the configured PSK identities are never looked up.
        if let Some(psks) = &self.config.psks {
            layer = layer.external_psks(psks.clone());
        }
        if let Some(window) = self.startup_refusal {
            layer = layer.startup_refusal(window);
        }
        match &self.ticket_keys {
            Some(keys) => layer.ticket_keys(keys.clone()),
            None => layer,
        }
    }
}

/// One server stack of the cluster.
pub struct Node {
    svc: BoxService<Datagram, Transmits, BoxError>,
    /// The node's resumption layer (its counters).
    pub resumption: ResumptionLayer,
    /// Its cookie layer (its counters), unless built without one.
    pub cookies: Option<CookieLayer>,
    /// Its handshake layer's associations (out-of-band datagrams, closing).
    pub associations: Associations,
}

impl Node {
    /// A node serving `config` (give it `session_store: None`: sessions live in `store`).
    pub fn builder(config: Arc<ServerConfig>, store: Arc<dyn AsyncSessionStore>) -> NodeBuilder {
        NodeBuilder {
            config,
            store,
            seed: 1,
            cookies: true,
            lookup_timeout: Duration::from_secs(3),
            ticket_keys: None,
            startup_refusal: None,
            psk_lookup_budget: None,
        }
    }

    /// Two nodes on `store`, seeded from `seed` and `seed + 10`.
    pub fn pair(config: &Arc<ServerConfig>, store: &Arc<dyn AsyncSessionStore>, seed: u64) -> (Node, Node) {
        let a = Self::builder(config.clone(), store.clone()).seed(seed).build();
        let b = Self::builder(config.clone(), store.clone()).seed(seed + 10).build();
        (a, b)
    }

    /// Hands the stack one datagram.
    pub async fn call(&mut self, d: Datagram) -> Result<Transmits, BoxError> {
        self.svc.ready().await?.call(d).await
    }

    /// HelloRetryRequests its cookie layer sent so far (0 without one).
    pub fn hello_retry_requests(&self) -> u64 {
        self.cookies.as_ref().map_or(0, |c| c.stats().hello_retry_requests)
    }

    /// Waits (bounded, 2.5 s) until the store has taken `n` writes from this node in all.
    pub async fn stored(&self, n: u64) {
        for _ in 0..500 {
            if self.resumption.stats().sessions_stored >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{n} sessions not stored: {:?}", self.resumption.stats());
    }
}

/// What one client connection saw.
#[derive(Debug)]
pub struct Outcome {
    pub resumed: bool,
    pub early_accepted: bool,
    /// The client's session after the echo (a DTLS 1.3 ticket arrives after the handshake).
    pub session: Option<Session>,
}

/// A raw-engine client from `from` with `config`: connects to [`server_addr`] through `node`
/// (resuming `resume`, with `early` as 0-RTT data), sends one echo, closes.
///
/// # Panics
/// If no echo comes back within 40 rounds or the connection closes.
pub async fn connect(
    node: &mut Node,
    seed: u64,
    from: SocketAddr,
    config: Arc<ClientConfig>,
    resume: Option<Session>,
    early: Option<&[u8]>,
) -> Outcome {
    let mut ep = Endpoint::client(SeededRng::from_seed_u64(seed));
    let now = Instant::now();
    match early {
        None => ep.connect(now, server_addr(), config, "localhost", resume).unwrap(),
        Some(e) => ep.connect_with_early_data(now, server_addr(), config, "localhost", resume, e).unwrap(),
    }
    let (mut resumed, mut early_accepted, mut echoed) = (None, false, false);
    for _ in 0..40 {
        let mut quiet = true;
        while let Some(t) = ep.poll_transmit() {
            quiet = false;
            let answers = node.call(Datagram::new(from, t.payload)).await.expect("the stack answers");
            for a in answers {
                ep.handle_datagram(Instant::now(), server_addr(), &a.payload);
            }
        }
        while let Some((_, ev)) = ep.poll_event() {
            quiet = false;
            match ev {
                Event::Connected { resumed: r, .. } => {
                    resumed = Some(r);
                    ep.send(server_addr(), b"ping").unwrap();
                }
                Event::EarlyDataAccepted => early_accepted = true,
                Event::ApplicationData(d) if d == b"ping" => echoed = true,
                Event::Closed(r) => panic!("closed: {r:?}"),
                _ => {}
            }
        }
        if quiet && echoed {
            break;
        }
    }
    assert!(echoed, "no echo (resumed {resumed:?})");
    let session = ep.connection(&server_addr()).and_then(|c| c.session().cloned());
    ep.close(server_addr());
    while let Some(t) = ep.poll_transmit() {
        let _ = node.call(Datagram::new(from, t.payload)).await;
    }
    Outcome { resumed: resumed.expect("connected"), early_accepted, session }
}
