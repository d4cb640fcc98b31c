//! `cargo xtask build-guest`: builds the vault (`guest/`, `x86_64-unknown-none`, profile
//! `vault`), turns its ELF into the flat image the HV loads at `IMAGE_BASE`, checks the
//! image, and writes it to `target/sevault/guest.bin`.
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use object::elf::{FileHeader64, PF_W, PT_LOAD};
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian;
use sevault_abi::memory_map::{IMAGE_BASE, IMAGE_MAX_SIZE};

use crate::{cargo, run_command};

/// Target triple of the vault image.
pub const TARGET: &str = "x86_64-unknown-none";
/// Cargo profile of the vault image (size-optimised, see the root Cargo.toml).
const PROFILE: &str = "vault";

/// Builds the image; returns the path of `guest.bin`.
pub fn build(root: &Path) -> Result<PathBuf> {
    build_into(root, &root.join("target"))
}

/// Builds the image with `target_dir` as cargo's target directory.
pub fn build_into(root: &Path, target_dir: &Path) -> Result<PathBuf> {
    // The image's flags come from .cargo/config.toml; a RUSTFLAGS from the environment (even
    // an empty one) would replace them and break the fixed-address link.
    run_command(
        cargo(root)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env("CARGO_TARGET_DIR", target_dir)
            .args([
                "build",
                "--package",
                "sevault-guest",
                "--bin",
                "sevault-vault",
                "--features",
                "vault-image",
                "--profile",
                PROFILE,
                "--target",
                TARGET,
            ]),
    )
    .context("building the vault image (the linker fails if it exceeds 4096 bytes)")?;
    let elf_path = target_dir.join(TARGET).join(PROFILE).join("sevault-vault");
    let elf = std::fs::read(&elf_path).with_context(|| format!("reading {}", elf_path.display()))?;
    let image = flat_image(&elf).with_context(|| format!("checking {}", elf_path.display()))?;
    check_spin_loop(&image)?;
    let out_dir = target_dir.join("sevault");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let out = out_dir.join("guest.bin");
    write_replacing(&out, &image)?;
    println!(
        "vault image: {} of {IMAGE_MAX_SIZE} bytes ({} free) -> {}",
        image.len(),
        IMAGE_MAX_SIZE as usize - image.len(),
        out.display()
    );
    Ok(out)
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`: a reader
/// (another build, the HV build, a parallel test) sees the old file or the new one, never a
/// truncated one, which a plain `fs::write` would show it while writing.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<()> {
    static WRITES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let unique = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temporary = path.with_extension(format!("tmp.{}.{unique}", std::process::id()));
    std::fs::write(&temporary, bytes).with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("renaming {} to {}", temporary.display(), path.display()))
}

/// The test hook's spin loop must be where the HV will send a run (`SPIN_GPA`), with the
/// bytes of `jmp $`: else the hook would run whatever sits there.
pub fn check_spin_loop(image: &[u8]) -> Result<()> {
    let offset = (sevault_abi::memory_map::SPIN_GPA - IMAGE_BASE) as usize;
    let found = image.get(offset..offset + sevault_abi::memory_map::SPIN_BYTES.len());
    if found != Some(&sevault_abi::memory_map::SPIN_BYTES[..]) {
        bail!("vault image: expected the spin loop EB FE at offset {offset}, found {:02x?}", found.unwrap_or_default());
    }
    Ok(())
}

/// One `PT_LOAD` segment of an ELF64 file.
#[derive(Clone, Copy, Debug)]
pub struct LoadSegment<'a> {
    /// Where it is loaded.
    pub vaddr: u64,
    /// `p_flags` (PF_R, PF_W, PF_X).
    pub flags: u32,
    /// Size in memory (more than `data` for zero-filled bytes).
    pub memsz: u64,
    /// Its bytes in the file.
    pub data: &'a [u8],
}

/// The entry point and the `PT_LOAD` segments of a little-endian ELF64 file.
pub fn load_segments(elf: &[u8]) -> Result<(u64, Vec<LoadSegment<'_>>)> {
    let header = FileHeader64::<LittleEndian>::parse(elf).context("not an ELF64 file")?;
    let endian = header.endian().context("not a little-endian ELF")?;
    let mut segments = Vec::new();
    for segment in header.program_headers(endian, elf).context("reading program headers")? {
        if segment.p_type(endian) != PT_LOAD {
            continue;
        }
        let vaddr = segment.p_vaddr(endian);
        let data =
            segment.data(endian, elf).map_err(|()| anyhow::anyhow!("segment at {vaddr:#x} lies outside the file"))?;
        segments.push(LoadSegment { vaddr, flags: segment.p_flags(endian), memsz: segment.p_memsz(endian), data });
    }
    Ok((header.e_entry(endian), segments))
}

/// The flat image of a vault ELF: its loadable segments placed at `vaddr - IMAGE_BASE`, gaps
/// zero-filled. Refuses an entry point other than `IMAGE_BASE`, writable or zero-filled
/// (bss) segments, segments outside the image window, and images over the budget.
pub fn flat_image(elf: &[u8]) -> Result<Vec<u8>> {
    let (entry, segments) = load_segments(elf)?;
    ensure!(entry == IMAGE_BASE, "entry point {entry:#x} is not IMAGE_BASE {IMAGE_BASE:#x}");
    let mut image = Vec::new();
    for segment in segments.iter().filter(|s| s.memsz != 0) {
        let vaddr = segment.vaddr;
        if segment.flags & PF_W != 0 {
            bail!("segment at {vaddr:#x} is writable: the vault image must be read-only");
        }
        let filesz = segment.data.len() as u64;
        ensure!(filesz == segment.memsz, "segment at {vaddr:#x} has zero-filled (bss) bytes");
        let start = vaddr.checked_sub(IMAGE_BASE).context("segment below IMAGE_BASE")?;
        let end = start.checked_add(filesz).context("segment size overflows")?;
        ensure!(end <= IMAGE_MAX_SIZE, "image is {end} bytes, over its {IMAGE_MAX_SIZE}-byte budget");
        let (start, end) = (start as usize, end as usize);
        if image.len() < end {
            image.resize(end, 0);
        }
        image[start..end].copy_from_slice(segment.data);
    }
    ensure!(!image.is_empty(), "no loadable segment");
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 executable with the given entry and (vaddr, flags, bytes, memsz) segments.
    fn elf(entry: u64, segments: &[(u64, u32, &[u8], u64)]) -> Vec<u8> {
        let phoff = 64u64;
        let data_start = phoff + 56 * segments.len() as u64;
        let mut out = vec![0u8; data_start as usize];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2; // 64-bit
        out[5] = 1; // little-endian
        out[6] = 1; // version
        out[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        out[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        out[20..24].copy_from_slice(&1u32.to_le_bytes());
        out[24..32].copy_from_slice(&entry.to_le_bytes());
        out[32..40].copy_from_slice(&phoff.to_le_bytes());
        out[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        out[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        out[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        for (i, (vaddr, flags, bytes, memsz)) in segments.iter().enumerate() {
            let offset = out.len() as u64;
            out.extend_from_slice(bytes);
            let ph = &mut out[(phoff as usize + 56 * i)..(phoff as usize + 56 * (i + 1))];
            ph[0..4].copy_from_slice(&PT_LOAD.to_le_bytes());
            ph[4..8].copy_from_slice(&flags.to_le_bytes());
            ph[8..16].copy_from_slice(&offset.to_le_bytes());
            ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
            ph[24..32].copy_from_slice(&vaddr.to_le_bytes());
            ph[32..40].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            ph[40..48].copy_from_slice(&memsz.to_le_bytes());
        }
        out
    }

    const RX: u32 = 5;
    const R: u32 = 4;

    #[test]
    fn places_segments_at_their_offsets_and_fills_gaps() {
        let image =
            flat_image(&elf(IMAGE_BASE, &[(IMAGE_BASE, RX, &[1, 2, 3], 3), (IMAGE_BASE + 8, R, &[9], 1)])).unwrap();
        assert_eq!(image, [1, 2, 3, 0, 0, 0, 0, 0, 9]);
    }

    #[test]
    fn refuses_what_the_hv_could_not_load_as_is() {
        let code: &[u8] = &[0x90; 16];
        let cases: [(Vec<u8>, &str); 5] = [
            (elf(IMAGE_BASE + 1, &[(IMAGE_BASE, RX, code, 16)]), "entry point"),
            (elf(IMAGE_BASE, &[(IMAGE_BASE, RX | PF_W, code, 16)]), "writable"),
            (elf(IMAGE_BASE, &[(IMAGE_BASE, RX, code, 32)]), "bss"),
            (elf(IMAGE_BASE, &[(IMAGE_BASE - 16, RX, code, 16)]), "below IMAGE_BASE"),
            (elf(IMAGE_BASE, &[(IMAGE_BASE + IMAGE_MAX_SIZE - 8, RX, code, 16)]), "budget"),
        ];
        for (bytes, expected) in cases {
            let error = format!("{:#}", flat_image(&bytes).unwrap_err());
            assert!(error.contains(expected), "{error:?} should mention {expected:?}");
        }
        assert!(flat_image(b"not an elf").is_err());
    }

    #[test]
    fn linker_script_agrees_with_the_abi() {
        let script = include_str!("../../guest/vault.ld");
        assert!(script.contains(&format!("IMAGE_BASE = {IMAGE_BASE:#x};")), "vault.ld IMAGE_BASE");
        assert!(script.contains(&format!("IMAGE_MAX_SIZE = {IMAGE_MAX_SIZE};")), "vault.ld IMAGE_MAX_SIZE");
    }

    /// Builds the real vault image (in its own target directory, so that it does not wait for
    /// the `cargo test` that runs it) and checks the budget on the result.
    #[test]
    fn the_vault_image_fits_its_budget() {
        let root = crate::workspace_root();
        let out = build_into(&root, &root.join("target").join("xtask-test")).unwrap();
        let image = std::fs::read(out).unwrap();
        assert!(image.len() as u64 <= IMAGE_MAX_SIZE, "{} bytes", image.len());
        // `_start` jumps over the 2-byte spin loop (EB 02), which is `jmp $` (EB FE), to
        // `mov rdi, rsp` (48 89 e7): encodings from AMD APM Vol. 3 (JMP rel8, MOV r/m64).
        assert_eq!(image[..7], [0xEB, 0x02, 0xEB, 0xFE, 0x48, 0x89, 0xe7]);
    }
}
