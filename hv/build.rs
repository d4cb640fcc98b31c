//! Embeds the vault image: `cargo xtask build` sets SEVAULT_GUEST_BIN to
//! target/sevault/guest.bin; other builds (host tests) get an empty image, which the kernel
//! side refuses to load.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=SEVAULT_GUEST_BIN");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("guest.bin");
    let image = match std::env::var_os("SEVAULT_GUEST_BIN") {
        Some(path) => {
            println!("cargo:rerun-if-changed={}", PathBuf::from(&path).display());
            std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", PathBuf::from(&path).display()))
        }
        None => Vec::new(),
    };
    std::fs::write(&out, image).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}
