//! `cargo xtask build`: the vault image, then `sevault.ko` — the Rust core (`hv/`) as a
//! no_std staticlib with the kernel's code model and mitigations, reduced to one relocatable
//! object that objtool has annotated, linked by Kbuild with the C glue (`hv/kernel/`).
//! Compiler, objtool and modpost warnings fail the build.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::setup::DebianKernel;
use crate::{cargo, guest};

/// rustc flags of the core (FACTS.md: what makes a Rust object loadable by a Debian 6.1
/// kernel: kernel code model, no PIC, no unwind tables, retpolines and return thunks).
const RUSTFLAGS: &str = "-C relocation-model=static -C code-model=kernel -C force-unwind-tables=no \
-C relro-level=off -Zretpoline-external-thunk -Zfunction-return=thunk-extern";

/// objtool as Kbuild runs it on C objects of this kernel configuration.
const OBJTOOL_ARGS: &[&str] = &[
    "--hacks=jump_label",
    "--hacks=noinstr",
    "--orc",
    "--retpoline",
    "--rethunk",
    "--sls",
    "--static-call",
    "--uaccess",
    "--module",
];

/// Builds `target/sevault/sevault.ko`.
pub fn build(root: &Path, kernel: &DebianKernel) -> Result<PathBuf> {
    let image = guest::build(root)?;
    let kdir = kernel.headers();
    ensure!(
        kdir.join("Makefile").exists(),
        "no kernel headers at {} (run `cargo xtask setup` or set KDIR)",
        kdir.display()
    );
    let target_dir = root.join("target").join("kmod");
    println!("xtask: building the hypervisor core (no_std staticlib, -Zbuild-std)");
    let out = cargo(root)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTC_BOOTSTRAP", "1")
        .env("SEVAULT_GUEST_BIN", &image)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_TARGET_X86_64_UNKNOWN_NONE_RUSTFLAGS", RUSTFLAGS)
        .args([
            "rustc",
            "--package",
            "sevault-hv",
            "--release",
            "--target",
            guest::TARGET,
            "--crate-type",
            "staticlib",
            "-Zbuild-std=core,compiler_builtins",
            "-Zbuild-std-features=compiler-builtins-mem",
        ])
        .output()
        .context("running cargo rustc")?;
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.success(), "building the hypervisor core failed:\n{log}");
    let warnings = warning_lines(&log);
    ensure!(warnings.is_empty(), "the hypervisor core built with warnings:\n{}", warnings.join("\n"));

    let build_dir = root.join("target").join("sevault").join("kbuild");
    let extract = build_dir.join("objects");
    let _ = std::fs::remove_dir_all(&build_dir);
    std::fs::create_dir_all(&extract)?;
    let archive = target_dir.join(guest::TARGET).join("release").join("libsevault_hv.a");
    run_quiet(Command::new("ar").current_dir(&extract).arg("x").arg(&archive), "ar x")?;
    let members = run_quiet(Command::new("ar").arg("t").arg(&archive), "ar t")?;
    let objects = core_objects(&members);
    ensure!(!objects.is_empty(), "no Rust core object in {}", archive.display());
    let core = build_dir.join("sevault_core.rust_o");
    run_quiet(Command::new("ld").current_dir(&extract).arg("-r").arg("-o").arg(&core).args(&objects), "ld -r")?;
    run_quiet(Command::new("objcopy").arg("--strip-debug").arg(&core), "objcopy")?;
    let objtool = kdir.join("tools/objtool/objtool");
    let objtool_log = run_quiet(Command::new(&objtool).args(OBJTOOL_ARGS).arg(&core), "objtool")?;
    let warnings = warning_lines(&objtool_log);
    ensure!(warnings.is_empty(), "objtool warnings on the Rust core:\n{}", warnings.join("\n"));

    for file in ["Kbuild", "sevault_glue.c", "sevault_psp.c", "sevault_vmexit.S", "sevault_glue.h"] {
        std::fs::copy(root.join("hv/kernel").join(file), build_dir.join(file))
            .with_context(|| format!("copying {file}"))?;
    }
    println!("xtask: linking sevault.ko against {}", kdir.display());
    let log = run_quiet(
        Command::new("make").arg("-C").arg(&kdir).arg(format!("M={}", build_dir.display())).arg("modules"),
        "make modules",
    )?;
    let warnings = warning_lines(&log);
    ensure!(warnings.is_empty(), "Kbuild/modpost warnings:\n{}", warnings.join("\n"));
    let ko = root.join("target/sevault/sevault.ko");
    std::fs::copy(build_dir.join("sevault.ko"), &ko).context("copying sevault.ko")?;
    let size = std::fs::metadata(&ko)?.len();
    println!("xtask: module: {} ({} KiB), vault image embedded", ko.display(), size / 1024);
    Ok(ko)
}

/// Runs a tool, returns its output; fails with the output if the tool fails.
fn run_quiet(command: &mut Command, what: &str) -> Result<String> {
    let out = command.output().with_context(|| format!("cannot run {what}"))?;
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("{what} failed ({}):\n{log}", out.status);
    }
    Ok(log)
}

/// The archive members that are the core itself (not compiler_builtins: the kernel has its
/// own memcpy/memset, and the rest is unused).
fn core_objects(members: &str) -> Vec<String> {
    members
        .lines()
        .map(str::trim)
        .filter(|m| m.ends_with(".o") && !m.starts_with("compiler_builtins-"))
        .map(String::from)
        .collect()
}

/// Lines that report a warning, from any of the tools.
fn warning_lines(log: &str) -> Vec<String> {
    log.lines().filter(|l| l.to_ascii_lowercase().contains("warning")).map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_core_objects() {
        let members = "sevault_hv-1a2b.sevault_hv.abc-cgu.0.rcgu.o\ncompiler_builtins-9f.compiler_builtins.x-cgu.001.rcgu.o\nlib.rmeta\n";
        assert_eq!(core_objects(members), ["sevault_hv-1a2b.sevault_hv.abc-cgu.0.rcgu.o"]);
    }

    #[test]
    fn finds_warnings() {
        let log = "  CC [M]  x.o\nx.o: warning: objtool: foo+0x1: call without frame\nWARNING: modpost: missing MODULE_LICENSE()\n  LD [M]  sevault.ko\n";
        assert_eq!(warning_lines(log).len(), 2);
    }
}
