//! DTLS 1.3 (RFC 9147), in the same files as `dtls12/` plus the 1.3 wire layers, with no
//! import cycle between them:
//!
//! * [`engine`]: the role-independent core of an association: epochs and keys, record
//!   protection and record numbers, ACKs (§7), selective retransmission (§5.8.1, §7.2),
//!   KeyUpdate (§8), the flight buffer and timer, the transcript, alerts, outputs, close;
//! * `client` and `server`: one struct per handshake state with a consuming transition, and
//!   the role's configuration; the server side also rebuilds the stateless
//!   HelloRetryRequest from its cookie;
//! * `early`: 0-RTT early data on both sides and the cookie gate's look-ups;
//! * `conn`: `Conn13`, the core plus the role's handshake state while there is one, which
//!   [`crate::Connection`] dispatches to;
//! * `cid`: Connection IDs (§9), the CIDs of an association each way and their limits;
//! * [`msgs`], [`record`] (encrypted record numbers, the unified header), [`key_schedule`].
//!
//! The core imports none of the handshake modules: the handshake states receive it as
//! `&mut Core`, and it hands completed handshake messages back through a callback.
//!
//! DTLS 1.3 keeps the DTLS 1.2 plaintext record and handshake headers, the alert format and
//! the hello structures a 1.2 server reads, so it builds on the shared [`crate::record`] and
//! [`crate::msgs`] modules; nothing in DTLS 1.2 imports this module except the 1.2 client's
//! hand-over from a dual-version hello.

pub(crate) mod cid;
pub(crate) mod client;
pub(crate) mod conn;
pub(crate) mod dual_hello;
pub(crate) mod early;
pub mod engine;
pub mod key_schedule;
pub mod msgs;
pub mod record;
pub(crate) mod server;
