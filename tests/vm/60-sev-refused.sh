#!/bin/sh
# sev=es (and sev) are refused cleanly where the CPU offers no SEV — QEMU's emulated EPYC
# has none — with a message naming what is missing, and nothing left loaded; sev=snp is
# refused as unknown; plain SVM still loads afterwards.
grep -q '^sevault ' /proc/modules && rmmod sevault
status=0
for mode in es sev snp; do
    if insmod "$SEVAULT_KO" sev=$mode 2>/dev/null; then
        echo "sev=$mode: loaded, but it must be refused here"
        rmmod sevault
        status=1
    else
        echo "sev=$mode: refused: $(dmesg | grep "sevault: .*sev=$mode" | tail -1 | sed 's/^\[[^]]*\] //')"
    fi
done
grep -q '^sevault ' /proc/modules && { echo "something stayed loaded"; status=1; }
# sev=sev is labelled for what it is before anything else is tried.
if dmesg | grep -q 'sevault: sev=sev: memory encryption without register protection: no key confidentiality'; then
    echo "sev=sev: labelled at load as memory encryption without key confidentiality"
else
    echo "sev=sev: the load did not say that it protects no key"; status=1
fi
# On 6.12 the self-test thread still holds the algorithms for a moment after insmod
# returns, and busybox's rmmod (non-blocking) then says EAGAIN: retry for up to 5 s.
unload() {
    for try in $(seq 50); do rmmod sevault 2>/dev/null && return 0; sleep 0.1; done
    rmmod sevault
}
insmod "$SEVAULT_KO" && unload && echo "plain SVM (sev=off) loads and unloads" || status=1
exit $status
