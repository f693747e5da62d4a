"""Images from disk: folders, lists of paths, OpenOOD-style image lists; decoding in a DataLoader.

Three ways to name the images of a dataset, all giving an :class:`ImageList` (paths, optional
integer labels, optional class names)::

    dnm.images.from_folder("data/iNaturalist")          # the image files of one folder
    dnm.images.from_folder("data/imagenet/val")         # or class subfolders (label = sorted index)
    dnm.images.from_paths(["a.jpg", "b.png"])
    dnm.images.read_image_list("benchmark_imglist/imagenet/test_imagenet.txt", root="images/")

**Order.** The rows of everything computed from an ImageList (decoded batches, encoded features)
follow the order of its paths: a folder is listed in sorted file-name order (class subfolders in
sorted folder-name order, files sorted within each), a list of paths or an image-list file keeps
the order given.  When unreadable files are skipped, the remaining rows keep that order.

**Unreadable files** (missing, not an image, truncated, corrupt) never crash a run halfway: every
decoding failure is recorded as an :class:`ImageFailure` (index, path, reason).  The callers then
skip those rows with a :class:`UnreadableImageWarning` naming each file, or refuse with an
:class:`UnreadableImageError` listing every one of them (``on_error="skip"`` / ``"raise"``).

Decoding uses Pillow (``pip install pillow``, or the ``images`` extra) inside a ``torch.utils.data.DataLoader`` with
``num_workers`` worker processes; images are converted to RGB before the model's transform.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "ImageList", "ImageFailure", "UnreadableImageError",
           "UnreadableImageWarning", "from_folder", "from_paths", "read_image_list",
           "as_image_list", "decode", "iter_batches", "report_failures"]

#: File name endings taken as images when a folder is listed (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm", ".pbm")
_LAYOUTS = ("auto", "flat", "classes")
_ON_ERROR = ("skip", "raise")


class UnreadableImageError(ValueError):
    """Some images could not be decoded; ``failures`` lists them (:class:`ImageFailure`)."""

    def __init__(self, message, failures):
        super().__init__(message)
        self.failures = list(failures)


class UnreadableImageWarning(UserWarning):
    """Some images could not be decoded and were skipped (the message names each file)."""


@dataclass(frozen=True)
class ImageFailure:
    """One unreadable image: its row in the ImageList, its path, and why it failed."""

    index: int
    path: str
    reason: str


@dataclass(frozen=True, eq=False)
class ImageList:
    """Image paths in row order, with optional integer ``labels`` and ``classes`` names."""

    paths: list
    labels: Any = None
    classes: Any = None

    def __post_init__(self):
        paths = [os.fspath(p) for p in self.paths]
        labels = self.labels
        if labels is not None:
            labels = np.array(labels, dtype=np.int64).reshape(-1)
            if labels.shape[0] != len(paths):
                raise ValueError(f"labels: {labels.shape[0]} labels for {len(paths)} paths")
            labels.setflags(write=False)
        classes = None if self.classes is None else [str(c) for c in self.classes]
        object.__setattr__(self, "paths", paths)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "classes", classes)

    def __len__(self):
        return len(self.paths)

    def __iter__(self):
        return iter(self.paths)

    def __getitem__(self, item):
        """An int gives a path; a slice, an index array or a boolean mask gives an ImageList."""
        if isinstance(item, (int, np.integer)):
            return self.paths[item]
        idx = np.atleast_1d(np.arange(len(self))[item])
        return ImageList([self.paths[i] for i in idx],
                         None if self.labels is None else self.labels[idx], self.classes)

    def __repr__(self):
        extra = "" if self.classes is None else f", {len(self.classes)} classes"
        return f"ImageList({len(self)} images{extra})"

    def drop(self, failures: Iterable[ImageFailure]) -> "ImageList":
        """This list without the rows of ``failures`` (e.g. those returned by an encoder)."""
        bad = {f.index for f in failures}
        keep = np.array([i not in bad for i in range(len(self))], dtype=bool)
        return self[keep]


def _check_extensions(extensions):
    if isinstance(extensions, str):
        extensions = [extensions]
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    if not exts:
        raise ValueError("extensions: no file extension given")
    return exts


def _image_files(folder: Path, exts) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts),
                  key=lambda p: p.name)


def from_folder(folder, *, layout="auto", extensions=IMAGE_EXTENSIONS) -> ImageList:
    """The images of a folder, in sorted file-name order.

    ``layout="flat"``: the image files directly in ``folder`` (no labels).  ``"classes"``: one
    subfolder per class (ImageFolder style): label = index of the subfolder in sorted name order,
    ``classes`` = the subfolder names; files sorted within each class.  ``"auto"`` (default):
    ``"flat"`` if ``folder`` holds image files, else ``"classes"`` if its subfolders do; a folder
    with both image files and class subfolders is refused (say which layout you mean).
    Only files whose name ends in one of ``extensions`` are listed; subfolders deeper than one
    level are not searched.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"folder: directory {str(root)!r} not found")
    if layout not in _LAYOUTS:
        raise ValueError(f"layout: expected one of {_LAYOUTS}, got {layout!r}")
    exts = _check_extensions(extensions)
    flat = _image_files(root, exts)
    subdirs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name)
    per_class = [(d.name, _image_files(d, exts)) for d in subdirs]
    per_class = [(name, files) for name, files in per_class if files]
    if layout == "auto":
        if flat and per_class:
            raise ValueError(
                f"folder: {str(root)!r} holds {len(flat)} image files and {len(per_class)} "
                "subfolders with images; pass layout='flat' (the files only) or "
                "layout='classes' (the subfolders only)")
        layout = "flat" if flat or not per_class else "classes"
    if layout == "flat":
        if not flat:
            raise ValueError(f"folder: no image files ({', '.join(exts)}) in {str(root)!r}")
        return ImageList([str(p) for p in flat])
    if not per_class:
        raise ValueError(f"folder: no subfolder of {str(root)!r} holds image files "
                         f"({', '.join(exts)})")
    paths, labels = [], []
    for label, (_, files) in enumerate(per_class):
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    return ImageList(paths, labels, [name for name, _ in per_class])


def from_paths(paths: Sequence, labels=None, *, root=None) -> ImageList:
    """An ImageList from a list of paths (kept in the given order), optionally under ``root``."""
    if isinstance(paths, (str, os.PathLike)):
        raise TypeError("paths: expected a list of paths, got a single path "
                        "(use from_folder for a folder, read_image_list for a list file)")
    out = []
    for i, p in enumerate(paths):
        if not isinstance(p, (str, os.PathLike)):
            raise TypeError(f"paths: item {i} is not a path: {p!r}")
        p = os.fspath(p)
        if not p:
            raise ValueError(f"paths: item {i} is empty")
        out.append(os.path.join(os.fspath(root), p) if root is not None else p)
    if not out:
        raise ValueError("paths: no image path given")
    return ImageList(out, labels)


def read_image_list(path, root=None, *, missing_label=-1) -> ImageList:
    """An OpenOOD-style image-list file: one image a line, ``<path> <label>``.

    Each non-blank line is split at its last run of whitespace: when the last field is an
    integer it is the label and the rest (which may contain spaces) the path; otherwise the
    whole line is the path and its label is ``missing_label``.  Relative paths are taken
    under ``root`` (default: the list file's folder); lines starting with ``#`` are comments.
    Rows keep the file's order.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"path: image-list file {str(p)!r} not found")
    base = Path(root) if root is not None else p.parent
    if root is not None and not base.is_dir():
        raise FileNotFoundError(f"root: directory {str(base)!r} not found")
    paths, labels = [], []
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        label = missing_label
        if len(parts) == 2:
            try:
                label = int(parts[1])
                line = parts[0]
            except ValueError:
                pass
        paths.append(str(base / line))
        labels.append(label)
    if not paths:
        raise ValueError(f"path: image-list file {str(p)!r} names no image")
    return ImageList(paths, labels)


def as_image_list(images) -> ImageList:
    """An ImageList from an ImageList, a folder, an image-list file (.txt) or a list of paths."""
    if isinstance(images, ImageList):
        return images
    if isinstance(images, (str, os.PathLike)):
        p = Path(images)
        if p.is_dir():
            return from_folder(p)
        if p.is_file() and p.suffix.lower() == ".txt":
            return read_image_list(p)
        raise FileNotFoundError(f"images: {str(p)!r} is neither a folder nor an image-list "
                                "(.txt) file")
    if isinstance(images, (list, tuple)):
        return from_paths(images)
    raise TypeError("images: expected an ImageList, a folder, an image-list file or a list of "
                    f"paths, got {type(images).__name__}")


# ---------------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------------

def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("reading images needs Pillow, which is not installed: pip install "
                          "pillow (or pip install '.[images]' in the dnm source folder)") from None
    return Image


def decode(path):
    """Open ``path`` with Pillow, decode it fully and convert it to RGB (raises on failure)."""
    Image = _pil()
    with Image.open(path) as im:
        im.load()
        return im.convert("RGB")


def _reason(exc: BaseException) -> str:
    msg = str(exc).strip()
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


class _Dataset:
    """Map-style dataset: index -> (index, transformed tensor or None, failure reason or None).

    Only the decoding is guarded: an error in ``transform`` on a decoded image is a bug of the
    transform and propagates.
    """

    def __init__(self, paths, transform):
        self.paths = list(paths)
        self.transform = transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            img = decode(self.paths[i])
        except Exception as exc:  # noqa: BLE001 - any decoding error is reported, not raised
            return i, None, _reason(exc)
        x = self.transform(img) if self.transform is not None else img
        return i, x, None


def _collate(items):
    """(indices, stacked tensor of the decoded images or None, [(index, reason)])."""
    import torch

    idx = np.array([it[0] for it in items], dtype=np.int64)
    good = [it for it in items if it[2] is None]
    bad = [(it[0], it[2]) for it in items if it[2] is not None]
    if not good:
        return idx, np.zeros(0, dtype=np.int64), None, bad
    xs = [it[1] if isinstance(it[1], torch.Tensor) else torch.as_tensor(np.asarray(it[1]))
          for it in good]
    return idx, np.array([it[0] for it in good], dtype=np.int64), torch.stack(xs), bad


def iter_batches(paths, transform: Callable | None, *, batch_size=64, num_workers=0,
                 start=0) -> Iterator[tuple]:
    """Decode ``paths[start:]`` in order, ``batch_size`` at a time, in ``num_workers`` workers.

    Yields ``(indices, ok_indices, tensor, failures)``: the rows of the batch, the rows that
    decoded, their stacked transformed images (None when none decoded) and ``(row, reason)``
    pairs for the others.  ``transform`` maps a PIL RGB image to a tensor (e.g. open_clip's
    ``preprocess``).  Needs torch and Pillow.
    """
    try:
        import torch.utils.data as tud
    except ImportError:
        raise ImportError("decoding images in a DataLoader needs torch") from None
    _pil()
    if int(batch_size) < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    if int(num_workers) < 0:
        raise ValueError(f"num_workers: must be >= 0, got {num_workers}")
    ds = _Dataset(paths, transform)
    sub = ds if start == 0 else tud.Subset(ds, range(int(start), len(ds)))
    loader = tud.DataLoader(sub, batch_size=int(batch_size), shuffle=False,
                            num_workers=int(num_workers), collate_fn=_collate)
    yield from loader


def report_failures(failures: Sequence[ImageFailure], on_error: str, *, total: int,
                    stacklevel: int = 3, limit: int = 20) -> None:
    """Warn (``on_error="skip"``) or raise UnreadableImageError (``"raise"``) about failures."""
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error: expected one of {_ON_ERROR}, got {on_error!r}")
    if not failures:
        return
    lines = [f"  {f.path}: {f.reason}" for f in failures[:limit]]
    if len(failures) > limit:
        lines.append(f"  ... and {len(failures) - limit} more")
    listing = "\n".join(lines)
    if on_error == "raise":
        raise UnreadableImageError(
            f"{len(failures)} of {total} images could not be read (on_error='raise'; pass "
            f"on_error='skip' to drop them):\n{listing}", failures)
    warnings.warn(f"skipped {len(failures)} of {total} images that could not be read:\n{listing}",
                  UnreadableImageWarning, stacklevel=stacklevel)
