//! Cryptography behind a small provider trait, so the state machines do not depend on one
//! implementation. [`rustcrypto::RustCrypto`] is the default provider; with the cargo feature
//! `aws-lc`, `aws_lc::AwsLc` (on aws-lc-rs) is also available and becomes the default that
//! [`providers::default_provider`] and `Config` pick.

#[cfg(feature = "aws-lc")]
pub mod aws_lc;
pub mod prf;
pub mod providers;
mod rng;
pub mod rustcrypto;

pub use rng::{Rng, SeededRng};

use std::fmt;
use std::sync::Arc;
use zeroize::Zeroizing;

/// A cryptographic operation failed. Deliberately opaque (no oracle for attackers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CryptoError;

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cryptographic operation failed")
    }
}
impl std::error::Error for CryptoError {}

/// Record protection algorithms (AEAD only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AeadAlgorithm {
    /// ChaCha20-Poly1305 (RFC 7905): 12-byte implicit IV, no explicit nonce, 16-byte tag.
    ChaCha20Poly1305,
    /// AES-128-CCM with an 8-byte tag (RFC 6655): 4-byte salt + 8-byte explicit nonce.
    Aes128Ccm8,
    /// AES-128-GCM (RFC 5288): 4-byte salt + 8-byte explicit nonce, 16-byte tag.
    Aes128Gcm,
}

impl AeadAlgorithm {
    /// Key length in bytes.
    pub const fn key_len(self) -> usize {
        match self {
            Self::ChaCha20Poly1305 => 32,
            Self::Aes128Ccm8 | Self::Aes128Gcm => 16,
        }
    }
    /// Length of the implicit (fixed) IV taken from the key block.
    pub const fn fixed_iv_len(self) -> usize {
        match self {
            Self::ChaCha20Poly1305 => 12,
            Self::Aes128Ccm8 | Self::Aes128Gcm => 4,
        }
    }
    /// Length of the explicit nonce carried in each record.
    pub const fn explicit_nonce_len(self) -> usize {
        match self {
            Self::ChaCha20Poly1305 => 0,
            Self::Aes128Ccm8 | Self::Aes128Gcm => 8,
        }
    }
    /// Authentication tag length.
    pub const fn tag_len(self) -> usize {
        match self {
            Self::Aes128Ccm8 => 8,
            Self::ChaCha20Poly1305 | Self::Aes128Gcm => 16,
        }
    }
}

/// A keyed AEAD, ready to seal and open records.
pub trait RecordAead: Send + Sync {
    /// Encrypts `buf` in place and appends the tag.
    fn seal_in_place(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError>;
    /// Decrypts `buf` (ciphertext followed by the tag) in place; on success `buf` is truncated
    /// to the plaintext. On failure `buf` content is unspecified.
    fn open_in_place(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError>;

    /// Encrypts `buf` in place and writes the tag to `tag_out`, whose length must be the
    /// algorithm's tag length. Lets the record layer seal straight into an output buffer that
    /// already holds other records.
    ///
    /// The default goes through [`RecordAead::seal_in_place`] with a temporary `Vec`;
    /// providers should override it to avoid that allocation.
    fn seal_in_place_detached(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag_out: &mut [u8],
    ) -> Result<(), CryptoError> {
        let mut tmp = Zeroizing::new(buf.to_vec());
        self.seal_in_place(nonce, aad, &mut tmp)?;
        if tmp.len() != buf.len() + tag_out.len() {
            return Err(CryptoError);
        }
        let (ct, tag) = tmp.split_at(buf.len());
        buf.copy_from_slice(ct);
        tag_out.copy_from_slice(tag);
        Ok(())
    }

    /// Decrypts `buf` in place, authenticating it with `tag`.
    ///
    /// The default goes through [`RecordAead::open_in_place`] with a temporary `Vec`;
    /// providers should override it to avoid that allocation.
    fn open_in_place_detached(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8],
    ) -> Result<(), CryptoError> {
        let mut tmp = Zeroizing::new(Vec::with_capacity(buf.len() + tag.len()));
        tmp.extend_from_slice(buf);
        tmp.extend_from_slice(tag);
        self.open_in_place(nonce, aad, &mut tmp)?;
        if tmp.len() != buf.len() {
            return Err(CryptoError);
        }
        buf.copy_from_slice(&tmp);
        Ok(())
    }
}

/// RFC 5869 §2.3 HKDF-Expand over any provider's HMAC-SHA-256.
fn hkdf_expand_with_hmac<P: CryptoProvider + ?Sized>(
    p: &P,
    prk: &[u8; 32],
    info: &[&[u8]],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    const MAX_PARTS: usize = 16;
    if out.len() > 255 * 32 {
        return Err(CryptoError);
    }
    if info.len() + 2 > MAX_PARTS {
        let joined = info.concat();
        return hkdf_expand_with_hmac(p, prk, &[&joined], out);
    }
    let mut prev = Zeroizing::new([0u8; 32]);
    let mut prev_len = 0;
    for (i, chunk) in out.chunks_mut(32).enumerate() {
        let counter = [(i + 1) as u8];
        let mut parts: [&[u8]; MAX_PARTS] = [&[]; MAX_PARTS];
        parts[0] = &prev[..prev_len];
        parts[1..=info.len()].copy_from_slice(info);
        parts[info.len() + 1] = &counter;
        let t = p.hmac_sha256(prk, &parts[..info.len() + 2]);
        *prev = t;
        prev_len = 32;
        chunk.copy_from_slice(&prev[..chunk.len()]);
    }
    Ok(())
}

/// An incremental SHA-256 for transcripts.
pub trait HashContext: Send + Sync {
    /// Absorbs bytes.
    fn update(&mut self, data: &[u8]);
    /// The hash of everything absorbed so far; the context stays usable.
    fn current(&self) -> [u8; 32];
    /// A copy of the context.
    fn fork(&self) -> Box<dyn HashContext>;
}

/// An ephemeral P-256 key pair for one handshake (never reused, RFC 9846 §1.2).
pub trait EcdhKeyPair: Send + Sync {
    /// The uncompressed public point, 65 bytes (0x04 || X || Y).
    fn public_key(&self) -> &[u8];
    /// Completes ECDH with the peer's uncompressed point. Rejects anything but a valid
    /// 65-byte uncompressed point (RFC 8422 §5.11) and returns Z, the 32-byte x-coordinate
    /// with leading zeros kept (RFC 8422 §5.10).
    fn complete(self: Box<Self>, peer_public: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError>;
}

/// An ECDSA P-256 private key able to make TLS signatures.
pub trait SigningKey: Send + Sync {
    /// Signs `msg` with ECDSA P-256/SHA-256; returns the DER `Ecdsa-Sig-Value`.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError>;
    /// The SubjectPublicKeyInfo (DER) of the public half, for raw public key mode.
    fn public_key_spki(&self) -> Vec<u8>;
}

/// The cryptographic operations the engine needs.
pub trait CryptoProvider: Send + Sync + fmt::Debug {
    /// A keyed AEAD for `alg`. `key.len()` must equal `alg.key_len()`.
    fn aead(&self, alg: AeadAlgorithm, key: &[u8]) -> Result<Box<dyn RecordAead>, CryptoError>;
    /// HMAC-SHA-256 over the concatenation of `parts`.
    fn hmac_sha256(&self, key: &[u8], parts: &[&[u8]]) -> [u8; 32];
    /// A fresh SHA-256 context.
    fn sha256(&self) -> Box<dyn HashContext>;
    /// A fresh ephemeral P-256 key pair, drawing its scalar from `rng`.
    fn ecdh_p256(&self, rng: &mut dyn Rng) -> Result<Box<dyn EcdhKeyPair>, CryptoError>;
    /// Verifies a DER ECDSA P-256/SHA-256 signature with an uncompressed (65-byte) public point.
    fn ecdsa_p256_verify(&self, public_point: &[u8], msg: &[u8], der_sig: &[u8]) -> Result<(), CryptoError>;

    /// A short name for logs and bench labels ("rustcrypto", "aws-lc").
    fn name(&self) -> &'static str {
        "custom"
    }

    /// An ECDSA P-256 signing key from its raw big-endian scalar (zero and values not below the
    /// group order are rejected). The default fails: a provider that signs overrides it (both
    /// built-in ones do).
    fn ecdsa_p256_signing_key(&self, scalar: &[u8; 32]) -> Result<Arc<dyn SigningKey>, CryptoError> {
        let _ = scalar;
        Err(CryptoError)
    }

    /// `HKDF-Extract(salt, IKM)` with HMAC-SHA-256 (RFC 5869 §2.2), which is
    /// `HMAC-Hash(salt, IKM)`; the default computes exactly that with
    /// [`CryptoProvider::hmac_sha256`].
    fn hkdf_sha256_extract(&self, salt: &[u8], ikm: &[u8]) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.hmac_sha256(salt, &[ikm]))
    }

    /// `HKDF-Expand(PRK, info, out.len())` with HMAC-SHA-256 (RFC 5869 §2.3), `info` being the
    /// concatenation of `info`'s parts. Fails if `out` is longer than 255 × 32 bytes.
    ///
    /// The default runs the RFC's `T(i) = HMAC(PRK, T(i-1) | info | i)` loop on
    /// [`CryptoProvider::hmac_sha256`], without allocating for up to 14 info parts.
    fn hkdf_sha256_expand(&self, prk: &[u8; 32], info: &[&[u8]], out: &mut [u8]) -> Result<(), CryptoError> {
        hkdf_expand_with_hmac(self, prk, info, out)
    }

    /// SHA-256 over the concatenation of `parts`, in one call.
    ///
    /// The stateless cookie gate hashes every ClientHello it answers with a HelloRetryRequest
    /// (RFC 9147 §5.1) and must not allocate per answer (DESIGN "no state before proof"). The
    /// default goes through a boxed [`CryptoProvider::sha256`] context; providers should
    /// override it.
    fn sha256_parts(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut h = self.sha256();
        for p in parts {
            h.update(p);
        }
        h.current()
    }

    /// ChaCha20-Poly1305 with a one-off `key`: encrypts `buf` in place (no associated data)
    /// and writes the 16-byte tag to `tag_out`.
    ///
    /// The DTLS 1.3 cookie uses the ChaCha20 keystream of this construction (see
    /// [`crate::gate::cookie::CookieKeys::generate13`]) for every cookie it makes or opens. The
    /// default keys a boxed [`CryptoProvider::aead`]; providers should override it so the
    /// stateless gate allocates nothing.
    fn chacha20_poly1305_seal_once(
        &self,
        key: &[u8; 32],
        nonce: &[u8; 12],
        buf: &mut [u8],
        tag_out: &mut [u8; 16],
    ) -> Result<(), CryptoError> {
        self.aead(AeadAlgorithm::ChaCha20Poly1305, key)?.seal_in_place_detached(nonce, &[], buf, tag_out)
    }
}
