//! `cargo xtask setup`: installs what the project needs on a Debian 12 machine — the nested
//! test platform's packages and the rustup target — idempotently, quietly when all is there.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

/// Debian packages the nested-VM bench and the module build need.
pub const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "linux-image-amd64",
    "linux-headers-amd64",
    "busybox-static",
    "kcapi-tools",
    "cpio",
    "openssl",
];

/// The Debian kernel the nested VM boots and the module builds against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebianKernel {
    /// `uname -r` of that kernel, e.g. `6.1.0-37-amd64`.
    pub release: String,
}

impl DebianKernel {
    /// The kernel image.
    pub fn vmlinuz(&self) -> PathBuf {
        PathBuf::from(format!("/boot/vmlinuz-{}", self.release))
    }

    /// The matching headers (Kbuild tree); `KDIR` overrides it.
    pub fn headers(&self) -> PathBuf {
        std::env::var_os("KDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(format!("/usr/src/linux-headers-{}", self.release)))
    }

    /// Its modules.
    pub fn modules(&self) -> PathBuf {
        PathBuf::from(format!("/lib/modules/{}", self.release))
    }
}

/// Installs what is missing, then checks that kernel and headers match.
pub fn setup(root: &Path) -> Result<DebianKernel> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !is_installed(p)).collect();
    if !missing.is_empty() {
        install(&missing)?;
    }
    crate::ensure_toolchain(root)?;
    let kernel = installed_kernel()?;
    ensure!(
        kernel.vmlinuz().exists(),
        "{} is missing although linux-image-amd64 is installed",
        kernel.vmlinuz().display()
    );
    Ok(kernel)
}

/// The installed kernel, checked against the installed headers: both meta-packages must
/// point at the same kernel release.
pub fn installed_kernel() -> Result<DebianKernel> {
    let image = depends_on_release(&package_field("linux-image-amd64", "Depends")?, "linux-image-")
        .context("cannot tell which kernel linux-image-amd64 installs (run `cargo xtask setup`)")?;
    let headers = depends_on_release(&package_field("linux-headers-amd64", "Depends")?, "linux-headers-")
        .context("cannot tell which headers linux-headers-amd64 installs (run `cargo xtask setup`)")?;
    if image != headers {
        bail!(
            "kernel and headers do not match: linux-image-amd64 installs {image}, \
             linux-headers-amd64 installs {headers}; run `apt-get install linux-image-amd64 \
             linux-headers-amd64` to bring both to the same version"
        );
    }
    Ok(DebianKernel { release: image })
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

fn install(missing: &[&str]) -> Result<()> {
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
    let mut install_args = vec!["install", "-y", "--no-install-recommends"];
    install_args.extend_from_slice(missing);
    apt(&install_args)?;
    let still: Vec<&str> = missing.iter().copied().filter(|p| !is_installed(p)).collect();
    ensure!(still.is_empty(), "apt-get did not install {}", still.join(" "));
    Ok(())
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
    fn dpkg_status() {
        assert!(status_is_installed("install ok installed"));
        assert!(!status_is_installed("deinstall ok config-files"));
        assert!(!status_is_installed("install ok half-installed"));
        assert!(!status_is_installed(""));
    }

    #[test]
    fn kernel_paths() {
        let k = DebianKernel { release: "6.1.0-37-amd64".into() };
        assert_eq!(k.vmlinuz(), Path::new("/boot/vmlinuz-6.1.0-37-amd64"));
        assert_eq!(k.modules(), Path::new("/lib/modules/6.1.0-37-amd64"));
    }
}
