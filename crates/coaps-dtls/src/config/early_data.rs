//! DTLS 1.3 0-RTT early data (RFC 8446 §4.2.10 as amended by RFC 9147 §5.6): the server's
//! policy ([`EarlyDataConfig`], off by default) and what its hook sees ([`EarlyDataContext`]).
//!
//! # What happens on the wire
//!
//! * A server with [`crate::ServerConfig::early_data`] set puts the early_data extension with
//!   `max_early_data_size` in every NewSessionTicket it issues (RFC 8446 §4.6.1).
//! * A client resuming with such a ticket may offer early_data in its ClientHello and send
//!   application data in epoch 1, protected with keys from `client_early_traffic_secret`
//!   (RFC 8446 §7.1 "c e traffic"; RFC 9147 §6.1), the first record in the ClientHello's
//!   datagram when it fits ([`crate::Connection::client_with_early_data`]).
//! * The server accepts only when every check of RFC 8446 §4.2.10 holds: the PSK it selected is
//!   the first one offered and is one of its tickets that allows early data, the suite is the
//!   ticket's, no HelloRetryRequest came first, the ticket age is fresh (RFC 8446 §8.3) and the
//!   [`EarlyDataConfig::accept`] hook agrees. It then says so in EncryptedExtensions and hands
//!   each epoch-1 record to the application as [`crate::Event::EarlyData`], distinct from 1-RTT
//!   [`crate::Event::ApplicationData`]. More than `max_early_data_size` bytes abort the
//!   handshake with unexpected_message (RFC 8446 §4.2.10).
//! * Rejected early data is skipped by epoch number, counted in
//!   [`crate::Stats::early_records_skipped`], and never delivered.
//! * DTLS 1.3 has no EndOfEarlyData (RFC 9147 §5.6): the epoch number tells early data from
//!   the rest. Epoch-1 keys are dropped when the first epoch-3 record arrives ("Servers SHOULD
//!   NOT accept records from epoch 1 indefinitely once they are able to process records from
//!   epoch 3").
//! * The client learns the outcome from EncryptedExtensions and reports
//!   [`crate::Event::EarlyDataAccepted`] or [`crate::Event::EarlyDataRejected`] before
//!   [`crate::Event::Connected`].
//!
//! # Replay
//!
//! 0-RTT data is not protected against replay across connections (RFC 8446 §8). Besides the
//! freshness window, a ticket that carried accepted early data is removed from the server's
//! session store ("single-use tickets", RFC 8446 §8.1), so a replayed ClientHello finds no
//! ticket and gets a 1-RTT handshake without its early data. Only idempotent requests belong
//! in early data: the hook is where an application (the CoAP layer) decides.

use crate::codec::CipherSuite;
use crate::types::PeerIdentity;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How far a client's ticket age may stray from the server's (RFC 8446 §8.3) for a 1-RTT
/// resumption to skip the cookie exchange
/// ([`ServerConfig::skip_cookie_on_resumption`](crate::ServerConfig::skip_cookie_on_resumption)) when the server has no
/// [`EarlyDataConfig`] whose window applies.
pub const DEFAULT_RESUMPTION_FRESHNESS: Duration = Duration::from_secs(10);

/// The server's accept/reject decision for one offer of early data.
pub type EarlyDataHook = Arc<dyn Fn(&EarlyDataContext<'_>) -> bool + Send + Sync>;

/// What the server knows when it decides on early data (before any of it is decrypted).
#[derive(Debug, Clone)]
pub struct EarlyDataContext<'a> {
    /// The client's address.
    pub peer: SocketAddr,
    /// The ticket (PSK identity) the client resumes with.
    pub ticket: &'a [u8],
    /// The peer identity authenticated in the handshake that issued the ticket.
    pub peer_identity: &'a PeerIdentity,
    /// The cipher suite (the ticket's, RFC 8446 §4.2.10).
    pub suite: CipherSuite,
    /// The ticket's age as the client reports it (RFC 8446 §4.2.11.1).
    pub client_ticket_age: Duration,
    /// The ticket's age by the server's clock.
    pub server_ticket_age: Duration,
    /// The server_name the client sent, if any.
    pub server_name: Option<&'a str>,
}

/// Server policy for 0-RTT early data. `ServerConfig::early_data` is `None` by default:
/// tickets then do not allow early data and any offered is rejected.
#[derive(Clone)]
pub struct EarlyDataConfig {
    /// Most early-data bytes (application plaintext) per connection, announced in the tickets
    /// (RFC 8446 §4.2.10). Default 1024.
    pub max_early_data_size: u32,
    /// How far the client's view of the ticket age may stray from the server's before early
    /// data is rejected (RFC 8446 §8.3 freshness check). Default 10 s.
    pub freshness_window: Duration,
    /// Skip the HelloRetryRequest cookie for a ClientHello that offers early data with one of
    /// our tickets from the address the ticket was issued to (RFC 9147 §5.1: "the server MAY
    /// choose not to do a cookie exchange when a session is resumed ... and the IP address
    /// matches one associated with the PSK"). Without this, the cookie exchange of a default
    /// server always defeats early data, because a ClientHello after a HelloRetryRequest must
    /// not offer it (RFC 8446 §4.2.10). Default true. The answer to such a ClientHello carries
    /// no certificate, so it stays well within the three-times amplification limit.
    pub skip_cookie_on_resumption: bool,
    /// The application's decision; `None` accepts whatever passes the protocol checks.
    pub accept: Option<EarlyDataHook>,
}

impl Default for EarlyDataConfig {
    fn default() -> Self {
        Self {
            max_early_data_size: 1024,
            freshness_window: Duration::from_secs(10),
            skip_cookie_on_resumption: true,
            accept: None,
        }
    }
}

impl EarlyDataConfig {
    /// Early data up to `max_early_data_size` bytes, decided by `hook`.
    pub fn with_hook(
        max_early_data_size: u32,
        hook: impl Fn(&EarlyDataContext<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self { max_early_data_size, accept: Some(Arc::new(hook)), ..Self::default() }
    }

    /// Whether a ticket of the given ages is fresh enough (RFC 8446 §8.3): the client's age,
    /// added to the issue time, must land within the window around now.
    pub fn is_fresh(&self, client_age: Duration, server_age: Duration) -> bool {
        client_age.abs_diff(server_age) <= self.freshness_window
    }
}

impl fmt::Debug for EarlyDataConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EarlyDataConfig")
            .field("max_early_data_size", &self.max_early_data_size)
            .field("freshness_window", &self.freshness_window)
            .field("skip_cookie_on_resumption", &self.skip_cookie_on_resumption)
            .field("accept", &self.accept.as_ref().map(|_| "<hook>"))
            .finish()
    }
}

/// The client's key exchange when it resumes a DTLS 1.3 ticket (RFC 8446 §4.2.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResumptionKeyExchange {
    /// psk_dhe_ke: a fresh ECDHE key share beside the ticket, for forward secrecy.
    #[default]
    PskDheKe,
    /// psk_ke: the ticket alone, no key share. Much cheaper (no ECDHE on either side), but the
    /// resumed connection's keys depend only on the ticket (no forward secrecy against a
    /// later compromise of the ticket key). An external PSK offered beside the ticket runs
    /// psk_ke as well. A server that knows neither asks for a key share with a
    /// HelloRetryRequest and the handshake falls back to a full one.
    PskKe,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_window_is_symmetric_and_inclusive() {
        let c = EarlyDataConfig { freshness_window: Duration::from_secs(10), ..EarlyDataConfig::default() };
        assert!(c.is_fresh(Duration::from_secs(100), Duration::from_secs(100)));
        assert!(c.is_fresh(Duration::from_secs(90), Duration::from_secs(100)));
        assert!(c.is_fresh(Duration::from_secs(110), Duration::from_secs(100)));
        assert!(!c.is_fresh(Duration::from_millis(89_999), Duration::from_secs(100)));
        assert!(!c.is_fresh(Duration::from_millis(110_001), Duration::from_secs(100)));
    }

    #[test]
    fn default_is_conservative() {
        let c = EarlyDataConfig::default();
        assert_eq!(c.max_early_data_size, 1024);
        assert!(c.accept.is_none());
        assert!(format!("{c:?}").contains("max_early_data_size: 1024"));
    }
}
