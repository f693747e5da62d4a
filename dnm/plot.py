"""Evaluation plots (needs matplotlib: ``pip install matplotlib``, or the ``plot`` extra).

* :func:`score_histograms` - ID vs OOD score histograms, one panel per OOD set,
  titled with that set's FPR (its convention named) and AUROC; the range comes from
  robust quantiles, or a named percentile scale where scores crowd at one end.
* :func:`roc_curves` - ROC curves of every OOD set on one axes (ID positive),
  with the AUROC in the legend and the target TPR marked;
  :func:`roc_comparison` - the same for any (ID, OOD) pairs, e.g. methods on one set.

Both return a :class:`matplotlib.figure.Figure` built without pyplot (no global
state, nothing opened on screen; Jupyter displays it when it is the cell's
value) and write a PNG when ``path=`` is given.  Scores: higher = more
in-distribution, as everywhere in dnm.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np

from . import metrics as _metrics
from ._validate import check_int

__all__ = ["score_histograms", "roc_curves", "roc_comparison"]

_ID_COLOR = "#1f77b4"
_OOD_COLORS = ["#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf"]


def _figure_cls():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "dnm.plot needs matplotlib, which is not installed: pip install matplotlib "
            "(or pip install '.[plot]' in the dnm source folder)"
        ) from None
    return Figure


def _save(fig, path, dpi):
    if path is not None:
        path = os.fspath(path)
        fig.savefig(path, dpi=dpi, format="png" if not os.path.splitext(path)[1] else None,
                    bbox_inches="tight")
    return fig


#: Each set's central 98% must span at least this share of a linear axis; else "auto" plots
#: the percentile scale.
READABLE_SPREAD = 0.15


def _central(x):
    lo, hi = np.quantile(x, [0.01, 0.99])
    return float(lo), float(hi)


def _linear_range(arrays):
    """The x range from robust quantiles: every set's central 99%, plus a small margin."""
    lo = min(float(np.quantile(x, 0.005)) for x in arrays)
    hi = max(float(np.quantile(x, 0.995)) for x in arrays)
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.03 * (hi - lo)
    return lo - pad, hi + pad


def _spread(arrays, lo, hi):
    """The smallest share of [lo, hi] that a set's central 98% spans (constant sets skipped)."""
    widths = [b - a for a, b in map(_central, arrays)]
    widths = [w for w in widths if w > 0]
    return min(widths) / (hi - lo) if widths else 1.0


class _PercentileScale:
    """x -> the mean over the sets of each set's mid-rank CDF at x: monotone in the score
    (rank-preserving), and every set's central 98% spans at least 0.98 / (number of sets)."""

    def __init__(self, arrays):
        self.sorted = [np.sort(x) for x in arrays]

    def __call__(self, x):
        x = np.asarray(x, dtype=np.float64)
        out = np.zeros(x.shape)
        for s in self.sorted:
            out += (np.searchsorted(s, x, "left") + np.searchsorted(s, x, "right")) / (2.0 * s.size)
        return out / len(self.sorted)

    def ticks(self, n=5):
        """Tick positions and raw-score labels: scores at evenly spaced points of the scale."""
        pool = np.unique(np.concatenate(self.sorted))
        f = self(pool)
        want = np.linspace(0.0, 1.0, n + 2)[1:-1]
        raw = pool[np.minimum(np.searchsorted(f, want), pool.size - 1)]
        raw = np.unique(raw)
        pos = self(raw)
        for digits in range(3, 18):  # enough digits that each label reads as its position
            labels = [f"{v:.{digits}g}" for v in raw]
            back = self(np.array([float(x) for x in labels]))
            if len(set(labels)) == len(labels) and np.all(np.abs(back - pos) <= 0.01):
                break
        return pos, labels


def score_histograms(id_scores, ood_sets, *, bins=100, density=True, ncols=None,
                     tpr=0.95, convention="paper", id_label="ID", scale="auto",
                     panel_size=(4.0, 3.0), path=None, dpi=120):
    """ID-vs-OOD score histograms, one panel per OOD set.

    ``ood_sets``: a mapping ``{name: scores}`` (or ``(name, scores)`` pairs, or one
    array).  Each panel overlays the ID histogram and that set's histogram, marks the
    threshold accepting ``tpr`` of ID scores, and shows that set's FPR (``convention``,
    named) and AUROC in its title.  ``density=True`` normalises each histogram by its
    set's size (sets of different sizes stay comparable).  ``id_scores``: one array, or a
    mapping ``{name: ID scores}`` with the ID scores of each OOD set's panel (a test-time
    adaptive method streams the ID set once per OOD set, so its ID scores differ per set).

    ``scale``: ``"linear"`` - raw scores on shared bins over a range from robust
    quantiles (every set's central 99%, so one outlier does not squeeze the rest; scores
    beyond it are counted in the legend); ``"percentile"`` - a monotone, rank-preserving
    transform, per panel: the mean of ID's and that set's (mid-rank) CDFs, so each set's
    central 98% spans at least half the axis, with ticks labelled by raw scores and the
    scale named on the axis; ``"auto"`` (default) - linear when each set's central 98%
    spans at least :data:`READABLE_SPREAD` of the axis, else percentile (scores crowded at
    one end, e.g. NegLabel's near 1).  Returns the Figure; writes a PNG to ``path`` if given.
    """
    Figure = _figure_cls()
    if scale not in ("auto", "linear", "percentile"):
        raise ValueError(f"scale: expected 'auto', 'linear' or 'percentile', got {scale!r}")
    sets = _metrics._named_sets(ood_sets)
    arrays = [(name, _metrics._as_scores(s, f"ood_sets[{name!r}]")) for name, s in sets]
    if isinstance(id_scores, Mapping):  # one ID set per OOD set (test-time adaptive streams)
        missing = [name for name, _ in arrays if name not in id_scores]
        if missing:
            raise ValueError(f"id_scores: a mapping needs the ID scores of every OOD set; "
                             f"missing {missing}")
        ids = [_metrics._as_scores(id_scores[name], f"id_scores[{name!r}]")
               for name, _ in arrays]
    else:
        ids = [_metrics._as_scores(id_scores, "id_scores")] * len(arrays)
    t = _metrics._check_tpr(tpr)
    _metrics._check_convention(convention)
    stats = [_metrics._pack(_metrics._run(a, b, t, ood_name=f"ood_sets[{name!r}]"), convention)
             for a, (name, b) in zip(ids, arrays)]  # also checks finiteness, naming the set
    pool = list({id(a): a for a in ids}.values()) + [b for _, b in arrays]
    lo, hi = _linear_range(pool)
    if scale == "auto":
        scale = "linear" if _spread(pool, lo, hi) >= READABLE_SPREAD else "percentile"

    n = len(arrays)
    ncols = min(n, 3) if ncols is None else max(1, int(ncols))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=scale == "linear")
    fcol = _metrics._fpr_column(t, convention)

    def hist(x, f, edges):
        h, _ = np.histogram(f(x), bins=edges)
        outside = x.size - int(h.sum())
        if density:
            h = h / (x.size * np.diff(edges))
        return h, outside

    for k, (a, (name, b), st) in enumerate(zip(ids, arrays, stats)):
        ax = axes[k // ncols][k % ncols]
        thr = float(np.quantile(a, 1.0 - t))  # accepts (about) tpr of ID scores
        if scale == "linear":
            f = np.asarray
            edges = np.linspace(lo, hi, int(bins) + 1)
            ax.set_xlim(lo, hi)
            ax.set_xlabel("score (higher = more in-distribution)")
        else:
            f = _PercentileScale([a, b])
            edges = np.linspace(0.0, 1.0, int(bins) + 1)
            ax.set_xlim(0.0, 1.0)
            pos, labels = f.ticks()
            ax.set_xticks(pos, labels)
            ax.set_xlabel("score (higher = more in-distribution), percentile scale:\n"
                          f"mean CDF of {id_label} and {name}; ticks are raw scores",
                          fontsize="small")
        ax.dnm_scale = scale
        color = _OOD_COLORS[k % len(_OOD_COLORS)]
        for x, lab, col in ((a, id_label, _ID_COLOR), (b, name, color)):
            h, outside = hist(x, f, edges)
            extra = f", {outside:,} beyond the axis" if outside else ""
            ax.stairs(h, edges, fill=True, alpha=0.45, color=col,
                      label=f"{lab} (n={x.size:,}{extra})")
        ax.axvline(float(f(thr)), color="black", linestyle="--", linewidth=1.0,
                   label=f"{t * 100:g}% TPR threshold")
        ax.set_title(f"{name}: {fcol} {st['fpr'] * 100:.2f}%, AUROC {st['auroc'] * 100:.2f}%",
                     fontsize="medium")
        ax.tick_params(labelbottom=True)
        ax.set_ylabel("density" if density else "count")
        ax.legend(fontsize="small", frameon=False)
    for k in range(n, nrows * ncols):  # unused panels
        fig.delaxes(axes[k // ncols][k % ncols])
    return _save(fig, path, dpi)


def _thin(fpr, tpr, max_points):
    """Keep at most ~max_points ROC points (endpoints always kept)."""
    if fpr.size <= max_points:
        return fpr, tpr
    idx = np.unique(np.r_[np.linspace(0, fpr.size - 1, max_points).astype(np.int64), fpr.size - 1])
    return fpr[idx], tpr[idx]


def roc_curves(id_scores, ood_sets, *, tpr=0.95, max_points=2000, figsize=(5.0, 4.5),
               path=None, dpi=120):
    """ROC curves (ID positive: TPR = share of ID accepted, FPR = share of OOD
    accepted) of every OOD set on one axes, with AUROC in the legend, the chance
    diagonal and a dotted line at TPR = ``tpr``.  Curves with more than
    ``max_points`` points are thinned for drawing (AUROC is computed exactly).
    Returns the Figure; writes a PNG when ``path`` is given."""
    sets = _metrics._named_sets(ood_sets)
    return roc_comparison({name: (id_scores, s) for name, s in sets}, tpr=tpr,
                          max_points=max_points, figsize=figsize, path=path, dpi=dpi)


def roc_comparison(curves, *, tpr=0.95, max_points=2000, figsize=(5.0, 4.5),
                   title="ROC, ID positive", path=None, dpi=120):
    """ROC curves of several (ID scores, OOD scores) pairs on one axes, e.g. several methods
    on one OOD set: ``curves`` maps a legend label to its pair.  As :func:`roc_curves`
    otherwise.  Returns the Figure; writes a PNG when ``path`` is given."""
    Figure = _figure_cls()
    t = _metrics._check_tpr(tpr)
    max_points = check_int(max_points, "max_points", low=2)
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    for k, (name, (id_s, ood_s)) in enumerate(curves.items()):
        a = _metrics._as_scores(id_s, "id_scores")
        b = _metrics._as_scores(ood_s, f"ood_sets[{name!r}]")
        auc = _metrics._run(a, b, t, ood_name=f"ood_sets[{name!r}]").auroc
        fpr, tp, _ = _metrics.roc_curve(a, b)
        fpr, tp = _thin(fpr, tp, max_points)
        ax.plot(fpr, tp, color=_OOD_COLORS[k % len(_OOD_COLORS)], linewidth=1.5,
                label=f"{name} (AUROC {auc * 100:.2f}%)")
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=0.8, label="chance")
    ax.axhline(t, color="black", linestyle=":", linewidth=0.8, label=f"TPR = {t * 100:g}%")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("FPR (share of OOD accepted as ID)")
    ax.set_ylabel("TPR (share of ID accepted)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path, dpi)
