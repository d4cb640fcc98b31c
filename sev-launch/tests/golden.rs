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

const SEV: &str = "c33b236ac0fc0994dc7e48e983cad768ede608436337fe85155515f8cb6b7ba1";
const SEV_ES: &str = "f37f1f30357dbcbeaed44378fcef99a9dae0bd4fd073643bcedbfa4a8cba267f";
// ABI 2 (issue 8): key slots moved to the second GiB, mapped by a 1 GiB page in the guest
// page tables; the 1024 launched slots now sit at 0x4000_0000. Recomputed, and the SNP value
// checked with sev-snp-measure 0.0.13 (snp_gctx.py: agree).
const SNP: &str = "89dd2ea3dd87b8c4aafc02bb12e9e25844823ae4a82fbbbdd56258105250d7ddf74d6ab730140ea516a54273deae16ab";

#[test]
fn golden_digests() {
    for (mode, expected) in [(LaunchMode::Sev, SEV), (LaunchMode::SevEs, SEV_ES), (LaunchMode::Snp, SNP)] {
        let m = measure(mode, &common::SYNTHETIC_IMAGE, 2, 51).unwrap();
        assert_eq!(hex::encode(&m.digest), expected, "{mode:?}");
    }
}

/// Page counts behind the golden values: 1 image + 16 page tables + 128 key-slot pages;
/// SEV-ES adds a VMSA per vCPU; SNP adds 4 stack pages and a VMSA per vCPU.
#[test]
fn golden_page_counts() {
    let count = |mode| measure(mode, &common::SYNTHETIC_IMAGE, 2, 51).unwrap().pages.len();
    assert_eq!(count(LaunchMode::Sev), 145);
    assert_eq!(count(LaunchMode::SevEs), 147);
    assert_eq!(count(LaunchMode::Snp), 155);
}
