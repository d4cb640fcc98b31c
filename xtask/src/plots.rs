//! SVG plots of the benchmarks' results (`sevault-plots`), written next to them in
//! `experiments/results/`: `cargo xtask plots` draws them again from the results files;
//! `bench-aes`, `bench-vm` and `bench-dmcrypt` draw theirs after each run (the cost model
//! draws its own).
use std::path::Path;

use anyhow::{Context, Result};
use sevault_plots::{against_size, Series};

const RESULTS: &str = "experiments/results";

/// All plots from the results present; a missing results file is skipped, with a note.
pub fn all(root: &Path) -> Result<()> {
    for (what, file, draw) in [
        ("bench-aes", "aes-bench.json", aes_bench as fn(&Path) -> Result<Vec<String>>),
        ("bench-vm", "vm-bench.txt", vm_bench),
        ("bench-dmcrypt", "dmcrypt-bench.json", dmcrypt_bench),
    ] {
        if root.join(RESULTS).join(file).exists() {
            for written in draw(root)? {
                println!("xtask: {written}");
            }
        } else {
            println!("xtask: no {RESULTS}/{file}: run `cargo xtask {what}` for its plots");
        }
    }
    Ok(())
}

/// A chart against any x (`sevault_plots::chart`) into `experiments/results/<file>`.
fn draw_chart(root: &Path, file: &str, title: &str, x: &str, y: &str, series: &[Series]) -> Result<String> {
    let path = root.join(RESULTS).join(file);
    sevault_plots::chart(&path, title, x, y, series).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(path.display().to_string())
}

fn draw(root: &Path, file: &str, title: &str, y: &str, series: &[Series]) -> Result<String> {
    let path = root.join(RESULTS).join(file);
    against_size(&path, title, y, series).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(path.display().to_string())
}

/// bench-aes: the vault's code over OpenSSL's, against buffer size, per mode and direction,
/// one chart per key size.
pub fn aes_bench(root: &Path) -> Result<Vec<String>> {
    let path = root.join(RESULTS).join("aes-bench.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path)?).with_context(|| format!("{}", path.display()))?;
    let rows = doc["rows"].as_array().context("aes-bench.json has no rows")?;
    let mut written = Vec::new();
    for bits in [128u64, 256] {
        let mut series = Vec::new();
        for mode in ["ECB", "CBC", "CTR", "XTS"] {
            for direction in ["encrypt", "decrypt"] {
                let points: Vec<(f64, f64)> = rows
                    .iter()
                    .filter(|r| {
                        r["key_bits"].as_u64() == Some(bits)
                            && r["mode"].as_str() == Some(mode)
                            && r["direction"].as_str() == Some(direction)
                    })
                    .filter_map(|r| Some((r["bytes"].as_f64()?, r["vault_over_openssl"].as_f64()?)))
                    .collect();
                if !points.is_empty() {
                    series.push(Series { label: format!("{mode} {direction}"), points });
                }
            }
        }
        let title = format!("bench-aes (host): the vault's AES code / OpenSSL AES-NI, AES-{bits}");
        written.push(draw(root, &format!("aes-bench-aes{bits}.svg"), &title, "vault / OpenSSL", &series)?);
    }
    // Multi-stream CBC encryption: all streams' throughput over the single stream's.
    let streams = doc["streams"].as_array().map(Vec::as_slice).unwrap_or_default();
    if !streams.is_empty() {
        let mut series: Vec<Series> = [128u64, 256]
            .iter()
            .map(|&bits| Series {
                label: format!("AES-{bits}: N streams / 1 stream"),
                points: streams
                    .iter()
                    .filter(|r| r["key_bits"].as_u64() == Some(bits))
                    .filter_map(|r| Some((r["streams"].as_f64()?, r["speedup"].as_f64()?)))
                    .collect(),
            })
            .collect();
        series.push(Series { label: "target: 3× at 4 streams".into(), points: vec![(1.0, 3.0), (8.0, 3.0)] });
        written.push(draw_chart(
            root,
            "aes-bench-cbc-streams.svg",
            "bench-aes (host): CBC encryption of N independent 4 KiB streams together (the vault's streams routine)",
            "streams",
            "throughput / one stream's",
            &series,
        )?);
    }
    Ok(written)
}

/// The rows `size driver MB/s ops ratio` of sevault-kcheck's bench tables, by driver.
pub fn kcheck_bench_rows(text: &str) -> Vec<(String, f64, f64)> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            match f[..] {
                [size, driver, mb, ops, ratio] if ops.parse::<u64>().is_ok() && ratio.parse::<f64>().is_ok() => {
                    Some((driver.to_string(), size.parse().ok()?, mb.parse().ok()?))
                }
                _ => None,
            }
        })
        .collect()
}

/// bench-vm: MB/s (TCG-emulated) against request size per driver, one chart per mode.
pub fn vm_bench(root: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(root.join(RESULTS).join("vm-bench.txt"))?;
    let rows = kcheck_bench_rows(&text);
    let mut written = Vec::new();
    for mode in ["cbc", "ecb"] {
        let mut drivers: Vec<&str> = rows.iter().map(|r| r.0.as_str()).filter(|d| d.starts_with(mode)).collect();
        drivers.sort_unstable();
        drivers.dedup();
        let series: Vec<Series> = drivers
            .iter()
            .map(|d| Series {
                label: (*d).to_string(),
                points: rows.iter().filter(|r| r.0 == *d).map(|r| (r.1, r.2)).collect(),
            })
            .collect();
        if series.iter().all(|s| s.points.len() < 2) {
            continue;
        }
        let title = format!("bench-vm (nested VM, QEMU TCG: compare within the chart only): {mode}(aes) MB/s");
        written.push(draw(root, &format!("vm-bench-{mode}.svg"), &title, "MB/s (TCG)", &series)?);
    }
    Ok(written)
}

/// bench-dmcrypt: the vault over AES-NI and over generic AES, against dm-crypt's sector size
/// (the size of each request the vault gets), per fio pattern.
pub fn dmcrypt_bench(root: &Path) -> Result<Vec<String>> {
    let path = root.join(RESULTS).join("dmcrypt-bench.json");
    let runs: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&path)?).with_context(|| format!("{}", path.display()))?;
    let run = |series: &str, cipher: &str, batch: u64, sector: u64, pattern: &str| {
        runs.iter().find(|r| {
            r["series"] == series
                && r["cipher"] == cipher
                && r["max_batch"].as_u64() == Some(batch)
                && r["sector"].as_u64() == Some(sector)
                && r["pattern"] == pattern
        })
    };
    let bw = |series, cipher, batch, sector, pattern| {
        run(series, cipher, batch, sector, pattern).and_then(|r| r["bytes_per_s"].as_f64())
    };
    let mut series = Vec::new();
    for (batch, which) in [(16, "vault"), (0, "unbatched")] {
        for pattern in ["write", "randwrite", "randread"] {
            let points = [512u64, 4096]
                .iter()
                .filter_map(|&s| {
                    Some((
                        s as f64,
                        bw("matrix", "xts-aes-sevault", batch, s, pattern)?
                            / bw("matrix", "xts-aes-aesni", 0, s, pattern)?,
                    ))
                })
                .collect();
            series.push(Series { label: format!("{which} / AES-NI, {pattern}"), points });
        }
    }
    let title = "bench-dmcrypt (nested VM, QEMU TCG): fio through XTS-256 dm-crypt, vault relative to AES-NI";
    let mut written = vec![draw(root, "dmcrypt-bench.svg", title, "ratio (TCG)", &series)?];
    // Batching against max_batch, 4096-byte sectors: throughput relative to AES-NI, and
    // VMRUNs per request.
    let batches = [1u64, 2, 4, 8, 16];
    let mut ratio = Vec::new();
    let mut vmruns = Vec::new();
    for pattern in ["randwrite", "randread"] {
        let aesni = bw("matrix", "xts-aes-aesni", 0, 4096, pattern);
        ratio.push(Series {
            label: format!("vault / AES-NI, {pattern}"),
            points: batches
                .iter()
                .filter_map(|&b| Some((b as f64, bw("sweep", "xts-aes-sevault", b, 4096, pattern)? / aesni?)))
                .collect(),
        });
        vmruns.push(Series {
            label: format!("VMRUNs per request, {pattern}"),
            points: batches
                .iter()
                .filter_map(|&b| {
                    let r = run("sweep", "xts-aes-sevault", b, 4096, pattern)?;
                    let requests = r["vault_requests"].as_f64().filter(|&n| n > 0.0)?;
                    Some((b as f64, r["vault_vmruns"].as_f64()? / requests))
                })
                .collect(),
        });
    }
    // Against fio's queue depth (max_batch 16, random writes).
    let mut depth: Vec<(f64, f64, f64)> = runs
        .iter()
        .filter(|r| {
            (r["series"] == "depth" || r["series"] == "matrix")
                && r["cipher"] == "xts-aes-sevault"
                && r["max_batch"].as_u64() == Some(16)
                && r["sector"].as_u64() == Some(4096)
                && r["pattern"] == "randwrite"
        })
        .filter_map(|r| {
            let requests = r["vault_requests"].as_f64().filter(|&n| n > 0.0)?;
            let batches = r["vault_batches"].as_f64().filter(|&n| n > 0.0)?;
            Some((r["iodepth"].as_f64()?, r["vault_vmruns"].as_f64()? / requests, requests / batches))
        })
        .collect();
    depth.sort_by(|a, b| a.0.total_cmp(&b.0));
    let depth_series = [
        Series { label: "VMRUNs per request".into(), points: depth.iter().map(|d| (d.0, d.1)).collect() },
        Series { label: "requests per batch / 16".into(), points: depth.iter().map(|d| (d.0, d.2 / 16.0)).collect() },
    ];
    written.push(draw_chart(
        root,
        "dmcrypt-depth.svg",
        "bench-dmcrypt (QEMU TCG): the vault's batching against fio's queue depth (max_batch 16, 4 KiB sectors, random writes)",
        "fio iodepth per job (two jobs)",
        "per request / per batch",
        &depth_series,
    )?);
    for (file, title, y, series) in [
        (
            "dmcrypt-batching.svg",
            "bench-dmcrypt (QEMU TCG): vault / AES-NI against max_batch, 4096-byte sectors",
            "ratio (TCG)",
            &ratio,
        ),
        (
            "dmcrypt-vmruns.svg",
            "bench-dmcrypt (QEMU TCG): VMRUNs per request against max_batch, 4096-byte sectors",
            "VMRUNs per request",
            &vmruns,
        ),
    ] {
        written.push(draw_chart(root, file, title, "max_batch (requests per VMRUN at most)", y, series)?);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table sevault-kcheck bench prints (copied from a bench-vm run).
    #[test]
    fn reads_kcheck_bench_tables() {
        let text = "bench: cbc-aes-sevault, ... sizes [4096, 65536]\n      size  driver                  MB/s         ops     ratio\n      \
                    4096  cbc-aes-sevault        40.24       19653     1.000\n     65536  cbc(aes-generic)       39.14        1200     0.420\n  \
                    (ratio: MB/s against cbc-aes-sevault at the same size; MB = 10^6 bytes)\n";
        assert_eq!(
            kcheck_bench_rows(text),
            [("cbc-aes-sevault".to_string(), 4096.0, 40.24), ("cbc(aes-generic)".to_string(), 65536.0, 39.14)]
        );
    }
}
