//! `cargo xtask <task>`: the one entry point for building, running and testing SE-Vault Mini.
//!
//! Tasks:
//! - `build-guest`: build the vault image, check it, write `target/sevault/guest.bin`;
//! - `bench-aes [--seconds S]`: the vault's AES code against RustCrypto and OpenSSL on the
//!   host, results in `experiments/results/`;
//! - `test`: every host test (`cargo test --workspace`), then the vault image build.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

mod bench;
mod guest;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  build-guest            build the vault image into target/sevault/guest.bin and print its size
  bench-aes [--seconds S] benchmark the vault's AES code against RustCrypto and OpenSSL
  test                   run every host test, then build the vault image";

fn main() {
    if let Err(error) = run() {
        eprintln!("xtask: error: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    let Some((task, rest)) = args.split_first() else {
        println!("{USAGE}");
        bail!("no task given");
    };
    match task.as_str() {
        "build-guest" => ensure_toolchain(&root)
            .and_then(|()| guest::build(&root))
            .map(|_| ()),
        "bench-aes" => bench::bench_aes(&root, rest),
        "test" => test(&root),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => {
            println!("{USAGE}");
            bail!("unknown task `{other}`")
        }
    }
}

/// The workspace root: xtask lives one level below it.
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Runs `command`, streaming its output; fails with the command line if it fails.
pub(crate) fn run_command(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

/// A `cargo` invocation run from the workspace root.
pub(crate) fn cargo(root: &Path) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root);
    command
}

/// Makes sure the pinned toolchain has the vault's target and `rust-src` (a fresh machine's
/// rustup may have installed the toolchain without them); quiet when they are there.
pub(crate) fn ensure_toolchain(root: &Path) -> Result<()> {
    let installed = |what: &str| -> Result<String> {
        let out = Command::new("rustup")
            .current_dir(root)
            .args([what, "list", "--installed"])
            .output()
            .context("cannot run rustup (the project needs a rustup-managed toolchain)")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    if !installed("target")?
        .lines()
        .any(|l| l.trim() == guest::TARGET)
    {
        println!("xtask: installing the rustup target {}", guest::TARGET);
        run_command(Command::new("rustup").current_dir(root).args([
            "target",
            "add",
            guest::TARGET,
        ]))?;
    }
    if !installed("component")?
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        println!("xtask: installing the rustup component rust-src");
        run_command(Command::new("rustup").current_dir(root).args([
            "component",
            "add",
            "rust-src",
        ]))?;
    }
    Ok(())
}

fn test(root: &Path) -> Result<()> {
    ensure_toolchain(root)?;
    let mut results = Vec::new();
    println!("xtask: [1/2] host tests: cargo test --workspace");
    let host = run_command(cargo(root).args(["test", "--workspace"]));
    results.push(("host tests (cargo test --workspace)", host));
    println!("xtask: [2/2] vault image");
    let image = guest::build(root).map(|_| ());
    results.push(("vault image build (≤ 4096 bytes)", image));
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    println!();
    for (name, result) in &results {
        match result {
            Ok(()) => println!("PASS  {name}"),
            Err(error) => println!("FAIL  {name}: {error:#}"),
        }
    }
    println!("{} passed, {failed} failed", results.len() - failed);
    if failed > 0 {
        bail!("{failed} suite(s) failed");
    }
    Ok(())
}
