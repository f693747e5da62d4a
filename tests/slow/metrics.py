"""NumPy twins of the metrics (docs/design.md, "Metrics"), written from the definitions, plus a
transliteration of the reference code's FPR@recall (Hendrycks et al.'s
``fpr_and_fdr_at_recall``, used by MCM, NegLabel, CSP and DNM).  Slow and simple:
counts at every distinct pooled score value via searchsorted."""
import numpy as np


def _counts(id_scores, ood_scores):
    """Distinct pooled values, descending, with ID / OOD counts >= each value."""
    a = np.sort(np.asarray(id_scores, dtype=np.float64))
    b = np.sort(np.asarray(ood_scores, dtype=np.float64))
    thr = np.unique(np.concatenate([a, b]))[::-1]
    tp = a.size - np.searchsorted(a, thr, side="left")
    fp = b.size - np.searchsorted(b, thr, side="left")
    return thr, tp, fp, a.size, b.size


def auroc(id_scores, ood_scores):
    """P(ID > OOD) + 0.5 P(ID == OOD), exact integer counts (Mann-Whitney U)."""
    a = np.asarray(id_scores, dtype=np.float64)
    b = np.sort(np.asarray(ood_scores, dtype=np.float64))
    below = np.searchsorted(b, a, side="left").astype(np.int64)
    equal = np.searchsorted(b, a, side="right").astype(np.int64) - below
    u2 = 2 * int(below.sum()) + int(equal.sum())
    return u2 / (2 * a.size * b.size)


def average_precision(pos, neg):
    """sum over distinct thresholds of (recall step) * precision, `pos` positive."""
    thr, tp, fp, n_pos, _ = _counts(pos, neg)
    step = np.diff(np.concatenate([[0], tp]))
    return float(np.sum(step / n_pos * (tp / (tp + fp))))


def aupr_in(id_scores, ood_scores):
    return average_precision(id_scores, ood_scores)


def aupr_out(id_scores, ood_scores):
    return average_precision(-np.asarray(ood_scores, float), -np.asarray(id_scores, float))


def fpr_paper(id_scores, ood_scores, tpr=0.95):
    """Thresholds at distinct pooled values, from the highest down to the first
    that accepts every ID score; the one whose ID recall is nearest `tpr`
    (float64 distance), ties -> the lowest threshold; share of OOD >= it."""
    thr, tp, fp, n1, n0 = _counts(id_scores, ood_scores)
    stop = int(np.argmax(tp == n1))        # first threshold with full recall
    d = np.abs(tp[: stop + 1] / n1 - tpr)
    best = np.flatnonzero(d == d.min())[-1]  # lowest threshold among the nearest
    return fp[best] / n0


def fpr_reference(id_scores, ood_scores, recall_level=0.95):
    """The reference code (outlier-exposure / MCM `fpr_and_fdr_at_recall`), ID positive."""
    pos = np.asarray(id_scores, dtype=np.float64)
    neg = np.asarray(ood_scores, dtype=np.float64)
    y_score = np.concatenate([pos, neg])
    y_true = np.concatenate([np.ones(pos.size, bool), np.zeros(neg.size, bool)])
    desc = np.argsort(y_score, kind="mergesort")[::-1]
    y_score, y_true = y_score[desc], y_true[desc]
    distinct = np.where(np.diff(y_score))[0]
    idx = np.r_[distinct, y_true.size - 1]
    tps = np.cumsum(y_true, dtype=np.float64)[idx]
    fps = 1 + idx - tps
    recall = tps / tps[-1]
    last_ind = tps.searchsorted(tps[-1])
    sl = slice(last_ind, None, -1)
    recall, fps = np.r_[recall[sl], 1], np.r_[fps[sl], 0]
    cutoff = np.argmin(np.abs(recall - recall_level))
    return fps[cutoff] / np.sum(np.logical_not(y_true))


def fpr_openood(id_scores, ood_scores, tpr=0.95):
    """OOD positive: ROC points at distinct values ascending (scores <= v flagged OOD),
    collinear interior points dropped as sklearn.roc_curve(drop_intermediate=True)
    does (zero second differences of both counts), then the FPR of the first point
    catching >= tpr of the OOD scores."""
    thr, tp_id, fp_ood, n1, n0 = _counts(id_scores, ood_scores)
    # ascending values; counts <= v
    a = np.sort(np.asarray(id_scores, float))
    b = np.sort(np.asarray(ood_scores, float))
    v = thr[::-1]
    tps = np.searchsorted(b, v, side="right")  # OOD <= v
    fps = np.searchsorted(a, v, side="right")  # ID <= v
    if tps.size > 2:
        keep = np.r_[True, (np.diff(tps, 2) != 0) | (np.diff(fps, 2) != 0), True]
        tps, fps = tps[keep], fps[keep]
    tps, fps = np.r_[0, tps], np.r_[0, fps]
    j = int(np.argmax(tps / n0 >= tpr))
    return fps[j] / n1


def fpr_interp(id_scores, ood_scores, tpr=0.95):
    """np.interp on the ID-positive ROC (all distinct values, starting at (0, 0))."""
    thr, tp, fp, n1, n0 = _counts(id_scores, ood_scores)
    return float(np.interp(tpr, np.r_[0, tp / n1], np.r_[0, fp / n0]))


# ---- the same definitions on histograms (counts per distinct value, ascending),
# O(number of values): used for the 10-million-score check.

def _hist_desc(c1, c0):
    c1 = np.asarray(c1, dtype=np.int64)[::-1]
    c0 = np.asarray(c0, dtype=np.int64)[::-1]
    nz = (c1 + c0) > 0
    return c1[nz], c0[nz]


def auroc_hist(c1, c0):
    c1, c0 = _hist_desc(c1, c0)
    tp_above = np.cumsum(c1) - c1
    u2 = sum(int(x) for x in c0 * (2 * tp_above + c1))  # Python ints: exact
    return u2 / (2 * int(c1.sum()) * int(c0.sum()))


def fpr_paper_hist(c1, c0, tpr=0.95):
    c1, c0 = _hist_desc(c1, c0)
    tp, fp = np.cumsum(c1), np.cumsum(c0)
    n1, n0 = tp[-1], fp[-1]
    stop = int(np.argmax(tp == n1))
    d = np.abs(tp[: stop + 1] / n1 - tpr)
    return fp[np.flatnonzero(d == d.min())[-1]] / n0


def aupr_in_hist(c1, c0):
    c1, c0 = _hist_desc(c1, c0)
    tp, fp = np.cumsum(c1), np.cumsum(c0)
    return float(np.sum(c1 / tp[-1] * (tp / (tp + fp))))
