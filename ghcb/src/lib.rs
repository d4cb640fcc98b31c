//! The Guest-Hypervisor Communication Block (GHCB), shared by the vault guest
//! and the hypervisor.
//!
//! Under SEV-ES the vault's registers are encrypted, so it leaves the VM only
//! through VMGEXIT and says what it wants in the GHCB, a page it shares
//! unencrypted with the hypervisor. This crate is the one definition both
//! sides build against (AMD "SEV-ES Guest-Hypervisor Communication Block
//! Standardization", pub. 56421, rev. 2.02+, "the GHCB spec"):
//!
//! - [`GhcbPage`]: the page layout (GHCB spec §2.6 "GHCB Layout", Table 3)
//!   and its [`ValidBitmap`];
//! - [`msr`]: the GHCB MSR protocol (GHCB spec §2.3.1), used before a GHCB
//!   page exists: SEV information, GHCB GPA registration, hypervisor
//!   features, termination;
//! - [`GhcbPtr`]: volatile single-field access to the shared page, which the
//!   other side may write at any time;
//! - [`SwExitCode`]: NAE event codes, and the VMCB exit codes
//!   ([`VMEXIT_VMGEXIT`], [`VMEXIT_VMMCALL`]) a GHCB exit arrives with;
//! - the VMMCALL NAE event the vault uses as its hypercall.
//!
//! # Where it sits in the life of a request
//!
//! 1. The vault fills a VMMCALL NAE event in its GHCB
//!    ([`GhcbPtr::write_vmmcall_event`], RAX = hypercall number) and executes
//!    VMGEXIT ([`VMGEXIT_BYTES`], in the guest's asm).
//! 2. The hypervisor gets the exit ([`VMEXIT_VMGEXIT`] under SEV-ES,
//!    [`VMEXIT_VMMCALL`] under plain SVM), copies the fields it needs once
//!    and validates them ([`GhcbPtr::read_vmmcall_event`]), serves the call
//!    and writes the result ([`GhcbPtr::write_vmmcall_result`]).
//! 3. Back in the vault, [`GhcbPtr::read_vmmcall_result`] validates the reply.
//!
//! Hypercall numbers and their meaning belong to the project's ABI crate,
//! not here.
//!
//! ```
//! use sevault_ghcb::{GhcbPage, GhcbPtr, VmmcallEvent};
//!
//! // A private page stands in for the shared one here; real code wraps the
//! // shared page with the unsafe `GhcbPtr::new`.
//! let mut page = Box::new(GhcbPage::zeroed());
//! let ghcb = GhcbPtr::from_exclusive(&mut page);
//!
//! ghcb.write_vmmcall_event(7); // vault, then VMGEXIT
//! let event = ghcb.read_vmmcall_event()?; // hypervisor, after the exit
//! assert_eq!(event, VmmcallEvent { rax: 7 });
//! ghcb.write_vmmcall_result(0); // hypervisor, then VMRUN
//! assert_eq!(ghcb.read_vmmcall_result()?.rax, 0); // vault
//! # Ok::<(), sevault_ghcb::GhcbError>(())
//! ```

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

mod exit_code;
mod layout;
pub mod msr;
mod shared;
mod vmmcall;

pub use exit_code::{is_ghcb_exit, SwExitCode, VMEXIT_VMGEXIT, VMEXIT_VMMCALL};
pub use layout::{
    valid_bit_for_offset, GhcbField, GhcbPage, ValidBitmap, GHCB_PAGE_SIZE, SHARED_BUFFER_OFFSET, SHARED_BUFFER_SIZE,
    VALID_BITMAP_BITS,
};
pub use msr::GHCB_MSR;
pub use shared::{GhcbPtr, GhcbSnapshot};
pub use vmmcall::{
    GhcbError, VmmcallEvent, VmmcallResult, EXIT_INFO_GHCB_INPUT_ERROR, EXIT_INFO_SUCCESS, GHCB_ERR_INVALID_EVENT,
    GHCB_ERR_INVALID_INPUT, GHCB_ERR_INVALID_USAGE, GHCB_ERR_MISSING_INPUT, VMMCALL_EVENT_FIELDS,
    VMMCALL_RESULT_FIELDS,
};

/// The GHCB protocol version both sides speak (GHCB spec v2).
pub const GHCB_PROTOCOL_VERSION: u16 = 2;

/// GHCB usage 0: the standard GHCB format of the spec.
pub const GHCB_USAGE_STANDARD: u32 = 0;

/// VMGEXIT's encoding, `rep vmmcall` (F3 0F 01 D9). The guest executes it
/// from asm after filling the GHCB and writing the GHCB's GPA to [`GHCB_MSR`];
/// outside SEV-ES it decodes as VMMCALL (see [`VMEXIT_VMMCALL`]).
pub const VMGEXIT_BYTES: [u8; 4] = [0xF3, 0x0F, 0x01, 0xD9];
