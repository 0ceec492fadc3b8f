//! Constants and byte strings the DTLS 1.3 handshake hashes or signs: the transcript form of a
//! message, the HelloRetryRequest `message_hash`, the truncated ClientHello for PSK binders,
//! the CertificateVerify content, and the ServerHello.random markers.
use super::types::Random;
use crate::codec::{HandshakeType, InvalidMessage, put_u24};
use crate::types::Role;

/// ServerHello.random of a HelloRetryRequest: SHA-256("HelloRetryRequest") (RFC 8446 §4.1.3).
pub const HELLO_RETRY_REQUEST_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91, 0xC2, 0xA2, 0x11,
    0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

/// Last 8 bytes of ServerHello.random when a (D)TLS 1.3-capable server negotiates DTLS 1.2
/// (RFC 8446 §4.1.3, applied to DTLS 1.2 by RFC 9147 §5.3): "DOWNGRD" 01.
pub const DOWNGRADE_SENTINEL_DTLS12: [u8; 8] = [0x44, 0x4F, 0x57, 0x4E, 0x47, 0x52, 0x44, 0x01];
/// Last 8 bytes of ServerHello.random when such a server negotiates DTLS 1.0 (RFC 8446
/// §4.1.3, RFC 9147 §5.3): "DOWNGRD" 00.
pub const DOWNGRADE_SENTINEL_DTLS10: [u8; 8] = [0x44, 0x4F, 0x57, 0x4E, 0x47, 0x52, 0x44, 0x00];

/// The downgrade sentinels of RFC 8446 §4.1.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DowngradeSentinel {
    /// DTLS 1.2 was negotiated ([`DOWNGRADE_SENTINEL_DTLS12`]).
    Dtls12,
    /// DTLS 1.0 was negotiated ([`DOWNGRADE_SENTINEL_DTLS10`]).
    Dtls10,
}

impl DowngradeSentinel {
    /// The 8 bytes.
    pub const fn bytes(self) -> [u8; 8] {
        match self {
            Self::Dtls12 => DOWNGRADE_SENTINEL_DTLS12,
            Self::Dtls10 => DOWNGRADE_SENTINEL_DTLS10,
        }
    }

    /// The sentinel at the end of `random`, if any. A DTLS 1.3-capable client that receives a
    /// ServerHello negotiating DTLS 1.2 or below MUST abort with `illegal_parameter` when this
    /// is `Some` (RFC 8446 §4.1.3).
    pub fn find(random: &Random) -> Option<Self> {
        [Self::Dtls12, Self::Dtls10].into_iter().find(|s| random.0[24..] == s.bytes())
    }

    /// Overwrites the last 8 bytes of `random`, as a DTLS 1.3-capable server MUST when it
    /// negotiates an older version (RFC 8446 §4.1.3).
    pub fn apply(self, random: &mut Random) {
        random.0[24..].copy_from_slice(&self.bytes());
    }
}

/// Appends a handshake message in the form the DTLS 1.3 transcript hashes: the TLS 1.3
/// `Handshake` header (msg_type, uint24 length) and the body. RFC 9147 §5.2: "the message
/// transcript is computed over the original TLS 1.3-style Handshake messages without the
/// message_seq, fragment_offset, and fragment_length values" (unlike DTLS 1.2).
pub fn transcript_bytes_13(msg_type: HandshakeType, body: &[u8], out: &mut Vec<u8>) {
    debug_assert!(body.len() <= 0xff_ffff, "handshake body longer than 2^24-1");
    msg_type.encode(out);
    put_u24(out, body.len() as u32);
    out.extend_from_slice(body);
}

/// Appends the synthetic `message_hash` message that replaces ClientHello1 in the transcript
/// after a HelloRetryRequest (RFC 8446 §4.4.1): type 254, length `00 00 Hash.length`, then
/// `Hash(ClientHello1)`, where ClientHello1 was hashed in its [`transcript_bytes_13`] form.
pub fn message_hash(client_hello1_hash: &[u8], out: &mut Vec<u8>) {
    debug_assert!(client_hello1_hash.len() <= 0xff, "hash longer than 255 bytes");
    transcript_bytes_13(HandshakeType::MessageHash, client_hello1_hash, out);
}

/// Appends `Truncate(ClientHello)` in transcript form, the input of the PSK binders (RFC 8446
/// §4.2.11.2): the header with the length of the **whole** body ("length fields ... are all set
/// as if binders of the correct lengths were present"), then `body[..binders_offset]`, i.e.
/// everything up to and including `OfferedPsks.identities`. `binders_offset` comes from
/// [`ClientHello13::read_with_binders_offset`](super::ClientHello13::read_with_binders_offset)
/// or [`ClientHello13::encode_with_binders_offset`](super::ClientHello13::encode_with_binders_offset).
/// In DTLS the body still holds legacy_cookie; only the 8 DTLS header bytes are left out (RFC
/// 9147 §5.2). After a HelloRetryRequest the binder covers `message_hash || HRR ||` this.
///
/// # Panics
/// If `binders_offset > body.len()` (a caller bug: the offset comes from this body).
pub fn truncated_client_hello_transcript(body: &[u8], binders_offset: usize, out: &mut Vec<u8>) {
    debug_assert!(body.len() <= 0xff_ffff, "handshake body longer than 2^24-1");
    HandshakeType::ClientHello.encode(out);
    put_u24(out, body.len() as u32);
    out.extend_from_slice(&body[..binders_offset]);
}

/// Overwrites the placeholder binders at the end of an encoded ClientHello body with
/// `binders`, one per offered identity (RFC 8446 §4.2.11.2). Fails, leaving `body` unchanged,
/// unless the new list encodes to exactly the bytes from `binders_offset` to the end, so the
/// lengths the binders were computed over stay true.
pub fn write_binders(body: &mut [u8], binders_offset: usize, binders: &[Vec<u8>]) -> Result<(), InvalidMessage> {
    let mut enc = Vec::new();
    crate::codec::put_len_prefixed(&mut enc, crate::codec::LenPrefix::U16, |o| {
        for b in binders {
            o.push(b.len() as u8);
            o.extend_from_slice(b);
        }
    });
    let ok_lens = binders.iter().all(|b| (32..=255).contains(&b.len()));
    match body.get_mut(binders_offset..) {
        Some(tail) if ok_lens && tail.len() == enc.len() => {
            tail.copy_from_slice(&enc);
            Ok(())
        }
        _ => Err(InvalidMessage::IllegalValue("binders do not fit the placeholder")),
    }
}

/// CertificateVerify context string of a server signature (RFC 8446 §4.4.3).
pub const SERVER_CERTIFICATE_VERIFY_CONTEXT: &[u8] = b"TLS 1.3, server CertificateVerify";
/// CertificateVerify context string of a client signature (RFC 8446 §4.4.3).
pub const CLIENT_CERTIFICATE_VERIFY_CONTEXT: &[u8] = b"TLS 1.3, client CertificateVerify";

/// The content a CertificateVerify signs (RFC 8446 §4.4.3): 64 bytes of 0x20, the context
/// string of the signer's `role`, a 0 byte, then `Transcript-Hash(Handshake Context,
/// Certificate)`.
///
/// DTLS 1.3 uses the TLS 1.3 strings unchanged: RFC 9147 §5 says that apart from the listed
/// exceptions (handshake header, retransmission, ACK, cookie, no compatibility mode) "the DTLS
/// message formats, flows, and logic are the same as those of TLS 1.3", and RFC 9147's only
/// label change is the HKDF-Expand-Label prefix "dtls13" (§5.9), which this string is not.
/// wolfSSL 5.9.4 agrees (one pair of labels in `src/tls13.c` `CreateSigData` for TLS and DTLS
/// 1.3), and its DTLS 1.3 certificate handshakes complete.
pub fn certificate_verify_content(role: Role, transcript_hash: &[u8]) -> Vec<u8> {
    let context = match role {
        Role::Server => SERVER_CERTIFICATE_VERIFY_CONTEXT,
        Role::Client => CLIENT_CERTIFICATE_VERIFY_CONTEXT,
    };
    let mut out = Vec::with_capacity(64 + context.len() + 1 + transcript_hash.len());
    out.resize(64, 0x20);
    out.extend_from_slice(context);
    out.push(0);
    out.extend_from_slice(transcript_hash);
    out
}
