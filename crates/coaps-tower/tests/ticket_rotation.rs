//! Stateless-ticket key rotation in a cluster: two nodes on one store, their ticket keys kept
//! by `TicketKeySync` with 2-second periods, node B's wall clock 700 ms behind node A's. Just
//! after a period boundary A has rotated and B has not: each still resumes the tickets the
//! other seals (B holds A's new key as its pre-published next key, A holds B's as previous),
//! in DTLS 1.2 and 1.3, so the rotation costs no full handshake.

use coaps_dtls::{ClientConfig, DtlsVersion, Psk, ServerConfig, StaticPsks};
use coaps_test_support::cluster::{Node, client_addr, connect};
use coaps_tower::resumption::{AsyncSessionStore, MokaConfig, MokaStore, TicketKeySync};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PERIOD: Duration = Duration::from_secs(2);
const SKEW: Duration = Duration::from_millis(700);

fn clock_a() -> SystemTime {
    SystemTime::now()
}

fn clock_b() -> SystemTime {
    SystemTime::now() - SKEW
}

fn psk() -> Psk {
    Psk::new("device-rotate", b"0123456789abcdef".to_vec()).unwrap()
}

fn server_config() -> Arc<ServerConfig> {
    Arc::new(ServerConfig {
        psks: Some(Arc::new(StaticPsks(vec![psk()]))),
        session_store: None,
        ..ServerConfig::default()
    })
}

fn client_config(version: DtlsVersion) -> Arc<ClientConfig> {
    Arc::new(ClientConfig { version, psk: Some(psk()), ..ClientConfig::default() })
}

/// Sleeps until A's clock is 50-300 ms into a period, so B's (700 ms behind) is still in the
/// one before.
async fn just_past_a_boundary() {
    let deadline = Instant::now() + PERIOD * 3;
    loop {
        let into = clock_a().duration_since(UNIX_EPOCH).unwrap().as_millis() % PERIOD.as_millis();
        if (50..300).contains(&into) {
            return;
        }
        assert!(Instant::now() < deadline, "no period boundary within three periods");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn nodes_that_disagree_on_the_current_key_open_each_others_tickets() {
    let store: Arc<dyn AsyncSessionStore> = Arc::new(MokaStore::new(MokaConfig::default()));
    let sync_a = TicketKeySync::new(store.clone(), PERIOD).wall_clock(clock_a);
    let sync_b = TicketKeySync::new(store.clone(), PERIOD).wall_clock(clock_b);
    just_past_a_boundary().await;
    sync_a.refresh().await.unwrap();
    sync_b.refresh().await.unwrap();
    let (keys_a, keys_b) = (sync_a.keys(), sync_b.keys());
    assert_ne!(keys_a.current_name(), keys_b.current_name(), "the nodes must disagree for this test");

    let config = server_config();
    let mut a = Node::builder(config.clone(), store.clone()).seed(10).stateless_tickets(keys_a.clone()).build();
    let mut b = Node::builder(config, store).seed(20).stateless_tickets(keys_b.clone()).build();
    for (i, version) in [DtlsVersion::Dtls12, DtlsVersion::Dtls13].into_iter().enumerate() {
        let seed = 100 * (i as u64 + 1);
        for a_first in [true, false] {
            let (from, to, sealing, name) =
                if a_first { (&mut a, &mut b, &keys_a, "A -> B") } else { (&mut b, &mut a, &keys_b, "B -> A") };
            let first = connect(from, seed, client_addr(0), client_config(version), None, None).await;
            assert!(!first.resumed);
            let session = first.session.expect("a ticket");
            let ticket = session.store_key().to_vec();
            assert_eq!(
                ticket[..16],
                sealing.current_name(),
                "{version:?} {name}: sealed under the sealer's current key"
            );
            let again = connect(to, seed + 1, client_addr(1), client_config(version), Some(session), None).await;
            assert!(again.resumed, "{version:?} {name}: a full handshake across the rotation");
        }
    }
    // Stateless tickets are opened by the engines: nothing came from the store.
    assert_eq!(a.resumption.stats().sessions_fetched + b.resumption.stats().sessions_fetched, 0);
}
