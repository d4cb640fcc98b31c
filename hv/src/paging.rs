//! The vault's two sets of page tables, built by the HV:
//!
//! - **guest page tables** (guest-virtual → guest-physical, identity), at `PAGE_TABLES_BASE`
//!   in the vault's private memory, shared by all vCPUs: the private range with per-region
//!   permissions, the host window as 1 GiB pages (AMD APM Vol. 2 §5.3, long-mode paging);
//! - **nested page tables** (guest-physical → host-physical, AMD APM Vol. 2 §15.25): a shared
//!   subtree for the private range, and per vCPU a root plus a window subtree that maps only
//!   the host pages of the request in flight ([`NptWindow`]).
//!
//! The builders work on [`Pages`], so host tests run them on heap pages with made-up
//! physical addresses and walk the result.
use sevault_abi::memory_map::{
    VcpuIndex, COMM_BLOCKS_BASE, GHCBS_BASE, HOST_WINDOW_BASE, HOST_WINDOW_SIZE, IMAGE_BASE, KEY_SLOTS_BASE,
    KEY_SLOTS_SIZE, KEY_SLOT_BLOCK_SIZE, PAGE_SIZE, PAGE_TABLES_BASE, VAULT_END,
};
use sevault_abi::SgEntry;

/// One page of 512 entries.
#[derive(Clone, Debug)]
#[repr(C, align(4096))]
pub struct PageTable(pub [u64; 512]);

impl PageTable {
    /// An empty table.
    pub const fn zeroed() -> Self {
        Self([0; 512])
    }
}

/// Entry bits (AMD APM Vol. 2 §5.4, "Page-Translation-Table Entry Fields").
pub mod flags {
    /// Present.
    pub const P: u64 = 1 << 0;
    /// Writable.
    pub const RW: u64 = 1 << 1;
    /// User: nested page-table entries must have it (nested walks are user accesses).
    pub const US: u64 = 1 << 2;
    /// Accessed (set up front, so the walker never writes the tables).
    pub const A: u64 = 1 << 5;
    /// Dirty (likewise).
    pub const D: u64 = 1 << 6;
    /// Large page (2 MiB in a PD, 1 GiB in a PDPT).
    pub const PS: u64 = 1 << 7;
    /// No execute.
    pub const NX: u64 = 1 << 63;
    /// The address bits of an entry.
    pub const ADDR: u64 = 0x000F_FFFF_FFFF_F000;
}
use flags::{A, ADDR, D, NX, P, PS, RW, US};

/// How a vault page may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The image: read and execute.
    ReadExecute,
    /// Data: read and write, no execute.
    ReadWrite,
}

impl Access {
    fn leaf_bits(self) -> u64 {
        match self {
            Self::ReadExecute => P | A,
            Self::ReadWrite => P | RW | A | D | NX,
        }
    }
}

/// Pages of the guest page tables, at `PAGE_TABLES_BASE + 4096 × index`.
pub mod guest_pt {
    /// PML4.
    pub const PML4: usize = 0;
    /// PDPT of the private range (PML4 entry 0).
    pub const PDPT_LOW: usize = 1;
    /// PD of the first GiB.
    pub const PD_LOW: usize = 2;
    /// First of the page tables of the private range (one per 2 MiB).
    pub const PT_FIRST: usize = 3;
    /// How many: enough for `VAULT_END`.
    pub const PT_COUNT: usize = 12;
    /// PDPT of the host window (PML4 entry 1).
    pub const PDPT_WINDOW: usize = PT_FIRST + PT_COUNT;
    /// All of them.
    pub const COUNT: usize = PDPT_WINDOW + 1;
}

const TWO_MIB: u64 = 2 << 20;
const ONE_GIB: u64 = 1 << 30;

const _: () = {
    assert!(guest_pt::COUNT as u64 * PAGE_SIZE <= sevault_abi::memory_map::PAGE_TABLES_SIZE);
    assert!(VAULT_END <= guest_pt::PT_COUNT as u64 * TWO_MIB);
    // The window is exactly PML4 entry 1.
    assert!(HOST_WINDOW_BASE == 1 << 39 && HOST_WINDOW_SIZE == 1 << 39);
};

/// What the vault may do with guest-physical page `gpa` (page-aligned), given `vcpus` vCPUs;
/// `None` for pages it must not reach (guards, page tables, absent vCPUs, gaps).
pub fn private_access(gpa: u64, vcpus: u32) -> Option<Access> {
    let per_vcpu = |base: u64| gpa >= base && gpa < base + u64::from(vcpus) * PAGE_SIZE;
    if gpa == IMAGE_BASE {
        return Some(Access::ReadExecute);
    }
    if per_vcpu(COMM_BLOCKS_BASE) || per_vcpu(GHCBS_BASE) {
        return Some(Access::ReadWrite);
    }
    (0..vcpus)
        .filter_map(VcpuIndex::new)
        .any(|v| (v.stack_bottom()..v.stack_top()).contains(&gpa))
        .then_some(Access::ReadWrite)
}

/// True for the vault pages shared with the host (unencrypted under SEV).
pub fn is_shared(gpa: u64) -> bool {
    (COMM_BLOCKS_BASE..STACKS_BASE_SHARED_END).contains(&gpa)
}

/// Comm blocks and GHCBs are one contiguous shared range.
const STACKS_BASE_SHARED_END: u64 = GHCBS_BASE + sevault_abi::MAX_VCPUS as u64 * PAGE_SIZE;

/// Writes the guest page tables for `vcpus` vCPUs into `tables` (indexed as [`guest_pt`]).
///
/// `c_bit`: under SEV, the C-bit position (CPUID 0x8000_001F EBX[5:0]); it is set in every
/// entry that points at private memory — the tables themselves, the image, key slots and
/// stacks — and left clear for the shared pages (comm blocks, GHCBs) and the host window.
pub fn build_guest_page_tables(tables: &mut [PageTable; guest_pt::COUNT], vcpus: u32, c_bit: Option<u32>) {
    let encrypted = c_bit.map_or(0, |bit| 1u64 << bit);
    let gpa_of = |index: usize| (PAGE_TABLES_BASE + index as u64 * PAGE_SIZE) | encrypted;
    let table_bits = P | RW | A;
    for table in tables.iter_mut() {
        *table = PageTable::zeroed();
    }
    tables[guest_pt::PML4].0[0] = gpa_of(guest_pt::PDPT_LOW) | table_bits;
    tables[guest_pt::PML4].0[1] = gpa_of(guest_pt::PDPT_WINDOW) | table_bits;
    tables[guest_pt::PDPT_LOW].0[0] = gpa_of(guest_pt::PD_LOW) | table_bits;
    // The key slots: one 1 GiB page, private; only the blocks the HV backs are reachable.
    tables[guest_pt::PDPT_LOW].0[1] = KEY_SLOTS_BASE | encrypted | Access::ReadWrite.leaf_bits() | PS;
    for i in 0..guest_pt::PT_COUNT {
        tables[guest_pt::PD_LOW].0[i] = gpa_of(guest_pt::PT_FIRST + i) | table_bits;
        for (j, entry) in tables[guest_pt::PT_FIRST + i].0.iter_mut().enumerate() {
            let gpa = i as u64 * TWO_MIB + j as u64 * PAGE_SIZE;
            if let Some(access) = private_access(gpa, vcpus) {
                let c = if is_shared(gpa) { 0 } else { encrypted };
                *entry = gpa | c | access.leaf_bits();
            }
        }
    }
    for (j, entry) in tables[guest_pt::PDPT_WINDOW].0.iter_mut().enumerate() {
        *entry = (HOST_WINDOW_BASE + j as u64 * ONE_GIB) | P | RW | A | D | PS | NX;
    }
}

/// Pages the nested builders write: `table(i)` and the host-physical address of page `i`.
pub trait Pages {
    /// Page `index` as a table.
    fn table(&mut self, index: usize) -> &mut PageTable;
    /// Its host-physical address.
    fn phys(&self, index: usize) -> u64;
}

/// Pages of the shared nested subtree for the private range.
pub mod npt_low {
    /// PDPT (nested PML4 entry 0 of every vCPU points here).
    pub const PDPT: usize = 0;
    /// PD of the first GiB.
    pub const PD: usize = 1;
    /// First page table (one per 2 MiB of the private range).
    pub const PT_FIRST: usize = 2;
    /// PD of the key slots (the second GiB).
    pub const PD_SLOTS: usize = PT_FIRST + super::guest_pt::PT_COUNT;
    /// First page table of the key slots (one per 2 MiB of slots).
    pub const PT_SLOTS_FIRST: usize = PD_SLOTS + 1;
    /// How many: enough for every slot.
    pub const PT_SLOTS_COUNT: usize = (sevault_abi::memory_map::KEY_SLOTS_SIZE / (2 << 20)) as usize;
    /// All of them.
    pub const COUNT: usize = PT_SLOTS_FIRST + PT_SLOTS_COUNT;
}

/// Slot blocks the vault's address space has room for.
pub const SLOT_BLOCKS: usize = (KEY_SLOTS_SIZE / KEY_SLOT_BLOCK_SIZE) as usize;
/// Pages per slot block.
pub const SLOT_BLOCK_PAGES: usize = (KEY_SLOT_BLOCK_SIZE / PAGE_SIZE) as usize;

/// Backs slot block `block` (key slots `block × KEY_SLOTS_PER_BLOCK ..`) with the
/// physically contiguous host pages at `phys`, in the shared nested subtree: every vCPU can
/// reach them from its next VMRUN on. Returns false for a block beyond the slot range.
pub fn map_slot_block(pages: &mut impl Pages, block: usize, phys: u64) -> bool {
    if block >= SLOT_BLOCKS {
        return false;
    }
    for page in 0..SLOT_BLOCK_PAGES {
        let offset = block as u64 * KEY_SLOT_BLOCK_SIZE + page as u64 * PAGE_SIZE;
        let pt = npt_low::PT_SLOTS_FIRST + (offset / TWO_MIB) as usize;
        let index = ((offset % TWO_MIB) / PAGE_SIZE) as usize;
        pages.table(pt).0[index] = ((phys + page as u64 * PAGE_SIZE) & ADDR) | Access::ReadWrite.leaf_bits() | US;
    }
    true
}

/// Writes the shared nested subtree: every page the vault may reach (from
/// [`private_access`]) plus the guest page tables (the walker reads them), mapped to the
/// host page `backing(gpa)`.
pub fn build_npt_low(pages: &mut impl Pages, vcpus: u32, backing: impl Fn(u64) -> Option<u64>) {
    let table_bits = P | RW | US | A;
    for i in 0..npt_low::COUNT {
        *pages.table(i) = PageTable::zeroed();
    }
    let pd = pages.phys(npt_low::PD);
    pages.table(npt_low::PDPT).0[0] = pd | table_bits;
    // The key slots' tables are all there from the start; their entries come with the blocks
    // (`map_slot_block`).
    let pd_slots = pages.phys(npt_low::PD_SLOTS);
    pages.table(npt_low::PDPT).0[1] = pd_slots | table_bits;
    for i in 0..npt_low::PT_SLOTS_COUNT {
        let pt = pages.phys(npt_low::PT_SLOTS_FIRST + i);
        pages.table(npt_low::PD_SLOTS).0[i] = pt | table_bits;
    }
    for i in 0..guest_pt::PT_COUNT {
        let pt = pages.phys(npt_low::PT_FIRST + i);
        pages.table(npt_low::PD).0[i] = pt | table_bits;
        for j in 0..512 {
            let gpa = i as u64 * TWO_MIB + j as u64 * PAGE_SIZE;
            let is_page_table =
                (PAGE_TABLES_BASE..PAGE_TABLES_BASE + guest_pt::COUNT as u64 * PAGE_SIZE).contains(&gpa);
            let access = if is_page_table { Some(Access::ReadWrite) } else { private_access(gpa, vcpus) };
            if let (Some(access), Some(hpa)) = (access, backing(gpa)) {
                pages.table(npt_low::PT_FIRST + i).0[j] = (hpa & ADDR) | access.leaf_bits() | US;
            }
        }
    }
}

/// Pages of one vCPU's nested tables.
pub mod npt_vcpu {
    /// The root (N_CR3).
    pub const PML4: usize = 0;
    /// PDPT of the window (nested PML4 entry 1).
    pub const PDPT_WINDOW: usize = 1;
    /// First page of the pool for window PDs and PTs.
    pub const POOL_FIRST: usize = 2;
    /// Table pages one entry can need at most: an entry is one physically contiguous run per
    /// side (blocks that straddle runs are bounced, `crate::translate`) of at most
    /// `MAX_BYTES_PER_EXIT` bytes, which crosses at most one 2 MiB and one 1 GiB boundary —
    /// two PTs and two PDs per side, counted for each side separately.
    pub const WORST_ENTRY: usize = 2 * (2 + 2);
    /// Pool size: the worst entry twice over, so that every chunk makes progress (an empty
    /// pool always admits one entry) and a chunk of typical entries (one page per side, in
    /// regions others already use) holds several; the request translation ends a chunk when
    /// the pool is full. It was 64 pages (a bound from before blocks were bounced), 256 KiB
    /// per vCPU.
    pub const POOL_SIZE: usize = 2 * WORST_ENTRY;
    const _: () =
        assert!((sevault_abi::MAX_BYTES_PER_EXIT as u64) < super::TWO_MIB, "a run crosses one 2 MiB boundary at most");
    /// All of them.
    pub const COUNT: usize = POOL_FIRST + POOL_SIZE;
}

/// Why a host page cannot be mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Beyond the 512 GiB window.
    OutsideWindow,
    /// The pool of table pages is used up (end the chunk here).
    PoolFull,
}

/// One vCPU's window subtree: maps the host pages of the request in flight, nothing else.
/// A clone is a plan: [`NptWindow::reserve`] on it says whether more pages would fit.
#[derive(Clone, Debug)]
pub struct NptWindow {
    /// For each pool page in use: level (1 = PD, 2 = PT) and region (GiB or 2 MiB index).
    owners: [(u8, u64); npt_vcpu::POOL_SIZE],
    used: usize,
}

impl Default for NptWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl NptWindow {
    /// An empty window.
    pub const fn new() -> Self {
        Self { owners: [(0, 0); npt_vcpu::POOL_SIZE], used: 0 }
    }

    /// Writes the vCPU's root: entry 0 the shared private subtree (`low_pdpt`), entry 1 the
    /// (empty) window.
    pub fn build_root(&mut self, pages: &mut impl Pages, low_pdpt: u64) {
        for i in 0..npt_vcpu::COUNT {
            *pages.table(i) = PageTable::zeroed();
        }
        let window = pages.phys(npt_vcpu::PDPT_WINDOW);
        pages.table(npt_vcpu::PML4).0[0] = low_pdpt | P | RW | US | A;
        pages.table(npt_vcpu::PML4).0[1] = window | P | RW | US | A;
        self.used = 0;
    }

    fn pool_page(&mut self, level: u8, region: u64) -> Result<usize, MapError> {
        if let Some(i) = self.owners[..self.used].iter().position(|o| *o == (level, region)) {
            return Ok(npt_vcpu::POOL_FIRST + i);
        }
        if self.used == npt_vcpu::POOL_SIZE {
            return Err(MapError::PoolFull);
        }
        self.owners[self.used] = (level, region);
        self.used += 1;
        Ok(npt_vcpu::POOL_FIRST + self.used - 1)
    }

    /// Table pages that mapping the pages of `start .. start + len` would add.
    pub fn pages_needed(&self, start: u64, len: u64) -> usize {
        let mut needed = 0;
        let mut new_regions: [(u8, u64); 8] = [(0, 0); 8];
        let mut count = 0;
        let end = start.saturating_add(len.max(1));
        let mut page = start & !(PAGE_SIZE - 1);
        while page < end {
            for key in [(1u8, page / ONE_GIB), (2u8, page / TWO_MIB)] {
                let known = self.owners[..self.used].contains(&key) || new_regions[..count].contains(&key);
                if !known {
                    needed += 1;
                    if count < new_regions.len() {
                        new_regions[count] = key;
                        count += 1;
                    }
                }
            }
            page += PAGE_SIZE;
        }
        needed
    }

    /// Plans the pages of `start .. start + len`: records the table pages they need and
    /// returns true, or returns false and records nothing if they would not fit.
    pub fn reserve(&mut self, start: u64, len: u64) -> bool {
        if self.pages_needed(start, len) > self.free_pages() {
            return false;
        }
        let end = start.saturating_add(len.max(1));
        let mut page = start & !(PAGE_SIZE - 1);
        while page < end {
            for key in [(1u8, page / ONE_GIB), (2u8, page / TWO_MIB)] {
                if !self.owners[..self.used].contains(&key) && self.used < npt_vcpu::POOL_SIZE {
                    self.owners[self.used] = key;
                    self.used += 1;
                }
            }
            page += PAGE_SIZE;
        }
        true
    }

    /// Room left in the pool.
    pub fn free_pages(&self) -> usize {
        npt_vcpu::POOL_SIZE - self.used
    }

    /// Maps host page `hpa` (page-aligned) at guest-physical `HOST_WINDOW_BASE + hpa`.
    pub fn map(&mut self, pages: &mut impl Pages, hpa: u64) -> Result<(), MapError> {
        if hpa >= HOST_WINDOW_SIZE {
            return Err(MapError::OutsideWindow);
        }
        let (gib, mib2) = (hpa / ONE_GIB, hpa / TWO_MIB);
        let table_bits = P | RW | US | A;
        let pd = self.pool_page(1, gib)?;
        let pd_phys = pages.phys(pd);
        pages.table(npt_vcpu::PDPT_WINDOW).0[(gib % 512) as usize] = pd_phys | table_bits;
        let pt = self.pool_page(2, mib2)?;
        let pt_phys = pages.phys(pt);
        pages.table(pd).0[(mib2 % 512) as usize] = pt_phys | table_bits;
        pages.table(pt).0[((hpa / PAGE_SIZE) % 512) as usize] = (hpa & ADDR) | P | RW | US | A | D | NX;
        Ok(())
    }

    /// Maps every host page an entry's source and destination touch: what the vault needs to
    /// reach for it. `Err` on the first page that cannot be mapped (the rest stay unmapped).
    pub fn map_entry(&mut self, pages: &mut impl Pages, entry: &SgEntry) -> Result<(), MapError> {
        for addr in [entry.src, entry.dst] {
            let mut page = addr & !(PAGE_SIZE - 1);
            while page < addr + u64::from(entry.len) {
                self.map(pages, page)?;
                page += PAGE_SIZE;
            }
        }
        Ok(())
    }

    /// Unmaps everything (the next VMRUN flushes the TLB).
    pub fn clear(&mut self, pages: &mut impl Pages) {
        for (i, (level, region)) in self.owners[..self.used].iter().enumerate() {
            if *level == 1 {
                pages.table(npt_vcpu::PDPT_WINDOW).0[(*region % 512) as usize] = 0;
            }
            *pages.table(npt_vcpu::POOL_FIRST + i) = PageTable::zeroed();
        }
        self.used = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Heap pages at made-up physical addresses `base + 4096 × i`.
    struct HeapPages {
        base: u64,
        tables: Vec<Box<PageTable>>,
    }

    impl HeapPages {
        fn new(base: u64, count: usize) -> Self {
            Self { base, tables: (0..count).map(|_| Box::new(PageTable::zeroed())).collect() }
        }
        fn index_of(&self, phys: u64) -> Option<usize> {
            let i = phys.checked_sub(self.base)? / PAGE_SIZE;
            (i < self.tables.len() as u64).then_some(i as usize)
        }
    }

    impl Pages for HeapPages {
        fn table(&mut self, index: usize) -> &mut PageTable {
            &mut self.tables[index]
        }
        fn phys(&self, index: usize) -> u64 {
            self.base + index as u64 * PAGE_SIZE
        }
    }

    /// Walks a 4-level table: returns the final address and the leaf entry.
    fn walk(lookup: &dyn Fn(u64) -> Option<PageTable>, root: u64, va: u64) -> Option<(u64, u64)> {
        let mut table = lookup(root)?;
        for level in (0..4).rev() {
            let entry = table.0[((va >> (12 + 9 * level)) & 511) as usize];
            if entry & P == 0 {
                return None;
            }
            if level == 0 || entry & PS != 0 {
                let size = 1u64 << (12 + 9 * level);
                return Some(((entry & ADDR & !(size - 1)) | (va & (size - 1)), entry));
            }
            table = lookup(entry & ADDR)?;
        }
        None
    }

    #[test]
    fn guest_page_tables_map_the_memory_map_and_nothing_else() {
        let mut tables: Box<[PageTable; guest_pt::COUNT]> = Box::new(core::array::from_fn(|_| PageTable::zeroed()));
        build_guest_page_tables(&mut tables, 2, None);
        let lookup = |gpa: u64| {
            let i = gpa.checked_sub(PAGE_TABLES_BASE)? / PAGE_SIZE;
            tables.get(i as usize).cloned()
        };
        let root = PAGE_TABLES_BASE;
        let (pa, entry) = walk(&lookup, root, IMAGE_BASE + 0x10).unwrap();
        assert_eq!(pa, IMAGE_BASE + 0x10);
        assert_eq!(entry & (RW | NX), 0, "image: read + execute");
        let (_, entry) = walk(&lookup, root, KEY_SLOTS_BASE + KEY_SLOTS_SIZE - 1).unwrap();
        assert_eq!(entry & (RW | NX), RW | NX, "slots: data");
        let v1 = VcpuIndex::new(1).unwrap();
        assert!(walk(&lookup, root, v1.comm_block_gpa()).is_some());
        assert!(walk(&lookup, root, v1.ghcb_gpa()).is_some());
        assert!(walk(&lookup, root, v1.stack_top() - 8).is_some());
        assert!(walk(&lookup, root, v1.stack_bottom()).is_some());
        assert!(walk(&lookup, root, v1.stack_bottom() - 1).is_none(), "guard below the stack");
        let v2 = VcpuIndex::new(2).unwrap();
        assert!(walk(&lookup, root, v2.comm_block_gpa()).is_none(), "absent vCPU");
        assert!(walk(&lookup, root, v2.stack_top() - 8).is_none());
        assert!(walk(&lookup, root, 0).is_none(), "null page");
        assert!(walk(&lookup, root, PAGE_TABLES_BASE).is_none(), "the vault cannot see its page tables");
        let (pa, entry) = walk(&lookup, root, HOST_WINDOW_BASE + 0x1234_5678).unwrap();
        assert_eq!(pa, HOST_WINDOW_BASE + 0x1234_5678, "window: identity, 1 GiB pages");
        assert_eq!(entry & (PS | NX | RW), PS | NX | RW);
        assert!(walk(&lookup, root, HOST_WINDOW_BASE + HOST_WINDOW_SIZE).is_none());
    }

    #[test]
    fn c_bit_marks_private_entries_only() {
        let mut tables: Box<[PageTable; guest_pt::COUNT]> = Box::new(core::array::from_fn(|_| PageTable::zeroed()));
        build_guest_page_tables(&mut tables, 1, Some(51));
        let c = 1u64 << 51;
        assert_ne!(tables[guest_pt::PML4].0[0] & c, 0, "the tables are private");
        let pte =
            |gpa: u64| tables[guest_pt::PT_FIRST + (gpa / TWO_MIB) as usize].0[((gpa % TWO_MIB) / PAGE_SIZE) as usize];
        assert_ne!(pte(IMAGE_BASE) & c, 0, "image");
        assert_ne!(tables[guest_pt::PDPT_LOW].0[1] & c, 0, "key slots (a 1 GiB page)");
        let v0 = VcpuIndex::new(0).unwrap();
        assert_ne!(pte(v0.stack_bottom()) & c, 0, "stack");
        assert_eq!(pte(v0.comm_block_gpa()) & c, 0, "comm block shared");
        assert_eq!(pte(v0.ghcb_gpa()) & c, 0, "GHCB shared");
        assert_eq!(tables[guest_pt::PDPT_WINDOW].0[3] & c, 0, "host window shared");
        assert_eq!(pte(IMAGE_BASE) & !c & ADDR, IMAGE_BASE, "address bits unchanged");
    }

    #[test]
    fn nested_tables_map_private_pages_to_their_backing_and_windows_per_request() {
        let mut low = HeapPages::new(0x10_0000_0000, npt_low::COUNT);
        // Backing: private GPA → a distinct fake host page.
        let backing = |gpa: u64| Some(0x20_0000_0000 + gpa);
        build_npt_low(&mut low, 1, backing);
        let mut vcpu = HeapPages::new(0x30_0000_0000, npt_vcpu::COUNT);
        let mut window = NptWindow::new();
        window.build_root(&mut vcpu, low.phys(npt_low::PDPT));
        let lookup = |phys: u64| {
            low.index_of(phys)
                .map(|i| (*low.tables[i]).clone())
                .or_else(|| vcpu.index_of(phys).map(|i| (*vcpu.tables[i]).clone()))
        };
        let root = vcpu.phys(npt_vcpu::PML4);
        let (hpa, entry) = walk(&lookup, root, IMAGE_BASE).unwrap();
        assert_eq!(hpa, 0x20_0000_0000 + IMAGE_BASE);
        assert_eq!(entry & (US | RW), US, "nested entries carry U; image read-only");
        assert!(walk(&lookup, root, PAGE_TABLES_BASE).is_some(), "the walker reads the guest tables");
        assert!(walk(&lookup, root, HOST_WINDOW_BASE + 0x5000).is_none(), "window empty at first");

        let host_pages = [0x5000u64, 0x6000, 0x7FFF_F000, 0x1_0000_0000, 0x40_0000_0000];
        for page in host_pages {
            window.map(&mut vcpu, page).unwrap();
        }
        let lookup = |phys: u64| {
            low.index_of(phys)
                .map(|i| (*low.tables[i]).clone())
                .or_else(|| vcpu.index_of(phys).map(|i| (*vcpu.tables[i]).clone()))
        };
        for page in host_pages {
            let (hpa, entry) = walk(&lookup, root, HOST_WINDOW_BASE + page + 0x10).unwrap();
            assert_eq!(hpa, page + 0x10);
            assert_eq!(entry & (US | RW | NX), US | RW | NX);
        }
        assert!(walk(&lookup, root, HOST_WINDOW_BASE + 0x8000).is_none(), "only named pages");
        assert_eq!(window.map(&mut vcpu, HOST_WINDOW_SIZE), Err(MapError::OutsideWindow));
        window.clear(&mut vcpu);
        let lookup = |phys: u64| {
            low.index_of(phys)
                .map(|i| (*low.tables[i]).clone())
                .or_else(|| vcpu.index_of(phys).map(|i| (*vcpu.tables[i]).clone()))
        };
        for page in host_pages {
            assert!(walk(&lookup, root, HOST_WINDOW_BASE + page).is_none(), "cleared");
        }
        assert!(walk(&lookup, root, IMAGE_BASE).is_some(), "private range stays");
    }

    #[test]
    fn slot_blocks_appear_in_the_shared_nested_tables_when_backed() {
        let mut low = HeapPages::new(0x10_0000_0000, npt_low::COUNT);
        build_npt_low(&mut low, 1, |gpa| Some(0x20_0000_0000 + gpa));
        let mut vcpu = HeapPages::new(0x30_0000_0000, npt_vcpu::COUNT);
        NptWindow::new().build_root(&mut vcpu, low.phys(npt_low::PDPT));
        let root = vcpu.phys(npt_vcpu::PML4);
        let slot_gpa = |slot: u64| KEY_SLOTS_BASE + slot * sevault_abi::KEY_SLOT_SIZE;
        {
            let lookup = |phys: u64| {
                low.index_of(phys)
                    .map(|i| (*low.tables[i]).clone())
                    .or_else(|| vcpu.index_of(phys).map(|i| (*vcpu.tables[i]).clone()))
            };
            assert!(walk(&lookup, root, slot_gpa(0)).is_none(), "no slot is backed before its block");
        }
        // Block 0 and block 9 (slots 2304..2560: in the second 2 MiB of slots) backed by two
        // unrelated host blocks.
        assert!(map_slot_block(&mut low, 0, 0x7700_0000));
        assert!(map_slot_block(&mut low, 9, 0x8800_0000));
        assert!(!map_slot_block(&mut low, SLOT_BLOCKS, 0x9900_0000), "beyond the slot range");
        let lookup = |phys: u64| {
            low.index_of(phys)
                .map(|i| (*low.tables[i]).clone())
                .or_else(|| vcpu.index_of(phys).map(|i| (*vcpu.tables[i]).clone()))
        };
        let (hpa, entry) = walk(&lookup, root, slot_gpa(1) + 4).unwrap();
        // Slots of 1 KiB, 256 per block (sevault_abi::KEY_SLOT_SIZE, KEY_SLOTS_PER_BLOCK).
        assert_eq!(hpa, 0x7700_0000 + 1024 + 4);
        assert_eq!(entry & (US | RW | NX), US | RW | NX);
        let (hpa, _) = walk(&lookup, root, slot_gpa(255)).unwrap();
        assert_eq!(hpa, 0x7700_0000 + 255 * 1024, "the last slot of block 0");
        assert!(walk(&lookup, root, slot_gpa(256)).is_none(), "block 1 not backed");
        let (hpa, _) = walk(&lookup, root, slot_gpa(9 * 256 + 100)).unwrap();
        assert_eq!(hpa, 0x8800_0000 + 100 * 1024);
        assert!(walk(&lookup, root, KEY_SLOTS_BASE + KEY_SLOTS_SIZE).is_none(), "nothing past the slots");
    }

    #[test]
    fn the_pool_runs_out_gracefully_and_counts_what_it_needs() {
        let mut vcpu = HeapPages::new(0x30_0000_0000, npt_vcpu::COUNT);
        let mut window = NptWindow::new();
        window.build_root(&mut vcpu, 0);
        assert_eq!(window.pages_needed(0x1000, 0x1000), 2, "one PD, one PT");
        window.map(&mut vcpu, 0x1000).unwrap();
        assert_eq!(window.pages_needed(0x2000, 0x1000), 0, "same 2 MiB");
        assert_eq!(window.pages_needed(0x1F_F000, 0x2000), 1, "crosses into the next 2 MiB");
        assert_eq!(window.pages_needed(ONE_GIB * 3, 1), 2);
        // Each distinct 2 MiB of one GiB costs one PT page: the pool fills up.
        let mut mapped = 1;
        while window.map(&mut vcpu, mapped * TWO_MIB).is_ok() {
            mapped += 1;
        }
        assert_eq!(window.free_pages(), 0);
        assert_eq!(window.map(&mut vcpu, 100 * TWO_MIB), Err(MapError::PoolFull));
        window.clear(&mut vcpu);
        assert_eq!(window.free_pages(), npt_vcpu::POOL_SIZE);
    }
}
