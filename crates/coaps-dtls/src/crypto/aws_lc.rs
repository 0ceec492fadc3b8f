//! The fast provider (cargo feature `aws-lc`), on aws-lc-rs: ECDH and ECDSA on P-256 in
//! AWS-LC's assembly (what rustls uses by default), AES-128-GCM and ChaCha20-Poly1305,
//! HMAC/HKDF and SHA-256.
//!
//! AWS-LC has no AES-CCM in aws-lc-rs, so AES-128-CCM-8 records (the CoAP default suite,
//! RFC 7252 §9.1.3.2.1) stay on the RustCrypto implementation.

use std::sync::Arc;

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, ECDH_P256, PrivateKey, UnparsedPublicKey};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use aws_lc_rs::{digest, hmac};
use zeroize::Zeroizing;

use super::rustcrypto::{self, RustCrypto};
use super::{AeadAlgorithm, CryptoError, CryptoProvider, EcdhKeyPair, HashContext, RecordAead, Rng, SigningKey};

/// Length of an uncompressed P-256 point: 0x04 || X || Y (RFC 8422 §5.4).
const UNCOMPRESSED_POINT_LEN: usize = 65;

/// How many 32-byte draws [`AwsLc::ecdh_p256`] makes before giving up (as the RustCrypto
/// provider: a uniform draw is out of range with probability about 2^-32).
const SCALAR_ATTEMPTS: usize = 8;

/// The [`CryptoProvider`] on aws-lc-rs.
#[derive(Debug, Default, Clone, Copy)]
pub struct AwsLc;

impl CryptoProvider for AwsLc {
    fn name(&self) -> &'static str {
        "aws-lc"
    }

    fn aead(&self, alg: AeadAlgorithm, key: &[u8]) -> Result<Box<dyn RecordAead>, CryptoError> {
        if key.len() != alg.key_len() {
            return Err(CryptoError);
        }
        let lc_alg = match alg {
            AeadAlgorithm::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
            AeadAlgorithm::Aes128Gcm => &aead::AES_128_GCM,
            AeadAlgorithm::Aes128Ccm8 => return RustCrypto.aead(alg, key),
        };
        let key = UnboundKey::new(lc_alg, key).map_err(|_| CryptoError)?;
        Ok(Box::new(LcAead(LessSafeKey::new(key))))
    }

    fn hmac_sha256(&self, key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, key);
        let mut ctx = hmac::Context::with_key(&key);
        for p in parts {
            ctx.update(p);
        }
        to32(ctx.sign().as_ref())
    }

    fn sha256(&self) -> Box<dyn HashContext> {
        Box::new(LcSha256(digest::Context::new(&digest::SHA256)))
    }

    fn sha256_parts(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for p in parts {
            ctx.update(p);
        }
        to32(ctx.finish().as_ref())
    }

    fn chacha20_poly1305_seal_once(
        &self,
        key: &[u8; 32],
        nonce: &[u8; 12],
        buf: &mut [u8],
        tag_out: &mut [u8; 16],
    ) -> Result<(), CryptoError> {
        // The stateless cookie gate runs this for every spoofed ClientHello and must not
        // allocate (DESIGN "no state before proof"): the RustCrypto one keys ChaCha20 on the
        // stack, which is known to hold; an AWS-LC key has not been checked for that.
        RustCrypto.chacha20_poly1305_seal_once(key, nonce, buf, tag_out)
    }

    fn ecdh_p256(&self, rng: &mut dyn Rng) -> Result<Box<dyn EcdhKeyPair>, CryptoError> {
        let mut candidate = Zeroizing::new([0u8; 32]);
        for _ in 0..SCALAR_ATTEMPTS {
            rng.fill(&mut candidate[..]);
            // Same rejection sampling as the RustCrypto provider (the scalar stays uniform in
            // [1, n-1] and a seeded RNG gives the same key pair with either provider).
            if !rustcrypto::is_valid_p256_scalar(&candidate) {
                continue;
            }
            let secret = PrivateKey::from_private_key(&ECDH_P256, &candidate[..]).map_err(|_| CryptoError)?;
            let public = secret.compute_public_key().map_err(|_| CryptoError)?;
            let public: [u8; UNCOMPRESSED_POINT_LEN] = public.as_ref().try_into().map_err(|_| CryptoError)?;
            return Ok(Box::new(LcKeyPair { secret, public }));
        }
        Err(CryptoError)
    }

    fn ecdsa_p256_verify(&self, public_point: &[u8], msg: &[u8], der_sig: &[u8]) -> Result<(), CryptoError> {
        check_uncompressed(public_point)?;
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, public_point)
            .verify(msg, der_sig)
            .map_err(|_| CryptoError)
    }

    fn ecdsa_p256_signing_key(&self, scalar: &[u8; 32]) -> Result<Arc<dyn SigningKey>, CryptoError> {
        Ok(Arc::new(AwsLcSigningKey::from_bytes(scalar)?))
    }

    fn hkdf_sha256_expand(&self, prk: &[u8; 32], info: &[&[u8]], out: &mut [u8]) -> Result<(), CryptoError> {
        let prk = aws_lc_rs::hkdf::Prk::new_less_safe(aws_lc_rs::hkdf::HKDF_SHA256, prk);
        let okm = prk.expand(info, OutLen(out.len())).map_err(|_| CryptoError)?;
        okm.fill(out).map_err(|_| CryptoError)
    }
}

/// An HKDF output length for aws-lc-rs's `Prk::expand`.
struct OutLen(usize);

impl aws_lc_rs::hkdf::KeyType for OutLen {
    fn len(&self) -> usize {
        self.0
    }
}

fn to32(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(bytes);
    out
}

/// Only the uncompressed form (RFC 8422 §5.1.2), checked here because AWS-LC would also take a
/// compressed point.
fn check_uncompressed(point: &[u8]) -> Result<(), CryptoError> {
    if point.len() != UNCOMPRESSED_POINT_LEN || point[0] != 0x04 {
        return Err(CryptoError);
    }
    Ok(())
}

/// AES-128-GCM or ChaCha20-Poly1305 with a kept key (16-byte tags, 12-byte nonces).
struct LcAead(LessSafeKey);

const TAG_LEN: usize = 16;

impl RecordAead for LcAead {
    fn seal_in_place(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
            .map_err(|_| CryptoError)?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
    }

    fn open_in_place(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        let ct_len = buf.len().checked_sub(TAG_LEN).ok_or(CryptoError)?;
        let (ct, tag) = buf.split_at_mut(ct_len);
        self.open_in_place_detached(nonce, aad, ct, tag)?;
        buf.truncate(ct_len);
        Ok(())
    }

    fn seal_in_place_detached(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag_out: &mut [u8],
    ) -> Result<(), CryptoError> {
        if tag_out.len() != TAG_LEN {
            return Err(CryptoError);
        }
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
            .map_err(|_| CryptoError)?;
        tag_out.copy_from_slice(tag.as_ref());
        Ok(())
    }

    fn open_in_place_detached(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8],
    ) -> Result<(), CryptoError> {
        if tag.len() != TAG_LEN {
            return Err(CryptoError);
        }
        // AWS-LC compares the tag in constant time.
        self.0
            .open_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), tag, buf)
            .map(|_| ())
            .map_err(|_| CryptoError)
    }
}

/// SHA-256 transcript hash.
#[derive(Clone)]
struct LcSha256(digest::Context);

impl HashContext for LcSha256 {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn current(&self) -> [u8; 32] {
        to32(self.0.clone().finish().as_ref())
    }

    fn fork(&self) -> Box<dyn HashContext> {
        Box::new(self.clone())
    }
}

/// An ephemeral ECDH key pair; AWS-LC wipes the scalar when the key is freed.
struct LcKeyPair {
    secret: PrivateKey,
    public: [u8; UNCOMPRESSED_POINT_LEN],
}

impl EcdhKeyPair for LcKeyPair {
    fn public_key(&self) -> &[u8] {
        &self.public
    }

    fn complete(self: Box<Self>, peer_public: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        check_uncompressed(peer_public)?;
        let peer = UnparsedPublicKey::new(&ECDH_P256, peer_public);
        // RFC 8422 §5.10: Z is the 32-byte x-coordinate, leading zeros kept; AWS-LC returns it
        // fixed-length.
        agreement::agree(&self.secret, peer, CryptoError, |z| {
            let z: [u8; 32] = z.try_into().map_err(|_| CryptoError)?;
            Ok(Zeroizing::new(z))
        })
    }
}

/// An ECDSA P-256 private key for TLS signatures on AWS-LC. Unlike
/// [`rustcrypto::EcdsaP256SigningKey`], signatures are randomized (AWS-LC's own RNG), not
/// RFC 6979 deterministic; both are valid ECDSA (RFC 8422 §5.4).
pub struct AwsLcSigningKey {
    key: EcdsaKeyPair,
    spki: Vec<u8>,
    rng: SystemRandom,
}

impl std::fmt::Debug for AwsLcSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsLcSigningKey").finish_non_exhaustive()
    }
}

impl AwsLcSigningKey {
    /// From the raw big-endian scalar; rejects zero and values not below the group order.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, CryptoError> {
        // The RustCrypto key checks the range and gives the public point and SPKI encodings,
        // so both providers present byte-identical public keys.
        let rc = rustcrypto::EcdsaP256SigningKey::from_bytes(bytes)?;
        let key = EcdsaKeyPair::from_private_key_and_public_key(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            bytes,
            &rc.public_point(),
        )
        .map_err(|_| CryptoError)?;
        debug_assert_eq!(key.public_key().as_ref(), &rc.public_point()[..]);
        Ok(Self { key, spki: rc.public_key_spki(), rng: SystemRandom::new() })
    }
}

impl SigningKey for AwsLcSigningKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        // RFC 8422 §5.4: TLS carries the DER `Ecdsa-Sig-Value` (the ASN1 signing algorithm).
        Ok(self.key.sign(&self.rng, msg).map_err(|_| CryptoError)?.as_ref().to_vec())
    }

    fn public_key_spki(&self) -> Vec<u8> {
        self.spki.clone()
    }
}
