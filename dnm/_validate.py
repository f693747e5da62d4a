"""Input checks shared by every public function: validate, convert once.

Arrays are converted with ``np.asarray`` (no copy for NumPy arrays and for CPU
tensors exposing ``__array__``/``__dlpack__``); float16, float32 and float64
are passed to the C core as they are, with any strides.  NaN/Inf and zero rows
are found by the C core while it packs tiles (so no N-sized temporary is ever
built) and reported with the row number.
"""
from __future__ import annotations

import numbers

import numpy as np

_FLOATS = (np.float16, np.float32, np.float64)


def refuse_masked(x, name):
    """NumPy masked arrays are refused: every kernel would silently read the masked values."""
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name}: NumPy masked arrays are not supported (the mask would be "
                        "ignored); pass x.filled(value), or drop the masked rows first")


def _to_numpy(x, name):
    refuse_masked(x, name)
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "__array__") or isinstance(x, (list, tuple)):
        try:
            return np.asarray(x)
        except (TypeError, ValueError, RuntimeError) as exc:
            # torch bfloat16 / tensors that require grad / CUDA tensors land here
            conv = _from_torch(x)
            if conv is not None:
                return conv
            raise TypeError(f"{name}: cannot convert {type(x).__name__} to an array ({exc})") from None
    if hasattr(x, "__dlpack__"):
        try:
            return np.from_dlpack(x)
        except (TypeError, ValueError, RuntimeError, BufferError) as exc:
            raise TypeError(f"{name}: cannot import {type(x).__name__} via DLPack ({exc})") from None
    raise TypeError(f"{name}: expected an array-like of floats, got {type(x).__name__}")


def is_torch(x):
    return (type(x).__module__ or "").startswith("torch")


def tensor_to_numpy(t, *, allow_device_copy=False, device_error=None):
    """A torch tensor as NumPy, converting at most once: detached (a view), copied to the
    host only with ``allow_device_copy`` (else TypeError ``device_error``), bfloat16 widened
    to float32 (NumPy has no bfloat16); otherwise a view of the tensor's memory."""
    t = t.detach()
    if t.device.type != "cpu":
        if not allow_device_copy:
            raise TypeError(device_error or "tensor is on a non-CPU device; dnm computes on the "
                            "CPU: call .cpu() first (that copies the tensor to host memory)")
        if t.device.type == "meta":
            raise TypeError("features: a 'meta' tensor holds no data to score")
        t = t.cpu()
    if str(t.dtype) == "torch.bfloat16":
        t = t.float()
    if t.is_conj() or t.is_neg():  # lazy views: materialise (cannot happen for real floats)
        t = t.resolve_conj().resolve_neg()
    return t.numpy()


def _from_torch(x):
    """bfloat16 / grad-requiring CPU tensors: one conversion to float32."""
    return tensor_to_numpy(x) if is_torch(x) else None


def as_matrix(x, name, *, allow_empty=False):
    """Return a 2-D float16/32/64 ndarray view of `x`, converting only if needed."""
    a = _to_numpy(x, name)
    if a.dtype == np.bool_ or a.dtype.kind in "iuc":
        kind = {"b": "boolean", "i": "integer", "u": "integer", "c": "complex"}[a.dtype.kind]
        raise TypeError(f"{name}: expected floating-point data, got {kind} dtype {a.dtype}")
    if a.dtype.kind != "f":
        raise TypeError(f"{name}: expected floating-point data, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(
            f"{name}: expected a 2-D array (n_rows, n_features), got {a.ndim}-D array "
            f"with shape {a.shape} instead"
        )
    if not allow_empty and (a.shape[0] == 0 or a.shape[1] == 0):
        raise ValueError(f"{name}: array is empty (shape {a.shape})")
    if a.dtype.type not in _FLOATS:  # longdouble and friends: one conversion
        a = a.astype(np.float64)
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    return a


def check_same_dim(pairs):
    """pairs: [(name, array), ...]; all must share the last dimension."""
    d0 = pairs[0][1].shape[1]
    for name, a in pairs[1:]:
        if a.shape[1] != d0:
            raise ValueError(
                f"{name}: has {a.shape[1]} features per row but {pairs[0][0]} has {d0}"
            )


def check_positive(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
    return v


def check_int(value, name, low=None, high=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    v = int(value)
    if low is not None and v < low:
        raise ValueError(f"{name}: must be >= {low}, got {v}")
    if high is not None and v > high:
        raise ValueError(f"{name}: must be <= {high}, got {v}")
    return v


def check_fraction(value, name, *, open_low=True, closed_high=True):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    v = float(value)
    lo_ok = v > 0 if open_low else v >= 0
    hi_ok = v <= 1 if closed_high else v < 1
    if not (np.isfinite(v) and lo_ok and hi_ok):
        lo = "(0" if open_low else "[0"
        hi = "1]" if closed_high else "1)"
        raise ValueError(f"{name}: must lie in {lo}, {hi}, got {value!r}")
    return v


def check_mask(mask, n, name="is_adjective"):
    """A boolean part-of-speech mask of length n."""
    if mask is None:
        raise ValueError(f"{name}: required (a boolean array with one entry per candidate)")
    refuse_masked(mask, name)
    m = np.asarray(mask)
    if m.ndim != 1 or m.shape[0] != n:
        raise ValueError(f"{name}: expected a 1-D array of length {n}, got shape {m.shape}")
    if m.dtype != np.bool_:
        if m.dtype.kind in "iu" and np.isin(m, (0, 1)).all():
            m = m.astype(bool)
        else:
            raise TypeError(f"{name}: expected a boolean array, got dtype {m.dtype}")
    return m


def score_function(detector, *, hint=""):
    """The ``score_samples`` method of a detector, or the object itself if it is callable."""
    fn = getattr(detector, "score_samples", None)
    if fn is None and callable(detector):
        fn = detector
    if fn is None or not callable(fn):
        raise TypeError(
            f"detector: expected an object with a score_samples(X) method or a callable "
            f"f(X) -> (n,){hint}, got {type(detector).__name__}")
    return fn
