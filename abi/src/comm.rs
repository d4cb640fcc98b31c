//! The per-vCPU communication block: one 4 KiB page shared between the HV and one vault vCPU.
//!
//! It carries a batch: up to [`MAX_BATCH`] requests, each with its own operation, key slot,
//! mode, IV and run of entries in one shared entry pool, and its own response. The HV writes
//! the requests, their entries and (for a set-key) the key, then the [`Header`] (magic,
//! version, a fresh sequence number, the request count) last, and runs the vCPU once. The
//! vault copies the HV's part of the page with [`CommBlockPtr::snapshot_into`] (every byte
//! read once, with volatile loads), wipes the key bytes, validates and executes each request
//! of the private copy in order, writes each one's [`Response`], then the [`BatchResponse`]
//! echoing the sequence number, and exits.
//!
//! ```text
//! 0x000 Header         magic, version, sequence, request count
//! 0x018 key            64 bytes (a set-key's key; an XTS pair of AES-256 keys at most)
//! 0x058 requests       [MAX_BATCH] of op, mode, key slot, key length, first entry, entry
//!                      count, XTS tweak block, total length, IV
//! 0x358 entries        [MAX_ENTRIES] of (src, dst, len), the batch's pool; addresses are
//!                      host-window offsets
//! 0x958 BatchResponse  sequence echo, batch status, requests answered
//! 0x968 responses      [MAX_BATCH] of status, bytes done, output IV
//! 0xAE8 reserved up to the end of the page
//! ```
use core::mem::{offset_of, size_of};
use core::ptr::{addr_of, addr_of_mut, NonNull};

use crate::{AES_BLOCK, MAX_BATCH, MAX_ENTRIES, MAX_KEY_BYTES};

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
    /// the last block. Whole blocks, as every mode: the HV does a partial last block as a
    /// whole one in its bounce page and keeps the keystream's prefix (`hv::translate`).
    Ctr = 3,
    /// XTS (IEEE 1619-2018, NIST SP 800-38E): `Request::iv` is the data unit's tweak,
    /// `Request::tweak_block` the blocks of that unit done by earlier requests.
    /// `Response::iv_out` is zero: the tweak stays in the vault. Whole blocks: the HV does
    /// ciphertext stealing as two one-block requests (`hv::translate`).
    Xts = 4,
    /// CBC encryption of 2 to [`crate::MAX_STREAMS`] independent streams under one key
    /// (`Op::Encrypt` only), whose blocks go through the AES unit together: CBC encryption is
    /// serial within a stream, so one stream leaves most of the unit idle. Entries `0..n` are
    /// the streams, one entry each and all of one length (whole blocks); entry `n`, of
    /// `16 × n` bytes, holds their IVs on the way in and each stream's last ciphertext block
    /// (its output IV) on the way out. `Request::iv` must be zero; `Response::iv_out` is
    /// zero. The HV makes these from kernel CBC encryptions queued together (`hv::batch`).
    CbcStreams = 5,
}

impl TryFrom<u32> for Mode {
    type Error = u32;
    fn try_from(raw: u32) -> Result<Self, u32> {
        match raw {
            1 => Ok(Self::Ecb),
            2 => Ok(Self::Cbc),
            3 => Ok(Self::Ctr),
            4 => Ok(Self::Xts),
            5 => Ok(Self::CbcStreams),
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
/// `src == dst` is in-place. Every entry of a request but its last holds whole blocks (the HV
/// bounces blocks that straddle its lists).
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

/// Identifies the comm block and the batch in flight. Written last by the HV.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Header {
    /// [`crate::ABI_MAGIC`].
    pub magic: u32,
    /// [`crate::ABI_VERSION`].
    pub version: u32,
    /// A fresh number per batch; the vault echoes it in [`BatchResponse::sequence`].
    pub sequence: u64,
    /// Requests in the batch, `1 ..= MAX_BATCH` (64 bits: no reserved half to check).
    pub count: u64,
}

impl Header {
    /// The header of batch `sequence` of `count` requests.
    pub const fn new(sequence: u64, count: u64) -> Self {
        Self { magic: crate::ABI_MAGIC, version: crate::ABI_VERSION, sequence, count }
    }
}

/// The vault's answer to one request of the batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Response {
    /// A [`crate::Status`] code.
    pub status: u32,
    /// Bytes processed (the request's total length on success, else 0).
    pub bytes_done: u32,
    /// CBC: the IV that continues the chain (the last ciphertext block); CTR: the next
    /// counter block; ECB and XTS: zeros.
    pub iv_out: [u8; AES_BLOCK],
}

/// The vault's answer to the batch, written after every request's [`Response`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BatchResponse {
    /// Echo of [`Header::sequence`] of the batch answered.
    pub sequence: u64,
    /// [`crate::Status::Ok`] when the header was valid and every request got a
    /// [`Response`]; else why not (bad magic, version or count), and no request ran.
    pub status: u32,
    /// Requests answered: the header's count, or 0.
    pub count: u32,
}

/// One request of the batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
    /// Index of the request's first entry in the batch's pool (encrypt/decrypt only).
    pub first_entry: u32,
    /// Entries of the request, from `first_entry` on (encrypt/decrypt only).
    pub entry_count: u32,
    /// XTS: blocks of this data unit (this IV) processed by earlier requests, so that a data
    /// unit split over several requests continues its tweak sequence. Zero otherwise.
    pub tweak_block: u32,
    /// Sum of the entries' lengths: non-zero, at most `MAX_BYTES_PER_EXIT`.
    pub total_len: u32,
    /// CBC: the input IV; CTR: the first counter block; XTS: the data unit's tweak.
    pub iv: [u8; AES_BLOCK],
}

impl Request {
    /// Set-key into `slot` of a key of `key_len` bytes (each key, for an XTS pair); the key
    /// bytes go into the batch's key field.
    pub const fn set_key(slot: u32, key_len: u32, xts: bool) -> Self {
        Self {
            op: Op::SetKey as u32,
            mode: if xts { Mode::Xts as u32 } else { 0 },
            key_slot: slot,
            key_len,
            first_entry: 0,
            entry_count: 0,
            tweak_block: 0,
            total_len: 0,
            iv: [0; AES_BLOCK],
        }
    }

    /// Clear-key of `slot`.
    pub const fn clear_key(slot: u32) -> Self {
        Self { op: Op::ClearKey as u32, mode: 0, key_len: 0, ..Self::set_key(slot, 0, false) }
    }
}

/// The part of the page the HV writes, as the vault copies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Batch {
    /// Magic, version, sequence, count.
    pub header: Header,
    /// Set key: the key, first bytes (an XTS pair: data key, then tweak key). Wiped by the
    /// vault once taken.
    pub key: [u8; MAX_KEY_BYTES],
    /// The requests (the first `header.count` of them).
    pub requests: [Request; MAX_BATCH],
    /// The entries the requests name.
    pub entries: [SgEntry; MAX_ENTRIES],
}

impl Batch {
    /// An all-zero batch (which is invalid: magic 0).
    pub const fn zeroed() -> Self {
        Self {
            header: Header { magic: 0, version: 0, sequence: 0, count: 0 },
            key: [0; MAX_KEY_BYTES],
            requests: [Request {
                op: 0,
                mode: 0,
                key_slot: 0,
                key_len: 0,
                first_entry: 0,
                entry_count: 0,
                tweak_block: 0,
                total_len: 0,
                iv: [0; AES_BLOCK],
            }; MAX_BATCH],
            entries: [SgEntry { src: 0, dst: 0, len: 0, reserved_0x14: 0 }; MAX_ENTRIES],
        }
    }
}

/// The whole shared page.
#[repr(C, align(4096))]
pub struct CommBlock {
    /// Written by the HV.
    pub batch: Batch,
    /// Written by the vault, after `responses`.
    pub batch_response: BatchResponse,
    /// Written by the vault.
    pub responses: [Response; MAX_BATCH],
    /// Zero.
    pub reserved_0xae8: [u8; 0x518],
}

impl CommBlock {
    /// An all-zero comm block.
    pub const fn zeroed() -> Self {
        Self {
            batch: Batch::zeroed(),
            batch_response: BatchResponse { sequence: 0, status: 0, count: 0 },
            responses: [Response { status: 0, bytes_done: 0, iv_out: [0; AES_BLOCK] }; MAX_BATCH],
            reserved_0xae8: [0; 0x518],
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

    assert!(size_of::<Header>() == 0x18);
    assert!(offset_of!(Header, magic) == 0x00);
    assert!(offset_of!(Header, version) == 0x04);
    assert!(offset_of!(Header, sequence) == 0x08);
    assert!(offset_of!(Header, count) == 0x10);

    assert!(size_of::<Response>() == 0x18);
    assert!(offset_of!(Response, status) == 0x00);
    assert!(offset_of!(Response, bytes_done) == 0x04);
    assert!(offset_of!(Response, iv_out) == 0x08);

    assert!(size_of::<BatchResponse>() == 0x10);
    assert!(offset_of!(BatchResponse, sequence) == 0x00);
    assert!(offset_of!(BatchResponse, status) == 0x08);
    assert!(offset_of!(BatchResponse, count) == 0x0C);

    assert!(size_of::<Request>() == 0x30);
    assert!(offset_of!(Request, op) == 0x00);
    assert!(offset_of!(Request, mode) == 0x04);
    assert!(offset_of!(Request, key_slot) == 0x08);
    assert!(offset_of!(Request, key_len) == 0x0C);
    assert!(offset_of!(Request, first_entry) == 0x10);
    assert!(offset_of!(Request, entry_count) == 0x14);
    assert!(offset_of!(Request, tweak_block) == 0x18);
    assert!(offset_of!(Request, total_len) == 0x1C);
    assert!(offset_of!(Request, iv) == 0x20);

    assert!(offset_of!(Batch, header) == 0x000);
    assert!(offset_of!(Batch, key) == 0x018);
    assert!(offset_of!(Batch, requests) == 0x058);
    assert!(offset_of!(Batch, entries) == 0x358);
    assert!(size_of::<Batch>() == 0x958);
    assert!(size_of::<Batch>().is_multiple_of(8) && core::mem::align_of::<Batch>() == 8);

    assert!(offset_of!(CommBlock, batch) == 0x000);
    assert!(offset_of!(CommBlock, batch_response) == 0x958);
    assert!(offset_of!(CommBlock, responses) == 0x968);
    assert!(offset_of!(CommBlock, reserved_0xae8) == 0xAE8);
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
    ($base:expr, $($field:tt)+) => {
        // SAFETY: `CommBlockPtr::new`'s contract: the page is mapped, aligned and readable;
        // the field pointer is derived without creating a reference.
        unsafe { addr_of!((*$base).$($field)+).read_volatile() }
    };
}

/// Writes one field of the shared page.
macro_rules! write_field {
    ($base:expr, $value:expr, $($field:tt)+) => {
        // SAFETY: as for `read_field!`, and the page is writable.
        unsafe { addr_of_mut!((*$base).$($field)+).write_volatile($value) }
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

    /// Vault side: copies the HV's part of the page (header, key, requests, entries) into
    /// the caller's memory, every byte exactly once (8-byte volatile loads: byte-wise ones
    /// would cost the vault image hundreds of bytes). Everything after the copy works on the
    /// private value.
    pub fn snapshot_into(self, out: &mut core::mem::MaybeUninit<Batch>) -> &mut Batch {
        let words = out.as_mut_ptr().cast::<u64>();
        // SAFETY: the page is mapped (`new`'s contract); `Batch` starts the page.
        let shared = unsafe { addr_of!((*self.raw()).batch).cast::<u64>() };
        for i in 0..size_of::<Batch>() / 8 {
            // SAFETY: `i` words stay within `Batch` on both sides (its size is a multiple of
            // 8, asserted above); the source is read once, volatile.
            unsafe { words.add(i).write(shared.add(i).read_volatile()) };
        }
        // SAFETY: every byte was written, and `Batch` holds only integers and byte arrays,
        // for which every bit pattern is valid.
        unsafe { out.assume_init_mut() }
    }

    /// Vault side: overwrites the key bytes of the shared page with zeros.
    pub fn wipe_key(self) {
        // SAFETY: the field pointer is derived without creating a reference; the page is
        // mapped (`new`'s contract).
        let key = unsafe { addr_of_mut!((*self.raw()).batch.key) }.cast::<u64>();
        for i in 0..MAX_KEY_BYTES / 8 {
            // SAFETY: `i < MAX_KEY_BYTES / 8`: inside the key field, which sits at an 8-aligned
            // offset (layout asserts above); the page is writable.
            unsafe { key.add(i).write_volatile(0) };
        }
    }

    /// Vault side: publishes request `index`'s response (ignored beyond `MAX_BATCH`).
    pub fn write_response(self, index: usize, response: &Response) {
        if index < MAX_BATCH {
            write_field!(self.raw(), *response, responses[index]);
        }
    }

    /// Vault side: publishes the batch's answer (after every request's).
    pub fn write_batch_response(self, response: &BatchResponse) {
        write_field!(self.raw(), *response, batch_response);
    }

    /// HV side: writes the key field (zero-padded; `key` at most [`MAX_KEY_BYTES`]) straight
    /// from the caller's buffer, 8 bytes per store. The HV never builds the key elsewhere.
    pub fn write_key(self, key: &[u8]) {
        // SAFETY: the field pointer is derived without creating a reference; the page is
        // mapped and writable (`new`'s contract).
        let words = unsafe { addr_of_mut!((*self.raw()).batch.key) }.cast::<u64>();
        for i in 0..MAX_KEY_BYTES / 8 {
            let mut word = [0u8; 8];
            for (j, byte) in word.iter_mut().enumerate() {
                *byte = key.get(8 * i + j).copied().unwrap_or(0);
            }
            // SAFETY: `i < MAX_KEY_BYTES / 8`: inside the key field, at an 8-aligned offset
            // (layout asserts above).
            unsafe { words.add(i).write_volatile(u64::from_ne_bytes(word)) };
            // The stack copy of the key word is wiped.
            // SAFETY: a live local.
            unsafe { core::ptr::write_volatile(&mut word, [0; 8]) };
        }
    }

    /// HV side: writes request `index` (ignored beyond `MAX_BATCH`) and clears its response.
    pub fn write_request(self, index: usize, request: &Request) {
        if index < MAX_BATCH {
            write_field!(self.raw(), *request, batch.requests[index]);
            write_field!(self.raw(), Response::default(), responses[index]);
        }
    }

    /// HV side: writes entry `index` of the pool (ignored beyond `MAX_ENTRIES`).
    pub fn write_entry(self, index: usize, entry: &SgEntry) {
        if index < MAX_ENTRIES {
            write_field!(self.raw(), *entry, batch.entries[index]);
        }
    }

    /// HV side: posts the batch written so far: clears the batch's answer, then writes the
    /// header.
    pub fn write_header(self, header: &Header) {
        write_field!(self.raw(), BatchResponse::default(), batch_response);
        write_field!(self.raw(), *header, batch.header);
    }

    /// Tests and tools: posts a whole batch (every request slot, whatever the count, and its
    /// cleared response; entries; key; header last).
    pub fn post(self, batch: &Batch) {
        for (i, request) in batch.requests.iter().enumerate() {
            self.write_request(i, request);
        }
        for (i, entry) in batch.entries.iter().enumerate() {
            self.write_entry(i, entry);
        }
        self.write_key(&batch.key);
        self.write_header(&batch.header);
    }

    /// HV side: reads the batch's answer once.
    pub fn read_batch_response(self) -> BatchResponse {
        read_field!(self.raw(), batch_response)
    }

    /// HV side: reads request `index`'s response once (`index < MAX_BATCH`, else a zero
    /// response, which is no status).
    pub fn read_response(self, index: usize) -> Response {
        if index < MAX_BATCH {
            read_field!(self.raw(), responses[index])
        } else {
            Response::default()
        }
    }

    /// HV side: reads back the key bytes, to check that the vault wiped them.
    pub fn read_key(self) -> [u8; MAX_KEY_BYTES] {
        read_field!(self.raw(), batch.key)
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
        assert_eq!(Mode::try_from(5), Ok(Mode::CbcStreams));
        assert_eq!(Mode::try_from(6), Err(6));
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
        let mut batch = Batch::zeroed();
        batch.header = Header::new(7, 2);
        batch.requests[0] =
            Request { op: Op::Encrypt as u32, first_entry: 0, entry_count: 2, tweak_block: 9, ..Default::default() };
        batch.requests[1] = Request { op: Op::Decrypt as u32, first_entry: 2, entry_count: 1, ..Default::default() };
        batch.entries[0] = SgEntry { src: 0x1000, dst: 0x2000, len: 5, reserved_0x14: 0 };
        batch.entries[1] = SgEntry { src: 0x3000, dst: 0x3000, len: 11, reserved_0x14: 0 };
        batch.entries[2] = SgEntry { src: 9, dst: 9, len: 9, reserved_0x14: 0 };
        batch.key = [0xAA; MAX_KEY_BYTES];
        comm.post(&batch);
        assert_eq!(page.batch.key, [0xAA; MAX_KEY_BYTES]);
        assert_eq!((page.batch.header.magic, page.batch.header.version), (ABI_MAGIC, ABI_VERSION));
        let mut copy = core::mem::MaybeUninit::uninit();
        assert_eq!(*comm.snapshot_into(&mut copy), batch);
        comm.wipe_key();
        assert_eq!(comm.read_key(), [0; MAX_KEY_BYTES]);
        let response = Response { status: 1, bytes_done: 16, iv_out: [3; 16] };
        comm.write_response(1, &response);
        comm.write_batch_response(&BatchResponse { sequence: 7, status: 1, count: 2 });
        assert_eq!(comm.read_response(1), response);
        assert_eq!(comm.read_response(0), Response::default());
        assert_eq!(comm.read_batch_response(), BatchResponse { sequence: 7, status: 1, count: 2 });
        // Offsets from the layout in the module documentation, read as raw bytes.
        // SAFETY: the page is a live 4096-byte allocation.
        let bytes = unsafe { core::slice::from_raw_parts((&*page as *const CommBlock).cast::<u8>(), 4096) };
        assert_eq!(bytes[0x10], 2, "count at 0x10");
        assert!(bytes[0x18..0x58].iter().all(|&b| b == 0), "the key at 0x18..0x58, wiped");
        assert_eq!(bytes[0x58], Op::Encrypt as u8, "request 0 at 0x058");
        assert_eq!(bytes[0x58 + 0x30 + 0x10], 2, "request 1's first entry at 0x058 + 0x30 + 0x10");
        assert_eq!(bytes[0x358 + 24 + 1], 0x30, "entry 1's source at 0x358 + 24");
        assert_eq!(bytes[0x958], 7, "batch response at 0x958");
        assert_eq!(bytes[0x968 + 0x18 + 4], 16, "response 1's bytes done at 0x968 + 0x18 + 4");
        // A new post clears the answers it replaces.
        comm.post(&batch);
        assert_eq!(comm.read_batch_response(), BatchResponse::default());
        assert_eq!(comm.read_response(1), Response::default());
    }

    #[test]
    fn snapshot_copies_what_the_page_holds_whatever_the_count() {
        let mut page = Box::new(CommBlock::zeroed());
        page.batch.header.count = u64::MAX;
        page.batch.requests[MAX_BATCH - 1].entry_count = u32::MAX;
        page.batch.entries[MAX_ENTRIES - 1].len = 1;
        page.batch.key[63] = 0x5A;
        // SAFETY: the box is a live, aligned page for the whole test.
        let comm = unsafe { CommBlockPtr::new(NonNull::from(&mut *page)) };
        let mut copy = core::mem::MaybeUninit::uninit();
        let got = comm.snapshot_into(&mut copy);
        assert_eq!(got.header.count, u64::MAX);
        assert_eq!(got.requests[MAX_BATCH - 1].entry_count, u32::MAX);
        assert_eq!(got.entries[MAX_ENTRIES - 1].len, 1);
        assert_eq!(got.key[63], 0x5A);
        assert_eq!(comm.read_response(MAX_BATCH), Response::default());
    }
}
