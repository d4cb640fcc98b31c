//! The CPU's SVM facilities: feature checks, MSRs, enabling SVM around a run, and the world
//! switch (VMRUN trampoline).
use core::arch::{asm, global_asm};
use core::mem::offset_of;

use crate::asid::TlbCaps;
use crate::world::{FxArea, Gpr, GuestRegisters};

/// EFER (AMD APM Vol. 2 §3.1.7).
pub const MSR_EFER: u32 = 0xC000_0080;
/// EFER.SVME.
pub const EFER_SVME: u64 = 1 << 12;
/// VM_CR (AMD APM Vol. 2 §15.30.1).
pub const MSR_VM_CR: u32 = 0xC001_0114;
/// VM_CR.SVMDIS.
pub const VM_CR_SVMDIS: u64 = 1 << 4;
/// VM_HSAVE_PA (AMD APM Vol. 2 §15.30.4).
pub const MSR_VM_HSAVE_PA: u32 = 0xC001_0117;

/// `cpuid(leaf)` → (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid(leaf);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Reads an MSR.
///
/// # Safety
/// The MSR must exist on this CPU (else #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller names an existing MSR.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes an MSR.
///
/// # Safety
/// The MSR must exist and the value be valid for it.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller's contract.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nomem, nostack, preserves_flags))
    };
}

/// What this CPU offers the vault.
#[derive(Clone, Copy, Debug)]
pub struct SvmFeatures {
    /// Next-RIP saved on intercepts (CPUID 8000_000A EDX bit 3).
    pub nrips: bool,
    /// Number of ASIDs (CPUID 8000_000A EBX).
    pub asids: u32,
    /// LBR virtualization (CPUID 8000_000A EDX bit 1).
    pub lbr_virt: bool,
}

/// Why the CPU cannot run the vault.
#[derive(Clone, Copy, Debug)]
pub enum Unsupported {
    /// No SVM (CPUID 8000_0001 ECX bit 2).
    NoSvm,
    /// SVM disabled by the firmware (VM_CR.SVMDIS).
    SvmDisabled,
    /// No nested paging (CPUID 8000_000A EDX bit 0).
    NoNpt,
    /// No AES-NI (CPUID 1 ECX bit 25).
    NoAesNi,
    /// Fewer than two ASIDs.
    NoAsid,
}

impl Unsupported {
    /// What to tell the user.
    pub const fn message(self) -> &'static str {
        match self {
            Self::NoSvm => "this CPU has no AMD SVM (CPUID 0x80000001 ECX bit 2 clear)",
            Self::SvmDisabled => "SVM is disabled by the firmware (VM_CR.SVMDIS set): enable it in the BIOS",
            Self::NoNpt => "this CPU has no nested paging (CPUID 0x8000000A EDX bit 0 clear)",
            Self::NoAesNi => "this CPU has no AES-NI (CPUID 1 ECX bit 25 clear)",
            Self::NoAsid => "this CPU reports fewer than 2 ASIDs",
        }
    }
}

/// What the CPU says about memory encryption (CPUID 0x8000_001F, AMD APM Vol. 2 §15.34.1 and
/// Vol. 3 Appendix E.4.17).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SevInfo {
    /// EAX bit 1.
    pub sev: bool,
    /// EAX bit 3.
    pub sev_es: bool,
    /// EAX bit 4.
    pub snp: bool,
    /// EBX[5:0]: the C-bit's position in page-table entries.
    pub c_bit: u32,
    /// ECX: highest SEV ASID.
    pub max_asid: u32,
    /// EDX: lowest ASID for SEV without ES (ES guests use 1 .. EDX-1).
    pub min_sev_asid: u32,
}

/// Reads CPUID 0x8000_001F (all zero where the leaf does not exist).
pub fn sev_info() -> SevInfo {
    let (max_ext, ..) = cpuid(0x8000_0000);
    let (eax, ebx, ecx, edx) = if max_ext >= 0x8000_001F { cpuid(0x8000_001F) } else { (0, 0, 0, 0) };
    SevInfo {
        sev: eax & (1 << 1) != 0,
        sev_es: eax & (1 << 3) != 0,
        snp: eax & (1 << 4) != 0,
        c_bit: ebx & 0x3F,
        max_asid: ecx,
        min_sev_asid: edx,
    }
}

/// Checks SVM, NPT, AES-NI; reports NRIPS.
pub fn check() -> Result<SvmFeatures, Unsupported> {
    let (max_ext, ..) = cpuid(0x8000_0000);
    if max_ext < 0x8000_000A || cpuid(0x8000_0001).2 & (1 << 2) == 0 {
        return Err(Unsupported::NoSvm);
    }
    // SAFETY: VM_CR exists on every CPU with SVM.
    if unsafe { rdmsr(MSR_VM_CR) } & VM_CR_SVMDIS != 0 {
        return Err(Unsupported::SvmDisabled);
    }
    let (_, asids, _, edx) = cpuid(0x8000_000A);
    if edx & 1 == 0 {
        return Err(Unsupported::NoNpt);
    }
    if cpuid(1).2 & (1 << 25) == 0 {
        return Err(Unsupported::NoAesNi);
    }
    if asids < 2 {
        return Err(Unsupported::NoAsid);
    }
    Ok(SvmFeatures { nrips: edx & (1 << 3) != 0, asids, lbr_virt: edx & (1 << 1) != 0 })
}

/// SVM enabled on this CPU for the guard's lifetime, with our host save area; EFER and
/// VM_HSAVE_PA are put back on drop, so that kvm_amd (or anyone) finds them as it left them.
/// Interrupts must be off for the whole lifetime (nothing may run between enable and restore).
pub struct SvmOn {
    efer: u64,
    hsave: u64,
}

impl SvmOn {
    /// Enables SVM with `hsave_pa` as VM_HSAVE_PA.
    ///
    /// # Safety
    /// SVM is supported and not disabled ([`check`]); interrupts are off; `hsave_pa` is a
    /// page reserved for this CPU's host save area.
    pub unsafe fn new(hsave_pa: u64) -> Self {
        // SAFETY: the MSRs exist on an SVM CPU (caller's contract).
        unsafe {
            let efer = rdmsr(MSR_EFER);
            let hsave = rdmsr(MSR_VM_HSAVE_PA);
            wrmsr(MSR_EFER, efer | EFER_SVME);
            wrmsr(MSR_VM_HSAVE_PA, hsave_pa);
            Self { efer, hsave }
        }
    }
}

impl Drop for SvmOn {
    fn drop(&mut self) {
        // SAFETY: restores the values read in `new` on the same CPU (interrupts still off).
        unsafe {
            wrmsr(MSR_VM_HSAVE_PA, self.hsave);
            wrmsr(MSR_EFER, self.efer);
        }
    }
}

/// What the trampoline needs, and the vault registers it keeps between runs.
#[repr(C, align(64))]
pub struct VmrunArgs {
    /// Physical address of the vCPU's VMCB.
    pub vmcb_pa: u64,
    /// Physical address of the page VMSAVE keeps the host's FS/GS/TR/LDTR/syscall state in:
    /// the host save area itself (VM_HSAVE_PA), as KVM's `svm_prepare_switch_to_guest` does
    /// — VMRUN's own host save and VMSAVE's fields do not overlap, and under SEV-ES the
    /// #VMEXIT restores that state from there.
    pub host_vmsave_pa: u64,
    /// Nonzero: set host RFLAGS.IF inside the CLGI window before VMRUN, so that physical
    /// interrupts end the run with an INTR exit (AMD APM Vol. 2 §15.21.1: with
    /// V_INTR_MASKING, the host's IF at VMRUN masks them in the guest). The host takes them
    /// after STGI and `local_irq_restore`.
    pub interrupts: u64,
    /// The vault's GPRs and vector state outside the VMCB.
    pub regs: GuestRegisters,
}

const _: () = assert!(offset_of!(VmrunArgs, regs) % 64 == 0);

/// Offset of a vault GPR in [`VmrunArgs`].
const fn gpr(reg: Gpr) -> usize {
    offset_of!(VmrunArgs, regs) + GuestRegisters::gpr_offset(reg)
}

/// The vector state the trampoline leaves behind: after FXRSTOR of it no x87, MMX or XMM
/// register holds a vault value.
static SCRUBBED_FX: FxArea = FxArea::INIT;

global_asm!(
    r#"
    // The way back shared by both trampolines, once the host's GS base is back: speculation
    // hygiene (RSB fill, return untraining, IBPB where the kernel asks for it) before the
    // first RET, with the kernel's own macros; then nothing of the vault may be visible once
    // GIF is 1 (an NMI handler saves registers); STGI, where a pending NMI is taken (an
    // interrupt comes at local_irq_restore); the callee-saved registers back.
    // The way in shared by both trampolines: the callee-saved registers, and the argument
    // (the trampoline finds it at [rsp] after #VMEXIT), on the stack.
    .macro sevault_enter
        push rbp
        push rbx
        push r12
        push r13
        push r14
        push r15
        push rdi
    .endm

    .macro sevault_exit_tail
        call sevault_vmexit_hygiene
        fxrstor64 [rip + {scrubbed}]
        xor eax, eax
        xor ebx, ebx
        xor ecx, ecx
        xor edx, edx
        xor esi, esi
        xor edi, edi
        xor ebp, ebp
        xor r8d, r8d
        xor r9d, r9d
        xor r10d, r10d
        xor r11d, r11d
        xor r12d, r12d
        xor r13d, r13d
        xor r14d, r14d
        xor r15d, r15d
        stgi
        pop rdi
        pop r15
        pop r14
        pop r13
        pop r12
        pop rbx
        pop rbp
        jmp __x86_return_thunk
    .endm

    .text
    // sevault_vmrun(args: *mut VmrunArgs): one world switch (thesis-notes/hypervisor.md,
    // "The world switch", compares each step with KVM's __svm_vcpu_run).
    .globl sevault_vmrun
    .type sevault_vmrun, @function
    // 16 bytes of NOPs before the entry, as rustc's -Zpatchable-function-entry=16,16 leaves
    // before every Rust function on kernels with CONFIG_CALL_PADDING (6.12): call-depth
    // tracking patches its thunk there and refuses a padding that is not NOPs. Harmless
    // where nothing uses it (6.1). Called only directly, so no ENDBR is needed under IBT.
    .p2align 4
    .skip 16, 0x90
    sevault_vmrun:
        sevault_enter
        // The host's vector state was saved by kernel_fpu_begin: the vault's goes in.
        fxrstor64 [rdi + {fx}]
        clgi
        mov rax, [rdi + {host_vmsave}]
        vmsave rax
        mov rax, [rdi + {vmcb}]
        vmload rax
        cmp qword ptr [rdi + {interrupts}], 0
        je 2f
        // GIF is 0: nothing is taken here; in the guest, an interrupt is an INTR exit.
        sti
    2:
        mov rcx, [rdi + {rcx}]
        mov rdx, [rdi + {rdx}]
        mov rbx, [rdi + {rbx}]
        mov rbp, [rdi + {rbp}]
        mov rsi, [rdi + {rsi}]
        mov r8, [rdi + {r8}]
        mov r9, [rdi + {r9}]
        mov r10, [rdi + {r10}]
        mov r11, [rdi + {r11}]
        mov r12, [rdi + {r12}]
        mov r13, [rdi + {r13}]
        mov r14, [rdi + {r14}]
        mov r15, [rdi + {r15}]
        mov rdi, [rdi + {rdi}]
        vmrun rax
        // #VMEXIT: GIF 0, RAX/RSP/RIP the host's, every other GPR still the vault's.
        cli
        mov rax, [rsp]
        mov [rax + {rcx}], rcx
        mov [rax + {rdx}], rdx
        mov [rax + {rbx}], rbx
        mov [rax + {rbp}], rbp
        mov [rax + {rsi}], rsi
        mov [rax + {rdi}], rdi
        mov [rax + {r8}], r8
        mov [rax + {r9}], r9
        mov [rax + {r10}], r10
        mov [rax + {r11}], r11
        mov [rax + {r12}], r12
        mov [rax + {r13}], r13
        mov [rax + {r14}], r14
        mov [rax + {r15}], r15
        fxsave64 [rax + {fx}]
        mov rdi, rax
        mov rax, [rdi + {vmcb}]
        vmsave rax
        mov rax, [rdi + {host_vmsave}]
        vmload rax
        sevault_exit_tail
    .size sevault_vmrun, . - sevault_vmrun

    // sevault_vmrun_es(args: *mut VmrunArgs): one SEV-ES world switch. The CPU itself
    // swaps every guest register through the (encrypted) VMSA and restores the host from
    // the host save area at #VMEXIT — RSP, RAX and the segment and control state VMRUN
    // saved there, FS/GS/TR/LDTR and the syscall MSRs from the VMSAVE below, XCR0/PKRU/XSS
    // as the HV wrote them (vmcb::HostSaveArea), the other GPRs from that area too (our
    // callee-saved ones come back from the stack, as in KVM 6.1's __svm_sev_es_vcpu_run).
    // So: no guest GPR or vector state, no VMLOAD/VMSAVE of the guest's VMCB.
    .globl sevault_vmrun_es
    .type sevault_vmrun_es, @function
    .p2align 4
    .skip 16, 0x90
    sevault_vmrun_es:
        sevault_enter
        clgi
        // host_vmsave_pa is the host save area itself (KVM: vmsave of
        // sd->save_area before an SEV-ES guest runs).
        mov rax, [rdi + {host_vmsave}]
        vmsave rax
        cmp qword ptr [rdi + {interrupts}], 0
        mov rax, [rdi + {vmcb}]
        je 3f
        sti
    3:
        vmrun rax
        cli
        sevault_exit_tail
    .size sevault_vmrun_es, . - sevault_vmrun_es
    "#,
    vmcb = const offset_of!(VmrunArgs, vmcb_pa),
    host_vmsave = const offset_of!(VmrunArgs, host_vmsave_pa),
    interrupts = const offset_of!(VmrunArgs, interrupts),
    fx = const offset_of!(VmrunArgs, regs) + offset_of!(GuestRegisters, fx),
    scrubbed = sym SCRUBBED_FX,
    rcx = const gpr(Gpr::Rcx),
    rdx = const gpr(Gpr::Rdx),
    rbx = const gpr(Gpr::Rbx),
    rbp = const gpr(Gpr::Rbp),
    rsi = const gpr(Gpr::Rsi),
    rdi = const gpr(Gpr::Rdi),
    r8 = const gpr(Gpr::R8),
    r9 = const gpr(Gpr::R9),
    r10 = const gpr(Gpr::R10),
    r11 = const gpr(Gpr::R11),
    r12 = const gpr(Gpr::R12),
    r13 = const gpr(Gpr::R13),
    r14 = const gpr(Gpr::R14),
    r15 = const gpr(Gpr::R15),
);

extern "C" {
    fn sevault_vmrun(args: *mut VmrunArgs);
    fn sevault_vmrun_es(args: *mut VmrunArgs);
}

/// What this CPU offers for flushing guest TLB entries.
pub fn tlb_caps() -> TlbCaps {
    let (max_ext, ..) = cpuid(0x8000_0000);
    let svm_edx = if max_ext >= 0x8000_000A { cpuid(0x8000_000A).3 } else { 0 };
    let ext_ebx = if max_ext >= 0x8000_0008 { cpuid(0x8000_0008).1 } else { 0 };
    TlbCaps::from_cpuid(svm_edx, ext_ebx)
}

/// One VMRUN of a TLB-flush VMCB (`Vmcb::build_tlb_flush`): the flush happens at VMRUN,
/// and the guest exits before its first instruction. It runs no guest code, so no guest
/// register, vector or VMLOAD state is switched: only CLGI, VMRUN, STGI.
///
/// # Safety
/// SVM is on ([`SvmOn`]), interrupts off; `vmcb_pa` is this CPU's flush VMCB.
pub unsafe fn flush_run(vmcb_pa: u64) {
    // SAFETY: the caller's contract; the guest executes nothing, so every register but RAX
    // (reloaded from the host save area at #VMEXIT with the value it had) is untouched.
    unsafe { asm!("clgi", "vmrun rax", "stgi", in("rax") vmcb_pa, options(nostack)) };
}

/// Runs the vCPU once, until its next #VMEXIT; the vault's registers go in from and come
/// back to `args.regs`.
///
/// # Safety
/// SVM is on ([`SvmOn`]), interrupts off, the FPU owned (`kernel_fpu_begin`); `args` name
/// this CPU's vCPU's VMCB and a VMSAVE page for the host; `args.interrupts` is nonzero only
/// if the caller's interrupt flag was set (the trampoline ends with IF clear either way).
pub unsafe fn vmrun(args: &mut VmrunArgs) {
    // SAFETY: the caller's contract is the trampoline's.
    unsafe { sevault_vmrun(args) }
}

/// Runs an SEV-ES vCPU once, until its next #VMEXIT (its registers never leave the VMSA).
///
/// # Safety
/// As [`vmrun`], and: the VMCB has SEV-ES on with a launched VMSA; `args.host_vmsave_pa` is
/// the host save area that VM_HSAVE_PA names, whose XCR0/PKRU/XSS fields hold this CPU's
/// current values (`vmcb::HostSaveArea::set_host_xstate`).
pub unsafe fn vmrun_es(args: &mut VmrunArgs) {
    // SAFETY: the caller's contract is the trampoline's.
    unsafe { sevault_vmrun_es(args) }
}

/// What this CPU's host keeps in XCR0 and IA32_XSS, and whether it has protection keys:
/// read once at load (the kernel does not change them after boot; PKRU is per task and is
/// read before every SEV-ES run).
#[derive(Clone, Copy, Debug, Default)]
pub struct HostXFeatures {
    /// XCR0 (1, x87 only, where the OS has not enabled XSAVE).
    pub xcr0: u64,
    /// IA32_XSS (0 without XSAVES).
    pub xss: u64,
    /// CR4.PKE (CPUID 7 ECX bit 4, OSPKE): RDPKRU works.
    pub pku: bool,
    /// TSC_AUX exists (RDTSCP, CPUID 0x8000_0001 EDX bit 27).
    pub tsc_aux: bool,
}

/// IA32_XSS.
const MSR_IA32_XSS: u32 = 0xDA0;

/// Reads [`HostXFeatures`] on this CPU.
pub fn host_xfeatures() -> HostXFeatures {
    let osxsave = cpuid(1).2 & (1 << 27) != 0;
    let xcr0 = if osxsave {
        let (lo, hi): (u32, u32);
        // SAFETY: XGETBV with ECX = 0 is defined when CR4.OSXSAVE is set (CPUID 1 ECX bit 27).
        unsafe { asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
        (u64::from(hi) << 32) | u64::from(lo)
    } else {
        1
    };
    let xsaves = osxsave && core::arch::x86_64::__cpuid_count(0xD, 1).eax & (1 << 3) != 0;
    // SAFETY: IA32_XSS exists where XSAVES does (CPUID 0xD.1 EAX bit 3).
    let xss = if xsaves { unsafe { rdmsr(MSR_IA32_XSS) } } else { 0 };
    let (max_leaf, ..) = cpuid(0);
    let pku = max_leaf >= 7 && core::arch::x86_64::__cpuid_count(7, 0).ecx & (1 << 4) != 0;
    let tsc_aux = cpuid(0x8000_0001).3 & (1 << 27) != 0;
    HostXFeatures { xcr0, xss, pku, tsc_aux }
}

/// TSC_AUX.
const MSR_TSC_AUX: u32 = 0xC000_0103;

/// This CPU's TSC_AUX (0 without it).
pub fn read_tsc_aux(features: &HostXFeatures) -> u32 {
    // SAFETY: TSC_AUX exists where RDTSCP does (`features.tsc_aux`); its upper half is
    // reserved (zero).
    if features.tsc_aux {
        unsafe { rdmsr(MSR_TSC_AUX) as u32 }
    } else {
        0
    }
}

/// The current PKRU (0 without protection keys).
pub fn read_pkru(features: &HostXFeatures) -> u32 {
    if !features.pku {
        return 0;
    }
    let (pkru, _edx): (u32, u32);
    // SAFETY: RDPKRU with ECX = 0 is defined when CR4.PKE is set (`features.pku`).
    unsafe { asm!("rdpkru", in("ecx") 0, out("eax") pkru, out("edx") _edx, options(nomem, nostack, preserves_flags)) };
    pkru
}
