"""Zero copy and threads: inputs are never copied (float32/float64/float16, any layout) or
converted exactly once; thread settings (dnm.set_num_threads, threadpoolctl for OpenMP and
OpenBLAS) are honoured; results are bitwise identical across thread counts."""
import os
import tracemalloc

import numpy as np
import pytest

import dnm

threadpoolctl = pytest.importorskip("threadpoolctl")

SCORES = {
    "mcm": lambda X, P, M, **kw: dnm.mcm_score(X, P, **kw),
    "max_logit": lambda X, P, M, **kw: dnm.max_logit_score(X, P, **kw),
    "energy": lambda X, P, M, **kw: dnm.energy_score(X, P, **kw),
    "neglabel": lambda X, P, M, **kw: dnm.neglabel_score(X, P, M, groups=10, **kw),
    "dnm": lambda X, P, M, **kw: dnm.dnm_score(X, P, M, groups=10, tau=0.9, **kw),
}


def traced_peak(fn):
    """Peak of traced (Python + NumPy) allocations during fn(), in bytes."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        return tracemalloc.get_traced_memory()[1] - base, out
    finally:
        tracemalloc.stop()


# ---- zero copy --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big():
    """A 40 MB float32 C-contiguous image matrix and small label sets."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((20000, 500), dtype=np.float32)
    assert X.nbytes == 40_000_000
    P = rng.standard_normal((20, 500), dtype=np.float32)
    M = rng.standard_normal((200, 500), dtype=np.float32)
    return X, P, M


def test_float32_c_contiguous_input_is_never_copied(big):
    X, P, M = big
    peak, s = traced_peak(lambda: dnm.dnm_score(X, P, M, groups=10, tau=0.9))
    # only the (N,) float64 result and the small label/group arrays are allocated
    assert peak < X.nbytes / 20, f"traced peak {peak / 1e6:.1f} MB for a 40 MB input"
    assert s.shape == (X.shape[0],)


@pytest.mark.parametrize("layout", ["float64-F", "float32-strided", "float16", "float32-F"])
def test_other_dtypes_and_layouts_are_not_copied_either(big, layout):
    """The C core reads any float16/32/64 strides and converts per tile: no N-sized array."""
    X, P, M = big
    Y = {"float64-F": lambda: np.asfortranarray(X[:, :250], dtype=np.float64),
         "float32-strided": lambda: X[:, ::2],
         "float16": lambda: X[:, :250].astype(np.float16),
         "float32-F": lambda: np.asfortranarray(X[:, :250])}[layout]()
    ref = dnm.dnm_score(np.ascontiguousarray(Y), P[:, :250], M[:, :250], groups=10, tau=0.9)
    peak, s = traced_peak(lambda: dnm.dnm_score(Y, P[:, :250], M[:, :250], groups=10, tau=0.9))
    assert peak < Y.nbytes / 10, f"traced peak {peak / 1e6:.1f} MB for {Y.nbytes / 1e6:.0f} MB"
    np.testing.assert_array_equal(s, ref)


@pytest.mark.parametrize("kind", ["longdouble", "big-endian"])
def test_unsupported_dtypes_are_converted_exactly_once(big, kind):
    X, P, M = big
    X = X[:5000]
    Y = X.astype(np.longdouble) if kind == "longdouble" else X.astype(">f4")
    if kind == "longdouble" and np.dtype(np.longdouble).itemsize == 8:
        pytest.skip("longdouble is float64 on this platform")
    once = X.size * (8 if kind == "longdouble" else 4)  # one float64 / native float32 copy
    peak, s = traced_peak(lambda: dnm.dnm_score(Y, P, M, groups=10, tau=0.9))
    assert once <= peak < 1.5 * once, f"traced peak {peak / 1e6:.1f} MB, one copy {once / 1e6:.1f} MB"
    native = Y.astype(np.float64 if kind == "longdouble" else np.float32)
    np.testing.assert_array_equal(s, dnm.dnm_score(native, P, M, groups=10, tau=0.9))


def test_inputs_are_not_modified(big):
    X, P, M = big
    x, p, m = X[:300].copy(), P.copy(), M.copy()
    dnm.dnm_score(x, p, m, groups=10, tau=0.9)
    assert np.array_equal(x, X[:300]) and np.array_equal(p, P) and np.array_equal(m, M)


# ---- thread settings --------------------------------------------------------------------

def _our_openblas():
    return [p for p in threadpoolctl.threadpool_info() if p["internal_api"] == "openblas"
            and os.path.basename(p["filepath"]).startswith(("libscipy_openblas.", "libopenblas"))]


@pytest.mark.parametrize("user_api", [None, "blas", "openmp"])
def test_threadpool_limits_honoured(user_api, rng):
    X = rng.normal(size=(600, 16)).astype(np.float32)
    P = rng.normal(size=(30, 16)).astype(np.float32)
    before = dnm.get_num_threads()
    blas_before = [p["num_threads"] for p in _our_openblas()]
    with threadpoolctl.threadpool_limits(limits=1, user_api=user_api):
        assert dnm.get_num_threads() == 1
        dnm.mcm_score(X, P)
        # after a call, OpenBLAS has its own setting back (dnm sets it to 1 only during a kernel)
        assert [p["num_threads"] for p in _our_openblas()] == (
            [1] * len(blas_before) if user_api != "openmp" else blas_before)
    assert dnm.get_num_threads() == before


def test_openblas_setting_caps_dnm_and_is_restored(rng):
    X = rng.normal(size=(600, 16)).astype(np.float32)
    P = rng.normal(size=(30, 16)).astype(np.float32)
    with threadpoolctl.threadpool_limits(limits=3):
        dnm.set_num_threads(3)
        try:
            assert dnm.get_num_threads() == 3
            with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
                assert dnm.get_num_threads() == 2  # capped by OpenBLAS: pools never multiply
            dnm.mcm_score(X, P)
            assert [p["num_threads"] for p in _our_openblas()] == [3]
        finally:
            dnm.set_num_threads(None)


def test_set_num_threads_overrides_openmp_default():
    with threadpoolctl.threadpool_limits(limits=4):
        for n in (1, 2, 4):
            dnm.set_num_threads(n)
            try:
                assert dnm.get_num_threads() == n
            finally:
                dnm.set_num_threads(None)
        assert dnm.get_num_threads() == 4


# ---- bitwise identical across thread counts ---------------------------------------------

@pytest.fixture(scope="module")
def data3():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(1100, 48))  # 5 image tiles, the last one partial
    P = rng.normal(size=(40, 48))
    M = rng.normal(size=(2500, 48))  # labels span two label tiles
    return X, P, M


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(SCORES))
def test_scores_bitwise_identical_across_thread_counts(data3, name, dtype):
    X, P, M = (a.astype(dtype) for a in data3)
    f = SCORES[name]
    with threadpoolctl.threadpool_limits(limits=4):  # allow more threads than cores
        ref = f(X, P, M, num_threads=1)
        for nt in (2, 3, 4):
            np.testing.assert_array_equal(f(X, P, M, num_threads=nt), ref, err_msg=f"{nt} threads")
        dnm.set_num_threads(3)
        try:
            np.testing.assert_array_equal(f(X, P, M), ref)
        finally:
            dnm.set_num_threads(None)
    with threadpoolctl.threadpool_limits(limits=1):
        np.testing.assert_array_equal(f(X, P, M), ref)


def test_mining_bitwise_identical_across_thread_counts(rng):
    mining = pytest.importorskip("dnm.mining")
    raw = (rng.normal(size=(1200, 24)) * 8).astype(np.float32)
    P = rng.normal(size=(30, 24)).astype(np.float32)
    with threadpoolctl.threadpool_limits(limits=4):
        rho = mining.knn_log_distance(raw, 10, num_threads=1)
        q = mining.neglabel_closeness(P, raw, num_threads=1)
        for nt in (2, 3, 4):
            np.testing.assert_array_equal(mining.knn_log_distance(raw, 10, num_threads=nt), rho)
            np.testing.assert_array_equal(mining.neglabel_closeness(P, raw, num_threads=nt), q)
