//! The VMCB (AMD APM Vol. 2, Appendix B: Table B-1 "VMCB Layout, Control Area" and Table B-2
//! "VMCB Layout, State Save Area"), and the builder that sets up a vault vCPU's VMCB.
//!
//! Only the fields the HV sets or reads are named; reserved ranges are named by offset.
use core::mem::{offset_of, size_of};

use sevault_abi::memory_map::VcpuIndex;
use sevault_abi::vcpu_state::{self, Segment as AbiSegment};

/// One segment register in the save area (selector, attributes, limit, base).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Segment {
    /// Selector.
    pub selector: u16,
    /// Attributes (descriptor bits 40–47 and 52–55, packed).
    pub attrib: u16,
    /// Limit.
    pub limit: u32,
    /// Base.
    pub base: u64,
}

impl From<AbiSegment> for Segment {
    fn from(s: AbiSegment) -> Self {
        Self { selector: s.selector, attrib: s.attrib, limit: s.limit, base: s.base }
    }
}

/// VMCB control area (APM Vol. 2, Table B-1), offsets 0x000–0x3FF.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct ControlArea {
    /// Intercept CR reads (bits 0–15) and writes (bits 16–31).
    pub intercept_cr: u32,
    /// Intercept DR reads and writes.
    pub intercept_dr: u32,
    /// Intercept exception vectors 0–31.
    pub intercept_exceptions: u32,
    /// Intercept vector 3: INTR, NMI, SMI, … SHUTDOWN.
    pub intercept_misc1: u32,
    /// Intercept vector 4: VMRUN, VMMCALL, … XSETBV.
    pub intercept_misc2: u32,
    /// Intercept vector 5.
    pub intercept_misc3: u32,
    /// Reserved.
    pub reserved_0x018: [u8; 0x24],
    /// PAUSE filter threshold.
    pub pause_filter_threshold: u16,
    /// PAUSE filter count.
    pub pause_filter_count: u16,
    /// Physical address of the I/O permission map.
    pub iopm_base_pa: u64,
    /// Physical address of the MSR permission map.
    pub msrpm_base_pa: u64,
    /// TSC offset.
    pub tsc_offset: u64,
    /// Guest ASID.
    pub guest_asid: u32,
    /// TLB control.
    pub tlb_control: u8,
    /// Reserved.
    pub reserved_0x05d: [u8; 3],
    /// Virtual interrupt control (V_TPR, V_IRQ, V_INTR_MASKING, …).
    pub int_ctl: u32,
    /// Virtual interrupt vector.
    pub int_vector: u32,
    /// Interrupt shadow.
    pub int_state: u32,
    /// Reserved.
    pub reserved_0x06c: [u8; 4],
    /// EXITCODE.
    pub exit_code: u64,
    /// EXITINFO1.
    pub exit_info_1: u64,
    /// EXITINFO2.
    pub exit_info_2: u64,
    /// EXITINTINFO.
    pub exit_int_info: u64,
    /// Nested paging and SEV controls (bit 0 NP_ENABLE, bit 1 SEV, bit 2 SEV-ES).
    pub nested_ctl: u64,
    /// AVIC APIC BAR.
    pub avic_apic_bar: u64,
    /// GHCB guest-physical address (SEV-ES).
    pub ghcb_gpa: u64,
    /// EVENTINJ.
    pub event_inj: u64,
    /// Nested page table root (N_CR3).
    pub n_cr3: u64,
    /// LBR virtualization and virtual VMSAVE/VMLOAD.
    pub virt_ext: u64,
    /// VMCB clean bits.
    pub clean_bits: u32,
    /// Reserved.
    pub reserved_0x0c4: u32,
    /// Next sequential instruction pointer (with NRIPS).
    pub next_rip: u64,
    /// Number of guest instruction bytes fetched.
    pub insn_len: u8,
    /// Guest instruction bytes.
    pub insn_bytes: [u8; 15],
    /// AVIC backing page.
    pub avic_backing_page: u64,
    /// Reserved.
    pub reserved_0x0e8: u64,
    /// AVIC logical table.
    pub avic_logical_table: u64,
    /// AVIC physical table.
    pub avic_physical_table: u64,
    /// Reserved.
    pub reserved_0x100: u64,
    /// VMSA pointer (SEV-ES).
    pub vmsa_pa: u64,
    /// Reserved up to the save area.
    pub reserved_0x110: [u8; 0x2F0],
}

/// The register state at the start of both the VMCB state save area (APM Vol. 2, Table B-2)
/// and the SEV-ES VMSA (Table B-4), which share these offsets: one definition, so that what
/// the HV runs on plain SVM and what an SEV-ES launch measures cannot differ.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct StateSave {
    /// ES.
    pub es: Segment,
    /// CS.
    pub cs: Segment,
    /// SS.
    pub ss: Segment,
    /// DS.
    pub ds: Segment,
    /// FS.
    pub fs: Segment,
    /// GS.
    pub gs: Segment,
    /// GDTR.
    pub gdtr: Segment,
    /// LDTR.
    pub ldtr: Segment,
    /// IDTR.
    pub idtr: Segment,
    /// TR.
    pub tr: Segment,
    /// Reserved (VMSA: VMPL0–3 SSP, U_CET).
    pub reserved_0x0a0: [u8; 0x2A],
    /// VMPL (SNP).
    pub vmpl: u8,
    /// CPL.
    pub cpl: u8,
    /// Reserved.
    pub reserved_0x0cc: [u8; 4],
    /// EFER.
    pub efer: u64,
    /// Reserved.
    pub reserved_0x0d8: [u8; 0x68],
    /// XSS (VMSA only; reserved in a VMCB).
    pub xss: u64,
    /// CR4.
    pub cr4: u64,
    /// CR3.
    pub cr3: u64,
    /// CR0.
    pub cr0: u64,
    /// DR7.
    pub dr7: u64,
    /// DR6.
    pub dr6: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// RIP.
    pub rip: u64,
    /// Reserved (VMSA: DR0–3 and their masks).
    pub reserved_0x180: [u8; 0x58],
    /// RSP.
    pub rsp: u64,
    /// S_CET.
    pub s_cet: u64,
    /// SSP.
    pub ssp: u64,
    /// ISST_ADDR.
    pub isst_addr: u64,
    /// RAX.
    pub rax: u64,
    /// STAR.
    pub star: u64,
    /// LSTAR.
    pub lstar: u64,
    /// CSTAR.
    pub cstar: u64,
    /// SFMASK.
    pub sfmask: u64,
    /// KernelGSBase.
    pub kernel_gs_base: u64,
    /// SYSENTER_CS.
    pub sysenter_cs: u64,
    /// SYSENTER_ESP.
    pub sysenter_esp: u64,
    /// SYSENTER_EIP.
    pub sysenter_eip: u64,
    /// CR2.
    pub cr2: u64,
    /// Reserved.
    pub reserved_0x248: [u8; 0x20],
    /// Guest PAT.
    pub g_pat: u64,
    /// DBGCTL.
    pub dbgctl: u64,
    /// BR_FROM.
    pub br_from: u64,
    /// BR_TO.
    pub br_to: u64,
    /// LASTEXCPFROM.
    pub last_excp_from: u64,
    /// LASTEXCPTO.
    pub last_excp_to: u64,
}

impl StateSave {
    /// The state vault vCPU `vcpu` starts in, from `sevault_abi::vcpu_state::initial`;
    /// everything else zero.
    pub fn initial(vcpu: VcpuIndex) -> Self {
        let state = vcpu_state::initial(vcpu);
        // SAFETY: integers and arrays of integers only: all-zero is valid.
        let mut s: Self = unsafe { core::mem::zeroed() };
        s.cs = state.cs.into();
        for seg in [&mut s.ds, &mut s.es, &mut s.ss, &mut s.fs, &mut s.gs] {
            *seg = state.data.into();
        }
        s.tr = state.tr.into();
        s.ldtr = state.ldtr.into();
        s.cpl = 0;
        s.efer = state.efer;
        s.cr0 = state.cr0;
        s.cr3 = state.cr3;
        s.cr4 = state.cr4;
        s.dr7 = vcpu_state::DR7;
        s.dr6 = vcpu_state::DR6;
        s.rflags = state.rflags;
        s.rip = state.rip;
        s.rsp = state.rsp;
        s.g_pat = state.g_pat;
        s
    }
}

/// VMCB state save area (APM Vol. 2, Table B-2), VMCB offsets 0x400–0xFFF.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct SaveArea {
    /// The state shared with the VMSA layout.
    pub state: StateSave,
    /// Reserved.
    pub reserved_0x298: [u8; 0x48],
    /// SPEC_CTRL.
    pub spec_ctrl: u32,
    /// Reserved up to the end of the page.
    pub reserved_0x2e4: [u8; 0xC00 - 0x2E4],
}

/// The host save area page (VM_HSAVE_PA) as SEV-ES uses it. On an SEV-ES #VMEXIT the CPU
/// restores the host from this page: what VMRUN saved there itself, what VMSAVE put there
/// (FS, GS, TR, LDTR, KernelGsBase, STAR/LSTAR/CSTAR/SFMASK, SYSENTER_*), and XCR0, PKRU
/// and XSS, which nothing saves for it — the HV writes them (KVM:
/// `sev_es_prepare_switch_to_guest`, which casts the page + 0x400 to its VMSA layout,
/// `struct sev_es_save_area`). Left zero, the first exit would load XCR0 = 0.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(4096))]
pub struct HostSaveArea {
    /// Not used by the CPU for the host.
    pub reserved_0x000: [u8; 0x400],
    /// The VMSA layout's first part (VMSAVE writes its FS/GS/TR/LDTR/MSR fields here; XSS
    /// is the HV's to write).
    pub state: StateSave,
    /// Reserved (GPR and exit fields of the VMSA layout).
    pub reserved_0x698: [u8; 0x50],
    /// PKRU (VMSA offset 0x2E8).
    pub pkru: u32,
    /// TSC_AUX (VMSA offset 0x2EC): restored from here on CPUs with V_TSC_AUX (CPUID
    /// 0x8000_001F EAX bit 9; KVM 6.12 primes it per CPU) — the host's `getcpu` reads it.
    pub tsc_aux: u32,
    /// Reserved.
    pub reserved_0x6f0: [u8; 0xF8],
    /// XCR0 (VMSA offset 0x3E8).
    pub xcr0: u64,
    /// Reserved.
    pub reserved_0x7f0: [u8; 0x810],
}

const _: () = {
    assert!(size_of::<HostSaveArea>() == 4096);
    assert!(offset_of!(HostSaveArea, state) == 0x400);
    assert!(offset_of!(HostSaveArea, state) + offset_of!(StateSave, xss) == 0x540);
    assert!(offset_of!(HostSaveArea, pkru) == 0x6E8);
    assert!(offset_of!(HostSaveArea, tsc_aux) == 0x6EC);
    assert!(offset_of!(HostSaveArea, xcr0) == 0x7E8);
};

/// The host's extended state an SEV-ES #VMEXIT restores from the host save area.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostXState {
    /// XCR0 (`xgetbv(0)`).
    pub xcr0: u64,
    /// PKRU (`rdpkru`; 0 where the host has no protection keys).
    pub pkru: u32,
    /// IA32_XSS (0 where the CPU has no XSAVES).
    pub xss: u64,
    /// TSC_AUX (0 where the CPU has neither RDTSCP nor RDPID).
    pub tsc_aux: u32,
}

impl HostSaveArea {
    /// Writes what the HV owes the CPU before every SEV-ES VMRUN (the VMSAVE into this page
    /// is the trampoline's).
    pub fn set_host_xstate(&mut self, host: HostXState) {
        self.xcr0 = host.xcr0;
        self.pkru = host.pkru;
        self.tsc_aux = host.tsc_aux;
        self.state.xss = host.xss;
    }
}

/// A whole VMCB page.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(4096))]
pub struct Vmcb {
    /// Control area.
    pub control: ControlArea,
    /// State save area.
    pub save: SaveArea,
}

const _: () = {
    assert!(size_of::<Segment>() == 16);
    assert!(size_of::<ControlArea>() == 0x400);
    assert!(size_of::<SaveArea>() == 0xC00);
    assert!(size_of::<Vmcb>() == 4096);
    assert!(offset_of!(ControlArea, intercept_cr) == 0x000);
    assert!(offset_of!(ControlArea, intercept_dr) == 0x004);
    assert!(offset_of!(ControlArea, intercept_exceptions) == 0x008);
    assert!(offset_of!(ControlArea, intercept_misc1) == 0x00C);
    assert!(offset_of!(ControlArea, intercept_misc2) == 0x010);
    assert!(offset_of!(ControlArea, intercept_misc3) == 0x014);
    assert!(offset_of!(ControlArea, pause_filter_threshold) == 0x03C);
    assert!(offset_of!(ControlArea, pause_filter_count) == 0x03E);
    assert!(offset_of!(ControlArea, iopm_base_pa) == 0x040);
    assert!(offset_of!(ControlArea, msrpm_base_pa) == 0x048);
    assert!(offset_of!(ControlArea, tsc_offset) == 0x050);
    assert!(offset_of!(ControlArea, guest_asid) == 0x058);
    assert!(offset_of!(ControlArea, tlb_control) == 0x05C);
    assert!(offset_of!(ControlArea, int_ctl) == 0x060);
    assert!(offset_of!(ControlArea, int_vector) == 0x064);
    assert!(offset_of!(ControlArea, int_state) == 0x068);
    assert!(offset_of!(ControlArea, exit_code) == 0x070);
    assert!(offset_of!(ControlArea, exit_info_1) == 0x078);
    assert!(offset_of!(ControlArea, exit_info_2) == 0x080);
    assert!(offset_of!(ControlArea, exit_int_info) == 0x088);
    assert!(offset_of!(ControlArea, nested_ctl) == 0x090);
    assert!(offset_of!(ControlArea, avic_apic_bar) == 0x098);
    assert!(offset_of!(ControlArea, ghcb_gpa) == 0x0A0);
    assert!(offset_of!(ControlArea, event_inj) == 0x0A8);
    assert!(offset_of!(ControlArea, n_cr3) == 0x0B0);
    assert!(offset_of!(ControlArea, virt_ext) == 0x0B8);
    assert!(offset_of!(ControlArea, clean_bits) == 0x0C0);
    assert!(offset_of!(ControlArea, next_rip) == 0x0C8);
    assert!(offset_of!(ControlArea, insn_len) == 0x0D0);
    assert!(offset_of!(ControlArea, insn_bytes) == 0x0D1);
    assert!(offset_of!(ControlArea, avic_backing_page) == 0x0E0);
    assert!(offset_of!(ControlArea, avic_logical_table) == 0x0F0);
    assert!(offset_of!(ControlArea, avic_physical_table) == 0x0F8);
    assert!(offset_of!(ControlArea, vmsa_pa) == 0x108);
    assert!(offset_of!(ControlArea, reserved_0x110) == 0x110);
    assert!(offset_of!(StateSave, es) == 0x000);
    assert!(offset_of!(StateSave, cs) == 0x010);
    assert!(offset_of!(StateSave, ss) == 0x020);
    assert!(offset_of!(StateSave, ds) == 0x030);
    assert!(offset_of!(StateSave, fs) == 0x040);
    assert!(offset_of!(StateSave, gs) == 0x050);
    assert!(offset_of!(StateSave, gdtr) == 0x060);
    assert!(offset_of!(StateSave, ldtr) == 0x070);
    assert!(offset_of!(StateSave, idtr) == 0x080);
    assert!(offset_of!(StateSave, tr) == 0x090);
    assert!(offset_of!(StateSave, vmpl) == 0x0CA);
    assert!(offset_of!(StateSave, cpl) == 0x0CB);
    assert!(offset_of!(StateSave, efer) == 0x0D0);
    assert!(offset_of!(StateSave, cr4) == 0x148);
    assert!(offset_of!(StateSave, cr3) == 0x150);
    assert!(offset_of!(StateSave, cr0) == 0x158);
    assert!(offset_of!(StateSave, dr7) == 0x160);
    assert!(offset_of!(StateSave, dr6) == 0x168);
    assert!(offset_of!(StateSave, rflags) == 0x170);
    assert!(offset_of!(StateSave, rip) == 0x178);
    assert!(offset_of!(StateSave, rsp) == 0x1D8);
    assert!(offset_of!(StateSave, s_cet) == 0x1E0);
    assert!(offset_of!(StateSave, ssp) == 0x1E8);
    assert!(offset_of!(StateSave, isst_addr) == 0x1F0);
    assert!(offset_of!(StateSave, rax) == 0x1F8);
    assert!(offset_of!(StateSave, star) == 0x200);
    assert!(offset_of!(StateSave, lstar) == 0x208);
    assert!(offset_of!(StateSave, cstar) == 0x210);
    assert!(offset_of!(StateSave, sfmask) == 0x218);
    assert!(offset_of!(StateSave, kernel_gs_base) == 0x220);
    assert!(offset_of!(StateSave, sysenter_cs) == 0x228);
    assert!(offset_of!(StateSave, sysenter_esp) == 0x230);
    assert!(offset_of!(StateSave, sysenter_eip) == 0x238);
    assert!(offset_of!(StateSave, cr2) == 0x240);
    assert!(offset_of!(StateSave, g_pat) == 0x268);
    assert!(offset_of!(StateSave, dbgctl) == 0x270);
    assert!(offset_of!(StateSave, last_excp_to) == 0x290);
    assert!(offset_of!(StateSave, xss) == 0x140);
    assert!(size_of::<StateSave>() == 0x298);
    assert!(offset_of!(SaveArea, state) == 0x000);
    assert!(offset_of!(SaveArea, spec_ctrl) == 0x2E0);
    assert!(offset_of!(Vmcb, save) == 0x400);
};

/// Intercept vector 3 bits (APM Vol. 2, Table B-1, offset 0x00C).
pub mod misc1 {
    /// Physical maskable interrupt (INTR).
    pub const INTR: u32 = 1 << 0;
    /// NMI.
    pub const NMI: u32 = 1 << 1;
    /// SMI.
    pub const SMI: u32 = 1 << 2;
    /// INIT.
    pub const INIT: u32 = 1 << 3;
    /// Virtual interrupt (VINTR): the guest is about to take the V_IRQ.
    pub const VINTR: u32 = 1 << 4;
    /// CPUID.
    pub const CPUID: u32 = 1 << 18;
    /// RSM.
    pub const RSM: u32 = 1 << 19;
    /// INTn.
    pub const INTN: u32 = 1 << 21;
    /// INVD.
    pub const INVD: u32 = 1 << 22;
    /// HLT.
    pub const HLT: u32 = 1 << 24;
    /// INVLPGA.
    pub const INVLPGA: u32 = 1 << 26;
    /// IN/OUT through the I/O permission map.
    pub const IOIO_PROT: u32 = 1 << 27;
    /// RDMSR/WRMSR through the MSR permission map.
    pub const MSR_PROT: u32 = 1 << 28;
    /// Task switch.
    pub const TASK_SWITCH: u32 = 1 << 29;
    /// FERR_FREEZE.
    pub const FERR_FREEZE: u32 = 1 << 30;
    /// Shutdown (triple fault).
    pub const SHUTDOWN: u32 = 1 << 31;
}

/// Intercept vector 4 bits (APM Vol. 2, Table B-1, offset 0x010).
pub mod misc2 {
    /// VMRUN (must be set, or VMRUN fails its consistency checks).
    pub const VMRUN: u32 = 1 << 0;
    /// VMMCALL (and what QEMU TCG gives for `rep vmmcall`).
    pub const VMMCALL: u32 = 1 << 1;
    /// VMLOAD.
    pub const VMLOAD: u32 = 1 << 2;
    /// VMSAVE.
    pub const VMSAVE: u32 = 1 << 3;
    /// STGI.
    pub const STGI: u32 = 1 << 4;
    /// CLGI.
    pub const CLGI: u32 = 1 << 5;
    /// SKINIT.
    pub const SKINIT: u32 = 1 << 6;
    /// RDTSCP.
    pub const RDTSCP: u32 = 1 << 7;
    /// ICEBP.
    pub const ICEBP: u32 = 1 << 8;
    /// WBINVD.
    pub const WBINVD: u32 = 1 << 9;
    /// MONITOR.
    pub const MONITOR: u32 = 1 << 10;
    /// MWAIT.
    pub const MWAIT: u32 = 1 << 11;
    /// XSETBV.
    pub const XSETBV: u32 = 1 << 13;
}

/// `int_ctl` bit 24: physical interrupts are masked by the host's RFLAGS.IF, not the guest's.
pub const V_INTR_MASKING: u32 = 1 << 24;
/// `nested_ctl` bit 0: nested paging on.
pub const NP_ENABLE: u64 = 1 << 0;
/// `nested_ctl` bit 1: SEV (the guest's memory is encrypted with its ASID's key).
pub const SEV_ENABLE: u64 = 1 << 1;
/// `nested_ctl` bit 2: SEV-ES (register state in the VMSA, exits through VMGEXIT).
pub const SEV_ES_ENABLE: u64 = 1 << 2;
/// `virt_ext` (offset 0x0B8) bit 0: LBR virtualization — the CPU swaps DBGCTL and the LBR
/// MSRs with the guest's. SEV-ES requires it on (KVM: `LBR_CTL_ENABLE_MASK`, set for every
/// SEV-ES vCPU; 6.12 refuses SEV-ES on CPUs without LBRV).
pub const LBR_CTL_ENABLE: u64 = 1 << 0;
/// `tlb_control` 0: keep the TLB as it is (TLB_CONTROL encodings: AMD APM Vol. 2 §15.16.1
/// and Appendix B, Table B-1, offset 0x05C).
pub const TLB_DO_NOTHING: u8 = 0;
/// `tlb_control` 1: flush the whole TLB (all ASIDs) on VMRUN.
pub const TLB_FLUSH_ALL: u8 = 1;
/// `tlb_control` 3: flush this guest's ASID only (needs FlushByAsid, CPUID 8000_000A EDX[6]).
pub const TLB_FLUSH_ASID: u8 = 3;
/// int_ctl V_IRQ (bit 8): a virtual interrupt is pending.
pub const V_IRQ: u32 = 1 << 8;
/// int_ctl V_INTR_PRIO (bits 16–19) at its highest, so that no V_TPR masks the V_IRQ.
pub const V_INTR_PRIO_MAX: u32 = 0xF << 16;
/// RFLAGS.IF.
pub const RFLAGS_IF: u64 = 1 << 9;

/// What a vault vCPU's VMCB is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmcbConfig {
    /// The vCPU.
    pub vcpu: VcpuIndex,
    /// ASID (≥ 1: ASID 0 is the host's and VMRUN refuses it).
    pub asid: u32,
    /// Nested page table root of this vCPU.
    pub n_cr3: u64,
    /// I/O permission map (all ones: every port intercepted).
    pub iopm_pa: u64,
    /// MSR permission map (all ones: every MSR intercepted).
    pub msrpm_pa: u64,
}

/// The SEV part of a VMCB (AMD APM Vol. 2 §15.34.3 and §15.35.3). Built and host-tested;
/// unverified on hardware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SevVmcb {
    /// SEV: memory encrypted; the save area is still the VMCB's.
    Sev,
    /// SEV-ES: the state lives in the VMSA at `vmsa_pa` (launched and encrypted by the PSP).
    SevEs {
        /// Host-physical address of the vCPU's VMSA page (without the C-bit: the CPU reads it
        /// with the guest's key whatever the address says, as KVM's `sev_es_init_vmcb` notes).
        vmsa_pa: u64,
        /// The GHCB MSR the vCPU starts with: its GHCB's GPA (GHCBInfo 0), since the vault
        /// never negotiates one (`msr_protocol`).
        ghcb_gpa: u64,
    },
}

/// Exceptions the vault intercepts: all of them. The vault has no IDT, so without the
/// intercept any exception would end as a triple fault; with it the HV sees which one.
pub const INTERCEPTED_EXCEPTIONS: u32 = u32::MAX;

/// Intercept vector 3 of the vault: the host's events — INTR, NMI, SMI, INIT — end a run so
/// that the host takes them (after STGI, and at `local_irq_restore` for INTR), then the HV
/// resumes the vault where it was, as KVM's `init_vmcb` intercepts them for its guests; and
/// every instruction the vault never executes (an exit on one means the vault is broken).
pub const VAULT_MISC1: u32 = misc1::INTR
    | misc1::NMI
    | misc1::SMI
    | misc1::INIT
    | misc1::CPUID
    | misc1::RSM
    | misc1::INTN
    | misc1::INVD
    | misc1::HLT
    | misc1::INVLPGA
    | misc1::IOIO_PROT
    | misc1::MSR_PROT
    | misc1::TASK_SWITCH
    | misc1::FERR_FREEZE
    | misc1::SHUTDOWN;

/// Intercept vector 4 of the vault: VMMCALL (the request-done exit) and every SVM or
/// privileged instruction it must not run.
pub const VAULT_MISC2: u32 = misc2::VMRUN
    | misc2::VMMCALL
    | misc2::VMLOAD
    | misc2::VMSAVE
    | misc2::STGI
    | misc2::CLGI
    | misc2::SKINIT
    | misc2::RDTSCP
    | misc2::ICEBP
    | misc2::WBINVD
    | misc2::MONITOR
    | misc2::MWAIT
    | misc2::XSETBV;

impl Vmcb {
    /// An all-zero VMCB.
    pub const fn zeroed() -> Self {
        // SAFETY: every field is an integer or an array of integers: all-zero is valid.
        unsafe { core::mem::zeroed() }
    }

    /// Writes the vault vCPU's VMCB: intercepts, nested paging, ASID and the initial state
    /// of `sevault_abi::vcpu_state`. Everything else is zero.
    pub fn build_vault(&mut self, config: &VmcbConfig) {
        *self = Self::zeroed();
        let c = &mut self.control;
        c.intercept_exceptions = INTERCEPTED_EXCEPTIONS;
        c.intercept_misc1 = VAULT_MISC1;
        c.intercept_misc2 = VAULT_MISC2;
        c.iopm_base_pa = config.iopm_pa;
        c.msrpm_base_pa = config.msrpm_pa;
        c.guest_asid = config.asid;
        c.tlb_control = TLB_FLUSH_ALL;
        c.int_ctl = V_INTR_MASKING;
        c.nested_ctl = NP_ENABLE;
        c.n_cr3 = config.n_cr3;
        self.reset_state(config.vcpu);
    }

    /// Turns on SEV or SEV-ES for this VMCB (after [`Vmcb::build_vault`]).
    pub fn enable_sev(&mut self, sev: SevVmcb) {
        match sev {
            SevVmcb::Sev => self.control.nested_ctl |= SEV_ENABLE,
            SevVmcb::SevEs { vmsa_pa, ghcb_gpa } => {
                self.control.nested_ctl |= SEV_ENABLE | SEV_ES_ENABLE;
                self.control.virt_ext |= LBR_CTL_ENABLE;
                self.control.vmsa_pa = vmsa_pa;
                self.control.ghcb_gpa = ghcb_gpa;
            }
        }
    }

    /// Writes a VMCB whose only job is the TLB flush VMRUN does on entry (`tlb_control`):
    /// it exits before its first instruction, because it enters with a virtual interrupt
    /// pending, RFLAGS.IF set and VINTR intercepted (the interrupt window KVM's
    /// `svm_set_irq_window` opens works the same way); should the CPU fetch anyway, RIP 0
    /// is the vault's unmapped null page and the #PF is intercepted. Same ASID, nested
    /// tables and permission maps as the vault vCPU it flushes for.
    pub fn build_tlb_flush(&mut self, config: &VmcbConfig, tlb_control: u8) {
        self.build_vault(config);
        let c = &mut self.control;
        c.intercept_misc1 |= misc1::VINTR;
        c.tlb_control = tlb_control;
        // Guest state and the pending virtual interrupt.
        self.reset_tlb_flush_state(config.vcpu);
    }

    /// The flush VMCB's guest state, written again before each flush run: a flush never
    /// depends on what the last one left there (see thesis-notes/hypervisor.md, "An open
    /// fault beside KVM": under TCG a VMCB was seen holding host state after a run).
    pub fn reset_tlb_flush_state(&mut self, vcpu: VcpuIndex) {
        self.save.state = StateSave::initial(vcpu);
        let s = &mut self.save.state;
        s.rflags |= RFLAGS_IF;
        s.rip = 0;
        self.control.int_ctl = V_INTR_MASKING | V_IRQ | V_INTR_PRIO_MAX;
    }

    /// Puts the vCPU back to its initial register state (a vault rebuild).
    pub fn reset_state(&mut self, vcpu: VcpuIndex) {
        self.save.state = StateSave::initial(vcpu);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u64_at(bytes: &[u8], offset: usize) -> u64 {
        u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
    }
    fn u32_at(bytes: &[u8], offset: usize) -> u32 {
        u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
    }

    /// Every field the builder sets, read back at the offset the APM gives it.
    #[test]
    fn builder_fields_land_at_their_apm_offsets() {
        let mut vmcb = Box::new(Vmcb::zeroed());
        let vcpu = VcpuIndex::new(3).unwrap();
        let config = VmcbConfig { vcpu, asid: 1, n_cr3: 0x1234_5000, iopm_pa: 0xAAAA_0000, msrpm_pa: 0xBBBB_0000 };
        vmcb.build_vault(&config);
        // SAFETY: `Vmcb` is plain data of 4096 bytes.
        let b: &[u8; 4096] = unsafe { &*(core::ptr::from_ref(&*vmcb).cast()) };
        assert_eq!(u32_at(b, 0x008), u32::MAX, "all exceptions intercepted");
        assert_eq!(u32_at(b, 0x00C), VAULT_MISC1);
        assert_ne!(u32_at(b, 0x00C) & (1 << 31), 0, "SHUTDOWN");
        assert_ne!(u32_at(b, 0x00C) & (1 << 1), 0, "NMI");
        // APM Vol. 2, Table B-1, offset 0x00C: bit 0 INTR, bit 2 SMI, bit 3 INIT.
        assert_ne!(u32_at(b, 0x00C) & (1 << 0), 0, "INTR");
        assert_ne!(u32_at(b, 0x00C) & (1 << 2), 0, "SMI");
        assert_ne!(u32_at(b, 0x00C) & (1 << 3), 0, "INIT");
        assert_eq!(u32_at(b, 0x010) & 0b11, 0b11, "VMRUN and VMMCALL");
        assert_eq!(u64_at(b, 0x040), 0xAAAA_0000, "IOPM_BASE_PA");
        assert_eq!(u64_at(b, 0x048), 0xBBBB_0000, "MSRPM_BASE_PA");
        assert_eq!(u32_at(b, 0x058), 1, "ASID");
        assert_eq!(b[0x05C], 1, "TLB_CONTROL");
        assert_eq!(u32_at(b, 0x060) & (1 << 24), 1 << 24, "V_INTR_MASKING");
        assert_eq!(u64_at(b, 0x090) & 1, 1, "NP_ENABLE");
        assert_eq!(u64_at(b, 0x0B0), 0x1234_5000, "N_CR3");
        let state = vcpu_state::initial(vcpu);
        let save = 0x400;
        assert_eq!(u32_at(b, save + 0x010) & 0xFFFF, 0x08, "CS selector");
        assert_eq!(u32_at(b, save + 0x010) >> 16, 0x0A9B, "CS attrib");
        assert_eq!(u32_at(b, save + 0x020) >> 16, 0x0C93, "SS attrib");
        assert_eq!(u32_at(b, save + 0x090) >> 16, 0x008B, "TR attrib");
        assert_eq!(b[save + 0x0CB], 0, "CPL");
        assert_eq!(u64_at(b, save + 0x0D0), state.efer, "EFER");
        assert_eq!(u64_at(b, save + 0x148), state.cr4, "CR4");
        assert_eq!(u64_at(b, save + 0x150), state.cr3, "CR3");
        assert_eq!(u64_at(b, save + 0x158), state.cr0, "CR0");
        assert_eq!(u64_at(b, save + 0x170), 2, "RFLAGS");
        assert_eq!(u64_at(b, save + 0x178), state.rip, "RIP");
        assert_eq!(u64_at(b, save + 0x1D8), vcpu.stack_top(), "RSP");
        assert_eq!(u64_at(b, save + 0x268), state.g_pat, "G_PAT");
    }

    #[test]
    fn tlb_flush_vmcb_exits_before_its_first_instruction() {
        let config =
            VmcbConfig { vcpu: VcpuIndex::new(1).unwrap(), asid: 1, n_cr3: 0x7000, iopm_pa: 0x8000, msrpm_pa: 0xA000 };
        let mut vmcb = Vmcb::zeroed();
        vmcb.build_tlb_flush(&config, TLB_FLUSH_ASID);
        // SAFETY: reading the VMCB's bytes; it is plain data.
        let b = unsafe { core::slice::from_raw_parts((&raw const vmcb).cast::<u8>(), size_of::<Vmcb>()) };
        // APM Vol. 2, Table B-1: 0x00C bit 4 VINTR intercept; 0x058 ASID; 0x05C TLB_CONTROL
        // (3 = flush this guest's TLB entries); 0x060 V_IRQ bit 8, V_INTR_PRIO bits 16–19,
        // V_INTR_MASKING bit 24. Table B-2: RFLAGS at 0x570 (0x400 + 0x170), RIP at 0x578.
        assert_ne!(u32_at(b, 0x00C) & (1 << 4), 0, "VINTR intercepted");
        assert_ne!(u32_at(b, 0x00C) & (1 << 31), 0, "SHUTDOWN still intercepted");
        assert_eq!(u32_at(b, 0x008), u32::MAX, "every exception still intercepted (#PF at RIP 0)");
        assert_eq!(u32_at(b, 0x058), 1, "ASID");
        assert_eq!(b[0x05C], 3, "TLB_CONTROL");
        assert_eq!(u32_at(b, 0x060) & (1 << 8), 1 << 8, "V_IRQ");
        assert_eq!(u32_at(b, 0x060) & (0xF << 16), 0xF << 16, "V_INTR_PRIO");
        assert_eq!(u32_at(b, 0x060) & (1 << 24), 1 << 24, "V_INTR_MASKING");
        assert_ne!(u64_at(b, 0x570) & (1 << 9), 0, "RFLAGS.IF");
        assert_eq!(u64_at(b, 0x578), 0, "RIP at the unmapped null page");
        assert_eq!(u64_at(b, 0x0B0), 0x7000, "the vCPU's nested tables");
    }

    #[test]
    fn sev_bits_land_at_their_apm_offsets() {
        let mut vmcb = Box::new(Vmcb::zeroed());
        let vcpu = VcpuIndex::new(0).unwrap();
        vmcb.build_vault(&VmcbConfig { vcpu, asid: 99, n_cr3: 0x5000, iopm_pa: 0, msrpm_pa: 0 });
        vmcb.enable_sev(SevVmcb::SevEs { vmsa_pa: 0xABC_D000, ghcb_gpa: vcpu.ghcb_gpa() });
        // SAFETY: `Vmcb` is plain data of 4096 bytes.
        let b: &[u8; 4096] = unsafe { &*(core::ptr::from_ref(&*vmcb).cast()) };
        assert_eq!(u64_at(b, 0x090), NP_ENABLE | SEV_ENABLE | SEV_ES_ENABLE, "nested_ctl");
        assert_eq!(u64_at(b, 0x108), 0xABC_D000, "VMSA pointer");
        let mut plain = Box::new(Vmcb::zeroed());
        plain.build_vault(&VmcbConfig { vcpu, asid: 100, n_cr3: 0, iopm_pa: 0, msrpm_pa: 0 });
        plain.enable_sev(SevVmcb::Sev);
        assert_eq!(plain.control.nested_ctl, NP_ENABLE | SEV_ENABLE);
        assert_eq!(plain.control.vmsa_pa, 0);
    }

    #[test]
    fn reset_restores_the_initial_state_only() {
        let mut vmcb = Box::new(Vmcb::zeroed());
        let vcpu = VcpuIndex::new(0).unwrap();
        vmcb.build_vault(&VmcbConfig { vcpu, asid: 7, n_cr3: 0x5000, iopm_pa: 0, msrpm_pa: 0 });
        vmcb.save.state.rip = 0xdead;
        vmcb.save.state.rsp = 0xbeef;
        vmcb.control.exit_code = 0x7f;
        vmcb.reset_state(vcpu);
        assert_eq!(vmcb.save.state.rip, sevault_abi::memory_map::IMAGE_BASE);
        assert_eq!(vmcb.save.state.rsp, vcpu.stack_top());
        assert_eq!(vmcb.control.guest_asid, 7, "control area untouched");
    }
}
