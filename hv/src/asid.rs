//! How the vault shares the TLB with KVM: both tag guest translations with ASIDs, and KVM
//! hands out ASIDs from 1 up on every CPU without knowing the vault's (AMD APM Vol. 2
//! §15.16: the TLB is tagged by ASID; host flushes — MOV CR3, INVLPG, CR4.PGE — reach only
//! ASID 0; only VMRUN's TLB_CONTROL, INVLPGA and INVLPGB reach a guest ASID).
//!
//! Two directions (thesis-notes/hypervisor.md, "Sharing the CPU with kvm_amd"):
//! - *into the vault*: a KVM guest that ran with the vault's ASID may have left entries;
//!   the first VMRUN of every vault request flushes the vault's ASID (or everything, where
//!   the CPU cannot flush by ASID). Re-entries within one request flush nothing: between
//!   them only the host ran, preemption off, so no other guest used the ASID.
//! - *out of the vault*: its entries map key slots, stacks and the request's pages; a KVM
//!   guest given the same ASID on this CPU must not find them. While kvm_amd is loaded,
//!   every request ends with a flush of the vault's ASID: INVLPGB where the CPU has it,
//!   else a VMRUN that flushes on entry and exits before its first instruction.
use crate::vmcb::{TLB_DO_NOTHING, TLB_FLUSH_ALL, TLB_FLUSH_ASID};

/// What the CPU offers for flushing guest TLB entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlbCaps {
    /// TLB_CONTROL 3 (flush this ASID): CPUID 8000_000A EDX bit 6 (FlushByAsid).
    pub flush_by_asid: bool,
    /// INVLPGB/TLBSYNC: CPUID 8000_0008 EBX bit 3.
    pub invlpgb: bool,
}

impl TlbCaps {
    /// From CPUID 8000_000A EDX and 8000_0008 EBX.
    pub const fn from_cpuid(svm_edx: u32, ext_ebx: u32) -> Self {
        Self { flush_by_asid: svm_edx & (1 << 6) != 0, invlpgb: ext_ebx & (1 << 3) != 0 }
    }

    /// TLB_CONTROL for a flush of the vault's own ASID: by ASID where the CPU can.
    pub const fn asid_flush(self) -> u8 {
        if self.flush_by_asid {
            TLB_FLUSH_ASID
        } else {
            TLB_FLUSH_ALL
        }
    }

    /// TLB_CONTROL of a vault VMRUN: a flush on the first run of a request, none on the
    /// re-entries after host events.
    pub const fn on_entry(self, first_run_of_request: bool) -> u8 {
        if first_run_of_request {
            self.asid_flush()
        } else {
            TLB_DO_NOTHING
        }
    }

    /// What ends a request so that nothing of the vault stays in the TLB for KVM.
    pub const fn after_request(self, kvm_amd_loaded: bool) -> AfterRequest {
        match (kvm_amd_loaded, self.invlpgb) {
            (false, _) => AfterRequest::Nothing,
            (true, true) => AfterRequest::Invlpgb,
            (true, false) => AfterRequest::FlushRun { tlb_control: self.asid_flush() },
        }
    }
}

/// The flush after a vault request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterRequest {
    /// No other hypervisor can run a guest with the vault's ASID.
    Nothing,
    /// INVLPGB of every address of the vault's ASID, then TLBSYNC.
    Invlpgb,
    /// A VMRUN of the vCPU's flush VMCB with this TLB_CONTROL.
    FlushRun {
        /// 3 (this ASID) or 1 (everything).
        tlb_control: u8,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuid_bits() {
        // AMD APM Vol. 3, Appendix E.4.10 (8000_000A EDX[6] FlushByAsid) and E.4.7
        // (8000_0008 EBX[3] INVLPGB).
        assert_eq!(TlbCaps::from_cpuid(1 << 6, 0), TlbCaps { flush_by_asid: true, invlpgb: false });
        assert_eq!(TlbCaps::from_cpuid(0, 1 << 3), TlbCaps { flush_by_asid: false, invlpgb: true });
        assert_eq!(TlbCaps::from_cpuid(!(1 << 6), !(1 << 3)), TlbCaps::default(), "other bits do not count");
    }

    #[test]
    fn entry_flushes_once_per_request() {
        // TLB_CONTROL values from AMD APM Vol. 2, Table B-1 (offset 0x05C): 0 nothing,
        // 1 everything, 3 this guest's ASID.
        let by_asid = TlbCaps { flush_by_asid: true, invlpgb: false };
        let old = TlbCaps::default();
        assert_eq!(by_asid.on_entry(true), 3);
        assert_eq!(old.on_entry(true), 1);
        assert_eq!(by_asid.on_entry(false), 0);
        assert_eq!(old.on_entry(false), 0);
    }

    #[test]
    fn requests_end_with_a_flush_only_beside_kvm() {
        let all = TlbCaps { flush_by_asid: true, invlpgb: true };
        let by_asid = TlbCaps { flush_by_asid: true, invlpgb: false };
        let old = TlbCaps::default();
        for caps in [all, by_asid, old] {
            assert_eq!(caps.after_request(false), AfterRequest::Nothing);
        }
        assert_eq!(all.after_request(true), AfterRequest::Invlpgb);
        assert_eq!(by_asid.after_request(true), AfterRequest::FlushRun { tlb_control: 3 });
        assert_eq!(old.after_request(true), AfterRequest::FlushRun { tlb_control: 1 });
    }
}
