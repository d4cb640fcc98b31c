"""Reading `sev-launch measure --json --with-contents` for the cross-check scripts: the
document, and each page's contents checked against the listed SHA-384."""
import hashlib
import json
import os
import sys

PAGE = 4096


def fail(message: str) -> None:
    """Ends the cross-check: the input is inconsistent or the digests differ (exit 1)."""
    print(f"{os.path.basename(sys.argv[0])}: {message}", file=sys.stderr)
    sys.exit(1)


def load(mode: str, why: str) -> dict:
    """The JSON named by the only argument (`-` for stdin), which must be of `mode`."""
    if len(sys.argv) != 2:
        print(f"usage: {os.path.basename(sys.argv[0])} MEASURE.json|-", file=sys.stderr)
        sys.exit(2)
    source = sys.stdin if sys.argv[1] == "-" else open(sys.argv[1], encoding="utf-8")
    with source:
        doc = json.load(source)
    if doc.get("mode") != mode:
        fail(f"mode {doc.get('mode')!r}: {why}")
    return doc


def where(index: int, page: dict) -> str:
    """How a message names a page."""
    return f"page {index} ({page.get('what', page['type'])} at {int(page['gpa'], 16):#x})"


def contents(index: int, page: dict) -> bytes:
    """The page's 4096 bytes, after checking they hash to its `sha384`."""
    if "contents" not in page:
        fail(f"{where(index, page)}: no contents; run sev-launch measure with --with-contents")
    data = bytes.fromhex(page["contents"])
    if len(data) != PAGE:
        fail(f"{where(index, page)}: {len(data)} bytes of contents")
    if hashlib.sha384(data).hexdigest() != page["sha384"]:
        fail(f"{where(index, page)}: contents do not hash to the listed sha384")
    return data
