"""Files dnm writes get the permissions ordinary files get: 0o666 less the umask."""
import os
import stat
from contextlib import contextmanager

import numpy as np
import pytest

import dnm
from dnm import cli
from dnm._io import atomic_write

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


@contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((5, 8)).astype(np.float32),
            rng.standard_normal((40, 8)).astype(np.float32) + 1)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_detector_file_respects_umask(mask, arrays, tmp_path):
    P, cand = arrays
    det = dnm.NegativeLabelDetector("neglabel", groups=2).fit(
        P, cand, is_adjective=np.zeros(len(cand), bool))
    with umask(mask):
        det.save(tmp_path / "det.npz")
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    assert mode(tmp_path / "det.npz") == 0o666 & ~mask == mode(tmp_path / "plain.txt")
    assert not list(tmp_path.glob("*.tmp"))


def test_replacing_a_file_keeps_its_mode(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")
    os.chmod(p, 0o640)
    with umask(0o022):
        atomic_write(p, lambda fh: fh.write(b"new"), "wb")
    assert p.read_bytes() == b"new" and mode(p) == 0o640


def test_cli_outputs_respect_umask(arrays, tmp_path, capsys):
    P, cand = arrays
    np.save(tmp_path / "id.npy", P)
    np.save(tmp_path / "cand.npy", cand)
    np.save(tmp_path / "img.npy", P + 0.1)
    with umask(0o022):
        assert cli.main(["mine", "--candidates", str(tmp_path / "cand.npy"), "--id-labels",
                         str(tmp_path / "id.npy"), "--all-nouns", "--method", "neglabel",
                         "--groups", "2", "--out", str(tmp_path / "sel.json"), "--detector",
                         str(tmp_path / "x.npz"), "--quiet"]) == 0
        assert cli.main(["score", "--detector", str(tmp_path / "x.npz"), "--images",
                         str(tmp_path / "img.npy"), "--out", str(tmp_path / "s.npy"),
                         "--out", str(tmp_path / "s.csv"), "--quiet"]) == 0
    capsys.readouterr()
    for name in ("x.npz", "sel.json", "s.npy", "s.csv"):
        assert mode(tmp_path / name) == 0o644, name
