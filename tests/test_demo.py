"""`dnm demo --small`: table printed, PNG / JSON / CSV written, JSON keys, honest notes; the
demo is a run_benchmark call, with AdaNeg and TANL as one stream per OOD set."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from dnm import cli  # noqa: E402
from dnm.demo import DEMO_METHODS, run_demo  # noqa: E402


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "dnm-demo-output"
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        status = cli.main(["demo", "--small", "--out", str(out)])
    return status, buf.getvalue(), out


def test_demo_prints_table_and_timings(demo_run):
    status, text, out = demo_run
    assert status == 0
    assert "SYNTHETIC" in text
    header = next(ln for ln in text.splitlines() if ln.startswith("| method"))
    for col in ("near FPR95 (paper) [%]", "near AUROC [%]", "near AUPR-In [%]",
                "far FPR95 (paper) [%]", "Average AUROC [%]"):
        assert f"| {col} |" in header
    caption = text.splitlines()[text.splitlines().index(header) - 1]
    assert "paper convention" in caption and "in %" in caption
    for label in ("MCM", "max-logit", "energy", "NegLabel", "CSP", "DNM", "AdaNeg", "TANL"):
        assert any(ln.startswith(f"| {label} ") for ln in text.splitlines()), label
    assert "AdaNeg, TANL: test-time adaptive, one stream per OOD set" in text
    assert "time per stage:" in text
    for stage in ("generate", "mine", "score", "evaluate", "plot"):
        assert f"{stage} " in text.split("time per stage:")[1].splitlines()[0]
    assert "essentially a ranking by raw embedding norm" in text


def test_demo_writes_files(demo_run):
    _, _, out = demo_run
    names = set(os.listdir(out))
    assert {"report.json", "metrics.csv", "roc_near.png", "roc_far.png"} <= names
    assert {f"hist_{m}.png" for m in DEMO_METHODS} <= names
    for n in names:
        if n.endswith(".png"):
            with open(out / n, "rb") as f:
                assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_demo_report_json(demo_run):
    _, _, out = demo_run
    rep = json.loads((out / "report.json").read_text())
    assert rep["synthetic"] is True and "SYNTHETIC" in rep["note"]
    assert rep["settings"]["size"] == "small"
    assert rep["datasets"] == ["near", "far"]
    assert set(rep["methods"]) == set(DEMO_METHODS)
    assert {"generate", "mine", "score", "evaluate", "plot"} <= set(rep["timings_seconds"])
    for m, r in rep["methods"].items():
        assert set(r["metrics"]) == {"near", "far", "Average"}
        for d, vals in r["metrics"].items():
            assert set(vals) == {"FPR95 (paper)", "AUROC", "AUPR-In", "AUPR-Out"}
            assert all(0.0 <= v <= 1.0 for v in vals.values())
        # sane range on this benchmark: every method beats chance
        assert r["metrics"]["Average"]["AUROC"] > 0.6
        assert set(r["times"]) == {"mine", "score"}
    assert rep["settings"]["runner"] == "dnm.benchmark.run_benchmark"
    for m in ("neglabel", "csp", "dnm", "adaneg", "tanl"):
        assert rep["methods"][m]["n_negatives"] > 0
        assert 0.0 <= rep["methods"][m]["negatives_near_id_share"] <= 1.0
    assert rep["methods"]["mcm"]["n_negatives"] == 0
    assert rep["methods"]["mcm"]["negatives_near_id_share"] is None
    sel = rep["methods"]["dnm"]["dnm_selection"]
    assert set(sel) == {"nouns_overlap_with_lowest_norm", "adjectives_overlap_with_lowest_norm"}
    assert set(rep["files"]) == set(os.listdir(out))


def test_demo_metrics_csv_matches_json(demo_run):
    _, _, out = demo_run
    rep = json.loads((out / "report.json").read_text())
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(DEMO_METHODS) * 3
    for r in rows:
        want = rep["methods"][r["method"]]["metrics"][r["dataset"]]
        for c in ("FPR95 (paper)", "AUROC", "AUPR-In", "AUPR-Out"):
            v = r[f"{c} [%]"]  # one unit, named in the header; 4 decimals, no float noise
            assert len(v.split(".")[1]) == 4, v
            assert float(v) == pytest.approx(want[c] * 100, abs=5e-5)
    assert rep["settings"]["metrics_units"] == "fraction"


def test_demo_deterministic_metrics(tmp_path):
    a = run_demo(tmp_path / "a", size="small", methods="mcm,dnm", plots=False, quiet=True)
    b = run_demo(tmp_path / "b", size="small", methods=["mcm", "dnm"], plots=False, quiet=True)
    assert a["methods"]["dnm"]["metrics"] == b["methods"]["dnm"]["metrics"]
    assert sorted(os.listdir(tmp_path / "a")) == ["metrics.csv", "report.json"]


def test_demo_bad_methods(tmp_path):
    with pytest.raises(ValueError, match="methods"):
        run_demo(tmp_path, size="small", methods="dnm,foo", quiet=True)


def test_demo_subprocess_quiet(tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, "-m", "dnm", "demo", "--small", "--quiet", "--no-plots",
                        "--methods", "mcm,neglabel", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert list(rep["methods"]) == ["mcm", "neglabel"]


def test_demo_bad_option_exit_2(tmp_path, capsys):
    assert cli.main(["demo", "--methods", "nope", "--small", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dnm: error:") and err.count("\n") == 1


def test_demo_is_a_benchmark_run(tmp_path):
    """The demo's numbers are run_benchmark's on the synthetic benchmark: the static methods
    from detectors fitted with the seed, AdaNeg and TANL from dnm.adaneg_score /
    dnm.tanl_score on one shuffled stream per OOD set, NegLabel's negatives, TANL's corpus
    = those negatives first, then the other candidates."""
    import dnm
    from dnm.synthetic import make_benchmark

    seed = 3
    rep = run_demo(tmp_path, size="small", seed=seed, methods="adaneg,tanl,neglabel,mcm",
                   plots=False, quiet=True)
    assert rep["settings"]["methods"] == ["adaneg", "tanl", "neglabel", "mcm"]
    b = make_benchmark("small", seed=seed)
    det = dnm.NegativeLabelDetector("neglabel", seed=seed).fit(
        b.id_labels, b.candidates, is_adjective=b.is_adjective)
    idx = det.negative_indices_
    rest = np.setdiff1d(np.arange(len(b.candidates)), idx)
    corpus = b.candidates[np.r_[idx, rest]]
    for name, X in b.ood_images.items():
        st, order, n_id = dnm.tta.evaluation_stream(b.id_images, X, seed=seed)
        want = {
            "adaneg": dnm.adaneg_score(st, b.id_labels, det.negatives_, seed=seed),
            "tanl": dnm.tanl_score(st, b.id_labels, corpus, b.noise_images, seed=seed),
        }
        for m, s in want.items():
            a, o = dnm.tta.split_scores(s, order, n_id)
            got = rep["methods"][m]["metrics"][name]
            ev = dnm.evaluate(a, {name: o})
            for c in ("FPR95 (paper)", "AUROC", "AUPR-In", "AUPR-Out"):
                assert got[c] == ev[name, c], (m, name, c)
        ev = dnm.evaluate(det.score_samples(b.id_images), {name: det.score_samples(X)})
        assert rep["methods"]["neglabel"]["metrics"][name]["AUROC"] == ev[name, "AUROC"]
    assert rep["methods"]["adaneg"]["params"]["groups"] == 5  # the official defaults
    assert rep["methods"]["tanl"]["params"]["top"] == 1000
    assert rep["methods"]["tanl"]["corpus_size"] == len(b.candidates)
