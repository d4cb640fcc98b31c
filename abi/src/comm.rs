//! The per-vCPU communication block: one 4 KiB page shared between the HV and one vault vCPU.
//!
//! The HV writes a [`Header`] (magic, version, a fresh sequence number) and a [`Request`], then
//! runs the vCPU. The vault takes a snapshot with [`CommBlockPtr::snapshot`] (each field read
//! once, with volatile loads), validates the snapshot, executes it, wipes the key bytes a
//! set-key request carried, writes a [`Response`] echoing the sequence number and exits.
//!
//! ```text
//! 0x000 Header    magic, version, sequence
//! 0x010 Response  status, bytes done, sequence echo, output IV
//! 0x040 Request   op, mode, key slot, key length, entry count, XTS tweak block, total
//!                 length, IV, key (64 bytes: an XTS pair of AES-256 keys),
//! 0x0B0           entries[MAX_ENTRIES] of (src_phys, dst_phys, len)
//! 0xFB0 reserved up to the end of the page
//! ```
use core::mem::{offset_of, size_of};
use core::ptr::{addr_of, addr_of_mut, NonNull};

use crate::{AES_BLOCK, MAX_ENTRIES, MAX_KEY_BYTES};

/// An operation the host asks of the vault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Op {
    /// Expand `Request::key` into a key slot; the vault wipes the key bytes from the page.
    SetKey = 1,
    /// Zeroize a key slot.
    ClearKey = 2,
    /// Encrypt the scatter-list with the slot's key.
    Encrypt = 3,
    /// Decrypt the scatter-list with the slot's key.
    Decrypt = 4,
}

impl TryFrom<u32> for Op {
    type Error = u32;
    fn try_from(raw: u32) -> Result<Self, u32> {
        match raw {
            1 => Ok(Self::SetKey),
            2 => Ok(Self::ClearKey),
            3 => Ok(Self::Encrypt),
            4 => Ok(Self::Decrypt),
            other => Err(other),
        }
    }
}

/// Block-cipher mode of an encrypt/decrypt request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Mode {
    /// Electronic codebook: no IV.
    Ecb = 1,
    /// Cipher block chaining: `Request::iv` in, `Response::iv_out` out.
    Cbc = 2,
    /// Counter mode (NIST SP 800-38A §6.5): `Request::iv` is the first counter block, a
    /// 128-bit big-endian number incremented per block; `Response::iv_out` the counter after
    /// the last (partial) block. Any length.
    Ctr = 3,
    /// XTS (IEEE 1619-2018, NIST SP 800-38E) with ciphertext stealing: `Request::iv` is the
    /// data unit's tweak, `Request::tweak_block` the blocks of that unit done by earlier
    /// requests; at least 16 bytes. `Response::iv_out` is zero: the tweak stays in the vault.
    Xts = 4,
}

impl TryFrom<u32> for Mode {
    type Error = u32;
    fn try_from(raw: u32) -> Result<Self, u32> {
        match raw {
            1 => Ok(Self::Ecb),
            2 => Ok(Self::Cbc),
            3 => Ok(Self::Ctr),
            4 => Ok(Self::Xts),
            other => Err(other),
        }
    }
}

/// AES key length, in bytes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum KeyLen {
    /// AES-128: 10 rounds.
    Aes128 = 16,
    /// AES-192: 12 rounds.
    Aes192 = 24,
    /// AES-256: 14 rounds.
    Aes256 = 32,
}

impl KeyLen {
    /// Key length in bytes.
    pub const fn bytes(self) -> usize {
        self as usize
    }

    /// Number of AES rounds: Nk + 6 for a key of Nk 32-bit words (FIPS-197 §5, Figure 4:
    /// 10, 12, 14).
    pub const fn rounds(self) -> usize {
        self as usize / 4 + 6
    }
}

impl TryFrom<u32> for KeyLen {
    type Error = u32;
    fn try_from(raw: u32) -> Result<Self, u32> {
        match raw {
            16 => Ok(Self::Aes128),
            24 => Ok(Self::Aes192),
            32 => Ok(Self::Aes256),
            other => Err(other),
        }
    }
}

/// What a key slot holds: one AES key, or an XTS pair (data key, tweak key) of two AES keys of
/// one length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotKey {
    /// Length of the (each) AES key.
    pub len: KeyLen,
    /// An XTS pair.
    pub xts: bool,
}

impl SlotKey {
    /// The key a request names: `key_len` is the length of the (each) AES key, `xts` says
    /// whether there are two.
    pub fn from_wire(key_len: u32, xts: bool) -> Option<Self> {
        KeyLen::try_from(key_len).ok().map(|len| Self { len, xts })
    }

    /// Bytes of key material: the AES key length, twice for an XTS pair (the kernel's
    /// `xts(aes)` key: 32, 48 or 64 bytes).
    pub const fn bytes(self) -> usize {
        self.len.bytes() << self.xts as usize
    }

    /// The non-zero word a key slot keeps for this key (0 = empty).
    pub const fn to_raw(self) -> u32 {
        self.len as u32 | (self.xts as u32) << 8
    }

    /// The key a slot's word names, `None` for 0 (empty) or a word no key has.
    pub fn from_raw(raw: u32) -> Option<Self> {
        if raw >> 9 != 0 {
            return None;
        }
        KeyLen::try_from(raw & 0xFF).ok().map(|len| Self { len, xts: raw & 0x100 != 0 })
    }
}

/// One scatter-list entry: `len` bytes from host-physical `src` to host-physical `dst`.
/// `src == dst` is in-place. `len` need not be a multiple of the block size: blocks may
/// straddle entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SgEntry {
    /// Host-physical source address.
    pub src: u64,
    /// Host-physical destination address.
    pub dst: u64,
    /// Bytes in this entry (non-zero).
    pub len: u32,
    /// Must be zero.
    pub reserved_0x14: u32,
}

/// Identifies the comm block and the request in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Header {
    /// [`crate::ABI_MAGIC`].
    pub magic: u32,
    /// [`crate::ABI_VERSION`].
    pub version: u32,
    /// A fresh number per request; the vault echoes it in [`Response::sequence`].
    pub sequence: u64,
}

/// The vault's answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Response {
    /// A [`crate::Status`] code.
    pub status: u32,
    /// Zero.
    pub reserved_0x04: u32,
    /// Bytes processed (the request's total length on success, else 0).
    pub bytes_done: u64,
    /// Echo of [`Header::sequence`] of the request answered.
    pub sequence: u64,
    /// Zero.
    pub reserved_0x18: u64,
    /// CBC: the IV that continues the chain (the last ciphertext block). ECB: zeros.
    pub iv_out: [u8; AES_BLOCK],
}

/// The request the host posts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Request {
    /// An [`Op`].
    pub op: u32,
    /// A [`Mode`] (encrypt/decrypt); for set-key, 0 (one AES key) or [`Mode::Xts`] (a pair).
    pub mode: u32,
    /// Key slot index, `0 .. KEY_SLOT_COUNT`.
    pub key_slot: u32,
    /// A [`KeyLen`] in bytes: of the key (for an XTS pair, of each of its two keys) being
    /// set, or that the slot must hold.
    pub key_len: u32,
    /// Valid entries in `entries` (encrypt/decrypt only).
    pub entry_count: u32,
    /// XTS: blocks of this data unit (this IV) processed by earlier requests, so that a data
    /// unit split over several requests continues its tweak sequence. Zero otherwise.
    pub tweak_block: u32,
    /// Sum of the entries' lengths: a non-zero multiple of 16, at most `MAX_BYTES_PER_EXIT`.
    pub total_len: u64,
    /// CBC: the input IV; CTR: the first counter block; XTS: the data unit's tweak.
    pub iv: [u8; AES_BLOCK],
    /// Set key: the key, first `key_len` bytes (an XTS pair: data key, then tweak key). Wiped
    /// by the vault once taken.
    pub key: [u8; MAX_KEY_BYTES],
    /// The scatter-list.
    pub entries: [SgEntry; MAX_ENTRIES],
}

impl Request {
    /// An all-zero request (which is invalid: op 0).
    pub const fn zeroed() -> Self {
        Self {
            op: 0,
            mode: 0,
            key_slot: 0,
            key_len: 0,
            entry_count: 0,
            tweak_block: 0,
            total_len: 0,
            iv: [0; AES_BLOCK],
            key: [0; MAX_KEY_BYTES],
            entries: [SgEntry { src: 0, dst: 0, len: 0, reserved_0x14: 0 }; MAX_ENTRIES],
        }
    }
}

/// A request's fields as the HV posts them ([`CommBlockPtr::post_parts`]).
#[derive(Clone, Copy, Debug)]
pub struct RequestParts<'a> {
    /// An [`Op`].
    pub op: u32,
    /// A [`Mode`].
    pub mode: u32,
    /// Key slot.
    pub key_slot: u32,
    /// Key length in bytes.
    pub key_len: u32,
    /// XTS: blocks of the data unit done by earlier requests.
    pub tweak_block: u32,
    /// CBC input IV, CTR counter, XTS tweak.
    pub iv: [u8; AES_BLOCK],
    /// Set key: the key bytes (at most [`MAX_KEY_BYTES`]), else empty.
    pub key: &'a [u8],
    /// The entries (at most `MAX_ENTRIES` are written).
    pub entries: &'a [SgEntry],
    /// What `entry_count` says (normally `entries.len()`).
    pub entry_count: u32,
    /// What `total_len` says (normally the entries' sum).
    pub total_len: u64,
}

/// The whole shared page.
#[repr(C, align(4096))]
pub struct CommBlock {
    /// Written by the HV.
    pub header: Header,
    /// Written by the vault.
    pub response: Response,
    /// Written by the HV.
    pub request: Request,
    /// Zero.
    pub reserved_0xfb0: [u8; 0x50],
}

impl CommBlock {
    /// An all-zero comm block.
    pub const fn zeroed() -> Self {
        Self {
            header: Header { magic: 0, version: 0, sequence: 0 },
            response: Response {
                status: 0,
                reserved_0x04: 0,
                bytes_done: 0,
                sequence: 0,
                reserved_0x18: 0,
                iv_out: [0; AES_BLOCK],
            },
            request: Request::zeroed(),
            reserved_0xfb0: [0; 0x50],
        }
    }
}

// Layout pinned: this is the wire format between two separately built programs.
const _: () = {
    assert!(size_of::<SgEntry>() == 24);
    assert!(offset_of!(SgEntry, src) == 0x00);
    assert!(offset_of!(SgEntry, dst) == 0x08);
    assert!(offset_of!(SgEntry, len) == 0x10);
    assert!(offset_of!(SgEntry, reserved_0x14) == 0x14);

    assert!(size_of::<Header>() == 0x10);
    assert!(offset_of!(Header, magic) == 0x00);
    assert!(offset_of!(Header, version) == 0x04);
    assert!(offset_of!(Header, sequence) == 0x08);

    assert!(size_of::<Response>() == 0x30);
    assert!(offset_of!(Response, status) == 0x00);
    assert!(offset_of!(Response, reserved_0x04) == 0x04);
    assert!(offset_of!(Response, bytes_done) == 0x08);
    assert!(offset_of!(Response, sequence) == 0x10);
    assert!(offset_of!(Response, reserved_0x18) == 0x18);
    assert!(offset_of!(Response, iv_out) == 0x20);

    assert!(offset_of!(Request, op) == 0x00);
    assert!(offset_of!(Request, mode) == 0x04);
    assert!(offset_of!(Request, key_slot) == 0x08);
    assert!(offset_of!(Request, key_len) == 0x0C);
    assert!(offset_of!(Request, entry_count) == 0x10);
    assert!(offset_of!(Request, tweak_block) == 0x14);
    assert!(offset_of!(Request, total_len) == 0x18);
    assert!(offset_of!(Request, iv) == 0x20);
    assert!(offset_of!(Request, key) == 0x30);
    assert!(offset_of!(Request, entries) == 0x70);
    assert!(size_of::<Request>() == 0x70 + 24 * MAX_ENTRIES);
    assert!(size_of::<Request>().is_multiple_of(8) && core::mem::align_of::<Request>() == 8);

    assert!(offset_of!(CommBlock, header) == 0x000);
    assert!(offset_of!(CommBlock, response) == 0x010);
    assert!(offset_of!(CommBlock, request) == 0x040);
    assert!(offset_of!(CommBlock, reserved_0xfb0) == 0xFB0);
    // The comm block fits its page exactly.
    assert!(size_of::<CommBlock>() == 4096);
};

/// Volatile access to a comm block shared with the other side.
///
/// No reference to the page is ever formed: the other side may write it at any time, so every
/// field is read once with a volatile load into a private value.
#[derive(Clone, Copy, Debug)]
pub struct CommBlockPtr(NonNull<CommBlock>);

/// Reads one field of the shared page exactly once.
macro_rules! read_field {
    ($base:expr, $($field:tt).+) => {
        // SAFETY: `CommBlockPtr::new`'s contract: the page is mapped, aligned and readable;
        // the field pointer is derived without creating a reference.
        unsafe { addr_of!((*$base).$($field).+).read_volatile() }
    };
}

/// Writes one field of the shared page.
macro_rules! write_field {
    ($base:expr, $($field:tt).+, $value:expr) => {
        // SAFETY: as for `read_field!`, and the page is writable.
        unsafe { addr_of_mut!((*$base).$($field).+).write_volatile($value) }
    };
}

/// Volatile copy of a byte array out of shared memory, 8 bytes per load: byte-wise volatile
/// loads would cost the vault image hundreds of bytes.
///
/// # Safety
/// `src` must be valid for reads and 8-byte aligned; `N` a multiple of 8.
unsafe fn read_bytes<const N: usize>(src: *const [u8; N]) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        // SAFETY: `i < N / 8`: in bounds of `src`, aligned per the contract.
        let word = unsafe { src.cast::<u64>().add(i).read_volatile() };
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    out
}

/// Volatile copy of a byte array into shared memory, 8 bytes per store.
///
/// # Safety
/// `dst` must be valid for writes and 8-byte aligned; `N` a multiple of 8.
unsafe fn write_bytes<const N: usize>(dst: *mut [u8; N], bytes: &[u8; N]) {
    for (i, chunk) in bytes.chunks_exact(8).enumerate() {
        let word = u64::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7]]);
        // SAFETY: `i < N / 8`: in bounds of `dst`, aligned per the contract.
        unsafe { dst.cast::<u64>().add(i).write_volatile(word) };
    }
}

/// Reads a byte-array field of the shared page.
macro_rules! read_array {
    ($base:expr, $($field:tt).+) => {
        // SAFETY: the page is mapped (see `CommBlockPtr::new`); every array field sits at an
        // 8-byte aligned offset (layout asserts above) and has a length multiple of 8.
        unsafe { read_bytes(addr_of!((*$base).$($field).+)) }
    };
}

/// Writes a byte-array field of the shared page.
macro_rules! write_array {
    ($base:expr, $($field:tt).+, $value:expr) => {
        // SAFETY: as for `read_array!`, and the page is writable.
        unsafe { write_bytes(addr_of_mut!((*$base).$($field).+), $value) }
    };
}

impl CommBlockPtr {
    /// Wraps the address of a comm block.
    ///
    /// # Safety
    /// `ptr` must point to a 4 KiB-aligned page that stays mapped, readable and writable for
    /// as long as the returned value (or a copy) is used. The other side may write it
    /// concurrently; this type never assumes otherwise.
    pub const unsafe fn new(ptr: NonNull<CommBlock>) -> Self {
        Self(ptr)
    }

    fn raw(self) -> *mut CommBlock {
        self.0.as_ptr()
    }

    /// Vault side: copies header and request out of the shared page, every byte exactly once
    /// (8-byte volatile loads). Everything after the copy works on the private value.
    pub fn snapshot(self) -> (Header, Request) {
        let mut request = core::mem::MaybeUninit::<Request>::uninit();
        let (header, request) = self.snapshot_into(&mut request);
        (header, *request)
    }

    /// [`Self::snapshot`] into the caller's memory (the vault's: no second copy of 4 KiB).
    pub fn snapshot_into(self, out: &mut core::mem::MaybeUninit<Request>) -> (Header, &mut Request) {
        let base = self.raw();
        let header = Header {
            magic: read_field!(base, header.magic),
            version: read_field!(base, header.version),
            sequence: read_field!(base, header.sequence),
        };
        let words = out.as_mut_ptr().cast::<u64>();
        // SAFETY: the page is mapped (`new`'s contract); `Request` sits at an 8-aligned offset.
        let shared = unsafe { addr_of!((*base).request).cast::<u64>() };
        for i in 0..size_of::<Request>() / 8 {
            // SAFETY: `i` words stay within `Request` on both sides (its size is a multiple
            // of 8, asserted above); the source is read once, volatile.
            unsafe { words.add(i).write(shared.add(i).read_volatile()) };
        }
        // SAFETY: every byte was written, and `Request` holds only integers and byte arrays,
        // for which every bit pattern is valid.
        (header, unsafe { out.assume_init_mut() })
    }

    /// Vault side: overwrites the key bytes of the shared request with zeros.
    pub fn wipe_key(self) {
        // SAFETY: the field pointer is derived without creating a reference; the page is
        // mapped (`new`'s contract).
        let key = unsafe { addr_of_mut!((*self.raw()).request.key) }.cast::<u64>();
        for i in 0..MAX_KEY_BYTES / 8 {
            // SAFETY: `i < MAX_KEY_BYTES / 8`: inside the key field, which sits at an 8-aligned
            // offset (layout asserts above); the page is writable.
            unsafe { key.add(i).write_volatile(0) };
        }
    }

    /// Vault side: publishes the response.
    pub fn write_response(self, response: &Response) {
        let base = self.raw();
        write_field!(base, response.status, response.status);
        write_field!(base, response.reserved_0x04, 0);
        write_field!(base, response.bytes_done, response.bytes_done);
        write_field!(base, response.sequence, response.sequence);
        write_field!(base, response.reserved_0x18, 0);
        write_array!(base, response.iv_out, &response.iv_out);
    }

    /// HV side: posts a request (header last). Equivalent to [`CommBlockPtr::post_parts`]
    /// with the request's fields.
    pub fn post(self, header: &Header, request: &Request) {
        let count = (request.entry_count as usize).min(MAX_ENTRIES);
        let parts = RequestParts {
            op: request.op,
            mode: request.mode,
            key_slot: request.key_slot,
            key_len: request.key_len,
            tweak_block: request.tweak_block,
            iv: request.iv,
            key: &request.key,
            entries: &request.entries[..count],
            entry_count: request.entry_count,
            total_len: request.total_len,
        };
        self.post_parts(header, &parts);
    }

    /// HV side: writes a request straight into the shared page, field by field — the HV
    /// never builds a 4 KiB request on the kernel stack, and a key goes from the caller's
    /// buffer to the page without a copy in between. The header goes last.
    pub fn post_parts(self, header: &Header, parts: &RequestParts<'_>) {
        let base = self.raw();
        write_field!(base, response, Response::default());
        write_field!(base, request.op, parts.op);
        write_field!(base, request.mode, parts.mode);
        write_field!(base, request.key_slot, parts.key_slot);
        write_field!(base, request.key_len, parts.key_len);
        write_field!(base, request.entry_count, parts.entry_count);
        write_field!(base, request.tweak_block, parts.tweak_block);
        write_field!(base, request.total_len, parts.total_len);
        write_array!(base, request.iv, &parts.iv);
        let mut key = [0u8; MAX_KEY_BYTES];
        for (dst, src) in key.iter_mut().zip(parts.key) {
            *dst = *src;
        }
        write_array!(base, request.key, &key);
        for (i, entry) in parts.entries.iter().enumerate().take(MAX_ENTRIES) {
            // SAFETY: `i < MAX_ENTRIES`, inside the page; the page is writable.
            unsafe { addr_of_mut!((*base).request.entries).cast::<SgEntry>().add(i).write_volatile(*entry) };
        }
        // The stack copy of the key is wiped the way the vault wipes its own.
        for byte in key.iter_mut() {
            // SAFETY: a byte of a live local array.
            unsafe { core::ptr::write_volatile(byte, 0) };
        }
        write_field!(base, header, *header);
    }

    /// HV side: writes entry `index` (< `MAX_ENTRIES`, else ignored) of the request.
    pub fn write_entry(self, index: usize, entry: &SgEntry) {
        if index < MAX_ENTRIES {
            // SAFETY: `index < MAX_ENTRIES`: inside the page; the page is writable.
            unsafe { addr_of_mut!((*self.raw()).request.entries).cast::<SgEntry>().add(index).write_volatile(*entry) };
        }
    }

    /// HV side: reads the response once.
    pub fn read_response(self) -> Response {
        read_field!(self.raw(), response)
    }

    /// HV side: reads back the key bytes, to check that the vault wiped them.
    pub fn read_key(self) -> [u8; MAX_KEY_BYTES] {
        read_array!(self.raw(), request.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ABI_MAGIC, ABI_VERSION};

    #[test]
    fn wire_values_decode_and_reject() {
        assert_eq!(Op::try_from(3), Ok(Op::Encrypt));
        assert_eq!(Op::try_from(0), Err(0));
        assert_eq!(Op::try_from(5), Err(5));
        assert_eq!(Mode::try_from(2), Ok(Mode::Cbc));
        assert_eq!(Mode::try_from(3), Ok(Mode::Ctr));
        assert_eq!(Mode::try_from(4), Ok(Mode::Xts));
        assert_eq!(Mode::try_from(5), Err(5));
        assert_eq!(Mode::try_from(0), Err(0));
        assert_eq!(KeyLen::try_from(24), Ok(KeyLen::Aes192));
        assert_eq!(KeyLen::try_from(20), Err(20));
        assert_eq!(KeyLen::Aes256.rounds(), 14);
        for op in [Op::SetKey, Op::ClearKey, Op::Encrypt, Op::Decrypt] {
            assert_eq!(Op::try_from(op as u32), Ok(op));
        }
    }

    #[test]
    fn slot_keys_follow_the_kernels_key_sizes() {
        // The crypto API's aes takes 16/24/32 bytes (FIPS-197 §5); xts(aes) twice that
        // (crypto/xts.c: two AES keys of one size).
        for (wire, xts, bytes) in [
            (16, false, Some(16)),
            (24, false, Some(24)),
            (32, false, Some(32)),
            (16, true, Some(32)),
            (24, true, Some(48)),
            (32, true, Some(64)),
            (64, true, None),
            (20, false, None),
            (0, true, None),
        ] {
            let key = SlotKey::from_wire(wire, xts);
            assert_eq!(key.map(SlotKey::bytes), bytes, "{wire} bytes, xts {xts}");
            if let Some(key) = key {
                assert_ne!(key.to_raw(), 0, "a held key never reads as empty");
                assert_eq!(SlotKey::from_raw(key.to_raw()), Some(key));
            }
        }
        assert_eq!(SlotKey::from_raw(0), None);
        assert_eq!(SlotKey::from_raw(0x200 | 16), None);
        assert_eq!(SlotKey::from_raw(0x100 | 20), None);
    }

    #[test]
    fn post_then_snapshot_round_trips_and_key_wipe_is_visible() {
        let mut page = Box::new(CommBlock::zeroed());
        // SAFETY: the box is a live, aligned page for the whole test.
        let comm = unsafe { CommBlockPtr::new(NonNull::from(&mut *page)) };
        let mut request = Request::zeroed();
        request.op = Op::Encrypt as u32;
        request.entry_count = 2;
        request.entries[0] = SgEntry { src: 0x1000, dst: 0x2000, len: 5, reserved_0x14: 0 };
        request.entries[1] = SgEntry { src: 0x3000, dst: 0x3000, len: 11, reserved_0x14: 0 };
        request.entries[2] = SgEntry { src: 9, dst: 9, len: 9, reserved_0x14: 0 };
        request.key = [0xAA; MAX_KEY_BYTES];
        request.tweak_block = 9;
        let header = Header { magic: ABI_MAGIC, version: ABI_VERSION, sequence: 7 };
        comm.post(&header, &request);
        let (got_header, got) = comm.snapshot();
        assert_eq!(got_header, header);
        // Entries beyond the count are not posted.
        request.entries[2] = SgEntry::default();
        assert_eq!(got, request);
        comm.wipe_key();
        assert_eq!(comm.read_key(), [0; MAX_KEY_BYTES]);
        let response = Response { status: 0, bytes_done: 16, sequence: 7, ..Default::default() };
        comm.write_response(&response);
        assert_eq!(comm.read_response(), response);
    }

    #[test]
    fn snapshot_copies_what_the_page_holds_whatever_the_count() {
        let mut page = Box::new(CommBlock::zeroed());
        page.request.entry_count = u32::MAX;
        page.request.entries[MAX_ENTRIES - 1].len = 1;
        page.request.key[63] = 0x5A;
        // SAFETY: the box is a live, aligned page for the whole test.
        let comm = unsafe { CommBlockPtr::new(NonNull::from(&mut *page)) };
        let (_, got) = comm.snapshot();
        assert_eq!(got.entry_count, u32::MAX);
        assert_eq!(got.entries[MAX_ENTRIES - 1].len, 1);
        assert_eq!(got.key[63], 0x5A);
    }
}
