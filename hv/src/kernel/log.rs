//! Kernel log lines from Rust, formatted into a stack buffer.
use core::fmt::{self, Write};

use super::ffi;

/// A fixed buffer that `core::fmt` writes into (long lines are cut).
pub struct LineBuf {
    bytes: [u8; 160],
    len: usize,
}

impl LineBuf {
    /// An empty line.
    pub const fn new() -> Self {
        Self { bytes: [0; 160], len: 0 }
    }

    /// The text so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.bytes.len() - self.len;
        let take = s.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

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
    let mut line = LineBuf::new();
    let _ = line.write_fmt(args);
    let bytes = line.as_bytes();
    // SAFETY: `bytes` is valid for `len` bytes for the duration of the call.
    unsafe { ffi::sevault_log(level as u32, bytes.as_ptr(), bytes.len() as u32) };
}

/// Logs a formatted error line, rate-limited by the kernel.
pub fn log_ratelimited(args: fmt::Arguments<'_>) {
    let mut line = LineBuf::new();
    let _ = line.write_fmt(args);
    let bytes = line.as_bytes();
    // SAFETY: as in `log`.
    unsafe { ffi::sevault_log_ratelimited(bytes.as_ptr(), bytes.len() as u32) };
}

/// `log!(Level::Info, "…", …)`.
macro_rules! klog {
    ($level:expr, $($arg:tt)*) => { $crate::kernel::log::log($level, format_args!($($arg)*)) };
}
pub(crate) use klog;
