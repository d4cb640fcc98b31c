//! `cargo xtask bench-aes`: runs the AES throughput benchmark (`experiments/aes-bench`,
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
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // Recorded in the results as the command that produced them.
    let command: Vec<&str> = std::iter::once("cargo xtask bench-aes").chain(args.iter().map(String::as_str)).collect();
    let status = Command::new(&cargo)
        .current_dir(root)
        .args(["run", "--release", "-p", "sevault-aes-bench", "--"])
        .arg("--out-md")
        .arg(&md)
        .arg("--out-json")
        .arg(&json)
        .args(args)
        .env("SEVAULT_BENCH_COMMAND", command.join(" "))
        .status()
        .with_context(|| format!("could not start `{}`", cargo.to_string_lossy()))?;
    if !status.success() {
        bail!("the AES benchmark (sevault-aes-bench) failed: {status}");
    }
    // `--help` only prints the benchmark's usage.
    if !args.iter().any(|arg| arg == "-h" || arg == "--help") {
        println!("AES benchmark results: {} and {}", md.display(), json.display());
    }
    Ok(())
}
