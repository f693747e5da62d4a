"""dnm - zero-shot OOD detection with CLIP-style models and negative labels.

Debiased Negative Mining (KDD 2026), NegLabel, CSP, MCM and energy scores on
precomputed embeddings, with a C core (its own AVX-512/AVX2 product or OpenBLAS GEMM with
fused epilogues, OpenMP).
"""
from __future__ import annotations


def _import_core():
    """Import the extension.  A wheel finds libscipy_openblas.so through its rpath; an
    editable install (or a moved environment) may not, so on failure load the library
    from the scipy-openblas32 package first and try again.  A DNM_BLAS=system build
    links a system OpenBLAS and imports directly."""
    try:
        from . import _core
    except ImportError as first:
        try:
            import ctypes
            import os

            import scipy_openblas32
        except ImportError:
            raise first from None
        ctypes.CDLL(os.path.join(scipy_openblas32.get_lib_dir(),
                                 scipy_openblas32.get_library(fullname=True)))
        from . import _core
    return _core


_core = _import_core()

from . import corpus  # noqa: E402
from .corpus import Corpus  # noqa: E402
from .detector import NegativeLabelDetector, NotFittedError  # noqa: E402
from .detector_file import DetectorFileError  # noqa: E402
from .explain import Explanation  # noqa: E402
from . import methods  # noqa: E402
from . import presets  # noqa: E402
from . import metrics, plot, synthetic  # noqa: E402
from .metrics import evaluate  # noqa: E402
from .mining import (knn_log_distance, neglabel_closeness, select_csp,  # noqa: E402
                     select_dnm, select_neglabel)
from ._config import get_num_threads, set_num_threads  # noqa: E402
from .scores import (DNMGuardWarning, dnm_score, energy_score, make_groups,  # noqa: E402
                     max_logit_score, mcm_score, neglabel_score)
from . import tta  # noqa: E402
from .tta import AdaNeg, TANL, adaneg_score, tanl_score  # noqa: E402

__version__ = "0.1.0"

# Imported on first use (``dnm.encoders``, ``dnm.run_benchmark``, ...), so ``import dnm`` stays
# light; none of them imports torch, transformers or Pillow before one of its functions needs it.
_LAZY_MODULES = ("benchmark", "dumps", "encoders", "images")
_LAZY_NAMES = {"run_benchmark": "benchmark"}


def __getattr__(name):
    import importlib

    if name in _LAZY_MODULES:
        value = importlib.import_module(f".{name}", __name__)
    elif name in _LAZY_NAMES:
        value = getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY_MODULES) | set(_LAZY_NAMES))


__all__ = [
    "__version__", "mcm_score", "max_logit_score", "energy_score", "neglabel_score",
    "dnm_score", "make_groups", "DNMGuardWarning", "set_num_threads", "get_num_threads", "corpus", "Corpus",
    "NegativeLabelDetector", "NotFittedError", "DetectorFileError", "Explanation", "methods",
    "presets", "metrics", "plot", "synthetic", "evaluate",
    "knn_log_distance", "select_dnm", "neglabel_closeness", "select_neglabel", "select_csp",
    "benchmark", "dumps", "encoders", "images", "run_benchmark",
    "tta", "AdaNeg", "TANL", "adaneg_score", "tanl_score",
]
