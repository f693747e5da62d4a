"""Explanations of a detector's scores: which labels carry each image's score.

:func:`explain` (what :meth:`dnm.NegativeLabelDetector.explain` returns) lists, per image,
the top-k ID labels and negative labels by cosine with their shares of the score's
denominator, computed with NumPy in float64 from the fitted arrays.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ._validate import check_int

__all__ = ["Explanation", "explain"]


@dataclass
class Explanation:
    """Per image, the top-k ID and negative labels by cosine (``NegativeLabelDetector.explain``).

    All 2-D arrays have shape (N, k) (k capped by the number of labels), rows sorted by cosine,
    highest first (ties: lower index first).  A label's *share* is its term of the score's
    denominator S + Σ_j N_j (S = Σ_c exp(s_c/T), N_j = Σ_{k in group j} exp(u_k/T)) divided by
    the whole denominator, computed in the log domain; over all labels the shares of an image
    sum to 1.  A negative that appears in several groups counts once per appearance; negatives
    in no group (the M mod G dropped ones) do not enter the score and are not listed.
    """

    id_indices: np.ndarray          # (N, k) int64, rows of id_labels
    id_cosines: np.ndarray          # (N, k) float64
    id_shares: np.ndarray           # (N, k) float64
    negative_indices: np.ndarray    # (N, k) int64, rows of negatives_
    negative_candidate_indices: np.ndarray  # (N, k) int64, rows of the candidates given to fit
    negative_cosines: np.ndarray    # (N, k) float64
    negative_shares: np.ndarray     # (N, k) float64
    id_total_share: np.ndarray      # (N,) float64: S / (S + Σ_j N_j)
    negative_total_share: np.ndarray  # (N,) float64: Σ_j N_j / (S + Σ_j N_j)
    temperature: float
    id_names: Optional[np.ndarray] = None          # (N, k) object (str), when known
    negative_phrases: Optional[np.ndarray] = None  # (N, k) object (str), when known

    def __len__(self):
        return self.id_indices.shape[0]

    def to_dict(self):
        """The fields as a dict of arrays (and the temperature)."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    def to_frame(self):
        """A long pandas DataFrame: one row per (image, kind, rank); needs pandas."""
        import pandas as pd

        parts = []
        for kind, idx, cand, cos, share, names in (
                ("id", self.id_indices, self.id_indices, self.id_cosines, self.id_shares,
                 self.id_names),
                ("negative", self.negative_indices, self.negative_candidate_indices,
                 self.negative_cosines, self.negative_shares, self.negative_phrases)):
            n, k = idx.shape
            parts.append(pd.DataFrame({
                "image": np.repeat(np.arange(n), k), "kind": kind,
                "rank": np.tile(np.arange(k), n), "index": idx.ravel(),
                "candidate_index": cand.ravel() if kind == "negative" else -1,
                "label": names.ravel() if names is not None else None,
                "cosine": cos.ravel(), "share": share.ravel()}))
        return pd.concat(parts, ignore_index=True)

    def to_text(self, max_images=10):
        """A readable report of the first ``max_images`` images."""
        lines = []
        for i in range(min(len(self), int(max_images))):
            lines.append(f"image {i}: ID share {self.id_total_share[i]:.4f}, "
                         f"negative share {self.negative_total_share[i]:.4f} (T={self.temperature:g})")
            for kind, idx, cos, share, names in (
                    ("ID ", self.id_indices, self.id_cosines, self.id_shares, self.id_names),
                    ("NEG", self.negative_indices, self.negative_cosines, self.negative_shares,
                     self.negative_phrases)):
                for r in range(idx.shape[1]):
                    name = f" {names[i, r]!r}" if names is not None else ""
                    lines.append(f"  {kind} #{idx[i, r]:<6d}{name:<32s} cos {cos[i, r]:+.4f}  "
                                 f"share {share[i, r]:.4g}")
        if len(self) > max_images:
            lines.append(f"... {len(self) - int(max_images)} more images")
        return "\n".join(lines)

    def __str__(self):
        return self.to_text()



def explain(detector, X, k=5, *, chunk_size=None):
    """Top-k ID and negative labels of each image of X (checked, (N, D)) under a fitted
    ``detector``, with cosines and denominator shares: an :class:`Explanation`.

    Vectorised over chunks of ``chunk_size`` images (default: about 2^21 logits per chunk),
    so memory stays bounded.  The temperature is the fitted one (max_logit: 0.01).
    """
    det = detector
    k = check_int(k, "k", low=1)
    T = float(det.temperature_)
    P = _normalize(det.id_labels_, "id_labels")
    C = P.shape[0]
    if det.groups_index_ is not None:
        mult = np.bincount(det.groups_index_.ravel(), minlength=det.negatives_.shape[0])
    else:
        mult = np.zeros(det.negatives_.shape[0], dtype=np.int64)
    used = np.flatnonzero(mult)
    Nn = _normalize(det.negatives_[used], "negatives", used)
    logw = np.log(mult[used].astype(np.float64))
    kid, kneg = min(k, C), min(k, used.size)
    n = X.shape[0]
    if chunk_size is None:
        chunk_size = max(1, (1 << 21) // (C + used.size))
    chunk_size = check_int(chunk_size, "chunk_size", low=1)

    out = {name: np.empty((n, kk), dt) for name, kk, dt in (
        ("id_indices", kid, np.int64), ("id_cosines", kid, np.float64),
        ("id_shares", kid, np.float64), ("negative_indices", kneg, np.int64),
        ("negative_cosines", kneg, np.float64), ("negative_shares", kneg, np.float64))}
    id_total = np.empty(n)
    for lo in range(0, n, chunk_size):
        hi = min(n, lo + chunk_size)
        x = _normalize(X[lo:hi], "X", lo)
        s = x @ P.T
        u = x @ Nn.T
        a_s = s / T
        a_u = u / T + logw
        mx = a_s.max(axis=1, keepdims=True)
        if used.size:
            mx = np.maximum(mx, a_u.max(axis=1, keepdims=True))
        es = np.exp(a_s - mx)
        eu = np.exp(a_u - mx)
        S = es.sum(axis=1)
        tot = S + eu.sum(axis=1)
        log_tot = np.log(tot)[:, None]
        id_total[lo:hi] = S / tot
        for pre, cos, logit, kk in (("id", s, a_s, kid), ("negative", u, a_u, kneg)):
            idx = _topk(cos, kk)
            out[f"{pre}_indices"][lo:hi] = idx
            out[f"{pre}_cosines"][lo:hi] = np.take_along_axis(cos, idx, axis=1)
            out[f"{pre}_shares"][lo:hi] = np.exp(
                np.take_along_axis(logit, idx, axis=1) - mx - log_tot)
    neg_rows = used[out["negative_indices"]]
    out["negative_indices"] = neg_rows
    id_names = neg_phr = None
    if det.id_names_ is not None:
        id_names = np.asarray(det.id_names_, dtype=object)[out["id_indices"]]
    if det.negative_phrases_ is not None:
        neg_phr = np.asarray(det.negative_phrases_, dtype=object)[neg_rows]
    return Explanation(**out, negative_candidate_indices=det.negative_indices_[neg_rows],
                       id_total_share=id_total, negative_total_share=1.0 - id_total,
                       temperature=T, id_names=id_names, negative_phrases=neg_phr)


def _normalize(a, name=None, rows=0):
    """Rows of ``a`` scaled to unit norm in float64 (each row divided by its largest
    magnitude first, so a norm beyond the float64 range does not overflow).  With ``name``,
    a row holding NaN/Inf or all zeros raises the ValueError ``score_samples`` raises; the
    row is reported as ``rows + i`` (``rows`` an offset, or an array of row numbers)."""
    a = np.asarray(a, dtype=np.float64)
    amax = np.max(np.abs(a), axis=1, keepdims=True)
    if name is not None:
        bad = ~np.isfinite(amax[:, 0]) | (amax[:, 0] == 0)
        if bad.any():
            i = int(np.argmax(bad))
            row = int(rows[i]) if np.ndim(rows) else rows + i
            if np.isfinite(amax[i, 0]):
                raise ValueError(f"{name}: row {row} has zero norm and cannot be normalised")
            raise ValueError(f"{name}: row {row} contains NaN or Inf")
    a = a / amax
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _topk(values, k):
    """Indices of the k largest entries per row, sorted descending (ties: lower index first)."""
    n, m = values.shape
    if k == 0:
        return np.zeros((n, 0), dtype=np.int64)
    if k < m:
        part = np.argpartition(-values, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(m), (n, m))
    v = np.take_along_axis(values, part, axis=1)
    order = np.lexsort((part, -v), axis=-1)
    return np.take_along_axis(part, order, axis=1).astype(np.int64)

