//! Flights and retransmission timers (RFC 6347 §4.2.4). (STUB API)
#![allow(missing_docs, dead_code, unused_variables)]
use crate::codec::HandshakeType;
use crate::msgs::HandshakeHeader;
use std::time::{Duration, Instant};
#[derive(Debug, Clone)]
pub struct RetransmitConfig { pub initial: Duration, pub max: Duration, pub max_retransmissions: u32, pub handshake_timeout: Duration }
impl Default for RetransmitConfig { fn default() -> Self { todo!() } }
#[derive(Debug)]
pub struct GaveUp;
#[derive(Debug)]
pub struct RetransmitTimer;
impl RetransmitTimer {
    pub fn new(config: RetransmitConfig) -> Self { todo!() }
    pub fn arm(&mut self, now: Instant) { todo!() }
    pub fn disarm(&mut self) { todo!() }
    pub fn deadline(&self) -> Option<Instant> { todo!() }
    pub fn on_timeout(&mut self, now: Instant) -> Result<(), GaveUp> { todo!() }
    pub fn reset(&mut self) { todo!() }
    pub fn retransmissions(&self) -> u32 { todo!() }
}
pub fn fragment(msg_type: HandshakeType, message_seq: u16, body: &[u8], max_fragment_len: usize) -> impl Iterator<Item = (HandshakeHeader, &[u8])> { let _ = (msg_type, message_seq, body, max_fragment_len); std::iter::empty() }
