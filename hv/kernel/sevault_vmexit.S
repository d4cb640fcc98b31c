/* SPDX-License-Identifier: MIT OR GPL-2.0 */
/*
 * Speculation hygiene after #VMEXIT, with the kernel's own macros (they are patched by
 * alternatives at module load, so they do exactly what this CPU and boot's mitigations
 * ask for, as in KVM's arch/x86/kvm/svm/vmenter.S). Called by the Rust trampoline
 * (hv/src/kernel/cpu.rs) right after VMLOAD of the host state, before its first RET.
 * Clobbers rax, rcx, rdx.
 */
#include <linux/linkage.h>
#include <linux/version.h>
#include <asm/nospec-branch.h>

	.text
SYM_FUNC_START(sevault_vmexit_hygiene)
	/* The vault may have filled the return stack buffer with its own targets. */
	FILL_RETURN_BUFFER %rax, RSB_CLEAR_LOOPS, X86_FEATURE_RSB_VMEXIT
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 6, 0)
	/* Return untraining (RETBleed/SRSO) and the IBPB of X86_FEATURE_IBPB_ON_VMEXIT. */
	UNTRAIN_RET_VM
#else
	/* Return untraining (RETBleed/SRSO; IBPB where retbleed=ibpb) ... */
	UNTRAIN_RET
	/* ... and the IBPB that SRSO's "IBPB on VMEXIT" mitigation asks for. */
	ALTERNATIVE "", "call entry_ibpb", X86_FEATURE_IBPB_ON_VMEXIT
#endif
	RET
SYM_FUNC_END(sevault_vmexit_hygiene)
