//! DTLS 1.3 handshakes and data exchange on the simulator, for every mode, over many seeds.

use coaps_test_support::dtls as common;

use coaps_dtls::{DtlsVersion, Event, PeerIdentity};
use coaps_sim::{Network, SimConfig, Simulation, check_seeds};
use common::*;
use std::sync::Arc;
use std::time::Duration;

fn seeds() -> u64 {
    std::env::var("COAPS_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(if cfg!(debug_assertions) {
        20
    } else {
        1000
    })
}

const MODES13: [Mode; 4] = [Mode::Psk, Mode::EcdsaX509, Mode::EcdsaRawPublicKey, Mode::EcdsaMutual];

fn run13(mode: Mode, seed: u64, net: SimConfig, mtu: usize, cookie: bool) -> Result<(Node, Node), String> {
    run13_with(mode, seed, net, mtu, cookie, true)
}

fn run13_with(
    mode: Mode,
    seed: u64,
    net: SimConfig,
    mtu: usize,
    cookie: bool,
    selective: bool,
) -> Result<(Node, Node), String> {
    let (mut server_cfg, mut client_cfg) = configs(mode, None);
    let retransmit = coaps_dtls::RetransmitConfig {
        max_retransmissions: 12,
        handshake_timeout: Duration::from_secs(600),
        ..Default::default()
    };
    {
        let s = Arc::make_mut(&mut server_cfg);
        s.common.mtu = mtu;
        s.common.retransmit = retransmit;
        s.common.selective_retransmission = selective;
        // With cookies on, the default cookie timing applies: the endpoint stretches the 1.3
        // cookie's lifetime to the retransmission budget (600 s here), because a DTLS 1.3
        // client accepts only one HelloRetryRequest (RFC 8446 §4.1.4) and under 20 % loss the
        // second ClientHello can take minutes to get through.
        if !cookie {
            s.cookie = None;
        }
    }
    {
        let c = Arc::make_mut(&mut client_cfg);
        c.common.mtu = mtu;
        c.common.retransmit = retransmit;
        c.common.selective_retransmission = selective;
        c.version = DtlsVersion::Dtls13;
    }
    let network = Network::new(seed, net);
    let now = network.now();
    let mut sim = Simulation::new(network);
    let mut server = Node::server(server_cfg, seed ^ 0x5eed, now);
    let mut client = Node::client(client_cfg, seed ^ 0xc2, now, None, b"hello over DTLS 1.3");
    run_to_echo(&mut sim, &mut client, &mut server)?;
    Ok((client, server))
}

#[test]
fn every_dtls13_mode_completes_on_an_ideal_network() {
    for mode in MODES13 {
        for cookie in [true, false] {
            let (client, server) = run13(mode, 1, SimConfig::default(), 1152, cookie)
                .unwrap_or_else(|e| panic!("{mode:?} cookie {cookie}: {e}"));
            let conn = client.ep.connection(&server_addr()).expect("client association");
            assert_eq!(conn.version(), coaps_dtls::ProtocolVersion::DTLS1_3);
            // On a lossless network nothing waits for a timer: in particular the server's
            // encrypted flight, packed behind the ServerHello in one datagram, is kept until
            // the ServerHello's keys exist instead of being dropped.
            assert_eq!(conn.stats().retransmissions, 0, "{mode:?} cookie {cookie}: no retransmission needed");
            let server_identity = server.events.iter().find_map(|(_, e)| match e {
                Event::Connected { identity, .. } => Some(identity.clone()),
                _ => None,
            });
            match mode {
                Mode::Psk => assert_eq!(server_identity, Some(PeerIdentity::Psk(b"Client_identity".to_vec()))),
                Mode::EcdsaMutual => assert!(matches!(server_identity, Some(PeerIdentity::Certificate(_)))),
                _ => assert_eq!(server_identity, Some(PeerIdentity::Anonymous)),
            }
            if cookie {
                assert_eq!(server.ep.stats().hello_retry_requests, 1, "{mode:?}: one stateless HRR");
            }
        }
    }
}

#[test]
fn dtls13_survives_loss_reordering_duplication_and_fragmentation() {
    let lossy = |mtu| {
        SimConfig::default()
            .with_latency(Duration::from_millis(20))
            .with_jitter(Duration::from_millis(30))
            .with_loss(0.20)
            .with_duplicate(0.05)
            .with_mtu(mtu)
    };
    // 280 bytes fragments the certificate flights of both sides (and, with a client
    // certificate, the second ClientHello, which the endpoint reassembles before its cookie
    // gate).
    for (mode, mtu) in
        [(Mode::Psk, 1152), (Mode::EcdsaX509, 1152), (Mode::EcdsaMutual, 280), (Mode::EcdsaRawPublicKey, 1152)]
    {
        let mut retx = 0;
        check_seeds(0..seeds(), |seed| {
            let (client, _) = run13(mode, seed, lossy(mtu), mtu, true)?;
            retx += client.ep.connection(&server_addr()).map_or(0, |c| c.stats().retransmissions);
            Ok::<_, String>(())
        });
        eprintln!("DTLS 1.3 {mode:?} mtu {mtu}: {} seeds, {retx} client retransmissions", seeds());
    }
}

/// Issue 4 "Show": records retransmitted with ACK-driven selective retransmission (RFC 9147
/// §7: a partial flight is acknowledged after a quarter RTO, and only the unacknowledged
/// fragments are resent) against whole-flight retransmission, both measured on the same seeds:
///
/// - "selective": `records_retransmitted` with selective retransmission on (the default);
/// - "whole@same": the whole flight's records at each of those same retransmissions
///   (`whole_flight_records`, timer- and peer-triggered ones; resends prompted by a partial
///   ACK have no whole-flight counterpart and count on the selective side only);
/// - "whole-flight run": `records_retransmitted` of a second run of the same seeds with
///   `selective_retransmission = false`, i.e. what whole-flight retransmission really costs
///   (its timeouts differ: no ACK shortens them).
///
/// Both sides of every handshake are counted. 20 % loss, reordering, 5 % duplication and a
/// 240-byte MTU, so certificate flights and the second ClientHello span several datagrams.
#[test]
fn selective_retransmission_sends_fewer_records_than_whole_flights() {
    let mtu = 240;
    let net = SimConfig::default()
        .with_latency(Duration::from_millis(20))
        .with_jitter(Duration::from_millis(30))
        .with_loss(0.20)
        .with_duplicate(0.05)
        .with_mtu(mtu);
    let mut table = Vec::new();
    for mode in MODES13 {
        // (retransmission events, records retransmitted, whole-flight records at those events)
        let mut runs = [(0u64, 0u64, 0u64); 2];
        for (i, selective) in [true, false].into_iter().enumerate() {
            let r = &mut runs[i];
            check_seeds(0..seeds(), |seed| {
                let (client, server) = run13_with(mode, seed, net, mtu, true, selective)?;
                let c = client.ep.connection(&server_addr()).map(|c| c.stats()).unwrap_or_default();
                let s = server.ep.connection(&client_addr()).map(|c| c.stats()).unwrap_or_default();
                for st in [c, s] {
                    r.0 += st.retransmissions;
                    r.1 += st.records_retransmitted;
                    r.2 += st.whole_flight_records;
                }
                Ok::<_, String>(())
            });
        }
        table.push((mode, runs));
    }
    eprintln!(
        "DTLS 1.3, {} seeds per mode, 20 % loss, 5 % duplication, jitter, MTU {mtu}; records retransmitted:",
        seeds()
    );
    eprintln!(
        "{:<18} {:>10} {:>10} {:>11} | {:>10} {:>17}",
        "mode", "resends", "selective", "whole@same", "resends", "whole-flight run"
    );
    for (mode, [sel, whole]) in &table {
        eprintln!(
            "{:<18} {:>10} {:>10} {:>11} | {:>10} {:>17}",
            format!("{mode:?}"),
            sel.0,
            sel.1,
            sel.2,
            whole.0,
            whole.1
        );
    }
    let (sel_total, whole_total): (u64, u64) =
        table.iter().map(|(_, [s, w])| (s.1, w.1)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    eprintln!("all modes: selective {sel_total} records, whole-flight {whole_total} records");
    for (mode, [sel, whole]) in &table {
        // In whole-flight mode every retransmission is a whole flight.
        assert_eq!(whole.1, whole.2, "{mode:?}: whole-flight run resends whole flights");
        assert!(whole.1 > 0, "{mode:?}: the lossy network must cause retransmissions");
        assert!(sel.1 <= whole.1, "{mode:?}: selective {} > whole-flight {}", sel.1, whole.1);
    }
}

#[test]
fn key_update_both_ways_keeps_data_flowing() {
    let (server_cfg, mut client_cfg) = configs(Mode::Psk, None);
    Arc::make_mut(&mut client_cfg).version = DtlsVersion::Dtls13;
    let network = Network::new(5, SimConfig::default().with_loss(0.1));
    let now = network.now();
    let mut sim = Simulation::new(network);
    let mut server = Node::server(server_cfg, 1, now);
    let mut client = Node::client(client_cfg, 2, now, None, b"before key update");
    sim.run_until(&mut (&mut client, &mut server), |_, (c, _)| c.got_echo, Duration::from_secs(60), 10_000).unwrap();
    assert_eq!(client.ep.connection(&server_addr()).unwrap().send_epoch(), 3);
    client.ep.key_update(sim.now(), server_addr()).unwrap();
    // The update requested by the client makes both sides move to epoch 4 once acknowledged.
    sim.run_until(
        &mut (&mut client, &mut server),
        |_, (c, s)| {
            c.ep.connection(&server_addr()).is_some_and(|x| x.send_epoch() == 4)
                && s.ep.connection(&client_addr()).is_some_and(|x| x.send_epoch() == 4)
        },
        Duration::from_secs(60),
        10_000,
    )
    .unwrap_or_else(|e| panic!("{e}: client {:?} server {:?}", client.events, server.events));
    client.got_echo = false;
    client.message = Some((server_addr(), b"after key update".to_vec()));
    client.ep.send(server_addr(), b"after key update").unwrap();
    client.resend_at = Some(sim.now() + Duration::from_millis(500));
    sim.run_until(&mut (&mut client, &mut server), |_, (c, _)| c.got_echo, Duration::from_secs(60), 10_000).unwrap();
    assert!(client.events.iter().all(|(_, e)| !matches!(e, Event::Closed(_))));
}

#[test]
fn ticket_resumption_in_one_round_trip() {
    for mode in [Mode::EcdsaX509, Mode::Psk] {
        let (server_cfg, mut client_cfg) = configs(mode, None);
        Arc::make_mut(&mut client_cfg).version = DtlsVersion::Dtls13;
        let network = Network::new(9, SimConfig::default());
        let now = network.now();
        let mut sim = Simulation::new(network);
        let mut server = Node::server(server_cfg, 1, now);
        let mut client = Node::client(client_cfg.clone(), 2, now, None, b"first");
        sim.run_until(
            &mut (&mut client, &mut server),
            |_, (c, _)| c.got_echo && c.ep.connection(&server_addr()).is_some_and(|x| x.session().is_some()),
            Duration::from_secs(10),
            1000,
        )
        .unwrap_or_else(|e| panic!("{mode:?}: {e}: {:?}", client.events));
        let ticket = client.ep.connection(&server_addr()).unwrap().session().cloned().unwrap();
        assert!(ticket.is_dtls13_ticket());
        client.ep.close_all();
        let mut again = Node::client(client_cfg, 3, sim.now(), Some(ticket), b"resumed");
        sim.run_until(&mut (&mut again, &mut server), |_, (c, _)| c.got_echo, Duration::from_secs(10), 1000)
            .unwrap_or_else(|e| panic!("{mode:?}: {e}: {:?}", again.events));
        assert!(again.resumed, "{mode:?}: the second handshake must resume the ticket");
        let identity = again.events.iter().find_map(|(_, e)| match e {
            Event::Connected { identity, .. } => Some(identity.clone()),
            _ => None,
        });
        match mode {
            Mode::EcdsaX509 => assert!(matches!(identity, Some(PeerIdentity::Certificate(_))), "{identity:?}"),
            _ => assert_eq!(identity, Some(PeerIdentity::Psk(b"Client_identity".to_vec()))),
        }
    }
}
