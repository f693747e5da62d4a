#!/usr/bin/env bash
# Bounded fuzzing of the dnm C kernels (libFuzzer + ASan + UBSan) and of the
# detector-file loader (atheris), issue 8.
#
#   csrc/fuzz/run.sh [seconds-per-target]      (default 60)
#
# Needs clang with its fuzzer runtime and OpenMP (Debian: apt-get install clang
# libclang-rt-14-dev libomp-14-dev)
# and, for the loader, `pip install atheris`.  Inputs that crash are copied to
# tests/fuzz_corpus/kernels/ and tests/fuzz_corpus/loader/, where
# tests/test_fuzz_regressions.py replays them on every test run.  The growing
# working corpora live in build/fuzz/ (not committed).
# This directory is not compiled into the extension (setup.py globs csrc/*.c).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-60}
CC=${CC:-$(command -v clang || command -v clang-14 || true)}
PY=${PY:-python3}
OUT=build/fuzz
REG=tests/fuzz_corpus
mkdir -p "$OUT/kernels-corpus" "$OUT/loader-corpus" "$OUT/artifacts" "$REG/kernels" "$REG/loader"

status=0
if [ -z "$CC" ]; then
    echo "run.sh: clang not found (apt-get install clang libclang-rt-14-dev libomp-14-dev)" >&2
    status=1
else
    BLAS_INC=$($PY -c 'import scipy_openblas32 as s; print(s.get_include_dir())')
    BLAS_LIB=$($PY -c 'import scipy_openblas32 as s; print(s.get_lib_dir())')
    BLAS_NAME=$($PY -c 'import scipy_openblas32 as s; print(s.get_library())')
    "$CC" -g -O1 -std=c11 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=undefined -fopenmp \
        -Icsrc -I"$BLAS_INC" \
        $(ls csrc/*.c | grep -v '_core\.c$') csrc/fuzz/fuzz_kernels.c \
        -L"$BLAS_LIB" -l"$BLAS_NAME" -Wl,-rpath,"$BLAS_LIB" -lm -o "$OUT/fuzz_kernels"
    # replay the regression corpus first, then fuzz from it plus the working corpus
    if ls "$REG/kernels"/* >/dev/null 2>&1; then
        "$OUT/fuzz_kernels" -runs=0 "$REG/kernels" >"$OUT/replay.log" 2>&1 || {
            echo "run.sh: a regression input in $REG/kernels fails:"; tail -30 "$OUT/replay.log"; status=1; }
    fi
    OMP_NUM_THREADS=2 "$OUT/fuzz_kernels" -max_total_time="$SECS" -max_len=4096 -timeout=20 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$OUT/artifacts/" \
        "$OUT/kernels-corpus" "$REG/kernels" >"$OUT/kernels.log" 2>&1 || status=1
    tail -15 "$OUT/kernels.log"
fi

if $PY -c 'import atheris' 2>/dev/null; then
    PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" $PY csrc/fuzz/fuzz_loader.py -max_total_time="$SECS" -max_len=65536 -timeout=20 \
        -rss_limit_mb=3072 -artifact_prefix="$OUT/artifacts/loader-" "$OUT/loader-corpus" \
        >"$OUT/loader.log" 2>&1 || status=1
    tail -15 "$OUT/loader.log"
else
    echo "run.sh: atheris not installed; loader fuzzing skipped (pip install atheris)" >&2
fi

# keep what crashed as regression inputs
for f in "$OUT"/artifacts/crash-* "$OUT"/artifacts/leak-* "$OUT"/artifacts/oom-* "$OUT"/artifacts/timeout-*; do
    [ -e "$f" ] || continue
    cp -n "$f" "$REG/kernels/"
    echo "run.sh: new finding kept as $REG/kernels/$(basename "$f")"
done
for f in "$OUT"/artifacts/loader-*; do
    [ -e "$f" ] || continue
    cp -n "$f" "$REG/loader/$(basename "$f" | sed 's/^loader-//')"
    echo "run.sh: new loader finding kept in $REG/loader/"
done
exit $status
