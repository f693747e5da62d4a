"""Thread settings.

dnm's kernels run OpenMP threads, each calling single-threaded OpenBLAS for its
own tiles (so the two pools never multiply).  The thread count of a call is, in
order: the call's ``num_threads`` argument, ``dnm.set_num_threads(n)``, else
OpenMP's maximum (``OMP_NUM_THREADS``, ``threadpoolctl.threadpool_limits``);
it is always capped by the OpenBLAS setting, so ``threadpool_limits(1)``
limits dnm to one thread.  In a child forked after dnm ran on more than one thread, every
call runs on one thread (GNU OpenMP cannot use more there).  Results do not depend on the
thread count.
"""
from __future__ import annotations

import contextlib
import contextvars
import os

from . import _core
from ._validate import check_int

KERNELS = {name: getattr(_core, "KERNEL_" + name.upper())
           for name in ("auto", "blas", "avx512", "avx2")}
_NEEDS = {"avx512": "AVX-512F", "avx2": "AVX2 and FMA"}


def _check_kernel(name, what):
    """The code of float kernel ``name``, checked against this CPU (ValueError naming ``what``)."""
    if name not in KERNELS:
        raise ValueError(f"{what}: expected one of {sorted(KERNELS)}, got {name!r}")
    if _core.kernel_resolve(KERNELS[name]) < 0:
        runs = [n for n, c in KERNELS.items() if n != "auto" and _core.kernel_resolve(c) >= 0]
        raise ValueError(f"{what}: {name!r} needs a CPU with {_NEEDS[name]}; this CPU runs "
                         f"{', '.join(runs)}")
    return KERNELS[name]


def _kernel_from_environment():
    """DNM_FLOAT_KERNEL=auto|avx512|avx2|blas forces the float kernel of the whole process."""
    name = os.environ.get("DNM_FLOAT_KERNEL", "").strip().lower()
    return _check_kernel(name, "DNM_FLOAT_KERNEL") if name else 0


_num_threads = 0  # 0 = follow OpenMP / threadpoolctl
_tile_rows = contextvars.ContextVar("dnm_tile_rows", default=0)  # 0 = the kernel's choice
_kernel = contextvars.ContextVar("dnm_kernel", default=_kernel_from_environment())


def set_num_threads(n):
    """Set the number of threads dnm uses (n >= 1), or 0/None to follow OpenMP."""
    global _num_threads
    _num_threads = 0 if n is None else check_int(n, "n", low=0)


def get_num_threads():
    """The number of threads the next dnm call will use."""
    return int(_core.resolve_threads(_num_threads))


def resolve(num_threads):
    if num_threads is None:
        return _num_threads
    return check_int(num_threads, "num_threads", low=1, high=2**31 - 1)  # a C int


@contextlib.contextmanager
def _setting(var, value):
    """Within the block, context variable ``var`` holds ``value``."""
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


def tile_grid(rows):
    """Within the block, score kernels use image tiles of ``rows`` rows (a multiple of 8).

    A row's score is bitwise reproducible on the same tile grid (same tile size, tiles
    starting at multiples of it).  ``dnm.dask`` uses this so that every chunk is scored on
    the grid a single-process call on the whole array would use
    (``_core.image_tile_rows(N)``).
    """
    return _setting(_tile_rows, check_int(rows, "rows", low=0))


def tile_rows():
    return _tile_rows.get()


def float_kernel(name):
    """Within the block, float32/float16 scores and mining run on kernel ``name``.

    The process-wide default is the environment variable ``DNM_FLOAT_KERNEL``
    (``auto``, ``avx512``, ``avx2`` or ``blas``; read once at import, which fails with a
    ValueError when the CPU cannot run the kernel named); this block overrides it.

    ``"auto"`` (the default) takes dnm's own kernel (a register-tile product with the
    epilogue fused, ``csrc/score_simd.h``) in its ``"avx512"`` version when the CPU has
    AVX-512F, else its ``"avx2"`` version when it has AVX2 and FMA, else ``"blas"``
    (single-threaded OpenBLAS SGEMM per tile, ``csrc/score_impl.h``).  The two versions of
    dnm's kernel give the same bits; all agree with the float64 reference to float32
    rounding; the tests run every kernel the CPU has.
    """
    return _setting(_kernel, _check_kernel(name, "kernel"))


def kernel():
    return _kernel.get()


def resolved_kernel():
    """The kernel float scores run on now: "avx512", "avx2" or "blas" (the C core's choice)."""
    return {v: n for n, v in KERNELS.items()}[_core.kernel_resolve(_kernel.get())]
