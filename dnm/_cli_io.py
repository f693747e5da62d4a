"""File input and output of the ``dnm`` command line: arrays, score files, masks, phrases.

Arrays are read with ``numpy.load(allow_pickle=False)``.  An array argument is a ``.npy``
file, or an ``.npz`` archive: ``file.npz`` if it holds one array, else ``file.npz:key``; or a
torch file (``.pt`` / ``.pth``, or any file ``torch.save`` wrote): a tensor, or a dict of tensors
with ``file.pt:key``, read by :func:`dnm.dumps.read_array` (``weights_only``, nothing unpickled).
Problems are :class:`UsageError` s, which the command line prints as one line.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import secrets
import sys
import warnings
import zipfile
import zlib

import numpy as np

from ._io import sniff, strict_json
from ._validate import check_mask


class UsageError(Exception):
    """A user error: reported as one line ``dnm: error: ...``, exit status 2."""


# what numpy.load raises on a damaged file (a truncated or corrupt .npz member included)
_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


def load_array(spec, what, key=None):
    """An array from ``file.npy``, ``file.npz`` (one array, or ``key``), ``file.npz:KEY``, or a
    torch file (``.pt`` / ``.pth``: a tensor, or ``key`` / ``file.pt:KEY`` of a dict of tensors;
    read by :func:`dnm.dumps.read_array`, never unpickled)."""
    from . import dumps as _dumps

    path, key2 = _dumps.split_key(spec)
    if key2 is not None:
        if key is not None and key != key2:
            raise UsageError(f"{what}: two keys given ({key2!r} in the path and --key {key!r})")
        key = key2
    if not os.path.exists(path):
        raise UsageError(f"{what}: file not found: {path}")
    if os.path.isdir(path):
        raise UsageError(f"{what}: {path} is a directory, expected a .npy, .npz, .pt or .pth "
                         "file")
    if _is_torch_input(path):
        return _torch_array(path, what, key)
    kind, desc = sniff(path)
    if kind is None:
        raise UsageError(f"{what}: {path} is not a NumPy file (.npy or .npz): {desc}; nor a "
                         "torch file (.pt, .pth)")
    with open(path, "rb") as fh:  # our handle: numpy leaks its own on a damaged archive
        return _numpy_array(fh, path, what, key)


def _numpy_array(fh, path, what, key):
    try:
        obj = np.load(fh, allow_pickle=False)
    except _READ_ERRORS as exc:
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
            except _READ_ERRORS as exc:
                raise UsageError(f"{what}: cannot read {path}:{key} ({one_line(exc)})") from None
    else:
        if key is not None:
            raise UsageError(f"{what}: a key ({key!r}) was given but {path} is a .npy file")
        arr = obj
    return arr


def _is_torch_input(path):
    from . import dumps as _dumps

    if os.path.splitext(path)[1].lower() in (".pt", ".pth"):
        return True
    try:
        return _dumps.file_format(path) == "torch"
    except OSError:
        return False


def _torch_array(path, what, key):
    from . import dumps as _dumps

    try:
        return _dumps.read_array(path, key, ndim=None, floating=False)
    except _dumps.KeyChoiceError as exc:
        if key is None:
            raise UsageError(f"{what}: {path} is a torch file holding {len(exc.keys)} entries "
                             f"{exc.keys}; choose one with {path}:KEY"
                             + (" or --key" if what == "--images" else "")) from None
        raise UsageError(f"{what}: {path} has no array {key!r}; available: {exc.keys}") from None
    except (ValueError, ImportError, OSError) as exc:
        raise UsageError(f"{what}: cannot read {path} as a torch file ({one_line(exc)})") from None


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
                with open(spec, "rb") as f:  # strict: bounded depth, finite numbers only
                    obj = strict_json(f.read(), max_depth=4, max_containers=16)
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
        if src == "method":  # the method's own candidate pool (dnm.methods: Method.pool)
            from . import methods as _methods

            src = _methods.get(args.method).pool
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




# ---------------------------------------------------------------------------------------------
# output files: checked before the work, moved into place together at the end
# ---------------------------------------------------------------------------------------------

_ACTIVE = []  # the Outputs of the running command (discarded if it fails)


def _input_path(spec):
    """The file an input argument names (``file.npz:key`` -> ``file.npz``)."""
    spec = os.fspath(spec)
    if os.path.exists(spec) or ":" not in os.path.basename(spec):
        return spec
    return spec[:spec.rindex(":")]


class Outputs:
    """The output files of one command.

    ``check`` each output before the work: its format (from the extension), that its folder
    exists and accepts a new file, that it is not a folder, not given twice and not one of the
    ``inputs`` (refused: writing it would destroy the input).  Then each is written to a
    temporary file beside it (``temp``), and ``commit`` moves them all into place at the end,
    so a failing command leaves no output behind and replaces no existing file.  Errors name
    the path the user gave, never a temporary file."""

    def __init__(self, inputs=()):
        self._inputs = [p for p in (_input_path(s) for s in inputs if s is not None)
                        if os.path.isfile(p)]
        self._temps = {}  # path -> its temporary file
        self._what = {}
        _ACTIVE.append(self)

    def check(self, path, allowed, what):
        """Check an output path now; returns its kind (the extension, lower case)."""
        path = os.fspath(path)
        kind = out_kind(path, allowed, what)
        if os.path.isdir(path):
            raise UsageError(f"{what}: {path} is a directory")
        if any(os.path.abspath(path) == os.path.abspath(p) for p in self._what):
            raise UsageError(f"{what}: {path} is given twice as an output")
        if os.path.exists(path):
            for inp in self._inputs:
                if os.path.samefile(path, inp):
                    raise UsageError(f"{what}: {path} is also an input; refusing to "
                                     "overwrite it")
        self._what[path] = what
        os.unlink(self._create(path))  # the folder accepts a new file
        return kind

    def _create(self, path):
        d, base = os.path.split(os.path.abspath(path))
        ext = os.path.splitext(base)[1]
        for _ in range(100):
            tmp = os.path.join(d, f".{base}.{os.getpid()}-{secrets.token_hex(4)}.tmp{ext}")
            try:  # the permissions open() gives: 0o666 less the umask
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                return tmp
            except FileExistsError:
                continue
            except OSError as exc:
                raise UsageError(f"{self._what[path]}: cannot write {path} "
                                 f"({exc.strerror or one_line(exc)})") from None
        raise UsageError(f"{self._what[path]}: cannot create a temporary file beside {path}")

    def temp(self, path):
        """The temporary file to write ``path`` to (created now, empty)."""
        path = os.fspath(path)
        if path not in self._what:
            raise RuntimeError(f"output {path} was not checked")
        self._current = path
        if path not in self._temps:
            self._temps[path] = self._create(path)
        return self._temps[path]

    def commit(self):
        """Move every written output into place (an existing file keeps its permissions)."""
        for path, tmp in list(self._temps.items()):
            try:
                if os.path.exists(path):
                    os.chmod(tmp, os.stat(path).st_mode & 0o7777)
                os.replace(tmp, path)
            except OSError as exc:
                raise UsageError(f"{self._what[path]}: cannot write {path} "
                                 f"({exc.strerror or one_line(exc)})") from None
            del self._temps[path]
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    def discard(self):
        """Remove the temporary files (the command failed)."""
        for tmp in self._temps.values():
            try:
                os.unlink(tmp)
            except OSError:
                pass
        self._temps.clear()
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    def failed_path(self, exc):
        """The output a write error ``exc`` (with a temporary file name) is about, or None."""
        name = getattr(exc, "filename", None)
        if name is None:
            return None
        name = os.path.abspath(os.fspath(name))
        for path, tmp in self._temps.items():
            if name == os.path.abspath(tmp):
                return path
        cur = getattr(self, "_current", None)  # a writer's own temporary file beside ours
        if cur is not None and os.path.dirname(name) == os.path.dirname(os.path.abspath(cur)):
            return cur
        return None


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"dnm: warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def running(args):
    """Run one command: warnings as one line ``dnm: warning: ...`` (none under ``-q``);
    on failure, the temporary files of its outputs are removed, and a write error names
    the output, not its temporary file."""
    quiet = getattr(args, "quiet", False)
    del _ACTIVE[:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if quiet else "default")
        for cat in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                    ResourceWarning):  # Python's default filters
            warnings.simplefilter("ignore", cat)
        warnings.showwarning = _show_warning
        try:
            yield
        except OSError as exc:
            path = next((p for p in (o.failed_path(exc) for o in _ACTIVE) if p), None)
            if path is None:
                raise
            raise UsageError(f"cannot write {path} ({exc.strerror or one_line(exc)})") from None
        finally:
            for o in list(_ACTIVE):
                o.discard()


def seed_arg(text):
    """argparse type of ``--seed``: an integer >= 0 (the generator's seeds)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v
