//! The HV's host-side work per request, timed with the TSC: everything `vault.rs` does for
//! an encrypt/decrypt request between the crypto API handing it over and the VMRUN, and
//! after the exit — the HV's own code, run here as ordinary host code:
//!
//! - `Translator` over the source and destination lists, chunk by chunk, with the HV's
//!   admission (`WindowAdmission`: host window, the vault's own pages refused through an
//!   `Arena` of 64-page blocks as the module's, slots in the compact window);
//! - each entry's pages mapped into the vCPU's compact window (`CompactWindow::map_entry` on
//!   a real page table) and the entry, with its window addresses, written into a comm block;
//! - the request posted (`write_request`, `write_header`), the answer read (`read_batch_response`, `read_response`), the window
//!   cleared.
//!
//! Not included (they are not the HV's Rust code, or cannot run outside the kernel): the
//! crypto API and scatterwalk, `kernel_fpu_begin/end`, interrupt save/restore, the MSR
//! writes that turn SVM on and off around each run, the trampoline and the world switch
//! itself (the model takes those from published figures), and the vault's work.
use std::hint::black_box;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use sevault_abi::comm::{CommBlock, CommBlockPtr, Header, Request};
use sevault_abi::memory_map::VcpuIndex;
use sevault_abi::validate::Direction;
use sevault_abi::{Mode, Op, MAX_ENTRIES};
use sevault_hv::arena::{Arena, Block};
use sevault_hv::paging::{CompactWindow, PageTable};
use sevault_hv::translate::{Bounce, HostMemory, Segment, SliceCursor, TailRule, Translator, WindowAdmission};

/// The TSC.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86-64 (user mode reads it unless CR4.TSD).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// TSC ticks per second: the median of three 200 ms windows against the monotonic clock.
pub fn tsc_hz() -> f64 {
    let mut samples: Vec<f64> = (0..3)
        .map(|_| {
            let (t0, c0) = (Instant::now(), rdtsc());
            std::thread::sleep(Duration::from_millis(200));
            let (c1, t1) = (rdtsc(), Instant::now());
            (c1 - c0) as f64 / (t1 - t0).as_secs_f64()
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[1]
}

/// How a request's data lies in host memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Placement {
    /// Source and destination the same pages (dm-crypt reads, AF_ALG in place).
    InPlace,
    /// Different pages (dm-crypt writes encrypt into fresh pages).
    OutOfPlace,
}

/// One measured request shape.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HostWork {
    /// Request length in bytes.
    pub bytes: u64,
    /// Where its data lies.
    pub placement: Placement,
    /// Physically separate 4 KiB pages per side (one segment each).
    pub pages_per_side: u64,
    /// Vault requests (VMRUN entries) the HV makes for it.
    pub chunks: u64,
    /// Median over the rounds of TSC ticks per request (what the model uses).
    pub tsc_ticks: f64,
    /// The same, in nanoseconds at the measured TSC rate.
    pub ns: f64,
    /// The fastest round's TSC ticks per request (the code undisturbed by the shared host).
    pub tsc_ticks_min: f64,
}

/// Host memory for bounces: never touched by the page-aligned shapes measured here.
struct NoBounces;

impl HostMemory for NoBounces {
    fn read(&self, _: u64, buf: &mut [u8]) {
        buf.fill(0);
    }
    fn write(&self, _: u64, _: &[u8]) {}
}

/// A 64-byte-aligned stand-in for the vCPU's comm page.
struct CommPage(Box<CommBlock>);

impl CommPage {
    fn new() -> Self {
        // SAFETY: `CommBlock` is plain data (integers and arrays): all-zero is valid.
        Self(Box::new(unsafe { std::mem::zeroed() }))
    }

    fn ptr(&mut self) -> CommBlockPtr {
        // SAFETY: the box is a live, aligned, exclusively owned comm block for as long as the
        // pointer is used (within one measurement).
        unsafe { CommBlockPtr::new(NonNull::from(&mut *self.0)) }
    }
}

/// The HV's arena as the module leaves it for a 2-vCPU vault: a few 64-page blocks.
fn module_arena() -> Arena<1024> {
    let mut arena = Arena::new();
    for i in 0..8u64 {
        let added = arena.add_block(Block { virt: 0, phys: 0x1_0000_0000 + i * 0x40_0000, pages: 64 });
        assert!(added, "arena block {i}");
    }
    arena
}

/// Segments of `len` bytes on `pages` separate 4 KiB pages starting at host-physical
/// `base`, every other page (so no two are contiguous).
fn segments(base: u64, len: u64) -> Vec<Segment> {
    let pages = len.div_ceil(4096);
    (0..pages).map(|i| Segment { phys: base + i * 2 * 4096, len: (len - i * 4096).min(4096) as u32 }).collect()
}

/// Runs the HV's per-request work for one XTS request of `len` bytes `iterations` times
/// per round, `rounds` rounds; returns the median ticks per request and the chunks.
pub fn measure(len: u64, placement: Placement, iterations: u32, rounds: u32, tsc_hz: f64) -> Result<HostWork, String> {
    let src = segments(0x2_0000_0000, len);
    let dst = match placement {
        Placement::InPlace => src.clone(),
        Placement::OutOfPlace => segments(0x3_0000_0000, len),
    };
    let arena = module_arena();
    let forbidden = |addr: u64, len: u64| arena.overlaps(addr, len);
    let vcpu = VcpuIndex::new(0).ok_or("vCPU 0")?;
    let mut table = Box::new(PageTable::zeroed());
    let mut window = CompactWindow::new(vcpu);
    let mut comm_page = CommPage::new();
    let comm = comm_page.ptr();
    let mut bounce_page = vec![0u8; 4096];
    let bounce = Bounce { phys: 0x5_0000_0000, virt: bounce_page.as_mut_ptr() };
    let mut sequence = 0u64;
    let mut chunks = 0;
    let mut one_request = || -> Result<u64, String> {
        let mut translator = Translator::new(
            SliceCursor::new(&src),
            SliceCursor::new(&dst),
            len,
            TailRule::of(Mode::Xts, Direction::Encrypt),
        )
        .map_err(|e| format!("the HV refuses a {len}-byte request: {e:?}"))?;
        let mut chunks = 0;
        loop {
            let mut admission = WindowAdmission { forbidden, plan: CompactWindow::new(vcpu) };
            let (win, pt) = (&mut window, &mut *table);
            let mut mapped = true;
            let info =
                translator.next_chunk_with(&mut admission, MAX_ENTRIES, bounce, &NoBounces, |i, entry| {
                    match win.map_entry(pt, entry) {
                        Ok(seen) => comm.write_entry(i, &seen),
                        Err(_) => mapped = false,
                    }
                });
            let info = match info {
                Ok(Some(info)) if mapped => info,
                Ok(None) => break,
                other => return Err(format!("the HV would refuse a chunk of a {len}-byte request: {other:?}")),
            };
            sequence += 1;
            let request = Request {
                op: Op::Encrypt as u32,
                mode: Mode::Xts as u32,
                key_slot: 7,
                key_len: 32,
                first_entry: 0,
                entry_count: info.count as u32,
                tweak_block: info.first_block,
                total_len: info.bytes,
                iv: [0x5A; 16],
            };
            comm.write_request(0, &request);
            comm.write_header(&Header::new(sequence, 1));
            black_box(comm.read_batch_response());
            black_box(comm.read_response(0));
            window.clear(&mut table);
            chunks += 1;
        }
        Ok(chunks)
    };
    let mut per_round: Vec<f64> = Vec::new();
    for _ in 0..rounds {
        let start = rdtsc();
        for _ in 0..iterations {
            chunks = black_box(one_request()?);
        }
        per_round.push((rdtsc() - start) as f64 / f64::from(iterations));
    }
    per_round.sort_by(f64::total_cmp);
    let tsc_ticks = per_round[per_round.len() / 2];
    let tsc_ticks_min = per_round[0];
    Ok(HostWork {
        bytes: len,
        placement,
        pages_per_side: len.div_ceil(4096),
        chunks,
        tsc_ticks,
        ns: tsc_ticks / tsc_hz * 1e9,
        tsc_ticks_min,
    })
}
