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
    pub mode: Mode,
    pub direction: Direction,
}

/// RustCrypto's answer for `data` (whole blocks) and the CBC output IV (last ciphertext block).
pub fn reference_crypt(op: RefOp, key: &[u8], iv: [u8; 16], data: &[u8]) -> (Vec<u8>, [u8; 16]) {
    use aes::cipher::block_padding::NoPadding;
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
            }
        };
    }
    let out = match key.len() {
        16 => with_cipher!(aes::Aes128),
        24 => with_cipher!(aes::Aes192),
        32 => with_cipher!(aes::Aes256),
        n => panic!("bad key length {n}"),
    };
    let ciphertext = if op.direction == Direction::Encrypt { &out } else { data };
    let iv_out = ciphertext[ciphertext.len() - 16..].try_into().unwrap();
    (out, iv_out)
}

/// Splits `total` bytes into at most `max_pieces` non-empty pieces, with a bias towards the
/// awkward cases: 1-byte pieces, pieces just under or over a block, and single large pieces.
pub fn random_splits(rng: &mut impl Rng, total: usize, max_pieces: usize) -> Vec<usize> {
    let mut pieces = Vec::new();
    let mut left = total;
    while left > 0 {
        let len = if pieces.len() + 1 == max_pieces {
            left
        } else {
            match rng.gen_range(0..6) {
                0 => 1,
                1 => 15,
                2 => 17,
                3 => rng.gen_range(1..=64),
                4 => 16 * rng.gen_range(1..=8),
                _ => left,
            }
            .min(left)
        };
        pieces.push(len);
        left -= len;
    }
    pieces
}
