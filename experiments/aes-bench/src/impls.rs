//! The two implementations that run in this process, each as something that transforms a
//! whole-block buffer in place — carrying CBC chaining and the CTR counter from one call to
//! the next, and starting each call as a new XTS data unit with the cell's tweak, as
//! `openssl speed` does: the vault's own code ([`sevault_guest::aes`]) and RustCrypto
//! (`aes` with `ecb`, `cbc`, `ctr`, `xts-mode`; AES-NI picked at run time). Plus their
//! inputs and the check that they agree.
use aes::cipher::inout::InOutBuf;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit, KeyIvInit, StreamCipher};
use sevault_abi::validate::Direction;
use sevault_abi::{KeyLen, Mode};
use sevault_guest::aes::{expand_key, BlockCipher, KeySchedule};

use crate::cells::Cell;
use crate::error::Error;

/// Key, IV and data for one cell: fixed pseudo-random bytes, so every run sees the same.
pub struct Inputs {
    /// `cell.key_bytes()` bytes.
    pub key: Vec<u8>,
    /// CBC initial chaining value, CTR first counter, XTS tweak (ignored by ECB).
    pub iv: [u8; 16],
    /// `cell.bytes` bytes.
    pub data: Vec<u8>,
}

impl Inputs {
    /// The inputs of `cell`, from a generator seeded by the cell.
    pub fn for_cell(cell: Cell) -> Self {
        let mut state = 0x5e7a_u64 ^ ((cell.key_bits() as u64) << 32) ^ cell.bytes as u64;
        let mut bytes = |n: usize| (0..n).map(|_| splitmix64(&mut state) as u8).collect::<Vec<u8>>();
        let key = bytes(cell.key_bytes());
        let mut iv = [0; 16];
        iv.copy_from_slice(&bytes(16));
        let data = bytes(cell.bytes);
        Self { key, iv, data }
    }
}

/// SplitMix64: a tiny, good-enough generator for test data (not for keys that matter).
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A copy of some bytes that starts on a 64-byte boundary, so that every implementation
/// works on equally aligned memory.
pub struct AlignedBuf {
    storage: Vec<u8>,
    offset: usize,
    len: usize,
}

impl AlignedBuf {
    /// Alignment of the first byte.
    const ALIGN: usize = 64;

    /// An aligned copy of `data`.
    pub fn new(data: &[u8]) -> Self {
        let mut storage = vec![0; data.len() + Self::ALIGN];
        let offset = storage.as_ptr().align_offset(Self::ALIGN);
        storage[offset..offset + data.len()].copy_from_slice(data);
        Self { storage, offset, len: data.len() }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.offset..self.offset + self.len]
    }

    /// The bytes, to transform in place.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.offset..self.offset + self.len]
    }
}

/// The vault's key schedule for a cell; [`Vault::cipher`] binds it to mode and direction.
pub struct Vault {
    schedule: KeySchedule,
    key: KeyLen,
    mode: Mode,
    direction: Direction,
    iv: [u8; 16],
}

impl Vault {
    /// Expands `key` for `cell`. The caller must have checked that the CPU has AES-NI
    /// (`main` does, before anything else).
    pub fn new(cell: Cell, key: &[u8], iv: [u8; 16]) -> Self {
        let mut schedule = KeySchedule::zeroed();
        expand_key(key, cell.key, cell.mode == Mode::Xts, &mut schedule);
        Self { schedule, key: cell.key, mode: cell.mode, direction: cell.direction, iv }
    }

    /// A fresh operation (CBC, CTR, XTS: starting from the cell's IV).
    pub fn cipher(&self) -> BlockCipher<'_> {
        BlockCipher::new(&self.schedule, self.key, self.direction, self.mode, self.iv, 0)
    }

    /// The in-place operation one call of the timing loop makes: CBC and CTR continue from
    /// the last call, XTS starts a data unit (its tweak encryption included in the time).
    pub fn op(&self) -> impl FnMut(&mut [u8]) + '_ {
        let mut cipher = self.cipher();
        move |buf: &mut [u8]| {
            if self.mode == Mode::Xts {
                cipher = self.cipher();
            }
            cipher.run_in_place(buf);
        }
    }
}

/// An in-place operation on whole 16-byte blocks (a partial tail would be left as it is;
/// every measured size is a multiple of 16).
pub type InPlace = Box<dyn FnMut(&mut [u8])>;

/// RustCrypto's operation for `cell` with `key` and `iv`.
pub fn rustcrypto(cell: Cell, key: &[u8], iv: &[u8; 16]) -> Result<InPlace, Error> {
    let invalid = |err| Error::RustCrypto(format!("{}: {err}", cell.label()));
    macro_rules! build {
        ($aes:ty) => {
            match (cell.mode, cell.direction) {
                (Mode::Ecb, Direction::Encrypt) => {
                    let mut c = ecb::Encryptor::<$aes>::new_from_slice(key).map_err(invalid)?;
                    Box::new(move |buf: &mut [u8]| c.encrypt_blocks_inout_mut(InOutBuf::from(buf).into_chunks().0))
                        as InPlace
                }
                (Mode::Ecb, Direction::Decrypt) => {
                    let mut c = ecb::Decryptor::<$aes>::new_from_slice(key).map_err(invalid)?;
                    Box::new(move |buf: &mut [u8]| c.decrypt_blocks_inout_mut(InOutBuf::from(buf).into_chunks().0))
                }
                (Mode::Cbc, Direction::Encrypt) => {
                    let mut c = cbc::Encryptor::<$aes>::new_from_slices(key, iv).map_err(invalid)?;
                    Box::new(move |buf: &mut [u8]| c.encrypt_blocks_inout_mut(InOutBuf::from(buf).into_chunks().0))
                }
                (Mode::Cbc, Direction::Decrypt) => {
                    let mut c = cbc::Decryptor::<$aes>::new_from_slices(key, iv).map_err(invalid)?;
                    Box::new(move |buf: &mut [u8]| c.decrypt_blocks_inout_mut(InOutBuf::from(buf).into_chunks().0))
                }
                (Mode::Ctr, _) => {
                    let mut c = ctr::Ctr128BE::<$aes>::new_from_slices(key, iv).map_err(invalid)?;
                    Box::new(move |buf: &mut [u8]| c.apply_keystream(buf))
                }
                (Mode::CbcStreams, _) => {
                    return Err(Error::RustCrypto(format!("{}: streams are measured apart", cell.label())))
                }
                (Mode::Xts, direction) => {
                    let half = key.len() / 2;
                    let data = <$aes>::new_from_slice(&key[..half]).map_err(invalid)?;
                    let tweak = <$aes>::new_from_slice(&key[half..]).map_err(invalid)?;
                    let xts = xts_mode::Xts128::new(data, tweak);
                    let iv = *iv;
                    if direction == Direction::Encrypt {
                        Box::new(move |buf: &mut [u8]| xts.encrypt_sector(buf, iv))
                    } else {
                        Box::new(move |buf: &mut [u8]| xts.decrypt_sector(buf, iv))
                    }
                }
            }
        };
    }
    Ok(match cell.key {
        KeyLen::Aes128 => build!(aes::Aes128),
        KeyLen::Aes192 => build!(aes::Aes192),
        KeyLen::Aes256 => build!(aes::Aes256),
    })
}

/// Checks that the vault's code and RustCrypto give the same bytes for the cell's inputs,
/// over two calls on the same buffer (as the timing loop does, so CBC chaining and the CTR
/// counter across calls are checked too). Needs AES-NI (see [`Vault::new`]).
pub fn check(cell: Cell, inputs: &Inputs) -> Result<(), Error> {
    let vault = Vault::new(cell, &inputs.key, inputs.iv);
    let mut vault_op = vault.op();
    let mut reference = rustcrypto(cell, &inputs.key, &inputs.iv)?;
    let mut ours = inputs.data.clone();
    let mut theirs = inputs.data.clone();
    for call in 0..2 {
        vault_op(&mut ours);
        reference(&mut theirs);
        if let Some(offset) = ours.iter().zip(&theirs).position(|(a, b)| a != b) {
            return Err(Error::Mismatch { cell: cell.label(), call, offset });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_fixed_and_sized() {
        for cell in Cell::all() {
            let a = Inputs::for_cell(cell);
            let b = Inputs::for_cell(cell);
            assert_eq!(a.key.len(), cell.key_bytes());
            assert_eq!(a.data.len(), cell.bytes);
            assert_eq!((a.key, a.iv, a.data), (b.key, b.iv, b.data));
        }
    }

    #[test]
    fn aligned_buf_is_aligned_copy() {
        let data: Vec<u8> = (0..100).collect();
        let mut buf = AlignedBuf::new(&data);
        assert_eq!(buf.as_slice(), &data[..]);
        assert_eq!(buf.as_mut_slice().as_ptr() as usize % 64, 0);
    }

    #[test]
    fn rustcrypto_matches_fips197() {
        // FIPS-197 Appendix C.1 (AES-128), one block, ECB.
        let key: Vec<u8> = (0..16).collect();
        let mut block: Vec<u8> = (0..16).map(|i| i * 0x11).collect();
        let cell = Cell { key: KeyLen::Aes128, mode: Mode::Ecb, direction: Direction::Encrypt, bytes: 16 };
        rustcrypto(cell, &key, &[0; 16]).unwrap()(&mut block);
        let expected = [0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4, 0xc5, 0x5a];
        assert_eq!(block, expected);
    }

    #[test]
    fn vault_agrees_with_rustcrypto_in_every_cell() {
        assert!(std::arch::is_x86_feature_detected!("aes"), "these tests need a host CPU with AES-NI");
        for cell in Cell::all() {
            check(cell, &Inputs::for_cell(cell)).unwrap();
        }
    }
}
