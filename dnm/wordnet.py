"""The WordNet 3.0 noun graph shipped with dnm: synset references, hyponyms, instance nouns.

The filters against false negatives (``Corpus.exclude_hyponyms``, ``Corpus.exclude_proper_nouns``)
are graph queries over this data (``dnm/data/wordnet/noun.graph.txt.gz``, built from the WordNet
3.0 database by ``python -m dnm.data.build_wordnet``; see docs/design.md, "Mining").

A synset is named the way the datasets name them: a WordNet id ``"n02084071"`` (ImageNet's
``wnid``: ``n`` and the synset's 8-digit offset in ``data.noun``), a name ``"dog.n.01"`` (lemma,
``n``, sense number, as LVIS and NLTK write them), or the offset as an int.  Lemmas compare case-,
underscore- and whitespace-insensitively, as everywhere in :mod:`dnm.corpus`.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

import numpy as np

__all__ = ["hyponyms", "hyponym_lemmas", "instance_lemmas", "lemmas", "wnid", "wnids"]

_WNID = re.compile(r"^n(\d{8})$", re.IGNORECASE)
_NAME = re.compile(r"^(.+)\.n\.(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class _Graph:
    offsets: np.ndarray           # (S,) int64, data.noun order (ascending)
    lemmas: tuple                 # (S,) tuples of lemmas as written in WordNet
    children_ptr: np.ndarray      # CSR over S: hyponyms and instance hyponyms of each synset
    children: np.ndarray
    is_instance: np.ndarray       # (S,) bool: the synset has an instance hypernym (@i)
    by_name: dict                 # (normalised lemma, sense number) -> row
    by_lemma: dict                # normalised lemma -> rows (every noun sense)


def _norm(text: str) -> str:
    return " ".join(str(text).replace("_", " ").lower().split())


@lru_cache(maxsize=1)
def _graph() -> _Graph:
    from . import corpus

    path = corpus.WORDNET_DIR / "noun.graph.txt.gz"
    if not path.is_file():
        raise FileNotFoundError(f"shipped WordNet graph {path} is missing; regenerate it with "
                                "`python -m dnm.data.build_wordnet`")
    from .data.build_wordnet import LEXNAMES as LEXNUM

    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rows = [line.rstrip("\n").split("\t") for line in fh if line.strip()]
    offsets = np.array([int(r[0]) for r in rows], dtype=np.int64)
    row_of = {int(o): i for i, o in enumerate(offsets.tolist())}
    position: dict[str, int] = {}
    lemma_rows: list[tuple] = []
    for r in rows:
        lexname = LEXNUM[int(r[1])]
        i = position.get(lexname, 0)
        position[lexname] = i + 1
        lemma_rows.append(corpus._synsets(lexname)[i])
    parent, child, inst = [], [], np.zeros(len(rows), dtype=bool)
    by_name: dict = {}
    by_lemma: dict = {}
    for i, r in enumerate(rows):
        for field in (2, 3):
            for t in r[field].split():
                parent.append(row_of[int(t)])
                child.append(i)
        inst[i] = bool(r[3])
        for lemma, sense in zip(lemma_rows[i], r[4].split()):
            key = _norm(lemma)
            by_name[(key, int(sense))] = i
            by_lemma.setdefault(key, []).append(i)
    parent = np.asarray(parent, dtype=np.int64)
    child = np.asarray(child, dtype=np.int64)
    order = np.argsort(parent, kind="stable")
    ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(np.bincount(parent, minlength=len(rows)), out=ptr[1:])
    inst.setflags(write=False)
    return _Graph(offsets, tuple(lemma_rows), ptr, child[order], inst, by_name,
                  {k: tuple(v) for k, v in by_lemma.items()})


def _rows(refs, argname: str) -> np.ndarray:
    """Graph rows of synset references (one reference or an iterable of them)."""
    g = _graph()
    if isinstance(refs, (str, int, np.integer)):
        refs = [refs]
    out = []
    for ref in refs:
        row = None
        if isinstance(ref, (int, np.integer)) and not isinstance(ref, (bool, np.bool_)):
            pos = int(np.searchsorted(g.offsets, int(ref)))
            if pos < len(g.offsets) and g.offsets[pos] == int(ref):
                row = pos
        elif isinstance(ref, str):
            m = _WNID.match(ref.strip())
            if m:
                pos = int(np.searchsorted(g.offsets, int(m.group(1))))
                if pos < len(g.offsets) and g.offsets[pos] == int(m.group(1)):
                    row = pos
            else:
                m = _NAME.match(ref.strip())
                if m:
                    row = g.by_name.get((_norm(m.group(1)), int(m.group(2))))
        else:
            raise TypeError(f"{argname}: expected WordNet synset references (str or int), got "
                            f"{type(ref).__name__}")
        if row is None:
            raise ValueError(f"{argname}: {ref!r} is not a WordNet 3.0 noun synset (expected a "
                             "WordNet id like 'n02084071', a name like 'dog.n.01' or an offset)")
        out.append(row)
    return np.asarray(out, dtype=np.int64)


def _closure(rows: np.ndarray, include_self: bool) -> np.ndarray:
    """Boolean mask over the graph: every synset below ``rows`` (hyponyms and instances, all depths)."""
    g = _graph()
    seen = np.zeros(len(g.offsets), dtype=bool)
    frontier = np.unique(rows)
    if include_self:
        seen[frontier] = True
    while frontier.size:
        starts, ends = g.children_ptr[frontier], g.children_ptr[frontier + 1]
        lens = ends - starts
        if not lens.sum():
            break
        idx = np.repeat(ends - lens.cumsum(), lens) + np.arange(lens.sum())
        kids = np.unique(g.children[idx])
        frontier = kids[~seen[kids]]
        seen[frontier] = True
    return seen


def wnid(ref) -> str:
    """The WordNet id (``"n02084071"``) of one synset reference (``"dog.n.01"``, an id, an offset)."""
    (row,) = _rows([ref], "ref")
    return f"n{int(_graph().offsets[row]):08d}"


def wnids(refs: Iterable) -> list[str]:
    """:func:`wnid` of each reference, in order."""
    g = _graph()
    return [f"n{int(o):08d}" for o in g.offsets[_rows(refs, "refs")]]


def lemmas(ref) -> list[str]:
    """The lemmas of one synset, as WordNet writes them (case kept, underscores as spaces)."""
    (row,) = _rows([ref], "ref")
    return list(_graph().lemmas[row])


def hyponyms(synsets, *, include_self: bool = True) -> list[str]:
    """WordNet ids of every synset below ``synsets``: hyponyms and instances, at all depths.

    ``include_self`` (default) counts the synsets themselves (an ID class or a subcategory of
    it).  Sorted by id.
    """
    g = _graph()
    mask = _closure(_rows(synsets, "synsets"), bool(include_self))
    return [f"n{int(o):08d}" for o in g.offsets[mask]]


def hyponym_lemmas(synsets, *, include_self: bool = True) -> set[str]:
    """Normalised lemmas of every synset :func:`hyponyms` returns."""
    g = _graph()
    mask = _closure(_rows(synsets, "synsets"), bool(include_self))
    return {_norm(w) for i in np.flatnonzero(mask).tolist() for w in g.lemmas[i]}


@lru_cache(maxsize=1)
def _instance_lemmas() -> frozenset:
    g = _graph()
    return frozenset(k for k, rows in g.by_lemma.items() if all(g.is_instance[r] for r in rows))


def instance_lemmas() -> frozenset:
    """Normalised noun lemmas whose every WordNet noun sense is an instance (a proper noun:
    a city, a person, a river).  A lemma with any common-noun sense (``mercury``) is not in it."""
    return _instance_lemmas()


def _row_mask_of(synsets_per_phrase, n: int, argname: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows, known) for one optional synset reference per phrase (None: unknown)."""
    refs = list(synsets_per_phrase)
    if len(refs) != n:
        raise ValueError(f"{argname}: expected one synset reference per phrase ({n}), got {len(refs)}")
    known = np.array([r is not None for r in refs], dtype=bool)
    rows = np.full(n, -1, dtype=np.int64)
    if known.any():
        rows[known] = _rows([r for r in refs if r is not None], argname)
    return rows, known
