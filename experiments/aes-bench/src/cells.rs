//! The measured grid (key size × mode × direction × buffer size) and the issues' targets.
use sevault_abi::validate::Direction;
use sevault_abi::{KeyLen, Mode};

/// Buffer sizes measured: one page (the vault's unit of work) and 64 KiB.
pub const SIZES: [usize; 2] = [4096, 65536];

/// Key sizes measured.
pub const KEYS: [KeyLen; 2] = [KeyLen::Aes128, KeyLen::Aes256];

/// Target for vault/OpenSSL in modes whose blocks are independent (ECB, CBC decryption,
/// CTR, XTS).
pub const TARGET_PARALLEL: f64 = 0.5;

/// Target for vault/OpenSSL in CBC encryption (serial in every implementation).
pub const TARGET_CBC_ENCRYPT: f64 = 0.9;

/// One row of the results: what is measured, for all three implementations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    /// Key size (of each key of an XTS pair).
    pub key: KeyLen,
    /// ECB, CBC, CTR or XTS.
    pub mode: Mode,
    /// Encrypt or decrypt.
    pub direction: Direction,
    /// Bytes per call (the buffer processed in place).
    pub bytes: usize,
}

impl Cell {
    /// Every cell, in table order: key size, then mode, then direction, then size.
    pub fn all() -> Vec<Self> {
        let mut cells = Vec::new();
        for key in KEYS {
            for mode in [Mode::Ecb, Mode::Cbc, Mode::Ctr, Mode::Xts] {
                for direction in [Direction::Encrypt, Direction::Decrypt] {
                    for bytes in SIZES {
                        cells.push(Self { key, mode, direction, bytes });
                    }
                }
            }
        }
        cells
    }

    /// Key size in bits.
    pub fn key_bits(self) -> usize {
        self.key.bytes() * 8
    }

    /// Bytes of key material: the AES key, twice for XTS.
    pub fn key_bytes(self) -> usize {
        self.key.bytes() << (self.mode == Mode::Xts) as usize
    }

    /// "ECB", "CBC", "CTR" or "XTS".
    pub fn mode_name(self) -> &'static str {
        match self.mode {
            Mode::Ecb => "ECB",
            Mode::Cbc => "CBC",
            Mode::Ctr => "CTR",
            Mode::Xts => "XTS",
            Mode::CbcStreams => "CBC streams",
        }
    }

    /// "encrypt" or "decrypt".
    pub fn direction_name(self) -> &'static str {
        match self.direction {
            Direction::Encrypt => "encrypt",
            Direction::Decrypt => "decrypt",
        }
    }

    /// "4 KiB", "64 KiB".
    pub fn size_name(self) -> String {
        format!("{} KiB", self.bytes / 1024)
    }

    /// "AES-128 ECB encrypt 4 KiB".
    pub fn label(self) -> String {
        format!("AES-{} {} {} {}", self.key_bits(), self.mode_name(), self.direction_name(), self.size_name())
    }

    /// The EVP cipher name OpenSSL knows it by: "aes-128-ecb" (XTS: "aes-128-xts", whose key
    /// is two AES-128 keys).
    pub fn openssl_cipher(self) -> String {
        format!("aes-{}-{}", self.key_bits(), self.mode_name().to_ascii_lowercase())
    }

    /// The target for vault/OpenSSL throughput in this cell.
    pub fn target_ratio(self) -> f64 {
        match (self.mode, self.direction) {
            (Mode::Cbc, Direction::Encrypt) => TARGET_CBC_ENCRYPT,
            _ => TARGET_PARALLEL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_is_complete_and_ordered() {
        let cells = Cell::all();
        assert_eq!(cells.len(), 32);
        assert_eq!(cells[0].label(), "AES-128 ECB encrypt 4 KiB");
        assert_eq!(cells[31].label(), "AES-256 XTS decrypt 64 KiB");
        assert_eq!(cells[31].openssl_cipher(), "aes-256-xts");
        assert_eq!(cells[31].key_bytes(), 64);
        assert_eq!(cells[16].label(), "AES-256 ECB encrypt 4 KiB");
    }

    #[test]
    fn targets() {
        for cell in Cell::all() {
            let expected = if cell.mode == Mode::Cbc && cell.direction == Direction::Encrypt { 0.9 } else { 0.5 };
            assert_eq!(cell.target_ratio(), expected, "{}", cell.label());
        }
    }
}
