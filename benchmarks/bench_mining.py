"""Benchmark: DNM's kNN log-distance rule (dnm.mining.knn_log_distance) against
NumPy's matrix product of the same size.

Run as a script:  python benchmarks/bench_mining.py [--n 56600] [--repeats 3] [--big]

Issue 3: N = 56,600 raw candidates (DNM's corpus size), D = 512, k = 100, float32,
synthetic random rows with CLIP-like raw norms uniform in [6, 15].  In one run:
  (a) dnm.mining.knn_log_distance(X, k=100): median wall time over --repeats;
  (b) the yardstick: NumPy's full N x N x D product done in row blocks of 4,096
      (X[i:j] @ X.T for every block; the blocks are discarded), median over
      --repeats - NumPy's own OpenBLAS (scipy_openblas64) and threads;
  (c) peak resident memory of a knn_log_distance call, in a fresh interpreter
      (VmHWM after resetting it through /proc/self/clear_refs): the whole
      process, and the growth beyond the resident input;
  (d) a correctness spot check: rho of 256 rows recomputed with NumPy in float64;
  (e) with --big: N = 200,000 once (time and peak memory, fresh interpreter).
Writes the table to benchmarks/results/mining.txt (with --big).  Without --big
it writes benchmarks/results/mining_quick.txt.
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

try:
    import dnm
except ImportError:  # run from a checkout without installing: use the in-place build
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import dnm
from dnm import _config, mining

from _bench import interleaved, run_times

D, K, BLOCK = 512, 100, 4096
GIB = 1024 ** 3


def make_raw(n, d=D, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    x *= (rng.uniform(6.0, 15.0, (n, 1)) / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return x


def numpy_product(x):
    for i in range(0, len(x), BLOCK):
        x[i:i + BLOCK] @ x.T


def median_time(fn, repeats):
    ts = run_times(fn, repeats, warmup=False)  # each run is seconds long: no warm-up call
    return statistics.median(ts), ts


_CHILD = r"""
import sys, time, numpy as np
sys.path.insert(0, sys.argv[3])
from bench_mining import make_raw
from _bench import proc_status as status, reset_peak_rss
from dnm import mining
n, k = int(sys.argv[1]), int(sys.argv[2])
x = make_raw(n)
mining.knn_log_distance(x[:600], 10)  # load the thread pools
reset_peak_rss()
before = status("VmRSS")
t = time.perf_counter()
rho = mining.knn_log_distance(x, k)
t = time.perf_counter() - t
print(t, status("VmHWM"), before, int(np.isfinite(rho).all()))
"""


def fresh_run(n, k):
    """(seconds, peak RSS of the process, RSS before the call) in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(k),
                          str(Path(__file__).resolve().parent)],
                         capture_output=True, text=True, check=True)
    t, peak, before, finite = out.stdout.split()
    assert finite == "1"
    return float(t), int(peak), int(before)


def spot_check(x, rho, rows=256, seed=1):
    idx = np.random.default_rng(seed).choice(len(x), rows, replace=False)
    x64 = x.astype(np.float64)
    r = np.linalg.norm(x64, axis=1)
    cos = (x64[idx] / r[idx, None]) @ (x64 / r[:, None]).T
    d = r[idx, None] + r[None, :] - 2.0 * cos
    ref = np.log(np.sort(d, axis=1)[:, :K + 1]).mean(axis=1)
    return float(np.max(np.abs(rho[idx] - ref) / np.abs(ref)))


def thread_info():
    lines = [f"dnm: {dnm.get_num_threads()} OpenMP threads, each calling single-threaded "
             f"scipy-openblas32 ({dnm._core.blas})"]
    try:
        from threadpoolctl import threadpool_info

        for p in threadpool_info():
            lines.append(f"  threadpool: {p.get('internal_api')} {p.get('prefix')} "
                         f"num_threads={p.get('num_threads')} "
                         f"arch={p.get('architecture')}")
    except ImportError:
        pass
    lines.append(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} "
                 f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')} "
                 f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}")
    return lines


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=56600)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--big", action="store_true", help="also run N = 200,000 once")
    ap.add_argument("--big-n", type=int, default=200000)
    ap.add_argument("--c", type=int, default=1000, help="ID labels of the closeness run")
    ap.add_argument("--out", default=None,
                    help="result file (default: results/mining.txt with --big, else "
                         "results/mining_quick.txt)")
    args = ap.parse_args()
    n = args.n

    x = make_raw(n)
    ids = make_raw(args.c, seed=1)
    mining.knn_log_distance(x[:600], 10)  # warm up thread pools
    x[:600] @ x[:600].T

    # round-robin: every repeat times each contender once (a shared machine's drifting
    # load falls on all of them alike); ratios are taken within this one run
    t = interleaved({
        "knn": lambda: mining.knn_log_distance(x, K),
        "np_knn": lambda: numpy_product(x),
        "close": lambda: mining.neglabel_closeness(ids, x),
        "np_close": lambda: x @ ids.T,
    }, args.repeats, pause=0.5)
    rho = mining.knn_log_distance(x, K)
    err = spot_check(x, rho)
    t_fresh, peak, before = fresh_run(n, K)

    flop = 2.0 * n * n * D
    kernel = _config.resolved_kernel()
    lines = [
        "dnm mining benchmark: kNN log-distance (docs/design.md, 'Mining') and NegLabel closeness",
        f"command: python benchmarks/bench_mining.py --n {n} --repeats {args.repeats}"
        + (" --big" if args.big else ""),
        f"machine: {cpu_model()}, {os.cpu_count()} cores (shared with other jobs), "
        f"Python {platform.python_version()}, NumPy {np.__version__}",
        f"float kernel: {kernel} (DNM_FLOAT_KERNEL={os.environ.get('DNM_FLOAT_KERNEL')})",
        *thread_info(),
        f"data: N = {n} synthetic raw rows, D = {D}, float32, norms uniform in [6, 15]; k = {K}; "
        f"closeness against C = {args.c} ID labels",
        "",
        f"{'measurement (medians of ' + str(args.repeats) + ', timed round-robin)':58s} {'value':>14s}",
        f"{'dnm knn_log_distance':58s} {t['knn']:13.2f}s",
        f"{'NumPy X[i:i+4096] @ X.T over all blocks':58s} {t['np_knn']:13.2f}s",
        f"{'ratio kNN / NumPy blocked product (target <= 0.7)':58s} {t['knn'] / t['np_knn']:14.2f}",
        f"{'NumPy product rate (2 N^2 D flop / time)':58s} {flop / t['np_knn'] / 1e9:10.1f} GF/s",
        f"{'dnm effective rate (same flop count / time)':58s} {flop / t['knn'] / 1e9:10.1f} GF/s",
        f"{'dnm neglabel_closeness':58s} {t['close']:13.3f}s",
        f"{'NumPy X @ ids.T (the same product)':58s} {t['np_close']:13.3f}s",
        f"{'ratio closeness / NumPy product':58s} {t['close'] / t['np_close']:14.2f}",
        f"{'dnm kNN peak RSS, whole process (target <= 1 GiB)':58s} {peak / GIB:10.3f} GiB",
        f"{'dnm kNN peak RSS growth beyond resident input':58s} {(peak - before) / 2**20:10.1f} MiB",
        f"{'   (input X itself)':58s} {x.nbytes / 2**20:10.1f} MiB",
        f"{'   (time of that fresh-process call)':58s} {t_fresh:13.2f}s",
        f"{'NumPy block output alone (4096 x N float32)':58s} {BLOCK * n * 4 / 2**20:10.1f} MiB",
        f"{'full N x N float32 matrix (what the reference builds)':58s} {n * n * 4 / GIB:10.2f} GiB",
        f"{'spot check: max rel. error of rho, 256 rows vs NumPy f64':58s} {err:14.2e}",
    ]
    if args.big:
        nb = args.big_n
        t_big, peak_b, before_b = fresh_run(nb, K)
        lines += [
            "",
            f"N = {nb} (run once, fresh process):",
            f"{'dnm knn_log_distance time':58s} {t_big:13.1f}s",
            f"{'dnm effective rate (2 N^2 D flop / time)':58s} {2.0 * nb * nb * D / t_big / 1e9:10.1f} GF/s",
            f"{'dnm peak RSS, whole process':58s} {peak_b / GIB:10.3f} GiB",
            f"{'dnm peak RSS growth beyond resident input':58s} {(peak_b - before_b) / 2**20:10.1f} MiB",
            f"{'   (input X itself)':58s} {nb * D * 4 / 2**20:10.1f} MiB",
            f"{'   (N x 2(k+1) buffer of doubles, the bound)':58s} {nb * 2 * (K + 1) * 8 / 2**20:10.1f} MiB",
            f"{'full N x N float32 matrix':58s} {nb * nb * 4 / GIB:10.1f} GiB",
        ]
    lines += [
        "",
        "Notes: dnm computes only the tiles on and above the diagonal of the symmetric",
        "N x N product (512-row tiles, each feeding the k+1-smallest buffers of its rows and of",
        "its columns), so it does about half the product's flops.  On dnm's own kernel (avx2,",
        "avx512) the candidates are packed once into the kernel's panels (N x D floats); on the",
        "BLAS tiles contiguous float32 input is multiplied in place.  Medians; the machine is shared.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    default = "mining.txt" if args.big else "mining_quick.txt"
    out = Path(args.out) if args.out else Path(__file__).resolve().parent / "results" / default
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
