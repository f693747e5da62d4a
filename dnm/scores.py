"""OOD scores on precomputed embeddings (docs/design.md, "Numerics").  Higher = more in-distribution.

Every score runs the same fused C kernel (``dnm._core.score``): the product of an
image tile with a block of the label matrix [ID labels; negatives in group order] -
dnm's own microkernel (AVX-512 or AVX2, chosen at run time) for float32/float16
input, else single-threaded SGEMM (DGEMM for float64 input) per tile - then, while
the logits are in cache, a log-domain epilogue that keeps, per image and per
accumulator (the ID sum and each group's sum), a running maximum and a shifted sum
of ``exp(logit / T)`` in double.  Ratios are formed from the log-sums, so nothing
overflows or underflows to 0/0 whatever T or the cosines.
"""
from __future__ import annotations

import warnings

import numpy as np

from . import _config, _core
from ._progress import TileProgress
from ._validate import as_matrix, check_fraction, check_positive, check_same_dim

__all__ = ["mcm_score", "max_logit_score", "energy_score", "neglabel_score", "dnm_score",
           "make_groups", "DNMGuardWarning"]

#: Score kind -> the C kernel's code (``dnm._core.SCORE_*``); the kinds of :mod:`dnm.methods`.
KINDS = {name: getattr(_core, "SCORE_" + name.upper())
         for name in ("mcm", "max_logit", "energy", "neglabel", "dnm")}
#: DNM guard -> the C kernel's code (``dnm._core.GUARD_*``).
GUARDS = {name: getattr(_core, "GUARD_" + name.upper()) for name in ("floor", "dcl", "raise")}


class DNMGuardWarning(UserWarning):
    """The DNM denominator can be (or was) non-positive; see ``guard=``."""


def make_groups(n_negatives, groups, seed=0):
    """The (G, Q) index array of a grouping.

    ``groups`` an int G: drop the last ``n_negatives mod G`` negatives, permute the
    rest with ``numpy.random.default_rng(seed)`` and split into G groups of
    ``Q = n_negatives // G``.  ``groups`` a (G, Q) integer array: checked and
    returned as int64 (C order).
    """
    M = int(n_negatives)
    if isinstance(groups, (bool, np.bool_)):
        raise TypeError("groups: expected an int or a (G, Q) integer array, got bool")
    if isinstance(groups, (int, np.integer)):
        G = int(groups)
        if G < 1:
            raise ValueError(f"groups: must be >= 1, got {G}")
        if G > M:
            raise ValueError(f"groups: {G} groups need at least {G} negatives, got {M}")
        Q = M // G
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
        if seed < 0:
            raise ValueError(f"seed: must be >= 0, got {int(seed)}")
        perm = np.random.default_rng(int(seed)).permutation(G * Q)
        return np.ascontiguousarray(perm.reshape(G, Q), dtype=np.int64)
    idx = np.asarray(groups)
    if idx.ndim != 2:
        raise ValueError(f"groups: index array must be 2-D (G, Q), got shape {idx.shape}")
    if idx.size == 0:
        raise ValueError(f"groups: index array is empty (shape {idx.shape})")
    if idx.dtype.kind not in "iu":
        raise TypeError(f"groups: index array must hold integers, got dtype {idx.dtype}")
    if idx.min() < 0 or idx.max() >= M:
        raise ValueError(
            f"groups: indices must lie in [0, {M}) (rows of negatives), "
            f"got range [{idx.min()}, {idx.max()}]"
        )
    return np.ascontiguousarray(idx, dtype=np.int64)


def check_guard(guard):
    if not isinstance(guard, str) or guard not in GUARDS:
        raise ValueError(f"guard: expected one of {list(GUARDS)}, got {guard!r}")
    return guard


def dnm_ratio(n_id, group_size, tau):
    """r = Q (1 - tau) / (tau C): the DNM denominator can be <= 0 when r > 1."""
    return group_size * (1.0 - tau) / (tau * n_id)


def warn_ratio(who, n_id, group_size, tau, guard, stacklevel):
    """The one r > 1 warning (DNMGuardWarning), unless ``guard="dcl"``."""
    r = dnm_ratio(n_id, group_size, tau)
    if r > 1 and guard != "dcl":
        warnings.warn(
            f"{who}: r = Q(1-tau)/(tau*C) = {r:.3g} > 1 (Q={group_size}, tau={tau}, C={n_id}); "
            f"the DNM denominator can be <= 0 for confident ID images; guard={guard!r} handles "
            "it", DNMGuardWarning, stacklevel=stacklevel + 1)
    return r


def _score(kind, X, P, N=None, index=None, *, temperature, tau=1.0, guard="floor",
           num_threads=None, progress=False, packed=None, stacklevel=2):
    """The scores of checked arrays: the private path of every score.

    X, P, N: 2-D float16/32/64 arrays of one dimension (``as_matrix``); index: the (G, Q)
    int64 grouping (``make_groups``) for neglabel / dnm; temperature > 0, tau in (0, 1],
    guard a key of :data:`GUARDS`; ``packed``: the labels packed once by
    ``_core.pack_labels`` for these very labels and the kernel in force (or None).
    For dnm it warns when r > 1 and when pairs were floored (``stacklevel`` counted from
    the caller of this function); the kernel itself raises for ``guard="raise"``.
    """
    if kind == "dnm":
        r = warn_ratio("dnm_score", P.shape[0], index.shape[1], tau, guard, stacklevel + 1)
    if kind == "max_logit":
        temperature = 1.0  # max-logit has no temperature; 1 keeps the kernel's sums finite
    nt = _config.resolve(num_threads)
    with TileProgress(progress, f"{kind} score") as cb:
        out, floored = _core.score(KINDS[kind], X, P, N, index, temperature, tau,
                                   GUARDS[guard], nt, cb, tile_rows=_config.tile_rows(),
                                   kernel=_config.kernel(), packed=packed)
    if floored:
        warnings.warn(
            f"dnm_score: {floored} of {out.shape[0] * index.shape[0]} (image, group) pairs had "
            f"Z_j <= S*{_core.GUARD_MIN_TEXT} and were floored to S*{_core.GUARD_MIN_TEXT} "
            f"(guard='floor', r = {r:.3g})", DNMGuardWarning, stacklevel=stacklevel + 1)
    return out


def _checked(images, id_labels, negatives=None, groups=None, seed=0):
    """The public boundary: (X, P, N, index), each converted and checked once."""
    X = as_matrix(images, "images")
    P = as_matrix(id_labels, "id_labels")
    pairs = [("images", X), ("id_labels", P)]
    N = index = None
    if negatives is not None:
        N = as_matrix(negatives, "negatives")
        pairs.append(("negatives", N))
        index = make_groups(N.shape[0], groups, seed)
    check_same_dim(pairs)
    return X, P, N, index


def mcm_score(images, id_labels, temperature=1.0, *, num_threads=None, progress=False):
    """Maximum concept matching: max_c softmax(s / T)_c (T = 1 as in the MCM paper).

    images (N, D), id_labels (C, D): any float dtype and layout; rows are
    L2-normalised internally (inputs are not modified).  Returns float64 (N,).
    """
    T = check_positive(temperature, "temperature")
    X, P, _, _ = _checked(images, id_labels)
    return _score("mcm", X, P, temperature=T, num_threads=num_threads, progress=progress)


def max_logit_score(images, id_labels, *, num_threads=None, progress=False):
    """max_c <x, p_c> (cosine).  Returns float64 (N,)."""
    X, P, _, _ = _checked(images, id_labels)
    return _score("max_logit", X, P, temperature=1.0, num_threads=num_threads,
                  progress=progress)


def energy_score(images, id_labels, temperature=0.01, *, num_threads=None, progress=False):
    """T * log sum_c exp(s_c / T), evaluated as max + T*log(sum exp((s - max)/T)).
    Returns float64 (N,)."""
    T = check_positive(temperature, "temperature")
    X, P, _, _ = _checked(images, id_labels)
    return _score("energy", X, P, temperature=T, num_threads=num_threads, progress=progress)


def neglabel_score(images, id_labels, negatives, temperature=0.01, groups=100, seed=0, *,
                   num_threads=None, progress=False):
    """NegLabel's grouped score: mean_j S / (S + N_j).

    S = sum_c exp(s_c/T); N_j = sum over group j of exp(u_k/T).  ``groups``: an int G
    (drop the last M mod G negatives, permute the rest with the seeded RNG, split
    into G groups) or a (G, Q) integer index array into ``negatives``.
    Returns float64 (N,).
    """
    T = check_positive(temperature, "temperature")
    X, P, N, index = _checked(images, id_labels, _required(negatives), groups, seed)
    return _score("neglabel", X, P, N, index, temperature=T, num_threads=num_threads,
                  progress=progress)


def dnm_score(images, id_labels, negatives, temperature=0.01, tau=0.5, groups=100, seed=0,
              guard="floor", *, num_threads=None, progress=False):
    """Debiased Negative Mining score (docs/design.md, "Numerics").

    A = S/C, N̄_j = (1/Q) sum_{k in j} exp(u_k/T),
    Z_j = S + Q (N̄_j/tau - ((1-tau)/tau) A), score = (S/C) * mean_j 1/Z_j.

    ``tau`` in (0, 1] is the assumed true-negative fraction; tau = 1 gives
    ``neglabel_score / C``.  Z_j can be <= 0 when r = Q(1-tau)/(tau C) > 1
    (a ``DNMGuardWarning`` is issued before computing); ``guard`` decides:

    * ``"floor"`` (default): the reference formula wherever Z_j > S*1e-6, else
      Z_j := S*1e-6 (keeps the order; one warning per call with the count);
    * ``"dcl"``: clamp the debiased negative mean (N̄_j - (1-tau)A)/tau from below
      at exp(-1/T) (Chuang et al. 2020) - a different, always-defined estimator;
    * ``"raise"``: ValueError if any pair fails.

    Returns float64 (N,).
    """
    check_guard(guard)
    tau = check_fraction(tau, "tau")
    T = check_positive(temperature, "temperature")
    X, P, N, index = _checked(images, id_labels, _required(negatives), groups, seed)
    return _score("dnm", X, P, N, index, temperature=T, tau=tau, guard=guard,
                  num_threads=num_threads, progress=progress)


def _required(negatives):
    if negatives is None:
        raise TypeError("negatives: expected an (M, D) array of negative label embeddings, "
                        "got None")
    return negatives
