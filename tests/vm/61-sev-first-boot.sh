#!/bin/sh
# The EPYC first-boot script (experiments/sev-first-boot/first-boot.sh, in the image as
# sevault-sev-first-boot) runs its whole --load path here, where the emulated EPYC has SVM
# but no SEV: it must find SVM, see that CPUID has no leaf 0x8000001F (QEMU's EPYC-v3 stops
# at 0x8000001E, and answers the leaf with leaf 0xD's data: EAX 7 would read as SEV), report SEV and
# SEV-ES missing, record the module's own refusal, and exit 1. A passing verdict here would
# mean the script cannot tell a machine that cannot run sev=es.
out=/tmp/first-boot.md
grep -q '^sevault ' /proc/modules && rmmod sevault
sevault-sev-first-boot --load --ko "$SEVAULT_KO" --out $out
rc=$?
sed 's/^/report| /' $out
status=0
expect() { # expect PATTERN WHAT
    if grep -q -- "$1" $out; then echo "report has $2"; else echo "report lacks $2 ($1)"; status=1; fi
}
[ $rc = 1 ] && echo "exit status 1 (checks failed), as it must be here" || { echo "exit status $rc, expected 1"; status=1; }
expect '^| SVM | ok |' "SVM found"
expect '^- CPUID 0x8000001F: absent (highest extended leaf 8000001e)' "CPUID read through /dev/cpu/0/cpuid, leaf 0x8000001F absent"
expect '^- CPUID 0x8000000A: .*NRIPS 0' "CPUID 0x8000000A read (TCG: no NRIPS)"
expect '^| SEV | FAIL |' "SEV missing"
expect '^| SEV-ES | FAIL |' "SEV-ES missing"
expect '^insmod: refused' "the refused insmod"
expect 'cannot load with sev=es: this CPU offers no SEV' "the module's reason"
expect 'Verdict: [0-9]* check(s) failed' "a failing verdict"
grep -q '^sevault ' /proc/modules && { echo "the module stayed loaded"; status=1; }
exit $status
