//! The lines an operator sees at the default level: each refused or failed handshake once at
//! info with the peer, its identity when known, the DTLS version and the reason in plain
//! words; limits reached at warn, rate-limited.

use crate::types::DisplayAddr;
use coaps_dtls::{
    AlertDescription, CipherSuite, CloseReason, Error, HandshakeFailure, Incompatible, PeerIdentity, ProtocolVersion,
};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a limit warning may repeat.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(10);

/// A log line that appears at most once per period; the next one says how many were held
/// back in between.
#[derive(Debug)]
pub(crate) struct RateLimited {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimited {
    pub(crate) fn new(every: Duration) -> Self {
        Self { every, state: Mutex::new((None, 0)) }
    }

    /// Runs `log` with the number of occurrences suppressed since the last line, unless a line
    /// went out less than a period ago (then only counts this one).
    pub(crate) fn warn(&self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match st.0 {
            Some(last) if now.duration_since(last) < self.every => st.1 += 1,
            _ => {
                let suppressed = std::mem::take(&mut st.1);
                st.0 = Some(now);
                drop(st);
                log(suppressed);
            }
        }
    }
}

/// `DTLS 1.2` / `DTLS 1.3`.
pub(crate) fn version_name(v: ProtocolVersion) -> &'static str {
    if v == ProtocolVersion::DTLS1_3 { "DTLS 1.3" } else { "DTLS 1.2" }
}

/// A short label for a failure (metrics) and a sentence an operator understands.
pub(crate) fn failure_reason(reason: &CloseReason) -> (&'static str, String) {
    let e = match reason {
        CloseReason::Local => return ("local_close", "closed locally".into()),
        CloseReason::PeerClosed => return ("peer_closed", "the peer closed the handshake".into()),
        CloseReason::Error(e) => e,
    };
    match e {
        Error::UnknownPskIdentity => ("unknown_psk_identity", "unknown PSK identity".into()),
        Error::DecryptError(what) => {
            ("wrong_key", format!("{what} did not verify: wrong PSK key (or a tampered handshake)"))
        }
        Error::BadRecordMac(what) => {
            ("wrong_key", format!("{what} did not decrypt: wrong PSK key (or a forged record); bad_record_mac sent"))
        }
        Error::Certificate(c) => ("certificate_refused", format!("certificate refused: {c}")),
        Error::Incompatible(Incompatible::ClientCertificateRequired12 | Incompatible::ClientCertificateRequired13) => {
            ("no_client_certificate", "the client sent no certificate, and one is required".into())
        }
        Error::Incompatible(Incompatible::ClientWithoutEms) => (
            "no_extended_master_secret",
            "the client does not offer extended_master_secret (RFC 7627); `--allow-no-ems` lets such clients in".into(),
        ),
        Error::Incompatible(c) => ("incompatible", format!("no common parameters: {c}")),
        Error::AlertReceived(a) => ("alert_received", format!("the peer sent the fatal alert {a:?}")),
        Error::HandshakeTimeout => ("timeout", "the peer stopped answering (handshake timeout)".into()),
        other => ("protocol_error", other.to_string()),
    }
}

/// One info line per failed handshake.
pub(crate) fn handshake_failed(peer: SocketAddr, f: &HandshakeFailure) {
    let (mut label, mut why) = failure_reason(&f.reason);
    if f.reason == CloseReason::Error(Error::HandshakeTimeout) && f.records_auth_failed > 0 {
        label = "wrong_key";
        why = format!(
            "handshake timeout after {} encrypted record(s) from the peer did not decrypt: wrong PSK key?",
            f.records_auth_failed
        );
    }
    crate::telemetry::handshake(f.version, "full", label);
    let version = version_name(f.version);
    if f.identity == PeerIdentity::Anonymous {
        tracing::info!(peer = %DisplayAddr(peer), version, "DTLS handshake failed: {why}");
    } else {
        tracing::info!(peer = %DisplayAddr(peer), identity = %f.identity, version, "DTLS handshake failed: {why}");
    }
}

/// One info line per established association.
pub(crate) fn established(
    peer: SocketAddr,
    identity: &PeerIdentity,
    suite: CipherSuite,
    resumed: bool,
    version: Option<ProtocolVersion>,
    without_ems: bool,
) {
    let v = version.unwrap_or(ProtocolVersion::DTLS1_2);
    crate::telemetry::handshake(v, if resumed { "resumed" } else { "full" }, "ok");
    let version = version_name(v);
    let mode = if resumed { "resumed" } else { "full" };
    if without_ems {
        tracing::warn!(
            peer = %DisplayAddr(peer), %identity, version, ?suite, mode,
            "DTLS association established WITHOUT extended_master_secret (--allow-no-ems; RFC 7627 §5.3)"
        );
    } else {
        tracing::info!(peer = %DisplayAddr(peer), %identity, version, ?suite, mode, "DTLS association established");
    }
}

/// A ClientHello the cookie gate answered with a fatal alert: a version this server does not
/// speak (protocol_version), or DTLS 1.3 with no cipher suite in common (handshake_failure).
pub(crate) fn hello_refused(peer: SocketAddr, alert: AlertDescription) {
    if alert == AlertDescription::ProtocolVersion {
        crate::telemetry::handshake(ProtocolVersion::DTLS1_2, "full", "protocol_version");
        tracing::info!(
            peer = %DisplayAddr(peer),
            version = "DTLS 1.2",
            "DTLS handshake refused: the client offers only DTLS 1.2 and this server speaks only DTLS 1.3 \
             (protocol_version alert sent)"
        );
    } else {
        crate::telemetry::handshake(ProtocolVersion::DTLS1_3, "full", "incompatible");
        tracing::info!(
            peer = %DisplayAddr(peer),
            version = "DTLS 1.3",
            "DTLS handshake refused: the client offers no DTLS 1.3 cipher suite this server accepts \
             (--suite / CommonConfig::suites13; {alert:?} alert sent)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limited_counts_what_it_holds_back() {
        let r = RateLimited::new(Duration::from_secs(3600));
        let mut lines = Vec::new();
        for _ in 0..5 {
            r.warn(|n| lines.push(n));
        }
        assert_eq!(lines, [0]);
        let r = RateLimited::new(Duration::ZERO);
        r.warn(|n| lines.push(n));
        r.warn(|n| lines.push(n));
        assert_eq!(lines, [0, 0, 0]);
    }

    #[test]
    fn reasons_in_plain_words() {
        let r = |e| failure_reason(&CloseReason::Error(e));
        assert_eq!(r(Error::UnknownPskIdentity).0, "unknown_psk_identity");
        assert!(r(Error::DecryptError("client Finished")).1.contains("wrong PSK key"));
        assert!(r(Error::Incompatible(Incompatible::ClientWithoutEms)).1.contains("--allow-no-ems"));
        assert!(r(Error::Incompatible(Incompatible::ClientCertificateRequired12)).1.contains("no certificate"));
        assert_eq!(r(Error::HandshakeTimeout).0, "timeout");
    }
}
