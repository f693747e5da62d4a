"""Reliability of the Python layer under hostile input (issue 18, items 5, 6, 9 and 10):
explain's row checks, hostile detector-file metadata, the command line's outputs and
messages, and smaller input gaps (masked arrays, float32 range, torch shapes, plot args)."""
import re
import warnings

import numpy as np
import pytest

import dnm


def _fitted(method="neglabel", seed=0, d=16):
    rng = np.random.default_rng(seed)
    P = rng.normal(size=(6, d)).astype(np.float32)
    cand = (rng.normal(size=(80, d)) + 0.2).astype(np.float32) * 2
    adj = rng.random(80) < 0.3
    det = dnm.NegativeLabelDetector(method, groups=4, k=5, guard="dcl")
    det.fit(P, cand, adj, id_names=[f"id{i}" for i in range(6)])
    return det, rng.normal(size=(9, d)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# item 5: explain rejects the rows score_samples rejects, naming the row
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("bad, why", [(np.nan, "NaN or Inf"), (np.inf, "NaN or Inf"),
                                      (-np.inf, "NaN or Inf"), (0.0, "zero norm")])
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_explain_rejects_bad_rows_like_score_samples(dtype, bad, why, chunk_size):
    det, X = _fitted()
    X = X.astype(dtype)
    if bad == 0.0:
        X[5] = 0
    else:
        X[5, 3] = bad
    with pytest.raises(ValueError, match=f"row 5 .*{why}|row 5 has {why}"):
        det.score_samples(X)
    with pytest.raises(ValueError, match=f"^X: row 5 (contains|has) {why}"):
        det.explain(X, k=3, chunk_size=chunk_size)


def test_explain_first_bad_row_and_good_rows_unaffected():
    det, X = _fitted("dnm")
    X[7] = 0
    X[4, 0] = np.nan
    with pytest.raises(ValueError, match="row 4 contains NaN"):
        det.explain(X, chunk_size=3)
    good = det.explain(X[:4], k=3)
    assert np.isfinite(good.id_shares).all() and np.isfinite(good.negative_shares).all()


def test_explain_float64_rows_beyond_the_norm_range():
    """A float64 row whose norm overflows is still a direction: same explanation as scaled."""
    det, X = _fitted("mcm")
    X64 = X.astype(np.float64)
    big = det.explain(X64 * 1e307, k=3)
    ref = det.explain(X64, k=3)
    np.testing.assert_array_equal(big.id_indices, ref.id_indices)
    np.testing.assert_allclose(big.id_shares, ref.id_shares, rtol=1e-9)


def test_explain_refuses_bad_fitted_labels():
    det, X = _fitted()
    bad = det.negatives_.copy()
    row = int(det.groups_index_[1, 0])
    bad[row] = 0
    det.negatives_ = bad
    with pytest.raises(ValueError, match=f"negatives: row {row} has zero norm"):
        det.explain(X)


# ---------------------------------------------------------------------------------------------
# item 6: hostile detector-file metadata
# ---------------------------------------------------------------------------------------------

import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import zipfile  # noqa: E402

from dnm import _npzfile  # noqa: E402
from dnm.detector import DetectorFileError  # noqa: E402


@pytest.fixture
def saved(tmp_path):
    det, _ = _fitted("dnm")
    path = tmp_path / "det.npz"
    det.save(path)
    return path


def _parts(path):
    with np.load(path, allow_pickle=False) as z:
        m = {k: z[k] for k in z.files}
    return json.loads(m.pop("metadata").tobytes()), m


def _store(path, raw_meta, arrays):
    with zipfile.ZipFile(path, "w") as zf:  # stored, as numpy.savez writes it
        for name, a in [("metadata", np.frombuffer(raw_meta, np.uint8))] + sorted(arrays.items()):
            b = io.BytesIO()
            np.lib.format.write_array(b, a)
            zf.writestr(name + ".npy", b.getvalue())


def _tamper(path, edit_meta=None, edit_arrays=None, raw=None):
    """Rewrite the file as an attacker would: edit, then recompute the checksum."""
    meta, arrays = _parts(path)
    if edit_arrays:
        edit_arrays(arrays)
        for k, a in arrays.items():
            meta["arrays"][k] = {"dtype": a.dtype.str, "shape": list(a.shape)}
    if edit_meta:
        edit_meta(meta)
    meta["sha256"] = _npzfile.checksum(meta, arrays)
    text = json.dumps(meta)
    if raw:  # textual replacements JSON cannot write (after the checksum: refused before it)
        for a, b in raw:
            assert a in text
            text = text.replace(a, b)
    _store(path, text.encode(), arrays)


def _refused(path, *words):
    with pytest.raises(DetectorFileError) as ei:
        dnm.NegativeLabelDetector.load(path)
    msg = str(ei.value)
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


@pytest.mark.parametrize("depth, words", [(100_000, "arrays/objects"), (20, "deeper")])
def test_deeply_nested_metadata_refused(saved, depth, words):
    _tamper(saved, raw=[('"negative_phrases": null',
                         '"negative_phrases": ' + "[" * depth + "]" * depth)])
    _refused(saved, words)


@pytest.mark.parametrize("token", ["1e999", "-1e999", "NaN", "Infinity", "-Infinity",
                                   "1" + "0" * 400])
def test_strict_numbers(saved, token):
    meta, _ = _parts(saved)
    old = f'"temperature_": {json.dumps(meta["fitted"]["temperature_"])}'
    _tamper(saved, raw=[(old, f'"temperature_": {token}')])
    _refused(saved, "fitted.temperature_", "not allowed")


def _set(section, key, value):
    def edit(meta):
        meta[section][key] = value
    return edit


@pytest.mark.parametrize("section, key, value, words", [
    ("params", "num_threads", "lots", ["params", "num_threads"]),
    ("params", "num_threads", 0, ["params", "num_threads"]),
    ("params", "temperature", -1.0, ["params", "temperature"]),
    ("params", "guard", "never", ["params", "guard"]),
    ("params", "seed", 1.5, ["params", "seed"]),
    ("params", "preset", "ViT-Z", ["params", "preset"]),
    ("params", "progress", "yes", ["params.progress"]),
    ("fitted", "temperature_", 0.0, ["fitted.temperature_"]),
    ("fitted", "temperature_", "hot", ["fitted.temperature_"]),
    ("fitted", "tau_", 2.0, ["fitted.tau_"]),
    ("fitted", "k_", 0, ["fitted.k_"]),
    ("fitted", "noun_ratio_", -0.5, ["fitted.noun_ratio_"]),
    ("fitted", "groups_", 3, ["fitted.groups_"]),
    ("fitted", "seed_", "x", ["fitted.seed_"]),
    ("fitted", "threshold_", 0.5, ["fitted.threshold_"]),
    ("fitted", "n_features_in_", 16.0, ["n_features_in_"]),
])
def test_fields_checked_at_load_like_fit(saved, section, key, value, words):
    _tamper(saved, edit_meta=_set(section, key, value))
    _refused(saved, *words)


@pytest.mark.parametrize("member, row, value, words", [
    ("negatives", 3, np.nan, ["negatives: row 3", "NaN"]),
    ("negatives", 2, np.inf, ["negatives: row 2", "NaN or Inf"]),
    ("id_labels", 0, 0.0, ["id_labels: row 0", "all zeros"]),
    ("id_labels", 4, np.nan, ["id_labels: row 4"]),
])
def test_label_rows_checked_at_load(saved, member, row, value, words):
    def edit(arrays):
        a = arrays[member].copy()
        if value == 0.0:
            a[row] = 0
        else:
            a[row, 1] = value
        arrays[member] = a
    _tamper(saved, edit_arrays=edit)
    _refused(saved, *words)


def test_untampered_file_still_loads(saved):
    _tamper(saved)  # rewritten with a recomputed checksum, nothing changed
    det = dnm.NegativeLabelDetector.load(saved)
    ref, X = _fitted("dnm")
    np.testing.assert_array_equal(det.score_samples(X), ref.score_samples(X))


_MEMORY = r"""
import resource, sys, time, tracemalloc, dnm
from dnm.detector import DetectorFileError
path = sys.argv[1]
tracemalloc.start()
t0 = time.perf_counter()
try:
    dnm.NegativeLabelDetector.load(path)
    print("loaded")
except DetectorFileError as exc:
    print("refused", str(exc)[:200])
print(tracemalloc.get_traced_memory()[1], time.perf_counter() - t0)
"""


@pytest.mark.parametrize("filler", ["[],", "0,", '"ab",', "1.5,"])
def test_large_metadata_memory_bounded(saved, filler):
    """Metadata near the cap made of many small values is refused before they are built:
    the peak traced memory stays a small multiple of the file size, and it is quick."""
    n = (12 << 20) // len(filler)
    _tamper(saved, raw=[('"negative_phrases": null', '"negative_phrases": [' + filler * n + "0]")])
    size = os.path.getsize(saved)
    r = subprocess.run([sys.executable, "-c", _MEMORY, str(saved)], capture_output=True,
                       text=True, timeout=120, check=True)
    status, stats = r.stdout.strip().splitlines()[0], r.stdout.split()[-2:]
    peak, seconds = int(stats[0]), float(stats[1])
    assert status.startswith("refused") and str(saved) in status, r.stdout
    assert peak < 3 * size, (peak, size)
    assert seconds < 5, seconds


# the command line: one line "dnm: error: ..." and status 2, naming the file

def _cli(argv, capsys):
    from dnm import cli

    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _one_line_error(status, err, *needles):
    assert status == 2, err
    assert err.startswith("dnm: error: ") and err.count("\n") == 1, err
    for n in needles:
        assert str(n) in err, (n, err)


@pytest.mark.parametrize("content, words", [
    ("[" * 100_000, "arrays/objects"),
    ('{"scores": [' + "[" * 10 + "1" + "]" * 10 + "]}", "deeper"),
    ('{"scores": [1.0, 2.0, 1e999]}', "scores[2]"),
    ("[1.0, NaN]", "[1]"),
    ("[1.0, -Infinity]", "[1]"),
])
def test_cli_evaluate_hostile_score_json(tmp_path, capsys, content, words):
    ok, bad = tmp_path / "id.json", tmp_path / "deep.json"
    ok.write_text("[0.5, 0.7, 0.9]")
    bad.write_text(content)
    _one_line_error(*_cli(["evaluate", "--id", ok, "--ood", bad], capsys)[::2], bad, words)


def test_cli_score_hostile_detector(saved, tmp_path, capsys):
    _tamper(saved, raw=[('"negative_phrases": null',
                         '"negative_phrases": ' + "[" * 100_000 + "]" * 100_000)])
    X = tmp_path / "x.npy"
    np.save(X, np.ones((3, 16), np.float32))
    _one_line_error(*_cli(["score", "--images", X, "--detector", saved, "-o",
                           tmp_path / "s.npy"], capsys)[::2], saved)


# ---------------------------------------------------------------------------------------------
# item 9: the command line's outputs and messages
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def cli_inputs(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "P.npy", rng.normal(size=(10, 16)).astype(np.float32))
    np.save(tmp_path / "C.npy", ((rng.normal(size=(300, 16)) + 0.3) * 2).astype(np.float32))
    np.save(tmp_path / "X.npy", rng.normal(size=(50, 16)).astype(np.float32))
    return tmp_path


def _mine(d, *extra):
    return ["mine", "--candidates", d / "C.npy", "--id-labels", d / "P.npy", "--all-nouns",
            "--k", "5", "--groups", "5", "--guard", "dcl", "-q", *extra]


def test_cli_bench_too_large_is_one_line(capsys):
    _one_line_error(*_cli(["bench", "--n-images", "100000000000", "-q"], capsys)[::2],
                    "out of memory")


def test_cli_output_paths_checked_before_the_work(cli_inputs, capsys, monkeypatch):
    d = cli_inputs
    calls = []
    monkeypatch.setattr(dnm.NegativeLabelDetector, "fit",
                        lambda self, *a, **k: calls.append(1) or pytest.fail("mined"))
    for bad, words in ((["-o", d / "a.npy", "-o", d / "nope" / "b.npy"], ["nope"]),
                       (["-o", d / "a.npy", "--detector", "/proc/dnm-test.npz"],
                        ["--detector", "/proc/dnm-test.npz"]),
                       (["-o", d / "a.npy", "-o", d / "a.npy"], ["twice"]),
                       (["-o", d / "C.npy"], ["also an input"]),
                       (["-o", d], ["--out"])):
        _one_line_error(*_cli(_mine(d, *bad), capsys)[::2], *words)
        assert sorted(os.listdir(d)) == ["C.npy", "P.npy", "X.npy"]
    assert not calls


def test_cli_refuses_an_output_that_is_an_input(cli_inputs, capsys):
    d = cli_inputs
    before = (d / "X.npy").read_bytes()
    os.symlink(d / "X.npy", d / "link.npy")
    for out in ("X.npy", "link.npy"):
        _one_line_error(*_cli(["score", "--images", d / "X.npy", "--id-labels", d / "P.npy",
                               "-o", d / out, "-q"], capsys)[::2], "also an input", out)
    assert (d / "X.npy").read_bytes() == before
    np.savez(d / "both.npz", X=np.load(d / "X.npy"))
    _one_line_error(*_cli(["score", "--images", f"{d / 'both.npz'}:X", "--id-labels",
                           d / "P.npy", "-o", d / "both.npz", "-q"], capsys)[::2], "--out")


def test_cli_failing_later_output_leaves_nothing_behind(cli_inputs, capsys, monkeypatch):
    """The detector cannot be written after the indices were: no output, no temporary file,
    an existing file untouched, and the error names the path given."""
    d = cli_inputs
    (d / "old.json").write_text("keep me")

    def full_disk(self, path):
        import errno
        raise OSError(errno.ENOSPC, "No space left on device", os.fspath(path))
    monkeypatch.setattr(dnm.NegativeLabelDetector, "save", full_disk)
    status, _, err = _cli(_mine(d, "-o", d / "a.npy", "-o", d / "old.json",
                                "--detector", d / "det.npz"), capsys)
    _one_line_error(status, err, d / "det.npz", "No space left")
    assert ".tmp" not in err
    assert sorted(os.listdir(d)) == ["C.npy", "P.npy", "X.npy", "old.json"]
    assert (d / "old.json").read_text() == "keep me"


def test_cli_outputs_written_with_open_permissions(cli_inputs, capsys):
    d = cli_inputs
    (d / "old.npy").write_bytes(b"")
    os.chmod(d / "old.npy", 0o600)
    old = os.umask(0o027)
    try:
        status, _, err = _cli(_mine(d, "-o", d / "a.json", "-o", d / "old.npy",
                                    "--detector", d / "det.npz"), capsys)
    finally:
        os.umask(old)
    assert status == 0, err
    assert os.stat(d / "a.json").st_mode & 0o777 == 0o640
    assert os.stat(d / "old.npy").st_mode & 0o777 == 0o600  # a replaced file keeps its own
    assert len(np.load(d / "old.npy")) == len(json.loads((d / "a.json").read_text())["indices"])
    assert dnm.NegativeLabelDetector.load(d / "det.npz").method_ == "dnm"
    assert not [f for f in os.listdir(d) if f.startswith(".")]


@pytest.mark.parametrize("quiet", [False, True])
def test_cli_warnings_are_one_clean_line(cli_inputs, capsys, quiet):
    d = cli_inputs
    argv = _mine(d, "--tau", "0.05", "--guard", "floor", "-o", d / "a.npy")
    if not quiet:
        argv.remove("-q")
    status, out, err = _cli(argv, capsys)
    assert status == 0, err
    assert "DNMGuardWarning" not in err and "warnings.warn" not in err and ".py:" not in err
    lines = [ln for ln in err.splitlines() if "r = Q(1-tau)" in ln]
    if quiet:
        assert err == "" and out == ""
    else:
        assert len(lines) == 1 and lines[0].startswith("dnm: warning: "), err


@pytest.mark.parametrize("cmd", ["mine", "score", "demo"])
def test_cli_negative_seed_names_the_option(cli_inputs, capsys, cmd, tmp_path):
    d = cli_inputs
    argv = {"mine": _mine(d, "-o", d / "a.npy"),
            "score": ["score", "--images", d / "X.npy", "--id-labels", d / "P.npy",
                      "--negatives", d / "C.npy", "-o", d / "s.npy"],
            "demo": ["demo", "--small", "--out", tmp_path / "demo"]}[cmd]
    _one_line_error(*_cli(argv + ["--seed", "-1"], capsys)[::2], "--seed", ">= 0")


def test_negative_seed_named_in_python():
    det, X = _fitted()
    with pytest.raises(ValueError, match="seed: must be >= 0"):
        dnm.NegativeLabelDetector("neglabel", seed=-1).fit(det.id_labels_, np.ones((5, 16)),
                                                           np.zeros(5, bool))
    with pytest.raises(ValueError, match="seed: must be >= 0"):
        dnm.neglabel_score(X, det.id_labels_, det.negatives_, groups=2, seed=-1)


# ---------------------------------------------------------------------------------------------
# item 10: smaller input gaps
# ---------------------------------------------------------------------------------------------

def test_masked_arrays_refused():
    det, X = _fitted()
    mX = np.ma.masked_array(X, mask=np.zeros_like(X, bool))
    mX.mask[2, 1] = True
    P = det.id_labels_
    calls = [lambda: dnm.mcm_score(mX, P), lambda: dnm.mcm_score(X, np.ma.asarray(P)),
             lambda: det.score_samples(mX), lambda: det.explain(mX),
             lambda: dnm.metrics.auroc(np.ma.asarray([1.0, 2.0]), [0.5, 0.1])]
    for call in calls:
        with pytest.raises(TypeError, match="masked arrays are not supported"):
            call()
    with pytest.raises(TypeError, match="^raw_candidates: .*masked"):
        dnm.select_dnm(np.ma.asarray(det.negatives_), np.zeros(len(det.negatives_), bool))
    with pytest.raises(TypeError, match="^is_adjective: .*masked"):
        dnm.select_dnm(det.negatives_ * 3, np.ma.asarray(np.zeros(len(det.negatives_), bool)))


@pytest.mark.parametrize("value", [1e39, -3.5e38, 1e300])
def test_encode_refuses_values_beyond_float32(value):
    def enc(batch):
        out = np.ones((len(batch), 4))
        out[-1, 2] = value
        return out
    with pytest.raises(ValueError, match="encoder: .*float32 range"):
        dnm.corpus.encode(["a", "b", "c"], enc, progress=False)
    ok = dnm.corpus.encode(["a", "b"], lambda b: np.full((len(b), 4), 3.4e38), progress=False)
    assert np.isfinite(ok).all()


def test_torch_head_names_features_and_shape():
    torch = pytest.importorskip("torch")
    from dnm.torch import OODHead

    det, X = _fitted("mcm")
    head = OODHead(det)
    for shape in ((3, 0), (0, 16), (2, 0, 16)):
        with pytest.raises(ValueError, match=r"^features: .*\(N, D\).*got shape " +
                           re.escape(str(shape))):
            head(torch.zeros(shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "nested tensors are in prototype stage"
        nt = torch.nested.nested_tensor([torch.ones(2, 16), torch.ones(3, 16)])
    with pytest.raises(TypeError, match=r"^features: .*dense tensor of shape \(N, D\).*nested"):
        head(nt)
    with pytest.raises(TypeError, match=r"^features: .*dense"):
        head(torch.ones(3, 16).to_sparse())
    assert head(torch.from_numpy(X)).shape == (len(X),)


@pytest.mark.parametrize("bad, exc", [(-5, ValueError), (0, ValueError), (1, ValueError),
                                      (2.5, TypeError), (True, TypeError)])
def test_roc_curves_max_points_named(bad, exc):
    pytest.importorskip("matplotlib")
    from dnm import plot

    rng = np.random.default_rng(0)
    with pytest.raises(exc, match="^max_points: "):
        plot.roc_curves(rng.normal(size=50), {"o": rng.normal(size=40)}, max_points=bad)
    fig = plot.roc_curves(rng.normal(size=50), {"o": rng.normal(size=40)}, max_points=2)
    assert fig is not None
