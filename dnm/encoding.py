"""Encoding phrases with any encoder, with an on-disk cache (re-exported by :mod:`dnm.corpus`).

:func:`encode` turns a :class:`dnm.Corpus` (nouns and adjectives with their own prompt
templates) or a list of strings into one float32 array, batch by batch, averaging the raw
encodings of several templates; with ``cache_dir`` the result is kept on disk, keyed by a
sha256 of the model name, the phrases, the adjective mask and the templates, and checked
(key and checksum) when read back.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ._io import atomic_write
from ._validate import is_torch, tensor_to_numpy
from .corpus import ENSEMBLE_RULES, Corpus, _check_templates, template_set, template_sets

__all__ = ["encode"]

_CACHE_FORMAT = 1


_FLOAT32_MAX = float(np.finfo(np.float32).max)

def _to_numpy(x: Any) -> np.ndarray:
    """An encoder's output as NumPy: torch tensors from any device, else ``np.asarray``."""
    if is_torch(x):
        return tensor_to_numpy(x, allow_device_copy=True)
    if not isinstance(x, np.ndarray) and hasattr(x, "numpy"):
        x = x.numpy()
    return np.asarray(x)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "model"


def _cache_key(model_name: str, phrases: list[str], mask: np.ndarray, nt: tuple, at: tuple,
               rule: str = "mean") -> str:
    payload = {
        "format": _CACHE_FORMAT,
        "model_name": model_name,
        "phrases": phrases,
        "is_adjective": mask.astype(int).tolist(),
        "noun_templates": list(nt),
        "adjective_templates": list(at),
    }
    if rule != "mean":  # keys of the "mean" caches written before rules existed stay valid
        payload["rule"] = rule
    blob = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def _unit_rows(a: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    if not (norms > 0).all():
        raise ValueError("encoder: returned a zero vector, which rule='normalized_mean' cannot normalise")
    return a / norms


def _array_sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def _read_cache(npy: Path, meta_path: Path, key: str, n: int) -> np.ndarray | None:
    if not npy.exists() and not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("key") != key:
            raise ValueError("key mismatch")
        arr = np.load(npy, allow_pickle=False)
        if arr.dtype != np.float32 or arr.ndim != 2:
            raise ValueError(f"unexpected array {arr.dtype} {arr.shape}")
        if arr.shape != (n, meta.get("dim")) or meta.get("rows") != n:
            raise ValueError(f"shape {arr.shape} does not match the metadata / {n} phrases")
        if _array_sha256(arr) != meta.get("sha256"):
            raise ValueError("checksum mismatch")
        return arr
    except Exception as exc:  # noqa: BLE001 - any problem means: rebuild
        warnings.warn(f"encoding cache {npy} is invalid ({exc}); re-encoding", RuntimeWarning, stacklevel=3)
        return None


def encode(
    phrases: Corpus | Sequence[str],
    encoder: Callable[[list[str]], Any],
    *,
    model_name: str | None = None,
    templates: str | Sequence[str] | None = None,
    adjective_templates: str | Sequence[str] | None = None,
    rule: str | None = None,
    batch_size: int = 256,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> np.ndarray:
    """Encode phrases with any callable ``encoder`` into one float32 array (n, dim).

    ``encoder`` takes a list of strings (prompts, or e.g. image paths) and returns anything
    array-like of shape (len(batch), dim): NumPy arrays, lists, torch tensors (on any device).

    Templates: for a :class:`Corpus`, nouns use ``templates`` and adjectives
    ``adjective_templates``, by default the corpus's template set (``Corpus.template_set``:
    ``"the nice {}"`` / ``"This is a {} photo"`` for ``dnm`` and ``neglabel``, CSP's 8 + 4 for
    ``csp``); for a plain list, all items use ``templates`` (default ``"{}"``: the items as they
    are).  ``templates`` may also name a shipped set (:func:`dnm.corpus.template_set`:
    ``"csp"``, ``"clip80"``, ``"mcm"``, ...), which gives both lists and the rule.

    ``rule`` (default: the set's, else ``"mean"``): ``"mean"`` averages the raw encodings of a
    phrase's prompts (no normalisation: raw norms are kept, as DNM's kNN rule needs; cosines
    and dnm's scores normalise); ``"normalized_mean"`` normalises each encoding, averages and
    renormalises (unit rows; OpenOOD-VLM, AdaNeg, TANL).

    With ``cache_dir``, the result is cached as ``<model>-<key>.npy`` + ``.json``, keyed by a
    sha256 of ``model_name`` (required then), the phrases, the adjective mask, the templates and
    the rule;
    a second call returns the cached array without calling the encoder.  A corrupted or
    mismatched cache is detected (key and checksum), a warning is issued and it is rebuilt.
    """
    if not callable(encoder):
        raise ValueError("encoder: must be callable (list of strings -> array of shape (n, dim))")
    named = None
    if isinstance(templates, str) and "{}" not in templates:
        if templates.lower() not in template_sets():
            raise ValueError(f"templates: {templates!r} is neither a template with '{{}}' nor a "
                             f"template set ({', '.join(template_sets())})")
        named = template_set(templates)
    elif templates is None and adjective_templates is None and isinstance(phrases, Corpus):
        named = phrases.templates()
    if named is not None:
        templates = named.nouns
        adjective_templates = named.adjectives if adjective_templates is None else adjective_templates
        rule = named.rule if rule is None else rule
    rule = "mean" if rule is None else rule
    if rule not in ENSEMBLE_RULES:
        raise ValueError(f"rule: expected one of {ENSEMBLE_RULES}, got {rule!r}")
    if isinstance(phrases, Corpus):
        items = list(phrases.phrases)
        mask = phrases.is_adjective.copy()
        ts = phrases.templates()
        nt = _check_templates(ts.nouns if templates is None else templates, "templates", None)
        at = _check_templates(ts.adjectives if adjective_templates is None else adjective_templates,
                              "adjective_templates", None)
    else:
        if isinstance(phrases, str):
            raise ValueError("phrases: expected a list of phrases or a Corpus, got a single string")
        items = list(phrases)
        for i, p in enumerate(items):
            if not isinstance(p, str):
                raise ValueError(f"phrases: item {i} is not a string: {p!r}")
        mask = np.zeros(len(items), dtype=bool)
        nt = _check_templates(templates, "templates", None)
        at = nt if adjective_templates is None else _check_templates(adjective_templates, "adjective_templates", None)
    if not items:
        raise ValueError("phrases: nothing to encode (empty corpus)")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    batch_size = int(batch_size)
    n = len(items)

    npy = meta_path = None
    key = None
    if cache_dir is not None:
        if not model_name:
            raise ValueError("model_name: required when cache_dir is given (it is part of the cache key)")
        cdir = Path(cache_dir)
        cdir.mkdir(parents=True, exist_ok=True)
        key = _cache_key(str(model_name), items, mask, nt, at, rule)
        stem = f"{_slug(str(model_name))}-{key[:20]}"
        npy, meta_path = cdir / f"{stem}.npy", cdir / f"{stem}.json"
        cached = _read_cache(npy, meta_path, key, n)
        if cached is not None:
            return cached

    groups = [(np.flatnonzero(~mask), nt), (np.flatnonzero(mask), at)]
    total = sum(len(ts) * -(-len(idx) // batch_size) for idx, ts in groups if len(idx))
    from ._progress import tqdm_class  # lazy: only needed when encoding

    tqdm = tqdm_class()

    out: np.ndarray | None = None
    with tqdm(total=total, disable=not progress, desc=desc or "encoding", unit="batch") as bar:
        for idx, ts in groups:
            if not len(idx):
                continue
            for t in ts:
                for start in range(0, len(idx), batch_size):
                    rows = idx[start:start + batch_size]
                    batch = [t.replace("{}", items[i]) for i in rows]
                    emb = _to_numpy(encoder(batch))
                    if emb.ndim != 2:
                        raise ValueError(f"encoder: returned shape {emb.shape}; expected 2-D (batch, dim)")
                    if emb.shape[0] != len(batch):
                        raise ValueError(f"encoder: returned {emb.shape[0]} rows for a batch of {len(batch)}")
                    if not np.issubdtype(emb.dtype, np.number) or np.iscomplexobj(emb):
                        raise ValueError(f"encoder: returned non-real dtype {emb.dtype}")
                    emb = emb.astype(np.float64)
                    if not np.isfinite(emb).all():
                        raise ValueError("encoder: returned non-finite values (nan or inf)")
                    big = float(np.abs(emb).max(initial=0.0))
                    if big > _FLOAT32_MAX:  # the result is float32: it would become inf
                        raise ValueError(f"encoder: returned a value of magnitude {big:.4g}, "
                                         "beyond the float32 range (3.403e38) of the "
                                         "embeddings")
                    if rule == "normalized_mean":
                        emb = _unit_rows(emb)
                    if out is None:
                        out = np.zeros((n, emb.shape[1]), dtype=np.float64)
                    elif emb.shape[1] != out.shape[1]:
                        raise ValueError(f"encoder: returned dim {emb.shape[1]}, earlier batches {out.shape[1]}")
                    out[rows] += emb
                    bar.update(1)
            out[idx] /= len(ts)
    assert out is not None
    if rule == "normalized_mean":
        out = _unit_rows(out)
    result = out.astype(np.float32)

    if npy is not None:
        atomic_write(npy, lambda fh: np.save(fh, result, allow_pickle=False), "wb")
        meta = {
            "format": _CACHE_FORMAT,
            "key": key,
            "model_name": str(model_name),
            "rows": n,
            "dim": int(result.shape[1]),
            "dtype": "float32",
            "sha256": _array_sha256(result),
            "noun_templates": list(nt),
            "adjective_templates": list(at),
            "rule": rule,
        }
        atomic_write(meta_path, lambda fh: fh.write(json.dumps(meta, indent=1)), "w")
    return result
