#!/bin/sh
# Every algorithm registered in the kernel reports `selftest : passed` (testmgr ran on
# registration), and the AES drivers we compare against are there.
awk -F': ' '
    /^driver/   { driver = $2 }
    /^selftest/ { if ($2 == "passed") passed++; else { print "selftest " $2 ": " driver; failed++ } }
    END         { print passed + 0 " algorithms passed their self-tests, " failed + 0 " did not"; exit failed > 0 }
' /proc/crypto || exit 1
for driver in cbc-aes-aesni ecb-aes-aesni; do
    if grep -q "^driver *: $driver\$" /proc/crypto; then
        echo "driver $driver: registered"
    else
        echo "driver $driver: MISSING"
        exit 1
    fi
done
