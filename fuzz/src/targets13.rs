//! DTLS 1.3 fuzz target bodies for the message parsers (`msgs13`), the record layer
//! (`record13`) and the HelloRetryRequest cookie (`cookie::verify13`). Each takes arbitrary
//! bytes; a panic is a finding.
//!
//! Where a decoder has a canonical encoding the round trip is checked byte for byte:
//! `encode(decode(x)) == x`. The only non-canonical input the 1.3 decoders accept is a hello
//! without its (optional, RFC 8446 §4.1.2) extensions block, which decodes as empty and is
//! re-encoded with an empty block.

use arbitrary::{Arbitrary, Unstructured};
use coaps_dtls::internal::codec::{CertificateType, Codec, ContentType, Reader};
use coaps_dtls::internal::cookie::{CookieConfig, CookieError, CookieKeys, HrrState};
use coaps_dtls::crypto::rustcrypto::RustCrypto;
use coaps_dtls::internal::tls13::{Secret, TrafficKeys};
use coaps_dtls::crypto::{AeadAlgorithm, SeededRng};
use coaps_dtls::internal::msgs13::*;
use coaps_dtls::internal::record13::{
    CiphertextRecord, HeaderStyle, MAX_ENCRYPTED_RECORD_LEN, MIN_ENCRYPTED_RECORD_LEN, OpenError13, ReceiveEpoch13,
    Record13, RecordProtection13, SendEpoch13, SeqLen, reconstruct_epoch, reconstruct_seq, split_datagram13,
};
use std::collections::HashSet;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Checks a decoded value against its input: byte-exact re-encoding, or (for the hellos'
/// optional extensions block, `optional_tail`) the input plus an empty block.
fn canonical(input: &[u8], enc: &[u8], optional_tail: bool) {
    if optional_tail && enc.len() == input.len() + 2 {
        assert_eq!(&enc[..input.len()], input, "round trip changed the bytes");
        assert_eq!(&enc[input.len()..], [0, 0], "absent extensions must re-encode as an empty block");
    } else {
        assert_eq!(enc, input, "round trip changed the bytes");
    }
}

fn round_trip<T: for<'b> Codec<'b> + Debug + PartialEq>(data: &[u8], optional_tail: bool) -> Option<T> {
    match T::read_exact(data) {
        Ok(v) => {
            let enc = v.to_vec();
            let again = T::read_exact(&enc).expect("re-encoding of a decoded message must decode");
            assert_eq!(again, v, "round trip changed the message");
            canonical(data, &enc, optional_tail);
            Some(v)
        }
        Err(e) => {
            // Every decoding failure maps to an alert (RFC 8446 §6.2).
            let _ = alert_for(&e);
            None
        }
    }
}

/// A DTLS 1.3 ClientHello body: round trip, accessors, the PSK binders offset and
/// `Truncate(ClientHello)` (RFC 8446 §4.2.11.2), and binder rewriting.
pub fn client_hello13(data: &[u8]) {
    let Some(ch) = round_trip::<ClientHello13>(data, true) else { return };
    let _ = ch.check_dtls13_legacy_fields();
    let _ = (ch.supported_versions(), ch.key_shares(), ch.supported_groups(), ch.signature_algorithms());
    let _ = (ch.psk_key_exchange_modes(), ch.cookie(), ch.server_name(), ch.server_certificate_types());
    // The stateless gate decides from a borrowed view, before the full decoding: wherever the
    // decoder accepts a ClientHello, the view must read the same facts from it.
    if let Ok(view) = coaps_dtls::gate::cookie::ClientHelloView::parse(data) {
        let v13 = coaps_dtls::gate::ClientHello13View::parse(&view);
        assert_eq!(v13.is_some(), ch.offers_version(coaps_dtls::ProtocolVersion::DTLS1_3));
        if let Some(v13) = v13 {
            assert_eq!(v13.cookie, ch.cookie());
            assert_eq!(v13.key_share_secp256r1, ch.key_share_for(coaps_dtls::internal::codec::NamedGroup::Secp256r1).is_some());
            assert_eq!((v13.pre_shared_key, v13.early_data), (ch.pre_shared_key().is_some(), ch.has_early_data()));
        }
    }
    let (again, offset) = ClientHello13::read_with_binders_offset(data).expect("decoded once, decodes again");
    assert_eq!(again, ch);
    assert_eq!(offset.is_some(), ch.pre_shared_key().is_some());
    // What the client computes while encoding must match what the server finds in the bytes.
    let mut enc = Vec::new();
    assert_eq!(ch.encode_with_binders_offset(&mut enc), offset);
    assert_eq!(ch.psk_binders_offset(), offset);
    if let (Some(off), Some(psks)) = (offset, ch.pre_shared_key()) {
        assert!(off <= data.len());
        assert_eq!(data.len() - off, psks.binders_encoded_len());
        let mut t = Vec::new();
        truncated_client_hello_transcript(data, off, &mut t);
        // Rewriting the binders with themselves is the identity; other lengths are refused.
        let mut body = data.to_vec();
        write_binders(&mut body, off, &psks.binders).expect("same binders fit");
        assert_eq!(body, data);
        let mut shorter = psks.binders.clone();
        shorter[0].pop();
        let mut body = data.to_vec();
        if write_binders(&mut body, off, &shorter).is_ok() {
            panic!("binders of another length were written");
        }
    }
}

/// A `server_hello` body: ServerHello or HelloRetryRequest, plus the version peek a
/// dual-version client uses first, which must agree with the full decoder.
pub fn server_hello13(data: &[u8]) {
    let peek = ServerHelloMessage13::peek_selected_version(data);
    let Some(m) = round_trip::<ServerHelloMessage13>(data, true) else { return };
    let selected = match &m {
        ServerHelloMessage13::ServerHello(sh) => {
            let _ = (sh.key_share(), sh.selected_identity(), sh.connection_id(), DowngradeSentinel::find(&sh.random));
            sh.selected_version()
        }
        ServerHelloMessage13::HelloRetryRequest(hrr) => {
            let _ = (hrr.selected_group(), hrr.cookie());
            hrr.selected_version()
        }
    };
    assert_eq!(peek, Ok(selected), "peek_selected_version disagrees with the decoder");
}

/// Which message [`msgs13`] decodes, by the first input byte.
#[derive(Debug, Clone, Copy)]
enum Msg {
    EncryptedExtensions,
    CertificateRequest,
    CertificateX509,
    CertificateRpk,
    CertificateVerify,
    Finished,
    NewSessionTicket,
    KeyUpdate,
    Ack,
    NewConnectionId,
    RequestConnectionId,
    OfferedPsks,
    KeyShareEntry,
    ClientExtension,
}

const MSGS: [Msg; 14] = [
    Msg::EncryptedExtensions,
    Msg::CertificateRequest,
    Msg::CertificateX509,
    Msg::CertificateRpk,
    Msg::CertificateVerify,
    Msg::Finished,
    Msg::NewSessionTicket,
    Msg::KeyUpdate,
    Msg::Ack,
    Msg::NewConnectionId,
    Msg::RequestConnectionId,
    Msg::OfferedPsks,
    Msg::KeyShareEntry,
    Msg::ClientExtension,
];

/// The selector byte for a message kind (used by the corpus generator).
pub fn msgs13_selector(name: &str) -> u8 {
    MSGS.iter().position(|m| format!("{m:?}") == name).expect("known message kind") as u8
}

fn certificate13(body: &[u8], typ: CertificateType) {
    match Certificate13::read_exact_with(body, typ) {
        Ok(c) => {
            if typ == CertificateType::RawPublicKey {
                assert!(c.certificate_list.len() <= 1, "RFC 7250: at most one raw public key");
            }
            assert!(c.certificate_list.iter().all(|e| !e.data.is_empty()));
            let _ = c.end_entity();
            let enc = c.to_vec();
            assert_eq!(Certificate13::read_exact_with(&enc, typ).expect("re-encoded Certificate decodes"), c);
            canonical(body, &enc, false);
        }
        Err(e) => {
            let _ = alert_for(&e);
        }
    }
}

/// First byte: the message kind (see `MSGS`, modulo their number); the rest is the body.
/// Covers EncryptedExtensions, CertificateRequest, Certificate (X.509 and raw public key),
/// CertificateVerify, Finished, NewSessionTicket, KeyUpdate, ACK, NewConnectionId,
/// RequestConnectionId, and on their own the pre_shared_key offer, a key share entry and any
/// ClientHello extension.
pub fn msgs13(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else { return };
    match MSGS[usize::from(sel) % MSGS.len()] {
        Msg::EncryptedExtensions => {
            if let Some(ee) = round_trip::<EncryptedExtensions13>(body, false) {
                let _ = (ee.has_early_data(), ee.server_certificate_type(), ee.client_certificate_type());
            }
        }
        Msg::CertificateRequest => {
            if let Some(cr) = round_trip::<CertificateRequest13>(body, false) {
                let _ = (cr.signature_algorithms(), cr.certificate_authorities());
            }
        }
        Msg::CertificateX509 => certificate13(body, CertificateType::X509),
        Msg::CertificateRpk => certificate13(body, CertificateType::RawPublicKey),
        Msg::CertificateVerify => {
            round_trip::<CertificateVerify13>(body, false);
        }
        Msg::Finished => {
            if let Ok(f) = Finished13::read_exact_with(body, 32) {
                assert_eq!(f.to_vec(), body);
            } else {
                assert_ne!(body.len(), 32, "a 32-byte Finished must decode");
            }
        }
        Msg::NewSessionTicket => {
            if let Some(nst) = round_trip::<NewSessionTicket13>(body, false) {
                assert!(!nst.ticket.is_empty());
                let _ = nst.max_early_data_size();
            }
        }
        Msg::KeyUpdate => {
            let ku = round_trip::<KeyUpdate>(body, false);
            assert_eq!(ku.is_some(), body.len() == 1);
        }
        Msg::Ack => {
            if let Some(ack) = round_trip::<Ack>(body, false) {
                assert_eq!(ack.record_numbers.len() * 16 + 2, body.len());
            }
        }
        Msg::NewConnectionId => {
            round_trip::<NewConnectionId>(body, false);
        }
        Msg::RequestConnectionId => {
            round_trip::<RequestConnectionId>(body, false);
        }
        Msg::OfferedPsks => {
            if let Some(p) = round_trip::<OfferedPsks>(body, false) {
                assert_eq!(p.identities.len(), p.binders.len());
                assert!(p.binders.iter().all(|b| (32..=255).contains(&b.len())));
                let mut b = Vec::new();
                p.encode_binders(&mut b);
                assert_eq!(b.len(), p.binders_encoded_len());
                assert!(body.ends_with(&b));
            }
        }
        Msg::KeyShareEntry => {
            round_trip::<KeyShareEntry>(body, false);
        }
        Msg::ClientExtension => {
            if let Some(ext) = round_trip::<ClientExtension13>(body, false) {
                assert_eq!(u16::from(ext.ext_type()), u16::from_be_bytes([body[0], body[1]]));
            }
        }
    }
}

fn alg_of(b: u8) -> AeadAlgorithm {
    match b % 3 {
        0 => AeadAlgorithm::ChaCha20Poly1305,
        1 => AeadAlgorithm::Aes128Gcm,
        _ => AeadAlgorithm::Aes128Ccm8,
    }
}

/// Record protection under fixed keys derived from `label`.
pub fn fixed_protection(alg: AeadAlgorithm, label: u8) -> RecordProtection13 {
    let keys = TrafficKeys::derive(&RustCrypto, alg, &Secret::from_bytes([label; 32]));
    RecordProtection13::new(&RustCrypto, &keys).expect("keys")
}

fn check_split(datagram: &[u8]) -> Vec<CiphertextRecord<'_>> {
    let mut out = Vec::new();
    let mut consumed = 0usize;
    let mut records = split_datagram13(datagram);
    for rec in records.by_ref() {
        match rec {
            Record13::Plaintext(raw) => {
                assert!(matches!(
                    raw.header.content_type,
                    ContentType::Alert | ContentType::Handshake | ContentType::Ack
                ));
                assert_eq!(raw.fragment.len(), usize::from(raw.header.length));
                consumed += 13 + raw.fragment.len();
            }
            Record13::Ciphertext(ct) => {
                assert_eq!(ct.header_bytes.len(), ct.header.style().header_len());
                assert_eq!(ct.header_bytes[0] & 0xe0, 0x20, "fixed bits");
                assert_eq!(ct.header_bytes[0] & 0x10, 0, "no CID is ever accepted");
                assert!(ct.header.epoch_bits <= 3);
                match ct.header.length {
                    Some(l) => assert_eq!(usize::from(l), ct.encrypted_record.len()),
                    // Without a length the record runs to the end of the datagram.
                    None => assert_eq!(consumed + ct.header_bytes.len() + ct.encrypted_record.len(), datagram.len()),
                }
                consumed += ct.header_bytes.len() + ct.encrypted_record.len();
                out.push(ct);
            }
        }
        assert!(consumed <= datagram.len());
    }
    if !records.hit_malformed() {
        assert_eq!(consumed, datagram.len(), "a well-formed datagram is consumed whole");
    }
    out
}

#[derive(Debug, Arbitrary)]
enum RecordOp {
    /// Seal a record at `seq` (low 48 bits) with an arbitrary content type and plaintext.
    Seal {
        seq: u64,
        content_type: u8,
        plaintext: Vec<u8>,
        seq16: bool,
        length: bool,
        flip: Option<(u16, u8)>,
    },
    /// Deliver sealed record `index` (modulo how many) again, or a raw datagram.
    Replay(u8),
    Raw(Vec<u8>),
}

/// The DTLS 1.3 record layer. First byte: AEAD (mod 3) and epoch (bits 2-3 plus 3); then
/// either (bit 4 clear) one datagram split with `split_datagram13` and every ciphertext record
/// opened under fixed keys, or (bit 4 set) `arbitrary` operations sealing and opening records
/// with the same keys: every sealed record opens to what was sealed exactly once, replays and
/// any modification are refused, and the sequence number is reconstructed.
pub fn record13(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    let alg = alg_of(sel);
    let epoch = 3 + u64::from((sel >> 2) & 3);
    let mut rx = ReceiveEpoch13::new(epoch, fixed_protection(alg, 1));
    if sel & 0x10 == 0 {
        for ct in check_split(rest) {
            match rx.open(&ct) {
                Ok(o) => {
                    // Forging a tag is out of reach: only our own records open.
                    assert!(o.plaintext.len() <= 1 << 14);
                    assert!(ct.encrypted_record.len() >= MIN_ENCRYPTED_RECORD_LEN);
                }
                Err(OpenError13::Malformed) => assert!(
                    ct.encrypted_record.len() < MIN_ENCRYPTED_RECORD_LEN
                        || ct.encrypted_record.len() > MAX_ENCRYPTED_RECORD_LEN
                ),
                Err(_) => {}
            }
        }
        return;
    }
    let tx_prot = fixed_protection(alg, 1);
    let mut tx = SendEpoch13::new(epoch, fixed_protection(alg, 1));
    let mut u = Unstructured::new(rest);
    let mut sealed: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut accepted: HashSet<u64> = HashSet::new();
    let mut steps = 0;
    while let Ok(op) = u.arbitrary::<RecordOp>() {
        steps += 1;
        if steps > 64 {
            break;
        }
        let (expect, datagram) = match op {
            RecordOp::Seal { seq, content_type, plaintext, seq16, length, flip } => {
                let seq = seq & ((1 << 48) - 1);
                let style = HeaderStyle { seq_len: if seq16 { SeqLen::Bits16 } else { SeqLen::Bits8 }, length };
                let ct = ContentType::from(content_type);
                let mut out = Vec::new();
                let r = tx_prot.seal(epoch, seq, ct, &plaintext, &mut out, style);
                if plaintext.len() > 1 << 14 {
                    assert!(r.is_err());
                    continue;
                }
                r.expect("seal");
                assert_eq!(out.len(), tx_prot.sealed_len(plaintext.len(), style));
                let modified = match flip {
                    Some((at, mask)) if mask != 0 => {
                        let i = usize::from(at) % out.len();
                        out[i] ^= mask;
                        true
                    }
                    _ => false,
                };
                sealed.push((seq, out.clone()));
                // With type 0 the last non-zero plaintext byte becomes the type (RFC 8446
                // §5.4): the record means something else, so only totality is checked.
                (if modified || content_type == 0 { None } else { Some((seq, ct, plaintext)) }, out)
            }
            RecordOp::Replay(i) => {
                let Some((_, d)) = sealed.get(usize::from(i) % sealed.len().max(1)) else { continue };
                (None, d.clone())
            }
            RecordOp::Raw(d) => (None, d),
        };
        let before = rx.highest_received();
        let cts = check_split(&datagram);
        for ct in &cts {
            let r = rx.open(ct);
            if let Ok(o) = &r {
                assert!(accepted.insert(o.seq), "record {} accepted twice", o.seq);
            }
            if let Some((seq, ct_type, plaintext)) = &expect {
                match &r {
                    Ok(o) => {
                        assert_eq!(o.seq, *seq);
                        assert_eq!(&o.plaintext, plaintext);
                        assert_eq!(o.content_type, *ct_type);
                    }
                    // The sequence number is reconstructed to the closest candidate; a
                    // record further than half the window from the expected one lands
                    // elsewhere and fails authentication, as the RFC accepts.
                    Err(OpenError13::Authentication) => {
                        let win = if ct.header.seq_len == SeqLen::Bits8 { 1u64 << 8 } else { 1 << 16 };
                        let expected = before.map_or(0, |h| h + 1);
                        assert!(seq.abs_diff(expected) >= win / 2, "seq {seq} not recovered next to {expected}");
                    }
                    Err(OpenError13::Replay) => assert!(accepted.contains(seq) || before.is_some()),
                    // RFC 9147 §4.1: only these types exist inside DTLSCiphertext.
                    Err(OpenError13::InvalidInner) => assert!(!matches!(
                        ct_type,
                        ContentType::Alert
                            | ContentType::Handshake
                            | ContentType::ApplicationData
                            | ContentType::Heartbeat
                            | ContentType::Ack
                    )),
                    Err(e) => panic!("own record refused: {e:?}"),
                }
            }
        }
        // Through the stateful sender too: sequence numbers increase by one per record.
        let n = tx.next_seq();
        let mut out = Vec::new();
        if tx
            .seal(ContentType::ApplicationData, &datagram[..datagram.len().min(64)], &mut out, HeaderStyle::FULL)
            .is_ok()
        {
            assert_eq!(tx.next_seq(), n + 1);
        }
    }
    // Sequence number reconstruction (RFC 9147 §4.2.2) on its own: the low bits always match,
    // and any number within half a window of the expected one comes back exactly.
    if let Ok((h, s, b8)) = u.arbitrary::<(Option<u64>, u64, bool)>() {
        let (h, s) = (h.map(|h| h >> 16), s >> 16);
        let len = if b8 { SeqLen::Bits8 } else { SeqLen::Bits16 };
        let mask = (1u64 << len.bits()) - 1;
        let got = reconstruct_seq(h, (s & mask) as u16, len);
        assert_eq!(got & mask, s & mask);
        let expected = h.map_or(0, |h| h + 1);
        if s.abs_diff(expected) < (mask + 1) / 2 {
            assert_eq!(got, s, "reconstruct_seq({h:?}, {:#x}) missed {s}", s & mask);
        }
        let e = reconstruct_epoch(b8 as u8 | (s as u8 & 2), [0, 1, 2, 3, h.unwrap_or(4)]);
        assert!(e.is_some_and(|e| e & 3 == u64::from(b8 as u8 | (s as u8 & 2))));
    }
}

#[derive(Debug, Arbitrary)]
enum CookieOp {
    /// Check the cookie as issued, maybe flipped, from the same or another address, after
    /// `advance_ms`.
    Verify { flips: Vec<(u8, u8)>, other_peer: bool, advance_ms: u16 },
    /// Rotate the secret.
    Rotate,
    /// Verify arbitrary bytes.
    Raw(Vec<u8>),
}

/// The stateless DTLS 1.3 HelloRetryRequest cookie: arbitrary bytes never verify; the
/// issued cookie verifies only from its own address, unmodified, within its lifetime, under
/// the current or previous secret, and gives back the state it was made with.
pub fn cookie13(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok((hash, suite, group, lifetime_s, v6)) = u.arbitrary::<([u8; 32], u16, u16, u8, bool)>() else { return };
    let lifetime = Duration::from_secs(u64::from(lifetime_s % 120) + 1);
    let config = CookieConfig { rotate_every: lifetime, lifetime };
    let mut now = Instant::now();
    let mut rng = SeededRng::from_seed_u64(0xc00c1e);
    let mut keys = CookieKeys::new(config, now, &mut rng);
    let peer: SocketAddr = if v6 { "[2001:db8::1]:5683" } else { "192.0.2.9:5683" }.parse().expect("literal");
    let other: SocketAddr = if v6 { "[2001:db8::1]:5684" } else { "192.0.2.10:5683" }.parse().expect("literal");
    // The 54-byte cookie encodes a TLS 1.3 suite (0x13xx, low byte < 0x80) and "secp256r1 or
    // none" in one byte; anything else is refused up front, never encoded wrongly.
    let raw = HrrState { client_hello1_hash: hash, cipher_suite: suite, group };
    let representable = suite & 0xff00 == 0x1300 && suite & 0xff < 0x80 && matches!(group, 0 | 23);
    assert_eq!(keys.generate13(&RustCrypto, now, peer, &raw).is_ok(), representable, "{raw:?}");
    let state = HrrState { cipher_suite: 0x1300 | (suite & 0x7f), group: if group & 1 == 1 { 23 } else { 0 }, ..raw };
    let cookie = keys.generate13(&RustCrypto, now, peer, &state).expect("generate");
    let issued = now;
    let mut rotations = 0u32;
    let mut steps = 0;
    while let Ok(op) = u.arbitrary::<CookieOp>() {
        steps += 1;
        if steps > 64 {
            break;
        }
        match op {
            CookieOp::Verify { flips, other_peer, advance_ms } => {
                now += Duration::from_millis(u64::from(advance_ms));
                let mut c = cookie.as_bytes().to_vec();
                for (at, mask) in flips.iter().take(8) {
                    let i = usize::from(*at) % c.len();
                    c[i] ^= mask;
                }
                let modified = c != cookie.as_bytes();
                let from = if other_peer { other } else { peer };
                let r = keys.verify13(&RustCrypto, now, from, &c);
                let fresh = now - issued <= lifetime && rotations <= 1;
                match r {
                    Ok((st, info)) => {
                        assert!(!modified, "a modified cookie verified");
                        assert!(!other_peer, "a cookie verified from another address");
                        assert!(fresh, "a stale cookie verified");
                        assert_eq!(st, state);
                        assert_eq!(info.age, now - issued);
                    }
                    Err(e) => {
                        assert!(modified || other_peer || !fresh, "the issued cookie was refused: {e:?}");
                        if !modified && !other_peer && rotations > 1 {
                            assert_eq!(e, CookieError::UnknownKey);
                        }
                    }
                }
            }
            CookieOp::Rotate => {
                keys.rotate(now, &mut rng);
                rotations += 1;
            }
            CookieOp::Raw(bytes) => {
                let r = keys.verify13(&RustCrypto, now, peer, &bytes);
                assert!(r.is_err() || bytes == cookie.as_bytes(), "arbitrary bytes verified as a cookie");
            }
        }
    }
}

/// A datagram for the 1.3 record splitter as a plain `Reader` walk: handshake fragments inside
/// plaintext records (the hellos travel in DTLSPlaintext, RFC 9147 §4.1).
pub fn plaintext_fragments(datagram: &[u8]) {
    for rec in split_datagram13(datagram) {
        if let Record13::Plaintext(raw) = rec {
            let mut r = Reader::new(raw.fragment);
            while let Ok((hdr, body)) = coaps_dtls::internal::msgs::HandshakeHeader::read_fragment(&mut r) {
                assert_eq!(body.len(), hdr.fragment_length as usize);
            }
        }
    }
}

/// `session`: bytes as a session store holds them (possibly corrupted or from another version)
/// through `Session::decode`, which must refuse or accept without panicking; an accepted session
/// re-encodes and decodes to itself under the same clocks. The same bytes as a datagram go
/// through `offered_sessions`, whose keys must all lie inside the datagram.
pub fn session(data: &[u8]) {
    let now = Instant::now();
    let wall = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    if let Ok(s) = coaps_dtls::Session::decode(data, now, wall) {
        let again = coaps_dtls::Session::decode(&s.encode(now, wall), now, wall).expect("re-encoded session decodes");
        assert!(again == s, "decode(encode(s)) != s");
        let _ = format!("{s:?}");
    }
    if let Some(offered) = coaps_dtls::offered_sessions(data) {
        let within = |k: &[u8]| {
            let (start, end) = (k.as_ptr() as usize, k.as_ptr() as usize + k.len());
            start >= data.as_ptr() as usize && end <= data.as_ptr() as usize + data.len()
        };
        assert!(offered.keys().all(within), "a key points outside the datagram");
        let _ = (offered.session_id(), offered.psk_identities().count(), offered.early_data(), offered.is_empty());
    }
}
