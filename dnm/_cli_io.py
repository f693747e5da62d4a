"""File input and output of the ``dnm`` command line: arrays, score files, masks, phrases.

Arrays are read with ``numpy.load(allow_pickle=False)``.  An array argument is a ``.npy``
file, or an ``.npz`` archive: ``file.npz`` if it holds one array, else ``file.npz:key``.
Problems are :class:`UsageError` s, which the command line prints as one line.
"""
from __future__ import annotations

import csv
import json
import os
import re
import sys

import numpy as np

from ._io import sniff
from ._validate import check_mask


class UsageError(Exception):
    """A user error: reported as one line ``dnm: error: ...``, exit status 2."""


_NPZ_KEY = re.compile(r"^(.*\.npz):([^/\\:]+)$", re.IGNORECASE)


def load_array(spec, what, key=None):
    """An array from ``file.npy``, ``file.npz`` (one array, or ``key``) or ``file.npz:key``."""
    spec = os.fspath(spec)
    m = _NPZ_KEY.match(spec)
    path = spec
    if m and not os.path.exists(spec):
        path, key2 = m.group(1), m.group(2)
        if key is not None and key != key2:
            raise UsageError(f"{what}: two keys given ({key2!r} in the path and --key {key!r})")
        key = key2
    if not os.path.exists(path):
        raise UsageError(f"{what}: file not found: {path}")
    if os.path.isdir(path):
        raise UsageError(f"{what}: {path} is a directory, expected a .npy or .npz file")
    kind, desc = sniff(path)
    if kind is None:
        raise UsageError(f"{what}: {path} is not a NumPy file (.npy or .npz): {desc}")
    try:
        obj = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UsageError(f"{what}: cannot read {path} as .npy/.npz ({one_line(exc)})") from None
    if isinstance(obj, np.lib.npyio.NpzFile):
        with obj:
            keys = list(obj.files)
            if key is None:
                if len(keys) != 1:
                    raise UsageError(f"{what}: {path} holds {len(keys)} arrays {keys}; choose one "
                                     f"with {path}:KEY" + (" or --key" if what == "--images" else ""))
                key = keys[0]
            if key not in keys:
                raise UsageError(f"{what}: {path} has no array {key!r}; available: {keys}")
            try:
                arr = obj[key]
            except ValueError as exc:
                raise UsageError(f"{what}: cannot read {path}:{key} ({one_line(exc)})") from None
    else:
        if key is not None:
            raise UsageError(f"{what}: a key ({key!r}) was given but {path} is a .npy file")
        arr = obj
    return arr


def matrix(spec, what, key=None):
    a = load_array(spec, what, key)
    if a.ndim != 2:
        raise UsageError(f"{what}: expected a 2-D array (rows, features), got shape {a.shape}")
    if a.dtype.kind != "f":
        raise UsageError(f"{what}: expected floating-point data, got dtype {a.dtype}")
    return a


def load_scores(spec, what):
    """1-D scores from .npy/.npz, a CSV written by ``dnm score`` (column ``score``, or the
    only column) or a JSON written by ``dnm score`` (key ``scores``, or a plain list)."""
    spec = os.fspath(spec)
    ext = os.path.splitext(spec)[1].lower()
    if ext in (".csv", ".json"):
        if not os.path.isfile(spec):
            raise UsageError(f"{what}: file not found: {spec}")
        try:
            if ext == ".json":
                with open(spec, encoding="utf-8") as f:
                    obj = json.load(f)
                if isinstance(obj, dict):
                    if "scores" not in obj:
                        raise UsageError(f"{what}: {spec} has no 'scores' list")
                    obj = obj["scores"]
                a = np.asarray(obj, dtype=np.float64)
            else:
                with open(spec, newline="", encoding="utf-8") as f:
                    rows = list(csv.reader(f))
                if not rows:
                    raise UsageError(f"{what}: {spec} is empty")
                head = rows[0]
                try:
                    float(head[-1])
                    col, body = len(head) - 1, rows
                except ValueError:
                    col = head.index("score") if "score" in head else len(head) - 1
                    body = rows[1:]
                a = np.asarray([float(r[col]) for r in body if r], dtype=np.float64)
        except (ValueError, TypeError, IndexError, UnicodeDecodeError) as exc:
            raise UsageError(f"{what}: cannot read scores from {spec} ({one_line(exc)})") from None
    else:
        a = load_array(spec, what)
        if a.ndim == 2 and 1 in a.shape:
            a = a.reshape(-1)
        if a.dtype.kind not in "fiu":
            raise UsageError(f"{what}: expected numeric scores, got dtype {a.dtype}")
    if a.ndim != 1:
        raise UsageError(f"{what}: expected a 1-D array of scores, got shape {a.shape}")
    if a.size == 0:
        raise UsageError(f"{what}: no scores in {spec}")
    return a.astype(np.float64, copy=False)


def out_kind(path, allowed, what):
    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    if ext not in allowed:
        raise UsageError(f"{what}: cannot tell the format of {path!r} from its extension; "
                         f"use one of {', '.join('.' + a for a in allowed)}")
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise UsageError(f"{what}: directory {d} does not exist")
    return ext


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, allow_nan=False)
        f.write("\n")


def one_line(exc):
    msg = str(exc)
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        msg = str(exc.args[0])
    if isinstance(exc, FileNotFoundError) and exc.filename:
        msg = f"file not found: {exc.filename}"
    return " ".join(msg.split()) or type(exc).__name__


def say(args, *msg):
    if not getattr(args, "quiet", False):
        print(*msg, file=sys.stderr, flush=True)


def is_adjective(args, n):
    if args.is_adjective is not None:
        m = load_array(args.is_adjective, "--is-adjective")
        return check_mask(m, n, "--is-adjective"), None
    if args.adjectives_from is not None:
        from . import corpus as _corpus

        src = args.adjectives_from
        if os.path.splitext(src)[1].lower() == ".txt" or os.path.sep in src:
            raise UsageError("--adjectives-from: expected a corpus preset name (dnm, neglabel, "
                             f"csp), got {src!r}; for your own corpus pass --is-adjective MASK.npy")
        c = _corpus.load(src)
        if len(c) != n:
            raise UsageError(f"--adjectives-from {src}: the corpus has {len(c)} phrases but "
                             f"--candidates has {n} rows; encode the corpus in its order "
                             "(dnm.corpus.load(...).prompts())")
        return np.asarray(c.is_adjective, dtype=bool), c
    if args.all_nouns:
        return np.zeros(n, dtype=bool), None
    raise UsageError("one of --is-adjective MASK.npy, --adjectives-from PRESET or --all-nouns "
                     "is required (nouns and adjectives are selected separately)")


def phrases(args, corpus, n):
    if args.phrases is not None:
        if not os.path.isfile(args.phrases):
            raise UsageError(f"--phrases: file not found: {args.phrases}")
        with open(args.phrases, encoding="utf-8") as f:
            lines = [ln.rstrip("\n") for ln in f]
        while lines and not lines[-1].strip():
            lines.pop()
        if len(lines) != n:
            raise UsageError(f"--phrases: {len(lines)} lines for {n} candidates")
        return lines
    if corpus is not None:
        return list(corpus.phrases)
    return None


