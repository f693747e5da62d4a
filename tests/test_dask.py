"""dnm.dask.score_samples: lazy chunked scoring, the detector shipped once, and on a
2-process distributed.LocalCluster results bitwise equal to one process."""
import functools

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

import dnm  # noqa: E402
import dnm.dask as dd  # noqa: E402

D = 48


def test_dnm_dask_imports_the_real_dask():
    import sys
    assert dd.dask is sys.modules["dask"] and dd.__name__ == "dnm.dask"


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    X = rng.normal(size=(2000, D))
    P = rng.normal(size=(40, D)).astype(np.float32)
    M = rng.normal(size=(600, D)).astype(np.float32)
    return X, P, M


@pytest.fixture(scope="module")
def score_fn(data):
    _, P, M = data
    return functools.partial(dnm.dnm_score, id_labels=P, negatives=M, groups=20, tau=0.9)


class Holder:
    """A stand-in detector (module level so that worker processes can unpickle it)."""

    def __init__(self, fn):
        self.fn = fn

    def score_samples(self, X):
        return self.fn(X)


@pytest.fixture(scope="module")
def detector(data):
    Det = getattr(dnm, "NegativeLabelDetector", None)
    if Det is None:
        pytest.skip("dnm.NegativeLabelDetector not available yet")
    _, P, _ = data
    rng = np.random.default_rng(3)
    cand = (rng.normal(size=(1500, D)) * 8).astype(np.float32)
    return Det(method="dnm", groups=20, tau=0.9, k=10).fit(
        P, cand, is_adjective=rng.random(1500) < 0.2)


def _count_in_graph(arr, obj):
    """How many graph nodes hold `obj` itself (not a reference to another key)."""
    n = 0
    for node in dict(arr.__dask_graph__()).values():
        value = getattr(node, "value", node)  # DataNode wraps literal values
        n += value is obj
    return n


# ---- local (threaded) scheduler -------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunks", [(256, D), (700, D), (333, 16), (2000, D)])
def test_equals_one_process_bitwise(data, score_fn, dtype, chunks):
    X = data[0].astype(dtype)
    ref = score_fn(X)
    s = dd.score_samples(score_fn, da.from_array(X, chunks=chunks))
    assert isinstance(s, da.Array) and s.dtype == np.float64 and s.shape == (X.shape[0],)
    np.testing.assert_array_equal(s.compute(scheduler="threads"), ref)


@pytest.mark.parametrize("n", [5000, 17000])  # 512- and 1024-row image tiles
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_big_arrays_use_the_whole_arrays_tile_grid(n, dtype):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((n, 24)).astype(dtype)
    P = rng.standard_normal((30, 24)).astype(dtype)
    N = rng.standard_normal((400, 24)).astype(dtype)
    fn = functools.partial(dnm.dnm_score, id_labels=P, negatives=N, groups=8, tau=0.9)
    ref = fn(X)
    s = dd.score_samples(fn, da.from_array(X, chunks=(3000, 24)))
    tile = dnm._core.image_tile_rows(n)
    assert all(c % tile == 0 for c in s.chunks[0][:-1])
    np.testing.assert_array_equal(s.compute(scheduler="threads"), ref)


def test_unaligned_float32_chunks_equal_one_process_bitwise(data, score_fn):
    """dnm's own float kernel gives a row the same bits in any batch, so float32 chunks need
    no alignment (the BLAS tiles, which float64 always runs, do)."""
    X = data[0].astype(np.float32)
    Xd = da.from_array(X, chunks=(333, D))
    s = dd.score_samples(score_fn, Xd, align=False)
    assert s.chunks[0][:2] == (333, 333)
    got = s.compute(scheduler="threads")
    if dnm._config.resolved_kernel() == "blas":  # no AVX2 / AVX-512: the tile grid matters
        np.testing.assert_allclose(got, score_fn(X), rtol=1e-5)
    else:
        np.testing.assert_array_equal(got, score_fn(X))


def test_lazy_and_detector_in_graph_once(data, score_fn):
    calls = []
    h = Holder(lambda X: (calls.append(len(X)), score_fn(X))[1])
    Xd = da.from_array(data[0], chunks=(256, D))
    s = dd.score_samples(h, Xd, client=False)
    assert calls == []  # nothing computed yet
    assert s.numblocks == (8,) and _count_in_graph(s, h) == 1
    np.testing.assert_array_equal(s.compute(scheduler="sync"), score_fn(data[0]))
    assert sorted(calls) == sorted(Xd.chunks[0])


def test_alignment(data, score_fn):
    assert dd.aligned_row_chunks((700, 700, 600)) == (768, 512, 720)  # 700->768, 1400->1280
    assert dd.aligned_row_chunks((100,) * 5) == (256, 244)
    assert dd.aligned_row_chunks((512, 512, 100)) == (512, 512, 100)
    Xd = da.from_array(data[0], chunks=(700, D))
    assert dd.score_samples(score_fn, Xd).chunks == ((768, 512, 720),)
    assert dd.score_samples(score_fn, Xd, align=False).chunks == ((700, 700, 600),)
    # columns always end up in one chunk
    s = dd.score_samples(score_fn, da.from_array(data[0], chunks=(512, 10)))
    np.testing.assert_array_equal(s.compute(), score_fn(data[0]))


def test_with_negative_label_detector(data, detector):
    X = data[0].astype(np.float32)
    s = dd.score_samples(detector, da.from_array(X, chunks=(512, D)), client=False)
    np.testing.assert_array_equal(s.compute(), detector.score_samples(X))


def test_bad_inputs(data, score_fn):
    with pytest.raises(TypeError, match="score_samples"):
        dd.score_samples(object(), da.zeros((4, D)))
    with pytest.raises(ValueError, match="2-D"):
        dd.score_samples(score_fn, da.zeros(4))
    with pytest.raises(TypeError, match="floating-point"):
        dd.score_samples(score_fn, da.zeros((4, D), dtype=int))
    bad = dd.score_samples(lambda X: np.zeros(3), da.zeros((10, D), chunks=5), client=False,
                          align=False)
    with pytest.raises(ValueError, match="expected \\(5,\\)"):
        bad.compute(scheduler="sync")


# ---- distributed: 2 worker processes x 1 thread (the `client` fixture of conftest.py) --


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_local_cluster_equals_one_process_bitwise(client, data, score_fn, dtype):
    X = data[0].astype(dtype)
    s = dd.score_samples(score_fn, da.from_array(X, chunks=(300, D)))
    np.testing.assert_array_equal(s.compute(), score_fn(X))


def test_local_cluster_detector_scattered_to_every_worker_once(client, data, score_fn):
    h = Holder(score_fn)
    s = dd.score_samples(h, da.from_array(data[0], chunks=(256, D)))
    assert _count_in_graph(s, h) == 0  # the graph refers to a scattered future instead
    who = client.who_has()
    scattered = [k for k, ws in who.items() if k.startswith("Holder-")]
    assert len(scattered) == 1 and len(who[scattered[0]]) == 2  # on both workers
    np.testing.assert_array_equal(s.compute(), score_fn(data[0]))
    # each worker runs dnm with one thread (the nanny's OMP_NUM_THREADS=1)
    assert set(client.run(lambda: __import__("dnm").get_num_threads()).values()) == {1}


def test_local_cluster_with_negative_label_detector(client, data, detector):
    X = data[0].astype(np.float32)
    s = dd.score_samples(detector, da.from_array(X, chunks=(512, D)))
    np.testing.assert_array_equal(s.compute(), detector.score_samples(X))


def test_local_cluster_reuses_a_scattered_detector(client, data, score_fn):
    fut = client.scatter(score_fn, broadcast=True, hash=False)
    for chunks in ((256, D), (512, D)):
        s = dd.score_samples(fut, da.from_array(data[0], chunks=chunks))
        np.testing.assert_array_equal(s.compute(), score_fn(data[0]))
    scattered = [k for k in client.who_has() if k.startswith("partial-")]
    assert scattered == [fut.key]  # no new scatter


# ---- kNN log-distance over row blocks ---------------------------------------------------

def _raw(n, d=32, seed=5, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    x *= rng.uniform(6.0, 15.0, (n, 1)) / np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(dtype)


@pytest.fixture(scope="module")
def raw():
    return _raw(2300)


def test_knn_default_block_rows():
    T = dd.KNN_TILE
    assert T == 512 and dd.IMAGE_TILE == 256
    assert dd.default_block_rows(20000, 2) == 7 * T  # 6 blocks: 3 per worker
    assert dd.default_block_rows(10**6, 16) == 4096
    for n, w in ((100, 2), (3000, 2), (20000, 2), (56600, 4), (10**6, 16)):
        b = dd.default_block_rows(n, w)
        assert b % T == 0 and b <= max(T, 4096)
        assert -(-n // b) >= min(2 * w, -(-n // T))  # >= 2 blocks per worker when n allows


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("block_rows", [None, 512, 700, 1024, 2300, 5000])
def test_knn_threaded_equals_one_process_bitwise(dtype, block_rows):
    x = _raw(2300, dtype=dtype)
    ref = dnm.knn_log_distance(x, 15)
    rho = dd.knn_log_distance(x, 15, block_rows=block_rows, client=False)
    assert isinstance(rho, da.Array) and rho.dtype == np.float64 and rho.shape == (2300,)
    if block_rows:
        assert rho.chunks[0][0] == min(block_rows, 2300)
    np.testing.assert_array_equal(rho.compute(scheduler="threads"), ref)


def test_knn_lazy_candidates_in_graph_once(raw):
    rho = dd.knn_log_distance(raw, 10, block_rows=512, client=False)
    assert rho.numblocks == (5,)
    assert _count_in_graph(rho, raw) == 1  # one node, shared by the 5 tasks
    np.testing.assert_array_equal(rho.compute(scheduler="sync"), dnm.knn_log_distance(raw, 10))


def test_knn_dask_array_and_layouts(raw):
    ref = dnm.knn_log_distance(raw, 10)
    rho = dd.knn_log_distance(da.from_array(raw, chunks=(300, 16)), 10, client=False)
    np.testing.assert_array_equal(rho.compute(), ref)
    strided = np.asfortranarray(raw)
    np.testing.assert_array_equal(
        dd.knn_log_distance(strided, 10, block_rows=600, client=False).compute(), ref)


def test_knn_bad_inputs(raw):
    with pytest.raises(ValueError, match="k: must be <"):
        dd.knn_log_distance(raw[:10], 10)
    with pytest.raises(ValueError, match="block_rows: must be >= 1"):
        dd.knn_log_distance(raw, 10, block_rows=0)
    with pytest.raises(TypeError, match="floating"):
        dd.knn_log_distance(raw.astype(int), 3)
    # the kernel's guards (over all N rows) are raised by the tasks
    y = raw.copy()
    y[2000] *= 0.5 / np.linalg.norm(y[2000])
    rho = dd.knn_log_distance(y, 5, block_rows=512, client=False)
    with pytest.raises(ValueError, match="row 2000 has norm"):
        rho[:512].compute(scheduler="sync")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_local_cluster_knn_equals_one_process_bitwise(client, dtype):
    x = _raw(2300, dtype=dtype, seed=9)
    ref = dnm.knn_log_distance(x, 20)
    for block_rows in (None, 512, 1000, 1536):
        rho = dd.knn_log_distance(x, 20, block_rows=block_rows)
        assert _count_in_graph(rho, x) == 0  # scattered, not in the graph
        np.testing.assert_array_equal(rho.compute(), ref, err_msg=str(block_rows))


def test_local_cluster_knn_candidates_on_every_worker_once(client, raw):
    before = set(client.who_has())
    rho = dd.knn_log_distance(raw, 10, block_rows=512)
    new = [k for k in client.who_has() if k not in before and k.startswith("ndarray-")]
    assert len(new) == 1 and len(client.who_has()[new[0]]) == 2  # one scatter, both workers
    assert rho.numblocks == (5,)
    np.testing.assert_array_equal(rho.compute(), dnm.knn_log_distance(raw, 10))
