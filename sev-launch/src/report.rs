//! Checking an SNP attestation report of the vault against the expected launch: parsed with
//! the virtee `sev` crate's [`AttestationReport`], then MEASUREMENT and POLICY compared with
//! [`crate::measure::measure`]'s digest and [`crate::policy::policy`].
//!
//! The report's signature is *not* checked here: that needs the chip's VCEK certificate
//! chain from AMD's key server (`snpguest verify attestation` does it). A matching
//! measurement in an unsigned or forged report proves nothing; this check answers "was the
//! vault launched as we built it", given a report whose signature has been verified.
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;

use crate::measure::Measurement;
use crate::policy::LaunchPolicy;

/// Bytes of an attestation report (SNP ABI spec, "ATTESTATION_REPORT Structure").
pub const REPORT_LEN: usize = 0x4A0;
/// Bytes before the report in MSG_REPORT_RSP (SNP ABI spec, "MSG_REPORT_RSP Message Structure": STATUS,
/// REPORT_SIZE, reserved), which is what the guest's `SNP_GET_REPORT` ioctl returns.
pub const REPORT_RSP_HEADER: usize = 0x20;

/// Why a report cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReportError {
    /// Neither a bare report (0x4A0 bytes) nor a MSG_REPORT_RSP around one.
    Length(usize),
    /// A MSG_REPORT_RSP with a non-zero STATUS.
    Status(u32),
    /// A MSG_REPORT_RSP whose REPORT_SIZE is not 0x4A0.
    ReportSize(u32),
    /// The `sev` crate refused it (its message).
    Parse(String),
}

impl core::fmt::Display for ReportError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Length(n) => write!(
                f,
                "{n} bytes: expected a {REPORT_LEN}-byte attestation report, or a MSG_REPORT_RSP ({REPORT_RSP_HEADER}-byte header, then the report)"
            ),
            Self::Status(s) => write!(f, "MSG_REPORT_RSP status {s:#x}: the firmware produced no report"),
            Self::ReportSize(s) => write!(f, "MSG_REPORT_RSP report size {s:#x}, expected {REPORT_LEN:#x}"),
            Self::Parse(m) => write!(f, "not an attestation report the sev crate can parse: {m}"),
        }
    }
}

impl std::error::Error for ReportError {}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(b)
}

/// The report bytes inside `bytes`: a bare report, or a MSG_REPORT_RSP (possibly with the
/// zero padding of the ioctl's response buffer after it).
pub fn report_bytes(bytes: &[u8]) -> Result<&[u8], ReportError> {
    if bytes.len() == REPORT_LEN {
        return Ok(bytes);
    }
    if bytes.len() < REPORT_RSP_HEADER + REPORT_LEN {
        return Err(ReportError::Length(bytes.len()));
    }
    let (status, size) = (u32_at(bytes, 0), u32_at(bytes, 4));
    if status != 0 {
        return Err(ReportError::Status(status));
    }
    if size as usize != REPORT_LEN {
        return Err(ReportError::ReportSize(size));
    }
    let end = REPORT_RSP_HEADER + REPORT_LEN;
    if bytes[end..].iter().any(|&b| b != 0) || bytes[8..REPORT_RSP_HEADER].iter().any(|&b| b != 0) {
        return Err(ReportError::Length(bytes.len()));
    }
    Ok(&bytes[REPORT_RSP_HEADER..end])
}

/// Parses a report with the `sev` crate. Its parser needs the CPU generation: from the
/// CPUID fields of version ≥ 3 reports, or from an unmasked CHIP_ID in version 2 ones (a
/// version-2 report with MaskChipId set is refused).
pub fn parse_report(bytes: &[u8]) -> Result<AttestationReport, ReportError> {
    AttestationReport::from_bytes(report_bytes(bytes)?).map_err(|e| ReportError::Parse(e.to_string()))
}

/// The raw 64-bit POLICY of a report (as the firmware wrote it).
pub fn raw_policy(report: &AttestationReport) -> Result<u64, ReportError> {
    report.policy.to_bytes().map(u64::from_le_bytes).map_err(|e| ReportError::Parse(e.to_string()))
}

/// One compared field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldCheck {
    /// The report's field name.
    pub field: &'static str,
    /// What the vault's launch gives.
    pub expected: String,
    /// What the report says.
    pub actual: String,
}

impl FieldCheck {
    /// Whether they agree.
    pub fn matches(&self) -> bool {
        self.expected == self.actual
    }
}

/// The outcome of [`verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    /// The compared fields.
    pub checks: Vec<FieldCheck>,
    /// Other fields, shown but not judged.
    pub info: Vec<(&'static str, String)>,
}

impl Verification {
    /// True if every compared field matches.
    pub fn matches(&self) -> bool {
        self.checks.iter().all(FieldCheck::matches)
    }
}

/// Compares `report` with the expected SNP launch `expected`.
pub fn verify(report: &AttestationReport, expected: &Measurement) -> Result<Verification, ReportError> {
    let expected_policy = match expected.policy {
        LaunchPolicy::Snp(p) => p,
        LaunchPolicy::Sev(p) => u64::from(p),
    };
    let checks = vec![
        FieldCheck {
            field: "MEASUREMENT",
            expected: hex::encode(&expected.digest),
            actual: hex::encode(report.measurement),
        },
        FieldCheck {
            field: "POLICY",
            expected: format!("{expected_policy:#x}"),
            actual: format!("{:#x}", raw_policy(report)?),
        },
    ];
    let zero_or_hex = |b: &[u8]| if b.iter().all(|&x| x == 0) { "zeros".to_string() } else { hex::encode(b) };
    let info = vec![
        ("VERSION", report.version.to_string()),
        ("VMPL (of the request)", report.vmpl.to_string()),
        ("GUEST_SVN", report.guest_svn.to_string()),
        ("HOST_DATA (the vault's launch sets none)", zero_or_hex(&report.host_data)),
        ("ID_KEY_DIGEST (the vault's launch has no ID block)", zero_or_hex(&report.id_key_digest)),
        ("REPORT_DATA", zero_or_hex(&report.report_data)),
        (
            "REPORTED_TCB (bootloader, tee, snp, microcode)",
            format!(
                "{}, {}, {}, {}",
                report.reported_tcb.bootloader,
                report.reported_tcb.tee,
                report.reported_tcb.snp,
                report.reported_tcb.microcode
            ),
        ),
        ("SIGNATURE", "not checked here (needs the VCEK chain: snpguest verify attestation)".to_string()),
    ];
    Ok(Verification { checks, info })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        let report = [7u8; REPORT_LEN];
        assert_eq!(report_bytes(&report).map(<[u8]>::len), Ok(REPORT_LEN));
        let mut rsp = vec![0u8; 4000];
        rsp[4..8].copy_from_slice(&(REPORT_LEN as u32).to_le_bytes());
        rsp[REPORT_RSP_HEADER..REPORT_RSP_HEADER + REPORT_LEN].copy_from_slice(&report);
        assert_eq!(report_bytes(&rsp), Ok(&report[..]));
        rsp[0] = 0x16;
        assert_eq!(report_bytes(&rsp), Err(ReportError::Status(0x16)));
        rsp[0] = 0;
        rsp[4] = 0;
        assert!(matches!(report_bytes(&rsp), Err(ReportError::ReportSize(_))));
        assert_eq!(report_bytes(&[0; 100]), Err(ReportError::Length(100)));
        assert_eq!(report_bytes(&[0; REPORT_LEN + 1]), Err(ReportError::Length(REPORT_LEN + 1)));
    }
}
