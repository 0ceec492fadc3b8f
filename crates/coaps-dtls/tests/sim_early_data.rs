//! DTLS 1.3 0-RTT early data (RFC 8446 §4.2.10, RFC 9147 §5.6) on the simulator: accepted,
//! rejected by the server's hook, over the limit, not offered when the ticket disallows it, off
//! by default on the server, and under 20 % loss over many seeds (never delivered twice, never
//! delivered as 1-RTT data).

use coaps_test_support::dtls as common;

use coaps_dtls::crypto::SeededRng;
use coaps_dtls::internal::record13::{Record13, split_datagram13};
use coaps_dtls::{
    ClientConfig, Connection, DtlsVersion, EarlyDataConfig, Endpoint, Event, PeerIdentity, ResumptionKeyExchange,
    ServerConfig, Session,
};
use coaps_sim::{Network, SimConfig, Simulation, check_seeds};
use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const EARLY: &[u8] = b"GET /temperature (0-RTT)";
const LATER: &[u8] = b"1-RTT request";

fn seeds() -> u64 {
    std::env::var("COAPS_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(if cfg!(debug_assertions) {
        40
    } else {
        1000
    })
}

fn configs13(mode: Mode, early: Option<EarlyDataConfig>) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let (mut s, mut c) = configs(mode, None);
    let retransmit = coaps_dtls::RetransmitConfig {
        max_retransmissions: 12,
        handshake_timeout: Duration::from_secs(600),
        ..Default::default()
    };
    Arc::make_mut(&mut s).early_data = early;
    Arc::make_mut(&mut s).common.retransmit = retransmit;
    Arc::make_mut(&mut c).version = DtlsVersion::Dtls13;
    Arc::make_mut(&mut c).common.retransmit = retransmit;
    (s, c)
}

/// A server node, with another configuration over the same session store.
fn server_with(config: &Arc<ServerConfig>, early: Option<EarlyDataConfig>, now: Instant) -> Node {
    let mut cfg = (**config).clone();
    cfg.early_data = early;
    Node::server(Arc::new(cfg), 11, now)
}

/// First connection on an ideal network: returns the ticket.
fn get_ticket(sim: &mut Simulation, server: &mut Node, client_cfg: &Arc<ClientConfig>) -> Session {
    let mut client = Node::client(client_cfg.clone(), 2, sim.now(), None, b"first");
    sim.run_until(
        &mut (&mut client, &mut *server),
        |_, (c, _)| c.got_echo && c.ep.connection(&server_addr()).is_some_and(|x| x.session().is_some()),
        Duration::from_secs(30),
        10_000,
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", client.events));
    let ticket = client.ep.connection(&server_addr()).unwrap().session().cloned().unwrap();
    client.ep.close_all();
    ticket
}

/// A client node resuming `ticket` with `early` as 0-RTT data, then sending [`LATER`].
fn early_client(cfg: &Arc<ClientConfig>, ticket: Session, early: &[u8], seed: u64, now: Instant) -> Node {
    let mut ep = Endpoint::client(SeededRng::from_seed_u64(seed));
    ep.connect_with_early_data(now, server_addr(), cfg.clone(), "localhost", Some(ticket), early).expect("connect");
    Node {
        addr: client_addr(),
        ep,
        events: Vec::new(),
        echo: false,
        message: Some((server_addr(), LATER.to_vec())),
        resend_at: None,
        connected: false,
        got_echo: false,
        session: None,
        resumed: false,
    }
}

fn run(sim: &mut Simulation, client: &mut Node, server: &mut Node) -> Result<(), String> {
    sim.run_until(
        &mut (&mut *client, &mut *server),
        |_, (c, _)| c.got_echo || c.closed_reason().is_some(),
        Duration::from_secs(900),
        200_000,
    )
    .map_err(|e| format!("{e}; client {:?}; server {:?}", client.events, server.events))?;
    Ok(())
}

fn early_events(n: &Node) -> Vec<Vec<u8>> {
    n.events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::EarlyData(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

fn app_events(n: &Node) -> Vec<Vec<u8>> {
    n.events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::ApplicationData(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

/// Index of the first event matching `f` on `n`.
fn position(n: &Node, f: impl Fn(&Event) -> bool) -> Option<usize> {
    n.events.iter().position(|(_, e)| f(e))
}

fn skipped(server: &Node) -> u64 {
    server.ep.connection(&client_addr()).map_or(0, |c| c.stats().early_records_skipped)
}

#[test]
fn server_is_off_by_default() {
    assert!(ServerConfig::default().early_data.is_none());
    assert_eq!(ClientConfig::default().resumption_key_exchange, ResumptionKeyExchange::PskDheKe);
}

#[test]
fn accepted_early_data_arrives_once_as_early_data_before_connected() {
    for mode in [Mode::Psk, Mode::EcdsaX509] {
        let (server_cfg, client_cfg) = configs13(mode, Some(EarlyDataConfig::default()));
        let network = Network::new(1, SimConfig::default());
        let mut sim = Simulation::new(network);
        let mut server = Node::server(server_cfg, 1, sim.now());
        let ticket = get_ticket(&mut sim, &mut server, &client_cfg);
        assert_eq!(ticket.max_early_data_size(), Some(1024), "the ticket carries max_early_data_size");
        server.events.clear();
        let hrr_before = server.ep.stats().hello_retry_requests;
        let mut client = early_client(&client_cfg, ticket, EARLY, 3, sim.now());
        run(&mut sim, &mut client, &mut server).unwrap();
        assert!(client.got_echo && client.resumed, "{mode:?}: {:?}", client.events);
        // RFC 9147 §5.1: no cookie round trip for a 0-RTT resumption from the ticket's address.
        assert_eq!(server.ep.stats().hello_retry_requests, hrr_before, "{mode:?}: no HRR");
        let accepted = position(&client, |e| matches!(e, Event::EarlyDataAccepted)).expect("accepted");
        let connected = position(&client, |e| matches!(e, Event::Connected { .. })).unwrap();
        assert!(accepted < connected, "{mode:?}: the outcome comes before Connected");
        assert!(position(&client, |e| matches!(e, Event::EarlyDataRejected)).is_none());
        assert_eq!(early_events(&server), vec![EARLY.to_vec()], "{mode:?}: delivered once, as early data");
        assert!(!app_events(&server).contains(&EARLY.to_vec()), "{mode:?}: never as 1-RTT data");
        let early_at = position(&server, |e| matches!(e, Event::EarlyData(_))).unwrap();
        let server_connected = position(&server, |e| matches!(e, Event::Connected { .. })).unwrap();
        assert!(early_at < server_connected, "{mode:?}: early data before the handshake completes");
        let identity = server.ep.connection(&client_addr()).unwrap().peer_identity().clone();
        match mode {
            Mode::Psk => assert_eq!(identity, PeerIdentity::Psk(b"Client_identity".to_vec())),
            _ => assert_eq!(identity, PeerIdentity::Anonymous),
        }
    }
}

#[test]
fn first_early_record_shares_the_client_hello_datagram() {
    let (server_cfg, client_cfg) = configs13(Mode::Psk, Some(EarlyDataConfig::default()));
    let mut sim = Simulation::new(Network::new(1, SimConfig::default()));
    let mut server = Node::server(server_cfg, 1, sim.now());
    let ticket = get_ticket(&mut sim, &mut server, &client_cfg);
    let mut conn = Connection::client_with_early_data(
        client_cfg,
        server_addr(),
        "localhost",
        Some(ticket),
        EARLY,
        SeededRng::from_seed_u64(5),
        sim.now(),
    )
    .unwrap();
    let first = conn.poll_transmit().expect("ClientHello datagram");
    assert!(conn.poll_transmit().is_none(), "one datagram");
    let records: Vec<_> = split_datagram13(&first).collect();
    assert_eq!(records.len(), 2, "ClientHello and one 0-RTT record");
    assert!(matches!(records[0], Record13::Plaintext(_)));
    match &records[1] {
        Record13::Ciphertext(c) => assert_eq!(c.header.epoch_bits, 1, "epoch 1 (RFC 9147 §6.1)"),
        other => panic!("{other:?}"),
    }
    // A second record while the ServerHello is awaited goes alone, in epoch 1 too.
    conn.send_early_data(b"more").unwrap();
    let second = conn.poll_transmit().unwrap();
    assert!(matches!(split_datagram13(&second).next(), Some(Record13::Ciphertext(c)) if c.header.epoch_bits == 1));
    // The ticket's limit (1024 bytes) holds across records.
    assert!(matches!(conn.send_early_data(&[0u8; 1000]), Err(coaps_dtls::UsageError::LimitReached(_))));
}

#[test]
fn rejected_by_the_hook_is_skipped_and_never_delivered() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let hook = EarlyDataConfig::with_hook(1024, move |ctx| {
        seen.fetch_add(1, Ordering::SeqCst);
        assert_eq!(ctx.peer, client_addr());
        assert_eq!(ctx.peer_identity, &PeerIdentity::Psk(b"Client_identity".to_vec()));
        assert!(ctx.client_ticket_age <= ctx.server_ticket_age + Duration::from_secs(1));
        false
    });
    let (server_cfg, client_cfg) = configs13(Mode::Psk, Some(hook));
    let mut sim = Simulation::new(Network::new(1, SimConfig::default()));
    let mut server = Node::server(server_cfg, 1, sim.now());
    let ticket = get_ticket(&mut sim, &mut server, &client_cfg);
    let mut client = early_client(&client_cfg, ticket, EARLY, 3, sim.now());
    run(&mut sim, &mut client, &mut server).unwrap();
    assert!(client.got_echo && client.resumed, "{:?}", client.events);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the hook decided once");
    let rejected = position(&client, |e| matches!(e, Event::EarlyDataRejected)).expect("rejected");
    assert!(rejected < position(&client, |e| matches!(e, Event::Connected { .. })).unwrap());
    assert!(early_events(&server).is_empty());
    assert!(!app_events(&server).contains(&EARLY.to_vec()));
    assert_eq!(skipped(&server), 1, "the 0-RTT record was skipped and counted");
}

#[test]
fn more_than_max_early_data_size_aborts_with_unexpected_message() {
    // The ticket allows 1024 bytes; the server now takes 16: it enforces its own limit.
    let (server_cfg, client_cfg) = configs13(Mode::Psk, Some(EarlyDataConfig::default()));
    let mut sim = Simulation::new(Network::new(1, SimConfig::default()));
    let mut server = Node::server(server_cfg.clone(), 1, sim.now());
    let ticket = get_ticket(&mut sim, &mut server, &client_cfg);
    let mut strict =
        server_with(&server_cfg, Some(EarlyDataConfig { max_early_data_size: 16, ..Default::default() }), sim.now());
    let mut client = early_client(&client_cfg, ticket, &[7u8; 100], 3, sim.now());
    run(&mut sim, &mut client, &mut strict).unwrap();
    assert!(!client.got_echo);
    let reason = client.closed_reason().expect("closed");
    assert!(reason.contains("UnexpectedMessage"), "{reason}");
    assert!(early_events(&strict).is_empty(), "{:?}", strict.events);
    assert!(strict.closed_reason().is_some_and(|r| r.contains("TooMuchEarlyData")), "{:?}", strict.events);
}

#[test]
fn not_offered_when_the_ticket_disallows_it() {
    // A server without early data issues tickets that do not allow it.
    let (server_cfg, client_cfg) = configs13(Mode::Psk, None);
    let mut sim = Simulation::new(Network::new(1, SimConfig::default()));
    let mut server = Node::server(server_cfg.clone(), 1, sim.now());
    let ticket = get_ticket(&mut sim, &mut server, &client_cfg);
    assert_eq!(ticket.max_early_data_size(), None);
    let conn = Connection::client_with_early_data(
        client_cfg.clone(),
        server_addr(),
        "localhost",
        Some(ticket.clone()),
        EARLY,
        SeededRng::from_seed_u64(5),
        sim.now(),
    );
    let mut conn = conn.unwrap();
    assert_eq!(conn.poll_event(), Some(Event::EarlyDataRejected), "told at once");
    let first = conn.poll_transmit().unwrap();
    assert_eq!(split_datagram13(&first).count(), 1, "a ClientHello alone");
    assert!(conn.send_early_data(b"x").is_err());
    // And the server, even with early data enabled now, sees nothing to skip.
    let mut now_on = server_with(&server_cfg, Some(EarlyDataConfig::default()), sim.now());
    let mut client = early_client(&client_cfg, ticket, EARLY, 3, sim.now());
    run(&mut sim, &mut client, &mut now_on).unwrap();
    assert!(client.got_echo && client.resumed);
    assert!(early_events(&now_on).is_empty());
    assert_eq!(skipped(&now_on), 0);
    assert_eq!(client.events.iter().filter(|(_, e)| matches!(e, Event::EarlyDataRejected)).count(), 1);
}

#[test]
fn a_server_with_early_data_off_rejects_and_skips() {
    let (server_cfg, client_cfg) = configs13(Mode::EcdsaX509, Some(EarlyDataConfig::default()));
    let mut sim = Simulation::new(Network::new(1, SimConfig::default()));
    let mut server = Node::server(server_cfg.clone(), 1, sim.now());
    let ticket = get_ticket(&mut sim, &mut server, &client_cfg);
    // Same store, early data switched off (and the cookie back, since no exemption applies).
    let mut off = server_with(&server_cfg, None, sim.now());
    let mut client = early_client(&client_cfg, ticket, EARLY, 3, sim.now());
    run(&mut sim, &mut client, &mut off).unwrap();
    assert!(client.got_echo && client.resumed, "{:?}", client.events);
    assert!(client.events.iter().any(|(_, e)| matches!(e, Event::EarlyDataRejected)));
    assert!(early_events(&off).is_empty());
    assert!(!app_events(&off).contains(&EARLY.to_vec()));
    // The cookie HRR came first: the 0-RTT record went with the first ClientHello, which
    // leaves no state; the second ClientHello offers no early data (RFC 8446 §4.2.10).
    assert_eq!(off.ep.stats().hello_retry_requests, 1);
}

#[test]
fn rejected_without_cookie_is_skipped_by_epoch() {
    let (server_cfg, client_cfg) = configs13(Mode::EcdsaX509, Some(EarlyDataConfig::default()));
    let mut sim = Simulation::new(Network::new(1, SimConfig::default()));
    let mut server = Node::server(server_cfg.clone(), 1, sim.now());
    let ticket = get_ticket(&mut sim, &mut server, &client_cfg);
    let mut cfg = (*server_cfg).clone();
    cfg.early_data = None;
    cfg.cookie = None;
    let mut off = Node::server(Arc::new(cfg), 12, sim.now());
    let mut client = early_client(&client_cfg, ticket, EARLY, 3, sim.now());
    run(&mut sim, &mut client, &mut off).unwrap();
    assert!(client.got_echo && client.resumed);
    assert!(early_events(&off).is_empty());
    assert_eq!(skipped(&off), 1, "skipped by its epoch, counted");
}

#[test]
fn a_ticket_that_carried_early_data_is_single_use() {
    let (server_cfg, client_cfg) = configs13(Mode::Psk, Some(EarlyDataConfig::default()));
    let mut sim = Simulation::new(Network::new(1, SimConfig::default()));
    let mut server = Node::server(server_cfg, 1, sim.now());
    let ticket = get_ticket(&mut sim, &mut server, &client_cfg);
    let mut client = early_client(&client_cfg, ticket.clone(), EARLY, 3, sim.now());
    run(&mut sim, &mut client, &mut server).unwrap();
    assert_eq!(early_events(&server).len(), 1);
    client.ep.close_all();
    // The same ticket again (a replay of the resumption): a full handshake, no early data.
    let mut replay = early_client(&client_cfg, ticket, EARLY, 4, sim.now());
    let mut server2 = server;
    server2.events.clear();
    run(&mut sim, &mut replay, &mut server2).unwrap();
    assert!(replay.got_echo && !replay.resumed);
    assert!(replay.events.iter().any(|(_, e)| matches!(e, Event::EarlyDataRejected)));
    assert!(early_events(&server2).is_empty());
}

#[test]
fn psk_ke_resumption_sends_no_key_share_and_keeps_early_data() {
    let (server_cfg, client_cfg) = configs13(Mode::EcdsaX509, Some(EarlyDataConfig::default()));
    let mut psk_ke = (*client_cfg).clone();
    psk_ke.resumption_key_exchange = ResumptionKeyExchange::PskKe;
    let psk_ke = Arc::new(psk_ke);
    let mut sim = Simulation::new(Network::new(1, SimConfig::default()));
    let mut server = Node::server(server_cfg, 1, sim.now());
    let ticket = get_ticket(&mut sim, &mut server, &client_cfg);
    let hrr_before = server.ep.stats().hello_retry_requests;
    // RFC 8446 §4.2.9: psk_ke alone, and no key_share.
    let mut conn = Connection::client(
        psk_ke.clone(),
        server_addr(),
        "localhost",
        Some(ticket.clone()),
        SeededRng::from_seed_u64(9),
        sim.now(),
    )
    .unwrap();
    let d = conn.poll_transmit().unwrap();
    let Some(Record13::Plaintext(p)) = split_datagram13(&d).next() else { panic!("no ClientHello") };
    let mut r = coaps_dtls::internal::codec::Reader::new(p.fragment);
    let (_, body) = coaps_dtls::internal::msgs::HandshakeHeader::read_fragment(&mut r).unwrap();
    let ch =
        <coaps_dtls::internal::msgs13::ClientHello13 as coaps_dtls::internal::codec::Codec>::read_exact(body).unwrap();
    assert!(ch.key_shares().is_none(), "no key share");
    assert_eq!(ch.psk_key_exchange_modes(), Some(&[coaps_dtls::internal::codec::PskKeyExchangeMode::PskKe][..]));
    let mut client = early_client(&psk_ke, ticket, EARLY, 3, sim.now());
    run(&mut sim, &mut client, &mut server).unwrap();
    assert!(client.got_echo && client.resumed, "{:?}", client.events);
    assert_eq!(server.ep.stats().hello_retry_requests, hrr_before, "no HRR for a key share");
    assert_eq!(early_events(&server), vec![EARLY.to_vec()]);
}

#[test]
fn psk_ke_resumption_with_an_unknown_ticket_falls_back_through_hrr() {
    let (server_cfg, client_cfg) = configs13(Mode::EcdsaX509, None);
    let mut psk_ke = (*client_cfg).clone();
    psk_ke.resumption_key_exchange = ResumptionKeyExchange::PskKe;
    let psk_ke = Arc::new(psk_ke);
    let mut sim = Simulation::new(Network::new(1, SimConfig::default()));
    let mut server = Node::server(server_cfg.clone(), 1, sim.now());
    let ticket = get_ticket(&mut sim, &mut server, &client_cfg);
    // Another server, another (empty) store: the ticket is unknown there.
    let mut cfg = (*server_cfg).clone();
    cfg.session_store = Some(Arc::new(coaps_dtls::MemorySessionStore::new(10, Duration::from_secs(60))));
    let mut other = Node::server(Arc::new(cfg), 2, sim.now());
    let mut client = Node::client(psk_ke, 3, sim.now(), Some(ticket), b"full handshake");
    sim.run_until(
        &mut (&mut client, &mut other),
        |_, (c, _)| c.got_echo || c.closed_reason().is_some(),
        Duration::from_secs(30),
        10_000,
    )
    .unwrap();
    assert!(client.got_echo && !client.resumed, "{:?}", client.events);
}

#[test]
fn early_data_under_loss_is_never_delivered_twice_nor_as_one_rtt_data() {
    let lossy = SimConfig::default()
        .with_latency(Duration::from_millis(20))
        .with_jitter(Duration::from_millis(30))
        .with_loss(0.20)
        .with_duplicate(0.05);
    let (mut delivered, mut accepted, mut rejected) = (0u64, 0u64, 0u64);
    check_seeds(0..seeds(), |seed| {
        let (server_cfg, client_cfg) = configs13(Mode::Psk, Some(EarlyDataConfig::default()));
        let mut sim = Simulation::new(Network::new(seed, SimConfig::default()));
        let mut server = Node::server(server_cfg, seed ^ 0x5eed, sim.now());
        let ticket = get_ticket(&mut sim, &mut server, &client_cfg);
        server.events.clear();
        sim.network_mut().set_default_config(lossy);
        // Not seed 2 (the first client's): the same random would look like a replay of its ClientHello.
        let mut client = early_client(&client_cfg, ticket, EARLY, seed + 1_000, sim.now());
        run(&mut sim, &mut client, &mut server)?;
        if !client.got_echo {
            return Err(format!("no echo: {:?}", client.closed_reason()));
        }
        let early = early_events(&server);
        if early.len() > 1 {
            return Err(format!("early data delivered {} times", early.len()));
        }
        if app_events(&server).iter().any(|d| d == EARLY) {
            return Err("early data delivered as 1-RTT data".into());
        }
        let acc = client.events.iter().filter(|(_, e)| matches!(e, Event::EarlyDataAccepted)).count();
        let rej = client.events.iter().filter(|(_, e)| matches!(e, Event::EarlyDataRejected)).count();
        if acc + rej != 1 {
            return Err(format!("{acc} accepted and {rej} rejected events"));
        }
        if rej == 1 && !early.is_empty() {
            return Err("rejected early data was delivered".into());
        }
        accepted += acc as u64;
        rejected += rej as u64;
        delivered += early.len() as u64;
        Ok::<_, String>(())
    });
    eprintln!(
        "0-RTT under 20 % loss: {} seeds, {accepted} accepted, {rejected} rejected, {delivered} delivered",
        seeds()
    );
    assert!(accepted > 0 && delivered > 0);
}

/// RFC 9147 §5.1 / §5.11: a 0-RTT ClientHello skips the cookie only when its binder verifies.
/// A copy with another random (what an attacker who saw it would send, from the client's
/// address, to look like a new connection) gets a HelloRetryRequest and leaves the live
/// association alone; an identical copy goes to the association it created.
#[test]
fn an_altered_zero_rtt_client_hello_gets_no_cookie_exemption() {
    let (server_cfg, client_cfg) = configs13(Mode::Psk, Some(EarlyDataConfig::default()));
    let network = Network::new(1, SimConfig::default());
    let mut sim = Simulation::new(network);
    let mut server = Node::server(server_cfg, 1, sim.now());
    let ticket = get_ticket(&mut sim, &mut server, &client_cfg);
    let now = sim.now();
    let mut client = early_client(&client_cfg, ticket, EARLY, 9, now);
    let first = client.ep.poll_transmit().expect("the ClientHello with early data").payload;
    let before = server.ep.stats();
    server.ep.handle_datagram(now, client_addr(), &first);
    let after = server.ep.stats();
    assert_eq!(after.hello_retry_requests, before.hello_retry_requests, "exempt: no HRR");
    assert_eq!(after.connections_created, before.connections_created + 1);
    let answer: Vec<_> = std::iter::from_fn(|| server.ep.poll_transmit()).collect();
    assert!(!answer.is_empty(), "the ServerHello flight");

    // Identical copy: routed to the association, no new one, no HRR.
    server.ep.handle_datagram(now, client_addr(), &first);
    let same = server.ep.stats();
    assert_eq!(same.connections_created, after.connections_created);
    assert_eq!(same.hello_retry_requests, after.hello_retry_requests);
    while server.ep.poll_transmit().is_some() {}

    // Altered random (record header 13 + handshake header 12 + legacy_version 2 = offset 27).
    let mut altered = first.clone();
    altered[27] ^= 0x01;
    server.ep.handle_datagram(now, client_addr(), &altered);
    let last = server.ep.stats();
    assert_eq!(last.connections_created, after.connections_created, "the live association stays");
    assert_eq!(last.hello_retry_requests, after.hello_retry_requests + 1, "the altered copy gets an HRR");
    assert!(server.ep.connection(&client_addr()).is_some_and(|c| c.is_handshaking()));

    // The genuine client still completes on the association its ClientHello created.
    for t in answer {
        client.ep.handle_datagram(now, server_addr(), &t.payload);
    }
    while let Some(t) = client.ep.poll_transmit() {
        server.ep.handle_datagram(now, client_addr(), &t.payload);
    }
    assert!(server.ep.connection(&client_addr()).is_some_and(|c| c.is_established()));
    assert!(
        server.ep.connection(&client_addr()).is_some_and(|c| c.is_resumed()),
        "resumed on the original association"
    );
}

const ANSWER: &[u8] = b"2.05 Content 21.5 C (0.5-RTT)";

/// Every datagram of `ep`, to whom.
fn drain(ep: &mut Endpoint) -> Vec<(std::net::SocketAddr, Vec<u8>)> {
    std::iter::from_fn(|| ep.poll_transmit().map(|t| (t.destination, t.payload))).collect()
}

fn drain_events(ep: &mut Endpoint) -> Vec<Event> {
    std::iter::from_fn(|| ep.poll_event().map(|(_, e)| e)).collect()
}

fn epochs(datagram: &[u8]) -> Vec<u8> {
    split_datagram13(datagram)
        .map(|r| match r {
            Record13::Plaintext(p) => p.header.epoch as u8,
            Record13::Ciphertext(c) => c.header.epoch_bits,
        })
        .collect()
}

/// A server endpoint that gave `client_cfg` a ticket allowing early data, and that ticket.
fn ticket_from(server_cfg: &Arc<ServerConfig>, client_cfg: &Arc<ClientConfig>, now: Instant) -> (Endpoint, Session) {
    let mut server = Endpoint::server(server_cfg.clone(), SeededRng::from_seed_u64(7), now);
    let mut client = Endpoint::client(SeededRng::from_seed_u64(8));
    client.connect(now, server_addr(), client_cfg.clone(), "localhost", None).unwrap();
    for _ in 0..10 {
        for (_, d) in drain(&mut client) {
            server.handle_datagram(now, client_addr(), &d);
        }
        for (_, d) in drain(&mut server) {
            client.handle_datagram(now, server_addr(), &d);
        }
        if let Some(s) = client.connection(&server_addr()).and_then(|c| c.session()).cloned() {
            return (server, s);
        }
    }
    panic!("no ticket");
}

/// RFC 8446 §2.3 "0.5-RTT data": the server answers a 0-RTT request right after its Finished,
/// so on an ideal network the client has the answer after one round trip: in the exchange
/// that brings the server's flight, before it has sent anything but its first datagram. The
/// answer is an epoch-3 record outside the flight: the flight's retransmission (the client's
/// Finished lost) does not carry it again, and it is delivered once, as 1-RTT data, after
/// `Connected`.
#[test]
fn the_answer_to_early_data_reaches_the_client_within_one_round_trip() {
    for mode in [Mode::Psk, Mode::EcdsaX509] {
        let (server_cfg, client_cfg) = configs13(mode, Some(EarlyDataConfig::default()));
        let mut now = Instant::now();
        let (mut server, ticket) = ticket_from(&server_cfg, &client_cfg, now);
        drain_events(&mut server);
        now += Duration::from_secs(1);
        let mut client = Endpoint::client(SeededRng::from_seed_u64(9));
        client
            .connect_with_early_data(now, server_addr(), client_cfg.clone(), "localhost", Some(ticket), EARLY)
            .unwrap();
        // Round trip 1, client -> server: the ClientHello with the request.
        let first = drain(&mut client);
        assert_eq!(first.len(), 1, "{mode:?}: one datagram");
        server.handle_datagram(now, client_addr(), &first[0].1);
        let ev = drain_events(&mut server);
        assert!(ev.iter().any(|e| matches!(e, Event::EarlyData(d) if d == EARLY)), "{mode:?}: {ev:?}");
        assert!(!ev.iter().any(|e| matches!(e, Event::Connected { .. })), "still handshaking");
        let conn = server.connection(&client_addr()).unwrap();
        assert!(conn.is_handshaking());
        assert_eq!(conn.send_epoch(), 3, "epoch-3 send keys from the server's Finished on");
        server.send(client_addr(), ANSWER).expect("0.5-RTT send");
        // Round trip 1, server -> client: the flight, then the answer, in epoch 3 and apart.
        let back = drain(&mut server);
        let flight_len = back.len() - 1;
        assert_eq!(epochs(&back[flight_len].1), vec![3], "{mode:?}: the answer is one epoch-3 record");
        assert!(back[..flight_len].iter().all(|(_, d)| !epochs(d).contains(&3)), "the flight has no epoch 3");
        assert_eq!(
            client.connection(&server_addr()).unwrap().stats().datagrams_sent,
            1,
            "the client has sent only its first datagram when the answer arrives"
        );
        for (_, d) in &back {
            client.handle_datagram(now, server_addr(), d);
        }
        let ev = drain_events(&mut client);
        let connected = ev.iter().position(|e| matches!(e, Event::Connected { resumed: true, .. }));
        let answer = ev.iter().position(|e| matches!(e, Event::ApplicationData(d) if d == ANSWER));
        assert!(connected.is_some() && answer > connected, "{mode:?}: answer after Connected, in RT 1: {ev:?}");
        assert!(ev.iter().any(|e| matches!(e, Event::EarlyDataAccepted)));
        // The client's Finished is lost: the server resends its flight (without the answer),
        // the client repeats its Finished, the handshake completes, the answer is not repeated.
        let finished = drain(&mut client);
        assert!(!finished.is_empty());
        let t = server.poll_timeout().expect("server retransmission timer");
        now = now.max(t);
        server.handle_timeout(now);
        let resent = drain(&mut server);
        assert!(!resent.is_empty(), "flight retransmitted");
        assert!(resent.iter().all(|(_, d)| !epochs(d).contains(&3)), "the 0.5-RTT record is not part of the flight");
        for (_, d) in &resent {
            client.handle_datagram(now, server_addr(), d);
        }
        for _ in 0..4 {
            // The client repeats its Finished when its own timer fires.
            now += Duration::from_secs(2);
            client.handle_timeout(now);
            for (_, d) in drain(&mut client) {
                server.handle_datagram(now, client_addr(), &d);
            }
            for (_, d) in drain(&mut server) {
                client.handle_datagram(now, server_addr(), &d);
            }
        }
        let sev = drain_events(&mut server);
        assert!(sev.iter().any(|e| matches!(e, Event::Connected { .. })), "{mode:?}: {sev:?}");
        let cev = drain_events(&mut client);
        assert!(!cev.iter().any(|e| matches!(e, Event::ApplicationData(_))), "answer delivered once: {cev:?}");
        // Epoch 3 continues on both sides.
        client.send(server_addr(), LATER).unwrap();
        for (_, d) in drain(&mut client) {
            server.handle_datagram(now, client_addr(), &d);
        }
        let sev = drain_events(&mut server);
        assert!(sev.iter().any(|e| matches!(e, Event::ApplicationData(d) if d == LATER)), "{sev:?}");
        server.send(client_addr(), b"again").unwrap();
        for (_, d) in drain(&mut server) {
            client.handle_datagram(now, server_addr(), &d);
        }
        assert!(drain_events(&mut client).iter().any(|e| matches!(e, Event::ApplicationData(d) if d == b"again")));
    }
}

/// With a CertificateRequest out, the client is not authenticated before its Finished: the
/// server's data is held until then, not sent as 0.5-RTT data; and the server still does not
/// accept epoch-3 data before the client's Finished.
#[test]
fn with_client_authentication_half_rtt_data_waits_for_the_clients_finished() {
    let (server_cfg, client_cfg) = configs13(Mode::EcdsaMutual, None);
    let now = Instant::now();
    let mut server = Endpoint::server(server_cfg, SeededRng::from_seed_u64(7), now);
    let mut client = Endpoint::client(SeededRng::from_seed_u64(8));
    client.connect(now, server_addr(), client_cfg, "localhost", None).unwrap();
    let mut sent_early = false;
    for _ in 0..10 {
        for (_, d) in drain(&mut client) {
            server.handle_datagram(now, client_addr(), &d);
        }
        let handshaking = server.connection(&client_addr()).is_some_and(|c| c.is_handshaking());
        if handshaking && !sent_early {
            let before = drain(&mut server);
            server.send(client_addr(), ANSWER).expect("held, not refused");
            assert!(server.poll_transmit().is_none(), "nothing sent before the client's Finished");
            sent_early = true;
            for (_, d) in before {
                client.handle_datagram(now, server_addr(), &d);
            }
            continue;
        }
        let back = drain(&mut server);
        for (_, d) in &back {
            client.handle_datagram(now, server_addr(), d);
        }
        if back.is_empty() {
            break;
        }
    }
    assert!(sent_early);
    let ev = drain_events(&mut client);
    assert!(ev.iter().any(|e| matches!(e, Event::ApplicationData(d) if d == ANSWER)), "{ev:?}");
    assert_eq!(ev.iter().filter(|e| matches!(e, Event::ApplicationData(_))).count(), 1);
}

/// Without a cookie exchange the client's address is unproven: 0.5-RTT data within three
/// times what the client sent goes at once, the rest waits for the client's Finished
/// (RFC 9147 §5.1).
#[test]
fn half_rtt_data_respects_the_amplification_limit() {
    let (server_cfg, client_cfg) = configs13(Mode::Psk, Some(EarlyDataConfig::default()));
    let mut now = Instant::now();
    let (mut server, ticket) = ticket_from(&server_cfg, &client_cfg, now);
    drain_events(&mut server);
    now += Duration::from_secs(1);
    let mut client = Endpoint::client(SeededRng::from_seed_u64(9));
    client.connect_with_early_data(now, server_addr(), client_cfg, "localhost", Some(ticket), EARLY).unwrap();
    let first = drain(&mut client);
    let received = first[0].1.len();
    server.handle_datagram(now, client_addr(), &first[0].1);
    drain_events(&mut server);
    let max = server.connection(&client_addr()).unwrap().max_payload();
    let big = vec![7u8; max.min(received)];
    let mut sent_now = 0;
    for _ in 0..4 {
        server.send(client_addr(), &big).unwrap();
    }
    let out = drain(&mut server);
    let total: usize = out.iter().map(|(_, d)| d.len()).sum();
    assert!(total <= 3 * received, "{total} bytes sent for {received} received");
    for (_, d) in &out {
        sent_now += usize::from(epochs(d) == vec![3]);
        client.handle_datagram(now, server_addr(), d);
    }
    assert!(sent_now < 4, "some 0.5-RTT data held");
    for _ in 0..4 {
        for (_, d) in drain(&mut client) {
            server.handle_datagram(now, client_addr(), &d);
        }
        for (_, d) in drain(&mut server) {
            client.handle_datagram(now, server_addr(), &d);
        }
    }
    let ev = drain_events(&mut client);
    assert_eq!(ev.iter().filter(|e| matches!(e, Event::ApplicationData(d) if *d == big)).count(), 4, "in order, all");
}
