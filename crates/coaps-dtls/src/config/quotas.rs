//! Fairness limits of a server's association table: how much of it one source address, one
//! network prefix or one authenticated identity may hold, and how long a half-open handshake
//! may wait. [`ServerConfig::max_connections`](crate::ServerConfig::max_connections) and
//! [`ServerConfig::max_handshakes`](crate::ServerConfig::max_handshakes) stay the global
//! bounds; these keep one host from filling them.

use std::time::Duration;

/// Default [`QuotaConfig::half_open_lifetime`]: 33 s.
///
/// RFC 6347 §4.2.4.1 starts the retransmission timer at 1 s and doubles it, so a client whose
/// flights are lost waits 1, 2, 4, 8, 16 and 32 s between retransmissions. The lifetime counts
/// from the client's last datagram, so 33 s outlasts every gap up to the sixth retransmission
/// (a live client on a lossy path is never dropped between two of its datagrams), while an
/// abandoned handshake no longer holds its slot for the full budget (it lived 120 s before).
/// Under pressure the least recently heard half-open handshake is evicted anyway
/// ([`ServerConfig::max_handshakes`](crate::ServerConfig::max_handshakes)), so a flood is not
/// held off by this lifetime but by the per-address and per-prefix caps.
pub(crate) const DEFAULT_HALF_OPEN_LIFETIME: Duration = Duration::from_secs(33);
/// Default [`QuotaConfig::max_half_open_per_address`].
pub(crate) const DEFAULT_MAX_HALF_OPEN_PER_ADDRESS: usize = 32;
/// Default [`QuotaConfig::max_half_open_per_prefix`].
pub(crate) const DEFAULT_MAX_HALF_OPEN_PER_PREFIX: usize = 128;
/// Default [`QuotaConfig::max_associations_per_address`].
pub(crate) const DEFAULT_MAX_ASSOCIATIONS_PER_ADDRESS: usize = 256;
/// Default [`QuotaConfig::min_idle_to_evict`].
pub(crate) const DEFAULT_MIN_IDLE_TO_EVICT: Duration = Duration::from_secs(30);

/// Per-source and per-identity limits of a server endpoint ([`ServerConfig::quotas`](crate::ServerConfig::quotas)).
///
/// A source address is the peer's IP address without the port (an IPv4-mapped IPv6 address
/// counts as the IPv4 address); its prefix is the /24 of an IPv4 address or the /56 of an
/// IPv6 one (the usual size of one customer's delegation). Every refusal and eviction is
/// counted in [`EndpointStats`](crate::EndpointStats) by reason. The bookkeeping costs O(1)
/// per datagram whatever the table size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaConfig {
    /// A handshake that has not completed and has received nothing from its peer for this
    /// long is forgotten (no alert: the peer is presumed gone). Default 15 s: RFC 6347
    /// §4.2.4.1 starts the retransmission timer at 1 s and doubles it, so a client whose
    /// flights are lost resends at 1, 3, 7 and 15 s; 15 s of silence is four losses in a row,
    /// while the full handshake budget would let an abandoned handshake hold its slot for
    /// minutes. Raise it for links whose retransmission timeouts are
    /// many seconds (NB-IoT, satellite: `coaps serve --link` does), or a lossy slow path loses
    /// handshakes the retransmission timers would have completed.
    pub half_open_lifetime: Duration,
    /// Most half-open handshakes from one source address; beyond it its new ClientHellos are
    /// refused. Default 32 (a NAT with many devices booting
    /// at once stays well under it: a handshake is half-open for a few round trips).
    pub max_half_open_per_address: usize,
    /// Most half-open handshakes from one /24 (IPv4) or /56 (IPv6) prefix. Default 128.
    pub max_half_open_per_prefix: usize,
    /// Most associations (half-open or established) with one source address. Default 256; a server whose clients sit behind one large
    /// NAT needs more.
    pub max_associations_per_address: usize,
    /// Most established associations of one authenticated identity (PSK identity, certificate
    /// or raw public key; anonymous clients are not counted); a handshake that would exceed
    /// it is closed when it completes. Default `usize::MAX` (no limit), because a fleet often
    /// shares one group PSK identity; set it where each device has its own credential.
    pub max_associations_per_identity: usize,
    /// When the table is full, the least-recently-active established association is evicted
    /// for a new handshake if it has been idle at least this long; otherwise the ClientHello
    /// is refused, so a busy table never sheds an active peer. Default 30 s.
    pub min_idle_to_evict: Duration,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            half_open_lifetime: DEFAULT_HALF_OPEN_LIFETIME,
            max_half_open_per_address: DEFAULT_MAX_HALF_OPEN_PER_ADDRESS,
            max_half_open_per_prefix: DEFAULT_MAX_HALF_OPEN_PER_PREFIX,
            max_associations_per_address: DEFAULT_MAX_ASSOCIATIONS_PER_ADDRESS,
            max_associations_per_identity: usize::MAX,
            min_idle_to_evict: DEFAULT_MIN_IDLE_TO_EVICT,
        }
    }
}
