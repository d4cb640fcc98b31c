//! The vault image: entry point, main loop and exit path of a vault vCPU.
//!
//! Built only for `x86_64-unknown-none` (`cargo xtask build-guest`), linked at `IMAGE_BASE`
//! by `vault.ld`, which fails the link if the image exceeds 4096 bytes. The HV starts every
//! vCPU at `_start` in 64-bit mode with the state `sevault_abi::vcpu_state` documents; the
//! only per-vCPU register is RSP, the top of that vCPU's stack, from which the vault derives
//! its vCPU index and so its comm block and GHCB.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

use core::arch::global_asm;
use core::ptr::NonNull;

use sevault_abi::comm::{CommBlock, CommBlockPtr};
use sevault_abi::memory_map::{VcpuIndex, HOST_WINDOW_BASE, KEY_SLOTS_BASE};
use sevault_abi::HYPERCALL_REQUEST_DONE;
use sevault_ghcb::{GhcbPage, GhcbPtr};
use sevault_guest::slots::{KeySlot, KeyStore, SLOT_COUNT};
use sevault_guest::vault::Vault;
use sevault_guest::walk::HostWindow;

global_asm!(
    r#"
    .section .text.entry, "ax"
    .globl _start
    _start:
        jmp 1f
    // IMAGE_BASE + 2 (sevault_abi::memory_map::SPIN_GPA): a loop that never exits, where the
    // HV's test hook (debugfs inject_fault = 2) starts a run, to show that the HV's time
    // budget, not the vault, ends a runaway vault. Nothing in the vault jumps here. (No PAUSE:
    // under SEV-ES an intercepted PAUSE would raise #VC.)
    .globl sevault_spin
    sevault_spin:
    2:
        jmp 2b
    1:
        mov rdi, rsp
        call {main}
        ud2

    .text
    // VMGEXIT (`rep vmmcall`, F3 0F 01 D9). Under SEV-ES that is the Automatic Exit 0x403;
    // on plain SVM it exits as VMMCALL (0x81), and only RAX, RSP, RIP and RFLAGS live in
    // the VMCB: so the callee-saved registers go to the vault's stack, and every register
    // the host could see that the vault writes — the general-purpose ones and xmm0-xmm8
    // (AES state, round keys) — is zeroed first. The vault's Rust code is soft-float and
    // its assembly uses xmm0-xmm8 only (the host test
    // `the_vault_writes_no_register_its_exit_does_not_zero` holds it to that), so
    // xmm9-xmm15 only ever hold what the host left there. `xorps`: no 66 prefix. The HV
    // resumes the vault right after the instruction.
    .globl sevault_vmgexit
    sevault_vmgexit:
        push rbx
        push rbp
        push r12
        push r13
        push r14
        push r15
        xor eax, eax
        xor ebx, ebx
        xor ecx, ecx
        xor edx, edx
        xor esi, esi
        xor edi, edi
        xor ebp, ebp
        xor r8d, r8d
        xor r9d, r9d
        xor r10d, r10d
        xor r11d, r11d
        xor r12d, r12d
        xor r13d, r13d
        xor r14d, r14d
        xor r15d, r15d
        xorps xmm0, xmm0
        xorps xmm1, xmm1
        xorps xmm2, xmm2
        xorps xmm3, xmm3
        xorps xmm4, xmm4
        xorps xmm5, xmm5
        xorps xmm6, xmm6
        xorps xmm7, xmm7
        xorps xmm8, xmm8
        .byte 0xf3, 0x0f, 0x01, 0xd9
        pop r15
        pop r14
        pop r13
        pop r12
        pop rbp
        pop rbx
        ret
    "#,
    main = sym vault_main,
);

extern "sysv64" {
    fn sevault_vmgexit();
}

/// Stops the vault for good: #UD with no IDT is a triple fault, so the HV sees a SHUTDOWN exit
/// and rebuilds the vault. Used only when the HV broke the launch contract.
fn fatal() -> ! {
    // SAFETY: raises #UD on purpose; `noreturn` because nothing after it runs.
    unsafe { core::arch::asm!("ud2", options(nomem, nostack, noreturn)) }
}

extern "sysv64" fn vault_main(stack_top: u64) -> ! {
    let Some(vcpu) = VcpuIndex::from_stack_top(stack_top) else { fatal() };
    let (Some(comm), Some(ghcb)) =
        (NonNull::new(vcpu.comm_block_gpa() as *mut CommBlock), NonNull::new(vcpu.ghcb_gpa() as *mut GhcbPage))
    else {
        fatal()
    };
    // SAFETY: the memory map (sevault_abi::memory_map) that the HV builds the vault's page
    // tables from maps this vCPU's comm block and GHCB, writable, for the vault's lifetime.
    let (comm, ghcb) = unsafe { (CommBlockPtr::new(comm), GhcbPtr::new(ghcb)) };
    // SAFETY: key slots are private memory at KEY_SLOTS_BASE (one 1 GiB page of the vault's
    // tables), touched by vCPUs only through `KeyStore`. The HV backs them a block at a time
    // and names only backed slots in requests (the others fault as nested page faults);
    // a fresh block is zero-filled (= empty, unlocked slots).
    let slots = unsafe { core::slice::from_raw_parts(KEY_SLOTS_BASE as *const KeySlot, SLOT_COUNT) };
    // SAFETY: the window maps host memory only, disjoint from everything the vault's Rust
    // code references (memory map); requests are validated against its bounds.
    let window = unsafe { HostWindow::new(HOST_WINDOW_BASE as *mut u8) };
    let vault = Vault::new(KeyStore::new(slots), window);
    loop {
        vault.serve(comm);
        ghcb.write_vmmcall_event(HYPERCALL_REQUEST_DONE);
        // SAFETY: exits to the HV, which resumes right after with the next request posted.
        unsafe { sevault_vmgexit() };
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    fatal()
}
