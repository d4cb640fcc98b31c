#!/bin/sh
# Runs inside the nested VM (`cargo xtask bench-dmcrypt`): fio through a dm-crypt device
# (XTS, AES-256, plain64 IVs, a 128 MiB ramdisk) for three ciphers — the vault
# (capi:xts-aes-sevault), the kernel's AES-NI driver (capi:xts-aes-aesni) and generic AES
# (capi:xts(ecb(aes-generic))) — at dm-crypt sector sizes 512 and 4096, sequential and
# random, reads and writes: 4 KiB blocks, O_DIRECT, libaio with 8 in flight, two jobs (one
# writer per CPU). The vault's statistics give its requests and VMRUNs per fio run. Under
# QEMU TCG every figure is an emulation artefact: only ratios within one run mean anything.
# Prints, per run, BENCH-FIO-BEGIN <cipher> <sector> <pattern>, fio's JSON, then
# BENCH-FIO-END <requests> <vmruns> <bytes> (the vault's counters over the run).
SECONDS_PER_RUN=${SECONDS_PER_RUN:-3}
insmod "$SEVAULT_KO" || exit 1
for module in brd dm-crypt xts; do
    modprobe "$module" $( [ "$module" = brd ] && echo rd_nr=1 rd_size=131072 ) 2>/dev/null ||
        grep -q "/$module.ko" "/lib/modules/$(uname -r)/modules.builtin" || { echo "modprobe $module failed"; exit 1; }
done
export DM_DISABLE_UDEV=1
# Requests, VMRUNs and bytes of all vCPUs.
vault_stats() { awk 'NR > 2 { r += $2; v += $4; b += $3 } END { print r + 0, v + 0, b + 0 }' /sys/kernel/debug/sevault/stats; }
key=$(dd if=/dev/urandom bs=64 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')
sectors=$(( $(cat /sys/block/ram0/size) ))
status=0
for cipher in xts-aes-sevault xts-aes-aesni 'xts(ecb(aes-generic))'; do
    for sector in 512 4096; do
        options=""
        [ "$sector" = 4096 ] && options=" 1 sector_size:4096"
        echo "0 $sectors crypt capi:$cipher-plain64 $key 0 /dev/ram0 0$options" | dmsetup create bench ||
            { echo "dmsetup create with capi:$cipher-plain64 failed"; status=1; continue; }
        driver=$(dmsetup table bench | awk '{ print $4 }')
        echo "BENCH-TABLE $cipher $sector $driver"
        for pattern in write read randwrite randread; do
            set -- $(vault_stats)
            r0=$1 v0=$2 b0=$3
            echo "BENCH-FIO-BEGIN $cipher $sector $pattern"
            fio --name=bench --filename=/dev/mapper/bench --direct=1 --ioengine=libaio --iodepth=8 \
                --numjobs=2 --group_reporting --bs=4k --rw=$pattern --size=48M --offset_increment=64M \
                --time_based --runtime="$SECONDS_PER_RUN" --output-format=json || status=1
            set -- $(vault_stats)
            echo "BENCH-FIO-END $(( $1 - r0 )) $(( $2 - v0 )) $(( $3 - b0 ))"
        done
        dmsetup remove bench || status=1
    done
done
cat /sys/kernel/debug/sevault/stats
rmmod sevault
exit $status
