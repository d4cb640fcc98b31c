//! `kvm-guest`: real KVM guests on every CPU, checked by the host, while the vault serves
//! requests on the same CPUs.
//!
//! sevault.ko and kvm_amd both run guests with SVM, and both tag their guests' TLB entries
//! with ASIDs, handed out without knowing each other's (`hv/src/asid.rs`): the module flushes
//! the vault's ASID when a request enters the vault and, while kvm_amd is loaded, when it
//! leaves. This is the KVM side of that test. T threads, each pinned to a CPU, each create a
//! VM with one vCPU (so kvm_amd gives each an ASID on that CPU) and run a small 32-bit guest
//! ([`GUEST_CODE`]) again and again, with a fresh seed each time. The guest fills a buffer
//! with an xorshift32 stream from the seed, reads it back into a checksum, writes the checksum
//! to an I/O port and halts. The host works out the same in Rust ([`Model`]) and checks
//! - the checksum from the port;
//! - the buffer, read through the host's own mapping of guest memory, and the dword after it
//!   (a guest whose accesses went through a stale translation to some other page would still
//!   agree with itself on the checksum: only this shows where its writes landed);
//! - every register at the HLT.
//!
//! The guest runs with paging off, so its linear addresses are its guest-physical ones, and
//! they are chosen to be the vault's (guest-virtual = guest-physical there, see
//! `sevault_abi::memory_map`): the code sits on the vault image's page, the buffers on the
//! pages next to it, on the comm block, GHCB and stack of this CPU's vault vCPU (or another
//! allowed CPU's), and in the first block of key slots. Those are the addresses for which the
//! vault leaves TLB entries; a KVM guest that found one would fetch or write vault memory.
//! Run it while `diff` keeps the vault busy on the same CPUs: then both directions are
//! checked, the guests here and the vault's answers there.

use std::fmt;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_regs, kvm_segment, kvm_userspace_memory_region, KVM_API_VERSION};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sevault_abi::memory_map::{self as map, VcpuIndex, PAGE_SIZE};

use crate::af_alg::describe;
use crate::cases::default_seed;
use crate::cli::KvmGuestArgs;
use crate::{cpu, Verdict};

/// The guest, 32-bit protected mode with flat segments, paging and interrupts off, loaded at
/// [`CODE_GPA`]. In: EAX = seed, ECX = dwords (at least 1), EDI = buffer. Out: the checksum
/// written to port [`RESULT_PORT`], then HLT. [`Model`] is the same in Rust. Assembled with
/// GNU as (`.code32`), the bytes checked by `guest_code_layout`.
#[rustfmt::skip]
pub const GUEST_CODE: [u8; 52] = [
    0x89, 0xfe,                   // 0x00  mov esi, edi      ; ESI: the buffer, for the second pass
    0x89, 0xcd,                   // 0x02  mov ebp, ecx      ; EBP: its length in dwords
    0xfc,                         // 0x04  cld
                                  //       fill:             ; xorshift32 (13, 17, 5), a dword a round
    0x89, 0xc3,                   // 0x05  mov ebx, eax
    0xc1, 0xe3, 0x0d,             // 0x07  shl ebx, 13
    0x31, 0xd8,                   // 0x0a  xor eax, ebx
    0x89, 0xc3,                   // 0x0c  mov ebx, eax
    0xc1, 0xeb, 0x11,             // 0x0e  shr ebx, 17
    0x31, 0xd8,                   // 0x11  xor eax, ebx
    0x89, 0xc3,                   // 0x13  mov ebx, eax
    0xc1, 0xe3, 0x05,             // 0x15  shl ebx, 5
    0x31, 0xd8,                   // 0x18  xor eax, ebx
    0xab,                         // 0x1a  stosd             ; [EDI] = EAX, EDI += 4
    0xe2, 0xe8,                   // 0x1b  loop fill         ; ECX -= 1, again while not 0
    0x89, 0xe9,                   // 0x1d  mov ecx, ebp
    0x31, 0xd2,                   // 0x1f  xor edx, edx      ; EDX: the checksum
                                  //       sum:
    0xad,                         // 0x21  lodsd             ; EAX = [ESI], ESI += 4
    0xc1, 0xc2, 0x05,             // 0x22  rol edx, 5
    0x31, 0xc2,                   // 0x25  xor edx, eax
    0x01, 0xca,                   // 0x27  add edx, ecx      ; ECX: dwords left, this one included
    0xe2, 0xf6,                   // 0x29  loop sum
    0x89, 0xd0,                   // 0x2b  mov eax, edx
    0xba, 0x00, 0x05, 0x00, 0x00, // 0x2d  mov edx, 0x500    ; RESULT_PORT
    0xef,                         // 0x32  out dx, eax
    0xf4,                         // 0x33  hlt
];

/// Where the guest's code is: the vault image's page.
pub const CODE_GPA: u64 = map::IMAGE_BASE;
/// The guest's RIP once it has halted (just past its HLT).
pub const HALTED_RIP: u64 = CODE_GPA + GUEST_CODE.len() as u64;
/// The port the guest writes its checksum to.
pub const RESULT_PORT: u16 = 0x500;
/// The longest buffer, in dwords (64 KiB).
pub const MAX_DWORDS: u32 = 16 * 1024;
/// What the host writes over a buffer and the dword after it before each run.
pub const POISON: u32 = 0xdead_c0de;
/// Guest memory, slot 0: guest-physical 0 to the end of the vault's per-vCPU regions. Only
/// the pages the guest touches get host memory.
const LOW_MEMORY: (u64, u64) = (0, map::VAULT_END);
/// Guest memory, slot 1: the first block of key slots.
const KEY_MEMORY: (u64, u64) = (map::KEY_SLOTS_BASE, map::KEY_SLOT_BLOCK_SIZE);
/// CR0.PE (protection on) and CR0.ET; CD and NW clear, PG off.
const CR0_PE_ET: u64 = 0x11;
/// Exits one run may take: the OUT, then the HLT; more is a guest gone astray.
const MAX_EXITS: usize = 4;
/// How long after the end of `--seconds` a guest may still be running before the watchdog
/// stops it and counts it as hung.
const GRACE: Duration = Duration::from_secs(10);
/// The watchdog's signal: its handler does nothing, so that KVM_RUN returns EINTR.
const KICK_SIGNAL: libc::c_int = libc::SIGUSR1;
/// Problems printed in full; later ones are only counted.
const PRINT_LIMIT: usize = 20;

/// One step of xorshift32 (Marsaglia's shifts 13, 17, 5): `(EBX, EAX)` after the guest's
/// round, EBX being the last shifted value.
pub fn xorshift32_round(x: u32) -> (u32, u32) {
    let x = x ^ (x << 13);
    let x = x ^ (x >> 17);
    let shifted = x << 5;
    (shifted, x ^ shifted)
}

/// The guest's checksum of `words`: rotate left by 5, xor the dword, add the count of dwords
/// left (this one included).
pub fn checksum(words: &[u32]) -> u32 {
    let mut left = words.len() as u32;
    words.iter().fold(0u32, |sum, &word| {
        let sum = (sum.rotate_left(5) ^ word).wrapping_add(left);
        left = left.wrapping_sub(1);
        sum
    })
}

/// Which of the vault's regions a buffer lies in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The pages after the vault image, below its page tables.
    Low,
    /// The comm block of a vault vCPU.
    CommBlock(VcpuIndex),
    /// The GHCB of a vault vCPU.
    Ghcb(VcpuIndex),
    /// The stack of a vault vCPU.
    Stack(VcpuIndex),
    /// The first block of key slots.
    KeySlots,
}

/// Names of the kinds of [`Target`], in [`Target::kind`] order.
pub const TARGET_KINDS: [&str; 5] = ["low pages", "comm blocks", "GHCBs", "stacks", "key slots"];

impl Target {
    /// Guest-physical start and length of the region.
    pub fn region(self) -> (u64, u64) {
        let low = CODE_GPA + PAGE_SIZE;
        match self {
            Self::Low => (low, map::PAGE_TABLES_BASE - low),
            Self::CommBlock(vcpu) => (vcpu.comm_block_gpa(), PAGE_SIZE),
            Self::Ghcb(vcpu) => (vcpu.ghcb_gpa(), PAGE_SIZE),
            Self::Stack(vcpu) => (vcpu.stack_bottom(), map::STACK_SIZE),
            Self::KeySlots => (map::KEY_SLOTS_BASE, map::KEY_SLOT_BLOCK_SIZE),
        }
    }

    /// The index of this kind in [`TARGET_KINDS`].
    pub fn kind(self) -> usize {
        match self {
            Self::Low => 0,
            Self::CommBlock(_) => 1,
            Self::Ghcb(_) => 2,
            Self::Stack(_) => 3,
            Self::KeySlots => 4,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Low => write!(f, "the pages after the vault image"),
            Self::CommBlock(v) => write!(f, "the comm block of vault vCPU {}", v.get()),
            Self::Ghcb(v) => write!(f, "the GHCB of vault vCPU {}", v.get()),
            Self::Stack(v) => write!(f, "the stack of vault vCPU {}", v.get()),
            Self::KeySlots => write!(f, "the first block of key slots"),
        }
    }
}

/// One run of the guest: its seed and its buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job {
    /// The seed, in EAX.
    pub seed: u32,
    /// Guest-physical start of the buffer, in EDI (dword-aligned).
    pub gpa: u64,
    /// Length of the buffer in dwords, in ECX (1 ..= [`MAX_DWORDS`]).
    pub dwords: u32,
    /// The region the buffer is in.
    pub target: Target,
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seed {:#010x}, {} dwords at {:#x} ({})", self.seed, self.dwords, self.gpa, self.target)
    }
}

/// A job with a random seed and a buffer in one of the vault's regions: half of the per-vCPU
/// ones belong to `own` (this CPU's vault vCPU), the others to one of `vcpus`. A quarter of
/// the buffers start at their region's start and take all of it (less the dword after them)
/// up to [`MAX_DWORDS`]; the rest are random spans.
pub fn pick_job(rng: &mut impl Rng, vcpus: &[VcpuIndex], own: Option<VcpuIndex>) -> Job {
    let vcpu = match own {
        Some(own) if rng.gen_bool(0.5) => Some(own),
        _ => vcpus.choose(rng).copied().or(own),
    };
    let target = match (rng.gen_range(0..5), vcpu) {
        (1, Some(v)) => Target::CommBlock(v),
        (2, Some(v)) => Target::Ghcb(v),
        (3, Some(v)) => Target::Stack(v),
        (4, _) => Target::KeySlots,
        _ => Target::Low,
    };
    let (start, len) = target.region();
    // Room for the buffer and the poisoned dword after it.
    let room = u32::try_from(len / 4 - 1).unwrap_or(u32::MAX);
    let (first, dwords) = if rng.gen_bool(0.25) {
        (0, room.min(MAX_DWORDS))
    } else {
        let dwords = rng.gen_range(1..=room.min(MAX_DWORDS));
        (rng.gen_range(0..=room - dwords), dwords)
    };
    Job { seed: rng.gen(), gpa: start + 4 * u64::from(first), dwords, target }
}

/// Guest registers at the start of a run: the job in EAX, ECX, EDI; the code's address in
/// RIP; canaries derived from the seed in RSP (which the guest does not use) and R8–R15
/// (which 32-bit code cannot reach), to show they come back as they went in.
pub fn initial_regs(job: &Job) -> kvm_regs {
    let canary = |i: u32| (u64::from(job.seed) ^ 0x5eed).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(i * 7);
    kvm_regs {
        rax: u64::from(job.seed),
        rcx: u64::from(job.dwords),
        rdi: job.gpa,
        rsp: canary(0) & 0xffff_fff0,
        r8: canary(1),
        r9: canary(2),
        r10: canary(3),
        r11: canary(4),
        r12: canary(5),
        r13: canary(6),
        r14: canary(7),
        r15: canary(8),
        rip: CODE_GPA,
        // Bit 1 is always set; IF clear.
        rflags: 2,
        ..kvm_regs::default()
    }
}

/// What the guest must leave behind for a job.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// The buffer.
    pub words: Vec<u32>,
    /// The checksum it writes to [`RESULT_PORT`].
    pub checksum: u32,
    /// Its registers at the HLT (RFLAGS aside, which is not checked).
    pub regs: kvm_regs,
}

impl Model {
    /// The guest's work on `job`, done in Rust.
    pub fn of(job: &Job) -> Self {
        let mut words = Vec::with_capacity(job.dwords as usize);
        let (mut x, mut shifted) = (job.seed, 0);
        for _ in 0..job.dwords {
            (shifted, x) = xorshift32_round(x);
            words.push(x);
        }
        let checksum = checksum(&words);
        let end = job.gpa + 4 * u64::from(job.dwords);
        let regs = kvm_regs {
            rax: u64::from(checksum),
            rbx: u64::from(shifted),
            rcx: 0,
            rdx: u64::from(RESULT_PORT),
            rsi: end,
            rdi: end,
            rbp: u64::from(job.dwords),
            rip: HALTED_RIP,
            ..initial_regs(job)
        };
        Self { words, checksum, regs }
    }
}

/// The registers that differ, as `name got (expected want)`. The ones 32-bit code writes are
/// compared in their low halves (the upper halves are undefined outside 64-bit mode); R8–R15
/// and RIP in full; RFLAGS not at all.
pub fn register_differences(got: &kvm_regs, want: &kvm_regs) -> Vec<String> {
    let low = |v: u64| v & 0xffff_ffff;
    let pairs = [
        ("eax", low(got.rax), low(want.rax)),
        ("ebx", low(got.rbx), low(want.rbx)),
        ("ecx", low(got.rcx), low(want.rcx)),
        ("edx", low(got.rdx), low(want.rdx)),
        ("esi", low(got.rsi), low(want.rsi)),
        ("edi", low(got.rdi), low(want.rdi)),
        ("esp", low(got.rsp), low(want.rsp)),
        ("ebp", low(got.rbp), low(want.rbp)),
        ("r8", got.r8, want.r8),
        ("r9", got.r9, want.r9),
        ("r10", got.r10, want.r10),
        ("r11", got.r11, want.r11),
        ("r12", got.r12, want.r12),
        ("r13", got.r13, want.r13),
        ("r14", got.r14, want.r14),
        ("r15", got.r15, want.r15),
        ("rip", got.rip, want.rip),
    ];
    pairs
        .into_iter()
        .filter(|(_, g, w)| g != w)
        .map(|(name, g, w)| format!("{name} {g:#x} (expected {w:#x})"))
        .collect()
}

/// What one halted run shows against `model`: the checksum from the port, the registers,
/// and `memory` (the buffer and the dword after it, read by the host). Empty when all agree.
pub fn check_run(job: &Job, model: &Model, port_value: u32, regs: &kvm_regs, memory: &[u32]) -> Vec<String> {
    let mut problems = Vec::new();
    if port_value != model.checksum {
        problems.push(format!("checksum from the port {port_value:#010x}, expected {:#010x}", model.checksum));
    }
    let (buffer, after) = memory.split_at(memory.len().min(model.words.len()));
    let wrong: Vec<usize> =
        buffer.iter().zip(&model.words).enumerate().filter(|(_, (g, w))| g != w).map(|(i, _)| i).collect();
    if let Some(&first) = wrong.first() {
        let poisoned = wrong.iter().filter(|&&i| buffer[i] == POISON).count();
        problems.push(format!(
            "buffer: {} of {} dwords wrong ({poisoned} never written), the first at {:#x}: {:#010x}, expected {:#010x}",
            wrong.len(),
            model.words.len(),
            job.gpa + 4 * first as u64,
            buffer[first],
            model.words[first]
        ));
    }
    if buffer.len() != model.words.len() || after.len() != 1 {
        problems.push(format!("read {} dwords of guest memory, expected {}", memory.len(), model.words.len() + 1));
    } else if after[0] != POISON {
        problems.push(format!("the dword after the buffer was overwritten: {:#010x}", after[0]));
    }
    let registers = register_differences(regs, &model.regs);
    if !registers.is_empty() {
        problems.push(format!("registers at the HLT: {}", registers.join(", ")));
    }
    problems
}

/// Why a guest could not be set up or run.
#[derive(Debug)]
pub enum KvmError {
    /// `/dev/kvm` does not exist.
    NoDevice,
    /// `KVM_GET_API_VERSION` is not [`KVM_API_VERSION`].
    ApiVersion(i32),
    /// A call failed: which one, and its error.
    Call(&'static str, io::Error),
}

impl fmt::Display for KvmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDevice => write!(f, "no /dev/kvm: load kvm_amd (the CPU must offer SVM)"),
            Self::ApiVersion(v) => write!(f, "/dev/kvm speaks KVM API version {v}, expected {KVM_API_VERSION}"),
            Self::Call(what @ "KVM_CREATE_VM", e) => {
                write!(f, "{what} failed: {} (kvm_amd cannot run guests here: SVM off or in use?)", describe(e))
            }
            Self::Call(what, e) => write!(f, "{what} failed: {}", describe(e)),
        }
    }
}

/// The error of `what`, from kvm-ioctls' errno type.
fn call(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> KvmError {
    move |e| KvmError::Call(what, io::Error::from(e))
}

/// Opens `/dev/kvm` and checks its API version.
pub fn open_kvm() -> Result<Kvm, KvmError> {
    let kvm = Kvm::new().map_err(|e| match e.errno() {
        libc::ENOENT => KvmError::NoDevice,
        _ => call("opening /dev/kvm")(e),
    })?;
    match kvm.get_api_version() {
        v if u32::try_from(v) == Ok(KVM_API_VERSION) => Ok(kvm),
        v => Err(KvmError::ApiVersion(v)),
    }
}

/// Anonymous host memory that a VM has as one memory slot, at `gpa`. The guest writes it
/// behind Rust's back, so it is only ever reached through raw pointers, never references,
/// and only while the vCPU is not running (runs are synchronous, on the thread that owns it).
struct GuestMemory {
    /// Start of the mapping.
    base: NonNull<u8>,
    /// Its length in bytes.
    len: usize,
    /// The guest-physical address of `base`.
    gpa: u64,
}

impl GuestMemory {
    /// `len` bytes (a multiple of the page size) for guest-physical `gpa`; pages get host
    /// memory only once touched.
    fn new(gpa: u64, len: u64) -> Result<Self, KvmError> {
        let len = usize::try_from(len)
            .map_err(|_| KvmError::Call("sizing guest memory", io::ErrorKind::InvalidInput.into()))?;
        // SAFETY: a fresh anonymous private mapping, at an address of the kernel's choosing;
        // checked before use, unmapped in `drop`.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(KvmError::Call("mmap of guest memory", io::Error::last_os_error()));
        }
        let base = NonNull::new(base.cast::<u8>())
            .ok_or_else(|| KvmError::Call("mmap of guest memory", io::ErrorKind::AddrNotAvailable.into()))?;
        Ok(Self { base, len, gpa })
    }

    /// The host address of guest-physical `gpa .. gpa + bytes`, if all of it is here and
    /// `gpa` is dword-aligned.
    fn host(&self, gpa: u64, bytes: usize) -> Option<*mut u8> {
        let offset = usize::try_from(gpa.checked_sub(self.gpa)?).ok()?;
        if offset.checked_add(bytes)? > self.len || !gpa.is_multiple_of(4) {
            return None;
        }
        // SAFETY: `offset + bytes <= len`: the result stays inside the mapping.
        Some(unsafe { self.base.as_ptr().add(offset) })
    }

    /// Copies `bytes` to guest-physical `gpa`.
    fn write(&self, gpa: u64, bytes: &[u8]) -> Result<(), KvmError> {
        let to = self.host(gpa, bytes.len()).ok_or_else(|| outside(gpa))?;
        // SAFETY: `to .. to + len` lies in the mapping (checked by `host`), which no Rust
        // reference covers, and the vCPU is not running.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), to, bytes.len()) };
        Ok(())
    }

    /// Writes `value` to the `dwords` dwords from guest-physical `gpa`.
    fn fill(&self, gpa: u64, dwords: usize, value: u32) -> Result<(), KvmError> {
        let to = self.host(gpa, dwords * 4).ok_or_else(|| outside(gpa))?.cast::<u32>();
        for i in 0..dwords {
            // SAFETY: in the mapping (checked by `host`) and aligned (the base is page-aligned,
            // `gpa` dword-aligned); no reference covers it; the vCPU is not running.
            unsafe { to.add(i).write_volatile(value) };
        }
        Ok(())
    }

    /// The `dwords` dwords from guest-physical `gpa`, copied out.
    fn read(&self, gpa: u64, dwords: usize) -> Result<Vec<u32>, KvmError> {
        let from = self.host(gpa, dwords * 4).ok_or_else(|| outside(gpa))?.cast::<u32>();
        // SAFETY: as in `fill`; each dword is read once, into our own vector.
        Ok((0..dwords).map(|i| unsafe { from.add(i).read_volatile() }).collect())
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; nothing points into it any more
        // (the VM using it is closed first, see `Guest`).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// The error for an access outside guest memory (a bug in [`pick_job`], not the guest's).
fn outside(gpa: u64) -> KvmError {
    KvmError::Call("guest memory access", io::Error::other(format!("{gpa:#x} is outside guest memory")))
}

/// A flat 4 GiB segment: `type_` 0xb (code, execute/read) or 0x3 (data, read/write).
fn flat_segment(selector: u16, type_: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// What one run of the guest did.
#[derive(Debug)]
pub enum RunOutcome {
    /// It wrote `port_value` to [`RESULT_PORT`] and halted with `regs`; `memory` is its buffer
    /// and the dword after it, read by the host.
    Halted {
        /// The value written to the port.
        port_value: u32,
        /// The registers at the HLT.
        regs: kvm_regs,
        /// The buffer and the dword after it.
        memory: Vec<u32>,
    },
    /// It did something else (an exit other than the OUT then the HLT, or no exit in time).
    Unexpected(String),
}

/// What one KVM_RUN came back with, copied out of the vCPU's run area.
enum Step {
    /// OUT to a port, with its bytes.
    Out(u16, Vec<u8>),
    /// HLT.
    Halt,
    /// Any other exit, printed.
    Other(String),
    /// KVM_RUN was interrupted by a signal (EINTR) before the guest exited.
    Interrupted,
}

/// One VM with one vCPU, its memory and [`GUEST_CODE`], in protected mode.
pub struct Guest {
    // Fields drop in this order: the vCPU and the VM before the memory they were given.
    vcpu: VcpuFd,
    _vm: VmFd,
    low: GuestMemory,
    keys: GuestMemory,
}

impl Guest {
    /// A new VM (KVM_CREATE_VM) with the two memory slots, the code and one vCPU.
    pub fn new(kvm: &Kvm) -> Result<Self, KvmError> {
        // The memory first, so that on an error below the VM is closed before it goes.
        let low = GuestMemory::new(LOW_MEMORY.0, LOW_MEMORY.1)?;
        let keys = GuestMemory::new(KEY_MEMORY.0, KEY_MEMORY.1)?;
        let vm = kvm.create_vm().map_err(call("KVM_CREATE_VM"))?;
        for (slot, memory) in [(0, &low), (1, &keys)] {
            let region = kvm_userspace_memory_region {
                slot,
                flags: 0,
                guest_phys_addr: memory.gpa,
                memory_size: memory.len as u64,
                userspace_addr: memory.base.as_ptr() as u64,
            };
            // SAFETY: the region is a live mapping of ours of that size, which outlives the VM
            // (`Guest`'s field order; on errors here `vm` is dropped first), and the two slots
            // do not overlap (below 24 MiB, and at 1 GiB).
            unsafe { vm.set_user_memory_region(region) }.map_err(call("KVM_SET_USER_MEMORY_REGION"))?;
        }
        low.write(CODE_GPA, &GUEST_CODE)?;
        let vcpu = vm.create_vcpu(0).map_err(call("KVM_CREATE_VCPU"))?;
        let mut sregs = vcpu.get_sregs().map_err(call("KVM_GET_SREGS"))?;
        sregs.cs = flat_segment(0x08, 0xb);
        for segment in [&mut sregs.ds, &mut sregs.es, &mut sregs.fs, &mut sregs.gs, &mut sregs.ss] {
            *segment = flat_segment(0x10, 0x3);
        }
        (sregs.cr0, sregs.cr4, sregs.efer) = (CR0_PE_ET, 0, 0);
        vcpu.set_sregs(&sregs).map_err(call("KVM_SET_SREGS"))?;
        Ok(Self { vcpu, _vm: vm, low, keys })
    }

    /// The memory slot holding guest-physical `gpa`.
    fn memory(&self, gpa: u64) -> &GuestMemory {
        if gpa >= self.keys.gpa {
            &self.keys
        } else {
            &self.low
        }
    }

    /// Runs `job` once: poisons the buffer and the dword after it, sets the registers, runs
    /// the vCPU to its HLT and reads the buffer back. Gives up on a run interrupted once
    /// `abandon` is set (by the watchdog).
    pub fn run(&mut self, job: &Job, abandon: &AtomicBool) -> Result<RunOutcome, KvmError> {
        let dwords = job.dwords as usize;
        self.memory(job.gpa).fill(job.gpa, dwords + 1, POISON)?;
        self.vcpu.set_regs(&initial_regs(job)).map_err(call("KVM_SET_REGS"))?;
        let mut port_value = None;
        for _ in 0..MAX_EXITS {
            let step = match self.vcpu.run() {
                Ok(VcpuExit::IoOut(port, data)) => Step::Out(port, data.to_vec()),
                Ok(VcpuExit::Hlt) => Step::Halt,
                Ok(exit) => Step::Other(format!("{exit:?}")),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Step::Interrupted,
                Err(e) => return Err(call("KVM_RUN")(e)),
            };
            match step {
                Step::Out(RESULT_PORT, data) if port_value.is_none() => match <[u8; 4]>::try_from(data.as_slice()) {
                    Ok(bytes) => port_value = Some(u32::from_le_bytes(bytes)),
                    Err(_) => {
                        return Ok(RunOutcome::Unexpected(format!("OUT of {} bytes to the result port", data.len())))
                    }
                },
                Step::Out(port, data) => {
                    return Ok(RunOutcome::Unexpected(format!("OUT {data:02x?} to port {port:#x}")));
                }
                Step::Halt => {
                    let Some(port_value) = port_value else {
                        return Ok(RunOutcome::Unexpected("HLT without the OUT".into()));
                    };
                    let regs = self.vcpu.get_regs().map_err(call("KVM_GET_REGS"))?;
                    let memory = self.memory(job.gpa).read(job.gpa, dwords + 1)?;
                    return Ok(RunOutcome::Halted { port_value, regs, memory });
                }
                Step::Other(exit) => return Ok(RunOutcome::Unexpected(format!("exit {exit}"))),
                Step::Interrupted if abandon.load(Ordering::Acquire) => {
                    return Ok(RunOutcome::Unexpected(format!(
                        "no HLT {} s after the end of the run (stopped by the watchdog)",
                        GRACE.as_secs()
                    )));
                }
                // A stray signal: KVM_RUN goes on where the guest was.
                Step::Interrupted => {}
            }
        }
        Ok(RunOutcome::Unexpected(format!("no HLT after {MAX_EXITS} exits")))
    }
}

/// A worker's thread, for the watchdog's signal; empty once the worker is done with KVM.
#[derive(Default)]
struct Kickable(Mutex<Option<libc::pthread_t>>);

impl Kickable {
    /// Records the calling thread until the returned guard goes.
    fn register(&self) -> Registered<'_> {
        // SAFETY: pthread_self takes no arguments and cannot fail.
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(unsafe { libc::pthread_self() });
        Registered(self)
    }

    /// Sends [`KICK_SIGNAL`] to the thread, if it is still registered.
    fn kick(&self) {
        let thread = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(thread) = *thread {
            // SAFETY: the thread is alive: it deregisters (under this lock, held here) before
            // it ends. The signal's handler does nothing.
            unsafe { libc::pthread_kill(thread, KICK_SIGNAL) };
        }
    }
}

/// Deregisters its thread from a [`Kickable`] when dropped.
struct Registered<'a>(&'a Kickable);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        *self.0 .0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// The handler of [`KICK_SIGNAL`]: nothing; its only effect is to interrupt KVM_RUN.
extern "C" fn on_kick(_signal: libc::c_int) {}

/// Installs [`on_kick`] for [`KICK_SIGNAL`], without SA_RESTART.
fn install_kick_handler() -> io::Result<()> {
    // SAFETY: an all-zero `sigaction` is valid (no flags, empty mask); the handler is set below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_kick as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: `action.sa_mask` is ours to initialise.
    unsafe { libc::sigemptyset(&raw mut action.sa_mask) };
    // SAFETY: `action` is a valid sigaction whose handler does nothing (so is async-signal-safe);
    // the old action is not asked for.
    if unsafe { libc::sigaction(KICK_SIGNAL, &raw const action, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What one thread did.
#[derive(Debug, Default)]
struct ThreadReport {
    /// The thread's number.
    thread: usize,
    /// The CPU it was pinned to.
    cpu: usize,
    /// Where `sched_getcpu` said the thread was at the end.
    ran_on: Option<usize>,
    /// Runs that halted and were checked.
    runs: u64,
    /// Bytes the checked runs filled and summed.
    bytes: u64,
    /// Checked runs by the kind of their buffer's region ([`TARGET_KINDS`]).
    by_target: [u64; 5],
    /// Checked runs that disagreed with the model.
    mismatches: u64,
    /// Runs that ended in an unexpected exit (or none).
    unexpected: u64,
    /// Calls that failed.
    errors: u64,
}

/// Shared by the workers.
struct Shared<'a> {
    /// `/dev/kvm`, on which each thread creates its VM.
    kvm: &'a Kvm,
    /// The run's seed, from which each thread's jobs are drawn.
    seed: u64,
    /// When the threads stop starting runs.
    deadline: Instant,
    /// Set by the watchdog: interrupted runs give up.
    abandon: AtomicBool,
    /// Problems printed so far (see [`PRINT_LIMIT`]).
    printed: AtomicUsize,
    /// The vault vCPUs of the allowed CPUs.
    vcpus: Vec<VcpuIndex>,
}

/// Runs `kvm-guest`.
pub fn run(args: &KvmGuestArgs) -> Verdict {
    let cpus = match cpu::allowed_cpus() {
        Ok(cpus) if !cpus.is_empty() => cpus,
        Ok(_) => return Verdict::fail("sched_getaffinity gave no CPUs".into()),
        Err(e) => return Verdict::fail(format!("sched_getaffinity: {}", describe(&e))),
    };
    let threads = args.threads.unwrap_or(cpus.len());
    // One VM set up in full before any thread starts, so that a host without usable KVM
    // gets one clear message.
    let kvm = match open_kvm().and_then(|kvm| Guest::new(&kvm).map(|_| kvm)) {
        Ok(kvm) => kvm,
        Err(e) => return Verdict::fail(e.to_string()),
    };
    if let Err(e) = install_kick_handler() {
        return Verdict::fail(format!("sigaction: {}", describe(&e)));
    }
    let seed = default_seed();
    let pinned: Vec<usize> = (0..threads).map(|thread| cpus[thread % cpus.len()]).collect();
    let sevault = if std::path::Path::new("/sys/module/sevault").exists() { "loaded" } else { "not loaded" };
    println!(
        "kvm-guest: {}, each with its own VM of one vCPU, pinned to CPUs {}, {} s, seed {seed:#x}; sevault.ko {sevault}, \
         KVM modules: {}",
        plural(threads, "thread"),
        cpu_list(&pinned),
        args.seconds,
        kvm_modules()
    );
    let start = Instant::now();
    let shared = Shared {
        kvm: &kvm,
        seed,
        deadline: start + Duration::from_secs_f64(args.seconds),
        abandon: AtomicBool::new(false),
        printed: AtomicUsize::new(0),
        vcpus: cpus.iter().filter_map(|&c| VcpuIndex::new(u32::try_from(c).ok()?)).collect(),
    };
    let kickables: Vec<Kickable> = (0..threads).map(|_| Kickable::default()).collect();
    let reports: Vec<ThreadReport> = std::thread::scope(|scope| {
        let handles: Vec<_> = kickables
            .iter()
            .zip(&pinned)
            .enumerate()
            .map(|(thread, (kickable, &cpu))| {
                let shared = &shared;
                scope.spawn(move || worker(shared, kickable, thread, cpu))
            })
            .collect();
        // The watchdog: past the grace period, interrupt the runs still going.
        while handles.iter().any(|h| !h.is_finished()) {
            if Instant::now() > shared.deadline + GRACE {
                shared.abandon.store(true, Ordering::Release);
                kickables.iter().for_each(Kickable::kick);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        cpu::join_workers(handles, |thread| ThreadReport { thread, errors: 1, ..ThreadReport::default() })
    });
    let elapsed = start.elapsed().as_secs_f64();
    summarise(&reports, &shared, elapsed)
}

/// The per-thread lines and the verdict.
fn summarise(reports: &[ThreadReport], shared: &Shared<'_>, elapsed: f64) -> Verdict {
    let mut total = ThreadReport::default();
    for r in reports {
        let ran_on = r.ran_on.map_or("?".to_string(), |c| c.to_string());
        println!(
            "  thread {}: pinned to CPU {}, ran on CPU {ran_on}: {} runs checked, {} KiB, {} mismatches, {} unexpected \
             exits, {} errors",
            r.thread,
            r.cpu,
            r.runs,
            r.bytes >> 10,
            r.mismatches,
            r.unexpected,
            r.errors
        );
        total.runs += r.runs;
        total.bytes += r.bytes;
        total.mismatches += r.mismatches;
        total.unexpected += r.unexpected;
        total.errors += r.errors;
        for (sum, n) in total.by_target.iter_mut().zip(r.by_target) {
            *sum += n;
        }
    }
    if shared.printed.load(Ordering::Relaxed) > PRINT_LIMIT {
        println!("  (only the first {PRINT_LIMIT} problems were printed)");
    }
    let pinned: Vec<usize> = reports.iter().map(|r| r.cpu).collect();
    let targets: Vec<String> =
        TARGET_KINDS.iter().zip(total.by_target).map(|(kind, n)| format!("{kind} {n}")).collect();
    let detail = format!(
        "{} checked on {} (a VM each) pinned to CPUs {} ({:.1} MiB filled and summed by the guests; buffers in {}), {} \
         mismatches, {} unexpected exits, {} errors, {elapsed:.1} s, seed {:#x}",
        plural(total.runs as usize, "guest run"),
        plural(reports.len(), "thread"),
        cpu_list(&pinned),
        total.bytes as f64 / f64::from(1 << 20),
        targets.join(", "),
        total.mismatches,
        total.unexpected,
        total.errors,
        shared.seed
    );
    let idle = reports.iter().filter(|r| r.runs == 0).count();
    let misplaced = reports.iter().filter(|r| r.ran_on != Some(r.cpu)).count();
    let mut problems = Vec::new();
    if idle > 0 {
        problems.push(format!("{idle} threads checked no run"));
    }
    if misplaced > 0 {
        problems.push(format!("{misplaced} threads not on their CPU"));
    }
    if total.mismatches == 0 && total.unexpected == 0 && total.errors == 0 && problems.is_empty() {
        Verdict::pass(detail)
    } else if problems.is_empty() {
        Verdict::fail(detail)
    } else {
        Verdict::fail(format!("{detail}; {}", problems.join("; ")))
    }
}

/// `1 thread`, `2 threads`.
fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// The KVM modules loaded (`kvm`, `kvm_amd`, ...), from /sys/module.
fn kvm_modules() -> String {
    let mut names: Vec<String> = std::fs::read_dir("/sys/module")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.starts_with("kvm")).collect()
        })
        .unwrap_or_default();
    names.sort();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// `0,1,3`.
fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

/// One thread: pins itself, makes its VM, runs jobs until the deadline.
fn worker(shared: &Shared<'_>, kickable: &Kickable, thread: usize, cpu: usize) -> ThreadReport {
    let _registered = kickable.register();
    let mut report = ThreadReport { thread, cpu, ..ThreadReport::default() };
    let problem = |text: String| {
        if shared.printed.fetch_add(1, Ordering::Relaxed) < PRINT_LIMIT {
            println!("  thread {thread} (CPU {cpu}): {text}");
        }
    };
    if let Err(e) = cpu::pin_current_thread(cpu) {
        problem(format!("cannot pin to CPU {cpu}: {}", describe(&e)));
        report.errors += 1;
        return report;
    }
    let mut guest = match Guest::new(shared.kvm) {
        Ok(guest) => guest,
        Err(e) => {
            problem(e.to_string());
            report.errors += 1;
            return report;
        }
    };
    let mut rng = SmallRng::seed_from_u64(shared.seed ^ (thread as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let own = u32::try_from(cpu).ok().and_then(VcpuIndex::new);
    let mut index = 0u64;
    while Instant::now() < shared.deadline && !shared.abandon.load(Ordering::Acquire) {
        let job = pick_job(&mut rng, &shared.vcpus, own);
        let fresh_vm = match guest.run(&job, &shared.abandon) {
            Ok(RunOutcome::Halted { port_value, regs, memory }) => {
                let problems = check_run(&job, &Model::of(&job), port_value, &regs, &memory);
                report.runs += 1;
                report.bytes += 4 * u64::from(job.dwords);
                report.by_target[job.target.kind()] += 1;
                if !problems.is_empty() {
                    report.mismatches += 1;
                    problem(format!("run {index} ({job}): MISMATCH: {}", problems.join("; ")));
                }
                false
            }
            Ok(RunOutcome::Unexpected(what)) => {
                report.unexpected += 1;
                problem(format!("run {index} ({job}): unexpected: {what}"));
                true
            }
            Err(e) => {
                report.errors += 1;
                problem(format!("run {index} ({job}): {e}"));
                true
            }
        };
        // After anything unexpected, a new VM: the old vCPU's state is unknown.
        if fresh_vm && !shared.abandon.load(Ordering::Acquire) {
            match Guest::new(shared.kvm) {
                Ok(new) => guest = new,
                Err(e) => {
                    problem(format!("a new VM after run {index}: {e}"));
                    report.errors += 1;
                    break;
                }
            }
        }
        index += 1;
    }
    report.ran_on = cpu::current_cpu();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first outputs of xorshift32 from 1 (Marsaglia 2003: 270369, ...), and a zero seed
    /// giving zeros.
    #[test]
    fn xorshift32_known_answers() {
        let job = |seed, dwords| Job { seed, gpa: 0x2000, dwords, target: Target::Low };
        assert_eq!(Model::of(&job(1, 5)).words, [0x0004_2021, 0x0408_0601, 0x9dcc_a8c5, 0x1255_994f, 0x8ef9_17d1]);
        assert_eq!(xorshift32_round(1), (0x0004_0020, 0x0004_2021));
        assert_eq!(Model::of(&job(0, 3)).words, [0, 0, 0]);
    }

    /// Checksums worked out by an independent implementation (Python).
    #[test]
    fn checksum_known_answers() {
        let job = |seed, dwords| Job { seed, gpa: 0x2000, dwords, target: Target::Low };
        assert_eq!(checksum(&[]), 0);
        assert_eq!(checksum(&[0, 0, 0]), 0xc41);
        assert_eq!(Model::of(&job(1, 5)).checksum, 0xf78b_9dc3);
        assert_eq!(Model::of(&job(0xdead_beef, 2048)).checksum, 0x87ef_63f1);
        assert_eq!(Model::of(&job(0x1234_5678, 0x3000)).checksum, 0x39af_028a);
        // Order matters.
        assert_ne!(checksum(&[1, 2]), checksum(&[2, 1]));
    }

    /// The bytes match the listing: branch targets, the port, OUT and HLT at the end.
    #[test]
    fn guest_code_layout() {
        let target = |at: usize| (at as i64 + 2 + i64::from(GUEST_CODE[at + 1] as i8)) as usize;
        assert_eq!((GUEST_CODE[0x1b], target(0x1b)), (0xe2, 0x05), "loop fill");
        assert_eq!((GUEST_CODE[0x29], target(0x29)), (0xe2, 0x21), "loop sum");
        assert_eq!((GUEST_CODE[0x1a], GUEST_CODE[0x21]), (0xab, 0xad), "stosd, lodsd");
        assert_eq!(GUEST_CODE[0x2d..0x32], [0xba, 0x00, 0x05, 0x00, 0x00]);
        assert_eq!(
            u32::from_le_bytes([GUEST_CODE[0x2e], GUEST_CODE[0x2f], GUEST_CODE[0x30], GUEST_CODE[0x31]]),
            u32::from(RESULT_PORT)
        );
        assert_eq!(GUEST_CODE[GUEST_CODE.len() - 2..], [0xef, 0xf4]);
        assert_eq!(HALTED_RIP, 0x1034);
        // The code and the buffers below the page tables share no page.
        assert!(CODE_GPA + GUEST_CODE.len() as u64 <= Target::Low.region().0);
    }

    #[test]
    fn the_model_predicts_the_registers() {
        let job = Job { seed: 1, gpa: 0x3000, dwords: 5, target: Target::Low };
        let model = Model::of(&job);
        let start = initial_regs(&job);
        assert_eq!((start.rax, start.rcx, start.rdi, start.rip, start.rflags), (1, 5, 0x3000, CODE_GPA, 2));
        assert_eq!((model.regs.rax, model.regs.rcx, model.regs.rdx), (0xf78b_9dc3, 0, 0x500));
        assert_eq!((model.regs.rsi, model.regs.rdi, model.regs.rbp, model.regs.rip), (0x3014, 0x3014, 5, HALTED_RIP));
        // EBX: the last round's shifted value, from the fourth word.
        assert_eq!(model.regs.rbx, u64::from(xorshift32_round(0x1255_994f).0));
        assert_eq!((model.regs.rsp, model.regs.r8, model.regs.r15), (start.rsp, start.r8, start.r15));
        assert_ne!(initial_regs(&Job { seed: 2, ..job }).r8, start.r8);
    }

    #[test]
    fn a_faithful_run_passes_and_each_fault_is_named() {
        let job = Job { seed: 7, gpa: 0x4000, dwords: 64, target: Target::Low };
        let model = Model::of(&job);
        let mut memory = model.words.clone();
        memory.push(POISON);
        assert_eq!(check_run(&job, &model, model.checksum, &model.regs, &memory), Vec::<String>::new());
        // Upper halves of the 32-bit registers and RFLAGS are not compared.
        let regs = kvm_regs { rax: model.regs.rax | 1 << 40, rflags: 0x246, ..model.regs };
        assert!(check_run(&job, &model, model.checksum, &regs, &memory).is_empty());

        let one = |port: u32, regs: &kvm_regs, memory: &[u32]| {
            let problems = check_run(&job, &model, port, regs, memory);
            assert_eq!(problems.len(), 1, "{problems:?}");
            problems[0].clone()
        };
        assert!(one(model.checksum ^ 1, &model.regs, &memory).starts_with("checksum from the port"));
        let mut stale = memory.clone();
        stale[10..20].fill(POISON);
        assert_eq!(
            one(model.checksum, &model.regs, &stale),
            format!(
                "buffer: 10 of 64 dwords wrong (10 never written), the first at 0x4028: 0xdeadc0de, expected {:#010x}",
                model.words[10]
            )
        );
        let mut beyond = memory.clone();
        beyond[64] = 0;
        assert!(one(model.checksum, &model.regs, &beyond).contains("after the buffer was overwritten"));
        assert!(one(model.checksum, &model.regs, &memory[..10]).starts_with("read 10 dwords"));
        let regs = kvm_regs { r9: 0, rip: 0x1033, ..model.regs };
        let text = one(model.checksum, &regs, &memory);
        assert!(text.contains("r9 0x0") && text.contains("rip 0x1033 (expected 0x1034)"), "{text}");
    }

    #[test]
    fn jobs_stay_in_their_regions_and_reach_every_kind() {
        let vcpus: Vec<VcpuIndex> = [0, 1, 5].into_iter().filter_map(VcpuIndex::new).collect();
        let mut rng = SmallRng::seed_from_u64(3);
        let mut kinds = [0u32; 5];
        let mut full = 0;
        let mut seeds = std::collections::BTreeSet::new();
        for _ in 0..20_000 {
            let job = pick_job(&mut rng, &vcpus, vcpus.first().copied());
            let (start, len) = job.target.region();
            let end = job.gpa + 4 * u64::from(job.dwords);
            assert!(job.gpa >= start && end + 4 <= start + len, "{job}");
            assert!(job.gpa % 4 == 0 && (1..=MAX_DWORDS).contains(&job.dwords), "{job}");
            let in_low = LOW_MEMORY.0 + PAGE_SIZE * 2 <= job.gpa && end + 4 <= LOW_MEMORY.1;
            let in_keys = KEY_MEMORY.0 <= job.gpa && end + 4 <= KEY_MEMORY.0 + KEY_MEMORY.1;
            assert!(in_low || in_keys, "{job}");
            if let Target::CommBlock(v) | Target::Ghcb(v) | Target::Stack(v) = job.target {
                assert!(vcpus.contains(&v));
            }
            kinds[job.target.kind()] += 1;
            full += u32::from(job.gpa == start && end + 4 == start + len.min(4 * u64::from(MAX_DWORDS) + 4));
            seeds.insert(job.seed);
        }
        assert!(kinds.iter().all(|&n| n > 3000), "{kinds:?}");
        assert!(full > 4000, "{full}");
        assert!(seeds.len() > 19_000);
        // Without a vault vCPU for the CPU (beyond MAX_VCPUS), still valid jobs.
        let job = pick_job(&mut rng, &[], None);
        assert!(matches!(job.target, Target::Low | Target::KeySlots), "{job}");
    }

    /// One run per kind of region on a real KVM guest, and a guest made to halt early; skipped
    /// (with a note) only where there is no /dev/kvm at all.
    #[test]
    fn real_guest_where_there_is_kvm() {
        if !std::path::Path::new("/dev/kvm").exists() {
            eprintln!("real_guest_where_there_is_kvm: skipped, no /dev/kvm");
            return;
        }
        // A /dev/kvm that cannot run guests (no access, a paravirtual KVM without support):
        // nothing to check here; the nested VM runs this for real.
        let Ok(kvm) = open_kvm() else {
            eprintln!("real_guest_where_there_is_kvm: skipped, /dev/kvm cannot be opened");
            return;
        };
        let Ok(mut guest) = Guest::new(&kvm) else {
            eprintln!("real_guest_where_there_is_kvm: skipped, KVM cannot create this guest here");
            return;
        };
        let vcpu = VcpuIndex::new(1).unwrap();
        let abandon = AtomicBool::new(false);
        for target in [Target::Low, Target::CommBlock(vcpu), Target::Ghcb(vcpu), Target::Stack(vcpu), Target::KeySlots]
        {
            let (start, len) = target.region();
            let job = Job { seed: 0x1234_5678, gpa: start + 8, dwords: u32::try_from(len / 4 - 3).unwrap(), target };
            let RunOutcome::Halted { port_value, regs, memory } = guest.run(&job, &abandon).unwrap() else {
                panic!("{job}: no halt")
            };
            assert_eq!(check_run(&job, &Model::of(&job), port_value, &regs, &memory), Vec::<String>::new(), "{job}");
        }
        // HLT as the first instruction: an exit the host must not take for a result.
        guest.low.write(CODE_GPA, &[0xf4]).unwrap();
        let job = pick_job(&mut SmallRng::seed_from_u64(1), &[vcpu], Some(vcpu));
        match guest.run(&job, &abandon).unwrap() {
            RunOutcome::Unexpected(what) => assert_eq!(what, "HLT without the OUT"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plurals() {
        assert_eq!(
            (plural(1, "thread"), plural(2, "thread"), plural(0, "guest run")),
            ("1 thread".into(), "2 threads".into(), "0 guest runs".into())
        );
    }

    #[test]
    fn messages_name_the_fix() {
        assert_eq!(KvmError::NoDevice.to_string(), "no /dev/kvm: load kvm_amd (the CPU must offer SVM)");
        let e = KvmError::Call("KVM_CREATE_VM", io::Error::from_raw_os_error(libc::EBUSY));
        assert!(e.to_string().starts_with("KVM_CREATE_VM failed: EBUSY"), "{e}");
    }
}
