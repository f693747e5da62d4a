"""Hyper-parameter presets of the methods, as data: a read-only view of :mod:`dnm.methods`.

The tables live in the method registry (:mod:`dnm.methods`, which also gives their
sources); this module keeps the names it has always offered:

* :data:`PRESETS` - DNM's parameters per CLIP backbone;
* :data:`METHOD_DEFAULTS` - the backbone-independent parameters of the other methods;
* :data:`METHOD_PARAMS` - the parameters each method uses;
* :func:`resolve` - the parameters of a (method, preset) pair, with overrides;
* :func:`preset_name` - the canonical spelling of a backbone.
"""
from __future__ import annotations

from types import MappingProxyType

from . import methods as _methods

__all__ = ["PRESETS", "METHOD_DEFAULTS", "METHODS", "DEFAULT_PRESET", "resolve", "preset_name"]

#: Methods known to :class:`dnm.NegativeLabelDetector`.
METHODS = tuple(_methods.METHODS)

DEFAULT_PRESET = _methods.DEFAULT_BACKBONE

#: DNM parameters per CLIP backbone (from the DNM reference code).
PRESETS = _methods.METHODS["dnm"].by_backbone

#: Backbone-independent parameters of the other methods.
METHOD_DEFAULTS = MappingProxyType({n: m.defaults for n, m in _methods.METHODS.items()
                                    if not m.by_backbone})

#: The parameters each method uses (others are ignored and resolve to None).
METHOD_PARAMS = MappingProxyType({n: m.params for n, m in _methods.METHODS.items()})

ALL_PARAMS = tuple(_methods.PARAMS)


def preset_name(preset):
    """The canonical name of a backbone preset (case, '-', '/' and '@' insensitive)."""
    return _methods.backbone_name(preset)


def resolve(method, preset=None, **overrides):
    """The parameters of ``method`` under ``preset``, with non-None ``overrides`` applied.

    Returns a dict over all of :data:`ALL_PARAMS`; parameters the method does not use are None.
    """
    return _methods.resolve(method, preset, **overrides)
