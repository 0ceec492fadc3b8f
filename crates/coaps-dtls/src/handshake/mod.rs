//! Handshake machinery: reassembly, flights and retransmission, and the client and server
//! state machines.

pub mod flight;
pub mod reassembly;
