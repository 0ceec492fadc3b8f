//! Credentials: PEM loading, X.509 path validation (rustls-webpki) with server name checks,
//! and raw public keys (RFC 7250) pinned by SubjectPublicKeyInfo. (STUB API)
#![allow(missing_docs, dead_code, unused_variables)]
use crate::codec::AlertDescription;
use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateError { BadEncoding, UnknownIssuer, Expired, NotValidYet, NotValidForName, UnsupportedKey, BadSignature, InvalidPurpose, Revoked, NotPinned, Other(String) }
impl CertificateError { pub fn alert(&self) -> AlertDescription { AlertDescription::BadCertificate } }
impl std::fmt::Display for CertificateError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{self:?}") } }
#[derive(Debug)]
pub enum CredentialError { Stub }
impl std::fmt::Display for CredentialError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{self:?}") } }
pub fn load_certs_pem(pem: &[u8]) -> Result<Vec<Vec<u8>>, CredentialError> { todo!() }
pub fn load_private_key_pem(pem: &[u8]) -> Result<p256::SecretKey, CredentialError> { todo!() }
pub fn spki_p256_point(spki_der: &[u8]) -> Result<[u8; 65], CertificateError> { todo!() }
pub fn end_entity_p256_point(cert_der: &[u8]) -> Result<[u8; 65], CertificateError> { todo!() }
pub fn p256_spki_der(point: &[u8; 65]) -> Vec<u8> { todo!() }
#[derive(Debug)]
pub struct WebPkiVerifier;
impl WebPkiVerifier {
    pub fn new(roots_der: &[Vec<u8>]) -> Result<Self, CredentialError> { todo!() }
    pub fn verify_server(&self, chain: &[Vec<u8>], server_name: &str, now: SystemTime) -> Result<[u8; 65], CertificateError> { todo!() }
    pub fn verify_client(&self, chain: &[Vec<u8>], now: SystemTime) -> Result<[u8; 65], CertificateError> { todo!() }
}
#[derive(Debug)]
pub struct PinnedKeys;
impl PinnedKeys {
    pub fn new(spkis: Vec<Vec<u8>>) -> Self { todo!() }
    pub fn verify(&self, spki_der: &[u8]) -> Result<[u8; 65], CertificateError> { todo!() }
}
