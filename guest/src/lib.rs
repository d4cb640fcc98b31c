//! The SE-Vault Mini vault VM: the logic of a ≤ 4 KiB guest that holds AES keys in private
//! key slots and encrypts/decrypts host memory named by the host's requests.
//!
//! In the life of a request, the vault's vCPU is entered by the HV (VMRUN) with a request in
//! its comm block; [`vault::Vault::serve`] snapshots it, validates it
//! ([`sevault_abi::validate`]), runs it ([`aes`], [`walk`]) and answers; `main.rs` then
//! reports "done" through the GHCB and leaves with VMGEXIT. This library is the same source
//! for the vault image (`x86_64-unknown-none`, see `main.rs`) and for the host tests and the
//! benchmark, which run it unchanged.
//!
//! Under SEV-ES the vault may only leave through VMGEXIT, so nothing here executes CPUID,
//! MSR or I/O instructions, HLT, or anything else that would raise #VC.
#![cfg_attr(not(any(test, feature = "testutil")), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod aes;
pub mod slots;
pub mod vault;
pub mod walk;

// Test support (also for the HV's tests, through the feature): failing loudly is its job.
#[cfg(any(test, feature = "testutil"))]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod testutil;
