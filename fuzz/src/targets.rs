//! The fuzz target bodies. Each takes arbitrary bytes; a panic is a finding.
//!
//! Parsers are checked for totality and, where a decode succeeds, for a stable round trip:
//! `decode(encode(decode(x))) == decode(x)`.

use crate::{drain, new_client, new_server, ops, peer, run_client_script, settle};
use arbitrary::{Arbitrary, Unstructured};
use coaps_dtls::internal::codec::CertificateType;
use coaps_dtls::internal::codec::{Codec, HandshakeType, Reader};
use coaps_dtls::internal::cookie::ClientHelloView;
use coaps_dtls::internal::handshake::reassembly::{Insert, Reassembler};
use coaps_dtls::internal::msgs::{
    Certificate, CertificateRequest, ClientHello, ClientKeyExchange, HandshakeHeader, HelloVerifyRequest,
    KeyExchangeAlgorithm, ServerHello, ServerKeyExchange,
};
use coaps_dtls::internal::record::{RecordHeader, first_record_cid, split_datagram, split_datagram_cid};
use coaps_dtls::internal::record13::{Record13, first_record_cid13, split_datagram13_cid};
use std::collections::HashMap;
use std::fmt::Debug;
use std::time::Instant;

fn round_trip<T: for<'b> Codec<'b> + Debug + PartialEq>(data: &[u8]) {
    if let Ok(v) = T::read_exact(data) {
        let enc = v.to_vec();
        let again = T::read_exact(&enc).expect("re-encoding of a decoded message must decode");
        assert_eq!(again, v, "round trip changed the message");
    }
}

fn kx(b: u8) -> KeyExchangeAlgorithm {
    match b % 3 {
        0 => KeyExchangeAlgorithm::Psk,
        1 => KeyExchangeAlgorithm::EcdhePsk,
        _ => KeyExchangeAlgorithm::EcdheEcdsa,
    }
}

fn read_all<'a, T>(
    body: &'a [u8],
    f: impl FnOnce(&mut Reader<'a>) -> Result<T, coaps_dtls::InvalidMessage>,
) -> Option<T> {
    let mut r = Reader::new(body);
    let v = f(&mut r).ok()?;
    r.expect_empty("message").ok()?;
    Some(v)
}

/// A datagram: split into records, each record's fragment walked as handshake fragments.
pub fn record(data: &[u8]) {
    let mut total = 0usize;
    for rec in split_datagram(data) {
        assert_eq!(rec.fragment.len(), usize::from(rec.header.length));
        total += RecordHeader::LEN + rec.fragment.len();
        assert!(total <= data.len());
        let mut enc = Vec::new();
        rec.header.encode(&mut enc);
        let start = total - RecordHeader::LEN - rec.fragment.len();
        assert_eq!(enc, data[start..start + RecordHeader::LEN], "record header round trip");
        let mut r = Reader::new(rec.fragment);
        while !r.is_empty() {
            let Ok((hdr, body)) = HandshakeHeader::read_fragment(&mut r) else { break };
            assert_eq!(body.len(), hdr.fragment_length as usize);
            assert!(u64::from(hdr.fragment_offset) + u64::from(hdr.fragment_length) <= u64::from(hdr.length));
            let mut h = Vec::new();
            hdr.encode(&mut h);
            assert_eq!(h.len(), HandshakeHeader::LEN);
        }
    }
}

/// The same datagram read as by an association with Connection IDs, DTLS 1.2 (RFC 9146 §4)
/// and DTLS 1.3 (RFC 9147 §4, the unified header's C bit): the first byte picks the CID length
/// (0..=8). Records stay inside the datagram, a CID record's CID has exactly that length (a
/// 1.3 one with the C bit is malformed without a CID length), and the endpoint's CID peeks
/// agree with the splits. Each 1.2 fragment is also read as an RFC 9853
/// `return_routability_check` message.
pub fn record_cid(data: &[u8]) {
    let Some((&pick, dgram)) = data.split_first() else { return };
    let cid_len = usize::from(pick % 9);
    let mut total = 0usize;
    for (i, rec) in split_datagram_cid(dgram, cid_len).enumerate() {
        assert_eq!(rec.fragment.len(), usize::from(rec.header.length));
        let is_cid = rec.header.content_type == coaps_dtls::internal::codec::ContentType::Tls12Cid;
        assert_eq!(rec.cid.len(), if is_cid { cid_len } else { 0 });
        total += RecordHeader::LEN + rec.cid.len() + rec.fragment.len();
        assert!(total <= dgram.len());
        if i == 0 {
            assert_eq!(first_record_cid(dgram, cid_len), is_cid.then_some(rec.cid));
        }
        // RFC 9853 messages: total, and a known type re-encodes to exactly its input.
        use coaps_dtls::internal::rrc::ReturnRoutabilityCheck;
        if let Ok(m) = ReturnRoutabilityCheck::read(rec.fragment)
            && !matches!(m, ReturnRoutabilityCheck::Unknown(_))
        {
            assert_eq!(m.to_vec(), rec.fragment);
        }
    }
    // The same bytes as DTLS 1.3 records with CIDs of `cid_len` bytes (RFC 9147 §4): the CID
    // after the first byte of a unified header with the C bit, part of the header bytes.
    let mut total = 0usize;
    let mut records = split_datagram13_cid(dgram, cid_len);
    for (i, rec) in records.by_ref().enumerate() {
        let (len, cid) = match rec {
            Record13::Plaintext(raw) => (RecordHeader::LEN + raw.fragment.len(), None),
            Record13::Ciphertext(ct) => {
                let c_bit = ct.header_bytes[0] & 0x10 != 0;
                assert_eq!(ct.cid.len(), if c_bit { cid_len } else { 0 });
                assert!(!c_bit || cid_len > 0, "a CID record parsed without a CID length");
                assert_eq!(&ct.header_bytes[1..1 + ct.cid.len()], ct.cid);
                (ct.header_bytes.len() + ct.encrypted_record.len(), c_bit.then_some(ct.cid))
            }
        };
        total += len;
        assert!(total <= dgram.len());
        if i == 0 {
            assert_eq!(first_record_cid13(dgram, cid_len), cid);
        }
    }
    assert!(records.hit_malformed() || total == dgram.len());
}

/// A ClientHello body; also cross-checked against the zero-copy view the cookie gate uses.
pub fn client_hello(data: &[u8]) {
    round_trip::<ClientHello>(data);
    if let Ok(ch) = ClientHello::read_exact(data) {
        // Whatever the full decoder accepts, the stateless gate must see the same way, or a
        // valid client could never get past the cookie exchange.
        let view = ClientHelloView::parse(data).expect("view rejects a ClientHello the decoder accepts");
        assert_eq!(view.params.random, &ch.random.0[..]);
        assert_eq!(view.cookie, &ch.cookie[..]);
        assert_eq!(view.params.session_id, &ch.session_id.0[..]);
    }
}

/// A ServerHello body.
pub fn server_hello(data: &[u8]) {
    round_trip::<ServerHello>(data);
}

/// A HelloVerifyRequest body.
pub fn hello_verify_request(data: &[u8]) {
    round_trip::<HelloVerifyRequest>(data);
}

/// A CertificateRequest body.
pub fn certificate_request(data: &[u8]) {
    round_trip::<CertificateRequest>(data);
}

/// First byte: certificate type (even: X.509, odd: raw public key); the rest is the body.
pub fn certificate(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else { return };
    let typ = if sel & 1 == 0 { CertificateType::X509 } else { CertificateType::RawPublicKey };
    if let Some(c) = read_all(body, |r| Certificate::read_with(r, typ)) {
        let mut enc = Vec::new();
        c.encode(&mut enc);
        let again = read_all(&enc, |r| Certificate::read_with(r, typ)).expect("re-encoded Certificate must decode");
        assert_eq!(again, c);
    }
}

/// First byte: key exchange (mod 3: PSK, ECDHE_PSK, ECDHE_ECDSA); the rest is the body.
pub fn server_key_exchange(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else { return };
    let k = kx(sel);
    if let Some(m) = read_all(body, |r| ServerKeyExchange::read_with(r, k)) {
        let mut enc = Vec::new();
        m.encode(&mut enc);
        let again =
            read_all(&enc, |r| ServerKeyExchange::read_with(r, k)).expect("re-encoded ServerKeyExchange must decode");
        assert_eq!(again, m);
    }
}

/// First byte: key exchange (mod 3: PSK, ECDHE_PSK, ECDHE_ECDSA); the rest is the body.
pub fn client_key_exchange(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else { return };
    let k = kx(sel);
    if let Some(m) = read_all(body, |r| ClientKeyExchange::read_with(r, k)) {
        let mut enc = Vec::new();
        m.encode(&mut enc);
        let again =
            read_all(&enc, |r| ClientKeyExchange::read_with(r, k)).expect("re-encoded ClientKeyExchange must decode");
        assert_eq!(again, m);
    }
}

/// The zero-copy ClientHello view of the stateless cookie gate.
pub fn cookie_view(data: &[u8]) {
    if let Ok(v) = ClientHelloView::parse(data) {
        assert_eq!(v.params.random.len(), 32);
        assert!(v.params.session_id.len() <= 32);
        assert!(!v.params.cipher_suites.is_empty() && v.params.cipher_suites.len() % 2 == 0);
        assert!(!v.params.compression_methods.is_empty());
    }
    // The gate answers with a HelloVerifyRequest built from the view; it must never write
    // past the buffer it is given, whatever the cookie length.
    let mut out = [0u8; 64];
    let cookie = &data[..data.len().min(300)];
    if let Some(n) = coaps_dtls::internal::cookie::write_hello_verify_request(u64::from(data.len() as u32), cookie, &mut out) {
        assert!(n <= out.len());
    }
}

#[derive(Debug, Arbitrary)]
enum ReasmOp {
    Insert {
        msg_type: u8,
        /// Masked to 24 bits; `small` keeps it under 4 KiB so fragments can complete it.
        length: u32,
        small: bool,
        seq_delta: i8,
        offset: u16,
        /// Whether fragment_length agrees with the bytes given.
        honest: bool,
        fragment: Vec<u8>,
    },
    Pop,
    SetNextSeq(u16),
}

/// An arbitrary sequence of fragments, pops and `set_next_seq` calls on a [`Reassembler`],
/// checked against a model: delivered bodies hold the first bytes that arrived at each
/// position, in message_seq order, within the byte budget.
pub fn reassembly(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(budget) = u.arbitrary::<u16>() else { return };
    let budget = usize::from(budget);
    let mut re = Reassembler::new(budget);
    // seq -> (type, bytes so far)
    let mut model: HashMap<u16, (HandshakeType, Vec<Option<u8>>)> = HashMap::new();
    let mut steps = 0;
    while let Ok(op) = u.arbitrary::<ReasmOp>() {
        steps += 1;
        if steps > 512 {
            break;
        }
        match op {
            ReasmOp::Insert { msg_type, length, small, seq_delta, offset, honest, fragment } => {
                let length = if small { length % 4096 } else { length & 0x00ff_ffff };
                let seq = re.next_seq().wrapping_add_signed(i16::from(seq_delta));
                let hdr = HandshakeHeader {
                    msg_type: HandshakeType::from(msg_type),
                    length,
                    message_seq: seq,
                    fragment_offset: u32::from(offset),
                    fragment_length: if honest {
                        fragment.len() as u32
                    } else {
                        (fragment.len() as u32).wrapping_add(1)
                    },
                };
                let next_before = re.next_seq();
                match re.insert(&hdr, &fragment) {
                    Ok(Insert::Old) => assert!(seq < next_before),
                    Ok(Insert::Buffered) => {
                        assert!(honest);
                        let (t, bytes) =
                            model.entry(seq).or_insert_with(|| (hdr.msg_type, vec![None; length as usize]));
                        assert_eq!(*t, hdr.msg_type);
                        assert_eq!(bytes.len(), length as usize);
                        for (i, b) in fragment.iter().enumerate() {
                            let slot = &mut bytes[offset as usize + i];
                            if slot.is_none() {
                                *slot = Some(*b);
                            }
                        }
                    }
                    Err(_) => {}
                }
            }
            ReasmOp::Pop => {
                let next_before = re.next_seq();
                if let Some(m) = re.pop() {
                    assert_eq!(m.message_seq, next_before);
                    assert_eq!(re.next_seq(), next_before.wrapping_add(1));
                    let (t, bytes) = model.remove(&m.message_seq).expect("popped a message never buffered");
                    assert_eq!(t, m.msg_type);
                    let want: Vec<u8> = bytes.iter().map(|b| b.expect("popped an incomplete message")).collect();
                    assert_eq!(want, m.body);
                } else if let Some((_, bytes)) = model.get(&next_before) {
                    assert!(bytes.iter().any(Option::is_none), "a complete next message was not delivered");
                }
            }
            ReasmOp::SetNextSeq(s) => {
                re.set_next_seq(s);
                model.retain(|&k, _| k >= s);
            }
        }
        let held: usize = model.values().map(|(_, b)| b.len()).sum();
        assert_eq!(re.buffered_bytes(), held);
        assert!(re.buffered_bytes() <= budget);
    }
}

/// A server endpoint (first byte: [`crate::server_config`] flags) fed a script of datagrams
/// from four peer addresses with the clock advancing ([`crate::ops`]).
pub fn server_endpoint(data: &[u8]) {
    let Some((&flags, script)) = data.split_first() else { return };
    let mut now = Instant::now();
    let mut ep = new_server(flags, now);
    let mtu = coaps_dtls::CommonConfig::default().mtu;
    for op in ops(script) {
        now += op.advance;
        ep.handle_timeout(now);
        drain(&mut ep, mtu);
        ep.handle_datagram(now, peer(true, op.peer), op.datagram);
        drain(&mut ep, mtu);
        assert!(ep.connection_count() <= 3, "more associations than peers");
    }
    settle(&mut ep, now, mtu);
}

/// A client endpoint (first byte: [`crate::client_config`] flags) that has called `connect`,
/// fed a script of datagrams from the server and three strangers.
pub fn client_endpoint(data: &[u8]) {
    let Some((&flags, script)) = data.split_first() else { return };
    let now = Instant::now();
    run_client_script(&mut new_client(flags, now), now, script);
}
