#!/bin/sh
# A runaway vault (debugfs hook: it spins) is ended by the time budget with EIO and a log
# line; its CPU answers TLB shootdowns and takes timer interrupts meanwhile; requests on the
# other CPU during the rebuild get ENOKEY and work once re-keyed (sevault-kcheck spin).
grep -q '^sevault ' /proc/modules || insmod "$SEVAULT_KO" || exit 1
echo "budget_ms: $(cat /sys/module/sevault/parameters/budget_ms)"
status=0
sevault-kcheck spin --driver cbc-aes-sevault --reference 'cbc(aes-generic)' || status=1
dmesg | grep 'sevault: vault on cpu .* without answering' | tail -1
dmesg | grep -q 'sevault: vault on cpu .* ms without answering (budget' || { echo "no budget line in the kernel log"; status=1; }
# The vault still serves every CPU afterwards.
sevault-kcheck diff --driver cbc-aes-sevault --reference 'cbc(aes-generic)' --cases 100 || status=1
exit $status
