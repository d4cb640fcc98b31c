//! The kernel-facing half of the core: built only for `x86_64-unknown-none`, linked into
//! `sevault.ko`. Entry points for the C glue are the `sevault_rust_*` functions below; the
//! interface is `hv/kernel/sevault_glue.h` and [`ffi`].
pub mod cpu;
pub mod ffi;
pub mod log;
pub mod psp;
pub mod slots;
pub mod vault;

use ffi::{Job, Key, Request, Stats};

/// Module init: 0 or a negative errno. `sev_mode`: 0 off, 1 SEV, 2 SEV-ES (`sev=`).
#[no_mangle]
pub extern "C" fn sevault_rust_init(sev_mode: u32) -> i32 {
    vault::init(sev_mode)
}

/// Module exit.
#[no_mangle]
pub extern "C" fn sevault_rust_exit() {
    vault::exit()
}

/// CPU-hotplug callback (process context, on CPU `cpu`; also for every CPU online at load):
/// makes the CPU's vCPU if it has none. 0 or a negative errno (the CPU stays offline).
#[no_mangle]
pub extern "C" fn sevault_rust_cpu_online(cpu: u32) -> i32 {
    vault::cpu_online(cpu)
}

/// After the online CPUs' vCPUs are made: the load message.
#[no_mangle]
pub extern "C" fn sevault_rust_announce() {
    vault::announce()
}

/// `setkey` of both algorithms.
///
/// # Safety
/// `key` points to the transform's context; `bytes` to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn sevault_rust_setkey(key: *mut Key, bytes: *const u8, len: u32, xts: u32) -> i32 {
    // SAFETY: the glue passes the transform context and the caller's key buffer.
    let (key, bytes) = unsafe { (&mut *key, core::slice::from_raw_parts(bytes, len as usize)) };
    vault::setkey(key, bytes, xts != 0)
}

/// Transform exit.
///
/// # Safety
/// `key` points to the transform's context.
#[no_mangle]
pub unsafe extern "C" fn sevault_rust_clear_key(key: *mut Key) {
    // SAFETY: the glue passes the transform context.
    vault::clear_key(unsafe { &mut *key })
}

/// encrypt/decrypt of every algorithm (`mode`: a `sevault_abi::Mode`).
///
/// # Safety
/// `key` and `request` point to live structures built by the glue for this request.
#[no_mangle]
pub unsafe extern "C" fn sevault_rust_crypt(key: *const Key, request: *const Request, decrypt: u32, mode: u32) -> i32 {
    // SAFETY: the glue passes live structures.
    let (key, request) = unsafe { (&*key, &*request) };
    vault::crypt(key, request, decrypt != 0, mode)
}

/// Serves `count` (at most 16) queued crypto requests together, in as few VMRUNs as the
/// comm block allows; sets each job's `result`.
///
/// # Safety
/// `jobs` points to `count` live jobs whose key, scatterlists, IV and scratch stay valid for
/// the call; preemption may be on (the vault runs inside `kernel_fpu_begin`/`end`).
#[no_mangle]
pub unsafe extern "C" fn sevault_rust_crypt_batch(jobs: *mut Job, count: u32) {
    if jobs.is_null() || count == 0 {
        return;
    }
    // SAFETY: the glue passes `count` live jobs.
    let jobs = unsafe { core::slice::from_raw_parts_mut(jobs, count as usize) };
    vault::crypt_batch(jobs);
}

/// Bytes of request context a queued request needs for its state between batches
/// (`vault::JobScratch`; 8-aligned).
#[no_mangle]
pub extern "C" fn sevault_rust_job_scratch_bytes() -> u32 {
    const _: () = assert!(core::mem::align_of::<vault::JobScratch>() <= 8);
    core::mem::size_of::<vault::JobScratch>() as u32
}

/// Per-CPU statistics for debugfs: 1 and `*out` filled if `cpu` has a vCPU.
///
/// # Safety
/// `out` points to writable `struct sevault_stats`.
#[no_mangle]
pub unsafe extern "C" fn sevault_rust_stats(cpu: u32, out: *mut Stats) -> u32 {
    match vault::stats(cpu) {
        Some(stats) => {
            // SAFETY: the glue passes a writable struct.
            unsafe { out.write(stats) };
            1
        }
        None => 0,
    }
}

/// Vault rebuilds since load.
#[no_mangle]
pub extern "C" fn sevault_rust_rebuilds() -> u64 {
    vault::rebuilds()
}

/// The glue's module notifier, before kvm_amd comes: the TLB-flush VMCBs are allocated
/// (process context). 0 or a negative errno.
#[no_mangle]
pub extern "C" fn sevault_rust_prepare_kvm_amd() -> i32 {
    vault::prepare_for_kvm_amd()
}

/// The glue's module notifier: kvm_amd is coming (1) or going (0).
#[no_mangle]
pub extern "C" fn sevault_rust_set_kvm_amd(loaded: u32) {
    vault::set_kvm_amd(loaded != 0)
}

/// 1 while kvm_amd is known to be loaded.
#[no_mangle]
pub extern "C" fn sevault_rust_kvm_amd() -> u32 {
    u32::from(vault::kvm_amd())
}

/// KiB of host memory the module holds now (vault, vCPUs, key slots, TLB-flush VMCBs).
#[no_mangle]
pub extern "C" fn sevault_rust_memory_kib() -> u64 {
    vault::memory().total as u64
}

/// Key slots backed with memory.
#[no_mangle]
pub extern "C" fn sevault_rust_key_slots() -> u64 {
    slots::blocks() as u64 * u64::from(sevault_abi::KEY_SLOTS_PER_BLOCK)
}

/// TLB flushes after vault requests so far.
#[no_mangle]
pub extern "C" fn sevault_rust_tlb_flushes() -> u64 {
    vault::tlb_flushes()
}

/// IPI handler (interrupts off): flush the vault's ASID on this CPU if kvm_amd is loaded,
/// or always with `force` (the load-time self-test). 1 if flushed (or nothing to do).
#[no_mangle]
pub extern "C" fn sevault_rust_flush_this_cpu(force: u32) -> u32 {
    u32::from(vault::flush_this_cpu(force != 0))
}

/// The current vault generation.
#[no_mangle]
pub extern "C" fn sevault_rust_generation() -> u64 {
    vault::generation()
}

/// debugfs `inject_fault`: the next vault run faults (1: a #PF, 2: spins until the time
/// budget ends it), to test the rebuild path. 0 or `-EINVAL`.
#[no_mangle]
pub extern "C" fn sevault_rust_inject_fault(kind: u64) -> i32 {
    vault::inject_fault(kind)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: the kernel's panic() with a format string that has no conversions.
    unsafe { ffi::panic(c"sevault: panic in the Rust core".as_ptr().cast()) }
}
