"""Scoring on Dask (``pip install dnm[dask]``): lazy, chunked over images, any cluster.

::

    import dask.array as da, dnm.dask
    from distributed import Client

    client = Client("tcp://scheduler:8786")          # or LocalCluster(), or none at all
    X = da.from_zarr("s3://bucket/laion-embeddings.zarr")   # (N, D), chunked along rows
    scores = dnm.dask.score_samples(detector, X)      # lazy float64 (N,)
    scores.to_zarr("s3://bucket/laion-scores.zarr")   # or .compute()

Each chunk of rows is scored by one task calling ``detector.score_samples`` (the
same C kernel as in one process).  The detector (labels, negatives, grouping:
typically a few MB) is placed in the graph **once**: with an active
``distributed`` client it is scattered to every worker up front
(``client.scatter(detector, broadcast=True)``) and each task refers to that one
future; without one it is a single ``dask.delayed`` node that all tasks share.

Results are bitwise equal to ``detector.score_samples(X.compute())`` when the
row chunk boundaries fall on multiples of dnm's image tile (256 rows): the BLAS
may round a row's products differently depending on how many rows share its
GEMM call (float64 inputs, and any 1-row tile).  ``align=True`` (default)
rechunks to such boundaries when needed (each new chunk close to the old size).

Threads: every task runs the C kernel with dnm's thread setting *in the worker*.
``distributed`` workers start with ``OMP_NUM_THREADS=1`` (its
``distributed.nanny.pre-spawn-environ`` default), so Dask's worker threads are the
parallelism and nothing is oversubscribed; use one worker thread per core.
"""
from __future__ import annotations

import numpy as np

import dask  # absolute import: the real Dask, not this module
import dask.array as da

from . import _core
from ._validate import score_function

__all__ = ["score_samples", "IMAGE_TILE"]

#: Rows per image tile of dnm's scoring kernel (csrc/score.c DNM_IMG_TILE).
IMAGE_TILE = int(getattr(_core, "IMG_TILE", 256))


def _score_fn(detector):
    return score_function(detector, hint=' (e.g. functools.partial(dnm.dnm_score, id_labels=P, negatives=M))')


def _score_block(block, detector):
    """One task: the scores of one chunk of rows."""
    s = np.asarray(_score_fn(detector)(block), dtype=np.float64)
    if s.shape != (block.shape[0],):
        raise ValueError(f"score function returned shape {s.shape} for a block of "
                         f"{block.shape[0]} rows; expected ({block.shape[0]},)")
    return s


def _is_future(obj):
    try:
        from distributed import Future
    except ImportError:
        return False
    return isinstance(obj, Future)


def _active_client():
    try:
        from distributed import default_client
    except ImportError:  # dask without distributed
        return None
    try:
        return default_client()
    except ValueError:  # no client
        return None


def aligned_row_chunks(chunks, tile=IMAGE_TILE):
    """Row chunk sizes with every inner boundary moved to the nearest multiple of
    ``tile`` (boundaries that collapse are merged).  Returns a tuple of sizes."""
    n = int(sum(chunks))
    bounds = np.cumsum(chunks)[:-1]
    new = []
    for b in bounds:
        q = int(round(b / tile)) * tile
        if 0 < q < n and (not new or q > new[-1]):
            new.append(q)
    edges = [0] + new + [n]
    return tuple(int(b - a) for a, b in zip(edges[:-1], edges[1:]))


def score_samples(detector, X, *, client=None, align=True):
    """Lazy OOD scores of a Dask array of images: float64 (N,) dask array.

    Parameters
    ----------
    detector : object with ``score_samples(X)`` or a callable ``f(X) -> (n,)``
        A fitted :class:`dnm.NegativeLabelDetector`, any object with that method, or e.g.
        ``functools.partial(dnm.dnm_score, id_labels=P, negatives=M)``.  Must pickle
        (for a distributed cluster).  Or a ``distributed.Future`` of one, e.g.
        ``client.scatter(detector, broadcast=True)``, to reuse one scatter across calls.
    X : dask array (N, D), or anything ``dask.array.asarray`` accepts
        Chunked along rows; the columns are rechunked into one chunk if needed.
    client : distributed.Client, False or None
        None (default): the active client, if any.  With a client the detector is
        scattered to every worker once (``broadcast=True``) and the tasks refer to it;
        ``False`` (or no client): it is one ``dask.delayed`` node of the graph.
    align : bool
        Rechunk rows so that chunk boundaries are multiples of :data:`IMAGE_TILE` (only
        when they are not already), which makes the result bitwise equal to scoring the
        whole array in one process.  False keeps the chunks as they are (results may then
        differ in the last bits for float64 input or 1-row chunks).
    """
    scattered = _is_future(detector)
    if not scattered:
        _score_fn(detector)  # fail early, in the client, for a wrong object
    X = da.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X: expected a 2-D dask array (n_images, n_features), got {X.ndim}-D "
                         f"with shape {X.shape}")
    if X.dtype.kind != "f":
        raise TypeError(f"X: expected floating-point data, got dtype {X.dtype}")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError("X: unknown chunk sizes along rows; call X.compute_chunk_sizes() first")
    row_chunks = X.chunks[0]
    if align and len(row_chunks) > 1:
        aligned = aligned_row_chunks(row_chunks)
        if aligned != tuple(row_chunks):
            row_chunks = aligned
    if row_chunks != X.chunks[0] or X.numblocks[1] != 1:
        X = X.rechunk((row_chunks, -1))

    if client is None and not scattered:
        client = _active_client()
    if scattered:  # already on the workers: reuse it across calls
        det = detector
    elif client:
        det = client.scatter(detector, broadcast=True, hash=False)
    else:
        det = dask.delayed(detector, pure=True, traverse=False)
    return X.map_blocks(_score_block, det, drop_axis=1, dtype=np.float64,
                        meta=np.empty((0,), dtype=np.float64),
                        token="dnm-score-samples")
