//! Host tools for the vault's SEV launch: what the guest owner needs to know before and
//! after the HV launches the vault under SEV, SEV-ES or SEV-SNP.
//!
//! Where it sits: the HV (`sevault-hv`, in the kernel) launches the vault through the PSP
//! with the pages of [`sevault_hv::launch::pages`]; this crate computes, from the same
//! functions, the launch policy ([`mod@policy`]), the expected launch digest ([`mod@measure`]) and
//! checks an SNP attestation report against them ([`report`]). Nothing here touches
//! hardware; the binary `sev-launch` is the command-line face of these functions.
//!
//! The virtee `sev` crate (8.0.0, no OpenSSL) supplies the policy types, the SNP page-type
//! codes and the attestation report parser. Two things are our own, because the crate
//! cannot express them: the SNP launch digest fold ([`gctx`]: its `Gctx` is unusable
//! outside the crate) and the VMSA (`sevault_hv::vmsa`: its `Vmsa` has private fields and
//! only OVMF/QEMU reset states). Its SEV/SEV-ES digest helpers need OpenSSL and measure an
//! OVMF image, so the SEV/SEV-ES digest is a plain SHA-256 here.
pub mod gctx;
pub mod measure;
pub mod policy;
pub mod report;

pub use measure::{measure, mode_name, parse_mode, MeasureError, Measured, MeasuredPage, Measurement, DEFAULT_C_BIT};
pub use policy::{policy, LaunchPolicy};
pub use sevault_hv::launch::LaunchMode;
