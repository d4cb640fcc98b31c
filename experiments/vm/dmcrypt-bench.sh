#!/bin/sh
# Runs inside the nested VM (`cargo xtask bench-dmcrypt`): fio through a dm-crypt device
# (XTS, AES-256, plain64 IVs, a 128 MiB ramdisk) for four ciphers — the vault batched
# (capi:xts-aes-sevault, max_batch=16, the default), the vault unbatched (max_batch=0: one
# request per VMRUN, the simd/cryptd path), the kernel's AES-NI driver (capi:xts-aes-aesni)
# and generic AES (capi:xts(ecb(aes-generic))) — at dm-crypt sector sizes 512 and 4096,
# sequential and random, reads and writes: 4 KiB blocks, O_DIRECT, libaio with 8 in flight,
# two jobs (one writer per CPU). Then the vault alone at 4096-byte sectors, random writes
# and reads, for max_batch 1, 2, 4, 8, 16 (the "sweep"), and at max_batch 16 for fio queue
# depths 1, 4, 16, 32 per job (the "depth" series; the matrix is depth 8); and the vault
# batched and AES-NI at 4096-byte sectors with 16 and 64 KiB blocks (the "block" series; the
# matrix uses 4 KiB blocks); and the vault at 4096-byte sectors, random I/O, with its worker
# at the workqueue's own priority (worker_nice=0, the "nice0" series; the default is 19).
# The vault's statistics give its
# requests, VMRUNs and batches per fio run. Under QEMU TCG every figure is an emulation
# artefact: only ratios within one run mean anything.
# Prints, per run, BENCH-FIO-BEGIN <series> <cipher> <sector> <pattern> <max_batch>
# <iodepth> <block bytes>, fio's JSON, then BENCH-FIO-END <requests> <vmruns> <bytes>
# <batches> (the vault's counters over
# the run; max_batch 0 for the kernel's drivers).
SECONDS_PER_RUN=${SECONDS_PER_RUN:-3}
# (Re)loads the vault with max_batch $1.
load() {
    grep -q '^sevault ' /proc/modules && { rmmod sevault || return 1; }
    insmod "$SEVAULT_KO" max_batch="$1"
}
load 16 || exit 1
for module in brd dm-crypt xts; do
    modprobe "$module" $( [ "$module" = brd ] && echo rd_nr=1 rd_size=131072 ) 2>/dev/null ||
        grep -q "/$module.ko" "/lib/modules/$(uname -r)/modules.builtin" || { echo "modprobe $module failed"; exit 1; }
done
export DM_DISABLE_UDEV=1
# Requests, VMRUNs, bytes and batches of all vCPUs.
vault_stats() { awk 'NR > 2 { r += $2; v += $4; b += $3; n += $16 } END { print r + 0, v + 0, b + 0, n + 0 }' /sys/kernel/debug/sevault/stats; }
key=$(dd if=/dev/urandom bs=64 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')
sectors=$(( $(cat /sys/block/ram0/size) ))
status=0
# One fio run on the open device: series $1, label $2 (cipher), sector $3, pattern $4,
# max_batch $5, queue depth $6, block size $7 (bytes).
fio_run() {
    set -- "$@" $(vault_stats)
    echo "BENCH-FIO-BEGIN $1 $2 $3 $4 $5 $6 $7"
    fio --name=bench --filename=/dev/mapper/bench --direct=1 --ioengine=libaio --iodepth="$6" \
        --numjobs=2 --group_reporting --bs="$7" --rw="$4" --size=48M --offset_increment=64M \
        --time_based --runtime="$SECONDS_PER_RUN" --output-format=json || status=1
    r0=$8 v0=$9 b0=${10} n0=${11}
    set -- $(vault_stats)
    echo "BENCH-FIO-END $(( $1 - r0 )) $(( $2 - v0 )) $(( $3 - b0 )) $(( $4 - n0 ))"
}
# The device for cipher $1 at sector size $2.
open_device() {
    options=""
    [ "$2" = 4096 ] && options=" 1 sector_size:4096"
    echo "0 $sectors crypt capi:$1-plain64 $key 0 /dev/ram0 0$options" | dmsetup create bench ||
        { echo "dmsetup create with capi:$1-plain64 failed"; status=1; return 1; }
    echo "BENCH-TABLE $1 $2 $(dmsetup table bench | awk '{ print $4 }')"
}
for variant in sevault:16 sevault:0 aesni generic; do
    batch=0
    case $variant in
        sevault:*) cipher=xts-aes-sevault batch=${variant#sevault:}; load "$batch" || { status=1; continue; } ;;
        aesni) cipher=xts-aes-aesni ;;
        generic) cipher='xts(ecb(aes-generic))' ;;
    esac
    for sector in 512 4096; do
        open_device "$cipher" "$sector" || continue
        for pattern in write read randwrite randread; do
            fio_run matrix "$cipher" "$sector" "$pattern" "$batch" 8 4096
        done
        # Larger blocks at 4096-byte sectors: dm-crypt sends one request per sector of each
        # block, several at once.
        case $sector:$variant in
            4096:sevault:16 | 4096:aesni)
                for block in 16384 65536; do
                    for pattern in write randwrite; do
                        fio_run block "$cipher" "$sector" "$pattern" "$batch" 8 "$block"
                    done
                done ;;
        esac
        dmsetup remove bench || status=1
    done
done
for batch in 1 2 4 8 16; do
    load "$batch" || { status=1; continue; }
    open_device xts-aes-sevault 4096 || continue
    for pattern in randwrite randread; do
        fio_run sweep xts-aes-sevault 4096 "$pattern" "$batch" 8 4096
    done
    [ "$batch" = 16 ] && for depth in 1 4 16 32; do
        fio_run depth xts-aes-sevault 4096 randwrite 16 "$depth" 4096
    done
    dmsetup remove bench || status=1
done
# The worker's priority: the vault batched with its worker at the workqueue's own priority
# (worker_nice=0) instead of the default 19, at 4096-byte sectors, random I/O (the "nice0"
# series; the matrix has the default).
if load 16 && echo 0 > /sys/module/sevault/parameters/worker_nice && open_device xts-aes-sevault 4096; then
    for pattern in randwrite randread; do
        fio_run nice0 xts-aes-sevault 4096 "$pattern" 16 8 4096
    done
    dmsetup remove bench || status=1
else
    status=1
fi
cat /sys/kernel/debug/sevault/stats
rmmod sevault
exit $status
