//! `sevault-cost-model`: the HV's host-side work per request, measured in TSC cycles with
//! the HV's own code, combined with the vault's and AES-NI's AES throughput (bench-aes) and
//! published world-switch costs into a prediction of the vault's throughput relative to
//! AES-NI on EPYC hardware — plain SVM, SEV-ES (bound) and SNP — at 512 B to 64 KiB, single
//! requests and batches of 8 and 32. See `model` for the formula and every assumption.
//!
//! Run it with `cargo xtask cost-model`; see `experiments/README.md`.

mod host_work;
mod model;

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use host_work::{HostWork, Placement};
use model::{Inputs, Throughput, BATCHES, EXIT_COSTS};

const USAGE: &str = "\
usage: sevault-cost-model [--aes-json FILE] [--out-md FILE] [--out-json FILE] [--svg-dir DIR]
                          [--iterations N] [--rounds N]

  --aes-json FILE  bench-aes results to take AES throughput from
                   (default experiments/results/aes-bench.json)
  --out-md FILE    the tables as Markdown      --out-json FILE  every figure as JSON
  --svg-dir DIR    one plot per workload (cost-model-WORKLOAD.svg)
  --iterations N   requests per timed round (default 2000)   --rounds N  rounds (default 101): median used, minimum shown
";

/// A workload: which bench-aes cells it takes its throughput from.
#[derive(Clone, Copy, Debug, Serialize)]
struct Workload {
    /// Short name (file names).
    name: &'static str,
    /// What it is.
    label: &'static str,
    key_bits: u64,
    mode: &'static str,
    direction: &'static str,
}

const WORKLOADS: [Workload; 4] = [
    Workload {
        name: "xts256-enc",
        label: "dm-crypt writes: XTS, AES-256, encrypt",
        key_bits: 256,
        mode: "XTS",
        direction: "encrypt",
    },
    Workload {
        name: "xts256-dec",
        label: "dm-crypt reads: XTS, AES-256, decrypt",
        key_bits: 256,
        mode: "XTS",
        direction: "decrypt",
    },
    Workload { name: "cbc128-dec", label: "CBC, AES-128, decrypt", key_bits: 128, mode: "CBC", direction: "decrypt" },
    Workload {
        name: "cbc128-enc",
        label: "CBC, AES-128, encrypt (serial)",
        key_bits: 128,
        mode: "CBC",
        direction: "encrypt",
    },
];

/// Request sizes (bytes).
const SIZES: [u64; 8] = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];

struct Options {
    aes_json: PathBuf,
    out_md: Option<PathBuf>,
    out_json: Option<PathBuf>,
    svg_dir: Option<PathBuf>,
    iterations: u32,
    rounds: u32,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        aes_json: PathBuf::from("experiments/results/aes-bench.json"),
        out_md: None,
        out_json: None,
        svg_dir: None,
        iterations: 2_000,
        rounds: 101,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--aes-json" => o.aes_json = value()?.into(),
            "--out-md" => o.out_md = Some(value()?.into()),
            "--out-json" => o.out_json = Some(value()?.into()),
            "--svg-dir" => o.svg_dir = Some(value()?.into()),
            "--iterations" => o.iterations = value()?.parse().map_err(|e| format!("--iterations: {e}"))?,
            "--rounds" => o.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.iterations == 0 || o.rounds == 0 {
        return Err("--iterations and --rounds must be at least 1".into());
    }
    Ok(o)
}

/// The two throughputs of a workload, from bench-aes's JSON.
fn throughputs(aes: &serde_json::Value, w: &Workload) -> Result<(Throughput, Throughput), String> {
    let rows = aes["rows"].as_array().ok_or("bench-aes JSON without rows")?;
    let cell = |bytes: u64, which: &str| -> Result<f64, String> {
        rows.iter()
            .find(|r| {
                r["key_bits"].as_u64() == Some(w.key_bits)
                    && r["mode"].as_str() == Some(w.mode)
                    && r["direction"].as_str() == Some(w.direction)
                    && r["bytes"].as_u64() == Some(bytes)
            })
            .and_then(|r| r[which]["best_gb_per_s"].as_f64())
            .ok_or_else(|| format!("bench-aes JSON has no {which} figure for {} at {bytes} bytes", w.label))
    };
    let vault = Throughput { at_4k: cell(4096, "vault")?, at_64k: cell(65536, "vault")? };
    let aesni = Throughput { at_4k: cell(4096, "openssl")?, at_64k: cell(65536, "openssl")? };
    Ok((vault, aesni))
}

#[derive(Serialize)]
struct Prediction {
    workload: &'static str,
    bytes: u64,
    batch: u32,
    exit: &'static str,
    exit_ns: f64,
    ratio: f64,
}

#[derive(Serialize)]
struct Report {
    schema: &'static str,
    command: String,
    date_utc: String,
    cpu: String,
    tsc_hz: f64,
    aes_json: String,
    aes_bench_date: String,
    iterations: u32,
    rounds: u32,
    host_work: Vec<HostWork>,
    exit_costs: Vec<model::ExitCost>,
    workloads: Vec<(Workload, Throughput, Throughput)>,
    predictions: Vec<Prediction>,
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn run(o: &Options) -> Result<Report, String> {
    let aes_text = std::fs::read_to_string(&o.aes_json)
        .map_err(|e| format!("{}: {e} (run `cargo xtask bench-aes` first)", o.aes_json.display()))?;
    let aes: serde_json::Value =
        serde_json::from_str(&aes_text).map_err(|e| format!("{}: {e}", o.aes_json.display()))?;
    let workloads =
        WORKLOADS.iter().map(|w| throughputs(&aes, w).map(|(v, a)| (*w, v, a))).collect::<Result<Vec<_>, _>>()?;
    eprintln!("sevault-cost-model: measuring the TSC rate");
    let tsc_hz = host_work::tsc_hz();
    // Untimed, until the core has left its idle clock (the first shape measured read ~60 %
    // slower than the same shape later without this).
    let warm_up = std::time::Instant::now();
    while warm_up.elapsed().as_millis() < 500 {
        host_work::measure(4096, Placement::OutOfPlace, o.iterations, 1, tsc_hz)?;
    }
    let mut host = Vec::new();
    for placement in [Placement::InPlace, Placement::OutOfPlace] {
        for n in SIZES {
            let w = host_work::measure(n, placement, o.iterations, o.rounds, tsc_hz)?;
            eprintln!(
                "sevault-cost-model: host work, {n} bytes {placement:?}: {:.0} TSC ticks = {:.0} ns, {} VMRUN(s)",
                w.tsc_ticks, w.ns, w.chunks
            );
            host.push(w);
        }
    }
    let mut predictions = Vec::new();
    for (w, vault, aesni) in &workloads {
        for h in host.iter().filter(|h| h.placement == Placement::OutOfPlace) {
            for exit in EXIT_COSTS {
                for batch in BATCHES {
                    let inputs = Inputs {
                        n: h.bytes,
                        host_ns: h.ns,
                        chunks: h.chunks,
                        vault: *vault,
                        aesni: *aesni,
                        exit_ns: exit.ns,
                        batch,
                    };
                    predictions.push(Prediction {
                        workload: w.name,
                        bytes: h.bytes,
                        batch,
                        exit: exit.platform,
                        exit_ns: exit.ns,
                        ratio: model::ratio(&inputs),
                    });
                }
            }
        }
    }
    Ok(Report {
        schema: "sevault-cost-model/1",
        command: std::env::var("SEVAULT_BENCH_COMMAND").unwrap_or_else(|_| "sevault-cost-model".into()),
        date_utc: utc_now(),
        cpu: cpu_model(),
        tsc_hz,
        aes_json: o.aes_json.display().to_string(),
        aes_bench_date: aes["machine"]["date_utc"].as_str().unwrap_or("unknown").to_string(),
        iterations: o.iterations,
        rounds: o.rounds,
        host_work: host,
        exit_costs: EXIT_COSTS.to_vec(),
        workloads,
        predictions,
    })
}

fn markdown(r: &Report) -> String {
    let mut md = String::new();
    md += "# Cost model: the vault on EPYC hardware, predicted\n\n";
    md += &format!(
        "Written by `{}` on {} ({}; TSC {:.3} GHz), AES figures from `{}` (bench-aes of {}). \
         The host-side work is measured; the world-switch costs are published figures; the ratios are \
         predictions, not measurements. Formula and every assumption: `experiments/cost-model/src/model.rs`.\n\n",
        r.command,
        r.date_utc,
        r.cpu,
        r.tsc_hz / 1e9,
        r.aes_json,
        r.aes_bench_date
    );
    md += "## The HV's host-side work per request (measured)\n\n";
    md += "XTS request, data on separate 4 KiB pages; the HV's translator, admission, nested-window mapping \
            and comm block, without the crypto API, the world switch and the vault. Median of the rounds (a \
            shared cloud VM: rounds vary by tens of per cent; the fastest round in brackets). The model uses \
            the out-of-place medians.\n\n";
    md += "| bytes | pages/side | VMRUNs | in place: TSC ticks, median (fastest round) | ns | out of place: TSC ticks, median (fastest round) | ns |\n|--:|--:|--:|--:|--:|--:|--:|\n";
    for n in SIZES {
        let find = |p| r.host_work.iter().find(|h| h.bytes == n && h.placement == p);
        if let (Some(i), Some(o)) = (find(Placement::InPlace), find(Placement::OutOfPlace)) {
            md += &format!(
                "| {n} | {} | {} | {:.0} ({:.0}) | {:.0} | {:.0} ({:.0}) | {:.0} |\n",
                i.pages_per_side, o.chunks, i.tsc_ticks, i.tsc_ticks_min, i.ns, o.tsc_ticks, o.tsc_ticks_min, o.ns
            );
        }
    }
    md += "\n## World-switch costs (published)\n\n| used for | ns | source |\n|---|--:|---|\n";
    for e in &r.exit_costs {
        md += &format!("| {} | {:.0} | {} |\n", e.platform, e.ns, e.source);
    }
    md += "\n## AES throughput (bench-aes, GB/s: 4 KiB / 64 KiB)\n\n| workload | vault | OpenSSL AES-NI |\n|---|--:|--:|\n";
    for (w, v, a) in &r.workloads {
        md += &format!("| {} | {:.2} / {:.2} | {:.2} / {:.2} |\n", w.label, v.at_4k, v.at_64k, a.at_4k, a.at_64k);
    }
    md += "\n## Predicted throughput relative to AES-NI (1.00 = as fast)\n\n";
    md += "k requests share one VMRUN (the module batches up to 16, `max_batch`; how many it gets depends on \
            the workload: thesis-notes/results.md, dm-crypt). SEV-ES's column is a bound (the SNP exit cost), so \
            its ratios are lower bounds.\n";
    for (w, _, _) in &r.workloads {
        md += &format!("\n### {}\n\n| bytes | k |", w.label);
        for e in &r.exit_costs {
            md += &format!(" {} |", e.platform);
        }
        md += "\n|--:|--:|";
        md += &"--:|".repeat(r.exit_costs.len());
        md += "\n";
        for n in [512u64, 4096, 65536] {
            for k in BATCHES {
                md += &format!("| {n} | {k} |");
                for e in &r.exit_costs {
                    let p = r
                        .predictions
                        .iter()
                        .find(|p| p.workload == w.name && p.bytes == n && p.batch == k && p.exit == e.platform);
                    md += &p.map_or(" — |".to_string(), |p| format!(" {:.2} |", p.ratio));
                }
                md += "\n";
            }
        }
    }
    md += &format!(
        "\nReproduce: `cargo xtask cost-model` (after `cargo xtask bench-aes`), or `cargo run --release -p \
         sevault-cost-model -- --out-md FILE --out-json FILE --svg-dir DIR` ({} requests × {} rounds per shape).\n",
        r.iterations, r.rounds
    );
    md
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("sevault-cost-model: {e}");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let report = match run(&options) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sevault-cost-model: {e}");
            return ExitCode::FAILURE;
        }
    };
    let md = markdown(&report);
    print!("{md}");
    let mut failed = false;
    let mut write = |path: &PathBuf, data: String| {
        if let Err(e) = std::fs::write(path, data) {
            eprintln!("sevault-cost-model: writing {}: {e}", path.display());
            failed = true;
        }
    };
    if let Some(path) = &options.out_md {
        write(path, md.clone());
    }
    if let Some(path) = &options.out_json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => write(path, json),
            Err(e) => {
                eprintln!("sevault-cost-model: JSON: {e}");
                failed = true;
            }
        }
    }
    if let Some(dir) = &options.svg_dir {
        let predictions = &report.predictions;
        for (w, _, _) in &report.workloads {
            let path = dir.join(format!("cost-model-{}.svg", w.name));
            let series: Vec<sevault_plots::Series> = EXIT_COSTS
                .iter()
                .flat_map(|e| {
                    BATCHES.iter().map(move |&k| sevault_plots::Series {
                        label: format!("{}, k = {k}", e.platform),
                        points: predictions
                            .iter()
                            .filter(|p| p.workload == w.name && p.exit == e.platform && p.batch == k)
                            .map(|p| (p.bytes as f64, p.ratio))
                            .collect(),
                    })
                })
                .collect();
            let title = format!("{} — predicted vault / AES-NI (cost model)", w.label);
            if let Err(e) = sevault_plots::against_size(&path, &title, "relative to AES-NI", &series) {
                eprintln!("sevault-cost-model: {}: {e}", path.display());
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
