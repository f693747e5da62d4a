"""NumPy twins for the detector tests: the mining twins (re-exported from slow.mining, the one
oracle of docs/design.md, "Mining"), the score twins, and a brute-force explanation."""
import numpy as np

from .mining import select_dnm, select_neglabel  # noqa: F401  (re-exported for the tests)
from .score import dnm, groups_index, normalize  # noqa: F401


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
