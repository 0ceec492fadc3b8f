//! The one test harness of the coaps workspace, shared by every crate's integration tests, the
//! interop suites and the benches' helpers:
//!
//! * [`peers`]: real DTLS/CoAPS programs (OpenSSL, GnuTLS, libcoap) on `127.0.0.1` with free
//!   ports, bounded waits and PID-based cleanup; the `COAPS_REQUIRE_PEERS=1` rule (CI fails
//!   instead of skipping); the test PKI; the `dtls_echo` example; a userspace UDP relay.
//! * [`wolfssl`]: wolfSSL's DTLS 1.3 example programs, built by `scripts/build-wolfssl.sh`.
//! * [`dtls`]: engine configurations for every key-exchange mode, simulator nodes, and
//!   [`dtls::inject`], the bad-input injection world.
//! * [`datagram`]: a Tower server stack on a loopback socket and an async engine client.
//! * [`cli`]: the built `coaps` binary, `coaps serve` and libcoap servers.
//! * [`redis`]: a private `redis-server` per test (free port, no persistence, killed by PID).
//! * [`cluster`]: server stacks ("nodes") sharing one session store, and a client through one.
//!
//! Not published; every item is for tests.
#![forbid(unsafe_code)]
#![allow(missing_docs, missing_debug_implementations)]

pub mod cli;
pub mod cluster;
pub mod datagram;
pub mod dtls;
pub mod forwarder;
pub mod peers;
pub mod redis;
pub mod sweep;
pub mod wolfssl;
