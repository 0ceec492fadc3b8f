//! Pre-shared keys from the command line and from a PSK file.
//!
//! # PSK file format (`--psk-file FILE`)
//!
//! One `identity:key` per line, in UTF-8:
//!
//! ```text
//! # comment lines start with '#'; blank lines are ignored
//! sensor-17:correct horse battery staple
//! gateway:hex:000102030405060708090a0b0c0d0e0f
//! ```
//!
//! * The identity is everything before the **first** `:` (so an identity cannot contain `:`);
//!   the key is everything after it, taken as text bytes (like libcoap's `-k`), and may
//!   contain `:`.
//! * A key written `hex:HEXDIGITS` is binary (even number of hex digits, either case). A text
//!   key that itself starts with `hex:` must therefore be written in hex.
//! * Whitespace around the whole line is trimmed (so CRLF files work); whitespace inside is kept.
//! * Identities are 1 to 128 bytes and keys 1 to 64 bytes (RFC 4279 §5.3); an identity may
//!   appear only once.
//!
//! Every bad line is reported, each with its line number and what is wrong.

use coaps_dtls::Psk;
use coaps_dtls::{MAX_PSK_IDENTITY_LEN, MAX_PSK_LEN};
use std::fmt;

/// The public demo identity used when no credentials are given.
pub const DEMO_IDENTITY: &str = "coaps-demo";
/// The public demo key (text) used when no credentials are given.
pub const DEMO_KEY: &str = "coaps-demo-key";

/// The built-in demo PSK. Public: for trying things out only.
pub fn demo_psk() -> Psk {
    make_psk(DEMO_IDENTITY.as_bytes(), DEMO_KEY.as_bytes()).unwrap_or_else(|_| unreachable!("demo PSK is valid"))
}

/// Decodes a hex string (even length, `0-9a-fA-F`).
pub fn parse_hex(hex: &str) -> Result<Vec<u8>, String> {
    if let Some((i, c)) = hex.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(format!("`{c}` at position {} is not a hex digit", i + 1));
    }
    if !hex.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits ({}): each byte takes two", hex.len()));
    }
    Ok(hex.as_bytes().chunks(2).map(|p| (hex_val(p[0]) << 4) | hex_val(p[1])).collect())
}

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

/// A PSK with the RFC 4279 §5.3 limits checked, with messages that say which limit.
pub fn make_psk(identity: &[u8], key: &[u8]) -> Result<Psk, String> {
    if identity.is_empty() {
        return Err("empty identity".into());
    }
    if identity.len() > MAX_PSK_IDENTITY_LEN {
        return Err(format!("identity is {} bytes, at most {MAX_PSK_IDENTITY_LEN} allowed", identity.len()));
    }
    if key.is_empty() {
        return Err("empty key".into());
    }
    if key.len() > MAX_PSK_LEN {
        return Err(format!("key is {} bytes, at most {MAX_PSK_LEN} allowed", key.len()));
    }
    Psk::new(identity.to_vec(), key.to_vec())
}

/// One bad line of a PSK file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Parses the text of a PSK file (format in the [module docs](self)). Returns every PSK, or
/// every bad line.
pub fn parse_psk_file(text: &str) -> Result<Vec<Psk>, Vec<LineError>> {
    let mut psks: Vec<(usize, Psk)> = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut err = |message: String| errors.push(LineError { line: line_no, message });
        let Some((identity, key)) = line.split_once(':') else {
            err("expected `identity:key` (or `identity:hex:HEXKEY`), found no `:`".into());
            continue;
        };
        let key = match key.strip_prefix("hex:") {
            Some(hex) => match parse_hex(hex) {
                Ok(k) => k,
                Err(e) => {
                    err(format!("bad hex key: {e}"));
                    continue;
                }
            },
            None => key.as_bytes().to_vec(),
        };
        let psk = match make_psk(identity.as_bytes(), &key) {
            Ok(p) => p,
            Err(e) => {
                err(e);
                continue;
            }
        };
        if let Some((first, _)) = psks.iter().find(|(_, p)| p.identity == psk.identity) {
            err(format!("identity `{identity}` already defined on line {first}"));
            continue;
        }
        psks.push((line_no, psk));
    }
    if errors.is_empty() { Ok(psks.into_iter().map(|(_, p)| p).collect()) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decoding() {
        assert_eq!(parse_hex("00ff7Fa0").unwrap(), [0x00, 0xff, 0x7f, 0xa0]);
        assert_eq!(parse_hex("").unwrap(), Vec::<u8>::new());
        assert!(parse_hex("abc").unwrap_err().contains("odd number"));
        assert!(parse_hex("0g").unwrap_err().contains("`g` at position 2"));
        assert!(parse_hex("00 11").unwrap_err().contains("position 3"));
    }

    #[test]
    fn good_file() {
        let text = "# sensors\n\
                    \n\
                    sensor-17:correct horse battery staple\r\n\
                    \t  gateway:hex:000102030405060708090A0b0c0d0e0f  \n\
                    colon:a:b:c\n\
                    ascii-hex:hexadecimal\n";
        let psks = parse_psk_file(text).unwrap();
        let got: Vec<(&[u8], &[u8])> = psks.iter().map(|p| (p.identity.as_slice(), p.key())).collect();
        assert_eq!(
            got,
            [
                (&b"sensor-17"[..], &b"correct horse battery staple"[..]),
                (b"gateway", &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]),
                (b"colon", b"a:b:c"),
                (b"ascii-hex", b"hexadecimal"),
            ]
        );
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let long_id = "i".repeat(129);
        let long_key = "k".repeat(65);
        let text = format!(
            "ok:key\n\
             no colon here\n\
             :nokey-identity\n\
             empty-key:\n\
             bad-hex:hex:0x12\n\
             odd-hex:hex:123\n\
             {long_id}:k\n\
             long-key:{long_key}\n\
             ok:again\n\
             # fine\n\
             max-id-ok:{}\n",
            "k".repeat(64)
        );
        let errs = parse_psk_file(&text).unwrap_err();
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6, 7, 8, 9]);
        let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(msgs[0].starts_with("line 2: expected `identity:key`"), "{}", msgs[0]);
        assert_eq!(msgs[1], "line 3: empty identity");
        assert_eq!(msgs[2], "line 4: empty key");
        assert!(msgs[3].contains("bad hex key: `x` at position 2"), "{}", msgs[3]);
        assert!(msgs[4].contains("odd number of hex digits"), "{}", msgs[4]);
        assert_eq!(msgs[5], "line 7: identity is 129 bytes, at most 128 allowed");
        assert_eq!(msgs[6], "line 8: key is 65 bytes, at most 64 allowed");
        assert_eq!(msgs[7], "line 9: identity `ok` already defined on line 1");
    }

    #[test]
    fn empty_and_comment_only_files_give_no_keys() {
        assert!(parse_psk_file("").unwrap().is_empty());
        assert!(parse_psk_file("# nothing\n   \n#x:y\n").unwrap().is_empty());
    }

    #[test]
    fn demo_psk_is_the_documented_one() {
        let p = demo_psk();
        assert_eq!(p.identity, b"coaps-demo");
        assert_eq!(p.key(), b"coaps-demo-key");
    }
}
