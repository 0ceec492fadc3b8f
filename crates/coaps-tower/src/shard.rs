//! Serving on several cores: one UDP socket, N shards.
//!
//! [`ShardedServer`] reads the socket in one loop and hands every datagram to one of N shards,
//! chosen by a [`ShardKey`]. Each shard is an OS thread with its own current-thread tokio
//! runtime and its own stack, built by the caller for that shard: its own association table
//! and timers (the handshake layer's), its own cookie layer, and so on. Nothing of an
//! association is shared between shards, so two cores never contend on one lock for the same
//! peer; what the caller chooses to share (a session store, ticket keys) is shared by design.
//! Each shard answers through the same socket (a duplicate of its descriptor registered with
//! the shard's runtime), and drains its own out-of-band source (retransmissions,
//! close_notify).
//!
//! The key must send every datagram of one association to the same shard. [`ByPeerAddress`]
//! (the default) hashes the peer's address and port, which is what identifies an association
//! without Connection IDs. With Connection IDs (RFC 9146 / RFC 9147 §9) a peer may change
//! address: a key that reads the CID from the record header and routes on it (the address for
//! a ClientHello) is a [`ShardKey`] implementation, or a closure.
//!
//! [`ShardedServer::totals`] sums the counters of every shard's layers that the shard
//! [reports](Shard::report) ([`ShardTotals`]), for metrics and a shutdown summary.
//!
//! A shard whose queue is full drops the datagram (counted in [`RouterStats::dropped`]), as a
//! full socket buffer would: one busy shard never stalls the others.
//!
//! # Example
//!
//! ```
//! use coaps_dtls::{Psk, ServerConfig, StaticPsks};
//! use coaps_tower::shard::{Shard, ShardedServer};
//! use coaps_tower::{BoxError, CookieLayer, HandshakeLayer, Secured};
//! use std::sync::Arc;
//! use tower::{ServiceBuilder, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let psk = Psk::new("device-1", b"0123456789abcdef".to_vec())?;
//! let config = Arc::new(ServerConfig { psks: Some(Arc::new(StaticPsks(vec![psk]))), ..ServerConfig::default() });
//! let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let sharded = ShardedServer::new(socket, 2);
//! let totals = sharded.totals();
//! let server = tokio::spawn(sharded.serve(
//!     move |_shard| {
//!         // Runs on the shard's thread, inside its runtime: one stack per shard.
//!         let cookies = CookieLayer::for_server(&config);
//!         let handshake = HandshakeLayer::builder(config.clone()).behind(&cookies).build();
//!         let associations = handshake.associations();
//!         let service = ServiceBuilder::new()
//!             .layer(cookies)
//!             .layer(handshake)
//!             .service(service_fn(|s: Secured| async move { Ok::<_, BoxError>(Some(s.payload)) }));
//!         Shard::new(service).out_of_band(associations.clone()).report(associations)
//!     },
//!     async move {
//!         let _ = stopped.await;
//!     },
//! ));
//! // ... clients talk to the socket here ...
//! stop.send(()).ok();
//! let stats = server.await??;
//! assert_eq!(stats.dropped, 0);
//! // Every shard's counters, summed.
//! assert_eq!(totals.handshake().endpoint.connections_created, 0);
//! # Ok(())
//! # }
//! ```

use crate::handshake::{Associations, HandshakeStats};
use crate::resumption::{ResumptionLayer, ResumptionStats};
use crate::transport::{OutOfBand, Server};
use crate::types::{BoxError, Datagram, Transmits};
use crate::{CookieLayer, CookieStats};
use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};
use tower_service::Service;

/// Default [`ShardedServer::queue_depth`]: datagrams waiting for one shard.
pub const DEFAULT_QUEUE_DEPTH: usize = 1024;

/// Largest UDP payload (IPv4: 65535 - 8 - 20).
const MAX_DATAGRAM: usize = 65_507;

/// Chooses the shard of a datagram. Every datagram of one association must get the same
/// shard, or the association would be split (and fail) across shards.
pub trait ShardKey: Send + Sync + 'static {
    /// A shard index below `shards` (at least 1) for a datagram from `peer`.
    fn shard(&self, peer: SocketAddr, payload: &[u8], shards: usize) -> usize;
}

impl<F> ShardKey for F
where
    F: Fn(SocketAddr, &[u8], usize) -> usize + Send + Sync + 'static,
{
    fn shard(&self, peer: SocketAddr, payload: &[u8], shards: usize) -> usize {
        self(peer, payload, shards)
    }
}

/// Routes by the peer's address and port, with a hash keyed at random per server, so that a
/// sender cannot pick source ports that all land on one shard.
#[derive(Clone, Default)]
pub struct ByPeerAddress {
    state: RandomState,
}

impl fmt::Debug for ByPeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByPeerAddress").finish_non_exhaustive()
    }
}

impl ByPeerAddress {
    /// A key with a fresh random hash key.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ShardKey for ByPeerAddress {
    fn shard(&self, peer: SocketAddr, _payload: &[u8], shards: usize) -> usize {
        (self.state.hash_one(peer) % shards.max(1) as u64) as usize
    }
}

/// What one shard serves: its datagram service and, usually, the out-of-band source of its
/// handshake layer ([`crate::Associations`]).
pub struct Shard<S> {
    service: S,
    out_of_band: Option<Box<dyn FnOnce(Server) -> Server + Send>>,
    counters: Counters,
}

/// The layers of one shard whose counters [`ShardTotals`] sums.
#[derive(Clone, Default)]
struct Counters {
    associations: Option<Associations>,
    cookies: Option<CookieLayer>,
    resumption: Option<ResumptionLayer>,
}

/// The counters of every shard's stack, summed (see [`ShardedServer::totals`]). Each read
/// takes every shard's counters at that moment; a shard counts once its stack is built.
#[derive(Clone, Default)]
pub struct ShardTotals {
    shards: Arc<Mutex<Vec<Counters>>>,
}

impl fmt::Debug for ShardTotals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardTotals").field("shards", &self.lock().len()).finish_non_exhaustive()
    }
}

impl ShardTotals {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Counters>> {
        self.shards.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The handshake layers' counters ([`Shard::report`]), summed.
    pub fn handshake(&self) -> HandshakeStats {
        self.lock().iter().filter_map(|c| c.associations.as_ref()).map(Associations::stats).sum()
    }

    /// The cookie layers' counters ([`Shard::report_cookies`]), summed; a shard without one
    /// counts its handshake layer's own gate.
    pub fn cookies(&self) -> CookieStats {
        self.lock()
            .iter()
            .filter_map(|c| match (&c.cookies, &c.associations) {
                (Some(l), _) => Some(l.stats()),
                (None, Some(a)) => a.stats().cookie,
                (None, None) => None,
            })
            .sum()
    }

    /// The resumption layers' counters ([`Shard::report_resumption`]), summed.
    pub fn resumption(&self) -> ResumptionStats {
        self.lock().iter().filter_map(|c| c.resumption.as_ref()).map(ResumptionLayer::stats).sum()
    }

    /// Associations of every shard, established or handshaking.
    pub fn associations(&self) -> usize {
        self.lock().iter().filter_map(|c| c.associations.as_ref()).map(Associations::count).sum()
    }

    /// Half-open handshakes of every shard.
    pub fn half_open(&self) -> usize {
        self.lock().iter().filter_map(|c| c.associations.as_ref()).map(Associations::half_open_count).sum()
    }
}

impl<S: fmt::Debug> fmt::Debug for Shard<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shard")
            .field("service", &self.service)
            .field("out_of_band", &self.out_of_band.is_some())
            .finish()
    }
}

impl<S> Shard<S> {
    /// A shard serving `service`.
    pub fn new(service: S) -> Self {
        Self { service, out_of_band: None, counters: Counters::default() }
    }

    /// Counts this shard's handshake layer in [`ShardedServer::totals`].
    pub fn report(mut self, associations: Associations) -> Self {
        self.counters.associations = Some(associations);
        self
    }

    /// Counts this shard's cookie layer in [`ShardedServer::totals`].
    pub fn report_cookies(mut self, cookies: CookieLayer) -> Self {
        self.counters.cookies = Some(cookies);
        self
    }

    /// Counts this shard's resumption layer in [`ShardedServer::totals`].
    pub fn report_resumption(mut self, resumption: ResumptionLayer) -> Self {
        self.counters.resumption = Some(resumption);
        self
    }

    /// The shard's out-of-band source (see [`Server::out_of_band`]).
    pub fn out_of_band(mut self, source: impl OutOfBand) -> Self {
        self.out_of_band = Some(Box::new(move |server: Server| server.out_of_band(source)));
        self
    }
}

/// What the socket loop did, returned when the server stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Datagrams handed to each shard, by shard index.
    pub routed: Vec<u64>,
    /// Datagrams dropped because their shard's queue was full.
    pub dropped: u64,
}

/// A UDP server on several threads; see the [module docs](self).
pub struct ShardedServer {
    socket: std::net::UdpSocket,
    shards: usize,
    key: Arc<dyn ShardKey>,
    queue_depth: usize,
    max_in_flight: usize,
    drain_timeout: std::time::Duration,
    totals: ShardTotals,
}

impl fmt::Debug for ShardedServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedServer")
            .field("socket", &self.socket)
            .field("shards", &self.shards)
            .field("queue_depth", &self.queue_depth)
            .finish_non_exhaustive()
    }
}

impl ShardedServer {
    /// `shards` shards (at least 1) on a bound socket, routed [`ByPeerAddress`].
    pub fn new(socket: std::net::UdpSocket, shards: usize) -> Self {
        Self {
            socket,
            shards: shards.max(1),
            key: Arc::new(ByPeerAddress::new()),
            queue_depth: DEFAULT_QUEUE_DEPTH,
            max_in_flight: crate::transport::DEFAULT_MAX_IN_FLIGHT,
            drain_timeout: crate::transport::DEFAULT_DRAIN_TIMEOUT,
            totals: ShardTotals::default(),
        }
    }

    /// The counters of every shard's reported layers, summed; valid while and after it serves.
    pub fn totals(&self) -> ShardTotals {
        self.totals.clone()
    }

    /// How datagrams are routed to shards. Default [`ByPeerAddress`].
    pub fn shard_key(mut self, key: impl ShardKey) -> Self {
        self.key = Arc::new(key);
        self
    }

    /// Datagrams that may wait for one shard (at least 1). Default [`DEFAULT_QUEUE_DEPTH`].
    pub fn queue_depth(mut self, n: usize) -> Self {
        self.queue_depth = n.max(1);
        self
    }

    /// Each shard's [`Server::max_in_flight`].
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Each shard's [`Server::drain_timeout`].
    pub fn drain_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Serves until `shutdown` completes: starts the shards, each built by `make(index)` on its
    /// own thread inside its runtime, routes datagrams to them, then stops them (each shuts
    /// down gracefully as [`Server::serve`] does) and returns the routing counts. Errors if a
    /// shard cannot start or fails.
    pub async fn serve<M, S, F>(self, make: M, shutdown: F) -> Result<RouterStats, BoxError>
    where
        M: Fn(usize) -> Shard<S> + Send + Sync + 'static,
        S: Service<Datagram, Response = Transmits> + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        F: Future,
    {
        self.socket.set_nonblocking(true)?;
        let make = Arc::new(make);
        let mut senders = Vec::with_capacity(self.shards);
        let mut stops = Vec::with_capacity(self.shards);
        // Each shard reports here when it ends, with its result.
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<(), BoxError>>();
        let mut threads = Vec::with_capacity(self.shards);
        for index in 0..self.shards {
            let (tx, rx) = mpsc::channel::<Datagram>(self.queue_depth);
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let done_tx = done_tx.clone();
            let socket = self.socket.try_clone()?;
            let make = make.clone();
            let (max_in_flight, drain_timeout) = (self.max_in_flight, self.drain_timeout);
            let totals = self.totals.clone();
            let thread = std::thread::Builder::new().name(format!("coaps-shard-{index}")).spawn(move || {
                // A panic in the shard is reported like an error, so the router notices it.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<(), BoxError> {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                    rt.block_on(async move {
                        let socket = tokio::net::UdpSocket::from_std(socket)?;
                        let Shard { service, out_of_band, counters } = make(index);
                        totals.lock().push(counters);
                        let mut server = Server::new(socket).max_in_flight(max_in_flight).drain_timeout(drain_timeout);
                        if let Some(add) = out_of_band {
                            server = add(server);
                        }
                        server
                            .serve_from(Some(rx), service, async move {
                                let _ = stop_rx.await;
                            })
                            .await
                    })
                }))
                .unwrap_or_else(|_| Err("a shard thread panicked".into()));
                let _ = done_tx.send(result);
            })?;
            senders.push(tx);
            stops.push(stop_tx);
            threads.push(thread);
        }
        drop(done_tx);

        let socket = tokio::net::UdpSocket::from_std(self.socket)?;
        let mut stats = RouterStats { routed: vec![0; self.shards], dropped: 0 };
        let mut buf = vec![0u8; MAX_DATAGRAM];
        tokio::pin!(shutdown);
        let mut result = Ok(());
        let mut ended = 0;
        loop {
            let (n, peer) = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                // A shard that ends on its own has failed: the server ends too.
                r = done_rx.recv() => {
                    ended += 1;
                    result = r.unwrap_or_else(|| Err("a shard thread panicked".into()));
                    if result.is_ok() {
                        result = Err("a shard stopped".into());
                    }
                    break;
                }
                r = socket.recv_from(&mut buf) => match r {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(error = %e, "recv_from failed");
                        continue;
                    }
                },
            };
            let index = self.key.shard(peer, &buf[..n], self.shards).min(self.shards - 1);
            match senders[index].try_send(Datagram::new(peer, buf[..n].to_vec())) {
                Ok(()) => stats.routed[index] += 1,
                Err(_) => stats.dropped += 1,
            }
        }
        drop(senders);
        for stop in stops {
            let _ = stop.send(());
        }
        while ended < self.shards {
            match done_rx.recv().await {
                Some(Ok(())) => {}
                Some(Err(e)) => result = Err(e),
                // Every sender gone without a report: a shard thread panicked.
                None => {
                    result = Err("a shard thread panicked".into());
                    break;
                }
            }
            ended += 1;
        }
        for t in threads {
            let _ = t.join();
        }
        result.map(|()| stats)
    }
}
