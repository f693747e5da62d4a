"""The official repositories' ``.pt`` / ``.pth`` dumps, read safely into dnm arrays and masks.

Structures recognised (``torch.save`` of a dict; tensors on any device, any float dtype):

``neg_dump_new_<backbone>.pth`` (DNM code)
    ``pos_emb`` (C, D) raw ID label features (template mean), ``neg_emb_selected`` (M, D) raw
    selected negatives (nouns first, then adjectives), ``noun_length`` and ``adj_length`` (ints:
    the sizes of the noun and adjective *candidate pools* the selection was made from, not of
    the selection).  -> :attr:`Dump.id_labels`, :attr:`Dump.negatives`.
``pos_dump_new_ens.pth`` (DNM code)
    ``pos_emb`` (C, T, D): raw ID label features per template.  -> :attr:`Dump.id_labels_per_template`
    and :attr:`Dump.id_labels` (their raw mean over templates, as that code uses them).
``neg_dump.pth`` (NegLabel / CSP code)
    ``neg_emb`` (N, D) candidate features (unit-normalised by that code: DNM's mining needs raw
    ones), ``noun_length``, ``adj_length`` with N = noun_length + adj_length, nouns first.
    -> :attr:`Dump.candidates` and :attr:`Dump.is_adjective`.
``CLIP_features_<backbone>.pth`` (DNM code)
    dataset name -> (N_i, D) image features, the ID set first (``torch.save`` keeps the
    insertion order); at least two datasets.  -> :attr:`Dump.features`.

Loading never unpickles arbitrary objects: ``torch.load(weights_only=True)`` accepts only
tensors and plain containers, so a pickle that would run code (or instantiate any class) is
refused before anything runs, with a :class:`DumpError` (a ``ValueError``).  Unknown key sets,
wrong shapes, non-float tensors, inconsistent lengths or dimensions are refused with a
DumpError naming the key and what was expected.  :func:`read_array` reads one array from any
of ``.npy`` / ``.npz`` / ``.pt`` / ``.pth`` (for command-line inputs).
"""
from __future__ import annotations

import numbers
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

__all__ = ["Dump", "DumpError", "KeyChoiceError", "DUMP_KINDS", "load_torch", "read_dump",
           "read_array", "read_features", "file_format", "split_key"]

#: Dump kinds recognised by :func:`read_dump`.
DUMP_KINDS = ("dnm_negatives", "dnm_positives", "neglabel_negatives", "features")

_STRUCTURES = (
    "DNM neg_dump_new_*.pth {pos_emb, neg_emb_selected, noun_length, adj_length}; "
    "DNM pos_dump_new_ens.pth {pos_emb (C, T, D)}; NegLabel/CSP neg_dump.pth "
    "{neg_emb, noun_length, adj_length}; CLIP_features_*.pth {dataset name: (N, D) features}")


class DumpError(ValueError):
    """A .pt/.pth file is unsafe, unreadable, or not one of the recognised structures."""


@dataclass(frozen=True, eq=False)
class Dump:
    """The arrays of one dump; fields not held by its kind are None."""

    kind: str
    path: str
    id_labels: Optional[np.ndarray] = None
    id_labels_per_template: Optional[np.ndarray] = None
    negatives: Optional[np.ndarray] = None
    candidates: Optional[np.ndarray] = None
    is_adjective: Optional[np.ndarray] = None
    noun_length: Optional[int] = None
    adj_length: Optional[int] = None
    features: Optional[dict] = None
    extra_keys: tuple = field(default_factory=tuple)

    def __repr__(self):
        held = [f"{k}{tuple(getattr(self, k).shape)}" for k in
                ("id_labels", "id_labels_per_template", "negatives", "candidates")
                if getattr(self, k) is not None]
        if self.features is not None:
            held.append("features{" + ", ".join(f"{k}: {v.shape}" for k, v in
                                                 self.features.items()) + "}")
        return f"Dump({self.kind!r}, {', '.join(held)})"


def load_torch(path):
    """``torch.load(path, map_location="cpu", weights_only=True)`` with DumpError on failure."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"path: {str(p)!r} not found")
    try:
        import torch
    except ImportError:
        raise ImportError(f"reading {p.name} needs torch (pip install torch)") from None
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():
            # a plain pickle.dump file: torch notes its protocol; the refusal below says more
            warnings.filterwarnings("ignore", message="Detected pickle protocol",
                                    category=UserWarning)
            # our own handle: torch leaves its own open when a damaged archive fails to open
            with open(p, "rb") as fh:
                return torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = [ln.strip() for ln in str(exc).splitlines() if "Unsupported" in ln
                  or "GLOBAL" in ln]
        raise DumpError(
            f"{p.name}: refused: the file holds objects other than tensors and plain "
            "containers (numbers, strings, lists, dicts), which dnm does not unpickle since "
            "a pickle can run code" + (f" ({detail[0]})" if detail else "")
            + "; re-save it as a dict of tensors") from None
    except Exception as exc:  # a hostile file can make torch's reader fail in any way
        # (RuntimeError, EOFError, IndexError, struct.error, ...): one DumpError for all
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DumpError(f"{p.name}: not a readable torch file ({type(exc).__name__}: {msg})"
                        ) from None


def _plain(value, name, where):
    """A torch tensor (or ndarray) -> ndarray (bfloat16 as float32), else DumpError."""
    v = value
    if hasattr(v, "detach"):
        v = v.detach().cpu()
        if str(v.dtype) == "torch.bfloat16":
            v = v.float()
        v = v.numpy()
    if not isinstance(v, np.ndarray):
        raise DumpError(f"{where}: {name} is a {type(value).__name__}, expected a tensor")
    return v


def _array(value, name, where, ndim):
    """A torch tensor (or ndarray) -> float ndarray with ``ndim`` dims, else DumpError."""
    v = _plain(value, name, where)
    if v.dtype.kind != "f":
        raise DumpError(f"{where}: {name} has dtype {v.dtype}, expected floating-point data")
    if v.ndim not in ((ndim,) if isinstance(ndim, int) else ndim):
        raise DumpError(f"{where}: {name} has shape {tuple(v.shape)}, expected "
                        f"{ndim if isinstance(ndim, int) else ' or '.join(map(str, ndim))}-D")
    if 0 in v.shape:
        raise DumpError(f"{where}: {name} is empty (shape {tuple(v.shape)})")
    return np.ascontiguousarray(v)


def _count(value, name, where):
    v = value
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
        raise DumpError(f"{where}: {name} is {value!r}, expected a non-negative int")
    return int(v)


def read_dump(path) -> Dump:
    """Read one of the recognised dumps (see the module docstring); DumpError otherwise."""
    obj = load_torch(path)
    where = Path(path).name
    if not isinstance(obj, dict):
        raise DumpError(f"{where}: holds a {type(obj).__name__}, expected a dict; recognised "
                        f"structures: {_STRUCTURES}")
    keys = set(obj)
    if "neg_emb_selected" in keys:
        return _dnm_negatives(obj, where, path)
    if "neg_emb" in keys:
        return _neglabel_negatives(obj, where, path)
    if keys == {"pos_emb"}:
        return _dnm_positives(obj, where, path)
    if len(keys) >= 2 and all(isinstance(k, str) for k in keys) and not keys & {
            "pos_emb", "noun_length", "adj_length"}:
        return Dump("features", os.fspath(path), features=_features(obj, where))
    raise DumpError(f"{where}: keys {sorted(map(str, keys))} match no recognised structure: "
                    f"{_STRUCTURES}")


def _require(obj, where, needed):
    missing = [k for k in needed if k not in obj]
    if missing:
        raise DumpError(f"{where}: missing key(s) {missing} (has {sorted(map(str, obj))}); "
                        f"recognised structures: {_STRUCTURES}")
    return tuple(sorted(str(k) for k in obj if k not in needed))


def _same_dim(where, *named):
    dims = {n: a.shape[-1] for n, a in named}
    if len(set(dims.values())) > 1:
        raise DumpError(f"{where}: feature dimensions differ: {dims}")


def _dnm_negatives(obj, where, path):
    extra = _require(obj, where, ("pos_emb", "neg_emb_selected", "noun_length", "adj_length"))
    pos = _array(obj["pos_emb"], "pos_emb", where, 2)
    neg = _array(obj["neg_emb_selected"], "neg_emb_selected", where, 2)
    nl = _count(obj["noun_length"], "noun_length", where)
    al = _count(obj["adj_length"], "adj_length", where)
    _same_dim(where, ("pos_emb", pos), ("neg_emb_selected", neg))
    if neg.shape[0] > nl + al:
        raise DumpError(f"{where}: neg_emb_selected has {neg.shape[0]} rows, more than the "
                        f"noun_length + adj_length = {nl + al} candidates it was selected from")
    return Dump("dnm_negatives", os.fspath(path), id_labels=pos, negatives=neg,
                noun_length=nl, adj_length=al, extra_keys=extra)


def _dnm_positives(obj, where, path):
    pos = _array(obj["pos_emb"], "pos_emb", where, (2, 3))
    if pos.ndim == 2:
        return Dump("dnm_positives", os.fspath(path), id_labels=pos)
    mean = pos.astype(np.float64).mean(axis=1).astype(pos.dtype)
    return Dump("dnm_positives", os.fspath(path), id_labels=mean, id_labels_per_template=pos)


def _neglabel_negatives(obj, where, path):
    extra = _require(obj, where, ("neg_emb", "noun_length", "adj_length"))
    neg = _array(obj["neg_emb"], "neg_emb", where, 2)
    nl = _count(obj["noun_length"], "noun_length", where)
    al = _count(obj["adj_length"], "adj_length", where)
    if neg.shape[0] != nl + al:
        raise DumpError(f"{where}: neg_emb has {neg.shape[0]} rows but noun_length + "
                        f"adj_length = {nl} + {al} = {nl + al}")
    mask = np.zeros(neg.shape[0], dtype=bool)
    mask[nl:] = True
    return Dump("neglabel_negatives", os.fspath(path), candidates=neg, is_adjective=mask,
                noun_length=nl, adj_length=al, extra_keys=extra)


def _features(obj, where):
    out = {k: _array(v, f"features[{k!r}]", where, 2) for k, v in obj.items()}
    _same_dim(where, *out.items())
    return out


def read_features(path) -> dict:
    """``CLIP_features_*.pth`` -> ``{dataset name: (N, D) array}`` in the file's order."""
    d = read_dump(path)
    if d.kind != "features":
        raise DumpError(f"{Path(path).name}: is a {d.kind} dump, not a features dump "
                        "(dataset name -> (N, D) features)")
    return d.features


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def file_format(path) -> Optional[str]:
    """What a file holds, from its first bytes (not its name): ``"npy"``, ``"npz"``, ``"torch"``
    (a ``torch.save`` zip archive, or a pickle as older torch versions and plain
    ``pickle.dump`` write) or None (none of these)."""
    p = Path(path)
    with open(p, "rb") as fh:
        head = fh.read(8)
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if head.startswith(_ZIP_MAGIC):
        import zipfile

        try:
            with zipfile.ZipFile(p) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return "npz"  # a damaged archive: numpy says what is wrong with it
        # torch.save writes <archive>/data.pkl (+ data/0, ..., version); numpy savez *.npy
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "torch"
        return "npz"
    if head[:1] == b"\x80":  # pickle protocol 2+: legacy torch.save or pickle.dump
        return "torch"
    return None


def split_key(spec):
    """``("file.npz", "KEY")`` for ``file.npz:KEY`` (also ``.pt`` / ``.pth``, and ``::``), unless
    a file of that full name exists; else ``(spec, None)``."""
    s = os.fspath(spec)
    m = _KEY_SPEC.match(s)
    if m and not os.path.exists(s):
        return m.group(1), m.group(2)
    return s, None


_KEY_SPEC = re.compile(r"^(.+\.(?:npz|pt|pth))::?([^:]+)$", re.IGNORECASE)


class KeyChoiceError(DumpError):
    """No key (or an unknown one) given for a file holding several arrays; ``keys`` lists them."""

    def __init__(self, message, keys):
        super().__init__(message)
        self.keys = list(keys)


def read_array(path, key=None, *, ndim=2, floating=True) -> np.ndarray:
    """One array from a ``.npy`` file, an ``.npz`` archive (``key``, or its only member) or a
    torch file (a tensor, or ``key`` of a dict of tensors); never unpickles.

    The format is told from the file's content, not its name.  By default the array must be
    2-D floating-point (features); ``ndim=None`` / ``floating=False`` lift these checks (masks,
    scores).  Every problem is a ValueError (:class:`DumpError` for torch files,
    :class:`KeyChoiceError` for a missing or unknown key), FileNotFoundError for a missing file.
    """
    p = Path(path)
    where = p.name
    if not p.is_file():
        raise FileNotFoundError(f"path: {str(p)!r} not found")
    kind = file_format(p)

    def check(v, name):
        if ndim == 2 and floating:
            return _array(v, name, where, 2)
        a = _plain(v, name, where)
        if ndim is not None and a.ndim != ndim:
            raise DumpError(f"{where}: {name} has shape {tuple(a.shape)}, expected {ndim}-D")
        if floating and a.dtype.kind != "f":
            raise DumpError(f"{where}: {name} has dtype {a.dtype}, expected floating-point data")
        return a

    if kind == "npy":
        if key is not None:
            raise ValueError(f"key: {where} is a .npy file holding one array; no key applies")
        try:
            with open(p, "rb") as fh:
                return check(np.load(fh, allow_pickle=False), "the array")
        except (OSError, EOFError) as exc:
            raise ValueError(f"{where}: not a readable .npy file ({exc})") from None
    if kind == "npz":
        import zipfile

        try:  # our own handle: numpy leaks its own when a damaged archive fails to open
            with open(p, "rb") as fh, np.load(fh, allow_pickle=False) as z:
                names = list(z.files)
                if key is None:
                    if len(names) != 1:
                        raise KeyChoiceError(f"key: {where} holds {len(names)} arrays {names}; "
                                             "say which one", names)
                    key = names[0]
                if key not in names:
                    raise KeyChoiceError(f"key: {key!r} not in {where} (holds {names})", names)
                return check(z[key], key)
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{where}: not a readable .npz archive ({exc})") from None
    if kind == "torch":
        obj = load_torch(p)
        if isinstance(obj, dict):
            names = [str(k) for k in obj]
            if key is None:
                if len(obj) != 1:
                    raise KeyChoiceError(f"key: {where} is a torch file holding a dict of "
                                         f"{len(names)} entries {names}; say which one", names)
                key = next(iter(obj))
            if key not in obj:
                raise KeyChoiceError(f"key: {key!r} not in {where} (a torch file holding "
                                     f"{names})", names)
            return check(obj[key], str(key))
        if key is not None:
            raise ValueError(f"key: {where} is a torch file holding one "
                             f"{'tensor' if hasattr(obj, 'detach') else type(obj).__name__}; "
                             "no key applies")
        return check(obj, "the tensor")
    raise ValueError(f"{where}: not a NumPy or torch file; expected a .npy, .npz, .pt or .pth "
                     "file (numpy.save, numpy.savez, torch.save)")
