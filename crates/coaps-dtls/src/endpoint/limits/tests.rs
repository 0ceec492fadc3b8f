use super::*;
use std::time::Duration;

fn at(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

fn quotas() -> QuotaConfig {
    QuotaConfig {
        half_open_lifetime: Duration::from_secs(10),
        max_half_open_per_address: 3,
        max_half_open_per_prefix: 5,
        max_associations_per_address: 4,
        max_associations_per_identity: 2,
        min_idle_to_evict: Duration::from_secs(30),
    }
}

fn admit(l: &mut Limits, now: Instant, peer: SocketAddr) -> (Result<(), Refusal>, Vec<(SocketAddr, Eviction)>) {
    let mut ev = Vec::new();
    let len = l.len();
    let r = l.admit(now, peer, len, &mut ev).map(|_| ());
    (r, ev)
}

// The endpoint keeps each association's slot beside it; these find it by peer instead.
fn established(l: &mut Limits, now: Instant, peer: &SocketAddr, id: &PeerIdentity) -> Result<(), Refusal> {
    let slot = l.slot_of(peer);
    l.established(now, slot, peer, id)
}

fn touch(l: &mut Limits, now: Instant, peer: &SocketAddr) {
    let slot = l.slot_of(peer);
    l.touch(now, slot, peer);
}

fn remove(l: &mut Limits, peer: &SocketAddr) {
    let slot = l.slot_of(peer);
    l.remove(slot, peer);
}

fn psk(id: &str) -> PeerIdentity {
    PeerIdentity::Psk(id.as_bytes().to_vec())
}

#[test]
fn source_keys_fold_ipv4_mapped_addresses_and_cut_prefixes() {
    let mapped: IpAddr = "::ffff:192.0.2.77".parse().unwrap();
    assert_eq!(source_address(mapped), "192.0.2.77".parse::<IpAddr>().unwrap());
    assert_eq!(source_prefix(mapped), "192.0.2.0".parse::<IpAddr>().unwrap());
    assert_eq!(source_prefix("2001:db8:aa:bbcc::1".parse().unwrap()), "2001:db8:aa:bb00::".parse::<IpAddr>().unwrap());
    assert_ne!(
        source_prefix("2001:db8:aa:bb00::1".parse().unwrap()),
        source_prefix("2001:db8:aa:cc00::1".parse().unwrap())
    );
}

#[test]
fn half_open_per_address_is_capped_and_others_are_admitted() {
    let mut l = Limits::new(quotas(), 100, 100, Instant::now());
    let now = Instant::now();
    for port in 1..=3 {
        assert_eq!(admit(&mut l, now, at("192.0.2.1", port)).0, Ok(()));
    }
    assert_eq!(admit(&mut l, now, at("192.0.2.1", 4)).0, Err(Refusal::HalfOpenPerAddress));
    // The same host through an IPv4-mapped address is the same source.
    assert_eq!(admit(&mut l, now, at("::ffff:192.0.2.1", 5)).0, Err(Refusal::HalfOpenPerAddress));
    assert_eq!(admit(&mut l, now, at("198.51.100.1", 1)).0, Ok(()));
    // A completed handshake frees its half-open slot but still counts as an association.
    established(&mut l, now, &at("192.0.2.1", 1), &psk("a")).unwrap();
    assert_eq!(admit(&mut l, now, at("192.0.2.1", 6)).0, Ok(()));
    assert_eq!(l.half_open(), 4);
}

#[test]
fn half_open_per_prefix_is_capped_for_ipv4_and_ipv6() {
    let mut l = Limits::new(quotas(), 100, 100, Instant::now());
    let now = Instant::now();
    for host in 1..=5 {
        assert_eq!(admit(&mut l, now, at(&format!("192.0.2.{host}"), 1)).0, Ok(()));
    }
    assert_eq!(admit(&mut l, now, at("192.0.2.200", 1)).0, Err(Refusal::HalfOpenPerPrefix));
    assert_eq!(admit(&mut l, now, at("192.0.3.1", 1)).0, Ok(()));
    for sub in 0..5u8 {
        assert_eq!(admit(&mut l, now, at(&format!("2001:db8:0:{sub:x}::1"), 1)).0, Ok(()));
    }
    assert_eq!(admit(&mut l, now, at("2001:db8:0:ff::1", 1)).0, Err(Refusal::HalfOpenPerPrefix));
    assert_eq!(admit(&mut l, now, at("2001:db8:0:100::1", 1)).0, Ok(()), "another /56");
}

#[test]
fn at_max_handshakes_the_oldest_half_open_is_evicted() {
    let mut l = Limits::new(QuotaConfig::default(), 100, 3, Instant::now());
    let t0 = Instant::now();
    for i in 0..3u64 {
        assert_eq!(admit(&mut l, t0 + Duration::from_millis(i), at(&format!("10.0.{i}.1"), 1)).0, Ok(()));
    }
    let (r, ev) = admit(&mut l, t0 + Duration::from_millis(5), at("10.0.9.1", 1));
    assert_eq!(r, Ok(()));
    assert_eq!(ev, vec![(at("10.0.0.1", 1), Eviction::HalfOpenPressure)]);
    let (_, ev) = admit(&mut l, t0 + Duration::from_millis(6), at("10.0.8.1", 1));
    assert_eq!(ev, vec![(at("10.0.1.1", 1), Eviction::HalfOpenPressure)]);
    assert_eq!((l.half_open(), l.len()), (3, 3));
}

#[test]
fn half_open_handshakes_expire_after_their_lifetime() {
    let mut l = Limits::new(quotas(), 100, 100, Instant::now());
    let t0 = Instant::now();
    admit(&mut l, t0, at("192.0.2.1", 1)).0.unwrap();
    admit(&mut l, t0 + Duration::from_secs(4), at("192.0.2.1", 2)).0.unwrap();
    assert_eq!(l.next_deadline(), Some(t0 + Duration::from_secs(10)));
    let mut ev = Vec::new();
    l.expire(t0 + Duration::from_secs(9), &mut ev);
    assert!(ev.is_empty());
    l.expire(t0 + Duration::from_secs(10), &mut ev);
    assert_eq!(ev, vec![(at("192.0.2.1", 1), Eviction::HalfOpenExpired)]);
    assert_eq!(l.next_deadline(), Some(t0 + Duration::from_secs(14)));
    // An established association does not expire that way.
    established(&mut l, t0 + Duration::from_secs(5), &at("192.0.2.1", 2), &psk("a")).unwrap();
    assert_eq!(l.next_deadline(), None);
    l.expire(t0 + Duration::from_secs(100), &mut ev);
    assert_eq!((ev.len(), l.len()), (1, 1));
}

#[test]
fn full_table_evicts_the_least_recently_active_idle_association_first() {
    let mut q = quotas();
    q.max_associations_per_identity = usize::MAX;
    let mut l = Limits::new(q, 4, 4, Instant::now());
    let t0 = Instant::now();
    let peers: Vec<SocketAddr> = (1..=4).map(|i| at(&format!("10.{i}.0.1"), 1)).collect();
    for (i, p) in peers.iter().enumerate() {
        let t = t0 + Duration::from_secs(i as u64);
        admit(&mut l, t, *p).0.unwrap();
        established(&mut l, t, p, &psk("shared")).unwrap();
    }
    // peers[0] talks again: peers[1] becomes the least recently active.
    touch(&mut l, t0 + Duration::from_secs(10), &peers[0]);
    // Nobody idle for 30 s yet: a new client is refused, no active peer is shed.
    let (r, ev) = admit(&mut l, t0 + Duration::from_secs(20), at("10.9.0.1", 1));
    assert_eq!((r, ev.len()), (Err(Refusal::TableFull), 0));
    let (r, ev) = admit(&mut l, t0 + Duration::from_secs(40), at("10.9.0.1", 1));
    assert_eq!(r, Ok(()));
    assert_eq!(ev, vec![(peers[1], Eviction::IdleTableFull)]);
    // The half-open newcomer is not an eviction candidate; peers[2] is next.
    let (r, ev) = admit(&mut l, t0 + Duration::from_secs(41), at("10.8.0.1", 1));
    assert_eq!(r, Ok(()));
    assert_eq!(ev, vec![(peers[2], Eviction::IdleTableFull)]);
}

#[test]
fn associations_per_address_and_per_identity_are_capped() {
    let mut l = Limits::new(quotas(), 100, 100, Instant::now());
    let now = Instant::now();
    for port in 1..=4 {
        let p = at("192.0.2.1", port);
        admit(&mut l, now, p).0.unwrap();
        if port <= 2 {
            established(&mut l, now, &p, &psk("dev-1")).unwrap();
        }
    }
    assert_eq!(admit(&mut l, now, at("192.0.2.1", 9)).0, Err(Refusal::AssociationsPerAddress));
    // dev-1 already holds two associations: a third is refused when its handshake completes.
    assert_eq!(established(&mut l, now, &at("192.0.2.1", 3), &psk("dev-1")), Err(Refusal::AssociationsPerIdentity));
    assert_eq!(established(&mut l, now, &at("192.0.2.1", 3), &psk("dev-2")), Ok(()));
    // Anonymous peers are not counted per identity.
    for i in 0..5 {
        let p = at(&format!("198.51.{i}.1"), 1);
        admit(&mut l, now, p).0.unwrap();
        established(&mut l, now, &p, &PeerIdentity::Anonymous).unwrap();
    }
    remove(&mut l, &at("192.0.2.1", 1));
    assert_eq!(established(&mut l, now, &at("192.0.2.1", 4), &psk("dev-1")), Ok(()));
}

#[test]
fn removing_everything_leaves_no_counts_behind() {
    let mut l = Limits::new(quotas(), 1000, 1000, Instant::now());
    let now = Instant::now();
    let mut peers = Vec::new();
    for i in 0..200u32 {
        let p = at(&format!("10.{}.{}.{}", i % 7, i % 5, i % 3), i as u16);
        if admit(&mut l, now, p).0.is_ok() {
            if i % 2 == 0 {
                let _ = established(&mut l, now, &p, &psk(&format!("d{}", i % 3)));
            }
            peers.push(p);
        }
    }
    assert!(peers.len() > 50);
    for (i, p) in peers.iter().enumerate() {
        if i % 3 == 0 {
            touch(&mut l, now, p);
        }
    }
    for p in &peers {
        remove(&mut l, p);
    }
    assert_eq!((l.len(), l.half_open(), l.established.len), (0, 0, 0));
    assert!(l.per_address.is_empty() && l.per_prefix.is_empty() && l.per_identity.is_empty());
    assert_eq!((l.half_open.head, l.established.head), (NIL, NIL));
    // Slots are reused.
    let n = l.nodes.len();
    admit(&mut l, now, at("10.0.0.1", 1)).0.unwrap();
    assert_eq!(l.nodes.len(), n);
}

#[test]
fn idle_since_takes_only_associations_idle_before_the_mark() {
    let mut l = Limits::new(quotas(), 100, 100, Instant::now());
    let t0 = Instant::now();
    let (a, b, c) = (at("10.0.0.1", 1), at("10.1.0.1", 1), at("10.2.0.1", 1));
    for p in [a, b, c] {
        admit(&mut l, t0, p).0.unwrap();
    }
    established(&mut l, t0, &a, &psk("a")).unwrap();
    established(&mut l, t0, &b, &psk("b")).unwrap();
    touch(&mut l, t0 + Duration::from_secs(50), &a);
    let mut idle = Vec::new();
    l.idle_since(t0 + Duration::from_secs(20), &mut idle);
    idle.sort();
    assert_eq!(idle, vec![b, c]);
    assert_eq!(l.len(), 1);
}

#[test]
fn timers_come_out_in_deadline_order_and_follow_updates() {
    let mut t = Timers::default();
    let t0 = Instant::now();
    let (a, b, c) = (at("10.0.0.1", 1), at("10.0.0.2", 1), at("10.0.0.3", 1));
    t.set(a, Some(t0 + Duration::from_secs(3)));
    t.set(b, Some(t0 + Duration::from_secs(1)));
    t.set(c, Some(t0 + Duration::from_secs(2)));
    assert_eq!(t.first(), Some(t0 + Duration::from_secs(1)));
    t.set(b, Some(t0 + Duration::from_secs(5)));
    t.set(c, None);
    assert_eq!(t.first(), Some(t0 + Duration::from_secs(3)));
    assert_eq!(t.take_due(t0 + Duration::from_secs(4)), vec![a]);
    assert_eq!(t.take_due(t0 + Duration::from_secs(10)), vec![b]);
    assert_eq!(t.first(), None);
}

#[test]
fn a_node_stays_small() {
    // Every idle association carries one (issue 9: an idle association within 1 KiB).
    assert!(std::mem::size_of::<Option<Node>>() <= 56, "{}", std::mem::size_of::<Option<Node>>());
}

#[test]
fn a_stale_slot_or_another_peer_changes_nothing() {
    let mut l = Limits::new(quotas(), 100, 100, Instant::now());
    let now = Instant::now();
    let (a, b) = (at("192.0.2.1", 1), at("192.0.2.2", 1));
    let mut ev = Vec::new();
    let sa = l.admit(now, a, 0, &mut ev).unwrap();
    // The slot names a's node: b's calls with it do nothing.
    assert_eq!(l.established(now, sa, &b, &psk("x")), Ok(()));
    assert!(l.is_half_open(sa, &a));
    l.remove(sa, &b);
    l.remove(NO_SLOT, &a);
    assert_eq!(l.len(), 1);
    l.remove(sa, &a);
    // The slot is reused for b: a's old slot no longer reaches anything of a.
    let sb = l.admit(now, b, 0, &mut ev).unwrap();
    assert_eq!(sb, sa);
    l.remove(sa, &a);
    assert_eq!((l.len(), l.half_open()), (1, 1));
}

#[test]
fn a_moved_association_keeps_its_slot_and_its_counts_follow_it() {
    let mut l = Limits::new(quotas(), 100, 100, Instant::now());
    let now = Instant::now();
    let (a, b) = (at("192.0.2.1", 1), at("198.51.100.1", 1));
    let mut ev = Vec::new();
    let s = l.admit(now, a, 0, &mut ev).unwrap();
    l.moved(s, &a, b);
    assert!(l.is_half_open(s, &b) && !l.is_half_open(s, &a));
    assert!(!l.per_address.contains_key(&a.ip()) && l.per_address[&b.ip()].half_open == 1);
    assert_eq!(l.per_prefix.get(&source_prefix(b.ip())), Some(&1));
    assert_eq!(l.per_prefix.get(&source_prefix(a.ip())), None);
    l.established(now, s, &b, &psk("x")).unwrap();
    l.remove(s, &b);
    assert!(l.per_address.is_empty() && l.per_prefix.is_empty() && l.per_identity.is_empty());
}
