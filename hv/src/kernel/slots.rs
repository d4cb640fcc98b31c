//! Key slots backed on demand: the HV's side of the vault's key-slot range.
//!
//! The vault's page tables map all [`KEY_SLOT_COUNT`] slots (one 1 GiB page); the shared
//! nested tables back them a block of [`KEY_SLOTS_PER_BLOCK`] at a time (64 contiguous host
//! pages), when a setkey finds every backed slot taken, and the nested page table of each
//! 2 MiB of slots comes with its first block. So keyed transforms are bounded by
//! memory (and the range's 2^17 slots), not by a constant; blocks stay until the module is
//! unloaded. Under SEV only the launched blocks exist: the HV cannot add initialized private
//! memory to a running SEV guest.
//!
//! Concurrency: blocks are added under the glue's nested-table lock and published with
//! release/acquire on `COUNT`; the set that requests are checked against (no request may
//! name a slot page) is a [`BlockSet`], read lock-free.
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use sevault_abi::memory_map::{KEY_SLOT_BLOCK_SIZE, PAGE_SIZE};
use sevault_abi::{KEY_SLOTS_PER_BLOCK, KEY_SLOT_COUNT};

use super::ffi;
use crate::arena::PageRef;
use crate::block_set::BlockSet;
use crate::paging::{
    attach_slot_table, map_slot_block, PageTable, Pages, BLOCKS_PER_SLOT_TABLE, SLOT_BLOCKS, SLOT_TABLES,
};

/// Allocation order of a block (64 pages).
pub const BLOCK_ORDER: u32 = 6;
const _: () = assert!((1u64 << BLOCK_ORDER) * PAGE_SIZE == KEY_SLOT_BLOCK_SIZE);
const WORDS_PER_BLOCK: usize = KEY_SLOTS_PER_BLOCK as usize / 64;

/// Slots in use, one bit each.
static IN_USE: [AtomicU64; KEY_SLOT_COUNT as usize / 64] = [const { AtomicU64::new(0) }; KEY_SLOT_COUNT as usize / 64];
/// Block `i` backs slots `i × KEY_SLOTS_PER_BLOCK ..`: its host addresses (valid for `i < COUNT`).
static VIRT: [AtomicUsize; SLOT_BLOCKS] = [const { AtomicUsize::new(0) }; SLOT_BLOCKS];
static PHYS: [AtomicU64; SLOT_BLOCKS] = [const { AtomicU64::new(0) }; SLOT_BLOCKS];
/// Blocks backed.
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// The blocks, as requests are checked against them.
static GUARDED: BlockSet<SLOT_BLOCKS> = BlockSet::new(KEY_SLOT_BLOCK_SIZE);
/// Nested page table `t` of the slot range (blocks `t × BLOCKS_PER_SLOT_TABLE ..`): its
/// kernel address, valid for `t < tables()`; made with the first block it maps.
static TABLE_VIRT: [AtomicUsize; SLOT_TABLES] = [const { AtomicUsize::new(0) }; SLOT_TABLES];
/// Those tables, as requests are checked against them.
static GUARDED_TABLES: BlockSet<SLOT_TABLES> = BlockSet::new(PAGE_SIZE);

/// Why a block could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrowError {
    /// No memory.
    NoMemory,
    /// All 2^17 slots are backed.
    RangeFull,
}

/// Blocks backed so far.
pub fn blocks() -> usize {
    COUNT.load(Ordering::Acquire)
}

/// Nested page tables of the slot range made so far (blocks are backed in order).
pub fn tables() -> usize {
    blocks().div_ceil(BLOCKS_PER_SLOT_TABLE)
}

/// Backs one more block: allocates it (zeroed: empty, unlocked slots) and, when it is the
/// first of its 2 MiB, the nested page table for them; maps it into the shared nested
/// tables `npt_low`; publishes it.
pub fn grow(npt_low: &mut impl Pages) -> Result<usize, GrowError> {
    let mut phys = 0;
    // SAFETY: FFI; returns null or a zeroed block of 2^BLOCK_ORDER pages (GFP_ATOMIC where
    // the caller cannot sleep).
    let virt = unsafe { ffi::sevault_pages_alloc_any(BLOCK_ORDER, &mut phys) };
    if virt.is_null() {
        return Err(GrowError::NoMemory);
    }
    // A page for the table, in case this block is the first of a new 2 MiB (known only
    // under the lock; given back if not).
    let mut table_phys = 0;
    // SAFETY: FFI; as above, one page.
    let table_virt = unsafe { ffi::sevault_pages_alloc_any(0, &mut table_phys) };
    if table_virt.is_null() {
        // SAFETY: allocated above with this order, never published.
        unsafe { ffi::sevault_pages_free(virt, BLOCK_ORDER) };
        return Err(GrowError::NoMemory);
    }
    // SAFETY: FFI.
    let flags = unsafe { ffi::sevault_npt_lock() };
    let index = COUNT.load(Ordering::Relaxed);
    let table = index / BLOCKS_PER_SLOT_TABLE;
    let new_table = index % BLOCKS_PER_SLOT_TABLE == 0;
    // Guarded before the vault can reach them (the sets hold every block and table the
    // range has room for).
    let mut added = index < SLOT_BLOCKS && GUARDED.insert(phys);
    if added && new_table {
        added = GUARDED_TABLES.insert(table_phys) && attach_slot_table(npt_low, table, table_phys);
        TABLE_VIRT[table % SLOT_TABLES].store(table_virt as usize, Ordering::Relaxed);
    }
    if added {
        let table_virt = TABLE_VIRT[table % SLOT_TABLES].load(Ordering::Relaxed);
        // SAFETY: the slot range's table `table`: a page of ours, made above or with an
        // earlier block of its 2 MiB; written only under this lock (the vault's walks only
        // read it).
        added = map_slot_block(unsafe { &mut *(table_virt as *mut PageTable) }, index, phys);
    }
    if added {
        VIRT[index].store(virt as usize, Ordering::Relaxed);
        PHYS[index].store(phys, Ordering::Relaxed);
        COUNT.store(index + 1, Ordering::Release);
    }
    // SAFETY: pairs with the lock above.
    unsafe { ffi::sevault_npt_unlock(flags) };
    if !(added && new_table) {
        // SAFETY: allocated above as one page, not used as a table.
        unsafe { ffi::sevault_pages_free(table_virt, 0) };
    }
    if added {
        Ok(index)
    } else {
        // SAFETY: allocated above with this order, never published.
        unsafe { ffi::sevault_pages_free(virt, BLOCK_ORDER) };
        Err(GrowError::RangeFull)
    }
}

/// Whether `phys .. phys + len` touches a backed slot block or one of their nested tables.
pub fn overlaps(phys: u64, len: u64) -> bool {
    GUARDED.overlaps(phys, len) || GUARDED_TABLES.overlaps(phys, len)
}

/// The host page behind byte `offset` of the slot range, if its block is backed.
pub fn backing(offset: u64) -> Option<PageRef> {
    let block = (offset / KEY_SLOT_BLOCK_SIZE) as usize;
    if block >= blocks() {
        return None;
    }
    let within = offset % KEY_SLOT_BLOCK_SIZE / PAGE_SIZE * PAGE_SIZE;
    Some(PageRef {
        virt: VIRT[block].load(Ordering::Relaxed) + within as usize,
        phys: PHYS[block].load(Ordering::Relaxed) + within,
    })
}

/// A free slot among the backed ones, marked in use.
pub fn take_free() -> Option<u32> {
    let words = blocks() * WORDS_PER_BLOCK;
    for (w, word) in IN_USE[..words].iter().enumerate() {
        let mut current = word.load(Ordering::Relaxed);
        while current != u64::MAX {
            let bit = (!current).trailing_zeros();
            match word.compare_exchange(current, current | (1 << bit), Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(w as u32 * 64 + bit),
                Err(now) => current = now,
            }
        }
    }
    None
}

/// Gives `slot` back.
pub fn release(slot: u32) {
    if let Some(word) = IN_USE.get((slot / 64) as usize) {
        word.fetch_and(!(1 << (slot % 64)), Ordering::AcqRel);
    }
}

/// Zeroes every backed slot (a rebuild, with every vCPU out of the vault).
pub fn wipe_all() {
    for block in 0..blocks() {
        // SAFETY: a published block: mapped, 2^BLOCK_ORDER pages, ours; no vCPU runs.
        unsafe {
            core::ptr::write_bytes(VIRT[block].load(Ordering::Relaxed) as *mut u8, 0, KEY_SLOT_BLOCK_SIZE as usize)
        };
    }
}

/// Frees every block and table and forgets the slots (module exit: nothing runs).
pub fn free_all() {
    for table in &TABLE_VIRT[..tables().min(SLOT_TABLES)] {
        // SAFETY: a table made by `grow` (one page); nothing uses it any more.
        unsafe { ffi::sevault_pages_free(table.load(Ordering::Relaxed) as *mut _, 0) };
    }
    for block in 0..blocks() {
        // SAFETY: a published block allocated with BLOCK_ORDER; nothing uses it any more.
        unsafe { ffi::sevault_pages_free(VIRT[block].load(Ordering::Relaxed) as *mut _, BLOCK_ORDER) };
    }
    COUNT.store(0, Ordering::Release);
    GUARDED.clear();
    GUARDED_TABLES.clear();
    IN_USE.iter().for_each(|w| w.store(0, Ordering::Relaxed));
}
