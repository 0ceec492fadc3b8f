//! CID-first demultiplexing (RFC 9146 §6): which association a `tls12_cid` record belongs
//! to, whatever address it came from, and what may be sent to an association's new address
//! before that address has shown it is the peer's.
//!
//! The endpoint keys its table by address; this index maps each CID the server issued to the
//! address the association is filed under, and keeps, for associations that moved, the
//! amplification budget of their still unchecked new address.

use std::collections::HashMap;
use std::net::SocketAddr;

/// Bytes a moved association may send to its new address per byte received from there, until
/// a second authenticated record from it checks the path. 3, as QUIC's anti-amplification
/// limit (RFC 9000 §8) and RFC 9853 §7 use it.
pub(crate) const AMPLIFICATION_FACTOR: usize = 3;

/// The new address of a moved association, not yet checked: bytes still allowed there.
#[derive(Debug, Clone, Copy)]
struct Unchecked {
    budget: usize,
}

/// The CID index of one endpoint.
#[derive(Debug, Default)]
pub(crate) struct CidIndex {
    by_cid: HashMap<Vec<u8>, SocketAddr>,
    unchecked: HashMap<SocketAddr, Unchecked>,
}

impl CidIndex {
    /// The address the association that issued `cid` is filed under.
    pub(crate) fn lookup(&self, cid: &[u8]) -> Option<SocketAddr> {
        self.by_cid.get(cid).copied()
    }

    /// Files the association at `addr` under the CID it issued. An empty CID is not indexed
    /// (records to it carry none); a CID already in use by another association is refused,
    /// so records are never misrouted: that association then demultiplexes by address only.
    pub(crate) fn insert(&mut self, cid: &[u8], addr: SocketAddr) -> bool {
        if cid.is_empty() {
            return false;
        }
        match self.by_cid.get(cid) {
            Some(a) if *a != addr => false,
            _ => {
                self.by_cid.insert(cid.to_vec(), addr);
                true
            }
        }
    }

    /// The association filed under `cid` moved from `old` to `new` on a fresh authenticated
    /// record: its new address is unchecked, with a budget of [`AMPLIFICATION_FACTOR`] times
    /// the `received` bytes.
    pub(crate) fn moved(&mut self, cid: &[u8], old: SocketAddr, new: SocketAddr, received: usize) {
        if let Some(a) = self.by_cid.get_mut(cid) {
            *a = new;
        }
        self.unchecked.remove(&old);
        self.unchecked.insert(new, Unchecked { budget: received.saturating_mul(AMPLIFICATION_FACTOR) });
    }

    /// A datagram of `received` bytes came from the association at `addr` (its own address).
    /// `advanced`: it held a record that authenticated and was newer than any before, a second
    /// one after the record that moved the association there, which the copy of an observed
    /// record cannot be (it is a replay): the path is checked. Otherwise the budget grows.
    pub(crate) fn heard_from(&mut self, addr: SocketAddr, received: usize, advanced: bool) {
        if advanced {
            self.unchecked.remove(&addr);
        } else if let Some(u) = self.unchecked.get_mut(&addr) {
            u.budget = u.budget.saturating_add(received.saturating_mul(AMPLIFICATION_FACTOR));
        }
    }

    /// Whether `len` more bytes may go to `addr`; takes them from its budget if so.
    pub(crate) fn may_send(&mut self, addr: SocketAddr, len: usize) -> bool {
        match self.unchecked.get_mut(&addr) {
            None => true,
            Some(u) if u.budget >= len => {
                u.budget -= len;
                true
            }
            Some(_) => false,
        }
    }

    /// Whether `addr` is a moved association's unchecked new address.
    pub(crate) fn is_unchecked(&self, addr: &SocketAddr) -> bool {
        self.unchecked.contains_key(addr)
    }

    /// The association at `addr` with CID `cid` is gone.
    pub(crate) fn remove(&mut self, cid: &[u8], addr: SocketAddr) {
        if self.by_cid.get(cid) == Some(&addr) {
            self.by_cid.remove(cid);
        }
        self.unchecked.remove(&addr);
    }

    /// Indexed CIDs.
    pub(crate) fn len(&self) -> usize {
        self.by_cid.len()
    }
}
