#!/bin/sh
# rmmod and insmod 20 times, alternating the batched drivers (default) and the simd wrapper
# (max_batch=0); every load passes the self-tests again and serves a NIST vector.
key=2b7e151628aed2a6abf7158809cf4f3c
echo "$key" | xxd -r -p > /tmp/key
plain=6bc1bee22e409f96e93d7e117393172a
expect=3ad77bb40d7a3660a89ecaf32466ef97
grep -q '^sevault ' /proc/modules || insmod "$SEVAULT_KO" || exit 1
# Self-test verdicts of the vault's drivers: "passed failed pending" counts. 6.12 runs the
# self-tests asynchronously, so right after insmod some may still hold the module.
verdicts() {
    awk -F': ' '/^driver/ { d = $2 } /^selftest/ && d ~ /sevault/ { if ($2 == "passed") p++; else if ($2 == "unknown") u++; else f++ }
        END { print p + 0, f + 0, u + 0 }' /proc/crypto
}
# rmmod; "busy" (EAGAIN: a self-test or a closing socket still holds a reference) is retried
# for up to 5 s, anything else fails at once.
unload() {
    tries=0
    until out=$(rmmod sevault 2>&1); do
        case "$out" in *"temporarily unavailable"*) ;; *) echo "$out"; return 1 ;; esac
        tries=$((tries + 1))
        [ $tries -lt 20 ] || { echo "$out (still busy after 5 s)"; return 1; }
        sleep 0.25
    done
    [ $tries -eq 0 ] || echo "rmmod: busy for $tries retries of 0.25 s"
}
for i in $(seq 1 20); do
    unload || { echo "rmmod $i failed"; exit 1; }
    params=$([ $((i % 2)) = 1 ] && echo max_batch=0)
    # shellcheck disable=SC2086
    insmod "$SEVAULT_KO" $params || { echo "insmod $i ($params) failed"; exit 1; }
    # Every verdict in before counting (at most 10 s).
    n=0
    while set -- $(verdicts) && [ "$3" -gt 0 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
    [ "$2" -eq 0 ] || { echo "reload $i: $2 self-tests failed"; exit 1; }
    passed=$1
    got=$(echo "$plain" | xxd -r -p | kcapi-enc -e -c ecb-aes-sevault --keyfd 3 3</tmp/key | xxd -p)
    if [ "$passed" -lt 4 ] || [ "$got" != "$expect" ]; then
        echo "reload $i ($params): $passed self-tests passed, F.1.1 gave $got"
        exit 1
    fi
done
echo "20 reloads (10 batched, 10 with max_batch=0): self-tests passed and F.1.1 right after every load"
unload && echo "unloaded"
