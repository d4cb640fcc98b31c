//! What the figures were measured on: CPU, its AES-related flags, kernel, compiler, OpenSSL,
//! date, and the caveats that go with a cloud VM.
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The `/proc/cpuinfo` flags that decide which AES code paths a CPU can take.
pub const FLAGS: [&str; 5] = ["aes", "vaes", "avx2", "avx512f", "vpclmulqdq"];

/// The caveat printed with every result.
pub const NOTE: &str = "Measured on a virtualized cloud VM whose vCPUs may be shared with other work: the \
     figures are noisy, so compare the columns of one run rather than separate runs. The vault's AES code \
     runs here as ordinary host code (the same source as the vault image), not inside the vault VM: no \
     VMRUN, no request validation, no scatter-list walk.";

/// A CPU flag and whether the CPU reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Flag {
    /// `/proc/cpuinfo` name.
    pub name: &'static str,
    /// Listed in the first processor's `flags`.
    pub present: bool,
}

/// The machine and software a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// `model name` of the first processor.
    pub cpu_model: String,
    /// `cpu family`/`model`/`stepping`, which name the microarchitecture when the model
    /// name is generic (as in VMs).
    pub cpu_family_model_stepping: String,
    /// [`FLAGS`] and whether each is present.
    pub cpu_flags: Vec<Flag>,
    /// Number of `processor` entries in `/proc/cpuinfo`.
    pub logical_cpus: usize,
    /// `uname -r` (read from `/proc/sys/kernel/osrelease`).
    pub kernel: String,
    /// `rustc --version` of the compiler that built this benchmark.
    pub rustc: String,
    /// `openssl version`.
    pub openssl: String,
    /// `OPENSSL_ia32cap` if set: it changes which code OpenSSL runs.
    pub openssl_ia32cap_env: Option<String>,
    /// When the run started, UTC.
    pub date_utc: String,
    /// [`NOTE`].
    pub note: &'static str,
}

impl Machine {
    /// Describes this machine; `openssl` is the output of `openssl version`.
    pub fn describe(openssl: String) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = CpuInfo::parse(&cpuinfo);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Self {
            cpu_model: cpu.model,
            cpu_family_model_stepping: cpu.family_model_stepping,
            cpu_flags: cpu.flags,
            logical_cpus: cpu.processors,
            kernel,
            rustc: env!("SEVAULT_BENCH_RUSTC").to_owned(),
            openssl,
            openssl_ia32cap_env: std::env::var("OPENSSL_ia32cap").ok(),
            date_utc: utc_date(now),
            note: NOTE,
        }
    }

    /// "aes vaes avx2 avx512f vpclmulqdq" with absent flags marked "no-…".
    pub fn flags_summary(&self) -> String {
        let words: Vec<String> = self
            .cpu_flags
            .iter()
            .map(|flag| if flag.present { flag.name.to_owned() } else { format!("no-{}", flag.name) })
            .collect();
        words.join(" ")
    }
}

/// What this tool reads from `/proc/cpuinfo`.
#[derive(Debug, PartialEq, Eq)]
struct CpuInfo {
    model: String,
    family_model_stepping: String,
    flags: Vec<Flag>,
    processors: usize,
}

impl CpuInfo {
    /// Parses `/proc/cpuinfo`: the first processor's fields, and the count of processors.
    fn parse(text: &str) -> Self {
        let field = |name: &str| {
            text.lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(key, _)| key.trim() == name)
                .map(|(_, value)| value.trim().to_owned())
        };
        let present: Vec<String> = field("flags").unwrap_or_default().split_whitespace().map(str::to_owned).collect();
        Self {
            model: field("model name").unwrap_or_else(|| "unknown".to_owned()),
            family_model_stepping: format!(
                "family {}, model {}, stepping {}",
                field("cpu family").unwrap_or_else(|| "?".to_owned()),
                field("model").unwrap_or_else(|| "?".to_owned()),
                field("stepping").unwrap_or_else(|| "?".to_owned()),
            ),
            flags: FLAGS.iter().map(|&name| Flag { name, present: present.iter().any(|f| f == name) }).collect(),
            processors: text
                .lines()
                .filter(|line| line.split_once(':').is_some_and(|(key, _)| key.trim() == "processor"))
                .count(),
        }
    }
}

/// `unix_seconds` as "YYYY-MM-DD HH:MM:SS UTC" (proleptic Gregorian; days-to-date after
/// Howard Hinnant's `civil_from_days`).
pub fn utc_date(unix_seconds: u64) -> String {
    let (days, secs) = (unix_seconds / 86_400, unix_seconds % 86_400);
    // Days since 0000-03-01, in 400-year eras of 146 097 days.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_date(1_709_251_199), "2024-02-29 23:59:59 UTC");
        assert_eq!(utc_date(4_102_444_800), "2100-01-01 00:00:00 UTC");
    }

    #[test]
    fn cpuinfo() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n\
                    model name\t: AMD EPYC\nstepping\t: 1\nflags\t\t: fpu sse2 aes avx2 vaes\n\n\
                    processor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 aes avx2 vaes\n";
        let cpu = CpuInfo::parse(text);
        assert_eq!(cpu.model, "AMD EPYC");
        assert_eq!(cpu.family_model_stepping, "family 25, model 17, stepping 1");
        assert_eq!(cpu.processors, 2);
        let present: Vec<_> = cpu.flags.iter().filter(|f| f.present).map(|f| f.name).collect();
        assert_eq!(present, ["aes", "vaes", "avx2"]);
    }
}
