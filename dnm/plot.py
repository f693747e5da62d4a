"""Evaluation plots (needs matplotlib: ``pip install matplotlib``, or the ``plot`` extra).

* :func:`score_histograms` - ID vs OOD score histograms, one panel per OOD set,
  titled with that set's FPR and AUROC.
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

import numpy as np

from . import metrics as _metrics

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


def score_histograms(id_scores, ood_sets, *, bins=100, density=True, ncols=None,
                     tpr=0.95, convention="paper", id_label="ID", panel_size=(4.0, 3.0),
                     path=None, dpi=120):
    """ID-vs-OOD score histograms, one panel per OOD set.

    ``ood_sets``: a mapping ``{name: scores}`` (or ``(name, scores)`` pairs, or one
    array).  Each panel overlays the ID histogram and that set's histogram on
    shared bin edges (``bins`` edges over the pooled range of ID and all OOD
    scores, so panels are comparable), marks the threshold accepting ``tpr`` of
    ID scores, and shows that set's FPR (``convention``) and AUROC in its title.
    ``density=True`` normalises each histogram to unit area (sets of different
    sizes stay comparable).  Returns the Figure; writes a PNG to ``path`` if given.
    """
    Figure = _figure_cls()
    sets = _metrics._named_sets(ood_sets)
    a = _metrics._as_scores(id_scores, "id_scores")
    arrays = [(name, _metrics._as_scores(s, f"ood_sets[{name!r}]")) for name, s in sets]
    t = _metrics._check_tpr(tpr)
    _metrics._check_convention(convention)
    stats = [_metrics._pack(_metrics._run(a, b, t, ood_name=f"ood_sets[{name!r}]"), convention)
             for name, b in arrays]  # also checks finiteness, naming the set
    lo = min(float(a.min()), *(float(b.min()) for _, b in arrays))
    hi = max(float(a.max()), *(float(b.max()) for _, b in arrays))
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, int(bins) + 1)
    thr = float(np.quantile(a, 1.0 - t))  # accepts (about) tpr of ID scores

    n = len(arrays)
    ncols = min(n, 3) if ncols is None else max(1, int(ncols))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
    h_id, _ = np.histogram(a, bins=edges, density=density)
    fcol = _metrics._fpr_column(t, convention)
    for k, ((name, b), st) in enumerate(zip(arrays, stats)):
        ax = axes[k // ncols][k % ncols]
        h_ood, _ = np.histogram(b, bins=edges, density=density)
        color = _OOD_COLORS[k % len(_OOD_COLORS)]
        ax.stairs(h_id, edges, fill=True, alpha=0.45, color=_ID_COLOR, label=f"{id_label} (n={a.size:,})")
        ax.stairs(h_ood, edges, fill=True, alpha=0.45, color=color, label=f"{name} (n={b.size:,})")
        ax.axvline(thr, color="black", linestyle="--", linewidth=1.0,
                   label=f"{t * 100:g}% TPR threshold")
        ax.set_title(f"{name}: {fcol} {st['fpr'] * 100:.2f}%, AUROC {st['auroc'] * 100:.2f}%",
                     fontsize="medium")
        ax.set_xlabel("score (higher = more in-distribution)")
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
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    for k, (name, (id_s, ood_s)) in enumerate(curves.items()):
        a = _metrics._as_scores(id_s, "id_scores")
        b = _metrics._as_scores(ood_s, f"ood_sets[{name!r}]")
        auc = _metrics._run(a, b, t, ood_name=f"ood_sets[{name!r}]").auroc
        fpr, tp, _ = _metrics.roc_curve(a, b)
        fpr, tp = _thin(fpr, tp, int(max_points))
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
