//! The expected launch digest of the vault, computed over exactly the pages of
//! [`sevault_hv::launch::pages`] with the contents of [`sevault_hv::launch::contents`] — the
//! same functions the HV's launch hands the PSP.
//!
//! - **SNP**: the GCTX chain ([`crate::gctx`]) over NORMAL pages (image, guest page tables),
//!   ZERO pages (key slots, stacks) and one VMSA page per vCPU. The result is what the PSP
//!   signs as MEASUREMENT in every attestation report of the vault.
//! - **SEV / SEV-ES**: the PSP's `GCTX.LD`, a SHA-256 over the bytes of every
//!   LAUNCH_UPDATE_DATA in order, then (SEV-ES) every LAUNCH_UPDATE_VMSA. LAUNCH_MEASURE does
//!   not return LD itself but `HMAC-SHA256(0x04 ‖ API_MAJOR ‖ API_MINOR ‖ BUILD ‖ POLICY ‖ LD ‖
//!   MNONCE; key TIK)` (SEV API spec §6.5): it needs the transport integrity key of the
//!   launch session (known to the guest owner, not to us) and a fresh nonce, so only LD can
//!   be computed in advance; the guest owner computes the HMAC from it.
use sev::launch::PageType;
use sevault_abi::memory_map::IMAGE_MAX_SIZE;
use sevault_abi::MAX_VCPUS;
use sevault_hv::launch::{self, GuestTables, LaunchInput, LaunchMode, PageKind};
use sevault_hv::paging::PageTable;
use sha2::{Digest, Sha256, Sha384};

use crate::gctx::{contents_of, LaunchDigest};
use crate::policy::{policy, LaunchPolicy};

/// The C-bit position assumed when none is given: EPYC Milan and Genoa report 51
/// (CPUID 0x8000_001F EBX bits 5:0). It is in the guest page-table entries, hence measured.
pub const DEFAULT_C_BIT: u32 = 51;

/// C-bit positions a page-table entry can carry (as `sevault_hv::sev::plan` accepts).
pub const C_BIT_RANGE: core::ops::RangeInclusive<u32> = 32..=51;

/// Why a launch cannot be measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MeasureError {
    /// vCPUs outside `1..=MAX_VCPUS`.
    Vcpus(u32),
    /// A C-bit position outside [`C_BIT_RANGE`].
    CBit(u32),
    /// An empty image or one over 4096 bytes (its length).
    Image(usize),
}

impl core::fmt::Display for MeasureError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Vcpus(n) => write!(f, "{n} vCPUs: the vault has 1 to {MAX_VCPUS}"),
            Self::CBit(b) => {
                write!(
                    f,
                    "C-bit {b}: must be in {}..={} (CPUID 0x8000001F EBX[5:0])",
                    C_BIT_RANGE.start(),
                    C_BIT_RANGE.end()
                )
            }
            Self::Image(len) => write!(f, "the image is {len} bytes: it must be 1 to {IMAGE_MAX_SIZE}"),
        }
    }
}

impl std::error::Error for MeasureError {}

/// How a page enters the digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measured {
    /// SEV/SEV-ES LAUNCH_UPDATE_DATA.
    UpdateData,
    /// SEV-ES LAUNCH_UPDATE_VMSA.
    UpdateVmsa,
    /// SNP_LAUNCH_UPDATE with this page type.
    Snp(PageType),
}

impl Measured {
    /// The name in `measure --json` (`sev-snp-measure`'s names for SNP page types).
    pub const fn name(self) -> &'static str {
        match self {
            Self::UpdateData => "data",
            Self::UpdateVmsa => "vmsa",
            Self::Snp(PageType::Normal) => "normal",
            Self::Snp(PageType::Vmsa) => "vmsa",
            Self::Snp(PageType::Zero) => "zero",
            Self::Snp(_) => "other",
        }
    }
}

/// One measured page.
#[derive(Clone, Debug)]
pub struct MeasuredPage {
    /// Its GPA (SNP VMSAs: [`launch::SNP_VMSA_GPA`], as the firmware records them).
    pub gpa: u64,
    /// What the HV puts there.
    pub kind: PageKind,
    /// How it is measured.
    pub measured: Measured,
    /// SHA-384 of its 4096 bytes.
    pub sha384: [u8; 48],
    /// Its bytes.
    pub contents: Box<[u8; 4096]>,
}

/// An expected launch measurement.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Which launch.
    pub mode: LaunchMode,
    /// vCPUs.
    pub vcpus: u32,
    /// C-bit position.
    pub c_bit: u32,
    /// The policy the vault launches with.
    pub policy: LaunchPolicy,
    /// SNP: the launch digest (48 bytes, the report's MEASUREMENT); SEV/SEV-ES: GCTX.LD
    /// (32 bytes).
    pub digest: Vec<u8>,
    /// The pages in launch order.
    pub pages: Vec<MeasuredPage>,
}

/// The expected measurement of launching `image` with `vcpus` vCPUs and C-bit `c_bit`.
pub fn measure(mode: LaunchMode, image: &[u8], vcpus: u32, c_bit: u32) -> Result<Measurement, MeasureError> {
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(MeasureError::Vcpus(vcpus));
    }
    if !C_BIT_RANGE.contains(&c_bit) {
        return Err(MeasureError::CBit(c_bit));
    }
    if image.is_empty() || image.len() as u64 > IMAGE_MAX_SIZE {
        return Err(MeasureError::Image(image.len()));
    }
    let input = LaunchInput { mode, image, vcpus, c_bit };
    let tables = guest_tables(&input);
    let mut pages = Vec::new();
    for page in launch::pages(mode, vcpus) {
        let mut contents = Box::new([0u8; 4096]);
        // `contents` fails only on a bad image (checked above); it issues no PSP command.
        launch::contents(&input, &tables, &page, &mut contents).map_err(|_| MeasureError::Image(image.len()))?;
        let measured = match (mode, page.kind) {
            (LaunchMode::Snp, PageKind::Vmsa(_)) => Measured::Snp(PageType::Vmsa),
            (LaunchMode::Snp, PageKind::Zero) => Measured::Snp(PageType::Zero),
            (LaunchMode::Snp, _) => Measured::Snp(PageType::Normal),
            (_, PageKind::Vmsa(_)) => Measured::UpdateVmsa,
            _ => Measured::UpdateData,
        };
        let sha384 = Sha384::digest(&contents[..]).into();
        pages.push(MeasuredPage { gpa: page.gpa, kind: page.kind, measured, sha384, contents });
    }
    let digest = match mode {
        LaunchMode::Snp => {
            let mut ld = LaunchDigest::new();
            for p in &pages {
                if let Measured::Snp(page_type) = p.measured {
                    ld.update(page_type, p.gpa, &contents_of(page_type, &p.contents));
                }
            }
            ld.bytes().to_vec()
        }
        LaunchMode::Sev | LaunchMode::SevEs => {
            let mut ld = Sha256::new();
            for p in &pages {
                ld.update(&p.contents[..]);
            }
            ld.finalize().to_vec()
        }
    };
    Ok(Measurement { mode, vcpus, c_bit, policy: policy(mode), digest, pages })
}

/// The guest page tables of `input` (64 KiB, on the heap).
pub fn guest_tables(input: &LaunchInput<'_>) -> Box<GuestTables> {
    let mut tables = Box::new(GuestTables(core::array::from_fn(|_| PageTable::zeroed())));
    GuestTables::build(input, &mut tables);
    tables
}

/// `sev`, `sev-es`, `snp`.
pub fn parse_mode(s: &str) -> Option<LaunchMode> {
    match s {
        "sev" => Some(LaunchMode::Sev),
        "sev-es" | "es" => Some(LaunchMode::SevEs),
        "snp" | "sev-snp" => Some(LaunchMode::Snp),
        _ => None,
    }
}

/// The name [`parse_mode`] reads.
pub const fn mode_name(mode: LaunchMode) -> &'static str {
    match mode {
        LaunchMode::Sev => "sev",
        LaunchMode::SevEs => "sev-es",
        LaunchMode::Snp => "snp",
    }
}

impl Measurement {
    /// What [`Measurement::digest`] is, for people.
    pub const fn digest_meaning(&self) -> &'static str {
        match self.mode {
            LaunchMode::Snp => {
                "SNP launch digest (SHA-384 GCTX chain over PAGE_INFO): the MEASUREMENT field of the vault's attestation reports"
            }
            _ => {
                "GCTX.LD = SHA-256 of the launched pages in order; LAUNCH_MEASURE returns HMAC-SHA256(0x04 || API_MAJOR || API_MINOR || BUILD || POLICY || LD || MNONCE) keyed with the session's TIK, which only the guest owner can compute"
            }
        }
    }

    /// The measurement as JSON, with each page's contents (hex) if `with_contents`: enough
    /// for an outsider to recompute the digest (`crosscheck/snp_gctx.py` does).
    pub fn to_json(&self, image: &[u8], with_contents: bool) -> serde_json::Value {
        let pages: Vec<serde_json::Value> = self
            .pages
            .iter()
            .map(|p| {
                let mut page = serde_json::json!({
                    "gpa": format!("{:#x}", p.gpa),
                    "type": p.measured.name(),
                    "what": kind_name(p.kind),
                    "sha384": hex::encode(p.sha384),
                });
                if let Measured::Snp(page_type) = p.measured {
                    page["page_type"] = serde_json::json!(page_type as u8);
                }
                if with_contents && !matches!(p.measured, Measured::Snp(PageType::Zero)) {
                    page["contents"] = serde_json::json!(hex::encode(&p.contents[..]));
                }
                page
            })
            .collect();
        serde_json::json!({
            "mode": mode_name(self.mode),
            "vcpus": self.vcpus,
            "c_bit": self.c_bit,
            "image": { "bytes": image.len(), "sha256": hex::encode(Sha256::digest(image)) },
            "policy": self.policy.hex(),
            "digest": hex::encode(&self.digest),
            "digest_algorithm": self.algorithm(),
            "pages": pages,
        })
    }

    /// How to recompute [`Measurement::digest`] from the page list.
    pub const fn algorithm(&self) -> &'static str {
        match self.mode {
            LaunchMode::Snp => {
                "SNP ABI spec, PAGE_INFO: LD := 48 zero bytes; per page LD := SHA-384(LD || CONTENTS || 70 00 || PAGE_TYPE || 00 00 00 00 00 || GPA as u64 LE), CONTENTS = sha384 for normal/vmsa pages, 48 zero bytes for zero pages"
            }
            _ => "SEV API spec: LD := SHA-256 of the concatenated 4096-byte pages in list order",
        }
    }
}

/// What the HV puts in a page.
pub fn kind_name(kind: PageKind) -> String {
    match kind {
        PageKind::Image => "image".into(),
        PageKind::GuestPageTable(i) => format!("page table {i}"),
        PageKind::Zero => "zeros".into(),
        PageKind::Vmsa(v) => format!("VMSA of vCPU {}", v.get()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_input() {
        let image = [0x90u8; 64];
        assert_eq!(measure(LaunchMode::Snp, &image, 0, 51).err(), Some(MeasureError::Vcpus(0)));
        assert_eq!(measure(LaunchMode::Snp, &image, MAX_VCPUS + 1, 51).err(), Some(MeasureError::Vcpus(MAX_VCPUS + 1)));
        assert_eq!(measure(LaunchMode::Sev, &image, 1, 64).err(), Some(MeasureError::CBit(64)));
        assert_eq!(measure(LaunchMode::Sev, &image, 1, 31).err(), Some(MeasureError::CBit(31)));
        assert_eq!(measure(LaunchMode::Sev, &[], 1, 51).err(), Some(MeasureError::Image(0)));
        assert_eq!(measure(LaunchMode::Sev, &[0; 4097], 1, 51).err(), Some(MeasureError::Image(4097)));
        assert!(measure(LaunchMode::Sev, &[0; 4096], 1, 51).is_ok());
    }

    #[test]
    fn page_types_and_digest_sizes() {
        let image = [0x90u8; 64];
        let snp = measure(LaunchMode::Snp, &image, 2, 51).unwrap();
        assert_eq!(snp.digest.len(), 48);
        assert_eq!(snp.pages[0].measured, Measured::Snp(PageType::Normal));
        assert!(snp.pages.iter().any(|p| p.measured == Measured::Snp(PageType::Zero)));
        assert_eq!(snp.pages.iter().filter(|p| p.measured == Measured::Snp(PageType::Vmsa)).count(), 2);
        let es = measure(LaunchMode::SevEs, &image, 2, 51).unwrap();
        assert_eq!(es.digest.len(), 32);
        assert_eq!(es.pages.iter().filter(|p| p.measured == Measured::UpdateVmsa).count(), 2);
        // The C-bit is in the measured page tables, so it changes the digest.
        let other = measure(LaunchMode::SevEs, &image, 2, 47).unwrap();
        assert_ne!(es.digest, other.digest);
    }

    #[test]
    fn modes_round_trip() {
        for mode in [LaunchMode::Sev, LaunchMode::SevEs, LaunchMode::Snp] {
            assert_eq!(parse_mode(mode_name(mode)), Some(mode));
        }
        assert_eq!(parse_mode("tdx"), None);
    }
}
