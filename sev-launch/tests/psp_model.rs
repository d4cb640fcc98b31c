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
use sevault_hv::launch::{launch, LaunchError, LaunchInput, LaunchMode, Psp};
use sevault_sev_launch::measure::guest_tables;
use sevault_sev_launch::{measure, policy, LaunchPolicy};
use sha2::{Digest, Sha256};

const INVALID_GUEST_STATE: u32 = 0x02;
const POLICY_FAILURE: u32 = 0x07;
const INACTIVE: u32 = 0x08;
const INVALID_ASID: u32 = 0x0D;
const INVALID_GUEST: u32 = 0x10;

/// SEV API guest policy bit 2: ES.
const POLICY_ES: u32 = 1 << 2;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Command {
    Activate(u32),
    LaunchStart(u32),
    UpdateData(u64),
    UpdateVmsa(u32),
    Measure,
    Finish,
}

/// Guest states of the SEV API (GSTATE_*), as far as a launch goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GuestState {
    /// No guest yet (before LAUNCH_START).
    None,
    /// GSTATE_LUPDATE.
    LaunchUpdate,
    /// GSTATE_LSECRET (after LAUNCH_MEASURE).
    LaunchSecret,
    /// GSTATE_RUNNING.
    Running,
}

/// The model. With `firmware_order`, ACTIVATE needs the guest that LAUNCH_START creates (its
/// handle), as on real firmware; without, an ACTIVATE before LAUNCH_START is remembered and
/// applied when the guest appears, so the digest can be checked whatever the order.
struct ModelPsp {
    firmware_order: bool,
    log: Vec<Command>,
    state: GuestState,
    policy: u32,
    asid: Option<u32>,
    ld: Sha256,
    measured_ld: Option<[u8; 32]>,
}

impl ModelPsp {
    fn new(firmware_order: bool) -> Self {
        Self {
            firmware_order,
            log: Vec::new(),
            state: GuestState::None,
            policy: 0,
            asid: None,
            ld: Sha256::new(),
            measured_ld: None,
        }
    }

    fn updating(&self) -> Result<(), u32> {
        match (self.state, self.asid) {
            (GuestState::LaunchUpdate, Some(_)) => Ok(()),
            (GuestState::LaunchUpdate, None) => Err(INACTIVE),
            _ => Err(INVALID_GUEST_STATE),
        }
    }
}

impl Psp for ModelPsp {
    fn activate(&mut self, asid: u32) -> Result<(), u32> {
        self.log.push(Command::Activate(asid));
        if asid == 0 {
            return Err(INVALID_ASID);
        }
        if self.firmware_order && self.state == GuestState::None {
            return Err(INVALID_GUEST);
        }
        self.asid = Some(asid);
        Ok(())
    }

    fn launch_start(&mut self, policy: u32) -> Result<(), u32> {
        self.log.push(Command::LaunchStart(policy));
        if self.state != GuestState::None {
            return Err(INVALID_GUEST_STATE);
        }
        self.state = GuestState::LaunchUpdate;
        self.policy = policy;
        Ok(())
    }

    fn launch_update_data(&mut self, gpa: u64, contents: &[u8; 4096]) -> Result<(), u32> {
        self.log.push(Command::UpdateData(gpa));
        self.updating()?;
        self.ld.update(contents);
        Ok(())
    }

    fn launch_update_vmsa(&mut self, vcpu: VcpuIndex, contents: &[u8; 4096]) -> Result<(), u32> {
        self.log.push(Command::UpdateVmsa(vcpu.get()));
        self.updating()?;
        if self.policy & POLICY_ES == 0 {
            return Err(POLICY_FAILURE);
        }
        self.ld.update(contents);
        Ok(())
    }

    fn launch_measure(&mut self) -> Result<(), u32> {
        self.log.push(Command::Measure);
        self.updating()?;
        self.measured_ld = Some(self.ld.clone().finalize().into());
        self.state = GuestState::LaunchSecret;
        Ok(())
    }

    fn launch_finish(&mut self) -> Result<(), u32> {
        self.log.push(Command::Finish);
        if self.state != GuestState::LaunchSecret {
            return Err(INVALID_GUEST_STATE);
        }
        self.state = GuestState::Running;
        Ok(())
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
            let mut psp = ModelPsp::new(false);
            run_launch(&mut psp, mode, &image, vcpus).unwrap();
            assert_eq!(psp.state, GuestState::Running);
            let expected = measure(mode, &image, vcpus, 51).unwrap();
            assert_eq!(
                psp.measured_ld.map(|ld| ld.to_vec()),
                Some(expected.digest.clone()),
                "{mode:?}, {vcpus} vCPUs, {which}"
            );
            assert_eq!(psp.policy, sev_policy(mode));
        }
    }
}

#[test]
fn the_recorded_command_sequence() {
    let (image, _) = common::vault_image();
    for mode in [LaunchMode::Sev, LaunchMode::SevEs] {
        for vcpus in [1, 2, 4] {
            let mut psp = ModelPsp::new(false);
            run_launch(&mut psp, mode, &image, vcpus).unwrap();
            let m = measure(mode, &image, vcpus, 51).unwrap();
            let data_pages = m.pages.iter().filter(|p| !matches!(p.kind, sevault_hv::launch::PageKind::Vmsa(_)));
            let mut expected = vec![Command::LaunchStart(sev_policy(mode)), Command::Activate(7)];
            expected.extend(data_pages.map(|p| Command::UpdateData(p.gpa)));
            if mode == LaunchMode::SevEs {
                expected.extend((0..vcpus).map(Command::UpdateVmsa));
            }
            expected.extend([Command::Measure, Command::Finish]);
            assert_eq!(psp.log, expected, "{mode:?}, {vcpus} vCPUs");
            // 1 image page + 16 guest page tables + 256 key-slot pages (1024 slots of 1 KiB).
            let updates = psp.log.iter().filter(|c| matches!(c, Command::UpdateData(_))).count();
            assert_eq!(updates, 273);
        }
    }
}

/// The model's own rules, so that agreeing with it means something.
#[test]
fn the_model_refuses_what_the_firmware_refuses() {
    let page = [0u8; 4096];
    let vcpu = VcpuIndex::new(0).unwrap();
    // Firmware order works: LAUNCH_START creates the guest, ACTIVATE binds its ASID.
    let mut psp = ModelPsp::new(true);
    psp.launch_start(sev_policy(LaunchMode::SevEs)).unwrap();
    assert_eq!(psp.launch_update_data(0x1000, &page), Err(INACTIVE));
    psp.activate(7).unwrap();
    psp.launch_update_data(0x1000, &page).unwrap();
    psp.launch_update_vmsa(vcpu, &page).unwrap();
    assert_eq!(psp.launch_finish(), Err(INVALID_GUEST_STATE));
    psp.launch_measure().unwrap();
    assert_eq!(psp.launch_update_data(0x2000, &page), Err(INVALID_GUEST_STATE));
    psp.launch_finish().unwrap();
    // ACTIVATE before there is a guest.
    assert_eq!(ModelPsp::new(true).activate(7), Err(INVALID_GUEST));
    assert_eq!(ModelPsp::new(false).activate(0), Err(INVALID_ASID));
    // No VMSA under a policy without ES.
    let mut psp = ModelPsp::new(true);
    psp.launch_start(sev_policy(LaunchMode::Sev)).unwrap();
    psp.activate(7).unwrap();
    assert_eq!(psp.launch_update_vmsa(vcpu, &page), Err(POLICY_FAILURE));
}

/// The SEV API's order is LAUNCH_START (which creates the guest context and returns its
/// handle), then ACTIVATE (handle, ASID) — as KVM does (`sev_launch_start` → `sev_bind_asid`).
/// `sevault_hv::launch::launch` must follow it (an early version issued ACTIVATE first, which
/// real firmware answers with INVALID_GUEST).
#[test]
fn the_hv_launch_follows_the_firmware_order() {
    let (image, _) = common::vault_image();
    for mode in [LaunchMode::Sev, LaunchMode::SevEs] {
        let mut psp = ModelPsp::new(true);
        assert_eq!(run_launch(&mut psp, mode, &image, 2), Ok(()), "{mode:?}: {:?}", psp.log.first());
        assert_eq!(psp.measured_ld.map(|ld| ld.to_vec()), Some(measure(mode, &image, 2, 51).unwrap().digest));
    }
}

/// The policy the HV launches with is the one `sev-launch policy` prints and measures.
#[test]
fn the_hv_policy_constants_are_sev_launchs() {
    assert_eq!(sev_policy(LaunchMode::Sev), sevault_hv::launch::POLICY_SEV);
    assert_eq!(sev_policy(LaunchMode::SevEs), sevault_hv::launch::POLICY_SEV_ES);
}
