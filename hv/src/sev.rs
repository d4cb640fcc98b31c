//! The SEV side of the vault's launch: which mode was asked for, whether this CPU can give
//! it, and which ASID the vault takes (AMD APM Vol. 2 §15.34, CPUID 0x8000_001F).
//!
//! What runs here on plain SVM is the decision; the launch (`crate::launch`, PSP commands
//! through the ccp driver) has never met an EPYC.

/// `sev=` of the module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SevMode {
    /// Plain SVM.
    Off,
    /// SEV: memory encrypted.
    Sev,
    /// SEV-ES: memory and register state encrypted; exits only through VMGEXIT.
    SevEs,
}

impl SevMode {
    /// From the glue's number (0 off, 1 sev, 2 es).
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::Off),
            1 => Some(Self::Sev),
            2 => Some(Self::SevEs),
            _ => None,
        }
    }

    /// As the user writes it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Sev => "sev",
            Self::SevEs => "es",
        }
    }
}

/// CPUID 0x8000_001F as far as the decision needs it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SevCpu {
    /// EAX bit 1.
    pub sev: bool,
    /// EAX bit 3.
    pub sev_es: bool,
    /// EBX[5:0].
    pub c_bit: u32,
    /// ECX: highest SEV ASID.
    pub max_asid: u32,
    /// EDX: lowest SEV (non-ES) ASID; SEV-ES guests use 1 .. EDX-1.
    pub min_sev_asid: u32,
    /// LBR virtualization (CPUID 0x8000_000A EDX bit 1), which SEV-ES requires.
    pub lbr_virt: bool,
}

/// What the vault would launch with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SevPlan {
    /// The vault's ASID: the highest of its kind, since kvm_amd hands out the lowest free
    /// ones first (a convention, not a guarantee: see thesis-notes/sev-plan.md).
    pub asid: u32,
    /// C-bit position for the vault's private page-table entries.
    pub c_bit: u32,
}

/// Why the vault cannot be launched as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SevRefusal {
    /// CPUID 0x8000_001F EAX bit 1 clear (no SEV, or disabled by the firmware).
    NoSev,
    /// EAX bit 3 clear.
    NoSevEs,
    /// The firmware left no ASID of the kind needed (BIOS SEV-ES ASID split).
    NoAsid,
    /// The C-bit position is not one page tables can carry.
    BadCBit,
    /// SEV-ES without LBR virtualization.
    NoLbrVirt,
}

impl SevRefusal {
    /// What to tell the user.
    pub const fn message(self) -> &'static str {
        match self {
            Self::NoSev => {
                "this CPU offers no SEV (CPUID 0x8000001F absent, or its EAX bit 1 clear): not an EPYC, or SEV disabled in \
                 the firmware"
            }
            Self::NoSevEs => "this CPU offers no SEV-ES (CPUID 0x8000001F EAX bit 3 clear)",
            Self::NoAsid => "the firmware leaves no ASID for this mode (check the BIOS SEV-ES ASID space limit)",
            Self::BadCBit => "CPUID 0x8000001F reports an unusable C-bit position",
            Self::NoLbrVirt => {
                "SEV-ES needs LBR virtualization (CPUID 0x8000000A EDX bit 1), which this CPU does not offer (KVM refuses \
                 SEV-ES there too)"
            }
        }
    }
}

/// Decides the launch for `mode` on `cpu`; `Ok(None)` for plain SVM.
pub fn plan(mode: SevMode, cpu: SevCpu) -> Result<Option<SevPlan>, SevRefusal> {
    if mode == SevMode::Off {
        return Ok(None);
    }
    if !cpu.sev {
        return Err(SevRefusal::NoSev);
    }
    if !(32..=51).contains(&cpu.c_bit) {
        return Err(SevRefusal::BadCBit);
    }
    let asid = match mode {
        SevMode::SevEs if !cpu.sev_es => return Err(SevRefusal::NoSevEs),
        SevMode::SevEs if !cpu.lbr_virt => return Err(SevRefusal::NoLbrVirt),
        // ES ASIDs are 1 .. min_sev_asid - 1.
        SevMode::SevEs => cpu.min_sev_asid.checked_sub(1).filter(|a| *a >= 1),
        // SEV ASIDs are min_sev_asid (at least 1) ..= max_asid.
        _ => (cpu.max_asid >= cpu.min_sev_asid.max(1)).then_some(cpu.max_asid),
    };
    let asid = asid.ok_or(SevRefusal::NoAsid)?;
    Ok(Some(SevPlan { asid, c_bit: cpu.c_bit }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Milan-like EPYC: C-bit 51, 509 ASIDs, ES ASIDs 1..99.
    const EPYC: SevCpu =
        SevCpu { sev: true, sev_es: true, c_bit: 51, max_asid: 509, min_sev_asid: 100, lbr_virt: true };

    #[test]
    fn plans() {
        assert_eq!(plan(SevMode::Off, SevCpu::default()), Ok(None));
        assert_eq!(plan(SevMode::SevEs, EPYC), Ok(Some(SevPlan { asid: 99, c_bit: 51 })));
        assert_eq!(plan(SevMode::Sev, EPYC), Ok(Some(SevPlan { asid: 509, c_bit: 51 })));
    }

    #[test]
    fn refusals() {
        // QEMU's emulated EPYC under TCG: no leaf 0x8000001F contents at all.
        assert_eq!(plan(SevMode::SevEs, SevCpu::default()), Err(SevRefusal::NoSev));
        assert_eq!(plan(SevMode::Sev, SevCpu::default()), Err(SevRefusal::NoSev));
        assert_eq!(plan(SevMode::SevEs, SevCpu { sev_es: false, ..EPYC }), Err(SevRefusal::NoSevEs));
        assert_eq!(plan(SevMode::SevEs, SevCpu { lbr_virt: false, ..EPYC }), Err(SevRefusal::NoLbrVirt));
        assert_eq!(plan(SevMode::Sev, SevCpu { lbr_virt: false, ..EPYC }), Ok(Some(SevPlan { asid: 509, c_bit: 51 })));
        // BIOS gave every ASID to SEV (min_sev_asid 1): none for ES.
        assert_eq!(plan(SevMode::SevEs, SevCpu { min_sev_asid: 1, ..EPYC }), Err(SevRefusal::NoAsid));
        // ...or every ASID to ES.
        assert_eq!(plan(SevMode::Sev, SevCpu { min_sev_asid: 510, ..EPYC }), Err(SevRefusal::NoAsid));
        assert_eq!(plan(SevMode::Sev, SevCpu { c_bit: 0, ..EPYC }), Err(SevRefusal::BadCBit));
        assert_eq!(SevMode::from_raw(2), Some(SevMode::SevEs));
        assert_eq!(SevMode::from_raw(3), None);
    }
}
