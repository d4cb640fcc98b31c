//! The SE-Vault Mini hypervisor core: a no_std library linked into `sevault.ko` as a
//! staticlib, next to the thin C glue in `hv/kernel/`.
//!
//! The pure parts — VMCB layout and builder ([`vmcb`]), guest and nested page tables
//! ([`paging`]), scatterlist-to-entries translation ([`translate`]), batches of requests
//! ([`batch`]) — are host-tested; the
//! kernel-facing part (SVM bring-up, the world switch, the crypto callbacks) is in
//! [`kernel`], built only for the kernel target.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod arena;
pub mod asid;
pub mod batch;
pub mod block_set;
pub mod exits;
#[cfg(target_os = "none")]
pub mod kernel;
pub mod launch;
pub mod line;
pub mod msr_protocol;
pub mod paging;
pub mod sev;
pub mod stack;
pub mod translate;
pub mod vmcb;
pub mod vmsa;
pub mod world;
