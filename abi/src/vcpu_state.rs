//! The state every vault vCPU starts in, set by the HV (VMCB save area on plain SVM; the
//! VMSA, measured at launch, under SEV-ES).
//!
//! 64-bit mode straight away: no real-mode boot code, no GDT and no IDT (the hidden segment
//! state is loaded from the VMCB/VMSA; the vault handles no interrupt or exception — any
//! fault is a triple fault, i.e. a SHUTDOWN exit). Paging on with the HV-built tables at
//! `PAGE_TABLES_BASE`. SSE enabled (CR4.OSFXSR/OSXMMEXCPT), or AES-NI raises #UD. Interrupts
//! off (RFLAGS.IF = 0). RIP = `IMAGE_BASE` (`_start`), RSP = the vCPU's stack top: the only
//! register that differs between vCPUs.
use crate::memory_map::{VcpuIndex, IMAGE_BASE, PAGE_TABLES_BASE};

/// Hidden state of one segment register, in the VMCB's format (AMD APM Vol. 2 §15.5.1,
/// Appendix B "VMCB State Save Area": selector, attributes, limit, base).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Selector.
    pub selector: u16,
    /// Attributes in the VMCB's packed form (descriptor bits 40–47 and 52–55).
    pub attrib: u16,
    /// Limit.
    pub limit: u32,
    /// Base.
    pub base: u64,
}

/// 64-bit code: present, DPL 0, code execute/read accessed, L = 1, G = 1.
pub const CODE64: Segment = Segment { selector: 0x08, attrib: 0x0A9B, limit: 0xFFFF_FFFF, base: 0 };
/// Flat data: present, DPL 0, read/write accessed, D/B = 1, G = 1.
pub const DATA: Segment = Segment { selector: 0x10, attrib: 0x0C93, limit: 0xFFFF_FFFF, base: 0 };
/// A busy 64-bit TSS (VMRUN's consistency checks want a valid TR; the vault never uses it).
pub const TSS: Segment = Segment { selector: 0x18, attrib: 0x008B, limit: 0x67, base: 0 };
/// Unused (null) segment: LDTR and the null selectors.
pub const NULL: Segment = Segment { selector: 0, attrib: 0, limit: 0, base: 0 };

/// CR0: PE | MP | ET | NE | WP | PG.
pub const CR0: u64 = 0x8001_0033;
/// CR4: PAE | OSFXSR | OSXMMEXCPT.
pub const CR4: u64 = 0x620;
/// EFER: LME | LMA | NXE | SVME (VMRUN requires SVME set in the guest's EFER).
pub const EFER: u64 = 0x1D00;
/// RFLAGS: only the always-one bit 1; IF clear.
pub const RFLAGS: u64 = 0x2;
/// DR7: its reset value (no breakpoints).
pub const DR7: u64 = 0x400;
/// DR6: its reset value.
pub const DR6: u64 = 0xFFFF_0FF0;
/// PAT: the architectural power-on default (write-back everywhere the tables say WB).
pub const PAT: u64 = 0x0007_0406_0007_0406;

/// The initial register state of one vault vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuState {
    /// CS.
    pub cs: Segment,
    /// DS, ES, SS, FS, GS (all the same flat data segment).
    pub data: Segment,
    /// TR.
    pub tr: Segment,
    /// LDTR.
    pub ldtr: Segment,
    /// CR0.
    pub cr0: u64,
    /// CR3: the PML4 the HV built.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// RIP: `_start`.
    pub rip: u64,
    /// RSP: top of this vCPU's stack.
    pub rsp: u64,
    /// PAT.
    pub g_pat: u64,
}

/// The state vCPU `vcpu` starts in.
pub const fn initial(vcpu: VcpuIndex) -> VcpuState {
    VcpuState {
        cs: CODE64,
        data: DATA,
        tr: TSS,
        ldtr: NULL,
        cr0: CR0,
        cr3: PAGE_TABLES_BASE,
        cr4: CR4,
        efer: EFER,
        rflags: RFLAGS,
        rip: IMAGE_BASE,
        rsp: vcpu.stack_top(),
        g_pat: PAT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rsp_differs_between_vcpus() {
        let a = initial(VcpuIndex::new(0).unwrap());
        let b = initial(VcpuIndex::new(5).unwrap());
        assert_ne!(a.rsp, b.rsp);
        assert_eq!(VcpuState { rsp: 0, ..a }, VcpuState { rsp: 0, ..b });
        assert_eq!(VcpuIndex::from_stack_top(b.rsp), VcpuIndex::new(5));
    }

    #[test]
    fn long_mode_bits() {
        assert_eq!(CR0 & (1 << 31 | 1), 1 << 31 | 1, "PG and PE");
        assert_ne!(CR4 & (1 << 9), 0, "OSFXSR, or AES-NI raises #UD");
        assert_eq!(EFER & (1 << 8 | 1 << 10 | 1 << 12), 1 << 8 | 1 << 10 | 1 << 12, "LME, LMA, SVME");
        assert_eq!(CODE64.attrib & (1 << 9), 1 << 9, "CS.L");
        assert_eq!(RFLAGS & (1 << 9), 0, "interrupts off");
    }
}
