//! SW_EXITCODE values of NAE events, and the VMCB exit codes a GHCB exit
//! arrives with.
//!
//! Values: GHCB spec table "List of Supported Non-Automatic Events" (the
//! SVM intercept codes of AMD APM Vol. 2, Appendix C, plus the SEV-ES
//! software-defined 0x8000_xxxx codes); cross-checked against Linux
//! `arch/x86/include/uapi/asm/svm.h`.

use core::fmt;

/// The VMCB EXITCODE of a VMGEXIT under SEV-ES: the Automatic Exit
/// `VMEXIT_VMGEXIT`. The event itself is then in the GHCB (or in the GHCB
/// MSR, for the MSR protocol).
pub const VMEXIT_VMGEXIT: u64 = 0x403;

/// The VMCB EXITCODE of an intercepted VMMCALL. Without SEV-ES (plain SVM,
/// e.g. QEMU TCG), `rep vmmcall` — VMGEXIT's encoding — exits with this code
/// instead of [`VMEXIT_VMGEXIT`]; the GHCB is read the same way.
pub const VMEXIT_VMMCALL: u64 = 0x81;

/// Whether a VMCB EXITCODE is one the hypervisor answers by reading the
/// GHCB (or GHCB MSR): [`VMEXIT_VMGEXIT`] or [`VMEXIT_VMMCALL`].
pub const fn is_ghcb_exit(vmcb_exit_code: u64) -> bool {
    matches!(vmcb_exit_code, VMEXIT_VMGEXIT | VMEXIT_VMMCALL)
}

/// The GHCB's SW_EXITCODE: which NAE event the guest asks for.
///
/// A newtype rather than an enum: the value comes from the other side, and
/// an unknown code must stay printable and rejectable.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct SwExitCode(pub u64);

impl SwExitCode {
    /// Read DR7 (intercept code).
    pub const DR7_READ: Self = Self(0x27);
    /// Write DR7 (intercept code).
    pub const DR7_WRITE: Self = Self(0x37);
    /// RDTSC (intercept code).
    pub const RDTSC: Self = Self(0x6E);
    /// RDPMC (intercept code).
    pub const RDPMC: Self = Self(0x6F);
    /// CPUID (intercept code).
    pub const CPUID: Self = Self(0x72);
    /// INVD (intercept code).
    pub const INVD: Self = Self(0x76);
    /// IN/OUT/INS/OUTS (intercept code).
    pub const IOIO: Self = Self(0x7B);
    /// RDMSR/WRMSR (intercept code).
    pub const MSR: Self = Self(0x7C);
    /// VMMCALL (intercept code): the hypercall event this project uses.
    pub const VMMCALL: Self = Self(0x81);
    /// RDTSCP (intercept code).
    pub const RDTSCP: Self = Self(0x87);
    /// WBINVD (intercept code).
    pub const WBINVD: Self = Self(0x89);
    /// MONITOR (intercept code).
    pub const MONITOR: Self = Self(0x8A);
    /// MWAIT (intercept code).
    pub const MWAIT: Self = Self(0x8B);
    /// MMIO read (SEV-ES, VMGEXIT only).
    pub const MMIO_READ: Self = Self(0x8000_0001);
    /// MMIO write (SEV-ES, VMGEXIT only).
    pub const MMIO_WRITE: Self = Self(0x8000_0002);
    /// NMI complete (SEV-ES, VMGEXIT only).
    pub const NMI_COMPLETE: Self = Self(0x8000_0003);
    /// AP reset hold (SEV-ES, VMGEXIT only).
    pub const AP_RESET_HOLD: Self = Self(0x8000_0004);
    /// AP jump table (SEV-ES, VMGEXIT only).
    pub const AP_JUMP_TABLE: Self = Self(0x8000_0005);
    /// Hypervisor feature request (GHCB v2, VMGEXIT only).
    pub const HV_FEATURES: Self = Self(0x8000_FFFD);
    /// Termination request (GHCB v2, VMGEXIT only).
    pub const TERMINATION_REQUEST: Self = Self(0x8000_FFFE);
    /// Unsupported event: what a guest reports for an event it cannot
    /// handle (SEV-ES, VMGEXIT only).
    pub const UNSUPPORTED_EVENT: Self = Self(0x8000_FFFF);

    /// The spec name of a known code.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x27 => "DR7_READ",
            0x37 => "DR7_WRITE",
            0x6E => "RDTSC",
            0x6F => "RDPMC",
            0x72 => "CPUID",
            0x76 => "INVD",
            0x7B => "IOIO",
            0x7C => "MSR",
            0x81 => "VMMCALL",
            0x87 => "RDTSCP",
            0x89 => "WBINVD",
            0x8A => "MONITOR",
            0x8B => "MWAIT",
            0x8000_0001 => "MMIO_READ",
            0x8000_0002 => "MMIO_WRITE",
            0x8000_0003 => "NMI_COMPLETE",
            0x8000_0004 => "AP_RESET_HOLD",
            0x8000_0005 => "AP_JUMP_TABLE",
            0x8000_FFFD => "HV_FEATURES",
            0x8000_FFFE => "TERMINATION_REQUEST",
            0x8000_FFFF => "UNSUPPORTED_EVENT",
            _ => return None,
        })
    }
}

impl From<u64> for SwExitCode {
    fn from(code: u64) -> Self {
        Self(code)
    }
}

impl From<SwExitCode> for u64 {
    fn from(code: SwExitCode) -> Self {
        code.0
    }
}

impl fmt::Display for SwExitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({:#x})", self.0),
            None => write!(f, "unknown ({:#x})", self.0),
        }
    }
}

impl fmt::Debug for SwExitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SwExitCode({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_codes_have_spec_values() {
        assert_eq!(SwExitCode::VMMCALL.0, 0x81);
        assert_eq!(SwExitCode::CPUID.0, 0x72);
        assert_eq!(SwExitCode::IOIO.0, 0x7B);
        assert_eq!(SwExitCode::MSR.0, 0x7C);
        assert_eq!(SwExitCode::AP_JUMP_TABLE.0, 0x8000_0005);
        assert_eq!(SwExitCode::TERMINATION_REQUEST.0, 0x8000_FFFE);
        assert_eq!(SwExitCode::UNSUPPORTED_EVENT.0, 0x8000_FFFF);
    }

    #[test]
    fn vmcb_exit_codes_are_distinct_from_each_other() {
        assert_eq!(VMEXIT_VMGEXIT, 0x403);
        assert_eq!(VMEXIT_VMMCALL, SwExitCode::VMMCALL.0);
        assert!(is_ghcb_exit(VMEXIT_VMGEXIT));
        assert!(is_ghcb_exit(VMEXIT_VMMCALL));
        assert!(!is_ghcb_exit(0x72));
    }

    #[test]
    fn display_names_known_codes_and_prints_unknown_ones() {
        assert_eq!(SwExitCode::VMMCALL.to_string(), "VMMCALL (0x81)");
        assert_eq!(SwExitCode(0xdead).to_string(), "unknown (0xdead)");
        assert_eq!(format!("{:?}", SwExitCode(0x72)), "SwExitCode(CPUID (0x72))");
    }
}
