//! The server endpoint's bookkeeping of who holds its association table, kept beside the table
//! so that no decision on the datagram path needs a scan of it: half-open handshakes in
//! admission order, established associations in least-recently-active order (both intrusive
//! doubly linked lists over one slab; "oldest" is the least recently heard, so a touch, an admission and an eviction are O(1)),
//! counts per source address, per /24 or /56 prefix and per identity (hash maps, O(1)), and
//! the associations' timers in deadline order (O(log n)).
//!
//! The endpoint calls [`Limits::admit`] before creating a server association,
//! [`Limits::established`] when its handshake completes, [`Limits::touch`] for every datagram
//! routed to it and [`Limits::remove`] when it goes; whatever [`Limits`] evicts, the endpoint
//! forgets.
//!
//! Every idle association pays for this bookkeeping, so it is kept small: the association
//! itself holds its slot in the slab (the connection map already finds it by address, so no
//! second address map), and a node holds only what cannot be derived: the peer (whose source
//! address and prefix are computed when needed), the identity's hash, the last time heard
//! with the list it is in, and the two links (56 bytes).

use crate::config::quotas::QuotaConfig;
use crate::types::PeerIdentity;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

/// Why a new handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    HalfOpenPerAddress,
    HalfOpenPerPrefix,
    AssociationsPerAddress,
    AssociationsPerIdentity,
    /// Table full and its least-recently-active association not idle long enough.
    TableFull,
    /// `max_handshakes` (or `max_connections`) is zero.
    Disabled,
}

/// Why an association was forgotten to make room or because it waited too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Eviction {
    /// The oldest half-open handshake, for a new one, at `max_handshakes`.
    HalfOpenPressure,
    /// A half-open handshake older than the half-open lifetime.
    HalfOpenExpired,
    /// The least-recently-active idle association, for a new handshake, at `max_connections`.
    IdleTableFull,
}

/// The source address an IPv4-mapped IPv6 address stands for.
pub(crate) fn source_address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The /24 (IPv4) or /56 (IPv6) prefix of a source address.
pub(crate) fn source_prefix(ip: IpAddr) -> IpAddr {
    match source_address(ip) {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & 0xffff_ff00)),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 72) - 1))),
    }
}

const NIL: u32 = u32::MAX;

/// The slot of an association the bookkeeping does not track (a client association, or one
/// created before the endpoint had limits): every [`Limits`] call ignores it. Defined beside
/// the field that holds it, so `connection` need not import from `endpoint` (no module cycle).
pub(crate) use crate::connection::NO_SLOT;
const _: () = assert!(NO_SLOT == NIL);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    HalfOpen,
    Established,
}

#[derive(Debug)]
struct Node {
    peer: SocketAddr,
    /// Hash of the authenticated identity, once established and counted per identity.
    identity: Option<NonZeroU64>,
    /// Nanoseconds from [`Limits::epoch`] to the last datagram received (admission, for a
    /// half-open handshake that got no other), shifted left once; the low bit is set on the
    /// established list. 2^63 ns is 292 years.
    stamp: u64,
    prev: u32,
    next: u32,
}

impl Node {
    fn list(&self) -> List {
        if self.stamp & 1 == 1 { List::Established } else { List::HalfOpen }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Ends {
    head: u32,
    tail: u32,
    len: usize,
}

impl Ends {
    const EMPTY: Self = Self { head: NIL, tail: NIL, len: 0 };
}

#[derive(Debug, Default, Clone, Copy)]
struct PerAddress {
    half_open: usize,
    associations: usize,
}

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Limits {
    config: QuotaConfig,
    max_connections: usize,
    max_handshakes: usize,
    /// Stamps count from here (the endpoint's creation; an earlier `now` counts as it).
    epoch: Instant,
    nodes: Vec<Option<Node>>,
    free: Vec<u32>,
    half_open: Ends,
    established: Ends,
    per_address: HashMap<IpAddr, PerAddress>,
    per_prefix: HashMap<IpAddr, usize>,
    per_identity: HashMap<u64, usize>,
    identity_hasher: RandomState,
}

impl Limits {
    pub(crate) fn new(config: QuotaConfig, max_connections: usize, max_handshakes: usize, epoch: Instant) -> Self {
        Self {
            config,
            max_connections,
            max_handshakes,
            epoch,
            nodes: Vec::new(),
            free: Vec::new(),
            half_open: Ends::EMPTY,
            established: Ends::EMPTY,
            per_address: HashMap::new(),
            per_prefix: HashMap::new(),
            per_identity: HashMap::new(),
            identity_hasher: RandomState::new(),
        }
    }

    /// Half-open handshakes tracked.
    pub(crate) fn half_open(&self) -> usize {
        self.half_open.len
    }

    /// Associations tracked (half-open and established).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.half_open.len + self.established.len
    }

    /// The slot tracking `peer` (tests only: the endpoint keeps it in the association).
    #[cfg(test)]
    pub(crate) fn slot_of(&self, peer: &SocketAddr) -> u32 {
        self.nodes.iter().position(|n| n.as_ref().is_some_and(|n| n.peer == *peer)).map_or(NO_SLOT, |s| s as u32)
    }

    /// The slot of `peer`'s node, if `slot` holds it (a stale or absent slot holds nothing).
    fn find(&self, slot: u32, peer: &SocketAddr) -> Option<u32> {
        let n = self.nodes.get(slot as usize)?.as_ref()?;
        (n.peer == *peer).then_some(slot)
    }

    fn stamp(&self, now: Instant, list: List) -> u64 {
        let nanos = u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX >> 1);
        (nanos.min(u64::MAX >> 1) << 1) | u64::from(list == List::Established)
    }

    /// How long before `now` the node in `slot` was last heard from.
    fn silent_for(&self, now: Instant, slot: u32) -> Duration {
        let since = Duration::from_nanos(self.node(slot).stamp >> 1);
        now.saturating_duration_since(self.epoch).saturating_sub(since)
    }

    /// When the node in `slot` was last heard from.
    fn heard_at(&self, slot: u32) -> Instant {
        self.epoch + Duration::from_nanos(self.node(slot).stamp >> 1)
    }

    /// Decides on a new server association with `peer` (which has none) in a table of
    /// `table_len` associations. Expired half-open handshakes, and what must make room for
    /// the new one, are appended to `evicted` for the endpoint to forget; on success `peer`
    /// is tracked as half-open from `now`. Refusal checks come first, so a refused
    /// ClientHello evicts nothing but expired handshakes. The slot returned is the new
    /// association's, for every later call about it.
    pub(crate) fn admit(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        table_len: usize,
        evicted: &mut Vec<(SocketAddr, Eviction)>,
    ) -> Result<u32, Refusal> {
        let before = evicted.len();
        self.expire(now, evicted);
        let mut table_len = table_len.saturating_sub(evicted.len() - before);
        if self.max_handshakes == 0 || self.max_connections == 0 {
            return Err(Refusal::Disabled);
        }
        let address = source_address(peer.ip());
        let prefix = source_prefix(address);
        let counts = self.per_address.get(&address).copied().unwrap_or_default();
        if counts.half_open >= self.config.max_half_open_per_address {
            return Err(Refusal::HalfOpenPerAddress);
        }
        if self.per_prefix.get(&prefix).copied().unwrap_or(0) >= self.config.max_half_open_per_prefix {
            return Err(Refusal::HalfOpenPerPrefix);
        }
        if counts.associations >= self.config.max_associations_per_address {
            return Err(Refusal::AssociationsPerAddress);
        }
        let evict_half_open = self.half_open.len >= self.max_handshakes && self.half_open.head != NIL;
        let full_after = table_len.saturating_sub(usize::from(evict_half_open)) >= self.max_connections;
        let idle_victim = self.established.head;
        if full_after {
            let idle_enough = idle_victim != NIL && self.silent_for(now, idle_victim) >= self.config.min_idle_to_evict;
            if !idle_enough {
                return Err(Refusal::TableFull);
            }
        }
        if evict_half_open {
            let head = self.half_open.head;
            evicted.push((self.node(head).peer, Eviction::HalfOpenPressure));
            self.remove_slot(head);
            table_len -= 1;
        }
        if table_len >= self.max_connections {
            evicted.push((self.node(idle_victim).peer, Eviction::IdleTableFull));
            self.remove_slot(idle_victim);
        }
        let stamp = self.stamp(now, List::HalfOpen);
        let slot = self.alloc(Node { peer, identity: None, stamp, prev: NIL, next: NIL });
        self.push_back(slot);
        let c = self.per_address.entry(address).or_default();
        c.half_open += 1;
        c.associations += 1;
        *self.per_prefix.entry(prefix).or_insert(0) += 1;
        Ok(slot)
    }

    /// The handshake with `peer` completed, with `identity`: it moves to the established
    /// list, most recently active. Refused when the identity already holds its maximum (the
    /// endpoint then closes the association, which stays tracked until it is removed).
    pub(crate) fn established(
        &mut self,
        now: Instant,
        slot: u32,
        peer: &SocketAddr,
        identity: &PeerIdentity,
    ) -> Result<(), Refusal> {
        let Some(slot) = self.find(slot, peer) else { return Ok(()) };
        if self.node(slot).list() == List::Established {
            return Ok(());
        }
        // Without a per-identity limit nothing is counted: a fleet sharing one identity
        // costs no map entry, and no hash per handshake.
        let id =
            (self.config.max_associations_per_identity != usize::MAX).then(|| self.identity_key(identity)).flatten();
        if let Some(id) = id
            && self.per_identity.get(&id.get()).copied().unwrap_or(0) >= self.config.max_associations_per_identity
        {
            return Err(Refusal::AssociationsPerIdentity);
        }
        self.unlink(slot);
        let stamp = self.stamp(now, List::Established);
        let n = self.node_mut(slot);
        n.stamp = stamp;
        n.identity = id;
        let address = source_address(n.peer.ip());
        self.push_back(slot);
        if let Some(c) = self.per_address.get_mut(&address) {
            c.half_open -= 1;
        }
        self.dec_prefix(source_prefix(address));
        if let Some(id) = id {
            *self.per_identity.entry(id.get()).or_insert(0) += 1;
        }
        Ok(())
    }

    /// A datagram from `peer` reached its association: it becomes the most recently active of
    /// its list, and a half-open one's lifetime starts again (a client still retransmitting
    /// is not gone; one that walked away sends nothing).
    pub(crate) fn touch(&mut self, now: Instant, slot: u32, peer: &SocketAddr) {
        let Some(slot) = self.find(slot, peer) else { return };
        self.unlink(slot);
        let stamp = self.stamp(now, self.node(slot).list());
        self.node_mut(slot).stamp = stamp;
        self.push_back(slot);
    }

    /// The association at `old` now lives at `new` (a Connection ID record moved it, RFC 9146
    /// §6): its place in the eviction order stays, its per-address count follows it.
    /// The slot stays the association's.
    pub(crate) fn moved(&mut self, slot: u32, old: &SocketAddr, new: SocketAddr) {
        let Some(slot) = self.find(slot, old) else { return };
        let address = source_address(new.ip());
        let prefix = source_prefix(address);
        let (prev_address, prev_prefix, half_open) = {
            let n = self.node_mut(slot);
            let prev_address = source_address(std::mem::replace(&mut n.peer, new).ip());
            (prev_address, source_prefix(prev_address), n.list() == List::HalfOpen)
        };
        if let Some(c) = self.per_address.get_mut(&prev_address) {
            c.associations -= 1;
            if half_open {
                c.half_open -= 1;
            }
            if c.associations == 0 {
                self.per_address.remove(&prev_address);
            }
        }
        let c = self.per_address.entry(address).or_default();
        c.associations += 1;
        if half_open {
            c.half_open += 1;
            self.dec_prefix(prev_prefix);
            *self.per_prefix.entry(prefix).or_insert(0) += 1;
        }
    }

    /// Whether `peer` is tracked as half-open.
    pub(crate) fn is_half_open(&self, slot: u32, peer: &SocketAddr) -> bool {
        self.find(slot, peer).is_some_and(|s| self.node(s).list() == List::HalfOpen)
    }

    /// Stops tracking `peer` (whose association held `slot`).
    pub(crate) fn remove(&mut self, slot: u32, peer: &SocketAddr) {
        if let Some(slot) = self.find(slot, peer) {
            self.remove_slot(slot);
        }
    }

    fn remove_slot(&mut self, slot: u32) {
        self.unlink(slot);
        let Some(n) = self.nodes[slot as usize].take() else { return };
        self.free.push(slot);
        let address = source_address(n.peer.ip());
        let half_open = n.list() == List::HalfOpen;
        if let Some(c) = self.per_address.get_mut(&address) {
            c.associations -= 1;
            if half_open {
                c.half_open -= 1;
            }
            if c.associations == 0 {
                self.per_address.remove(&address);
            }
        }
        if half_open {
            self.dec_prefix(source_prefix(address));
        }
        if let Some(id) = n.identity
            && let Some(c) = self.per_identity.get_mut(&id.get())
        {
            *c -= 1;
            if *c == 0 {
                self.per_identity.remove(&id.get());
            }
        }
    }

    /// Appends the half-open handshakes older than the half-open lifetime at `now` (and
    /// stops tracking them).
    pub(crate) fn expire(&mut self, now: Instant, evicted: &mut Vec<(SocketAddr, Eviction)>) {
        while self.half_open.head != NIL {
            let head = self.half_open.head;
            if self.silent_for(now, head) < self.config.half_open_lifetime {
                break;
            }
            evicted.push((self.node(head).peer, Eviction::HalfOpenExpired));
            self.remove_slot(head);
        }
    }

    /// When the oldest half-open handshake expires.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        (self.half_open.head != NIL).then(|| self.heard_at(self.half_open.head) + self.config.half_open_lifetime)
    }

    /// Appends the associations without a datagram since before `idle_since` (half-open ones
    /// by their admission time) and stops tracking them: O(1) per association found.
    pub(crate) fn idle_since(&mut self, idle_since: Instant, out: &mut Vec<SocketAddr>) {
        for list in [List::Established, List::HalfOpen] {
            loop {
                let head = match list {
                    List::Established => self.established.head,
                    List::HalfOpen => self.half_open.head,
                };
                if head == NIL || self.heard_at(head) >= idle_since {
                    break;
                }
                out.push(self.node(head).peer);
                self.remove_slot(head);
            }
        }
    }

    fn identity_key(&self, identity: &PeerIdentity) -> Option<NonZeroU64> {
        let mut h = self.identity_hasher.build_hasher();
        match identity {
            PeerIdentity::Anonymous => return None,
            PeerIdentity::Psk(id) => (0u8, id).hash(&mut h),
            PeerIdentity::Certificate(chain) => (1u8, chain.first()).hash(&mut h),
            PeerIdentity::RawPublicKey(spki) => (2u8, spki).hash(&mut h),
        }
        // Zero is the niche that keeps the node's field at 8 bytes; one hash in 2^64 moves.
        NonZeroU64::new(h.finish().max(1))
    }

    fn dec_prefix(&mut self, prefix: IpAddr) {
        if let Some(c) = self.per_prefix.get_mut(&prefix) {
            *c -= 1;
            if *c == 0 {
                self.per_prefix.remove(&prefix);
            }
        }
    }

    fn alloc(&mut self, node: Node) -> u32 {
        match self.free.pop() {
            Some(s) => {
                self.nodes[s as usize] = Some(node);
                s
            }
            None => {
                self.nodes.push(Some(node));
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn node(&self, slot: u32) -> &Node {
        self.nodes[slot as usize].as_ref().expect("linked slot is occupied")
    }

    fn node_mut(&mut self, slot: u32) -> &mut Node {
        self.nodes[slot as usize].as_mut().expect("linked slot is occupied")
    }

    fn ends(&mut self, list: List) -> &mut Ends {
        match list {
            List::HalfOpen => &mut self.half_open,
            List::Established => &mut self.established,
        }
    }

    fn push_back(&mut self, slot: u32) {
        let list = self.node(slot).list();
        let tail = self.ends(list).tail;
        {
            let n = self.node_mut(slot);
            n.prev = tail;
            n.next = NIL;
        }
        if tail == NIL {
            self.ends(list).head = slot;
        } else {
            self.node_mut(tail).next = slot;
        }
        let e = self.ends(list);
        e.tail = slot;
        e.len += 1;
    }

    fn unlink(&mut self, slot: u32) {
        let (list, prev, next) = {
            let n = self.node(slot);
            (n.list(), n.prev, n.next)
        };
        if prev == NIL {
            self.ends(list).head = next;
        } else {
            self.node_mut(prev).next = next;
        }
        if next == NIL {
            self.ends(list).tail = prev;
        } else {
            self.node_mut(next).prev = prev;
        }
        let n = self.node_mut(slot);
        n.prev = NIL;
        n.next = NIL;
        self.ends(list).len -= 1;
    }
}

/// The associations' timers in deadline order, so the endpoint's earliest timer and the due
/// ones are found without visiting every association.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    by_deadline: BTreeSet<(Instant, SocketAddr)>,
    of: HashMap<SocketAddr, Instant>,
}

impl Timers {
    /// `peer`'s association now wants to wake at `deadline` (`None`: no timer).
    pub(crate) fn set(&mut self, peer: SocketAddr, deadline: Option<Instant>) {
        let old = match deadline {
            Some(d) => self.of.insert(peer, d),
            None => self.of.remove(&peer),
        };
        if old == deadline {
            return;
        }
        if let Some(o) = old {
            self.by_deadline.remove(&(o, peer));
        }
        if let Some(d) = deadline {
            self.by_deadline.insert((d, peer));
        }
    }

    /// The earliest deadline.
    pub(crate) fn first(&self) -> Option<Instant> {
        self.by_deadline.first().map(|(t, _)| *t)
    }

    /// Takes the peers whose deadline is at or before `now`.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<SocketAddr> {
        let mut due = Vec::new();
        while let Some(&(t, peer)) = self.by_deadline.first() {
            if t > now {
                break;
            }
            self.by_deadline.pop_first();
            self.of.remove(&peer);
            due.push(peer);
        }
        due
    }
}

#[cfg(test)]
mod tests;
