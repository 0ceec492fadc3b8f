//! The TLS 1.2 PRF, P_SHA256 (RFC 5246 §5), and the key schedule built on it: master secret
//! (RFC 5246 §8.1, RFC 7627 §4), key block (RFC 5246 §6.3), Finished `verify_data`
//! (RFC 5246 §7.4.9) and the PSK pre-master secrets (RFC 4279 §2, RFC 5489 §2).
//!
//! The TLS 1.2 PRF is not HKDF: it is HMAC iterated over `A(i)` as below.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

use super::{AeadAlgorithm, CryptoProvider};

/// `PRF(secret, label, seed) = P_SHA256(secret, label || seed)` (RFC 5246 §5), written to
/// fill `out`. The seed is given in parts so callers need not concatenate randoms.
pub fn prf(provider: &dyn CryptoProvider, secret: &[u8], label: &[u8], seed: &[&[u8]], out: &mut [u8]) {
    // RFC 5246 §5: A(0) = label || seed, A(i) = HMAC(secret, A(i-1)),
    // P_hash = HMAC(secret, A(1) || label || seed) || HMAC(secret, A(2) || label || seed) || ...
    // One buffer laid out as A(i) || label || seed serves both HMAC inputs; A(i) is rewritten in
    // place. It holds secret-derived bytes, so it is wiped on drop.
    let seed_len: usize = seed.iter().map(|p| p.len()).sum();
    let mut buf = Zeroizing::new(Vec::with_capacity(32 + label.len() + seed_len));
    buf.resize(32, 0);
    buf.extend_from_slice(label);
    for part in seed {
        buf.extend_from_slice(part);
    }
    let a1 = Zeroizing::new(provider.hmac_sha256(secret, &[&buf[32..]]));
    buf[..32].copy_from_slice(&a1[..]);
    let mut block = Zeroizing::new([0u8; 32]);
    let mut chunks = out.chunks_mut(32).peekable();
    while let Some(chunk) = chunks.next() {
        *block = provider.hmac_sha256(secret, &[&buf[..]]);
        chunk.copy_from_slice(&block[..chunk.len()]);
        if chunks.peek().is_some() {
            let next = Zeroizing::new(provider.hmac_sha256(secret, &[&buf[..32]]));
            buf[..32].copy_from_slice(&next[..]);
        }
    }
}

/// The 48-byte TLS 1.2 master secret (RFC 9846 calls it the main secret). Wiped on drop.
#[derive(Clone)]
pub struct MasterSecret([u8; 48]);

impl MasterSecret {
    /// Length in bytes (RFC 5246 §8.1).
    pub const LEN: usize = 48;

    /// `PRF(pre_master_secret, "master secret", ClientHello.random || ServerHello.random)[0..47]`
    /// (RFC 5246 §8.1).
    pub fn from_pre_master(
        provider: &dyn CryptoProvider,
        pms: &[u8],
        client_random: &[u8; 32],
        server_random: &[u8; 32],
    ) -> Self {
        let mut ms = [0u8; 48];
        prf(provider, pms, b"master secret", &[client_random, server_random], &mut ms);
        Self(ms)
    }

    /// The extended master secret, `PRF(pre_master_secret, "extended master secret",
    /// session_hash)[0..47]` (RFC 7627 §4), where `session_hash` covers the handshake up to and
    /// including ClientKeyExchange.
    pub fn extended(provider: &dyn CryptoProvider, pms: &[u8], session_hash: &[u8; 32]) -> Self {
        let mut ms = [0u8; 48];
        prf(provider, pms, b"extended master secret", &[session_hash], &mut ms);
        Self(ms)
    }

    /// Wraps stored bytes (e.g. from a resumed session).
    pub fn from_bytes(bytes: [u8; 48]) -> Self {
        Self(bytes)
    }

    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8; 48] {
        &self.0
    }
}

impl Drop for MasterSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterSecret(..)")
    }
}

/// The traffic keys of an AEAD suite (RFC 5246 §6.3). AEAD suites have no MAC keys
/// (`mac_key_length` = 0), so only write keys and implicit IVs are present.
pub struct KeyBlock {
    /// client_write_key: protects records the client sends.
    pub client_write_key: Zeroizing<Vec<u8>>,
    /// server_write_key: protects records the server sends.
    pub server_write_key: Zeroizing<Vec<u8>>,
    /// client_write_IV: the implicit nonce part for the client's records.
    pub client_write_iv: Zeroizing<Vec<u8>>,
    /// server_write_IV: the implicit nonce part for the server's records.
    pub server_write_iv: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for KeyBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyBlock").finish_non_exhaustive()
    }
}

/// `key_block = PRF(master_secret, "key expansion", server_random || client_random)`, split in
/// the order of RFC 5246 §6.3: client key, server key, client IV, server IV (the MAC keys that
/// would come first are empty for AEAD suites). Key and IV lengths follow `alg`
/// (`alg.key_len()`, `alg.fixed_iv_len()`).
pub fn key_block(
    provider: &dyn CryptoProvider,
    master: &MasterSecret,
    alg: AeadAlgorithm,
    server_random: &[u8; 32],
    client_random: &[u8; 32],
) -> KeyBlock {
    let (k, iv) = (alg.key_len(), alg.fixed_iv_len());
    // The largest suite needs 2 * 32 + 2 * 12 = 88 bytes.
    let mut buf = Zeroizing::new([0u8; 88]);
    let material = &mut buf[..2 * (k + iv)];
    prf(provider, master.as_bytes(), b"key expansion", &[server_random, client_random], material);
    let (client_key, rest) = material.split_at(k);
    let (server_key, rest) = rest.split_at(k);
    let (client_iv, server_iv) = rest.split_at(iv);
    KeyBlock {
        client_write_key: Zeroizing::new(client_key.to_vec()),
        server_write_key: Zeroizing::new(server_key.to_vec()),
        client_write_iv: Zeroizing::new(client_iv.to_vec()),
        server_write_iv: Zeroizing::new(server_iv.to_vec()),
    }
}

/// Finished `verify_data = PRF(master_secret, finished_label, Hash(handshake_messages))[0..11]`
/// (RFC 5246 §7.4.9). `label` is `b"client finished"` or `b"server finished"`.
pub fn verify_data(
    provider: &dyn CryptoProvider,
    master: &MasterSecret,
    label: &[u8],
    handshake_hash: &[u8; 32],
) -> [u8; 12] {
    let mut out = [0u8; 12];
    prf(provider, master.as_bytes(), label, &[handshake_hash], &mut out);
    out
}

/// Plain PSK pre-master secret (RFC 4279 §2): `uint16 N || N zero bytes || uint16 N || psk`.
///
/// # Panics
/// If `psk` is longer than 65535 bytes, which the wire format cannot express. PSKs come from
/// local configuration, which must enforce this (RFC 4279 §5.3 only requires 64 bytes).
pub fn psk_pre_master(psk: &[u8]) -> Zeroizing<Vec<u8>> {
    let n = u16::try_from(psk.len()).expect("PSK longer than 65535 bytes");
    let mut out = Zeroizing::new(Vec::with_capacity(4 + 2 * psk.len()));
    out.extend_from_slice(&n.to_be_bytes());
    out.resize(2 + psk.len(), 0);
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(psk);
    out
}

/// ECDHE_PSK pre-master secret (RFC 5489 §2): `uint16 len(Z) || Z || uint16 len(psk) || psk`,
/// with `z` the full-length ECDH x-coordinate (RFC 8422 §5.10).
///
/// # Panics
/// If `z` or `psk` is longer than 65535 bytes (see [`psk_pre_master`]).
pub fn ecdhe_psk_pre_master(z: &[u8], psk: &[u8]) -> Zeroizing<Vec<u8>> {
    let zn = u16::try_from(z.len()).expect("shared secret longer than 65535 bytes");
    let pn = u16::try_from(psk.len()).expect("PSK longer than 65535 bytes");
    let mut out = Zeroizing::new(Vec::with_capacity(4 + z.len() + psk.len()));
    out.extend_from_slice(&zn.to_be_bytes());
    out.extend_from_slice(z);
    out.extend_from_slice(&pn.to_be_bytes());
    out.extend_from_slice(psk);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::rustcrypto::RustCrypto;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn seq<const N: usize>(start: u8) -> [u8; N] {
        core::array::from_fn(|i| start + i as u8)
    }

    // Inputs of the cross-checks below: pms = 00..2f, client_random = 20..3f,
    // server_random = 40..5f, session/handshake hash = 60..7f.
    // Expected values from OpenSSL 3.0.22's TLS1-PRF, e.g. for the master secret:
    //   openssl kdf -keylen 48 -kdfopt digest:SHA256 -kdfopt hexsecret:<pms> \
    //     -kdfopt seed:"master secret" -kdfopt hexseed:<client_random><server_random> TLS1-PRF
    // (OpenSSL concatenates repeated seed options; labels and seeds as in each function's doc).
    const MS: &str = "cf8d72bb4fda026122dba8aaed446b085151157dbbd04d5be31ab43379174edfd454d4852e1a89a94d12aa004561baff";
    const EMS: &str =
        "126f7f5ca74a0ee6d36213580c197693b9f50bf12309f250e48abf622c04219cc470be1522bfdc71840afecf068eab0b";
    const KB88: &str = "30ab55edcaaaa63c3fa0ae7993df890172447cdc3ade8f9e397320979ded0ab548035f8000b1085b1f7e055eeefa9c8ad6388196621759edfae82d15782f57cbfa71f687b516abb005880f02430ba25b455f141f1bc8e54b";

    #[test]
    fn prf_published_sha256_vector() {
        // The TLS 1.2 PRF-SHA256 vector posted to the IETF TLS list (msg03416), also produced
        // by `openssl kdf -keylen 100 -kdfopt digest:SHA256 -kdfopt hexsecret:9bbe...db35
        //   -kdfopt seed:"test label" -kdfopt hexseed:a0ba...198c TLS1-PRF`.
        let secret = hex("9bbe436ba940f017b17652849a71db35");
        let seed = hex("a0ba9f936cda311827a6f796ffd5198c");
        let expected = hex("e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a
             6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab
             4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff701
             87347b66");
        let mut out = [0u8; 100];
        prf(&RustCrypto, &secret, b"test label", &[&seed], &mut out);
        assert_eq!(out.to_vec(), expected);
        // Splitting the seed differently, or asking for a prefix, gives the same bytes.
        let mut out2 = [0u8; 33];
        prf(&RustCrypto, &secret, b"test label", &[&seed[..3], &[], &seed[3..]], &mut out2);
        assert_eq!(out2.to_vec(), expected[..33]);
        let mut empty = [0u8; 0];
        prf(&RustCrypto, &secret, b"test label", &[&seed], &mut empty);
    }

    #[test]
    fn master_secret_matches_openssl() {
        let ms = MasterSecret::from_pre_master(&RustCrypto, &seq::<48>(0), &seq(0x20), &seq(0x40));
        assert_eq!(ms.as_bytes().to_vec(), hex(MS));
        let swapped = MasterSecret::from_pre_master(&RustCrypto, &seq::<48>(0), &seq(0x40), &seq(0x20));
        assert_ne!(swapped.as_bytes(), ms.as_bytes());
    }

    #[test]
    fn extended_master_secret_matches_openssl() {
        let ems = MasterSecret::extended(&RustCrypto, &seq::<48>(0), &seq(0x60));
        assert_eq!(ems.as_bytes().to_vec(), hex(EMS));
    }

    #[test]
    fn key_block_matches_openssl() {
        let ms = MasterSecret::from_bytes(hex(MS).try_into().unwrap());
        let kb88 = hex(KB88);
        let kb = key_block(&RustCrypto, &ms, AeadAlgorithm::ChaCha20Poly1305, &seq(0x40), &seq(0x20));
        assert_eq!(kb.client_write_key.as_slice(), &kb88[0..32]);
        assert_eq!(kb.server_write_key.as_slice(), &kb88[32..64]);
        assert_eq!(kb.client_write_iv.as_slice(), &kb88[64..76]);
        assert_eq!(kb.server_write_iv.as_slice(), &kb88[76..88]);
        // AES suites take a 40-byte prefix of the same PRF stream: 16 + 16 + 4 + 4.
        for alg in [AeadAlgorithm::Aes128Ccm8, AeadAlgorithm::Aes128Gcm] {
            let kb = key_block(&RustCrypto, &ms, alg, &seq(0x40), &seq(0x20));
            assert_eq!(kb.client_write_key.as_slice(), &kb88[0..16]);
            assert_eq!(kb.server_write_key.as_slice(), &kb88[16..32]);
            assert_eq!(kb.client_write_iv.as_slice(), &kb88[32..36]);
            assert_eq!(kb.server_write_iv.as_slice(), &kb88[36..40]);
        }
        assert_eq!(format!("{kb:?}"), "KeyBlock { .. }");
    }

    #[test]
    fn verify_data_matches_openssl() {
        let ms = MasterSecret::from_bytes(hex(MS).try_into().unwrap());
        let hash = seq(0x60);
        assert_eq!(verify_data(&RustCrypto, &ms, b"client finished", &hash).to_vec(), hex("eb9bf4c18346ae4560c0a8cd"));
        assert_eq!(verify_data(&RustCrypto, &ms, b"server finished", &hash).to_vec(), hex("dd45a16a29bf96a57c075946"));
    }

    #[test]
    fn master_secret_debug_hides_bytes() {
        let ms = MasterSecret::from_bytes([0xab; 48]);
        let dbg = format!("{ms:?}");
        assert_eq!(dbg, "MasterSecret(..)");
    }

    #[test]
    fn psk_pre_master_layout() {
        let pms = psk_pre_master(&[0xaa, 0xbb, 0xcc]);
        assert_eq!(pms.as_slice(), &[0, 3, 0, 0, 0, 0, 3, 0xaa, 0xbb, 0xcc]);
        assert_eq!(psk_pre_master(&[]).as_slice(), &[0, 0, 0, 0]);
        let long = psk_pre_master(&[7u8; 300]);
        assert_eq!(&long[..2], &[1, 44]);
        assert!(long[2..302].iter().all(|&b| b == 0));
        assert_eq!(&long[302..304], &[1, 44]);
        assert_eq!(long.len(), 604);
    }

    #[test]
    fn ecdhe_psk_pre_master_layout() {
        let mut z = [0x11u8; 32];
        z[0] = 0; // leading zero kept
        let pms = ecdhe_psk_pre_master(&z, b"key");
        assert_eq!(&pms[..2], &[0, 32]);
        assert_eq!(&pms[2..34], &z);
        assert_eq!(&pms[34..], &[0, 3, b'k', b'e', b'y']);
    }
}
