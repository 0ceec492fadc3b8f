//! Seeded random and mutated inputs through every decoder: no panic, and anything accepted
//! re-encodes to something that decodes to the same value (checked inside each decoder).
use super::vectors::*;
use super::*;
use crate::codec::fuzzing::{XorShift, accepted_by};

#[test]
fn random_bytes_never_panic() {
    let decoders = all_decoders();
    let mut rng = XorShift(0x13d7_15fe_fc00_0001);
    let mut accepted = 0;
    for _ in 0..20_000 {
        accepted += accepted_by(&decoders, &rng.input());
    }
    // Short inputs are often valid (KeyUpdate, Finished/0, ...), so the re-encoding check runs.
    assert!(accepted > 0);
}

#[test]
fn mutated_messages_never_panic() {
    let decoders = all_decoders();
    let mut seeds: Vec<Vec<u8>> =
        [WOLF_CERT_CH1, WOLF_CERT_HRR, WOLF_CERT_CH2, WOLF_CERT_SH, WOLF_PSK_CH1, WOLF_PSK_SH]
            .iter()
            .map(|h| hex(h))
            .collect();
    for (v, t) in [
        (RFC8448_SERVER_HELLO, HandshakeType::ServerHello),
        (RFC8448_HELLO_RETRY_REQUEST, HandshakeType::ServerHello),
        (RFC8448_ENCRYPTED_EXTENSIONS, HandshakeType::EncryptedExtensions),
        (RFC8448_CERTIFICATE_VERIFY, HandshakeType::CertificateVerify),
        (RFC8448_NEW_SESSION_TICKET, HandshakeType::NewSessionTicket),
    ] {
        seeds.push(tls_body(v, t));
    }
    seeds.push(full_client_hello().to_vec());
    seeds.push(full_server_hello().to_vec());
    seeds.push(full_hrr().to_vec());
    seeds.push(full_encrypted_extensions().to_vec());
    seeds.push(full_certificate_request().to_vec());
    seeds.push(full_certificate().to_vec());
    seeds.push(rpk_certificate().to_vec());
    seeds.push(full_new_session_ticket().to_vec());
    seeds.push(full_ack().to_vec());
    seeds.push(offered_psks().to_vec());
    seeds.extend(all_client_extensions().iter().map(|e| e.to_vec()));

    let mut rng = XorShift(0x0123_4567_89ab_cdef);
    let mut accepted = 0;
    for seed in &seeds {
        for _ in 0..400 {
            let mut m = seed.clone();
            for _ in 0..=rng.below(3) {
                if m.is_empty() {
                    break;
                }
                let i = rng.below(m.len());
                match rng.below(4) {
                    0 => m[i] = rng.byte(),
                    1 => m[i] ^= 1 << rng.below(8),
                    2 => m.truncate(i),
                    _ => m.insert(i, rng.byte()),
                }
            }
            accepted += accepted_by(&decoders, &m);
        }
    }
    // Many single-byte changes stay valid (values inside opaque fields), so accepted values
    // go through the re-encoding check.
    assert!(accepted > 100, "only {accepted} mutants accepted");
}
