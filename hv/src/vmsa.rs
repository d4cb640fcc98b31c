//! The SEV-ES VMSA: the vault vCPU's initial register state as the PSP measures and encrypts
//! it (AMD APM Vol. 2, Table B-4 "VMSA Layout, State Save Area for SEV-ES"; SNP adds
//! `sev_features`).
//!
//! It is built from the same `sevault_abi::vcpu_state::initial` as the VMCB save area
//! (`vmcb::Vmcb::reset_state`), so the two cannot drift; a test compares them field by field.
//! The virtee `sev` crate's `Vmsa` has private fields and setters only for the OVMF/QEMU
//! reset state, so it cannot express this state: this is our own layout, checked against
//! the APM offsets (and, in `sev-launch`, against the `sev` type's size).
use core::mem::{offset_of, size_of};

use sevault_abi::memory_map::VcpuIndex;
use sevault_abi::vcpu_state;

use crate::vmcb::Segment;

/// One VMSA page.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(4096))]
pub struct Vmsa {
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
    /// VMPL0–3 SSP, U_CET, reserved.
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
    /// XSS.
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
    /// DR0–3, address masks, reserved.
    pub reserved_0x180: [u8; 0x58],
    /// RSP.
    pub rsp: u64,
    /// S_CET, SSP, ISST_ADDR.
    pub reserved_0x1e0: [u8; 0x18],
    /// RAX.
    pub rax: u64,
    /// STAR … CR2, reserved.
    pub reserved_0x200: [u8; 0x68],
    /// Guest PAT.
    pub g_pat: u64,
    /// DBGCTL … PKRU, GPRs, exit info, reserved.
    pub reserved_0x270: [u8; 0x140],
    /// SEV features (SNP: bit 0 SNPActive, …).
    pub sev_features: u64,
    /// Reserved.
    pub reserved_0x3b8: [u8; 0x30],
    /// XCR0.
    pub xcr0: u64,
    /// Reserved.
    pub reserved_0x3f0: [u8; 0x18],
    /// MXCSR.
    pub mxcsr: u32,
    /// x87 tag word.
    pub x87_ftw: u16,
    /// x87 status word.
    pub x87_fsw: u16,
    /// x87 control word.
    pub x87_fcw: u16,
    /// The rest of the FPU state and the page.
    pub reserved_0x412: [u8; 0x1000 - 0x412],
}

const _: () = {
    assert!(size_of::<Vmsa>() == 4096);
    assert!(offset_of!(Vmsa, tr) == 0x090);
    assert!(offset_of!(Vmsa, vmpl) == 0x0CA);
    assert!(offset_of!(Vmsa, cpl) == 0x0CB);
    assert!(offset_of!(Vmsa, efer) == 0x0D0);
    assert!(offset_of!(Vmsa, xss) == 0x140);
    assert!(offset_of!(Vmsa, cr4) == 0x148);
    assert!(offset_of!(Vmsa, cr3) == 0x150);
    assert!(offset_of!(Vmsa, cr0) == 0x158);
    assert!(offset_of!(Vmsa, dr7) == 0x160);
    assert!(offset_of!(Vmsa, dr6) == 0x168);
    assert!(offset_of!(Vmsa, rflags) == 0x170);
    assert!(offset_of!(Vmsa, rip) == 0x178);
    assert!(offset_of!(Vmsa, rsp) == 0x1D8);
    assert!(offset_of!(Vmsa, rax) == 0x1F8);
    assert!(offset_of!(Vmsa, g_pat) == 0x268);
    assert!(offset_of!(Vmsa, sev_features) == 0x3B0);
    assert!(offset_of!(Vmsa, xcr0) == 0x3E8);
    assert!(offset_of!(Vmsa, mxcsr) == 0x408);
    assert!(offset_of!(Vmsa, x87_ftw) == 0x40C);
    assert!(offset_of!(Vmsa, x87_fsw) == 0x40E);
    assert!(offset_of!(Vmsa, x87_fcw) == 0x410);
};

/// SEV_FEATURES bit 0: SNP active (AMD APM Vol. 2, Table 15-35).
pub const SEV_FEATURE_SNP_ACTIVE: u64 = 1 << 0;

impl Vmsa {
    /// An all-zero VMSA.
    pub const fn zeroed() -> Self {
        // SAFETY: integers and arrays of integers only: all-zero is valid.
        unsafe { core::mem::zeroed() }
    }

    /// The initial state of vault vCPU `vcpu`, from `sevault_abi::vcpu_state::initial`,
    /// plus what only a VMSA carries: XCR0 (x87), the reset MXCSR and FPU control word,
    /// and `sev_features`.
    pub fn initial(vcpu: VcpuIndex, sev_features: u64) -> Self {
        let state = vcpu_state::initial(vcpu);
        let mut v = Self::zeroed();
        v.cs = state.cs.into();
        v.ds = state.data.into();
        v.es = state.data.into();
        v.ss = state.data.into();
        v.fs = state.data.into();
        v.gs = state.data.into();
        v.tr = state.tr.into();
        v.ldtr = state.ldtr.into();
        v.cpl = 0;
        v.efer = state.efer;
        v.cr0 = state.cr0;
        v.cr3 = state.cr3;
        v.cr4 = state.cr4;
        v.dr7 = vcpu_state::DR7;
        v.dr6 = vcpu_state::DR6;
        v.rflags = state.rflags;
        v.rip = state.rip;
        v.rsp = state.rsp;
        v.g_pat = state.g_pat;
        v.xcr0 = 1;
        v.mxcsr = 0x1F80;
        v.x87_fcw = 0x037F;
        v.sev_features = sev_features;
        v
    }

    /// The page's bytes (what the PSP measures).
    pub fn as_bytes(&self) -> &[u8; 4096] {
        // SAFETY: `Vmsa` is 4096 bytes of plain data (asserted), aligned for u8.
        unsafe { &*core::ptr::from_ref(self).cast() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmcb::{Vmcb, VmcbConfig};

    /// One source of truth: the VMCB save area the HV runs plain-SVM vCPUs with and the
    /// VMSA an SEV-ES launch would measure agree on every field both have.
    #[test]
    fn vmsa_and_vmcb_agree_field_by_field() {
        for index in [0, 1, 511] {
            let vcpu = VcpuIndex::new(index).unwrap();
            let mut vmcb = Box::new(Vmcb::zeroed());
            vmcb.build_vault(&VmcbConfig { vcpu, asid: 1, n_cr3: 0, iopm_pa: 0, msrpm_pa: 0 });
            let s = &vmcb.save;
            let v = Vmsa::initial(vcpu, 0);
            let segments = [
                (s.es, v.es),
                (s.cs, v.cs),
                (s.ss, v.ss),
                (s.ds, v.ds),
                (s.fs, v.fs),
                (s.gs, v.gs),
                (s.gdtr, v.gdtr),
                (s.ldtr, v.ldtr),
                (s.idtr, v.idtr),
                (s.tr, v.tr),
            ];
            for (i, (a, b)) in segments.iter().enumerate() {
                assert_eq!(a, b, "segment {i}");
            }
            let pairs = [
                ("cpl", u64::from(s.cpl), u64::from(v.cpl)),
                ("efer", s.efer, v.efer),
                ("cr0", s.cr0, v.cr0),
                ("cr3", s.cr3, v.cr3),
                ("cr4", s.cr4, v.cr4),
                ("dr6", s.dr6, v.dr6),
                ("dr7", s.dr7, v.dr7),
                ("rflags", s.rflags, v.rflags),
                ("rip", s.rip, v.rip),
                ("rsp", s.rsp, v.rsp),
                ("rax", s.rax, v.rax),
                ("g_pat", s.g_pat, v.g_pat),
            ];
            for (name, vmcb_value, vmsa_value) in pairs {
                assert_eq!(vmcb_value, vmsa_value, "{name} of vCPU {index}");
            }
        }
    }

    #[test]
    fn bytes_at_apm_offsets() {
        let vcpu = VcpuIndex::new(2).unwrap();
        let v = Vmsa::initial(vcpu, SEV_FEATURE_SNP_ACTIVE);
        let b = v.as_bytes();
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        assert_eq!(u64_at(0x178), sevault_abi::memory_map::IMAGE_BASE, "RIP");
        assert_eq!(u64_at(0x1D8), vcpu.stack_top(), "RSP");
        assert_eq!(u64_at(0x3B0), 1, "SEV_FEATURES");
        assert_eq!(u64_at(0x3E8), 1, "XCR0");
        assert_eq!(u32::from_le_bytes(b[0x408..0x40C].try_into().unwrap()), 0x1F80, "MXCSR");
    }
}
