//! The GHCB page and its valid bitmap.
//!
//! Layout: GHCB spec (AMD pub. 56421, rev. 2.02+), §2.6 "GHCB Layout", Table 3.
//! Offsets cross-checked against Linux `arch/x86/include/asm/svm.h`
//! (`struct ghcb_save_area`, `struct ghcb`) and COCONUT-SVSM
//! `kernel/src/sev/ghcb.rs`.

use core::fmt;
use core::mem::{align_of, offset_of, size_of};

/// Size of the GHCB: exactly one 4 KiB page.
pub const GHCB_PAGE_SIZE: usize = 4096;

/// Offset of the shared buffer inside the GHCB page.
pub const SHARED_BUFFER_OFFSET: usize = 0x800;

/// Size of the shared buffer (0x800..0xFF0).
pub const SHARED_BUFFER_SIZE: usize = 0x7F0;

/// Number of bits in the valid bitmap: one per quadword of 0x000..0x400.
pub const VALID_BITMAP_BITS: u32 = 128;

/// The GHCB page as the spec lays it out (GHCB spec §2.6, Table 3).
///
/// Only the fields the spec names are named; every gap is a `reserved_0x...`
/// field named by its offset so the struct can be read against the table line
/// by line. The fields are not public: a page shared with the other side is
/// only touched through [`crate::GhcbPtr`], which reads and writes single
/// fields with volatile accesses.
#[repr(C, align(4096))]
#[allow(
    dead_code,
    reason = "fields are reached through raw pointers and offsets, and reserved ones only hold the layout"
)]
pub struct GhcbPage {
    reserved_0x000: [u8; 0xCB],
    pub(crate) cpl: u8,
    reserved_0x0cc: [u8; 0x74],
    pub(crate) xss: u64,
    reserved_0x148: [u8; 0x18],
    pub(crate) dr7: u64,
    reserved_0x168: [u8; 0x90],
    pub(crate) rax: u64,
    reserved_0x200: [u8; 0x108],
    pub(crate) rcx: u64,
    pub(crate) rdx: u64,
    pub(crate) rbx: u64,
    reserved_0x320: [u8; 0x70],
    pub(crate) sw_exit_code: u64,
    pub(crate) sw_exit_info_1: u64,
    pub(crate) sw_exit_info_2: u64,
    pub(crate) sw_scratch: u64,
    reserved_0x3b0: [u8; 0x38],
    pub(crate) xcr0: u64,
    pub(crate) valid_bitmap: [u64; 2],
    pub(crate) x87_state_gpa: u64,
    reserved_0x408: [u8; 0x3F8],
    pub(crate) shared_buffer: [u8; SHARED_BUFFER_SIZE],
    reserved_0xff0: [u8; 0xA],
    pub(crate) protocol_version: u16,
    pub(crate) ghcb_usage: u32,
}

// GHCB spec §2.6, Table 3. Every field, reserved ones included, is pinned, so
// the fields lie back to back: the struct has no padding, which `as_bytes`
// relies on.
const _: () = {
    assert!(offset_of!(GhcbPage, reserved_0x000) == 0x000);
    assert!(offset_of!(GhcbPage, cpl) == 0x0CB);
    assert!(offset_of!(GhcbPage, reserved_0x0cc) == 0x0CC);
    assert!(offset_of!(GhcbPage, xss) == 0x140);
    assert!(offset_of!(GhcbPage, reserved_0x148) == 0x148);
    assert!(offset_of!(GhcbPage, dr7) == 0x160);
    assert!(offset_of!(GhcbPage, reserved_0x168) == 0x168);
    assert!(offset_of!(GhcbPage, rax) == 0x1F8);
    assert!(offset_of!(GhcbPage, reserved_0x200) == 0x200);
    assert!(offset_of!(GhcbPage, rcx) == 0x308);
    assert!(offset_of!(GhcbPage, rdx) == 0x310);
    assert!(offset_of!(GhcbPage, rbx) == 0x318);
    assert!(offset_of!(GhcbPage, reserved_0x320) == 0x320);
    assert!(offset_of!(GhcbPage, sw_exit_code) == 0x390);
    assert!(offset_of!(GhcbPage, sw_exit_info_1) == 0x398);
    assert!(offset_of!(GhcbPage, sw_exit_info_2) == 0x3A0);
    assert!(offset_of!(GhcbPage, sw_scratch) == 0x3A8);
    assert!(offset_of!(GhcbPage, reserved_0x3b0) == 0x3B0);
    assert!(offset_of!(GhcbPage, xcr0) == 0x3E8);
    assert!(offset_of!(GhcbPage, valid_bitmap) == 0x3F0);
    assert!(offset_of!(GhcbPage, x87_state_gpa) == 0x400);
    assert!(offset_of!(GhcbPage, reserved_0x408) == 0x408);
    assert!(offset_of!(GhcbPage, shared_buffer) == SHARED_BUFFER_OFFSET);
    assert!(offset_of!(GhcbPage, reserved_0xff0) == 0xFF0);
    assert!(offset_of!(GhcbPage, protocol_version) == 0xFFA);
    assert!(offset_of!(GhcbPage, ghcb_usage) == 0xFFC);
    assert!(size_of::<GhcbPage>() == GHCB_PAGE_SIZE);
    assert!(align_of::<GhcbPage>() == GHCB_PAGE_SIZE);
    // The bitmap covers exactly the quadwords below the x87 state GPA.
    assert!(offset_of!(GhcbPage, x87_state_gpa) / 8 == VALID_BITMAP_BITS as usize);
};
static_assertions::assert_eq_size!(GhcbPage, [u8; GHCB_PAGE_SIZE]);

impl GhcbPage {
    /// An all-zero page: empty valid bitmap, protocol version 0, usage 0.
    pub const fn zeroed() -> Self {
        Self {
            reserved_0x000: [0; 0xCB],
            cpl: 0,
            reserved_0x0cc: [0; 0x74],
            xss: 0,
            reserved_0x148: [0; 0x18],
            dr7: 0,
            reserved_0x168: [0; 0x90],
            rax: 0,
            reserved_0x200: [0; 0x108],
            rcx: 0,
            rdx: 0,
            rbx: 0,
            reserved_0x320: [0; 0x70],
            sw_exit_code: 0,
            sw_exit_info_1: 0,
            sw_exit_info_2: 0,
            sw_scratch: 0,
            reserved_0x3b0: [0; 0x38],
            xcr0: 0,
            valid_bitmap: [0; 2],
            x87_state_gpa: 0,
            reserved_0x408: [0; 0x3F8],
            shared_buffer: [0; SHARED_BUFFER_SIZE],
            reserved_0xff0: [0; 0xA],
            protocol_version: 0,
            ghcb_usage: 0,
        }
    }

    /// The page as raw bytes (for a private copy, not for the shared page).
    pub fn as_bytes(&self) -> &[u8; GHCB_PAGE_SIZE] {
        // SAFETY: `GhcbPage` is `repr(C)`, GHCB_PAGE_SIZE bytes long and has no
        // padding (the layout block pins every field back to back), so all its
        // bytes are initialized; `[u8; N]` has alignment 1; the borrow of
        // `self` bounds the returned reference.
        unsafe { &*(self as *const Self).cast::<[u8; GHCB_PAGE_SIZE]>() }
    }

    /// The page as mutable raw bytes, e.g. to fill a private page from a
    /// byte buffer in tests and fuzz targets.
    pub fn as_bytes_mut(&mut self) -> &mut [u8; GHCB_PAGE_SIZE] {
        // SAFETY: as in `as_bytes`; in addition every field is an integer or an
        // array of integers, so any byte pattern written through the returned
        // reference leaves a valid `GhcbPage`.
        unsafe { &mut *(self as *mut Self).cast::<[u8; GHCB_PAGE_SIZE]>() }
    }
}

/// A save-area field that has a bit in the valid bitmap.
///
/// The x87 state GPA (0x400) and everything above lie outside the 128-bit
/// bitmap, so they are not listed here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GhcbField {
    /// CPL, 1 byte at 0x0CB.
    Cpl,
    /// XSS at 0x140.
    Xss,
    /// DR7 at 0x160.
    Dr7,
    /// RAX at 0x1F8.
    Rax,
    /// RCX at 0x308.
    Rcx,
    /// RDX at 0x310.
    Rdx,
    /// RBX at 0x318.
    Rbx,
    /// SW_EXITCODE at 0x390.
    SwExitCode,
    /// SW_EXITINFO1 at 0x398.
    SwExitInfo1,
    /// SW_EXITINFO2 at 0x3A0.
    SwExitInfo2,
    /// SW_SCRATCH at 0x3A8.
    SwScratch,
    /// XCR0 at 0x3E8.
    Xcr0,
}

impl GhcbField {
    /// Every field, in offset order.
    pub const ALL: [GhcbField; 12] = [
        Self::Cpl,
        Self::Xss,
        Self::Dr7,
        Self::Rax,
        Self::Rcx,
        Self::Rdx,
        Self::Rbx,
        Self::SwExitCode,
        Self::SwExitInfo1,
        Self::SwExitInfo2,
        Self::SwScratch,
        Self::Xcr0,
    ];

    /// Byte offset of the field in the GHCB page.
    pub const fn offset(self) -> usize {
        match self {
            Self::Cpl => offset_of!(GhcbPage, cpl),
            Self::Xss => offset_of!(GhcbPage, xss),
            Self::Dr7 => offset_of!(GhcbPage, dr7),
            Self::Rax => offset_of!(GhcbPage, rax),
            Self::Rcx => offset_of!(GhcbPage, rcx),
            Self::Rdx => offset_of!(GhcbPage, rdx),
            Self::Rbx => offset_of!(GhcbPage, rbx),
            Self::SwExitCode => offset_of!(GhcbPage, sw_exit_code),
            Self::SwExitInfo1 => offset_of!(GhcbPage, sw_exit_info_1),
            Self::SwExitInfo2 => offset_of!(GhcbPage, sw_exit_info_2),
            Self::SwScratch => offset_of!(GhcbPage, sw_scratch),
            Self::Xcr0 => offset_of!(GhcbPage, xcr0),
        }
    }

    /// The field's bit in the valid bitmap: its offset / 8.
    pub const fn valid_bit(self) -> u32 {
        // Cannot fail: every field lies below 0x400 (asserted below).
        (self.offset() / 8) as u32
    }

    /// The spec's name of the field.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Cpl => "CPL",
            Self::Xss => "XSS",
            Self::Dr7 => "DR7",
            Self::Rax => "RAX",
            Self::Rcx => "RCX",
            Self::Rdx => "RDX",
            Self::Rbx => "RBX",
            Self::SwExitCode => "SW_EXITCODE",
            Self::SwExitInfo1 => "SW_EXITINFO1",
            Self::SwExitInfo2 => "SW_EXITINFO2",
            Self::SwScratch => "SW_SCRATCH",
            Self::Xcr0 => "XCR0",
        }
    }
}

const _: () = {
    let mut i = 0;
    while i < GhcbField::ALL.len() {
        assert!(valid_bit_for_offset(GhcbField::ALL[i].offset()).is_some());
        i += 1;
    }
};

impl fmt::Display for GhcbField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The valid-bitmap bit for a byte offset in the GHCB (offset / 8), or `None`
/// if the offset lies outside the bitmap's range (0x000..0x400).
pub const fn valid_bit_for_offset(offset: usize) -> Option<u32> {
    let bit = offset / 8;
    if bit < VALID_BITMAP_BITS as usize {
        Some(bit as u32)
    } else {
        None
    }
}

/// The 16-byte valid bitmap at 0x3F0: bit n says "the quadword at n * 8
/// holds a value for this event". Bit n lives in word n / 64, bit n % 64.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ValidBitmap(u128);

impl ValidBitmap {
    /// No field valid.
    pub const EMPTY: Self = Self(0);

    /// The bitmap from its two in-page quadwords (0x3F0, 0x3F8).
    pub const fn from_words(words: [u64; 2]) -> Self {
        Self(words[0] as u128 | (words[1] as u128) << 64)
    }

    /// The two in-page quadwords (0x3F0, 0x3F8).
    pub const fn to_words(self) -> [u64; 2] {
        [self.0 as u64, (self.0 >> 64) as u64]
    }

    /// The raw 128 bits.
    pub const fn bits(self) -> u128 {
        self.0
    }

    /// Whether bit `bit` is set; bits at or past 128 are never set.
    pub const fn is_bit_set(self, bit: u32) -> bool {
        bit < VALID_BITMAP_BITS && self.0 & (1u128 << bit) != 0
    }

    /// Whether `field` is marked valid.
    pub const fn contains(self, field: GhcbField) -> bool {
        self.is_bit_set(field.valid_bit())
    }

    /// This bitmap with `field` marked valid.
    #[must_use]
    pub const fn with(self, field: GhcbField) -> Self {
        Self(self.0 | 1u128 << field.valid_bit())
    }

    /// This bitmap with every field of `fields` marked valid.
    #[must_use]
    pub const fn with_all(self, fields: &[GhcbField]) -> Self {
        let mut bitmap = self;
        let mut i = 0;
        while i < fields.len() {
            bitmap = bitmap.with(fields[i]);
            i += 1;
        }
        bitmap
    }

    /// The first field of `required` that is not marked valid.
    pub const fn first_missing(self, required: &[GhcbField]) -> Option<GhcbField> {
        let mut i = 0;
        while i < required.len() {
            if !self.contains(required[i]) {
                return Some(required[i]);
            }
            i += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_offsets_match_spec_table() {
        let expected = [
            (GhcbField::Cpl, 0x0CB),
            (GhcbField::Xss, 0x140),
            (GhcbField::Dr7, 0x160),
            (GhcbField::Rax, 0x1F8),
            (GhcbField::Rcx, 0x308),
            (GhcbField::Rdx, 0x310),
            (GhcbField::Rbx, 0x318),
            (GhcbField::SwExitCode, 0x390),
            (GhcbField::SwExitInfo1, 0x398),
            (GhcbField::SwExitInfo2, 0x3A0),
            (GhcbField::SwScratch, 0x3A8),
            (GhcbField::Xcr0, 0x3E8),
        ];
        for (field, offset) in expected {
            assert_eq!(field.offset(), offset, "{field}");
        }
        assert_eq!(offset_of!(GhcbPage, valid_bitmap), 0x3F0);
        assert_eq!(offset_of!(GhcbPage, x87_state_gpa), 0x400);
        assert_eq!(offset_of!(GhcbPage, shared_buffer), 0x800);
        assert_eq!(offset_of!(GhcbPage, protocol_version), 0xFFA);
        assert_eq!(offset_of!(GhcbPage, ghcb_usage), 0xFFC);
        assert_eq!(size_of::<GhcbPage>(), 4096);
        assert_eq!(align_of::<GhcbPage>(), 4096);
    }

    #[test]
    fn all_lists_every_field_in_offset_order() {
        let offsets = GhcbField::ALL.map(GhcbField::offset);
        assert!(offsets.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn valid_bits_are_offset_over_eight() {
        assert_eq!(GhcbField::Cpl.valid_bit(), 25);
        assert_eq!(GhcbField::Rax.valid_bit(), 63);
        assert_eq!(GhcbField::Rcx.valid_bit(), 97);
        assert_eq!(GhcbField::SwExitCode.valid_bit(), 114);
        assert_eq!(GhcbField::SwExitInfo1.valid_bit(), 115);
        assert_eq!(GhcbField::SwExitInfo2.valid_bit(), 116);
        assert_eq!(GhcbField::Xcr0.valid_bit(), 125);
    }

    #[test]
    fn valid_bit_for_offset_rejects_offsets_past_the_bitmap() {
        assert_eq!(valid_bit_for_offset(0), Some(0));
        assert_eq!(valid_bit_for_offset(0x3FF), Some(127));
        assert_eq!(valid_bit_for_offset(0x400), None);
        assert_eq!(valid_bit_for_offset(usize::MAX), None);
    }

    #[test]
    fn bitmap_words_put_bit_n_in_word_n_div_64() {
        let bitmap = ValidBitmap::EMPTY.with(GhcbField::Rax).with(GhcbField::SwExitCode);
        assert_eq!(bitmap.to_words(), [1 << 63, 1 << (114 - 64)]);
        assert_eq!(ValidBitmap::from_words(bitmap.to_words()), bitmap);
        assert!(bitmap.contains(GhcbField::Rax));
        assert!(bitmap.contains(GhcbField::SwExitCode));
        assert!(!bitmap.contains(GhcbField::Cpl));
    }

    #[test]
    fn is_bit_set_is_false_past_128() {
        let all = ValidBitmap::from_words([u64::MAX, u64::MAX]);
        assert!(all.is_bit_set(127));
        assert!(!all.is_bit_set(128));
        assert!(!all.is_bit_set(u32::MAX));
    }

    #[test]
    fn first_missing_reports_in_required_order() {
        let required = [GhcbField::Rax, GhcbField::Cpl, GhcbField::SwExitCode];
        assert_eq!(ValidBitmap::EMPTY.first_missing(&required), Some(GhcbField::Rax));
        let some = ValidBitmap::EMPTY.with(GhcbField::Rax);
        assert_eq!(some.first_missing(&required), Some(GhcbField::Cpl));
        let all = ValidBitmap::EMPTY.with_all(&required);
        assert_eq!(all.first_missing(&required), None);
    }

    #[test]
    fn zeroed_page_is_all_zero_bytes() {
        let page = Box::new(GhcbPage::zeroed());
        assert!(page.as_bytes().iter().all(|&b| b == 0));
    }

    #[test]
    fn as_bytes_mut_writes_land_at_spec_offsets() {
        let mut page = Box::new(GhcbPage::zeroed());
        let bytes = page.as_bytes_mut();
        bytes[0x1F8..0x200].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        bytes[0x0CB] = 3;
        bytes[0xFFA..0xFFC].copy_from_slice(&2u16.to_le_bytes());
        assert_eq!(page.rax, 0x1122_3344_5566_7788);
        assert_eq!(page.cpl, 3);
        assert_eq!(page.protocol_version, 2);
    }
}
