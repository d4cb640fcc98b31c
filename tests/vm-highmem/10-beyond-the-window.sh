#!/bin/sh
# Booted with a 128 MiB DIMM at host-physical 512 GiB (cargo xtask test adds it), just
# beyond the vault's host window; the kernel leaves it offline. While sevault is loaded the
# memory may not come online (the vault could not serve requests on it); once it is online
# the module refuses to load. Either way with a message saying why.
[ -n "$SEVAULT_KO" ] || { echo "no vault module in this image"; exit 1; }
bs=$((0x$(cat /sys/devices/system/memory/block_size_bytes)))
block=/sys/devices/system/memory/memory$(( (512 << 30) / bs ))
[ -e "$block/state" ] || { echo "no memory block at 512 GiB: was the VM started with the DIMM?"; exit 1; }
echo "memory block at 512 GiB: $(cat $block/state)"
[ "$(cat $block/state)" = offline ] || { echo "expected it offline at boot"; exit 1; }
status=0
insmod "$SEVAULT_KO" || { echo "insmod failed with the high memory offline"; exit 1; }
if echo online > "$block/state" 2>/dev/null; then
    echo "the memory beyond the window came online while the vault was loaded"; status=1
else
    echo "onlining it while sevault is loaded: refused"
fi
dmesg | grep 'sevault: refusing to bring memory' | tail -1 | sed 's/^\[[ 0-9.]*\] //'
dmesg | grep -q 'sevault: refusing to bring memory' || { echo "no refusal line in the kernel log"; status=1; }
rmmod sevault || exit 1
echo online > "$block/state" || { echo "onlining it without sevault failed"; exit 1; }
echo "without sevault it came online: $(cat $block/state)"
if insmod "$SEVAULT_KO" 2>/dev/null; then
    echo "sevault loaded with memory beyond its window"; rmmod sevault; status=1
else
    echo "insmod with memory beyond the window: refused"
fi
dmesg | grep 'sevault: cannot load: host memory reaches' | tail -1 | sed 's/^\[[ 0-9.]*\] //'
dmesg | grep -q 'sevault: cannot load: host memory reaches' || { echo "no refusal line in the kernel log"; status=1; }
exit $status
