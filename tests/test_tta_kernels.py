"""The float32 softmax rows of AdaNeg / TANL (dnm._core.softmax_rows, csrc/tta.c and
csrc/tta_simd.h) on every kernel this CPU has: dnm's own kernel (AVX2, AVX-512) and the BLAS
tiles agree with the float64 twin to float32 rounding, and on dnm's own kernel a row's outputs
do not depend on its batch, the thread count or the instruction set."""
import numpy as np
import pytest

import dnm
from dnm import _config, _core
from slow import tta as twin

KERNELS = ["blas"] + [k for k in ("avx512", "avx2") if getattr(_core, "HAVE_" + k.upper())]
OWN = [k for k in KERNELS if k != "blas"]
CODE = {"blas": _core.KERNEL_BLAS, "avx512": _core.KERNEL_AVX512, "avx2": _core.KERNEL_AVX2}

# float32 products, sums in float64: a softmax entry moves by about |dz| / T relative (a
# float32 logit's rounding, ~6e-8 x 100, is ~1e-5).  dnm's kernel takes its exps in float
# (relative error 2e-7, the argument's float rounding ~5e-6 at -80; the double exp below
# that): well inside the products' share.  Measured worst cases against the float64 twin at
# T = 0.01, D = 512 (random rows with cosines up to 0.9, five seeds): entries 5.7e-5 on dnm's
# kernel (one FMA chain per logit; 5.5e-5 with a double exp), 3.2e-5 on the BLAS tiles; ID
# masses 1.4e-5, group masses 4.9e-5.  TANL's queues store these rows as float32 (rounded
# to nearest, 6e-8 relative, far inside P_RTOL; the means in double): the twin rounds its
# queue entries the same way, so the stream tests against it keep atol 1e-12 (a twin with
# float64 queues differs there, on near one-hot rows, through a flipped top-beta selection).
P_RTOL = 1.5e-4
MASS_RTOL = 1e-4


def normalize(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def softmax_twin(X, lab, T, C, index):
    """float64: rows, ID mass, group masses of the softmax of the normalised rows' logits."""
    z = twin.normalize(X) @ np.asarray(lab, np.float64).T / T
    e = np.exp(z - z.max(axis=1, keepdims=True))
    P = e / e.sum(axis=1, keepdims=True)
    gm = P[:, C:][:, index].sum(axis=2) if index is not None else None
    return P, P[:, :C].sum(axis=1), gm


def run(X, lab, kernel, C, index=None, rows=True, nt=2, T=0.01, out=None):
    return _core.softmax_rows(X, lab, T, nt, None, C, index, rows, out, kernel=CODE[kernel])


def data(rng, N=300, C=40, L=2500, D=512):
    lab = normalize(rng.standard_normal((L, D))).astype(np.float32)
    X = rng.standard_normal((N, D)).astype(np.float32)
    X[: N // 2] += 2.0 * lab[rng.integers(0, C, N // 2)] * np.sqrt(D) / 4
    return X, lab, C


@pytest.mark.parametrize("kernel", KERNELS)
def test_softmax_rows_match_float64_twin(rng, kernel):
    X, lab, C = data(rng)
    idx = dnm.make_groups(lab.shape[0] - C, 5, 0)  # drops (L - C) mod 5 columns
    P0, a0, g0 = softmax_twin(X, lab, 0.01, C, idx)
    P, a, g = run(X, lab, kernel, C, idx)
    np.testing.assert_allclose(P, P0, rtol=P_RTOL, atol=0)
    np.testing.assert_allclose(a, a0, rtol=MASS_RTOL, atol=1e-300)
    np.testing.assert_allclose(g, g0, rtol=MASS_RTOL, atol=1e-300)
    _, a2, g2 = run(X, lab, kernel, C, idx, rows=False)  # masses alone: the same products
    np.testing.assert_allclose(a2, a, rtol=1e-13, atol=0)
    np.testing.assert_allclose(g2, g, rtol=1e-13, atol=0)
    P3, a3, g3 = run(X, lab, kernel, C)  # no groups
    np.testing.assert_allclose(P3, P0, rtol=P_RTOL, atol=0)
    assert g3 is None


def test_softmax_rows_real_geometry(clip_data):
    lab = np.concatenate([clip_data["imagenet"][:300], clip_data["lvis"][:1500]])
    lab = normalize(lab.astype(np.float64)).astype(np.float32)
    rng = np.random.default_rng(5)
    X = (normalize(lab[rng.integers(0, 300, 200)].astype(np.float64))
         + rng.normal(size=(200, lab.shape[1])) * 2.5 / np.sqrt(lab.shape[1])).astype(np.float32)
    idx = dnm.make_groups(lab.shape[0] - 300, 3, 1)
    P0, a0, g0 = softmax_twin(X, lab, 0.01, 300, idx)
    for k in KERNELS:
        P, a, g = run(X, lab, k, 300, idx)
        np.testing.assert_allclose(P, P0, rtol=P_RTOL, atol=0)
        np.testing.assert_allclose(a, a0, rtol=MASS_RTOL)
        np.testing.assert_allclose(g, g0, rtol=MASS_RTOL)


def test_own_kernels_agree_with_blas_and_each_other(rng):
    """The AVX2 and AVX-512 builds give the same bits (compared over every kernel this CPU
    has) and agree with the BLAS tiles to float32 rounding."""
    X, lab, C = data(rng, N=130, L=3000)
    idx = dnm.make_groups(lab.shape[0] - C, 4, 2)
    got = {k: run(X, lab, k, C, idx) for k in KERNELS}
    for k in OWN:
        for x, y in zip(got[k], got["blas"]):
            np.testing.assert_allclose(x, y, rtol=2 * P_RTOL, atol=0)
        for x, y in zip(got[k], got[OWN[0]]):
            np.testing.assert_array_equal(x, y)
    assert len(got) == len(KERNELS) >= 1


@pytest.mark.parametrize("kernel", OWN or ["blas"])
def test_own_kernel_rows_do_not_depend_on_batch_or_threads(rng, kernel):
    """On dnm's own kernel a row's outputs depend on that row only: any slice of the batch,
    any order of its rows and any thread count give its bits.  (On a CPU without AVX2 the
    BLAS tiles promise the thread counts.)"""
    X, lab, C = data(rng, N=300, L=2600)
    idx = dnm.make_groups(lab.shape[0] - C, 3, 0)
    full = run(X, lab, kernel, C, idx, nt=2)
    for nt in (1, 3):
        for x, y in zip(run(X, lab, kernel, C, idx, nt=nt), full):
            np.testing.assert_array_equal(x, y)
    if kernel == "blas":
        return
    for a, b in ((0, 1), (7, 40), (31, 300), (255, 299)):
        for x, y in zip(run(X[a:b], lab, kernel, C, idx, nt=2), full):
            np.testing.assert_array_equal(x, y[a:b])
    perm = rng.permutation(len(X))
    for x, y in zip(run(X[perm], lab, kernel, C, idx, nt=2), full):
        np.testing.assert_array_equal(x, y[perm])
    buf = np.full((300, lab.shape[0]), np.nan)  # the caller's buffer: every entry written
    P, _, _ = run(X, lab, kernel, C, idx, out=buf)
    assert P is buf
    np.testing.assert_array_equal(buf, full[0])


def test_repeated_group_columns(rng):
    """Groups that use a column twice are outside dnm's own kernel's packed order: a call for
    the masses alone runs the BLAS tiles (the same bits as asking for them); with the rows,
    dnm's kernel sums the groups from the rows (float32 rounding of the BLAS tiles)."""
    X, lab, C = data(rng, N=50, L=600, D=64)
    idx = np.arange(200).reshape(4, 50)
    idx[2, 3] = idx[0, 0]
    want = run(X, lab, "blas", C, idx, rows=False)
    _, _, g0 = softmax_twin(X, lab, 0.01, C, idx)
    for k in OWN:
        for x, y in zip(run(X, lab, k, C, idx, rows=False), want):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_allclose(run(X, lab, k, C, idx)[2], g0, rtol=MASS_RTOL)


def test_streams_on_every_kernel(rng):
    """AdaNeg and TANL on float32 input: the own kernels give the same bits, and every kernel
    stays within float32 rounding of the float64 twin on most images (a score can move more
    where rounding flips a cache decision or a top-beta choice)."""
    from test_tta import problem
    t, n, u, z, X = problem(rng, C=30, M=300, K=900, D=64, N=200)
    f = lambda a: a.astype(np.float32)  # noqa: E731
    idx = dnm.make_groups(300, 4, 0)
    io, no = np.random.default_rng(3).permutation(30), np.random.default_rng(4).permutation(15)
    ref_a = twin.adaneg(f(X), f(t), f(n), idx, batch_size=32, memory_length=4, temperature=0.03)
    ref_t = twin.tanl(f(X), f(t), f(u), f(z), io, no, batch_size=32, top=60, queue_length=25)
    got = {}
    for k in KERNELS:
        with _config.float_kernel(k):
            got[k] = (dnm.adaneg_score(f(X), f(t), f(n), batch_size=32, groups=idx,
                                       memory_length=4, temperature=0.03),
                      dnm.tanl_score(f(X), f(t), f(u), f(z), batch_size=32, top=60,
                                     queue_length=25, id_order=io, noise_order=no))
        assert np.mean(np.abs(got[k][0] - ref_a) < 1e-4) > 0.97
        assert np.mean(np.abs(got[k][1] - ref_t) < 1e-4) > 0.97
    for k in OWN:
        np.testing.assert_array_equal(got[k][0], got[OWN[0]][0])
        np.testing.assert_array_equal(got[k][1], got[OWN[0]][1])


def test_kernel_argument_is_checked(rng):
    X, lab, C = data(rng, N=4, L=50, D=8)
    with pytest.raises(ValueError, match="kernel"):
        _core.softmax_rows(X, lab, 0.01, 1, None, C, None, True, kernel=9)


@pytest.mark.parametrize("kernel", KERNELS)
def test_softmax_rows_keep_entries_far_below_the_maximum(rng, kernel):
    """Images equal to a label: its logit is 1 / T, the others near 0, so most entries are
    about exp(-100) (below float's exp range at T = 0.01) and exp(-200) at T = 0.005; every
    kernel keeps them (to float32 rounding of the logits), not 0."""
    X, lab, C = data(rng, N=40, L=700)
    X = lab[rng.integers(0, lab.shape[0], 40)] * 3.0
    idx = dnm.make_groups(lab.shape[0] - C, 4, 0)
    for T in (0.01, 0.005):
        P0, a0, g0 = softmax_twin(X, lab, T, C, idx)
        assert (P0 < 1e-38).mean() > 0.9 and P0.min() > 0
        P, a, g = run(X, lab, kernel, C, idx, T=T)
        np.testing.assert_allclose(P, P0, rtol=P_RTOL * 2, atol=0)
        np.testing.assert_allclose(a, a0, rtol=MASS_RTOL * 2, atol=0)
        np.testing.assert_allclose(g, g0, rtol=MASS_RTOL * 2, atol=0)
        if kernel in OWN:  # float32 unscaled rows: the double values rounded to nearest float
            R64, R32, sc, lb, mr = unscaled_pair(X, lab, kernel, C, T)
            assert (R64 < 2.0 ** -126).mean() > 0.5  # subnormal or 0 as floats
            np.testing.assert_array_equal(R32, R64.astype(np.float32))
            in_range = R64 >= np.exp(-80.0)  # the float exps: exact
            np.testing.assert_array_equal(R32[in_range].astype(np.float64), R64[in_range])


def unscaled_pair(X, lab, kernel, C, T=0.01, nt=2):
    """The unscaled rows of dnm's own kernel in double and in float32 (rows_f32), their
    scales (equal), the block and the panel height."""
    k = CODE[kernel]
    lb, mr = _core.softmax_block(lab, k), _core.softmax_panel(lab, k)
    N, L = X.shape[0], lab.shape[0]
    shape = (-(-N // mr) * mr, L)
    sc, sc32 = np.empty((N, -(-L // lb))), np.empty((N, -(-L // lb)))
    R64, _, _ = _core.softmax_rows(X, lab, T, nt, None, C, None, True, kernel=k, scales=sc)
    R32, _, _ = _core.softmax_rows(X, lab, T, nt, None, C, None, True, np.empty(shape, np.float32),
                                   kernel=k, scales=sc32, rows_f32=True)
    np.testing.assert_array_equal(sc32, sc)
    n = N  # the padding rows of the last panel hold unspecified values
    return (twin.unpanel(R64, mr, n), twin.unpanel(R32, mr, n), sc, lb, mr)


@pytest.mark.parametrize("kernel", KERNELS)
def test_unscaled_rows_and_their_consumers(rng, kernel):
    """With scales=, the rows (in panels of the kernel's MR images on dnm's own kernel,
    row-major on the BLAS tiles) times their block scales are the scaled rows bit for bit,
    and the C consumers (gather, masked means, row copies into float32 queues, rows_mean of
    float32 rows in double) equal their NumPy twins bit for bit with any thread count, from
    float64 rows and (dnm's own kernel) float32 rows."""
    X, lab, C = data(rng, N=70, L=2000)
    k = CODE[kernel]
    lb, mr = _core.softmax_block(lab, k), _core.softmax_panel(lab, k)
    assert lb == (lab.shape[0] if kernel == "blas" else 1008 // 2)  # D = 512: 504 per block
    assert mr == {"blas": 1, "avx2": 16, "avx512": 32}[kernel]
    L = lab.shape[0]
    sc = np.full((70, -(-L // lb)), np.nan)
    R, a, _ = _core.softmax_rows(X, lab, 0.01, 2, None, C, None, True, kernel=k, scales=sc)
    assert R.shape == (-(-70 // mr) * mr, L)
    P, a0, _ = run(X, lab, kernel, C)
    np.testing.assert_array_equal(twin.scaled(R, sc, lb, mr), P)
    np.testing.assert_array_equal(a, a0)
    check_consumers(rng, R, sc, lb, mr, C, P)
    with pytest.raises(ValueError, match="scales"):
        _core.softmax_rows(X, lab, 0.01, 2, None, C, None, True, kernel=k,
                           scales=np.empty((70, 1 + sc.shape[1])))
    if kernel in OWN:
        R64, R32, sc, lb, mr = unscaled_pair(X, lab, kernel, C)
        np.testing.assert_array_equal(R32.astype(np.float64), R64)  # no lane below e^-80 here
        for off in range(3):  # the buffer at any 4-byte offset
            flat = np.full((-(-70 // mr) * mr) * L + 3, np.nan, np.float32)
            buf = flat[off:off + (flat.size - 3)].reshape(-1, L)
            _core.softmax_rows(X, lab, 0.01, 2, None, C, None, True, buf, kernel=k,
                               scales=sc, rows_f32=True)
            np.testing.assert_array_equal(twin.unpanel(buf, mr, 70), R32)
            assert np.isnan(flat[:off]).all() and np.isnan(flat[off + buf.size:]).all()
        check_consumers(rng, buf, sc, lb, mr, C, twin.scaled(buf, sc, lb, mr))
        with pytest.raises(ValueError, match="rows_f32"):
            _core.softmax_rows(X, lab, 0.01, 2, None, C, None, True, kernel=k, scales=sc,
                               rows_f32=True)
        with pytest.raises(ValueError, match="out: expected a writeable C-contiguous float32"):
            _core.softmax_rows(X, lab, 0.01, 2, None, C, None, True, np.empty(buf.shape),
                               kernel=k, scales=sc, rows_f32=True)
    else:  # float32 rows: dnm's own kernel only
        with pytest.raises(ValueError):
            _core.softmax_rows(X, lab, 0.01, 2, None, C, None, True,
                               np.empty((70, L), np.float32), kernel=k, scales=sc, rows_f32=True)


@pytest.mark.parametrize("mr", [1, 8, 16, 32])
def test_panel_consumers_any_layout(rng, mr):
    """The consumers of unscaled rows in panels of mr images (16: the AVX2 kernel's, 32:
    AVX-512's, 1: row-major), float32 and float64 rows, with blocks that cut the SIMD loops'
    groups of 8 columns (lb = 42, an offset of 37, a width that is no multiple of 8) and a
    short last panel: bit for bit the NumPy twins."""
    N, L, C = 70, 2003, 37
    for lb, dt in ((504, np.float32), (42, np.float32), (42, np.float64)):
        R = (rng.random((N, L)) * rng.choice([1.0, 1e-3, 1e-30], (N, L))).astype(dt)
        R[5] = R[6]  # a tie
        sc = rng.random((N, -(-L // lb))) + 0.5
        buf = twin.panelled(R, mr)
        assert np.array_equal(twin.unpanel(buf, mr, N), R)
        check_consumers(rng, buf, sc, lb, mr, C, twin.scaled(buf, sc, lb, mr))


def check_consumers(rng, R, sc, lb, mr, C, P):
    """The C consumers of the unscaled rows R (panels of mr) against NumPy on P."""
    L = R.shape[1]
    K = L - C
    sel = rng.permutation(K)[:300]
    flag = rng.integers(0, 3, 70).astype(np.uint8)
    src = rng.permutation(70)[:25]
    dst_row = rng.permutation(40)[:25]
    for nt in (1, 2, 3):
        g = np.empty((70, 300))
        _core.tta_gather(R, sc, lb, mr, C, sel, g, nt)
        np.testing.assert_array_equal(g, P[:, C:][:, sel])
        m1, m2 = np.full(K, np.nan), np.full(K, np.nan)
        _core.tta_masked_means(R, sc, lb, mr, C, flag, m1, m2, nt)
        for m, f in ((m1, 1), (m2, 2)):
            np.testing.assert_array_equal(m, twin.mean_in_order(P[flag == f, C:]))
            np.testing.assert_array_equal(m, P[flag == f, C:].mean(axis=0))  # as NumPy's
        m1[:] = 7.0
        _core.tta_masked_means(R, sc, lb, mr, C, np.zeros(70, np.uint8), m1, m2, nt)
        assert (m1 == 7.0).all()  # no rows: untouched
        for k in range(4):  # the queue row's start at every 4-byte offset (aligned stores)
            flat = np.full(40 * K + 3, -1.0, dtype=np.float32)
            dst = flat[k:k + 40 * K].reshape(40, K)
            _core.tta_copy_rows(R, sc, lb, mr, C, ((src, dst_row, dst),), nt)
            want = np.full((40, K), -1.0, dtype=np.float32)
            want[dst_row] = P[src, C:].astype(np.float32)  # rounded to nearest, as NumPy does
            np.testing.assert_array_equal(dst, want)
            assert (flat[:k] == -1).all() and (flat[k + 40 * K:] == -1).all()
        out = np.empty(K)
        _core.rows_mean(dst, 33, out, nt)
        np.testing.assert_array_equal(out, twin.mean_in_order(dst[:33].astype(np.float64)))
        np.testing.assert_array_equal(out, twin.qmean(dst[:33]))
        for k in range(2):  # float64 queues (queue_dtype="float64"): the double products
            flat = np.full(40 * K + 1, -1.0)
            dst64 = flat[k:k + 40 * K].reshape(40, K)
            _core.tta_copy_rows(R, sc, lb, mr, C, ((src, dst_row, dst64),), nt)
            want = np.full((40, K), -1.0)
            want[dst_row] = P[src, C:]
            np.testing.assert_array_equal(dst64, want)
            _core.rows_mean(dst64, 33, out, nt)
            np.testing.assert_array_equal(out, twin.mean_in_order(dst64[:33]))
        # two jobs in one pass (TANL's two queues), a float32 and a float64 one: as two calls
        a, b = np.full((40, K), -1.0, np.float32), np.full((30, K), -1.0)
        src2, dst2 = rng.permutation(70)[:30], rng.permutation(30)
        _core.tta_copy_rows(R, sc, lb, mr, C, ((src, dst_row, a), (src2, dst2, b)), nt)
        want_a = np.full((40, K), -1.0, np.float32)
        want_a[dst_row] = P[src, C:].astype(np.float32)
        want_b = np.full((30, K), -1.0)
        want_b[dst2] = P[src2, C:]
        np.testing.assert_array_equal(a, want_a)
        np.testing.assert_array_equal(b, want_b)
    with pytest.raises(ValueError, match="sel"):
        _core.tta_gather(R, sc, lb, mr, C, np.array([K]), np.empty((70, 1)), 1)
    with pytest.raises(ValueError, match="dst_row"):
        _core.tta_copy_rows(R, sc, lb, mr, C, ((src[:1], np.array([40]), dst),), 1)
    with pytest.raises(ValueError, match="dst: two jobs write the same array"):
        _core.tta_copy_rows(R, sc, lb, mr, C, ((src[:1], dst_row[:1], dst),
                                               (src[1:2], dst_row[1:2], dst)), 1)
    with pytest.raises(ValueError, match="jobs"):
        _core.tta_copy_rows(R, sc, lb, mr, C, [(src, dst_row, dst)], 1)
    with pytest.raises(ValueError, match="dst_row: a row appears twice"):
        _core.tta_copy_rows(R, sc, lb, mr, C, ((src[:2], np.array([3, 3]), dst),), 1)
    with pytest.raises(ValueError, match="dst: expected a C-contiguous float32 or float64"):
        _core.tta_copy_rows(R, sc, lb, mr, C, ((src, dst_row, np.empty((40, K), np.float16)),),
                            1)
    with pytest.raises(ValueError, match="a: expected a C-contiguous float32 or float64"):
        _core.rows_mean(np.empty((40, K), np.int64), 33, out, 1)
    with pytest.raises(ValueError, match="scales: shape does not match"):
        _core.tta_gather(R[:-1], sc, lb, mr, C, sel, g, 1)  # not the panels of 70 rows


@pytest.mark.parametrize("kernel", KERNELS)
def test_packed_labels_give_the_same_bits(rng, kernel):
    """Labels packed once (softmax_pack) give the bits of a call that packs them itself;
    repacking changed rows equals packing afresh; a packed copy for another kernel or of
    another size is refused; float64 labels, the BLAS tiles and repeated group columns pack
    nothing."""
    X, lab, C = data(rng, N=90, L=1500)
    L = lab.shape[0]
    idx = dnm.make_groups(L - C, 3, 0)
    assert _core.softmax_pack(lab.astype(np.float64), C, idx, CODE[kernel]) is None
    rep = np.arange(60).reshape(3, 20)
    rep[1, 0] = rep[0, 0]
    assert _core.softmax_pack(lab, C, rep, CODE[kernel]) is None
    got = _core.softmax_pack(lab, C, idx, CODE[kernel])
    if kernel == "blas":
        assert got is None
        with pytest.raises(ValueError):  # packed order: dnm's own kernel only
            _core.softmax_rows(X, lab, 0.01, 1, None, C, idx, True, kernel=CODE[kernel],
                               packed_rows=True)
        return
    for index in (idx, None):
        pk, kr = _core.softmax_pack(lab, C, index, CODE[kernel])
        assert kr == CODE[kernel] and pk.dtype == np.float32
        for rows in (True, False):
            want = run(X, lab, kernel, C, index, rows=rows)
            for nt in (1, 2):
                got = _core.softmax_rows(X, lab, 0.01, nt, None, C, index, rows,
                                         kernel=CODE[kernel], packed=pk, packed_kernel=kr)
                for x, y in zip(got, want):
                    if y is None:
                        assert x is None
                    else:
                        np.testing.assert_array_equal(x, y)
        # packed_rows: the rows in the packed order [ID; groups in order; the rest]
        rest = np.setdiff1d(np.arange(L - C), [] if index is None else index.ravel())
        col = np.concatenate([np.arange(C), C + (rest if index is None else
                                                 np.concatenate([index.ravel(), rest]))])
        want = run(X, lab, kernel, C, index)
        got = _core.softmax_rows(X, lab, 0.01, 2, None, C, index, True, kernel=CODE[kernel],
                                 packed=pk, packed_kernel=kr, packed_rows=True)
        np.testing.assert_array_equal(got[0], want[0][:, col])
        for x, y in zip(got[1:], want[1:]):
            if y is not None:
                np.testing.assert_array_equal(x, y)
        lab2 = lab.copy()
        ch = rng.permutation(L)[:37]
        lab2[ch] = normalize(rng.standard_normal((37, lab.shape[1]))).astype(np.float32)
        pk2 = pk.copy()
        _core.softmax_pack(lab2, C, index, kr, pk2, ch)
        np.testing.assert_array_equal(pk2, _core.softmax_pack(lab2, C, index, kr)[0])
        assert not np.array_equal(pk2, pk)
        with pytest.raises(ValueError, match="packed"):
            _core.softmax_rows(X, lab, 0.01, 1, None, C, index, True, kernel=CODE[kernel],
                               packed=pk[:-1].copy(), packed_kernel=kr)
        with pytest.raises(ValueError, match="packed"):
            _core.softmax_rows(X, lab, 0.01, 1, None, C, index, True, kernel=CODE[kernel],
                               packed=pk, packed_kernel=CODE["blas"])
        with pytest.raises(ValueError, match="rows"):
            _core.softmax_pack(lab2, C, index, kr, pk2, np.array([L]))


def test_streams_with_and_without_packed_labels(rng, monkeypatch):
    """AdaNeg (its proxies repacked as they change, also after a batch refused mid-way) and
    TANL give the same bits with their labels packed once as with every call packing its
    own."""
    from test_tta import problem
    t, n, u, z, X = problem(rng, C=30, M=300, K=900, D=64, N=200)
    f = lambda a: a.astype(np.float32)  # noqa: E731
    io, no = np.random.default_rng(3).permutation(30), np.random.default_rng(4).permutation(15)

    def streams():
        out = []
        for kw in (dict(memory_length=4), dict(memory_length=3, replacement="first")):
            a = dnm.AdaNeg(f(t), f(n), groups=4, temperature=0.03, **kw)
            s = [a.update(f(X[:32]))]
            real = tta._softmax
            calls = []

            def fail_second(*args, **kwa):  # the adaptive pass of the next batch fails
                calls.append(1)
                if len(calls) == 2:
                    raise KeyboardInterrupt
                return real(*args, **kwa)

            monkeypatch.setattr(tta, "_softmax", fail_second)
            with pytest.raises(KeyboardInterrupt):
                a.update(f(X[32:64]))
            monkeypatch.setattr(tta, "_softmax", real)
            s += [a.update(f(X[i:i + 32])) for i in range(64, len(X), 32)]  # another batch
            out.append(np.concatenate(s))
        out.append(dnm.tanl_score(f(X), f(t), f(u), f(z), batch_size=32, top=60,
                                  queue_length=25, id_order=io, noise_order=no))
        return out

    from dnm import tta
    for k in OWN:
        with _config.float_kernel(k):
            packed = streams()
            with monkeypatch.context() as m:
                m.setattr(tta._Packed, "kwargs", lambda self: {})
                plain = streams()
        for x, y in zip(packed, plain):
            np.testing.assert_array_equal(x, y)
    assert len(OWN) >= 1 or KERNELS == ["blas"]


@pytest.mark.parametrize("kernel", KERNELS)
def test_rows_written_at_any_alignment_and_large(rng, kernel):
    """The rows' bits do not depend on where the caller's buffer starts (every 8-byte
    offset); unscaled rows of a large tile (33,000 labels, 260 images: more than one tile,
    a short last panel) times their scales are the scaled rows."""
    X, lab, C = data(rng, N=100, L=2600)
    want = run(X, lab, kernel, C)[0]
    for k in range(4):
        flat = np.full(want.size + 4, np.nan)
        buf = flat[k:k + want.size].reshape(want.shape)
        P, _, _ = run(X, lab, kernel, C, out=buf)
        assert P is buf
        np.testing.assert_array_equal(buf, want)
    lab = normalize(rng.standard_normal((33000, 8))).astype(np.float32)
    X = rng.standard_normal((260, 8)).astype(np.float32)
    want = run(X, lab, kernel, 50)[0]
    lb, mr = _core.softmax_block(lab, CODE[kernel]), _core.softmax_panel(lab, CODE[kernel])
    sc = np.empty((260, -(-lab.shape[0] // lb)))
    R, _, _ = _core.softmax_rows(X, lab, 0.01, 2, None, 50, None, True, kernel=CODE[kernel],
                                 scales=sc)
    np.testing.assert_array_equal(twin.scaled(R, sc, lb, mr), want)
    if kernel in OWN:  # float32 panels over 32 MB from a 64-byte boundary: streamed stores
        from dnm.tta import _aligned_empty
        buf = _aligned_empty(R.shape, np.float32)
        assert buf.ctypes.data % 64 == 0 and buf.nbytes > 32e6
        sc32 = np.empty_like(sc)
        _core.softmax_rows(X, lab, 0.01, 2, None, 50, None, True, buf, kernel=CODE[kernel],
                           scales=sc32, rows_f32=True)
        np.testing.assert_array_equal(sc32, sc)
        np.testing.assert_array_equal(twin.unpanel(buf, mr, 260),
                                      twin.unpanel(R, mr, 260).astype(np.float32))


@pytest.mark.parametrize("kernel", KERNELS)
def test_selected_columns_taken_by_the_kernel(rng, kernel):
    """sel= / sel_out=: the activations of the selected columns, bit for bit the rows'
    values (P[:, sel]; with scales= the same product rows x scales), in every layout: no
    groups, groups with the rows in their own order, and (dnm's own kernel) packed order."""
    X, lab, C = data(rng, N=70, L=2000)
    L = lab.shape[0]
    sel = np.concatenate([rng.permutation(L)[:300], [0, L - 1, 5, 5]])  # repeats allowed
    idx = dnm.make_groups(L - C, 4, 0)
    k = CODE[kernel]
    lb, mr = _core.softmax_block(lab, k), _core.softmax_panel(lab, k)
    for nt in (1, 2):
        out = np.full((70, sel.size), np.nan)
        P, _, _ = _core.softmax_rows(X, lab, 0.01, nt, None, C, None, True, kernel=k,
                                     sel=sel, sel_out=out)
        np.testing.assert_array_equal(out, P[:, sel])
        sc = np.empty((70, -(-L // lb)))
        R, _, _ = _core.softmax_rows(X, lab, 0.01, nt, None, C, None, True, kernel=k,
                                     scales=sc, sel=sel, sel_out=out)
        np.testing.assert_array_equal(out, twin.scaled(R, sc, lb, mr)[:, sel])
        if kernel != "blas":  # float32 rows: the values they hold
            R32, _, _ = _core.softmax_rows(X, lab, 0.01, nt, None, C, None, True,
                                           np.empty(R.shape, np.float32), kernel=k, scales=sc,
                                           sel=sel, sel_out=out, rows_f32=True)
            np.testing.assert_array_equal(out, twin.scaled(R32, sc, lb, mr)[:, sel])
        P, _, _ = _core.softmax_rows(X, lab, 0.01, nt, None, C, idx, True, kernel=k,
                                     sel=sel, sel_out=out)
        np.testing.assert_array_equal(out, P[:, sel])
        if kernel != "blas":
            pk, kr = _core.softmax_pack(lab, C, idx, k)
            P, _, _ = _core.softmax_rows(X, lab, 0.01, nt, None, C, idx, True, kernel=k,
                                         packed=pk, packed_kernel=kr, packed_rows=True,
                                         sel=sel, sel_out=out)
            np.testing.assert_array_equal(out, P[:, sel])
    with pytest.raises(ValueError, match="sel"):
        _core.softmax_rows(X, lab, 0.01, 1, None, C, None, True, kernel=k, sel=np.array([L]),
                           sel_out=np.empty((70, 1)))
    with pytest.raises(ValueError, match="sel_out"):
        _core.softmax_rows(X, lab, 0.01, 1, None, C, None, True, kernel=k, sel=sel,
                           sel_out=np.empty((70, 3)))


def test_rows_mean_resumes_from_checkpoints(rng):
    """rows_mean with running-sum checkpoints: resuming after rows changed from row m on,
    with the checkpoints before m, gives the bits of summing from row 0 in double (NumPy's
    mean of the float32 rows as float64)."""
    a = rng.random((150, 1100)).astype(np.float32)
    ck = np.full((150 // 32, 1100), np.nan)
    out = np.empty(1100)
    for nt in (1, 2):
        _core.rows_mean(a, 150, out, nt, ck, 32, 0)
        np.testing.assert_array_equal(out, a.astype(np.float64).mean(axis=0))
        # the running sum itself, in double
        np.testing.assert_array_equal(ck[2], a[:96].astype(np.float64).sum(axis=0))
        for m, n in ((100, 150), (64, 150), (5, 150), (149, 150), (70, 120)):
            a[m:] = rng.random((150 - m, 1100)) ** 3
            _core.rows_mean(a, n, out, nt, ck, 32, m // 32)
            np.testing.assert_array_equal(out, twin.qmean(a[:n]))
            np.testing.assert_array_equal(out, twin.mean_in_order(a[:n].astype(np.float64)))
    with pytest.raises(ValueError, match="ckpt"):
        _core.rows_mean(a, 150, out, 1, np.empty((2, 1100)), 32, 0)


def test_tanl_queue_checkpoints_give_the_same_bits(rng, monkeypatch, tmp_path):
    """TANL's queue means resumed from running-sum checkpoints (queues that fill and wrap
    around, also saved and restored mid-stream) give the bits of summing every row."""
    from dnm import tta
    from test_tta import problem
    t, n, u, z, X = problem(rng, C=30, M=300, K=900, D=64, N=900)
    io, no = np.random.default_rng(3).permutation(30), np.random.default_rng(4).permutation(15)
    kw = dict(batch_size=24, top=60, queue_length=70, id_order=io, noise_order=no)
    with_ck = dnm.tanl_score(X, t, u, z, **kw)
    obj = dnm.TANL(t, u, z, top=60, queue_length=70, id_order=io, noise_order=no)
    assert obj._qpos._ck is not None
    with monkeypatch.context() as m:
        m.setattr(tta, "_EVERY", 10 ** 9)
        plain = dnm.tanl_score(X, t, u, z, **kw)
        assert dnm.TANL(t, u, z, top=60, queue_length=70)._qpos._ck is None
    np.testing.assert_array_equal(with_ck, plain)
    np.testing.assert_allclose(with_ck, twin.tanl(X, t, u, z, io, no, batch_size=24, top=60,
                                                  queue_length=70), rtol=0, atol=1e-12)
    out = [obj.update(X[i:i + 24]) for i in range(0, 480, 24)]
    assert obj._qpos.start or obj._qneg.start  # a queue wrapped around
    path = tmp_path / "tanl.npz"
    obj.save(path)
    back = dnm.TANL.load(path)
    out += [back.update(X[i:i + 24]) for i in range(480, 900, 24)]
    np.testing.assert_array_equal(np.concatenate(out), with_ck)


def test_cached_labels_and_entropies_match_numpy(rng):
    """tta_cached (AdaNeg's cached images): the argmax (lowest index on ties) equals NumPy's
    bit for bit; the entropies (dnm's log polynomial, sums in 8 lanes) agree with NumPy's to a
    few ulps, over activations from 1e-300 to 1, with and without a permuted segment, with any
    thread count; tied rows give tied entropies."""
    R = rng.random((60, 3000)) ** 40  # many tiny values
    R[:, 7] = 0.0
    R[5, 200:260] = R[5, 200:260].max() * 2  # a tied maximum: the lowest index wins
    R[9] = R[8]
    ri = np.array([0, 5, 8, 9, 13, 59, 5], dtype=np.int64)
    pos = rng.permutation(2800).astype(np.int64)[:2500]
    for segment, off, n in ((None, 150, 2500), (pos, 150, 2500), (None, 0, 3000)):
        Q = R[ri][:, off + (np.arange(n) if segment is None else segment)]
        for mass in (None, Q.sum(axis=1) * 1.5):
            for nt in (1, 2):
                lab, H = np.empty(ri.size, np.int64), np.empty(ri.size)
                _core.tta_cached(R, off, n, segment, ri, mass, True, lab, H, nt)
                np.testing.assert_array_equal(lab, Q.argmax(axis=1))
                m = Q.sum(axis=1) if mass is None else mass
                want = [twin.entropy_of(q, mm) for q, mm in zip(Q, m)]
                np.testing.assert_allclose(H, want, rtol=2e-14, atol=0)
                assert H[2] == H[3]  # rows 8 and 9 are the same
                if segment is None and off == 150:
                    assert lab[1] == 50  # the first of the tied maxima
    v = np.exp(rng.uniform(-690, 0, (4000, 1)))  # the log over a wide range: p alone
    lab, H = np.empty(4000, np.int64), np.empty(4000)
    _core.tta_cached(v, 0, 1, None, np.arange(4000), np.ones(4000), True, lab, H, 2)
    np.testing.assert_allclose(H, -v[:, 0] * np.log(v[:, 0] + 1e-8), rtol=4e-16, atol=0)
    with pytest.raises(ValueError, match="row_index"):
        _core.tta_cached(R, 0, 10, None, np.array([60]), None, True, lab[:1], H[:1], 1)
