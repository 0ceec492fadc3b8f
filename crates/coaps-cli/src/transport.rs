//! Moving CoAP messages over DTLS. TEMPORARY: drives the raw engine directly until the
//! coaps-tower `serve` and `Client` land; then this module wires those in.

use crate::demo::Demo;
use coap_lite::{MessageClass, MessageType, Packet};
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{ClientConfig, CloseReason, Endpoint, Event, ServerConfig};
use coaps_tower::{BoxError, CoapRequest};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
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

fn close_error(r: CloseReason) -> BoxError {
    match r {
        CloseReason::Error(e) => Box::new(e),
        CloseReason::PeerClosed => "the server closed the connection".into(),
        CloseReason::Local => "connection closed".into(),
    }
}

/// Sends `request` to `peer` over a fresh association and waits for its response.
pub async fn exchange(
    peer: SocketAddr,
    config: Arc<ClientConfig>,
    server_name: &str,
    request: Packet,
    verbose: bool,
) -> Result<Packet, BoxError> {
    let bind: SocketAddr = if peer.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse()?;
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(peer).await?;
    let mut ep = Endpoint::client(SeededRng::from_os());
    ep.connect(Instant::now(), peer, config, server_name, None)?;
    flush(&sock, &mut ep).await;
    let bytes = request.to_bytes().map_err(|e| format!("cannot encode the request: {e:?}"))?;
    let mut buf = vec![0u8; 65536];
    loop {
        pump(&sock, &mut ep, &mut buf).await?;
        while let Some((_, ev)) = ep.poll_event() {
            match ev {
                Event::Connected { identity, suite, resumed } => {
                    if verbose {
                        eprintln!(
                            "connected to {peer}: {suite:?}, server {identity:?}{}",
                            if resumed { ", resumed" } else { "" }
                        );
                    }
                    ep.send(peer, &bytes)?;
                }
                Event::ApplicationData(d) => {
                    let Ok(p) = Packet::from_bytes(&d) else { continue };
                    if p.get_token() != request.get_token() && p.header.get_type() != MessageType::Reset {
                        continue;
                    }
                    match (p.header.get_type(), p.header.code) {
                        // An empty ACK: the response will come separately (RFC 7252 §5.2.2).
                        (MessageType::Acknowledgement, MessageClass::Empty) => continue,
                        (MessageType::Reset, _) if p.header.message_id != request.header.message_id => continue,
                        (MessageType::Confirmable, _) => {
                            let mut ack = Packet::new();
                            ack.header.set_type(MessageType::Acknowledgement);
                            ack.header.message_id = p.header.message_id;
                            ep.send(peer, &ack.to_bytes().map_err(|e| format!("{e:?}"))?)?;
                        }
                        _ => {}
                    }
                    ep.close(peer);
                    flush(&sock, &mut ep).await;
                    return Ok(p);
                }
                Event::Closed(r) => return Err(close_error(r)),
            }
        }
        flush(&sock, &mut ep).await;
    }
}

/// Serves `app` on `sock` until `shutdown` completes.
pub async fn serve(
    sock: UdpSocket,
    config: Arc<ServerConfig>,
    app: Demo,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BoxError> {
    let mut ep = Endpoint::server(config, SeededRng::from_os(), Instant::now());
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
                Event::ApplicationData(d) => {
                    let Ok(message) = Packet::from_bytes(&d) else { continue };
                    if !matches!(message.header.code, MessageClass::Request(_)) {
                        continue;
                    }
                    let identity = ep.connection(&peer).map(|c| c.peer_identity().clone()).unwrap_or_default();
                    let mut app = app.clone();
                    let mid = message.header.message_id;
                    let token = message.get_token().to_vec();
                    let mut res = app.call(CoapRequest { message, peer, identity, early_data: false }).await?;
                    res.header.message_id = mid;
                    res.set_token(token);
                    if let Ok(b) = res.to_bytes() {
                        let _ = ep.send(peer, &b);
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
