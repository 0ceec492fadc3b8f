//! Moving CoAP messages over DTLS. TEMPORARY: drives the raw engine directly until the
//! coaps-tower `serve` and `Client` land; then this module wires those in.

use crate::demo::Demo;
use coap_lite::Packet;
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{ClientConfig, Endpoint, Event, ServerConfig};
use coaps_tower::{BoxError, Client, CoapLayer, Secured};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tower_layer::Layer;
use tower_service::Service;

async fn flush(sock: &UdpSocket, ep: &mut Endpoint) {
    while let Some(t) = ep.poll_transmit() {
        if let Err(e) = sock.send_to(&t.payload, t.destination).await {
            tracing::debug!(to = %t.destination, error = %e, "send failed");
        }
    }
}

/// Waits for one datagram or the next engine timer.
async fn pump(sock: &UdpSocket, ep: &mut Endpoint, buf: &mut [u8]) -> std::io::Result<()> {
    let wait = ep.poll_timeout().map_or(Duration::from_secs(1), |t| t.saturating_duration_since(Instant::now()));
    match tokio::time::timeout(wait.max(Duration::from_millis(1)), sock.recv_from(buf)).await {
        Ok(Ok((n, from))) => ep.handle_datagram(Instant::now(), from, &buf[..n]),
        Ok(Err(e)) => return Err(e),
        Err(_) => {}
    }
    ep.handle_timeout(Instant::now());
    flush(sock, ep).await;
    Ok(())
}

/// Connects to `peer`, sends `request` over the new association and returns its response.
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

/// Serves `app` on `sock` until `shutdown` completes. TEMPORARY: the raw engine stands in
/// for the coaps-tower cookie and handshake layers and `serve` until they land; the CoAP layer
/// (dedup, piggybacked ACK) is the real one.
pub async fn serve(
    sock: UdpSocket,
    config: Arc<ServerConfig>,
    app: Demo,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BoxError> {
    let mut ep = Endpoint::server(config, SeededRng::from_os(), Instant::now());
    let mut coap = CoapLayer::new().layer(app);
    let mut buf = vec![0u8; 65536];
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            r = pump(&sock, &mut ep, &mut buf) => r?,
        }
        while let Some((peer, ev)) = ep.poll_event() {
            match ev {
                Event::Connected { identity, suite, .. } => tracing::info!(%peer, ?identity, ?suite, "connected"),
                Event::ApplicationData(payload) => {
                    let identity = ep.connection(&peer).map(|c| c.peer_identity().clone()).unwrap_or_default();
                    let secured = Secured { peer, identity, payload, early_data: false };
                    if let Some(bytes) = coap.call(secured).await? {
                        let _ = ep.send(peer, &bytes);
                    }
                }
                Event::Closed(r) => tracing::info!(%peer, reason = ?r, "closed"),
            }
        }
        flush(&sock, &mut ep).await;
        ep.expire_idle(Instant::now() - Duration::from_secs(300));
    }
    ep.close_all();
    flush(&sock, &mut ep).await;
    Ok(())
}
