//! Random test cases: key sizes, keys, IVs and data lengths. Every case comes from its own
//! generator seeded by `(seed, case index)`, so a case is the same whichever thread runs it.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// AES key sizes in bytes.
pub const KEY_LENS: [usize; 3] = [16, 24, 32];
/// The AES block size.
pub const BLOCK: usize = 16;
/// Lengths up to this are "small" (a page).
pub const SMALL: usize = 4096;

/// What lengths and keys a mode takes, told by the algorithm's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// ECB, CBC: whole blocks, one AES key.
    Blocks,
    /// CTR: any length, one AES key.
    Stream,
    /// XTS: at least a block, any length beyond (ciphertext stealing); two AES keys.
    Xts,
}

impl Shape {
    /// The shape of the algorithm or driver `name` (`xts` or `ctr` in it, else whole blocks).
    pub fn of(name: &str) -> Self {
        if name.contains("xts") {
            Self::Xts
        } else if name.contains("ctr") {
            Self::Stream
        } else {
            Self::Blocks
        }
    }
}

/// One differential case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// Position in the run (with the seed, enough to make it again).
    pub index: u64,
    /// The key, 16, 24 or 32 bytes (XTS: two of them, different).
    pub key: Vec<u8>,
    /// The IV, for modes that have one.
    pub iv: Option<[u8; BLOCK]>,
    /// The plaintext: whole blocks (ECB, CBC), any length (CTR), at least a block (XTS).
    pub data: Vec<u8>,
}

/// The generator of case `index` of the run seeded `seed`.
pub fn case_rng(seed: u64, index: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Case `index` of the run seeded `seed`, with data up to `max_len` bytes (a multiple of 16)
/// in the lengths `shape` allows: for CTR and XTS, half the cases end in a partial block.
pub fn make_case(seed: u64, index: u64, max_len: usize, with_iv: bool, shape: Shape) -> Case {
    let mut rng = case_rng(seed, index);
    let key_len = KEY_LENS[rng.gen_range(0..KEY_LENS.len())];
    let key = match shape {
        Shape::Xts => {
            // Two different halves: crypto/xts.c refuses equal ones in FIPS mode.
            let mut key = random_bytes(&mut rng, 2 * key_len);
            if key[..key_len] == key[key_len..] {
                key[0] ^= 1;
            }
            key
        }
        Shape::Blocks | Shape::Stream => random_bytes(&mut rng, key_len),
    };
    let iv = with_iv.then(|| rng.gen::<[u8; BLOCK]>());
    let mut len = pick_len(&mut rng, max_len);
    if shape != Shape::Blocks && rng.gen_bool(0.5) {
        let partial = rng.gen_range(1..BLOCK);
        len = if shape == Shape::Xts && len == BLOCK { len + partial } else { len - BLOCK + partial };
        len = len.min(max_len);
    }
    Case { index, key, iv, data: random_bytes(&mut rng, len) }
}

/// `len` random bytes.
pub fn random_bytes(rng: &mut impl Rng, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rng.fill(bytes.as_mut_slice());
    bytes
}

/// A data length: a multiple of 16 from 16 to `max_len` (itself a multiple of 16, at least
/// 16), skewed towards small ones: 10% one block, 10% exactly `max_len`, 50% up to 4 KiB,
/// 10% a block either side of (or on) a page boundary, 20% anything.
pub fn pick_len(rng: &mut impl Rng, max_len: usize) -> usize {
    let max_blocks = (max_len / BLOCK).max(1);
    let small_blocks = (SMALL / BLOCK).min(max_blocks);
    let page_blocks = SMALL / BLOCK;
    let blocks = match rng.gen_range(0..100) {
        0..10 => 1,
        10..20 => max_blocks,
        20..70 => rng.gen_range(1..=small_blocks),
        70..80 => {
            let pages = (max_blocks / page_blocks).max(1);
            let edge = rng.gen_range(1..=pages) * page_blocks;
            (edge + rng.gen_range(0..3)).saturating_sub(1).clamp(1, max_blocks)
        }
        _ => rng.gen_range(1..=max_blocks),
    };
    blocks * BLOCK
}

/// A seed from the clock and the process id, for runs given no `--seed` (not from
/// `getrandom`, which can block early in the VM's boot).
pub fn default_seed() -> u64 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_block_multiples_within_bounds() {
        let mut rng = SmallRng::seed_from_u64(1);
        for max_len in [16, 32, 4080, 4096, 4112, 8192, 65_536, 1 << 20] {
            for _ in 0..5000 {
                let len = pick_len(&mut rng, max_len);
                assert!(len >= 16 && len <= max_len && len.is_multiple_of(16), "max {max_len}: {len}");
            }
        }
    }

    #[test]
    fn lengths_are_skewed_small_and_hit_the_edges() {
        let mut rng = SmallRng::seed_from_u64(2);
        let lens: Vec<usize> = (0..20_000).map(|_| pick_len(&mut rng, 65_536)).collect();
        let share = |f: &dyn Fn(usize) -> bool| lens.iter().filter(|&&l| f(l)).count() as f64 / lens.len() as f64;
        assert!(share(&|l| l <= 4096) >= 0.6, "{}", share(&|l| l <= 4096));
        assert!(share(&|l| l == 16) >= 0.09);
        assert!(share(&|l| l == 65_536) >= 0.09);
        for edge in [4080, 4096, 4112, 8192, 61_440] {
            assert!(lens.contains(&edge), "{edge} never chosen");
        }
        assert!(share(&|l| l > 4096 && l < 65_536) >= 0.1);
    }

    #[test]
    fn cases_are_reproducible_and_varied() {
        let a = make_case(7, 3, 65_536, true, Shape::Blocks);
        assert_eq!(a, make_case(7, 3, 65_536, true, Shape::Blocks));
        assert_ne!(a, make_case(7, 4, 65_536, true, Shape::Blocks));
        assert_ne!(a, make_case(8, 3, 65_536, true, Shape::Blocks));
        assert!(make_case(7, 3, 65_536, false, Shape::Blocks).iv.is_none());
        let mut key_lens = std::collections::BTreeSet::new();
        for index in 0..200 {
            let case = make_case(9, index, 1024, true, Shape::Blocks);
            assert!(KEY_LENS.contains(&case.key.len()));
            assert!(case.data.len().is_multiple_of(16) && case.data.len() <= 1024);
            assert!(case.iv.is_some());
            key_lens.insert(case.key.len());
        }
        assert_eq!(key_lens.len(), 3);
    }

    #[test]
    fn ctr_and_xts_cases_end_in_partial_blocks_within_bounds() {
        for (shape, min) in [(Shape::Stream, 1), (Shape::Xts, BLOCK)] {
            let mut partial = 0;
            for index in 0..2000 {
                let case = make_case(11, index, 4096, true, shape);
                assert!(case.data.len() >= min && case.data.len() <= 4096, "{shape:?}: {}", case.data.len());
                partial += usize::from(!case.data.len().is_multiple_of(BLOCK));
                if shape == Shape::Xts {
                    let half = case.key.len() / 2;
                    assert!(KEY_LENS.contains(&half) && case.key[..half] != case.key[half..]);
                }
            }
            assert!((800..1200).contains(&partial), "{shape:?}: {partial} of 2000 partial");
        }
        assert_eq!(Shape::of("xts(ecb(aes-generic))"), Shape::Xts);
        assert_eq!(Shape::of("ctr-aes-sevault"), Shape::Stream);
        assert_eq!(Shape::of("cbc(aes-generic)"), Shape::Blocks);
    }
}
