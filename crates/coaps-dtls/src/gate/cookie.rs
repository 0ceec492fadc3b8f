//! Stateless cookies for HelloVerifyRequest (RFC 6347 §4.2.1).
//!
//! A server answers a ClientHello without a valid cookie with a HelloVerifyRequest computed from
//! the datagram alone, so an unverified client costs it no state (DESIGN: "no state before
//! proof"). The cookie is `key_id || issued || HMAC-SHA-256(secret, ...)[..16]`, where the MAC
//! binds the key id, the issue time, the client's address and port, and the ClientHello
//! parameters RFC 6347 §4.2.1 requires the second ClientHello to repeat.
//!
//! The DTLS 1.3 cookie of a stateless HelloRetryRequest (RFC 9147 §5.1) is here too
//! ([`CookieKeys::generate13`]), with the same secrets and rotation.
//!
//! Nothing here allocates: cookies are fixed-size inline buffers, the ClientHello view borrows
//! from the datagram, and the HelloVerifyRequest is written into a caller's buffer.

pub use crate::config::CookieConfig;
/// What a DTLS 1.3 cookie carries (defined beside the HelloRetryRequest it rebuilds).
pub use crate::dtls13::server::HrrState;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::codec::{ContentType, HandshakeType, InvalidMessage, ProtocolVersion, Reader};
use crate::crypto::{CryptoProvider, Rng};

/// Length of a [`Cookie`]: key id (1) + issue time (4) + truncated MAC (16).
pub const COOKIE_LEN: usize = 1 + 4 + MAC_LEN;

/// Truncated HMAC-SHA-256 length. 128 bits keeps forgery infeasible while keeping the
/// HelloVerifyRequest smaller than the ClientHello that caused it (no amplification).
const MAC_LEN: usize = 16;

/// Domain separation, so a cookie secret could never be confused with another HMAC use.
const MAC_LABEL: &[u8] = b"coaps-dtls cookie v1";

/// One cookie secret and the instant its issue times are counted from.
struct Secret {
    id: u8,
    key: Zeroizing<[u8; 32]>,
    created: Instant,
    /// The DTLS 1.3 cookie's (MAC, encryption) subkeys of `key`, derived on first use and
    /// kept: they were two HMACs per cookie made and two per cookie checked.
    hrr_keys: std::sync::OnceLock<HrrKeys>,
}

/// Subkeys of one secret for the DTLS 1.3 cookie, wiped on drop.
struct HrrKeys {
    mac: Zeroizing<[u8; 32]>,
    enc: Zeroizing<[u8; 32]>,
}

impl Secret {
    fn fresh(id: u8, now: Instant, rng: &mut dyn Rng) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill(&mut key[..]);
        Self { id, key, created: now, hrr_keys: std::sync::OnceLock::new() }
    }
}

/// The current and previous cookie secrets (RFC 6347 §4.2.1: during rotation a server MAY
/// accept cookies made with either).
pub struct CookieKeys {
    config: CookieConfig,
    current: Secret,
    previous: Option<Secret>,
}

impl fmt::Debug for CookieKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieKeys")
            .field("config", &self.config)
            .field("current_key_id", &self.current.id)
            .field("previous_key_id", &self.previous.as_ref().map(|s| s.id))
            .finish_non_exhaustive()
    }
}

impl CookieKeys {
    /// A fresh secret drawn from `rng`, with no previous secret.
    pub fn new(config: CookieConfig, now: Instant, rng: &mut dyn Rng) -> Self {
        Self { config, current: Secret::fresh(0, now, rng), previous: None }
    }

    /// The configuration in use.
    pub fn config(&self) -> &CookieConfig {
        &self.config
    }

    /// Rotates if the current secret is at least `rotate_every` old.
    pub fn rotate_if_due(&mut self, now: Instant, rng: &mut dyn Rng) {
        let age = now.saturating_duration_since(self.current.created);
        if age >= self.config.rotate_every {
            self.rotate(now, rng);
            // After a long idle period the demoted secret is itself stale: every cookie it
            // made is older than one period, so keeping it would only widen the replay window.
            if age >= self.config.rotate_every.saturating_mul(2) {
                self.previous = None;
            }
        }
    }

    /// Rotates now: the current secret becomes the previous one (the old previous one is
    /// dropped and zeroized) and a fresh current secret is drawn.
    pub fn rotate(&mut self, now: Instant, rng: &mut dyn Rng) {
        let id = self.current.id.wrapping_add(1);
        let fresh = Secret::fresh(id, now, rng);
        self.previous = Some(std::mem::replace(&mut self.current, fresh));
    }

    /// A cookie over the client's address and port and its ClientHello parameters
    /// (RFC 6347 §4.2.1: `Cookie = HMAC(Secret, Client-IP, Client-Parameters)`).
    ///
    /// The issue time is milliseconds since the secret was created; a secret more than ~49
    /// days old (`rotate_if_due` never called) saturates it, and its cookies then fail as
    /// `Expired`: the failure is closed.
    pub fn generate(
        &self,
        provider: &dyn CryptoProvider,
        now: Instant,
        peer: SocketAddr,
        params: &ClientHelloParams<'_>,
    ) -> Cookie {
        let secret = &self.current;
        let ms = now.saturating_duration_since(secret.created).as_millis();
        let issued = u32::try_from(ms).unwrap_or(u32::MAX).to_be_bytes();
        let mac = compute_mac(provider, secret, issued, peer, params);
        let mut bytes = [0u8; COOKIE_LEN];
        bytes[0] = secret.id;
        bytes[1..5].copy_from_slice(&issued);
        bytes[5..].copy_from_slice(&mac[..MAC_LEN]);
        Cookie { bytes }
    }

    /// Accepts a cookie made with the current or previous secret, for this peer and these
    /// parameters, not older than `lifetime` and not issued in the future.
    ///
    /// The MAC is checked (in constant time) before the issue time, so an unauthenticated
    /// cookie is never reported as `Expired`.
    pub fn verify(
        &self,
        provider: &dyn CryptoProvider,
        now: Instant,
        peer: SocketAddr,
        params: &ClientHelloParams<'_>,
        cookie: &[u8],
    ) -> Result<CookieInfo, CookieError> {
        let bytes: &[u8; COOKIE_LEN] = cookie.try_into().map_err(|_| CookieError::Malformed)?;
        let id = bytes[0];
        let secret = if id == self.current.id {
            &self.current
        } else {
            match &self.previous {
                Some(p) if p.id == id => p,
                _ => return Err(CookieError::UnknownKey),
            }
        };
        let issued: [u8; 4] = [bytes[1], bytes[2], bytes[3], bytes[4]];
        let mac = compute_mac(provider, secret, issued, peer, params);
        if !bool::from(mac[..MAC_LEN].ct_eq(&bytes[5..])) {
            return Err(CookieError::BadMac);
        }
        let age = secret
            .created
            .checked_add(Duration::from_millis(u64::from(u32::from_be_bytes(issued))))
            .and_then(|issued_at| now.checked_duration_since(issued_at))
            .ok_or(CookieError::Expired)?;
        if age > self.config.lifetime {
            return Err(CookieError::Expired);
        }
        Ok(CookieInfo { age })
    }
}

fn compute_mac(
    provider: &dyn CryptoProvider,
    secret: &Secret,
    issued: [u8; 4],
    peer: SocketAddr,
    params: &ClientHelloParams<'_>,
) -> [u8; 32] {
    // The family tag keeps 1.2.3.4 and the v6 address whose last four bytes are 1.2.3.4 apart.
    let (family, ip_buf, ip_len): ([u8; 1], [u8; 16], usize) = match peer.ip() {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            ([4], b, 4)
        }
        IpAddr::V6(a) => ([6], a.octets(), 16),
    };
    let port = peer.port().to_be_bytes();
    let version = params.client_version.to_be_bytes();
    // Length prefixes make the concatenation injective: no two parameter sets share an input.
    let len = |s: &[u8]| u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes();
    let l_random = len(params.random);
    let l_session = len(params.session_id);
    let l_suites = len(params.cipher_suites);
    let l_comp = len(params.compression_methods);
    let id = [secret.id];
    provider.hmac_sha256(
        &secret.key[..],
        &[
            MAC_LABEL,
            &id,
            &issued,
            &family,
            &ip_buf[..ip_len],
            &port,
            &version,
            &l_random,
            params.random,
            &l_session,
            params.session_id,
            &l_suites,
            params.cipher_suites,
            &l_comp,
            params.compression_methods,
        ],
    )
}

/// A cookie, stored inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cookie {
    bytes: [u8; COOKIE_LEN],
}

impl Cookie {
    /// The cookie as sent in HelloVerifyRequest.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cookie(")?;
        for b in &self.bytes {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// What a verified cookie tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieInfo {
    /// Time since the cookie was issued: an upper bound on one round trip (HelloVerifyRequest
    /// out, ClientHello back), which later layers may use as an RTT sample.
    pub age: Duration,
}

/// The encrypted part: the ClientHello1 hash and one byte for the HelloRetryRequest choices
/// (bit 7: a secp256r1 key share was requested; bits 0-6: the low byte of the TLS 1.3 suite,
/// whose high byte is always 0x13, RFC 8446 §B.4).
const HRR_STATE_LEN: usize = 32 + 1;
/// The synthetic IV, which is also the MAC (SIV construction, RFC 5297 §1.3.2 idea): 128 bits.
const HRR_SIV_LEN: usize = 16;
/// Length of a DTLS 1.3 cookie: key id (1) + issue time (4) + SIV (16) + encrypted state (33)
/// = 54 bytes. It used to be 69 (a random-looking 12-byte nonce and a separate 16-byte
/// Poly1305 tag); deriving the nonce from the MAC removes both extra fields, which matters
/// because the cookie rides in the second ClientHello, and a constrained client with a small
/// MTU then has to fragment it (RFC 9147 §5.1).
pub const COOKIE13_LEN: usize = 1 + 4 + HRR_SIV_LEN + HRR_STATE_LEN;
const HRR_ENC_LABEL: &[u8] = b"coaps-dtls dtls13 cookie enc v2";
const HRR_MAC_LABEL: &[u8] = b"coaps-dtls dtls13 cookie mac v2";
const TLS13_SUITE_HIGH: u16 = 0x1300;
const SECP256R1: u16 = 23;

/// A DTLS 1.3 cookie, inline.
#[derive(Clone, Copy)]
pub struct Cookie13 {
    bytes: [u8; COOKIE13_LEN],
}

impl Cookie13 {
    /// The cookie bytes, for the cookie extension.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for Cookie13 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cookie13").field("key_id", &self.bytes[0]).finish_non_exhaustive()
    }
}

/// The address the cookie is bound to, as associated data.
fn peer_aad(id: u8, issued: [u8; 4], peer: SocketAddr) -> ([u8; 1 + 4 + 1 + 16 + 2], usize) {
    let mut aad = [0u8; 1 + 4 + 1 + 16 + 2];
    aad[0] = id;
    aad[1..5].copy_from_slice(&issued);
    let n = match peer.ip() {
        IpAddr::V4(a) => {
            aad[5] = 4;
            aad[6..10].copy_from_slice(&a.octets());
            10
        }
        IpAddr::V6(a) => {
            aad[5] = 6;
            aad[6..22].copy_from_slice(&a.octets());
            22
        }
    };
    aad[n..n + 2].copy_from_slice(&peer.port().to_be_bytes());
    (aad, n + 2)
}

impl CookieKeys {
    /// A DTLS 1.3 cookie (RFC 9147 §5.1, RFC 8446 §4.2.2) carrying `state` encrypted and
    /// authenticated, bound to the client's address and port, with its issue time and key id:
    ///
    /// ```text
    /// key_id(1) || issued_ms(4) || siv(16) || ChaCha20(enc_key, nonce = siv[..12], state)(33)
    /// siv = HMAC-SHA-256(mac_key, label || key_id || issued || address || port || state)[..16]
    /// ```
    ///
    /// A deterministic SIV scheme: the MAC over everything (address included, as associated
    /// data) doubles as the nonce, so no separate nonce or tag is needed. Encryption keeps the
    /// ClientHello hash private (RFC 9147 §11: knowing the cookie should not reveal the
    /// ClientHello). Equal inputs give equal cookies, which reveals nothing new: the inputs
    /// already include a fresh ClientHello random. The ClientHello hash stays whole: it is the
    /// transcript's `message_hash` (RFC 8446 §4.4.1). Fails only for a suite outside 0x13xx or
    /// a group other than secp256r1, which this engine never selects.
    pub fn generate13(
        &self,
        provider: &dyn CryptoProvider,
        now: Instant,
        peer: SocketAddr,
        state: &HrrState,
    ) -> Result<Cookie13, CookieError> {
        let secret = &self.current;
        let suite_low = state.cipher_suite.wrapping_sub(TLS13_SUITE_HIGH);
        if state.cipher_suite & 0xff00 != TLS13_SUITE_HIGH || suite_low >= 0x80 || !matches!(state.group, 0 | SECP256R1)
        {
            return Err(CookieError::Malformed);
        }
        let ms = now.saturating_duration_since(secret.created).as_millis();
        let issued = u32::try_from(ms).unwrap_or(u32::MAX).to_be_bytes();
        let mut plain = [0u8; HRR_STATE_LEN];
        plain[..32].copy_from_slice(&state.client_hello1_hash);
        plain[32] = suite_low as u8 | if state.group == SECP256R1 { 0x80 } else { 0 };
        let (aad, aad_len) = peer_aad(secret.id, issued, peer);
        let siv = hrr_siv(provider, secret, &aad[..aad_len], &plain);
        hrr_stream(provider, secret, &siv, &mut plain)?;
        let mut bytes = [0u8; COOKIE13_LEN];
        bytes[0] = secret.id;
        bytes[1..5].copy_from_slice(&issued);
        bytes[5..5 + HRR_SIV_LEN].copy_from_slice(&siv);
        bytes[5 + HRR_SIV_LEN..].copy_from_slice(&plain);
        Ok(Cookie13 { bytes })
    }

    /// Opens a DTLS 1.3 cookie made by [`CookieKeys::generate13`] for this peer with the
    /// current or previous secret (RFC 9147 §5.1: rotate with overlapping lifetimes), not older
    /// than the lifetime. The MAC is checked in constant time before anything is believed.
    pub fn verify13(
        &self,
        provider: &dyn CryptoProvider,
        now: Instant,
        peer: SocketAddr,
        cookie: &[u8],
    ) -> Result<(HrrState, CookieInfo), CookieError> {
        let bytes: &[u8; COOKIE13_LEN] = cookie.try_into().map_err(|_| CookieError::Malformed)?;
        let id = bytes[0];
        let secret = if id == self.current.id {
            &self.current
        } else {
            match &self.previous {
                Some(p) if p.id == id => p,
                _ => return Err(CookieError::UnknownKey),
            }
        };
        let issued = [bytes[1], bytes[2], bytes[3], bytes[4]];
        let mut siv = [0u8; HRR_SIV_LEN];
        siv.copy_from_slice(&bytes[5..5 + HRR_SIV_LEN]);
        let mut plain = [0u8; HRR_STATE_LEN];
        plain.copy_from_slice(&bytes[5 + HRR_SIV_LEN..]);
        hrr_stream(provider, secret, &siv, &mut plain).map_err(|_| CookieError::BadMac)?;
        let (aad, aad_len) = peer_aad(id, issued, peer);
        let expected = hrr_siv(provider, secret, &aad[..aad_len], &plain);
        if !bool::from(expected.ct_eq(&siv)) {
            return Err(CookieError::BadMac);
        }
        let age = secret
            .created
            .checked_add(Duration::from_millis(u64::from(u32::from_be_bytes(issued))))
            .and_then(|issued_at| now.checked_duration_since(issued_at))
            .ok_or(CookieError::Expired)?;
        if age > self.config.lifetime {
            return Err(CookieError::Expired);
        }
        let mut client_hello1_hash = [0u8; 32];
        client_hello1_hash.copy_from_slice(&plain[..32]);
        let state = HrrState {
            client_hello1_hash,
            cipher_suite: TLS13_SUITE_HIGH | u16::from(plain[32] & 0x7f),
            group: if plain[32] & 0x80 != 0 { SECP256R1 } else { 0 },
        };
        Ok((state, CookieInfo { age }))
    }
}

/// One set of cookie secrets behind a cheap-to-clone handle, for a stateless gate in front of an
/// [`Endpoint`](crate::Endpoint) that must open the gate's DTLS 1.3 cookies: the endpoint
/// rebuilds the transcript from the cookie of the second ClientHello (RFC 8446 §4.4.1), so it
/// needs the secret that sealed it (see [`Endpoint::server_behind_gate`](crate::Endpoint::server_behind_gate)).
///
/// Every clone sees the same current and previous secret; whoever locks it after a rotation is
/// due rotates it (once, under the lock), so the rotation schedule of [`CookieConfig`] holds
/// for all holders.
#[derive(Clone)]
pub struct SharedCookieKeys {
    inner: std::sync::Arc<std::sync::Mutex<CookieKeys>>,
}

impl fmt::Debug for SharedCookieKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedCookieKeys").field(&*self.inner.lock().unwrap_or_else(|e| e.into_inner())).finish()
    }
}

impl SharedCookieKeys {
    /// Shares `keys`.
    pub fn new(keys: CookieKeys) -> Self {
        Self { inner: std::sync::Arc::new(std::sync::Mutex::new(keys)) }
    }

    /// Locks the secrets, rotating them first if due (randomness from `rng`).
    pub fn lock(&self, now: Instant, rng: &mut dyn Rng) -> std::sync::MutexGuard<'_, CookieKeys> {
        // A poisoned lock only means another thread panicked mid-MAC: the secrets are intact.
        let mut keys = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        keys.rotate_if_due(now, rng);
        keys
    }

    /// Whether `self` and `other` are handles on the same secrets.
    pub fn same_as(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// The cookie's MAC and nonce (see [`CookieKeys::generate13`]).
fn hrr_keys<'a>(provider: &dyn CryptoProvider, secret: &'a Secret) -> &'a HrrKeys {
    secret.hrr_keys.get_or_init(|| HrrKeys {
        mac: Zeroizing::new(provider.hmac_sha256(&secret.key[..], &[HRR_MAC_LABEL])),
        enc: Zeroizing::new(provider.hmac_sha256(&secret.key[..], &[HRR_ENC_LABEL])),
    })
}

fn hrr_siv(provider: &dyn CryptoProvider, secret: &Secret, aad: &[u8], plain: &[u8]) -> [u8; HRR_SIV_LEN] {
    let full = provider.hmac_sha256(&hrr_keys(provider, secret).mac[..], &[aad, plain]);
    let mut siv = [0u8; HRR_SIV_LEN];
    siv.copy_from_slice(&full[..HRR_SIV_LEN]);
    siv
}

/// XORs `buf` with the ChaCha20 keystream for nonce `siv[..12]` (encrypts and decrypts alike).
/// The provider exposes ChaCha20 only inside ChaCha20-Poly1305, whose ciphertext is the plain
/// ChaCha20 keystream (counter 1 on) XOR the input; its tag is not used, the SIV authenticates.
fn hrr_stream(
    provider: &dyn CryptoProvider,
    secret: &Secret,
    siv: &[u8; HRR_SIV_LEN],
    buf: &mut [u8; HRR_STATE_LEN],
) -> Result<(), CookieError> {
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&siv[..12]);
    let mut tag = [0u8; 16];
    provider
        .chacha20_poly1305_seal_once(&hrr_keys(provider, secret).enc, &nonce, buf, &mut tag)
        .map_err(|_| CookieError::Malformed)
}

/// Why a cookie was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieError {
    /// Not a cookie of ours (wrong length).
    Malformed,
    /// Made with a secret that is neither current nor previous.
    UnknownKey,
    /// The MAC does not match this peer, these parameters, or this secret.
    BadMac,
    /// Older than the configured lifetime, or issued in the future.
    Expired,
}

impl fmt::Display for CookieError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed cookie",
            Self::UnknownKey => "cookie made with an unknown secret",
            Self::BadMac => "cookie MAC mismatch",
            Self::Expired => "cookie expired",
        })
    }
}

impl std::error::Error for CookieError {}

/// The fields of a ClientHello a cookie binds (RFC 6347 §4.2.1: the second ClientHello MUST
/// repeat version, random, session_id, cipher_suites and compression_method), as slices of
/// the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientHelloParams<'a> {
    /// client_version
    pub client_version: u16,
    /// random (32 bytes when parsed)
    pub random: &'a [u8],
    /// session_id contents (without the length byte)
    pub session_id: &'a [u8],
    /// cipher_suites contents (without the length prefix)
    pub cipher_suites: &'a [u8],
    /// compression_methods contents (without the length byte)
    pub compression_methods: &'a [u8],
}

/// A zero-allocation view of a ClientHello body (the bytes after the 12-byte handshake
/// header): what a stateless cookie check needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientHelloView<'a> {
    /// The parameters the cookie binds.
    pub params: ClientHelloParams<'a>,
    /// cookie<0..2^8-1> (RFC 6347 §4.2.1), empty on a first ClientHello.
    pub cookie: &'a [u8],
    /// The extensions block's contents (without its length prefix), empty when absent; each
    /// extension's framing has been checked.
    pub extensions: &'a [u8],
}

impl<'a> ClientHelloView<'a> {
    /// Parses a complete ClientHello body. Total: malformed input yields `Err`.
    ///
    /// The vector bounds of RFC 5246 §7.4.1.2 are enforced (session_id ≤ 32,
    /// cipher_suites non-empty and even, compression_methods non-empty). Extensions, if
    /// present, are walked for well-formedness but not interpreted.
    pub fn parse(body: &'a [u8]) -> Result<Self, InvalidMessage> {
        let mut r = Reader::new(body);
        let client_version = r.u16("ClientHello.client_version")?;
        let random = r.take(32, "ClientHello.random")?;
        let session_id = r.vec_u8("ClientHello.session_id")?;
        if session_id.len() > 32 {
            return Err(InvalidMessage::IllegalValue("ClientHello.session_id"));
        }
        let cookie = r.vec_u8("ClientHello.cookie")?;
        let cipher_suites = r.vec_u16("ClientHello.cipher_suites")?;
        if cipher_suites.is_empty() || cipher_suites.len() % 2 != 0 {
            return Err(InvalidMessage::IllegalValue("ClientHello.cipher_suites"));
        }
        let compression_methods = r.vec_u8("ClientHello.compression_methods")?;
        if compression_methods.is_empty() {
            return Err(InvalidMessage::IllegalValue("ClientHello.compression_methods"));
        }
        // RFC 5246 §7.4.1.2: the extensions block may be absent entirely.
        let mut extensions: &[u8] = &[];
        if !r.is_empty() {
            extensions = r.vec_u16("ClientHello.extensions")?;
            let mut ext = Reader::new(extensions);
            while !ext.is_empty() {
                ext.u16("Extension.extension_type")?;
                ext.vec_u16("Extension.extension_data")?;
            }
            r.expect_empty("ClientHello")?;
        }
        Ok(Self {
            params: ClientHelloParams { client_version, random, session_id, cipher_suites, compression_methods },
            cookie,
            extensions,
        })
    }
}

/// Writes a complete HelloVerifyRequest datagram into `out` and returns its length.
///
/// One plaintext record: type handshake, version DTLS 1.0 (RFC 6347 §4.2.1: servers SHOULD
/// send 0xFEFF whatever they will negotiate), epoch 0, and sequence number equal to the
/// ClientHello record's (RFC 6347 §4.2.1: the server MUST use the ClientHello's record
/// sequence number). Handshake header: hello_verify_request, message_seq 0, unfragmented.
/// Body: `{server_version 0xFEFF, cookie<0..255>}`.
///
/// Returns `None` if `out` is too small, the cookie is longer than 255 bytes, or
/// `client_record_seq` does not fit in 48 bits.
pub fn write_hello_verify_request(client_record_seq: u64, cookie: &[u8], out: &mut [u8]) -> Option<usize> {
    let cookie_len = u8::try_from(cookie.len()).ok()?;
    if client_record_seq >= 1 << 48 {
        return None;
    }
    let body_len = 2 + 1 + cookie.len();
    let fragment_len = 12 + body_len;
    let total = 13 + fragment_len;
    let out = out.get_mut(..total)?;

    let version = ProtocolVersion::DTLS1_0.0.to_be_bytes();
    let body24 = (body_len as u32).to_be_bytes();
    let (record, rest) = out.split_at_mut(13);
    record[0] = ContentType::Handshake.into();
    record[1..3].copy_from_slice(&version);
    record[3..5].copy_from_slice(&0u16.to_be_bytes());
    record[5..11].copy_from_slice(&client_record_seq.to_be_bytes()[2..]);
    record[11..13].copy_from_slice(&(fragment_len as u16).to_be_bytes());

    let (hs, body) = rest.split_at_mut(12);
    hs[0] = HandshakeType::HelloVerifyRequest.into();
    hs[1..4].copy_from_slice(&body24[1..]);
    hs[4..6].copy_from_slice(&0u16.to_be_bytes()); // message_seq
    hs[6..9].copy_from_slice(&[0, 0, 0]); // fragment_offset
    hs[9..12].copy_from_slice(&body24[1..]); // fragment_length

    body[0..2].copy_from_slice(&version);
    body[2] = cookie_len;
    body[3..].copy_from_slice(cookie);
    Some(total)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crypto::{AeadAlgorithm, CryptoError, EcdhKeyPair, HashContext, RecordAead, SeededRng};
    use hmac::{KeyInit, Mac};

    /// Only HMAC-SHA-256, straight from the `hmac` crate: the real provider is written elsewhere.
    #[derive(Debug)]
    pub(crate) struct HmacOnly;

    impl CryptoProvider for HmacOnly {
        fn aead(&self, _: AeadAlgorithm, _: &[u8]) -> Result<Box<dyn RecordAead>, CryptoError> {
            unimplemented!()
        }
        fn hmac_sha256(&self, key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
            let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().into()
        }
        fn sha256(&self) -> Box<dyn HashContext> {
            unimplemented!()
        }
        fn ecdh_p256(&self, _: &mut dyn Rng) -> Result<Box<dyn EcdhKeyPair>, CryptoError> {
            unimplemented!()
        }
        fn ecdsa_p256_verify(&self, _: &[u8], _: &[u8], _: &[u8]) -> Result<(), CryptoError> {
            unimplemented!()
        }
    }

    #[test]
    fn test_provider_matches_rfc4231_case_2() {
        // RFC 4231 §4.3 test case 2, split across parts to exercise concatenation.
        let mac = HmacOnly.hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            mac[..],
            [
                0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75, 0xc7, 0x5a,
                0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43
            ]
        );
    }

    /// A minimal ClientHello body: one suite, null compression, no extensions.
    fn minimal_body(cookie: &[u8]) -> Vec<u8> {
        let mut b = vec![0xFE, 0xFD];
        b.extend_from_slice(&[0x11; 32]);
        b.push(0); // session_id
        b.push(cookie.len() as u8);
        b.extend_from_slice(cookie);
        b.extend_from_slice(&[0, 2, 0xC0, 0xA8]); // TLS_PSK_WITH_AES_128_CCM_8
        b.extend_from_slice(&[1, 0]);
        b
    }

    /// A ClientHello body with a session id, two suites, and an extensions block.
    fn full_body() -> Vec<u8> {
        let mut b = vec![0xFE, 0xFD];
        b.extend((0..32u8).map(|i| i * 7));
        b.push(4);
        b.extend_from_slice(&[9, 8, 7, 6]);
        b.push(3);
        b.extend_from_slice(&[0xAA, 0xBB, 0xCC]);
        b.extend_from_slice(&[0, 4, 0xC0, 0xA8, 0xCC, 0xAB]);
        b.extend_from_slice(&[1, 0]);
        // extensions: extended_master_secret (empty) + supported_groups [secp256r1]
        b.extend_from_slice(&[0, 12, 0x00, 0x17, 0, 0, 0x00, 0x0a, 0, 4, 0, 2, 0, 23]);
        b
    }

    fn setup() -> (CookieKeys, Instant, SeededRng) {
        let mut rng = SeededRng::from_seed_u64(7);
        let t0 = Instant::now();
        let cfg = CookieConfig { rotate_every: Duration::from_secs(10), lifetime: Duration::from_secs(60) };
        (CookieKeys::new(cfg, t0, &mut rng), t0, rng)
    }

    fn peer() -> SocketAddr {
        "192.0.2.1:5684".parse().unwrap()
    }

    #[test]
    fn parse_extracts_fields() {
        let body = full_body();
        let v = ClientHelloView::parse(&body).unwrap();
        assert_eq!(v.params.client_version, 0xFEFD);
        assert_eq!(v.params.random, &body[2..34]);
        assert_eq!(v.params.session_id, &[9, 8, 7, 6]);
        assert_eq!(v.cookie, &[0xAA, 0xBB, 0xCC]);
        assert_eq!(v.params.cipher_suites, &[0xC0, 0xA8, 0xCC, 0xAB]);
        assert_eq!(v.params.compression_methods, &[0]);

        let m = minimal_body(&[]);
        let v = ClientHelloView::parse(&m).unwrap();
        assert!(v.cookie.is_empty());
        assert!(v.params.session_id.is_empty());
    }

    #[test]
    fn parse_rejects_every_truncation() {
        let m = minimal_body(&[1, 2, 3]);
        for n in 0..m.len() {
            assert!(ClientHelloView::parse(&m[..n]).is_err(), "prefix {n} accepted");
        }
        let f = full_body();
        // Cutting exactly before the extensions block leaves a valid extension-less hello.
        let no_ext = f.len() - 14;
        for n in 0..f.len() {
            let r = ClientHelloView::parse(&f[..n]);
            if n == no_ext {
                assert_eq!(r.unwrap().params, ClientHelloView::parse(&f).unwrap().params);
            } else {
                assert!(r.is_err(), "prefix {n} accepted");
            }
        }
    }

    #[test]
    fn parse_rejects_bad_vectors_and_trailing_data() {
        let mut b = full_body();
        b.push(0);
        assert!(ClientHelloView::parse(&b).is_err());

        let mut odd = minimal_body(&[]);
        // cipher_suites length 3
        odd.splice(36..40, [0, 3, 0xC0, 0xA8, 0x00]);
        assert!(ClientHelloView::parse(&odd).is_err());

        let mut long_sid = vec![0xFE, 0xFD];
        long_sid.extend_from_slice(&[0; 32]);
        long_sid.push(33);
        long_sid.extend_from_slice(&[0; 33]);
        long_sid.extend_from_slice(&[0, 0, 2, 0xC0, 0xA8, 1, 0]);
        assert_eq!(ClientHelloView::parse(&long_sid), Err(InvalidMessage::IllegalValue("ClientHello.session_id")));

        let mut no_comp = minimal_body(&[]);
        let n = no_comp.len();
        no_comp[n - 2] = 0;
        no_comp.pop();
        assert!(ClientHelloView::parse(&no_comp).is_err());

        // An extension whose data runs past the block.
        let mut bad_ext = minimal_body(&[]);
        bad_ext.extend_from_slice(&[0, 4, 0, 23, 0, 1]);
        assert!(ClientHelloView::parse(&bad_ext).is_err());
    }

    #[test]
    fn parse_never_panics_on_noise() {
        let mut rng = SeededRng::from_seed_u64(99);
        let base = full_body();
        for _ in 0..2000 {
            let mut b = base.clone();
            let mut pick = [0u8; 3];
            rng.fill(&mut pick);
            let i = pick[0] as usize % b.len();
            b[i] = pick[1];
            b.truncate(b.len() - (pick[2] as usize % 4));
            let _ = ClientHelloView::parse(&b);
        }
    }

    #[test]
    fn generate_then_verify() {
        let (keys, t0, _) = setup();
        let body = full_body();
        let p = ClientHelloView::parse(&body).unwrap().params;
        let c = keys.generate(&HmacOnly, t0 + Duration::from_millis(1500), peer(), &p);
        assert_eq!(c.as_bytes().len(), COOKIE_LEN);
        let info = keys.verify(&HmacOnly, t0 + Duration::from_millis(1750), peer(), &p, c.as_bytes()).unwrap();
        assert_eq!(info.age, Duration::from_millis(250));
        // Deterministic for the same inputs.
        assert_eq!(c, keys.generate(&HmacOnly, t0 + Duration::from_millis(1500), peer(), &p));
    }

    #[test]
    fn verify_binds_peer_and_params() {
        let (keys, t0, _) = setup();
        let body = full_body();
        let p = ClientHelloView::parse(&body).unwrap().params;
        let c = keys.generate(&HmacOnly, t0, peer(), &p);
        let c = c.as_bytes();
        let bad = |peer: SocketAddr, p: &ClientHelloParams<'_>| keys.verify(&HmacOnly, t0, peer, p, c);

        assert_eq!(bad("192.0.2.1:5685".parse().unwrap(), &p), Err(CookieError::BadMac));
        assert_eq!(bad("192.0.2.2:5684".parse().unwrap(), &p), Err(CookieError::BadMac));
        assert_eq!(bad("[::c000:201]:5684".parse().unwrap(), &p), Err(CookieError::BadMac));
        assert_eq!(bad("[::ffff:192.0.2.1]:5684".parse().unwrap(), &p), Err(CookieError::BadMac));

        let mut random = [0u8; 32];
        random.copy_from_slice(p.random);
        random[31] ^= 1;
        assert_eq!(bad(peer(), &ClientHelloParams { random: &random, ..p }), Err(CookieError::BadMac));
        assert_eq!(bad(peer(), &ClientHelloParams { cipher_suites: &[0xC0, 0xA8], ..p }), Err(CookieError::BadMac));
        assert_eq!(bad(peer(), &ClientHelloParams { client_version: 0xFEFF, ..p }), Err(CookieError::BadMac));
        assert_eq!(bad(peer(), &ClientHelloParams { session_id: &[], ..p }), Err(CookieError::BadMac));
        assert_eq!(bad(peer(), &ClientHelloParams { compression_methods: &[0, 1], ..p }), Err(CookieError::BadMac));
        // Moving a byte across a field boundary must change the MAC input (length prefixes).
        // random and session_id are adjacent in the MAC input.
        let mut joined = p.random.to_vec();
        joined.extend_from_slice(p.session_id);
        let shifted = ClientHelloParams { random: &joined[..31], session_id: &joined[31..], ..p };
        assert_eq!(bad(peer(), &shifted), Err(CookieError::BadMac));

        // Tampering with the issue time or the MAC is caught too.
        for i in 1..COOKIE_LEN {
            let mut t = [0u8; COOKIE_LEN];
            t.copy_from_slice(c);
            t[i] ^= 0x40;
            assert_eq!(keys.verify(&HmacOnly, t0, peer(), &p, &t), Err(CookieError::BadMac), "byte {i}");
        }
        assert!(keys.verify(&HmacOnly, t0, peer(), &p, c).is_ok());
    }

    #[test]
    fn rotation() {
        let (mut keys, t0, mut rng) = setup();
        let body = minimal_body(&[]);
        let p = ClientHelloView::parse(&body).unwrap().params;
        let c = keys.generate(&HmacOnly, t0 + Duration::from_secs(1), peer(), &p);

        keys.rotate_if_due(t0 + Duration::from_secs(9), &mut rng);
        assert!(format!("{keys:?}").contains("current_key_id: 0"), "rotated early");

        let t1 = t0 + Duration::from_secs(10);
        keys.rotate_if_due(t1, &mut rng);
        let info = keys.verify(&HmacOnly, t1, peer(), &p, c.as_bytes()).unwrap();
        assert_eq!(info.age, Duration::from_secs(9));
        // New cookies come from the new secret and verify too.
        let c1 = keys.generate(&HmacOnly, t1, peer(), &p);
        assert_ne!(c1.as_bytes()[0], c.as_bytes()[0]);
        assert!(keys.verify(&HmacOnly, t1, peer(), &p, c1.as_bytes()).is_ok());

        let t2 = t0 + Duration::from_secs(20);
        keys.rotate_if_due(t2, &mut rng);
        assert_eq!(keys.verify(&HmacOnly, t2, peer(), &p, c.as_bytes()), Err(CookieError::UnknownKey));
        assert!(keys.verify(&HmacOnly, t2, peer(), &p, c1.as_bytes()).is_ok());
    }

    #[test]
    fn long_idle_rotation_drops_previous() {
        let (mut keys, t0, mut rng) = setup();
        let body = minimal_body(&[]);
        let p = ClientHelloView::parse(&body).unwrap().params;
        let c = keys.generate(&HmacOnly, t0 + Duration::from_secs(15), peer(), &p);
        keys.rotate_if_due(t0 + Duration::from_secs(25), &mut rng);
        assert_eq!(
            keys.verify(&HmacOnly, t0 + Duration::from_secs(25), peer(), &p, c.as_bytes()),
            Err(CookieError::UnknownKey)
        );
    }

    #[test]
    fn a_restarted_server_refuses_old_cookies() {
        let (keys, t0, _) = setup();
        let (other, _, _) = {
            let mut rng = SeededRng::from_seed_u64(8);
            (CookieKeys::new(CookieConfig::default(), t0, &mut rng), (), ())
        };
        let body = minimal_body(&[]);
        let p = ClientHelloView::parse(&body).unwrap().params;
        let c = keys.generate(&HmacOnly, t0, peer(), &p);
        // Same key id 0, different secret.
        assert_eq!(other.verify(&HmacOnly, t0, peer(), &p, c.as_bytes()), Err(CookieError::BadMac));
    }

    #[test]
    fn expiry() {
        let (keys, t0, _) = setup();
        let body = minimal_body(&[]);
        let p = ClientHelloView::parse(&body).unwrap().params;
        let t = t0 + Duration::from_secs(2);
        let c = keys.generate(&HmacOnly, t, peer(), &p);
        assert!(keys.verify(&HmacOnly, t + Duration::from_secs(60), peer(), &p, c.as_bytes()).is_ok());
        assert_eq!(
            keys.verify(&HmacOnly, t + Duration::from_millis(60_001), peer(), &p, c.as_bytes()),
            Err(CookieError::Expired)
        );
        // Not from the future.
        assert_eq!(
            keys.verify(&HmacOnly, t - Duration::from_millis(1), peer(), &p, c.as_bytes()),
            Err(CookieError::Expired)
        );
    }

    #[test]
    fn malformed() {
        let (keys, t0, _) = setup();
        let body = minimal_body(&[]);
        let p = ClientHelloView::parse(&body).unwrap().params;
        let c = keys.generate(&HmacOnly, t0, peer(), &p);
        for n in 0..COOKIE_LEN {
            assert_eq!(keys.verify(&HmacOnly, t0, peer(), &p, &c.as_bytes()[..n]), Err(CookieError::Malformed));
        }
        let mut long = c.as_bytes().to_vec();
        long.push(0);
        assert_eq!(keys.verify(&HmacOnly, t0, peer(), &p, &long), Err(CookieError::Malformed));
        assert_eq!(keys.verify(&HmacOnly, t0, peer(), &p, &[0x55; 32]), Err(CookieError::Malformed));
        let mut garbage = [0xA5u8; COOKIE_LEN];
        garbage[0] = 0;
        assert_eq!(keys.verify(&HmacOnly, t0, peer(), &p, &garbage), Err(CookieError::BadMac));
        garbage[0] = 200;
        assert_eq!(keys.verify(&HmacOnly, t0, peer(), &p, &garbage), Err(CookieError::UnknownKey));
    }

    #[test]
    fn debug_hides_secrets() {
        let (keys, _, _) = setup();
        assert_eq!(
            format!("{keys:?}"),
            "CookieKeys { config: CookieConfig { rotate_every: 10s, lifetime: 60s }, current_key_id: 0, previous_key_id: None, .. }"
        );
    }

    #[test]
    fn hello_verify_request_datagram() {
        let (keys, t0, _) = setup();
        // A minimal ClientHello datagram: record header + handshake header + minimal body.
        let body = minimal_body(&[]);
        let ch_datagram_len = 13 + 12 + body.len();
        let p = ClientHelloView::parse(&body).unwrap().params;
        let cookie = keys.generate(&HmacOnly, t0, peer(), &p);

        let seq = 0x0000_1234_5678_9ABC;
        let mut buf = [0u8; 128];
        let n = write_hello_verify_request(seq, cookie.as_bytes(), &mut buf).unwrap();
        assert_eq!(n, 13 + 12 + 2 + 1 + COOKIE_LEN);
        assert!(n <= ch_datagram_len, "HVR {n} > ClientHello {ch_datagram_len}: amplification");

        let d = &buf[..n];
        let mut r = Reader::new(d);
        assert_eq!(r.u8("type").unwrap(), 22);
        assert_eq!(r.u16("version").unwrap(), 0xFEFF);
        assert_eq!(r.u16("epoch").unwrap(), 0);
        assert_eq!(r.u48("seq").unwrap(), seq);
        assert_eq!(r.u16("length").unwrap() as usize, n - 13);
        assert_eq!(r.u8("msg_type").unwrap(), 3);
        let len = r.u24("length").unwrap();
        assert_eq!(len as usize, 3 + COOKIE_LEN);
        assert_eq!(r.u16("message_seq").unwrap(), 0);
        assert_eq!(r.u24("fragment_offset").unwrap(), 0);
        assert_eq!(r.u24("fragment_length").unwrap(), len);
        assert_eq!(r.u16("server_version").unwrap(), 0xFEFF);
        assert_eq!(r.vec_u8("cookie").unwrap(), cookie.as_bytes());
        assert!(r.is_empty());

        // The shared header decoder agrees.
        let mut r = Reader::new(&d[13..]);
        let (h, frag) = crate::msgs::HandshakeHeader::read_fragment(&mut r).unwrap();
        assert_eq!(h.msg_type, HandshakeType::HelloVerifyRequest);
        assert_eq!(frag, &d[25..]);
    }

    #[test]
    fn hello_verify_request_limits() {
        let mut buf = [0u8; 300];
        for short in 0..49 {
            assert_eq!(write_hello_verify_request(1, &[7; COOKIE_LEN], &mut buf[..short]), None);
        }
        assert_eq!(write_hello_verify_request(1, &[7; COOKIE_LEN], &mut buf[..49]), Some(49));
        assert_eq!(write_hello_verify_request(1, &[7; 256], &mut buf), None);
        assert_eq!(write_hello_verify_request(1, &[7; 255], &mut buf), Some(283));
        assert_eq!(write_hello_verify_request(1 << 48, &[], &mut buf), None);
        assert_eq!(write_hello_verify_request((1 << 48) - 1, &[], &mut buf), Some(28));
        assert_eq!(&buf[5..11], &[0xFF; 6]);
    }
}

#[cfg(test)]
mod dtls13_tests {
    use super::*;
    use crate::crypto::SeededRng;
    use crate::crypto::rustcrypto::RustCrypto;

    fn setup() -> (CookieKeys, Instant, SeededRng) {
        let mut rng = SeededRng::from_seed_u64(9);
        let now = Instant::now();
        (CookieKeys::new(CookieConfig::default(), now, &mut rng), now, rng)
    }

    fn state() -> HrrState {
        HrrState { client_hello1_hash: [7; 32], cipher_suite: 0x1303, group: 23 }
    }

    #[test]
    fn round_trip_binds_address_and_hides_the_hash() {
        let (keys, now, _) = setup();
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let c = keys.generate13(&RustCrypto, now, peer, &state()).unwrap();
        assert_eq!(c.as_bytes().len(), COOKIE13_LEN);
        assert!(!c.as_bytes().windows(32).any(|w| w == [7u8; 32]), "hash must not appear in clear");
        let later = now + Duration::from_millis(300);
        let (st, info) = keys.verify13(&RustCrypto, later, peer, c.as_bytes()).unwrap();
        assert_eq!(st, state());
        assert_eq!(info.age, Duration::from_millis(300));
        let other_port: SocketAddr = "192.0.2.1:4001".parse().unwrap();
        assert_eq!(keys.verify13(&RustCrypto, later, other_port, c.as_bytes()).unwrap_err(), CookieError::BadMac);
        let other_ip: SocketAddr = "[2001:db8::1]:4000".parse().unwrap();
        assert_eq!(keys.verify13(&RustCrypto, later, other_ip, c.as_bytes()).unwrap_err(), CookieError::BadMac);
    }

    #[test]
    fn cookie_is_54_bytes_and_keeps_every_hrr_choice() {
        let (keys, now, _) = setup();
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        assert_eq!(COOKIE13_LEN, 54);
        for (suite, group) in [(0x1301, 23), (0x1303, 0), (0x1305, 23)] {
            let st = HrrState { client_hello1_hash: [0xa5; 32], cipher_suite: suite, group };
            let c = keys.generate13(&RustCrypto, now, peer, &st).unwrap();
            assert_eq!(keys.verify13(&RustCrypto, now, peer, c.as_bytes()).unwrap().0, st);
        }
        // Two ClientHellos differing in one hash bit give unrelated ciphertexts (the SIV
        // changes the keystream), so cookies do not reveal which ClientHellos were alike.
        let a = keys.generate13(&RustCrypto, now, peer, &state()).unwrap();
        let mut st = state();
        st.client_hello1_hash[31] ^= 1;
        let b = keys.generate13(&RustCrypto, now, peer, &st).unwrap();
        assert_ne!(a.as_bytes()[5..25], b.as_bytes()[5..25]);
        assert_ne!(a.as_bytes()[21..50], b.as_bytes()[21..50]);
        for bad in [HrrState { cipher_suite: 0xc0ac, ..state() }, HrrState { group: 29, ..state() }] {
            assert_eq!(keys.generate13(&RustCrypto, now, peer, &bad).unwrap_err(), CookieError::Malformed);
        }
    }

    #[test]
    fn tampering_expiry_rotation_and_garbage() {
        let (mut keys, now, mut rng) = setup();
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let c = keys.generate13(&RustCrypto, now, peer, &state()).unwrap();
        for i in 0..COOKIE13_LEN {
            let mut b = *c.as_bytes().first_chunk::<COOKIE13_LEN>().unwrap();
            b[i] ^= 1;
            assert!(keys.verify13(&RustCrypto, now, peer, &b).is_err(), "byte {i} flipped must fail");
        }
        assert_eq!(
            keys.verify13(&RustCrypto, now + Duration::from_secs(61), peer, c.as_bytes()).unwrap_err(),
            CookieError::Expired
        );
        assert_eq!(keys.verify13(&RustCrypto, now, peer, &[1, 2, 3]).unwrap_err(), CookieError::Malformed);
        keys.rotate(now, &mut rng);
        assert!(keys.verify13(&RustCrypto, now, peer, c.as_bytes()).is_ok(), "previous secret still accepted");
        keys.rotate(now, &mut rng);
        assert_eq!(keys.verify13(&RustCrypto, now, peer, c.as_bytes()).unwrap_err(), CookieError::UnknownKey);
    }
}
