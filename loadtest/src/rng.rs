//! The one pseudo-random generator of the load tools.

/// The one pseudo-random generator of the load tools: SplitMix64, small,
/// fast and seeded. Not for cryptography: it only makes arrival times and
/// the scenario mix reproducible. Its `n`-th output can also be computed
/// directly ([`SplitMix64::nth`]), so a request's scenario depends on its
/// index alone, however the callers interleave.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

/// SplitMix64's increment (the golden ratio in 64-bit fixed point).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl SplitMix64 {
    /// A generator started from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The `n`-th output (from 0) of the generator seeded with `seed`.
    pub fn nth(seed: u64, n: u64) -> u64 {
        mix(seed.wrapping_add(GOLDEN.wrapping_mul(n.wrapping_add(1))))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// A uniform number in (0, 1]: never 0, so its logarithm is finite.
    pub fn next_f64(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// An exponentially distributed number with the given mean (the gap
    /// between arrivals of a Poisson process of rate `1 / mean`).
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * self.next_f64().ln()
    }
}

/// SplitMix64's output function: a bijective 64-bit mixer.
fn mix(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
