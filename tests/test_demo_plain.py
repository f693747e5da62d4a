"""`dnm demo` on a plain install (no matplotlib): everything but the PNGs, and one line on how."""
import csv
import io
import json
import os
import sys
from contextlib import redirect_stdout

from dnm import cli
from dnm.demo import DEMO_METHODS


def test_demo_without_matplotlib(monkeypatch, tmp_path):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "o"
    buf = io.StringIO()
    with redirect_stdout(buf):
        status = cli.main(["demo", "--small", "--out", str(out), "--methods", "mcm,neglabel"])
    text = buf.getvalue()
    assert status == 0, text
    assert sorted(os.listdir(out)) == ["metrics.csv", "report.json"]
    hint = [ln for ln in text.splitlines() if "not installed" in ln or "pip install" in ln]
    assert len(hint) == 1 and "pip install matplotlib" in hint[0] and "[plot]" in hint[0]
    assert "dnm[plot]" not in text
    rep = json.loads((out / "report.json").read_text())
    assert rep["files"] == ["report.json", "metrics.csv"]
    assert "matplotlib" in rep["plots_skipped"]
    with open(out / "metrics.csv", newline="") as f:
        assert len(list(csv.reader(f))) == 1 + 2 * 3  # header + 2 methods x (2 sets + Average)
    assert set(DEMO_METHODS) >= {"mcm", "neglabel"}


def test_demo_quiet_without_matplotlib(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert cli.main(["demo", "--small", "--quiet", "--out", str(tmp_path), "--methods", "mcm"]) == 0
    assert capsys.readouterr() == ("", "")
    assert "plot" not in json.loads((tmp_path / "report.json").read_text())["timings_seconds"]
