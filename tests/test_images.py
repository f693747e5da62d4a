"""dnm.images: folders, path lists, OpenOOD image lists, DataLoader decoding with failures."""
import warnings

import numpy as np
import pytest

pytest.importorskip("PIL")
torch = pytest.importorskip("torch")

from dnm import images as I  # noqa: E402
from tiny_clip import FakePreprocess, write_images  # noqa: E402


def _corrupt(folder):
    """A text file named .png, a truncated JPEG, an empty .jpg; returns their paths."""
    bad_text = folder / "zz_text.png"
    bad_text.write_bytes(b"this is not an image")
    good = write_images(folder / "_src", 1, seed=99)[0]
    data = good.read_bytes()
    trunc = folder / "zz_trunc.png"
    trunc.write_bytes(data[: len(data) // 2])
    empty = folder / "zz_empty.jpg"
    empty.write_bytes(b"")
    return [bad_text, trunc, empty]


def test_folder_flat_sorted_and_filtered(tmp_path):
    paths = write_images(tmp_path, 7, seed=1)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "UPPER.PNG").write_bytes(paths[0].read_bytes())
    il = I.from_folder(tmp_path)
    names = [p.split("/")[-1] for p in il.paths]
    assert names == sorted([p.name for p in paths] + ["UPPER.PNG"])
    assert il.labels is None and il.classes is None
    assert len(il) == 8 and il[0] == il.paths[0]


def test_folder_classes(tmp_path):
    write_images(tmp_path / "b_dog", 3, seed=2, prefix="d")
    write_images(tmp_path / "a_cat", 2, seed=3, prefix="c")
    (tmp_path / "empty_class").mkdir()
    il = I.from_folder(tmp_path)
    assert il.classes == ["a_cat", "b_dog"]
    assert il.labels.tolist() == [0, 0, 1, 1, 1]
    assert all("/a_cat/" in p for p in il.paths[:2])
    sub = il[np.array([True, False, False, True, False])]
    assert sub.labels.tolist() == [0, 1] and sub.classes == il.classes


def test_folder_mixed_layout_refused_unless_said(tmp_path):
    write_images(tmp_path, 2, seed=4)
    write_images(tmp_path / "cls", 2, seed=5)
    with pytest.raises(ValueError, match="layout='flat'"):
        I.from_folder(tmp_path)
    assert len(I.from_folder(tmp_path, layout="flat")) == 2
    assert I.from_folder(tmp_path, layout="classes").classes == ["cls"]
    with pytest.raises(ValueError, match="layout"):
        I.from_folder(tmp_path, layout="deep")
    with pytest.raises(FileNotFoundError):
        I.from_folder(tmp_path / "nope")


def test_read_image_list(tmp_path):
    root = tmp_path / "root"
    write_images(root / "sub dir", 2, seed=6)
    lst = tmp_path / "test_imagenet.txt"
    lst.write_text("# OpenOOD style\nsub dir/img0000.png 3\n\nsub dir/img0001.jpg  -1\n"
                   "sub dir/img0001.jpg\n")
    il = I.read_image_list(lst, root=root)
    assert il.paths == [str(root / "sub dir/img0000.png"), str(root / "sub dir/img0001.jpg"),
                        str(root / "sub dir/img0001.jpg")]
    assert il.labels.tolist() == [3, -1, -1]
    # default root: the list's folder
    assert I.read_image_list(lst).paths[0] == str(tmp_path / "sub dir/img0000.png")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="names no image"):
        I.read_image_list(tmp_path / "empty.txt")
    assert isinstance(I.as_image_list(lst), I.ImageList)


def test_from_paths_checks(tmp_path):
    with pytest.raises(TypeError, match="single path"):
        I.from_paths(str(tmp_path))
    with pytest.raises(TypeError, match="item 1"):
        I.from_paths(["a.png", 3])
    with pytest.raises(ValueError, match="labels"):
        I.ImageList(["a", "b"], labels=[1])
    assert I.from_paths(["x.png"], root="/r").paths == ["/r/x.png"]


@pytest.mark.parametrize("workers", [0, 2])
def test_iter_batches_order_and_failures(tmp_path, workers):
    good = write_images(tmp_path, 9, seed=7)
    bad = _corrupt(tmp_path)
    missing = tmp_path / "missing.png"
    paths = [str(p) for p in good[:4]] + [str(bad[0])] + [str(p) for p in good[4:]] + \
        [str(missing), str(bad[1]), str(bad[2])]
    seen, ok_rows, failures = [], [], {}
    pre = FakePreprocess()
    for idx, ok, x, fails in I.iter_batches(paths, pre, batch_size=4, num_workers=workers):
        seen += idx.tolist()
        ok_rows += ok.tolist()
        if x is not None:
            assert x.shape == (len(ok), 3, 32, 32)
            for j, r in enumerate(ok):  # rows are the images of those paths
                ref = pre(I.decode(paths[r]))
                assert torch.equal(x[j], ref)
        failures.update(dict(fails))
    assert seen == list(range(len(paths)))
    assert sorted(failures) == [4, 10, 11, 12]
    assert ok_rows == [i for i in range(len(paths)) if i not in failures]
    assert "UnidentifiedImageError" in failures[4]
    assert "No such file" in failures[10] or "FileNotFoundError" in failures[10]
    assert "truncated" in failures[11].lower() or "OSError" in failures[11]


def test_report_failures(tmp_path):
    fails = [I.ImageFailure(i, f"/p/{i}.png", "OSError: broken") for i in range(25)]
    with pytest.warns(I.UnreadableImageWarning, match=r"(?s)25 of 100.*/p/0.png: OSError.*5 more"):
        I.report_failures(fails, "skip", total=100)
    with pytest.raises(I.UnreadableImageError, match="25 of 100") as ei:
        I.report_failures(fails, "raise", total=100)
    assert ei.value.failures == fails
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        I.report_failures([], "skip", total=3)
    with pytest.raises(ValueError, match="on_error"):
        I.report_failures(fails, "ignore", total=3)
    il = I.from_paths([f"/p/{i}.png" for i in range(30)], labels=np.arange(30))
    assert il.drop(fails).labels.tolist() == list(range(25, 30))
