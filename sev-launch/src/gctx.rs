//! The SNP launch digest: how `SNP_LAUNCH_UPDATE` extends `GCTX.LD` (SEV-SNP Firmware ABI
//! Specification, AMD pub. 56860, section "SNP_LAUNCH_UPDATE", "Layout of the PAGE_INFO
//! Structure" — §8.17.2, Table 67 in the revision `sev-snp-measure` cites):
//!
//! ```text
//! GCTX.LD := SHA-384(PAGE_INFO)   with PAGE_INFO = { DIGEST_CUR = GCTX.LD, CONTENTS, LENGTH = 0x70,
//!                                                    PAGE_TYPE, IMI_PAGE = 0, VMPL3/2/1_PERMS = 0, GPA }
//! ```
//!
//! CONTENTS is the SHA-384 of the page for NORMAL and VMSA pages and 48 zero bytes for ZERO
//! (and UNMEASURED, SECRETS, CPUID) pages; the GCTX starts at 48 zero bytes.
//!
//! Why our own code and not the virtee `sev` crate's `measurement::gctx::Gctx`: in `sev`
//! 8.0.0 that type cannot be used outside the crate — its state type `Updating` is
//! `pub(crate)` (rustc: "type `gctx::Updating` is private" on `Gctx::new`), and so are
//! `finished()` and `ld()`, the only way to read the digest. Its public entry points
//! (`snp_calc_launch_digest`, `calc_snp_ovmf_hash`) measure an OVMF image with OVMF's reset
//! VMSAs, not ours. The page *type codes* are the crate's ([`sev::launch::PageType`]); the
//! fold below is ~20 lines against the spec table, checked against an implementation nobody
//! here wrote (`sev-snp-measure`, see `crosscheck/snp_gctx.py`).
use core::mem::{offset_of, size_of};

use sev::launch::PageType;
use sha2::{Digest, Sha384};

/// Bytes of a launch digest (SHA-384).
pub const LD_BYTES: usize = 48;

/// The `PAGE_INFO` structure (SNP ABI spec, "Layout of the PAGE_INFO Structure"). Only its layout is used: [`page_info`]
/// writes each field at its `offset_of!`.
#[repr(C)]
pub struct PageInfo {
    /// DIGEST_CUR: the launch digest before this page.
    pub digest_cur: [u8; LD_BYTES],
    /// CONTENTS: SHA-384 of the page (NORMAL, VMSA) or zeros (ZERO, …).
    pub contents: [u8; LD_BYTES],
    /// LENGTH of this structure: 0x70.
    pub length: u16,
    /// PAGE_TYPE (the codes of [`PageType`]: NORMAL 1, VMSA 2, ZERO 3, …).
    pub page_type: u8,
    /// IMI_PAGE (bit 0; we never launch through a migration image), bits 7:1 reserved.
    pub imi_page: u8,
    /// VMPL3_PERMS.
    pub vmpl3_perms: u8,
    /// VMPL2_PERMS.
    pub vmpl2_perms: u8,
    /// VMPL1_PERMS.
    pub vmpl1_perms: u8,
    /// Reserved.
    pub reserved_0x67: u8,
    /// GPA of the page.
    pub gpa: u64,
}

const _: () = {
    assert!(offset_of!(PageInfo, digest_cur) == 0x00);
    assert!(offset_of!(PageInfo, contents) == 0x30);
    assert!(offset_of!(PageInfo, length) == 0x60);
    assert!(offset_of!(PageInfo, page_type) == 0x62);
    assert!(offset_of!(PageInfo, imi_page) == 0x63);
    assert!(offset_of!(PageInfo, vmpl3_perms) == 0x64);
    assert!(offset_of!(PageInfo, vmpl2_perms) == 0x65);
    assert!(offset_of!(PageInfo, vmpl1_perms) == 0x66);
    assert!(offset_of!(PageInfo, reserved_0x67) == 0x67);
    assert!(offset_of!(PageInfo, gpa) == 0x68);
    assert!(size_of::<PageInfo>() == PAGE_INFO_LEN);
};

/// PAGE_INFO.LENGTH.
pub const PAGE_INFO_LEN: usize = 0x70;

/// The PAGE_INFO bytes the firmware hashes for one page.
pub fn page_info(digest_cur: &[u8; LD_BYTES], page_type: PageType, gpa: u64, contents: &[u8; LD_BYTES]) -> [u8; 0x70] {
    let mut out = [0u8; PAGE_INFO_LEN];
    out[offset_of!(PageInfo, digest_cur)..][..LD_BYTES].copy_from_slice(digest_cur);
    out[offset_of!(PageInfo, contents)..][..LD_BYTES].copy_from_slice(contents);
    out[offset_of!(PageInfo, length)..][..2].copy_from_slice(&(PAGE_INFO_LEN as u16).to_le_bytes());
    out[offset_of!(PageInfo, page_type)] = page_type as u8;
    // IMI_PAGE, the VMPL permissions and the reserved byte stay 0: the vault runs at VMPL0
    // alone and is not launched from a migration image.
    out[offset_of!(PageInfo, gpa)..][..8].copy_from_slice(&gpa.to_le_bytes());
    out
}

/// A guest context's launch digest while pages are added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchDigest([u8; LD_BYTES]);

impl Default for LaunchDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl LaunchDigest {
    /// The digest of a fresh guest context (all zeros).
    pub const fn new() -> Self {
        Self([0; LD_BYTES])
    }

    /// Extends the digest by one page whose CONTENTS field is `contents` (see [`contents_of`]).
    pub fn update(&mut self, page_type: PageType, gpa: u64, contents: &[u8; LD_BYTES]) {
        self.0 = Sha384::digest(page_info(&self.0, page_type, gpa, contents)).into();
    }

    /// The digest so far: after the last page, the attestation report's MEASUREMENT.
    pub const fn bytes(&self) -> &[u8; LD_BYTES] {
        &self.0
    }
}

/// The CONTENTS field of a page of `page_type` whose 4096 bytes are `page`.
pub fn contents_of(page_type: PageType, page: &[u8; 4096]) -> [u8; LD_BYTES] {
    match page_type {
        PageType::Normal | PageType::Vmsa => Sha384::digest(page).into(),
        _ => [0; LD_BYTES],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_info_bytes() {
        let info = page_info(&[0x11; 48], PageType::Vmsa, 0xFFFF_FFFF_F000, &[0x22; 48]);
        assert_eq!(info[..48], [0x11; 48]);
        assert_eq!(info[48..96], [0x22; 48]);
        assert_eq!(info[0x60..0x68], [0x70, 0x00, 0x02, 0, 0, 0, 0, 0]);
        assert_eq!(info[0x68..], 0xFFFF_FFFF_F000u64.to_le_bytes());
    }

    /// One ZERO page at GPA 0x1000 from a fresh context, as `sev-snp-measure` 0.0.13 computes
    /// it (`g = GCTX(); g.update_zero_pages(0x1000, 4096); g.hex_ld()`).
    #[test]
    fn one_zero_page_matches_sev_snp_measure() {
        let mut ld = LaunchDigest::new();
        ld.update(PageType::Zero, 0x1000, &contents_of(PageType::Zero, &[0; 4096]));
        assert_eq!(
            hex::encode(ld.bytes()),
            "4bd4147976a1e7554c1c778a781affc1c672f1965a727ba16084989b7e356044a28bbe585a2f75dac9356fa5ab78f061"
        );
    }
}
