//! Kernel log lines formatted without allocation: a fixed buffer that hands each full
//! line to a sink, so that no text is ever cut (a long message becomes several lines, the
//! later ones marked as continuations).
use core::fmt::{self, Write};

/// Bytes per printed line (the kernel's own limit is about 1 KiB; this keeps stack use small).
pub const LINE_BYTES: usize = 240;
/// What starts every line after the first of one message.
pub const CONTINUED: &str = "(cont.) ";

/// Formats into `LINE_BYTES`-byte lines, each passed to `sink` when full and at `finish`.
pub struct LineBuf<F: FnMut(&[u8])> {
    bytes: [u8; LINE_BYTES],
    len: usize,
    sink: F,
}

impl<F: FnMut(&[u8])> LineBuf<F> {
    /// An empty line that will be given to `sink`.
    pub const fn new(sink: F) -> Self {
        Self { bytes: [0; LINE_BYTES], len: 0, sink }
    }

    /// Hands the last (or only) line to the sink.
    pub fn finish(mut self) {
        (self.sink)(&self.bytes[..self.len]);
    }

    /// Hands the full line to the sink and starts a continuation line.
    fn next_line(&mut self) {
        (self.sink)(&self.bytes[..self.len]);
        self.bytes[..CONTINUED.len()].copy_from_slice(CONTINUED.as_bytes());
        self.len = CONTINUED.len();
    }

    fn push(&mut self, mut s: &[u8]) {
        while !s.is_empty() {
            let mut take = s.len().min(LINE_BYTES - self.len);
            // Never split a UTF-8 character between two lines.
            while take < s.len() && take > 0 && (s[take] & 0xC0) == 0x80 {
                take -= 1;
            }
            if take == 0 {
                // The line is full, or the next character does not fit its rest.
                self.next_line();
                continue;
            }
            self.bytes[self.len..self.len + take].copy_from_slice(&s[..take]);
            self.len += take;
            s = &s[take..];
        }
    }
}

impl<F: FnMut(&[u8])> Write for LineBuf<F> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// Formats `args` and hands the line(s) to `sink`.
pub fn emit(args: fmt::Arguments<'_>, sink: impl FnMut(&[u8])) {
    let mut line = LineBuf::new(sink);
    let _ = line.write_fmt(args);
    line.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(args: fmt::Arguments<'_>) -> Vec<String> {
        let mut out = Vec::new();
        emit(args, |b| out.push(String::from_utf8(b.to_vec()).unwrap()));
        out
    }

    #[test]
    fn short_messages_are_one_line() {
        assert_eq!(lines(format_args!("vault ready: {} vCPUs", 2)), ["vault ready: 2 vCPUs"]);
    }

    #[test]
    fn long_messages_lose_nothing() {
        let long: String = (0..1000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let out = lines(format_args!("{long}"));
        assert!(out.len() > 1 && out.iter().all(|l| l.len() <= LINE_BYTES));
        let joined: String =
            out.iter().enumerate().map(|(i, l)| if i == 0 { l.as_str() } else { &l[CONTINUED.len()..] }).collect();
        assert_eq!(joined, long);
    }

    #[test]
    fn characters_are_never_split() {
        let text = "—".repeat(200); // 3 bytes each
        let out = lines(format_args!("{text}"));
        let joined: String =
            out.iter().enumerate().map(|(i, l)| if i == 0 { l.as_str() } else { &l[CONTINUED.len()..] }).collect();
        assert_eq!(joined, text);
    }
}
