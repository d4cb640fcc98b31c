//! NMIs from outside the VM: the QEMU monitor's `nmi` command, sent at a fixed interval
//! while a script asks for it (`SEVAULT-NMI-STORM-BEGIN <µs>` … `SEVAULT-NMI-STORM-END` on
//! the console). TCG has no PMU, so without this no NMI ever reaches the vault; on real AMD
//! hosts the perf NMI watchdog alone sends one to every CPU every few seconds.
//!
//! The connection stays open for the whole storm and a reader thread drains what the
//! monitor echoes, or it stops answering.
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

/// Fastest interval accepted (the monitor answers each command; faster only queues).
pub const MIN_INTERVAL: Duration = Duration::from_micros(500);

/// A running storm.
pub struct NmiStorm {
    connection: UnixStream,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    sender: Option<JoinHandle<()>>,
}

/// `SEVAULT-NMI-STORM-BEGIN 3000` → 3 ms (at least [`MIN_INTERVAL`]); None if malformed.
pub fn parse_begin(rest: &str) -> Option<Duration> {
    let micros: u64 = rest.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_micros(micros).max(MIN_INTERVAL))
}

impl NmiStorm {
    /// Connects to the monitor at `socket` and starts sending `nmi` every `interval`.
    pub fn start(socket: &Path, interval: Duration) -> Result<Self> {
        let stream = UnixStream::connect(socket)
            .with_context(|| format!("connecting to the QEMU monitor at {}", socket.display()))?;
        let mut reader = stream.try_clone().context("cloning the monitor connection")?;
        let connection = stream.try_clone().context("cloning the monitor connection")?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
        });
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let sender = {
            let (stop, sent) = (stop.clone(), sent.clone());
            let mut stream = stream;
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if stream.write_all(b"nmi\n").is_err() {
                        break;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(interval);
                }
            })
        };
        Ok(Self { connection, stop, sent, sender: Some(sender) })
    }

    /// Stops the storm; returns how many NMIs were sent.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sender) = self.sender.take() {
            let _ = sender.join();
        }
        // Ends the reader thread too.
        let _ = self.connection.shutdown(std::net::Shutdown::Both);
        self.sent.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn begin_lines() {
        assert_eq!(parse_begin(" 3000"), Some(Duration::from_millis(3)));
        assert_eq!(parse_begin("10"), Some(MIN_INTERVAL));
        assert_eq!(parse_begin(""), None);
        assert_eq!(parse_begin("fast"), None);
    }

    /// Against a stand-in monitor: the storm writes `nmi` lines, and stops when told.
    #[test]
    fn sends_nmi_lines_until_stopped() {
        let dir = std::env::temp_dir().join(format!("xtask-nmi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("monitor.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut text = String::new();
            conn.read_to_string(&mut text).unwrap();
            text
        });
        let storm = NmiStorm::start(&socket, Duration::from_millis(1)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let sent = storm.stop();
        let text = server.join().unwrap();
        assert!(sent >= 5, "sent {sent}");
        assert_eq!(text.lines().count() as u64, sent);
        assert!(text.lines().all(|l| l == "nmi"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
