//! Flights and retransmission timers (RFC 6347 §4.2.4) and handshake message fragmentation
//! (RFC 6347 §4.2.3).
//!
//! DTLS 1.2 has no acknowledgements: a flight is retransmitted whole when the timer fires
//! before the peer's next flight arrives. The timer here only does the arithmetic; the engine
//! decides what to resend.

use std::fmt;
use std::time::{Duration, Instant};

use crate::codec::HandshakeType;
use crate::msgs::HandshakeHeader;

/// Retransmission timer settings (RFC 6347 §4.2.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetransmitConfig {
    /// First timeout. RFC 6347 §4.2.4.1 recommends 1 s (the RFC 6298 minimum); application
    /// profiles MAY recommend other values (e.g. longer for constrained networks).
    pub initial: Duration,
    /// Upper bound of the doubling. RFC 6347 §4.2.4.1: double "up to no less than 60 seconds".
    pub max: Duration,
    /// Retransmissions of one flight before giving up.
    pub max_retransmissions: u32,
    /// Total budget from the first flight sent: once spent, the next timeout gives up whatever
    /// the retransmission count. RFC 6347 leaves this to the implementation.
    pub handshake_timeout: Duration,
}

impl Default for RetransmitConfig {
    /// 1 s doubling to 60 s, 7 retransmissions per flight, 120 s per handshake. With these
    /// values the budget is what ends a dead handshake: the timeouts 1+2+4+8+16+32 s reach
    /// 63 s after six retransmissions, and the seventh deadline is clamped to 120 s.
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            max_retransmissions: 7,
            handshake_timeout: Duration::from_secs(120),
        }
    }
}

/// The retransmission limit or the handshake budget was exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaveUp;

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("handshake retransmissions exhausted")
    }
}

impl std::error::Error for GaveUp {}

/// The RFC 6347 §4.2.4.1 timer: exponential back-off with a cap, a per-flight retransmission
/// limit, and an overall handshake deadline.
#[derive(Debug, Clone)]
pub struct RetransmitTimer {
    config: RetransmitConfig,
    current: Duration,
    deadline: Option<Instant>,
    retransmissions: u32,
    started: Option<Instant>,
}

impl RetransmitTimer {
    /// A disarmed timer at `config.initial`.
    pub fn new(config: RetransmitConfig) -> Self {
        Self { config, current: config.initial, deadline: None, retransmissions: 0, started: None }
    }

    /// A new flight was sent: deadline = now + the current interval, and the retransmission
    /// count starts over. The current interval is kept (RFC 6347 §4.2.4.1: keep it until a
    /// loss-free exchange; see [`reset`](Self::reset)). The first call starts the handshake
    /// budget.
    pub fn arm(&mut self, now: Instant) {
        let started = *self.started.get_or_insert(now);
        self.retransmissions = 0;
        self.deadline = Some(self.clamp(now + self.current, started));
    }

    /// Stops the timer (the expected flight arrived, or the handshake finished).
    pub fn disarm(&mut self) {
        self.deadline = None;
    }

    /// When the timer fires, if armed.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the timer is armed and its deadline has passed.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }

    /// The timer fired (call when `now >= deadline()`): doubles the interval (capped at `max`)
    /// and re-arms, and the caller retransmits the flight (RFC 6347 §4.2.4). Returns
    /// `Err(GaveUp)` and disarms once `max_retransmissions` would be exceeded or the handshake
    /// budget is spent. A disarmed timer cannot fire: the call is then a no-op returning `Ok`.
    pub fn on_timeout(&mut self, now: Instant) -> Result<(), GaveUp> {
        if self.deadline.is_none() {
            return Ok(());
        }
        let started = *self.started.get_or_insert(now);
        let budget_spent = now.saturating_duration_since(started) >= self.config.handshake_timeout;
        if budget_spent || self.retransmissions >= self.config.max_retransmissions {
            self.deadline = None;
            return Err(GaveUp);
        }
        self.retransmissions += 1;
        self.current = self.current.saturating_mul(2).min(self.config.max);
        self.deadline = Some(self.clamp(now + self.current, started));
        Ok(())
    }

    /// Re-arms at the current interval without counting a retransmission: RFC 9147 §5.8.1 way 2,
    /// the unacknowledged part of a flight was resent because a partial ACK arrived, not
    /// because the timer fired, so the interval does not back off. Does nothing when disarmed.
    pub fn rearm(&mut self, now: Instant) {
        if self.deadline.is_none() {
            return;
        }
        let started = *self.started.get_or_insert(now);
        self.deadline = Some(self.clamp(now + self.current, started));
    }

    /// Returns the interval to `initial`: RFC 6347 §4.2.4.1 allows it after a flight got
    /// through without loss, or after idleness of at least ten times the current value.
    pub fn reset(&mut self) {
        self.current = self.config.initial;
    }

    /// Sets the timer for a flight just sent and returns whether it runs: a flight the peer
    /// answers starts from the initial value (as OpenSSL and GnuTLS do: the peer just proved
    /// reachable, and a backed-off value would stall the next flight after one unlucky loss;
    /// RFC 6347 §4.2.4.1 allows the reset); the handshake's last flight runs no timer, it is
    /// resent only when the peer repeats its own.
    pub fn start_flight(&mut self, now: Instant, expect_reply: bool) -> bool {
        if expect_reply {
            self.reset();
            self.arm(now);
        } else {
            self.disarm();
        }
        expect_reply
    }

    /// Retransmissions of the current flight so far.
    pub fn retransmissions(&self) -> u32 {
        self.retransmissions
    }

    /// The interval the next `arm` uses.
    pub fn current(&self) -> Duration {
        self.current
    }

    /// No deadline beyond the handshake budget, so a dead handshake ends on time.
    fn clamp(&self, deadline: Instant, started: Instant) -> Instant {
        deadline.min(started + self.config.handshake_timeout)
    }
}

/// Largest handshake body a uint24 length can describe (RFC 6347 §4.2.2).
pub const MAX_HANDSHAKE_BODY: usize = 0xFF_FFFF;

/// Splits a handshake message into fragments whose header and body together fit in
/// `max_fragment_len` bytes (RFC 6347 §4.2.3), i.e. at most `max_fragment_len - 12` body bytes
/// per fragment and at least one. An empty body yields one empty fragment. Each fragment
/// repeats the full message length and the same message_seq.
///
/// # Panics
/// If `body` is longer than [`MAX_HANDSHAKE_BODY`]: such a message cannot be encoded, so
/// producing one is a bug in the caller.
pub fn fragment(msg_type: HandshakeType, message_seq: u16, body: &[u8], max_fragment_len: usize) -> Fragments<'_> {
    fragment_range(msg_type, message_seq, body, 0..body.len(), max_fragment_len)
}

/// Like [`fragment`], but covers only `range` of the body: DTLS 1.3 resends only the fragments
/// the peer has not acknowledged, re-packed to the MTU (RFC 9147 §5.8.1, §7.2). Fragment
/// boundaries may differ from the first transmission; RFC 9147 §5.5 only forbids changing the
/// message bytes. An empty range yields one empty fragment at its start.
///
/// # Panics
/// If `body` is longer than [`MAX_HANDSHAKE_BODY`] or `range` is not inside `body`.
pub fn fragment_range(
    msg_type: HandshakeType,
    message_seq: u16,
    body: &[u8],
    range: std::ops::Range<usize>,
    max_fragment_len: usize,
) -> Fragments<'_> {
    assert!(body.len() <= MAX_HANDSHAKE_BODY, "handshake body longer than 2^24-1");
    assert!(range.start <= range.end && range.end <= body.len(), "fragment range outside the body");
    let per = max_fragment_len.saturating_sub(HandshakeHeader::LEN).max(1);
    Fragments { msg_type, message_seq, body, per, offset: range.start, end: range.end, done: false }
}

/// The parts of one handshake message the peer has acknowledged (RFC 9147 §7.2: "record that
/// the messages or message fragments sent in the records being ACKed were received"), as
/// sorted, disjoint, non-adjacent byte ranges of the body. Its size is bounded by the number of
/// fragments sent, since every range comes from one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    ranges: Vec<(usize, usize)>,
    /// An empty message is delivered once any record carrying it is acknowledged.
    empty_acked: bool,
}

impl Delivered {
    /// Marks `start..end` as acknowledged.
    pub fn insert(&mut self, start: usize, end: usize) {
        if start == end {
            self.empty_acked = true;
            return;
        }
        let (mut s, mut e) = (start, end);
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        let mut placed = false;
        for &(a, b) in &self.ranges {
            if b < s {
                out.push((a, b));
            } else if e < a {
                if !placed {
                    out.push((s, e));
                    placed = true;
                }
                out.push((a, b));
            } else {
                s = s.min(a);
                e = e.max(b);
            }
        }
        if !placed {
            out.push((s, e));
        }
        self.ranges = out;
    }

    /// Whether the whole body of `len` bytes is acknowledged.
    pub fn is_complete(&self, len: usize) -> bool {
        if len == 0 {
            return self.empty_acked;
        }
        self.ranges.first() == Some(&(0, len))
    }

    /// The ranges of a `len`-byte body not yet acknowledged, in order (`0..0` for an
    /// unacknowledged empty body).
    pub fn gaps(&self, len: usize) -> Vec<std::ops::Range<usize>> {
        if len == 0 {
            return if self.empty_acked { Vec::new() } else { std::iter::once(0..0).collect() };
        }
        let mut gaps = Vec::new();
        let mut at = 0;
        for &(a, b) in &self.ranges {
            if a > at {
                gaps.push(at..a.min(len));
            }
            at = at.max(b);
        }
        if at < len {
            gaps.push(at..len);
        }
        gaps
    }
}

/// The iterator returned by [`fragment`].
#[derive(Debug, Clone)]
pub struct Fragments<'a> {
    msg_type: HandshakeType,
    message_seq: u16,
    body: &'a [u8],
    per: usize,
    offset: usize,
    end: usize,
    done: bool,
}

impl<'a> Iterator for Fragments<'a> {
    type Item = (HandshakeHeader, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let end = (self.offset + self.per).min(self.end);
        let piece = &self.body[self.offset..end];
        // Lengths fit in a uint24: the body length was checked in `fragment`.
        let header = HandshakeHeader {
            msg_type: self.msg_type,
            length: self.body.len() as u32,
            message_seq: self.message_seq,
            fragment_offset: self.offset as u32,
            fragment_length: piece.len() as u32,
        };
        self.offset = end;
        self.done = end == self.end;
        Some((header, piece))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = if self.done { 0 } else { (self.end - self.offset).div_ceil(self.per).max(1) };
        (n, Some(n))
    }
}

impl ExactSizeIterator for Fragments<'_> {}

impl std::iter::FusedIterator for Fragments<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Reader;
    use crate::handshake::reassembly::{Insert, Reassembler};

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn cfg(max_retransmissions: u32, handshake_timeout: Duration) -> RetransmitConfig {
        RetransmitConfig { max_retransmissions, handshake_timeout, ..RetransmitConfig::default() }
    }

    #[test]
    fn defaults_follow_rfc6347() {
        let c = RetransmitConfig::default();
        assert_eq!((c.initial, c.max), (s(1), s(60)));
    }

    #[test]
    fn doubling_and_cap() {
        let t0 = Instant::now();
        let mut t = RetransmitTimer::new(cfg(20, s(10_000)));
        assert_eq!(t.deadline(), None);
        t.arm(t0);
        assert_eq!(t.deadline(), Some(t0 + s(1)));
        let mut now = t0 + s(1);
        let mut intervals = Vec::new();
        for _ in 0..9 {
            assert!(t.is_expired(now));
            t.on_timeout(now).unwrap();
            let d = t.deadline().unwrap();
            intervals.push((d - now).as_secs());
            now = d;
        }
        assert_eq!(intervals, [2, 4, 8, 16, 32, 60, 60, 60, 60]);
        assert_eq!(t.retransmissions(), 9);
    }

    #[test]
    fn gives_up_after_max_retransmissions() {
        let t0 = Instant::now();
        let mut t = RetransmitTimer::new(cfg(3, s(10_000)));
        t.arm(t0);
        let mut now = t0;
        for i in 1..=3 {
            now = t.deadline().unwrap();
            assert_eq!(t.on_timeout(now), Ok(()));
            assert_eq!(t.retransmissions(), i);
        }
        now = t.deadline().unwrap().max(now);
        assert_eq!(t.on_timeout(now), Err(GaveUp));
        assert_eq!(t.deadline(), None);
        assert!(!t.is_expired(now + s(100)));
    }

    #[test]
    fn new_flight_restarts_count_but_keeps_interval() {
        let t0 = Instant::now();
        let mut t = RetransmitTimer::new(cfg(2, s(10_000)));
        t.arm(t0);
        t.on_timeout(t0 + s(1)).unwrap();
        t.on_timeout(t0 + s(3)).unwrap();
        assert_eq!(t.current(), s(4));
        // The peer's next flight arrived; we send our next one.
        t.disarm();
        assert_eq!(t.deadline(), None);
        let t1 = t0 + s(5);
        t.arm(t1);
        assert_eq!(t.retransmissions(), 0);
        assert_eq!(t.deadline(), Some(t1 + s(4)));
        t.on_timeout(t1 + s(4)).unwrap();
        t.on_timeout(t1 + s(12)).unwrap();
        assert_eq!(t.on_timeout(t1 + s(28)), Err(GaveUp));
    }

    #[test]
    fn reset_returns_to_initial() {
        let t0 = Instant::now();
        let mut t = RetransmitTimer::new(cfg(7, s(10_000)));
        t.arm(t0);
        t.on_timeout(t0 + s(1)).unwrap();
        t.on_timeout(t0 + s(3)).unwrap();
        t.reset();
        assert_eq!(t.current(), s(1));
        t.arm(t0 + s(4));
        assert_eq!(t.deadline(), Some(t0 + s(5)));
    }

    #[test]
    fn handshake_budget() {
        let t0 = Instant::now();
        let mut t = RetransmitTimer::new(RetransmitConfig::default());
        t.arm(t0);
        let mut n = 0;
        loop {
            let d = t.deadline().unwrap();
            assert!(d <= t0 + s(120));
            match t.on_timeout(d) {
                Ok(()) => n += 1,
                Err(GaveUp) => {
                    assert_eq!(d, t0 + s(120));
                    break;
                }
            }
        }
        assert_eq!(n, 6);
        // The budget spans flights: a later flight cannot extend it.
        let mut t = RetransmitTimer::new(cfg(7, s(10)));
        t.arm(t0);
        t.arm(t0 + s(9));
        assert_eq!(t.deadline(), Some(t0 + s(10)));
        assert_eq!(t.on_timeout(t0 + s(10)), Err(GaveUp));
    }

    #[test]
    fn disarmed_timer_does_not_fire() {
        let t0 = Instant::now();
        let mut t = RetransmitTimer::new(RetransmitConfig::default());
        assert_eq!(t.on_timeout(t0), Ok(()));
        assert_eq!((t.deadline(), t.retransmissions(), t.current()), (None, 0, s(1)));
    }

    fn check_fragments(body: &[u8], max: usize) {
        let frags: Vec<_> = fragment(HandshakeType::Certificate, 5, body, max).collect();
        let per = max.saturating_sub(12).max(1);
        assert_eq!(frags.len(), body.len().div_ceil(per).max(1));
        assert_eq!(fragment(HandshakeType::Certificate, 5, body, max).len(), frags.len());
        let mut expect_offset = 0;
        for (h, piece) in &frags {
            assert_eq!(h.msg_type, HandshakeType::Certificate);
            assert_eq!(h.message_seq, 5);
            assert_eq!(h.length as usize, body.len());
            assert_eq!(h.fragment_offset as usize, expect_offset);
            assert_eq!(h.fragment_length as usize, piece.len());
            assert!(12 + piece.len() <= max.max(13));
            assert!(!piece.is_empty() || body.is_empty());
            assert_eq!(*piece, &body[expect_offset..expect_offset + piece.len()]);
            expect_offset += piece.len();
        }
        assert_eq!(expect_offset, body.len());
    }

    #[test]
    fn fragments_cover_body_exactly_and_fit() {
        let body: Vec<u8> = (0..1000u32).map(|i| (i * 13) as u8).collect();
        for len in [0, 1, 2, 11, 12, 13, 99, 100, 101, 1000] {
            for max in [0, 1, 12, 13, 14, 20, 100, 112, 113, 1500] {
                check_fragments(&body[..len], max);
            }
        }
        let f: Vec<_> = fragment(HandshakeType::ServerHelloDone, 3, &[], 100).collect();
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].0.length, f[0].0.fragment_offset, f[0].0.fragment_length), (0, 0, 0));
    }

    #[test]
    fn fragments_encode_and_parse() {
        let body: Vec<u8> = (0..50u8).collect();
        let mut wire = Vec::new();
        for (h, piece) in fragment(HandshakeType::ClientKeyExchange, 2, &body, 32) {
            let at = wire.len();
            h.encode(&mut wire);
            wire.extend_from_slice(piece);
            assert!(wire.len() - at <= 32);
        }
        let mut r = Reader::new(&wire);
        let mut re = Reassembler::default();
        re.set_next_seq(2);
        while !r.is_empty() {
            let (h, f) = HandshakeHeader::read_fragment(&mut r).unwrap();
            assert_eq!(re.insert(&h, f), Ok(Insert::Buffered));
        }
        let m = re.pop().unwrap();
        assert_eq!((m.msg_type, m.message_seq, m.body), (HandshakeType::ClientKeyExchange, 2, body));
    }

    #[test]
    fn round_trip_through_reassembler_many_sizes() {
        let body: Vec<u8> = (0..700u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in (0..700).step_by(37).chain([1, 699, 700]) {
            for max in (0..200).step_by(7).chain([1500]) {
                let msg = &body[..len];
                let mut re = Reassembler::default();
                // Send the fragments in reverse to make sure order does not matter.
                let frags: Vec<_> = fragment(HandshakeType::Certificate, 0, msg, max).collect();
                for (h, piece) in frags.iter().rev() {
                    assert_eq!(re.pop(), None);
                    re.insert(h, piece).unwrap();
                }
                let m = re.pop().unwrap();
                assert_eq!(m.body, msg, "len {len} max {max}");
                let mut t = Vec::new();
                m.transcript_bytes(&mut t);
                assert_eq!(&t[12..], msg);
            }
        }
    }

    #[test]
    fn fragment_range_covers_only_the_range() {
        let body: Vec<u8> = (0..100u8).collect();
        let frags: Vec<_> = fragment_range(HandshakeType::Certificate, 3, &body, 10..45, 12 + 16).collect();
        let spans: Vec<_> = frags.iter().map(|(h, f)| (h.fragment_offset, h.fragment_length, f.len())).collect();
        assert_eq!(spans, vec![(10, 16, 16), (26, 16, 16), (42, 3, 3)]);
        assert!(frags.iter().all(|(h, _)| h.length == 100 && h.message_seq == 3));
        assert_eq!(frags[2].1, &body[42..45]);
        let empty: Vec<_> = fragment_range(HandshakeType::Finished, 0, &body, 7..7, 50).collect();
        assert_eq!(empty.len(), 1);
        assert_eq!((empty[0].0.fragment_offset, empty[0].0.fragment_length), (7, 0));
    }

    #[test]
    fn delivered_merges_and_reports_gaps() {
        let mut d = Delivered::default();
        assert_eq!(d.gaps(100), std::iter::once(0..100).collect::<Vec<_>>());
        d.insert(20, 30);
        d.insert(50, 60);
        assert_eq!(d.gaps(100), vec![0..20, 30..50, 60..100]);
        d.insert(30, 50); // adjacent on both sides: one range
        assert_eq!(d.ranges, vec![(20, 60)]);
        d.insert(10, 25); // overlapping
        d.insert(90, 100);
        assert_eq!(d.gaps(100), vec![0..10, 60..90]);
        assert!(!d.is_complete(100));
        d.insert(0, 100);
        assert!(d.is_complete(100));
        assert!(d.gaps(100).is_empty());
        let mut e = Delivered::default();
        assert_eq!(e.gaps(0), std::iter::once(0..0).collect::<Vec<_>>());
        assert!(!e.is_complete(0));
        e.insert(0, 0);
        assert!(e.is_complete(0) && e.gaps(0).is_empty());
    }
}
