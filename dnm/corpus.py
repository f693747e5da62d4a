"""Word corpora for negative-label OOD detection: WordNet presets, user corpora, prompts, encoding.

Two sources of word lists are shipped, one file per lexicographer file:

* ``source="published"`` (the default): the 27 lists NegLabel, CSP, DNM and NegRefine ship
  (``dnm/data/published/``, byte for byte; WordNet 3.1 lemmas, one phrase per synset,
  lowercased, in the lists' own order).  The papers' tables were made with these.
* ``source="wordnet"``: the WordNet 3.0 noun and adjective synsets built from the database
  (``dnm/data/wordnet/``, ``python -m dnm.data.build_wordnet``), with every lemma of every
  synset (``lemmas="head"``, the default, takes the first lemma of each synset,
  ``lemmas="all"`` every lemma) and the files the published lists lack (``noun.animal``,
  ``noun.food``).  It differs from the published lists by WordNet version and by the
  published lists' parser (they lost about 1,000 adjective cluster heads and carry some
  source-file syntax): see ``dnm/data/wordnet/README.md``.  The synonym filter always uses it.
* ``source=DIR``: a directory of reference-style lists ``<lexname>.txt``, one phrase a line.

The presets of the papers::

    neglabel  all noun files but noun.animal and noun.food; adj.all, adj.pert, adj.ppl
    dnm, csp  as neglabel minus noun.person, noun.quantity, noun.group and adj.pert

are assembled in a fixed order: files in sorted name order (adjective files sort before noun
files), phrases in file order, global deduplication keeping the first occurrence.  From the
published lists this gives exactly 46,560 nouns + 10,060 adjectives (``dnm``, ``csp``) and
56,909 + 13,091 (``neglabel``), the pools of the papers' code.

``csp`` is CSP's conjugated semantic pool: the ``dnm`` nouns, and each adjective ``a`` turned
into ``"a W"`` with ``W`` drawn by ``random.Random(seed).choice`` from CSP's 14 superclass words
(:data:`CSP_SUPERCLASSES`), one draw per adjective in corpus order (``seed=0`` by default).

This module holds the word lists; :func:`encode` (any encoder, with an on-disk cache) lives in
:mod:`dnm.encoding` and is re-exported here.  Both only need NumPy (and tqdm for progress
bars).
"""

from __future__ import annotations

import gzip
import os
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "ADJECTIVE_FILES",
    "ADJECTIVE_TEMPLATE",
    "CLASS_NAME_SETS",
    "CSP_SUPERCLASSES",
    "Corpus",
    "ID_TEMPLATE",
    "LEXNAMES",
    "NOUN_FILES",
    "NOUN_TEMPLATE",
    "PRESETS",
    "PUBLISHED_FILES",
    "SOURCES",
    "conjugate",
    "ENSEMBLE_RULES",
    "TemplateSet",
    "class_names",
    "class_wnids",
    "encode",
    "format_prompts",
    "from_file",
    "from_list",
    "load",
    "preset_files",
    "read_lexfile",
    "synonyms",
    "template_set",
    "template_sets",
]

WORDNET_DIR = Path(__file__).resolve().parent / "data" / "wordnet"
PUBLISHED_DIR = Path(__file__).resolve().parent / "data" / "published"
#: The named sources of word lists (``source=``); a directory path is also accepted.
SOURCES: tuple[str, ...] = ("published", "wordnet")

ADJECTIVE_FILES: tuple[str, ...] = ("adj.all", "adj.pert", "adj.ppl")
NOUN_FILES: tuple[str, ...] = (
    "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute", "noun.body",
    "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food",
    "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity",
    "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
)
#: Every lexicographer file the package ships, in the fixed (sorted) order.
LEXNAMES: tuple[str, ...] = tuple(sorted(ADJECTIVE_FILES + NOUN_FILES))

_NEGLABEL = tuple(f for f in LEXNAMES if f not in ("noun.animal", "noun.food"))
_DNM = tuple(
    f for f in _NEGLABEL if f not in ("noun.person", "noun.quantity", "noun.group", "adj.pert")
)
#: The lexicographer files of the published lists (all but noun.animal and noun.food).
PUBLISHED_FILES: tuple[str, ...] = _NEGLABEL
#: Preset name -> lexicographer files (word-list presets, not backbones: see dnm.methods).
#: ``csp`` has the files of ``dnm``, its adjectives conjugated (:func:`conjugate`).
PRESETS: dict[str, tuple[str, ...]] = {"neglabel": _NEGLABEL, "dnm": _DNM, "csp": _DNM}
_CONJUGATED_PRESETS = ("csp",)

#: CSP's superclass words (Chen et al., NeurIPS 2024, "Conjugated Semantic Pool"): an
#: adjective ``a`` becomes ``"a W"`` for one of them (template ``"{} W"``).
CSP_SUPERCLASSES: tuple[str, ...] = (
    "environment", "space", "object", "scene", "place", "item", "area", "view", "thing",
    "pattern", "structure", "landscape", "vista", "creature",
)

#: Default prompt templates of the papers.
ID_TEMPLATE = "the nice {}"
NOUN_TEMPLATE = "the nice {}"
ADJECTIVE_TEMPLATE = "This is a {} photo"

_LEMMA_MODES = ("head", "all")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _norm(text: str) -> str:
    """Case-, underscore- and whitespace-insensitive key used to compare phrases with names."""
    return " ".join(str(text).replace("_", " ").lower().split())


def _check_lexnames(files: Iterable[str], argname: str) -> list[str]:
    if isinstance(files, str):
        files = [files]
    files = list(files)
    bad = [f for f in files if f not in LEXNAMES]
    if bad:
        raise ValueError(
            f"{argname}: unknown lexicographer file(s) {bad}; valid ones are: {', '.join(LEXNAMES)}"
        )
    if not files:
        raise ValueError(f"{argname}: no lexicographer file given")
    return files


def preset_files(preset: str) -> tuple[str, ...]:
    """The lexicographer files of a preset (``neglabel``, ``dnm``, ``csp``)."""
    key = str(preset).lower()
    if key not in PRESETS:
        raise ValueError(f"preset: unknown preset {preset!r}; valid presets are: {', '.join(sorted(PRESETS))}")
    return PRESETS[key]


def _check_templates(templates: str | Sequence[str] | None, argname: str, default: str | None):
    """Normalise a template or a list of templates to a non-empty tuple; None -> (default,)."""
    if templates is None:
        templates = "{}" if default is None else default
    if isinstance(templates, str):
        templates = [templates]
    try:
        templates = tuple(templates)
    except TypeError:
        raise TypeError(f"{argname}: expected a template string with '{{}}' or a list of them, "
                        f"got {type(templates).__name__}") from None
    if not templates:
        raise ValueError(f"{argname}: empty template list")
    for t in templates:
        if not isinstance(t, str):
            raise ValueError(f"{argname}: template {t!r} is not a string")
        if "{}" not in t:
            raise ValueError(f"{argname}: template {t!r} has no '{{}}' placeholder for the phrase")
    return templates


def format_prompts(phrases: Iterable[str], template: str = "{}") -> list[str]:
    """Put every phrase into ``template`` (each ``{}`` is replaced by the phrase)."""
    (template,) = _check_templates(template, "template", None)
    return [template.replace("{}", p) for p in phrases]


# --------------------------------------------------------------------------------------------
# prompt ensembles (dnm/data/prompts.json)
# --------------------------------------------------------------------------------------------

#: How several templates' encodings become one embedding (:func:`dnm.corpus.encode`).
ENSEMBLE_RULES: tuple[str, ...] = ("mean", "normalized_mean")


@dataclass(frozen=True)
class TemplateSet:
    """A named prompt ensemble: noun templates, adjective templates, the ensembling rule
    (``"mean"``: mean of the raw encodings; ``"normalized_mean"``: normalise each, average,
    renormalise) and where it comes from."""

    name: str
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    rule: str
    source: str


@lru_cache(maxsize=1)
def _template_sets() -> dict[str, TemplateSet]:
    import json

    doc = json.loads((Path(__file__).resolve().parent / "data" / "prompts.json").read_text("utf-8"))
    return {name: TemplateSet(name, tuple(d["nouns"]), tuple(d["adjectives"]), d["rule"], d["source"])
            for name, d in doc["sets"].items()}


def template_sets() -> tuple[str, ...]:
    """The names of the shipped prompt ensembles."""
    return tuple(_template_sets())


def template_set(name: str) -> TemplateSet:
    """A shipped prompt ensemble by name: ``neglabel`` and ``dnm`` (one template each),
    ``csp`` (8 noun + 4 adjective templates), ``clip80`` (the 80 CLIP ImageNet templates,
    normalised mean), ``mcm`` (``"a photo of a {}"``)."""
    sets = _template_sets()
    if not isinstance(name, str) or name.lower() not in sets:
        raise ValueError(f"template set: unknown name {name!r}; the shipped sets are: {', '.join(sets)}")
    return sets[name.lower()]


# --------------------------------------------------------------------------------------------
# ID class-name sets (dnm/data/classnames)
# --------------------------------------------------------------------------------------------

_CLASS_NAME_FILES = {
    "imagenet": "imagenet.txt",
    "imagenet10": "imagenet10.txt",
    "imagenet20": "imagenet20.txt",
    "imagenet100": "imagenet100.txt",
    "cifar10": "cifar10.txt",
    "cifar100": "cifar100.txt",
    "cub200": "cub200.txt",
    "stanford_cars": "stanford_cars.txt",
    "food101": "food101.txt",
    "oxford_pets": "oxford_pets.txt",
    "places365": "places365.txt",
}
_CLASS_NAME_ALIASES = {
    "imagenet1k": "imagenet", "imagenet-1k": "imagenet", "in1k": "imagenet",
    "imagenet-10": "imagenet10", "in10": "imagenet10",
    "imagenet-20": "imagenet20", "in20": "imagenet20",
    "imagenet-100": "imagenet100", "in100": "imagenet100",
    "cifar-10": "cifar10", "cifar-100": "cifar100",
    "cub": "cub200", "cub-200": "cub200", "cub200-2011": "cub200", "cub-200-2011": "cub200",
    "bird200": "cub200",
    "stanford-cars": "stanford_cars", "stanfordcars": "stanford_cars", "cars": "stanford_cars",
    "car196": "stanford_cars",
    "food-101": "food101",
    "pets": "oxford_pets", "oxford-pets": "oxford_pets", "oxfordpets": "oxford_pets",
    "oxford-iiit-pet": "oxford_pets", "oxford_iiit_pet": "oxford_pets", "pet37": "oxford_pets",
    "places-365": "places365",
}
#: The shipped ID class-name sets (see ``dnm/data/classnames/README.md`` for their sources).
CLASS_NAME_SETS: tuple[str, ...] = tuple(_CLASS_NAME_FILES)


def _set_key(name: str) -> str:
    """The canonical name of a class-name set (aliases and case folded)."""
    return _CLASS_NAME_ALIASES.get(name.lower(), name.lower())


@lru_cache(maxsize=None)
def _class_names(key: str) -> tuple[str, ...]:
    path = Path(__file__).resolve().parent / "data" / "classnames" / _CLASS_NAME_FILES[key]
    return tuple(path.read_text(encoding="utf-8").splitlines())


def class_names(name: str) -> list[str]:
    """The class names of an ID benchmark the papers evaluate on, in its label index order.

    A new list each call (case-insensitive name; sources and cleaning rules in
    ``dnm/data/classnames/README.md``):

    - ``"imagenet"`` (``"imagenet1k"``, ``"imagenet-1k"``): the 1,000 cleaned ImageNet-1k names of
      CLIP that DNM, NegLabel, CSP and MCM use;
    - ``"imagenet10"``, ``"imagenet20"``, ``"imagenet100"`` (also ``"imagenet-10"``, ...): the
      ImageNet subsets of MCM as CSP lists them, in CSP's order, with CLIP's ImageNet names;
    - ``"cifar10"``, ``"cifar100"`` (``"cifar-10"``, ``"cifar-100"``; fine labels): CLIP's names;
    - ``"cub200"`` (``"cub"``, ``"cub-200-2011"``, ``"bird200"``): ``classes.txt`` names without the
      ``"001."`` prefix, underscores as spaces;
    - ``"stanford_cars"`` (``"cars"``, ``"car196"``): the 196 names of CLIP's list;
    - ``"food101"`` (``"food-101"``): ``classes.txt``, underscores as spaces;
    - ``"oxford_pets"`` (``"pets"``, ``"oxford-iiit-pet"``, ``"pet37"``): the 37 breeds, class-id
      order;
    - ``"places365"``: ``categories_places365.txt`` without the ``/x/`` prefix, ``/`` and ``_`` as
      spaces.

    ``CLASS_NAME_SETS`` holds the canonical names.
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a class-name set name (str), got {type(name).__name__}")
    key = _set_key(name)
    if key not in _CLASS_NAME_FILES:
        raise ValueError(f"name: unknown class-name set {name!r}; the shipped sets are: "
                         f"{', '.join(CLASS_NAME_SETS)}")
    return list(_class_names(key))


_CLASS_WNID_FILES = {"imagenet": "imagenet_wnids.txt", "imagenet10": "imagenet10_wnids.txt",
                     "imagenet20": "imagenet20_wnids.txt", "imagenet100": "imagenet100_wnids.txt"}


@lru_cache(maxsize=None)
def _class_wnids(key: str) -> tuple[str, ...]:
    path = Path(__file__).resolve().parent / "data" / "classnames" / _CLASS_WNID_FILES[key]
    return tuple(path.read_text(encoding="utf-8").split())


def class_wnids(name: str) -> list[str]:
    """The WordNet ids of a class-name set, one per class of :func:`class_names`, in its order
    (``"imagenet"``: the 1,000 ImageNet-1k ids ``n01440764`` ... ``n15075141``, sorted, as the
    dataset orders them; ``"imagenet10"``, ``"imagenet20"``, ``"imagenet100"``: the subsets)."""
    if not isinstance(name, str):
        raise TypeError(f"name: expected a class-name set name (str), got {type(name).__name__}")
    key = _set_key(name)
    if key not in _CLASS_WNID_FILES:
        known = ", ".join(_CLASS_WNID_FILES)
        raise ValueError(f"name: the class-name set {name!r} has no shipped WordNet ids "
                         f"(sets with ids: {known})")
    return list(_class_wnids(key))


def _class_or_synsets(of):
    """A class-set name (str without a WordNet form) -> its wnids; otherwise ``of`` unchanged."""
    if isinstance(of, str):
        from .wordnet import _NAME, _WNID

        if not (_WNID.match(of.strip()) or _NAME.match(of.strip())):
            key = _set_key(of)
            if key not in _CLASS_WNID_FILES:
                raise ValueError(f"of: {of!r} is neither a WordNet noun synset ('n02084071', "
                                 "'dog.n.01') nor a class-name set with WordNet ids ("
                                 f"{', '.join(_CLASS_WNID_FILES)})")
            return list(_class_wnids(key))
    return of


# --------------------------------------------------------------------------------------------
# shipped WordNet data and reference-style lists
# --------------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _synsets(lexname: str) -> tuple[tuple[str, ...], ...]:
    """Shipped synsets of one lexicographer file: tuples of lemmas (original case), file order."""
    path = WORDNET_DIR / f"{lexname}.txt.gz"
    if not path.is_file():
        raise FileNotFoundError(
            f"shipped WordNet list {path} is missing; regenerate it with `python -m dnm.data.build_wordnet`"
        )
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return tuple(tuple(line.rstrip("\n").split("\t")) for line in fh if line.strip())


@lru_cache(maxsize=None)
def _published(lexname: str) -> tuple[str, ...]:
    """Lines of one shipped published list, in file order."""
    path = PUBLISHED_DIR / f"{lexname}.txt.gz"
    if not path.is_file():
        raise FileNotFoundError(
            f"shipped published list {path} is missing; regenerate it with "
            "`python -m dnm.data.build_published --from DIR`"
        )
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return tuple(fh.read().splitlines())


def _resolve_source(source: str | os.PathLike | None) -> str | Path:
    """``"published"`` (None), ``"wordnet"``, or an existing directory."""
    if source is None:
        return "published"
    if isinstance(source, str) and source in SOURCES:
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source: expected one of {SOURCES} or a directory path, got "
                        f"{type(source).__name__}")
    path = Path(source)
    if not path.is_dir():
        raise FileNotFoundError(f"source: directory {str(path)!r} not found "
                                f"(the named sources are {', '.join(SOURCES)})")
    return path


def read_lexfile(
    lexname: str,
    *,
    source: str | os.PathLike | None = None,
    lemmas: str = "head",
    lowercase: bool = True,
) -> list[str]:
    """Phrases of one lexicographer file, in file order, without duplicates (first kept).

    ``source="published"`` (None) reads the shipped published list (one phrase per synset;
    ``lemmas="all"`` is refused).  ``source="wordnet"`` reads the shipped WordNet 3.0 data:
    ``lemmas="head"`` takes the first lemma of every synset (as the published lists do),
    ``lemmas="all"`` every lemma.  With ``source=DIR`` the file ``DIR/<lexname>.txt`` (one
    phrase a line) is read instead.
    """
    (lexname,) = _check_lexnames([lexname], "lexname")
    if lemmas not in _LEMMA_MODES:
        raise ValueError(f"lemmas: must be one of {_LEMMA_MODES}, got {lemmas!r}")
    src = _resolve_source(source)
    if src != "wordnet" and lemmas != "head":
        raise ValueError("lemmas: 'all' needs source='wordnet' (the other sources hold one "
                         "phrase per synset)")
    if src == "wordnet":
        syns = _synsets(lexname)
        raw = [s[0] for s in syns] if lemmas == "head" else [w for s in syns for w in s]
    elif src == "published":
        if lexname not in PUBLISHED_FILES:
            raise ValueError(f"lexname: {lexname} is not among the published lists (they omit "
                             "noun.animal and noun.food); use source='wordnet'")
        raw = list(_published(lexname))
    else:
        path = src / f"{lexname}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"source: {str(path)!r} not found (expected one file per lexicographer file)")
        raw = path.read_text(encoding="utf-8").splitlines()
    out: list[str] = []
    seen: set[str] = set()
    for p in raw:
        p = " ".join(p.replace("_", " ").split())
        if lowercase:
            p = p.lower()
        if p and p not in seen:
            seen.add(p)
            out.append(p)
    return out


@lru_cache(maxsize=1)
def _synonym_index() -> tuple[dict[str, list[int]], list[frozenset[str]]]:
    groups: list[frozenset[str]] = []
    index: dict[str, list[int]] = {}
    for lexname in LEXNAMES:
        for syn in _synsets(lexname):
            keys = frozenset(_norm(w) for w in syn)
            gid = len(groups)
            groups.append(keys)
            for k in keys:
                index.setdefault(k, []).append(gid)
    return index, groups


def synonyms(names: Iterable[str]) -> set[str]:
    """WordNet synonyms of ``names``: normalised lemmas sharing a shipped synset with any name.

    Comparison is case-, underscore- and whitespace-insensitive; the names themselves are
    included.  All 29 shipped files (all noun files, adj.all, adj.pert, adj.ppl) are searched.
    """
    if isinstance(names, str):
        names = [names]
    index, groups = _synonym_index()
    out: set[str] = set()
    for name in names:
        key = _norm(name)
        out.add(key)
        for gid in index.get(key, ()):
            out |= groups[gid]
    return out


# --------------------------------------------------------------------------------------------
# the Corpus
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Corpus:
    """Phrases with, per phrase, whether it is an adjective and its lexicographer file."""

    phrases: list[str]
    is_adjective: np.ndarray
    lexname: list[str]
    #: The name of the corpus's prompt ensemble (:func:`template_set`): what
    #: :func:`dnm.corpus.encode` uses when no templates are given (None: ``"neglabel"``).
    template_set: str | None = None

    def __post_init__(self):
        phrases = list(self.phrases)
        mask = np.asarray(self.is_adjective, dtype=bool).reshape(-1)
        lex = list(self.lexname)
        if not (len(phrases) == mask.shape[0] == len(lex)):
            raise ValueError(
                f"phrases ({len(phrases)}), is_adjective ({mask.shape[0]}) and lexname ({len(lex)}) "
                "must have the same length"
            )
        mask.setflags(write=False)
        object.__setattr__(self, "phrases", phrases)
        object.__setattr__(self, "is_adjective", mask)
        object.__setattr__(self, "lexname", lex)
        if self.template_set is not None:
            template_set(self.template_set)  # checks the name

    def __len__(self) -> int:
        return len(self.phrases)

    def __iter__(self):
        return iter(self.phrases)

    def __getitem__(self, item):
        """An int gives a phrase; a slice, an index array or a boolean mask gives a Corpus."""
        if isinstance(item, (int, np.integer)):
            return self.phrases[item]
        idx = np.arange(len(self))[item]
        idx = np.atleast_1d(idx)
        return Corpus(
            [self.phrases[i] for i in idx], self.is_adjective[idx], [self.lexname[i] for i in idx],
            self.template_set,
        )

    def __repr__(self) -> str:
        return f"Corpus({len(self)} phrases: {self.n_nouns} nouns, {self.n_adjectives} adjectives)"

    @property
    def n_adjectives(self) -> int:
        return int(self.is_adjective.sum())

    @property
    def n_nouns(self) -> int:
        return len(self) - self.n_adjectives

    def nouns(self) -> "Corpus":
        return self[~self.is_adjective]

    def adjectives(self) -> "Corpus":
        return self[self.is_adjective]

    def counts(self) -> dict[str, int]:
        """Number of phrases per lexicographer file, in order of first appearance."""
        out: dict[str, int] = {}
        for lx in self.lexname:
            out[lx] = out.get(lx, 0) + 1
        return out

    def exclude(self, names: Iterable[str], *, synonyms: bool = False) -> "Corpus":
        """Drop phrases equal to any of ``names`` (case- and underscore-insensitive).

        With ``synonyms=True`` also drop every WordNet synonym of the names (lemmas sharing a
        synset with a name in the shipped WordNet data).
        """
        return self[_keep(self.phrases, names, synonyms)]

    def exclude_hyponyms(self, of, *, synsets=None, include_self: bool = True) -> "Corpus":
        """Drop the nouns that name a WordNet synset at or below the synsets ``of``.

        ``of``: WordNet synset references (``"n02084071"``, ``"dog.n.01"``, offsets) or the name
        of a shipped class-name set with WordNet ids (``"imagenet"``: its 1,000 classes).  The
        subcategories of an ID class (hyponyms and instances, at every depth, and with
        ``include_self`` the classes themselves) are false negatives.  Without ``synsets`` a noun
        is dropped when any WordNet noun sense of it is such a synset (lemma match, the shipped
        WordNet 3.0 graph); with ``synsets`` (one reference or None per phrase, e.g. LVIS's
        column) a phrase is dropped when its own synset is.  Adjectives are kept.
        """
        return self[~self._hyponym_hits(of, synsets, include_self)]

    def _hyponym_hits(self, of, synsets=None, include_self=True) -> np.ndarray:
        """The mask of the phrases :meth:`exclude_hyponyms` drops."""
        from . import wordnet

        rows = wordnet._rows(_class_or_synsets(of), "of")
        below = wordnet._closure(rows, bool(include_self))
        nouns = ~self.is_adjective
        if synsets is None:
            g = wordnet._graph()
            hit = np.zeros(len(self), dtype=bool)
            for i in np.flatnonzero(nouns).tolist():
                senses = g.by_lemma.get(_norm(self.phrases[i]), ())
                hit[i] = any(below[r] for r in senses)
        else:
            srows, known = wordnet._row_mask_of(synsets, len(self), "synsets")
            hit = known & below[np.where(known, srows, 0)] & nouns
        return hit

    def exclude_proper_nouns(self, *, rule: str = "all") -> "Corpus":
        """Drop the nouns that WordNet knows only as proper nouns (instance synsets: cities,
        people, rivers).  ``rule="all"`` (default) drops a noun when every noun sense of it is an
        instance (``mercury``, also an element, stays); ``"any"`` when one sense is.  Phrases
        WordNet does not know, and adjectives, are kept."""
        return self[~self._proper_noun_hits(rule)]

    def _proper_noun_hits(self, rule="all") -> np.ndarray:
        """The mask of the phrases :meth:`exclude_proper_nouns` drops."""
        from . import wordnet

        if rule not in ("all", "any"):
            raise ValueError(f"rule: expected 'all' or 'any', got {rule!r}")
        g = wordnet._graph()
        pick = all if rule == "all" else any
        hit = np.zeros(len(self), dtype=bool)
        for i in np.flatnonzero(~self.is_adjective).tolist():
            senses = g.by_lemma.get(_norm(self.phrases[i]))
            hit[i] = bool(senses) and pick(g.is_instance[r] for r in senses)
        return hit

    def templates(self) -> "TemplateSet":
        """The corpus's prompt ensemble (:attr:`template_set`, default ``"neglabel"``)."""
        return template_set(self.template_set or "neglabel")

    def prompts(self, noun_template: str | None = None, adjective_template: str | None = None) -> list[str]:
        """One prompt per phrase: nouns in ``noun_template``, adjectives in ``adjective_template``.

        The defaults are the corpus's template set when it has one template per part of
        speech (``"the nice {}"`` / ``"This is a {} photo"``); for an ensemble (``csp``) use
        :meth:`prompt_lists` or :func:`dnm.corpus.encode`, which applies it.
        """
        ts = self.templates()
        if noun_template is None or adjective_template is None:
            if len(ts.nouns) != 1 or len(ts.adjectives) != 1:
                raise ValueError(
                    f"noun_template: the corpus's template set {ts.name!r} has {len(ts.nouns)} noun "
                    f"and {len(ts.adjectives)} adjective templates; use prompt_lists() or "
                    "dnm.corpus.encode, or pass one template of each")
        (nt,) = _check_templates(ts.nouns[0] if noun_template is None else noun_template,
                                 "noun_template", None)
        (at,) = _check_templates(ts.adjectives[0] if adjective_template is None else adjective_template,
                                 "adjective_template", None)
        return [(at if a else nt).replace("{}", p) for p, a in zip(self.phrases, self.is_adjective)]

    def prompt_lists(self) -> list[list[str]]:
        """Per phrase, its prompts under every template of the corpus's template set."""
        ts = self.templates()
        return [[t.replace("{}", p) for t in (ts.adjectives if a else ts.nouns)]
                for p, a in zip(self.phrases, self.is_adjective.tolist())]


_synonyms_fn = synonyms


def _keep(phrases: list[str], names: Iterable[str], synonyms: bool) -> np.ndarray:
    """Mask of the phrases that are neither one of ``names`` nor (optionally) a synonym."""
    if isinstance(names, str):
        names = [names]
    drop = _synonyms_fn(names) if synonyms else {_norm(n) for n in names}
    return np.array([_norm(p) not in drop for p in phrases], dtype=bool)


def _check_seed(seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: the conjugation seed must be an int, got {type(seed).__name__}")
    return int(seed)


def conjugate(
    corpus: "Corpus", seed: int = 0, *, words: Sequence[str] = CSP_SUPERCLASSES
) -> "Corpus":
    """CSP's conjugated pool: every adjective ``a`` becomes ``"a W"``, nouns stay.

    ``W`` is drawn by ``random.Random(seed).choice(words)``, one draw per adjective in corpus
    order (CSP's construction, template ``"{} W"``); the lexicographer files are kept.
    """
    seed = _check_seed(seed)
    if isinstance(words, str):
        raise ValueError("words: expected a list of words, got a single string")
    words = list(words)
    if not words or not all(isinstance(w, str) and w.strip() for w in words):
        raise ValueError("words: expected a non-empty list of non-empty strings")
    rng = random.Random(seed)
    phrases = [f"{p} {rng.choice(words)}" if a else p
               for p, a in zip(corpus.phrases, corpus.is_adjective.tolist())]
    return Corpus(phrases, corpus.is_adjective, corpus.lexname, corpus.template_set)


def load(
    preset: str | None = "dnm",
    *,
    files: Iterable[str] | None = None,
    source: str | os.PathLike | None = None,
    lemmas: str = "head",
    exclude: Iterable[str] | None = None,
    exclude_synonyms: bool = False,
    exclude_hyponyms_of=None,
    exclude_proper_nouns: bool = False,
    lowercase: bool = True,
    seed: int = 0,
    conjugated: bool | None = None,
) -> Corpus:
    """Load a corpus: a preset (``neglabel``, ``dnm``, ``csp``) or explicit ``files``.

    ``source``: ``"published"`` (default: the lists the papers ship), ``"wordnet"`` (the
    shipped WordNet 3.0 data; ``lemmas="all"`` takes every lemma) or a directory of
    reference-style lists ``<source>/<lexname>.txt``.  Files are taken in sorted name order
    (adjective files before noun files), phrases in file order, and duplicates are removed
    globally keeping the first occurrence.  ``exclude`` drops phrases equal to those names
    (e.g. the ID class names; case- and underscore-insensitive) and, with
    ``exclude_synonyms=True``, their WordNet synonyms.

    ``exclude_hyponyms_of`` (WordNet synsets or a class-name set with ids, e.g.
    ``"imagenet"``) applies :meth:`Corpus.exclude_hyponyms`, ``exclude_proper_nouns=True``
    :meth:`Corpus.exclude_proper_nouns`: the WordNet filters against false negatives.

    ``conjugated`` (default: True for ``csp`` only) turns the adjectives into CSP's
    conjugated phrases with :func:`conjugate` and ``seed``; the draws are made over all
    adjectives before ``exclude`` (which compares the adjectives themselves), so excluding
    names never changes the other phrases.
    """
    if files is not None:
        chosen = _check_lexnames(files, "files")
    elif preset is not None:
        chosen = list(preset_files(preset))
    else:
        raise ValueError("preset: give a preset name or files=[...]")
    if conjugated is None:
        conjugated = files is None and str(preset).lower() in _CONJUGATED_PRESETS
    seed = _check_seed(seed)
    phrases: list[str] = []
    mask: list[bool] = []
    lex: list[str] = []
    seen: set[str] = set()
    for lexname in sorted(set(chosen)):
        adjective = lexname.startswith("adj.")
        for p in read_lexfile(lexname, source=source, lemmas=lemmas, lowercase=lowercase):
            if p not in seen:
                seen.add(p)
                phrases.append(p)
                mask.append(adjective)
                lex.append(lexname)
    corpus = Corpus(phrases, np.array(mask, dtype=bool), lex,
                    None if files is not None else str(preset).lower())
    keep = None if exclude is None else _keep(corpus.phrases, exclude, exclude_synonyms)
    if exclude_hyponyms_of is not None or exclude_proper_nouns:
        drop = np.zeros(len(corpus), dtype=bool)
        if exclude_hyponyms_of is not None:
            drop |= corpus._hyponym_hits(exclude_hyponyms_of)
        if exclude_proper_nouns:
            drop |= corpus._proper_noun_hits()
        keep = ~drop if keep is None else keep & ~drop
    if conjugated:
        corpus = conjugate(corpus, seed)
    if keep is not None:
        corpus = corpus[keep]
    if len(corpus) == 0:
        raise ValueError("the corpus is empty (all phrases were excluded or the files are empty)")
    return corpus


def _mask_arg(is_adjective, n: int) -> np.ndarray:
    if is_adjective is None:
        return np.zeros(n, dtype=bool)
    if isinstance(is_adjective, (bool, np.bool_)):
        return np.full(n, bool(is_adjective))
    mask = np.asarray(is_adjective)
    if mask.shape != (n,):
        raise ValueError(f"is_adjective: expected a bool or {n} values, got shape {mask.shape}")
    return mask.astype(bool)


def from_list(
    phrases: Iterable[str],
    is_adjective: bool | Sequence[bool] | np.ndarray | None = None,
    *,
    lexname: str | Sequence[str] = "custom",
    dedup: bool = True,
) -> Corpus:
    """A user corpus from a list of phrases (``is_adjective``: one bool for all, or a mask)."""
    if isinstance(phrases, str):
        raise ValueError("phrases: expected a list of phrases, got a single string")
    phrases = list(phrases)
    if not phrases:
        raise ValueError("phrases: the corpus is empty")
    clean = []
    for i, p in enumerate(phrases):
        if not isinstance(p, str):
            raise ValueError(f"phrases: item {i} is not a string: {p!r}")
        p = p.strip()
        if not p:
            raise ValueError(f"phrases: item {i} is empty")
        clean.append(p)
    mask = _mask_arg(is_adjective, len(clean))
    if isinstance(lexname, str):
        lex = [lexname] * len(clean)
    else:
        lex = list(lexname)
        if len(lex) != len(clean):
            raise ValueError(f"lexname: expected a string or {len(clean)} values, got {len(lex)}")
    if dedup:
        seen: set[str] = set()
        keep = []
        for i, p in enumerate(clean):
            if p not in seen:
                seen.add(p)
                keep.append(i)
        clean = [clean[i] for i in keep]
        mask = mask[keep]
        lex = [lex[i] for i in keep]
    return Corpus(clean, mask, lex)


def from_file(
    path: str | os.PathLike,
    is_adjective: bool | Sequence[bool] | np.ndarray | None = None,
    *,
    lexname: str | None = None,
    dedup: bool = True,
) -> Corpus:
    """A user corpus from a UTF-8 text file, one phrase a line (blank lines are skipped)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"path: corpus file {str(p)!r} not found")
    lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise ValueError(f"path: corpus file {str(p)!r} is empty")
    return from_list(lines, is_adjective, lexname=lexname or p.stem, dedup=dedup)


# the encoder and its cache live in dnm.encoding; re-exported here, where they always were
from .encoding import encode  # noqa: E402
