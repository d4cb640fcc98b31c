#!/bin/sh
# Booted with two CPUs of which only cpu0 is online (maxcpus=1; cargo xtask test adds it).
# The vault makes a vCPU when its CPU comes online, not one for every possible CPU at load:
# cpu1 gets its vCPU (32 KiB more, debugfs) when it is onlined with sevault loaded, serves
# requests checked against the kernel's own AES, keeps its vCPU across an offline/online
# cycle, and a CPU offline at unload gives its vCPU back.
[ -n "$SEVAULT_KO" ] || { echo "no vault module in this image"; exit 1; }
online=/sys/devices/system/cpu/cpu1/online
stats=/sys/kernel/debug/sevault/stats
[ -e $online ] || { echo "no cpu1 in sysfs: was the VM started with two CPUs?"; exit 1; }
[ "$(cat $online)" = 0 ] || { echo "expected cpu1 offline at boot (maxcpus=1)"; exit 1; }
memory() { sed -n '1s/.* memory_kib \([0-9]*\).*/\1/p' $stats; }
vcpus() { awk 'NR > 2 { printf "%s ", $1 }' $stats; }
requests_on_cpu1() { awk 'NR > 2 && $1 == 1 { print $2 }' $stats; }
expect_vcpus() {
    [ "$(vcpus)" = "$1" ] || { echo "FAIL: $2: vCPUs for CPUs '$(vcpus)', expected '$1'"; status=1; }
}
# busybox's rmmod is non-blocking: right after an insmod the algorithms' self-tests (or a
# closing AF_ALG socket) may still hold the module (EAGAIN); retry for up to 5 s.
unload() {
    for try in $(seq 50); do rmmod sevault 2>/dev/null && return 0; sleep 0.1; done
    rmmod sevault
}
status=0
insmod "$SEVAULT_KO" || { echo "insmod failed"; exit 1; }
dmesg | grep 'sevault: vault ready' | tail -1 | sed 's/^\[[ 0-9.]*\] //'
before=$(memory)
echo "cpu1 offline: vCPUs for CPUs $(vcpus)(debugfs), memory $before KiB"
expect_vcpus "0 " "loaded with cpu1 offline"
echo 1 > $online || { echo "FAIL: onlining cpu1 with sevault loaded"; exit 1; }
after=$(memory)
echo "cpu1 online: vCPUs for CPUs $(vcpus), memory $after KiB"
expect_vcpus "0 1 " "cpu1 onlined"
[ $((after - before)) -eq 32 ] || { echo "FAIL: the new vCPU took $((after - before)) KiB, expected 32"; status=1; }
# One pinned thread per online CPU, then cpu1 alone.
sevault-kcheck diff --driver cbc-aes-sevault --reference 'cbc(aes-generic)' --cases 300 --max-len 16384 || status=1
taskset 2 sevault-kcheck diff --driver xts-aes-sevault --reference 'xts(ecb(aes-generic))' --cases 200 --max-len 16384 \
    --threads 1 || status=1
served=$(requests_on_cpu1)
echo "requests served by cpu1's vCPU: ${served:-none}"
[ "${served:-0}" -gt 0 ] || { echo "FAIL: cpu1's vCPU served no request"; status=1; }
echo 0 > $online && echo 1 > $online || { echo "FAIL: cpu1 offline/online cycle"; status=1; }
cycled=$(memory)
[ "$cycled" = "$after" ] || { echo "FAIL: memory changed across an offline/online cycle: $after -> $cycled KiB"; status=1; }
expect_vcpus "0 1 " "after an offline/online cycle"
taskset 2 sevault-kcheck diff --driver ecb-aes-sevault --reference 'ecb(aes-generic)' --cases 100 --threads 1 || status=1
[ "$(requests_on_cpu1)" -gt "${served:-0}" ] || { echo "FAIL: cpu1 served nothing after the cycle"; status=1; }
unload || exit 1
# Loaded with both CPUs online: both vCPUs at load; then cpu1 goes offline before unload.
insmod "$SEVAULT_KO" || { echo "insmod with both CPUs online failed"; exit 1; }
expect_vcpus "0 1 " "loaded with both CPUs online"
echo 0 > $online || status=1
unload || { echo "FAIL: rmmod with cpu1 offline"; exit 1; }
echo 1 > $online || status=1
[ $status -eq 0 ] && echo "kcheck cpu-online: ok"
exit $status
