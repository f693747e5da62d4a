"""The `dnm` command line: every subcommand on tiny inputs, --help, one-line errors (status 2)."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dnm
from dnm import cli
from dnm.synthetic import make_benchmark

SUBCOMMANDS = ("mine", "score", "evaluate", "demo", "bench")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Small synthetic inputs written as .npy/.npz files."""
    d = tmp_path_factory.mktemp("cli")
    b = make_benchmark("small", seed=1, n_candidates=1000, n_id_images=200,
                       ood_sets=[("far", "far", 150)])
    np.save(d / "id.npy", b.id_labels)
    np.save(d / "cand.npy", b.candidates)
    np.save(d / "adj.npy", b.is_adjective)
    np.save(d / "img.npy", b.id_images)
    np.save(d / "far.npy", b.ood_images["far"])
    np.savez(d / "imgs.npz", id=b.id_images, far=b.ood_images["far"])
    np.savez(d / "one.npz", only=b.id_images)
    (d / "phrases.txt").write_text("\n".join(b.candidate_names) + "\n")
    return d, b


def run(argv, capsys):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def run_sub(argv, **kw):
    return subprocess.run([sys.executable, "-m", "dnm", *map(str, argv)], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, MPLBACKEND="Agg"), **kw)


def assert_usage_error(status, err, *needles):
    assert status == 2
    assert err.startswith("dnm: error: "), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, (n, err)


# ---------------------------------------------------------------------------------------------
# help

@pytest.mark.parametrize("argv", [["--help"]] + [[c, "--help"] for c in SUBCOMMANDS])
def test_help(argv, capsys):
    status, out, _ = run(argv, capsys)
    assert status == 0
    assert "usage: dnm" in out
    if len(argv) == 2:
        assert argv[0] in out.splitlines()[0]


def test_help_subprocess_and_version():
    r = run_sub(["--help"])
    assert r.returncode == 0 and all(c in r.stdout for c in SUBCOMMANDS)
    r = run_sub(["--version"])
    assert r.returncode == 0 and r.stdout.strip() == f"dnm {dnm.__version__}"


def test_no_command(capsys):
    status, _, err = run([], capsys)
    assert status == 2 and "usage: dnm" in err


# ---------------------------------------------------------------------------------------------
# mine

@pytest.mark.parametrize("method", ["dnm", "neglabel", "csp"])
def test_mine_outputs_match_library(method, data, capsys):
    d, b = data
    o = d / f"sel_{method}"
    status, _, err = run(["mine", "--candidates", d / "cand.npy", "--id-labels", d / "id.npy",
                          "--is-adjective", d / "adj.npy", "--method", method, "--phrases",
                          d / "phrases.txt", "--k", 10, "--out", f"{o}.npy", "--out", f"{o}.csv",
                          "--out", f"{o}.json", "--detector", f"{o}.npz"], capsys)
    assert status == 0, err
    det = dnm.NegativeLabelDetector(method, k=10).fit(b.id_labels, b.candidates,
                                                      is_adjective=b.is_adjective)
    want = det.negative_indices_
    np.testing.assert_array_equal(np.load(f"{o}.npy"), want)
    js = json.loads(Path(f"{o}.json").read_text())
    assert js["indices"] == want.tolist() and js["method"] == method
    assert js["phrases"] == [b.candidate_names[i] for i in want]
    with open(f"{o}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["index"]) for r in rows] == want.tolist()
    assert rows[0]["phrase"] == b.candidate_names[want[0]]
    loaded = dnm.NegativeLabelDetector.load(f"{o}.npz")
    np.testing.assert_array_equal(loaded.negative_indices_, want)
    assert loaded.negative_phrases_ == [b.candidate_names[i] for i in want]
    assert "selected" in err


def test_mine_dnm_without_id_labels(data, capsys):
    d, b = data
    status, _, err = run(["mine", "--candidates", d / "cand.npy", "--is-adjective",
                          d / "adj.npy", "--noun-ratio", 0.1, "--adj-ratio", 0.05, "--k", 5,
                          "--quiet", "--out", d / "dnm_noid.npy"], capsys)
    assert status == 0 and err == ""
    want = dnm.select_dnm(b.candidates, b.is_adjective, noun_ratio=0.1, adj_ratio=0.05, k=5)
    np.testing.assert_array_equal(np.load(d / "dnm_noid.npy"), want)


def test_mine_all_nouns(data, capsys):
    d, b = data
    status, _, err = run(["mine", "--candidates", d / "cand.npy", "--id-labels", d / "id.npy",
                          "--all-nouns", "--method", "neglabel", "-q", "--out",
                          d / "nouns.json"], capsys)
    assert status == 0, err
    js = json.loads((d / "nouns.json").read_text())
    assert js["n_selected"] == int(0.15 * 1000) and js["n_selected_adjectives"] == 0


@pytest.mark.parametrize("argv, needles", [
    (["--candidates", "missing.npy", "--all-nouns", "--out", "x.npy"], ["file not found", "missing.npy"]),
    (["--candidates", "{d}/cand.npy", "--out", "{d}/x.npy"], ["--is-adjective"]),
    (["--candidates", "{d}/cand.npy", "--all-nouns"], ["nothing to write"]),
    (["--candidates", "{d}/cand.npy", "--all-nouns", "--out", "{d}/x.txt"], ["extension"]),
    (["--candidates", "{d}/cand.npy", "--all-nouns", "--method", "neglabel", "--out",
      "{d}/x.npy"], ["--id-labels is required"]),
    (["--candidates", "{d}/cand.npy", "--all-nouns", "--method", "foo", "--out", "{d}/x.npy"],
     ["invalid choice", "foo"]),
    (["--candidates", "{d}/adj.npy", "--all-nouns", "--out", "{d}/x.npy"], ["2-D"]),
    (["--candidates", "{d}/cand.npy", "--is-adjective", "{d}/id.npy", "--out", "{d}/x.npy"],
     ["--is-adjective", "1-D"]),
    (["--candidates", "{d}/cand.npy", "--id-labels", "{d}/cand.npy", "--all-nouns",
      "--noun-ratio", "1.5", "--out", "{d}/x.npy"], ["noun_ratio"]),
    (["--candidates", "{d}/cand.npy", "--all-nouns", "--k", "abc", "--out", "{d}/x.npy"],
     ["--k", "abc"]),
    (["--candidates", "{d}/cand.npy", "--adjectives-from", "dnm", "--out", "{d}/x.npy"],
     ["corpus has"]),
    (["--candidates", "{d}/cand.npy", "--adjectives-from", "nope", "--out", "{d}/x.npy"],
     ["preset"]),
    (["--candidates", "{d}/cand.npy", "--all-nouns", "--phrases", "{d}/adj.npy",
      "--out", "{d}/x.npy"], []),
])
def test_mine_errors(argv, needles, data, capsys):
    d, _ = data
    argv = [a.format(d=d) for a in argv]
    status, _, err = run(["mine", *argv], capsys)
    assert_usage_error(status, err, *needles)


def test_mine_dimension_mismatch(data, tmp_path, capsys):
    d, b = data
    np.save(tmp_path / "id64.npy", b.id_labels[:, :64])
    status, _, err = run(["mine", "--candidates", d / "cand.npy", "--id-labels",
                          tmp_path / "id64.npy", "--all-nouns", "--out", tmp_path / "x.npy"], capsys)
    assert_usage_error(status, err, "features")


# ---------------------------------------------------------------------------------------------
# score

def test_score_with_detector_and_arrays(data, capsys):
    d, b = data
    status, _, err = run(["mine", "--candidates", d / "cand.npy", "--id-labels", d / "id.npy",
                          "--is-adjective", d / "adj.npy", "--k", 10, "-q", "--out",
                          d / "neg_idx.npy", "--detector", d / "det.npz"], capsys)
    assert status == 0, err
    det = dnm.NegativeLabelDetector.load(d / "det.npz")
    want = det.score_samples(b.id_images)
    status, _, err = run(["score", "--detector", d / "det.npz", "--images", d / "img.npy",
                          "--out", d / "s.npy", "--out", d / "s.csv", "--out", d / "s.json"],
                         capsys)
    assert status == 0, err
    np.testing.assert_array_equal(np.load(d / "s.npy"), want)
    with open(d / "s.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    np.testing.assert_array_equal([float(r["score"]) for r in rows], want)
    js = json.loads((d / "s.json").read_text())
    assert js["method"] == "dnm" and js["n"] == want.size
    np.testing.assert_array_equal(js["scores"], want)

    # the same from arrays: ID labels + the selected negatives, same grouping seed
    np.save(d / "neg.npy", b.candidates[np.load(d / "neg_idx.npy")])
    status, _, err = run(["score", "--id-labels", d / "id.npy", "--negatives", d / "neg.npy",
                          "--images", d / "imgs.npz", "--key", "id", "-q", "--out",
                          d / "s2.npy"], capsys)
    assert status == 0 and err == ""
    np.testing.assert_array_equal(np.load(d / "s2.npy"), want)
    # FILE.npz:KEY spelling
    status, _, err = run(["score", "--id-labels", d / "id.npy", "--method", "mcm", "--images",
                          f"{d / 'imgs.npz'}:far", "-q", "--out", d / "s3.npy"], capsys)
    assert status == 0, err
    np.testing.assert_array_equal(np.load(d / "s3.npy"),
                                  dnm.mcm_score(b.ood_images["far"], b.id_labels))


@pytest.mark.parametrize("method", ["mcm", "energy", "max_logit", "neglabel"])
def test_score_methods(method, data, capsys):
    d, b = data
    argv = ["score", "--id-labels", d / "id.npy", "--method", method, "--images", d / "one.npz",
            "-q", "--out", d / f"sc_{method}.npy", "--temperature", 0.5]
    if method == "neglabel":
        argv += ["--negatives", d / "cand.npy", "--groups", 10]
    status, _, err = run(argv, capsys)
    assert status == 0, err
    got = np.load(d / f"sc_{method}.npy")
    fn = {"mcm": lambda: dnm.mcm_score(b.id_images, b.id_labels, temperature=0.5),
          "energy": lambda: dnm.energy_score(b.id_images, b.id_labels, temperature=0.5),
          "max_logit": lambda: dnm.max_logit_score(b.id_images, b.id_labels),
          "neglabel": lambda: dnm.neglabel_score(b.id_images, b.id_labels, b.candidates,
                                                 temperature=0.5, groups=10)}[method]
    np.testing.assert_array_equal(got, fn())


@pytest.mark.parametrize("argv, needles", [
    (["--images", "{d}/img.npy", "--out", "{d}/o.npy"], ["--detector"]),
    (["--images", "{d}/img.npy"], ["--out"]),
    (["--images", "{d}/nope.npy", "--id-labels", "{d}/id.npy", "--out", "{d}/o.npy"],
     ["file not found"]),
    (["--images", "{d}/imgs.npz", "--id-labels", "{d}/id.npy", "--out", "{d}/o.npy"],
     ["holds 2 arrays", "--key"]),
    (["--images", "{d}/imgs.npz", "--key", "zzz", "--id-labels", "{d}/id.npy", "--out",
      "{d}/o.npy"], ["no array 'zzz'", "available"]),
    (["--images", "{d}/img.npy", "--key", "id", "--id-labels", "{d}/id.npy", "--out",
      "{d}/o.npy"], [".npy file"]),
    (["--images", "{d}/phrases.txt", "--id-labels", "{d}/id.npy", "--out", "{d}/o.npy"],
     ["phrases.txt is not a NumPy file", "looks like text"]),
    (["--images", "{d}/img.npy", "--id-labels", "{d}/id.npy", "--method", "dnm", "--out",
      "{d}/o.npy"], ["--negatives is required"]),
    (["--images", "{d}/img.npy", "--id-labels", "{d}/id.npy", "--negatives", "{d}/cand.npy",
      "--tau", "2", "--out", "{d}/o.npy"], ["tau"]),
    (["--images", "{d}/img.npy", "--id-labels", "{d}/id.npy", "--temperature", "-1",
      "--out", "{d}/o.npy"], ["temperature"]),
    (["--images", "{d}/adj.npy", "--id-labels", "{d}/id.npy", "--out", "{d}/o.npy"], ["2-D"]),
    (["--images", "{d}/img.npy", "--detector", "{d}/phrases.txt", "--out", "{d}/o.npy"],
     ["detector"]),
    (["--images", "{d}/img.npy", "--id-labels", "{d}/id.npy", "--out", "{d}/nodir/o.npy"],
     ["does not exist"]),
    (["--images", "{d}/img.npy", "--id-labels", "{d}/id.npy", "--threads", "0",
      "--out", "{d}/o.npy"], ["--threads"]),
])
def test_score_errors(argv, needles, data, capsys):
    d, _ = data
    argv = [a.format(d=d) for a in argv]
    status, _, err = run(["score", *argv], capsys)
    assert_usage_error(status, err, *needles)


def test_score_wrong_width(data, tmp_path, capsys):
    d, b = data
    np.save(tmp_path / "img64.npy", b.id_images[:, :64])
    status, _, err = run(["score", "--images", tmp_path / "img64.npy", "--id-labels",
                          d / "id.npy", "--out", tmp_path / "o.npy"], capsys)
    assert_usage_error(status, err, "features")


# ---------------------------------------------------------------------------------------------
# evaluate

def test_evaluate(data, tmp_path, capsys):
    d, b = data
    s_id = dnm.mcm_score(b.id_images, b.id_labels)
    s_far = dnm.mcm_score(b.ood_images["far"], b.id_labels)
    np.save(tmp_path / "id.npy", s_id)
    np.save(tmp_path / "far.npy", s_far)
    with open(tmp_path / "far.csv", "w") as f:
        f.write("index,score\n" + "".join(f"{i},{v!r}\n" for i, v in enumerate(s_far.tolist())))
    (tmp_path / "far2.json").write_text(json.dumps({"scores": s_far.tolist()}))
    status, out, err = run(["evaluate", "--id", tmp_path / "id.npy", "--ood",
                            f"far={tmp_path / 'far.npy'}", "--ood", f"farcsv={tmp_path / 'far.csv'}",
                            "--ood", tmp_path / "far2.json", "--out", tmp_path / "t.csv",
                            "--out", tmp_path / "t.json", "--out", tmp_path / "t.md"], capsys)
    assert status == 0, err
    want = dnm.metrics.all_metrics(s_id, s_far)
    lines = out.splitlines()
    assert lines[0].startswith("FPR95 (paper): FPR at 95% TPR, paper convention") and "in %" in lines[0]
    lines = [ln for ln in lines if ln.startswith("|")]
    assert lines[0].startswith("| dataset") and "| FPR95 (paper) [%] |" in lines[0]
    assert "| AUROC [%] |" in lines[0]
    names = [ln.split("|")[1].strip() for ln in lines[2:]]
    assert names == ["far", "farcsv", "far2", "Average"]
    js = json.loads((tmp_path / "t.json").read_text())
    rows = {r["dataset"]: r for r in js["rows"]}
    assert rows["far"]["AUROC"] == pytest.approx(want["auroc"], abs=0)
    assert rows["farcsv"] == {**rows["far"], "dataset": "farcsv"}
    assert rows["far2"] == {**rows["far"], "dataset": "far2"}
    assert 0.5 < rows["Average"]["AUROC"] <= 1.0
    assert js["columns"] == ["FPR95 (paper)", "AUROC", "AUPR-In", "AUPR-Out"]
    assert js["units"] == "fraction" and js["convention"] == "paper"
    with open(tmp_path / "t.csv", newline="") as f:
        crow = list(csv.DictReader(f))
    # one unit, named in the header; 4 decimals of a percentage
    assert list(crow[0]) == ["dataset", "FPR95 (paper) [%]", "AUROC [%]", "AUPR-In [%]",
                             "AUPR-Out [%]"]
    for r in crow:
        for c, v in r.items():
            if c != "dataset":
                assert len(v.split(".")[1]) == 4, v
                j = rows[r["dataset"]][c.split(" [")[0]]
                assert float(v) == pytest.approx(j * 100, abs=5e-5)
    assert (tmp_path / "t.md").read_text() == out


def test_evaluate_fraction_and_convention(data, tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.arange(100.0))
    np.save(tmp_path / "b.npy", np.arange(100.0) - 30)
    status, out, _ = run(["evaluate", "--id", tmp_path / "a.npy", "--ood",
                          f"b={tmp_path / 'b.npy'}", "--fraction", "--convention", "openood",
                          "--tpr", 0.9], capsys)
    assert status == 0
    assert "FPR90 (openood) [fraction]" in out and "%" not in out.replace("90% TPR", "")
    assert "openood convention" in out.splitlines()[0]


def test_evaluate_names_the_convention_everywhere(tmp_path, capsys):
    # the same scores give different FPR95 under the two conventions: no header may hide which
    rng = np.random.default_rng(3)
    np.save(tmp_path / "a.npy", rng.normal(1, 1, 400))
    np.save(tmp_path / "b.npy", rng.normal(0, 1.5, 300))
    got = {}
    for conv in ("paper", "openood"):
        outs = [tmp_path / f"{conv}.{e}" for e in ("csv", "md", "json")]
        status, out, err = run(["evaluate", "--id", tmp_path / "a.npy", "--ood",
                                f"b={tmp_path / 'b.npy'}", "--convention", conv,
                                *sum((["--out", p] for p in outs), [])], capsys)
        assert status == 0, err
        csv_head = (tmp_path / f"{conv}.csv").read_text().splitlines()[0]
        md = (tmp_path / f"{conv}.md").read_text()
        assert f"FPR95 ({conv}) [%]" in csv_head
        assert f"| FPR95 ({conv}) [%] |" in md and f"| FPR95 ({conv}) [%] |" in out
        assert f"{conv} convention" in md.splitlines()[0]  # the caption
        other = "openood" if conv == "paper" else "paper"
        assert other not in csv_head and f"({other})" not in md
        got[conv] = json.loads((tmp_path / f"{conv}.json").read_text())["rows"][0][f"FPR95 ({conv})"]
    assert got["paper"] != got["openood"]


@pytest.mark.parametrize("argv, needles", [
    (["--id", "{d}/nope.npy", "--ood", "x={d}/far.npy"], ["file not found"]),
    (["--id", "{d}/img.npy", "--ood", "x={d}/far.npy"], ["1-D"]),
    (["--id", "{d}/adj.npy"], ["--ood"]),
    (["--id", "{d}/s.json", "--ood", "=x.npy"], ["empty name"]),
    (["--id", "{d}/phrases.txt", "--ood", "x={d}/far.npy"], ["phrases.txt is not a NumPy file"]),
    (["--id", "{d}/s.csv", "--ood", "x={d}/s.csv", "--ood", "x={d}/s.csv"], ["duplicate"]),
    (["--id", "{d}/s.csv", "--ood", "x={d}/s.csv", "--tpr", "1.5"], ["tpr"]),
    (["--id", "{d}/s.csv", "--ood", "x={d}/s.csv", "--convention", "zzz"], ["invalid choice"]),
])
def test_evaluate_errors(argv, needles, data, capsys, tmp_path):
    d, b = data
    s = dnm.mcm_score(b.id_images, b.id_labels)
    with open(d / "s.csv", "w") as f:
        f.write("index,score\n" + "".join(f"{i},{v!r}\n" for i, v in enumerate(s.tolist())))
    argv = [a.format(d=d) for a in argv]
    status, _, err = run(["evaluate", *argv], capsys)
    assert_usage_error(status, err, *needles)


def test_evaluate_nan_scores(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.array([0.1, np.nan, 0.3]))
    np.save(tmp_path / "b.npy", np.array([0.1, 0.2]))
    status, _, err = run(["evaluate", "--id", tmp_path / "a.npy", "--ood", tmp_path / "b.npy"],
                         capsys)
    assert_usage_error(status, err)


# ---------------------------------------------------------------------------------------------
# bench, subprocess round trip

def test_bench(tmp_path, capsys):
    status, out, err = run(["bench", "--n-images", 300, "--n-labels", 50, "--n-negatives", 200,
                            "--dim", 64, "--repeat", 1, "--json", tmp_path / "b.json"], capsys)
    assert status == 0, err
    assert "numpy images @ id_labels.T" in out and "dnm.dnm_score" in out
    js = json.loads((tmp_path / "b.json").read_text())
    assert js["rows"][0]["ratio_to_numpy_product"] == 1.0
    assert all(r["seconds"] > 0 for r in js["rows"])


def test_bench_bad_size(capsys):
    status, _, err = run(["bench", "--n-images", 0], capsys)
    assert_usage_error(status, err, "--n-images")


def test_subprocess_pipeline(data, tmp_path):
    d, _ = data
    r = run_sub(["mine", "--candidates", d / "cand.npy", "--id-labels", d / "id.npy",
                 "--is-adjective", d / "adj.npy", "--method", "csp", "-q", "--detector",
                 tmp_path / "det.npz"])
    assert r.returncode == 0, r.stderr
    for name in ("img", "far"):
        r = run_sub(["score", "--detector", tmp_path / "det.npz", "--images", d / f"{name}.npy",
                     "-q", "--out", tmp_path / f"{name}.json"])
        assert r.returncode == 0, r.stderr
    r = run_sub(["evaluate", "--id", tmp_path / "img.json", "--ood", tmp_path / "far.json"])
    assert r.returncode == 0, r.stderr
    assert "| far" in r.stdout and "| Average" in r.stdout


def test_subprocess_error_is_one_line(tmp_path):
    r = run_sub(["score", "--images", tmp_path / "missing.npy", "--id-labels", "x.npy",
                 "--out", tmp_path / "o.npy"])
    assert r.returncode == 2
    assert r.stderr.startswith("dnm: error: ") and r.stderr.count("\n") == 1
    r = run_sub(["frobnicate"])
    assert r.returncode == 2
    assert r.stderr.startswith("dnm: error: ") and "frobnicate" in r.stderr
    assert r.stderr.count("\n") == 1
