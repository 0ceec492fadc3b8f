//! Link profiles: handshake retransmission timers sized for the network a peer sits on.
//!
//! RFC 6347 §4.2.4.1 and RFC 9147 §5.8.2 start every flight's timer at 1 s "unless
//! implementations have deployment-specific and/or external information about the round trip
//! time". On NB-IoT (RTT around 0.5–2 s) or LTE-M during coverage changes (1–2 s) a 1 s timer
//! fires before the answer can arrive: duplicate flights, wasted radio time, and handshakes that
//! give up. A [`LinkProfile`] is that deployment-specific information, and
//! [`LinkPolicyFactory`] turns it into the engine's [`RetransmitPolicy`]:
//!
//! ```
//! use coaps_dtls::{ClientConfig, LinkProfile};
//! use std::sync::Arc;
//!
//! let profile: LinkProfile = "nb-iot".parse()?;
//! let mut config = ClientConfig::default();
//! profile.policy().install(&mut config.common);
//! assert!(config.common.retransmit_policy.is_some());
//! # Ok::<(), coaps_dtls::UnknownLinkProfile>(())
//! ```
//!
//! Three kinds of profiles:
//!
//! * **RFC timers** (`ethernet`, `wifi`): the RFC 6347 §4.2.4.1 values (1 s doubling to 60 s).
//!   Their round trips are far below the 1 s floor, so a measurement could not change the timer.
//! * **Long-delay links** (`802.15.4`, `lte-m`, `nb-iot`, `satellite`): every flight's first
//!   timeout is max(floor, 5 × RTT estimate), the estimate being the RFC 6298 smoothed RTT of
//!   this peer once measured, before that the `--rtt` hint ([`LinkPolicyFactory::with_rtt_hint`])
//!   or else the profile's typical RTT. The back-off doubles to the profile's cap, and the
//!   handshake gives up when the profile's time budget is spent: the budget is in time, not in
//!   tries (at most [`LONG_DELAY_MAX_RETRANSMISSIONS`] per flight, which the budget reaches
//!   first).
//! * **`auto`** (the default of the CLI): RFC timers until this peer has a sample, then adaptive:
//!   max(1 s, SRTT + 4 × RTTVAR (RFC 6298 §2.3), 2 × SRTT (the DTLS IoT profile,
//!   draft-ietf-uta-tls13-iot-profile "Timers and ACKs")).
//!
//! `auto` keeps a backed-off timer for the next flights until one is answered without
//! retransmission (RFC 6298 §5.7, RFC 9147 §5.8.2 "retain the current timer value"), as long
//! as the peer has no measured RTT: a path slower than the first timeout then still yields a
//! sample (Karn's rule drops every retransmitted exchange). Once measured, every flight starts
//! again from the estimate, as RFC 6347 timers start from 1 s: on a lossy link a retained
//! back-off would only slow the following flights down and spend the budget. The long-delay
//! profiles need no such memory: their prior already exceeds the RTT of their link.
//!
//! Estimates are kept per peer address across associations (a reconnecting device starts from
//! its last estimate) in a bounded table ([`RttTable`], least recently used evicted, capacity
//! [`LinkPolicyFactory::with_capacity`]), and a profile can be chosen per peer by address prefix
//! ([`LinkPolicyFactory::with_prefix`]).
//!
//! The smaller-datagrams-after-repeated-losses rule (Californium) is not implemented: the
//! engines read their MTU from [`CommonConfig::mtu`](crate::CommonConfig::mtu) only.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::handshake::flight::{PolicyContext, RetransmitPolicy, RetransmitPolicyFactory, RttSampleKind};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The network a peer is reached over. `FromStr`/`Display` use the names `ethernet`, `wifi`,
/// `802.15.4`, `lte-m`, `nb-iot`, `satellite` and `auto`; the numbers are in [`LinkParams`]
/// ([`LinkProfile::params`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LinkProfile {
    /// Wired LAN. RFC timers.
    Ethernet,
    /// IEEE 802.11 WLAN. RFC timers.
    Wifi,
    /// IEEE 802.15.4 / 6LoWPAN (RFC 4944), possibly multi-hop mesh. Long-delay timers.
    Ieee802154,
    /// LTE-M (LTE Cat-M1, 3GPP Release 13). Long-delay timers.
    LteM,
    /// NB-IoT (LTE Cat-NB1/NB2, 3GPP Release 13). Long-delay timers.
    NbIot,
    /// Geostationary satellite link. Long-delay timers.
    Satellite,
    /// RFC timers until the peer's RTT is measured, then adaptive (see the [module docs](self)).
    #[default]
    Auto,
}

/// How a profile sizes its timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// The RFC 6347 §4.2.4.1 values; RTT samples do not change them.
    Rfc,
    /// max(floor, [`LONG_DELAY_RTT_MULTIPLIER`] × estimate), the profile's typical RTT as prior.
    LongDelay,
    /// RFC timers until a sample, then max(floor, SRTT + 4 RTTVAR, 2 SRTT).
    Adaptive,
}

/// The multiplier of the long-delay profiles: the initial timer is 5 × the RTT estimate (the
/// LPWAN guidance "set the initial timer to 5× the measured RTT" of this project's issue 11:
/// a flight's answer may take the RTT plus the peer's computation, and a spurious retransmission
/// on a duty-cycled radio costs far more than waiting).
pub const LONG_DELAY_RTT_MULTIPLIER: u32 = 5;

/// Retransmissions of one flight allowed by `auto` and the long-delay profiles, whose time
/// budget ends a hopeless handshake first (every timeout is at least 1 s and doubles).
pub const LONG_DELAY_MAX_RETRANSMISSIONS: u32 = 32;

/// The numbers of a [`LinkProfile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkParams {
    /// How the timers are sized.
    pub kind: TimerKind,
    /// The typical round trip, used as the estimate before any sample (long-delay profiles).
    pub typical_rtt: Duration,
    /// No first timeout below this.
    pub floor: Duration,
    /// Upper bound of the doubling.
    pub max_timeout: Duration,
    /// The handshake's time budget: once spent, the next timeout gives up.
    pub handshake_budget: Duration,
    /// Upper bound of the CoAP ACK_TIMEOUT derived from the estimate
    /// ([`LinkPolicyFactory::ack_timeout`]), so that the derived EXCHANGE_LIFETIME (RFC 7252
    /// §4.8.2), which a server keeps its deduplication entries for, stays bounded.
    pub max_ack_timeout: Duration,
}

/// Names accepted by [`LinkProfile::from_str`], in the order of [`LinkProfile::ALL`].
pub const LINK_PROFILE_NAMES: [&str; 7] = ["ethernet", "wifi", "802.15.4", "lte-m", "nb-iot", "satellite", "auto"];

impl LinkProfile {
    /// Every profile.
    pub const ALL: [Self; 7] =
        [Self::Ethernet, Self::Wifi, Self::Ieee802154, Self::LteM, Self::NbIot, Self::Satellite, Self::Auto];

    /// The profile's name, as accepted by [`from_str`](Self::from_str).
    pub fn name(self) -> &'static str {
        LINK_PROFILE_NAMES[self as usize]
    }

    /// The profile's numbers and their sources:
    ///
    /// | profile | typical RTT | floor | cap | budget | max CoAP ACK_TIMEOUT | source of the RTT |
    /// |---|---|---|---|---|---|---|
    /// | `ethernet` | 1 ms | 1 s | 60 s | 120 s | 2 s | LAN; timers of RFC 6347 §4.2.4.1 |
    /// | `wifi` | 20 ms | 1 s | 60 s | 120 s | 2 s | WLAN with contention; RFC 6347 timers |
    /// | `802.15.4` | 200 ms | 1 s | 60 s | 10 min | 5 s | 250 kb/s, a 1 KB flight is ~ 9 frames of ~ 4 ms air time each, per hop, in a multi-hop 6LoWPAN mesh (RFC 4944, RFC 7925 §11 "low-power, multi-hop") |
    /// | `lte-m` | 400 ms | 2 s | 60 s | 15 min | 10 s | LTE-M 10–15 ms air latency, but 100–400 ms with DRX and scheduling, 1–2 s during coverage changes (GSMA LTE-M Deployment Guide; issue 11) |
    /// | `nb-iot` | 1.5 s | 5 s | 60 s | 20 min | 30 s | NB-IoT RTT 0.5–2 s; 3GPP TR 45.820 targets 10 s latency at 164 dB coupling loss (issue 11) |
    /// | `satellite` | 650 ms | 3 s | 60 s | 15 min | 15 s | geostationary hop ~ 560 ms RTT (RFC 2488 §2) plus ground segment |
    /// | `auto` | — | 1 s | 60 s | 10 min | 30 s | RFC 6298 §2 on the measured RTT |
    ///
    /// The floors keep the RFC 6298 §2.4 minimum of 1 s (the DTLS IoT profile: "no less than
    /// 1000ms"), raised on the long-delay links to what their fastest answer takes; the caps
    /// keep RFC 6347's "no less than 60 seconds". The budgets are in time, not in tries: a
    /// timer 5 × the RTT makes every loss cost more time than the RFC's 1 s does, so the budget
    /// must hold more than the RFC's 7 retransmissions of a flight from the profile's timer
    /// (10 retransmissions from 1 s take 6 min; the simulator sweep,
    /// `examples/timer_sweep.rs`, shows that shorter budgets complete fewer handshakes than
    /// the RFC timers at 30 % loss). A dead peer is given up on after the budget.
    pub const fn params(self) -> LinkParams {
        let (kind, typical_rtt, floor, max_timeout, handshake_budget, max_ack_timeout) = match self {
            Self::Ethernet => (TimerKind::Rfc, ms(1), ms(1000), ms(60_000), ms(120_000), ms(2000)),
            Self::Wifi => (TimerKind::Rfc, ms(20), ms(1000), ms(60_000), ms(120_000), ms(2000)),
            Self::Ieee802154 => (TimerKind::LongDelay, ms(200), ms(1000), ms(60_000), ms(600_000), ms(5000)),
            Self::LteM => (TimerKind::LongDelay, ms(400), ms(2000), ms(60_000), ms(900_000), ms(10_000)),
            Self::NbIot => (TimerKind::LongDelay, ms(1500), ms(5000), ms(60_000), ms(1_200_000), ms(30_000)),
            Self::Satellite => (TimerKind::LongDelay, ms(650), ms(3000), ms(60_000), ms(900_000), ms(15_000)),
            Self::Auto => (TimerKind::Adaptive, ms(1000), ms(1000), ms(60_000), ms(600_000), ms(30_000)),
        };
        LinkParams { kind, typical_rtt, floor, max_timeout, handshake_budget, max_ack_timeout }
    }

    /// How long the server's cookies should stay valid ([`CookieConfig`](crate::CookieConfig)
    /// `lifetime` and `rotate_every`): at least as long as a client on this link may keep
    /// retransmitting its second ClientHello, the handshake budget on the long-delay profiles and
    /// `auto` (the 60 s default for ethernet and wifi). A cookie that expires while the client
    /// still retransmits gets a fresh HelloVerifyRequest or HelloRetryRequest instead of an
    /// answer, and a DTLS 1.3 client cannot take a second HelloRetryRequest (RFC 8446 §4.1.4):
    /// the handshake then dies on the cookie, whatever its timers. A longer lifetime lets an
    /// on-path observer replay a cookie for longer, from the same address only (RFC 6347
    /// §4.2.1 binds it to the client's address).
    pub const fn cookie_lifetime(self) -> Duration {
        match self.params().kind {
            TimerKind::Rfc => ms(60_000),
            TimerKind::LongDelay | TimerKind::Adaptive => self.params().handshake_budget,
        }
    }

    /// A policy factory for this profile, with default settings (the same as
    /// [`LinkPolicyFactory::new`]). Put it in a configuration with
    /// [`LinkPolicyFactory::install`].
    pub fn policy(self) -> LinkPolicyFactory {
        LinkPolicyFactory::new(self)
    }

    /// The first timeout of a flight on this profile, given the RTT estimate (`None` before any
    /// sample and without a hint), ignoring back-off.
    pub fn initial_timeout(self, estimate: Option<&RttEstimator>) -> Duration {
        let p = self.params();
        let t = match p.kind {
            TimerKind::Rfc => p.floor,
            TimerKind::LongDelay => {
                let rtt = estimate.map_or(p.typical_rtt, RttEstimator::srtt);
                p.floor.max(rtt.saturating_mul(LONG_DELAY_RTT_MULTIPLIER))
            }
            TimerKind::Adaptive => match estimate {
                None => p.floor,
                Some(e) => p.floor.max(e.rto()).max(e.srtt().saturating_mul(2)),
            },
        };
        t.min(p.max_timeout)
    }
}

impl fmt::Display for LinkProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a [`LinkProfile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownLinkProfile(pub String);

impl fmt::Display for UnknownLinkProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown link profile `{}` (expected one of: {})", self.0, LINK_PROFILE_NAMES.join(", "))
    }
}

impl std::error::Error for UnknownLinkProfile {}

impl FromStr for LinkProfile {
    type Err = UnknownLinkProfile;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LINK_PROFILE_NAMES
            .iter()
            .position(|n| *n == s)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| UnknownLinkProfile(s.to_owned()))
    }
}

/// The RFC 6298 §2 round-trip estimator: smoothed RTT and RTT variation (alpha 1/8, beta 1/4).
/// It only ever sees samples of exchanges sent once (Karn's rule, enforced by the engine's
/// timer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttEstimator {
    srtt: Duration,
    rttvar: Duration,
    samples: u32,
}

/// Clock granularity G of RFC 6298 §2 (the engine's clock is an `Instant`: finer than this).
const GRANULARITY: Duration = Duration::from_millis(1);

impl RttEstimator {
    /// An estimator whose first sample is `rtt` (RFC 6298 §2.2: SRTT = R, RTTVAR = R/2).
    pub fn new(rtt: Duration) -> Self {
        Self { srtt: rtt, rttvar: rtt / 2, samples: 1 }
    }

    /// Takes a further sample (RFC 6298 §2.3): RTTVAR = 3/4 RTTVAR + 1/4 |SRTT − R|,
    /// SRTT = 7/8 SRTT + 1/8 R.
    pub fn sample(&mut self, rtt: Duration) {
        let diff = self.srtt.abs_diff(rtt);
        self.rttvar = (self.rttvar * 3 + diff) / 4;
        self.srtt = (self.srtt * 7 + rtt) / 8;
        self.samples = self.samples.saturating_add(1);
    }

    /// SRTT.
    pub fn srtt(&self) -> Duration {
        self.srtt
    }

    /// RTTVAR.
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// RFC 6298 §2.3: SRTT + max(G, 4 × RTTVAR), without the 1 s minimum (the profile's floor).
    pub fn rto(&self) -> Duration {
        self.srtt + GRANULARITY.max(self.rttvar * 4)
    }

    /// Samples taken (a hint counts as none: see [`LinkPolicyFactory::with_rtt_hint`]).
    pub fn samples(&self) -> u32 {
        self.samples
    }
}

/// Per-peer RTT estimators, at most `capacity` peers; the least recently used is evicted.
#[derive(Debug, Clone)]
pub struct RttTable {
    capacity: usize,
    tick: u64,
    entries: HashMap<SocketAddr, (RttEstimator, u64)>,
    by_use: BTreeMap<u64, SocketAddr>,
    evicted: u64,
}

/// Default capacity of an [`RttTable`]: 4096 peers, about 200 KiB.
pub const DEFAULT_RTT_TABLE_CAPACITY: usize = 4096;

impl RttTable {
    /// An empty table for at most `capacity` peers (0 keeps nothing).
    pub fn new(capacity: usize) -> Self {
        Self { capacity, tick: 0, entries: HashMap::new(), by_use: BTreeMap::new(), evicted: 0 }
    }

    /// The estimator of `peer`, if it has one; marks it used.
    pub fn get(&mut self, peer: SocketAddr) -> Option<RttEstimator> {
        let tick = self.next_tick();
        let (e, used) = self.entries.get_mut(&peer)?;
        self.by_use.remove(used);
        *used = tick;
        self.by_use.insert(tick, peer);
        Some(*e)
    }

    /// Adds a sample for `peer`, creating its estimator (and evicting the least recently used
    /// peer when full). Returns the updated estimator.
    pub fn sample(&mut self, peer: SocketAddr, rtt: Duration) -> RttEstimator {
        let tick = self.next_tick();
        if let Some((e, used)) = self.entries.get_mut(&peer) {
            e.sample(rtt);
            self.by_use.remove(used);
            *used = tick;
            self.by_use.insert(tick, peer);
            return *e;
        }
        let e = RttEstimator::new(rtt);
        if self.capacity == 0 {
            return e;
        }
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else { break };
            self.entries.remove(&oldest);
            self.evicted += 1;
        }
        self.entries.insert(peer, (e, tick));
        self.by_use.insert(tick, peer);
        e
    }

    /// Peers with an estimate.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no peer has an estimate.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Peers evicted to stay within the capacity.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }
}

/// An address prefix (`10.0.0.0/8`, `2001:db8::/32`), to choose a profile per peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

/// A string that is not an [`IpPrefix`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidIpPrefix(pub String);

impl fmt::Display for InvalidIpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid address prefix `{}` (expected ADDRESS/LENGTH, e.g. 10.0.0.0/8 or 2001:db8::/32)", self.0)
    }
}

impl std::error::Error for InvalidIpPrefix {}

impl IpPrefix {
    /// `addr/len`; `None` when `len` exceeds the address width.
    pub fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (len <= max).then_some(Self { addr, len })
    }

    /// Whether `ip` is inside the prefix (an IPv4-mapped IPv6 address matches an IPv4 prefix).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (a, b, width) = match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(a.to_bits()), u128::from(b.to_bits()), 32),
            (IpAddr::V6(a), IpAddr::V6(b)) => (a.to_bits(), b.to_bits(), 128),
            _ => return false,
        };
        let shift = width - u32::from(self.len);
        shift >= 128 || (a >> shift) == (b >> shift)
    }
}

impl FromStr for IpPrefix {
    type Err = InvalidIpPrefix;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidIpPrefix(s.to_owned());
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        Self::new(addr, len).ok_or_else(bad)
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[derive(Debug)]
struct Shared {
    table: Mutex<RttTable>,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, RttTable> {
        // The table holds plain numbers: a panic elsewhere cannot leave it inconsistent.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Builds a [`LinkPolicy`] per association: the profile of the peer's address prefix (or the
/// default profile), its RTT estimate from the shared [`RttTable`], the `--rtt` hint. Clones
/// share the table.
///
/// ```
/// use coaps_dtls::{LinkPolicyFactory, LinkProfile, ServerConfig};
/// use std::sync::Arc;
///
/// let factory = LinkPolicyFactory::new(LinkProfile::Auto)
///     .with_prefix("10.20.0.0/16".parse()?, LinkProfile::NbIot)
///     .with_capacity(10_000);
/// let mut config = ServerConfig::default();
/// factory.install(&mut config.common);
/// // The configuration keeps its own budget; server-wide timing reads the longest policy's.
/// assert_eq!(config.common.longest_handshake_timeout(), LinkProfile::NbIot.params().handshake_budget);
/// assert_eq!(factory.profile_for("10.20.1.2:5684".parse()?), LinkProfile::NbIot);
/// assert_eq!(factory.profile_for("192.0.2.1:5684".parse()?), LinkProfile::Auto);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct LinkPolicyFactory {
    profile: LinkProfile,
    prefixes: Vec<(IpPrefix, LinkProfile)>,
    rtt_hint: Option<Duration>,
    take_cookie_samples: bool,
    shared: Arc<Shared>,
}

impl LinkPolicyFactory {
    /// Every peer on `profile`; estimates for up to [`DEFAULT_RTT_TABLE_CAPACITY`] peers.
    pub fn new(profile: LinkProfile) -> Self {
        Self {
            profile,
            prefixes: Vec::new(),
            rtt_hint: None,
            take_cookie_samples: true,
            shared: Arc::new(Shared { table: Mutex::new(RttTable::new(DEFAULT_RTT_TABLE_CAPACITY)) }),
        }
    }

    /// Peers inside `prefix` use `profile`. The first matching prefix wins, in the order added.
    #[must_use]
    pub fn with_prefix(mut self, prefix: IpPrefix, profile: LinkProfile) -> Self {
        self.prefixes.push((prefix, profile));
        self
    }

    /// A known RTT, used as the estimate of a peer without samples (instead of a long-delay
    /// profile's typical RTT; `auto` sizes its timers from it as from a first sample). RFC timer
    /// profiles ignore it. Zero is ignored.
    #[must_use]
    pub fn with_rtt_hint(mut self, rtt: Duration) -> Self {
        self.rtt_hint = (!rtt.is_zero()).then_some(rtt);
        self
    }

    /// Keeps estimates for at most `peers` peers (least recently used evicted). Starts a new,
    /// empty table, no longer shared with earlier clones.
    #[must_use]
    pub fn with_capacity(mut self, peers: usize) -> Self {
        self.shared = Arc::new(Shared { table: Mutex::new(RttTable::new(peers)) });
        self
    }

    /// Whether the policies take the engine's [`RttSampleKind::Cookie`] samples (default true).
    /// A layer in front that feeds the cookie round trip itself ([`record_sample`](Self::record_sample)
    /// before the association is created) turns this off, so it is not counted twice.
    #[must_use]
    pub fn take_cookie_samples(mut self, take: bool) -> Self {
        self.take_cookie_samples = take;
        self
    }

    /// Makes this factory `common`'s retransmission policy. Each association takes its budget
    /// from its policy (also how long a DTLS 1.2 endpoint keeps its last flight, RFC 6347
    /// §4.2.4); server-wide timing that must outlast the longest handshake any peer may run,
    /// such as the lifetime of DTLS 1.3 HelloRetryRequest cookies
    /// ([`cookie13_config`](crate::gate::cookie13_config)), asks the factory
    /// ([`RetransmitPolicyFactory::longest_handshake_timeout`]), so the configuration's own
    /// [`RetransmitConfig::handshake_timeout`](crate::RetransmitConfig::handshake_timeout) is
    /// left as it is.
    pub fn install(&self, common: &mut crate::CommonConfig) {
        common.retransmit_policy = Some(Arc::new(self.clone()));
    }

    /// The default profile.
    pub fn profile(&self) -> LinkProfile {
        self.profile
    }

    /// The profile of `peer`: its prefix's, or the default.
    pub fn profile_for(&self, peer: SocketAddr) -> LinkProfile {
        self.prefixes.iter().find(|(p, _)| p.contains(peer.ip())).map_or(self.profile, |(_, l)| *l)
    }

    /// `peer`'s measured estimate, if any.
    pub fn estimate(&self, peer: SocketAddr) -> Option<RttEstimator> {
        self.shared.table().get(peer)
    }

    /// Adds a round-trip sample for `peer` (from an exchange sent once: Karn's rule).
    pub fn record_sample(&self, peer: SocketAddr, rtt: Duration) -> RttEstimator {
        self.shared.table().sample(peer, rtt)
    }

    /// The first timeout a new flight to `peer` would get now.
    pub fn initial_timeout(&self, peer: SocketAddr) -> Duration {
        let profile = self.profile_for(peer);
        profile.initial_timeout(self.estimate_or_hint(peer).as_ref())
    }

    /// The CoAP ACK_TIMEOUT (RFC 7252 §4.8) for `peer`, following the same profile and RTT:
    /// the RFC's 2 s, or the DTLS first timeout when that is longer (a long-delay link), so CoAP
    /// and DTLS retransmissions agree. Never below 2 s: RFC 7252 §4.8.1 asks for congestion
    /// control below 1 s, and the derived EXCHANGE_LIFETIME assumes the default or more. At
    /// most the profile's [`LinkParams::max_ack_timeout`].
    pub fn ack_timeout(&self, peer: SocketAddr) -> Duration {
        let cap = self.profile_for(peer).params().max_ack_timeout.max(Duration::from_secs(2));
        self.initial_timeout(peer).clamp(Duration::from_secs(2), cap)
    }

    /// Peers with an estimate, and peers evicted so far.
    pub fn table_stats(&self) -> (usize, u64) {
        let t = self.shared.table();
        (t.len(), t.evicted())
    }

    fn estimate_or_hint(&self, peer: SocketAddr) -> Option<RttEstimator> {
        self.estimate(peer).or(self.rtt_hint.map(|h| RttEstimator { samples: 0, ..RttEstimator::new(h) }))
    }
}

impl RetransmitPolicyFactory for LinkPolicyFactory {
    fn build(&self, context: &PolicyContext) -> Box<dyn RetransmitPolicy> {
        let profile = self.profile_for(context.peer);
        let estimate = self.estimate_or_hint(context.peer);
        Box::new(LinkPolicy {
            profile,
            peer: context.peer,
            estimate,
            backoff: None,
            take_cookie_samples: self.take_cookie_samples,
            shared: Arc::clone(&self.shared),
        })
    }

    fn longest_handshake_timeout(&self) -> Option<Duration> {
        std::iter::once(self.profile)
            .chain(self.prefixes.iter().map(|(_, p)| *p))
            .map(|p| p.params().handshake_budget)
            .max()
    }
}

/// The policy of one association on a [`LinkProfile`] (built by [`LinkPolicyFactory`]).
/// Its samples also go to the factory's per-peer table.
#[derive(Debug)]
pub struct LinkPolicy {
    profile: LinkProfile,
    peer: SocketAddr,
    estimate: Option<RttEstimator>,
    backoff: Option<Duration>,
    take_cookie_samples: bool,
    shared: Arc<Shared>,
}

impl LinkPolicy {
    /// The association's profile.
    pub fn profile(&self) -> LinkProfile {
        self.profile
    }

    /// The association's RTT estimate (a hint counts, with zero samples).
    pub fn estimate(&self) -> Option<RttEstimator> {
        self.estimate
    }
}

impl RetransmitPolicy for LinkPolicy {
    fn initial_timeout(&self) -> Duration {
        let t = self.profile.initial_timeout(self.estimate.as_ref());
        let measured = self.estimate.is_some_and(|e| e.samples() > 0);
        match (self.profile.params().kind, self.backoff) {
            (TimerKind::Adaptive, Some(b)) if !measured => t.max(b).min(self.profile.params().max_timeout),
            _ => t,
        }
    }

    fn max_timeout(&self) -> Duration {
        self.profile.params().max_timeout
    }

    fn on_rtt_sample(&mut self, rtt: Duration, kind: RttSampleKind) {
        if kind == RttSampleKind::Cookie && !self.take_cookie_samples {
            return;
        }
        self.backoff = None;
        // The table's estimator holds every association's samples of this peer.
        self.estimate = Some(self.shared.table().sample(self.peer, rtt));
    }

    fn on_backoff(&mut self, interval: Duration) {
        self.backoff = Some(interval);
    }

    fn handshake_timeout(&self) -> Option<Duration> {
        Some(self.profile.params().handshake_budget)
    }

    fn max_retransmissions(&self) -> Option<u32> {
        match self.profile.params().kind {
            TimerKind::Rfc => None,
            TimerKind::LongDelay | TimerKind::Adaptive => Some(LONG_DELAY_MAX_RETRANSMISSIONS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Role;

    fn peer(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn names_round_trip() {
        for p in LinkProfile::ALL {
            assert_eq!(p.to_string().parse::<LinkProfile>(), Ok(p));
        }
        assert_eq!("802.15.4".parse(), Ok(LinkProfile::Ieee802154));
        let e = "lora".parse::<LinkProfile>().unwrap_err().to_string();
        assert!(e.contains("lora") && e.contains("nb-iot"), "{e}");
        assert!("NB-IoT".parse::<LinkProfile>().is_err());
    }

    #[test]
    fn estimator_follows_rfc6298() {
        let mut e = RttEstimator::new(ms(800));
        assert_eq!((e.srtt(), e.rttvar(), e.rto()), (ms(800), ms(400), ms(2400)));
        e.sample(ms(400));
        // RTTVAR = 3/4 × 400 + 1/4 × 400 = 400; SRTT = 7/8 × 800 + 1/8 × 400 = 750.
        assert_eq!((e.srtt(), e.rttvar()), (ms(750), ms(400)));
        for _ in 0..100 {
            e.sample(ms(100));
        }
        assert!(e.srtt() < ms(101) && e.rto() < ms(120), "{e:?}");
    }

    #[test]
    fn long_delay_uses_prior_then_five_times_the_estimate() {
        let nb = LinkProfile::NbIot;
        assert_eq!(nb.initial_timeout(None), ms(7500));
        assert_eq!(nb.initial_timeout(Some(&RttEstimator::new(ms(300)))), ms(5000), "floor");
        assert_eq!(nb.initial_timeout(Some(&RttEstimator::new(ms(3000)))), ms(15_000));
        assert_eq!(nb.initial_timeout(Some(&RttEstimator::new(ms(60_000)))), ms(60_000), "cap");
        assert_eq!(LinkProfile::LteM.initial_timeout(None), ms(2000));
        assert_eq!(LinkProfile::Ethernet.initial_timeout(Some(&RttEstimator::new(ms(3000)))), ms(1000));
        assert_eq!(LinkProfile::Auto.initial_timeout(None), ms(1000));
        assert_eq!(LinkProfile::Auto.initial_timeout(Some(&RttEstimator::new(ms(100)))), ms(1000));
        assert_eq!(LinkProfile::Auto.initial_timeout(Some(&RttEstimator::new(ms(1500)))), ms(4500));
    }

    #[test]
    fn policy_learns_backs_off_and_shares_per_peer() {
        let f = LinkPolicyFactory::new(LinkProfile::Auto);
        let a = peer("192.0.2.1:1");
        let mut p = f.build(&PolicyContext::new(a, Role::Client));
        assert_eq!(p.initial_timeout(), ms(1000));
        assert_eq!(p.handshake_timeout(), Some(ms(600_000)));
        assert_eq!(p.max_retransmissions(), Some(LONG_DELAY_MAX_RETRANSMISSIONS));
        // Timed out twice: the backed-off value is kept for the next flight (Karn).
        p.on_backoff(ms(2000));
        p.on_backoff(ms(4000));
        assert_eq!(p.initial_timeout(), ms(4000));
        p.on_rtt_sample(ms(1500), RttSampleKind::Flight);
        assert_eq!(p.initial_timeout(), ms(4500));
        // Once measured, a back-off is not carried to the next flight.
        p.on_backoff(ms(9000));
        assert_eq!(p.initial_timeout(), ms(4500));
        // A later association with the same peer starts from its estimate; another peer not.
        assert_eq!(f.build(&PolicyContext::new(a, Role::Client)).initial_timeout(), ms(4500));
        assert_eq!(f.build(&PolicyContext::new(peer("192.0.2.2:1"), Role::Client)).initial_timeout(), ms(1000));
        assert_eq!(f.estimate(a).unwrap().samples(), 1);
        // The ethernet profile keeps RFC timers whatever it measures and however it backs off.
        let e = LinkPolicyFactory::new(LinkProfile::Ethernet);
        let mut p = e.build(&PolicyContext::new(a, Role::Client));
        assert_eq!(p.max_retransmissions(), None);
        p.on_backoff(ms(2000));
        p.on_rtt_sample(ms(1500), RttSampleKind::Flight);
        assert_eq!(p.initial_timeout(), ms(1000));
    }

    #[test]
    fn hint_and_prefixes() {
        let f = LinkPolicyFactory::new(LinkProfile::LteM)
            .with_prefix("10.1.0.0/16".parse().unwrap(), LinkProfile::NbIot)
            .with_prefix("::ffff:0:0/96".parse().unwrap(), LinkProfile::Wifi)
            .with_rtt_hint(ms(1000));
        assert_eq!(f.profile_for(peer("10.1.2.3:1")), LinkProfile::NbIot);
        assert_eq!(f.profile_for(peer("[::ffff:10.1.2.3]:1")), LinkProfile::NbIot);
        assert_eq!(f.profile_for(peer("10.2.0.1:1")), LinkProfile::LteM);
        assert_eq!(f.initial_timeout(peer("10.2.0.1:1")), ms(5000));
        assert_eq!(f.ack_timeout(peer("10.2.0.1:1")), ms(5000));
        f.record_sample(peer("10.2.0.1:1"), ms(20_000));
        assert_eq!(f.ack_timeout(peer("10.2.0.1:1")), ms(10_000), "capped");
        assert_eq!(LinkPolicyFactory::new(LinkProfile::Ethernet).ack_timeout(peer("10.2.0.1:1")), ms(2000));
        assert!("10.0.0.0/33".parse::<IpPrefix>().is_err());
        assert!("10.0.0.0".parse::<IpPrefix>().is_err());
        assert!("0.0.0.0/0".parse::<IpPrefix>().unwrap().contains("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn table_is_bounded_lru() {
        let mut t = RttTable::new(2);
        t.sample(peer("192.0.2.1:1"), ms(10));
        t.sample(peer("192.0.2.2:1"), ms(20));
        assert!(t.get(peer("192.0.2.1:1")).is_some()); // .1 is now the most recent
        t.sample(peer("192.0.2.3:1"), ms(30));
        assert_eq!((t.len(), t.evicted()), (2, 1));
        assert!(t.get(peer("192.0.2.2:1")).is_none());
        assert!(t.get(peer("192.0.2.1:1")).is_some());
        let mut none = RttTable::new(0);
        none.sample(peer("192.0.2.1:1"), ms(10));
        assert!(none.is_empty());
    }

    #[test]
    fn cookie_samples_can_be_left_to_a_layer_in_front() {
        let f = LinkPolicyFactory::new(LinkProfile::Auto).take_cookie_samples(false);
        let a = peer("192.0.2.1:1");
        f.record_sample(a, ms(1500));
        let mut p = f.build(&PolicyContext::new(a, Role::Server));
        p.on_rtt_sample(ms(1500), RttSampleKind::Cookie);
        assert_eq!(f.estimate(a).unwrap().samples(), 1);
        assert_eq!(p.initial_timeout(), ms(4500));
    }
}
