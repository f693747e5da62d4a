"""``NegativeLabelDetector``: zero-shot OOD detection with negative labels, scikit-learn style.

One estimator for every method of the package (DNM, NegLabel, CSP, MCM, energy, max-logit, and
the test-time adaptive AdaNeg and TANL)::

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
from the method registry (:mod:`dnm.methods`); parameters a method does not use are ignored
and resolve to ``None``.  Using an unfitted detector raises :class:`NotFittedError`.

Streaming methods (``"adaneg"``, ``"tanl"``; ``dnm.methods.streaming_methods()``): a score
depends on the images scored before it.  ``det.stream()`` hands out a fresh stream object
(:class:`dnm.AdaNeg` / :class:`dnm.TANL`: ``update(batch)``, ``reset()``, ``save()`` /
``load()``) for a stream that goes on across calls; ``score_samples(X)`` runs **one new
stream** over the rows of X in their order, in batches of ``batch_size``, so that, as
scikit-learn expects, each call is a function of its input only (the same X gives the same
scores; calls share no state).

The file format of ``save`` / ``load`` is described in :mod:`dnm.detector_file`;
:class:`Explanation` (what ``explain`` returns) lives in :mod:`dnm.explain`.
"""
from __future__ import annotations

import inspect
import numbers

import numpy as np

from . import _config, _core
from . import methods as _methods
from . import detector_file as _file
from ._validate import as_matrix, check_fraction, check_mask, check_same_dim
from .detector_file import FORMAT_VERSION, DetectorFileError
from .explain import Explanation, explain as _explain
from .scores import _score, check_guard, make_groups, warn_ratio

__all__ = ["NegativeLabelDetector", "Explanation", "NotFittedError", "DetectorFileError",
           "FORMAT_VERSION"]


class NotFittedError(ValueError, AttributeError):
    """The detector is used before ``fit`` (or ``decision_function`` before ``set_threshold``).

    Subclasses ValueError and AttributeError, like scikit-learn's ``NotFittedError``.
    """


# ---------------------------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------------------------

class NegativeLabelDetector:
    """Zero-shot OOD detector on precomputed CLIP-style embeddings (docs/design.md).

    Parameters
    ----------
    method : {"dnm", "neglabel", "csp", "mcm", "energy", "max_logit", "adaneg", "tanl"}
        "dnm": Debiased Negative Mining (kNN log-distance mining on the *raw* candidate
        embeddings, debiased grouped score); "neglabel": η-quantile mining, grouped NegLabel
        score; "csp": NegLabel with ``max_cut`` 0.95; "mcm", "energy", "max_logit": scores on
        the ID labels only (no negatives).  "adaneg", "tanl": test-time adaptive (streaming,
        see above; :mod:`dnm.tta`): ``fit`` selects the negatives as their official code does
        (AdaNeg: ``n_negatives`` of lowest closeness; TANL: the whole corpus, that selection
        first) and TANL also takes ``noise=``.
    preset : str
        Backbone of the DNM parameter table (:mod:`dnm.methods`): "ViT-B/16" (default), "ViT-B/32",
        "ViT-L/14", "ViT-L/14@336px", "RN50" (case, '-', '/' and '@' insensitive, so open_clip
        names such as "ViT-B-16" work).  The other methods' settings do not depend on it
        (NegLabel: ratio 0.15, percentile 0.95, T 0.01, G 100; CSP: plus max_cut 0.95; MCM T 1).
    temperature, tau, groups, k, noun_ratio, adj_ratio, ratio, percentile, max_cut :
        Override the preset when not None.  ``groups`` may also be a (G, Q) integer index array
        into the *selected* negatives (as in :func:`dnm.make_groups`).
    n_negatives, batch_size, cache_threshold, gap, memory_length, weight, sample_adaptive, beta,
    replacement, variant, top, step, alpha, queue_length, score_queue_length :
        The streaming methods' parameters (None: the registry's defaults, the official
        scripts' values; see :mod:`dnm.methods`).  AdaNeg: ``cache_threshold`` and ``gap``
        set the memory's cut points, ``variant`` is "combined" (adaptive + weight x
        vanilla), "adaptive" or "vanilla" (the others are those of :class:`dnm.AdaNeg`);
        TANL: those of :class:`dnm.TANL` (``top`` = its beta, ``step`` = its gamma).
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
    max_cut_, guard_, seed_, ... : the resolved settings, one per parameter (None where the
        method does not use it).
    id_labels_ : (C, D) copy of the ID label embeddings.
    negatives_ : (M, D) float32 copy of the selected candidate rows (M = 0 without negatives;
        TANL: the whole corpus, in its order).
    negative_indices_ : (M,) int64 rows of the candidates, in selection order (TANL: a
        permutation of the candidates, the selected ones first).
    noise_ : (15, D) copy of TANL's noise embeddings (None for the other methods).
    negative_phrases_ : list of M str, or None when no phrases were given.
    id_names_ : list of C str, or None.
    groups_index_ : (G, Q) int64 grouping of ``negatives_`` (None without negatives).
    n_features_in_ : D.
    threshold_, threshold_tpr_ : set by ``set_threshold``.
    """

    def __init__(self, method="dnm", preset=_methods.DEFAULT_BACKBONE, *, temperature=None, tau=None,
                 groups=None, seed=0, k=None, noun_ratio=None, adj_ratio=None, ratio=None,
                 percentile=None, max_cut=None, n_negatives=None, batch_size=None,
                 cache_threshold=None, gap=None, memory_length=None, weight=None,
                 sample_adaptive=None, beta=None, replacement=None, variant=None, top=None,
                 step=None, alpha=None, queue_length=None, score_queue_length=None,
                 guard="floor", num_threads=None, progress=False):
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
        self.n_negatives = n_negatives
        self.batch_size = batch_size
        self.cache_threshold = cache_threshold
        self.gap = gap
        self.memory_length = memory_length
        self.weight = weight
        self.sample_adaptive = sample_adaptive
        self.beta = beta
        self.replacement = replacement
        self.variant = variant
        self.top = top
        self.step = step
        self.alpha = alpha
        self.queue_length = queue_length
        self.score_queue_length = score_queue_length
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
        text = f"{type(self).__name__}({', '.join(parts)})"
        if hasattr(self, "id_labels_"):
            text += f" [fitted: {self._fitted_summary()}]"
        return text

    def _fitted_summary(self):
        """What was fitted, in one line: method, preset, label counts, resolved settings."""
        rec = _methods.METHODS.get(getattr(self, "method_", None))
        try:
            preset = _methods.backbone_name(self.preset)
        except (ValueError, TypeError):
            preset = self.preset
        parts = [rec.label if rec is not None else str(getattr(self, "method_", "?")),
                 f"preset {preset}", f"{self.id_labels_.shape[0]:,} ID labels"]
        g = self.groups_index_
        if rec is not None and rec.name == "tanl":
            parts.append(f"a corpus of {self.negatives_.shape[0]:,}")
        elif g is not None and self.negatives_.shape[0]:
            parts.append(f"{self.negatives_.shape[0]:,} negatives in {g.shape[0]:,} groups of "
                         f"{g.shape[1]:,}")
        elif rec is not None and rec.needs_negatives:
            parts.append("0 negatives")
        parts.append(f"{self.n_features_in_:,} features")
        settings = [f"{n}={getattr(self, n + '_')!r}" for n in _methods.PARAMS
                    if n != "groups" and getattr(self, n + "_", None) is not None]
        text = ", ".join(parts)
        if settings:
            text += "; " + ", ".join(settings)
        if getattr(self, "threshold_", None) is not None:
            text += f"; threshold {self.threshold_:.6g} at TPR {self.threshold_tpr_:g}"
        return text

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
        method = _methods.get(self.method).name
        over = {n: getattr(self, n) for n in _methods.PARAMS}
        r = _methods.resolve(method, self.preset, check=True, **over)
        check_guard(self.guard)
        _config.resolve(self.num_threads)
        seed = self.seed
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (numbers.Integral, np.integer)):
            raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
        if seed < 0:
            raise ValueError(f"seed: must be >= 0, got {int(seed)}")
        fitted = {name + "_": r[name] for name in _methods.PARAMS}
        fitted.update(method_=method, guard_=self.guard, seed_=int(seed))
        return fitted


    def candidate_pool(self, **kwargs):
        """The method's own candidate pool, ``dnm.corpus.load(<its pool preset>, **kwargs)``
        (``csp``: CSP's conjugated pool, with its prompt templates); encode it in this order
        with :func:`dnm.corpus.encode` and pass it to ``fit`` as ``phrases``.  ValueError for
        methods without negatives."""
        rec = _methods.get(self.method)
        if rec.pool is None:
            raise ValueError(f"method: {self.method!r} uses no negative labels (no candidate pool)")
        from . import corpus as _corpus

        return _corpus.load(rec.pool, **kwargs)

    def fit(self, id_labels, candidates=None, is_adjective=None, phrases=None, *, id_names=None,
            noise=None):
        """Resolve the parameters and, for the methods with negatives, mine them.

        Parameters
        ----------
        id_labels : (C, D) array-like of floats
            Text embeddings of the ID class prompts (raw or normalised; scores normalise).
        candidates : (N, D) array-like of floats
            Text embeddings of the candidate negative phrases.  For "dnm" they must be the
            **raw, unnormalised** encoder outputs (DNM's density uses the norms).
            Not needed (and ignored) by mcm / energy / max_logit.
        is_adjective : (N,) bool array
            Part of speech of each candidate (nouns and adjectives are selected separately).
            May be omitted when ``phrases`` is a :class:`dnm.Corpus`, whose mask is used.
        phrases : list of N str, or a dnm.Corpus
            Candidate phrases, to name the negatives (``negative_phrases_``, ``explain``).
            A Corpus also supplies ``is_adjective``; given both, they must agree.
        id_names : list of C str, optional
            Names of the ID classes, used by ``explain``.
        noise : (15, D) array-like of floats, "tanl" only (required there)
            The caller's image-encoder embeddings of TANL's 15 noise images
            (:func:`dnm.tta.noise_images`, encoded without mean/std normalisation).

        Returns self.  For "dnm", warns (DNMGuardWarning) when r = Q(1-τ)/(τC) > 1 and
        ``guard`` is not "dcl" (the denominator can then be <= 0 for confident ID images).
        """
        fitted = self._resolve()
        method = fitted["method_"]
        rec = _methods.METHODS[method]
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
        Z = None
        if rec.needs_noise:
            if noise is None:
                raise ValueError(f"noise: method {method!r} needs the embeddings of the 15 noise "
                                 "images (dnm.tta.noise_images, encoded by your image encoder)")
            Z = as_matrix(noise, "noise")
            check_same_dim([("id_labels", P), ("noise", Z)])
            from .tta import _check_noise_rows

            _check_noise_rows(Z)
        elif noise is not None:
            raise ValueError(f"noise: only method 'tanl' uses noise embeddings, not {method!r}")
        if rec.needs_negatives:
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
            params = {name: fitted[name + "_"] for name in rec.params}
            sel = rec.mine(P, X, mask, params, num_threads=self.num_threads,
                           progress=self.progress)
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
            if "groups" in rec.params:
                groups_index = make_groups(negatives.shape[0], fitted["groups_"],
                                           fitted["seed_"])
            if rec.kind == "dnm":
                warn_ratio("NegativeLabelDetector.fit", C, groups_index.shape[1],
                           fitted["tau_"], fitted["guard_"], stacklevel=2)

        for name, value in fitted.items():
            setattr(self, name, value)
        self.id_labels_ = _frozen(np.array(P, order="C", copy=True))
        self.id_names_ = id_names
        self.negatives_ = _frozen(negatives)
        self.negative_indices_ = neg_idx
        self.negative_phrases_ = neg_phrases
        self.groups_index_ = _frozen(None if groups_index is None else
                                     np.array(groups_index, order="C", copy=True))
        self.noise_ = None if Z is None else _frozen(np.array(Z, order="C", copy=True))
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

        The score of the method's kind (:func:`dnm.dnm_score`, :func:`dnm.neglabel_score`
        for neglabel and csp, :func:`dnm.mcm_score`, :func:`dnm.energy_score`,
        :func:`dnm.max_logit_score`) with the fitted labels, negatives, grouping and
        settings, bitwise equal to calling that function.  For "dnm" with r > 1 the score
        function warns (DNMGuardWarning) on every call, as it does when called directly,
        unless ``guard="dcl"``.

        Streaming methods (adaneg, tanl): the rows of X are **one test stream, in their
        order**: a fresh stream object (:meth:`stream`) is fed batches of ``batch_size``
        rows (the last may be short), bitwise equal to :func:`dnm.adaneg_score` /
        :func:`dnm.tanl_score` with the fitted arrays.  Calls share no state; to go on
        with one stream across calls, use ``det.stream().update(batch)``.
        """
        X = self._check_X(X)
        rec = _methods.METHODS[self.method_]
        if rec.streaming:
            from .tta import _run_stream

            # one bar over the batches, none per batch
            return _run_stream(self._stream(False), X, self.batch_size_, self.progress,
                               rec.name)
        return self._score(X, stacklevel=3)

    def stream(self):
        """A fresh stream object of a streaming method (:class:`dnm.AdaNeg` for "adaneg",
        :class:`dnm.TANL` for "tanl") built from the fitted arrays and settings, its state
        just reset: ``s = det.stream(); s.update(batch1); s.update(batch2); ...``.  It is
        independent of the detector (it holds its own copies) and of other streams; save
        and restore it with its own ``save`` / ``load``.  ValueError for the other
        methods."""
        return self._stream(self.progress)

    def _stream(self, progress):
        self._check_fitted()
        rec = _methods.METHODS[self.method_]
        if not rec.streaming:
            raise ValueError(f"method: {self.method_!r} is not a streaming method (those are "
                             f"{list(_methods.streaming_methods())}); use score_samples")
        params = {name: getattr(self, name + "_") for name in rec.params}
        return rec.stream(self.id_labels_, self.negatives_, getattr(self, "noise_", None),
                          self.groups_index_, params, seed=self.seed_,
                          num_threads=self.num_threads, progress=progress)

    def _packed_labels(self):
        """The fitted labels packed for dnm's own kernel, made on first use and kept.

        Only for the detector's own read-only float32 arrays (made so by ``fit`` and
        ``load``): they cannot change behind the cache's back.  Reassigning a fitted
        attribute repacks; a writeable array put there by hand is never cached.  None where
        the BLAS tiles run.
        """
        P = self.id_labels_
        with_neg = _methods.METHODS[self.method_].needs_negatives
        arrays = (P, self.negatives_, self.groups_index_) if with_neg else (P,)
        kernel = _config.resolved_kernel()
        if (kernel == "blas" or any(a is None or not _cacheable(a) for a in arrays)
                or any(a.dtype == np.float64 for a in arrays[:2])):
            return None
        key = (with_neg, kernel)
        cached = self.__dict__.get("_packed_cache")
        if (cached is not None and cached[0] == key  # as many arrays
                and all(a is b for a, b in zip(cached[1], arrays))):
            return cached[2]
        packed = _core.pack_labels(P, arrays[1] if with_neg else None,
                                   arrays[2] if with_neg else None,
                                   _config.resolve(self.num_threads), _config.KERNELS[kernel])
        self.__dict__["_packed_cache"] = (key, arrays, packed)
        return packed

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_packed_cache", None)  # 26 MB for 13,000 labels of 512: made again on use
        return state

    def _score(self, X, *, packed=True, stacklevel=2):
        """Scores of checked images X with the fitted arrays (``packed``: use the cached
        packed labels; False packs them in the call)."""
        rec = _methods.METHODS[self.method_]
        neg = (self.negatives_, self.groups_index_) if rec.needs_negatives else (None, None)
        return _score(rec.kind, X, self.id_labels_, *neg, temperature=self.temperature_,
                      tau=self.tau_ if rec.kind == "dnm" else 1.0, guard=self.guard_,
                      num_threads=self.num_threads, progress=self.progress,
                      packed=self._packed_labels() if packed else None,
                      stacklevel=stacklevel + 1)


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

    # -- explanations -------------------------------------------------------------------------

    def explain(self, X, k=5, *, chunk_size=None):
        """Top-k ID and negative labels of each image, with cosines and denominator shares.

        See :class:`Explanation`.  Computed with NumPy in float64, vectorised over chunks of
        images (``chunk_size`` rows, default: about 2^21 logits per chunk), so memory stays
        bounded.  The temperature is the fitted one (max_logit: 0.01).  Not defined for the
        streaming methods (their labels change with the stream): ValueError.
        """
        X = self._check_X(X)
        if _methods.METHODS[self.method_].streaming:
            raise ValueError(f"method: explain is not defined for the streaming method "
                             f"{self.method_!r} (its labels adapt to the stream)")
        return _explain(self, X, k, chunk_size=chunk_size)

    # -- persistence --------------------------------------------------------------------------

    def save(self, path):
        """Write the fitted detector to ``path`` (an .npz; format: :mod:`dnm.detector_file`).

        The file is written to a temporary name beside ``path`` and renamed into place.
        """
        self._check_fitted()
        from . import __version__

        arrays = {"id_labels": self.id_labels_, "negatives": self.negatives_,
                  "negative_indices": self.negative_indices_}
        if self.groups_index_ is not None:
            arrays["groups_index"] = self.groups_index_
        if getattr(self, "noise_", None) is not None:
            arrays["noise"] = self.noise_
        return _file.write(path, self.get_params(),
                           {name: getattr(self, name) for name in _file.FITTED_SCALARS},
                           {"negative_phrases": self.negative_phrases_,
                            "id_names": self.id_names_}, arrays, __version__)

    @classmethod
    def load(cls, path):
        """Read a detector written by ``save``; every check is listed in
        :mod:`dnm.detector_file`.

        Raises DetectorFileError on any invalid, truncated, tampered or too-new file.
        """
        params, fitted, arrays, names = _file.read(path, cls._get_param_names())
        obj = cls(**params)
        try:  # the parameters pass fit's checks (a hostile file's checksum proves nothing)
            obj._resolve()
        except (ValueError, TypeError) as exc:
            raise DetectorFileError(f"{path}: invalid detector file: params: {exc}") from None
        for name, value in fitted.items():
            setattr(obj, name, value)
        obj.id_labels_ = _frozen(arrays["id_labels"])
        obj.negatives_ = _frozen(arrays["negatives"])
        obj.negative_indices_ = arrays["negative_indices"]
        obj.groups_index_ = _frozen(arrays.get("groups_index"))
        obj.noise_ = _frozen(arrays.get("noise"))
        obj.negative_phrases_ = names["negative_phrases"]
        obj.id_names_ = names["id_names"]
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

