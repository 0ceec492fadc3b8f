//! Injected randomness: the engine never reaches for a global RNG, so every handshake can be
//! replayed from a seed.

/// A source of cryptographically secure random bytes.
pub trait Rng: Send {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

/// ChaCha20-based RNG, seeded explicitly (tests, simulator) or from the OS.
pub struct SeededRng(rand_chacha::ChaCha20Rng);

impl std::fmt::Debug for SeededRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeededRng(..)")
    }
}

impl SeededRng {
    /// A deterministic RNG from a 64-bit seed. For tests and simulation only.
    pub fn from_seed_u64(seed: u64) -> Self {
        use rand_core::SeedableRng;
        Self(rand_chacha::ChaCha20Rng::seed_from_u64(seed))
    }

    /// A deterministic RNG from a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        use rand_core::SeedableRng;
        Self(rand_chacha::ChaCha20Rng::from_seed(seed))
    }

    /// A child RNG seeded from this one: deterministic when this one is.
    pub fn fork(&mut self) -> Self {
        let mut seed = [0u8; 32];
        self.fill(&mut seed);
        Self::from_seed(seed)
    }

    /// An RNG seeded from the operating system.
    pub fn from_os() -> Self {
        use rand_core::SeedableRng;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the operating system RNG is unavailable");
        Self(rand_chacha::ChaCha20Rng::from_seed(seed))
    }
}

impl Rng for SeededRng {
    fn fill(&mut self, buf: &mut [u8]) {
        use rand_core::Rng as _;
        self.0.fill_bytes(buf);
    }
}
