//! What the vault answers in [`crate::Response::status`].
//!
//! Zero is deliberately not a status: a response the vault never wrote reads as zero and is
//! rejected by [`Status::try_from`], so "no answer" cannot pass for success.
use core::fmt;

/// Outcome of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    /// Done: `bytes_done` and (CBC) `iv_out` are valid.
    Ok = 1,
    /// `Header::magic` is not [`crate::ABI_MAGIC`].
    BadMagic = 2,
    /// `Header::version` is not [`crate::ABI_VERSION`].
    BadVersion = 3,
    /// Unknown operation.
    BadOp = 4,
    /// Unknown mode.
    BadMode = 5,
    /// Key length is not 16, 24 or 32 (an XTS pair: 32, 48 or 64).
    BadKeyLen = 6,
    /// Key slot index out of range.
    BadSlot = 7,
    /// The slot holds no key.
    NoKey = 8,
    /// The slot holds a key of another length than the request names.
    KeyLenMismatch = 9,
    /// Total length is zero.
    ZeroLength = 10,
    /// Total length is not a multiple of the AES block size (every mode: the HV does partial
    /// blocks).
    UnalignedLength = 11,
    /// Total length exceeds [`crate::MAX_BYTES_PER_EXIT`].
    TooLarge = 12,
    /// Entry count is zero (for encrypt/decrypt), the entries run past the batch's pool of
    /// [`crate::MAX_ENTRIES`], or a key operation names entries.
    BadEntryCount = 13,
    /// An entry has length zero.
    EmptyEntry = 14,
    /// The entries' lengths do not add up to the total length.
    LengthMismatch = 15,
    /// A range lies (partly) outside the host window, where everything that is not host
    /// memory — the vault's own pages included — lies, or `addr + len` wraps.
    OutsideWindow = 16,
    /// A reserved field is not zero.
    ReservedNotZero = 17,
    /// Another vCPU holds the key slot (a set/clear racing a request on the same slot: an
    /// honest host never does that).
    SlotBusy = 18,
    /// An entry is not whole blocks.
    UnalignedEntry = 19,
    /// The batch's request count is zero or above [`crate::MAX_BATCH`] (a
    /// [`crate::BatchResponse`] status: no request ran).
    BadBatchCount = 20,
    /// A [`crate::Mode::CbcStreams`] request that is not an encryption, has not 1 to
    /// [`crate::MAX_STREAMS`] streams, streams of different lengths, or an IV entry other
    /// than 16 bytes per stream.
    BadStreams = 21,
}

impl Status {
    /// Short name for logs and reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::BadMagic => "bad magic",
            Self::BadVersion => "bad ABI version",
            Self::BadOp => "bad operation",
            Self::BadMode => "bad mode",
            Self::BadKeyLen => "bad key length",
            Self::BadSlot => "bad key slot",
            Self::NoKey => "no key in slot",
            Self::KeyLenMismatch => "key length mismatch",
            Self::ZeroLength => "zero length",
            Self::UnalignedLength => "length not a multiple of 16",
            Self::TooLarge => "request too large",
            Self::BadEntryCount => "bad entry count",
            Self::EmptyEntry => "empty entry",
            Self::LengthMismatch => "entry lengths do not sum to total",
            Self::OutsideWindow => "address outside host window",
            Self::ReservedNotZero => "reserved field not zero",
            Self::SlotBusy => "key slot busy",
            Self::UnalignedEntry => "entry not whole blocks",
            Self::BadBatchCount => "bad batch request count",
            Self::BadStreams => "bad CBC streams",
        }
    }

    /// Every status, for tests and tools.
    pub const ALL: [Status; 21] = [
        Self::Ok,
        Self::BadMagic,
        Self::BadVersion,
        Self::BadOp,
        Self::BadMode,
        Self::BadKeyLen,
        Self::BadSlot,
        Self::NoKey,
        Self::KeyLenMismatch,
        Self::ZeroLength,
        Self::UnalignedLength,
        Self::TooLarge,
        Self::BadEntryCount,
        Self::EmptyEntry,
        Self::LengthMismatch,
        Self::OutsideWindow,
        Self::ReservedNotZero,
        Self::SlotBusy,
        Self::UnalignedEntry,
        Self::BadBatchCount,
        Self::BadStreams,
    ];
}

/// A status code that is not one of [`Status`]'s (including 0, "never answered").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownStatus(pub u32);

impl TryFrom<u32> for Status {
    type Error = UnknownStatus;
    fn try_from(raw: u32) -> Result<Self, UnknownStatus> {
        Self::ALL.iter().copied().find(|s| *s as u32 == raw).ok_or(UnknownStatus(raw))
    }
}

impl From<Status> for u32 {
    fn from(status: Status) -> u32 {
        status as u32
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown vault status {:#x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_and_zero_is_not_one() {
        for (i, status) in Status::ALL.iter().enumerate() {
            assert_eq!(*status as u32, i as u32 + 1, "codes are dense from 1");
            assert_eq!(Status::try_from(u32::from(*status)), Ok(*status));
        }
        assert_eq!(Status::try_from(0), Err(UnknownStatus(0)));
        assert_eq!(Status::try_from(22), Err(UnknownStatus(22)));
        assert_eq!(Status::try_from(21), Ok(Status::BadStreams));
        assert_eq!(Status::try_from(u32::MAX), Err(UnknownStatus(u32::MAX)));
    }
}
