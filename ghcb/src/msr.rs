//! The GHCB MSR protocol (GHCB spec §2.3.1 "GHCB MSR Protocol").
//!
//! Before a GHCB page is usable, guest and hypervisor talk through the GHCB
//! MSR itself: the guest writes a request into [`GHCB_MSR`] and executes
//! VMGEXIT; the hypervisor reads the value, writes its response into the same
//! MSR and resumes the guest. A value is `GHCBData[63:12] | GHCBInfo[11:0]`:
//! the info code says what the data means.
//!
//! Requests go guest → hypervisor and responses hypervisor → guest; each has
//! an encoder (for the side that sends it) and a `TryFrom<u64>` decoder (for
//! the side that receives it, which must treat the value as hostile). Layout
//! cross-checked against Linux `arch/x86/include/asm/sev-common.h`.

use core::fmt;

/// The GHCB MSR (`MSR_AMD64_SEV_ES_GHCB`). Holds the GHCB GPA, or an MSR
/// protocol request/response.
pub const GHCB_MSR: u32 = 0xC001_0130;

/// GHCBInfo 0x000: the value is the GPA of the GHCB page; the exit is a full
/// NAE event described in that page.
pub const GHCB_GPA: u16 = 0x000;
/// GHCBInfo 0x001: SEV information response.
pub const SEV_INFO_RESPONSE: u16 = 0x001;
/// GHCBInfo 0x002: SEV information request.
pub const SEV_INFO_REQUEST: u16 = 0x002;
/// GHCBInfo 0x012: GHCB GPA registration request.
pub const REGISTER_GHCB_GPA_REQUEST: u16 = 0x012;
/// GHCBInfo 0x013: GHCB GPA registration response.
pub const REGISTER_GHCB_GPA_RESPONSE: u16 = 0x013;
/// GHCBInfo 0x080: hypervisor feature request.
pub const HV_FEATURES_REQUEST: u16 = 0x080;
/// GHCBInfo 0x081: hypervisor feature response.
pub const HV_FEATURES_RESPONSE: u16 = 0x081;
/// GHCBInfo 0x100: termination request.
pub const TERMINATION_REQUEST: u16 = 0x100;

const INFO_MASK: u64 = 0xFFF;
const DATA_SHIFT: u32 = 12;
/// GHCBData of a failed GHCB GPA registration: all ones in `[63:12]`.
const REGISTRATION_REFUSED_DATA: u64 = u64::MAX >> DATA_SHIFT;

const fn split(value: u64) -> (u16, u64) {
    ((value & INFO_MASK) as u16, value >> DATA_SHIFT)
}

const fn join(info: u16, data: u64) -> u64 {
    data << DATA_SHIFT | (info as u64 & INFO_MASK)
}

/// Why an MSR protocol value was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrProtocolError {
    /// The info code is not one this side accepts in this direction.
    UnknownInfo(u16),
    /// Bits that the spec reserves (must be zero) are set.
    ReservedBitsSet {
        /// The info code of the value.
        info: u16,
        /// The whole MSR value.
        value: u64,
    },
    /// An SEV information response with min > max or a zero minimum.
    InvalidVersionRange {
        /// Minimum protocol version advertised.
        min: u16,
        /// Maximum protocol version advertised.
        max: u16,
    },
    /// A C-bit position outside 0..=63.
    InvalidCBitPosition(u8),
    /// A GFN outside the 52-bit physical address space.
    InvalidGfn {
        /// The info code of the value.
        info: u16,
        /// The GFN field.
        gfn: u64,
    },
}

impl fmt::Display for MsrProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnknownInfo(info) => write!(f, "unknown GHCB MSR info code {info:#05x}"),
            Self::ReservedBitsSet { info, value } => {
                write!(f, "GHCB MSR value {value:#x} (info {info:#05x}) sets reserved bits")
            }
            Self::InvalidVersionRange { min, max } => {
                write!(f, "invalid GHCB protocol version range {min}..={max}")
            }
            Self::InvalidCBitPosition(bit) => write!(f, "invalid C-bit position {bit}"),
            Self::InvalidGfn { info, gfn } => {
                write!(f, "GFN {gfn:#x} (info {info:#05x}) is outside the physical address space")
            }
        }
    }
}

impl core::error::Error for MsrProtocolError {}

/// A guest frame number: a 4 KiB page in the 52-bit physical address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gfn(u64);

impl Gfn {
    /// Width of a GFN: 52-bit physical addresses minus the 12-bit page offset.
    pub const BITS: u32 = 40;

    /// The GFN `gfn`, if it fits in [`Gfn::BITS`] bits.
    pub const fn new(gfn: u64) -> Option<Self> {
        if gfn >> Self::BITS == 0 {
            Some(Self(gfn))
        } else {
            None
        }
    }

    /// The GFN of a page-aligned GPA below 2^52.
    pub const fn from_gpa(gpa: u64) -> Option<Self> {
        if gpa & INFO_MASK != 0 {
            return None;
        }
        Self::new(gpa >> DATA_SHIFT)
    }

    /// The frame number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The GPA of the first byte of the page.
    pub const fn gpa(self) -> u64 {
        self.0 << DATA_SHIFT
    }
}

/// SEV information: the GHCB protocol versions the hypervisor supports and
/// the C-bit position. Always `1 <= min_version <= max_version` and
/// `c_bit_position < 64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SevInfo {
    min_version: u16,
    max_version: u16,
    c_bit_position: u8,
}

impl SevInfo {
    /// Checks and builds SEV information.
    pub const fn new(min_version: u16, max_version: u16, c_bit_position: u8) -> Result<Self, MsrProtocolError> {
        if min_version == 0 || min_version > max_version {
            return Err(MsrProtocolError::InvalidVersionRange { min: min_version, max: max_version });
        }
        if c_bit_position >= 64 {
            return Err(MsrProtocolError::InvalidCBitPosition(c_bit_position));
        }
        Ok(Self { min_version, max_version, c_bit_position })
    }

    /// Lowest GHCB protocol version supported.
    pub const fn min_version(self) -> u16 {
        self.min_version
    }

    /// Highest GHCB protocol version supported.
    pub const fn max_version(self) -> u16 {
        self.max_version
    }

    /// Position of the C-bit (encryption bit) in page-table entries.
    pub const fn c_bit_position(self) -> u8 {
        self.c_bit_position
    }

    /// Whether `version` lies in the advertised range.
    pub const fn supports(self, version: u16) -> bool {
        self.min_version <= version && version <= self.max_version
    }
}

/// Why the guest asks to be terminated: a reason code set (4 bits) and a
/// reason code (8 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TerminationReason {
    set: u8,
    code: u8,
}

impl TerminationReason {
    /// Reason set 0 (general), code 0: general termination request.
    pub const GENERAL: Self = Self { set: 0, code: 0 };
    /// Reason set 0, code 1: the hypervisor's GHCB protocol range is not
    /// supported.
    pub const PROTOCOL_UNSUPPORTED: Self = Self { set: 0, code: 1 };
    /// Reason set 0, code 2: SEV-SNP features are not supported.
    pub const SNP_UNSUPPORTED: Self = Self { set: 0, code: 2 };

    /// A reason with code set `set` (0..=15) and code `code`.
    pub const fn new(set: u8, code: u8) -> Option<Self> {
        if set <= 0xF {
            Some(Self { set, code })
        } else {
            None
        }
    }

    /// The reason code set (`GHCBData[15:12]`).
    pub const fn set(self) -> u8 {
        self.set
    }

    /// The reason code (`GHCBData[23:16]`).
    pub const fn code(self) -> u8 {
        self.code
    }
}

impl fmt::Display for TerminationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reason set {}, code {}", self.set, self.code)
    }
}

/// The hypervisor feature bitmap (GHCB v2), 52 bits wide.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HvFeatures(u64);

impl HvFeatures {
    /// Bit 0: SEV-SNP is supported.
    pub const SNP: u64 = 1 << 0;
    /// Bit 1: SEV-SNP AP creation is supported.
    pub const SNP_AP_CREATION: u64 = 1 << 1;

    /// The feature bitmap `bits`, if it fits in `GHCBData[63:12]`.
    pub const fn new(bits: u64) -> Option<Self> {
        if bits >> (64 - DATA_SHIFT) == 0 {
            Some(Self(bits))
        } else {
            None
        }
    }

    /// The raw bitmap.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether every bit of `mask` is set.
    pub const fn contains(self, mask: u64) -> bool {
        self.0 & mask == mask
    }
}

/// Outcome of a GHCB GPA registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GhcbGpaRegistration {
    /// The hypervisor accepted this GFN (the guest checks it is the one it
    /// asked for).
    Registered(Gfn),
    /// The hypervisor refused (GHCBData all ones).
    Refused,
}

/// A guest → hypervisor MSR protocol value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrRequest {
    /// GHCBInfo 0x000: not an MSR protocol request but the GHCB page's GPA;
    /// the event is in that page.
    GhcbPage(Gfn),
    /// GHCBInfo 0x002: SEV information request.
    SevInfo,
    /// GHCBInfo 0x012: register this page as the vCPU's GHCB.
    RegisterGhcbGpa(Gfn),
    /// GHCBInfo 0x080: hypervisor feature request.
    HvFeatures,
    /// GHCBInfo 0x100: terminate the guest.
    Terminate(TerminationReason),
}

impl MsrRequest {
    /// The MSR value the guest writes.
    pub const fn encode(self) -> u64 {
        match self {
            Self::GhcbPage(gfn) => join(GHCB_GPA, gfn.get()),
            Self::SevInfo => join(SEV_INFO_REQUEST, 0),
            Self::RegisterGhcbGpa(gfn) => join(REGISTER_GHCB_GPA_REQUEST, gfn.get()),
            Self::HvFeatures => join(HV_FEATURES_REQUEST, 0),
            // GHCBData[15:12] = reason set, GHCBData[23:16] = reason code.
            Self::Terminate(reason) => join(TERMINATION_REQUEST, reason.set as u64 | (reason.code as u64) << 4),
        }
    }
}

impl TryFrom<u64> for MsrRequest {
    type Error = MsrProtocolError;

    fn try_from(value: u64) -> Result<Self, Self::Error> {
        let (info, data) = split(value);
        let reserved = MsrProtocolError::ReservedBitsSet { info, value };
        let gfn = |gfn| Gfn::new(gfn).ok_or(MsrProtocolError::InvalidGfn { info, gfn });
        match info {
            GHCB_GPA => Ok(Self::GhcbPage(gfn(data)?)),
            SEV_INFO_REQUEST if data == 0 => Ok(Self::SevInfo),
            REGISTER_GHCB_GPA_REQUEST => Ok(Self::RegisterGhcbGpa(gfn(data)?)),
            HV_FEATURES_REQUEST if data == 0 => Ok(Self::HvFeatures),
            SEV_INFO_REQUEST | HV_FEATURES_REQUEST => Err(reserved),
            TERMINATION_REQUEST => {
                // Only GHCBData[23:12] carries the reason; the rest is reserved.
                if data >> 12 != 0 {
                    return Err(reserved);
                }
                let set = (data & 0xF) as u8;
                let code = (data >> 4) as u8;
                Ok(Self::Terminate(TerminationReason { set, code }))
            }
            _ => Err(MsrProtocolError::UnknownInfo(info)),
        }
    }
}

/// A hypervisor → guest MSR protocol value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrResponse {
    /// GHCBInfo 0x001: SEV information.
    SevInfo(SevInfo),
    /// GHCBInfo 0x013: GHCB GPA registration outcome.
    RegisterGhcbGpa(GhcbGpaRegistration),
    /// GHCBInfo 0x081: hypervisor features.
    HvFeatures(HvFeatures),
}

impl MsrResponse {
    /// The MSR value the hypervisor writes.
    pub const fn encode(self) -> u64 {
        match self {
            // [63:48] max version, [47:32] min version, [31:24] C-bit.
            Self::SevInfo(sev) => join(
                SEV_INFO_RESPONSE,
                (sev.max_version as u64) << 36 | (sev.min_version as u64) << 20 | (sev.c_bit_position as u64) << 12,
            ),
            Self::RegisterGhcbGpa(GhcbGpaRegistration::Registered(gfn)) => join(REGISTER_GHCB_GPA_RESPONSE, gfn.get()),
            Self::RegisterGhcbGpa(GhcbGpaRegistration::Refused) => {
                join(REGISTER_GHCB_GPA_RESPONSE, REGISTRATION_REFUSED_DATA)
            }
            Self::HvFeatures(features) => join(HV_FEATURES_RESPONSE, features.bits()),
        }
    }
}

impl TryFrom<u64> for MsrResponse {
    type Error = MsrProtocolError;

    fn try_from(value: u64) -> Result<Self, Self::Error> {
        let (info, data) = split(value);
        match info {
            SEV_INFO_RESPONSE => {
                // GHCBData[23:12] is reserved.
                if data & 0xFFF != 0 {
                    return Err(MsrProtocolError::ReservedBitsSet { info, value });
                }
                let max = (value >> 48) as u16;
                let min = (value >> 32) as u16;
                let c_bit = (value >> 24) as u8;
                Ok(Self::SevInfo(SevInfo::new(min, max, c_bit)?))
            }
            REGISTER_GHCB_GPA_RESPONSE if data == REGISTRATION_REFUSED_DATA => {
                Ok(Self::RegisterGhcbGpa(GhcbGpaRegistration::Refused))
            }
            REGISTER_GHCB_GPA_RESPONSE => match Gfn::new(data) {
                Some(gfn) => Ok(Self::RegisterGhcbGpa(GhcbGpaRegistration::Registered(gfn))),
                None => Err(MsrProtocolError::InvalidGfn { info, gfn: data }),
            },
            // `split` leaves 52 bits of data, exactly the bitmap's width.
            HV_FEATURES_RESPONSE => Ok(Self::HvFeatures(HvFeatures(data))),
            _ => Err(MsrProtocolError::UnknownInfo(info)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gfn(n: u64) -> Gfn {
        Gfn::new(n).unwrap()
    }

    #[test]
    fn ghcb_msr_number() {
        assert_eq!(GHCB_MSR, 0xC001_0130);
    }

    #[test]
    fn requests_encode_to_known_values() {
        assert_eq!(MsrRequest::SevInfo.encode(), 0x002);
        assert_eq!(MsrRequest::HvFeatures.encode(), 0x080);
        assert_eq!(MsrRequest::RegisterGhcbGpa(gfn(0x1234)).encode(), 0x123_4012);
        assert_eq!(MsrRequest::GhcbPage(gfn(0x5_6789)).encode(), 0x5678_9000);
        assert_eq!(MsrRequest::Terminate(TerminationReason::GENERAL).encode(), 0x100);
        assert_eq!(MsrRequest::Terminate(TerminationReason::PROTOCOL_UNSUPPORTED).encode(), 0x1_0100);
        let reason = TerminationReason::new(0xA, 0xBC).unwrap();
        assert_eq!(MsrRequest::Terminate(reason).encode(), 0xBC_A100);
    }

    #[test]
    fn responses_encode_to_known_values() {
        let sev = SevInfo::new(1, 2, 51).unwrap();
        assert_eq!(MsrResponse::SevInfo(sev).encode(), 0x0002_0001_3300_0001);
        assert_eq!(MsrResponse::RegisterGhcbGpa(GhcbGpaRegistration::Registered(gfn(0x1234))).encode(), 0x123_4013);
        assert_eq!(MsrResponse::RegisterGhcbGpa(GhcbGpaRegistration::Refused).encode(), 0xFFFF_FFFF_FFFF_F013);
        let features = HvFeatures::new(HvFeatures::SNP | HvFeatures::SNP_AP_CREATION).unwrap();
        assert_eq!(MsrResponse::HvFeatures(features).encode(), 0x3081);
    }

    #[test]
    fn requests_round_trip() {
        let requests = [
            MsrRequest::GhcbPage(gfn(0)),
            MsrRequest::GhcbPage(gfn((1 << Gfn::BITS) - 1)),
            MsrRequest::SevInfo,
            MsrRequest::RegisterGhcbGpa(gfn(0xABCDE)),
            MsrRequest::HvFeatures,
            MsrRequest::Terminate(TerminationReason::GENERAL),
            MsrRequest::Terminate(TerminationReason::SNP_UNSUPPORTED),
            MsrRequest::Terminate(TerminationReason::new(0xF, 0xFF).unwrap()),
        ];
        for request in requests {
            assert_eq!(MsrRequest::try_from(request.encode()), Ok(request));
        }
    }

    #[test]
    fn responses_round_trip() {
        let responses = [
            MsrResponse::SevInfo(SevInfo::new(1, 1, 0).unwrap()),
            MsrResponse::SevInfo(SevInfo::new(2, 2, 47).unwrap()),
            MsrResponse::SevInfo(SevInfo::new(1, u16::MAX, 63).unwrap()),
            MsrResponse::RegisterGhcbGpa(GhcbGpaRegistration::Registered(gfn(0))),
            MsrResponse::RegisterGhcbGpa(GhcbGpaRegistration::Registered(gfn((1 << Gfn::BITS) - 1))),
            MsrResponse::RegisterGhcbGpa(GhcbGpaRegistration::Refused),
            MsrResponse::HvFeatures(HvFeatures::default()),
            MsrResponse::HvFeatures(HvFeatures::new((1 << 52) - 1).unwrap()),
        ];
        for response in responses {
            assert_eq!(MsrResponse::try_from(response.encode()), Ok(response));
        }
    }

    #[test]
    fn decoded_sev_info_fields() {
        let Ok(MsrResponse::SevInfo(sev)) = MsrResponse::try_from(0x0002_0001_3300_0001) else {
            panic!("not SEV info");
        };
        assert_eq!((sev.min_version(), sev.max_version(), sev.c_bit_position()), (1, 2, 51));
        assert!(sev.supports(2));
        assert!(!sev.supports(3));
    }

    #[test]
    fn request_decoder_rejects_unknown_info_codes() {
        for info in [0x001, 0x003, 0x004, 0x013, 0x081, 0x0FF, 0x101, 0xFFF] {
            assert_eq!(MsrRequest::try_from(info), Err(MsrProtocolError::UnknownInfo(info as u16)));
        }
    }

    #[test]
    fn response_decoder_rejects_unknown_info_codes() {
        for info in [0x000, 0x002, 0x005, 0x012, 0x080, 0x100, 0xFFF] {
            assert_eq!(MsrResponse::try_from(info), Err(MsrProtocolError::UnknownInfo(info as u16)));
        }
    }

    #[test]
    fn request_decoder_rejects_reserved_bits() {
        for value in [0x1002, 0x8000_0000_0000_0080, 0x100_0100, 0x8000_0000_0000_0100] {
            assert!(matches!(MsrRequest::try_from(value), Err(MsrProtocolError::ReservedBitsSet { .. })));
        }
    }

    #[test]
    fn request_decoder_rejects_gfns_past_52_bit_addresses() {
        let too_big = 1u64 << Gfn::BITS;
        assert_eq!(
            MsrRequest::try_from(join(REGISTER_GHCB_GPA_REQUEST, too_big)),
            Err(MsrProtocolError::InvalidGfn { info: 0x012, gfn: too_big })
        );
        assert_eq!(
            MsrRequest::try_from(0xFFFF_FFFF_FFFF_F000),
            Err(MsrProtocolError::InvalidGfn { info: 0, gfn: u64::MAX >> 12 })
        );
    }

    #[test]
    fn response_decoder_rejects_malformed_sev_info() {
        // Reserved GHCBData[23:12] set.
        assert!(matches!(MsrResponse::try_from(0x0002_0001_3300_1001), Err(MsrProtocolError::ReservedBitsSet { .. })));
        // min > max.
        assert_eq!(
            MsrResponse::try_from(0x0001_0002_3300_0001),
            Err(MsrProtocolError::InvalidVersionRange { min: 2, max: 1 })
        );
        // Version 0 does not exist.
        assert_eq!(
            MsrResponse::try_from(0x0002_0000_3300_0001),
            Err(MsrProtocolError::InvalidVersionRange { min: 0, max: 2 })
        );
        // C-bit past 63.
        assert_eq!(MsrResponse::try_from(0x0002_0001_4000_0001), Err(MsrProtocolError::InvalidCBitPosition(64)));
    }

    #[test]
    fn response_decoder_rejects_registration_of_impossible_gfn() {
        let value = join(REGISTER_GHCB_GPA_RESPONSE, 1 << Gfn::BITS);
        assert_eq!(
            MsrResponse::try_from(value),
            Err(MsrProtocolError::InvalidGfn { info: 0x013, gfn: 1 << Gfn::BITS })
        );
    }

    #[test]
    fn decoders_accept_nothing_else_for_any_info_code() {
        for info in 0..=0xFFFu64 {
            let value = info | 0x5A5A_0000_0000_0000;
            if let Ok(request) = MsrRequest::try_from(value) {
                assert_eq!(request.encode(), value);
            }
            if let Ok(response) = MsrResponse::try_from(value) {
                assert_eq!(response.encode(), value);
            }
        }
    }

    #[test]
    fn constructors_reject_out_of_range_values() {
        assert_eq!(TerminationReason::new(0x10, 0), None);
        assert_eq!(Gfn::new(1 << Gfn::BITS), None);
        assert_eq!(Gfn::from_gpa(0x1001), None);
        assert_eq!(Gfn::from_gpa(1 << 52), None);
        assert_eq!(Gfn::from_gpa(0x7000).map(Gfn::get), Some(7));
        assert_eq!(gfn(7).gpa(), 0x7000);
        assert_eq!(HvFeatures::new(1 << 52), None);
        assert_eq!(SevInfo::new(3, 2, 0), Err(MsrProtocolError::InvalidVersionRange { min: 3, max: 2 }));
        assert_eq!(SevInfo::new(1, 2, 64), Err(MsrProtocolError::InvalidCBitPosition(64)));
    }

    #[test]
    fn errors_display() {
        assert_eq!(MsrProtocolError::UnknownInfo(0x3).to_string(), "unknown GHCB MSR info code 0x003");
        assert_eq!(TerminationReason::PROTOCOL_UNSUPPORTED.to_string(), "reason set 0, code 1");
    }
}
