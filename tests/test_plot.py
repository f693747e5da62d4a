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
