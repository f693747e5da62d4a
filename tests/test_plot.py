"""dnm.plot: figures with the expected panels and lines; PNGs written."""
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from dnm import metrics as M  # noqa: E402
from dnm import plot  # noqa: E402


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    a = rng.normal(1.0, 1.0, 2000)
    sets = {"iNaturalist": rng.normal(0, 1, 800), "SUN": rng.normal(0.4, 1, 600),
            "Places": np.round(rng.normal(0.6, 1, 500), 1), "Textures": rng.normal(0.2, 1, 300)}
    return a, sets


def _png_ok(path):
    data = path.read_bytes()
    assert len(data) > 5000
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_histograms(data, tmp_path):
    a, sets = data
    out = tmp_path / "hist.png"
    fig = plot.score_histograms(a, sets, path=out, bins=50)
    assert len(fig.axes) == 4  # one panel per set; the two unused grid cells removed
    for ax, (name, b) in zip(fig.axes, sets.items()):
        assert len(ax.patches) == 2  # ID and OOD histograms
        assert len(ax.lines) == 1  # the TPR threshold
        assert ax.get_title().startswith(f"{name}: FPR95 ")
        assert f"AUROC {M.auroc(a, b) * 100:.2f}%" in ax.get_title()
    _png_ok(out)


def test_histograms_layout_and_single_set(data, tmp_path):
    a, sets = data
    fig = plot.score_histograms(a, sets, ncols=2, density=False)
    assert len(fig.axes) == 4 and fig.axes[0].get_ylabel() == "count"
    one = plot.score_histograms(a, sets["SUN"], path=tmp_path / "one")
    assert len(one.axes) == 1
    _png_ok(tmp_path / "one")  # no extension: still a PNG
    const = plot.score_histograms([1.0, 1.0], {"x": [1.0, 1.0]})  # degenerate range
    assert len(const.axes) == 1


def test_roc(data, tmp_path):
    a, sets = data
    out = tmp_path / "roc.png"
    fig = plot.roc_curves(a, sets, path=str(out))
    (ax,) = fig.axes
    assert len(ax.lines) == len(sets) + 2  # curves + chance diagonal + TPR line
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == f"iNaturalist (AUROC {M.auroc(a, sets['iNaturalist']) * 100:.2f}%)"
    x, y = ax.lines[0].get_data()
    assert x[0] == 0 and y[0] == 0 and x[-1] == 1 and y[-1] == 1
    _png_ok(out)


def test_roc_thinning():
    rng = np.random.default_rng(1)
    fig = plot.roc_curves(rng.normal(1, 1, 20_000), {"x": rng.normal(0, 1, 20_000)}, max_points=500)
    x, y = fig.axes[0].lines[0].get_data()
    assert len(x) <= 501 and x[-1] == 1 and y[-1] == 1
    assert np.all(np.diff(x) >= 0) and np.all(np.diff(y) >= 0)


def test_errors(data):
    a, sets = data
    with pytest.raises(ValueError, match=r"ood_sets\['x'\]: score at index 1 is NaN"):
        plot.score_histograms(a, {"x": [0.0, np.nan]})
    with pytest.raises(ValueError, match="only one score"):
        plot.roc_curves(a, {"x": [0.0]})


def test_missing_matplotlib_message(monkeypatch, data):
    a, sets = data
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install matplotlib .*pip install '\.\[plot\]'"):
        plot.roc_curves(a, sets)


# ---- readable histograms: the axes cover every set's central 98% with a readable spread ----

def _mid_cdf(ref, x):
    ref = np.sort(ref)
    return (np.searchsorted(ref, x, "left") + np.searchsorted(ref, x, "right")) / (2.0 * ref.size)


def _check_readable(fig, id_scores, ood_sets):
    """On each panel: where the central 98% (1st to 99th percentile) of ID and of that panel's
    OOD set land on the x axis; both inside the axis limits, each spanning >= 15% of it."""
    axes = [ax for ax in fig.axes]
    assert len(axes) == len(ood_sets)
    for ax, (name, b) in zip(axes, ood_sets.items()):
        lo, hi = ax.get_xlim()
        label = ax.get_xlabel()
        if "percentile scale" in label:  # the named transform: mean of the two mid-rank CDFs
            assert f"of ID and {name}" in label and "ticks are raw scores" in label

            def f(x, b=b):
                return 0.5 * (_mid_cdf(id_scores, x) + _mid_cdf(b, x))
        else:
            assert label.startswith("score")

            def f(x):
                return np.asarray(x, dtype=np.float64)
        for x in (id_scores, b):
            q1, q99 = f(np.quantile(x, [0.01, 0.99]))
            assert lo <= q1 <= q99 <= hi, (name, lo, q1, q99, hi)
            assert (q99 - q1) / (hi - lo) >= 0.15, (name, label, (q99 - q1) / (hi - lo))


@pytest.fixture(scope="module")
def demo_scores():
    import dnm
    from dnm.synthetic import make_benchmark

    b = make_benchmark("small", seed=0)
    out = {}
    for m in ("mcm", "energy", "neglabel", "csp", "dnm"):
        d = dnm.NegativeLabelDetector(m).fit(b.id_labels, b.candidates,
                                             is_adjective=b.is_adjective)
        out[m] = (d.score_samples(b.id_images),
                  {k: d.score_samples(X) for k, X in b.ood_images.items()})
    return out


@pytest.mark.parametrize("method", ["mcm", "energy", "neglabel", "csp", "dnm"])
def test_histograms_readable_on_demo_scores(method, demo_scores):
    a, sets = demo_scores[method]
    _check_readable(plot.score_histograms(a, sets), a, sets)


def test_histograms_readable_with_outliers_and_crowding():
    rng = np.random.default_rng(5)
    # one far outlier: the range comes from robust quantiles, not from min/max
    a = np.r_[rng.normal(1.0, 0.1, 999), -1e3]
    sets = {"x": rng.normal(0.7, 0.1, 500)}
    fig = plot.score_histograms(a, sets)
    assert fig.axes[0].dnm_scale == "linear"
    _check_readable(fig, a, sets)
    assert "1 beyond the axis" in " ".join(t.get_text() for t in fig.axes[0].get_legend().texts)
    # scores crowded at 1 for ID (as NegLabel's), spread for OOD: a named monotone scale
    a = 1.0 - rng.exponential(1e-4, 2000)
    sets = {"near": 1.0 - rng.exponential(1e-2, 800), "far": rng.uniform(0.3, 1.0, 600)}
    fig = plot.score_histograms(a, sets)
    assert [ax.dnm_scale for ax in fig.axes] == ["percentile", "percentile"]
    _check_readable(fig, a, sets)
    # forcing linear shows the squeezed picture the check rejects
    with pytest.raises(AssertionError):
        _check_readable(plot.score_histograms(a, sets, scale="linear"), a, sets)
    with pytest.raises(ValueError, match="scale"):
        plot.score_histograms(a, sets, scale="log")


def test_histogram_ticks_are_raw_scores():
    rng = np.random.default_rng(6)
    a = 1.0 - rng.exponential(1e-4, 500)
    b = rng.uniform(0.3, 1.0, 300)
    ax = plot.score_histograms(a, {"b": b}, scale="percentile").axes[0]
    labels = [float(t.get_text()) for t in ax.get_xticklabels()]
    pos = ax.get_xticks()
    assert len(labels) >= 3 and labels == sorted(labels)
    # each tick sits where its raw score falls on the scale
    np.testing.assert_allclose(pos, 0.5 * (_mid_cdf(a, labels) + _mid_cdf(b, labels)), atol=0.02)


def test_histograms_with_one_id_set_per_panel():
    """A test-time adaptive method streams the ID set once per OOD set: each panel then shows
    its own ID scores, its own threshold and its own metrics."""
    rng = np.random.default_rng(11)
    ids = {"near": rng.normal(1.0, 0.1, 400), "far": rng.normal(3.0, 0.1, 400)}
    sets = {"near": rng.normal(0.8, 0.1, 300), "far": rng.normal(2.0, 0.1, 300)}
    fig = plot.score_histograms(ids, sets, scale="linear")
    for ax, name in zip(fig.axes, sets):
        want = M.all_metrics(ids[name], sets[name])
        assert f"AUROC {want['auroc'] * 100:.2f}%" in ax.get_title()
        thr = [ln.get_xdata()[0] for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert thr == [pytest.approx(np.quantile(ids[name], 0.05))]
        n_id = [t.get_text() for t in ax.get_legend().texts if t.get_text().startswith("ID")]
        assert n_id == ["ID (n=400)"]
    for name in sets:  # each panel readable with its own ID set (the auto scale)
        one = plot.score_histograms({name: ids[name]}, {name: sets[name]})
        _check_readable(one, ids[name], {name: sets[name]})
    with pytest.raises(ValueError, match=r"id_scores: .*missing \['far'\]"):
        plot.score_histograms({"near": ids["near"]}, sets)
