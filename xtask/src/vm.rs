//! `cargo xtask vm`: boots the Debian kernel under QEMU with AMD SVM available to it (TCG's
//! emulated EPYC by default, KVM with nested SVM on an AMD host), runs scripts in it as root,
//! streams the serial console, and exits with the scripts' status.
//!
//! The VM always powers itself off (`/init` ends in `poweroff -f`, and `panic=-1` with
//! `-no-reboot` ends a crashed kernel); the harness kills QEMU on timeout and says so. A run
//! fails when the kernel logs `BUG:`, `WARNING:`, `Oops`, `Call Trace` or
//! `general protection` after the scripts start.
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::initramfs::{self, marker};
use crate::nmi;
use crate::setup::{DebianKernel, KernelLine};

/// How QEMU runs the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Software emulation with an emulated EPYC (SVM, NPT, AES-NI).
    Tcg,
    /// Hardware virtualization with the host CPU (nested SVM on AMD).
    Kvm,
}

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelRequest {
    /// TCG.
    Tcg,
    /// KVM, or an error saying why not.
    Kvm,
    /// KVM when it can run SVM guests, else TCG.
    Auto,
}

/// What the host offers for KVM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// `/dev/kvm` opens read-write.
    pub kvm_usable: bool,
    /// The host CPU is AMD.
    pub amd_cpu: bool,
    /// `kvm_amd` is loaded with `nested=1`.
    pub nested_svm: bool,
}

impl HostFacts {
    /// Reads the facts off this machine.
    pub fn probe() -> Self {
        let kvm_usable = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
        let amd_cpu = std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| c.contains("AuthenticAMD"));
        let nested_svm = std::fs::read_to_string("/sys/module/kvm_amd/parameters/nested")
            .is_ok_and(|v| matches!(v.trim(), "1" | "Y" | "y"));
        Self { kvm_usable, amd_cpu, nested_svm }
    }
}

/// Picks the accelerator: KVM only where it gives the VM SVM (an AMD host with nested SVM).
pub fn choose_accel(request: AccelRequest, host: HostFacts) -> Result<Accel> {
    let kvm_problem = if !host.kvm_usable {
        Some("/dev/kvm is missing or not usable")
    } else if !host.amd_cpu {
        Some("the host CPU is not AMD, so KVM cannot give the VM SVM")
    } else if !host.nested_svm {
        Some("kvm_amd is not loaded with nested=1")
    } else {
        None
    };
    match (request, kvm_problem) {
        (AccelRequest::Tcg, _) | (AccelRequest::Auto, Some(_)) => Ok(Accel::Tcg),
        (AccelRequest::Kvm | AccelRequest::Auto, None) => Ok(Accel::Kvm),
        (AccelRequest::Kvm, Some(problem)) => bail!("--accel kvm: {problem}; use --accel tcg"),
    }
}

/// Options of one VM run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Scripts to run in order.
    pub scripts: Vec<PathBuf>,
    /// The vault module to put in the image.
    pub ko: Option<PathBuf>,
    /// The AF_ALG checker (`sevault-kcheck`) to put in the image.
    pub kcheck: Option<PathBuf>,
    /// vCPUs.
    pub smp: u32,
    /// Memory in MiB.
    pub mem_mib: u32,
    /// Accelerator request.
    pub accel: AccelRequest,
    /// Seconds before QEMU is killed.
    pub timeout: Duration,
    /// Where to copy the console output.
    pub log: Option<PathBuf>,
    /// More QEMU arguments, appended as given (`--qemu-arg`, repeatable).
    pub qemu_extra: Vec<String>,
    /// The kernel to boot (`--kernel 6.1|6.12`).
    pub kernel: KernelLine,
    /// More kernel command-line arguments.
    pub kernel_args: Vec<String>,
    /// Host binaries to add to the image with their libraries (e.g. `/usr/bin/fio`).
    pub extra_binaries: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            scripts: Vec::new(),
            ko: None,
            kcheck: None,
            smp: 2,
            mem_mib: 1024,
            accel: AccelRequest::Auto,
            timeout: Duration::from_secs(300),
            log: None,
            qemu_extra: Vec::new(),
            kernel: KernelLine::V6_1,
            kernel_args: Vec::new(),
            extra_binaries: Vec::new(),
        }
    }
}

/// Usage of `cargo xtask vm`.
pub const USAGE: &str =
    "usage: cargo xtask vm [--script FILE]... [--binary PATH]... [--ko FILE] [--smp N] [--mem MIB] \
[--accel tcg|kvm|auto] [--timeout SECONDS] [--log FILE] [--qemu-arg ARG]... [--kernel-arg ARG]... \
[--kernel 6.1|6.12]";

/// Parses `cargo xtask vm` arguments.
pub fn parse_args(args: &[String]) -> Result<Options> {
    let mut options = Options::default();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--script" => options.scripts.push(value()?.into()),
            "--ko" => options.ko = Some(value()?.into()),
            "--binary" => options.extra_binaries.push(value()?.clone()),
            "--smp" => options.smp = number(flag, value()?)?,
            "--mem" => options.mem_mib = parse_mem(value()?)?,
            "--timeout" => options.timeout = Duration::from_secs(number(flag, value()?)?.into()),
            "--log" => options.log = Some(value()?.into()),
            "--qemu-arg" => options.qemu_extra.push(value()?.clone()),
            "--kernel-arg" => options.kernel_args.push(value()?.clone()),
            "--kernel" => options.kernel = KernelLine::parse(value()?)?,
            "--accel" => {
                options.accel = match value()?.as_str() {
                    "tcg" => AccelRequest::Tcg,
                    "kvm" => AccelRequest::Kvm,
                    "auto" => AccelRequest::Auto,
                    other => bail!("--accel {other}: expected tcg, kvm or auto"),
                }
            }
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    if options.smp == 0 {
        bail!("--smp must be at least 1");
    }
    Ok(options)
}

fn number(flag: &str, value: &str) -> Result<u32> {
    value.parse().with_context(|| format!("{flag} {value}: not a number"))
}

/// `1024`, `1024M` or `1G` → MiB.
fn parse_mem(value: &str) -> Result<u32> {
    let (digits, scale) = match value.strip_suffix(['G', 'g']) {
        Some(digits) => (digits, 1024),
        None => (value.strip_suffix(['M', 'm']).unwrap_or(value), 1),
    };
    let mib = digits.parse::<u32>().ok().and_then(|n| n.checked_mul(scale));
    mib.filter(|m| *m >= 128).with_context(|| format!("--mem {value}: expected MiB (at least 128), or e.g. 2G"))
}

/// QEMU's command line.
pub fn qemu_args(options: &Options, accel: Accel, kernel: &Path, initrd: &Path, monitor: &Path) -> Vec<String> {
    let append = std::iter::once("console=ttyS0 panic=-1 quiet")
        .chain(options.kernel_args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    let (accel, cpu) = match accel {
        Accel::Tcg => ("tcg", "EPYC-v3"),
        Accel::Kvm => ("kvm", "host"),
    };
    [
        "-accel",
        accel,
        "-cpu",
        cpu,
        "-smp",
        &options.smp.to_string(),
        "-m",
        &options.mem_mib.to_string(),
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-serial",
        "stdio",
        // For NMIs from outside (crate::nmi); nothing else uses it.
        "-monitor",
        &format!("unix:{},server,nowait", monitor.display()),
        "-kernel",
        &kernel.to_string_lossy(),
        "-initrd",
        &initrd.to_string_lossy(),
        "-append",
        &append,
    ]
    .into_iter()
    .map(String::from)
    .chain(options.qemu_extra.iter().cloned())
    .collect()
}

/// What the console said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Console {
    /// `(script, status)` in the order they ran.
    pub scripts: Vec<(String, i32)>,
    /// The overall status `/init` reported, if it got that far.
    pub result: Option<i32>,
    /// Kernel-log lines after the scripts started that fail the run.
    pub kernel_problems: Vec<String>,
    /// The scripts started.
    pub started: bool,
    /// Every line, as read.
    pub lines: Vec<String>,
}

/// Kernel-log patterns that fail a run.
const BAD_PATTERNS: &[&str] = &["BUG:", "WARNING:", "Oops", "Call Trace", "general protection"];
/// Notices the emulated CPU triggers that are not problems of ours (speculation mitigations).
const BENIGN_PATTERNS: &[&str] = &["RETBleed", "Spectre", "MDS:", "MMIO Stale Data", "TAA:", "SRBDS", "vulnerable"];

/// Reads the console: script statuses, the result, and kernel problems after the start.
pub fn parse_console<'a>(lines: impl IntoIterator<Item = &'a str>) -> Console {
    let mut console = Console::default();
    for line in lines {
        let line = line.trim_end_matches('\r');
        console.lines.push(line.to_string());
        let mut words = line.split_whitespace();
        match words.next() {
            Some(marker::TEST_START) => console.started = true,
            Some(marker::SCRIPT_END) => {
                if let (Some(name), Some(Ok(status))) = (words.next(), words.next().map(str::parse)) {
                    console.scripts.push((name.to_string(), status));
                }
            }
            Some(marker::RESULT) => console.result = words.next().and_then(|s| s.parse().ok()),
            _ => {
                let bad = BAD_PATTERNS.iter().any(|p| line.contains(p));
                let benign = BENIGN_PATTERNS.iter().any(|p| line.contains(p));
                if console.started && bad && !benign {
                    console.kernel_problems.push(line.to_string());
                }
            }
        }
    }
    console
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// What the console said.
    pub console: Console,
    /// QEMU was killed on timeout.
    pub timed_out: bool,
    /// Wall time from QEMU's start to its end.
    pub wall: Duration,
    /// The accelerator used.
    pub accel: Accel,
}

impl Outcome {
    /// Exit status for `cargo xtask vm`: the scripts' status, or non-zero for any failure of
    /// the run itself.
    pub fn exit_status(&self) -> i32 {
        match self.console.result {
            _ if self.timed_out => 124,
            None => 1,
            Some(0) if !self.console.kernel_problems.is_empty() => 1,
            Some(status) => status,
        }
    }

    /// One line for the user on what went wrong, if anything.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.timed_out {
            out.push("the VM did not finish in time: QEMU was killed".to_string());
        } else if self.console.result.is_none() {
            out.push("the VM stopped before /init reported a result (kernel panic or crash?)".to_string());
        }
        for line in &self.console.kernel_problems {
            out.push(format!("kernel log after the scripts started: {line}"));
        }
        for (name, status) in &self.console.scripts {
            if *status != 0 {
                out.push(format!("script {name} exited with {status}"));
            }
        }
        out
    }
}

/// Builds the image and boots the VM. Needs `cargo xtask setup` to have run.
pub fn run(root: &Path, kernel: &DebianKernel, options: &Options) -> Result<Outcome> {
    let accel = choose_accel(options.accel, HostFacts::probe())?;
    let spec = initramfs::Spec {
        release: kernel.release.clone(),
        modules_dir: kernel.modules(),
        modules: initramfs::CRYPTO_MODULES.iter().map(|m| m.to_string()).collect(),
        on_demand_modules: initramfs::ON_DEMAND_MODULES.iter().map(|m| m.to_string()).collect(),
        ko: options.ko.clone(),
        scripts: options.scripts.clone(),
        extra_files: options
            .kcheck
            .iter()
            .map(|k| (k.clone(), "usr/bin/sevault-kcheck".to_string()))
            .chain(initramfs::REPO_FILES.iter().map(|(source, path)| (root.join(source), path.to_string())))
            .collect(),
        extra_binaries: options.extra_binaries.clone(),
    };
    let entries = initramfs::entries(&spec)?;
    let dir = root.join("target").join("sevault").join("vm");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let initrd = dir.join("initramfs.cpio");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&initrd)?);
    initramfs::write_cpio(&entries, &mut file)?;
    file.flush()?;
    drop(file);

    let monitor = dir.join("monitor.sock");
    let _ = std::fs::remove_file(&monitor);
    let args = qemu_args(options, accel, &kernel.vmlinuz(), &initrd, &monitor);
    println!(
        "xtask: booting {} under QEMU ({}, {} vCPUs, {} MiB, timeout {} s)",
        kernel.release,
        match accel {
            Accel::Tcg => "TCG, emulated EPYC-v3",
            Accel::Kvm => "KVM, host CPU",
        },
        options.smp,
        options.mem_mib,
        options.timeout.as_secs()
    );
    let mut log = match &options.log {
        Some(path) => Some(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?),
        None => None,
    };
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start qemu-system-x86_64 (run `cargo xtask setup`)")?;
    // (from QEMU's stderr?, line)
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    let streams: [(bool, Option<Box<dyn std::io::Read + Send>>); 2] =
        [(false, child.stdout.take().map(|s| Box::new(s) as _)), (true, child.stderr.take().map(|s| Box::new(s) as _))];
    for (is_stderr, stream) in streams {
        let Some(stream) = stream else { continue };
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send((is_stderr, line)).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut unsupported_features = 0;
    let deadline = start + options.timeout;
    let mut lines = Vec::new();
    let mut timed_out = false;
    let mut storm: Option<nmi::NmiStorm> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((true, line)) if line.contains("TCG doesn't support requested feature") => {
                // QEMU repeats these per vCPU; the EPYC model's features TCG lacks (among them
                // nrip-save) are reported once below.
                unsupported_features += 1;
                if let Some(log) = log.as_mut() {
                    writeln!(log, "{line}")?;
                }
            }
            Ok((true, line)) => println!("qemu| {line}"),
            Ok((false, line)) => {
                let line = line.trim_end_matches('\r').to_string();
                println!("vm| {line}");
                if let Some(log) = log.as_mut() {
                    writeln!(log, "{line}")?;
                }
                if let Some(rest) = line.strip_prefix(marker::NMI_STORM_BEGIN) {
                    match nmi::parse_begin(rest).map(|interval| (interval, nmi::NmiStorm::start(&monitor, interval))) {
                        Some((interval, Ok(started))) => {
                            println!(
                                "xtask: NMI storm: one NMI every {} µs through the QEMU monitor",
                                interval.as_micros()
                            );
                            storm = Some(started);
                        }
                        Some((_, Err(e))) => println!("xtask: cannot start the NMI storm: {e:#}"),
                        None => println!("xtask: malformed {} line", marker::NMI_STORM_BEGIN),
                    }
                } else if line.starts_with(marker::NMI_STORM_END) {
                    if let Some(running) = storm.take() {
                        println!("xtask: NMI storm stopped: {} NMIs sent", running.stop());
                    }
                }
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                println!("xtask: timeout after {} s: killing QEMU", options.timeout.as_secs());
                child.kill().ok();
                break;
            }
        }
    }
    if let Some(running) = storm.take() {
        println!("xtask: NMI storm stopped at the end of the run: {} NMIs sent", running.stop());
    }
    let status = child.wait().context("waiting for QEMU")?;
    if unsupported_features > 0 {
        println!(
            "xtask: QEMU warned {unsupported_features} times that TCG lacks features of the EPYC-v3 model \
             (e.g. nrip-save); see --log for the list"
        );
    }
    if !timed_out && !status.success() {
        println!("xtask: QEMU exited with {status}");
    }
    let console = parse_console(lines.iter().map(String::as_str));
    Ok(Outcome { console, timed_out, wall: start.elapsed(), accel })
}

/// `cargo xtask vm …`: returns the exit status.
pub fn command(root: &Path, args: &[String]) -> Result<i32> {
    let mut options = parse_args(args)?;
    let kernel = crate::setup::setup(root, options.kernel)?;
    // What `cargo xtask build` made is there for the scripts: the module (unless --ko says
    // otherwise) at $SEVAULT_KO, the checker as `sevault-kcheck`.
    options.ko = options.ko.take().or_else(|| crate::built_module(root, &kernel));
    options.kcheck = crate::built_kcheck(root);
    let outcome = run(root, &kernel, &options)?;
    for problem in outcome.problems() {
        println!("xtask: {problem}");
    }
    println!("xtask: VM finished in {:.1} s, status {}", outcome.wall.as_secs_f64(), outcome.exit_status());
    Ok(outcome.exit_status())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accel_choice() {
        let amd_nested = HostFacts { kvm_usable: true, amd_cpu: true, nested_svm: true };
        let intel = HostFacts { kvm_usable: true, amd_cpu: false, nested_svm: false };
        let no_kvm = HostFacts::default();
        assert_eq!(choose_accel(AccelRequest::Auto, amd_nested).unwrap(), Accel::Kvm);
        assert_eq!(choose_accel(AccelRequest::Auto, intel).unwrap(), Accel::Tcg);
        assert_eq!(choose_accel(AccelRequest::Auto, no_kvm).unwrap(), Accel::Tcg);
        assert_eq!(choose_accel(AccelRequest::Tcg, amd_nested).unwrap(), Accel::Tcg);
        assert!(choose_accel(AccelRequest::Kvm, intel).unwrap_err().to_string().contains("not AMD"));
        let no_nested = HostFacts { nested_svm: false, ..amd_nested };
        assert!(choose_accel(AccelRequest::Kvm, no_nested).unwrap_err().to_string().contains("nested=1"));
        assert!(choose_accel(AccelRequest::Kvm, no_kvm).unwrap_err().to_string().contains("/dev/kvm"));
    }

    #[test]
    fn args() {
        let args: Vec<String> =
            ["--script", "a.sh", "--script", "b.sh", "--smp", "4", "--mem", "2G", "--accel", "tcg", "--timeout", "9"]
                .into_iter()
                .map(String::from)
                .collect();
        let o = parse_args(&args).unwrap();
        assert_eq!(o.scripts, [PathBuf::from("a.sh"), PathBuf::from("b.sh")]);
        assert_eq!((o.smp, o.mem_mib, o.accel, o.timeout), (4, 2048, AccelRequest::Tcg, Duration::from_secs(9)));
        for bad in
            [&["--smp"][..], &["--smp", "x"], &["--accel", "xen"], &["--mem", "12"], &["--frob"], &["--smp", "0"]]
        {
            let bad: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            assert!(parse_args(&bad).is_err(), "{bad:?}");
        }
        let q = qemu_args(&o, Accel::Tcg, Path::new("/boot/k"), Path::new("/tmp/i"), Path::new("/tmp/m.sock"));
        let joined = q.join(" ");
        assert!(joined.contains("-accel tcg -cpu EPYC-v3 -smp 4 -m 2048"));
        assert!(joined.contains("-no-reboot") && joined.contains("panic=-1"));
        let q = qemu_args(&o, Accel::Kvm, Path::new("/boot/k"), Path::new("/tmp/i"), Path::new("/tmp/m.sock"));
        assert!(q.join(" ").contains("-accel kvm -cpu host"));
    }

    #[test]
    fn console_verdict() {
        let console = "\
[    0.1] RETBleed: WARNING: Spectre v2 mitigation leaves CPU vulnerable\n\
[    0.2] WARNING: boot-time noise before the start\n\
SEVAULT-TEST-START\n\
SEVAULT-SCRIPT-BEGIN a.sh\n\
ok\n\
SEVAULT-SCRIPT-END a.sh 0\n\
SEVAULT-SCRIPT-END b.sh 3\n\
SEVAULT-DMESG-BEGIN\n\
[    5.0] SEVAULT-TEST-START\n\
[    5.1] WARNING: CPU: 1 PID: 7 at crypto/foo.c:12 bar+0x1\n\
[    5.2] Call Trace:\n\
[    5.3] Spectre V2 : something vulnerable\n\
SEVAULT-DMESG-END\n\
SEVAULT-RESULT 3\n";
        let c = parse_console(console.lines());
        assert!(c.started);
        assert_eq!(c.scripts, [("a.sh".to_string(), 0), ("b.sh".to_string(), 3)]);
        assert_eq!(c.result, Some(3));
        assert_eq!(c.kernel_problems.len(), 2, "{:?}", c.kernel_problems);
        assert!(c.kernel_problems[0].contains("crypto/foo.c"));
        let outcome = Outcome { console: c, timed_out: false, wall: Duration::ZERO, accel: Accel::Tcg };
        assert_eq!(outcome.exit_status(), 3);
        let clean = parse_console("SEVAULT-TEST-START\nSEVAULT-RESULT 0\n".lines());
        let mut outcome = Outcome { console: clean, timed_out: false, wall: Duration::ZERO, accel: Accel::Tcg };
        assert_eq!(outcome.exit_status(), 0);
        outcome.console.kernel_problems.push("Oops".into());
        assert_eq!(outcome.exit_status(), 1, "a clean status with kernel problems fails");
        outcome.timed_out = true;
        assert_eq!(outcome.exit_status(), 124);
        let crashed =
            Outcome { console: Console::default(), timed_out: false, wall: Duration::ZERO, accel: Accel::Kvm };
        assert_eq!(crashed.exit_status(), 1);
        assert!(crashed.problems()[0].contains("before /init reported"));
    }
}
