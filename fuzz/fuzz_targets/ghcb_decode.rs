//! Everything in `sevault-ghcb` that reads the other side's data, fed
//! arbitrary bytes: the GHCB MSR protocol decoders, the VMMCALL event and
//! result decoders on a compact snapshot, and the same decoders reached
//! through a whole GHCB page. None may panic; what they accept must be
//! consistent with what the encoders produce.
//!
//! Input: bytes 0..8 = an MSR value, 8..63 = a compact snapshot, byte 63 =
//! mode, the rest = raw page bytes. The page is filled from the raw bytes
//! and, in one mode, the snapshot's fields are then written over it through
//! `GhcbPtr` (so the fuzzer reaches deep checks without 4 KiB inputs); in the
//! other the raw bytes alone describe the page.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sevault_ghcb::msr::{MsrRequest, MsrResponse};
use sevault_ghcb::{
    GhcbError, GhcbPage, GhcbPtr, GhcbSnapshot, SwExitCode, ValidBitmap, VmmcallEvent,
    VmmcallResult, GHCB_PAGE_SIZE,
};

/// Reads `N` bytes from `data` at `*at`, zero-filled past its end.
fn take<const N: usize>(data: &[u8], at: &mut usize) -> [u8; N] {
    let mut out = [0u8; N];
    let start = (*at).min(data.len());
    let end = (*at + N).min(data.len());
    out[..end - start].copy_from_slice(&data[start..end]);
    *at += N;
    out
}

fn check_msr(value: u64) {
    if let Ok(request) = MsrRequest::try_from(value) {
        assert_eq!(request.encode(), value, "{request:?}");
    }
    if let Ok(response) = MsrResponse::try_from(value) {
        assert_eq!(response.encode(), value, "{response:?}");
    }
}

fn check_snapshot(snapshot: &GhcbSnapshot) {
    if let Ok(event) = VmmcallEvent::decode(snapshot) {
        // Only the exact spec event is accepted.
        assert_eq!(snapshot.ghcb_usage, 0);
        assert_eq!(snapshot.protocol_version, 2);
        assert_eq!(snapshot.sw_exit_code, SwExitCode::VMMCALL);
        assert_eq!(snapshot.cpl, 0);
        assert_eq!((snapshot.sw_exit_info_1, snapshot.sw_exit_info_2), (0, 0));
        assert_eq!(event.rax, snapshot.rax);
    }
    if let Ok(result) = VmmcallResult::decode(snapshot) {
        assert_eq!(snapshot.sw_exit_info_1, 0);
        assert_eq!(result.rax, snapshot.rax);
    }
}

fn check_page(raw: &[u8], overlay: Option<&GhcbSnapshot>) {
    let mut page = Box::new(GhcbPage::zeroed());
    let len = raw.len().min(GHCB_PAGE_SIZE);
    page.as_bytes_mut()[..len].copy_from_slice(&raw[..len]);
    let ghcb = GhcbPtr::from_exclusive(&mut page);
    if let Some(fields) = overlay {
        ghcb.set_valid_bitmap(fields.valid_bitmap);
        ghcb.set_cpl(fields.cpl);
        ghcb.set_rax(fields.rax);
        ghcb.set_sw_exit_code(fields.sw_exit_code);
        ghcb.set_sw_exit_info_1(fields.sw_exit_info_1);
        ghcb.set_sw_exit_info_2(fields.sw_exit_info_2);
        ghcb.set_protocol_version(fields.protocol_version);
        ghcb.set_ghcb_usage(fields.ghcb_usage);
    }

    let snapshot = ghcb.snapshot();
    if let Some(fields) = overlay {
        assert_eq!(&snapshot, fields);
    }
    check_snapshot(&snapshot);
    let event = ghcb.read_vmmcall_event();
    assert_eq!(event, VmmcallEvent::decode(&snapshot));
    assert_eq!(ghcb.read_vmmcall_result(), VmmcallResult::decode(&snapshot));

    // Whatever the guest wrote, the hypervisor's reply must reach the guest
    // as exactly what it meant.
    match event {
        Ok(event) => {
            ghcb.write_vmmcall_result(!event.rax);
            assert_eq!(ghcb.read_vmmcall_result().map(|r| r.rax), Ok(!event.rax));
        }
        Err(error) => {
            ghcb.write_vmmcall_error(&error);
            assert!(matches!(
                ghcb.read_vmmcall_result(),
                Err(GhcbError::HypervisorError { exit_info_1: 2, .. })
            ));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    check_msr(u64::from_le_bytes(take(data, &mut at)));

    let snapshot = GhcbSnapshot {
        valid_bitmap: ValidBitmap::from_words([
            u64::from_le_bytes(take(data, &mut at)),
            u64::from_le_bytes(take(data, &mut at)),
        ]),
        cpl: take::<1>(data, &mut at)[0],
        rax: u64::from_le_bytes(take(data, &mut at)),
        sw_exit_code: SwExitCode(u64::from_le_bytes(take(data, &mut at))),
        sw_exit_info_1: u64::from_le_bytes(take(data, &mut at)),
        sw_exit_info_2: u64::from_le_bytes(take(data, &mut at)),
        protocol_version: u16::from_le_bytes(take(data, &mut at)),
        ghcb_usage: u32::from_le_bytes(take(data, &mut at)),
    };
    check_snapshot(&snapshot);

    let overlay = take::<1>(data, &mut at)[0] & 1 == 0;
    let raw = data.get(at..).unwrap_or_default();
    check_page(raw, overlay.then_some(&snapshot));
});
