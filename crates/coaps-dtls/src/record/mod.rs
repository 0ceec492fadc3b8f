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

/// One DTLS 1.2 record as found in a datagram of an association that may use Connection IDs:
/// a `tls12_cid` record (RFC 9146 §4) carries its CID between the sequence number and the
/// length; any other record has an empty `cid`.
#[derive(Debug, Clone, Copy)]
pub struct CidRecord<'a> {
    /// The header (`content_type` is [`ContentType::Tls12Cid`] for a CID record; the real
    /// type is inside the encryption envelope).
    pub header: RecordHeader,
    /// The CID of a `tls12_cid` record, empty otherwise.
    pub cid: &'a [u8],
    /// The fragment bytes (exactly `header.length` of them).
    pub fragment: &'a [u8],
}

/// Splits a datagram into records like [`split_datagram`], reading `tls12_cid` records
/// (RFC 9146 §4) with a CID of `cid_len` bytes: the CID length is not on the wire, the
/// receiver knows the length of the CIDs it issued. With `cid_len` 0 a `tls12_cid` record
/// cannot be delimited (its CID has one or more bytes), so it ends the datagram, as any
/// malformed record does (RFC 6347 §4.1.2.7).
pub fn split_datagram_cid(datagram: &[u8], cid_len: usize) -> impl Iterator<Item = CidRecord<'_>> {
    let mut r = Reader::new(datagram);
    let mut done = false;
    std::iter::from_fn(move || {
        if done || r.is_empty() {
            return None;
        }
        let next = read_cid_record(&mut r, cid_len);
        done = next.is_none();
        next
    })
}

fn read_cid_record<'a>(r: &mut Reader<'a>, cid_len: usize) -> Option<CidRecord<'a>> {
    let content_type = ContentType::read(r).ok()?;
    let version = ProtocolVersion::read(r).ok()?;
    let epoch = r.u16("DTLSCiphertext.epoch").ok()?;
    let sequence_number = r.u48("DTLSCiphertext.sequence_number").ok()?;
    let cid: &[u8] = if content_type == ContentType::Tls12Cid {
        if cid_len == 0 {
            return None;
        }
        r.take(cid_len, "DTLSCiphertext.cid").ok()?
    } else {
        &[]
    };
    let length = r.u16("DTLSCiphertext.length").ok()?;
    let fragment = r.take(usize::from(length), "DTLSCiphertext.enc_content").ok()?;
    Some(CidRecord { header: RecordHeader { content_type, version, epoch, sequence_number, length }, cid, fragment })
}

/// The CID a datagram's first record carries, if it is a `tls12_cid` record whose CID is
/// `cid_len` bytes long (RFC 9146 §4): what an endpoint looks an association up by.
pub fn first_record_cid(datagram: &[u8], cid_len: usize) -> Option<&[u8]> {
    if cid_len == 0 || datagram.first() != Some(&u8::from(ContentType::Tls12Cid)) {
        return None;
    }
    datagram.get(11..11 + cid_len)
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

/// Record protection with a Connection ID (RFC 9146 §4, §5).
impl RecordProtection {
    /// Bytes a protected `tls12_cid` record adds beyond its content: header with the CID,
    /// explicit nonce, tag and the inner `real_type` byte (padding not counted).
    pub fn overhead_cid(&self, cid_len: usize) -> usize {
        self.overhead() + cid_len + 1
    }

    /// Appends a protected `tls12_cid` record (RFC 9146 §4): `content || real_type ||
    /// zeros[padding]` sealed with the RFC 9146 §5.3 additional data, the CID in the header.
    ///
    /// Fails, leaving `out` as it was, if `seq` exceeds [`MAX_SEQ`], `cid` is empty or longer
    /// than 255 bytes, or the DTLSInnerPlaintext would exceed 2^14 bytes (RFC 9146 §5).
    #[allow(clippy::too_many_arguments)]
    pub fn seal_cid(
        &self,
        real_type: ContentType,
        version: ProtocolVersion,
        epoch: u16,
        seq: u64,
        cid: &[u8],
        content: &[u8],
        padding: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let inner_len = content.len() + 1 + padding;
        if seq > MAX_SEQ || cid.is_empty() || cid.len() > 255 || inner_len > MAX_PLAINTEXT_LEN {
            return Err(CryptoError);
        }
        let explicit_len = self.alg.explicit_nonce_len();
        let tag_len = self.alg.tag_len();
        let fragment_len = explicit_len + inner_len + tag_len;
        let length = u16::try_from(fragment_len).map_err(|_| CryptoError)?;
        let seq_num = seq_num(epoch, seq);

        let start = out.len();
        out.reserve(RecordHeader::LEN + cid.len() + fragment_len);
        ContentType::Tls12Cid.encode(out);
        version.encode(out);
        out.extend_from_slice(&seq_num.to_be_bytes());
        out.extend_from_slice(cid);
        out.extend_from_slice(&length.to_be_bytes());
        let explicit = seq_num.to_be_bytes();
        out.extend_from_slice(&explicit[..explicit_len]);
        let body = out.len();
        out.extend_from_slice(content);
        out.push(real_type.into());
        out.resize(body + inner_len + tag_len, 0);

        let aad = additional_data_cid(version, epoch, seq, cid, inner_len);
        let nonce = self.nonce(seq_num, &explicit[..explicit_len]);
        let (ciphertext, tag) = out[body..].split_at_mut(inner_len);
        if let Err(e) = self.aead.seal_in_place_detached(&nonce, &aad, ciphertext, tag) {
            out.truncate(start);
            return Err(e);
        }
        Ok(())
    }

    /// Authenticates and decrypts a `tls12_cid` record (RFC 9146 §4, §5.3); returns the real
    /// content type and the content, padding removed.
    ///
    /// Fails on a fragment too short for the explicit nonce and tag, a DTLSInnerPlaintext
    /// longer than 2^14 + 1 bytes (a full 2^14 content plus its type, as peers send it), any
    /// authentication failure, and an inner plaintext of zeros only (no real_type; RFC 8446
    /// §5.4 makes that an unexpected_message, here the record is dropped).
    pub fn open_cid(
        &self,
        header: &RecordHeader,
        cid: &[u8],
        fragment: &[u8],
    ) -> Result<(ContentType, Vec<u8>), CryptoError> {
        let explicit_len = self.alg.explicit_nonce_len();
        let tag_len = self.alg.tag_len();
        let inner_len = fragment.len().checked_sub(explicit_len + tag_len).ok_or(CryptoError)?;
        if inner_len > MAX_PLAINTEXT_LEN + 1 || header.sequence_number > MAX_SEQ || cid.is_empty() || cid.len() > 255 {
            return Err(CryptoError);
        }
        let (explicit, rest) = fragment.split_at(explicit_len);
        let (ciphertext, tag) = rest.split_at(inner_len);
        let aad = additional_data_cid(header.version, header.epoch, header.sequence_number, cid, inner_len);
        let nonce = self.nonce(header.seq_num(), explicit);
        let mut inner = ciphertext.to_vec();
        self.aead.open_in_place_detached(&nonce, &aad, &mut inner, tag)?;
        let type_at = inner.iter().rposition(|&b| b != 0).ok_or(CryptoError)?;
        let real_type = ContentType::from(inner[type_at]);
        inner.truncate(type_at);
        Ok((real_type, inner))
    }
}

/// RFC 9146 §5.3: `seq_num_placeholder(8 × 0xff) || tls12_cid || cid_length || tls12_cid ||
/// version || epoch || sequence_number || cid || length_of_DTLSInnerPlaintext`. The
/// placeholder and the doubled type keep it apart from any RFC 6347 additional data.
fn additional_data_cid(version: ProtocolVersion, epoch: u16, seq: u64, cid: &[u8], inner_len: usize) -> Vec<u8> {
    let mut aad = Vec::with_capacity(23 + cid.len());
    aad.extend_from_slice(&[0xff; 8]);
    let cid_type = u8::from(ContentType::Tls12Cid);
    aad.push(cid_type);
    // Callers refuse CIDs longer than 255 bytes.
    aad.push(cid.len() as u8);
    aad.push(cid_type);
    aad.extend_from_slice(&version.0.to_be_bytes());
    aad.extend_from_slice(&seq_num(epoch, seq).to_be_bytes());
    aad.extend_from_slice(cid);
    // Callers cap inner_len at 2^14 + 1, so it fits.
    aad.extend_from_slice(&(inner_len as u16).to_be_bytes());
    aad
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
