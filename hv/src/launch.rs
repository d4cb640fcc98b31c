//! The vault's SEV launch: exactly which pages the HV hands the PSP, in which order, with
//! which contents — one definition used by the HV's launch flow ([`launch`], through the
//! [`Psp`] trait) and by `sev-launch measure`, so the expected measurement and the launch
//! cannot drift apart.
//!
//! - SEV: `LAUNCH_UPDATE_DATA` over the image, the guest page tables (C-bit set in private
//!   entries) and the key slots (zeros: the vault finds empty slots as zero memory, so they
//!   must be encrypted — and hence measured — too);
//! - SEV-ES: the same, then `LAUNCH_UPDATE_VMSA` for every vCPU;
//! - SNP (not launchable by a 6.1 host; measured for the plan): the same normal pages, the
//!   key slots and every vCPU's stack as ZERO pages (the vault cannot PVALIDATE), then one
//!   VMSA page per vCPU.
//!
//! Shared pages (comm blocks, GHCBs) are never measured.
use sevault_abi::memory_map::{
    VcpuIndex, IMAGE_BASE, IMAGE_MAX_SIZE, KEY_SLOTS_BASE, PAGE_SIZE, PAGE_TABLES_BASE, STACK_SIZE,
};

use crate::paging::{build_guest_page_tables, guest_pt, PageTable};
use crate::vmsa::{Vmsa, SEV_FEATURE_SNP_ACTIVE};

/// Which launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaunchMode {
    /// SEV.
    Sev,
    /// SEV-ES.
    SevEs,
    /// SEV-SNP.
    Snp,
}

/// The GPA SNP launches measure VMSA pages at (the convention of the virtee `sev` crate,
/// QEMU and `sev-snp-measure`).
pub const SNP_VMSA_GPA: u64 = 0xFFFF_FFFF_F000;

/// The SEV launch policy of the vault (SEV API, LAUNCH_START): NODBG (bit 0), NOKS (bit 1),
/// NOSEND (bit 3) — no debugging, no key sharing, no migration.
pub const POLICY_SEV: u32 = 0xB;
/// The SEV-ES launch policy: as [`POLICY_SEV`] plus ES (bit 2, SEV-ES required).
pub const POLICY_SEV_ES: u32 = 0xF;

/// What a launched page holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageKind {
    /// The vault image (zero-padded to the page).
    Image,
    /// Guest page table `index` (see [`guest_pt`]).
    GuestPageTable(usize),
    /// Zeros (SEV/SEV-ES: measured as data; SNP: a ZERO page).
    Zero,
    /// The VMSA of a vCPU.
    Vmsa(VcpuIndex),
}

/// One page of the launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchPage {
    /// Where the vault sees it ([`SNP_VMSA_GPA`] for VMSAs).
    pub gpa: u64,
    /// What it holds.
    pub kind: PageKind,
}

/// Pages of the key slots backed at load ([`sevault_abi::LAUNCH_KEY_SLOTS`]).
pub const LAUNCH_SLOT_PAGES: u64 = sevault_abi::LAUNCH_KEY_SLOTS as u64 * sevault_abi::KEY_SLOT_SIZE / PAGE_SIZE;

/// The pages of a launch of `vcpus` vCPUs, in launch order.
pub fn pages(mode: LaunchMode, vcpus: u32) -> impl Iterator<Item = LaunchPage> {
    let image = core::iter::once(LaunchPage { gpa: IMAGE_BASE, kind: PageKind::Image });
    let tables = (0..guest_pt::COUNT)
        .map(|i| LaunchPage { gpa: PAGE_TABLES_BASE + i as u64 * PAGE_SIZE, kind: PageKind::GuestPageTable(i) });
    // Only the slots backed from the start: under SEV no private page can be added later.
    let slots =
        (0..LAUNCH_SLOT_PAGES).map(|i| LaunchPage { gpa: KEY_SLOTS_BASE + i * PAGE_SIZE, kind: PageKind::Zero });
    let with_stacks = mode == LaunchMode::Snp;
    let stacks = (0..vcpus).filter(move |_| with_stacks).filter_map(VcpuIndex::new).flat_map(|v| {
        (0..STACK_SIZE / PAGE_SIZE)
            .map(move |j| LaunchPage { gpa: v.stack_bottom() + j * PAGE_SIZE, kind: PageKind::Zero })
    });
    let with_vmsas = mode != LaunchMode::Sev;
    let vmsas = (0..vcpus)
        .filter(move |_| with_vmsas)
        .filter_map(VcpuIndex::new)
        .map(|v| LaunchPage { gpa: SNP_VMSA_GPA, kind: PageKind::Vmsa(v) });
    image.chain(tables).chain(slots).chain(stacks).chain(vmsas)
}

/// Everything the contents of the launch pages depend on.
#[derive(Clone, Copy, Debug)]
pub struct LaunchInput<'a> {
    /// Which launch.
    pub mode: LaunchMode,
    /// The vault image (≤ 4096 bytes).
    pub image: &'a [u8],
    /// vCPUs.
    pub vcpus: u32,
    /// C-bit position (CPUID 0x8000_001F EBX[5:0]).
    pub c_bit: u32,
}

/// Why a launch cannot be described.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaunchError {
    /// The image is empty or over 4096 bytes.
    BadImage,
    /// A PSP command failed (with its firmware status, if known).
    Psp(u32),
}

/// The guest page tables of this launch (computed once; 64 KiB). Same layout as the 16
/// contiguous page-table pages of the vault, which the HV passes as one.
#[repr(transparent)]
pub struct GuestTables(pub [PageTable; guest_pt::COUNT]);

impl GuestTables {
    /// Builds them for `input`.
    pub fn build(input: &LaunchInput<'_>, out: &mut GuestTables) {
        build_guest_page_tables(&mut out.0, input.vcpus, Some(input.c_bit));
    }
}

/// Writes the contents of `page` into `out`.
pub fn contents(
    input: &LaunchInput<'_>,
    tables: &GuestTables,
    page: &LaunchPage,
    out: &mut [u8; 4096],
) -> Result<(), LaunchError> {
    out.fill(0);
    match page.kind {
        PageKind::Image => {
            if input.image.is_empty() || input.image.len() as u64 > IMAGE_MAX_SIZE {
                return Err(LaunchError::BadImage);
            }
            out[..input.image.len()].copy_from_slice(input.image);
        }
        PageKind::GuestPageTable(i) => {
            for (dst, entry) in out.chunks_exact_mut(8).zip(tables.0[i].0.iter()) {
                dst.copy_from_slice(&entry.to_le_bytes());
            }
        }
        PageKind::Zero => {}
        PageKind::Vmsa(vcpu) => {
            let features = if input.mode == LaunchMode::Snp { SEV_FEATURE_SNP_ACTIVE } else { 0 };
            out.copy_from_slice(Vmsa::initial(vcpu, features).as_bytes());
        }
    }
    Ok(())
}

/// SEV firmware status codes the HV acts on (SEV API, AMD pub. 55766, "Status Codes"; the
/// same numbers as Linux `include/uapi/linux/psp-sev.h`, `enum sev_ret_code`).
pub mod status {
    /// INVALID_GUEST_STATE: the guest is not in a state that allows the command.
    pub const INVALID_GUEST_STATE: u32 = 0x02;
    /// POLICY_FAILURE: the guest's policy forbids the command.
    pub const POLICY_FAILURE: u32 = 0x07;
    /// INACTIVE: the guest has no ASID bound (ACTIVATE missing, or DEACTIVATE done).
    pub const INACTIVE: u32 = 0x08;
    /// ASID_OWNED: the ASID is bound to another guest.
    pub const ASID_OWNED: u32 = 0x0C;
    /// INVALID_ASID: not an ASID the firmware can bind.
    pub const INVALID_ASID: u32 = 0x0D;
    /// WBINVD_REQUIRED: DF_FLUSH needs a WBINVD on every core since the last DEACTIVATE.
    pub const WBINVD_REQUIRED: u32 = 0x0E;
    /// DFFLUSH_REQUIRED: the ASID was deactivated and needs a DF_FLUSH before it is bound again.
    pub const DFFLUSH_REQUIRED: u32 = 0x0F;
    /// INVALID_GUEST: no guest context with this handle.
    pub const INVALID_GUEST: u32 = 0x10;
    /// ACTIVE: the guest still has its ASID bound (DECOMMISSION before DEACTIVATE).
    pub const ACTIVE: u32 = 0x12;

    /// The status's name in the SEV API, for log lines.
    pub const fn name(code: u32) -> &'static str {
        match code {
            0x00 => "SUCCESS",
            0x01 => "INVALID_PLATFORM_STATE",
            INVALID_GUEST_STATE => "INVALID_GUEST_STATE",
            0x03 => "INVALID_CONFIG",
            0x04 => "INVALID_LENGTH",
            0x05 => "ALREADY_OWNED",
            0x06 => "INVALID_CERTIFICATE",
            POLICY_FAILURE => "POLICY_FAILURE",
            INACTIVE => "INACTIVE",
            0x09 => "INVALID_ADDRESS",
            0x0A => "BAD_SIGNATURE",
            0x0B => "BAD_MEASUREMENT",
            ASID_OWNED => "ASID_OWNED",
            INVALID_ASID => "INVALID_ASID",
            WBINVD_REQUIRED => "WBINVD_REQUIRED",
            DFFLUSH_REQUIRED => "DFFLUSH_REQUIRED",
            INVALID_GUEST => "INVALID_GUEST",
            0x11 => "INVALID_COMMAND",
            ACTIVE => "ACTIVE",
            0x13 => "HWERROR_PLATFORM",
            0x14 => "HWERROR_UNSAFE",
            0x15 => "UNSUPPORTED",
            0x16 => "INVALID_PARAM",
            0x17 => "RESOURCE_LIMIT",
            0x18 => "SECURE_DATA_INVALID",
            _ => "an unknown status (or an errno of the ccp driver)",
        }
    }
}

/// The PSP commands the launch and the teardown issue (SEV API, "Launch" and "Guest
/// management" chapters; AMD pub. 55766), and the cache write-back the firmware requires
/// between them. The kernel implementation calls the ccp driver; host tests use a model.
pub trait Psp {
    /// LAUNCH_START with `policy`: creates the guest context (its handle stays inside the
    /// implementation).
    fn launch_start(&mut self, policy: u32) -> Result<(), u32>;
    /// ACTIVATE: binds the vault's ASID to that guest context.
    fn activate(&mut self, asid: u32) -> Result<(), u32>;
    /// LAUNCH_UPDATE_DATA on one page (`contents` is what lies at `hpa`).
    fn launch_update_data(&mut self, gpa: u64, contents: &[u8; 4096]) -> Result<(), u32>;
    /// LAUNCH_UPDATE_VMSA for one vCPU.
    fn launch_update_vmsa(&mut self, vcpu: VcpuIndex, contents: &[u8; 4096]) -> Result<(), u32>;
    /// LAUNCH_MEASURE.
    fn launch_measure(&mut self) -> Result<(), u32>;
    /// LAUNCH_FINISH.
    fn launch_finish(&mut self) -> Result<(), u32>;
    /// DEACTIVATE: unbinds the ASID from the guest context.
    fn deactivate(&mut self) -> Result<(), u32>;
    /// WBINVD on every CPU (not a PSP command; Linux `wbinvd_on_all_cpus`).
    fn wbinvd_on_all_cpus(&mut self);
    /// DF_FLUSH: flushes the data fabric's write buffers of every deactivated ASID, which
    /// may then be bound again.
    fn df_flush(&mut self) -> Result<(), u32>;
    /// DECOMMISSION: deletes the guest context.
    fn decommission(&mut self) -> Result<(), u32>;
}

/// The HV's SEV/SEV-ES launch: LAUNCH_START (which creates the guest context), ACTIVATE
/// (binding the ASID to it, as KVM does after LAUNCH_START), LAUNCH_UPDATE_DATA for every data
/// page in order, LAUNCH_UPDATE_VMSA for every vCPU (ES), LAUNCH_MEASURE, LAUNCH_FINISH.
/// `scratch` holds one page at a time.
///
/// An ASID left deactivated but unflushed (by an earlier user that unloaded without
/// DF_FLUSH, or crashed) makes ACTIVATE fail with DFFLUSH_REQUIRED: then the caches are
/// written back on every CPU, DF_FLUSH issued and ACTIVATE tried once more — what KVM's
/// `sev_flush_asids` does before it reuses ASIDs.
pub fn launch(
    psp: &mut impl Psp,
    input: &LaunchInput<'_>,
    tables: &GuestTables,
    asid: u32,
    policy: u32,
    scratch: &mut [u8; 4096],
) -> Result<(), LaunchError> {
    if input.mode == LaunchMode::Snp {
        // A 6.1 host has no SNP launch commands.
        return Err(LaunchError::Psp(u32::MAX));
    }
    psp.launch_start(policy).map_err(LaunchError::Psp)?;
    match psp.activate(asid) {
        Err(status::DFFLUSH_REQUIRED) => {
            psp.wbinvd_on_all_cpus();
            psp.df_flush().map_err(LaunchError::Psp)?;
            psp.activate(asid)
        }
        other => other,
    }
    .map_err(LaunchError::Psp)?;
    for page in pages(input.mode, input.vcpus) {
        contents(input, tables, &page, scratch)?;
        match page.kind {
            PageKind::Vmsa(vcpu) => psp.launch_update_vmsa(vcpu, scratch),
            _ => psp.launch_update_data(page.gpa, scratch),
        }
        .map_err(LaunchError::Psp)?;
    }
    psp.launch_measure().map_err(LaunchError::Psp)?;
    psp.launch_finish().map_err(LaunchError::Psp)
}

/// What each step of [`teardown`] answered (firmware status on failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Teardown {
    /// DEACTIVATE.
    pub deactivate: Result<(), u32>,
    /// DF_FLUSH.
    pub df_flush: Result<(), u32>,
    /// DECOMMISSION.
    pub decommission: Result<(), u32>,
}

impl Teardown {
    /// Every step succeeded — DEACTIVATE may also answer INACTIVE, for a launch that failed
    /// before its ASID was bound —: the ASID is unbound and flushed, free for its next user.
    pub fn is_clean(&self) -> bool {
        matches!(self.deactivate, Ok(()) | Err(status::INACTIVE)) && self.df_flush.is_ok() && self.decommission.is_ok()
    }
}

/// Ends a launched vault (module unload, or a launch that failed after LAUNCH_START), in the
/// order the firmware and the caches require (thesis-notes/sev-plan.md, "Teardown"):
///
/// 1. WBINVD on every CPU, while the guest is still active — cache lines written under its
///    key reach memory before its pages are reused (KVM's `sev_vm_destroy` does this before
///    it unbinds the ASID: CLFLUSH does not reach guest-tagged lines);
/// 2. DEACTIVATE — the ASID no longer names the guest's key;
/// 3. WBINVD on every CPU again — DF_FLUSH refuses to run unless one came after the last
///    DEACTIVATE (WBINVD_REQUIRED; KVM's `sev_flush_asids`);
/// 4. DF_FLUSH — the ASID may be bound again (else ACTIVATE answers DFFLUSH_REQUIRED to the
///    next user: the vault reloaded, or a KVM guest). KVM defers this step until it runs out
///    of ASIDs; the vault's ASID is handed back to a world that does not know it was used;
/// 5. DECOMMISSION — the guest context is gone;
/// 6. `release`: the vault's pages go back to the allocator — only now.
///
/// Every status is reported; a failed step does not skip the later ones (each is still
/// right to attempt), and the pages are released in any case: after the write-backs no line
/// of them is left in a cache, so they are safe to reuse.
pub fn teardown(psp: &mut impl Psp, release: impl FnOnce()) -> Teardown {
    psp.wbinvd_on_all_cpus();
    let deactivate = psp.deactivate();
    psp.wbinvd_on_all_cpus();
    let df_flush = psp.df_flush();
    let decommission = psp.decommission();
    release();
    Teardown { deactivate, df_flush, decommission }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_lists() {
        let count = |mode| pages(mode, 2).count();
        let data = 1 + guest_pt::COUNT + LAUNCH_SLOT_PAGES as usize;
        assert_eq!(count(LaunchMode::Sev), data);
        assert_eq!(count(LaunchMode::SevEs), data + 2);
        assert_eq!(count(LaunchMode::Snp), data + 2 + 2); // 2 vCPUs × 1 stack page (4 KiB), 2 VMSAs
        let snp: Vec<_> = pages(LaunchMode::Snp, 2).collect();
        assert_eq!(snp[0], LaunchPage { gpa: IMAGE_BASE, kind: PageKind::Image });
        assert_eq!(snp[1].kind, PageKind::GuestPageTable(0));
        assert!(matches!(snp.last(), Some(LaunchPage { gpa: SNP_VMSA_GPA, kind: PageKind::Vmsa(_) })));
        // No shared page is ever launched.
        assert!(snp.iter().all(|p| !crate::paging::is_shared(p.gpa)));
    }

    /// Records the commands.
    #[derive(Default)]
    struct Recorder(Vec<String>);
    impl Psp for Recorder {
        fn activate(&mut self, asid: u32) -> Result<(), u32> {
            self.0.push(format!("ACTIVATE {asid}"));
            Ok(())
        }
        fn launch_start(&mut self, policy: u32) -> Result<(), u32> {
            self.0.push(format!("LAUNCH_START {policy:#x}"));
            Ok(())
        }
        fn launch_update_data(&mut self, gpa: u64, _: &[u8; 4096]) -> Result<(), u32> {
            self.0.push(format!("LAUNCH_UPDATE_DATA {gpa:#x}"));
            Ok(())
        }
        fn launch_update_vmsa(&mut self, vcpu: VcpuIndex, _: &[u8; 4096]) -> Result<(), u32> {
            self.0.push(format!("LAUNCH_UPDATE_VMSA {}", vcpu.get()));
            Ok(())
        }
        fn launch_measure(&mut self) -> Result<(), u32> {
            self.0.push("LAUNCH_MEASURE".into());
            Ok(())
        }
        fn launch_finish(&mut self) -> Result<(), u32> {
            self.0.push("LAUNCH_FINISH".into());
            Ok(())
        }
        fn deactivate(&mut self) -> Result<(), u32> {
            self.0.push("DEACTIVATE".into());
            Ok(())
        }
        fn wbinvd_on_all_cpus(&mut self) {
            self.0.push("WBINVD".into());
        }
        fn df_flush(&mut self) -> Result<(), u32> {
            self.0.push("DF_FLUSH".into());
            Ok(())
        }
        fn decommission(&mut self) -> Result<(), u32> {
            self.0.push("DECOMMISSION".into());
            Ok(())
        }
    }

    #[test]
    fn the_launch_sequence() {
        let image = [0x90u8; 100];
        let input = LaunchInput { mode: LaunchMode::SevEs, image: &image, vcpus: 2, c_bit: 51 };
        let mut tables = Box::new(GuestTables(core::array::from_fn(|_| PageTable::zeroed())));
        GuestTables::build(&input, &mut tables);
        let mut psp = Recorder::default();
        launch(&mut psp, &input, &tables, 99, 0x5, &mut [0; 4096]).unwrap();
        let log = psp.0;
        assert_eq!(log[0], "LAUNCH_START 0x5");
        assert_eq!(log[1], "ACTIVATE 99");
        assert_eq!(log[2], format!("LAUNCH_UPDATE_DATA {IMAGE_BASE:#x}"));
        assert_eq!(log[log.len() - 4], "LAUNCH_UPDATE_VMSA 0");
        assert_eq!(log[log.len() - 3], "LAUNCH_UPDATE_VMSA 1");
        assert_eq!(log[log.len() - 2..], ["LAUNCH_MEASURE", "LAUNCH_FINISH"]);
        let snp = LaunchInput { mode: LaunchMode::Snp, ..input };
        assert_eq!(
            launch(&mut Recorder::default(), &snp, &tables, 99, 0, &mut [0; 4096]),
            Err(LaunchError::Psp(u32::MAX))
        );
    }
}
