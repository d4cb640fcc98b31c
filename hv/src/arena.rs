//! All memory the HV gives the vault (and its VMCBs, page tables, permission maps) comes
//! from a few physically contiguous blocks, so that "does this host range touch any of it?"
//! — asked for every request entry, since no request may hand the vault its own pages — is
//! a binary search over a short sorted list.

/// A physically contiguous block: `[phys, phys + pages × 4096)`, mapped at `virt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// Kernel virtual address.
    pub virt: usize,
    /// Host-physical address.
    pub phys: u64,
    /// Size in pages.
    pub pages: usize,
}

/// One page from the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRef {
    /// Kernel virtual address.
    pub virt: usize,
    /// Host-physical address.
    pub phys: u64,
}

const PAGE: u64 = 4096;

impl PageRef {
    /// Page `i` of the contiguous run that starts here.
    pub const fn page(self, i: usize) -> Self {
        Self { virt: self.virt + i * PAGE as usize, phys: self.phys + i as u64 * PAGE }
    }
}

/// Blocks kept sorted by physical address, with a bump pointer into the newest.
#[derive(Debug)]
pub struct Arena<const N: usize> {
    blocks: [Block; N],
    count: usize,
    /// Index (in allocation order) of the block being carved, and pages used in it.
    current: Option<(usize, usize)>,
    order: [usize; N],
}

impl<const N: usize> Default for Arena<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Arena<N> {
    /// An empty arena.
    pub const fn new() -> Self {
        Self { blocks: [Block { virt: 0, phys: 0, pages: 0 }; N], count: 0, current: None, order: [0; N] }
    }

    /// Forgets every block (after they were freed).
    pub fn reset(&mut self) {
        self.count = 0;
        self.current = None;
    }

    /// The blocks, sorted by physical address.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks[..self.count]
    }

    /// Adds a block; false if the arena's table is full.
    pub fn add_block(&mut self, block: Block) -> bool {
        if self.count == N {
            return false;
        }
        let at = self.blocks[..self.count].partition_point(|b| b.phys < block.phys);
        self.blocks.copy_within(at..self.count, at + 1);
        self.blocks[at] = block;
        // Keep the allocation-order index of every block pointing at its sorted slot.
        for i in self.order[..self.count].iter_mut() {
            if *i >= at {
                *i += 1;
            }
        }
        self.order[self.count] = at;
        self.count += 1;
        self.current = Some((at, 0));
        true
    }

    /// `pages` contiguous pages from the newest block, if it has room.
    pub fn take(&mut self, pages: usize) -> Option<PageRef> {
        let (index, used) = self.current?;
        let block = self.blocks[index];
        if used + pages > block.pages {
            return None;
        }
        self.current = Some((index, used + pages));
        Some(PageRef { virt: block.virt, phys: block.phys }.page(used))
    }

    /// True when `[phys, phys + len)` overlaps any block.
    pub fn overlaps(&self, phys: u64, len: u64) -> bool {
        let end = phys.saturating_add(len);
        let blocks = self.blocks();
        // The last block starting before `end` is the only candidate (blocks are disjoint).
        let after = blocks.partition_point(|b| b.phys < end);
        after > 0 && {
            let b = blocks[after - 1];
            b.phys + b.pages as u64 * PAGE > phys
        }
    }

    /// Blocks in allocation order (for freeing).
    pub fn allocation_order(&self) -> impl Iterator<Item = Block> + '_ {
        self.order[..self.count].iter().map(|&i| self.blocks[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_and_overlap() {
        let mut arena = Arena::<4>::new();
        assert!(arena.take(1).is_none());
        assert!(arena.add_block(Block { virt: 0x9000_0000, phys: 0x40_0000, pages: 4 }));
        assert_eq!(arena.take(2), Some(PageRef { virt: 0x9000_0000, phys: 0x40_0000 }));
        assert_eq!(arena.take(2), Some(PageRef { virt: 0x9000_2000, phys: 0x40_2000 }));
        assert_eq!(arena.take(1), None);
        assert!(arena.add_block(Block { virt: 0x8000_0000, phys: 0x10_0000, pages: 2 }));
        assert_eq!(arena.take(1), Some(PageRef { virt: 0x8000_0000, phys: 0x10_0000 }));
        assert_eq!(arena.blocks()[0].phys, 0x10_0000, "sorted");
        assert!(arena.overlaps(0x10_0000, 1));
        assert!(arena.overlaps(0x0F_FFFF, 2));
        assert!(!arena.overlaps(0x0F_F000, 0x1000));
        assert!(!arena.overlaps(0x10_2000, 0x1000), "between blocks");
        assert!(arena.overlaps(0x3F_F000, 0x1001));
        assert!(arena.overlaps(0x40_3FFF, 1));
        assert!(!arena.overlaps(0x40_4000, 0x1000));
        assert!(!arena.overlaps(u64::MAX - 5, 10));
        let order: Vec<u64> = arena.allocation_order().map(|b| b.phys).collect();
        assert_eq!(order, [0x40_0000, 0x10_0000]);
        assert!(arena.add_block(Block { virt: 0, phys: 0x20_0000, pages: 1 }));
        let order: Vec<u64> = arena.allocation_order().map(|b| b.phys).collect();
        assert_eq!(order, [0x40_0000, 0x10_0000, 0x20_0000]);
        assert!(arena.add_block(Block { virt: 0, phys: 0x30_0000, pages: 1 }));
        assert!(!arena.add_block(Block { virt: 0, phys: 0x50_0000, pages: 1 }), "table full");
    }
}
