//! Add CoAPS to a coap-lite application: the smallest complete server on the Tower stack.
//! This is the README's example, kept compiling here.
//!
//! ```text
//! cargo run --release --example coap_server
//! coap-client-openssl -m get -u sensor-17 -k "secret key" coaps://127.0.0.1/anything
//! ```

use coaps::dtls::{Psk, ServerConfig, StaticPsks};
use coaps::tower::{CoapLayer, CoapRequest, CookieLayer, HandshakeLayer, Server};
use std::sync::Arc;
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let config = Arc::new(ServerConfig {
        psks: Some(Arc::new(StaticPsks(vec![Psk::new("sensor-17", "secret key")?]))),
        ..ServerConfig::default() // DTLS 1.3 and 1.2
    });
    // The version-aware cookie gate: HelloVerifyRequest for DTLS 1.2, stateless HelloRetryRequest
    // for DTLS 1.3. `behind` shares its DTLS 1.3 cookie secrets with the handshake layer.
    let cookies = CookieLayer::for_server(&config);
    let handshake = HandshakeLayer::builder(config).behind(&cookies).build();
    let associations = handshake.associations();
    let app = tower::service_fn(|req: CoapRequest| async move {
        let mut response = req.response();
        response.payload = format!("hello, {:?}", req.identity).into_bytes();
        Ok::<_, std::convert::Infallible>(response)
    });
    let service = ServiceBuilder::new().layer(cookies).layer(handshake).layer(CoapLayer::new()).service(app);
    let socket = tokio::net::UdpSocket::bind("[::]:5684").await?;
    println!("listening on {}", socket.local_addr()?);
    Server::new(socket)
        .out_of_band(associations)
        .serve(service, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
