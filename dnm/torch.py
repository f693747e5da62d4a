"""PyTorch interop: a drop-in OOD head for ``nn.Sequential`` (needs PyTorch: ``pip install torch``).

::

    import torch, dnm
    from dnm.torch import OODHead

    model = torch.nn.Sequential(image_encoder, OODHead(detector))
    with torch.inference_mode():
        scores = model(images)          # float64 (N,) CPU tensor, higher = more ID

``OODHead`` wraps anything with a ``score_samples(X)`` method (a fitted
:class:`dnm.NegativeLabelDetector`, or your own object) or a plain callable
``f(X) -> (N,)`` such as ``functools.partial(dnm.dnm_score, id_labels=P, negatives=M)``.

Conversions (each input is converted at most once, never on the float32 path):

* CPU float32 / float64 / float16 tensors, any strides: handed to the C core as a
  NumPy view of the tensor's memory (no copy; float16 is widened per tile inside
  the C core, never as an N-sized copy);
* bfloat16 (NumPy has no such dtype): one conversion to float32;
* tensors that require grad: detached (a view, no copy).  The scores carry no
  gradient: the head is for inference, not differentiable;
* CUDA / other devices: copied to host memory once (``features.cpu()``: N x D x
  itemsize bytes over the bus, synchronous) unless ``allow_device_copy=False``,
  which raises instead.

The output is a float64 CPU tensor sharing memory with the NumPy result (the C
core computes every score in double).  Pass ``dtype=torch.float32`` (or any
float dtype) for one cast, and ``device=`` to move the result.

Export and deployment (each point is tested in ``tests/test_torch.py``).  The head's
``forward`` leaves PyTorch: it hands the tensor's memory to NumPy and dnm's C core.
What works:

* ``nn.Sequential(encoder, OODHead(det))``, under ``torch.no_grad()`` and
  ``torch.inference_mode()``;
* ``torch.compile(model)``: TorchDynamo compiles the layers before the head and runs
  the head as ordinary Python; the scores are the eager ones;
* saving: ``torch.save(model)`` / ``torch.load(..., weights_only=False)`` pickles the
  whole module, detector included; or save ``model.state_dict()`` (the head has no
  state) and the detector with ``detector.save(path)``, and rebuild the head from
  ``NegativeLabelDetector.load(path)`` (no pickle needed).

What does not, and why:

* ``torch.jit.script``: TorchScript compiles the Python source of ``forward`` into its
  own language, which has no NumPy and cannot call dnm's C core; it fails with a
  ``RuntimeError``;
* ``torch.export.export``: it traces ``forward`` with fake tensors, which have no data
  to hand to NumPy (``RuntimeError: .numpy() is not supported for tensor subclasses``);
  export the encoder alone and score its output with the detector;
* ``torch.jit.trace`` (deprecated by PyTorch) runs, with a ``TracerWarning``, but
  records the head's output for the example input as a constant: the traced model
  returns the same scores for every input.  Do not use it.
"""
from __future__ import annotations

import numpy as np
import torch  # absolute import: the real PyTorch, not this module

from ._validate import score_function, tensor_to_numpy

__all__ = ["OODHead", "to_numpy"]


def to_numpy(features, *, allow_device_copy=True):
    """A 2-D-compatible NumPy view of a tensor, converting at most once (see module doc)."""
    if not isinstance(features, torch.Tensor):
        return features
    if features.is_complex() or not features.is_floating_point():
        raise TypeError(f"features: expected a floating-point tensor, got {features.dtype}")
    return tensor_to_numpy(features, allow_device_copy=allow_device_copy, device_error=(
        f"features: tensor is on device {features.device}; dnm scores on the CPU. Move it "
        "with features.cpu() (one copy of N x D values to host memory) or build "
        "OODHead(..., allow_device_copy=True)"))


def _score_fn(detector):
    return score_function(detector, hint='')


class OODHead(torch.nn.Module):
    """``forward(features) -> scores``: the detector's ``score_samples`` as a tensor.

    Parameters
    ----------
    detector : object with ``score_samples(X)``, or a callable ``f(X) -> (N,)``
        E.g. a fitted :class:`dnm.NegativeLabelDetector`.  Kept as a plain attribute
        (not a submodule; the head has no parameters and an empty ``state_dict``:
        save the detector itself with ``detector.save(path)``).
    dtype : torch.dtype or None
        dtype of the returned scores; None (default) returns float64 without a copy.
    device : torch.device, str or None
        Device of the returned scores; None (default) keeps them on the CPU.
    allow_device_copy : bool
        True (default): non-CPU features are copied to the host once.  False: raise
        a TypeError for them instead.

    ``features`` may be (N, D) or have extra leading dimensions (..., D): the scores
    then have shape (...).  A 1-D (D,) input gives a 0-d tensor.

    Works with ``torch.compile`` and ``torch.save``; not with ``torch.jit.script`` or
    ``torch.export`` (see the module documentation for why).
    """

    def __init__(self, detector, *, dtype=None, device=None, allow_device_copy=True):
        super().__init__()
        self._score = _score_fn(detector)
        self.detector = detector
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype: expected a torch floating-point dtype or None, got {dtype!r}")
        self.dtype = dtype
        self.device = None if device is None else torch.device(device)
        self.allow_device_copy = bool(allow_device_copy)

    def forward(self, features):
        if not isinstance(features, torch.Tensor):
            raise TypeError(f"features: expected a torch.Tensor, got {type(features).__name__}")
        if features.is_nested or features.layout != torch.strided:
            raise TypeError("features: expected a dense tensor of shape (N, D) or (..., D), got a "
                            f"{'nested' if features.is_nested else str(features.layout)} tensor; "
                            "pad or concatenate its rows into one dense tensor first")
        if features.dim() == 0:
            raise ValueError("features: expected a tensor of shape (N, D) or (..., D), got a scalar")
        if features.numel() == 0:
            raise ValueError("features: expected a tensor of shape (N, D) or (..., D) with N >= 1 "
                             f"rows and D >= 1 features, got shape {tuple(features.shape)}")
        lead = tuple(features.shape[:-1])
        X = to_numpy(features, allow_device_copy=self.allow_device_copy)
        X = X.reshape(-1, X.shape[-1])  # a view whenever the strides allow (2-D: always)
        s = np.asarray(self._score(X))
        out = torch.from_numpy(np.ascontiguousarray(s)).reshape(lead)
        if self.dtype is not None or self.device is not None:
            out = out.to(device=self.device, dtype=self.dtype)
        return out

    def extra_repr(self):
        parts = [f"detector={type(self.detector).__name__}"]
        if self.dtype is not None:
            parts.append(f"dtype={self.dtype}")
        if self.device is not None:
            parts.append(f"device={self.device}")
        return ", ".join(parts)
