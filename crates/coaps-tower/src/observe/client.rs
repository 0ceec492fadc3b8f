//! The client side of observe (RFC 7641): [`observe`] registers and returns an
//! [`Observation`] whose [`next`](Observation::next) yields the first response and then each
//! fresh notification, in order (§3.4: one older than the newest seen is dropped);
//! [`cancel`](Observation::cancel) deregisters with a GET carrying Observe=1 (§3.6).

use crate::client::{Client, Error};
use coap_lite::{CoapOption, Packet};
use coaps_dtls::crypto::{Rng, SeededRng};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Notifications queued for a slow reader; beyond, the oldest news is dropped (a later
/// notification carries a newer state).
const QUEUE: usize = 64;

/// Whether a notification with sequence `v2` received at `t2` is newer than the one with
/// `v1` at `t1` (RFC 7641 §3.4): 24-bit serial-number arithmetic, or more than 128 s later.
pub fn is_fresh(v1: u32, t1: Instant, v2: u32, t2: Instant) -> bool {
    const HALF: u32 = 1 << 23;
    (v1 < v2 && v2 - v1 < HALF) || (v1 > v2 && v1 - v2 > HALF) || t2 > t1 + Duration::from_secs(128)
}

/// One observation. Dropping it stops the routing of its notifications; the client then
/// rejects the next confirmable one with a Reset, which also ends the server's registration
/// (§3.6). [`Observation::cancel`] ends it explicitly.
#[derive(Debug)]
pub struct Observation {
    client: Client,
    request: Packet,
    token: Vec<u8>,
    first: Option<Packet>,
    rx: mpsc::Receiver<Packet>,
    last: Option<(u32, Instant)>,
    registered: bool,
    ended: bool,
}

/// Sends `request` (a GET or FETCH) with Observe=0 and returns the observation. The request's
/// token is used when set (it must be unique among the client's observations), else a random
/// one is chosen.
pub async fn observe(client: &Client, mut request: Packet) -> Result<Observation, Error> {
    if request.get_token().is_empty() {
        let mut t = [0u8; 8];
        SeededRng::from_os().fill(&mut t);
        request.set_token(t.to_vec());
    }
    request.set_observe_value(0);
    let token = request.get_token().to_vec();
    let (tx, rx) = mpsc::channel(QUEUE);
    if !client.add_observer(token.clone(), tx) {
        return Err(Error::Closed(coaps_dtls::CloseReason::Local));
    }
    let first = match client.send(request.clone()).await {
        Ok(p) => p,
        Err(e) => {
            client.remove_observer(token);
            return Err(e);
        }
    };
    let registered = u8::from(first.header.code) >> 5 == 2 && first.get_observe_value().is_some();
    if !registered {
        client.remove_observer(token.clone());
    }
    let last = first.get_observe_value().and_then(Result::ok).map(|v| (v, Instant::now()));
    Ok(Observation { client: client.clone(), request, token, first: Some(first), rx, last, registered, ended: false })
}

impl Observation {
    /// Whether the server registered the observation (its first answer carried Observe).
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// The token of the observation.
    pub fn token(&self) -> &[u8] {
        &self.token
    }

    /// The first response, then each fresh notification. `None` when the observation ended:
    /// the server did not register it, sent a notification without Observe (an error, or
    /// the end, §3.2), or the association closed.
    pub async fn next(&mut self) -> Option<Packet> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if !self.registered || self.ended {
            return None;
        }
        loop {
            let n = self.rx.recv().await?;
            let now = Instant::now();
            let Some(Ok(v)) = n.get_observe_value() else {
                // No Observe: the final notification (§3.2).
                self.ended = true;
                self.client.remove_observer(self.token.clone());
                return Some(n);
            };
            if let Some((v1, t1)) = self.last
                && !is_fresh(v1, t1, v, now)
            {
                tracing::debug!(v1, v, "observe: stale notification dropped (RFC 7641 §3.4)");
                continue;
            }
            self.last = Some((v, now));
            return Some(n);
        }
    }

    /// Deregisters (§3.6: the same GET with Observe=1 and the same token) and returns the
    /// server's answer to that GET.
    pub async fn cancel(self) -> Result<Packet, Error> {
        let mut req = self.request.clone();
        req.clear_option(CoapOption::Observe);
        req.set_observe_value(1);
        let result = self.client.send(req).await;
        self.client.remove_observer(self.token.clone());
        result
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        self.client.remove_observer(self.token.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_follows_rfc7641_3_4() {
        let t = Instant::now();
        assert!(is_fresh(1, t, 2, t));
        assert!(!is_fresh(2, t, 1, t));
        assert!(!is_fresh(5, t, 5, t));
        // Wrap-around of the 24-bit sequence.
        assert!(is_fresh(0xFF_FFFF, t, 0, t));
        assert!(!is_fresh(0, t, 0xFF_FFFF, t));
        // Far apart: a reboot of the server is assumed after 128 s.
        assert!(is_fresh(10, t, 3, t + Duration::from_secs(129)));
    }
}
