"""A synthetic, CLIP-like benchmark: the package's embedded default dataset.

.. warning::
   Everything here is **synthetic**.  No CLIP model, no image and no word was used
   to make these arrays: they are drawn from a seeded random model whose default
   parameters were chosen so that a few summary statistics (raw text norms, the
   distribution of text-text cosines, the modality gap) resemble those of OpenAI
   CLIP ViT-B/32 text embeddings of ImageNet-1k class names (measured by
   ``benchmarks/calibrate_synthetic.py``; see ``benchmarks/results/synthetic_calibration.txt``).
   Numbers measured on it say how the methods behave on *this model*, not how they
   behave on ImageNet.  It exists so that the demo, the notebooks and the tests run
   without downloading anything.

Quick start::

    import dnm
    from dnm.synthetic import make_benchmark

    bench = make_benchmark()                  # ~1-2 s; make_benchmark("small") is ~0.1 s
    bench.id_labels.shape                     # (1000, 512) raw text embeddings, float32
    bench.candidates.shape                    # (20000, 512) raw candidate embeddings
    bench.is_adjective.mean()                 # ~0.18
    s_id = dnm.mcm_score(bench.id_images, bench.id_labels)
    s_far = dnm.mcm_score(bench.ood_images["far"], bench.id_labels)

Feeding real CLIP features instead: every function of ``dnm`` takes plain arrays, so
replace the benchmark by the outputs of your encoders, e.g. with open_clip::

    import open_clip, torch, numpy as np, dnm
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-16", pretrained="openai")
    tok = open_clip.get_tokenizer("ViT-B-16")
    corpus = dnm.corpus.load("dnm")            # the bundled WordNet corpus (see dnm.corpus)
    with torch.no_grad():                      # (batch these calls for ~56,000 prompts)
        # RAW text features (do not normalise: DNM's kNN rule needs the raw norms)
        cand = model.encode_text(tok(corpus.prompts())).float().numpy()
        ids = model.encode_text(tok([f"the nice {c}" for c in class_names])).float().numpy()
        imgs = model.encode_image(batch_of_preprocessed_images).float().numpy()
    neg = dnm.mining.select_dnm(cand, corpus.is_adjective)
    scores = dnm.dnm_score(imgs, ids, cand[neg])

(with Hugging Face ``transformers`` use ``CLIPModel.get_text_features`` /
``get_image_features``).  ``SyntheticBenchmark`` has the same fields you would fill
from a real encoder: ``id_labels``, ``candidates``, ``is_adjective``, ``id_images``
and ``ood_images``.

The model
---------
Text (ID labels and candidate phrases).  A raw text embedding is
``t = r * (kappa * m + sqrt(1 - kappa**2) * h)``: ``m`` is a common unit direction
shared by all text (CLIP text space is anisotropic: raw ``"a {c}"`` cosines are mostly
0.4-0.8), ``kappa`` in (0, 1) the cosine to it, and ``h`` a unit "semantic" direction
orthogonal to ``m`` built from a hierarchy::

    h = normalise(sqrt(w_topic) z_topic + sqrt(w_cluster) z_cluster + sqrt(1 - ...) e)

(topics > clusters > concepts; adjectives also share one "adjective prompt" direction,
since ``"This is a {adj} photo"`` prompts resemble each other).  The raw norm follows
``kappa`` linearly, ``r = norm_intercept + norm_slope * kappa + noise``, as it does in
real CLIP: frequent generic words have long embeddings aligned with ``m``, rare
specific words (dog breeds...) short ones pointing away from it.  ``kappa`` is drawn
per cluster (Beta distribution) plus a small per-concept jitter.

Candidates are of four kinds (``candidate_kind``): ``KIND_WORLD`` concepts in topics
without ID classes; ``KIND_ID_TOPIC`` concepts in new clusters of ID topics;
``KIND_SIBLING`` new members of ID clusters; and ``KIND_NEAR_ID``: near-duplicates
(synonyms) of ID class names -- *false negatives*: cosine ~0.97 to their ID class
(``near_id_of``).  Their source classes are drawn with a bias towards frequent (high
kappa, long) names, as measured on real data (the ImageNet classes that recur in
LVIS / Objects365 have longer embeddings than ImageNet classes overall).

Images.  ``x = normalise(a_gap * m_img + a_text * m + a_sem * s + a_noise * eps)``:
``m_img`` is orthogonal to every text embedding (the modality gap), ``s`` the unit
semantic direction of the image's concept (with image-specific jitter), ``a_sem`` a
per-image signal strength (difficulty), ``eps`` isotropic noise.  With the defaults
an image has cosine ~0.3 with its own class text and ~0.2 with other class texts,
as in real CLIP, against 0.6-0.9 between texts.  OOD sets: ``"far"`` images show new
concepts in world topics (covered by the candidate corpus, so negative labels help),
``"near"`` images new concepts in ID topics, and ``"novel"`` (optional) concepts in
topics that neither the ID set nor the corpus contains.
``noise_images`` (15, D) stand in for TANL's encoded noise images (see
:class:`SyntheticBenchmark`).

Generation is vectorised NumPy in float64 without BLAS calls, cast to float32 at the
end: the arrays are bitwise identical for a given seed and parameters.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

__all__ = ["make_benchmark", "SyntheticBenchmark", "SyntheticConfig", "SIZES",
           "KIND_WORLD", "KIND_ID_TOPIC", "KIND_SIBLING", "KIND_NEAR_ID", "KIND_ADJECTIVE",
           "KIND_NAMES"]

KIND_WORLD, KIND_ID_TOPIC, KIND_SIBLING, KIND_NEAR_ID, KIND_ADJECTIVE = 0, 1, 2, 3, 4
KIND_NAMES = ("world", "id_topic", "sibling", "near_id", "adjective")
OOD_KINDS = ("near", "far", "novel")


@dataclass(frozen=True)
class SyntheticConfig:
    """Every knob of the generator.  Build one with ``SyntheticConfig.preset(size, **kw)``
    or pass the keywords straight to :func:`make_benchmark`.

    Defaults are the "default" size; see ``SIZES`` for the others.
    """
    # --- sizes
    dim: int = 512
    n_id_classes: int = 1000
    n_candidates: int = 20000
    n_id_images: int = 5000
    ood_sets: Tuple[Tuple[str, str, int], ...] = (("near", "near", 2500), ("far", "far", 2500))
    # --- corpus composition
    adjective_fraction: float = 0.18      # share of candidates that are adjectives
    near_id_fraction: float = 0.04        # share of nouns that are near-duplicates of ID names
    sibling_fraction: float = 0.08        # share of nouns that are new members of ID clusters
    id_topic_fraction: float = 0.15       # share of nouns in new clusters of ID topics
    near_id_noise: float = 0.33           # perturbation ~ U(0, x) of a near-duplicate (cos ~ 1/sqrt(1+u^2))
    near_id_common_bias: float = 8.0      # source class drawn with probability ~ kappa**bias
    # --- hierarchy
    n_topics: int = 48                    # noun topics (the first n_id_topics hold ID classes)
    n_id_topics: int = 16
    n_novel_topics: int = 4               # topics absent from ID and corpus ("novel" OOD)
    n_adj_topics: int = 8
    id_cluster_size: float = 6.0          # mean number of ID classes per ID cluster
    candidate_cluster_size: float = 20.0  # mean number of candidates per corpus cluster
    topic_weight: float = 0.30            # w_topic
    cluster_weight: Tuple[float, float] = (0.20, 0.50)  # w_cluster ~ U(lo, hi) per cluster
    adjective_weight: float = 0.45        # weight of the shared adjective direction
    # --- kappa (cosine to the common text direction) = lo + (hi-lo) Beta(a, b), per cluster
    id_kappa: Tuple[float, float, float, float] = (3.5, 1.0, 0.30, 0.92)
    candidate_kappa: Tuple[float, float, float, float] = (3.0, 1.5, 0.70, 0.94)
    kappa_jitter: float = 0.03            # per-concept sd around the cluster's kappa
    # --- raw norms
    norm_intercept: float = 2.07
    norm_slope: float = 8.77
    norm_noise: float = 0.35
    adjective_norm_shift: float = 0.0
    # --- images
    image_gap: float = 0.65               # weight of the image-only direction (modality gap)
    image_text: float = 0.22              # weight of the common text direction
    image_semantic: Tuple[float, float] = (0.08, 0.30)  # per-image a_sem ~ U(lo, hi)
    image_fidelity: float = 0.85          # share of the concept direction in s (rest: jitter)
    image_noise: float = 0.70
    # --- OOD: share of OOD images whose concept IS a corpus candidate (else a new concept
    # in a corpus cluster); NegLabel-style methods rely on the corpus covering OOD concepts
    far_coverage: float = 0.7
    near_coverage: float = 0.3

    # ------------------------------------------------------------------
    @classmethod
    def preset(cls, size: str = "default", **overrides) -> "SyntheticConfig":
        """The configuration of a named size with keyword overrides (validated)."""
        if not isinstance(size, str) or size not in SIZES:
            raise ValueError(f"size: expected one of {sorted(SIZES)}, got {size!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise TypeError(
                f"unknown parameter(s) {', '.join(bad)}; valid parameters: {', '.join(sorted(names))}"
            )
        return cls(**{**SIZES[size], **overrides})

    def __post_init__(self):
        def _int(name, lo):
            v = getattr(self, name)
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
                raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
            if v < lo:
                raise ValueError(f"{name}: must be >= {lo}, got {v}")
            object.__setattr__(self, name, int(v))

        def _num(name, lo, hi, lo_open=False, hi_open=False):
            v = getattr(self, name)
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
                raise TypeError(f"{name}: expected a number, got {type(v).__name__}")
            v = float(v)
            if not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
                lb = "(" if lo_open else "["
                rb = ")" if hi_open else "]"
                raise ValueError(f"{name}: must lie in {lb}{lo}, {hi}{rb}, got {v}")
            object.__setattr__(self, name, v)

        def _tuple(name, n):
            v = getattr(self, name)
            try:
                t = tuple(float(x) for x in v)
            except TypeError:
                raise TypeError(f"{name}: expected a tuple of {n} numbers, got {v!r}") from None
            if len(t) != n or not all(math.isfinite(x) for x in t):
                raise ValueError(f"{name}: expected {n} finite numbers, got {v!r}")
            object.__setattr__(self, name, t)
            return t

        _int("dim", 8)
        _int("n_id_classes", 2)
        _int("n_candidates", 10)
        _int("n_id_images", 1)
        _int("n_topics", 2)
        _int("n_id_topics", 1)
        _int("n_novel_topics", 0)
        _int("n_adj_topics", 1)
        if self.n_id_topics >= self.n_topics:
            raise ValueError(
                f"n_id_topics ({self.n_id_topics}) must be < n_topics ({self.n_topics}): "
                "the corpus needs world topics without ID classes")
        for name in ("adjective_fraction", "near_id_fraction", "sibling_fraction", "id_topic_fraction"):
            _num(name, 0.0, 1.0, hi_open=True)
        if self.near_id_fraction + self.sibling_fraction + self.id_topic_fraction >= 1.0:
            raise ValueError(
                "near_id_fraction + sibling_fraction + id_topic_fraction must be < 1 "
                f"(got {self.near_id_fraction + self.sibling_fraction + self.id_topic_fraction:g}); "
                "the rest of the nouns are world concepts")
        _num("near_id_noise", 0.0, 10.0)
        _num("near_id_common_bias", 0.0, 100.0)
        _num("id_cluster_size", 1.0, 1e9)
        _num("candidate_cluster_size", 1.0, 1e9)
        _num("topic_weight", 0.0, 1.0, hi_open=True)
        lo, hi = _tuple("cluster_weight", 2)
        if not (0.0 <= lo <= hi and self.topic_weight + hi < 1.0):
            raise ValueError(
                f"cluster_weight: need 0 <= lo <= hi and topic_weight + hi < 1, got {self.cluster_weight} "
                f"with topic_weight={self.topic_weight}")
        _num("adjective_weight", 0.0, 1.0, hi_open=True)
        for name in ("id_kappa", "candidate_kappa"):
            a, b, klo, khi = _tuple(name, 4)
            if not (a > 0 and b > 0 and 0.0 < klo < khi < 1.0):
                raise ValueError(f"{name}: expected (a > 0, b > 0, 0 < lo < hi < 1), got {getattr(self, name)}")
        _num("kappa_jitter", 0.0, 1.0)
        _num("norm_intercept", -1e6, 1e6)
        _num("norm_slope", -1e6, 1e6)
        _num("norm_noise", 0.0, 1e6)
        _num("adjective_norm_shift", -1e6, 1e6)
        if self.norm_intercept + self.norm_slope * 0.0 <= 0 and self.norm_intercept + self.norm_slope <= 0:
            raise ValueError("norm_intercept + norm_slope * kappa must be positive for kappa in (0, 1)")
        _num("far_coverage", 0.0, 1.0)
        _num("near_coverage", 0.0, 1.0)
        for name in ("image_gap", "image_text", "image_fidelity", "image_noise"):
            _num(name, 0.0, 100.0)
        if self.image_fidelity > 1.0:
            raise ValueError(f"image_fidelity: must lie in [0, 1], got {self.image_fidelity}")
        slo, shi = _tuple("image_semantic", 2)
        if not 0.0 <= slo <= shi:
            raise ValueError(f"image_semantic: need 0 <= lo <= hi, got {self.image_semantic}")
        # OOD sets
        sets = self.ood_sets
        if isinstance(sets, dict):
            raise TypeError("ood_sets: expected a sequence of (name, kind, n_images) tuples, got a dict")
        try:
            sets = tuple(tuple(s) for s in sets)
        except TypeError:
            raise TypeError(f"ood_sets: expected a sequence of (name, kind, n_images) tuples, got {sets!r}") from None
        seen = set()
        for s in sets:
            if len(s) != 3:
                raise ValueError(f"ood_sets: each entry must be (name, kind, n_images), got {s!r}")
            name, kind, n = s
            if not isinstance(name, str) or not name:
                raise ValueError(f"ood_sets: set name must be a non-empty string, got {name!r}")
            if name in seen:
                raise ValueError(f"ood_sets: duplicate set name {name!r}")
            seen.add(name)
            if kind not in OOD_KINDS:
                raise ValueError(f"ood_sets: kind of {name!r} must be one of {OOD_KINDS}, got {kind!r}")
            if kind == "novel" and self.n_novel_topics == 0:
                raise ValueError(f"ood_sets: set {name!r} of kind 'novel' needs n_novel_topics >= 1")
            if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or n < 1:
                raise ValueError(f"ood_sets: n_images of {name!r} must be an int >= 1, got {n!r}")
        object.__setattr__(self, "ood_sets", tuple((s[0], s[1], int(s[2])) for s in sets))


SIZES: Dict[str, dict] = {
    "default": {},
    "small": dict(n_id_classes=100, n_candidates=2000, n_id_images=1000,
                  ood_sets=(("near", "near", 500), ("far", "far", 500)),
                  n_topics=24, n_id_topics=6, n_adj_topics=4),
}


@dataclass
class SyntheticBenchmark:
    """The output of :func:`make_benchmark` (all arrays NumPy; embeddings float32).

    Embeddings: ``id_labels`` (C, D) and ``candidates`` (N, D) are RAW text
    embeddings (norms ~6-15, like a CLIP text encoder's output; DNM's kNN rule
    needs them raw); ``id_images`` (n, D) and each ``ood_images[name]`` are
    L2-normalised image embeddings.  Ground truth: ``id_image_labels``,
    ``is_adjective``, ``is_near_id`` / ``near_id_of`` (planted false negatives and
    their ID class), ``candidate_kind`` (see ``KIND_NAMES``), topics and clusters.

    ``noise_images`` (15, D): a stand-in for the embeddings of TANL's 15 noise images
    (:func:`dnm.tta.noise_images`, three of each of five noise kinds, in that order) made by
    an image encoder: L2-normalised image embeddings with the modality gap and the common
    text direction of every image, no concept of the benchmark, and one "noise kind"
    direction shared by the three images of a kind.  Like everything here they are
    synthetic; with a real model, encode ``dnm.tta.noise_images()`` instead.
    """
    config: SyntheticConfig
    seed: int
    id_labels: np.ndarray
    id_names: List[str]
    candidates: np.ndarray
    candidate_names: List[str]
    is_adjective: np.ndarray
    is_near_id: np.ndarray
    near_id_of: np.ndarray
    candidate_kind: np.ndarray
    id_images: np.ndarray
    id_image_labels: np.ndarray
    ood_images: Dict[str, np.ndarray]
    ood_kinds: Dict[str, str]
    id_topic: np.ndarray
    id_cluster: np.ndarray
    candidate_topic: np.ndarray
    candidate_cluster: np.ndarray
    ood_topic: Dict[str, np.ndarray] = field(default_factory=dict)
    noise_images: Optional[np.ndarray] = None

    @property
    def ood_names(self) -> List[str]:
        return list(self.ood_images)

    @property
    def dim(self) -> int:
        return int(self.id_labels.shape[1])

    @property
    def n_id_classes(self) -> int:
        return int(self.id_labels.shape[0])

    def ood(self, name: str) -> np.ndarray:
        """The image embeddings of the OOD set ``name``."""
        try:
            return self.ood_images[name]
        except KeyError:
            raise KeyError(f"no OOD set {name!r}; available: {self.ood_names}") from None

    def summary(self) -> dict:
        """Shapes and headline statistics (cheap: subsamples for the cosines)."""
        rng = np.random.default_rng(0)

        def unit(a):
            a = a.astype(np.float64)
            return a / np.sqrt((a * a).sum(1))[:, None]

        rI = np.linalg.norm(self.id_labels.astype(np.float64), axis=1)
        rN = np.linalg.norm(self.candidates.astype(np.float64), axis=1)
        UI = unit(self.id_labels)
        sub = rng.choice(len(self.id_images), min(1000, len(self.id_images)), replace=False)
        X = unit(self.id_images[sub])
        own = (X * UI[self.id_image_labels[sub]]).sum(1)
        tt = UI @ UI.T
        iu = np.triu_indices(len(UI), 1)
        return {
            "dim": self.dim, "n_id_classes": self.n_id_classes,
            "n_candidates": int(len(self.candidates)),
            "n_adjectives": int(self.is_adjective.sum()), "n_near_id": int(self.is_near_id.sum()),
            "n_id_images": int(len(self.id_images)),
            "ood_sets": {k: int(len(v)) for k, v in self.ood_images.items()},
            "id_norm_median": float(np.median(rI)), "candidate_norm_median": float(np.median(rN)),
            "candidate_norm_range": (float(rN.min()), float(rN.max())),
            "text_text_cos_mean": float(tt[iu].mean()),
            "image_own_text_cos_mean": float(own.mean()),
            "image_text_cos_mean": float((X @ UI.T).mean()),
        }


# ----------------------------------------------------------------------------
# helpers (no BLAS: elementwise products and pairwise sums only -> bitwise deterministic)

def _rowdot(a, b):
    return (a * b).sum(axis=-1)


def _normalise(a):
    return a / np.sqrt((a * a).sum(axis=-1, keepdims=True))


def _perp(a, basis):
    """Remove the components along the orthonormal vectors in ``basis``."""
    for v in basis:
        a = a - _rowdot(a, v)[..., None] * v
    return a


def _unit_perp(rng, n, dim, basis):
    return _normalise(_perp(rng.standard_normal((n, dim)), basis))


def _kappa(rng, n, params):
    a, b, lo, hi = params
    return lo + (hi - lo) * rng.beta(a, b, size=n)


def _cluster_sizes(rng, n_items, mean_size):
    """Split n_items into ~n_items/mean_size clusters of unequal sizes (>= 1 each)."""
    n_cl = max(1, min(n_items, int(round(n_items / mean_size))))
    w = rng.dirichlet(np.full(n_cl, 1.5))
    extra = rng.multinomial(n_items - n_cl, w)
    return extra + 1


# ----------------------------------------------------------------------------

def make_benchmark(size: str = "default", *, seed: int = 0, config: Optional[SyntheticConfig] = None,
                   **params) -> SyntheticBenchmark:
    """Generate the synthetic CLIP-like OOD benchmark (deterministic for a seed).

    size: ``"default"`` (D = 512, 1,000 ID classes, 20,000 candidates of which ~18%
        adjectives, 5,000 ID images, OOD sets "near" and "far" of 2,500 images; ~1-2 s)
        or ``"small"`` (100 classes, 2,000 candidates, 1,000 + 2 x 500 images; ~0.1 s).
    seed: int >= 0.  Same seed and parameters -> bitwise identical arrays.
    config: a :class:`SyntheticConfig` (then ``size`` and ``params`` must not be given).
    **params: any field of :class:`SyntheticConfig`, e.g. ``n_candidates=50_000``,
        ``near_id_fraction=0.1``, ``ood_sets=[("far", "far", 1000), ("novel", "novel", 1000)]``.

    Returns a :class:`SyntheticBenchmark`.  This data is synthetic; see the module
    docstring for how to use real CLIP features instead.
    """
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed: must be >= 0, got {seed}")
    if config is not None:
        if not isinstance(config, SyntheticConfig):
            raise TypeError(f"config: expected a SyntheticConfig, got {type(config).__name__}")
        if params or size != "default":
            raise TypeError("pass either config= or size/keyword parameters, not both")
        cfg = config
    else:
        cfg = SyntheticConfig.preset(size, **params)
    return _generate(cfg, int(seed))


def _generate(cfg: SyntheticConfig, seed: int) -> SyntheticBenchmark:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x646E6D]))  # "dnm"
    D = cfg.dim
    # common directions: m (text mean), m_img (image-only: the modality gap), m_adj ⊥ both
    m = _normalise(rng.standard_normal(D))
    m_img = _normalise(_perp(rng.standard_normal(D), [m]))
    basis = [m, m_img]
    m_adj = _normalise(_perp(rng.standard_normal(D), basis))

    n_world_topics = cfg.n_topics - cfg.n_id_topics
    topics = _unit_perp(rng, cfg.n_topics + cfg.n_novel_topics, D, basis)
    adj_topics = _unit_perp(rng, cfg.n_adj_topics, D, basis)
    wt = cfg.topic_weight
    wlo, whi = cfg.cluster_weight

    def make_clusters(n, topic_ids, topic_vecs, kappa_params, shared=None, w_shared=0.0):
        """n clusters: (centre vectors z_c, w_c, cluster kappa, topic of each)."""
        z = _unit_perp(rng, n, D, basis)
        w = rng.uniform(wlo, whi, size=n)
        k = _kappa(rng, n, kappa_params)
        return dict(z=z, w=w, kappa=k, topic=topic_ids, tvec=topic_vecs[topic_ids],
                    shared=shared, w_shared=w_shared)

    def members(cl, cluster_of):
        """Unit semantic directions h and kappa for concepts in the given clusters."""
        n = len(cluster_of)
        e = _unit_perp(rng, n, D, basis)
        w = cl["w"][cluster_of]
        ws = cl["w_shared"]
        h = (np.sqrt(wt) * cl["tvec"][cluster_of] + np.sqrt(w)[:, None] * cl["z"][cluster_of]
             + np.sqrt(np.maximum(1.0 - wt - w, 0.0))[:, None] * e)
        if cl["shared"] is not None:
            h = np.sqrt(ws) * cl["shared"] + np.sqrt(1.0 - ws) * _normalise(h)
        h = _normalise(_perp(h, basis))
        k = np.clip(cl["kappa"][cluster_of] + cfg.kappa_jitter * rng.standard_normal(n), 0.05, 0.985)
        return h, k

    def raw_text(h, k, shift=0.0):
        r = cfg.norm_intercept + cfg.norm_slope * k + shift + cfg.norm_noise * rng.standard_normal(len(k))
        r = np.maximum(r, 0.5)
        return r[:, None] * (k[:, None] * m + np.sqrt(1.0 - k * k)[:, None] * h), r

    # ---- ID classes: clusters inside the first n_id_topics topics
    C = cfg.n_id_classes
    id_sizes = _cluster_sizes(rng, C, cfg.id_cluster_size)
    n_idc = len(id_sizes)
    id_cl = make_clusters(n_idc, rng.integers(0, cfg.n_id_topics, n_idc), topics, cfg.id_kappa)
    id_cluster = np.repeat(np.arange(n_idc), id_sizes)
    id_cluster = id_cluster[rng.permutation(C)]          # class order does not reveal clusters
    id_h, id_k = members(id_cl, id_cluster)
    id_raw, id_r = raw_text(id_h, id_k)
    id_topic = id_cl["topic"][id_cluster]

    # ---- candidates
    N = cfg.n_candidates
    n_adj = int(round(cfg.adjective_fraction * N))
    n_noun = N - n_adj
    n_near = int(round(cfg.near_id_fraction * n_noun))
    n_sib = int(round(cfg.sibling_fraction * n_noun))
    n_idt = int(round(cfg.id_topic_fraction * n_noun))
    n_world = n_noun - n_near - n_sib - n_idt

    # world concepts: clusters in topics n_id_topics..n_topics-1
    w_sizes = _cluster_sizes(rng, max(n_world, 1), cfg.candidate_cluster_size)
    n_wc = len(w_sizes)
    w_cl = make_clusters(n_wc, cfg.n_id_topics + rng.integers(0, n_world_topics, n_wc), topics,
                         cfg.candidate_kappa)
    w_cluster = np.repeat(np.arange(n_wc), w_sizes)[:n_world]
    w_h, w_k = members(w_cl, w_cluster)
    w_raw, _ = raw_text(w_h, w_k)

    # new clusters in ID topics (near-OOD territory)
    t_sizes = _cluster_sizes(rng, max(n_idt, 1), cfg.candidate_cluster_size)
    n_tc = len(t_sizes)
    t_cl = make_clusters(n_tc, rng.integers(0, cfg.n_id_topics, n_tc), topics, cfg.candidate_kappa)
    t_cluster = np.repeat(np.arange(n_tc), t_sizes)[:n_idt]
    t_h, t_k = members(t_cl, t_cluster)
    t_raw, _ = raw_text(t_h, t_k)

    # siblings: new members of ID clusters (inherit the cluster's kappa)
    s_cluster = rng.integers(0, n_idc, n_sib)
    s_h, s_k = members(id_cl, s_cluster)
    s_raw, _ = raw_text(s_h, s_k)

    # near-duplicates of ID classes, biased towards frequent (high-kappa) names
    p = np.power(id_k, cfg.near_id_common_bias)
    p = p / p.sum()
    near_src = rng.choice(C, size=n_near, replace=True, p=p)
    u_src = id_raw[near_src] / id_r[near_src][:, None]
    pert = _unit_perp(rng, n_near, D, [])
    pert = _perp(pert, [m]) if n_near else pert
    pert = pert - _rowdot(pert, u_src)[:, None] * u_src     # ⊥ the source direction
    pert = _normalise(pert) if n_near else pert
    amp = cfg.near_id_noise * rng.uniform(0.0, 1.0, n_near)
    n_dir = _normalise(u_src + amp[:, None] * pert) if n_near else u_src
    n_r = id_r[near_src] * (1.0 + 0.03 * rng.standard_normal(n_near))
    n_raw = n_r[:, None] * n_dir

    # adjectives: own topics and a shared "adjective prompt" direction
    a_sizes = _cluster_sizes(rng, max(n_adj, 1), cfg.candidate_cluster_size)
    n_ac = len(a_sizes)
    a_cl = make_clusters(n_ac, rng.integers(0, cfg.n_adj_topics, n_ac), adj_topics, cfg.candidate_kappa,
                         shared=m_adj, w_shared=cfg.adjective_weight)
    a_cluster = np.repeat(np.arange(n_ac), a_sizes)[:n_adj]
    a_h, a_k = members(a_cl, a_cluster)
    a_raw, _ = raw_text(a_h, a_k, shift=cfg.adjective_norm_shift)

    # assemble nouns then adjectives, nouns shuffled so that kinds are interleaved
    noun_raw = np.concatenate([w_raw, t_raw, s_raw, n_raw])
    noun_kind = np.concatenate([np.full(n_world, KIND_WORLD), np.full(n_idt, KIND_ID_TOPIC),
                                np.full(n_sib, KIND_SIBLING), np.full(n_near, KIND_NEAR_ID)])
    noun_topic = np.concatenate([w_cl["topic"][w_cluster], t_cl["topic"][t_cluster],
                                 id_cl["topic"][s_cluster], id_topic[near_src]])
    # cluster ids made globally unique: ID clusters 0.., then id-topic, world, adjective clusters
    off_t = n_idc
    off_w = off_t + n_tc
    off_a = off_w + n_wc
    noun_cluster = np.concatenate([off_w + w_cluster, off_t + t_cluster, s_cluster, id_cluster[near_src]])
    noun_near_of = np.concatenate([np.full(n_noun - n_near, -1), near_src])
    order = rng.permutation(n_noun)
    cand_raw = np.concatenate([noun_raw[order], a_raw])
    kind = np.concatenate([noun_kind[order], np.full(n_adj, KIND_ADJECTIVE)]).astype(np.int8)
    cand_topic = np.concatenate([noun_topic[order], cfg.n_topics + cfg.n_novel_topics
                                 + a_cl["topic"][a_cluster]]).astype(np.int32)
    cand_cluster = np.concatenate([noun_cluster[order], off_a + a_cluster]).astype(np.int32)
    near_of = np.concatenate([noun_near_of[order], np.full(n_adj, -1)]).astype(np.int64)
    is_adj = kind == KIND_ADJECTIVE

    # ---- images
    slo, shi = cfg.image_semantic

    def images(h_concept):
        n = len(h_concept)
        jitter = _unit_perp(rng, n, D, basis)
        s = _normalise(np.sqrt(cfg.image_fidelity) * h_concept + np.sqrt(1.0 - cfg.image_fidelity) * jitter)
        a_sem = rng.uniform(slo, shi, size=n)
        eps = rng.standard_normal((n, D)) / np.sqrt(D)
        x = (cfg.image_gap * m_img + cfg.image_text * m + a_sem[:, None] * s + cfg.image_noise * eps)
        return _normalise(x).astype(np.float32)

    y = rng.integers(0, C, cfg.n_id_images)
    id_img = images(id_h[y])

    ood_images, ood_kinds, ood_topic = {}, {}, {}
    novel_ids = np.arange(cfg.n_topics, cfg.n_topics + cfg.n_novel_topics)
    for name, okind, n in cfg.ood_sets:
        if okind in ("far", "near"):
            # far: world topics; near: new clusters of ID topics.  A share `coverage` of
            # the images shows a corpus concept itself, the rest new concepts of corpus clusters
            cl, ch, ccl, cov = ((w_cl, w_h, w_cluster, cfg.far_coverage) if okind == "far"
                                else (t_cl, t_h, t_cluster, cfg.near_coverage))
            covered = rng.uniform(size=n) < cov
            pick = rng.integers(0, max(len(ch), 1), n)
            cl_of = rng.integers(0, len(cl["w"]), n)
            h, _ = members(cl, cl_of)
            if len(ch):
                h = np.where(covered[:, None], ch[pick], h)
                cl_of = np.where(covered, ccl[pick], cl_of)
            top = cl["topic"][cl_of]
        else:  # novel: topics without ID classes or candidates
            n_nc = max(1, cfg.n_novel_topics * 4)
            nv = make_clusters(n_nc, novel_ids[rng.integers(0, len(novel_ids), n_nc)], topics,
                               cfg.candidate_kappa)
            cl_of = rng.integers(0, n_nc, n)
            h, _ = members(nv, cl_of)
            top = nv["topic"][cl_of]
        ood_images[name] = images(h)
        ood_kinds[name] = okind
        ood_topic[name] = top.astype(np.int32)

    width = max(4, len(str(C - 1)))
    nw = max(5, len(str(N - 1)))
    id_names = [f"class_{i:0{width}d}" for i in range(C)]
    cand_names = []
    ni = ai = 0
    for a in is_adj.tolist():
        if a:
            cand_names.append(f"adj_{ai:0{nw}d}")
            ai += 1
        else:
            cand_names.append(f"noun_{ni:0{nw}d}")
            ni += 1

    noise = _noise_embeddings(cfg, seed, m, m_img)

    return SyntheticBenchmark(
        config=cfg, seed=seed,
        id_labels=id_raw.astype(np.float32), id_names=id_names,
        candidates=cand_raw.astype(np.float32), candidate_names=cand_names,
        is_adjective=is_adj, is_near_id=near_of >= 0, near_id_of=near_of,
        candidate_kind=kind,
        id_images=id_img, id_image_labels=y.astype(np.int64),
        ood_images=ood_images, ood_kinds=ood_kinds,
        id_topic=id_topic.astype(np.int32), id_cluster=id_cluster.astype(np.int32),
        candidate_topic=cand_topic, candidate_cluster=cand_cluster, ood_topic=ood_topic,
        noise_images=noise,
    )


#: Number of TANL noise images (dnm.tta.N_NOISE) and of noise kinds among them.
N_NOISE, _NOISE_KINDS = 15, 5


def _noise_embeddings(cfg, seed, m, m_img):
    """(15, D) stand-ins for encoded noise images; their own random stream (seed, "dnm",
    "noise"), so adding them changed no other array of a seed."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x646E6D, 0x6E6F6973]))
    D = cfg.dim
    kinds = _unit_perp(rng, _NOISE_KINDS, D, [m, m_img])       # one direction per noise kind
    s = kinds[np.repeat(np.arange(_NOISE_KINDS), N_NOISE // _NOISE_KINDS)]
    a_sem = float(cfg.image_semantic[1])  # a strong "kind" signal: alike within a kind
    eps = rng.standard_normal((N_NOISE, D)) / np.sqrt(D)
    x = cfg.image_gap * m_img + cfg.image_text * m + a_sem * s + cfg.image_noise * eps
    return _normalise(x).astype(np.float32)
