use super::service::Resumption;
use super::{AsyncSessionStore, KeySpace};
use crate::cookie::{CookieLayer, SharedGate};
use crate::handshake::WiringError;
use crate::types::{CookieVerified, Datagram, Transmit, Transmits};
use coaps_dtls::Zeroizing;
use coaps_dtls::gate::FirstRecord;
use coaps_dtls::gate::Verdict;
use coaps_dtls::{FetchedSession, Session, offered_sessions};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tower_layer::Layer;

/// Default [`ResumptionLayer::lookup_timeout`]: a look-up slower than this gives the client a
/// full handshake instead of stalling it (and its retransmissions) behind the store.
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_millis(500);

/// Most store keys looked up for one ClientHello: a hello may list many PSK identities, each
/// a look-up; beyond this the rest are ignored (they would get a full handshake anyway).
const MAX_KEYS_PER_HELLO: usize = 4;

/// Counters of a [`ResumptionLayer`] (shared by its clones and services).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResumptionStats {
    /// Proven ClientHellos that offered at least one session and were looked up.
    pub hellos_looked_up: u64,
    /// Sessions found, decoded and handed to the engine.
    pub sessions_fetched: u64,
    /// Offered keys the store did not have (unknown, expired, already taken).
    pub misses: u64,
    /// Stored entries refused: undecodable (truncated, forged, another format version),
    /// expired, or stored under another key than the one offered.
    pub entries_refused: u64,
    /// Look-ups and writes that failed (store unavailable, timeout): each look-up failure
    /// meant a full handshake.
    pub store_errors: u64,
    /// Issued sessions written to the store.
    pub sessions_stored: u64,
    /// ClientHellos refused because the stack is wired wrong (see the module docs, "Wiring").
    pub wiring_errors: u64,
    /// Sealed tickets whose 0-RTT use this node recorded first ([`KeySpace::ZeroRtt`]): their
    /// early data may be accepted.
    pub zero_rtt_recorded: u64,
    /// Sealed tickets offered with early data whose ID was recorded already (a replay, on this
    /// node or another): no early data.
    pub zero_rtt_replays: u64,
    /// Sealed tickets offered with early data within the start-up refusal
    /// ([`ResumptionLayer::startup_refusal`]): no early data.
    pub zero_rtt_refused_at_start: u64,
    /// Offered DTLS 1.3 PSK identities not looked up because they are configured external
    /// PSKs ([`ResumptionLayer::external_psks`]): the engine knows them, the store cannot.
    pub external_psks_skipped: u64,
}

/// Totals over several stacks (e.g. one per thread, see [`crate::shard`]).
impl std::ops::AddAssign for ResumptionStats {
    fn add_assign(&mut self, o: Self) {
        // Destructured without `..`: a new counter must be added here too.
        let ResumptionStats {
            hellos_looked_up,
            sessions_fetched,
            misses,
            entries_refused,
            store_errors,
            sessions_stored,
            wiring_errors,
            zero_rtt_recorded,
            zero_rtt_replays,
            zero_rtt_refused_at_start,
            external_psks_skipped,
        } = o;
        self.hellos_looked_up += hellos_looked_up;
        self.sessions_fetched += sessions_fetched;
        self.misses += misses;
        self.entries_refused += entries_refused;
        self.store_errors += store_errors;
        self.sessions_stored += sessions_stored;
        self.wiring_errors += wiring_errors;
        self.zero_rtt_recorded += zero_rtt_recorded;
        self.zero_rtt_replays += zero_rtt_replays;
        self.zero_rtt_refused_at_start += zero_rtt_refused_at_start;
        self.external_psks_skipped += external_psks_skipped;
    }
}

impl std::iter::Sum for ResumptionStats {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), |mut a, b| {
            a += b;
            a
        })
    }
}

#[derive(Default)]
struct Counters {
    hellos_looked_up: AtomicU64,
    sessions_fetched: AtomicU64,
    misses: AtomicU64,
    entries_refused: AtomicU64,
    store_errors: AtomicU64,
    sessions_stored: AtomicU64,
    wiring_errors: AtomicU64,
    zero_rtt_recorded: AtomicU64,
    zero_rtt_replays: AtomicU64,
    zero_rtt_refused_at_start: AtomicU64,
    external_psks_skipped: AtomicU64,
}

/// Where the proof of a ClientHello comes from.
enum Front {
    /// A cookie layer in front marks proven ClientHellos.
    Behind(Arc<SharedGate>),
    /// No cookie layer: every ClientHello is looked up.
    Unproven,
}

pub(crate) struct Shared {
    pub(crate) store: Arc<dyn AsyncSessionStore>,
    front: Front,
    sink_taken: AtomicBool,
    wiring_error_logged: AtomicBool,
    store_error_logged: AtomicBool,
    lookup_timeout: Duration,
    wall_clock: fn() -> SystemTime,
    /// Stateless mode: tickets sealed under these keys are opened by the engine, not fetched.
    ticket_keys: Option<coaps_dtls::TicketKeys>,
    /// The server's external PSKs: identities the engine resolves itself, never looked up.
    external_psks: Option<Arc<dyn coaps_dtls::PskStore>>,
    /// How long a record of a sealed ticket's 0-RTT use is kept (see [`ResumptionLayer::replay_window`]).
    replay_window: Duration,
    /// No sealed ticket carries 0-RTT until this long after `started` (see
    /// [`ResumptionLayer::startup_refusal`]).
    startup_refusal: Duration,
    started: Instant,
    /// Issued sessions whose store write has not finished yet: a client that reconnects at
    /// once (OpenSSL's `s_client -reconnect` does, within a round trip) finds them here.
    pending: std::sync::Mutex<std::collections::HashMap<Vec<u8>, Session>>,
    counters: Counters,
}

const FRONT_NOT_LAYERED: &str = "coaps-tower: the CookieLayer given to ResumptionLayer::behind(store, &cookie_layer) \
     wraps no service: put it in front, ServiceBuilder::new().layer(cookie_layer).layer(resumption_layer)\
     .layer(handshake_layer)";
const MARK_OF_ANOTHER_GATE: &str = "coaps-tower: a ClientHello marked by another CookieLayer than the one given to \
     ResumptionLayer::behind(store, &cookie_layer) reached the resumption layer: pass the CookieLayer that is in \
     front of it";
const UNMARKED_BEHIND: &str = "coaps-tower: a ClientHello without the mark of the CookieLayer given to \
     ResumptionLayer::behind(store, &cookie_layer) reached the resumption layer: that CookieLayer is not in front \
     of it; stack them as ServiceBuilder::new().layer(cookie_layer).layer(resumption_layer).layer(handshake_layer)";
const MARK_WITHOUT_COOKIE_LAYER: &str = "coaps-tower: a ClientHello marked by a CookieLayer reached a resumption \
     layer built with ResumptionLayer::without_cookie_layer: build it with ResumptionLayer::behind(store, \
     &cookie_layer) so only proven ClientHellos cost a look-up";
const NO_SINK: &str = "coaps-tower: no issued session would ever reach the resumption layer's store: pass \
     resumption_layer.session_sink() to HandshakeLayer::builder(..).on_session(..)";

/// Layer that fetches offered sessions from an [`AsyncSessionStore`] and stores issued ones;
/// see the [module docs](super).
///
/// Clones share the store, the wiring and the counters.
#[derive(Clone)]
pub struct ResumptionLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for ResumptionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResumptionLayer")
            .field("store", &self.shared.store)
            .field("behind_cookie_layer", &matches!(self.shared.front, Front::Behind(_)))
            .field("lookup_timeout", &self.shared.lookup_timeout)
            .finish_non_exhaustive()
    }
}

impl ResumptionLayer {
    /// A layer over `store` behind `cookies`: only ClientHellos that layer proved are looked
    /// up (see [the wiring checks](super#wiring)).
    pub fn behind(store: impl AsyncSessionStore, cookies: &CookieLayer) -> Self {
        Self::with_front(Arc::new(store), Front::Behind(cookies.shared_gate()))
    }

    /// A layer over `store` with no cookie layer in front (the handshake layer runs its own
    /// gate, or none): every ClientHello that offers a session is looked up, before any proof
    /// that its sender owns its address. Prefer [`ResumptionLayer::behind`].
    pub fn without_cookie_layer(store: impl AsyncSessionStore) -> Self {
        Self::with_front(Arc::new(store), Front::Unproven)
    }

    fn with_front(store: Arc<dyn AsyncSessionStore>, front: Front) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                front,
                sink_taken: AtomicBool::new(false),
                wiring_error_logged: AtomicBool::new(false),
                store_error_logged: AtomicBool::new(false),
                lookup_timeout: DEFAULT_LOOKUP_TIMEOUT,
                wall_clock: SystemTime::now,
                ticket_keys: None,
                external_psks: None,
                replay_window: DEFAULT_REPLAY_WINDOW,
                startup_refusal: DEFAULT_REPLAY_WINDOW,
                started: Instant::now(),
                pending: Default::default(),
                counters: Counters::default(),
            }),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared {
        Arc::get_mut(&mut self.shared)
            .expect("configure the ResumptionLayer before cloning it or taking its session_sink")
    }

    /// Longest wait for the store per ClientHello (default [`DEFAULT_LOOKUP_TIMEOUT`]);
    /// beyond it the client gets a full handshake. Call before cloning the layer or taking its
    /// [`session_sink`](Self::session_sink).
    pub fn lookup_timeout(mut self, timeout: Duration) -> Self {
        self.shared_mut().lookup_timeout = timeout;
        self
    }

    /// The wall clock that converts issue times of stored sessions (see
    /// [`coaps_dtls::Session::encode`]); give the engine's
    /// [`CommonConfig::wall_clock`](coaps_dtls::CommonConfig::wall_clock). Default
    /// `SystemTime::now`. Call before cloning the layer or taking its sink.
    pub fn wall_clock(mut self, wall_clock: fn() -> SystemTime) -> Self {
        self.shared_mut().wall_clock = wall_clock;
        self
    }

    /// Stateless tickets ([`TicketMode::Stateless`](coaps_dtls::TicketMode::Stateless)): the
    /// keys the engine seals with. An offered ticket that names one of them is the session
    /// itself, which the engine opens: the layer does not look it up. Call before cloning the
    /// layer or taking its sink.
    pub fn ticket_keys(mut self, keys: coaps_dtls::TicketKeys) -> Self {
        self.shared_mut().ticket_keys = Some(keys);
        self
    }

    /// The server's external PSKs ([`ServerConfig::psks`](coaps_dtls::ServerConfig::psks)):
    /// a DTLS 1.3 ClientHello that offers one of their identities (an external PSK handshake,
    /// or a resumption that offers the external PSK beside its ticket, RFC 8446 §4.2.11) costs
    /// no store look-up for it, as the store never holds it: without this every such
    /// handshake costs one miss. Counted in [`ResumptionStats::external_psks_skipped`]. Call
    /// before cloning the layer or taking its sink.
    pub fn external_psks(mut self, psks: Arc<dyn coaps_dtls::PskStore>) -> Self {
        self.shared_mut().external_psks = Some(psks);
        self
    }

    /// Sealed DTLS 1.3 tickets and 0-RTT: the freshness window of the server
    /// ([`EarlyDataConfig::freshness_window`](coaps_dtls::EarlyDataConfig::freshness_window), default
    /// [`DEFAULT_REPLAY_WINDOW`]). A sealed ticket's ID is recorded in the store
    /// ([`KeySpace::ZeroRtt`](super::KeySpace::ZeroRtt), [`AsyncSessionStore::put_if_absent`]: Redis `SET NX PX`, moka's
    /// per-key compute) for twice this window, so two nodes on one store accept its early data
    /// at most once: the engine refuses a ticket age further than the window from its own in
    /// either direction (RFC 8446 §8.3), so a replay after the record expired is refused
    /// anyway. Call before cloning the layer or taking its sink.
    pub fn replay_window(mut self, window: Duration) -> Self {
        self.shared_mut().replay_window = window;
        self
    }

    /// Sealed DTLS 1.3 tickets carry no 0-RTT for this long after the layer is made (default
    /// [`DEFAULT_REPLAY_WINDOW`]; give it the replay window): the records of the tickets
    /// accepted before a restart may be lost (moka lives in the process; a Redis without
    /// persistence, or restarted, forgets them), and a replay within its freshness window
    /// would then run twice (RFC 8446 §8.2). Stateful tickets need no such pause: a lost
    /// store lost the tickets too. Zero switches it off, for a store known to keep its records
    /// across the restart (a Redis with AOF `appendfsync always`). Call before cloning the
    /// layer or taking its sink.
    pub fn startup_refusal(mut self, window: Duration) -> Self {
        self.shared_mut().startup_refusal = window;
        self
    }

    /// Where the handshake layer sends the sessions it issues: pass it to
    /// [`HandshakeBuilder::on_session`](crate::handshake::HandshakeBuilder::on_session). Each
    /// session is encoded and written to the store on a spawned task (the sink runs on the
    /// datagram's task, so it must not wait), for its remaining lifetime.
    pub fn session_sink(&self) -> impl Fn(SocketAddr, Session) + Send + Sync + 'static {
        self.shared.sink_taken.store(true, Ordering::Release);
        let shared = self.shared.clone();
        move |peer, session| shared.write_back(peer, session)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn AsyncSessionStore> {
        &self.shared.store
    }

    /// The counters so far.
    pub fn stats(&self) -> ResumptionStats {
        self.shared.stats()
    }
}

impl<S> Layer<S> for ResumptionLayer {
    type Service = Resumption<S>;

    fn layer(&self, inner: S) -> Resumption<S> {
        if let Front::Behind(front) = &self.shared.front {
            // Resumptions from a ticket's address that may skip the cookie (RFC 9147 §5.1)
            // now come through undecided, for this layer to decide with the fetched ticket.
            front.set_sessions_behind();
        }
        Resumption::new(inner, self.shared.clone())
    }
}

/// Runs the store futures together and yields their results in their order (at most
/// `MAX_KEYS_PER_HELLO` of them: polling every pending one on each wake is cheap).
async fn join_all<T>(mut futures: Vec<super::StoreFuture<'_, T>>) -> Vec<Result<T, super::StoreError>> {
    let mut results: Vec<Option<Result<T, super::StoreError>>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(results.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => *slot = Some(r),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    results.into_iter().flatten().collect()
}

/// Default [`ResumptionLayer::replay_window`] and [`ResumptionLayer::startup_refusal`]: the
/// default ticket-age freshness window ([`coaps_dtls::EarlyDataConfig::freshness_window`]).
pub const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(10);

/// What to fetch for one proven ClientHello: each key, and whether to take it.
pub(crate) type Wanted = Vec<(Vec<u8>, bool)>;

/// What to do for one ClientHello.
pub(crate) struct Plan {
    /// Stored sessions to fetch.
    pub(crate) wanted: Wanted,
    /// The cookie layer left the cookie exemption to this layer (a cookie-less resumption,
    /// RFC 9147 §5.1): decide it with the fetched sessions before taking anything.
    pub(crate) decide: bool,
    /// The first PSK is a sealed ticket offered with early data: record its ID.
    pub(crate) sealed_early: Option<Vec<u8>>,
}

/// What the look-up of one ClientHello ends in.
pub(crate) enum Outcome {
    /// Hand these sessions to the engine with the datagram.
    Sessions(Vec<FetchedSession>),
    /// The gate's answer instead (a HelloRetryRequest: the exemption did not hold), or
    /// nothing (drop).
    Answer(crate::types::Transmits),
}

impl Shared {
    pub(crate) fn stats(&self) -> ResumptionStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ResumptionStats {
            hellos_looked_up: l(&c.hellos_looked_up),
            sessions_fetched: l(&c.sessions_fetched),
            misses: l(&c.misses),
            entries_refused: l(&c.entries_refused),
            store_errors: l(&c.store_errors),
            sessions_stored: l(&c.sessions_stored),
            wiring_errors: l(&c.wiring_errors),
            zero_rtt_recorded: l(&c.zero_rtt_recorded),
            zero_rtt_replays: l(&c.zero_rtt_replays),
            zero_rtt_refused_at_start: l(&c.zero_rtt_refused_at_start),
            external_psks_skipped: l(&c.external_psks_skipped),
        }
    }

    /// Checks the wiring for `d` and says what to fetch for it (nothing for everything but a
    /// proven ClientHello that offers sessions).
    pub(crate) fn plan(&self, d: &Datagram) -> Result<Option<Plan>, WiringError> {
        let (proven, decide) = match (&self.front, d.cookie) {
            _ if !self.sink_taken.load(Ordering::Acquire) => return Err(self.wiring_error(d, NO_SINK)),
            (Front::Behind(front), _) if !front.is_layered() => return Err(self.wiring_error(d, FRONT_NOT_LAYERED)),
            (Front::Behind(front), Some(CookieVerified { gate, .. })) if gate != front.id() => {
                return Err(self.wiring_error(d, MARK_OF_ANOTHER_GATE));
            }
            // No cookie round trip: a resumption the cookie layer left to this layer.
            (Front::Behind(_), Some(CookieVerified { rtt_sample, .. })) => (true, rtt_sample.is_none()),
            (Front::Behind(_), None) => match FirstRecord::parse(&d.payload) {
                FirstRecord::ClientHello(_) => return Err(self.wiring_error(d, UNMARKED_BEHIND)),
                FirstRecord::ClientHelloFragment | FirstRecord::Other => (false, false),
            },
            (Front::Unproven, Some(_)) => return Err(self.wiring_error(d, MARK_WITHOUT_COOKIE_LAYER)),
            (Front::Unproven, None) => (true, false),
        };
        if !proven {
            return Ok(None);
        }
        let Some(offered) = offered_sessions(&d.payload) else {
            return Ok(decide.then(|| Plan { wanted: Vec::new(), decide, sealed_early: None }));
        };
        // RFC 8446 §4.2.10: only the first identity may carry early data; taking it makes the
        // early data single use across every node sharing the store (§8.1).
        let first_ticket = offered.psk_identities().next();
        let take_first = offered.early_data();
        // RFC 5077 §3.4: beside a ticket the session ID is the client's own random choice (to
        // see whether the ticket was accepted), not one we issued; when the ticket is a
        // stateless one the engine opens, looking that ID up could only miss.
        let own_ticket = offered.session_ticket().is_some_and(|t| self.names_a_ticket_key(t));
        let client_id = offered.session_id().filter(|_| own_ticket);
        let mut wanted: Wanted = Vec::new();
        let mut sealed_early = None;
        for key in offered.keys().take(MAX_KEYS_PER_HELLO) {
            if key.is_empty() || wanted.iter().any(|(k, _)| k == key) {
                continue;
            }
            if client_id.is_some_and(|id| std::ptr::eq(id, key)) {
                continue;
            }
            let first = first_ticket.is_some_and(|f| std::ptr::eq(f, key));
            if self.is_external_psk(&offered, key) {
                self.counters.external_psks_skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if self.names_a_ticket_key(key) {
                if first && take_first {
                    sealed_early = Some(key.to_vec());
                }
                continue;
            }
            wanted.push((key.to_vec(), take_first && first));
        }
        Ok((decide || !wanted.is_empty() || sealed_early.is_some()).then_some(Plan { wanted, decide, sealed_early }))
    }

    /// Whether `key` is one of the hello's PSK identities (not its session ID or 1.2 ticket)
    /// and a configured external PSK.
    fn is_external_psk(&self, offered: &coaps_dtls::OfferedSessions<'_>, key: &[u8]) -> bool {
        let Some(psks) = &self.external_psks else { return false };
        offered.psk_identities().any(|i| std::ptr::eq(i, key)) && psks.key_for(key).is_some()
    }

    fn names_a_ticket_key(&self, ticket: &[u8]) -> bool {
        self.ticket_keys.as_ref().is_some_and(|k| k.names_a_key(ticket))
    }

    fn wiring_error(&self, d: &Datagram, message: &'static str) -> WiringError {
        self.counters.wiring_errors.fetch_add(1, Ordering::Relaxed);
        if self.wiring_error_logged.swap(true, Ordering::Relaxed) {
            tracing::debug!(peer = %d.peer, "{message}");
        } else {
            tracing::error!(peer = %d.peer, "{message}");
        }
        WiringError::new(message)
    }

    fn store_error(&self, what: &str, e: &dyn std::error::Error) {
        self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
        if self.store_error_logged.swap(true, Ordering::Relaxed) {
            tracing::debug!(error = %e, "{what}");
        } else {
            tracing::warn!(error = %e, "{what} (further store errors are logged at debug; see ResumptionStats)");
        }
    }

    /// Fetches and decodes the wanted sessions, decides a cookie exemption left to this layer
    /// and records a sealed ticket's 0-RTT use. Never fails: what cannot be fetched is left out
    /// (a full handshake, or a resumption without 0-RTT).
    pub(crate) async fn resolve(self: Arc<Self>, plan: Plan, peer: SocketAddr, hello: Option<Vec<u8>>) -> Outcome {
        let now = Instant::now();
        // A ticket is taken only once the cookie decision is made: a HelloRetryRequest must
        // not spend it. Where this layer decides, the first ticket is read first.
        let mut wanted = plan.wanted;
        let take_after = wanted.iter_mut().find(|(_, t)| *t).filter(|_| plan.decide).map(|(k, t)| {
            *t = false;
            k.clone()
        });
        let mut sessions = if wanted.is_empty() { Vec::new() } else { self.clone().fetch(wanted).await };
        if let (true, Some(hello), Front::Behind(gate)) = (plan.decide, hello.as_deref(), &self.front) {
            let mut out = [0u8; coaps_dtls::gate::MAX_ANSWER_LEN];
            match gate.check_with(now, peer, hello, &sessions, &mut out) {
                Verdict::Proven(_) | Verdict::NotClientHello | Verdict::Fragment => {}
                Verdict::HelloRetryRequest { len, .. }
                | Verdict::HelloVerifyRequest { len, .. }
                | Verdict::Alert { len, .. } => {
                    let answer = Transmit { destination: peer, payload: out[..len].to_vec() };
                    return Outcome::Answer(Transmits::one(answer));
                }
                Verdict::Drop => return Outcome::Answer(Transmits::new()),
            }
        }
        if let Some(key) = take_after {
            // The exemption holds: now take the 0-RTT ticket, atomically across the nodes. If a
            // copy took it first, the resumption goes on without early data.
            if let Some(i) = sessions.iter().position(|f| f.session.store_key() == &key[..])
                && let Ok(Ok(Some(bytes))) = tokio::time::timeout(self.lookup_timeout, self.store.take(&key)).await
                && let Ok(s) = Session::decode(&bytes, now, (self.wall_clock)())
                && s.store_key() == &key[..]
            {
                sessions[i] = FetchedSession::from_take(s);
            }
        }
        if let Some(ticket) = plan.sealed_early {
            sessions.extend(self.record_sealed(&ticket, now).await);
        }
        Outcome::Sessions(sessions)
    }

    /// A sealed ticket offered with early data: its session, as taken, when this node is the
    /// first to record its ID in the store within the replay window (RFC 8446 §8.1-§8.2).
    async fn record_sealed(&self, ticket: &[u8], now: Instant) -> Option<FetchedSession> {
        let keys = self.ticket_keys.as_ref()?;
        let session = keys.open(ticket, now, (self.wall_clock)()).filter(Session::is_dtls13_ticket)?;
        if now.saturating_duration_since(self.started) < self.startup_refusal {
            self.counters.zero_rtt_refused_at_start.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let mut mine = Zeroizing::new(vec![0u8; 16]);
        coaps_dtls::crypto::Rng::fill(&mut coaps_dtls::crypto::SeededRng::from_os(), &mut mine[..]);
        let ttl = self.replay_window.saturating_mul(2).max(Duration::from_millis(1));
        let put = self.store.put_if_absent(KeySpace::ZeroRtt, &session.id, mine.clone(), ttl);
        match tokio::time::timeout(self.lookup_timeout, put).await {
            Ok(Ok(stored)) if stored[..] == mine[..] => {
                self.counters.zero_rtt_recorded.fetch_add(1, Ordering::Relaxed);
                Some(FetchedSession::from_take(session))
            }
            Ok(Ok(_)) => {
                self.counters.zero_rtt_replays.fetch_add(1, Ordering::Relaxed);
                None
            }
            Ok(Err(e)) => {
                self.store_error("0-RTT record failed: no early data", &e);
                None
            }
            Err(_) => {
                self.store_error("0-RTT record timed out: no early data", &super::StoreError::Timeout);
                None
            }
        }
    }

    /// Fetches and decodes the wanted sessions. Never fails: what cannot be fetched is left
    /// out (a full handshake). The look-ups run concurrently, so a hello offering several
    /// keys waits for the slowest look-up, not for their sum, and all of them together are
    /// bounded by one [`ResumptionLayer::lookup_timeout`].
    pub(crate) async fn fetch(self: Arc<Self>, wanted: Wanted) -> Vec<FetchedSession> {
        self.counters.hellos_looked_up.fetch_add(1, Ordering::Relaxed);
        let lookups: Vec<_> =
            wanted.iter().map(|(key, take)| if *take { self.store.take(key) } else { self.store.get(key) }).collect();
        let results = match tokio::time::timeout(self.lookup_timeout, join_all(lookups)).await {
            Ok(results) => results,
            Err(_) => {
                self.store_error("session look-up timed out: full handshake", &super::StoreError::Timeout);
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(wanted.len());
        for ((key, take), r) in wanted.iter().zip(results) {
            let bytes = match r {
                Ok(Some(b)) => b,
                Ok(None) => {
                    // Not written yet (the write runs on a task): the issued session from
                    // memory. What the store holds always wins over this copy.
                    if !*take && let Some(s) = self.pending_session(key) {
                        self.counters.sessions_fetched.fetch_add(1, Ordering::Relaxed);
                        out.push(FetchedSession::from_get(s));
                    } else {
                        self.counters.misses.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                Err(e) => {
                    self.store_error("session look-up failed: full handshake", &e);
                    continue;
                }
            };
            let now = Instant::now();
            match Session::decode(&bytes, now, (self.wall_clock)()) {
                Ok(s) if s.store_key() == &key[..] && !s.is_expired(now) => {
                    self.counters.sessions_fetched.fetch_add(1, Ordering::Relaxed);
                    out.push(if *take { FetchedSession::from_take(s) } else { FetchedSession::from_get(s) });
                }
                Ok(_) => {
                    self.counters.entries_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("stored session refused: expired or stored under another key");
                }
                Err(e) => {
                    self.counters.entries_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "stored session refused");
                }
            }
        }
        out
    }

    /// An issued session still on its way to the store.
    fn pending_session(&self, key: &[u8]) -> Option<Session> {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.get(key).filter(|s| !s.is_expired(Instant::now())).cloned()
    }

    /// Writes an issued session to the store, on a spawned task.
    fn write_back(self: &Arc<Self>, peer: SocketAddr, session: Session) {
        let now = Instant::now();
        let ttl = session.ttl(now);
        if ttl.is_zero() {
            return;
        }
        let bytes = session.encode(now, (self.wall_clock)());
        let key = session.store_key().to_vec();
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), session);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
            self.store_error("issued session not stored", &super::StoreError::Unavailable("no tokio runtime".into()));
            return;
        };
        let shared = self.clone();
        rt.spawn(async move {
            let put = shared.store.put(&key, bytes, ttl);
            match tokio::time::timeout(shared.lookup_timeout.max(Duration::from_secs(1)), put).await {
                Ok(Ok(())) => {
                    shared.counters.sessions_stored.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) => shared.store_error("issued session not stored", &e),
                Err(_) => shared.store_error("issued session not stored", &super::StoreError::Timeout),
            }
            shared.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
            tracing::trace!(%peer, "issued session written back");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::StoreFuture;
    use super::*;
    use coaps_dtls::Zeroizing;
    use std::sync::atomic::AtomicUsize;

    /// Answers every look-up with a miss after `delay`, counting how many run at once.
    #[derive(Debug, Default)]
    struct SlowStore {
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
    }

    impl SlowStore {
        fn lookup(&self) -> StoreFuture<'_, Option<Zeroizing<Vec<u8>>>> {
            Box::pin(async move {
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.most_in_flight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok(None)
            })
        }
    }

    impl AsyncSessionStore for SlowStore {
        fn put<'a>(&'a self, _: &'a [u8], _: Zeroizing<Vec<u8>>, _: Duration) -> StoreFuture<'a, ()> {
            Box::pin(async { Ok(()) })
        }
        fn get<'a>(&'a self, _: &'a [u8]) -> StoreFuture<'a, Option<Zeroizing<Vec<u8>>>> {
            self.lookup()
        }
        fn take<'a>(&'a self, _: &'a [u8]) -> StoreFuture<'a, Option<Zeroizing<Vec<u8>>>> {
            self.lookup()
        }
    }

    /// Four keys, each a 300 ms look-up, under a 500 ms bound: one after another they would
    /// run out the bound (a full handshake counted as a store error); together they finish
    /// in 300 ms with four misses.
    #[tokio::test(start_paused = true)]
    async fn the_keys_of_one_hello_are_looked_up_together() {
        let store = Arc::new(SlowStore::default());
        let layer = ResumptionLayer::without_cookie_layer(store.clone()).lookup_timeout(Duration::from_millis(500));
        let wanted: Wanted = (0..MAX_KEYS_PER_HELLO as u8).map(|i| (vec![i; 32], i == 0)).collect();
        let start = tokio::time::Instant::now();
        let fetched = layer.shared.clone().fetch(wanted).await;
        assert!(fetched.is_empty());
        assert_eq!(start.elapsed(), Duration::from_millis(300));
        assert_eq!(store.most_in_flight.load(Ordering::SeqCst), MAX_KEYS_PER_HELLO);
        let stats = layer.stats();
        assert_eq!((stats.misses, stats.store_errors), (MAX_KEYS_PER_HELLO as u64, 0), "{stats:?}");
    }
}
