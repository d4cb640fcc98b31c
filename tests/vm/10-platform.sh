#!/bin/sh
# The VM's CPU offers what the vault needs: SVM, nested paging (NPT) and AES-NI.
flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
status=0
for flag in svm npt aes; do
    case "$flags" in
        *" $flag "*) echo "cpu flag $flag: present" ;;
        *) echo "cpu flag $flag: MISSING"; status=1 ;;
    esac
done
case "$flags" in
    *" nrip_save "*) echo "cpu flag nrip_save: present (the HV can use next-RIP)" ;;
    *) echo "cpu flag nrip_save: absent (the HV must advance RIP itself)" ;;
esac
exit $status
