//! Every way a benchmark run can stop, each with what is needed to act on it.
use std::fmt;
use std::path::PathBuf;
use std::process::ExitStatus;

use crate::openssl::ParseError;

/// Why the benchmark stopped.
#[derive(Debug)]
pub enum Error {
    /// The command line could not be understood.
    Usage(String),
    /// The CPU (as the running OS reports it) has no AES-NI.
    NoAesNi,
    /// The `openssl` command could not be started.
    OpensslMissing(std::io::Error),
    /// `openssl` ran and failed.
    OpensslFailed {
        /// The command as a shell would show it.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// What it said on stderr.
        stderr: String,
    },
    /// `openssl speed` printed something this tool cannot read.
    OpensslOutput {
        /// The command as a shell would show it.
        command: String,
        /// What was wrong with its output.
        reason: ParseError,
    },
    /// RustCrypto rejected a key or IV length.
    RustCrypto(String),
    /// The vault's output differs from RustCrypto's for the same key, IV and data.
    Mismatch {
        /// Which cell (key size, mode, direction, size).
        cell: String,
        /// Which call on the buffer (0 = first; CBC chains from one call to the next).
        call: usize,
        /// First differing byte.
        offset: usize,
    },
    /// A result file could not be written.
    Write {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The JSON results could not be serialized.
    Json(serde_json::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(msg) => write!(f, "{msg} (see --help)"),
            Self::NoAesNi => write!(
                f,
                "this CPU has no AES-NI (`aes` flag): the vault's code cannot run here, so there is nothing to measure"
            ),
            Self::OpensslMissing(err) if err.kind() == std::io::ErrorKind::NotFound => write!(
                f,
                "the `openssl` command is not on PATH: OpenSSL EVP is one of the three columns and is \
                 measured with `openssl speed`, so install OpenSSL's command-line tool (Debian: \
                 `apt-get install openssl`) and run again"
            ),
            Self::OpensslMissing(err) => write!(f, "could not run `openssl`: {err}"),
            Self::OpensslFailed { command, status, stderr } => {
                write!(f, "`{command}` failed ({status}): {}", stderr.trim())
            }
            Self::OpensslOutput { command, reason } => {
                write!(f, "could not read the output of `{command}`: {reason}")
            }
            Self::RustCrypto(msg) => write!(f, "RustCrypto: {msg}"),
            Self::Mismatch { cell, call, offset } => write!(
                f,
                "WRONG OUTPUT: {cell}: the vault's AES differs from RustCrypto's on call {call} at byte {offset}; \
                 its throughput would mean nothing"
            ),
            Self::Write { path, source } => write!(f, "could not write {}: {source}", path.display()),
            Self::Json(err) => write!(f, "could not serialize the JSON results: {err}"),
        }
    }
}

impl std::error::Error for Error {}
