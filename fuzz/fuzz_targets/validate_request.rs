//! Fuzzes the vault's request validator with arbitrary comm-block contents: it must never
//! panic, and whatever it accepts must keep the promises the vault relies on.
//!
//! Input: byte 0 steers (see below), the rest = the comm page as the host wrote it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sevault_abi::comm::{CommBlock, CommBlockPtr};
use sevault_abi::memory_map::HOST_WINDOW_SIZE;
use sevault_abi::validate::{validate, ValidRequest};
use sevault_abi::{Mode, AES_BLOCK, MAX_BYTES_PER_EXIT};

fuzz_target!(|data: &[u8]| {
    let (steer, page_bytes) = data.split_first().map_or((0, data), |(s, rest)| (*s, rest));
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
    // The steering byte gets the fuzzer past the checks it cannot guess: bit 7 = a correct
    // header, bit 6 = a small entry count (so that entries get checked), bits 0-2 = a mode
    // (1-4) and a key length (16/24/32).
    if steer & 0x80 != 0 {
        page.header.magic = sevault_abi::ABI_MAGIC;
        page.header.version = sevault_abi::ABI_VERSION;
    }
    if steer & 0x40 != 0 {
        page.request.entry_count %= 8;
        page.request.mode = u32::from(steer & 3) + 1;
        page.request.key_len = [16, 24, 32, 16][usize::from(steer >> 2 & 3)];
    }
    // SAFETY: the box is a live, aligned page for the rest of this function.
    let comm = unsafe { CommBlockPtr::new(core::ptr::NonNull::from(&mut *page)) };
    let (header, request) = comm.snapshot();
    match validate(&header, &request) {
        Ok(ValidRequest::Crypt(crypt)) => {
            let entries = crypt.entries.as_slice();
            let sum: u64 = entries.iter().map(|e| u64::from(e.len)).sum();
            assert_eq!(sum, u64::from(crypt.total_len));
            assert!(crypt.total_len > 0 && crypt.total_len <= MAX_BYTES_PER_EXIT);
            let partial = crypt.total_len as usize % AES_BLOCK;
            match crypt.mode {
                Mode::Ecb | Mode::Cbc => assert_eq!(partial, 0),
                Mode::Ctr => assert_eq!(crypt.entries.tail_len(), partial),
                Mode::Xts => {
                    assert!(crypt.total_len as usize >= AES_BLOCK);
                    assert_eq!(crypt.entries.tail_len(), if partial == 0 { 0 } else { AES_BLOCK + partial });
                }
            }
            assert_eq!(crypt.key.xts, crypt.mode == Mode::Xts);
            assert!(crypt.tweak_block == 0 || crypt.mode == Mode::Xts);
            let (last, whole) = entries.split_last().expect("at least one entry");
            assert!(whole.iter().all(|e| e.len as usize % AES_BLOCK == 0), "blocks never straddle entries");
            assert!(last.len as usize >= crypt.entries.tail_len(), "the tail sits in the last entry");
            for e in entries {
                assert!(e.len > 0);
                assert!(e.src.checked_add(u64::from(e.len)).is_some_and(|end| end <= HOST_WINDOW_SIZE));
                assert!(e.dst.checked_add(u64::from(e.len)).is_some_and(|end| end <= HOST_WINDOW_SIZE));
            }
        }
        Ok(ValidRequest::SetKey { key, bytes, .. }) => assert_eq!(bytes.len(), key.bytes()),
        Ok(ValidRequest::ClearKey { .. }) | Err(_) => {}
    }
});
