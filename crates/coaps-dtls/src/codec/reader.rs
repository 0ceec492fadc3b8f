//! The bounds-checked [`Reader`], the writers, the [`Codec`] trait and [`InvalidMessage`].

use std::fmt;

/// Why bytes could not be decoded. Maps to the `decode_error` alert (RFC 5246 §7.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidMessage {
    /// The input ended before the structure did.
    Truncated(&'static str),
    /// Bytes were left over after the structure ended.
    TrailingData(&'static str),
    /// A length or value is outside what the RFC allows.
    IllegalValue(&'static str),
}

impl fmt::Display for InvalidMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated(w) => write!(f, "truncated {w}"),
            Self::TrailingData(w) => write!(f, "trailing data after {w}"),
            Self::IllegalValue(w) => write!(f, "illegal value in {w}"),
        }
    }
}

impl std::error::Error for InvalidMessage {}

/// A cursor over a byte slice. All reads are bounds-checked.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads from `buf`, starting at its first byte.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not yet consumed.
    pub fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether everything has been consumed.
    pub fn is_empty(&self) -> bool {
        self.left() == 0
    }

    /// Bytes consumed so far.
    pub fn used(&self) -> usize {
        self.pos
    }

    /// The rest of the input, consumed.
    pub fn rest(&mut self) -> &'a [u8] {
        let r = &self.buf[self.pos..];
        self.pos = self.buf.len();
        r
    }

    /// Takes exactly `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], InvalidMessage> {
        if self.left() < n {
            return Err(InvalidMessage::Truncated(what));
        }
        let r = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(r)
    }

    /// Takes a fixed-size array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], InvalidMessage> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Big-endian unsigned integer of `n` bytes (n ≤ 8).
    fn uint(&mut self, n: usize, what: &'static str) -> Result<u64, InvalidMessage> {
        let s = self.take(n, what)?;
        Ok(s.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// Reads a `uint8`.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, InvalidMessage> {
        Ok(self.take(1, what)?[0])
    }
    /// Reads a `uint16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, InvalidMessage> {
        Ok(self.uint(2, what)? as u16)
    }
    /// Reads a `uint24`.
    pub fn u24(&mut self, what: &'static str) -> Result<u32, InvalidMessage> {
        Ok(self.uint(3, what)? as u32)
    }
    /// Reads a `uint32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, InvalidMessage> {
        Ok(self.uint(4, what)? as u32)
    }
    /// Reads a `uint48`.
    pub fn u48(&mut self, what: &'static str) -> Result<u64, InvalidMessage> {
        self.uint(6, what)
    }

    /// Reads `opaque x<0..2^8-1>`: a one-byte length and that many bytes.
    pub fn vec_u8(&mut self, what: &'static str) -> Result<&'a [u8], InvalidMessage> {
        let n = self.u8(what)? as usize;
        self.take(n, what)
    }
    /// Reads `opaque x<0..2^16-1>`.
    pub fn vec_u16(&mut self, what: &'static str) -> Result<&'a [u8], InvalidMessage> {
        let n = self.u16(what)? as usize;
        self.take(n, what)
    }
    /// Reads `opaque x<0..2^24-1>`.
    pub fn vec_u24(&mut self, what: &'static str) -> Result<&'a [u8], InvalidMessage> {
        let n = self.u24(what)? as usize;
        self.take(n, what)
    }

    /// Fails unless every byte was consumed.
    pub fn expect_empty(&self, what: &'static str) -> Result<(), InvalidMessage> {
        if self.is_empty() { Ok(()) } else { Err(InvalidMessage::TrailingData(what)) }
    }
}

/// Appends a `uint16`.
pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}
/// Appends a `uint24` (the top byte of `v` is ignored).
pub fn put_u24(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes()[1..]);
}
/// Appends a `uint32`.
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}
/// Appends a `uint48` (the top two bytes of `v` are ignored).
pub fn put_u48(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes()[2..]);
}

/// Width of a length prefix.
#[derive(Debug, Clone, Copy)]
pub enum LenPrefix {
    /// One byte.
    U8,
    /// Two bytes.
    U16,
    /// Three bytes.
    U24,
}

/// Writes a length-prefixed block: reserves the prefix, runs `body`, then patches the length.
pub fn put_len_prefixed(out: &mut Vec<u8>, prefix: LenPrefix, body: impl FnOnce(&mut Vec<u8>)) {
    let width = match prefix {
        LenPrefix::U8 => 1,
        LenPrefix::U16 => 2,
        LenPrefix::U24 => 3,
    };
    let at = out.len();
    out.resize(at + width, 0);
    body(out);
    let len = out.len() - at - width;
    let bytes = (len as u32).to_be_bytes();
    out[at..at + width].copy_from_slice(&bytes[4 - width..]);
}

/// A wire structure that can be encoded and decoded on its own.
pub trait Codec<'a>: Sized {
    /// Appends the encoding of `self`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Decodes one value, consuming exactly its bytes.
    fn read(r: &mut Reader<'a>) -> Result<Self, InvalidMessage>;

    /// Encodes into a fresh vector.
    fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// Decodes from a complete buffer, refusing trailing bytes.
    fn read_exact(bytes: &'a [u8]) -> Result<Self, InvalidMessage> {
        let mut r = Reader::new(bytes);
        let v = Self::read(&mut r)?;
        r.expect_empty(std::any::type_name::<Self>())?;
        Ok(v)
    }
}
