"""Scores (docs/design.md, "Numerics") against their NumPy twins in tests/slow/score.py."""
import warnings

import numpy as np
import pytest

import dnm
from dnm import _config, _core
from slow import score as slow

ALL = ["mcm", "max_logit", "energy", "neglabel", "dnm"]
# float32/float16 inputs run on one of two kernels; every test here runs on each this CPU has
KERNELS = (["blas"] + (["avx512"] if _core.HAVE_AVX512 else [])
           + (["avx2"] if _core.HAVE_AVX2 else []))
OWN = [k for k in KERNELS if k != "blas"]  # dnm's own kernel, per instruction set


@pytest.fixture(autouse=True, params=KERNELS)
def float_kernel(request):
    with _config.float_kernel(request.param):
        yield request.param


def call(kind, X, P, N=None, **kw):
    if kind == "mcm":
        return dnm.mcm_score(X, P, **kw), slow.mcm(X, P, **kw)
    if kind == "max_logit":
        return dnm.max_logit_score(X, P, **kw), slow.max_logit(X, P, **kw)
    if kind == "energy":
        return dnm.energy_score(X, P, **kw), slow.energy(X, P, **kw)
    if kind == "neglabel":
        return dnm.neglabel_score(X, P, N, **kw), slow.neglabel(X, P, N, **kw)
    got = dnm.dnm_score(X, P, N, **kw)
    want, _ = slow.dnm(X, P, N, **kw)
    return got, want


def data(rng, n, c, m, d, dtype=np.float64, spread=1.0):
    X = (rng.normal(size=(n, d)) * spread).astype(dtype)
    P = rng.normal(size=(c, d)).astype(dtype)
    N = rng.normal(size=(m, d)).astype(dtype)
    return X, P, N


SHAPES = [  # (N, C, M, D, G)
    (1, 1, 1, 1, 1),
    (1, 3, 5, 4, 5),      # M == G
    (7, 1, 10, 3, 2),     # C == 1
    (300, 20, 250, 1, 7),  # D == 1
    (257, 33, 301, 17, 10),  # crosses the 256-row image tile
    (40, 900, 1500, 8, 100),  # crosses label tiles, groups straddle tiles
    (33, 7, 1000, 513, 9),  # D > 512: the AVX-512 kernel sums k in two slabs
    (65, 500, 508, 512, 4),  # L = 1008 = two AVX-512 label blocks of 504 exactly
    (31, 503, 2, 512, 2),  # L = 505 = one block plus one label
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-9), (np.float32, 1e-4)])
def test_matches_twin(rng, shape, kind, dtype, rtol):
    n, c, m, d, g = shape
    X, P, N = data(rng, n, c, m, d, dtype)
    kw = {}
    if kind in ("neglabel", "dnm"):
        kw["groups"] = g
    if kind == "dnm":
        q = m // g
        kw["tau"] = max(0.5, q / (c + q))  # r <= 1: the reference formula is defined
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dnm.DNMGuardWarning)
        got, want = call(kind, X, P, N, **kw)
    assert got.dtype == np.float64 and got.shape == (n,)
    if kind == "max_logit" and dtype == np.float32:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=0)


@pytest.mark.parametrize("kind", ALL)
def test_temperatures(rng, kind):
    X, P, N = data(rng, 50, 12, 60, 9)
    for T in (1.0, 0.05, 0.01, 0.001):
        kw = {"temperature": T} if kind != "max_logit" else {}
        if kind in ("neglabel", "dnm"):
            kw["groups"] = 6
        if kind == "dnm":
            kw["tau"] = 1.0
        got, want = call(kind, X, P, N, **kw)
        np.testing.assert_allclose(got, want, rtol=1e-9)


def test_layouts_and_float16(rng):
    X, P, N = data(rng, 120, 15, 90, 24, np.float32)
    base = dnm.dnm_score(X, P, N, groups=9, tau=0.9)
    Xf = np.asfortranarray(X)
    Pbig = np.zeros((30, 48), np.float32)
    Pbig[::2, ::2] = P  # strided view
    Nrev = N[::-1][::-1]  # negative strides, same values
    np.testing.assert_allclose(dnm.dnm_score(Xf, Pbig[::2, ::2], Nrev, groups=9, tau=0.9),
                               base, rtol=1e-6)
    # float16 input is computed from exactly the float16 values
    X16, P16, N16 = X.astype(np.float16), P.astype(np.float16), N.astype(np.float16)
    got = dnm.dnm_score(X16, P16, N16, groups=9, tau=0.9)
    want, _ = slow.dnm(X16.astype(np.float64), P16.astype(np.float64), N16.astype(np.float64),
                       groups=9, tau=0.9)
    np.testing.assert_allclose(got, want, rtol=1e-4)
    # mixed dtypes: float64 anywhere -> computed in float64
    got64 = dnm.dnm_score(X.astype(np.float64), P, N, groups=9, tau=0.9)
    want64, _ = slow.dnm(X, P, N, groups=9, tau=0.9)
    np.testing.assert_allclose(got64, want64, rtol=1e-9)


def test_inputs_unchanged(rng):
    X, P, N = data(rng, 30, 5, 40, 6, np.float32)
    copies = [a.copy() for a in (X, P, N)]
    dnm.neglabel_score(X, P, N, groups=4)
    dnm.dnm_score(X, P, N, groups=4, tau=1.0)
    dnm.mcm_score(X, P)
    for a, b in zip((X, P, N), copies):
        np.testing.assert_array_equal(a, b)
        assert a.flags.writeable


def test_tau_one_is_neglabel_over_c(rng):
    X, P, N = data(rng, 200, 37, 500, 16)
    idx = dnm.make_groups(500, 50, seed=3)
    a = dnm.dnm_score(X, P, N, tau=1.0, groups=idx)
    b = dnm.neglabel_score(X, P, N, groups=idx)
    np.testing.assert_allclose(a, b / 37, rtol=1e-12)


def test_groups_int_is_seeded_permutation(rng):
    X, P, N = data(rng, 20, 4, 103, 5)
    idx = np.random.default_rng(7).permutation(100).reshape(10, 10)
    a = dnm.neglabel_score(X, P, N, groups=10, seed=7)
    b = dnm.neglabel_score(X, P, N, groups=idx)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(dnm.make_groups(103, 10, seed=7), idx)
    c = dnm.neglabel_score(X, P, N, groups=10, seed=8)
    assert not np.array_equal(a, c)


def test_torch_permutation_parity(rng):
    torch = pytest.importorskip("torch")
    X, P, N = data(rng, 25, 6, 120, 8)
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(120, generator=gen).numpy()
    idx = perm.reshape(12, 10)
    got = dnm.neglabel_score(X, P, N, groups=idx)
    # a PyTorch re-implementation of NegLabel's grouped score
    x = torch.nn.functional.normalize(torch.from_numpy(X), dim=1)
    p = torch.nn.functional.normalize(torch.from_numpy(P), dim=1)
    n = torch.nn.functional.normalize(torch.from_numpy(N), dim=1)[torch.from_numpy(perm)]
    s = torch.exp(x @ p.T / 0.01).sum(1, keepdim=True)
    u = torch.exp(x @ n.T / 0.01).reshape(25, 12, 10).sum(2)
    want = (s / (s + u)).mean(1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_thread_count_does_not_change_results(rng):
    X, P, N = data(rng, 1100, 50, 3000, 32, np.float32)
    idx = dnm.make_groups(3000, 30)
    kw = dict(groups=idx, tau=0.9)
    one = dnm.dnm_score(X, P, N, num_threads=1, **kw)
    two = dnm.dnm_score(X, P, N, num_threads=2, **kw)
    np.testing.assert_array_equal(one, two)
    # a batch of a few hundred images (128-row tiles, both threads busy)
    np.testing.assert_array_equal(dnm.dnm_score(X[:300], P, N, num_threads=1, **kw),
                                  dnm.dnm_score(X[:300], P, N, num_threads=2, **kw))
    dnm.set_num_threads(1)
    try:
        assert dnm.get_num_threads() == 1
        np.testing.assert_array_equal(dnm.dnm_score(X, P, N, **kw), one)
    finally:
        dnm.set_num_threads(None)


def test_extreme_logits_finite(rng):
    # cosines near 1 and T = 0.001: exp(s/T) ~ exp(1000) overflows the naive formula
    d = 32
    base = rng.normal(size=d)
    X = base + 1e-3 * rng.normal(size=(50, d))
    P = base + 1e-3 * rng.normal(size=(10, d))
    N = base + 1e-3 * rng.normal(size=(40, d))
    with np.errstate(over="ignore", invalid="ignore"):
        naive = np.exp((slow.normalize(X) @ slow.normalize(P).T) / 0.001).sum(1)
    assert not np.isfinite(naive).all()
    for kind in ALL:
        kw = {"temperature": 0.001} if kind != "max_logit" else {}
        if kind in ("neglabel", "dnm"):
            kw["groups"] = 4
        if kind == "dnm":
            kw["tau"] = 1.0
        got, want = call(kind, X, P, N, **kw)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, rtol=1e-9)
    # energy at T = 0.001 would overflow exp(s/T) without the shift
    e = dnm.energy_score(X, P, temperature=1e-4)
    assert np.isfinite(e).all() and (e <= 1 + 1e-4 * np.log(10) + 1e-12).all()
    np.testing.assert_allclose(e, slow.energy(X, P, temperature=1e-4), rtol=1e-12)


def test_far_apart_groups_do_not_underflow_to_nan(rng):
    # ID logits far below the negatives at T = 0.001: a global shift would give 0/0
    d = 8
    X = np.eye(d)[:3]
    P = -np.eye(d)[:3] + 0.01
    N = np.eye(d)[:4] + 0.01
    got = dnm.neglabel_score(X, P, N, temperature=0.001, groups=4)
    assert np.isfinite(got).all() and (got >= 0).all()


# ---- guard ------------------------------------------------------------------

def _confident(rng, c=100, m=1000, d=64):
    """ID images equal to their class label: the DNM denominator goes <= 0."""
    P = rng.normal(size=(c, d))
    X = P[:20] + 0.01 * rng.normal(size=(20, d))
    N = rng.normal(size=(m, d))
    return X, P, N


def test_guard_warns_when_r_above_one(rng):
    X, P, N = _confident(rng)
    # 100 classes, tau = 0.5, G = 20 groups of Q = 50: r = 50 * 0.5 / (0.5 * 100) = 0.5 -> no
    # warning; G = 5 groups of 200: r = 2 > 1 -> warning before computing
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dnm.dnm_score(X, P, N, tau=0.5, groups=20)
    with pytest.warns(dnm.DNMGuardWarning) as rec:
        dnm.dnm_score(X, P, N, tau=0.5, groups=5)
    msgs = [str(w.message) for w in rec]
    assert "r = Q(1-tau)/(tau*C) = 2 > 1" in msgs[0]  # the warning before computing
    assert "were floored" in msgs[1]


def test_guard_raise_and_floor_order(rng):
    X, P, N = _confident(rng)
    with pytest.warns(dnm.DNMGuardWarning):
        with pytest.raises(ValueError, match=r"pairs have Z_j <= S\*1e-6"):
            dnm.dnm_score(X, P, N, tau=0.5, groups=5, guard="raise")
    with pytest.warns(dnm.DNMGuardWarning) as rec:
        got = dnm.dnm_score(X, P, N, tau=0.5, groups=5, guard="floor")
    want, n_floored = slow.dnm(X, P, N, tau=0.5, groups=5, guard="floor")
    assert n_floored > 0
    assert any(f"{n_floored} of" in str(w.message) for w in rec)
    np.testing.assert_allclose(got, want, rtol=1e-9)
    # floored images count as very confident ID: above every non-floored image
    Xo = rng.normal(size=(30, 64))
    allx = np.vstack([X, Xo])
    with pytest.warns(dnm.DNMGuardWarning):
        both = dnm.dnm_score(allx, P, N, tau=0.5, groups=5)
    per_image = np.array([slow.dnm(allx[i:i + 1], P, N, tau=0.5, groups=5)[1]
                          for i in range(len(allx))])
    assert (per_image == 5).sum() >= 20 and (per_image == 0).sum() >= 5
    np.testing.assert_allclose(both[per_image == 5], 1e6 / 100, rtol=1e-12)
    assert both[per_image == 0].max() < 1e6 / 100


def test_guard_dcl_matches_twin(rng):
    X, P, N = _confident(rng)
    for T in (0.01, 0.05):
        got = dnm.dnm_score(X, P, N, temperature=T, tau=0.5, groups=5, guard="dcl")
        want, _ = slow.dnm(X, P, N, temperature=T, tau=0.5, groups=5, guard="dcl")
        assert np.isfinite(got).all() and (got > 0).all()
        np.testing.assert_allclose(got, want, rtol=1e-9)


# ---- real geometry --------------------------------------------------------

def test_real_clip_geometry(clip_data):
    P = clip_data["imagenet"]            # 1000 ID labels (raw)
    X = np.vstack([clip_data["lvis"][:300], clip_data["objects365"][:100]])
    N = clip_data["lvis"][300:]           # 903 negatives
    for kind in ALL:
        kw = {}
        if kind in ("neglabel", "dnm"):
            kw["groups"] = 100
        got, want = call(kind, X, P, N, **kw)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=0 if kind != "max_logit" else 1e-6)
    # LVIS categories that are ImageNet classes score higher (more ID) than the rest
    s = dnm.neglabel_score(clip_data["lvis"], P, clip_data["objects365"], groups=73)
    sims = slow.normalize(clip_data["lvis"]) @ slow.normalize(P).T
    is_in = sims.max(axis=1) > 0.999
    assert is_in.sum() == 142  # measured: LVIS rows whose prompt equals an ImageNet class prompt
    assert np.median(s[is_in]) > np.median(s[~is_in])


# ---- bad input ----------------------------------------------------------------

def test_bad_input_errors(rng):
    X, P, N = data(rng, 10, 4, 20, 6, np.float32)
    cases = [
        (lambda: dnm.mcm_score(X[0], P), ValueError, "images: expected a 2-D"),
        (lambda: dnm.mcm_score(X, P[:, :5]), ValueError, "id_labels: has 5 features"),
        (lambda: dnm.neglabel_score(X, P, N[:, :4], groups=2), ValueError, "negatives: has 4"),
        (lambda: dnm.mcm_score(X[:0], P), ValueError, "images: array is empty"),
        (lambda: dnm.mcm_score(X, P[:0]), ValueError, "id_labels: array is empty"),
        (lambda: dnm.mcm_score(X.astype(int), P), TypeError, "images: expected floating-point"),
        (lambda: dnm.mcm_score(X, P.astype(complex)), TypeError, "id_labels: expected floating"),
        (lambda: dnm.mcm_score(X, "abc"), TypeError, "id_labels"),
        (lambda: dnm.neglabel_score(X, P, N, groups=21), ValueError, "groups: 21 groups"),
        (lambda: dnm.neglabel_score(X, P, N, groups=0), ValueError, "groups: must be >= 1"),
        (lambda: dnm.neglabel_score(X, P, N, groups=np.arange(4)), ValueError, "groups: index array must be 2-D"),
        (lambda: dnm.neglabel_score(X, P, N, groups=np.array([[0, 20]])), ValueError, r"groups: indices must lie in \[0, 20\)"),
        (lambda: dnm.neglabel_score(X, P, N, groups=np.array([[-1, 2]])), ValueError, "groups: indices"),
        (lambda: dnm.neglabel_score(X, P, N, groups=np.array([[0.5, 2]])), TypeError, "groups: index array must hold integers"),
        (lambda: dnm.dnm_score(X, P, N, groups=2, tau=0), ValueError, r"tau: must lie in \(0, 1\]"),
        (lambda: dnm.dnm_score(X, P, N, groups=2, tau=1.5), ValueError, "tau"),
        (lambda: dnm.dnm_score(X, P, N, groups=2, tau=float("nan")), ValueError, "tau"),
        (lambda: dnm.dnm_score(X, P, N, groups=2, guard="nope"), ValueError, "guard: expected one of"),
        (lambda: dnm.energy_score(X, P, temperature=0), ValueError, "temperature: must be"),
        (lambda: dnm.energy_score(X, P, temperature=-1), ValueError, "temperature"),
        (lambda: dnm.energy_score(X, P, temperature=float("inf")), ValueError, "temperature"),
        (lambda: dnm.mcm_score(X, P, num_threads=0), ValueError, "num_threads"),
    ]
    for fn, exc, match in cases:
        with pytest.raises(exc, match=match):
            fn()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_and_zero_rows(rng, bad):
    X, P, N = data(rng, 600, 4, 20, 6, np.float32)
    Xb = X.copy()
    Xb[517, 2] = bad
    with pytest.raises(ValueError, match="images: row 517 contains NaN or Inf"):
        dnm.mcm_score(Xb, P)
    Pb = P.copy()
    Pb[3, 0] = bad
    with pytest.raises(ValueError, match="id_labels: row 3 contains NaN or Inf"):
        dnm.mcm_score(X, Pb)
    Nb = N.copy()
    Nb[11] = bad
    with pytest.raises(ValueError, match="negatives: row 11 contains NaN or Inf"):
        dnm.dnm_score(X, P, Nb, groups=20, tau=1.0)
    Xz = X.copy()
    Xz[5] = 0
    with pytest.raises(ValueError, match="images: row 5 has zero norm"):
        dnm.max_logit_score(Xz, P)


def test_huge_and_tiny_magnitudes(rng):
    X, P, N = data(rng, 40, 5, 30, 7)
    for scale in (1e-300, 1e-30, 1e30, 1e300):
        got = dnm.dnm_score(X * scale, P, N, groups=3, tau=1.0)
        want, _ = slow.dnm(X, P, N, groups=3, tau=1.0)
        np.testing.assert_allclose(got, want, rtol=1e-9)
    got32 = dnm.mcm_score((X * 1e-30).astype(np.float32), P.astype(np.float32))
    np.testing.assert_allclose(got32, slow.mcm(X, P), rtol=1e-4)


def test_progress_bar(rng, capsys):
    X, P, N = data(rng, 600, 4, 20, 6, np.float32)
    a = dnm.dnm_score(X, P, N, groups=4, tau=1.0, progress=True)
    b = dnm.dnm_score(X, P, N, groups=4, tau=1.0)
    np.testing.assert_array_equal(a, b)
    assert "dnm score" in capsys.readouterr().err


@pytest.mark.parametrize("n", [4400, 16700])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tile_grid_makes_chunks_bitwise_equal(rng, dtype, n):
    # N >= 4096 uses 512-row image tiles and N >= 16384 1024-row ones.  Chunks cut at
    # multiples of the whole array's tile and scored on its grid (what dnm.dask does) give
    # the same bits as one call; so does any thread count.
    from dnm import _config

    X = rng.standard_normal((n, 24)).astype(dtype)
    P = rng.standard_normal((40, 24)).astype(dtype)
    N = rng.standard_normal((700, 24)).astype(dtype)
    idx = dnm.make_groups(700, 7)
    full = dnm.dnm_score(X, P, N, groups=idx, tau=0.9, num_threads=2)
    np.testing.assert_array_equal(dnm.dnm_score(X, P, N, groups=idx, tau=0.9, num_threads=1),
                                  full)
    tile = dnm._core.image_tile_rows(n)
    assert tile == (512 if n < 16384 else 1024)
    cuts = (0, 2 * tile, 3 * tile, n)
    with _config.tile_grid(tile):
        parts = [dnm.dnm_score(X[a:b], P, N, groups=idx, tau=0.9)
                 for a, b in zip(cuts, cuts[1:])]
    np.testing.assert_array_equal(np.concatenate(parts), full)
    want, _ = slow.dnm(X, P, N, groups=idx, tau=0.9)
    np.testing.assert_allclose(full, want, rtol=1e-4)
    with pytest.raises(ValueError, match="tile_rows"):
        with _config.tile_grid(100):
            dnm.mcm_score(X[:5], P)


def _unaligned(a):
    """The same values at an address that is not a multiple of the itemsize."""
    buf = bytearray(a.nbytes + 1)
    buf[1:] = a.tobytes()
    u = np.frombuffer(bytes(buf), dtype=a.dtype, offset=1).reshape(a.shape)
    assert not u.flags.aligned
    return u


@pytest.mark.parametrize("img_dtype", [np.float32, np.float64])
def test_results_do_not_depend_on_layout_or_alignment(rng, img_dtype):
    # what a Dask worker receives (unpickled buffers at any offset, other strides) must give
    # the same bits as the caller's arrays; float16 input equals its exact float32 widening
    X = rng.standard_normal((300, 20)).astype(np.float16)
    P = rng.standard_normal((30, 20)).astype(np.float16)
    N = rng.standard_normal((200, 20)).astype(np.float16)
    Xi, Pf, Nf = X.astype(img_dtype), P.astype(np.float32), N.astype(np.float32)
    kw = dict(groups=10, tau=0.9)
    ref = dnm.dnm_score(Xi, Pf, Nf, **kw)
    for args in ((_unaligned(Xi), _unaligned(Pf), _unaligned(Nf)),
                 (np.asfortranarray(Xi), Pf[::-1][::-1], np.asfortranarray(Nf)),
                 (Xi, P, N) if img_dtype == np.float32 else (Xi, Pf, N)):
        np.testing.assert_array_equal(dnm.dnm_score(*args, **kw), ref)
    rho = dnm.knn_log_distance(Nf * 4, k=5)
    np.testing.assert_array_equal(dnm.knn_log_distance(_unaligned(Nf * 4), k=5), rho)


def only(kind, X, P, N=None, **kw):
    f = getattr(dnm, kind + "_score")
    return f(X, P, **kw) if kind in ("mcm", "max_logit", "energy") else f(X, P, N, **kw)


@pytest.mark.parametrize("kind", ALL)
def test_row_does_not_depend_on_its_batch(rng, kind, float_kernel):
    """On dnm's own kernel every logit is one FMA chain over k in order, so a row's
    float32 score is bitwise the same scored alone, in any batch, tile size or thread
    count.  (The BLAS tiles only promise this on a fixed tile grid.)"""
    X, P, N = data(rng, 300, 40, 500, 70, np.float32)
    kw = {} if kind in ("mcm", "max_logit", "energy") else {"groups": 10}
    if kind == "dnm":
        kw["tau"] = 1.0
    whole = only(kind, X, P, N, **kw)
    if float_kernel == "blas":  # only thread counts are free there
        np.testing.assert_array_equal(only(kind, X, P, N, num_threads=1, **kw), whole)
        return
    for rows, nt, tile in [(slice(0, 1), 1, 0), (slice(17, 18), 2, 0), (slice(5, 300), 2, 64),
                           (slice(0, 299), 1, 8), (slice(100, 233), 2, 0)]:
        with _config.tile_grid(tile):
            part = only(kind, X[rows], P, N, num_threads=nt, **kw)
        np.testing.assert_array_equal(part, whole[rows])


def test_kernels_agree(rng):
    """The float kernels agree to float32 rounding on real-sized shapes; the AVX2 and
    AVX-512 versions of dnm's kernel give the same bits."""
    if not OWN:
        assert KERNELS == ["blas"]
        return
    X, P, N = data(rng, 700, 300, 2000, 512, np.float32, spread=3.0)
    got = {}
    for k in KERNELS:
        with _config.float_kernel(k):
            got[k] = dnm.dnm_score(X, P, N, groups=16, temperature=0.01)
    for k in OWN:
        np.testing.assert_allclose(got[k], got["blas"], rtol=2e-5)
        assert not np.array_equal(got[k], got["blas"])  # two different products
        np.testing.assert_array_equal(got[k], got[OWN[0]])


def test_float_kernel_choice_is_checked():
    with pytest.raises(ValueError, match="kernel"):
        with _config.float_kernel("cuda"):
            pass
    X = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="kernel"):
        _core.score(0, X, X, None, None, 1.0, 1.0, 0, 0, None, 0, 7)


@pytest.mark.parametrize("kind", ["dnm", "neglabel", "energy"])
def test_few_images_share_label_blocks_bitwise(rng, kind, float_kernel):
    """A batch that fits one image tile is split over label blocks between threads on
    dnm's own kernel (each block's sums combined afterwards in block order): the same bits
    as the tile loop, with one thread or in a larger batch, and the twin's values."""
    X, P, N = data(rng, 100, 300, 2400, 512, np.float32)
    kw = {} if kind == "energy" else {"groups": 8}
    whole = only(kind, X, P, N, **kw)
    for rows in (slice(0, 5), slice(7, 8), slice(60, 92)):
        two = only(kind, X[rows], P, N, num_threads=2, **kw)
        one = only(kind, X[rows], P, N, num_threads=1, **kw)
        np.testing.assert_array_equal(two, one)
        if float_kernel != "blas":
            np.testing.assert_array_equal(two, whole[rows])
    got, want = call(kind, X[:5], P, N, **kw)
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_few_images_bad_row_is_reported(rng):
    """The label-block split (one image tile, two threads) reports a bad image row like
    the tile loop does."""
    X, P, N = data(rng, 3, 300, 2400, 512, np.float32)
    X[1, 7] = np.nan
    with pytest.raises(ValueError, match=r"images.*row 1"):
        dnm.dnm_score(X, P, N, groups=8, num_threads=2)
    X[1, 7] = 0.0
    X[2] = 0.0
    with pytest.raises(ValueError, match=r"images.*row 2"):
        dnm.neglabel_score(X, P, N, groups=8, num_threads=2)
