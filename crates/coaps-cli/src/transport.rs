//! The CoAPS stacks from `coaps-tower` that the commands run.
//!
//! Server:
//!
//! ```text
//! UdpSocket ─▶ Server ─▶ CookieLayer ─▶ RetransmitLayer ─▶ HandshakeLayer ─▶ CoapLayer ─▶ Demo
//!                        (unless         cookie RTT as a    association       dedup,
//!                        --no-cookie)    sample (--link)    table, timers     piggybacked ACK
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
//! Client: one [`Client`] association per command.

use coap_lite::Packet;
use coaps_dtls::{ClientConfig, LinkPolicyFactory, ServerConfig};
use coaps_tower::handshake::HandshakeBuilder;
use coaps_tower::transport::Server;
use coaps_tower::{
    BoxError, Client, ClientOptions, CoapConfig, CoapLayer, CookieLayer, HandshakeLayer, RetransmitLayer,
};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tower::ServiceBuilder;
use tower_service::Service;

/// Connects to `peer`, sends `request` over the new association and returns its response.
/// With `verbose`, says on stderr what the handshake established and, at the end, the RTT
/// estimate and the retransmissions. `link` sizes the DTLS and CoAP retransmission timers.
pub async fn exchange(
    peer: SocketAddr,
    config: Arc<ClientConfig>,
    server_name: &str,
    request: Packet,
    verbose: bool,
    link: LinkPolicyFactory,
) -> Result<Packet, coaps_tower::ClientError> {
    let profile = link.profile();
    let options = ClientOptions { link: Some(link), ..ClientOptions::default() };
    let client = Client::connect_with(peer, config, server_name, options).await?;
    if verbose {
        let info = client.info();
        eprintln!(
            "connected to {peer}: {:?}, server identity {:?}{}",
            info.suite,
            info.identity,
            if info.resumed { ", resumed" } else { "" }
        );
    }
    let response = client.send(request).await;
    client.close().await;
    if verbose {
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

/// Serves `app` on `sock` behind the full CoAPS stack until `shutdown` completes, then sends
/// close_notify to every peer. `config.cookie = None` leaves the cookie layer out. `link` sizes
/// the retransmission timers and the deduplication lifetime.
pub async fn serve<A>(
    sock: UdpSocket,
    config: Arc<ServerConfig>,
    link: coaps_dtls::LinkProfile,
    app: A,
    shutdown: impl Future<Output = ()>,
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
    let builder: HandshakeBuilder = HandshakeLayer::builder(config);
    let handshake = match &cookies {
        // The cookie layer in front proves every peer; the handshake layer runs no second gate
        // and opens the layer's DTLS 1.3 cookies with the shared secrets.
        Some(c) => builder.behind(c).build(),
        None => builder.own_gate().build(),
    };
    let associations = handshake.associations();
    let service = ServiceBuilder::new()
        .option_layer(cookies)
        .option_layer(retransmit)
        .layer(handshake)
        .layer(CoapLayer::with_config(CoapConfig::for_link(link)))
        .service(app);
    Server::new(sock).out_of_band(associations).serve(service, shutdown).await
}
