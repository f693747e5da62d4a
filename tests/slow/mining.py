"""NumPy twins of the mining rules (docs/design.md, "Mining"): they build the full matrices in
float64, so they are only for small N (oracles for tests)."""
import math

import numpy as np


def normalize(a):
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def first_copies(x):
    """For each row, the index of the first row equal to it (byte for byte)."""
    a = np.ascontiguousarray(x)
    words = a.view(np.dtype(f"u{a.itemsize}")).reshape(len(a), -1)
    _, first, inv = np.unique(words, axis=0, return_index=True, return_inverse=True)
    return first[inv.ravel()]


def knn_log_distance(raw, k=100):
    """DNM's kNN log-distance as the reference code does it: the full N x N matrix.
    Copies of a row get the value of the first copy (dnm's tie rule)."""
    canon = first_copies(raw)
    raw = np.asarray(raw, dtype=np.float64)
    r = np.linalg.norm(raw, axis=1)
    x = raw / r[:, None]
    d = r[:, None] + r[None, :] - 2.0 * (x @ x.T)
    smallest = np.sort(d, axis=1)[:, : k + 1]
    return np.log(smallest).mean(axis=1)[canon]


def _select(values, is_adjective, noun_ratio, adj_ratio):
    adj = np.asarray(is_adjective, dtype=bool)
    out = []
    for mask, ratio in ((~adj, noun_ratio), (adj, adj_ratio)):
        idx = np.flatnonzero(mask)
        n_keep = int(math.floor(ratio * len(idx)))
        order = np.argsort(values[idx], kind="stable")
        out.append(idx[order[:n_keep]])
    return np.concatenate(out).astype(np.int64)


def select_dnm(raw, is_adjective, noun_ratio=0.23, adj_ratio=0.13, k=100):
    return _select(knn_log_distance(raw, k), is_adjective, noun_ratio, adj_ratio)


def neglabel_closeness(id_labels, candidates, percentile=0.95, max_cut=None):
    cos = normalize(candidates) @ normalize(id_labels).T
    q = np.quantile(cos, percentile, axis=1)  # method="linear"
    if max_cut is not None:
        mx = cos.max(axis=1)
        q = np.where(mx > max_cut, mx, q)
    return q[first_copies(candidates)]  # copies: the first copy's value (dnm's tie rule)


def select_neglabel(id_labels, candidates, is_adjective, ratio=0.15, percentile=0.95,
                    max_cut=None):
    q = neglabel_closeness(id_labels, candidates, percentile, max_cut)
    return _select(q, is_adjective, ratio, ratio)
