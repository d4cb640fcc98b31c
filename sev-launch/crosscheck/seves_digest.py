#!/usr/bin/env python3
"""Recompute the vault's SEV-ES launch digest with sev-snp-measure's SEV-ES code path, and
read its VMSAs with sev-snp-measure's VMSA layout.

Input: the output of `sev-launch measure --mode sev-es --json --with-contents` (a file, or
stdin with `-`).

1. Digest. `sevsnpmeasure.guest.seves_calc_launch_digest` (written by IBM for QEMU/OVMF
   guests; it shares no code with sev-launch) computes GCTX.LD of an SEV-ES launch: one
   SHA-256 over the firmware's LAUNCH_UPDATE_DATA bytes, then over every vCPU's VMSA page
   in LAUNCH_UPDATE_VMSA order. It takes the data from an OVMF file and builds OVMF's own
   reset VMSAs; the vault is neither, so the two are handed in through the names that
   function looks up in its module (`OVMF`, `VMSA`): the data pages of the JSON in launch
   order, and the JSON's VMSA pages. The hashing and its order are sev-snp-measure's.
2. VMSA layout. Every VMSA page is parsed with `sevsnpmeasure.vmsa.SevEsSaveArea` (its
   field offsets follow AMD APM Vol. 2 Table B-4 via Linux's `struct sev_es_save_area`),
   and the fields that hold architectural reset values must equal the ones sev-snp-measure
   builds for a QEMU guest (`VMSA.build_save_area`): DR6, DR7, XCR0, MXCSR, x87 FCW, PAT,
   RFLAGS, SEV_FEATURES; EFER.SVME must be set in both; RIP must be the image's GPA.

Each page's contents must hash to the listed sha384. Prints the recomputed digest; exits 0
if everything agrees, 1 if anything differs or the input is inconsistent, 2 on bad usage.
"""
import ctypes
from importlib import metadata

import sevsnpmeasure.guest as guest
from measure_json import PAGE, contents, fail, load, where
from sevsnpmeasure.sev_mode import SevMode
from sevsnpmeasure.vmm_types import VMMType
from sevsnpmeasure.vmsa import VMSA, SevEsSaveArea

RESET_FIELDS = ["dr6", "dr7", "xcr0", "mxcsr", "x87_fcw", "g_pat", "rflags", "sev_features"]
EFER_SVME = 1 << 12


def load_pages(doc):
    """(data pages in launch order, VMSA pages in launch order, image GPA), checked."""
    data, vmsas, image_gpa = [], [], None
    for index, page in enumerate(doc["pages"]):
        kind = page["type"]
        if kind == "vmsa":
            vmsas.append(contents(index, page))
        elif kind == "data":
            if vmsas:
                fail(f"{where(index, page)}: a data page after a VMSA (LAUNCH_UPDATE_VMSA comes last)")
            data.append(contents(index, page))
            if image_gpa is None:
                image_gpa = int(page["gpa"], 16)
        else:
            fail(f"{where(index, page)}: page type {kind!r} in an SEV-ES launch")
    return data, vmsas, image_gpa


def check_vmsa_layout(vmsas, image_gpa) -> None:
    if ctypes.sizeof(SevEsSaveArea) != PAGE:
        fail(f"sev-snp-measure's SevEsSaveArea is {ctypes.sizeof(SevEsSaveArea)} bytes, not a page")
    reference = VMSA.build_save_area(VMSA.BSP_EIP, 0, 0, VMMType.QEMU)
    for vcpu, page in enumerate(vmsas):
        ours = SevEsSaveArea.from_buffer_copy(page)
        for name in RESET_FIELDS:
            if getattr(ours, name) != getattr(reference, name):
                fail(
                    f"VMSA of vCPU {vcpu}: {name} = {getattr(ours, name):#x}, sev-snp-measure's reset value "
                    f"{getattr(reference, name):#x}"
                )
        if not (ours.efer & EFER_SVME and reference.efer & EFER_SVME):
            fail(f"VMSA of vCPU {vcpu}: EFER {ours.efer:#x} without SVME")
        if ours.rip != image_gpa:
            fail(f"VMSA of vCPU {vcpu}: RIP {ours.rip:#x}, the image is at {image_gpa:#x}")
        if ours.cpl != 0 or ours.cs.attrib & (1 << 9) == 0:
            fail(f"VMSA of vCPU {vcpu}: not 64-bit ring 0 (CPL {ours.cpl}, CS attrib {ours.cs.attrib:#x})")
    print(f"  {len(vmsas)} VMSA(s) read with sev-snp-measure's SevEsSaveArea: reset fields {', '.join(RESET_FIELDS)} agree")


def main() -> None:
    doc = load("sev-es", "this checks SEV-ES launches")
    data, vmsas, image_gpa = load_pages(doc)
    if len(vmsas) != doc["vcpus"]:
        fail(f"{len(vmsas)} VMSA pages for {doc['vcpus']} vCPUs")

    class LaunchedData:
        """What seves_calc_launch_digest reads from its OVMF object: the launched bytes."""

        def __init__(self, _filename):
            pass

        def data(self):
            return b"".join(data)

        def sev_es_reset_eip(self):
            return image_gpa

    class LaunchedVmsas:
        """What seves_calc_launch_digest reads from its VMSA object: the pages, in order."""

        def __init__(self, mode, _eip, _vcpu_sig, _features, _vmm_type):
            if mode != SevMode.SEV_ES:
                fail(f"sev-snp-measure asked for VMSAs of mode {mode}")

        def pages(self, vcpus):
            if vcpus != len(vmsas):
                fail(f"sev-snp-measure asked for {vcpus} VMSAs")
            return iter(vmsas)

    guest.OVMF, guest.VMSA = LaunchedData, LaunchedVmsas
    theirs = guest.seves_calc_launch_digest(doc["vcpus"], 0, "(the vault's launched pages)", None, None, None).hex()
    ours = doc["digest"]
    version = metadata.version("sev-snp-measure")
    print(
        f"sev-snp-measure {version} seves_calc_launch_digest, {doc['vcpus']} vCPUs, C-bit {doc['c_bit']}: "
        f"{len(data)} data pages, {len(vmsas)} VMSA pages"
    )
    print(f"  sev-launch       {ours}")
    print(f"  sev-snp-measure  {theirs}")
    if ours != theirs:
        fail("DIFFERENT launch digests")
    print("  agree")
    check_vmsa_layout(vmsas, image_gpa)


if __name__ == "__main__":
    main()
