#!/usr/bin/env python3
"""Recompute the vault's SNP launch digest with sev-snp-measure's GCTX class.

Input: the output of `sev-launch measure --mode snp --json --with-contents` (a file, or
stdin with `-`). Every page of the list is fed, in order, to `sevsnpmeasure.gctx.GCTX`
(an implementation of the SNP launch digest written by IBM for QEMU/OVMF guests, which
shares no code with sev-launch):

  normal -> GCTX.update_normal_pages(gpa, contents)
  zero   -> GCTX.update_zero_pages(gpa, 4096)
  vmsa   -> GCTX.update_vmsa_page(contents)   (at its own VMSA GPA, checked against ours)

GCTX hashes a normal page's contents itself and offers no public call taking a hash, so
the JSON must carry the contents (--with-contents); their SHA-384 is checked against the
list's `sha384` too. Prints the recomputed digest; exits 0 if it equals the JSON's
`digest`, 1 if it differs or the input is inconsistent, 2 on bad usage.
"""
from importlib import metadata

from measure_json import PAGE, contents, fail, load, where
from sevsnpmeasure.gctx import GCTX


def main() -> None:
    doc = load("snp", "only SNP launch digests are GCTX chains")
    gctx = GCTX()
    counts = {"normal": 0, "zero": 0, "vmsa": 0}
    for index, page in enumerate(doc["pages"]):
        kind, gpa = page["type"], int(page["gpa"], 16)
        if kind == "normal":
            gctx.update_normal_pages(gpa, contents(index, page))
        elif kind == "vmsa":
            if gpa != GCTX.VMSA_GPA:
                fail(f"{where(index, page)}: sev-snp-measure measures VMSAs at {GCTX.VMSA_GPA:#x}")
            gctx.update_vmsa_page(contents(index, page))
        elif kind == "zero":
            gctx.update_zero_pages(gpa, PAGE)
        else:
            fail(f"{where(index, page)}: unknown page type {kind!r}")
        counts[kind] += 1

    ours, theirs = doc["digest"], gctx.hex_ld()
    version = metadata.version("sev-snp-measure")
    print(
        f"sev-snp-measure {version} GCTX, {doc['vcpus']} vCPUs, C-bit {doc['c_bit']}: "
        f"{counts['normal']} normal, {counts['zero']} zero, {counts['vmsa']} VMSA pages"
    )
    print(f"  sev-launch       {ours}")
    print(f"  sev-snp-measure  {theirs}")
    if ours != theirs:
        fail("DIFFERENT launch digests")
    print("  agree")


if __name__ == "__main__":
    main()
