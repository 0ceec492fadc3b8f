//! The ClientHello as the gate sees it: the first record of a datagram split once, its
//! handshake header read once, and one borrowed view of the body that feeds both the DTLS 1.2
//! check (the fields the HelloVerifyRequest cookie binds, RFC 6347 §4.2.1) and the DTLS 1.3
//! one (the extensions a stateless HelloRetryRequest depends on, RFC 9147 §5.1). Nothing here
//! allocates.

use super::cookie::ClientHelloView;
use crate::codec::{CipherSuite, ContentType, HandshakeType, InvalidMessage, ProtocolVersion, Reader};
use crate::msgs::HandshakeHeader;
use crate::record::RecordHeader;

/// What the first record of a datagram holds, for the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstRecord<'a> {
    /// A whole epoch-0 ClientHello in one fragment: the only kind a stateless gate can check
    /// (it cannot reassemble before the cookie round trip without keeping state).
    ClientHello(ClientHelloRecord<'a>),
    /// A fragment (not the whole) of an epoch-0 ClientHello: for the bounded reassembly area
    /// ([`Gate::reassemble`](super::Gate::reassemble)).
    ClientHelloFragment,
    /// Anything else (no record, another content type or epoch, another handshake message):
    /// not the gate's business.
    Other,
}

impl<'a> FirstRecord<'a> {
    /// Splits the first record off `datagram` and reads its first handshake header. Total:
    /// anything unparsable is [`FirstRecord::Other`].
    pub fn parse(datagram: &'a [u8]) -> Self {
        let Some(rec) = crate::record::split_datagram(datagram).next() else { return Self::Other };
        if rec.header.content_type != ContentType::Handshake || rec.header.epoch != 0 {
            return Self::Other;
        }
        let mut r = Reader::new(rec.fragment);
        let Ok((hdr, body)) = HandshakeHeader::read_fragment(&mut r) else { return Self::Other };
        if hdr.msg_type != HandshakeType::ClientHello {
            return Self::Other;
        }
        if hdr.fragment_offset != 0 || hdr.fragment_length != hdr.length {
            return Self::ClientHelloFragment;
        }
        Self::ClientHello(ClientHelloRecord { record: rec.header, handshake: hdr, body, datagram })
    }

    /// The whole ClientHello, if that is what the datagram starts with.
    pub fn client_hello(&self) -> Option<&ClientHelloRecord<'a>> {
        match self {
            Self::ClientHello(h) => Some(h),
            _ => None,
        }
    }
}

/// A whole epoch-0 ClientHello at the start of a datagram, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientHelloRecord<'a> {
    /// The record's header (its sequence number is echoed in the answer, RFC 6347 §4.2.1).
    pub record: RecordHeader,
    /// The handshake header (message_seq, and length = fragment_length).
    pub handshake: HandshakeHeader,
    /// The ClientHello body.
    pub body: &'a [u8],
    /// The whole datagram (its length bounds the answer: no amplification).
    pub datagram: &'a [u8],
}

/// The DTLS 1.3 side of a ClientHello (RFC 9147 §5.3): what a stateless HelloRetryRequest
/// depends on, borrowed from the extensions block, present only when supported_versions
/// offers DTLS 1.3 and the extensions it reads are well formed.
///
/// The full `ClientHello13` decoding (which allocates) runs only once the peer has proven its
/// address; a ClientHello this view accepts but that decoding refuses (a malformed or repeated
/// extension the view does not read) gets no association. Wherever the full decoding accepts a
/// ClientHello, the view reads the same facts (the `view13_agrees_with_the_full_decoding` test
/// and the `client_hello13` fuzz target check it). Parsing is linear in the hello's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientHello13View<'a> {
    /// cipher_suites contents, two bytes per suite.
    pub cipher_suites: &'a [u8],
    /// A key_share entry for secp256r1 is offered (RFC 8446 §4.2.8).
    pub key_share_secp256r1: bool,
    /// The cookie extension's contents, echoed from a HelloRetryRequest (RFC 8446 §4.2.2).
    pub cookie: Option<&'a [u8]>,
    /// psk_key_exchange_modes offers psk_ke (RFC 8446 §4.2.9).
    pub psk_ke: bool,
    /// pre_shared_key is offered (RFC 8446 §4.2.11).
    pub pre_shared_key: bool,
    /// early_data is offered (RFC 8446 §4.2.10).
    pub early_data: bool,
}

const EXT_PRE_SHARED_KEY: u16 = 41;
const EXT_EARLY_DATA: u16 = 42;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
const EXT_COOKIE: u16 = 44;
const EXT_PSK_KEY_EXCHANGE_MODES: u16 = 45;
const EXT_KEY_SHARE: u16 = 51;
const SECP256R1: u16 = 23;
const PSK_KE: u8 = 0;
/// The extension types the view reads.
const INTERPRETED: [u16; 6] =
    [EXT_PRE_SHARED_KEY, EXT_EARLY_DATA, EXT_SUPPORTED_VERSIONS, EXT_COOKIE, EXT_PSK_KEY_EXCHANGE_MODES, EXT_KEY_SHARE];

impl<'a> ClientHello13View<'a> {
    /// The DTLS 1.3 view of `hello`'s extensions, or `None` when it does not offer DTLS 1.3
    /// or one of the extensions read here is malformed (then the DTLS 1.2 gate decides, as it
    /// would for a DTLS 1.2 ClientHello).
    pub fn parse(hello: &ClientHelloView<'a>) -> Option<Self> {
        Self::read(hello).ok().flatten()
    }

    fn read(hello: &ClientHelloView<'a>) -> Result<Option<Self>, InvalidMessage> {
        let mut v = Self {
            cipher_suites: hello.params.cipher_suites,
            key_share_secp256r1: false,
            cookie: None,
            psk_ke: false,
            pre_shared_key: false,
            early_data: false,
        };
        let mut offers_13 = false;
        // RFC 8446 §4.2: at most one extension of a type. Checked here for the types read
        // here, in one linear pass (a flag each): a quadratic scan would let one datagram cost
        // milliseconds. Repeats of other types are the full decoding's to refuse.
        let mut seen = [false; INTERPRETED.len()];
        let mut ext = Reader::new(hello.extensions);
        while !ext.is_empty() {
            let typ = ext.u16("Extension.extension_type")?;
            let data = ext.vec_u16("Extension.extension_data")?;
            if let Some(i) = INTERPRETED.iter().position(|t| *t == typ) {
                if seen[i] {
                    return Err(InvalidMessage::IllegalValue("duplicate extension"));
                }
                seen[i] = true;
            }
            // RFC 8446 §4.2.11: pre_shared_key MUST be the last extension.
            if v.pre_shared_key {
                return Err(InvalidMessage::IllegalValue("pre_shared_key not last"));
            }
            let mut d = Reader::new(data);
            match typ {
                EXT_SUPPORTED_VERSIONS => {
                    let list = d.vec_u8("supported_versions")?;
                    if list.is_empty() || list.len() % 2 != 0 {
                        return Err(InvalidMessage::IllegalValue("supported_versions"));
                    }
                    offers_13 =
                        list.chunks_exact(2).any(|c| u16::from_be_bytes([c[0], c[1]]) == ProtocolVersion::DTLS1_3.0);
                }
                EXT_KEY_SHARE => {
                    let mut shares = Reader::new(d.vec_u16("client_shares")?);
                    while !shares.is_empty() {
                        let group = shares.u16("KeyShareEntry.group")?;
                        if shares.vec_u16("KeyShareEntry.key_exchange")?.is_empty() {
                            return Err(InvalidMessage::IllegalValue("KeyShareEntry.key_exchange"));
                        }
                        // RFC 8446 §4.2.8: no two entries for one group. Checked here for the
                        // group the gate reads; the full decoding checks the others.
                        if group == SECP256R1 {
                            if v.key_share_secp256r1 {
                                return Err(InvalidMessage::IllegalValue("duplicate key share group"));
                            }
                            v.key_share_secp256r1 = true;
                        }
                    }
                }
                EXT_COOKIE => {
                    let cookie = d.vec_u16("cookie")?;
                    if cookie.is_empty() {
                        return Err(InvalidMessage::IllegalValue("cookie"));
                    }
                    v.cookie = Some(cookie);
                }
                EXT_PSK_KEY_EXCHANGE_MODES => {
                    let modes = d.vec_u8("ke_modes")?;
                    if modes.is_empty() {
                        return Err(InvalidMessage::IllegalValue("ke_modes"));
                    }
                    v.psk_ke = modes.contains(&PSK_KE);
                }
                EXT_PRE_SHARED_KEY => {
                    v.pre_shared_key = true;
                    d.rest();
                }
                EXT_EARLY_DATA => v.early_data = true,
                // Not read here: the full decoding checks them after the cookie round trip.
                _ => {
                    d.rest();
                }
            }
            d.expect_empty("extension_data")?;
        }
        Ok(offers_13.then_some(v))
    }

    /// The first of `preference` (the server's DTLS 1.3 suites, in its order) that the
    /// client offers: the same choice as the full decoding's.
    pub fn choose_suite(&self, preference: &[CipherSuite]) -> Option<CipherSuite> {
        preference.iter().copied().find(|s| {
            let want = u16::from(*s).to_be_bytes();
            self.cipher_suites.chunks_exact(2).any(|c| c == want)
        })
    }
}
