//! Deterministic helpers for the discipline's tests (no `rand` dependency).

use std::time::Instant;

/// The start of virtual monotonic time: read once, and the tests only add durations to it (the
/// code under test takes its instants as arguments and never reads the clock).
#[allow(clippy::disallowed_methods)]
pub(crate) fn virtual_epoch() -> Instant {
    Instant::now()
}

/// A xorshift64* generator: deterministic per seed, good enough for simulated noise.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Normal with mean 0 and standard deviation `sd` (Box–Muller).
    pub(crate) fn gauss(&mut self, sd: f64) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}
