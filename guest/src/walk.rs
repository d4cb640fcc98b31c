//! Walking a validated scatter-list through a [`BlockCipher`]: each entry's whole blocks go
//! straight from host memory to host memory (no copy).

use sevault_abi::validate::ValidEntries;
use sevault_abi::AES_BLOCK;

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

/// Runs `cipher` over the entries (all their bytes: the request's total length), each
/// entry's whole blocks straight from host memory to host memory (no copy). A CBC-streams
/// request goes to [`BlockCipher::run_streams`] instead. (A block that straddles entries
/// never reaches the vault: the HV bounces it through a page of its own; nor does a partial
/// block: the HV does CTR's last one and XTS ciphertext stealing, see `hv/src/translate.rs`.)
///
/// # Safety
/// `window` must satisfy [`HostWindow::new`]'s contract; AES-NI must be present.
// Not inlined: the vault image budget (4096 bytes) does not survive LLVM inlining this
// into the request loop.
#[inline(never)]
pub unsafe fn process(entries: ValidEntries<'_>, window: &HostWindow, cipher: &mut BlockCipher<'_>) {
    if cipher.is_streams() {
        // SAFETY: a CBC-streams request's entries have the routine's shape (validated);
        // the ranges are the window's, whose contract is the caller's.
        unsafe { cipher.run_streams(entries.as_slice(), window.base) };
        return;
    }
    for entry in entries.as_slice() {
        // SAFETY: the entry's validated ranges, whole blocks; src and dst of one entry are
        // the same or disjoint (the kernel's in-place/out-of-place).
        unsafe { cipher.run(window.at(entry.src), window.at(entry.dst), entry.len as usize / AES_BLOCK) };
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{random_block_splits, reference_crypt, reference_crypt_from, vault_run, RefOp, VaultRun};
    use rand::{rngs::SmallRng, Rng, SeedableRng};
    use sevault_abi::validate::Direction;
    use sevault_abi::{Mode, MAX_ENTRIES};

    #[test]
    fn random_splits_match_rustcrypto_in_place_and_out_of_place() {
        let mut rng = SmallRng::seed_from_u64(0x5e7a_0175);
        for case in 0..1200 {
            let mode = [Mode::Ecb, Mode::Cbc, Mode::Ctr, Mode::Xts][case % 4];
            let aes_len = [16, 24, 32][case / 4 % 3];
            let key: Vec<u8> = (0..aes_len << (mode == Mode::Xts) as usize).map(|_| rng.gen()).collect();
            let iv: [u8; 16] = rng.gen();
            let total = 16 * rng.gen_range(1..=64);
            let plaintext: Vec<u8> = (0..total).map(|_| rng.gen()).collect();
            let in_place = rng.gen_bool(0.5);
            let direction = if rng.gen_bool(0.5) { Direction::Encrypt } else { Direction::Decrypt };
            let pieces = random_block_splits(&mut rng, total, MAX_ENTRIES);
            let op = RefOp { mode, direction };
            let result =
                vault_run(&VaultRun { op, key: &key, iv, tweak_block: 0, data: &plaintext, pieces: &pieces, in_place });
            let (expected, expected_iv) = reference_crypt(op, &key, iv, &plaintext);
            assert_eq!(result.output, expected, "case {case} {mode:?} {direction:?}: {pieces:?}");
            assert_eq!(result.iv_out, expected_iv, "case {case} {mode:?}");
            result.assert_only_destination_changed(&format!("case {case}"));
        }
    }

    #[test]
    fn chained_requests_continue_the_chain() {
        // The HV splits a kernel request into requests of at most 64 KiB: CBC and CTR continue
        // from the output IV, XTS from the tweak block index.
        let mut rng = SmallRng::seed_from_u64(38);
        for mode in [Mode::Cbc, Mode::Ctr, Mode::Xts] {
            for direction in [Direction::Encrypt, Direction::Decrypt] {
                let key: Vec<u8> = (0..32 << (mode == Mode::Xts) as usize).map(|_| rng.gen()).collect();
                let iv: [u8; 16] = rng.gen();
                let data: Vec<u8> = (0..16 * 9).map(|_| rng.gen()).collect();
                let op = RefOp { mode, direction };
                let (first, second) = data.split_at(16 * 6);
                let run = |data: &[u8], iv, tweak_block| {
                    vault_run(&VaultRun { op, key: &key, iv, tweak_block, data, pieces: &[data.len()], in_place: true })
                };
                let a = run(first, iv, 0);
                let (next_iv, tweak_block) = if mode == Mode::Xts { (iv, 6) } else { (a.iv_out, 0) };
                let b = run(second, next_iv, tweak_block);
                let (expected, expected_iv) = reference_crypt(op, &key, iv, &data);
                assert_eq!([a.output, b.output].concat(), expected, "{mode:?} {direction:?}");
                assert_eq!(b.iv_out, expected_iv, "{mode:?} {direction:?}");
            }
        }
    }

    #[test]
    fn an_xts_request_can_start_deep_in_its_data_unit() {
        let mut rng = SmallRng::seed_from_u64(1619);
        let key: Vec<u8> = (0..64).map(|_| rng.gen()).collect();
        let iv: [u8; 16] = rng.gen();
        for first_block in [1, 7, 8, 127, 128, 4095, 4096] {
            let data: Vec<u8> = (0..16 * 3).map(|_| rng.gen()).collect();
            let op = RefOp { mode: Mode::Xts, direction: Direction::Encrypt };
            let pieces = [16, data.len() - 16];
            let result = vault_run(&VaultRun {
                op,
                key: &key,
                iv,
                tweak_block: first_block,
                data: &data,
                pieces: &pieces,
                in_place: false,
            });
            let (expected, _) = reference_crypt_from(op, &key, iv, &data, first_block as usize);
            assert_eq!(result.output, expected, "first block {first_block}");
        }
    }
}
