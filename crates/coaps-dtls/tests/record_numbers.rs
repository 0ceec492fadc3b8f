//! The server never repeats an epoch-0 record sequence number across the stateless
//! HelloVerifyRequest and the handshake that follows it: peers such as GnuTLS drop a repeated
//! number as a replay (found with `coap-client-gnutls`, which then waited for a retransmission).

use coaps_test_support::dtls as common;

use coaps_dtls::internal::record::split_datagram;
use common::*;
use std::collections::HashSet;

#[test]
fn server_record_numbers_are_unique_across_the_cookie_exchange() {
    for mode in ALL_MODES {
        let (server_cfg, client_cfg) = configs(mode, None);
        let now = std::time::Instant::now();
        let mut server = Node::server(server_cfg, 1, now);
        let mut client = Node::client(client_cfg, 2, now, None, b"x");
        let mut seen = HashSet::new();
        for _ in 0..20 {
            while let Some(t) = client.ep.poll_transmit() {
                server.ep.handle_datagram(now, client_addr(), &t.payload);
            }
            let mut any = false;
            while let Some(t) = server.ep.poll_transmit() {
                any = true;
                for rec in split_datagram(&t.payload) {
                    let key = (rec.header.epoch, rec.header.sequence_number);
                    assert!(seen.insert(key), "{mode:?}: server repeated record number {key:?}");
                }
                client.ep.handle_datagram(now, server_addr(), &t.payload);
            }
            if !any {
                break;
            }
        }
        assert!(client.ep.connection(&server_addr()).is_some_and(|c| c.is_established()), "{mode:?}");
        assert!(seen.contains(&(0, 0)), "{mode:?}: the HelloVerifyRequest reuses the ClientHello's number 0");
    }
}
