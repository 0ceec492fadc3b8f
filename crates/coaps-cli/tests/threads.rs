//! `coaps serve --threads 2`: 200 concurrent clients (DTLS 1.2 and 1.3 alternately) each get
//! exactly one answer to their GET; `--threads 0` is a usage error.

use coap_lite::{MessageClass, MessageType, Packet, RequestType, ResponseType};
use coaps_cli::psk::{DEMO_IDENTITY, DEMO_KEY};
use coaps_dtls::{ClientConfig, DtlsVersion, Psk};
use coaps_test_support::cli::{coaps, run, serve, show};
use std::sync::Arc;
use std::time::Duration;

const CLIENTS: usize = 200;
const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn threads_two_serves_two_hundred_concurrent_clients() {
    // The 200 clients stand for 200 hosts but share 127.0.0.1: the per-address and per-prefix
    // half-open quotas are raised as 200 hosts would not meet them.
    let server = serve(&["--threads", "2", "--max-half-open-per-address", "200", "--max-half-open-per-prefix", "200"]);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], server.port).into();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let answered = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..CLIENTS {
            tasks.spawn(async move {
                let psk = Psk::new(DEMO_IDENTITY, DEMO_KEY.as_bytes().to_vec()).unwrap();
                let version = if i % 2 == 0 { DtlsVersion::Dtls12 } else { DtlsVersion::Dtls13 };
                let config = Arc::new(ClientConfig { psk: Some(psk), version, ..ClientConfig::default() });
                let work = async {
                    let client = coaps_tower::Client::connect(addr, config, "localhost").await?;
                    let mut req = Packet::new();
                    req.header.set_type(MessageType::Confirmable);
                    req.header.code = MessageClass::Request(RequestType::Get);
                    req.set_token(vec![i as u8]);
                    req.add_option(coap_lite::CoapOption::UriPath, b"hello".to_vec());
                    let resp = client.send(req).await?;
                    client.close().await;
                    Ok::<_, coaps_tower::ClientError>(resp)
                };
                match tokio::time::timeout(Duration::from_secs(60), work).await {
                    Ok(Ok(resp)) if resp.header.code == MessageClass::Response(ResponseType::Content) => {
                        Ok(resp.payload)
                    }
                    Ok(Ok(resp)) => Err(format!("client {i}: {:?}", resp.header.code)),
                    Ok(Err(e)) => Err(format!("client {i}: {e}")),
                    Err(_) => Err(format!("client {i}: timed out")),
                }
            });
        }
        let mut ok = 0;
        let mut failures = Vec::new();
        while let Some(r) = tasks.join_next().await {
            match r.unwrap() {
                Ok(body) => {
                    assert_eq!(body, b"Hello, CoAPS!");
                    ok += 1;
                }
                Err(e) => failures.push(e),
            }
        }
        assert!(failures.is_empty(), "{} failed: {:?}", failures.len(), &failures[..failures.len().min(5)]);
        ok
    });
    assert_eq!(answered, CLIENTS);
    server.guard.stop();
}

#[test]
fn threads_zero_is_a_usage_error() {
    let mut cmd = coaps();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--threads", "0"]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--threads"), "{}", show(&out));
}
