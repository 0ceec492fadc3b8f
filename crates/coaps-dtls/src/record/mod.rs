//! DTLS 1.2 record layer (RFC 6347 §4.1): 13-byte headers, epochs, 48-bit sequence numbers,
//! several records per datagram, AEAD protection, and the anti-replay window.

use zeroize::Zeroizing;

use crate::codec::{ContentType, ProtocolVersion, Reader};
use crate::crypto::{AeadAlgorithm, CryptoError, CryptoProvider, RecordAead};

/// Largest sequence number representable in 48 bits.
pub const MAX_SEQ: u64 = (1 << 48) - 1;

/// Largest plaintext a record may carry: 2^14 bytes (RFC 5246 §6.2.1, §6.2.3).
pub const MAX_PLAINTEXT_LEN: usize = 1 << 14;

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

    /// Decodes a header from the start of `r`.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, crate::codec::InvalidMessage> {
        Ok(Self {
            content_type: ContentType::read(r)?,
            version: ProtocolVersion::read(r)?,
            epoch: r.u16("DTLSPlaintext.epoch")?,
            sequence_number: r.u48("DTLSPlaintext.sequence_number")?,
            length: r.u16("DTLSPlaintext.length")?,
        })
    }

    /// Appends the 13 header bytes. Only the low 48 bits of `sequence_number` are written.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_header(out, self.content_type, self.version, self.epoch, self.sequence_number, self.length);
    }

    /// The 64-bit `seq_num` of the MAC and AEAD inputs: epoch(16) || sequence_number(48)
    /// (RFC 6347 §4.1.2.1).
    pub fn seq_num(&self) -> u64 {
        seq_num(self.epoch, self.sequence_number)
    }
}

fn seq_num(epoch: u16, seq: u64) -> u64 {
    (u64::from(epoch) << 48) | (seq & MAX_SEQ)
}

fn put_header(
    out: &mut Vec<u8>,
    content_type: ContentType,
    version: ProtocolVersion,
    epoch: u16,
    seq: u64,
    length: u16,
) {
    content_type.encode(out);
    version.encode(out);
    // epoch || sequence_number is exactly the big-endian 64-bit seq_num.
    out.extend_from_slice(&seq_num(epoch, seq).to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
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
    let mut r = Reader::new(datagram);
    let mut done = false;
    std::iter::from_fn(move || {
        if done || r.is_empty() {
            return None;
        }
        let next = RecordHeader::read(&mut r).and_then(|header| {
            let fragment = r.take(usize::from(header.length), "DTLSPlaintext.fragment")?;
            Ok(RawRecord { header, fragment })
        });
        // A bad length leaves no way to find the next record boundary, so everything after
        // it is dropped (RFC 6347 §4.1.2.7: invalid records are silently discarded).
        done = next.is_err();
        next.ok()
    })
}

/// Appends a plaintext (epoch 0) record to `out`.
///
/// # Panics
/// If `payload` is longer than 65535 bytes or `seq` exceeds [`MAX_SEQ`]: both are caller
/// bugs (records carry at most [`MAX_PLAINTEXT_LEN`] bytes, RFC 5246 §6.2.1, and the sequence
/// number must never wrap, RFC 6347 §4.1).
pub fn encode_plaintext(
    content_type: ContentType,
    version: ProtocolVersion,
    epoch: u16,
    seq: u64,
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    let length = u16::try_from(payload.len()).expect("record payload longer than 65535 bytes");
    assert!(seq <= MAX_SEQ, "record sequence number beyond 2^48 - 1");
    debug_assert!(payload.len() <= MAX_PLAINTEXT_LEN, "record payload longer than 2^14");
    out.reserve(RecordHeader::LEN + payload.len());
    put_header(out, content_type, version, epoch, seq, length);
    out.extend_from_slice(payload);
}

/// Protection state for one direction of one epoch.
pub struct RecordProtection {
    alg: AeadAlgorithm,
    aead: Box<dyn RecordAead>,
    /// The implicit IV from the key block: all 12 nonce bytes for ChaCha20 (RFC 7905 §2), the
    /// 4-byte salt for AES-GCM / AES-CCM (RFC 5288 §3, RFC 6655 §3), zero-padded.
    fixed_iv: Zeroizing<[u8; 12]>,
}

impl std::fmt::Debug for RecordProtection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordProtection").field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl RecordProtection {
    /// Keys one direction: `key` and `fixed_iv` come from the key block (RFC 5246 §6.3).
    pub fn new(
        provider: &dyn CryptoProvider,
        alg: AeadAlgorithm,
        key: &[u8],
        fixed_iv: &[u8],
    ) -> Result<Self, CryptoError> {
        if key.len() != alg.key_len() || fixed_iv.len() != alg.fixed_iv_len() {
            return Err(CryptoError);
        }
        let mut iv = Zeroizing::new([0u8; 12]);
        iv[..fixed_iv.len()].copy_from_slice(fixed_iv);
        Ok(Self { alg, aead: provider.aead(alg, key)?, fixed_iv: iv })
    }

    /// The AEAD this state uses.
    pub fn algorithm(&self) -> AeadAlgorithm {
        self.alg
    }

    /// Bytes a protected record adds beyond its plaintext, header included.
    pub fn overhead(&self) -> usize {
        RecordHeader::LEN + self.alg.explicit_nonce_len() + self.alg.tag_len()
    }

    /// The 12-byte AEAD nonce. `explicit` is the record's explicit nonce (empty for ChaCha20).
    fn nonce(&self, seq_num: u64, explicit: &[u8]) -> [u8; 12] {
        let mut nonce = *self.fixed_iv;
        match self.alg {
            // RFC 7905 §2: the padded 64-bit sequence number XOR the 12-byte IV.
            AeadAlgorithm::ChaCha20Poly1305 => {
                for (n, s) in nonce[4..].iter_mut().zip(seq_num.to_be_bytes()) {
                    *n ^= s;
                }
            }
            // RFC 5288 §3 / RFC 6655 §3: salt(4) || nonce_explicit(8).
            AeadAlgorithm::Aes128Ccm8 | AeadAlgorithm::Aes128Gcm => nonce[4..].copy_from_slice(explicit),
        }
        nonce
    }

    /// Appends a complete protected record (header, explicit nonce, ciphertext, tag) to `out`.
    ///
    /// Fails, leaving `out` as it was, if `seq` exceeds [`MAX_SEQ`] (the nonce would repeat,
    /// RFC 6347 §4.1) or `plaintext` is longer than [`MAX_PLAINTEXT_LEN`] (RFC 5246 §6.2.1).
    pub fn seal(
        &self,
        content_type: ContentType,
        version: ProtocolVersion,
        epoch: u16,
        seq: u64,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        if seq > MAX_SEQ || plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(CryptoError);
        }
        let explicit_len = self.alg.explicit_nonce_len();
        let tag_len = self.alg.tag_len();
        let fragment_len = explicit_len + plaintext.len() + tag_len;
        let length = u16::try_from(fragment_len).map_err(|_| CryptoError)?;
        let seq_num = seq_num(epoch, seq);

        let start = out.len();
        out.reserve(RecordHeader::LEN + fragment_len);
        put_header(out, content_type, version, epoch, seq, length);
        // The explicit nonce only has to be unique per key (RFC 5288 §3); epoch || seq is, and
        // it is what other DTLS stacks send too.
        let explicit = seq_num.to_be_bytes();
        out.extend_from_slice(&explicit[..explicit_len]);
        let body = out.len();
        out.extend_from_slice(plaintext);
        out.resize(body + plaintext.len() + tag_len, 0);

        let aad = additional_data(seq_num, content_type, version, plaintext.len());
        let nonce = self.nonce(seq_num, &explicit[..explicit_len]);
        let (ciphertext, tag) = out[body..].split_at_mut(plaintext.len());
        if let Err(e) = self.aead.seal_in_place_detached(&nonce, &aad, ciphertext, tag) {
            out.truncate(start);
            return Err(e);
        }
        Ok(())
    }

    /// Authenticates and decrypts a record's fragment; returns the plaintext.
    ///
    /// The plaintext length is derived from `fragment.len()`; `header.length` is not consulted
    /// (for records from [`split_datagram`] the two agree). Fails on a fragment too short to
    /// hold the explicit nonce and tag, on a plaintext longer than [`MAX_PLAINTEXT_LEN`]
    /// (record_overflow, RFC 5246 §6.2.3), and on any authentication failure.
    pub fn open(&self, header: &RecordHeader, fragment: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let explicit_len = self.alg.explicit_nonce_len();
        let tag_len = self.alg.tag_len();
        let plaintext_len = fragment.len().checked_sub(explicit_len + tag_len).ok_or(CryptoError)?;
        if plaintext_len > MAX_PLAINTEXT_LEN || header.sequence_number > MAX_SEQ {
            return Err(CryptoError);
        }
        let (explicit, rest) = fragment.split_at(explicit_len);
        let (ciphertext, tag) = rest.split_at(plaintext_len);
        let seq_num = header.seq_num();
        let aad = additional_data(seq_num, header.content_type, header.version, plaintext_len);
        let nonce = self.nonce(seq_num, explicit);
        let mut plaintext = ciphertext.to_vec();
        self.aead.open_in_place_detached(&nonce, &aad, &mut plaintext, tag)?;
        Ok(plaintext)
    }
}

/// `additional_data = seq_num(8) || type(1) || version(2) || length(2)` with the DTLS
/// epoch || sequence_number as seq_num and the plaintext length (RFC 5246 §6.2.3.3,
/// RFC 6347 §4.1.2.1).
fn additional_data(
    seq_num: u64,
    content_type: ContentType,
    version: ProtocolVersion,
    plaintext_len: usize,
) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&seq_num.to_be_bytes());
    aad[8] = content_type.into();
    aad[9..11].copy_from_slice(&version.0.to_be_bytes());
    // Callers cap plaintext_len at 2^14, so it fits.
    aad[11..].copy_from_slice(&(plaintext_len as u16).to_be_bytes());
    aad
}

/// Sliding anti-replay window of 64 records (RFC 6347 §4.1.2.6).
///
/// The right edge is the highest sequence number marked so far; bit `i` of the bitmap stands
/// for `right_edge - i`. Anything more than 63 below the right edge counts as a replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    /// Highest marked sequence number; meaningful only once `any` is set.
    right_edge: u64,
    bitmap: u64,
    any: bool,
}

impl ReplayWindow {
    /// Window size, the RFC 6347 §4.1.2.6 preferred default.
    pub const SIZE: u64 = 64;

    /// The highest sequence number marked so far.
    pub fn highest(&self) -> Option<u64> {
        self.any.then_some(self.right_edge)
    }

    /// Whether `seq` would be fresh. Does not change the window.
    pub fn check(&self, seq: u64) -> bool {
        if !self.any || seq > self.right_edge {
            return true;
        }
        let offset = self.right_edge - seq;
        offset < Self::SIZE && self.bitmap & (1 << offset) == 0
    }

    /// Marks `seq` as received; call only after the record authenticated (RFC 6347
    /// §4.1.2.6), otherwise forged records could slide the window.
    pub fn mark(&mut self, seq: u64) {
        if !self.any {
            self.any = true;
            self.right_edge = seq;
            self.bitmap = 1;
        } else if seq > self.right_edge {
            let shift = seq - self.right_edge;
            self.bitmap = if shift >= Self::SIZE { 0 } else { self.bitmap << shift };
            self.bitmap |= 1;
            self.right_edge = seq;
        } else {
            let offset = self.right_edge - seq;
            if offset < Self::SIZE {
                self.bitmap |= 1 << offset;
            }
        }
    }
}

#[cfg(test)]
mod tests;
