//! The kernel implementation of [`crate::launch::Psp`]: the PSP commands of the SEV/SEV-ES
//! launch through the ccp driver (`hv/kernel/sevault_psp.c`). Each page's contents are
//! written into the vault page that backs it, flushed from the caches, then encrypted in
//! place by LAUNCH_UPDATE_DATA / LAUNCH_UPDATE_VMSA.
//!
//! Built, never run: these machines have no SEV. The command sequence itself is host-tested
//! (`sev-launch/tests/psp_model.rs`).
use sevault_abi::memory_map::{VcpuIndex, PAGE_SIZE};

use super::ffi;
use crate::arena::PageRef;
use crate::launch::Psp;

/// One launch's guest context.
pub struct KernelPsp<'a> {
    /// Firmware handle of the guest context (from LAUNCH_START).
    pub handle: u32,
    /// The vault page behind a launched GPA.
    pub data_page: &'a dyn Fn(u64) -> Option<PageRef>,
    /// The VMSA page of a vCPU.
    pub vmsa_page: &'a dyn Fn(VcpuIndex) -> Option<PageRef>,
    /// LAUNCH_MEASURE's answer: measurement (32 bytes) then MNONCE (16 bytes).
    pub measurement: [u8; 48],
}

/// Copies `contents` into `page` and flushes it, so the PSP encrypts what the HV wrote.
fn place(page: PageRef, contents: &[u8; 4096]) {
    // SAFETY: `page` is a mapped vault page of 4096 bytes, not yet encrypted or in use.
    unsafe {
        core::ptr::copy_nonoverlapping(contents.as_ptr(), page.virt as *mut u8, 4096);
        ffi::sevault_clflush(page.virt as *const u8, PAGE_SIZE as u32);
    }
}

/// A command's outcome: the firmware status on failure (or the errno if it had none).
fn check(err: i32, fw: i32) -> Result<(), u32> {
    match err {
        0 => Ok(()),
        _ if fw != 0 => Err(fw as u32),
        _ => Err(err.unsigned_abs()),
    }
}

impl Psp for KernelPsp<'_> {
    fn launch_start(&mut self, policy: u32) -> Result<(), u32> {
        let (mut handle, mut fw) = (0, 0);
        // SAFETY: FFI with out-pointers to locals.
        let err = unsafe { ffi::sevault_psp_launch_start(policy, &mut handle, &mut fw) };
        self.handle = handle;
        check(err, fw)
    }

    fn activate(&mut self, asid: u32) -> Result<(), u32> {
        let mut fw = 0;
        // SAFETY: FFI with an out-pointer to a local.
        check(unsafe { ffi::sevault_psp_activate(self.handle, asid, &mut fw) }, fw)
    }

    fn launch_update_data(&mut self, gpa: u64, contents: &[u8; 4096]) -> Result<(), u32> {
        let page = (self.data_page)(gpa).ok_or(u32::MAX)?;
        place(page, contents);
        let mut fw = 0;
        // SAFETY: FFI; the page is the vault's, mapped, 4096 bytes.
        check(unsafe { ffi::sevault_psp_update_data(self.handle, page.phys, PAGE_SIZE as u32, &mut fw) }, fw)
    }

    fn launch_update_vmsa(&mut self, vcpu: VcpuIndex, contents: &[u8; 4096]) -> Result<(), u32> {
        let page = (self.vmsa_page)(vcpu).ok_or(u32::MAX)?;
        place(page, contents);
        let mut fw = 0;
        // SAFETY: FFI; the page is this vCPU's VMSA page.
        check(unsafe { ffi::sevault_psp_update_vmsa(self.handle, page.phys, &mut fw) }, fw)
    }

    fn launch_measure(&mut self) -> Result<(), u32> {
        let mut fw = 0;
        // SAFETY: FFI; `measurement` is 48 writable bytes.
        check(unsafe { ffi::sevault_psp_measure(self.handle, self.measurement.as_mut_ptr(), 48, &mut fw) }, fw)
    }

    fn launch_finish(&mut self) -> Result<(), u32> {
        let mut fw = 0;
        // SAFETY: FFI with an out-pointer to a local.
        check(unsafe { ffi::sevault_psp_finish(self.handle, &mut fw) }, fw)
    }

    fn deactivate(&mut self) -> Result<(), u32> {
        let mut fw = 0;
        // SAFETY: FFI with an out-pointer to a local.
        check(unsafe { ffi::sevault_psp_deactivate(self.handle, &mut fw) }, fw)
    }

    fn wbinvd_on_all_cpus(&mut self) {
        // SAFETY: FFI, no arguments; may sleep (IPIs to every CPU), called from process context.
        unsafe { ffi::sevault_wbinvd_on_all_cpus() }
    }

    fn df_flush(&mut self) -> Result<(), u32> {
        let mut fw = 0;
        // SAFETY: FFI with an out-pointer to a local.
        check(unsafe { ffi::sevault_psp_df_flush(&mut fw) }, fw)
    }

    fn decommission(&mut self) -> Result<(), u32> {
        let mut fw = 0;
        // SAFETY: FFI with an out-pointer to a local.
        check(unsafe { ffi::sevault_psp_decommission(self.handle, &mut fw) }, fw)
    }
}
