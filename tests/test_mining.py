"""Negative mining (docs/design.md, "Mining") against the NumPy twins in tests/slow/mining.py."""
import os
import signal
import threading
import time

import numpy as np
import pytest

from dnm import _config, _core, mining
from slow import mining as twin

# float32/float16 mining runs on dnm's own kernel (per instruction set) or the BLAS tiles;
# the tests marked with the `kernel` fixture run on each kernel this CPU has
KERNELS = ["blas"] + [k for k in ("avx512", "avx2") if getattr(_core, "HAVE_" + k.upper())]
OWN = [k for k in KERNELS if k != "blas"]


@pytest.fixture(params=KERNELS)
def kernel(request):
    with _config.float_kernel(request.param):
        yield request.param

# float32 / float16 inputs are multiplied in float32 (distances, logs and order
# statistics in float64).  Measured worst cases against the float64 oracle on
# the same (quantised) values: rho relative 1.4e-8 (random, D = 40..512) and
# 6e-9 (real CLIP rows); closeness absolute 1.5e-7 (random), 5.7e-7 (real).
RHO_RTOL_F32 = 5e-8
Q_ATOL_F32 = 2e-6


def raw_rows(rng, n, d, lo=6.0, hi=15.0, dtype=np.float64):
    """Random rows with CLIP-like raw norms in [lo, hi]."""
    x = rng.standard_normal((n, d))
    x *= rng.uniform(lo, hi, (n, 1)) / np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(dtype)


def with_duplicates(rng, n, d, copies=4):
    base = raw_rows(rng, n, d)
    return np.concatenate([base] * copies)[rng.permutation(copies * n)]


# ---------------------------------------------------------------- kNN rule

@pytest.mark.parametrize("n,d,k", [(1, 8, 0), (7, 5, 6), (513, 32, 0), (1300, 48, 10),
                                   (1100, 64, 100)])
def test_knn_float64_matches_oracle(rng, n, d, k):
    x = raw_rows(rng, n, d)
    rho = mining.knn_log_distance(x, k)
    ref = twin.knn_log_distance(x, k)
    assert rho.dtype == np.float64 and rho.shape == (n,)
    np.testing.assert_allclose(rho, ref, rtol=1e-9, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_knn_low_precision_matches_oracle(rng, dtype, kernel):
    x = raw_rows(rng, 1200, 64, dtype=dtype)
    rho = mining.knn_log_distance(x, 20)
    ref = twin.knn_log_distance(x, 20)  # oracle on the same quantised values
    np.testing.assert_allclose(rho, ref, rtol=RHO_RTOL_F32, atol=0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_knn_ties_and_duplicates(rng, dtype, kernel):
    # every row appears 4 times: many exactly equal distances, including at the
    # boundary of the k+1 selection (k = 6: the row itself, its 3 copies, then 3 more)
    x = with_duplicates(rng, 300, 40).astype(dtype)
    rho = mining.knn_log_distance(x, 6)
    np.testing.assert_allclose(rho, twin.knn_log_distance(x, 6),
                               rtol=1e-9 if dtype == np.float64 else RHO_RTOL_F32)
    # copies get bitwise-equal rho (dnm's kernel: a product does not depend on where its
    # rows sit; the BLAS tiles: the first copy's value, see mining.first_copies)
    _, group = np.unique(x, axis=0, return_inverse=True)
    group = group.ravel()
    for g in range(group.max() + 1):
        assert np.unique(rho[group == g]).size == 1
    # ... so the selection is identical to the oracle's, ties broken by index
    adj = rng.random(len(x)) < 0.3
    got = mining.select_dnm(x, adj, 0.3, 0.4, k=6)
    np.testing.assert_array_equal(got, twin.select_dnm(x, adj, 0.3, 0.4, k=6))


def test_knn_ties_inside_selection_do_not_matter():
    # row 0 at distance exactly equal to rows 1..5 (one vector repeated): any 3 of
    # the 5 tied neighbours give the same mean
    rng = np.random.default_rng(3)
    v = raw_rows(rng, 1, 16)[0]
    far = raw_rows(rng, 40, 16) * 3.0
    x = np.vstack([v, np.repeat(v[None] * 1.5, 5, axis=0), far])
    rho = mining.knn_log_distance(x, 3)
    np.testing.assert_allclose(rho, twin.knn_log_distance(x, 3), rtol=1e-9)


def test_select_dnm_matches_oracle_and_contract(rng, kernel):
    x = raw_rows(rng, 900, 32)
    adj = rng.random(900) < 0.25
    got = mining.select_dnm(x, adj, noun_ratio=0.23, adj_ratio=0.13, k=10)
    ref = twin.select_dnm(x, adj, 0.23, 0.13, 10)
    np.testing.assert_array_equal(got, ref)
    assert got.dtype == np.int64
    n_noun, n_adj = int(np.floor(0.23 * (~adj).sum())), int(np.floor(0.13 * adj.sum()))
    assert len(got) == n_noun + n_adj
    assert not adj[got[:n_noun]].any() and adj[got[n_noun:]].all()
    rho = mining.knn_log_distance(x, 10)
    assert np.all(np.diff(rho[got[:n_noun]]) >= 0) and np.all(np.diff(rho[got[n_noun:]]) >= 0)
    # ratios 0 and 1
    assert len(mining.select_dnm(x, adj, 0.0, 0.0, k=10)) == 0
    full = mining.select_dnm(x, adj, 1.0, 1.0, k=10)
    assert sorted(full.tolist()) == list(range(900))


# ---------------------------------------------------------------- NegLabel / CSP

@pytest.mark.parametrize("c", [1, 2, 3, 10, 1000])
@pytest.mark.parametrize("eta", [0.0, 0.5, 0.95, 1.0, 0.37])
def test_closeness_float64_matches_numpy_quantile(rng, c, eta):
    p = rng.standard_normal((c, 24))
    x = rng.standard_normal((300, 24)) * 5
    q = mining.neglabel_closeness(p, x, eta)
    np.testing.assert_allclose(q, twin.neglabel_closeness(p, x, eta), rtol=0, atol=1e-13)


@pytest.mark.parametrize("c", [64, 65, 257, 1000, 3000])
@pytest.mark.parametrize("eta", [0.01, 0.05, 0.5, 0.95, 0.999])
def test_closeness_selection_on_tie_heavy_and_narrow_rows(rng, c, eta):
    """The selection (a histogram of each row, then the few values of the bins that hold the
    order statistics) against NumPy's quantile: labels repeated (exact ties), nearly equal
    labels (a range of ~1e-9: narrow bins), all equal (no histogram), a few far values."""
    base = rng.standard_normal((7, 24))
    tied = base[rng.integers(0, 7, c)]
    narrow = base[0] + 1e-9 * rng.standard_normal((c, 24))
    same = np.repeat(base[:1], c, axis=0)
    far = tied.copy()
    far[:3] *= -1  # cosines of the opposite sign: most values in a few bins
    x = rng.standard_normal((120, 24)) * 5
    for p in (tied, narrow, same, far):
        np.testing.assert_allclose(mining.neglabel_closeness(p, x, eta),
                                   twin.neglabel_closeness(p, x, eta), rtol=0, atol=1e-13)


def test_closeness_max_cut_and_low_precision(rng, kernel):
    p = rng.standard_normal((200, 32))
    x = np.vstack([rng.standard_normal((300, 32)), p[:20] * 3 + 0.01 * rng.standard_normal((20, 32))])
    for cut in (None, 0.95, 0.3):
        ref = twin.neglabel_closeness(p, x, 0.95, cut)
        np.testing.assert_allclose(mining.neglabel_closeness(p, x, max_cut=cut), ref,
                                   rtol=0, atol=1e-13)
        for dt in (np.float32, np.float16):
            pd, xd = p.astype(dt), x.astype(dt)
            np.testing.assert_allclose(mining.neglabel_closeness(pd, xd, max_cut=cut),
                                       twin.neglabel_closeness(pd, xd, 0.95, cut),
                                       rtol=0, atol=Q_ATOL_F32)
    # the near-copies of ID labels get their max (~1) under the CSP cut
    q = mining.neglabel_closeness(p, x, max_cut=0.95)
    assert np.all(q[300:] > 0.99)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_select_neglabel_matches_oracle_with_ties(rng, dtype, kernel):
    p = rng.standard_normal((120, 40)).astype(dtype)
    x = with_duplicates(rng, 250, 40).astype(dtype)
    adj = rng.random(len(x)) < 0.3
    for cut in (None, 0.5):
        got = mining.select_neglabel(p, x, adj, ratio=0.15, max_cut=cut)
        np.testing.assert_array_equal(got, twin.select_neglabel(p, x, adj, 0.15, 0.95, cut))
    np.testing.assert_array_equal(mining.select_csp(p, x, adj),
                                  twin.select_neglabel(p, x, adj, 0.15, 0.95, 0.95))


# ---------------------------------------------------------------- real CLIP geometry

def _real_pool(clip_data):
    return np.concatenate([clip_data[k] for k in ("imagenet", "lvis", "coco", "objects365")])


@pytest.mark.parametrize("k", [10, 100])
def test_real_clip_knn_matches_oracle(clip_data, k, kernel):
    x = _real_pool(clip_data)  # 2,648 raw ViT-B/32 rows, float32, norms 6.3-13.4
    assert x.shape == (2648, 512)
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    assert 6 < norms.min() and norms.max() < 15
    ref = twin.knn_log_distance(x, k)
    np.testing.assert_allclose(mining.knn_log_distance(x, k), ref, rtol=RHO_RTOL_F32)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mining.knn_log_distance(x64, k), ref, rtol=1e-9)
    adj = np.zeros(len(x), bool)
    adj[::7] = True  # an arbitrary split, to exercise both parts of speech
    np.testing.assert_array_equal(mining.select_dnm(x64, adj, 0.25, 0.13, k=k),
                                  twin.select_dnm(x64, adj, 0.25, 0.13, k))


def test_real_clip_unit_norm_refused(clip_data):
    x = clip_data["imagenet80"]  # the 80-template rows are normalised
    with pytest.raises(ValueError, match="raw, unnormalised"):
        mining.knn_log_distance(x, 10)


def test_real_clip_neglabel_and_csp_on_lvis(clip_data, kernel):
    """ImageNet-1k labels ("a {c}") against the 1,203 LVIS categories.

    Measured: 142 LVIS rows have an ImageNet row with cosine >= 0.9995 (the same
    word: "cosine 1.000" of the data README).  NegLabel's 0.95-quantile does NOT
    single them out: an exact match moves one of 1,000 cosines, and the quantile
    sits near the 950th - they rank like the others (mean rank percentile 0.52 vs
    0.50; 19 of the 180 kept at ratio 0.15, the base rate is 11.8%).  The CSP cut
    (max cosine > 0.95 -> the max) ranks all 142 strictly last, so they are
    dropped before every other category at any ratio.
    """
    im, lvis = clip_data["imagenet"], clip_data["lvis"]
    pos = np.zeros(len(lvis), bool)  # all nouns
    same = (twin.normalize(lvis) @ twin.normalize(im).T).max(axis=1) >= 0.9995
    assert same.sum() == 142

    q = mining.neglabel_closeness(im, lvis)
    np.testing.assert_allclose(q, twin.neglabel_closeness(im, lvis), atol=Q_ATOL_F32, rtol=0)
    rank = np.argsort(np.argsort(q, kind="stable"), kind="stable") / len(q)
    assert abs(rank[same].mean() - rank[~same].mean()) < 0.1
    kept = mining.select_neglabel(im, lvis, pos, ratio=0.15)
    assert len(kept) == 180
    assert 0.03 < same[kept].mean() < 0.25  # near the base rate 142/1203

    qc = mining.neglabel_closeness(im, lvis, max_cut=0.95)
    assert qc[same].min() > 0.9995 > qc[~same].max()
    n_other = int((~same).sum())
    ratio = n_other / len(lvis)  # keep exactly as many as there are other categories
    kept = mining.select_csp(im, lvis, pos, ratio=ratio)
    assert len(kept) == n_other and not same[kept].any()
    # exact order: float64 input (in float32, near-ties at 1e-7 may swap neighbours)
    im64, lvis64 = im.astype(np.float64), lvis.astype(np.float64)
    np.testing.assert_array_equal(mining.select_csp(im64, lvis64, pos, ratio=ratio),
                                  twin.select_neglabel(im64, lvis64, pos, ratio, 0.95, 0.95))
    np.testing.assert_array_equal(mining.select_neglabel(im64, lvis64, pos),
                                  twin.select_neglabel(im64, lvis64, pos))


# ---------------------------------------------------------------- threads, layouts, inputs

def test_thread_count_does_not_change_results(rng):
    x32 = raw_rows(rng, 1700, 64, dtype=np.float32)  # 4 x 4 tiles of 512
    p = rng.standard_normal((700, 64)).astype(np.float32)
    adj = rng.random(1700) < 0.3
    for x in (x32, x32.astype(np.float64)):
        a = mining.knn_log_distance(x, 50, num_threads=1)
        b = mining.knn_log_distance(x, 50, num_threads=2)
        assert np.array_equal(a, b)
        np.testing.assert_array_equal(mining.select_dnm(x, adj, k=50, num_threads=1),
                                      mining.select_dnm(x, adj, k=50, num_threads=2))
        for cut in (None, 0.95):
            a = mining.neglabel_closeness(p, x, max_cut=cut, num_threads=1)
            b = mining.neglabel_closeness(p, x, max_cut=cut, num_threads=2)
            assert np.array_equal(a, b)


def test_layouts_and_dtypes_inputs_unchanged(rng):
    base = raw_rows(rng, 1100, 40)
    p = rng.standard_normal((90, 40))
    ref_rho = twin.knn_log_distance(base, 15)
    ref_q = twin.neglabel_closeness(p, base)
    wide = np.zeros((1100, 80))
    wide[:, ::2] = base
    variants = {
        "C": base.copy(),
        "F": np.asfortranarray(base),
        "col-strided": wide[:, ::2],
        "row-padded": np.ascontiguousarray(np.hstack([base, np.zeros((1100, 3))]))[:, :40],
        "list": base.tolist(),
    }
    for name, x in variants.items():
        before = np.array(x, copy=True)
        np.testing.assert_allclose(mining.knn_log_distance(x, 15), ref_rho, rtol=1e-9,
                                   err_msg=name)
        np.testing.assert_allclose(mining.neglabel_closeness(p, x), ref_q, atol=1e-13,
                                   err_msg=name)
        np.testing.assert_array_equal(np.asarray(x), before)
    row_strided = np.repeat(base, 2, axis=0)[::2]
    np.testing.assert_allclose(mining.knn_log_distance(row_strided, 15), ref_rho, rtol=1e-9)
    for dt, tol in ((np.float32, RHO_RTOL_F32), (np.float16, RHO_RTOL_F32)):
        xd = base.astype(dt)
        f = np.asfortranarray(xd)
        np.testing.assert_allclose(mining.knn_log_distance(f, 15),
                                   twin.knn_log_distance(xd, 15), rtol=tol)
    # huge float32 magnitudes: no overflow (a normalised copy is used instead)
    big = (base * 1e17).astype(np.float32)
    np.testing.assert_allclose(mining.knn_log_distance(big, 15), twin.knn_log_distance(big, 15),
                               rtol=1e-9)


# ---------------------------------------------------------------- row ranges

# Each range's distances come from the very GEMM calls of the full run (the tile
# grid stays anchored at row 0), so the result is bitwise the full run's slice for
# aligned AND unaligned ranges (measured: 0 ulp for both, float32 and float64).
T = mining.KNN_TILE


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [(0, 1700), (0, T), (T, 2 * T), (2 * T, 1700), (0, 3 * T),
                                  (T, 1700)])
def test_knn_rows_aligned_bitwise(rng, dtype, rows):
    x = raw_rows(rng, 1700, 40, dtype=dtype)
    full = mining.knn_log_distance(x, 20)
    out = mining.knn_log_distance(x, 20, rows=rows)
    assert out.dtype == np.float64 and out.shape == (rows[1] - rows[0],)
    np.testing.assert_array_equal(out, full[slice(*rows)])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_knn_rows_unaligned_bitwise(rng, dtype):
    x = raw_rows(rng, 1300, 33, dtype=dtype)
    full = mining.knn_log_distance(x, 12)
    for rows in [(0, 1), (1299, 1300), (100, 900), (511, 513), (T - 1, T), (T, T + 1),
                 (7, 1300), (333, 334), (1, 1299)]:
        np.testing.assert_array_equal(mining.knn_log_distance(x, 12, rows=rows),
                                      full[slice(*rows)], err_msg=str(rows))
    # blocks of any size tile the full result exactly
    for block in (T, 300, 1000):
        parts = [mining.knn_log_distance(x, 12, rows=(i, min(1300, i + block)))
                 for i in range(0, 1300, block)]
        np.testing.assert_array_equal(np.concatenate(parts), full)


def test_knn_rows_layouts_and_threads(rng):
    base = raw_rows(rng, 1100, 24)
    full = mining.knn_log_distance(base, 9)
    strided = np.asfortranarray(base)  # converted copy path
    np.testing.assert_array_equal(mining.knn_log_distance(strided, 9, rows=(600, 1100)),
                                  full[600:])
    for nt in (1, 2):
        np.testing.assert_array_equal(
            mining.knn_log_distance(base, 9, rows=(200, 800), num_threads=nt), full[200:800])
    np.testing.assert_array_equal(mining.knn_log_distance(base, 9, rows=(0, 1100)), full)
    assert mining.knn_log_distance(base, 1099, rows=(5, 6)).shape == (1,)  # k = N - 1


def test_knn_rows_guards_cover_all_rows(rng):
    x = raw_rows(rng, 1200, 16)
    # a bad row outside the range is still found: the norms are checked for all N
    y = x.copy()
    y[1100] *= 0.9 / np.linalg.norm(y[1100])
    with pytest.raises(ValueError, match=r"row 1100 has norm .* <= 1"):
        mining.knn_log_distance(y, 5, rows=(0, 512))
    y = x.copy()
    y[900, 2] = np.nan
    with pytest.raises(ValueError, match="row 900 contains NaN or Inf"):
        mining.knn_log_distance(y, 5, rows=(0, 10))
    y = x.copy()
    y[3] = 0
    with pytest.raises(ValueError, match="row 3 has zero norm"):
        mining.knn_log_distance(y, 5, rows=(1000, 1200))
    with pytest.raises(ValueError, match="raw, unnormalised"):  # unit norm over all N
        mining.knn_log_distance(twin.normalize(x), 5, rows=(0, 100))
    # the float32 "normalised copy" decision (some norm > 1e15) is taken over all N:
    # a range without the huge row still equals the full run, which normalised all rows
    f = x.astype(np.float32)
    f[1150] *= np.float32(1e16)
    full = mining.knn_log_distance(f, 7)
    np.testing.assert_array_equal(mining.knn_log_distance(f, 7, rows=(0, 700)), full[:700])
    np.testing.assert_array_equal(mining.knn_log_distance(f, 7, rows=(1100, 1200)), full[1100:])


def test_knn_rows_bad_arguments(rng):
    x = raw_rows(rng, 50, 8)
    for rows in [(0, 0), (5, 3), (-1, 10), (0, 51), (50, 51)]:
        with pytest.raises(ValueError, match=r"rows: must satisfy 0 <= start < stop <= N = 50"):
            mining.knn_log_distance(x, 3, rows=rows)
    for rows in [5, (1, 2, 3), "ab", (0.5, 3)]:
        with pytest.raises(TypeError, match="rows"):
            mining.knn_log_distance(x, 3, rows=rows)
    with pytest.raises(ValueError, match="k: must be <"):
        mining.knn_log_distance(x, 50, rows=(0, 10))


def test_knn_rows_against_twin(rng):
    x = raw_rows(rng, 700, 20)
    np.testing.assert_allclose(mining.knn_log_distance(x, 10, rows=(650, 700)),
                               twin.knn_log_distance(x, 10)[650:], rtol=1e-9)


# ---------------------------------------------------------------- guards

def test_knn_guards(rng):
    x = raw_rows(rng, 50, 16)
    with pytest.raises(ValueError, match="raw, unnormalised"):
        mining.knn_log_distance(twin.normalize(x), 5)
    with pytest.raises(ValueError, match="raw, unnormalised"):
        mining.knn_log_distance(twin.normalize(x).astype(np.float32), 5)
    y = x.copy()
    y[7] *= 0.9 / np.linalg.norm(y[7])  # one row of norm 0.9
    with pytest.raises(ValueError, match=r"row 7 has norm .* <= 1.*raw, unnormalised"):
        mining.knn_log_distance(y, 5)
    for bad in (np.nan, np.inf):
        y = x.copy()
        y[11, 3] = bad
        with pytest.raises(ValueError, match="row 11 contains NaN or Inf"):
            mining.knn_log_distance(y, 5)
    y = x.copy()
    y[4] = 0
    with pytest.raises(ValueError, match="row 4 has zero norm"):
        mining.knn_log_distance(y, 5)
    with pytest.raises(ValueError, match="k: must be <"):
        mining.knn_log_distance(x, 50)
    with pytest.raises(ValueError, match="k: must be >= 0"):
        mining.knn_log_distance(x, -1)
    with pytest.raises(TypeError, match="k"):
        mining.knn_log_distance(x, 2.5)
    with pytest.raises(ValueError, match="empty"):
        mining.knn_log_distance(np.zeros((0, 16)), 0)
    with pytest.raises(ValueError, match="2-D"):
        mining.knn_log_distance(x[0], 0)
    with pytest.raises(TypeError, match="floating"):
        mining.knn_log_distance(x.astype(int), 3)


def test_knn_never_returns_minus_inf_or_nan(rng):
    # norms a hair above 1 pass the norm check, but the computed d_ii can round
    # to <= 0: that must be the clear error, and otherwise rho must be finite
    base = raw_rows(rng, 40, 16).astype(np.float32)
    raised = 0
    for _ in range(300):
        v = rng.standard_normal(16)
        v = (v / np.linalg.norm(v) * (1 + 1e-9)).astype(np.float32)
        if np.linalg.norm(v.astype(np.float64)) <= 1:
            continue
        try:
            rho = mining.knn_log_distance(np.vstack([base, v]), 3)
        except ValueError as e:
            assert "row 40 has a distance" in str(e) and "<= 0" in str(e)
            raised += 1
        else:
            assert np.all(np.isfinite(rho))
    assert raised > 0  # measured: the guard does fire for such rows


def test_selection_guards(rng):
    x = raw_rows(rng, 30, 8)
    p = rng.standard_normal((5, 8))
    adj = np.zeros(30, bool)
    with pytest.raises(ValueError, match="noun_ratio"):
        mining.select_dnm(x, adj, noun_ratio=1.5, k=3)
    with pytest.raises(ValueError, match="adj_ratio"):
        mining.select_dnm(x, adj, adj_ratio=-0.1, k=3)
    with pytest.raises(ValueError, match="is_adjective"):
        mining.select_dnm(x, adj[:-1], k=3)
    with pytest.raises(ValueError, match="is_adjective"):
        mining.select_neglabel(p, x, None)
    with pytest.raises(TypeError, match="is_adjective"):
        mining.select_neglabel(p, x, np.zeros(30) + 0.5)
    with pytest.raises(ValueError, match="ratio"):
        mining.select_neglabel(p, x, adj, ratio=2)
    with pytest.raises(ValueError, match="percentile"):
        mining.neglabel_closeness(p, x, 1.2)
    with pytest.raises(ValueError, match="features"):
        mining.neglabel_closeness(p[:, :4], x)
    with pytest.raises(ValueError, match="max_cut"):
        mining.neglabel_closeness(p, x, max_cut=np.nan)
    y = x.copy()
    y[2, 0] = np.nan
    with pytest.raises(ValueError, match="candidates: row 2 contains NaN"):
        mining.neglabel_closeness(p, y)
    q = p.copy()
    q[3] = 0
    with pytest.raises(ValueError, match="id_labels: row 3 has zero norm"):
        mining.neglabel_closeness(q, x)
    with pytest.raises(ValueError, match="empty"):
        mining.neglabel_closeness(p[:0], x)


# ---------------------------------------------------------------- progress and Ctrl-C

def test_progress_bar(rng, capsys):
    x = raw_rows(rng, 1100, 16)
    rho = mining.knn_log_distance(x, 5, progress=True)
    np.testing.assert_allclose(rho, twin.knn_log_distance(x, 5), rtol=1e-9)
    mining.neglabel_closeness(x[:50], x, progress=True)
    err = capsys.readouterr().err
    assert "kNN log-distance" in err and "closeness" in err


def test_ctrl_c_stops_promptly(rng):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread only")
    x = raw_rows(rng, 24000, 256, dtype=np.float32)  # several seconds of work
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    t0 = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            mining.knn_log_distance(x, 100)
    finally:
        timer.cancel()
    assert time.perf_counter() - t0 < 3.0


# ---------------------------------------------------------------- kernels and ties

def test_own_kernel_products_do_not_depend_on_position(rng, kernel):
    """On dnm's own kernel every product is one FMA chain in k order: permuting the
    candidates permutes rho and the closeness bit for bit, and any row range, thread
    count or duplicate gets the same bits.  The BLAS tiles promise the thread counts,
    the ranges and (through the tie rule) the copies, not the permutations."""
    x = with_duplicates(rng, 700, 48, copies=2).astype(np.float32)
    p = raw_rows(rng, 90, 48).astype(np.float32)
    perm = rng.permutation(len(x))
    rho, q = mining.knn_log_distance(x, 9), mining.neglabel_closeness(p, x, max_cut=0.4)
    np.testing.assert_array_equal(mining.knn_log_distance(x, 9, num_threads=1), rho)
    np.testing.assert_array_equal(mining.knn_log_distance(x, 9, rows=(333, 1001)), rho[333:1001])
    np.testing.assert_array_equal(mining.neglabel_closeness(p, x, max_cut=0.4, num_threads=1), q)
    canon = twin.first_copies(x)
    np.testing.assert_array_equal(rho, rho[canon])
    np.testing.assert_array_equal(q, q[canon])
    if kernel != "blas":
        np.testing.assert_array_equal(mining.knn_log_distance(x[perm], 9), rho[perm])
        np.testing.assert_array_equal(mining.neglabel_closeness(p, x[perm], max_cut=0.4), q[perm])
        np.testing.assert_array_equal(mining.neglabel_closeness(p[::-1], x, max_cut=0.4), q)


def test_own_kernels_agree_bitwise(rng):
    """The AVX2 and AVX-512 builds of dnm's kernel give the same mining bits, and agree
    with the BLAS tiles to float32 rounding (compared over every kernel this CPU has)."""
    x = raw_rows(rng, 1500, 512).astype(np.float32)
    p = raw_rows(rng, 300, 512).astype(np.float32)
    got = {}
    for k in KERNELS:
        with _config.float_kernel(k):
            got[k] = (mining.knn_log_distance(x, 30), mining.neglabel_closeness(p, x))
    for k in OWN:
        np.testing.assert_allclose(got[k][0], got["blas"][0], rtol=RHO_RTOL_F32)
        np.testing.assert_allclose(got[k][1], got["blas"][1], atol=Q_ATOL_F32)
        np.testing.assert_array_equal(got[k][0], got[OWN[0]][0])
        np.testing.assert_array_equal(got[k][1], got[OWN[0]][1])
    assert len(got) == len(KERNELS) >= 1


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_blas_tie_rule_ranges_take_the_first_copy(rng, dtype):
    """On the BLAS tiles a copy whose first occurrence lies outside a row range still gets
    that occurrence's value: the range equals the full run's slice, bit for bit."""
    base = raw_rows(rng, 300, 24)
    x = np.concatenate([base, base[rng.integers(0, 300, 1000)], base]).astype(dtype)
    with _config.float_kernel("blas"):
        full = mining.knn_log_distance(x, 4)
        for a, b in ((300, 1300), (1290, 1600), (700, 701), (0, 1600)):
            np.testing.assert_array_equal(mining.knn_log_distance(x, 4, rows=(a, b)), full[a:b])
    canon = twin.first_copies(x)
    assert (canon != np.arange(len(x))).sum() == 1300
    np.testing.assert_array_equal(full, full[canon])


def test_first_copies_matches_twin_even_when_hashes_collide(rng, monkeypatch):
    x = rng.standard_normal((400, 7))
    x = x[rng.integers(0, 150, 900)]
    x[5, 3] = -0.0
    x[6] = x[5]
    x[6, 3] = 0.0  # equal values, other bytes: not a copy
    for a in (x, x.astype(np.float32), x.astype(np.float16), np.asfortranarray(x)):
        np.testing.assert_array_equal(mining.first_copies(a), twin.first_copies(a))
    monkeypatch.setattr(mining, "_row_hashes", lambda a: np.zeros(len(a), np.uint64))
    np.testing.assert_array_equal(mining.first_copies(x), twin.first_copies(x))


def _run(env, code):
    import subprocess
    import sys
    e = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True,
                          timeout=120)


def test_float_kernel_environment_variable(rng):
    """DNM_FLOAT_KERNEL forces the float kernel of a whole process; a name that is not a
    kernel, or one this CPU cannot run, fails at import with a message naming it."""
    code = ("import dnm, numpy as np; from dnm import _config;"
            "x = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32) * 3;"
            "print(_config.resolved_kernel(), dnm.knn_log_distance(x, 3)[:2].tolist())")
    outs = {}
    for k in KERNELS:
        r = _run({"DNM_FLOAT_KERNEL": k}, code)
        assert r.returncode == 0, r.stderr
        name, vals = r.stdout.split(" ", 1)
        assert name == k
        outs[k] = vals
    for k in OWN:
        assert outs[k] == outs[OWN[0]]
    r = _run({"DNM_FLOAT_KERNEL": "cuda"}, "import dnm")
    assert r.returncode != 0 and "DNM_FLOAT_KERNEL" in r.stderr and "'cuda'" in r.stderr
    for k in ("avx512", "avx2"):
        if k not in KERNELS:  # a kernel this CPU lacks
            r = _run({"DNM_FLOAT_KERNEL": k}, "import dnm")
            assert r.returncode != 0 and "needs a CPU with" in r.stderr
    r = _run({"DNM_FLOAT_KERNEL": ""}, "import dnm; print(dnm._config.resolved_kernel())")
    assert r.stdout.strip() == (OWN[0] if OWN else "blas")
