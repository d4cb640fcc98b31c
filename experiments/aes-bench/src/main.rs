//! `sevault-aes-bench`: how fast the vault's AES code is, next to RustCrypto and OpenSSL.
//!
//! This sits outside the life of a request: it runs the vault's own AES-NI routines
//! ([`sevault_guest::aes`], the same source as the vault image) as ordinary host code, so
//! its figures are the ceiling for the crypto part of a request, without VMRUN, validation
//! or scatter-list walking. For every cell of AES-128/256 × ECB/CBC/CTR/XTS × encrypt/decrypt ×
//! 4 KiB/64 KiB it checks the vault's output against RustCrypto's, then times the vault's
//! code, RustCrypto (`aes` + `ecb`/`cbc`/`ctr`/`xts-mode`) and OpenSSL EVP (through `openssl speed`) in the
//! same run, and prints vault/OpenSSL against the issue's targets.
//!
//! Run it with `cargo xtask bench-aes [--seconds S] [--runs N]`; see `experiments/README.md`.
#![deny(unsafe_op_in_unsafe_fn)]

mod cells;
mod error;
mod impls;
mod machine;
mod measure;
mod openssl;
mod report;
mod streams;

use std::hint::black_box;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use cells::Cell;
use error::Error;
use impls::{AlignedBuf, Inputs, Vault};
use machine::Machine;
use report::{Method, Report, Row};

/// Set by `cargo xtask bench-aes` to the command line it was given, for the results.
const COMMAND_ENV: &str = "SEVAULT_BENCH_COMMAND";

/// Longest untimed warm-up per in-process implementation and cell.
const WARMUP_SECONDS: f64 = 0.2;

const USAGE: &str = "\
usage: sevault-aes-bench [--seconds S] [--runs N] [--out-md FILE] [--out-json FILE]

Times the vault's AES code, RustCrypto and OpenSSL EVP (via `openssl speed`) for
AES-128/256 x ECB/CBC/CTR/XTS x encrypt/decrypt x 4 KiB/64 KiB, in GB/s (10^9 bytes/s).

  --seconds S      wall-clock seconds per run (default 1; OpenSSL rounds up to whole seconds)
  --runs N         runs per implementation and cell, best reported (default 3)
  --out-md FILE    write the table, machine and command as Markdown
  --out-json FILE  write every figure as JSON
";

/// The command line.
#[derive(Debug, PartialEq)]
struct Options {
    seconds: f64,
    runs: u32,
    out_md: Option<PathBuf>,
    out_json: Option<PathBuf>,
    help: bool,
}

impl Options {
    /// Parses the arguments after the program name.
    fn parse(args: &[String]) -> Result<Self, Error> {
        let mut options = Self { seconds: 1.0, runs: 3, out_md: None, out_json: None, help: false };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| Error::Usage(format!("{arg} needs a value")));
            match arg.as_str() {
                "--seconds" => {
                    let text = value()?;
                    options.seconds = text
                        .parse()
                        .ok()
                        .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= 600.0)
                        .ok_or_else(|| Error::Usage(format!("--seconds {text}: want a number in (0, 600]")))?;
                }
                "--runs" => {
                    let text = value()?;
                    options.runs = text
                        .parse()
                        .ok()
                        .filter(|n| (1..=100).contains(n))
                        .ok_or_else(|| Error::Usage(format!("--runs {text}: want a whole number in 1..=100")))?;
                }
                "--out-md" => options.out_md = Some(PathBuf::from(value()?)),
                "--out-json" => options.out_json = Some(PathBuf::from(value()?)),
                "-h" | "--help" => options.help = true,
                other => return Err(Error::Usage(format!("unknown argument {other:?}"))),
            }
        }
        Ok(options)
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sevault-aes-bench: error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Error> {
    let argv: Vec<String> = std::env::args().collect();
    let options = Options::parse(argv.get(1..).unwrap_or_default())?;
    if options.help {
        print!("{USAGE}");
        return Ok(());
    }
    if !std::arch::is_x86_feature_detected!("aes") {
        return Err(Error::NoAesNi);
    }
    // Before any timing, so that a machine without `openssl` fails at once.
    let machine = Machine::describe(openssl::version()?);
    let method = Method {
        seconds_per_run: options.seconds,
        openssl_seconds_per_run: openssl::whole_seconds(options.seconds),
        runs: options.runs,
        warmup_seconds: WARMUP_SECONDS.min(options.seconds),
        unit: "GB/s (10^9 bytes per second)",
    };
    let command = command_line(std::env::var(COMMAND_ENV).ok(), std::env::var("CARGO_PKG_NAME").ok().as_deref(), &argv);

    println!("sevault-aes-bench: {}", machine.note);
    println!(
        "CPU: {} ({}), {}; {} logical CPUs; kernel {}; {}; {}",
        machine.cpu_model,
        machine.cpu_family_model_stepping,
        machine.flags_summary(),
        machine.logical_cpus,
        machine.kernel,
        machine.rustc,
        machine.openssl
    );
    if cfg!(debug_assertions) {
        println!("WARNING: debug build: the figures below are meaningless; use --release");
    }
    println!(
        "{} s per run ({} s for openssl speed), best of {} runs, {} s warm-up; GB/s = 10^9 bytes/s\n",
        method.seconds_per_run, method.openssl_seconds_per_run, method.runs, method.warmup_seconds
    );

    let cells = Cell::all();
    let mut rows = Vec::new();
    for (i, &cell) in cells.iter().enumerate() {
        let row = measure_cell(cell, &method)?;
        println!(
            "[{:2}/{}] {:<27} vault {:6.2}  RustCrypto {:6.2}  OpenSSL {:6.2} GB/s  vault/OpenSSL {:.2} (target ≥ {:.1}: {})",
            i + 1,
            cells.len(),
            cell.label(),
            row.vault.best_gb_per_s,
            row.rustcrypto.best_gb_per_s,
            row.openssl.best_gb_per_s,
            row.vault_over_openssl,
            row.target_ratio,
            if row.target_met { "met" } else { "NOT met" },
        );
        let _ = std::io::stdout().flush();
        rows.push(row);
    }

    println!("\nMulti-stream CBC encryption (the vault's streams routine, 4 KiB per stream):");
    let streams = streams::measure(&method)?;
    for row in &streams {
        let [key, count, single, all, speedup, target, met] = row.columns();
        println!("{key} {count} streams: {all} GB/s vs 1 stream {single} GB/s = {speedup} (target {target}: {met})");
    }

    let report = Report {
        schema: report::SCHEMA,
        command,
        argv: binary_argv(&argv),
        debug_build: cfg!(debug_assertions),
        method,
        machine,
        rows,
        streams,
    };
    println!("\n{}", report.text_table());
    if let Some(path) = &options.out_md {
        write_file(path, &report.markdown())?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &options.out_json {
        write_file(path, &report.json().map_err(Error::Json)?)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Checks one cell, then times the three implementations in interleaved runs.
fn measure_cell(cell: Cell, method: &Method) -> Result<Row, Error> {
    let inputs = Inputs::for_cell(cell);
    impls::check(cell, &inputs)?;

    let vault = Vault::new(cell, &inputs.key, inputs.iv);
    let mut vault_step = vault.op();
    let mut vault_buf = AlignedBuf::new(&inputs.data);
    let mut vault_op = || vault_step(black_box(vault_buf.as_mut_slice()));

    let mut rustcrypto = impls::rustcrypto(cell, &inputs.key, &inputs.iv)?;
    let mut rustcrypto_buf = AlignedBuf::new(&inputs.data);
    let mut rustcrypto_op = || rustcrypto(black_box(rustcrypto_buf.as_mut_slice()));

    let run = Duration::from_secs_f64(method.seconds_per_run);
    let warmup = Duration::from_secs_f64(method.warmup_seconds);
    measure::run_for(warmup, cell.bytes, &mut vault_op);
    measure::run_for(warmup, cell.bytes, &mut rustcrypto_op);
    let (mut vault_runs, mut rustcrypto_runs, mut openssl_runs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..method.runs {
        vault_runs.push(measure::run_for(run, cell.bytes, &mut vault_op));
        rustcrypto_runs.push(measure::run_for(run, cell.bytes, &mut rustcrypto_op));
        openssl_runs.push(openssl::speed(cell, method.openssl_seconds_per_run)?);
    }
    black_box(vault_buf.as_slice());
    black_box(rustcrypto_buf.as_slice());
    Ok(Row::new(cell, vault_runs, rustcrypto_runs, openssl_runs))
}

/// The command that produced this run, for the results: the one `cargo xtask bench-aes` passes
/// in `via_xtask`; else, under `cargo run` (which sets `CARGO_PKG_NAME`), the `cargo run` line
/// rebuilt from the arguments and the build's profile; else the binary's own command line.
fn command_line(via_xtask: Option<String>, cargo_pkg_name: Option<&str>, argv: &[String]) -> String {
    if let Some(command) = via_xtask {
        return command;
    }
    let argv = binary_argv(argv);
    if cargo_pkg_name == Some(env!("CARGO_PKG_NAME")) {
        let profile = if cfg!(debug_assertions) { "" } else { " --release" };
        let args = shell_words(argv.get(1..).unwrap_or_default());
        let sep = if args.is_empty() { "" } else { " -- " };
        return format!("cargo run{profile} -p {}{sep}{args}", env!("CARGO_PKG_NAME"));
    }
    shell_words(&argv)
}

/// `argv` with the program shown by its file name (its directory says nothing useful).
fn binary_argv(argv: &[String]) -> Vec<String> {
    let mut out = argv.to_vec();
    if let Some(first) = out.first_mut() {
        if let Some(name) = Path::new(first.as_str()).file_name() {
            *first = name.to_string_lossy().into_owned();
        }
    }
    out
}

/// `words` as a shell would need them typed (single-quoting any word with odd characters).
fn shell_words(words: &[String]) -> String {
    let quote = |word: &String| {
        let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
        if plain {
            word.clone()
        } else {
            format!("'{}'", word.replace('\'', r"'\''"))
        }
    };
    words.iter().map(quote).collect::<Vec<_>>().join(" ")
}

/// Writes `text` to `path`, creating its directory if needed.
fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    let io = |source| Error::Write { path: path.to_owned(), source };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options() {
        let o = Options::parse(&args("--seconds 0.5 --runs 5 --out-md a.md --out-json b.json")).unwrap();
        assert_eq!(o.seconds, 0.5);
        assert_eq!(o.runs, 5);
        assert_eq!(o.out_md, Some(PathBuf::from("a.md")));
        assert_eq!(o.out_json, Some(PathBuf::from("b.json")));
        let o = Options::parse(&[]).unwrap();
        assert_eq!((o.seconds, o.runs, o.out_md, o.help), (1.0, 3, None, false));
        for bad in ["--seconds", "--seconds 0", "--seconds -1", "--seconds nan", "--runs 0", "--frobnicate"] {
            assert!(matches!(Options::parse(&args(bad)), Err(Error::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn command_text() {
        let argv = args("/work/main/target/release/sevault-aes-bench --out-md results/a.md --seconds 0.5");
        assert_eq!(shell_words(&binary_argv(&argv)), "sevault-aes-bench --out-md results/a.md --seconds 0.5");
        assert_eq!(shell_words(&["a b".into(), "it's".into()]), r"'a b' 'it'\''s'");
        assert_eq!(
            command_line(Some("cargo xtask bench-aes".into()), Some("sevault-aes-bench"), &argv),
            "cargo xtask bench-aes"
        );
        assert_eq!(command_line(None, None, &argv), "sevault-aes-bench --out-md results/a.md --seconds 0.5");
        let profile = if cfg!(debug_assertions) { "" } else { " --release" };
        assert_eq!(
            command_line(None, Some("sevault-aes-bench"), &argv),
            format!("cargo run{profile} -p sevault-aes-bench -- --out-md results/a.md --seconds 0.5")
        );
    }
}
