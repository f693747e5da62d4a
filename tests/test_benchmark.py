"""dnm.benchmark.run_benchmark: a hand-computed table, seeds, streams, inputs, writers."""
import csv
import io
import json
import math
import re
import warnings

import numpy as np
import pytest

import dnm
from dnm.benchmark import run_benchmark

# -- a table computed by hand ----------------------------------------------------------------
# scorer(X, seed) = X[:, 0] for seed 0 and -X[:, 0] for seed 1.  ID = 1, 2, 3, 4;
# A = 0, 2.5; B = 5, 6.  With 4 ID scores FPR95 ("paper") takes recall 1.0 (|1 - .95| < |.75 - .95|),
# i.e. the threshold at the lowest ID score, and counts OOD scores at or above it.
#            seed 0                      seed 1
# A  AUROC 6/8 = .75, FPR 1/2       AUROC 2/8 = .25, FPR 2/2
# B  AUROC 0,         FPR 1         AUROC 1,         FPR 0
# Avg AUROC .375, FPR .75           AUROC .625, FPR .5
HAND = {  # (dataset, metric) -> (mean, std with ddof=0)
    ("A", "AUROC"): (0.5, 0.25), ("A", "FPR95 (paper)"): (0.75, 0.25),
    ("B", "AUROC"): (0.5, 0.5), ("B", "FPR95 (paper)"): (0.5, 0.5),
    ("Average", "AUROC"): (0.5, 0.125), ("Average", "FPR95 (paper)"): (0.625, 0.125),
}
FEATS = {"ID": np.array([[1.0], [2.0], [3.0], [4.0]]), "A": np.array([[0.0], [2.5]]),
         "B": np.array([[5.0], [6.0]])}


def flip(X, seed):
    return X[:, 0] if seed == 0 else -X[:, 0]


def test_hand_computed_table():
    res = run_benchmark(FEATS, methods={"flip": flip}, seeds=[0, 1], progress=False)
    assert res.id_name == "ID" and res.datasets == ["A", "B"]
    assert res.metrics == ["FPR95 (paper)", "AUROC", "AUPR-In", "AUPR-Out"]
    by = {r["dataset"]: r for r in res.summary}
    for (d, m), (mean, std) in HAND.items():
        assert by[d][f"{m} mean"] == pytest.approx(mean, abs=1e-12), (d, m)
        assert by[d][f"{m} std"] == pytest.approx(std, abs=1e-12), (d, m)
    # AUPR-In of A, seed 0: ranking 4 3 (2.5) 2 1 (0): AP = (1 + 1 + 3/4 + 4/5) / 4
    row = [r for r in res.per_seed if r["seed"] == 0 and r["dataset"] == "A"][0]
    assert row["AUPR-In"] == pytest.approx((1 + 1 + 0.75 + 0.8) / 4, abs=1e-12)
    assert len(res.per_seed) == 2 * 3
    res1 = run_benchmark(FEATS, methods={"flip": flip}, seeds=[0, 1], ddof=1, progress=False)
    by1 = {r["dataset"]: r for r in res1.summary}
    assert by1["A"]["AUROC std"] == pytest.approx(0.25 * math.sqrt(2), abs=1e-12)
    one = run_benchmark(FEATS, methods={"flip": flip}, seeds=0, ddof=1, progress=False)
    assert math.isnan(one.summary[0]["AUROC std"])


def test_conventions_named_in_columns():
    res = run_benchmark(FEATS, methods={"flip": flip}, seeds=[0], tpr=0.9,
                        conventions="paper,openood,interp", progress=False)
    assert res.metrics[:3] == ["FPR90 (paper)", "FPR90 (openood)", "FPR90 (interp)"]
    a = FEATS["ID"][:, 0]
    b = FEATS["A"][:, 0]
    row = res.per_seed[0]
    for c in ("paper", "openood", "interp"):
        assert row[f"FPR90 ({c})"] == dnm.metrics.fpr_at_tpr(a, b, 0.9, c)


def test_writers_parse_back(tmp_path):
    res = run_benchmark(FEATS, methods={"flip": flip, "same": lambda X, s: X[:, 0]},
                        seeds=[0, 1], progress=False)
    text = res.to_csv()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(res.summary)
    assert list(rows[0])[:5] == ["method", "dataset", "n_seeds", "FPR95 (paper) mean [%]",
                                 "FPR95 (paper) std [%]"]
    for got, want in zip(rows, res.summary):
        assert got["method"] == want["method"] and got["dataset"] == want["dataset"]
        assert int(got["n_seeds"]) == want["n_seeds"] == 2
        for k, v in want.items():
            if k.endswith(" mean") or k.endswith(" std"):
                cell = got[f"{k} [%]"]  # one unit, named in the header; 4 decimals, no noise
                assert len(cell.split(".")[1]) == 4, cell
                assert float(cell) == pytest.approx(100 * v, abs=5e-5)
    frac = list(csv.DictReader(io.StringIO(res.to_csv(percent=False))))
    for got, want in zip(frac, res.summary):
        cell = got["AUROC mean [fraction]"]
        assert len(cell.split(".")[1]) == 6 and float(cell) == pytest.approx(
            want["AUROC mean"], abs=5e-7)
    assert "AUROC std [%]" in res.to_csv(digits=1).splitlines()[0]
    assert res.to_csv(digits=1).splitlines()[1].split(",")[3].count(".") == 1
    with pytest.raises(ValueError, match="digits"):
        res.to_csv(digits=-1)
    per = list(csv.DictReader(io.StringIO(res.to_csv(which="per_seed"))))
    assert [int(r["seed"]) for r in per] == [r["seed"] for r in res.per_seed]
    assert list(per[0])[3:] == [f"{c} [%]" for c in res.metrics]
    for got, want in zip(per, res.per_seed):
        assert float(got["AUPR-In [%]"]) == pytest.approx(100 * want["AUPR-In"], abs=5e-5)
    # a std over one seed with ddof=1 is undefined: written as nan
    one = run_benchmark(FEATS, methods={"flip": flip}, seeds=0, ddof=1, progress=False)
    assert list(csv.DictReader(io.StringIO(one.to_csv())))[0]["AUROC std [%]"] == "nan"

    md = res.to_markdown()
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert head[:3] == ["method", "dataset", "FPR95 (paper) [%]"]
    for ln, want in zip(lines[2:], res.summary):
        cells = [c.strip() for c in ln.strip("|").split("|")]
        assert cells[:2] == [want["method"], want["dataset"]]
        for cell, col in zip(cells[2:], res.metrics):
            m, s = (float(x) for x in cell.split("±"))
            assert m == pytest.approx(100 * want[f"{col} mean"], abs=0.005 + 1e-9)
            assert s == pytest.approx(100 * want[f"{col} std"], abs=0.005 + 1e-9)

    tex = res.to_latex()
    assert tex.startswith("\\begin{tabular}{llrrrr}") and "FPR95 (paper) [\\%]" in tex
    body = [ln for ln in tex.splitlines() if "\\pm" in ln]
    assert len(body) == len(res.summary)
    for ln, want in zip(body, res.summary):
        pairs = re.findall(r"\$(-?[\d.]+) \\pm (-?[\d.]+)\$", ln)
        assert len(pairs) == len(res.metrics)
        assert float(pairs[1][0]) == pytest.approx(100 * want["AUROC mean"], abs=0.005 + 1e-9)

    wide = res.to_markdown(layout="wide")
    whead = [c.strip() for c in wide.splitlines()[0].strip("|").split("|")]
    assert whead[0] == "method" and whead[1] == "A FPR95 (paper) [%]"
    assert len(whead) == 1 + 3 * len(res.metrics)

    files = res.save(tmp_path)
    for f in files:
        assert (tmp_path / f).is_file()
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["summary"][0]["AUROC mean"] == res.summary[0]["AUROC mean"]
    assert (tmp_path / "summary.md").read_text() == md


# -- real methods and seeds ------------------------------------------------------------------

@pytest.fixture(scope="module")
def bench():
    return dnm.synthetic.make_benchmark("small", seed=0)


def test_regrouping_per_seed_equals_fitting_with_that_seed(bench):
    feats = {"ID": bench.id_images, **bench.ood_images}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dnm.DNMGuardWarning)
        res = run_benchmark(feats, id_labels=bench.id_labels, candidates=bench.candidates,
                            is_adjective=bench.is_adjective, methods=["mcm", "dnm", "csp"],
                            seeds=[3, 4, 5], progress=False)
        for m in ("dnm", "csp"):
            for s in (3, 4, 5):
                det = dnm.NegativeLabelDetector(m, seed=s).fit(
                    bench.id_labels, bench.candidates, bench.is_adjective)
                a = det.score_samples(bench.id_images)
                for name, X in bench.ood_images.items():
                    np.testing.assert_array_equal(res.scores[(m, s)][name],
                                                  det.score_samples(X))
                    row = [r for r in res.per_seed if (r["method"], r["seed"], r["dataset"])
                           == (m, s, name)][0]
                    assert row["AUROC"] == dnm.metrics.auroc(a, det.score_samples(X))
    # the summary is the mean / std of the per-seed rows
    for r in res.summary:
        vals = [p["FPR95 (paper)"] for p in res.per_seed
                if p["method"] == r["method"] and p["dataset"] == r["dataset"]]
        assert r["FPR95 (paper) mean"] == pytest.approx(np.mean(vals), abs=1e-15)
        assert r["FPR95 (paper) std"] == pytest.approx(np.std(vals), abs=1e-15)
    # identical per-seed values: numpy's std is 0 up to the rounding of their mean
    assert all(r["AUROC std"] <= 1e-15 for r in res.summary if r["method"] == "mcm")
    assert any(r["AUROC std"] > 0 for r in res.summary if r["method"] == "dnm")


def test_detectors_as_methods(bench):
    feats = {"ID": bench.id_images, **bench.ood_images}
    fitted = dnm.NegativeLabelDetector("neglabel", seed=7).fit(
        bench.id_labels, bench.candidates, bench.is_adjective)
    template = dnm.NegativeLabelDetector("neglabel", groups=10)
    res = run_benchmark(feats, id_labels=bench.id_labels, candidates=bench.candidates,
                        is_adjective=bench.is_adjective, methods=[fitted, template],
                        seeds=[0, 1], progress=False)
    assert res.methods == ["neglabel", "neglabel#2"]
    name = bench.ood_names[0]
    np.testing.assert_array_equal(res.scores[("neglabel", 0)][name],
                                  res.scores[("neglabel", 1)][name])  # fitted: as it is
    ref = dnm.NegativeLabelDetector("neglabel", groups=10, seed=1).fit(
        bench.id_labels, bench.candidates, bench.is_adjective)
    np.testing.assert_array_equal(res.scores[("neglabel#2", 1)][name],
                                  ref.score_samples(bench.ood_images[name]))
    assert not hasattr(template, "id_labels_")  # the template is not modified


def test_stream_methods_one_stream_per_ood_set():
    class Running:
        """Order-dependent toy TTA score: value minus the mean of everything seen before."""

        def score_stream(self, X, seed):
            x = X[:, 0].astype(float)
            prev = np.concatenate([[0.0], np.cumsum(x)[:-1]]) / np.maximum(np.arange(len(x)), 1)
            return x - prev

    res = run_benchmark(FEATS, methods={"run": Running()}, seeds=[0, 1], progress=False)
    for seed in (0, 1):
        for name in ("A", "B"):
            X = np.concatenate([FEATS["ID"], FEATS[name]])
            perm = np.random.default_rng(seed).permutation(len(X))
            s = np.empty(len(X))
            s[perm] = Running().score_stream(X[perm], seed)
            got = res.scores[("run", seed)]
            np.testing.assert_array_equal(got[name], s[4:])
            np.testing.assert_array_equal(got[f"ID (stream with {name})"], s[:4])
            row = [r for r in res.per_seed if (r["seed"], r["dataset"]) == (seed, name)][0]
            assert row["AUROC"] == dnm.metrics.auroc(s[:4], s[4:])


# -- inputs: dumps, folders, errors ----------------------------------------------------------

def test_official_dumps_as_inputs(tmp_path, bench):
    torch = pytest.importorskip("torch")
    feats = {"ImageNet": bench.id_images, **bench.ood_images}
    torch.save({k: torch.tensor(np.array(v)) for k, v in feats.items()},
               tmp_path / "CLIP_features_B16.pth")
    det = dnm.NegativeLabelDetector("dnm").fit(bench.id_labels, bench.candidates,
                                               bench.is_adjective)
    torch.save(dict(pos_emb=torch.tensor(np.array(bench.id_labels)),
                    neg_emb_selected=torch.tensor(np.array(det.negatives_)),
                    noun_length=int((~bench.is_adjective).sum()),
                    adj_length=int(bench.is_adjective.sum())), tmp_path / "neg_dump_new_B16.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dnm.DNMGuardWarning)
        res = run_benchmark(None, dump=[tmp_path / "CLIP_features_B16.pth",
                                        tmp_path / "neg_dump_new_B16.pth"],
                            methods=["dnm", "energy"], seeds=[0, 2], progress=False)
        assert res.id_name == "ImageNet" and res.settings["negatives_given"]
        for s in (0, 2):
            for name in bench.ood_names:
                ref = dnm.dnm_score(bench.ood_images[name], bench.id_labels, det.negatives_,
                                    temperature=0.01, tau=0.5, groups=100, seed=s)
                np.testing.assert_array_equal(res.scores[("dnm", s)][name], ref)
        # the features dump as the `features` argument gives the same table
        res2 = run_benchmark(tmp_path / "CLIP_features_B16.pth",
                             dump=tmp_path / "neg_dump_new_B16.pth", methods=["dnm", "energy"],
                             seeds=[0, 2], progress=False)
    assert res2.summary == res.summary


def test_folder_of_feature_files(tmp_path):
    torch = pytest.importorskip("torch")
    np.save(tmp_path / "ID.npy", FEATS["ID"])
    np.savez(tmp_path / "A.npz", x=FEATS["A"])
    torch.save(torch.from_numpy(FEATS["B"]), tmp_path / "B.pt")
    with pytest.raises(ValueError, match="id_name"):
        run_benchmark(tmp_path, methods={"flip": flip}, progress=False)
    res = run_benchmark(tmp_path, id_name="ID", methods={"flip": flip}, seeds=[0, 1],
                        progress=False)
    assert res.datasets == ["A", "B"]
    by = {r["dataset"]: r for r in res.summary}
    assert by["Average"]["AUROC mean"] == pytest.approx(0.5)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(features={"ID": FEATS["ID"]}), ValueError, "at least one OOD"),
    (dict(id_name="X"), ValueError, "id_name"),
    (dict(methods=["nope"]), ValueError, "unknown method"),
    (dict(methods=[3]), TypeError, "expected a method name"),
    (dict(seeds=[0, 0]), ValueError, "duplicate seeds"),
    (dict(seeds=[1.5]), TypeError, "seeds"),
    (dict(conventions="sklearn"), ValueError, "conventions"),
    (dict(methods=["dnm"]), ValueError, "needs id_labels"),
    (dict(methods=["dnm"], id_labels=np.ones((3, 1))), ValueError, "needs candidates"),
    (dict(features={"ID": FEATS["ID"], "A": ["a.png"]}), ValueError, "encoder="),
    (dict(ddof=-1), ValueError, "ddof"),
    (dict(params={"dnm": 3}), TypeError, "params"),
])
def test_argument_errors(kwargs, exc, match):
    kw = dict(features=FEATS, methods={"flip": flip}, progress=False)
    kw.update(kwargs)
    with pytest.raises(exc, match=match):
        run_benchmark(kw.pop("features"), **kw)


def test_main_args(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from dnm.benchmark import main_args

    r = np.random.default_rng(1)
    feats = {n: r.standard_normal((k, 4)) for n, k in (("ID", 20), ("A", 10), ("B", 12))}
    labels = r.standard_normal((3, 4))
    torch.save({k: torch.tensor(v) for k, v in feats.items()}, tmp_path / "feats.pth")
    np.save(tmp_path / "labels.npy", labels)
    rc = main_args([str(tmp_path / "feats.pth"), "--id-labels", str(tmp_path / "labels.npy"),
                    "--methods", "max_logit,mcm", "--seeds", "0,1", "--out", str(tmp_path / "o"),
                    "--conventions", "paper,openood", "--quiet"])
    assert rc == 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "o" / "summary.csv").read_text())))
    want = run_benchmark(feats, id_labels=labels, methods=["max_logit", "mcm"], seeds=[0, 1],
                         conventions=["paper", "openood"], progress=False).summary
    assert [(r["method"], r["dataset"]) for r in rows] == [(w["method"], w["dataset"])
                                                            for w in want]
    for got, w in zip(rows, want):
        assert float(got["FPR95 (openood) mean [%]"]) == pytest.approx(
            100 * w["FPR95 (openood) mean"], abs=5e-5)
        assert float(got["AUROC std [%]"]) == pytest.approx(100 * w["AUROC std"], abs=5e-5)
    rep = json.loads((tmp_path / "o" / "report.json").read_text())  # full precision there
    assert rep["summary"] == want
    rc = main_args(["--set", f"ID={tmp_path / 'labels.npy'}", "--methods", "dnm",
                    "--out", str(tmp_path / "o2")])
    assert rc == 2
    assert "dnm benchmark: error:" in capsys.readouterr().err
    rc = main_args(["--set", "ID", "--out", str(tmp_path / "o3")])
    assert rc == 2 and "NAME=PATH" in capsys.readouterr().err


# -- each method's own candidate pool -------------------------------------------------------

def test_candidates_per_pool(bench):
    """A mapping {pool: candidates}: each method fits on its own pool (dnm.methods Method.pool)."""
    feats = {"ID": bench.id_images, **bench.ood_images}
    U, mask = bench.candidates, bench.is_adjective
    perm = np.random.default_rng(1).permutation(U.shape[0])
    pools = {"dnm": U, "csp": U[perm][: U.shape[0] // 2 + 7]}
    masks = {"dnm": mask, "csp": mask[perm][: U.shape[0] // 2 + 7]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dnm.DNMGuardWarning)
        res = run_benchmark(feats, id_labels=bench.id_labels, candidates=pools, is_adjective=masks,
                            methods=["dnm", "csp"], progress=False)
        for m in ("dnm", "csp"):
            det = dnm.NegativeLabelDetector(m).fit(bench.id_labels, pools[m], masks[m])
            for name, X in bench.ood_images.items():
                np.testing.assert_array_equal(res.scores[(m, 0)][name], det.score_samples(X))
        # the two pools give different detectors (the test can tell them apart)
        other = dnm.NegativeLabelDetector("csp").fit(bench.id_labels, U, mask)
        name = next(iter(bench.ood_images))
        assert not np.array_equal(res.scores[("csp", 0)][name],
                                  other.score_samples(bench.ood_images[name]))
    with pytest.raises(ValueError, match=r"candidates: no pool 'neglabel' for method 'neglabel'"):
        run_benchmark(feats, id_labels=bench.id_labels, candidates=pools, is_adjective=masks,
                      methods=["neglabel"], progress=False)


class _HashEncoder:
    """A deterministic stand-in for a CLIP encoder: a pseudo-random vector per prompt."""

    def __init__(self, dim=16):
        self.dim = dim
        self.calls = []

    def _vec(self, text):
        import zlib

        return np.random.default_rng(zlib.crc32(text.encode())).standard_normal(self.dim)

    def encode_text(self, phrases, *, templates=None, **kw):
        if isinstance(phrases, dnm.Corpus):
            self.calls.append(phrases)
            lists = phrases.prompt_lists()
            return np.array([np.mean([self._vec(p) for p in ps], axis=0) for ps in lists],
                            dtype=np.float32)
        t = templates or "{}"
        return np.array([self._vec(t.replace("{}", p)) for p in phrases], dtype=np.float32)

    def encode_images(self, images, **kw):  # the features here are arrays already
        raise AssertionError("not called")


def test_encoder_uses_each_methods_own_pool():
    enc = _HashEncoder()
    rng = np.random.default_rng(0)
    feats = {"ID": rng.standard_normal((40, 16)), "A": rng.standard_normal((30, 16))}
    names = ["goldfish", "tench"]
    res = run_benchmark(feats, encoder=enc, id_names=names, methods=["neglabel", "csp"],
                        progress=False)
    pools = {c.template_set: c for c in enc.calls}
    assert sorted(pools) == ["csp", "neglabel"] and len(enc.calls) == 2  # each pool encoded once
    assert pools["neglabel"].phrases == dnm.corpus.load("neglabel", exclude=names).phrases
    assert pools["csp"].phrases == dnm.corpus.load("csp", exclude=names).phrases
    X = enc.encode_text(names, templates=dnm.corpus.ID_TEMPLATE)
    for m in ("neglabel", "csp"):
        c = dnm.corpus.load(m, exclude=names)
        det = dnm.NegativeLabelDetector(m).fit(X, enc.encode_text(c), c.is_adjective)
        np.testing.assert_array_equal(res.scores[(m, 0)]["A"], det.score_samples(feats["A"]))
