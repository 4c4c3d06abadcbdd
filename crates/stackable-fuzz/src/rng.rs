//! A small deterministic PRNG (SplitMix64): a run is reproducible from its seed.

/// SplitMix64 (<https://prng.di.unimi.it/splitmix64.c>).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        // The modulo bias is irrelevant for fuzzing.
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability 1/n.
    pub(crate) fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// A length biased towards small values (most interesting edits are short).
    pub(crate) fn small_len(&mut self, max: usize) -> usize {
        let cap = match self.below(4) {
            0 => 1,
            1 => 8,
            2 => 64,
            _ => max.max(1),
        };
        1 + self.below(cap.min(max.max(1)))
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }
}
