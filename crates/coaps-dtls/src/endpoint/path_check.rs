//! Return routability checks of a server endpoint (RFC 9853 §5.1, the basic check): when an
//! association that agreed to RRC moves to a new address on a fresh authenticated CID record,
//! the endpoint keeps the amplification bound toward that address, sends a `path_challenge`
//! there, and lifts the bound only on the matching `path_response` from it. If none comes
//! within the timer T the association goes back to the last address that was checked.
//!
//! The engines only seal and open the messages ([`Connection::seal_rrc`],
//! [`Connection::take_rrc`]); addresses are the endpoint's business, so the same code serves
//! DTLS 1.3 once its associations negotiate CIDs.
//!
//! The enhanced check of RFC 9853 §5.2 (a challenge to the old address first, against an
//! off-path attacker racing the peer's records) is not implemented: the basic check bounds
//! what a racing attacker makes us send to a victim to the amplification limit, and the peer's
//! next fresh record from its real address moves the association back.

use super::Endpoint;
use crate::config::RrcConfig;
use crate::connection::Connection;
use crate::crypto::Rng;
use crate::rrc::{Cookie, ReturnRoutabilityCheck};
use crate::types::{Event, Transmit};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

/// One check under way, keyed by the unchecked address the association is filed under.
#[derive(Debug, Clone)]
struct PathCheck {
    /// The last address this association was checked at: where it goes back on failure.
    checked: SocketAddr,
    cookie: Cookie,
    started: Instant,
    /// Challenges sent so far.
    sent: u8,
    config: RrcConfig,
}

impl PathCheck {
    /// When the next challenge is due: evenly paced within T (RFC 9853 §5.3).
    fn next_send(&self) -> Option<Instant> {
        let n = self.config.challenges.max(1);
        (self.sent < n).then(|| self.started + self.config.timeout * u32::from(self.sent) / u32::from(n))
    }

    fn deadline(&self) -> Instant {
        self.started + self.config.timeout
    }

    fn next_deadline(&self) -> Instant {
        self.next_send().map_or(self.deadline(), |t| t.min(self.deadline()))
    }
}

/// The checks under way at one endpoint. Only an authenticated record that moved an
/// association starts one, so there are never more than associations.
#[derive(Debug, Default)]
pub(super) struct PathChecks {
    by_addr: HashMap<SocketAddr, PathCheck>,
}

impl PathChecks {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.by_addr.values().map(PathCheck::next_deadline).min()
    }

    /// The association at `addr` is gone or replaced.
    pub(super) fn remove(&mut self, addr: &SocketAddr) {
        self.by_addr.remove(addr);
    }
}

impl Endpoint {
    fn rrc_config(&self) -> RrcConfig {
        self.server
            .as_ref()
            .and_then(|s| s.connection_id.as_ref())
            .and_then(|c| c.return_routability_check)
            .unwrap_or_default()
    }

    /// The association moved from `old` to `new` (already filed there, its new address
    /// bounded). With RRC agreed, a check of `new` starts (RFC 9853 §4, §5.1); a move back to
    /// the address last checked needs none.
    pub(super) fn rrc_after_move(&mut self, now: Instant, old: SocketAddr, new: SocketAddr) {
        if !self.connections.get(&new).is_some_and(Connection::rrc_negotiated) {
            return;
        }
        let checked = self.paths.by_addr.remove(&old).map_or(old, |c| c.checked);
        if checked == new {
            self.cids.heard_from(new, 0, true);
            return;
        }
        let mut cookie = Cookie::default();
        self.rng.fill(&mut cookie);
        let config = self.rrc_config();
        self.paths.by_addr.insert(new, PathCheck { checked, cookie, started: now, sent: 0, config });
        self.rrc_send_due(now, new);
    }

    /// Sends the challenges of the check at `addr` that are due, within the address's
    /// amplification budget.
    fn rrc_send_due(&mut self, now: Instant, addr: SocketAddr) {
        let Some(check) = self.paths.by_addr.get_mut(&addr) else { return };
        let Some(conn) = self.connections.get_mut(&addr) else {
            self.paths.by_addr.remove(&addr);
            return;
        };
        while check.next_send().is_some_and(|t| t <= now) {
            check.sent += 1;
            let Some(d) = conn.seal_rrc(&ReturnRoutabilityCheck::PathChallenge(check.cookie)) else { continue };
            if self.cids.may_send(addr, d.len()) {
                self.stats.path_challenges_sent += 1;
                self.transmits.push_back(Transmit { destination: addr, payload: d });
            } else {
                self.stats.amplification_dropped += 1;
            }
        }
    }

    /// The RRC answers that the association at `home` took from a datagram from `from`: a
    /// `path_response` with the cookie of its check, from the checked address itself, ends
    /// the check and lifts the bound; anything else is silently discarded (RFC 9853 §5.4).
    pub(super) fn rrc_answers(&mut self, home: SocketAddr, from: SocketAddr) {
        let Some(conn) = self.connections.get_mut(&home) else { return };
        while let Some(m) = conn.take_rrc() {
            match m {
                ReturnRoutabilityCheck::PathResponse(c)
                    if from == home && self.paths.by_addr.get(&home).is_some_and(|p| p.cookie == c) =>
                {
                    self.paths.by_addr.remove(&home);
                    self.cids.heard_from(home, 0, true);
                    self.stats.paths_validated += 1;
                }
                _ => self.stats.rrc_discarded += 1,
            }
        }
    }

    /// Challenges due and checks that ran out of time (RFC 9853 §5.1: when T expires the
    /// binding is not updated: the association goes back to the address last checked).
    pub(super) fn rrc_timeout(&mut self, now: Instant) {
        if self.paths.by_addr.is_empty() {
            return;
        }
        let due: Vec<SocketAddr> =
            self.paths.by_addr.iter().filter(|(_, p)| p.next_deadline() <= now).map(|(a, _)| *a).collect();
        for at in due {
            let Some(p) = self.paths.by_addr.get(&at) else { continue };
            if p.deadline() > now {
                self.rrc_send_due(now, at);
                continue;
            }
            let back_to = p.checked;
            self.paths.by_addr.remove(&at);
            self.stats.path_checks_failed += 1;
            // The old address taken by another association since: this one stays, bounded.
            if self.connections.contains_key(&back_to) {
                continue;
            }
            let Some(mut conn) = self.connections.remove(&at) else { continue };
            conn.set_peer(back_to);
            let cid = conn.issued_cid().map(<[u8]>::to_vec).unwrap_or_default();
            self.connections.insert(back_to, conn);
            self.timers.set(at, None);
            if let Some(l) = self.limits.as_mut() {
                l.moved(&at, back_to);
            }
            self.cids.moved(&cid, at, back_to, 0);
            self.cids.heard_from(back_to, 0, true);
            self.events.push_back((back_to, Event::AddressChanged { old: at }));
            self.collect(back_to);
        }
    }
}
