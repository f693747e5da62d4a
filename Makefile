# dnm - the two set-up commands of the README, plus developer targets.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python

.PHONY: demo test test-kernels sanitize fuzz bench clean test-open-clip

$(VPY):
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip

# create .venv, install dnm with its runtime extras, run the main job
demo: $(VPY)
	$(VPY) -m pip install --quiet -e ".[plot,pandas]"
	$(VPY) -m dnm demo

# install the test extras and run the whole suite
test: $(VPY)
	$(VPY) -m pip install --quiet -e ".[test]"
	$(VPY) -m pytest -ra

# the suite again on each float kernel other CPUs get, whatever this CPU chose: dnm's AVX2
# build with OpenBLAS's Haswell kernels (an AVX2-only CPU), and the BLAS tiles (a CPU
# without AVX2); the AVX-512 build too where the CPU has it (DNM_FLOAT_KERNEL, README)
test-kernels: $(VPY)
	$(VPY) -m pip install --quiet -e ".[test]"
	@if grep -qw avx512f /proc/cpuinfo; then \
	  echo "== DNM_FLOAT_KERNEL=avx512"; \
	  DNM_FLOAT_KERNEL=avx512 $(VPY) -m pytest -q -p no:cacheprovider; fi
	@if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then \
	  echo "== DNM_FLOAT_KERNEL=avx2 OPENBLAS_CORETYPE=Haswell"; \
	  DNM_FLOAT_KERNEL=avx2 OPENBLAS_CORETYPE=Haswell $(VPY) -m pytest -q -p no:cacheprovider; fi
	@echo "== DNM_FLOAT_KERNEL=blas"
	DNM_FLOAT_KERNEL=blas $(VPY) -m pytest -q -p no:cacheprovider

bench: $(VPY)
	$(VPY) -m pip install --quiet -e ".[test]"
	$(VPY) benchmarks/bench_score.py

clean:
	rm -rf build dnm/*.so *.egg-info

# The open_clip adapter on a real open_clip model (random weights, no download), in its own
# environment: open_clip needs torchvision, which here imports only as torch 2.14.1 +
# torchvision 0.29.1 (a multi-GB build; the main .venv keeps its torch).  The outcome of the
# last run, with the seconds spent installing and testing, is recorded in
# tests_open_clip/LAST_RUN.txt.  Under .ci/run, clear PIP_CONSTRAINT (it pins torch 2.13.0).
OC_VENV := .venv-openclip
OC_PY := $(OC_VENV)/bin/python
OC_T0 := $(shell date +%s)
test-open-clip: SHELL := /bin/bash
test-open-clip:
	$(PY) -m venv $(OC_VENV)
	$(OC_PY) -m pip install --quiet --upgrade pip
	printf 'torch==2.14.1\ntorchvision==0.29.1\n' > $(OC_VENV)/constraints.txt
	$(OC_PY) -m pip install --quiet -c $(OC_VENV)/constraints.txt torch torchvision
	$(OC_PY) -m pip install --quiet -c $(OC_VENV)/constraints.txt -e ".[open_clip]" pytest
	set -o pipefail; t1=$$(date +%s); { date -u +"%Y-%m-%dT%H:%MZ"; \
	  echo "install (venv, torch, torchvision, open_clip, dnm built): $$((t1 - $(OC_T0)))s"; \
	  $(OC_PY) -c "import torch, torchvision, open_clip; \
	  print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'open_clip', open_clip.__version__)"; \
	  $(OC_PY) -m pytest -q -p no:cacheprovider tests_open_clip; \
	  echo "tests (imports included): $$(( $$(date +%s) - t1 ))s"; } 2>&1 | tee tests_open_clip/LAST_RUN.txt

# Build the C core with AddressSanitizer + UndefinedBehaviorSanitizer into build/sanitize
# and run the test suite against that build (any finding aborts the run).
SAN_LIB := $(abspath build/sanitize)
SANITIZE_TESTS ?= $(abspath tests)
sanitize: $(VPY)
	$(VPY) -m pip install --quiet -e ".[test]"
	rm -rf build/sanitize build/sanitize-tmp
	DNM_SANITIZE=1 $(VPY) setup.py -q build --build-lib build/sanitize --build-temp build/sanitize-tmp
	cd build/sanitize && \
	  LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  DNM_EXPECT_CORE=$(SAN_LIB) \
	  $(abspath $(VPY)) -m pytest -c $(abspath pyproject.toml) --rootdir $(abspath .) -p no:cacheprovider -q $(SANITIZE_TESTS)

# libFuzzer (ASan+UBSan) on the C kernels + atheris on the detector loader, bounded;
# crashes are copied to tests/fuzz_corpus/ (replayed by tests/test_fuzz_regressions.py).
# Needs clang: apt-get install clang libclang-rt-14-dev libomp-14-dev
FUZZ_SECONDS ?= 60
fuzz: $(VPY)
	$(VPY) -m pip install --quiet -e ".[test]" atheris
	PY=$(abspath $(VPY)) csrc/fuzz/run.sh $(FUZZ_SECONDS)
