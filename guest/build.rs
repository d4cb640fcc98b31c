//! Links the vault image with `vault.ld` (only the `sevault-vault` binary; the library is
//! also built for the host).
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    println!("cargo:rerun-if-changed=vault.ld");
    println!("cargo:rustc-link-arg-bin=sevault-vault=-T{dir}/vault.ld");
}
