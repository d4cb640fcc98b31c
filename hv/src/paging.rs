//! The vault's two sets of page tables, built by the HV:
//!
//! - **guest page tables** (guest-virtual → guest-physical, identity), at `PAGE_TABLES_BASE`
//!   in the vault's private memory, shared by all vCPUs: the private range with per-region
//!   permissions, the host window as 1 GiB pages (AMD APM Vol. 2 §5.3, long-mode paging);
//! - **nested page tables** (guest-physical → host-physical, AMD APM Vol. 2 §15.25), one set
//!   shared by all vCPUs: the private range, and in the host window one *compact window* per
//!   vCPU — a page table of its own, at window offsets of the HV's choosing
//!   ([`compact::base`]), that maps only the host pages of the batch in flight, page after
//!   page ([`CompactWindow`]); the HV names those offsets, not host-physical addresses, in
//!   the comm block.
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
    pub const PT_COUNT: usize = 16;
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
    /// PD of the key slots (the second GiB); its page tables come with the slot blocks
    /// ([`super::attach_slot_table`]).
    pub const PD_SLOTS: usize = PT_FIRST + super::guest_pt::PT_COUNT;
    /// The root (N_CR3 of every vCPU): entry 0 the private range ([`PDPT`]), entry 1 the
    /// host window ([`PDPT_WINDOW`]).
    pub const ROOT: usize = PD_SLOTS + 1;
    /// PDPT of the host window.
    pub const PDPT_WINDOW: usize = ROOT + 1;
    /// First PD of the compact windows (their entries: one vCPU's page table each).
    pub const PD_WINDOW_FIRST: usize = ROOT + 2;
    /// All of them.
    pub const COUNT: usize = PD_WINDOW_FIRST + super::compact::PD_COUNT;
}

/// Where the compact windows lie in the host window (issue 12): vCPU `i` maps its batch's
/// pages at window offsets `base(i) .. base(i) + SPAN`, through one page table of its own,
/// and the comm block names those offsets: the vault never sees a host-physical address.
/// They take the top 2 GiB of the 512 GiB window.
pub mod compact {
    use sevault_abi::memory_map::{VcpuIndex, HOST_WINDOW_SIZE};
    use sevault_abi::MAX_VCPUS;

    /// Pages one vCPU can have mapped at once: one page table.
    pub const SLOTS: usize = 512;
    /// Window bytes per vCPU.
    pub const SPAN: u64 = SLOTS as u64 * 4096;
    /// Window offset of vCPU 0's compact window.
    pub const BASE: u64 = HOST_WINDOW_SIZE - MAX_VCPUS as u64 * SPAN;
    /// PDs they take.
    pub const PD_COUNT: usize = (MAX_VCPUS as u64 * SPAN).div_ceil(1 << 30) as usize;
    const _: () = assert!(BASE.is_multiple_of(1 << 30) && BASE >= 510 << 30);

    /// Window offset of `vcpu`'s compact window.
    pub const fn base(vcpu: VcpuIndex) -> u64 {
        BASE + vcpu.get() as u64 * SPAN
    }
}

/// Slot blocks the vault's address space has room for.
pub const SLOT_BLOCKS: usize = (KEY_SLOTS_SIZE / KEY_SLOT_BLOCK_SIZE) as usize;
/// Pages per slot block.
pub const SLOT_BLOCK_PAGES: usize = (KEY_SLOT_BLOCK_SIZE / PAGE_SIZE) as usize;
/// Nested page tables the slot range can need (one per 2 MiB).
pub const SLOT_TABLES: usize = (KEY_SLOTS_SIZE / TWO_MIB) as usize;
/// Slot blocks one of them maps.
pub const BLOCKS_PER_SLOT_TABLE: usize = (TWO_MIB / KEY_SLOT_BLOCK_SIZE) as usize;
const _: () = assert!(SLOT_TABLES * BLOCKS_PER_SLOT_TABLE == SLOT_BLOCKS && SLOT_TABLES <= 512);

/// Hooks page table `table` of the slot range (slot blocks `table × BLOCKS_PER_SLOT_TABLE
/// ..`), host page `pt_phys`, into the shared nested subtree; it must be empty or hold only
/// blocks already backed. False for a table beyond the slot range.
pub fn attach_slot_table(pages: &mut impl Pages, table: usize, pt_phys: u64) -> bool {
    if table >= SLOT_TABLES {
        return false;
    }
    pages.table(npt_low::PD_SLOTS).0[table] = (pt_phys & ADDR) | P | RW | US | A;
    true
}

/// Backs slot block `block` (key slots `block × KEY_SLOTS_PER_BLOCK ..`) with the
/// physically contiguous host pages at `phys`, in `table`, the slot range's page table that
/// covers it (number `block / BLOCKS_PER_SLOT_TABLE`, [`attach_slot_table`]): every vCPU
/// can reach them from its next VMRUN on. Returns false for a block beyond the slot range.
pub fn map_slot_block(table: &mut PageTable, block: usize, phys: u64) -> bool {
    if block >= SLOT_BLOCKS {
        return false;
    }
    let first = block % BLOCKS_PER_SLOT_TABLE * SLOT_BLOCK_PAGES;
    for (page, entry) in table.0[first..first + SLOT_BLOCK_PAGES].iter_mut().enumerate() {
        *entry = ((phys + page as u64 * PAGE_SIZE) & ADDR) | Access::ReadWrite.leaf_bits() | US;
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
    // The root and the compact windows' upper tables; each vCPU's page table comes with
    // `attach_compact_window`.
    let (low_pdpt, window_pdpt) = (pages.phys(npt_low::PDPT), pages.phys(npt_low::PDPT_WINDOW));
    pages.table(npt_low::ROOT).0[0] = low_pdpt | table_bits;
    pages.table(npt_low::ROOT).0[1] = window_pdpt | table_bits;
    for k in 0..compact::PD_COUNT {
        let pd = pages.phys(npt_low::PD_WINDOW_FIRST + k);
        pages.table(npt_low::PDPT_WINDOW).0[(compact::BASE / ONE_GIB) as usize + k] = pd | table_bits;
    }
    // The key slots' PD; its page tables and their entries come with the blocks
    // (`attach_slot_table`, `map_slot_block`).
    let pd_slots = pages.phys(npt_low::PD_SLOTS);
    pages.table(npt_low::PDPT).0[1] = pd_slots | table_bits;
    for i in 0..guest_pt::PT_COUNT {
        let pt = pages.phys(npt_low::PT_FIRST + i);
        pages.table(npt_low::PD).0[i] = pt | table_bits;
        for j in 0..512 {
            let gpa = i as u64 * TWO_MIB + j as u64 * PAGE_SIZE;
            let is_page_table =
                (PAGE_TABLES_BASE..PAGE_TABLES_BASE + guest_pt::COUNT as u64 * PAGE_SIZE).contains(&gpa);
            let access = if is_page_table { Some(Access::ReadWrite) } else { private_access(gpa, vcpus) };
            if let (Some(access), Some(hpa)) = (access, backing(gpa)) {
                set_private_leaf(pages, gpa, access, hpa);
            }
        }
    }
}

/// The shared nested entry of private page `gpa` (below `VAULT_END`): host page `hpa`.
fn set_private_leaf(pages: &mut impl Pages, gpa: u64, access: Access, hpa: u64) {
    let pt = npt_low::PT_FIRST + (gpa / TWO_MIB) as usize;
    pages.table(pt).0[((gpa % TWO_MIB) / PAGE_SIZE) as usize] = (hpa & ADDR) | access.leaf_bits() | US;
}

/// Maps one of a vCPU's data pages (comm block, GHCB, stack) to host page `hpa` in the
/// shared nested tables, when that vCPU is made after [`build_npt_low`]. False (and nothing
/// written) for any other page: only a vCPU's own data pages come and go at run time.
pub fn map_vcpu_page(pages: &mut impl Pages, vcpus: u32, gpa: u64, hpa: u64) -> bool {
    let writable = private_access(gpa, vcpus) == Some(Access::ReadWrite);
    if writable {
        set_private_leaf(pages, gpa, Access::ReadWrite, hpa);
    }
    writable
}

/// Hooks `vcpu`'s compact-window page table (host page `pt_phys`) into the shared nested
/// tables.
pub fn attach_compact_window(pages: &mut impl Pages, vcpu: VcpuIndex, pt_phys: u64) {
    let offset = compact::base(vcpu) - compact::BASE;
    let pd = npt_low::PD_WINDOW_FIRST + (offset / ONE_GIB) as usize;
    pages.table(pd).0[((offset % ONE_GIB) / TWO_MIB) as usize] = (pt_phys & ADDR) | P | RW | US | A;
}

/// Why a host range cannot be mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Not a host-physical range (it runs past the 52 address bits of a nested entry).
    OutsideWindow,
    /// The compact window is full (end the batch here).
    PoolFull,
}

/// Host-physical addresses a nested entry can hold (AMD APM Vol. 2 §5.4: 52 bits).
pub const MAX_PHYS: u64 = 1 << 52;

/// One vCPU's compact window: its batch's host pages, one per slot of its page table, in the
/// order they are mapped. A copy is a plan: [`CompactWindow::reserve`] on it says whether
/// more would fit.
#[derive(Clone, Copy, Debug, Default)]
pub struct CompactWindow {
    base: u64,
    used: usize,
}

impl CompactWindow {
    /// The empty window of `vcpu`.
    pub const fn new(vcpu: VcpuIndex) -> Self {
        Self { base: compact::base(vcpu), used: 0 }
    }

    /// Slots the pages of `phys .. phys + len` take.
    pub const fn pages(phys: u64, len: u64) -> usize {
        if len == 0 {
            0
        } else {
            ((phys % PAGE_SIZE + len).div_ceil(PAGE_SIZE)) as usize
        }
    }

    /// Slots an entry takes: its source's pages, and its destination's unless in place.
    pub fn pages_for(entry: &SgEntry) -> usize {
        let len = u64::from(entry.len);
        Self::pages(entry.src, len) + if entry.dst == entry.src { 0 } else { Self::pages(entry.dst, len) }
    }

    /// Slots left.
    pub const fn free_slots(&self) -> usize {
        compact::SLOTS - self.used
    }

    /// Plans `slots` more: true and recorded if they fit, else false and nothing recorded.
    pub fn reserve(&mut self, slots: usize) -> bool {
        if slots > self.free_slots() {
            return false;
        }
        self.used += slots;
        true
    }

    /// Maps the host pages of `phys .. phys + len` into the next slots of `pt` (this
    /// window's page table); returns the window offset at which `phys` now lies.
    pub fn map_range(&mut self, pt: &mut PageTable, phys: u64, len: u64) -> Result<u64, MapError> {
        if phys.checked_add(len).is_none_or(|end| end > MAX_PHYS) {
            return Err(MapError::OutsideWindow);
        }
        let count = Self::pages(phys, len);
        if count > self.free_slots() {
            return Err(MapError::PoolFull);
        }
        let first = self.used;
        let page = phys & !(PAGE_SIZE - 1);
        for (k, slot) in pt.0[first..first + count].iter_mut().enumerate() {
            *slot = ((page + k as u64 * PAGE_SIZE) & ADDR) | P | RW | US | A | D | NX;
        }
        self.used += count;
        Ok(self.base + first as u64 * PAGE_SIZE + phys % PAGE_SIZE)
    }

    /// Maps an entry's source and destination (once, if in place): the entry as the vault
    /// must see it, with window offsets for addresses. `Err` leaves what was mapped so far.
    pub fn map_entry(&mut self, pt: &mut PageTable, entry: &SgEntry) -> Result<SgEntry, MapError> {
        let len = u64::from(entry.len);
        let src = self.map_range(pt, entry.src, len)?;
        let dst = if entry.dst == entry.src { src } else { self.map_range(pt, entry.dst, len)? };
        Ok(SgEntry { src, dst, ..*entry })
    }

    /// Unmaps everything (the next VMRUN flushes the TLB).
    pub fn clear(&mut self, pt: &mut PageTable) {
        for slot in &mut pt.0[..self.used] {
            *slot = 0;
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

    /// The shared nested tables (low range, root, compact windows of two vCPUs) as one
    /// lookup.
    struct Nested {
        low: HeapPages,
        pts: HeapPages,
    }

    impl Nested {
        fn new(vcpus: u32) -> Self {
            let mut low = HeapPages::new(0x10_0000_0000, npt_low::COUNT);
            // Backing: private GPA → a distinct fake host page.
            build_npt_low(&mut low, vcpus, |gpa| Some(0x20_0000_0000 + gpa));
            // One page table per vCPU's compact window, and two spare (slot tables).
            let pts = HeapPages::new(0x30_0000_0000, vcpus as usize + 2);
            for i in 0..vcpus {
                attach_compact_window(&mut low, VcpuIndex::new(i).unwrap(), pts.phys(i as usize));
            }
            Self { low, pts }
        }
        fn root(&self) -> u64 {
            self.low.phys(npt_low::ROOT)
        }
        fn walk(&self, gpa: u64) -> Option<(u64, u64)> {
            let lookup = |phys: u64| {
                self.low
                    .index_of(phys)
                    .map(|i| (*self.low.tables[i]).clone())
                    .or_else(|| self.pts.index_of(phys).map(|i| (*self.pts.tables[i]).clone()))
            };
            walk(&lookup, self.root(), gpa)
        }
    }

    #[test]
    fn nested_tables_map_private_pages_to_their_backing_and_batches_in_compact_windows() {
        let mut nested = Nested::new(2);
        let (hpa, entry) = nested.walk(IMAGE_BASE).unwrap();
        assert_eq!(hpa, 0x20_0000_0000 + IMAGE_BASE);
        assert_eq!(entry & (US | RW), US, "nested entries carry U; image read-only");
        assert!(nested.walk(PAGE_TABLES_BASE).is_some(), "the walker reads the guest tables");
        assert!(nested.walk(HOST_WINDOW_BASE + 0x5000).is_none(), "no host page at its own address");
        let v1 = VcpuIndex::new(1).unwrap();
        // vCPU 1 maps two entries: 3 bytes straddling a page boundary in place, and one page
        // out of place from above 4 GiB to below.
        let mut window = CompactWindow::new(v1);
        let a = SgEntry { src: 0x7FFF_FFFE, dst: 0x7FFF_FFFE, len: 3, reserved_0x14: 0 };
        let b = SgEntry { src: 0x1_2345_6000, dst: 0x9000, len: 4096, reserved_0x14: 0 };
        assert_eq!((CompactWindow::pages_for(&a), CompactWindow::pages_for(&b)), (2, 2));
        let pt = &mut nested.pts.tables[1];
        let a2 = window.map_entry(pt, &a).unwrap();
        let b2 = window.map_entry(pt, &b).unwrap();
        // Slots in order from vCPU 1's base (the top 2 GiB of the window, 2 MiB per vCPU).
        let base = (510 << 30) + 2 * 1024 * 1024;
        assert_eq!((a2.src, a2.dst, a2.len), (base + 0xFFE, base + 0xFFE, 3));
        assert_eq!((b2.src, b2.dst), (base + 2 * 4096, base + 3 * 4096));
        assert_eq!(window.free_slots(), 512 - 4);
        for (offset, host) in
            [(a2.src, 0x7FFF_FFFE), (a2.src + 2, 0x8000_0000), (b2.src + 5, 0x1_2345_6005), (b2.dst, 0x9000)]
        {
            let (hpa, entry) = nested.walk(HOST_WINDOW_BASE + offset).unwrap();
            assert_eq!(hpa, host, "offset {offset:#x}");
            assert_eq!(entry & (US | RW | NX), US | RW | NX);
        }
        assert!(nested.walk(HOST_WINDOW_BASE + base + 4 * 4096).is_none(), "only the batch's pages");
        assert!(nested.walk(HOST_WINDOW_BASE + (510 << 30)).is_none(), "vCPU 0's window is empty");
        window.clear(&mut nested.pts.tables[1]);
        assert!(nested.walk(HOST_WINDOW_BASE + a2.src).is_none(), "cleared");
        assert!(nested.walk(IMAGE_BASE).is_some(), "private range stays");
    }

    #[test]
    fn a_vcpu_made_later_gets_its_data_pages_and_nothing_else() {
        let v1 = VcpuIndex::new(1).unwrap();
        let mut low = HeapPages::new(0x10_0000_0000, npt_low::COUNT);
        // At load only vCPU 0 exists: vCPU 1's pages have no backing yet.
        let of_v1 = |gpa: u64| {
            gpa == v1.comm_block_gpa() || gpa == v1.ghcb_gpa() || (v1.stack_bottom()..v1.stack_top()).contains(&gpa)
        };
        build_npt_low(&mut low, 2, |gpa| (!of_v1(gpa)).then_some(0x20_0000_0000 + gpa));
        let pts = HeapPages::new(0x30_0000_0000, 2);
        let mut nested = Nested { low, pts };
        assert!(nested.walk(v1.comm_block_gpa()).is_none());
        assert!(nested.walk(v1.stack_bottom()).is_none());
        let image_before = nested.walk(IMAGE_BASE);
        for (gpa, hpa) in
            [(v1.comm_block_gpa(), 0x5000_1000), (v1.ghcb_gpa(), 0x5000_2000), (v1.stack_bottom(), 0x5000_3000)]
        {
            assert!(map_vcpu_page(&mut nested.low, 2, gpa, hpa));
            let (walked, entry) = nested.walk(gpa + 8).unwrap();
            assert_eq!(walked, hpa + 8, "gpa {gpa:#x}");
            // Data pages: present, writable, user (nested entries carry U), no execute.
            assert_eq!(entry & (P | RW | US | NX), P | RW | US | NX);
        }
        // Not a vCPU's data page: the image, the guest page tables, a guard page, a vCPU
        // beyond the count.
        let v2 = VcpuIndex::new(2).unwrap();
        for gpa in [IMAGE_BASE, PAGE_TABLES_BASE, v1.stack_bottom() - PAGE_SIZE, v2.comm_block_gpa()] {
            assert!(!map_vcpu_page(&mut nested.low, 2, gpa, 0x6000_0000), "gpa {gpa:#x}");
        }
        assert_eq!(nested.walk(IMAGE_BASE), image_before, "the image is untouched");
        assert!(nested.walk(PAGE_TABLES_BASE).is_some_and(|(hpa, _)| hpa == 0x20_0000_0000 + PAGE_TABLES_BASE));
        assert!(nested.walk(v2.comm_block_gpa()).is_none());
    }

    #[test]
    fn slot_blocks_appear_in_the_shared_nested_tables_when_backed() {
        let mut nested = Nested::new(1);
        let slot_gpa = |slot: u64| KEY_SLOTS_BASE + slot * sevault_abi::KEY_SLOT_SIZE;
        assert!(nested.walk(slot_gpa(0)).is_none(), "no slot is backed before its block");
        // Block 0 and block 9 (slots 2304..2560: in the second 2 MiB of slots, so the second
        // table) backed by two unrelated host blocks. The tables are the Nested's two spare
        // pages after vCPU 0's window table (the walk looks them up there).
        let (t0, t1) = (nested.pts.phys(1), nested.pts.phys(2));
        assert!(attach_slot_table(&mut nested.low, 0, t0));
        assert!(map_slot_block(&mut nested.pts.tables[1], 0, 0x7700_0000));
        assert!(nested.walk(slot_gpa(9 * 256)).is_none(), "the second table is not there yet");
        assert!(attach_slot_table(&mut nested.low, 1, t1));
        assert!(map_slot_block(&mut nested.pts.tables[2], 9, 0x8800_0000));
        assert!(!map_slot_block(&mut nested.pts.tables[2], SLOT_BLOCKS, 0x9900_0000), "beyond the slot range");
        assert!(!attach_slot_table(&mut nested.low, SLOT_TABLES, 0x9900_0000), "beyond the slot range");
        let (hpa, entry) = nested.walk(slot_gpa(1) + 4).unwrap();
        // Slots of 1 KiB, 256 per block (sevault_abi::KEY_SLOT_SIZE, KEY_SLOTS_PER_BLOCK).
        assert_eq!(hpa, 0x7700_0000 + 1024 + 4);
        assert_eq!(entry & (US | RW | NX), US | RW | NX);
        let (hpa, _) = nested.walk(slot_gpa(255)).unwrap();
        assert_eq!(hpa, 0x7700_0000 + 255 * 1024, "the last slot of block 0");
        assert!(nested.walk(slot_gpa(256)).is_none(), "block 1 not backed");
        let (hpa, _) = nested.walk(slot_gpa(9 * 256 + 100)).unwrap();
        assert_eq!(hpa, 0x8800_0000 + 100 * 1024);
        assert!(nested.walk(slot_gpa(8 * 256)).is_none(), "block 8 (the second table's first) not backed");
        assert!(nested.walk(KEY_SLOTS_BASE + KEY_SLOTS_SIZE).is_none(), "nothing past the slots");
    }

    #[test]
    fn a_compact_window_fills_up_gracefully_and_counts_what_it_needs() {
        let mut pt = Box::new(PageTable::zeroed());
        let mut window = CompactWindow::new(VcpuIndex::new(0).unwrap());
        assert_eq!(CompactWindow::pages(0x1000, 0x1000), 1);
        assert_eq!(CompactWindow::pages(0x1FFF, 2), 2, "crosses a page");
        assert_eq!(CompactWindow::pages(0x1000, 0), 0);
        // The largest entry (64 KiB, unaligned, out of place) takes 2 × 17 slots: an empty
        // window holds 15 of them.
        let big = SgEntry { src: 0x10_0008, dst: 0x90_0008, len: 64 * 1024, reserved_0x14: 0 };
        assert_eq!(CompactWindow::pages_for(&big), 34);
        let mut plan = window;
        let fitted = (0..20).take_while(|_| plan.reserve(CompactWindow::pages_for(&big))).count();
        assert_eq!(fitted, 512 / 34);
        while window.map_entry(&mut pt, &big).is_ok() {}
        assert_eq!(window.free_slots(), 512 % 34, "a 16th did not fit, and took nothing");
        assert_eq!(window.map_range(&mut pt, 0x1000, 64 * 1024), Err(MapError::PoolFull));
        assert_eq!(window.map_range(&mut pt, MAX_PHYS - 8, 16), Err(MapError::OutsideWindow));
        assert_eq!(window.map_range(&mut pt, u64::MAX - 8, 16), Err(MapError::OutsideWindow));
        window.clear(&mut pt);
        assert_eq!(window.free_slots(), 512);
        assert!(pt.0.iter().all(|&e| e == 0));
    }
}
