//! `cargo xtask bench-aes` and `cost-model`, and `bench-vm`.
//!
//! `bench-aes` runs the AES throughput benchmark (`experiments/aes-bench`,
//! package `sevault-aes-bench`) in release mode, streaming its output, and keeps its results
//! in `experiments/results/aes-bench.md` and `.json`. Arguments after `bench-aes` (such as
//! `--seconds 0.5` or `--runs 5`) are passed to the benchmark unchanged.
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The Markdown results, relative to the workspace root.
const OUT_MD: &str = "experiments/results/aes-bench.md";
/// The JSON results, relative to the workspace root.
const OUT_JSON: &str = "experiments/results/aes-bench.json";

/// Runs the benchmark from `root` (the workspace root) with `args` passed through.
pub fn bench_aes(root: &Path, args: &[String]) -> Result<()> {
    let (md, json) = (root.join(OUT_MD), root.join(OUT_JSON));
    let outputs = [("--out-md", md.as_os_str()), ("--out-json", json.as_os_str())];
    run_release(root, "sevault-aes-bench", "bench-aes", &outputs, args, "the AES benchmark")?;
    // `--help` only prints the benchmark's usage.
    if !args.iter().any(|arg| arg == "-h" || arg == "--help") {
        println!("AES benchmark results: {} and {}", md.display(), json.display());
    }
    Ok(())
}

/// `cargo xtask cost-model`: the HV's host-side work per request (measured) and the cost
/// model's predictions for EPYC hardware (`experiments/cost-model`), from bench-aes's last
/// results, into `experiments/results/cost-model.md`, `.json` and one SVG per workload.
pub fn cost_model(root: &Path, args: &[String]) -> Result<()> {
    let results = root.join("experiments/results");
    let (md, json) = (results.join("cost-model.md"), results.join("cost-model.json"));
    let outputs = [
        ("--aes-json", root.join(OUT_JSON).into_os_string()),
        ("--out-md", md.clone().into_os_string()),
        ("--out-json", json.clone().into_os_string()),
        ("--svg-dir", results.clone().into_os_string()),
    ];
    let outputs: Vec<(&str, &std::ffi::OsStr)> = outputs.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    run_release(root, "sevault-cost-model", "cost-model", &outputs, args, "the cost model")?;
    if !args.iter().any(|arg| arg == "-h" || arg == "--help") {
        println!("cost model: {}, {} and {}/cost-model-*.svg", md.display(), json.display(), results.display());
    }
    Ok(())
}

/// `cargo run --release -p PACKAGE -- OUTPUTS ARGS`, with the xtask command line recorded in
/// `SEVAULT_BENCH_COMMAND` for the results.
fn run_release(
    root: &Path,
    package: &str,
    xtask_command: &str,
    outputs: &[(&str, &std::ffi::OsStr)],
    args: &[String],
    what: &str,
) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let command: Vec<String> =
        std::iter::once(format!("cargo xtask {xtask_command}")).chain(args.iter().cloned()).collect();
    let mut run = Command::new(&cargo);
    run.current_dir(root).args(["run", "--release", "-p", package, "--"]);
    for (flag, value) in outputs {
        run.arg(flag).arg(value);
    }
    let status = run
        .args(args)
        .env("SEVAULT_BENCH_COMMAND", command.join(" "))
        .status()
        .with_context(|| format!("could not start `{}`", cargo.to_string_lossy()))?;
    if !status.success() {
        bail!("{what} ({package}) failed: {status}");
    }
    Ok(())
}

/// The nested-VM measurement's results, relative to the workspace root.
const VM_OUT: &str = "experiments/results/vm-bench.txt";

/// `cargo xtask bench-vm [--seconds S]`: builds the module and the checker, runs
/// `experiments/vm/vm-bench.sh` in the nested VM — VMRUNs per request and bytes per VMRUN
/// from the vault's statistics at 4 KiB and 64 KiB, and throughput of the vault against
/// the kernel's AES-NI and generic drivers in the same run — and keeps the script's output
/// with the command and date in `experiments/results/vm-bench.txt`.
pub fn bench_vm(root: &Path, args: &[String]) -> Result<()> {
    let (line, args) = crate::setup::take_one_kernel(args)?;
    let seconds = match &args[..] {
        [] => "2".to_string(),
        [flag, value] if flag == "--seconds" && value.parse::<f64>().is_ok() => value.clone(),
        _ => bail!("usage: cargo xtask bench-vm [--seconds S] [--kernel 6.1|6.12]"),
    };
    let kernel = crate::setup::setup(root, line)?;
    let ko = crate::module::build(root, &kernel)?;
    let kcheck = crate::build_kcheck(root)?;
    // The script reads SECONDS_PER_CELL: run a copy that sets it first.
    let script = std::fs::read_to_string(root.join("experiments/vm/vm-bench.sh"))?;
    let run = root.join("target/sevault/vm/vm-bench-run.sh");
    std::fs::create_dir_all(run.parent().context("no parent")?)?;
    std::fs::write(&run, format!("SECONDS_PER_CELL={seconds}\n{script}"))?;
    let options = crate::vm::Options {
        scripts: vec![run],
        ko: Some(ko),
        kcheck: Some(kcheck),
        timeout: std::time::Duration::from_secs(1800),
        ..Default::default()
    };
    let outcome = crate::vm::run(root, &kernel, &options)?;
    if outcome.exit_status() != 0 {
        for problem in outcome.problems() {
            println!("xtask: {problem}");
        }
        bail!("the nested-VM benchmark failed");
    }
    let body: Vec<&str> = outcome
        .console
        .lines
        .iter()
        .map(String::as_str)
        .skip_while(|l| !l.starts_with("SEVAULT-SCRIPT-BEGIN vm-bench-run.sh"))
        .skip(1)
        .take_while(|l| !l.starts_with("SEVAULT-SCRIPT-END"))
        .filter(|l| !l.starts_with('['))
        .collect();
    let date = Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output()?;
    let text = format!(
        "# SE-Vault Mini in the nested VM (QEMU TCG, emulated EPYC-v3, {} vCPUs, Debian {})\n\
         # {} — `cargo xtask bench-vm --seconds {seconds}` — TCG-emulated: compare only within this file.\n{}\n",
        options.smp,
        kernel.release,
        String::from_utf8_lossy(&date.stdout).trim(),
        body.join("\n")
    );
    let out = root.join(VM_OUT);
    std::fs::write(&out, &text)?;
    println!("\n{text}\nwritten to {}", out.display());
    Ok(())
}
