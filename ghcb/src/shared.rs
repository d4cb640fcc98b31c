//! Access to a GHCB page shared with the other side.
//!
//! The other side may write the page at any time, so it is hostile memory:
//! no `&`/`&mut` reference to it is ever made, every access is a volatile
//! read or write of one field, and a reader copies the fields it needs once
//! into a [`GhcbSnapshot`] before validating and using them.

use core::marker::PhantomData;
use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile, NonNull};

use crate::exit_code::SwExitCode;
use crate::layout::{GhcbPage, ValidBitmap};

/// A private copy of the GHCB fields the NAE events of this crate use, each
/// read once from the shared page. Plain data: decoders take it, so they can
/// be tested and fuzzed without a page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GhcbSnapshot {
    /// Valid bitmap (0x3F0).
    pub valid_bitmap: ValidBitmap,
    /// CPL (0x0CB).
    pub cpl: u8,
    /// RAX (0x1F8).
    pub rax: u64,
    /// SW_EXITCODE (0x390).
    pub sw_exit_code: SwExitCode,
    /// SW_EXITINFO1 (0x398).
    pub sw_exit_info_1: u64,
    /// SW_EXITINFO2 (0x3A0).
    pub sw_exit_info_2: u64,
    /// Protocol version (0xFFA).
    pub protocol_version: u16,
    /// GHCB usage (0xFFC).
    pub ghcb_usage: u32,
}

/// A pointer to a GHCB page that may be written concurrently by the other
/// side; every method is a volatile access of single fields.
pub struct GhcbPtr<'a> {
    page: NonNull<GhcbPage>,
    _page: PhantomData<&'a GhcbPage>,
}

/// Volatile read of one field of the page behind a `GhcbPtr`.
macro_rules! read_field {
    ($ghcb:expr, $($field:tt)+) => {{
        let page: *const GhcbPage = $ghcb.page.as_ptr();
        // SAFETY: `GhcbPtr`'s invariant makes `page` aligned and valid for
        // reads of a whole `GhcbPage` for `'a`; `addr_of!` makes no reference;
        // the field is an integer, so whatever the other side wrote is a
        // valid value.
        unsafe { read_volatile(addr_of!((*page).$($field)+)) }
    }};
}

/// Volatile write of one field of the page behind a `GhcbPtr`.
macro_rules! write_field {
    ($ghcb:expr, $value:expr, $($field:tt)+) => {{
        let page: *mut GhcbPage = $ghcb.page.as_ptr();
        let value = $value;
        // SAFETY: `GhcbPtr`'s invariant makes `page` aligned and valid for
        // writes of a whole `GhcbPage` for `'a`; `addr_of_mut!` makes no
        // reference.
        unsafe { write_volatile(addr_of_mut!((*page).$($field)+), value) }
    }};
}

impl<'a> GhcbPtr<'a> {
    /// Wraps the shared GHCB page at `page`.
    ///
    /// # Safety
    ///
    /// For all of `'a`:
    /// - `page` points to a 4 KiB-aligned GHCB page that is mapped and valid
    ///   for reads and writes of `size_of::<GhcbPage>()` bytes;
    /// - no Rust reference (`&` or `&mut`) to that memory is used.
    ///
    /// The other side (guest or hypervisor) may write the page concurrently:
    /// that is allowed, and is why this type only makes volatile accesses and
    /// its readers validate what they read.
    pub unsafe fn new(page: NonNull<GhcbPage>) -> Self {
        Self { page, _page: PhantomData }
    }

    /// Wraps a page this side owns exclusively (tests, fuzzing, or a page
    /// before it is shared).
    pub fn from_exclusive(page: &'a mut GhcbPage) -> Self {
        Self { page: NonNull::from(page), _page: PhantomData }
    }

    /// The page's address (e.g. to translate it to the GPA given to the
    /// GHCB MSR).
    pub fn as_ptr(&self) -> *mut GhcbPage {
        self.page.as_ptr()
    }

    /// Copies the fields of [`GhcbSnapshot`], each read exactly once.
    pub fn snapshot(&self) -> GhcbSnapshot {
        GhcbSnapshot {
            valid_bitmap: self.valid_bitmap(),
            cpl: self.cpl(),
            rax: self.rax(),
            sw_exit_code: self.sw_exit_code(),
            sw_exit_info_1: self.sw_exit_info_1(),
            sw_exit_info_2: self.sw_exit_info_2(),
            protocol_version: self.protocol_version(),
            ghcb_usage: self.ghcb_usage(),
        }
    }

    /// Reads the valid bitmap (two volatile quadword reads).
    pub fn valid_bitmap(&self) -> ValidBitmap {
        let low = read_field!(self, valid_bitmap[0]);
        let high = read_field!(self, valid_bitmap[1]);
        ValidBitmap::from_words([low, high])
    }

    /// Writes the valid bitmap (two volatile quadword writes).
    pub fn set_valid_bitmap(&self, bitmap: ValidBitmap) {
        let [low, high] = bitmap.to_words();
        write_field!(self, low, valid_bitmap[0]);
        write_field!(self, high, valid_bitmap[1]);
    }

    /// Reads CPL.
    pub fn cpl(&self) -> u8 {
        read_field!(self, cpl)
    }

    /// Writes CPL (does not touch the valid bitmap).
    pub fn set_cpl(&self, cpl: u8) {
        write_field!(self, cpl, cpl);
    }

    /// Reads RAX.
    pub fn rax(&self) -> u64 {
        read_field!(self, rax)
    }

    /// Writes RAX (does not touch the valid bitmap).
    pub fn set_rax(&self, rax: u64) {
        write_field!(self, rax, rax);
    }

    /// Reads RBX.
    pub fn rbx(&self) -> u64 {
        read_field!(self, rbx)
    }

    /// Writes RBX (does not touch the valid bitmap).
    pub fn set_rbx(&self, rbx: u64) {
        write_field!(self, rbx, rbx);
    }

    /// Reads RCX.
    pub fn rcx(&self) -> u64 {
        read_field!(self, rcx)
    }

    /// Writes RCX (does not touch the valid bitmap).
    pub fn set_rcx(&self, rcx: u64) {
        write_field!(self, rcx, rcx);
    }

    /// Reads RDX.
    pub fn rdx(&self) -> u64 {
        read_field!(self, rdx)
    }

    /// Writes RDX (does not touch the valid bitmap).
    pub fn set_rdx(&self, rdx: u64) {
        write_field!(self, rdx, rdx);
    }

    /// Reads SW_EXITCODE.
    pub fn sw_exit_code(&self) -> SwExitCode {
        SwExitCode(read_field!(self, sw_exit_code))
    }

    /// Writes SW_EXITCODE (does not touch the valid bitmap).
    pub fn set_sw_exit_code(&self, code: SwExitCode) {
        write_field!(self, code.0, sw_exit_code);
    }

    /// Reads SW_EXITINFO1.
    pub fn sw_exit_info_1(&self) -> u64 {
        read_field!(self, sw_exit_info_1)
    }

    /// Writes SW_EXITINFO1 (does not touch the valid bitmap).
    pub fn set_sw_exit_info_1(&self, info: u64) {
        write_field!(self, info, sw_exit_info_1);
    }

    /// Reads SW_EXITINFO2.
    pub fn sw_exit_info_2(&self) -> u64 {
        read_field!(self, sw_exit_info_2)
    }

    /// Writes SW_EXITINFO2 (does not touch the valid bitmap).
    pub fn set_sw_exit_info_2(&self, info: u64) {
        write_field!(self, info, sw_exit_info_2);
    }

    /// Reads SW_SCRATCH.
    pub fn sw_scratch(&self) -> u64 {
        read_field!(self, sw_scratch)
    }

    /// Writes SW_SCRATCH (does not touch the valid bitmap).
    pub fn set_sw_scratch(&self, scratch: u64) {
        write_field!(self, scratch, sw_scratch);
    }

    /// Reads the protocol version.
    pub fn protocol_version(&self) -> u16 {
        read_field!(self, protocol_version)
    }

    /// Writes the protocol version.
    pub fn set_protocol_version(&self, version: u16) {
        write_field!(self, version, protocol_version);
    }

    /// Reads the GHCB usage.
    pub fn ghcb_usage(&self) -> u32 {
        read_field!(self, ghcb_usage)
    }

    /// Writes the GHCB usage.
    pub fn set_ghcb_usage(&self, usage: u32) {
        write_field!(self, usage, ghcb_usage);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::GhcbField;

    #[test]
    fn accessors_hit_spec_offsets() {
        let mut page = Box::new(GhcbPage::zeroed());
        {
            let ghcb = GhcbPtr::from_exclusive(&mut page);
            ghcb.set_cpl(0x5A);
            ghcb.set_rax(0x0101_0101_0101_01A0);
            ghcb.set_rbx(0xB);
            ghcb.set_rcx(0xC);
            ghcb.set_rdx(0xD);
            ghcb.set_sw_exit_code(SwExitCode::VMMCALL);
            ghcb.set_sw_exit_info_1(0x1111);
            ghcb.set_sw_exit_info_2(0x2222);
            ghcb.set_sw_scratch(0x3333);
            ghcb.set_protocol_version(2);
            ghcb.set_ghcb_usage(0x4444_4444);
            ghcb.set_valid_bitmap(ValidBitmap::EMPTY.with(GhcbField::SwExitCode));
        }
        let bytes = page.as_bytes();
        let qword = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        assert_eq!(bytes[0x0CB], 0x5A);
        assert_eq!(qword(0x1F8), 0x0101_0101_0101_01A0);
        assert_eq!(qword(0x318), 0xB);
        assert_eq!(qword(0x308), 0xC);
        assert_eq!(qword(0x310), 0xD);
        assert_eq!(qword(0x390), 0x81);
        assert_eq!(qword(0x398), 0x1111);
        assert_eq!(qword(0x3A0), 0x2222);
        assert_eq!(qword(0x3A8), 0x3333);
        assert_eq!(qword(0x3F0), 0);
        assert_eq!(qword(0x3F8), 1 << (114 - 64));
        assert_eq!(bytes[0xFFA..0xFFC], 2u16.to_le_bytes());
        assert_eq!(bytes[0xFFC..], 0x4444_4444u32.to_le_bytes());
    }

    #[test]
    fn snapshot_copies_every_field() {
        let mut page = Box::new(GhcbPage::zeroed());
        let ghcb = GhcbPtr::from_exclusive(&mut page);
        let bitmap = ValidBitmap::from_words([0x1234, 0x5678]);
        ghcb.set_valid_bitmap(bitmap);
        ghcb.set_cpl(3);
        ghcb.set_rax(4);
        ghcb.set_sw_exit_code(SwExitCode(5));
        ghcb.set_sw_exit_info_1(6);
        ghcb.set_sw_exit_info_2(7);
        ghcb.set_protocol_version(8);
        ghcb.set_ghcb_usage(9);
        assert_eq!(
            ghcb.snapshot(),
            GhcbSnapshot {
                valid_bitmap: bitmap,
                cpl: 3,
                rax: 4,
                sw_exit_code: SwExitCode(5),
                sw_exit_info_1: 6,
                sw_exit_info_2: 7,
                protocol_version: 8,
                ghcb_usage: 9,
            }
        );
    }

    #[test]
    fn raw_pointer_constructor_sees_the_same_page() {
        let page = Box::into_raw(Box::new(GhcbPage::zeroed()));
        let page = NonNull::new(page).unwrap();
        {
            // SAFETY: `page` comes from a live Box (aligned, 4 KiB) that no
            // reference touches until it is freed below, after `ghcb` is gone.
            let ghcb = unsafe { GhcbPtr::new(page) };
            ghcb.set_rax(42);
            assert_eq!(ghcb.rax(), 42);
            assert_eq!(ghcb.as_ptr(), page.as_ptr());
        }
        // SAFETY: `page` came from `Box::into_raw` above and is freed once.
        let page = unsafe { Box::from_raw(page.as_ptr()) };
        assert_eq!(page.as_bytes()[0x1F8], 42);
    }
}
