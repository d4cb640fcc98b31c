//! `cargo xtask demo`, the main job: boots the nested VM, loads the vault when it is built,
//! sends a NIST vector and a file through the kernel crypto API by driver name, and prints a
//! short report of what happened. The VM side is `xtask/vm-scripts/demo.sh`; it prints
//! `DEMO <key> <values…>` lines, which this module turns into the report.
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Result};

use crate::vm::{self, Accel, Outcome};

/// Runs the demo; fails if the VM run or any demo step failed.
pub fn demo(root: &Path, args: &[String]) -> Result<()> {
    let mut options = vm::parse_args(args)?;
    options.scripts.insert(0, root.join("xtask/vm-scripts/demo.sh"));
    let kernel = crate::setup::setup(root, options.kernel)?;
    let ko = match options.ko.take() {
        Some(ko) => ko,
        None => crate::module::build(root, &kernel)?,
    };
    options.ko = Some(ko);
    let outcome = vm::run(root, &kernel, &options)?;
    let text = report(&outcome, &kernel.release, options.smp);
    println!("\n{text}");
    let failed = text.lines().filter(|l| l.contains("FAILED")).count();
    if outcome.exit_status() != 0 || failed > 0 {
        for problem in outcome.problems() {
            println!("xtask: {problem}");
        }
        bail!("the demo failed");
    }
    Ok(())
}

/// The report of a demo run.
pub fn report(outcome: &Outcome, release: &str, smp: u32) -> String {
    let demo: Vec<Vec<&str>> = outcome
        .console
        .lines
        .iter()
        .filter_map(|line| line.strip_prefix("DEMO "))
        .map(|rest| rest.split_whitespace().collect())
        .collect();
    let find = |key: &str| demo.iter().find(|words| words.first() == Some(&key)).map(|w| &w[1..]);
    let mut out = String::new();
    let accel = match outcome.accel {
        Accel::Tcg => "QEMU TCG, emulated EPYC-v3 (timings are emulation artefacts)",
        Accel::Kvm => "QEMU KVM, host CPU with nested SVM",
    };
    let _ = writeln!(out, "SE-Vault Mini demo — nested VM: {accel}, {smp} vCPUs, Debian kernel {release}");
    let _ = writeln!(out, "  wall time        : {:.1} s (boot, demo, power-off)", outcome.wall.as_secs_f64());
    let present = find("cpu_present").map(|w| w.join(" ")).unwrap_or_default();
    let absent = find("cpu_absent").map(|w| w.join(" ")).unwrap_or_default();
    let platform_ok = ["svm", "npt", "aes"].iter().all(|f| present.split(' ').any(|p| p == *f));
    let _ = writeln!(
        out,
        "  platform         : {} (present: {present}; absent: {})",
        if platform_ok { "ok" } else { "FAILED: SVM, NPT or AES-NI missing" },
        if absent.is_empty() { "none" } else { &absent }
    );
    match find("selftests") {
        Some([passed, failed, ..]) => {
            let verdict = if *failed == "0" { "ok" } else { "FAILED" };
            let _ = writeln!(out, "  crypto self-tests: {verdict} ({passed} passed, {failed} not passed)");
        }
        _ => {
            let _ = writeln!(out, "  crypto self-tests: FAILED (no result)");
        }
    }
    let driver = find("driver").and_then(|w| w.first().copied()).unwrap_or("?");
    match find("vault").and_then(|w| w.first().copied()) {
        Some("loaded") => {
            let _ = writeln!(out, "  vault            : loaded; requests go to {driver}");
        }
        _ => {
            let _ = writeln!(
                out,
                "  vault            : not built yet (the hypervisor issue); the demo goes through the \
                 kernel's {driver} instead"
            );
        }
    }
    let nist = find("nist").map(|w| w.join(" ")).unwrap_or_else(|| "FAILED (no result)".into());
    let _ = writeln!(out, "  NIST SP 800-38A F.2.1 via {driver}: {nist}");
    let file = match find("file") {
        Some(["ok", size, digest, ..]) => {
            format!("ok ({size} bytes encrypted and decrypted back, sha256 {digest}…)")
        }
        Some(words) => words.join(" "),
        None => "FAILED (no result)".into(),
    };
    let _ = writeln!(out, "  file round trip via {driver}: {file}");
    let xts = match find("xts") {
        Some(["ok", xts_driver, cipher, key_bits, sector, requests, ..]) => format!(
            "ok on {xts_driver} ({cipher}, {key_bits}-bit key, {sector}-byte sectors: mkfs.ext4, the 1 MiB file \
             written, read back after dropping the page cache, fsck clean; {requests} vault requests)"
        ),
        Some(words) => words.join(" "),
        None => "FAILED (no result)".into(),
    };
    let _ = writeln!(out, "  XTS volume (LUKS2, cryptsetup's default cipher): {xts}");
    let _ = writeln!(out, "  /proc/crypto (ecb, cbc, ctr, xts(aes)):");
    for words in demo.iter().filter(|w| w.first() == Some(&"crypto")) {
        if let [_, name, driver, priority, selftest, ..] = words.as_slice() {
            let _ = writeln!(out, "    {name:<10} {driver:<20} priority {priority:<5} selftest {selftest}");
        }
    }
    if find("vault").and_then(|w| w.first().copied()) == Some("loaded") {
        let unloaded = if find("unloaded").is_some() { "yes (rmmod)" } else { "FAILED (rmmod did not succeed)" };
        let _ = writeln!(out, "  vault unloaded   : {unloaded}");
    }
    let stats: Vec<_> = demo.iter().filter(|w| w.first() == Some(&"stats")).collect();
    if stats.is_empty() {
        let _ = writeln!(out, "  vault statistics : none (no vault loaded)");
    } else {
        let state = find("vault_state").map(|w| w.join(" ")).unwrap_or_default();
        let _ = writeln!(out, "  vault statistics ({state}; self-tests, the NIST vector and the file included):");
        let _ = writeln!(
            out,
            "    cpu  requests       bytes  vmruns  vmmcall  vmgexit    nmi   intr  other  errors  VMRUNs/request  bytes/VMRUN"
        );
        // Columns by the names the module's header line gives them.
        let columns = find("stats_columns").unwrap_or(&[]);
        for words in stats {
            let n = |name: &str| {
                let i = columns.iter().position(|c| *c == name)?;
                words.get(i + 1).and_then(|w| w.parse::<u64>().ok())
            };
            let show = |name: &str| n(name).map_or_else(|| "?".to_string(), |v| v.to_string());
            let (requests, bytes, vmruns) =
                (n("requests").unwrap_or(0), n("bytes").unwrap_or(0), n("vmruns").unwrap_or(0));
            let per_request = if requests > 0 { vmruns as f64 / requests as f64 } else { 0.0 };
            let per_vmrun = bytes.checked_div(vmruns).unwrap_or(0);
            let _ = writeln!(
                out,
                "    {:>3}  {requests:>8}  {bytes:>10}  {vmruns:>6}  {:>7}  {:>7}  {:>5}  {:>5}  {:>5}  {:>6}  {per_request:>14.2}  {per_vmrun:>11}",
                show("cpu"),
                show("exits_vmmcall"),
                show("exits_vmgexit"),
                show("exits_nmi"),
                show("exits_intr"),
                show("exits_other"),
                show("errors"),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::parse_console;
    use std::time::Duration;

    #[test]
    fn report_of_a_run_without_the_vault() {
        let console = "SEVAULT-TEST-START\n\
            DEMO cpu_present svm npt aes\n\
            DEMO cpu_absent nrip_save\n\
            DEMO vault absent\n\
            DEMO driver cbc-aes-aesni\n\
            DEMO selftests 46 0\n\
            DEMO nist ok\n\
            DEMO file ok 1048576 0123456789abcdef\n\
            DEMO xts ok xts-aes-aesni aes-xts-plain64 512 512 0\n\
            DEMO crypto cbc(aes) cbc-aes-aesni 400 passed\n\
            SEVAULT-RESULT 0\n";
        let outcome = Outcome {
            console: parse_console(console.lines()),
            timed_out: false,
            wall: Duration::from_millis(4500),
            accel: Accel::Tcg,
        };
        let text = report(&outcome, "6.1.0-56-amd64", 2);
        assert!(!text.contains("FAILED"), "{text}");
        assert!(text.contains("platform         : ok"));
        assert!(text.contains("46 passed, 0 not passed"));
        assert!(text.contains("not built yet"));
        assert!(text.contains("F.2.1 via cbc-aes-aesni: ok"));
        assert!(text.contains("1048576 bytes"));
        assert!(text.contains("ok on xts-aes-aesni (aes-xts-plain64, 512-bit key, 512-byte sectors"), "{text}");
        assert!(text.contains("cbc-aes-aesni        priority 400"));
        assert!(text.contains("none (no vault loaded)"));
    }

    #[test]
    fn statistics_table() {
        let console = "DEMO vault_state generation 1 rebuilds 0\n\
            DEMO stats_columns cpu requests bytes vmruns exits_vmmcall exits_vmgexit exits_nmi exits_intr exits_other machine_checks errors\n\
            DEMO stats 1 43 2097216 43 43 0 0 7 0 0 0\n";
        let outcome = Outcome {
            console: parse_console(console.lines()),
            timed_out: false,
            wall: Duration::ZERO,
            accel: Accel::Tcg,
        };
        let text = report(&outcome, "r", 2);
        assert!(text.contains("generation 1 rebuilds 0"), "{text}");
        assert!(text.contains("1.00"), "{text}");
        assert!(text.contains("48772"), "bytes per VMRUN: {text}");
        assert!(text.contains("      7      0       0"), "intr column by name: {text}");
    }

    #[test]
    fn missing_steps_are_failures() {
        let outcome = Outcome {
            console: parse_console("DEMO cpu_present npt aes\nDEMO selftests 40 2\n".lines()),
            timed_out: false,
            wall: Duration::ZERO,
            accel: Accel::Kvm,
        };
        let text = report(&outcome, "r", 1);
        assert!(text.contains("FAILED: SVM, NPT or AES-NI missing"));
        assert!(text.contains("self-tests: FAILED (40 passed, 2 not passed)"));
        assert!(text.contains("F.2.1 via ?: FAILED (no result)"));
    }
}
