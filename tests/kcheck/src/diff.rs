//! `diff`: the driver against a reference on random cases, one pinned thread per CPU.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::af_alg::{describe, Tfm};
use crate::cases::{default_seed, make_case, Case};
use crate::cli::DiffArgs;
use crate::{cpu, Verdict};

/// Problems printed in full; later ones are only counted.
const PRINT_LIMIT: usize = 20;

/// Why one case could not be compared.
#[derive(Debug)]
struct CaseError {
    /// What was being done (`setkey`, `encrypt`, `decrypt`).
    step: &'static str,
    /// On which transform.
    on: String,
    error: io::Error,
}

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {} failed: {}", self.step, self.on, describe(&self.error))
    }
}

/// Two outputs that should be equal and are not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Which comparison.
    pub what: &'static str,
    /// First differing byte offset (the shorter length if one is a prefix of the other).
    pub offset: usize,
}

/// The first offset where `a` and `b` differ, if they do.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(offset) => Some(offset),
        None if a.len() != b.len() => Some(a.len().min(b.len())),
        None => None,
    }
}

/// What one thread did.
#[derive(Debug, Default)]
struct ThreadReport {
    thread: usize,
    cpu: usize,
    /// Where `sched_getcpu` said the thread was at the end.
    ran_on: Option<usize>,
    cases: u64,
    bytes: u64,
    mismatches: u64,
    errors: u64,
}

/// Runs `diff`.
pub fn run(args: &DiffArgs) -> Verdict {
    let seed = args.seed.unwrap_or_else(default_seed);
    let cpus = match cpu::allowed_cpus() {
        Ok(cpus) if !cpus.is_empty() => cpus,
        Ok(_) => return Verdict::fail("sched_getaffinity gave no CPUs".into()),
        Err(e) => return Verdict::fail(format!("sched_getaffinity: {}", describe(&e))),
    };
    let threads = args.threads.unwrap_or(cpus.len());
    for name in [&args.driver, &args.reference] {
        if let Err(e) = Tfm::new(name) {
            return Verdict::fail(format!("cannot allocate skcipher {name}: {}", describe(&e)));
        }
    }
    println!(
        "diff: {} against {}, {} cases of 16..={} bytes, {}, seed {seed:#x}, {threads} threads on CPUs {}",
        args.driver,
        args.reference,
        args.cases,
        args.max_len,
        if args.with_iv { "with IVs" } else { "no IV" },
        cpu_list(&cpus)
    );
    let printed = AtomicUsize::new(0);
    let start = Instant::now();
    let reports: Vec<ThreadReport> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let cpu = cpus[thread % cpus.len()];
                let printed = &printed;
                scope.spawn(move || worker(args, seed, thread, threads, cpu, printed))
            })
            .collect();
        cpu::join_workers(handles, |thread| ThreadReport { thread, errors: 1, ..ThreadReport::default() })
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut total = ThreadReport::default();
    for r in &reports {
        let ran_on = r.ran_on.map_or("?".to_string(), |c| c.to_string());
        println!(
            "  thread {}: pinned to CPU {}, ran on CPU {ran_on}: {} cases, {} bytes, {} mismatches, {} errors",
            r.thread, r.cpu, r.cases, r.bytes, r.mismatches, r.errors
        );
        total.cases += r.cases;
        total.bytes += r.bytes;
        total.mismatches += r.mismatches;
        total.errors += r.errors;
    }
    let misplaced = reports.iter().filter(|r| r.ran_on != Some(r.cpu)).count();
    if printed.load(Ordering::Relaxed) > PRINT_LIMIT {
        println!("  (only the first {PRINT_LIMIT} problems were printed)");
    }
    let pinned: Vec<usize> = reports.iter().map(|r| r.cpu).collect();
    let detail = format!(
        "{} of {} cases, {} bytes (each encrypted and decrypted by both), {} mismatches, {} errors, \
         {threads} threads pinned to CPUs {}, {elapsed:.1} s, seed {seed:#x}",
        total.cases,
        args.cases,
        total.bytes,
        total.mismatches,
        total.errors,
        cpu_list(&pinned)
    );
    if total.mismatches == 0 && total.errors == 0 && total.cases == args.cases && misplaced == 0 {
        Verdict::pass(detail)
    } else if misplaced > 0 {
        Verdict::fail(format!("{detail}; {misplaced} threads not on their CPU"))
    } else {
        Verdict::fail(detail)
    }
}

fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

fn worker(
    args: &DiffArgs,
    seed: u64,
    thread: usize,
    threads: usize,
    cpu: usize,
    printed: &AtomicUsize,
) -> ThreadReport {
    let mut report = ThreadReport { thread, cpu, ..ThreadReport::default() };
    let problem = |text: String| {
        if printed.fetch_add(1, Ordering::Relaxed) < PRINT_LIMIT {
            println!("  thread {thread} (CPU {cpu}): {text}");
        }
    };
    if let Err(e) = cpu::pin_current_thread(cpu) {
        problem(format!("cannot pin to CPU {cpu}: {}", describe(&e)));
        report.errors += 1;
        return report;
    }
    let tfms = Tfm::new(&args.driver).and_then(|d| Ok((d, Tfm::new(&args.reference)?)));
    let (driver, reference) = match tfms {
        Ok(pair) => pair,
        Err(e) => {
            problem(format!("cannot allocate the transforms: {}", describe(&e)));
            report.errors += 1;
            return report;
        }
    };
    let Ok(thread_index) = u64::try_from(thread) else { return report };
    for index in (thread_index..args.cases).step_by(threads) {
        let case = make_case(seed, index, args.max_len, args.with_iv, args.shape);
        let what = format!(
            "case {index} (seed {seed:#x}): {}-byte key, {} bytes{}",
            case.key.len(),
            case.data.len(),
            if case.iv.is_some() { ", random IV" } else { "" }
        );
        match check_case(&driver, &reference, &case) {
            Ok(mismatches) => {
                for m in &mismatches {
                    problem(format!("{what}: MISMATCH: {}, first difference at offset {}", m.what, m.offset));
                }
                report.mismatches += u64::try_from(mismatches.len()).unwrap_or(u64::MAX);
            }
            Err(e) => {
                problem(format!("{what}: {e}"));
                report.errors += 1;
            }
        }
        report.cases += 1;
        report.bytes += u64::try_from(case.data.len()).unwrap_or(0);
    }
    report.ran_on = cpu::current_cpu();
    report
}

/// Keys both transforms, encrypts with both, decrypts the driver's ciphertext with both.
fn check_case(driver: &Tfm, reference: &Tfm, case: &Case) -> Result<Vec<Mismatch>, CaseError> {
    let on = |step: &'static str, tfm: &Tfm| {
        let on = tfm.name().to_string();
        move |error| CaseError { step, on, error }
    };
    driver.set_key(&case.key).map_err(on("setkey", driver))?;
    reference.set_key(&case.key).map_err(on("setkey", reference))?;
    let iv = case.iv.as_ref();
    let cipher = driver.crypt(true, iv, &case.data).map_err(on("encrypt", driver))?;
    let expected = reference.crypt(true, iv, &case.data).map_err(on("encrypt", reference))?;
    let plain = driver.crypt(false, iv, &cipher).map_err(on("decrypt", driver))?;
    let plain_by_reference = reference.crypt(false, iv, &cipher).map_err(on("decrypt", reference))?;
    let comparisons = [
        ("encryption by the driver differs from the reference's", &cipher, &expected),
        ("the driver's decryption of its ciphertext differs from the plaintext", &plain, &case.data),
        (
            "the reference's decryption of the driver's ciphertext differs from the plaintext",
            &plain_by_reference,
            &case.data,
        ),
    ];
    Ok(comparisons
        .into_iter()
        .filter_map(|(what, got, want)| first_difference(got, want).map(|offset| Mismatch { what, offset }))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_differences() {
        assert_eq!(first_difference(b"abc", b"abc"), None);
        assert_eq!(first_difference(b"abc", b"abd"), Some(2));
        assert_eq!(first_difference(b"xbc", b"abc"), Some(0));
        assert_eq!(first_difference(b"ab", b"abc"), Some(2));
        assert_eq!(first_difference(b"", b""), None);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list(&[0, 1, 3]), "0,1,3");
        assert_eq!(cpu_list(&[]), "");
    }
}
