//! The presentation-language vectors (RFC 8446 §3.4) and extension blocks (RFC 8446 §4.2,
//! RFC 5246 §7.4.1.4) that the DTLS 1.2 and DTLS 1.3 messages both read and write: one reader
//! and one writer for both versions, so a length, bound or duplicate rule is checked the same
//! way everywhere.

use super::enums::ExtensionType;
use super::reader::*;

/// `opaque x<..2^8-1>`.
pub(crate) fn put_vec_u8(out: &mut Vec<u8>, bytes: &[u8]) {
    debug_assert!(bytes.len() <= 0xff, "opaque<..2^8-1> too long");
    put_len_prefixed(out, LenPrefix::U8, |o| o.extend_from_slice(bytes));
}
/// `opaque x<..2^16-1>`.
pub(crate) fn put_vec_u16(out: &mut Vec<u8>, bytes: &[u8]) {
    debug_assert!(bytes.len() <= 0xffff, "opaque<..2^16-1> too long");
    put_len_prefixed(out, LenPrefix::U16, |o| o.extend_from_slice(bytes));
}
/// `opaque x<..2^24-1>`.
pub(crate) fn put_vec_u24(out: &mut Vec<u8>, bytes: &[u8]) {
    debug_assert!(bytes.len() <= 0xff_ffff, "opaque<..2^24-1> too long");
    put_len_prefixed(out, LenPrefix::U24, |o| o.extend_from_slice(bytes));
}
/// A list of one-byte code points behind a one-byte length.
pub(crate) fn put_list_u8<T: Copy + Into<u8>>(out: &mut Vec<u8>, items: &[T]) {
    debug_assert!(items.len() <= 0xff, "list<..2^8-1> too long");
    put_len_prefixed(out, LenPrefix::U8, |o| o.extend(items.iter().map(|&t| t.into())));
}
/// A list of two-byte code points behind a two-byte length.
pub(crate) fn put_list_u16<T: Copy + Into<u16>>(out: &mut Vec<u8>, items: &[T]) {
    debug_assert!(items.len() * 2 <= 0xffff, "list<..2^16-1> too long");
    put_len_prefixed(out, LenPrefix::U16, |o| {
        for &t in items {
            put_u16(o, t.into());
        }
    });
}
/// Reads `T list<min..2^8-1>` of one-byte code points; fewer than `min` entries is illegal.
pub(crate) fn read_list_u8<T: From<u8>>(
    r: &mut Reader<'_>,
    min: usize,
    what: &'static str,
) -> Result<Vec<T>, InvalidMessage> {
    let body = r.vec_u8(what)?;
    if body.len() < min {
        return Err(InvalidMessage::IllegalValue(what));
    }
    Ok(body.iter().map(|&b| T::from(b)).collect())
}
/// Reads a list of two-byte code points behind a two-byte length: the byte length must be
/// even and cover at least `min` entries.
pub(crate) fn read_list_u16<T: From<u16>>(
    r: &mut Reader<'_>,
    min: usize,
    what: &'static str,
) -> Result<Vec<T>, InvalidMessage> {
    let body = r.vec_u16(what)?;
    if body.len() % 2 != 0 || body.len() < 2 * min {
        return Err(InvalidMessage::IllegalValue(what));
    }
    Ok(body.chunks_exact(2).map(|c| T::from(u16::from_be_bytes([c[0], c[1]]))).collect())
}
/// Reads a non-empty `opaque x<1..2^8-1>`.
pub(crate) fn read_nonempty_u8<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a [u8], InvalidMessage> {
    let v = r.vec_u8(what)?;
    if v.is_empty() {
        return Err(InvalidMessage::IllegalValue(what));
    }
    Ok(v)
}
/// Reads a non-empty `opaque x<1..2^16-1>`.
pub(crate) fn read_nonempty_u16<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a [u8], InvalidMessage> {
    let v = r.vec_u16(what)?;
    if v.is_empty() {
        return Err(InvalidMessage::IllegalValue(what));
    }
    Ok(v)
}
/// Reads a non-empty `opaque x<1..2^24-1>`.
pub(crate) fn read_nonempty_u24<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a [u8], InvalidMessage> {
    let v = r.vec_u24(what)?;
    if v.is_empty() {
        return Err(InvalidMessage::IllegalValue(what));
    }
    Ok(v)
}
/// Fails if any value occurs twice; sorting keeps this O(n log n) on hostile input.
pub(crate) fn check_unique(mut keys: Vec<u16>, what: &'static str) -> Result<(), InvalidMessage> {
    keys.sort_unstable();
    if keys.windows(2).any(|w| w[0] == w[1]) {
        return Err(InvalidMessage::IllegalValue(what));
    }
    Ok(())
}

/// Decodes an extension's data with `f`, which must consume all of it (RFC 8446 §4.2:
/// "receivers MUST abort the handshake with a decode_error alert if there is data left over").
pub(crate) fn parse_ext_data<'a, T>(
    data: &'a [u8],
    what: &'static str,
    f: impl FnOnce(&mut Reader<'a>) -> Result<T, InvalidMessage>,
) -> Result<T, InvalidMessage> {
    let mut r = Reader::new(data);
    let v = f(&mut r)?;
    r.expect_empty(what)?;
    Ok(v)
}

/// Extensions whose `extension_data` is empty (`struct {} Empty`).
pub(crate) fn expect_empty_data(data: &[u8], what: &'static str) -> Result<(), InvalidMessage> {
    if data.is_empty() { Ok(()) } else { Err(InvalidMessage::IllegalValue(what)) }
}

/// Reads an `Extension extensions<0..2^16-1>` block, decoding each entry with `one`, and
/// refuses repeated types (RFC 8446 §4.2: "There MUST NOT be more than one extension of the
/// same type in a given extension block"; RFC 5246 §7.4.1.4 likewise), reported as
/// `IllegalValue(duplicate)`.
pub(crate) fn read_ext_block<'a, T>(
    r: &mut Reader<'a>,
    what: &'static str,
    duplicate: &'static str,
    mut one: impl FnMut(ExtensionType, &'a [u8]) -> Result<T, InvalidMessage>,
) -> Result<Vec<T>, InvalidMessage> {
    let block = r.vec_u16(what)?;
    let mut br = Reader::new(block);
    let mut exts = Vec::new();
    let mut types = Vec::new();
    while !br.is_empty() {
        let typ = ExtensionType::read(&mut br)?;
        let data = br.vec_u16("extension_data")?;
        types.push(u16::from(typ));
        exts.push(one(typ, data)?);
    }
    check_unique(types, duplicate)?;
    Ok(exts)
}

/// Writes an extension block, each entry as type, then its data behind a two-byte length.
pub(crate) fn put_ext_block<T>(
    out: &mut Vec<u8>,
    exts: &[T],
    typ: impl Fn(&T) -> ExtensionType,
    data: impl Fn(&T, &mut Vec<u8>),
) {
    put_len_prefixed(out, LenPrefix::U16, |o| {
        for e in exts {
            typ(e).encode(o);
            put_len_prefixed(o, LenPrefix::U16, |d| data(e, d));
        }
    });
}
