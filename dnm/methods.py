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
           "backbone_name", "resolve", "mining_methods"]

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


# ---------------------------------------------------------------------------------------------
# the records
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Method:
    """One OOD method.

    name : the ``method=`` string.
    label : its name in tables and plots.
    kind : the score kind of the C kernel (``"mcm"``, ``"max_logit"``, ``"energy"``,
        ``"neglabel"``, ``"dnm"``; ``dnm._core.SCORE_<KIND>`` is its code).
    mine : None (scores on the ID labels only) or ``f(id_labels, candidates,
        is_adjective, params, *, num_threads, progress) -> indices`` choosing the negatives.
    defaults : the parameters the method uses, with their defaults.
    by_backbone : per CLIP backbone, the defaults where they depend on it (else empty).
    streaming : True for a method that adapts to the test stream (its scores depend on
        the images seen before); such a record also names ``stream``, the factory of its
        stream object.
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
)})


def mining_methods():
    """The names of the methods that mine negatives."""
    return tuple(n for n, m in METHODS.items() if m.needs_negatives)


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
