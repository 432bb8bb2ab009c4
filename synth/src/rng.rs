//! The one source of randomness in this crate: SplitMix64.
//!
//! We implement the generator here rather than depending on `rand` so that a
//! seed produces byte-identical registries on every platform and with every
//! future version of every dependency: golden snapshots, demo scripts and
//! benchmark baselines all rely on that. Only wrapping integer arithmetic is
//! used (no floating point), so there is nothing platform-dependent.
//!
//! SplitMix64 is Steele, Lea and Flood, "Fast splittable pseudorandom number
//! generators" (OOPSLA 2014), with the finaliser constants of Sebastiano
//! Vigna's reference `splitmix64.c`. It is not cryptographic and does not
//! need to be: the output is fake data, not secrets.

/// The golden-ratio increment of SplitMix64 (odd, so the state walks the
/// whole 2^64 cycle).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 finaliser: a bijection on `u64` with good avalanche.
///
/// Also used on its own to hash small keys (province code, district index)
/// into stable fake place names that do not depend on the seed.
pub(crate) const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A SplitMix64 stream.
pub(crate) struct SplitMix64 {
    /// The counter; each output is `mix64` of the next counter value.
    state: u64,
}

impl SplitMix64 {
    /// A stream starting from `state`.
    pub(crate) const fn new(state: u64) -> Self {
        Self { state }
    }

    /// The stream for citizen `index` of registry `seed`.
    ///
    /// The starting state is output number `index` of a SplitMix64 stream
    /// seeded from `seed`: distinct indices get distinct starting states
    /// (`mix64` is a bijection and `GAMMA` is odd), and any citizen can be
    /// generated without generating the ones before it.
    pub(crate) const fn for_citizen(seed: u64, index: u64) -> Self {
        // ASCII "citizens", so this use of the seed differs from the others.
        let base = mix64(seed ^ 0x6369_7469_7A65_6E73);
        Self::new(mix64(base.wrapping_add(index.wrapping_mul(GAMMA))))
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix64(self.state)
    }

    /// A number in `0..n`, by Lemire's multiply-shift. The bias is below
    /// `n / 2^64`, far below anything a synthetic registry could show.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0) has no value to return");
        let wide = u128::from(self.next_u64()) * u128::from(n);
        // The high half of a 64x64 product always fits in 64 bits.
        (wide >> 64) as u64
    }

    /// A number in `lo..=hi`.
    pub(crate) fn between(&mut self, lo: u32, hi: u32) -> u32 {
        assert!(lo <= hi, "empty range");
        // `hi - lo + 1 <= 2^32`, and the result is below it, so it fits.
        lo + self.below(u64::from(hi - lo) + 1) as u32
    }

    /// True with probability `per_mille / 1000`.
    pub(crate) fn chance(&mut self, per_mille: u32) -> bool {
        self.below(1000) < u64::from(per_mille)
    }

    /// A uniformly chosen element of a non-empty slice.
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// An element chosen with probability proportional to its weight.
    pub(crate) fn weighted<T: Copy>(&mut self, items: &[(T, u32)]) -> T {
        let total: u64 = items.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut roll = self.below(total);
        for (item, weight) in items {
            let weight = u64::from(*weight);
            if roll < weight {
                return *item;
            }
            roll -= weight;
        }
        unreachable!("roll is below the sum of the weights")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_reference_splitmix64() {
        // First outputs of Vigna's splitmix64.c seeded with 1234567.
        let mut rng = SplitMix64::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(rng.next_u64(), 9_817_491_932_198_370_423);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = SplitMix64::new(9);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            let x = rng.below(7);
            assert!(x < 7);
            seen[x as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn weighted_never_picks_zero_weight() {
        let mut rng = SplitMix64::new(3);
        let items = [("never", 0), ("always", 5), ("never either", 0)];
        for _ in 0..1000 {
            assert_eq!(rng.weighted(&items), "always");
        }
    }
}
