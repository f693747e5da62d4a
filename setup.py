"""Build the C core `dnm._core`.

BLAS: by default the PyPI package scipy-openblas32 (headers, library, and
`scipy_`-prefixed symbols).  Set DNM_BLAS=system to link a system OpenBLAS found
with pkg-config instead (`apt-get install libopenblas-dev pkg-config`).
DNM_SANITIZE=1 builds with -fsanitize=address,undefined (see `make sanitize`).
No -march=native: SIMD paths are chosen at run time (target_clones).
"""
import glob
import os
import shlex
import subprocess

import numpy
from setuptools import Extension, setup

sources = sorted(glob.glob("csrc/*.c"))
define_macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
include_dirs = [numpy.get_include(), "csrc"]
extra_compile_args = ["-std=c11", "-O3", "-fopenmp", "-Wall", "-Wextra", "-fno-math-errno"]
extra_link_args = ["-fopenmp"]
libraries = []
library_dirs = []

if os.environ.get("DNM_BLAS", "").lower() == "system":
    define_macros.append(("DNM_SYSTEM_BLAS", "1"))
    cflags = subprocess.check_output(["pkg-config", "--cflags", "openblas"], text=True)
    libs = subprocess.check_output(["pkg-config", "--libs", "openblas"], text=True)
    extra_compile_args += shlex.split(cflags)
    extra_link_args += shlex.split(libs)
else:
    import scipy_openblas32

    include_dirs.append(scipy_openblas32.get_include_dir())
    library_dirs.append(scipy_openblas32.get_lib_dir())
    libraries.append(scipy_openblas32.get_library())
    # installed layout: site-packages/dnm/_core*.so next to site-packages/scipy_openblas32/lib;
    # dnm/__init__.py also preloads the library, which covers editable installs.
    extra_link_args.append("-Wl,-rpath,$ORIGIN/../scipy_openblas32/lib")

if os.environ.get("DNM_SANITIZE"):
    extra_compile_args += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1"]
    extra_link_args += ["-fsanitize=address,undefined"]

setup(
    ext_modules=[
        Extension(
            "dnm._core",
            sources=sources,
            include_dirs=include_dirs,
            define_macros=define_macros,
            libraries=libraries,
            library_dirs=library_dirs,
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
            depends=sorted(glob.glob("csrc/*.h")),
        )
    ]
)
