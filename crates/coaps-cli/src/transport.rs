//! The CoAPS stacks from `coaps-tower` that the commands run.
//!
//! Server:
//!
//! ```text
//! UdpSocket ─▶ Server ─▶ CookieLayer ─▶ HandshakeLayer ─▶ CoapLayer ─▶ Demo
//!                        (unless         association       dedup,
//!                        --no-cookie)    table, timers     piggybacked ACK
//! ```
//!
//! Client: one [`Client`] association per command.

use coap_lite::Packet;
use coaps_dtls::{ClientConfig, ServerConfig};
use coaps_tower::transport::Server;
use coaps_tower::{BoxError, Client, CoapLayer, CookieLayer, HandshakeLayer};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tower::ServiceBuilder;
use tower_service::Service;

/// Connects to `peer`, sends `request` over the new association and returns its response.
/// With `verbose`, says on stderr what the handshake established.
pub async fn exchange(
    peer: SocketAddr,
    config: Arc<ClientConfig>,
    server_name: &str,
    request: Packet,
    verbose: bool,
) -> Result<Packet, coaps_tower::ClientError> {
    let client = Client::connect(peer, config, server_name).await?;
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
    response
}

/// Serves `app` on `sock` behind the full CoAPS stack until `shutdown` completes, then sends
/// close_notify to every peer. `config.cookie = None` leaves the cookie layer out.
pub async fn serve<A>(
    sock: UdpSocket,
    config: Arc<ServerConfig>,
    app: A,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BoxError>
where
    A: Service<coaps_tower::CoapRequest, Response = Packet> + Clone + Send + 'static,
    A::Error: Into<BoxError> + Send,
    A::Future: Send + 'static,
{
    let cookie = config.cookie;
    let mut builder = HandshakeLayer::builder(config);
    if cookie.is_some() {
        // The cookie layer in front proves every peer; the handshake layer must not run a
        // second gate (its cookies would not verify against the layer's secret).
        builder = builder.behind_cookie_layer();
    }
    let handshake = builder.build();
    let associations = handshake.associations();
    let service = ServiceBuilder::new()
        .option_layer(cookie.map(CookieLayer::new))
        .layer(handshake)
        .layer(CoapLayer::new())
        .service(app);
    Server::new(sock).out_of_band(associations).serve(service, shutdown).await
}
