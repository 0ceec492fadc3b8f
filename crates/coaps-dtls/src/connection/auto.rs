//! A client that offers DTLS 1.3 and DTLS 1.2 in one ClientHello
//! ([`DtlsVersion::Auto`](crate::DtlsVersion::Auto)) and continues in the version the server
//! picks.
//!
//! # How
//!
//! The connection starts as a DTLS 1.3 client whose ClientHello also carries what a DTLS 1.2
//! server needs ([`dual_hello_extras`]): supported_versions `[DTLS 1.3, DTLS 1.2]` (RFC 8446
//! §4.2.1 with the DTLS code points of RFC 9147 §5.3), the 1.3 suites then the 1.2 ones, and
//! extended_master_secret, renegotiation_info and ec_point_formats beside key_share;
//! pre_shared_key stays last, its binders computed over this combined hello (RFC 8446
//! §4.2.11.2). A 1.2 server ignores the 1.3 extensions it does not know (RFC 5246 §7.4.1.4);
//! a 1.3 server ignores the 1.2 ones (RFC 8446 §4.1.2: "servers MUST ignore unrecognized
//! extensions", and the 1.2-only ones have no meaning in 1.3).
//!
//! Until the server's first answer, [`Fallback::classify`] looks at each datagram:
//! * a ServerHello whose supported_versions selects DTLS 1.3, or a HelloRetryRequest (which
//!   always carries it, RFC 8446 §4.1.4): the 1.3 state machine continues alone;
//! * a HelloVerifyRequest (RFC 6347 §4.2.1, which a DTLS 1.3 server never sends: RFC 9147
//!   §5.1 moved the cookie into HelloRetryRequest) or a ServerHello without supported_versions
//!   (RFC 8446 §4.2.1: a server negotiating an older version MUST NOT send it): a DTLS 1.2
//!   state machine adopts the ClientHello already sent — same bytes, message and record
//!   sequence numbers, retransmission timer — and the plaintext datagrams held so far (a 1.2
//!   server's Certificate may overtake its ServerHello) are replayed into it.
//!
//! # Downgrade protection
//!
//! Both answers that lead to 1.2 are unauthenticated plaintext, so an on-path attacker can
//! inject them. The rules that keep such an attacker from stripping DTLS 1.3:
//! * After a HelloVerifyRequest the second ClientHello is the first plus the cookie (RFC 6347
//!   §4.2.1), so it still offers DTLS 1.3. A server able to speak 1.3 either answers in 1.3
//!   — a DTLS 1.3 ServerHello or HelloRetryRequest after a HelloVerifyRequest shows the
//!   latter was not the server's (RFC 9147 §5.1: a 1.3 server sends none), and the client
//!   aborts with `illegal_parameter` ([`carries_dtls13_server_hello`]): the handshake fails,
//!   which is all an injected packet can achieve anyway —, or refuses a 1.3 ClientHello with a
//!   non-empty legacy_cookie (RFC 9147 §5.3, `illegal_parameter`), or negotiates 1.2 with the
//!   sentinel below. An injected HelloVerifyRequest thus never yields a DTLS 1.2 session with
//!   a 1.3 server.
//! * A DTLS 1.3-capable server that negotiates 1.2 puts `DOWNGRD\x01` in the last eight bytes
//!   of its ServerHello.random (RFC 8446 §4.1.3, applied to DTLS by RFC 9147 §5.3). Our 1.2
//!   state machine aborts with `illegal_parameter` when it sees the sentinel after offering
//!   1.3. The server random feeds the 1.2 master secret and Finished, so the sentinel cannot
//!   be removed in transit; this catches a ClientHello rewritten to drop 1.3 before the server
//!   saw it (whose altered bytes the 1.2 Finished would also expose, but only after the
//!   client has already used the downgraded key exchange).
//!
//! # Resumption
//!
//! A DTLS 1.3 ticket is offered as a 1.3 PSK only; if the server answers in 1.2, the handshake
//! is a full 1.2 one. A DTLS 1.2 session goes into legacy_session_id, as RFC 8446 §4.1.2 asks
//! of a client with a session ID from a pre-1.3 server; it resumes if the server still picks
//! 1.2, and a server that now speaks 1.3 upgrades to a full 1.3 handshake (a cached session
//! never pins the older version).

use crate::codec::*;
use crate::config::ClientConfig;
use crate::dtls13::record::{Record13, split_datagram13};
use crate::handshake::reassembly::Reassembler;
use crate::msgs::{HandshakeHeader, HelloVerifyRequest};
use crate::resumption::Session;
use std::sync::Arc;

/// The version the server's answer selects, as far as it is known yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No ServerHello, HelloRetryRequest or HelloVerifyRequest seen yet.
    Undecided,
    /// Continue as the DTLS 1.3 client.
    Dtls13,
    /// Continue as a DTLS 1.2 client with the ClientHello already sent.
    Dtls12,
}

/// Bytes of datagrams held while the version is undecided.
const MAX_HELD_BYTES: usize = 64 * 1024;

/// The undecided state of a dual-version client: what is needed to fall back to DTLS 1.2.
pub(crate) struct Fallback {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) server_name: String,
    /// The DTLS 1.2 session offered in legacy_session_id.
    pub(crate) session12: Option<Session>,
    /// Plaintext datagrams received so far, replayed into the 1.2 state machine on fallback.
    held: Vec<Vec<u8>>,
    held_bytes: usize,
    max_held: usize,
    /// ServerHello fragments: the decision needs the whole message (its extensions come last).
    server_hello: Reassembler,
}

impl Fallback {
    /// `resume` is the session the client was asked to resume; only a DTLS 1.2 one matters
    /// here (a 1.3 ticket is offered as a 1.3 PSK).
    pub(crate) fn new(config: Arc<ClientConfig>, server_name: &str, resume: Option<&Session>) -> Self {
        Self {
            session12: resume.filter(|s| !s.is_dtls13_ticket()).cloned(),
            max_held: config.common.max_early_records,
            config,
            server_name: server_name.to_owned(),
            held: Vec::new(),
            held_bytes: 0,
            server_hello: Reassembler::new(4096),
        }
    }

    /// Looks at a datagram received before the version is known. Undecided datagrams that may
    /// belong to a DTLS 1.2 flight are kept (bounded) for [`Fallback::take_held`].
    pub(crate) fn classify(&mut self, datagram: &[u8]) -> Verdict {
        for rec in split_datagram13(datagram) {
            let Record13::Plaintext(raw) = rec else { continue };
            if raw.header.content_type != ContentType::Handshake || raw.header.epoch != 0 {
                continue;
            }
            let mut r = Reader::new(raw.fragment);
            while !r.is_empty() {
                let Ok((hdr, frag)) = HandshakeHeader::read_fragment(&mut r) else { break };
                match hdr.msg_type {
                    HandshakeType::HelloVerifyRequest
                        if hdr.fragment_offset == 0
                            && hdr.fragment_length == hdr.length
                            && HelloVerifyRequest::read_exact(frag).is_ok() =>
                    {
                        return Verdict::Dtls12;
                    }
                    HandshakeType::ServerHello => {
                        let _ = self.server_hello.insert(&hdr, frag);
                        if let Some(sh) = self.server_hello.pop() {
                            return server_hello_version(&sh.body);
                        }
                    }
                    _ => {}
                }
            }
        }
        // A DTLSPlaintext header starts with a content type of 20..=26; a 1.3 ciphertext
        // header with 0b001 (RFC 9147 §4), which the 1.3 state machine keeps itself.
        if datagram.first().is_some_and(|b| (20..=26).contains(b))
            && self.held.len() < self.max_held
            && self.held_bytes + datagram.len() <= MAX_HELD_BYTES
        {
            self.held_bytes += datagram.len();
            self.held.push(datagram.to_vec());
        }
        Verdict::Undecided
    }

    /// The datagrams held while undecided, oldest first.
    pub(crate) fn take_held(&mut self) -> Vec<Vec<u8>> {
        self.held_bytes = 0;
        std::mem::take(&mut self.held)
    }
}

/// Whether `datagram` holds an unfragmented ServerHello (any message_seq) that selects DTLS
/// 1.3. After a fallback on a HelloVerifyRequest this unmasks the HelloVerifyRequest as not
/// the server's: a DTLS 1.3 server never sends one (RFC 9147 §5.1). The 1.2 state machine
/// would otherwise take the answer to the first ClientHello for a repeated old flight and
/// resend the second, which the 1.3 server answers again: a loop at the speed of the network.
pub(crate) fn carries_dtls13_server_hello(datagram: &[u8]) -> bool {
    split_datagram13(datagram).any(|rec| {
        let Record13::Plaintext(raw) = rec else { return false };
        if raw.header.content_type != ContentType::Handshake || raw.header.epoch != 0 {
            return false;
        }
        let mut r = Reader::new(raw.fragment);
        while let Ok((hdr, frag)) = HandshakeHeader::read_fragment(&mut r) {
            if hdr.msg_type == HandshakeType::ServerHello
                && hdr.fragment_offset == 0
                && hdr.fragment_length == hdr.length
                && server_hello_version(frag) == Verdict::Dtls13
            {
                return true;
            }
        }
        false
    })
}

/// Whether a complete ServerHello body selects DTLS 1.3: it does exactly when it carries
/// supported_versions (RFC 8446 §4.2.1; a HelloRetryRequest always does, §4.1.4). A malformed
/// one goes to the 1.3 state machine, which reports the decode error.
fn server_hello_version(body: &[u8]) -> Verdict {
    let has_supported_versions = || -> Result<bool, InvalidMessage> {
        let mut r = Reader::new(body);
        r.u16("ServerHello.version")?;
        r.take(32, "ServerHello.random")?;
        r.vec_u8("ServerHello.session_id")?;
        r.u16("ServerHello.cipher_suite")?;
        r.u8("ServerHello.compression_method")?;
        if r.is_empty() {
            return Ok(false);
        }
        let mut ext = Reader::new(r.vec_u16("ServerHello.extensions")?);
        while !ext.is_empty() {
            let typ = ext.u16("Extension.extension_type")?;
            ext.vec_u16("Extension.extension_data")?;
            if typ == u16::from(ExtensionType::SupportedVersions) {
                return Ok(true);
            }
        }
        Ok(false)
    };
    match has_supported_versions() {
        Ok(false) => Verdict::Dtls12,
        Ok(true) | Err(_) => Verdict::Dtls13,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh_body(extensions: Option<&[u8]>) -> Vec<u8> {
        let mut b = vec![0xfe, 0xfd];
        b.extend_from_slice(&[7; 32]);
        b.push(0);
        b.extend_from_slice(&[0xc0, 0xa8, 0]);
        if let Some(e) = extensions {
            b.extend_from_slice(&(e.len() as u16).to_be_bytes());
            b.extend_from_slice(e);
        }
        b
    }

    #[test]
    fn server_hello_version_follows_supported_versions() {
        assert_eq!(server_hello_version(&sh_body(None)), Verdict::Dtls12);
        // extended_master_secret only: 1.2.
        assert_eq!(server_hello_version(&sh_body(Some(&[0, 23, 0, 0]))), Verdict::Dtls12);
        // supported_versions {254,252}: 1.3.
        assert_eq!(server_hello_version(&sh_body(Some(&[0, 23, 0, 0, 0, 43, 0, 2, 0xfe, 0xfc]))), Verdict::Dtls13);
        // Truncated: the 1.3 state machine reports it.
        assert_eq!(server_hello_version(&sh_body(None)[..20]), Verdict::Dtls13);
        assert_eq!(server_hello_version(&sh_body(Some(&[0, 23, 0]))), Verdict::Dtls13);
    }
}
