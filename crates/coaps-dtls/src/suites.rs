//! The cipher suites this engine implements, and what each one needs.

use crate::codec::CipherSuite;
use crate::crypto::AeadAlgorithm;
use crate::msgs::KeyExchangeAlgorithm;

/// A supported DTLS 1.2 cipher suite. All use SHA-256 for the PRF (RFC 5246 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SupportedSuite {
    /// The IANA code point.
    pub suite: CipherSuite,
    /// Key exchange.
    pub kx: KeyExchangeAlgorithm,
    /// Record protection.
    pub aead: AeadAlgorithm,
    /// The IANA name.
    pub name: &'static str,
}

macro_rules! suite {
    ($id:ident, $kx:ident, $aead:ident) => {
        SupportedSuite {
            suite: CipherSuite::$id,
            kx: KeyExchangeAlgorithm::$kx,
            aead: AeadAlgorithm::$aead,
            name: stringify!($id),
        }
    };
}

/// Every suite, in the default preference order: forward secrecy first, 16-byte tags before
/// CCM_8's 8-byte tag, and the CoAP-mandatory CCM_8 suites (RFC 7252 §9.1.3) always present.
pub const ALL_SUITES: &[SupportedSuite] = &[
    suite!(TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, EcdheEcdsa, ChaCha20Poly1305),
    suite!(TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, EcdheEcdsa, Aes128Gcm),
    suite!(TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, EcdheEcdsa, Aes128Ccm8),
    suite!(TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256, EcdhePsk, ChaCha20Poly1305),
    suite!(TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, Psk, ChaCha20Poly1305),
    suite!(TLS_PSK_WITH_AES_128_GCM_SHA256, Psk, Aes128Gcm),
    suite!(TLS_PSK_WITH_AES_128_CCM_8, Psk, Aes128Ccm8),
];

/// Looks a suite up by code point.
pub fn lookup(suite: CipherSuite) -> Option<&'static SupportedSuite> {
    ALL_SUITES.iter().find(|s| s.suite == suite)
}

/// Looks a suite up by IANA name (`TLS_PSK_WITH_AES_128_CCM_8`) or OpenSSL-style short name
/// (`PSK-AES128-CCM8`), case-insensitively.
pub fn by_name(name: &str) -> Option<&'static SupportedSuite> {
    let n = name.trim();
    ALL_SUITES
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(n) || openssl_name(s.suite).is_some_and(|o| o.eq_ignore_ascii_case(n)))
}

/// OpenSSL's name for a suite.
pub fn openssl_name(suite: CipherSuite) -> Option<&'static str> {
    Some(match suite {
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 => "ECDHE-ECDSA-AES128-CCM8",
        CipherSuite::TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-PSK-CHACHA20-POLY1305",
        CipherSuite::TLS_PSK_WITH_CHACHA20_POLY1305_SHA256 => "PSK-CHACHA20-POLY1305",
        CipherSuite::TLS_PSK_WITH_AES_128_GCM_SHA256 => "PSK-AES128-GCM-SHA256",
        CipherSuite::TLS_PSK_WITH_AES_128_CCM_8 => "PSK-AES128-CCM8",
        _ => return None,
    })
}

impl SupportedSuite {
    /// Whether the suite authenticates with a pre-shared key.
    pub fn uses_psk(&self) -> bool {
        matches!(self.kx, KeyExchangeAlgorithm::Psk | KeyExchangeAlgorithm::EcdhePsk)
    }
    /// Whether the suite runs an ephemeral P-256 exchange.
    pub fn uses_ecdhe(&self) -> bool {
        matches!(self.kx, KeyExchangeAlgorithm::EcdhePsk | KeyExchangeAlgorithm::EcdheEcdsa)
    }
}

/// The DTLS 1.3 suites (RFC 9147, RFC 8446 §B.4), by IANA name or the `TLS13-…` names that
/// wolfSSL uses, case-insensitively.
pub fn by_name13(name: &str) -> Option<CipherSuite> {
    let n = name.trim();
    [
        (CipherSuite::TLS_CHACHA20_POLY1305_SHA256, "TLS_CHACHA20_POLY1305_SHA256", "TLS13-CHACHA20-POLY1305-SHA256"),
        (CipherSuite::TLS_AES_128_GCM_SHA256, "TLS_AES_128_GCM_SHA256", "TLS13-AES128-GCM-SHA256"),
        (CipherSuite::TLS_AES_128_CCM_8_SHA256, "TLS_AES_128_CCM_8_SHA256", "TLS13-AES128-CCM-8-SHA256"),
    ]
    .into_iter()
    .find(|(_, iana, other)| iana.eq_ignore_ascii_case(n) || other.eq_ignore_ascii_case(n))
    .map(|(s, _, _)| s)
}
