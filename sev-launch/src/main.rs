//! `sev-launch`: the vault's SEV launch policy, its expected launch digest, and a check of an
//! SNP attestation report against them. See `sev-launch --help`.
use std::path::PathBuf;
use std::process::ExitCode;

use sevault_sev_launch::measure::{C_BIT_RANGE, DEFAULT_C_BIT};
use sevault_sev_launch::report::{parse_report, verify};
use sevault_sev_launch::{measure, mode_name, parse_mode, policy, LaunchMode, Measurement};

const USAGE: &str = "\
sev-launch: the SE-Vault Mini vault's SEV launch policy, expected launch digest, and SNP report check

usage:
  sev-launch policy  --mode MODE
  sev-launch measure --mode MODE --image FILE --vcpus N [--c-bit B] [--json [--with-contents]]
  sev-launch verify  --report FILE --image FILE --vcpus N [--c-bit B]
  sev-launch help [COMMAND]        (or COMMAND --help)

MODE is sev, sev-es or snp. The image is the flat vault image (cargo xtask build-guest writes
target/sevault/guest.bin). Exit status: 0 success, 1 failure or mismatch, 2 bad usage.";

const POLICY_HELP: &str = "\
sev-launch policy --mode MODE

Prints the launch policy the vault uses in MODE as hex, then every bit with its meaning:
SEV/SEV-ES: the 32-bit guest policy of LAUNCH_START (SEV API spec): NODBG, NOKS, ES,
NOSEND, DOMAIN, SEV, API_MAJOR/MINOR. SNP: the 64-bit guest policy of SNP_LAUNCH_START
(SNP ABI spec): ABI_MINOR/MAJOR, SMT, reserved bit 17 (= 1), MIGRATE_MA, DEBUG,
SINGLE_SOCKET, ...";

const MEASURE_HELP: &str = "\
sev-launch measure --mode MODE --image FILE --vcpus N [--c-bit B] [--json [--with-contents]]

Prints the expected launch digest of the vault image FILE launched with N vCPUs.
  snp      the SNP launch digest (SHA-384 GCTX chain over every launched page): the
           MEASUREMENT field of the vault's attestation reports.
  sev,     GCTX.LD: the SHA-256 of the LAUNCH_UPDATE_DATA pages in order (SEV-ES: then the
  sev-es   LAUNCH_UPDATE_VMSA pages). LAUNCH_MEASURE returns HMAC-SHA256(0x04 || API_MAJOR ||
           API_MINOR || BUILD || POLICY || LD || MNONCE) keyed with the session's TIK: only
           the guest owner, who holds the TIK, can compute it from LD; it cannot be precomputed.
--c-bit B  the C-bit position of the host (CPUID 0x8000001F EBX[5:0]); it is in the measured
           guest page tables. Default 51: what EPYC Milan and Genoa report.
--json     mode, vcpus, c_bit, image, policy, digest and the page list (gpa, type, SHA-384
           of the contents) so that an outsider can recompute the digest;
--with-contents  adds each page's bytes (hex; not for SNP ZERO pages), as
           crosscheck/snp_gctx.py needs.";

const VERIFY_HELP: &str = "\
sev-launch verify --report FILE --image FILE --vcpus N [--c-bit B]

Parses the SNP attestation report in FILE (the raw binary the firmware returns: the
1184-byte report, or the MSG_REPORT_RSP around it from the SNP_GET_REPORT ioctl) with the
virtee sev crate, and compares its MEASUREMENT and POLICY with the expected SNP launch digest
of the image and the vault's SNP policy; prints each field compared (match/mismatch) and
exits 1 on any mismatch. The report's signature is NOT checked (that needs the chip's VCEK
chain: snpguest verify attestation).
No machine this project runs on has SEV-SNP: here this command can only be tested on a
report the test builds itself (sev-launch/tests/verify.rs); a report from an EPYC host has
never been through it.";

/// What went wrong.
enum Failure {
    /// Bad command line: message, exit 2.
    Usage(String),
    /// The command failed: message, exit 1.
    Error(String),
    /// The command ran and found a mismatch (already printed): exit 1.
    Mismatch,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("sev-launch: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Error(message)) => {
            eprintln!("sev-launch: error: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Mismatch) => ExitCode::from(1),
    }
}

/// The options of one command.
#[derive(Default)]
struct Options {
    mode: Option<LaunchMode>,
    image: Option<PathBuf>,
    report: Option<PathBuf>,
    vcpus: Option<u32>,
    c_bit: Option<u32>,
    json: bool,
    with_contents: bool,
    help: bool,
}

fn parse_options(args: &[String], allowed: &[&str]) -> Result<Options, Failure> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        if name == "--help" || name == "-h" {
            o.help = true;
            continue;
        }
        if !allowed.contains(&name) {
            return Err(Failure::Usage(format!("unknown option `{arg}`")));
        }
        if matches!(name, "--json" | "--with-contents") {
            if inline.is_some() {
                return Err(Failure::Usage(format!("{name} takes no value")));
            }
            if name == "--json" {
                o.json = true;
            } else {
                o.with_contents = true;
            }
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().cloned().ok_or_else(|| Failure::Usage(format!("{name} needs a value")))?,
        };
        match name {
            "--mode" => {
                o.mode = Some(
                    parse_mode(&value)
                        .ok_or_else(|| Failure::Usage(format!("--mode {value}: expected sev, sev-es or snp")))?,
                );
            }
            "--image" => o.image = Some(value.into()),
            "--report" => o.report = Some(value.into()),
            "--vcpus" => {
                o.vcpus = Some(value.parse().map_err(|_| Failure::Usage(format!("--vcpus {value}: not a number")))?);
            }
            "--c-bit" => {
                o.c_bit = Some(value.parse().map_err(|_| Failure::Usage(format!("--c-bit {value}: not a number")))?);
            }
            _ => return Err(Failure::Usage(format!("unknown option `{arg}`"))),
        }
    }
    Ok(o)
}

fn required<T>(value: Option<T>, name: &str) -> Result<T, Failure> {
    value.ok_or_else(|| Failure::Usage(format!("{name} is required")))
}

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::Error(format!("cannot read the {what} {}: {e}", path.display())))
}

fn run(args: &[String]) -> Result<(), Failure> {
    let Some((command, rest)) = args.split_first() else {
        return Err(Failure::Usage("no command given".into()));
    };
    match command.as_str() {
        "help" | "--help" | "-h" => {
            let text = match rest.first().map(String::as_str) {
                Some("policy") => POLICY_HELP,
                Some("measure") => MEASURE_HELP,
                Some("verify") => VERIFY_HELP,
                None => USAGE,
                Some(other) => return Err(Failure::Usage(format!("no command `{other}`"))),
            };
            println!("{text}");
            Ok(())
        }
        "policy" => {
            let o = parse_options(rest, &["--mode"])?;
            if o.help {
                println!("{POLICY_HELP}");
                return Ok(());
            }
            print_policy(required(o.mode, "--mode")?);
            Ok(())
        }
        "measure" => {
            let o = parse_options(rest, &["--mode", "--image", "--vcpus", "--c-bit", "--json", "--with-contents"])?;
            if o.help {
                println!("{MEASURE_HELP}");
                return Ok(());
            }
            if o.with_contents && !o.json {
                return Err(Failure::Usage("--with-contents only goes with --json".into()));
            }
            let mode = required(o.mode, "--mode")?;
            let (image, m) = measured(mode, &o)?;
            if o.json {
                let json = m.to_json(&image, o.with_contents);
                let text = serde_json::to_string_pretty(&json).map_err(|e| Failure::Error(e.to_string()))?;
                println!("{text}");
            } else {
                print_measurement(&m, &image, o.c_bit.is_none());
            }
            Ok(())
        }
        "verify" => {
            let o = parse_options(rest, &["--report", "--image", "--vcpus", "--c-bit"])?;
            if o.help {
                println!("{VERIFY_HELP}");
                return Ok(());
            }
            let report_path = required(o.report.clone(), "--report")?;
            let (_, expected) = measured(LaunchMode::Snp, &o)?;
            let bytes = read(&report_path, "report")?;
            let report = parse_report(&bytes).map_err(|e| Failure::Error(format!("{}: {e}", report_path.display())))?;
            let result = verify(&report, &expected).map_err(|e| Failure::Error(e.to_string()))?;
            println!(
                "report {} against the vault's SNP launch ({} vCPUs, C-bit {})",
                report_path.display(),
                expected.vcpus,
                expected.c_bit
            );
            for check in &result.checks {
                let verdict = if check.matches() { "match" } else { "MISMATCH" };
                println!(
                    "  {:<12} {verdict}\n    expected {}\n    report   {}",
                    check.field, check.expected, check.actual
                );
            }
            for (field, value) in &result.info {
                println!("  {field}: {value}");
            }
            if result.matches() {
                println!("verdict: the report's measurement and policy are the vault's");
                Ok(())
            } else {
                println!("verdict: MISMATCH: this report is not of the vault launched as expected");
                Err(Failure::Mismatch)
            }
        }
        other => Err(Failure::Usage(format!("unknown command `{other}`"))),
    }
}

/// Reads the image and measures it with the options' vCPUs and C-bit.
fn measured(mode: LaunchMode, o: &Options) -> Result<(Vec<u8>, Measurement), Failure> {
    let image_path = required(o.image.clone(), "--image")?;
    let vcpus = required(o.vcpus, "--vcpus")?;
    let c_bit = o.c_bit.unwrap_or(DEFAULT_C_BIT);
    if !C_BIT_RANGE.contains(&c_bit) {
        return Err(Failure::Usage(format!(
            "--c-bit {c_bit}: must be in {}..={}",
            C_BIT_RANGE.start(),
            C_BIT_RANGE.end()
        )));
    }
    let image = read(&image_path, "image")?;
    let m =
        measure(mode, &image, vcpus, c_bit).map_err(|e| Failure::Error(format!("{}: {e}", image_path.display())))?;
    Ok((image, m))
}

fn print_policy(mode: LaunchMode) {
    let p = policy(mode);
    println!("policy: {} ({} launch of the vault)", p.hex(), mode_name(mode));
    println!("source: {}", p.source());
    for f in p.explain() {
        println!("  bit {:<6} {:<22} = {:<4} {}", f.bits, f.name, f.value, f.meaning);
    }
}

fn print_measurement(m: &Measurement, image: &[u8], default_c_bit: bool) {
    use sha2::Digest;
    println!("mode:    {}", mode_name(m.mode));
    println!("vcpus:   {}", m.vcpus);
    let note = if default_c_bit { " (default: EPYC Milan/Genoa report 51; give --c-bit for other hosts)" } else { "" };
    println!("c-bit:   {}{note}", m.c_bit);
    println!("image:   {} bytes, sha256 {}", image.len(), hex::encode(sha2::Sha256::digest(image)));
    println!("policy:  {}", m.policy.hex());
    println!("pages:   {}", m.pages.len());
    println!("digest:  {}", hex::encode(&m.digest));
    println!("meaning: {}", m.digest_meaning());
}
