//! The set of state fingerprints seen so far, split into shards by the fingerprint's
//! top bits so that each shard can be filled by one thread while other threads fill
//! the others, with no lock on the hot path.
//!
//! A shard is an open-addressing table of bare `u64` fingerprints (linear probing, at
//! most three quarters full): 8 bytes a slot, 11 to 21 bytes a state depending on
//! where the table stands between two doublings. Shards double one at a time, so the
//! moment both the old and the new table are alive costs 1/[`SHARDS`] of the set, not
//! the whole set again.

/// log2 of the number of shards.
const SHARD_BITS: u32 = 6;
/// Number of shards: enough that threads rarely wait on the last one, few enough that
/// a small search does not pay for many empty tables.
pub(crate) const SHARDS: usize = 1 << SHARD_BITS;
/// Slots of a shard before its first doubling.
const INITIAL_SLOTS: usize = 1 << 10;
/// The empty slot. The fingerprint 0 itself is recorded apart, in `has_zero`.
const EMPTY: u64 = 0;

/// The shard a fingerprint belongs to. Fingerprints are well mixed, so the top bits
/// spread states evenly; a shard indexes its slots with the low bits, which are
/// independent of these.
pub(crate) fn shard_of(fp: u64) -> usize {
    // The shift leaves SHARD_BITS bits: the cast cannot truncate.
    (fp >> (u64::BITS - SHARD_BITS)) as usize
}

/// One shard: fingerprints whose top bits are its index.
#[derive(Debug)]
pub(crate) struct Shard {
    slots: Vec<u64>,
    len: usize,
    has_zero: bool,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { slots: vec![EMPTY; INITIAL_SLOTS], len: 0, has_zero: false }
    }
}

impl Shard {
    /// Whether `fp` is in the shard.
    pub(crate) fn contains(&self, fp: u64) -> bool {
        if fp == EMPTY {
            return self.has_zero;
        }
        let mask = self.slots.len() - 1;
        // The low bits index the table; the mask keeps the cast in range.
        let mut i = (fp as usize) & mask;
        loop {
            match self.slots[i] {
                EMPTY => return false,
                s if s == fp => return true,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Adds `fp`; `true` when it was not there before.
    pub(crate) fn insert(&mut self, fp: u64) -> bool {
        if fp == EMPTY {
            let new = !self.has_zero;
            self.has_zero = true;
            return new;
        }
        // Grow before the table is more than three quarters full: linear probing's
        // probe lengths climb steeply beyond that.
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        if place(&mut self.slots, fp) {
            self.len += 1;
            true
        } else {
            false
        }
    }

    fn grow(&mut self) {
        let mut slots = vec![EMPTY; self.slots.len() * 2];
        for &fp in self.slots.iter().filter(|&&fp| fp != EMPTY) {
            place(&mut slots, fp);
        }
        self.slots = slots;
    }

    /// Fingerprints held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len + usize::from(self.has_zero)
    }
}

/// Puts a non-zero `fp` into `slots`; `false` if it was there already.
fn place(slots: &mut [u64], fp: u64) -> bool {
    let mask = slots.len() - 1;
    let mut i = (fp as usize) & mask;
    loop {
        match slots[i] {
            EMPTY => {
                slots[i] = fp;
                return true;
            }
            s if s == fp => return false,
            _ => i = (i + 1) & mask,
        }
    }
}

/// Every fingerprint seen, as [`SHARDS`] shards.
#[derive(Debug)]
pub(crate) struct SeenSet {
    pub(crate) shards: Vec<Shard>,
}

impl SeenSet {
    /// An empty set.
    pub(crate) fn new() -> Self {
        SeenSet { shards: (0..SHARDS).map(|_| Shard::default()).collect() }
    }

    /// Whether `fp` has been seen.
    pub(crate) fn contains(&self, fp: u64) -> bool {
        self.shards[shard_of(fp)].contains(fp)
    }

    /// Adds `fp`; `true` when it is new.
    pub(crate) fn insert(&mut self, fp: u64) -> bool {
        self.shards[shard_of(fp)].insert(fp)
    }

    /// Fingerprints held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(Shard::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    #[test]
    fn the_set_agrees_with_a_hash_set_through_many_doublings() {
        let state = foldhash::quality::FixedState::with_seed(7);
        let mut set = SeenSet::new();
        let mut reference = HashSet::new();
        // Every value twice, zero among them, and a few hundred sharing their low bits
        // (one slot in every table) and their shard.
        let values: Vec<u64> = (0..200_000u64)
            .map(|i| state.hash_one(i))
            .chain((1..500u64).map(|k| (k << 40) | 5))
            .chain(std::iter::once(0))
            .collect();
        for &v in values.iter().chain(values.iter()) {
            assert_eq!(set.insert(v), reference.insert(v), "{v}");
        }
        assert_eq!(set.len(), reference.len());
        for probe in 0..1000u64 {
            let v = state.hash_one(probe + 1_000_000);
            assert_eq!(set.contains(v), reference.contains(&v));
        }
        assert!(values.iter().all(|&v| set.contains(v)));
    }

    #[test]
    fn shards_split_fingerprints_by_their_top_bits() {
        assert_eq!(shard_of(0), 0);
        assert_eq!(shard_of(u64::MAX), SHARDS - 1);
        assert_eq!(shard_of(1u64 << 63), SHARDS / 2);
    }
}
