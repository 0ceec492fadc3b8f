//! Known answers from RFC 8448 (TLS 1.3 traces, prefix "tls13 ") prove the construction; the
//! DTLS prefix is then pinned against values computed independently (Python hashlib/hmac over
//! the RFC 5869 definition, see the comments) because no DTLS 1.3 traces are published.

use super::*;
use crate::crypto::providers::all_providers;
use hkdf::Hkdf;
use sha2::Sha256;

/// Runs a known-answer check against every provider of this build (RustCrypto, and aws-lc-rs
/// with the `aws-lc` feature).
fn each_provider(check: impl Fn(&dyn CryptoProvider)) {
    for p in all_providers() {
        eprintln!("provider {}", p.name());
        check(&*p);
    }
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit")).collect()
}

fn h32(s: &str) -> [u8; 32] {
    unhex(s).try_into().expect("32 bytes")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const T: Prefix = Prefix::TLS13;

// RFC 8448 §3 "Simple 1-RTT Handshake".
const ECDHE: &str = "8bd4054fb55b9d63fdfbacf9f04b9f0d35e6d63f537563efd46272900f89492d";
const TH_CH_SH: &str = "860c06edc07858ee8e78f0e7428c58edd6b43f2ca3e6e95f02ed063cf0e1cad8";
const TH_CH_SF: &str = "9608102a0f1ccc6db6250b7b7e417b1a000eaada3daae4777a7686c9ff83df13";
const TH_CH_CF: &str = "209145a96ee8e2a122ff810047cc952684658d6049e86429426db87c54ad143d";

#[test]
fn hkdf_extract_rfc5869_case_1() {
    each_provider(hkdf_extract_rfc5869_case_1_with);
}

fn hkdf_extract_rfc5869_case_1_with(p: &dyn CryptoProvider) {
    let prk = hkdf_extract(p, &unhex("000102030405060708090a0b0c"), &[0x0b; 22]);
    assert_eq!(hex(prk.as_bytes()), "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5");
}

#[test]
fn hkdf_label_encoding_matches_rfc8448_info_bytes() {
    each_provider(hkdf_label_encoding_matches_rfc8448_info_bytes_with);
}

fn hkdf_label_encoding_matches_rfc8448_info_bytes_with(p: &dyn CryptoProvider) {
    // RFC 8448 §3 prints the HkdfLabel ("info") of the first "derived" step; expanding the
    // early secret with it through plain HKDF-Expand must equal our Expand-Label.
    let early = h32("33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a");
    let info =
        unhex("00200d746c733133206465726976656420e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    let mut direct = [0u8; 32];
    Hkdf::<Sha256>::from_prk(&early).unwrap().expand(&info, &mut direct).unwrap();
    assert_eq!(hex(&direct), "6f2615a108c702c5678f54fc9dbab69716c076189c48250cebeac3576c3611ba");
    let mut ours = [0u8; 32];
    expand_label(p, T, &early, b"derived", &empty_hash(), &mut ours);
    assert_eq!(ours, direct);
}

#[test]
fn rfc8448_simple_1rtt_key_schedule() {
    each_provider(rfc8448_simple_1rtt_key_schedule_with);
}

fn rfc8448_simple_1rtt_key_schedule_with(p: &dyn CryptoProvider) {
    let early = EarlySecret::with_prefix(p, T, None);
    assert_eq!(hex(early.secret.as_bytes()), "33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a");

    let hs = early.into_handshake(p, Some(&unhex(ECDHE)));
    assert_eq!(hex(hs.secret.as_bytes()), "1dc826e93606aa6fdc0aadc12f741b01046aa6b99f691ed221a9f0ca043fbeac");
    let c_hs = hs.client_handshake_traffic_secret(p, &h32(TH_CH_SH));
    let s_hs = hs.server_handshake_traffic_secret(p, &h32(TH_CH_SH));
    assert_eq!(hex(c_hs.as_bytes()), "b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21");
    assert_eq!(hex(s_hs.as_bytes()), "b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38");

    let ms = hs.into_master(p);
    assert_eq!(hex(ms.secret.as_bytes()), "18df06843d13a08bf2a449844c5f8a478001bc4d4c627984d5a41da8d0402919");
    let c_ap = ms.client_application_traffic_secret_0(p, &h32(TH_CH_SF));
    let s_ap = ms.server_application_traffic_secret_0(p, &h32(TH_CH_SF));
    assert_eq!(hex(c_ap.as_bytes()), "9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5");
    assert_eq!(hex(s_ap.as_bytes()), "a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643");
    assert_eq!(
        hex(ms.exporter_master_secret(p, &h32(TH_CH_SF)).as_bytes()),
        "fe22f881176eda18eb8f44529e6792c50c9a3f89452f68d8ae311b4309d3cf50"
    );
    let res_master = ms.resumption_master_secret(p, &h32(TH_CH_CF));
    assert_eq!(hex(res_master.as_bytes()), "7df235f2031d2a051287d02b0241b0bfdaf86cc856231f2d5aba46c434ec196c");
    // The NewSessionTicket of §3 carries ticket_nonce 00 00.
    assert_eq!(
        hex(resumption_psk_p(p, T, &res_master, &[0, 0]).as_bytes()),
        "4ecd0eb6ec3b4d87f5d6028f922ca4c5851a277fd41311c9e62d2c9492e1c4f3"
    );
}

#[test]
fn rfc8448_traffic_keys() {
    each_provider(rfc8448_traffic_keys_with);
}

fn rfc8448_traffic_keys_with(p: &dyn CryptoProvider) {
    let secret = |s| Secret::from_bytes(h32(s));
    let cases = [
        // (traffic secret, key, iv): server/client handshake, server/client application.
        (
            "b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38",
            "3fce516009c21727d0f2e4e86ee403bc",
            "5d313eb2671276ee13000b30",
        ),
        (
            "b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21",
            "dbfaa693d1762c5b666af5d950258d01",
            "5bd3c71b836e0b76bb73265f",
        ),
        (
            "a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643",
            "9f02283b6c9c07efc26bb9f2ac92e356",
            "cf782b88dd83549aadf1e984",
        ),
        (
            "9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5",
            "17422dda596ed5d9acd890e3c63f5051",
            "5b78923dee08579033e523d9",
        ),
    ];
    for (s, key, iv) in cases {
        let keys = TrafficKeys::derive_p(p, T, AeadAlgorithm::Aes128Gcm, &secret(s));
        assert_eq!(hex(keys.key()), key);
        assert_eq!(hex(keys.iv()), iv);
        assert_eq!(keys.sn_key().len(), 16);
    }
}

#[test]
fn rfc8448_finished() {
    each_provider(rfc8448_finished_with);
}

fn rfc8448_finished_with(p: &dyn CryptoProvider) {
    let s_hs = Secret::from_bytes(h32("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38"));
    let c_hs = Secret::from_bytes(h32("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21"));
    assert_eq!(
        hex(finished_key_p(p, T, &s_hs).as_bytes()),
        "008d3b66f816ea559f96b537e885c31fc068bf492c652f01f288a1d8cdc19fc8"
    );
    assert_eq!(
        hex(finished_key_p(p, T, &c_hs).as_bytes()),
        "b80ad01015fb2f0bd65ff7d4da5d6bf83f84821d1f87fdc7d3c75b5a7b42d9c4"
    );
    // The client Finished covers ClientHello..server Finished.
    assert_eq!(
        hex(&verify_data_p(p, T, &c_hs, &h32(TH_CH_SF))),
        "a8ec436d677634ae525ac1fcebe11a039ec17694fac6e98527b642f2edd5ce61"
    );
}

#[test]
fn rfc8448_resumed_0rtt_binder_and_early_secrets() {
    each_provider(rfc8448_resumed_0rtt_binder_and_early_secrets_with);
}

fn rfc8448_resumed_0rtt_binder_and_early_secrets_with(p: &dyn CryptoProvider) {
    // RFC 8448 §4: the PSK is the §3 ticket's.
    let psk = unhex("4ecd0eb6ec3b4d87f5d6028f922ca4c5851a277fd41311c9e62d2c9492e1c4f3");
    let early = EarlySecret::with_prefix(p, T, Some(&psk));
    assert_eq!(hex(early.secret.as_bytes()), "9b2188e9b2fc6d64d71dc329900e20bb41915000f678aa839cbb797cb7d8332c");
    let binder_key = early.binder_key(p, false);
    assert_eq!(hex(binder_key.as_bytes()), "69fe131a3bbad5d63c64eebcc30e395b9d8107726a13d074e389dbc8a4e47256");
    assert_eq!(
        hex(finished_key_p(p, T, &binder_key).as_bytes()),
        "5588673e72cb59c87d220caffe94f2dea9a3b1609f7d50e90a48227db9ed7eaa"
    );
    let truncated_ch_hash = h32("63224b2e4573f2d3454ca84b9d009a04f6be9e05711a8396473aefa01e924a14");
    assert_eq!(
        hex(&verify_data_p(p, T, &binder_key, &truncated_ch_hash)),
        "3add4fb2d8fdf822a0ca3cf7678ef5e88dae990141c5924d57bb6fa31b9e5f9d"
    );
    // "ext binder" must differ: that is the point of the two labels.
    assert_ne!(early.binder_key(p, true), binder_key);

    let ch_hash = h32("08ad0fa05d7c7233b1775ba2ff9f4c5b8b59276b7f227f13a976245f5d960913");
    assert_eq!(
        hex(early.client_early_traffic_secret(p, &ch_hash).as_bytes()),
        "3fbbe6a60deb66c30a32795aba0eff7eaa10105586e7be5c09678d63b6caab62"
    );
    assert_eq!(
        hex(early.early_exporter_master_secret(p, &ch_hash).as_bytes()),
        "b2026866610937d7423e5be90862ccf24c0e6091186d34f812089ff5be2ef7df"
    );
}

#[test]
fn traffic_update_label_against_hand_built_info() {
    each_provider(traffic_update_label_against_hand_built_info_with);
}

fn traffic_update_label_against_hand_built_info_with(p: &dyn CryptoProvider) {
    // RFC 8448 has no KeyUpdate; build HkdfLabel for "traffic upd" byte by byte instead.
    let secret = h32("9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5");
    for (prefix, wire) in [(T, &b"tls13 traffic upd"[..]), (Prefix::DTLS13, &b"dtls13traffic upd"[..])] {
        let mut info = vec![0x00, 0x20, wire.len() as u8];
        info.extend_from_slice(wire);
        info.push(0);
        let mut direct = [0u8; 32];
        Hkdf::<Sha256>::from_prk(&secret).unwrap().expand(&info, &mut direct).unwrap();
        assert_eq!(next_traffic_secret_p(p, prefix, &Secret::from_bytes(secret)).as_bytes(), &direct);
    }
}

/// The DTLS prefix, pinned. The expected values were computed outside this crate with Python's
/// hashlib/hmac, implementing RFC 5869 and RFC 8446 §7.1 directly with the label prefix
/// b"dtls13", on the RFC 8448 §3 inputs (no PSK, the §3 ECDHE secret and transcript hashes).
#[test]
fn dtls13_prefix_pinned() {
    each_provider(dtls13_prefix_pinned_with);
}

fn dtls13_prefix_pinned_with(p: &dyn CryptoProvider) {
    let early = EarlySecret::new(p, None);
    // The early secret does not depend on the prefix.
    assert_eq!(hex(early.secret.as_bytes()), "33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a");
    let hs = early.into_handshake(p, Some(&unhex(ECDHE)));
    assert_eq!(hex(hs.secret.as_bytes()), DTLS_HS_SECRET);
    let c_hs = hs.client_handshake_traffic_secret(p, &h32(TH_CH_SH));
    assert_eq!(hex(c_hs.as_bytes()), DTLS_C_HS);
    let ms = hs.into_master(p);
    assert_eq!(hex(ms.secret.as_bytes()), DTLS_MASTER);
    let s_ap = ms.server_application_traffic_secret_0(p, &h32(TH_CH_SF));
    assert_eq!(hex(s_ap.as_bytes()), DTLS_S_AP);

    let keys = TrafficKeys::derive(p, AeadAlgorithm::ChaCha20Poly1305, &c_hs);
    assert_eq!(hex(keys.key()), DTLS_C_HS_CHACHA_KEY);
    assert_eq!(hex(keys.iv()), DTLS_C_HS_IV);
    assert_eq!(hex(keys.sn_key()), DTLS_C_HS_CHACHA_SN);
    let keys = TrafficKeys::derive(p, AeadAlgorithm::Aes128Ccm8, &c_hs);
    // Shorter outputs of HKDF-Expand are prefixes only when the info is the same, and the
    // length is part of the info: so the 16-byte key is not the first half of the 32-byte one.
    assert_eq!(hex(keys.key()), DTLS_C_HS_AES_KEY);
    assert_eq!(hex(keys.sn_key()), DTLS_C_HS_AES_SN);

    assert_eq!(hex(&finished_verify_data(p, &c_hs, &h32(TH_CH_SF))), DTLS_C_FINISHED);
    assert_eq!(hex(next_application_traffic_secret(p, &s_ap).as_bytes()), DTLS_S_AP_1);
    assert_eq!(hex(resumption_psk(p, &s_ap, &[0, 1]).as_bytes()), DTLS_PSK_FROM_S_AP);
}

const DTLS_HS_SECRET: &str = "ca3b00400dda5821d05b71540280b71dff23443b9bf31cb2c5ce0dd3f755e643";
const DTLS_C_HS: &str = "0ac2c35eb415ee9574894b75d7a89af77aba06c2a783252418b7f5b78ddf8e21";
const DTLS_MASTER: &str = "f7f6fb3779f75e7496ca68e2a332b8bbf1728dc0aa0b856b0e990a4a7eaf7c2b";
const DTLS_S_AP: &str = "82e651e01cad4cddcb820e6f6612466f5ca2e52b139c2ef4d203ed9d60f9fd3d";
const DTLS_C_HS_CHACHA_KEY: &str = "817e83945d2791326baac4218e72a294b96d7fe98ec1ffe09e6002be7e02ca95";
const DTLS_C_HS_IV: &str = "72aac32713fb7728b8c7ae3d";
const DTLS_C_HS_CHACHA_SN: &str = "ce6549c0a3e4da394463bda0b7ee204af2b8dae5dd9b040fc0ea9b531efb2112";
const DTLS_C_HS_AES_KEY: &str = "1bd2c8f8c9d6a73a5550328f277fbdae";
const DTLS_C_HS_AES_SN: &str = "bda0c6fe81d52ca4ba00cc103cbf0b71";
const DTLS_C_FINISHED: &str = "0b99d347d1b28788dd99d05336bed935da4294d362ea7f06fce9edf1c6c512fe";
const DTLS_S_AP_1: &str = "c42795900fb10a91ced6c2fa979a724d264a9e68ae5700327506f39642def7b5";
const DTLS_PSK_FROM_S_AP: &str = "379bd3383333874f4bf81150e2e9398a1be6ef56b0fd98187f85495fd1be2981";

#[test]
fn public_functions_use_the_dtls_prefix() {
    each_provider(public_functions_use_the_dtls_prefix_with);
}

fn public_functions_use_the_dtls_prefix_with(p: &dyn CryptoProvider) {
    let s = Secret::from_bytes([7; 32]);
    let mut a = [0u8; 32];
    hkdf_expand_label(p, s.as_bytes(), b"finished", &[], &mut a);
    assert_eq!(&a, finished_key(p, &s).as_bytes());
    let mut b = [0u8; 32];
    expand_label(p, T, s.as_bytes(), b"finished", &[], &mut b);
    assert_ne!(a, b);
    assert_eq!(
        derive_secret(p, &s, b"c hs traffic", &[1; 32]),
        expand_secret(p, Prefix::DTLS13, &[7; 32], b"c hs traffic", &[1; 32])
    );
    assert_eq!(psk_binder(p, &s, &[2; 32]), finished_verify_data(p, &s, &[2; 32]));
}

#[test]
fn absent_secrets_are_zeros_not_empty() {
    each_provider(absent_secrets_are_zeros_not_empty_with);
}

fn absent_secrets_are_zeros_not_empty_with(p: &dyn CryptoProvider) {
    // RFC 8446 §7.1: a missing PSK / (EC)DHE input is 32 zero bytes. HKDF-Extract with an
    // empty IKM gives another value, so the two must not be confused.
    let zeros = EarlySecret::new(p, Some(&[0; 32]));
    let none = EarlySecret::new(p, None);
    let empty = EarlySecret::new(p, Some(&[]));
    assert_eq!(zeros.secret, none.secret);
    assert_ne!(empty.secret, none.secret);
    let a = EarlySecret::new(p, None).into_handshake(p, None);
    let b = EarlySecret::new(p, None).into_handshake(p, Some(&[0; 32]));
    assert_eq!(a.secret, b.secret);
}

#[test]
fn verify_finished_accepts_only_the_exact_value() {
    each_provider(verify_finished_accepts_only_the_exact_value_with);
}

fn verify_finished_accepts_only_the_exact_value_with(p: &dyn CryptoProvider) {
    let s = Secret::from_bytes([9; 32]);
    let th = [3; 32];
    let good = finished_verify_data(p, &s, &th);
    assert!(verify_finished(p, &s, &th, &good));
    let mut bad = good;
    bad[31] ^= 1;
    assert!(!verify_finished(p, &s, &th, &bad));
    assert!(!verify_finished(p, &s, &th, &good[..31]));
    assert!(!verify_finished(p, &s, &th, &[]));
    assert!(!verify_finished(p, &s, &[4; 32], &good));
}

#[test]
fn debug_hides_secrets() {
    each_provider(debug_hides_secrets_with);
}

fn debug_hides_secrets_with(p: &dyn CryptoProvider) {
    let s = Secret::from_bytes([0xab; 32]);
    let keys = TrafficKeys::derive(p, AeadAlgorithm::Aes128Gcm, &s);
    let early = EarlySecret::new(p, Some(&[0xab; 32]));
    let printed = format!("{s:?} {keys:?} {early:?}");
    assert!(!printed.contains("ab, ab") && !printed.contains("171") && !printed.contains("abab"), "{printed}");
    for b in keys.key().iter().chain(keys.iv()).chain(keys.sn_key()) {
        // Any Debug of a byte array would print decimal bytes separated by ", ".
        assert!(!printed.contains(&format!("{b}, ")), "{printed}");
    }
}

#[test]
fn empty_hash_constant_is_sha256_of_nothing() {
    use sha2::Digest;
    assert_eq!(super::empty_hash(), <[u8; 32]>::from(sha2::Sha256::digest([])));
}
