"""Benchmark: dnm.metrics (C, radix sort + one pass) against scikit-learn on the
same scores in the same run.  Default: 10 million scores (5M ID + 5M OOD, float64,
continuous), median of --repeats runs.  Writes benchmarks/results/metrics.txt.

    python benchmarks/bench_metrics.py [--n-id 5000000] [--n-ood 5000000] [--repeats 3]
"""
import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import sklearn
from sklearn.metrics import roc_auc_score, roc_curve

import dnm
from dnm import metrics as M


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-id", type=int, default=5_000_000)
    ap.add_argument("--n-ood", type=int, default=5_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "metrics.txt"))
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    id_scores = rng.normal(1.0, 1.0, args.n_id)
    ood_scores = rng.normal(0.0, 1.0, args.n_ood)
    y = np.r_[np.ones(args.n_id), np.zeros(args.n_ood)]
    s = np.r_[id_scores, ood_scores]
    r = args.repeats

    def sk_auroc():
        return roc_auc_score(y, s)

    def sk_fpr95():  # OpenOOD's formula: OOD positive on -scores, first tpr >= 0.95
        fpr, tpr, _ = roc_curve(1 - y, -s)
        return fpr[np.argmax(tpr >= 0.95)]

    rows = []
    t_sk_auc, v_sk_auc = timed(sk_auroc, r)
    t_sk_fpr, v_sk_fpr = timed(sk_fpr95, r)
    for nt in (1, None):
        label = "1 thread" if nt == 1 else f"{dnm.get_num_threads() if nt is None else nt} threads"
        t_auc, v_auc = timed(lambda: M.auroc(id_scores, ood_scores, num_threads=nt), r)
        t_fpr, v_fpr = timed(lambda: M.fpr_at_tpr(id_scores, ood_scores, 0.95, "openood",
                                                  num_threads=nt), r)
        t_all, _ = timed(lambda: M.all_metrics(id_scores, ood_scores, num_threads=nt), r)
        assert abs(v_auc - v_sk_auc) <= 1e-12, (v_auc, v_sk_auc)
        assert v_fpr == v_sk_fpr, (v_fpr, v_sk_fpr)
        rows.append((f"AUROC, dnm ({label})", t_auc, t_sk_auc / t_auc))
        rows.append((f"FPR@95 openood, dnm ({label})", t_fpr, t_sk_fpr / t_fpr))
        rows.append((f"all 6 metrics, dnm ({label})", t_all, (t_sk_auc + t_sk_fpr) / t_all))
    rows.insert(0, ("FPR@95 openood, sklearn roc_curve", t_sk_fpr, 1.0))
    rows.insert(0, ("AUROC, sklearn roc_auc_score", t_sk_auc, 1.0))

    lines = [
        f"# dnm.metrics vs scikit-learn: {args.n_id:,} ID + {args.n_ood:,} OOD float64 scores "
        f"(normal, no ties), median of {r}",
        f"# {platform.platform()}, {os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.2f}, "
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"scikit-learn {sklearn.__version__}, dnm {dnm.__version__}",
        f"# command: python {' '.join(sys.argv)}",
        f"# AUROC = {v_sk_auc:.15f} (both), FPR@95 openood = {v_sk_fpr:.7f} (both); "
        "'all 6 metrics' speed-up is against sklearn AUROC + FPR time",
        "",
        f"{'what':<40} {'seconds':>9} {'speed-up vs sklearn':>20}",
        f"{'-' * 40} {'-' * 9} {'-' * 20}",
    ]
    for name, t, sp in rows:
        lines.append(f"{name:<40} {t:>9.3f} {sp:>19.1f}x")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
