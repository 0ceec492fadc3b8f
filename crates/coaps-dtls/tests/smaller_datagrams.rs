//! A path that silently drops datagrams above 500 bytes, below the configured MTU of 1400
//! (issue 11: "after repeated losses of a fragmented flight, resend it in smaller datagrams"):
//! after two timeouts of a flight, the engine halves its datagram size (down to
//! `RetransmitConfig::min_datagram_size`), so the certificate flights get through and the
//! handshake completes; with the behaviour switched off it never does.

use coaps_test_support::dtls as common;

use coaps_dtls::{DtlsVersion, RetransmitConfig};
use coaps_sim::{Network, SimConfig, Simulation};
use common::*;
use std::sync::Arc;
use std::time::Duration;

const CONFIGURED_MTU: usize = 1400;
const PATH_MTU: usize = 500;

/// One ECDSA handshake in `mode` (certificate flights well above 500 bytes) and an echo, with
/// `retransmit` on both sides. Returns the datagrams the link dropped for their size.
fn run(mode: Mode, version: DtlsVersion, retransmit: RetransmitConfig) -> Result<u64, String> {
    let (mut server_cfg, mut client_cfg) = configs(mode, None);
    Arc::make_mut(&mut client_cfg).version = version;
    Arc::make_mut(&mut server_cfg).dtls13 = version == DtlsVersion::Dtls13;
    for common in [&mut Arc::make_mut(&mut server_cfg).common, &mut Arc::make_mut(&mut client_cfg).common] {
        common.mtu = CONFIGURED_MTU;
        common.retransmit = retransmit;
    }
    let network = Network::new(1, SimConfig::default().with_latency(Duration::from_millis(50)).with_mtu(PATH_MTU));
    let now = network.now();
    let mut sim = Simulation::new(network);
    let mut server = Node::server(server_cfg, 3, now);
    let mut client = Node::client(client_cfg, 4, now, None, b"through a narrow path");
    let r = run_to_echo(&mut sim, &mut client, &mut server);
    r.map(|()| sim.network().stats().dropped_mtu)
}

#[test]
fn large_flights_get_through_a_smaller_path_mtu() {
    for (mode, version) in [Mode::EcdsaX509, Mode::EcdsaMutual]
        .into_iter()
        .flat_map(|m| [(m, DtlsVersion::Dtls12), (m, DtlsVersion::Dtls13)])
    {
        let dropped =
            run(mode, version, RetransmitConfig::default()).unwrap_or_else(|e| panic!("{mode:?} {version:?}: {e}"));
        // The large datagrams went out (and were dropped) first: the path did need the back-off.
        assert!(dropped >= 2, "{mode:?} {version:?}: only {dropped} datagrams dropped for their size");
        // Without it, the same path never carries the certificate flight.
        let off = RetransmitConfig { smaller_datagrams_after: 0, ..RetransmitConfig::default() };
        let err = run(mode, version, off).expect_err("no handshake through a 500-byte path at an MTU of 1400");
        assert!(err.contains("HandshakeTimeout"), "{mode:?} {version:?}: {err}");
    }
}
