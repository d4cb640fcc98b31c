#!/bin/sh
# XTS and CTR on the vault against the kernel's generic code (random keys of every size,
# random IVs, lengths with and without a partial last block, both CPUs at once), their
# errnos on bad inputs, and gcm(aes) built by the kernel's template on ctr-aes-sevault: its
# instantiation runs testmgr's gcm(aes) vectors through the vault.
status=0
# Modules on 6.1; some are built into 6.12 (modprobe then finds nothing to load).
for module in xts ctr gcm ghash-generic algif_aead; do
    modprobe "$module" 2>/dev/null || grep -q "/$module.ko" "/lib/modules/$(uname -r)/modules.builtin" 2>/dev/null ||
        echo "modprobe $module failed (the checks below show whether it matters)"
done
sevault-kcheck diff --driver xts-aes-sevault --reference 'xts(ecb(aes-generic))' --cases 1000 || status=1
sevault-kcheck diff --driver ctr-aes-sevault --reference 'ctr(aes-generic)' --cases 1000 || status=1
sevault-kcheck errors --driver xts-aes-sevault --reference 'xts(ecb(aes-generic))' || status=1
sevault-kcheck errors --driver ctr-aes-sevault --reference 'ctr(aes-generic)' || status=1
gcm='gcm_base(ctr-aes-sevault,ghash-generic)'
sevault-kcheck instantiate --type aead --name "$gcm" || status=1
# Its /proc/crypto entry, larvals left out.
result=$(awk -v RS= -v d="$gcm" '{
    drv = ""; typ = ""; st = ""; n = split($0, line, "\n")
    for (i = 1; i <= n; i++) { split(line[i], kv, /[ \t]*: /); if (kv[1] == "driver") drv = kv[2]; if (kv[1] == "type") typ = kv[2]; if (kv[1] == "selftest") st = kv[2] }
    if (drv == d && typ != "larval") print st
}' /proc/crypto)
echo "driver $gcm: selftest ${result:-MISSING}"
[ "$result" = passed ] || status=1
cat /sys/kernel/debug/sevault/stats
exit $status
