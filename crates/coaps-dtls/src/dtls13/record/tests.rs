use super::*;
use crate::crypto::rustcrypto::RustCrypto;
use crate::dtls13::key_schedule::Secret;
use aes::Aes128;

const ALGS: [AeadAlgorithm; 3] = [AeadAlgorithm::ChaCha20Poly1305, AeadAlgorithm::Aes128Gcm, AeadAlgorithm::Aes128Ccm8];

const STYLES: [HeaderStyle; 4] = [
    HeaderStyle { seq_len: SeqLen::Bits8, length: false },
    HeaderStyle { seq_len: SeqLen::Bits8, length: true },
    HeaderStyle { seq_len: SeqLen::Bits16, length: false },
    HeaderStyle { seq_len: SeqLen::Bits16, length: true },
];

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn keys(alg: AeadAlgorithm, seed: u8) -> TrafficKeys {
    TrafficKeys::derive(&RustCrypto, alg, &Secret::from_bytes([seed; 32]))
}

fn prot(alg: AeadAlgorithm, seed: u8) -> RecordProtection13 {
    RecordProtection13::new(&RustCrypto, &keys(alg, seed)).unwrap()
}

/// The only record of a datagram, which must be a ciphertext one.
fn single(datagram: &[u8]) -> CiphertextRecord<'_> {
    let mut it = split_datagram13(datagram);
    let Some(Record13::Ciphertext(rec)) = it.next() else { panic!("no ciphertext record") };
    assert!(it.next().is_none());
    assert!(!it.hit_malformed());
    rec
}

/// RFC 8439 §2.3 ChaCha20 block function, written out here so the record number mask can be
/// checked against something that shares no code with the `chacha20` crate.
fn chacha20_block_ref(key: &[u8; 32], counter: u32, nonce: &[u8; 12]) -> [u8; 64] {
    fn qr(s: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
        s[a] = s[a].wrapping_add(s[b]);
        s[d] = (s[d] ^ s[a]).rotate_left(16);
        s[c] = s[c].wrapping_add(s[d]);
        s[b] = (s[b] ^ s[c]).rotate_left(12);
        s[a] = s[a].wrapping_add(s[b]);
        s[d] = (s[d] ^ s[a]).rotate_left(8);
        s[c] = s[c].wrapping_add(s[d]);
        s[b] = (s[b] ^ s[c]).rotate_left(7);
    }
    let le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let mut init = [0u32; 16];
    init[..4].copy_from_slice(&[0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574]);
    for i in 0..8 {
        init[4 + i] = le(&key[4 * i..]);
    }
    init[12] = counter;
    for i in 0..3 {
        init[13 + i] = le(&nonce[4 * i..]);
    }
    let mut s = init;
    for _ in 0..10 {
        qr(&mut s, 0, 4, 8, 12);
        qr(&mut s, 1, 5, 9, 13);
        qr(&mut s, 2, 6, 10, 14);
        qr(&mut s, 3, 7, 11, 15);
        qr(&mut s, 0, 5, 10, 15);
        qr(&mut s, 1, 6, 11, 12);
        qr(&mut s, 2, 7, 8, 13);
        qr(&mut s, 3, 4, 9, 14);
    }
    let mut out = [0u8; 64];
    for i in 0..16 {
        out[4 * i..4 * i + 4].copy_from_slice(&s[i].wrapping_add(init[i]).to_le_bytes());
    }
    out
}

/// The record number mask computed without `SnCipher`: the `aes` crate directly, or the
/// reference ChaCha20 block above (RFC 9147 §4.2.3).
fn mask_ref(alg: AeadAlgorithm, sn_key: &[u8], sample: &[u8]) -> [u8; 16] {
    let sample: [u8; 16] = sample[..16].try_into().unwrap();
    match alg {
        AeadAlgorithm::ChaCha20Poly1305 => {
            let counter = u32::from_le_bytes(sample[..4].try_into().unwrap());
            let block = chacha20_block_ref(sn_key.try_into().unwrap(), counter, sample[4..].try_into().unwrap());
            block[..16].try_into().unwrap()
        }
        _ => {
            let aes = Aes128::new_from_slice(sn_key).unwrap();
            let mut block = aes::Block::from(sample);
            aes.encrypt_block(&mut block);
            block.into()
        }
    }
}

/// An independent sealer: header, AEAD over `inner` with nonce iv ^ seq and the clear header as
/// AAD, then the mask from [`mask_ref`].
fn seal_ref(keys: &TrafficKeys, epoch: u64, seq: u64, inner: &[u8], style: HeaderStyle) -> Vec<u8> {
    let alg = keys.algorithm();
    let mut out = vec![0x20 | (epoch & 3) as u8];
    if style.seq_len == SeqLen::Bits16 {
        out[0] |= 0x08;
        out.extend_from_slice(&(seq as u16).to_be_bytes());
    } else {
        out.push(seq as u8);
    }
    if style.length {
        out[0] |= 0x04;
        out.extend_from_slice(&((inner.len() + alg.tag_len()) as u16).to_be_bytes());
    }
    let mut nonce = *keys.iv();
    let s = seq.to_be_bytes();
    for i in 0..8 {
        nonce[4 + i] ^= s[i];
    }
    let aead = RustCrypto.aead(alg, keys.key()).unwrap();
    let mut body = inner.to_vec();
    aead.seal_in_place(&nonce, &out, &mut body).unwrap();
    // Too short a record cannot be masked; tests use such records only to see them refused.
    if body.len() >= 16 {
        let mask = mask_ref(alg, keys.sn_key(), &body);
        for i in 0..style.seq_len.byte_len() {
            out[1 + i] ^= mask[i];
        }
    }
    out.extend_from_slice(&body);
    out
}

#[test]
fn chacha_reference_matches_rfc8439_block_vector() {
    let key: [u8; 32] = core::array::from_fn(|i| i as u8);
    let nonce: [u8; 12] = unhex("000000090000004a00000000").try_into().unwrap();
    let block = chacha20_block_ref(&key, 1, &nonce);
    assert_eq!(
        block.to_vec(),
        unhex(
            "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e\
             d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"
        )
    );
}

#[test]
fn chacha_mask_matches_rfc9001_a5() {
    // RFC 9001 A.5: the QUIC ChaCha20 header protection mask. RFC 9147 §4.2.3 uses the same
    // construction (counter = first 4 sample bytes, little-endian; nonce = the next 12).
    let sn = SnCipher::new(
        AeadAlgorithm::ChaCha20Poly1305,
        &unhex("25a282b9e82f06f21f488917a4fc8f1b73573685608597d0efcb076b0ab7a7a4"),
    )
    .unwrap();
    let sample: [u8; 16] = unhex("5e5cd55c41f69080575d7999c25a5bfb").try_into().unwrap();
    assert_eq!(sn.mask(&sample)[..5], unhex("aefefe7d03")[..]);
}

#[test]
fn aes_mask_matches_rfc9001_a2() {
    // RFC 9001 A.2: AES-ECB header protection of the client Initial.
    let sn = SnCipher::new(AeadAlgorithm::Aes128Gcm, &unhex("9f50449e04a0e810283a1e9933adedd2")).unwrap();
    let sample: [u8; 16] = unhex("d1b1c98dd7689fb8ec11d242b123dc9b").try_into().unwrap();
    assert_eq!(sn.mask(&sample)[..5], unhex("437b9aec36")[..]);
}

#[test]
fn masks_match_independent_computation_including_counter_edges() {
    let mut rng = Lcg(7);
    for alg in ALGS {
        let k = keys(alg, 0x42);
        let sn = SnCipher::new(alg, k.sn_key()).unwrap();
        for round in 0..200 {
            let mut sample = [0u8; 16];
            rng.fill(&mut sample);
            // Counter extremes: 0, 1 and 2^32 - 1 (which the chacha20 stream wrapper refuses).
            match round {
                0 => sample[..4].copy_from_slice(&[0; 4]),
                1 => sample[..4].copy_from_slice(&[1, 0, 0, 0]),
                2 => sample[..4].copy_from_slice(&[0xff; 4]),
                3 => sample[..4].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]),
                _ => {}
            }
            assert_eq!(sn.mask(&sample), mask_ref(alg, k.sn_key(), &sample), "{alg:?} {sample:02x?}");
        }
    }
}

#[test]
fn seal_is_byte_identical_to_the_independent_sealer() {
    for alg in ALGS {
        let k = keys(alg, 3);
        let p = RecordProtection13::new(&RustCrypto, &k).unwrap();
        for style in STYLES {
            for (epoch, seq) in [(2u64, 0u64), (3, 1), (3, 0x1234), (7, 0xfffe_0102_0304), (4, u64::MAX - 1)] {
                for len in [0usize, 1, 15, 16, 500] {
                    let pt: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
                    let mut inner = pt.clone();
                    inner.push(23);
                    // CCM_8's 8-byte tag needs zero padding to reach 16 bytes of ciphertext.
                    while inner.len() + alg.tag_len() < 16 {
                        inner.push(0);
                    }
                    let mut out = vec![0xee; 3]; // appending keeps what is already there
                    p.seal(epoch, seq, ContentType::ApplicationData, &pt, &mut out, style).unwrap();
                    assert_eq!(&out[..3], &[0xee; 3]);
                    assert_eq!(out[3..], seal_ref(&k, epoch, seq, &inner, style)[..], "{alg:?} {style:?} {len}");
                    assert_eq!(out.len() - 3, p.sealed_len(len, style));
                }
            }
        }
    }
}

#[test]
fn round_trip_all_aeads_styles_and_lengths() {
    for alg in ALGS {
        let p = prot(alg, 1);
        for style in STYLES {
            for len in [0usize, 1, 15, 16, 500] {
                for seq in [0u64, 1, 200, 70_000] {
                    let pt: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                    let mut out = Vec::new();
                    p.seal(3, seq, ContentType::Handshake, &pt, &mut out, style).unwrap();
                    let rec = single(&out);
                    assert_eq!(rec.header.epoch_bits, 3);
                    assert_eq!(rec.header.style(), style);
                    assert_eq!(rec.header_bytes.len(), style.header_len());
                    assert!(rec.encrypted_record.len() >= MIN_ENCRYPTED_RECORD_LEN);
                    if style.length {
                        assert_eq!(rec.header.length, Some(rec.encrypted_record.len() as u16));
                    }
                    let opened = p.open(&rec, seq.checked_sub(1)).unwrap();
                    assert_eq!(opened.seq, seq);
                    assert_eq!(opened.content_type, ContentType::Handshake);
                    assert_eq!(opened.plaintext, pt, "{alg:?} {style:?} {len} {seq}");
                }
            }
        }
    }
}

#[test]
fn the_minimal_header_is_two_bytes_and_is_the_aad() {
    let k = keys(AeadAlgorithm::Aes128Gcm, 9);
    let p = RecordProtection13::new(&RustCrypto, &k).unwrap();
    let mut out = Vec::new();
    p.seal(2, 0x1ab, ContentType::Handshake, b"hello", &mut out, HeaderStyle::MINIMAL).unwrap();
    assert_eq!(out[0], 0b0010_0010);
    assert_eq!(out.len(), 2 + 6 + 16);
    // Unmask by hand and decrypt with the AEAD alone: AAD = the 2 clear header bytes, nonce =
    // iv XOR seq (RFC 8446 §5.3), the epoch nowhere.
    let mask = mask_ref(AeadAlgorithm::Aes128Gcm, k.sn_key(), &out[2..]);
    let aad = [out[0], out[1] ^ mask[0]];
    assert_eq!(aad[1], 0xab);
    let mut nonce = *k.iv();
    nonce[10] ^= 0x01;
    nonce[11] ^= 0xab;
    let mut body = out[2..].to_vec();
    RustCrypto.aead(AeadAlgorithm::Aes128Gcm, k.key()).unwrap().open_in_place(&nonce, &aad, &mut body).unwrap();
    assert_eq!(body, b"hello\x16");
}

#[test]
fn epoch_is_not_in_the_nonce() {
    // Epochs 3 and 7 share the header bits; with the same keys and sequence number the records
    // are identical (each epoch has its own keys, RFC 9147 §4).
    let p = prot(AeadAlgorithm::ChaCha20Poly1305, 5);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    p.seal(3, 9, ContentType::ApplicationData, b"x", &mut a, HeaderStyle::FULL).unwrap();
    p.seal(7, 9, ContentType::ApplicationData, b"x", &mut b, HeaderStyle::FULL).unwrap();
    assert_eq!(a, b);
}

#[test]
fn padding_is_stripped_and_zero_only_records_are_refused() {
    for alg in ALGS {
        let k = keys(alg, 11);
        let p = RecordProtection13::new(&RustCrypto, &k).unwrap();
        // content || type || 40 zeros, as a padding sender would make it.
        let mut inner = b"abc".to_vec();
        inner.push(21);
        inner.extend_from_slice(&[0; 40]);
        let rec = seal_ref(&k, 3, 4, &inner, HeaderStyle::FULL);
        let opened = p.open(&single(&rec), Some(3)).unwrap();
        assert_eq!((opened.content_type, &opened.plaintext[..]), (ContentType::Alert, &b"abc"[..]));

        // Only zeros: no content type at all (RFC 8446 §5.4).
        let rec = seal_ref(&k, 3, 5, &[0; 20], HeaderStyle::FULL);
        assert_eq!(p.open(&single(&rec), Some(4)), Err(OpenError13::InvalidInner));
        // A content type that cannot appear inside DTLSCiphertext (RFC 9147 §4.1).
        for bad in [20u8, 25, 99] {
            let rec = seal_ref(&k, 3, 6, &[1, 2, 3, bad, 0, 0, 0, 0, 0, 0, 0, 0], HeaderStyle::FULL);
            assert_eq!(p.open(&single(&rec), Some(5)), Err(OpenError13::InvalidInner));
        }
        // Ack (26) is fine.
        let rec = seal_ref(&k, 3, 7, &[0, 0, 26, 0, 0, 0, 0, 0, 0, 0, 0, 0], HeaderStyle::FULL);
        assert_eq!(p.open(&single(&rec), Some(6)).unwrap().content_type, ContentType::Ack);
        // Content over 2^14 after unpadding: record_overflow.
        let mut big = vec![1u8; MAX_PLAINTEXT_LEN + 1];
        big.push(23);
        let rec = seal_ref(&k, 3, 8, &big, HeaderStyle::FULL);
        assert_eq!(p.open(&single(&rec), Some(7)), Err(OpenError13::InvalidInner));
        // But 2^14 of content plus 255 bytes of padding is fine.
        let mut max = vec![1u8; MAX_PLAINTEXT_LEN];
        max.push(23);
        max.extend_from_slice(&[0; 255 - 16]);
        let rec = seal_ref(&k, 3, 9, &max, HeaderStyle::FULL);
        assert_eq!(p.open(&single(&rec), Some(8)).unwrap().plaintext.len(), MAX_PLAINTEXT_LEN);
    }
}

#[test]
fn oversized_plaintext_is_refused_by_seal() {
    let p = prot(AeadAlgorithm::Aes128Gcm, 1);
    let mut out = vec![1, 2];
    assert!(
        p.seal(3, 0, ContentType::ApplicationData, &vec![0; MAX_PLAINTEXT_LEN + 1], &mut out, HeaderStyle::FULL)
            .is_err()
    );
    assert_eq!(out, [1, 2]);
    p.seal(3, 0, ContentType::ApplicationData, &vec![0; MAX_PLAINTEXT_LEN], &mut out, HeaderStyle::FULL).unwrap();
}

#[test]
fn short_ciphertext_is_refused() {
    for alg in ALGS {
        let k = keys(alg, 2);
        let p = RecordProtection13::new(&RustCrypto, &k).unwrap();
        // A 15-byte encrypted_record (a CCM_8 sender that forgot to pad: 7 + 8).
        let mut dg = vec![0x2c | 3, 0x00, 0x00, 0x00, 15];
        dg.extend_from_slice(&[0xaa; 15]);
        assert_eq!(p.open(&single(&dg), None), Err(OpenError13::Malformed));
        // Also without a length field.
        let dg = [&[0x20 | 3, 0x00][..], &[0xaa; 15]].concat();
        assert_eq!(p.open(&single(&dg), None), Err(OpenError13::Malformed));
        // An authentic record cut to 15 bytes still fails, as Malformed, before any crypto.
        if alg == AeadAlgorithm::Aes128Ccm8 {
            let rec = seal_ref(&k, 3, 0, &[1, 23, 0, 0, 0, 0, 0], HeaderStyle::MINIMAL);
            assert_eq!(rec.len(), 2 + 15);
            assert_eq!(p.open(&single(&rec), None), Err(OpenError13::Malformed));
        }
    }
}

#[test]
fn every_single_bit_flip_is_rejected() {
    for alg in ALGS {
        let p = prot(alg, 4);
        for style in STYLES {
            let mut dg = Vec::new();
            p.seal(2, 77, ContentType::Handshake, b"finished message", &mut dg, style).unwrap();
            assert!(p.open(&single(&dg), Some(76)).is_ok());
            for i in 0..dg.len() {
                for bit in 0..8 {
                    let mut bad = dg.clone();
                    bad[i] ^= 1 << bit;
                    for rec in split_datagram13(&bad) {
                        if let Record13::Ciphertext(rec) = rec {
                            assert!(p.open(&rec, Some(76)).is_err(), "{alg:?} {style:?} byte {i} bit {bit}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn wrong_keys_fail_authentication() {
    let a = prot(AeadAlgorithm::Aes128Gcm, 1);
    let b = prot(AeadAlgorithm::Aes128Gcm, 2);
    let mut dg = Vec::new();
    a.seal(3, 0, ContentType::ApplicationData, b"data", &mut dg, HeaderStyle::FULL).unwrap();
    assert_eq!(b.open(&single(&dg), None), Err(OpenError13::Authentication));
}

#[test]
fn sequence_reconstruction() {
    use SeqLen::*;
    let r = reconstruct_seq;
    // Nothing received yet: expected 0.
    assert_eq!(r(None, 0, Bits8), 0);
    assert_eq!(r(None, 0x7f, Bits8), 0x7f);
    assert_eq!(r(None, 0xff, Bits8), 0xff); // nothing below 0
    // 8-bit wrap forward and backward around 256.
    assert_eq!(r(Some(255), 0x00, Bits8), 256);
    assert_eq!(r(Some(255), 0xff, Bits8), 255);
    assert_eq!(r(Some(250), 0x05, Bits8), 261);
    assert_eq!(r(Some(260), 0xfa, Bits8), 250);
    assert_eq!(r(Some(0x1_00fe), 0x02, Bits8), 0x1_0102);
    // The window edges: candidates in (expected - 128, expected + 128].
    assert_eq!(r(Some(999), 1000u16.wrapping_add(128) & 0xff, Bits8), 1128);
    assert_eq!(r(Some(999), 1000u16.wrapping_sub(128) & 0xff, Bits8), 1000 + 128);
    assert_eq!(r(Some(999), 1000u16.wrapping_sub(127) & 0xff, Bits8), 1000 - 127);
    // 16-bit wrap.
    assert_eq!(r(Some(0xffff), 0x0000, Bits16), 0x1_0000);
    assert_eq!(r(Some(0x1_0005), 0xfff0, Bits16), 0xfff0);
    assert_eq!(r(Some(0x2_fff0), 0x0003, Bits16), 0x3_0003);
    assert_eq!(r(Some(70_000), (70_001 & 0xffff) as u16, Bits16), 70_001);
    // Near the top of the 64-bit space nothing overflows.
    assert_eq!(r(Some(u64::MAX - 1), 0xff, Bits8), u64::MAX);
    assert_eq!(r(Some(u64::MAX), 0x00, Bits8), u64::MAX - 0xff);
    assert_eq!(r(Some(u64::MAX), 0xff, Bits8), u64::MAX);
    assert_eq!(r(Some(u64::MAX), 0xffff, Bits16), u64::MAX);
    for highest in [0u64, 1, 127, 128, 255, 256, 65_535, 65_536, 1 << 40] {
        for delta in -100i64..=100 {
            let Some(seq) = highest.checked_add_signed(delta) else { continue };
            assert_eq!(r(Some(highest), seq as u16 & 0xff, Bits8), seq, "8-bit {highest} {delta}");
            assert_eq!(r(Some(highest), seq as u16, Bits16), seq, "16-bit {highest} {delta}");
        }
    }
}

#[test]
fn receive_epoch_follows_8_and_16_bit_wraps() {
    for (alg, style, range) in [
        (AeadAlgorithm::Aes128Ccm8, HeaderStyle::MINIMAL, 240u64..300),
        (AeadAlgorithm::ChaCha20Poly1305, HeaderStyle { seq_len: SeqLen::Bits16, length: false }, 65_500..65_600),
    ] {
        let p = prot(alg, 8);
        let mut rx = ReceiveEpoch13::new(3, prot(alg, 8));
        // Start the receiver's window just below the range.
        rx.replay.mark(range.start - 1);
        for seq in range {
            let mut dg = Vec::new();
            p.seal(3, seq, ContentType::ApplicationData, &seq.to_be_bytes(), &mut dg, style).unwrap();
            let opened = rx.open(&single(&dg)).unwrap();
            assert_eq!(opened.seq, seq);
            assert_eq!(opened.plaintext, seq.to_be_bytes());
        }
    }
}

#[test]
fn reordered_records_within_the_window_open() {
    let p = prot(AeadAlgorithm::Aes128Gcm, 6);
    let mut rx = ReceiveEpoch13::new(2, prot(AeadAlgorithm::Aes128Gcm, 6));
    let order = [0u64, 5, 3, 130, 100, 129, 80, 250, 200, 300, 260];
    for seq in order {
        let mut dg = Vec::new();
        p.seal(2, seq, ContentType::Handshake, b"m", &mut dg, HeaderStyle::MINIMAL).unwrap();
        assert_eq!(rx.open(&single(&dg)).unwrap().seq, seq);
    }
    assert_eq!(rx.highest_received(), Some(300));
}

#[test]
fn epoch_reconstruction() {
    assert_eq!(reconstruct_epoch(2, [0, 1, 2]), Some(2));
    assert_eq!(reconstruct_epoch(3, [0, 2]), None);
    // After KeyUpdates: the most recent epoch with matching bits.
    assert_eq!(reconstruct_epoch(3, [3, 4, 5, 6, 7]), Some(7));
    assert_eq!(reconstruct_epoch(0, [5, 6, 7, 8]), Some(8));
    assert_eq!(reconstruct_epoch(1, [5, 6, 7, 8]), Some(5));
    assert_eq!(reconstruct_epoch(1, Vec::new()), None);
    assert_eq!(reconstruct_epoch(3, [u64::MAX, 3]), Some(u64::MAX));
}

#[test]
fn datagram_with_several_records() {
    let p = prot(AeadAlgorithm::ChaCha20Poly1305, 12);
    let mut dg = Vec::new();
    encode_plaintext13(ContentType::Handshake, 0, 1, b"server hello", &mut dg);
    p.seal(2, 0, ContentType::Handshake, b"encrypted extensions", &mut dg, HeaderStyle::choose(0, None, false))
        .unwrap();
    p.seal(2, 1, ContentType::Handshake, &[7; 300], &mut dg, HeaderStyle::choose(1, None, false)).unwrap();
    p.seal(2, 2, ContentType::Handshake, b"finished", &mut dg, HeaderStyle::choose(2, None, true)).unwrap();

    let mut it = split_datagram13(&dg);
    let Some(Record13::Plaintext(pt)) = it.next() else { panic!() };
    assert_eq!(pt.header.content_type, ContentType::Handshake);
    assert_eq!(pt.header.version, ProtocolVersion::DTLS1_2);
    assert_eq!((pt.header.epoch, pt.header.sequence_number), (0, 1));
    assert_eq!(pt.fragment, b"server hello");
    let mut rx = ReceiveEpoch13::new(2, prot(AeadAlgorithm::ChaCha20Poly1305, 12));
    let mut got = Vec::new();
    for rec in it.by_ref() {
        let Record13::Ciphertext(rec) = rec else { panic!() };
        got.push((rec.header.length.is_some(), rx.open(&rec).unwrap()));
    }
    assert!(!it.hit_malformed());
    assert_eq!(got.len(), 3);
    assert!(got[0].0 && got[1].0 && !got[2].0, "only the last record omits the length");
    assert_eq!(got[0].1.plaintext, b"encrypted extensions");
    assert_eq!(got[1].1.plaintext, [7; 300]);
    assert_eq!(got[2].1.plaintext, b"finished");
    assert_eq!(got.iter().map(|g| g.1.seq).collect::<Vec<_>>(), [0, 1, 2]);
}

#[test]
fn demultiplexing_stops_on_what_it_cannot_frame() {
    let p = prot(AeadAlgorithm::Aes128Gcm, 1);
    let mut good = Vec::new();
    p.seal(3, 0, ContentType::ApplicationData, b"a", &mut good, HeaderStyle::FULL).unwrap();
    let count = |dg: &[u8]| {
        let mut it = split_datagram13(dg);
        let n = it.by_ref().count();
        (n, it.hit_malformed())
    };
    assert_eq!(count(&good), (1, false));
    assert_eq!(count(&[]), (0, false));
    // DTLS 1.2 content types and anything outside 001xxxxx: rejected, rest dropped.
    for first in [20u8, 23, 24, 25, 0, 19, 64, 0x80, 0xff] {
        let mut dg = good.clone();
        dg.push(first);
        dg.extend_from_slice(&good);
        assert_eq!(count(&dg), (1, true), "first byte {first}");
    }
    // A connection ID (C bit) is never negotiated here.
    let mut dg = good.clone();
    dg.extend_from_slice(&[0x3c, 0, 0, 0, 16]);
    dg.extend_from_slice(&[0; 16]);
    assert_eq!(count(&dg), (1, true));
    // Truncated unified headers and lengths running past the end.
    for tail in [&[0x2c][..], &[0x2c, 0], &[0x2c, 0, 0, 0], &[0x24, 0, 0], &[0x24, 0, 0, 5, 1, 2]] {
        let dg = [&good[..], tail].concat();
        assert_eq!(count(&dg), (1, true), "{tail:02x?}");
    }
    // A plaintext record with a bad length.
    let dg = [&good[..], &[22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 1]].concat();
    assert_eq!(count(&dg), (1, true));
    // Records without a length swallow the rest: two of them read as one, which fails.
    let mut dg = Vec::new();
    p.seal(3, 0, ContentType::ApplicationData, b"one", &mut dg, HeaderStyle::MINIMAL).unwrap();
    p.seal(3, 1, ContentType::ApplicationData, b"two", &mut dg, HeaderStyle::MINIMAL).unwrap();
    let rec = single(&dg);
    assert!(p.open(&rec, None).is_err());
    // A zero-length record with the L bit parses (and is refused when opened).
    let rec = single(&[0x2c, 0, 0, 0, 0]);
    assert!(rec.encrypted_record.is_empty());
    assert_eq!(p.open(&rec, None), Err(OpenError13::Malformed));
}

#[test]
fn replay_window_is_updated_only_after_deprotection() {
    let p = prot(AeadAlgorithm::Aes128Gcm, 21);
    let mut rx = ReceiveEpoch13::new(3, prot(AeadAlgorithm::Aes128Gcm, 21));
    let mut dg = Vec::new();
    p.seal(3, 10, ContentType::ApplicationData, b"ten", &mut dg, HeaderStyle::FULL).unwrap();
    // A forgery claiming seq 10 first: it must not burn seq 10 nor move `highest`.
    let mut forged = dg.clone();
    *forged.last_mut().unwrap() ^= 1;
    assert_eq!(rx.open(&single(&forged)), Err(OpenError13::Authentication));
    assert_eq!(rx.highest_received(), None);
    assert_eq!(rx.limits().auth_failures(), 1);
    assert_eq!(rx.open(&single(&dg)).unwrap().seq, 10);
    assert_eq!(rx.open(&single(&dg)), Err(OpenError13::Replay));
    assert_eq!(rx.highest_received(), Some(10));
    // Far right then far left of the 64-entry window.
    let mut far = Vec::new();
    p.seal(3, 100, ContentType::ApplicationData, b"x", &mut far, HeaderStyle::FULL).unwrap();
    rx.open(&single(&far)).unwrap();
    let mut old = Vec::new();
    p.seal(3, 20, ContentType::ApplicationData, b"x", &mut old, HeaderStyle::FULL).unwrap();
    assert_eq!(rx.open(&single(&old)), Err(OpenError13::Replay));
    // An authentic record of the wrong epoch.
    let mut other = Vec::new();
    p.seal(2, 11, ContentType::ApplicationData, b"x", &mut other, HeaderStyle::FULL).unwrap();
    assert_eq!(rx.open(&single(&other)), Err(OpenError13::WrongEpoch));
    // An authentic record with an invalid inner plaintext leaves the window alone.
    let k = keys(AeadAlgorithm::Aes128Gcm, 21);
    let zeros = seal_ref(&k, 3, 101, &[0; 4], HeaderStyle::FULL);
    assert_eq!(rx.open(&single(&zeros)), Err(OpenError13::InvalidInner));
    let mut ok = Vec::new();
    p.seal(3, 101, ContentType::ApplicationData, b"x", &mut ok, HeaderStyle::FULL).unwrap();
    assert_eq!(rx.open(&single(&ok)).unwrap().seq, 101);
}

#[test]
fn ccm8_forgery_limit_retires_the_key() {
    // RFC 9147 App. A.3: v <= 2^7 for AEAD_AES_128_CCM_8.
    let mut rx = ReceiveEpoch13::new(3, prot(AeadAlgorithm::Aes128Ccm8, 1));
    let mut forged = vec![0x23, 0];
    forged.extend_from_slice(&[0x55; 16]);
    for i in 1..=128u64 {
        assert!(!rx.must_retire());
        assert_eq!(rx.open(&single(&forged)), Err(OpenError13::Authentication));
        assert_eq!(rx.limits().auth_failures(), i);
        assert_eq!(rx.limits().key_update_due(), i >= 64);
    }
    assert!(rx.must_retire());
    // Records that never reached the AEAD do not count.
    let mut rx = ReceiveEpoch13::new(3, prot(AeadAlgorithm::Aes128Ccm8, 1));
    assert_eq!(rx.open(&single(&[0x23, 0, 1, 2, 3])), Err(OpenError13::Malformed));
    assert_eq!(rx.open(&single(&[0x22, 0, 1, 2, 3])), Err(OpenError13::WrongEpoch));
    assert_eq!(rx.limits().auth_failures(), 0);
    // A deployment with extra forgery protection may raise the limit.
    let limits = AeadLimits::new(AeadAlgorithm::Aes128Ccm8).with_integrity_limit(1000);
    let mut rx = ReceiveEpoch13::new(3, prot(AeadAlgorithm::Aes128Ccm8, 1)).with_limits(limits);
    for _ in 0..200 {
        let _ = rx.open(&single(&forged));
    }
    assert!(!rx.must_retire());
}

#[test]
fn aead_limits() {
    let gcm = AeadLimits::new(AeadAlgorithm::Aes128Gcm);
    assert_eq!(gcm.confidentiality_limit(), 23_726_566);
    assert!((23_726_566f64 - 2f64.powf(24.5)).abs() < 1.0);
    assert_eq!(gcm.integrity_limit(), 1 << 36);
    let chacha = AeadLimits::new(AeadAlgorithm::ChaCha20Poly1305);
    assert_eq!(chacha.integrity_limit(), 1 << 36);
    assert_eq!(chacha.confidentiality_limit(), u64::MAX);
    let ccm8 = AeadLimits::new(AeadAlgorithm::Aes128Ccm8);
    assert_eq!((ccm8.confidentiality_limit(), ccm8.integrity_limit()), (1 << 23, 1 << 7));

    let mut l = AeadLimits { confidentiality_limit: 16, integrity_limit: 4, sent: 0, auth_failures: 0 };
    for i in 1..=16u64 {
        assert!(l.may_send());
        // Key update due from 14 = 16 - 16/8 on.
        assert_eq!(l.record_sent(), i >= 14, "{i}");
    }
    assert!(!l.may_send());
    assert!(!l.record_auth_failed());
    assert!(!l.record_auth_failed());
    assert!(!l.record_auth_failed());
    assert!(l.record_auth_failed());
    assert!(l.integrity_exhausted());
}

#[test]
fn send_epoch_counts_and_stops_at_the_limits() {
    let mut tx = SendEpoch13::new(3, prot(AeadAlgorithm::Aes128Gcm, 30)).with_limits(AeadLimits {
        confidentiality_limit: 3,
        integrity_limit: 1,
        sent: 0,
        auth_failures: 0,
    });
    let mut rx = ReceiveEpoch13::new(3, prot(AeadAlgorithm::Aes128Gcm, 30));
    for expect in 0..3u64 {
        let mut dg = Vec::new();
        let style = HeaderStyle::choose(tx.next_seq(), None, true);
        assert_eq!(tx.seal(ContentType::ApplicationData, b"p", &mut dg, style).unwrap(), expect);
        assert_eq!(rx.open(&single(&dg)).unwrap().seq, expect);
    }
    assert!(tx.key_update_due());
    let mut dg = vec![9];
    assert!(tx.seal(ContentType::ApplicationData, b"p", &mut dg, HeaderStyle::FULL).is_err());
    assert_eq!(dg, [9]);
    assert_eq!(tx.next_seq(), 3);
    assert_eq!(tx.limits().records_sent(), 3);

    // The sequence space never wraps.
    let mut tx = SendEpoch13::new(4, prot(AeadAlgorithm::ChaCha20Poly1305, 1));
    tx.next_seq = u64::MAX - 1;
    assert_eq!(tx.seal(ContentType::ApplicationData, b"", &mut Vec::new(), HeaderStyle::FULL).unwrap(), u64::MAX - 1);
    assert!(tx.seal(ContentType::ApplicationData, b"", &mut Vec::new(), HeaderStyle::FULL).is_err());
}

#[test]
fn header_style_choice() {
    assert_eq!(SeqLen::choose(0, None), SeqLen::Bits8);
    assert_eq!(SeqLen::choose(63, None), SeqLen::Bits8);
    assert_eq!(SeqLen::choose(64, None), SeqLen::Bits16);
    assert_eq!(SeqLen::choose(1000, Some(950)), SeqLen::Bits8);
    assert_eq!(SeqLen::choose(1000, Some(936)), SeqLen::Bits8);
    assert_eq!(SeqLen::choose(1000, Some(935)), SeqLen::Bits16);
    assert_eq!(SeqLen::choose(5, Some(u64::MAX)), SeqLen::Bits8);
    assert_eq!(HeaderStyle::choose(3, None, true), HeaderStyle::MINIMAL);
    assert_eq!(HeaderStyle::choose(300, Some(10), false), HeaderStyle::FULL);
    assert_eq!([HeaderStyle::MINIMAL, HeaderStyle::FULL].map(HeaderStyle::header_len), [2, 5]);
}

#[test]
fn size_helpers_agree_with_seal() {
    for alg in ALGS {
        let p = prot(alg, 1);
        for style in STYLES {
            for space in [0usize, 10, 20, 21, 22, 40, 1200] {
                let n = p.max_plaintext_len(space, style);
                let mut out = Vec::new();
                p.seal(3, 0, ContentType::ApplicationData, &vec![1; n], &mut out, style).unwrap();
                assert_eq!(out.len(), p.sealed_len(n, style));
                if space >= p.sealed_len(0, style) {
                    assert!(out.len() <= space && p.sealed_len(n + 1, style) > space, "{alg:?} {style:?} {space}");
                } else {
                    assert_eq!(n, 0);
                }
            }
        }
    }
}

#[test]
fn debug_does_not_show_keys() {
    let k = keys(AeadAlgorithm::ChaCha20Poly1305, 0xcd);
    let p = RecordProtection13::new(&RustCrypto, &k).unwrap();
    let rx = ReceiveEpoch13::new(3, prot(AeadAlgorithm::ChaCha20Poly1305, 0xcd));
    let printed = format!("{p:?} {rx:?}");
    for window in k.key().windows(2).chain(k.sn_key().windows(2)).chain(k.iv().windows(2)) {
        assert!(!printed.contains(&format!("{}, {}", window[0], window[1])), "{printed}");
    }
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }
}

#[test]
fn garbage_never_panics() {
    let mut rng = Lcg(0x5eed);
    let prots: Vec<_> = ALGS.iter().map(|a| prot(*a, 1)).collect();
    let mut rx: Vec<_> = ALGS.iter().map(|a| ReceiveEpoch13::new(3, prot(*a, 1))).collect();
    let mut sealed = Vec::new();
    prots[0].seal(3, 5, ContentType::ApplicationData, b"seed record", &mut sealed, HeaderStyle::FULL).unwrap();
    for round in 0..20_000 {
        let mut dg = if round % 2 == 0 {
            let mut dg = vec![0u8; (rng.next() % 80) as usize];
            rng.fill(&mut dg);
            // Bias the first bytes towards the interesting values.
            if let Some(b) = dg.first_mut() {
                *b = [0x20, 0x2c, 0x28, 0x24, 0x3f, 21, 22, 26, *b][(rng.next() % 9) as usize];
            }
            dg
        } else {
            sealed.clone()
        };
        // Mutate a few bytes of the valid record, or truncate / extend it.
        if round % 2 == 1 {
            for _ in 0..1 + rng.next() % 3 {
                let i = (rng.next() as usize) % dg.len();
                dg[i] ^= 1 << (rng.next() % 8);
            }
            match rng.next() % 4 {
                0 => dg.truncate((rng.next() as usize) % dg.len()),
                1 => dg.push(rng.next() as u8),
                _ => {}
            }
        }
        if dg.starts_with(&sealed) {
            continue; // the flips cancelled out, leaving the valid record intact
        }
        for rec in split_datagram13(&dg) {
            if let Record13::Ciphertext(rec) = rec {
                for (p, r) in prots.iter().zip(rx.iter_mut()) {
                    let highest = Some(rng.next());
                    assert!(p.open(&rec, highest).is_err(), "garbage opened: {dg:02x?}");
                    assert!(r.open(&rec).is_err());
                }
            }
        }
    }
}

/// Both AES forms of the record number key (kept 16-byte key, kept schedule) give the mask of
/// an independent AES-128 for every sample, whichever the CPU makes `SnCipher::new` pick.
#[test]
fn aes_record_number_mask_forms_agree() {
    let key = [0x5au8; 16];
    let kept = SnCipher::AesKey(Zeroizing::new(key));
    let schedule = SnCipher::Aes(Box::new(Aes128Enc::new_from_slice(&key).unwrap()));
    let chosen = SnCipher::new(AeadAlgorithm::Aes128Ccm8, &key).unwrap();
    for i in 0..64u8 {
        let sample = [i.wrapping_mul(37); 16].map(|b| b ^ i);
        let want = mask_ref(AeadAlgorithm::Aes128Ccm8, &key, &sample);
        assert_eq!(kept.mask(&sample), want);
        assert_eq!(schedule.mask(&sample), want);
        assert_eq!(chosen.mask(&sample), want);
    }
}

/// RFC 9147 §4 with a CID, written out from the text: `001CSLEE`, the CID, the sequence
/// number, the length; the whole header before record number encryption is the additional
/// data; the mask covers only the sequence number after the CID (§4.2.3).
fn seal_ref_cid(keys: &TrafficKeys, epoch: u64, seq: u64, inner: &[u8], style: HeaderStyle, cid: &[u8]) -> Vec<u8> {
    let alg = keys.algorithm();
    let mut out = vec![0x20 | 0x10 | (epoch & 3) as u8];
    out.extend_from_slice(cid);
    if style.seq_len == SeqLen::Bits16 {
        out[0] |= 0x08;
        out.extend_from_slice(&(seq as u16).to_be_bytes());
    } else {
        out.push(seq as u8);
    }
    if style.length {
        out[0] |= 0x04;
        out.extend_from_slice(&((inner.len() + alg.tag_len()) as u16).to_be_bytes());
    }
    let mut nonce = *keys.iv();
    for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
        *n ^= s;
    }
    let aead = RustCrypto.aead(alg, keys.key()).unwrap();
    let mut body = inner.to_vec();
    aead.seal_in_place(&nonce, &out, &mut body).unwrap();
    let mask = mask_ref(alg, keys.sn_key(), &body);
    for i in 0..style.seq_len.byte_len() {
        out[1 + cid.len() + i] ^= mask[i];
    }
    out.extend_from_slice(&body);
    out
}

#[test]
fn cid_records_match_the_reference_and_open() {
    for alg in ALGS {
        let k = keys(alg, 9);
        let p = prot(alg, 9);
        for style in STYLES {
            for cid in [&b"\x01"[..], b"\x0a\x0b\x0c\x0d", &[0x5a; 255][..]] {
                let mut dg = Vec::new();
                p.seal_cid(3, 0x1234, ContentType::ApplicationData, b"over a cid", &mut dg, style, cid).unwrap();
                let mut inner = b"over a cid".to_vec();
                inner.push(23);
                if inner.len() + alg.tag_len() < 16 {
                    inner.resize(16 - alg.tag_len(), 0);
                }
                assert_eq!(dg, seal_ref_cid(&k, 3, 0x1234, &inner, style, cid), "{alg:?} {style:?} {}", cid.len());
                assert_eq!(dg.len(), p.sealed_len(10, style) + cid.len());
                assert_eq!(first_record_cid13(&dg, cid.len()), Some(cid));
                let mut it = split_datagram13_cid(&dg, cid.len());
                let Some(Record13::Ciphertext(rec)) = it.next() else { panic!("no record") };
                assert!(it.next().is_none() && !it.hit_malformed());
                assert_eq!(rec.cid, cid);
                let o = p.open(&rec, Some(0x1233)).unwrap();
                assert_eq!((o.seq, o.plaintext.as_slice()), (0x1234, &b"over a cid"[..]));
                // Without a negotiated CID the C bit makes the record malformed (RFC 9147 §9).
                let mut it = split_datagram13(&dg);
                assert!(it.next().is_none() && it.hit_malformed());
            }
        }
    }
}

#[test]
fn the_cid_is_authenticated() {
    let p = prot(AeadAlgorithm::Aes128Gcm, 3);
    let mut dg = Vec::new();
    p.seal_cid(3, 5, ContentType::ApplicationData, b"x", &mut dg, HeaderStyle::FULL, b"abcd").unwrap();
    for i in 1..5 {
        let mut bad = dg.clone();
        bad[i] ^= 0x40;
        let Some(Record13::Ciphertext(rec)) = split_datagram13_cid(&bad, 4).next() else { panic!() };
        assert_eq!(p.open(&rec, Some(4)), Err(OpenError13::Authentication), "CID byte {i}");
    }
    // The same record presented as if its CID were part of a longer or shorter one.
    for len in [3, 5] {
        if let Some(Record13::Ciphertext(rec)) = split_datagram13_cid(&dg, len).next() {
            assert!(p.open(&rec, Some(4)).is_err(), "CID length {len}");
        }
    }
    // Inconsistent hand-made records are refused before any crypto.
    let Some(Record13::Ciphertext(rec)) = split_datagram13_cid(&dg, 4).next() else { panic!() };
    let forged = CiphertextRecord { cid: b"wxyz", ..rec };
    assert_eq!(p.open(&forged, Some(4)), Err(OpenError13::Malformed));
    let forged = CiphertextRecord { cid: b"", ..rec };
    assert_eq!(p.open(&forged, Some(4)), Err(OpenError13::Malformed));
}

#[test]
fn cid_parsing_is_total() {
    // Every prefix of a CID datagram of two records, at every CID length, parses without
    // panicking and never yields a record past the end.
    let p = prot(AeadAlgorithm::ChaCha20Poly1305, 1);
    let mut dg = Vec::new();
    p.seal_cid(2, 1, ContentType::Handshake, b"one", &mut dg, HeaderStyle::FULL, b"cid!").unwrap();
    p.seal_cid(2, 2, ContentType::Handshake, b"two", &mut dg, HeaderStyle::MINIMAL, b"cid!").unwrap();
    for end in 0..=dg.len() {
        for cid_len in [0, 1, 4, 7, 255, 1000] {
            let n = split_datagram13_cid(&dg[..end], cid_len).count();
            assert!(n <= 2);
            let _ = first_record_cid13(&dg[..end], cid_len);
        }
    }
    assert_eq!(split_datagram13_cid(&dg, 4).count(), 2);
    assert_eq!(first_record_cid13(&dg, 0), None);
    assert_eq!(first_record_cid13(&[0x25, 1, 2], 4), None, "no C bit");
    assert_eq!(first_record_cid13(&[25, 1, 2, 3, 4], 4), None, "a DTLS 1.2 tls12_cid record is not read here");
}
