//! Driving sans-IO endpoints over a [`Network`].

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::network::Network;

/// A sans-IO participant driven by a [`Simulation`].
///
/// Mirrors the shape of sans-IO protocol engines: inputs are `handle_*` calls carrying the
/// current (virtual) time, outputs are `poll_*` calls.
pub trait Endpoint {
    /// The address this endpoint sends from and receives on.
    fn addr(&self) -> SocketAddr;
    /// A datagram from `from` arrived at virtual time `now`.
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]);
    /// The deadline returned by [`poll_timeout`](Self::poll_timeout) has been reached.
    fn handle_timeout(&mut self, now: Instant);
    /// Next datagram to send: (destination, payload).
    fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)>;
    /// When [`handle_timeout`](Self::handle_timeout) should next be called, if ever.
    fn poll_timeout(&self) -> Option<Instant>;
}

impl<T: Endpoint + ?Sized> Endpoint for &mut T {
    fn addr(&self) -> SocketAddr {
        (**self).addr()
    }
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        (**self).handle_datagram(now, from, payload);
    }
    fn handle_timeout(&mut self, now: Instant) {
        (**self).handle_timeout(now);
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        (**self).poll_transmit(now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }
}

impl<T: Endpoint + ?Sized> Endpoint for Box<T> {
    fn addr(&self) -> SocketAddr {
        (**self).addr()
    }
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        (**self).handle_datagram(now, from, payload);
    }
    fn handle_timeout(&mut self, now: Instant) {
        (**self).handle_timeout(now);
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        (**self).poll_transmit(now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }
}

/// A fixed, ordered collection of endpoints a [`Simulation`] can drive.
///
/// Implemented for tuples of up to eight endpoints (typically `(&mut client, &mut server)`,
/// which keeps the concrete types visible to [`Simulation::run_until`]'s condition), for
/// slices, arrays and `Vec`s of endpoints (e.g. `[&mut dyn Endpoint]`,
/// `Vec<Box<dyn Endpoint>>`), and for `&mut S`.
pub trait EndpointSet {
    /// Number of endpoints.
    fn len(&self) -> usize;
    /// Endpoint `i` (`i < len()`).
    fn endpoint(&self, i: usize) -> &dyn Endpoint;
    /// Endpoint `i` (`i < len()`), mutably.
    fn endpoint_mut(&mut self, i: usize) -> &mut dyn Endpoint;
    /// `true` if there are no endpoints.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<E: Endpoint> EndpointSet for [E] {
    fn len(&self) -> usize {
        <[E]>::len(self)
    }
    fn endpoint(&self, i: usize) -> &dyn Endpoint {
        &self[i]
    }
    fn endpoint_mut(&mut self, i: usize) -> &mut dyn Endpoint {
        &mut self[i]
    }
}

impl<E: Endpoint, const N: usize> EndpointSet for [E; N] {
    fn len(&self) -> usize {
        N
    }
    fn endpoint(&self, i: usize) -> &dyn Endpoint {
        &self[i]
    }
    fn endpoint_mut(&mut self, i: usize) -> &mut dyn Endpoint {
        &mut self[i]
    }
}

impl<E: Endpoint> EndpointSet for Vec<E> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn endpoint(&self, i: usize) -> &dyn Endpoint {
        &self[i]
    }
    fn endpoint_mut(&mut self, i: usize) -> &mut dyn Endpoint {
        &mut self[i]
    }
}

impl<S: EndpointSet + ?Sized> EndpointSet for &mut S {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn endpoint(&self, i: usize) -> &dyn Endpoint {
        (**self).endpoint(i)
    }
    fn endpoint_mut(&mut self, i: usize) -> &mut dyn Endpoint {
        (**self).endpoint_mut(i)
    }
}

macro_rules! tuple_set {
    ($n:expr; $($idx:tt $T:ident),+) => {
        impl<$($T: Endpoint),+> EndpointSet for ($($T,)+) {
            fn len(&self) -> usize {
                $n
            }
            fn endpoint(&self, i: usize) -> &dyn Endpoint {
                match i {
                    $($idx => &self.$idx,)+
                    _ => panic!("endpoint index {i} out of range for a {}-tuple", $n),
                }
            }
            fn endpoint_mut(&mut self, i: usize) -> &mut dyn Endpoint {
                match i {
                    $($idx => &mut self.$idx,)+
                    _ => panic!("endpoint index {i} out of range for a {}-tuple", $n),
                }
            }
        }
    };
}

tuple_set!(1; 0 A);
tuple_set!(2; 0 A, 1 B);
tuple_set!(3; 0 A, 1 B, 2 C);
tuple_set!(4; 0 A, 1 B, 2 C, 3 D);
tuple_set!(5; 0 A, 1 B, 2 C, 3 D, 4 E);
tuple_set!(6; 0 A, 1 B, 2 C, 3 D, 4 E, 5 F);
tuple_set!(7; 0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G);
tuple_set!(8; 0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H);

/// Why [`Simulation::run_until`] (or [`Simulation::run_until_idle`]) stopped without success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimError {
    /// The next event lies beyond the virtual-time budget.
    Deadline {
        /// Virtual time elapsed since the network started.
        elapsed: Duration,
        /// Steps taken by this call.
        steps: usize,
    },
    /// The step budget ran out.
    StepLimit {
        /// Virtual time elapsed since the network started.
        elapsed: Duration,
        /// Steps taken by this call.
        steps: usize,
    },
    /// Nothing is in flight and no endpoint has a timer armed, yet the condition does not
    /// hold: the system can never make progress again.
    Stalled {
        /// Virtual time elapsed since the network started.
        elapsed: Duration,
        /// Steps taken by this call.
        steps: usize,
    },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Deadline { elapsed, steps } => {
                write!(f, "virtual-time deadline reached (elapsed {elapsed:?}, {steps} steps)")
            }
            SimError::StepLimit { elapsed, steps } => {
                write!(f, "step limit reached (elapsed {elapsed:?}, {steps} steps)")
            }
            SimError::Stalled { elapsed, steps } => {
                write!(f, "stalled: nothing in flight and no timer armed (elapsed {elapsed:?}, {steps} steps)")
            }
        }
    }
}

impl std::error::Error for SimError {}

enum StepOutcome {
    Progress,
    Idle,
    BeyondLimit,
}

/// Default cap on datagrams taken from one endpoint in one step (see
/// [`Simulation::set_max_transmits_per_poll`]).
pub const DEFAULT_MAX_TRANSMITS_PER_POLL: usize = 1024;

/// Drives a set of [`Endpoint`]s over an owned [`Network`].
///
/// The endpoints are passed to every call rather than owned, so a test can inspect them (with
/// their concrete types) between steps.
///
/// One [`step`](Self::step):
/// 1. drains every endpoint's `poll_transmit` into the network at the current time;
/// 2. jumps the clock to the earliest of the next delivery and the endpoints' timeouts
///    (a timeout already in the past fires now);
/// 3. delivers every datagram due by then to the endpoint owning its destination address
///    (datagrams to unknown addresses are counted in [`undeliverable`](Self::undeliverable));
/// 4. calls `handle_timeout` on every endpoint whose timeout has been reached.
///
/// Endpoints are visited in set order, so runs are deterministic.
#[derive(Debug)]
pub struct Simulation {
    network: Network,
    steps: u64,
    undeliverable: u64,
    max_transmits_per_poll: usize,
}

impl Simulation {
    /// Wraps `network`.
    pub fn new(network: Network) -> Self {
        Self { network, steps: 0, undeliverable: 0, max_transmits_per_poll: DEFAULT_MAX_TRANSMITS_PER_POLL }
    }

    /// The network.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The network, mutably (to change link configuration mid-run, install a filter, …).
    pub fn network_mut(&mut self) -> &mut Network {
        &mut self.network
    }

    /// Gives the network back.
    pub fn into_network(self) -> Network {
        self.network
    }

    /// Current virtual time.
    pub fn now(&self) -> Instant {
        self.network.now()
    }

    /// Virtual time elapsed since the network started.
    pub fn elapsed(&self) -> Duration {
        self.network.elapsed()
    }

    /// Steps taken over the lifetime of this simulation.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Datagrams addressed to no endpoint of the set they were delivered through.
    pub fn undeliverable(&self) -> u64 {
        self.undeliverable
    }

    /// Caps how many datagrams one endpoint may emit in one step. An endpoint that keeps
    /// transmitting past the cap is drained further in the next step, without the clock moving,
    /// so a runaway endpoint uses up the step budget instead of looping forever.
    pub fn set_max_transmits_per_poll(&mut self, max: usize) {
        self.max_transmits_per_poll = max.max(1);
    }

    /// Takes one step (see the type documentation). Returns `false` when the system is idle:
    /// nothing in flight and no timer armed.
    pub fn step<S: EndpointSet + ?Sized>(&mut self, endpoints: &mut S) -> bool {
        !matches!(self.step_inner(endpoints, None), StepOutcome::Idle)
    }

    /// Steps until `done(self, endpoints)` holds.
    ///
    /// Bounded twice: fails with [`SimError::Deadline`] rather than move the clock more than
    /// `deadline` past its value at the call, and with [`SimError::StepLimit`] after
    /// `max_steps` steps. Fails with [`SimError::Stalled`] if nothing can happen any more. The
    /// condition is checked before the first step and after every step.
    pub fn run_until<S, F>(
        &mut self,
        endpoints: &mut S,
        mut done: F,
        deadline: Duration,
        max_steps: usize,
    ) -> Result<(), SimError>
    where
        S: EndpointSet + ?Sized,
        F: FnMut(&Simulation, &S) -> bool,
    {
        let limit = self.now() + deadline;
        let mut steps = 0;
        loop {
            if done(self, endpoints) {
                return Ok(());
            }
            let elapsed = self.elapsed();
            if steps >= max_steps {
                return Err(SimError::StepLimit { elapsed, steps });
            }
            match self.step_inner(endpoints, Some(limit)) {
                StepOutcome::Progress => steps += 1,
                StepOutcome::Idle => return Err(SimError::Stalled { elapsed, steps }),
                StepOutcome::BeyondLimit => return Err(SimError::Deadline { elapsed, steps }),
            }
        }
    }

    /// Steps until nothing is in flight and no timer is armed, within the same bounds as
    /// [`run_until`](Self::run_until).
    pub fn run_until_idle<S: EndpointSet + ?Sized>(
        &mut self,
        endpoints: &mut S,
        deadline: Duration,
        max_steps: usize,
    ) -> Result<(), SimError> {
        match self.run_until(endpoints, |_, _| false, deadline, max_steps) {
            Err(SimError::Stalled { .. }) => Ok(()),
            Err(e) => Err(e),
            Ok(()) => unreachable!("condition is constant false"),
        }
    }

    fn step_inner<S: EndpointSet + ?Sized>(&mut self, eps: &mut S, limit: Option<Instant>) -> StepOutcome {
        let now = self.network.now();

        let mut saturated = false;
        for i in 0..eps.len() {
            let ep = eps.endpoint_mut(i);
            let from = ep.addr();
            let mut n = 0;
            while n < self.max_transmits_per_poll {
                let Some((to, payload)) = ep.poll_transmit(now) else {
                    break;
                };
                self.network.send(from, to, payload);
                n += 1;
            }
            saturated |= n == self.max_transmits_per_poll;
        }
        if saturated {
            self.steps += 1;
            return StepOutcome::Progress;
        }

        let mut next = self.network.next_delivery_time();
        for i in 0..eps.len() {
            if let Some(t) = eps.endpoint(i).poll_timeout() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        let Some(next) = next else {
            return StepOutcome::Idle;
        };
        let t = next.max(now);
        if limit.is_some_and(|limit| t > limit) {
            return StepOutcome::BeyondLimit;
        }
        self.steps += 1;
        self.network.advance_to(t);

        while let Some(d) = self.network.pop_due(t) {
            match (0..eps.len()).find(|&i| eps.endpoint(i).addr() == d.to) {
                Some(i) => eps.endpoint_mut(i).handle_datagram(t, d.from, &d.payload),
                None => self.undeliverable += 1,
            }
        }
        for i in 0..eps.len() {
            let ep = eps.endpoint_mut(i);
            if ep.poll_timeout().is_some_and(|deadline| deadline <= t) {
                ep.handle_timeout(t);
            }
        }
        StepOutcome::Progress
    }
}

/// Runs `test` once per seed and, if it fails (returns `Err` or panics), panics with a message
/// naming the seed so the run can be replayed alone.
pub fn check_seeds<I, F, E>(seeds: I, mut test: F)
where
    I: IntoIterator<Item = u64>,
    F: FnMut(u64) -> Result<(), E>,
    E: fmt::Display,
{
    for seed in seeds {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(seed)));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("seed {seed} failed: {e}"),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".to_owned());
                panic!("seed {seed} panicked: {msg}");
            }
        }
    }
}
