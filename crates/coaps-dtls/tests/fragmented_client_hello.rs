//! Fragmented ClientHellos at a server endpoint: a client with a small MTU fragments its
//! ClientHello (in DTLS 1.3 above all the second one, which carries the HelloRetryRequest
//! cookie, RFC 9147 §5.1), and the endpoint reassembles it in a bounded area before the usual
//! stateless cookie gate. A flood of fragments never grows that area past its limits.

use coaps_test_support::dtls as common;

use coaps_dtls::HelloReassemblyConfig;
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::internal::codec::{ContentType, HandshakeType, ProtocolVersion};
use coaps_dtls::internal::msgs::HandshakeHeader;
use coaps_dtls::internal::record::RecordHeader;
use coaps_dtls::{DtlsVersion, Endpoint, ServerConfig};
use coaps_sim::{Network, SimConfig, Simulation};
use common::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One handshake with the client's MTU at `client_mtu` (the server's stays at the default):
/// the client's hellos are fragmented, the server's flights are not.
fn handshake(version: DtlsVersion, mode: Mode, client_mtu: usize, net: SimConfig) -> (Node, Node) {
    let (server_cfg, mut client_cfg) = configs(mode, None);
    {
        let c = Arc::make_mut(&mut client_cfg);
        c.common.mtu = client_mtu;
        c.version = version;
    }
    let network = Network::new(3, net);
    let now = network.now();
    let mut sim = Simulation::new(network);
    let mut server = Node::server(server_cfg, 11, now);
    let mut client = Node::client(client_cfg, 12, now, None, b"through a small MTU");
    sim.run_until(&mut (&mut client, &mut server), |_, (c, _)| c.got_echo, Duration::from_secs(120), 20_000)
        .unwrap_or_else(|e| panic!("{version:?} {mode:?}: {e}: {:?} / {:?}", client.events, server.events));
    (client, server)
}

#[test]
fn dtls13_fragmented_client_hellos_pass_the_hrr_cookie_gate() {
    for mode in [Mode::Psk, Mode::EcdsaX509] {
        let (client, server) = handshake(DtlsVersion::Dtls13, mode, 120, SimConfig::default());
        let s = server.ep.stats();
        // Both ClientHellos were fragmented: the first draws the stateless HRR, the second
        // (with the cookie) creates the association.
        assert_eq!(s.hellos_reassembled, 2, "{mode:?}: {s:?}");
        assert_eq!(s.hello_retry_requests, 1, "{mode:?}");
        assert_eq!(s.connections_created, 1, "{mode:?}");
        assert_eq!(s.hello_fragments_refused, 0, "{mode:?}");
        assert_eq!(server.ep.hello_reassembly_usage(), (0, 0), "nothing left behind");
        let conn = client.ep.connection(&server_addr()).unwrap();
        assert_eq!(conn.version(), ProtocolVersion::DTLS1_3);
        assert_eq!(conn.stats().retransmissions, 0, "{mode:?}: no fragment waited for a timer");
    }
}

#[test]
fn dtls12_fragmented_client_hellos_pass_the_hvr_cookie_gate() {
    for mode in [Mode::Psk, Mode::EcdsaX509] {
        let (client, server) = handshake(DtlsVersion::Dtls12, mode, 64, SimConfig::default());
        let s = server.ep.stats();
        assert_eq!(s.hellos_reassembled, 2, "{mode:?}: {s:?}");
        assert_eq!(s.hello_verify_requests, 1, "{mode:?}");
        assert_eq!(s.connections_created, 1, "{mode:?}");
        assert_eq!(server.ep.hello_reassembly_usage(), (0, 0));
        assert_eq!(client.ep.connection(&server_addr()).unwrap().version(), ProtocolVersion::DTLS1_2);
    }
}

#[test]
fn fragmented_client_hellos_survive_loss_and_reordering() {
    let net = SimConfig::default()
        .with_latency(Duration::from_millis(20))
        .with_jitter(Duration::from_millis(30))
        .with_loss(0.15)
        .with_duplicate(0.05);
    for version in [DtlsVersion::Dtls13, DtlsVersion::Dtls12] {
        let (_, server) = handshake(version, Mode::Psk, if version == DtlsVersion::Dtls12 { 64 } else { 100 }, net);
        assert!(server.ep.stats().hellos_reassembled >= 2, "{version:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Floods

fn record(seq: u64, hdr: HandshakeHeader, frag: &[u8]) -> Vec<u8> {
    let mut hs = Vec::new();
    hdr.encode(&mut hs);
    hs.extend_from_slice(frag);
    let mut out = Vec::new();
    RecordHeader {
        content_type: ContentType::Handshake,
        version: ProtocolVersion::DTLS1_2,
        epoch: 0,
        sequence_number: seq,
        length: hs.len() as u16,
    }
    .encode(&mut out);
    out.extend_from_slice(&hs);
    out
}

fn fragment_hdr(message_seq: u16, length: u32, offset: u32, frag_len: u32) -> HandshakeHeader {
    HandshakeHeader {
        msg_type: HandshakeType::ClientHello,
        length,
        message_seq,
        fragment_offset: offset,
        fragment_length: frag_len,
    }
}

fn spoofed(i: u32) -> SocketAddr {
    SocketAddr::from(([198, 18, (i >> 8) as u8, i as u8], 1024 + (i % 50_000) as u16))
}

fn server_with(limits: HelloReassemblyConfig) -> (Endpoint, Instant) {
    let (server_cfg, _) = configs(Mode::Psk, None);
    let cfg = Arc::new(ServerConfig { hello_reassembly: limits, ..(*server_cfg).clone() });
    let now = Instant::now();
    (Endpoint::server(cfg, SeededRng::from_seed_u64(1), now), now)
}

#[test]
fn a_fragment_flood_stays_within_the_limits() {
    let limits = HelloReassemblyConfig {
        max_entries: 8,
        max_hello_len: 2000,
        max_total_bytes: 6000,
        lifetime: Duration::from_secs(10),
    };
    let (mut ep, t0) = server_with(limits);
    let mut peak = (0, 0);
    for i in 0..20_000u32 {
        // First halves of hellos that never complete, from many addresses, of every size up to
        // the limit, plus repeats and overlaps from the same addresses.
        let len = 200 + (i * 37) % 1800;
        let d = record(u64::from(i), fragment_hdr((i % 3) as u16, len, 0, 100), &[0xab; 100]);
        let now = t0 + Duration::from_millis(u64::from(i / 10));
        ep.handle_datagram(now, spoofed(i % 700), &d);
        let (n, bytes) = ep.hello_reassembly_usage();
        assert!(n <= 8 && bytes <= 6000, "flood grew the area to {n} hellos, {bytes} bytes");
        peak = (peak.0.max(n), peak.1.max(bytes));
        while ep.poll_transmit().is_some() {}
    }
    assert_eq!(peak.0, 8, "the area was used to its limit");
    let s = ep.stats();
    assert_eq!(s.connections_created, 0);
    assert_eq!(s.hello_fragments, 20_000);
    assert!(s.hellos_evicted >= 20_000 - 8 - 700, "{s:?}");
    assert_eq!(s.hellos_reassembled, 0);

    // Declared lengths beyond the per-hello limit cost nothing.
    let before = ep.hello_reassembly_usage();
    for len in [2001, 1 << 14, 0xFF_FFFF] {
        ep.handle_datagram(t0, spoofed(9_999), &record(0, fragment_hdr(0, len, 0, 10), &[0; 10]));
    }
    assert_eq!(ep.hello_reassembly_usage(), before);
    assert_eq!(ep.stats().hello_fragments_refused, 3);

    // Inconsistent headers and non-hello fragments are refused, and nothing is answered.
    ep.handle_datagram(t0, spoofed(1), &record(0, fragment_hdr(0, 100, 95, 10), &[0; 10]));
    let mut sh = fragment_hdr(0, 100, 0, 10);
    sh.msg_type = HandshakeType::ServerHello;
    ep.handle_datagram(t0, spoofed(1), &record(0, sh, &[0; 10]));
    assert!(ep.poll_transmit().is_none());
    assert_eq!(ep.connection_count(), 0);
}

/// After a flood has filled the area, a real client with a small MTU still gets through: the
/// flood's partial hellos are evicted oldest first, the real client's hellos complete.
#[test]
fn a_real_fragmenting_client_completes_after_a_flood() {
    let (mut ep, t0) = server_with(HelloReassemblyConfig::default());
    for i in 0..5_000u32 {
        let d = record(0, fragment_hdr(1, 4000, 0, 200), &[1; 200]);
        ep.handle_datagram(t0, spoofed(i), &d);
    }
    let (n, bytes) = ep.hello_reassembly_usage();
    let d = HelloReassemblyConfig::default();
    assert!(n <= d.max_entries && bytes <= d.max_total_bytes, "{n} {bytes}");
    // A genuine DTLS 1.3 client with a 120-byte MTU, driven by hand through the simulator
    // wiring of `common::Node`.
    let (_, mut client_cfg) = configs(Mode::Psk, None);
    {
        let c = Arc::make_mut(&mut client_cfg);
        c.common.mtu = 120;
        c.version = DtlsVersion::Dtls13;
    }
    let network = Network::new(5, SimConfig::default());
    let mut sim = Simulation::new(network);
    let mut server = Node::server(configs(Mode::Psk, None).0, 7, t0);
    server.ep = ep;
    let mut client = Node::client(client_cfg, 8, sim.now(), None, b"after the flood");
    sim.run_until(&mut (&mut client, &mut server), |_, (c, _)| c.got_echo, Duration::from_secs(60), 20_000)
        .unwrap_or_else(|e| panic!("{e}: {:?}", client.events));
    assert!(server.ep.stats().hellos_reassembled >= 2);
}

/// A fragmented second ClientHello whose cookie is for another address is refused by the
/// cookie gate once reassembled, exactly like an unfragmented one.
#[test]
fn a_reassembled_hello_with_a_bad_cookie_creates_nothing() {
    let (server_cfg, mut client_cfg) = configs(Mode::Psk, None);
    {
        let c = Arc::make_mut(&mut client_cfg);
        c.common.mtu = 120;
        c.version = DtlsVersion::Dtls13;
    }
    let now = Instant::now();
    let mut server = Endpoint::server(server_cfg, SeededRng::from_seed_u64(2), now);
    let mut client = Endpoint::client(SeededRng::from_seed_u64(3));
    client.connect(now, server_addr(), client_cfg, "localhost", None).unwrap();
    // ClientHello1 fragments -> HRR.
    let ch1: Vec<_> = std::iter::from_fn(|| client.poll_transmit()).collect();
    assert!(ch1.len() > 1, "the first ClientHello is fragmented");
    for t in &ch1 {
        server.handle_datagram(now, client_addr(), &t.payload);
    }
    let hrr: Vec<_> = std::iter::from_fn(|| server.poll_transmit()).collect();
    assert_eq!(hrr.len(), 1);
    client.handle_datagram(now, server_addr(), &hrr[0].payload);
    let ch2: Vec<_> = std::iter::from_fn(|| client.poll_transmit()).collect();
    assert!(ch2.len() > 1, "the second ClientHello is fragmented");
    // Replayed from another address: the cookie is bound to the client's.
    let other: SocketAddr = "10.0.0.3:40000".parse().unwrap();
    for t in &ch2 {
        server.handle_datagram(now, other, &t.payload);
    }
    assert_eq!(server.stats().hellos_reassembled, 2);
    assert_eq!(server.stats().cookies_rejected, 1);
    assert_eq!(server.connection_count(), 0);
    // From the right address it is accepted.
    for t in &ch2 {
        server.handle_datagram(now, client_addr(), &t.payload);
    }
    assert_eq!(server.connection_count(), 1);
    assert!(server.poll_transmit().is_some(), "the server's flight");
}
