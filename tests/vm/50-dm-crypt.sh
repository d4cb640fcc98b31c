#!/bin/sh
# dm-crypt as a real client of the vault: LUKS2 with cryptsetup's default cipher
# (aes-xts-plain64, a 512-bit key: AES-256-XTS) on a 64 MiB ramdisk, for sector sizes 512
# and 4096, and aes-cbc-plain64 (AES-256-CBC, the sector number as IV) at 4096: luksFormat,
# open, mkfs.ext4, write a known pattern, read it back after dropping the page cache, fsck -f
# clean, with the vault's statistics showing the requests arrived (for CBC: that some of its
# encryptions ran as CBC streams, the writes' sectors queued together); then the same
# device opened with the kernel's generic code (the volume's own table with
# capi:xts(ecb(aes-generic))-plain64 or capi:cbc(aes-generic)-plain64) reads the same
# plaintext and the vault sees no requests.
# PBKDF2 with few iterations: the key slot's KDF is not what is tested, and Argon2's memory
# cost under emulation would only slow the run.
status=0
fail() { echo "FAILED: $*"; status=1; }
# The vault must be the xts(aes) the volume gets (an earlier script may have unloaded it).
grep -q '^sevault ' /proc/modules || insmod "$SEVAULT_KO" || { echo "insmod failed"; exit 1; }
for module in brd dm-crypt crc32c_generic ext4 xts; do
    modprobe "$module" $( [ "$module" = brd ] && echo rd_nr=1 rd_size=65536 ) 2>/dev/null ||
        grep -q "/$module.ko" "/lib/modules/$(uname -r)/modules.builtin" || { echo "modprobe $module failed"; exit 1; }
done
export DM_DISABLE_UDEV=1
mkdir -p /mnt/volume /run/cryptsetup
# Requests, bytes, VMRUNs and requests served as CBC streams, of all vCPUs.
vault_stats() { awk 'NR > 2 { r += $2; b += $3; v += $4; s += $17 } END { print r + 0, b + 0, v + 0, s + 0 }' /sys/kernel/debug/sevault/stats; }
dd if=/dev/urandom of=/tmp/pattern bs=1024 count=4096 2>/dev/null
# One volume (sector size $1, cipher $2, key bits $3, the generic code's capi spec $4):
# every step must work, else the rest of it is skipped.
volume() {
    sector=$1 cipher=$2 generic=$4
    echo "== LUKS2, $cipher, sector size $sector"
    printf 'vault-%s' "$sector" > /tmp/passphrase
    cryptsetup luksFormat --batch-mode --type luks2 --cipher "$cipher" --key-size "$3" --sector-size "$sector" --pbkdf pbkdf2 \
        --pbkdf-force-iterations 1000 --key-file /tmp/passphrase --disable-locks /dev/ram0 || { fail "luksFormat"; return; }
    cryptsetup luksDump /dev/ram0 | grep -E '^\s*(cipher|Key|sector|offset):' | sort -u
    set -- $(vault_stats)
    r0=$1 b0=$2 v0=$3 s0=$4
    cryptsetup open --key-file /tmp/passphrase --disable-keyring --disable-locks /dev/ram0 vault || { fail "open"; return; }
    table=$(dmsetup table --showkeys vault)
    echo "table: $(echo "$table" | sed 's/ [0-9a-f]\{64,128\} / <key> /')"
    # e2fsprogs' own tools (busybox has applets of the same names).
    # -F: no question if the fresh volume's random bytes happen to look like a signature
    # (once seen: "contains a jmicron_raid_member file system. Proceed anyway?").
    /sbin/mke2fs -F -q -t ext4 /dev/mapper/vault || { fail "mkfs.ext4"; cryptsetup close vault; return; }
    mount -t ext4 /dev/mapper/vault /mnt/volume || { fail "mount"; cryptsetup close vault; return; }
    cp /tmp/pattern /mnt/volume/pattern && sync || fail "write"
    umount /mnt/volume
    echo 3 > /proc/sys/vm/drop_caches
    mount -t ext4 -o ro /dev/mapper/vault /mnt/volume || { fail "mount again"; cryptsetup close vault; return; }
    if cmp /tmp/pattern /mnt/volume/pattern; then echo "pattern read back through the vault: same 4 MiB"; else fail "pattern differs"; fi
    umount /mnt/volume
    if /sbin/e2fsck -f -n /dev/mapper/vault > /tmp/fsck.log 2>&1; then echo "fsck -f: clean"; else cat /tmp/fsck.log; fail "fsck"; fi
    cryptsetup close vault
    set -- $(vault_stats)
    requests=$(( $1 - r0 )) bytes=$(( $2 - b0 )) vmruns=$(( $3 - v0 )) streamed=$(( $4 - s0 ))
    echo "vault while the volume was open: $requests requests, $bytes bytes, $vmruns VMRUNs" \
        "($(awk -v v="$vmruns" -v r="$requests" 'BEGIN { printf "%.3f", r ? v / r : 0 }') VMRUNs per request," \
        "$(awk -v b="$bytes" -v v="$vmruns" 'BEGIN { printf "%.0f", v ? b / v : 0 }') bytes per VMRUN)," \
        "$streamed requests as CBC streams"
    [ "$requests" -gt 0 ] || fail "no request reached the vault"
    case $cipher in
        aes-cbc-*) [ "$streamed" -gt 0 ] || fail "no CBC encryption ran as a stream" ;;
        *) [ "$streamed" -eq 0 ] || fail "$streamed requests of $cipher ran as CBC streams" ;;
    esac
    # The same ciphertext through the kernel's generic code.
    generic_table=$(echo "$table" | sed "s/ $cipher / $generic /")
    echo "$generic_table" | grep -qF " $generic " || { fail "unexpected table"; return; }
    set -- $(vault_stats)
    r0=$1
    echo "$generic_table" | dmsetup create generic || { fail "dmsetup create generic"; return; }
    if mount -t ext4 -o ro /dev/mapper/generic /mnt/volume; then
        if cmp /tmp/pattern /mnt/volume/pattern; then echo "pattern read back through $generic: same 4 MiB"; else fail "generic read differs"; fi
        umount /mnt/volume
    else
        fail "mount generic"
    fi
    if /sbin/e2fsck -f -n /dev/mapper/generic > /tmp/fsck.log 2>&1; then echo "fsck -f (generic): clean"; else cat /tmp/fsck.log; fail "fsck generic"; fi
    dmsetup remove generic
    set -- $(vault_stats)
    echo "vault requests while the generic device was open: $(( $1 - r0 ))"
    [ "$(( $1 - r0 ))" -eq 0 ] || fail "the generic device used the vault"
}
for sector in 512 4096; do
    volume "$sector" aes-xts-plain64 512 'capi:xts(ecb(aes-generic))-plain64'
done
volume 4096 aes-cbc-plain64 256 'capi:cbc(aes-generic)-plain64'
exit $status
