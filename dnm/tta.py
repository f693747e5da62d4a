"""Test-time adaptive negative-label scores: AdaNeg (Zhang et al., NeurIPS 2024) and TANL
("Test-time Activated Negative Labels", CVPR 2026), on precomputed embeddings.

Both keep state that every batch of test images updates; a later score depends on the
images seen before it, on their order and on the batch size.  dnm takes the stream as given
(in stream order) and never shuffles on its own; :func:`evaluation_stream` builds the usual
"ID set + one OOD set, shuffled with a seed" stream and :func:`split_scores` maps the scores
back.  Every random element is an index array or comes from a documented seed, and the scores
are bitwise identical across thread counts.  Higher score = more in-distribution.

What runs where
---------------
The heavy part of both methods - the logits of a batch against all labels ([ID; negatives],
[ID; proxies] or [ID; corpus]) and their softmax in double - is one C kernel
(``dnm._core.softmax_rows``) with the GIL released, OpenMP threads, progress and Ctrl-C between
tiles.  Float32 input runs on dnm's own register-tile product (csrc/tta_simd.h, AVX2 or
AVX-512, the kernel of ``dnm._config.float_kernel``): the labels in blocks (the threads' tasks,
[ID; groups; the rest] in that order), a fused epilogue per block and image (one exp per logit
against the block's maximum, in float - in double where float's would underflow - and the ID,
group and total sums in double in column order), then per image the blocks combined in block
order and, when asked, the softmax row written once and scaled once.  Every logit is one FMA
chain in k order, so a row's values do not depend on its batch, the thread count or the
instruction set.  Float64 input and CPUs without AVX2 run single-threaded SGEMM/DGEMM tiles of
128 images on a fixed grid (csrc/tta.c) with the same epilogue row by row (exp by a polynomial
with correctly rounded fma, sums in 8 fixed lanes).  The two kernels agree to float32 rounding.
The label matrices are packed once for dnm's own kernel (``_core.softmax_pack``: TANL's [ID;
corpus] and AdaNeg's [ID; negatives] at construction, AdaNeg's proxies at reset and then only
the rows that change; again if the float kernel changes), which gives the bits of packing them
in every call.  AdaNeg's adaptive pass needs only the masses, so no (B, C + M) matrix is made
for it; its vanilla pass and TANL keep the batch's (B, L) float64 rows (the entropies and
argmaxes, TANL's queues and activation-aware scores are taken from them).  TANL's rows stay
unscaled (each block of a row has one scale factor): the kernel takes the activations of the
first selection (known from the queues before the batch) while each block is in cache, and C
consumers apply the factor as they read (``_core.tta_gather`` of the second selection,
``tta_masked_means`` of the ID-like and OOD-like rows in one pass, ``tta_copy_rows`` into the
queues, ``rows_mean`` of a queue resumed from running-sum checkpoints every 32 rows before the
first row that changed; threads over columns, rows added in order as NumPy's mean does), so the
(B, L) rows are written once and read once.  TANL's two queues hold float32 activations by
default (``queue_dtype="float32"``: each row rounded to nearest float32 as it enters a queue,
as ``numpy.float32`` rounds; ``"float64"`` keeps them in double); their means are summed in
double in the same fixed order, so they stay bitwise independent
of the thread count, and the top-beta selections are taken on those double means.  AdaNeg's
cached images get their labels and entropies from ``_core.tta_cached`` (threads over rows;
the log by a polynomial with correctly rounded fma, about 1 ulp, so an entropy can differ
from NumPy's in its last bits).  Everything else (the memory and its proxies, top-beta
selection, prefix sums, Otsu) is vectorised NumPy over the batch (the activation-aware scores
over row ranges on the kernel's threads; Otsu's criteria from one sort and prefix sums),
without per-image Python loops.  Memory: the state, the packed label copies (float32, the size
of the label matrices) plus O(B x L) float64 per batch, never per stream.  The sample-adaptive
AdaNeg proxies are NumPy throughout.  Scores are bitwise identical across thread counts.

Precision.  The official runs are float16 on a GPU; dnm computes the products in float32
(float64 when an input is float64) and everything after them in float64 (dnm's own kernel takes
the softmax exps in float, 2e-7 relative, far below what the float32 product moves), except
TANL's queue entries, stored as float32 for any input by default (6e-8 relative; their means
in float64; half the memory; the batch's activation rows then float32 too on dnm's own
kernel, exact but for activations below about 2^-150): a top-beta selection between
queue-mean differences closer than about 1e-7 relative can differ from what float64 queues
would pick (not seen on CLIP geometry; near one-hot activations, as in small random test
problems, do produce such flips).  ``queue_dtype="float64"`` is the double-precision
reference.  Two
behaviours of the float16 run are worth knowing: AdaNeg's entropies are NaN there, so a full
memory list is never replaced (``replacement="first"`` reproduces that; the default
``"entropy"`` is the method as designed), and TANL's scores are quantised.

File format (``save`` / ``load``), format_version 2: one uncompressed ``numpy.savez`` archive
with a ``metadata`` member (1-D uint8, UTF-8 JSON: ``format`` = ``"dnm.AdaNeg"`` or
``"dnm.TANL"``, ``format_version``, ``dnm_version``, ``params``, ``state``, ``arrays`` (member
-> dtype and shape) and ``sha256``) and the array members listed in ``arrays``.  ``sha256`` is
computed as for the detector files: the canonical JSON of the metadata without ``sha256``, then
every array member in sorted name order (name, NUL, C-order little-endian bytes).  ``load``
never unpickles: it parses the ``.npy`` headers, refuses compressed, encrypted, oversized or
missing members, checks sizes, dtypes, the checksum and the state's consistency, and raises
:class:`StateFileError` (a ValueError) on any failure.  TANL's ``positive_queue`` and
``negative_queue`` have the object's ``queue_dtype`` (a parameter since format_version 2).
Version 1 files (dnm before ``queue_dtype``: float64 queues) still load, as
``queue_dtype="float64"``, and continue with the same bits.  AdaNeg's files are the same in
both versions.
"""
from __future__ import annotations

import numbers
import os

import numpy as np

from . import _config, _core, _npzfile
from ._progress import TileProgress, tqdm_class
from ._validate import as_matrix, check_int, check_positive
from .scores import make_groups

__all__ = ["AdaNeg", "TANL", "adaneg_score", "tanl_score", "noise_images", "evaluation_stream",
           "split_scores", "StateFileError"]

FORMAT_VERSION = 2  # 2: TANL's queue_dtype (1: float64 queues, still read); AdaNeg's unchanged
N_NOISE = 15
_OUTPUTS = ("combined", "adaptive", "vanilla")
_RULES = ("entropy", "first")


def _check_noise_rows(Z):
    """The noise embeddings must be one row per noise image (:func:`noise_images`)."""
    if Z.shape[0] != N_NOISE:
        raise ValueError(f"noise: expected the embeddings of the {N_NOISE} noise images "
                         f"(dnm.tta.noise_images), got {Z.shape[0]} rows")


class StateFileError(ValueError):
    """A saved AdaNeg/TANL state file is invalid: not an npz, truncated, tampered with, or too new."""


# ---------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------

def _labels(x, name):
    """A checked (n, D) label matrix, L2-normalised in float64 (the input is not modified)."""
    a = as_matrix(x, name)
    a64 = np.asarray(a, dtype=np.float64)
    finite = np.isfinite(a64).all(axis=1)
    if not finite.all():
        raise ValueError(f"{name}: row {int(np.flatnonzero(~finite)[0])} contains NaN or Inf")
    norms = np.linalg.norm(a64, axis=1)
    if not (norms > 0).all():
        raise ValueError(f"{name}: row {int(np.flatnonzero(~(norms > 0))[0])} has zero norm "
                         "and cannot be normalised")
    return a, a64 / norms[:, None]


def _compute_dtype(*arrays):
    return np.float64 if any(a.dtype == np.float64 for a in arrays) else np.float32


def _check_real(value, name, low=None, high=None, *, open_low=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v) or (low is not None and (v <= low if open_low else v < low)) \
            or (high is not None and v > high):
        lo = "" if low is None else ("(" if open_low else "[") + f"{low:g}"
        hi = "" if high is None else f"{high:g}]"
        raise ValueError(f"{name}: must be a finite number in {lo}, {hi}, got {value!r}"
                         if lo or hi else f"{name}: must be finite, got {value!r}")
    return v


def _permutation(order, n, name):
    a = np.asarray(order)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{name}: expected a permutation of {n} indices (1-D, length {n}), "
                         f"got shape {a.shape}")
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if not np.array_equal(np.sort(a), np.arange(n)):
        raise ValueError(f"{name}: is not a permutation of 0..{n - 1} (repeated or out-of-range "
                         "entries)")
    return a


class _Packed:
    """A label matrix (float32/float64, C-contiguous; the caller keeps it) packed once for
    dnm's own kernel, for the kernel that runs (packed again when that changes); nothing
    when that kernel packs nothing (BLAS tiles, float64)."""

    def __init__(self, labels, n_id, index=None):
        self.labels, self.n_id, self.index = labels, n_id, index
        self._kernel, self._packed = None, None

    def kwargs(self):
        k = _config.kernel()
        r = _core.kernel_resolve(k)
        if r != self._kernel:
            self._packed = None
            got = _core.softmax_pack(self.labels, self.n_id, self.index, k)
            self._packed = None if got is None else got[0]
            self._kernel = r
        return {} if self._packed is None else {"packed": self._packed,
                                                "packed_kernel": self._kernel}

    def copy_of(self, other):
        """Take other's packing (other packs labels equal to these, with this n_id and index)."""
        other.kwargs()
        self._kernel = other._kernel
        self._packed = None if other._packed is None else other._packed.copy()
        return self

    def repack(self, rows):
        """After labels[rows] changed."""
        if self._packed is not None and len(rows):
            _core.softmax_pack(self.labels, self.n_id, self.index, self._kernel, self._packed,
                               np.ascontiguousarray(rows, dtype=np.int64))


def _softmax(X, labels, T, nt, progress=False, n_id=0, index=None, rows=True, out=None,
             scales=None, packed=None, packed_rows=False, **kw):
    """(rows (B, L) or None, ID mass (B,), group masses (B, G) or None) of the softmax over
    the labels (csrc/tta.c); ``out`` a float64 (B, L) buffer for the rows; with ``scales``
    (a float64 (B, ceil(L / block)) buffer, block = _core.softmax_block) the rows are left
    unscaled and their scales written there (csrc/tta.h); ``packed`` a :class:`_Packed` of
    these labels (with this n_id and index), ``packed_rows`` (with one) the rows in the packed
    order when the labels are packed."""
    if packed is not None:
        kw.update(packed.kwargs())
        if "packed" in kw and packed_rows:
            kw["packed_rows"] = True
    with TileProgress(progress, "tta product") as cb:
        return _core.softmax_rows(X, labels, T, nt, cb, n_id, index, rows, out,
                                  kernel=_config.kernel(), scales=scales, **kw)


def _grouped(a_id, Nj):
    """NegLabel's grouped score from softmax masses: mean_j A / (A + N_j), A = the image's ID
    share, N_j = group j's (the common normaliser cancels in every ratio)."""
    return (a_id[:, None] / (a_id[:, None] + Nj)).mean(axis=1)


def _aligned_empty(shape, dtype, align=64):
    """An uninitialised C-contiguous array starting at an `align`-byte boundary (the
    kernel streams its rows past the caches only from one)."""
    dt = np.dtype(dtype)
    n = int(np.prod(shape))
    raw = np.empty(n * dt.itemsize + align, dtype=np.uint8)
    skip = -raw.ctypes.data % align
    return raw[skip:skip + n * dt.itemsize].view(dt).reshape(shape)


def _batch(batch, D, name="batch"):
    X = as_matrix(batch, name)
    if X.shape[1] != D:
        raise ValueError(f"{name}: has {X.shape[1]} features per row but the labels have {D}")
    return X


def _normalised64(X):
    X = np.asarray(X, dtype=np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _batches(n, batch_size):
    return [(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def _run_stream(obj, stream, batch_size, progress, desc):
    X = _batch(stream, obj.n_features_in_, "stream")
    bs = check_int(batch_size, "batch_size", low=1)
    parts = _batches(X.shape[0], bs)
    out = np.empty(X.shape[0])
    bar = tqdm_class()(total=len(parts), desc=desc, unit="batch", leave=False) if progress else None
    try:
        for lo, hi in parts:
            try:
                out[lo:hi] = obj.update(X[lo:hi])
            except ValueError as exc:  # the kernel numbers the batch's rows: the stream's
                msg = str(exc)
                if msg.startswith("batch: row "):
                    r, rest = msg[len("batch: row "):].split(" ", 1)
                    raise ValueError(f"stream: row {lo + int(r)} {rest}") from None
                raise
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return out


# ---------------------------------------------------------------------------------------------
# AdaNeg
# ---------------------------------------------------------------------------------------------

class AdaNeg:
    """AdaNeg's streaming score with explicit state: ``scores = obj.update(batch)``.

    id_labels (C, D), negatives (M, D): raw embeddings (normalised internally).  ``groups``: an
    int G (drop the last M mod G negatives, permute the rest with ``seed``) or a (G, Q) index
    array into ``negatives``, as in :func:`dnm.neglabel_score`.  The memory keeps, per label
    (all C + M, dropped negatives included), its text feature and up to ``memory_length - 1``
    images; an image is cached under its ID argmax when its vanilla score exceeds
    ``threshold + gap (1 - threshold)``, under its argmax over all M negatives when below
    ``threshold - gap threshold``.  A full list takes an image whose entropy is strictly lower
    than the largest stored one (that slot, the last such on ties; the text slot is never
    replaced) with ``replacement="entropy"``, never with ``"first"`` (what the official float16
    run does).  Proxies are normalise(text + stored images), or per image with
    ``sample_adaptive`` (weights exp(-beta (1 - <x, m>)) over the slots; ``beta`` is used as
    given: the official script passes 5.5, which its code truncates to 5, the default).  ``output``:
    ``"combined"`` (adaptive + weight x vanilla, the default), ``"adaptive"`` or ``"vanilla"``
    (NegLabel's grouped score; the memory is then not kept).

    Memory: the stored images once each (at most (C + M) x (memory_length - 1) rows of D
    values in the compute dtype: float32, float64 for float64 input) in a pool that grows
    with them, plus (C + M) x D proxies and, on dnm's own kernel, float32 packed copies of
    the texts and of the proxies (2 x (C + M) x D floats).
    """

    _FORMAT = "dnm.AdaNeg"

    def __init__(self, id_labels, negatives, *, groups=5, seed=0, threshold=0.5, gap=0.5,
                 memory_length=10, weight=0.1, sample_adaptive=False, beta=5,
                 replacement="entropy", temperature=0.01, output="combined", num_threads=None,
                 progress=False):
        P, self._t = _labels(id_labels, "id_labels")
        Nn, self._n = _labels(negatives, "negatives")
        if P.shape[1] != Nn.shape[1]:
            raise ValueError(f"negatives: has {Nn.shape[1]} features per row but id_labels has "
                             f"{P.shape[1]}")
        self.index = make_groups(Nn.shape[0], groups, seed)
        self.threshold = _check_real(threshold, "threshold", 0.0, 1.0)
        self.gap = _check_real(gap, "gap", 0.0, 1.0)
        self.memory_length = check_int(memory_length, "memory_length", low=1)
        self.weight = _check_real(weight, "weight")
        if not isinstance(sample_adaptive, (bool, np.bool_)):
            raise TypeError(f"sample_adaptive: expected a bool, got {type(sample_adaptive).__name__}")
        self.sample_adaptive = bool(sample_adaptive)
        self.beta = _check_real(beta, "beta", 0.0, open_low=True)
        if replacement not in _RULES:
            raise ValueError(f"replacement: expected one of {_RULES}, got {replacement!r}")
        self.replacement = replacement
        self.temperature = check_positive(temperature, "temperature")
        if output not in _OUTPUTS:
            raise ValueError(f"output: expected one of {_OUTPUTS}, got {output!r}")
        self.output = output
        self.num_threads = num_threads
        _config.resolve(num_threads)
        self.progress = bool(progress)
        self._raw = (P, Nn)
        self._dtype = _compute_dtype(P, Nn)
        self.n_id_, self.n_negatives_ = P.shape[0], Nn.shape[0]
        self.n_features_in_ = P.shape[1]
        self._text = np.concatenate([self._t, self._n])  # (C + M, D) float64, normalised
        self._labels_cd = np.ascontiguousarray(self._text, dtype=self._dtype)
        self._packed_text = _Packed(self._labels_cd, self.n_id_, self.index)
        self._neg_pos = None
        self.reset()

    @property
    def hi(self):
        return self.threshold + self.gap * (1.0 - self.threshold)

    @property
    def lo(self):
        return self.threshold - self.gap * self.threshold

    def reset(self):
        """Empty the memory (every label back to its text feature)."""
        n_lab, cap, D = self.n_id_ + self.n_negatives_, self.memory_length - 1, self.n_features_in_
        self.counts_ = np.zeros(n_lab, dtype=np.int64)
        self.entropies_ = np.zeros((n_lab, cap))
        # the stored images, once each, in a pool that grows with them; slot -> pool row
        self._slot = np.full((n_lab, cap), -1, dtype=np.int64)
        self._pool = np.empty((0, D), dtype=self._dtype)
        self._pool_n = 0
        self._proxies = self._labels_cd.copy()
        # the texts packed here (not in the first batch), the proxies given a copy
        self._packed_proxies = _Packed(self._proxies, self.n_id_, self.index).copy_of(
            self._packed_text)
        self.n_images_seen_ = 0
        self.n_batches_seen_ = 0
        return self

    # -- the memory ---------------------------------------------------------------------------

    def _insert(self, lab, Xn, H, undo):
        """Insert images Xn[i] under labels lab[i] (in this order) with entropies H[i]."""
        cap = self.memory_length - 1
        if lab.size == 0 or cap == 0:
            return np.zeros(0, dtype=np.int64)
        order = np.argsort(lab, kind="stable")
        ls = lab[order]
        first = np.searchsorted(ls, ls, side="left")
        rank = np.arange(ls.size) - first
        slot = self.counts_[ls] + rank
        app = slot < cap
        touched = [np.unique(ls)]
        undo.append(("counts", np.unique(ls), self.counts_[np.unique(ls)].copy()))
        if app.any():
            la, sa, ra = ls[app], slot[app], order[app]
            k = la.size
            undo.append(("append", la, sa, self._pool_n))
            if self._pool_n + k > self._pool.shape[0]:  # doubling, never past the bank's
                full = self._slot.size  # capacity: (C + M) x (memory_length - 1) images
                grown = np.empty((min(max(2 * self._pool.shape[0], self._pool_n + k, 64), full),
                                  self._pool.shape[1]), dtype=self._dtype)
                grown[:self._pool_n] = self._pool[:self._pool_n]
                self._pool = grown
            rows_new = self._pool_n + np.arange(k)
            self._pool[rows_new] = Xn[ra]
            self._pool_n += k
            self._slot[la, sa] = rows_new
            self.entropies_[la, sa] = H[ra]
        np.add.at(self.counts_, ls[app], 1)
        if self.replacement == "entropy":
            ex = ~app
            # excess candidates of a label, in batch order: round k takes each label's k-th
            xl, xr = ls[ex], order[ex]
            xk = slot[ex] - cap
            for k in range(int(xk.max()) + 1 if xk.size else 0):
                sel = xk == k
                lk, rk = xl[sel], xr[sel]
                E = self.entropies_[lk]
                mx = E.max(axis=1)
                last = cap - 1 - np.argmax((E == mx[:, None])[:, ::-1], axis=1)
                rep = H[rk] < mx
                if rep.any():
                    lr, sr, rr = lk[rep], last[rep], rk[rep]
                    pr = self._slot[lr, sr]
                    undo.append(("replace", lr, sr, self._pool[pr].copy(),
                                 self.entropies_[lr, sr].copy()))
                    self._pool[pr] = Xn[rr]
                    self.entropies_[lr, sr] = H[rr]
        return touched[0]

    def _undo(self, undo):
        for item in reversed(undo):
            if item[0] == "counts":
                self.counts_[item[1]] = item[2]
            elif item[0] == "append":
                _, la, sa, n_before = item
                self._slot[la, sa] = -1
                self.entropies_[la, sa] = 0.0
                self._pool_n = n_before
            else:
                _, la, sa, mem, ent = item
                self._pool[self._slot[la, sa]] = mem
                self.entropies_[la, sa] = ent

    def _neg_position(self):
        """Negative k's column in the kernel's packed order, minus C: the groups' columns
        in group order, then the others in index order (csrc/tta_simd.h)."""
        if self._neg_pos is None:
            M = self.n_negatives_
            rest = np.ones(M, bool)
            rest[self.index.ravel()] = False
            col = np.concatenate([self.index.ravel(), np.flatnonzero(rest)])
            pos = np.empty(M, dtype=np.int64)
            pos[col] = np.arange(M)
            self._neg_pos = pos
        return self._neg_pos

    def _proxy_rows(self, labels):
        """normalise(text + stored images) of the given labels, summed slot by slot in float64."""
        acc = self._text[labels].copy()
        cnt = self.counts_[labels]
        for s in range(self.memory_length - 1):
            has = cnt > s
            if not has.any():
                break
            acc[has] += self._pool[self._slot[labels[has], s]]
        return acc / np.linalg.norm(acc, axis=1, keepdims=True)

    def _refresh_proxies(self, labels):
        if labels.size:
            self._proxies[labels] = self._proxy_rows(labels)
            self._packed_proxies.repack(labels)

    def _sample_adaptive_logits(self, Xn, Z):
        """Z (B, C + M) = the batch's logits against the texts; the columns of labels holding
        images are replaced by the logits against the per-image proxies."""
        A = np.flatnonzero(self.counts_ > 0)
        if A.size == 0:
            return Z
        cap = self.memory_length - 1
        imgs = np.asarray(self._pool[self._slot[A]], dtype=np.float64)  # (nA, cap, D)
        imgs[self._slot[A] < 0] = 0.0  # empty slots (their pool row is garbage)
        S = np.concatenate([self._text[A][:, None, :], imgs], axis=1)  # (nA, 1 + cap, D)
        valid = np.concatenate([np.ones((A.size, 1), bool),
                                np.arange(cap)[None, :] < self.counts_[A][:, None]], axis=1)
        G = np.einsum("asd,atd->ast", S, S)
        flat = S.reshape(-1, S.shape[2])
        T = self.temperature
        for lo in range(0, Xn.shape[0], 16):
            xb = Xn[lo:lo + 16]
            dots = (xb @ flat.T).reshape(xb.shape[0], A.size, cap + 1)
            w = np.exp(-self.beta * (1.0 - dots)) * valid[None]
            num = (w * dots).sum(axis=2)
            nrm = np.sqrt(np.einsum("bas,ast,bat->ba", w, G, w))
            Z[lo:lo + 16, A] = num / nrm / T
        return Z

    # -- one batch ----------------------------------------------------------------------------

    def update(self, batch):
        """Score the next batch of the stream (B, D) and update the state; returns float64 (B,).

        A refused batch (wrong shape, NaN/Inf or zero rows, Ctrl-C) leaves the state unchanged.
        """
        X = _batch(batch, self.n_features_in_)
        C = self.n_id_
        nt = _config.resolve(self.num_threads)
        # on dnm's own kernel the rows come in its packed order ([ID; groups; rest]: written
        # contiguously); the OOD-like rows' negatives are put back in their own order below
        packed_rows = self.output != "vanilla" and bool(self._packed_text.kwargs())
        P, a_id, Nj = _softmax(X, self._labels_cd, self.temperature, nt, self.progress, C,
                               self.index, self.output != "vanilla", packed=self._packed_text,
                               packed_rows=packed_rows)
        v = _grouped(a_id, Nj)
        if self.output == "vanilla":
            self.n_images_seen_ += X.shape[0]
            self.n_batches_seen_ += 1
            return v
        Xn = _normalised64(X)
        up, down = v > self.hi, v < self.lo
        r_up, r_down = np.flatnonzero(up), np.flatnonzero(down)
        rows = np.concatenate([r_up, r_down])
        # each cached image's label (argmax, lowest index on ties) and entropy, in C on the
        # kernel's threads (the OOD-like rows' negatives in their own order)
        ent = self.replacement == "entropy" and self.memory_length > 1
        lab_up, lab_down = np.empty(r_up.size, np.int64), np.empty(r_down.size, np.int64)
        H_up, H_down = np.zeros(r_up.size), np.zeros(r_down.size)
        if r_up.size:
            _core.tta_cached(P, 0, C, None, r_up, np.ascontiguousarray(a_id[r_up]), ent, lab_up,
                             H_up, nt)
        if r_down.size:
            _core.tta_cached(P, C, self.n_negatives_, self._neg_position() if packed_rows else None,
                             r_down, None, ent, lab_down, H_down, nt)
        lab = np.concatenate([lab_up, C + lab_down])
        H = np.concatenate([H_up, H_down])
        undo = []
        proxies_before = None
        try:
            touched = self._insert(lab, Xn[rows].astype(self._dtype), H, undo)
            if self.sample_adaptive:
                Z = _logits(Xn, self._text, self.temperature)
                Z = self._sample_adaptive_logits(Xn, Z)
                Z -= Z.max(axis=1, keepdims=True)
                E = np.exp(Z)
                a = _grouped(E[:, :C].sum(axis=1), E[:, C:][:, self.index].sum(axis=2))
            else:
                proxies_before = (touched, self._proxies[touched].copy())
                self._refresh_proxies(touched)
                _, a_p, N_p = _softmax(X, self._proxies, self.temperature, nt, self.progress, C,
                                       self.index, False, packed=self._packed_proxies)
                a = _grouped(a_p, N_p)
        except BaseException:
            self._undo(undo)
            if proxies_before is not None:
                self._proxies[proxies_before[0]] = proxies_before[1]
                self._packed_proxies.repack(proxies_before[0])
            raise
        self.n_images_seen_ += X.shape[0]
        self.n_batches_seen_ += 1
        if self.output == "adaptive":
            return a
        return a + self.weight * v

    __call__ = update

    def proxies(self):
        """The current (C + M, D) float64 proxies normalise(text + stored images)."""
        return self._proxy_rows(np.arange(self.n_id_ + self.n_negatives_))

    # -- persistence --------------------------------------------------------------------------

    def _params(self):
        return {"threshold": self.threshold, "gap": self.gap, "memory_length": self.memory_length,
                "weight": self.weight, "sample_adaptive": self.sample_adaptive, "beta": self.beta,
                "replacement": self.replacement, "temperature": self.temperature,
                "output": self.output}

    def save(self, path):
        """Write the object with its state to ``path`` (.npz, format in the module docstring)."""
        cap = self.memory_length - 1
        filled = np.arange(cap)[None, :] < self.counts_[:, None] if cap else \
            np.zeros((self.counts_.size, 0), bool)
        arrays = {"id_labels": self._raw[0], "negatives": self._raw[1], "groups_index": self.index,
                  "counts": self.counts_, "entropies": self.entropies_,
                  "memory_images": self._pool[self._slot[filled]]}
        state = {"n_images_seen": self.n_images_seen_, "n_batches_seen": self.n_batches_seen_}
        return _save(path, self._FORMAT, self._params(), state, arrays)

    @classmethod
    def load(cls, path, *, num_threads=None, progress=False):
        """Read an object saved by ``save``; it continues the stream with the same bits."""
        meta, arr, path = _load(path, cls._FORMAT, {
            "id_labels": ("<f2", "<f4", "<f8"), "negatives": ("<f2", "<f4", "<f8"),
            "groups_index": ("<i8",), "counts": ("<i8",), "entropies": ("<f8",),
            "memory_images": ("<f4", "<f8")})
        try:
            obj = cls(arr["id_labels"], arr["negatives"], groups=arr["groups_index"],
                      num_threads=num_threads, progress=progress, **meta["params"])
        except (TypeError, ValueError) as exc:
            raise StateFileError(f"{path}: inconsistent state file: {exc}") from None
        n_lab, cap = obj.n_id_ + obj.n_negatives_, obj.memory_length - 1
        counts, ents, imgs = arr["counts"], arr["entropies"], arr["memory_images"]
        if counts.shape != (n_lab,) or ents.shape != (n_lab, cap) or counts.min(initial=0) < 0 \
                or counts.max(initial=0) > cap or imgs.dtype != obj._dtype \
                or imgs.shape != (int(counts.sum()), obj.n_features_in_):
            raise StateFileError(f"{path}: inconsistent state file: memory shapes/counts")
        obj.counts_ = counts
        obj.entropies_ = ents
        filled = np.arange(cap)[None, :] < counts[:, None]
        obj._pool = np.ascontiguousarray(imgs, dtype=obj._dtype)
        obj._pool_n = imgs.shape[0]
        obj._slot[filled] = np.arange(imgs.shape[0])
        obj._refresh_proxies(np.flatnonzero(counts > 0))
        _set_counters(obj, meta, path)
        return obj


def _set_counters(obj, meta, path):
    st = meta.get("state")
    ok = isinstance(st, dict) and all(
        isinstance(st.get(k), int) and not isinstance(st.get(k), bool) and st[k] >= 0
        for k in ("n_images_seen", "n_batches_seen"))
    if not ok:
        raise StateFileError(f"{path}: inconsistent state file: counters {st!r}")
    obj.n_images_seen_ = st["n_images_seen"]
    obj.n_batches_seen_ = st["n_batches_seen"]


def _logits(Xn, labels, T):
    return Xn @ labels.T / T


def adaneg_score(stream, id_labels, negatives, *, batch_size=256, groups=5, seed=0,
                 threshold=0.5, gap=0.5, memory_length=10, weight=0.1, sample_adaptive=False,
                 beta=5, replacement="entropy", temperature=0.01, output="combined",
                 num_threads=None, progress=False):
    """AdaNeg over a whole stream (N, D) in stream order, fed in batches of ``batch_size``
    (the last one may be short); the same as an :class:`AdaNeg` fed those batches.
    Returns float64 (N,)."""
    obj = AdaNeg(id_labels, negatives, groups=groups, seed=seed, threshold=threshold, gap=gap,
                 memory_length=memory_length, weight=weight, sample_adaptive=sample_adaptive,
                 beta=beta, replacement=replacement, temperature=temperature, output=output,
                 num_threads=num_threads)
    return _run_stream(obj, stream, batch_size, progress, "adaneg")


# ---------------------------------------------------------------------------------------------
# TANL
# ---------------------------------------------------------------------------------------------

def _top(a, beta):
    """The min(beta, K) indices of the largest entries of a, descending; ties: lower index
    first."""
    K = a.shape[0]
    n = min(beta, K)
    kth = np.partition(a, K - n)[K - n]
    gt = np.flatnonzero(a > kth)
    eq = np.flatnonzero(a == kth)[:n - gt.size]
    sel = np.concatenate([gt, eq])
    return sel[np.lexsort((sel, -a[sel]))]


def _aas(a_id, R_sel, beta, step, nt=1):
    """Activation-aware score from softmax rows: a_id (B,) the ID shares, R_sel (B, n) the
    selected corpus activations in selection order (the common normaliser cancels); in C
    (csrc/tta.h: prefix sums in selection order, the prefixes' terms in 8 fixed lanes), rows
    on up to nt threads."""
    out = np.empty(R_sel.shape[0])
    _core.tta_aas(np.ascontiguousarray(a_id, dtype=np.float64),
                  np.ascontiguousarray(R_sel, dtype=np.float64), beta, step, out, nt)
    return out


_OTSU_GRID = (np.arange(100) * 0.01).astype(np.float32).astype(np.float64)


def _otsu(s):
    """Otsu threshold on the grid i * 0.01 (float32), i = 0..99: minimise w0 var0 + w1 var1
    (population variances; +inf when a class is empty); of the exact minimisers the one at
    index len // 2; 0.5 when all are +inf.

    The scores are sorted once: a threshold's classes are a prefix and a suffix, their sizes
    from a binary search, their sums and sums of squares from prefix sums of the scores minus
    their mean (so the variances lose nothing to cancellation beyond a few ulps of the
    class variance).  Thresholds that split the scores alike get bitwise equal criteria, so
    the ties between them are exact.  O(n log n) instead of 100 passes over the queue.
    """
    n = s.size
    ss = np.sort(s)
    y = ss - ss.mean()
    S1 = np.concatenate([[0.0], np.cumsum(y)])
    S2 = np.concatenate([[0.0], np.cumsum(y * y)])
    n0 = np.searchsorted(ss, _OTSU_GRID, side="left")  # scores below the threshold
    n1 = n - n0
    with np.errstate(invalid="ignore", divide="ignore"):
        a0, b0 = S1[n0], S2[n0]
        a1, b1 = S1[n] - a0, S2[n] - b0
        v0 = b0 / n0 - (a0 / n0) ** 2
        v1 = b1 / n1 - (a1 / n1) ** 2
        crit = (n0 / n) * v0 + (n1 / n) * v1
    crit = np.where((n0 == 0) | (n1 == 0), np.inf, crit)
    if np.isinf(crit).all():
        return 0.5
    cand = np.flatnonzero(crit == crit.min())
    return float(_OTSU_GRID[cand[len(cand) // 2]])


_EVERY = 32  # rows per running-sum checkpoint of a queue
_QUEUE_DTYPES = {"float32": np.float32, "float64": np.float64}


class _Ring:
    """The last `length` rows appended, in a fixed (length, K) buffer of `dtype` (float32:
    each row rounded to nearest float32 as it is appended; or float64).  Until it is full the
    rows sit at [0, n) in order; the mean is over the rows present, in double."""

    def __init__(self, length, K, dtype=np.float32):
        self.buf = np.empty((length, K), dtype=dtype)
        self.n = 0
        self.start = 0  # physical row of the oldest entry once full
        self._mean = None  # the mean of the rows as they stand (None: to compute)
        # running sums of the physical rows after every _EVERY of them, valid for the first
        # _ck_valid checkpoints (the rows before them unchanged): a mean resumes from there
        self._ck = np.empty((length // _EVERY, K)) if length >= 2 * _EVERY else None
        self._ck_valid = 0

    def _written(self, first):
        """Physical rows from `first` on (at least) were written."""
        self._mean = None
        self._ck_valid = min(self._ck_valid, first // _EVERY)

    def append(self, R):
        """Append the rows of R, in order (rounded to float32 in a float32 queue)."""
        plan = self.plan(np.arange(R.shape[0]))
        self.buf[plan[1]] = R[plan[0]]
        self.commit(plan)

    def plan(self, idx):
        """(idx, dst rows, take) for appending rows idx (in order) of a batch: the last
        `length` of them, the physical rows they go to, and how many fill free rows (the
        others overwrite the oldest); nothing changes until commit."""
        L = self.buf.shape[0]
        idx = np.asarray(idx, dtype=np.int64)[-L:]
        take = min(L - self.n, idx.size) if self.n < L else 0
        rest = idx.size - take
        dst = np.concatenate([self.n + np.arange(take), (self.start + np.arange(rest)) % L])
        return idx, dst.astype(np.int64), take

    def commit(self, plan):
        """After the rows of plan were written to buf."""
        idx, dst, take = plan
        if idx.size == 0:
            return
        self._written(int(dst.min()))
        self.n += take
        self.start = (self.start + idx.size - take) % self.buf.shape[0]

    @staticmethod
    def append_scaled(rings, idxs, rows, scales, lb, mr, off, nt):
        """Append rows idxs[r] (in order) of the unscaled rows (csrc/tta.h: P = rows x scales
        in panels of mr rows, columns off..) to rings[r], as append() does with P (the double
        product; rounded to float32 in a float32 queue); all rings in one pass in C."""
        plans = [ring.plan(idx) for ring, idx in zip(rings, idxs)]
        _core.tta_copy_rows(rows, scales, lb, mr, off,
                            tuple((i, d, ring.buf) for ring, (i, d, _) in zip(rings, plans)), nt)
        for ring, plan in zip(rings, plans):
            ring.commit(plan)

    def mean(self, nt=0):
        """The float64 mean of the rows present (summed in double in physical order, as
        NumPy's mean over axis 0 of the rows as float64; read-only, kept until the next
        append)."""
        if self._mean is None:
            out = np.empty(self.buf.shape[1])
            if self._ck is None:
                _core.rows_mean(self.buf, self.n, out, nt)
            else:
                _core.rows_mean(self.buf, self.n, out, nt, self._ck, _EVERY, self._ck_valid)
                self._ck_valid = self.n // _EVERY
            out.flags.writeable = False
            self._mean = out
        return self._mean


class TANL:
    """TANL's streaming score with explicit state: ``scores = obj.update(batch)``.

    id_labels (C, D); corpus (K, D): the whole candidate corpus, selected negatives first;
    noise (15, D): the embeddings of the 15 noise images (:func:`noise_images`) made by the
    caller's image encoder.  ``top`` = beta negatives per image, ``step`` = gamma (an integer >=
    0: the prefix step of the activation-aware score, 0 = one sum over all of them), ``alpha``,
    ``gap``, ``queue_length`` (ID-like and OOD-like activation queues), ``score_queue_length``
    (the scores Otsu's threshold is taken from).  ``id_order`` (a permutation of C) and
    ``noise_order`` (of the 15 noise rows) order the initial queues; ``None`` draws them from
    ``numpy.random.default_rng(seed)`` (first id_order, then noise_order).

    ``queue_dtype``: ``"float32"`` (default) or ``"float64"``, the storage of the queues' rows
    (module docstring, "Precision").

    Memory: two queues of queue_length x K activations (float32: about 83 MB each at
    K = 69,500, rounded to float32 as they enter a queue, their means summed in double;
    float64: twice that), for a queue of 64
    rows or more float64 running sums every 32 rows (about 5 MB each), plus one batch of
    B x (C + K) softmax rows while it is scored (float32 on dnm's own kernel with float32
    queues: 72 MB at B = 256; else float64), and (dnm's own kernel) a float32 packed copy of
    [ID; corpus] (about 144 MB at ImageNet size).
    """

    _FORMAT = "dnm.TANL"

    def __init__(self, id_labels, corpus, noise, *, top=1000, step=1, alpha=0.0, gap=0.5,
                 queue_length=300, score_queue_length=20000, id_order=None, noise_order=None,
                 seed=0, temperature=0.01, queue_dtype="float32", num_threads=None,
                 progress=False):
        if queue_dtype not in _QUEUE_DTYPES:
            raise ValueError(f"queue_dtype: expected 'float32' or 'float64', got {queue_dtype!r}")
        self.queue_dtype = queue_dtype
        P, self._t = _labels(id_labels, "id_labels")
        U, u64 = _labels(corpus, "corpus")
        Z, self._z = _labels(noise, "noise")
        D = P.shape[1]
        for name, a in (("corpus", U), ("noise", Z)):
            if a.shape[1] != D:
                raise ValueError(f"{name}: has {a.shape[1]} features per row but id_labels has {D}")
        _check_noise_rows(Z)
        self.top = check_int(top, "top", low=1)
        self.step = check_int(step, "step", low=0)
        self.alpha = _check_real(alpha, "alpha", 0.0, 1.0)
        self.gap = _check_real(gap, "gap", 0.0, 1.0)
        self.queue_length = check_int(queue_length, "queue_length", low=1)
        self.score_queue_length = check_int(score_queue_length, "score_queue_length", low=1)
        self.temperature = check_positive(temperature, "temperature")
        self.num_threads = num_threads
        _config.resolve(num_threads)
        self.progress = bool(progress)
        C = P.shape[0]
        if id_order is None or noise_order is None:
            if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
                raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
            rng = np.random.default_rng(int(seed))
            drawn_id, drawn_noise = rng.permutation(C), rng.permutation(N_NOISE)
        self.id_order = _permutation(drawn_id if id_order is None else id_order, C, "id_order")
        self.noise_order = _permutation(drawn_noise if noise_order is None else noise_order,
                                        N_NOISE, "noise_order")
        self.seed = seed
        self._raw = (P, U, Z)
        self._dtype = _compute_dtype(P, U, Z)
        self.n_id_, self.n_corpus_, self.n_features_in_ = C, U.shape[0], D
        self._labels_cd = np.ascontiguousarray(np.concatenate([self._t, u64]),
                                               dtype=self._dtype)
        self._packed = _Packed(self._labels_cd, C)
        self._buf = None
        self.reset()

    def _rows(self, Q64):
        """(ID shares, corpus activations) of the rows of Q64."""
        nt = _config.resolve(self.num_threads)
        P, a_id, _ = _softmax(np.ascontiguousarray(Q64, dtype=self._dtype), self._labels_cd,
                              self.temperature, nt, self.progress, self.n_id_,
                              packed=self._packed)
        return a_id, P[:, self.n_id_:]

    def reset(self):
        """Back to the initial queues (ID texts, noise) and score queue."""
        L, K = self.queue_length, self.n_corpus_
        qd = _QUEUE_DTYPES[self.queue_dtype]
        self._qpos, self._qneg = _Ring(L, K, qd), _Ring(L, K, qd)
        self._qpos.append(self._rows(self._t[self.id_order[-L:]])[1])
        self._qneg.append(self._rows(self._z[self.noise_order[-L:]])[1])
        sel0 = _top(self._qneg.mean() - self._qpos.mean(), self.top)
        parts = []
        for q in (self._t, self._z):
            for lo in range(0, q.shape[0], 256):
                a, R = self._rows(q[lo:lo + 256])
                parts.append(_aas(a, R[:, sel0], self.top, self.step))
        self._squeue = np.concatenate(parts)[-self.score_queue_length:]
        self.n_images_seen_ = 0
        self.n_batches_seen_ = 0
        return self

    def update(self, batch):
        """Score the next batch of the stream (B, D) and update the state; returns float64 (B,).

        A refused batch (wrong shape, NaN/Inf or zero rows, Ctrl-C) leaves the state unchanged.
        """
        X = _batch(batch, self.n_features_in_)
        nt = _config.resolve(self.num_threads)
        C, B, L = self.n_id_, X.shape[0], self._labels_cd.shape[0]
        k = _config.kernel()
        # the batch's unscaled rows in panels of mr images (csrc/tta.h); with float32 queues
        # on dnm's own kernel in float32 (the float exps as they are; module docstring,
        # "Precision")
        lb, mr = _core.softmax_block(self._labels_cd, k), _core.softmax_panel(self._labels_cd, k)
        f32 = self.queue_dtype == "float32" and mr > 1
        shape, rdt = (-(-B // mr) * mr, L), (np.float32 if f32 else np.float64)
        if self._buf is None or self._buf.shape != shape or self._buf.dtype != rdt:
            self._buf = _aligned_empty(shape, rdt)  # reused by the next batch
        scales = np.empty((B, -(-L // lb)))
        mpos, mneg = self._qpos.mean(nt), self._qneg.mean(nt)
        sel0 = _top(mneg - mpos, self.top)
        R0 = np.empty((B, sel0.size))
        # unscaled rows: P = rows x scales, applied by the C consumers as they read; the
        # activations of sel0 are taken by the kernel while each block is in cache
        P, a_id, _ = _softmax(X, self._labels_cd, self.temperature, nt, self.progress, C,
                              out=self._buf, scales=scales, packed=self._packed,
                              sel=C + sel0, sel_out=R0, rows_f32=f32)

        def gather(sel):
            out = np.empty((B, sel.size))
            _core.tta_gather(P, scales, lb, mr, C, sel, out, nt)
            return out

        s0 = _aas(a_id, R0, self.top, self.step, nt)
        squeue = np.concatenate([self._squeue, s0])[-self.score_queue_length:]
        th = _otsu(squeue)
        up = s0 > th + self.gap * (1.0 - th)
        down = s0 < th - self.gap * th
        al = self.alpha
        m_up, m_down = np.empty(self.n_corpus_), np.empty(self.n_corpus_)
        _core.tta_masked_means(P, scales, lb, mr, C, up.view(np.uint8) + 2 * down.view(np.uint8),
                               m_up, m_down, nt)  # (up and down are disjoint)
        pos = al * mpos + (1.0 - al) * m_up if up.any() else mpos
        neg = al * mneg + (1.0 - al) * m_down if down.any() else mneg
        sel1 = _top(neg - pos, self.top)
        out = _aas(a_id, gather(sel1), self.top, self.step, nt)
        # the state changes only from here on (no step below can fail)
        self._squeue = squeue
        _Ring.append_scaled((self._qpos, self._qneg), (np.flatnonzero(up), np.flatnonzero(down)),
                            P, scales, lb, mr, C, nt)
        self.n_images_seen_ += X.shape[0]
        self.n_batches_seen_ += 1
        self.last_threshold_ = th
        return out

    __call__ = update

    def _params(self):
        return {"top": self.top, "step": self.step, "alpha": self.alpha, "gap": self.gap,
                "queue_length": self.queue_length, "score_queue_length": self.score_queue_length,
                "temperature": self.temperature, "queue_dtype": self.queue_dtype}

    def save(self, path):
        """Write the object with its state to ``path`` (.npz, format in the module docstring)."""
        P, U, Z = self._raw
        arrays = {"id_labels": P, "corpus": U, "noise": Z, "id_order": self.id_order,
                  "noise_order": self.noise_order, "score_queue": self._squeue,
                  "positive_queue": self._qpos.buf[:self._qpos.n],
                  "negative_queue": self._qneg.buf[:self._qneg.n]}
        state = {"n_images_seen": self.n_images_seen_, "n_batches_seen": self.n_batches_seen_,
                 "positive_start": self._qpos.start, "negative_start": self._qneg.start}
        return _save(path, self._FORMAT, self._params(), state, arrays)

    @classmethod
    def load(cls, path, *, num_threads=None, progress=False):
        """Read an object saved by ``save``; it continues the stream with the same bits.  A
        format_version 1 file (float64 queues, before ``queue_dtype``) is read as
        ``queue_dtype="float64"``: the same bits too (module docstring)."""
        f = ("<f2", "<f4", "<f8")
        meta, arr, path = _load(path, cls._FORMAT, {
            "id_labels": f, "corpus": f, "noise": f, "id_order": ("<i8",),
            "noise_order": ("<i8",), "score_queue": ("<f8",), "positive_queue": ("<f4", "<f8"),
            "negative_queue": ("<f4", "<f8")})
        params = dict(meta["params"])
        if meta["format_version"] == 1:
            if "queue_dtype" in params:
                raise StateFileError(f"{path}: inconsistent state file: queue_dtype in a "
                                     "format_version 1 file")
            params["queue_dtype"] = "float64"
        try:
            obj = cls(arr["id_labels"], arr["corpus"], arr["noise"], id_order=arr["id_order"],
                      noise_order=arr["noise_order"], num_threads=num_threads,
                      progress=progress, **params)
        except (TypeError, ValueError) as exc:
            raise StateFileError(f"{path}: inconsistent state file: {exc}") from None
        L, K = obj.queue_length, obj.n_corpus_
        sq = arr["score_queue"]
        st = meta.get("state", {})
        for name, ring, key in (("positive_queue", obj._qpos, "positive_start"),
                                ("negative_queue", obj._qneg, "negative_start")):
            q = arr[name]
            start = st.get(key) if isinstance(st, dict) else None
            if q.dtype != obj._qpos.buf.dtype or q.ndim != 2 or q.shape[1] != K \
                    or not 1 <= q.shape[0] <= L or not ((q >= 0) & (q <= 1)).all() \
                    or isinstance(start, bool) or not isinstance(start, int) \
                    or not 0 <= start < max(1, q.shape[0]) or (start and q.shape[0] != L):
                raise StateFileError(f"{path}: inconsistent state file: {name}")
            ring.buf[:q.shape[0]] = q
            ring.n, ring.start = q.shape[0], start
            ring._written(0)
        if sq.ndim != 1 or not 1 <= sq.size <= obj.score_queue_length:
            raise StateFileError(f"{path}: inconsistent state file: score_queue")
        obj._squeue = sq
        _set_counters(obj, meta, path)
        return obj


def tanl_score(stream, id_labels, corpus, noise, *, batch_size=256, top=1000, step=1,
               alpha=0.0, gap=0.5, queue_length=300, score_queue_length=20000, id_order=None,
               noise_order=None, seed=0, temperature=0.01, queue_dtype="float32", num_threads=None,
               progress=False):
    """TANL over a whole stream (N, D) in stream order, fed in batches of ``batch_size`` (the
    last one may be short); the same as a :class:`TANL` fed those batches.
    Returns float64 (N,)."""
    obj = TANL(id_labels, corpus, noise, top=top, step=step, alpha=alpha, gap=gap,
               queue_length=queue_length, score_queue_length=score_queue_length,
               id_order=id_order, noise_order=noise_order, seed=seed, temperature=temperature,
               queue_dtype=queue_dtype, num_threads=num_threads)
    return _run_stream(obj, stream, batch_size, progress, "tanl")


# ---------------------------------------------------------------------------------------------
# noise images, evaluation streams
# ---------------------------------------------------------------------------------------------

def noise_images(seed=0):
    """TANL's 15 noise images as a (15, 3, 224, 224) float32 array in [0, 1], from
    ``numpy.random.default_rng(seed)``: three each of standard normal (min-max scaled over
    the three together), uniform [0, 1), Poisson(5) (min-max scaled), Gamma(2, 1) (min-max
    scaled) and salt-and-pepper (uniform >= 0.5 -> 1, else 0), in this order.

    The official code feeds them to the image encoder as they are, **without** the usual
    mean/std normalisation of its preprocessing: encode them the same way, normalise the
    embeddings or not (dnm does), and pass the (15, D) result as TANL's ``noise``.
    """
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    rng = np.random.default_rng(int(seed))
    shape = (3, 3, 224, 224)

    def scaled(a):
        return (a - a.min()) / (a.max() - a.min())

    parts = [scaled(rng.standard_normal(shape)), rng.random(shape),
             scaled(rng.poisson(5.0, shape).astype(np.float64)),
             scaled(rng.gamma(2.0, 1.0, shape)), (rng.random(shape) >= 0.5).astype(np.float64)]
    return np.concatenate(parts).astype(np.float32)


def evaluation_stream(id_images, ood_images, seed=0):
    """The usual evaluation stream: ID and OOD images concatenated and shuffled with
    ``numpy.random.default_rng(seed)``.  Returns (stream, order, n_id): stream =
    concat[order], n_id = len(id_images).  Score the stream, then
    ``split_scores(scores, order, n_id)`` gives (id_scores, ood_scores)."""
    A = as_matrix(id_images, "id_images")
    B = as_matrix(ood_images, "ood_images")
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"ood_images: has {B.shape[1]} features per row but id_images has "
                         f"{A.shape[1]}")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    order = np.random.default_rng(int(seed)).permutation(A.shape[0] + B.shape[0])
    X = np.concatenate([A, B.astype(A.dtype, copy=False)])
    return X[order], order, A.shape[0]


def split_scores(scores, order, n_id):
    """(id_scores, ood_scores) in the original order of each set, from the scores of
    ``evaluation_stream``'s stream (for :func:`dnm.evaluate`)."""
    s = np.asarray(scores, dtype=np.float64)
    order = _permutation(order, s.shape[0], "order")
    n_id = check_int(n_id, "n_id", low=0, high=s.shape[0])
    back = np.empty_like(s)
    back[order] = s
    return back[:n_id], back[n_id:]


# ---------------------------------------------------------------------------------------------
# state files
# ---------------------------------------------------------------------------------------------

# the metadata: params and state (a dozen scalars each) and the array table, 3 levels deep
_METADATA_MAX_DEPTH = 6
_METADATA_MAX_CONTAINERS = 32
_METADATA_MAX_ITEMS = 256


def _save(path, fmt, params, state, arrays):
    from . import __version__

    meta = {"format": fmt, "format_version": FORMAT_VERSION, "dnm_version": __version__,
            "params": params, "state": state}
    return _npzfile.write(path, meta, arrays, prefix=".dnm-state-")


def _load(path, fmt, specs):
    """(meta, arrays, path) of a state file of format ``fmt`` with exactly the members of
    ``specs`` ({name: allowed dtypes}); every check of dnm._npzfile, errors StateFileError."""
    path = os.fspath(path)
    err = StateFileError
    with _npzfile.open_archive(path, err, "state file") as zf:
        meta = _npzfile.read_metadata(zf, path, err, max_depth=_METADATA_MAX_DEPTH,
                                      max_containers=_METADATA_MAX_CONTAINERS,
                                      max_items=_METADATA_MAX_ITEMS)
        if meta.get("format") != fmt:
            raise err(f"{path}: not a {fmt} state file")
        _npzfile.check_version(meta, path, err, FORMAT_VERSION, "state file")
        table = _npzfile.check_table(meta, zf, path, err, specs)
        arrays = {name: _npzfile.read_member(zf, name, spec, path, err)
                  for name, spec in table.items()}
    _npzfile.verify(meta, arrays, path, err)
    if not isinstance(meta.get("params"), dict):
        raise StateFileError(f"{path}: params must be a JSON object")
    return meta, arrays, path
