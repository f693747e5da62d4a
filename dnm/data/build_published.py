"""Regenerate the published word lists shipped in ``dnm/data/published/``.

Usage::

    python -m dnm.data.build_published --from DIR [--out DIR] [--check]

Input: the 27 lexicographer-file lists that NegLabel, CSP, DNM and NegRefine ship (``DIR`` holds
``<lexname>.txt``, one phrase a line: the 24 noun files without ``noun.animal`` and
``noun.food``, and ``adj.all``, ``adj.pert``, ``adj.ppl``).

Output: ``<lexname>.txt.gz`` for each of them, the input bytes unchanged (same lines, same order),
gzip'd with no file name and mtime 0 so the output is byte-for-byte deterministic.  ``--check``
rebuilds into memory and exits non-zero if the shipped files differ.  See
``dnm/data/published/README.md`` for provenance and licences.
"""

from __future__ import annotations

import argparse
import gzip
import io
from pathlib import Path

from .build_wordnet import write_or_check

#: The files of the published lists (sorted; adjective files first).
FILES = (
    "adj.all", "adj.pert", "adj.ppl", "noun.Tops", "noun.act", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
    "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity",
    "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
)
DEFAULT_OUT = Path(__file__).resolve().parent / "published"


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def build(source: Path) -> dict[str, bytes]:
    """Return {file name: gzip bytes} for every published list found in ``source``."""
    source = Path(source)
    files: dict[str, bytes] = {}
    for lexname in FILES:
        path = source / f"{lexname}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"source: {path} not found (expected the 27 published lists)")
        data = path.read_bytes()
        data.decode("utf-8")  # must be text
        files[f"{lexname}.txt.gz"] = gzip_bytes(data)
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="source", type=Path, required=True,
                    help="directory of the published <lexname>.txt lists")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="compare with the files in --out")
    args = ap.parse_args(argv)
    return write_or_check(build(args.source), args.out, args.check)


if __name__ == "__main__":
    raise SystemExit(main())
