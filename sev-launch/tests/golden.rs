//! Golden digests. They catch unintended changes of the launch definition: the page list or
//! page contents of `sevault_hv::launch` (image placement, guest page tables, key slots,
//! stacks, VMSAs), the initial vCPU state, or the digest code here. Any such change moves
//! the vault's expected measurement, which every verifier of the vault must then be told
//! about — so if one of these fails, either the change was unintended, or it was meant and
//! the constant is updated in the same commit, with the reason.
//!
//! Input: 64 bytes of 0x90 (NOP) as the image, 2 vCPUs, C-bit 51. The SNP value was also
//! recomputed with sev-snp-measure 0.0.13's GCTX (crosscheck/snp_gctx.py) when pinned.
// An integration-test crate: its helpers fail the test the way #[test] functions do, which
// clippy.toml allows for those (allow-unwrap/expect/panic-in-tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use sevault_sev_launch::{measure, LaunchMode};

const SEV: &str = "f2645a108a16f19c0d5d0661087135bc8597aea0bcfe7a90dd0e6242d2145b02";
const SEV_ES: &str = "95c5866089e75bd6787e41c87e0a8140c36f9e8e8681122f353beb1f158f45b2";
// ABI 2 (issue 8): key slots moved to the second GiB, mapped by a 1 GiB page in the guest
// page tables; the 1024 launched slots now sit at 0x4000_0000.
// ABI 3 (issue 10): key slots of 1 KiB (an XTS pair's three schedules), so the 1024 launched
// slots are 256 pages, not 128. Recomputed; the SNP value checked with sev-snp-measure
// 0.0.13 (`sev-launch measure --mode snp --image nop64.bin --vcpus 2 --json --with-contents`
// into crosscheck/snp_gctx.py: agree).
const SNP: &str = "2f797a0966d44521ed5fc0b8496b2a8877e9e140f9e0ad64da5364a52a4fbe3ae68f70ef3c6bcb2462ee2de4e44a0718";

#[test]
fn golden_digests() {
    for (mode, expected) in [(LaunchMode::Sev, SEV), (LaunchMode::SevEs, SEV_ES), (LaunchMode::Snp, SNP)] {
        let m = measure(mode, &common::SYNTHETIC_IMAGE, 2, 51).unwrap();
        assert_eq!(hex::encode(&m.digest), expected, "{mode:?}");
    }
}

/// Page counts behind the golden values: 1 image + 16 page tables + 256 key-slot pages;
/// SEV-ES adds a VMSA per vCPU; SNP adds 4 stack pages and a VMSA per vCPU.
#[test]
fn golden_page_counts() {
    let count = |mode| measure(mode, &common::SYNTHETIC_IMAGE, 2, 51).unwrap().pages.len();
    assert_eq!(count(LaunchMode::Sev), 273);
    assert_eq!(count(LaunchMode::SevEs), 275);
    assert_eq!(count(LaunchMode::Snp), 283);
}
