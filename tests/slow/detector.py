"""NumPy twins for the detector tests: negative mining (DESIGN §4), written from the design
text with full matrices in float64, and a brute-force explanation."""
import numpy as np

from .score import groups_index, normalize


def knn_log_distance(raw, k=100):
    raw = np.asarray(raw, dtype=np.float64)
    r = np.linalg.norm(raw, axis=1)
    cos = normalize(raw) @ normalize(raw).T
    d = r[:, None] + r[None, :] - 2.0 * cos
    kk = min(k + 1, d.shape[1])
    return np.log(np.sort(d, axis=1)[:, :kk]).mean(axis=1)


def _select(values, is_adjective, noun_ratio, adj_ratio):
    is_adjective = np.asarray(is_adjective, dtype=bool)
    out = []
    for mask, ratio in ((~is_adjective, noun_ratio), (is_adjective, adj_ratio)):
        idx = np.flatnonzero(mask)
        order = idx[np.argsort(values[idx], kind="stable")]
        out.append(order[: int(np.floor(ratio * idx.size))])
    return np.concatenate(out).astype(np.int64)


def select_dnm(raw, is_adjective, noun_ratio=0.23, adj_ratio=0.13, k=100):
    return _select(knn_log_distance(raw, k), is_adjective, noun_ratio, adj_ratio)


def neglabel_closeness(id_labels, candidates, percentile=0.95, max_cut=None):
    cos = normalize(candidates) @ normalize(id_labels).T
    q = np.quantile(cos, percentile, axis=1)  # linear interpolation at percentile*(C-1)
    if max_cut is not None:
        mx = cos.max(axis=1)
        q = np.where(mx > max_cut, mx, q)
    return q


def select_neglabel(id_labels, candidates, is_adjective, ratio=0.15, percentile=0.95,
                    max_cut=None):
    q = neglabel_closeness(id_labels, candidates, percentile, max_cut)
    return _select(q, is_adjective, ratio, ratio)


def explain(images, id_labels, negatives, groups, temperature):
    """Full matrices: cosines and denominator shares of every ID label and every negative
    (a negative counted once per appearance in the grouping; unused ones get share 0)."""
    x = normalize(images)
    s = x @ normalize(id_labels).T
    u = x @ normalize(negatives).T if len(negatives) else np.zeros((len(x), 0))
    mult = np.zeros(len(negatives))
    if groups is not None:
        idx = groups_index(len(negatives), groups)
        np.add.at(mult, idx.ravel(), 1)
    m = np.max(np.concatenate([s, u], axis=1), axis=1, keepdims=True)
    es = np.exp((s - m) / temperature)
    eu = mult * np.exp((u - m) / temperature)
    tot = es.sum(axis=1, keepdims=True) + eu.sum(axis=1, keepdims=True)
    return s, u, es / tot, eu / tot, mult
