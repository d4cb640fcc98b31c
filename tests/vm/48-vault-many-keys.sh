#!/bin/sh
# An unprivileged user keys 20 000 transforms of the vault and holds them; meanwhile a new
# kernel setkey (a fresh transform, from another process, as root) still works and gives
# the NIST SP 800-38A F.2.1 ciphertext; then every held key is checked and re-keyed.
# (Before key slots were backed on demand the vault had 1024 for the whole machine.)
grep -q '^sevault ' /proc/modules || insmod "$SEVAULT_KO" || exit 1
key=2b7e151628aed2a6abf7158809cf4f3c
iv=000102030405060708090a0b0c0d0e0f
plain=6bc1bee22e409f96e93d7e117393172a
expect=7649abac8119b246cee98e9b12e9197d
echo "$key" | xxd -r -p > /tmp/nist-key
pause=/tmp/many-keys.pause
rm -f "$pause"
# debugfs: key slots backed and the module's memory in KiB.
stat() { awk -v want="$1" '{ for (i = 1; i < NF; i++) if ($i == want) print $(i + 1); exit }' /sys/kernel/debug/sevault/stats; }
slots0=$(stat key_slots) memory0=$(stat memory_kib)
sevault-kcheck setkey-stress --driver cbc-aes-sevault --count 20000 --rounds 1 --as-user 65534 --pause-file "$pause" &
stress=$!
i=0
while [ ! -e "$pause" ] && [ $i -lt 1200 ] && kill -0 $stress 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
status=0
if [ -e "$pause" ]; then
    echo "held by uid 65534: $(cat $pause)"
    got=$(echo "$plain" | xxd -r -p | kcapi-enc -e -c cbc-aes-sevault --iv "$iv" --keyfd 3 3</tmp/nist-key | xxd -p)
    echo "a fresh transform meanwhile (root, kcapi-enc): F.2.1 block 1 gave $got"
    [ "$got" = "$expect" ] || { echo "expected $expect"; status=1; }
    slots=$(stat key_slots) memory=$(stat memory_kib)
    echo "key slots backed: $slots (before: $slots0); module memory: $memory KiB (before: $memory0)"
    [ "${slots:-0}" -ge 20000 ] || { echo "expected at least 20000 slots backed"; status=1; }
    # Each block of 256 slots is 256 KiB; the nested page table of each 8 blocks (2 MiB of
    # slots) 4 KiB, made with its first block.
    tables() { echo $(( ($1 / 256 + 7) / 8 )); }
    expected=$(( memory0 + (slots - slots0) / 256 * 256 + ($(tables "$slots") - $(tables "$slots0")) * 4 ))
    [ "$memory" = "$expected" ] || { echo "expected $expected KiB: 256 per block and 4 per 8 blocks"; status=1; }
    rm -f "$pause"
else
    echo "the 20 000 transforms were never all keyed"; status=1
fi
wait $stress || status=1
exit $status
