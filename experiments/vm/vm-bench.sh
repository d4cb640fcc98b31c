#!/bin/sh
# Runs inside the nested VM (`cargo xtask bench-vm`): the vault's cost per request from its
# own statistics, and its throughput against the kernel's AES-NI driver and generic AES in
# the same run. Under QEMU TCG every figure is an emulation artefact: only the ratios
# within this run mean anything.
insmod "$SEVAULT_KO" || exit 1
SECONDS_PER_CELL=${SECONDS_PER_CELL:-2}

# Sum of a statistics column over all CPUs (3 = requests, 4 = bytes, 5 = vmruns).
total() { tail -n +3 /sys/kernel/debug/sevault/stats | awk -v c="$1" '{ s += $c } END { print s + 0 }'; }

for size in 512 4096 65536; do
    r0=$(total 2); b0=$(total 3); v0=$(total 4)
    sevault-kcheck bench --drivers cbc-aes-sevault --sizes "$size" --seconds "$SECONDS_PER_CELL" > /dev/null || exit 1
    r1=$(total 2); b1=$(total 3); v1=$(total 4)
    awk -v s="$size" -v r=$((r1 - r0)) -v b=$((b1 - b0)) -v v=$((v1 - v0)) 'BEGIN {
        printf "BENCH stats size %d requests %d vmruns %d bytes %d vmruns_per_request %.3f bytes_per_vmrun %.0f\n", s, r, v, b, v / r, b / v }'
done

echo "BENCH throughput (TCG-emulated; ratios only)"
sevault-kcheck bench --drivers cbc-aes-sevault,cbc-aes-aesni,'cbc(aes-generic)' --sizes 512,4096,16384,65536 --seconds "$SECONDS_PER_CELL" || exit 1
sevault-kcheck bench --drivers ecb-aes-sevault,ecb-aes-aesni,'ecb(aes-generic)' --sizes 512,4096,16384,65536 --seconds "$SECONDS_PER_CELL" || exit 1

# Scaling from one CPU to two: the same 4 KiB CBC load on CPU 0 alone, then on CPUs 0 and 1
# at once (one process each, pinned), for the vault and for AES-NI; each measured twice,
# alternating, and the better of the two kept (the emulator's host is shared).
mbps() { awk '$1 == 4096 && $2 == d { print $3 }' d="$1"; }
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b) ? a : b }'; }
one_cpu() { taskset 1 sevault-kcheck bench --drivers "$1" --sizes 4096 --seconds "$SECONDS_PER_CELL" | mbps "$1"; }
two_cpus() {
    taskset 1 sevault-kcheck bench --drivers "$1" --sizes 4096 --seconds "$SECONDS_PER_CELL" > /tmp/cpu0 &
    taskset 2 sevault-kcheck bench --drivers "$1" --sizes 4096 --seconds "$SECONDS_PER_CELL" > /tmp/cpu1
    wait
    awk -v a="$(mbps "$1" < /tmp/cpu0)" -v b="$(mbps "$1" < /tmp/cpu1)" 'BEGIN { print a + b }'
}
for driver in cbc-aes-sevault cbc-aes-aesni; do
    one_a=$(one_cpu "$driver"); two_a=$(two_cpus "$driver"); one_b=$(one_cpu "$driver"); two_b=$(two_cpus "$driver")
    one=$(best "$one_a" "$one_b"); two=$(best "$two_a" "$two_b")
    awk -v d="$driver" -v one="$one" -v two="$two" 'BEGIN {
        printf "BENCH scaling %s 4096 B: 1 CPU %.2f MB/s, 2 CPUs %.2f MB/s (x%.2f; better of two runs each)\n", d, one, two, two / one }'
done
cat /sys/kernel/debug/sevault/stats
rmmod sevault
