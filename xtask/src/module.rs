//! `cargo xtask build`: the vault image, then `sevault.ko` — the Rust core (`hv/`) as a
//! no_std staticlib with the kernel's code model and mitigations, reduced to one relocatable
//! object that objtool has annotated, linked by Kbuild with the C glue (`hv/kernel/`).
//! Compiler, objtool and modpost warnings fail the build.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::setup::DebianKernel;
use crate::{cargo, guest};

/// rustc flags of the core on every kernel: kernel code model, no PIC, no unwind tables.
const BASE_RUSTFLAGS: &[&str] = &[
    "-C",
    "relocation-model=static",
    "-C",
    "code-model=kernel",
    "-C",
    "force-unwind-tables=no",
    "-C",
    "relro-level=off",
];

/// A kernel's `.config`, read for the options that decide how the Rust core is compiled and
/// checked.
pub struct KernelConfig {
    text: String,
}

impl KernelConfig {
    pub fn read(kdir: &Path) -> Result<Self> {
        let path = kdir.join(".config");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Self { text })
    }

    #[cfg(test)]
    fn from_text(text: &str) -> Self {
        Self { text: text.to_string() }
    }

    /// `CONFIG_<option>=<value>`, if set.
    fn value(&self, option: &str) -> Option<&str> {
        let key = format!("CONFIG_{option}=");
        self.text.lines().find_map(|line| line.strip_prefix(key.as_str()))
    }

    /// `CONFIG_<option>=y` under any of `names` (6.9 renamed the mitigations: RETPOLINE
    /// became MITIGATION_RETPOLINE, and so on).
    fn enabled(&self, names: &[&str]) -> bool {
        names.iter().any(|name| self.value(name) == Some("y"))
    }

    /// rustc flags that make the core match C objects of this configuration, as
    /// arch/x86/Makefile sets KBUILD_RUSTFLAGS for Rust-for-Linux: return thunks and
    /// retpolines; ENDBR at function entries and no jump tables under IBT (indirect
    /// branches need an ENDBR target, jump tables would need NOTRACK); call padding, where
    /// call-depth tracking puts its thunks and FineIBT its preamble.
    pub fn rustflags(&self) -> Result<Vec<String>> {
        let mut flags: Vec<String> = BASE_RUSTFLAGS.iter().map(|f| f.to_string()).collect();
        if self.enabled(&["RETPOLINE", "MITIGATION_RETPOLINE"]) {
            flags.push("-Zretpoline-external-thunk".into());
        }
        if self.enabled(&["RETHUNK", "MITIGATION_RETHUNK"]) {
            flags.push("-Zfunction-return=thunk-extern".into());
        }
        if self.enabled(&["X86_KERNEL_IBT"]) {
            flags.push("-Zcf-protection=branch".into());
            flags.push("-Cjump-tables=n".into());
        }
        if self.enabled(&["CALL_PADDING"]) {
            let bytes =
                self.value("FUNCTION_PADDING_BYTES").context("CONFIG_CALL_PADDING without FUNCTION_PADDING_BYTES")?;
            let bytes: u32 = bytes.parse().with_context(|| format!("CONFIG_FUNCTION_PADDING_BYTES={bytes}"))?;
            flags.push(format!("-Zpatchable-function-entry={bytes},{bytes}"));
        }
        if self.enabled(&["CFI_CLANG"]) {
            bail!("this kernel uses kCFI (CONFIG_CFI_CLANG): the Rust core is not built for it (Debian's kernels are not)");
        }
        Ok(flags)
    }

    /// objtool's arguments as scripts/Makefile.lib builds them for a module's object, or
    /// None when this kernel delays objtool to the linked module (`delay-objtool`: IBT or
    /// Clang LTO), where Kbuild runs it over the whole of sevault.o, the core included.
    pub fn objtool_args(&self) -> Option<Vec<String>> {
        if self.enabled(&["X86_KERNEL_IBT", "LTO_CLANG"]) {
            return None;
        }
        let table: &[(&[&str], &str)] = &[
            (&["HAVE_JUMP_LABEL_HACK"], "--hacks=jump_label"),
            (&["HAVE_NOINSTR_HACK"], "--hacks=noinstr"),
            (&["CALL_DEPTH_TRACKING", "MITIGATION_CALL_DEPTH_TRACKING"], "--hacks=skylake"),
            (&["FTRACE_MCOUNT_USE_OBJTOOL"], "--mcount"),
            (&["UNWINDER_ORC"], "--orc"),
            (&["RETPOLINE", "MITIGATION_RETPOLINE"], "--retpoline"),
            (&["RETHUNK", "MITIGATION_RETHUNK"], "--rethunk"),
            (&["SLS", "MITIGATION_SLS"], "--sls"),
            (&["STACK_VALIDATION"], "--stackval"),
            (&["HAVE_STATIC_CALL_INLINE"], "--static-call"),
            (&["HAVE_UACCESS_VALIDATION"], "--uaccess"),
            (&["GCOV_KERNEL", "KCOV"], "--no-unreachable"),
        ];
        let mut args: Vec<String> =
            table.iter().filter(|(names, _)| self.enabled(names)).map(|(_, arg)| arg.to_string()).collect();
        if self.enabled(&["FTRACE_MCOUNT_USE_OBJTOOL"]) && self.enabled(&["HAVE_OBJTOOL_NOP_MCOUNT"]) {
            args.push("--mnop".into());
        }
        if self.enabled(&["PREFIX_SYMBOLS"]) {
            args.push(format!("--prefix={}", self.value("FUNCTION_PADDING_BYTES").unwrap_or("16")));
        }
        args.push("--module".into());
        Some(args)
    }
}

/// Where the module for `kernel` goes.
pub fn ko_path(root: &Path, kernel: &DebianKernel) -> PathBuf {
    root.join("target/sevault").join(&kernel.release).join("sevault.ko")
}

/// The kernel version (major, minor) of a configured Kbuild tree, from the
/// `LINUX_VERSION_CODE` its `include/generated/uapi/linux/version.h` defines (what the
/// glue's `#if LINUX_VERSION_CODE` blocks see).
fn kernel_version(kdir: &Path) -> Result<(u32, u32)> {
    let path = kdir.join("include/generated/uapi/linux/version.h");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (a configured kernel tree?)", path.display()))?;
    version_from_header(&text).with_context(|| format!("no LINUX_VERSION_CODE in {}", path.display()))
}

fn version_from_header(text: &str) -> Option<(u32, u32)> {
    let code: u32 = text.lines().find_map(|l| l.strip_prefix("#define LINUX_VERSION_CODE"))?.trim().parse().ok()?;
    Some((code >> 16, (code >> 8) & 0xFF))
}

/// The kernel versions the glue and the build know.
pub const KNOWN_VERSIONS: &[(u32, u32)] = &[(6, 1), (6, 12)];

/// Builds `target/sevault/<release>/sevault.ko`.
pub fn build(root: &Path, kernel: &DebianKernel) -> Result<PathBuf> {
    let image = guest::build(root)?;
    let kdir = kernel.headers();
    ensure!(
        kdir.join("Makefile").exists(),
        "no kernel headers at {} (run `cargo xtask setup --kernel {}` or set KDIR)",
        kdir.display(),
        kernel.line.name()
    );
    let version = kernel_version(&kdir)?;
    ensure!(
        KNOWN_VERSIONS.contains(&version),
        "the headers at {} are of Linux {}.{}: sevault.ko knows {} (adding one: thesis-notes/test-platform.md)",
        kdir.display(),
        version.0,
        version.1,
        KNOWN_VERSIONS.iter().map(|(a, b)| format!("{a}.{b}")).collect::<Vec<_>>().join(" and ")
    );
    let config = KernelConfig::read(&kdir)?;
    let rustflags = config.rustflags()?.join(" ");
    // One target directory per kernel: the flags differ, and so would every rebuild.
    let target_dir = root.join("target").join("kmod").join(&kernel.release);
    println!("xtask: building the hypervisor core (no_std staticlib, -Zbuild-std)");
    let out = cargo(root)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTC_BOOTSTRAP", "1")
        .env("SEVAULT_GUEST_BIN", &image)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_TARGET_X86_64_UNKNOWN_NONE_RUSTFLAGS", &rustflags)
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

    let build_dir = root.join("target").join("sevault").join("kbuild").join(&kernel.release);
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
    match config.objtool_args() {
        Some(args) => {
            // Debian's objtool is a wrapper that picks the real one by SRCARCH, which Kbuild
            // exports.
            let objtool = kdir.join("tools/objtool/objtool");
            let objtool_log =
                run_quiet(Command::new(&objtool).env("SRCARCH", "x86").args(&args).arg(&core), "objtool")?;
            let warnings = warning_lines(&objtool_log);
            ensure!(warnings.is_empty(), "objtool warnings on the Rust core:\n{}", warnings.join("\n"));
        }
        None => println!("xtask: objtool runs on the linked module (this kernel delays it: IBT)"),
    }

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
    let ko = ko_path(root, kernel);
    std::fs::create_dir_all(ko.parent().context("no parent")?)?;
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

    /// Expected flags and arguments from the kernels' own Makefiles: arch/x86/Makefile
    /// (KBUILD_RUSTFLAGS: RETPOLINE_RUSTFLAGS, RETHUNK_RUSTFLAGS, `-Zcf-protection=branch`
    /// under X86_KERNEL_IBT, PADDING_RUSTFLAGS under CALL_PADDING) and scripts/Makefile.lib
    /// (objtool-args-y, `delay-objtool := $(or $(CONFIG_LTO_CLANG),$(CONFIG_X86_KERNEL_IBT))`)
    /// of Debian's 6.1.0 and 6.12 headers, for excerpts of their `.config`.
    #[test]
    fn flags_follow_the_kernel_config() {
        let debian_6_1 = KernelConfig::from_text(
            "CONFIG_RETPOLINE=y\nCONFIG_RETHUNK=y\nCONFIG_SLS=y\nCONFIG_HAVE_JUMP_LABEL_HACK=y\n\
             CONFIG_HAVE_NOINSTR_HACK=y\nCONFIG_UNWINDER_ORC=y\nCONFIG_HAVE_STATIC_CALL_INLINE=y\n\
             CONFIG_HAVE_UACCESS_VALIDATION=y\n# CONFIG_X86_KERNEL_IBT is not set\n",
        );
        let flags = debian_6_1.rustflags().unwrap().join(" ");
        assert!(flags.ends_with("-Zretpoline-external-thunk -Zfunction-return=thunk-extern"), "{flags}");
        assert_eq!(
            debian_6_1.objtool_args().unwrap(),
            [
                "--hacks=jump_label",
                "--hacks=noinstr",
                "--orc",
                "--retpoline",
                "--rethunk",
                "--sls",
                "--static-call",
                "--uaccess",
                "--module"
            ]
        );
        let debian_6_12 = KernelConfig::from_text(
            "CONFIG_MITIGATION_RETPOLINE=y\nCONFIG_MITIGATION_RETHUNK=y\nCONFIG_X86_KERNEL_IBT=y\n\
             CONFIG_CALL_PADDING=y\nCONFIG_FUNCTION_PADDING_BYTES=16\nCONFIG_PREFIX_SYMBOLS=y\n",
        );
        let flags = debian_6_12.rustflags().unwrap().join(" ");
        assert!(
            flags.ends_with(
                "-Zretpoline-external-thunk -Zfunction-return=thunk-extern -Zcf-protection=branch -Cjump-tables=n \
                 -Zpatchable-function-entry=16,16"
            ),
            "{flags}"
        );
        assert_eq!(debian_6_12.objtool_args(), None, "IBT delays objtool to the linked module");
        assert!(KernelConfig::from_text("CONFIG_CFI_CLANG=y\n").rustflags().is_err());
    }

    #[test]
    fn reads_the_kernel_version() {
        // include/generated/uapi/linux/version.h of Debian's 6.12.117 and 6.1 headers.
        let v6_12 = "#define LINUX_VERSION_CODE 396405\n#define KERNEL_VERSION(a,b,c) ...\n";
        assert_eq!(version_from_header(v6_12), Some((6, 12)));
        assert_eq!(version_from_header("#define LINUX_VERSION_CODE 393664\n"), Some((6, 1)));
        assert_eq!(version_from_header("nothing"), None);
    }

    #[test]
    fn finds_warnings() {
        let log = "  CC [M]  x.o\nx.o: warning: objtool: foo+0x1: call without frame\nWARNING: modpost: missing MODULE_LICENSE()\n  LD [M]  sevault.ko\n";
        assert_eq!(warning_lines(log).len(), 2);
    }
}
