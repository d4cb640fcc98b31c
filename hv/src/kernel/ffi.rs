//! The Rust side of `hv/kernel/sevault_glue.h`: the same declarations, fixed-width types.
use core::ffi::c_void;

/// `struct sevault_key`.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Key {
    /// Key slot + 1; 0 = none.
    pub slot: u32,
    /// The key held: `sevault_abi::SlotKey::to_raw` (AES key length | XTS pair << 8); 0 = none.
    pub key: u32,
    /// Vault generation the key was set in.
    pub generation: u64,
}

/// `struct sevault_request`.
#[derive(Debug)]
#[repr(C)]
pub struct Request {
    /// `struct scatterlist *`.
    pub src: *const c_void,
    /// `struct scatterlist *`.
    pub dst: *const c_void,
    /// Bytes.
    pub len: u64,
    /// 16 bytes (CBC IV, CTR counter, XTS tweak), or null (ECB).
    pub iv: *mut u8,
}

/// `struct sevault_job`: one crypto request of a batch the glue's per-CPU worker took from
/// its queue.
#[derive(Debug)]
#[repr(C)]
pub struct Job {
    /// The transform's key (`struct sevault_key *`).
    pub key: *const Key,
    /// The request.
    pub request: Request,
    /// 1: decrypt.
    pub decrypt: u32,
    /// A `sevault_abi::Mode`.
    pub mode: u32,
    /// Out: 0 or a negative errno.
    pub result: i32,
    /// `sevault_rust_job_scratch_bytes()` of 8-aligned memory for this request alone (its
    /// request context).
    pub scratch: *mut c_void,
}

/// `struct sevault_stats`.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Stats {
    /// Crypto requests served.
    pub requests: u64,
    /// Bytes encrypted or decrypted.
    pub bytes: u64,
    /// VMRUNs.
    pub vmruns: u64,
    /// VMMCALL exits (plain SVM's "request done").
    pub exits_vmmcall: u64,
    /// VMGEXIT exits (SEV-ES's "request done").
    pub exits_vmgexit: u64,
    /// NMI exits.
    pub exits_nmi: u64,
    /// Physical-interrupt (INTR) exits.
    pub exits_intr: u64,
    /// Machine checks taken while the vault ran (handed to the host's handler).
    pub machine_checks: u64,
    /// Flush VMRUNs after requests that did not exit as expected.
    pub tlb_flush_failures: u64,
    /// Every other exit (each one a vault fault).
    pub exits_other: u64,
    /// Requests that failed.
    pub errors: u64,
    /// VMRUNs that found the VMCB's guest state replaced by other (host) state before they
    /// ran, and put the HV's copy back (a diagnostic; thesis-notes/hypervisor.md).
    pub vmcb_repairs: u64,
    /// Fault exits recognised as the emulator's and recovered (a diagnostic;
    /// thesis-notes/hypervisor.md, "An open fault under emulation").
    pub emulation_recoveries: u64,
    /// Bytes of its stack the vault has used so far (plain SVM; 0 under SEV, where the HV
    /// cannot read it): `crate::stack`.
    pub stack_used: u64,
    /// Batches served (one comm block of requests each; a batch takes several VMRUNs when
    /// host events interrupt it).
    pub batches: u64,
    /// Requests served as a stream of a CBC-streams request (CBC encryptions of one key run
    /// through the AES unit together; `crate::batch::post`).
    pub streamed: u64,
}

extern "C" {
    /// Zeroed, physically contiguous 2^order pages; writes their physical address.
    pub fn sevault_pages_alloc(order: u32, phys: *mut u64) -> *mut c_void;
    /// As `sevault_pages_alloc`, but GFP_ATOMIC where the caller cannot sleep.
    pub fn sevault_pages_alloc_any(order: u32, phys: *mut u64) -> *mut c_void;
    /// `spin_lock_irqsave` of the nested-table lock (writers of the shared nested tables:
    /// key-slot blocks, vCPUs made at run time); returns the flags.
    pub fn sevault_npt_lock() -> u64;
    /// `spin_unlock_irqrestore` of the nested-table lock.
    pub fn sevault_npt_unlock(flags: u64);
    /// Frees what `sevault_pages_alloc` returned.
    pub fn sevault_pages_free(virt: *mut c_void, order: u32);
    /// printk at `level` (3 err, 4 warn, 6 info) with a `sevault: ` prefix.
    pub fn sevault_log(level: u32, msg: *const u8, len: u32);
    /// printk of a host kernel address with `%pS` (symbol + offset).
    pub fn sevault_log_host_address(addr: u64);
    /// printk at KERN_ERR, rate-limited.
    pub fn sevault_log_ratelimited(msg: *const u8, len: u32);
    /// `smp_processor_id()` (callers have preemption off).
    pub fn sevault_cpu_id() -> u32;
    /// `nr_cpu_ids`.
    pub fn sevault_nr_cpu_ids() -> u32;
    /// `kernel_fpu_begin()` (also disables preemption).
    pub fn sevault_fpu_begin();
    /// `kernel_fpu_end()`.
    pub fn sevault_fpu_end();
    /// `irq_fpu_usable()`.
    pub fn sevault_fpu_usable() -> u32;
    /// `local_irq_save()`.
    pub fn sevault_irq_save() -> u64;
    /// `local_irq_restore()`.
    pub fn sevault_irq_restore(flags: u64);
    /// `sg_next()`: null at the end of the list.
    pub fn sevault_sg_next(sg: *const c_void) -> *const c_void;
    /// `sg_phys()` and `length` of one entry.
    pub fn sevault_sg_info(sg: *const c_void, phys: *mut u64, len: *mut u32);
    /// `phys_to_virt()`: the direct-map address of RAM (a scatterlist page).
    pub fn sevault_phys_to_virt(phys: u64) -> *mut u8;
    /// `ktime_get_ns()`.
    pub fn sevault_now_ns() -> u64;
    /// 1 when the host runs with SME (`cc_platform_has(CC_ATTR_HOST_MEM_ENCRYPT)`).
    pub fn sevault_sme_active() -> u32;
    /// The `budget_ms` module parameter (at least 1).
    pub fn sevault_budget_ms() -> u32;
    /// The `max_batch` module parameter: most requests per batch (1 ..= 16).
    pub fn sevault_max_batch() -> u32;
    /// After #VMEXIT: `hw_breakpoint_restore()` where the host has breakpoints armed.
    pub fn sevault_host_debug_restore();
    /// A #MC exit: the host's machine-check handler, as KVM's `kvm_machine_check`.
    pub fn sevault_machine_check();
    /// Takes the ccp driver's SEV interface and opens `/dev/sev`: 0 or a negative errno.
    pub fn sevault_psp_open() -> i32;
    /// Releases what `sevault_psp_open` took.
    pub fn sevault_psp_close();
    /// LAUNCH_START.
    pub fn sevault_psp_launch_start(policy: u32, handle: *mut u32, fw: *mut i32) -> i32;
    /// ACTIVATE.
    pub fn sevault_psp_activate(handle: u32, asid: u32, fw: *mut i32) -> i32;
    /// LAUNCH_UPDATE_DATA (encrypts the range in place).
    pub fn sevault_psp_update_data(handle: u32, paddr: u64, len: u32, fw: *mut i32) -> i32;
    /// LAUNCH_UPDATE_VMSA.
    pub fn sevault_psp_update_vmsa(handle: u32, paddr: u64, fw: *mut i32) -> i32;
    /// LAUNCH_MEASURE into `out` (`len` bytes: measurement then MNONCE).
    pub fn sevault_psp_measure(handle: u32, out: *mut u8, len: u32, fw: *mut i32) -> i32;
    /// LAUNCH_FINISH.
    pub fn sevault_psp_finish(handle: u32, fw: *mut i32) -> i32;
    /// DEACTIVATE.
    pub fn sevault_psp_deactivate(handle: u32, fw: *mut i32) -> i32;
    /// DF_FLUSH.
    pub fn sevault_psp_df_flush(fw: *mut i32) -> i32;
    /// DECOMMISSION.
    pub fn sevault_psp_decommission(handle: u32, fw: *mut i32) -> i32;
    /// `wbinvd_on_all_cpus()`.
    pub fn sevault_wbinvd_on_all_cpus();
    /// `clflush_cache_range`.
    pub fn sevault_clflush(virt: *const u8, len: u32);
    /// 1 when kvm_amd is loaded.
    pub fn sevault_kvm_amd_loaded() -> u32;
    /// 1 when kvm_amd is loaded with SEV enabled (its `sev` parameter).
    pub fn sevault_kvm_amd_sev_enabled() -> u32;
    /// The kernel's `panic()`: objtool knows it does not return.
    pub fn panic(fmt: *const u8, ...) -> !;
}
