//! Seeded random and mutated inputs through every decoder: no panic, and anything accepted
//! re-encodes to something that decodes to the same value (checked inside each decoder).
use super::vectors::*;
use super::*;
use crate::codec::fuzzing::{XorShift, accepted_by};

#[test]
fn random_bytes_never_panic() {
    let decoders = all_decoders();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut accepted = 0;
    for _ in 0..20_000 {
        accepted += accepted_by(&decoders, &rng.input());
    }
    // Some random inputs are valid (e.g. short PSK identities), so the loop does exercise the
    // re-encoding check.
    assert!(accepted > 0);
}

#[test]
fn mutated_messages_never_panic() {
    let decoders = all_decoders();
    let mut seeds: Vec<Vec<u8>> = [
        CH_PSK,
        CH_ECDSA,
        PSK_CH2,
        ECDSA_CH2,
        PSK_HVR,
        PSK_SH,
        ECDSA_SH,
        ECDSA_SERVER_CERT,
        ECDSA_SKE,
        ECDSA_CERT_REQ,
        ECDSA_CKE,
        ECDSA_CV,
        ECDHE_PSK_SKE,
        ECDHE_PSK_CKE,
        PSK_CKE,
        PSK_NST,
    ]
    .iter()
    .map(|h| hex(h))
    .collect();
    seeds.push(full_client_hello().to_vec());
    seeds.push(full_server_hello().to_vec());
    seeds.push(all_client_extensions().to_vec());
    seeds.push(all_server_extensions().to_vec());
    seeds.extend(all_client_extensions().iter().map(|e| e.to_vec()));
    seeds.extend(all_server_extensions().iter().map(|e| e.to_vec()));

    let mut rng = XorShift(0x0123_4567_89ab_cdef);
    let mut accepted = 0;
    for seed in &seeds {
        for _ in 0..1000 {
            let mut m = seed.clone();
            for _ in 0..=rng.below(3) {
                match rng.below(5) {
                    0 if !m.is_empty() => {
                        let i = rng.below(m.len());
                        m[i] ^= 1 << rng.below(8);
                    }
                    1 if !m.is_empty() => {
                        let i = rng.below(m.len());
                        m[i] = rng.byte();
                    }
                    2 if !m.is_empty() => {
                        let i = rng.below(m.len());
                        m.remove(i);
                    }
                    3 => {
                        let i = rng.below(m.len() + 1);
                        m.insert(i, rng.byte());
                    }
                    _ => {
                        let n = rng.below(m.len() + 1);
                        m.truncate(n);
                    }
                }
            }
            accepted += accepted_by(&decoders, &m);
        }
    }
    assert!(accepted > 0);
}
