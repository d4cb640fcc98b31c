//! The results of a run: one row per cell, shown as a text table on the terminal and
//! written as Markdown (for people) and JSON (for tools).
use std::fmt::Write as _;

use serde::Serialize;

use crate::cells::Cell;
use crate::machine::Machine;
use crate::measure::best;
use crate::streams::{self, StreamsRow};

/// Identifies the JSON layout; bump it when fields change meaning.
pub const SCHEMA: &str = "sevault-aes-bench/2";

/// One implementation's runs in one cell.
#[derive(Clone, Debug, Serialize)]
pub struct Series {
    /// The figure reported: the best run.
    pub best_gb_per_s: f64,
    /// Every run, in order.
    pub runs_gb_per_s: Vec<f64>,
}

impl Series {
    /// A series of runs (GB/s).
    pub fn new(runs: Vec<f64>) -> Self {
        Self { best_gb_per_s: best(&runs), runs_gb_per_s: runs }
    }
}

/// One cell's results.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// 128 or 256.
    pub key_bits: usize,
    /// "ECB" or "CBC".
    pub mode: &'static str,
    /// "encrypt" or "decrypt".
    pub direction: &'static str,
    /// Buffer size in bytes.
    pub bytes: usize,
    /// `sevault_guest::aes`.
    pub vault: Series,
    /// RustCrypto `aes` + `ecb`/`cbc`.
    pub rustcrypto: Series,
    /// OpenSSL EVP (`openssl speed`).
    pub openssl: Series,
    /// Best vault figure over best OpenSSL figure.
    pub vault_over_openssl: f64,
    /// The issue's target for that ratio.
    pub target_ratio: f64,
    /// `vault_over_openssl >= target_ratio`.
    pub target_met: bool,
}

impl Row {
    /// The row of `cell` from the runs of each implementation (GB/s).
    pub fn new(cell: Cell, vault: Vec<f64>, rustcrypto: Vec<f64>, openssl: Vec<f64>) -> Self {
        let (vault, rustcrypto, openssl) = (Series::new(vault), Series::new(rustcrypto), Series::new(openssl));
        let vault_over_openssl = vault.best_gb_per_s / openssl.best_gb_per_s;
        let target_ratio = cell.target_ratio();
        Self {
            key_bits: cell.key_bits(),
            mode: cell.mode_name(),
            direction: cell.direction_name(),
            bytes: cell.bytes,
            vault,
            rustcrypto,
            openssl,
            vault_over_openssl,
            target_ratio,
            target_met: vault_over_openssl >= target_ratio,
        }
    }

    /// The row's fields as table text, in column order.
    fn columns(&self) -> [String; 10] {
        [
            format!("AES-{}", self.key_bits),
            self.mode.to_owned(),
            self.direction.to_owned(),
            format!("{} KiB", self.bytes / 1024),
            format!("{:.2}", self.vault.best_gb_per_s),
            format!("{:.2}", self.rustcrypto.best_gb_per_s),
            format!("{:.2}", self.openssl.best_gb_per_s),
            format!("{:.2}", self.vault_over_openssl),
            format!("≥ {:.1}", self.target_ratio),
            if self.target_met { "yes" } else { "NO" }.to_owned(),
        ]
    }
}

/// Column headings.
const HEADINGS: [&str; 10] = [
    "Key",
    "Mode",
    "Direction",
    "Size",
    "vault GB/s",
    "RustCrypto GB/s",
    "OpenSSL GB/s",
    "vault/OpenSSL",
    "target",
    "met",
];

/// How the figures were taken.
#[derive(Clone, Debug, Serialize)]
pub struct Method {
    /// Wall-clock seconds of one run of the vault's code or RustCrypto.
    pub seconds_per_run: f64,
    /// `openssl speed -seconds` (whole seconds only).
    pub openssl_seconds_per_run: u32,
    /// Runs per implementation per cell; the best is reported.
    pub runs: u32,
    /// Untimed seconds per in-process implementation per cell before its first run.
    pub warmup_seconds: f64,
    /// The unit of every figure.
    pub unit: &'static str,
}

/// Everything a run produced.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// The command that produced these results.
    pub command: String,
    /// The benchmark binary's own arguments.
    pub argv: Vec<String>,
    /// Built without optimizations (figures meaningless).
    pub debug_build: bool,
    /// How the figures were taken.
    pub method: Method,
    /// What they were taken on.
    pub machine: Machine,
    /// One per cell.
    pub rows: Vec<Row>,
    /// Multi-stream CBC encryption, one per key size and stream count.
    pub streams: Vec<StreamsRow>,
}

impl Report {
    /// The table as aligned text.
    pub fn text_table(&self) -> String {
        let rows: Vec<[String; 10]> = self.rows.iter().map(Row::columns).collect();
        let mut widths = HEADINGS.map(|h| h.chars().count());
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
                let pad = " ".repeat(width - cell.chars().count());
                // Text columns to the left, figures to the right.
                if i < 4 {
                    let _ = write!(out, "{cell}{pad}  ");
                } else {
                    let _ = write!(out, "{pad}{cell}  ");
                }
            }
            out.trim_end().to_owned() + "\n"
        };
        let mut out = line(&HEADINGS.map(str::to_owned));
        for row in &rows {
            out += &line(row);
        }
        out + &self.summary() + "\n"
    }

    /// Which targets were met, in one sentence.
    pub fn summary(&self) -> String {
        let missed: Vec<String> = self
            .rows
            .iter()
            .filter(|row| !row.target_met)
            .map(|row| format!("AES-{} {} {} {} KiB", row.key_bits, row.mode, row.direction, row.bytes / 1024))
            .collect();
        let met = self.rows.len() - missed.len();
        if missed.is_empty() {
            format!("Targets met in all {met} cells.")
        } else {
            format!("Targets met in {met} of {} cells; not met: {}.", self.rows.len(), missed.join(", "))
        }
    }

    /// The full Markdown report: table, machine, method and command.
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(out, "# AES throughput: the vault's code vs RustCrypto vs OpenSSL\n");
        let _ =
            writeln!(out, "Written by `sevault-aes-bench` ({}). Reproduce with `cargo xtask bench-aes`.\n", m.date_utc);
        if self.debug_build {
            let _ = writeln!(out, "**Debug build: these figures are meaningless.**\n");
        }
        let _ = writeln!(out, "> {}\n", m.note);
        let _ = writeln!(out, "## Results\n");
        let _ = writeln!(
            out,
            "GB/s = 10^9 bytes per second; best of {} runs per implementation and cell. Target: vault/OpenSSL \
             ≥ 0.5 for ECB and CBC decryption, ≥ 0.9 for CBC encryption.\n",
            self.method.runs
        );
        let _ = writeln!(out, "| {} |", HEADINGS.join(" | "));
        let align: Vec<&str> = (0..HEADINGS.len()).map(|i| if i < 4 { ":--" } else { "--:" }).collect();
        let _ = writeln!(out, "|{}|", align.join("|"));
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", row.columns().join(" | "));
        }
        let _ = writeln!(out, "\n{}\n", self.summary());
        if !self.streams.is_empty() {
            let _ = writeln!(out, "## Multi-stream CBC encryption\n");
            let _ = writeln!(
                out,
                "The vault's `Mode::CbcStreams` routine (`BlockCipher::run_streams`, the image's own assembly) \
                 encrypting N independent 4 KiB streams together, against the vault's single-stream CBC \
                 encryption of one 4 KiB buffer, timed in the same run as the table above (best of {} runs). \
                 Target: ≥ {:.0}× the single stream's throughput with {} streams.\n",
                self.method.runs,
                streams::TARGET_SPEEDUP,
                streams::TARGET_STREAMS
            );
            let _ = writeln!(out, "| {} |", streams::HEADINGS.join(" | "));
            let _ = writeln!(out, "|:--|--:|--:|--:|--:|--:|--:|");
            for row in &self.streams {
                let _ = writeln!(out, "| {} |", row.columns().join(" | "));
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "## Machine\n");
        let _ = writeln!(out, "| | |\n|:--|:--|");
        let _ = writeln!(out, "| CPU | {} ({}) |", m.cpu_model, m.cpu_family_model_stepping);
        let _ = writeln!(out, "| CPU flags | {} |", m.flags_summary());
        let _ = writeln!(out, "| Logical CPUs | {} |", m.logical_cpus);
        let _ = writeln!(out, "| Kernel | {} |", m.kernel);
        let _ = writeln!(out, "| rustc | {} |", m.rustc);
        let _ = writeln!(out, "| OpenSSL | {} |", m.openssl);
        if let Some(cap) = &m.openssl_ia32cap_env {
            let _ = writeln!(out, "| OPENSSL_ia32cap | `{cap}` (set: it changes OpenSSL's code paths) |");
        }
        let _ = writeln!(out, "| Date | {} |\n", m.date_utc);
        let _ = writeln!(out, "## Method\n");
        let _ = writeln!(
            out,
            "- Each implementation transforms one 64-byte-aligned buffer of the given size in place, over and \
             over, with CBC chaining carried from one call to the next.\n\
             - vault: `sevault_guest::aes::BlockCipher::run_in_place`, the vault image's own AES-NI assembly \
             built for the host. RustCrypto: `aes` 0.8 with `ecb`/`cbc` 0.1 (`encrypt_blocks_inout_mut` / \
             `decrypt_blocks_inout_mut`), AES-NI chosen at run time. Both timed with `std::time::Instant` for \
             {s} s per run after a {w} s warm-up, the buffer passed through `std::hint::black_box` on every call.\n\
             - OpenSSL: EVP through `openssl speed -elapsed -evp <cipher> [-decrypt] -bytes <size> -seconds {o}` \
             (in place, wall-clock time, whole seconds only), its table parsed.\n\
             - Runs are interleaved (vault, RustCrypto, OpenSSL, vault, …), {r} of each per cell; the best run \
             is reported (the JSON file has every run).\n\
             - Before timing, in every cell, the vault's output was checked byte for byte against RustCrypto's \
             (same key, IV and data, two calls on one buffer).\n",
            s = self.method.seconds_per_run,
            w = self.method.warmup_seconds,
            o = self.method.openssl_seconds_per_run,
            r = self.method.runs,
        );
        let _ = writeln!(out, "## Command\n\n```sh\n{}\n```", self.command);
        out
    }

    /// The machine-readable results.
    pub fn json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self).map(|json| json + "\n")
    }
}

#[cfg(test)]
mod tests {
    use sevault_abi::validate::Direction;
    use sevault_abi::{KeyLen, Mode};

    use super::*;

    fn cell(mode: Mode, direction: Direction) -> Cell {
        Cell { key: KeyLen::Aes128, mode, direction, bytes: 4096 }
    }

    #[test]
    fn ratio_and_target() {
        let row = Row::new(cell(Mode::Ecb, Direction::Encrypt), vec![5.0, 6.0], vec![1.0], vec![10.0, 12.0]);
        assert_eq!(row.vault.best_gb_per_s, 6.0);
        assert_eq!(row.vault_over_openssl, 0.5);
        assert!(row.target_met);
        let row = Row::new(cell(Mode::Cbc, Direction::Encrypt), vec![1.7], vec![1.0], vec![2.0]);
        assert!((row.vault_over_openssl - 0.85).abs() < 1e-12);
        assert!(!row.target_met);
    }

    #[test]
    fn tables() {
        let report = Report {
            schema: SCHEMA,
            command: "cargo xtask bench-aes".into(),
            argv: vec![],
            debug_build: false,
            method: Method {
                seconds_per_run: 1.0,
                openssl_seconds_per_run: 1,
                runs: 3,
                warmup_seconds: 0.2,
                unit: "GB/s",
            },
            machine: Machine::describe("OpenSSL test".into()),
            rows: vec![
                Row::new(cell(Mode::Ecb, Direction::Decrypt), vec![8.0], vec![7.0], vec![10.0]),
                Row::new(cell(Mode::Cbc, Direction::Encrypt), vec![1.0], vec![1.0], vec![2.0]),
            ],
            streams: vec![StreamsRow::new(KeyLen::Aes128, 4, vec![1.0], vec![3.5])],
        };
        let text = report.text_table();
        assert!(text.contains("AES-128  ECB   decrypt    4 KiB"), "{text}");
        assert!(text.contains("Targets met in 1 of 2 cells; not met: AES-128 CBC encrypt 4 KiB."), "{text}");
        let md = report.markdown();
        assert!(md.contains("| AES-128 | ECB | decrypt | 4 KiB | 8.00 | 7.00 | 10.00 | 0.80 | ≥ 0.5 | yes |"), "{md}");
        assert!(md.contains("| AES-128 | 4 | 1.00 | 3.50 | 3.50× | ≥ 3× | yes |"), "{md}");
        let json: serde_json::Value = serde_json::from_str(&report.json().unwrap()).unwrap();
        assert_eq!(json["streams"][0]["speedup"], 3.5);
        assert_eq!(json["rows"][1]["target_met"], false);
        assert_eq!(json["rows"][0]["openssl"]["best_gb_per_s"], 10.0);
    }
}
