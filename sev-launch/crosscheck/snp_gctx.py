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
import hashlib
import json
import sys
from importlib import metadata

from sevsnpmeasure.gctx import GCTX

PAGE = 4096


def fail(message: str) -> None:
    print(f"snp_gctx.py: {message}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    if len(sys.argv) != 2:
        print("usage: snp_gctx.py MEASURE.json|-", file=sys.stderr)
        sys.exit(2)
    source = sys.stdin if sys.argv[1] == "-" else open(sys.argv[1], encoding="utf-8")
    with source:
        doc = json.load(source)
    if doc.get("mode") != "snp":
        fail(f"mode {doc.get('mode')!r}: only SNP launch digests are GCTX chains")

    gctx = GCTX()
    counts = {"normal": 0, "zero": 0, "vmsa": 0}
    for index, page in enumerate(doc["pages"]):
        kind, gpa = page["type"], int(page["gpa"], 16)
        where = f"page {index} ({page.get('what', kind)} at {gpa:#x})"
        if kind in ("normal", "vmsa"):
            if "contents" not in page:
                fail(f"{where}: no contents; run sev-launch measure with --with-contents")
            data = bytes.fromhex(page["contents"])
            if len(data) != PAGE:
                fail(f"{where}: {len(data)} bytes of contents")
            if hashlib.sha384(data).hexdigest() != page["sha384"]:
                fail(f"{where}: contents do not hash to the listed sha384")
            if kind == "normal":
                gctx.update_normal_pages(gpa, data)
            else:
                if gpa != GCTX.VMSA_GPA:
                    fail(f"{where}: sev-snp-measure measures VMSAs at {GCTX.VMSA_GPA:#x}")
                gctx.update_vmsa_page(data)
        elif kind == "zero":
            gctx.update_zero_pages(gpa, PAGE)
        else:
            fail(f"{where}: unknown page type {kind!r}")
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
