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
    let bw = |cipher: &str, sector: u64, pattern: &str| {
        runs.iter()
            .find(|r| r["cipher"] == cipher && r["sector"].as_u64() == Some(sector) && r["pattern"] == pattern)
            .and_then(|r| r["bytes_per_s"].as_f64())
    };
    let mut series = Vec::new();
    for (reference, name) in [("xts-aes-aesni", "AES-NI"), ("xts(ecb(aes-generic))", "generic")] {
        for pattern in ["write", "read", "randwrite", "randread"] {
            let points = [512u64, 4096]
                .iter()
                .filter_map(|&s| Some((s as f64, bw("xts-aes-sevault", s, pattern)? / bw(reference, s, pattern)?)))
                .collect();
            series.push(Series { label: format!("vault / {name}, {pattern}"), points });
        }
    }
    let title = "bench-dmcrypt (nested VM, QEMU TCG): fio through XTS-256 dm-crypt, vault relative to";
    Ok(vec![draw(root, "dmcrypt-bench.svg", title, "ratio (TCG)", &series)?])
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
