//! The default provider, on RustCrypto crates: ChaCha20-Poly1305, AES-128-CCM-8, AES-128-GCM,
//! HMAC-SHA-256, SHA-256, ECDH and ECDSA on P-256.

use std::fmt;

use aes::{Aes128, Aes128Enc};
use aes_gcm::Aes128Gcm;
use ccm::Ccm;
use ccm::consts::{U8, U12};
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::array::Array;
use chacha20poly1305::aead::{AeadCore, AeadInOut, KeyInit};
use hmac::{Hmac, Mac};
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{AeadAlgorithm, CryptoError, CryptoProvider, EcdhKeyPair, HashContext, RecordAead, Rng, SigningKey};

/// AES-128-CCM with an 8-byte tag and a 12-byte nonce (RFC 6655 §3: L = 3).
type Aes128Ccm8 = Ccm<Aes128, U8, U12>;

/// Length of an uncompressed P-256 point: 0x04 || X || Y (RFC 8422 §5.4).
const UNCOMPRESSED_POINT_LEN: usize = 65;

/// How many 32-byte draws [`RustCrypto::ecdh_p256`] makes before giving up. A uniformly random
/// draw is out of range with probability about 2^-32, so failing this many times means the
/// injected RNG is broken, not unlucky.
const SCALAR_ATTEMPTS: usize = 8;

/// The default [`CryptoProvider`], built on the pure-Rust RustCrypto crates.
#[derive(Debug, Default, Clone, Copy)]
pub struct RustCrypto;

impl CryptoProvider for RustCrypto {
    fn name(&self) -> &'static str {
        "rustcrypto"
    }

    fn ecdsa_p256_signing_key(&self, scalar: &[u8; 32]) -> Result<std::sync::Arc<dyn SigningKey>, CryptoError> {
        Ok(std::sync::Arc::new(EcdsaP256SigningKey::from_bytes(scalar)?))
    }

    fn hkdf_sha256_extract(&self, salt: &[u8], ikm: &[u8]) -> Zeroizing<[u8; 32]> {
        let (prk, _) = hkdf::Hkdf::<Sha256>::extract(Some(salt), ikm);
        Zeroizing::new(prk.into())
    }

    fn hkdf_sha256_expand(&self, prk: &[u8; 32], info: &[&[u8]], out: &mut [u8]) -> Result<(), CryptoError> {
        // The hkdf crate keys HMAC once per call (inner and outer pads hashed once), where the
        // generic loop on `hmac_sha256` would key it again for every 32-byte block.
        let hkdf = hkdf::Hkdf::<Sha256>::from_prk(prk).map_err(|_| CryptoError)?;
        hkdf.expand_multi_info(info, out).map_err(|_| CryptoError)
    }

    fn aead(&self, alg: AeadAlgorithm, key: &[u8]) -> Result<Box<dyn RecordAead>, CryptoError> {
        if key.len() != alg.key_len() {
            return Err(CryptoError);
        }
        Ok(match alg {
            AeadAlgorithm::ChaCha20Poly1305 => {
                Box::new(Keyed(ChaCha20Poly1305::new_from_slice(key).map_err(|_| CryptoError)?))
            }
            AeadAlgorithm::Aes128Ccm8 if aes_instructions() => Box::new(Ccm8PerRecord::new(key)?),
            AeadAlgorithm::Aes128Ccm8 => Box::new(Keyed(Aes128Ccm8::new_from_slice(key).map_err(|_| CryptoError)?)),
            AeadAlgorithm::Aes128Gcm => Box::new(Keyed(Aes128Gcm::new_from_slice(key).map_err(|_| CryptoError)?)),
        })
    }

    fn hmac_sha256(&self, key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = new_hmac(key);
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    fn sha256(&self) -> Box<dyn HashContext> {
        Box::new(Sha256Context(Sha256::new()))
    }

    fn sha256_parts(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut h = Sha256::new();
        for p in parts {
            Digest::update(&mut h, p);
        }
        h.finalize().into()
    }

    fn chacha20_poly1305_seal_once(
        &self,
        key: &[u8; 32],
        nonce: &[u8; 12],
        buf: &mut [u8],
        tag_out: &mut [u8; 16],
    ) -> Result<(), CryptoError> {
        let cipher = ChaCha20Poly1305::new_from_slice(key).map_err(|_| CryptoError)?;
        let tag = cipher.encrypt_inout_detached(&Array::from(*nonce), &[], buf.into()).map_err(|_| CryptoError)?;
        tag_out.copy_from_slice(&tag);
        Ok(())
    }

    fn ecdh_p256(&self, rng: &mut dyn Rng) -> Result<Box<dyn EcdhKeyPair>, CryptoError> {
        let mut candidate = Zeroizing::new([0u8; 32]);
        for _ in 0..SCALAR_ATTEMPTS {
            rng.fill(&mut candidate[..]);
            // Rejection sampling: out-of-range or zero draws are discarded, not reduced, so the
            // scalar stays uniform in [1, n-1].
            if let Ok(secret) = p256::SecretKey::from_bytes(&p256::FieldBytes::from(*candidate)) {
                let mut public = [0u8; UNCOMPRESSED_POINT_LEN];
                public.copy_from_slice(secret.public_key().to_sec1_point(false).as_bytes());
                return Ok(Box::new(P256KeyPair { secret, public }));
            }
        }
        Err(CryptoError)
    }

    fn ecdsa_p256_verify(&self, public_point: &[u8], msg: &[u8], der_sig: &[u8]) -> Result<(), CryptoError> {
        use p256::ecdsa::signature::Verifier;
        let key = parse_uncompressed_point(public_point)?;
        let key = p256::ecdsa::VerifyingKey::from(key);
        let sig = p256::ecdsa::DerSignature::from_bytes(der_sig).map_err(|_| CryptoError)?;
        key.verify(msg, &sig).map_err(|_| CryptoError)
    }
}

/// Whether `bytes` is a P-256 scalar in [1, n-1] (big-endian), the range a private key must be in.
#[cfg(feature = "aws-lc")]
pub(crate) fn is_valid_p256_scalar(bytes: &[u8; 32]) -> bool {
    p256::SecretKey::from_bytes(&p256::FieldBytes::from(*bytes)).is_ok()
}

fn new_hmac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length (RFC 2104 §2: long keys are hashed, short ones padded).
    match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA-256 accepts keys of every length"),
    }
}

/// Accepts only the uncompressed form (RFC 8422 §5.1.2: the other formats are deprecated)
/// and a point on the curve other than the identity (RFC 8422 §5.11).
fn parse_uncompressed_point(bytes: &[u8]) -> Result<p256::PublicKey, CryptoError> {
    if bytes.len() != UNCOMPRESSED_POINT_LEN || bytes[0] != 0x04 {
        return Err(CryptoError);
    }
    p256::PublicKey::from_sec1_bytes(bytes).map_err(|_| CryptoError)
}

/// Whether the CPU has AES instructions (AES-NI, ARMv8 AES), which the `aes` crate uses when
/// present: with them an AES-128 key expansion costs tens of nanoseconds.
pub(crate) fn aes_instructions() -> bool {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        std::is_x86_feature_detected!("aes")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64")))]
    {
        false
    }
}

/// AES-128-CCM-8 keeping only the 16-byte key and expanding the AES key schedule for each
/// record, used when the CPU has AES instructions. An `aes::Aes128` is 704 bytes whatever the
/// backend (it must be able to hold the bitsliced software schedule), and an association keeps
/// one per direction: with kept schedules an idle CCM-8 association takes about 2.3 KB, with
/// this about 0.95 KB (`cargo bench --bench association_memory`). The price, measured with
/// AES-NI: about 70 ns per record (seal or open), some 2–3 % of the server CPU of a CoAP
/// request/response. Without AES instructions the expansion is a bitsliced software one, so
/// [`Keyed`] keeps the schedule there.
struct Ccm8PerRecord(Zeroizing<[u8; 16]>);

impl Ccm8PerRecord {
    fn new(key: &[u8]) -> Result<Self, CryptoError> {
        Ok(Self(Zeroizing::new(key.try_into().map_err(|_| CryptoError)?)))
    }

    /// Encryption-only AES: CCM never runs the block cipher backwards, so the inverse key
    /// schedule is not worth computing.
    fn keyed(&self) -> Keyed<Ccm<Aes128Enc, U8, U12>> {
        Keyed(Ccm::new(&Array::from(*self.0)))
    }
}

impl RecordAead for Ccm8PerRecord {
    fn seal_in_place(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.keyed().seal_in_place(nonce, aad, buf)
    }

    fn open_in_place(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.keyed().open_in_place(nonce, aad, buf)
    }

    fn seal_in_place_detached(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag_out: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.keyed().seal_in_place_detached(nonce, aad, buf, tag_out)
    }

    fn open_in_place_detached(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8],
    ) -> Result<(), CryptoError> {
        self.keyed().open_in_place_detached(nonce, aad, buf, tag)
    }
}

/// One keyed AEAD of any of the three suites; all use 12-byte nonces.
struct Keyed<A>(A);

impl<A> Keyed<A>
where
    A: AeadInOut + AeadCore<NonceSize = U12>,
{
    fn tag_len() -> usize {
        use chacha20poly1305::aead::array::typenum::Unsigned;
        A::TagSize::USIZE
    }
}

impl<A> RecordAead for Keyed<A>
where
    A: AeadInOut + AeadCore<NonceSize = U12> + Send + Sync,
{
    fn seal_in_place(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        let tag = self
            .0
            .encrypt_inout_detached(&Array::from(*nonce), aad, buf.as_mut_slice().into())
            .map_err(|_| CryptoError)?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    fn open_in_place(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        let ct_len = buf.len().checked_sub(Self::tag_len()).ok_or(CryptoError)?;
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
        if tag_out.len() != Self::tag_len() {
            return Err(CryptoError);
        }
        let tag = self.0.encrypt_inout_detached(&Array::from(*nonce), aad, buf.into()).map_err(|_| CryptoError)?;
        tag_out.copy_from_slice(&tag);
        Ok(())
    }

    fn open_in_place_detached(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8],
    ) -> Result<(), CryptoError> {
        // The crates compare tags in constant time (ctutils / subtle) and wipe the output on
        // failure.
        let tag = Array::try_from(tag).map_err(|_| CryptoError)?;
        self.0.decrypt_inout_detached(&Array::from(*nonce), aad, buf.into(), &tag).map_err(|_| CryptoError)
    }
}

/// SHA-256 transcript hash.
#[derive(Clone)]
struct Sha256Context(Sha256);

impl HashContext for Sha256Context {
    fn update(&mut self, data: &[u8]) {
        Digest::update(&mut self.0, data);
    }

    fn current(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }

    fn fork(&self) -> Box<dyn HashContext> {
        Box::new(self.clone())
    }
}

/// An ephemeral ECDH key pair. `SecretKey` wipes the scalar on drop.
struct P256KeyPair {
    secret: p256::SecretKey,
    public: [u8; UNCOMPRESSED_POINT_LEN],
}

impl EcdhKeyPair for P256KeyPair {
    fn public_key(&self) -> &[u8] {
        &self.public
    }

    fn complete(self: Box<Self>, peer_public: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let peer = parse_uncompressed_point(peer_public)?;
        let shared = self.secret.diffie_hellman(&peer);
        // RFC 8422 §5.10: the premaster secret is the x-coordinate, fixed length, leading zeros
        // kept; `raw_secret_bytes` is exactly that 32-byte big-endian field element.
        let mut z = Zeroizing::new([0u8; 32]);
        z.copy_from_slice(shared.raw_secret_bytes());
        Ok(z)
    }
}

/// An ECDSA P-256 private key for TLS signatures (RFC 8422 §5.4, ecdsa_secp256r1_sha256).
/// Signing is deterministic (RFC 6979), so it needs no RNG.
pub struct EcdsaP256SigningKey {
    key: p256::ecdsa::SigningKey,
    spki: Vec<u8>,
}

impl fmt::Debug for EcdsaP256SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcdsaP256SigningKey").finish_non_exhaustive()
    }
}

impl EcdsaP256SigningKey {
    /// From a DER PKCS #8 `PrivateKeyInfo` (RFC 5208 / RFC 5958) holding a P-256 key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        Self::from_key(p256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(|_| CryptoError)?)
    }

    /// From a DER SEC 1 `ECPrivateKey` (RFC 5915), as found in "EC PRIVATE KEY" PEM blocks.
    pub fn from_sec1_der(der: &[u8]) -> Result<Self, CryptoError> {
        let secret = p256::SecretKey::from_sec1_der(der).map_err(|_| CryptoError)?;
        Self::from_key(p256::ecdsa::SigningKey::from(&secret))
    }

    /// From the raw big-endian scalar; rejects zero and values not below the group order.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, CryptoError> {
        let field = Zeroizing::new(p256::FieldBytes::from(*bytes));
        Self::from_key(p256::ecdsa::SigningKey::from_bytes(&field).map_err(|_| CryptoError)?)
    }

    fn from_key(key: p256::ecdsa::SigningKey) -> Result<Self, CryptoError> {
        let spki = key.verifying_key().to_public_key_der().map_err(|_| CryptoError)?.as_bytes().to_vec();
        Ok(Self { key, spki })
    }

    /// The public key as an uncompressed point (0x04 || X || Y), the form
    /// [`CryptoProvider::ecdsa_p256_verify`] takes.
    pub fn public_point(&self) -> [u8; 65] {
        let mut out = [0u8; UNCOMPRESSED_POINT_LEN];
        out.copy_from_slice(self.key.verifying_key().to_sec1_point(false).as_bytes());
        out
    }
}

impl SigningKey for EcdsaP256SigningKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        use p256::ecdsa::signature::Signer;
        // RFC 8422 §5.4: TLS carries the DER `Ecdsa-Sig-Value`, not the raw r || s.
        let sig: p256::ecdsa::DerSignature = self.key.try_sign(msg).map_err(|_| CryptoError)?;
        Ok(sig.as_bytes().to_vec())
    }

    fn public_key_spki(&self) -> Vec<u8> {
        self.spki.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SeededRng;
    use crate::crypto::providers::all_providers;

    /// Runs a known-answer check against every provider of this build (RustCrypto, and
    /// aws-lc-rs with the `aws-lc` feature).
    fn each_provider(check: impl Fn(&dyn CryptoProvider)) {
        for p in all_providers() {
            eprintln!("provider {}", p.name());
            check(&*p);
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// An RNG that replays fixed bytes, to steer scalar generation.
    struct FixedRng(Vec<u8>);
    impl Rng for FixedRng {
        fn fill(&mut self, buf: &mut [u8]) {
            let n = buf.len();
            buf.copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
        }
    }

    #[test]
    fn sha256_known_answer_and_current_is_non_destructive() {
        each_provider(sha256_known_answer_and_current_is_non_destructive_with);
    }

    fn sha256_known_answer_and_current_is_non_destructive_with(p: &dyn CryptoProvider) {
        let mut h = p.sha256();
        h.update(b"ab");
        let fork = h.fork();
        h.update(b"c");
        // FIPS 180-2 Appendix B.1: SHA-256("abc").
        let abc = hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(h.current().to_vec(), abc);
        assert_eq!(h.current().to_vec(), abc, "current() must not consume the context");
        let mut fork = fork;
        fork.update(b"c");
        assert_eq!(fork.current().to_vec(), abc);
        let mut h2 = h.fork();
        h2.update(b"d");
        assert_ne!(h2.current(), h.current());
    }

    #[test]
    fn hmac_sha256_rfc4231_case2() {
        each_provider(hmac_sha256_rfc4231_case2_with);
    }

    fn hmac_sha256_rfc4231_case2_with(p: &dyn CryptoProvider) {
        // RFC 4231 §4.3, test case 2; the message is split across parts.
        let mac = p.hmac_sha256(b"Jefe", &[b"what do ya want ", b"", b"for nothing?"]);
        assert_eq!(mac.to_vec(), hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
    }

    #[test]
    fn aead_rejects_wrong_key_length() {
        each_provider(aead_rejects_wrong_key_length_with);
    }

    fn aead_rejects_wrong_key_length_with(p: &dyn CryptoProvider) {
        for alg in [AeadAlgorithm::ChaCha20Poly1305, AeadAlgorithm::Aes128Ccm8, AeadAlgorithm::Aes128Gcm] {
            assert!(p.aead(alg, &vec![0u8; alg.key_len() + 1]).is_err());
            assert!(p.aead(alg, &vec![0u8; alg.key_len() - 1]).is_err());
        }
    }

    #[test]
    fn chacha20poly1305_rfc8439_aead_vector() {
        each_provider(chacha20poly1305_rfc8439_aead_vector_with);
    }

    fn chacha20poly1305_rfc8439_aead_vector_with(p: &dyn CryptoProvider) {
        // RFC 8439 §2.8.2.
        let key = hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
        let nonce: [u8; 12] = hex("070000004041424344454647").try_into().unwrap();
        let aad = hex("50515253c0c1c2c3c4c5c6c7");
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let expected_ct = hex(
            "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116",
        );
        let expected_tag = hex("1ae10b594f09e26a7e902ecbd0600691");
        let aead = p.aead(AeadAlgorithm::ChaCha20Poly1305, &key).unwrap();
        let mut buf = pt.to_vec();
        aead.seal_in_place(&nonce, &aad, &mut buf).unwrap();
        assert_eq!(&buf[..pt.len()], &expected_ct[..]);
        assert_eq!(&buf[pt.len()..], &expected_tag[..]);
        aead.open_in_place(&nonce, &aad, &mut buf).unwrap();
        assert_eq!(buf, pt);
    }

    #[test]
    fn aes128gcm_known_answer() {
        each_provider(aes128gcm_known_answer_with);
    }

    fn aes128gcm_known_answer_with(p: &dyn CryptoProvider) {
        // McGrew & Viega GCM spec, test case 4 (AES-128, 60-byte plaintext, 20-byte AAD).
        let key = hex("feffe9928665731c6d6a8f9467308308");
        let nonce: [u8; 12] = hex("cafebabefacedbaddecaf888").try_into().unwrap();
        let pt = hex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let ct = hex(
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
        );
        let tag = hex("5bc94fbc3221a5db94fae95ae7121a47");
        let aead = p.aead(AeadAlgorithm::Aes128Gcm, &key).unwrap();
        let mut buf = pt.clone();
        aead.seal_in_place(&nonce, &aad, &mut buf).unwrap();
        assert_eq!(buf, [ct, tag].concat());
        aead.open_in_place(&nonce, &aad, &mut buf).unwrap();
        assert_eq!(buf, pt);
    }

    #[test]
    fn aes128ccm8_matches_python_cryptography() {
        each_provider(aes128ccm8_matches_python_cryptography_with);
    }

    fn aes128ccm8_matches_python_cryptography_with(p: &dyn CryptoProvider) {
        // Expected value computed independently with Python `cryptography` 48.0 (OpenSSL backend):
        //   AESCCM(bytes(range(16)), tag_length=8).encrypt(bytes(range(0x10, 0x1c)),
        //          b"hello, CCM-8 record", b"additional")
        let key: Vec<u8> = (0..16).collect();
        let nonce: [u8; 12] = core::array::from_fn(|i| 0x10 + i as u8);
        let expected = hex("4bd0d5cc2dd80df149e152f85416bee514c5b678578c6a2e41551a");
        let aead = p.aead(AeadAlgorithm::Aes128Ccm8, &key).unwrap();
        let mut buf = b"hello, CCM-8 record".to_vec();
        aead.seal_in_place(&nonce, b"additional", &mut buf).unwrap();
        assert_eq!(buf, expected);
        aead.open_in_place(&nonce, b"additional", &mut buf).unwrap();
        assert_eq!(buf, b"hello, CCM-8 record");
    }

    /// Both AES-CCM-8 forms (the one `aead` picks depends on the CPU) against the same
    /// independent vector, each opening the other's records and rejecting a flipped tag bit.
    #[test]
    fn aes128ccm8_per_record_and_kept_schedule_agree() {
        let key: Vec<u8> = (0..16).collect();
        let nonce: [u8; 12] = core::array::from_fn(|i| 0x10 + i as u8);
        let expected = hex("4bd0d5cc2dd80df149e152f85416bee514c5b678578c6a2e41551a");
        let per_record: Box<dyn RecordAead> = Box::new(Ccm8PerRecord::new(&key).unwrap());
        let kept: Box<dyn RecordAead> = Box::new(Keyed(Aes128Ccm8::new_from_slice(&key).unwrap()));
        assert!(Ccm8PerRecord::new(&key[1..]).is_err());
        for (sealer, opener) in [(&per_record, &kept), (&kept, &per_record)] {
            let mut buf = b"hello, CCM-8 record".to_vec();
            sealer.seal_in_place(&nonce, b"additional", &mut buf).unwrap();
            assert_eq!(buf, expected);
            let mut ct = b"hello, CCM-8 record".to_vec();
            let mut tag = [0u8; 8];
            sealer.seal_in_place_detached(&nonce, b"additional", &mut ct, &mut tag).unwrap();
            assert_eq!([&ct[..], &tag[..]].concat(), expected);
            let mut tampered = buf.clone();
            *tampered.last_mut().unwrap() ^= 1;
            assert!(opener.open_in_place(&nonce, b"additional", &mut tampered).is_err());
            opener.open_in_place(&nonce, b"additional", &mut buf).unwrap();
            assert_eq!(buf, b"hello, CCM-8 record");
        }
    }

    #[test]
    fn aead_open_rejects_tampering_and_short_input() {
        each_provider(aead_open_rejects_tampering_and_short_input_with);
    }

    fn aead_open_rejects_tampering_and_short_input_with(p: &dyn CryptoProvider) {
        for alg in [AeadAlgorithm::ChaCha20Poly1305, AeadAlgorithm::Aes128Ccm8, AeadAlgorithm::Aes128Gcm] {
            let aead = p.aead(alg, &vec![7u8; alg.key_len()]).unwrap();
            let nonce = [1u8; 12];
            let mut sealed = b"payload".to_vec();
            aead.seal_in_place(&nonce, b"aad", &mut sealed).unwrap();
            assert_eq!(sealed.len(), 7 + alg.tag_len());
            for i in 0..sealed.len() {
                let mut t = sealed.clone();
                t[i] ^= 0x80;
                assert!(aead.open_in_place(&nonce, b"aad", &mut t).is_err(), "{alg:?} byte {i}");
            }
            assert!(aead.open_in_place(&nonce, b"aaD", &mut sealed.clone()).is_err());
            assert!(aead.open_in_place(&[2u8; 12], b"aad", &mut sealed.clone()).is_err());
            assert!(aead.open_in_place(&nonce, b"aad", &mut sealed[..alg.tag_len() - 1].to_vec()).is_err());
            let mut tag = vec![0u8; alg.tag_len() + 1];
            assert!(aead.seal_in_place_detached(&nonce, b"", &mut [0u8; 4], &mut tag).is_err());
        }
    }

    #[test]
    fn ecdh_keeps_leading_zero_of_z() {
        each_provider(ecdh_keeps_leading_zero_of_z_with);
    }

    fn ecdh_keeps_leading_zero_of_z_with(p: &dyn CryptoProvider) {
        // Found with Python `cryptography` 48.0: scalar 0x01 * 32 against the public key of
        // scalar 309 gives a Z whose first byte is zero (RFC 8422 §5.10: must not be stripped).
        let peer = hex("04d0ef0d9c1e333378211d09c0ee630d51fb1f8df53814ca869c527611615bc4fb
               19cd34e76bd171143fc683dfd3e8031ef6cb25cca059520882bf993792499463");
        let expected = hex("0094f4783ee8d261b5105ac71f605438100e8d84e9249f25f1a7038e438ec068");
        let kp = p.ecdh_p256(&mut FixedRng(vec![1; 32])).unwrap();
        let z = kp.complete(&peer).unwrap();
        assert_eq!(z.to_vec(), expected);
    }

    #[test]
    fn ecdh_agrees() {
        each_provider(ecdh_agrees_with);
    }

    fn ecdh_agrees_with(p: &dyn CryptoProvider) {
        let mut rng = SeededRng::from_seed_u64(1);
        let a = p.ecdh_p256(&mut rng).unwrap();
        let b = p.ecdh_p256(&mut rng).unwrap();
        assert_eq!(a.public_key().len(), 65);
        assert_eq!(a.public_key()[0], 0x04);
        let a_pub = a.public_key().to_vec();
        let b_pub = b.public_key().to_vec();
        let za = a.complete(&b_pub).unwrap();
        let zb = b.complete(&a_pub).unwrap();
        assert_eq!(*za, *zb);
    }

    #[test]
    fn ecdh_known_answer_nist_cavs() {
        each_provider(ecdh_known_answer_nist_cavs_with);
    }

    fn ecdh_known_answer_nist_cavs_with(p: &dyn CryptoProvider) {
        // NIST CAVS ECC CDH primitive test vector, P-256, COUNT = 0.
        let d = hex("7d7dc5f71eb29ddaf80d6214632eeae03d9058af1fb6d22ed80badb62bc1a534");
        let peer = hex("04 700c48f77f56584c5cc632ca65640db91b6bacce3a4df6b42ce7cc838833d287
                db71e509e3fd9b060ddb20ba5c51dcc5948d46fbf640dfe0441782cab85fa4ac");
        let expected = hex("46fc62106420ff012e54a434fbdd2d25ccc5852060561e68040dd7778997bd7b");
        let mut rng = FixedRng(d);
        let kp = p.ecdh_p256(&mut rng).unwrap();
        assert_eq!(
            kp.public_key(),
            &hex("04 ead218590119e8876b29146ff89ca61770c4edbbf97d38ce385ed281d8a6b230
                    28af61281fd35e2fa7002523acc85a429cb06ee6648325389f59edfce1405141")[..]
        );
        assert_eq!(kp.complete(&peer).unwrap().to_vec(), expected);
    }

    #[test]
    fn ecdh_retries_out_of_range_scalars_then_gives_up() {
        each_provider(ecdh_retries_out_of_range_scalars_then_gives_up_with);
    }

    fn ecdh_retries_out_of_range_scalars_then_gives_up_with(p: &dyn CryptoProvider) {
        // All-0xff is above the group order; zero is not a valid scalar either.
        let mut bytes = vec![0xff; 32];
        bytes.extend([0u8; 32]);
        bytes.extend([0x11; 32]);
        let kp = p.ecdh_p256(&mut FixedRng(bytes)).unwrap();
        let expected = p256::SecretKey::from_bytes(&p256::FieldBytes::from([0x11; 32])).unwrap();
        assert_eq!(kp.public_key(), expected.public_key().to_sec1_point(false).as_bytes());
        assert!(p.ecdh_p256(&mut FixedRng(vec![0xff; 32 * SCALAR_ATTEMPTS])).is_err());
    }

    #[test]
    fn ecdh_rejects_bad_peer_points() {
        each_provider(ecdh_rejects_bad_peer_points_with);
    }

    fn ecdh_rejects_bad_peer_points_with(p: &dyn CryptoProvider) {
        let mut rng = SeededRng::from_seed_u64(2);
        let other = p.ecdh_p256(&mut rng).unwrap();
        let good = other.public_key().to_vec();
        let fresh = |rng: &mut SeededRng| p.ecdh_p256(rng).unwrap();
        // Compressed form of a valid point.
        let compressed = p256::PublicKey::from_sec1_bytes(&good).unwrap().to_sec1_point(true);
        assert!(fresh(&mut rng).complete(compressed.as_bytes()).is_err());
        // Wrong prefix, truncated, extended, off-curve, identity, empty.
        let mut wrong_prefix = good.clone();
        wrong_prefix[0] = 0x06;
        assert!(fresh(&mut rng).complete(&wrong_prefix).is_err());
        assert!(fresh(&mut rng).complete(&good[..64]).is_err());
        assert!(fresh(&mut rng).complete(&[&good[..], &[0]].concat()).is_err());
        let mut off_curve = good.clone();
        off_curve[64] ^= 1;
        assert!(fresh(&mut rng).complete(&off_curve).is_err());
        assert!(fresh(&mut rng).complete(&[0x00]).is_err());
        let mut zeros = [0u8; 65];
        zeros[0] = 4;
        assert!(fresh(&mut rng).complete(&zeros).is_err());
        assert!(fresh(&mut rng).complete(&[]).is_err());
        assert!(fresh(&mut rng).complete(&good).is_ok());
    }

    #[test]
    fn ecdsa_sign_verify_and_reject() {
        let key = EcdsaP256SigningKey::from_bytes(&[0x42; 32]).unwrap();
        let sig = key.sign(b"server key exchange params").unwrap();
        assert_eq!(sig[0], 0x30, "DER SEQUENCE");
        assert!(sig.len() <= 72);
        assert_eq!(key.sign(b"server key exchange params").unwrap(), sig, "RFC 6979 is deterministic");
        let point = key.public_point();
        RustCrypto.ecdsa_p256_verify(&point, b"server key exchange params", &sig).unwrap();
        assert!(RustCrypto.ecdsa_p256_verify(&point, b"server key exchange paramz", &sig).is_err());
        let mut bad = sig.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(RustCrypto.ecdsa_p256_verify(&point, b"server key exchange params", &bad).is_err());
        assert!(RustCrypto.ecdsa_p256_verify(&point, b"server key exchange params", &[]).is_err());
        let other = EcdsaP256SigningKey::from_bytes(&[0x43; 32]).unwrap().public_point();
        assert!(RustCrypto.ecdsa_p256_verify(&other, b"server key exchange params", &sig).is_err());
        let compressed = p256::PublicKey::from_sec1_bytes(&point).unwrap().to_sec1_point(true);
        assert!(RustCrypto.ecdsa_p256_verify(compressed.as_bytes(), b"server key exchange params", &sig).is_err());
    }

    #[test]
    fn ecdsa_verifies_openssl_signature() {
        each_provider(ecdsa_verifies_openssl_signature_with);
    }

    fn ecdsa_verifies_openssl_signature_with(p: &dyn CryptoProvider) {
        // Produced with OpenSSL 3.0:
        //   openssl ecparam -name prime256v1 -genkey -noout -out k.pem
        //   printf 'coaps test message' | openssl dgst -sha256 -sign k.pem | xxd -p
        //   openssl ec -in k.pem -pubout -conv_form uncompressed -outform DER | tail -c 65 | xxd -p
        let point = hex(OPENSSL_POINT);
        let sig = hex(OPENSSL_SIG);
        p.ecdsa_p256_verify(&point, b"coaps test message", &sig).unwrap();
        assert!(p.ecdsa_p256_verify(&point, b"coaps test messagE", &sig).is_err());
    }

    const OPENSSL_POINT: &str = "046db5fca8c27bc7a3abbe6b1bfbc778b095f4ea7b6714798c55b1001aeac61afeaa5ceac6e35b5953b138555a9797e5c4bab2d24169d0e7b66945a6080cf851a3";
    const OPENSSL_SIG: &str = "3045022044b365b672ca2afebada530d3108bbfd5fbb5f2bc421a7dd9f7c4789d07deacf0221009c2b0876ec889d0a132cc30487b9ee5c7cca6e10e6e2e79ac5efe2669a863c35";

    #[test]
    fn signing_key_constructors_agree() {
        // Encodings produced with Python `cryptography` 48.0 (OpenSSL backend):
        //   k = ec.derive_private_key(int.from_bytes(b"\x42" * 32, "big"), ec.SECP256R1())
        //   k.private_bytes(DER, TraditionalOpenSSL | PKCS8, NoEncryption())
        //   k.public_key().public_bytes(DER, SubjectPublicKeyInfo)
        let sec1 = hex(SEC1_DER);
        let pkcs8 = hex(PKCS8_DER);
        let a = EcdsaP256SigningKey::from_bytes(&[0x42; 32]).unwrap();
        let b = EcdsaP256SigningKey::from_sec1_der(&sec1).unwrap();
        let c = EcdsaP256SigningKey::from_pkcs8_der(&pkcs8).unwrap();
        assert_eq!(a.public_point(), b.public_point());
        assert_eq!(a.public_point(), c.public_point());
        assert_eq!(a.public_key_spki(), hex(SPKI_DER), "SPKI must match openssl's -pubout DER");
        assert!(EcdsaP256SigningKey::from_pkcs8_der(&sec1).is_err());
        assert!(EcdsaP256SigningKey::from_sec1_der(&pkcs8[..pkcs8.len() - 1]).is_err());
        assert!(EcdsaP256SigningKey::from_bytes(&[0; 32]).is_err());
        assert!(EcdsaP256SigningKey::from_bytes(&[0xff; 32]).is_err());
        let dbg = format!("{a:?}");
        assert!(!dbg.contains("42") && !dbg.contains("66"), "{dbg}");
    }

    const SEC1_DER: &str = "307702010104204242424242424242424242424242424242424242424242424242424242424242a00a06082a8648ce3d030107a144034200043ad3861a95621392516bb593ef05583ed2e5866f5cb6260a3017237fd89b90afd0961c7e37075a6791a39c61f56295b02b6d26567b615e60aa41ee1c8e83388d";
    const PKCS8_DER: &str = "308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b02010104204242424242424242424242424242424242424242424242424242424242424242a144034200043ad3861a95621392516bb593ef05583ed2e5866f5cb6260a3017237fd89b90afd0961c7e37075a6791a39c61f56295b02b6d26567b615e60aa41ee1c8e83388d";
    const SPKI_DER: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200043ad3861a95621392516bb593ef05583ed2e5866f5cb6260a3017237fd89b90afd0961c7e37075a6791a39c61f56295b02b6d26567b615e60aa41ee1c8e83388d";

    /// A provider that overrides nothing optional, to check the trait's default HKDF (the
    /// RFC 5869 loop on `hmac_sha256`) and signing key.
    #[derive(Debug)]
    struct DefaultsOnly;
    impl CryptoProvider for DefaultsOnly {
        fn aead(&self, alg: AeadAlgorithm, key: &[u8]) -> Result<Box<dyn RecordAead>, CryptoError> {
            RustCrypto.aead(alg, key)
        }
        fn hmac_sha256(&self, key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
            RustCrypto.hmac_sha256(key, parts)
        }
        fn sha256(&self) -> Box<dyn HashContext> {
            RustCrypto.sha256()
        }
        fn ecdh_p256(&self, rng: &mut dyn Rng) -> Result<Box<dyn EcdhKeyPair>, CryptoError> {
            RustCrypto.ecdh_p256(rng)
        }
        fn ecdsa_p256_verify(&self, point: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
            RustCrypto.ecdsa_p256_verify(point, msg, sig)
        }
        fn name(&self) -> &'static str {
            "defaults-only"
        }
    }

    /// RFC 5869 Appendix A.1 (basic) and A.2 (long inputs, 82-byte output: three HMAC blocks,
    /// the last one partial), with the info split into parts.
    #[test]
    fn hkdf_rfc5869_cases_1_and_2() {
        let mut providers = all_providers();
        providers.push(std::sync::Arc::new(DefaultsOnly));
        let a2_salt: Vec<u8> = (0x60..=0xaf).collect();
        let a2_ikm: Vec<u8> = (0x00..=0x4f).collect();
        let a2_info: Vec<u8> = (0xb0..=0xff).collect();
        for p in providers {
            let prk = p.hkdf_sha256_extract(&hex("000102030405060708090a0b0c"), &[0x0b; 22]);
            assert_eq!(prk.to_vec(), hex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"));
            let mut okm = [0u8; 42];
            p.hkdf_sha256_expand(&prk, &[&hex("f0f1f2f3"), &[], &hex("f4f5f6f7f8f9")], &mut okm).unwrap();
            let expected = "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865";
            assert_eq!(okm.to_vec(), hex(expected), "{}", p.name());

            let prk = p.hkdf_sha256_extract(&a2_salt, &a2_ikm);
            assert_eq!(prk.to_vec(), hex("06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244"));
            let mut okm = [0u8; 82];
            let (i1, i2) = a2_info.split_at(17);
            p.hkdf_sha256_expand(&prk, &[i1, i2], &mut okm).unwrap();
            let expected = "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87";
            assert_eq!(okm.to_vec(), hex(expected), "{}", p.name());
            let mut too_long = vec![0u8; 255 * 32 + 1];
            assert!(p.hkdf_sha256_expand(&prk, &[], &mut too_long).is_err(), "{}", p.name());
        }
    }

    /// Every provider's signatures verify with every provider, and every provider's ECDH key
    /// pairs agree with every other's: the wire is the same whichever side runs which.
    #[test]
    fn providers_interoperate_on_ecdsa_and_ecdh() {
        let msg = b"certificate verify content";
        for signer in all_providers() {
            let key = signer.ecdsa_p256_signing_key(&[0x42; 32]).unwrap();
            assert_eq!(key.public_key_spki(), hex(SPKI_DER), "{}", signer.name());
            assert!(signer.ecdsa_p256_signing_key(&[0; 32]).is_err());
            assert!(signer.ecdsa_p256_signing_key(&[0xff; 32]).is_err());
            let sig = key.sign(msg).unwrap();
            let point = EcdsaP256SigningKey::from_bytes(&[0x42; 32]).unwrap().public_point();
            for verifier in all_providers() {
                verifier.ecdsa_p256_verify(&point, msg, &sig).unwrap();
                assert!(verifier.ecdsa_p256_verify(&point, b"other content", &sig).is_err());
            }
            let mut rng = SeededRng::from_seed_u64(7);
            for other in all_providers() {
                let a = signer.ecdh_p256(&mut rng).unwrap();
                let b = other.ecdh_p256(&mut rng).unwrap();
                let (a_pub, b_pub) = (a.public_key().to_vec(), b.public_key().to_vec());
                assert_eq!(*a.complete(&b_pub).unwrap(), *b.complete(&a_pub).unwrap());
            }
        }
    }

    /// The one-off ChaCha20-Poly1305 the cookie gate uses equals a keyed AEAD with no AAD.
    #[test]
    fn chacha20_poly1305_seal_once_matches_keyed_aead() {
        each_provider(|p| {
            let key = [9u8; 32];
            let nonce = [3u8; 12];
            let mut a = *b"cookie body, forty bytes or so.........";
            let mut tag = [0u8; 16];
            p.chacha20_poly1305_seal_once(&key, &nonce, &mut a, &mut tag).unwrap();
            let mut b = b"cookie body, forty bytes or so.........".to_vec();
            p.aead(AeadAlgorithm::ChaCha20Poly1305, &key).unwrap().seal_in_place(&nonce, &[], &mut b).unwrap();
            assert_eq!([&a[..], &tag[..]].concat(), b);
        });
    }
}
