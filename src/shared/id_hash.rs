//! A hasher for maps keyed by a `u64` that lakepool issues itself (client ids, cancel keys).
//! std's SipHash resists keys chosen to collide, which these keys cannot be: a client id
//! counts up, a cancel key's secret half is random, and a key a client sends (a cancel
//! request) only looks up. One multiply costs a few instructions where SipHash costs about 150,
//! and a login does four of these lookups.

use std::hash::{BuildHasherDefault, Hasher};

/// `HashMap<u64, V>` with [`IdHasher`].
pub(crate) type IdMap<V> = std::collections::HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Folded multiply of one `u64`: the product's halves XORed, so every input bit reaches both
/// the low bits (the bucket) and the high bits (hashbrown's tag).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let p = u128::from(self.0) * 0x9e37_79b9_7f4a_7c15;
        (p as u64) ^ ((p >> 64) as u64)
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    /// Not reached by `u64` keys; kept correct for any other key anyway.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    fn hash(n: u64) -> u64 {
        BuildHasherDefault::<IdHasher>::default().hash_one(n)
    }

    #[test]
    fn counted_and_random_halves_both_spread() {
        // Consecutive ids land in distinct buckets of a small table, and keys that differ
        // only in their high half (a cancel key's pid) do not all share a bucket.
        let low: std::collections::HashSet<u64> = (0..64).map(|n| hash(n) & 63).collect();
        assert!(low.len() > 32, "{} buckets of 64", low.len());
        let high: std::collections::HashSet<u64> = (0..64u64).map(|n| hash(n << 32) & 63).collect();
        assert!(high.len() > 32, "{} buckets of 64", high.len());
        assert_ne!(hash(1), hash(2));
    }

    #[test]
    fn a_map_works() {
        let mut m: IdMap<u32> = IdMap::default();
        for n in 0..1000u64 {
            m.insert(n * 7 + (n << 40), n as u32);
        }
        for n in 0..1000u64 {
            assert_eq!(m.get(&(n * 7 + (n << 40))), Some(&(n as u32)));
        }
        assert_eq!(m.get(&3), None);
    }
}
