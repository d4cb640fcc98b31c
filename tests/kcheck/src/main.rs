//! `sevault-kcheck`: checks the kernel's skcipher drivers through AF_ALG, from user space,
//! inside the nested test VM.
//!
//! Where it sits in the life of a request: a user of `ecb(aes)`/`cbc(aes)` opens an AF_ALG
//! socket, the crypto API picks `ecb-aes-sevault`/`cbc-aes-sevault` (sevault.ko), whose C glue
//! walks the scatterlists and hands the request to the vault VM. This tool is that user: it
//! drives the module through the same public interface as any program would, and compares
//! every answer (outputs and errnos) with the kernel's own implementations
//! (`ecb(aes-generic)`, `cbc(aes-generic)`, the AES-NI drivers).
//!
//! `cargo xtask build` builds it statically linked (`-C target-feature=+crt-static`) and
//! `cargo xtask vm` puts it in the image as `/usr/bin/sevault-kcheck`, where
//! `tests/vm/42-vault-differential.sh` runs it. Subcommands: `diff`, `errors`, `bench`,
//! `setkey-stress`, `rebuild`, `spin`, `kvm-guest`, `instantiate`, `high-memory` (see `sevault-kcheck --help`). Exit status 0 when every check passed, 1
//! when one failed, 2 on a usage error; each subcommand ends with one line
//! `kcheck <subcommand>: ok: ...` or `kcheck <subcommand>: FAILED: ...`.
#![deny(unsafe_op_in_unsafe_fn)]

mod af_alg;
mod bench;
mod cases;
mod cli;
mod cpu;
mod diff;
mod errors;
mod high_memory;
mod kvm_guest;
mod privilege;
mod rebuild;
mod spin;
mod stress;

use std::process::ExitCode;

use cli::Command;

/// How a subcommand ended: passed or not, and the rest of its summary line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Every check passed.
    pub passed: bool,
    /// The summary, after `kcheck <subcommand>: ok: ` / `FAILED: `.
    pub summary: String,
}

impl Verdict {
    /// A passing verdict.
    pub fn pass(summary: String) -> Self {
        Self { passed: true, summary }
    }

    /// A failing verdict.
    pub fn fail(summary: String) -> Self {
        Self { passed: false, summary }
    }

    /// The summary line of `subcommand`.
    pub fn line(&self, subcommand: &str) -> String {
        let status = if self.passed { "ok" } else { "FAILED" };
        format!("kcheck {subcommand}: {status}: {}", self.summary)
    }
}

/// `instantiate`: binds a socket to the algorithm, which builds and self-tests it.
fn instantiate(kind: &str, name: &str) -> Verdict {
    match af_alg::bind(kind, name) {
        Ok(_) => Verdict::pass(format!("{kind} {name} allocated (its self-tests passed)")),
        Err(e) => Verdict::fail(format!("{kind} {name}: {}", af_alg::describe(&e))),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("sevault-kcheck: {e}");
            return ExitCode::from(2);
        }
    };
    let (name, verdict) = match &command {
        Command::Help(usage) => {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        Command::Diff(a) => ("diff", diff::run(a)),
        Command::Errors(a) => ("errors", errors::run(a)),
        Command::Bench(a) => ("bench", bench::run(a)),
        Command::SetkeyStress(a) => ("setkey-stress", stress::run(a)),
        Command::Rebuild(a) => ("rebuild", rebuild::run(a)),
        Command::Spin(a) => ("spin", spin::run(a)),
        Command::HighMemory(a, above) => ("high-memory", high_memory::run(a, *above)),
        Command::KvmGuest(a) => ("kvm-guest", kvm_guest::run(a)),
        Command::Instantiate(kind, name) => ("instantiate", instantiate(kind, name)),
    };
    println!("{}", verdict.line(name));
    if verdict.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines() {
        assert_eq!(Verdict::pass("3 checks".into()).line("errors"), "kcheck errors: ok: 3 checks");
        assert_eq!(Verdict::fail("x".into()).line("setkey-stress"), "kcheck setkey-stress: FAILED: x");
    }
}
