//! Validation of a request snapshot: the only way to a [`ValidRequest`].
//!
//! Pure and total: any bit pattern the host can write yields either a validated request or a
//! [`Status`], never a panic. The vault calls it on its private snapshot (see
//! [`crate::comm::CommBlockPtr::snapshot`]), so nothing checked here can change afterwards.
use crate::comm::{Header, KeyLen, Mode, Op, Request, SgEntry};
use crate::memory_map::{host_window_gpa, touches_vault, HOST_WINDOW_BASE, HOST_WINDOW_SIZE, VAULT_END};
use crate::{Status, ABI_MAGIC, ABI_VERSION, AES_BLOCK, KEY_SLOT_COUNT, MAX_BYTES_PER_EXIT, MAX_ENTRIES};

/// A key slot index below [`KEY_SLOT_COUNT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeySlotIndex(u32);

impl KeySlotIndex {
    /// `Some` if `index` is in range.
    pub const fn new(index: u32) -> Option<Self> {
        if index < KEY_SLOT_COUNT {
            Some(Self(index))
        } else {
            None
        }
    }

    /// The index as a number.
    pub const fn get(self) -> u32 {
        self.0
    }
}

/// What the validator needs to know about the vault's key slots.
pub trait KeySlots {
    /// Length of the key held in `slot`, or `None` if the slot is empty.
    fn key_len(&self, slot: KeySlotIndex) -> Option<KeyLen>;
}

/// Encrypt or decrypt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Plaintext to ciphertext.
    Encrypt,
    /// Ciphertext to plaintext.
    Decrypt,
}

/// A scatter-list whose every range has been checked: non-empty entries, `addr + len` without
/// overflow, inside the host window and away from the vault, lengths summing to the total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidEntries<'r>(&'r [SgEntry]);

impl<'r> ValidEntries<'r> {
    /// The entries.
    pub const fn as_slice(&self) -> &'r [SgEntry] {
        self.0
    }
}

/// An encrypt or decrypt request that passed validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CryptRequest<'r> {
    /// Encrypt or decrypt.
    pub direction: Direction,
    /// ECB or CBC.
    pub mode: Mode,
    /// Slot holding a key of `key_len`.
    pub slot: KeySlotIndex,
    /// Length of that key.
    pub key_len: KeyLen,
    /// Input IV (CBC).
    pub iv: [u8; AES_BLOCK],
    /// Checked scatter-list.
    pub entries: ValidEntries<'r>,
    /// Total bytes: a non-zero multiple of 16, at most [`MAX_BYTES_PER_EXIT`].
    pub total_len: u32,
}

/// A request that passed validation, borrowing from the snapshot it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValidRequest<'r> {
    /// Expand `key` into `slot`.
    SetKey {
        /// Destination slot.
        slot: KeySlotIndex,
        /// The key's length.
        key_len: KeyLen,
        /// The key bytes (`key_len` of them), in the private snapshot.
        key: &'r [u8],
    },
    /// Zeroize `slot`.
    ClearKey {
        /// Slot to clear.
        slot: KeySlotIndex,
    },
    /// Encrypt or decrypt.
    Crypt(CryptRequest<'r>),
}

/// Validates a snapshot of the shared request.
// Not inlined: the vault image budget (4096 bytes) does not survive LLVM inlining this
// into the request loop.
#[inline(never)]
pub fn validate<'r>(header: &Header, request: &'r Request, slots: &impl KeySlots) -> Result<ValidRequest<'r>, Status> {
    if header.magic != ABI_MAGIC {
        return Err(Status::BadMagic);
    }
    if header.version != ABI_VERSION {
        return Err(Status::BadVersion);
    }
    if request.reserved_0x14 != 0 {
        return Err(Status::ReservedNotZero);
    }
    let op = Op::try_from(request.op).map_err(|_| Status::BadOp)?;
    let slot = KeySlotIndex::new(request.key_slot).ok_or(Status::BadSlot)?;
    let key_len = || KeyLen::try_from(request.key_len).map_err(|_| Status::BadKeyLen);
    let no_entries = || {
        if request.entry_count != 0 {
            Err(Status::BadEntryCount)
        } else if request.total_len != 0 {
            Err(Status::LengthMismatch)
        } else {
            Ok(())
        }
    };
    let direction = match op {
        Op::SetKey => {
            let len = key_len()?;
            no_entries()?;
            return Ok(ValidRequest::SetKey { slot, key_len: len, key: &request.key[..len.bytes()] });
        }
        Op::ClearKey => {
            no_entries()?;
            return Ok(ValidRequest::ClearKey { slot });
        }
        Op::Encrypt => Direction::Encrypt,
        Op::Decrypt => Direction::Decrypt,
    };
    let mode = Mode::try_from(request.mode).map_err(|_| Status::BadMode)?;
    let key_len = key_len()?;
    match slots.key_len(slot) {
        None => return Err(Status::NoKey),
        Some(held) if held != key_len => return Err(Status::KeyLenMismatch),
        Some(_) => {}
    }
    let total_len = validate_total(request.total_len)?;
    let entries = validate_entries(request, total_len)?;
    Ok(ValidRequest::Crypt(CryptRequest { direction, mode, slot, key_len, iv: request.iv, entries, total_len }))
}

fn validate_total(total_len: u64) -> Result<u32, Status> {
    if total_len == 0 {
        return Err(Status::ZeroLength);
    }
    if !total_len.is_multiple_of(AES_BLOCK as u64) {
        return Err(Status::UnalignedLength);
    }
    match u32::try_from(total_len) {
        Ok(total) if total <= MAX_BYTES_PER_EXIT => Ok(total),
        _ => Err(Status::TooLarge),
    }
}

fn validate_entries(request: &Request, total_len: u32) -> Result<ValidEntries<'_>, Status> {
    let count = request.entry_count as usize;
    if count == 0 || count > MAX_ENTRIES {
        return Err(Status::BadEntryCount);
    }
    let entries = &request.entries[..count];
    let mut sum: u64 = 0;
    for entry in entries {
        if entry.reserved_0x14 != 0 {
            return Err(Status::ReservedNotZero);
        }
        if entry.len == 0 {
            return Err(Status::EmptyEntry);
        }
        let len = u64::from(entry.len);
        for addr in [entry.src, entry.dst] {
            check_host_range(addr, len)?;
        }
        // At most MAX_ENTRIES × u32::MAX: cannot overflow u64.
        sum += len;
    }
    if sum != u64::from(total_len) {
        return Err(Status::LengthMismatch);
    }
    Ok(ValidEntries(entries))
}

/// A host-physical range is usable when it does not wrap and lies inside the host window.
/// That also keeps it away from the vault's own memory: the window's guest-physical alias
/// starts above everything the vault owns, which the compile-time block below pins, so a
/// range inside the window cannot touch the vault.
fn check_host_range(addr: u64, len: u64) -> Result<(), Status> {
    if addr.checked_add(len).is_none() {
        return Err(Status::AddressOverflow);
    }
    host_window_gpa(addr, len).map(|_| ()).ok_or(Status::OutsideWindow)
}

const _: () = {
    assert!(HOST_WINDOW_BASE >= VAULT_END);
    assert!(!touches_vault(HOST_WINDOW_BASE, HOST_WINDOW_SIZE));
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Slot 0 holds AES-128, slot 1 AES-256, the rest are empty.
    struct TwoKeys;
    impl KeySlots for TwoKeys {
        fn key_len(&self, slot: KeySlotIndex) -> Option<KeyLen> {
            match slot.get() {
                0 => Some(KeyLen::Aes128),
                1 => Some(KeyLen::Aes256),
                _ => None,
            }
        }
    }

    fn header() -> Header {
        Header { magic: ABI_MAGIC, version: ABI_VERSION, sequence: 1 }
    }

    fn entry(src: u64, dst: u64, len: u32) -> SgEntry {
        SgEntry { src, dst, len, reserved_0x14: 0 }
    }

    /// A valid CBC encrypt of 48 bytes in three uneven entries with slot 0.
    fn crypt() -> Request {
        let mut r = Request::zeroed();
        r.op = Op::Encrypt as u32;
        r.mode = Mode::Cbc as u32;
        r.key_slot = 0;
        r.key_len = 16;
        r.iv = [7; 16];
        r.entries[0] = entry(0x10_0000, 0x20_0000, 5);
        r.entries[1] = entry(0x30_0000, 0x30_0000, 27);
        r.entries[2] = entry(0x40_0000, 0x50_0000, 16);
        r.entry_count = 3;
        r.total_len = 48;
        r
    }

    fn rejects(r: &Request, status: Status) {
        assert_eq!(validate(&header(), r, &TwoKeys), Err(status), "{r:?}");
    }

    #[test]
    fn accepts_a_valid_crypt_request() {
        let r = crypt();
        let Ok(ValidRequest::Crypt(c)) = validate(&header(), &r, &TwoKeys) else {
            panic!("rejected a valid request");
        };
        assert_eq!(c.direction, Direction::Encrypt);
        assert_eq!(c.mode, Mode::Cbc);
        assert_eq!(c.key_len, KeyLen::Aes128);
        assert_eq!(c.iv, [7; 16]);
        assert_eq!(c.total_len, 48);
        assert_eq!(c.entries.as_slice(), &r.entries[..3]);
    }

    #[test]
    fn accepts_key_operations() {
        let mut r = Request::zeroed();
        r.op = Op::SetKey as u32;
        r.key_slot = KEY_SLOT_COUNT - 1;
        r.key_len = 24;
        r.key = [3; 32];
        let slot = KeySlotIndex::new(KEY_SLOT_COUNT - 1).unwrap();
        assert_eq!(
            validate(&header(), &r, &TwoKeys),
            Ok(ValidRequest::SetKey { slot, key_len: KeyLen::Aes192, key: &[3; 24] })
        );
        r.op = Op::ClearKey as u32;
        assert_eq!(validate(&header(), &r, &TwoKeys), Ok(ValidRequest::ClearKey { slot }));
    }

    #[test]
    fn rejects_bad_header() {
        let r = crypt();
        let bad_magic = Header { magic: 0, ..header() };
        assert_eq!(validate(&bad_magic, &r, &TwoKeys), Err(Status::BadMagic));
        let bad_version = Header { version: ABI_VERSION + 1, ..header() };
        assert_eq!(validate(&bad_version, &r, &TwoKeys), Err(Status::BadVersion));
    }

    #[test]
    fn rejects_bad_op_mode_slot_and_key_length() {
        let mut r = crypt();
        r.op = 0;
        rejects(&r, Status::BadOp);
        r.op = 99;
        rejects(&r, Status::BadOp);
        let mut r = crypt();
        r.mode = 3;
        rejects(&r, Status::BadMode);
        let mut r = crypt();
        r.key_slot = KEY_SLOT_COUNT;
        rejects(&r, Status::BadSlot);
        let mut r = crypt();
        r.key_len = 17;
        rejects(&r, Status::BadKeyLen);
        let mut r = crypt();
        r.op = Op::SetKey as u32;
        r.entry_count = 0;
        r.total_len = 0;
        r.key_len = 0;
        rejects(&r, Status::BadKeyLen);
    }

    #[test]
    fn rejects_empty_slot_and_wrong_key_size() {
        let mut r = crypt();
        r.key_slot = 2;
        rejects(&r, Status::NoKey);
        let mut r = crypt();
        r.key_len = 32; // slot 0 holds AES-128
        rejects(&r, Status::KeyLenMismatch);
        r.key_slot = 1;
        assert!(validate(&header(), &r, &TwoKeys).is_ok());
    }

    #[test]
    fn rejects_bad_lengths() {
        let mut r = crypt();
        r.total_len = 0;
        rejects(&r, Status::ZeroLength);
        r.total_len = 47;
        rejects(&r, Status::UnalignedLength);
        r.total_len = 64;
        rejects(&r, Status::LengthMismatch);
        r.total_len = u64::from(MAX_BYTES_PER_EXIT) + 16;
        rejects(&r, Status::TooLarge);
        r.total_len = 1 << 36; // does not fit u32
        rejects(&r, Status::TooLarge);
        let mut r = crypt();
        r.entries[1].len = 0;
        rejects(&r, Status::EmptyEntry);
    }

    #[test]
    fn rejects_bad_entry_counts() {
        let mut r = crypt();
        r.entry_count = 0;
        rejects(&r, Status::BadEntryCount);
        r.entry_count = MAX_ENTRIES as u32 + 1;
        rejects(&r, Status::BadEntryCount);
        r.entry_count = u32::MAX;
        rejects(&r, Status::BadEntryCount);
        // Key operations carry no entries.
        let mut r = Request::zeroed();
        r.op = Op::ClearKey as u32;
        r.entry_count = 1;
        rejects(&r, Status::BadEntryCount);
        r.entry_count = 0;
        r.total_len = 16;
        rejects(&r, Status::LengthMismatch);
    }

    #[test]
    fn rejects_bad_addresses() {
        let mut r = crypt();
        r.entries[1].src = u64::MAX - 10;
        rejects(&r, Status::AddressOverflow);
        let mut r = crypt();
        r.entries[2].dst = u64::MAX - 15; // ends exactly at 2^64: overflows
        rejects(&r, Status::AddressOverflow);
        let mut r = crypt();
        r.entries[0].dst = HOST_WINDOW_SIZE - 4; // last byte beyond the window
        rejects(&r, Status::OutsideWindow);
        let mut r = crypt();
        r.entries[0].src = HOST_WINDOW_SIZE;
        rejects(&r, Status::OutsideWindow);
        // The last bytes of the window are fine.
        let mut r = crypt();
        r.entries[0].src = HOST_WINDOW_SIZE - 5;
        assert!(validate(&header(), &r, &TwoKeys).is_ok());
    }

    #[test]
    fn no_accepted_range_reaches_the_vault() {
        // Host-physical addresses that equal the vault's guest-physical ones are host memory:
        // their alias lies in the window, far above the vault.
        assert_eq!(check_host_range(crate::memory_map::KEY_SLOTS_BASE, 16), Ok(()));
        // The extremes of what is accepted, aliased, stay clear of the vault; one byte more
        // is refused.
        for (addr, len) in [(0, 1), (0, HOST_WINDOW_SIZE), (HOST_WINDOW_SIZE - 1, 1)] {
            assert_eq!(check_host_range(addr, len), Ok(()));
            let gpa = host_window_gpa(addr, len).unwrap();
            assert!(!touches_vault(gpa, len), "{addr:#x}+{len:#x}");
        }
        assert_eq!(check_host_range(0, HOST_WINDOW_SIZE + 1), Err(Status::OutsideWindow));
        assert_eq!(check_host_range(u64::MAX, 1), Err(Status::AddressOverflow));
    }

    #[test]
    fn rejects_reserved_bits() {
        let mut r = crypt();
        r.reserved_0x14 = 1;
        rejects(&r, Status::ReservedNotZero);
        let mut r = crypt();
        r.entries[2].reserved_0x14 = 1;
        rejects(&r, Status::ReservedNotZero);
    }

    proptest! {
        #[test]
        fn never_panics_and_accepted_requests_keep_their_promises(
            op in 0u32..6, mode in 0u32..4, slot in 0u32..4, key_len in prop::sample::select(vec![0u32, 16, 24, 32, 33]),
            count in 0u32..8, lens in prop::collection::vec(0u32..40, 8),
            addrs in prop::collection::vec(prop_oneof![0u64..1 << 20, Just(u64::MAX - 8), Just(HOST_WINDOW_SIZE - 20)], 16),
            total in prop_oneof![0u64..300, Just(u64::MAX)],
        ) {
            let mut r = Request::zeroed();
            r.op = op; r.mode = mode; r.key_slot = slot; r.key_len = key_len;
            r.entry_count = count; r.total_len = total;
            for i in 0..8 { r.entries[i] = entry(addrs[2 * i], addrs[2 * i + 1], lens[i]); }
            if let Ok(ValidRequest::Crypt(c)) = validate(&header(), &r, &TwoKeys) {
                let sum: u64 = c.entries.as_slice().iter().map(|e| u64::from(e.len)).sum();
                prop_assert_eq!(sum, u64::from(c.total_len));
                prop_assert!(c.total_len % 16 == 0 && c.total_len > 0);
                for e in c.entries.as_slice() {
                    prop_assert!(e.len > 0);
                    prop_assert!(e.src + u64::from(e.len) <= HOST_WINDOW_SIZE);
                    prop_assert!(e.dst + u64::from(e.len) <= HOST_WINDOW_SIZE);
                }
            }
        }
    }
}
