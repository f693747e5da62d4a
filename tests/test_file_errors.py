"""A file that is not what dnm expects is named, and said what it is not (and what it looks like)."""
import numpy as np
import pytest

import dnm
from dnm import cli
from dnm._io import sniff


@pytest.fixture
def files(tmp_path):
    (tmp_path / "text.npy").write_text("hello world\n1 2 3\n")
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "image.npy").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (tmp_path / "pickle.npy").write_bytes(b"\x80\x02}q\x00.")
    (tmp_path / "pickle.pt").write_bytes(b"\x80\x02}q\x00.")
    (tmp_path / "binary.npy").write_bytes(bytes(range(200, 256)))
    np.save(tmp_path / "ok.npy", np.ones((3, 4), np.float32))
    np.save(tmp_path / "id.npy", np.ones((2, 4), np.float32))
    return tmp_path


@pytest.mark.parametrize("name, says", [
    ("text.npy", "looks like text, starting 'hello world'"), ("empty.npy", "is empty"),
    ("image.npy", "PNG image"),
    ("binary.npy", "starts with the bytes c8 c9 ca"),
])
def test_cli_says_not_a_numpy_file(name, says, files, capsys):
    status = cli.main(["score", "--images", str(files / name), "--id-labels",
                       str(files / "id.npy"), "--out", str(files / "o.npy")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert err.startswith(f"dnm: error: --images: {files / name} is not a NumPy file "
                          "(.npy or .npz): ")
    assert says in err and "pickled" not in err and "allow_pickle" not in err


@pytest.mark.parametrize("name", ["pickle.pt", "pickle.npy"])
def test_cli_says_a_pickle_is_not_a_readable_torch_file(name, files, capsys):
    """A pickle (by name or by content) is taken for a torch file, and refused as one."""
    status = cli.main(["score", "--images", str(files / name), "--id-labels",
                       str(files / "id.npy"), "--out", str(files / "o.npy")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert err.startswith(f"dnm: error: --images: cannot read {files / name} as a torch file")


def test_detector_load_says_what_the_file_is(files):
    with pytest.raises(dnm.DetectorFileError, match=r"text\.npy: not a dnm detector file .*"
                                                    r"looks like text"):
        dnm.NegativeLabelDetector.load(files / "text.npy")
    with pytest.raises(dnm.DetectorFileError, match=r"ok\.npy: not a dnm detector file .*"
                                                    r"\.npy array"):
        dnm.NegativeLabelDetector.load(files / "ok.npy")


def test_sniff(files):
    assert sniff(files / "ok.npy") == ("npy", None)
    np.savez(files / "z.npz", a=np.zeros(2))
    assert sniff(files / "z.npz") == ("zip", None)
    # a UTF-8 character cut by the sample's end is still text
    (files / "u.txt").write_bytes(("x" * 63 + "é").encode())
    assert "looks like text" in sniff(files / "u.txt")[1]
