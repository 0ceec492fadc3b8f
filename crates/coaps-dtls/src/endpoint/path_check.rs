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
//! DTLS 1.3 once its associations negotiate CIDs. This module decides; the endpoint moves
//! associations in its table when told to go back.

use super::cid_index::CidIndex;
use crate::config::RrcConfig;
use crate::connection::Connection;
use crate::crypto::Rng;
use crate::rrc::{Cookie, ReturnRoutabilityCheck};
use crate::types::Transmit;
use std::collections::{HashMap, VecDeque};
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
    /// Counters, folded into the endpoint's.
    pub(super) counts: RrcCounts,
}

/// What the checks did (see the `EndpointStats` fields of the same names).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct RrcCounts {
    pub(super) path_challenges_sent: u64,
    pub(super) paths_validated: u64,
    pub(super) path_checks_failed: u64,
    pub(super) old_paths_kept: u64,
    pub(super) rrc_discarded: u64,
    pub(super) amplification_dropped: u64,
}

/// The parts of the endpoint a check writes to.
pub(super) struct Io<'a> {
    pub(super) cids: &'a mut CidIndex,
    pub(super) transmits: &'a mut VecDeque<Transmit>,
    pub(super) rng: &'a mut dyn Rng,
}

impl PathChecks {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.by_addr.values().map(PathCheck::next_deadline).min()
    }

    /// The association at `addr` is gone or replaced.
    pub(super) fn remove(&mut self, addr: &SocketAddr) {
        self.by_addr.remove(addr);
    }

    /// The association `conn` moved from `old` to `new` (already filed there, its new
    /// address bounded). With RRC agreed, a check starts (RFC 9853 §4, §5); a move back to the
    /// address last checked needs none.
    pub(super) fn after_move(
        &mut self,
        now: Instant,
        old: SocketAddr,
        new: SocketAddr,
        conn: &mut Connection,
        config: RrcConfig,
        io: Io<'_>,
    ) {
        if !conn.rrc_negotiated() {
            return;
        }
        let checked = self.by_addr.remove(&old).map_or(old, |c| c.checked);
        if checked == new {
            io.cids.heard_from(new, 0, true);
            return;
        }
        let probe = if config.enhanced { Probe::Old } else { Probe::New };
        let mut check = PathCheck { checked, probe, cookie: Cookie::default(), started: now, sent: 0, config };
        check.restart(probe, now, io.rng);
        self.by_addr.insert(new, check);
        self.send_due(now, new, conn, io);
    }

    /// Sends the challenges of the check of the association at `addr` that are due: to the
    /// new address within its amplification budget, or to the old (checked) one.
    fn send_due(&mut self, now: Instant, addr: SocketAddr, conn: &mut Connection, io: Io<'_>) {
        let Some(check) = self.by_addr.get_mut(&addr) else { return };
        let to = if check.probe == Probe::Old { check.checked } else { addr };
        while check.next_send().is_some_and(|t| t <= now) {
            check.sent += 1;
            let Some(d) = conn.seal_rrc(&ReturnRoutabilityCheck::PathChallenge(check.cookie)) else { continue };
            if io.cids.may_send(to, d.len()) {
                self.counts.path_challenges_sent += 1;
                io.transmits.push_back(Transmit { destination: to, payload: d });
            } else {
                self.counts.amplification_dropped += 1;
            }
        }
    }

    /// The RRC answers that the association `conn` at `home` took from a datagram from `from`
    /// (RFC 9853 §5.1, §5.2); anything that matches no check is silently discarded (§5.4).
    /// `Some(addr)`: the association goes back to `addr`.
    pub(super) fn answers(
        &mut self,
        now: Instant,
        home: SocketAddr,
        from: SocketAddr,
        conn: &mut Connection,
        io: Io<'_>,
    ) -> Option<SocketAddr> {
        let mut answers = Vec::new();
        while let Some(m) = conn.take_rrc() {
            answers.push(m);
        }
        let mut restart = false;
        let mut back = None;
        for m in answers {
            let Some(check) = self.by_addr.get_mut(&home) else {
                self.counts.rrc_discarded += 1;
                continue;
            };
            match (m, check.probe) {
                // §5.1: the new path works both ways.
                (ReturnRoutabilityCheck::PathResponse(c), Probe::New) if c == check.cookie && from == home => {
                    self.by_addr.remove(&home);
                    io.cids.heard_from(home, 0, true);
                    self.counts.paths_validated += 1;
                }
                // §5.2: the old path still answers: the initiator MUST keep using it.
                (ReturnRoutabilityCheck::PathResponse(c), Probe::Old) if c == check.cookie => {
                    back = Some(check.checked);
                    self.by_addr.remove(&home);
                    self.counts.old_paths_kept += 1;
                }
                // §5.2: the peer left the old path on purpose: check the new one.
                (ReturnRoutabilityCheck::PathDrop(c), Probe::Old) if c == check.cookie => {
                    check.restart(Probe::New, now, &mut *io.rng);
                    restart = true;
                }
                _ => self.counts.rrc_discarded += 1,
            }
        }
        if restart && back.is_none() {
            self.send_due(now, home, conn, io);
        }
        back
    }

    /// Addresses whose check has something due by `now`.
    pub(super) fn due(&self, now: Instant) -> Vec<SocketAddr> {
        if self.by_addr.is_empty() {
            return Vec::new();
        }
        self.by_addr.iter().filter(|(_, p)| p.next_deadline() <= now).map(|(a, _)| *a).collect()
    }

    /// Runs the check of the association `conn` at `at`: challenges due, and the timer T
    /// (RFC 9853 §5.1: the binding is not updated, so `Some(addr)`, the address last checked,
    /// where the association goes back; §5.2: an unanswered old path leads to the basic
    /// check of the new one). An association that is gone ends its check.
    pub(super) fn on_timeout(
        &mut self,
        now: Instant,
        at: SocketAddr,
        conn: Option<&mut Connection>,
        io: Io<'_>,
    ) -> Option<SocketAddr> {
        let Some(conn) = conn else {
            self.by_addr.remove(&at);
            return None;
        };
        let p = self.by_addr.get_mut(&at)?;
        if p.deadline() > now {
            self.send_due(now, at, conn, io);
        } else if p.probe == Probe::Old {
            p.restart(Probe::New, now, &mut *io.rng);
            self.send_due(now, at, conn, io);
        } else {
            let back_to = p.checked;
            self.by_addr.remove(&at);
            self.counts.path_checks_failed += 1;
            return Some(back_to);
        }
        None
    }
}
