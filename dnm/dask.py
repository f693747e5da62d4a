"""Scoring and DNM mining on Dask (``pip install "dask[array]" distributed``, or the ``dask``
extra): lazy, chunked, any cluster.

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

Results are bitwise equal to ``detector.score_samples(X.compute())``: the BLAS may
round a row's products differently depending on how many rows share its GEMM call
(float64 inputs, and any 1-row tile), so with ``align=True`` (default) every task scores
its chunk on the tile grid a single call on the whole array would use
(``dnm._core.image_tile_rows(N)`` rows: 256, 512 or 1024 by N), and chunk boundaries
are moved to multiples of that tile when needed (each new chunk close to the old size).

:func:`score_streams`: the test-time adaptive methods (AdaNeg, TANL) are sequential inside
a stream, but independent streams (one per OOD set in the usual evaluation, one per camera,
shard or day) are independent tasks: one task per stream, each running the same stream
object as one process would, so each result is bitwise equal to the single-process scores.

:func:`knn_log_distance`: DNM's kNN log-distance (docs/design.md, "Mining") over row blocks; each
task computes the rho of its rows against **all** candidates with the same streamed C
kernel (``dnm.mining.knn_log_distance(raw, k, rows=(i0, i1))``), bitwise equal to the
single-process result for any block size.  The whole candidate array is shipped to
every worker once, like the detector above.

Threads: every task runs the C kernel with dnm's thread setting *in the worker*.
``distributed`` workers start with ``OMP_NUM_THREADS=1`` (its
``distributed.nanny.pre-spawn-environ`` default), so Dask's worker threads are the
parallelism and nothing is oversubscribed; use one worker thread per core.
"""
from __future__ import annotations

import numpy as np

try:
    import dask  # absolute import: the real Dask, not this module
    import dask.array as da
except ImportError:
    raise ImportError("dnm.dask needs dask, which is not installed: pip install "
                      "\"dask[array]\" distributed (or pip install '.[dask]' in the dnm source "
                      "folder)") from None

from . import _config, _core
from ._validate import score_function

__all__ = ["score_samples", "score_streams", "knn_log_distance", "IMAGE_TILE", "KNN_TILE"]

#: Rows per image tile of dnm's scoring kernel (csrc/score.c DNM_IMG_TILE).
IMAGE_TILE = int(getattr(_core, "IMG_TILE", 256))
#: Rows per tile of dnm's kNN product (csrc/mining.c DNM_KNN_TILE).
KNN_TILE = int(getattr(_core, "KNN_TILE", 512))


def _score_fn(detector):
    return score_function(detector, hint=' (e.g. functools.partial(dnm.dnm_score, id_labels=P, negatives=M))')


def _score_block(block, detector, tile_rows=0):
    """One task: the scores of one chunk of rows, on the tile grid of the whole array."""
    with _config.tile_grid(tile_rows):
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
        Score every chunk on the whole array's tile grid and rechunk rows so that chunk
        boundaries are multiples of its tile (only when they are not already), which makes
        the result bitwise equal to scoring the whole array in one process.  False keeps the chunks as they are (results may then
        differ in the last bits for float64 input or 1-row chunks).
    """
    scattered = _is_future(detector)
    if not scattered:
        _score_fn(detector)  # fail early, in the client, for a wrong object
        if _is_streaming_detector(detector):
            raise ValueError(f"detector: method {detector.method_!r} adapts to the test stream, "
                             "so chunks cannot be scored independently; use "
                             "dnm.dask.score_streams(detector, {name: stream}) (one task per "
                             "stream)")
    X = da.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X: expected a 2-D dask array (n_images, n_features), got {X.ndim}-D "
                         f"with shape {X.shape}")
    if X.dtype.kind != "f":
        raise TypeError(f"X: expected floating-point data, got dtype {X.dtype}")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError("X: unknown chunk sizes along rows; call X.compute_chunk_sizes() first")
    row_chunks = X.chunks[0]
    tile = int(_core.image_tile_rows(X.shape[0])) if align else 0
    if align and len(row_chunks) > 1:
        row_chunks = aligned_row_chunks(row_chunks, tile)
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
    return X.map_blocks(_score_block, det, tile, drop_axis=1, dtype=np.float64,
                        meta=np.empty((0,), dtype=np.float64),
                        token="dnm-score-samples")


# ---- test-time adaptive methods: one task per stream ---------------------------------------

def _is_streaming_detector(obj):
    from . import methods as _methods
    from .detector import NegativeLabelDetector

    rec = _methods.METHODS.get(getattr(obj, "method_", None))
    return isinstance(obj, NegativeLabelDetector) and rec is not None and rec.streaming


def _new_stream(method):
    """A fresh stream object for one task: the detector's (reset), a copy of a stream
    object in its current state, or the factory's result."""
    import copy

    if _is_streaming_detector(method):
        return method._stream(False)
    if callable(getattr(method, "update", None)):
        return copy.deepcopy(method)
    obj = method()
    if not callable(getattr(obj, "update", None)):
        raise TypeError(f"method: the factory returned {type(obj).__name__}, not a stream "
                        "object with update(batch)")
    return obj


def _stream_task(method, X, batch_size):
    """One task: one whole stream, in order (what one process computes)."""
    from .tta import _run_stream

    return _run_stream(_new_stream(method), np.asarray(X), batch_size, False, "stream")


def score_streams(method, streams, *, batch_size=None, client=None):
    """Score independent test streams of a streaming method, one task per stream.

    Parameters
    ----------
    method : a fitted NegativeLabelDetector of a streaming method ("adaneg", "tanl"), a
        stream object (:class:`dnm.AdaNeg`, :class:`dnm.TANL`), or a factory: a callable
        with no argument returning a fresh stream object (e.g.
        ``functools.partial(dnm.AdaNeg, P, N, memory_length=5)``).  Every stream starts from
        the detector's reset state, from a copy of the object's **current** state (so a
        restored mid-stream object goes on the same way in every task; the object itself
        is not changed), or from a new factory object.  Must pickle (for a distributed
        cluster).
    streams : mapping {name: (N, D) array}
        NumPy or Dask arrays, each one stream in stream order (a Dask array is gathered
        into its task whole; streams are sequential).
    batch_size : int or None
        Images per batch; None: the detector's ``batch_size_``, else the registry's
        default (256).
    client : distributed.Client, False or None
        None: the active client, if any; with one, ``method`` is scattered to every worker
        once (``broadcast=True``); False (or no client): one ``dask.delayed`` node shared by
        the tasks.

    Returns ``{name: lazy float64 (N,) dask array}``; each equals, bit for bit, the scores of
    the same stream in one process (``det.score_samples(X)``, ``dnm.adaneg_score``, ...).
    """
    from collections.abc import Mapping

    from . import methods as _methods
    from ._validate import check_int

    from .detector import NegativeLabelDetector

    if isinstance(method, NegativeLabelDetector):
        method._check_fitted()
        if not _is_streaming_detector(method):
            raise TypeError(f"method: the detector's method {method.method_!r} does not adapt "
                            "to the stream; use dnm.dask.score_samples")
    elif not (_is_future(method) or callable(getattr(method, "update", None))
              or callable(method)):
        raise TypeError("method: expected a fitted NegativeLabelDetector of a streaming method, "
                        "a stream object (dnm.AdaNeg, dnm.TANL) or a factory returning one, "
                        f"got {type(method).__name__}")
    if not isinstance(streams, Mapping) or not streams:
        raise TypeError("streams: expected a non-empty mapping {name: (N, D) array}")
    if batch_size is None:
        batch_size = method.batch_size_ if _is_streaming_detector(method) else \
            _methods.get("adaneg").defaults["batch_size"]
    batch_size = check_int(batch_size, "batch_size", low=1)
    arrays = {}
    for name, X in streams.items():
        if not isinstance(X, da.Array):
            from ._validate import as_matrix

            X = as_matrix(X, f"streams[{name!r}]")
        elif X.ndim != 2 or any(np.isnan(c) for c in X.chunks[0]):
            raise ValueError(f"streams[{name!r}]: expected a 2-D dask array with known chunk "
                             f"sizes, got shape {X.shape}")
        arrays[name] = X
    if client is None:
        client = _active_client()
    if client:
        obj = client.scatter(method, broadcast=True, hash=False)
    else:
        obj = dask.delayed(method, pure=True, traverse=False)
    task = dask.delayed(_stream_task, pure=True)
    return {name: da.from_delayed(task(obj, X, batch_size), shape=(X.shape[0],),
                                  dtype=np.float64, meta=np.empty((0,), dtype=np.float64))
            for name, X in arrays.items()}


# ---- DNM mining: kNN log-distance over row blocks ----------------------------------------

def _knn_block(raw, k, start, stop):
    """One task: rho of the rows [start, stop) against all candidates."""
    from .mining import knn_log_distance as _knn
    return _knn(raw, k, rows=(start, stop))


def _n_workers(client):
    if client:
        try:
            return max(1, len(client.scheduler_info()["workers"]))
        except Exception:  # pragma: no cover - an unusual client
            return 1
    return _local_cores()


def _local_cores():
    import os
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_block_rows(n, n_workers, *, cap=4096, tile=KNN_TILE):
    """Rows per block: a multiple of ``tile``, at most ``cap`` (unless one tile is more),
    and small enough for at least 2 blocks per worker when ``n`` allows it."""
    n_blocks = max(2 * n_workers, -(-n // cap))
    n_blocks = -(-n_blocks // n_workers) * n_workers  # a multiple of the workers
    rows = -(-n // n_blocks)
    up = max(tile, -(-rows // tile) * tile)
    if -(-n // up) >= 2 * n_workers:
        return up
    return max(tile, rows // tile * tile)  # small n: more, smaller blocks


def knn_log_distance(raw_candidates, k=100, *, block_rows=None, client=None):
    """DNM's kNN log-distance (docs/design.md, "Mining") on Dask: lazy float64 (N,) dask array.

    Equal, bit for bit, to ``dnm.knn_log_distance(raw_candidates, k)`` computed in one
    process, for any ``block_rows``: each task runs the same streamed C kernel on its
    rows (``dnm.mining.knn_log_distance(raw, k, rows=(i0, i1))``), and every distance
    comes from the same GEMM call as in the single-process run.

    Parameters
    ----------
    raw_candidates : (N, D) NumPy array (float16/32/64), or a dask array
        **Raw, unnormalised** candidate embeddings.  A dask array is computed once, in
        the client.  float16 is widened to float32 and a non-contiguous layout made
        contiguous once, in the client (the same values the kernel would compute with),
        so that no task converts anything.
    k : int, 0 <= k < N
    block_rows : int or None
        Rows per task.  None: a multiple of :data:`KNN_TILE` (512) giving at least 2
        blocks per worker (per core without a client), at most 4096 rows.  Any positive
        value works and stays bitwise exact; a value that is not a multiple of
        KNN_TILE makes the tasks whose block boundary falls inside a tile redo that
        tile's products (up to KNN_TILE x N x D extra multiply-adds per boundary).
    client : distributed.Client, False or None
        None (default): the active client, if any.  With a client the candidate array
        is scattered to every worker once (``client.scatter(raw, broadcast=True)``) and
        all tasks refer to that one future; ``False`` (or no client): it is one
        ``dask.delayed`` node that all tasks share.

    Memory per task: the candidates (N x D x itemsize, held once per worker, shared by
    its tasks) + block_rows x 2(k+1) doubles of neighbour buffers + 2 N doubles of norms
    + one KNN_TILE x KNN_TILE tile per kernel thread (1 MB in float32).  Compute per
    task: about block_rows x N x D multiply-adds, plus an O(N x D) pass over the norms
    (every task checks all N norms, so errors - normalised rows, norm <= 1, NaN/Inf -
    are raised by the tasks exactly as the single-process call raises them).

    Threads: the kernel in each task uses dnm's thread setting in the worker
    (``distributed`` workers start with ``OMP_NUM_THREADS=1``); the result does not
    depend on it.
    """
    from ._validate import as_matrix, check_int

    if isinstance(raw_candidates, da.Array):
        raw_candidates = raw_candidates.compute()
    raw = as_matrix(raw_candidates, "raw_candidates")
    if raw.dtype == np.float16:
        raw = raw.astype(np.float32)  # exact; the kernel multiplies float16 in float32
    raw = np.ascontiguousarray(raw)
    n = raw.shape[0]
    k = check_int(k, "k", low=0)
    if k >= n:
        raise ValueError(f"k: must be < the number of candidates N = {n}, got {k}")
    if client is None:
        client = _active_client()
    if block_rows is None:
        block_rows = default_block_rows(n, _n_workers(client))
    block_rows = check_int(block_rows, "block_rows", low=1)

    if client:
        cand = client.scatter(raw, broadcast=True, hash=False)
    else:
        cand = dask.delayed(raw, pure=True, traverse=False)
    task = dask.delayed(_knn_block, pure=True)
    blocks = []
    for i0 in range(0, n, block_rows):
        i1 = min(n, i0 + block_rows)
        blocks.append(da.from_delayed(task(cand, k, i0, i1), shape=(i1 - i0,),
                                      dtype=np.float64, meta=np.empty((0,), dtype=np.float64)))
    return da.concatenate(blocks) if len(blocks) > 1 else blocks[0]
