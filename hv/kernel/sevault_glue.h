/* SPDX-License-Identifier: MIT OR GPL-2.0 */
/*
 * The interface between the C glue (sevault_glue.c) and the Rust core (hv/src/kernel/),
 * declared once here and once in hv/src/kernel/ffi.rs, with fixed-width types only.
 */
#ifndef SEVAULT_GLUE_H
#define SEVAULT_GLUE_H

#include <linux/types.h>

/* A transform's handle on its key: the key itself lives only in the vault. */
struct sevault_key {
	u32 slot;	/* key slot + 1; 0 = none */
	u32 key;	/* AES key length | XTS pair << 8 (sevault_abi::SlotKey); 0 = none */
	u64 generation;	/* vault generation the key was set in */
};

/* One crypto request as the Rust core sees it. */
struct sevault_request {
	const void *src;	/* struct scatterlist * */
	const void *dst;	/* struct scatterlist * */
	u64 len;		/* bytes */
	u8 *iv;			/* 16 bytes (CBC IV, CTR counter: updated; XTS tweak); NULL for ECB */
};

/* Per-CPU statistics, as read for debugfs. */
struct sevault_stats {
	u64 requests;
	u64 bytes;
	u64 vmruns;
	u64 exits_vmmcall;
	u64 exits_vmgexit;
	u64 exits_nmi;
	u64 exits_intr;
	u64 machine_checks;
	u64 tlb_flush_failures;
	u64 exits_other;
	u64 errors;
	u64 vmcb_repairs;
	u64 emulation_recoveries;
	u64 stack_used;		/* bytes of its stack the vault has used (plain SVM) */
	u64 batches;		/* comm blocks of requests served */
	u64 streamed;		/* requests served as a stream of a CBC-streams request */
};

/* One queued crypto request of a batch (the per-CPU worker's). */
struct sevault_job {
	const struct sevault_key *key;
	struct sevault_request request;
	u32 decrypt;
	u32 mode;		/* sevault_abi::Mode */
	s32 result;		/* out: 0 or -errno */
	void *scratch;		/* sevault_rust_job_scratch_bytes() of the request's context, 8-aligned */
};

/* ---- C glue, called by Rust ---- */
void *sevault_pages_alloc(u32 order, u64 *phys);	/* zeroed, physically contiguous */
void *sevault_pages_alloc_any(u32 order, u64 *phys);	/* GFP_ATOMIC where it cannot sleep */
void sevault_pages_free(void *virt, u32 order);
u64 sevault_npt_lock(void);		/* spin_lock_irqsave of the nested-table lock */
void sevault_npt_unlock(u64 flags);
void sevault_log(u32 level, const u8 *msg, u32 len);	/* level: 3 err, 4 warn, 6 info */
void sevault_log_ratelimited(const u8 *msg, u32 len);	/* err, rate-limited */
void sevault_log_host_address(u64 addr);	/* err: the address with %pS */
u32 sevault_cpu_id(void);
u32 sevault_nr_cpu_ids(void);
void sevault_fpu_begin(void);	/* kernel_fpu_begin: also disables preemption */
void sevault_fpu_end(void);
u32 sevault_fpu_usable(void);
u64 sevault_irq_save(void);
void sevault_irq_restore(u64 flags);
u64 sevault_now_ns(void);		/* ktime_get_ns */
u32 sevault_max_batch(void);		/* the max_batch parameter, 1..16 */
u32 sevault_sme_active(void);		/* host memory encryption (SME) is on */
u32 sevault_budget_ms(void);		/* module parameter budget_ms, at least 1 */
void sevault_host_debug_restore(void);	/* after #VMEXIT: host DR7 and breakpoints */
void sevault_machine_check(void);	/* a #MC exit: the host's handler */
void sevault_vmexit_hygiene(void);	/* sevault_vmexit.S: RSB fill, untrain, IBPB; clobbers rax, rcx, rdx */
const void *sevault_sg_next(const void *sg);
void sevault_sg_info(const void *sg, u64 *phys, u32 *len);
u8 *sevault_phys_to_virt(u64 phys);	/* the direct map's address of a scatterlist's RAM */

/* ---- PSP commands through the ccp driver (sevault_psp.c); sev= only ---- */
s32 sevault_psp_open(void);	/* 0, -ENODEV without ccp, or the error opening /dev/sev */
void sevault_psp_close(void);
s32 sevault_psp_launch_start(u32 policy, u32 *handle, s32 *fw);
s32 sevault_psp_activate(u32 handle, u32 asid, s32 *fw);
s32 sevault_psp_update_data(u32 handle, u64 paddr, u32 len, s32 *fw);
s32 sevault_psp_update_vmsa(u32 handle, u64 paddr, s32 *fw);
s32 sevault_psp_measure(u32 handle, u8 *out, u32 len, s32 *fw);	/* measurement ‖ mnonce */
s32 sevault_psp_finish(u32 handle, s32 *fw);
s32 sevault_psp_deactivate(u32 handle, s32 *fw);
s32 sevault_psp_df_flush(s32 *fw);
s32 sevault_psp_decommission(u32 handle, s32 *fw);
void sevault_wbinvd_on_all_cpus(void);
void sevault_clflush(const void *virt, u32 len);
u32 sevault_kvm_amd_sev_enabled(void);	/* kvm_amd loaded with sev=1 */
u32 sevault_kvm_amd_loaded(void);

/* ---- Rust core, called by C ---- */
s32 sevault_rust_init(u32 sev_mode);	/* 0 off, 1 SEV, 2 SEV-ES */
void sevault_rust_exit(void);
s32 sevault_rust_cpu_online(u32 cpu);	/* hotplug: makes the CPU's vCPU; 0 or -errno */
void sevault_rust_announce(void);	/* the load message, once the online CPUs have vCPUs */
s32 sevault_rust_setkey(struct sevault_key *key, const u8 *bytes, u32 len, u32 xts);	/* xts: a pair */
void sevault_rust_clear_key(struct sevault_key *key);
s32 sevault_rust_crypt(const struct sevault_key *key, const struct sevault_request *req,
		       u32 decrypt, u32 mode);	/* mode: sevault_abi::Mode, 1 ECB 2 CBC 3 CTR 4 XTS */
void sevault_rust_crypt_batch(struct sevault_job *jobs, u32 count);	/* count <= 16 */
u32 sevault_rust_job_scratch_bytes(void);
u32 sevault_rust_stats(u32 cpu, struct sevault_stats *out);	/* 1 if the CPU has a vCPU */
u64 sevault_rust_rebuilds(void);
s32 sevault_rust_prepare_kvm_amd(void);	/* allocates the TLB-flush VMCBs; 0 or -errno */
void sevault_rust_set_kvm_amd(u32 loaded);	/* module notifier: kvm_amd coming (1) / going (0) */
u32 sevault_rust_kvm_amd(void);
u64 sevault_rust_tlb_flushes(void);
u64 sevault_rust_key_slots(void);		/* key slots backed with memory */
u64 sevault_rust_memory_kib(void);		/* host memory the module holds, KiB */
u32 sevault_rust_flush_this_cpu(u32 force);	/* IPI: flush the vault's ASID here; 1 if done */
u64 sevault_rust_generation(void);
s32 sevault_rust_inject_fault(u64 kind);	/* debugfs: 1 #PF, 2 spin; 0 or -EINVAL */

#endif
