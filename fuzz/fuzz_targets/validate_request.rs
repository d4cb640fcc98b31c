//! Fuzzes the vault's request validator with arbitrary comm-block contents: it must never
//! panic, and whatever it accepts must keep the promises the vault relies on.
//!
//! Input: bytes 0..4 = the key lengths four slots hold (byte 0's top bits steer, see
//! below), the rest = the comm page as the host wrote it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sevault_abi::comm::{CommBlock, CommBlockPtr};
use sevault_abi::memory_map::HOST_WINDOW_SIZE;
use sevault_abi::validate::{validate, KeySlotIndex, KeySlots, ValidRequest};
use sevault_abi::{KeyLen, AES_BLOCK, MAX_BYTES_PER_EXIT};

/// Slot `i` holds a key whose length the fuzzer chose (or nothing).
struct FuzzSlots([u8; 4]);

impl KeySlots for FuzzSlots {
    fn key_len(&self, slot: KeySlotIndex) -> Option<KeyLen> {
        KeyLen::try_from(u32::from(self.0[slot.get() as usize % 4])).ok()
    }
}

fuzz_target!(|data: &[u8]| {
    let (slots, page_bytes) = data.split_at(data.len().min(4));
    let mut slot_lens = [0u8; 4];
    slot_lens[..slots.len()].copy_from_slice(slots);
    let mut page = Box::new(CommBlock::zeroed());
    // Fill the whole page from the input, the way a hostile host can.
    // SAFETY: `CommBlock` is plain integers and byte arrays; every bit pattern is valid, and
    // the slice covers exactly the boxed page.
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(
            (&mut *page as *mut CommBlock).cast::<u8>(),
            core::mem::size_of::<CommBlock>(),
        )
    };
    for (dst, src) in bytes.iter_mut().zip(page_bytes) {
        *dst = *src;
    }
    // Byte 0 of the slot lengths steers the fuzzer past the checks it cannot guess: bit 7 =
    // a correct header, bit 6 = a small entry count (so that entries get checked).
    if slot_lens[0] & 0x80 != 0 {
        page.header.magic = sevault_abi::ABI_MAGIC;
        page.header.version = sevault_abi::ABI_VERSION;
    }
    if slot_lens[0] & 0x40 != 0 {
        page.request.entry_count %= 8;
    }
    // SAFETY: the box is a live, aligned page for the rest of this function.
    let comm = unsafe { CommBlockPtr::new(core::ptr::NonNull::from(&mut *page)) };
    let (header, request) = comm.snapshot();
    let slots = FuzzSlots([
        slot_lens[0] & 0x3f,
        slot_lens[1] & 0x3f,
        slot_lens[2] & 0x3f,
        slot_lens[3] & 0x3f,
    ]);
    match validate(&header, &request, &slots) {
        Ok(ValidRequest::Crypt(crypt)) => {
            let entries = crypt.entries.as_slice();
            let sum: u64 = entries.iter().map(|e| u64::from(e.len)).sum();
            assert_eq!(sum, u64::from(crypt.total_len));
            assert!(crypt.total_len > 0 && crypt.total_len % AES_BLOCK as u32 == 0);
            assert!(crypt.total_len <= MAX_BYTES_PER_EXIT);
            for e in entries {
                assert!(e.len > 0);
                assert!(e
                    .src
                    .checked_add(u64::from(e.len))
                    .is_some_and(|end| end <= HOST_WINDOW_SIZE));
                assert!(e
                    .dst
                    .checked_add(u64::from(e.len))
                    .is_some_and(|end| end <= HOST_WINDOW_SIZE));
            }
            assert_eq!(slots.key_len(crypt.slot), Some(crypt.key_len));
        }
        Ok(ValidRequest::SetKey { key_len, key, .. }) => assert_eq!(key.len(), key_len.bytes()),
        Ok(ValidRequest::ClearKey { .. }) | Err(_) => {}
    }
});
