//! Handshake message reassembly (RFC 6347 §4.2.3). (STUB API)
#![allow(missing_docs, dead_code, unused_variables)]
use crate::codec::HandshakeType;
use crate::msgs::HandshakeHeader;
#[derive(Debug)]
pub struct Reassembler;
#[derive(Debug, PartialEq, Eq)]
pub enum Insert { Old, Buffered }
#[derive(Debug, PartialEq, Eq)]
pub enum ReassemblyError { LimitExceeded, Inconsistent, TooFarAhead }
#[derive(Debug)]
pub struct HandshakeMessage { pub msg_type: HandshakeType, pub message_seq: u16, pub body: Vec<u8> }
impl HandshakeMessage { pub fn transcript_bytes(&self, out: &mut Vec<u8>) { todo!() } }
pub const DEFAULT_MAX_BUFFERED: usize = 64 * 1024;
impl Reassembler {
    pub fn new(max_buffered_bytes: usize) -> Self { todo!() }
    pub fn next_seq(&self) -> u16 { todo!() }
    pub fn set_next_seq(&mut self, seq: u16) { todo!() }
    pub fn insert(&mut self, header: &HandshakeHeader, fragment: &[u8]) -> Result<Insert, ReassemblyError> { todo!() }
    pub fn pop(&mut self) -> Option<HandshakeMessage> { todo!() }
    pub fn buffered_bytes(&self) -> usize { todo!() }
}
