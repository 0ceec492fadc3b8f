//! Handshake message reassembly (RFC 6347 §4.2.2, §4.2.3).
//!
//! Fragments arrive in any order, possibly duplicated or overlapping (receivers MUST handle
//! overlap, §4.2.3). Messages are delivered strictly in `message_seq` order (§4.2.2), and the
//! memory held for incomplete or early messages is bounded by a byte budget.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::codec::{HandshakeType, put_u16, put_u24};
use crate::msgs::HandshakeHeader;

/// Default budget for buffered handshake bytes: large enough for a certificate chain, small
/// enough that a peer cannot make a half-open handshake expensive.
pub const DEFAULT_MAX_BUFFERED: usize = 64 * 1024;

/// How far beyond `next_seq` a message may be and still be buffered. A DTLS 1.2 flight holds at
/// most a handful of messages, so anything further ahead is noise or an attack.
pub const MAX_SEQ_AHEAD: u16 = 16;

/// The outcome of [`Reassembler::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// The message_seq is below `next_seq`: a retransmission of a message already delivered.
    /// Seeing one means the peer has not received our last flight, so the engine retransmits
    /// it (RFC 6347 §4.2.4).
    Old,
    /// The fragment was stored (or was a duplicate of bytes already held).
    Buffered,
}

/// Why a fragment was refused. In every case nothing was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReassemblyError {
    /// Storing the message would exceed the buffered-bytes budget.
    LimitExceeded,
    /// A fragment disagrees with earlier fragments of the same message_seq (msg_type or
    /// length), or with its own header (fragment_length or range beyond length).
    Inconsistent,
    /// message_seq is more than [`MAX_SEQ_AHEAD`] beyond the next expected message.
    TooFarAhead,
}

impl fmt::Display for ReassemblyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LimitExceeded => "handshake reassembly budget exceeded",
            Self::Inconsistent => "inconsistent handshake fragment",
            Self::TooFarAhead => "handshake message_seq too far ahead",
        })
    }
}

impl std::error::Error for ReassemblyError {}

/// A complete handshake message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeMessage {
    /// msg_type
    pub msg_type: HandshakeType,
    /// message_seq
    pub message_seq: u16,
    /// The whole body.
    pub body: Vec<u8>,
}

impl HandshakeMessage {
    /// Appends the message as it enters the transcript: RFC 6347 §4.2.6 hashes DTLS handshake
    /// messages as if sent in a single fragment (fragment_offset 0, fragment_length = length),
    /// header included.
    pub fn transcript_bytes(&self, out: &mut Vec<u8>) {
        let len = self.body.len() as u32;
        self.msg_type.encode(out);
        put_u24(out, len);
        put_u16(out, self.message_seq);
        put_u24(out, 0);
        put_u24(out, len);
        out.extend_from_slice(&self.body);
    }
}

/// A message some of whose bytes have arrived.
#[derive(Debug)]
struct Partial {
    msg_type: HandshakeType,
    message_seq: u16,
    body: Vec<u8>,
    /// One bit per body byte: set once the byte has arrived. A bitmap makes overlap and
    /// duplicates trivial and its size (length / 8) is bounded by the same budget as the body,
    /// unlike a range list, which one-byte fragments with gaps could grow to several times
    /// the body size.
    have: Vec<u8>,
    covered: usize,
}

impl Partial {
    fn is_complete(&self) -> bool {
        self.covered == self.body.len()
    }

    fn add(&mut self, offset: usize, fragment: &[u8]) {
        for (i, &b) in fragment.iter().enumerate() {
            let at = offset + i;
            let mask = 1u8 << (at % 8);
            let slot = &mut self.have[at / 8];
            if *slot & mask == 0 {
                *slot |= mask;
                self.body[at] = b;
                self.covered += 1;
            }
        }
    }
}

/// Reassembles handshake fragments and delivers messages in message_seq order.
#[derive(Debug)]
pub struct Reassembler {
    next_seq: u16,
    /// u32 (a message is at most 2^24 bytes): every association keeps its reassembler.
    max_buffered: u32,
    buffered: u32,
    /// At most `MAX_SEQ_AHEAD + 1` entries, so a linear scan is fine.
    pending: Vec<Partial>,
}

impl Default for Reassembler {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BUFFERED)
    }
}

impl Reassembler {
    /// A reassembler expecting message_seq 0, holding at most `max_buffered_bytes` of message
    /// bodies (the per-byte arrival bitmap adds at most one eighth on top).
    pub fn new(max_buffered_bytes: usize) -> Self {
        let max_buffered = u32::try_from(max_buffered_bytes).unwrap_or(u32::MAX);
        Self { next_seq: 0, max_buffered, buffered: 0, pending: Vec::new() }
    }

    /// The message_seq of the next message to deliver.
    pub fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// Sets the next expected message_seq, e.g. to 2 on a server that verified a cookie on a
    /// ClientHello with message_seq 1 (RFC 6347 §4.2.2). Buffered messages below it are dropped.
    pub fn set_next_seq(&mut self, seq: u16) {
        self.next_seq = seq;
        let mut freed = 0;
        self.pending.retain(|p| {
            let keep = p.message_seq >= seq;
            if !keep {
                freed += p.body.len() as u32;
            }
            keep
        });
        self.buffered -= freed;
    }

    /// Gives back the capacity of the buffer list once nothing is buffered (an established
    /// association keeps its reassembler only for `next_seq`, to recognise a repeated peer
    /// flight). Buffered messages are kept.
    pub fn shrink_to_fit(&mut self) {
        self.pending.shrink_to_fit();
    }

    /// Bytes of message bodies currently held.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered as usize
    }

    /// Offers one fragment (RFC 6347 §4.2.3). Duplicate and overlapping bytes are accepted;
    /// where they overlap, the bytes that arrived first are kept.
    pub fn insert(&mut self, header: &HandshakeHeader, fragment: &[u8]) -> Result<Insert, ReassemblyError> {
        let seq = header.message_seq;
        if seq < self.next_seq {
            return Ok(Insert::Old);
        }
        if seq - self.next_seq > MAX_SEQ_AHEAD {
            return Err(ReassemblyError::TooFarAhead);
        }
        let length = header.length as usize;
        let offset = header.fragment_offset as usize;
        if fragment.len() != header.fragment_length as usize
            || offset.checked_add(fragment.len()).is_none_or(|end| end > length)
        {
            return Err(ReassemblyError::Inconsistent);
        }

        let idx = match self.pending.iter().position(|p| p.message_seq == seq) {
            Some(i) => {
                let p = &self.pending[i];
                if p.msg_type != header.msg_type || p.body.len() != length {
                    return Err(ReassemblyError::Inconsistent);
                }
                i
            }
            None => {
                // Checked before allocating: a 16 MB declared length costs nothing if refused.
                // The header's length is a u24 on the wire, so it fits the u32 count.
                if header.length > self.max_buffered - self.buffered {
                    return Err(ReassemblyError::LimitExceeded);
                }
                self.buffered += header.length;
                self.pending.push(Partial {
                    msg_type: header.msg_type,
                    message_seq: seq,
                    body: vec![0; length],
                    have: vec![0; length.div_ceil(8)],
                    covered: 0,
                });
                self.pending.len() - 1
            }
        };
        self.pending[idx].add(offset, fragment);
        Ok(Insert::Buffered)
    }

    /// The next complete message in order, if any, advancing `next_seq`.
    pub fn pop(&mut self) -> Option<HandshakeMessage> {
        let i = self.pending.iter().position(|p| p.message_seq == self.next_seq && p.is_complete())?;
        let p = self.pending.swap_remove(i);
        self.buffered -= p.body.len() as u32;
        // message_seq is not reused within a handshake (RFC 6347 §4.2.2) and handshakes are a
        // few messages long, so wrapping is unreachable in practice.
        self.next_seq = self.next_seq.wrapping_add(1);
        Some(HandshakeMessage { msg_type: p.msg_type, message_seq: p.message_seq, body: p.body })
    }
}

/// Limits of a server's reassembly area for fragmented ClientHellos, which sits before the
/// stateless cookie gate and apart from the associations.
///
/// A client whose path MTU is small fragments its ClientHello (RFC 9147 §4.4, RFC 6347
/// §4.1.1.1), in DTLS 1.3 above all the second one that carries the HelloRetryRequest cookie
/// (RFC 9147 §5.1). A server cannot keep per-client state before the cookie round trip
/// (RFC 6347 §4.2.1), so this area spends a fixed, small budget on it instead: whatever a flood
/// of fragments does, it holds at most `max_entries` ClientHellos and `max_total_bytes` bytes,
/// evicting the oldest first, and an entry lives at most `lifetime`. A reassembled ClientHello
/// then passes the same stateless cookie gate as an unfragmented one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloReassemblyConfig {
    /// Most ClientHellos in reassembly at once (one per client address); 0 turns reassembly
    /// off, and fragmented ClientHellos are then dropped.
    pub max_entries: usize,
    /// Longest ClientHello body accepted for reassembly (capped at one record's worth,
    /// 16384 - 12 bytes, because the reassembled hello is replayed as one record).
    pub max_hello_len: usize,
    /// Most bytes held by the whole area, bodies plus their arrival bitmaps.
    pub max_total_bytes: usize,
    /// How long a partial ClientHello waits for its missing fragments.
    pub lifetime: Duration,
}

impl Default for HelloReassemblyConfig {
    /// 32 hellos of up to 4 KiB each, 64 KiB in all, 10 s each: a real ClientHello is a few
    /// hundred bytes (a 2 KiB one would carry a large PSK identity or ticket), and 10 s covers
    /// the client's retransmissions (1 s, 2 s, 4 s) that fill a lost fragment.
    fn default() -> Self {
        Self { max_entries: 32, max_hello_len: 4096, max_total_bytes: 64 * 1024, lifetime: Duration::from_secs(10) }
    }
}

/// Why a ClientHello fragment was not taken into the area. Nothing was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloFragmentError {
    /// Reassembly is off (`max_entries == 0`), or the hello alone would exceed the limits.
    TooLarge,
    /// Not a ClientHello fragment, or its header contradicts itself.
    Inconsistent,
}

/// A ClientHello reassembled from fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassembledHello {
    /// The highest record sequence number among its fragments (the stateless answer reuses
    /// the ClientHello's record number, RFC 6347 §4.2.1 / RFC 9147 §5.1).
    pub record_seq: u64,
    /// Its message_seq.
    pub message_seq: u16,
    /// The whole body.
    pub body: Vec<u8>,
}

#[derive(Debug)]
struct HelloEntry {
    peer: SocketAddr,
    created: Instant,
    record_seq: u64,
    partial: Partial,
}

/// Largest body that still fits one plaintext record once reassembled.
const MAX_ONE_RECORD_HELLO: usize = (1 << 14) - HandshakeHeader::LEN;

/// The bounded area in which a server reassembles fragmented ClientHellos; see
/// [`HelloReassemblyConfig`].
#[derive(Debug)]
pub struct HelloReassembly {
    config: HelloReassemblyConfig,
    /// Oldest first.
    entries: VecDeque<HelloEntry>,
    bytes: usize,
    evicted: u64,
}

/// Bytes an entry holds: the body and one bit per body byte.
fn hello_cost(len: usize) -> usize {
    len + len.div_ceil(8)
}

impl HelloReassembly {
    /// An empty area.
    pub fn new(config: HelloReassemblyConfig) -> Self {
        Self { config, entries: VecDeque::new(), bytes: 0, evicted: 0 }
    }

    /// ClientHellos in reassembly.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is in reassembly.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held (bodies and bitmaps), never more than `max_total_bytes`.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Partial hellos dropped so far, to make room or because they expired.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Drops partial hellos older than the lifetime.
    pub fn expire(&mut self, now: Instant) {
        while let Some(e) = self.entries.front() {
            if now.saturating_duration_since(e.created) < self.config.lifetime {
                break;
            }
            self.remove(0);
            self.evicted += 1;
        }
    }

    fn remove(&mut self, i: usize) -> Option<HelloEntry> {
        let e = self.entries.remove(i)?;
        self.bytes -= hello_cost(e.partial.body.len());
        Some(e)
    }

    /// Offers one ClientHello fragment from `peer`, carried in the record numbered
    /// `record_seq`; returns the whole ClientHello once its last missing byte arrives.
    /// Overlapping and duplicated fragments are fine (RFC 9147 §5.5, RFC 6347 §4.2.3). A
    /// fragment of a different message_seq or length than the peer's partial hello replaces
    /// it: the newest ClientHello from an address wins, as it does at the cookie gate.
    pub fn insert(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        record_seq: u64,
        header: &HandshakeHeader,
        fragment: &[u8],
    ) -> Result<Option<ReassembledHello>, HelloFragmentError> {
        self.expire(now);
        let length = header.length as usize;
        let offset = header.fragment_offset as usize;
        if header.msg_type != HandshakeType::ClientHello
            || length == 0
            || fragment.len() != header.fragment_length as usize
            || offset.checked_add(fragment.len()).is_none_or(|end| end > length)
        {
            return Err(HelloFragmentError::Inconsistent);
        }
        let cost = hello_cost(length);
        if self.config.max_entries == 0
            || length > self.config.max_hello_len.min(MAX_ONE_RECORD_HELLO)
            || cost > self.config.max_total_bytes
        {
            return Err(HelloFragmentError::TooLarge);
        }
        let existing = self.entries.iter().position(|e| e.peer == peer);
        let idx = match existing {
            Some(i)
                if self.entries[i].partial.message_seq == header.message_seq
                    && self.entries[i].partial.body.len() == length =>
            {
                i
            }
            _ => {
                if let Some(i) = existing {
                    self.remove(i);
                }
                // Checked before allocating: the oldest partial hellos make room.
                while self.entries.len() >= self.config.max_entries || self.bytes + cost > self.config.max_total_bytes {
                    self.remove(0);
                    self.evicted += 1;
                }
                self.bytes += cost;
                self.entries.push_back(HelloEntry {
                    peer,
                    created: now,
                    record_seq,
                    partial: Partial {
                        msg_type: HandshakeType::ClientHello,
                        message_seq: header.message_seq,
                        body: vec![0; length],
                        have: vec![0; length.div_ceil(8)],
                        covered: 0,
                    },
                });
                self.entries.len() - 1
            }
        };
        let e = &mut self.entries[idx];
        e.record_seq = e.record_seq.max(record_seq);
        e.partial.add(offset, fragment);
        if !e.partial.is_complete() {
            return Ok(None);
        }
        let e = self.remove(idx).expect("index in range");
        Ok(Some(ReassembledHello {
            record_seq: e.record_seq,
            message_seq: e.partial.message_seq,
            body: e.partial.body,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Reader;
    use crate::crypto::{Rng, SeededRng};

    fn hdr(msg_type: HandshakeType, seq: u16, length: usize, offset: usize, frag_len: usize) -> HandshakeHeader {
        HandshakeHeader {
            msg_type,
            length: length as u32,
            message_seq: seq,
            fragment_offset: offset as u32,
            fragment_length: frag_len as u32,
        }
    }

    /// Inserts `body[from..to]` as a fragment of message `seq`.
    fn put(r: &mut Reassembler, seq: u16, body: &[u8], from: usize, to: usize) -> Result<Insert, ReassemblyError> {
        r.insert(&hdr(HandshakeType::Certificate, seq, body.len(), from, to - from), &body[from..to])
    }

    fn body(n: usize, salt: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt)).collect()
    }

    #[test]
    fn unfragmented_in_order() {
        let mut r = Reassembler::default();
        let a = body(10, 1);
        let b = body(0, 2);
        assert_eq!(put(&mut r, 0, &a, 0, 10), Ok(Insert::Buffered));
        assert_eq!(r.buffered_bytes(), 10);
        assert_eq!(put(&mut r, 1, &b, 0, 0), Ok(Insert::Buffered));
        let m = r.pop().unwrap();
        assert_eq!((m.message_seq, &m.body), (0, &a));
        assert_eq!(m.msg_type, HandshakeType::Certificate);
        let m = r.pop().unwrap();
        assert_eq!((m.message_seq, m.body.len()), (1, 0));
        assert_eq!(r.pop(), None);
        assert_eq!(r.next_seq(), 2);
        assert_eq!(r.buffered_bytes(), 0);
    }

    #[test]
    fn shrink_to_fit_frees_only_an_empty_list_and_keeps_the_sequence() {
        let mut r = Reassembler::default();
        for seq in 0..3 {
            put(&mut r, seq, &body(20, seq as u8), 0, 20).unwrap();
        }
        // Message 4 waits for 3: shrinking must keep it.
        let ahead = body(8, 9);
        put(&mut r, 4, &ahead, 0, 8).unwrap();
        for _ in 0..3 {
            r.pop().unwrap();
        }
        r.shrink_to_fit();
        assert_eq!(r.pending.len(), 1);
        put(&mut r, 3, &body(5, 7), 0, 5).unwrap();
        assert_eq!(r.pop().unwrap().message_seq, 3);
        assert_eq!(r.pop().unwrap().body, ahead);
        assert!(r.pending.capacity() > 0);
        r.shrink_to_fit();
        assert_eq!(r.pending.capacity(), 0);
        // The sequence survives: a repeated message is still recognised as old.
        assert_eq!(r.next_seq(), 5);
        assert_eq!(put(&mut r, 2, &body(20, 2), 0, 20), Ok(Insert::Old));
        assert_eq!(r.pending.capacity(), 0);
    }

    #[test]
    fn reverse_order_fragments_and_messages() {
        let mut r = Reassembler::default();
        let a = body(100, 3);
        let b = body(50, 4);
        for start in (0..50).step_by(10).rev() {
            put(&mut r, 1, &b, start, start + 10).unwrap();
        }
        // Message 1 is complete but must wait for 0.
        assert_eq!(r.pop(), None);
        for start in (0..100).step_by(7).rev() {
            assert_eq!(r.pop(), None);
            put(&mut r, 0, &a, start, (start + 7).min(100)).unwrap();
        }
        assert_eq!(r.pop().unwrap().body, a);
        assert_eq!(r.pop().unwrap().body, b);
        assert_eq!(r.pop(), None);
    }

    #[test]
    fn overlapping_and_duplicate() {
        let mut r = Reassembler::default();
        let a = body(40, 5);
        put(&mut r, 0, &a, 10, 30).unwrap();
        put(&mut r, 0, &a, 10, 30).unwrap();
        put(&mut r, 0, &a, 0, 15).unwrap();
        put(&mut r, 0, &a, 25, 35).unwrap();
        put(&mut r, 0, &a, 5, 12).unwrap();
        assert_eq!(r.pop(), None);
        put(&mut r, 0, &a, 20, 40).unwrap();
        assert_eq!(r.pop().unwrap().body, a);
        // A duplicate arriving after delivery is Old.
        assert_eq!(put(&mut r, 0, &a, 0, 40), Ok(Insert::Old));
    }

    #[test]
    fn duplicate_of_complete_message_before_pop() {
        let mut r = Reassembler::default();
        let a = body(8, 6);
        put(&mut r, 1, &a, 0, 8).unwrap();
        assert_eq!(put(&mut r, 1, &a, 0, 8), Ok(Insert::Buffered));
        assert_eq!(r.buffered_bytes(), 8);
        put(&mut r, 0, &a, 0, 8).unwrap();
        assert_eq!(r.pop().unwrap().message_seq, 0);
        assert_eq!(r.pop().unwrap().message_seq, 1);
        assert_eq!(r.pop(), None);
    }

    #[test]
    fn one_byte_fragments() {
        let mut r = Reassembler::default();
        let a = body(33, 7);
        for i in (0..33).filter(|i| i % 2 == 1).chain((0..33).filter(|i| i % 2 == 0)) {
            assert_eq!(r.pop(), None);
            put(&mut r, 0, &a, i, i + 1).unwrap();
        }
        assert_eq!(r.pop().unwrap().body, a);
    }

    #[test]
    fn gaps_are_not_delivered() {
        let mut r = Reassembler::default();
        let a = body(30, 8);
        put(&mut r, 0, &a, 0, 10).unwrap();
        put(&mut r, 0, &a, 11, 30).unwrap();
        // An empty fragment covers nothing.
        put(&mut r, 0, &a, 10, 10).unwrap();
        assert_eq!(r.pop(), None);
        put(&mut r, 0, &a, 10, 11).unwrap();
        assert_eq!(r.pop().unwrap().body, a);
    }

    #[test]
    fn old_and_set_next_seq() {
        let mut r = Reassembler::default();
        let a = body(5, 9);
        put(&mut r, 0, &a, 0, 3).unwrap();
        put(&mut r, 2, &a, 0, 5).unwrap();
        assert_eq!(r.buffered_bytes(), 10);
        r.set_next_seq(2);
        assert_eq!(r.buffered_bytes(), 5);
        assert_eq!(put(&mut r, 0, &a, 3, 5), Ok(Insert::Old));
        assert_eq!(put(&mut r, 1, &a, 0, 5), Ok(Insert::Old));
        assert_eq!(r.pop().unwrap().message_seq, 2);
        assert_eq!(r.next_seq(), 3);
        assert_eq!(put(&mut r, 2, &a, 0, 5), Ok(Insert::Old));
        assert_eq!(r.buffered_bytes(), 0);
    }

    #[test]
    fn too_far_ahead() {
        let mut r = Reassembler::default();
        let a = body(5, 10);
        assert_eq!(put(&mut r, MAX_SEQ_AHEAD, &a, 0, 5), Ok(Insert::Buffered));
        assert_eq!(put(&mut r, MAX_SEQ_AHEAD + 1, &a, 0, 5), Err(ReassemblyError::TooFarAhead));
        assert_eq!(put(&mut r, u16::MAX, &a, 0, 5), Err(ReassemblyError::TooFarAhead));
        r.set_next_seq(1);
        assert_eq!(put(&mut r, MAX_SEQ_AHEAD + 1, &a, 0, 5), Ok(Insert::Buffered));
    }

    #[test]
    fn limits() {
        let mut r = Reassembler::new(100);
        // A huge declared length with a tiny fragment is refused without allocating.
        let h = hdr(HandshakeType::Certificate, 0, 0xFF_FFFF, 0, 10);
        assert_eq!(r.insert(&h, &[0; 10]), Err(ReassemblyError::LimitExceeded));
        assert_eq!(r.buffered_bytes(), 0);

        let a = body(60, 11);
        let b = body(41, 12);
        put(&mut r, 0, &a, 0, 1).unwrap();
        assert_eq!(r.buffered_bytes(), 60);
        assert_eq!(put(&mut r, 1, &b, 0, 1), Err(ReassemblyError::LimitExceeded));
        let c = body(40, 13);
        put(&mut r, 1, &c, 0, 40).unwrap();
        assert_eq!(r.buffered_bytes(), 100);
        // Further fragments of held messages are still accepted.
        put(&mut r, 0, &a, 1, 60).unwrap();
        assert_eq!(r.pop().unwrap().body, a);
        assert_eq!(r.buffered_bytes(), 40);
        // Popping freed budget.
        put(&mut r, 2, &body(60, 14), 0, 1).unwrap();
    }

    #[test]
    fn inconsistent() {
        let mut r = Reassembler::default();
        let a = body(20, 15);
        put(&mut r, 0, &a, 0, 5).unwrap();
        let longer = body(21, 15);
        assert_eq!(put(&mut r, 0, &longer, 5, 10), Err(ReassemblyError::Inconsistent));
        let h = hdr(HandshakeType::ServerHello, 0, 20, 5, 5);
        assert_eq!(r.insert(&h, &a[5..10]), Err(ReassemblyError::Inconsistent));
        // A header that disagrees with its own fragment.
        let h = hdr(HandshakeType::Certificate, 0, 20, 5, 6);
        assert_eq!(r.insert(&h, &a[5..10]), Err(ReassemblyError::Inconsistent));
        let h = hdr(HandshakeType::Certificate, 0, 20, 18, 5);
        assert_eq!(r.insert(&h, &[0; 5]), Err(ReassemblyError::Inconsistent));
        let h = hdr(HandshakeType::Certificate, 0, 20, usize::MAX, 5);
        assert_eq!(r.insert(&h, &[0; 5]), Err(ReassemblyError::Inconsistent));
        // Nothing of the refused fragments was stored.
        put(&mut r, 0, &a, 5, 20).unwrap();
        assert_eq!(r.pop().unwrap().body, a);
    }

    #[test]
    fn transcript_bytes_is_unfragmented_header_plus_body() {
        let m = HandshakeMessage { msg_type: HandshakeType::Finished, message_seq: 0x0102, body: vec![0xAA; 12] };
        let mut out = vec![0xEE];
        m.transcript_bytes(&mut out);
        assert_eq!(&out[..13], &[0xEE, 20, 0, 0, 12, 1, 2, 0, 0, 0, 0, 0, 12]);
        assert_eq!(&out[13..], &[0xAA; 12]);
        // It parses back as one complete fragment.
        let mut rd = Reader::new(&out[1..]);
        let (h, f) = HandshakeHeader::read_fragment(&mut rd).unwrap();
        assert_eq!((h.length, h.fragment_offset, h.fragment_length, f.len()), (12, 0, 12, 12));
    }

    fn rand_below(rng: &mut SeededRng, n: usize) -> usize {
        let mut b = [0u8; 8];
        rng.fill(&mut b);
        (u64::from_le_bytes(b) % n as u64) as usize
    }

    /// Random messages, random (overlapping, duplicated) fragmentations, shuffled together.
    #[test]
    fn property_any_fragmentation_any_order() {
        let mut rng = SeededRng::from_seed_u64(0xF1A9);
        for round in 0..300 {
            let n_msgs = 1 + rand_below(&mut rng, 5);
            let start_seq = rand_below(&mut rng, 3) as u16;
            let msgs: Vec<Vec<u8>> = (0..n_msgs)
                .map(|_| {
                    let len = rand_below(&mut rng, 300);
                    let mut b = vec![0u8; len];
                    rng.fill(&mut b);
                    b
                })
                .collect();
            let mut frags: Vec<(u16, usize, usize)> = Vec::new();
            for (i, m) in msgs.iter().enumerate() {
                let seq = start_seq + i as u16;
                let mut at = 0;
                loop {
                    let len = 1 + rand_below(&mut rng, 64);
                    let end = (at + len).min(m.len());
                    frags.push((seq, at, end));
                    // Random overlap: sometimes step back before the end.
                    let back = if rand_below(&mut rng, 3) == 0 { rand_below(&mut rng, end - at + 1) } else { 0 };
                    if end == m.len() {
                        break;
                    }
                    at = (end - back).max(at + 1).min(end);
                }
                // Random duplicates.
                for _ in 0..rand_below(&mut rng, 3) {
                    let a = rand_below(&mut rng, m.len() + 1);
                    let b = a + rand_below(&mut rng, m.len() - a + 1);
                    frags.push((seq, a, b));
                }
            }
            for i in (1..frags.len()).rev() {
                frags.swap(i, rand_below(&mut rng, i + 1));
            }

            let mut r = Reassembler::default();
            r.set_next_seq(start_seq);
            let mut got = Vec::new();
            for &(seq, a, b) in &frags {
                let m = &msgs[(seq - start_seq) as usize];
                let res = put(&mut r, seq, m, a, b).unwrap();
                // A fragment of an already delivered message is Old.
                assert_eq!(res == Insert::Old, got.len() > (seq - start_seq) as usize, "round {round}");
                while let Some(d) = r.pop() {
                    got.push(d);
                }
            }
            assert_eq!(got.len(), n_msgs, "round {round}");
            for (i, d) in got.iter().enumerate() {
                assert_eq!(d.message_seq, start_seq + i as u16);
                assert_eq!(d.body, msgs[i], "round {round} msg {i}");
            }
            assert_eq!(r.buffered_bytes(), 0);
            assert_eq!(r.next_seq(), start_seq + n_msgs as u16);
        }
    }

    fn ch_hdr(seq: u16, length: usize, offset: usize, frag_len: usize) -> HandshakeHeader {
        hdr(HandshakeType::ClientHello, seq, length, offset, frag_len)
    }

    #[test]
    fn hello_area_reassembles_out_of_order_with_overlap() {
        let now = Instant::now();
        let peer: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let mut area = HelloReassembly::new(HelloReassemblyConfig::default());
        let b = body(500, 3);
        assert_eq!(area.insert(now, peer, 4, &ch_hdr(1, 500, 300, 200), &b[300..]).unwrap(), None);
        assert_eq!(area.insert(now, peer, 2, &ch_hdr(1, 500, 0, 200), &b[..200]).unwrap(), None);
        assert_eq!(area.bytes(), 500 + 63);
        let done = area.insert(now, peer, 3, &ch_hdr(1, 500, 150, 200), &b[150..350]).unwrap().unwrap();
        assert_eq!(done, ReassembledHello { record_seq: 4, message_seq: 1, body: b });
        assert!(area.is_empty());
        assert_eq!(area.bytes(), 0);
    }

    #[test]
    fn hello_area_limits_evict_oldest_and_refuse_oversize() {
        let t0 = Instant::now();
        let cfg = HelloReassemblyConfig {
            max_entries: 4,
            max_hello_len: 1000,
            max_total_bytes: 2100,
            lifetime: Duration::from_secs(5),
        };
        let mut area = HelloReassembly::new(cfg);
        let peer = |i: u16| SocketAddr::from(([192, 0, 2, 1], i));
        let peers = |a: &HelloReassembly| a.entries.iter().map(|e| e.peer.port()).collect::<Vec<_>>();
        let f = [0u8; 10];
        for i in 0..3 {
            area.insert(t0, peer(i), 0, &ch_hdr(0, 600, 0, 10), &f).unwrap();
        }
        assert_eq!((area.len(), area.bytes()), (3, 3 * 675));
        // Byte limit: the oldest goes.
        area.insert(t0, peer(9), 0, &ch_hdr(0, 100, 0, 10), &f).unwrap();
        assert_eq!((peers(&area), area.bytes()), (vec![1, 2, 9], 2 * 675 + 113));
        area.insert(t0, peer(10), 0, &ch_hdr(0, 1000, 0, 10), &f).unwrap();
        assert_eq!((peers(&area), area.bytes()), (vec![2, 9, 10], 675 + 113 + 1125));
        // Entry limit: the oldest goes.
        area.insert(t0, peer(12), 0, &ch_hdr(0, 100, 0, 10), &f).unwrap();
        area.insert(t0, peer(13), 0, &ch_hdr(0, 100, 0, 10), &f).unwrap();
        assert_eq!(peers(&area), vec![9, 10, 12, 13]);
        assert_eq!(area.evicted(), 3);
        assert_eq!(area.insert(t0, peer(11), 0, &ch_hdr(0, 1001, 0, 10), &f), Err(HelloFragmentError::TooLarge));
        assert_eq!(
            area.insert(t0, peer(11), 0, &hdr(HandshakeType::ServerHello, 0, 100, 0, 10), &f),
            Err(HelloFragmentError::Inconsistent)
        );
        assert_eq!(area.insert(t0, peer(11), 0, &ch_hdr(0, 100, 95, 10), &f), Err(HelloFragmentError::Inconsistent));
        // Lifetime.
        area.expire(t0 + Duration::from_secs(5));
        assert!(area.is_empty());
        assert_eq!(area.bytes(), 0);
        // A different message_seq from the same peer replaces its partial hello.
        area.insert(t0, peer(1), 0, &ch_hdr(0, 100, 0, 10), &f).unwrap();
        area.insert(t0, peer(1), 0, &ch_hdr(1, 100, 0, 10), &f).unwrap();
        assert_eq!((area.len(), area.bytes()), (1, 113));
        let mut off = HelloReassembly::new(HelloReassemblyConfig { max_entries: 0, ..cfg });
        assert_eq!(off.insert(t0, peer(1), 0, &ch_hdr(0, 100, 0, 10), &f), Err(HelloFragmentError::TooLarge));
    }
}
