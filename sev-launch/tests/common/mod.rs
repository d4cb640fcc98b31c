//! Shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// A fixed synthetic image: 64 NOPs.
pub const SYNTHETIC_IMAGE: [u8; 64] = [0x90; 64];

/// Where `cargo xtask build-guest` writes the vault image.
pub fn built_image_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/sevault/guest.bin")
}

/// The real vault image if it has been built, else [`SYNTHETIC_IMAGE`]; and which it is.
pub fn vault_image() -> (Vec<u8>, &'static str) {
    match std::fs::read(built_image_path()) {
        Ok(image) => (image, "target/sevault/guest.bin"),
        Err(_) => (SYNTHETIC_IMAGE.to_vec(), "the synthetic 64-byte test image (no built guest.bin)"),
    }
}
