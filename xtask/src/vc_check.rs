//! The vault under SEV-ES may leave only through VMGEXIT: any instruction the hypervisor
//! would have to emulate raises #VC, and the vault has no #VC handler (no IDT at all). This
//! check disassembles the executable part of the vault image (iced-x86) and fails on every
//! such instruction (GHCB spec, "Non-Automatic Exits"; AMD APM Vol. 2 §15.35).
use anyhow::{ensure, Result};
use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter, Mnemonic};
use object::elf::PF_X;

/// Instructions that would raise #VC (or otherwise exit) in an SEV-ES guest.
const FORBIDDEN: &[Mnemonic] = &[
    Mnemonic::Cpuid,
    Mnemonic::Rdmsr,
    Mnemonic::Wrmsr,
    Mnemonic::In,
    Mnemonic::Out,
    Mnemonic::Insb,
    Mnemonic::Insw,
    Mnemonic::Insd,
    Mnemonic::Outsb,
    Mnemonic::Outsw,
    Mnemonic::Outsd,
    Mnemonic::Hlt,
    Mnemonic::Int,
    Mnemonic::Int1,
    Mnemonic::Into,
    Mnemonic::Vmmcall,
    Mnemonic::Rdtsc,
    Mnemonic::Rdtscp,
    Mnemonic::Rdpmc,
    Mnemonic::Rdpru,
    Mnemonic::Monitor,
    Mnemonic::Monitorx,
    Mnemonic::Mwait,
    Mnemonic::Mwaitx,
    Mnemonic::Wbinvd,
    Mnemonic::Wbnoinvd,
    Mnemonic::Invd,
    Mnemonic::Xsetbv,
    Mnemonic::Vmrun,
    Mnemonic::Vmload,
    Mnemonic::Vmsave,
    Mnemonic::Clgi,
    Mnemonic::Stgi,
    Mnemonic::Skinit,
    Mnemonic::Invlpga,
    Mnemonic::Pause,
];

/// One offending instruction.
#[derive(Debug, PartialEq, Eq)]
pub struct Finding {
    /// Its address in the vault.
    pub address: u64,
    /// Its disassembly.
    pub text: String,
}

/// Instructions in `code` (loaded at `address`) that would raise #VC. `MOV` to or from a
/// control or debug register counts too (CR/DR accesses are intercepted under SEV-ES).
pub fn scan(code: &[u8], address: u64) -> Vec<Finding> {
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    let mut formatter = IntelFormatter::new();
    let mut findings = Vec::new();
    let mut instruction = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        let mnemonic = instruction.mnemonic();
        let control_register = mnemonic == Mnemonic::Mov
            && (0..instruction.op_count()).any(|i| {
                let r = instruction.op_register(i);
                r.is_cr() || r.is_dr()
            });
        if FORBIDDEN.contains(&mnemonic) || control_register || instruction.is_invalid() {
            let mut text = String::new();
            formatter.format(&instruction, &mut text);
            if instruction.is_invalid() {
                text = format!("undecodable bytes ({text})");
            }
            findings.push(Finding { address: instruction.ip(), text });
        }
    }
    findings
}

/// Checks the executable segments of the vault ELF.
pub fn check_elf(elf: &[u8]) -> Result<usize> {
    let (_, segments) = crate::guest::load_segments(elf)?;
    let mut bytes = 0;
    let mut findings = Vec::new();
    for segment in segments.iter().filter(|s| s.flags & PF_X != 0) {
        bytes += segment.data.len();
        findings.extend(scan(segment.data, segment.vaddr));
    }
    ensure!(bytes > 0, "no executable segment in the vault image");
    ensure!(
        findings.is_empty(),
        "the vault image has instructions that would raise #VC under SEV-ES:\n{}",
        findings.iter().map(|f| format!("  {:#06x}: {}", f.address, f.text)).collect::<Vec<_>>().join("\n")
    );
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_what_would_raise_vc_and_passes_vmgexit() {
        // cpuid; rdmsr; wrmsr; in al,dx; hlt; rdtsc; vmmcall; mov rax,cr0; int 0x80
        let bad = [
            0x0F, 0xA2, 0x0F, 0x32, 0x0F, 0x30, 0xEC, 0xF4, 0x0F, 0x31, 0x0F, 0x01, 0xD9, 0x0F, 0x20, 0xC0, 0xCD, 0x80,
        ];
        let found = scan(&bad, 0x1000);
        let texts: Vec<&str> = found.iter().map(|f| f.text.as_str()).collect();
        assert_eq!(texts.len(), 9, "{texts:?}");
        assert!(texts[0].starts_with("cpuid") && texts[6].starts_with("vmmcall"), "{texts:?}");
        assert_eq!(found[1].address, 0x1002);
        // rep vmmcall (VMGEXIT), AES-NI, pxor, ret, int3 padding: all allowed.
        let good = [0xF3, 0x0F, 0x01, 0xD9, 0x66, 0x0F, 0x38, 0xDC, 0xC1, 0x66, 0x0F, 0xEF, 0xC0, 0xC3, 0xCC];
        assert_eq!(scan(&good, 0x1000), []);
    }

    #[test]
    fn the_vault_image_raises_no_vc() {
        let root = crate::workspace_root();
        let target = root.join("target").join("xtask-test");
        crate::guest::build_into(&root, &target).unwrap();
        let elf = std::fs::read(target.join("x86_64-unknown-none/vault/sevault-vault")).unwrap();
        assert!(check_elf(&elf).unwrap() > 3000);
    }
}
