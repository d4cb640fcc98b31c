#!/bin/sh
# The vault against the kernel's generic AES: random keys (128/192/256), IVs and lengths up
# to 64 KiB, both directions, one thread pinned to every CPU at once; then the error
# behaviour on bad inputs, and many transforms setting and dropping keys.
status=0
sevault-kcheck diff --driver ecb-aes-sevault --reference 'ecb(aes-generic)' --cases 1000 || status=1
sevault-kcheck diff --driver cbc-aes-sevault --reference 'cbc(aes-generic)' --cases 1000 || status=1
sevault-kcheck errors --driver ecb-aes-sevault --reference 'ecb(aes-generic)' || status=1
sevault-kcheck errors --driver cbc-aes-sevault --reference 'cbc(aes-generic)' || status=1
sevault-kcheck setkey-stress --driver cbc-aes-sevault || status=1
cat /sys/kernel/debug/sevault/stats
exit $status
