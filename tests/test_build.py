"""The build: the extension imports, links the intended OpenBLAS and OpenMP, and honours
thread limits."""
import os

import numpy as np
import pytest

import dnm


def test_version_and_core():
    assert isinstance(dnm.__version__, str) and dnm.__version__.count(".") >= 2
    assert dnm._core.blas in ("scipy-openblas32", "system")


def test_threadpoolctl_sees_openblas_and_openmp():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    info = threadpoolctl.threadpool_info()
    ours = [p for p in info if p["internal_api"] == "openblas"
            and os.path.basename(p["filepath"]).startswith(("libscipy_openblas.", "libopenblas"))]
    assert ours, f"dnm's OpenBLAS not found among {info}"
    assert any(p["user_api"] == "openmp" for p in info)


def test_threadpool_limits_are_honoured(rng):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    X = rng.normal(size=(700, 16)).astype(np.float32)
    P = rng.normal(size=(30, 16)).astype(np.float32)
    full = dnm.mcm_score(X, P)
    with threadpoolctl.threadpool_limits(limits=1):
        assert dnm.get_num_threads() == 1
        np.testing.assert_array_equal(dnm.mcm_score(X, P), full)
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert dnm.get_num_threads() == 1
    assert dnm.get_num_threads() == min(os.cpu_count(), dnm._core.max_threads())


def test_set_num_threads_validation():
    with pytest.raises(ValueError, match="n: must be >= 0"):
        dnm.set_num_threads(-1)
    with pytest.raises(TypeError, match="n: expected an integer"):
        dnm.set_num_threads(1.5)
    dnm.set_num_threads(1)
    try:
        assert dnm.get_num_threads() == 1
    finally:
        dnm.set_num_threads(None)
