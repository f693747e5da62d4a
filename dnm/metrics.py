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
* :func:`evaluate` - an :class:`EvaluationResult`: one row per OOD set plus an
  ``"Average"`` row, rendered by its ``to_markdown`` / ``to_csv`` / ``to_latex``
  (headers and caption name the unit and the FPR convention), ``to_frame`` (pandas)
  and ``to_dict``.
* :func:`roc_curve` - the ROC points (NumPy; used by :mod:`dnm.plot`).

All values are **fractions in [0, 1]** at full precision; the text renderings show
percentages (as papers report them, rounded) unless ``percent=False``.

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
           "EvaluationResult", "to_markdown", "roc_curve", "CONVENTIONS"]

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

#: Where each FPR@TPR convention comes from (table captions).
_CONVENTION_SOURCES = {"paper": "the DNM, MCM, NegLabel and CSP code",
                       "openood": "OpenOOD, AdaNeg, TANL: OOD positive",
                       "interp": "CLIPN: interpolated on the ROC"}


def _fpr_column(tpr, convention):
    """The FPR column's name, with its convention: ``FPR95 (paper)``."""
    return f"FPR{tpr * 100:g} ({convention})"


def _unit_suffix(percent):
    return " [%]" if percent else " [fraction]"


def _check_digits(digits):
    if isinstance(digits, bool) or not isinstance(digits, numbers.Integral) or digits < 0:
        raise ValueError(f"digits: expected an integer >= 0, got {digits!r}")
    return int(digits)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex(text):
    return "".join(_TEX.get(ch, ch) for ch in text)


def _write_text(path, text):
    if path is not None:
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    return text


class EvaluationResult:
    """What :func:`evaluate` returns: one row per OOD set plus ``"Average"``, whatever is
    installed.

    Values are fractions in [0, 1] at full precision (``values``, ``to_dict()``,
    ``to_frame()``, row access); the text renderings (``to_markdown``, ``to_csv``,
    ``to_latex``, ``repr``) are in percent unless ``percent=False``, rounded, and name the
    unit and the FPR convention in every header and caption.

    Access: ``len(res)``; ``for row in res`` and ``res[0]`` / ``res[-1]`` give row dicts
    (``{"dataset": name, column: value}``, the list-of-dicts layout); ``res["iNaturalist"]``
    the row of a set; ``res["Average", "AUROC"]`` one value; ``res.column("AUROC")`` a
    ``{dataset: value}`` dict.

    Attributes: ``datasets`` (names, ``"Average"`` last), ``columns`` (``FPR95 (paper)``,
    ``AUROC``, ``AUPR-In``, ``AUPR-Out``; ``fpr_column`` is the first), ``values`` (read-only
    float64 array, one row per dataset), ``tpr``, ``convention``, ``units`` (``"fraction"``),
    ``n_id`` and ``n_ood`` (``{name: count}``).
    """

    units = "fraction"

    def __init__(self, datasets, values, *, tpr, convention, n_id, n_ood):
        self.datasets = tuple(str(d) for d in datasets)
        self.tpr = float(tpr)
        self.convention = _check_convention(convention)
        self.columns = (_fpr_column(self.tpr, convention), "AUROC", "AUPR-In", "AUPR-Out")
        v = np.array(values, dtype=np.float64)
        if v.shape != (len(self.datasets), len(self.columns)):
            raise ValueError(f"values: expected shape {(len(self.datasets), len(self.columns))}, "
                             f"got {v.shape}")
        v.setflags(write=False)
        self.values = v
        self.n_id = int(n_id)
        self.n_ood = {str(k): int(n) for k, n in dict(n_ood).items()}

    @property
    def fpr_column(self):
        return self.columns[0]

    # -- list- and dict-like access ------------------------------------------------------------

    def __len__(self):
        return len(self.datasets)

    def _row(self, i):
        return {"dataset": self.datasets[i],
                **{c: float(x) for c, x in zip(self.columns, self.values[i])}}

    def __iter__(self):
        return (self._row(i) for i in range(len(self.datasets)))

    def __contains__(self, name):
        return name in self.datasets

    def _index(self, name):
        try:
            return self.datasets.index(name)
        except ValueError:
            raise KeyError(f"no dataset {name!r}; datasets: {list(self.datasets)}") from None

    def __getitem__(self, key):
        if isinstance(key, tuple) and len(key) == 2:
            name, col = key
            if col not in self.columns:
                raise KeyError(f"no column {col!r}; columns: {list(self.columns)}")
            return float(self.values[self._index(name), self.columns.index(col)])
        if isinstance(key, str):
            return self._row(self._index(key))
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            n = len(self.datasets)
            if not -n <= key < n:
                raise IndexError(f"row {key} out of range for {n} rows")
            return self._row(int(key) % n)
        raise TypeError("EvaluationResult: index with a row number, a dataset name, or "
                        f"(dataset, column); got {type(key).__name__}")

    def column(self, name):
        """``{dataset: value}`` of one column (fractions)."""
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; columns: {list(self.columns)}")
        j = self.columns.index(name)
        return {d: float(x) for d, x in zip(self.datasets, self.values[:, j])}

    # -- conversions -----------------------------------------------------------------------------

    def to_dict(self):
        """``{dataset: {column: value}}``, fractions at full precision."""
        return {r.pop("dataset"): r for r in self}

    def to_frame(self):
        """A ``pandas.DataFrame`` indexed by ``"dataset"`` (fractions, full precision); its
        ``attrs`` hold ``tpr``, ``convention``, ``units``.  Needs pandas."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("EvaluationResult.to_frame needs pandas, which is not installed: "
                              "pip install pandas") from None
        df = pd.DataFrame(np.array(self.values), columns=list(self.columns),
                          index=pd.Index(list(self.datasets), name="dataset"))
        df.attrs.update({"tpr": self.tpr, "convention": self.convention, "units": self.units})
        return df

    def caption(self, *, percent=True):
        """One line naming every column, the FPR convention, the unit and the sample sizes."""
        unit = "in %" if percent else "as fractions in [0, 1]"
        sizes = ", ".join(f"{k} {v:,}" for k, v in self.n_ood.items())
        return (f"{self.fpr_column}: FPR at {self.tpr * 100:g}% TPR, {self.convention} "
                f"convention ({_CONVENTION_SOURCES[self.convention]}; lower is better); "
                f"AUROC, AUPR-In, AUPR-Out (higher is better); {unit}; ID = positive, "
                f"{self.n_id:,} ID scores; OOD: {sizes}; Average = unweighted mean over the "
                f"{len(self.n_ood)} OOD set{'s' if len(self.n_ood) != 1 else ''}.")

    def _cells(self, percent, digits):
        scale = 100.0 if percent else 1.0
        return [[d] + [f"{x * scale:.{digits}f}" for x in row]
                for d, row in zip(self.datasets, self.values)]

    def _head(self, percent):
        return ["dataset"] + [c + _unit_suffix(percent) for c in self.columns]

    def to_markdown(self, path=None, *, percent=True, digits=None, caption=True):
        """A Markdown table (values in % with 2 decimals, or fractions with 4 when
        ``percent=False``; ``digits`` overrides), preceded by its caption line unless
        ``caption=False``.  Returns the text; also written to ``path`` when given."""
        digits = (2 if percent else 4) if digits is None else _check_digits(digits)
        text = markdown_table(self._head(percent), self._cells(percent, digits))
        if caption:
            text = self.caption(percent=percent) + "\n\n" + text
        return _write_text(path, text)

    def to_csv(self, path=None, *, percent=True, digits=None):
        """CSV with a header row naming unit and convention (``FPR95 (paper) [%]``); values in
        % with 4 decimals, or fractions with 6 (``percent=False``); ``digits`` overrides.
        Returns the text; also written to ``path`` when given."""
        import csv
        import io

        digits = (4 if percent else 6) if digits is None else _check_digits(digits)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self._head(percent))
        w.writerows(self._cells(percent, digits))
        return _write_text(path, buf.getvalue())

    def to_latex(self, path=None, *, percent=True, digits=None, caption=True):
        """A booktabs ``tabular`` (in a ``table`` with ``\\caption`` unless ``caption=False``);
        digits as :meth:`to_markdown`.  Returns the text; also written to ``path``."""
        digits = (2 if percent else 4) if digits is None else _check_digits(digits)

        lines = [f"\\begin{{tabular}}{{l{'r' * len(self.columns)}}}", "\\toprule",
                 " & ".join(_tex(h) for h in self._head(percent)) + " \\\\", "\\midrule"]
        for r in self._cells(percent, digits):
            if r[0] == "Average":
                lines.append("\\midrule")
            lines.append(" & ".join(_tex(c) for c in r) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}"]
        if caption:
            lines = (["\\begin{table}", "\\centering",
                      f"\\caption{{{_tex(self.caption(percent=percent))}}}"] + lines
                     + ["\\end{table}"])
        return _write_text(path, "\n".join(lines) + "\n")

    def __repr__(self):
        n = len(self.n_ood)
        return (f"<EvaluationResult: {n} OOD set{'s' if n != 1 else ''} + Average; fractions, "
                f"shown in %>\n{self.to_markdown()}").rstrip("\n")

    def _repr_markdown_(self):
        return self.to_markdown()


def evaluate(id_scores, ood_sets, *, tpr=0.95, convention="paper", num_threads=None):
    """Evaluate one ID score set against several OOD sets: an :class:`EvaluationResult`.

    ``ood_sets``: a mapping ``{"iNaturalist": scores, ...}`` (or a sequence of
    ``(name, scores)`` pairs; a bare array is taken as one set named ``"OOD"``).
    The result has one row per OOD set, in the given order, and a final
    ``"Average"`` row (the unweighted mean over sets, as papers report it), with
    columns ``FPR95 (paper)`` (named after ``tpr`` and ``convention``: ``FPR90 (openood)``,
    ...), ``AUROC``, ``AUPR-In``, ``AUPR-Out``.  Values are fractions in [0, 1] (lower FPR
    and higher areas are better); ``.to_markdown()``, ``.to_csv()``, ``.to_latex()`` render
    percentages, ``.to_frame()`` gives a pandas DataFrame, ``.to_dict()`` a dict.  The
    type does not depend on what is installed.
    """
    t = _check_tpr(tpr)
    _check_convention(convention)
    sets = _named_sets(ood_sets)
    a = _as_scores(id_scores, "id_scores")
    nt = _config.resolve(num_threads)
    values, n_ood = [], {}
    for name, scores in sets:
        label = f"ood_sets[{name!r}]"
        b = _as_scores(scores, label)
        r = _Result(*_core.metrics(a, b, t, nt, "id_scores", label))
        values.append([r.fpr(convention), r.auroc, r.aupr_in, r.aupr_out])
        n_ood[name] = b.size
    values.append(np.mean(np.asarray(values, dtype=np.float64), axis=0))
    return EvaluationResult([n for n, _ in sets] + ["Average"], values, tpr=t,
                            convention=convention, n_id=a.size, n_ood=n_ood)


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
    raise TypeError("table: expected the EvaluationResult returned by dnm.evaluate, a DataFrame "
                    "or a list of row dicts")


def to_markdown(table, *, percent=True, digits=2):
    """Render a table as a GitHub-flavoured Markdown string (no ``tabulate`` needed): an
    :class:`EvaluationResult` (its :meth:`~EvaluationResult.to_markdown`, with its caption),
    a DataFrame or a list of row dicts.  ``percent=True`` (default) prints values x 100
    with ``digits`` decimals, as papers do; ``percent=False`` prints fractions with
    ``digits + 2`` decimals.  Every header names the unit (``[%]`` or ``[fraction]``)."""
    digits = _check_digits(digits)
    if isinstance(table, EvaluationResult):
        return table.to_markdown(percent=percent, digits=digits if percent else digits + 2)
    cols, rows = _table_rows(table)
    scale, nd = (100.0, digits) if percent else (1.0, digits + 2)
    head = ["dataset"] + [c + _unit_suffix(percent) for c in cols]
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
