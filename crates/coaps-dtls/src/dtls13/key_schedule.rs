//! The TLS 1.3 key schedule (RFC 8446 §7.1, unchanged in RFC 9846 §7.1) with the DTLS 1.3
//! label prefix `"dtls13"` (RFC 9147 §5.9), and the values derived from it: traffic keys
//! (RFC 8446 §7.3, plus the record-number key of RFC 9147 §4.2.3), Finished (RFC 8446 §4.4.4),
//! KeyUpdate (§7.2), resumption PSKs (§4.6.1) and PSK binders (§4.2.11.2).
//!
//! All three DTLS 1.3 suites this crate offers (TLS_AES_128_GCM_SHA256,
//! TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_CCM_8_SHA256) hash with SHA-256, so every secret
//! here is 32 bytes.
//!
//! ```text
//!                  0
//!                  |
//!                  v
//!    PSK ->  HKDF-Extract = Early Secret            EarlySecret::new(psk)
//!                  |
//!                  +-----> Derive-Secret(., "ext binder" | "res binder", "")
//!                  |                     = binder_key            .binder_key(external)
//!                  +-----> Derive-Secret(., "c e traffic", ClientHello)
//!                  |                     = client_early_traffic_secret (epoch 1)
//!                  +-----> Derive-Secret(., "e exp master", ClientHello)
//!                  |                     = early_exporter_master_secret
//!                  v
//!            Derive-Secret(., "derived", "")
//!                  |
//!                  v
//! (EC)DHE -> HKDF-Extract = Handshake Secret        .into_handshake(shared_secret)
//!                  |
//!                  +-----> Derive-Secret(., "c hs traffic", ClientHello...ServerHello)
//!                  +-----> Derive-Secret(., "s hs traffic", ClientHello...ServerHello)
//!                  |                     = [sender]_handshake_traffic_secret (epoch 2)
//!                  v
//!            Derive-Secret(., "derived", "")
//!                  |
//!                  v
//!       0 -> HKDF-Extract = Master Secret           .into_master()
//!                  |
//!                  +-----> Derive-Secret(., "c ap traffic", ClientHello...server Finished)
//!                  +-----> Derive-Secret(., "s ap traffic", ClientHello...server Finished)
//!                  |                     = [sender]_application_traffic_secret_0 (epoch 3)
//!                  +-----> Derive-Secret(., "exp master", ClientHello...server Finished)
//!                  |                     = exporter_master_secret
//!                  +-----> Derive-Secret(., "res master", ClientHello...client Finished)
//!                                        = resumption_master_secret
//! ```
//!
//! "0" is 32 zero bytes, never the empty string (RFC 8446 §7.1: "if a given secret is not
//! available, then the 0-value consisting of a string of Hash.length bytes set to zeros is
//! used"). Each stage is consumed by the transition to the next, so a stage's secret is wiped
//! as soon as nothing more can be derived from it (RFC 8446 §7.1: "that secret SHOULD be
//! erased").
//!
//! Every HKDF and HMAC computation goes through the [`CryptoProvider`] passed in (as `p`), so a
//! provider's HKDF (RFC 5869) serves the whole schedule.
//!
//! Transcript hashes are passed in already computed (`[u8; 32]`); in DTLS they cover the
//! TLS-format handshake messages, without the 8 extra DTLS header bytes (RFC 9147 §5.2).

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::crypto::{AeadAlgorithm, CryptoProvider};

/// Length of every secret and transcript hash here: SHA-256's output (RFC 8446 §7.1
/// "Hash.length").
pub const HASH_LEN: usize = 32;

/// The DTLS 1.3 HKDF label prefix (RFC 9147 §5.9), with no trailing space so that every label
/// still fits one hash block.
pub const DTLS13_LABEL_PREFIX: &[u8] = b"dtls13";

/// The label prefix, a parameter so that the RFC 8448 vectors (made with TLS 1.3's `"tls13 "`)
/// can check the construction. Only [`Prefix::DTLS13`] is used outside the tests.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Prefix(&'static [u8]);

impl Prefix {
    const DTLS13: Self = Self(DTLS13_LABEL_PREFIX);
    #[cfg(test)]
    const TLS13: Self = Self(b"tls13 ");
}

/// A 32-byte TLS 1.3 secret. Wiped on drop; `Debug` does not show it.
#[derive(Clone)]
pub struct Secret([u8; HASH_LEN]);

impl Secret {
    /// Wraps stored bytes (a secret kept with a session, or a test vector).
    pub fn from_bytes(bytes: [u8; HASH_LEN]) -> Self {
        Self(bytes)
    }

    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Compares in constant time, so a secret comparison cannot leak a prefix through timing.
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for Secret {}

/// SHA-256 of the empty string: the transcript hash of `Derive-Secret(., label, "")`
/// (RFC 8446 §7.1: Derive-Secret always hashes its Messages argument).
/// A constant: every handshake side needs it several times ("derived", binder keys) and hashing
/// it costs a SHA-256 block each time.
fn empty_hash() -> [u8; HASH_LEN] {
    EMPTY_HASH
}

/// SHA-256("") (FIPS 180-4; checked against `Sha256::digest` in the tests).
const EMPTY_HASH: [u8; HASH_LEN] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41,
    0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// `HKDF-Extract(salt, IKM)` with HMAC-SHA-256 (RFC 5869 §2.2).
pub fn hkdf_extract(p: &dyn CryptoProvider, salt: &[u8], ikm: &[u8]) -> Secret {
    Secret(*p.hkdf_sha256_extract(salt, ikm))
}

/// `HKDF-Expand-Label(Secret, Label, Context, out.len())` with the DTLS 1.3 prefix
/// (RFC 8446 §7.1, RFC 9147 §5.9):
///
/// ```text
/// struct {
///     uint16 length = Length;
///     opaque label<7..255> = "dtls13" + Label;
///     opaque context<0..255> = Context;
/// } HkdfLabel;
/// ```
///
/// # Panics
/// If `out` is longer than 255 × 32 bytes (the HKDF-Expand limit, RFC 5869 §2.3), if the
/// prefixed label is longer than 255 bytes or if `context` is longer than 255 bytes. All three
/// are caller bugs: the labels are constants, contexts are hashes or ticket nonces (a
/// `<0..255>` field) and outputs are key-sized.
pub fn hkdf_expand_label(
    p: &dyn CryptoProvider,
    secret: &[u8; HASH_LEN],
    label: &[u8],
    context: &[u8],
    out: &mut [u8],
) {
    expand_label(p, Prefix::DTLS13, secret, label, context, out);
}

fn expand_label(
    p: &dyn CryptoProvider,
    prefix: Prefix,
    secret: &[u8; HASH_LEN],
    label: &[u8],
    context: &[u8],
    out: &mut [u8],
) {
    let length = u16::try_from(out.len()).expect("HKDF-Expand-Label output longer than 65535 bytes");
    let label_len = u8::try_from(prefix.0.len() + label.len()).expect("HkdfLabel.label longer than 255 bytes");
    let context_len = u8::try_from(context.len()).expect("HkdfLabel.context longer than 255 bytes");
    p.hkdf_sha256_expand(secret, &[&length.to_be_bytes(), &[label_len], prefix.0, label, &[context_len], context], out)
        .expect("HKDF-Expand-Label output longer than 255 hash blocks");
}

fn expand_secret(
    p: &dyn CryptoProvider,
    prefix: Prefix,
    secret: &[u8; HASH_LEN],
    label: &[u8],
    context: &[u8],
) -> Secret {
    let mut out = Secret([0; HASH_LEN]);
    expand_label(p, prefix, secret, label, context, &mut out.0);
    out
}

/// `Derive-Secret(Secret, Label, Messages) = HKDF-Expand-Label(Secret, Label,
/// Transcript-Hash(Messages), Hash.length)` (RFC 8446 §7.1), given the transcript hash.
pub fn derive_secret(
    p: &dyn CryptoProvider,
    secret: &Secret,
    label: &[u8],
    transcript_hash: &[u8; HASH_LEN],
) -> Secret {
    expand_secret(p, Prefix::DTLS13, &secret.0, label, transcript_hash)
}

/// The early secret, first stage of the key schedule (RFC 8446 §7.1).
pub struct EarlySecret {
    prefix: Prefix,
    secret: Secret,
}

impl EarlySecret {
    /// `Early Secret = HKDF-Extract(0, PSK)`; without a PSK the IKM is 32 zero bytes, not the
    /// empty string (RFC 8446 §7.1).
    pub fn new(p: &dyn CryptoProvider, psk: Option<&[u8]>) -> Self {
        Self::with_prefix(p, Prefix::DTLS13, psk)
    }

    fn with_prefix(p: &dyn CryptoProvider, prefix: Prefix, psk: Option<&[u8]>) -> Self {
        let secret = hkdf_extract(p, &[0; HASH_LEN], psk.unwrap_or(&[0; HASH_LEN]));
        Self { prefix, secret }
    }

    /// `binder_key = Derive-Secret(Early Secret, "ext binder" | "res binder", "")`: the
    /// "ext binder" label for external PSKs, "res binder" for resumption PSKs, so that one kind
    /// cannot be passed off as the other (RFC 8446 §7.1).
    pub fn binder_key(&self, p: &dyn CryptoProvider, external: bool) -> Secret {
        let label: &[u8] = if external { b"ext binder" } else { b"res binder" };
        expand_secret(p, self.prefix, &self.secret.0, label, &empty_hash())
    }

    /// `client_early_traffic_secret = Derive-Secret(., "c e traffic", ClientHello)`, the key of
    /// epoch 1 (0-RTT data and EndOfEarlyData, RFC 9147 §6.1).
    pub fn client_early_traffic_secret(&self, p: &dyn CryptoProvider, client_hello_hash: &[u8; HASH_LEN]) -> Secret {
        expand_secret(p, self.prefix, &self.secret.0, b"c e traffic", client_hello_hash)
    }

    /// `early_exporter_master_secret = Derive-Secret(., "e exp master", ClientHello)`
    /// (RFC 8446 §7.1, for exporters over 0-RTT, RFC 8446 §7.5).
    pub fn early_exporter_master_secret(&self, p: &dyn CryptoProvider, client_hello_hash: &[u8; HASH_LEN]) -> Secret {
        expand_secret(p, self.prefix, &self.secret.0, b"e exp master", client_hello_hash)
    }

    /// Moves to the handshake secret:
    /// `HKDF-Extract(Derive-Secret(Early Secret, "derived", ""), (EC)DHE)`, with 32 zero bytes
    /// for the (EC)DHE input in `psk_ke` mode (`None`, RFC 8446 §7.1). For P-256 the shared
    /// secret is the 32-byte x-coordinate (RFC 8446 §7.4.2).
    pub fn into_handshake(self, p: &dyn CryptoProvider, shared_secret: Option<&[u8]>) -> HandshakeSecret {
        let salt = expand_secret(p, self.prefix, &self.secret.0, b"derived", &empty_hash());
        let secret = hkdf_extract(p, &salt.0, shared_secret.unwrap_or(&[0; HASH_LEN]));
        HandshakeSecret { prefix: self.prefix, secret }
    }
}

impl fmt::Debug for EarlySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EarlySecret(..)")
    }
}

/// The handshake secret, second stage of the key schedule (RFC 8446 §7.1).
pub struct HandshakeSecret {
    prefix: Prefix,
    secret: Secret,
}

impl HandshakeSecret {
    /// `client_handshake_traffic_secret = Derive-Secret(., "c hs traffic",
    /// ClientHello...ServerHello)`, the client's epoch 2 key.
    pub fn client_handshake_traffic_secret(&self, p: &dyn CryptoProvider, hello_hash: &[u8; HASH_LEN]) -> Secret {
        expand_secret(p, self.prefix, &self.secret.0, b"c hs traffic", hello_hash)
    }

    /// `server_handshake_traffic_secret = Derive-Secret(., "s hs traffic",
    /// ClientHello...ServerHello)`, the server's epoch 2 key.
    pub fn server_handshake_traffic_secret(&self, p: &dyn CryptoProvider, hello_hash: &[u8; HASH_LEN]) -> Secret {
        expand_secret(p, self.prefix, &self.secret.0, b"s hs traffic", hello_hash)
    }

    /// Moves to the master (main) secret:
    /// `HKDF-Extract(Derive-Secret(Handshake Secret, "derived", ""), 0)` (RFC 8446 §7.1).
    pub fn into_master(self, p: &dyn CryptoProvider) -> MasterSecret13 {
        let salt = expand_secret(p, self.prefix, &self.secret.0, b"derived", &empty_hash());
        let secret = hkdf_extract(p, &salt.0, &[0; HASH_LEN]);
        MasterSecret13 { prefix: self.prefix, secret }
    }
}

impl fmt::Debug for HandshakeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandshakeSecret(..)")
    }
}

/// The master secret ("main secret" in RFC 9846; the labels still say "master"), last stage
/// of the key schedule (RFC 8446 §7.1).
pub struct MasterSecret13 {
    prefix: Prefix,
    secret: Secret,
}

impl MasterSecret13 {
    /// `client_application_traffic_secret_0 = Derive-Secret(., "c ap traffic",
    /// ClientHello...server Finished)`, the client's epoch 3 key.
    pub fn client_application_traffic_secret_0(
        &self,
        p: &dyn CryptoProvider,
        server_finished_hash: &[u8; HASH_LEN],
    ) -> Secret {
        expand_secret(p, self.prefix, &self.secret.0, b"c ap traffic", server_finished_hash)
    }

    /// `server_application_traffic_secret_0 = Derive-Secret(., "s ap traffic",
    /// ClientHello...server Finished)`, the server's epoch 3 key.
    pub fn server_application_traffic_secret_0(
        &self,
        p: &dyn CryptoProvider,
        server_finished_hash: &[u8; HASH_LEN],
    ) -> Secret {
        expand_secret(p, self.prefix, &self.secret.0, b"s ap traffic", server_finished_hash)
    }

    /// `exporter_master_secret = Derive-Secret(., "exp master", ClientHello...server Finished)`.
    pub fn exporter_master_secret(&self, p: &dyn CryptoProvider, server_finished_hash: &[u8; HASH_LEN]) -> Secret {
        expand_secret(p, self.prefix, &self.secret.0, b"exp master", server_finished_hash)
    }

    /// `resumption_master_secret = Derive-Secret(., "res master", ClientHello...client
    /// Finished)`; note the longer transcript than the other three.
    pub fn resumption_master_secret(&self, p: &dyn CryptoProvider, client_finished_hash: &[u8; HASH_LEN]) -> Secret {
        expand_secret(p, self.prefix, &self.secret.0, b"res master", client_finished_hash)
    }
}

impl fmt::Debug for MasterSecret13 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterSecret13(..)")
    }
}

/// `finished_key = HKDF-Expand-Label(BaseKey, "finished", "", Hash.length)` (RFC 8446 §4.4.4),
/// where BaseKey is the sender's handshake traffic secret (or the binder key, §4.2.11.2).
pub fn finished_key(p: &dyn CryptoProvider, base_key: &Secret) -> Secret {
    finished_key_p(p, Prefix::DTLS13, base_key)
}

fn finished_key_p(p: &dyn CryptoProvider, prefix: Prefix, base_key: &Secret) -> Secret {
    expand_secret(p, prefix, &base_key.0, b"finished", &[])
}

/// `verify_data = HMAC(finished_key, Transcript-Hash(Handshake Context, Certificate*,
/// CertificateVerify*))` (RFC 8446 §4.4.4). `base_key` is the traffic secret, not the
/// finished key: the finished key is derived here.
pub fn finished_verify_data(
    p: &dyn CryptoProvider,
    base_key: &Secret,
    transcript_hash: &[u8; HASH_LEN],
) -> [u8; HASH_LEN] {
    verify_data_p(p, Prefix::DTLS13, base_key, transcript_hash)
}

fn verify_data_p(
    p: &dyn CryptoProvider,
    prefix: Prefix,
    base_key: &Secret,
    transcript_hash: &[u8; HASH_LEN],
) -> [u8; HASH_LEN] {
    let key = finished_key_p(p, prefix, base_key);
    p.hmac_sha256(&key.0, &[transcript_hash])
}

/// Checks a received Finished (or PSK binder) in constant time (RFC 8446 §4.4.4: recipients
/// MUST verify; a mismatch is decrypt_error).
pub fn verify_finished(
    p: &dyn CryptoProvider,
    base_key: &Secret,
    transcript_hash: &[u8; HASH_LEN],
    received: &[u8],
) -> bool {
    let expected = finished_verify_data(p, base_key, transcript_hash);
    // ct_eq on slices of different lengths is false without comparing contents.
    expected.as_slice().ct_eq(received).into()
}

/// `application_traffic_secret_N+1 = HKDF-Expand-Label(application_traffic_secret_N,
/// "traffic upd", "", Hash.length)` (RFC 8446 §7.2), after a KeyUpdate.
pub fn next_application_traffic_secret(p: &dyn CryptoProvider, current: &Secret) -> Secret {
    next_traffic_secret_p(p, Prefix::DTLS13, current)
}

fn next_traffic_secret_p(p: &dyn CryptoProvider, prefix: Prefix, current: &Secret) -> Secret {
    expand_secret(p, prefix, &current.0, b"traffic upd", &[])
}

/// The PSK of a ticket: `HKDF-Expand-Label(resumption_master_secret, "resumption",
/// ticket_nonce, Hash.length)` (RFC 8446 §4.6.1).
///
/// # Panics
/// If `ticket_nonce` is longer than 255 bytes (it is an `opaque <0..255>` field, so a decoded
/// nonce never is).
pub fn resumption_psk(p: &dyn CryptoProvider, resumption_master_secret: &Secret, ticket_nonce: &[u8]) -> Secret {
    resumption_psk_p(p, Prefix::DTLS13, resumption_master_secret, ticket_nonce)
}

fn resumption_psk_p(
    p: &dyn CryptoProvider,
    prefix: Prefix,
    resumption_master_secret: &Secret,
    ticket_nonce: &[u8],
) -> Secret {
    expand_secret(p, prefix, &resumption_master_secret.0, b"resumption", ticket_nonce)
}

/// A PSK binder: computed like a Finished with the binder key as base key, over the transcript
/// hash of the ClientHello truncated before the binders list (RFC 8446 §4.2.11.2).
pub fn psk_binder(
    p: &dyn CryptoProvider,
    binder_key: &Secret,
    truncated_transcript_hash: &[u8; HASH_LEN],
) -> [u8; HASH_LEN] {
    finished_verify_data(p, binder_key, truncated_transcript_hash)
}

/// The keys of one traffic secret for one AEAD (RFC 8446 §7.3, RFC 9147 §4.2.3):
///
/// ```text
/// key    = HKDF-Expand-Label(Secret, "key", "", key_length)
/// iv     = HKDF-Expand-Label(Secret, "iv",  "", 12)
/// sn_key = HKDF-Expand-Label(Secret, "sn",  "", key_length)
/// ```
///
/// The IV is the full 12 bytes for all three suites (RFC 8446 §5.3: iv_length is
/// max(8, N_MIN) = 12). Wiped on drop; `Debug` does not show the keys.
#[derive(Clone)]
pub struct TrafficKeys {
    alg: AeadAlgorithm,
    key: [u8; 32],
    iv: [u8; 12],
    sn_key: [u8; 32],
}

impl TrafficKeys {
    /// Derives the write key, IV and record-number key of `traffic_secret` for `alg`.
    pub fn derive(p: &dyn CryptoProvider, alg: AeadAlgorithm, traffic_secret: &Secret) -> Self {
        Self::derive_p(p, Prefix::DTLS13, alg, traffic_secret)
    }

    fn derive_p(p: &dyn CryptoProvider, prefix: Prefix, alg: AeadAlgorithm, traffic_secret: &Secret) -> Self {
        let n = alg.key_len();
        let mut keys = Self { alg, key: [0; 32], iv: [0; 12], sn_key: [0; 32] };
        let s = &traffic_secret.0;
        expand_label(p, prefix, s, b"key", &[], &mut keys.key[..n]);
        expand_label(p, prefix, s, b"iv", &[], &mut keys.iv);
        // RFC 9147 §4.2.3: the sn_key is as long as the AEAD key.
        expand_label(p, prefix, s, b"sn", &[], &mut keys.sn_key[..n]);
        keys
    }

    /// The AEAD these keys are for.
    pub fn algorithm(&self) -> AeadAlgorithm {
        self.alg
    }

    /// The AEAD write key (`alg.key_len()` bytes).
    pub fn key(&self) -> &[u8] {
        &self.key[..self.alg.key_len()]
    }

    /// The 12-byte write IV.
    pub fn iv(&self) -> &[u8; 12] {
        &self.iv
    }

    /// The record number encryption key (`alg.key_len()` bytes, RFC 9147 §4.2.3).
    pub fn sn_key(&self) -> &[u8] {
        &self.sn_key[..self.alg.key_len()]
    }
}

impl Drop for TrafficKeys {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
        self.sn_key.zeroize();
    }
}

impl fmt::Debug for TrafficKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrafficKeys").field("alg", &self.alg).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
