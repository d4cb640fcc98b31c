//! OpenSSL EVP, measured in the same run through its own benchmark, `openssl speed -evp`,
//! and the parser for the table it prints.
//!
//! `openssl speed` times `EVP_EncryptUpdate`/`EVP_DecryptUpdate` over one buffer in place,
//! chaining across calls, as this tool does for the other two implementations. It is run
//! with `-elapsed` so that it divides by wall-clock time, as [`crate::measure`] does (by
//! default it divides by user CPU time). Its `-seconds` takes whole seconds.
use std::fmt;
use std::process::Command;

use crate::cells::Cell;
use crate::error::Error;
use crate::measure::gb_per_s_from_kilobytes_per_s;

/// The command measured.
const BINARY: &str = "openssl";

/// The line that introduces the results table.
const TABLE_INTRO: &str = "The 'numbers' are in 1000s of bytes per second processed.";

/// `openssl version`, e.g. "OpenSSL 3.0.19 27 Jan 2026 (Library: OpenSSL 3.0.19 27 Jan 2026)".
/// Fails with [`Error::OpensslMissing`] if there is no `openssl` to run.
pub fn version() -> Result<String, Error> {
    let out = Command::new(BINARY).arg("version").output().map_err(Error::OpensslMissing)?;
    if !out.status.success() {
        return Err(Error::OpensslFailed {
            command: format!("{BINARY} version"),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whole seconds to give `openssl speed -seconds` for a run of `seconds`: rounded up, at
/// least 1 (it accepts nothing else).
pub fn whole_seconds(seconds: f64) -> u32 {
    seconds.ceil().clamp(1.0, f64::from(u32::MAX)) as u32
}

/// The arguments of `openssl speed` for `cell`.
pub fn speed_args(cell: Cell, seconds: u32) -> Vec<String> {
    let mut args = vec!["speed".to_owned(), "-elapsed".to_owned(), "-evp".to_owned(), cell.openssl_cipher()];
    if cell.direction == sevault_abi::validate::Direction::Decrypt {
        args.push("-decrypt".to_owned());
    }
    args.extend(["-bytes".to_owned(), cell.bytes.to_string(), "-seconds".to_owned(), seconds.to_string()]);
    args
}

/// Runs `openssl speed` once for `cell` and returns its throughput in GB/s.
pub fn speed(cell: Cell, seconds: u32) -> Result<f64, Error> {
    let args = speed_args(cell, seconds);
    let command = format!("{BINARY} {}", args.join(" "));
    let out = Command::new(BINARY).args(&args).output().map_err(Error::OpensslMissing)?;
    if !out.status.success() {
        return Err(Error::OpensslFailed {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let kilobytes_per_s = parse_speed(&stdout, &cell.openssl_cipher(), cell.bytes)
        .map_err(|reason| Error::OpensslOutput { command, reason })?;
    Ok(gb_per_s_from_kilobytes_per_s(kilobytes_per_s))
}

/// What is wrong with an `openssl speed` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// No "The 'numbers' are in 1000s of bytes per second" table with a `type` header.
    NoTable,
    /// The header has no column for this buffer size.
    NoColumn(usize),
    /// No row for this cipher.
    NoRow(String),
    /// The cell that should hold the figure is missing or is not a number.
    BadNumber(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoTable => write!(f, "no \"{TABLE_INTRO}\" table with a `type` header"),
            Self::NoColumn(bytes) => write!(f, "no column for {bytes} bytes"),
            Self::NoRow(cipher) => write!(f, "no row for {cipher}"),
            Self::BadNumber(text) => write!(f, "not a throughput: {text:?}"),
        }
    }
}

/// Reads the throughput of `cipher` at `bytes` from the stdout of `openssl speed`, in
/// thousands of bytes per second:
///
/// ```text
/// The 'numbers' are in 1000s of bytes per second processed.
/// type          65536 bytes
/// AES-256-CBC    8940552.19k
/// ```
///
/// Cipher names are matched without regard to case (3.0 prints the EVP name in capitals,
/// 1.1 in lower case). `apps/speed.c` prints a figure above 10000 as thousands with a `k`
/// suffix, and a smaller one without the suffix and in bytes per second, whatever the
/// heading says; both are read.
pub fn parse_speed(stdout: &str, cipher: &str, bytes: usize) -> Result<f64, ParseError> {
    let mut lines = stdout.lines().map(str::trim).skip_while(|line| *line != TABLE_INTRO).skip(1);
    let header = lines.next().and_then(|line| line.strip_prefix("type")).ok_or(ParseError::NoTable)?;
    let sizes = header
        .split("bytes")
        .map(str::trim)
        .filter(|size| !size.is_empty())
        .map(|size| size.parse::<usize>().map_err(|_| ParseError::NoTable))
        .collect::<Result<Vec<_>, _>>()?;
    let column = sizes.iter().position(|&size| size == bytes).ok_or(ParseError::NoColumn(bytes))?;
    let row = lines
        .find(|line| line.split_whitespace().next().is_some_and(|name| name.eq_ignore_ascii_case(cipher)))
        .ok_or_else(|| ParseError::NoRow(cipher.to_owned()))?;
    let field = row.split_whitespace().nth(1 + column).ok_or_else(|| ParseError::BadNumber(row.to_owned()))?;
    let (number, kilobytes) = match field.strip_suffix('k') {
        Some(number) => (number, true),
        None => (field, false),
    };
    let value: f64 = number.parse().map_err(|_| ParseError::BadNumber(field.to_owned()))?;
    if !value.is_finite() || value < 0.0 {
        return Err(ParseError::BadNumber(field.to_owned()));
    }
    Ok(if kilobytes { value } else { value / 1e3 })
}

#[cfg(test)]
mod tests {
    use sevault_abi::validate::Direction;
    use sevault_abi::{KeyLen, Mode};

    use super::*;

    /// Real stdout of `openssl speed -elapsed -evp aes-256-cbc -decrypt -bytes 65536
    /// -seconds 1` (OpenSSL 3.0.19, Debian, this project's machine).
    const ONE_SIZE: &str = include_str!("testdata/openssl-3.0.19-speed-aes-256-cbc-decrypt-65536.txt");

    /// Real stdout of `openssl speed -elapsed -evp aes-128-ecb -seconds 1` (all sizes).
    const ALL_SIZES: &str = include_str!("testdata/openssl-3.0.19-speed-aes-128-ecb-all-sizes.txt");

    #[test]
    fn reads_one_size_table() {
        assert_eq!(parse_speed(ONE_SIZE, "aes-256-cbc", 65536), Ok(8_940_552.19));
        let gbps = gb_per_s_from_kilobytes_per_s(parse_speed(ONE_SIZE, "aes-256-cbc", 65536).unwrap());
        assert!((gbps - 8.94055219).abs() < 1e-9);
    }

    #[test]
    fn picks_the_right_column() {
        assert_eq!(parse_speed(ALL_SIZES, "AES-128-ECB", 16), Ok(1_320_437.78));
        assert_eq!(parse_speed(ALL_SIZES, "aes-128-ecb", 8192), Ok(12_914_524.16));
        assert_eq!(parse_speed(ALL_SIZES, "aes-128-ecb", 16384), Ok(12_842_270.72));
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        assert_eq!(parse_speed(ONE_SIZE, "aes-128-cbc", 65536), Err(ParseError::NoRow("aes-128-cbc".into())));
        assert_eq!(parse_speed(ONE_SIZE, "aes-256-cbc", 4096), Err(ParseError::NoColumn(4096)));
        assert_eq!(parse_speed("Error setting cipher aes-999\n", "aes-999", 16), Err(ParseError::NoTable));
        let broken = "The 'numbers' are in 1000s of bytes per second processed.\n\
                      type          4096 bytes\nAES-128-ECB    fast\n";
        assert_eq!(parse_speed(broken, "aes-128-ecb", 4096), Err(ParseError::BadNumber("fast".into())));
        let short = "The 'numbers' are in 1000s of bytes per second processed.\ntype   4096 bytes\nAES-128-ECB\n";
        assert!(matches!(parse_speed(short, "aes-128-ecb", 4096), Err(ParseError::BadNumber(_))));
    }

    #[test]
    fn small_figures_are_bytes() {
        // speed.c prints results <= 10000 bytes/s without the `k`, in bytes/s.
        let slow =
            "The 'numbers' are in 1000s of bytes per second processed.\ntype   16 bytes\naes-128-ecb   9000.00 \n";
        assert_eq!(parse_speed(slow, "aes-128-ecb", 16), Ok(9.0));
    }

    #[test]
    fn command_line() {
        let cell = Cell { key: KeyLen::Aes256, mode: Mode::Cbc, direction: Direction::Decrypt, bytes: 65536 };
        assert_eq!(speed_args(cell, 2).join(" "), "speed -elapsed -evp aes-256-cbc -decrypt -bytes 65536 -seconds 2");
        let cell = Cell { direction: Direction::Encrypt, mode: Mode::Ecb, ..cell };
        assert_eq!(speed_args(cell, 1).join(" "), "speed -elapsed -evp aes-256-ecb -bytes 65536 -seconds 1");
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(whole_seconds(0.1), 1);
        assert_eq!(whole_seconds(1.0), 1);
        assert_eq!(whole_seconds(1.2), 2);
    }
}
