//! `errors`: bad inputs through AF_ALG, on the driver and on the reference; the driver must
//! fail (or succeed) exactly as the reference does.

use std::fmt;
use std::io;

use crate::af_alg::{abi::IV_LEN, describe, Tfm};
use crate::cases::Shape;
use crate::cli::ErrorsArgs;
use crate::Verdict;

/// A fixed AES-128 key (FIPS-197 C.1) for the checks that need a valid one.
/// A key the mode takes: AES-128 (XTS: an AES-128 pair, its halves different).
fn good_key(shape: Shape) -> Vec<u8> {
    let len = if shape == Shape::Xts { 32 } else { 16 };
    (0..len).collect()
}
/// A fixed IV.
const IV: [u8; IV_LEN] = [0xa5; IV_LEN];

/// How one check ended on one transform.
#[derive(Debug)]
pub enum Outcome {
    /// Success, with the output (empty for `setkey`).
    Ok(Vec<u8>),
    /// Failure with this errno.
    Errno(i32),
    /// Failure without an errno (the kernel's answer made no sense, e.g. short output).
    Other(String),
}

impl Outcome {
    fn of(result: io::Result<Vec<u8>>) -> Self {
        match result {
            Ok(out) => Self::Ok(out),
            Err(e) => match e.raw_os_error() {
                Some(code) => Self::Errno(code),
                None => Self::Other(e.to_string()),
            },
        }
    }

    /// The same success (same output) or the same errno.
    pub fn agrees_with(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Ok(a), Self::Ok(b)) => a == b,
            (Self::Errno(a), Self::Errno(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok(out) if out.is_empty() => f.write_str("ok"),
            Self::Ok(out) => write!(f, "ok ({} bytes out)", out.len()),
            Self::Errno(code) => f.write_str(&describe(&io::Error::from_raw_os_error(*code))),
            Self::Other(text) => write!(f, "error: {text}"),
        }
    }
}

/// What a check does to a freshly allocated transform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Set a good key, then encrypt or decrypt `len` bytes (with [`IV`] when `iv`).
    Crypt {
        /// Encrypt (else decrypt).
        encrypt: bool,
        /// Data length.
        len: usize,
        /// Pass an IV.
        iv: bool,
    },
    /// Set a key of `len` bytes; report how that went.
    SetKey {
        /// Key length.
        len: usize,
    },
    /// Set a key of `len` bytes (errors ignored), then encrypt one block.
    CryptAfterKey {
        /// Key length.
        len: usize,
    },
    /// Encrypt (or decrypt) one block without ever setting a key.
    NoKey {
        /// Encrypt (else decrypt).
        encrypt: bool,
    },
    /// Set a good key, then a bad one of `len` bytes, then encrypt one block.
    BadKeyAfterGood {
        /// The bad key's length: one inside the algorithm's key-size range, so that the
        /// driver's setkey runs and fails (a length outside it is refused by the crypto API
        /// before, which keeps the old key).
        len: usize,
    },
}

/// One check: a name, the action, and the errno both must give if it is fixed by the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// What is checked.
    pub name: String,
    /// What is done.
    pub action: Action,
    /// The errno required of both, when the crypto API defines it.
    pub expect: Option<i32>,
}

/// The checks for a mode with (`with_iv`) or without an IV.
pub fn checks(with_iv: bool, shape: Shape) -> Vec<Check> {
    let dir = |encrypt: bool| if encrypt { "encrypt" } else { "decrypt" };
    let mut checks = Vec::new();
    for len in [1, 15, 17, 31, 33] {
        for encrypt in [true, false] {
            let action = Action::Crypt { encrypt, len, iv: with_iv };
            checks.push(Check { name: format!("{} {len} bytes", dir(encrypt)), action, expect: None });
        }
    }
    for encrypt in [true, false] {
        let action = Action::Crypt { encrypt, len: 0, iv: with_iv };
        checks.push(Check { name: format!("{} 0 bytes", dir(encrypt)), action, expect: None });
        let action = Action::Crypt { encrypt, len: 48, iv: with_iv };
        checks.push(Check { name: format!("{} 48 bytes (control)", dir(encrypt)), action, expect: None });
    }
    for len in [0, 1, 15, 16, 17, 24, 31, 32, 33, 48, 64, 65] {
        checks.push(Check { name: format!("setkey {len} bytes"), action: Action::SetKey { len }, expect: None });
    }
    // Lengths the mode refuses (XTS takes 32, 48 and 64: two AES keys).
    let rejected: &[usize] =
        if shape == Shape::Xts { &[0, 1, 16, 17, 31, 33, 65] } else { &[0, 1, 15, 17, 31, 33, 64] };
    for &len in rejected {
        checks.push(Check {
            name: format!("encrypt after a rejected {len}-byte key"),
            action: Action::CryptAfterKey { len },
            expect: Some(libc::ENOKEY),
        });
    }
    for encrypt in [true, false] {
        checks.push(Check {
            name: format!("{} with no key set", dir(encrypt)),
            action: Action::NoKey { encrypt },
            expect: Some(libc::ENOKEY),
        });
    }
    // XTS keys are 32..=64 bytes (an odd length fails `xts_verify_key`); the others 16..=32.
    let bad = if shape == Shape::Xts { 33 } else { 17 };
    checks.push(Check {
        name: format!("encrypt after a good key then a {bad}-byte key"),
        action: Action::BadKeyAfterGood { len: bad },
        expect: Some(libc::ENOKEY),
    });
    let (name, iv) =
        if with_iv { ("encrypt 32 bytes with no IV", false) } else { ("encrypt 32 bytes with an IV", true) };
    checks.push(Check { name: name.into(), action: Action::Crypt { encrypt: true, len: 32, iv }, expect: None });
    checks
}

/// The data of a check: `len` bytes of a fixed pattern.
fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

fn perform(tfm: &Tfm, action: &Action) -> Outcome {
    let block = data(16);
    let result = match *action {
        Action::Crypt { encrypt, len, iv } => tfm
            .set_key(&good_key(Shape::of(tfm.name())))
            .and_then(|()| tfm.crypt(encrypt, iv.then_some(&IV), &data(len))),
        Action::SetKey { len } => tfm.set_key(&data(len)).map(|()| Vec::new()),
        Action::CryptAfterKey { len } => {
            let _ = tfm.set_key(&data(len));
            tfm.crypt(true, Some(&IV).filter(|_| tfm_has_iv(tfm)), &block)
        }
        Action::NoKey { encrypt } => tfm.crypt(encrypt, Some(&IV).filter(|_| tfm_has_iv(tfm)), &block),
        Action::BadKeyAfterGood { len } => tfm.set_key(&good_key(Shape::of(tfm.name()))).and_then(|()| {
            let _ = tfm.set_key(&data(len));
            tfm.crypt(true, Some(&IV).filter(|_| tfm_has_iv(tfm)), &block)
        }),
    };
    Outcome::of(result)
}

fn tfm_has_iv(tfm: &Tfm) -> bool {
    crate::cli::has_iv(tfm.name())
}

/// Runs `errors`.
pub fn run(args: &ErrorsArgs) -> Verdict {
    for name in [&args.driver, &args.reference] {
        if let Err(e) = Tfm::new(name) {
            return Verdict::fail(format!("cannot allocate skcipher {name}: {}", describe(&e)));
        }
    }
    println!("errors: {} against {}", args.driver, args.reference);
    let checks = checks(args.with_iv, Shape::of(&args.reference));
    let mut failed = Vec::new();
    for check in &checks {
        let outcomes = [&args.driver, &args.reference].map(|name| match Tfm::new(name) {
            Ok(tfm) => perform(&tfm, &check.action),
            Err(e) => Outcome::Other(format!("cannot allocate {name}: {}", describe(&e))),
        });
        let [driver, reference] = &outcomes;
        let agree = driver.agrees_with(reference);
        let expected = check.expect.is_none_or(|code| matches!(reference, Outcome::Errno(c) if *c == code));
        let verdict = match (agree, expected) {
            (true, true) => "same",
            (false, _) => "DIFFERENT",
            (true, false) => "both differ from the expected",
        };
        let expect = check.expect.map(|c| format!(" (expected {})", crate::af_alg::errno_name(c))).unwrap_or_default();
        println!("  {}: driver {driver}, reference {reference}{expect}: {verdict}", check.name);
        if !(agree && expected) {
            failed.push(check.name.clone());
        }
    }
    if failed.is_empty() {
        Verdict::pass(format!("{} checks, driver and reference fail (or succeed) alike", checks.len()))
    } else {
        let more = if failed.len() > 5 { "; ..." } else { "" };
        let first: Vec<&str> = failed.iter().take(5).map(String::as_str).collect();
        Verdict::fail(format!("{} of {} checks differ: {}{more}", failed.len(), checks.len(), first.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_brief_cases_are_all_there() {
        let names: Vec<String> = checks(true, Shape::Blocks).into_iter().map(|c| c.name).collect();
        for want in [
            "encrypt 15 bytes",
            "decrypt 17 bytes",
            "encrypt 33 bytes",
            "encrypt 0 bytes",
            "decrypt 0 bytes",
            "setkey 0 bytes",
            "setkey 64 bytes",
            "encrypt with no key set",
            "decrypt with no key set",
            "encrypt 32 bytes with no IV",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
        }
        for len in [0, 1, 15, 17, 31, 33, 64] {
            assert!(names.contains(&format!("setkey {len} bytes")));
        }
        assert!(checks(false, Shape::Blocks).iter().any(|c| c.name == "encrypt 32 bytes with an IV"));
        let no_key: Vec<_> =
            checks(false, Shape::Blocks).into_iter().filter(|c| matches!(c.action, Action::NoKey { .. })).collect();
        assert!(no_key.iter().all(|c| c.expect == Some(libc::ENOKEY)));
    }

    #[test]
    fn outcomes_agree_on_the_same_errno_or_output() {
        assert!(Outcome::Errno(22).agrees_with(&Outcome::Errno(22)));
        assert!(!Outcome::Errno(22).agrees_with(&Outcome::Errno(126)));
        assert!(Outcome::Ok(vec![1]).agrees_with(&Outcome::Ok(vec![1])));
        assert!(!Outcome::Ok(vec![1]).agrees_with(&Outcome::Ok(vec![2])));
        assert!(!Outcome::Ok(vec![]).agrees_with(&Outcome::Errno(22)));
        assert!(!Outcome::Other("x".into()).agrees_with(&Outcome::Other("x".into())));
        assert_eq!(Outcome::Errno(libc::ENOKEY).to_string(), "ENOKEY (Required key not available)");
        assert_eq!(Outcome::Ok(vec![0; 16]).to_string(), "ok (16 bytes out)");
    }
}
