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
from dnm import mining

from _bench import run_times

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=56600)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--big", action="store_true", help="also run N = 200,000 once")
    ap.add_argument("--big-n", type=int, default=200000)
    args = ap.parse_args()
    n = args.n

    x = make_raw(n)
    mining.knn_log_distance(x[:600], 10)  # warm up thread pools
    x[:600] @ x[:600].T

    t_dnm, ts_dnm = median_time(lambda: mining.knn_log_distance(x, K), args.repeats)
    rho = mining.knn_log_distance(x, K)
    err = spot_check(x, rho)
    t_np, ts_np = median_time(lambda: numpy_product(x), args.repeats)
    t_fresh, peak, before = fresh_run(n, K)

    flop = 2.0 * n * n * D
    lines = [
        "dnm kNN log-distance benchmark (docs/design.md, "Mining"; issue 3)",
        f"command: python benchmarks/bench_mining.py --n {n} --repeats {args.repeats}"
        + (" --big" if args.big else ""),
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        f"(shared with other jobs), Python {platform.python_version()}, NumPy {np.__version__}",
        *thread_info(),
        f"data: N = {n} synthetic raw rows, D = {D}, float32, norms uniform in [6, 15]; k = {K}",
        "",
        f"{'measurement':58s} {'value':>14s}",
        f"{'dnm knn_log_distance, median of ' + str(args.repeats):58s} {t_dnm:13.2f}s",
        f"{'   (runs)':58s} {' '.join(f'{t:.2f}' for t in ts_dnm):>14s}",
        f"{'NumPy X[i:i+4096] @ X.T over all blocks, median of ' + str(args.repeats):58s} {t_np:13.2f}s",
        f"{'   (runs)':58s} {' '.join(f'{t:.2f}' for t in ts_np):>14s}",
        f"{'ratio dnm / NumPy product (target <= 1.3)':58s} {t_dnm / t_np:14.2f}",
        f"{'NumPy product rate (2 N^2 D flop / time)':58s} {flop / t_np / 1e9:10.1f} GF/s",
        f"{'dnm effective rate (same flop count / time)':58s} {flop / t_dnm / 1e9:10.1f} GF/s",
        f"{'dnm peak RSS, whole process (target <= 1 GiB)':58s} {peak / GIB:10.3f} GiB",
        f"{'dnm peak RSS growth beyond resident input':58s} {(peak - before) / 2**20:10.1f} MiB",
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
        "N x N product (512 x 512 SGEMM tiles, each feeding the k+1-smallest buffers of its rows and",
        "of its columns), so it does about half the product's flops; contiguous float32",
        "input is multiplied in place (no copy).  Medians; the machine is shared.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(__file__).resolve().parent / "results" / ("mining.txt" if args.big else "mining_quick.txt")
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
