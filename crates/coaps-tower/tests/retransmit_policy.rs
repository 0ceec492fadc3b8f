//! The cookie round trip a `CookieLayer` measures (`CookieVerified::rtt_sample`) reaches the
//! retransmission policy of the association the `HandshakeLayer` behind it creates
//! (`CommonConfig::retransmit_policy`), for DTLS 1.2 (HelloVerifyRequest) and DTLS 1.3
//! (HelloRetryRequest) clients.

use coaps_test_support::datagram as datagram_support;

use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{
    ClientConfig, DtlsVersion, Endpoint, Event, PolicyContext, RetransmitPolicy, RetransmitPolicyFactory, Role,
    RttSampleKind,
};
use coaps_tower::{BoxError, CookieLayer, CookieVerified, Datagram, HandshakeLayer, Secured};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// The samples every policy it built was given, with the contexts it was built for.
#[derive(Debug, Clone, Default)]
struct Recorder {
    built: Arc<Mutex<Vec<PolicyContext>>>,
    samples: Arc<Mutex<Vec<(Role, Duration, RttSampleKind)>>>,
}

#[derive(Debug)]
struct Recording {
    role: Role,
    samples: Arc<Mutex<Vec<(Role, Duration, RttSampleKind)>>>,
}

impl RetransmitPolicy for Recording {
    fn initial_timeout(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn on_rtt_sample(&mut self, rtt: Duration, kind: RttSampleKind) {
        self.samples.lock().unwrap().push((self.role, rtt, kind));
    }
}

impl RetransmitPolicyFactory for Recorder {
    fn build(&self, context: &PolicyContext) -> Box<dyn RetransmitPolicy> {
        self.built.lock().unwrap().push(*context);
        Box::new(Recording { role: context.role, samples: self.samples.clone() })
    }
}

#[tokio::test]
async fn cookie_layer_rtt_reaches_the_policy() -> Result<(), BoxError> {
    let one_way = Duration::from_millis(40);
    for version in [DtlsVersion::Dtls12, DtlsVersion::Dtls13] {
        let policy = Recorder::default();
        let mut server = datagram_support::server_config();
        server.common.retransmit_policy = Some(Arc::new(policy.clone()));
        let server = Arc::new(server);
        let cookies = CookieLayer::for_server(&server);
        let handshake = HandshakeLayer::builder(server).behind(&cookies).build();
        // What the cookie layer marked, as the handshake layer receives it.
        let marks: Arc<Mutex<Vec<CookieVerified>>> = Arc::default();
        let seen = marks.clone();
        let mut service = ServiceBuilder::new()
            .layer(cookies)
            .map_request(move |d: Datagram| {
                seen.lock().unwrap().extend(d.cookie);
                d
            })
            .layer(handshake)
            .service(service_fn(|s: Secured| async move { Ok::<_, BoxError>(Some(s.payload)) }));

        let (server_addr, client_addr): (SocketAddr, SocketAddr) =
            ("192.0.2.1:5684".parse()?, "192.0.2.2:40000".parse()?);
        let client_config = ClientConfig { version, ..(*datagram_support::client_config()).clone() };
        let mut client = Endpoint::client(SeededRng::from_seed_u64(5));
        // A virtual clock: each datagram arrives one way later than it was sent.
        let mut now = Instant::now();
        client.connect(now, server_addr, Arc::new(client_config), "localhost", None)?;
        let mut connected = false;
        for _ in 0..10 {
            let sent: Vec<_> = std::iter::from_fn(|| client.poll_transmit()).collect();
            if sent.is_empty() {
                break;
            }
            now += one_way;
            let mut answers = Vec::new();
            for t in sent {
                let mut d = Datagram::new(client_addr, t.payload);
                d.received_at = now;
                answers.extend(service.ready().await?.call(d).await?);
            }
            now += one_way;
            for a in answers {
                client.handle_datagram(now, server_addr, &a.payload);
            }
            while let Some((_, e)) = client.poll_event() {
                connected |= matches!(e, Event::Connected { .. });
            }
        }
        assert!(connected, "{version:?}: handshake through the stack");

        let marks = marks.lock().unwrap().clone();
        assert_eq!(marks.len(), 1, "{version:?}: one ClientHello came back with a cookie");
        let rtt = marks[0].rtt_sample.expect("the cookie layer measured the round trip");
        // The cookie keeps its issue time in milliseconds.
        assert!(rtt >= 2 * one_way && rtt < 2 * one_way + Duration::from_millis(1), "{version:?}: {rtt:?}");
        let built = policy.built.lock().unwrap().clone();
        assert_eq!(built.len(), 1, "{version:?}");
        assert_eq!((built[0].role, built[0].peer, built[0].cookie_rtt), (Role::Server, client_addr, Some(rtt)));
        let samples = policy.samples.lock().unwrap().clone();
        assert_eq!(samples.first(), Some(&(Role::Server, rtt, RttSampleKind::Cookie)), "{version:?}: {samples:?}");
    }
    Ok(())
}
