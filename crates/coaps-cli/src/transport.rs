//! The CoAPS stacks from `coaps-tower` that the commands run.
//!
//! Server:
//!
//! ```text
//! UdpSocket ─▶ Server ─▶ CookieLayer ─▶ RetransmitLayer ─▶ ResumptionLayer ─▶ HandshakeLayer ─▶ CoapLayer ─▶ Demo
//!                        (unless         cookie RTT as a    sessions: moka,     association       dedup,
//!                        --no-cookie)    sample (--link)    or Redis (--redis)  table, timers     piggybacked ACK
//! ```
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
use coaps_tower::handshake::HandshakeBuilder;
use coaps_tower::resumption::{AsyncSessionStore, ResumptionLayer};
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
) -> Result<Packet, coaps_tower::ClientError> {
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
            Ok(resp) => client.retry_with_echo(&request, resp).await,
            Err(e) => Err(e),
        },
        None => client.send_echo_aware(request).await,
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

/// Serves `app` on `sock` behind the full CoAPS stack until `shutdown` completes, then sends
/// close_notify to every peer. `config.cookie = None` leaves the cookie layer out. `link` sizes
/// the retransmission timers and the deduplication lifetime. Resumable sessions live in
/// `sessions` (set `config.session_store` to `None`).
pub async fn serve<A>(
    sock: UdpSocket,
    config: Arc<ServerConfig>,
    link: coaps_dtls::LinkProfile,
    app: A,
    shutdown: impl Future<Output = ()>,
    sessions: Arc<dyn AsyncSessionStore>,
) -> Result<(), BoxError>
where
    A: Service<coaps_tower::CoapRequest, Response = Packet> + Clone + Send + 'static,
    A::Error: Into<BoxError> + Send,
    A::Future: Send + 'static,
{
    serve_observed(sock, config, link, app, shutdown, sessions, |_| {}).await
}

/// The handles whose `stats()` the metrics exporter and the shutdown summary read.
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
    /// Copies the layers' own counters into the `metrics` recorder (absolute values: the
    /// layers keep them, the recorder only shows them).
    pub fn publish(&self) {
        use metrics::{counter, gauge};
        let h = self.associations.stats();
        gauge!("coaps_associations").set(self.associations.count() as f64);
        let cookie = self.cookies.as_ref().map(CookieLayer::stats).or(h.cookie);
        if let Some(c) = cookie {
            counter!("coaps_cookies_sent_total", "kind" => "hello_verify_request").absolute(c.hello_verify_requests);
            counter!("coaps_hello_retry_requests_sent_total").absolute(c.hello_retry_requests);
            counter!("coaps_cookies_rejected_total").absolute(c.cookies_rejected);
            counter!("coaps_dropped_total", "reason" => "unusable_client_hello").absolute(c.dropped);
        }
        counter!("coaps_dropped_total", "reason" => "unknown_peer").absolute(h.endpoint.dropped_unknown_peer);
        counter!("coaps_dropped_total", "reason" => "outbox_full").absolute(h.outbox_dropped);
        counter!("coaps_dropped_total", "reason" => "response_undeliverable").absolute(h.responses_dropped);
        counter!("coaps_associations_created_total").absolute(h.endpoint.connections_created);
        counter!("coaps_associations_expired_total").absolute(h.expired_idle);
        let r = self.resumption.stats();
        counter!("coaps_resumption_lookups_total", "result" => "hit").absolute(r.sessions_fetched);
        counter!("coaps_resumption_lookups_total", "result" => "miss").absolute(r.misses);
        counter!("coaps_sessions_stored_total").absolute(r.sessions_stored);
    }
}

/// [`serve`], handing the stack's [`StackStats`] to `observe` before serving.
pub async fn serve_observed<A>(
    sock: UdpSocket,
    config: Arc<ServerConfig>,
    link: coaps_dtls::LinkProfile,
    app: A,
    shutdown: impl Future<Output = ()>,
    sessions: Arc<dyn AsyncSessionStore>,
    observe: impl FnOnce(StackStats),
) -> Result<(), BoxError>
where
    A: Service<coaps_tower::CoapRequest, Response = Packet> + Clone + Send + 'static,
    A::Error: Into<BoxError> + Send,
    A::Future: Send + 'static,
{
    let mut config = Arc::unwrap_or_clone(config);
    // Cookies must outlive the clients' retransmissions of their second ClientHello.
    if let Some(c) = config.cookie.as_mut() {
        let lifetime = link.cookie_lifetime();
        c.lifetime = c.lifetime.max(lifetime);
        c.rotate_every = c.rotate_every.max(lifetime);
    }
    // Behind a cookie layer, the retransmit layer takes the cookie round trip as each peer's
    // first sample; with the endpoint's own gate, the engine reports it to the policy itself.
    let retransmit = config.cookie.is_some().then(|| RetransmitLayer::new(link.policy()));
    match &retransmit {
        Some(r) => r.install(&mut config),
        None => link.policy().install(&mut config.common),
    }
    let config = Arc::new(config);
    let cookies = config.cookie.is_some().then(|| CookieLayer::for_server(&config));
    let mut resumption = match &cookies {
        Some(c) => ResumptionLayer::behind(sessions, c),
        None => ResumptionLayer::without_cookie_layer(sessions),
    };
    if let Some(keys) = config.tickets.keys() {
        resumption = resumption.ticket_keys(keys.clone());
    }
    let builder: HandshakeBuilder = HandshakeLayer::builder(config).on_session(resumption.session_sink());
    let handshake = match &cookies {
        // The cookie layer in front proves every peer; the handshake layer runs no second gate
        // and opens the layer's DTLS 1.3 cookies with the shared secrets.
        Some(c) => builder.behind(c).build(),
        None => builder.own_gate().build(),
    };
    let associations = handshake.associations();
    observe(StackStats {
        associations: associations.clone(),
        cookies: cookies.clone(),
        resumption: resumption.clone(),
    });
    let service = ServiceBuilder::new()
        .option_layer(cookies)
        .option_layer(retransmit)
        .layer(resumption)
        .layer(handshake)
        .layer(CoapLayer::with_config(CoapConfig::for_link(link)))
        .service(app);
    Server::new(sock).out_of_band(associations).serve(service, shutdown).await
}
