//! Stateless (sealed) tickets: the server opens the ticket itself, keeps nothing, and any
//! server holding the same ticket keys resumes it.

use coaps_test_support::dtls as common;

use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{DtlsVersion, ServerConfig, Session, TicketKey, TicketKeys, TicketMode};
use coaps_sim::{Network, SimConfig, Simulation};
use common::*;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

fn stateless(server: &Arc<ServerConfig>, keys: &TicketKeys) -> Arc<ServerConfig> {
    let mut s = (**server).clone();
    s.session_store = None;
    s.session_events = false;
    s.tickets = TicketMode::Stateless(keys.clone());
    Arc::new(s)
}

/// A full handshake against `server`, then a resumption attempt with its ticket against
/// `resume_on` (same address, a fresh simulation): whether it resumed, and the ticket.
fn ticket_then_resume(mode: Mode, server: Arc<ServerConfig>, resume_on: Arc<ServerConfig>) -> (bool, Session) {
    let (_, mut client_cfg) = configs(mode, None);
    Arc::make_mut(&mut client_cfg).version = DtlsVersion::Dtls13;
    let network = Network::new(11, SimConfig::default());
    let now = network.now();
    let mut sim = Simulation::new(network);
    let mut a = Node::server(server, 1, now);
    let mut client = Node::client(client_cfg.clone(), 2, now, None, b"first");
    sim.run_until(
        &mut (&mut client, &mut a),
        |_, (c, _)| c.got_echo && c.ep.connection(&server_addr()).is_some_and(|x| x.session().is_some()),
        Duration::from_secs(10),
        1000,
    )
    .unwrap_or_else(|e| panic!("{mode:?}: {e}: {:?}", client.events));
    let ticket = client.ep.connection(&server_addr()).unwrap().session().cloned().unwrap();
    client.ep.close_all();
    let mut b = Node::server(resume_on, 5, sim.now());
    let mut again = Node::client(client_cfg, 3, sim.now(), Some(ticket.clone()), b"resumed");
    sim.run_until(&mut (&mut again, &mut b), |_, (c, _)| c.got_echo, Duration::from_secs(10), 1000)
        .unwrap_or_else(|e| panic!("{mode:?}: {e}: {:?}", again.events));
    (again.resumed, ticket)
}

#[test]
fn dtls13_sealed_ticket_resumes_without_any_store() {
    for mode in [Mode::Psk, Mode::EcdsaX509] {
        let (server_cfg, _) = configs(mode, None);
        let keys = TicketKeys::new(Duration::from_secs(3600), SystemTime::now());
        let cfg = stateless(&server_cfg, &keys);
        let (resumed, ticket) = ticket_then_resume(mode, cfg.clone(), cfg);
        assert!(resumed, "{mode:?}: a sealed ticket must resume");
        // The ticket is the sealed session, not a 16-byte store key: it starts with the key name.
        assert!(ticket.id.len() > 60, "{mode:?}: ticket of {} bytes", ticket.id.len());
        assert_eq!(&ticket.id[..16], &keys.current_name());
    }
}

#[test]
fn dtls13_sealed_ticket_opens_on_another_server_with_the_same_keys_only() {
    let mode = Mode::Psk;
    let (server_cfg, _) = configs(mode, None);
    let wall = SystemTime::now();
    let mut rng = SeededRng::from_seed_u64(7);
    let key = TicketKey::generate(&mut rng, wall);
    let node_a = TicketKeys::shared(key.clone(), None, Duration::from_secs(3600));
    let node_b = TicketKeys::shared(key, None, Duration::from_secs(3600));
    let (resumed, _) = ticket_then_resume(mode, stateless(&server_cfg, &node_a), stateless(&server_cfg, &node_b));
    assert!(resumed, "node B holds node A's key: the ticket must resume there");

    let stranger = TicketKeys::new(Duration::from_secs(3600), wall);
    let (resumed, _) = ticket_then_resume(mode, stateless(&server_cfg, &node_a), stateless(&server_cfg, &stranger));
    assert!(!resumed, "a server with other keys must fall back to a full handshake");

    // Retired: node B rotated twice since A sealed the ticket.
    let rotated = TicketKeys::shared(TicketKey::generate(&mut rng, wall), None, Duration::from_secs(3600));
    let (resumed, _) = {
        let a = stateless(&server_cfg, &rotated);
        let b_keys = rotated.clone();
        let b = stateless(&server_cfg, &b_keys);
        // Rotate B's (shared) keys twice before the resumption: A's key is gone.
        let (_, mut client_cfg) = configs(mode, None);
        Arc::make_mut(&mut client_cfg).version = DtlsVersion::Dtls13;
        let network = Network::new(12, SimConfig::default());
        let now = network.now();
        let mut sim = Simulation::new(network);
        let mut na = Node::server(a, 1, now);
        let mut client = Node::client(client_cfg.clone(), 2, now, None, b"first");
        sim.run_until(
            &mut (&mut client, &mut na),
            |_, (c, _)| c.got_echo && c.ep.connection(&server_addr()).is_some_and(|x| x.session().is_some()),
            Duration::from_secs(10),
            1000,
        )
        .unwrap();
        let ticket = client.ep.connection(&server_addr()).unwrap().session().cloned().unwrap();
        b_keys.rotate(&mut rng, wall);
        b_keys.rotate(&mut rng, wall);
        let mut nb = Node::server(b, 5, sim.now());
        let mut again = Node::client(client_cfg, 3, sim.now(), Some(ticket.clone()), b"resumed");
        sim.run_until(&mut (&mut again, &mut nb), |_, (c, _)| c.got_echo, Duration::from_secs(10), 1000).unwrap();
        (again.resumed, ticket)
    };
    assert!(!resumed, "a ticket under a retired key must get a full handshake");
}

/// DTLS 1.2 RFC 5077: with no store at all, the only way back is the sealed ticket, opened on
/// another server holding the same keys; our client keeps the ticket in its session.
#[test]
fn dtls12_sealed_ticket_resumes_on_another_server_without_any_store() {
    for mode in [Mode::Psk, Mode::EcdsaX509] {
        let (server_cfg, mut client_cfg) = configs(mode, None);
        Arc::make_mut(&mut client_cfg).version = DtlsVersion::Dtls12;
        let wall = SystemTime::now();
        let mut rng = SeededRng::from_seed_u64(21);
        let key = TicketKey::generate(&mut rng, wall);
        let a_cfg = stateless(&server_cfg, &TicketKeys::shared(key.clone(), None, Duration::from_secs(3600)));
        let b_cfg = stateless(&server_cfg, &TicketKeys::shared(key, None, Duration::from_secs(3600)));
        let network = Network::new(13, SimConfig::default());
        let now = network.now();
        let mut sim = Simulation::new(network);
        let mut a = Node::server(a_cfg, 1, now);
        let mut client = Node::client(client_cfg.clone(), 2, now, None, b"first");
        sim.run_until(
            &mut (&mut client, &mut a),
            |_, (c, _)| c.got_echo && c.ep.connection(&server_addr()).is_some_and(|x| x.session().is_some()),
            Duration::from_secs(10),
            1000,
        )
        .unwrap_or_else(|e| panic!("{mode:?}: {e}: {:?}", client.events));
        let session = client.ep.connection(&server_addr()).unwrap().session().cloned().unwrap();
        assert!(session.id.is_empty(), "{mode:?}: a server issuing a ticket sends no session ID (RFC 5077 §3.4)");
        assert!(session.session_ticket().is_some_and(|t| t.len() > 100), "{mode:?}: no sealed ticket kept");
        // Through the client's session encoding (its session file) and back.
        let wall_now = SystemTime::now();
        let session = Session::decode(&session.encode(sim.now(), wall_now), sim.now(), wall_now).unwrap();
        client.ep.close_all();
        let mut b = Node::server(b_cfg, 5, sim.now());
        let mut again = Node::client(client_cfg, 3, sim.now(), Some(session), b"resumed");
        sim.run_until(&mut (&mut again, &mut b), |_, (c, _)| c.got_echo, Duration::from_secs(10), 1000)
            .unwrap_or_else(|e| panic!("{mode:?}: {e}: {:?}", again.events));
        assert!(again.resumed, "{mode:?}: node B must resume node A's DTLS 1.2 ticket");
    }
}
