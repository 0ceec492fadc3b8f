//! DTLS 1.2 record layer (RFC 6347 §4.1): 13-byte headers, epochs, 48-bit sequence numbers,
//! several records per datagram, AEAD protection, and the anti-replay window. (STUB API)

use crate::codec::{ContentType, ProtocolVersion};
use crate::crypto::{AeadAlgorithm, CryptoError, CryptoProvider};

/// Largest sequence number representable in 48 bits.
pub const MAX_SEQ: u64 = (1 << 48) - 1;

/// The DTLS 1.2 record header (RFC 6347 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// type
    pub content_type: ContentType,
    /// version
    pub version: ProtocolVersion,
    /// epoch
    pub epoch: u16,
    /// sequence_number (48 bits)
    pub sequence_number: u64,
    /// length of the fragment that follows
    pub length: u16,
}

impl RecordHeader {
    /// Encoded size.
    pub const LEN: usize = 13;
}

/// One record as found in a datagram, fragment still protected if epoch > 0.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// The header.
    pub header: RecordHeader,
    /// The fragment bytes (exactly `header.length` of them).
    pub fragment: &'a [u8],
}

/// Splits a datagram into records (RFC 6347 §4.1.1). Iteration stops at the first record
/// whose header is truncated or whose length runs past the datagram: the rest is dropped.
pub fn split_datagram(datagram: &[u8]) -> impl Iterator<Item = RawRecord<'_>> {
    let _ = datagram;
    std::iter::empty()
}

/// Appends a plaintext (epoch 0) record to `out`.
pub fn encode_plaintext(content_type: ContentType, version: ProtocolVersion, epoch: u16, seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    let _ = (content_type, version, epoch, seq, payload, out);
    todo!()
}

/// Protection state for one direction of one epoch.
pub struct RecordProtection {
    _alg: AeadAlgorithm,
}

impl std::fmt::Debug for RecordProtection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordProtection").finish_non_exhaustive()
    }
}

impl RecordProtection {
    /// Keys one direction: `key` and `fixed_iv` come from the key block (RFC 5246 §6.3).
    pub fn new(provider: &dyn CryptoProvider, alg: AeadAlgorithm, key: &[u8], fixed_iv: &[u8]) -> Result<Self, CryptoError> {
        let _ = (provider, key, fixed_iv);
        Ok(Self { _alg: alg })
    }
    /// Bytes a protected record adds beyond its plaintext, header included.
    pub fn overhead(&self) -> usize {
        todo!()
    }
    /// Appends a complete protected record (header, explicit nonce, ciphertext, tag) to `out`.
    pub fn seal(&self, content_type: ContentType, version: ProtocolVersion, epoch: u16, seq: u64, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let _ = (content_type, version, epoch, seq, plaintext, out);
        todo!()
    }
    /// Authenticates and decrypts a record's fragment; returns the plaintext.
    pub fn open(&self, header: &RecordHeader, fragment: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let _ = (header, fragment);
        todo!()
    }
}

/// Sliding anti-replay window of 64 records (RFC 6347 §4.1.2.6).
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    _p: (),
}

impl ReplayWindow {
    /// Whether `seq` would be fresh. Does not change the window.
    pub fn check(&self, seq: u64) -> bool {
        let _ = seq;
        todo!()
    }
    /// Marks `seq` as received; call only after the record authenticated.
    pub fn mark(&mut self, seq: u64) {
        let _ = seq;
        todo!()
    }
}
