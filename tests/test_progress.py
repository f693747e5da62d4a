"""Progress bars: redrawn on a terminal, one final line per stage in logs, silenced by quiet."""
import io
import os
import subprocess
import sys

import numpy as np
import pytest

from dnm import _progress
from dnm._progress import LogBar, TileProgress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(argv, cwd):
    """``python -m dnm ARGV`` with stderr redirected to a file; returns (status, stderr bytes)."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    err = os.path.join(cwd, "stderr.txt")
    with open(err, "wb") as f:
        r = subprocess.run([sys.executable, "-m", "dnm", *argv], cwd=cwd, stdout=subprocess.DEVNULL,
                           stderr=f, env=env, timeout=600)
    with open(err, "rb") as f:
        return r.returncode, f.read()


@pytest.fixture(scope="module")
def candidates(tmp_path_factory):
    d = tmp_path_factory.mktemp("progress")
    rng = np.random.default_rng(0)
    # raw (not unit-norm) candidates, enough rows for hundreds of kNN tiles
    np.save(d / "cand.npy", (rng.standard_normal((12000, 8)) * 0.3 + 1).astype(np.float32))
    return d


def test_mine_log_is_bounded(candidates):
    status, err = _run(["mine", "--candidates", "cand.npy", "--all-nouns", "--out", "n.npy"],
                       candidates)
    assert status == 0, err
    # before: one redraw per tile (about 30 bytes each, hundreds of tiles, \r-separated)
    assert len(err) < 400, err
    assert b"\r" not in err and b"\x1b" not in err
    lines = err.decode().splitlines()
    assert any(ln.startswith("dnm kNN log-distance: ") and ln.endswith("s") for ln in lines)
    assert any(ln.startswith("dnm mine: ") for ln in lines)


def test_mine_quiet_is_silent(candidates):
    status, err = _run(["mine", "--candidates", "cand.npy", "--all-nouns", "--out", "n.npy",
                        "--quiet"], candidates)
    assert status == 0 and err == b""


def test_demo_log_is_bounded(tmp_path):
    status, err = _run(["demo", "--small", "--no-plots", "--out", "d"], tmp_path)
    assert status == 0, err
    assert b"\r" not in err and b"\x1b" not in err
    lines = err.decode().splitlines()
    assert len(lines) <= 4 and len(err) < 300, err  # one line per stage
    assert [ln.split(":")[0] for ln in lines] == ["mine/fit", "benchmark"]
    status, err = _run(["demo", "--small", "--no-plots", "--out", "d", "--quiet"], tmp_path)
    assert status == 0 and err == b""


class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self._tty = tty

    def isatty(self):
        return self._tty


def test_log_bar_nesting_and_lines():
    s = _Stream(False)
    bar = _progress.tqdm_class()
    outer = bar(range(3), desc="outer", file=s, unit="method")
    assert isinstance(outer, LogBar)
    for _ in outer:
        with bar(total=5, desc="inner", file=s, unit="tile") as b:
            for _ in range(5):
                b.update(1)
                b.refresh()
        assert s.getvalue().count("\n") >= 1
    lines = s.getvalue().splitlines()
    assert len(lines) == 4
    assert all(ln.startswith("  inner: 5/5 tiles in ") for ln in lines[:3])
    assert lines[3].startswith("outer: 3/3 methods in ")
    # a disabled bar writes nothing and does not change the nesting depth
    s2 = _Stream(False)
    with bar(total=2, desc="off", file=s2, disable=True) as b:
        b.update(2)
    with bar(total=1, desc="top", file=s2) as b:
        b.update(1)
    assert s2.getvalue().startswith("top: 1/1 it in ")
    # a bar that never advanced writes nothing
    s3 = _Stream(False)
    with bar(total=4, desc="idle", file=s3):
        pass
    assert s3.getvalue() == ""


def test_terminal_gets_tqdm():
    from tqdm import tqdm

    s = _Stream(True)
    b = _progress.tqdm_class()(total=3, desc="tty", file=s)
    try:
        assert isinstance(b, tqdm)
        b.update(3)
    finally:
        b.close()
    assert "\r" in s.getvalue()


def test_tile_progress_to_a_file(monkeypatch):
    s = _Stream(False)
    monkeypatch.setattr(sys, "stderr", s)
    with TileProgress(True, "kernel") as cb:
        for i in range(1, 101):
            cb(i, 100)
    assert s.getvalue().startswith("kernel: 100/100 tiles in ")
    assert s.getvalue().count("\n") == 1
    with TileProgress(False, "off") as cb:
        cb(1, 1)
    assert s.getvalue().count("\n") == 1
