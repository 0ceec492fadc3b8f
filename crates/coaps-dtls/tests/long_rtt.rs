//! Handshakes on a path whose round trip (1.5 s) exceeds the RFC 6347 retransmission timer
//! (1 s), as behind `coaps relay --delay 750`: every first flight goes out twice, and the
//! server answers both copies. The answers to the copy must be ignored (RFC 6347 §4.2.1,
//! §4.2.4), never end the handshake.
//!
//! The first ClientHello's second HelloVerifyRequest (a newer cookie) arrives exactly when the
//! client's timer for its second ClientHello fires (both one timer plus one round trip after
//! the start), so the outcome hung on which came first: a little jitter lets the seeds cover
//! both orders. Before the fix about half of them ended with unexpected_message.

use coaps_test_support::dtls as common;

use coaps_dtls::{DtlsVersion, LinkPolicyFactory, LinkProfile};
use coaps_sim::{Network, SimConfig, Simulation, check_seeds};
use common::*;
use std::sync::Arc;
use std::time::Duration;

const SEEDS: u64 = 40;

/// A 1.5 s RTT (740 ms plus up to 20 ms each way), no loss.
fn slow_path() -> SimConfig {
    SimConfig::default().with_latency(Duration::from_millis(740)).with_jitter(Duration::from_millis(20))
}

/// Runs one ECDHE-PSK handshake (the CLI's default suite) and an echo; the client has the RFC
/// timers, the server `server_link` (RFC timers when `None`). Returns the client's
/// retransmissions.
fn run(version: DtlsVersion, server_link: Option<LinkProfile>, seed: u64) -> Result<u64, String> {
    let (mut server_cfg, mut client_cfg) = configs(Mode::EcdhePsk, None);
    if version == DtlsVersion::Dtls13 {
        Arc::make_mut(&mut client_cfg).version = version;
        Arc::make_mut(&mut server_cfg).dtls13 = true;
    }
    if let Some(p) = server_link {
        LinkPolicyFactory::new(p).install(&mut Arc::make_mut(&mut server_cfg).common);
    }
    let network = Network::new(seed, slow_path());
    let now = network.now();
    let mut sim = Simulation::new(network);
    let mut server = Node::server(server_cfg, seed ^ 0x5eed, now);
    let mut client = Node::client(client_cfg, seed ^ 0xc1, now, None, b"hello over a slow path");
    run_to_echo(&mut sim, &mut client, &mut server)?;
    Ok(client.ep.connection(&server_addr()).map_or(0, |c| c.stats().retransmissions))
}

fn every_seed_completes(version: DtlsVersion, server_link: Option<LinkProfile>) {
    let mut retransmissions = 0;
    check_seeds(0..SEEDS, |seed| {
        retransmissions += run(version, server_link, seed)?;
        Ok::<_, String>(())
    });
    // The point of the scenario: the client's 1 s timer fired before every answer.
    assert!(retransmissions >= 2 * SEEDS, "{version:?}: only {retransmissions} client retransmissions");
}

#[test]
fn dtls12_rfc_timers_complete_at_1500_ms_rtt_against_an_auto_server() {
    every_seed_completes(DtlsVersion::Dtls12, Some(LinkProfile::Auto));
}

#[test]
fn dtls12_rfc_timers_complete_at_1500_ms_rtt_against_rfc_timers() {
    every_seed_completes(DtlsVersion::Dtls12, None);
}

#[test]
fn dtls13_rfc_timers_complete_at_1500_ms_rtt_against_an_auto_server() {
    every_seed_completes(DtlsVersion::Dtls13, Some(LinkProfile::Auto));
}

#[test]
fn dtls13_rfc_timers_complete_at_1500_ms_rtt_against_rfc_timers() {
    every_seed_completes(DtlsVersion::Dtls13, None);
}
