//! Timing: one in-place operation called over and over for a fixed wall-clock time, and the
//! arithmetic from bytes and seconds to GB/s (10^9 bytes per second).
use std::time::{Duration, Instant};

/// Bytes processed between two reads of the clock: about 1 MiB, so a run overshoots its
/// deadline by well under a millisecond and the clock's cost is lost in the noise.
const BATCH_BYTES: usize = 1 << 20;

/// Throughput in GB/s (10^9 bytes/s) of `bytes` processed in `elapsed`; 0 for no time.
pub fn gb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        bytes as f64 / seconds / 1e9
    } else {
        0.0
    }
}

/// OpenSSL's table unit (1000s of bytes per second) in GB/s.
pub fn gb_per_s_from_kilobytes_per_s(kilobytes_per_s: f64) -> f64 {
    kilobytes_per_s * 1e3 / 1e9
}

/// Calls `op`, which processes `bytes_per_call` bytes, until at least `duration` has passed
/// (checking the clock every [`BATCH_BYTES`] or so) and returns the throughput in GB/s.
pub fn run_for(duration: Duration, bytes_per_call: usize, mut op: impl FnMut()) -> f64 {
    let batch = (BATCH_BYTES / bytes_per_call.max(1)).max(1);
    let mut calls: u64 = 0;
    let start = Instant::now();
    loop {
        for _ in 0..batch {
            op();
        }
        calls += batch as u64;
        let elapsed = start.elapsed();
        if elapsed >= duration {
            return gb_per_s(calls * bytes_per_call as u64, elapsed);
        }
    }
}

/// The statistic reported: the best (highest) throughput of the runs, the one least
/// disturbed by the rest of the machine; NaN for no runs.
pub fn best(runs: &[f64]) -> f64 {
    runs.iter().copied().fold(f64::NAN, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gb_per_s_is_decimal() {
        assert_eq!(gb_per_s(1_000_000_000, Duration::from_secs(1)), 1.0);
        assert_eq!(gb_per_s(3_000_000_000, Duration::from_millis(500)), 6.0);
        assert_eq!(gb_per_s(4096, Duration::from_micros(1)), 4.096);
        assert_eq!(gb_per_s(4096, Duration::ZERO), 0.0);
    }

    #[test]
    fn openssl_unit() {
        // "13292179.46k" in the table = 13 292 179 460 bytes/s.
        let gbps = gb_per_s_from_kilobytes_per_s(13_292_179.46);
        assert!((gbps - 13.29217946).abs() < 1e-9, "{gbps}");
    }

    #[test]
    fn run_for_counts_every_call() {
        let mut calls = 0u64;
        let gbps = run_for(Duration::from_millis(20), 1 << 19, || calls += 1);
        // Whole batches of two calls, at least one batch.
        assert!(calls >= 2 && calls.is_multiple_of(2), "{calls}");
        assert!(gbps > 0.0);
    }

    #[test]
    fn best_is_max() {
        assert_eq!(best(&[1.5, 3.0, 2.0]), 3.0);
        assert!(best(&[]).is_nan());
    }
}
