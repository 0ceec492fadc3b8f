//! DTLS 1.3 Connection IDs (RFC 9147 §9, with the `connection_id` extension of RFC 9146 §3):
//! the CIDs an association issued (records to it carry one of them) and the peer's (ours carry
//! the current one), `NewConnectionId` / `RequestConnectionId`, and what the endpoint needs to
//! follow an association to a new address (RFC 9146 §6: only a record that authenticated and
//! is newer than every record before it moves it).
//!
//! Limits: at most [`ConnectionIdConfig::max_cids`] CIDs each way per association. Of a
//! `NewConnectionId` that brings more, the rest is ignored (RFC 9147 §9 "MAY simply discard
//! any extra CIDs"): the peer may be honest and merely generous, and nothing is stored for
//! them. A `RequestConnectionId` beyond the budget is answered with fewer CIDs (down to none,
//! as §9 allows); a peer that asks again after such an answer is aborted with
//! `too_many_cids_requested` (§9 "MAY ... terminating the connection"): it was told there are
//! no more, and each request would otherwise cost us a retransmitted flight.

use crate::codec::ConnectionIdUsage;
use crate::config::ConnectionIdConfig;
use crate::dtls13::msgs::NewConnectionId;
use crate::error::{Error, PeerMisbehaved, UsageError};
use std::collections::VecDeque;

/// The CID state of one DTLS 1.3 association; boxed in the engine's core, absent without
/// CIDs.
#[derive(Debug)]
pub(crate) struct Cids13 {
    /// How this side issues CIDs (length, prefix, the cap).
    config: ConnectionIdConfig,
    /// The CIDs this side issued, the handshake's first; empty when it receives none (a
    /// zero-length CID). Records to us carry one of these.
    pub(crate) issued: Vec<Vec<u8>>,
    /// The peer's CID our records carry (empty: none).
    pub(crate) out: Vec<u8>,
    /// The peer's spare CIDs, in the order given (RFC 9147 §9 "SHOULD use ... in the order
    /// they were provided").
    spare: VecDeque<Vec<u8>>,
    /// The peer agreed (client: the ServerHello carried the extension).
    pub(crate) negotiated: bool,
    /// The newest record that authenticated so far, (epoch, sequence number).
    newest: Option<(u64, u64)>,
    /// The datagram being handled held a record newer than every one before it.
    pub(crate) advanced: bool,
    /// CIDs issued that the endpoint has not indexed yet.
    unindexed: Vec<Vec<u8>>,
    /// A peer's RequestConnectionId (its num_cids) waiting for our current flight to be
    /// acknowledged: one NewConnectionId outstanding at a time (§9).
    request_pending: Option<u8>,
    /// A request was answered with fewer CIDs than asked.
    refused: bool,
    /// Our RequestConnectionId awaits its NewConnectionId (§9: one at a time).
    our_request: bool,
    /// CIDs of the peer's NewConnectionId messages ignored over the cap.
    pub(crate) ignored: u64,
}

impl Cids13 {
    /// A client that offers `issued` (its CID, possibly empty) in its ClientHello.
    pub(crate) fn offered(config: ConnectionIdConfig, issued: Vec<u8>) -> Self {
        let mut c = Self {
            config,
            issued: Vec::new(),
            out: Vec::new(),
            spare: VecDeque::new(),
            negotiated: false,
            newest: None,
            advanced: false,
            unindexed: Vec::new(),
            request_pending: None,
            refused: false,
            our_request: false,
            ignored: 0,
        };
        if !issued.is_empty() {
            c.issued.push(issued);
        }
        c
    }

    /// Both CIDs known: a server answering a ClientHello's `connection_id` with `issued`, the
    /// client's being `out`.
    pub(crate) fn negotiated(config: ConnectionIdConfig, issued: Vec<u8>, out: Vec<u8>) -> Self {
        let mut c = Self::offered(config, issued);
        c.unindexed = c.issued.clone();
        c.out = out;
        c.negotiated = true;
        c
    }

    /// Length of the CIDs records to us carry (what [`split_datagram13_cid`] needs).
    ///
    /// [`split_datagram13_cid`]: crate::dtls13::record::split_datagram13_cid
    pub(crate) fn in_len(&self) -> usize {
        self.issued.first().map_or(0, Vec::len)
    }

    /// Whether a record carrying `cid` (empty: none) is ours to open. After the negotiation a
    /// record without a CID is refused when we issued one (RFC 9147 §4 "If a CID was
    /// negotiated, it MUST be in every datagram"; epoch 1 aside: 0-RTT records leave before
    /// the client knows the server's CID).
    pub(crate) fn accepts(&self, cid: &[u8], epoch_bits: u8) -> bool {
        if cid.is_empty() {
            return !self.negotiated || self.issued.is_empty() || epoch_bits == 1;
        }
        self.issued.iter().any(|c| c == cid)
    }

    /// The CID our records carry, once agreed.
    pub(crate) fn out(&self) -> &[u8] {
        if self.negotiated { &self.out } else { &[] }
    }

    /// A record of (`epoch`, `seq`) authenticated: notes whether it is the newest so far.
    pub(crate) fn authenticated(&mut self, epoch: u64, seq: u64) {
        if self.newest.is_none_or(|n| (epoch, seq) > n) {
            self.newest = Some((epoch, seq));
            self.advanced = true;
        }
    }

    pub(crate) fn take_unindexed(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.unindexed)
    }

    /// CIDs held: (issued by us, the peer's including the current one).
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.issued.len(), usize::from(!self.out.is_empty()) + self.spare.len())
    }

    /// Up to `n` fresh CIDs within the cap, recorded as issued (and to be indexed).
    fn issue(&mut self, n: usize, rng: &mut dyn crate::crypto::Rng) -> Vec<Vec<u8>> {
        let room = self.config.max_cids.saturating_sub(self.issued.len());
        let mut fresh = Vec::new();
        // Bounded: a collision with our own CIDs is retried a few times, not forever (a
        // one-byte CID space may be exhausted).
        let mut tries = 0;
        while fresh.len() < n.min(room) && tries < 4 * n.min(room) + 4 {
            tries += 1;
            let cid = self.config.generate(rng);
            if cid.is_empty() || self.issued.contains(&cid) || fresh.contains(&cid) {
                continue;
            }
            fresh.push(cid);
        }
        self.issued.extend(fresh.iter().cloned());
        self.unindexed.extend(fresh.iter().cloned());
        fresh
    }

    /// The peer's NewConnectionId (RFC 9147 §9), which it may send only when it receives a
    /// non-empty CID from us.
    pub(crate) fn take_new(&mut self, nci: NewConnectionId) -> Result<(), Error> {
        if !self.negotiated || self.out.is_empty() {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::ConnectionIdMessageNotAllowed));
        }
        self.our_request = false;
        let mut fresh = nci.cids.into_iter().filter(|c| !c.is_empty() && *c != self.out).collect::<Vec<_>>();
        fresh.dedup();
        match nci.usage {
            // One of them "MUST be used immediately for all future records".
            ConnectionIdUsage::CidImmediate if !fresh.is_empty() => {
                self.out = fresh.remove(0);
                self.spare.retain(|s| *s != self.out);
            }
            ConnectionIdUsage::CidImmediate | ConnectionIdUsage::CidSpare => {}
            ConnectionIdUsage::Unknown(_) => {
                return Err(Error::PeerMisbehaved(PeerMisbehaved::UnknownConnectionIdUsage));
            }
        }
        for c in fresh {
            if self.spare.contains(&c) {
                continue;
            }
            if 1 + self.spare.len() < self.config.max_cids {
                self.spare.push_back(c);
            } else {
                self.ignored += 1;
            }
        }
        Ok(())
    }

    /// Switches our records to the peer's next spare CID (RFC 9147 §9 "SHOULD use a new CID
    /// whenever sending on a new path"); false when there is none.
    pub(crate) fn use_next_spare(&mut self) -> bool {
        match self.spare.pop_front() {
            Some(c) => {
                self.out = c;
                true
            }
            None => false,
        }
    }

    /// The peer's RequestConnectionId for `num_cids` (RFC 9147 §9), which it may send only
    /// when it sends us a non-empty CID: kept until [`Cids13::answer_request`].
    pub(crate) fn take_request(&mut self, num_cids: u8) -> Result<(), Error> {
        if !self.negotiated || self.issued.is_empty() {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::ConnectionIdMessageNotAllowed));
        }
        if self.refused && self.issued.len() >= self.config.max_cids {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::TooManyCidsRequested));
        }
        self.request_pending = Some(num_cids);
        Ok(())
    }

    /// The CIDs that answer the pending request, if any (as many as the cap leaves, maybe
    /// none).
    pub(crate) fn answer_request(&mut self, rng: &mut dyn crate::crypto::Rng) -> Option<Vec<Vec<u8>>> {
        let n = usize::from(self.request_pending.take()?);
        let cids = self.issue(n, rng);
        self.refused = cids.len() < n;
        Some(cids)
    }

    /// `count` CIDs to announce on our own initiative, within the cap.
    pub(crate) fn issue_more(
        &mut self,
        count: usize,
        rng: &mut dyn crate::crypto::Rng,
    ) -> Result<Vec<Vec<u8>>, UsageError> {
        if !self.negotiated || self.issued.is_empty() {
            return Err(UsageError::LimitReached("no non-empty CID of ours was negotiated"));
        }
        let cids = self.issue(count, rng);
        if cids.is_empty() {
            return Err(UsageError::LimitReached("ConnectionIdConfig::max_cids reached"));
        }
        Ok(cids)
    }

    /// Notes our RequestConnectionId, if one may be sent now.
    pub(crate) fn start_request(&mut self) -> Result<(), UsageError> {
        if !self.negotiated || self.out.is_empty() {
            return Err(UsageError::LimitReached("the peer issued no non-empty CID"));
        }
        if self.our_request {
            return Err(UsageError::LimitReached("a RequestConnectionId is still unanswered"));
        }
        self.our_request = true;
        Ok(())
    }
}
