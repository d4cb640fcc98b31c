//! Embeds the vault image: `cargo xtask build` sets SEVAULT_GUEST_BIN to
//! target/sevault/guest.bin; other builds (host tests) get an empty image, which the kernel
//! side refuses to load.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-env-changed=SEVAULT_GUEST_BIN");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR unset")?).join("guest.bin");
    let image = match std::env::var_os("SEVAULT_GUEST_BIN") {
        Some(path) => {
            let path = PathBuf::from(path);
            println!("cargo:rerun-if-changed={}", path.display());
            std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?
        }
        None => Vec::new(),
    };
    std::fs::write(&out, image).map_err(|e| format!("writing {}: {e}", out.display()))?;
    Ok(())
}
