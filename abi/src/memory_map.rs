//! The vault's guest-physical memory map.
//!
//! The vault runs with paging on and guest-virtual = guest-physical everywhere. Its private
//! region (code, key slots, stacks, page tables) sits in the first 16 MiB; the shared pages
//! (comm blocks and GHCBs, unencrypted under SEV) sit in their own ranges there too. Host
//! memory is reached only through the *host window*: host-physical address `p` appears at
//! guest-physical `HOST_WINDOW_BASE + p`. Request addresses are host-physical, so no request
//! can name a private page: the window and the private region do not overlap by construction,
//! and the validator checks every range against the window's bounds.
//!
//! ```text
//! 0x0000_0000 ..  0x0000_1000  unmapped (null guard)
//! 0x0000_1000 ..  0x0000_2000  IMAGE        code + rodata, the ≤ 4 KiB vault image, RX
//! 0x0001_0000 ..  0x0003_0000  PAGE_TABLES  built by the HV, not mapped for the vault
//! 0x0020_0000 ..  0x0060_0000  COMM_BLOCKS  4 KiB per vCPU, shared with the host
//! 0x0060_0000 ..  0x00A0_0000  GHCBS        4 KiB per vCPU, shared with the host
//! 0x0100_0000 ..  0x0200_0000  STACKS       16 KiB per vCPU: 12 KiB unmapped guard, 4 KiB stack
//! 0x4000_0000 ..  0x4800_0000  KEY_SLOTS    2^17 × 1 KiB, private, shared by all vCPUs; backed
//!                                          by the HV 256 slots (256 KiB) at a time, on demand
//! 0x80_0000_0000 .. 0x100_0000_0000  HOST_WINDOW  host pages at offsets the HV names (compact windows)
//! ```
use crate::{KEY_SLOTS_PER_BLOCK, KEY_SLOT_COUNT, KEY_SLOT_SIZE, MAX_VCPUS};

/// Size of a (small) page.
pub const PAGE_SIZE: u64 = 4096;

/// Where the vault image is loaded and where every vCPU starts executing.
pub const IMAGE_BASE: u64 = 0x1000;
/// The image budget: code and rodata must fit one page.
pub const IMAGE_MAX_SIZE: u64 = PAGE_SIZE;
/// Where the image keeps a loop that never exits (`jmp $`, EB FE): the HV's
/// test hook starts a run there to show that its time budget ends a runaway vault. The
/// linker script pins it; `cargo xtask build-guest` checks the bytes.
pub const SPIN_GPA: u64 = IMAGE_BASE + 2;
/// The bytes at [`SPIN_GPA`]: a short JMP to itself (EB FE, AMD APM Vol. 3 "JMP rel8").
pub const SPIN_BYTES: [u8; 2] = [0xEB, 0xFE];

/// Page tables of the vault (PML4 first), built by the HV; the vault's CR3 points here.
pub const PAGE_TABLES_BASE: u64 = 0x1_0000;
/// Room reserved for the vault's page tables.
pub const PAGE_TABLES_SIZE: u64 = 0x2_0000;

/// Comm blocks, one page per vCPU, shared with the host.
pub const COMM_BLOCKS_BASE: u64 = 0x20_0000;
/// GHCBs, one page per vCPU, shared with the host.
pub const GHCBS_BASE: u64 = 0x60_0000;

/// Stacks: per vCPU a stride of [`STACK_STRIDE`], an unmapped guard then the stack.
pub const STACKS_BASE: u64 = 0x100_0000;
/// Distance between two vCPUs' stack regions.
pub const STACK_STRIDE: u64 = 0x4000;
/// Usable stack per vCPU (the rest of the stride is an unmapped guard below it, so an
/// overflow is a fault, not corruption): one page. The vault's use is measured in the
/// nested VM (debugfs `stack_used`), mostly the private copy of a batch.
pub const STACK_SIZE: u64 = 0x1000;

/// End of the vault's code, tables, shared pages and stacks.
pub const VAULT_END: u64 = STACKS_BASE + MAX_VCPUS as u64 * STACK_STRIDE;

/// Key slots: private memory shared by all vCPUs, in the second GiB (one 1 GiB page of the
/// vault's page tables maps it; the HV's nested tables back only the blocks in use).
pub const KEY_SLOTS_BASE: u64 = 0x4000_0000;
/// Bytes of all key slots.
pub const KEY_SLOTS_SIZE: u64 = KEY_SLOT_COUNT as u64 * KEY_SLOT_SIZE;
/// Bytes of one block of slots the HV backs at once.
pub const KEY_SLOT_BLOCK_SIZE: u64 = KEY_SLOTS_PER_BLOCK as u64 * KEY_SLOT_SIZE;

/// Guest-physical address at which host-physical address 0 appears.
pub const HOST_WINDOW_BASE: u64 = 0x80_0000_0000;
/// Host-physical addresses reachable through the window: `0 .. HOST_WINDOW_SIZE`.
pub const HOST_WINDOW_SIZE: u64 = 0x80_0000_0000;

/// A vCPU index, `0 .. MAX_VCPUS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuIndex(u32);

impl VcpuIndex {
    /// `Some` if `index` is below [`MAX_VCPUS`].
    pub const fn new(index: u32) -> Option<Self> {
        if index < MAX_VCPUS {
            Some(Self(index))
        } else {
            None
        }
    }

    /// The index as a number.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Guest-physical address of this vCPU's comm block.
    pub const fn comm_block_gpa(self) -> u64 {
        COMM_BLOCKS_BASE + self.0 as u64 * PAGE_SIZE
    }

    /// Guest-physical address of this vCPU's GHCB.
    pub const fn ghcb_gpa(self) -> u64 {
        GHCBS_BASE + self.0 as u64 * PAGE_SIZE
    }

    /// Lowest address of this vCPU's stack (the guard lies below it).
    pub const fn stack_bottom(self) -> u64 {
        STACKS_BASE + self.0 as u64 * STACK_STRIDE + (STACK_STRIDE - STACK_SIZE)
    }

    /// Initial RSP of this vCPU: the top of its stack.
    pub const fn stack_top(self) -> u64 {
        STACKS_BASE + (self.0 as u64 + 1) * STACK_STRIDE
    }

    /// The vCPU whose initial RSP is `rsp`; `None` for any other value. The vault derives its
    /// own index this way, so the only per-vCPU register the HV sets is RSP.
    pub const fn from_stack_top(rsp: u64) -> Option<Self> {
        if rsp <= STACKS_BASE || rsp > VAULT_END || !(rsp - STACKS_BASE).is_multiple_of(STACK_STRIDE) {
            return None;
        }
        Self::new(((rsp - STACKS_BASE) / STACK_STRIDE - 1) as u32)
    }
}

/// Guest-physical address of key slot `slot` (unchecked arithmetic on a checked index).
pub const fn key_slot_gpa(slot: crate::KeySlotIndex) -> u64 {
    KEY_SLOTS_BASE + slot.get() as u64 * KEY_SLOT_SIZE
}

/// Guest-physical address through which the vault reaches host-physical `host_phys`, if the
/// whole range `host_phys .. host_phys + len` lies in the window.
pub const fn host_window_gpa(host_phys: u64, len: u64) -> Option<u64> {
    match host_phys.checked_add(len) {
        Some(end) if end <= HOST_WINDOW_SIZE => Some(HOST_WINDOW_BASE + host_phys),
        _ => None,
    }
}

/// True when `start .. start + len` (guest-physical) overlaps the vault's own ranges (code,
/// tables, shared pages, stacks, key slots).
pub const fn touches_vault(start: u64, len: u64) -> bool {
    match start.checked_add(len) {
        Some(end) => {
            (start < VAULT_END && end > 0) || (start < KEY_SLOTS_BASE + KEY_SLOTS_SIZE && end > KEY_SLOTS_BASE)
        }
        None => true,
    }
}

// The map's regions are ordered, page-aligned and do not overlap.
const _: () = {
    assert!(IMAGE_BASE + IMAGE_MAX_SIZE <= PAGE_TABLES_BASE);
    assert!(PAGE_TABLES_BASE + PAGE_TABLES_SIZE <= COMM_BLOCKS_BASE);
    assert!(COMM_BLOCKS_BASE + MAX_VCPUS as u64 * PAGE_SIZE <= GHCBS_BASE);
    assert!(GHCBS_BASE + MAX_VCPUS as u64 * PAGE_SIZE <= STACKS_BASE);
    assert!(STACK_SIZE < STACK_STRIDE);
    assert!(VAULT_END <= KEY_SLOTS_BASE);
    // The slots fill part of the second GiB (one 1 GiB page in the vault's tables), whole
    // blocks of whole pages, and lie below the window.
    assert!(KEY_SLOTS_BASE == 1 << 30 && KEY_SLOTS_SIZE <= 1 << 30);
    assert!(KEY_SLOT_BLOCK_SIZE.is_multiple_of(PAGE_SIZE) && KEY_SLOTS_SIZE.is_multiple_of(KEY_SLOT_BLOCK_SIZE));
    assert!(KEY_SLOTS_BASE + KEY_SLOTS_SIZE <= HOST_WINDOW_BASE);
    assert!(KEY_SLOTS_BASE.is_multiple_of(PAGE_SIZE) && KEY_SLOTS_SIZE.is_multiple_of(PAGE_SIZE));
    assert!(STACK_STRIDE.is_multiple_of(PAGE_SIZE) && STACK_SIZE.is_multiple_of(PAGE_SIZE));
    // One PML4 entry (512 GiB) covers the window exactly; it ends at 2^40, within the 40
    // physical-address bits QEMU's EPYC models give and below any SEV C-bit position.
    assert!(HOST_WINDOW_BASE.is_multiple_of(HOST_WINDOW_SIZE));
    assert!(HOST_WINDOW_BASE + HOST_WINDOW_SIZE <= 1 << 40);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpu_regions_are_disjoint_per_vcpu() {
        let first = VcpuIndex::new(0).unwrap();
        let last = VcpuIndex::new(MAX_VCPUS - 1).unwrap();
        assert_eq!(first.comm_block_gpa(), COMM_BLOCKS_BASE);
        // 1024 vCPUs: 4 MiB of comm blocks, 4 MiB of GHCBs, 16 MiB of stack strides.
        assert_eq!(last.comm_block_gpa() + PAGE_SIZE, COMM_BLOCKS_BASE + 0x40_0000);
        assert_eq!(last.ghcb_gpa() + PAGE_SIZE, GHCBS_BASE + 0x40_0000);
        assert_eq!(last.stack_top(), VAULT_END);
        assert_eq!(VAULT_END, 0x200_0000);
        assert_eq!(first.stack_top() - first.stack_bottom(), STACK_SIZE);
        assert_eq!(first.stack_bottom(), STACKS_BASE + STACK_STRIDE - STACK_SIZE);
        assert!(VcpuIndex::new(MAX_VCPUS).is_none());
    }

    #[test]
    fn vcpu_index_round_trips_through_its_stack_top() {
        for i in [0, 1, 7, MAX_VCPUS - 1] {
            let v = VcpuIndex::new(i).unwrap();
            assert_eq!(VcpuIndex::from_stack_top(v.stack_top()), Some(v));
        }
        for rsp in [0, STACKS_BASE, STACKS_BASE + 8, VAULT_END + STACK_STRIDE, u64::MAX] {
            assert_eq!(VcpuIndex::from_stack_top(rsp), None, "rsp {rsp:#x}");
        }
    }

    #[test]
    fn host_window_bounds() {
        assert_eq!(host_window_gpa(0, 16), Some(HOST_WINDOW_BASE));
        assert_eq!(host_window_gpa(HOST_WINDOW_SIZE - 16, 16), Some(HOST_WINDOW_BASE * 2 - 16));
        assert_eq!(host_window_gpa(HOST_WINDOW_SIZE - 15, 16), None);
        assert_eq!(host_window_gpa(u64::MAX - 3, 16), None);
        // Every window address is outside the vault.
        assert!(!touches_vault(HOST_WINDOW_BASE, HOST_WINDOW_SIZE));
        assert!(touches_vault(KEY_SLOTS_BASE, 16));
        assert!(touches_vault(KEY_SLOTS_BASE + KEY_SLOTS_SIZE - 1, 1));
        assert!(!touches_vault(KEY_SLOTS_BASE + KEY_SLOTS_SIZE, 1));
        assert!(!touches_vault(KEY_SLOTS_BASE - 16, 16));
        assert!(touches_vault(VAULT_END - 1, 1));
        assert!(!touches_vault(VAULT_END, 1));
        assert!(touches_vault(u64::MAX, 2));
    }
}
