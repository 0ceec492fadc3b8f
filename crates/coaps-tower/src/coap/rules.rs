//! The CoAP message rules [`CoapLayer`](super::CoapLayer) enforces before a request reaches the
//! application (RFC 7252 §3, §5.4, §5.10), and the conditional-request helper
//! ([`preconditions`], §5.10.8) an application calls with its resource's current ETag.
//!
//! The rules run over the **raw datagram** ([`scan`]), not over coap-lite's decoded packet:
//! coap-lite accepts some malformed messages (a payload marker followed by no payload) and
//! keeps only option numbers and values, so a total pre-parser decides what is a format error
//! and which options the message carries, in wire order.
//!
//! | what | CON request | NON request | RFC 7252 |
//! |---|---|---|---|
//! | message format error: token length 9–15, token or option running past the end, option nibble 15, option number above 65535, payload marker with an empty payload | Reset | dropped | §3, §4.2, §4.3 |
//! | unrecognised critical (odd-numbered) option, or a critical one whose value length is out of range or that is repeated when it may not be | 4.02 Bad Option | dropped | §5.4.1, §5.4.3, §5.4.5 |
//! | unrecognised elective (even-numbered) option | ignored | ignored | §5.4.1 |
//! | recognised elective option with a value length out of range, or repeated when it may not be (the extra copies) | removed, then ignored | removed, then ignored | §5.4.3, §5.4.5 |
//! | Proxy-Uri or Proxy-Scheme, the application not a proxy | 5.05 Proxying Not Supported | 5.05 (NON) | §5.7.2, §5.10.2 |
//!
//! Nothing refused here reaches the application or takes a deduplication entry; a
//! retransmission of a refused confirmable request is refused again with the same answer.
//!
//! # Example: a conditional update
//!
//! ```
//! use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
//! use coaps_tower::coap::rules::{Precondition, preconditions};
//!
//! let mut put = Packet::new();
//! put.header.code = MessageClass::Request(RequestType::Put);
//! put.add_option(CoapOption::IfMatch, b"v1".to_vec());
//! // The resource is at ETag "v2": the update must not run (§5.10.8.1).
//! assert_eq!(preconditions(&put, Some(b"v2")), Precondition::Failed);
//! assert_eq!(preconditions(&put, Some(b"v1")), Precondition::Met);
//! assert_eq!(Precondition::Failed.response_code(), Some(ResponseType::PreconditionFailed));
//! ```

use coap_lite::{CoapOption, Packet, ResponseType};
use std::collections::BTreeSet;

/// If-Match (RFC 7252 §5.10.8.1).
pub const IF_MATCH: u16 = 1;
/// Uri-Host (RFC 7252 §5.10.1).
pub const URI_HOST: u16 = 3;
/// ETag (RFC 7252 §5.10.6).
pub const ETAG: u16 = 4;
/// If-None-Match (RFC 7252 §5.10.8.2).
pub const IF_NONE_MATCH: u16 = 5;
/// Observe (RFC 7641 §2).
pub const OBSERVE: u16 = 6;
/// Uri-Port (RFC 7252 §5.10.1).
pub const URI_PORT: u16 = 7;
/// Location-Path (RFC 7252 §5.10.7).
pub const LOCATION_PATH: u16 = 8;
/// Uri-Path (RFC 7252 §5.10.1).
pub const URI_PATH: u16 = 11;
/// Content-Format (RFC 7252 §5.10.3).
pub const CONTENT_FORMAT: u16 = 12;
/// Max-Age (RFC 7252 §5.10.5).
pub const MAX_AGE: u16 = 14;
/// Uri-Query (RFC 7252 §5.10.1).
pub const URI_QUERY: u16 = 15;
/// Accept (RFC 7252 §5.10.4).
pub const ACCEPT: u16 = 17;
/// Location-Query (RFC 7252 §5.10.7).
pub const LOCATION_QUERY: u16 = 20;
/// Block2 (RFC 7959 §2.1).
pub const BLOCK2: u16 = 23;
/// Block1 (RFC 7959 §2.1).
pub const BLOCK1: u16 = 27;
/// Size2 (RFC 7959 §4).
pub const SIZE2: u16 = 28;
/// Proxy-Uri (RFC 7252 §5.10.2).
pub const PROXY_URI: u16 = 35;
/// Proxy-Scheme (RFC 7252 §5.10.2).
pub const PROXY_SCHEME: u16 = 39;
/// Size1 (RFC 7252 §5.10.9).
pub const SIZE1: u16 = 60;
/// Echo (RFC 9175 §2.2.1).
pub const ECHO: u16 = 252;
/// No-Response (RFC 7967 §2).
pub const NO_RESPONSE: u16 = 258;
/// Request-Tag (RFC 9175 §3.2.1).
pub const REQUEST_TAG: u16 = 292;

/// The options [`UnderstoodOptions::default`] recognises: those of RFC 7252 plus Observe,
/// Block1/2, Size2, Echo, Request-Tag and No-Response.
pub const DEFAULT_UNDERSTOOD_OPTIONS: &[u16] = &[
    IF_MATCH,
    URI_HOST,
    ETAG,
    IF_NONE_MATCH,
    OBSERVE,
    URI_PORT,
    LOCATION_PATH,
    URI_PATH,
    CONTENT_FORMAT,
    MAX_AGE,
    URI_QUERY,
    ACCEPT,
    LOCATION_QUERY,
    BLOCK2,
    BLOCK1,
    SIZE2,
    PROXY_URI,
    PROXY_SCHEME,
    SIZE1,
    ECHO,
    NO_RESPONSE,
    REQUEST_TAG,
];

/// Whether option `number` is critical (RFC 7252 §5.4.1, §5.4.6: odd numbers).
pub const fn is_critical(number: u16) -> bool {
    number & 1 == 1
}

/// The value length range and repeatability of a registered option (RFC 7252 §5.10 Table 4,
/// RFC 7641 §2, RFC 7959 §2.1 and §4, RFC 9175 §2.2.1 and §3.2.1, RFC 7967 §2). `None` for
/// options this crate has no format for (an application's own): any value, repeatable.
fn format_of(number: u16) -> Option<(usize, usize, bool)> {
    Some(match number {
        IF_MATCH => (0, 8, true),
        URI_HOST => (1, 255, false),
        ETAG => (1, 8, true),
        IF_NONE_MATCH => (0, 0, false),
        OBSERVE => (0, 3, false),
        URI_PORT => (0, 2, false),
        LOCATION_PATH | URI_PATH | URI_QUERY | LOCATION_QUERY => (0, 255, true),
        CONTENT_FORMAT | ACCEPT => (0, 2, false),
        MAX_AGE | SIZE2 | SIZE1 => (0, 4, false),
        BLOCK2 | BLOCK1 => (0, 3, false),
        PROXY_URI => (1, 1034, false),
        PROXY_SCHEME => (1, 255, false),
        ECHO => (1, 40, false),
        NO_RESPONSE => (0, 1, false),
        REQUEST_TAG => (0, 8, true),
        _ => return None,
    })
}

/// The option numbers an application recognises (RFC 7252 §5.4.1). Default:
/// [`DEFAULT_UNDERSTOOD_OPTIONS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnderstoodOptions(BTreeSet<u16>);

impl Default for UnderstoodOptions {
    fn default() -> Self {
        Self(DEFAULT_UNDERSTOOD_OPTIONS.iter().copied().collect())
    }
}

impl UnderstoodOptions {
    /// No option at all: every critical option is refused.
    pub fn none() -> Self {
        Self(BTreeSet::new())
    }

    /// These options and no others.
    pub fn only(numbers: impl IntoIterator<Item = u16>) -> Self {
        Self(numbers.into_iter().collect())
    }

    /// Also recognises `number` (an application's own option).
    pub fn with(mut self, number: u16) -> Self {
        self.0.insert(number);
        self
    }

    /// No longer recognises `number`.
    pub fn without(mut self, number: u16) -> Self {
        self.0.remove(&number);
        self
    }

    /// Whether `number` is recognised.
    pub fn contains(&self, number: u16) -> bool {
        self.0.contains(&number)
    }
}

/// A message format error (RFC 7252 §3): the message is rejected (§4.2, §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    /// Shorter than the 4-byte header.
    Truncated,
    /// Token Length 9–15 (reserved, §3).
    TokenLength,
    /// The token runs past the end of the message.
    TokenPastEnd,
    /// An option header nibble of 15 that is not the payload marker (§3.1).
    ReservedNibble,
    /// An option's extended delta or length, or its value, runs past the end (§3.1).
    OptionPastEnd,
    /// The option number exceeds 65535.
    OptionNumber,
    /// A payload marker followed by a zero-length payload (§3).
    EmptyPayload,
}

/// One option as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireOption<'a> {
    /// The option number (the running sum of deltas).
    pub number: u16,
    /// The value bytes.
    pub value: &'a [u8],
}

/// The options of a message, in wire order, and where its payload starts: what [`scan`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned<'a> {
    /// The token.
    pub token: &'a [u8],
    /// The options, in order.
    pub options: Vec<WireOption<'a>>,
    /// The payload (empty when there is no payload marker).
    pub payload: &'a [u8],
}

/// Walks a CoAP message (RFC 7252 §3, §3.1) without decoding it: total over any bytes, never
/// panics, allocates only the option list (at most one entry per byte).
pub fn scan(data: &[u8]) -> Result<Scanned<'_>, FormatError> {
    let [b0, _, _, _, rest @ ..] = data else { return Err(FormatError::Truncated) };
    let tkl = usize::from(b0 & 0x0f);
    if tkl > 8 {
        return Err(FormatError::TokenLength);
    }
    let (token, mut rest) = rest.split_at_checked(tkl).ok_or(FormatError::TokenPastEnd)?;
    let mut options = Vec::new();
    let mut number: u32 = 0;
    loop {
        let Some((&byte, after)) = rest.split_first() else {
            return Ok(Scanned { token, options, payload: &[] });
        };
        if byte == 0xff {
            if after.is_empty() {
                return Err(FormatError::EmptyPayload);
            }
            return Ok(Scanned { token, options, payload: after });
        }
        rest = after;
        let delta = extended(byte >> 4, &mut rest)?;
        let len = extended(byte & 0x0f, &mut rest)?;
        number += delta;
        let number16 = u16::try_from(number).map_err(|_| FormatError::OptionNumber)?;
        let (value, after) = rest.split_at_checked(len as usize).ok_or(FormatError::OptionPastEnd)?;
        rest = after;
        options.push(WireOption { number: number16, value });
    }
}

/// An option delta or length nibble with its extended bytes (RFC 7252 §3.1).
fn extended(nibble: u8, rest: &mut &[u8]) -> Result<u32, FormatError> {
    match nibble {
        0..=12 => Ok(u32::from(nibble)),
        13 => {
            let (&b, after) = rest.split_first().ok_or(FormatError::OptionPastEnd)?;
            *rest = after;
            Ok(u32::from(b) + 13)
        }
        14 => {
            let (&ext, after) = rest.split_first_chunk::<2>().ok_or(FormatError::OptionPastEnd)?;
            *rest = after;
            Ok(u32::from(u16::from_be_bytes(ext)) + 269)
        }
        _ => Err(FormatError::ReservedNibble),
    }
}

/// Why a well-formed request is refused before the application, and with which answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A critical option that is not recognised, or whose value is malformed or repeated
    /// (RFC 7252 §5.4.1, §5.4.3, §5.4.5): 4.02 Bad Option for a CON request, silence for a NON.
    BadOption(u16),
    /// Proxy-Uri or Proxy-Scheme and the application is no proxy (§5.10.2): 5.05.
    ProxyingNotSupported,
}

impl Refusal {
    /// The response code, `None` when the request is silently dropped (`confirmable` false for
    /// a NON request).
    pub fn response_code(self, confirmable: bool) -> Option<ResponseType> {
        match self {
            Self::BadOption(_) if confirmable => Some(ResponseType::BadOption),
            Self::BadOption(_) => None,
            Self::ProxyingNotSupported => Some(ResponseType::ProxyingNotSupported),
        }
    }

    /// A diagnostic payload for the response (RFC 7252 §5.5.2).
    pub fn diagnostic(self) -> String {
        match self {
            Self::BadOption(n) => format!("critical option {n} not understood"),
            Self::ProxyingNotSupported => "no proxying here".to_owned(),
        }
    }
}

/// The rules of one [`CoapLayer`](super::CoapLayer): which options the application
/// recognises and whether it acts as a forward proxy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageRules {
    /// Recognised option numbers. Default [`UnderstoodOptions::default`].
    pub understood: UnderstoodOptions,
    /// Whether the application proxies (Proxy-Uri / Proxy-Scheme reach it). Default false:
    /// they are answered 5.05 (RFC 7252 §5.10.2).
    pub proxy: bool,
}

/// What the option rules decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Recognised elective options whose occurrence must be removed before the application
    /// sees the request (malformed value, or a repetition of a non-repeatable option), by
    /// option number and index among that number's occurrences, in wire order.
    pub strip: Vec<(u16, usize)>,
}

impl MessageRules {
    /// Applies the option rules to the options of a well-formed request.
    pub fn check(&self, options: &[WireOption<'_>]) -> Result<Checked, Refusal> {
        let mut strip = Vec::new();
        let mut proxy = false;
        // Options arrive sorted by number (deltas are unsigned), so a repetition is adjacent.
        let mut prev: Option<u16> = None;
        let mut index = 0usize;
        for o in options {
            index = if prev == Some(o.number) { index + 1 } else { 0 };
            prev = Some(o.number);
            if !self.understood.contains(o.number) {
                if is_critical(o.number) {
                    return Err(Refusal::BadOption(o.number));
                }
                // §5.4.1: an unrecognised elective option is ignored.
                continue;
            }
            if let Some((min, max, repeatable)) = format_of(o.number) {
                let bad = !(min..=max).contains(&o.value.len()) || (index > 0 && !repeatable);
                if bad {
                    // §5.4.3, §5.4.5: treated like an unrecognised option.
                    if is_critical(o.number) {
                        return Err(Refusal::BadOption(o.number));
                    }
                    strip.push((o.number, index));
                    continue;
                }
            }
            proxy |= matches!(o.number, PROXY_URI | PROXY_SCHEME);
        }
        if proxy && !self.proxy {
            return Err(Refusal::ProxyingNotSupported);
        }
        Ok(Checked { strip })
    }
}

/// Removes the option occurrences `strip` names from `packet` (see [`Checked::strip`]).
/// coap-lite's `clear_option` leaves an empty list behind, which `get_option` reports as
/// present, so the options are rebuilt without them.
pub(crate) fn strip(packet: &mut Packet, strip: &[(u16, usize)]) {
    if strip.is_empty() {
        return;
    }
    let kept: Vec<(u16, Vec<u8>)> = packet
        .options()
        .flat_map(|(&number, values)| {
            values
                .iter()
                .enumerate()
                .filter(move |(i, _)| !strip.contains(&(number, *i)))
                .map(move |(_, v)| (number, v.clone()))
        })
        .collect();
    let mut rebuilt = Packet::new();
    rebuilt.header = packet.header.clone();
    rebuilt.set_token(packet.get_token().to_vec());
    rebuilt.payload = std::mem::take(&mut packet.payload);
    for (number, value) in kept {
        rebuilt.add_option(CoapOption::from(number), value);
    }
    *packet = rebuilt;
}

/// The outcome of evaluating a request's If-Match / If-None-Match options (RFC 7252 §5.10.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// No condition, or every condition holds: perform the request.
    Met,
    /// A condition does not hold: answer 4.12 Precondition Failed and do nothing.
    Failed,
}

impl Precondition {
    /// 4.12 Precondition Failed for [`Precondition::Failed`], `None` otherwise.
    pub fn response_code(self) -> Option<ResponseType> {
        match self {
            Self::Met => None,
            Self::Failed => Some(ResponseType::PreconditionFailed),
        }
    }
}

/// Evaluates the conditional-request options of `request` against the target resource's
/// current state: `current_etag` is `Some(etag)` when the resource exists (an empty slice if
/// it exists but has no ETag), `None` when it does not.
///
/// * **If-Match** (§5.10.8.1), possibly repeated: holds when one of its values equals the
///   current ETag, or when one is empty and the resource exists.
/// * **If-None-Match** (§5.10.8.2): holds only when the resource does not exist.
///
/// An application calls this before performing a request and answers 4.12 (with nothing done)
/// on [`Precondition::Failed`].
pub fn preconditions(request: &Packet, current_etag: Option<&[u8]>) -> Precondition {
    if let Some(values) = request.get_option(CoapOption::IfMatch) {
        let holds = match current_etag {
            None => false,
            Some(etag) => values.iter().any(|v| v.is_empty() || (!etag.is_empty() && v.as_slice() == etag)),
        };
        if !holds {
            return Precondition::Failed;
        }
    }
    if request.get_option(CoapOption::IfNoneMatch).is_some() && current_etag.is_some() {
        return Precondition::Failed;
    }
    Precondition::Met
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(data: &[u8]) -> Vec<(u16, Vec<u8>)> {
        scan(data).unwrap().options.iter().map(|o| (o.number, o.value.to_vec())).collect()
    }

    #[test]
    fn scan_agrees_with_coap_lite_on_a_valid_message() {
        let mut p = Packet::new();
        p.header.message_id = 9;
        p.set_token(vec![1, 2, 3]);
        p.add_option(CoapOption::UriPath, b"a".to_vec());
        p.add_option(CoapOption::UriPath, b"bb".to_vec());
        p.add_option(CoapOption::Unknown(65001), vec![0; 300]);
        p.add_option(CoapOption::Unknown(2000), vec![7; 20]);
        p.payload = b"xyz".to_vec();
        let bytes = p.to_bytes().unwrap();
        let s = scan(&bytes).unwrap();
        assert_eq!(s.token, &[1, 2, 3]);
        assert_eq!(s.payload, b"xyz");
        assert_eq!(
            opts(&bytes),
            vec![(11, b"a".to_vec()), (11, b"bb".to_vec()), (2000, vec![7; 20]), (65001, vec![0; 300])]
        );
    }

    #[test]
    fn format_errors() {
        assert_eq!(scan(&[0x40, 1, 0]), Err(FormatError::Truncated));
        for tkl in 9..=15u8 {
            assert_eq!(scan(&[0x40 | tkl, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), Err(FormatError::TokenLength));
        }
        assert_eq!(scan(&[0x42, 1, 0, 0, 0xaa]), Err(FormatError::TokenPastEnd));
        assert_eq!(scan(&[0x40, 1, 0, 0, 0xff]), Err(FormatError::EmptyPayload));
        assert_eq!(scan(&[0x40, 1, 0, 0, 0xf1, 0]), Err(FormatError::ReservedNibble));
        assert_eq!(scan(&[0x40, 1, 0, 0, 0x1f]), Err(FormatError::ReservedNibble));
        assert_eq!(scan(&[0x40, 1, 0, 0, 0xd0]), Err(FormatError::OptionPastEnd));
        assert_eq!(scan(&[0x40, 1, 0, 0, 0xe0, 1]), Err(FormatError::OptionPastEnd));
        assert_eq!(scan(&[0x40, 1, 0, 0, 0x13, 1, 2]), Err(FormatError::OptionPastEnd));
        // 65535 + 269 + ...: past the largest option number.
        assert_eq!(scan(&[0x40, 1, 0, 0, 0xe0, 0xff, 0xff]), Err(FormatError::OptionNumber));
        assert_eq!(scan(&[0x40, 1, 0, 0, 0xe0, 0xff, 0x00, 0xe0, 0x01, 0x00]), Err(FormatError::OptionNumber));
        // The largest option number is fine.
        assert_eq!(opts(&[0x40, 1, 0, 0, 0xe0, 0xfe, 0xf2]), vec![(65535, vec![])]);
        assert_eq!(scan(&[0x40, 1, 0, 0, 0xff, 1]).unwrap().payload, &[1]);
    }

    #[test]
    fn option_rules() {
        let rules = MessageRules::default();
        let o = |number, value: &'static [u8]| WireOption { number, value };
        assert_eq!(rules.check(&[o(65001, b"")]), Err(Refusal::BadOption(65001)));
        assert_eq!(rules.check(&[o(65000, b"")]), Ok(Checked { strip: vec![] }));
        assert_eq!(rules.check(&[o(PROXY_URI, b"coap://x/")]), Err(Refusal::ProxyingNotSupported));
        assert_eq!(rules.check(&[o(PROXY_SCHEME, b"coap")]), Err(Refusal::ProxyingNotSupported));
        let proxy = MessageRules { proxy: true, ..Default::default() };
        assert!(proxy.check(&[o(PROXY_URI, b"coap://x/")]).is_ok());
        // Without Proxy-Uri among the recognised options, it is just an unknown critical one.
        let strict = MessageRules { understood: UnderstoodOptions::default().without(PROXY_URI), proxy: true };
        assert_eq!(strict.check(&[o(PROXY_URI, b"coap://x/")]), Err(Refusal::BadOption(PROXY_URI)));
        // §5.4.3: If-None-Match takes no value; Uri-Host needs one.
        assert_eq!(rules.check(&[o(IF_NONE_MATCH, b"x")]), Err(Refusal::BadOption(IF_NONE_MATCH)));
        assert_eq!(rules.check(&[o(URI_HOST, b"")]), Err(Refusal::BadOption(URI_HOST)));
        // §5.4.5: a repeated Accept (critical) is refused, a repeated Max-Age (elective) trimmed.
        assert_eq!(rules.check(&[o(ACCEPT, b""), o(ACCEPT, b"\x01")]), Err(Refusal::BadOption(ACCEPT)));
        assert_eq!(
            rules.check(&[o(URI_PATH, b"a"), o(MAX_AGE, b"\x01"), o(MAX_AGE, b"\x02"), o(MAX_AGE, b"\x03")]),
            Ok(Checked { strip: vec![(MAX_AGE, 1), (MAX_AGE, 2)] })
        );
        assert_eq!(rules.check(&[o(ETAG, b"")]), Ok(Checked { strip: vec![(ETAG, 0)] }));
        // Repeatable ones are fine repeated.
        assert!(rules.check(&[o(URI_PATH, b"a"), o(URI_PATH, b"b"), o(IF_MATCH, b""), o(IF_MATCH, b"1")]).is_ok());
        // An application's own critical option, once declared.
        assert!(
            MessageRules { understood: UnderstoodOptions::default().with(65001), proxy: false }
                .check(&[o(65001, b"anything")])
                .is_ok()
        );
        assert_eq!(
            MessageRules { understood: UnderstoodOptions::none(), proxy: false }.check(&[o(URI_PATH, b"a")]),
            Err(Refusal::BadOption(URI_PATH))
        );
    }

    #[test]
    fn strip_removes_only_the_named_occurrences() {
        let mut p = Packet::new();
        for v in [1u8, 2, 3] {
            p.add_option(CoapOption::MaxAge, vec![v]);
        }
        p.add_option(CoapOption::ETag, vec![]);
        p.add_option(CoapOption::UriPath, b"x".to_vec());
        p.payload = b"body".to_vec();
        p.set_token(vec![5]);
        strip(&mut p, &[(MAX_AGE, 1), (MAX_AGE, 2), (ETAG, 0)]);
        assert_eq!(p.get_first_option(CoapOption::UriPath), Some(&b"x".to_vec()));
        assert_eq!((p.payload.as_slice(), p.get_token()), (&b"body"[..], &[5u8][..]));
        assert_eq!(p.get_option(CoapOption::MaxAge).unwrap().iter().collect::<Vec<_>>(), vec![&vec![1u8]]);
        assert!(p.get_option(CoapOption::ETag).is_none());
    }

    #[test]
    fn if_match_and_if_none_match() {
        let with = |opt: CoapOption, values: &[&[u8]]| {
            let mut p = Packet::new();
            for v in values {
                p.add_option(opt, v.to_vec());
            }
            p
        };
        let plain = Packet::new();
        assert_eq!(preconditions(&plain, Some(b"e")), Precondition::Met);
        assert_eq!(preconditions(&plain, None), Precondition::Met);
        let m = with(CoapOption::IfMatch, &[b"a", b"e"]);
        assert_eq!(preconditions(&m, Some(b"e")), Precondition::Met);
        assert_eq!(preconditions(&m, Some(b"f")), Precondition::Failed);
        assert_eq!(preconditions(&m, Some(b"")), Precondition::Failed, "no ETag matches nothing");
        assert_eq!(preconditions(&m, None), Precondition::Failed);
        let exists = with(CoapOption::IfMatch, &[b""]);
        assert_eq!(preconditions(&exists, Some(b"f")), Precondition::Met);
        assert_eq!(preconditions(&exists, None), Precondition::Failed);
        let none = with(CoapOption::IfNoneMatch, &[b""]);
        assert_eq!(preconditions(&none, Some(b"f")), Precondition::Failed);
        assert_eq!(preconditions(&none, None), Precondition::Met);
        assert_eq!(Precondition::Met.response_code(), None);
    }
}
