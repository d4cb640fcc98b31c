//! Helpers shared by the host tests: the RustCrypto reference and random scatter-lists.

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit, KeyIvInit};
use rand::Rng;
use sevault_abi::validate::Direction;
use sevault_abi::Mode;

/// Fails loudly if the host cannot run the vault's AES-NI code (these tests must not
/// pass by skipping).
pub fn require_aes_ni() {
    assert!(std::arch::is_x86_feature_detected!("aes"), "these tests need a host CPU with AES-NI");
}

/// Mode and direction of a reference computation.
#[derive(Clone, Copy, Debug)]
pub struct RefOp {
    /// ECB, CBC, CTR or XTS.
    pub mode: Mode,
    /// Encrypt or decrypt.
    pub direction: Direction,
}

/// RustCrypto's answer for `data` and the output IV the kernel expects: CBC the last
/// ciphertext block, CTR the counter after the last (partial) block, ECB and XTS zeros (the
/// vault's XTS hands no tweak back). `key` is an XTS pair (data key, tweak key) for XTS;
/// `data` is whole blocks for ECB/CBC, at least 16 bytes for XTS.
pub fn reference_crypt(op: RefOp, key: &[u8], iv: [u8; 16], data: &[u8]) -> (Vec<u8>, [u8; 16]) {
    reference_crypt_from(op, key, iv, data, 0)
}

/// [`reference_crypt`] for XTS data starting `first_block` blocks into its data unit: the
/// reference runs the whole unit from block 0 and returns the part asked for.
pub fn reference_crypt_from(
    op: RefOp,
    key: &[u8],
    iv: [u8; 16],
    data: &[u8],
    first_block: usize,
) -> (Vec<u8>, [u8; 16]) {
    use aes::cipher::block_padding::NoPadding;
    use aes::cipher::StreamCipher;
    macro_rules! with_cipher {
        ($aes:ty) => {
            match (op.mode, op.direction) {
                (Mode::Ecb, Direction::Encrypt) => {
                    ecb::Encryptor::<$aes>::new_from_slice(key).unwrap().encrypt_padded_vec_mut::<NoPadding>(data)
                }
                (Mode::Ecb, Direction::Decrypt) => ecb::Decryptor::<$aes>::new_from_slice(key)
                    .unwrap()
                    .decrypt_padded_vec_mut::<NoPadding>(data)
                    .unwrap(),
                (Mode::Cbc, Direction::Encrypt) => {
                    cbc::Encryptor::<$aes>::new_from_slices(key, &iv).unwrap().encrypt_padded_vec_mut::<NoPadding>(data)
                }
                (Mode::Cbc, Direction::Decrypt) => cbc::Decryptor::<$aes>::new_from_slices(key, &iv)
                    .unwrap()
                    .decrypt_padded_vec_mut::<NoPadding>(data)
                    .unwrap(),
                (Mode::Ctr, _) => {
                    let mut out = data.to_vec();
                    ctr::Ctr128BE::<$aes>::new_from_slices(key, &iv).unwrap().apply_keystream(&mut out);
                    out
                }
                (Mode::CbcStreams, _) => unreachable!("reference each stream as Mode::Cbc"),
                (Mode::Xts, direction) => {
                    let half = key.len() / 2;
                    let xts = xts_mode::Xts128::new(
                        <$aes>::new_from_slice(&key[..half]).unwrap(),
                        <$aes>::new_from_slice(&key[half..]).unwrap(),
                    );
                    // The unit from block 0: `first_block` blocks of zeros, then the data.
                    let mut unit = vec![0u8; 16 * first_block];
                    unit.extend_from_slice(data);
                    if direction == Direction::Encrypt {
                        xts.encrypt_sector(&mut unit, iv);
                    } else {
                        xts.decrypt_sector(&mut unit, iv);
                    }
                    unit.split_off(16 * first_block)
                }
            }
        };
    }
    let aes_key_len = if op.mode == Mode::Xts { key.len() / 2 } else { key.len() };
    let out = match aes_key_len {
        16 => with_cipher!(aes::Aes128),
        24 => with_cipher!(aes::Aes192),
        32 => with_cipher!(aes::Aes256),
        n => panic!("bad key length {n}"),
    };
    let iv_out = match op.mode {
        Mode::Cbc => {
            let ciphertext = if op.direction == Direction::Encrypt { &out } else { data };
            ciphertext[ciphertext.len() - 16..].try_into().unwrap()
        }
        // NIST SP 800-38A §B.1: the counter advances by one per block, partial ones included.
        Mode::Ctr => u128::from_be_bytes(iv).wrapping_add(data.len().div_ceil(16) as u128).to_be_bytes(),
        Mode::Ecb | Mode::Xts | Mode::CbcStreams => [0; 16],
    };
    (out, iv_out)
}

/// Splits `total` bytes (whole blocks) into at most `max_pieces` pieces of whole blocks, as
/// the HV hands them to the vault (see `ValidEntries`), with a bias towards single blocks and
/// single large pieces.
pub fn random_block_splits(rng: &mut impl Rng, total: usize, max_pieces: usize) -> Vec<usize> {
    let mut pieces = Vec::new();
    let mut left = total;
    while left > 16 && pieces.len() + 1 < max_pieces && rng.gen_bool(0.7) {
        let room = left / 16;
        if room == 0 {
            break;
        }
        let blocks = match rng.gen_range(0..3) {
            0 => 1,
            1 => rng.gen_range(1..=8),
            _ => rng.gen_range(1..=room),
        }
        .min(room);
        if blocks * 16 == left {
            break;
        }
        pieces.push(16 * blocks);
        left -= 16 * blocks;
    }
    pieces.push(left);
    pieces
}

/// The vault's own path for one request: `data` at host-physical 0x40 in a private "host
/// memory", split into `pieces` (in place, or to a separate destination), validated by the
/// ABI's validator, the key expanded as a key slot does, then `walk::process`. Returns the
/// destination bytes, the output IV, and the whole memory before and after (to check that
/// nothing outside the destination changed).
pub fn vault_run(req: &VaultRun<'_>) -> VaultRunResult {
    use crate::aes::{expand_key, BlockCipher, KeySchedule};
    use crate::walk::{process, HostWindow};
    use sevault_abi::comm::{Batch, Header};
    use sevault_abi::validate::{validate, ValidRequest};
    use sevault_abi::{KeyLen, Op, SgEntry};
    require_aes_ni();
    let total = req.data.len();
    let src_base = 0x40;
    let dst_base = if req.in_place { src_base } else { src_base + total + 0x30 };
    let mut memory = vec![0xEEu8; dst_base + total + 0x40];
    memory[src_base..src_base + total].copy_from_slice(req.data);
    let xts = req.op.mode == Mode::Xts;
    let aes_len = if xts { req.key.len() / 2 } else { req.key.len() };
    let len = KeyLen::try_from(aes_len as u32).unwrap();
    let mut batch = Box::new(Batch::zeroed());
    batch.header = Header::new(1, 1);
    let request = &mut batch.requests[0];
    request.op = if req.op.direction == Direction::Encrypt { Op::Encrypt } else { Op::Decrypt } as u32;
    request.mode = req.op.mode as u32;
    request.key_len = aes_len as u32;
    request.iv = req.iv;
    request.tweak_block = req.tweak_block;
    request.entry_count = req.pieces.len() as u32;
    request.total_len = total as u32;
    let request = *request;
    let mut offset = 0;
    for (entry, &piece) in batch.entries.iter_mut().zip(req.pieces) {
        *entry = SgEntry {
            src: (src_base + offset) as u64,
            dst: (dst_base + offset) as u64,
            len: piece as u32,
            reserved_0x14: 0,
        };
        offset += piece;
    }
    let valid = match validate(&request, &batch) {
        Ok(ValidRequest::Crypt(valid)) => valid,
        other => panic!("invalid test request ({other:?}): pieces {:?}", req.pieces),
    };
    let mut schedule = KeySchedule::zeroed();
    expand_key(req.key, len, xts, &mut schedule);
    let mut cipher = BlockCipher::new(&schedule, len, req.op.direction, req.op.mode, req.iv, req.tweak_block);
    let before = memory.clone();
    // SAFETY: every entry lies inside `memory` (built so above); AES-NI checked above.
    unsafe { process(valid.entries, &HostWindow::new(memory.as_mut_ptr()), &mut cipher) };
    VaultRunResult {
        output: memory[dst_base..dst_base + total].to_vec(),
        iv_out: cipher.iv_out(),
        before,
        after: memory,
        dst: dst_base..dst_base + total,
    }
}

/// One request for [`vault_run`].
pub struct VaultRun<'a> {
    /// Mode and direction.
    pub op: RefOp,
    /// One AES key, or an XTS pair (data key, then tweak key).
    pub key: &'a [u8],
    /// CBC IV, CTR counter, XTS tweak.
    pub iv: [u8; 16],
    /// XTS: blocks of the data unit before `data`.
    pub tweak_block: u32,
    /// The input.
    pub data: &'a [u8],
    /// Entry lengths (whole blocks).
    pub pieces: &'a [usize],
    /// Destination = source.
    pub in_place: bool,
}

/// What [`vault_run`] saw.
pub struct VaultRunResult {
    /// The destination's bytes.
    pub output: Vec<u8>,
    /// The vault's output IV.
    pub iv_out: [u8; 16],
    /// The whole memory before the run.
    pub before: Vec<u8>,
    /// The whole memory after it.
    pub after: Vec<u8>,
    /// Where in it the destination lies.
    pub dst: std::ops::Range<usize>,
}

impl VaultRunResult {
    /// Panics if a byte outside the destination changed.
    pub fn assert_only_destination_changed(&self, what: &str) {
        for (i, (a, b)) in self.after.iter().zip(&self.before).enumerate() {
            if !self.dst.contains(&i) {
                assert_eq!(a, b, "{what}: byte {i} outside the destination changed");
            }
        }
    }
}

/// `data` through the vault in place as one entry.
pub fn vault_crypt(op: RefOp, key: &[u8], iv: [u8; 16], data: &[u8]) -> (Vec<u8>, [u8; 16]) {
    let result = vault_run(&VaultRun { op, key, iv, tweak_block: 0, data, pieces: &[data.len()], in_place: true });
    (result.output, result.iv_out)
}
