//! A CoAPS client: a [`tower::Service<coap_lite::Packet>`](Service) sending CoAP requests over
//! one DTLS association.
//!
//! [`Client::connect`] binds a UDP socket, completes the DTLS handshake (or returns why it
//! failed), and hands the association to a background task that owns the socket and the
//! [`coaps_dtls::Endpoint`]. [`Client`] is a cheap, cloneable handle to that task.
//!
//! # What the caller gives and gets
//!
//! The request is a `coap_lite::Packet` with a request code (0.01–0.07), options and payload,
//! of type Confirmable (the default of `Packet::new()`) or Non-confirmable. The client
//! overwrites the Message ID (RFC 7252 §4.4: sequential from a random start) and assigns a
//! token unless the packet already has one (a caller-chosen token must be unique among the
//! requests in flight). The response future resolves to the response packet, or to an
//! [`Error`]: [`Error::Timeout`] after MAX_RETRANSMIT retransmissions without an
//! acknowledgement, or when no response came within [`TransmissionParams::response_timeout`];
//! [`Error::Reset`] when the server rejected the message; [`Error::Closed`] with the reason
//! when the association ended.
//!
//! # Message layer (RFC 7252 §4)
//!
//! * Confirmable requests are retransmitted with exponential back-off: first timeout random in
//!   [ACK_TIMEOUT, ACK_TIMEOUT × ACK_RANDOM_FACTOR], doubled each time, at most
//!   MAX_RETRANSMIT retransmissions (§4.2; defaults 2 s, 1.5, 4 from §4.8, all in
//!   [`TransmissionParams`]). Each retransmission is a new DTLS record of the same epoch
//!   (§9.1.1). With [`ClientOptions::link`], ACK_TIMEOUT follows the link profile and the
//!   server's RTT estimate, the same that sizes the DTLS retransmission timers
//!   ([`LinkPolicyFactory::ack_timeout`]); [`Client::stats`] reports both kinds of
//!   retransmission and the estimate.
//! * A piggybacked response (ACK with the request's Message ID and token) completes the
//!   request. An Empty ACK stops retransmission; the separate response (§5.2.2) arrives later
//!   as a CON, which the client acknowledges (and acknowledges again if the server
//!   retransmits it), or as a NON. A Reset fails the request.
//! * At most [`TransmissionParams::nstart`] interactions are outstanding at once (NSTART, §4.7,
//!   default 1); further requests queue in the task, up to [`ClientOptions::max_queued`].
//!   For backpressure instead of a queue, wrap the client in `tower::limit::ConcurrencyLimit`.
//! * Anything the server sends that matches nothing: a CON gets a Reset, the rest is ignored.
//!
//! A DTLS 1.3 client resuming a ticket can send its first request as 0-RTT early data with
//! the ClientHello ([`Client::connect_early`]; only requests safe to replay, RFC 8446 §8).
//!
//! Dropping a response future cancels its request: retransmission stops at the next timer.
//! The task ends, closing the association with close_notify, when every `Client` handle is
//! gone and no request is in flight, or at once on [`Client::close`].
//!
//! # Example
//!
//! A complete round trip against an in-process DTLS server (the raw `coaps-dtls` engine
//! answering with a fixed piggybacked response), through a `ServiceBuilder` stack:
//!
//! ```
//! use coap_lite::{MessageClass, MessageType, Packet, RequestType, ResponseType};
//! use coaps_dtls::crypto::SeededRng;
//! use coaps_dtls::{ClientConfig, Endpoint, Event, Psk, ServerConfig, StaticPsks};
//! use coaps_tower::{BoxError, Client};
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let psk = Psk::new(b"doc-client".to_vec(), b"doc-key-0123456789".to_vec())?;
//! # // A tiny server: the sans-IO engine on a tokio socket, answering every GET with 2.05 "hi".
//! # let server_cfg = Arc::new(ServerConfig { psks: Some(Arc::new(StaticPsks(vec![psk.clone()]))), ..Default::default() });
//! # let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
//! # let addr = sock.local_addr()?;
//! # tokio::spawn(async move {
//! #     let mut ep = Endpoint::server(server_cfg, SeededRng::from_os(), Instant::now());
//! #     let mut buf = vec![0u8; 2048];
//! #     loop {
//! #         let wait = ep.poll_timeout().map_or(Duration::from_secs(1), |t| t.saturating_duration_since(Instant::now()));
//! #         if let Ok(Ok((n, from))) = tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
//! #             ep.handle_datagram(Instant::now(), from, &buf[..n]);
//! #         }
//! #         ep.handle_timeout(Instant::now());
//! #         while let Some((peer, ev)) = ep.poll_event() {
//! #             if let Event::ApplicationData(d) = ev {
//! #                 let req = Packet::from_bytes(&d).unwrap();
//! #                 let mut resp = coap_lite::CoapResponse::new(&req).unwrap().message;
//! #                 resp.payload = b"hi".to_vec();
//! #                 ep.send(peer, &resp.to_bytes().unwrap()).unwrap();
//! #             }
//! #         }
//! #         while let Some(t) = ep.poll_transmit() { let _ = sock.send_to(&t.payload, t.destination).await; }
//! #     }
//! # });
//! let config = Arc::new(ClientConfig { psk: Some(psk), ..Default::default() });
//! let client = Client::connect(addr, config, "localhost").await?;
//!
//! let mut svc = ServiceBuilder::new().timeout(Duration::from_secs(10)).service(client.clone());
//!
//! let mut get = Packet::new(); // Confirmable by default
//! get.header.code = MessageClass::Request(RequestType::Get);
//! get.add_option(coap_lite::CoapOption::UriPath, b"hello".to_vec());
//! let resp = svc.ready().await?.call(get).await?;
//! assert_eq!(resp.header.code, MessageClass::Response(ResponseType::Content));
//! assert_eq!(resp.header.get_type(), MessageType::Acknowledgement); // piggybacked
//! assert_eq!(resp.payload, b"hi");
//!
//! client.close().await; // close_notify
//! # Ok(())
//! # }
//! ```

use crate::coap::{empty_ack, reset};
pub use crate::session_cache::{SessionCache, SessionFileError};
use coap_lite::{MessageClass, MessageType, Packet};
use coaps_dtls::CipherSuite;
use coaps_dtls::crypto::{Rng, SeededRng};
use coaps_dtls::{
    ClientConfig, CloseReason, Endpoint, Event, LinkPolicyFactory, PeerIdentity, ProtocolVersion, RttEstimator, Session,
};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tower_service::Service;

/// CoAP transmission parameters (RFC 7252 §4.8). Change them only with the care §4.8.1 asks
/// for: ACK_TIMEOUT below 1 s needs congestion control, and derived values (EXCHANGE_LIFETIME)
/// change with them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TransmissionParams {
    /// ACK_TIMEOUT, default 2 s.
    pub ack_timeout: Duration,
    /// ACK_RANDOM_FACTOR, default 1.5; values below 1.0 are treated as 1.0.
    pub ack_random_factor: f64,
    /// MAX_RETRANSMIT, default 4.
    pub max_retransmit: u32,
    /// NSTART: outstanding interactions at once (§4.7), default 1; 0 is treated as 1.
    pub nstart: usize,
    /// How long to wait for a response once a request needs no more retransmission: a
    /// Non-confirmable request from its sending, a Confirmable one from its Empty ACK (the
    /// separate response, §5.2.2). Default 93 s, MAX_TRANSMIT_WAIT (§4.8.2).
    pub response_timeout: Duration,
}

impl Default for TransmissionParams {
    fn default() -> Self {
        Self {
            ack_timeout: Duration::from_secs(2),
            ack_random_factor: 1.5,
            max_retransmit: 4,
            nstart: 1,
            response_timeout: Duration::from_secs(93),
        }
    }
}

/// Options of [`Client::connect_with`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// CoAP retransmission and timeouts.
    pub transmission: TransmissionParams,
    /// A session from an earlier connection ([`Client::session`]) to resume with an
    /// abbreviated handshake.
    pub resume: Option<Session>,
    /// Requests waiting for an NSTART slot; beyond this, requests fail with
    /// [`Error::QueueFull`]. Default 64.
    pub max_queued: usize,
    /// Seed for the DTLS randomness, Message IDs, tokens and retransmission jitter; `None`
    /// (the default) seeds from the operating system. A fixed seed is for tests only.
    pub rng_seed: Option<u64>,
    /// The link the server is reached over, with its RTT estimates: when set, it is the DTLS
    /// retransmission policy of the association (replacing the config's
    /// [`retransmit_policy`](coaps_dtls::CommonConfig::retransmit_policy)), and each
    /// confirmable request's ACK_TIMEOUT follows the same profile and estimate
    /// ([`LinkPolicyFactory::ack_timeout`]) instead of [`TransmissionParams::ack_timeout`], so
    /// that DTLS and CoAP retransmissions agree (RFC 7252 §4.8); the response timeout grows to
    /// the matching MAX_TRANSMIT_WAIT (§4.8.2) when that is longer. `None` (the default): fixed
    /// [`TransmissionParams`].
    pub link: Option<LinkPolicyFactory>,
    /// Sessions kept per server name and port ([`SessionCache`]): when set and
    /// [`ClientOptions::resume`] is `None`, the connection resumes the cache's newest session
    /// for `server_name` and the server's port, and every session or ticket it receives goes
    /// into the cache. Default `None`.
    pub sessions: Option<SessionCache>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            transmission: TransmissionParams::default(),
            resume: None,
            max_queued: 64,
            rng_seed: None,
            link: None,
            sessions: None,
        }
    }
}

/// What the handshake established.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The server's authenticated identity.
    pub identity: PeerIdentity,
    /// The negotiated cipher suite.
    pub suite: CipherSuite,
    /// Whether the handshake resumed a session.
    pub resumed: bool,
    /// The negotiated DTLS version ([`ProtocolVersion::DTLS1_2`] or
    /// [`ProtocolVersion::DTLS1_3`]).
    pub version: ProtocolVersion,
    /// Whether the server accepted the 0-RTT early data of [`Client::connect_early`].
    pub early_data_accepted: bool,
    /// The session to resume later, as the handshake left it: a DTLS 1.2 session ID. A DTLS
    /// 1.3 ticket arrives after the handshake (RFC 8446 §4.6.1): see [`Client::session`].
    pub session: Option<Session>,
}

/// Why a connection or a request failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The UDP socket could not be set up.
    Io(std::io::Error),
    /// The DTLS handshake failed: the engine's reason (alert, timeout, certificate…).
    Handshake(CloseReason),
    /// The association is closed (locally, by the peer, or by a fatal error).
    Closed(CloseReason),
    /// No acknowledgement after MAX_RETRANSMIT retransmissions (RFC 7252 §4.2), or no response
    /// within [`TransmissionParams::response_timeout`].
    Timeout,
    /// The server rejected the message with a Reset (RFC 7252 §4.2).
    Reset,
    /// The request is not a request: its code is not 0.01–0.31 or its type is ACK/RST.
    InvalidRequest(&'static str),
    /// The caller-chosen token is already used by a request in flight.
    TokenInUse,
    /// The encoded request does not fit one DTLS record at the configured MTU.
    MessageTooLarge {
        /// The limit in bytes.
        max: usize,
    },
    /// Too many requests waiting for an NSTART slot.
    QueueFull,
    /// The DTLS engine refused to send (the association is unaffected).
    Dtls(coaps_dtls::UsageError),
    /// The handshake could not start with this configuration (nothing was sent).
    Config(coaps_dtls::ConfigError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "socket error: {e}"),
            Self::Handshake(r) => write!(f, "DTLS handshake failed: {}", reason(r)),
            Self::Closed(r) => write!(f, "connection closed: {}", reason(r)),
            Self::Timeout => f.write_str("request timed out (no acknowledgement or response from the server)"),
            Self::Reset => f.write_str("the server rejected the message (CoAP Reset)"),
            Self::InvalidRequest(w) => write!(f, "invalid request: {w}"),
            Self::TokenInUse => f.write_str("the token is already used by a request in flight"),
            Self::MessageTooLarge { max } => write!(f, "request larger than the {max}-byte record limit"),
            Self::QueueFull => f.write_str("too many requests queued"),
            Self::Dtls(e) => write!(f, "DTLS error: {e}"),
            Self::Config(e) => write!(f, "{e}"),
        }
    }
}

fn reason(r: &CloseReason) -> String {
    match r {
        CloseReason::Local => "closed locally".into(),
        CloseReason::PeerClosed => "the server sent close_notify".into(),
        CloseReason::Error(e) => e.to_string(),
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Handshake(CloseReason::Error(e)) | Self::Closed(CloseReason::Error(e)) => Some(e),
            Self::Dtls(e) => Some(e),
            Self::Config(e) => Some(e),
            _ => None,
        }
    }
}

enum Command {
    Request(Packet, oneshot::Sender<Result<Packet, Error>>),
    Close(oneshot::Sender<()>),
    /// Notifications (RFC 7641) with this token go to the sender ([`crate::observe::client`]).
    Observe(Vec<u8>, mpsc::Sender<Packet>),
    Unobserve(Vec<u8>),
}

/// Retransmission counters and the RTT estimate of a [`Client`] ([`Client::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// DTLS flight retransmissions of the association (handshake, and any later flight).
    pub dtls_retransmissions: u64,
    /// CoAP retransmissions of confirmable requests (RFC 7252 §4.2).
    pub coap_retransmissions: u64,
    /// The server's RTT estimate (RFC 6298), when [`ClientOptions::link`] is set and a round
    /// trip was measured.
    pub rtt: Option<RttEstimator>,
    /// The ACK_TIMEOUT the next confirmable request starts from.
    pub ack_timeout: Duration,
}

struct Shared {
    peer: SocketAddr,
    link: Option<LinkPolicyFactory>,
    ack_timeout: Duration,
    dtls_retransmissions: AtomicU64,
    coap_retransmissions: AtomicU64,
    local: SocketAddr,
    info: ConnectionInfo,
    /// The latest session: the handshake's, replaced by each DTLS 1.3 NewSessionTicket.
    session: Mutex<Option<Session>>,
    /// Where received sessions also go, under this server name and port.
    cache: Option<(SessionCache, String, u16)>,
    closed: Mutex<Option<CloseReason>>,
}

impl Shared {
    /// ACK_TIMEOUT: the link's, following its estimate, or the fixed parameter.
    fn ack_timeout(&self) -> Duration {
        self.link.as_ref().map_or(self.ack_timeout, |l| l.ack_timeout(self.peer))
    }

    /// How long to wait for a response that needs no more retransmission.
    fn response_timeout(&self, params: &TransmissionParams) -> Duration {
        match &self.link {
            Some(_) => params.response_timeout.max(crate::coap::max_transmit_wait(self.ack_timeout())),
            None => params.response_timeout,
        }
    }

    fn closed_error(&self) -> Error {
        let r = self.closed.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Error::Closed(r.unwrap_or(CloseReason::Local))
    }
}

/// A CoAP client over one DTLS association. See the [module docs](self).
#[derive(Clone)]
pub struct Client {
    tx: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.shared.peer)
            .field("local", &self.shared.local)
            .field("info", &self.shared.info)
            .field("open", &!self.tx.is_closed())
            .finish()
    }
}

impl Client {
    /// Connects to `addr` with default [`ClientOptions`]. `server_name` is checked against the
    /// server's certificate and sent as SNI when it is a DNS name. Returns once the handshake
    /// completed, or with [`Error::Handshake`] and the reason.
    pub async fn connect(addr: SocketAddr, config: Arc<ClientConfig>, server_name: &str) -> Result<Self, Error> {
        Self::connect_with(addr, config, server_name, ClientOptions::default()).await
    }

    /// Connects with explicit options (transmission parameters, resumption, seed).
    pub async fn connect_with(
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        server_name: &str,
        options: ClientOptions,
    ) -> Result<Self, Error> {
        Self::connect_inner(addr, config, server_name, options, None).await.map(|(c, _)| c)
    }

    /// Connects resuming [`ClientOptions::resume`] and sends `request` as DTLS 1.3 0-RTT early
    /// data with the ClientHello (RFC 8446 §4.2.10, RFC 9147 §5.6), when the ticket allows
    /// early data, `config.version` is DTLS 1.3 and the encoded request fits the ticket's
    /// `max_early_data_size`; otherwise `request` is sent as the first request once connected.
    /// Returns once the handshake completed, with the response future of `request`.
    ///
    /// When the server accepts the early data, the request is in flight from the first
    /// datagram on, and a retransmission goes as 1-RTT data with the same Message ID (the
    /// server's deduplication answers it, RFC 7252 §4.5). When the server rejects it (for
    /// instance after a HelloRetryRequest), the same message (Message ID and token) is sent
    /// again as 1-RTT data: should the server have taken the early copy after all (a duplicated
    /// ClientHello can draw a HelloRetryRequest from a stateless cookie gate after the first
    /// copy was accepted), its deduplication answers the second copy instead of running the
    /// request twice. Early data
    /// can be replayed by an attacker (RFC 8446 §8): only send requests that are safe to repeat,
    /// such as a GET. [`ConnectionInfo::early_data_accepted`] tells what happened.
    pub async fn connect_early(
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        server_name: &str,
        options: ClientOptions,
        request: Packet,
    ) -> Result<(Self, ResponseFuture), Error> {
        let (client, response) = Self::connect_inner(addr, config, server_name, options, Some(request)).await?;
        let response =
            response.unwrap_or(ResponseFuture { state: FutState::Failed(Some(Error::Closed(CloseReason::Local))) });
        Ok((client, response))
    }

    async fn connect_inner(
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        server_name: &str,
        mut options: ClientOptions,
        early_request: Option<Packet>,
    ) -> Result<(Self, Option<ResponseFuture>), Error> {
        let mut from_cache = false;
        if options.resume.is_none()
            && let Some(cache) = &options.sessions
        {
            options.resume = cache.take(server_name, addr.port(), Instant::now());
            from_cache = options.resume.is_some();
        }
        let bind: SocketAddr =
            if addr.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
        let socket = UdpSocket::bind(bind).await.map_err(Error::Io)?;
        let config = match &options.link {
            Some(link) => {
                let mut c = (*config).clone();
                link.install(&mut c.common);
                Arc::new(c)
            }
            None => config,
        };
        // A connected socket only delivers datagrams from the server.
        socket.connect(addr).await.map_err(Error::Io)?;
        let local = socket.local_addr().map_err(Error::Io)?;
        let mut rng = options.rng_seed.map_or_else(SeededRng::from_os, SeededRng::from_seed_u64);
        let mut endpoint = Endpoint::client(rng.fork());
        let mut mid_seed = [0u8; 6];
        rng.fill(&mut mid_seed);
        let mut next_mid = u16::from_be_bytes([mid_seed[0], mid_seed[1]]);
        let mut next_token = u32::from_be_bytes([mid_seed[2], mid_seed[3], mid_seed[4], mid_seed[5]]);
        // The early request, shaped and encoded as `Task::start` would (Message ID, token).
        let early_limit = options.resume.as_ref().and_then(Session::max_early_data_size);
        let mut early_sent = None;
        if let (Some(request), Some(limit)) = (&early_request, early_limit) {
            let code = u8::from(request.header.code);
            let valid = code != 0
                && code >> 5 == 0
                && matches!(request.header.get_type(), MessageType::Confirmable | MessageType::NonConfirmable);
            let mut packet = request.clone();
            if packet.get_token().is_empty() {
                packet.set_token(next_token.to_be_bytes().to_vec());
            }
            packet.header.set_version(1);
            packet.header.message_id = next_mid;
            if let Some(bytes) = packet.to_bytes().ok().filter(|b| valid && b.len() <= limit as usize)
                && endpoint
                    .connect_with_early_data(
                        Instant::now(),
                        addr,
                        config.clone(),
                        server_name,
                        options.resume.clone(),
                        &bytes,
                    )
                    .is_ok()
            {
                if request.get_token().is_empty() {
                    next_token = next_token.wrapping_add(1);
                }
                next_mid = next_mid.wrapping_add(1);
                early_sent = Some((packet, bytes));
            }
        }
        if early_sent.is_none() {
            endpoint
                .connect(Instant::now(), addr, config, server_name, options.resume.clone())
                .map_err(Error::Config)?;
        }
        let mut early_data_accepted = false;

        let mut buf = vec![0u8; 65536];
        let mut early = Vec::new();
        let info = 'handshake: loop {
            if let Some(e) = flush(&socket, &mut endpoint).await {
                return Err(Error::Io(e));
            }
            while let Some((_, ev)) = endpoint.poll_event() {
                match ev {
                    Event::Connected { identity, suite, resumed } => {
                        let conn = endpoint.connection(&addr);
                        let session = conn.and_then(|c| c.session().cloned());
                        let version = conn.map_or(ProtocolVersion::DTLS1_2, |c| c.version());
                        break 'handshake ConnectionInfo {
                            identity,
                            suite,
                            resumed,
                            version,
                            session,
                            early_data_accepted,
                        };
                    }
                    Event::ApplicationData(d) => early.push(d),
                    Event::Closed(r) => return Err(Error::Handshake(r)),
                    Event::EarlyDataAccepted => early_data_accepted = true,
                    // Early data and issued sessions concern servers only.
                    _ => {}
                }
            }
            // The engine's own retransmission budget bounds the handshake (RFC 6347 §4.2.4):
            // it reports HandshakeTimeout as a Closed event.
            let deadline = endpoint.poll_timeout().unwrap_or_else(|| Instant::now() + Duration::from_secs(60));
            tokio::select! {
                r = socket.recv(&mut buf) => match r {
                    Ok(n) => endpoint.handle_datagram(Instant::now(), addr, &buf[..n]),
                    // The kernel's ICMP port unreachable on the connected socket: nothing
                    // listens there, and no retransmission will change that before the peer
                    // starts (RFC 1122 §4.1.3.3 lets UDP report it to the application).
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        // Nothing listened, so a ticket taken from the cache reached no server:
                        // it stays usable (offered once means once to a server).
                        if from_cache
                            && let (Some(cache), Some(session)) = (&options.sessions, options.resume.take())
                        {
                            cache.insert(server_name, addr.port(), session);
                        }
                        return Err(Error::Io(e));
                    }
                    Err(e) => tracing::debug!(error = %e, "CoAPS client: receive error during handshake"),
                },
                _ = tokio::time::sleep_until(deadline.into()) => endpoint.handle_timeout(Instant::now()),
            }
        };

        let cache = options.sessions.map(|c| (c, server_name.to_owned(), addr.port()));
        // A DTLS 1.3 ticket just used is not kept again (offered once); the server's next
        // NewSessionTicket replaces it.
        if let (Some((c, name, port)), Some(s)) = (&cache, &info.session)
            && !(info.resumed && s.is_dtls13_ticket())
        {
            c.insert(name, *port, s.clone());
        }
        let session = Mutex::new(info.session.clone());
        let handshake_retransmissions = endpoint.connection(&addr).map_or(0, |c| c.stats().retransmissions);
        let shared = Arc::new(Shared {
            peer: addr,
            link: options.link.clone(),
            ack_timeout: options.transmission.ack_timeout,
            dtls_retransmissions: AtomicU64::new(handshake_retransmissions),
            coap_retransmissions: AtomicU64::new(0),
            local,
            info,
            session,
            cache,
            closed: Mutex::new(None),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let mut task = Task {
            socket,
            endpoint,
            peer: addr,
            rx,
            rx_open: true,
            shared: shared.clone(),
            params: options.transmission,
            max_queued: options.max_queued,
            rng,
            next_mid,
            next_token,
            exchanges: HashMap::new(),
            by_mid: HashMap::new(),
            queue: VecDeque::new(),
            acked_cons: VecDeque::new(),
            observers: HashMap::new(),
            done: false,
        };
        let response = early_request.map(|request| {
            let (reply, rx) = oneshot::channel();
            match early_sent {
                Some((packet, bytes)) if early_data_accepted => task.in_flight(packet, bytes, reply, Instant::now()),
                // Rejected: the same message again, as 1-RTT data.
                Some((packet, bytes)) => {
                    task.send_raw(&bytes);
                    task.in_flight(packet, bytes, reply, Instant::now());
                }
                // Not offered: an ordinary first request.
                None => task.start(request, reply, Instant::now()),
            }
            ResponseFuture { state: FutState::Waiting(rx, shared.clone()) }
        });
        tokio::spawn(task.run(early));
        Ok((Self { tx, shared }, response))
    }

    /// Retransmissions so far and the RTT estimate.
    pub fn stats(&self) -> ClientStats {
        let s = &self.shared;
        ClientStats {
            dtls_retransmissions: s.dtls_retransmissions.load(Ordering::Relaxed),
            coap_retransmissions: s.coap_retransmissions.load(Ordering::Relaxed),
            rtt: s.link.as_ref().and_then(|l| l.estimate(s.peer)),
            ack_timeout: s.ack_timeout(),
        }
    }

    /// Sends one request and waits for its response (the same as calling the service).
    pub async fn send(&self, request: Packet) -> Result<Packet, Error> {
        self.clone().call(request).await
    }

    /// Sends `request`; if the answer is 4.01 Unauthorized with an Echo option (RFC 9175
    /// §2.4: the server wants proof of freshness, as a server with the 0-RTT policy
    /// [`EarlyDataPolicy::Reject`](crate::EarlyDataPolicy::Reject) asks), repeats it once
    /// with that Echo value.
    pub async fn send_echo_aware(&self, request: Packet) -> Result<Packet, Error> {
        let response = self.send(request.clone()).await?;
        self.retry_with_echo(&request, response).await
    }

    /// Given the `response` to `request`: if it is 4.01 with an Echo option, sends `request`
    /// once more (a new exchange) carrying that Echo value and returns that answer; otherwise
    /// returns `response`.
    pub async fn retry_with_echo(&self, request: &Packet, response: Packet) -> Result<Packet, Error> {
        let echo_opt = coap_lite::CoapOption::Unknown(crate::early_data::ECHO);
        let echo = match response.header.code {
            coap_lite::MessageClass::Response(coap_lite::ResponseType::Unauthorized) => {
                response.get_option(echo_opt).and_then(|v| v.front()).cloned()
            }
            _ => None,
        };
        let Some(echo) = echo else { return Ok(response) };
        let mut again = request.clone();
        again.clear_option(echo_opt);
        again.add_option(echo_opt, echo);
        // A new exchange: a fresh Message ID and token (the old token's exchange is over).
        again.set_token(Vec::new());
        self.send(again).await
    }

    /// Sends close_notify and ends the association; requests in flight fail with
    /// [`Error::Closed`]. Returns once the alert is sent (at once if already closed).
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Routes notifications carrying `token` to `tx` (RFC 7641; see [`crate::observe::client`]).
    pub(crate) fn add_observer(&self, token: Vec<u8>, tx: mpsc::Sender<Packet>) -> bool {
        self.tx.send(Command::Observe(token, tx)).is_ok()
    }

    /// Stops routing notifications carrying `token`.
    pub(crate) fn remove_observer(&self, token: Vec<u8>) {
        let _ = self.tx.send(Command::Unobserve(token));
    }

    /// Whether the association is still up.
    pub fn is_open(&self) -> bool {
        !self.tx.is_closed()
    }

    /// What the handshake established (identity, suite, resumption).
    pub fn info(&self) -> &ConnectionInfo {
        &self.shared.info
    }

    /// The session to pass as [`ClientOptions::resume`] on a later connection: the DTLS 1.2
    /// session ID, or the latest DTLS 1.3 ticket the server sent (a NewSessionTicket comes
    /// after the handshake, so right after [`Client::connect`] there may be none yet).
    pub fn session(&self) -> Option<Session> {
        self.shared.session.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.peer
    }

    /// The local address of the client's socket.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }
}

impl Service<Packet> for Client {
    type Response = Packet;
    type Error = Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.tx.is_closed() { Poll::Ready(Err(self.shared.closed_error())) } else { Poll::Ready(Ok(())) }
    }

    fn call(&mut self, request: Packet) -> ResponseFuture {
        let (tx, rx) = oneshot::channel();
        match self.tx.send(Command::Request(request, tx)) {
            Ok(()) => ResponseFuture { state: FutState::Waiting(rx, self.shared.clone()) },
            Err(_) => ResponseFuture { state: FutState::Failed(Some(self.shared.closed_error())) },
        }
    }
}

/// The future returned by [`Client`]: the response packet, or why there is none.
pub struct ResponseFuture {
    state: FutState,
}

enum FutState {
    Waiting(oneshot::Receiver<Result<Packet, Error>>, Arc<Shared>),
    Failed(Option<Error>),
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self.state {
            FutState::Waiting(..) => "waiting",
            FutState::Failed(_) => "failed",
        };
        f.debug_struct("ResponseFuture").field("state", &s).finish()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Packet, Error>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            FutState::Waiting(rx, shared) => match Pin::new(rx).poll(cx) {
                Poll::Ready(Ok(r)) => Poll::Ready(r),
                Poll::Ready(Err(_)) => Poll::Ready(Err(shared.closed_error())),
                Poll::Pending => Poll::Pending,
            },
            FutState::Failed(e) => Poll::Ready(Err(e.take().unwrap_or(Error::Closed(CloseReason::Local)))),
        }
    }
}

/// Sends what the endpoint has queued. Returns the "connection refused" a send reported (a
/// pending ICMP port unreachable surfaces on the next send of a connected socket as well as
/// on a receive); other send errors are only logged, the retransmission timers cover them.
async fn flush(socket: &UdpSocket, endpoint: &mut Endpoint) -> Option<std::io::Error> {
    let mut refused = None;
    while let Some(t) = endpoint.poll_transmit() {
        if let Err(e) = socket.send(&t.payload).await {
            tracing::debug!(error = %e, "CoAPS client: send failed");
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                refused = Some(e);
            }
        }
    }
    refused
}

/// One request in flight.
struct Exchange {
    mid: u16,
    bytes: Vec<u8>,
    /// Still counts against NSTART: a CON not yet acknowledged, or a NON without response.
    outstanding: bool,
    retransmits: u32,
    timeout: Duration,
    /// When to retransmit (a CON not yet acknowledged).
    next_retransmit: Option<Instant>,
    /// When to give up waiting for the response (NON, or CON after an Empty ACK).
    deadline: Option<Instant>,
    reply: oneshot::Sender<Result<Packet, Error>>,
}

/// Confirmable responses we acknowledged, kept so a retransmission of one (our ACK was lost)
/// is acknowledged again instead of reset (§4.5).
const ACKED_CONS: usize = 32;
/// How long to remember them: EXCHANGE_LIFETIME.
const ACKED_CON_LIFETIME: Duration = Duration::from_secs(247);

struct Task {
    socket: UdpSocket,
    endpoint: Endpoint,
    peer: SocketAddr,
    rx: mpsc::UnboundedReceiver<Command>,
    rx_open: bool,
    shared: Arc<Shared>,
    params: TransmissionParams,
    max_queued: usize,
    rng: SeededRng,
    next_mid: u16,
    next_token: u32,
    /// By token.
    exchanges: HashMap<Vec<u8>, Exchange>,
    /// Message ID → token, for matching ACK and RST (§4.2); only for CONs not yet acknowledged.
    by_mid: HashMap<u16, Vec<u8>>,
    queue: VecDeque<(Packet, oneshot::Sender<Result<Packet, Error>>)>,
    acked_cons: VecDeque<(u16, Instant)>,
    /// Observations by token: where their notifications go.
    observers: HashMap<Vec<u8>, mpsc::Sender<Packet>>,
    done: bool,
}

impl Task {
    async fn run(mut self, early: Vec<Vec<u8>>) {
        let now = Instant::now();
        for d in early {
            self.on_message(&d, now);
        }
        let mut buf = vec![0u8; 65536];
        loop {
            self.drain_events();
            flush(&self.socket, &mut self.endpoint).await;
            if let Some(c) = self.endpoint.connection(&self.peer) {
                self.shared.dtls_retransmissions.store(c.stats().retransmissions, Ordering::Relaxed);
            }
            if self.done || (!self.rx_open && self.exchanges.is_empty() && self.queue.is_empty()) {
                break;
            }
            let deadline = self.next_deadline().unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                r = self.socket.recv(&mut buf) => match r {
                    Ok(n) => {
                        self.endpoint.handle_datagram(Instant::now(), self.peer, &buf[..n]);
                        self.refresh_session();
                    }
                    // ICMP errors on a connected socket surface here; the retransmission
                    // budget decides when the server is really gone (§4.2 allows either).
                    Err(e) => tracing::debug!(error = %e, "CoAPS client: receive error"),
                },
                cmd = self.rx.recv(), if self.rx_open => match cmd {
                    Some(Command::Request(p, reply)) => self.on_request(p, reply),
                    Some(Command::Close(done)) => {
                        self.endpoint.close(self.peer);
                        self.drain_events();
                        self.fail_all(CloseReason::Local);
                        flush(&self.socket, &mut self.endpoint).await;
                        let _ = done.send(());
                    }
                    Some(Command::Observe(token, tx)) => {
                        self.observers.insert(token, tx);
                    }
                    Some(Command::Unobserve(token)) => {
                        self.observers.remove(&token);
                    }
                    None => self.rx_open = false,
                },
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let now = Instant::now();
                    self.endpoint.handle_timeout(now);
                    self.on_timer(now);
                }
            }
        }
        if !self.done {
            // Every handle is gone and nothing is in flight: say goodbye (RFC 5246 §7.2.1).
            self.endpoint.close(self.peer);
            flush(&self.socket, &mut self.endpoint).await;
            self.fail_all(CloseReason::Local);
        }
        self.rx.close();
    }

    fn next_deadline(&self) -> Option<Instant> {
        let ex = self.exchanges.values().flat_map(|e| [e.next_retransmit, e.deadline]).flatten();
        ex.chain(self.endpoint.poll_timeout()).min()
    }

    /// Keeps [`Client::session`] on the latest ticket (RFC 8446 §4.6.1).
    fn refresh_session(&self) {
        let Some(latest) = self.endpoint.connection(&self.peer).and_then(|c| c.session()) else { return };
        let mut current = self.shared.session.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_none_or(|s| s.id != latest.id) {
            *current = Some(latest.clone());
            if let Some((cache, name, port)) = &self.shared.cache {
                cache.insert(name, *port, latest.clone());
            }
        }
    }

    fn drain_events(&mut self) {
        while let Some((_, ev)) = self.endpoint.poll_event() {
            match ev {
                Event::ApplicationData(d) => self.on_message(&d, Instant::now()),
                Event::Closed(r) => self.fail_all(r),
                Event::Connected { .. } => {}
                _ => {}
            }
        }
    }

    fn fail_all(&mut self, r: CloseReason) {
        *self.shared.closed.lock().unwrap_or_else(|e| e.into_inner()) = Some(r.clone());
        self.done = true;
        self.rx.close();
        for (_, ex) in self.exchanges.drain() {
            let _ = ex.reply.send(Err(Error::Closed(r.clone())));
        }
        self.by_mid.clear();
        self.observers.clear();
        for (_, reply) in self.queue.drain(..) {
            let _ = reply.send(Err(Error::Closed(r.clone())));
        }
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Command::Request(_, reply) => {
                    let _ = reply.send(Err(Error::Closed(r.clone())));
                }
                Command::Close(done) => {
                    let _ = done.send(());
                }
                Command::Observe(..) | Command::Unobserve(_) => {}
            }
        }
    }

    fn outstanding(&self) -> usize {
        self.exchanges.values().filter(|e| e.outstanding).count()
    }

    fn on_request(&mut self, packet: Packet, reply: oneshot::Sender<Result<Packet, Error>>) {
        if self.outstanding() < self.params.nstart.max(1) {
            self.start(packet, reply, Instant::now());
        } else if self.queue.len() < self.max_queued {
            self.queue.push_back((packet, reply));
        } else {
            let _ = reply.send(Err(Error::QueueFull));
        }
    }

    fn start_queued(&mut self, now: Instant) {
        while self.outstanding() < self.params.nstart.max(1) {
            let Some((p, reply)) = self.queue.pop_front() else { break };
            self.start(p, reply, now);
        }
    }

    fn start(&mut self, mut packet: Packet, reply: oneshot::Sender<Result<Packet, Error>>, now: Instant) {
        if reply.is_closed() {
            return; // cancelled while queued
        }
        if !matches!(packet.header.get_type(), MessageType::Confirmable | MessageType::NonConfirmable) {
            let _ = reply.send(Err(Error::InvalidRequest("type must be Confirmable or Non-confirmable")));
            return;
        }
        let code = u8::from(packet.header.code);
        if code == 0 || code >> 5 != 0 {
            let _ = reply.send(Err(Error::InvalidRequest("code must be a request code (0.01-0.31)")));
            return;
        }
        let token = if packet.get_token().is_empty() {
            loop {
                // A counter: unique among requests in flight; DTLS already protects against
                // spoofed responses, so tokens need no randomness beyond the start (§5.3.1).
                let t = self.next_token.to_be_bytes().to_vec();
                self.next_token = self.next_token.wrapping_add(1);
                if !self.exchanges.contains_key(&t) {
                    break t;
                }
            }
        } else if self.exchanges.contains_key(packet.get_token()) {
            let _ = reply.send(Err(Error::TokenInUse));
            return;
        } else {
            packet.get_token().to_vec()
        };
        let mid = loop {
            let m = self.next_mid;
            self.next_mid = self.next_mid.wrapping_add(1);
            if !self.by_mid.contains_key(&m) {
                break m;
            }
        };
        packet.header.set_version(1);
        packet.header.message_id = mid;
        packet.set_token(token);
        let Some(max) = self.endpoint.connection(&self.peer).map(|c| c.max_payload()) else {
            let _ = reply.send(Err(self.shared.closed_error()));
            return;
        };
        let Ok(bytes) = packet.to_bytes_with_limit(max) else {
            let _ = reply.send(Err(Error::MessageTooLarge { max }));
            return;
        };
        if let Err(e) = self.endpoint.send(self.peer, &bytes) {
            let _ = reply.send(Err(Error::Dtls(e)));
            return;
        }
        self.in_flight(packet, bytes, reply, now);
    }

    /// Registers a request already sent as `bytes` (by [`Task::start`], or as accepted 0-RTT
    /// data): its retransmissions (as 1-RTT data), timeouts and response.
    fn in_flight(
        &mut self,
        packet: Packet,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<Packet, Error>>,
        now: Instant,
    ) {
        let con = packet.header.get_type() == MessageType::Confirmable;
        let mid = packet.header.message_id;
        let token = packet.get_token().to_vec();
        let timeout = self.initial_timeout();
        let ex = Exchange {
            mid,
            bytes,
            outstanding: true,
            retransmits: 0,
            timeout,
            next_retransmit: con.then(|| now + timeout),
            deadline: (!con).then(|| now + self.shared.response_timeout(&self.params)),
            reply,
        };
        if con {
            self.by_mid.insert(mid, token.clone());
        }
        self.exchanges.insert(token, ex);
    }

    /// Random in [ACK_TIMEOUT, ACK_TIMEOUT × ACK_RANDOM_FACTOR] (§4.2).
    fn initial_timeout(&mut self) -> Duration {
        let mut b = [0u8; 4];
        self.rng.fill(&mut b);
        let unit = f64::from(u32::from_be_bytes(b)) / f64::from(u32::MAX);
        let factor = self.params.ack_random_factor.max(1.0);
        self.shared.ack_timeout().mul_f64(1.0 + (factor - 1.0) * unit)
    }

    fn complete(&mut self, token: &[u8], result: Result<Packet, Error>, now: Instant) {
        if let Some(ex) = self.exchanges.remove(token) {
            self.by_mid.remove(&ex.mid);
            let _ = ex.reply.send(result);
        }
        self.start_queued(now);
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        if let Err(e) = self.endpoint.send(self.peer, bytes) {
            tracing::debug!(error = %e, "CoAPS client: could not send");
        }
    }

    fn on_timer(&mut self, now: Instant) {
        let tokens: Vec<Vec<u8>> = self.exchanges.keys().cloned().collect();
        for token in tokens {
            let Some(ex) = self.exchanges.get_mut(&token) else { continue };
            if ex.reply.is_closed() {
                // The caller dropped the response future: stop retransmitting (§4.2 allows
                // giving up early).
                self.complete(&token, Err(Error::Timeout), now);
                continue;
            }
            if ex.next_retransmit.is_some_and(|t| t <= now) {
                if ex.retransmits < self.params.max_retransmit {
                    ex.retransmits += 1;
                    self.shared.coap_retransmissions.fetch_add(1, Ordering::Relaxed);
                    ex.timeout *= 2;
                    ex.next_retransmit = Some(now + ex.timeout);
                    let bytes = ex.bytes.clone();
                    tracing::debug!(mid = ex.mid, n = ex.retransmits, "CoAPS client: retransmitting");
                    self.send_raw(&bytes);
                } else {
                    self.complete(&token, Err(Error::Timeout), now);
                }
            } else if ex.deadline.is_some_and(|t| t <= now) {
                self.complete(&token, Err(Error::Timeout), now);
            }
        }
        while self.acked_cons.front().is_some_and(|&(_, t)| now.saturating_duration_since(t) >= ACKED_CON_LIFETIME) {
            self.acked_cons.pop_front();
        }
    }

    /// Hands a notification to its observation; `false` when there is none (or it is gone).
    fn notify(&mut self, token: &[u8], packet: Packet) -> bool {
        let Some(tx) = self.observers.get(token) else { return false };
        match tx.try_send(packet) {
            // A full queue drops this notification: a later one carries a newer state (§3.4).
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.observers.remove(token);
                false
            }
        }
    }

    fn on_message(&mut self, data: &[u8], now: Instant) {
        let [b0, code, m0, m1, ..] = *data else { return };
        if b0 >> 6 != 1 {
            return; // §3: unknown version, silently ignored
        }
        let mid = u16::from_be_bytes([m0, m1]);
        let ty = (b0 >> 4) & 0b11;
        let is_con = ty == 0;
        let Ok(packet) = Packet::from_bytes(data) else {
            if is_con {
                self.send_raw(&reset(mid));
            }
            return;
        };
        let is_response = matches!(code >> 5, 2 | 4 | 5) && matches!(packet.header.code, MessageClass::Response(_));
        match packet.header.get_type() {
            MessageType::Acknowledgement => {
                let Some(token) = self.by_mid.get(&mid).cloned() else { return };
                if packet.header.code == MessageClass::Empty {
                    // The server will answer separately (§5.2.2): stop retransmitting, wait.
                    self.by_mid.remove(&mid);
                    if let Some(ex) = self.exchanges.get_mut(&token) {
                        ex.outstanding = false;
                        ex.next_retransmit = None;
                        ex.deadline = Some(now + self.shared.response_timeout(&self.params));
                    }
                    self.start_queued(now);
                } else if is_response && packet.get_token() == token.as_slice() {
                    self.complete(&token, Ok(packet), now);
                }
                // An ACK with a request or reserved code, or the wrong token: ignored (§4.2).
            }
            MessageType::Reset => {
                if let Some(token) = self.by_mid.get(&mid).cloned() {
                    self.complete(&token, Err(Error::Reset), now);
                }
            }
            MessageType::Confirmable => {
                if self.acked_cons.iter().any(|&(m, _)| m == mid) {
                    self.send_raw(&empty_ack(mid)); // our ACK was lost: the same ACK again (§4.5)
                    return;
                }
                let token = packet.get_token().to_vec();
                if is_response && self.exchanges.contains_key(&token) {
                    self.send_raw(&empty_ack(mid));
                    if self.acked_cons.len() >= ACKED_CONS {
                        self.acked_cons.pop_front();
                    }
                    self.acked_cons.push_back((mid, now));
                    self.complete(&token, Ok(packet), now);
                } else if is_response && self.notify(&token, packet) {
                    // A confirmable notification (RFC 7641 §4.5): acknowledged.
                    self.send_raw(&empty_ack(mid));
                } else {
                    // A ping, a request (we serve none), a response to nothing, or a
                    // notification nobody waits for any more (RFC 7641 §3.6) (§4.2).
                    self.send_raw(&reset(mid));
                }
            }
            MessageType::NonConfirmable => {
                let token = packet.get_token().to_vec();
                if is_response && self.exchanges.contains_key(&token) {
                    self.complete(&token, Ok(packet), now);
                } else if is_response {
                    // A notification (RFC 7641), or nothing we asked for: ignored (§4.3).
                    self.notify(&token, packet);
                }
            }
        }
    }
}
