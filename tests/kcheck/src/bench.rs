//! `bench`: encryption throughput of several drivers through AF_ALG, measured in slices
//! interleaved between the drivers so that drift in the (emulated) machine hits all alike.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::af_alg::{describe, Op, Tfm};
use crate::cases::{default_seed, random_bytes};
use crate::cli::{has_iv, BenchArgs};
use crate::diff::first_difference;
use crate::Verdict;

/// Each driver and size is measured in this many slices.
const SLICES: u32 = 8;

/// The note printed with every table.
pub const TCG_NOTE: &str = "note: under QEMU TCG (what `cargo xtask vm` uses without nested SVM on KVM) these are \
emulated figures, meaningful only as ratios within this run";

/// The measurement of one driver at one size.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// Driver name.
    pub driver: String,
    /// Buffer size in bytes.
    pub size: usize,
    /// Operations completed.
    pub ops: u64,
    /// Time spent in them.
    pub elapsed: Duration,
}

impl Cell {
    /// Throughput in MB/s (10^6 bytes per second).
    pub fn mb_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ops as f64 * self.size as f64 / secs / 1e6
        } else {
            0.0
        }
    }
}

struct Bench {
    tfm: Tfm,
    op: Op,
    iv: Option<[u8; 16]>,
}

/// Runs `bench`.
pub fn run(args: &BenchArgs) -> Verdict {
    let mut rng = SmallRng::seed_from_u64(default_seed());
    let key = random_bytes(&mut rng, args.key_len);
    let iv: [u8; 16] = rng.gen();
    let mut benches = Vec::new();
    for name in &args.drivers {
        let bench = Tfm::new(name).and_then(|tfm| {
            tfm.set_key(&key)?;
            let op = tfm.op()?;
            Ok(Bench { tfm, op, iv: has_iv(name).then_some(iv) })
        });
        match bench {
            Ok(b) => benches.push(b),
            Err(e) => return Verdict::fail(format!("cannot set up {name}: {}", describe(&e))),
        }
    }
    let inputs: Vec<Vec<u8>> = args.sizes.iter().map(|&size| random_bytes(&mut rng, size)).collect();
    let mut out = Vec::new();

    // Warm up, and check that drivers of the same mode agree (a fast wrong driver is no result):
    // the first output per (mode, size) is the one the others must match.
    let mut firsts: Vec<(bool, usize, String, Vec<u8>)> = Vec::new();
    for bench in &mut benches {
        let mode = bench.iv.is_some();
        for (size, input) in inputs.iter().enumerate() {
            if let Err(e) = bench.op.crypt_into(true, bench.iv.as_ref(), input, &mut out) {
                return Verdict::fail(format!(
                    "{} failed on {} bytes: {}",
                    bench.tfm.name(),
                    input.len(),
                    describe(&e)
                ));
            }
            match firsts.iter().find(|(m, s, _, _)| *m == mode && *s == size) {
                None => firsts.push((mode, size, bench.tfm.name().to_string(), out.clone())),
                Some((_, _, first, first_out)) => {
                    if let Some(offset) = first_difference(&out, first_out) {
                        return Verdict::fail(format!(
                            "{} and {first} disagree on {} bytes (first at offset {offset}): not benchmarking",
                            bench.tfm.name(),
                            input.len()
                        ));
                    }
                }
            }
        }
    }

    println!(
        "bench: {} with AES-{} keys, sizes {:?}, {} s per driver and size in {SLICES} interleaved slices",
        args.drivers.join(", "),
        args.key_len * 8,
        args.sizes,
        args.seconds
    );
    let slice = Duration::from_secs_f64(args.seconds / f64::from(SLICES));
    let mut cells: Vec<Cell> = Vec::new();
    for &size in &args.sizes {
        for name in &args.drivers {
            cells.push(Cell { driver: name.clone(), size, ops: 0, elapsed: Duration::ZERO });
        }
    }
    let n = benches.len();
    for round in 0..SLICES as usize {
        for (s, input) in inputs.iter().enumerate() {
            // Rotate who goes first, so no driver always follows the same one.
            for k in 0..n {
                let d = (k + round) % n;
                let bench = &mut benches[d];
                let cell = &mut cells[s * n + d];
                let start = Instant::now();
                loop {
                    if let Err(e) = bench.op.crypt_into(true, bench.iv.as_ref(), input, &mut out) {
                        return Verdict::fail(format!(
                            "{} failed on {} bytes: {}",
                            cell.driver,
                            cell.size,
                            describe(&e)
                        ));
                    }
                    cell.ops += 1;
                    if start.elapsed() >= slice {
                        break;
                    }
                }
                cell.elapsed += start.elapsed();
            }
        }
    }
    print!("{}", table(&cells, n));
    println!("{TCG_NOTE}");
    if let Some(path) = &args.json {
        if let Err(e) = std::fs::write(path, json(args, &cells, n)) {
            return Verdict::fail(format!("cannot write {}: {e}", path.display()));
        }
        println!("bench: results written to {}", path.display());
    }
    let summary: Vec<String> = cells
        .chunks(n)
        .map(|row| {
            let figures: Vec<String> = row.iter().map(|c| format!("{:.1}", c.mb_per_s())).collect();
            format!("{} B: {} MB/s", row[0].size, figures.join(" / "))
        })
        .collect();
    Verdict::pass(format!("{} (TCG-emulated figures: compare as ratios only)", summary.join(", ")))
}

/// Ratio of a cell's throughput to the first driver's at the same size.
fn ratio(cell: &Cell, base: &Cell) -> f64 {
    let base = base.mb_per_s();
    if base > 0.0 {
        cell.mb_per_s() / base
    } else {
        0.0
    }
}

/// The table: one row per size and driver, `n` drivers per size.
pub fn table(cells: &[Cell], n: usize) -> String {
    let width = cells.iter().map(|c| c.driver.len()).max().unwrap_or(6).max(6);
    let base_name = cells.first().map_or("", |c| c.driver.as_str());
    let mut s = format!("  {:>8}  {:<width$}  {:>10}  {:>10}  {:>8}\n", "size", "driver", "MB/s", "ops", "ratio");
    for row in cells.chunks(n.max(1)) {
        for cell in row {
            let _ = writeln!(
                s,
                "  {:>8}  {:<width$}  {:>10.2}  {:>10}  {:>8.3}",
                cell.size,
                cell.driver,
                cell.mb_per_s(),
                cell.ops,
                ratio(cell, &row[0])
            );
        }
    }
    let _ = writeln!(s, "  (ratio: MB/s against {base_name} at the same size; MB = 10^6 bytes)");
    s
}

/// The results as JSON.
pub fn json(args: &BenchArgs, cells: &[Cell], n: usize) -> String {
    let mut s = String::from("{\n  \"tool\": \"sevault-kcheck bench\",\n");
    let _ = writeln!(s, "  \"key_len\": {},", args.key_len);
    let _ = writeln!(s, "  \"seconds_per_cell\": {},", args.seconds);
    let _ = writeln!(s, "  \"note\": {},", json_string(TCG_NOTE.trim_start_matches("note: ")));
    let drivers: Vec<String> = args.drivers.iter().map(|d| json_string(d)).collect();
    let _ = writeln!(s, "  \"drivers\": [{}],", drivers.join(", "));
    s.push_str("  \"results\": [\n");
    let rows: Vec<String> = cells
        .chunks(n.max(1))
        .flat_map(|row| {
            row.iter().map(|c| {
                format!(
                    "    {{\"driver\": {}, \"size\": {}, \"ops\": {}, \"seconds\": {:.6}, \"mb_per_s\": {:.3}, \"ratio_to_first\": {:.4}}}",
                    json_string(&c.driver),
                    c.size,
                    c.ops,
                    c.elapsed.as_secs_f64(),
                    c.mb_per_s(),
                    ratio(c, &row[0])
                )
            })
        })
        .collect();
    s.push_str(&rows.join(",\n"));
    s.push_str("\n  ]\n}\n");
    s
}

/// A JSON string literal.
pub fn json_string(text: &str) -> String {
    let mut s = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", u32::from(c));
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells() -> Vec<Cell> {
        let cell =
            |driver: &str, size, ops, ms| Cell { driver: driver.into(), size, ops, elapsed: Duration::from_millis(ms) };
        vec![cell("ecb-aes-sevault", 4096, 1000, 1000), cell("ecb(aes-generic)", 4096, 2000, 1000)]
    }

    #[test]
    fn throughput_and_ratios() {
        let c = cells();
        assert!((c[0].mb_per_s() - 4.096).abs() < 1e-9);
        assert!((ratio(&c[1], &c[0]) - 2.0).abs() < 1e-9);
        let t = table(&c, 2);
        assert!(t.contains("4.10") && t.contains("8.19") && t.contains("2.000"), "{t}");
        let zero = Cell { driver: "x".into(), size: 16, ops: 0, elapsed: Duration::ZERO };
        assert_eq!(zero.mb_per_s(), 0.0);
        assert_eq!(ratio(&c[0], &zero), 0.0);
    }

    #[test]
    fn json_output() {
        let args = BenchArgs {
            drivers: vec!["ecb-aes-sevault".into(), "ecb(aes-generic)".into()],
            sizes: vec![4096],
            seconds: 1.0,
            key_len: 16,
            json: None,
        };
        let j = json(&args, &cells(), 2);
        assert!(j.contains("\"drivers\": [\"ecb-aes-sevault\", \"ecb(aes-generic)\"]"), "{j}");
        assert!(j.contains("\"ratio_to_first\": 2.0000"), "{j}");
        assert!(j.contains("\"mb_per_s\": 4.096"), "{j}");
        assert_eq!(j.matches('{').count(), j.matches('}').count());
        assert_eq!(json_string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
