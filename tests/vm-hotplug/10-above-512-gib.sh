#!/bin/sh
# Booted with a 128 MiB DIMM at host-physical 512 GiB (cargo xtask test adds it); the kernel
# leaves it offline. The vault's compact windows map each page of a batch into a slot, so
# memory anywhere (up to the 52 bits of a nested entry) can be served: the DIMM comes online
# (movable, so user pages come from it first) while sevault is loaded, requests whose
# destination pages lie there are served and checked against the kernel's own AES, and the
# module loads again with the memory online.
[ -n "$SEVAULT_KO" ] || { echo "no vault module in this image"; exit 1; }
bs=$((0x$(cat /sys/devices/system/memory/block_size_bytes)))
first=$(( (512 << 30) / bs ))
last=$(( ((512 << 30) + (128 << 20) - 1) / bs ))
state=/sys/devices/system/memory/memory$first/state
[ -e "$state" ] || { echo "no memory block at 512 GiB: was the VM started with the DIMM?"; exit 1; }
echo "memory block at 512 GiB: $(cat $state)"
[ "$(cat $state)" = offline ] || { echo "expected it offline at boot"; exit 1; }
status=0
insmod "$SEVAULT_KO" || { echo "insmod failed with the high memory offline"; exit 1; }
block=$first
while [ $block -le $last ]; do
    echo online_movable > /sys/devices/system/memory/memory$block/state || { echo "onlining memory$block with sevault loaded failed"; exit 1; }
    block=$((block + 1))
done
echo "with sevault loaded, the DIMM came online: $(cat $state)"
before=$(awk 'NR > 2 { n += $2 } END { print n }' /sys/kernel/debug/sevault/stats 2>/dev/null)
for pair in "cbc-aes-sevault cbc(aes-generic)" "xts-aes-sevault xts(ecb(aes-generic))"; do
    set -- $pair
    sevault-kcheck high-memory --driver "$1" --reference "$2" || status=1
done
after=$(awk 'NR > 2 { n += $2 } END { print n }' /sys/kernel/debug/sevault/stats 2>/dev/null)
echo "vault requests served meanwhile (debugfs stats, column 2 summed over CPUs): $before -> $after"
rmmod sevault || exit 1
insmod "$SEVAULT_KO" || { echo "insmod with memory above 512 GiB online failed"; exit 1; }
dmesg | grep 'sevault: vault ready' | tail -1 | sed 's/^\[[ 0-9.]*\] //'
sevault-kcheck high-memory --driver cbc-aes-sevault --reference 'cbc(aes-generic)' || status=1
rmmod sevault || exit 1
exit $status
