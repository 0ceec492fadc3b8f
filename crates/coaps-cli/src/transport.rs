//! The CoAPS stacks from `coaps-tower` that the commands run.
//!
//! Server:
//!
//! ```text
//! UdpSocket ─▶ Server ─▶ CookieLayer ─▶ RetransmitLayer ─▶ ResumptionLayer ─▶ HandshakeLayer ─▶ CoapLayer ─▶ BlockLayer ─▶ ObserveLayer ─▶ Demo
//!                        (unless         cookie RTT as a    sessions: moka,     association       dedup,        RFC 7959      RFC 7641
//!                        --no-cookie)    sample (--link)    or Redis (--redis)  table, timers     piggybacked   Block1/Block2 registration
//! ```
//!
//! Notifications of observed resources are sent by the [`Observers`] driver through the
//! handshake layer's [`Associations`](coaps_tower::Associations); `/clock` changes every second.
//!
//! `--link` sets the retransmission policy of every association (per-peer RTT estimates,
//! [`coaps_dtls::link`]) and the deduplication lifetime ([`CoapConfig::for_link`]).
//!
//! The cookie layer is version-aware ([`CookieLayer::for_server`]): a DTLS 1.2 ClientHello gets
//! a HelloVerifyRequest, a DTLS 1.3 one a stateless HelloRetryRequest, and the handshake layer
//! shares its DTLS 1.3 cookie secrets ([`HandshakeBuilder::behind`]) to open the cookie of the
//! second ClientHello.
//!
//! The resumption layer looks up the sessions a proven ClientHello offers in the store and
//! writes the sessions the handshake layer issues back to it.
//!
//! Client: one [`Client`] association per command.

use coap_lite::Packet;
use coaps_dtls::{ClientConfig, LinkPolicyFactory, ServerConfig};
use coaps_tower::block::client::BlockError;
use coaps_tower::block::{BlockConfig, BlockLayer};
use coaps_tower::handshake::HandshakeBuilder;
use coaps_tower::observe::{ObserveConfig, ObserveLayer, Observers};
use coaps_tower::resumption::{AsyncSessionStore, ResumptionLayer};
use coaps_tower::shard::{Shard, ShardedServer};
use coaps_tower::transport::Server;
use coaps_tower::{
    BoxError, Client, ClientOptions, CoapConfig, CoapLayer, CookieLayer, HandshakeLayer, RetransmitLayer,
};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tower::ServiceBuilder;
use tower_service::Service;

/// Connects to `peer` (resuming from `options`), sends `request` over the new association and
/// returns its response; the handshake fails with `HandshakeTimeout` after `handshake_limit`,
/// if given. `options.link` sizes the DTLS and CoAP retransmission timers. With `verbose`, says
/// on stderr what the handshake established, including one line `handshake: full (DTLS 1.2)` /
/// `handshake: resumed (DTLS 1.3)`, and, at the end, the RTT estimate and the retransmissions.
/// With `early`, `request` goes as 0-RTT data ([`Client::connect_early`]) and `verbose` says
/// `early data: accepted` or `early data: rejected`; a 4.01 + Echo is repeated once with the
/// Echo value.
#[expect(clippy::too_many_arguments, reason = "one call site per mode in client.rs; each argument is a CLI flag")]
pub async fn exchange(
    peer: SocketAddr,
    config: Arc<ClientConfig>,
    server_name: &str,
    request: Packet,
    verbose: u8,
    options: ClientOptions,
    handshake_limit: Option<Duration>,
    early: bool,
    plan: &crate::transfer::Plan,
) -> Result<Packet, BlockError> {
    let profile = options.link.as_ref().map(LinkPolicyFactory::profile);
    let connect = async {
        if early {
            let (client, response) = Client::connect_early(peer, config, server_name, options, request.clone()).await?;
            Ok::<_, coaps_tower::ClientError>((client, Some(response)))
        } else {
            Ok((Client::connect_with(peer, config, server_name, options).await?, None))
        }
    };
    let (client, early_response) = match handshake_limit {
        None => connect.await?,
        Some(limit) => tokio::time::timeout(limit, connect).await.map_err(|_| {
            coaps_tower::ClientError::Handshake(coaps_dtls::CloseReason::Error(coaps_dtls::Error::HandshakeTimeout))
        })??,
    };
    if verbose >= 7 {
        eprintln!("> {}", describe_message(&request));
    }
    if early && verbose > 0 {
        let accepted = client.info().early_data_accepted;
        eprintln!("early data: {}", if accepted { "accepted" } else { "rejected" });
    }
    if verbose > 0 {
        let info = client.info();
        let version = if info.version == coaps_dtls::ProtocolVersion::DTLS1_3 { "DTLS 1.3" } else { "DTLS 1.2" };
        eprintln!("handshake: {} ({version})", if info.resumed { "resumed" } else { "full" });
        // In PSK mode the identity is ours: the server proved it knows the key, nothing more.
        let who = match &info.identity {
            coaps_dtls::PeerIdentity::Psk(_) => format!("authenticated with our {}", info.identity),
            coaps_dtls::PeerIdentity::Anonymous => "server not authenticated".to_owned(),
            other => format!("server {other}"),
        };
        eprintln!(
            "connected to {}: {version}, {:?}, {} handshake, {who}",
            coaps_tower::DisplayAddr(peer),
            info.suite,
            if info.resumed { "resumed" } else { "full" },
        );
    }
    let response = match early_response {
        // A 4.01 + Echo (the server's 0-RTT policy `reject`, RFC 9175 §2.4): once more with
        // the Echo value, now that the handshake is complete.
        Some(r) => match r.await {
            Ok(resp) => client.retry_with_echo(&request, resp).await.map_err(BlockError::from),
            Err(e) => Err(e.into()),
        },
        // Block-wise (RFC 7959) as needed, or an observation (RFC 7641) with -s.
        None => crate::transfer::send(&client, request, plan).await,
    };
    if let (true, Ok(r)) = (verbose >= 7, &response) {
        eprintln!("< {}", describe_message(r));
    }
    client.close().await;
    if let (true, Some(profile)) = (verbose > 0, profile) {
        let s = client.stats();
        let rtt = match s.rtt {
            Some(e) => format!(
                "SRTT {} ms, RTTVAR {} ms ({} sample{})",
                e.srtt().as_millis(),
                e.rttvar().as_millis(),
                e.samples(),
                if e.samples() == 1 { "" } else { "s" }
            ),
            None => "not measured".to_owned(),
        };
        eprintln!(
            "link {profile}: RTT estimate {rtt}; ACK_TIMEOUT {} ms; retransmissions: DTLS {}, CoAP {}",
            s.ack_timeout.as_millis(),
            s.dtls_retransmissions,
            s.coap_retransmissions
        );
    }
    response
}

/// One line for `-v 7`: type, code, Message ID, token and each option with its value (text
/// when it is printable, else hex), then the payload size.
pub fn describe_message(p: &Packet) -> String {
    let mut s = format!(
        "{:?} {} mid={} token={}",
        p.header.get_type(),
        crate::client::code_text(p.header.code),
        p.header.message_id,
        hex(p.get_token())
    );
    for (number, values) in p.options() {
        for v in values {
            let shown = match std::str::from_utf8(v) {
                Ok(t) if !t.is_empty() && t.chars().all(|c| !c.is_control()) => format!("{t:?}"),
                _ => format!("0x{}", hex(v)),
            };
            s.push_str(&format!(" {:?}={shown}", coap_lite::CoapOption::from(*number)));
        }
    }
    s.push_str(&format!(" payload={} bytes", p.payload.len()));
    s
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The link profiles a server sizes its timers from: `default` for every client, except for
/// clients inside one of `prefixes` (the first match wins).
#[derive(Clone, Debug)]
pub struct Links {
    /// The profile of clients no prefix names.
    pub default: coaps_dtls::LinkProfile,
    /// Per-prefix profiles, in the order given (`--link-prefix`).
    pub prefixes: Vec<(coaps_dtls::link::IpPrefix, coaps_dtls::LinkProfile)>,
}

/// What a server stack is built from besides the application.
#[derive(Clone)]
pub struct StackConfig {
    /// The DTLS server configuration (`cookie = None` leaves the cookie layer out; set
    /// `session_store` to `None`: resumable sessions live in `sessions`).
    pub config: Arc<ServerConfig>,
    /// The link profiles sizing the retransmission timers and the deduplication lifetime.
    pub links: Links,
    /// The resumption layer's store.
    pub sessions: Arc<dyn AsyncSessionStore>,
    /// Store look-ups per second for cookie-less PSK ClientHellos
    /// ([`CookieLayer::psk_lookup_budget`]), shared out among the threads.
    pub psk_lookups_per_second: u32,
    /// Block-wise transfer limits (`--max-block-body`, `--max-block-buffer`).
    pub block: BlockConfig,
    /// Observe limits (`--max-observers`, `--max-observers-per-peer`); with several threads
    /// each takes its share of `max_observers`.
    pub observe: ObserveConfig,
}

impl std::fmt::Debug for StackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackConfig").field("links", &self.links).finish_non_exhaustive()
    }
}

/// The handles whose `stats()` the metrics exporter and the shutdown summary read: one per
/// stack (one per thread with `--threads`).
#[derive(Clone)]
pub struct StackStats {
    /// The association table.
    pub associations: coaps_tower::Associations,
    /// The cookie layer, unless `--no-cookie` (then the handshake layer's own gate counts).
    pub cookies: Option<CookieLayer>,
    /// The resumption layer.
    pub resumption: ResumptionLayer,
}

impl std::fmt::Debug for StackStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackStats").field("associations", &self.associations).finish_non_exhaustive()
    }
}

impl StackStats {
    /// Copies the counters of every stack in `all`, summed, into the `metrics` recorder
    /// (absolute values: the layers keep them, the recorder only shows them).
    pub fn publish(all: &[StackStats]) {
        use metrics::{counter, gauge};
        let h: coaps_tower::HandshakeStats = all.iter().map(|s| s.associations.stats()).sum();
        let c: coaps_tower::CookieStats = all
            .iter()
            .filter_map(|s| s.cookies.as_ref().map(CookieLayer::stats).or(s.associations.stats().cookie))
            .sum();
        let r: coaps_tower::ResumptionStats = all.iter().map(|s| s.resumption.stats()).sum();
        let associations: usize = all.iter().map(|s| s.associations.count()).sum();
        let half_open: usize = all.iter().map(|s| s.associations.half_open_count()).sum();
        let e = &h.endpoint;
        gauge!("coaps_associations").set(associations as f64);
        gauge!("coaps_half_open").set(half_open as f64);
        counter!("coaps_retransmissions_total", "version" => "1.2").absolute(e.retransmissions_dtls12);
        counter!("coaps_retransmissions_total", "version" => "1.3").absolute(e.retransmissions_dtls13);
        counter!("coaps_cookies_sent_total", "kind" => "hello_verify_request").absolute(c.hello_verify_requests);
        counter!("coaps_hello_retry_requests_sent_total").absolute(c.hello_retry_requests);
        counter!("coaps_cookies_rejected_total").absolute(c.cookies_rejected);
        counter!("coaps_dropped_total", "reason" => "unusable_client_hello").absolute(c.dropped);
        counter!("coaps_dropped_total", "reason" => "unknown_peer").absolute(e.dropped_unknown_peer);
        counter!("coaps_dropped_total", "reason" => "outbox_full").absolute(h.outbox_dropped);
        counter!("coaps_dropped_total", "reason" => "response_undeliverable").absolute(h.responses_dropped);
        counter!("coaps_associations_created_total").absolute(e.connections_created);
        counter!("coaps_associations_expired_total").absolute(h.expired_idle);
        counter!("coaps_resumption_lookups_total", "result" => "hit").absolute(r.sessions_fetched);
        counter!("coaps_resumption_lookups_total", "result" => "miss").absolute(r.misses);
        counter!("coaps_sessions_stored_total").absolute(r.sessions_stored);
        counter!("coaps_early_data_refused_total", "reason" => "replay").absolute(r.zero_rtt_replays);
        counter!("coaps_early_data_refused_total", "reason" => "startup_window").absolute(r.zero_rtt_refused_at_start);
        counter!("coaps_psk_lookups_over_budget_total").absolute(c.psk_lookups_over_budget);
        counter!("coaps_address_changes_total").absolute(e.address_changes);
        counter!("coaps_path_checks_total", "result" => "validated").absolute(e.paths_validated);
        counter!("coaps_path_checks_total", "result" => "failed").absolute(e.path_checks_failed);
    }
}

/// Serves `app` on `sock` behind the full CoAPS stack until `shutdown` completes, then sends
/// close_notify to every peer.
pub async fn serve<A>(
    sock: UdpSocket,
    stack_config: StackConfig,
    app: A,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BoxError>
where
    A: Service<coaps_tower::CoapRequest, Response = Packet> + Clone + Send + 'static,
    A::Error: Into<BoxError> + Send,
    A::Future: Send + 'static,
{
    serve_observed(sock, stack_config, app, shutdown, |_| {}).await
}

/// [`serve`], handing the stack's [`StackStats`] to `observe` before serving.
pub async fn serve_observed<A>(
    sock: UdpSocket,
    stack_config: StackConfig,
    app: A,
    shutdown: impl Future<Output = ()>,
    observe: impl FnOnce(StackStats),
) -> Result<(), BoxError>
where
    A: Service<coaps_tower::CoapRequest, Response = Packet> + Clone + Send + 'static,
    A::Error: Into<BoxError> + Send,
    A::Future: Send + 'static,
{
    let StackConfig { config, links, sessions, psk_lookups_per_second, block, observe: observe_config } = stack_config;
    let (service, stats) =
        stack(Arc::unwrap_or_clone(config), &links, app, sessions, psk_lookups_per_second, (&block, &observe_config));
    let associations = stats.associations.clone();
    observe(stats);
    Server::new(sock).out_of_band(associations).serve(service, shutdown).await
}

/// [`serve_observed`] on `threads` threads ([`ShardedServer`]): each thread runs its own
/// stack (its own association table, timers, cookie and retransmit layers, at most
/// `config.max_connections / threads` associations), with datagrams routed by peer address;
/// `sessions` and the ticket keys are shared, so a client resumes whichever thread it lands
/// on. `observe` gets each thread's [`StackStats`] as its stack is built.
pub async fn serve_sharded<A>(
    sock: std::net::UdpSocket,
    threads: usize,
    stack_config: StackConfig,
    app: A,
    shutdown: impl Future<Output = ()>,
    observe: impl Fn(StackStats) + Send + Sync + 'static,
) -> Result<(), BoxError>
where
    A: Service<coaps_tower::CoapRequest, Response = Packet> + Clone + Send + Sync + 'static,
    A::Error: Into<BoxError> + Send,
    A::Future: Send + 'static,
{
    let threads = threads.max(1);
    let StackConfig { config, links, sessions, psk_lookups_per_second, block, observe: mut observe_config } =
        stack_config;
    let mut config = Arc::unwrap_or_clone(config);
    config.max_connections = config.max_connections.div_ceil(threads);
    observe_config.max_observers = observe_config.max_observers.div_ceil(threads);
    let psk_lookups = psk_lookups_per_second.div_ceil(u32::try_from(threads).unwrap_or(u32::MAX));
    let stats = ShardedServer::new(sock, threads)
        .serve(
            move |_shard| {
                let limits = (&block, &observe_config);
                let (service, stats) =
                    stack(config.clone(), &links, app.clone(), sessions.clone(), psk_lookups, limits);
                let associations = stats.associations.clone();
                observe(stats);
                Shard::new(service).out_of_band(associations)
            },
            shutdown,
        )
        .await?;
    tracing::info!(routed = ?stats.routed, dropped = stats.dropped, "sharded server stopped");
    Ok(())
}

/// The server stack of [`serve`] for one socket loop (or one shard), and its handles.
fn stack<A>(
    mut config: ServerConfig,
    links: &Links,
    app: A,
    sessions: Arc<dyn AsyncSessionStore>,
    psk_lookups_per_second: u32,
    (block, observe): (&BlockConfig, &ObserveConfig),
) -> (
    impl Service<coaps_tower::Datagram, Response = coaps_tower::Transmits, Error: Into<BoxError>, Future: Send + 'static>
    + use<A>,
    StackStats,
)
where
    A: Service<coaps_tower::CoapRequest, Response = Packet> + Clone + Send + 'static,
    A::Error: Into<BoxError> + Send,
    A::Future: Send + 'static,
{
    // DTLS 1.3 cookies outlive the longest handshake budget of the policies installed below
    // (`cookie13_config` asks the policy factory); DTLS 1.2 cookies keep their own lifetime,
    // since a 1.2 client whose late second ClientHello carries an expired cookie takes a
    // fresh HelloVerifyRequest (RFC 6347 §4.2.1).
    let policies = links
        .prefixes
        .iter()
        .fold(links.default.policy(), |factory, &(prefix, profile)| factory.with_prefix(prefix, profile));
    // Behind a cookie layer, the retransmit layer takes the cookie round trip as each peer's
    // first sample; with the endpoint's own gate, the engine reports it to the policy itself.
    let retransmit = config.cookie.is_some().then(|| RetransmitLayer::new(policies.clone()));
    match &retransmit {
        Some(r) => r.install(&mut config),
        None => policies.install(&mut config.common),
    }
    // Late duplicates from the slowest link's clients must still be recognised.
    let dedup_link = links
        .prefixes
        .iter()
        .map(|&(_, p)| p)
        .chain([links.default])
        .max_by_key(|p| p.params().max_ack_timeout)
        .unwrap_or(links.default);
    let config = Arc::new(config);
    let cookies =
        config.cookie.is_some().then(|| CookieLayer::for_server(&config).psk_lookup_budget(psk_lookups_per_second));
    let mut resumption = match &cookies {
        Some(c) => ResumptionLayer::behind(sessions, c),
        None => ResumptionLayer::without_cookie_layer(sessions),
    };
    if let Some(keys) = config.tickets.keys() {
        resumption = resumption.ticket_keys(keys.clone());
    }
    if let Some(psks) = &config.psks {
        resumption = resumption.external_psks(psks.clone());
    }
    if let Some(early) = &config.early_data {
        // Sealed tickets' 0-RTT records, and the pause after start, follow the freshness window.
        resumption = resumption.replay_window(early.freshness_window).startup_refusal(early.freshness_window);
    }
    let builder: HandshakeBuilder = HandshakeLayer::builder(config).on_session(resumption.session_sink());
    let handshake = match &cookies {
        // The cookie layer in front proves every peer; the handshake layer runs no second gate
        // and opens the layer's DTLS 1.3 cookies with the shared secrets.
        Some(c) => builder.behind(c).build(),
        None => builder.own_gate().build(),
    };
    let associations = handshake.associations();
    let (stats_cookies, stats_resumption) = (cookies.clone(), resumption.clone());
    // Observe (RFC 7641): notifications go out through the association; a send that fails
    // (the association is gone) removes the observer.
    let sink = associations.clone();
    let observers = Observers::new(observe.clone(), move |peer, bytes: &[u8]| sink.send(peer, bytes).is_ok());
    tokio::spawn(observers.clone().drive(app.clone()));
    tokio::spawn(crate::demo::tick_clock(observers.clone()));
    let service = ServiceBuilder::new()
        .option_layer(cookies)
        .option_layer(retransmit)
        .layer(resumption)
        .layer(handshake)
        .layer(CoapLayer::with_config(CoapConfig::for_link(dedup_link)).on_empty(observers.empty_hook()))
        .layer(BlockLayer::with_config(block.clone()))
        .layer(ObserveLayer::new(observers))
        .service(app);
    (service, StackStats { associations, cookies: stats_cookies, resumption: stats_resumption })
}
