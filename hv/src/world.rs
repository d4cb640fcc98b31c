//! What the world switch keeps of the vault between two runs: the registers VMRUN and
//! #VMEXIT do not switch.
//!
//! On plain SVM, VMRUN loads and #VMEXIT saves only RAX, RSP, RIP and RFLAGS of the guest's
//! general-purpose registers (AMD APM Vol. 2 §15.5.1 and Appendix B, Table B-2), and no
//! x87/SSE state at all. An exit the vault did not ask for (an NMI, an interrupt) can come
//! between any two of its instructions, mid-AES; so the trampoline (`kernel/cpu.rs`) stores
//! the other fifteen GPRs and the FXSAVE image of the vector state here after every #VMEXIT
//! and loads them before every VMRUN. Under SEV-ES the CPU itself swaps those registers
//! through the encrypted VMSA; the trampoline's copies are then the host's values and hold
//! nothing of the vault's.
//!
//! The layout is pinned: the trampoline takes every offset from [`offset_of!`] and
//! [`GuestRegisters::gpr_offset`].
use core::mem::{offset_of, size_of};

/// The general-purpose registers by their number in the instruction encoding (AMD APM
/// Vol. 3 §1.2.7 and §1.4, Table 1-16 "ModRM.reg/.rm with REX": RAX 0, RCX 1, RDX 2, RBX 3,
/// RSP 4, RBP 5, RSI 6, RDI 7, R8–R15 8–15). `gprs[n]` holds register `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum Gpr {
    Rax = 0,
    Rcx = 1,
    Rdx = 2,
    Rbx = 3,
    Rsp = 4,
    Rbp = 5,
    Rsi = 6,
    Rdi = 7,
    R8 = 8,
    R9 = 9,
    R10 = 10,
    R11 = 11,
    R12 = 12,
    R13 = 13,
    R14 = 14,
    R15 = 15,
}

impl Gpr {
    /// The registers the trampoline switches: all but RAX and RSP, which live in the VMCB.
    pub const SWITCHED: [Gpr; 14] = [
        Gpr::Rcx,
        Gpr::Rdx,
        Gpr::Rbx,
        Gpr::Rbp,
        Gpr::Rsi,
        Gpr::Rdi,
        Gpr::R8,
        Gpr::R9,
        Gpr::R10,
        Gpr::R11,
        Gpr::R12,
        Gpr::R13,
        Gpr::R14,
        Gpr::R15,
    ];
}

/// The 512-byte FXSAVE/FXRSTOR image (64-bit format, AMD APM Vol. 5 "FXSAVE" and Vol. 2
/// §11.4.4, Figure 11-9): x87 control words, MXCSR, ST0–7/MM0–7, XMM0–15. FXSAVE and
/// FXRSTOR fault on an address that is not 16-byte aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct FxArea {
    /// x87 control word (FCW).
    pub fcw: u16,
    /// x87 status word.
    pub fsw: u16,
    /// Abridged x87 tag word.
    pub ftw: u8,
    /// Reserved.
    pub reserved_0x005: u8,
    /// Last x87 opcode.
    pub fop: u16,
    /// Last x87 instruction pointer.
    pub fip: u64,
    /// Last x87 data pointer.
    pub fdp: u64,
    /// SSE control and status (MXCSR).
    pub mxcsr: u32,
    /// Bits of MXCSR the CPU supports (written by FXSAVE, ignored by FXRSTOR).
    pub mxcsr_mask: u32,
    /// ST0–ST7 / MM0–MM7, 16 bytes each.
    pub st: [[u8; 16]; 8],
    /// XMM0–XMM15.
    pub xmm: [[u8; 16]; 16],
    /// Reserved / available to software.
    pub reserved_0x1a0: [u8; 96],
}

const _: () = {
    assert!(offset_of!(FxArea, fcw) == 0x000);
    assert!(offset_of!(FxArea, fsw) == 0x002);
    assert!(offset_of!(FxArea, ftw) == 0x004);
    assert!(offset_of!(FxArea, fop) == 0x006);
    assert!(offset_of!(FxArea, fip) == 0x008);
    assert!(offset_of!(FxArea, fdp) == 0x010);
    assert!(offset_of!(FxArea, mxcsr) == 0x018);
    assert!(offset_of!(FxArea, mxcsr_mask) == 0x01C);
    assert!(offset_of!(FxArea, st) == 0x020);
    assert!(offset_of!(FxArea, xmm) == 0x0A0);
    assert!(offset_of!(FxArea, reserved_0x1a0) == 0x1A0);
    assert!(size_of::<FxArea>() == 512);
    assert!(core::mem::align_of::<FxArea>() == 16);
};

/// FCW after FNINIT: all x87 exceptions masked, double-extended precision, round to
/// nearest (AMD APM Vol. 5, "FINIT/FNINIT": 037Fh).
pub const FCW_INIT: u16 = 0x037F;
/// MXCSR after reset: all SIMD exceptions masked, round to nearest (AMD APM Vol. 1 §4.2.2,
/// "MXCSR ... 1F80h after reset").
pub const MXCSR_INIT: u32 = 0x1F80;

impl FxArea {
    /// The vector state of a CPU just reset: zero registers, every exception masked.
    pub const INIT: Self = Self {
        fcw: FCW_INIT,
        fsw: 0,
        ftw: 0,
        reserved_0x005: 0,
        fop: 0,
        fip: 0,
        fdp: 0,
        mxcsr: MXCSR_INIT,
        mxcsr_mask: 0,
        st: [[0; 16]; 8],
        xmm: [[0; 16]; 16],
        reserved_0x1a0: [0; 96],
    };
}

/// The vault vCPU's registers outside the VMCB, as the trampoline stores and loads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct GuestRegisters {
    /// GPRs by encoding number ([`Gpr`]); RAX and RSP are unused (the VMCB has them).
    pub gprs: [u64; 16],
    /// The vector state.
    pub fx: FxArea,
}

const _: () = {
    assert!(offset_of!(GuestRegisters, gprs) == 0);
    assert!(offset_of!(GuestRegisters, fx) == 128);
    assert!(offset_of!(GuestRegisters, fx) % 16 == 0);
    assert!(size_of::<GuestRegisters>() == 640);
};

impl GuestRegisters {
    /// The state the vault starts from (and a rebuild returns it to): every GPR zero, the
    /// vector unit as after reset.
    pub const INITIAL: Self = Self { gprs: [0; 16], fx: FxArea::INIT };

    /// Offset of `reg` in the structure, for the trampoline's `const` operands.
    pub const fn gpr_offset(reg: Gpr) -> usize {
        offset_of!(GuestRegisters, gprs) + reg as usize * size_of::<u64>()
    }

    /// The value of `reg`.
    pub const fn get(&self, reg: Gpr) -> u64 {
        self.gprs[reg as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gprs_sit_at_eight_times_their_encoding_number() {
        // Expected numbers: AMD APM Vol. 3, Table 1-16 (REX.R/B extended register encodings).
        let expected = [
            (Gpr::Rcx, 1),
            (Gpr::Rdx, 2),
            (Gpr::Rbx, 3),
            (Gpr::Rbp, 5),
            (Gpr::Rsi, 6),
            (Gpr::Rdi, 7),
            (Gpr::R8, 8),
            (Gpr::R11, 11),
            (Gpr::R15, 15),
        ];
        for (reg, number) in expected {
            assert_eq!(GuestRegisters::gpr_offset(reg), number * 8, "{reg:?}");
        }
        assert_eq!(Gpr::SWITCHED.len(), 14);
        assert!(!Gpr::SWITCHED.contains(&Gpr::Rax) && !Gpr::SWITCHED.contains(&Gpr::Rsp));
    }

    /// The CPU's own FXSAVE puts XMMn and MXCSR where `FxArea` says: the layout checked
    /// against the instruction, not against our constants.
    #[test]
    fn fxsave_of_this_cpu_matches_the_layout() {
        let pattern: [u8; 16] = core::array::from_fn(|i| 0xA0 + i as u8);
        let mut area = FxArea::INIT;
        let mxcsr: u32 = 0x1F80 | (1 << 13); // round down, a value the kernel never leaves
                                             // SAFETY: xmm7 is declared clobbered; `area` is 16-byte aligned and 512 bytes; MXCSR
                                             // is restored to what the test harness had before returning.
        unsafe {
            let mut saved_mxcsr = 0u32;
            core::arch::asm!(
                "stmxcsr [{saved}]",
                "movdqu xmm7, [{pattern}]",
                "ldmxcsr [{mxcsr}]",
                "fxsave64 [{area}]",
                "ldmxcsr [{saved}]",
                saved = in(reg) &mut saved_mxcsr,
                pattern = in(reg) pattern.as_ptr(),
                mxcsr = in(reg) &mxcsr,
                area = in(reg) &mut area,
                out("xmm7") _,
            );
        }
        assert_eq!(area.xmm[7], pattern);
        assert_eq!(area.mxcsr, mxcsr);
    }

    /// FXRSTOR of `INIT` gives the reset values; of a modified image, its registers.
    #[test]
    fn fxrstor_loads_what_the_layout_says() {
        let mut area = FxArea::INIT;
        area.xmm[12] = [0x5C; 16];
        let mut out = [0u8; 16];
        let mut mxcsr = 0u32;
        // SAFETY: FXRSTOR replaces every vector register: all declared clobbered (the C ABI's
        // set); the area is aligned and 512 bytes; its MXCSR is the default the harness runs
        // with and its x87 stack is empty, as the ABI expects at any call.
        unsafe {
            core::arch::asm!(
                "fxrstor64 [{area}]",
                "movdqu [{out}], xmm12",
                "stmxcsr [{mxcsr}]",
                area = in(reg) &area,
                out = in(reg) out.as_mut_ptr(),
                mxcsr = in(reg) &mut mxcsr,
                clobber_abi("C"),
            );
        }
        assert_eq!(out, [0x5C; 16]);
        assert_eq!(mxcsr, MXCSR_INIT);
    }
}
