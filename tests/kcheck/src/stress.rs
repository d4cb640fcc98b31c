//! `setkey-stress`: many transforms of the driver holding keys at once (the vault's key
//! slots), each checked against the reference, re-keyed, checked again, and dropped; in
//! rounds, so slots released by one round are reused by the next.

use std::fmt;
use std::io;
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::af_alg::{describe, Tfm};
use crate::cases::{default_seed, random_bytes, KEY_LENS};
use crate::cli::StressArgs;
use crate::Verdict;

/// Problems printed in full; later ones are only counted.
const PRINT_LIMIT: usize = 20;

/// Descriptors kept free beyond the transforms (stdio, the reference, operation sockets).
const SPARE_FDS: u64 = 32;

/// What went wrong with one transform.
#[derive(Debug)]
enum Problem {
    /// A system call failed.
    Io {
        /// What was being done.
        step: &'static str,
        /// On which transform.
        on: String,
        error: io::Error,
    },
    /// The driver's output is not the reference's.
    Mismatch(&'static str),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { step, on, error } => write!(f, "{step} on {on} failed: {}", describe(error)),
            Self::Mismatch(what) => write!(f, "MISMATCH: {what}"),
        }
    }
}

fn io_problem<'a>(step: &'static str, on: &'a Tfm) -> impl FnOnce(io::Error) -> Problem + 'a {
    move |error| Problem::Io { step, on: on.name().to_string(), error }
}

/// A transform of the driver and the key it holds.
struct Keyed {
    tfm: Tfm,
    key: Vec<u8>,
}

/// Runs `setkey-stress`.
pub fn run(args: &StressArgs) -> Verdict {
    let seed = default_seed();
    let mut rng = SmallRng::seed_from_u64(seed);
    if let Err(e) = ensure_fd_limit(args.count) {
        return Verdict::fail(format!("cannot raise the open-file limit for {} transforms: {e}", args.count));
    }
    if let Some(uid) = args.as_user {
        if let Err(e) = crate::privilege::become_user(uid) {
            return Verdict::fail(format!("cannot become uid {uid}: {e}"));
        }
        println!("setkey-stress: running as uid {uid} (no privileges)");
    }
    let reference = match Tfm::new(&args.reference) {
        Ok(tfm) => tfm,
        Err(e) => return Verdict::fail(format!("cannot allocate {}: {}", args.reference, describe(&e))),
    };
    println!(
        "setkey-stress: {} rounds of {} transforms of {} holding keys at once, checked against {}",
        args.rounds, args.count, args.driver, args.reference
    );
    let start = Instant::now();
    let (mut checks, mut problems) = (0u64, 0u64);
    let mut report = |round: usize, index: usize, problem: Problem| {
        problems += 1;
        if problems <= PRINT_LIMIT as u64 {
            println!("  round {round}, transform {index}: {problem}");
        }
    };
    for round in 0..args.rounds {
        // Allocate and key them all before using any, so that all keys are held at once.
        let mut keyed: Vec<Keyed> = Vec::with_capacity(args.count);
        for index in 0..args.count {
            let key = random_key(&mut rng);
            let tfm = match Tfm::new(&args.driver) {
                Ok(tfm) => tfm,
                Err(e) => {
                    report(round, index, Problem::Io { step: "allocate", on: args.driver.clone(), error: e });
                    break;
                }
            };
            if let Err(e) = tfm.set_key(&key) {
                report(round, index, io_problem("setkey", &tfm)(e));
                break;
            }
            keyed.push(Keyed { tfm, key });
        }
        let mut order: Vec<usize> = (0..keyed.len()).collect();
        order.shuffle(&mut rng);
        for &index in &order {
            checks += 1;
            if let Err(p) = check(&keyed[index], &reference, args.with_iv, &mut rng) {
                report(round, index, p);
            }
        }
        // Re-key every other one (the others keep theirs), and check them all again.
        for (index, k) in keyed.iter_mut().enumerate().filter(|(i, _)| i % 2 == round % 2) {
            k.key = random_key(&mut rng);
            if let Err(e) = k.tfm.set_key(&k.key) {
                report(round, index, io_problem("re-key", &k.tfm)(e));
            }
        }
        order.shuffle(&mut rng);
        for &index in &order {
            checks += 1;
            if let Err(p) = check(&keyed[index], &reference, args.with_iv, &mut rng) {
                report(round, index, p);
            }
        }
        if round == 0 {
            if let Some(path) = &args.pause_file {
                if let Err(e) = pause_until_deleted(path, keyed.len()) {
                    report(round, 0, Problem::Io { step: "pause", on: path.display().to_string(), error: e });
                }
            }
        }
        let held = keyed.len();
        drop(keyed);
        println!("  round {round}: {held} transforms keyed, checked, re-keyed, checked, dropped");
    }
    if problems > PRINT_LIMIT as u64 {
        println!("  (only the first {PRINT_LIMIT} problems were printed)");
    }
    let expected_checks = 2 * args.count as u64 * args.rounds as u64;
    let detail = format!(
        "{} rounds x {} transforms of {}, {checks} of {expected_checks} checks against {}, {problems} problems, {:.1} s",
        args.rounds,
        args.count,
        args.driver,
        args.reference,
        start.elapsed().as_secs_f64()
    );
    if problems == 0 && checks == expected_checks {
        Verdict::pass(detail)
    } else {
        Verdict::fail(detail)
    }
}

fn random_key(rng: &mut SmallRng) -> Vec<u8> {
    let len = KEY_LENS[rng.gen_range(0..KEY_LENS.len())];
    random_bytes(rng, len)
}

/// Encrypts a random block with the driver's transform and with the reference (keyed with
/// the same key), compares, and decrypts it back with the driver's.
fn check(k: &Keyed, reference: &Tfm, with_iv: bool, rng: &mut SmallRng) -> Result<(), Problem> {
    let block: [u8; 16] = rng.gen();
    let iv: Option<[u8; 16]> = with_iv.then(|| rng.gen());
    let got = k.tfm.crypt(true, iv.as_ref(), &block).map_err(io_problem("encrypt", &k.tfm))?;
    reference.set_key(&k.key).map_err(io_problem("setkey", reference))?;
    let want = reference.crypt(true, iv.as_ref(), &block).map_err(io_problem("encrypt", reference))?;
    if got != want {
        return Err(Problem::Mismatch("one block encrypted by the driver differs from the reference's"));
    }
    let back = k.tfm.crypt(false, iv.as_ref(), &got).map_err(io_problem("decrypt", &k.tfm))?;
    if back != block {
        return Err(Problem::Mismatch("the driver's decryption of its own block differs from the plaintext"));
    }
    Ok(())
}

/// Raises the soft open-file limit, if needed, to hold `count` transforms (up to the hard
/// limit).
/// Creates `path` and waits (at most 600 s) until another program deletes it.
fn pause_until_deleted(path: &std::path::Path, held: usize) -> io::Result<()> {
    std::fs::write(path, format!("{held} transforms keyed\n"))?;
    println!("setkey-stress: {held} keyed transforms held; waiting until {} is deleted", path.display());
    let start = Instant::now();
    while path.exists() {
        if start.elapsed() > std::time::Duration::from_secs(600) {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "nobody deleted the pause file in 600 s"));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(())
}

fn ensure_fd_limit(count: usize) -> io::Result<()> {
    let needed = (count as u64).saturating_add(SPARE_FDS);
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a live `struct rlimit` the kernel writes.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur >= needed {
        return Ok(());
    }
    if limit.rlim_max < needed {
        // Only root can raise the hard limit (up to fs.nr_open); others get the error.
        limit.rlim_max = needed;
    }
    limit.rlim_cur = needed;
    // SAFETY: `limit` is a live `struct rlimit` the kernel reads.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{needed} descriptors needed: {e}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_limit_is_raised_within_the_hard_limit() {
        ensure_fd_limit(16).unwrap();
        assert!(ensure_fd_limit(usize::MAX / 2).is_err());
    }
}
