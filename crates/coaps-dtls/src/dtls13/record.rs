//! DTLS 1.3 record layer (RFC 9147 §4): demultiplexing, the unified header, record payload
//! protection with the TLS 1.3 inner plaintext, record number encryption, sequence number and
//! epoch reconstruction, per-epoch anti-replay and AEAD usage limits.
//!
//! Sans-IO building blocks; the handshake decides which epochs exist:
//!
//! * [`split_datagram13`] cuts a datagram into [`Record13`]s: DTLSPlaintext (13-byte header,
//!   as in DTLS 1.2) or DTLSCiphertext (unified header) (§4.1).
//! * [`RecordProtection13`] seals and opens DTLSCiphertext records under one traffic secret's
//!   [`TrafficKeys`]; it keeps no sequence state.
//! * [`SendEpoch13`] / [`ReceiveEpoch13`] wrap it with the per-epoch state: the next sequence
//!   number, the replay window, the highest deprotected record and the [`AeadLimits`]
//!   counters.
//! * [`reconstruct_seq`] / [`reconstruct_epoch`] expand the truncated header fields (§4.2.2).
//!
//! Connection IDs (RFC 9147 §4, §9): [`split_datagram13_cid`] reads the CID that follows the
//! first byte of a header with the C bit, its length being the one the receiver issued (it is
//! not on the wire); [`RecordProtection13::seal_cid`] writes one. The CID is part of the header
//! and so of the AEAD additional data; record number encryption masks only the sequence number
//! after it. Without a CID length ([`split_datagram13`]) a record with the C bit is malformed
//! (§9: without a negotiated CID, records carrying one are rejected).

use std::fmt;

use aes::Aes128Enc;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use chacha20::cipher::{KeyIvInit, StreamCipherCore};
use chacha20::variants::Ietf;
use chacha20::{ChaChaCore, R20};
use zeroize::Zeroizing;

use crate::codec::{ContentType, ProtocolVersion, Reader};
use crate::crypto::{AeadAlgorithm, CryptoError, CryptoProvider, RecordAead};
use crate::dtls13::key_schedule::TrafficKeys;
use crate::record::{MAX_PLAINTEXT_LEN, RawRecord, RecordHeader, ReplayWindow};

/// Shortest `encrypted_record` accepted and sent: record number encryption samples its first
/// 16 bytes (RFC 9147 §4.2.3).
pub const MIN_ENCRYPTED_RECORD_LEN: usize = 16;

/// Longest `encrypted_record`: 2^14 + 256 bytes (RFC 8446 §5.2, which RFC 9147 keeps).
pub const MAX_ENCRYPTED_RECORD_LEN: usize = MAX_PLAINTEXT_LEN + 256;

/// The three fixed high bits of a unified header, `001` (RFC 9147 §4).
const FIXED_BITS: u8 = 0b0010_0000;
const FIXED_MASK: u8 = 0b1110_0000;
/// C: a connection ID follows the first byte.
const C_BIT: u8 = 0x10;
/// S: the sequence number is 16 bits (else 8).
const S_BIT: u8 = 0x08;
/// L: a 16-bit length is present.
const L_BIT: u8 = 0x04;
/// EE: the low two bits of the epoch.
const EPOCH_MASK: u8 = 0x03;
/// Longest unified header without a CID: first byte, 16-bit sequence number, length.
const MAX_HEADER_LEN: usize = 5;
/// Longest CID (RFC 9146 §3: `opaque cid<0..2^8-1>`).
const MAX_CID_LEN: usize = 255;

/// How many sequence number bits a unified header carries (RFC 9147 §4, the S bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeqLen {
    /// 8 bits (S = 0).
    Bits8,
    /// 16 bits (S = 1).
    Bits16,
}

impl SeqLen {
    /// Encoded size in bytes.
    pub const fn byte_len(self) -> usize {
        match self {
            Self::Bits8 => 1,
            Self::Bits16 => 2,
        }
    }

    /// Width in bits.
    pub const fn bits(self) -> u32 {
        match self {
            Self::Bits8 => 8,
            Self::Bits16 => 16,
        }
    }

    /// The shortest width the receiver can still reconstruct for record `seq`.
    ///
    /// `peer_highest` is the highest sequence number of this epoch the peer is known to have
    /// received (from an ACK), if any. The receiver reconstructs the number closest to its
    /// highest deprotected + 1 (§4.2.2), which lies between `peer_highest + 1` and `seq`, or
    /// above `seq` if later records overtake this one. 8 bits are chosen while fewer than 64
    /// records separate `seq` from what the peer is known to have, so that up to 64 later
    /// records may still overtake it; otherwise 16 bits.
    pub fn choose(seq: u64, peer_highest: Option<u64>) -> Self {
        let base = peer_highest.map_or(0, |h| h.saturating_add(1));
        if seq.saturating_sub(base) < 64 { Self::Bits8 } else { Self::Bits16 }
    }
}

/// The shape of a unified header to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeaderStyle {
    /// Width of the sequence number field.
    pub seq_len: SeqLen,
    /// Whether the length field is present. Omitting it is allowed only for the last record
    /// of a datagram (RFC 9147 §4).
    pub length: bool,
}

impl HeaderStyle {
    /// 16-bit sequence number and a length: always safe, 5 bytes.
    pub const FULL: Self = Self { seq_len: SeqLen::Bits16, length: true };
    /// 8-bit sequence number, no length: the 2-byte minimal header (RFC 9147 §4, figure
    /// "DTLS 1.3 Header Examples").
    pub const MINIMAL: Self = Self { seq_len: SeqLen::Bits8, length: false };

    /// The shortest unambiguous header: [`SeqLen::choose`] for the sequence number and no
    /// length on the last record of a datagram.
    pub fn choose(seq: u64, peer_highest: Option<u64>, last_in_datagram: bool) -> Self {
        Self { seq_len: SeqLen::choose(seq, peer_highest), length: !last_in_datagram }
    }

    /// Encoded header size in bytes.
    pub const fn header_len(self) -> usize {
        1 + self.seq_len.byte_len() + if self.length { 2 } else { 0 }
    }
}

/// A parsed unified header (RFC 9147 §4), sequence number still encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnifiedHeader {
    /// The low two bits of the epoch.
    pub epoch_bits: u8,
    /// Width of the sequence number field.
    pub seq_len: SeqLen,
    /// The sequence number field as received, still under record number encryption.
    pub encrypted_seq: u16,
    /// The length field, if present.
    pub length: Option<u16>,
}

impl UnifiedHeader {
    /// The style this header was sent with.
    pub fn style(&self) -> HeaderStyle {
        HeaderStyle { seq_len: self.seq_len, length: self.length.is_some() }
    }
}

/// One DTLSCiphertext record as found in a datagram.
#[derive(Debug, Clone, Copy)]
pub struct CiphertextRecord<'a> {
    /// The parsed header.
    pub header: UnifiedHeader,
    /// The header bytes as received (sequence number still encrypted), CID included.
    pub header_bytes: &'a [u8],
    /// The CID after the first byte (RFC 9147 §4, the C bit), empty when absent.
    pub cid: &'a [u8],
    /// `encrypted_record`: AEAD ciphertext and tag.
    pub encrypted_record: &'a [u8],
}

/// One record of a DTLS 1.3 datagram (RFC 9147 §4.1).
#[derive(Debug, Clone, Copy)]
pub enum Record13<'a> {
    /// A DTLSPlaintext record: alert(21), handshake(22) or ack(26) in the clear, with the
    /// 13-byte header of DTLS 1.2. `header.epoch` is the low 16 bits of the epoch.
    Plaintext(RawRecord<'a>),
    /// A DTLSCiphertext record.
    Ciphertext(CiphertextRecord<'a>),
}

/// Iterator over the records of a datagram; see [`split_datagram13`].
#[derive(Debug, Clone)]
pub struct Records13<'a> {
    datagram: &'a [u8],
    pos: usize,
    malformed: bool,
    /// Length of the CIDs this receiver issued; 0: a record with a CID is malformed.
    cid_len: usize,
}

impl<'a> Records13<'a> {
    /// Whether iteration stopped on a malformed record, dropping the rest of the datagram.
    pub fn hit_malformed(&self) -> bool {
        self.malformed
    }

    fn fail(&mut self) -> Option<Record13<'a>> {
        self.malformed = true;
        self.pos = self.datagram.len();
        None
    }

    fn plaintext(&mut self) -> Option<Record13<'a>> {
        let mut r = Reader::new(&self.datagram[self.pos..]);
        let parsed = RecordHeader::read(&mut r).and_then(|header| {
            let fragment = r.take(usize::from(header.length), "DTLSPlaintext.fragment")?;
            Ok(RawRecord { header, fragment })
        });
        match parsed {
            Ok(record) => {
                self.pos += r.used();
                Some(Record13::Plaintext(record))
            }
            Err(_) => self.fail(),
        }
    }

    fn ciphertext(&mut self, first: u8) -> Option<Record13<'a>> {
        // A CID's length is not on the wire (RFC 9147 §4): it is the length of the CIDs this
        // receiver issued. Without one negotiated nothing after this byte can be located, and
        // the record is rejected (§9).
        let cid_len = if first & C_BIT != 0 {
            if self.cid_len == 0 {
                return self.fail();
            }
            self.cid_len
        } else {
            0
        };
        let seq_len = if first & S_BIT != 0 { SeqLen::Bits16 } else { SeqLen::Bits8 };
        let has_length = first & L_BIT != 0;
        let header_len = HeaderStyle { seq_len, length: has_length }.header_len() + cid_len;
        let rest = &self.datagram[self.pos..];
        let Some(header_bytes) = rest.get(..header_len) else {
            return self.fail();
        };
        let cid = &header_bytes[1..1 + cid_len];
        let at = 1 + cid_len;
        let encrypted_seq = match seq_len {
            SeqLen::Bits8 => u16::from(header_bytes[at]),
            SeqLen::Bits16 => u16::from_be_bytes([header_bytes[at], header_bytes[at + 1]]),
        };
        let (length, body_len) = if has_length {
            let l = u16::from_be_bytes([header_bytes[header_len - 2], header_bytes[header_len - 1]]);
            (Some(l), usize::from(l))
        } else {
            // RFC 9147 §4: without a length the record runs to the end of the datagram.
            (None, rest.len() - header_len)
        };
        let Some(encrypted_record) = rest.get(header_len..header_len + body_len) else {
            return self.fail();
        };
        self.pos += header_len + body_len;
        let header = UnifiedHeader { epoch_bits: first & EPOCH_MASK, seq_len, encrypted_seq, length };
        Some(Record13::Ciphertext(CiphertextRecord { header, header_bytes, cid, encrypted_record }))
    }
}

impl<'a> Iterator for Records13<'a> {
    type Item = Record13<'a>;

    fn next(&mut self) -> Option<Record13<'a>> {
        let first = *self.datagram.get(self.pos)?;
        match first {
            // RFC 9147 §4.1: alert, handshake and ack are DTLSPlaintext.
            21 | 22 | 26 => self.plaintext(),
            b if b & FIXED_MASK == FIXED_BITS => self.ciphertext(b),
            // Anything else (including the DTLS 1.2 types 20, 23, 24 and 25) is rejected as a
            // deprotection failure; with no length to skip by, the rest of the datagram goes.
            _ => self.fail(),
        }
    }
}

/// Splits a datagram into DTLS 1.3 records (RFC 9147 §4.1). Iteration stops at the first
/// malformed record (unknown first byte, a CID, a truncated header or a length running past
/// the datagram) and the rest is dropped (§4.5.2: invalid records are silently discarded);
/// [`Records13::hit_malformed`] tells afterwards. Never allocates.
pub fn split_datagram13(datagram: &[u8]) -> Records13<'_> {
    split_datagram13_cid(datagram, 0)
}

/// Like [`split_datagram13`] for a receiver that issued CIDs of `cid_len` bytes (RFC 9147 §4,
/// §9): a DTLSCiphertext header with the C bit carries that many CID bytes after its first
/// byte. `cid_len` 0: no CID negotiated, a record with the C bit is malformed. Whether the CID
/// is one this receiver issued is the caller's check ([`CiphertextRecord::cid`]).
pub fn split_datagram13_cid(datagram: &[u8], cid_len: usize) -> Records13<'_> {
    Records13 { datagram, pos: 0, malformed: false, cid_len: cid_len.min(MAX_CID_LEN) }
}

/// The CID a datagram's first record carries if it is a DTLSCiphertext record with the C bit
/// (RFC 9147 §4) and CIDs are `cid_len` bytes long: what an endpoint looks an association up
/// by. A DTLS 1.3 unified header's first byte (32..=63) never equals a DTLS 1.2 content type,
/// so both versions' CID records can share one index.
pub fn first_record_cid13(datagram: &[u8], cid_len: usize) -> Option<&[u8]> {
    let first = *datagram.first()?;
    if cid_len == 0 || first & FIXED_MASK != FIXED_BITS || first & C_BIT == 0 {
        return None;
    }
    datagram.get(1..1 + cid_len)
}

/// Appends a DTLSPlaintext record (RFC 9147 §4): legacy_record_version {254, 253}, the low 16
/// bits of `epoch`, a 48-bit sequence number.
///
/// # Panics
/// As [`crate::record::encode_plaintext`]: on a payload longer than 65535 bytes or a sequence
/// number beyond 2^48 - 1 (RFC 9147 §4: plaintext records MUST NOT exceed it).
pub fn encode_plaintext13(content_type: ContentType, epoch: u64, seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    crate::record::encode_plaintext(content_type, ProtocolVersion::DTLS1_2, epoch as u16, seq, payload, out);
}

/// The full sequence number closest to `highest_received + 1` whose low bits equal `wire`
/// (RFC 9147 §4.2.2, the RECOMMENDED method; the same arithmetic as RFC 9000 Appendix A.3).
/// `highest_received` is the highest sequence number deprotected in the epoch so far, `None`
/// before the first.
pub fn reconstruct_seq(highest_received: Option<u64>, wire: u16, seq_len: SeqLen) -> u64 {
    let win = 1u64 << seq_len.bits();
    let half = win / 2;
    let mask = win - 1;
    let expected = highest_received.map_or(0, |h| h.saturating_add(1));
    let candidate = (expected & !mask) | (u64::from(wire) & mask);
    if candidate.checked_add(half).is_some_and(|c| c <= expected) && candidate.checked_add(win).is_some() {
        candidate + win
    } else if candidate > expected.saturating_add(half) && candidate >= win {
        candidate - win
    } else {
        candidate
    }
}

/// The full epoch for a header's two epoch bits (RFC 9147 §4.2.2): the most recent of
/// `candidates` (the epochs the receiver holds keys for) whose low two bits match, or `None`
/// (treat as a deprotection failure, RFC 9147 §6.1 "unknown epoch").
///
/// During the handshake the candidates are among 0..=3 and the bits are unambiguous; after it,
/// picking the highest match is "the most recent past epoch which has matching bits".
pub fn reconstruct_epoch(epoch_bits: u8, candidates: impl IntoIterator<Item = u64>) -> Option<u64> {
    candidates.into_iter().filter(|e| (*e & 3) as u8 == epoch_bits & EPOCH_MASK).max()
}

/// A deprotected record.
#[derive(Clone, PartialEq, Eq)]
pub struct Opened13 {
    /// The reconstructed 64-bit sequence number.
    pub seq: u64,
    /// The true content type, from the inner plaintext.
    pub content_type: ContentType,
    /// The content, padding removed.
    pub plaintext: Vec<u8>,
}

impl fmt::Debug for Opened13 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened13")
            .field("seq", &self.seq)
            .field("content_type", &self.content_type)
            .field("len", &self.plaintext.len())
            .finish()
    }
}

/// Why a DTLSCiphertext record was not accepted. Every case means "discard silently"
/// (RFC 9147 §4.5.2); they differ in what the caller must count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpenError13 {
    /// Shorter than 16 or longer than 2^14 + 256 bytes (RFC 9147 §4.2.3, RFC 8446 §5.2), or
    /// the header bytes do not match the header.
    Malformed,
    /// The epoch bits do not belong to this epoch.
    WrongEpoch,
    /// The AEAD rejected the record: counts against the key's integrity limit
    /// (RFC 9147 §4.5.3).
    Authentication,
    /// The record authenticated but its inner plaintext is unusable: all zeros, an invalid
    /// content type, or content longer than 2^14 (RFC 8446 §5.2, §5.4; RFC 9147 §4.1).
    InvalidInner,
    /// Authenticated, but its sequence number was already received or is left of the window
    /// (RFC 9147 §4.5.1).
    Replay,
}

impl fmt::Display for OpenError13 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed DTLS 1.3 record",
            Self::WrongEpoch => "record of another epoch",
            Self::Authentication => "record failed authentication",
            Self::InvalidInner => "invalid inner plaintext",
            Self::Replay => "replayed record",
        })
    }
}

impl std::error::Error for OpenError13 {}

/// The record number encryption cipher of one epoch and direction (RFC 9147 §4.2.3).
///
/// An association keeps one per live epoch and direction (three when idle: epoch 3 both ways
/// and, for a while, epoch-2 receiving), so its size is most of an idle association's heap.
/// With AES instructions the 16-byte key is kept and expanded per record (one AES-128 key
/// expansion, tens of nanoseconds, beside the record's AEAD) as the RustCrypto provider does
/// for CCM-8's own key; without them the expansion is the bitsliced software one, so the
/// encryption-only schedule is kept (never the decryption half: the mask only encrypts).
enum SnCipher {
    /// `Mask = AES-ECB(sn_key, Ciphertext[0..15])`, the key expanded per record.
    AesKey(Zeroizing<[u8; 16]>),
    /// The same with the key schedule kept (no AES instructions).
    Aes(Box<Aes128Enc>),
    /// `Mask = ChaCha20(sn_key, Ciphertext[0..3], Ciphertext[4..15])`. Boxed so that the
    /// AES forms, the usual ones for constrained peers, do not pay for the longer key inline.
    ChaCha(Box<Zeroizing<[u8; 32]>>),
}

impl SnCipher {
    fn new(alg: AeadAlgorithm, sn_key: &[u8]) -> Result<Self, CryptoError> {
        Ok(match alg {
            AeadAlgorithm::Aes128Gcm | AeadAlgorithm::Aes128Ccm8 if crate::crypto::rustcrypto::aes_instructions() => {
                Self::AesKey(Zeroizing::new(sn_key.try_into().map_err(|_| CryptoError)?))
            }
            AeadAlgorithm::Aes128Gcm | AeadAlgorithm::Aes128Ccm8 => {
                Self::Aes(Box::new(Aes128Enc::new_from_slice(sn_key).map_err(|_| CryptoError)?))
            }
            AeadAlgorithm::ChaCha20Poly1305 => {
                let key: [u8; 32] = sn_key.try_into().map_err(|_| CryptoError)?;
                Self::ChaCha(Box::new(Zeroizing::new(key)))
            }
        })
    }

    /// The first 16 mask bytes for a ciphertext sample.
    fn mask(&self, sample: &[u8; 16]) -> [u8; 16] {
        match self {
            Self::AesKey(key) => {
                let key: &aes::cipher::Key<Aes128Enc> = (&**key).into();
                let mut block = aes::Block::from(*sample);
                Aes128Enc::new(key).encrypt_block(&mut block);
                block.into()
            }
            Self::Aes(aes) => {
                let mut block = aes::Block::from(*sample);
                aes.encrypt_block(&mut block);
                block.into()
            }
            Self::ChaCha(key) => {
                // The block counter is the first four bytes read little-endian, as in QUIC
                // (RFC 9001 §5.4.4); RFC 9147 adopted QUIC's construction (spec-notes B.1).
                let counter = u32::from_le_bytes([sample[0], sample[1], sample[2], sample[3]]);
                let mut nonce = [0u8; 12];
                nonce.copy_from_slice(&sample[4..]);
                // Borrowed as an `Array`, not copied, so no unwiped copy of the key is left behind.
                let key: &chacha20::Key = (&***key).into();
                let mut core = ChaChaCore::<R20, Ietf>::new(key, &nonce.into());
                // Set the block position on the core and take exactly one block: the stream
                // wrapper refuses counter 2^32 - 1 (it counts no blocks left after it), which a
                // peer can put in any record.
                core.set_block_pos(counter);
                let mut block = Default::default();
                core.write_keystream_block(&mut block);
                let mut mask = [0u8; 16];
                mask.copy_from_slice(&block[..16]);
                mask
            }
        }
    }
}

/// Protection of DTLSCiphertext records under one traffic secret (one epoch, one direction):
/// the AEAD, the 12-byte IV and the record number encryption key. Keeps no sequence state;
/// see [`SendEpoch13`] / [`ReceiveEpoch13`] for that.
pub struct RecordProtection13 {
    alg: AeadAlgorithm,
    aead: Box<dyn RecordAead>,
    iv: Zeroizing<[u8; 12]>,
    sn: SnCipher,
}

impl fmt::Debug for RecordProtection13 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordProtection13").field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl RecordProtection13 {
    /// Keys record protection from a traffic secret's keys.
    pub fn new(provider: &dyn CryptoProvider, keys: &TrafficKeys) -> Result<Self, CryptoError> {
        let alg = keys.algorithm();
        Ok(Self {
            alg,
            aead: provider.aead(alg, keys.key())?,
            iv: Zeroizing::new(*keys.iv()),
            sn: SnCipher::new(alg, keys.sn_key())?,
        })
    }

    /// The AEAD this state uses.
    pub fn algorithm(&self) -> AeadAlgorithm {
        self.alg
    }

    /// Length of the inner plaintext for `plaintext_len` content bytes: content, type byte, and
    /// the zero padding that brings the encrypted record to 16 bytes (RFC 9147 §4.2.3: senders
    /// MUST pad; only CCM_8, with its 8-byte tag, ever needs it).
    fn inner_len(&self, plaintext_len: usize) -> usize {
        (plaintext_len + 1).max(MIN_ENCRYPTED_RECORD_LEN.saturating_sub(self.alg.tag_len()))
    }

    /// Size of the record [`RecordProtection13::seal`] appends for `plaintext_len` bytes.
    pub fn sealed_len(&self, plaintext_len: usize, style: HeaderStyle) -> usize {
        style.header_len() + self.inner_len(plaintext_len) + self.alg.tag_len()
    }

    /// The most content that fits in a record of at most `space` bytes (0 if not even an empty
    /// record fits), capped at 2^14.
    pub fn max_plaintext_len(&self, space: usize, style: HeaderStyle) -> usize {
        let fixed = style.header_len() + 1 + self.alg.tag_len();
        if space < self.sealed_len(0, style) {
            return 0;
        }
        (space - fixed).min(MAX_PLAINTEXT_LEN)
    }

    /// `iv XOR (0^4 || seq64)` (RFC 8446 §5.3). Unlike DTLS 1.2 the epoch is not in the nonce
    /// (RFC 9147 §4): each epoch has its own key.
    fn nonce(&self, seq: u64) -> [u8; 12] {
        let mut nonce = *self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        nonce
    }

    /// Appends one DTLSCiphertext record to `out`: unified header, then the AEAD-sealed
    /// `DTLSInnerPlaintext { content, type, zeros }`, then record number encryption over the
    /// header's sequence number (RFC 9147 §4, §4.2.3).
    ///
    /// The header carries the low 2 bits of `epoch` and the low 8 or 16 bits of `seq`; the
    /// additional data is the header as sent before record number encryption. Fails, leaving
    /// `out` as it was, if `plaintext` is longer than 2^14 bytes (RFC 8446 §5.1) or the AEAD
    /// fails.
    pub fn seal(
        &self,
        epoch: u64,
        seq: u64,
        content_type: ContentType,
        plaintext: &[u8],
        out: &mut Vec<u8>,
        style: HeaderStyle,
    ) -> Result<(), CryptoError> {
        self.seal_cid(epoch, seq, content_type, plaintext, out, style, &[])
    }

    /// [`RecordProtection13::seal`] with the receiver's `cid` in the header (RFC 9147 §4: the
    /// C bit, the CID after the first byte; none when `cid` is empty). The CID is in the AEAD
    /// additional data, the whole header being; record number encryption masks only the
    /// sequence number after it (§4.2.3). Fails on a CID longer than 255 bytes.
    #[allow(clippy::too_many_arguments)]
    pub fn seal_cid(
        &self,
        epoch: u64,
        seq: u64,
        content_type: ContentType,
        plaintext: &[u8],
        out: &mut Vec<u8>,
        style: HeaderStyle,
        cid: &[u8],
    ) -> Result<(), CryptoError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN || cid.len() > MAX_CID_LEN {
            return Err(CryptoError);
        }
        let inner_len = self.inner_len(plaintext.len());
        let tag_len = self.alg.tag_len();
        let encrypted_len = inner_len + tag_len;
        let start = out.len();
        out.reserve(style.header_len() + cid.len() + encrypted_len);

        let mut first = FIXED_BITS | (epoch as u8 & EPOCH_MASK);
        if !cid.is_empty() {
            first |= C_BIT;
        }
        if style.seq_len == SeqLen::Bits16 {
            first |= S_BIT;
        }
        if style.length {
            first |= L_BIT;
        }
        out.push(first);
        out.extend_from_slice(cid);
        match style.seq_len {
            SeqLen::Bits8 => out.push(seq as u8),
            SeqLen::Bits16 => out.extend_from_slice(&(seq as u16).to_be_bytes()),
        }
        if style.length {
            // At most 2^14 + 256 + 16, well inside u16.
            out.extend_from_slice(&(encrypted_len as u16).to_be_bytes());
        }
        let body = out.len();
        out.extend_from_slice(plaintext);
        out.push(content_type.into());
        out.resize(body + encrypted_len, 0);

        let nonce = self.nonce(seq);
        let (header, record) = out[start..].split_at_mut(body - start);
        let (ciphertext, tag) = record.split_at_mut(inner_len);
        if let Err(e) = self.aead.seal_in_place_detached(&nonce, header, ciphertext, tag) {
            out.truncate(start);
            return Err(e);
        }
        // Record number encryption comes after the AEAD: the mask is taken from the ciphertext
        // (RFC 9147 §4.2.3).
        let mut sample = [0u8; 16];
        sample.copy_from_slice(&out[body..body + 16]);
        let mask = self.sn.mask(&sample);
        for (i, m) in mask.iter().take(style.seq_len.byte_len()).enumerate() {
            out[start + 1 + cid.len() + i] ^= m;
        }
        Ok(())
    }

    /// Removes record number encryption, reconstructs the sequence number against
    /// `highest_received` (the highest deprotected in this epoch, [`reconstruct_seq`]),
    /// authenticates and decrypts, and strips the padding (RFC 9147 §4, §4.2.2, §4.2.3;
    /// RFC 8446 §5.2, §5.4).
    ///
    /// Does not check the epoch bits or replays: [`ReceiveEpoch13::open`] does.
    pub fn open(&self, record: &CiphertextRecord<'_>, highest_received: Option<u64>) -> Result<Opened13, OpenError13> {
        let encrypted = record.encrypted_record;
        // RFC 9147 §4.2.3: shorter records MUST be rejected as failing deprotection.
        if encrypted.len() < MIN_ENCRYPTED_RECORD_LEN || encrypted.len() > MAX_ENCRYPTED_RECORD_LEN {
            return Err(OpenError13::Malformed);
        }
        let cid_len = record.cid.len();
        let header_len = record.header.style().header_len() + cid_len;
        if record.header_bytes.len() != header_len
            || cid_len > MAX_CID_LEN
            || (record.header_bytes[0] & C_BIT != 0) != (cid_len > 0)
            || record.header_bytes[1..1 + cid_len] != *record.cid
        {
            return Err(OpenError13::Malformed);
        }
        // The additional data is the header as sent, CID included (RFC 9147 §4).
        let mut header = [0u8; MAX_HEADER_LEN + MAX_CID_LEN];
        let header = &mut header[..header_len];
        header.copy_from_slice(record.header_bytes);

        let mut sample = [0u8; 16];
        sample.copy_from_slice(&encrypted[..16]);
        let mask = self.sn.mask(&sample);
        let at = 1 + cid_len;
        for (i, m) in mask.iter().take(record.header.seq_len.byte_len()).enumerate() {
            header[at + i] ^= m;
        }
        let wire = match record.header.seq_len {
            SeqLen::Bits8 => u16::from(header[at]),
            SeqLen::Bits16 => u16::from_be_bytes([header[at], header[at + 1]]),
        };
        let seq = reconstruct_seq(highest_received, wire, record.header.seq_len);

        let ciphertext_len = encrypted.len() - self.alg.tag_len();
        let (ciphertext, tag) = encrypted.split_at(ciphertext_len);
        let mut inner = ciphertext.to_vec();
        self.aead
            .open_in_place_detached(&self.nonce(seq), header, &mut inner, tag)
            .map_err(|_| OpenError13::Authentication)?;

        // RFC 8446 §5.4: the content type is the last non-zero byte; a record of zeros only
        // is an error.
        let type_at = inner.iter().rposition(|b| *b != 0).ok_or(OpenError13::InvalidInner)?;
        let content_type = ContentType::from(inner[type_at]);
        inner.truncate(type_at);
        // RFC 9147 §4.1: inside DTLSCiphertext only these content types exist.
        let known = matches!(
            content_type,
            ContentType::Alert
                | ContentType::Handshake
                | ContentType::ApplicationData
                | ContentType::Heartbeat
                | ContentType::Ack
        );
        if !known || inner.len() > MAX_PLAINTEXT_LEN {
            return Err(OpenError13::InvalidInner);
        }
        Ok(Opened13 { seq, content_type, plaintext: inner })
    }
}

/// AEAD usage limits of one key (RFC 9147 §4.5.3, RFC 8446 §5.5 / RFC 9846 §5.5).
///
/// | AEAD | records protected (confidentiality) | failed authentications (integrity) |
/// |---|---|---|
/// | AES-128-GCM | 2^24.5 (RFC 8446 §5.5) | 2^36 (RFC 9147 §4.5.3) |
/// | ChaCha20-Poly1305 | none: the sequence number runs out first (RFC 8446 §5.5) | 2^36 (RFC 9147 §4.5.3) |
/// | AES-128-CCM_8 | 2^23 (RFC 9147 App. A.1, A.3) | 2^7 (RFC 9147 App. A.3) |
///
/// CCM_8's 64-bit tag makes 2^7 the forgery budget that keeps TLS's margin; RFC 9147 §4.5.3
/// says CCM_8 "MUST NOT be used in DTLS without additional safeguards against forgery" and
/// implementations "MUST set usage limits ... based on an understanding of any additional
/// forgery protections". The default here is that 2^7; a deployment with such safeguards can
/// raise it with [`AeadLimits::with_integrity_limit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AeadLimits {
    confidentiality_limit: u64,
    integrity_limit: u64,
    sent: u64,
    auth_failures: u64,
}

impl AeadLimits {
    /// The default limits for `alg`, with both counters at zero.
    pub fn new(alg: AeadAlgorithm) -> Self {
        Self {
            confidentiality_limit: Self::default_confidentiality_limit(alg),
            integrity_limit: Self::default_integrity_limit(alg),
            sent: 0,
            auth_failures: 0,
        }
    }

    /// Replaces the integrity limit (for CCM_8 under extra forgery protection, RFC 9147 §4.5.3).
    pub fn with_integrity_limit(mut self, limit: u64) -> Self {
        self.integrity_limit = limit;
        self
    }

    /// Records that may be protected with one key.
    pub const fn default_confidentiality_limit(alg: AeadAlgorithm) -> u64 {
        match alg {
            // 2^24.5, rounded down.
            AeadAlgorithm::Aes128Gcm => 23_726_566,
            AeadAlgorithm::ChaCha20Poly1305 => u64::MAX,
            AeadAlgorithm::Aes128Ccm8 => 1 << 23,
        }
    }

    /// Records that may fail authentication under one key.
    pub const fn default_integrity_limit(alg: AeadAlgorithm) -> u64 {
        match alg {
            AeadAlgorithm::Aes128Gcm | AeadAlgorithm::ChaCha20Poly1305 => 1 << 36,
            AeadAlgorithm::Aes128Ccm8 => 1 << 7,
        }
    }

    /// The confidentiality limit in force.
    pub fn confidentiality_limit(&self) -> u64 {
        self.confidentiality_limit
    }

    /// The integrity limit in force.
    pub fn integrity_limit(&self) -> u64 {
        self.integrity_limit
    }

    /// Records protected so far.
    pub fn records_sent(&self) -> u64 {
        self.sent
    }

    /// Records that failed authentication so far.
    pub fn auth_failures(&self) -> u64 {
        self.auth_failures
    }

    /// Whether another record may be protected: false once the confidentiality limit is
    /// reached (RFC 9846 §5.5: close or update keys before it).
    pub fn may_send(&self) -> bool {
        self.sent < self.confidentiality_limit
    }

    /// Counts a protected record; returns [`AeadLimits::key_update_due`].
    pub fn record_sent(&mut self) -> bool {
        self.sent = self.sent.saturating_add(1);
        self.key_update_due()
    }

    /// Counts a record that failed authentication; returns whether the key must be retired
    /// (RFC 9147 §4.5.3: close the connection, or drop these keys if a key update is under
    /// way). True once the count reaches the limit: one more attempt would exceed it.
    pub fn record_auth_failed(&mut self) -> bool {
        self.auth_failures = self.auth_failures.saturating_add(1);
        self.integrity_exhausted()
    }

    /// Whether the integrity limit has been reached.
    pub fn integrity_exhausted(&self) -> bool {
        self.auth_failures >= self.integrity_limit
    }

    /// Whether a KeyUpdate should be started now (RFC 9147 §4.5.3: "SHOULD initiate a key
    /// update ... before reaching this limit", with update_requested for the integrity limit):
    /// at 7/8 of the confidentiality limit or half the integrity limit, leaving room for the
    /// update to complete.
    pub fn key_update_due(&self) -> bool {
        let c = self.confidentiality_limit;
        self.sent >= c - c / 8 || self.auth_failures >= self.integrity_limit.div_ceil(2)
    }
}

/// Sending state of one epoch: keys, the next sequence number and the usage limits. Only the
/// sending half of [`AeadLimits`] is kept (the records sent are the next sequence number): an
/// idle association holds one of these per direction.
#[derive(Debug)]
pub struct SendEpoch13 {
    epoch: u64,
    protection: RecordProtection13,
    next_seq: u64,
    confidentiality_limit: u64,
}

impl SendEpoch13 {
    /// A fresh epoch; sequence numbers start at 0 (RFC 9147 §4.2).
    pub fn new(epoch: u64, protection: RecordProtection13) -> Self {
        let confidentiality_limit = AeadLimits::default_confidentiality_limit(protection.algorithm());
        Self { epoch, protection, next_seq: 0, confidentiality_limit }
    }

    /// Replaces the default limits; a sending epoch uses only the confidentiality limit.
    pub fn with_limits(mut self, limits: AeadLimits) -> Self {
        self.confidentiality_limit = limits.confidentiality_limit();
        self
    }

    /// The full epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The record protection.
    pub fn protection(&self) -> &RecordProtection13 {
        &self.protection
    }

    /// The usage counters.
    pub fn limits(&self) -> AeadLimits {
        AeadLimits {
            confidentiality_limit: self.confidentiality_limit,
            integrity_limit: AeadLimits::default_integrity_limit(self.protection.algorithm()),
            sent: self.next_seq,
            auth_failures: 0,
        }
    }

    /// Whether a KeyUpdate should be started ([`AeadLimits::key_update_due`]).
    pub fn key_update_due(&self) -> bool {
        self.limits().key_update_due()
    }

    /// Seals the next record (see [`RecordProtection13::seal`]) and returns its sequence
    /// number, for ACK bookkeeping. Fails without consuming a sequence number if the
    /// confidentiality limit is reached or the sequence space is exhausted (RFC 9147 §4.2.1:
    /// never wrap; rekey first).
    pub fn seal(
        &mut self,
        content_type: ContentType,
        plaintext: &[u8],
        out: &mut Vec<u8>,
        style: HeaderStyle,
    ) -> Result<u64, CryptoError> {
        self.seal_cid(content_type, plaintext, out, style, &[])
    }

    /// [`SendEpoch13::seal`] with the receiver's `cid` in the header
    /// ([`RecordProtection13::seal_cid`]).
    pub fn seal_cid(
        &mut self,
        content_type: ContentType,
        plaintext: &[u8],
        out: &mut Vec<u8>,
        style: HeaderStyle,
        cid: &[u8],
    ) -> Result<u64, CryptoError> {
        if self.next_seq >= self.confidentiality_limit || self.next_seq == u64::MAX {
            return Err(CryptoError);
        }
        let seq = self.next_seq;
        self.protection.seal_cid(self.epoch, seq, content_type, plaintext, out, style, cid)?;
        self.next_seq += 1;
        Ok(seq)
    }
}

/// Receiving state of one epoch: keys, the highest deprotected sequence number, the replay
/// window (RFC 9147 §4.5.1: one per epoch) and the failed-authentication counter.
#[derive(Debug)]
pub struct ReceiveEpoch13 {
    epoch: u64,
    protection: RecordProtection13,
    /// Also gives the highest sequence number deprotected: a record is marked exactly when
    /// it deprotected.
    replay: ReplayWindow,
    /// The receiving half of [`AeadLimits`].
    integrity_limit: u64,
    auth_failures: u64,
}

impl ReceiveEpoch13 {
    /// A fresh epoch with an empty window.
    pub fn new(epoch: u64, protection: RecordProtection13) -> Self {
        let integrity_limit = AeadLimits::default_integrity_limit(protection.algorithm());
        Self { epoch, protection, replay: ReplayWindow::default(), integrity_limit, auth_failures: 0 }
    }

    /// Replaces the default limits (e.g. a raised CCM_8 integrity limit); a receiving epoch
    /// uses only the integrity limit.
    pub fn with_limits(mut self, limits: AeadLimits) -> Self {
        self.integrity_limit = limits.integrity_limit();
        self
    }

    /// The full epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The highest sequence number deprotected so far.
    pub fn highest_received(&self) -> Option<u64> {
        self.replay.highest()
    }

    /// The usage counters.
    pub fn limits(&self) -> AeadLimits {
        AeadLimits {
            confidentiality_limit: AeadLimits::default_confidentiality_limit(self.protection.algorithm()),
            integrity_limit: self.integrity_limit,
            sent: 0,
            auth_failures: self.auth_failures,
        }
    }

    /// Whether this key has seen as many failed authentications as its integrity limit allows
    /// and must be retired (RFC 9147 §4.5.3).
    pub fn must_retire(&self) -> bool {
        self.auth_failures >= self.integrity_limit
    }

    /// Opens a record of this epoch. The replay window is consulted and updated only after the
    /// record deprotected (RFC 9147 §4.5.1); a failed authentication is counted
    /// ([`ReceiveEpoch13::must_retire`] tells when the limit is reached). Nothing else changes
    /// on failure (RFC 9147 §4.5.2).
    pub fn open(&mut self, record: &CiphertextRecord<'_>) -> Result<Opened13, OpenError13> {
        if record.header.epoch_bits != (self.epoch as u8 & EPOCH_MASK) {
            return Err(OpenError13::WrongEpoch);
        }
        let opened = match self.protection.open(record, self.replay.highest()) {
            Err(OpenError13::Authentication) => {
                self.auth_failures = self.auth_failures.saturating_add(1);
                return Err(OpenError13::Authentication);
            }
            other => other?,
        };
        if !self.replay.check(opened.seq) {
            return Err(OpenError13::Replay);
        }
        self.replay.mark(opened.seq);
        Ok(opened)
    }
}

#[cfg(test)]
mod tests;
