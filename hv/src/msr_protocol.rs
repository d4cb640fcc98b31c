//! SEV-ES: what the HV answers when the vault exits with VMGEXIT (0x403) and the GHCB MSR
//! (copied by the CPU into the VMCB's GHCB GPA field) holds an MSR-protocol request rather
//! than its GHCB's address (GHCB spec §2.3.1, "GHCB MSR Protocol").
//!
//! Only used on the SEV-ES path, which cannot run on these machines: host-tested here,
//! unverified on hardware.
use sevault_abi::memory_map::VcpuIndex;
use sevault_ghcb::msr::{GhcbGpaRegistration, HvFeatures, MsrRequest, MsrResponse, SevInfo};

/// The only GHCB protocol version the HV speaks.
pub const GHCB_VERSION: u16 = 2;

/// What to do with a VMGEXIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrAction {
    /// The MSR names this vCPU's GHCB: the event is in the GHCB page.
    ReadGhcb,
    /// Answer by writing this value to the VMCB's GHCB GPA field and resume.
    Respond(u64),
    /// The vault asks to be terminated: a fault.
    Terminate,
    /// Anything malformed or unexpected (another page as GHCB, unknown request): a fault.
    Fault,
}

/// Decides on a VMGEXIT of `vcpu` with GHCB MSR value `msr`, for a launch with `c_bit`.
pub fn on_vmgexit(msr: u64, vcpu: VcpuIndex, c_bit: u8) -> MsrAction {
    let own_ghcb = |gpa: u64| gpa == vcpu.ghcb_gpa();
    match MsrRequest::try_from(msr) {
        Ok(MsrRequest::GhcbPage(gfn)) if own_ghcb(gfn.gpa()) => MsrAction::ReadGhcb,
        Ok(MsrRequest::SevInfo) => match SevInfo::new(GHCB_VERSION, GHCB_VERSION, c_bit) {
            Ok(info) => MsrAction::Respond(MsrResponse::SevInfo(info).encode()),
            Err(_) => MsrAction::Fault,
        },
        Ok(MsrRequest::RegisterGhcbGpa(gfn)) => {
            let outcome =
                if own_ghcb(gfn.gpa()) { GhcbGpaRegistration::Registered(gfn) } else { GhcbGpaRegistration::Refused };
            MsrAction::Respond(MsrResponse::RegisterGhcbGpa(outcome).encode())
        }
        Ok(MsrRequest::HvFeatures) => match HvFeatures::new(0) {
            Some(features) => MsrAction::Respond(MsrResponse::HvFeatures(features).encode()),
            None => MsrAction::Fault,
        },
        Ok(MsrRequest::Terminate(_)) => MsrAction::Terminate,
        Ok(MsrRequest::GhcbPage(_)) | Err(_) => MsrAction::Fault,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sevault_ghcb::msr::{Gfn, TerminationReason};

    #[test]
    fn answers() {
        let v = VcpuIndex::new(3).unwrap();
        let own = Gfn::from_gpa(v.ghcb_gpa()).unwrap();
        let other = Gfn::from_gpa(VcpuIndex::new(4).unwrap().ghcb_gpa()).unwrap();
        assert_eq!(on_vmgexit(MsrRequest::GhcbPage(own).encode(), v, 51), MsrAction::ReadGhcb);
        assert_eq!(on_vmgexit(MsrRequest::GhcbPage(other).encode(), v, 51), MsrAction::Fault, "another vCPU's GHCB");
        let MsrAction::Respond(info) = on_vmgexit(MsrRequest::SevInfo.encode(), v, 51) else { panic!() };
        let Ok(MsrResponse::SevInfo(info)) = MsrResponse::try_from(info) else { panic!() };
        assert_eq!((info.min_version(), info.max_version(), info.c_bit_position()), (2, 2, 51));
        let MsrAction::Respond(reg) = on_vmgexit(MsrRequest::RegisterGhcbGpa(own).encode(), v, 51) else { panic!() };
        assert_eq!(MsrResponse::try_from(reg), Ok(MsrResponse::RegisterGhcbGpa(GhcbGpaRegistration::Registered(own))));
        let MsrAction::Respond(reg) = on_vmgexit(MsrRequest::RegisterGhcbGpa(other).encode(), v, 51) else { panic!() };
        assert_eq!(MsrResponse::try_from(reg), Ok(MsrResponse::RegisterGhcbGpa(GhcbGpaRegistration::Refused)));
        assert!(matches!(on_vmgexit(MsrRequest::HvFeatures.encode(), v, 51), MsrAction::Respond(_)));
        let reason = TerminationReason::new(0, 1).unwrap();
        assert_eq!(on_vmgexit(MsrRequest::Terminate(reason).encode(), v, 51), MsrAction::Terminate);
        assert_eq!(on_vmgexit(0xFFF, v, 51), MsrAction::Fault, "unknown GHCBInfo");
    }
}
