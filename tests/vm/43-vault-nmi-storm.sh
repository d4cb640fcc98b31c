#!/bin/sh
# The vault under NMIs and interrupts, as a real AMD host delivers them: the harness injects
# an NMI every 2 ms through the QEMU monitor while the differential test runs on every CPU
# (requests up to 64 KiB, long enough for timer interrupts to land inside them). Every NMI
# and interrupt exit must be resumed exactly where the vault was: 0 mismatches, 0 errors,
# 0 rebuilds, and both exit counters above 0.
grep -q '^sevault ' /proc/modules || insmod "$SEVAULT_KO" || exit 1
stats=/sys/kernel/debug/sevault/stats
# Sum of a statistics column (by its header name) over all CPUs.
column() {
    awk -v c="$1" 'NR == 2 { for (i = 1; i <= NF; i++) if ($i == c) k = i } NR > 2 { s += $k } END { print s + 0 }' "$stats"
}
nmi_count() { awk '/^ *NMI:/ { s = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i; print s }' /proc/interrupts; }
rebuilds_before=$(awk '{ print $4; exit }' "$stats")
nmi_exits_before=$(column exits_nmi)
intr_exits_before=$(column exits_intr)
errors_before=$(column errors)
nmis_before=$(nmi_count)
echo "SEVAULT-NMI-STORM-BEGIN 2000"
# Wait (at most 10 s) until NMIs arrive, so that the test runs inside the storm.
i=0
while [ "$(nmi_count)" -le "$nmis_before" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
status=0
sevault-kcheck diff --driver cbc-aes-sevault --reference 'cbc(aes-generic)' --cases 300 || status=1
sevault-kcheck diff --driver ecb-aes-sevault --reference 'ecb(aes-generic)' --cases 300 || status=1
echo "SEVAULT-NMI-STORM-END"
nmis=$(( $(nmi_count) - nmis_before ))
nmi_exits=$(( $(column exits_nmi) - nmi_exits_before ))
intr_exits=$(( $(column exits_intr) - intr_exits_before ))
errors=$(( $(column errors) - errors_before ))
rebuilds=$(( $(awk '{ print $4; exit }' "$stats") - rebuilds_before ))
echo "nmi-storm: $nmis NMIs reached the guest kernel; vault exits during the test: $nmi_exits NMI, $intr_exits INTR; $errors request errors, $rebuilds rebuilds"
cat "$stats"
[ "$nmi_exits" -gt 0 ] || { echo "no NMI exit from the vault: the storm did not reach it"; status=1; }
[ "$intr_exits" -gt 0 ] || { echo "no interrupt exit from the vault"; status=1; }
[ "$errors" -eq 0 ] || { echo "requests failed during the storm"; status=1; }
[ "$rebuilds" -eq 0 ] || { echo "the vault was rebuilt during the storm"; status=1; }
exit $status
