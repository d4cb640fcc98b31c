#!/bin/sh
# SE-Vault Mini: the first boot on an EPYC, as thesis-notes/sev-plan.md's checklist has it.
# Collects what the CPU, firmware and kernel offer for sev=es, checks each prerequisite,
# computes the expected launch digest of the image for this machine, and with --load loads
# sevault.ko sev=es, records what it logs, the crypto self-tests and the teardown at rmmod.
# Everything goes into one Markdown report to send back.
#
# usage: first-boot.sh [--load] [--ko FILE] [--image FILE] [--mode es|sev] [--out FILE]
#                      [--sev-launch 'COMMAND']
#   --load        insmod the module (root), check its self-tests, rmmod it; without it,
#                 nothing is loaded and the script only reads
#   --ko FILE     the module (default target/sevault/$(uname -r)/sevault.ko)
#   --image FILE  the vault image the module embeds (default target/sevault/guest.bin), for
#                 the expected digest
#   --mode        sev=es (default) or sev=sev
#   --out FILE    the report (default experiments/results/sev-first-boot-HOST-DATE.md)
#   --sev-launch  how to run sev-launch (default: cargo run -q -p sevault-sev-launch --,
#                 when cargo and the repository are there; otherwise no digest)
# Exit status: 0 if every prerequisite holds (and, with --load, the module loaded, its
# self-tests passed and the teardown was clean), 1 otherwise, 2 on bad usage.
# POSIX sh and busybox tools only, so it also runs in the nested test VM.

load=0
ko=""
image="target/sevault/guest.bin"
mode="es"
out=""
sev_launch=""
while [ $# -gt 0 ]; do
    case "$1" in
        --load) load=1 ;;
        --ko) ko="$2"; shift ;;
        --image) image="$2"; shift ;;
        --mode) mode="$2"; shift ;;
        --out) out="$2"; shift ;;
        --sev-launch) sev_launch="$2"; shift ;;
        *) echo "first-boot.sh: unknown option $1 (see the comment at the top)" >&2; exit 2 ;;
    esac
    shift
done
case "$mode" in es|sev) ;; *) echo "first-boot.sh: --mode es or sev" >&2; exit 2 ;; esac
release=$(uname -r)
[ -n "$ko" ] || ko="target/sevault/$release/sevault.ko"
host=$(hostname 2>/dev/null || echo host)
stamp=$(date -u +%Y%m%d-%H%M%S)
[ -n "$out" ] || out="experiments/results/sev-first-boot-$host-$stamp.md"
mkdir -p "$(dirname "$out")" 2>/dev/null
if [ -z "$sev_launch" ] && command -v cargo >/dev/null 2>&1 && [ -f sev-launch/Cargo.toml ]; then
    sev_launch="cargo run -q -p sevault-sev-launch --"
fi

failures=0
report=""
say() { report="$report$1
"; }
check() { # check NAME ok|FAIL DETAIL
    say "| $1 | $2 | $3 |"
    [ "$2" = ok ] || failures=$((failures + 1))
}

# --- CPUID, through /dev/cpu/0/cpuid (the cpuid module) where it exists ---
# The device reads 16 bytes (EAX EBX ECX EDX) at the file offset that names the leaf. A leaf
# above the highest one the CPU reports is not read: CPUs answer it with another leaf's data
# (QEMU gives the highest basic leaf's), which would read as SEV bits.
cpuid_raw() {
    dd if=/dev/cpu/0/cpuid bs=16 iflag=skip_bytes skip=$(($1)) count=1 2>/dev/null | od -An -tx4 | tr -s ' \n' '  ' | sed 's/^ //; s/ $//'
}
cpuid() { # cpuid LEAF -> "eax ebx ecx edx" in hex, or nothing (no device, or beyond the highest leaf)
    [ -r /dev/cpu/0/cpuid ] || modprobe cpuid 2>/dev/null
    [ -r /dev/cpu/0/cpuid ] || return 1
    max_ext=$(cpuid_raw 0x80000000 | cut -d' ' -f1)
    [ -n "$max_ext" ] && [ $((0x$max_ext)) -ge $(($1)) ] || return 1
    cpuid_raw "$1"
}
bit() { echo $(( (0x$1 >> $2) & 1 )); }
flag() { grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -qx "$1" && echo yes || echo no; }

sev_leaf=$(cpuid 0x8000001F)
svm_leaf=$(cpuid 0x8000000A)
say "# SE-Vault Mini: SEV first boot on $host"
say ""
say "- date (UTC): $stamp; kernel $release; command line: \`$(cat /proc/cmdline)\`"
say "- CPU: $(grep -m1 '^model name' /proc/cpuinfo | sed 's/^[^:]*: //'); $(grep -c '^processor' /proc/cpuinfo) online CPUs, possible $(cat /sys/devices/system/cpu/possible 2>/dev/null)"
say "- /proc/cpuinfo flags: svm $(flag svm), npt $(flag npt), nrip_save $(flag nrip_save), lbrv $(flag lbrv), flushbyasid $(flag flushbyasid), sme $(flag sme), sev $(flag sev), sev_es $(flag sev_es), sev_snp $(flag sev_snp)"
if [ -n "$sev_leaf" ]; then
    set -- $sev_leaf
    c_bit=$(( 0x$2 & 0x3F ))
    max_asid=$((0x$3)); min_sev_asid=$((0x$4))
    say "- CPUID 0x8000001F: EAX $1 EBX $2 ECX $3 EDX $4 — SEV $(bit "$1" 1), SEV-ES $(bit "$1" 3), SNP $(bit "$1" 4); C-bit $c_bit; SEV ASIDs up to $max_asid; SEV-ES ASIDs 1..$((min_sev_asid - 1))"
    sev=$(bit "$1" 1); sev_es=$(bit "$1" 3)
else
    c_bit=51; min_sev_asid=0
    sev=$( [ "$(flag sev)" = yes ] && echo 1 || echo 0 ); sev_es=$( [ "$(flag sev_es)" = yes ] && echo 1 || echo 0 )
    if [ -r /dev/cpu/0/cpuid ]; then
        say "- CPUID 0x8000001F: absent (highest extended leaf $(cpuid_raw 0x80000000 | cut -d' ' -f1)): no SEV; C-bit assumed 51"
    else
        say "- CPUID 0x8000001F: not readable (no /dev/cpu/0/cpuid: modprobe cpuid); from /proc/cpuinfo only, C-bit assumed 51"
    fi
fi
if [ -n "$svm_leaf" ]; then
    set -- $svm_leaf
    say "- CPUID 0x8000000A: EBX $2 ($((0x$2)) ASIDs) EDX $4 — LbrVirt $(bit "$4" 1), NRIPS $(bit "$4" 3), FlushByAsid $(bit "$4" 6)"
    lbrv=$(bit "$4" 1)
else
    lbrv=$( [ "$(flag lbrv)" = yes ] && echo 1 || echo 0 )
fi
say "- kernel log on memory encryption and the PSP:"
say '```'
lines=$(dmesg 2>/dev/null | grep -i -E 'memory encryption|SEV|ccp|psp' | grep -v -i 'sevault' | sed 's/^\[[^]]*\] //' | tail -20)
say "${lines:-(no such lines)}"
say '```'

say ""
say "## Prerequisites for sev=$mode"
say ""
say "| check | | detail |"
say "|---|---|---|"
[ "$(flag svm)" = yes ] && check "SVM" ok "cpuinfo svm" || check "SVM" FAIL "no svm flag: enable SVM in the BIOS"
[ "$sev" = 1 ] && check "SEV" ok "CPUID 0x8000001F EAX bit 1" || check "SEV" FAIL "no SEV: BIOS 'SEV' / 'SMEE' off, or not an EPYC"
if [ "$mode" = es ]; then
    [ "$sev_es" = 1 ] && check "SEV-ES" ok "CPUID 0x8000001F EAX bit 3" || check "SEV-ES" FAIL "no SEV-ES"
    if [ "$min_sev_asid" -gt 1 ] 2>/dev/null; then
        check "SEV-ES ASIDs" ok "$((min_sev_asid - 1)) (the vault takes ASID $((min_sev_asid - 1)))"
    else
        check "SEV-ES ASIDs" FAIL "none: raise the BIOS 'SEV-ES ASID space limit' above 1"
    fi
    [ "$lbrv" = 1 ] && check "LBR virtualization" ok "CPUID 0x8000000A EDX bit 1" || check "LBR virtualization" FAIL "SEV-ES needs it"
fi
if dmesg 2>/dev/null | grep -q 'Memory Encryption Features active:.*SME'; then
    check "host SME off" FAIL "SME active: boot with mem_encrypt=off (the module refuses SME hosts)"
else
    check "host SME off" ok "no 'Memory Encryption Features active: SME' in the log"
fi
[ -e /dev/sev ] && check "/dev/sev" ok "ccp's PSP device" || check "/dev/sev" FAIL "modprobe ccp; check the log for 'SEV API'"
if [ -d /sys/module/kvm_amd ]; then
    kvm_sev=$(cat /sys/module/kvm_amd/parameters/sev 2>/dev/null)
    case "$kvm_sev" in
        Y|1) check "kvm_amd without SEV" FAIL "kvm_amd is loaded with sev=$kvm_sev: rmmod kvm_amd, or modprobe kvm_amd sev=0 sev_es=0" ;;
        *) check "kvm_amd without SEV" ok "kvm_amd loaded, sev=${kvm_sev:-?}" ;;
    esac
else
    check "kvm_amd without SEV" ok "kvm_amd not loaded"
fi
[ -f "$ko" ] && check "module" ok "$ko" || check "module" FAIL "$ko missing: cargo xtask build"

# --- the expected digest (GCTX.LD) of this machine's launch ---
possible=$(cat /sys/devices/system/cpu/possible 2>/dev/null)
vcpus=$(( ${possible##*[-,]} + 1 ))
say ""
say "## Expected launch digest"
say ""
launch_mode=$( [ "$mode" = es ] && echo sev-es || echo sev )
if [ -n "$sev_launch" ] && [ -f "$image" ]; then
    measured=$($sev_launch measure --mode "$launch_mode" --image "$image" --vcpus "$vcpus" --c-bit "$c_bit" 2>&1)
    say "\`sev-launch measure --mode $launch_mode --image $image --vcpus $vcpus --c-bit $c_bit\` (vCPUs = possible CPUs, as the module creates them):"
    say '```'
    say "$measured"
    say '```'
    say "This is GCTX.LD. The firmware's LAUNCH_MEASURE (logged as \`LAUNCH_MEASURE …\` below) is an HMAC of it under the launch's TIK; without a launch session (not built yet) nobody can check one against the other."
else
    say "not computed here (no sev-launch or no image $image): on a machine with the repository, \`cargo run -p sevault-sev-launch -- measure --mode $launch_mode --image target/sevault/guest.bin --vcpus $vcpus --c-bit $c_bit\`"
fi

# --- the load ---
if [ $load = 1 ]; then
    say ""
    say "## Loading sevault.ko sev=$mode"
    say ""
    if [ "$(id -u)" != 0 ]; then
        check "root" FAIL "--load needs root"
    else
        grep -q '^sevault ' /proc/modules && rmmod sevault 2>/dev/null
        marker="sevault-first-boot-$stamp"
        echo "$marker" > /dev/kmsg 2>/dev/null
        since() { dmesg | sed -n "/$marker/,\$p" | grep 'sevault' | grep -v "$marker" | sed 's/^\[[^]]*\] //'; }
        if insmod "$ko" sev=$mode 2>/tmp/first-boot-insmod.$$; then
            loaded=1
            say "insmod: ok"
        else
            loaded=0
            say "insmod: refused ($(cat /tmp/first-boot-insmod.$$))"
            failures=$((failures + 1))
        fi
        rm -f /tmp/first-boot-insmod.$$
        if [ $loaded = 1 ]; then
            sleep 2
            say ""
            say "Self-tests (/proc/crypto):"
            say '```'
            entries=$(awk -v RS= '/driver *: .*-aes-sevault/ { print }' /proc/crypto)
            say "$(echo "$entries" | grep -E '^(driver|selftest)')"
            say '```'
            echo "$entries" | grep -q '^selftest *: passed' || failures=$((failures + 1))
            echo "$entries" | grep -q '^selftest *: \(failed\|unknown\)' && failures=$((failures + 1))
            [ -r /sys/kernel/debug/sevault/stats ] && { say "Statistics:"; say '```'; say "$(cat /sys/kernel/debug/sevault/stats)"; say '```'; }
            rmmod sevault 2>/dev/null || { sleep 2; rmmod sevault; } || failures=$((failures + 1))
            since | grep -q 'the ASID is free for its next user' || failures=$((failures + 1))
        fi
        say ""
        say "Kernel log of sevault from the load on:"
        say '```'
        say "$(since)"
        say '```'
    fi
fi

say ""
if [ $failures = 0 ]; then
    say "**Verdict: every check passed.**"
else
    say "**Verdict: $failures check(s) failed** (see the tables and logs above)."
fi
printf '%s' "$report" > "$out"
echo "first-boot.sh: report written to $out ($failures failed)"
[ $failures = 0 ]
