//! What the HV makes of a #VMEXIT, and how vault statuses become errno values.
//!
//! Exit codes from AMD APM Vol. 2, Appendix C ("SVM Intercept Exit Codes"); VMGEXIT's 0x403
//! from the GHCB spec. Values from the other side are decoded, never trusted: an exit code
//! the HV does not expect is a vault fault, whatever it is.
use sevault_abi::Status;
use sevault_ghcb::{VMEXIT_VMGEXIT, VMEXIT_VMMCALL};

/// Physical interrupt (taken by the host at `local_irq_restore` after the run).
pub const VMEXIT_INTR: u64 = 0x60;
/// NMI intercept (the NMI is taken by the host when GIF is set again).
pub const VMEXIT_NMI: u64 = 0x61;
/// SMI (taken by the host when GIF is set again).
pub const VMEXIT_SMI: u64 = 0x62;
/// INIT (taken by the host when GIF is set again).
pub const VMEXIT_INIT: u64 = 0x63;
/// Machine check: exception intercept 0x40 + 18. The CPU does not hand it to the host by
/// itself; the HV calls the host's handler (as KVM's `svm_handle_mce`).
pub const VMEXIT_MC: u64 = 0x52;
/// Triple fault.
pub const VMEXIT_SHUTDOWN: u64 = 0x7F;
/// Nested page fault.
pub const VMEXIT_NPF: u64 = 0x400;
/// VMRUN's consistency checks failed (EXITCODE −1).
pub const VMEXIT_INVALID: u64 = u64::MAX;
/// First exception intercept (0x40 + vector).
pub const VMEXIT_EXCEPTION_BASE: u64 = 0x40;

/// Length of `rep vmmcall` (F3 0F 01 D9), for advancing RIP without NRIPS.
pub const VMGEXIT_LEN: u64 = 4;

/// The HV's reading of an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// The vault says "request done" (VMMCALL on plain SVM, VMGEXIT under SEV-ES).
    RequestDone {
        /// RIP must be advanced by the HV (plain SVM); under SEV-ES the CPU did it.
        advance_rip: bool,
    },
    /// A host event (interrupt, NMI, SMI, INIT) ended the run: the host takes it, then the
    /// vault resumes where it was. Never a fault.
    HostEvent,
    /// A machine check while the vault ran: handed to the host's #MC handler, then the vault
    /// resumes (the handler decides whether the machine survives).
    MachineCheck,
    /// Anything else: the vault is broken.
    Fault(FaultKind),
}

/// Which kind of fault, for the log and the statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// An exception (vector).
    Exception(u8),
    /// A triple fault.
    Shutdown,
    /// A nested page fault.
    NestedPageFault,
    /// VMRUN refused the state.
    Invalid,
    /// Any other exit code.
    Other(u64),
}

impl ExitKind {
    /// Classifies an EXITCODE.
    pub const fn classify(exit_code: u64) -> Self {
        match exit_code {
            VMEXIT_VMMCALL => Self::RequestDone { advance_rip: true },
            VMEXIT_VMGEXIT => Self::RequestDone { advance_rip: false },
            VMEXIT_INTR | VMEXIT_NMI | VMEXIT_SMI | VMEXIT_INIT => Self::HostEvent,
            VMEXIT_MC => Self::MachineCheck,
            VMEXIT_SHUTDOWN => Self::Fault(FaultKind::Shutdown),
            VMEXIT_NPF => Self::Fault(FaultKind::NestedPageFault),
            VMEXIT_INVALID => Self::Fault(FaultKind::Invalid),
            0x40..=0x5F => Self::Fault(FaultKind::Exception((exit_code - VMEXIT_EXCEPTION_BASE) as u8)),
            other => Self::Fault(FaultKind::Other(other)),
        }
    }
}

/// A flush VMCB's exit (`Vmcb::build_tlb_flush`).
pub const VMEXIT_VINTR: u64 = 0x64;
/// #PF: 0x40 + 14.
pub const VMEXIT_PF: u64 = 0x4E;

impl ExitKind {
    /// Whether a flush VMCB's VMRUN got as far as the guest, so that its TLB_CONTROL flush
    /// happened: the expected VINTR exit, a host event that came first, or the #PF of a CPU
    /// that fetched at RIP 0 anyway. VMEXIT_INVALID (or anything else) means it did not.
    pub const fn flushed_by(exit_code: u64) -> bool {
        matches!(exit_code, VMEXIT_VINTR | VMEXIT_INTR | VMEXIT_NMI | VMEXIT_SMI | VMEXIT_INIT | VMEXIT_PF)
    }
}

/// Statistics bucket of an exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum ExitBucket {
    /// 0x81.
    Vmmcall = 0,
    /// 0x403.
    Vmgexit = 1,
    /// 0x61.
    Nmi = 2,
    /// 0x60.
    Intr = 3,
    /// Everything else (SMI, INIT, #MC, and every fault).
    Other = 4,
}

impl ExitBucket {
    /// The bucket of `exit_code`.
    pub const fn of(exit_code: u64) -> Self {
        match exit_code {
            VMEXIT_VMMCALL => Self::Vmmcall,
            VMEXIT_VMGEXIT => Self::Vmgexit,
            VMEXIT_NMI => Self::Nmi,
            VMEXIT_INTR => Self::Intr,
            _ => Self::Other,
        }
    }
}

/// Linux errno values the crypto API expects (positive; the glue negates).
pub mod errno {
    /// I/O error: the vault failed.
    pub const EIO: i32 = 5;
    /// Out of memory / slots.
    pub const ENOMEM: i32 = 12;
    /// Busy.
    pub const EBUSY: i32 = 16;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// No such device (no SVM, …).
    pub const ENODEV: i32 = 19;
    /// Try again.
    pub const EAGAIN: i32 = 11;
    /// Required key not available.
    pub const ENOKEY: i32 = 126;
    /// Operation not supported (kernel-internal ENOTSUPP is 524; userspace sees EOPNOTSUPP).
    pub const EOPNOTSUPP: i32 = 95;
}

/// The errno for a vault status other than `Ok` (what generic AES would return where one
/// applies: bad lengths are `EINVAL`, a missing key `ENOKEY`).
pub const fn status_errno(status: Status) -> i32 {
    match status {
        Status::Ok => 0,
        Status::NoKey | Status::KeyLenMismatch => errno::ENOKEY,
        Status::BadKeyLen | Status::ZeroLength | Status::UnalignedLength => errno::EINVAL,
        // Never EBUSY: from .encrypt/.decrypt of an async skcipher it means "backlogged, a
        // completion follows", and none would. A slot is busy only while another CPU's
        // request on the same transform holds it (a caller racing setkey with requests).
        Status::SlotBusy => errno::EAGAIN,
        // Everything else means the HV built a request the vault refused: a bug or a
        // corrupted page, never the caller's input.
        _ => errno::EIO,
    }
}

/// A fault exit under plain SVM together with what the vault itself left, for telling the
/// emulator's two lost-exit forms from real faults (thesis-notes/hypervisor.md, "An open
/// fault under emulation").
#[derive(Clone, Copy, Debug)]
pub struct LostExitEvidence {
    /// The run was the first of its request.
    pub first_run: bool,
    /// EXITCODE.
    pub exit_code: u64,
    /// EXITINFO1 (for a #PF its error code).
    pub info1: u64,
    /// EXITINFO2 (for a #PF the faulting address).
    pub info2: u64,
    /// The VMCB's RIP after the exit.
    pub rip: u64,
    /// The RIP the run began at.
    pub entered_at: u64,
    /// RIP of the vault's last "request done" exit instruction (0: none since it started).
    pub done_rip: u64,
    /// The VMCB's RIP lies in the vault image.
    pub rip_in_image: bool,
    /// Every GPR (but RAX and RSP, which live in the VMCB) and XMM register the trampoline
    /// saved is zero, as the vault leaves them only at its exit instruction.
    pub scrubbed: bool,
    /// The comm block answers this request's sequence and the GHCB holds "request done".
    pub finished: bool,
}

/// What a fault exit was, when it was the emulator's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostExit {
    /// The vault retired no instruction: run it again from the same state.
    Rerun,
    /// The vault had reached its "request done" exit; the emulator overwrote that exit's state.
    Done,
}

/// #PF error code of an instruction fetch from a not-present page (AMD APM Vol. 2 §8.4.2).
const PF_INSTRUCTION_FETCH_NOT_PRESENT: u64 = 1 << 4;

impl LostExitEvidence {
    /// - An instruction-fetch #PF at the very RIP the run began at, on a request's first
    ///   run that resumed the vault right after its exit instruction: only a resume reaches
    ///   that RIP, so nothing was retired → [`LostExit::Rerun`].
    /// - Host state in the VMCB (RIP outside the image) while the vault had finished and
    ///   scrubbed its registers → [`LostExit::Done`].
    /// - Anything else: `None`, a fault.
    pub const fn classify(&self) -> Option<LostExit> {
        let resumed = self.done_rip != 0 && self.entered_at == self.done_rip + VMGEXIT_LEN;
        if self.first_run
            && resumed
            && self.exit_code == VMEXIT_PF
            && self.info1 == PF_INSTRUCTION_FETCH_NOT_PRESENT
            && self.info2 == self.rip
            && self.rip == self.entered_at
        {
            return Some(LostExit::Rerun);
        }
        if !self.rip_in_image && self.done_rip != 0 && self.scrubbed && self.finished {
            return Some(LostExit::Done);
        }
        None
    }
}

#[cfg(test)]
mod lost_exit_tests {
    use super::*;

    /// The two forms as the nested VM logged them (QEMU 7.2.22, 2026-12-02: "vault fault on
    /// cpu 0: exit 0x4e … info1 0x10 info2 0x108c rip 0x108c" after exits at RIP 0x1088, and
    /// "exit 0x400 … info1 0x200000006 info2 0x3ca2ff8 rip 0xffffffffc04d11fe").
    const PF_FORM: LostExitEvidence = LostExitEvidence {
        first_run: true,
        exit_code: 0x4e,
        info1: 0x10,
        info2: 0x108c,
        rip: 0x108c,
        entered_at: 0x108c,
        done_rip: 0x1088,
        rip_in_image: true,
        scrubbed: false,
        finished: false,
    };
    const HOST_STATE_FORM: LostExitEvidence = LostExitEvidence {
        first_run: true,
        exit_code: 0x400,
        info1: 0x2_0000_0006,
        info2: 0x3ca_2ff8,
        rip: 0xffff_ffff_c04d_11fe,
        entered_at: 0x108c,
        done_rip: 0x1088,
        rip_in_image: false,
        scrubbed: true,
        finished: true,
    };

    #[test]
    fn the_logged_forms_are_recognised() {
        assert_eq!(PF_FORM.classify(), Some(LostExit::Rerun));
        assert_eq!(HOST_STATE_FORM.classify(), Some(LostExit::Done));
        // Not only on a request's first run: the "done" exit may end any run.
        assert_eq!(
            LostExitEvidence { first_run: false, entered_at: 0x1234, ..HOST_STATE_FORM }.classify(),
            Some(LostExit::Done)
        );
    }

    #[test]
    fn real_faults_stay_faults() {
        let faults = [
            // The debugfs hook's run at the null page: #PF fetching RIP 0.
            LostExitEvidence { info2: 0, rip: 0, entered_at: 0, ..PF_FORM },
            // A #PF after the vault ran (not its first run, or elsewhere than the resume RIP).
            LostExitEvidence { first_run: false, ..PF_FORM },
            LostExitEvidence { info2: 0x1100, rip: 0x1100, ..PF_FORM },
            // A protection fault (present page), a data access, or a write.
            LostExitEvidence { info1: 0x11, ..PF_FORM },
            LostExitEvidence { info1: 0, ..PF_FORM },
            LostExitEvidence { info1: 0x12, ..PF_FORM },
            // Before the vault ever reported "done" (no known resume RIP).
            LostExitEvidence { done_rip: 0, ..PF_FORM },
            LostExitEvidence { done_rip: 0, ..HOST_STATE_FORM },
            // Host state, but the vault had not finished or not scrubbed its registers.
            LostExitEvidence { finished: false, ..HOST_STATE_FORM },
            LostExitEvidence { scrubbed: false, ..HOST_STATE_FORM },
            // A nested page fault of the vault itself (its RIP in the image).
            LostExitEvidence { rip_in_image: true, rip: 0x1200, ..HOST_STATE_FORM },
        ];
        for evidence in faults {
            assert_eq!(evidence.classify(), None, "{evidence:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits() {
        assert_eq!(ExitKind::classify(0x81), ExitKind::RequestDone { advance_rip: true });
        assert_eq!(ExitKind::classify(0x403), ExitKind::RequestDone { advance_rip: false });
        // AMD APM Vol. 2, Appendix C, Table C-1: 0x60 INTR, 0x61 NMI, 0x62 SMI, 0x63 INIT,
        // 0x52 = 0x40 + #MC (vector 18).
        for host_event in [0x60, 0x61, 0x62, 0x63] {
            assert_eq!(ExitKind::classify(host_event), ExitKind::HostEvent, "{host_event:#x}");
        }
        assert_eq!(ExitKind::classify(0x52), ExitKind::MachineCheck);
        assert_eq!(ExitKind::classify(0x51), ExitKind::Fault(FaultKind::Exception(17)));
        assert_eq!(ExitKind::classify(0x64), ExitKind::Fault(FaultKind::Other(0x64)));
        assert_eq!(ExitBucket::of(0x60), ExitBucket::Intr);
        assert_eq!(ExitKind::classify(0x7F), ExitKind::Fault(FaultKind::Shutdown));
        assert_eq!(ExitKind::classify(0x46), ExitKind::Fault(FaultKind::Exception(6)));
        assert_eq!(ExitKind::classify(0x5F), ExitKind::Fault(FaultKind::Exception(31)));
        assert_eq!(ExitKind::classify(0x400), ExitKind::Fault(FaultKind::NestedPageFault));
        assert_eq!(ExitKind::classify(u64::MAX), ExitKind::Fault(FaultKind::Invalid));
        assert_eq!(ExitKind::classify(0x72), ExitKind::Fault(FaultKind::Other(0x72)));
        assert_eq!(ExitBucket::of(0x81), ExitBucket::Vmmcall);
        assert_eq!(ExitBucket::of(0x7c), ExitBucket::Other);
    }

    #[test]
    fn flush_exits() {
        // AMD APM Vol. 2, Appendix C: 0x64 VINTR, 0x60-0x63 INTR/NMI/SMI/INIT, 0x4E #PF;
        // EXITCODE -1 is VMEXIT_INVALID (§15.5.1: the VMRUN failed its checks).
        for code in [0x64, 0x60, 0x61, 0x62, 0x63, 0x4E] {
            assert!(ExitKind::flushed_by(code), "{code:#x}");
        }
        for code in [u64::MAX, 0x7F, 0x400, 0x81] {
            assert!(!ExitKind::flushed_by(code), "{code:#x}");
        }
    }

    #[test]
    fn errnos() {
        assert_eq!(status_errno(Status::NoKey), errno::ENOKEY);
        assert_eq!(status_errno(Status::UnalignedLength), errno::EINVAL);
        assert_eq!(status_errno(Status::BadMagic), errno::EIO);
        for status in Status::ALL {
            assert_eq!(status_errno(status) == 0, status == Status::Ok);
        }
    }
}
