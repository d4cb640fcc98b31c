//! The command line: subcommands, their flags, defaults and usage texts. Pure parsing, so
//! it is tested on the host.

use std::fmt;
use std::path::PathBuf;

use crate::cases::Shape;

/// The largest buffer any subcommand accepts (16 MiB).
pub const MAX_BUFFER: usize = 16 << 20;

/// Usage of the whole tool.
pub const USAGE: &str = "\
sevault-kcheck: checks skcipher drivers (sevault.ko's ecb-, cbc-, ctr-, xts-aes-sevault) through
AF_ALG, against the kernel's own implementations. Runs inside the nested test VM.

usage: sevault-kcheck <subcommand> [options]
       sevault-kcheck <subcommand> --help

subcommands:
  diff           random keys, IVs and lengths through a driver and a reference, compared
  errors         bad inputs (lengths, key sizes, no key, empty input): same errno as the reference?
  bench          encryption throughput of several drivers, interleaved in one process
  setkey-stress  many transforms holding keys at once, checked, dropped, again
  rebuild        the vault's fault path: EIO, then ENOKEY for old keys, new keys work
  spin           a spinning vault is ended by the time budget; the host stays responsive
  kvm-guest      real KVM guests on every CPU fill and checksum memory; the host checks them
  instantiate    allocates an algorithm by name (a template instance is built and self-tested)
  high-memory    a request whose output pages lie above a host-physical address (pagemap)

Driver and algorithm names both work (ecb-aes-sevault, cbc(aes-generic), ecb(aes)).
Exit status: 0 all checks passed, 1 a check failed, 2 usage error.
Each subcommand ends with one line starting `kcheck <subcommand>:`.";

/// Usage of `instantiate`.
pub const INSTANTIATE_USAGE: &str = "\
usage: sevault-kcheck instantiate --type skcipher|aead|hash --name NAME

Binds an AF_ALG socket to NAME (e.g. gcm_base(ctr-aes-sevault,ghash-generic)): the kernel
allocates the algorithm, building a template instance first if it has none, which runs the
instance's self-tests (testmgr). Fails with the kernel's errno (ELIBBAD: a self-test failed).";

/// Usage of `high-memory`.
pub const HIGH_MEMORY_USAGE: &str = "\
usage: sevault-kcheck high-memory --driver D --reference R [--above PHYS]

Fills anonymous memory until it holds 16 pages that lie at or above host-physical PHYS
(default 0x8000000000 = 512 GiB; found through /proc/self/pagemap, which needs root), then
has D encrypt and decrypt random data with a random key (and IV) straight into those pages
(AF_ALG's read hands the kernel the caller's pages as the destination scatterlist) and
compares with R's result in ordinary memory. Fails if no such page turns up.";

/// Usage of `diff`.
pub const DIFF_USAGE: &str = "\
usage: sevault-kcheck diff --driver D --reference R [--cases N] [--max-len BYTES] [--seed S]
                           [--threads T]

Differential test: T threads (default: one per CPU this process may run on, each pinned to
its CPU, so every CPU uses the driver at once) share N cases (default 2000). A case is a
random key (16, 24 or 32 bytes, set afresh on both transforms; XTS: two different ones), a
random IV when the mode has one (the names contain `cbc`, `ctr` or `xts`), and random data of
16*k bytes up to --max-len (default 65536; mostly small: 16 bytes, <= 4 KiB, around page
boundaries, exactly --max-len, or anything), for CTR and XTS half the time ending in a
partial block.
The data is encrypted by D and by R, and D's ciphertext decrypted by D and by R; all must
agree. --seed (decimal or 0x-hex; default from the clock, printed) makes the cases
reproducible whatever the thread count.";

/// Usage of `errors`.
pub const ERRORS_USAGE: &str = "\
usage: sevault-kcheck errors --driver D --reference R

Bad inputs through AF_ALG, on D and on R: data of 15, 17, 33 (and 1, 31) bytes in both
directions; keys of 0, 1, 15, 17, 31, 33 and 64 bytes; no key set (ENOKEY expected); a bad
key after a good one (ENOKEY expected); empty input; an IV given to ECB or none to CBC.
Prints both outcomes; fails when they differ.";

/// Usage of `bench`.
pub const BENCH_USAGE: &str = "\
usage: sevault-kcheck bench --drivers D1,D2,... [--sizes 4096,65536] [--seconds S]
                            [--key-len 16|24|32] [--json FILE]

Encryption throughput of each driver for each buffer size (multiples of 16), measured for
S seconds (default 2) per driver and size, in slices interleaved between the drivers.
Prints MB/s (10^6 bytes/s), operations, and the ratio to the first driver; --json writes
the same figures to FILE. Under QEMU TCG the figures are emulated: compare them only as
ratios within one run.";

/// Usage of `setkey-stress`.
pub const STRESS_USAGE: &str = "\
usage: sevault-kcheck setkey-stress --driver D [--count N] [--rounds R] [--reference REF]
                                    [--as-user UID] [--pause-file PATH]

Allocates N transforms of D (default 200), gives each a random key, then encrypts one block
with each (in random order, all keys held at once) and checks it against REF (default
ecb(aes-generic), or cbc(aes-generic) when D's name contains `cbc`); re-keys half of them
and checks again; drops them all. R rounds (default 3).
--as-user: raise the open-file limit for N transforms, then drop to that uid (and gid)
before allocating anything, as an unprivileged user would. --pause-file: once the first
round's transforms are all keyed and checked, create PATH and wait (at most 600 s) until
someone deletes it, so that another program can use the driver while they are held.";

/// Usage of `spin`.
pub const SPIN_USAGE: &str = "\
usage: sevault-kcheck spin --driver D --reference REF

sevault.ko's time budget, through its debugfs hook: thread A on the first CPU makes the
vault spin there (inject_fault) and sends a request, which must fail with EIO after about
budget_ms. Meanwhile thread B on the second CPU unmaps pages (TLB shootdowns that A's CPU
must answer), samples A's CPU's timer interrupts, and sends requests through its own
transform: they must match REF, then give only ENOKEY after the rebuild, then match again
once re-keyed.";

/// Usage of `rebuild`.
pub const REBUILD_USAGE: &str = "\
usage: sevault-kcheck rebuild --driver D --reference REF

The vault's fault path, through sevault.ko's debugfs test hook: two transforms of D keyed
and checked against REF; `1` written to /sys/kernel/debug/sevault/inject_fault; the next
request fails with EIO (the vault faulted and was rebuilt), then both transforms get ENOKEY
(the keys are gone) until they are keyed again, after which they match REF again.";

/// Usage of `kvm-guest`.
pub const KVM_GUEST_USAGE: &str = "\
usage: sevault-kcheck kvm-guest [--seconds S] [--threads T]

Real KVM guests through /dev/kvm beside the vault (both tag TLB entries with SVM ASIDs): T
threads (default: one per CPU this process may run on, each pinned to its CPU) each create a
VM with one vCPU and run a 32-bit guest again and again for S seconds (default 5), with a
fresh seed each time. The guest fills a buffer with an xorshift32 stream from the seed, sums
it back, writes the sum to an I/O port and halts; its code sits on the vault image's page
and its buffers on the pages the vault maps for itself (comm blocks, GHCBs, stacks, key
slots). The host checks the sum, the buffer through its own mapping, the dword after it and
the registers. Fails on any mismatch, unexpected exit or error, and when /dev/kvm is missing
or cannot create a VM. Run it while `diff` keeps the vault busy on the same CPUs.";

/// What to run.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Print a usage text (`--help`): the tool's, or a subcommand's.
    Help(&'static str),
    /// `diff`.
    Diff(DiffArgs),
    /// `errors`.
    Errors(ErrorsArgs),
    /// `bench`.
    Bench(BenchArgs),
    /// `setkey-stress`.
    SetkeyStress(StressArgs),
    /// `rebuild`.
    Rebuild(ErrorsArgs),
    /// `spin`.
    Spin(ErrorsArgs),
    /// `high-memory`: driver and reference, and the lowest host-physical address to use.
    HighMemory(ErrorsArgs, u64),
    /// `kvm-guest`.
    KvmGuest(KvmGuestArgs),
    /// `instantiate`: (type, name).
    Instantiate(String, String),
}

/// `diff` options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffArgs {
    /// Driver under test.
    pub driver: String,
    /// Reference implementation.
    pub reference: String,
    /// Cases in total.
    pub cases: u64,
    /// Longest data, a multiple of 16.
    pub max_len: usize,
    /// Seed; `None` takes one from the clock.
    pub seed: Option<u64>,
    /// Threads; `None` is one per allowed CPU.
    pub threads: Option<usize>,
    /// The mode has an IV (CBC, CTR, XTS).
    pub with_iv: bool,
    /// The lengths and keys the mode takes.
    pub shape: Shape,
}

/// `errors` options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorsArgs {
    /// Driver under test.
    pub driver: String,
    /// Reference implementation.
    pub reference: String,
    /// The mode has an IV (CBC).
    pub with_iv: bool,
}

/// `bench` options.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchArgs {
    /// Drivers, the first being the base of the ratios.
    pub drivers: Vec<String>,
    /// Buffer sizes, multiples of 16.
    pub sizes: Vec<usize>,
    /// Seconds per driver and size.
    pub seconds: f64,
    /// Key length in bytes.
    pub key_len: usize,
    /// Where to write the JSON results.
    pub json: Option<PathBuf>,
}

/// `setkey-stress` options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StressArgs {
    /// Driver under test.
    pub driver: String,
    /// Reference implementation.
    pub reference: String,
    /// Transforms alive at once.
    pub count: usize,
    /// Rounds of allocate, check, drop.
    pub rounds: usize,
    /// The mode has an IV (CBC).
    pub with_iv: bool,
    /// Drop to this uid first.
    pub as_user: Option<u32>,
    /// Pause with all keys held until this file is deleted.
    pub pause_file: Option<PathBuf>,
}

/// `kvm-guest` options.
#[derive(Clone, Debug, PartialEq)]
pub struct KvmGuestArgs {
    /// How long every thread keeps running its guest.
    pub seconds: f64,
    /// Threads (one VM each); `None` is one per allowed CPU.
    pub threads: Option<usize>,
}

/// A bad command line: what is wrong, and the usage text to show with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError {
    /// What is wrong.
    pub message: String,
    /// The usage text of the subcommand concerned (or the tool's).
    pub usage: &'static str,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n\n{}", self.message, self.usage)
    }
}

/// Whether an algorithm or driver name is a mode with an IV (CBC).
pub fn has_iv(name: &str) -> bool {
    ["cbc", "ctr", "xts"].iter().any(|mode| name.contains(mode))
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, UsageError> {
    let Some((subcommand, rest)) = args.split_first() else {
        return Err(UsageError { message: "no subcommand given".into(), usage: USAGE });
    };
    let (usage, known): (&'static str, &[&'static str]) = match subcommand.as_str() {
        "-h" | "--help" | "help" => return Ok(Command::Help(USAGE)),
        "diff" => (DIFF_USAGE, &["--driver", "--reference", "--cases", "--max-len", "--seed", "--threads"]),
        "errors" => (ERRORS_USAGE, &["--driver", "--reference"]),
        "bench" => (BENCH_USAGE, &["--drivers", "--sizes", "--seconds", "--key-len", "--json"]),
        "setkey-stress" => {
            (STRESS_USAGE, &["--driver", "--count", "--rounds", "--reference", "--as-user", "--pause-file"])
        }
        "rebuild" => (REBUILD_USAGE, &["--driver", "--reference"]),
        "spin" => (SPIN_USAGE, &["--driver", "--reference"]),
        "kvm-guest" => (KVM_GUEST_USAGE, &["--seconds", "--threads"]),
        "instantiate" => (INSTANTIATE_USAGE, &["--type", "--name"]),
        "high-memory" => (HIGH_MEMORY_USAGE, &["--driver", "--reference", "--above"]),
        other => return Err(UsageError { message: format!("unknown subcommand {other:?}"), usage: USAGE }),
    };
    let fail = |message: String| UsageError { message, usage };
    let Some(flags) = Flags::parse(rest, known, usage).map_err(fail)? else {
        return Ok(Command::Help(usage));
    };
    let command = match subcommand.as_str() {
        "diff" => {
            let (driver, reference, with_iv) = pair(&flags)?;
            let shape = Shape::of(&reference);
            Command::Diff(DiffArgs {
                driver,
                reference,
                cases: flags.number("--cases", 1, u64::MAX, 2000)?,
                max_len: flags.block_multiple("--max-len", 65_536)?,
                seed: flags
                    .get("--seed")
                    .map(|s| parse_seed(s).ok_or_else(|| fail(format!("--seed {s}: not a number"))))
                    .transpose()?,
                threads: flags.get("--threads").map(|_| flags.number("--threads", 1, 1024, 1)).transpose()?,
                with_iv,
                shape,
            })
        }
        "errors" => {
            let (driver, reference, with_iv) = pair(&flags)?;
            Command::Errors(ErrorsArgs { driver, reference, with_iv })
        }
        "rebuild" => {
            let (driver, reference, with_iv) = pair(&flags)?;
            Command::Rebuild(ErrorsArgs { driver, reference, with_iv })
        }
        "spin" => {
            let (driver, reference, with_iv) = pair(&flags)?;
            Command::Spin(ErrorsArgs { driver, reference, with_iv })
        }
        "high-memory" => {
            let (driver, reference, with_iv) = pair(&flags)?;
            let above = flags.get("--above").map_or(Some(512 << 30), parse_seed);
            let above = above.ok_or_else(|| fail("--above: not a number".into()))?;
            Command::HighMemory(ErrorsArgs { driver, reference, with_iv }, above)
        }
        "bench" => {
            let drivers = flags.required("--drivers")?;
            let drivers: Vec<String> = drivers.split(',').map(str::trim).map(String::from).collect();
            if drivers.iter().any(String::is_empty) {
                return Err(fail("--drivers: empty name in the list".into()));
            }
            let sizes = match flags.get("--sizes") {
                None => vec![4096, 65_536],
                Some(list) => list
                    .split(',')
                    .map(|s| block_multiple(s.trim()).map_err(|e| fail(format!("--sizes {s}: {e}"))))
                    .collect::<Result<_, _>>()?,
            };
            let seconds = flags.seconds("--seconds", 2.0)?;
            let key_len = flags.number("--key-len", 16, 32, 16)?;
            if ![16, 24, 32].contains(&key_len) {
                return Err(fail(format!("--key-len {key_len}: expected 16, 24 or 32")));
            }
            Command::Bench(BenchArgs { drivers, sizes, seconds, key_len, json: flags.get("--json").map(PathBuf::from) })
        }
        "kvm-guest" => Command::KvmGuest(KvmGuestArgs {
            seconds: flags.seconds("--seconds", 5.0)?,
            threads: flags.get("--threads").map(|_| flags.number("--threads", 1, 1024, 1)).transpose()?,
        }),
        "instantiate" => {
            Command::Instantiate(flags.required("--type")?.to_string(), flags.required("--name")?.to_string())
        }
        _ => {
            let driver = flags.required("--driver")?.to_string();
            let with_iv = has_iv(&driver);
            let reference = match flags.get("--reference") {
                Some(r) => r.to_string(),
                None if with_iv => "cbc(aes-generic)".to_string(),
                None => "ecb(aes-generic)".to_string(),
            };
            if has_iv(&reference) != with_iv {
                return Err(fail(format!(
                    "{driver} and {reference} are not the same mode (CBC is told by `cbc` in the name)"
                )));
            }
            Command::SetkeyStress(StressArgs {
                driver,
                reference,
                count: flags.number("--count", 1, 100_000, 200)?,
                rounds: flags.number("--rounds", 1, 10_000, 3)?,
                with_iv,
                as_user: flags
                    .get("--as-user")
                    .map(|_| flags.number("--as-user", 1u32, u32::MAX - 1, 65_534))
                    .transpose()?,
                pause_file: flags.get("--pause-file").map(PathBuf::from),
            })
        }
    };
    Ok(command)
}

/// `--driver` and `--reference`, which must be the same mode.
fn pair(flags: &Flags) -> Result<(String, String, bool), UsageError> {
    let driver = flags.required("--driver")?;
    let reference = flags.required("--reference")?;
    if has_iv(driver) != has_iv(reference) || Shape::of(driver) != Shape::of(reference) {
        return Err(flags.error(format!(
            "--driver {driver} and --reference {reference} are not the same mode (told by `cbc`, `ctr`, `xts` in the name)"
        )));
    }
    Ok((driver.to_string(), reference.to_string(), has_iv(driver)))
}

/// A seed: decimal, or hexadecimal after `0x`.
pub fn parse_seed(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// A buffer length: a multiple of 16 from 16 to [`MAX_BUFFER`].
fn block_multiple(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|_| "not a number".to_string())?;
    if n == 0 || !n.is_multiple_of(16) || n > MAX_BUFFER {
        return Err(format!("expected a multiple of 16 from 16 to {MAX_BUFFER}"));
    }
    Ok(n)
}

/// `--flag value` / `--flag=value` pairs of one subcommand.
struct Flags {
    values: Vec<(&'static str, String)>,
    usage: &'static str,
}

impl Flags {
    /// `None` when `--help` was asked for.
    fn parse(args: &[String], known: &[&'static str], usage: &'static str) -> Result<Option<Self>, String> {
        let mut values: Vec<(&'static str, String)> = Vec::new();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Ok(None);
            }
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
                _ => (arg.as_str(), None),
            };
            let Some(&flag) = known.iter().find(|k| **k == name) else {
                return Err(format!("unknown argument {arg:?}"));
            };
            let value = match inline {
                Some(value) => value,
                None => args.next().cloned().ok_or_else(|| format!("{flag} needs a value"))?,
            };
            if values.iter().any(|(f, _)| *f == flag) {
                return Err(format!("{flag} given twice"));
            }
            values.push((flag, value));
        }
        Ok(Some(Self { values, usage }))
    }

    fn error(&self, message: String) -> UsageError {
        UsageError { message, usage: self.usage }
    }

    fn get(&self, flag: &str) -> Option<&str> {
        self.values.iter().find(|(f, _)| *f == flag).map(|(_, v)| v.as_str())
    }

    fn required(&self, flag: &str) -> Result<&str, UsageError> {
        match self.get(flag) {
            Some(v) if !v.is_empty() => Ok(v),
            Some(_) => Err(self.error(format!("{flag} must not be empty"))),
            None => Err(self.error(format!("{flag} is required"))),
        }
    }

    fn number<T>(&self, flag: &str, min: T, max: T, default: T) -> Result<T, UsageError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let Some(s) = self.get(flag) else { return Ok(default) };
        s.parse::<T>()
            .ok()
            .filter(|v| *v >= min && *v <= max)
            .ok_or_else(|| self.error(format!("{flag} {s}: expected a whole number from {min} to {max}")))
    }

    /// A duration in seconds: above 0, at most an hour.
    fn seconds(&self, flag: &str, default: f64) -> Result<f64, UsageError> {
        let Some(s) = self.get(flag) else { return Ok(default) };
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0 && *v <= 3600.0)
            .ok_or_else(|| self.error(format!("{flag} {s}: expected a number of seconds above 0, at most 3600")))
    }

    fn block_multiple(&self, flag: &str, default: usize) -> Result<usize, UsageError> {
        match self.get(flag) {
            None => Ok(default),
            Some(s) => block_multiple(s).map_err(|e| self.error(format!("{flag} {s}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn parse_str(s: &str) -> Result<Command, UsageError> {
        parse(&args(s))
    }

    #[test]
    fn diff_defaults_and_flags() {
        let Command::Diff(d) = parse_str("diff --driver ecb-aes-sevault --reference ecb(aes-generic)").unwrap() else {
            panic!()
        };
        assert_eq!(
            d,
            DiffArgs {
                driver: "ecb-aes-sevault".into(),
                reference: "ecb(aes-generic)".into(),
                cases: 2000,
                max_len: 65_536,
                seed: None,
                threads: None,
                with_iv: false,
                shape: Shape::Blocks,
            }
        );
        let Command::Diff(d) = parse_str(
            "diff --driver=cbc-aes-sevault --reference cbc(aes-generic) --cases 10 --max-len 4096 --seed 0x10 --threads 3",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!((d.cases, d.max_len, d.seed, d.threads, d.with_iv), (10, 4096, Some(16), Some(3), true));
        let Command::Diff(d) = parse_str("diff --driver xts-aes-sevault --reference xts(ecb(aes-generic))").unwrap()
        else {
            panic!()
        };
        assert_eq!((d.with_iv, d.shape), (true, Shape::Xts));
        assert!(parse_str("diff --driver xts-aes-sevault --reference cbc(aes-generic)").is_err());
        assert!(parse_str("diff --driver ctr-aes-sevault --reference xts(aes-generic)").is_err());
    }

    #[test]
    fn other_subcommands() {
        let Command::Errors(e) = parse_str("errors --driver cbc-aes-sevault --reference cbc(aes)").unwrap() else {
            panic!()
        };
        assert!(e.with_iv);
        let Command::Bench(b) = parse_str("bench --drivers ecb-aes-sevault,ecb-aes-aesni").unwrap() else { panic!() };
        assert_eq!(b.drivers, ["ecb-aes-sevault", "ecb-aes-aesni"]);
        assert_eq!((b.sizes.as_slice(), b.seconds, b.key_len, b.json), (&[4096, 65_536][..], 2.0, 16, None));
        let Command::Bench(b) =
            parse_str("bench --drivers a --sizes 16,1024 --seconds 0.5 --key-len 32 --json /tmp/x.json").unwrap()
        else {
            panic!()
        };
        assert_eq!((b.sizes.as_slice(), b.seconds, b.key_len), (&[16, 1024][..], 0.5, 32));
        assert_eq!(b.json, Some(PathBuf::from("/tmp/x.json")));
        let Command::SetkeyStress(s) = parse_str("setkey-stress --driver cbc-aes-sevault").unwrap() else { panic!() };
        assert_eq!((s.reference.as_str(), s.count, s.rounds, s.with_iv), ("cbc(aes-generic)", 200, 3, true));
        let Command::SetkeyStress(s) = parse_str("setkey-stress --driver ecb-aes-sevault --count 5").unwrap() else {
            panic!()
        };
        assert_eq!((s.reference.as_str(), s.count), ("ecb(aes-generic)", 5));
        assert_eq!((s.as_user, s.pause_file), (None, None));
        let line = "setkey-stress --driver cbc-aes-sevault --count 20000 --as-user 65534 --pause-file /tmp/p";
        let Command::SetkeyStress(s) = parse_str(line).unwrap() else { panic!() };
        assert_eq!((s.count, s.as_user, s.pause_file), (20_000, Some(65_534), Some(PathBuf::from("/tmp/p"))));
        assert!(parse_str("setkey-stress --driver d --as-user 0").is_err(), "uid 0 is no drop");
    }

    #[test]
    fn kvm_guest_defaults_and_flags() {
        assert_eq!(parse_str("kvm-guest").unwrap(), Command::KvmGuest(KvmGuestArgs { seconds: 5.0, threads: None }));
        assert_eq!(
            parse_str("kvm-guest --seconds 0.5 --threads=3").unwrap(),
            Command::KvmGuest(KvmGuestArgs { seconds: 0.5, threads: Some(3) })
        );
        assert_eq!(parse_str("kvm-guest --help").unwrap(), Command::Help(KVM_GUEST_USAGE));
        for bad in [
            "kvm-guest --seconds 0",
            "kvm-guest --seconds -1",
            "kvm-guest --seconds nan",
            "kvm-guest --seconds 3601",
            "kvm-guest --seconds",
            "kvm-guest --threads 0",
            "kvm-guest --threads 1025",
            "kvm-guest --threads two",
            "kvm-guest --threads 1 --threads 2",
            "kvm-guest --driver ecb-aes-sevault",
        ] {
            let error = parse_str(bad).unwrap_err();
            assert_eq!(error.usage, KVM_GUEST_USAGE, "{bad:?}: {error}");
        }
        assert!(USAGE.contains("kvm-guest"));
    }

    #[test]
    fn help() {
        assert_eq!(parse_str("--help").unwrap(), Command::Help(USAGE));
        assert_eq!(parse_str("help").unwrap(), Command::Help(USAGE));
        assert_eq!(parse_str("diff --help").unwrap(), Command::Help(DIFF_USAGE));
        assert_eq!(parse_str("bench --drivers x -h").unwrap(), Command::Help(BENCH_USAGE));
        assert_eq!(parse_str("setkey-stress --help").unwrap(), Command::Help(STRESS_USAGE));
        assert_eq!(parse_str("errors --help").unwrap(), Command::Help(ERRORS_USAGE));
    }

    #[test]
    fn usage_errors() {
        for (bad, usage) in [
            ("", USAGE),
            ("frob", USAGE),
            ("diff", DIFF_USAGE),
            ("diff --driver a", DIFF_USAGE),
            ("diff --driver a --reference b --cases 0", DIFF_USAGE),
            ("diff --driver a --reference b --cases x", DIFF_USAGE),
            ("diff --driver a --reference b --max-len 100", DIFF_USAGE),
            ("diff --driver a --reference b --max-len 0", DIFF_USAGE),
            ("diff --driver a --reference b --max-len 33554432", DIFF_USAGE),
            ("diff --driver a --reference b --threads 0", DIFF_USAGE),
            ("diff --driver a --reference b --seed nope", DIFF_USAGE),
            ("diff --driver a --reference b --bogus 1", DIFF_USAGE),
            ("diff --driver a --reference b --cases", DIFF_USAGE),
            ("diff --driver a --driver b --reference c", DIFF_USAGE),
            ("diff --driver cbc-aes-sevault --reference ecb(aes-generic)", DIFF_USAGE),
            ("diff --driver= --reference b", DIFF_USAGE),
            ("errors --driver ecb-aes-sevault --reference cbc(aes)", ERRORS_USAGE),
            ("bench", BENCH_USAGE),
            ("bench --drivers a,,b", BENCH_USAGE),
            ("bench --drivers a --sizes 4096,15", BENCH_USAGE),
            ("bench --drivers a --seconds 0", BENCH_USAGE),
            ("bench --drivers a --seconds inf", BENCH_USAGE),
            ("bench --drivers a --key-len 20", BENCH_USAGE),
            ("setkey-stress", STRESS_USAGE),
            ("setkey-stress --driver ecb-aes-sevault --count 0", STRESS_USAGE),
            ("setkey-stress --driver ecb-aes-sevault --reference cbc(aes)", STRESS_USAGE),
        ] {
            let error = parse_str(bad).unwrap_err();
            assert_eq!(error.usage, usage, "{bad:?}: {error}");
            assert!(!error.message.is_empty());
        }
        assert!(parse_str("diff --driver a --reference b --frob").unwrap_err().message.contains("--frob"));
    }

    #[test]
    fn seeds() {
        assert_eq!(parse_seed("42"), Some(42));
        assert_eq!(parse_seed("0xff"), Some(255));
        assert_eq!(parse_seed("0XFF"), Some(255));
        assert_eq!(parse_seed("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_seed("-1"), None);
        assert_eq!(parse_seed("0x"), None);
    }

    #[test]
    fn cbc_is_told_by_the_name() {
        assert!(has_iv("cbc-aes-sevault") && has_iv("cbc(aes-generic)"));
        assert!(!has_iv("ecb-aes-sevault") && !has_iv("ecb(aes)"));
    }
}
