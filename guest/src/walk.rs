//! Walking a validated scatter-list through a [`BlockCipher`].
//!
//! Each entry's whole blocks go straight from host memory to host memory (no copy). A block
//! that straddles entries — the kernel's self-tests split buffers unevenly — is gathered into
//! a private 16-byte buffer, processed there and scattered back; it may span up to 16 entries
//! of one byte each.
use core::ptr;

use sevault_abi::validate::ValidEntries;
use sevault_abi::{SgEntry, AES_BLOCK};
use zeroize::Zeroize;

use crate::aes::BlockCipher;

/// The vault's view of host memory: host-physical `p` is at `base + p`.
#[derive(Clone, Copy, Debug)]
pub struct HostWindow {
    base: *mut u8,
}

impl HostWindow {
    /// A window whose host-physical address 0 is at `base`.
    ///
    /// # Safety
    /// For every range a validated request can name (`0 .. HOST_WINDOW_SIZE`, see
    /// `sevault_abi::memory_map`), `base + range` must be mapped readable and writable while
    /// the window is used, and must not overlap memory the caller's Rust code references.
    pub const unsafe fn new(base: *mut u8) -> Self {
        Self { base }
    }

    fn at(&self, host_phys: u64) -> *mut u8 {
        self.base.wrapping_add(host_phys as usize)
    }
}

/// Copies the 16 bytes of a straddling block between `block` and the entries, starting at
/// `offset` in `entries[first]` and continuing into the following entries.
///
/// # Safety
/// `entries` must be validated ranges of `window` holding at least 16 bytes from the start.
unsafe fn transfer(
    window: &HostWindow,
    entries: &[SgEntry],
    first: usize,
    offset: usize,
    block: &mut [u8; AES_BLOCK],
    to_host: bool,
) {
    let (mut index, mut at) = (first, offset);
    for byte in block.iter_mut() {
        // Skip to the next entry holding a byte; validated entries hold the whole block.
        while let Some(entry) = entries.get(index) {
            if at < entry.len as usize {
                break;
            }
            index += 1;
            at = 0;
        }
        let Some(entry) = entries.get(index) else {
            return;
        };
        // SAFETY: `at < entry.len`: inside the entry's validated ranges. Volatile: host
        // memory, each byte read or written once.
        unsafe {
            if to_host {
                ptr::write_volatile(window.at(entry.dst).add(at), *byte);
            } else {
                *byte = ptr::read_volatile(window.at(entry.src).add(at));
            }
        }
        at += 1;
    }
}

/// Runs `cipher` over every entry. Returns the bytes processed, or `None` if the entries do
/// not add up to whole blocks (which validation rules out).
///
/// A straddling block is read from all its pieces into a private buffer, processed, then
/// written back — all reads before any write, so in-place works — when the entry that
/// completes it is reached, before that entry's own whole blocks.
///
/// # Safety
/// `window` must satisfy [`HostWindow::new`]'s contract; AES-NI must be present.
// Not inlined: the vault image budget (4096 bytes) does not survive LLVM inlining this
// into the request loop.
#[inline(never)]
pub unsafe fn process(entries: ValidEntries<'_>, window: &HostWindow, cipher: &mut BlockCipher<'_>) -> Option<u64> {
    let entries = entries.as_slice();
    let mut block = [0u8; AES_BLOCK];
    // Where the pending straddling block starts (entry, offset) and how many bytes it has.
    let mut start = (0, 0);
    let mut pending = 0;
    let mut done: u64 = 0;
    for (index, entry) in entries.iter().enumerate() {
        let len = entry.len as usize;
        let mut pos = 0;
        if pending > 0 {
            pos = (AES_BLOCK - pending).min(len);
            pending += pos;
            if pending == AES_BLOCK {
                // SAFETY: the block's 16 bytes lie in validated entries from `start` on.
                unsafe { transfer(window, entries, start.0, start.1, &mut block, false) };
                cipher.run_in_place(&mut block);
                // SAFETY: as above.
                unsafe { transfer(window, entries, start.0, start.1, &mut block, true) };
                pending = 0;
            }
        }
        let blocks = (len - pos) / AES_BLOCK;
        if blocks > 0 {
            // SAFETY: `pos + 16 * blocks <= len`: inside the entry's validated ranges; src and
            // dst of one entry are the same or disjoint (the kernel's in-place/out-of-place).
            unsafe { cipher.run(window.at(entry.src).add(pos), window.at(entry.dst).add(pos), blocks) };
            pos += blocks * AES_BLOCK;
        }
        if pos < len {
            start = (index, pos);
            pending = len - pos;
        }
        done += len as u64;
    }
    block.zeroize();
    (pending == 0).then_some(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aes::{expand_key, KeySchedule};
    use crate::testutil::{random_splits, reference_crypt, RefOp};
    use rand::{rngs::SmallRng, Rng, SeedableRng};
    use sevault_abi::validate::{validate, Direction, KeySlotIndex, KeySlots, ValidRequest};
    use sevault_abi::{comm::Header, KeyLen, Mode, Op, Request, SgEntry, ABI_MAGIC, ABI_VERSION, MAX_ENTRIES};

    struct Holds(KeyLen);
    impl KeySlots for Holds {
        fn key_len(&self, _: KeySlotIndex) -> Option<KeyLen> {
            Some(self.0)
        }
    }

    /// Builds a validated request over `memory` (offsets = host-physical addresses), runs it
    /// and returns the output IV.
    fn run(
        memory: &mut [u8],
        entries: &[SgEntry],
        key: &[u8],
        direction: Direction,
        mode: Mode,
        iv: [u8; 16],
    ) -> [u8; 16] {
        let len = KeyLen::try_from(key.len() as u32).unwrap();
        let mut request = Request::zeroed();
        request.op = if direction == Direction::Encrypt { Op::Encrypt } else { Op::Decrypt } as u32;
        request.mode = mode as u32;
        request.key_len = key.len() as u32;
        request.iv = iv;
        request.entry_count = entries.len() as u32;
        request.entries[..entries.len()].copy_from_slice(entries);
        request.total_len = entries.iter().map(|e| u64::from(e.len)).sum();
        let header = Header { magic: ABI_MAGIC, version: ABI_VERSION, sequence: 1 };
        let Ok(ValidRequest::Crypt(valid)) = validate(&header, &request, &Holds(len)) else {
            panic!("invalid test request {request:?}");
        };
        let mut schedule = KeySchedule::zeroed();
        expand_key(key, len, &mut schedule);
        let mut cipher = BlockCipher::new(&schedule, len, direction, mode, iv);
        // SAFETY: every entry lies inside `memory` (the tests build them so).
        let window = unsafe { HostWindow::new(memory.as_mut_ptr()) };
        // SAFETY: as above; AES-NI checked by `testutil`.
        let done = unsafe { process(valid.entries, &window, &mut cipher) };
        assert_eq!(done, Some(request.total_len));
        cipher.iv_out()
    }

    #[test]
    fn random_splits_match_rustcrypto_in_place_and_out_of_place() {
        crate::testutil::require_aes_ni();
        let mut rng = SmallRng::seed_from_u64(0x5e7a_0175);
        for case in 0..600 {
            let key_len = [16, 24, 32][case % 3];
            let key: Vec<u8> = (0..key_len).map(|_| rng.gen()).collect();
            let iv: [u8; 16] = rng.gen();
            let blocks = rng.gen_range(1..=64);
            let total = blocks * 16;
            let plaintext: Vec<u8> = (0..total).map(|_| rng.gen()).collect();
            let in_place = rng.gen_bool(0.5);
            let mode = if rng.gen_bool(0.5) { Mode::Cbc } else { Mode::Ecb };
            let direction = if rng.gen_bool(0.5) { Direction::Encrypt } else { Direction::Decrypt };
            let pieces = random_splits(&mut rng, total, MAX_ENTRIES);
            // Source at 0x40, destination after it (or the same), with a gap at the end.
            let src_base = 0x40;
            let dst_base = if in_place { src_base } else { src_base + total + 0x30 };
            let mut memory = vec![0xEEu8; dst_base + total + 0x40];
            memory[src_base..src_base + total].copy_from_slice(&plaintext);
            let mut offset = 0;
            let entries: Vec<SgEntry> = pieces
                .iter()
                .map(|&len| {
                    let e = SgEntry {
                        src: (src_base + offset) as u64,
                        dst: (dst_base + offset) as u64,
                        len: len as u32,
                        reserved_0x14: 0,
                    };
                    offset += len;
                    e
                })
                .collect();
            let before = memory.clone();
            let iv_out = run(&mut memory, &entries, &key, direction, mode, iv);
            let op = RefOp { mode, direction };
            let (expected, expected_iv) = reference_crypt(op, &key, iv, &plaintext);
            assert_eq!(&memory[dst_base..dst_base + total], &expected[..], "case {case}: {pieces:?}");
            if mode == Mode::Cbc {
                assert_eq!(iv_out, expected_iv, "case {case}");
            } else {
                assert_eq!(iv_out, [0; 16]);
            }
            // Nothing outside the destination changed (and the source, when apart, is intact).
            let dst_range = dst_base..dst_base + total;
            for (i, (a, b)) in memory.iter().zip(&before).enumerate() {
                if !dst_range.contains(&i) {
                    assert_eq!(a, b, "case {case}: byte {i} outside the destination changed");
                }
            }
        }
    }

    #[test]
    fn a_block_spread_over_sixteen_one_byte_entries() {
        crate::testutil::require_aes_ni();
        let key = [9u8; 16];
        let plaintext: Vec<u8> = (0..48u8).collect();
        let mut memory = vec![0u8; 256];
        memory[..48].copy_from_slice(&plaintext);
        let mut entries = vec![SgEntry { src: 0, dst: 100, len: 16, reserved_0x14: 0 }];
        for i in 16..32u64 {
            entries.push(SgEntry { src: i, dst: 100 + i, len: 1, reserved_0x14: 0 });
        }
        entries.push(SgEntry { src: 32, dst: 132, len: 16, reserved_0x14: 0 });
        let iv = [3; 16];
        let out = run(&mut memory, &entries, &key, Direction::Encrypt, Mode::Cbc, iv);
        let op = RefOp { mode: Mode::Cbc, direction: Direction::Encrypt };
        let (expected, expected_iv) = reference_crypt(op, &key, iv, &plaintext);
        assert_eq!(&memory[100..148], &expected[..]);
        assert_eq!(out, expected_iv);
    }

    #[test]
    fn chained_requests_continue_the_cbc_chain() {
        crate::testutil::require_aes_ni();
        let key = [5u8; 32];
        let plaintext: Vec<u8> = (0..160u32).map(|i| (i * 7) as u8).collect();
        let iv = [1; 16];
        let mut memory = plaintext.clone();
        let first = [SgEntry { src: 0, dst: 0, len: 96, reserved_0x14: 0 }];
        let mid_iv = run(&mut memory, &first, &key, Direction::Encrypt, Mode::Cbc, iv);
        let second = [SgEntry { src: 96, dst: 96, len: 64, reserved_0x14: 0 }];
        let last_iv = run(&mut memory, &second, &key, Direction::Encrypt, Mode::Cbc, mid_iv);
        let op = RefOp { mode: Mode::Cbc, direction: Direction::Encrypt };
        let (expected, expected_iv) = reference_crypt(op, &key, iv, &plaintext);
        assert_eq!(memory, expected);
        assert_eq!(last_iv, expected_iv);
    }
}
