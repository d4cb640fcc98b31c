//! `verify` on SNP attestation reports the test builds with the `sev` crate's
//! `AttestationReport` — no machine of this project has SEV-SNP, so no report from a real
//! EPYC host has been through this code.
// An integration-test crate: its helpers fail the test the way #[test] functions do, which
// clippy.toml allows for those (allow-unwrap/expect/panic-in-tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::process::Command;

use sev::firmware::guest::{AttestationReport, GuestPolicy};
use sev::parser::ByteParser;
use sevault_sev_launch::report::{parse_report, verify, REPORT_LEN, REPORT_RSP_HEADER};
use sevault_sev_launch::{measure, policy, LaunchMode};

/// Offsets in the report (SNP ABI spec, ATTESTATION_REPORT): POLICY and MEASUREMENT.
const POLICY_OFFSET: usize = 0x08;
const MEASUREMENT_OFFSET: usize = 0x90;

/// A version-3 report of a Milan part (family 0x19, model 0x01) carrying `measurement`
/// and `policy`, as the firmware would lay it out.
fn report(measurement: &[u8], policy: u64) -> Vec<u8> {
    let mut r = AttestationReport {
        version: 3,
        policy: GuestPolicy::from(policy),
        sig_algo: 1,
        cpuid_fam_id: Some(0x19),
        cpuid_mod_id: Some(0x01),
        cpuid_step: Some(0x01),
        chip_id: [0xA5; 64],
        ..Default::default()
    };
    r.measurement.copy_from_slice(measurement);
    r.to_bytes().unwrap().to_vec()
}

fn expected(vcpus: u32) -> sevault_sev_launch::Measurement {
    let (image, _) = common::vault_image();
    measure(LaunchMode::Snp, &image, vcpus, 51).unwrap()
}

fn good_report() -> Vec<u8> {
    let m = expected(2);
    report(&m.digest, policy(LaunchMode::Snp).bits())
}

#[test]
fn the_builder_puts_fields_where_the_spec_does() {
    let bytes = good_report();
    assert_eq!(bytes.len(), REPORT_LEN);
    assert_eq!(bytes[MEASUREMENT_OFFSET..MEASUREMENT_OFFSET + 48], expected(2).digest[..]);
    assert_eq!(bytes[POLICY_OFFSET..POLICY_OFFSET + 8], 0x3_0000u64.to_le_bytes());
}

#[test]
fn a_report_of_the_vault_matches() {
    let bytes = good_report();
    let result = verify(&parse_report(&bytes).unwrap(), &expected(2)).unwrap();
    assert!(result.matches(), "{result:?}");
    assert_eq!(result.checks.iter().map(|c| c.field).collect::<Vec<_>>(), ["MEASUREMENT", "POLICY"]);
    // The same report inside the SNP_GET_REPORT response (MSG_REPORT_RSP + zero padding).
    let mut rsp = vec![0u8; 4000];
    rsp[4..8].copy_from_slice(&(REPORT_LEN as u32).to_le_bytes());
    rsp[REPORT_RSP_HEADER..REPORT_RSP_HEADER + REPORT_LEN].copy_from_slice(&bytes);
    assert!(verify(&parse_report(&rsp).unwrap(), &expected(2)).unwrap().matches());
}

#[test]
fn a_flipped_measurement_byte_is_a_mismatch() {
    for offset in [MEASUREMENT_OFFSET, MEASUREMENT_OFFSET + 47] {
        let mut bytes = good_report();
        bytes[offset] ^= 0x01;
        let result = verify(&parse_report(&bytes).unwrap(), &expected(2)).unwrap();
        assert!(!result.matches());
        let bad: Vec<_> = result.checks.iter().filter(|c| !c.matches()).map(|c| c.field).collect();
        assert_eq!(bad, ["MEASUREMENT"]);
    }
}

#[test]
fn a_debuggable_or_other_policy_is_a_mismatch() {
    // DEBUG (bit 19) set: the host could decrypt the vault through the PSP.
    let mut bytes = good_report();
    bytes[POLICY_OFFSET + 2] |= 1 << 3;
    let result = verify(&parse_report(&bytes).unwrap(), &expected(2)).unwrap();
    let bad: Vec<_> = result.checks.iter().filter(|c| !c.matches()).map(|c| c.field).collect();
    assert_eq!(bad, ["POLICY"]);
    // An SEV/ES-style policy number in an SNP report is not the vault's either.
    let wrong = report(&expected(2).digest, 0x1_000F);
    assert!(!verify(&parse_report(&wrong).unwrap(), &expected(2)).unwrap().matches());
}

#[test]
fn a_report_of_another_vcpu_count_is_a_mismatch() {
    let bytes = good_report();
    assert!(!verify(&parse_report(&bytes).unwrap(), &expected(4)).unwrap().matches());
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert!(parse_report(&[0u8; 10]).is_err());
    // Version 0 is refused by the parser.
    assert!(parse_report(&[0u8; REPORT_LEN]).is_err());
    // Version 2 with a masked (zero) CHIP_ID: the sev crate cannot tell the generation.
    let mut v2 = vec![0u8; REPORT_LEN];
    v2[0] = 2;
    assert!(parse_report(&v2).is_err());
}

fn sev_launch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sev-launch"))
}

#[test]
fn the_verify_command() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let image = dir.join("verify-image.bin");
    let (bytes, _) = common::vault_image();
    std::fs::write(&image, &bytes).unwrap();
    let good = dir.join("verify-good.report");
    std::fs::write(&good, good_report()).unwrap();
    let mut flipped = good_report();
    flipped[MEASUREMENT_OFFSET + 5] ^= 0x80;
    let bad = dir.join("verify-bad.report");
    std::fs::write(&bad, flipped).unwrap();

    let run = |report: &std::path::Path| {
        sev_launch()
            .args(["verify", "--report"])
            .arg(report)
            .arg("--image")
            .arg(&image)
            .args(["--vcpus", "2"])
            .output()
            .unwrap()
    };
    let out = run(&good);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("MEASUREMENT  match") && text.contains("POLICY       match"), "{text}");
    let out = run(&bad);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("MEASUREMENT  MISMATCH") && text.contains("POLICY       match"), "{text}");
    // Not a report at all: an error, exit 1.
    let garbage = dir.join("verify-garbage.report");
    std::fs::write(&garbage, [0x5Au8; 100]).unwrap();
    let out = run(&garbage);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected a 1184-byte attestation report"));
}
