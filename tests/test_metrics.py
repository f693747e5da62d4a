"""dnm.metrics: C kernel against scikit-learn and the NumPy twins (tests/slow/metrics.py)."""
import sys

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from dnm import metrics as M

from slow import metrics as T

TOL = 1e-12


def _labels(a, b):
    y = np.r_[np.ones(len(a)), np.zeros(len(b))]
    s = np.r_[np.asarray(a, float), np.asarray(b, float)]
    return y, s


def sk_auroc(a, b):
    return roc_auc_score(*_labels(a, b))


def sk_aupr_in(a, b):
    return average_precision_score(*_labels(a, b))


def sk_aupr_out(a, b):
    y, s = _labels(a, b)
    return average_precision_score(1 - y, -s)


def sk_fpr_openood(a, b, tpr=0.95):
    """OpenOOD's auc_and_fpr_recall: OOD positive on -conf, fpr at argmax(tpr >= th)."""
    y, s = _labels(a, b)
    fpr, tp, _ = roc_curve(1 - y, -s)
    return fpr[np.argmax(tp >= tpr)]


def sk_fpr_interp(a, b, tpr=0.95):
    """CLIPN: np.interp(0.95, tpr, fpr) on roc_curve with ID positive."""
    fpr, tp, _ = roc_curve(*_labels(a, b))
    return np.interp(tpr, tp, fpr)


def _cases(rng, n_cases=60):
    """Random pairs of sets: continuous, and rounded to 0-2 decimals (many ties),
    of sizes from 2 to a few hundred, with a random target tpr."""
    out = []
    for k in range(n_cases):
        n1, n0 = rng.integers(2, 400, 2)
        a = rng.normal(0.7, 1.0, n1)
        b = rng.normal(0.0, 1.0, n0)
        dec = k % 4
        if dec:
            a, b = np.round(a, dec - 1), np.round(b, dec - 1)
        tpr = [0.95, 0.9, 1.0, float(rng.uniform(0.01, 1))][k % 4]
        out.append((a, b, tpr))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_areas_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    for a, b, _ in _cases(rng):
        assert abs(M.auroc(a, b) - sk_auroc(a, b)) <= TOL
        assert abs(M.aupr_in(a, b) - sk_aupr_in(a, b)) <= TOL
        assert abs(M.aupr_out(a, b) - sk_aupr_out(a, b)) <= TOL


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_areas_equal_twin(seed):
    rng = np.random.default_rng(100 + seed)
    for a, b, _ in _cases(rng):
        r = M.all_metrics(a, b)
        assert abs(r["auroc"] - T.auroc(a, b)) <= TOL
        assert abs(r["aupr_in"] - T.aupr_in(a, b)) <= TOL
        assert abs(r["aupr_out"] - T.aupr_out(a, b)) <= TOL


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fpr_conventions(seed):
    rng = np.random.default_rng(200 + seed)
    for a, b, tpr in _cases(rng):
        paper = M.fpr_at_tpr(a, b, tpr)
        assert paper == T.fpr_paper(a, b, tpr)
        assert paper == T.fpr_reference(a, b, tpr)
        oo = M.fpr_at_tpr(a, b, tpr, convention="openood")
        assert oo == T.fpr_openood(a, b, tpr)
        assert oo == sk_fpr_openood(a, b, tpr)
        ip = M.fpr_at_tpr(a, b, tpr, convention="interp")
        assert abs(ip - T.fpr_interp(a, b, tpr)) <= TOL
        assert abs(ip - sk_fpr_interp(a, b, tpr)) <= TOL


def test_paper_50000_sentence():
    """docs/design.md, "Metrics": with 50,000 ID scores and no ties, the paper FPR95 is the share of
    OOD scores strictly above the 47,501-st highest ID score."""
    rng = np.random.default_rng(7)
    a = rng.normal(1.0, 1.0, 50_000)
    b = rng.normal(0.0, 1.0, 20_000)
    assert np.unique(np.r_[a, b]).size == a.size + b.size  # no ties
    s47501 = np.sort(a)[::-1][47_500]
    expected = np.mean(b > s47501)
    assert M.fpr_at_tpr(a, b) == expected
    assert T.fpr_paper(a, b) == expected


def test_paper_tie_goes_to_lowest_threshold():
    # ID recall 0.5 is reached at thresholds 3 and 2.5 (an OOD score in between):
    # the lowest one (2.5) counts the OOD score at 2.5.
    a = [4.0, 3.0, 1.0, 0.0]
    b = [2.5, -1.0]
    assert M.fpr_at_tpr(a, b, tpr=0.5) == 0.5
    assert T.fpr_paper(a, b, 0.5) == 0.5
    assert T.fpr_reference(a, b, 0.5) == 0.5


def test_paper_distance_is_float64_like_the_reference_code():
    # 10 ID scores, tpr 0.95: recalls 0.9 and 1.0 are both 0.05 away in exact
    # arithmetic, but in float64 |0.9 - 0.95| < |1.0 - 0.95|, so the reference code
    # (and dnm) takes recall 0.9 (the higher threshold), not the lower one.
    a = np.arange(10, dtype=float)     # ID 0..9
    b = np.array([0.0, -1.0])          # one OOD score tied with the lowest ID score
    assert abs(0.9 - 0.95) < abs(1.0 - 0.95)
    assert M.fpr_at_tpr(a, b) == 0.0   # threshold 1.0 (recall 0.9): no OOD at or above it
    assert T.fpr_reference(a, b) == 0.0  # (threshold 0.0, recall 1.0, would give 0.5)


def test_openood_drop_intermediate_matters_with_ties():
    # each value holds one ID and one OOD score: the ROC is one straight line and
    # sklearn keeps only its ends, so OpenOOD reports FPR 1, not 0.95.
    v = np.arange(20, dtype=float)
    assert M.fpr_at_tpr(v, v, convention="openood") == 1.0
    assert sk_fpr_openood(v, v) == 1.0
    assert M.fpr_at_tpr(v, v, convention="paper") == 0.95
    assert M.fpr_at_tpr(v, v, convention="interp") == pytest.approx(0.95, abs=1e-15)


def test_known_values():
    assert M.auroc([2, 3], [0, 1]) == 1.0
    assert M.auroc([0, 1], [2, 3]) == 0.0
    assert M.auroc([1, 1], [1, 1]) == 0.5  # constant sets are allowed
    assert M.auroc([1, 2], [1, 0]) == 0.875
    assert M.fpr_at_tpr([1, 1], [1, 1]) == 1.0
    assert M.fpr_at_tpr(np.arange(100) + 10, np.arange(10)) == 0.0
    assert M.fpr_at_tpr(np.arange(100.0), [-1.0, 200.0], tpr=1.0) == 0.5


def test_signed_zero_and_extremes():
    # -0.0 == +0.0 is one value (a tie), not two
    assert M.auroc([-0.0, 1.0], [0.0, -1.0]) == M.auroc([0.0, 1.0], [0.0, -1.0]) == 0.875
    big = np.finfo(np.float64).max
    tiny = np.finfo(np.float64).tiny
    a = np.array([big, tiny, 5e-324, -tiny, -big / 2])
    b = np.array([-big, -5e-324, 0.0, big / 2, 1.0])
    assert abs(M.auroc(a, b) - sk_auroc(a, b)) <= TOL
    assert M.fpr_at_tpr(a, b, 0.6) == T.fpr_paper(a, b, 0.6)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int8, np.int64, np.uint16])
def test_dtypes_and_array_likes(dtype):
    rng = np.random.default_rng(3)
    a = (rng.normal(3, 2, 300) * 10).astype(dtype)
    b = (rng.normal(1, 2, 200) * 10).astype(dtype) if np.dtype(dtype).kind != "u" else \
        np.abs(rng.normal(1, 2, 200) * 10).astype(dtype)
    expected = sk_auroc(a.astype(np.float64), b.astype(np.float64))
    assert abs(M.auroc(a, b) - expected) <= TOL
    assert abs(M.auroc(list(a), tuple(b)) - expected) <= TOL
    assert abs(M.auroc(a[::-1], b[::2]) - sk_auroc(a[::-1].astype(float), b[::2].astype(float))) <= TOL


def test_torch_tensors():
    torch = pytest.importorskip("torch")
    a = torch.linspace(0, 1, 50)
    b = torch.linspace(-0.5, 0.5, 40)
    assert abs(M.auroc(a, b) - sk_auroc(a.numpy(), b.numpy())) <= TOL


def test_inputs_unchanged():
    rng = np.random.default_rng(4)
    a = rng.normal(size=1000)
    b = np.round(rng.normal(size=800), 1)
    a0, b0 = a.copy(), b.copy()
    M.all_metrics(a, b)
    M.evaluate(a, {"x": b})
    M.roc_curve(a, b)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


def test_threads_do_not_change_results():
    rng = np.random.default_rng(5)
    a, b = np.round(rng.normal(1, 1, 5000), 2), rng.normal(0, 1, 7000)
    assert M.all_metrics(a, b, num_threads=1) == M.all_metrics(a, b, num_threads=2)


def test_ten_million_scores():
    """5M + 5M scores drawn from 50,000 continuous values (every radix digit varies,
    many ties): exact against the histogram twins."""
    rng = np.random.default_rng(6)
    values = np.unique(rng.normal(0.0, 1.0, 50_000))
    k = values.size
    ia = np.clip(rng.normal(0.6 * k, 0.25 * k, 5_000_000), 0, k - 1).astype(np.int64)
    ib = rng.integers(0, k, 5_000_000)
    r = M.all_metrics(values[ia], values[ib])
    c1, c0 = np.bincount(ia, minlength=k), np.bincount(ib, minlength=k)
    assert abs(r["auroc"] - T.auroc_hist(c1, c0)) <= TOL
    assert abs(r["aupr_in"] - T.aupr_in_hist(c1, c0)) <= TOL
    assert r["fpr_paper"] == T.fpr_paper_hist(c1, c0)
    assert r["n_thresholds"] == np.count_nonzero(c1 + c0)


def test_histogram_twins_agree_with_sample_twins():
    rng = np.random.default_rng(12)
    values = np.unique(rng.normal(size=40))
    ia, ib = rng.integers(0, values.size, 300), rng.integers(5, values.size, 200)
    c1, c0 = np.bincount(ia, minlength=values.size), np.bincount(ib, minlength=values.size)
    a, b = values[ia], values[ib]
    assert T.auroc_hist(c1, c0) == pytest.approx(T.auroc(a, b), abs=1e-15)
    assert T.aupr_in_hist(c1, c0) == pytest.approx(T.aupr_in(a, b), abs=1e-15)
    assert T.fpr_paper_hist(c1, c0) == T.fpr_paper(a, b)


# ---- errors ---------------------------------------------------------------

@pytest.mark.parametrize("bad,where", [
    ([1.0, np.nan, 2.0], "id_scores: score at index 1 is NaN"),
    ([1.0, 2.0, np.inf], "id_scores: score at index 2 is \\+inf"),
])
def test_nonfinite_id(bad, where):
    with pytest.raises(ValueError, match=where):
        M.auroc(bad, [0.0, 1.0])


def test_nonfinite_ood_named():
    with pytest.raises(ValueError, match="ood_scores: score at index 0 is -inf"):
        M.fpr_at_tpr([0.0, 1.0], [-np.inf, 1.0])
    with pytest.raises(ValueError, match=r"ood_sets\['SUN'\]: score at index 1 is NaN"):
        M.evaluate([0.0, 1.0], {"iNat": [0.0, 2.0], "SUN": [0.0, np.nan]})


@pytest.mark.parametrize("a,b,exc,msg", [
    ([], [1.0, 2.0], ValueError, "id_scores: no scores"),
    ([1.0, 2.0], np.array([]), ValueError, "ood_scores: no scores"),
    ([1.0], [1.0, 2.0], ValueError, "id_scores: only one score"),
    ([1.0, 2.0], [0.5], ValueError, "ood_scores: only one score"),
    (0.5, [1.0, 2.0], TypeError, "id_scores: expected a 1-D array of scores, got a single float"),
    (np.float64(0.5), [1.0, 2.0], TypeError, "got a single"),
    (np.array(0.5), [1.0, 2.0], ValueError, "got a scalar"),
    (np.ones((3, 2)), [1.0, 2.0], ValueError, "2-D array with shape"),
    ([1.0, 2.0], np.ones((3, 1)), ValueError, "ood_scores: expected a 1-D array"),
    ([True, False], [1.0, 2.0], TypeError, "boolean"),
    ([1 + 1j, 2j], [1.0, 2.0], TypeError, "complex"),
    (["a", "b"], [1.0, 2.0], TypeError, "real-valued"),
])
def test_input_errors(a, b, exc, msg):
    with pytest.raises(exc, match=msg):
        M.auroc(a, b)


@pytest.mark.parametrize("tpr", [0, -0.1, 1.01, np.nan, np.inf])
def test_tpr_out_of_range(tpr):
    with pytest.raises(ValueError, match="tpr: must lie in"):
        M.fpr_at_tpr([1.0, 2.0], [0.0, 1.0], tpr=tpr)


def test_tpr_type_and_convention():
    with pytest.raises(TypeError, match="tpr"):
        M.fpr_at_tpr([1.0, 2.0], [0.0, 1.0], tpr="0.95")
    with pytest.raises(ValueError, match="convention: expected one of"):
        M.fpr_at_tpr([1.0, 2.0], [0.0, 1.0], convention="clipn")
    with pytest.raises(ValueError, match="convention"):
        M.evaluate([1.0, 2.0], {"x": [0.0, 1.0]}, convention="OpenOOD")


# ---- evaluate / markdown ---------------------------------------------------

def _sets(rng):
    return {"iNaturalist": rng.normal(0, 1, 300), "SUN": np.round(rng.normal(0.3, 1, 200), 1),
            "Textures": rng.normal(0.6, 1, 100)}


def test_evaluate_result_rows():
    rng = np.random.default_rng(8)
    a = rng.normal(1, 1, 500)
    sets = _sets(rng)
    res = M.evaluate(a, sets)
    assert isinstance(res, M.EvaluationResult)
    rows = list(res)  # the list-of-dicts layout
    assert len(res) == 4 and [r["dataset"] for r in rows] == ["iNaturalist", "SUN", "Textures",
                                                             "Average"]
    assert list(rows[0]) == ["dataset", "FPR95 (paper)", "AUROC", "AUPR-In", "AUPR-Out"]
    assert res.columns == ("FPR95 (paper)", "AUROC", "AUPR-In", "AUPR-Out")
    assert res.fpr_column == "FPR95 (paper)" and res.units == "fraction"
    for r, (name, b) in zip(rows, sets.items()):
        assert r["AUROC"] == M.auroc(a, b)
        assert r["FPR95 (paper)"] == M.fpr_at_tpr(a, b)
        assert r["AUPR-In"] == M.aupr_in(a, b) and r["AUPR-Out"] == M.aupr_out(a, b)
        assert res[name] == r and res[name, "AUROC"] == r["AUROC"]
    for c in res.columns:
        assert rows[-1][c] == pytest.approx(np.mean([r[c] for r in rows[:-1]]), abs=1e-15)
    assert res[-1] == res["Average"] == rows[-1] and res[0] == rows[0]
    assert res.column("AUROC") == {r["dataset"]: r["AUROC"] for r in rows}
    assert res.to_dict() == {r["dataset"]: {k: v for k, v in r.items() if k != "dataset"}
                             for r in rows}
    assert "SUN" in res and "nope" not in res
    assert res.n_id == 500 and res.n_ood == {"iNaturalist": 300, "SUN": 200, "Textures": 100}
    np.testing.assert_array_equal(res.values[:, 1], [r["AUROC"] for r in rows])
    with pytest.raises(ValueError):
        res.values[0, 0] = 1.0  # read-only
    with pytest.raises(KeyError, match="no dataset 'nope'.*iNaturalist"):
        res["nope"]
    with pytest.raises(KeyError, match="no column 'FPR95'.*FPR95 \\(paper\\)"):
        res["SUN", "FPR95"]
    with pytest.raises(IndexError):
        res[4]
    with pytest.raises(TypeError):
        res[1.5]


def test_evaluate_same_type_without_pandas(monkeypatch):
    rng = np.random.default_rng(8)
    a, sets = rng.normal(1, 1, 100), _sets(rng)
    with_pd = M.evaluate(a, sets)
    monkeypatch.setitem(sys.modules, "pandas", None)
    res = M.evaluate(a, sets)
    assert type(res) is type(with_pd) is M.EvaluationResult
    assert res.to_markdown() == with_pd.to_markdown() and res.to_csv() == with_pd.to_csv()
    assert res.to_dict() == with_pd.to_dict() and repr(res) == repr(with_pd)
    with pytest.raises(ImportError, match="pip install pandas"):
        res.to_frame()


def test_evaluate_frame_and_options():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(9)
    a = rng.normal(1, 1, 500)
    sets = _sets(rng)
    df = M.evaluate(a, sets, tpr=0.9, convention="openood").to_frame()
    assert isinstance(df, pd.DataFrame)
    assert list(df.index) == ["iNaturalist", "SUN", "Textures", "Average"]
    assert df.index.name == "dataset"
    assert list(df.columns) == ["FPR90 (openood)", "AUROC", "AUPR-In", "AUPR-Out"]
    assert df.attrs == {"tpr": 0.9, "convention": "openood", "units": "fraction"}
    assert df.loc["SUN", "FPR90 (openood)"] == M.fpr_at_tpr(a, sets["SUN"], 0.9, "openood")
    # pairs and a bare array
    df2 = M.evaluate(a, list(sets.items()), tpr=0.9, convention="openood").to_frame()
    pd.testing.assert_frame_equal(df, df2)
    one = M.evaluate(a, sets["SUN"])
    assert one.datasets == ("OOD", "Average")


def test_evaluate_renderings():
    res = M.EvaluationResult(["iNat", "Average"], [[0.5834, 0.9512345, 0.5, 1.0],
                                                  [0.5834, 0.9512345, 0.5, 1.0]],
                             tpr=0.95, convention="openood", n_id=1000, n_ood={"iNat": 500})
    md = res.to_markdown()
    cap, blank, *table = md.rstrip("\n").split("\n")
    assert blank == ""
    assert "FPR at 95% TPR, openood convention" in cap and "in %" in cap and "1,000 ID" in cap
    assert table[0].split("|")[1:-1] == [" dataset ", " FPR95 (openood) [%] ", " AUROC [%] ",
                                         " AUPR-In [%] ", " AUPR-Out [%] "]
    assert [c.strip() for c in table[2].split("|")[1:-1]] == ["iNat", "58.34", "95.12", "50.00",
                                                              "100.00"]
    assert len({len(line) for line in table}) == 1  # aligned
    frac = res.to_markdown(percent=False, caption=False)
    assert frac.startswith("| dataset | FPR95 (openood) [fraction] |") and "0.9512" in frac
    assert "%" not in frac
    # CSV: one unit in the header, 4 decimals of a percentage (no float noise), or 6 of a fraction
    assert res.to_csv().splitlines() == [
        "dataset,FPR95 (openood) [%],AUROC [%],AUPR-In [%],AUPR-Out [%]",
        "iNat,58.3400,95.1234,50.0000,100.0000", "Average,58.3400,95.1234,50.0000,100.0000"]
    assert res.to_csv(percent=False).splitlines()[1] == "iNat,0.583400,0.951234,0.500000,1.000000"
    tex = res.to_latex()
    assert "\\caption{FPR95 (openood): FPR at 95\\% TPR, openood convention" in tex
    assert "FPR95 (openood) [\\%] & AUROC [\\%]" in tex and "iNat & 58.34 & 95.12" in tex
    assert res.to_latex(caption=False).startswith("\\begin{tabular}{lrrrr}")
    r = repr(res)
    assert r.startswith("<EvaluationResult: 1 OOD set + Average; fractions, shown in %>")
    assert "| FPR95 (openood) [%] |" in r and res._repr_markdown_() == md
    with pytest.raises(ValueError, match="digits"):
        res.to_csv(digits=-1)


def test_evaluate_writes_files(tmp_path):
    rng = np.random.default_rng(4)
    res = M.evaluate(rng.normal(1, 1, 50), {"x": rng.normal(0, 1, 40)})
    for ext, fn in (("md", res.to_markdown), ("csv", res.to_csv), ("tex", res.to_latex)):
        text = fn(tmp_path / f"t.{ext}")
        assert (tmp_path / f"t.{ext}").read_text() == text


def test_evaluate_errors():
    a = [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="no OOD sets"):
        M.evaluate(a, {})
    with pytest.raises(ValueError, match="reserved"):
        M.evaluate(a, {"Average": [0.0, 1.0]})
    with pytest.raises(TypeError, match="ood_sets"):
        M.evaluate(a, 5)
    with pytest.raises(ValueError, match=r"ood_sets\['x'\]: only one score"):
        M.evaluate(a, {"x": [0.0]})


def test_markdown():
    rows = [{"dataset": "iNat", "FPR95": 0.25, "AUROC": 0.9512345, "AUPR-In": 0.5, "AUPR-Out": 1.0},
            {"dataset": "Average", "FPR95": 0.25, "AUROC": 0.9512345, "AUPR-In": 0.5,
             "AUPR-Out": 1.0}]
    md = M.to_markdown(rows)
    lines = md.strip().split("\n")
    assert lines[0].split("|")[1:-1] == [" dataset ", " FPR95 [%] ", " AUROC [%] ",
                                          " AUPR-In [%] ", " AUPR-Out [%] "]
    assert set(lines[1]) <= set("|:-")
    assert [c.strip() for c in lines[2].split("|")[1:-1]] == ["iNat", "25.00", "95.12", "50.00",
                                                              "100.00"]
    assert len({len(line) for line in lines}) == 1  # aligned
    frac = M.to_markdown(rows, percent=False, digits=1)
    assert "0.951" in frac and "%" not in frac and "AUROC [fraction]" in frac
    with pytest.raises(TypeError):
        M.to_markdown("nope")
    with pytest.raises(ValueError, match="digits"):
        M.to_markdown(rows, digits=-1)


def test_markdown_of_result_and_frame():
    rng = np.random.default_rng(10)
    a = rng.normal(1, 1, 200)
    sets = _sets(rng)
    res = M.evaluate(a, sets)
    md = M.to_markdown(res)
    assert md == res.to_markdown()
    assert md.count("\n") == 2 + 2 + 4 and md.splitlines()[0] == res.caption()
    assert "| Average " in md
    assert M.to_markdown(res, percent=False, digits=1) == res.to_markdown(percent=False, digits=3)
    assert M.to_markdown(list(res)) == res.to_markdown(caption=False)
    pytest.importorskip("pandas")
    assert M.to_markdown(res.to_frame()) == res.to_markdown(caption=False)


def test_roc_curve_matches_sklearn():
    rng = np.random.default_rng(11)
    a, b = np.round(rng.normal(1, 1, 300), 1), np.round(rng.normal(0, 1, 200), 1)
    fpr, tpr, thr = M.roc_curve(a, b)
    f2, t2, th2 = roc_curve(*_labels(a, b), drop_intermediate=False)
    np.testing.assert_allclose(fpr, f2, atol=1e-15)
    np.testing.assert_allclose(tpr, t2, atol=1e-15)
    np.testing.assert_array_equal(thr, th2)
    with pytest.raises(ValueError, match="finite"):
        M.roc_curve([1.0, np.nan], [0.0, 1.0])


# ---- property test -------------------------------------------------------------

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # hypothesis is a test extra; the rest of the module still runs
    given = None

if given is not None:
    _floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
    _small = st.sampled_from([-1.0, -0.0, 0.0, 0.5, 1.0, 2.0])  # forces ties

    @settings(max_examples=150, deadline=None)
    @given(a=st.lists(st.one_of(_floats, _small), min_size=2, max_size=40),
           b=st.lists(st.one_of(_floats, _small), min_size=2, max_size=40),
           tpr=st.floats(min_value=1e-3, max_value=1.0))
    def test_property_against_sklearn(a, b, tpr):
        r = M.all_metrics(a, b, tpr)
        assert abs(r["auroc"] - sk_auroc(a, b)) <= TOL
        assert abs(r["aupr_in"] - sk_aupr_in(a, b)) <= TOL
        assert abs(r["aupr_out"] - sk_aupr_out(a, b)) <= TOL
        assert r["fpr_paper"] == T.fpr_reference(a, b, tpr)
        assert r["fpr_openood"] == sk_fpr_openood(a, b, tpr)
        assert abs(r["fpr_interp"] - sk_fpr_interp(a, b, tpr)) <= TOL
