"""Hyper-parameter presets of the negative-label methods (DESIGN §7), as data.

Sources:

* DNM rows: the reference code of *Debiased Negative Mining* (KDD 2026, arXiv 2605.23797),
  per CLIP backbone: ``noun_ratio`` (a_noun) and ``adj_ratio`` (a_adj) are the kept fractions of
  nouns and adjectives, ``k`` the kNN size of the log-distance density, ``tau`` the assumed
  true-negative fraction, ``temperature`` (T) and ``groups`` (G) the scoring settings.
* NegLabel (Jiang et al., ICLR 2024): ``ratio`` 0.15 for nouns and adjectives, ``percentile``
  η = 0.95, T = 0.01, G = 100.  CSP uses NegLabel's settings plus ``max_cut`` 0.95 (DESIGN §4.2).
* MCM (Ming et al., NeurIPS 2022): T = 1.  Energy: T = 0.01 (the logit scale of CLIP).
  max-logit has no parameter; its ``temperature`` is only used by
  :meth:`dnm.NegativeLabelDetector.explain` to express shares of exp(s/T).

The NegLabel / CSP / MCM / energy settings do not depend on the backbone.  Use
:func:`resolve` to get the parameters of a (method, preset) pair; any of them can be overridden
by the detector's keyword arguments.
"""
from __future__ import annotations

import re
from types import MappingProxyType

__all__ = ["PRESETS", "METHOD_DEFAULTS", "METHODS", "DEFAULT_PRESET", "resolve", "preset_name"]

#: Methods known to :class:`dnm.NegativeLabelDetector`.
METHODS = ("dnm", "neglabel", "csp", "mcm", "energy", "max_logit")

DEFAULT_PRESET = "ViT-B/16"


def _row(a_noun, a_adj, k, tau, T, G):
    return MappingProxyType(dict(noun_ratio=a_noun, adj_ratio=a_adj, k=k, tau=tau,
                                 temperature=T, groups=G))


#: DNM parameters per CLIP backbone (DESIGN §7, from the DNM reference code).
PRESETS = MappingProxyType({
    "ViT-B/16": _row(0.23, 0.13, 100, 0.5, 0.01, 100),
    "ViT-L/14": _row(0.23, 0.13, 100, 0.5, 0.01, 100),
    "ViT-B/32": _row(0.25, 0.13, 10, 0.12, 0.01, 100),
    "RN50": _row(0.25, 0.13, 100, 0.5, 0.01, 100),
    "ViT-L/14@336px": _row(0.25, 0.08, 100, 0.12, 0.01, 100),
})

_NEGLABEL = dict(ratio=0.15, percentile=0.95, max_cut=None, temperature=0.01, groups=100)

#: Backbone-independent parameters of the other methods.
METHOD_DEFAULTS = MappingProxyType({
    "neglabel": MappingProxyType(dict(_NEGLABEL)),
    "csp": MappingProxyType(dict(_NEGLABEL, max_cut=0.95)),
    "mcm": MappingProxyType(dict(temperature=1.0)),
    "energy": MappingProxyType(dict(temperature=0.01)),
    "max_logit": MappingProxyType(dict(temperature=0.01)),
})

#: The parameters each method uses (others are ignored and resolve to None).
METHOD_PARAMS = MappingProxyType({
    "dnm": ("noun_ratio", "adj_ratio", "k", "tau", "temperature", "groups"),
    "neglabel": ("ratio", "percentile", "max_cut", "temperature", "groups"),
    "csp": ("ratio", "percentile", "max_cut", "temperature", "groups"),
    "mcm": ("temperature",),
    "energy": ("temperature",),
    "max_logit": ("temperature",),
})

ALL_PARAMS = ("temperature", "tau", "groups", "k", "noun_ratio", "adj_ratio", "ratio",
              "percentile", "max_cut")


def _key(name):
    return re.sub(r"[^0-9a-z]", "", name.lower())


# accepted spellings: "ViT-B/16", "vit-b/16", open_clip's "ViT-B-16", "ViT-L-14-336", ...
_ALIASES = {_key(k): k for k in PRESETS}
_ALIASES[_key("ViT-L-14-336")] = "ViT-L/14@336px"


def preset_name(preset):
    """The canonical name of a backbone preset (case, '-', '/' and '@' insensitive)."""
    if preset is None:
        return DEFAULT_PRESET
    if not isinstance(preset, str):
        raise TypeError(f"preset: expected a backbone name (str), got {type(preset).__name__}")
    name = _ALIASES.get(_key(preset))
    if name is None:
        raise ValueError(f"preset: unknown backbone {preset!r}; known presets: {list(PRESETS)}")
    return name


def resolve(method, preset=None, **overrides):
    """The parameters of ``method`` under ``preset``, with non-None ``overrides`` applied.

    Returns a dict over all of :data:`ALL_PARAMS`; parameters the method does not use are None.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {list(METHODS)}, got {method!r}")
    unknown = set(overrides) - set(ALL_PARAMS)
    if unknown:
        raise TypeError(f"unknown parameter(s): {sorted(unknown)}")
    name = preset_name(preset)  # validated for every method
    base = PRESETS[name] if method == "dnm" else METHOD_DEFAULTS[method]
    used = METHOD_PARAMS[method]
    out = dict.fromkeys(ALL_PARAMS)
    for name in used:
        out[name] = base[name]
        if overrides.get(name) is not None:
            out[name] = overrides[name]
    return out
