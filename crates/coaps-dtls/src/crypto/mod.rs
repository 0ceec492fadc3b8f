//! Cryptography behind a small provider trait, so a faster provider can be added later
//! without touching the state machines. [`rustcrypto::RustCrypto`] is the default provider.

pub mod prf;
mod rng;
pub mod rustcrypto;

pub use rng::{Rng, SeededRng};

use std::fmt;
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
