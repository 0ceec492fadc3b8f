//! Seeded garbage for the decoder fuzz loops of `msgs` and `msgs13` (tests only).

use super::reader::InvalidMessage;

/// xorshift64*, seeded: reproducible without a dependency.
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub(crate) fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    /// Random bytes, mostly short (under 24) where small length fields are likely to line
    /// up, sometimes up to 400.
    pub(crate) fn input(&mut self) -> Vec<u8> {
        let len = if self.below(4) == 0 { self.below(400) } else { self.below(24) };
        (0..len).map(|_| self.byte()).collect()
    }
}

/// A decoder under test: decodes a whole body and, when that succeeds, checks that the value
/// re-encodes to bytes that decode to the same value.
pub(crate) type Decoder = fn(&[u8]) -> Result<(), InvalidMessage>;

/// How many of `decoders` accept `input`.
pub(crate) fn accepted_by(decoders: &[(&'static str, Decoder)], input: &[u8]) -> usize {
    decoders.iter().filter(|(_, d)| d(input).is_ok()).count()
}
