"""Slow, obvious twins of dnm.wordnet, read straight from the WordNet 3.0 database files
(``data.noun``, ``index.noun``; Debian's wordnet-base), not from dnm's shipped graph."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

DB = Path("/usr/share/wordnet")


def norm(text):
    return " ".join(str(text).replace("_", " ").lower().split())


@lru_cache(maxsize=1)
def database():
    """(synsets, senses): offset -> {"lemmas", "hypernyms", "instance_of"}; (lemma, n) -> offset."""
    synsets = {}
    with open(DB / "data.noun", encoding="utf-8") as fh:
        data_lines = fh.readlines()
    with open(DB / "index.noun", encoding="utf-8") as fh:
        index_lines = fh.readlines()
    for line in data_lines:
        if line.startswith("  "):
            continue
        f = line.split()
        off = int(f[0])
        n_words = int(f[3], 16)
        words = [norm(f[4 + 2 * i]) for i in range(n_words)]
        at = 4 + 2 * n_words
        n_ptr = int(f[at])
        hyper, inst = [], []
        for j in range(n_ptr):
            sym, target, pos = f[at + 1 + 4 * j], int(f[at + 2 + 4 * j]), f[at + 3 + 4 * j]
            if pos == "n" and sym == "@":
                hyper.append(target)
            if pos == "n" and sym == "@i":
                inst.append(target)
        synsets[off] = {"lemmas": words, "hypernyms": hyper, "instance_of": inst}
    senses = {}
    for line in index_lines:
        if line.startswith("  "):
            continue
        f = line.split()
        n_syn, n_ptr = int(f[2]), int(f[3])
        for k, off in enumerate(f[6 + n_ptr: 6 + n_ptr + n_syn]):
            senses[(norm(f[0]), k + 1)] = int(off)
    return synsets, senses


def offset(ref):
    """'n02084071' or 'dog.n.01' -> offset."""
    synsets, senses = database()
    if ref[0] == "n" and ref[1:].isdigit():
        return int(ref[1:])
    lemma, pos, num = ref.rsplit(".", 2)
    assert pos == "n"
    return senses.get((norm(lemma), int(num)))  # None: not a WordNet 3.0 synset


def below(roots, include_self=True):
    """Offsets of every synset under the roots, one parent link at a time (hypernym or instance)."""
    synsets, _ = database()
    roots = {offset(r) if isinstance(r, str) else r for r in roots}
    out = set(roots) if include_self else set()
    changed = True
    while changed:
        changed = False
        for off, s in synsets.items():
            if off in out:
                continue
            if any(p in roots or p in out for p in s["hypernyms"] + s["instance_of"]):
                out.add(off)
                changed = True
    return out


def lemma_senses():
    synsets, _ = database()
    out = {}
    for off, s in synsets.items():
        for w in s["lemmas"]:
            out.setdefault(w, []).append(off)
    return out


def drop_hyponym_nouns(phrases, is_adjective, roots):
    """Indices of the nouns with any sense at or under the roots."""
    under = below(roots)
    senses = lemma_senses()
    return [i for i, (p, a) in enumerate(zip(phrases, is_adjective))
            if not a and any(o in under for o in senses.get(norm(p), ()))]


def drop_proper_nouns(phrases, is_adjective, rule="all"):
    synsets, _ = database()
    senses = lemma_senses()
    pick = all if rule == "all" else any
    return [i for i, (p, a) in enumerate(zip(phrases, is_adjective))
            if not a and norm(p) in senses
            and pick(bool(synsets[o]["instance_of"]) for o in senses[norm(p)])]
