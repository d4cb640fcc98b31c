#!/bin/sh
# Runs inside the nested VM (`cargo xtask bench-vm`): the vault's cost per request from its
# own statistics, and its throughput against the kernel's AES-NI driver and generic AES in
# the same run. Under QEMU TCG every figure is an emulation artefact: only the ratios
# within this run mean anything.
insmod "$SEVAULT_KO" || exit 1
SECONDS_PER_CELL=${SECONDS_PER_CELL:-2}

# Sum of a statistics column over all CPUs (3 = requests, 4 = bytes, 5 = vmruns).
total() { tail -n +3 /sys/kernel/debug/sevault/stats | awk -v c="$1" '{ s += $c } END { print s + 0 }'; }

for size in 4096 65536; do
    r0=$(total 2); b0=$(total 3); v0=$(total 4)
    sevault-kcheck bench --drivers cbc-aes-sevault --sizes "$size" --seconds "$SECONDS_PER_CELL" > /dev/null || exit 1
    r1=$(total 2); b1=$(total 3); v1=$(total 4)
    awk -v s="$size" -v r=$((r1 - r0)) -v b=$((b1 - b0)) -v v=$((v1 - v0)) 'BEGIN {
        printf "BENCH stats size %d requests %d vmruns %d bytes %d vmruns_per_request %.3f bytes_per_vmrun %.0f\n", s, r, v, b, v / r, b / v }'
done

echo "BENCH throughput (TCG-emulated; ratios only)"
sevault-kcheck bench --drivers cbc-aes-sevault,cbc-aes-aesni,'cbc(aes-generic)' --sizes 4096,65536 --seconds "$SECONDS_PER_CELL" || exit 1
sevault-kcheck bench --drivers ecb-aes-sevault,ecb-aes-aesni,'ecb(aes-generic)' --sizes 4096,65536 --seconds "$SECONDS_PER_CELL" || exit 1
cat /sys/kernel/debug/sevault/stats
rmmod sevault
