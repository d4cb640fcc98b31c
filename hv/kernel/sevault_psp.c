// SPDX-License-Identifier: MIT OR GPL-2.0
/*
 * SE-Vault Mini: the PSP (SEV firmware) commands of the vault's SEV/SEV-ES launch, through
 * the interface the ccp driver exports. Only used with sev=sev|es. The ccp symbols are
 * taken with symbol_get(), so sevault.ko keeps loading for plain SVM where ccp is absent.
 *
 * Built, never run: these machines have no SEV (see thesis-notes/sev-plan.md).
 */
#include <linux/module.h>
#include <linux/fs.h>
#include <linux/slab.h>
#include <linux/mem_encrypt.h>
#include <linux/psp-sev.h>
/* __psp_pa (the PSP's view of a kernel address: with the SME C-bit) moved from psp-sev.h
 * to its own header in the 6.x series (6.12 has it there, 6.1 does not). */
#if __has_include(<linux/psp.h>)
#include <linux/psp.h>
#endif
#include <asm/cacheflush.h>
#include <asm/smp.h>
#include "sevault_glue.h"

typedef int (*sev_cmd_fn)(struct file *, unsigned int, void *, int *);
typedef int (*sev_activate_fn)(struct sev_data_activate *, int *);
typedef int (*sev_deactivate_fn)(struct sev_data_deactivate *, int *);
typedef int (*sev_decommission_fn)(struct sev_data_decommission *, int *);
typedef int (*sev_df_flush_fn)(int *);

static sev_cmd_fn psp_cmd;
static sev_activate_fn psp_activate;
static sev_deactivate_fn psp_deactivate;
static sev_decommission_fn psp_decommission;
static sev_df_flush_fn psp_df_flush;
static struct file *sev_file;

static void put_symbols(void)
{
	if (psp_cmd)
		symbol_put(sev_issue_cmd_external_user);
	if (psp_activate)
		symbol_put(sev_guest_activate);
	if (psp_deactivate)
		symbol_put(sev_guest_deactivate);
	if (psp_decommission)
		symbol_put(sev_guest_decommission);
	if (psp_df_flush)
		symbol_put(sev_guest_df_flush);
	psp_cmd = NULL;
	psp_activate = NULL;
	psp_deactivate = NULL;
	psp_decommission = NULL;
	psp_df_flush = NULL;
}

s32 sevault_psp_open(void)
{
	psp_cmd = symbol_get(sev_issue_cmd_external_user);
	psp_activate = symbol_get(sev_guest_activate);
	psp_deactivate = symbol_get(sev_guest_deactivate);
	psp_decommission = symbol_get(sev_guest_decommission);
	psp_df_flush = symbol_get(sev_guest_df_flush);
	if (!psp_cmd || !psp_activate || !psp_deactivate || !psp_decommission || !psp_df_flush) {
		put_symbols();
		return -ENODEV;
	}
	sev_file = filp_open("/dev/sev", O_RDWR, 0);
	if (IS_ERR(sev_file)) {
		s32 err = PTR_ERR(sev_file);

		sev_file = NULL;
		put_symbols();
		return err;
	}
	return 0;
}

void sevault_psp_close(void)
{
	if (sev_file)
		filp_close(sev_file, NULL);
	sev_file = NULL;
	put_symbols();
}

s32 sevault_psp_launch_start(u32 policy, u32 *handle, s32 *fw)
{
	struct sev_data_launch_start data = { .handle = 0, .policy = policy };
	int err, error = 0;

	err = psp_cmd(sev_file, SEV_CMD_LAUNCH_START, &data, &error);
	*fw = error;
	*handle = data.handle;
	return err;
}

s32 sevault_psp_activate(u32 handle, u32 asid, s32 *fw)
{
	struct sev_data_activate data = { .handle = handle, .asid = asid };
	int err, error = 0;

	err = psp_activate(&data, &error);
	*fw = error;
	return err;
}

s32 sevault_psp_update_data(u32 handle, u64 paddr, u32 len, s32 *fw)
{
	struct sev_data_launch_update_data data = { .handle = handle, .address = __sme_set(paddr), .len = len };
	int err, error = 0;

	err = psp_cmd(sev_file, SEV_CMD_LAUNCH_UPDATE_DATA, &data, &error);
	*fw = error;
	return err;
}

s32 sevault_psp_update_vmsa(u32 handle, u64 paddr, s32 *fw)
{
	struct sev_data_launch_update_vmsa data = { .handle = handle, .address = __sme_set(paddr), .len = PAGE_SIZE };
	int err, error = 0;

	err = psp_cmd(sev_file, SEV_CMD_LAUNCH_UPDATE_VMSA, &data, &error);
	*fw = error;
	return err;
}

s32 sevault_psp_measure(u32 handle, u8 *out, u32 len, s32 *fw)
{
	struct sev_data_launch_measure data = { .handle = handle };
	int err, error = 0;
	void *blob = kzalloc(len, GFP_KERNEL);

	if (!blob)
		return -ENOMEM;
	data.address = __psp_pa(blob);
	data.len = len;
	err = psp_cmd(sev_file, SEV_CMD_LAUNCH_MEASURE, &data, &error);
	*fw = error;
	if (!err)
		memcpy(out, blob, len);
	kfree(blob);
	return err;
}

s32 sevault_psp_finish(u32 handle, s32 *fw)
{
	struct sev_data_launch_finish data = { .handle = handle };
	int err, error = 0;

	err = psp_cmd(sev_file, SEV_CMD_LAUNCH_FINISH, &data, &error);
	*fw = error;
	return err;
}

s32 sevault_psp_deactivate(u32 handle, s32 *fw)
{
	struct sev_data_deactivate data = { .handle = handle };
	int err, error = 0;

	err = psp_deactivate(&data, &error);
	*fw = error;
	return err;
}

s32 sevault_psp_df_flush(s32 *fw)
{
	int err, error = 0;

	err = psp_df_flush(&error);
	*fw = error;
	return err;
}

s32 sevault_psp_decommission(u32 handle, s32 *fw)
{
	struct sev_data_decommission data = { .handle = handle };
	int err, error = 0;

	err = psp_decommission(&data, &error);
	*fw = error;
	return err;
}

void sevault_wbinvd_on_all_cpus(void)
{
	wbinvd_on_all_cpus();
}

u32 sevault_kvm_amd_loaded(void)
{
	struct file *f = filp_open("/sys/module/kvm_amd", O_RDONLY | O_DIRECTORY, 0);

	if (IS_ERR(f))
		return 0;
	filp_close(f, NULL);
	return 1;
}

u32 sevault_kvm_amd_sev_enabled(void)
{
	struct file *f = filp_open("/sys/module/kvm_amd/parameters/sev", O_RDONLY, 0);
	char value[2] = { 0 };
	loff_t pos = 0;

	if (IS_ERR(f))
		return 0;	/* kvm_amd not loaded */
	kernel_read(f, value, 1, &pos);
	filp_close(f, NULL);
	return value[0] == 'Y' || value[0] == '1';
}

void sevault_clflush(const void *virt, u32 len)
{
	clflush_cache_range((void *)virt, len);
}
