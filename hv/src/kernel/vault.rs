//! The vault at run time: its memory, a vCPU per CPU (made when the CPU comes online), and
//! the path of a request from the crypto API to a VMRUN and back.
//!
//! Concurrency: the shared state is written once at load (module init, single-threaded) and
//! freed once at unload (after the algorithms are unregistered). vCPUs are made at load for
//! the CPUs online then and later by the glue's CPU-hotplug callback (serialized by the
//! kernel's hotplug lock), each published with release on its `vcpus` pointer after it is
//! built, guarded and mapped (the nested-table writes under the glue's nested-table lock).
//! A vCPU is only touched by its own CPU inside `kernel_fpu_begin`/`end` (preemption off, and
//! any nested crypto call on this CPU finds the FPU taken and is deferred to cryptd by the
//! simd wrapper), with interrupts off around the VMRUN. What vCPUs share — key slots, the
//! generation, the slot bitmap — is atomics or vault memory the vault itself locks.
use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use sevault_abi::comm::{CommBlock, CommBlockPtr, Header, Request as WireRequest};
use sevault_abi::memory_map::{
    VcpuIndex, COMM_BLOCKS_BASE, GHCBS_BASE, IMAGE_BASE, IMAGE_MAX_SIZE, KEY_SLOTS_BASE, KEY_SLOTS_SIZE,
    KEY_SLOT_BLOCK_SIZE, PAGE_SIZE, PAGE_TABLES_BASE, SPIN_GPA,
};
use sevault_abi::validate::Direction;
use sevault_abi::{
    Mode, Op, SlotKey, Status, HYPERCALL_REQUEST_DONE, KEY_SLOTS_PER_BLOCK, KEY_SLOT_COUNT, LAUNCH_KEY_SLOTS,
    MAX_BATCH, MAX_VCPUS,
};
use sevault_ghcb::{GhcbPage, GhcbPtr, VMGEXIT_BYTES};

use super::cpu::{self, SvmFeatures, SvmOn, VmrunArgs};
use super::ffi::{self, Job, Key, Request, Stats};
use super::log::{klog, log_ratelimited, Level};
use super::psp::KernelPsp;
use super::slots;
use crate::arena::{Arena, Block, PageRef};
use crate::asid::{AfterRequest, TlbCaps};
use crate::batch::{self, Answer, CallError, JobError};
use crate::block_set::BlockSet;
use crate::exits::{
    errno, status_errno, ExitBucket, ExitKind, FaultKind, LostExit, LostExitEvidence, VMEXIT_NPF, VMGEXIT_LEN,
};
use crate::launch::{status, teardown, GuestTables, LaunchError, LaunchInput, LaunchMode, POLICY_SEV, POLICY_SEV_ES};
use crate::msr_protocol::{on_vmgexit, MsrAction};
use crate::paging::{
    attach_compact_window, build_guest_page_tables, build_npt_low, guest_pt, map_vcpu_page, npt_low, CompactWindow,
    PageTable, Pages, BLOCKS_PER_SLOT_TABLE,
};
use crate::sev::{self, SevCpu, SevMode, SevPlan};
use crate::translate::{
    Bounce, HostMemory, Segment, SegmentCursor, TailRule, TranslateError, Translator, WindowAdmission, BOUNCE_BYTES,
};
use crate::vmcb::{HostSaveArea, HostXState, SevVmcb, StateSave, Vmcb, VmcbConfig, V_INTR_MASKING};
use crate::world::{Gpr, GuestRegisters};

/// The vault image, embedded at build time (`cargo xtask build`).
static GUEST_IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/guest.bin"));

/// Blocks of 64 pages (256 KiB) make up the arena.
const BLOCK_ORDER: u32 = 6;
const BLOCK_PAGES: usize = 1 << BLOCK_ORDER;
/// Enough blocks for the shared pages and, under SEV-ES, MAX_VCPUS VMSAs.
const MAX_BLOCKS: usize = 64;
/// Pages of a vCPU's stack.
const STACK_PAGES: usize = (sevault_abi::memory_map::STACK_SIZE / PAGE_SIZE) as usize;

/// A vCPU's own pages: one block of 2^[`ORDER`](vcpu_block::ORDER) contiguous pages,
/// allocated when the vCPU is made. No request may name them ([`VCPU_BLOCKS`]), except the
/// bounce page, the last, through which the vault reads and writes request data.
mod vcpu_block {
    use super::STACK_PAGES;

    pub const ORDER: u32 = 3;
    pub const PAGES: usize = 1 << ORDER;
    /// The `Vcpu` itself.
    pub const HOME: usize = 0;
    pub const VMCB: usize = 1;
    pub const HSAVE: usize = 2;
    pub const COMM: usize = 3;
    pub const GHCB: usize = 4;
    pub const STACK: usize = 5;
    /// The page table of its compact window.
    pub const WINDOW_PT: usize = STACK + STACK_PAGES;
    pub const BOUNCE: usize = WINDOW_PT + 1;
    const _: () = assert!(BOUNCE == PAGES - 1);
    /// The bytes from the block's start that requests may not name (all but the bounce page).
    pub const GUARDED_BYTES: u64 = BOUNCE as u64 * 4096;
}
/// The vCPU's KiB of its own: its block; under SEV-ES the VMSA comes on top.
const VCPU_KIB: usize = vcpu_block::PAGES * 4;
/// The vCPUs' blocks, as requests are checked against them.
static VCPU_BLOCKS: BlockSet<{ MAX_VCPUS as usize }> = BlockSet::new(vcpu_block::GUARDED_BYTES);
/// vCPUs made so far (for the memory figures).
static VCPUS_MADE: AtomicU32 = AtomicU32::new(0);
/// The vault's ASID (see thesis-notes/hypervisor.md on sharing the CPU with kvm_amd).
const ASID: u32 = 1;
/// KiB of host memory per block of key slots.
const SLOT_BLOCK_KIB: usize = (KEY_SLOT_BLOCK_SIZE / 1024) as usize;
/// EFLAGS.IF in what `local_irq_save` returns.
const EFLAGS_IF: u64 = 1 << 9;

/// Pages the vault owns, shared by all vCPUs.
struct Private {
    image: PageRef,
    guest_pt: [PageRef; guest_pt::COUNT],
    npt_low: [PageRef; npt_low::COUNT],
    iopm: PageRef,
    msrpm: PageRef,
}

/// One vCPU (lives in the first page of its block).
struct Vcpu {
    index: VcpuIndex,
    vmcb: PageRef,
    /// The host save area (VM_HSAVE_PA), which the trampoline also VMSAVEs the host's
    /// FS/GS/TR/LDTR/syscall state into, as KVM does with its per-CPU save area.
    hsave: PageRef,
    comm: PageRef,
    ghcb: PageRef,
    /// SEV-ES only: the VMSA page (launched by the PSP).
    vmsa: PageRef,
    /// Host memory (not guarded: requests may name it) through which blocks that straddle
    /// scatterlist entries, and split tails, reach the vault (`translate`).
    bounce: PageRef,
    stack: [PageRef; STACK_PAGES],
    /// The page table of its compact window (`paging::compact`), hooked into the shared
    /// nested tables.
    window_pt: PageRef,
    window: CompactWindow,
    generation: u64,
    sequence: u64,
    stats: Stats,
    /// The trampoline's arguments and the vault's registers outside the VMCB.
    switch: VmrunArgs,
    /// The last exits of this vCPU, for the fault log.
    trail: ExitTrail,
    /// Plain SVM: the vault's state save area as the HV last handed it to VMRUN (see
    /// `Vcpu::check_state`).
    shadow: StateSave,
    /// Plain SVM: RIP, RSP, RFLAGS and RAX of the vault's last "request done" exit (zero RIP:
    /// none since the vault (re)started). The vault exits through one instruction with every
    /// register scrubbed at the same stack depth each time, so these are the same at every
    /// such exit; the rest of its state save area never changes (`Vcpu::lost_exit`).
    done_exit: [u64; 4],
}

/// One #VMEXIT as the VMCB told it.
#[derive(Clone, Copy, Debug, Default)]
struct ExitRecord {
    code: u64,
    rip: u64,
    cr3: u64,
}

/// The last `N` exits, oldest first when read (all-zero is valid: no exits yet).
#[derive(Clone, Copy, Debug, Default)]
struct ExitTrail {
    records: [ExitRecord; 4],
    next: usize,
}

impl core::fmt::Display for ExitTrail {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, e) in self.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}exit {:#x} at rip {:#x} cr3 {:#x}", e.code, e.rip, e.cr3)?;
        }
        Ok(())
    }
}

impl ExitTrail {
    fn push(&mut self, record: ExitRecord) {
        let slot = self.next % self.records.len();
        self.records[slot] = record;
        self.next = self.next.wrapping_add(1);
    }

    /// Oldest first, without the never-written slots.
    fn iter(&self) -> impl Iterator<Item = ExitRecord> + '_ {
        let n = self.records.len();
        let kept = self.next.min(n);
        (0..kept).map(move |i| self.records[(self.next - kept + i) % n])
    }
}

struct State {
    arena: Arena<MAX_BLOCKS>,
    private: Private,
    /// Made vCPUs, by index (= CPU number); null for CPUs that have not been online.
    vcpus: [AtomicPtr<Vcpu>; MAX_VCPUS as usize],
    /// Possible CPUs (`nr_cpu_ids`): the vCPU indices the vault's memory map has room for.
    nr_vcpus: u32,
    features: SvmFeatures,
    tlb: TlbCaps,
    /// The host's XCR0/XSS and protection keys (what an SEV-ES #VMEXIT restores).
    host_x: cpu::HostXFeatures,
    /// `sev=sev|es`: the launched guest context (never on these machines).
    sev: Option<SevLaunch>,
}

/// An SEV/SEV-ES launch of the vault (built, unverified on hardware).
#[derive(Clone, Copy, Debug)]
struct SevLaunch {
    plan: SevPlan,
    es: bool,
    /// Firmware handle of the guest context; 0 until LAUNCH_START.
    handle: u32,
}

const NO_PAGE: PageRef = PageRef { virt: 0, phys: 0 };

/// The one vault, built in place (it is tens of KiB: never moved through the kernel stack).
struct Global {
    state: UnsafeCell<State>,
    ready: AtomicBool,
}
// SAFETY: see the module comment: written only at init/exit (with `ready` false), otherwise
// read, with per-CPU parts touched only by their CPU and published through atomics.
unsafe impl Sync for Global {}
static STATE: Global = Global {
    state: UnsafeCell::new(State {
        arena: Arena::new(),
        private: Private {
            image: NO_PAGE,
            guest_pt: [NO_PAGE; guest_pt::COUNT],
            npt_low: [NO_PAGE; npt_low::COUNT],
            iopm: NO_PAGE,
            msrpm: NO_PAGE,
        },
        vcpus: [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_VCPUS as usize],
        nr_vcpus: 0,
        features: SvmFeatures { nrips: false, asids: 0, lbr_virt: false },
        tlb: TlbCaps { flush_by_asid: false, invlpgb: false },
        host_x: cpu::HostXFeatures { xcr0: 0, xss: 0, pku: false, tsc_aux: false },
        sev: None,
    }),
    ready: AtomicBool::new(false),
};

/// Set when an SEV vault faults: it cannot be rebuilt without a new launch, so it stays
/// down until the module is reloaded.
static SEV_DEAD: AtomicBool = AtomicBool::new(false);
/// Bumped at every rebuild: keys set before are gone.
static GENERATION: AtomicU64 = AtomicU64::new(1);
static REBUILDS: AtomicU64 = AtomicU64::new(0);
/// Test hook (debugfs `inject_fault`): what the next run does instead of serving —
/// [`InjectedFault`] as a number in bits 0–7 (0 none), and in bits 8 and up 0 for "the next
/// run on any CPU" or CPU + 1.
static INJECT_FAULT: AtomicU64 = AtomicU64::new(0);

/// The faults the test hook can inject (plain SVM only: under SEV-ES the HV cannot set RIP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedFault {
    /// The run starts at the unmapped null page: a #PF exit.
    PageFault = 1,
    /// The run starts at the image's spin loop: only the time budget ends it.
    Spin = 2,
}

impl InjectedFault {
    /// From debugfs: 1 or 2 in bits 0–7.
    pub fn from_raw(raw: u64) -> Option<Self> {
        match raw & 0xFF {
            1 => Some(Self::PageFault),
            2 => Some(Self::Spin),
            _ => None,
        }
    }

    /// The hook's fault for a run on `cpu`, taken (cleared) if there is one.
    fn take_for(cpu: u32) -> Option<Self> {
        let raw = INJECT_FAULT.load(Ordering::Acquire);
        let target = raw >> 8;
        if raw == 0 || (target != 0 && target != u64::from(cpu) + 1) {
            return None;
        }
        INJECT_FAULT.compare_exchange(raw, 0, Ordering::AcqRel, Ordering::Relaxed).ok().and_then(Self::from_raw)
    }
}

fn state() -> Option<&'static State> {
    // SAFETY: only `init`/`exit` write STATE, and only while `ready` is false.
    STATE.ready.load(Ordering::Acquire).then(|| unsafe { &*STATE.state.get() })
}

/// Pages of a slice of `PageRef`s, for the page-table builders.
struct RefPages<'a>(&'a [PageRef]);

impl Pages for RefPages<'_> {
    fn table(&mut self, index: usize) -> &mut PageTable {
        // SAFETY: arena pages are mapped, page-aligned, owned by the vault, and the builders
        // run while nothing else uses them.
        unsafe { &mut *(self.0[index].virt as *mut PageTable) }
    }
    fn phys(&self, index: usize) -> u64 {
        self.0[index].phys
    }
}

impl State {
    fn take_pages(arena: &mut Arena<MAX_BLOCKS>, pages: usize) -> Result<PageRef, i32> {
        if let Some(page) = arena.take(pages) {
            return Ok(page);
        }
        let mut phys = 0;
        // SAFETY: FFI; returns null or a zeroed block of 2^BLOCK_ORDER pages.
        let virt = unsafe { ffi::sevault_pages_alloc(BLOCK_ORDER, &mut phys) };
        if virt.is_null() {
            return Err(errno::ENOMEM);
        }
        if !arena.add_block(Block { virt: virt as usize, phys, pages: BLOCK_PAGES }) {
            // SAFETY: just allocated with this order.
            unsafe { ffi::sevault_pages_free(virt, BLOCK_ORDER) };
            return Err(errno::ENOMEM);
        }
        arena.take(pages).ok_or(errno::ENOMEM)
    }

    fn vcpu(&self, cpu: u32) -> Option<&mut Vcpu> {
        let ptr = self.vcpus.get(cpu as usize)?.load(Ordering::Acquire);
        // SAFETY: published after it was built (acquire pairs with `make_vcpu`'s release);
        // vCPU `cpu` is only used by CPU `cpu` with preemption off (module comment).
        (!ptr.is_null()).then(|| unsafe { &mut *ptr })
    }

    /// The host page behind vault guest-physical page `gpa`.
    fn backing(&self, gpa: u64) -> Option<PageRef> {
        let p = &self.private;
        let index = |base: u64, count: usize| {
            (gpa >= base && gpa < base + count as u64 * PAGE_SIZE).then(|| ((gpa - base) / PAGE_SIZE) as usize)
        };
        if gpa == IMAGE_BASE {
            return Some(p.image);
        }
        if let Some(i) = index(PAGE_TABLES_BASE, guest_pt::COUNT) {
            return Some(p.guest_pt[i]);
        }
        if (KEY_SLOTS_BASE..KEY_SLOTS_BASE + KEY_SLOTS_SIZE).contains(&gpa) {
            return slots::backing(gpa - KEY_SLOTS_BASE);
        }
        let n = self.nr_vcpus as usize;
        if let Some(i) = index(COMM_BLOCKS_BASE, n) {
            return self.vcpu(i as u32).map(|v| v.comm);
        }
        if let Some(i) = index(GHCBS_BASE, n) {
            return self.vcpu(i as u32).map(|v| v.ghcb);
        }
        (0..self.nr_vcpus).find_map(|i| {
            let v = self.vcpu(i)?;
            let bottom = v.index.stack_bottom();
            index(bottom, STACK_PAGES).map(|j| v.stack[j])
        })
    }
}

/// Loads the vault: checks the CPU, allocates and builds everything. Returns 0 or an errno.
pub fn init(sev_mode: u32) -> i32 {
    let features = match cpu::check() {
        Ok(features) => features,
        Err(why) => {
            klog!(Level::Error, "cannot load: {}", why.message());
            return -errno::ENODEV;
        }
    };
    let Some(mode) = SevMode::from_raw(sev_mode) else { return -errno::EINVAL };
    if mode == SevMode::Sev {
        // Under plain SEV the VMCB's save area and every other register are the host's: it
        // can enter the vault's code with chosen arguments and read each exit's registers.
        klog!(
            Level::Warn,
            "sev=sev: memory encryption without register protection: no key confidentiality (the host sees and sets \
             the vault's registers at every exit); sev=es is the mode that protects keys"
        );
    }
    // SAFETY: FFI, no arguments.
    if unsafe { ffi::sevault_sme_active() } != 0 {
        klog!(
            Level::Error,
            "cannot load: SME is active (mem_encrypt=on). Every physical address this module gives the CPU (VMCB, \
             host save area, permission maps, nested page tables and their entries) would need the SME C-bit, \
             which it does not set yet; boot with mem_encrypt=off to use the vault"
        );
        return -errno::ENODEV;
    }
    if GUEST_IMAGE.is_empty() || GUEST_IMAGE.len() as u64 > IMAGE_MAX_SIZE {
        klog!(Level::Error, "cannot load: module built without a valid vault image ({} bytes)", GUEST_IMAGE.len());
        return -errno::EINVAL;
    }
    // SAFETY: FFI, no arguments.
    let nr = unsafe { ffi::sevault_nr_cpu_ids() };
    if nr > MAX_VCPUS {
        klog!(Level::Error, "cannot load: {nr} possible CPUs, the vault has room for {MAX_VCPUS} vCPUs");
        return -errno::EINVAL;
    }
    // Every check that can refuse the load comes before the PSP interface is opened: from
    // there on, `exit` (called by a failed `build` too) is what releases it.
    let mut sev_launch = None;
    let info = cpu::sev_info();
    let sev_cpu = SevCpu {
        sev: info.sev,
        sev_es: info.sev_es,
        c_bit: info.c_bit,
        max_asid: info.max_asid,
        min_sev_asid: info.min_sev_asid,
        lbr_virt: features.lbr_virt,
    };
    match sev::plan(mode, sev_cpu) {
        Ok(None) => {}
        Err(why) => {
            klog!(Level::Error, "cannot load with sev={}: {}", mode.name(), why.message());
            return -errno::ENODEV;
        }
        Ok(Some(plan)) => {
            // SAFETY: FFI, no arguments.
            if unsafe { ffi::sevault_kvm_amd_sev_enabled() } != 0 {
                klog!(
                    Level::Error,
                    "cannot load with sev={}: kvm_amd is loaded with SEV enabled, and the vault would compete with \
                     its guests for SEV ASIDs (it takes ASID {}); unload kvm_amd or load it with sev=0",
                    mode.name(),
                    plan.asid
                );
                return -errno::EBUSY;
            }
            // SAFETY: FFI, no arguments.
            let err = unsafe { ffi::sevault_psp_open() };
            if err != 0 {
                klog!(
                    Level::Error,
                    "cannot load with sev={}: the ccp driver's SEV interface is not available (errno {}): load ccp, \
                     check /dev/sev",
                    mode.name(),
                    -err
                );
                return -errno::ENODEV;
            }
            klog!(
                Level::Warn,
                "sev={}: launching the vault with C-bit {} and ASID {} — this path has never run on hardware",
                mode.name(),
                plan.c_bit,
                plan.asid
            );
            sev_launch = Some(SevLaunch { plan, es: mode == SevMode::SevEs, handle: 0 });
        }
    }
    // SAFETY: FFI, no arguments.
    let kvm_amd = unsafe { ffi::sevault_kvm_amd_loaded() } != 0;
    KVM_AMD.store(kvm_amd, Ordering::SeqCst);
    match build(features, nr, sev_launch) {
        Ok(()) => 0,
        Err(e) => {
            exit();
            -e
        }
    }
}

fn build(features: SvmFeatures, nr: u32, sev: Option<SevLaunch>) -> Result<(), i32> {
    // SAFETY: module init is single-threaded and `ready` is false: nothing else reads STATE.
    let state = unsafe { &mut *STATE.state.get() };
    state.features = features;
    state.tlb = cpu::tlb_caps();
    state.host_x = cpu::host_xfeatures();
    state.nr_vcpus = nr;
    state.sev = sev;
    SEV_DEAD.store(false, Ordering::Relaxed);
    let c_bit = sev.map(|s| s.plan.c_bit);
    let arena = &mut state.arena;
    let p = &mut state.private;
    p.image = State::take_pages(arena, 1)?;
    // Contiguous, so that the builder sees one array of tables.
    let pt_block = State::take_pages(arena, guest_pt::COUNT)?;
    for (i, page) in p.guest_pt.iter_mut().enumerate() {
        *page = pt_block.page(i);
    }
    for page in p.npt_low.iter_mut() {
        *page = State::take_pages(arena, 1)?;
    }
    p.iopm = State::take_pages(arena, 3)?;
    p.msrpm = State::take_pages(arena, 2)?;
    // SAFETY: arena pages are mapped and ours; the sizes are what was taken; the image fits
    // its page (checked in `init`).
    unsafe {
        core::ptr::write_bytes(p.iopm.virt as *mut u8, 0xFF, 3 * PAGE_SIZE as usize);
        core::ptr::write_bytes(p.msrpm.virt as *mut u8, 0xFF, 2 * PAGE_SIZE as usize);
        core::ptr::copy_nonoverlapping(GUEST_IMAGE.as_ptr(), p.image.virt as *mut u8, GUEST_IMAGE.len());
        build_guest_page_tables(&mut *(pt_block.virt as *mut [PageTable; guest_pt::COUNT]), nr, c_bit);
    }
    // Under SEV-ES each vCPU's VMSA is launched (and measured) with the rest: from the arena,
    // in runs of up to a block.
    let es = sev.is_some_and(|s| s.es);
    let mut vmsa_runs = [NO_PAGE; MAX_VCPUS as usize / BLOCK_PAGES];
    if es {
        for (k, run) in vmsa_runs.iter_mut().enumerate().take((nr as usize).div_ceil(BLOCK_PAGES)) {
            *run = State::take_pages(&mut state.arena, (nr as usize - k * BLOCK_PAGES).min(BLOCK_PAGES))?;
        }
    }
    let vmsa_of = |i: usize| if es { vmsa_runs[i / BLOCK_PAGES].page(i % BLOCK_PAGES) } else { NO_PAGE };
    // A page for an SEV launch to stage contents in (not 4 KiB of kernel stack).
    let scratch = if sev.is_some() { Some(State::take_pages(&mut state.arena, 1)?) } else { None };
    let state: &State = state;
    // vCPUs made later map their own pages (`make_vcpu`); here none exists yet.
    build_npt_low(&mut RefPages(&state.private.npt_low), nr, |gpa| state.backing(gpa).map(|p| p.phys));
    // The launch's key slots (under SEV, the only ones).
    while slots::blocks() * (KEY_SLOTS_PER_BLOCK as usize) < LAUNCH_KEY_SLOTS as usize {
        slots::grow(&mut RefPages(&state.private.npt_low)).map_err(|_| errno::ENOMEM)?;
    }
    // Under SEV every possible CPU's vCPU is part of the launch: all are made now. Plain
    // SVM makes them as CPUs come online (the glue's hotplug callback, `cpu_online`).
    if sev.is_some() {
        for i in 0..nr {
            let Some(index) = VcpuIndex::new(i) else { return Err(errno::EINVAL) };
            make_vcpu(state, index, vmsa_of(i as usize))?;
        }
    }
    if let (Some(launch), Some(scratch)) = (sev, scratch) {
        let (handle, launched) = launch_sev(state, launch, pt_block, scratch);
        // Kept even if the launch failed: `exit` tears down whatever LAUNCH_START created.
        // SAFETY: still single-threaded init; `ready` is false.
        unsafe { (*STATE.state.get()).sev = Some(SevLaunch { handle, ..launch }) };
        launched?;
    }
    if sev.is_none() && KVM_AMD.load(Ordering::SeqCst) && prepare_flush_block(state).is_err() {
        return Err(errno::ENOMEM);
    }
    STATE.ready.store(true, Ordering::Release);
    Ok(())
}

/// Makes vCPU `index`: allocates its block, builds its VMCB, guards its pages against
/// requests, maps them into the shared nested tables, then publishes it. `vmsa`: under
/// SEV-ES its VMSA page (from the arena), else `NO_PAGE`.
fn make_vcpu(state: &State, index: VcpuIndex, vmsa: PageRef) -> Result<(), i32> {
    // Within the memory map's room (the guest page tables were built for `nr_vcpus`): then
    // every data page below maps.
    if index.get() >= state.nr_vcpus {
        return Err(errno::EINVAL);
    }
    let sev = state.sev;
    let mut phys = 0;
    // SAFETY: FFI; returns null or a zeroed block of 2^ORDER pages (process context).
    let virt = unsafe { ffi::sevault_pages_alloc(vcpu_block::ORDER, &mut phys) };
    if virt.is_null() {
        return Err(errno::ENOMEM);
    }
    let page = |i: usize| PageRef { virt: virt as usize, phys }.page(i);
    const {
        assert!(core::mem::size_of::<Vcpu>() <= PAGE_SIZE as usize);
        assert!(core::mem::align_of::<Vcpu>() <= PAGE_SIZE as usize);
    };
    // SAFETY: the first page of a fresh, zeroed, page-aligned block, big enough and aligned
    // (asserted), and an all-zero `Vcpu` is valid (integers, arrays of integers, PageRefs);
    // unpublished, so this is the only reference.
    let vcpu = unsafe { &mut *(page(vcpu_block::HOME).virt as *mut Vcpu) };
    vcpu.index = index;
    vcpu.vmcb = page(vcpu_block::VMCB);
    vcpu.hsave = page(vcpu_block::HSAVE);
    vcpu.comm = page(vcpu_block::COMM);
    vcpu.ghcb = page(vcpu_block::GHCB);
    for (j, stack) in vcpu.stack.iter_mut().enumerate() {
        *stack = page(vcpu_block::STACK + j);
    }
    vcpu.window_pt = page(vcpu_block::WINDOW_PT);
    vcpu.bounce = page(vcpu_block::BOUNCE);
    vcpu.vmsa = vmsa;
    vcpu.window = CompactWindow::new(index);
    if sev.is_none() {
        for page in &vcpu.stack {
            // SAFETY: a fresh page of this vCPU's stack, not yet run on.
            let words = unsafe { core::slice::from_raw_parts_mut(page.virt as *mut u64, PAGE_SIZE as usize / 8) };
            words.fill(crate::stack::STACK_FILL);
        }
    }
    vcpu.generation = GENERATION.load(Ordering::Relaxed);
    vcpu.switch.vmcb_pa = vcpu.vmcb.phys;
    vcpu.switch.host_vmsave_pa = vcpu.hsave.phys;
    vcpu.switch.regs = GuestRegisters::INITIAL;
    let config = VmcbConfig {
        vcpu: index,
        asid: sev.map_or(ASID, |s| s.plan.asid),
        n_cr3: state.private.npt_low[npt_low::ROOT].phys,
        iopm_pa: state.private.iopm.phys,
        msrpm_pa: state.private.msrpm.phys,
    };
    vcpu.vmcb().build_vault(&config);
    vcpu.shadow = vcpu.vmcb().save.state;
    match sev {
        None => {}
        Some(SevLaunch { es: false, .. }) => vcpu.vmcb().enable_sev(SevVmcb::Sev),
        Some(SevLaunch { es: true, .. }) => {
            let sev_es = SevVmcb::SevEs { vmsa_pa: vcpu.vmsa.phys, ghcb_gpa: index.ghcb_gpa() };
            vcpu.vmcb().enable_sev(sev_es);
        }
    }
    let data_pages = [(index.comm_block_gpa(), vcpu.comm), (index.ghcb_gpa(), vcpu.ghcb)]
        .into_iter()
        .chain(vcpu.stack.iter().enumerate().map(|(j, p)| (index.stack_bottom() + j as u64 * PAGE_SIZE, *p)));
    // SAFETY: FFI; serializes the writers of the shared nested tables (key-slot blocks too).
    let flags = unsafe { ffi::sevault_npt_lock() };
    // Guarded before the vault can reach it; a full set cannot happen (one block per index).
    let guarded = VCPU_BLOCKS.insert(phys);
    let mut mapped = guarded;
    if guarded {
        let npt = &mut RefPages(&state.private.npt_low);
        for (gpa, page) in data_pages {
            // Cannot fail for an index within `nr_vcpus` (checked above).
            mapped &= map_vcpu_page(npt, state.nr_vcpus, gpa, page.phys);
        }
        attach_compact_window(npt, index, vcpu.window_pt.phys);
    }
    // SAFETY: pairs with the lock above.
    unsafe { ffi::sevault_npt_unlock(flags) };
    if !guarded {
        // Nothing points at the block yet.
        // SAFETY: allocated above with this order, never published.
        unsafe { ffi::sevault_pages_free(virt, vcpu_block::ORDER) };
        return Err(errno::ENOMEM);
    }
    if !mapped {
        // Nested entries may name the block: it stays allocated and guarded (lost until
        // the next boot) rather than be handed back while the vault could reach it.
        return Err(errno::EINVAL);
    }
    VCPUS_MADE.fetch_add(1, Ordering::Relaxed);
    state.vcpus[index.get() as usize].store(core::ptr::from_mut(vcpu), Ordering::Release);
    Ok(())
}

/// The glue's CPU-hotplug callback (process context, on CPU `cpu`, serialized by the
/// hotplug lock): makes the CPU's vCPU if it has none yet. Also run for every online CPU at
/// load. 0 or a negative errno, which keeps the CPU offline.
pub fn cpu_online(cpu: u32) -> i32 {
    let Some(state) = state() else { return -errno::EIO };
    if state.vcpu(cpu).is_some() {
        return 0;
    }
    let index = match VcpuIndex::new(cpu) {
        Some(index) if cpu < state.nr_vcpus && state.sev.is_none() => index,
        // Under SEV every possible CPU's vCPU was launched at load.
        _ => {
            klog!(Level::Error, "cpu {cpu} came online, but the vault has no room for its vCPU");
            return -errno::EINVAL;
        }
    };
    match make_vcpu(state, index, NO_PAGE) {
        Ok(()) => 0,
        Err(e) => {
            klog!(
                Level::Error,
                "cpu {cpu} stays offline: its vCPU could not be made (errno {e}; {VCPU_KIB} KiB of contiguous memory)"
            );
            -e
        }
    }
}

/// The load message, once the vCPUs of the CPUs online at load are made.
pub fn announce() {
    let Some(state) = state() else { return };
    let Memory { shared, per_vcpu, slot_tables, total } = memory();
    let kvm_amd = KVM_AMD.load(Ordering::SeqCst);
    klog!(
        Level::Info,
        "vault ready: {} vCPUs made of {} possible CPUs ({}), image {} bytes, NRIPS {}, TLB flush by ASID {}, memory \
         {total} KiB: {shared} KiB shared + {per_vcpu} KiB per vCPU (4 more while kvm_amd is loaded) + key slots {} KiB \
         with their nested tables {slot_tables} KiB ({SLOT_BLOCK_KIB} KiB more per {KEY_SLOTS_PER_BLOCK} keyed \
         transforms beyond the first {LAUNCH_KEY_SLOTS}, and a 4 KiB nested table per {} of them){}",
        VCPUS_MADE.load(Ordering::Relaxed),
        state.nr_vcpus,
        if state.sev.is_some() {
            "all at load: under SEV they are part of the launch"
        } else {
            "one per online CPU; a CPU that comes online later gets its vCPU then"
        },
        GUEST_IMAGE.len(),
        if state.features.nrips { "yes" } else { "no (RIP advanced by the HV)" },
        if state.tlb.flush_by_asid { "yes" } else { "no (whole TLB)" },
        slots::blocks() * SLOT_BLOCK_KIB,
        BLOCKS_PER_SLOT_TABLE * KEY_SLOTS_PER_BLOCK as usize,
        if kvm_amd { "; kvm_amd is loaded: every request ends with a TLB flush of the vault's ASID" } else { "" }
    );
}

/// What the module holds, in KiB.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    /// Image, guest page tables, the shared nested tables but the key-slot range's, I/O and
    /// MSR permission maps.
    pub shared: usize,
    /// Per vCPU: its block and, under SEV-ES, the VMSA.
    pub per_vcpu: usize,
    /// The nested page tables of the key-slot range made so far (one per 2 MiB of slots
    /// backed).
    pub slot_tables: usize,
    /// Everything: the above for every vCPU made, the key slots backed, the TLB-flush VMCBs.
    pub total: usize,
}

/// The module's memory now (the load message and debugfs).
pub fn memory() -> Memory {
    let state = state();
    let es = state.is_some_and(|s| s.sev.is_some_and(|l| l.es));
    let per_vcpu = VCPU_KIB + usize::from(es) * 4;
    let slot_tables = slots::tables() * 4;
    // The I/O and MSR permission maps are 3 + 2 pages.
    let shared = (1 + guest_pt::COUNT + npt_low::COUNT + 5) * 4;
    let vcpus = VCPUS_MADE.load(Ordering::Relaxed) as usize;
    // The block as allocated: 2^order pages.
    let flush = if FLUSH_BLOCK_PAGES.load(Ordering::Acquire) == 0 {
        0
    } else {
        (1 << FLUSH_BLOCK_ORDER.load(Ordering::Relaxed)) * 4
    };
    let total = shared + vcpus * per_vcpu + slot_tables + slots::blocks() * SLOT_BLOCK_KIB + flush;
    Memory { shared, per_vcpu, slot_tables, total }
}

/// The TLB-flush VMCBs (plain SVM, only while kvm_amd is loaded): one physically contiguous
/// block, vCPU `i`'s VMCB its page `i`, allocated when kvm_amd first comes (or at load, if it
/// is there) and kept until unload. Published virtual address, physical address, then the
/// page count (0: none yet), the last with Release.
static FLUSH_BLOCK_VIRT: AtomicUsize = AtomicUsize::new(0);
static FLUSH_BLOCK_PHYS: AtomicU64 = AtomicU64::new(0);
static FLUSH_BLOCK_PAGES: AtomicUsize = AtomicUsize::new(0);
/// Its allocation order (for the free at unload).
static FLUSH_BLOCK_ORDER: AtomicU32 = AtomicU32::new(0);

/// vCPU `vcpu`'s TLB-flush VMCB, if the block exists.
fn flush_vmcb(vcpu: VcpuIndex) -> Option<PageRef> {
    let pages = FLUSH_BLOCK_PAGES.load(Ordering::Acquire);
    let i = vcpu.get() as usize;
    (i < pages).then(|| {
        PageRef { virt: FLUSH_BLOCK_VIRT.load(Ordering::Relaxed), phys: FLUSH_BLOCK_PHYS.load(Ordering::Relaxed) }
            .page(i)
    })
}

/// True when `[addr, addr + len)` touches the flush block: requests may not name it.
fn flush_block_overlaps(addr: u64, len: u64) -> bool {
    let pages = FLUSH_BLOCK_PAGES.load(Ordering::Acquire) as u64;
    let base = FLUSH_BLOCK_PHYS.load(Ordering::Relaxed);
    pages != 0 && addr < base + pages * PAGE_SIZE && addr.saturating_add(len) > base
}

/// Allocates and builds the flush block (process context; idempotent).
fn prepare_flush_block(state: &State) -> Result<(), i32> {
    if FLUSH_BLOCK_PAGES.load(Ordering::Acquire) != 0 || state.sev.is_some() {
        return Ok(());
    }
    let nr = state.nr_vcpus as usize;
    let order = nr.next_power_of_two().trailing_zeros();
    let mut phys = 0;
    // SAFETY: FFI; zeroed, physically contiguous 2^order pages or null.
    let virt = unsafe { ffi::sevault_pages_alloc(order, &mut phys) };
    if virt.is_null() {
        klog!(
            Level::Error,
            "kvm_amd: no {nr} contiguous pages for the TLB-flush VMCBs: the vault refuses requests while kvm_amd is loaded"
        );
        return Err(errno::ENOMEM);
    }
    for i in 0..nr {
        let Some(index) = VcpuIndex::new(i as u32) else { continue };
        let config = VmcbConfig {
            vcpu: index,
            asid: ASID,
            n_cr3: state.private.npt_low[npt_low::ROOT].phys,
            iopm_pa: state.private.iopm.phys,
            msrpm_pa: state.private.msrpm.phys,
        };
        // SAFETY: page `i` of the block just allocated, not published yet.
        let vmcb = unsafe { &mut *((virt as usize + i * PAGE_SIZE as usize) as *mut Vmcb) };
        vmcb.build_tlb_flush(&config, state.tlb.asid_flush());
    }
    FLUSH_BLOCK_VIRT.store(virt as usize, Ordering::Relaxed);
    FLUSH_BLOCK_PHYS.store(phys, Ordering::Relaxed);
    FLUSH_BLOCK_ORDER.store(order, Ordering::Relaxed);
    FLUSH_BLOCK_PAGES.store(nr, Ordering::Release);
    Ok(())
}

/// The glue's module notifier, kvm_amd coming: the flush block must exist before the flag
/// is set. 0 or a negative errno (the flag is set either way; without the block the vault
/// refuses requests rather than leave its translations to KVM's guests).
pub fn prepare_for_kvm_amd() -> i32 {
    match state() {
        Some(state) => prepare_flush_block(state).map_or_else(|e| -e, |()| 0),
        None => 0,
    }
}

/// LAUNCH_START … LAUNCH_FINISH over `crate::launch::pages` (built, unverified on hardware).
/// Returns the firmware handle (0 if LAUNCH_START did not create one) and the outcome.
fn launch_sev(state: &State, launch: SevLaunch, pt_block: PageRef, scratch: PageRef) -> (u32, Result<(), i32>) {
    let mode = if launch.es { LaunchMode::SevEs } else { LaunchMode::Sev };
    let policy = if launch.es { POLICY_SEV_ES } else { POLICY_SEV };
    let input = LaunchInput { mode, image: GUEST_IMAGE, vcpus: state.nr_vcpus, c_bit: launch.plan.c_bit };
    // SAFETY: the 16 guest page-table pages are contiguous (`pt_block`) and `GuestTables` is
    // `repr(transparent)` over exactly that array.
    let tables = unsafe { &*(pt_block.virt as *const GuestTables) };
    let data_page = |gpa: u64| state.backing(gpa);
    let vmsa_page = |vcpu: VcpuIndex| state.vcpu(vcpu.get()).map(|v| v.vmsa);
    let mut psp = KernelPsp { handle: 0, data_page: &data_page, vmsa_page: &vmsa_page, measurement: [0; 48] };
    // SAFETY: a fresh arena page of 4096 bytes, used only here.
    let scratch = unsafe { &mut *(scratch.virt as *mut [u8; 4096]) };
    match crate::launch::launch(&mut psp, &input, tables, launch.plan.asid, policy, scratch) {
        Ok(()) => {
            let m = &psp.measurement;
            klog!(
                Level::Info,
                "SEV launch finished: handle {}, LAUNCH_MEASURE {:02x?}…, MNONCE {:02x?}…",
                psp.handle,
                &m[..8],
                &m[32..40]
            );
            (psp.handle, Ok(()))
        }
        Err(e) => {
            let why = match e {
                LaunchError::Psp(code) => status::name(code),
                LaunchError::BadImage => "bad image",
            };
            klog!(Level::Error, "SEV launch failed ({e:?}: {why}); firmware handle {}", psp.handle);
            (psp.handle, Err(errno::EIO))
        }
    }
}

/// Frees everything (after the algorithms are unregistered: no request runs). An SEV vault
/// is torn down first, in the order `crate::launch::teardown` gives, and its pages are
/// released only after the caches were written back on every CPU.
pub fn exit() {
    STATE.ready.store(false, Ordering::Release);
    // SAFETY: module exit (or failed init) is single-threaded and `ready` is false.
    let state = unsafe { &mut *STATE.state.get() };
    let Some(launch) = state.sev.take() else {
        release_memory(state);
        return;
    };
    if launch.handle != 0 {
        let no_page = |_| None;
        let no_vmsa = |_| None;
        let mut psp =
            KernelPsp { handle: launch.handle, data_page: &no_page, vmsa_page: &no_vmsa, measurement: [0; 48] };
        let report = teardown(&mut psp, || release_memory(state));
        let step = |r: Result<(), u32>| match r {
            Ok(()) => "done",
            Err(code) => status::name(code),
        };
        let (level, what) = if report.is_clean() {
            (Level::Info, "the ASID is free for its next user")
        } else {
            (Level::Error, "the firmware refused a step: the ASID may stay bound or unflushed until the next boot")
        };
        klog!(
            level,
            "SEV teardown of ASID {} (handle {}): WBINVD on all CPUs, DEACTIVATE {}, WBINVD again, DF_FLUSH {}, DECOMMISSION {}, \
             memory released: {what}",
            launch.plan.asid,
            launch.handle,
            step(report.deactivate),
            step(report.df_flush),
            step(report.decommission),
        );
    } else {
        release_memory(state);
    }
    // `init` opened the PSP interface before it set `state.sev`.
    // SAFETY: FFI.
    unsafe { ffi::sevault_psp_close() };
}

/// Gives every page back to the kernel.
fn release_memory(state: &mut State) {
    let pages = FLUSH_BLOCK_PAGES.swap(0, Ordering::AcqRel);
    if pages != 0 {
        // SAFETY: allocated by `sevault_pages_alloc(FLUSH_BLOCK_ORDER)`; nothing runs.
        unsafe {
            ffi::sevault_pages_free(
                FLUSH_BLOCK_VIRT.load(Ordering::Relaxed) as *mut c_void,
                FLUSH_BLOCK_ORDER.load(Ordering::Relaxed),
            )
        };
    }
    for vcpu in &state.vcpus {
        let home = vcpu.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !home.is_null() {
            // SAFETY: the first page of a block from `sevault_pages_alloc(vcpu_block::ORDER)`
            // in `make_vcpu`; nothing runs, and the pointer is gone from `vcpus`.
            unsafe { ffi::sevault_pages_free(home.cast(), vcpu_block::ORDER) };
        }
    }
    VCPU_BLOCKS.clear();
    VCPUS_MADE.store(0, Ordering::Relaxed);
    for block in state.arena.allocation_order() {
        // SAFETY: blocks were allocated by `sevault_pages_alloc(BLOCK_ORDER)`.
        unsafe { ffi::sevault_pages_free(block.virt as *mut c_void, BLOCK_ORDER) };
    }
    state.arena.reset();
    slots::free_all();
    state.nr_vcpus = 0;
}

impl Vcpu {
    fn vmcb(&mut self) -> &mut Vmcb {
        // SAFETY: the VMCB page belongs to this vCPU, used only by its CPU.
        unsafe { &mut *(self.vmcb.virt as *mut Vmcb) }
    }

    fn comm(&self) -> CommBlockPtr {
        // SAFETY: the comm page is mapped for the vault's lifetime.
        unsafe { CommBlockPtr::new(NonNull::new_unchecked(self.comm.virt as *mut CommBlock)) }
    }

    fn ghcb(&self) -> GhcbPtr<'_> {
        // SAFETY: the GHCB page is mapped for the vault's lifetime; shared with the vault.
        unsafe { GhcbPtr::new(NonNull::new_unchecked(self.ghcb.virt as *mut GhcbPage)) }
    }

    /// After a rebuild, starts over from `_start`.
    fn sync_generation(&mut self) {
        let current = GENERATION.load(Ordering::Acquire);
        // Under SEV a fault ends the vault (SEV_DEAD): its state cannot be reset.
        if self.generation != current && self.vmsa.phys == 0 {
            let index = self.index;
            self.vmcb().reset_state(index);
            self.shadow = self.vmcb().save.state;
            self.switch.regs = GuestRegisters::INITIAL;
            self.done_exit = [0; 4];
            self.generation = current;
        }
    }

    /// The compact window and its page table.
    fn window_and_table(&mut self) -> (&mut CompactWindow, &mut PageTable) {
        // SAFETY: the page table is this vCPU's arena page, only written by its CPU here.
        (&mut self.window, unsafe { &mut *(self.window_pt.virt as *mut PageTable) })
    }

    /// Unmaps the batch's pages (the next VMRUN flushes the TLB).
    fn clear_window(&mut self) {
        let (window, pt) = self.window_and_table();
        window.clear(pt);
    }

    /// The bounce page as the translator takes it.
    fn bounce_area(&self) -> Bounce {
        Bounce { phys: self.bounce.phys, virt: self.bounce.virt as *mut u8 }
    }

    /// Plain SVM, before a VMRUN: the VMCB must hold the vault's state (its CR3, a RIP in
    /// its image, or 0 for the injected #PF). Under QEMU TCG it has been seen holding the
    /// host's instead — RIP just after our VMRUN, the host's CR3 — between two requests
    /// (thesis-notes/hypervisor.md, "An open fault under emulation"); the VMRUN would run host
    /// code in the vault's nested paging and fault. A diagnostic: such a VMCB is counted and
    /// logged (and the copy taken before the last VMRUN put back). It has not fired yet: in
    /// the faults seen since, the VMCB was sound before the VMRUN that ran host state. The
    /// copy is also what `Vcpu::lost_exit` starts from.
    fn check_state(&mut self) {
        let shadow_cr3 = self.shadow.cr3;
        let state = &self.vmcb().save.state;
        if state.cr3 == shadow_cr3 && (in_image(state.rip) || state.rip == 0) {
            self.shadow = *state;
            return;
        }
        let (rip, cr3) = (state.rip, state.cr3);
        self.stats.vmcb_repairs += 1;
        log_ratelimited(format_args!(
            "vcpu {}: the VMCB held state that is not the vault's before VMRUN (rip {rip:#x}, cr3 {cr3:#x}; last exits: {}): put back the vault's state from the HV's copy",
            self.index.get(),
            self.trail
        ));
        if (rip & (1 << 63)) != 0 {
            // SAFETY: FFI; a host kernel address, printed with %pS.
            unsafe { ffi::sevault_log_host_address(rip) };
        }
        let shadow = self.shadow;
        self.vmcb().save.state = shadow;
    }

    /// Plain SVM: gathers what the vault itself left after a fault exit, for
    /// [`LostExitEvidence::classify`] (thesis-notes/hypervisor.md, "An open fault under
    /// emulation").
    fn lost_exit(&mut self, first_run: bool, code: u64, info1: u64, info2: u64, rip: u64) -> Option<LostExit> {
        let regs = &self.switch.regs;
        let scrubbed =
            regs.gprs.iter().enumerate().all(|(i, &v)| v == 0 || i == Gpr::Rax as usize || i == Gpr::Rsp as usize)
                && regs.fx.xmm.iter().all(|x| *x == [0; 16]);
        let finished = self.comm().read_batch_response().sequence == self.sequence
            && matches!(self.ghcb().read_vmmcall_event(), Ok(event) if event.rax == HYPERCALL_REQUEST_DONE);
        LostExitEvidence {
            first_run,
            exit_code: code,
            info1,
            info2,
            rip,
            entered_at: self.shadow.rip,
            done_rip: self.done_exit[0],
            rip_in_image: in_image(rip),
            scrubbed,
            finished,
        }
        .classify()
    }

    /// Runs the vault until it reports "done"; Err on any other outcome. Host events
    /// (interrupts, NMIs, SMIs, INITs, machine checks) end single runs: the host takes them
    /// between two VMRUNs and the vault resumes exactly where it was (its registers are in
    /// `self.switch.regs`), until the request has used up `budget_ns`.
    fn run(
        &mut self,
        features: &SvmFeatures,
        tlb: TlbCaps,
        host_x: &cpu::HostXFeatures,
        sev: Option<&SevLaunch>,
        budget_ns: u64,
    ) -> Result<(), Fault> {
        let start = now_ns();
        let mut first = true;
        let mut recovered = false;
        loop {
            self.stats.vmruns += 1;
            let tlb_control = tlb.on_entry(first);
            let first_run = first;
            first = false;
            self.vmcb().control.tlb_control = tlb_control;
            if sev.is_none() {
                self.check_state();
            }
            // SAFETY: FFI.
            let flags = unsafe { ffi::sevault_irq_save() };
            // Interrupts may end the run only if the caller could take them (else every run
            // would end at once on a pending one that nobody serves).
            self.switch.interrupts = u64::from(flags & EFLAGS_IF != 0);
            let es = sev.is_some_and(|s| s.es);
            if es {
                let host = HostXState {
                    xcr0: host_x.xcr0,
                    pkru: cpu::read_pkru(host_x),
                    xss: host_x.xss,
                    tsc_aux: cpu::read_tsc_aux(host_x),
                };
                // SAFETY: the host save area is this vCPU's page, used by no one else while
                // interrupts are off.
                unsafe { (*(self.hsave.virt as *mut HostSaveArea)).set_host_xstate(host) };
            }
            let switch = &mut self.switch;
            // SAFETY: interrupts are off; the FPU is owned by the caller; this CPU's vCPU;
            // under SEV-ES the host save area holds this CPU's XCR0/PKRU/XSS (just written)
            // and `host_vmsave_pa` is that area.
            unsafe { with_svm(self.hsave.phys, || if es { cpu::vmrun_es(switch) } else { cpu::vmrun(switch) }) };
            let (code, info1, info2, rip, next_rip, cr3) = {
                let vmcb = self.vmcb();
                let c = &vmcb.control;
                (c.exit_code, c.exit_info_1, c.exit_info_2, vmcb.save.state.rip, c.next_rip, vmcb.save.state.cr3)
            };
            let trail = self.trail;
            self.trail.push(ExitRecord { code, rip, cr3 });
            let kind = ExitKind::classify(code);
            if kind == ExitKind::MachineCheck {
                // SAFETY: FFI; interrupts still off and on the CPU that took the #MC.
                unsafe { ffi::sevault_machine_check() };
            }
            // SAFETY: restores what `sevault_irq_save` returned: a pending interrupt is
            // taken here.
            unsafe { ffi::sevault_irq_restore(flags) };
            match ExitBucket::of(code) {
                ExitBucket::Vmmcall => self.stats.exits_vmmcall += 1,
                ExitBucket::Vmgexit => self.stats.exits_vmgexit += 1,
                ExitBucket::Nmi => self.stats.exits_nmi += 1,
                ExitBucket::Intr => self.stats.exits_intr += 1,
                ExitBucket::Other => self.stats.exits_other += 1,
            }
            let over_budget = || {
                let elapsed_ns = now_ns().saturating_sub(start);
                (elapsed_ns > budget_ns).then_some(Fault::Budget { elapsed_ns, rip })
            };
            match kind {
                ExitKind::HostEvent | ExitKind::MachineCheck => {
                    if kind == ExitKind::MachineCheck {
                        self.stats.machine_checks += 1;
                    }
                    if let Some(fault) = over_budget() {
                        return Err(fault);
                    }
                }
                ExitKind::Fault(kind) => {
                    // At most one recovery per request: a second such exit is a fault.
                    let lost = if sev.is_none() && !recovered {
                        self.lost_exit(first_run, code, info1, info2, rip)
                    } else {
                        None
                    };
                    if let Some(lost) = lost {
                        recovered = true;
                        self.stats.emulation_recoveries += 1;
                        let (what, outcome) = match lost {
                            LostExit::Rerun => ("an instruction fetch at the RIP the run began at", "run again"),
                            LostExit::Done => ("host state over a finished request's exit", "request done"),
                        };
                        log_ratelimited(format_args!(
                            "vcpu {}: exit {code:#x} info1 {info1:#x} info2 {info2:#x} rip {rip:#x} is the emulator's, not the vault's ({what}): {outcome}",
                            self.index.get()
                        ));
                        let int_ctl = self.vmcb().control.int_ctl;
                        self.vmcb().control.int_ctl = int_ctl | V_INTR_MASKING;
                        match lost {
                            LostExit::Rerun => {
                                let shadow = self.shadow;
                                self.vmcb().save.state = shadow;
                                continue;
                            }
                            LostExit::Done => {
                                let [done_rip, rsp, rflags, rax] = self.done_exit;
                                if !is_vmgexit_at(done_rip) {
                                    return Err(Fault::Ghcb { rip });
                                }
                                let mut state = self.shadow;
                                (state.rip, state.rsp, state.rflags, state.rax) =
                                    (done_rip + VMGEXIT_LEN, rsp, rflags, rax);
                                self.vmcb().save.state = state;
                                return Ok(());
                            }
                        }
                    }
                    // SAFETY: the hsave page is this vCPU's, written by the last VMRUN.
                    let hsave_rip = unsafe { (*(self.hsave.virt as *const Vmcb)).save.state.rip };
                    return Err(Fault::Exit { kind, code, info1, info2, rip, cr3, trail, hsave_rip });
                }
                ExitKind::RequestDone { advance_rip } => {
                    if !advance_rip {
                        // VMGEXIT under SEV-ES: the GHCB MSR says where the request is.
                        if sev.is_none() {
                            return Err(Fault::Ghcb { rip });
                        }
                        let msr = self.vmcb().control.ghcb_gpa;
                        match on_vmgexit(msr, self.index) {
                            MsrAction::ReadGhcb => {}
                            MsrAction::Terminate | MsrAction::Fault => return Err(Fault::Ghcb { rip }),
                        }
                    }
                    match self.ghcb().read_vmmcall_event() {
                        Ok(event) if event.rax == HYPERCALL_REQUEST_DONE => {}
                        _ => return Err(Fault::Ghcb { rip }),
                    }
                    if advance_rip {
                        let next = if features.nrips && next_rip != 0 {
                            next_rip
                        } else {
                            // No NRIPS: the exit must be the vault's `rep vmmcall`.
                            if !is_vmgexit_at(rip) {
                                return Err(Fault::Ghcb { rip });
                            }
                            rip + VMGEXIT_LEN
                        };
                        if sev.is_none() {
                            let state = &self.vmcb().save.state;
                            self.done_exit = [state.rip, state.rsp, state.rflags, state.rax];
                        }
                        self.vmcb().save.state.rip = next;
                    }
                    return Ok(());
                }
            }
        }
    }
}

/// The module parameter `budget_ms`: how long one vault request may run.
fn budget_ms() -> u64 {
    // SAFETY: FFI, no arguments.
    u64::from(unsafe { ffi::sevault_budget_ms() })
}

fn budget_ns() -> u64 {
    budget_ms().saturating_mul(1_000_000)
}

/// kvm_amd is loaded (its guests may be given the vault's ASID): set at load and by the
/// glue's module notifier.
static KVM_AMD: AtomicBool = AtomicBool::new(false);
/// TLB flushes after vault requests (failed ones are counted per vCPU).
static TLB_FLUSHES: AtomicU64 = AtomicU64::new(0);

/// Ends a request (or an IPI from the module notifier): flushes the vault's ASID if
/// kvm_amd is loaded. False if the flush VMRUN exited unexpectedly (logged).
fn flush_after_request(tlb: TlbCaps, kvm_amd: bool, hsave_pa: u64, vcpu: VcpuIndex) -> bool {
    match tlb.after_request(kvm_amd) {
        AfterRequest::Nothing => true,
        // INVLPGB is not used yet (never run here: TCG lacks it); the flush VMRUN works
        // on every SVM CPU.
        AfterRequest::Invlpgb | AfterRequest::FlushRun { .. } => {
            let Some(flush_vmcb) = flush_vmcb(vcpu) else {
                log_ratelimited(format_args!(
                    "no TLB-flush VMCB for vcpu {}: the vault's translations may remain for a KVM guest",
                    vcpu.get()
                ));
                return false;
            };
            // SAFETY: FFI.
            let flags = unsafe { ffi::sevault_irq_save() };
            // SAFETY: the flush VMCB page is mapped for the vault's lifetime and only this CPU
            // runs it, with interrupts off.
            unsafe { (*(flush_vmcb.virt as *mut Vmcb)).reset_tlb_flush_state(vcpu) };
            // SAFETY: interrupts are off; the hsave page is this CPU's vCPU's and not in use
            // (no vault run is in progress with interrupts on); this vCPU's flush VMCB.
            unsafe { with_svm(hsave_pa, || cpu::flush_run(flush_vmcb.phys)) };
            // SAFETY: the flush VMCB page is mapped for the vault's lifetime and only this CPU
            // runs it, with interrupts off.
            let (code, rip) = unsafe {
                let vmcb = flush_vmcb.virt as *const Vmcb;
                (
                    core::ptr::read_volatile(&(*vmcb).control.exit_code),
                    core::ptr::read_volatile(&(*vmcb).save.state.rip),
                )
            };
            // SAFETY: the host save area is this vCPU's page in the direct map, written by the
            // VMRUN just made; interrupts are still off, so no other VMRUN has rewritten it.
            let host_rip = unsafe {
                core::ptr::read_volatile(&(*(ffi::sevault_phys_to_virt(hsave_pa) as *const Vmcb)).save.state.rip)
            };
            // SAFETY: restores what `sevault_irq_save` returned.
            unsafe { ffi::sevault_irq_restore(flags) };
            TLB_FLUSHES.fetch_add(1, Ordering::Relaxed);
            // The emulator's host-state form of the open fault (thesis-notes/hypervisor.md, "An
            // open fault under emulation"): a nested page fault with the host's own state (its
            // RIP the trampoline's post-VMRUN address, as in the host save area) in the flush
            // VMCB. That VMRUN did enter the guest — the host state was saved and the flush
            // VMCB's loaded — so its TLB_CONTROL flush happened.
            let emulator_exit = code == VMEXIT_NPF && rip != 0 && rip == host_rip;
            if emulator_exit {
                log_ratelimited(format_args!(
                    "TLB flush VMRUN on vcpu {}: exit {code:#x} with the host's state (rip {rip:#x}) is the emulator's; the flush took place at VMRUN",
                    vcpu.get()
                ));
            }
            let flushed = ExitKind::flushed_by(code) || emulator_exit;
            if !flushed {
                log_ratelimited(format_args!(
                    "TLB flush after a vault request exited with {code:#x}: the vault's translations may remain \
                     for a KVM guest with ASID {ASID}"
                ));
            }
            flushed
        }
    }
}

/// One world switch: SVM on with `hsave_pa` as the host save area, `vmrun` (a VMRUN
/// trampoline), SVM back as it was, then the host's breakpoints (#VMEXIT reset DR7) before
/// interrupts can come back.
///
/// # Safety
/// Interrupts are off; `hsave_pa` is this CPU's vCPU's host save area; `vmrun` meets the
/// contract of the trampoline it calls with SVM on.
unsafe fn with_svm(hsave_pa: u64, vmrun: impl FnOnce()) {
    {
        // SAFETY: SVM checked at load; the caller's contract.
        let _svm = unsafe { SvmOn::new(hsave_pa) };
        vmrun();
    }
    // SAFETY: FFI, no arguments.
    unsafe { ffi::sevault_host_debug_restore() };
}

/// Monotonic nanoseconds (`ktime_get_ns`).
fn now_ns() -> u64 {
    // SAFETY: FFI, no arguments.
    unsafe { ffi::sevault_now_ns() }
}

/// `rip` lies in the vault image.
fn in_image(rip: u64) -> bool {
    (IMAGE_BASE..IMAGE_BASE + IMAGE_MAX_SIZE).contains(&rip)
}

fn is_vmgexit_at(rip: u64) -> bool {
    // The module's own copy of the image: the vault maps its image read-only (guest and
    // nested tables), so the copy is what the page holds — and under SEV the page itself
    // reads as ciphertext from here.
    let Some(offset) = rip.checked_sub(IMAGE_BASE).and_then(|o| usize::try_from(o).ok()) else { return false };
    GUEST_IMAGE.get(offset..offset.saturating_add(VMGEXIT_BYTES.len())) == Some(&VMGEXIT_BYTES[..])
}

/// A vault that did not answer as it must.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Exit { kind: FaultKind, code: u64, info1: u64, info2: u64, rip: u64, cr3: u64, trail: ExitTrail, hsave_rip: u64 },
    Ghcb { rip: u64 },
    Budget { elapsed_ns: u64, rip: u64 },
    Answer { status: u32 },
}

/// Logs the fault once (rate-limited), wipes the key slots and makes every vCPU start over.
fn rebuild(state: &State, cpu: u32, fault: Fault) {
    match fault {
        Fault::Exit { kind, code, info1, info2, rip, cr3, trail, hsave_rip } => {
            log_ratelimited(format_args!(
                "vault fault on cpu {cpu}: exit {code:#x} ({kind:?}) info1 {info1:#x} info2 {info2:#x} rip {rip:#x} cr3 \
                 {cr3:#x}; rebuilding, keys are gone"
            ));
            log_ratelimited(format_args!(
                "the exits before it (oldest first): {trail}; the host save area's rip {hsave_rip:#x}"
            ));
            // The vault's RIP is in its image; a host kernel address there means the VMCB
            // held host state: say whose code it is.
            if rip >= 0xFFFF_8000_0000_0000 {
                // SAFETY: FFI; only prints the address with %pS.
                unsafe { ffi::sevault_log_host_address(rip) };
            }
        }
        Fault::Ghcb { rip } => log_ratelimited(format_args!(
            "vault fault on cpu {cpu}: exit at rip {rip:#x} without a valid request-done GHCB event; rebuilding, keys are gone"
        )),
        Fault::Budget { elapsed_ns, rip } => log_ratelimited(format_args!(
            "vault on cpu {cpu} ran {} ms without answering (budget {} ms, module parameter budget_ms), last at rip \
             {rip:#x}: stopped; rebuilding, keys are gone",
            elapsed_ns / 1_000_000,
            budget_ms()
        )),
        Fault::Answer { status } => log_ratelimited(format_args!(
            "vault on cpu {cpu} gave an invalid answer (status {status:#x}); rebuilding, keys are gone"
        )),
    }
    if state.sev.is_some() {
        // A rebuilt SEV vault needs a new launch (fresh keys, measured state): not done at
        // run time. Every request fails from now on; reload the module.
        GENERATION.fetch_add(1, Ordering::AcqRel);
        REBUILDS.fetch_add(1, Ordering::Relaxed);
        SEV_DEAD.store(true, Ordering::Release);
        log_ratelimited(format_args!("the SEV vault is down until sevault.ko is reloaded"));
        return;
    }
    // Quiesce: no vCPU may be inside the vault while its key slots (lock words included)
    // are wiped. Requests already running finish (each within its time budget); new ones
    // wait in `InVault::enter`. If another CPU is rebuilding already, that rebuild wipes
    // the slots and this request only fails.
    if REBUILDING.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_err() {
        return;
    }
    while RUNNING.load(Ordering::SeqCst) != 0 {
        core::hint::spin_loop();
    }
    // No vCPU runs: RUNNING is 0 and none can enter while REBUILDING is set.
    slots::wipe_all();
    GENERATION.fetch_add(1, Ordering::SeqCst);
    REBUILDS.fetch_add(1, Ordering::Relaxed);
    REBUILDING.store(false, Ordering::SeqCst);
}

/// Set while a rebuild wipes the key slots; no vCPU enters the vault meanwhile.
static REBUILDING: AtomicBool = AtomicBool::new(false);
/// vCPUs between posting a request and reading its answer.
static RUNNING: AtomicU32 = AtomicU32::new(0);

/// This CPU is inside the vault (counted in `RUNNING`) for the guard's lifetime.
struct InVault(());

impl InVault {
    /// Waits out a rebuild in progress, then counts this CPU in. The store to `RUNNING`
    /// and the load of `REBUILDING` (and the rebuilder's converse pair) are SeqCst, so
    /// that at least one side sees the other.
    fn enter() -> Self {
        loop {
            RUNNING.fetch_add(1, Ordering::SeqCst);
            if !REBUILDING.load(Ordering::SeqCst) {
                return Self(());
            }
            RUNNING.fetch_sub(1, Ordering::SeqCst);
            while REBUILDING.load(Ordering::SeqCst) {
                core::hint::spin_loop();
            }
        }
    }
}

impl Drop for InVault {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The scatterlist cursor over the kernel's `struct scatterlist` chain.
#[derive(Clone, Copy, Debug)]
struct SgCursor {
    sg: *const c_void,
    offset: u32,
    remaining: u64,
}

impl SgCursor {
    fn info(sg: *const c_void) -> (u64, u32) {
        let (mut phys, mut len) = (0, 0);
        // SAFETY: `sg` is a live entry of the request's list (non-null checked by callers).
        unsafe { ffi::sevault_sg_info(sg, &mut phys, &mut len) };
        (phys, len)
    }
    fn next(sg: *const c_void) -> *const c_void {
        // SAFETY: as above; sg_next returns null at the end.
        unsafe { ffi::sevault_sg_next(sg) }
    }
}

impl SegmentCursor for SgCursor {
    fn peek(&self) -> Option<Segment> {
        let (mut sg, mut offset) = (self.sg, self.offset);
        while !sg.is_null() && self.remaining > 0 {
            let (phys, len) = Self::info(sg);
            if offset < len {
                let len = u64::from(len - offset).min(self.remaining) as u32;
                return Some(Segment { phys: phys + u64::from(offset), len });
            }
            sg = Self::next(sg);
            offset = 0;
        }
        None
    }

    fn advance(&mut self, mut n: u32) {
        while n > 0 && !self.sg.is_null() {
            let (_, len) = Self::info(self.sg);
            let take = n.min(len.saturating_sub(self.offset));
            self.offset += take;
            self.remaining -= u64::from(take);
            n -= take;
            if self.offset >= len {
                self.sg = Self::next(self.sg);
                self.offset = 0;
            }
        }
    }
}

/// Host memory through the kernel's direct map: scatterlist pages are RAM (x86-64 has no
/// highmem), so `phys_to_virt` names them.
struct DirectMap;

impl HostMemory for DirectMap {
    fn read(&self, phys: u64, buf: &mut [u8]) {
        // SAFETY: FFI; `phys .. phys + len` lies in one segment of a request's scatterlist:
        // RAM the caller lent us for the request.
        unsafe { core::ptr::copy_nonoverlapping(ffi::sevault_phys_to_virt(phys), buf.as_mut_ptr(), buf.len()) };
    }
    fn write(&self, phys: u64, buf: &[u8]) {
        // SAFETY: as above; the destination list is the request's to write.
        unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), ffi::sevault_phys_to_virt(phys), buf.len()) };
    }
}

const _: () = assert!(BOUNCE_BYTES as u64 <= PAGE_SIZE);

/// One vault request of a batch, over the kernel's scatterlists.
type Call<'a> = batch::Call<'a, SgCursor, SgCursor>;

/// Most requests per batch (module parameter `max_batch`, 1 ..= `MAX_BATCH`).
fn max_batch() -> usize {
    // SAFETY: FFI, no arguments.
    (unsafe { ffi::sevault_max_batch() } as usize).clamp(1, MAX_BATCH)
}

/// Runs one batch of `calls` on this CPU's vCPU, inside `kernel_fpu_begin`/`end`: as many
/// of them, in order, as fit one comm block (`batch::post`), each answered in its `answer`;
/// those that did not fit keep `answer: None`.
fn call(state: &State, calls: &mut [Call<'_>]) {
    // SAFETY: FFI; the FPU is usable here (worker, simd wrapper, or checked by setkey/clear_key).
    unsafe { ffi::sevault_fpu_begin() };
    call_on_this_cpu(state, calls);
    // SAFETY: pairs with the begin above.
    unsafe { ffi::sevault_fpu_end() };
}

fn call_errno(error: CallError) -> i32 {
    match error {
        CallError::Translate(TranslateError::Forbidden) => {
            log_ratelimited(format_args!("request names pages of the vault itself: refused"));
            errno::EINVAL
        }
        CallError::Translate(TranslateError::OutsideWindow) => {
            log_ratelimited(format_args!("request names memory beyond 52-bit host-physical addresses: refused"));
            errno::EINVAL
        }
        CallError::Translate(TranslateError::UnalignedLength | TranslateError::ShortScatterlist) => errno::EINVAL,
        CallError::StaleKeys => errno::ENOKEY,
        _ => errno::EIO,
    }
}

fn job_errno(error: JobError) -> i32 {
    match error {
        JobError::Call(error) => call_errno(error),
        JobError::Status(status) => status_errno(status),
        JobError::ShortAnswer | JobError::Stuck => errno::EIO,
    }
}

fn call_on_this_cpu(state: &State, calls: &mut [Call<'_>]) {
    if state.sev.is_none() && KVM_AMD.load(Ordering::SeqCst) && FLUSH_BLOCK_PAGES.load(Ordering::Acquire) == 0 {
        // kvm_amd came but the flush block could not be allocated (logged then).
        calls.iter_mut().for_each(|c| c.answer = Some(Err(CallError::Vault)));
        return;
    }
    // SAFETY: FFI; preemption is off (kernel_fpu_begin).
    let cpu = unsafe { ffi::sevault_cpu_id() };
    let Some(vcpu) = state.vcpu(cpu) else {
        calls.iter_mut().for_each(|c| c.answer = Some(Err(CallError::Vault)));
        return;
    };
    // From here until its answer is read this CPU counts as inside the vault: a rebuild
    // waits for it, and it waits for a rebuild in progress.
    let in_vault = InVault::enter();
    vcpu.sync_generation();
    let generation = vcpu.generation;
    let comm = vcpu.comm();
    let posted = {
        // The entries go straight into the comm block; their pages into the nested window,
        // which all requests of the batch share.
        let arena = &state.arena;
        let forbidden = |addr, len| {
            arena.overlaps(addr, len)
                || VCPU_BLOCKS.overlaps(addr, len)
                || slots::overlaps(addr, len)
                || flush_block_overlaps(addr, len)
        };
        let mut admission = WindowAdmission { forbidden, plan: CompactWindow::new(vcpu.index) };
        let bounce = vcpu.bounce_area();
        let (window, pt) = vcpu.window_and_table();
        batch::post(calls, max_batch(), comm, &mut admission, bounce, &DirectMap, |entry| {
            window.map_entry(pt, entry).ok()
        })
    };
    vcpu.stats.requests += posted.first_chunks;
    vcpu.stats.streamed += posted.streamed;
    if posted.count() == 0 {
        vcpu.clear_window();
        return;
    }
    vcpu.stats.batches += 1;
    vcpu.sequence += 1;
    let header = Header::new(vcpu.sequence, posted.count() as u64);
    comm.write_header(&header);
    // A stale "done" event must not pass for this batch's.
    vcpu.ghcb().set_valid_bitmap(sevault_ghcb::ValidBitmap::EMPTY);
    match InjectedFault::take_for(cpu) {
        // The null page is unmapped in the vault: a #PF the HV intercepts.
        Some(InjectedFault::PageFault) => vcpu.vmcb().save.state.rip = 0,
        Some(InjectedFault::Spin) => vcpu.vmcb().save.state.rip = SPIN_GPA,
        None => {}
    }
    let ran = vcpu.run(&state.features, state.tlb, &state.host_x, state.sev.as_ref(), budget_ns());
    vcpu.clear_window();
    // Before anything else can run a guest on this CPU: nothing of the vault in the TLB.
    if state.sev.is_none()
        && !flush_after_request(state.tlb, KVM_AMD.load(Ordering::SeqCst), vcpu.hsave.phys, vcpu.index)
    {
        vcpu.stats.tlb_flush_failures += 1;
    }
    // A vault that did not answer as it must: count it, rebuild (once this CPU is out of
    // the vault), fail the batch.
    let fault = match ran {
        Err(fault) => Some(fault),
        Ok(()) => batch::check_answer(comm, &header, &posted).err().map(|status| Fault::Answer { status }),
    };
    if let Some(fault) = fault {
        vcpu.stats.errors += posted.call_count() as u64;
        drop(in_vault);
        rebuild(state, cpu, fault);
        vcpu.sync_generation();
        batch::fail(calls, &posted, CallError::Vault);
        return;
    }
    drop(in_vault);
    // Cannot happen while rebuilds quiesce the vault; kept as a check that the output of a
    // request never outlives the keys it was computed with.
    if GENERATION.load(Ordering::Acquire) != generation {
        vcpu.stats.errors += posted.call_count() as u64;
        batch::fail(calls, &posted, CallError::StaleKeys);
        return;
    }
    let tally = batch::read_answers(calls, &posted, comm, vcpu.bounce_area(), &DirectMap);
    vcpu.stats.bytes += tally.bytes;
    vcpu.stats.errors += tally.errors;
}

/// A free key slot, backing one more block of them when all are taken (plain SVM only).
fn alloc_slot(state: &State) -> Result<u32, i32> {
    loop {
        if let Some(slot) = slots::take_free() {
            return Ok(slot);
        }
        if state.sev.is_some() {
            log_ratelimited(format_args!(
                "all {LAUNCH_KEY_SLOTS} launched key slots are in use: under SEV no more can be added"
            ));
            return Err(errno::ENOMEM);
        }
        match slots::grow(&mut RefPages(&state.private.npt_low)) {
            Ok(_) => {}
            Err(slots::GrowError::NoMemory) => return Err(errno::ENOMEM),
            Err(slots::GrowError::RangeFull) => {
                log_ratelimited(format_args!("all {KEY_SLOT_COUNT} key slots of the vault are in use"));
                return Err(errno::ENOMEM);
            }
        }
    }
}

fn fpu_usable() -> bool {
    // SAFETY: FFI, no arguments.
    unsafe { ffi::sevault_fpu_usable() != 0 }
}

/// `setkey`: hands the key to the vault once; `key` keeps only the slot. `xts`: `bytes` is
/// an XTS pair (data key, then tweak key) of two AES keys of one length.
pub fn setkey(key: &mut Key, bytes: &[u8], xts: bool) -> i32 {
    let Some(state) = state() else { return -errno::EIO };
    if SEV_DEAD.load(Ordering::Acquire) {
        return -errno::EIO;
    }
    let aes_len = if xts { bytes.len() / 2 } else { bytes.len() };
    if xts && bytes.len() % 2 != 0 {
        return -errno::EINVAL;
    }
    let Some(slot_key) = SlotKey::from_wire(aes_len as u32, xts) else { return -errno::EINVAL };
    if !fpu_usable() {
        // setkey comes from process context in practice; never fall back to a host copy.
        log_ratelimited(format_args!("setkey where the FPU is not usable: refused (-EAGAIN)"));
        return -errno::EAGAIN;
    }
    let slot = if key.slot != 0 {
        key.slot - 1
    } else {
        match alloc_slot(state) {
            Ok(slot) => slot,
            Err(e) => return -e,
        }
    };
    key.slot = slot + 1;
    key.key = 0;
    let request = WireRequest::set_key(slot, aes_len as u32, xts);
    let generation = GENERATION.load(Ordering::Acquire);
    let mut calls = [Call::new(request, bytes, None)];
    call(state, &mut calls);
    match calls[0].answer {
        Some(Ok(Answer { status: Status::Ok, .. })) => {
            key.key = slot_key.to_raw();
            key.generation = generation;
            0
        }
        Some(Ok(Answer { status, .. })) => -status_errno(status),
        Some(Err(e)) => -call_errno(e),
        None => -errno::EIO,
    }
}

/// Transform exit: zeroize the slot and give it back.
pub fn clear_key(key: &mut Key) {
    let Some(state) = state() else { return };
    if key.slot == 0 {
        return;
    }
    let slot = key.slot - 1;
    if key.key != 0 && key.generation == GENERATION.load(Ordering::Acquire) && fpu_usable() {
        let request = WireRequest::clear_key(slot);
        let mut calls = [Call::new(request, &[], None)];
        call(state, &mut calls);
        if !matches!(calls[0].answer, Some(Ok(Answer { status: Status::Ok, .. }))) {
            klog!(Level::Warn, "clearing key slot {slot} failed");
        }
    }
    *key = Key::default();
    slots::release(slot);
}

/// What a kernel request keeps between the batches that serve its chunks: the glue gives
/// each request this much room in its request context (`sevault_rust_job_scratch_bytes`).
pub struct JobScratch {
    job: batch::Job<SgCursor, SgCursor>,
    /// The kernel's IV buffer, null for ECB.
    iv_out: *mut u8,
}

/// Checks a kernel request and sets up its translator: `Ok(None)` if there is nothing to do
/// (a zero-length request of a mode that allows it).
fn prepare(job: &Job) -> Result<Option<JobScratch>, i32> {
    if SEV_DEAD.load(Ordering::Acquire) {
        return Err(errno::EIO);
    }
    // SAFETY: the glue passes live structures for the job's lifetime.
    let (key, request) = unsafe { (&*job.key, &job.request) };
    let Ok(mode) = Mode::try_from(job.mode) else { return Err(errno::EINVAL) };
    // crypto/xts.c refuses less than a block, even none; the other modes do nothing then.
    if request.len == 0 && mode != Mode::Xts {
        return Ok(None);
    }
    let translator = Translator::new(
        SgCursor { sg: request.src, offset: 0, remaining: request.len },
        SgCursor { sg: request.dst, offset: 0, remaining: request.len },
        request.len,
        TailRule::of(mode, if job.decrypt != 0 { Direction::Decrypt } else { Direction::Encrypt }),
    )
    .map_err(|_| errno::EINVAL)?;
    let slot_key = SlotKey::from_raw(key.key).ok_or(errno::ENOKEY)?;
    if key.slot == 0 || key.generation != GENERATION.load(Ordering::Acquire) || slot_key.xts != (mode == Mode::Xts) {
        return Err(errno::ENOKEY);
    }
    let mut iv = [0u8; 16];
    let iv_out = if mode != Mode::Ecb { request.iv } else { core::ptr::null_mut() };
    if !iv_out.is_null() {
        // SAFETY: the crypto API gives CBC, CTR and XTS requests a 16-byte IV buffer.
        unsafe { core::ptr::copy_nonoverlapping(iv_out, iv.as_mut_ptr(), 16) };
    }
    let op = if job.decrypt != 0 { Op::Decrypt } else { Op::Encrypt };
    let request = WireRequest {
        op: op as u32,
        mode: mode as u32,
        key_slot: key.slot - 1,
        key_len: slot_key.len as u32,
        iv,
        // Entries, lengths and (XTS) the tweak block are set per chunk by `batch::post`.
        ..WireRequest::default()
    };
    Ok(Some(JobScratch { job: batch::Job { translator, request, counted: false }, iv_out }))
}

/// Serves up to `MAX_BATCH` kernel requests together: each one's chunks go into as few
/// batches (VMRUNs) as the comm block allows, one chunk of each per batch
/// (`batch::serve_jobs`). Sets every job's `result` (0 or -errno).
pub fn crypt_batch(jobs: &mut [Job]) {
    let Some(state) = state() else {
        jobs.iter_mut().for_each(|job| job.result = -errno::EIO);
        return;
    };
    let count = jobs.len().min(MAX_BATCH);
    let jobs = &mut jobs[..count];
    // The jobs with work to do, at their own index: their scratch holds a live `JobScratch`.
    let mut live: [Option<&mut batch::Job<SgCursor, SgCursor>>; MAX_BATCH] = Default::default();
    let mut iv_outs = [core::ptr::null_mut::<u8>(); MAX_BATCH];
    for (i, job) in jobs.iter_mut().enumerate() {
        job.result = match prepare(job) {
            Ok(Some(scratch)) => {
                iv_outs[i] = scratch.iv_out;
                let place = job.scratch.cast::<JobScratch>();
                // SAFETY: the glue's scratch is `sevault_rust_job_scratch_bytes` of 8-aligned
                // request context, this request's alone until it completes; written here,
                // then only reached through this one reference.
                live[i] = Some(unsafe {
                    place.write(scratch);
                    &mut (*place).job
                });
                0
            }
            Ok(None) => 0,
            Err(e) => -e,
        };
    }
    let results = batch::serve_jobs(&mut live, |calls| call(state, calls));
    for (i, result) in results.iter().enumerate().take(count) {
        let Some(result) = result else { continue };
        jobs[i].result = match result {
            Ok(iv) => {
                // CBC: the last ciphertext block; CTR: the next counter (crypto/ctr.c); XTS:
                // unchanged, as crypto/xts.c leaves it.
                if !iv_outs[i].is_null() && jobs[i].mode != Mode::Xts as u32 {
                    // SAFETY: the kernel's 16-byte IV buffer (see `prepare`).
                    unsafe { core::ptr::copy_nonoverlapping(iv.as_ptr(), iv_outs[i], 16) };
                }
                0
            }
            Err(error) => -job_errno(*error),
        };
    }
}

/// encrypt/decrypt in `mode` (a `sevault_abi::Mode`), with the errnos of the kernel's
/// generic implementations for lengths the mode cannot take: one request, on this CPU now
/// (the simd wrapper's synchronous path).
pub fn crypt(key: &Key, request: &Request, decrypt: bool, mode: u32) -> i32 {
    let mut scratch = core::mem::MaybeUninit::<JobScratch>::uninit();
    let mut job = Job {
        key,
        request: Request { src: request.src, dst: request.dst, len: request.len, iv: request.iv },
        decrypt: decrypt as u32,
        mode,
        result: 0,
        scratch: scratch.as_mut_ptr().cast(),
    };
    crypt_batch(core::slice::from_mut(&mut job));
    job.result
}

/// The glue's module notifier: kvm_amd is coming (`true`) or going.
pub fn set_kvm_amd(loaded: bool) {
    KVM_AMD.store(loaded, Ordering::SeqCst);
}

/// kvm_amd is known to be loaded.
pub fn kvm_amd() -> bool {
    KVM_AMD.load(Ordering::SeqCst)
}

/// TLB flushes after vault requests so far.
pub fn tlb_flushes() -> u64 {
    TLB_FLUSHES.load(Ordering::Relaxed)
}

/// From an IPI (interrupts off, this CPU): the flush after a request, here and now — when
/// kvm_amd appears (so that no request that ended before it saw the flag left anything), or
/// with `force` as the load-time self-test of the flush VMRUN. False if it did not flush.
pub fn flush_this_cpu(force: bool) -> bool {
    let Some(state) = state() else { return true };
    if state.sev.is_some() {
        return true;
    }
    // SAFETY: FFI; an IPI handler runs with preemption off.
    let cpu = unsafe { ffi::sevault_cpu_id() };
    let Some(ptr) = state.vcpus.get(cpu as usize).map(|v| v.load(Ordering::Acquire)) else { return true };
    if ptr.is_null() {
        return true;
    }
    // SAFETY: this CPU's vCPU; the IPI may interrupt this CPU's own request code (which
    // holds `&mut Vcpu`), so only the page reference and the index, written once at load,
    // are read, through raw pointers.
    let (hsave, index) =
        unsafe { (core::ptr::read(&raw const (*ptr).hsave), core::ptr::read(&raw const (*ptr).index)) };
    flush_after_request(state.tlb, force || KVM_AMD.load(Ordering::SeqCst), hsave.phys, index)
}

/// Statistics of CPU `cpu`'s vCPU.
pub fn stats(cpu: u32) -> Option<Stats> {
    let state = state()?;
    let vcpu = state.vcpu(cpu)?;
    // SAFETY: another CPU may be counting: a volatile copy of aligned u64s (never torn on
    // x86-64); the figures are a snapshot.
    let mut stats = unsafe { core::ptr::read_volatile(&vcpu.stats) };
    if state.sev.is_none() {
        let words = vcpu.stack.iter().flat_map(|page| {
            // SAFETY: the vCPU's stack pages are mapped for the vault's lifetime; the vault
            // may be writing them on its CPU: volatile reads of aligned words, a snapshot.
            (0..PAGE_SIZE as usize / 8)
                .map(move |i| unsafe { core::ptr::read_volatile((page.virt as *const u64).add(i)) })
        });
        stats.stack_used = crate::stack::used_bytes(words) as u64;
    }
    Some(stats)
}

/// Rebuilds so far.
pub fn rebuilds() -> u64 {
    REBUILDS.load(Ordering::Relaxed)
}

/// Makes the next vault run fault (tests of the rebuild path and the time budget): 0,
/// `-EINVAL` for an unknown kind or CPU, `-EOPNOTSUPP` under SEV.
pub fn inject_fault(raw: u64) -> i32 {
    let Some(state) = state() else { return -errno::EIO };
    if let Some(launch) = state.sev {
        // The hook works by setting the vault's RIP in the VMCB: under SEV-ES the CPU runs
        // the vault from its encrypted VMSA and ignores the VMCB's save area; under SEV a
        // fault ends the vault until the module is reloaded (no relaunch).
        klog!(
            Level::Warn,
            "inject_fault: not available with sev={}: {}",
            if launch.es { "es" } else { "sev" },
            if launch.es {
                "the vault's RIP lives in its encrypted VMSA, which the HV cannot set"
            } else {
                "a fault would end the SEV vault until the module is reloaded"
            }
        );
        return -errno::EOPNOTSUPP;
    }
    if InjectedFault::from_raw(raw).is_none() || raw >> 8 > u64::from(state.nr_vcpus) {
        return -errno::EINVAL;
    }
    INJECT_FAULT.store(raw, Ordering::Release);
    0
}

/// The current generation.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}
