//! SEV-ES: what the HV does when the vault exits with VMGEXIT (0x403): the GHCB MSR, which
//! the CPU copies into the VMCB's GHCB GPA field, must name the vCPU's own GHCB (GHCB spec
//! §2.3.1, "GHCB MSR Protocol"; §2.3.2, "GHCB Page").
//!
//! The HV answers no MSR-protocol request. The vault never makes one: it never writes its
//! GHCB MSR (its image holds no WRMSR, which `cargo xtask test`'s #VC check of the image
//! enforces), so the MSR keeps the GHCB GPA the HV starts each vCPU with. An answer would
//! also have to stay in that MSR (the CPU loads the guest's MSR from the VMCB field at
//! VMRUN, and only the guest can write it back), so the vault's next VMGEXIT would arrive
//! without its GHCB named — KVM leaves that to the guest, which re-writes the MSR before
//! every GHCB use (Linux's `sev_es_wr_ghcb_msr`). A request is therefore a fault, as is
//! another page named as GHCB; a termination request ends the vault.
//!
//! Only used on the SEV-ES path, which cannot run on these machines: host-tested here,
//! unverified on hardware.
use sevault_abi::memory_map::VcpuIndex;
use sevault_ghcb::msr::MsrRequest;

/// What to do with a VMGEXIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrAction {
    /// The MSR names this vCPU's GHCB: the event is in the GHCB page.
    ReadGhcb,
    /// The vault asks to be terminated: a fault.
    Terminate,
    /// Anything else (another page as GHCB, any MSR-protocol request, garbage): a fault.
    Fault,
}

/// Decides on a VMGEXIT of `vcpu` with GHCB MSR value `msr`.
pub fn on_vmgexit(msr: u64, vcpu: VcpuIndex) -> MsrAction {
    match MsrRequest::try_from(msr) {
        Ok(MsrRequest::GhcbPage(gfn)) if gfn.gpa() == vcpu.ghcb_gpa() => MsrAction::ReadGhcb,
        Ok(MsrRequest::Terminate(_)) => MsrAction::Terminate,
        Ok(_) | Err(_) => MsrAction::Fault,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sevault_ghcb::msr::{Gfn, TerminationReason};

    /// GHCB spec §2.3.1, Table 2 ("GHCB MSR Protocol"): GHCBInfo in bits 11:0 — 0x000 the
    /// GHCB page's GPA, 0x002 SEV information request, 0x012 register GHCB GPA request,
    /// 0x080 hypervisor feature support request, 0x100 termination request (reason set in
    /// bits 15:12, code in bits 23:16).
    #[test]
    fn only_the_own_ghcb_or_a_termination() {
        let v = VcpuIndex::new(3).unwrap();
        let own = v.ghcb_gpa();
        let other = VcpuIndex::new(4).unwrap().ghcb_gpa();
        assert_eq!(on_vmgexit(own, v), MsrAction::ReadGhcb, "GHCBInfo 0: the GHCB's GPA");
        assert_eq!(on_vmgexit(other, v), MsrAction::Fault, "another vCPU's GHCB");
        assert_eq!(on_vmgexit(0x002, v), MsrAction::Fault, "SEV information request: never answered");
        assert_eq!(on_vmgexit((own & !0xFFF) | 0x012, v), MsrAction::Fault, "register GHCB GPA request");
        assert_eq!(on_vmgexit(0x080, v), MsrAction::Fault, "hypervisor features request");
        assert_eq!(on_vmgexit(0x100 | (1 << 16), v), MsrAction::Terminate, "termination, set 0 reason 1");
        assert_eq!(on_vmgexit(0xFFF, v), MsrAction::Fault, "unknown GHCBInfo");
        // The crate's encoders agree with the table's numbers.
        assert_eq!(MsrRequest::GhcbPage(Gfn::from_gpa(own).unwrap()).encode(), own);
        assert_eq!(MsrRequest::Terminate(TerminationReason::new(0, 1).unwrap()).encode(), 0x100 | (1 << 16));
    }
}
