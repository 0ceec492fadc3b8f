//! Ticket keys shared by a cluster through its session store.

use super::{AsyncSessionStore, KeySpace, StoreError};
use coaps_dtls::{TicketKey, TicketKeys};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Keeps a [`TicketKeys`] handle in step with the ticket keys in a store several servers
/// share, so any node opens any node's stateless tickets.
///
/// Time is cut into periods of [`TicketKeys::rotate_every`] counted from the Unix epoch; each
/// period has one key in the store under [`KeySpace::TicketKeys`], made by whichever node asks
/// for it first ([`AsyncSessionStore::put_if_absent`]: Redis `SET NX`) and kept for three
/// periods. A node seals under the current period's key and opens under it, the previous
/// period's and the next period's (published a period ahead), so rotation needs no
/// coordination beyond the store and every node's wall clock. Around a period boundary, nodes
/// whose clocks differ (or that have not refreshed yet) disagree on the current key for up to
/// the refresh interval plus the clock difference; as long as that is under a period, each
/// still opens what the others seal (the laggard holds the new key as next, the others the
/// old one as previous), so a rotation costs no full handshakes.
///
/// Until the first [`TicketKeySync::refresh`] succeeds (the store is unreachable at start),
/// the handle holds a key of this process only.
pub struct TicketKeySync {
    store: Arc<dyn AsyncSessionStore>,
    keys: TicketKeys,
    wall_clock: fn() -> SystemTime,
}

impl fmt::Debug for TicketKeySync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketKeySync").field("keys", &self.keys).finish_non_exhaustive()
    }
}

impl TicketKeySync {
    /// A sync over `store` with a period of `rotate_every` (at least one second); the keys
    /// start as a key of this process only, until [`TicketKeySync::refresh`] succeeds.
    pub fn new(store: Arc<dyn AsyncSessionStore>, rotate_every: Duration) -> Self {
        let rotate_every = Duration::from_secs(rotate_every.as_secs().max(1));
        let wall_clock = SystemTime::now;
        let mut rng = coaps_dtls::crypto::SeededRng::from_os();
        let local = TicketKey::generate(&mut rng, wall_clock());
        Self { store, keys: TicketKeys::shared(local, None, rotate_every), wall_clock }
    }

    /// The handle to put in [`ServerConfig::tickets`](coaps_dtls::ServerConfig::tickets) (as
    /// [`TicketMode::Stateless`](coaps_dtls::TicketMode::Stateless)) and give to
    /// [`ResumptionLayer::ticket_keys`](super::ResumptionLayer::ticket_keys).
    pub fn keys(&self) -> TicketKeys {
        self.keys.clone()
    }

    /// The wall clock that cuts time into periods; default `SystemTime::now`. Two syncs with
    /// different clocks act as nodes whose clocks differ.
    pub fn wall_clock(mut self, wall_clock: fn() -> SystemTime) -> Self {
        self.wall_clock = wall_clock;
        self
    }

    /// Loads (or makes) the current, the previous and the next period's keys from the store
    /// and installs them.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let period = self.keys.rotate_every().as_secs();
        let now = (self.wall_clock)().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let epoch = now / period;
        let current = self.key_for(epoch).await?;
        let previous = match epoch.checked_sub(1) {
            Some(e) => Some(self.key_for(e).await?),
            None => None,
        };
        let next = self.key_for(epoch.saturating_add(1)).await?;
        self.keys.install_with_next(current, previous, Some(next));
        Ok(())
    }

    async fn key_for(&self, epoch: u64) -> Result<TicketKey, StoreError> {
        let period = self.keys.rotate_every();
        let start = UNIX_EPOCH + Duration::from_secs(epoch.saturating_mul(period.as_secs()));
        let mut rng = coaps_dtls::crypto::SeededRng::from_os();
        let fresh = TicketKey::generate(&mut rng, start);
        let stored =
            self.store.put_if_absent(KeySpace::TicketKeys, &epoch.to_be_bytes(), fresh.to_bytes(), period * 3).await?;
        TicketKey::from_bytes(&stored)
            .ok_or_else(|| StoreError::Unavailable("the stored ticket key does not decode".into()))
    }

    /// Refreshes every `interval` (a tenth of the period, at most ten seconds, is a good
    /// choice) on a spawned task, for as long as the runtime runs; failures are logged at
    /// `warn` once, then at `debug`, and retried at the next tick.
    pub fn spawn(self, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut warned = false;
            let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match self.refresh().await {
                    Ok(()) => warned = false,
                    Err(e) if !warned => {
                        warned = true;
                        tracing::warn!(error = %e, "ticket keys not refreshed from the store; tickets sealed by other nodes may not open until it answers");
                    }
                    Err(e) => tracing::debug!(error = %e, "ticket keys not refreshed"),
                }
            }
        })
    }
}
