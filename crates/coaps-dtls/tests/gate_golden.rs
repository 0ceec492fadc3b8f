//! The stateless gate's answers, byte for byte, as they were before the gate moved into
//! `gate/`: a HelloVerifyRequest (DTLS 1.2) and stateless HelloRetryRequests (DTLS 1.3, with
//! for seeded clients and a seeded server.

use coaps_test_support::dtls as common;

use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{DtlsVersion, Endpoint};
use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The server's answers to the first ClientHello of a seeded client, and to its second one.
fn answers(version: DtlsVersion, mode: Mode) -> Vec<String> {
    let (server_cfg, mut client_cfg) = configs(mode, None);
    Arc::make_mut(&mut client_cfg).version = version;
    let now = Instant::now();
    let mut server = Endpoint::server(server_cfg, SeededRng::from_seed_u64(21), now);
    let mut client = Endpoint::client(SeededRng::from_seed_u64(22));
    client.connect(now, server_addr(), client_cfg, "localhost", None).unwrap();
    let mut out = Vec::new();
    let t1 = now + Duration::from_millis(1234);
    let ch1 = client.poll_transmit().unwrap().payload;
    server.handle_datagram(t1, client_addr(), &ch1);
    let a1 = server.poll_transmit().unwrap().payload;
    out.push(hex(&a1));
    client.handle_datagram(t1, server_addr(), &a1);
    let ch2 = client.poll_transmit().unwrap().payload;
    // The same first ClientHello from another port: another cookie.
    let mut other = client_addr();
    other.set_port(other.port() + 1);
    server.handle_datagram(t1 + Duration::from_millis(5), other, &ch1);
    out.push(hex(&server.poll_transmit().unwrap().payload));
    server.handle_datagram(t1 + Duration::from_millis(40), client_addr(), &ch2);
    assert_eq!(server.connection_count(), 1);
    out
}

#[test]
fn gate_answers_are_unchanged() {
    let got = [
        answers(DtlsVersion::Dtls12, Mode::Psk),
        answers(DtlsVersion::Dtls13, Mode::Psk),
        answers(DtlsVersion::Dtls13, Mode::EcdsaX509),
    ];
    if std::env::var_os("COAPS_PRINT_GOLDEN").is_some() {
        println!("{got:#?}");
    }
    let want: [[&str; 2]; 3] = GOLDEN;
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g[0], w[0]);
        assert_eq!(g[1], w[1]);
    }
}

/// Recorded from the gate before it moved into `gate/` (commit a4e4b31).
const GOLDEN: [[&str; 2]; 3] = [
    [
        "16feff00000000000000000024030000180000000000000018feff1500000004d22b00f3d798b3b92589b0b3b8f3599115",
        "16feff00000000000000000024030000180000000000000018feff1500000004d7d1265af944ccb25f7cfe7054d4d39f25",
    ],
    [
        "16fefd000000000000000000760200006a000000000000006afefdcf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c001303000042002b0002fefc002c0038003600000004d2560215900407d7ed4523a5fb2f1f6bf57e56612411f9fe6aef58f7a3d5a1092d65522c00ca7beb8a4e24d5a375aa2b66d7",
        "16fefd000000000000000000760200006a000000000000006afefdcf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c001303000042002b0002fefc002c0038003600000004d7d8569488d5b62283bc88d620e98ff1b5651beb0c08b81317fc8f5e227fef860b0b6b3bee21bbeca3a4fe9d58991a687584",
    ],
    [
        "16fefd000000000000000000760200006a000000000000006afefdcf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c001303000042002b0002fefc002c0038003600000004d2fec1fa2702da3d4666bd317d0b3365211aef64cea4107066804618a18edcf60bafedb7f45f2f4702ddddc6d0844ed21ea6",
        "16fefd000000000000000000760200006a000000000000006afefdcf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c001303000042002b0002fefc002c0038003600000004d71b738e42832829573b8c8319d14b521b7601812f33ca5d9a089ebf2e4a96172bad636abf68d2d144745581ebfee4685936",
    ],
];
