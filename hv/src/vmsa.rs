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

use crate::vmcb::StateSave;
use sevault_abi::memory_map::VcpuIndex;

/// One VMSA page.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(4096))]
pub struct Vmsa {
    /// The state shared with the VMCB save area (same offsets, same builder).
    pub state: StateSave,
    /// PKRU, GPRs, exit information, reserved.
    pub reserved_0x298: [u8; 0x118],
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
    assert!(offset_of!(Vmsa, state) == 0x000);
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
    /// The initial state of vault vCPU `vcpu` ([`StateSave::initial`], as the VMCB's), plus
    /// what only a VMSA carries: XCR0 (x87), the reset MXCSR and FPU control word, and
    /// `sev_features`.
    pub fn initial(vcpu: VcpuIndex, sev_features: u64) -> Self {
        // SAFETY: integers and arrays of integers only: all-zero is valid.
        let mut v: Self = unsafe { core::mem::zeroed() };
        v.state = StateSave::initial(vcpu);
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
    /// VMSA an SEV-ES launch would measure hold the same bytes where their layouts agree,
    /// and the values `sevault_abi::vcpu_state` defines.
    #[test]
    fn vmsa_and_vmcb_agree_field_by_field() {
        for index in [0, 1, 511] {
            let vcpu = VcpuIndex::new(index).unwrap();
            let mut vmcb = Box::new(Vmcb::zeroed());
            vmcb.build_vault(&VmcbConfig { vcpu, asid: 1, n_cr3: 0, iopm_pa: 0, msrpm_pa: 0 });
            let vmsa = Vmsa::initial(vcpu, 0);
            // SAFETY: `Vmcb` is plain data of 4096 bytes.
            let vmcb_bytes: &[u8; 4096] = unsafe { &*(core::ptr::from_ref(&*vmcb).cast()) };
            let shared = core::mem::size_of::<StateSave>();
            assert_eq!(&vmcb_bytes[0x400..0x400 + shared], &vmsa.as_bytes()[..shared], "vCPU {index}");
            let state = sevault_abi::vcpu_state::initial(vcpu);
            let v = &vmsa.state;
            assert_eq!((v.cr0, v.cr3, v.cr4, v.efer), (state.cr0, state.cr3, state.cr4, state.efer));
            assert_eq!((v.rip, v.rsp, v.rflags, v.g_pat), (state.rip, state.rsp, state.rflags, state.g_pat));
            assert_eq!((v.cs.attrib, v.ss.attrib, v.tr.attrib), (state.cs.attrib, state.data.attrib, state.tr.attrib));
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
