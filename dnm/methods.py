"""The method registry: one record per OOD method, read by the detector, the CLI and the demo.

A record (:class:`Method`) says everything the rest of the package needs to know about a
method: its score kind (which epilogue of the C scoring kernel computes it), whether and how
it mines negative labels (which function of :mod:`dnm.mining`), the parameters it uses with
their defaults (per CLIP backbone where they depend on it), and how it is presented (a label
for tables, a one-line summary for ``--help``).  Parameters are described once in
:data:`PARAMS` (type, check, help text).

Adding a method is adding a record to :data:`METHODS` (and, when it needs one, a kernel or
an epilogue with its NumPy twin); see "Adding a method" in ``docs/design.md``.  A method that
adapts to the test stream (AdaNeg, TANL) is a record with ``streaming=True``: the detector
then hands out a stream object instead of scoring batches independently.

Sources of the defaults:

* DNM rows: the reference code of *Debiased Negative Mining* (KDD 2026, arXiv 2605.23797),
  per CLIP backbone: ``noun_ratio`` (a_noun) and ``adj_ratio`` (a_adj) are the kept fractions
  of nouns and adjectives, ``k`` the kNN size of the log-distance density, ``tau`` the assumed
  true-negative fraction, ``temperature`` (T) and ``groups`` (G) the scoring settings.
* NegLabel (Jiang et al., ICLR 2024): ``ratio`` 0.15 for nouns and adjectives,
  ``percentile`` eta = 0.95, T = 0.01, G = 100.  CSP uses NegLabel's settings plus
  ``max_cut`` 0.95.
* AdaNeg (Zhang et al., NeurIPS 2024) and TANL (CVPR 2026): the official scripts' values,
  as the contract in ``dnm/tta.py`` states them: AdaNeg ``groups`` 5, ``cache_threshold``
  0.5, ``gap`` 0.5, ``memory_length`` 10, ``weight`` 0.1, ``beta`` 5 (the script's 5.5 cast
  by ``int()``), entropy replacement, T = 0.01, batches of 256; negatives chosen as the
  official code does (``n_negatives`` 10,000 of lowest order statistic at index
  floor(0.95 C) of the cosines to the ID labels, adjectives and nouns in proportion).  TANL
  ``top`` 1000, ``step`` 1, ``alpha`` 0, ``gap`` 0.5, queues of 300, a score queue of
  20,000, T = 0.01, batches of 256, on the whole corpus (the same selection first).
* MCM (Ming et al., NeurIPS 2022): T = 1.  Energy: T = 0.01 (the logit scale of CLIP).
  max-logit has no parameter; its ``temperature`` is only used by
  :meth:`dnm.NegativeLabelDetector.explain` to express shares of exp(s/T).
"""
from __future__ import annotations

import numbers
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping, Optional

import numpy as np

from ._validate import check_fraction, check_int, check_positive

__all__ = ["Method", "Param", "METHODS", "PARAMS", "BACKBONES", "DEFAULT_BACKBONE", "get",
           "backbone_name", "resolve", "mining_methods", "streaming_methods",
           "official_selection"]

#: The backbone whose parameters are used when none is named.
DEFAULT_BACKBONE = "ViT-B/16"


# ---------------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------------

def _check_groups(g, name="groups"):
    if isinstance(g, (numbers.Integral, np.integer)) and not isinstance(g, (bool, np.bool_)):
        return check_int(g, name, low=1)
    if isinstance(g, (bool, np.bool_)) or np.ndim(g) != 2:
        raise TypeError(f"{name}: expected an int or a (G, Q) integer index array, got "
                        f"{type(g).__name__}")
    return g  # an index array: checked against the negatives by make_groups


def _check_max_cut(mc, name="max_cut"):
    if mc is None:
        return None
    if isinstance(mc, bool) or not isinstance(mc, numbers.Real) or not -1 <= mc <= 1:
        raise ValueError(f"{name}: expected None or a cosine in [-1, 1], got {mc!r}")
    return float(mc)


def _closed_fraction(v, name):
    return check_fraction(v, name, open_low=False)


def _check_real(v, name):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(v).__name__}")
    if not np.isfinite(float(v)):
        raise ValueError(f"{name}: must be finite, got {v!r}")
    return float(v)


def _check_beta(v, name):
    v = _check_real(v, name)
    if v <= 0:
        raise ValueError(f"{name}: must be > 0, got {v!r}")
    return v


def _check_bool(v, name):
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(v).__name__}")
    return bool(v)


def _choice(*choices):
    def check(v, name):
        if not isinstance(v, str) or v not in choices:
            raise ValueError(f"{name}: expected one of {list(choices)}, got {v!r}")
        return v
    return check


def _int_at_least(low):
    return lambda v, n: check_int(v, n, low=low)


def _bool_arg(text):
    """argparse type of a yes/no option."""
    t = str(text).strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    import argparse

    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


@dataclass(frozen=True)
class Param:
    """One method parameter: its check (value, name) -> value and its help text.

    ``cli_type`` is the argparse type of its ``--option`` (None: not a CLI option);
    ``mining`` says it only matters when negatives are mined (``dnm mine``)."""

    name: str
    check: Callable
    help: str
    cli_type: Optional[type] = float
    mining: bool = False


#: Every parameter of every method, in the order of :func:`resolve`'s result.
PARAMS = MappingProxyType({p.name: p for p in (
    Param("temperature", check_positive, "score temperature T"),
    Param("tau", check_fraction, "assumed true-negative fraction"),
    Param("groups", _check_groups, "number of negative groups G", int),
    Param("k", lambda v, n: check_int(v, n, low=1), "kNN size of the log-distance density",
          int, mining=True),
    Param("noun_ratio", _closed_fraction, "kept fraction of nouns (a_noun)", mining=True),
    Param("adj_ratio", _closed_fraction, "kept fraction of adjectives (a_adj)", mining=True),
    Param("ratio", _closed_fraction, "kept fraction of nouns and of adjectives", mining=True),
    Param("percentile", _closed_fraction, "eta quantile of the cosines to the ID labels",
          mining=True),
    Param("max_cut", _check_max_cut, "max-cosine cut (None: no cut)", mining=True),
    # the test-time adaptive methods (dnm.tta)
    Param("n_negatives", _int_at_least(1), "number of negatives M chosen (adjectives and "
          "nouns in proportion)", int, mining=True),
    Param("batch_size", _int_at_least(1), "images per batch of the test stream", int),
    Param("cache_threshold", _closed_fraction, "AdaNeg: threshold of the memory's caching "
          "(the cut points are threshold +- gap)"),
    Param("gap", _closed_fraction, "gap of the ID-like / OOD-like cut points"),
    Param("memory_length", _int_at_least(1), "AdaNeg: slots per label (text + images)", int),
    Param("weight", _check_real, "AdaNeg: weight of the vanilla score in adaptive + weight "
          "x vanilla"),
    Param("sample_adaptive", _check_bool, "AdaNeg: per-image proxies", _bool_arg),
    Param("beta", _check_beta, "AdaNeg: sharpness of the sample-adaptive proxy weights"),
    Param("replacement", _choice("entropy", "first"), "AdaNeg: rule of a full memory list "
          "(entropy: as designed; first: as the official float16 run behaves)", str),
    Param("variant", _choice("combined", "adaptive", "vanilla"), "AdaNeg: the score returned",
          str),
    Param("top", _int_at_least(1), "TANL: negatives used per image (beta)", int),
    Param("step", _int_at_least(0), "TANL: prefix step gamma of the activation-aware score "
          "(0: one sum)", int),
    Param("alpha", _closed_fraction, "TANL: weight of the queues in the batch's direction"),
    Param("queue_length", _int_at_least(1), "TANL: rows of each activation queue", int),
    Param("score_queue_length", _int_at_least(1), "TANL: scores kept for Otsu's threshold",
          int),
)})


# ---------------------------------------------------------------------------------------------
# mining: how a record's negatives are chosen
# ---------------------------------------------------------------------------------------------

def _mine_knn(id_labels, candidates, is_adjective, p, *, num_threads=None, progress=False):
    """DNM: kNN log-distance on the raw candidates (the ID labels are not used)."""
    from .mining import select_dnm

    return select_dnm(candidates, is_adjective, noun_ratio=p["noun_ratio"],
                      adj_ratio=p["adj_ratio"], k=p["k"], num_threads=num_threads,
                      progress=progress)


def _mine_closeness(id_labels, candidates, is_adjective, p, *, num_threads=None,
                    progress=False):
    """NegLabel / CSP: the lowest eta-quantile cosines to the ID labels (CSP: with a cut)."""
    from .mining import select_neglabel

    return select_neglabel(id_labels, candidates, is_adjective, ratio=p["ratio"],
                           percentile=p["percentile"], max_cut=p["max_cut"],
                           num_threads=num_threads, progress=progress)


def official_selection(id_labels, candidates, is_adjective, n_negatives, percentile=0.95, *,
                       num_threads=None, progress=False):
    """The negatives of the official AdaNeg / TANL code: int64 indices, nouns then adjectives
    (dnm's order for every selection; the method's description does not fix it, and it only
    matters through the grouping permutation and the M mod G dropped negatives).

    Closeness of a candidate = the order statistic at index ``floor(percentile * C)`` (in
    double) of its ascending cosines to the C ID labels, without interpolation; of the M =
    ``n_negatives`` kept, ``floor(M * N_adj / N)`` are the adjectives of lowest closeness and
    the rest the nouns of lowest closeness (ties: lower index first).  ValueError when M
    exceeds the candidates or a part of speech has too few.
    """
    from .mining import neglabel_closeness
    from ._validate import as_matrix, check_mask

    P = as_matrix(id_labels, "id_labels")
    X = as_matrix(candidates, "candidates")
    adj = check_mask(is_adjective, X.shape[0])
    M = check_int(n_negatives, "n_negatives", low=1)
    eta = check_fraction(percentile, "percentile", open_low=False)
    N, C = X.shape[0], P.shape[0]
    if M > N:
        raise ValueError(f"n_negatives: {M} negatives asked for but there are only {N} "
                         "candidates; pass a smaller n_negatives")
    k = min(int(np.floor(eta * C)), C - 1)
    # NumPy's "linear" quantile at position k exactly: a fraction q with (C - 1) q == k in
    # double, so the kernel's interpolation weight is exactly 0
    q = 0.0 if C == 1 else k / (C - 1)
    while C > 1 and (C - 1) * q < k:
        q = float(np.nextafter(q, 2.0))
    while C > 1 and (C - 1) * q > k:
        q = float(np.nextafter(q, -1.0))
    close = neglabel_closeness(P, X, min(q, 1.0), num_threads=num_threads, progress=progress)
    n_adj = int(adj.sum())
    m_adj = (M * n_adj) // N
    m_noun = M - m_adj
    out = []
    for mask, m, what in ((~adj, m_noun, "nouns"), (adj, m_adj, "adjectives")):
        idx = np.flatnonzero(mask)
        if m > idx.size:
            raise ValueError(f"n_negatives: {m} {what} asked for (in proportion) but there "
                             f"are only {idx.size}")
        out.append(idx[np.argsort(close[idx], kind="stable")[:m]])
    return np.concatenate(out).astype(np.int64, copy=False)


def _mine_official(id_labels, candidates, is_adjective, p, *, num_threads=None,
                   progress=False):
    """AdaNeg: the official selection (:func:`official_selection`)."""
    return official_selection(id_labels, candidates, is_adjective, p["n_negatives"],
                              p["percentile"], num_threads=num_threads, progress=progress)


def _mine_corpus(id_labels, candidates, is_adjective, p, *, num_threads=None, progress=False):
    """TANL: the whole corpus, the official selection first, then every other candidate in
    index order (a permutation of the candidates)."""
    sel = _mine_official(id_labels, candidates, is_adjective, p, num_threads=num_threads,
                         progress=progress)
    rest = np.ones(np.shape(candidates)[0], dtype=bool)
    rest[sel] = False
    return np.concatenate([sel, np.flatnonzero(rest)]).astype(np.int64, copy=False)


# ---------------------------------------------------------------------------------------------
# streams: how a streaming record builds its stream object from the fitted arrays
# ---------------------------------------------------------------------------------------------

def _stream_adaneg(id_labels, negatives, noise, groups_index, p, *, seed, num_threads=None,
                   progress=False):
    from .tta import AdaNeg

    return AdaNeg(id_labels, negatives, groups=groups_index, seed=seed,
                  threshold=p["cache_threshold"], gap=p["gap"],
                  memory_length=p["memory_length"], weight=p["weight"],
                  sample_adaptive=p["sample_adaptive"], beta=p["beta"],
                  replacement=p["replacement"], temperature=p["temperature"],
                  output=p["variant"], num_threads=num_threads, progress=progress)


def _stream_tanl(id_labels, negatives, noise, groups_index, p, *, seed, num_threads=None,
                 progress=False):
    from .tta import TANL

    return TANL(id_labels, negatives, noise, top=p["top"], step=p["step"], alpha=p["alpha"],
                gap=p["gap"], queue_length=p["queue_length"],
                score_queue_length=p["score_queue_length"], seed=seed,
                temperature=p["temperature"], num_threads=num_threads, progress=progress)


# ---------------------------------------------------------------------------------------------
# the records
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Method:
    """One OOD method.

    name : the ``method=`` string.
    label : its name in tables and plots.
    kind : the score kind of the C kernel (``"mcm"``, ``"max_logit"``, ``"energy"``,
        ``"neglabel"``, ``"dnm"``; ``dnm._core.SCORE_<KIND>`` is its code); for a streaming
        record its own name (its kernel is ``csrc/tta.c``, run by its stream object).
    mine : None (scores on the ID labels only) or ``f(id_labels, candidates,
        is_adjective, params, *, num_threads, progress) -> indices`` choosing the negatives.
    defaults : the parameters the method uses, with their defaults.
    by_backbone : per CLIP backbone, the defaults where they depend on it (else empty).
    streaming : True for a method that adapts to the test stream (its scores depend on
        the images seen before); such a record also names ``stream``, the factory of its
        stream object: ``f(id_labels, negatives, noise, groups_index, params, *, seed,
        num_threads, progress)`` -> an object with ``update(batch)``, ``reset()``, ``save()``.
    needs_noise : the method also takes the embeddings of TANL's 15 noise images
        (``fit(..., noise=)``).
    summary : one line for ``--help`` and the docs.
    needs_id_labels_to_mine : False when ``mine`` ignores the ID labels (DNM).
    pool : the :func:`dnm.corpus.load` preset of the method's candidate pool (its paper's
        own: ``csp`` is CSP's conjugated pool), None for methods without negatives.  The
        pool's prompt templates come with it (``Corpus.templates``).
    """

    name: str
    label: str
    kind: str
    defaults: Mapping
    summary: str
    mine: Optional[Callable] = None
    by_backbone: Mapping = field(default_factory=lambda: MappingProxyType({}))
    streaming: bool = False
    stream: Optional[Callable] = None
    needs_id_labels_to_mine: bool = True
    pool: Optional[str] = None
    needs_noise: bool = False

    @property
    def needs_negatives(self):
        """The method scores against negative labels (it mines them in ``fit``)."""
        return self.mine is not None

    @property
    def params(self):
        """The names of the parameters the method uses."""
        return tuple(self.defaults)

    def defaults_for(self, backbone=None):
        """The defaults under ``backbone`` (any spelling :func:`backbone_name` accepts)."""
        name = backbone_name(backbone)
        return dict(self.by_backbone.get(name, self.defaults))


def _row(a_noun, a_adj, k, tau, T, G):
    return MappingProxyType(dict(noun_ratio=a_noun, adj_ratio=a_adj, k=k, tau=tau,
                                 temperature=T, groups=G))


_DNM_ROWS = MappingProxyType({
    "ViT-B/16": _row(0.23, 0.13, 100, 0.5, 0.01, 100),
    "ViT-L/14": _row(0.23, 0.13, 100, 0.5, 0.01, 100),
    "ViT-B/32": _row(0.25, 0.13, 10, 0.12, 0.01, 100),
    "RN50": _row(0.25, 0.13, 100, 0.5, 0.01, 100),
    "ViT-L/14@336px": _row(0.25, 0.08, 100, 0.12, 0.01, 100),
})
#: The CLIP backbones with parameter rows.
BACKBONES = tuple(_DNM_ROWS)

_NEGLABEL = dict(ratio=0.15, percentile=0.95, max_cut=None, temperature=0.01, groups=100)

#: The records, in the order of tables (the demo's rows, ``--method`` choices).
METHODS = MappingProxyType({m.name: m for m in (
    Method("mcm", "MCM", "mcm", MappingProxyType(dict(temperature=1.0)),
           "maximum concept matching: max softmax over the ID labels"),
    Method("max_logit", "max-logit", "max_logit", MappingProxyType(dict(temperature=0.01)),
           "the largest cosine to an ID label"),
    Method("energy", "energy", "energy", MappingProxyType(dict(temperature=0.01)),
           "T log-sum-exp of the ID logits"),
    Method("neglabel", "NegLabel", "neglabel", MappingProxyType(dict(_NEGLABEL)),
           "NegLabel: eta-quantile mining, grouped score S / (S + N_j)", mine=_mine_closeness,
           pool="neglabel"),
    Method("csp", "CSP", "neglabel", MappingProxyType(dict(_NEGLABEL, max_cut=0.95)),
           "CSP: conjugated adjective pool, NegLabel's mining with the max-cosine cut",
           mine=_mine_closeness, pool="csp"),
    Method("dnm", "DNM", "dnm", _DNM_ROWS[DEFAULT_BACKBONE],
           "Debiased Negative Mining: kNN log-distance mining, debiased grouped score",
           mine=_mine_knn, by_backbone=_DNM_ROWS, needs_id_labels_to_mine=False, pool="dnm"),
    Method("adaneg", "AdaNeg", "adaneg", MappingProxyType(dict(
               n_negatives=10000, percentile=0.95, groups=5, temperature=0.01, batch_size=256,
               cache_threshold=0.5, gap=0.5, memory_length=10, weight=0.1,
               sample_adaptive=False, beta=5.0, replacement="entropy", variant="combined")),
           "AdaNeg: test-time memory of ID-like and OOD-like images adapting the labels "
           "(streaming)", mine=_mine_official, streaming=True, stream=_stream_adaneg,
           pool="neglabel"),
    Method("tanl", "TANL", "tanl", MappingProxyType(dict(
               n_negatives=10000, percentile=0.95, temperature=0.01, batch_size=256, top=1000,
               step=1, alpha=0.0, gap=0.5, queue_length=300, score_queue_length=20000)),
           "TANL: test-time activated negative labels over the whole corpus (streaming; needs "
           "noise-image embeddings)", mine=_mine_corpus, streaming=True, stream=_stream_tanl,
           pool="neglabel", needs_noise=True),
)})


def mining_methods():
    """The names of the methods that mine negatives."""
    return tuple(n for n, m in METHODS.items() if m.needs_negatives)


def streaming_methods():
    """The names of the methods that adapt to the test stream."""
    return tuple(n for n, m in METHODS.items() if m.streaming)


def get(method):
    """The record of ``method``; ValueError naming the known ones otherwise."""
    rec = METHODS.get(method) if isinstance(method, str) else None
    if rec is None:
        raise ValueError(f"method: expected one of {list(METHODS)}, got {method!r}")
    return rec


def _key(name):
    return re.sub(r"[^0-9a-z]", "", name.lower())


# accepted spellings: "ViT-B/16", "vit-b/16", open_clip's "ViT-B-16", "ViT-L-14-336", ...
_ALIASES = {_key(k): k for k in BACKBONES}
_ALIASES[_key("ViT-L-14-336")] = "ViT-L/14@336px"


def backbone_name(backbone):
    """The canonical name of a backbone (case, '-', '/' and '@' insensitive); None: the
    default."""
    if backbone is None:
        return DEFAULT_BACKBONE
    if not isinstance(backbone, str):
        raise TypeError(f"preset: expected a backbone name (str), got {type(backbone).__name__}")
    name = _ALIASES.get(_key(backbone))
    if name is None:
        raise ValueError(f"preset: unknown backbone {backbone!r}; known presets: "
                         f"{list(BACKBONES)}")
    return name


def resolve(method, backbone=None, *, check=False, **overrides):
    """The parameters of ``method`` under ``backbone``, with non-None ``overrides`` applied.

    Returns a dict over all of :data:`PARAMS`; parameters the method does not use are None.
    ``check=True`` also validates the used ones (ValueError / TypeError naming them).
    """
    rec = get(method)
    unknown = set(overrides) - set(PARAMS)
    if unknown:
        raise TypeError(f"unknown parameter(s): {sorted(unknown)}")
    base = rec.defaults_for(backbone)  # the backbone is validated for every method
    out = dict.fromkeys(PARAMS)
    for name in rec.params:
        v = overrides.get(name)
        out[name] = base[name] if v is None else v
        if check:
            out[name] = PARAMS[name].check(out[name], name)
    return out
