"""``dnm demo``: every method of the package on the embedded synthetic benchmark.

.. warning::
   The data is **synthetic** (:mod:`dnm.synthetic`): no CLIP model, image or word is
   involved.  The numbers describe the methods on this random model, not on ImageNet.

The demo is one :func:`dnm.benchmark.run_benchmark` call on the synthetic benchmark.  Stages
(each timed): generate the benchmark; mine negatives / fit one
:class:`dnm.NegativeLabelDetector` per static method (AdaNeg and TANL take NegLabel's
selection, as their official code does); then ``run_benchmark`` scores and evaluates every
method (FPR95, AUROC, AUPR-In, AUPR-Out), the test-time adaptive ones (AdaNeg, TANL) as the
official evaluation does: one stream per OOD set, the ID images and that set shuffled with the
seed, in batches of 256; plot; write the report.  TANL's noise images are the benchmark's
synthetic stand-ins (:attr:`dnm.synthetic.SyntheticBenchmark.noise_images`).  Outputs in ``out``:

* ``report.json``  - settings, benchmark summary, per-method metrics (fractions, full
  precision), negatives, timings;
* ``metrics.csv``  - one row per (method, dataset) incl. ``Average``, in % (4 decimals);
* ``hist_<method>.png``: ID-vs-OOD score histograms, one panel per OOD set (for the
  adaptive methods, each panel shows the ID scores of that set's stream);
* ``roc_<set>.png``: ROC curves of every method on one OOD set.

Use :func:`run_demo` from Python or ``dnm demo`` / ``python -m dnm demo`` from a shell.
"""
from __future__ import annotations

import csv
import inspect
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

__all__ = ["run_demo", "DEMO_METHODS", "METHOD_LABELS", "AdaNegStream", "TANLStream"]

#: The test-time adaptive methods of the demo, run through the objects below (not through
#: registry names).
STREAM_METHODS = {"adaneg": "AdaNeg", "tanl": "TANL"}
#: Methods run by default, in table order: the registry's static methods, then AdaNeg, TANL.
DEMO_METHODS = (tuple(n for n, m in _methods.METHODS.items() if not m.streaming)
                + tuple(n for n in STREAM_METHODS if n not in _methods.METHODS
                        or _methods.METHODS[n].streaming))
METHOD_LABELS = {**STREAM_METHODS, **{n: m.label for n, m in _methods.METHODS.items()}}
#: The metric columns (names of dnm.evaluate; the FPR convention is the papers').
FPR_CONVENTION = "paper"
_ALL_COLS = (f"FPR95 ({FPR_CONVENTION})", "AUROC", "AUPR-In", "AUPR-Out")
_METRIC_COLS = _ALL_COLS[:3]
#: The name of the ID set in the run_benchmark call.
_ID = "ID"

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


def _defaults(fn, skip=("seed", "num_threads", "progress", "output", "id_order",
                           "noise_order")):
    """The keyword-only defaults of ``fn`` (the official scripts' values), minus ``skip``."""
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.kind is p.KEYWORD_ONLY and k not in skip}


class _StreamMethod:
    """A test-time adaptive method for :func:`dnm.benchmark.run_benchmark`:
    ``score_stream(X, seed)`` scores one stream (in stream order) from a fresh state."""

    name = label = None

    def __init__(self, *, num_threads=None, **params):
        self.params = {**_defaults(self._fn()), **params}
        self.num_threads = num_threads

    @staticmethod
    def _fn():
        raise NotImplementedError

    def score_stream(self, X, seed):
        return self._fn()(X, *self._arrays, seed=seed, num_threads=self.num_threads,
                          **self.params)


class AdaNegStream(_StreamMethod):
    """AdaNeg (:func:`dnm.adaneg_score`) on ``id_labels`` (C, D) and ``negatives`` (M, D);
    the run's seed draws the grouping of the negatives."""

    name, label = "adaneg", "AdaNeg"

    def __init__(self, id_labels, negatives, **kw):
        super().__init__(**kw)
        self._arrays = (id_labels, negatives)

    @staticmethod
    def _fn():
        from .tta import adaneg_score

        return adaneg_score


class TANLStream(_StreamMethod):
    """TANL (:func:`dnm.tanl_score`) on ``id_labels`` (C, D), ``corpus`` (K, D, selected
    negatives first) and ``noise`` (15, D); the run's seed draws the queues' orders."""

    name, label = "tanl", "TANL"

    def __init__(self, id_labels, corpus, noise, **kw):
        super().__init__(**kw)
        self._arrays = (id_labels, corpus, noise)

    @staticmethod
    def _fn():
        from .tta import tanl_score

        return tanl_score


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


def _pair(scores, m, dataset):
    """(ID scores, OOD scores) of method ``m`` on ``dataset``: for a streamed method the ID
    scores come from that set's stream."""
    got = scores[m]
    return got.get(f"{_ID} (stream with {dataset})", got.get(_ID)), got[dataset]


def _roc_compare(scores, methods, dataset, path):
    """ROC curves of every method on one OOD set (ID positive)."""
    from .plot import roc_comparison

    roc_comparison({METHOD_LABELS[m]: _pair(scores, m, dataset) for m in methods},
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


def _selected(det):
    return det.negative_indices_ if det.negative_indices_ is not None else np.zeros(0, np.int64)


def _near_id_share(bench, idx):
    if idx.size == 0:
        return None
    return float(bench.is_near_id[idx].mean())


def _detector_params(det):
    return {k: (v if not isinstance(v, np.ndarray) else "array")
            for k, v in (("temperature", det.temperature_), ("tau", det.tau_),
                         ("groups", det.groups_), ("k", det.k_),
                         ("noun_ratio", det.noun_ratio_), ("adj_ratio", det.adj_ratio_),
                         ("ratio", det.ratio_), ("percentile", det.percentile_),
                         ("max_cut", det.max_cut_)) if v is not None}


def run_demo(out="dnm-demo-output", *, size="default", seed=0, methods=None,
             preset=_methods.DEFAULT_BACKBONE,
             plots=True, quiet=False, num_threads=None, stream=None):
    """Run the demo; returns the report dict (also written to ``out/report.json``).

    size: ``"default"`` (1,000 ID classes, 20,000 candidates, 5,000 ID + 2 x 2,500 OOD
    images; about a minute on 2 cores) or ``"small"`` (seconds).
    seed: the benchmark's seed, also the run's seed (groupings of the negatives, the
    shuffle of the adaptive methods' streams, TANL's queue orders).
    methods: subset of :data:`DEMO_METHODS` (list or comma-separated string); default all.
    preset: the DNM backbone preset (:mod:`dnm.methods`).  plots: write PNGs (with matplotlib;
    without it everything else is written and one printed line says how to get the PNGs).
    quiet: no progress bars and no printed output.  stream: where to print (stdout).
    """
    from . import __version__, get_num_threads
    from .benchmark import run_benchmark
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

    # --- mine / fit: one detector per static method; AdaNeg and TANL take NegLabel's selection
    fitted, selections, results = {}, {}, {}
    method_times = {m: {} for m in methods}
    shared = {}

    def fit(name, progress=False):
        det = NegativeLabelDetector(name, preset=preset, seed=seed, num_threads=num_threads,
                                    progress=progress)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            det.fit(bench.id_labels, bench.candidates, is_adjective=bench.is_adjective,
                    phrases=bench.candidate_names, id_names=bench.id_names)
        notes.extend(f"{METHOD_LABELS[name]} fit: {x.message}" for x in w)
        return det

    def neglabel():  # fitted once, for NegLabel's row and the adaptive methods
        if "neglabel" not in shared:
            shared["neglabel"] = fit("neglabel")
        return shared["neglabel"]

    with timer.stage("mine"):
        for m in _bar(methods, desc="mine/fit", quiet=quiet, unit="method"):
            t0 = time.perf_counter()
            if m == "adaneg":
                det = neglabel()
                selections[m] = _selected(det)
                fitted[m] = AdaNegStream(bench.id_labels, det.negatives_,
                                         num_threads=num_threads)
            elif m == "tanl":
                idx = _selected(neglabel())
                rest = np.setdiff1d(np.arange(len(bench.candidates)), idx)  # index order
                selections[m] = idx
                fitted[m] = TANLStream(bench.id_labels, bench.candidates[np.r_[idx, rest]],
                                       bench.noise_images, num_threads=num_threads)
            else:
                # a tile-level bar only for the one long kernel (DNM's N x N kNN pass)
                det = neglabel() if m == "neglabel" else fit(
                    m, not quiet and m == "dnm" and len(bench.candidates) >= 10000)
                fitted[m] = det
                selections[m] = _selected(det)
            method_times[m]["mine"] = time.perf_counter() - t0

    # --- the main job: one run_benchmark call (scores, metrics; one stream per OOD set for
    # the adaptive methods)
    features = {_ID: bench.id_images, **{d: bench.ood_images[d] for d in datasets}}
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = run_benchmark(features, id_name=_ID, methods={m: fitted[m] for m in methods},
                            seeds=[seed], preset=preset, tpr=0.95, conventions=[FPR_CONVENTION],
                            progress=not quiet, num_threads=num_threads)
    for x in w:
        msg = str(x.message)
        label, sep, rest = msg.partition(": ")
        notes.append(f"{METHOD_LABELS[label]} score: {rest}" if sep and label in METHOD_LABELS
                     else msg)
    timer.stages["score"] = sum(res.timings[m]["score"] for m in methods)
    timer.stages["evaluate"] = sum(res.timings[m]["evaluate"] for m in methods)
    scores = {m: res.scores[(m, seed)] for m in methods}
    metrics = {m: {} for m in methods}
    for r in res.per_seed:
        metrics[r["method"]][r["dataset"]] = {c: r[c] for c in _ALL_COLS}

    for m in methods:
        obj = fitted[m]
        method_times[m]["score"] = res.timings[m]["score"]
        idx = selections[m]
        entry = {"label": METHOD_LABELS[m]}
        if isinstance(obj, _StreamMethod):
            entry["params"] = dict(obj.params)
            entry["stream"] = ("one stream per OOD set: the ID images and that set, shuffled "
                               f"with seed {seed}, in batches of {obj.params['batch_size']}")
            entry["negatives_from"] = "neglabel"
            if m == "tanl":
                entry["corpus_size"] = int(len(bench.candidates))
                entry["noise"] = "SyntheticBenchmark.noise_images (synthetic stand-ins)"
        else:
            entry["params"] = _detector_params(obj)
        entry.update({"n_negatives": int(idx.size),
                      "negatives_near_id_share": _near_id_share(bench, idx),
                      "metrics": metrics[m], "times": method_times[m]})
        results[m] = entry
    if "dnm" in methods:
        results["dnm"]["dnm_selection"] = _dnm_selection_stats(bench, fitted["dnm"])

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
                    pairs = {d: _pair(scores, what, d) for d in datasets}
                    ids = {d: a for d, (a, _) in pairs.items()}
                    ood = {d: b for d, (_, b) in pairs.items()}
                    streamed = isinstance(fitted[what], _StreamMethod)
                    p = os.path.join(out, f"hist_{what}.png")
                    fig = _plot.score_histograms(ids if streamed else scores[what][_ID], ood,
                                                 id_label="ID (that set's stream)" if streamed
                                                 else "ID")
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
    streamed = [m for m in methods if isinstance(fitted[m], _StreamMethod)]
    report = {
        "synthetic": True,
        "note": SYNTHETIC_NOTE,
        "dnm_version": __version__,
        "settings": {"size": size, "seed": int(seed), "preset": preset,
                     "methods": methods, "fpr_convention": FPR_CONVENTION, "tpr": 0.95,
                     "metrics_units": "fraction", "runner": "dnm.benchmark.run_benchmark",
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
    if streamed:
        say(", ".join(METHOD_LABELS[m] for m in streamed) + ": test-time adaptive, one stream "
            f"per OOD set (the ID images and that set, shuffled with seed {seed}, batches of "
            f"256), on NegLabel's negatives"
            + ("; TANL's noise images are synthetic stand-ins" if "tanl" in streamed else ""))
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
