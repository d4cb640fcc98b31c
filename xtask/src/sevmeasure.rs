//! The vault's expected SEV launch measurements (`sev-launch`, package `sevault-sev-launch`):
//!
//! - [`crosscheck`]: the SNP and SEV-ES launch digests `sev-launch measure` computes for the
//!   built vault image, recomputed by an implementation nobody here wrote — the
//!   `sev-snp-measure` Python package (pinned to [`SEV_SNP_MEASURE`]): its GCTX class for
//!   SNP, its SEV-ES digest function (and VMSA layout) for SEV-ES — for 1, 2 and 4 vCPUs;
//! - [`measurements`]: the policy and expected digest of the built image per mode and vCPU
//!   count, printed and written to `experiments/results/measurements.md`.
//!
//! Both run `sev-launch` through `cargo run` and read its text output (`policy:`, `image:`,
//! `digest:` lines of `sev-launch measure`) or its JSON (handed to the Python script as is).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, ensure, Context, Result};

use crate::setup::apt;
use crate::{cargo, run_command};

/// The `sev-snp-measure` release the cross-check is written against (its `GCTX` API:
/// `GCTX()`, `update_normal_pages`, `update_zero_pages`, `update_vmsa_page`, `hex_ld`).
pub const SEV_SNP_MEASURE: &str = "0.0.13";

/// The SNP cross-check script, relative to the workspace root.
const SNP_SCRIPT: &str = "sev-launch/crosscheck/snp_gctx.py";
/// The SEV-ES cross-check script, relative to the workspace root.
const SEV_ES_SCRIPT: &str = "sev-launch/crosscheck/seves_digest.py";
/// The Python virtual environment, relative to the workspace root.
const VENV: &str = "target/venv";
/// The results of [`measurements`], relative to the workspace root.
const OUT_MD: &str = "experiments/results/measurements.md";

/// Launch modes, as `sev-launch --mode` names them.
const MODES: [&str; 3] = ["sev", "sev-es", "snp"];

/// Builds the vault image and `sev-launch`, then recomputes `sev-launch`'s launch digests
/// with `sev-snp-measure` for 1, 2 and 4 vCPUs: the SNP digest with its GCTX class
/// ([`SNP_SCRIPT`]), the SEV-ES digest with its SEV-ES code path, whose VMSAs are also read
/// with its VMSA layout ([`SEV_ES_SCRIPT`]). Creates (or reuses) the venv `target/venv`
/// with the pinned `sev-snp-measure`; on Debian, `python3 -m venv` needs the `python3-venv`
/// package, which is installed with apt-get when running as root.
pub fn crosscheck(root: &Path) -> Result<()> {
    let image = crate::guest::build(root)?;
    let python = venv_python(root)?;
    ensure_sev_snp_measure(root, &python)?;
    let out_dir = root.join("target/sevault");
    let mut failed = Vec::new();
    for (mode, script) in [("snp", SNP_SCRIPT), ("sev-es", SEV_ES_SCRIPT)] {
        for vcpus in [1u32, 2, 4] {
            let vcpus_arg = vcpus.to_string();
            let args = [
                "measure",
                "--mode",
                mode,
                "--image",
                path_str(&image)?,
                "--vcpus",
                &vcpus_arg,
                "--json",
                "--with-contents",
            ];
            let json = sev_launch_stdout(root, &args)?;
            let json_path = out_dir.join(format!("{mode}-measure-{vcpus}.json"));
            std::fs::write(&json_path, json).with_context(|| format!("writing {}", json_path.display()))?;
            let out = Command::new(&python)
                .current_dir(root)
                .arg(root.join(script))
                .arg(&json_path)
                .output()
                .with_context(|| format!("cannot run {}", python.display()))?;
            print!("{}", String::from_utf8_lossy(&out.stdout));
            if !out.status.success() {
                eprint!("{}", String::from_utf8_lossy(&out.stderr));
                failed.push(format!("{mode} with {vcpus} vCPUs"));
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "sev-launch and sev-snp-measure {SEV_SNP_MEASURE} disagree for {} (inputs kept in \
             {}/MODE-measure-N.json): the launch definition (hv/src/launch.rs), the VMSA (hv/src/vmsa.rs) or the \
             digest code (sev-launch/src) no longer computes what the firmware would",
            failed.join(", "),
            out_dir.display()
        );
    }
    println!(
        "xtask: SNP and SEV-ES launch digests agree with sev-snp-measure {SEV_SNP_MEASURE} for 1, 2 and 4 vCPUs; \
         the SEV-ES VMSAs read right with its layout"
    );
    Ok(())
}

/// Builds the vault image, prints the vault's policy and expected launch digest for every
/// mode and 1, 2, 4 and 8 vCPUs (C-bit 51), and writes them with the command that
/// reproduces them to `experiments/results/measurements.md`.
pub fn measurements(root: &Path) -> Result<()> {
    let image = crate::guest::build(root)?;
    let image_arg = path_str(&image)?;
    let mut image_line = String::new();
    let mut rows = Vec::new();
    for mode in MODES {
        for vcpus in [1u32, 2, 4, 8] {
            let vcpus_arg = vcpus.to_string();
            let text =
                sev_launch_stdout(root, &["measure", "--mode", mode, "--image", image_arg, "--vcpus", &vcpus_arg])?;
            let text = String::from_utf8(text).context("sev-launch printed non-UTF-8")?;
            let policy = field(&text, "policy")?;
            let digest = field(&text, "digest")?;
            image_line = text.lines().find_map(|l| l.strip_prefix("image:")).unwrap_or_default().trim().to_string();
            println!("{mode:<7} {vcpus} vCPU(s)  policy {policy:<8} {digest}");
            rows.push(format!("| {mode} | {vcpus} | `{policy}` | `{digest}` |"));
        }
    }
    let md = format!(
        "# Expected launch measurements of the vault\n\n\
         Written by `cargo xtask sev-measurements` (`xtask/src/sevmeasure.rs`), which builds the vault \
         image and runs `sev-launch measure` for every mode and vCPU count. Nothing here ran on \
         EPYC hardware: these are the values a correct launch of this image must produce.\n\n\
         - Image: `target/sevault/guest.bin`, {image_line}, built from {source}.\n\
         - C-bit 51 (EPYC Milan/Genoa; other hosts: `--c-bit`, it is in the measured page tables).\n\
         - **snp**: the SNP launch digest (SHA-384), the MEASUREMENT field of the vault's attestation \
         reports; recomputed with sev-snp-measure {SEV_SNP_MEASURE} by `cargo xtask sev-crosscheck` \
         (1, 2 and 4 vCPUs).\n\
         - **sev**, **sev-es**: GCTX.LD (SHA-256 of the launched pages in order; sev-es recomputed with \
         sev-snp-measure {SEV_SNP_MEASURE}'s SEV-ES digest function by `cargo xtask sev-crosscheck`, 1, 2 and 4 \
         vCPUs). LAUNCH_MEASURE returns \
         HMAC-SHA256(0x04 ‖ API_MAJOR ‖ API_MINOR ‖ BUILD ‖ POLICY ‖ LD ‖ MNONCE) keyed with the launch \
         session's TIK: the guest owner computes it from this LD; it cannot be precomputed.\n\
         - Policies: `sev-launch policy --mode MODE` explains every bit.\n\
         - Any change of the image, of the launch definition (`hv/src/launch.rs`) or of the initial \
         vCPU state changes these values.\n\n\
         | mode | vCPUs | policy | expected digest |\n|---|---|---|---|\n{}\n\n\
         Reproduce: `cargo xtask sev-measurements`, or after `cargo xtask build-guest`:\n\n\
         ```sh\ncargo run -q -p sevault-sev-launch -- measure --mode snp --image target/sevault/guest.bin --vcpus 2\n\
         cargo run -q -p sevault-sev-launch -- measure --mode snp --image target/sevault/guest.bin --vcpus 2 --json --with-contents \\\n  \
         | target/venv/bin/python sev-launch/crosscheck/snp_gctx.py -\n\
         cargo run -q -p sevault-sev-launch -- measure --mode sev-es --image target/sevault/guest.bin --vcpus 2 --json --with-contents \\\n  \
         | target/venv/bin/python sev-launch/crosscheck/seves_digest.py -\n```\n",
        rows.join("\n"),
        source = source_revision(root),
    );
    let out = root.join(OUT_MD);
    std::fs::write(&out, md).with_context(|| format!("writing {}", out.display()))?;
    println!("xtask: expected launch measurements written to {}", out.display());
    Ok(())
}

/// `commit abc1234` (`, with uncommitted changes`), or `an unknown commit` without git.
fn source_revision(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    match (git(&["rev-parse", "--short", "HEAD"]), git(&["status", "--porcelain"])) {
        (Some(commit), Some(status)) if status.is_empty() => format!("commit {commit}"),
        (Some(commit), _) => format!("commit {commit} with uncommitted changes"),
        _ => "an unknown commit".to_string(),
    }
}

/// The value after `name:` on its line of `sev-launch measure`'s output (first word).
fn field<'a>(text: &'a str, name: &str) -> Result<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .with_context(|| format!("no `{name}:` line in sev-launch's output:\n{text}"))
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().with_context(|| format!("{} is not UTF-8", path.display()))
}

/// Runs `sev-launch ARGS` (building it if needed) and returns its standard output.
fn sev_launch_stdout(root: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let out = cargo(root)
        .args(["run", "--quiet", "--package", "sevault-sev-launch", "--bin", "sev-launch", "--"])
        .args(args)
        .output()
        .context("cannot run cargo")?;
    if !out.status.success() {
        bail!("sev-launch {} failed ({}):\n{}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

/// The venv's python, creating the venv if needed.
fn venv_python(root: &Path) -> Result<PathBuf> {
    let venv = root.join(VENV);
    let python = venv.join("bin/python");
    if python.exists() && venv.join("bin/pip").exists() {
        return Ok(python);
    }
    let create = || -> Result<Output> {
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .output()
            .context("cannot run python3 (the cross-check needs Python 3: apt-get install python3)")
    };
    let out = create()?;
    if out.status.success() && venv.join("bin/pip").exists() {
        return Ok(python);
    }
    // Debian's python3 has no ensurepip without the python3-venv package: `python3 -m venv`
    // fails and leaves a venv without pip behind.
    let message = String::from_utf8_lossy(&out.stderr).trim().to_string();
    std::fs::remove_dir_all(&venv).ok();
    if !crate::setup::is_root()? {
        bail!(
            "`python3 -m venv {}` failed: {message}\nOn Debian: apt-get install python3-venv (as root)",
            venv.display()
        );
    }
    println!("xtask: installing python3-venv (`python3 -m venv` needs it on Debian)");
    if apt(&["install", "-y", "-q", "python3-venv"]).is_err() {
        apt(&["update", "-q"])?;
        apt(&["install", "-y", "-q", "python3-venv"])?;
    }
    let out = create()?;
    let created = out.status.success() && venv.join("bin/pip").exists();
    if !created {
        std::fs::remove_dir_all(&venv).ok();
    }
    ensure!(
        created,
        "`python3 -m venv {}` still fails after installing python3-venv: {}",
        venv.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(python)
}

/// Installs the pinned `sev-snp-measure` into the venv unless it is there.
fn ensure_sev_snp_measure(root: &Path, python: &Path) -> Result<()> {
    let installed = Command::new(python)
        .args(["-c", "from importlib.metadata import version; print(version('sev-snp-measure'))"])
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if installed.status.success() && String::from_utf8_lossy(&installed.stdout).trim() == SEV_SNP_MEASURE {
        return Ok(());
    }
    println!("xtask: installing sev-snp-measure {SEV_SNP_MEASURE} into {VENV}");
    run_command(
        Command::new(python)
            .current_dir(root)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("sev-snp-measure=={SEV_SNP_MEASURE}")),
    )
    .context("installing sev-snp-measure from PyPI")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_of_the_measure_output() {
        let text = "mode:    snp\nvcpus:   2\nc-bit:   51 (default)\npolicy:  0x30000\ndigest:  abcd\nmeaning: x\n";
        assert_eq!(field(text, "policy").unwrap(), "0x30000");
        assert_eq!(field(text, "digest").unwrap(), "abcd");
        assert!(field(text, "image").is_err());
    }
}
