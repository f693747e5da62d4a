"""Reliability under attack (issue 18, C-level items): fork safety, extreme float64 norms,
threadpoolctl restores, Ctrl-C bounds, memory bound for many groups."""
import multiprocessing as mp
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

import dnm
from dnm import _core

threadpoolctl = pytest.importorskip("threadpoolctl")

# Python >= 3.12 warns about fork() in a process with threads (OpenMP's, OpenBLAS's): forking
# such a process is what these tests are about
_fork_ok = pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")


# ---- fork safety --------------------------------------------------------------------------

def _fork_inputs():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5000, 64)).astype(np.float32)
    P = rng.standard_normal((300, 64)).astype(np.float32)
    M = rng.standard_normal((600, 64))  # float64 negatives: the BLAS tiles
    return X, P, M


def _child_work(X, P, M):
    """In the child: the thread count it reports and two multi-threaded kernels."""
    return (dnm.get_num_threads(), dnm.mcm_score(X, P),
            dnm.dnm_score(X, P, M, groups=10, tau=0.9))


@_fork_ok
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX fork")
@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_child_process_after_multithreaded_kernels(method):
    """A child made after the parent ran multi-threaded kernels (so that GNU OpenMP's pool
    exists) works: a forked child runs on one thread (libgomp cannot run more there),
    a spawned / forkserver child keeps its threads; the results are the parent's bits."""
    import subprocess

    X, P, M = _fork_inputs()
    # what a fresh process reports in this environment (other tests may have set OMP_*)
    fresh = subprocess.run([sys.executable, "-c", "import dnm; print(dnm.get_num_threads())"],
                           capture_output=True, text=True, check=True, timeout=120)
    default_threads = int(fresh.stdout)
    with threadpoolctl.threadpool_limits(limits=2):
        assert _core.resolve_threads(2) == 2  # the parent really starts a team of 2
        ref = (dnm.mcm_score(X, P, num_threads=2),
               dnm.dnm_score(X, P, M, groups=10, tau=0.9, num_threads=2))
        ctx = mp.get_context(method)
        pool = ctx.Pool(1)
        try:
            # a hang (the old behaviour of fork) becomes a TimeoutError, not a stuck CI job
            threads, mcm, dnm_s = pool.apply_async(_child_work, (X, P, M)).get(timeout=60)
        finally:
            pool.terminate()
            pool.join()
    assert threads == (1 if method == "fork" else default_threads)
    np.testing.assert_array_equal(mcm, ref[0])
    np.testing.assert_array_equal(dnm_s, ref[1])


def _wait(pid, timeout):
    """waitpid with a deadline: a hung child is killed and reported."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked child hung for {timeout} s")


@_fork_ok
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX fork")
def test_fork_while_another_thread_runs_a_kernel():
    """os.fork() while a kernel runs on another Python thread: the child runs on one thread,
    gives the parent's bits and gets OpenBLAS's own setting back (not dnm's transient 1)."""
    X, P, _ = _fork_inputs()
    big = np.random.default_rng(1).standard_normal((60000, 256)).astype(np.float32)
    with threadpoolctl.threadpool_limits(limits=2):
        ref = dnm.mcm_score(X, P, num_threads=2)
        t = threading.Thread(target=dnm.mcm_score, args=(big, big[:2000]),
                             kwargs={"num_threads": 2})
        t.start()
        time.sleep(0.3)
        assert t.is_alive(), "the background kernel finished too early: make it larger"
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            ok = 0
            try:
                s = dnm.mcm_score(X, P)
                ok = int(dnm.get_num_threads() == 1 and np.array_equal(s, ref)
                         and _core.blas_threads() == 2)
            finally:
                os.write(wfd, bytes([ok]))
                os._exit(0)
        os.close(wfd)
        try:
            status = _wait(pid, 60)
            got = os.read(rfd, 1)
        finally:
            os.close(rfd)
            t.join()
    assert status == 0 and got == b"\x01"


# ---- float64 rows whose norm exceeds DBL_MAX ---------------------------------------------

def test_float64_rows_with_norm_above_dbl_max():
    """max_logit_score(np.full((1, 4), 1e308), P): the norm 2e308 overflows, but the row
    normalised (scaled by its largest magnitude first) is (0.5, 0.5, 0.5, 0.5)."""
    from slow import score as twin

    P = np.random.default_rng(3).standard_normal((7, 4))
    X = np.full((1, 4), 1e308)
    got = dnm.max_logit_score(X, P)
    want = twin.max_logit(X, P)
    assert np.isclose(want[0], (P / np.linalg.norm(P, axis=1, keepdims=True)).sum(1).max() / 2)
    np.testing.assert_allclose(got, want, rtol=1e-13)


@pytest.mark.parametrize("where", ["images", "id_labels", "negatives"])
def test_float64_extreme_norms_everywhere(where):
    """Rows with norms near and above DBL_MAX, and subnormal ones, in every input (packed and
    gathered rows), score as the scaled twin says, for every score."""
    from slow import score as twin

    rng = np.random.default_rng(4)
    X = rng.standard_normal((40, 16))
    P = rng.standard_normal((9, 16))
    M = rng.standard_normal((60, 16))
    a = {"images": X, "id_labels": P, "negatives": M}[where]
    mags = [1e308, 1.7e308, 1e200, 1e-300, 5e-320, 1.0]
    for i in range(len(a)):
        a[i] *= mags[i % len(mags)] / np.abs(a[i]).max()
    idx = twin.groups_index(len(M), 6)
    T = 0.05
    np.testing.assert_allclose(dnm.max_logit_score(X, P), twin.max_logit(X, P), rtol=1e-12)
    np.testing.assert_allclose(dnm.mcm_score(X, P, temperature=T), twin.mcm(X, P, T), rtol=1e-10)
    np.testing.assert_allclose(dnm.neglabel_score(X, P, M, groups=idx, temperature=T),
                               twin.neglabel(X, P, M, T, groups=idx), rtol=1e-10)
    np.testing.assert_allclose(dnm.dnm_score(X, P, M, groups=idx, temperature=T, tau=0.8),
                               twin.dnm(X, P, M, T, 0.8, groups=idx)[0], rtol=1e-10)


# ---- threadpoolctl block exits while a kernel runs ---------------------------------------

def test_threadpool_limits_exit_during_a_kernel_is_not_undone():
    """A kernel starts inside threadpool_limits(1) on another thread and is still running
    when the block exits: at its end it must not write the 1 it saw back over the setting
    the block restored (dnm would stay on 1 thread for the life of the process)."""
    big = np.random.default_rng(1).standard_normal((60000, 256)).astype(np.float32)
    with threadpoolctl.threadpool_limits(limits=2):
        assert dnm.get_num_threads() == 2 and _core.blas_threads() == 2
        with threadpoolctl.threadpool_limits(limits=1):
            t = threading.Thread(target=dnm.mcm_score, args=(big, big[:2000]))
            t.start()
            time.sleep(0.2)
            assert t.is_alive(), "the kernel finished too early: make it larger"
        t.join()
        assert _core.blas_threads() == 2
        assert dnm.get_num_threads() == 2


# ---- Ctrl-C: bounded work between checks -------------------------------------------------

def _interrupt_latency(call, delay=0.5):
    """Send SIGINT `delay` s into call(); return the seconds until KeyboardInterrupt."""
    sent = {}

    def fire():
        time.sleep(delay)
        sent["t"] = time.monotonic()
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    timer = threading.Thread(target=fire)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            call()
            timer.join()
            pytest.fail("the call finished before the signal arrived: make the input larger")
        return time.monotonic() - sent["t"]
    finally:
        timer.join()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_inside_a_big_float64_tile():
    """float64 scores run on BLAS tiles of up to 1024 (here 8192) images; one tile against
    4096 labels of D = 1024 is ~3 s of work, and Ctrl-C used to wait for whole tiles.  Now
    a tile's GEMMs are cut so that Ctrl-C is seen within about 0.1 s per thread."""
    from dnm import _config

    rng = np.random.default_rng(0)
    X = rng.random((16384, 1024))  # 2 tiles of 8192 rows: one per thread
    P = rng.random((4096, 1024), dtype=np.float32) - 0.5
    ref = dnm.max_logit_score(X[:64], P)
    with _config.tile_grid(8192):
        latency = _interrupt_latency(lambda: dnm.mcm_score(X, P))
    assert latency < 1.0, f"KeyboardInterrupt {latency:.2f} s after SIGINT"
    np.testing.assert_array_equal(dnm.max_logit_score(X[:64], P), ref)  # still usable


_FLOAT_KERNELS = ["blas"] + [k for k in ("avx512", "avx2") if getattr(_core, "HAVE_" + k.upper())]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("kernel", _FLOAT_KERNELS)
def test_ctrl_c_inside_a_big_float32_tile(kernel):
    """float32 on every kernel the CPU has: one image tile of 4096 images against 20,000
    labels of D = 1024 is seconds of work; dnm's own kernel looks for Ctrl-C between label
    blocks, the BLAS tiles between their GEMMs."""
    from dnm import _config

    rng = np.random.default_rng(0)
    X = rng.standard_normal((8192, 1024), dtype=np.float32)  # 2 tiles: one per thread
    P = rng.standard_normal((20000, 1024), dtype=np.float32)
    with _config.float_kernel(kernel):
        ref = dnm.max_logit_score(X[:64], P[:500])
        with _config.tile_grid(4096):
            latency = _interrupt_latency(lambda: dnm.mcm_score(X, P))
        np.testing.assert_array_equal(dnm.max_logit_score(X[:64], P[:500]), ref)
    assert latency < 1.0, f"KeyboardInterrupt {latency:.2f} s after SIGINT ({kernel})"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_during_metrics_on_huge_score_sets():
    """metrics on 2 x 3e7 scores (~3 s of radix sort and sweep) used to never look for
    Ctrl-C; now it does every 2^20 elements, on both sorting threads."""
    rng = np.random.default_rng(0)
    a = rng.random(30_000_000)
    b = rng.random(30_000_000) - 0.1
    ref = dnm.metrics.all_metrics(a[:1000], b[:1000])
    latency = _interrupt_latency(lambda: dnm.metrics.all_metrics(a, b), delay=0.3)
    assert latency < 1.0, f"KeyboardInterrupt {latency:.2f} s after SIGINT"
    assert dnm.metrics.all_metrics(a[:1000], b[:1000]) == ref  # still usable


# ---- memory with many groups -------------------------------------------------------------

_MEM_SNIPPET = """
import resource, sys, numpy as np, dnm
dt = np.dtype(sys.argv[1]); N = int(sys.argv[2]); G = int(sys.argv[3])
rng = np.random.default_rng(0)
X = rng.standard_normal((N, 16)).astype(dt); P = rng.standard_normal((10, 16)).astype(dt)
M = rng.standard_normal((G, 16)).astype(dt)
dnm.dnm_score(X[:50], P, M[:100], groups=100, tau=0.9)  # warm up: libraries, thread pool
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
s = dnm.dnm_score(X, P, M, groups=G, tau=0.9, num_threads=2)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024, np.isfinite(s).all())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB (Linux)")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_peak_memory_does_not_grow_with_the_number_of_groups(dtype):
    """G = M = 40,000 groups of one negative: the per-thread state used to be O(G x tile
    rows) (~330 MiB here for float64, ~160 MiB for float32 on 2 threads, for 2.6 MB of
    negatives); groups are now streamed (BLAS tiles) or the tile shrinks (dnm's kernel)."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", _MEM_SNIPPET, dtype, "1024", "40000"],
                         capture_output=True, text=True, check=True, timeout=300)
    grown, finite = out.stdout.split()
    assert finite == "True"
    assert int(grown) < 64 * 2**20, f"peak RSS grew by {int(grown) / 2**20:.0f} MiB"


# ---- kNN with extreme float64 norms (issue 18, item 2) --------------------------------------

def _knn_twin_scaled(x, k):
    """The kNN rule in float64 with norms computed scaled (x / amax), so that rows with norms
    near the float64 limit still give their true, finite distances."""
    x = np.asarray(x, np.float64)
    amax = np.abs(x).max(axis=1, keepdims=True)
    ns = np.linalg.norm(x / amax, axis=1)
    r = amax[:, 0] * ns
    xn = (x / amax) / ns[:, None]
    d = r[:, None] + r[None, :] - 2.0 * (xn @ xn.T)
    return np.log(np.sort(d, axis=1)[:, :k + 1]).mean(axis=1)


@pytest.mark.parametrize("scale", [1e160, 1e200, 1e300])
def test_knn_extreme_float64_norms_are_exact_and_repeatable(scale):
    """Norms of 1e160..1e300: raw products overflow and 1/(r_i r_j) underflows, which used to
    drop distances and read buffer slots never written (a different answer on each call)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 16)) * np.exp(rng.uniform(0, 1, (300, 1))) * scale
    ref = _knn_twin_scaled(x, 5)
    got = [dnm.knn_log_distance(x, 5, num_threads=nt) for nt in (1, 2, 2)]
    np.testing.assert_allclose(got[0], ref, rtol=1e-12)
    for g in got[1:]:
        np.testing.assert_array_equal(g, got[0])
    np.testing.assert_array_equal(dnm.knn_log_distance(x, 5, rows=(17, 230)), got[0][17:230])


def test_knn_distances_beyond_float64_are_one_clear_error():
    """Where r_i + r_j itself overflows, the distance is not representable: one ValueError
    naming the row and the cause, the same on every call."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((50, 8))
    x *= 0.9e308 / np.abs(x).max(axis=1, keepdims=True)
    for _ in range(3):
        with pytest.raises(ValueError, match=r"raw_candidates: row 0 has only 0 of its k\+1 "
                                             r"distances .* overflows"):
            dnm.knn_log_distance(x, 3)
