//! The TLS 1.2 PRF, P_SHA256 (RFC 5246 §5), and the key schedule built on it. (STUB)
#![allow(missing_docs, dead_code, unused_variables)]
use super::{AeadAlgorithm, CryptoProvider};
use zeroize::Zeroizing;
pub struct MasterSecret([u8; 48]);
impl MasterSecret {
    pub fn from_pre_master(provider: &dyn CryptoProvider, pms: &[u8], client_random: &[u8; 32], server_random: &[u8; 32]) -> Self { todo!() }
    pub fn extended(provider: &dyn CryptoProvider, pms: &[u8], session_hash: &[u8; 32]) -> Self { todo!() }
    pub fn from_bytes(b: [u8; 48]) -> Self { Self(b) }
    pub fn as_bytes(&self) -> &[u8; 48] { &self.0 }
}
pub struct KeyBlock { pub client_write_key: Vec<u8>, pub server_write_key: Vec<u8>, pub client_write_iv: Vec<u8>, pub server_write_iv: Vec<u8> }
pub fn key_block(provider: &dyn CryptoProvider, master: &MasterSecret, alg: AeadAlgorithm, server_random: &[u8; 32], client_random: &[u8; 32]) -> KeyBlock { todo!() }
pub fn verify_data(provider: &dyn CryptoProvider, master: &MasterSecret, label: &[u8], handshake_hash: &[u8; 32]) -> [u8; 12] { todo!() }
pub fn psk_pre_master(psk: &[u8]) -> Zeroizing<Vec<u8>> { todo!() }
pub fn ecdhe_psk_pre_master(z: &[u8], psk: &[u8]) -> Zeroizing<Vec<u8>> { todo!() }
