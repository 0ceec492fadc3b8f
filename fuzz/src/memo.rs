//! A memoizing [`CryptoProvider`] and [`SigningKey`] for the endpoint targets.
//!
//! Every endpoint target builds its endpoints from fixed seeds at a fixed clock, so most
//! executions repeat the same P-256 key generations, ECDH agreements, ECDSA signatures and
//! verifications, and DTLS 1.3 cookie encryptions, with the same inputs. Under coverage
//! instrumentation those dominate an execution (tens of milliseconds for a 1.3 handshake). The
//! wrappers here run the real provider the first time an input is seen and afterwards return
//! what it returned, keyed by the complete input: never an answer real crypto would not give.
//! Everything else (record AEADs, hashes, HMAC, HKDF) goes straight to the real provider.
//!
//! Caches are bounded: a full table is cleared, so memory stays flat over a long campaign.

use coaps_dtls::Zeroizing;
use coaps_dtls::crypto::{
    AeadAlgorithm, CryptoError, CryptoProvider, EcdhKeyPair, HashContext, RecordAead, Rng, SigningKey,
};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock};

/// Entries per table before it is cleared.
const CAPACITY: usize = 4096;

/// How many random bytes a key generation draws first: one P-256 scalar candidate. The real
/// provider rejects a candidate outside [1, n-1] and draws again (probability about 2^-32);
/// such a generation is passed through and not memoized.
const SCALAR_DRAW: usize = 32;

/// A bounded map from complete inputs to the real provider's answer.
#[derive(Debug)]
struct Table<K, V>(Mutex<HashMap<K, V>>);

impl<K: Eq + Hash, V: Clone> Table<K, V> {
    fn new() -> Self {
        Self(Mutex::new(HashMap::new()))
    }

    fn get_or(&self, key: K, compute: impl FnOnce() -> V) -> V {
        if let Some(v) = self.lock().get(&key) {
            return v.clone();
        }
        let v = compute();
        let mut map = self.lock();
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(key, v.clone());
        v
    }

    fn get(&self, key: &K) -> Option<V> {
        self.lock().get(key).cloned()
    }

    fn insert(&self, key: K, v: V) {
        let mut map = self.lock();
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(key, v);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
        // A panic while the lock was held (a fuzz finding) leaves only complete entries.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Length-prefixed concatenation, so distinct input tuples never share a key.
fn key_of(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 4).sum());
    for p in parts {
        k.extend_from_slice(&(p.len() as u32).to_be_bytes());
        k.extend_from_slice(p);
    }
    k
}

/// Serves a fixed prefix of bytes, then the underlying RNG, counting what was taken from the
/// prefix. Fill sizes are multiples of 4 in the real provider, so the ChaCha stream is the same
/// whether drawn in one call or several.
struct Replay<'a> {
    prefix: &'a [u8],
    rest: Option<&'a mut dyn Rng>,
    extra: usize,
}

impl Rng for Replay<'_> {
    fn fill(&mut self, buf: &mut [u8]) {
        let n = buf.len().min(self.prefix.len());
        buf[..n].copy_from_slice(&self.prefix[..n]);
        self.prefix = &self.prefix[n..];
        if n < buf.len() {
            self.extra += buf.len() - n;
            self.rest.as_mut().expect("a memoized key pair is rebuilt from its draw alone").fill(&mut buf[n..]);
        }
    }
}

#[derive(Debug)]
struct Tables {
    /// Scalar draw -> public point.
    keygen: Table<[u8; SCALAR_DRAW], Vec<u8>>,
    /// (scalar draw, peer point) -> shared secret.
    ecdh: Table<Vec<u8>, Result<[u8; 32], CryptoError>>,
    /// (point, message, signature) -> verdict.
    verify: Table<Vec<u8>, Result<(), CryptoError>>,
    /// (key, nonce, plaintext) -> (ciphertext, tag).
    seal_once: Table<Vec<u8>, Result<(Vec<u8>, [u8; 16]), CryptoError>>,
}

/// A [`CryptoProvider`] that memoizes the expensive public-key operations of `inner` (see the
/// module docs).
#[derive(Debug, Clone)]
pub struct MemoCrypto {
    inner: Arc<dyn CryptoProvider>,
    tables: Arc<Tables>,
}

impl MemoCrypto {
    /// Memoizes `inner`.
    pub fn new(inner: Arc<dyn CryptoProvider>) -> Self {
        let tables = Tables { keygen: Table::new(), ecdh: Table::new(), verify: Table::new(), seal_once: Table::new() };
        Self { inner, tables: Arc::new(tables) }
    }

    /// The one shared instance over the default provider, so its tables live for the whole
    /// campaign.
    pub fn shared() -> Arc<dyn CryptoProvider> {
        static P: OnceLock<Arc<dyn CryptoProvider>> = OnceLock::new();
        P.get_or_init(|| Arc::new(MemoCrypto::new(coaps_dtls::crypto::providers::default_provider()))).clone()
    }
}

/// A key pair whose secret is the scalar draw it came from; the real key pair is rebuilt from
/// that draw only if an agreement is not memoized yet.
struct MemoKeyPair {
    draw: [u8; SCALAR_DRAW],
    public: Vec<u8>,
    real: Option<Box<dyn EcdhKeyPair>>,
    memo: MemoCrypto,
}

impl Drop for MemoKeyPair {
    fn drop(&mut self) {
        // The draw is the private scalar: wipe it as the real key pair wipes its own.
        self.draw.fill(0);
        std::hint::black_box(&self.draw);
    }
}

impl EcdhKeyPair for MemoKeyPair {
    fn public_key(&self) -> &[u8] {
        &self.public
    }

    fn complete(mut self: Box<Self>, peer_public: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let key = key_of(&[&self.draw, peer_public]);
        let real = self.real.take();
        let draw = self.draw;
        let memo = self.memo.clone();
        memo.tables
            .ecdh
            .get_or(key, || {
                let real = match real {
                    Some(r) => r,
                    None => {
                        let mut replay = Replay { prefix: &draw, rest: None, extra: 0 };
                        memo.inner.ecdh_p256(&mut replay)?
                    }
                };
                real.complete(peer_public).map(|z| *z)
            })
            .map(Zeroizing::new)
    }
}

impl CryptoProvider for MemoCrypto {
    fn aead(&self, alg: AeadAlgorithm, key: &[u8]) -> Result<Box<dyn RecordAead>, CryptoError> {
        self.inner.aead(alg, key)
    }

    fn hmac_sha256(&self, key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        self.inner.hmac_sha256(key, parts)
    }

    fn sha256(&self) -> Box<dyn HashContext> {
        self.inner.sha256()
    }

    fn ecdh_p256(&self, rng: &mut dyn Rng) -> Result<Box<dyn EcdhKeyPair>, CryptoError> {
        let mut draw = [0u8; SCALAR_DRAW];
        rng.fill(&mut draw);
        if let Some(public) = self.tables.keygen.get(&draw) {
            return Ok(Box::new(MemoKeyPair { draw, public, real: None, memo: self.clone() }));
        }
        let mut replay = Replay { prefix: &draw, rest: Some(rng), extra: 0 };
        let real = self.inner.ecdh_p256(&mut replay)?;
        assert!(replay.prefix.is_empty(), "the provider drew less than one scalar: the RNG stream would shift");
        if replay.extra > 0 {
            // A rejected candidate: the key is not a function of `draw` alone.
            return Ok(real);
        }
        let public = real.public_key().to_vec();
        self.tables.keygen.insert(draw, public.clone());
        Ok(Box::new(MemoKeyPair { draw, public, real: Some(real), memo: self.clone() }))
    }

    fn ecdsa_p256_verify(&self, public_point: &[u8], msg: &[u8], der_sig: &[u8]) -> Result<(), CryptoError> {
        self.tables
            .verify
            .get_or(key_of(&[public_point, msg, der_sig]), || self.inner.ecdsa_p256_verify(public_point, msg, der_sig))
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn ecdsa_p256_signing_key(&self, scalar: &[u8; 32]) -> Result<Arc<dyn SigningKey>, CryptoError> {
        Ok(Arc::new(MemoSigner::new(self.inner.ecdsa_p256_signing_key(scalar)?)))
    }

    fn hkdf_sha256_extract(&self, salt: &[u8], ikm: &[u8]) -> Zeroizing<[u8; 32]> {
        self.inner.hkdf_sha256_extract(salt, ikm)
    }

    fn hkdf_sha256_expand(&self, prk: &[u8; 32], info: &[&[u8]], out: &mut [u8]) -> Result<(), CryptoError> {
        self.inner.hkdf_sha256_expand(prk, info, out)
    }

    fn sha256_parts(&self, parts: &[&[u8]]) -> [u8; 32] {
        self.inner.sha256_parts(parts)
    }

    fn chacha20_poly1305_seal_once(
        &self,
        key: &[u8; 32],
        nonce: &[u8; 12],
        buf: &mut [u8],
        tag_out: &mut [u8; 16],
    ) -> Result<(), CryptoError> {
        let (ct, tag) = self.tables.seal_once.get_or(key_of(&[key, nonce, buf]), || {
            let mut b = buf.to_vec();
            let mut t = [0u8; 16];
            self.inner.chacha20_poly1305_seal_once(key, nonce, &mut b, &mut t).map(|()| (b, t))
        })?;
        buf.copy_from_slice(&ct);
        *tag_out = tag;
        Ok(())
    }
}

/// A [`SigningKey`] that memoizes signatures by message. The built-in P-256 keys sign
/// deterministically (RFC 6979), so the memoized signature is the one the key would make again.
pub struct MemoSigner {
    inner: Arc<dyn SigningKey>,
    signatures: Table<Vec<u8>, Result<Vec<u8>, CryptoError>>,
}

impl MemoSigner {
    /// Memoizes `inner`.
    pub fn new(inner: Arc<dyn SigningKey>) -> Self {
        Self { inner, signatures: Table::new() }
    }
}

impl std::fmt::Debug for MemoSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoSigner(..)")
    }
}

impl SigningKey for MemoSigner {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.signatures.get_or(msg.to_vec(), || self.inner.sign(msg))
    }

    fn public_key_spki(&self) -> Vec<u8> {
        self.inner.public_key_spki()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coaps_dtls::crypto::SeededRng;

    /// Memoized answers equal the real provider's, on a miss and on a hit, and the RNG stream
    /// after a key generation is where the real provider leaves it.
    #[test]
    fn memo_matches_real_crypto() {
        let real = coaps_dtls::crypto::providers::default_provider();
        let memo = MemoCrypto::new(real.clone());
        for _ in 0..2 {
            let (mut r1, mut r2) = (SeededRng::from_seed_u64(7), SeededRng::from_seed_u64(7));
            let a = real.ecdh_p256(&mut r1).unwrap();
            let b = memo.ecdh_p256(&mut r2).unwrap();
            assert_eq!(a.public_key(), b.public_key());
            let (mut x, mut y) = ([0u8; 8], [0u8; 8]);
            r1.fill(&mut x);
            r2.fill(&mut y);
            assert_eq!(x, y, "RNG stream shifted");
            let peer = real.ecdh_p256(&mut SeededRng::from_seed_u64(8)).unwrap();
            let peer_pub = peer.public_key().to_vec();
            assert_eq!(*a.complete(&peer_pub).unwrap(), *b.complete(&peer_pub).unwrap());
        }
        // A key pair from a memoized draw, completed with a new peer, rebuilds the real key.
        let b = memo.ecdh_p256(&mut SeededRng::from_seed_u64(7)).unwrap();
        let a = real.ecdh_p256(&mut SeededRng::from_seed_u64(7)).unwrap();
        let peer = real.ecdh_p256(&mut SeededRng::from_seed_u64(9)).unwrap();
        assert_eq!(*a.complete(peer.public_key()).unwrap(), *b.complete(peer.public_key()).unwrap());
        assert!(memo.ecdh_p256(&mut SeededRng::from_seed_u64(7)).unwrap().complete(&[4; 65]).is_err());
        // Signatures and verdicts.
        let signer = MemoSigner::new(real.ecdsa_p256_signing_key(&[5; 32]).unwrap());
        let s1 = signer.sign(b"m").unwrap();
        assert_eq!(s1, signer.sign(b"m").unwrap());
        assert_eq!(s1, real.ecdsa_p256_signing_key(&[5; 32]).unwrap().sign(b"m").unwrap());
        let spki = signer.public_key_spki();
        let point = &spki[spki.len() - 65..];
        for _ in 0..2 {
            assert!(memo.ecdsa_p256_verify(point, b"m", &s1).is_ok());
            assert!(memo.ecdsa_p256_verify(point, b"n", &s1).is_err());
        }
        // One-off ChaCha20-Poly1305.
        for _ in 0..2 {
            let (mut a, mut b) = (*b"cookie plaintext", *b"cookie plaintext");
            let (mut ta, mut tb) = ([0u8; 16], [0u8; 16]);
            real.chacha20_poly1305_seal_once(&[1; 32], &[2; 12], &mut a, &mut ta).unwrap();
            memo.chacha20_poly1305_seal_once(&[1; 32], &[2; 12], &mut b, &mut tb).unwrap();
            assert_eq!((a, ta), (b, tb));
        }
    }
}
