//! Stateless cookies for HelloVerifyRequest (RFC 6347 §4.2.1). (STUB API)
#![allow(missing_docs, dead_code, unused_variables)]
use crate::codec::InvalidMessage;
use crate::crypto::{CryptoProvider, Rng};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
#[derive(Debug, Clone)]
pub struct CookieConfig { pub rotate_every: Duration, pub lifetime: Duration }
impl Default for CookieConfig { fn default() -> Self { todo!() } }
#[derive(Debug)]
pub struct CookieKeys;
#[derive(Debug)]
pub struct Cookie;
impl Cookie { pub fn as_bytes(&self) -> &[u8] { todo!() } }
#[derive(Debug)]
pub struct CookieInfo { pub age: Duration }
#[derive(Debug)]
pub enum CookieError { Malformed, UnknownKey, BadMac, Expired }
#[derive(Debug, Clone, Copy)]
pub struct ClientHelloParams<'a> { pub client_version: u16, pub random: &'a [u8], pub session_id: &'a [u8], pub cipher_suites: &'a [u8], pub compression_methods: &'a [u8] }
#[derive(Debug, Clone, Copy)]
pub struct ClientHelloView<'a> { pub params: ClientHelloParams<'a>, pub cookie: &'a [u8] }
impl<'a> ClientHelloView<'a> { pub fn parse(body: &'a [u8]) -> Result<Self, InvalidMessage> { todo!() } }
impl CookieKeys {
    pub fn new(config: CookieConfig, now: Instant, rng: &mut dyn Rng) -> Self { todo!() }
    pub fn rotate_if_due(&mut self, now: Instant, rng: &mut dyn Rng) { todo!() }
    pub fn generate(&self, provider: &dyn CryptoProvider, now: Instant, peer: SocketAddr, params: &ClientHelloParams<'_>) -> Cookie { todo!() }
    pub fn verify(&self, provider: &dyn CryptoProvider, now: Instant, peer: SocketAddr, params: &ClientHelloParams<'_>, cookie: &[u8]) -> Result<CookieInfo, CookieError> { todo!() }
}
pub fn write_hello_verify_request(client_record_seq: u64, cookie: &[u8], out: &mut [u8]) -> Option<usize> { todo!() }
