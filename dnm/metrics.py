"""OOD-detection metrics (docs/design.md, "Numerics"), computed in C from one sort.

Scores follow the package convention: **higher = more in-distribution**.  The
in-distribution (ID) set is the positive class unless stated.

* :func:`auroc` - area under the ROC curve, ties count half (equals
  ``sklearn.metrics.roc_auc_score`` with ID labelled 1).
* :func:`aupr_in` / :func:`aupr_out` - average precision with ID positive /
  with OOD positive on negated scores (``sklearn.metrics.average_precision_score``).
* :func:`fpr_at_tpr` - false-positive rate at a target true-positive rate, three
  conventions (``"paper"``, ``"openood"``, ``"interp"``; see its docstring).
* :func:`all_metrics` - all of the above from a single sort.
* :func:`evaluate` - one row per OOD set plus an ``"Average"`` row;
  :func:`to_markdown` prints such a table.
* :func:`roc_curve` - the ROC points (NumPy; used by :mod:`dnm.plot`).

All values are **fractions in [0, 1]**; :func:`to_markdown` renders percentages
(as papers report them) unless ``percent=False``.

Accepted input: 1-D array-likes of real numbers (any float or integer dtype,
NumPy arrays, lists, CPU tensors).  They are converted once to contiguous
float64 (no copy when they already are) and never modified.  Errors
(``ValueError`` unless noted): non-finite scores (the message names the argument
and the index), empty sets, sets holding a single score (a metric of one sample
is almost always a mistake, e.g. a scalar or a mean passed by accident, and FPR at
95% TPR is undefined for one ID sample), arrays that are not 1-D, ``tpr``
outside (0, 1], unknown conventions; ``TypeError`` for boolean, complex or
non-numeric data.  Sets whose scores are all equal are allowed (AUROC is then
0.5 when both sets are constant and equal).

Cost: O(n) conversion and LSD radix sort of the IEEE bit patterns (two threads
when ``num_threads`` allows), one merge pass; counts are exact integers, AUROC is
one exactly accumulated 128-bit integer divided once, average precision is summed
in long double.
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from . import _config, _core
from ._io import markdown_table
from ._validate import _to_numpy, check_fraction

__all__ = ["auroc", "aupr_in", "aupr_out", "fpr_at_tpr", "all_metrics", "evaluate",
           "to_markdown", "roc_curve", "CONVENTIONS"]

#: FPR@TPR conventions accepted by :func:`fpr_at_tpr`.
CONVENTIONS = ("paper", "openood", "interp")


class _Result(NamedTuple):
    """What the C core computes from one sort (``dnm._core.metrics``)."""

    auroc: float
    aupr_in: float
    aupr_out: float
    fpr_paper: float
    fpr_openood: float
    fpr_interp: float
    n_thresholds: int

    def fpr(self, convention):
        return getattr(self, "fpr_" + convention)


def _as_scores(x, name):
    """1-D contiguous float64 view/copy of a score array-like, with checks."""
    if isinstance(x, (numbers.Number, str, bytes)):
        raise TypeError(f"{name}: expected a 1-D array of scores, got a single {type(x).__name__}")
    a = _to_numpy(x, name)
    if a.dtype == np.bool_:
        raise TypeError(f"{name}: expected real-valued scores, got boolean dtype")
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected real-valued scores (float or integer), got dtype {a.dtype}")
    if a.ndim != 1:
        if a.ndim == 0:
            raise ValueError(f"{name}: expected a 1-D array of scores, got a scalar")
        raise ValueError(
            f"{name}: expected a 1-D array of scores, got {a.ndim}-D array with shape {a.shape}"
            " (use .ravel() if that is what you mean)"
        )
    if a.shape[0] == 0:
        raise ValueError(f"{name}: no scores (empty array)")
    if a.shape[0] == 1:
        raise ValueError(
            f"{name}: only one score; metrics need at least 2 scores per set "
            "(did you pass a single value or a mean instead of per-sample scores?)"
        )
    return np.ascontiguousarray(a, dtype=np.float64)


def _check_tpr(tpr):
    return check_fraction(tpr, "tpr")


def _check_convention(convention):
    if convention not in CONVENTIONS:
        raise ValueError(f"convention: expected one of {CONVENTIONS}, got {convention!r}")
    return convention


def _run(id_scores, ood_scores, tpr=0.95, *, num_threads=None, id_name="id_scores",
         ood_name="ood_scores"):
    a = _as_scores(id_scores, id_name)
    b = _as_scores(ood_scores, ood_name)
    t = _check_tpr(tpr)
    nt = _config.resolve(num_threads)
    return _Result(*_core.metrics(a, b, t, nt, id_name, ood_name))


def auroc(id_scores, ood_scores, *, num_threads=None):
    """Area under the ROC curve (ID positive, ties count half), a float in [0, 1].

    Equals ``roc_auc_score(labels, scores)`` with ``labels`` = 1 for ID, 0 for OOD.
    """
    return _run(id_scores, ood_scores, num_threads=num_threads).auroc


def aupr_in(id_scores, ood_scores, *, num_threads=None):
    """Average precision with ID as the positive class
    (``average_precision_score(labels, scores)``)."""
    return _run(id_scores, ood_scores, num_threads=num_threads).aupr_in


def aupr_out(id_scores, ood_scores, *, num_threads=None):
    """Average precision with OOD as the positive class on negated scores
    (``average_precision_score(1 - labels, -scores)``)."""
    return _run(id_scores, ood_scores, num_threads=num_threads).aupr_out


def fpr_at_tpr(id_scores, ood_scores, tpr=0.95, convention="paper", *, num_threads=None):
    """False-positive rate at a target true-positive rate ``tpr`` in (0, 1].

    ``convention``:

    * ``"paper"`` (default; the DNM, MCM, NegLabel and CSP code): among the
      thresholds at distinct score values (both sets pooled) down to the highest
      one at which every ID score is accepted, take the one whose ID recall
      ``TP / n_id`` is nearest ``tpr`` (distance evaluated in float64,
      ``abs(TP / n_id - tpr)``, exactly as the reference code does, so e.g. with 10
      ID scores recall 0.9 beats recall 1.0 for ``tpr=0.95``; exact ties - several
      thresholds with the same ID recall - go to the lowest threshold); return the
      share of OOD scores at or above it.  With
      50,000 ID scores, ``tpr=0.95`` and no ties this is the share of OOD scores
      strictly above the 47,501-st highest ID score.
    * ``"openood"`` (OpenOOD, AdaNeg, TANL): OOD is the positive class; the share
      of ID scores flagged OOD at the first ROC point where at least ``tpr`` of the
      OOD scores are caught - identical to OpenOOD's
      ``fpr[argmax(tpr_curve >= tpr)]`` on ``sklearn.metrics.roc_curve(is_ood,
      -scores)``, including that function's default ``drop_intermediate=True``
      (which only matters with tied scores).  Not comparable with ``"paper"``.
    * ``"interp"`` (CLIPN): the FPR linearly interpolated on the ID-positive ROC
      at TPR = ``tpr``, i.e. ``np.interp(tpr, tpr_curve, fpr_curve)`` on
      ``roc_curve(is_id, scores)``.
    """
    _check_convention(convention)
    return _run(id_scores, ood_scores, tpr, num_threads=num_threads).fpr(convention)


def all_metrics(id_scores, ood_scores, tpr=0.95, convention="paper", *, num_threads=None):
    """All metrics from one sort: a dict with keys ``"fpr"`` (FPR at ``tpr`` under
    ``convention``), ``"auroc"``, ``"aupr_in"``, ``"aupr_out"``, plus
    ``"fpr_paper"``, ``"fpr_openood"``, ``"fpr_interp"`` (every convention; they
    cost nothing extra) and ``"n_thresholds"`` (distinct score values)."""
    _check_convention(convention)
    r = _run(id_scores, ood_scores, tpr, num_threads=num_threads)
    return _pack(r, convention)


def _pack(r, convention):
    return {"fpr": r.fpr(convention), "auroc": r.auroc, "aupr_in": r.aupr_in,
            "aupr_out": r.aupr_out, "fpr_paper": r.fpr_paper, "fpr_openood": r.fpr_openood,
            "fpr_interp": r.fpr_interp, "n_thresholds": int(r.n_thresholds)}


def roc_curve(id_scores, ood_scores):
    """ROC points with ID positive, one per distinct score value (no points dropped),
    starting at (0, 0): returns ``(fpr, tpr, thresholds)`` float64 arrays, thresholds
    descending with ``inf`` first (scikit-learn's layout with
    ``drop_intermediate=False``).  NumPy, O(n log n)."""
    a = np.sort(_as_scores(id_scores, "id_scores"))
    b = np.sort(_as_scores(ood_scores, "ood_scores"))
    _check_finite(a, "id_scores")
    _check_finite(b, "ood_scores")
    thr = np.unique(np.concatenate([a, b]))[::-1]
    tp = a.size - np.searchsorted(a, thr, side="left")
    fp = b.size - np.searchsorted(b, thr, side="left")
    fpr = np.concatenate([[0.0], fp / b.size])
    tpr = np.concatenate([[0.0], tp / a.size])
    return fpr, tpr, np.concatenate([[np.inf], thr])


def _check_finite(sorted_scores, name):
    # sorted: NaN sort last, -inf first, +inf last
    if not (np.isfinite(sorted_scores[0]) and np.isfinite(sorted_scores[-1])):
        raise ValueError(f"{name}: scores must be finite (found NaN or Inf)")


# ---- tables ---------------------------------------------------------------

def _fpr_column(tpr):
    return f"FPR{tpr * 100:g}"


def evaluate(id_scores, ood_sets, *, tpr=0.95, convention="paper", as_frame=None,
             num_threads=None):
    """Evaluate one ID score set against several OOD sets.

    ``ood_sets``: a mapping ``{"iNaturalist": scores, ...}`` (or a sequence of
    ``(name, scores)`` pairs; a bare array is taken as one set named ``"OOD"``).
    Returns a table with one row per OOD set, in the given order, and a final
    ``"Average"`` row (the unweighted mean over sets, as papers report it), with
    columns ``FPR95`` (named after ``tpr``: ``FPR90`` for 0.9, ...), ``AUROC``,
    ``AUPR-In``, ``AUPR-Out``.  Values are fractions in [0, 1] (lower FPR and
    higher areas are better); render percentages with :func:`to_markdown`.

    ``as_frame``: ``None`` (default) returns a ``pandas.DataFrame`` indexed by
    ``"dataset"`` when pandas is installed, else a list of dicts (each with a
    ``"dataset"`` key); ``True`` requires pandas; ``False`` always returns the list.
    The frame's ``attrs`` record ``tpr``, ``convention`` and ``units``.
    """
    t = _check_tpr(tpr)
    _check_convention(convention)
    sets = _named_sets(ood_sets)
    a = _as_scores(id_scores, "id_scores")
    nt = _config.resolve(num_threads)
    fcol = _fpr_column(t)
    rows = []
    for name, scores in sets:
        label = f"ood_sets[{name!r}]"
        b = _as_scores(scores, label)
        r = _Result(*_core.metrics(a, b, t, nt, "id_scores", label))
        rows.append({"dataset": name, fcol: r.fpr(convention), "AUROC": r.auroc,
                     "AUPR-In": r.aupr_in, "AUPR-Out": r.aupr_out})
    cols = [fcol, "AUROC", "AUPR-In", "AUPR-Out"]
    avg = {"dataset": "Average"}
    for c in cols:
        avg[c] = float(np.mean([row[c] for row in rows]))
    rows.append(avg)
    if as_frame is None or as_frame:
        try:
            import pandas as pd
        except ImportError:
            if as_frame:
                raise ImportError("evaluate(as_frame=True) needs pandas: pip install dnm[pandas]") from None
            return rows
        df = pd.DataFrame(rows).set_index("dataset")
        df.attrs.update({"tpr": t, "convention": convention, "units": "fraction"})
        return df
    return rows


def _named_sets(ood_sets):
    if isinstance(ood_sets, Mapping):
        items = list(ood_sets.items())
    elif isinstance(ood_sets, np.ndarray) or hasattr(ood_sets, "__array__") or hasattr(ood_sets, "__dlpack__"):
        items = [("OOD", ood_sets)]
    elif isinstance(ood_sets, (list, tuple)) and all(
            isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in ood_sets):
        items = list(ood_sets)
    else:
        raise TypeError(
            "ood_sets: expected a mapping {name: scores}, a sequence of (name, scores) pairs, "
            f"or one array, got {type(ood_sets).__name__}"
        )
    if not items:
        raise ValueError("ood_sets: no OOD sets given")
    names = [str(k) for k, _ in items]
    if "Average" in names:
        raise ValueError("ood_sets: 'Average' is reserved for the average row")
    if len(set(names)) != len(names):
        raise ValueError(f"ood_sets: duplicate names in {names}")
    return [(str(k), v) for k, v in items]


def _table_rows(table):
    """(columns, [(name, [values])]) from a DataFrame or a list of dicts."""
    if hasattr(table, "to_dict") and hasattr(table, "columns"):
        cols = [str(c) for c in table.columns]
        return cols, [(str(i), [row[c] for c in table.columns]) for i, row in table.iterrows()]
    if isinstance(table, (list, tuple)) and table and all(isinstance(r, dict) for r in table):
        cols = [c for c in table[0] if c != "dataset"]
        return cols, [(str(r.get("dataset", i)), [r[c] for c in cols]) for i, r in enumerate(table)]
    raise TypeError("table: expected the DataFrame or list of dicts returned by dnm.evaluate")


def to_markdown(table, *, percent=True, digits=2):
    """Render an :func:`evaluate` table as a GitHub-flavoured Markdown string
    (no ``tabulate`` needed).  ``percent=True`` (default) prints values x 100
    with ``digits`` decimals, as papers do; ``percent=False`` prints fractions
    with ``digits + 2`` decimals."""
    if isinstance(digits, bool) or not isinstance(digits, numbers.Integral) or digits < 0:
        raise ValueError(f"digits: expected an integer >= 0, got {digits!r}")
    cols, rows = _table_rows(table)
    scale, nd = (100.0, int(digits)) if percent else (1.0, int(digits) + 2)
    head = ["dataset"] + [f"{c} (%)" if percent else c for c in cols]
    body = []
    for name, vals in rows:
        cells = [name]
        for v in vals:
            try:
                cells.append(f"{float(v) * scale:.{nd}f}")
            except (TypeError, ValueError):
                cells.append(str(v))
        body.append(cells)
    return markdown_table(head, body)
