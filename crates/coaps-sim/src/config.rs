//! Link impairment configuration.

use std::time::Duration;

/// Impairments applied to datagrams travelling over one direction of a link.
///
/// Probabilities are in `[0, 1]`: values `<= 0` (or NaN) never trigger, values `>= 1` always do.
/// A [`Network`](crate::Network) has a default configuration and optional per-direction
/// overrides ([`Network::set_link`](crate::Network::set_link)), so "20 % loss each way" or an
/// asymmetric link are both one call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// Fixed one-way delay added to every datagram.
    pub latency: Duration,
    /// Upper bound of an extra uniform delay in `[0, jitter]` drawn per datagram. Non-zero
    /// jitter reorders datagrams whose send times are closer than `jitter`.
    pub jitter: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is delivered twice; the copy gets its own delay (so it may
    /// overtake the original) and its own corruption draw.
    pub duplicate: f64,
    /// Probability that one uniformly chosen bit of a delivered copy is flipped.
    pub corrupt: f64,
    /// Largest payload, in bytes, the link carries; larger datagrams are dropped and counted
    /// in [`NetStats::dropped_mtu`](crate::NetStats::dropped_mtu).
    pub mtu: usize,
}

impl Default for SimConfig {
    /// 10 ms latency, no jitter, loss, duplication or corruption, 1500-byte MTU.
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            corrupt: 0.0,
            mtu: 1500,
        }
    }
}

impl SimConfig {
    /// A perfect link: zero latency, no impairments, unbounded MTU.
    pub fn ideal() -> Self {
        Self { latency: Duration::ZERO, mtu: usize::MAX, ..Self::default() }
    }

    /// Sets [`latency`](Self::latency).
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Sets [`jitter`](Self::jitter).
    #[must_use]
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets [`loss`](Self::loss).
    #[must_use]
    pub fn with_loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }

    /// Sets [`duplicate`](Self::duplicate).
    #[must_use]
    pub fn with_duplicate(mut self, duplicate: f64) -> Self {
        self.duplicate = duplicate;
        self
    }

    /// Sets [`corrupt`](Self::corrupt).
    #[must_use]
    pub fn with_corrupt(mut self, corrupt: f64) -> Self {
        self.corrupt = corrupt;
        self
    }

    /// Sets [`mtu`](Self::mtu).
    #[must_use]
    pub fn with_mtu(mut self, mtu: usize) -> Self {
        self.mtu = mtu;
        self
    }
}
