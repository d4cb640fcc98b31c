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

const SEV: &str = "fd3f4c6884865c50bbf9ce316dd129d47a454e847f7ab46310203064676ac092";
const SEV_ES: &str = "fca48c04a32b81f0162d724aa655dfcb267a9fb3b86098cc84a893027e19169d";
const SNP: &str = "15bce929bf1fc73b8cfcc21c27b08624598d63f039d9320104ff97a008ef79fa3514ca8c3f310a652e42719f29383182";

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
