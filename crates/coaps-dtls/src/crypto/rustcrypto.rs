//! The default provider, on RustCrypto crates. (STUB)
#![allow(missing_docs)]
#[derive(Debug, Default, Clone, Copy)]
pub struct RustCrypto;
impl super::CryptoProvider for RustCrypto {
    fn aead(&self, _alg: super::AeadAlgorithm, _key: &[u8]) -> Result<Box<dyn super::RecordAead>, super::CryptoError> { todo!() }
    fn hmac_sha256(&self, _key: &[u8], _parts: &[&[u8]]) -> [u8; 32] { todo!() }
    fn sha256(&self) -> Box<dyn super::HashContext> { todo!() }
    fn ecdh_p256(&self, _rng: &mut dyn super::Rng) -> Result<Box<dyn super::EcdhKeyPair>, super::CryptoError> { todo!() }
    fn ecdsa_p256_verify(&self, _p: &[u8], _m: &[u8], _s: &[u8]) -> Result<(), super::CryptoError> { todo!() }
}
