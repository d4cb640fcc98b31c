//! The contract between the SE-Vault Mini hypervisor (`hv/`) and the vault VM (`guest/`).
//!
//! Everything both sides must agree on lives here, and nothing else:
//! - [`memory_map`]: the vault's guest-physical (= guest-virtual) address space, the per-vCPU
//!   regions and the window through which the vault reaches host memory;
//! - [`vcpu_state`]: the register state a vault vCPU starts in;
//! - [`comm`]: the per-vCPU communication block, one 4 KiB page shared with the host, through
//!   which the host posts a batch of requests and the vault answers each;
//! - [`status`]: the status codes the vault answers with;
//! - [`validate`]: the pure function that turns a snapshot of a (hostile) request into a
//!   validated one, or a status.
//!
//! In the life of a request, the HV fills the comm block and runs the vCPU; the vault snapshots
//! it once, validates it here, executes it, writes the response and leaves with VMGEXIT.
//! Every layout is pinned by compile-time asserts.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod comm;
pub mod memory_map;
pub mod status;
pub mod validate;
pub mod vcpu_state;

pub use comm::{Batch, BatchResponse, CommBlock, Header, KeyLen, Mode, Op, Request, Response, SgEntry, SlotKey};
pub use status::Status;
pub use validate::{validate, KeySlotIndex, ValidRequest};

/// `"SVLT"` in little-endian: written by the HV when it sets a comm block up.
pub const ABI_MAGIC: u32 = u32::from_le_bytes(*b"SVLT");
/// Bumped whenever a layout or a meaning in this crate changes.
pub const ABI_VERSION: u32 = 7;
/// Most key bytes a set-key request carries: an XTS pair of AES-256 keys.
pub const MAX_KEY_BYTES: usize = 64;
/// AES block size in bytes.
pub const AES_BLOCK: usize = 16;
/// Most requests one batch (one VMRUN) carries.
pub const MAX_BATCH: usize = 16;
/// Most scatter-list entries one batch can carry, all its requests together: bounded by the
/// vault's stack, which holds the batch's private copy (one 4 KiB page in all).
pub const MAX_ENTRIES: usize = 64;
/// Most streams one [`Mode::CbcStreams`] request carries: one per AES register of the
/// vault's 8-block round code.
pub const MAX_STREAMS: usize = 8;
/// Most bytes one request (one VMRUN) may process: bounds the time a vCPU runs per entry.
/// Larger kernel requests are split by the HV and continue with the chained IV.
pub const MAX_BYTES_PER_EXIT: u32 = 64 * 1024;
/// Key slots the vault can hold, shared by all vCPUs (one per keyed kernel transform). The
/// HV backs them with memory on demand, a block of [`KEY_SLOTS_PER_BLOCK`] at a time; the
/// vault's address space has room for this many (128 MiB of slots).
pub const KEY_SLOT_COUNT: u32 = 1 << 17;
/// Key slots per block of backing memory the HV adds at once (64 pages).
pub const KEY_SLOTS_PER_BLOCK: u32 = 256;
/// Key slots backed from the start (and launched, encrypted, under SEV, where the HV cannot
/// add initialized private memory later: there they are all there are).
pub const LAUNCH_KEY_SLOTS: u32 = 1024;
/// Bytes of private memory per key slot (encryption and decryption schedules, the XTS tweak
/// key's encryption schedule, state).
pub const KEY_SLOT_SIZE: u64 = 1024;
/// RAX of the VMMCALL NAE event with which the vault reports "request done" through its
/// GHCB: `"SVLTDONE"` read as a little-endian u64.
pub const HYPERCALL_REQUEST_DONE: u64 = u64::from_le_bytes(*b"SVLTDONE");
/// Most vCPUs (one per host logical CPU) the memory map has room for: more than any
/// shipping EPYC system has logical CPUs (two sockets of 192 cores with SMT: 768).
pub const MAX_VCPUS: u32 = 1024;
