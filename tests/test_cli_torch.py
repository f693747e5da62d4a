"""The command line on torch files (written here with torch.save) and `dnm benchmark`.

Every array input of the CLI takes .pt / .pth like .npy / .npz (a tensor, or a dict of tensors
with FILE.pt:KEY or --key); whatever such a file holds, a problem is one `dnm: error:` line and
exit status 2.  `dnm benchmark` is dnm.benchmark's command and gives the Python call's tables.
"""
import csv
import io
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import dnm  # noqa: E402
from dnm import cli  # noqa: E402
from dnm.benchmark import run_benchmark  # noqa: E402

rng = np.random.default_rng(7)
D = 16
ID_LABELS = rng.standard_normal((5, D)).astype(np.float32)
CANDIDATES = (3 * rng.standard_normal((1500, D))).astype(np.float32)  # raw, not unit norm
IS_ADJ = np.zeros(1500, dtype=bool)
IS_ADJ[1200:] = True
IMAGES = {"ID": rng.standard_normal((60, D)).astype(np.float32) + ID_LABELS[0],
          "near": rng.standard_normal((40, D)).astype(np.float32),
          "far": rng.standard_normal((30, D)).astype(np.float32) - ID_LABELS[0]}


def run(argv, capsys):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_usage_error(status, err, *needles):
    assert status == 2, err
    assert err.startswith("dnm: error: "), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, (n, err)


def tensor(a):
    return torch.from_numpy(np.ascontiguousarray(a))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("torchcli")
    torch.save(tensor(IMAGES["ID"]), d / "img.pt")                      # one tensor
    torch.save({k: tensor(v) for k, v in IMAGES.items()}, d / "feats.pth")  # dict, ID first
    torch.save({"emb": tensor(ID_LABELS)}, d / "id.pth")                 # dict of one
    torch.save(tensor(CANDIDATES), d / "cand.pt")
    torch.save(torch.from_numpy(IS_ADJ), d / "adj.pt")                   # a bool tensor
    np.save(d / "id.npy", ID_LABELS)
    np.save(d / "cand.npy", CANDIDATES)
    np.save(d / "adj.npy", IS_ADJ)
    np.save(d / "img.npy", IMAGES["ID"])
    return d


# ---------------------------------------------------------------------------------------------
# torch files as inputs

def test_score_torch_images_every_spelling(files, capsys):
    d = files
    want = dnm.mcm_score(IMAGES["ID"], ID_LABELS)
    for images, extra in ((d / "img.pt", []), (f"{d / 'feats.pth'}:ID", []),
                          (d / "feats.pth", ["--key", "ID"])):
        out = d / "s.npy"
        status, _, err = run(["score", "--images", images, *extra, "--id-labels", d / "id.pth",
                              "--method", "mcm", "-q", "--out", out], capsys)
        assert status == 0, err
        np.testing.assert_array_equal(np.load(out), want)
        os.remove(out)


def test_torch_file_with_several_arrays_says_how_to_choose(files, capsys):
    d = files
    status, _, err = run(["score", "--images", d / "feats.pth", "--id-labels", d / "id.npy",
                          "--out", d / "o.npy"], capsys)
    assert_usage_error(status, err, "torch file", "feats.pth:KEY", "--key", "'near'")
    status, _, err = run(["score", "--images", f"{d / 'feats.pth'}:zzz", "--id-labels",
                          d / "id.npy", "--out", d / "o.npy"], capsys)
    assert_usage_error(status, err, "no array 'zzz'", "'far'")
    status, _, err = run(["score", "--images", f"{d / 'feats.pth'}:near", "--key", "far",
                          "--id-labels", d / "id.npy", "--out", d / "o.npy"], capsys)
    assert_usage_error(status, err, "two keys")
    status, _, err = run(["score", "--images", d / "img.pt", "--key", "x", "--id-labels",
                          d / "id.npy", "--out", d / "o.npy"], capsys)
    assert_usage_error(status, err, "no key applies")


def test_mine_and_evaluate_torch_inputs(files, capsys):
    d = files
    for cand, adj, ids in (("cand.npy", "adj.npy", "id.npy"), ("cand.pt", "adj.pt", "id.pth")):
        status, _, err = run(["mine", "--candidates", d / cand, "--is-adjective", d / adj,
                              "--id-labels", d / ids, "--method", "neglabel", "-q",
                              "--out", d / f"sel_{cand}.npy"], capsys)
        assert status == 0, err
    np.testing.assert_array_equal(np.load(d / "sel_cand.pt.npy"), np.load(d / "sel_cand.npy.npy"))
    want = dnm.select_neglabel(ID_LABELS, CANDIDATES, IS_ADJ)
    np.testing.assert_array_equal(np.load(d / "sel_cand.pt.npy"), want)

    a = dnm.mcm_score(IMAGES["ID"], ID_LABELS)
    b = dnm.mcm_score(IMAGES["far"], ID_LABELS)
    torch.save(tensor(a), d / "a.pt")
    torch.save({"scores": tensor(b)}, d / "b.pth")
    np.save(d / "a.npy", a)
    np.save(d / "b.npy", b)
    status, out_pt, err = run(["evaluate", "--id", d / "a.pt", "--ood", f"far={d / 'b.pth'}"],
                              capsys)
    assert status == 0, err
    status, out_np, err = run(["evaluate", "--id", d / "a.npy", "--ood", f"far={d / 'b.npy'}"],
                              capsys)
    assert status == 0, err
    assert out_pt == out_np and "far" in out_pt


def test_torch_file_named_npz_and_npy_file_named_pt(files, tmp_path, capsys):
    d = files
    want = dnm.mcm_score(IMAGES["ID"], ID_LABELS)
    torch.save(tensor(IMAGES["ID"]), tmp_path / "really_torch.npz")  # told from the content
    np.save(tmp_path / "really_numpy.npy", IMAGES["ID"])
    os.rename(tmp_path / "really_numpy.npy", tmp_path / "really_numpy.pt")
    for name in ("really_torch.npz", "really_numpy.pt"):
        status, _, err = run(["score", "--images", tmp_path / name, "--id-labels", d / "id.npy",
                              "--method", "mcm", "-q", "--out", tmp_path / "s.npy"], capsys)
        assert status == 0, (name, err)
        np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), want)


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_files(tmp_path):
    """name -> writer: torch files (or files named like them) that the CLI cannot use."""
    marker = tmp_path / "pwned"
    t = tensor(IMAGES["ID"])

    def zip_not_torch(p):
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("hello.txt", "not a tensor")

    def truncated(p):
        torch.save(t, tmp_path / "whole.pt")
        p.write_bytes((tmp_path / "whole.pt").read_bytes()[:200])

    def plain_pickle(p):
        with open(p, "wb") as f:
            pickle.dump({"a": _Evil(marker)}, f)

    return marker, {
        "code.pt": lambda p: torch.save({"x": t, "payload": _Evil(marker)}, p),
        "code_pickle.pth": plain_pickle,
        "code_named.npy": plain_pickle,
        "numpy_inside.pt": lambda p: torch.save({"x": IMAGES["ID"]}, p),
        "string.pt": lambda p: torch.save({"x": "text"}, p),
        "nested.pt": lambda p: torch.save({"x": {"y": t}}, p),
        "list.pt": lambda p: torch.save([t, t], p),
        "int.pt": lambda p: torch.save(torch.arange(12).reshape(3, 4), p),
        "3d.pt": lambda p: torch.save(torch.zeros(2, 3, 4), p),
        "scalar.pt": lambda p: torch.save(torch.tensor(1.5), p),
        "number.pt": lambda p: torch.save(3, p),
        "empty_dict.pt": lambda p: torch.save({}, p),
        "empty_file.pt": lambda p: p.write_bytes(b""),
        "random.pth": lambda p: p.write_bytes(os.urandom(300)),
        "text.pt": lambda p: p.write_text("0.1 0.2\n0.3 0.4\n"),
        "zip.pt": zip_not_torch,
        "truncated.pt": truncated,
        "torch_as.npz": truncated,
    }


def test_whatever_a_torch_file_holds_one_error_line(files, tmp_path, capsys):
    d = files
    marker, bad = _bad_files(tmp_path)
    for name, write in bad.items():
        p = tmp_path / name
        write(p)
        for opt, argv in (
                ("--images", ["score", "--images", p, "--id-labels", d / "id.npy"]),
                ("--images", ["score", "--images", p, "--key", "x", "--id-labels",
                              d / "id.npy"]),
                ("--id-labels", ["score", "--images", d / "img.npy", "--id-labels", p]),
                ("--candidates", ["mine", "--candidates", p, "--all-nouns"]),
                ("--is-adjective", ["mine", "--candidates", d / "cand.npy", "--is-adjective",
                                    p]),
                ("--id", ["evaluate", "--id", p, "--ood", d / "img.npy"])):
            out = tmp_path / ("o.csv" if argv[0] == "evaluate" else "o.npy")
            status, _, err = run([*argv, "--out", out], capsys)
            assert_usage_error(status, err, opt)  # the option, and the file or what is wrong
            assert name in err or "expected" in err, err
            assert not out.exists()
    assert not marker.exists()


def test_npy_commands_do_not_import_torch(files):
    d = files
    code = ("import sys; from dnm import cli; "
            f"rc = cli.main(['score', '--images', {str(d / 'img.npy')!r}, '--id-labels', "
            f"{str(d / 'id.npy')!r}, '-q', '--out', {str(d / 'sub.npy')!r}]); "
            "heavy = [m for m in ('torch', 'transformers', 'PIL') if m in sys.modules]; "
            "print(rc, heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0 []"


def test_lazy_exports():
    code = ("import sys, dnm; "
            "mods = (dnm.encoders, dnm.images, dnm.dumps, dnm.benchmark); "
            "assert dnm.run_benchmark is dnm.benchmark.run_benchmark; "
            "assert 'encoders' in dir(dnm); "
            "print([m for m in ('torch', 'transformers', 'PIL') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dnm.nope  # noqa: B018


# ---------------------------------------------------------------------------------------------
# dnm benchmark

def _summary_csv(path):
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_benchmark_command_equals_the_python_call(files, tmp_path, capsys):
    d = files
    out = tmp_path / "res"
    status, stdout, err = run(["benchmark", d / "feats.pth", "--id-labels", d / "id.pth",
                               "--candidates", d / "cand.pt", "--is-adjective", d / "adj.pt",
                               "--methods", "mcm,neglabel,dnm", "--seeds", "0,1,2",
                               "--conventions", "paper,openood", "--out", out], capsys)
    assert status == 0, err
    want = run_benchmark(IMAGES, id_labels=ID_LABELS, candidates=CANDIDATES,
                         is_adjective=IS_ADJ, methods=["mcm", "neglabel", "dnm"],
                         seeds=[0, 1, 2], conventions=["paper", "openood"], progress=False)
    rows = _summary_csv(out / "summary.csv")
    assert [(r["method"], r["dataset"]) for r in rows] == [(w["method"], w["dataset"])
                                                            for w in want.summary]
    for got, w in zip(rows, want.summary):
        for col in ("FPR95 (paper) mean", "FPR95 (openood) std", "AUROC mean", "AUROC std"):
            assert float(got[f"{col} [%]"]) == pytest.approx(100 * w[col], abs=5e-5), col
    assert stdout.startswith(want.to_markdown().splitlines()[0])
    assert f"written to {out}" in stdout
    assert {"per_seed.csv", "summary.md", "summary.tex", "report.json"} <= set(os.listdir(out))

    # --set NAME=PATH with PATH:KEY and a .npy, -q: nothing printed
    status, stdout, err = run(["benchmark", "--set", f"ID={d / 'feats.pth'}:ID",
                               "--set", f"far={d / 'feats.pth'}:far", "--id-labels",
                               d / "id.npy", "--methods", "mcm", "-q", "--out",
                               tmp_path / "res2"], capsys)
    assert status == 0, err
    assert stdout == "" and err == ""
    want2 = run_benchmark({"ID": IMAGES["ID"], "far": IMAGES["far"]}, id_labels=ID_LABELS,
                          methods=["mcm"], progress=False)
    rows = _summary_csv(tmp_path / "res2" / "summary.csv")
    assert [float(r["AUROC mean [%]"]) for r in rows] == [
        pytest.approx(100 * w["AUROC mean"], abs=5e-5) for w in want2.summary]


def test_benchmark_help(capsys):
    status, out, _ = run(["benchmark", "--help"], capsys)
    assert status == 0
    assert out.splitlines()[0].startswith("usage: dnm benchmark")
    assert "--seeds" in out and "--conventions" in out
    status, out, _ = run(["--help"], capsys)
    assert status == 0 and "benchmark" in out


@pytest.mark.parametrize("argv, needles", [
    ([], ["--out"]),
    (["{d}/feats.pth", "--out", "{t}/o", "--methods", "nope"], ["unknown method 'nope'"]),
    (["{d}/feats.pth", "--out", "{t}/o", "--seeds", "0,0"], ["duplicate seeds"]),
    (["{d}/feats.pth", "--out", "{t}/o", "--conventions", "sklearn"], ["conventions"]),
    (["{d}/feats.pth", "--out", "{t}/o", "--methods", "dnm"], ["needs id_labels"]),
    (["{d}/feats.pth", "--out", "{t}/o", "--tpr", "abc"], ["--tpr", "abc"]),
    (["{d}/feats.pth", "--out", "{t}/o", "--threads", "0"], ["--threads"]),
    (["{d}/missing.pth", "--out", "{t}/o"], ["missing.pth"]),
    (["{d}/img.pt", "--out", "{t}/o"], ["img.pt"]),
    (["--set", "ID", "--out", "{t}/o"], ["NAME=PATH"]),
    (["--set", "ID={d}/img.npy", "--set", "ID={d}/img.npy", "--out", "{t}/o"], ["twice"]),
    (["--set", "ID={d}/feats.pth", "--set", "A={d}/img.npy", "--out", "{t}/o"],
     ["feats.pth", "say which one"]),
    (["{d}/feats.pth", "--set", "A={d}/img.npy", "--out", "{t}/o"], ["not both"]),
    (["{d}/feats.pth", "--id-labels", "{d}/id.npy", "--candidates", "{d}/cand.npy",
      "--is-adjective", "{d}/id.npy", "--out", "{t}/o"], ["1-D"]),
    (["{d}/feats.pth", "--id-labels", "{d}/id.npy", "--candidates", "{d}/cand.npy",
      "--is-adjective", "{d}/img.pt", "--out", "{t}/o"], ["1-D"]),
    (["{d}/feats.pth", "--dump", "{d}/img.pt", "--out", "{t}/o"], ["expected a dict"]),
])
def test_benchmark_errors_one_line(argv, needles, files, tmp_path, capsys):
    argv = [a.format(d=files, t=tmp_path) for a in argv]
    status, _, err = run(["benchmark", *argv], capsys)
    assert_usage_error(status, err, *needles)


def test_benchmark_bad_torch_files_one_line(files, tmp_path, capsys):
    d = files
    marker, bad = _bad_files(tmp_path)
    for name, write in bad.items():
        p = tmp_path / name
        write(p)
        for argv in ([p], ["--set", f"ID={p}", "--set", f"A={d / 'img.npy'}"],
                     [d / "feats.pth", "--id-labels", p], [d / "feats.pth", "--dump", p]):
            status, _, err = run(["benchmark", *argv, "--methods", "mcm", "-q", "--out",
                                  tmp_path / "o"], capsys)
            assert_usage_error(status, err, name)
    assert not marker.exists()
