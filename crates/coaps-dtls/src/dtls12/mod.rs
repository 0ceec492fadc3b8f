//! DTLS 1.2 (RFC 6347). Its wire messages and record protection live in [`crate::msgs`] and
//! [`crate::record`], which DTLS 1.3 reuses for the plaintext record header, the handshake
//! header, alerts and the hellos. One association is split by concern, with the same file names
//! as [`crate::dtls13`]:
//!
//! * [`engine`]: the role-independent core — epochs, sequence numbers, record protection and
//!   replay window, reassembly and transcript, flights and their retransmission, alerts,
//!   application data, counters, closure, and the handshake steps both roles share (master
//!   secret, key block, Finished).
//! * [`client`] and [`server`]: each role's handshake, one struct per state it waits in with a
//!   consuming transition that takes the core and one handshake message, so a state's data and
//!   its legal inputs are in one place. The role's configuration lives with its handshake
//!   state and goes when the handshake ends. The client holds the HelloVerifyRequest exchange
//!   and the session it offers; the server its ClientHello answer and session resumption.
//! * [`conn`]: [`Conn12`], the core plus the role's handshake state while there is one, and
//!   the dispatch between them.
//!
//! The imports run one way: `conn` → `client`, `server` → `engine`; neither role names the
//! other or the dispatcher.

mod client;
mod conn;
mod engine;
mod server;

pub(crate) use conn::Conn12;
