use super::service::Retransmit;
use coaps_dtls::{LinkPolicyFactory, ServerConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tower_layer::Layer;

/// Counters of a [`RetransmitLayer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetransmitStats {
    /// Cookie round trips taken as samples.
    pub cookie_samples: u64,
    /// Peers with an RTT estimate now.
    pub peers: usize,
    /// Peers evicted from the bounded table.
    pub evicted: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) cookie_samples: AtomicU64,
}

/// Records the cookie round trip of every proven ClientHello as its peer's first RTT sample,
/// for the policies the engine builds from [`factory`](Self::factory). See the
/// [module docs](super).
#[derive(Debug, Clone)]
pub struct RetransmitLayer {
    pub(crate) factory: LinkPolicyFactory,
    pub(crate) counters: Arc<Counters>,
}

impl RetransmitLayer {
    /// A layer feeding `factory`'s per-peer table. The factory is told to leave the engine's
    /// cookie samples alone ([`LinkPolicyFactory::take_cookie_samples`]): this layer records
    /// them.
    pub fn new(factory: LinkPolicyFactory) -> Self {
        Self { factory: factory.take_cookie_samples(false), counters: Arc::default() }
    }

    /// Sets `config`'s retransmission policy to this layer's factory
    /// ([`LinkPolicyFactory::install`]). Call it before building the handshake layer from
    /// `config`.
    pub fn install(&self, config: &mut ServerConfig) {
        self.factory.install(&mut config.common);
    }

    /// The policy factory (and its per-peer estimates).
    pub fn factory(&self) -> &LinkPolicyFactory {
        &self.factory
    }

    /// The counters.
    pub fn stats(&self) -> RetransmitStats {
        let (peers, evicted) = self.factory.table_stats();
        RetransmitStats { cookie_samples: self.counters.cookie_samples.load(Ordering::Relaxed), peers, evicted }
    }
}

impl<S> Layer<S> for RetransmitLayer {
    type Service = Retransmit<S>;
    fn layer(&self, inner: S) -> Retransmit<S> {
        Retransmit { inner, layer: self.clone() }
    }
}
