//! `cargo xtask bench-aes` and `cost-model`, and `bench-vm`.
//!
//! `bench-aes` runs the AES throughput benchmark (`experiments/aes-bench`,
//! package `sevault-aes-bench`) in release mode, streaming its output, and keeps its results
//! in `experiments/results/aes-bench.md` and `.json`. Arguments after `bench-aes` (such as
//! `--seconds 0.5` or `--runs 5`) are passed to the benchmark unchanged.
use std::path::Path;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

/// The Markdown results, relative to the workspace root.
const OUT_MD: &str = "experiments/results/aes-bench.md";
/// The JSON results, relative to the workspace root.
const OUT_JSON: &str = "experiments/results/aes-bench.json";

/// Runs the benchmark from `root` (the workspace root) with `args` passed through.
pub fn bench_aes(root: &Path, args: &[String]) -> Result<()> {
    let (md, json) = (root.join(OUT_MD), root.join(OUT_JSON));
    let outputs = [("--out-md", md.as_os_str()), ("--out-json", json.as_os_str())];
    run_release(root, "sevault-aes-bench", "bench-aes", &outputs, args, "the AES benchmark")?;
    // `--help` only prints the benchmark's usage.
    if !args.iter().any(|arg| arg == "-h" || arg == "--help") {
        println!("AES benchmark results: {} and {}", md.display(), json.display());
        for plot in crate::plots::aes_bench(root)? {
            println!("plot: {plot}");
        }
    }
    Ok(())
}

/// `cargo xtask cost-model`: the HV's host-side work per request (measured) and the cost
/// model's predictions for EPYC hardware (`experiments/cost-model`), from bench-aes's last
/// results, into `experiments/results/cost-model.md`, `.json` and one SVG per workload.
pub fn cost_model(root: &Path, args: &[String]) -> Result<()> {
    let results = root.join("experiments/results");
    let (md, json) = (results.join("cost-model.md"), results.join("cost-model.json"));
    let outputs = [
        ("--aes-json", root.join(OUT_JSON).into_os_string()),
        ("--out-md", md.clone().into_os_string()),
        ("--out-json", json.clone().into_os_string()),
        ("--svg-dir", results.clone().into_os_string()),
    ];
    let outputs: Vec<(&str, &std::ffi::OsStr)> = outputs.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    run_release(root, "sevault-cost-model", "cost-model", &outputs, args, "the cost model")?;
    if !args.iter().any(|arg| arg == "-h" || arg == "--help") {
        println!("cost model: {}, {} and {}/cost-model-*.svg", md.display(), json.display(), results.display());
    }
    Ok(())
}

/// `cargo run --release -p PACKAGE -- OUTPUTS ARGS`, with the xtask command line recorded in
/// `SEVAULT_BENCH_COMMAND` for the results.
fn run_release(
    root: &Path,
    package: &str,
    xtask_command: &str,
    outputs: &[(&str, &std::ffi::OsStr)],
    args: &[String],
    what: &str,
) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let command: Vec<String> =
        std::iter::once(format!("cargo xtask {xtask_command}")).chain(args.iter().cloned()).collect();
    let mut run = Command::new(&cargo);
    run.current_dir(root).args(["run", "--release", "-p", package, "--"]);
    for (flag, value) in outputs {
        run.arg(flag).arg(value);
    }
    let status = run
        .args(args)
        .env("SEVAULT_BENCH_COMMAND", command.join(" "))
        .status()
        .with_context(|| format!("could not start `{}`", cargo.to_string_lossy()))?;
    if !status.success() {
        bail!("{what} ({package}) failed: {status}");
    }
    Ok(())
}

/// The `--seconds S` of a nested-VM benchmark (`default` without it).
fn seconds_arg(args: &[String], default: &str, command: &str) -> Result<String> {
    match args {
        [] => Ok(default.to_string()),
        [flag, value] if flag == "--seconds" && value.parse::<f64>().is_ok() => Ok(value.clone()),
        _ => bail!("usage: cargo xtask {command} [--seconds S] [--kernel 6.1|6.12]"),
    }
}

/// A copy of `experiments/vm/NAME.sh` that sets `variable=value` first (the scripts read
/// their run length from it), in `target/sevault/vm/NAME-run.sh`.
fn script_with(root: &Path, name: &str, variable: &str, value: &str) -> Result<std::path::PathBuf> {
    let script = std::fs::read_to_string(root.join(format!("experiments/vm/{name}.sh")))?;
    let run = root.join(format!("target/sevault/vm/{name}-run.sh"));
    std::fs::create_dir_all(run.parent().context("no parent")?)?;
    std::fs::write(&run, format!("{variable}={value}\n{script}"))?;
    Ok(run)
}

/// The nested-VM measurement's results, relative to the workspace root.
const VM_OUT: &str = "experiments/results/vm-bench.txt";

/// `cargo xtask bench-vm [--seconds S]`: builds the module and the checker, runs
/// `experiments/vm/vm-bench.sh` in the nested VM — VMRUNs per request and bytes per VMRUN
/// from the vault's statistics at 4 KiB and 64 KiB, and throughput of the vault against
/// the kernel's AES-NI and generic drivers in the same run — and keeps the script's output
/// with the command and date in `experiments/results/vm-bench.txt`.
pub fn bench_vm(root: &Path, args: &[String]) -> Result<()> {
    let (line, args) = crate::setup::take_one_kernel(args)?;
    let seconds = seconds_arg(&args, "2", "bench-vm")?;
    let kernel = crate::setup::setup(root, line)?;
    let ko = crate::module::build(root, &kernel)?;
    let kcheck = crate::build_kcheck(root)?;
    let run = script_with(root, "vm-bench", "SECONDS_PER_CELL", &seconds)?;
    let options = crate::vm::Options {
        scripts: vec![run],
        ko: Some(ko),
        kcheck: Some(kcheck),
        timeout: std::time::Duration::from_secs(1800),
        ..Default::default()
    };
    let outcome = crate::vm::run(root, &kernel, &options)?;
    if outcome.exit_status() != 0 {
        for problem in outcome.problems() {
            println!("xtask: {problem}");
        }
        bail!("the nested-VM benchmark failed");
    }
    let body: Vec<&str> = outcome
        .console
        .lines
        .iter()
        .map(String::as_str)
        .skip_while(|l| !l.starts_with("SEVAULT-SCRIPT-BEGIN vm-bench-run.sh"))
        .skip(1)
        .take_while(|l| !l.starts_with("SEVAULT-SCRIPT-END"))
        .filter(|l| !l.starts_with('['))
        .collect();
    let date = Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output()?;
    let text = format!(
        "# SE-Vault Mini in the nested VM (QEMU TCG, emulated EPYC-v3, {} vCPUs, Debian {})\n\
         # {} — `cargo xtask bench-vm --seconds {seconds}` — TCG-emulated: compare only within this file.\n{}\n",
        options.smp,
        kernel.release,
        String::from_utf8_lossy(&date.stdout).trim(),
        body.join("\n")
    );
    let out = root.join(VM_OUT);
    std::fs::write(&out, &text)?;
    println!("\n{text}\nwritten to {}", out.display());
    for plot in crate::plots::vm_bench(root)? {
        println!("plot: {plot}");
    }
    Ok(())
}

/// The dm-crypt benchmark's results, relative to the workspace root.
const DMCRYPT_MD: &str = "experiments/results/dmcrypt-bench.md";
/// The same as JSON.
const DMCRYPT_JSON: &str = "experiments/results/dmcrypt-bench.json";

/// One fio run through dm-crypt, as the script reported it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FioRun {
    /// `matrix` (every cipher, sector size and pattern), `sweep` (the vault over
    /// `max_batch`), `depth` (the vault over fio's queue depth), `block` (larger fio
    /// blocks) or `nice0` (the vault with its worker at `worker_nice=0`).
    pub series: String,
    /// `xts-aes-sevault`, `xts-aes-aesni` or `xts(ecb(aes-generic))`.
    pub cipher: String,
    /// The vault's `max_batch` for the run (0: unbatched, or not the vault).
    pub max_batch: u32,
    /// dm-crypt sector size.
    pub sector: u32,
    /// fio's `rw`.
    pub pattern: String,
    /// fio's `iodepth` (per job; two jobs).
    pub iodepth: u32,
    /// fio's block size in bytes.
    pub block: u32,
    /// Bytes per second, reads and writes together.
    pub bytes_per_s: f64,
    /// The vault's requests, VMRUNs, bytes and batches over the run.
    pub vault_requests: u64,
    /// See `vault_requests`.
    pub vault_vmruns: u64,
    /// See `vault_requests`.
    pub vault_bytes: u64,
    /// See `vault_requests`.
    pub vault_batches: u64,
}

impl FioRun {
    fn per_request(&self, x: u64) -> f64 {
        if self.vault_requests == 0 {
            0.0
        } else {
            x as f64 / self.vault_requests as f64
        }
    }

    /// VMRUNs per request (0 when the vault served none).
    pub fn vmruns_per_request(&self) -> f64 {
        self.per_request(self.vault_vmruns)
    }

    /// Requests per batch (0 when the vault served none).
    pub fn requests_per_batch(&self) -> f64 {
        if self.vault_batches == 0 {
            0.0
        } else {
            self.vault_requests as f64 / self.vault_batches as f64
        }
    }
}

/// The runs in the console lines of `experiments/vm/dmcrypt-bench.sh`.
pub fn parse_fio_runs(lines: &[String]) -> Result<Vec<FioRun>> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(head) = lines[i].strip_prefix("BENCH-FIO-BEGIN ") else {
            i += 1;
            continue;
        };
        let fields: Vec<&str> = head.split_whitespace().collect();
        let [series, cipher, sector, pattern, max_batch, iodepth, block] = fields[..] else {
            bail!("bad line: {}", lines[i])
        };
        let end = lines[i..]
            .iter()
            .position(|l| l.starts_with("BENCH-FIO-END "))
            .map(|p| i + p)
            .with_context(|| format!("no BENCH-FIO-END after {}", lines[i]))?;
        // fio's JSON, without the kernel's log lines that may interleave with it.
        let json: String =
            lines[i + 1..end].iter().filter(|l| !l.starts_with('[')).cloned().collect::<Vec<_>>().join("\n");
        let doc: serde_json::Value =
            serde_json::from_str(&json).with_context(|| format!("fio's JSON for {cipher} {sector} {pattern}"))?;
        let job = &doc["jobs"][0];
        let bw = |side: &str| job[side]["bw_bytes"].as_f64().unwrap_or(0.0);
        let counters: Vec<u64> =
            lines[end]["BENCH-FIO-END ".len()..].split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
        let [requests, vmruns, bytes, batches] = counters[..] else { bail!("bad line: {}", lines[end]) };
        runs.push(FioRun {
            series: series.to_string(),
            cipher: cipher.to_string(),
            max_batch: max_batch.parse()?,
            sector: sector.parse()?,
            pattern: pattern.to_string(),
            iodepth: iodepth.parse()?,
            block: block.parse()?,
            bytes_per_s: bw("read") + bw("write"),
            vault_requests: requests,
            vault_vmruns: vmruns,
            vault_bytes: bytes,
            vault_batches: batches,
        });
        i = end + 1;
    }
    Ok(runs)
}

/// The matrix run of `cipher` (with `max_batch`) at `sector` and `pattern`.
fn matrix_run<'a>(runs: &'a [FioRun], cipher: &str, max_batch: u32, sector: u32, pattern: &str) -> Option<&'a FioRun> {
    runs.iter().find(|r| {
        r.series == "matrix"
            && r.block == 4096
            && r.cipher == cipher
            && r.max_batch == max_batch
            && r.sector == sector
            && r.pattern == pattern
    })
}

/// The results tables: per sector size and pattern, each cipher's MB/s, the vault's ratios
/// (batched and not) and its VMRUNs per request; then the vault over `max_batch`.
pub fn dmcrypt_table(runs: &[FioRun]) -> String {
    let mut md = String::from(
        "| sector | pattern | vault MB/s | vault unbatched MB/s | AES-NI MB/s | generic MB/s | vault / AES-NI | unbatched / AES-NI | vault / generic | vault requests | VMRUNs per request | unbatched VMRUNs per request | requests per batch |\n\
         |--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for sector in [512, 4096] {
        for pattern in ["write", "read", "randwrite", "randread"] {
            let (Some(v), Some(u), Some(a), Some(g)) = (
                matrix_run(runs, "xts-aes-sevault", 16, sector, pattern),
                matrix_run(runs, "xts-aes-sevault", 0, sector, pattern),
                matrix_run(runs, "xts-aes-aesni", 0, sector, pattern),
                matrix_run(runs, "xts(ecb(aes-generic))", 0, sector, pattern),
            ) else {
                continue;
            };
            md += &format!(
                "| {sector} | {pattern} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {} | {:.3} | {:.3} | {:.1} |\n",
                v.bytes_per_s / 1e6,
                u.bytes_per_s / 1e6,
                a.bytes_per_s / 1e6,
                g.bytes_per_s / 1e6,
                v.bytes_per_s / a.bytes_per_s,
                u.bytes_per_s / a.bytes_per_s,
                v.bytes_per_s / g.bytes_per_s,
                v.vault_requests,
                v.vmruns_per_request(),
                u.vmruns_per_request(),
                v.requests_per_batch(),
            );
        }
    }
    md += "\nThe vault over `max_batch` (4096-byte sectors; AES-NI from the table above):\n\n\
           | max_batch | pattern | vault MB/s | vault / AES-NI | vault requests | VMRUNs per request | requests per batch |\n\
           |--:|---|--:|--:|--:|--:|--:|\n";
    for run in runs.iter().filter(|r| r.series == "sweep") {
        let aesni = matrix_run(runs, "xts-aes-aesni", 0, run.sector, &run.pattern).map_or(f64::NAN, |a| a.bytes_per_s);
        md += &format!(
            "| {} | {} | {:.1} | {:.2} | {} | {:.3} | {:.1} |\n",
            run.max_batch,
            run.pattern,
            run.bytes_per_s / 1e6,
            run.bytes_per_s / aesni,
            run.vault_requests,
            run.vmruns_per_request(),
            run.requests_per_batch(),
        );
    }
    md += "\nThe vault (`max_batch` 16) over fio's queue depth per job (two jobs; 4096-byte sectors, random writes; \
           the tables above are depth 8):\n\n\
           | iodepth | vault MB/s | vault requests | VMRUNs per request | requests per batch |\n\
           |--:|--:|--:|--:|--:|\n";
    let mut depth: Vec<&FioRun> = runs.iter().filter(|r| r.series == "depth").collect();
    if let Some(eight) = matrix_run(runs, "xts-aes-sevault", 16, 4096, "randwrite") {
        depth.push(eight);
    }
    depth.sort_by_key(|r| r.iodepth);
    for run in depth {
        md += &format!(
            "| {} | {:.1} | {} | {:.3} | {:.1} |\n",
            run.iodepth,
            run.bytes_per_s / 1e6,
            run.vault_requests,
            run.vmruns_per_request(),
            run.requests_per_batch(),
        );
    }
    md += "\nThe vault's worker priority (`max_batch` 16, 4096-byte sectors, depth 8): the default `worker_nice=19` \
           (from the matrix) against `worker_nice=0` (the workqueue's own priority, the default until 2026-12-03):\n\n\
           | worker_nice | pattern | vault MB/s | vault / AES-NI | vault requests | VMRUNs per request | requests per batch |\n\
           |--:|---|--:|--:|--:|--:|--:|\n";
    for pattern in ["randwrite", "randread"] {
        let aesni = matrix_run(runs, "xts-aes-aesni", 0, 4096, pattern).map_or(f64::NAN, |a| a.bytes_per_s);
        let default = matrix_run(runs, "xts-aes-sevault", 16, 4096, pattern);
        let pool = runs.iter().find(|r| r.series == "nice0" && r.pattern == pattern);
        for (nice, run) in [(19, default), (0, pool)] {
            let Some(run) = run else { continue };
            md += &format!(
                "| {nice} | {pattern} | {:.1} | {:.2} | {} | {:.3} | {:.1} |\n",
                run.bytes_per_s / 1e6,
                run.bytes_per_s / aesni,
                run.vault_requests,
                run.vmruns_per_request(),
                run.requests_per_batch(),
            );
        }
    }
    md += "\nThe vault (`max_batch` 16) and AES-NI over fio's block size (4096-byte sectors: dm-crypt sends one request \
           per 4 KiB of each block, a block's requests at once; depth 8):\n\n\
           | block | pattern | vault MB/s | AES-NI MB/s | vault / AES-NI | vault requests | VMRUNs per request | requests per batch |\n\
           |--:|---|--:|--:|--:|--:|--:|--:|\n";
    for block in [4096u32, 16384, 65536] {
        for pattern in ["write", "randwrite"] {
            let find = |cipher: &str, batch: u32| {
                runs.iter().find(|r| {
                    (r.series == "block" || r.series == "matrix")
                        && r.cipher == cipher
                        && r.max_batch == batch
                        && r.sector == 4096
                        && r.block == block
                        && r.pattern == pattern
                })
            };
            let (Some(v), Some(a)) = (find("xts-aes-sevault", 16), find("xts-aes-aesni", 0)) else { continue };
            md += &format!(
                "| {} KiB | {pattern} | {:.1} | {:.1} | {:.2} | {} | {:.3} | {:.1} |\n",
                block / 1024,
                v.bytes_per_s / 1e6,
                a.bytes_per_s / 1e6,
                v.bytes_per_s / a.bytes_per_s,
                v.vault_requests,
                v.vmruns_per_request(),
                v.requests_per_batch(),
            );
        }
    }
    md
}

/// `cargo xtask bench-dmcrypt [--seconds S] [--kernel K]`: fio through dm-crypt in the
/// nested VM on the vault, AES-NI and generic AES (`experiments/vm/dmcrypt-bench.sh`), into
/// `experiments/results/dmcrypt-bench.md` and `.json`.
pub fn bench_dmcrypt(root: &Path, args: &[String]) -> Result<()> {
    let (line, args) = crate::setup::take_one_kernel(args)?;
    let seconds = seconds_arg(&args, "3", "bench-dmcrypt")?;
    let kernel = crate::setup::setup(root, line)?;
    crate::setup::ensure_packages(&["fio"], line)?;
    let ko = crate::module::build(root, &kernel)?;
    let run = script_with(root, "dmcrypt-bench", "SECONDS_PER_RUN", &seconds)?;
    let options = crate::vm::Options {
        scripts: vec![run],
        ko: Some(ko),
        timeout: std::time::Duration::from_secs(1800),
        extra_binaries: vec!["/usr/bin/fio".to_string()],
        ..Default::default()
    };
    let outcome = crate::vm::run(root, &kernel, &options)?;
    if outcome.exit_status() != 0 {
        for problem in outcome.problems() {
            println!("xtask: {problem}");
        }
        bail!("the dm-crypt benchmark failed");
    }
    let runs = parse_fio_runs(&outcome.console.lines)?;
    ensure!(
        runs.len() == 4 * 2 * 4 + 2 * 2 * 2 + 5 * 2 + 4 + 2,
        "expected 56 fio runs, the script reported {}",
        runs.len()
    );
    let date = Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output()?;
    let md = format!(
        "# dm-crypt on the vault, AES-NI and generic AES (nested VM, QEMU TCG)\n\n\
         `cargo xtask bench-dmcrypt --seconds {seconds}`, {} on Debian {} ({} vCPUs, emulated EPYC-v3). \
         TCG-emulated: compare only within this table; nothing here is a hardware figure.\n\n\
         fio through dm-crypt (XTS, AES-256, plain64; 128 MiB ramdisk): 4 KiB blocks, O_DIRECT, libaio with 8 in \
         flight per job (except the depth table), two jobs; {seconds} s per run. With 512-byte sectors dm-crypt sends the cipher one request per \
         sector (8 per 4 KiB block); with 4096-byte sectors, one per block. \"vault\" is the default, \
         `max_batch=16` (requests queue per CPU and are served up to 16 per VMRUN); \"unbatched\" is \
         `max_batch=0` (each request on its own VMRUN, the simd/cryptd path). VMRUNs count every entry into \
         the vault, including re-entries after host interrupts.\n\n{}\n\
         Script: `experiments/vm/dmcrypt-bench.sh`; every run's figures: `dmcrypt-bench.json`.\n",
        String::from_utf8_lossy(&date.stdout).trim(),
        kernel.release,
        options.smp,
        dmcrypt_table(&runs)
    );
    std::fs::write(root.join(DMCRYPT_MD), &md)?;
    std::fs::write(root.join(DMCRYPT_JSON), serde_json::to_string_pretty(&runs)?)?;
    println!("\n{md}\nwritten to {} and {}", DMCRYPT_MD, DMCRYPT_JSON);
    for plot in crate::plots::dmcrypt_bench(root)? {
        println!("plot: {plot}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real fio 3.33 JSON report (`testdata/`, from `fio --rw=randrw … --output-format=json`
    /// on the host), as the script frames it, with a kernel line in the middle: the
    /// bandwidth is fio's read.bw_bytes + write.bw_bytes (63715100 + 63608711, read off the
    /// file with Python), and the counters come from the END line.
    #[test]
    fn parses_the_scripts_fio_runs() {
        let json = include_str!("../testdata/fio-3.33-randrw.json");
        let mut lines =
            vec!["noise".to_string(), "BENCH-FIO-BEGIN sweep xts-aes-sevault 512 randrw 8 32 4096".to_string()];
        let mut body: Vec<String> = json.lines().map(String::from).collect();
        body.insert(3, "[   12.345678] sevault: a kernel line in the middle".to_string());
        lines.extend(body);
        lines.push("BENCH-FIO-END 37224 40170 17694720 4653".to_string());
        let runs = parse_fio_runs(&lines).unwrap();
        assert_eq!(
            runs,
            [FioRun {
                series: "sweep".into(),
                cipher: "xts-aes-sevault".into(),
                max_batch: 8,
                sector: 512,
                pattern: "randrw".into(),
                iodepth: 32,
                block: 4096,
                bytes_per_s: 63_715_100.0 + 63_608_711.0,
                vault_requests: 37224,
                vault_vmruns: 40170,
                vault_bytes: 17_694_720,
                vault_batches: 4653,
            }]
        );
        lines.pop();
        assert!(parse_fio_runs(&lines).is_err(), "a run without its END line");
    }
}
