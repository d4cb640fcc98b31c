//! `cargo xtask setup`: installs what the project needs on a Debian 12 machine — the nested
//! test platform's packages and the rustup target — idempotently, quietly when all is there.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

/// Debian packages the nested-VM bench and the module build need (the kernels come with
/// [`KernelLine`]; QEMU comes with [`ensure_qemu`]).
pub const PACKAGES: &[&str] =
    &["busybox-static", "kcapi-tools", "cpio", "openssl", "xz-utils", "kmod", "cryptsetup-bin", "dmsetup", "e2fsprogs"];

/// The emulator of the nested test platform. Debian 12's own build (7.2) is not used: under
/// it, with both vCPUs in the vault at once, a VMRUN now and then ran the host's state or
/// found the vault's page tables missing; the same module and load under the 10.0 build
/// from bookworm-backports ran clean (thesis-notes/hypervisor.md, "The open fault: QEMU 7.2").
pub const QEMU_PACKAGE: &str = "qemu-system-x86";
/// The oldest QEMU major version the harness accepts.
pub const QEMU_MIN_MAJOR: u32 = 10;

/// The kernels the module is built for and tested on, each a line of Debian 12's packages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelLine {
    /// Debian 12's own kernel (`linux-image-amd64`), installed as the host's.
    V6_1,
    /// The 6.12 LTS kernel Debian 12 carries beside it (`linux-image-6.12-amd64`, source
    /// package `linux-6.12`); unpacked under `target/kernels/`, never installed as a boot
    /// kernel.
    V6_12,
}

impl KernelLine {
    /// Every known line, oldest first (what `--kernel all` means).
    pub const ALL: [KernelLine; 2] = [KernelLine::V6_1, KernelLine::V6_12];

    /// `--kernel 6.1|6.12`.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|line| line.name() == name).with_context(|| {
            format!(
                "unknown kernel `{name}`: the module knows Debian's 6.1 and 6.12 LTS (`--kernel 6.1`, `--kernel 6.12`; \
                 `--kernel all` for tests); adding one: thesis-notes/test-platform.md"
            )
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            KernelLine::V6_1 => "6.1",
            KernelLine::V6_12 => "6.12",
        }
    }

    /// The meta-package whose dependency names the kernel image of this line.
    fn image_meta(self) -> &'static str {
        match self {
            KernelLine::V6_1 => "linux-image-amd64",
            KernelLine::V6_12 => "linux-image-6.12-amd64",
        }
    }

    /// The meta-package whose dependency names the headers of this line.
    fn headers_meta(self) -> &'static str {
        match self {
            KernelLine::V6_1 => "linux-headers-amd64",
            KernelLine::V6_12 => "linux-headers-6.12-amd64",
        }
    }

    /// `uname -r` of this line starts with this.
    fn release_prefix(self) -> &'static str {
        match self {
            KernelLine::V6_1 => "6.1.",
            KernelLine::V6_12 => "6.12.",
        }
    }
}

/// Takes every `--kernel X` out of `args`: the lines named (default 6.1), and the rest.
/// `all` is accepted only where `allow_all`.
pub fn take_kernel_flag(args: &[String], allow_all: bool) -> Result<(Vec<KernelLine>, Vec<String>)> {
    let mut lines = Vec::new();
    let mut rest = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = match arg.strip_prefix("--kernel=") {
            Some(value) => value,
            None if arg == "--kernel" => args.next().context("--kernel needs a value: 6.1, 6.12 or all")?,
            None => {
                rest.push(arg.clone());
                continue;
            }
        };
        let named = if value == "all" {
            ensure!(allow_all, "--kernel all: this task runs one kernel; give 6.1 or 6.12");
            KernelLine::ALL.to_vec()
        } else {
            vec![KernelLine::parse(value)?]
        };
        for line in named {
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
    }
    if lines.is_empty() {
        lines.push(KernelLine::V6_1);
    }
    Ok((lines, rest))
}

/// The same for tasks that run exactly one kernel.
pub fn take_one_kernel(args: &[String]) -> Result<(KernelLine, Vec<String>)> {
    let (lines, rest) = take_kernel_flag(args, false)?;
    match lines[..] {
        [line] => Ok((line, rest)),
        _ => bail!("--kernel given more than once: this task runs one kernel"),
    }
}

/// A Debian kernel the nested VM boots and the module builds against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebianKernel {
    pub line: KernelLine,
    /// `uname -r` of that kernel, e.g. `6.1.0-37-amd64`.
    pub release: String,
    /// Where its image and modules are: `/` for the installed 6.1, the unpacked package for
    /// the others.
    root: PathBuf,
}

impl DebianKernel {
    /// The kernel image.
    pub fn vmlinuz(&self) -> PathBuf {
        self.root.join(format!("boot/vmlinuz-{}", self.release))
    }

    /// The matching headers (Kbuild tree); `KDIR` overrides it.
    pub fn headers(&self) -> PathBuf {
        std::env::var_os("KDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(format!("/usr/src/linux-headers-{}", self.release)))
    }

    /// Its modules.
    pub fn modules(&self) -> PathBuf {
        self.root.join(format!("lib/modules/{}", self.release))
    }
}

/// Installs those of `packages` that are missing (a benchmark's own tools, such as fio).
pub fn ensure_packages(packages: &[&str], line: KernelLine) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !is_installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    install(&missing, line)
}

/// Installs what is missing for `line` (packages, headers, the kernel image), then checks
/// that kernel and headers match.
pub fn setup(root: &Path, line: KernelLine) -> Result<DebianKernel> {
    let mut wanted: Vec<&str> = PACKAGES.to_vec();
    wanted.push(line.headers_meta());
    if line == KernelLine::V6_1 {
        wanted.push(line.image_meta());
    }
    let missing: Vec<&str> = wanted.into_iter().filter(|p| !is_installed(p)).collect();
    if !missing.is_empty() {
        install(&missing, line)?;
    }
    ensure_qemu()?;
    crate::ensure_toolchain(root)?;
    let kernel = match line {
        KernelLine::V6_1 => installed_kernel(line)?,
        _ => unpacked_kernel(root, line)?,
    };
    ensure!(
        kernel.vmlinuz().exists(),
        "{} is missing although {} is installed",
        kernel.vmlinuz().display(),
        line.image_meta()
    );
    Ok(kernel)
}

/// The installed kernel of `line`, checked against the installed headers: both
/// meta-packages must point at the same kernel release.
pub fn installed_kernel(line: KernelLine) -> Result<DebianKernel> {
    let image = meta_release(line.image_meta(), "linux-image-", line)?;
    let headers = meta_release(line.headers_meta(), "linux-headers-", line)?;
    if image != headers {
        bail!(
            "kernel and headers do not match: {} installs {image}, {} installs {headers}; run `apt-get install {} {}` \
             to bring both to the same version",
            line.image_meta(),
            line.headers_meta(),
            line.image_meta(),
            line.headers_meta()
        );
    }
    Ok(DebianKernel { line, release: image, root: PathBuf::from("/") })
}

/// The release an installed meta-package depends on, checked to be of `line`.
fn meta_release(meta: &str, prefix: &str, line: KernelLine) -> Result<String> {
    let release = depends_on_release(&package_field(meta, "Depends")?, prefix).with_context(|| {
        format!("cannot tell which kernel {meta} installs (run `cargo xtask setup --kernel {}`)", line.name())
    })?;
    ensure!(
        release.starts_with(line.release_prefix()),
        "{meta} installs {release}, which is not a {} kernel",
        line.name()
    );
    Ok(release)
}

/// The kernel of `line` unpacked under `target/kernels/<release>/` from its Debian package
/// (downloaded, not installed: no boot entry, no initramfs, nothing in /boot), with
/// `modules.dep` made by depmod. The release is the one the installed headers are for.
fn unpacked_kernel(root: &Path, line: KernelLine) -> Result<DebianKernel> {
    let release = meta_release(line.headers_meta(), "linux-headers-", line)?;
    let dir = root.join("target/kernels").join(&release);
    let kernel = DebianKernel { line, release: release.clone(), root: dir.clone() };
    if kernel.vmlinuz().exists() && kernel.modules().join("modules.dep").exists() {
        return Ok(kernel);
    }
    let package = format!("linux-image-{release}");
    println!("xtask: unpacking {package} into {} (not installed as a boot kernel)", dir.display());
    let downloads = root.join("target/kernels/downloads");
    std::fs::create_dir_all(&downloads)?;
    let out = Command::new("apt-get")
        .current_dir(&downloads)
        .args(["download", &package])
        .output()
        .context("cannot run apt-get download")?;
    ensure!(
        out.status.success(),
        "apt-get download {package} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = std::fs::read_dir(&downloads)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .with_context(|| format!("apt-get download left no {package}_*.deb in {}", downloads.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    crate::run_command(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir))?;
    crate::run_command(Command::new("depmod").arg("-b").arg(&dir).arg(&release))?;
    Ok(kernel)
}

fn is_installed(package: &str) -> bool {
    package_field(package, "Status").is_ok_and(|status| status_is_installed(&status))
}

/// `dpkg-query -W -f '${field}' package`.
fn package_field(package: &str, field: &str) -> Result<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", &format!("${{{field}}}"), package])
        .output()
        .context("cannot run dpkg-query: this needs a Debian machine")?;
    ensure!(out.status.success(), "package {package} is not installed");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True for dpkg's "install ok installed".
fn status_is_installed(status: &str) -> bool {
    status.split_whitespace().last() == Some("installed") && status.starts_with("install ")
}

/// The kernel release a meta-package depends on: `linux-image-6.1.0-37-amd64 (= 6.1.140-1)`
/// with prefix `linux-image-` gives `6.1.0-37-amd64`.
fn depends_on_release(depends: &str, prefix: &str) -> Option<String> {
    depends
        .split([',', '|'])
        .map(str::trim)
        .filter_map(|dep| dep.split_whitespace().next()?.strip_prefix(prefix))
        .find(|release| release.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(str::to_owned)
}

/// True when running as root (what apt-get needs).
pub(crate) fn is_root() -> Result<bool> {
    let uid = Command::new("id").arg("-u").output().context("cannot run `id -u`")?;
    Ok(String::from_utf8_lossy(&uid.stdout).trim() == "0")
}

fn install(missing: &[&str], line: KernelLine) -> Result<()> {
    if !is_root()? {
        bail!(
            "missing packages: {}. Installing them needs root: run `sudo cargo xtask setup` \
             or `sudo apt-get install {}`",
            missing.join(" "),
            missing.join(" ")
        );
    }
    if Command::new("apt-get").arg("--version").output().is_err() {
        bail!("missing packages {} and no apt-get: this needs Debian 12", missing.join(" "));
    }
    println!("xtask: installing {} (about a minute)", missing.join(" "));
    apt(&["update"])?;
    if line != KernelLine::V6_1 && !apt_knows(line.headers_meta()) {
        add_apt_source("bookworm-security", "http://deb.debian.org/debian-security", "the 6.12 LTS kernel")?;
    }
    let mut install_args = vec!["install", "-y", "--no-install-recommends"];
    install_args.extend_from_slice(missing);
    apt(&install_args)?;
    let still: Vec<&str> = missing.iter().copied().filter(|p| !is_installed(p)).collect();
    ensure!(still.is_empty(), "apt-get did not install {}", still.join(" "));
    Ok(())
}

/// The Debian version's upstream major number: `1:10.0.2+ds-2+deb13u1~bpo12+1` → 10.
fn upstream_major(version: &str) -> Option<u32> {
    let upstream = version.split_once(':').map_or(version, |(_, rest)| rest);
    upstream.split(['.', '+', '~', '-']).next()?.parse().ok()
}

/// Makes sure the installed QEMU is at least [`QEMU_MIN_MAJOR`]; on Debian 12 that means the
/// build from bookworm-backports (its suite is added in a file of its own if missing).
pub fn ensure_qemu() -> Result<()> {
    let installed = package_field(QEMU_PACKAGE, "Version").ok().filter(|_| is_installed(QEMU_PACKAGE));
    if installed.as_deref().and_then(upstream_major).is_some_and(|major| major >= QEMU_MIN_MAJOR) {
        return Ok(());
    }
    let have = installed.unwrap_or_else(|| "none".into());
    if !is_root()? {
        bail!(
            "{QEMU_PACKAGE} {have} is installed; the test platform needs QEMU {QEMU_MIN_MAJOR} or later \
             (Debian's bookworm-backports): run `sudo cargo xtask setup`"
        );
    }
    println!("xtask: installing {QEMU_PACKAGE} from bookworm-backports (QEMU {QEMU_MIN_MAJOR}+; installed: {have})");
    add_apt_source("bookworm-backports", "http://deb.debian.org/debian", &format!("QEMU {QEMU_MIN_MAJOR}"))?;
    apt(&["install", "-y", "--no-install-recommends", "-t", "bookworm-backports", QEMU_PACKAGE])?;
    let now = package_field(QEMU_PACKAGE, "Version")?;
    ensure!(
        upstream_major(&now).is_some_and(|major| major >= QEMU_MIN_MAJOR),
        "apt-get installed {QEMU_PACKAGE} {now}, not QEMU {QEMU_MIN_MAJOR} or later"
    );
    Ok(())
}

/// Whether apt's package lists have `package`.
fn apt_knows(package: &str) -> bool {
    Command::new("apt-cache")
        .args(["show", "--no-all-versions", package])
        .output()
        .is_ok_and(|out| out.status.success() && !out.stdout.is_empty())
}

/// Adds Debian suite `suite` at `uri` to apt's sources, in a file of its own
/// (`sevault-<suite>.sources`), for `what`, then refreshes the package lists. Debian 12
/// carries the 6.12 LTS line (source package `linux-6.12`) in bookworm-security and QEMU 10
/// in bookworm-backports; a machine whose sources lack them gets them this way.
fn add_apt_source(suite: &str, uri: &str, what: &str) -> Result<()> {
    let file = PathBuf::from(format!("/etc/apt/sources.list.d/sevault-{suite}.sources"));
    println!("xtask: adding Debian's {suite} suite ({what}) as {}", file.display());
    std::fs::write(
        &file,
        format!(
            "Types: deb\nURIs: {uri}\nSuites: {suite}\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        ),
    )
    .with_context(|| format!("writing {}", file.display()))?;
    apt(&["update"])
}

/// Runs apt-get quietly; on failure shows the end of its output.
pub(crate) fn apt(args: &[&str]) -> Result<()> {
    let out = Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run apt-get")?;
    if !out.status.success() {
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        bail!("apt-get {} failed ({}):\n{tail}", args.join(" "), out.status);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_release_a_meta_package_depends_on() {
        let image = "linux-image-6.1.0-37-amd64 (= 6.1.140-1)";
        assert_eq!(depends_on_release(image, "linux-image-").as_deref(), Some("6.1.0-37-amd64"));
        let headers = "linux-headers-6.1.0-37-amd64 (= 6.1.140-1), linux-kbuild-6.1";
        assert_eq!(depends_on_release(headers, "linux-headers-").as_deref(), Some("6.1.0-37-amd64"));
        assert_eq!(depends_on_release("linux-image-amd64-signed-template", "linux-image-"), None);
        assert_eq!(depends_on_release("", "linux-image-"), None);
    }

    #[test]
    fn upstream_major_of_debian_versions() {
        // Versions as `apt-cache policy qemu-system-x86` lists them on Debian 12.
        assert_eq!(upstream_major("1:10.0.2+ds-2+deb13u1~bpo12+1"), Some(10));
        assert_eq!(upstream_major("1:7.2+dfsg-7+deb12u18+b3"), Some(7));
        assert_eq!(upstream_major("2.36-9+deb12u14"), Some(2));
        assert_eq!(upstream_major(""), None);
    }

    #[test]
    fn dpkg_status() {
        assert!(status_is_installed("install ok installed"));
        assert!(!status_is_installed("deinstall ok config-files"));
        assert!(!status_is_installed("install ok half-installed"));
        assert!(!status_is_installed(""));
    }

    #[test]
    fn kernel_paths() {
        let k = DebianKernel { line: KernelLine::V6_1, release: "6.1.0-37-amd64".into(), root: "/".into() };
        assert_eq!(k.vmlinuz(), Path::new("/boot/vmlinuz-6.1.0-37-amd64"));
        assert_eq!(k.modules(), Path::new("/lib/modules/6.1.0-37-amd64"));
        let k = DebianKernel { line: KernelLine::V6_12, release: "6.12.9+deb12-amd64".into(), root: "/t/k".into() };
        assert_eq!(k.vmlinuz(), Path::new("/t/k/boot/vmlinuz-6.12.9+deb12-amd64"));
        assert_eq!(k.modules(), Path::new("/t/k/lib/modules/6.12.9+deb12-amd64"));
    }

    #[test]
    fn kernel_flag() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (lines, rest) = take_kernel_flag(&args(&["--smp", "2"]), false).unwrap();
        assert_eq!((lines, rest), (vec![KernelLine::V6_1], args(&["--smp", "2"])));
        let (lines, rest) = take_kernel_flag(&args(&["--kernel", "6.12", "--smp", "2"]), false).unwrap();
        assert_eq!((lines, rest), (vec![KernelLine::V6_12], args(&["--smp", "2"])));
        assert_eq!(take_kernel_flag(&args(&["--kernel=all"]), true).unwrap().0, KernelLine::ALL);
        let twice = take_kernel_flag(&args(&["--kernel", "all", "--kernel", "6.1"]), true).unwrap().0;
        assert_eq!(twice, KernelLine::ALL, "each kernel once");
        let error = format!("{:#}", take_kernel_flag(&args(&["--kernel", "6.6"]), true).unwrap_err());
        assert!(error.contains("6.1 and 6.12"), "{error}");
        assert!(take_kernel_flag(&args(&["--kernel", "all"]), false).is_err());
        assert!(take_kernel_flag(&args(&["--kernel"]), true).is_err());
        assert!(take_one_kernel(&args(&["--kernel", "6.1", "--kernel", "6.12"])).is_err());
    }
}
