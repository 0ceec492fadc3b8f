//! Shared pieces of the `datagram_*` tests: a server stack (cookie layer → probe → handshake
//! layer → echo) on a loopback socket, and a small async DTLS client over the engine's
//! `Endpoint::client` and a tokio `UdpSocket`.

use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{ClientConfig, CloseReason, CommonConfig, Endpoint, Event, Psk, ServerConfig, StaticPsks, suites};
use coaps_tower::cookie::{Cookie, CookieLayer};
use coaps_tower::handshake::{Associations, Handshake, HandshakeLayer};
use coaps_tower::transport::Server;
use coaps_tower::{BoxError, Datagram, Secured, Transmits};
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tower::{Layer, Service};

pub const PSK_IDENTITY: &str = "Client_identity";
pub const PSK_HEX: &str = "0102030405060708090a0b0c0d0e0f10";

pub fn psk() -> Psk {
    let key: Vec<u8> =
        (0..PSK_HEX.len()).step_by(2).map(|i| u8::from_str_radix(&PSK_HEX[i..i + 2], 16).unwrap()).collect();
    Psk::new(PSK_IDENTITY, key).unwrap()
}

/// Plain PSK suites only: no ECDHE, so hundreds of handshakes stay cheap in a debug build.
fn psk_only() -> CommonConfig {
    let suites = ["TLS_PSK_WITH_AES_128_CCM_8", "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256"]
        .iter()
        .map(|n| *suites::by_name(n).unwrap())
        .collect();
    CommonConfig { suites, ..CommonConfig::default() }
}

pub fn server_config() -> ServerConfig {
    ServerConfig { common: psk_only(), psks: Some(Arc::new(StaticPsks(vec![psk()]))), ..ServerConfig::default() }
}

pub fn client_config() -> Arc<ClientConfig> {
    Arc::new(ClientConfig { common: psk_only(), psk: Some(psk()), ..ClientConfig::default() })
}

/// Whether `payload` is an epoch-0 ClientHello (what the cookie layer gates).
pub fn is_client_hello(payload: &[u8]) -> bool {
    payload.len() > 13 && payload[0] == 22 && payload[3..5] == [0, 0] && payload[13] == 1
}

// ---------------------------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------------------------

/// What reached the service behind the cookie layer.
#[derive(Debug, Default)]
pub struct ProbeCounts {
    pub calls: AtomicUsize,
    pub client_hellos_marked: AtomicUsize,
    pub client_hellos_unmarked: AtomicUsize,
}

/// A datagram-level wrapper that counts what it forwards.
#[derive(Clone)]
pub struct Probe<S> {
    inner: S,
    counts: Arc<ProbeCounts>,
}

impl<S: Service<Datagram>> Service<Datagram> for Probe<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }
    fn call(&mut self, d: Datagram) -> S::Future {
        self.counts.calls.fetch_add(1, Ordering::SeqCst);
        if is_client_hello(&d.payload) {
            let c = if d.cookie.is_some() {
                &self.counts.client_hellos_marked
            } else {
                &self.counts.client_hellos_unmarked
            };
            c.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.call(d)
    }
}

/// The application: answers `echo:` + what it got, and counts its calls. A payload starting
/// with `slow` is answered after [`SLOW`].
#[derive(Clone, Default)]
pub struct Echo {
    pub calls: Arc<AtomicUsize>,
}

impl Service<Secured> for Echo {
    type Response = Option<Vec<u8>>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Option<Vec<u8>>, BoxError>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, s: Secured) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if s.payload.starts_with(b"slow") {
                tokio::time::sleep(SLOW).await;
            }
            Ok(Some([b"echo:".as_slice(), &s.payload].concat()))
        })
    }
}

/// How long the echo service takes for a `slow...` payload.
pub const SLOW: Duration = Duration::from_millis(1500);

/// The datagram service under test.
pub type Stack = Cookie<Probe<Handshake<Echo>>>;

/// Options of [`TestServer::start`].
#[derive(Debug, Clone)]
pub struct Opts {
    pub idle_timeout: Duration,
    pub max_in_flight: usize,
    /// Half-open handshakes allowed per source address and per prefix. Tests whose clients
    /// stand for many hosts but share 127.0.0.1 raise it (the default quota would make them
    /// wait for retransmissions, and the test would measure the quota, not the stack).
    pub max_half_open_per_host: usize,
}

impl Default for Opts {
    fn default() -> Self {
        let quotas = coaps_dtls::QuotaConfig::default();
        Self {
            idle_timeout: Duration::from_secs(300),
            max_in_flight: 256,
            max_half_open_per_host: quotas.max_half_open_per_address,
        }
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub cookies: CookieLayer,
    pub handshake: HandshakeLayer,
    pub associations: Associations,
    pub probe: Arc<ProbeCounts>,
    pub echo: Echo,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), BoxError>>>,
}

impl TestServer {
    /// Serves `outer` around the stack on 127.0.0.1:0 (use `tower::layer::util::Identity`
    /// for nothing).
    pub async fn start<L>(opts: Opts, outer: L) -> Self
    where
        L: Layer<Stack>,
        L::Service: Service<Datagram, Response = Transmits> + Send + 'static,
        <L::Service as Service<Datagram>>::Error: Into<BoxError>,
        <L::Service as Service<Datagram>>::Future: Send + 'static,
    {
        Self::start_with(Arc::new(server_config()), opts, outer).await
    }

    /// [`TestServer::start`] with a chosen server configuration. The cookie layer is the
    /// version-aware one of the configuration, sharing its DTLS 1.3 secrets with the handshake
    /// layer.
    pub async fn start_with<L>(config: Arc<ServerConfig>, opts: Opts, outer: L) -> Self
    where
        L: Layer<Stack>,
        L::Service: Service<Datagram, Response = Transmits> + Send + 'static,
        <L::Service as Service<Datagram>>::Error: Into<BoxError>,
        <L::Service as Service<Datagram>>::Future: Send + 'static,
    {
        let cookies = CookieLayer::for_server(&config);
        let quotas = coaps_dtls::QuotaConfig::default();
        let handshake = HandshakeLayer::builder(config)
            .behind(&cookies)
            .idle_timeout(opts.idle_timeout)
            .max_half_open_per_address(opts.max_half_open_per_host)
            .max_half_open_per_prefix(opts.max_half_open_per_host.max(quotas.max_half_open_per_prefix))
            .build();
        let associations = handshake.associations();
        let probe = Arc::new(ProbeCounts::default());
        let echo = Echo::default();
        let mut server = Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            cookies,
            handshake,
            associations,
            probe,
            echo,
            stop: None,
            task: None,
        };
        let service = outer.layer(server.stack());
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        server.addr = socket.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let transport = Server::new(socket).max_in_flight(opts.max_in_flight).out_of_band(server.associations.clone());
        server.task = Some(tokio::spawn(transport.serve(service, async move {
            let _ = stopped.await;
        })));
        server.stop = Some(stop);
        server
    }

    /// Another instance of the same stack (same cookie secret, same association table).
    pub fn stack(&self) -> Stack {
        let probe = self.probe.clone();
        self.cookies.layer(Probe { inner: self.handshake.layer(self.echo.clone()), counts: probe })
    }

    pub fn app_calls(&self) -> usize {
        self.echo.calls.load(Ordering::SeqCst)
    }

    /// Graceful shutdown; returns what `serve` returned.
    pub async fn shutdown(&mut self) -> Result<(), BoxError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.task.take() {
            Some(t) => tokio::time::timeout(Duration::from_secs(10), t).await.expect("serve did not return").unwrap(),
            None => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------------

/// A DTLS client: the engine's endpoint over its own tokio socket.
pub struct Client {
    pub socket: UdpSocket,
    pub endpoint: Endpoint,
    pub server: SocketAddr,
    pub connected: bool,
    pub closed: Option<CloseReason>,
    pub inbox: VecDeque<Vec<u8>>,
}

enum Wake {
    Datagram(usize, SocketAddr),
    Timer,
    Error,
}

impl Client {
    /// Connects and completes the handshake within `timeout`.
    pub async fn connect(server: SocketAddr, seed: u64, timeout: Duration) -> Result<Self, String> {
        Self::connect_with(server, seed, client_config(), timeout).await
    }

    /// [`Client::connect`] with a chosen configuration (e.g. DTLS 1.3).
    pub async fn connect_with(
        server: SocketAddr,
        seed: u64,
        config: Arc<ClientConfig>,
        timeout: Duration,
    ) -> Result<Self, String> {
        Self::connect_from("127.0.0.1:0".parse().unwrap(), server, seed, config, timeout).await
    }

    /// [`Client::connect_with`] from a socket bound to `bind` (e.g. `127.0.0.2:0`: Linux
    /// routes all of 127/8 to loopback, so tests can have clients on several source addresses).
    pub async fn connect_from(
        bind: SocketAddr,
        server: SocketAddr,
        seed: u64,
        config: Arc<ClientConfig>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let socket = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
        let mut endpoint = Endpoint::client(SeededRng::from_seed_u64(seed));
        endpoint.connect(Instant::now(), server, config, "localhost", None).map_err(|e| e.to_string())?;
        let mut c = Self { socket, endpoint, server, connected: false, closed: None, inbox: VecDeque::new() };
        let deadline = Instant::now() + timeout;
        while !c.connected {
            if let Some(r) = &c.closed {
                return Err(format!("closed during handshake: {r:?}"));
            }
            if !c.step(deadline).await {
                return Err("handshake timed out".into());
            }
        }
        Ok(c)
    }

    /// Sends `msg` and waits for `echo:msg`, resending (application-level retransmission)
    /// every `per_try`, at most `tries` times.
    pub async fn request(&mut self, msg: &[u8], tries: usize, per_try: Duration) -> Result<Duration, String> {
        let want = [b"echo:".as_slice(), msg].concat();
        let start = Instant::now();
        for _ in 0..tries {
            self.endpoint.send(self.server, msg).map_err(|e| e.to_string())?;
            let deadline = Instant::now() + per_try;
            loop {
                while let Some(got) = self.inbox.pop_front() {
                    if got == want {
                        return Ok(start.elapsed());
                    }
                }
                if let Some(r) = &self.closed {
                    return Err(format!("closed: {r:?}"));
                }
                if !self.step(deadline).await {
                    break;
                }
            }
        }
        Err(format!("no echo of {:?} after {tries} tries", String::from_utf8_lossy(msg)))
    }

    /// Runs until the association closes or `timeout` passes.
    pub async fn wait_closed(&mut self, timeout: Duration) -> Option<CloseReason> {
        let deadline = Instant::now() + timeout;
        while self.closed.is_none() && self.step(deadline).await {}
        self.closed.clone()
    }

    /// One wake-up: a datagram or a timer. False once `deadline` has passed.
    async fn step(&mut self, deadline: Instant) -> bool {
        self.flush().await;
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let wake_at = self.endpoint.poll_timeout().map_or(deadline, |t| t.min(deadline));
        let mut buf = [0u8; 2048];
        let wake = tokio::select! {
            r = self.socket.recv_from(&mut buf) => match r {
                Ok((n, from)) => Wake::Datagram(n, from),
                Err(_) => Wake::Error,
            },
            _ = tokio::time::sleep_until(wake_at.into()) => Wake::Timer,
        };
        match wake {
            Wake::Datagram(n, from) => self.endpoint.handle_datagram(Instant::now(), from, &buf[..n]),
            Wake::Timer => self.endpoint.handle_timeout(Instant::now()),
            Wake::Error => {}
        }
        self.flush().await;
        true
    }

    async fn flush(&mut self) {
        while let Some(t) = self.endpoint.poll_transmit() {
            let _ = self.socket.send_to(&t.payload, t.destination).await;
        }
        while let Some((_, ev)) = self.endpoint.poll_event() {
            match ev {
                Event::Connected { .. } => self.connected = true,
                Event::ApplicationData(d) => self.inbox.push_back(d),
                Event::Closed(r) => self.closed = Some(r),
                _ => {}
            }
        }
    }
}

/// Bounds a test in time.
pub async fn bounded<F: Future>(secs: u64, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not finish within {secs} s"),
    }
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A boxed future, for helpers that spawn.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
