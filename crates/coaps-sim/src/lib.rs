//! Deterministic, seeded datagram network with a virtual clock, for testing sans-IO protocol
//! engines.
//!
//! - [`Network`] carries datagrams between [`SocketAddr`](std::net::SocketAddr)s with latency,
//!   jitter (reordering), loss, duplication, bit corruption and an MTU, configured by
//!   [`SimConfig`] globally or per direction. Every random decision comes from one ChaCha8
//!   stream seeded by [`Network::new`], so a seed replays a run exactly.
//! - [`Simulation`] drives [`Endpoint`]s (anything with the `handle_*` / `poll_*` shape of a
//!   sans-IO engine) over a network, jumping the virtual clock from event to event; its
//!   [`run_until`](Simulation::run_until) is bounded in virtual time and in steps.
//! - [`check_seeds`] runs a test over many seeds and names the seed that failed.
//!
//! Nothing here reads the wall clock except [`Network::new`], once, to obtain a base
//! `Instant`; only differences from it matter.
//!
//! # Example
//!
//! A pinger retransmits `ping` every 100 ms until a ponger answers, over a link losing 30 % of
//! datagrams each way:
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::{Duration, Instant};
//! use coaps_sim::{Endpoint, Network, SimConfig, Simulation};
//!
//! struct Pinger { addr: SocketAddr, peer: SocketAddr, rto: Option<Instant>, tx: bool, done: bool }
//! struct Ponger { addr: SocketAddr, replies: Vec<SocketAddr> }
//!
//! impl Endpoint for Pinger {
//!     fn addr(&self) -> SocketAddr { self.addr }
//!     fn handle_datagram(&mut self, _now: Instant, _from: SocketAddr, payload: &[u8]) {
//!         if payload == b"pong" { self.done = true; self.rto = None; }
//!     }
//!     fn handle_timeout(&mut self, _now: Instant) { self.tx = true; }
//!     fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
//!         if self.done || !self.tx { return None; }
//!         self.tx = false;
//!         self.rto = Some(now + Duration::from_millis(100));
//!         Some((self.peer, b"ping".to_vec()))
//!     }
//!     fn poll_timeout(&self) -> Option<Instant> { self.rto }
//! }
//!
//! impl Endpoint for Ponger {
//!     fn addr(&self) -> SocketAddr { self.addr }
//!     fn handle_datagram(&mut self, _now: Instant, from: SocketAddr, payload: &[u8]) {
//!         if payload == b"ping" { self.replies.push(from); }
//!     }
//!     fn handle_timeout(&mut self, _now: Instant) {}
//!     fn poll_transmit(&mut self, _now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
//!         self.replies.pop().map(|to| (to, b"pong".to_vec()))
//!     }
//!     fn poll_timeout(&self) -> Option<Instant> { None }
//! }
//!
//! let a: SocketAddr = "10.0.0.1:5684".parse().unwrap();
//! let b: SocketAddr = "10.0.0.2:5684".parse().unwrap();
//! let net = Network::new(7, SimConfig::default().with_loss(0.3));
//! let mut sim = Simulation::new(net);
//! let mut pinger = Pinger { addr: a, peer: b, rto: None, tx: true, done: false };
//! let mut ponger = Ponger { addr: b, replies: Vec::new() };
//!
//! // A tuple of `&mut` keeps the concrete types visible to the stop condition...
//! sim.run_until(
//!     &mut (&mut pinger, &mut ponger),
//!     |_sim, (pinger, _)| pinger.done,
//!     Duration::from_secs(60),
//!     10_000,
//! )
//! .expect("ping/pong completes");
//! // ...and the endpoints are free to inspect once the call returns.
//! assert!(pinger.done);
//! assert!(sim.network().stats().sent >= 2);
//! println!("done after {:?}: {:?}", sim.elapsed(), sim.network().stats());
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod network;
mod sim;

pub use config::SimConfig;
pub use network::{Delivery, DropReason, NetStats, Network, TraceEvent, TraceKind};
pub use sim::{DEFAULT_MAX_TRANSMITS_PER_POLL, Endpoint, EndpointSet, SimError, Simulation, check_seeds};
