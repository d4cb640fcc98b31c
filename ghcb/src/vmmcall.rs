//! The VMMCALL NAE event: the vault's hypercall.
//!
//! GHCB spec, table "List of Supported Non-Automatic Events", VMMCALL
//! (SW_EXITCODE 0x81): the guest passes RAX and CPL, with SW_EXITINFO1 = 0
//! and SW_EXITINFO2 = 0; the hypervisor returns RAX. What RAX means (the
//! hypercall number, the result) is the project's business, not this crate's.
//!
//! Life of a hypercall:
//! 1. guest: [`GhcbPtr::write_vmmcall_event`], then VMGEXIT ([`crate::VMGEXIT_BYTES`]);
//! 2. hypervisor, after the exit: [`GhcbPtr::read_vmmcall_event`], handles it,
//!    then [`GhcbPtr::write_vmmcall_result`] (or [`GhcbPtr::write_vmmcall_error`])
//!    and resumes the guest;
//! 3. guest: [`GhcbPtr::read_vmmcall_result`].

use core::fmt;

use crate::exit_code::SwExitCode;
use crate::layout::{GhcbField, ValidBitmap};
use crate::shared::{GhcbPtr, GhcbSnapshot};
use crate::{GHCB_PROTOCOL_VERSION, GHCB_USAGE_STANDARD};

/// Fields the guest must mark valid in a VMMCALL event.
pub const VMMCALL_EVENT_FIELDS: [GhcbField; 5] =
    [GhcbField::Rax, GhcbField::Cpl, GhcbField::SwExitCode, GhcbField::SwExitInfo1, GhcbField::SwExitInfo2];

/// The valid bitmap of a VMMCALL event, computed at compile time (the vault's image budget
/// has no room for building it at run time).
pub const VMMCALL_EVENT_BITMAP: ValidBitmap = ValidBitmap::EMPTY.with_all(&VMMCALL_EVENT_FIELDS);

/// Fields the hypervisor marks valid when it completes an event.
pub const VMMCALL_RESULT_FIELDS: [GhcbField; 3] = [GhcbField::Rax, GhcbField::SwExitInfo1, GhcbField::SwExitInfo2];

/// The valid bitmap of a completed event.
pub const VMMCALL_RESULT_BITMAP: ValidBitmap = ValidBitmap::EMPTY.with_all(&VMMCALL_RESULT_FIELDS);

/// SW_EXITINFO1 the hypervisor returns when the event completed.
pub const EXIT_INFO_SUCCESS: u64 = 0;

/// SW_EXITINFO1 the hypervisor returns when the GHCB input was bad; the
/// reason is then in SW_EXITINFO2 (a `GHCB_ERR_*` code).
pub const EXIT_INFO_GHCB_INPUT_ERROR: u64 = 2;

/// `GHCB_ERR_INVALID_USAGE`: unsupported GHCB usage.
pub const GHCB_ERR_INVALID_USAGE: u64 = 2;
/// `GHCB_ERR_MISSING_INPUT`: a required field is not marked valid.
pub const GHCB_ERR_MISSING_INPUT: u64 = 4;
/// `GHCB_ERR_INVALID_INPUT`: a field holds a value the event does not allow.
pub const GHCB_ERR_INVALID_INPUT: u64 = 5;
/// `GHCB_ERR_INVALID_EVENT`: the SW_EXITCODE is not handled.
pub const GHCB_ERR_INVALID_EVENT: u64 = 6;

/// Why a GHCB did not hold a well-formed VMMCALL event or result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GhcbError {
    /// GHCB usage is not 0 (standard format).
    UnsupportedUsage(u32),
    /// Protocol version is not [`GHCB_PROTOCOL_VERSION`].
    UnsupportedVersion(u16),
    /// A field the event needs is not marked valid.
    MissingField(GhcbField),
    /// SW_EXITCODE is not VMMCALL.
    UnexpectedExitCode(SwExitCode),
    /// The guest claims to run at a CPL other than 0.
    NonZeroCpl(u8),
    /// SW_EXITINFO1 or SW_EXITINFO2 is not 0, as VMMCALL requires.
    NonZeroExitInfo {
        /// SW_EXITINFO1 as read.
        exit_info_1: u64,
        /// SW_EXITINFO2 as read.
        exit_info_2: u64,
    },
    /// The hypervisor completed the event with an error (SW_EXITINFO1 != 0).
    HypervisorError {
        /// SW_EXITINFO1 as read (2: GHCB input error, 1: exception).
        exit_info_1: u64,
        /// SW_EXITINFO2 as read (the error code or exception).
        exit_info_2: u64,
    },
}

impl GhcbError {
    /// The `GHCB_ERR_*` code a hypervisor returns in SW_EXITINFO2 for this
    /// rejection of a guest's event.
    pub const fn ghcb_error_code(&self) -> u64 {
        match self {
            Self::UnsupportedUsage(_) => GHCB_ERR_INVALID_USAGE,
            Self::MissingField(_) => GHCB_ERR_MISSING_INPUT,
            Self::UnexpectedExitCode(_) => GHCB_ERR_INVALID_EVENT,
            Self::UnsupportedVersion(_)
            | Self::NonZeroCpl(_)
            | Self::NonZeroExitInfo { .. }
            | Self::HypervisorError { .. } => GHCB_ERR_INVALID_INPUT,
        }
    }
}

impl fmt::Display for GhcbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnsupportedUsage(usage) => write!(f, "unsupported GHCB usage {usage:#x}"),
            Self::UnsupportedVersion(version) => {
                write!(f, "unsupported GHCB protocol version {version}")
            }
            Self::MissingField(field) => write!(f, "GHCB field {field} is not marked valid"),
            Self::UnexpectedExitCode(code) => write!(f, "unexpected SW_EXITCODE {code}"),
            Self::NonZeroCpl(cpl) => write!(f, "hypercall from CPL {cpl}, not 0"),
            Self::NonZeroExitInfo { exit_info_1, exit_info_2 } => {
                write!(f, "VMMCALL with SW_EXITINFO1 {exit_info_1:#x}, SW_EXITINFO2 {exit_info_2:#x} (both must be 0)")
            }
            Self::HypervisorError { exit_info_1, exit_info_2 } => {
                write!(f, "hypervisor returned SW_EXITINFO1 {exit_info_1:#x}, SW_EXITINFO2 {exit_info_2:#x}")
            }
        }
    }
}

impl core::error::Error for GhcbError {}

/// A validated VMMCALL event, as the hypervisor sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmmcallEvent {
    /// The guest's RAX: the hypercall number.
    pub rax: u64,
}

impl VmmcallEvent {
    /// Validates a snapshot of the guest's GHCB as a VMMCALL event.
    ///
    /// Only protocol version 2 is accepted. Version 1 defines the same
    /// VMMCALL event, but this project's hypervisor advertises 2..=2 in its
    /// SEV information response, so a GHCB saying 1 comes from a guest that
    /// skipped negotiation: rejecting it surfaces that bug.
    pub const fn decode(snapshot: &GhcbSnapshot) -> Result<Self, GhcbError> {
        if snapshot.ghcb_usage != GHCB_USAGE_STANDARD {
            return Err(GhcbError::UnsupportedUsage(snapshot.ghcb_usage));
        }
        if snapshot.protocol_version != GHCB_PROTOCOL_VERSION {
            return Err(GhcbError::UnsupportedVersion(snapshot.protocol_version));
        }
        if let Some(field) = snapshot.valid_bitmap.first_missing(&VMMCALL_EVENT_FIELDS) {
            return Err(GhcbError::MissingField(field));
        }
        if snapshot.sw_exit_code.0 != SwExitCode::VMMCALL.0 {
            return Err(GhcbError::UnexpectedExitCode(snapshot.sw_exit_code));
        }
        if snapshot.cpl != 0 {
            return Err(GhcbError::NonZeroCpl(snapshot.cpl));
        }
        if snapshot.sw_exit_info_1 != 0 || snapshot.sw_exit_info_2 != 0 {
            return Err(GhcbError::NonZeroExitInfo {
                exit_info_1: snapshot.sw_exit_info_1,
                exit_info_2: snapshot.sw_exit_info_2,
            });
        }
        Ok(Self { rax: snapshot.rax })
    }
}

/// A validated VMMCALL completion, as the guest sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmmcallResult {
    /// The hypervisor's RAX: the hypercall's result.
    pub rax: u64,
}

impl VmmcallResult {
    /// Validates a snapshot of the GHCB after the hypervisor resumed the
    /// guest: SW_EXITINFO1 must be valid and 0, and RAX valid.
    pub const fn decode(snapshot: &GhcbSnapshot) -> Result<Self, GhcbError> {
        if !snapshot.valid_bitmap.contains(GhcbField::SwExitInfo1) {
            return Err(GhcbError::MissingField(GhcbField::SwExitInfo1));
        }
        if snapshot.sw_exit_info_1 != EXIT_INFO_SUCCESS {
            return Err(GhcbError::HypervisorError {
                exit_info_1: snapshot.sw_exit_info_1,
                exit_info_2: snapshot.sw_exit_info_2,
            });
        }
        if !snapshot.valid_bitmap.contains(GhcbField::Rax) {
            return Err(GhcbError::MissingField(GhcbField::Rax));
        }
        Ok(Self { rax: snapshot.rax })
    }
}

impl GhcbPtr<'_> {
    /// Guest side: fills the GHCB with a VMMCALL event carrying `rax`.
    ///
    /// Sets RAX, CPL = 0, SW_EXITCODE = VMMCALL, SW_EXITINFO1/2 = 0, a valid
    /// bitmap with exactly those fields, protocol version 2 and usage 0. The
    /// caller then executes VMGEXIT with the GHCB's GPA in the GHCB MSR; that
    /// asm must clobber memory so these writes happen before it.
    pub fn write_vmmcall_event(&self, rax: u64) {
        self.set_rax(rax);
        // The vault runs at CPL 0 only.
        self.set_cpl(0);
        self.set_sw_exit_code(SwExitCode::VMMCALL);
        self.set_sw_exit_info_1(0);
        self.set_sw_exit_info_2(0);
        self.set_valid_bitmap(VMMCALL_EVENT_BITMAP);
        self.set_protocol_version(GHCB_PROTOCOL_VERSION);
        self.set_ghcb_usage(GHCB_USAGE_STANDARD);
    }

    /// Hypervisor side: reads each needed field once and validates it as a
    /// VMMCALL event.
    pub fn read_vmmcall_event(&self) -> Result<VmmcallEvent, GhcbError> {
        VmmcallEvent::decode(&self.snapshot())
    }

    /// Hypervisor side: completes the event with result `rax`.
    ///
    /// Replaces the valid bitmap with RAX, SW_EXITINFO1 and SW_EXITINFO2,
    /// and sets SW_EXITINFO1 = SW_EXITINFO2 = 0 (success).
    pub fn write_vmmcall_result(&self, rax: u64) {
        self.set_rax(rax);
        self.set_sw_exit_info_1(EXIT_INFO_SUCCESS);
        self.set_sw_exit_info_2(0);
        self.set_valid_bitmap(VMMCALL_RESULT_BITMAP);
    }

    /// Hypervisor side: completes a rejected event: SW_EXITINFO1 = 2 (GHCB
    /// input error) and SW_EXITINFO2 = the `GHCB_ERR_*` code of `error`.
    pub fn write_vmmcall_error(&self, error: &GhcbError) {
        self.set_sw_exit_info_1(EXIT_INFO_GHCB_INPUT_ERROR);
        self.set_sw_exit_info_2(error.ghcb_error_code());
        self.set_valid_bitmap(ValidBitmap::EMPTY.with(GhcbField::SwExitInfo1).with(GhcbField::SwExitInfo2));
    }

    /// Guest side: reads each needed field once and validates the
    /// hypervisor's completion.
    pub fn read_vmmcall_result(&self) -> Result<VmmcallResult, GhcbError> {
        VmmcallResult::decode(&self.snapshot())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::GhcbPage;

    fn good_event() -> GhcbSnapshot {
        GhcbSnapshot {
            valid_bitmap: ValidBitmap::EMPTY.with_all(&VMMCALL_EVENT_FIELDS),
            cpl: 0,
            rax: 0x1234,
            sw_exit_code: SwExitCode::VMMCALL,
            sw_exit_info_1: 0,
            sw_exit_info_2: 0,
            protocol_version: 2,
            ghcb_usage: 0,
        }
    }

    #[test]
    fn written_event_round_trips() {
        let mut page = Box::new(GhcbPage::zeroed());
        let ghcb = GhcbPtr::from_exclusive(&mut page);
        for rax in [0, 1, 0x1234, u64::MAX] {
            ghcb.write_vmmcall_event(rax);
            assert_eq!(ghcb.read_vmmcall_event(), Ok(VmmcallEvent { rax }));
        }
    }

    #[test]
    fn written_event_has_the_spec_fields() {
        let mut page = Box::new(GhcbPage::zeroed());
        let ghcb = GhcbPtr::from_exclusive(&mut page);
        ghcb.set_cpl(3);
        ghcb.set_valid_bitmap(ValidBitmap::from_words([u64::MAX, u64::MAX]));
        ghcb.write_vmmcall_event(7);
        let snapshot = ghcb.snapshot();
        assert_eq!(snapshot, GhcbSnapshot { rax: 7, ..good_event() });
        // Exactly the five event fields: RAX 63, CPL 25, 114, 115, 116.
        assert_eq!(
            snapshot.valid_bitmap.to_words(),
            [1 << 63 | 1 << 25, 1 << (114 - 64) | 1 << (115 - 64) | 1 << (116 - 64)]
        );
    }

    #[test]
    fn full_hypercall_cycle() {
        let mut page = Box::new(GhcbPage::zeroed());
        let ghcb = GhcbPtr::from_exclusive(&mut page);
        ghcb.write_vmmcall_event(0x10);
        let event = ghcb.read_vmmcall_event().unwrap();
        ghcb.write_vmmcall_result(event.rax + 1);
        assert_eq!(ghcb.read_vmmcall_result(), Ok(VmmcallResult { rax: 0x11 }));
        // The completion is not itself a valid event.
        assert_eq!(ghcb.read_vmmcall_event(), Err(GhcbError::MissingField(GhcbField::Cpl)));
    }

    #[test]
    fn rejected_event_reaches_the_guest_as_hypervisor_error() {
        let mut page = Box::new(GhcbPage::zeroed());
        let ghcb = GhcbPtr::from_exclusive(&mut page);
        ghcb.write_vmmcall_event(1);
        ghcb.set_ghcb_usage(1);
        let error = ghcb.read_vmmcall_event().unwrap_err();
        assert_eq!(error, GhcbError::UnsupportedUsage(1));
        ghcb.write_vmmcall_error(&error);
        assert_eq!(
            ghcb.read_vmmcall_result(),
            Err(GhcbError::HypervisorError {
                exit_info_1: EXIT_INFO_GHCB_INPUT_ERROR,
                exit_info_2: GHCB_ERR_INVALID_USAGE,
            })
        );
    }

    #[test]
    fn decode_accepts_the_spec_event_and_extra_valid_bits() {
        assert_eq!(VmmcallEvent::decode(&good_event()), Ok(VmmcallEvent { rax: 0x1234 }));
        let extra = GhcbSnapshot { valid_bitmap: good_event().valid_bitmap.with(GhcbField::Rbx), ..good_event() };
        assert_eq!(VmmcallEvent::decode(&extra), Ok(VmmcallEvent { rax: 0x1234 }));
    }

    #[test]
    fn decode_rejects_non_standard_usage() {
        for usage in [1, 2, u32::MAX] {
            let snapshot = GhcbSnapshot { ghcb_usage: usage, ..good_event() };
            assert_eq!(VmmcallEvent::decode(&snapshot), Err(GhcbError::UnsupportedUsage(usage)));
        }
    }

    #[test]
    fn decode_rejects_versions_other_than_2() {
        for version in [0, 1, 3, u16::MAX] {
            let snapshot = GhcbSnapshot { protocol_version: version, ..good_event() };
            assert_eq!(VmmcallEvent::decode(&snapshot), Err(GhcbError::UnsupportedVersion(version)));
        }
    }

    #[test]
    fn decode_rejects_each_missing_field() {
        for missing in VMMCALL_EVENT_FIELDS {
            let bitmap =
                VMMCALL_EVENT_FIELDS.iter().filter(|&&f| f != missing).fold(ValidBitmap::EMPTY, |b, &f| b.with(f));
            let snapshot = GhcbSnapshot { valid_bitmap: bitmap, ..good_event() };
            assert_eq!(VmmcallEvent::decode(&snapshot), Err(GhcbError::MissingField(missing)));
        }
        let empty = GhcbSnapshot { valid_bitmap: ValidBitmap::EMPTY, ..good_event() };
        assert_eq!(VmmcallEvent::decode(&empty), Err(GhcbError::MissingField(GhcbField::Rax)));
    }

    #[test]
    fn decode_rejects_other_exit_codes() {
        for code in [SwExitCode::CPUID, SwExitCode(0x403), SwExitCode(u64::MAX)] {
            let snapshot = GhcbSnapshot { sw_exit_code: code, ..good_event() };
            assert_eq!(VmmcallEvent::decode(&snapshot), Err(GhcbError::UnexpectedExitCode(code)));
        }
    }

    #[test]
    fn decode_rejects_non_zero_cpl() {
        for cpl in [1, 3, u8::MAX] {
            let snapshot = GhcbSnapshot { cpl, ..good_event() };
            assert_eq!(VmmcallEvent::decode(&snapshot), Err(GhcbError::NonZeroCpl(cpl)));
        }
    }

    #[test]
    fn decode_rejects_non_zero_exit_info() {
        for (exit_info_1, exit_info_2) in [(1, 0), (0, 1), (u64::MAX, u64::MAX)] {
            let snapshot = GhcbSnapshot { sw_exit_info_1: exit_info_1, sw_exit_info_2: exit_info_2, ..good_event() };
            assert_eq!(VmmcallEvent::decode(&snapshot), Err(GhcbError::NonZeroExitInfo { exit_info_1, exit_info_2 }));
        }
    }

    #[test]
    fn result_decode_rejects_missing_fields_and_errors() {
        let good = GhcbSnapshot {
            valid_bitmap: ValidBitmap::EMPTY.with_all(&VMMCALL_RESULT_FIELDS),
            rax: 5,
            ..GhcbSnapshot::default()
        };
        assert_eq!(VmmcallResult::decode(&good), Ok(VmmcallResult { rax: 5 }));
        let no_info = GhcbSnapshot { valid_bitmap: ValidBitmap::EMPTY.with(GhcbField::Rax), ..good };
        assert_eq!(VmmcallResult::decode(&no_info), Err(GhcbError::MissingField(GhcbField::SwExitInfo1)));
        let no_rax = GhcbSnapshot { valid_bitmap: ValidBitmap::EMPTY.with(GhcbField::SwExitInfo1), ..good };
        assert_eq!(VmmcallResult::decode(&no_rax), Err(GhcbError::MissingField(GhcbField::Rax)));
        let failed = GhcbSnapshot { sw_exit_info_1: 1, sw_exit_info_2: 0x8000_030E, ..good };
        assert_eq!(
            VmmcallResult::decode(&failed),
            Err(GhcbError::HypervisorError { exit_info_1: 1, exit_info_2: 0x8000_030E })
        );
    }

    #[test]
    fn error_codes_for_the_hypervisor_reply() {
        assert_eq!(GhcbError::UnsupportedUsage(1).ghcb_error_code(), 2);
        assert_eq!(GhcbError::MissingField(GhcbField::Rax).ghcb_error_code(), 4);
        assert_eq!(GhcbError::NonZeroCpl(3).ghcb_error_code(), 5);
        assert_eq!(GhcbError::UnexpectedExitCode(SwExitCode::CPUID).ghcb_error_code(), 6);
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            GhcbError::MissingField(GhcbField::SwExitCode).to_string(),
            "GHCB field SW_EXITCODE is not marked valid"
        );
        assert_eq!(GhcbError::UnexpectedExitCode(SwExitCode::CPUID).to_string(), "unexpected SW_EXITCODE CPUID (0x72)");
        assert_eq!(GhcbError::UnsupportedVersion(1).to_string(), "unsupported GHCB protocol version 1");
    }
}
