"""Regenerate the WordNet 3.0 word lists shipped in ``dnm/data/wordnet/``.

Usage::

    python -m dnm.data.build_wordnet [--wordnet-dir /usr/share/wordnet] [--out DIR] [--check]

Input: the WordNet 3.0 database files ``data.noun`` and ``data.adj`` (Debian package
``wordnet-base`` installs them in ``/usr/share/wordnet``).  Every record of those files carries
its lexicographer file number; the standard ``lexnames`` table below maps it to a name.

Output: one gzip'd UTF-8 text file per lexicographer file, ``<lexname>.txt.gz``, for the 26 noun
files and ``adj.all``, ``adj.pert``, ``adj.ppl``.  One line per synset, in the order of the
synsets in ``data.*`` (byte offset order); on each line the synset's lemmas in WordNet order,
separated by a TAB, with underscores turned into spaces and the adjective syntactic markers
``(a)``, ``(p)``, ``(ip)`` removed; case is kept (the loader lowercases).  A lemma repeated within
one synset (only possible after marker stripping) is written once.  The gzip header carries no
file name and mtime 0, so the output is byte-for-byte deterministic.  ``--check`` rebuilds into
memory and exits non-zero if the shipped files differ.

A further file, ``noun.graph.txt.gz``, holds what the WordNet filters need (hyponyms of a
synset, instance nouns, synset names): one line per noun synset in ``data.noun`` order, five
TAB-separated fields: the synset offset (8 digits: the ImageNet WordNet id without its ``n``),
its lexicographer file number, its hypernym offsets (pointer ``@``, space-separated), its
instance-hypernym offsets (pointer ``@i``), and per lemma (in the order of the lemma file's
line) the lemma's sense number for this synset in ``index.noun`` (1-based: ``dog.n.01`` is the
synset at sense 1 of ``dog``).  The i-th line of lexicographer file L in this file is the i-th
line of ``L.txt.gz``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import re
import sys
from pathlib import Path

# Standard WordNet 3.0 lexnames table (wn lexnames(5WN)); index = lexicographer file number.
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather",
    "adj.ppl",
)

_MARKER = re.compile(r"\((?:a|p|ip)\)$")
DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")
DEFAULT_OUT = Path(__file__).resolve().parent / "wordnet"


def clean_lemma(word: str) -> str:
    """WordNet data-file lemma -> phrase: strip the adjective marker, underscores -> spaces."""
    return _MARKER.sub("", word).replace("_", " ")


def parse_data_file(path: Path) -> dict[str, list[list[str]]]:
    """Parse a WordNet ``data.*`` file into {lexname: [synset lemmas, ...]} in file order."""
    out: dict[str, list[list[str]]] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("  "):  # licence header
                continue
            fields = line.split(" ")
            lexnum = int(fields[1])
            count = int(fields[3], 16)
            lemmas: list[str] = []
            for i in range(count):
                lemma = clean_lemma(fields[4 + 2 * i])
                if lemma not in lemmas:
                    lemmas.append(lemma)
            out.setdefault(LEXNAMES[lexnum], []).append(lemmas)
    return out


def parse_noun_graph(data_path: Path, index_path: Path) -> bytes:
    """The ``noun.graph.txt.gz`` text (see the module docstring) from ``data.noun``/``index.noun``."""
    senses: dict[tuple[str, str], int] = {}
    with open(index_path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("  "):
                continue
            f = line.split()
            lemma, n_synsets, n_ptr = f[0], int(f[2]), int(f[3])
            offsets = f[6 + n_ptr: 6 + n_ptr + n_synsets]
            for rank, off in enumerate(offsets, 1):
                senses[(lemma.lower(), off)] = rank
    rows: list[str] = []
    with open(data_path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("  "):
                continue
            f = line.split(" ")
            off, lexnum, count = f[0], int(f[1]), int(f[3], 16)
            lemmas: list[str] = []
            for i in range(count):
                lemma = clean_lemma(f[4 + 2 * i])
                if lemma not in lemmas:
                    lemmas.append(lemma)
            pos = 4 + 2 * count
            n_ptr = int(f[pos])
            hyper, inst = [], []
            for j in range(n_ptr):
                sym, target, tpos = f[pos + 1 + 4 * j: pos + 4 + 4 * j]
                if tpos == "n" and sym == "@":
                    hyper.append(target)
                elif tpos == "n" and sym == "@i":
                    inst.append(target)
            ranks = [str(senses[(w.replace(" ", "_").lower(), off)]) for w in lemmas]
            rows.append(f"{off}\t{lexnum}\t{' '.join(hyper)}\t{' '.join(inst)}\t{' '.join(ranks)}\n")
    return "".join(rows).encode("utf-8")


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def build(wordnet_dir: Path = DEFAULT_WORDNET_DIR) -> dict[str, bytes]:
    """Return {file name: gzip bytes} for every shipped word list."""
    wordnet_dir = Path(wordnet_dir)
    tables: dict[str, list[list[str]]] = {}
    for pos in ("adj", "noun"):
        path = wordnet_dir / f"data.{pos}"
        if not path.is_file():
            raise FileNotFoundError(
                f"wordnet_dir: {path} not found (install Debian's wordnet-base or pass --wordnet-dir)"
            )
        tables.update(parse_data_file(path))
    files: dict[str, bytes] = {}
    for lexname in sorted(tables):
        text = "".join("\t".join(s) + "\n" for s in tables[lexname])
        files[f"{lexname}.txt.gz"] = _gzip(text.encode("utf-8"))
    files["noun.graph.txt.gz"] = _gzip(parse_noun_graph(wordnet_dir / "data.noun",
                                                        wordnet_dir / "index.noun"))
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wordnet-dir", type=Path, default=DEFAULT_WORDNET_DIR)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="compare with the files in --out")
    args = ap.parse_args(argv)
    return write_or_check(build(args.wordnet_dir), args.out, args.check)


def write_or_check(files: dict, out: Path, check: bool) -> int:
    """Write the built ``files`` (name -> bytes) to ``out``, or with ``check`` compare them
    with the files there; the exit status (1: some file differs)."""
    if check:
        bad = [n for n, b in files.items() if not (out / n).is_file() or (out / n).read_bytes() != b]
        for n in bad:
            print(f"differs: {n}", file=sys.stderr)
        print(f"{len(files) - len(bad)}/{len(files)} files identical")
        return 1 if bad else 0
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    total = sum(len(b) for b in files.values())
    print(f"wrote {len(files)} files, {total} bytes, to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
