//! The `sev-launch` binary: output, exit codes, and `measure --json` against the library.
// An integration-test crate: its helpers fail the test the way #[test] functions do, which
// clippy.toml allows for those (allow-unwrap/expect/panic-in-tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::process::{Command, Output};

use sevault_sev_launch::{measure, LaunchMode};
use sha2::{Digest, Sha384};

fn sev_launch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sev-launch")).args(args).output().unwrap()
}

/// The synthetic image in a file of its own per call: tests run in parallel, and rewriting
/// one shared file let a test's `sev-launch` read it while another had just truncated it.
fn image_file() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-image-{n}.bin"));
    std::fs::write(&path, common::SYNTHETIC_IMAGE).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn help_and_usage_errors() {
    let out = sev_launch(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("sev-launch measure --mode MODE"));
    let out = sev_launch(&["verify", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("can only be tested on a\nreport the test builds itself"));
    for args in [
        &[][..],
        &["frobnicate"],
        &["policy"],
        &["policy", "--mode", "tdx"],
        &["measure", "--mode", "snp", "--image", "x"],
        &["measure", "--mode", "snp", "--image", "x", "--vcpus", "two"],
        &["measure", "--mode", "snp", "--image", "x", "--vcpus", "1", "--c-bit", "60"],
        &["measure", "--mode", "snp", "--image", "x", "--vcpus", "1", "--with-contents"],
        &["verify", "--image", "x", "--vcpus", "1"],
        &["policy", "--mode", "snp", "--bogus"],
    ] {
        let out = sev_launch(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage:"), "{args:?}");
    }
}

#[test]
fn failures_exit_1() {
    let out = sev_launch(&["measure", "--mode", "sev", "--image", "/nonexistent/guest.bin", "--vcpus", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the image"));
    let image = image_file();
    let out = sev_launch(&["measure", "--mode", "sev", "--image", &image, "--vcpus", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 vCPUs"));
}

#[test]
fn policy_output() {
    let out = sev_launch(&["policy", "--mode", "sev-es"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("policy: 0xf "), "{text}");
    for name in ["NODBG", "NOKS", "ES", "NOSEND", "DOMAIN", "SEV", "API_MAJOR", "API_MINOR"] {
        assert!(text.contains(name), "{name}");
    }
    let out = sev_launch(&["policy", "--mode=snp"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("policy: 0x30000 "), "{text}");
    for name in ["ABI_MINOR", "ABI_MAJOR", "SMT", "reserved (must be 1)", "MIGRATE_MA", "DEBUG", "SINGLE_SOCKET"] {
        assert!(text.contains(name), "{name}");
    }
}

#[test]
fn measure_text_names_the_default_c_bit() {
    let image = image_file();
    let out = sev_launch(&["measure", "--mode", "snp", "--image", &image, "--vcpus", "2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(text.contains("c-bit:   51 (default: EPYC Milan/Genoa report 51"), "{text}");
    let digest = hex::encode(measure(LaunchMode::Snp, &common::SYNTHETIC_IMAGE, 2, 51).unwrap().digest);
    assert!(text.contains(&format!("digest:  {digest}")), "{text}");
    let out = sev_launch(&["measure", "--mode", "sev", "--image", &image, "--vcpus", "2"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("TIK"));
}

#[test]
fn measure_json_lets_an_outsider_recompute() {
    let image = image_file();
    for mode in ["sev", "sev-es", "snp"] {
        let out =
            sev_launch(&["measure", "--mode", mode, "--image", &image, "--vcpus", "2", "--json", "--with-contents"]);
        assert_eq!(out.status.code(), Some(0));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["mode"], mode);
        assert_eq!(doc["vcpus"], 2);
        assert_eq!(doc["c_bit"], 51);
        let pages = doc["pages"].as_array().unwrap();
        let m = measure(sevault_sev_launch::parse_mode(mode).unwrap(), &common::SYNTHETIC_IMAGE, 2, 51).unwrap();
        assert_eq!(doc["digest"], hex::encode(&m.digest));
        assert_eq!(doc["policy"], m.policy.hex());
        assert_eq!(pages.len(), m.pages.len());
        for page in pages {
            let Some(contents) = page["contents"].as_str() else {
                assert_eq!(page["type"], "zero");
                continue;
            };
            let bytes = hex::decode(contents).unwrap();
            assert_eq!(page["sha384"], hex::encode(Sha384::digest(&bytes)));
        }
        // SEV/SEV-ES: the digest is the SHA-256 of the pages' bytes in order.
        if mode != "snp" {
            let mut ld = sha2::Sha256::new();
            for page in pages {
                ld.update(hex::decode(page["contents"].as_str().unwrap()).unwrap());
            }
            assert_eq!(doc["digest"], hex::encode(ld.finalize()));
        }
    }
    // Without --with-contents: hashes only.
    let out = sev_launch(&["measure", "--mode", "snp", "--image", &image, "--vcpus", "1", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["pages"].as_array().unwrap().iter().all(|p| p.get("contents").is_none() && p["sha384"].is_string()));
}
