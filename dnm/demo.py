"""``dnm demo``: every method of the package on the embedded synthetic benchmark.

.. warning::
   The data is **synthetic** (:mod:`dnm.synthetic`): no CLIP model, image or word is
   involved.  The numbers describe the methods on this random model, not on ImageNet.

Stages (each timed): generate the benchmark, mine negatives / fit one
:class:`dnm.NegativeLabelDetector` per method, score the ID images and every OOD set,
evaluate (FPR95, AUROC, AUPR-In, AUPR-Out), plot, write the report.  Outputs in ``out``:

* ``report.json``  - settings, benchmark summary, per-method metrics (fractions, full
  precision), negatives, timings;
* ``metrics.csv``  - one row per (method, dataset) incl. ``Average``, in % (4 decimals);
* ``hist_<method>.png``: ID-vs-OOD score histograms, one panel per OOD set;
* ``roc_<set>.png``: ROC curves of every method on one OOD set.

Use :func:`run_demo` from Python or ``dnm demo`` / ``python -m dnm demo`` from a shell.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import sys
import time
import warnings
from contextlib import contextmanager

import numpy as np

from . import methods as _methods
from ._io import markdown_table

__all__ = ["run_demo", "DEMO_METHODS", "METHOD_LABELS"]

#: Methods run by default, in table order (the registry's static methods).
DEMO_METHODS = tuple(n for n, m in _methods.METHODS.items() if not m.streaming)
METHOD_LABELS = {n: m.label for n, m in _methods.METHODS.items()}
#: The metric columns (names of dnm.evaluate; the FPR convention is the papers').
FPR_CONVENTION = "paper"
_ALL_COLS = (f"FPR95 ({FPR_CONVENTION})", "AUROC", "AUPR-In", "AUPR-Out")
_METRIC_COLS = _ALL_COLS[:3]

SYNTHETIC_NOTE = (
    "The data is SYNTHETIC (dnm.synthetic): random CLIP-like embeddings, no CLIP model, "
    "no images, no words. The numbers say how the methods behave on this random model, "
    "not on ImageNet or any real benchmark.")
PLOTS_SKIPPED = (
    "PNG plots skipped: matplotlib is not installed (pip install matplotlib, or "
    "pip install '.[plot]' in the dnm source folder)")
DNM_NOTE = (
    "On this synthetic data DNM's kNN log-distance rule is essentially a ranking by raw "
    "embedding norm (see 'dnm_selection' in report.json): it is not evidence that DNM "
    "removes false negatives.")


class _Timer:
    def __init__(self):
        self.stages = {}

    @contextmanager
    def stage(self, name):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - t0


def _bar(iterable, *, desc, quiet, unit, total=None):
    if quiet:
        return iterable
    from ._progress import tqdm_class

    return tqdm_class()(iterable, desc=desc, total=total, leave=False, file=sys.stderr, unit=unit)


def _check_methods(methods):
    if methods is None:
        return list(DEMO_METHODS)
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    methods = [str(m).lower().replace("-", "_") for m in methods]
    bad = [m for m in methods if m not in DEMO_METHODS]
    if bad or not methods:
        raise ValueError(f"methods: expected a non-empty subset of {list(DEMO_METHODS)}, "
                         f"got {methods!r}")
    return list(dict.fromkeys(methods))


def _wide_markdown(results, methods, datasets, digits=2):
    """One Markdown table: a row per method, FPR95/AUROC/AUPR-In per dataset (in %)."""
    head = ["method"] + [f"{d} {c} [%]" for d in datasets for c in _METRIC_COLS]
    rows = []
    for m in methods:
        cells = [METHOD_LABELS[m]]
        for d in datasets:
            for c in _METRIC_COLS:
                cells.append(f"{results[m]['metrics'][d][c] * 100:.{digits}f}")
        rows.append(cells)
    return markdown_table(head, rows)


def _roc_compare(scores, methods, dataset, path):
    """ROC curves of every method on one OOD set (ID positive)."""
    from .plot import roc_comparison

    roc_comparison({METHOD_LABELS[m]: (scores[m]["ID"], scores[m][dataset]) for m in methods},
                   title=f"ID vs '{dataset}' (synthetic data)", figsize=(5.5, 4.8), path=path,
                   dpi=100)


def _dnm_selection_stats(bench, det):
    """How DNM's selection relates to the raw norms and to the planted false negatives."""
    norms = np.linalg.norm(bench.candidates.astype(np.float64), axis=1)
    sel = det.negative_indices_
    out = {}
    for pos, is_adj in (("nouns", False), ("adjectives", True)):
        pool = np.flatnonzero(bench.is_adjective == is_adj)
        chosen = sel[bench.is_adjective[sel] == is_adj]
        if chosen.size == 0 or pool.size == 0:
            continue
        lowest = pool[np.argsort(norms[pool], kind="stable")[:chosen.size]]
        out[f"{pos}_overlap_with_lowest_norm"] = float(np.isin(chosen, lowest).mean())
    return out


def _near_id_share(bench, det):
    if det.negative_indices_.size == 0:
        return None
    return float(bench.is_near_id[det.negative_indices_].mean())


def run_demo(out="dnm-demo-output", *, size="default", seed=0, methods=None,
             preset=_methods.DEFAULT_BACKBONE,
             plots=True, quiet=False, num_threads=None, stream=None):
    """Run the demo; returns the report dict (also written to ``out/report.json``).

    size: ``"default"`` (1,000 ID classes, 20,000 candidates, 5,000 ID + 2 x 2,500 OOD
    images; a few minutes at most on 2 cores) or ``"small"`` (seconds).
    methods: subset of :data:`DEMO_METHODS` (list or comma-separated string); default all.
    preset: the DNM backbone preset (:mod:`dnm.methods`).  plots: write PNGs (with matplotlib;
    without it everything else is written and one printed line says how to get the PNGs).
    quiet: no progress bars and no printed output.  stream: where to print (stdout).
    """
    from . import __version__, get_num_threads, metrics as _metrics
    from .detector import NegativeLabelDetector
    from .synthetic import make_benchmark

    methods = _check_methods(methods)
    preset = _methods.backbone_name(preset)
    if stream is None:
        stream = sys.stdout

    def say(*a):
        if not quiet:
            print(*a, file=stream, flush=True)

    plots_skipped = None
    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:  # a plain install: everything but the PNGs
            plots, plots_skipped = False, PLOTS_SKIPPED
    out = os.fspath(out)
    os.makedirs(out, exist_ok=True)
    timer = _Timer()
    notes = []

    say(f"dnm {__version__} demo - {SYNTHETIC_NOTE}")
    with timer.stage("generate"):
        bench = make_benchmark(size, seed=seed)
    summ = bench.summary()
    datasets = bench.ood_names
    say(f"benchmark '{size}' (seed {seed}): {summ['n_id_classes']} ID labels, "
        f"{summ['n_candidates']} candidate phrases ({summ['n_adjectives']} adjectives, "
        f"{summ['n_near_id']} planted near-duplicates of ID names), {summ['n_id_images']} ID "
        f"images, OOD sets " + ", ".join(f"{k} ({v})" for k, v in summ["ood_sets"].items())
        + f", dim {summ['dim']}")

    results = {}
    detectors = {}
    method_times = {m: {} for m in methods}
    with timer.stage("mine"):
        for m in _bar(methods, desc="mine/fit", quiet=quiet, unit="method"):
            t0 = time.perf_counter()
            # a tile-level bar only for the one long kernel (DNM's N x N kNN pass)
            inner = not quiet and m == "dnm" and len(bench.candidates) >= 10000
            det = NegativeLabelDetector(m, preset=preset, num_threads=num_threads,
                                        progress=inner)
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                det.fit(bench.id_labels, bench.candidates, is_adjective=bench.is_adjective,
                        phrases=bench.candidate_names, id_names=bench.id_names)
            notes += [f"{METHOD_LABELS[m]} fit: {x.message}" for x in w]
            detectors[m] = det
            method_times[m]["mine"] = time.perf_counter() - t0

    scores = {}
    sets = [("ID", bench.id_images)] + [(d, bench.ood_images[d]) for d in datasets]
    with timer.stage("score"):
        for m in _bar(methods, desc="score", quiet=quiet, unit="method"):
            t0 = time.perf_counter()
            det = detectors[m]
            scores[m] = {}
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                for name, X in sets:
                    scores[m][name] = det.score_samples(X)
            notes += [f"{METHOD_LABELS[m]} score: {x.message}" for x in w]
            method_times[m]["score"] = time.perf_counter() - t0

    with timer.stage("evaluate"):
        for m in methods:
            res = _metrics.evaluate(scores[m]["ID"], {d: scores[m][d] for d in datasets},
                                    convention=FPR_CONVENTION, num_threads=num_threads)
            det = detectors[m]
            results[m] = {
                "label": METHOD_LABELS[m],
                "params": {k: (v if not isinstance(v, np.ndarray) else "array")
                           for k, v in (("temperature", det.temperature_), ("tau", det.tau_),
                                        ("groups", det.groups_), ("k", det.k_),
                                        ("noun_ratio", det.noun_ratio_),
                                        ("adj_ratio", det.adj_ratio_), ("ratio", det.ratio_),
                                        ("percentile", det.percentile_),
                                        ("max_cut", det.max_cut_)) if v is not None},
                "n_negatives": int(det.negative_indices_.size),
                "negatives_near_id_share": _near_id_share(bench, det),
                "metrics": res.to_dict(),
                "times": method_times[m],
            }
        if "dnm" in methods:
            results["dnm"]["dnm_selection"] = _dnm_selection_stats(bench, detectors["dnm"])

    files = []
    if plots:
        from . import plot as _plot

        with timer.stage("plot"):
            jobs = [("hist", m) for m in methods] + [("cmp", d) for d in datasets]
            for kind, what in _bar(jobs, desc="plot", quiet=quiet, unit="figure"):
                if kind == "cmp":
                    p = os.path.join(out, f"roc_{what}.png")
                    _roc_compare(scores, methods, what, p)
                else:
                    ood = {d: scores[what][d] for d in datasets}
                    p = os.path.join(out, f"hist_{what}.png")
                    fig = _plot.score_histograms(scores[what]["ID"], ood, id_label="ID")
                    fig.suptitle(f"{METHOD_LABELS[what]} scores (synthetic data)")
                    fig.savefig(p, dpi=100, bbox_inches="tight")
                files.append(os.path.basename(p))

    datasets_avg = datasets + ["Average"]
    table = _wide_markdown(results, methods, datasets_avg)
    near_corpus = float(bench.is_near_id.mean())

    with timer.stage("report"):
        csv_path = os.path.join(out, "metrics.csv")
        with open(csv_path, "w", newline="", encoding="utf-8") as f:
            wr = csv.writer(f)
            wr.writerow(["method", "dataset"] + [f"{c} [%]" for c in _ALL_COLS])
            for m in methods:
                for d in datasets_avg:
                    r = results[m]["metrics"][d]
                    wr.writerow([m, d] + [f"{r[c] * 100:.4f}" for c in _ALL_COLS])
    files = ["report.json", "metrics.csv"] + files
    report = {
        "synthetic": True,
        "note": SYNTHETIC_NOTE,
        "dnm_version": __version__,
        "settings": {"size": size, "seed": int(seed), "preset": preset,
                     "methods": methods, "fpr_convention": FPR_CONVENTION, "tpr": 0.95,
                     "metrics_units": "fraction",
                     "num_threads": int(num_threads) if num_threads else get_num_threads()},
        "benchmark": {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in summ.items()},
                      "near_id_share_of_corpus": near_corpus},
        "datasets": datasets,
        "methods": results,
        "timings_seconds": dict(timer.stages),
        "warnings": notes,
        "environment": {"python": platform.python_version(), "numpy": np.__version__,
                        "platform": platform.platform()},
        "files": files,
        "plots_skipped": plots_skipped,
    }
    json_path = os.path.join(out, "report.json")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, allow_nan=False)
        f.write("\n")

    say("")
    say(f"FPR95 ({FPR_CONVENTION}): FPR at 95% TPR, {FPR_CONVENTION} convention (the DNM, MCM, "
        "NegLabel and CSP code; lower is better); AUROC and AUPR-In (higher is better); in %; "
        "ID = positive:")
    say(table)
    say("negatives per method: " + ", ".join(
        f"{METHOD_LABELS[m]} {results[m]['n_negatives']}" for m in methods
        if results[m]["n_negatives"]))
    shares = [f"{METHOD_LABELS[m]} {results[m]['negatives_near_id_share'] * 100:.2f}%"
              for m in methods if results[m]["negatives_near_id_share"] is not None]
    if shares:
        say(f"planted false negatives (near-duplicates of ID names) among the negatives: "
            + ", ".join(shares) + f" (corpus: {near_corpus * 100:.2f}%)")
    if "dnm" in methods and results["dnm"].get("dnm_selection"):
        st = results["dnm"]["dnm_selection"]
        say("DNM selection vs the lowest-norm candidates (same count): " + ", ".join(
            f"{k.split('_')[0]} {v * 100:.1f}% overlap" for k, v in st.items()))
        say(DNM_NOTE)
    for n in notes:
        say(f"warning: {n}")
    say("time per stage: " + ", ".join(f"{k} {v:.2f}s" for k, v in timer.stages.items())
        + f" (total {sum(timer.stages.values()):.2f}s)")
    say("time per method: " + ", ".join(
        f"{METHOD_LABELS[m]} mine {method_times[m]['mine']:.2f}s / score "
        f"{method_times[m]['score']:.2f}s" for m in methods))
    say(f"wrote {len(files)} files to {out}{os.sep}: " + ", ".join(files))
    if plots_skipped:
        say(plots_skipped)
    say(SYNTHETIC_NOTE)
    return report
