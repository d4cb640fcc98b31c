//! A software PSP under the HV's own launch flow (`sevault_hv::launch::launch`): it records
//! the command sequence and keeps GCTX.LD as the SEV firmware does — a SHA-256 over the data
//! of every LAUNCH_UPDATE_DATA and LAUNCH_UPDATE_VMSA — so the digest `sev-launch measure`
//! predicts is checked against what the HV actually hands the PSP, not against a second
//! description of the launch.
//!
//! Status codes are the SEV API's (Linux `include/uapi/linux/psp-sev.h`, `sev_ret_code`).
// An integration-test crate: its helpers fail the test the way #[test] functions do, which
// clippy.toml allows for those (allow-unwrap/expect/panic-in-tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use sevault_abi::memory_map::VcpuIndex;
use sevault_hv::launch::{launch, status, teardown, LaunchError, LaunchInput, LaunchMode, Psp, Teardown};
use sevault_sev_launch::measure::guest_tables;
use sevault_sev_launch::{measure, policy, LaunchPolicy};
use std::cell::RefCell;
use std::collections::HashMap;

use sha2::{Digest, Sha256};

// Status codes transcribed from Linux `include/uapi/linux/psp-sev.h` (`enum sev_ret_code`),
// which follows the SEV API's status table (AMD pub. 55766, "Status Codes").
const INVALID_GUEST_STATE: u32 = 0x02;
const POLICY_FAILURE: u32 = 0x07;
const INACTIVE: u32 = 0x08;
const ASID_OWNED: u32 = 0x0C;
const INVALID_ASID: u32 = 0x0D;
const WBINVD_REQUIRED: u32 = 0x0E;
const DFFLUSH_REQUIRED: u32 = 0x0F;
const INVALID_GUEST: u32 = 0x10;
const ACTIVE: u32 = 0x12;

/// SEV API guest policy bit 2: ES.
const POLICY_ES: u32 = 1 << 2;

/// Everything the model sees, in order: PSP commands, and the two host actions the firmware
/// cares about (WBINVD on all CPUs, the guest's memory going back to the allocator).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Command {
    Activate(u32),
    LaunchStart(u32),
    UpdateData(u64),
    UpdateVmsa(u32),
    Measure,
    Finish,
    Deactivate,
    Wbinvd,
    DfFlush,
    Decommission,
    Release,
}

/// Guest states of the SEV API (GSTATE_*), as far as a launch goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GuestState {
    /// GSTATE_LUPDATE.
    LaunchUpdate,
    /// GSTATE_LSECRET (after LAUNCH_MEASURE).
    LaunchSecret,
    /// GSTATE_RUNNING.
    Running,
}

/// One guest context of the firmware.
struct Guest {
    state: GuestState,
    policy: u32,
    asid: Option<u32>,
    ld: Sha256,
    measured_ld: Option<[u8; 32]>,
}

/// An ASID as the firmware tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Asid {
    /// Never used, or flushed by DF_FLUSH since its last DEACTIVATE.
    Clean,
    /// Bound to a guest (by handle).
    Bound(u32),
    /// Deactivated, not yet DF_FLUSHed: ACTIVATE answers DFFLUSH_REQUIRED.
    NeedsDfFlush,
}

/// The firmware and the platform around it, shared by every guest launched on it: guest
/// contexts, ASID states, whether caches were written back since the last DEACTIVATE, and
/// whether lines written under a guest key may still sit in a cache.
#[derive(Default)]
struct Firmware {
    log: Vec<Command>,
    guests: HashMap<u32, Guest>,
    next_handle: u32,
    asids: HashMap<u32, Asid>,
    /// A WBINVD on every CPU since the last DEACTIVATE (DF_FLUSH needs it).
    wbinvd_since_deactivate: bool,
    /// Lines written under a guest's key may still be cached (cleared by WBINVD).
    dirty_guest_lines: bool,
    /// Memory released to the allocator while [`Firmware::dirty_guest_lines`].
    released_dirty: bool,
    /// Statuses to answer instead of running a command, by command (fault injection).
    fail_next: HashMap<&'static str, u32>,
}

impl Firmware {
    fn asid(&self, asid: u32) -> Asid {
        self.asids.get(&asid).copied().unwrap_or(Asid::Clean)
    }

    fn injected(&mut self, command: &'static str) -> Result<(), u32> {
        self.fail_next.remove(command).map_or(Ok(()), Err)
    }
}

/// One guest's view of the firmware: what the HV's `Psp` talks to. With `firmware_order`,
/// ACTIVATE needs the guest that LAUNCH_START creates (its handle), as on real firmware;
/// without, an ACTIVATE before LAUNCH_START is remembered and applied when the guest
/// appears, so the digest can be checked whatever the order.
struct ModelPsp<'a> {
    fw: &'a RefCell<Firmware>,
    firmware_order: bool,
    handle: u32,
    early_asid: Option<u32>,
}

impl<'a> ModelPsp<'a> {
    fn new(fw: &'a RefCell<Firmware>, firmware_order: bool) -> Self {
        Self { fw, firmware_order, handle: 0, early_asid: None }
    }

    fn with_guest<T>(&self, f: impl FnOnce(&mut Guest) -> Result<T, u32>) -> Result<T, u32> {
        let mut fw = self.fw.borrow_mut();
        fw.guests.get_mut(&self.handle).map_or(Err(INVALID_GUEST), f)
    }

    fn updating(&self, contents: &[u8; 4096], vmsa: bool) -> Result<(), u32> {
        self.with_guest(|g| {
            if g.state != GuestState::LaunchUpdate {
                return Err(INVALID_GUEST_STATE);
            }
            if g.asid.is_none() {
                return Err(INACTIVE);
            }
            if vmsa && g.policy & POLICY_ES == 0 {
                return Err(POLICY_FAILURE);
            }
            g.ld.update(contents);
            Ok(())
        })?;
        // The PSP wrote the page encrypted with the guest's key.
        self.fw.borrow_mut().dirty_guest_lines = true;
        Ok(())
    }

    fn log(&self, command: Command) {
        self.fw.borrow_mut().log.push(command);
    }

    fn guest_state(&self) -> Option<GuestState> {
        self.fw.borrow().guests.get(&self.handle).map(|g| g.state)
    }

    fn measured_ld(&self) -> Option<[u8; 32]> {
        self.fw.borrow().guests.get(&self.handle).and_then(|g| g.measured_ld)
    }

    fn bind(&self, asid: u32) -> Result<(), u32> {
        let mut fw = self.fw.borrow_mut();
        fw.injected("ACTIVATE")?;
        match fw.asid(asid) {
            Asid::Bound(_) => return Err(ASID_OWNED),
            Asid::NeedsDfFlush => return Err(DFFLUSH_REQUIRED),
            Asid::Clean => {}
        }
        let handle = self.handle;
        let guest = fw.guests.get_mut(&handle).ok_or(INVALID_GUEST)?;
        if guest.asid.is_some() {
            return Err(ACTIVE);
        }
        guest.asid = Some(asid);
        fw.asids.insert(asid, Asid::Bound(handle));
        Ok(())
    }
}

impl Psp for ModelPsp<'_> {
    fn activate(&mut self, asid: u32) -> Result<(), u32> {
        self.log(Command::Activate(asid));
        if asid == 0 {
            return Err(INVALID_ASID);
        }
        if self.handle == 0 {
            if self.firmware_order {
                return Err(INVALID_GUEST);
            }
            self.early_asid = Some(asid);
            return Ok(());
        }
        self.bind(asid)
    }

    fn launch_start(&mut self, policy: u32) -> Result<(), u32> {
        self.log(Command::LaunchStart(policy));
        if self.handle != 0 {
            return Err(INVALID_GUEST_STATE);
        }
        let mut fw = self.fw.borrow_mut();
        fw.injected("LAUNCH_START")?;
        fw.next_handle += 1;
        let handle = fw.next_handle;
        let guest = Guest { state: GuestState::LaunchUpdate, policy, asid: None, ld: Sha256::new(), measured_ld: None };
        fw.guests.insert(handle, guest);
        drop(fw);
        self.handle = handle;
        match self.early_asid.take() {
            Some(asid) => self.bind(asid),
            None => Ok(()),
        }
    }

    fn launch_update_data(&mut self, gpa: u64, contents: &[u8; 4096]) -> Result<(), u32> {
        self.log(Command::UpdateData(gpa));
        self.updating(contents, false)
    }

    fn launch_update_vmsa(&mut self, vcpu: VcpuIndex, contents: &[u8; 4096]) -> Result<(), u32> {
        self.log(Command::UpdateVmsa(vcpu.get()));
        self.updating(contents, true)
    }

    fn launch_measure(&mut self) -> Result<(), u32> {
        self.log(Command::Measure);
        self.with_guest(|g| {
            if g.state != GuestState::LaunchUpdate {
                return Err(INVALID_GUEST_STATE);
            }
            g.measured_ld = Some(g.ld.clone().finalize().into());
            g.state = GuestState::LaunchSecret;
            Ok(())
        })
    }

    fn launch_finish(&mut self) -> Result<(), u32> {
        self.log(Command::Finish);
        self.with_guest(|g| {
            if g.state != GuestState::LaunchSecret {
                return Err(INVALID_GUEST_STATE);
            }
            g.state = GuestState::Running;
            Ok(())
        })
    }

    fn deactivate(&mut self) -> Result<(), u32> {
        self.log(Command::Deactivate);
        let asid = self.with_guest(|g| g.asid.take().ok_or(INACTIVE))?;
        let mut fw = self.fw.borrow_mut();
        fw.asids.insert(asid, Asid::NeedsDfFlush);
        fw.wbinvd_since_deactivate = false;
        Ok(())
    }

    fn wbinvd_on_all_cpus(&mut self) {
        self.log(Command::Wbinvd);
        let mut fw = self.fw.borrow_mut();
        fw.wbinvd_since_deactivate = true;
        fw.dirty_guest_lines = false;
    }

    fn df_flush(&mut self) -> Result<(), u32> {
        self.log(Command::DfFlush);
        let mut fw = self.fw.borrow_mut();
        fw.injected("DF_FLUSH")?;
        if !fw.wbinvd_since_deactivate {
            return Err(WBINVD_REQUIRED);
        }
        for state in fw.asids.values_mut() {
            if *state == Asid::NeedsDfFlush {
                *state = Asid::Clean;
            }
        }
        Ok(())
    }

    fn decommission(&mut self) -> Result<(), u32> {
        self.log(Command::Decommission);
        let mut fw = self.fw.borrow_mut();
        match fw.guests.get(&self.handle) {
            None => Err(INVALID_GUEST),
            Some(g) if g.asid.is_some() => Err(ACTIVE),
            Some(_) => {
                fw.guests.remove(&self.handle);
                Ok(())
            }
        }
    }
}

/// The `release` callback of `teardown` as the model sees it: logged, and remembered if
/// guest-key lines could still be cached.
fn release(fw: &RefCell<Firmware>) {
    let mut fw = fw.borrow_mut();
    fw.log.push(Command::Release);
    if fw.dirty_guest_lines {
        fw.released_dirty = true;
    }
}

/// The vault's SEV/SEV-ES policy (`u32::MAX`, which no test expects, for SNP).
fn sev_policy(mode: LaunchMode) -> u32 {
    match policy(mode) {
        LaunchPolicy::Sev(p) => p,
        LaunchPolicy::Snp(_) => u32::MAX,
    }
}

/// Runs the HV's launch of `image` on `psp`.
fn run_launch(psp: &mut ModelPsp, mode: LaunchMode, image: &[u8], vcpus: u32) -> Result<(), LaunchError> {
    let input = LaunchInput { mode, image, vcpus, c_bit: 51 };
    let tables = guest_tables(&input);
    launch(psp, &input, &tables, 7, sev_policy(mode), &mut [0; 4096])
}

#[test]
fn the_model_computes_the_digest_measure_predicts() {
    let (image, which) = common::vault_image();
    for mode in [LaunchMode::Sev, LaunchMode::SevEs] {
        for vcpus in [1, 2, 4] {
            let fw = RefCell::new(Firmware::default());
            let mut psp = ModelPsp::new(&fw, false);
            run_launch(&mut psp, mode, &image, vcpus).unwrap();
            assert_eq!(psp.guest_state(), Some(GuestState::Running));
            let expected = measure(mode, &image, vcpus, 51).unwrap();
            assert_eq!(
                psp.measured_ld().map(|ld| ld.to_vec()),
                Some(expected.digest.clone()),
                "{mode:?}, {vcpus} vCPUs, {which}"
            );
            assert_eq!(fw.borrow().guests[&psp.handle].policy, sev_policy(mode));
        }
    }
}

#[test]
fn the_recorded_command_sequence() {
    let (image, _) = common::vault_image();
    for mode in [LaunchMode::Sev, LaunchMode::SevEs] {
        for vcpus in [1, 2, 4] {
            let fw = RefCell::new(Firmware::default());
            let mut psp = ModelPsp::new(&fw, false);
            run_launch(&mut psp, mode, &image, vcpus).unwrap();
            let m = measure(mode, &image, vcpus, 51).unwrap();
            let data_pages = m.pages.iter().filter(|p| !matches!(p.kind, sevault_hv::launch::PageKind::Vmsa(_)));
            let mut expected = vec![Command::LaunchStart(sev_policy(mode)), Command::Activate(7)];
            expected.extend(data_pages.map(|p| Command::UpdateData(p.gpa)));
            if mode == LaunchMode::SevEs {
                expected.extend((0..vcpus).map(Command::UpdateVmsa));
            }
            expected.extend([Command::Measure, Command::Finish]);
            let log = fw.borrow().log.clone();
            assert_eq!(log, expected, "{mode:?}, {vcpus} vCPUs");
            // 1 image page + 20 guest page tables + 256 key-slot pages (1024 slots of 1 KiB).
            let updates = log.iter().filter(|c| matches!(c, Command::UpdateData(_))).count();
            assert_eq!(updates, 277);
        }
    }
}

/// The model's own rules, so that agreeing with it means something.
#[test]
fn the_model_refuses_what_the_firmware_refuses() {
    let page = [0u8; 4096];
    let vcpu = VcpuIndex::new(0).unwrap();
    let fw = RefCell::new(Firmware::default());
    // Firmware order works: LAUNCH_START creates the guest, ACTIVATE binds its ASID.
    let mut psp = ModelPsp::new(&fw, true);
    psp.launch_start(sev_policy(LaunchMode::SevEs)).unwrap();
    assert_eq!(psp.launch_update_data(0x1000, &page), Err(INACTIVE));
    psp.activate(7).unwrap();
    assert_eq!(psp.activate(7), Err(ASID_OWNED), "the ASID is this guest's already");
    psp.launch_update_data(0x1000, &page).unwrap();
    psp.launch_update_vmsa(vcpu, &page).unwrap();
    assert_eq!(psp.launch_finish(), Err(INVALID_GUEST_STATE));
    psp.launch_measure().unwrap();
    assert_eq!(psp.launch_update_data(0x2000, &page), Err(INVALID_GUEST_STATE));
    psp.launch_finish().unwrap();
    // A second guest cannot take a bound ASID.
    let mut other = ModelPsp::new(&fw, true);
    other.launch_start(sev_policy(LaunchMode::SevEs)).unwrap();
    assert_eq!(other.activate(7), Err(ASID_OWNED));
    // ACTIVATE before there is a guest.
    let empty = RefCell::new(Firmware::default());
    assert_eq!(ModelPsp::new(&empty, true).activate(7), Err(INVALID_GUEST));
    assert_eq!(ModelPsp::new(&empty, false).activate(0), Err(INVALID_ASID));
    // No VMSA under a policy without ES.
    let mut psp = ModelPsp::new(&empty, true);
    psp.launch_start(sev_policy(LaunchMode::Sev)).unwrap();
    psp.activate(7).unwrap();
    assert_eq!(psp.launch_update_vmsa(vcpu, &page), Err(POLICY_FAILURE));
}

/// The firmware's rules for ending a guest (SEV API: DEACTIVATE, DF_FLUSH, DECOMMISSION,
/// ACTIVATE; KVM `sev_flush_asids` does WBINVD on all CPUs before DF_FLUSH): a DF_FLUSH
/// without a WBINVD since the last DEACTIVATE is refused; a deactivated ASID cannot be bound
/// again before a DF_FLUSH; a guest with its ASID bound cannot be decommissioned.
#[test]
fn the_model_refuses_misordered_teardowns() {
    let (image, _) = common::vault_image();
    let fw = RefCell::new(Firmware::default());
    let mut first = ModelPsp::new(&fw, true);
    run_launch(&mut first, LaunchMode::SevEs, &image, 1).unwrap();
    assert_eq!(first.decommission(), Err(ACTIVE), "DECOMMISSION before DEACTIVATE");
    first.deactivate().unwrap();
    assert_eq!(first.deactivate(), Err(INACTIVE));
    assert_eq!(first.df_flush(), Err(WBINVD_REQUIRED), "DF_FLUSH without WBINVD");
    // The ASID still needs its DF_FLUSH: a new guest cannot have it.
    let mut second = ModelPsp::new(&fw, true);
    second.launch_start(sev_policy(LaunchMode::SevEs)).unwrap();
    assert_eq!(second.activate(7), Err(DFFLUSH_REQUIRED));
    first.wbinvd_on_all_cpus();
    first.df_flush().unwrap();
    second.activate(7).unwrap();
    first.decommission().unwrap();
    assert_eq!(first.decommission(), Err(INVALID_GUEST));
}

/// The HV's teardown, run against the model: WBINVD on all CPUs, DEACTIVATE, WBINVD again,
/// DF_FLUSH, DECOMMISSION, and only then the memory released; every status clean; the ASID is usable
/// by the next launch (the vault loaded again).
#[test]
fn the_hv_teardown_order() {
    let (image, _) = common::vault_image();
    for mode in [LaunchMode::Sev, LaunchMode::SevEs] {
        let fw = RefCell::new(Firmware::default());
        let mut psp = ModelPsp::new(&fw, true);
        run_launch(&mut psp, mode, &image, 2).unwrap();
        let launched = fw.borrow().log.len();
        let report = teardown(&mut psp, || release(&fw));
        assert!(report.is_clean(), "{mode:?}: {report:?}");
        let fw_ref = fw.borrow();
        assert_eq!(
            fw_ref.log[launched..],
            [
                Command::Wbinvd,
                Command::Deactivate,
                Command::Wbinvd,
                Command::DfFlush,
                Command::Decommission,
                Command::Release
            ],
            "{mode:?}"
        );
        assert!(!fw_ref.released_dirty, "{mode:?}: memory released with guest-key lines still cached");
        assert!(fw_ref.guests.is_empty(), "{mode:?}: guest context left behind");
        assert_eq!(fw_ref.asid(7), Asid::Clean, "{mode:?}");
        drop(fw_ref);
        let mut again = ModelPsp::new(&fw, true);
        assert_eq!(run_launch(&mut again, mode, &image, 2), Ok(()), "{mode:?}: the vault loaded a second time");
    }
}

/// A failing step is reported with its firmware status, and the later steps still run (the
/// memory is released after the WBINVD in every case).
#[test]
fn the_hv_teardown_reports_each_status() {
    let (image, _) = common::vault_image();
    let fw = RefCell::new(Firmware::default());
    let mut psp = ModelPsp::new(&fw, true);
    run_launch(&mut psp, LaunchMode::SevEs, &image, 1).unwrap();
    fw.borrow_mut().fail_next.insert("DF_FLUSH", 0x13);
    let report = teardown(&mut psp, || release(&fw));
    assert_eq!(report, Teardown { deactivate: Ok(()), df_flush: Err(0x13), decommission: Ok(()) });
    assert!(!report.is_clean());
    assert_eq!(fw.borrow().log.last(), Some(&Command::Release));
    assert!(!fw.borrow().released_dirty);
    assert_eq!(fw.borrow().asid(7), Asid::NeedsDfFlush, "the failed DF_FLUSH left the ASID unflushed");
    // A launch that failed before ACTIVATE: DEACTIVATE answers INACTIVE, which is no harm.
    let fw = RefCell::new(Firmware::default());
    fw.borrow_mut().fail_next.insert("ACTIVATE", INVALID_ASID);
    let mut psp = ModelPsp::new(&fw, true);
    assert_eq!(run_launch(&mut psp, LaunchMode::SevEs, &image, 1), Err(LaunchError::Psp(INVALID_ASID)));
    let report = teardown(&mut psp, || release(&fw));
    assert_eq!(report.deactivate, Err(INACTIVE));
    assert!(report.is_clean(), "nothing was bound: {report:?}");
    assert!(fw.borrow().guests.is_empty());
}

/// An ASID an earlier user left deactivated but unflushed: the HV's launch writes the caches
/// back, issues DF_FLUSH and binds it (KVM: `sev_flush_asids` before reusing ASIDs).
#[test]
fn the_hv_launch_flushes_an_asid_left_unflushed() {
    let (image, _) = common::vault_image();
    let fw = RefCell::new(Firmware::default());
    let mut earlier = ModelPsp::new(&fw, true);
    run_launch(&mut earlier, LaunchMode::SevEs, &image, 1).unwrap();
    earlier.deactivate().unwrap();
    let mut psp = ModelPsp::new(&fw, true);
    assert_eq!(run_launch(&mut psp, LaunchMode::SevEs, &image, 1), Ok(()));
    let log = fw.borrow().log.clone();
    let from = log.iter().rposition(|c| matches!(c, Command::LaunchStart(_))).unwrap();
    assert_eq!(
        log[from + 1..from + 5],
        [Command::Activate(7), Command::Wbinvd, Command::DfFlush, Command::Activate(7)],
        "retry after DFFLUSH_REQUIRED"
    );
}

/// The HV's status numbers are the SEV API's (transcribed above from psp-sev.h).
#[test]
fn the_hv_status_codes_are_the_sev_apis() {
    assert_eq!(
        [
            status::INVALID_GUEST_STATE,
            status::POLICY_FAILURE,
            status::INACTIVE,
            status::ASID_OWNED,
            status::INVALID_ASID,
            status::WBINVD_REQUIRED,
            status::DFFLUSH_REQUIRED,
            status::INVALID_GUEST,
            status::ACTIVE
        ],
        [
            INVALID_GUEST_STATE,
            POLICY_FAILURE,
            INACTIVE,
            ASID_OWNED,
            INVALID_ASID,
            WBINVD_REQUIRED,
            DFFLUSH_REQUIRED,
            INVALID_GUEST,
            ACTIVE
        ]
    );
    assert_eq!(status::name(DFFLUSH_REQUIRED), "DFFLUSH_REQUIRED");
}

/// The SEV API's order is LAUNCH_START (which creates the guest context and returns its
/// handle), then ACTIVATE (handle, ASID) — as KVM does (`sev_launch_start` → `sev_bind_asid`).
/// `sevault_hv::launch::launch` must follow it (an early version issued ACTIVATE first, which
/// real firmware answers with INVALID_GUEST).
#[test]
fn the_hv_launch_follows_the_firmware_order() {
    let (image, _) = common::vault_image();
    for mode in [LaunchMode::Sev, LaunchMode::SevEs] {
        let fw = RefCell::new(Firmware::default());
        let mut psp = ModelPsp::new(&fw, true);
        let first = fw.borrow().log.first().cloned();
        assert_eq!(run_launch(&mut psp, mode, &image, 2), Ok(()), "{mode:?}: {first:?}");
        assert_eq!(psp.measured_ld().map(|ld| ld.to_vec()), Some(measure(mode, &image, 2, 51).unwrap().digest));
    }
}

/// The policy the HV launches with is the one `sev-launch policy` prints and measures.
#[test]
fn the_hv_policy_constants_are_sev_launchs() {
    assert_eq!(sev_policy(LaunchMode::Sev), sevault_hv::launch::POLICY_SEV);
    assert_eq!(sev_policy(LaunchMode::SevEs), sevault_hv::launch::POLICY_SEV_ES);
}
