//! A client offering DTLS 1.3 and 1.2 in one ClientHello (`DtlsVersion::Auto`) against
//! 1.3-only, 1.2-only and dual-version servers, on the simulator and by hand; the downgrade
//! defences of RFC 8446 §4.1.3 / RFC 9147 §5.3.

use coaps_test_support::dtls as common;

use coaps_dtls::crypto::SeededRng;
use coaps_dtls::internal::codec::{AlertDescription, Codec, ContentType, HandshakeType, ProtocolVersion};
use coaps_dtls::internal::msgs::HandshakeHeader;
use coaps_dtls::internal::msgs13::{ClientExtension13, ClientHello13};
use coaps_dtls::internal::record13::{Record13, encode_plaintext13, split_datagram13};
use coaps_dtls::{CloseReason, DtlsVersion, Endpoint, Error, Event, PeerIdentity, ServerConfig};
use coaps_sim::{Network, SimConfig, Simulation, check_seeds};
use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn seeds() -> u64 {
    std::env::var("COAPS_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(if cfg!(debug_assertions) {
        20
    } else {
        1000
    })
}

/// What the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Dual,
    Only13,
    Only12,
}

impl Server {
    fn expected(self) -> ProtocolVersion {
        if self == Server::Only12 { ProtocolVersion::DTLS1_2 } else { ProtocolVersion::DTLS1_3 }
    }
}

const MODES: [Mode; 5] = [Mode::Psk, Mode::EcdhePsk, Mode::EcdsaX509, Mode::EcdsaRawPublicKey, Mode::EcdsaMutual];

fn auto_configs(
    mode: Mode,
    server: Server,
    cookie: bool,
    mtu: usize,
) -> (Arc<ServerConfig>, Arc<coaps_dtls::ClientConfig>) {
    let (mut s, mut c) = configs(mode, None);
    let retransmit = coaps_dtls::RetransmitConfig {
        max_retransmissions: 12,
        handshake_timeout: Duration::from_secs(600),
        ..Default::default()
    };
    {
        let s = Arc::make_mut(&mut s);
        s.dtls13 = server != Server::Only12;
        s.dtls12 = server != Server::Only13;
        s.common.mtu = mtu;
        s.common.retransmit = retransmit;
        if !cookie {
            s.cookie = None;
        }
    }
    {
        let c = Arc::make_mut(&mut c);
        c.version = DtlsVersion::Auto;
        c.common.mtu = mtu;
        c.common.retransmit = retransmit;
    }
    (s, c)
}

fn run(
    server_cfg: Arc<ServerConfig>,
    client_cfg: Arc<coaps_dtls::ClientConfig>,
    seed: u64,
    net: SimConfig,
    resume: Option<coaps_dtls::Session>,
) -> Result<(Node, Node), String> {
    let network = Network::new(seed, net);
    let now = network.now();
    let mut sim = Simulation::new(network);
    let mut server = Node::server(server_cfg, seed ^ 0x5eed, now);
    let mut client = Node::client(client_cfg, seed ^ 0xc2, now, resume, b"hello from an auto client");
    run_to_echo(&mut sim, &mut client, &mut server)?;
    Ok((client, server))
}

fn version_of(client: &Node) -> ProtocolVersion {
    client.ep.connection(&server_addr()).expect("client association").version()
}

#[test]
fn auto_client_reaches_every_kind_of_server_in_every_mode() {
    for server in [Server::Dual, Server::Only13, Server::Only12] {
        for mode in MODES {
            if mode == Mode::EcdhePsk && server != Server::Only12 {
                // The same as Mode::Psk in DTLS 1.3 (psk_dhe_ke is always offered).
                continue;
            }
            for cookie in [true, false] {
                let (s, c) = auto_configs(mode, server, cookie, 1152);
                let (client, srv) = run(s, c, 1, SimConfig::default(), None)
                    .unwrap_or_else(|e| panic!("{server:?} {mode:?} cookie {cookie}: {e}"));
                let what = format!("{server:?} {mode:?} cookie {cookie}");
                assert_eq!(version_of(&client), server.expected(), "{what}");
                let conn = client.ep.connection(&server_addr()).unwrap();
                // The fallback adopts the ClientHello already sent: nothing is resent on an
                // ideal network, not even after a HelloVerifyRequest.
                assert_eq!(conn.stats().retransmissions, 0, "{what}");
                let server_identity = srv.events.iter().find_map(|(_, e)| match e {
                    Event::Connected { identity, .. } => Some(identity.clone()),
                    _ => None,
                });
                match mode {
                    Mode::Psk | Mode::EcdhePsk => {
                        assert_eq!(server_identity, Some(PeerIdentity::Psk(b"Client_identity".to_vec())), "{what}")
                    }
                    Mode::EcdsaMutual => {
                        assert!(matches!(server_identity, Some(PeerIdentity::Certificate(_))), "{what}")
                    }
                    _ => assert_eq!(server_identity, Some(PeerIdentity::Anonymous), "{what}"),
                }
                match (server, cookie) {
                    (Server::Only12, true) => assert_eq!(srv.ep.stats().hello_verify_requests, 1, "{what}"),
                    (Server::Only12, false) => assert_eq!(srv.ep.stats().hello_verify_requests, 0, "{what}"),
                    (_, true) => assert_eq!(srv.ep.stats().hello_retry_requests, 1, "{what}"),
                    (_, false) => assert_eq!(srv.ep.stats().hello_verify_requests, 0, "{what}"),
                }
            }
        }
    }
}

/// The first datagram of an auto client, decoded.
fn first_client_hello(cfg: Arc<coaps_dtls::ClientConfig>) -> (Vec<u8>, ClientHello13) {
    let mut ep = Endpoint::client(SeededRng::from_seed_u64(7));
    ep.connect(Instant::now(), server_addr(), cfg, "localhost", None).unwrap();
    let d = ep.poll_transmit().unwrap().payload;
    let Some(Record13::Plaintext(rec)) = split_datagram13(&d).next() else { panic!("plaintext record") };
    let mut r = coaps_dtls::internal::codec::Reader::new(rec.fragment);
    let (hdr, body) = HandshakeHeader::read_fragment(&mut r).unwrap();
    assert_eq!(hdr.msg_type, HandshakeType::ClientHello);
    (body.to_vec(), ClientHello13::read_exact(body).unwrap())
}

#[test]
fn the_client_hello_serves_both_versions() {
    let (_, c) = auto_configs(Mode::Psk, Server::Dual, true, 1152);
    let (body, ch) = first_client_hello(c.clone());
    assert!(ch.offers_version(ProtocolVersion::DTLS1_3) && ch.offers_version(ProtocolVersion::DTLS1_2));
    let sv = ch.extensions.iter().find_map(|e| match e {
        ClientExtension13::SupportedVersions(v) => Some(v.clone()),
        _ => None,
    });
    assert_eq!(sv, Some(vec![ProtocolVersion::DTLS1_3, ProtocolVersion::DTLS1_2]), "1.3 preferred");
    // 1.3 suites first, then the configured 1.2 PSK suite.
    let suites: Vec<u16> = ch.cipher_suites.iter().map(|s| u16::from(*s)).collect();
    assert_eq!(suites, vec![0x1303, 0x1301, 0x1305, 0xc0a8]);
    assert!(ch.extensions.contains(&ClientExtension13::ExtendedMasterSecret));
    assert!(ch.extensions.contains(&ClientExtension13::RenegotiationInfo(Vec::new())));
    assert!(ch.key_share_for(coaps_dtls::internal::codec::NamedGroup::Secp256r1).is_some());
    // RFC 8446 §4.2.11: pre_shared_key last.
    assert!(matches!(ch.extensions.last(), Some(ClientExtension13::PreSharedKey(_))));
    // The DTLS 1.2 decoder reads the same bytes and re-encodes them identically (the fallback
    // depends on it: CH2 after a HelloVerifyRequest = CH1 + cookie).
    let ch12 = coaps_dtls::internal::msgs::ClientHello::read_exact(&body).unwrap();
    assert_eq!(ch12.to_vec(), body);
    // PSK only: no ECDHE suite, so no ec_point_formats (as the 1.2 client alone would do).
    assert!(
        !ch12.extensions.iter().any(|e| matches!(e, coaps_dtls::internal::msgs::ClientExtension::EcPointFormats(_)))
    );

    // Certificates: ec_point_formats travels for the ECDHE_ECDSA suite.
    let (_, c) = auto_configs(Mode::EcdsaX509, Server::Dual, true, 1152);
    let (body, _) = first_client_hello(c);
    let ch12 = coaps_dtls::internal::msgs::ClientHello::read_exact(&body).unwrap();
    assert!(
        ch12.extensions.iter().any(|e| matches!(e, coaps_dtls::internal::msgs::ClientExtension::EcPointFormats(_)))
    );
    assert!(
        ch12.extensions
            .iter()
            .any(|e| matches!(e, coaps_dtls::internal::msgs::ClientExtension::SignatureAlgorithms(_)))
    );
}

fn lossy() -> SimConfig {
    SimConfig::default()
        .with_latency(Duration::from_millis(20))
        .with_jitter(Duration::from_millis(30))
        .with_loss(0.20)
        .with_duplicate(0.05)
}

/// The fallback path (and the 1.3 path of the same client) under 20 % loss, reordering and
/// duplication: `COAPS_SIM_SEEDS=1000` (the release default) for the full run.
#[test]
fn auto_client_survives_loss_reordering_and_duplication() {
    for (server, mode, cookie) in [
        (Server::Only12, Mode::Psk, true),
        (Server::Only12, Mode::EcdsaX509, true),
        (Server::Only12, Mode::EcdsaMutual, false),
        (Server::Dual, Mode::EcdsaX509, true),
    ] {
        let mut retx = 0;
        check_seeds(0..seeds(), |seed| {
            let (s, c) = auto_configs(mode, server, cookie, 1152);
            let (client, _) = run(s, c, seed, lossy(), None)?;
            if version_of(&client) != server.expected() {
                return Err(format!("negotiated {:?}", version_of(&client)));
            }
            retx += client.ep.connection(&server_addr()).map_or(0, |c| c.stats().retransmissions);
            Ok::<_, String>(())
        });
        eprintln!(
            "auto client vs {server:?} {mode:?} cookie {cookie}: {} seeds, {retx} client retransmissions",
            seeds()
        );
    }
}

#[test]
fn auto_client_resumes_the_session_of_the_version_it_has() {
    // A DTLS 1.3 ticket against a dual server: 1.3 resumption.
    let (s, c) = auto_configs(Mode::EcdsaX509, Server::Dual, true, 1152);
    let network = Network::new(3, SimConfig::default());
    let now = network.now();
    let mut sim = Simulation::new(network);
    let mut server = Node::server(s, 1, now);
    let mut first = Node::client(c.clone(), 2, now, None, b"first");
    let has_session = |c: &Node| c.ep.connection(&server_addr()).is_some_and(|x| x.session().is_some());
    sim.run_until(
        &mut (&mut first, &mut server),
        |_, (c, _)| c.got_echo && has_session(c),
        Duration::from_secs(10),
        1000,
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", first.events));
    let ticket = first.ep.connection(&server_addr()).unwrap().session().cloned().unwrap();
    assert!(ticket.is_dtls13_ticket());
    first.ep.close_all();
    let mut again = Node::client(c.clone(), 3, sim.now(), Some(ticket), b"resumed");
    sim.run_until(&mut (&mut again, &mut server), |_, (c, _)| c.got_echo, Duration::from_secs(10), 1000).unwrap();
    assert!(again.resumed);
    assert_eq!(version_of(&again), ProtocolVersion::DTLS1_3);

    // A DTLS 1.2 session against a 1.2-only server: an abbreviated 1.2 handshake.
    let (s12, c) = auto_configs(Mode::EcdsaX509, Server::Only12, true, 1152);
    let network = Network::new(4, SimConfig::default());
    let now = network.now();
    let mut sim = Simulation::new(network);
    let mut server12 = Node::server(s12, 1, now);
    let mut first = Node::client(c.clone(), 2, now, None, b"first");
    sim.run_until(&mut (&mut first, &mut server12), |_, (c, _)| c.got_echo, Duration::from_secs(10), 1000).unwrap();
    assert_eq!(version_of(&first), ProtocolVersion::DTLS1_2);
    let session12 = first.session.clone().expect("1.2 session");
    assert!(!session12.is_dtls13_ticket());
    first.ep.close_all();
    let mut again = Node::client(c.clone(), 3, sim.now(), Some(session12.clone()), b"resumed");
    sim.run_until(&mut (&mut again, &mut server12), |_, (c, _)| c.got_echo, Duration::from_secs(10), 1000)
        .unwrap_or_else(|e| panic!("{e}: {:?}", again.events));
    assert!(again.resumed, "the 1.2 session resumes with a server that still picks 1.2");
    assert_eq!(version_of(&again), ProtocolVersion::DTLS1_2);

    // The same 1.2 session against a server that now speaks 1.3: a full 1.3 handshake.
    let (s, _) = auto_configs(Mode::EcdsaX509, Server::Dual, true, 1152);
    let mut dual = Node::server(s, 9, sim.now());
    let mut upgraded = Node::client(c, 5, sim.now(), Some(session12), b"upgraded");
    sim.run_until(&mut (&mut upgraded, &mut dual), |_, (c, _)| c.got_echo, Duration::from_secs(10), 1000)
        .unwrap_or_else(|e| panic!("{e}: {:?}", upgraded.events));
    assert!(!upgraded.resumed);
    assert_eq!(version_of(&upgraded), ProtocolVersion::DTLS1_3);
}

// ---------------------------------------------------------------------------------------------
// Downgrade: datagrams moved by hand so the test can rewrite and inject them.

/// Moves datagrams between the two endpoints, passing the client's through `c2s`; when both
/// are quiet, time jumps to the next timer. Ends once the client's association is gone (closed)
/// or nothing is left to happen.
fn pump(
    client: &mut Endpoint,
    server: &mut Endpoint,
    start: Instant,
    c2s: &mut dyn FnMut(Vec<u8>) -> Vec<u8>,
) -> Vec<Event> {
    let mut now = start;
    let mut events = Vec::new();
    for _ in 0..1000 {
        let mut moved = false;
        while let Some(t) = client.poll_transmit() {
            server.handle_datagram(now, client_addr(), &c2s(t.payload));
            moved = true;
        }
        while let Some(t) = server.poll_transmit() {
            client.handle_datagram(now, server_addr(), &t.payload);
            moved = true;
        }
        while let Some((_, e)) = client.poll_event() {
            events.push(e);
        }
        while server.poll_event().is_some() {}
        if moved {
            continue;
        }
        if client.connection(&server_addr()).is_none() {
            break;
        }
        let Some(next) = [client.poll_timeout(), server.poll_timeout()].into_iter().flatten().min() else { break };
        now = now.max(next);
        client.handle_timeout(now);
        server.handle_timeout(now);
    }
    events
}

/// Rewrites a ClientHello datagram to offer DTLS 1.2 only (as an attacker stripping 1.3
/// would); anything else passes unchanged.
fn strip_dtls13(d: Vec<u8>) -> Vec<u8> {
    let Some(Record13::Plaintext(rec)) = split_datagram13(&d).next() else { return d };
    if rec.header.content_type != ContentType::Handshake || rec.header.epoch != 0 {
        return d;
    }
    let mut r = coaps_dtls::internal::codec::Reader::new(rec.fragment);
    let Ok((hdr, body)) = HandshakeHeader::read_fragment(&mut r) else { return d };
    if hdr.msg_type != HandshakeType::ClientHello {
        return d;
    }
    let mut ch = ClientHello13::read_exact(body).unwrap();
    for e in &mut ch.extensions {
        if let ClientExtension13::SupportedVersions(v) = e {
            v.retain(|v| *v != ProtocolVersion::DTLS1_3);
        }
    }
    let body = ch.to_vec();
    let mut hs = Vec::new();
    HandshakeHeader { length: body.len() as u32, fragment_length: body.len() as u32, ..hdr }.encode(&mut hs);
    hs.extend_from_slice(&body);
    let mut out = Vec::new();
    encode_plaintext13(ContentType::Handshake, 0, rec.header.sequence_number, &hs, &mut out);
    out
}

fn closed_error(events: &[Event]) -> Option<Error> {
    events.iter().find_map(|e| match e {
        Event::Closed(CloseReason::Error(e)) => Some(e.clone()),
        _ => None,
    })
}

#[test]
fn a_client_hello_stripped_of_dtls13_meets_the_downgrade_sentinel() {
    for mode in [Mode::Psk, Mode::EcdsaX509] {
        for cookie in [true, false] {
            let (s, c) = auto_configs(mode, Server::Dual, cookie, 1152);
            let now = Instant::now();
            let mut server = Endpoint::server(s, SeededRng::from_seed_u64(1), now);
            let mut client = Endpoint::client(SeededRng::from_seed_u64(2));
            client.connect(now, server_addr(), c, "localhost", None).unwrap();
            let events = pump(&mut client, &mut server, now, &mut strip_dtls13);
            let what = format!("{mode:?} cookie {cookie}");
            assert!(!events.iter().any(|e| matches!(e, Event::Connected { .. })), "{what}: {events:?}");
            match closed_error(&events) {
                Some(e @ Error::PeerMisbehaved(_)) if e.alert() == Some(AlertDescription::IllegalParameter) => {}
                other => panic!("{what}: expected an illegal_parameter abort, got {other:?}"),
            }
            // The server answered in 1.2 and got our illegal_parameter alert.
            assert_eq!(server.stats().hello_verify_requests, u64::from(cookie), "{what}");
            assert_eq!(server.connection_count(), 0, "{what}: the alert closed the server side");
        }
    }
}

#[test]
fn a_dtls12_client_hello_to_a_dual_server_gets_the_sentinel_and_a_12_client_ignores_it() {
    // A plain 1.2 client (no 1.3 offered) is not bothered by the sentinel (RFC 8446 §4.1.3
    // asks only 1.3-capable clients to check it).
    let (s, mut c) = auto_configs(Mode::EcdsaX509, Server::Dual, true, 1152);
    Arc::make_mut(&mut c).version = DtlsVersion::Dtls12;
    let (client, _) = run(s, c, 1, SimConfig::default(), None).unwrap();
    assert_eq!(version_of(&client), ProtocolVersion::DTLS1_2);
}

/// A HelloVerifyRequest injected before the real server's answer must not produce a 1.2
/// session with a server that speaks 1.3.
#[test]
fn an_injected_hello_verify_request_yields_no_dtls12_session() {
    for server_kind in [Server::Only13, Server::Dual] {
        for cookie in [true, false] {
            let what = format!("{server_kind:?} cookie {cookie}");
            let (s, c) = auto_configs(Mode::EcdsaX509, server_kind, cookie, 1152);
            let now = Instant::now();
            let mut server = Endpoint::server(s, SeededRng::from_seed_u64(1), now);
            let mut client = Endpoint::client(SeededRng::from_seed_u64(2));
            client.connect(now, server_addr(), c, "localhost", None).unwrap();
            let ch1 = client.poll_transmit().unwrap().payload;
            // The attacker answers first.
            let mut hvr = [0u8; 64];
            let n = coaps_dtls::internal::cookie::write_hello_verify_request(0, &[0xa5; 16], &mut hvr).unwrap();
            client.handle_datagram(now, server_addr(), &hvr[..n]);
            let ch2 = client.poll_transmit().expect("the client answers the HelloVerifyRequest").payload;
            // CH2 still offers DTLS 1.3 (RFC 6347 §4.2.1: CH1 plus the cookie).
            let Some(Record13::Plaintext(rec)) = split_datagram13(&ch2).next() else { panic!() };
            let mut r = coaps_dtls::internal::codec::Reader::new(rec.fragment);
            let (_, body) = HandshakeHeader::read_fragment(&mut r).unwrap();
            let ch2_parsed = ClientHello13::read_exact(body).unwrap();
            assert!(ch2_parsed.offers_version(ProtocolVersion::DTLS1_3), "{what}");
            assert_eq!(ch2_parsed.legacy_cookie, vec![0xa5; 16], "{what}");
            // Now the real server sees both hellos, and the exchange runs its course.
            server.handle_datagram(now, client_addr(), &ch1);
            server.handle_datagram(now, client_addr(), &ch2);
            let events = pump(&mut client, &mut server, now, &mut |d| d);
            assert!(!events.iter().any(|e| matches!(e, Event::Connected { .. })), "{what}: {events:?}");
            assert!(client.connection(&server_addr()).is_none(), "{what}: the client gave up");
            // The 1.3 server's answer to the first ClientHello unmasks the HelloVerifyRequest
            // (a 1.3 server sends none) and the client aborts with illegal_parameter, or the
            // server's illegal_parameter alert (RFC 9147 §5.3: a 1.3 ClientHello with a
            // legacy_cookie) arrives first. No DTLS 1.2 session in any case.
            match closed_error(&events) {
                Some(e @ Error::PeerMisbehaved(_)) if e.alert() == Some(AlertDescription::IllegalParameter) => {}
                Some(Error::AlertReceived(AlertDescription::IllegalParameter)) => {}
                other => panic!("{what}: unexpected outcome {other:?}"),
            }
            eprintln!("{what}: {:?}", closed_error(&events));
        }
    }
}
