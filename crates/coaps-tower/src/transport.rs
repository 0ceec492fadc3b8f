//! The tokio transport: a UDP socket driving a datagram-level service.
//!
//! [`serve`] (or [`Server`] for options) loops: receive a datagram → [`Datagram`] →
//! `service.ready().await` → `service.call(datagram)` → send the returned [`Transmits`].
//! Each call's future runs in its own task, at most [`Server::max_in_flight`] at once, so one
//! slow application request never blocks the socket loop; when the limit is reached the loop
//! stops reading and the kernel's socket buffer absorbs (or drops) the excess, as UDP does.
//! The service's own readiness is awaited before every call, so tower middleware such as
//! `RateLimit` or `ConcurrencyLimit` around the datagram service acts on the socket loop.
//!
//! Datagrams that answer nothing received — handshake retransmissions, alerts, records the
//! application sends on its own initiative — come from an [`OutOfBand`] source, usually the
//! [`Associations`] handle of the handshake layer: a task
//! drains it to the socket.
//!
//! When the `shutdown` future completes, the server stops reading, waits (at most
//! [`Server::drain_timeout`]) for the calls in flight, then sends what
//! [`OutOfBand::shutdown`] returns — close_notify to every peer (RFC 5246 §7.2.1) — and
//! returns.
//!
//! # Example
//!
//! ```
//! use coaps_dtls::{Psk, ServerConfig, StaticPsks};
//! use coaps_tower::cookie::CookieLayer;
//! use coaps_tower::handshake::HandshakeLayer;
//! use coaps_tower::transport::Server;
//! use coaps_tower::{BoxError, Secured};
//! use std::sync::Arc;
//! use tower::{ServiceBuilder, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let psk = Psk::new("device-1", b"0123456789abcdef".to_vec())?;
//! let config = Arc::new(ServerConfig { psks: Some(Arc::new(StaticPsks(vec![psk]))), ..ServerConfig::default() });
//! let cookies = CookieLayer::for_server(&config); // DTLS 1.2 and 1.3
//! let handshake = HandshakeLayer::builder(config).behind(&cookies).build();
//! let associations = handshake.associations();
//! let service = ServiceBuilder::new()
//!     .layer(cookies)
//!     .layer(handshake)
//!     .service(service_fn(|s: Secured| async move { Ok::<_, BoxError>(Some(s.payload)) }));
//!
//! let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(
//!     Server::new(socket).out_of_band(associations.clone()).serve(service, async move {
//!         let _ = stopped.await;
//!     }),
//! );
//! // ... clients talk to the socket here ...
//! stop.send(()).ok();
//! server.await??;
//! assert_eq!(associations.count(), 0);
//! # Ok(())
//! # }
//! ```

use crate::handshake::Associations;
use crate::types::{BoxError, Datagram, Transmit, Transmits};
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower_service::Service;

/// Default [`Server::max_in_flight`].
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// Default [`Server::drain_timeout`].
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest UDP payload (IPv4: 65535 - 8 - 20).
const MAX_DATAGRAM: usize = 65_507;

/// A source of datagrams that are not answers to a received datagram.
pub trait OutOfBand: Send + Sync + 'static {
    /// Waits for the next datagram to send.
    fn next_transmit(&self) -> Pin<Box<dyn Future<Output = Transmit> + Send + '_>>;

    /// Graceful shutdown: the last datagrams to send (e.g. close_notify to every peer, and
    /// whatever was still queued).
    fn shutdown(&self) -> Transmits;
}

impl OutOfBand for Associations {
    fn next_transmit(&self) -> Pin<Box<dyn Future<Output = Transmit> + Send + '_>> {
        Box::pin(Associations::next_transmit(self))
    }

    fn shutdown(&self) -> Transmits {
        self.close_all()
    }
}

/// A UDP server with options; see the [module docs](self).
pub struct Server {
    socket: UdpSocket,
    max_in_flight: usize,
    drain_timeout: Duration,
    out_of_band: Option<Arc<dyn OutOfBand>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("socket", &self.socket)
            .field("max_in_flight", &self.max_in_flight)
            .field("drain_timeout", &self.drain_timeout)
            .field("out_of_band", &self.out_of_band.is_some())
            .finish()
    }
}

impl Server {
    /// A server on a bound socket.
    pub fn new(socket: UdpSocket) -> Self {
        Self { socket, max_in_flight: DEFAULT_MAX_IN_FLIGHT, drain_timeout: DEFAULT_DRAIN_TIMEOUT, out_of_band: None }
    }

    /// Most service calls in progress at once (at least 1). Default [`DEFAULT_MAX_IN_FLIGHT`].
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// How long shutdown waits for calls in flight before closing. Default
    /// [`DEFAULT_DRAIN_TIMEOUT`].
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Where out-of-band datagrams come from: pass the handshake layer's
    /// [`Associations`], or retransmissions and close_notify
    /// never reach the network.
    pub fn out_of_band(mut self, source: impl OutOfBand) -> Self {
        self.out_of_band = Some(Arc::new(source));
        self
    }

    /// The local address of the socket.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.socket.local_addr()
    }

    /// Serves until `shutdown` completes, then shuts down gracefully (see the
    /// [module docs](self)). Errors only when the service fails in `poll_ready` (tower's
    /// contract: it is then unusable); call errors are logged and the datagram forgotten.
    pub async fn serve<S, F>(self, service: S, shutdown: F) -> Result<(), BoxError>
    where
        S: Service<Datagram, Response = Transmits>,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        F: Future,
    {
        self.serve_from(None, service, shutdown).await
    }

    /// [`Server::serve`], reading datagrams from `inbound` instead of the socket when given (a
    /// shard of [`crate::shard::ShardedServer`]); answers still go out through the socket.
    pub(crate) async fn serve_from<S, F>(
        self,
        mut inbound: Option<tokio::sync::mpsc::Receiver<Datagram>>,
        mut service: S,
        shutdown: F,
    ) -> Result<(), BoxError>
    where
        S: Service<Datagram, Response = Transmits>,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        F: Future,
    {
        let socket = Arc::new(self.socket);
        let permits = Arc::new(Semaphore::new(self.max_in_flight));
        let mut calls = JoinSet::new();
        let pump = self.out_of_band.clone().map(|source| {
            let socket = socket.clone();
            tokio::spawn(async move {
                loop {
                    let t = source.next_transmit().await;
                    send(&socket, &t).await;
                }
            })
        });
        tokio::pin!(shutdown);
        let mut buf = if inbound.is_some() { Vec::new() } else { vec![0u8; MAX_DATAGRAM] };
        let mut result = Ok(());
        loop {
            let datagram = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                d = async {
                    match inbound.as_mut() {
                        Some(rx) => rx.recv().await.ok_or(None),
                        None => match socket.recv_from(&mut buf).await {
                            Ok((n, peer)) => Ok(Datagram::new(peer, buf[..n].to_vec())),
                            Err(e) => Err(Some(e)),
                        },
                    }
                } => match d {
                    Ok(d) => d,
                    // The router of a sharded server has stopped.
                    Err(None) => break,
                    Err(Some(e)) => {
                        // UDP errors (e.g. an ICMP error reported on the socket) concern one
                        // datagram, never the server.
                        tracing::debug!(error = %e, "recv_from failed");
                        continue;
                    }
                },
            };
            let peer = datagram.peer;
            while calls.try_join_next().is_some() {}
            let permit = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break, // never closed
                },
            };
            let ready: Result<(), BoxError> = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                r = poll_fn(|cx| service.poll_ready(cx)) => r.map_err(Into::into),
            };
            if let Err(e) = ready {
                result = Err(e);
                break;
            }
            // Most datagrams (cookie challenges, handshake flights, records the application
            // answers at once) complete on the first poll: answer them inline, and spawn a task
            // only for calls that really wait, so a slow one never blocks the loop.
            let mut future = Box::pin(service.call(datagram));
            let polled: Poll<Result<Transmits, BoxError>> =
                poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await.map(|r| r.map_err(Into::into));
            match polled {
                Poll::Ready(result) => {
                    drop(permit);
                    send_all(&socket, peer, result).await;
                }
                Poll::Pending => {
                    let socket = socket.clone();
                    calls.spawn(async move {
                        let _permit = permit;
                        let result: Result<Transmits, BoxError> = future.await.map_err(Into::into);
                        send_all(&socket, peer, result).await;
                    });
                }
            }
        }
        // Graceful shutdown: answers in flight first, then goodbyes.
        let drained = tokio::time::timeout(self.drain_timeout, async { while calls.join_next().await.is_some() {} });
        if drained.await.is_err() {
            tracing::debug!(remaining = calls.len(), "calls still in flight at shutdown abandoned");
            calls.abort_all();
        }
        if let Some(p) = pump {
            p.abort();
        }
        if let Some(source) = &self.out_of_band {
            for t in source.shutdown() {
                send(&socket, &t).await;
            }
        }
        result
    }
}

async fn send_all(socket: &UdpSocket, peer: std::net::SocketAddr, result: Result<Transmits, BoxError>) {
    match result {
        Ok(transmits) => {
            for t in &transmits {
                send(socket, t).await;
            }
        }
        Err(e) => tracing::debug!(%peer, error = %e, "datagram service failed"),
    }
}

async fn send(socket: &UdpSocket, t: &Transmit) {
    if let Err(e) = socket.send_to(&t.payload, t.destination).await {
        tracing::debug!(destination = %t.destination, error = %e, "send_to failed");
    }
}

/// Serves `service` on `socket` until `shutdown` completes, with default options and no
/// out-of-band source (see [`Server`] to add one: a handshake layer needs it).
pub async fn serve<S, F>(socket: UdpSocket, service: S, shutdown: F) -> Result<(), BoxError>
where
    S: Service<Datagram, Response = Transmits>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    F: Future,
{
    Server::new(socket).serve(service, shutdown).await
}
