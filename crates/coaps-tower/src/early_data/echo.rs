//! Echo values (RFC 9175 §2.4): a timestamp and a MAC binding it to the peer.

use coaps_dtls::crypto::CryptoProvider;
use coaps_dtls::crypto::rustcrypto::RustCrypto;
use std::time::{Duration, SystemTime};

/// Bytes of the timestamp (seconds since the Unix epoch) and of the truncated tag.
const TIME: usize = 8;
const TAG: usize = 8;
pub(crate) const LEN: usize = TIME + TAG;

/// Why an Echo value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not of our format or its tag does not verify (forged, or for another peer).
    Forged,
    /// Older than the lifetime, or from the future.
    Stale,
}

fn tag(key: &[u8; 32], secs: u64, peer: &[u8]) -> [u8; 32] {
    RustCrypto.hmac_sha256(key, &[b"coaps-tower echo v1", &secs.to_be_bytes(), peer])
}

fn secs(now: SystemTime) -> u64 {
    now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A fresh Echo value for `peer` (its identity digest or address).
pub(crate) fn issue(key: &[u8; 32], now: SystemTime, peer: &[u8]) -> Vec<u8> {
    let s = secs(now);
    let mut v = s.to_be_bytes().to_vec();
    v.extend_from_slice(&tag(key, s, peer)[..TAG]);
    v
}

/// Checks an Echo value for `peer`: our tag over its timestamp, and no older than `lifetime`.
pub(crate) fn verify(
    key: &[u8; 32],
    now: SystemTime,
    lifetime: Duration,
    peer: &[u8],
    value: &[u8],
) -> Result<(), Refused> {
    let Ok(bytes) = <[u8; LEN]>::try_from(value) else { return Err(Refused::Forged) };
    let mut t = [0u8; TIME];
    t.copy_from_slice(&bytes[..TIME]);
    let issued = u64::from_be_bytes(t);
    let expected = tag(key, issued, peer);
    // Constant time: the tag is a MAC.
    let diff = expected[..TAG].iter().zip(&bytes[TIME..]).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff != 0 {
        return Err(Refused::Forged);
    }
    let now = secs(now);
    // A second of slack for clocks of nodes sharing the key.
    if issued > now + 1 || now.saturating_sub(issued) > lifetime.as_secs() {
        return Err(Refused::Stale);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_values_verify_for_their_peer_only_and_expire() {
        let key = [7u8; 32];
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let v = issue(&key, t0, b"a");
        assert_eq!(v.len(), LEN);
        assert_eq!(verify(&key, t0, Duration::from_secs(30), b"a", &v), Ok(()));
        assert_eq!(verify(&key, t0, Duration::from_secs(30), b"b", &v), Err(Refused::Forged));
        assert_eq!(verify(&[8u8; 32], t0, Duration::from_secs(30), b"a", &v), Err(Refused::Forged));
        let later = t0 + Duration::from_secs(31);
        assert_eq!(verify(&key, later, Duration::from_secs(30), b"a", &v), Err(Refused::Stale));
        let mut forged = v.clone();
        forged[LEN - 1] ^= 1;
        assert_eq!(verify(&key, t0, Duration::from_secs(30), b"a", &forged), Err(Refused::Forged));
        assert_eq!(verify(&key, t0, Duration::from_secs(30), b"a", &v[..LEN - 1]), Err(Refused::Forged));
        // A timestamp moved forward keeps no valid tag.
        let mut moved = v;
        moved[TIME - 1] ^= 1;
        assert_eq!(verify(&key, t0, Duration::from_secs(30), b"a", &moved), Err(Refused::Forged));
    }
}
