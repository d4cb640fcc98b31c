//! The nested VM's initramfs: busybox, the Debian kernel's crypto modules, libkcapi's tools,
//! the vault module when built, the scripts to run, and an `/init` that runs them and powers
//! the VM off. Written as an uncompressed `newc` cpio archive (the kernel unpacks it as is).
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Modules every VM loads: AF_ALG and netlink crypto for libkcapi's tools, the kernel's
/// AES-NI drivers (and ECB, a module in Debian's kernel) for comparison.
pub const CRYPTO_MODULES: &[&str] =
    &["crypto_user", "af_alg", "algif_skcipher", "algif_hash", "ecb", "aesni-intel", "cryptd", "crypto_simd"];

/// Modules in the image that `/init` does not load: scripts `modprobe` them when they need
/// them — kvm_amd (KVM beside the vault), the kernel's XTS/CTR/GCM templates and AF_ALG's
/// AEAD interface (references and gcm(aes) on the vault's CTR), and dm-crypt with a ramdisk
/// and ext4 (with the crc32c it checksums metadata with) — dm-crypt as a client — and
/// `cpuid` (`/dev/cpu/N/cpuid`, read by the EPYC first-boot script); a researcher's own
/// `--script` can use them too.
pub const ON_DEMAND_MODULES: &[&str] = &[
    "kvm_amd",
    "xts",
    "ctr",
    "gcm",
    "ghash-generic",
    "algif_aead",
    "dm-crypt",
    "brd",
    "ext4",
    "crc32c_generic",
    "cpuid",
];

/// Files of the repository copied into every image, and where: the EPYC first-boot script
/// (so that the nested VM runs it too).
pub const REPO_FILES: &[(&str, &str)] =
    &[("experiments/sev-first-boot/first-boot.sh", "usr/bin/sevault-sev-first-boot")];

/// Binaries from the host copied into the image, with the libraries they load: libkcapi's
/// tools, and cryptsetup, dmsetup and e2fsprogs' mke2fs/e2fsck for dm-crypt volumes.
pub const HOST_BINARIES: &[&str] =
    &["/usr/bin/kcapi-enc", "/usr/bin/kcapi-dgst", "/sbin/cryptsetup", "/sbin/dmsetup", "/sbin/mke2fs", "/sbin/e2fsck"];

/// Where the vault module goes in the image.
pub const KO_PATH: &str = "lib/sevault/sevault.ko";

/// Console markers between `/init` and the harness (`vm.rs` parses them).
pub mod marker {
    /// Written to the kernel log (and console) when the scripts start: kernel-log lines after
    /// it count against the run.
    pub const TEST_START: &str = "SEVAULT-TEST-START";
    /// `SEVAULT-SCRIPT-BEGIN <name>`.
    pub const SCRIPT_BEGIN: &str = "SEVAULT-SCRIPT-BEGIN";
    /// `SEVAULT-SCRIPT-END <name> <status>`.
    pub const SCRIPT_END: &str = "SEVAULT-SCRIPT-END";
    /// Frames the kernel log written since `TEST_START`.
    pub const DMESG_BEGIN: &str = "SEVAULT-DMESG-BEGIN";
    /// End of that frame.
    pub const DMESG_END: &str = "SEVAULT-DMESG-END";
    /// `SEVAULT-RESULT <status>`: the last line before power-off.
    pub const RESULT: &str = "SEVAULT-RESULT";
    /// `SEVAULT-NMI-STORM-BEGIN <microseconds>`: a script asks the harness to inject NMIs
    /// through the QEMU monitor at that interval until `NMI_STORM_END`.
    pub const NMI_STORM_BEGIN: &str = "SEVAULT-NMI-STORM-BEGIN";
    /// Stops the storm; the harness answers on the console side with the count sent.
    pub const NMI_STORM_END: &str = "SEVAULT-NMI-STORM-END";
}

/// One member of the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A directory.
    Dir(String),
    /// A file with its content and mode bits.
    File { path: String, data: Vec<u8>, mode: u32 },
    /// A symbolic link to `target`.
    Symlink { path: String, target: String },
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Self::Dir(path) | Self::File { path, .. } | Self::Symlink { path, .. } => path,
        }
    }
}

/// What goes into the image.
#[derive(Clone, Debug, Default)]
pub struct Spec {
    /// Kernel release (`lib/modules/<release>`).
    pub release: String,
    /// The kernel's `lib/modules/<release>` directory.
    pub modules_dir: PathBuf,
    /// Module names to include with their dependencies, loaded by `/init`.
    pub modules: Vec<String>,
    /// Module names to include with their dependencies, not loaded.
    pub on_demand_modules: Vec<String>,
    /// The vault module, if built.
    pub ko: Option<PathBuf>,
    /// Scripts to run, in order.
    pub scripts: Vec<PathBuf>,
    /// More host files to copy: (source, path in the image).
    pub extra_files: Vec<(PathBuf, String)>,
    /// More host binaries (absolute paths), with their libraries, as [`HOST_BINARIES`].
    pub extra_binaries: Vec<String>,
}

/// The module files (relative to `lib/modules/<release>`) that `wanted` needs, from the text of
/// `modules.dep`: each wanted module and its dependencies, transitively.
pub fn module_closure(modules_dep: &str, wanted: &[String]) -> Result<BTreeSet<String>> {
    let deps: BTreeMap<&str, Vec<&str>> = modules_dep
        .lines()
        .filter_map(|line| {
            let (module, rest) = line.split_once(':')?;
            Some((module.trim(), rest.split_whitespace().collect()))
        })
        .collect();
    let by_name: BTreeMap<String, &str> = deps.keys().map(|path| (module_name(path), *path)).collect();
    let mut out = BTreeSet::new();
    let mut todo: Vec<&str> = Vec::new();
    for name in wanted {
        let path = by_name.get(&normalize(name)).with_context(|| format!("module {name} is not in modules.dep"))?;
        todo.push(path);
    }
    while let Some(path) = todo.pop() {
        if out.insert(path.to_string()) {
            todo.extend(deps.get(path).into_iter().flatten().copied());
        }
    }
    Ok(out)
}

/// `kernel/crypto/algif_skcipher.ko` → `algif_skcipher` (dashes and underscores are the same
/// to modprobe).
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    normalize(stem)
}

fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// A module list (`modules.dep`, `modules.builtin`) with compressed names (`x.ko.xz`) as
/// the image has them (`x.ko`).
pub fn uncompressed_names(text: &str) -> String {
    text.replace(".ko.xz", ".ko").replace(".ko.zst", ".ko").replace(".ko.gz", ".ko")
}

/// Whether module `name` is built into the kernel, per the text of `modules.builtin`.
pub fn is_builtin(modules_builtin: &str, name: &str) -> bool {
    modules_builtin.lines().any(|path| module_name(path.trim()) == normalize(name))
}

/// A module file's contents, decompressed if the kernel ships it as `<path>.xz`.
fn read_module(path: &Path) -> Result<Vec<u8>> {
    if path.exists() {
        return std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    }
    let compressed = PathBuf::from(format!("{}.xz", path.display()));
    let out = Command::new("xz")
        .arg("-dc")
        .arg(&compressed)
        .output()
        .with_context(|| format!("cannot run xz -dc {}", compressed.display()))?;
    if !out.status.success() {
        bail!("xz -dc {} failed: {}", compressed.display(), String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

/// `modules.dep` restricted to `included`.
pub fn filter_modules_dep(modules_dep: &str, included: &BTreeSet<String>) -> String {
    modules_dep
        .lines()
        .filter(|line| line.split_once(':').is_some_and(|(module, _)| included.contains(module.trim())))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// `modules.alias` restricted to aliases of included modules (so that the kernel's
/// `request_module("crypto-…")` finds them through busybox modprobe).
pub fn filter_modules_alias(modules_alias: &str, included: &BTreeSet<String>) -> String {
    let names: BTreeSet<String> = included.iter().map(|path| module_name(path)).collect();
    modules_alias
        .lines()
        .filter(|line| {
            let mut words = line.split_whitespace();
            words.next() == Some("alias") && words.nth(1).is_some_and(|module| names.contains(&normalize(module)))
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

/// The shared objects `ldd` lists for a binary (absolute paths; the vDSO left out).
pub fn parse_ldd(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_string())
        })
        .collect()
}

/// The `/init` script: mount, load modules, run every script (recording each status), dump
/// the kernel log written since the scripts started, power off.
pub fn init_script(modules: &[String], scripts: &[String], has_ko: bool) -> String {
    let mut s = String::from(
        "#!/bin/busybox sh\n\
         /bin/busybox mkdir -p /bin /sbin /usr/bin /proc /sys /dev /tmp\n\
         /bin/busybox --install -s /bin\n\
         ln -s /bin/busybox /sbin/modprobe\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\n\
         mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null\n\
         mount -t tmpfs tmpfs /tmp\n\
         export PATH=/bin:/sbin:/usr/bin\n",
    );
    for module in modules {
        s += &format!("modprobe {module} || echo \"init: modprobe {module} failed\"\n");
    }
    if has_ko {
        s += &format!("export SEVAULT_KO=/{KO_PATH}\n");
    }
    s += &format!("echo {} > /dev/kmsg\necho {}\nstatus=0\n", marker::TEST_START, marker::TEST_START);
    for script in scripts {
        s += &format!(
            "echo {begin} {script}\nsh /scripts/{script}\nrc=$?\necho {end} {script} $rc\n\
             [ $rc -eq 0 ] || status=$rc\n",
            begin = marker::SCRIPT_BEGIN,
            end = marker::SCRIPT_END,
        );
    }
    s += &format!(
        "echo {begin}\ndmesg | sed -n '/{start}/,$p'\necho {end}\necho {result} $status\npoweroff -f\n",
        begin = marker::DMESG_BEGIN,
        start = marker::TEST_START,
        end = marker::DMESG_END,
        result = marker::RESULT,
    );
    s
}

/// Collects the image's entries from the host.
pub fn entries(spec: &Spec) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut dirs = BTreeSet::new();
    let mut add = |entries: &mut Vec<Entry>, entry: Entry| {
        let mut parent = Path::new(entry.path()).parent();
        let mut missing = Vec::new();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            if dirs.insert(dir.to_string_lossy().into_owned()) {
                missing.push(Entry::Dir(dir.to_string_lossy().into_owned()));
            }
            parent = dir.parent();
        }
        entries.extend(missing.into_iter().rev());
        entries.push(entry);
    };
    let read = |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));

    add(&mut entries, Entry::File { path: "bin/busybox".into(), data: read(Path::new("/bin/busybox"))?, mode: 0o755 });
    add(&mut entries, Entry::Symlink { path: "bin/sh".into(), target: "busybox".into() });

    // Kernels that compress their modules (6.12: `.ko.xz`) get them decompressed here, so
    // that busybox's modprobe (which cannot decompress) loads them.
    let modules_dep = uncompressed_names(&String::from_utf8(read(&spec.modules_dir.join("modules.dep"))?)?);
    // Modules built into this kernel (6.12 builds in ecb) are left out, and not loaded.
    let builtin = String::from_utf8_lossy(&read(&spec.modules_dir.join("modules.builtin"))?).into_owned();
    let modular =
        |names: &[String]| -> Vec<String> { names.iter().filter(|n| !is_builtin(&builtin, n)).cloned().collect() };
    let loaded = modular(&spec.modules);
    let wanted: Vec<String> = loaded.iter().cloned().chain(modular(&spec.on_demand_modules)).collect();
    let included = module_closure(&modules_dep, &wanted)?;
    let base = format!("lib/modules/{}", spec.release);
    for module in &included {
        let data = read_module(&spec.modules_dir.join(module))?;
        add(&mut entries, Entry::File { path: format!("{base}/{module}"), data, mode: 0o644 });
    }
    let dep = filter_modules_dep(&modules_dep, &included);
    add(&mut entries, Entry::File { path: format!("{base}/modules.dep"), data: dep.into_bytes(), mode: 0o644 });
    let alias = uncompressed_names(&String::from_utf8_lossy(&read(&spec.modules_dir.join("modules.alias"))?));
    let alias = filter_modules_alias(&alias, &included);
    add(&mut entries, Entry::File { path: format!("{base}/modules.alias"), data: alias.into_bytes(), mode: 0o644 });

    let mut libraries = BTreeSet::new();
    for binary in HOST_BINARIES.iter().copied().chain(spec.extra_binaries.iter().map(String::as_str)) {
        let path = Path::new(binary);
        add(&mut entries, Entry::File { path: binary.trim_start_matches('/').into(), data: read(path)?, mode: 0o755 });
        let out = Command::new("ldd").arg(path).output().context("cannot run ldd")?;
        if !out.status.success() {
            bail!("ldd {binary} failed");
        }
        libraries.extend(parse_ldd(&String::from_utf8_lossy(&out.stdout)));
    }
    for library in libraries {
        // Copy the file the link points at, under the name the loader asks for.
        let data = read(&std::fs::canonicalize(&library)?)?;
        add(&mut entries, Entry::File { path: library.trim_start_matches('/').into(), data, mode: 0o755 });
    }

    for (source, path) in &spec.extra_files {
        add(&mut entries, Entry::File { path: path.trim_start_matches('/').into(), data: read(source)?, mode: 0o755 });
    }
    if let Some(ko) = &spec.ko {
        add(&mut entries, Entry::File { path: KO_PATH.into(), data: read(ko)?, mode: 0o644 });
    }
    let mut names = Vec::new();
    for script in &spec.scripts {
        let name = script
            .file_name()
            .with_context(|| format!("{} is not a file", script.display()))?
            .to_string_lossy()
            .into_owned();
        if names.contains(&name) {
            bail!("two scripts are named {name}");
        }
        add(&mut entries, Entry::File { path: format!("scripts/{name}"), data: read(script)?, mode: 0o755 });
        names.push(name);
    }
    let init = init_script(&loaded, &names, spec.ko.is_some());
    add(&mut entries, Entry::File { path: "init".into(), data: init.into_bytes(), mode: 0o755 });
    Ok(entries)
}

/// Writes `entries` as a `newc` cpio archive.
pub fn write_cpio(entries: &[Entry], out: &mut impl Write) -> std::io::Result<()> {
    for (ino, entry) in (1u32..).zip(entries) {
        let (mode, data): (u32, &[u8]) = match entry {
            Entry::Dir(_) => (0o040_755, &[]),
            Entry::File { data, mode, .. } => (0o100_000 | mode, data),
            Entry::Symlink { target, .. } => (0o120_777, target.as_bytes()),
        };
        write_member(out, ino, mode, entry.path(), data)?;
    }
    write_member(out, 0, 0, "TRAILER!!!", &[])
}

fn write_member(out: &mut impl Write, ino: u32, mode: u32, name: &str, data: &[u8]) -> std::io::Result<()> {
    let nlink = if mode & 0o040_000 != 0 { 2 } else { 1 };
    let header = format!(
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
        0,
        0,
        0,
        data.len(),
        0,
        0,
        0,
        0,
        name.len() + 1,
        0
    );
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    pad4(out, header.len() + name.len() + 1)?;
    out.write_all(data)?;
    pad4(out, data.len())
}

fn pad4(out: &mut impl Write, len: usize) -> std::io::Result<()> {
    out.write_all(&[0; 3][..(4 - len % 4) % 4])
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/crypto/cryptd.ko:\n\
        kernel/crypto/crypto_simd.ko: kernel/crypto/cryptd.ko\n\
        kernel/arch/x86/crypto/aesni-intel.ko: kernel/crypto/crypto_simd.ko kernel/crypto/cryptd.ko\n\
        kernel/crypto/af_alg.ko:\n\
        kernel/crypto/algif_skcipher.ko: kernel/crypto/af_alg.ko\n\
        kernel/crypto/tcrypt.ko:\n";

    /// Lines as Debian's 6.12.117 kernel has them in modules.dep and modules.builtin.
    #[test]
    fn compressed_and_builtin_modules() {
        let dep = "kernel/crypto/af_alg.ko.xz:\nkernel/crypto/algif_hash.ko.xz: kernel/crypto/af_alg.ko.xz\n";
        let dep = uncompressed_names(dep);
        assert_eq!(dep, "kernel/crypto/af_alg.ko:\nkernel/crypto/algif_hash.ko: kernel/crypto/af_alg.ko\n");
        let closure = module_closure(&dep, &["algif_hash".to_string()]).unwrap();
        assert!(closure.contains("kernel/crypto/af_alg.ko"), "{closure:?}");
        let builtin = "kernel/crypto/ecb.ko\nkernel/crypto/cbc.ko\n";
        assert!(is_builtin(builtin, "ecb"));
        assert!(!is_builtin(builtin, "af_alg"));
        assert!(!is_builtin("", "ecb"));
    }

    #[test]
    fn module_closure_follows_dependencies_and_names() {
        let got = module_closure(DEP, &["aesni_intel".into(), "algif-skcipher".into()]).unwrap();
        let expected: BTreeSet<String> = [
            "kernel/arch/x86/crypto/aesni-intel.ko",
            "kernel/crypto/crypto_simd.ko",
            "kernel/crypto/cryptd.ko",
            "kernel/crypto/af_alg.ko",
            "kernel/crypto/algif_skcipher.ko",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(got, expected);
        let error = module_closure(DEP, &["nope".into()]).unwrap_err();
        assert!(error.to_string().contains("nope"));
        let filtered = filter_modules_dep(DEP, &got);
        assert!(filtered.contains("kernel/crypto/af_alg.ko:\n"));
        assert!(!filtered.contains("tcrypt"));
    }

    #[test]
    fn alias_filter_keeps_included_modules_only() {
        let alias = "# Aliases\nalias crypto-ecb ecb\nalias crypto-aes-aesni aesni_intel\nalias crypto-tcrypt tcrypt\n";
        let included: BTreeSet<String> = ["kernel/arch/x86/crypto/aesni-intel.ko".to_string()].into();
        assert_eq!(filter_modules_alias(alias, &included), "alias crypto-aes-aesni aesni_intel\n");
    }

    #[test]
    fn ldd_output_gives_the_libraries() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibkcapi.so.1 => /lib/x86_64-linux-gnu/libkcapi.so.1 (0x7f)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\t/lib64/ld-linux-x86-64.so.2 (0x7f)\n";
        assert_eq!(
            parse_ldd(out),
            ["/lib/x86_64-linux-gnu/libkcapi.so.1", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]
        );
    }

    #[test]
    fn init_runs_every_script_and_always_powers_off() {
        let init = init_script(&["crypto_user".into()], &["a.sh".into(), "b.sh".into()], true);
        assert!(init.starts_with("#!/bin/busybox sh\n"));
        assert!(init.contains("modprobe crypto_user"));
        assert!(init.contains("export SEVAULT_KO=/lib/sevault/sevault.ko"));
        let a = init.find("sh /scripts/a.sh").unwrap();
        let b = init.find("sh /scripts/b.sh").unwrap();
        assert!(init.find(marker::TEST_START).unwrap() < a && a < b);
        assert!(init.trim_end().ends_with("poweroff -f"));
        assert!(init.contains(&format!("echo {} $status", marker::RESULT)));
    }

    #[test]
    fn cpio_members_are_newc_and_aligned() {
        let entries = vec![
            Entry::Dir("bin".into()),
            Entry::File { path: "bin/x".into(), data: b"hello".to_vec(), mode: 0o755 },
            Entry::Symlink { path: "bin/sh".into(), target: "busybox".into() },
        ];
        let mut out = Vec::new();
        write_cpio(&entries, &mut out).unwrap();
        assert_eq!(out.len() % 4, 0);
        // Walk the archive back.
        let mut at = 0;
        let mut seen = Vec::new();
        loop {
            let header = std::str::from_utf8(&out[at..at + 110]).unwrap();
            assert_eq!(&header[..6], "070701");
            let field = |i: usize| u32::from_str_radix(&header[6 + 8 * i..14 + 8 * i], 16).unwrap() as usize;
            let (mode, size, namesize) = (field(1), field(6), field(11));
            let name = std::str::from_utf8(&out[at + 110..at + 110 + namesize - 1]).unwrap().to_string();
            let data_at = (at + 110 + namesize).div_ceil(4) * 4;
            let data = out[data_at..data_at + size].to_vec();
            at = (data_at + size).div_ceil(4) * 4;
            if name == "TRAILER!!!" {
                break;
            }
            seen.push((name, mode, data));
        }
        assert_eq!(at, out.len());
        assert_eq!(seen[0], ("bin".into(), 0o040_755, vec![]));
        assert_eq!(seen[1], ("bin/x".into(), 0o100_755, b"hello".to_vec()));
        assert_eq!(seen[2], ("bin/sh".into(), 0o120_777, b"busybox".to_vec()));
    }
}
