#!/bin/sh
# rmmod and insmod 20 times; every load passes the self-tests again and serves a NIST vector.
key=2b7e151628aed2a6abf7158809cf4f3c
echo "$key" | xxd -r -p > /tmp/key
plain=6bc1bee22e409f96e93d7e117393172a
expect=3ad77bb40d7a3660a89ecaf32466ef97
grep -q '^sevault ' /proc/modules || insmod "$SEVAULT_KO" || exit 1
for i in $(seq 1 20); do
    rmmod sevault || { echo "rmmod $i failed"; exit 1; }
    insmod "$SEVAULT_KO" || { echo "insmod $i failed"; exit 1; }
    passed=$(awk -F': ' '/^driver/ { d = $2 } /^selftest/ && d ~ /sevault/ && $2 == "passed" { n++ } END { print n + 0 }' /proc/crypto)
    got=$(echo "$plain" | xxd -r -p | kcapi-enc -e -c ecb-aes-sevault --keyfd 3 3</tmp/key | xxd -p)
    if [ "$passed" -lt 4 ] || [ "$got" != "$expect" ]; then
        echo "reload $i: $passed self-tests passed, F.1.1 gave $got"
        exit 1
    fi
done
echo "20 reloads: self-tests passed and F.1.1 right after every load"
rmmod sevault && echo "unloaded"
