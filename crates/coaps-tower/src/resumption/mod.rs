//! Session resumption with a store outside the engine: DTLS 1.2 session IDs (RFC 5246
//! §7.4.1.2) and stateful DTLS 1.3 tickets (RFC 8446 §4.6.1) kept in an in-process moka cache
//! ([`MokaStore`], the default) or, with the `redis` feature, in Redis (`RedisStore`) so that
//! several servers behind one address resume each other's clients.
//!
//! [`ResumptionLayer`] sits at the datagram level between the
//! [`CookieLayer`](crate::cookie::CookieLayer) and the
//! [`HandshakeLayer`](crate::handshake::HandshakeLayer):
//!
//! ```text
//! UdpSocket ─▶ serve() ─▶ CookieLayer ─▶ ResumptionLayer ─▶ HandshakeLayer ─▶ …
//!                         stateless      proven ClientHello:  engine resumes what it
//!                         HVR / HRR      fetch what it offers  was handed; issued sessions
//!                                        (moka | Redis)        go back to the store
//! ```
//!
//! * For a ClientHello the cookie layer **proved** (marked with
//!   [`CookieVerified`](crate::CookieVerified)), it reads what the hello offers
//!   ([`coaps_dtls::offered_sessions`]: the 1.2 session ID, the 1.3 PSK identities), fetches
//!   those keys from its [`AsyncSessionStore`], decodes them ([`Session::decode`]) and hands
//!   them to the engine with the datagram ([`Datagram::sessions`]). The first ticket of a
//!   ClientHello that offers 0-RTT early data is fetched with the atomic
//!   [`AsyncSessionStore::take`], so across every node sharing the store its early data is
//!   accepted once (RFC 8446 §8.1). A spoofed ClientHello never gets this far: the cookie
//!   layer answers it alone (DESIGN "no state before proof"), so it never costs a look-up.
//! * Sessions the engine issues (1.2 session IDs after full handshakes, 1.3 tickets) reach the
//!   layer through [`ResumptionLayer::session_sink`], given to
//!   [`HandshakeBuilder::on_session`](crate::handshake::HandshakeBuilder::on_session); each is
//!   written to the store, off the datagram path, for its remaining lifetime
//!   ([`Session::ttl`]).
//! * A cookie-less DTLS 1.3 ClientHello that offers a PSK and may skip the cookie exchange
//!   (RFC 9147 §5.1: a resumption from the address the ticket was issued to) comes from the
//!   cookie layer undecided: the layer reads its first ticket (a `get`), asks the cookie gate
//!   again with it, answers with the gate's HelloRetryRequest when the exemption does not hold,
//!   and only then takes a 0-RTT ticket, so a HelloRetryRequest never spends one.
//! * A sealed ticket ([`TicketMode::Stateless`](coaps_dtls::TicketMode::Stateless)) offered with early data is opened here and
//!   its ID recorded with [`AsyncSessionStore::put_if_absent`] in [`KeySpace::ZeroRtt`]: only
//!   the first record (on any node) lets its early data in (see
//!   [`ResumptionLayer::replay_window`], [`ResumptionLayer::startup_refusal`]).
//! * Everything else (records of established associations, alerts) passes through untouched
//!   and without a look-up.
//!
//! A store that fails (Redis down, a look-up slower than
//! [`ResumptionLayer::lookup_timeout`]) never stops the server: the ClientHello goes on
//! without sessions and gets a full handshake; the failure is logged at `warn` (the first of a
//! run; then `debug`) and counted in [`ResumptionStats::store_errors`]. Entries that do not
//! decode, are expired or are stored under another key than the one offered (forged, moved,
//! truncated) are refused the same way and counted in [`ResumptionStats::entries_refused`].
//!
//! # Wiring
//!
//! As with the handshake layer ([`crate::handshake#wiring`]), a stack wired wrong fails loudly
//! with a [`WiringError`](crate::handshake::WiringError) (and one `tracing::error!`):
//!
//! * [`ResumptionLayer::behind`] takes the cookie layer in front; a ClientHello without its
//!   mark (the cookie layer is not in front), a mark of another cookie layer, or a cookie layer
//!   that wraps no service fail the call;
//! * [`ResumptionLayer::without_cookie_layer`] is for a stack whose handshake layer runs its
//!   own gate: a datagram marked by a cookie layer fails the call (use `behind` there). Without
//!   a cookie layer in front every ClientHello that offers a session costs a look-up, spoofed
//!   ones included: use it only where the store is in-process or the network is trusted;
//! * a layer whose [`ResumptionLayer::session_sink`] was never taken (so no issued session
//!   would ever be stored) fails every call.
//!
//! The engine keeps sessions of its own in [`ServerConfig::session_store`] unless it is
//! `None`: set it to `None` behind this layer, so the store is the one place sessions live.
//!
//! # Ticket modes
//!
//! DTLS 1.2 RFC 5077 tickets and DTLS 1.3 tickets are stateful by default: the ticket is a
//! random key into this store, fetched like a session ID. With
//! [`TicketMode::Stateless`](coaps_dtls::TicketMode::Stateless) the ticket is the session
//! sealed under rotating ticket keys; the engine opens it itself and the layer fetches
//! nothing for it ([`ResumptionLayer::ticket_keys`]). In a cluster the ticket keys live in
//! the same store under [`KeySpace::TicketKeys`], one per rotation period, agreed with
//! [`AsyncSessionStore::put_if_absent`] and kept in step by [`TicketKeySync`], so any node
//! opens any node's tickets.
//!
//! # Example
//!
//! A cookie layer, this layer over a [`MokaStore`], the handshake layer and an echo service; a
//! DTLS 1.2 client from `coaps-dtls` connects once, then resumes its session with an
//! abbreviated handshake fetched from the store.
//!
//! ```
//! use coaps_dtls::crypto::SeededRng;
//! use coaps_dtls::{ClientConfig, DtlsVersion, Endpoint, Event, Psk, ServerConfig, StaticPsks};
//! use coaps_tower::resumption::{MokaConfig, MokaStore, ResumptionLayer};
//! use coaps_tower::{BoxError, CookieLayer, Datagram, HandshakeLayer, Secured};
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let psk = Psk::new("device-1", b"0123456789abcdef".to_vec())?;
//! let server = Arc::new(ServerConfig {
//!     psks: Some(Arc::new(StaticPsks(vec![psk.clone()]))),
//!     session_store: None, // sessions live in the layer's store only
//!     ..ServerConfig::default()
//! });
//! let cookies = CookieLayer::for_server(&server);
//! let resumption = ResumptionLayer::behind(MokaStore::new(MokaConfig::default()), &cookies);
//! let handshake = HandshakeLayer::builder(server).on_session(resumption.session_sink()).behind(&cookies).build();
//! let stats = resumption.clone();
//! let mut service = ServiceBuilder::new()
//!     .layer(cookies)
//!     .layer(resumption)
//!     .layer(handshake)
//!     .service(service_fn(|s: Secured| async move { Ok::<_, BoxError>(Some(s.payload)) }));
//!
//! let (server_addr, client_addr) = ("192.0.2.1:5684".parse()?, "192.0.2.2:40000".parse()?);
//! let config = Arc::new(ClientConfig { psk: Some(psk), version: DtlsVersion::Dtls12, ..ClientConfig::default() });
//! let mut session = None;
//! for round in 0..2 {
//!     let mut client = Endpoint::client(SeededRng::from_seed_u64(round));
//!     client.connect(Instant::now(), server_addr, config.clone(), "localhost", session.take())?;
//!     let mut resumed = None;
//!     for _ in 0..10 {
//!         while let Some(t) = client.poll_transmit() {
//!             let answers = service.ready().await?.call(Datagram::new(client_addr, t.payload)).await?;
//!             for a in answers {
//!                 client.handle_datagram(Instant::now(), server_addr, &a.payload);
//!             }
//!         }
//!         while let Some((_, event)) = client.poll_event() {
//!             if let Event::Connected { resumed: r, .. } = event {
//!                 resumed = Some(r);
//!             }
//!         }
//!     }
//!     assert_eq!(resumed, Some(round == 1)); // full handshake first, then resumed
//!     session = client.connection(&server_addr).and_then(|c| c.session().cloned());
//!     // The store write runs off the datagram path: wait for it.
//!     while stats.stats().sessions_stored < 1 {
//!         tokio::time::sleep(Duration::from_millis(1)).await;
//!     }
//! }
//! assert_eq!(stats.stats().sessions_fetched, 1);
//! # Ok(())
//! # }
//! ```
//!
//! [`Datagram::sessions`]: crate::Datagram::sessions
//! [`Session::decode`]: coaps_dtls::Session::decode
//! [`Session::ttl`]: coaps_dtls::Session::ttl
//! [`ServerConfig::session_store`]: coaps_dtls::ServerConfig::session_store

mod future;
mod layer;
mod moka_store;
#[cfg(feature = "redis")]
mod redis_store;
mod service;
mod ticket_keys;

pub use future::ResponseFuture;
pub use layer::{DEFAULT_LOOKUP_TIMEOUT, DEFAULT_REPLAY_WINDOW, ResumptionLayer, ResumptionStats};
pub use moka_store::{ENTRY_OVERHEAD, MokaConfig, MokaStore};
#[cfg(feature = "redis")]
pub use redis_store::{RedisConfig, RedisStats, RedisStore};
pub use service::Resumption;
pub use ticket_keys::TicketKeySync;

use coaps_dtls::Zeroizing;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// What an [`AsyncSessionStore`] method returns: a boxed future, so stores are usable as
/// `Arc<dyn AsyncSessionStore>` and the layer's response future needs no type parameter for
/// them.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The key spaces of a store shared by a cluster: sessions, and the rotating
/// ticket-encryption keys of stateless tickets ([`TicketKeySync`]), so every node opens every
/// node's tickets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeySpace {
    /// Encoded sessions ([`coaps_dtls::Session::encode`]) under their
    /// [`store_key`](coaps_dtls::Session::store_key).
    Sessions,
    /// Ticket-encryption keys of stateless tickets, one per rotation period
    /// ([`TicketKeySync`]).
    TicketKeys,
    /// Records of sealed (stateless) DTLS 1.3 tickets whose 0-RTT early data a node accepted,
    /// by the ticket's ID, kept for the replay window ([`ResumptionLayer::replay_window`]):
    /// the first node to record an ID takes the early data, every replay finds the record
    /// (RFC 8446 §8.1, §8.2).
    ZeroRtt,
}

impl KeySpace {
    /// The prefix a store that keeps several spaces in one namespace (Redis) puts before keys.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Sessions => "s:",
            Self::TicketKeys => "k:",
            Self::ZeroRtt => "z:",
        }
    }
}

/// Asynchronous storage of encoded sessions ([`coaps_dtls::Session::encode`]) keyed by
/// session ID or ticket ([`coaps_dtls::Session::store_key`]), with expiry: what
/// [`ResumptionLayer`] reads and writes. The asynchronous counterpart of the engine's
/// [`coaps_dtls::SessionStore`].
///
/// Values hold session secrets: a store outside the process must seal them (`RedisStore`
/// does). A failing store answers with a [`StoreError`], never by blocking for long; the layer
/// then gives the client a full handshake.
pub trait AsyncSessionStore: Send + Sync + fmt::Debug + 'static {
    /// Stores `session` under `key` for `ttl` (the store may keep it shorter, never longer).
    fn put<'a>(&'a self, key: &'a [u8], session: Zeroizing<Vec<u8>>, ttl: Duration) -> StoreFuture<'a, ()>;

    /// The unexpired session under `key`, if any; it stays stored.
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Zeroizing<Vec<u8>>>>;

    /// Removes the session under `key` and returns it, in one atomic step: of any number of
    /// concurrent `take`s of one key (on any node sharing the store), at most one returns it
    /// (single-use 0-RTT tickets, RFC 8446 §8.1). Expired sessions are not returned.
    fn take<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Zeroizing<Vec<u8>>>>;

    /// Stores `value` under `key` in key space `space` unless something is stored there
    /// already, and returns what is stored afterwards: `value`, or what another node put first.
    /// Nodes sharing the store agree on ticket keys through this ([`TicketKeySync`]).
    ///
    /// The default keeps the value beside the sessions under `space`'s prefix with a `get` and
    /// a `put`, which is not atomic: enough for a store only one process uses (moka). A store
    /// several processes share overrides it with one atomic step (`RedisStore`: `SET NX`).
    fn put_if_absent<'a>(
        &'a self,
        space: KeySpace,
        key: &'a [u8],
        value: Zeroizing<Vec<u8>>,
        ttl: Duration,
    ) -> StoreFuture<'a, Zeroizing<Vec<u8>>> {
        Box::pin(async move {
            let mut k = space.prefix().as_bytes().to_vec();
            k.extend_from_slice(key);
            if let Some(v) = self.get(&k).await? {
                return Ok(v);
            }
            self.put(&k, value.clone(), ttl).await?;
            Ok(value)
        })
    }
}

impl<T: AsyncSessionStore + ?Sized> AsyncSessionStore for Arc<T> {
    fn put<'a>(&'a self, key: &'a [u8], session: Zeroizing<Vec<u8>>, ttl: Duration) -> StoreFuture<'a, ()> {
        (**self).put(key, session, ttl)
    }

    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Zeroizing<Vec<u8>>>> {
        (**self).get(key)
    }

    fn take<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Zeroizing<Vec<u8>>>> {
        (**self).take(key)
    }

    fn put_if_absent<'a>(
        &'a self,
        space: KeySpace,
        key: &'a [u8],
        value: Zeroizing<Vec<u8>>,
        ttl: Duration,
    ) -> StoreFuture<'a, Zeroizing<Vec<u8>>> {
        (**self).put_if_absent(space, key, value, ttl)
    }
}

/// Why a store could not answer. The layer treats every kind alike: a full handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot be reached now (not connected yet, connection lost, reconnecting).
    Unavailable(String),
    /// The store did not answer in time.
    Timeout,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(why) => write!(f, "session store unavailable: {why}"),
            Self::Timeout => f.write_str("session store did not answer in time"),
        }
    }
}

impl std::error::Error for StoreError {}
