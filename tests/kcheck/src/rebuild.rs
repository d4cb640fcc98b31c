//! `rebuild`: the vault's fault path end to end, through sevault.ko's debugfs test hook.
//!
//! Two transforms are keyed and checked; the hook makes the next vault run fault; that
//! request must fail with EIO, every transform keyed before must then get ENOKEY (the
//! rebuild wiped the key slots), and a new key must make a transform work again.

use std::io;

use crate::af_alg::{abi::IV_LEN, describe, Tfm};
use crate::cli::ErrorsArgs;
use crate::Verdict;

/// The hook: writing `1` makes the vault's next run fault.
const INJECT: &str = "/sys/kernel/debug/sevault/inject_fault";
const KEY_A: [u8; 16] = [0x11; 16];
const KEY_B: [u8; 32] = [0x22; 32];
const IV: [u8; IV_LEN] = [0x5a; IV_LEN];
const DATA: [u8; 64] = [0x3c; 64];

fn errno_of<T>(result: &io::Result<T>) -> Option<i32> {
    result.as_ref().err().and_then(io::Error::raw_os_error)
}

/// Runs the check.
pub fn run(args: &ErrorsArgs) -> Verdict {
    match check(args) {
        Ok(summary) => Verdict::pass(summary),
        Err(problem) => Verdict::fail(problem),
    }
}

fn check(args: &ErrorsArgs) -> Result<String, String> {
    let iv = args.with_iv.then_some(&IV);
    let open = |name: &str, key: &[u8]| -> Result<Tfm, String> {
        let tfm = Tfm::new(name).map_err(|e| format!("opening {name}: {}", describe(&e)))?;
        tfm.set_key(key).map_err(|e| format!("setkey on {name}: {}", describe(&e)))?;
        Ok(tfm)
    };
    let (a, b) = (open(&args.driver, &KEY_A)?, open(&args.driver, &KEY_B)?);
    let (ref_a, ref_b) = (open(&args.reference, &KEY_A)?, open(&args.reference, &KEY_B)?);
    let expect = |tfm: &Tfm, reference: &Tfm, what: &str| -> Result<(), String> {
        let got = tfm.crypt(true, iv, &DATA).map_err(|e| format!("{what}: {}", describe(&e)))?;
        let want = reference.crypt(true, iv, &DATA).map_err(|e| format!("{what} (reference): {}", describe(&e)))?;
        if got == want {
            Ok(())
        } else {
            Err(format!("{what}: output differs from {}", args.reference))
        }
    };
    expect(&a, &ref_a, "transform A before the fault")?;
    expect(&b, &ref_b, "transform B before the fault")?;
    println!("rebuild: transforms A (AES-128) and B (AES-256) of {} match {}", args.driver, args.reference);

    std::fs::write(INJECT, "1")
        .map_err(|e| format!("writing {INJECT}: {e} (is sevault.ko loaded, debugfs mounted?)"))?;
    let faulted = a.crypt(true, iv, &DATA);
    println!("rebuild: request during the injected fault: {}", outcome(&faulted));
    if errno_of(&faulted) != Some(libc::EIO) {
        return Err(format!("the faulting request gave {}, expected EIO", outcome(&faulted)));
    }
    for (name, tfm) in [("A", &a), ("B", &b)] {
        let after = tfm.crypt(true, iv, &DATA);
        println!("rebuild: transform {name} after the rebuild: {}", outcome(&after));
        if errno_of(&after) != Some(libc::ENOKEY) {
            return Err(format!("transform {name} after the rebuild gave {}, expected ENOKEY", outcome(&after)));
        }
    }
    a.set_key(&KEY_A).map_err(|e| format!("setkey on A after the rebuild: {}", describe(&e)))?;
    expect(&a, &ref_a, "transform A keyed again")?;
    let still = b.crypt(true, iv, &DATA);
    if errno_of(&still) != Some(libc::ENOKEY) {
        return Err(format!("transform B (not keyed again) gave {}, expected ENOKEY", outcome(&still)));
    }
    println!("rebuild: A keyed again matches {}; B, not keyed again, still ENOKEY", args.reference);
    Ok("fault -> EIO, then ENOKEY for every old key, a new key works".into())
}

fn outcome<T>(result: &io::Result<T>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => describe(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_extraction() {
        let ok: io::Result<()> = Ok(());
        assert_eq!(errno_of(&ok), None);
        let eio: io::Result<()> = Err(io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(errno_of(&eio), Some(libc::EIO));
        assert_eq!(outcome(&ok), "ok");
    }
}
