//! `spin`: a runaway vault is stopped by sevault.ko's time budget, the host stays responsive
//! meanwhile, and the rebuild that follows does not poison requests running on other CPUs.
//!
//! Thread A (pinned to the first CPU) asks the debugfs hook to make the vault spin on that
//! CPU, then sends one request: it must fail with EIO after about `budget_ms`. Meanwhile
//! thread B (pinned to another CPU, same process) keeps
//! - unmapping pages it just touched: each `munmap` needs a TLB-shootdown IPI answered by
//!   A's CPU (A is in the kernel with this process's memory), so its latency shows whether
//!   that CPU takes interrupts while the vault spins;
//! - sampling A's CPU's local timer interrupts (`LOC` in /proc/interrupts);
//! - sending requests of its own through another transform: they must match the reference
//!   until the rebuild wipes the keys, then fail with ENOKEY only (never EBUSY, never a
//!   hang), and work again once re-keyed.
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::af_alg::{abi::IV_LEN, describe, Tfm};
use crate::cli::ErrorsArgs;
use crate::cpu::{allowed_cpus, pin_current_thread};
use crate::Verdict;

const INJECT: &str = "/sys/kernel/debug/sevault/inject_fault";
const BUDGET: &str = "/sys/module/sevault/parameters/budget_ms";
/// The hook's "spin" fault.
const SPIN: u64 = 2;
const KEY_A: [u8; 16] = [0x41; 16];
const KEY_B: [u8; 24] = [0x42; 24];
const IV: [u8; IV_LEN] = [0x17; IV_LEN];
/// A few pages per request, so that B's requests are short.
const DATA: [u8; 4096] = [0x6b; 4096];

/// The hook's value for "spin on `cpu`" (kind in bits 0–7, CPU + 1 above).
pub fn spin_on(cpu: usize) -> u64 {
    SPIN | ((cpu as u64 + 1) << 8)
}

/// `LOC` (local timer interrupts) of `cpu` from /proc/interrupts text.
pub fn local_timer_count(interrupts: &str, cpu: usize) -> Option<u64> {
    let line = interrupts.lines().find(|l| l.trim_start().starts_with("LOC:"))?;
    line.split_whitespace().nth(1 + cpu)?.parse().ok()
}

fn errno_of<T>(result: &io::Result<T>) -> Option<i32> {
    result.as_ref().err().and_then(io::Error::raw_os_error)
}

/// What thread B saw.
#[derive(Debug, Default)]
struct Observer {
    unmaps: u64,
    worst_unmap: Duration,
    timer_first: Option<u64>,
    timer_last: Option<u64>,
    matched: u64,
    enokey: u64,
    rekeyed: bool,
    after_rekey: u64,
    problems: Vec<String>,
}

/// Runs the check.
pub fn run(args: &ErrorsArgs) -> Verdict {
    match check(args) {
        Ok(summary) => Verdict::pass(summary),
        Err(problem) => Verdict::fail(problem),
    }
}

fn touch_and_unmap() -> io::Result<Duration> {
    // SAFETY: an anonymous private mapping of one page; checked before use, unmapped below.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `page` is a fresh writable page of ours.
    unsafe { page.cast::<u8>().write_volatile(1) };
    let start = Instant::now();
    // SAFETY: unmaps exactly the mapping made above.
    if unsafe { libc::munmap(page, 4096) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(start.elapsed())
}

fn observe(args: &ErrorsArgs, cpu_b: usize, cpu_a: usize, a_running: &AtomicBool, stop: &AtomicBool) -> Observer {
    let mut seen = Observer::default();
    if let Err(e) = pin_current_thread(cpu_b) {
        seen.problems.push(format!("pinning B to CPU {cpu_b}: {e}"));
        return seen;
    }
    let iv = args.with_iv.then_some(&IV);
    let open = |name: &str| -> io::Result<Tfm> {
        let tfm = Tfm::new(name)?;
        tfm.set_key(&KEY_B)?;
        Ok(tfm)
    };
    let (tfm, reference) = match (open(&args.driver), open(&args.reference)) {
        (Ok(t), Ok(r)) => (t, r),
        (Err(e), _) | (_, Err(e)) => {
            seen.problems.push(format!("B: opening transforms: {}", describe(&e)));
            return seen;
        }
    };
    let want = match reference.crypt(true, iv, &DATA) {
        Ok(want) => want,
        Err(e) => {
            seen.problems.push(format!("B: reference: {}", describe(&e)));
            return seen;
        }
    };
    while !stop.load(Ordering::Acquire) {
        if a_running.load(Ordering::Acquire) {
            match touch_and_unmap() {
                Ok(took) => {
                    seen.unmaps += 1;
                    seen.worst_unmap = seen.worst_unmap.max(took);
                }
                Err(e) => seen.problems.push(format!("B: munmap: {e}")),
            }
            if let Some(count) =
                std::fs::read_to_string("/proc/interrupts").ok().and_then(|t| local_timer_count(&t, cpu_a))
            {
                seen.timer_first.get_or_insert(count);
                seen.timer_last = Some(count);
            }
        }
        let got = tfm.crypt(true, iv, &DATA);
        match got {
            Ok(out) if out == want => {
                seen.matched += 1;
                if seen.rekeyed {
                    seen.after_rekey += 1;
                }
            }
            Ok(_) => seen.problems.push("B: output differs from the reference".into()),
            Err(e) if e.raw_os_error() == Some(libc::ENOKEY) => {
                seen.enokey += 1;
                match tfm.set_key(&KEY_B) {
                    Ok(()) => seen.rekeyed = true,
                    Err(e) => seen.problems.push(format!("B: setkey after ENOKEY: {}", describe(&e))),
                }
            }
            Err(e) => {
                seen.problems.push(format!("B: request gave {} (only ENOKEY may follow a rebuild)", describe(&e)))
            }
        }
        if seen.problems.len() > 10 {
            break;
        }
    }
    seen
}

fn check(args: &ErrorsArgs) -> Result<String, String> {
    let cpus = allowed_cpus().map_err(|e| format!("sched_getaffinity: {e}"))?;
    let (cpu_a, cpu_b) = match cpus.as_slice() {
        [a, b, ..] => (*a, *b),
        _ => return Err(format!("needs two CPUs, this process may use {cpus:?}")),
    };
    let budget_ms: u64 = std::fs::read_to_string(BUDGET)
        .map_err(|e| format!("reading {BUDGET}: {e} (is sevault.ko loaded?)"))?
        .trim()
        .parse()
        .map_err(|e| format!("{BUDGET}: {e}"))?;
    let budget = Duration::from_millis(budget_ms);
    pin_current_thread(cpu_a).map_err(|e| format!("pinning A to CPU {cpu_a}: {e}"))?;
    let iv = args.with_iv.then_some(&IV);
    let a = Tfm::new(&args.driver).map_err(|e| format!("opening {}: {}", args.driver, describe(&e)))?;
    a.set_key(&KEY_A).map_err(|e| format!("setkey A: {}", describe(&e)))?;
    let reference = Tfm::new(&args.reference).map_err(|e| format!("opening {}: {}", args.reference, describe(&e)))?;
    reference.set_key(&KEY_A).map_err(|e| format!("setkey reference: {}", describe(&e)))?;
    let want = reference.crypt(true, iv, &DATA).map_err(|e| format!("reference: {}", describe(&e)))?;

    let (a_running, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let observer = {
        let (args, a_running, stop) = (args.clone(), a_running.clone(), stop.clone());
        std::thread::spawn(move || observe(&args, cpu_b, cpu_a, &a_running, &stop))
    };
    // B gets going (its own requests) before the vault is made to spin.
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(INJECT, spin_on(cpu_a).to_string())
        .map_err(|e| format!("writing {INJECT}: {e} (is debugfs mounted?)"))?;
    a_running.store(true, Ordering::Release);
    let start = Instant::now();
    let spun = a.crypt(true, iv, &DATA);
    let took = start.elapsed();
    a_running.store(false, Ordering::Release);
    // B sees the rebuild's ENOKEY and re-keys before it stops.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Release);
    let seen = observer.join().map_err(|_| "thread B panicked".to_string())?;

    println!(
        "spin: CPU {cpu_a}: the spinning request ended after {} ms ({}), budget {budget_ms} ms",
        took.as_millis(),
        spun.as_ref().map_or_else(describe, |_| "ok".into())
    );
    let timer = match (seen.timer_first, seen.timer_last) {
        (Some(first), Some(last)) => last.saturating_sub(first),
        _ => 0,
    };
    println!(
        "spin: CPU {cpu_b} meanwhile: {} munmaps (TLB shootdowns to CPU {cpu_a}), the slowest {} µs; CPU {cpu_a} took \
         {timer} local timer interrupts; {} requests matched, {} ENOKEY after the rebuild, {} matched after re-keying",
        seen.unmaps,
        seen.worst_unmap.as_micros(),
        seen.matched,
        seen.enokey,
        seen.after_rekey
    );
    let mut problems = seen.problems;
    if errno_of(&spun) != Some(libc::EIO) {
        problems.push(format!(
            "the spinning request gave {}, expected EIO",
            spun.as_ref().map_or_else(describe, |_| "ok".into())
        ));
    }
    if took < budget.mul_f64(0.9) || took > budget + Duration::from_secs(3) {
        problems.push(format!("the spinning request took {} ms; the budget is {budget_ms} ms", took.as_millis()));
    }
    if seen.unmaps == 0 || seen.worst_unmap > budget / 4 {
        problems.push(format!(
            "CPU {cpu_a} did not answer TLB shootdowns while the vault spun ({} munmaps, slowest {} ms)",
            seen.unmaps,
            seen.worst_unmap.as_millis()
        ));
    }
    if timer == 0 {
        problems.push(format!("CPU {cpu_a} took no timer interrupts while the vault spun"));
    }
    if seen.enokey == 0 || !seen.rekeyed || seen.after_rekey == 0 {
        problems.push("B never saw the rebuild's ENOKEY followed by working requests after re-keying".into());
    }
    match a.crypt(true, iv, &DATA) {
        Err(e) if e.raw_os_error() == Some(libc::ENOKEY) => {}
        other => problems.push(format!(
            "A after the rebuild gave {}, expected ENOKEY",
            other.as_ref().map_or_else(describe, |_| "ok".into())
        )),
    }
    a.set_key(&KEY_A).map_err(|e| format!("setkey A after the rebuild: {}", describe(&e)))?;
    match a.crypt(true, iv, &DATA) {
        Ok(out) if out == want => {}
        other => problems.push(format!(
            "A re-keyed: {}",
            other.map_or_else(|e| describe(&e), |_| "output differs from the reference".into())
        )),
    }
    if problems.is_empty() {
        Ok(format!(
            "budget ended the spin after {} ms with EIO; TLB shootdowns answered in at most {} µs, {timer} timer \
             interrupts meanwhile; other CPU's requests: ENOKEY after the rebuild, then fine",
            took.as_millis(),
            seen.worst_unmap.as_micros()
        ))
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_value_names_the_cpu() {
        assert_eq!(spin_on(0), 0x102);
        assert_eq!(spin_on(3), 0x402);
    }

    #[test]
    fn local_timer_row() {
        let text = "           CPU0       CPU1\n  0:         44          0   IO-APIC   2-edge      timer\n\
                    NMI:          5          0   Non-maskable interrupts\n\
                    LOC:      12345       6789   Local timer interrupts\n";
        assert_eq!(local_timer_count(text, 0), Some(12345));
        assert_eq!(local_timer_count(text, 1), Some(6789));
        assert_eq!(local_timer_count(text, 2), None);
        assert_eq!(local_timer_count("no such row", 0), None);
    }
}
