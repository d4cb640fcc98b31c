//! `high-memory`: a request whose destination pages lie at or above a host-physical address
//! (512 GiB by default: beyond what the vault's old fixed host window reached), to show the
//! vault serves memory wherever the kernel has it.
//!
//! AF_ALG's `read` gives the kernel the caller's own pages as the destination scatterlist,
//! so output written into a page of ours that `/proc/self/pagemap` places above the address
//! is written there by the driver.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use rand::{rngs::SmallRng, Rng, SeedableRng};

use crate::af_alg::{abi::IV_LEN, describe, Tfm};
use crate::cases::{default_seed, Shape};
use crate::cli::ErrorsArgs;
use crate::Verdict;

const PAGE: usize = 4096;
/// Pages to find above the address and check.
const PAGES: usize = 16;
/// Anonymous memory to fill while looking for them.
const SEARCH_BYTES: usize = 512 << 20;

/// `/proc/self/pagemap` entry: page present (bit 63), page frame number (bits 0-54; zero
/// without CAP_SYS_ADMIN). Linux `Documentation/admin-guide/mm/pagemap.rst`.
const PRESENT: u64 = 1 << 63;
const PFN_MASK: u64 = (1 << 55) - 1;

/// Anonymous private memory, unmapped on drop.
struct Mapping {
    base: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh anonymous mapping; no existing memory is named.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { base: base.cast(), len })
    }

    /// Page `index` (`index * PAGE < len`).
    fn page(&mut self, index: usize) -> &mut [u8] {
        assert!((index + 1) * PAGE <= self.len);
        // SAFETY: inside the mapping (asserted), which lives as long as `self`; the borrow of
        // `self` keeps the slices from overlapping.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(index * PAGE), PAGE) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping `new` made, no longer referenced.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// The host-physical address of the page at `virt`, if present and readable.
fn physical(pagemap: &File, virt: usize) -> io::Result<Option<u64>> {
    let mut entry = [0u8; 8];
    pagemap.read_exact_at(&mut entry, (virt / PAGE * 8) as u64)?;
    let entry = u64::from_le_bytes(entry);
    Ok((entry & PRESENT != 0 && entry & PFN_MASK != 0).then(|| (entry & PFN_MASK) * PAGE as u64))
}

pub fn run(args: &ErrorsArgs, above: u64) -> Verdict {
    match check(args, above) {
        Ok(verdict) => verdict,
        Err(e) => Verdict::fail(describe(&e)),
    }
}

fn check(args: &ErrorsArgs, above: u64) -> io::Result<Verdict> {
    let pagemap = File::open("/proc/self/pagemap")?;
    let mut memory = Mapping::new(SEARCH_BYTES)?;
    // Touch page by page (each write faults one in) until enough lie above the address.
    let mut high = Vec::new();
    for index in 0..SEARCH_BYTES / PAGE {
        let page = memory.page(index);
        page[0] = 1;
        let virt = page.as_ptr() as usize;
        match physical(&pagemap, virt)? {
            Some(phys) if phys >= above => high.push((index, phys)),
            Some(_) => {}
            None => {
                return Ok(Verdict::fail(format!("pagemap gives no frame for {virt:#x}: not root?")));
            }
        }
        if high.len() == PAGES {
            break;
        }
    }
    if high.len() < PAGES {
        return Ok(Verdict::fail(format!(
            "only {} of {PAGES} pages at or above {above:#x} in {} MiB of anonymous memory (is memory there online?)",
            high.len(),
            SEARCH_BYTES >> 20
        )));
    }
    let seed = default_seed();
    println!(
        "high-memory: {} against {}, seed {seed:#x}, {PAGES} pages at or above {above:#x}: {:#x} .. {:#x}",
        args.driver,
        args.reference,
        high.iter().map(|p| p.1).min().unwrap_or(0),
        high.iter().map(|p| p.1).max().unwrap_or(0)
    );
    let mut rng = SmallRng::seed_from_u64(seed);
    let key_len = if Shape::of(&args.reference) == Shape::Xts { 64 } else { 32 };
    let key: Vec<u8> = (0..key_len).map(|_| rng.gen()).collect();
    let driver = Tfm::new(&args.driver)?;
    let reference = Tfm::new(&args.reference)?;
    driver.set_key(&key)?;
    reference.set_key(&key)?;
    let mut moved = 0;
    for &(index, phys) in &high {
        let iv: [u8; IV_LEN] = rng.gen();
        let iv = args.with_iv.then_some(&iv);
        let plaintext: Vec<u8> = (0..PAGE).map(|_| rng.gen()).collect();
        let expected = reference.crypt(true, iv, &plaintext)?;
        let page = memory.page(index);
        driver.op()?.crypt_into_slice(true, iv, &plaintext, page)?;
        if page[..] != expected[..] {
            return Ok(Verdict::fail(format!("encryption into the page at {phys:#x} differs from {}", args.reference)));
        }
        driver.op()?.crypt_into_slice(false, iv, &expected, page)?;
        if page[..] != plaintext[..] {
            return Ok(Verdict::fail(format!("decryption into the page at {phys:#x} differs from the plaintext")));
        }
        // AF_ALG pins the page for the request; after it the kernel may have migrated it.
        if physical(&pagemap, page.as_ptr() as usize)? != Some(phys) {
            moved += 1;
        }
    }
    Ok(Verdict::pass(format!(
        "{PAGES} pages at or above {above:#x}: encryption and decryption through {} matched {} ({moved} pages moved after \
         their requests)",
        args.driver, args.reference
    )))
}
