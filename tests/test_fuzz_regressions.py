"""Replays the fuzz corpus (tests/fuzz_corpus/, written by csrc/fuzz/run.sh) and
pins each finding with a direct Python-level test; safe-loading tests of
detector files (issue 8) that tests/test_detector.py does not cover."""
import glob
import io
import os
import resource
import shutil
import subprocess
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import dnm
from dnm.detector import DetectorFileError

import loader_mutations as L

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KERNEL_CASES = sorted(glob.glob(os.path.join(HERE, "fuzz_corpus", "kernels", "*")))
LOADER_CASES = sorted(glob.glob(os.path.join(HERE, "fuzz_corpus", "loader", "*")))


@pytest.fixture(scope="module")
def bases():
    return L.base_files()


def _load_or_error(blob, tmp_path, name="d.npz"):
    p = tmp_path / name
    p.write_bytes(blob)
    try:
        det = dnm.NegativeLabelDetector.load(p)
    except DetectorFileError:
        return None
    # whatever loads must score, or fail with a clear ValueError/TypeError
    try:
        det.score_samples(np.ones((2, det.n_features_in_), np.float32))
    except (ValueError, TypeError):
        pass
    return det


# ---- replay of the kernel corpus through the libFuzzer binary (ASan + UBSan) ---------------

@pytest.mark.skipif(not KERNEL_CASES, reason="no kernel regression inputs")
@pytest.mark.skipif(shutil.which("clang") is None, reason="clang (libFuzzer) not installed")
def test_kernel_corpus_replays_clean(tmp_path):
    import scipy_openblas32 as s

    exe = tmp_path / "fuzz_kernels"
    src = [f for f in sorted(glob.glob(os.path.join(ROOT, "csrc", "*.c")))
           if not f.endswith("_core.c")]  # every kernel, without the Python binding
    src.append(os.path.join(ROOT, "csrc", "fuzz", "fuzz_kernels.c"))
    cmd = ["clang", "-g", "-O1", "-std=c11", "-fsanitize=fuzzer,address,undefined",
           "-fno-sanitize-recover=undefined", "-fopenmp", "-w",
           "-I" + os.path.join(ROOT, "csrc"), "-I" + s.get_include_dir(), *src,
           "-L" + s.get_lib_dir(), "-l" + s.get_library(), "-Wl,-rpath," + s.get_lib_dir(),
           "-lm", "-o", str(exe)]
    # under `make sanitize` the interpreter runs with gcc's ASan preloaded: keep it out of the
    # clang-built harness, which carries its own (incompatible) ASan runtime
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS")}
    b = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if b.returncode != 0:
        pytest.skip(f"cannot build the fuzz harness: {b.stderr[-500:]}")
    r = subprocess.run([str(exe), "-runs=0", *KERNEL_CASES], capture_output=True, text=True,
                       timeout=300, env={**env, "OMP_NUM_THREADS": "2"})
    assert r.returncode == 0, r.stderr[-3000:]


# ---- the kernel findings, pinned through the Python API -------------------------------------

def test_unaligned_views_score_and_mine():
    """Finding 1: float32 rows at an address not a multiple of 4 (misaligned loads)."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(5, 7)).astype(np.float32) * 3
    buf = bytearray(1 + X.nbytes)
    buf[1:] = X.tobytes()
    U = np.frombuffer(bytes(buf), dtype=np.float32, offset=1).reshape(5, 7)
    assert not U.flags.aligned
    P = rng.normal(size=(3, 7)).astype(np.float32)
    np.testing.assert_array_equal(dnm.mcm_score(U, P), dnm.mcm_score(X, P))
    np.testing.assert_array_equal(dnm.knn_log_distance(U, k=2), dnm.knn_log_distance(X, k=2))
    np.testing.assert_array_equal(dnm.neglabel_closeness(P, U), dnm.neglabel_closeness(P, X))


@pytest.mark.parametrize("T", [1e-39, 1e-300, 5e-324])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_tiny_temperatures_give_finite_scores(T, dtype):
    """Finding 2: 1/T overflowing float (NaN scores) and inf - inf for subnormal T."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(6, 5)).astype(dtype)
    P = rng.normal(size=(4, 5)).astype(dtype)
    N = rng.normal(size=(8, 5)).astype(dtype)
    ref_mcm = dnm.mcm_score(X, P, temperature=1e-30)
    for s in (dnm.mcm_score(X, P, temperature=T), dnm.energy_score(X, P, temperature=T),
              dnm.neglabel_score(X, P, N, temperature=T, groups=2),
              dnm.dnm_score(X, P, N, temperature=T, groups=2, tau=1.0),
              dnm.dnm_score(X, P, N, temperature=T, groups=2, guard="dcl")):
        assert np.isfinite(s).all()
    np.testing.assert_array_equal(dnm.mcm_score(X, P, temperature=T), ref_mcm)


def test_huge_num_threads_is_a_value_error():
    """Finding 4 (via a detector file): num_threads beyond a C int."""
    X = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="num_threads"):
        dnm.mcm_score(X, X, num_threads=2**40)


# ---- loader: corpus, findings, and a hypothesis byte-mutation test --------------------------

@pytest.mark.parametrize("case", LOADER_CASES, ids=os.path.basename)
def test_loader_corpus(case, bases, tmp_path):
    with open(case, "rb") as f:
        _load_or_error(L.mutate(bases, f.read()), tmp_path)


def _rewrite_meta(blob, edit):
    m = L._members(blob)
    meta = L._meta(m)
    meta = edit(meta)
    L._set_meta(m, meta, rehash=True)
    return L._zip(m)


@pytest.mark.parametrize("value", [[1, 2], "abc", 3, 2.5, None])
@pytest.mark.parametrize("key", ["params", "fitted"])
def test_loader_non_object_sections(bases, tmp_path, key, value):
    """Finding 3: params / fitted that are not JSON objects escaped as TypeError/ValueError."""
    def edit(meta):
        meta[key] = value
        return meta
    p = tmp_path / "d.npz"
    p.write_bytes(_rewrite_meta(bases[0], edit))
    with pytest.raises(DetectorFileError):
        dnm.NegativeLabelDetector.load(p)


def test_loader_dnm_without_tau(bases, tmp_path):
    def edit(meta):
        meta["fitted"]["tau_"] = None
        return meta
    p = tmp_path / "d.npz"
    p.write_bytes(_rewrite_meta(bases[0], edit))
    with pytest.raises(DetectorFileError, match="tau_"):
        dnm.NegativeLabelDetector.load(p)


def test_loader_refuses_zip_bomb(bases, tmp_path):
    """Finding 5: a deflated member whose header and metadata claim 256 MiB of zeros
    made load() inflate (and hold) it before the checksum check."""
    n = 2**25  # float64 elements: 256 MiB inflated, ~260 KB deflated
    m = L._members(bases[2])
    meta = L._meta(m)
    meta["arrays"]["id_labels"] = {"dtype": "<f8", "shape": [n // 8, 8]}
    L._set_meta(m, meta, rehash=False)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in m.items():
            if name != "id_labels.npy":
                zf.writestr(name, data)
                continue
            with zf.open(name, "w", force_zip64=True) as f:
                f.write(L._npy({"descr": "<f8", "fortran_order": False, "shape": (n // 8, 8)}))
                z = bytes(1 << 22)
                for _ in range(n * 8 // len(z)):
                    f.write(z)
    p = tmp_path / "bomb.npz"
    p.write_bytes(buf.getvalue())
    assert p.stat().st_size < 2 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DetectorFileError, match="compressed"):
        dnm.NegativeLabelDetector.load(p)
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 100 * 1024


@pytest.mark.parametrize("rows", [10**12, 2**62, 2**31])
def test_loader_refuses_huge_claims_without_allocating(bases, tmp_path, rows):
    m = L._members(bases[0])
    meta = L._meta(m)
    D = meta["arrays"]["negatives"]["shape"][1]
    meta["arrays"]["negatives"] = {"dtype": "<f4", "shape": [rows, D]}
    L._set_meta(m, meta, rehash=False)
    data = m["negatives.npy"]
    m["negatives.npy"] = L._npy({"descr": "<f4", "fortran_order": False, "shape": (rows, D)},
                                data[data.index(b"\n") + 1:])
    p = tmp_path / "huge.npz"
    p.write_bytes(L._zip(m))
    with pytest.raises(DetectorFileError, match="claims shape"):
        dnm.NegativeLabelDetector.load(p)


def test_loader_every_truncation(bases, tmp_path):
    blob = bases[1]
    for cut in range(0, len(blob), max(1, len(blob) // 300)):
        assert _load_or_error(blob[:cut], tmp_path) is None


def test_loader_every_single_bit_flip_in_data_is_caught(bases, tmp_path):
    """Flipping any bit changes the file: it must fail to load (zip CRC, header checks or
    the checksum), never load different numbers silently."""
    blob = bases[0]
    rng = np.random.default_rng(3)
    for pos in rng.choice(len(blob), size=300, replace=False):
        b = bytearray(blob)
        b[pos] ^= 1 << int(rng.integers(8))
        det = _load_or_error(bytes(b), tmp_path)
        if det is not None:  # only bytes zipfile ignores (e.g. timestamps, extra fields)
            ref = dnm.NegativeLabelDetector.load(_write(tmp_path, blob))
            np.testing.assert_array_equal(det.negatives_, ref.negatives_)
            np.testing.assert_array_equal(det.id_labels_, ref.id_labels_)


def _write(tmp_path, blob):
    p = tmp_path / "ref.npz"
    p.write_bytes(blob)
    return p


@settings(max_examples=int(os.environ.get("DNM_HYPOTHESIS_EXAMPLES", 100)), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.binary(min_size=0, max_size=96))
def test_loader_mutations_hypothesis(bases, tmp_path, data):
    _load_or_error(L.mutate(bases, data), tmp_path)
