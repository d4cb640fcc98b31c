//! Kernel log lines from Rust: formatted by [`crate::line`] (never cut: long messages go
//! out as several lines) and printed by the C glue.
use core::fmt;

use super::ffi;
use crate::line::emit;

/// Log levels of `sevault_log`.
#[derive(Clone, Copy, Debug)]
pub enum Level {
    /// KERN_ERR.
    Error = 3,
    /// KERN_WARNING.
    Warn = 4,
    /// KERN_INFO.
    Info = 6,
}

/// Logs a formatted line.
pub fn log(level: Level, args: fmt::Arguments<'_>) {
    // SAFETY: each line is valid for its length for the duration of the call.
    emit(args, |bytes| unsafe { ffi::sevault_log(level as u32, bytes.as_ptr(), bytes.len() as u32) });
}

/// Logs a formatted error line, rate-limited by the kernel.
pub fn log_ratelimited(args: fmt::Arguments<'_>) {
    // SAFETY: as in `log`.
    emit(args, |bytes| unsafe { ffi::sevault_log_ratelimited(bytes.as_ptr(), bytes.len() as u32) });
}

/// `log!(Level::Info, "…", …)`.
macro_rules! klog {
    ($level:expr, $($arg:tt)*) => { $crate::kernel::log::log($level, format_args!($($arg)*)) };
}
pub(crate) use klog;
