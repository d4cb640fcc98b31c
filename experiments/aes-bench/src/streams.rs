//! Multi-stream CBC encryption: the vault's `Mode::CbcStreams` routine with 1, 2, 4 and 8
//! streams of one 4 KiB page each, against the vault's own single-stream CBC encryption of
//! one page, in the same run. CBC encryption is serial within a stream (each block needs the
//! one before), so one stream keeps the AES unit busy one round per AES latency; the streams
//! routine runs independent requests' blocks through the rounds together. The issue's
//! target: at least 3× the single-stream throughput with 4 streams.
use std::hint::black_box;
use std::time::Duration;

use aes::cipher::inout::InOutBuf;
use aes::cipher::{BlockEncryptMut, KeyIvInit};
use serde::Serialize;
use sevault_abi::validate::Direction;
use sevault_abi::{KeyLen, Mode, SgEntry, AES_BLOCK};
use sevault_guest::aes::{expand_key, BlockCipher, KeySchedule};

use crate::cells::KEYS;
use crate::error::Error;
use crate::impls::AlignedBuf;
use crate::measure;
use crate::report::{Method, Series};

/// Bytes per stream: one page, a dm-crypt sector of 4 KiB.
pub const STREAM_BYTES: usize = 4096;
/// Stream counts measured.
pub const STREAM_COUNTS: [usize; 4] = [1, 2, 4, 8];
/// The target: this many times the single-stream throughput ...
pub const TARGET_SPEEDUP: f64 = 3.0;
/// ... with this many streams.
pub const TARGET_STREAMS: usize = 4;

/// One stream count's results.
#[derive(Clone, Debug, Serialize)]
pub struct StreamsRow {
    /// 128 or 256.
    pub key_bits: usize,
    /// Streams encrypted together.
    pub streams: usize,
    /// Bytes per stream.
    pub bytes_per_stream: usize,
    /// The vault's single-stream CBC encryption of one stream (GB/s), in the same run.
    pub single_stream: Series,
    /// The streams routine, all streams' bytes (GB/s).
    pub all_streams: Series,
    /// Best `all_streams` over best `single_stream`.
    pub speedup: f64,
    /// The target for that ratio, for [`TARGET_STREAMS`] streams.
    pub target: Option<f64>,
    /// `speedup >= target` (true where there is no target).
    pub target_met: bool,
}

/// The streams' buffers, IVs and entries, as a `Mode::CbcStreams` request names them (host
/// addresses, window base 0).
struct Streams {
    buffers: Vec<AlignedBuf>,
    chain: AlignedBuf,
    entries: Vec<SgEntry>,
}

impl Streams {
    /// `count` streams of fixed pseudo-random data with fixed IVs.
    fn new(count: usize) -> Self {
        let bytes = |seed: usize, n: usize| (0..n).map(|i| ((i * 131 + seed * 71) % 251) as u8).collect::<Vec<u8>>();
        let mut buffers: Vec<AlignedBuf> = (0..count).map(|k| AlignedBuf::new(&bytes(k, STREAM_BYTES))).collect();
        let mut chain = AlignedBuf::new(&bytes(99, AES_BLOCK * count));
        let mut entries: Vec<SgEntry> = buffers
            .iter_mut()
            .map(|b| {
                let at = b.as_mut_slice().as_mut_ptr() as u64;
                SgEntry { src: at, dst: at, len: STREAM_BYTES as u32, reserved_0x14: 0 }
            })
            .collect();
        let at = chain.as_mut_slice().as_mut_ptr() as u64;
        entries.push(SgEntry { src: at, dst: at, len: (AES_BLOCK * count) as u32, reserved_0x14: 0 });
        Self { buffers, chain, entries }
    }

    /// Encrypts every stream once, in place, continuing from the IVs the last call left.
    fn encrypt(&mut self, cipher: &BlockCipher<'_>) {
        // SAFETY: the entries name the live buffers (moving an `AlignedBuf` does not move its
        // storage), in place, with the shape the validator checks; AES-NI was checked in
        // `main`.
        unsafe { cipher.run_streams(black_box(&self.entries), core::ptr::null_mut()) };
    }
}

/// The streams routine against RustCrypto, stream by stream, over two calls (the second
/// continuing from the output IVs).
fn check(key: &[u8], len: KeyLen, schedule: &KeySchedule, count: usize) -> Result<(), Error> {
    let cipher = BlockCipher::new(schedule, len, Direction::Encrypt, Mode::CbcStreams, [0; 16], 0);
    let mut streams = Streams::new(count);
    let mut expected: Vec<Vec<u8>> = streams.buffers.iter().map(|b| b.as_slice().to_vec()).collect();
    let mut ivs: Vec<[u8; 16]> = streams.chain.as_slice().chunks(16).map(|c| c.try_into().unwrap_or([0; 16])).collect();
    for call in 0..2 {
        streams.encrypt(&cipher);
        for (k, (data, iv)) in expected.iter_mut().zip(&mut ivs).enumerate() {
            reference_cbc_encrypt(key, iv, data)?;
            let label = || format!("AES-{} CBC streams ({count}), stream {k}", len.bytes() * 8);
            if let Some(offset) = streams.buffers[k].as_slice().iter().zip(data.iter()).position(|(a, b)| a != b) {
                return Err(Error::Mismatch { cell: label(), call, offset });
            }
            if streams.chain.as_slice()[16 * k..16 * k + 16] != iv[..] {
                return Err(Error::Mismatch { cell: label() + " output IV", call, offset: 16 * k });
            }
        }
    }
    Ok(())
}

/// RustCrypto's CBC encryption of `data` in place from `iv`, which becomes the output IV.
fn reference_cbc_encrypt(key: &[u8], iv: &mut [u8; 16], data: &mut [u8]) -> Result<(), Error> {
    let invalid = |err| Error::RustCrypto(format!("CBC streams: {err}"));
    macro_rules! run {
        ($aes:ty) => {
            cbc::Encryptor::<$aes>::new_from_slices(key, iv)
                .map_err(invalid)?
                .encrypt_blocks_inout_mut(InOutBuf::from(&mut *data).into_chunks().0)
        };
    }
    match key.len() {
        16 => run!(aes::Aes128),
        24 => run!(aes::Aes192),
        _ => run!(aes::Aes256),
    }
    iv.copy_from_slice(&data[data.len() - 16..]);
    Ok(())
}

/// Checks, then times the single stream and every stream count in interleaved runs.
pub fn measure(method: &Method) -> Result<Vec<StreamsRow>, Error> {
    let run = Duration::from_secs_f64(method.seconds_per_run);
    let warmup = Duration::from_secs_f64(method.warmup_seconds);
    let mut rows = Vec::new();
    for len in KEYS {
        let key: Vec<u8> = (0..len.bytes() as u8).map(|i| i.wrapping_mul(29) ^ 0x5a).collect();
        let mut schedule = KeySchedule::zeroed();
        expand_key(&key, len, false, &mut schedule);
        let mut single = BlockCipher::new(&schedule, len, Direction::Encrypt, Mode::Cbc, [7; 16], 0);
        let mut single_buf = AlignedBuf::new(&[0x3c; STREAM_BYTES]);
        let mut single_op = || single.run_in_place(black_box(single_buf.as_mut_slice()));
        let streams_cipher = BlockCipher::new(&schedule, len, Direction::Encrypt, Mode::CbcStreams, [0; 16], 0);
        for count in STREAM_COUNTS {
            check(&key, len, &schedule, count)?;
            let mut streams = Streams::new(count);
            let mut streams_op = || streams.encrypt(&streams_cipher);
            measure::run_for(warmup, STREAM_BYTES, &mut single_op);
            measure::run_for(warmup, count * STREAM_BYTES, &mut streams_op);
            let (mut single_runs, mut streams_runs) = (Vec::new(), Vec::new());
            for _ in 0..method.runs {
                single_runs.push(measure::run_for(run, STREAM_BYTES, &mut single_op));
                streams_runs.push(measure::run_for(run, count * STREAM_BYTES, &mut streams_op));
            }
            rows.push(StreamsRow::new(len, count, single_runs, streams_runs));
        }
    }
    Ok(rows)
}

impl StreamsRow {
    /// The row for `count` streams under a `len` key from the runs (GB/s).
    pub fn new(len: KeyLen, count: usize, single: Vec<f64>, all: Vec<f64>) -> Self {
        let (single_stream, all_streams) = (Series::new(single), Series::new(all));
        let speedup = all_streams.best_gb_per_s / single_stream.best_gb_per_s;
        let target = (count == TARGET_STREAMS).then_some(TARGET_SPEEDUP);
        Self {
            key_bits: len.bytes() * 8,
            streams: count,
            bytes_per_stream: STREAM_BYTES,
            single_stream,
            all_streams,
            speedup,
            target,
            target_met: target.is_none_or(|t| speedup >= t),
        }
    }

    /// The row as table cells: key, streams, single GB/s, all GB/s, speedup, target, met.
    pub fn columns(&self) -> [String; 7] {
        [
            format!("AES-{}", self.key_bits),
            self.streams.to_string(),
            format!("{:.2}", self.single_stream.best_gb_per_s),
            format!("{:.2}", self.all_streams.best_gb_per_s),
            format!("{:.2}×", self.speedup),
            self.target.map_or("—".to_owned(), |t| format!("≥ {t:.0}×")),
            match self.target {
                None => "—",
                Some(_) if self.target_met => "yes",
                Some(_) => "NO",
            }
            .to_owned(),
        ]
    }
}

/// Column headings of [`StreamsRow::columns`].
pub const HEADINGS: [&str; 7] =
    ["Key", "Streams of 4 KiB", "1 stream GB/s", "all streams GB/s", "speedup", "target", "met"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speedup_and_target() {
        let row = StreamsRow::new(KeyLen::Aes128, 4, vec![1.0, 2.0], vec![5.0, 6.5]);
        assert_eq!(row.speedup, 3.25);
        assert_eq!((row.target, row.target_met), (Some(3.0), true));
        assert_eq!(row.columns()[4], "3.25×");
        let row = StreamsRow::new(KeyLen::Aes256, 4, vec![2.0], vec![5.0]);
        assert!(!row.target_met);
        let row = StreamsRow::new(KeyLen::Aes256, 8, vec![2.0], vec![1.0]);
        assert!(row.target.is_none() && row.target_met);
    }

    #[test]
    fn the_routine_agrees_with_rustcrypto() {
        assert!(std::arch::is_x86_feature_detected!("aes"), "these tests need a host CPU with AES-NI");
        for len in KEYS {
            let key = vec![0x42; len.bytes()];
            let mut schedule = KeySchedule::zeroed();
            expand_key(&key, len, false, &mut schedule);
            for count in STREAM_COUNTS {
                check(&key, len, &schedule, count).unwrap();
            }
        }
    }
}
