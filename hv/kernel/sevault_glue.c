// SPDX-License-Identifier: MIT OR GPL-2.0
/*
 * SE-Vault Mini: the C glue of sevault.ko. Only what must be C lives here — module
 * init/exit and parameters, kernel macros and inline functions (page allocation, virt→phys,
 * per-CPU ids, kernel_fpu_begin/end, IRQ flags, scatterlist access), crypto API
 * registration and debugfs. Everything else is the Rust core (hv/src/), behind
 * sevault_glue.h.
 */
#include <linux/module.h>
#include <linux/mm.h>
#include <linux/gfp.h>
#include <linux/scatterlist.h>
#include <linux/debugfs.h>
#include <linux/seq_file.h>
#include <linux/cpumask.h>
#include <linux/cpuhotplug.h>
#include <linux/irqflags.h>
#include <linux/smp.h>
#include <linux/timekeeping.h>
#include <linux/cc_platform.h>
#include <linux/workqueue.h>
#include <linux/percpu.h>
#include <linux/sched.h>
#include <linux/minmax.h>
#include <asm/fpu/api.h>
#include <asm/debugreg.h>
#include <asm/mce.h>
#include <crypto/aes.h>
#include <crypto/internal/skcipher.h>
#include <crypto/internal/simd.h>
#include <crypto/algapi.h>
#include <crypto/xts.h>
#include "sevault_glue.h"

static int priority = 500;
module_param(priority, int, 0444);
MODULE_PARM_DESC(priority,
	"crypto API priority of the vault's ecb/cbc/ctr/xts(aes) (default 500: above the kernel's AES-NI drivers at 400, so users get the vault transparently; lower it to make the vault opt-in by driver name)");

static char *sev = "off";
module_param(sev, charp, 0444);
MODULE_PARM_DESC(sev,
	"off (default): plain SVM; es: launch the vault with AMD SEV-ES, the mode that protects keys (memory and registers encrypted); sev: memory encryption without register protection, no key confidentiality (the host reads and sets the vault's registers at every exit). Both need an EPYC with SEV enabled in the firmware and the ccp driver");

static unsigned int budget_ms = 1000;
module_param(budget_ms, uint, 0644);
MODULE_PARM_DESC(budget_ms,
	"how long one vault request may run, in milliseconds, before the vault is stopped, the request fails with -EIO and the vault is rebuilt (default 1000; interrupts and NMIs preempt the vault meanwhile)");

static unsigned int max_batch = 16;
module_param(max_batch, uint, 0444);
MODULE_PARM_DESC(max_batch,
	"most crypto requests the vault serves per VMRUN, 1-16 (default 16): requests queue per CPU and a per-CPU worker serves them in batches, completing each through the crypto API's callback. 0: no queue; each request runs at once on the calling CPU (the simd helper's path, deferred to cryptd where the FPU is not usable)");

static int worker_nice = 19;
module_param(worker_nice, int, 0644);
MODULE_PARM_DESC(worker_nice,
	"the nice value (-20..19) at which each CPU's worker serves its queue (default 19: the submitters, e.g. dm-crypt's kcryptd, run first and queue more requests, so batches grow; the worker still runs at once on an idle CPU). 0: the workqueue's own priority");

/* sev= as a number for Rust: 0 off, 1 sev, 2 es; -1 unknown. */
static int sevault_sev_mode(void)
{
	if (!strcmp(sev, "off"))
		return 0;
	if (!strcmp(sev, "sev"))
		return 1;
	if (!strcmp(sev, "es"))
		return 2;
	return -1;
}

/* ---- helpers for Rust ---- */

static void *sevault_pages_alloc_gfp(gfp_t gfp, u32 order, u64 *phys)
{
	struct page *page = alloc_pages(gfp | __GFP_ZERO, order);

	if (!page)
		return NULL;
	*phys = page_to_phys(page);
	return page_address(page);
}

void *sevault_pages_alloc(u32 order, u64 *phys)
{
	return sevault_pages_alloc_gfp(GFP_KERNEL, order, phys);
}

void *sevault_pages_alloc_any(u32 order, u64 *phys)
{
	return sevault_pages_alloc_gfp((preemptible() ? GFP_KERNEL : GFP_ATOMIC) | __GFP_NOWARN, order, phys);
}

/* Writers of the shared nested tables: key-slot blocks (setkey, any context) and vCPUs
 * made when their CPU comes online. */
static DEFINE_SPINLOCK(sevault_npt_spinlock);

u64 sevault_npt_lock(void)
{
	unsigned long flags;

	spin_lock_irqsave(&sevault_npt_spinlock, flags);
	return flags;
}

void sevault_npt_unlock(u64 flags)
{
	spin_unlock_irqrestore(&sevault_npt_spinlock, (unsigned long)flags);
}

void sevault_pages_free(void *virt, u32 order)
{
	free_pages((unsigned long)virt, order);
}

void sevault_log(u32 level, const u8 *msg, u32 len)
{
	switch (level) {
	case 3:
		pr_err("sevault: %.*s\n", (int)len, msg);
		break;
	case 4:
		pr_warn("sevault: %.*s\n", (int)len, msg);
		break;
	default:
		pr_info("sevault: %.*s\n", (int)len, msg);
		break;
	}
}

void sevault_log_ratelimited(const u8 *msg, u32 len)
{
	pr_err_ratelimited("sevault: %.*s\n", (int)len, msg);
}

void sevault_log_host_address(u64 addr)
{
	pr_err_ratelimited("sevault: that rip is host code: %pS\n", (void *)addr);
}

u32 sevault_cpu_id(void) { return smp_processor_id(); }
u32 sevault_nr_cpu_ids(void) { return nr_cpu_ids; }
void sevault_fpu_begin(void) { kernel_fpu_begin(); }
void sevault_fpu_end(void) { kernel_fpu_end(); }
u32 sevault_fpu_usable(void) { return irq_fpu_usable(); }

u64 sevault_irq_save(void)
{
	unsigned long flags;

	local_irq_save(flags);
	return flags;
}

void sevault_irq_restore(u64 flags) { local_irq_restore((unsigned long)flags); }

u64 sevault_now_ns(void) { return ktime_get_ns(); }

u32 sevault_sme_active(void) { return cc_platform_has(CC_ATTR_HOST_MEM_ENCRYPT); }
u32 sevault_budget_ms(void) { return max(READ_ONCE(budget_ms), 1U); }
u32 sevault_max_batch(void) { return clamp(max_batch, 1U, 16U); }

/* #VMEXIT leaves DR7 at 0x400 (AMD APM Vol. 2 §15.6): put the host's breakpoints back, as
 * KVM's vcpu_enter_guest does. */
void sevault_host_debug_restore(void)
{
	if (hw_breakpoint_active())
		hw_breakpoint_restore();
}

/* An intercepted #MC is not delivered to the host by the CPU: call its handler, as KVM's
 * kvm_machine_check does, with registers that say "interrupted user code, IF set" (the
 * vault is not kernel code the handler could fix up). */
void sevault_machine_check(void)
{
#ifdef CONFIG_X86_MCE
	struct pt_regs regs = { .cs = 3, .flags = X86_EFLAGS_IF };

	do_machine_check(&regs);
#endif
}

const void *sevault_sg_next(const void *sg)
{
	return sg_next((struct scatterlist *)sg);
}

void sevault_sg_info(const void *sg, u64 *phys, u32 *len)
{
	struct scatterlist *s = (struct scatterlist *)sg;

	*phys = sg_phys(s);
	*len = s->length;
}

u8 *sevault_phys_to_virt(u64 phys)
{
	return phys_to_virt(phys);
}

/* ---- crypto API ---- */

struct sevault_ctx {
	struct sevault_key key;
};

static int sv_setkey(struct crypto_skcipher *tfm, const u8 *key, unsigned int len)
{
	struct sevault_ctx *ctx = crypto_skcipher_ctx(tfm);

	return sevault_rust_setkey(&ctx->key, key, len, 0);
}

/* Both XTS keys go to the vault, in one key slot; equal halves are refused as
 * crypto/xts.c refuses them (in FIPS mode, or when the user forbids weak keys). */
static int sv_xts_setkey(struct crypto_skcipher *tfm, const u8 *key, unsigned int len)
{
	struct sevault_ctx *ctx = crypto_skcipher_ctx(tfm);
	int err = xts_verify_key(tfm, key, len);

	if (err)
		return err;
	return sevault_rust_setkey(&ctx->key, key, len, 1);
}

static void sv_exit(struct crypto_skcipher *tfm)
{
	struct sevault_ctx *ctx = crypto_skcipher_ctx(tfm);

	sevault_rust_clear_key(&ctx->key);
}

/* Modes as sevault_abi::Mode numbers them. */
enum { SV_ECB = 1, SV_CBC = 2, SV_CTR = 3, SV_XTS = 4 };

static int sv_crypt(struct skcipher_request *req, u32 decrypt, u32 mode)
{
	struct sevault_ctx *ctx = crypto_skcipher_ctx(crypto_skcipher_reqtfm(req));
	struct sevault_request r = {
		.src = req->src,
		.dst = req->dst,
		.len = req->cryptlen,
		.iv = mode == SV_ECB ? NULL : req->iv,
	};

	return sevault_rust_crypt(&ctx->key, &r, decrypt, mode);
}

static int sv_ecb_encrypt(struct skcipher_request *req) { return sv_crypt(req, 0, SV_ECB); }
static int sv_ecb_decrypt(struct skcipher_request *req) { return sv_crypt(req, 1, SV_ECB); }
static int sv_cbc_encrypt(struct skcipher_request *req) { return sv_crypt(req, 0, SV_CBC); }
static int sv_cbc_decrypt(struct skcipher_request *req) { return sv_crypt(req, 1, SV_CBC); }
static int sv_ctr_crypt(struct skcipher_request *req) { return sv_crypt(req, 0, SV_CTR); }
static int sv_xts_encrypt(struct skcipher_request *req) { return sv_crypt(req, 0, SV_XTS); }
static int sv_xts_decrypt(struct skcipher_request *req) { return sv_crypt(req, 1, SV_XTS); }

/*
 * ---- Batching: a queue and a worker per CPU (max_batch >= 1) ----
 *
 * encrypt/decrypt queue the request on this CPU's queue and return -EINPROGRESS (or, with
 * the queue full, -EBUSY having backlogged it if the caller set CRYPTO_TFM_REQ_MAY_BACKLOG,
 * else -ENOSPC: crypto_enqueue_request, as the API defines). This CPU's worker takes up to
 * max_batch requests at a time, the Rust core serves them in as few VMRUNs as the comm block
 * allows, and each completes through its callback, with bottom halves off as cryptd does.
 */
#define SV_QUEUE_LEN 256
#define SV_BATCH_MAX 16

struct sv_reqctx {
	u32 decrypt;
	u32 mode;
	u64 scratch[];		/* sevault_rust_job_scratch_bytes() */
};

struct sv_cpu_queue {
	spinlock_t lock;
	struct crypto_queue queue;
	struct work_struct work;
};

static struct sv_cpu_queue __percpu *sv_queues;
static struct workqueue_struct *sv_wq;

static void sv_work(struct work_struct *work)
{
	struct sv_cpu_queue *q = container_of(work, struct sv_cpu_queue, work);
	struct skcipher_request *reqs[SV_BATCH_MAX];
	struct crypto_async_request *backlogs[SV_BATCH_MAX];
	struct sevault_job jobs[SV_BATCH_MAX];
	unsigned int i, n, backlogged, limit = sevault_max_batch();
	unsigned long flags;
	/*
	 * Served at a low priority (worker_nice): whatever else is runnable on this CPU —
	 * typically the submitters, whose first request woke this worker and who would add
	 * more — runs first, so the queue fills while the worker waits for the CPU. On an idle
	 * CPU it runs at once: a lone caller waits for nothing. The pool worker gets its own
	 * priority back before it leaves; the workqueue is CPU_INTENSIVE, so a worker waiting
	 * here at nice 19 does not hold up the CPU's other work items.
	 */
	long pool_nice = task_nice(current);
	long nice = clamp(READ_ONCE(worker_nice), MIN_NICE, MAX_NICE);

	if (nice != pool_nice && nice)
		set_user_nice(current, nice);
	for (;;) {
		n = backlogged = 0;
		spin_lock_irqsave(&q->lock, flags);
		while (n < limit) {
			struct crypto_async_request *backlog = crypto_get_backlog(&q->queue);
			struct crypto_async_request *base = crypto_dequeue_request(&q->queue);

			if (!base)
				break;
			if (backlog)
				backlogs[backlogged++] = backlog;
			reqs[n++] = skcipher_request_cast(base);
		}
		spin_unlock_irqrestore(&q->lock, flags);
		if (!n)
			break;
		local_bh_disable();
		for (i = 0; i < backlogged; i++)
			crypto_request_complete(backlogs[i], -EINPROGRESS);
		local_bh_enable();
		for (i = 0; i < n; i++) {
			struct skcipher_request *req = reqs[i];
			struct sv_reqctx *rctx = skcipher_request_ctx(req);
			struct sevault_ctx *ctx = crypto_skcipher_ctx(crypto_skcipher_reqtfm(req));

			jobs[i] = (struct sevault_job){
				.key = &ctx->key,
				.request = {
					.src = req->src,
					.dst = req->dst,
					.len = req->cryptlen,
					.iv = rctx->mode == SV_ECB ? NULL : req->iv,
				},
				.decrypt = rctx->decrypt,
				.mode = rctx->mode,
				.scratch = rctx->scratch,
			};
		}
		sevault_rust_crypt_batch(jobs, n);
		local_bh_disable();
		for (i = 0; i < n; i++)
			skcipher_request_complete(reqs[i], jobs[i].result);
		local_bh_enable();
		cond_resched();
	}
	if (task_nice(current) != pool_nice)
		set_user_nice(current, pool_nice);
}

static int sv_enqueue(struct skcipher_request *req, u32 decrypt, u32 mode)
{
	struct sv_reqctx *rctx = skcipher_request_ctx(req);
	struct sv_cpu_queue *q;
	unsigned long flags;
	int cpu, err;

	rctx->decrypt = decrypt;
	rctx->mode = mode;
	cpu = get_cpu();
	q = per_cpu_ptr(sv_queues, cpu);
	spin_lock_irqsave(&q->lock, flags);
	err = crypto_enqueue_request(&q->queue, &req->base);
	spin_unlock_irqrestore(&q->lock, flags);
	queue_work_on(cpu, sv_wq, &q->work);
	put_cpu();
	return err;
}

static int sv_async_init(struct crypto_skcipher *tfm)
{
	crypto_skcipher_set_reqsize(tfm, sizeof(struct sv_reqctx) + sevault_rust_job_scratch_bytes());
	return 0;
}

static int sv_q_ecb_encrypt(struct skcipher_request *req) { return sv_enqueue(req, 0, SV_ECB); }
static int sv_q_ecb_decrypt(struct skcipher_request *req) { return sv_enqueue(req, 1, SV_ECB); }
static int sv_q_cbc_encrypt(struct skcipher_request *req) { return sv_enqueue(req, 0, SV_CBC); }
static int sv_q_cbc_decrypt(struct skcipher_request *req) { return sv_enqueue(req, 1, SV_CBC); }
static int sv_q_ctr_crypt(struct skcipher_request *req) { return sv_enqueue(req, 0, SV_CTR); }
static int sv_q_xts_encrypt(struct skcipher_request *req) { return sv_enqueue(req, 0, SV_XTS); }
static int sv_q_xts_decrypt(struct skcipher_request *req) { return sv_enqueue(req, 1, SV_XTS); }

static int sevault_queues_init(void)
{
	int cpu;

	sv_queues = alloc_percpu(struct sv_cpu_queue);
	if (!sv_queues)
		return -ENOMEM;
	for_each_possible_cpu(cpu) {
		struct sv_cpu_queue *q = per_cpu_ptr(sv_queues, cpu);

		spin_lock_init(&q->lock);
		crypto_init_queue(&q->queue, SV_QUEUE_LEN);
		INIT_WORK(&q->work, sv_work);
	}
	/* Bound to its CPU (each CPU's vCPU serves its own queue); able to make progress
	 * under memory pressure, as dm-crypt's writes of dirty pages need; CPU-intensive, as
	 * dm-crypt's kcryptd is: its items do not count towards the pool's concurrency, so a
	 * worker serving at a low priority (sv_work) never delays the CPU's other work. */
	sv_wq = alloc_workqueue("sevault", WQ_MEM_RECLAIM | WQ_CPU_INTENSIVE, 0);
	if (!sv_wq) {
		free_percpu(sv_queues);
		return -ENOMEM;
	}
	return 0;
}

/* After the algorithms are gone: nothing can be queued, and the workers finish. */
static void sevault_queues_exit(void)
{
	destroy_workqueue(sv_wq);
	free_percpu(sv_queues);
}

/* An algorithm of both registrations: internal synchronous (the simd helper's, max_batch=0)
 * and public asynchronous (the queue's). */
#define SV_BASE(prefix, mode_name, bsize, flags) {						\
		.cra_name = prefix mode_name "(aes)",					\
		.cra_driver_name = prefix mode_name "-aes-sevault",			\
		.cra_flags = flags,							\
		.cra_blocksize = bsize,							\
		.cra_ctxsize = sizeof(struct sevault_ctx),				\
		.cra_module = THIS_MODULE,						\
	}

#define SV_ALG(mode_name, bsize, keymin, keymax, iv, set, enc, dec) {			\
	.base = SV_BASE("__", mode_name, bsize, CRYPTO_ALG_INTERNAL),			\
	.min_keysize = keymin,								\
	.max_keysize = keymax,								\
	.ivsize = iv,									\
	.chunksize = AES_BLOCK_SIZE,							\
	.setkey = set,									\
	.exit = sv_exit,								\
	.encrypt = enc,									\
	.decrypt = dec,									\
}

#define SV_QALG(mode_name, bsize, keymin, keymax, iv, set, enc, dec) {			\
	.base = SV_BASE("", mode_name, bsize, CRYPTO_ALG_ASYNC),			\
	.min_keysize = keymin,								\
	.max_keysize = keymax,								\
	.ivsize = iv,									\
	.chunksize = AES_BLOCK_SIZE,							\
	.setkey = set,									\
	.init = sv_async_init,								\
	.exit = sv_exit,								\
	.encrypt = enc,									\
	.decrypt = dec,									\
}

/*
 * max_batch = 0: internal synchronous algorithms; the simd helpers wrap each in the public
 * ecb(aes)/cbc(aes)/ctr(aes)/xts(aes) algorithm, which calls it directly where the FPU is
 * usable and defers to cryptd's per-CPU worker where it is not (hence CRYPTO_ALG_ASYNC on
 * the public one). CTR is a stream cipher to the API (block size 1, any length); XTS takes
 * two keys.
 */
static struct skcipher_alg sevault_algs[] = {
	SV_ALG("ecb", AES_BLOCK_SIZE, AES_MIN_KEY_SIZE, AES_MAX_KEY_SIZE, 0, sv_setkey, sv_ecb_encrypt, sv_ecb_decrypt),
	SV_ALG("cbc", AES_BLOCK_SIZE, AES_MIN_KEY_SIZE, AES_MAX_KEY_SIZE, AES_BLOCK_SIZE, sv_setkey, sv_cbc_encrypt,
	       sv_cbc_decrypt),
	SV_ALG("ctr", 1, AES_MIN_KEY_SIZE, AES_MAX_KEY_SIZE, AES_BLOCK_SIZE, sv_setkey, sv_ctr_crypt, sv_ctr_crypt),
	SV_ALG("xts", AES_BLOCK_SIZE, 2 * AES_MIN_KEY_SIZE, 2 * AES_MAX_KEY_SIZE, AES_BLOCK_SIZE, sv_xts_setkey,
	       sv_xts_encrypt, sv_xts_decrypt),
};

/* max_batch >= 1: the public algorithms themselves, asynchronous, served by the queues. */
static struct skcipher_alg sevault_queued_algs[] = {
	SV_QALG("ecb", AES_BLOCK_SIZE, AES_MIN_KEY_SIZE, AES_MAX_KEY_SIZE, 0, sv_setkey, sv_q_ecb_encrypt,
		sv_q_ecb_decrypt),
	SV_QALG("cbc", AES_BLOCK_SIZE, AES_MIN_KEY_SIZE, AES_MAX_KEY_SIZE, AES_BLOCK_SIZE, sv_setkey,
		sv_q_cbc_encrypt, sv_q_cbc_decrypt),
	SV_QALG("ctr", 1, AES_MIN_KEY_SIZE, AES_MAX_KEY_SIZE, AES_BLOCK_SIZE, sv_setkey, sv_q_ctr_crypt,
		sv_q_ctr_crypt),
	SV_QALG("xts", AES_BLOCK_SIZE, 2 * AES_MIN_KEY_SIZE, 2 * AES_MAX_KEY_SIZE, AES_BLOCK_SIZE, sv_xts_setkey,
		sv_q_xts_encrypt, sv_q_xts_decrypt),
};

static struct simd_skcipher_alg *sevault_simd_algs[ARRAY_SIZE(sevault_algs)];

static int sevault_register_algs(void)
{
	int i, err;

	if (!max_batch) {
		for (i = 0; i < ARRAY_SIZE(sevault_algs); i++)
			sevault_algs[i].base.cra_priority = priority;
		return simd_register_skciphers_compat(sevault_algs, ARRAY_SIZE(sevault_algs), sevault_simd_algs);
	}
	err = sevault_queues_init();
	if (err)
		return err;
	for (i = 0; i < ARRAY_SIZE(sevault_queued_algs); i++)
		sevault_queued_algs[i].base.cra_priority = priority;
	err = crypto_register_skciphers(sevault_queued_algs, ARRAY_SIZE(sevault_queued_algs));
	if (err)
		sevault_queues_exit();
	return err;
}

static void sevault_unregister_algs(void)
{
	if (!max_batch) {
		simd_unregister_skciphers(sevault_algs, ARRAY_SIZE(sevault_algs), sevault_simd_algs);
		return;
	}
	crypto_unregister_skciphers(sevault_queued_algs, ARRAY_SIZE(sevault_queued_algs));
	sevault_queues_exit();
}

/* ---- debugfs ---- */

static struct dentry *sevault_debugfs;

static int stats_show(struct seq_file *m, void *v)
{
	struct sevault_stats s;
	unsigned int cpu;

	seq_printf(m, "generation %llu rebuilds %llu tlb_flushes %llu kvm_amd %u key_slots %llu max_batch %u memory_kib %llu\n",
		   sevault_rust_generation(), sevault_rust_rebuilds(), sevault_rust_tlb_flushes(),
		   sevault_rust_kvm_amd(), sevault_rust_key_slots(), max_batch ? sevault_max_batch() : 0,
		   sevault_rust_memory_kib());
	seq_puts(m, "cpu requests bytes vmruns exits_vmmcall exits_vmgexit exits_nmi exits_intr exits_other machine_checks tlb_flush_failures errors vmcb_repairs emulation_recoveries stack_used batches streamed\n");
	for_each_possible_cpu(cpu) {
		if (!sevault_rust_stats(cpu, &s))
			continue;
		seq_printf(m, "%u %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu\n", cpu,
			   s.requests, s.bytes, s.vmruns, s.exits_vmmcall, s.exits_vmgexit, s.exits_nmi,
			   s.exits_intr, s.exits_other, s.machine_checks, s.tlb_flush_failures, s.errors,
			   s.vmcb_repairs, s.emulation_recoveries, s.stack_used, s.batches, s.streamed);
	}
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(stats);

/* Writing 1 makes the next vault run fault with a #PF, 2 makes it spin until the time
 * budget stops it (tests of the rebuild path and the budget); plus 256 * (cpu + 1) for
 * the next run on that CPU only. */
static int inject_fault_set(void *data, u64 val)
{
	return sevault_rust_inject_fault(val);
}
DEFINE_DEBUGFS_ATTRIBUTE(inject_fault_fops, NULL, inject_fault_set, "%llu\n");

/* ---- kvm_amd: its guests get ASIDs from 1 up, the vault's among them ---- */

/* Failures are logged by the Rust side and counted in the statistics. */
static void sevault_selftest_ipi(void *failures)
{
	if (!sevault_rust_flush_this_cpu(1))
		atomic_inc(failures);
}

/* The flush VMRUN must work on every CPU, or the vault cannot sit beside kvm_amd. */
static int sevault_flush_selftest(void)
{
	atomic_t failures = ATOMIC_INIT(0);

	on_each_cpu(sevault_selftest_ipi, &failures, 1);
	if (!atomic_read(&failures))
		return 0;
	pr_err("sevault: the TLB-flush VMRUN failed on %d CPUs, so the vault's translations could stay in the TLB for kvm_amd guests\n",
	       atomic_read(&failures));
	return -EIO;
}

/*
 * kvm_amd coming: the TLB-flush VMCBs are allocated (they exist only beside kvm_amd); from
 * now on every vault request ends with a flush of the vault's ASID; the IPIs flush every
 * CPU once more, for requests that ended before they saw the flag, and check that the
 * flush works there. kvm_amd's guests can only run after its init, which runs after this
 * notifier. Without the VMCBs the flag is set all the same, and the vault refuses requests.
 */
static int sevault_module_event(struct notifier_block *nb, unsigned long action, void *data)
{
	struct module *mod = data;

	if (strcmp(mod->name, "kvm_amd"))
		return NOTIFY_DONE;
	if (action == MODULE_STATE_COMING) {
		int err = sevault_rust_prepare_kvm_amd();

		sevault_rust_set_kvm_amd(1);
		if (!err)
			err = sevault_flush_selftest();
		if (!err)
			pr_info("sevault: kvm_amd is loading: every vault request now ends with a TLB flush of the vault's ASID\n");
	} else if (action == MODULE_STATE_GOING) {
		sevault_rust_set_kvm_amd(0);
	}
	return NOTIFY_DONE;
}

static struct notifier_block sevault_module_nb = {
	.notifier_call = sevault_module_event,
};

/* ---- CPU hotplug: a vCPU for each CPU as it comes online ---- */

static enum cpuhp_state sevault_cpuhp_state;

/* Runs on `cpu` in its hotplug thread; an error keeps the CPU offline. Offline CPUs keep
 * their vCPU (freed at unload): coming back online needs nothing. */
static int sevault_cpu_online(unsigned int cpu)
{
	return sevault_rust_cpu_online(cpu);
}

/* ---- module ---- */

static int __init sevault_init(void)
{
	int err, mode = sevault_sev_mode();

	if (mode < 0) {
		pr_err("sevault: sev=%s: expected off, sev or es (snp needs a host kernel with SNP support)\n", sev);
		return -EINVAL;
	}
	err = register_module_notifier(&sevault_module_nb);
	if (err)
		return err;
	err = sevault_rust_init(mode);
	if (err)
		goto out_notifier;
	/* Calls sevault_cpu_online for every CPU online now, and later for each that comes. */
	err = cpuhp_setup_state(CPUHP_AP_ONLINE_DYN, "crypto/sevault:online", sevault_cpu_online, NULL);
	if (err < 0)
		goto out_vault;
	sevault_cpuhp_state = err;
	if (sevault_rust_kvm_amd()) {
		err = sevault_flush_selftest();
		if (err)
			goto out_cpuhp;
	}
	sevault_rust_announce();
	err = sevault_register_algs();
	if (err)
		goto out_cpuhp;
	sevault_debugfs = debugfs_create_dir("sevault", NULL);
	debugfs_create_file("stats", 0444, sevault_debugfs, NULL, &stats_fops);
	debugfs_create_file_unsafe("inject_fault", 0200, sevault_debugfs, NULL, &inject_fault_fops);
	return 0;

out_cpuhp:
	cpuhp_remove_state_nocalls(sevault_cpuhp_state);
out_vault:
	sevault_rust_exit();
out_notifier:
	unregister_module_notifier(&sevault_module_nb);
	return err;
}

static void __exit sevault_exit(void)
{
	debugfs_remove_recursive(sevault_debugfs);
	sevault_unregister_algs();
	/* No vCPU is made after this. */
	cpuhp_remove_state_nocalls(sevault_cpuhp_state);
	sevault_rust_exit();
	unregister_module_notifier(&sevault_module_nb);
}

module_init(sevault_init);
module_exit(sevault_exit);
MODULE_DESCRIPTION("SE-Vault Mini: AES keys in a tiny SVM vault VM, served to the crypto API");
MODULE_LICENSE("Dual MIT/GPL");
MODULE_ALIAS_CRYPTO("ecb(aes)");
MODULE_ALIAS_CRYPTO("cbc(aes)");
MODULE_ALIAS_CRYPTO("ctr(aes)");
MODULE_ALIAS_CRYPTO("xts(aes)");
