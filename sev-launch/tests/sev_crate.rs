//! Our types against the virtee `sev` crate's, where both describe the same thing.
// An integration-test crate: its helpers fail the test the way #[test] functions do, which
// clippy.toml allows for those (allow-unwrap/expect/panic-in-tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use core::mem::{offset_of, size_of};

use sev::launch::PageType;
use sev::parser::Encoder;
use sevault_hv::launch::SNP_VMSA_GPA;
use sevault_hv::vmcb::StateSave;
use sevault_hv::vmsa::Vmsa;

/// The `sev` crate's VMSA has private fields and no accessors, so it cannot hold the vault's
/// state; but its setters write known values, and its encoding (a `repr(C, packed)` copy)
/// must put them where our layout has the same registers.
#[test]
fn our_vmsa_layout_agrees_with_the_sev_crates() {
    let theirs_size = size_of::<sev::vmsa::Vmsa>();
    assert_eq!(theirs_size, 0x408, "sev::vmsa::Vmsa covers the VMSA up to x87_state_gpa");
    assert!(theirs_size <= size_of::<Vmsa>());

    let mut theirs = sev::vmsa::Vmsa::default();
    theirs.init_amd64(); // cr0, rip, cs, segment limits, dr6, dr7, rflags, xcr0
    theirs.init_kvm(); // cr4, efer, ldtr/tr attributes, g_pat
    theirs.init_krun(0); // rsp, segment attributes
    let mut page = Vec::new();
    theirs.encode(&mut page, ()).unwrap();
    assert_eq!(page.len(), theirs_size);

    // Where a register of the shared save-area layout lies in our VMSA page.
    let state = |o: usize| offset_of!(Vmsa, state) + o;
    let u16_at = |o: usize| u16::from_le_bytes([page[o], page[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(page[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(page[o..o + 8].try_into().unwrap());
    assert_eq!(u64_at(state(offset_of!(StateSave, cr0))), 1 << 4);
    assert_eq!(u64_at(state(offset_of!(StateSave, rip))), 0xfff0);
    assert_eq!(u64_at(state(offset_of!(StateSave, dr6))), 0xffff_0ff0);
    assert_eq!(u64_at(state(offset_of!(StateSave, dr7))), 0x400);
    assert_eq!(u64_at(state(offset_of!(StateSave, rflags))), 2);
    assert_eq!(u64_at(state(offset_of!(StateSave, cr4))), 0x40);
    assert_eq!(u64_at(state(offset_of!(StateSave, efer))), 0x1000);
    assert_eq!(u64_at(state(offset_of!(StateSave, g_pat))), 0x0007_0406_0007_0406);
    assert_eq!(u64_at(state(offset_of!(StateSave, rsp))), 0x8ff0);
    // Segments: selector, attrib, limit, base.
    let cs = state(offset_of!(StateSave, cs));
    assert_eq!(u16_at(cs), 0xf000);
    assert_eq!(u32_at(cs + 4), 0xffff);
    assert_eq!(u64_at(cs + 8), 0xffff_0000);
    assert_eq!(u16_at(state(offset_of!(StateSave, tr)) + 2), 0x83);
    assert_eq!(u16_at(state(offset_of!(StateSave, ldtr)) + 2), 0x82);
    assert_eq!(u32_at(state(offset_of!(StateSave, idtr)) + 4), 0xffff);
    assert_eq!(u64_at(offset_of!(Vmsa, xcr0)), 1);
}

/// The SNP page type codes our digest writes into PAGE_INFO come from the crate's enum.
#[test]
fn page_type_codes() {
    assert_eq!(PageType::Normal as u8, 1);
    assert_eq!(PageType::Vmsa as u8, 2);
    assert_eq!(PageType::Zero as u8, 3);
    // SNP VMSAs are measured at GPA (u64)-1, page-aligned, bits above 51 clear.
    assert_eq!(SNP_VMSA_GPA, 0xFFFF_FFFF_F000);
}

/// The crate's SEV policy flags are the spec's bits 0-5.
#[test]
fn sev_policy_flag_values() {
    use sev::launch::sev::PolicyFlags;
    assert_eq!(PolicyFlags::NO_DEBUG.bits(), 1 << 0);
    assert_eq!(PolicyFlags::NO_KEY_SHARING.bits(), 1 << 1);
    assert_eq!(PolicyFlags::ENCRYPTED_STATE.bits(), 1 << 2);
    assert_eq!(PolicyFlags::NO_SEND.bits(), 1 << 3);
    assert_eq!(PolicyFlags::DOMAIN.bits(), 1 << 4);
    assert_eq!(PolicyFlags::SEV.bits(), 1 << 5);
}
