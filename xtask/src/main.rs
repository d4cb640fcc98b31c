//! `cargo xtask <task>`: the one entry point for building, running and testing SE-Vault Mini.
//!
//! Tasks (see `USAGE`):
//! - `demo`: the main job — the nested VM, the vault (once built) serving crypto requests;
//! - `test`: set-up, host tests, the vault image, the in-VM suite;
//! - `setup`: Debian packages and the rustup target;
//! - `vm`: boot the nested VM with scripts;
//! - `build-guest`: build the vault image, check it, write `target/sevault/guest.bin`;
//! - `bench-aes`: the vault's AES code against RustCrypto and OpenSSL on the host;
//! - `cost-model`: the HV's host work per request and the predictions for EPYC hardware.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

mod bench;
mod demo;
mod guest;
mod initramfs;
mod module;
mod nmi;
mod plots;
mod setup;
mod sevmeasure;
mod vc_check;
mod vm;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  demo [VM OPTIONS]       the main job: the vault serving crypto requests in the nested VM, with a report
  test [--kernel K]       set up, every host test, the vault image, the in-VM suites, on kernel K
                          (6.1, 6.12 or all; default 6.1)
  setup [--kernel K]      install what the project needs (Debian 12, as root), idempotently
  vm [VM OPTIONS]         boot the nested VM and run scripts in it; exits with their status
  build [--kernel K]      build the vault image and sevault.ko (target/sevault/<release>/)
  build-guest             build the vault image into target/sevault/guest.bin and print its size
  bench-aes [--seconds S] benchmark the vault's AES code against RustCrypto and OpenSSL (host)
  bench-vm [--seconds S] [--kernel K]  the vault in the nested VM: VMRUNs per request, throughput vs AES-NI/generic
  cost-model              the HV's host-side work per request (measured) and the predicted vault/AES-NI ratio on EPYC
  bench-dmcrypt [--seconds S] [--kernel K]  fio through dm-crypt on the vault, AES-NI and generic AES (nested VM)
  plots                   the SVG plots of bench-aes, bench-vm and bench-dmcrypt, again from experiments/results/
  sev-crosscheck          the vault's SNP and SEV-ES launch digests (sev-launch) against sev-snp-measure 0.0.13, 1/2/4 vCPUs
  sev-measurements        expected SEV/SEV-ES/SNP launch digests of the vault image -> experiments/results/measurements.md

VM OPTIONS: [--script FILE]... [--binary PATH]... [--ko FILE] [--smp N] [--mem MIB] [--accel tcg|kvm|auto]
            [--timeout SECONDS] [--log FILE] [--qemu-arg ARG]... [--kernel-arg ARG]... [--kernel 6.1|6.12]";

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
        "build" => {
            let (lines, rest) = setup::take_kernel_flag(rest, true)?;
            ensure!(rest.is_empty(), "usage: cargo xtask build [--kernel 6.1|6.12|all]");
            for line in lines {
                module::build(&root, &setup::setup(&root, line)?)?;
            }
            let kcheck = build_kcheck(&root)?;
            println!("xtask: checker: {}", kcheck.display());
            Ok(())
        }
        "build-guest" => ensure_toolchain(&root).and_then(|()| guest::build(&root)).map(|_| ()),
        "bench-aes" => bench::bench_aes(&root, rest),
        "bench-vm" => bench::bench_vm(&root, rest),
        "cost-model" => bench::cost_model(&root, rest),
        "bench-dmcrypt" => bench::bench_dmcrypt(&root, rest),
        "plots" => plots::all(&root),
        "sev-crosscheck" => ensure_toolchain(&root).and_then(|()| sevmeasure::crosscheck(&root)),
        "sev-measurements" => ensure_toolchain(&root).and_then(|()| sevmeasure::measurements(&root)),
        "test" => {
            let (lines, rest) = setup::take_kernel_flag(rest, true)?;
            ensure!(rest.is_empty(), "usage: cargo xtask test [--kernel 6.1|6.12|all]");
            test(&root, &lines)
        }
        "demo" => demo::demo(&root, rest),
        "vm" => {
            let status = vm::command(&root, rest)?;
            if status != 0 {
                std::process::exit(status);
            }
            Ok(())
        }
        "setup" => {
            let (lines, rest) = setup::take_kernel_flag(rest, true)?;
            ensure!(rest.is_empty(), "usage: cargo xtask setup [--kernel 6.1|6.12|all]");
            for line in lines {
                let kernel = setup::setup(&root, line)?;
                println!("xtask: set up; nested VM kernel {} ({})", kernel.release, kernel.vmlinuz().display());
            }
            Ok(())
        }
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
    let status = command.status().with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

/// The vault module built for `kernel`, if there is one.
pub(crate) fn built_module(root: &Path, kernel: &setup::DebianKernel) -> Option<PathBuf> {
    Some(module::ko_path(root, kernel)).filter(|ko| ko.exists())
}

/// The AF_ALG checker, if built.
pub(crate) fn built_kcheck(root: &Path) -> Option<PathBuf> {
    Some(root.join(KCHECK_BIN)).filter(|k| k.exists())
}

/// Where `build_kcheck` puts the checker.
const KCHECK_BIN: &str = "target/kcheck/x86_64-unknown-linux-gnu/release/sevault-kcheck";

/// Builds the AF_ALG checker that runs in the nested VM: statically linked, so the image
/// needs no more libraries for it.
pub(crate) fn build_kcheck(root: &Path) -> Result<PathBuf> {
    let out = cargo(root)
        .env("CARGO_TARGET_DIR", root.join("target/kcheck"))
        .env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS", "-C target-feature=+crt-static")
        .args(["build", "--quiet", "--release", "--package", "sevault-kcheck", "--target", "x86_64-unknown-linux-gnu"])
        .status()
        .context("building sevault-kcheck")?;
    ensure!(out.success(), "building sevault-kcheck failed");
    Ok(root.join(KCHECK_BIN))
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
    if !installed("target")?.lines().any(|l| l.trim() == guest::TARGET) {
        println!("xtask: installing the rustup target {}", guest::TARGET);
        run_command(Command::new("rustup").current_dir(root).args(["target", "add", guest::TARGET]))?;
    }
    if !installed("component")?.lines().any(|l| l.starts_with("rust-src")) {
        println!("xtask: installing the rustup component rust-src");
        run_command(Command::new("rustup").current_dir(root).args(["component", "add", "rust-src"]))?;
    }
    Ok(())
}

/// One line of the final summary.
struct SuiteResult {
    name: String,
    outcome: Result<()>,
}

fn test(root: &Path, lines: &[setup::KernelLine]) -> Result<()> {
    let mut results = Vec::new();
    let mut record = |name: &str, outcome: Result<()>| {
        let line = match &outcome {
            Ok(()) => format!("PASS  {name}"),
            Err(error) => format!("FAIL  {name}: {error:#}"),
        };
        println!("xtask: {line}");
        results.push(SuiteResult { name: name.to_string(), outcome });
    };
    let names: Vec<&str> = lines.iter().map(|l| l.name()).collect();
    println!("xtask: [1/5] set-up (packages, rustup target, kernels {})", names.join(", "));
    let kernels: Vec<(setup::KernelLine, Result<setup::DebianKernel>)> =
        lines.iter().map(|&line| (line, setup::setup(root, line))).collect();
    for (line, kernel) in &kernels {
        record(
            &format!("set-up, kernel {}", line.name()),
            kernel.as_ref().map(|_| ()).map_err(|e| anyhow::anyhow!("{e:#}")),
        );
    }
    println!("xtask: [2/5] host checks: cargo fmt --check, cargo clippy -D warnings, cargo test --workspace");
    record("formatting (cargo fmt --check)", run_command(cargo(root).args(["fmt", "--all", "--check"])));
    record(
        "lints (cargo clippy --workspace --all-targets -D warnings)",
        run_command(cargo(root).args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])),
    );
    record("host tests (cargo test --workspace)", run_command(cargo(root).args(["test", "--workspace"])));
    println!("xtask: [3/5] vault image");
    record("vault image build (<= 4096 bytes)", guest::build(root).map(|_| ()));
    let elf = root.join("target/x86_64-unknown-none/vault/sevault-vault");
    let vc = std::fs::read(&elf).context("reading the vault ELF").and_then(|elf| vc_check::check_elf(&elf));
    record("vault image: no instruction that raises #VC under SEV-ES (iced-x86)", vc.map(|_| ()));
    record(
        "SNP and SEV-ES launch digests: sev-launch equals sev-snp-measure 0.0.13 (1, 2, 4 vCPUs)",
        sevmeasure::crosscheck(root),
    );
    println!("xtask: [4/5] sevault.ko and the in-VM checker");
    let kcheck = build_kcheck(root);
    let kcheck_ok = kcheck.is_ok();
    record("sevault-kcheck build (static)", kcheck.map(|_| ()));
    let mut built = Vec::new();
    for (line, kernel) in &kernels {
        if let Ok(kernel) = kernel {
            let ko = module::build(root, kernel);
            if ko.is_ok() && kcheck_ok {
                built.push(kernel.clone());
            }
            record(
                &format!("sevault.ko build for {} (no compiler/objtool/modpost warnings)", kernel.release),
                ko.map(|_| ()),
            );
        } else {
            record(
                &format!("sevault.ko build, kernel {}", line.name()),
                Err(anyhow::anyhow!("not run: set-up failed")),
            );
        }
    }
    println!("xtask: [5/5] in-VM suites (tests/vm, tests/vm-hotplug)");
    for (line, _) in &kernels {
        let Some(kernel) = built.iter().find(|k| k.line == *line) else {
            record(&format!("[{}] in-VM suite", line.name()), Err(anyhow::anyhow!("not run: set-up or build failed")));
            continue;
        };
        let suites = [("tests/vm", &[][..], &[][..]), ("tests/vm-hotplug", HOTPLUG_QEMU_ARGS, HOTPLUG_KERNEL_ARGS)];
        for (dir, qemu, kernel_args) in suites {
            for (name, outcome) in vm_suite(root, kernel, dir, qemu, kernel_args) {
                record(&format!("[{}] {name}", line.name()), outcome);
            }
        }
    }
    let failed = results.iter().filter(|r| r.outcome.is_err()).count();
    println!();
    for result in &results {
        match &result.outcome {
            Ok(()) => println!("PASS  {}", result.name),
            Err(error) => println!("FAIL  {}: {error:#}", result.name),
        }
    }
    for line in lines {
        let prefix = format!("[{}] ", line.name());
        let mine: Vec<&SuiteResult> = results.iter().filter(|r| r.name.starts_with(&prefix)).collect();
        let bad = mine.iter().filter(|r| r.outcome.is_err()).count();
        println!("kernel {}: {} of {} in-VM results passed", line.name(), mine.len() - bad, mine.len());
    }
    println!("{} passed, {failed} failed", results.len() - failed);
    if failed > 0 {
        bail!("{failed} suite(s) failed");
    }
    Ok(())
}

/// QEMU arguments of the `tests/vm-hotplug` VM: a 128 MiB DIMM at host-physical 512 GiB, just
/// beyond the vault's old host window (room for it: `maxmem`).
const HOTPLUG_QEMU_ARGS: &[&str] = &[
    "-m",
    "1G,slots=2,maxmem=700G",
    "-object",
    "memory-backend-ram,id=beyond,size=128M",
    "-device",
    "pc-dimm,memdev=beyond,addr=0x8000000000",
];

/// Kernel arguments of that VM: hot-plugged memory stays offline at boot on every kernel
/// (6.1's config leaves it offline, 6.12's onlines it: CONFIG_MHP_DEFAULT_ONLINE_TYPE_ONLINE_AUTO),
/// so the test starts with the DIMM beyond the window offline; and only the first of the two
/// CPUs comes up (`maxcpus=1`), so that the second comes online with the vault loaded.
const HOTPLUG_KERNEL_ARGS: &[&str] = &["memhp_default_state=offline", "maxcpus=1"];

/// Boots one VM with every script of `dir` (and the vault module when built), with `qemu`
/// arguments added; one result per script, plus one for the run itself (kernel log,
/// timeout, crash).
fn vm_suite(
    root: &Path,
    kernel: &setup::DebianKernel,
    dir: &str,
    qemu: &[&str],
    kernel_args: &[&str],
) -> Vec<(String, Result<()>)> {
    let scripts = match vm_scripts(&root.join(dir)) {
        Ok(scripts) => scripts,
        Err(error) => return vec![("in-VM suite".into(), Err(error))],
    };
    let options = vm::Options {
        scripts: scripts.clone(),
        ko: built_module(root, kernel),
        kcheck: built_kcheck(root),
        timeout: std::time::Duration::from_secs(1200),
        qemu_extra: qemu.iter().map(|a| a.to_string()).collect(),
        kernel_args: kernel_args.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    };
    let outcome = match vm::run(root, kernel, &options) {
        Ok(outcome) => outcome,
        Err(error) => return vec![("in-VM suite".into(), Err(error))],
    };
    let mut results: Vec<(String, Result<()>)> = scripts
        .iter()
        .map(|script| {
            let name = script.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let status = outcome.console.scripts.iter().find(|(n, _)| *n == name).map(|(_, s)| *s);
            let result = match status {
                Some(0) => Ok(()),
                Some(status) => Err(anyhow::anyhow!("exited with {status}")),
                None => Err(anyhow::anyhow!("did not finish")),
            };
            (format!("{dir}: {name}"), result)
        })
        .collect();
    let run_problems: Vec<String> = outcome.problems().into_iter().filter(|p| !p.starts_with("script ")).collect();
    let run = if run_problems.is_empty() { Ok(()) } else { Err(anyhow::anyhow!(run_problems.join("; "))) };
    results.push((format!("{dir}: clean run ({:.1} s wall, kernel log clean)", outcome.wall.as_secs_f64()), run));
    results
}

/// The `*.sh` files of `dir`, sorted by name.
fn vm_scripts(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "sh"))
        .collect();
    scripts.sort();
    if scripts.is_empty() {
        bail!("no scripts in {}", dir.display());
    }
    Ok(scripts)
}
