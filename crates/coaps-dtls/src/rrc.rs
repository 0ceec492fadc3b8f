//! Return routability checks (RFC 9853): the `return_routability_check` messages, the same
//! for DTLS 1.2 and DTLS 1.3. An engine seals and opens them like any protected record of the
//! current epoch; the [`Endpoint`](crate::Endpoint) decides where they go, since only it sees
//! addresses (its path checks live in `endpoint/path_check.rs`).

use crate::codec::{InvalidMessage, Reader, RrcMsgType};

/// `uint64 Cookie` (RFC 9853 §4): 64 bits of entropy echoed by the responder.
pub type Cookie = [u8; 8];

/// `struct { rrc_msg_type msg_type; select (msg_type) { ... Cookie; } }
/// return_routability_check` (RFC 9853 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnRoutabilityCheck {
    /// path_challenge(0): answer with a `path_response` carrying the same cookie.
    PathChallenge(Cookie),
    /// path_response(1): the path the challenge went over works both ways.
    PathResponse(Cookie),
    /// path_drop(2): the challenged path is no longer the responder's preferred one.
    PathDrop(Cookie),
    /// A message type this implementation does not know: RFC 9853 §4 asks to parse and
    /// gracefully ignore it, so its body is not looked at.
    Unknown(u8),
}

impl ReturnRoutabilityCheck {
    /// Decodes one message (the whole plaintext of a `return_routability_check` record).
    /// A known type carries exactly its 8-byte cookie; anything else is `Err`.
    pub fn read(bytes: &[u8]) -> Result<Self, InvalidMessage> {
        let mut r = Reader::new(bytes);
        let typ = RrcMsgType::read(&mut r)?;
        let cookie = |r: &mut Reader<'_>| -> Result<Cookie, InvalidMessage> {
            let c = r.array::<8>("Cookie")?;
            r.expect_empty("return_routability_check")?;
            Ok(c)
        };
        Ok(match typ {
            RrcMsgType::PathChallenge => Self::PathChallenge(cookie(&mut r)?),
            RrcMsgType::PathResponse => Self::PathResponse(cookie(&mut r)?),
            RrcMsgType::PathDrop => Self::PathDrop(cookie(&mut r)?),
            RrcMsgType::Unknown(t) => Self::Unknown(t),
        })
    }

    /// Appends the encoding (an unknown type as its type byte alone).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (typ, cookie) = match self {
            Self::PathChallenge(c) => (RrcMsgType::PathChallenge, Some(c)),
            Self::PathResponse(c) => (RrcMsgType::PathResponse, Some(c)),
            Self::PathDrop(c) => (RrcMsgType::PathDrop, Some(c)),
            Self::Unknown(t) => (RrcMsgType::Unknown(*t), None),
        };
        typ.encode(out);
        if let Some(c) = cookie {
            out.extend_from_slice(c);
        }
    }

    /// The encoding as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(9);
        self.encode(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_codepoints() {
        let c = [1, 2, 3, 4, 5, 6, 7, 8];
        for (m, t) in [
            (ReturnRoutabilityCheck::PathChallenge(c), 0u8),
            (ReturnRoutabilityCheck::PathResponse(c), 1),
            (ReturnRoutabilityCheck::PathDrop(c), 2),
        ] {
            let v = m.to_vec();
            assert_eq!(v[0], t);
            assert_eq!(&v[1..], &c);
            assert_eq!(ReturnRoutabilityCheck::read(&v), Ok(m));
        }
        assert_eq!(u8::from(crate::codec::ContentType::ReturnRoutabilityCheck), 27);
        assert_eq!(u16::from(crate::codec::ExtensionType::Rrc), 61);
    }

    /// Bad input: every row is refused (or, for unknown types, ignored), never a panic.
    #[test]
    fn bad_input_grid() {
        let rows: &[(&[u8], &str)] = &[
            (&[], "empty"),
            (&[0], "path_challenge without cookie"),
            (&[1, 1, 2, 3, 4, 5, 6, 7], "path_response with a 7-byte cookie"),
            (&[2, 1, 2, 3, 4, 5, 6, 7, 8, 9], "path_drop with a trailing byte"),
            (&[0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0], "path_challenge with trailing bytes"),
        ];
        for (bytes, what) in rows {
            assert!(ReturnRoutabilityCheck::read(bytes).is_err(), "{what} accepted");
        }
        // RFC 9853 §4: unknown types parse, whatever follows, and are ignored by the caller.
        assert_eq!(ReturnRoutabilityCheck::read(&[3]), Ok(ReturnRoutabilityCheck::Unknown(3)));
        assert_eq!(ReturnRoutabilityCheck::read(&[254, 9, 9]), Ok(ReturnRoutabilityCheck::Unknown(254)));
    }
}
