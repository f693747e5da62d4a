"""Benchmark: no oversubscription - dnm's OpenMP threads x OpenBLAS threads do not multiply.

Run as a script:  python benchmarks/bench_threads.py [--n 20000] [--repeats 3]

dnm's kernels run OpenMP threads that each call a *single-threaded* OpenBLAS for their own
tiles (dnm sets OpenBLAS to 1 thread for the duration of a kernel and caps its OpenMP
threads by the OpenBLAS setting).  For dnm.dnm_score (N images, C = 1,000, M = 12,000,
D = 512, float32, G = 100) this measures, per configuration, the median over repeats of:
  wall time, CPU time of the process (user + system, resource.getrusage), their ratio
  (= cores kept busy), and, sampled every ~2 ms from /proc/self/task/*/stat, the threads
  alive (including idle pool threads) and the threads running at once (state R).
Configurations:
  * dnm at 1 and 2 threads, with OpenBLAS left at its default (2 here): 2 threads must give
    ~2 busy threads, not 2 x 2;
  * deliberately oversubscribed, for comparison:
    (a) a naive tiled implementation - a Python thread pool of 2 threads, each computing
        its image tiles' logits with NumPy's own (multi-threaded, 2 threads) OpenBLAS
        product followed by the same log-sum-exp in NumPy - pools that do multiply;
    (b) two dnm_score calls at once from two Python threads, each with num_threads=2
        (4 compute threads on 2 cores: what a Dask worker with 2 threads and
        OMP_NUM_THREADS=2 would do); against the same two calls with num_threads=1.
Writes the table to benchmarks/results/threads.txt.
"""
import argparse
import os
import platform
import resource
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import threadpoolctl

import dnm

class Sampler:
    """Samples, every ~2 ms in the background, the threads of this process: how many are
    alive and how many are running (state R) - the sampler itself excluded."""

    def __enter__(self):
        self.stop = threading.Event()
        self.alive, self.running = [], []
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        return self

    def _run(self):
        me = str(threading.get_native_id())
        while not self.stop.is_set():
            alive = running = 0
            for tid in os.listdir("/proc/self/task"):
                if tid == me:
                    continue
                try:
                    with open(f"/proc/self/task/{tid}/stat") as f:
                        state = f.read().rsplit(")", 1)[1].split()[0]
                except (FileNotFoundError, ProcessLookupError, IndexError):
                    continue
                alive += 1
                running += state == "R"
            self.alive.append(alive)
            self.running.append(running)
            time.sleep(0.002)

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join()


def measure(fn, repeats):
    fn()  # warm up: thread pools, page faults
    rows = []
    for _ in range(repeats):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        with Sampler() as smp:
            t0 = time.perf_counter()
            fn()
            wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        run = sorted(smp.running)
        rows.append((wall, cpu, max(smp.alive), run[int(0.95 * (len(run) - 1))],
                     statistics.mean(run)))
    return tuple(statistics.median(c) for c in zip(*rows))


def naive_dnm(X, P, Ng, idx, T=0.01, tau=0.5, tile=256, workers=2):
    """Tiled DNM score in NumPy from a Python thread pool: each worker's products use NumPy's
    multi-threaded OpenBLAS - pools that multiply (the configuration dnm avoids)."""
    Pn = P / np.linalg.norm(P, axis=1, keepdims=True)
    Nn = Ng / np.linalg.norm(Ng, axis=1, keepdims=True)
    L = np.concatenate([Pn, Nn[idx.ravel()]]).astype(np.float32)
    C, (G, Q) = P.shape[0], idx.shape
    out = np.empty(X.shape[0])

    def one(r0):
        x = X[r0:r0 + tile]
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        s = (x @ L.T).astype(np.float64) / T
        m = s.max(axis=1, keepdims=True)
        e = np.exp(s - m)
        S = e[:, :C].sum(1)
        Nj = e[:, C:].reshape(-1, G, Q).mean(2)
        Z = S[:, None] + Q * (Nj / tau - (1 - tau) / tau * (S / C)[:, None])
        Z = np.maximum(Z, S[:, None] * 1e-6)
        out[r0:r0 + tile] = (S / C) * (1.0 / Z).mean(1)

    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(one, range(0, X.shape[0], tile)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "threads.txt"))
    a = ap.parse_args()
    N, C, M, D, G = a.n, 1000, 12000, 512, 100
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D), dtype=np.float32)
    P = rng.standard_normal((C, D), dtype=np.float32)
    Ng = rng.standard_normal((M, D), dtype=np.float32)
    idx = dnm.make_groups(M, G, seed=0)
    kw = dict(groups=idx, tau=0.9)
    ncpu = os.cpu_count()

    ref = dnm.dnm_score(X, P, Ng, num_threads=1, **kw)
    configs = []
    for nt in (1, 2):
        f = lambda nt=nt: dnm.dnm_score(X, P, Ng, num_threads=nt, **kw)  # noqa: E731
        assert np.array_equal(f(), ref)
        configs.append((f"dnm.dnm_score, num_threads={nt} (OpenBLAS default {_blas()})", f))
    def naive(blas_threads):
        def run():
            with threadpoolctl.threadpool_limits(limits=blas_threads, user_api="blas"):
                naive_dnm(X, P, Ng, idx, tau=0.9)
        return run

    configs.append(("naive: 2 Python threads x NumPy OpenBLAS 1 thread", naive(1)))
    nb = _blas()  # NumPy's OpenBLAS default (= cores): 2 pool threads x nb BLAS threads
    configs.append((f"naive: 2 Python threads x NumPy OpenBLAS {nb} threads (oversubscribed)",
                    naive(nb)))

    def two_calls(nt):
        with ThreadPoolExecutor(2) as ex:
            list(ex.map(lambda h: dnm.dnm_score(X[h::2], P, Ng, num_threads=nt, **kw), (0, 1)))

    configs.append(("2 concurrent dnm calls x num_threads=1", lambda: two_calls(1)))
    configs.append(("2 concurrent dnm calls x num_threads=2 (oversubscribed)", lambda: two_calls(2)))

    results = []
    for name, fn in configs:
        r = measure(fn, a.repeats)
        results.append((name, *r))
        print(f"{name}: wall {r[0]:.3f} s, cpu {r[1]:.3f} s, alive {r[2]}, running p95 {r[3]} "
              f"mean {r[4]:.2f}", flush=True)

    err = np.max(np.abs(naive_dnm(X, P, Ng, idx, tau=0.9) - ref) / np.abs(ref))
    lines = [
        f"dnm {dnm.__version__} thread benchmark - {time.strftime('%Y-%m-%d %H:%M')}",
        f"machine: {platform.machine()}, {ncpu} cores; python {platform.python_version()}, "
        f"numpy {np.__version__}; load average before the run: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "thread pools: " + ", ".join(f"{p['internal_api']}:{os.path.basename(p['filepath'])}="
                                     f"{p['num_threads']}" for p in threadpoolctl.threadpool_info()),
        f"dnm.dnm_score on N={N}, C={C}, M={M}, D={D}, G={G}, float32; medians of {a.repeats} runs",
        "",
        "| configuration | wall s | CPU s | CPU/wall | threads alive (max) | running at once "
        "(p95) | running (mean) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, wall, cpu, alive, run95, runmean in results:
        lines.append(f"| {name} | {wall:.3f} | {cpu:.3f} | {cpu / wall:.2f} | {alive:.0f} | "
                     f"{run95:.0f} | {runmean:.2f} |")
    w1, w2 = results[0][1], results[1][1]
    lines += [
        "",
        f"dnm speed-up 1 -> 2 threads: {w1 / w2:.2f}x; CPU time 2 threads / 1 thread: "
        f"{results[1][2] / results[0][2]:.2f}",
        "Threads sampled every ~2 ms from /proc/self/task (the sampler excluded): 'alive' counts",
        "every thread (main, idle OpenMP / OpenBLAS pool threads, Python pool threads);",
        "'running' those in state R (95th percentile and mean over the samples).  More running",
        f"threads than the {ncpu} cores = oversubscription.",
        f"naive NumPy implementation vs dnm: max relative difference {err:.1e} (same score).",
        "Results of dnm are bitwise identical at 1 and 2 threads (asserted).",
    ]
    text = "\n".join(lines) + "\n"
    Path(a.out).write_text(text)
    print(text)


def _blas():
    return max(p["num_threads"] for p in threadpoolctl.threadpool_info()
               if p["internal_api"] == "openblas")


if __name__ == "__main__":
    sys.exit(main())
