//! Host blocks that no request may name, added while requests run: the key slots' blocks
//! (`kernel::slots`) and the vCPUs' blocks (one per vCPU, made when its CPU comes online).
//! Every request entry is checked against them, on every CPU, so the check takes no lock:
//! the sorted starts are read under a sequence count, and a reader that overlapped an
//! insertion reads again.
use core::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};

/// Up to `N` disjoint blocks, each guarding `span` bytes from its start.
#[derive(Debug)]
pub struct BlockSet<const N: usize> {
    /// The first `count` are the blocks' starts, ascending.
    starts: [AtomicU64; N],
    count: AtomicUsize,
    /// Odd while an insertion moves the starts.
    sequence: AtomicU64,
    span: u64,
}

impl<const N: usize> BlockSet<N> {
    /// An empty set of blocks guarding `span` bytes each.
    pub const fn new(span: u64) -> Self {
        Self { starts: [const { AtomicU64::new(0) }; N], count: AtomicUsize::new(0), sequence: AtomicU64::new(0), span }
    }

    /// Blocks in the set.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds the block at `start` (disjoint from the others); false when the set is full.
    /// Writers (`insert`, `clear`) must be serialized by the caller; readers need nothing.
    pub fn insert(&self, start: u64) -> bool {
        let count = self.count.load(Ordering::Relaxed);
        if count == N {
            return false;
        }
        self.sequence.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::Release);
        let at = (0..count).find(|&i| self.starts[i].load(Ordering::Relaxed) > start).unwrap_or(count);
        for i in (at..count).rev() {
            self.starts[i + 1].store(self.starts[i].load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.starts[at].store(start, Ordering::Relaxed);
        self.count.store(count + 1, Ordering::Release);
        self.sequence.fetch_add(1, Ordering::Release);
        true
    }

    /// Whether `[phys, phys + len)` touches a block's guarded bytes.
    pub fn overlaps(&self, phys: u64, len: u64) -> bool {
        let end = phys.saturating_add(len);
        loop {
            let before = self.sequence.load(Ordering::Acquire);
            if before % 2 == 1 {
                core::hint::spin_loop();
                continue;
            }
            let starts = &self.starts[..self.count.load(Ordering::Acquire).min(N)];
            // The last block starting before `end` is the only candidate (blocks are disjoint).
            let after = starts.partition_point(|start| start.load(Ordering::Relaxed) < end);
            let hit = after > 0 && starts[after - 1].load(Ordering::Relaxed).saturating_add(self.span) > phys;
            fence(Ordering::Acquire);
            if self.sequence.load(Ordering::Relaxed) == before {
                return hit;
            }
        }
    }

    /// Forgets every block (module exit: no reader is left).
    pub fn clear(&self) {
        self.count.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::SliceRandom;
    use rand::{rngs::SmallRng, Rng, SeedableRng};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    const SPAN: u64 = 7 * 4096;
    const STRIDE: u64 = 8 * 4096;

    #[test]
    fn guarded_bytes_and_gaps() {
        let set = BlockSet::<4>::new(SPAN);
        assert!(!set.overlaps(0, u64::MAX));
        assert!(set.insert(0x30_000));
        assert!(set.insert(0x10_000));
        assert_eq!(set.len(), 2);
        // The first and last guarded byte of each block, and the bytes just outside.
        assert!(set.overlaps(0x10_000, 1));
        assert!(set.overlaps(0x10_000 + SPAN - 1, 1));
        assert!(!set.overlaps(0x10_000 + SPAN, 0x1000));
        assert!(!set.overlaps(0xF_FFF, 1));
        assert!(set.overlaps(0xF_FFF, 2));
        // A range across the gap reaching into the second block.
        assert!(!set.overlaps(0x10_000 + SPAN, 0x30_000 - 0x10_000 - SPAN));
        assert!(set.overlaps(0x10_000 + SPAN, 0x30_000 - 0x10_000 - SPAN + 1));
        // Empty ranges touch nothing; a range to the end of the address space does.
        assert!(!set.overlaps(0x10_000, 0));
        assert!(set.overlaps(0, u64::MAX));
        assert!(set.insert(0x20_000) && set.insert(0x40_000));
        assert!(!set.insert(0x50_000), "full at N blocks");
        assert!(set.overlaps(0x20_000 + 0x100, 1));
        set.clear();
        assert!(set.is_empty() && !set.overlaps(0x10_000, 1));
    }

    /// Readers on other threads never miss a block inserted before they looked, nor see one
    /// in a gap, while insertions in random order move the starts around under them.
    #[test]
    fn readers_race_insertions() {
        const BLOCKS: usize = 512;
        let set = Arc::new(BlockSet::<BLOCKS>::new(SPAN));
        let mut order: Vec<u64> = (0..BLOCKS as u64).collect();
        order.shuffle(&mut SmallRng::seed_from_u64(7));
        let order = Arc::new(order);
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|seed| {
                let (set, order, done) = (set.clone(), order.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut rng = SmallRng::seed_from_u64(seed);
                    let mut checks = 0u64;
                    while !done.load(Ordering::Acquire) || checks < 100_000 {
                        let inserted = set.len();
                        if inserted > 0 {
                            let block = order[rng.gen_range(0..inserted)];
                            assert!(set.overlaps(block * STRIDE + 0x800, 8), "block {block} missed");
                        }
                        // The unguarded last page of any block is never hit.
                        let gap = rng.gen_range(0..BLOCKS as u64) * STRIDE + SPAN;
                        assert!(!set.overlaps(gap, 4096), "gap at {gap:#x} hit");
                        checks += 1;
                    }
                })
            })
            .collect();
        for &block in order.iter() {
            assert!(set.insert(block * STRIDE));
        }
        done.store(true, Ordering::Release);
        for reader in readers {
            reader.join().expect("a reader failed");
        }
        assert_eq!(set.len(), BLOCKS);
    }
}
