//! Return routability checks of a server endpoint (RFC 9853 §5). When an association that
//! agreed to RRC moves to a new address on a fresh authenticated CID record, it is filed
//! there at once but the endpoint keeps the amplification bound toward that address until
//! the check ends:
//!
//! * **basic** (§5.1, the default): a `path_challenge` to the new address; the matching
//!   `path_response` from it lifts the bound. No answer within the timer T: the association
//!   goes back to the last address that was checked.
//! * **enhanced** (§5.2, [`RrcConfig::enhanced`]): a `path_challenge` to the old address
//!   first. Its `path_response` shows the peer is still there (the record from the new address
//!   was raced by an off-path attacker): the association goes back. A `path_drop`, or no answer
//!   within T, leads to the basic check of the new address.
//!
//! The engines only seal and open the messages ([`Connection::seal_rrc`],
//! [`Connection::take_rrc`]); addresses are the endpoint's business, so the same code serves
//! DTLS 1.3 once its associations negotiate CIDs.

use super::Endpoint;
use crate::config::RrcConfig;
use crate::connection::Connection;
use crate::crypto::Rng;
use crate::rrc::{Cookie, ReturnRoutabilityCheck};
use crate::types::{Event, Transmit};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

/// Which address a check is challenging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// The old, last checked address (enhanced check, §5.2).
    Old,
    /// The new address the association is filed under (basic check, §5.1).
    New,
}

/// One check under way, keyed by the unchecked address the association is filed under.
#[derive(Debug, Clone)]
struct PathCheck {
    /// The last address this association was checked at: where it goes back on failure.
    checked: SocketAddr,
    probe: Probe,
    cookie: Cookie,
    started: Instant,
    /// Challenges sent so far in this phase.
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

    /// Starts the phase that challenges `probe`, with a fresh cookie (§4: each challenge
    /// carries new random data).
    fn restart(&mut self, probe: Probe, now: Instant, rng: &mut dyn Rng) {
        self.probe = probe;
        rng.fill(&mut self.cookie);
        self.started = now;
        self.sent = 0;
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
    /// bounded). With RRC agreed, a check starts (RFC 9853 §4, §5); a move back to the address
    /// last checked needs none.
    pub(super) fn rrc_after_move(&mut self, now: Instant, old: SocketAddr, new: SocketAddr) {
        if !self.connections.get(&new).is_some_and(Connection::rrc_negotiated) {
            return;
        }
        let checked = self.paths.by_addr.remove(&old).map_or(old, |c| c.checked);
        if checked == new {
            self.cids.heard_from(new, 0, true);
            return;
        }
        let config = self.rrc_config();
        let probe = if config.enhanced { Probe::Old } else { Probe::New };
        let mut check = PathCheck { checked, probe, cookie: Cookie::default(), started: now, sent: 0, config };
        check.restart(probe, now, &mut self.rng);
        self.paths.by_addr.insert(new, check);
        self.rrc_send_due(now, new);
    }

    /// Sends the challenges of the check of the association at `addr` that are due: to the
    /// new address within its amplification budget, or to the old (checked) one.
    fn rrc_send_due(&mut self, now: Instant, addr: SocketAddr) {
        let Some(check) = self.paths.by_addr.get_mut(&addr) else { return };
        let Some(conn) = self.connections.get_mut(&addr) else {
            self.paths.by_addr.remove(&addr);
            return;
        };
        let to = if check.probe == Probe::Old { check.checked } else { addr };
        while check.next_send().is_some_and(|t| t <= now) {
            check.sent += 1;
            let Some(d) = conn.seal_rrc(&ReturnRoutabilityCheck::PathChallenge(check.cookie)) else { continue };
            if self.cids.may_send(to, d.len()) {
                self.stats.path_challenges_sent += 1;
                self.transmits.push_back(Transmit { destination: to, payload: d });
            } else {
                self.stats.amplification_dropped += 1;
            }
        }
    }

    /// The RRC answers that the association at `home` took from a datagram from `from`
    /// (RFC 9853 §5.1, §5.2). Anything that matches no check is silently discarded (§5.4).
    pub(super) fn rrc_answers(&mut self, now: Instant, home: SocketAddr, from: SocketAddr) {
        let Some(conn) = self.connections.get_mut(&home) else { return };
        let mut answers = Vec::new();
        while let Some(m) = conn.take_rrc() {
            answers.push(m);
        }
        for m in answers {
            let Some(check) = self.paths.by_addr.get_mut(&home) else {
                self.stats.rrc_discarded += 1;
                continue;
            };
            match (m, check.probe) {
                // §5.1: the new path works both ways.
                (ReturnRoutabilityCheck::PathResponse(c), Probe::New) if c == check.cookie && from == home => {
                    self.paths.by_addr.remove(&home);
                    self.cids.heard_from(home, 0, true);
                    self.stats.paths_validated += 1;
                }
                // §5.2: the old path still answers: the initiator MUST keep using it.
                (ReturnRoutabilityCheck::PathResponse(c), Probe::Old) if c == check.cookie => {
                    let back_to = check.checked;
                    self.paths.by_addr.remove(&home);
                    self.stats.old_paths_kept += 1;
                    self.rrc_go_back(home, back_to);
                }
                // §5.2: the peer left the old path on purpose: check the new one.
                (ReturnRoutabilityCheck::PathDrop(c), Probe::Old) if c == check.cookie => {
                    check.restart(Probe::New, now, &mut self.rng);
                    self.rrc_send_due(now, home);
                }
                _ => self.stats.rrc_discarded += 1,
            }
        }
    }

    /// Challenges due, and checks whose timer T ran out (RFC 9853 §5.1: the binding is not
    /// updated, so the association goes back to the address last checked; §5.2: an
    /// unanswered old path leads to the basic check of the new one).
    pub(super) fn rrc_timeout(&mut self, now: Instant) {
        if self.paths.by_addr.is_empty() {
            return;
        }
        let due: Vec<SocketAddr> =
            self.paths.by_addr.iter().filter(|(_, p)| p.next_deadline() <= now).map(|(a, _)| *a).collect();
        for at in due {
            let Some(p) = self.paths.by_addr.get_mut(&at) else { continue };
            if p.deadline() > now {
                self.rrc_send_due(now, at);
            } else if p.probe == Probe::Old {
                p.restart(Probe::New, now, &mut self.rng);
                self.rrc_send_due(now, at);
            } else {
                let back_to = p.checked;
                self.paths.by_addr.remove(&at);
                self.stats.path_checks_failed += 1;
                self.rrc_go_back(at, back_to);
            }
        }
    }

    /// Files the association at `at` under `back_to` again, its last checked address (unless
    /// another association took that address since: then it stays, bounded).
    fn rrc_go_back(&mut self, at: SocketAddr, back_to: SocketAddr) {
        if self.connections.contains_key(&back_to) {
            return;
        }
        let Some(mut conn) = self.connections.remove(&at) else { return };
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
