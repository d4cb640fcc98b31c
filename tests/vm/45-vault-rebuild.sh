#!/bin/sh
# A vault fault (injected through debugfs) fails that request with EIO, is logged once,
# rebuilds the vault: keys set before get ENOKEY until set again; the vault keeps serving.
grep -q '^sevault ' /proc/modules || insmod "$SEVAULT_KO" || exit 1
before=$(head -1 /sys/kernel/debug/sevault/stats)
sevault-kcheck rebuild --driver cbc-aes-sevault --reference 'cbc(aes-generic)' || exit 1
after=$(head -1 /sys/kernel/debug/sevault/stats)
echo "statistics before: $before; after: $after"
dmesg | grep 'sevault: vault fault' | tail -1
dmesg | grep -q 'sevault: vault fault on cpu .*: exit 0x4e' || { echo "no fault line in the kernel log"; exit 1; }
# The rebuilt vault still passes a differential run.
sevault-kcheck diff --driver ecb-aes-sevault --reference 'ecb(aes-generic)' --cases 200
