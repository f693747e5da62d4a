"""AdaNeg and TANL (dnm.tta) against their float64 NumPy twins (tests/slow/tta.py), and the
promises of the streaming objects: reset, batches = functional form, thread counts, save and
restore, refused input."""
import numpy as np
import pytest

import dnm
from dnm import _core, tta
from slow import tta as twin


def normalize(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def problem(rng, C=16, M=48, K=120, D=24, N=150, spread=0.6):
    """ID labels, negatives, a corpus (negatives first), noise, and a stream that mixes
    images near ID labels (ID-like) with images near negatives or nowhere (OOD-like)."""
    t = normalize(rng.normal(size=(C, D)))
    n = normalize(rng.normal(size=(M, D)))
    u = np.concatenate([n, normalize(rng.normal(size=(K - M, D)))])
    z = normalize(rng.normal(size=(15, D)) + 2.0)
    n_id = N // 2
    X = np.concatenate([t[rng.integers(0, C, n_id)] + spread * rng.normal(size=(n_id, D)) / np.sqrt(D) * 3,
                        n[rng.integers(0, M, N - n_id)] + spread * rng.normal(size=(N - n_id, D)) / np.sqrt(D) * 3])
    return t, n, u, z, X[rng.permutation(N)]


@pytest.fixture
def prob(rng):
    return problem(rng)


def adaneg_pair(X, t, n, bs, **kw):
    idx = dnm.make_groups(n.shape[0], kw.pop("groups", 4), 0)
    a = dnm.adaneg_score(X, t, n, batch_size=bs, groups=idx, **kw)
    b = twin.adaneg(X, t, n, idx, batch_size=bs, **kw)
    return a, b


ADANEG_CASES = [
    dict(),
    dict(replacement="first"),
    dict(memory_length=3),
    dict(memory_length=3, replacement="first"),
    dict(memory_length=2, temperature=0.05),
    dict(sample_adaptive=True),
    dict(sample_adaptive=True, memory_length=3, beta=5.5),
    dict(output="adaptive", memory_length=4),
    dict(output="vanilla"),
    dict(memory_length=1),
    dict(groups=1, threshold=0.4, gap=0.3, weight=0.5),
]


@pytest.mark.parametrize("kw", ADANEG_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "defaults")
def test_adaneg_matches_twin(prob, kw):
    t, n, u, z, X = prob
    a, b = adaneg_pair(X, t, n, 32, temperature=kw.pop("temperature", 0.03), **kw)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_adaneg_memory_really_replaces(prob):
    """The cases above exercise full lists: the two rules keep different images."""
    t, n, u, z, X = prob
    objs = {r: dnm.AdaNeg(t, n, groups=4, memory_length=3, replacement=r, temperature=0.03)
            for r in ("entropy", "first")}
    for o in objs.values():
        for lo in range(0, len(X), 32):
            o.update(X[lo:lo + 32])
    e, f = objs["entropy"], objs["first"]
    assert (e.counts_ == 2).sum() >= 5 and (e.counts_[t.shape[0]:] > 0).any()
    np.testing.assert_array_equal(e.counts_, f.counts_)
    assert not np.array_equal(e.proxies(), f.proxies())
    assert np.ptp(e.entropies_[e.counts_ == 2]) > 0.1  # varied entropies, not all tied


def test_adaneg_memory_never_allocates_past_its_capacity(rng):
    """The cached images are stored once, grown by doubling as slots fill, never beyond the
    bank's (C + M) x (memory_length - 1) images, however long the stream."""
    t, n, u, z, X = problem(rng, N=400)
    obj = dnm.AdaNeg(t[:3], n[:9], groups=3, memory_length=4, temperature=0.03)
    cap = (3 + 9) * 3
    for rep in range(6):
        for lo in range(0, len(X), 50):
            obj.update(X[lo:lo + 50])
        assert obj._pool_n <= obj._pool.shape[0] <= cap
    assert obj._pool_n == cap == obj._pool.shape[0]  # full, and not one row more


def test_adaneg_packs_at_construction_and_reset(rng):
    """The labels are packed when the object is made, and reset() hands the proxies a copy
    of that packing (the proxies equal the texts then): the first batch packs nothing whole,
    and the copy is what packing the proxies gives."""
    t, n, u, z, X = problem(rng, N=40)
    t, n = t.astype(np.float32), n.astype(np.float32)
    real = tta._core

    class Spy:
        def __getattr__(self, name):
            if name == "softmax_pack":
                return lambda *a, **k: calls.append(len(a)) or real.softmax_pack(*a, **k)
            return getattr(real, name)

    for reset in (False, True):
        obj = dnm.AdaNeg(t, n, groups=4, memory_length=3, temperature=0.03)
        if reset:
            obj.update(X[:20])
            obj.reset()
        packs = not obj._packed_text.kwargs() == {}  # (the BLAS tiles pack nothing)
        if packs:
            fresh = _core.softmax_pack(obj._proxies, obj.n_id_, obj.index,
                                       dnm._config.kernel())[0]
            np.testing.assert_array_equal(obj._packed_proxies._packed, fresh)
            assert obj._packed_proxies._packed is not obj._packed_text._packed  # a copy
        calls = []
        tta._core = Spy()
        try:
            obj.update(X[20:])
        finally:
            tta._core = real
        assert all(c >= 6 for c in calls)  # only repacks of changed proxy rows
        assert not packs or calls  # (and there were some)


def test_adaneg_batch_size_one_and_short_last_batch(rng):
    t, n, u, z, X = problem(rng, N=37)
    for bs in (1, 10):  # 37 = 3 x 10 + 7
        a, b = adaneg_pair(X, t, n, bs, memory_length=3, temperature=0.03)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_adaneg_memory_length_one_is_scaled_neglabel(prob):
    t, n, u, z, X = prob
    idx = dnm.make_groups(n.shape[0], 4, 0)
    for dt, tol in ((np.float64, 1e-13), (np.float32, 2e-6)):
        a = dnm.adaneg_score(X.astype(dt), t.astype(dt), n.astype(dt), batch_size=32,
                             groups=idx, memory_length=1, weight=0.25)
        ref = 1.25 * dnm.neglabel_score(X.astype(dt), t.astype(dt), n.astype(dt), groups=idx)
        np.testing.assert_allclose(a, ref, rtol=0, atol=tol)


def test_adaneg_float32_close_to_twin(prob):
    t, n, u, z, X = prob
    idx = dnm.make_groups(n.shape[0], 4, 0)
    f = lambda a: a.astype(np.float32)  # noqa: E731
    a = dnm.adaneg_score(f(X), f(t), f(n), batch_size=32, groups=idx, memory_length=4,
                         temperature=0.03)
    b = twin.adaneg(f(X), f(t), f(n), idx, batch_size=32, memory_length=4, temperature=0.03)
    assert np.mean(np.abs(a - b) < 1e-4) > 0.97


def test_adaneg_real_geometry(clip_data):
    """ImageNet class texts as ID labels, LVIS texts as negatives, images = texts + noise at
    CLIP-like cosines (about 0.3 to their own text)."""
    rng = np.random.default_rng(7)
    t = clip_data["imagenet"][:60]
    n = clip_data["lvis"][:240]
    D = t.shape[1]
    tn = normalize(t.astype(np.float64))
    X = np.concatenate([tn[rng.integers(0, 60, 70)], normalize(clip_data["coco"][:60].astype(np.float64))[rng.integers(0, 60, 50)]])
    X = X + rng.normal(size=X.shape) * 2.5 / np.sqrt(D)
    X = X[rng.permutation(len(X))]
    for kw in (dict(), dict(memory_length=3), dict(sample_adaptive=True, memory_length=3)):
        a, b = adaneg_pair(X, t.astype(np.float64), n.astype(np.float64), 32, groups=5, **kw)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def tanl_pair(X, t, u, z, bs, **kw):
    rng = np.random.default_rng(3)
    io, no = rng.permutation(t.shape[0]), rng.permutation(15)
    kw.setdefault("queue_length", 25)
    kw.setdefault("top", 40)
    a = dnm.tanl_score(X, t, u, z, batch_size=bs, id_order=io, noise_order=no, **kw)
    b = twin.tanl(X, t, u, z, io, no, batch_size=bs, **kw)
    return a, b


TANL_CASES = [
    dict(step=0), dict(step=1), dict(step=2), dict(step=7, top=40), dict(step=50, top=40),
    dict(top=500, step=3), dict(top=120, step=1), dict(alpha=0.3), dict(gap=0.2),
    dict(score_queue_length=40), dict(queue_length=5), dict(queue_length=400),
    dict(gap=1.0),  # no image is ever ID-like or OOD-like
    dict(queue_dtype="float64"), dict(queue_dtype="float64", step=2, alpha=0.3),
]


@pytest.mark.parametrize("kw", TANL_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_tanl_matches_twin(prob, kw):
    t, n, u, z, X = prob
    a, b = tanl_pair(X, t, u, z, 32, **kw)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_tanl_batches_exercise_both_sets(prob):
    """The data above make ID-like and OOD-like sets of every kind: some batches with both,
    and with batch size 1 batches where one of them is empty."""
    t, n, u, z, X = prob
    obj = dnm.TANL(t, u, z, top=40, queue_length=25)
    seen = set()
    for i in range(len(X)):
        before = (obj._qpos.n, obj._qpos.start, obj._qneg.n, obj._qneg.start)
        obj.update(X[i:i + 1])
        after = (obj._qpos.n, obj._qpos.start, obj._qneg.n, obj._qneg.start)
        seen.add((before[:2] != after[:2], before[2:] != after[2:]))
    assert (True, False) in seen and (False, True) in seen and (False, False) in seen


def test_tanl_batch_size_one_and_short_last_batch(rng):
    t, n, u, z, X = problem(rng, N=45)
    for bs in (1, 16):
        a, b = tanl_pair(X, t, u, z, bs, step=2)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_tanl_real_geometry(clip_data):
    rng = np.random.default_rng(11)
    t = clip_data["imagenet"][:50].astype(np.float64)
    u = clip_data["lvis"][:400].astype(np.float64)
    z = normalize(rng.normal(size=(15, t.shape[1])) + 1.5)
    D = t.shape[1]
    X = np.concatenate([normalize(t)[rng.integers(0, 50, 60)],
                        normalize(clip_data["objects365"][:80].astype(np.float64))[rng.integers(0, 80, 60)]])
    X = (X + rng.normal(size=X.shape) * 2.5 / np.sqrt(D))[rng.permutation(120)]
    for kw in (dict(top=100, step=1), dict(top=100, step=0), dict(top=1000, step=2)):
        a, b = tanl_pair(X, t, u, z, 32, **kw)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def tie_heavy(rng, n, D=16, nnz=4):
    """Rows with nnz entries +-1 (norm 2, so exact after normalising) and many duplicates:
    their dot products are exact multiples of 1/4, hence exactly tied logits everywhere."""
    base = np.zeros((max(3, n // 3), D))
    for r in base:
        r[rng.choice(D, nnz, replace=False)] = rng.choice([-1.0, 1.0], nnz)
    return base[rng.integers(0, base.shape[0], n)]


def test_tie_heavy_inputs(rng):
    t, n = tie_heavy(rng, 12), tie_heavy(rng, 30)
    u = np.concatenate([n, tie_heavy(rng, 60)])
    z = tie_heavy(rng, 15)
    X = np.concatenate([t[rng.integers(0, 12, 40)], n[rng.integers(0, 30, 40)], tie_heavy(rng, 20)])
    X = X[rng.permutation(len(X))]
    for kw in (dict(memory_length=3, temperature=0.2), dict(temperature=0.2, replacement="first")):
        a, b = adaneg_pair(X, t, n, 16, groups=3, **kw)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    for kw in (dict(step=1, top=25, temperature=0.2), dict(step=0, top=25, temperature=0.2)):
        a, b = tanl_pair(X, t, u, z, 16, **kw)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_top_and_aas_helpers():
    a = np.array([0.5, 0.7, 0.7, 0.1, 0.7, 0.5])
    np.testing.assert_array_equal(tta._top(a, 4), [1, 2, 4, 0])
    np.testing.assert_array_equal(tta._top(a, 10), [1, 2, 4, 0, 5, 3])
    np.testing.assert_array_equal(tta._top(a, 4), twin.top(a, 4))
    rng = np.random.default_rng(0)
    A, R = rng.random(5), rng.random((5, 9))
    for step, beta in ((0, 9), (1, 9), (2, 9), (4, 30), (50, 9)):
        want = [twin.aas(np.log([A[i]]), np.log(R[i]), beta, step) for i in range(5)]
        np.testing.assert_allclose(tta._aas(A, R, beta, step), want, rtol=1e-13)
    # the C version (csrc/tta.h): rows on threads, the same bits with any thread count; the
    # prefix sums are NumPy's cumsum; the terms' mean within the bound of m sequential adds
    A, R = rng.random(300), rng.random((300, 1000))
    R[:, 500:] = R[:, :1]  # tie-heavy
    for step, beta in ((1, 1000), (2, 1000), (3, 1000), (0, 1000), (7, 5000), (2000, 1000)):
        got = tta._aas(A, R, beta, step, 1)
        np.testing.assert_array_equal(tta._aas(A, R, beta, step, 2), got)
        np.testing.assert_array_equal(tta._aas(A, R, beta, step, 3), got)
        cs = np.cumsum(R, axis=1)
        P = np.minimum(np.arange(1, -(-beta // step) + 1) * step, 1000) if step else [1000]
        want = (A[:, None] / (A[:, None] + cs[:, np.asarray(P) - 1])).mean(axis=1)
        np.testing.assert_allclose(got, want, rtol=1.1e-16 * len(P) + 1e-15, atol=0)
    with pytest.raises(ValueError, match="tta_aas"):
        _core.tta_aas(A, R, 0, 1, np.empty(300), 1)


def test_otsu_matches_twin(rng):
    for s in (rng.random(300), np.r_[rng.random(50) * 0.3, 0.7 + rng.random(80) * 0.3],
              np.full(20, 0.5), np.array([0.3]), np.round(rng.random(100), 1)):
        assert tta._otsu(s) == twin.otsu(s)
    # dnm sorts once and uses prefix sums; the twin sums each class: the same thresholds on
    # mixtures, quantised scores, narrow and skewed ones, at the score queue's length too
    for k in range(60):
        n = int(rng.integers(2, 3000)) if k else 20000
        s = (rng.random(n), np.r_[rng.beta(2, 8, n // 2), rng.beta(8, 2, n - n // 2)],
             np.round(rng.random(n), 1 + k % 3), np.clip(rng.normal(0.5, 0.01, n), 0, 1),
             rng.random(n) ** 3)[k % 5]
        assert tta._otsu(s) == twin.otsu(s)
    assert tta._otsu(np.full(10, 0.999)) == 0.5  # every threshold leaves one class empty


# ---- promises of the streaming objects -------------------------------------------------------

def feed(obj, X, bs):
    return np.concatenate([obj.update(X[i:i + bs]) for i in range(0, len(X), bs)])


def objects(prob, dtype=np.float32):
    t, n, u, z, X = (a.astype(dtype) for a in prob)
    return (lambda **kw: dnm.AdaNeg(t, n, groups=4, memory_length=3, temperature=0.03, **kw),
            lambda **kw: dnm.TANL(t, u, z, top=40, queue_length=25, **kw), X)


@pytest.mark.parametrize("which", [0, 1])
def test_reset_reproduces_and_batches_equal_functional(prob, which):
    make, X = objects(prob)[which], objects(prob)[2]
    obj = make()
    first = feed(obj, X, 32)
    obj.reset()
    np.testing.assert_array_equal(feed(obj, X, 32), first)
    t, n, u, z = (a.astype(np.float32) for a in prob[:4])
    if which == 0:
        f = dnm.adaneg_score(X, t, n, batch_size=32, groups=4, memory_length=3, temperature=0.03)
    else:
        f = dnm.tanl_score(X, t, u, z, batch_size=32, top=40, queue_length=25)
    np.testing.assert_array_equal(f, first)


@pytest.mark.parametrize("which", [0, 1])
def test_bitwise_across_thread_counts(rng, which):
    prob = problem(rng, C=40, M=400, K=2000, D=64, N=600)
    make, X = objects(prob)[which], objects(prob)[2]
    runs = [feed(make(num_threads=nt), X, 256) for nt in (1, 2, 3)]
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])


@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_restore_continues_bitwise(prob, tmp_path, which, dtype):
    make, X = objects(prob, dtype)[which], objects(prob, dtype)[2]
    whole = feed(make(), X, 32)
    obj = make()
    head = feed(obj, X[:64], 32)
    path = obj.save(tmp_path / "state.npz")
    cls = dnm.AdaNeg if which == 0 else dnm.TANL
    back = cls.load(path)
    assert back.n_images_seen_ == 64 and back.n_batches_seen_ == 2
    tail = feed(back, X[64:], 32)
    np.testing.assert_array_equal(np.concatenate([head, tail]), whole)


def _rewrite(src, dst, version, params=None, **arrays):
    """The state file src written again as format_version `version`, members (and, given,
    the params) replaced."""
    import json

    from dnm import _npzfile
    with np.load(src) as f:  # (no pickles: allow_pickle is off)
        meta = json.loads(f["metadata"].tobytes().decode())
        old = {k: f[k] for k in f.files if k != "metadata"}
    meta = {k: v for k, v in meta.items() if k not in ("arrays", "sha256")}
    meta["format_version"] = version
    if params is not None:
        meta["params"] = params
    return _npzfile.write(dst, meta, {**old, **arrays}, prefix=".test-")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanl_state_files_queue_dtypes_and_version_1(prob, tmp_path, dtype):
    """TANL saves its queues in its queue_dtype (float32 by default, format_version 2) and
    restores them with the same bits; a version-1 file (before queue_dtype: float64 queues)
    loads as queue_dtype="float64" and continues bitwise as the uninterrupted float64 stream.
    Queues of the other dtype, queue_dtype in a version-1 file and queue values outside
    [0, 1] are refused."""
    import json
    make, X = objects(prob, dtype)[1], objects(prob, dtype)[2]
    for qd in ("float32", "float64"):
        whole = feed(make(queue_dtype=qd), X, 32)
        obj = make(queue_dtype=qd)
        head = feed(obj, X[:64], 32)
        path = obj.save(tmp_path / f"v2-{qd}.npz")
        with np.load(path) as f:
            meta = json.loads(f["metadata"].tobytes().decode())
        assert meta["format_version"] == tta.FORMAT_VERSION == 2
        assert meta["params"]["queue_dtype"] == qd
        want = "<f4" if qd == "float32" else "<f8"
        assert meta["arrays"]["positive_queue"]["dtype"] == want
        assert meta["arrays"]["negative_queue"]["dtype"] == want
        back = dnm.TANL.load(path)
        assert back.queue_dtype == qd and back._qpos.buf.dtype == np.dtype(want)
        np.testing.assert_array_equal(np.concatenate([head, feed(back, X[64:], 32)]), whole)
    # a version-1 file: float64 queues, no queue_dtype parameter
    path64 = tmp_path / "v2-float64.npz"
    with np.load(path64) as f:
        meta = json.loads(f["metadata"].tobytes().decode())
        qpos, qneg = f["positive_queue"], f["negative_queue"]
    v1 = _rewrite(path64, tmp_path / "v1.npz", 1, params={k: v for k, v in meta["params"].items()
                                                          if k != "queue_dtype"})
    back = dnm.TANL.load(v1)
    assert back.queue_dtype == "float64"
    np.testing.assert_array_equal(back._qpos.buf[:back._qpos.n], qpos)
    obj = make(queue_dtype="float64")
    whole = feed(obj, X, 32)
    np.testing.assert_array_equal(np.concatenate([feed(make(queue_dtype="float64"), X[:64], 32),
                                                  feed(back, X[64:], 32)]), whole)
    path32 = tmp_path / "v2-float32.npz"
    with np.load(path32) as f:
        q32 = f["negative_queue"]
    for bad, what in ((_rewrite(path32, tmp_path / "b1.npz", 2, positive_queue=qpos), "positive_queue"),
                      (_rewrite(path64, tmp_path / "b2.npz", 1), "queue_dtype"),
                      (_rewrite(path32, tmp_path / "b3.npz", 2, negative_queue=q32 * 2 + 0.5),
                       "negative_queue")):
        with pytest.raises(tta.StateFileError, match=f"inconsistent state file: {what}"):
            dnm.TANL.load(bad)
    with pytest.raises(ValueError, match="queue_dtype: expected 'float32' or 'float64'"):
        make(queue_dtype="float16")
    # AdaNeg's files did not change: a version-1 one loads as it is
    a = objects(prob, dtype)[0]()
    feed(a, X[:64], 32)
    a1 = _rewrite(a.save(tmp_path / "a2.npz"), tmp_path / "a1.npz", 1)
    np.testing.assert_array_equal(feed(dnm.AdaNeg.load(a1), X[64:], 32), feed(a, X[64:], 32))


def test_state_file_refuses_tampering(prob, tmp_path):
    make = objects(prob)[0]
    obj = make()
    obj.update(objects(prob)[2][:32])
    path = tmp_path / "a.npz"
    obj.save(path)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad = tmp_path / "b.npz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(tta.StateFileError):
        dnm.AdaNeg.load(bad)
    with pytest.raises(tta.StateFileError, match="dnm.TANL"):
        dnm.TANL.load(path)
    (tmp_path / "c.npz").write_bytes(b"not a zip")
    with pytest.raises(tta.StateFileError):
        dnm.AdaNeg.load(tmp_path / "c.npz")


def test_bad_input(prob):
    t, n, u, z, X = prob
    with pytest.raises(ValueError, match="memory_length"):
        dnm.AdaNeg(t, n, memory_length=0)
    with pytest.raises(TypeError, match="step"):
        dnm.TANL(t, u, z, step=1.5)
    with pytest.raises(ValueError, match="step"):
        dnm.TANL(t, u, z, step=-1)
    with pytest.raises(ValueError, match="id_order"):
        dnm.TANL(t, u, z, id_order=np.zeros(t.shape[0], dtype=int))
    with pytest.raises(ValueError, match="noise_order"):
        dnm.TANL(t, u, z, noise_order=np.arange(14))
    with pytest.raises(ValueError, match="noise"):
        dnm.TANL(t, u, z[:14])
    with pytest.raises(ValueError, match="replacement"):
        dnm.AdaNeg(t, n, replacement="lru")
    with pytest.raises(ValueError, match="negatives"):
        dnm.AdaNeg(t, n[:, :5])
    bad = n.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="negatives: row 3"):
        dnm.AdaNeg(t, bad)
    Xn = X.copy()
    Xn[40, 0] = np.nan
    with pytest.raises(ValueError, match="stream: row 40 contains NaN"):
        dnm.adaneg_score(Xn, t, n, batch_size=32)
    with pytest.raises(ValueError, match="stream: row 40 contains NaN"):
        dnm.tanl_score(Xn, t, u, z, batch_size=16, top=20)


@pytest.mark.parametrize("which", [0, 1])
def test_refused_batch_leaves_state_unchanged(prob, which):
    make, X = objects(prob)[which], objects(prob)[2]
    ref = feed(make(), X, 32)
    obj = make()
    out = [obj.update(X[:32])]
    bad = X[32:64].copy()
    bad[5] = np.inf
    with pytest.raises(ValueError, match="batch: row 5"):
        obj.update(bad)
    with pytest.raises(ValueError, match="features"):
        obj.update(X[32:64, :-1])
    with pytest.raises(ValueError, match="2-D"):
        obj.update(X[32])
    zero = X[32:64].copy()
    zero[0] = 0
    with pytest.raises(ValueError, match="zero norm"):
        obj.update(zero)
    out += [obj.update(X[i:i + 32]) for i in range(32, len(X), 32)]
    np.testing.assert_array_equal(np.concatenate(out), ref)


def test_noise_images():
    a = tta.noise_images(seed=3)
    assert a.shape == (15, 3, 224, 224) and a.dtype == np.float32
    np.testing.assert_array_equal(a, tta.noise_images(seed=3))
    assert not np.array_equal(a, tta.noise_images(seed=4))
    assert a.min() >= 0 and a.max() <= 1
    for k in (0, 2, 3):  # min-max scaled over each group of three
        g = a[3 * k:3 * k + 3]
        assert g.min() == 0 and g.max() == 1
    assert a[3:6].max() < 1  # uniform [0, 1)
    assert set(np.unique(a[12:15])) == {0.0, 1.0}
    assert len(np.unique(a[6:9])) < 40  # Poisson: a few integer levels
    with pytest.raises(TypeError, match="seed"):
        tta.noise_images(seed=1.5)


def test_evaluation_stream_roundtrip(rng):
    A, B = rng.normal(size=(30, 8)), rng.normal(size=(20, 8))
    stream, order, n_id = tta.evaluation_stream(A, B, seed=5)
    assert n_id == 30 and not np.array_equal(order, np.arange(50))
    s = stream[:, 0] * 10  # any per-image score
    ids, oods = tta.split_scores(s, order, n_id)
    np.testing.assert_array_equal(ids, A[:, 0] * 10)
    np.testing.assert_array_equal(oods, B[:, 0] * 10)
    with pytest.raises(ValueError, match="order"):
        tta.split_scores(s, np.zeros(50, dtype=int), n_id)


def test_adaneg_entropy_ties_in_full_lists(rng):
    """Images that differ only in the signs of components no label has give the same logits,
    hence exactly tied entropies but different proxies: a full list keeps its images on
    H == max (strictly lower only) and replaces the last of its tied maximal slots.  All
    values are dyadic (rows of norm 2 or 4), so every product is exact in any summation order."""
    D = 16
    t = np.zeros((4, D))
    for c, dims in enumerate(((0, 1, 2, 3), (0, 1, 4, 5), (6, 7, 8, 9), (8, 9, 10, 11))):
        t[c, list(dims)] = 1.0
    n = np.zeros((20, D))
    for r in n:
        r[6 + rng.choice(6, 4, replace=False)] = rng.choice([-1.0, 1.0], 4)
    soft = np.zeros(D)
    soft[[0, 1, 2, 4]] = 1.0   # as close to label 1 as to label 0: high entropy
    sharp = np.zeros(D)
    sharp[[0, 1, 2, 3]] = 1.0  # label 0: low entropy
    rows = []
    for base, signs in ((soft, [1, 1, 1]), (soft, [-1, 1, 1]), (soft, [1, -1, 1]),
                        (sharp, [1, 1, -1]), (soft, [-1, -1, 1]), (sharp, [-1, -1, 1]),
                        (sharp, [1, 1, 1]), (sharp, [1, -1, -1]), (soft, [1, 1, -1])):
        x = base.copy()
        x[12:15] = 2.0 * np.array(signs)  # |x|^2 = 4 + 12 = 16
        rows.append(x)
    X = np.array(rows)
    for bs in (1, 3, 4):
        for kw in (dict(output="adaptive"), dict(output="adaptive", replacement="first")):
            a, ref = adaneg_pair(X, t, n, bs, groups=2, memory_length=3, temperature=0.05, **kw)
            np.testing.assert_allclose(a, ref, rtol=0, atol=1e-12)
    obj = dnm.AdaNeg(t, n, groups=2, memory_length=3, temperature=0.05)
    H = []
    for i in range(len(X)):
        obj.update(X[i:i + 1])
        H.append(obj.entropies_[0].copy())
    assert H[1][0] == H[1][1] > 0.5  # two tied soft images fill the list
    assert H[3][0] > H[3][1]         # the sharp one replaced the last of the tied slots
