//! Validation of a batch snapshot: the only way to a [`ValidRequest`].
//!
//! Pure and total: any bit pattern the host can write yields either a validated request or a
//! [`Status`], never a panic. The vault calls it on its private snapshot (see
//! [`crate::comm::CommBlockPtr::snapshot_into`]), so nothing checked here can change
//! afterwards: [`validate_header`] once per batch, then [`validate`] per request.
use crate::comm::{Batch, Header, KeyLen, Mode, Op, Request, SgEntry, SlotKey};
use crate::memory_map::{touches_vault, HOST_WINDOW_BASE, HOST_WINDOW_SIZE, VAULT_END};
use crate::{
    Status, ABI_MAGIC, ABI_VERSION, AES_BLOCK, KEY_SLOT_COUNT, MAX_BATCH, MAX_BYTES_PER_EXIT, MAX_ENTRIES, MAX_STREAMS,
};

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

/// Encrypt or decrypt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Plaintext to ciphertext.
    Encrypt,
    /// Ciphertext to plaintext.
    Decrypt,
}

/// A scatter-list whose every range has been checked: non-empty entries of whole blocks,
/// `addr + len` without overflow, inside the host window and away from the vault, lengths
/// summing to the total. (The vault only ever sees whole blocks: the HV does a CTR request's
/// partial last block and XTS ciphertext stealing with whole-block requests, see
/// `hv::translate`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidEntries<'r> {
    entries: &'r [SgEntry],
}

impl<'r> ValidEntries<'r> {
    /// The entries (at least one).
    pub const fn as_slice(&self) -> &'r [SgEntry] {
        self.entries
    }
}

/// An encrypt or decrypt request that passed validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CryptRequest<'r> {
    /// Encrypt or decrypt.
    pub direction: Direction,
    /// ECB, CBC, CTR or XTS.
    pub mode: Mode,
    /// Slot holding `key`.
    pub slot: KeySlotIndex,
    /// The key the slot holds (an XTS pair exactly when `mode` is XTS).
    pub key: SlotKey,
    /// Input IV (CBC), counter (CTR), tweak (XTS).
    pub iv: [u8; AES_BLOCK],
    /// XTS: blocks of the data unit done before; zero for the other modes.
    pub tweak_block: u32,
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
        /// The key: one AES key or an XTS pair.
        key: SlotKey,
        /// The key bytes (`key.bytes()` of them), in the private snapshot.
        bytes: &'r [u8],
    },
    /// Zeroize `slot`.
    ClearKey {
        /// Slot to clear.
        slot: KeySlotIndex,
    },
    /// Encrypt or decrypt.
    Crypt(CryptRequest<'r>),
}

const MAX_BATCH_U64: u64 = MAX_BATCH as u64;

/// Validates the header of a batch snapshot: the number of requests to serve, or why none.
pub fn validate_header(header: &Header) -> Result<usize, Status> {
    if header.magic != ABI_MAGIC {
        return Err(Status::BadMagic);
    }
    if header.version != ABI_VERSION {
        return Err(Status::BadVersion);
    }
    match header.count {
        count @ 1..=MAX_BATCH_U64 => Ok(count as usize),
        _ => Err(Status::BadBatchCount),
    }
}

/// Validates one request of a batch snapshot (`batch`: its entries and key).
// Not inlined: the vault image budget (4096 bytes) does not survive LLVM inlining this
// into the request loop.
#[inline(never)]
pub fn validate<'r>(request: &Request, batch: &'r Batch) -> Result<ValidRequest<'r>, Status> {
    let op = Op::try_from(request.op).map_err(|_| Status::BadOp)?;
    let slot = KeySlotIndex::new(request.key_slot).ok_or(Status::BadSlot)?;
    let xts = request.mode == Mode::Xts as u32;
    if request.tweak_block != 0 && !xts {
        return Err(Status::ReservedNotZero);
    }
    if matches!(op, Op::SetKey | Op::ClearKey) {
        // Key operations name no entries (not even a first one).
        if request.entry_count | request.first_entry != 0 {
            return Err(Status::BadEntryCount);
        }
        if request.total_len != 0 {
            return Err(Status::LengthMismatch);
        }
        if op == Op::ClearKey {
            return Ok(ValidRequest::ClearKey { slot });
        }
    }
    let len = KeyLen::try_from(request.key_len).map_err(|_| Status::BadKeyLen)?;
    let key = SlotKey { len, xts };
    if op == Op::SetKey {
        // No mode (one AES key) or XTS (a pair).
        if request.mode != 0 && !xts {
            return Err(Status::BadMode);
        }
        return Ok(ValidRequest::SetKey { slot, key, bytes: &batch.key[..key.bytes()] });
    }
    let direction = if op == Op::Encrypt { Direction::Encrypt } else { Direction::Decrypt };
    let mode = Mode::try_from(request.mode).map_err(|_| Status::BadMode)?;
    if mode == Mode::CbcStreams && direction != Direction::Encrypt {
        return Err(Status::BadStreams);
    }
    // A data unit is at most the crypto API's u32 cryptlen: so many blocks, no more (each one
    // of them is a doubling of the tweak for the vault).
    if request.tweak_block > u32::MAX / AES_BLOCK as u32 {
        return Err(Status::TooLarge);
    }
    let total_len = validate_total(request.total_len)?;
    let entries = validate_entries(request, &batch.entries, total_len, mode)?;
    Ok(ValidRequest::Crypt(CryptRequest {
        direction,
        mode,
        slot,
        key,
        iv: request.iv,
        tweak_block: request.tweak_block,
        entries,
        total_len,
    }))
}

fn validate_total(total_len: u32) -> Result<u32, Status> {
    if total_len == 0 {
        return Err(Status::ZeroLength);
    }
    if !total_len.is_multiple_of(AES_BLOCK as u32) {
        return Err(Status::UnalignedLength);
    }
    if total_len > MAX_BYTES_PER_EXIT {
        return Err(Status::TooLarge);
    }
    Ok(total_len)
}

fn validate_entries<'r>(
    request: &Request,
    pool: &'r [SgEntry; MAX_ENTRIES],
    total_len: u32,
    mode: Mode,
) -> Result<ValidEntries<'r>, Status> {
    let (first, count) = (request.first_entry as usize, request.entry_count as usize);
    // (Both below 2^32: the sum cannot wrap a 64-bit usize.)
    let entries = match pool.get(first..first + count) {
        Some(entries) if count > 0 => entries,
        _ => return Err(Status::BadEntryCount),
    };
    let streams = mode == Mode::CbcStreams;
    let mut sum: u64 = 0;
    for (index, entry) in entries.iter().enumerate() {
        if entry.reserved_0x14 != 0 {
            return Err(Status::ReservedNotZero);
        }
        if entry.len == 0 {
            return Err(Status::EmptyEntry);
        }
        // Blocks never straddle entries (the HV bounces those that would).
        if !entry.len.is_multiple_of(AES_BLOCK as u32) {
            return Err(Status::UnalignedEntry);
        }
        // CBC streams: all of the first one's length.
        if streams && index + 1 < count && entry.len != entries[0].len {
            return Err(Status::BadStreams);
        }
        for addr in [entry.src, entry.dst] {
            check_host_range(addr, entry.len)?;
        }
        // At most MAX_ENTRIES × u32::MAX: cannot overflow u64.
        sum += u64::from(entry.len);
    }
    if sum != u64::from(total_len) {
        return Err(Status::LengthMismatch);
    }
    // CBC streams: the last entry holds 16 bytes of IV per stream, for 1 ..= MAX_STREAMS
    // streams (an entry is never empty: no zero streams).
    let ivs = entries[count - 1].len as usize;
    if streams && (ivs != AES_BLOCK * (count - 1) || ivs > AES_BLOCK * MAX_STREAMS) {
        return Err(Status::BadStreams);
    }
    Ok(ValidEntries { entries })
}

/// A host-physical range is usable when it lies inside the host window (an `addr + len`
/// that would wrap does not). That also keeps it away from the vault's own memory: the
/// window's guest-physical alias starts above everything the vault owns, which the
/// compile-time block below pins, so a range inside the window cannot touch the vault.
fn check_host_range(addr: u64, len: u32) -> Result<(), Status> {
    // `len < HOST_WINDOW_SIZE` (asserted below): no underflow, and no `addr + len` to wrap.
    if addr > HOST_WINDOW_SIZE - u64::from(len) {
        return Err(Status::OutsideWindow);
    }
    Ok(())
}

const _: () = {
    assert!(HOST_WINDOW_SIZE > u32::MAX as u64);
    assert!(HOST_WINDOW_BASE >= VAULT_END);
    assert!(!touches_vault(HOST_WINDOW_BASE, HOST_WINDOW_SIZE));
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_map::host_window_gpa;
    use proptest::prelude::*;

    /// Where the test requests' entries start in the batch's pool (not 0, so that a
    /// validator ignoring `first_entry` fails).
    const FIRST: usize = 5;

    /// A request with its entries and key, as the tests build them; [`R::batch`] places it as
    /// request 0 of a batch, its entries from [`FIRST`] on.
    #[derive(Clone, Debug)]
    struct R {
        op: u32,
        mode: u32,
        key_slot: u32,
        key_len: u32,
        entry_count: u32,
        tweak_block: u32,
        total_len: u32,
        iv: [u8; 16],
        key: [u8; 64],
        entries: [SgEntry; 16],
    }

    impl R {
        fn zeroed() -> Self {
            Self {
                op: 0,
                mode: 0,
                key_slot: 0,
                key_len: 0,
                entry_count: 0,
                tweak_block: 0,
                total_len: 0,
                iv: [0; 16],
                key: [0; 64],
                entries: [SgEntry::default(); 16],
            }
        }

        fn batch(&self) -> Batch {
            let mut b = Batch::zeroed();
            b.header = Header::new(1, 1);
            b.key = self.key;
            b.requests[0] = Request {
                op: self.op,
                mode: self.mode,
                key_slot: self.key_slot,
                key_len: self.key_len,
                first_entry: if self.entry_count == 0 { 0 } else { FIRST as u32 },
                entry_count: self.entry_count,
                tweak_block: self.tweak_block,
                total_len: self.total_len,
                iv: self.iv,
            };
            b.entries[FIRST..FIRST + 16].copy_from_slice(&self.entries);
            b
        }
    }

    /// `validate` of `r` as request 0 of its batch, reduced to what the tests compare.
    fn outcome(r: &R) -> Result<(), Status> {
        let b = r.batch();
        validate(&b.requests[0], &b).map(|_| ())
    }

    fn entry(src: u64, dst: u64, len: u32) -> SgEntry {
        SgEntry { src, dst, len, reserved_0x14: 0 }
    }

    /// A valid CBC encrypt of 48 bytes in three entries (whole blocks) with slot 0.
    fn crypt() -> R {
        let mut r = R::zeroed();
        r.op = Op::Encrypt as u32;
        r.mode = Mode::Cbc as u32;
        r.key_slot = 0;
        r.key_len = 16;
        r.iv = [7; 16];
        r.entries[0] = entry(0x10_0000, 0x20_0000, 16);
        r.entries[1] = entry(0x30_0000, 0x30_0000, 16);
        r.entries[2] = entry(0x40_0000, 0x50_0000, 16);
        r.entry_count = 3;
        r.total_len = 48;
        r
    }

    /// `r` as an XTS (or other `mode`) request of entries with these lengths.
    fn with_lens(mut r: R, mode: Mode, lens: &[u32]) -> R {
        r.mode = mode as u32;
        r.entry_count = lens.len() as u32;
        r.total_len = lens.iter().sum();
        for (i, &len) in lens.iter().enumerate() {
            r.entries[i] = entry(0x10_0000 * (i as u64 + 1), 0x10_0000 * (i as u64 + 1), len);
        }
        r
    }

    fn rejects(r: &R, status: Status) {
        assert_eq!(outcome(r), Err(status), "{r:?}");
    }

    #[test]
    fn accepts_a_valid_crypt_request() {
        let r = crypt();
        let b = r.batch();
        let Ok(ValidRequest::Crypt(c)) = validate(&b.requests[0], &b) else {
            panic!("rejected a valid request");
        };
        assert_eq!(c.direction, Direction::Encrypt);
        assert_eq!(c.mode, Mode::Cbc);
        assert_eq!(c.key, SlotKey { len: KeyLen::Aes128, xts: false });
        assert_eq!(c.iv, [7; 16]);
        assert_eq!(c.total_len, 48);
        assert_eq!(c.entries.as_slice(), &r.entries[..3]);
    }

    #[test]
    fn accepts_key_operations() {
        let mut b = Batch::zeroed();
        b.requests[3] =
            Request { op: Op::SetKey as u32, key_slot: KEY_SLOT_COUNT - 1, key_len: 24, ..Default::default() };
        b.key = [3; 64];
        let slot = KeySlotIndex::new(KEY_SLOT_COUNT - 1).unwrap();
        let single = SlotKey { len: KeyLen::Aes192, xts: false };
        let r = b.requests[3];
        assert_eq!(validate(&r, &b), Ok(ValidRequest::SetKey { slot, key: single, bytes: &[3; 24] }));
        // An XTS pair: two keys of key_len bytes each (the kernel's 48-byte xts(aes) key).
        let r = Request { mode: Mode::Xts as u32, ..r };
        let pair = SlotKey { len: KeyLen::Aes192, xts: true };
        assert_eq!(validate(&r, &b), Ok(ValidRequest::SetKey { slot, key: pair, bytes: &[3; 48] }));
        let r = Request { key_len: 32, ..r };
        let Ok(ValidRequest::SetKey { bytes, .. }) = validate(&r, &b) else { panic!("AES-256-XTS key refused") };
        assert_eq!(bytes.len(), 64);
        // Set-key names no other mode, and no entries (not even a first one).
        assert_eq!(validate(&Request { mode: Mode::Cbc as u32, ..r }, &b), Err(Status::BadMode));
        assert_eq!(validate(&Request { first_entry: 1, ..r }, &b), Err(Status::BadEntryCount));
        let clear = Request { op: Op::ClearKey as u32, ..r };
        assert_eq!(validate(&clear, &b), Ok(ValidRequest::ClearKey { slot }));
        assert_eq!(validate(&Request { first_entry: 2, ..clear }, &b), Err(Status::BadEntryCount));
    }

    #[test]
    fn batch_headers_name_their_count() {
        assert_eq!(validate_header(&Header::new(9, 1)), Ok(1));
        assert_eq!(validate_header(&Header::new(9, MAX_BATCH as u64)), Ok(MAX_BATCH));
        assert_eq!(validate_header(&Header::new(9, 0)), Err(Status::BadBatchCount));
        assert_eq!(validate_header(&Header::new(9, MAX_BATCH as u64 + 1)), Err(Status::BadBatchCount));
        assert_eq!(validate_header(&Header::new(9, 1 << 32 | 1)), Err(Status::BadBatchCount));
        assert_eq!(validate_header(&Header::new(9, u64::MAX)), Err(Status::BadBatchCount));
        let good = Header::new(9, 2);
        assert_eq!(validate_header(&Header { magic: 0, ..good }), Err(Status::BadMagic));
        assert_eq!(validate_header(&Header { version: ABI_VERSION + 1, ..good }), Err(Status::BadVersion));
        assert_eq!(
            validate_header(&Header { version: 5, ..good }),
            Err(Status::BadVersion),
            "ABI 5 had room for 512 vCPUs"
        );
        assert_eq!(
            validate_header(&Header { version: 6, ..good }),
            Err(Status::BadVersion),
            "ABI 6 had the vault do partial blocks"
        );
        assert_eq!((good.magic, good.version), (u32::from_le_bytes(*b"SVLT"), 7));
    }

    #[test]
    fn each_request_takes_its_own_run_of_the_pool() {
        // Two requests of one batch, one entry each, far apart in the pool.
        let mut b = Batch::zeroed();
        b.entries[0] = entry(0x1000, 0x1000, 32);
        b.entries[MAX_ENTRIES - 1] = entry(0x2000, 0x3000, 48);
        let first = Request {
            op: Op::Encrypt as u32,
            mode: Mode::Ecb as u32,
            key_len: 16,
            entry_count: 1,
            total_len: 32,
            ..Default::default()
        };
        let last = Request { first_entry: MAX_ENTRIES as u32 - 1, total_len: 48, ..first };
        let Ok(ValidRequest::Crypt(c)) = validate(&first, &b) else { panic!("refused") };
        assert_eq!(c.entries.as_slice(), &b.entries[..1]);
        let Ok(ValidRequest::Crypt(c)) = validate(&last, &b) else { panic!("refused") };
        assert_eq!(c.entries.as_slice(), &b.entries[MAX_ENTRIES - 1..]);
        // A run past the end of the pool, or starting beyond it, is refused whole.
        for (first_entry, entry_count) in
            [(MAX_ENTRIES as u32 - 1, 2), (MAX_ENTRIES as u32, 1), (u32::MAX, 1), (u32::MAX, u32::MAX), (1, u32::MAX)]
        {
            let r = Request { first_entry, entry_count, ..last };
            assert_eq!(validate(&r, &b), Err(Status::BadEntryCount), "{first_entry} + {entry_count}");
        }
    }

    #[test]
    fn rejects_bad_op_mode_slot_and_key_length() {
        let mut r = crypt();
        r.op = 0;
        rejects(&r, Status::BadOp);
        r.op = 99;
        rejects(&r, Status::BadOp);
        for mode in [0, 6, u32::MAX] {
            let mut r = crypt();
            r.mode = mode;
            rejects(&r, Status::BadMode);
        }
        let mut r = crypt();
        r.key_slot = KEY_SLOT_COUNT;
        rejects(&r, Status::BadSlot);
        let mut r = crypt();
        r.key_len = 17;
        rejects(&r, Status::BadKeyLen);
        // An XTS request names the length of each of its two keys, not their sum.
        let mut r = with_lens(crypt(), Mode::Xts, &[32]);
        r.key_len = 64;
        rejects(&r, Status::BadKeyLen);
        let mut r = crypt();
        r.op = Op::SetKey as u32;
        r.entry_count = 0;
        r.total_len = 0;
        r.key_len = 0;
        rejects(&r, Status::BadKeyLen);
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
        r.total_len = MAX_BYTES_PER_EXIT + 16;
        rejects(&r, Status::TooLarge);
        r.total_len = !15;
        rejects(&r, Status::TooLarge);
        let mut r = crypt();
        r.entries[1].len = 0;
        rejects(&r, Status::EmptyEntry);
        // ECB and CBC: whole blocks only, in every entry.
        rejects(&with_lens(crypt(), Mode::Ecb, &[16, 33]), Status::UnalignedLength);
        rejects(&with_lens(crypt(), Mode::Cbc, &[8, 8]), Status::UnalignedEntry);
    }

    #[test]
    fn every_mode_takes_whole_blocks_only_in_every_entry() {
        // The HV does CTR's partial block and XTS ciphertext stealing (hv/src/translate.rs).
        for mode in [Mode::Ecb, Mode::Cbc, Mode::Ctr, Mode::Xts] {
            rejects(&with_lens(crypt(), mode, &[16, 7]), Status::UnalignedLength);
            rejects(&with_lens(crypt(), mode, &[7, 9]), Status::UnalignedEntry);
            rejects(&with_lens(crypt(), mode, &[32, 8, 8]), Status::UnalignedEntry);
            assert!(outcome(&with_lens(crypt(), mode, &[16, 32])).is_ok(), "{mode:?}");
        }
    }

    /// A CBC-streams request: `streams` entries of `len` bytes, then the IV entry of `ivs`.
    fn streams(count: usize, len: u32, ivs: u32) -> R {
        let mut lens = vec![len; count];
        lens.push(ivs);
        with_lens(crypt(), Mode::CbcStreams, &lens)
    }

    #[test]
    fn cbc_streams_are_encryptions_of_1_to_8_equal_streams_and_their_ivs() {
        for n in 1..=MAX_STREAMS {
            assert!(outcome(&streams(n, 4096, 16 * n as u32)).is_ok(), "{n} streams");
        }
        rejects(&streams(9, 16, 16 * 9), Status::BadStreams);
        rejects(&streams(2, 64, 16), Status::BadStreams);
        rejects(&streams(2, 64, 48), Status::BadStreams);
        let mut r = streams(3, 64, 48);
        r.entries[1].len = 48;
        r.total_len -= 16;
        rejects(&r, Status::BadStreams);
        // Only an encryption: CBC decryption is parallel already.
        let mut r = streams(2, 64, 32);
        r.op = Op::Decrypt as u32;
        rejects(&r, Status::BadStreams);
        // Every entry is still a checked range.
        let mut r = streams(2, 64, 32);
        r.entries[2].dst = HOST_WINDOW_SIZE - 16;
        rejects(&r, Status::OutsideWindow);
    }

    #[test]
    fn the_tweak_block_is_for_xts_only_and_bounded() {
        let mut r = with_lens(crypt(), Mode::Xts, &[32]);
        r.tweak_block = u32::MAX / 16;
        let b = r.batch();
        let Ok(ValidRequest::Crypt(c)) = validate(&b.requests[0], &b) else { panic!("refused") };
        assert_eq!(c.tweak_block, u32::MAX / 16);
        r.tweak_block += 1;
        rejects(&r, Status::TooLarge);
        let mut r = crypt();
        r.tweak_block = 1;
        rejects(&r, Status::ReservedNotZero);
    }

    #[test]
    fn rejects_bad_entry_counts() {
        let mut r = crypt();
        r.entry_count = 0;
        rejects(&r, Status::BadEntryCount);
        r.entry_count = MAX_ENTRIES as u32 + 1;
        rejects(&r, Status::BadEntryCount);
        r.entry_count = (MAX_ENTRIES - FIRST) as u32 + 1;
        rejects(&r, Status::BadEntryCount);
        r.entry_count = u32::MAX;
        rejects(&r, Status::BadEntryCount);
        // Key operations carry no entries.
        let mut r = R::zeroed();
        r.op = Op::ClearKey as u32;
        r.entry_count = 1;
        rejects(&r, Status::BadEntryCount);
        r.entry_count = 0;
        r.total_len = 16;
        rejects(&r, Status::LengthMismatch);
    }

    #[test]
    fn rejects_bad_addresses() {
        // Ranges that would wrap lie outside the window.
        let mut r = crypt();
        r.entries[1].src = u64::MAX - 10;
        rejects(&r, Status::OutsideWindow);
        let mut r = crypt();
        r.entries[2].dst = u64::MAX - 15; // ends exactly at 2^64
        rejects(&r, Status::OutsideWindow);
        let mut r = crypt();
        r.entries[0].dst = HOST_WINDOW_SIZE - 4; // last bytes beyond the window
        rejects(&r, Status::OutsideWindow);
        let mut r = crypt();
        r.entries[0].src = HOST_WINDOW_SIZE;
        rejects(&r, Status::OutsideWindow);
        // The last bytes of the window are fine.
        let mut r = crypt();
        r.entries[0].src = HOST_WINDOW_SIZE - 16;
        assert!(outcome(&r).is_ok());
    }

    #[test]
    fn no_accepted_range_reaches_the_vault() {
        // Host-physical addresses that equal the vault's guest-physical ones are host memory:
        // their alias lies in the window, far above the vault.
        assert_eq!(check_host_range(crate::memory_map::KEY_SLOTS_BASE, 16), Ok(()));
        // The extremes of what is accepted, aliased, stay clear of the vault; one byte more
        // is refused.
        for (addr, len) in
            [(0, 1), (0, u32::MAX), (HOST_WINDOW_SIZE - 1, 1), (HOST_WINDOW_SIZE - u64::from(u32::MAX), u32::MAX)]
        {
            assert_eq!(check_host_range(addr, len), Ok(()));
            let gpa = host_window_gpa(addr, u64::from(len)).unwrap();
            assert!(!touches_vault(gpa, u64::from(len)), "{addr:#x}+{len:#x}");
            let at_the_end = addr + u64::from(len) == HOST_WINDOW_SIZE;
            assert_eq!(check_host_range(addr + 1, len).is_ok(), !at_the_end);
        }
        assert_eq!(check_host_range(u64::MAX, 1), Err(Status::OutsideWindow));
        assert_eq!(check_host_range(u64::MAX - 2, 16), Err(Status::OutsideWindow));
    }

    #[test]
    fn rejects_reserved_bits() {
        let mut r = crypt();
        r.entries[2].reserved_0x14 = 1;
        rejects(&r, Status::ReservedNotZero);
    }

    proptest! {
        #[test]
        fn never_panics_and_accepted_requests_keep_their_promises(
            op in 0u32..6, mode in 0u32..6, slot in 0u32..4, key_len in prop::sample::select(vec![0u32, 16, 24, 32, 33]),
            tweak_block in prop_oneof![Just(0u32), any::<u32>()],
            count in 0u32..8, lens in prop::collection::vec(0u32..40, 8),
            addrs in prop::collection::vec(prop_oneof![0u64..1 << 20, Just(u64::MAX - 8), Just(HOST_WINDOW_SIZE - 20)], 16),
            total in prop_oneof![0u32..300, Just(u32::MAX)],
            first in prop_oneof![Just(FIRST as u32), 0u32..4, Just(MAX_ENTRIES as u32 - 2), Just(u32::MAX)],
        ) {
            let mut r = R::zeroed();
            r.op = op; r.mode = mode; r.key_slot = slot; r.key_len = key_len; r.tweak_block = tweak_block;
            r.entry_count = count; r.total_len = total;
            for i in 0..8 { r.entries[i] = entry(addrs[2 * i], addrs[2 * i + 1], lens[i]); }
            let mut b = r.batch();
            if count > 0 { b.requests[0].first_entry = first; }
            if let Ok(ValidRequest::Crypt(c)) = validate(&b.requests[0], &b) {
                let entries = c.entries.as_slice();
                // The entries are the request's run of the pool, nothing else.
                let at = first as usize;
                prop_assert_eq!(entries, &b.entries[at..at + count as usize]);
                let sum: u64 = entries.iter().map(|e| u64::from(e.len)).sum();
                prop_assert_eq!(sum, u64::from(c.total_len));
                prop_assert!(c.total_len > 0 && c.total_len % 16 == 0);
                prop_assert!(c.tweak_block == 0 || c.mode == Mode::Xts);
                if c.mode == Mode::CbcStreams {
                    let (ivs, streams) = entries.split_last().unwrap();
                    prop_assert!(c.direction == Direction::Encrypt);
                    prop_assert!(!streams.is_empty() && streams.len() <= MAX_STREAMS);
                    prop_assert!(streams.iter().all(|e| e.len == streams[0].len));
                    prop_assert_eq!(ivs.len as usize, 16 * streams.len());
                }
                for e in entries {
                    prop_assert!(e.len % 16 == 0);
                    prop_assert!(e.len > 0);
                    prop_assert!(e.src + u64::from(e.len) <= HOST_WINDOW_SIZE);
                    prop_assert!(e.dst + u64::from(e.len) <= HOST_WINDOW_SIZE);
                }
            }
        }
    }
}
