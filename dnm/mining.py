"""Negative-label mining (docs/design.md, "Mining"): DNM's kNN log-distance rule, NegLabel's
η-quantile and CSP's cut, in C, streamed and memory-bounded.

* :func:`knn_log_distance` / :func:`select_dnm` - DNM's rule on **raw,
  unnormalised** candidate embeddings.  The C kernel multiplies the candidates
  by themselves in 512-row tiles, only the tiles on and above the diagonal (the
  matrix is symmetric: each tile feeds the neighbour lists of its rows and of
  its columns), and keeps per row a threshold and a buffer of at most 2(k+1)
  distances, cut back to the k+1 smallest by quickselect when full; vector
  compares flag the few distances below a threshold.  Memory: N x 2(k+1)
  doubles, per-thread tiles, and the candidates packed once for the product
  (N x D floats on dnm's kernel; on the BLAS tiles only when their dtype /
  layout is not that of the computation); never N x N.
* :func:`neglabel_closeness` / :func:`select_neglabel` / :func:`select_csp` -
  NegLabel and the CSP rule: tiled products of normalised candidates with the
  normalised ID labels, then per row an O(C) selection of the two order
  statistics NumPy's ``quantile(..., method="linear")`` interpolates.

Float16/float32 inputs run on dnm's own register-tile kernel where the CPU has
AVX2 + FMA or AVX-512F (the one the scores use: each product one FMA chain in
k order, so results are bitwise identical across CPUs, thread counts and row
ranges, and copies of a row tie exactly), else on single-threaded SGEMM tiles;
float64 inputs on DGEMM tiles.  On the BLAS tiles copies of a row get the value
of their first occurrence (:func:`first_copies`).  Distances, logs and order
statistics are evaluated in float64.  ``DNM_FLOAT_KERNEL`` /
``dnm._config.float_kernel`` choose the kernel.

All functions accept float16/32/64 arrays of any layout (inputs are never
modified), release the GIL, run on ``num_threads`` OpenMP threads (results are
bitwise independent of the thread count: the tile grid does not depend on it),
show a tqdm bar with ``progress=True`` and stop promptly on Ctrl-C
(KeyboardInterrupt).
"""
from __future__ import annotations

import math

import numpy as np

from . import _config, _core
from ._progress import TileProgress
from ._validate import (as_matrix, check_fraction, check_int, check_mask,
                        check_same_dim)

__all__ = ["knn_log_distance", "select_dnm", "neglabel_closeness", "select_neglabel",
           "select_csp", "first_copies", "CSP_MAX_CUT"]

#: The CSP rule's cut (docs/design.md, "Mining"): use the maximum cosine where it exceeds this.
CSP_MAX_CUT = 0.95


#: Rows (and columns) per tile of the kNN product (csrc/mining.c DNM_KNN_TILE).
KNN_TILE = int(_core.KNN_TILE)


_HASH_MULT = None


def _row_hashes(a):
    """A 64-bit hash of each row's bytes (a: C-contiguous), in chunks of rows."""
    global _HASH_MULT
    words = a.view(np.dtype(f"u{a.itemsize}")).reshape(a.shape[0], -1)
    if _HASH_MULT is None or _HASH_MULT.size < words.shape[1]:
        size = max(words.shape[1], 1024)
        _HASH_MULT = np.random.default_rng(0x5EED).integers(1, 2**63, size, dtype=np.uint64) | 1
    mult = _HASH_MULT[:words.shape[1]]
    h = np.empty(a.shape[0], np.uint64)
    for i in range(0, a.shape[0], 2048):  # chunks bound the temporary to 2048 x D words
        w = words[i:i + 2048].astype(np.uint64)
        w ^= w >> np.uint64(7)
        h[i:i + 2048] = (w * mult).sum(axis=1, dtype=np.uint64)
    return h


def first_copies(x):
    """For each row of ``x``, the index of the first row with the same bytes (itself if none).

    The tie rule of the BLAS tiles (float64 input, or a CPU without AVX2): there a
    product can depend on where its row sits in a GEMM tile, so copies of a row could
    get values that differ in the last bits; :func:`knn_log_distance` and
    :func:`neglabel_closeness` give every copy the value of its first occurrence, so
    copies tie exactly and rank by index.  Rows are compared by their bytes (hashed,
    then verified).
    """
    a = np.ascontiguousarray(x)
    n = a.shape[0]
    idx = np.arange(n)
    h = _row_hashes(a)
    order = np.lexsort((idx, h))  # by hash, then by index
    hs = h[order]
    start = np.ones(n, bool)
    start[1:] = hs[1:] != hs[:-1]
    canon = np.empty(n, np.int64)
    canon[order] = order[np.maximum.accumulate(np.where(start, idx, 0))]
    cand = np.flatnonzero(canon != idx)
    if cand.size:
        words = a.view(np.dtype(f"u{a.itemsize}")).reshape(n, -1)
        bad = cand[~np.all(words[cand] == words[canon[cand]], axis=1)]
        if bad.size:  # hash collisions: settle the groups involved exactly
            rows = np.flatnonzero(np.isin(h, h[bad]))  # ascending
            _, first, inv = np.unique(words[rows], axis=0, return_index=True,
                                      return_inverse=True)
            canon[rows] = rows[first[inv.ravel()]]
    return canon


def _blas_path(*arrays):
    """Whether a mining call on these (checked) arrays runs on the BLAS tiles."""
    return any(a.dtype == np.float64 for a in arrays) or _config.resolved_kernel() == "blas"


def _knn_ties_first(X, k, nt, cb, start, stop):
    """knn on the BLAS tiles with the tie rule of :func:`first_copies`."""
    # a row's first copy is never after it: the rows up to ``stop`` decide (a Dask chunk
    # hashes the rows before its end, not all N)
    need = first_copies(X[:stop])[start:stop]
    rho = _core.knn_log_distance(X, k, nt, cb, start, stop, _config.kernel())
    outside = np.unique(need[(need < start) | (need >= stop)])
    extra = {}
    for t in np.unique(outside // KNN_TILE):  # whole tiles: the full run's values, bitwise
        a, b = int(t) * KNN_TILE, min((int(t) + 1) * KNN_TILE, X.shape[0])
        extra[a] = _core.knn_log_distance(X, k, nt, None, a, b, _config.kernel())
    full = np.empty(X.shape[0])
    full[start:stop] = rho
    for a, vals in extra.items():
        full[a:a + vals.size] = vals
    return full[need]


def knn_log_distance(raw_candidates, k=100, *, rows=None, num_threads=None, progress=False):
    """DNM's kNN log-distance density of each candidate (docs/design.md, "Mining").

    On raw embeddings t_i with norms r_i and cosines cos_ij::

        d_ij  = r_i + r_j - 2 cos_ij          (all j, including j = i)
        rho_i = mean of log d_ij over the k+1 smallest d_ij of row i

    This "distance" mixes raw norms with cosines exactly as the DNM reference
    code does.  Smaller rho = tighter neighbourhood.

    Parameters
    ----------
    raw_candidates : (N, D) array of float16/32/64
        **Raw, unnormalised** text-encoder outputs (CLIP's have norms of about
        6-15).  Not modified.
    k : int, 0 <= k < N
        Neighbours beyond the row itself (k+1 distances are averaged, the
        self-distance d_ii = 2 r_i - 2 included).
    rows : (start, stop) or None
        Compute rho for the rows ``start .. stop-1`` only (0 <= start < stop <= N),
        each against **all** N candidates: the building block of
        :func:`dnm.dask.knn_log_distance`.  The result is bitwise equal to
        ``knn_log_distance(raw_candidates, k)[start:stop]`` for any range: each
        distance comes from the very GEMM call the full run makes for it.  Costs
        about (stop - start) x N x D multiply-adds, rounded up to whole tiles of
        :data:`KNN_TILE` rows (so ranges starting and ending on multiples of
        KNN_TILE waste nothing); memory (stop - start) x 2(k+1) doubles plus the N
        norms.  The input checks below (norms, unit-norm, NaN/Inf) still cover all N
        rows; the "distance <= 0" check covers the range's rows.

    Returns
    -------
    rho : (N,) float64, or (stop - start,) with ``rows``

    Raises
    ------
    ValueError
        * every row norm lies within 1e-3 of 1 (the rows look L2-normalised:
          d_ii would be 0 in every row), or some row has norm r_i <= 1
          (d_ii = 2 r_i - 2 <= 0) - the message says raw encoder outputs are
          needed.  Both are checked on the norms, computed in float64, before
          any product;
        * some row's smallest distance (computed) is <= 0 - checked on the k+1
          selected distances of every row, which include the row's minimum,
          so no d_ij <= 0 can ever enter a mean;
        * NaN/Inf (row named), zero rows, empty input, k < 0 or k >= N.
    """
    X = as_matrix(raw_candidates, "raw_candidates")
    k = check_int(k, "k", low=0)
    if k >= X.shape[0]:
        raise ValueError(f"k: must be < the number of candidates N = {X.shape[0]}, got {k}")
    n = X.shape[0]
    if rows is None:
        start, stop = 0, n
    else:
        try:
            start, stop = rows
        except (TypeError, ValueError):
            raise TypeError(f"rows: expected a pair (start, stop) or None, got {rows!r}") from None
        start = check_int(start, "rows[0]")
        stop = check_int(stop, "rows[1]")
        if not 0 <= start < stop <= n:
            raise ValueError(f"rows: must satisfy 0 <= start < stop <= N = {n}, "
                             f"got ({start}, {stop})")
    nt = _config.resolve(num_threads)
    with TileProgress(progress, "dnm kNN log-distance") as cb:
        if _blas_path(X):
            return _knn_ties_first(X, k, nt, cb, start, stop)
        return _core.knn_log_distance(X, k, nt, cb, start, stop, _config.kernel())


def _select_by_pos(values, is_adjective, noun_ratio, adj_ratio):
    """Nouns then adjectives, each: the floor(ratio * count) lowest values,
    ties broken by index (stable sort)."""
    adj = is_adjective
    out = []
    for mask, ratio in ((~adj, noun_ratio), (adj, adj_ratio)):
        idx = np.flatnonzero(mask)
        n_keep = int(math.floor(ratio * idx.size))
        order = np.argsort(values[idx], kind="stable")
        out.append(idx[order[:n_keep]])
    return np.concatenate(out).astype(np.int64, copy=False)


def select_dnm(raw_candidates, is_adjective, noun_ratio=0.23, adj_ratio=0.13, k=100, *,
               num_threads=None, progress=False):
    """DNM's selection (docs/design.md, "Mining"): indices into ``raw_candidates``.

    rho = :func:`knn_log_distance` over **all** candidates together (nouns and
    adjectives are each other's neighbours, as in the reference code); then,
    separately for nouns (``is_adjective`` False) and adjectives, the
    ``floor(ratio * count)`` candidates of smallest rho, in rank order (ties by
    index).  Returns int64: the selected nouns, then the selected adjectives.
    """
    X = as_matrix(raw_candidates, "raw_candidates")
    adj = check_mask(is_adjective, X.shape[0])
    noun_ratio = check_fraction(noun_ratio, "noun_ratio", open_low=False)
    adj_ratio = check_fraction(adj_ratio, "adj_ratio", open_low=False)
    rho = knn_log_distance(X, k, num_threads=num_threads, progress=progress)
    return _select_by_pos(rho, adj, noun_ratio, adj_ratio)


def neglabel_closeness(id_labels, candidates, percentile=0.95, *, max_cut=None,
                       num_threads=None, progress=False):
    """NegLabel's closeness of each candidate to the ID labels (docs/design.md, "Mining").

    q(n) = the ``percentile``-quantile of the cosines of the normalised
    candidate n to the C normalised ID labels, with NumPy's default linear
    interpolation (position percentile * (C - 1) of the ascending cosines),
    equal to ``np.quantile(cos, percentile, axis=1)``.

    ``max_cut``: the CSP rule (docs/design.md, "Mining"): where a candidate's maximum cosine
    exceeds ``max_cut`` (CSP uses 0.95, :data:`CSP_MAX_CUT`), q is that maximum.

    Returns float64 (N,) - lower means farther from the ID classes.
    """
    P = as_matrix(id_labels, "id_labels")
    X = as_matrix(candidates, "candidates")
    check_same_dim([("id_labels", P), ("candidates", X)])
    eta = check_fraction(percentile, "percentile", open_low=False)
    if max_cut is None:
        cut = float("nan")
    else:
        if isinstance(max_cut, bool) or not isinstance(max_cut, (int, float, np.number)):
            raise TypeError(f"max_cut: expected a real number or None, got {type(max_cut).__name__}")
        cut = float(max_cut)
        if not math.isfinite(cut):
            raise ValueError(f"max_cut: must be finite (or None), got {max_cut!r}")
    nt = _config.resolve(num_threads)
    with TileProgress(progress, "dnm NegLabel closeness") as cb:
        q = _core.neglabel_closeness(P, X, eta, cut, nt, cb, _config.kernel())
    if _blas_path(P, X):
        q = q[first_copies(X)]  # the tie rule of the BLAS tiles
    return q


def select_neglabel(id_labels, candidates, is_adjective, ratio=0.15, percentile=0.95, *,
                    max_cut=None, num_threads=None, progress=False):
    """NegLabel's selection (docs/design.md, "Mining"; with ``max_cut`` the CSP rule).

    Separately for nouns and adjectives, the ``floor(ratio * count)`` candidates
    of **lowest** :func:`neglabel_closeness`, in rank order (ties by index).
    Returns int64 indices into ``candidates``: nouns, then adjectives.
    """
    X = as_matrix(candidates, "candidates")
    adj = check_mask(is_adjective, X.shape[0])
    ratio = check_fraction(ratio, "ratio", open_low=False)
    q = neglabel_closeness(id_labels, X, percentile, max_cut=max_cut,
                           num_threads=num_threads, progress=progress)
    return _select_by_pos(q, adj, ratio, ratio)


def select_csp(id_labels, candidates, is_adjective, ratio=0.15, percentile=0.95, *,
               max_cut=CSP_MAX_CUT, num_threads=None, progress=False):
    """The CSP rule: :func:`select_neglabel` with ``max_cut=0.95``."""
    return select_neglabel(id_labels, candidates, is_adjective, ratio, percentile,
                           max_cut=max_cut, num_threads=num_threads, progress=progress)
