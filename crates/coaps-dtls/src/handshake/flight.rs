//! Flights and retransmission timers (RFC 6347 §4.2.4) and handshake message fragmentation
//! (RFC 6347 §4.2.3).
//!
//! DTLS 1.2 has no acknowledgements: a flight is retransmitted whole when the timer fires
//! before the peer's next flight arrives. The timer here only does the arithmetic; the engine
//! decides what to resend.
//!
//! # Retransmission policy
//!
//! Each association's timer asks a [`RetransmitPolicy`] for the first timeout of every flight
//! and the cap of its doubling, and reports to it the round trips it measures
//! ([`RttSampleKind`]). Without a [`RetransmitPolicyFactory`] in
//! [`CommonConfig::retransmit_policy`](crate::CommonConfig::retransmit_policy) the policy is
//! [`Rfc6347Policy`] with the values of [`RetransmitConfig`], held inline (no allocation).
//! Samples follow Karn's rule (RFC 6298 §3, adopted by RFC 6347 §4.2.4.1 and RFC 9147 §5.8.2):
//! only an exchange whose request went out exactly once is measured, since the answer to a
//! retransmitted flight cannot be matched to one transmission.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::codec::HandshakeType;
use crate::msgs::HandshakeHeader;
use crate::types::Role;

/// Retransmission timer settings (RFC 6347 §4.2.4.1). `initial` and `max` are the default
/// policy's ([`Rfc6347Policy`]); a [`RetransmitPolicyFactory`] replaces them per association.
/// `max_retransmissions` and `handshake_timeout` hold unless the policy sets its own
/// ([`RetransmitPolicy::max_retransmissions`], [`RetransmitPolicy::handshake_timeout`]).
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
    /// Timeouts of one flight after which it is resent in smaller datagrams, when its largest
    /// datagram was above [`min_datagram_size`](Self::min_datagram_size): each further timeout
    /// halves the datagram size again, down to that floor, and later flights of the handshake
    /// keep the smaller size. A path that silently drops large datagrams (an MTU below the
    /// configured one, or fragments lost) otherwise never completes; RFC 6347 §4.1.1.1 asks to
    /// back off the PMTU estimate after repeated retransmissions, RFC 9147 §4.4 likewise.
    /// `0` never shrinks.
    pub smaller_datagrams_after: u32,
    /// The floor of that halving, in bytes of UDP payload (capped at 65 535). Never above the
    /// configured [`CommonConfig::mtu`](crate::CommonConfig::mtu).
    pub min_datagram_size: usize,
}

impl Default for RetransmitConfig {
    /// 1 s doubling to 60 s, 7 retransmissions per flight, 120 s per handshake. With these
    /// values the budget is what ends a dead handshake: the timeouts 1+2+4+8+16+32 s reach
    /// 63 s after six retransmissions, and the seventh deadline is clamped to 120 s. Smaller
    /// datagrams from the second timeout of a flight on, down to 256 bytes (as Californium's
    /// back-off does).
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            max_retransmissions: 7,
            handshake_timeout: Duration::from_secs(120),
            smaller_datagrams_after: 2,
            min_datagram_size: 256,
        }
    }
}

/// What an RTT sample reported to a [`RetransmitPolicy`] was measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RttSampleKind {
    /// The stateless exchange before the handshake proper. Server: from issuing a cookie
    /// (HelloVerifyRequest, RFC 6347 §4.2.1; HelloRetryRequest, RFC 9147 §5.1) to receiving it
    /// back, measured by a gate in front
    /// ([`DatagramMeta::cookie_rtt`](crate::DatagramMeta::cookie_rtt)) or by the endpoint's
    /// own cookie check. Client: from sending a ClientHello (not retransmitted) to receiving
    /// the HelloVerifyRequest or HelloRetryRequest answering it. It includes the peer's time to
    /// answer, so it bounds the round trip from above.
    Cookie,
    /// One of our flights, sent once, answered by the first message of the peer's next flight
    /// (RFC 6347 §4.2.4; RFC 9147 §5.8.2).
    Flight,
    /// DTLS 1.3: an ACK (RFC 9147 §7) newly acknowledging records of a flight sent once
    /// (RFC 9147 §5.8.2: "acknowledged without having to be retransmitted").
    Ack,
}

/// The retransmission timing of one association: the first timeout of each flight and the cap
/// of its doubling, informed by the round trips the engine measures.
///
/// The engine asks [`initial_timeout`](Self::initial_timeout) each time it sends a new flight
/// that expects an answer, and [`max_timeout`](Self::max_timeout) each time the timer fires and
/// doubles (RFC 6347 §4.2.4.1). The retransmission count and the handshake's time budget are
/// [`RetransmitConfig`]'s unless the policy gives its own
/// ([`max_retransmissions`](Self::max_retransmissions),
/// [`handshake_timeout`](Self::handshake_timeout)): either way they bound the work of every
/// association.
///
/// Both timeouts must be non-zero: a zero interval stays zero when doubled, and the flight
/// would then be resent at once until the retransmission limit.
pub trait RetransmitPolicy: Send + Sync + fmt::Debug {
    /// The timeout of a flight's first transmission. RFC 6347 §4.2.4.1 recommends 1 s;
    /// RFC 9147 §5.8.2 1.5 times an RTT estimate when one exists, profiles other values.
    fn initial_timeout(&self) -> Duration;

    /// Upper bound of the doubling. RFC 6347 §4.2.4.1: "up to no less than 60 seconds"; the
    /// default is 60 s.
    fn max_timeout(&self) -> Duration {
        Duration::from_secs(60)
    }

    /// A round-trip measurement (see [`RttSampleKind`]). Only exchanges whose request was sent
    /// once are measured (Karn's rule, RFC 6298 §3). The default ignores it.
    fn on_rtt_sample(&mut self, rtt: Duration, kind: RttSampleKind) {
        let _ = (rtt, kind);
    }

    /// The timer fired and backed off to `interval` (the flight is being retransmitted). A
    /// policy may keep the backed-off value for its next flights until a flight is answered
    /// without retransmission (RFC 6298 §5.7, RFC 9147 §5.8.2 "retain the current timer
    /// value"): otherwise, on a path slower than the initial timeout, every flight is
    /// retransmitted and, by Karn's rule, never measured. The default ignores it.
    fn on_backoff(&mut self, interval: Duration) {
        let _ = interval;
    }

    /// The handshake's time budget: once spent, the next timeout gives up whatever the
    /// retransmission count. `None` (the default) keeps
    /// [`RetransmitConfig::handshake_timeout`]. Read once, when the association is created.
    fn handshake_timeout(&self) -> Option<Duration> {
        None
    }

    /// Retransmissions of one flight before giving up. `None` (the default) keeps
    /// [`RetransmitConfig::max_retransmissions`]; a policy whose budget is in time
    /// ([`handshake_timeout`](Self::handshake_timeout)) may allow more. Read once, when the
    /// association is created.
    fn max_retransmissions(&self) -> Option<u32> {
        None
    }
}

/// Builds the [`RetransmitPolicy`] of each association (one per [`crate::Connection`], as
/// quinn-proto's `ControllerFactory` builds one congestion controller per connection). Set it
/// in [`CommonConfig::retransmit_policy`](crate::CommonConfig::retransmit_policy).
pub trait RetransmitPolicyFactory: Send + Sync + fmt::Debug {
    /// The policy for a new association; called once, before its first flight.
    fn build(&self, context: &PolicyContext) -> Box<dyn RetransmitPolicy>;

    /// The longest [`RetransmitPolicy::handshake_timeout`] of the policies this factory
    /// builds, if any sets one. Server-wide timing that must outlast every handshake reads it
    /// through [`CommonConfig::longest_handshake_timeout`](crate::CommonConfig::longest_handshake_timeout),
    /// such as the lifetime of DTLS 1.3 HelloRetryRequest cookies
    /// ([`cookie13_config`](crate::gate::cookie13_config)). Default `None`.
    fn longest_handshake_timeout(&self) -> Option<Duration> {
        None
    }
}

/// What is known about an association when its policy is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyContext {
    /// The peer's address.
    pub peer: SocketAddr,
    /// Our side of the handshake.
    pub role: Role,
    /// Server: the cookie round trip of this peer's handshake, if one was measured (see
    /// [`RttSampleKind::Cookie`]). The same value is also the policy's first
    /// [`on_rtt_sample`](RetransmitPolicy::on_rtt_sample), before the first flight, so a
    /// policy that learns from samples alone sees it too.
    pub cookie_rtt: Option<Duration>,
    /// The configured timer values ([`CommonConfig::retransmit`](crate::CommonConfig::retransmit)).
    pub retransmit: RetransmitConfig,
}

impl PolicyContext {
    /// A context for `peer` and `role`, with the default timer values and no cookie round trip.
    pub fn new(peer: SocketAddr, role: Role) -> Self {
        Self { peer, role, cookie_rtt: None, retransmit: RetransmitConfig::default() }
    }
}

/// The RFC 6347 §4.2.4.1 timing: a fixed initial timeout, doubled up to a cap; RTT samples are
/// ignored (RFC 6347 has no RTT estimate). The default policy, with
/// [`RetransmitConfig::initial`] and [`RetransmitConfig::max`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc6347Policy {
    /// The first timeout of every flight.
    pub initial: Duration,
    /// Upper bound of the doubling.
    pub max: Duration,
}

impl From<&RetransmitConfig> for Rfc6347Policy {
    fn from(c: &RetransmitConfig) -> Self {
        Self { initial: c.initial, max: c.max }
    }
}

impl RetransmitPolicy for Rfc6347Policy {
    fn initial_timeout(&self) -> Duration {
        self.initial
    }
    fn max_timeout(&self) -> Duration {
        self.max
    }
}

/// The default policy is held inline, so an association without a factory allocates nothing
/// for it; the enum is no larger than the two durations (the box fits beside their niche).
#[derive(Debug)]
enum Policy {
    Rfc(Rfc6347Policy),
    Custom(Box<dyn RetransmitPolicy>),
}

impl Policy {
    fn get(&self) -> &dyn RetransmitPolicy {
        match self {
            Self::Rfc(p) => p,
            Self::Custom(p) => &**p,
        }
    }

    fn get_mut(&mut self) -> &mut dyn RetransmitPolicy {
        match self {
            Self::Rfc(p) => p,
            Self::Custom(p) => &mut **p,
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
/// limit, and an overall handshake deadline; its intervals come from the association's
/// [`RetransmitPolicy`], which it also feeds the round trips of flights sent once.
#[derive(Debug)]
pub struct RetransmitTimer {
    policy: Policy,
    max_retransmissions: u32,
    handshake_timeout: Duration,
    current: Duration,
    deadline: Option<Instant>,
    retransmissions: u32,
    started: Option<Instant>,
    /// The current flight went out once, at `deadline - current` (the deadline was not clamped
    /// to the budget), and its answer has not been measured yet. Deriving the send time keeps
    /// the timer at its former size, which matters for every idle association.
    sample_pending: bool,
    /// [`RetransmitConfig::smaller_datagrams_after`], saturated (the fields below fit the
    /// padding, so the timer does not grow).
    shrink_after: u8,
    /// Times the datagram size was halved (see [`flight_mtu`](Self::flight_mtu)).
    shrinks: u8,
    /// [`RetransmitConfig::min_datagram_size`], saturated.
    min_datagram_size: u16,
    /// The current flight's largest datagram was above `min_datagram_size`: smaller ones
    /// could help.
    shrinkable: bool,
}

impl RetransmitTimer {
    /// A disarmed timer with the default policy ([`Rfc6347Policy`] from `config`).
    pub fn new(config: RetransmitConfig) -> Self {
        Self::with(Policy::Rfc(Rfc6347Policy::from(&config)), &config)
    }

    /// A disarmed timer whose intervals come from `policy`; `config` gives the retransmission
    /// limit and the handshake budget (its `initial` and `max` are the policy's business).
    pub fn with_policy(config: RetransmitConfig, policy: Box<dyn RetransmitPolicy>) -> Self {
        Self::with(Policy::Custom(policy), &config)
    }

    /// The timer of a new association: the policy `factory` builds for `context`, or the
    /// default one without a factory. A cookie round trip in the context becomes the policy's
    /// first sample ([`RttSampleKind::Cookie`]), before the first flight asks for a timeout.
    pub fn for_association(factory: Option<&dyn RetransmitPolicyFactory>, context: &PolicyContext) -> Self {
        let mut t = match factory {
            Some(f) => Self::with_policy(context.retransmit, f.build(context)),
            None => Self::new(context.retransmit),
        };
        if let Some(rtt) = context.cookie_rtt {
            t.on_rtt_sample(rtt, RttSampleKind::Cookie);
            t.reset();
        }
        t
    }

    fn with(policy: Policy, config: &RetransmitConfig) -> Self {
        let current = policy.get().initial_timeout();
        let handshake_timeout = policy.get().handshake_timeout().unwrap_or(config.handshake_timeout);
        let max_retransmissions = policy.get().max_retransmissions().unwrap_or(config.max_retransmissions);
        Self {
            policy,
            max_retransmissions,
            handshake_timeout,
            current,
            deadline: None,
            retransmissions: 0,
            started: None,
            sample_pending: false,
            shrink_after: u8::try_from(config.smaller_datagrams_after).unwrap_or(u8::MAX),
            shrinks: 0,
            min_datagram_size: u16::try_from(config.min_datagram_size).unwrap_or(u16::MAX),
            shrinkable: false,
        }
    }

    /// A new flight was sent: deadline = now + the current interval, and the retransmission
    /// count starts over. The current interval is kept (RFC 6347 §4.2.4.1: keep it until a
    /// loss-free exchange; see [`reset`](Self::reset)). The first call starts the handshake
    /// budget.
    pub fn arm(&mut self, now: Instant) {
        let started = *self.started.get_or_insert(now);
        self.retransmissions = 0;
        let deadline = now + self.current;
        let clamped = self.clamp(deadline, started);
        self.deadline = Some(clamped);
        // A clamped deadline no longer tells when the flight went out: no sample then.
        self.sample_pending = clamped == deadline;
    }

    /// Stops the timer (the expected flight arrived, or the handshake finished).
    pub fn disarm(&mut self) {
        self.deadline = None;
        self.sample_pending = false;
    }

    /// When the timer fires, if armed.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the timer is armed and its deadline has passed.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }

    /// The timer fired (call when `now >= deadline()`): doubles the interval (capped at the
    /// policy's `max_timeout`) and re-arms, and the caller retransmits the flight (RFC 6347
    /// §4.2.4). Returns `Err(GaveUp)` and disarms once `max_retransmissions` would be exceeded
    /// or the handshake budget is spent. A disarmed timer cannot fire: the call is then a no-op
    /// returning `Ok`.
    pub fn on_timeout(&mut self, now: Instant) -> Result<(), GaveUp> {
        if self.deadline.is_none() {
            return Ok(());
        }
        // Karn's rule (RFC 6298 §3): the answer may now come to either transmission.
        self.sample_pending = false;
        let started = *self.started.get_or_insert(now);
        let budget_spent = now.saturating_duration_since(started) >= self.handshake_timeout;
        if budget_spent || self.retransmissions >= self.max_retransmissions {
            self.deadline = None;
            return Err(GaveUp);
        }
        self.retransmissions += 1;
        if self.shrinkable && self.shrink_after != 0 && self.retransmissions >= u32::from(self.shrink_after) {
            // Past 16 halvings any MTU is at the floor.
            self.shrinks = self.shrinks.saturating_add(1).min(16);
        }
        self.current = self.current.saturating_mul(2).min(self.policy.get().max_timeout());
        self.policy.get_mut().on_backoff(self.current);
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
        // Part of the flight went out twice: its answer is no sample (Karn's rule).
        self.sample_pending = false;
        let started = *self.started.get_or_insert(now);
        self.deadline = Some(self.clamp(now + self.current, started));
    }

    /// Returns the interval to the policy's initial timeout: RFC 6347 §4.2.4.1 allows it after
    /// a flight got through without loss, or after idleness of at least ten times the current
    /// value.
    pub fn reset(&mut self) {
        self.current = self.policy.get().initial_timeout();
    }

    /// Sets the timer for a flight just sent and returns whether it runs: a flight the peer
    /// answers starts from the policy's initial value (as OpenSSL and GnuTLS do: the peer just
    /// proved reachable, and a backed-off value would stall the next flight after one unlucky
    /// loss; RFC 6347 §4.2.4.1 allows the reset); the handshake's last flight runs no timer, it
    /// is resent only when the peer repeats its own.
    pub fn start_flight(&mut self, now: Instant, expect_reply: bool) -> bool {
        if expect_reply {
            self.reset();
            self.arm(now);
        } else {
            self.disarm();
        }
        expect_reply
    }

    /// The engine resent the flight without the timer firing (the peer repeated its own
    /// flight, RFC 6347 §4.2.4, RFC 9147 §5.8.1): its answer is no longer a sample.
    pub fn note_retransmitted(&mut self) {
        self.sample_pending = false;
    }

    /// The peer answered the current flight at `now` (its next flight, or an ACK in DTLS 1.3):
    /// returns the round trip when the flight went out once and has not been measured yet
    /// (Karn's rule, RFC 6298 §3), and reports it to the policy as `kind`. At most one sample
    /// per flight.
    pub fn on_answer(&mut self, now: Instant, kind: RttSampleKind) -> Option<Duration> {
        if !std::mem::take(&mut self.sample_pending) {
            return None;
        }
        let sent = self.deadline?.checked_sub(self.current)?;
        let rtt = now.saturating_duration_since(sent);
        self.on_rtt_sample(rtt, kind);
        Some(rtt)
    }

    /// Reports a round trip measured elsewhere (a cookie exchange) to the policy. The interval
    /// of a flight already armed is kept; the next flight asks the policy again.
    pub fn on_rtt_sample(&mut self, rtt: Duration, kind: RttSampleKind) {
        self.policy.get_mut().on_rtt_sample(rtt, kind);
    }

    /// The association's policy.
    pub fn policy(&self) -> &dyn RetransmitPolicy {
        self.policy.get()
    }

    /// The datagram size to send the current flight in, given the configured MTU: halved once
    /// per timeout from [`RetransmitConfig::smaller_datagrams_after`] on, never below
    /// [`RetransmitConfig::min_datagram_size`] (nor above `configured`). The engines fragment
    /// their flights to it (RFC 6347 §4.1.1.1, RFC 9147 §4.4: back off the PMTU estimate after
    /// repeated retransmissions).
    pub fn flight_mtu(&self, configured: usize) -> usize {
        let floor = usize::from(self.min_datagram_size).min(configured);
        (configured >> self.shrinks).max(floor)
    }

    /// The engine encoded the current flight; `largest` is its largest datagram, in bytes.
    /// Only a flight with a datagram above the floor is sent smaller after repeated timeouts.
    pub fn note_flight_encoded(&mut self, largest: usize) {
        self.shrinkable = largest > usize::from(self.min_datagram_size);
    }

    /// Times the datagram size was halved so far.
    pub fn datagram_shrinks(&self) -> u32 {
        u32::from(self.shrinks)
    }

    /// The handshake's time budget: the policy's
    /// ([`RetransmitPolicy::handshake_timeout`]) or else the configuration's.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
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
        deadline.min(started + self.handshake_timeout)
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

    type Samples = std::sync::Arc<std::sync::Mutex<Vec<(Duration, RttSampleKind)>>>;

    /// A policy with fixed timeouts that records the samples it is given.
    #[derive(Debug)]
    struct Recording {
        initial: Duration,
        max: Duration,
        samples: Samples,
    }

    impl RetransmitPolicy for Recording {
        fn initial_timeout(&self) -> Duration {
            self.initial
        }
        fn max_timeout(&self) -> Duration {
            self.max
        }
        fn on_rtt_sample(&mut self, rtt: Duration, kind: RttSampleKind) {
            self.samples.lock().unwrap().push((rtt, kind));
            // Learns: the next flight starts from twice the last sample.
            self.initial = rtt * 2;
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn recording(initial: Duration, max: Duration) -> (Box<Recording>, Samples) {
        let samples = std::sync::Arc::default();
        (Box::new(Recording { initial, max, samples: std::sync::Arc::clone(&samples) }), samples)
    }

    #[test]
    fn policy_times_every_flight_and_caps_the_doubling() {
        let t0 = Instant::now();
        let (p, _) = recording(ms(250), ms(900));
        let mut t = RetransmitTimer::with_policy(cfg(20, s(10_000)), p);
        assert!(t.start_flight(t0, true));
        assert_eq!(t.deadline(), Some(t0 + ms(250)));
        let mut now = t0 + ms(250);
        let mut intervals = Vec::new();
        for _ in 0..4 {
            t.on_timeout(now).unwrap();
            let d = t.deadline().unwrap();
            intervals.push((d - now).as_millis());
            now = d;
        }
        assert_eq!(intervals, [500, 900, 900, 900]);
        // The next flight starts from the policy's initial value again.
        t.start_flight(now, true);
        assert_eq!(t.deadline(), Some(now + ms(250)));
    }

    #[test]
    fn default_policy_is_rfc6347_from_the_config() {
        let t = RetransmitTimer::new(RetransmitConfig::default());
        assert_eq!(t.current(), s(1));
        assert_eq!((t.policy().initial_timeout(), t.policy().max_timeout()), (s(1), s(60)));
        let c = RetransmitConfig { initial: ms(300), max: s(7), ..RetransmitConfig::default() };
        let t = RetransmitTimer::new(c);
        assert_eq!((t.policy().initial_timeout(), t.policy().max_timeout()), (ms(300), s(7)));
    }

    #[test]
    fn karn_only_flights_sent_once_are_measured() {
        let t0 = Instant::now();
        let (p, samples) = recording(s(1), s(60));
        let mut t = RetransmitTimer::with_policy(cfg(20, s(10_000)), p);
        // Sent once, answered: one sample, and only one per flight.
        t.start_flight(t0, true);
        assert_eq!(t.on_answer(t0 + ms(80), RttSampleKind::Flight), Some(ms(80)));
        assert_eq!(t.on_answer(t0 + ms(90), RttSampleKind::Flight), None);
        // The policy learned: the next flight starts at 2 × 80 ms.
        let t1 = t0 + ms(100);
        t.start_flight(t1, true);
        assert_eq!(t.deadline(), Some(t1 + ms(160)));
        // Retransmitted on timeout: no sample.
        t.on_timeout(t1 + ms(160)).unwrap();
        assert_eq!(t.on_answer(t1 + ms(200), RttSampleKind::Flight), None);
        // Resent because the peer repeated its flight: no sample.
        let t2 = t1 + s(1);
        t.start_flight(t2, true);
        t.note_retransmitted();
        assert_eq!(t.on_answer(t2 + ms(50), RttSampleKind::Flight), None);
        // Partly resent after a partial ACK (RFC 9147 §5.8.1): no sample.
        let t3 = t2 + s(1);
        t.start_flight(t3, true);
        t.rearm(t3 + ms(10));
        assert_eq!(t.on_answer(t3 + ms(50), RttSampleKind::Ack), None);
        // The last flight runs no timer: nothing to measure.
        t.start_flight(t3 + s(1), false);
        assert_eq!(t.on_answer(t3 + s(2), RttSampleKind::Flight), None);
        assert_eq!(*samples.lock().unwrap(), [(ms(80), RttSampleKind::Flight)]);
    }

    #[test]
    fn no_sample_when_the_budget_clamped_the_deadline() {
        let t0 = Instant::now();
        let (p, samples) = recording(s(1), s(60));
        let mut t = RetransmitTimer::with_policy(cfg(20, ms(1500)), p);
        t.start_flight(t0, true);
        t.start_flight(t0 + ms(900), true);
        assert_eq!(t.deadline(), Some(t0 + ms(1500)));
        assert_eq!(t.on_answer(t0 + ms(1000), RttSampleKind::Flight), None);
        assert!(samples.lock().unwrap().is_empty());
    }

    #[test]
    fn cookie_round_trip_is_the_first_sample() {
        #[derive(Debug)]
        struct Factory(Samples);
        impl RetransmitPolicyFactory for Factory {
            fn build(&self, context: &PolicyContext) -> Box<dyn RetransmitPolicy> {
                assert_eq!(context.cookie_rtt, Some(ms(70)));
                assert_eq!(context.role, Role::Server);
                Box::new(Recording { initial: s(1), max: s(60), samples: self.0.clone() })
            }
        }
        let samples = std::sync::Arc::default();
        let factory = Factory(std::sync::Arc::clone(&samples));
        let mut context = PolicyContext::new("192.0.2.1:5684".parse().unwrap(), Role::Server);
        context.cookie_rtt = Some(ms(70));
        let t = RetransmitTimer::for_association(Some(&factory), &context);
        assert_eq!(*samples.lock().unwrap(), [(ms(70), RttSampleKind::Cookie)]);
        // The first flight already uses what the policy made of it.
        assert_eq!(t.current(), ms(140));
        let d = RetransmitTimer::for_association(None, &context);
        assert_eq!(d.current(), s(1));
    }

    #[test]
    fn policy_budget_and_backoff_reports() {
        #[derive(Debug)]
        struct Budget(Arc<std::sync::Mutex<Vec<Duration>>>);
        impl RetransmitPolicy for Budget {
            fn initial_timeout(&self) -> Duration {
                s(1)
            }
            fn on_backoff(&mut self, interval: Duration) {
                self.0.lock().unwrap().push(interval);
            }
            fn handshake_timeout(&self) -> Option<Duration> {
                Some(s(5))
            }
        }
        use std::sync::Arc;
        let seen = Arc::default();
        let t0 = Instant::now();
        let mut t = RetransmitTimer::with_policy(cfg(20, s(10_000)), Box::new(Budget(Arc::clone(&seen))));
        t.start_flight(t0, true);
        t.on_timeout(t0 + s(1)).unwrap();
        t.on_timeout(t0 + s(3)).unwrap();
        // The policy's 5 s budget, not the config's 10 000 s, clamps and ends the handshake.
        assert_eq!(t.deadline(), Some(t0 + s(5)));
        assert_eq!(t.on_timeout(t0 + s(5)), Err(GaveUp));
        assert_eq!(*seen.lock().unwrap(), [s(2), s(4)]);
        assert_eq!(t.handshake_timeout(), s(5));
    }

    #[test]
    fn repeated_timeouts_of_a_large_flight_shrink_its_datagrams() {
        let t0 = Instant::now();
        let mut t = RetransmitTimer::new(cfg(20, s(10_000)));
        t.start_flight(t0, true);
        t.note_flight_encoded(1200);
        assert_eq!(t.flight_mtu(1400), 1400);
        t.on_timeout(t0 + s(1)).unwrap();
        assert_eq!(t.flight_mtu(1400), 1400, "one timeout may be a plain loss");
        t.on_timeout(t0 + s(3)).unwrap();
        assert_eq!(t.flight_mtu(1400), 700, "halved at the second");
        t.note_flight_encoded(700);
        t.on_timeout(t0 + s(7)).unwrap();
        assert_eq!(t.flight_mtu(1400), 350);
        t.note_flight_encoded(350);
        t.on_timeout(t0 + s(15)).unwrap();
        assert_eq!(t.flight_mtu(1400), 256, "the floor");
        t.note_flight_encoded(256);
        t.on_timeout(t0 + s(31)).unwrap();
        assert_eq!(t.datagram_shrinks(), 3, "at the floor, no further halving");
        // The next flight keeps the smaller size; a configured MTU below the floor stays.
        t.start_flight(t0 + s(40), true);
        assert_eq!(t.flight_mtu(1400), 256);
        assert_eq!(t.flight_mtu(200), 200);

        // A flight whose datagrams are all small is never resent smaller, nor with the
        // behaviour switched off.
        for (largest, after) in [(200, 2), (1200, 0)] {
            let mut t = RetransmitTimer::new(RetransmitConfig { smaller_datagrams_after: after, ..cfg(20, s(10_000)) });
            t.start_flight(t0, true);
            t.note_flight_encoded(largest);
            for i in 1..6 {
                t.on_timeout(t0 + s(1 << i)).unwrap();
            }
            assert_eq!(t.flight_mtu(1400), 1400);
        }
        assert_eq!(RetransmitTimer::new(cfg(20, s(10_000))).handshake_timeout(), s(10_000));
    }

    /// Every association carries a timer inline: the policy must not make it grow (the default
    /// one is held without a box, a custom one is a box beside the durations' niche).
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn timer_stays_small() {
        assert_eq!(size_of::<Policy>(), 32);
        assert!(size_of::<RetransmitTimer>() <= 112, "RetransmitTimer grew to {}", size_of::<RetransmitTimer>());
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
