//! The simulation's only source of randomness: small seeded generators, one stream
//! per actor, all derived from the root seed.
//!
//! One stream per actor (rather than one shared generator) keeps an actor's choices
//! stable when another actor does more or less work, which is what lets the shrinker
//! cut operations from a run without changing everything that came before.

/// A SplitMix64 generator: tiny, fast and good enough for choosing schedules.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// The stream named `stream` (an actor's kind and index) of the run seeded `seed`.
    pub fn derive(seed: u64, stream: &str) -> Self {
        // FNV-1a over the name, then mixed with the seed: streams of one seed are
        // unrelated, and the same name always gives the same stream.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in stream.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let mut rng = SimRng(seed ^ h.rotate_left(17));
        rng.next_u64();
        rng
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A whole number of milliseconds in `0..=max`.
    pub fn millis_up_to(&mut self, max: std::time::Duration) -> std::time::Duration {
        let max = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        std::time::Duration::from_millis(self.below(max.saturating_add(1)))
    }

    /// A whole number of milliseconds between `lo` and `hi` inclusive.
    pub fn millis_between(&mut self, lo: std::time::Duration, hi: std::time::Duration) -> std::time::Duration {
        lo + self.millis_up_to(hi.saturating_sub(lo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| SimRng::derive(7, "client 1").next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]), "same seed and stream must repeat");
        let mut one = SimRng::derive(7, "client 1");
        let mut two = SimRng::derive(7, "client 2");
        let mut other_seed = SimRng::derive(8, "client 1");
        let first = one.next_u64();
        assert_ne!(first, two.next_u64());
        assert_ne!(first, other_seed.next_u64());
    }

    #[test]
    fn ranges_hold() {
        let mut rng = SimRng::derive(1, "x");
        for _ in 0..10_000 {
            assert!(rng.below(5) < 5);
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
            let d = rng.millis_between(std::time::Duration::from_secs(1), std::time::Duration::from_secs(2));
            assert!(d >= std::time::Duration::from_secs(1) && d <= std::time::Duration::from_secs(2));
        }
        assert!(!rng.chance(0.0));
    }
}
