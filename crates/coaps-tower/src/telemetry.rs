//! Counters through the [`metrics`] facade, named with the `coaps_` prefix. Nothing is
//! recorded unless the application installs a recorder (`coaps serve --metrics ADDR` installs
//! a Prometheus text exporter); without one every call is a no-op.
//!
//! | name | kind | labels |
//! | --- | --- | --- |
//! | `coaps_handshakes_total` | counter | `version` (`1.2`, `1.3`), `mode` (`full`, `resumed`), `outcome` (`ok` or the failure's class: `unknown_psk_identity`, `wrong_key`, `certificate_refused`, `no_client_certificate`, `no_extended_master_secret`, `incompatible`, `protocol_version`, `timeout`, `alert_received`, …) |
//! | `coaps_dropped_total` | counter | `reason` (`limit`, `reassembly`) |
//! | `coaps_requests_total` | counter | `method`, `code` (recorded by the application, see [`request`]) |
//! | `coaps_half_open` | gauge | none ([`Associations::half_open_count`](crate::Associations::half_open_count), set by the exporter) |
//! | `coaps_retransmissions_total` | counter | `version` ([`EndpointStats::retransmissions_dtls12`](coaps_dtls::EndpointStats::retransmissions_dtls12) and `…13`, set by the exporter) |
//!
//! Gauges and the counters the layers already keep (associations, half-open handshakes,
//! cookies, HelloRetryRequests, retransmissions, early data, resumption) are read from their
//! `stats()` by the exporter, not counted twice.

use coaps_dtls::ProtocolVersion;

/// One handshake that ended: established (`outcome` `ok`) or failed.
pub fn handshake(version: ProtocolVersion, mode: &'static str, outcome: &'static str) {
    let version = if version == ProtocolVersion::DTLS1_3 { "1.3" } else { "1.2" };
    metrics::counter!("coaps_handshakes_total", "version" => version, "mode" => mode, "outcome" => outcome)
        .increment(1);
}

/// Datagrams or handshakes dropped for `reason`.
pub fn dropped(reason: &'static str, n: u64) {
    metrics::counter!("coaps_dropped_total", "reason" => reason).increment(n);
}

/// One CoAP request answered: `method` (`GET`, …) and the response `code` (`2.05`, …).
pub fn request(method: &'static str, code: String) {
    metrics::counter!("coaps_requests_total", "method" => method, "code" => code).increment(1);
}
