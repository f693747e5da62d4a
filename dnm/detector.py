"""``NegativeLabelDetector``: zero-shot OOD detection with negative labels, scikit-learn style.

One estimator for every method of the package (DNM, NegLabel, CSP, MCM, energy, max-logit)::

    det = dnm.NegativeLabelDetector("dnm", preset="ViT-B/16")
    det.fit(id_label_embeddings, raw_candidate_embeddings, phrases=corpus)  # mines negatives
    scores = det.score_samples(image_embeddings)          # higher = more in-distribution
    det.set_threshold(id_validation_images, tpr=0.95)
    det.predict(image_embeddings)                         # +1 ID, -1 OOD
    det.explain(image_embeddings[:10], k=5)               # which labels carry each score
    det.save("detector.npz"); det = dnm.NegativeLabelDetector.load("detector.npz")

Conventions (scikit-learn): ``__init__`` only stores its arguments; they are checked by ``fit``.
``get_params`` / ``set_params`` are implemented here (scikit-learn is not a dependency) so that
``sklearn.base.clone`` works.  Learned attributes end in ``_``.  ``None`` parameters are taken
from the preset (:mod:`dnm.presets`, DESIGN §7); parameters a method does not use are ignored
and resolve to ``None``.  Using an unfitted detector raises :class:`NotFittedError`.

File format (``save`` / ``load``), format_version 1
---------------------------------------------------
One ``.npz`` archive as written by ``numpy.savez`` (a zip of ``.npy`` members, uncompressed).
It never holds pickled objects and is read without executing code: the ``.npy`` headers are
parsed with ``numpy.lib.format`` (a literal parser) and the data with ``numpy.frombuffer``.
Members:

``metadata.npy``
    uint8, 1-D: UTF-8 JSON object with ``format`` (``"dnm.NegativeLabelDetector"``),
    ``format_version`` (int), ``dnm_version``, ``params`` (the constructor arguments; an
    array-valued ``groups`` is stored as ``{"array": "groups_index"}``), ``fitted`` (the
    resolved scalar attributes: ``method_``, ``temperature_``, ``tau_``, ``groups_``, ``k_``,
    ``noun_ratio_``, ``adj_ratio_``, ``ratio_``, ``percentile_``, ``max_cut_``, ``guard_``,
    ``seed_``, ``n_features_in_``, ``threshold_``, ``threshold_tpr_``), ``negative_phrases`` and
    ``id_names`` (lists of str or null), ``arrays`` (member name -> ``{"dtype", "shape"}``), and
    ``sha256``.
``id_labels.npy``       (C, D) float16/32/64: the ID label embeddings as given to ``fit``.
``negatives.npy``       (M, D) float32: the selected negative rows (raw, as given).
``negative_indices.npy`` (M,) int64: their rows in the candidates given to ``fit``.
``groups_index.npy``    (G, Q) int64, only for dnm / neglabel / csp: the grouping of negatives.

``sha256`` is the hex SHA-256 of: the canonical JSON (sorted keys, separators ``,`` ``:``,
ASCII) of the metadata object without its ``sha256`` key, then for every array member in
sorted name order its name, a NUL byte, and its C-order little-endian data bytes.

``load`` checks, in order and before trusting anything: the file is a zip archive with exactly
these members; the metadata header is a 1-D uint8 array of at most 64 MiB; the JSON parses and
names this format; ``format_version`` is at most the supported version (a newer file asks for
a newer dnm); each member's ``.npy`` header (read with ``read_array_header_1_0/2_0``) agrees
with the metadata's dtype and shape, the dtype is an allowed one, and the claimed size fits in
the member (so a header claiming 10^12 rows is refused without allocating); the data are read
in bounded chunks and must have exactly the claimed size (members must be stored
uncompressed, so no size can exceed the file's); the checksum matches; the shapes are mutually
consistent.  Any failure raises :class:`DetectorFileError` (a ``ValueError``).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import numbers
import os
import tempfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import _config, _core
from . import presets as _presets
from ._validate import (as_matrix, check_fraction, check_int, check_mask, check_positive,
                        check_same_dim)
from .scores import (_KIND, DNMGuardWarning, dnm_ratio, dnm_score, energy_score, make_groups,
                     max_logit_score, mcm_score, neglabel_score)

__all__ = ["NegativeLabelDetector", "Explanation", "NotFittedError", "DetectorFileError",
           "FORMAT_VERSION"]

FORMAT_VERSION = 1
_FORMAT_NAME = "dnm.NegativeLabelDetector"
_METADATA_MAX_BYTES = 64 << 20
_READ_CHUNK = 1 << 20
_GUARDS = ("floor", "dcl", "raise")
_NEEDS_NEGATIVES = ("dnm", "neglabel", "csp")
_FITTED_SCALARS = ("method_", "temperature_", "tau_", "groups_", "k_", "noun_ratio_",
                   "adj_ratio_", "ratio_", "percentile_", "max_cut_", "guard_", "seed_",
                   "n_features_in_", "threshold_", "threshold_tpr_")
_ARRAY_DTYPES = {"id_labels": ("<f2", "<f4", "<f8"), "negatives": ("<f4",),
                 "negative_indices": ("<i8",), "groups_index": ("<i8",)}


class NotFittedError(ValueError, AttributeError):
    """The detector is used before ``fit`` (or ``decision_function`` before ``set_threshold``).

    Subclasses ValueError and AttributeError, like scikit-learn's ``NotFittedError``.
    """


class DetectorFileError(ValueError):
    """A saved detector file is invalid: not an npz, truncated, tampered with, or too new."""


# ---------------------------------------------------------------------------------------------
# Explanation result
# ---------------------------------------------------------------------------------------------

@dataclass
class Explanation:
    """Per image, the top-k ID and negative labels by cosine (``NegativeLabelDetector.explain``).

    All 2-D arrays have shape (N, k) (k capped by the number of labels), rows sorted by cosine,
    highest first (ties: lower index first).  A label's *share* is its term of the score's
    denominator S + Σ_j N_j (S = Σ_c exp(s_c/T), N_j = Σ_{k in group j} exp(u_k/T)) divided by
    the whole denominator, computed in the log domain; over all labels the shares of an image
    sum to 1.  A negative that appears in several groups counts once per appearance; negatives
    in no group (the M mod G dropped ones) do not enter the score and are not listed.
    """

    id_indices: np.ndarray          # (N, k) int64, rows of id_labels
    id_cosines: np.ndarray          # (N, k) float64
    id_shares: np.ndarray           # (N, k) float64
    negative_indices: np.ndarray    # (N, k) int64, rows of negatives_
    negative_candidate_indices: np.ndarray  # (N, k) int64, rows of the candidates given to fit
    negative_cosines: np.ndarray    # (N, k) float64
    negative_shares: np.ndarray     # (N, k) float64
    id_total_share: np.ndarray      # (N,) float64: S / (S + Σ_j N_j)
    negative_total_share: np.ndarray  # (N,) float64: Σ_j N_j / (S + Σ_j N_j)
    temperature: float
    id_names: Optional[np.ndarray] = None          # (N, k) object (str), when known
    negative_phrases: Optional[np.ndarray] = None  # (N, k) object (str), when known

    def __len__(self):
        return self.id_indices.shape[0]

    def to_dict(self):
        """The fields as a dict of arrays (and the temperature)."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    def to_frame(self):
        """A long pandas DataFrame: one row per (image, kind, rank); needs pandas."""
        import pandas as pd

        parts = []
        for kind, idx, cand, cos, share, names in (
                ("id", self.id_indices, self.id_indices, self.id_cosines, self.id_shares,
                 self.id_names),
                ("negative", self.negative_indices, self.negative_candidate_indices,
                 self.negative_cosines, self.negative_shares, self.negative_phrases)):
            n, k = idx.shape
            parts.append(pd.DataFrame({
                "image": np.repeat(np.arange(n), k), "kind": kind,
                "rank": np.tile(np.arange(k), n), "index": idx.ravel(),
                "candidate_index": cand.ravel() if kind == "negative" else -1,
                "label": names.ravel() if names is not None else None,
                "cosine": cos.ravel(), "share": share.ravel()}))
        return pd.concat(parts, ignore_index=True)

    def to_text(self, max_images=10):
        """A readable report of the first ``max_images`` images."""
        lines = []
        for i in range(min(len(self), int(max_images))):
            lines.append(f"image {i}: ID share {self.id_total_share[i]:.4f}, "
                         f"negative share {self.negative_total_share[i]:.4f} (T={self.temperature:g})")
            for kind, idx, cos, share, names in (
                    ("ID ", self.id_indices, self.id_cosines, self.id_shares, self.id_names),
                    ("NEG", self.negative_indices, self.negative_cosines, self.negative_shares,
                     self.negative_phrases)):
                for r in range(idx.shape[1]):
                    name = f" {names[i, r]!r}" if names is not None else ""
                    lines.append(f"  {kind} #{idx[i, r]:<6d}{name:<32s} cos {cos[i, r]:+.4f}  "
                                 f"share {share[i, r]:.4g}")
        if len(self) > max_images:
            lines.append(f"... {len(self) - int(max_images)} more images")
        return "\n".join(lines)

    def __str__(self):
        return self.to_text()


# ---------------------------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------------------------

class NegativeLabelDetector:
    """Zero-shot OOD detector on precomputed CLIP-style embeddings (DESIGN §4, §5, §7).

    Parameters
    ----------
    method : {"dnm", "neglabel", "csp", "mcm", "energy", "max_logit"}
        "dnm": Debiased Negative Mining (kNN log-distance mining on the *raw* candidate
        embeddings, debiased grouped score); "neglabel": η-quantile mining, grouped NegLabel
        score; "csp": NegLabel with ``max_cut`` 0.95; "mcm", "energy", "max_logit": scores on
        the ID labels only (no negatives).
    preset : str
        Backbone of the DNM parameter table (DESIGN §7): "ViT-B/16" (default), "ViT-B/32",
        "ViT-L/14", "ViT-L/14@336px", "RN50" (case, '-', '/' and '@' insensitive, so open_clip
        names such as "ViT-B-16" work).  The other methods' settings do not depend on it
        (NegLabel: ratio 0.15, percentile 0.95, T 0.01, G 100; CSP: plus max_cut 0.95; MCM T 1).
    temperature, tau, groups, k, noun_ratio, adj_ratio, ratio, percentile, max_cut :
        Override the preset when not None.  ``groups`` may also be a (G, Q) integer index array
        into the *selected* negatives (as in :func:`dnm.make_groups`).
    seed : int
        Seed of the grouping permutation.
    guard : {"floor", "dcl", "raise"}
        DNM's handling of a non-positive denominator (see :func:`dnm.dnm_score`).
    num_threads : int or None
        Threads of the C kernels for this detector's calls (None: the global setting).
    progress : bool
        Show tqdm progress bars.

    Attributes (after ``fit``)
    --------------------------
    method_, temperature_, tau_, groups_, k_, noun_ratio_, adj_ratio_, ratio_, percentile_,
    max_cut_, guard_, seed_ : the resolved settings (None where the method does not use them).
    id_labels_ : (C, D) copy of the ID label embeddings.
    negatives_ : (M, D) float32 copy of the selected candidate rows (M = 0 without negatives).
    negative_indices_ : (M,) int64 rows of the candidates, in selection order.
    negative_phrases_ : list of M str, or None when no phrases were given.
    id_names_ : list of C str, or None.
    groups_index_ : (G, Q) int64 grouping of ``negatives_`` (None without negatives).
    n_features_in_ : D.
    threshold_, threshold_tpr_ : set by ``set_threshold``.
    """

    def __init__(self, method="dnm", preset="ViT-B/16", *, temperature=None, tau=None,
                 groups=None, seed=0, k=None, noun_ratio=None, adj_ratio=None, ratio=None,
                 percentile=None, max_cut=None, guard="floor", num_threads=None,
                 progress=False):
        self.method = method
        self.preset = preset
        self.temperature = temperature
        self.tau = tau
        self.groups = groups
        self.seed = seed
        self.k = k
        self.noun_ratio = noun_ratio
        self.adj_ratio = adj_ratio
        self.ratio = ratio
        self.percentile = percentile
        self.max_cut = max_cut
        self.guard = guard
        self.num_threads = num_threads
        self.progress = progress

    # -- scikit-learn parameter protocol ------------------------------------------------------

    @classmethod
    def _get_param_names(cls):
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values()
                      if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep=True):
        """The constructor parameters as a dict (``deep`` is accepted for scikit-learn)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Set constructor parameters; returns self.  Takes effect at the next ``fit``."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}; "
                                 f"valid parameters: {valid}")
            setattr(self, name, value)
        return self

    def __repr__(self):
        sig = inspect.signature(type(self).__init__)
        parts = []
        for name, p in sig.parameters.items():
            if name == "self":
                continue
            v = getattr(self, name)
            d = p.default
            same = v is d or (not isinstance(v, np.ndarray) and type(v) is type(d) and v == d)
            if not same:
                parts.append(f"{name}={'array' + str(np.shape(v)) if isinstance(v, np.ndarray) else repr(v)}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def __sklearn_is_fitted__(self):
        return hasattr(self, "id_labels_")

    def __sklearn_tags__(self):
        # only scikit-learn calls this, so importing it here adds no dependency
        from sklearn.utils import Tags, TargetTags

        return Tags(estimator_type="outlier_detector", target_tags=TargetTags(required=False))

    def _check_fitted(self):
        if not hasattr(self, "id_labels_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call "
                                 "fit(id_labels, candidates, ...) first")

    # -- fitting ------------------------------------------------------------------------------

    def _resolve(self):
        """Resolve and check the parameters; returns a dict of the fitted scalars."""
        method = self.method
        if method not in _presets.METHODS:
            raise ValueError(f"method: expected one of {list(_presets.METHODS)}, got {method!r}")
        over = {n: getattr(self, n) for n in _presets.ALL_PARAMS}
        r = _presets.resolve(method, self.preset, **over)
        r["temperature"] = check_positive(r["temperature"], "temperature")
        if method in _NEEDS_NEGATIVES:
            g = r["groups"]
            if isinstance(g, (numbers.Integral, np.integer)) and not isinstance(g, (bool, np.bool_)):
                r["groups"] = check_int(g, "groups", low=1)
            elif isinstance(g, (bool, np.bool_)) or np.ndim(g) != 2:
                raise TypeError("groups: expected an int or a (G, Q) integer index array, got "
                                f"{type(g).__name__}")
        if method == "dnm":
            r["tau"] = check_fraction(r["tau"], "tau")
            r["k"] = check_int(r["k"], "k", low=1)
            r["noun_ratio"] = check_fraction(r["noun_ratio"], "noun_ratio", open_low=False)
            r["adj_ratio"] = check_fraction(r["adj_ratio"], "adj_ratio", open_low=False)
        if method in ("neglabel", "csp"):
            r["ratio"] = check_fraction(r["ratio"], "ratio", open_low=False)
            r["percentile"] = check_fraction(r["percentile"], "percentile", open_low=False)
            if r["max_cut"] is not None:
                mc = r["max_cut"]
                if isinstance(mc, bool) or not isinstance(mc, numbers.Real) or not -1 <= mc <= 1:
                    raise ValueError(f"max_cut: expected None or a cosine in [-1, 1], got {mc!r}")
                r["max_cut"] = float(mc)
        if self.guard not in _GUARDS:
            raise ValueError(f"guard: expected one of {list(_GUARDS)}, got {self.guard!r}")
        seed = self.seed
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (numbers.Integral, np.integer)):
            raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
        fitted = {name + "_": r[name] for name in _presets.ALL_PARAMS}
        fitted.update(method_=method, guard_=self.guard, seed_=int(seed))
        return fitted

    def _mining_kwargs(self, func):
        sig = inspect.signature(func).parameters
        out = {}
        if "num_threads" in sig:
            out["num_threads"] = self.num_threads
        if "progress" in sig:
            out["progress"] = self.progress
        return out

    def fit(self, id_labels, candidates=None, is_adjective=None, phrases=None, *, id_names=None):
        """Resolve the parameters and, for dnm / neglabel / csp, mine the negative labels.

        Parameters
        ----------
        id_labels : (C, D) array-like of floats
            Text embeddings of the ID class prompts (raw or normalised; scores normalise).
        candidates : (N, D) array-like of floats
            Text embeddings of the candidate negative phrases.  For "dnm" they must be the
            **raw, unnormalised** encoder outputs (DNM's density uses the norms, DESIGN §4.3).
            Not needed (and ignored) by mcm / energy / max_logit.
        is_adjective : (N,) bool array
            Part of speech of each candidate (nouns and adjectives are selected separately).
            May be omitted when ``phrases`` is a :class:`dnm.Corpus`, whose mask is used.
        phrases : list of N str, or a dnm.Corpus
            Candidate phrases, to name the negatives (``negative_phrases_``, ``explain``).
            A Corpus also supplies ``is_adjective``; given both, they must agree.
        id_names : list of C str, optional
            Names of the ID classes, used by ``explain``.

        Returns self.  For "dnm", warns (DNMGuardWarning) when r = Q(1-τ)/(τC) > 1 and
        ``guard`` is not "dcl" (the denominator can then be <= 0 for confident ID images).
        """
        fitted = self._resolve()
        method = fitted["method_"]
        P = as_matrix(id_labels, "id_labels")
        C, D = P.shape
        if id_names is not None:
            id_names = [str(s) for s in id_names]
            if len(id_names) != C:
                raise ValueError(f"id_names: {len(id_names)} names for {C} ID labels")

        neg_idx = np.zeros(0, dtype=np.int64)
        negatives = np.zeros((0, D), dtype=np.float32)
        neg_phrases = None
        groups_index = None
        if method in _NEEDS_NEGATIVES:
            if candidates is None:
                raise ValueError(f"fit: method {method!r} mines negative labels and needs "
                                 "`candidates` (N, D), the candidate phrase embeddings")
            X = as_matrix(candidates, "candidates")
            check_same_dim([("id_labels", P), ("candidates", X)])
            n = X.shape[0]
            phrase_list, corpus_mask = _phrases_arg(phrases, n)
            if is_adjective is None:
                if corpus_mask is None:
                    raise ValueError(
                        "fit: is_adjective is required (a bool per candidate: nouns and "
                        "adjectives are selected separately); pass a dnm.Corpus as `phrases`, "
                        "or is_adjective=np.zeros(len(candidates), bool) if all are nouns")
                mask = corpus_mask
            else:
                mask = check_mask(is_adjective, n)
                if corpus_mask is not None and not np.array_equal(mask, corpus_mask):
                    raise ValueError("fit: is_adjective disagrees with the is_adjective of the "
                                     "Corpus passed as phrases")
            from . import mining as _mining

            if method == "dnm":
                sel = _mining.select_dnm(
                    X, mask, noun_ratio=fitted["noun_ratio_"], adj_ratio=fitted["adj_ratio_"],
                    k=fitted["k_"], **self._mining_kwargs(_mining.select_dnm))
            else:
                sel = _mining.select_neglabel(
                    P, X, mask, ratio=fitted["ratio_"], percentile=fitted["percentile_"],
                    max_cut=fitted["max_cut_"], **self._mining_kwargs(_mining.select_neglabel))
            neg_idx = np.asarray(sel)
            if neg_idx.ndim != 1 or neg_idx.dtype.kind not in "iu":
                raise RuntimeError(f"mining returned {neg_idx.dtype} array of shape {neg_idx.shape}")
            neg_idx = neg_idx.astype(np.int64, copy=True)
            if neg_idx.size == 0:
                raise ValueError(
                    f"fit: no negative labels selected from {n} candidates "
                    f"({int((~mask).sum())} nouns, {int(mask.sum())} adjectives); use more "
                    "candidates or larger ratios")
            negatives = np.ascontiguousarray(X[neg_idx], dtype=np.float32)
            if phrase_list is not None:
                neg_phrases = [phrase_list[i] for i in neg_idx]
            groups_index = make_groups(negatives.shape[0], fitted["groups_"], fitted["seed_"])
            if method == "dnm" and fitted["guard_"] != "dcl":
                Q = groups_index.shape[1]
                r = dnm_ratio(C, Q, fitted["tau_"])
                if r > 1:
                    warnings.warn(
                        f"NegativeLabelDetector.fit: r = Q(1-tau)/(tau*C) = {r:.3g} > 1 "
                        f"(Q={Q}, tau={fitted['tau_']}, C={C}); the DNM denominator can be <= 0 "
                        f"for confident ID images; guard={fitted['guard_']!r} handles it",
                        DNMGuardWarning, stacklevel=2)

        for name, value in fitted.items():
            setattr(self, name, value)
        self.id_labels_ = _frozen(np.array(P, order="C", copy=True))
        self.id_names_ = id_names
        self.negatives_ = _frozen(negatives)
        self.negative_indices_ = neg_idx
        self.negative_phrases_ = neg_phrases
        self.groups_index_ = _frozen(None if groups_index is None else
                                     np.array(groups_index, order="C", copy=True))
        self.n_features_in_ = int(D)
        self.threshold_ = None
        self.threshold_tpr_ = None
        return self

    # -- scoring ------------------------------------------------------------------------------

    def _check_X(self, X, name="X"):
        self._check_fitted()
        X = as_matrix(X, name)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"{name}: has {X.shape[1]} features per row but the detector was "
                             f"fitted with {self.n_features_in_}")
        return X

    def score_samples(self, X):
        """OOD scores of images X (N, D), float64 (N,); higher = more in-distribution.

        Calls :func:`dnm.dnm_score`, :func:`dnm.neglabel_score` (neglabel, csp),
        :func:`dnm.mcm_score`, :func:`dnm.energy_score` or :func:`dnm.max_logit_score` with the
        fitted labels, negatives, grouping and settings.  For "dnm" with r > 1 the score
        function warns (DNMGuardWarning) on every call, as it does when called directly,
        unless ``guard="dcl"``.
        """
        X = self._check_X(X)
        with _config.packed_labels(self._packed_labels()):
            return self._score(X)

    def _packed_labels(self):
        """The fitted labels packed for dnm's own kernel, made on first use and kept.

        Only for the detector's own read-only float32 arrays (made so by ``fit`` and
        ``load``): they cannot change behind the cache's back.  Reassigning a fitted
        attribute repacks; a writeable array put there by hand is never cached.  None where
        the BLAS tiles run.
        """
        P, m = self.id_labels_, self.method_
        with_neg = m in ("dnm", "neglabel", "csp")
        arrays = (P, self.negatives_, self.groups_index_) if with_neg else (P,)
        kernel = _config.resolved_kernel()
        if (kernel == "blas" or any(a is None or not _cacheable(a) for a in arrays)
                or any(a.dtype == np.float64 for a in arrays[:2])):
            return None
        key = ({"csp": "neglabel"}.get(m, m), kernel)
        cached = self.__dict__.get("_packed_cache")
        if (cached is not None and cached[0] == key  # same kind, hence as many arrays
                and all(a is b for a, b in zip(cached[1], arrays))):
            return cached[2]
        tau = self.tau_ if m == "dnm" else 1.0
        packed = _core.pack_labels(_KIND[key[0]], P, arrays[1] if with_neg else None,
                                   arrays[2] if with_neg else None, float(tau),
                                   _config.resolve(self.num_threads), _config.KERNELS[kernel])
        self.__dict__["_packed_cache"] = (key, arrays, packed)
        return packed

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_packed_cache", None)  # 26 MB for 13,000 labels of 512: made again on use
        return state

    def _score(self, X):
        m = self.method_
        rt = dict(num_threads=self.num_threads, progress=self.progress)
        if m == "dnm":
            return dnm_score(X, self.id_labels_, self.negatives_, temperature=self.temperature_,
                             tau=self.tau_, groups=self.groups_index_, guard=self.guard_, **rt)
        if m in ("neglabel", "csp"):
            return neglabel_score(X, self.id_labels_, self.negatives_,
                                  temperature=self.temperature_, groups=self.groups_index_, **rt)
        if m == "mcm":
            return mcm_score(X, self.id_labels_, temperature=self.temperature_, **rt)
        if m == "energy":
            return energy_score(X, self.id_labels_, temperature=self.temperature_, **rt)
        return max_logit_score(X, self.id_labels_, **rt)

    def set_threshold(self, X_id=None, *, id_scores=None, tpr=0.95):
        """Set ``threshold_`` from ID data so that a fraction ``tpr`` of it is kept as ID.

        Give either ID images ``X_id`` (scored with ``score_samples``) or their ``id_scores``.
        Rule: with n ID scores and m = ceil(tpr * n) (tpr * n rounded to 9 decimals first, so
        0.95 * 100 gives 95), ``threshold_`` is the m-th highest ID score.  Hence at least m
        ID scores are >= threshold_ (exactly m when the score at the threshold is not tied),
        and no higher threshold keeps m of them.  ``predict`` calls scores >= threshold_ ID.
        Returns self.
        """
        tpr = check_fraction(tpr, "tpr")
        if (X_id is None) == (id_scores is None):
            raise ValueError("set_threshold: give exactly one of X_id (ID images) or id_scores")
        if X_id is not None:
            s = self.score_samples(X_id)
        else:
            s = np.asarray(id_scores, dtype=np.float64)
            if s.ndim != 1:
                raise ValueError(f"id_scores: expected a 1-D array, got shape {s.shape}")
        if s.size == 0:
            raise ValueError("set_threshold: no ID scores")
        if not np.isfinite(s).all():
            raise ValueError(f"set_threshold: {int((~np.isfinite(s)).sum())} ID scores are NaN "
                             "or infinite")
        n = s.size
        m = max(1, int(np.ceil(round(tpr * n, 9))))
        # m-th highest = (n - m)-th smallest (0-based)
        self.threshold_ = float(np.partition(s, n - m)[n - m])
        self.threshold_tpr_ = tpr
        return self

    def decision_function(self, X):
        """score_samples(X) - threshold_ (>= 0: in-distribution)."""
        self._check_fitted()
        if getattr(self, "threshold_", None) is None:
            raise NotFittedError("no threshold set: call set_threshold(X_id) or "
                                 "set_threshold(id_scores=...) first")
        return self.score_samples(X) - self.threshold_

    def predict(self, X):
        """+1 (in-distribution, score >= threshold_) or -1 (OOD), int64 (N,)."""
        return np.where(self.decision_function(X) >= 0, 1, -1).astype(np.int64)

    # -- explanations -------------------------------------------------------------------------

    def explain(self, X, k=5, *, chunk_size=None):
        """Top-k ID and negative labels of each image, with cosines and denominator shares.

        See :class:`Explanation`.  Computed with NumPy in float64, vectorised over chunks of
        images (``chunk_size`` rows, default: about 2^21 logits per chunk), so memory stays
        bounded.  The temperature is the fitted one (max_logit: 0.01).
        """
        X = self._check_X(X)
        k = check_int(k, "k", low=1)
        T = float(self.temperature_)
        P = _normalize(self.id_labels_)
        C = P.shape[0]
        if self.groups_index_ is not None:
            mult = np.bincount(self.groups_index_.ravel(), minlength=self.negatives_.shape[0])
        else:
            mult = np.zeros(self.negatives_.shape[0], dtype=np.int64)
        used = np.flatnonzero(mult)
        Nn = _normalize(self.negatives_[used])
        logw = np.log(mult[used].astype(np.float64))
        kid, kneg = min(k, C), min(k, used.size)
        n = X.shape[0]
        if chunk_size is None:
            chunk_size = max(1, (1 << 21) // (C + used.size))
        chunk_size = check_int(chunk_size, "chunk_size", low=1)

        out = {name: np.empty((n, kk), dt) for name, kk, dt in (
            ("id_indices", kid, np.int64), ("id_cosines", kid, np.float64),
            ("id_shares", kid, np.float64), ("negative_indices", kneg, np.int64),
            ("negative_cosines", kneg, np.float64), ("negative_shares", kneg, np.float64))}
        id_total = np.empty(n)
        for lo in range(0, n, chunk_size):
            hi = min(n, lo + chunk_size)
            x = _normalize(X[lo:hi])
            s = x @ P.T
            u = x @ Nn.T
            a_s = s / T
            a_u = u / T + logw
            mx = a_s.max(axis=1, keepdims=True)
            if used.size:
                mx = np.maximum(mx, a_u.max(axis=1, keepdims=True))
            es = np.exp(a_s - mx)
            eu = np.exp(a_u - mx)
            S = es.sum(axis=1)
            tot = S + eu.sum(axis=1)
            log_tot = np.log(tot)[:, None]
            id_total[lo:hi] = S / tot
            for pre, cos, logit, kk in (("id", s, a_s, kid), ("negative", u, a_u, kneg)):
                idx = _topk(cos, kk)
                out[f"{pre}_indices"][lo:hi] = idx
                out[f"{pre}_cosines"][lo:hi] = np.take_along_axis(cos, idx, axis=1)
                out[f"{pre}_shares"][lo:hi] = np.exp(
                    np.take_along_axis(logit, idx, axis=1) - mx - log_tot)
        neg_rows = used[out["negative_indices"]]
        out["negative_indices"] = neg_rows
        id_names = neg_phr = None
        if self.id_names_ is not None:
            id_names = np.asarray(self.id_names_, dtype=object)[out["id_indices"]]
        if self.negative_phrases_ is not None:
            neg_phr = np.asarray(self.negative_phrases_, dtype=object)[neg_rows]
        return Explanation(**out, negative_candidate_indices=self.negative_indices_[neg_rows],
                           id_total_share=id_total, negative_total_share=1.0 - id_total,
                           temperature=T, id_names=id_names, negative_phrases=neg_phr)

    # -- persistence --------------------------------------------------------------------------

    def _arrays(self):
        arrays = {"id_labels": self.id_labels_, "negatives": self.negatives_,
                  "negative_indices": self.negative_indices_}
        if self.groups_index_ is not None:
            arrays["groups_index"] = self.groups_index_
        return {k: np.ascontiguousarray(v, dtype=np.dtype(v.dtype).newbyteorder("<"))
                for k, v in arrays.items()}

    def save(self, path):
        """Write the fitted detector to ``path`` (an .npz; format in the module docstring).

        The file is written to a temporary name beside ``path`` and renamed into place.
        """
        self._check_fitted()
        from . import __version__

        arrays = self._arrays()
        params = {}
        for name, v in self.get_params().items():
            if name == "groups" and np.ndim(v) == 2:
                params[name] = {"array": "groups_index"}
            else:
                params[name] = _jsonable(v, f"parameter {name}")
        fitted = {name: _jsonable(getattr(self, name), name) for name in _FITTED_SCALARS}
        if isinstance(self.groups_, np.ndarray) or np.ndim(self.groups_) == 2:
            fitted["groups_"] = {"array": "groups_index"}
        meta = {
            "format": _FORMAT_NAME, "format_version": FORMAT_VERSION, "dnm_version": __version__,
            "params": params, "fitted": fitted,
            "negative_phrases": self.negative_phrases_, "id_names": self.id_names_,
            "arrays": {k: {"dtype": v.dtype.str, "shape": list(v.shape)}
                       for k, v in arrays.items()},
        }
        meta["sha256"] = _checksum(meta, arrays)
        blob = np.frombuffer(json.dumps(meta, allow_nan=False).encode("utf-8"), dtype=np.uint8)
        path = os.fspath(path)
        d = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".dnm-detector-", suffix=".npz", dir=d)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, metadata=blob, **arrays)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path):
        """Read a detector written by ``save``; every check is listed in the module docstring.

        Raises DetectorFileError on any invalid, truncated, tampered or too-new file.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(path)
        try:
            with zipfile.ZipFile(path) as zf:
                meta = _read_metadata(zf, path)
                arrays = {}
                for name, spec in meta["arrays"].items():
                    arrays[name] = _read_member(zf, name, spec, path)
        except DetectorFileError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
                NotImplementedError) as exc:
            raise DetectorFileError(f"{path}: not a valid dnm detector file (corrupt or "
                                    f"truncated): {type(exc).__name__}: {exc}") from None
        if _checksum(meta, arrays) != meta.get("sha256"):
            raise DetectorFileError(f"{path}: checksum mismatch - the file was modified or "
                                    "corrupted after it was saved")
        return cls._from_parts(meta, arrays, path)

    @classmethod
    def _from_parts(cls, meta, arrays, path):
        def bad(msg):
            return DetectorFileError(f"{path}: inconsistent detector file: {msg}")

        params = meta.get("params")
        if not isinstance(params, dict):
            raise bad(f"params must be a JSON object, got {type(params).__name__}")
        params = dict(params)
        names = set(cls._get_param_names())
        if set(params) != names:
            raise bad(f"parameters {sorted(set(params) ^ names)} missing or unknown")
        if isinstance(params.get("groups"), dict):
            params["groups"] = arrays["groups_index"].copy() if "groups_index" in arrays else None
            if params["groups"] is None:
                raise bad("groups refers to a missing groups_index array")
        fitted = meta.get("fitted")
        if not isinstance(fitted, dict) or set(fitted) != set(_FITTED_SCALARS):
            raise bad("fitted attributes missing or unknown")
        P, Nn = arrays["id_labels"], arrays["negatives"]
        idx, gi = arrays["negative_indices"], arrays.get("groups_index")
        D = fitted["n_features_in_"]
        if P.ndim != 2 or Nn.ndim != 2 or idx.ndim != 1 or P.shape[1] != D or Nn.shape[1] != D \
                or idx.shape[0] != Nn.shape[0] or P.shape[0] == 0 or D == 0:
            raise bad(f"shapes id_labels {P.shape}, negatives {Nn.shape}, negative_indices "
                      f"{idx.shape}, n_features_in_ {D}")
        if idx.size and idx.min() < 0:
            raise bad("negative_indices has negative entries")
        method = fitted["method_"]
        if method not in _presets.METHODS:
            raise bad(f"unknown method {method!r}")
        if method in _NEEDS_NEGATIVES:
            if gi is None or gi.ndim != 2 or gi.size == 0 or gi.min() < 0 or gi.max() >= Nn.shape[0]:
                raise bad("groups_index missing or out of range")
        elif gi is not None:
            raise bad(f"groups_index present for method {method!r}")
        for key, n in (("negative_phrases", Nn.shape[0]), ("id_names", P.shape[0])):
            v = meta.get(key)
            if v is not None and (not isinstance(v, list) or len(v) != n
                                  or not all(isinstance(s, str) for s in v)):
                raise bad(f"{key} must be null or a list of {n} strings")
        T = fitted["temperature_"]
        if isinstance(T, bool) or not isinstance(T, (int, float)) or not T > 0:
            raise bad(f"temperature_ {T!r}")
        tau = fitted["tau_"]
        if tau is not None and (isinstance(tau, bool) or not isinstance(tau, (int, float))
                                or not 0 < tau <= 1):
            raise bad(f"tau_ {tau!r}")
        if method == "dnm" and tau is None:
            raise bad("tau_ is required for method 'dnm'")
        if fitted["guard_"] not in _GUARDS:
            raise bad(f"guard_ {fitted['guard_']!r}")
        grp = fitted["groups_"]
        if isinstance(grp, dict):
            if grp != {"array": "groups_index"} or gi is None:
                raise bad("groups_ refers to a missing groups_index array")
        elif grp is not None and (isinstance(grp, bool) or not isinstance(grp, int) or grp < 1):
            raise bad(f"groups_ {grp!r}")
        thr = fitted["threshold_"]
        if thr is not None and (isinstance(thr, bool) or not isinstance(thr, (int, float))):
            raise bad(f"threshold_ {thr!r}")
        obj = cls(**params)
        for name, value in fitted.items():
            setattr(obj, name, value)
        if isinstance(obj.groups_, dict):
            obj.groups_ = gi.copy()
        obj.id_labels_ = _frozen(P)
        obj.negatives_ = _frozen(Nn)
        obj.negative_indices_ = idx
        obj.groups_index_ = _frozen(gi)
        obj.negative_phrases_ = meta.get("negative_phrases")
        obj.id_names_ = meta.get("id_names")
        return obj


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def _frozen(a):
    """A fitted array the detector made itself (it owns its data and nobody holds a
    writeable view of it), made read-only: its packed copy can be cached safely."""
    if isinstance(a, np.ndarray) and a.flags.owndata:
        a.flags.writeable = False
    return a


def _cacheable(a):
    return a.flags.owndata and not a.flags.writeable


def _phrases_arg(phrases, n):
    """(list of str or None, Corpus mask or None) from the ``phrases`` argument of fit."""
    if phrases is None:
        return None, None
    from .corpus import Corpus

    if isinstance(phrases, Corpus):
        plist, mask = list(phrases.phrases), np.asarray(phrases.is_adjective, dtype=bool)
    elif isinstance(phrases, (str, bytes)):
        raise TypeError("phrases: expected a list of strings or a dnm.Corpus, got a single string")
    else:
        plist, mask = [str(p) for p in phrases], None
    if len(plist) != n:
        raise ValueError(f"phrases: {len(plist)} phrases for {n} candidates")
    return plist, mask


def _normalize(a):
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _topk(values, k):
    """Indices of the k largest entries per row, sorted descending (ties: lower index first)."""
    n, m = values.shape
    if k == 0:
        return np.zeros((n, 0), dtype=np.int64)
    if k < m:
        part = np.argpartition(-values, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(m), (n, m))
    v = np.take_along_axis(values, part, axis=1)
    order = np.lexsort((part, -v), axis=-1)
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def _jsonable(v, what):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, (numbers.Integral, np.integer)):
        return int(v)
    if isinstance(v, (numbers.Real, np.floating)):
        f = float(v)
        if not np.isfinite(f):
            raise ValueError(f"save: {what} is not finite ({v!r})")
        return f
    if isinstance(v, np.ndarray):
        return {"array": "groups_index"}
    raise TypeError(f"save: {what} of type {type(v).__name__} cannot be stored")


def _checksum(meta, arrays):
    body = {k: v for k, v in meta.items() if k != "sha256"}
    h = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=True, allow_nan=False).encode("ascii"))
    for name in sorted(arrays):
        h.update(name.encode("ascii") + b"\0")
        a = arrays[name]
        h.update(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def _read_header(f, member, path):
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise DetectorFileError(f"{path}: member {member}: unsupported .npy version {version}")


def _read_data(zf, info, dtype, shape, fortran, nbytes, path):
    """Read exactly nbytes after the header, in bounded chunks (no up-front allocation)."""
    with zf.open(info) as f:
        _read_header(f, info.filename, path)
        chunks, got = [], 0
        while got < nbytes:
            b = f.read(min(_READ_CHUNK, nbytes - got))
            if not b:
                break
            chunks.append(b)
            got += len(b)
        if got != nbytes or f.read(1):
            raise DetectorFileError(f"{path}: member {info.filename}: data size does not match "
                                    f"its header ({got} of {nbytes} bytes read)")
    a = np.frombuffer(b"".join(chunks), dtype=dtype)
    return a.reshape(shape, order="F" if fortran else "C").copy(order="C")


def _open_checked(zf, name, path):
    try:
        info = zf.getinfo(name + ".npy")
    except KeyError:
        raise DetectorFileError(f"{path}: member {name}.npy is missing") from None
    if info.flag_bits & 0x1:  # zipfile would raise RuntimeError("... is encrypted")
        raise DetectorFileError(f"{path}: member {name}.npy is marked encrypted; detector files "
                                "are plain numpy.savez archives; refused")
    if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
        # save() writes uncompressed members; a compressed one could claim (and inflate to)
        # far more bytes than the file holds, so every size check below would be moot
        raise DetectorFileError(f"{path}: member {name}.npy is compressed; detector files are "
                                "uncompressed (numpy.savez); refused")
    with zf.open(info) as f:
        shape, fortran, dtype = _read_header(f, info.filename, path)
        hdr = f.tell() if f.seekable() else None
    if dtype.hasobject:
        raise DetectorFileError(f"{path}: member {name}.npy holds Python objects; refused")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize if shape else dtype.itemsize
    if nbytes + (hdr or 0) > info.file_size:
        raise DetectorFileError(f"{path}: member {name}.npy claims shape {shape} ({nbytes} bytes) "
                                f"but holds only {info.file_size} bytes; refused")
    return info, shape, fortran, dtype, nbytes


def _read_metadata(zf, path):
    names = {i.filename for i in zf.infolist()}
    info, shape, fortran, dtype, nbytes = _open_checked(zf, "metadata", path)
    if dtype != np.uint8 or len(shape) != 1 or nbytes > _METADATA_MAX_BYTES:
        raise DetectorFileError(f"{path}: metadata must be a 1-D uint8 array of at most "
                                f"{_METADATA_MAX_BYTES} bytes, got {dtype} {shape}")
    raw = _read_data(zf, info, dtype, shape, fortran, nbytes, path).tobytes()
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DetectorFileError(f"{path}: metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT_NAME:
        raise DetectorFileError(f"{path}: not a dnm detector file (metadata format is "
                                f"{meta.get('format') if isinstance(meta, dict) else None!r})")
    ver = meta.get("format_version")
    if isinstance(ver, bool) or not isinstance(ver, int) or ver < 1:
        raise DetectorFileError(f"{path}: invalid format_version {ver!r}")
    if ver > FORMAT_VERSION:
        raise DetectorFileError(
            f"{path}: written with detector file format_version {ver} (dnm "
            f"{meta.get('dnm_version', '?')}); this dnm reads format_version <= {FORMAT_VERSION}:"
            " upgrade dnm to load it")
    specs = meta.get("arrays")
    if not isinstance(specs, dict):
        raise DetectorFileError(f"{path}: metadata has no array table")
    required = {"id_labels", "negatives", "negative_indices"}
    if not required <= set(specs) or not set(specs) <= set(_ARRAY_DTYPES):
        raise DetectorFileError(f"{path}: array members {sorted(specs)} do not match the format")
    expected = {n + ".npy" for n in specs} | {"metadata.npy"}
    if names != expected:
        raise DetectorFileError(f"{path}: archive members {sorted(names)} do not match the "
                                f"metadata ({sorted(expected)})")
    for name, spec in specs.items():
        ok = (isinstance(spec, dict) and spec.get("dtype") in _ARRAY_DTYPES[name]
              and isinstance(spec.get("shape"), list)
              and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                      for s in spec["shape"]))
        if not ok:
            raise DetectorFileError(f"{path}: invalid dtype/shape for {name}: {spec!r}")
    return meta


def _read_member(zf, name, spec, path):
    info, shape, fortran, dtype, nbytes = _open_checked(zf, name, path)
    if dtype.str != spec["dtype"] or list(shape) != spec["shape"]:
        raise DetectorFileError(
            f"{path}: member {name}.npy has {dtype.str} {tuple(shape)} but the metadata says "
            f"{spec['dtype']} {tuple(spec['shape'])}")
    return _read_data(zf, info, dtype, shape, fortran, nbytes, path)
