#!/bin/sh
# sevault.ko loads, the vault comes up on every CPU, and the kernel's self-tests (testmgr,
# run at registration) pass for both drivers and their internal algorithms. Leaves it loaded.
[ -n "$SEVAULT_KO" ] || { echo "no vault module in this image (SEVAULT_KO unset)"; exit 1; }
insmod "$SEVAULT_KO" || { echo "insmod failed"; dmesg | tail -5; exit 1; }
dmesg | grep 'sevault: vault ready' || { echo "no 'vault ready' line"; exit 1; }
status=0
for driver in ecb-aes-sevault cbc-aes-sevault __ecb-aes-sevault __cbc-aes-sevault; do
    result=$(awk -F': ' -v d="$driver" '/^driver/ { cur = $2 } /^selftest/ && cur == d { print $2 }' /proc/crypto)
    priority=$(awk -F': ' -v d="$driver" '/^driver/ { cur = $2 } /^priority/ && cur == d { print $2 }' /proc/crypto)
    echo "driver $driver: selftest ${result:-MISSING}, priority ${priority:-?}"
    [ "$result" = "passed" ] || status=1
done
# The default priority puts the vault above the kernel's AES-NI drivers: cbc(aes) users get it.
best=$(awk -F': ' '/^name/ { n = $2 } /^driver/ { d = $2 } /^priority/ { if (n == "cbc(aes)" && $2 > p) { p = $2; b = d } } END { print b }' /proc/crypto)
echo "highest-priority cbc(aes): $best"
[ "$best" = "cbc-aes-sevault" ] || status=1
exit $status
