"""Small file and text helpers shared by the package (no dnm imports)."""
from __future__ import annotations

import json
import math
import os
import tempfile

import numpy as np


def _umask():
    """The process umask, read without changing it where the OS allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)  # elsewhere: the only portable way, briefly set and restored
    os.umask(old)
    return old


def atomic_write(path, write, mode, *, prefix=None, suffix=".tmp"):
    """Call ``write(file)`` on a temporary file beside ``path`` opened with ``mode``, then
    rename it onto ``path``: readers see the old file or the whole new one, never a part.
    The temporary file is removed when ``write`` fails (or is interrupted).

    The file gets the permissions an ordinary ``open(path, "w")`` would give it: those of the
    file it replaces, else ``0o666`` less the umask (``mkstemp`` alone makes it ``0o600``).
    """
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    try:
        perms = os.stat(path).st_mode & 0o7777
    except OSError:
        perms = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=d, prefix=os.path.basename(path) if prefix is None
                               else prefix, suffix=suffix)
    try:
        with os.fdopen(fd, mode) as fh:
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), perms)
            else:  # pragma: no cover - Windows: only the read-only bit exists
                os.chmod(tmp, perms)
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def markdown_table(head, rows):
    """A GitHub-flavoured Markdown table: the first column left-aligned, the others right."""
    w = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]

    def line(cells):
        return "| " + " | ".join([cells[0].ljust(w[0])] + [c.rjust(x) for c, x in
                                                          zip(cells[1:], w[1:])]) + " |"

    sep = "|" + "|".join([":" + "-" * (w[0] + 1)] + ["-" * (x + 1) + ":" for x in w[1:]]) + "|"
    return "\n".join([line(head), sep] + [line(r) for r in rows]) + "\n"


# ---------------------------------------------------------------------------------------------
# strict JSON for files that may be hostile (detector metadata, score files)
# ---------------------------------------------------------------------------------------------

_SCAN_CHUNK = 1 << 20
_INT64 = 2 ** 63


class _Bad:
    """A number the strict policy refuses, kept as its token to be reported with its field."""

    __slots__ = ("token",)

    def __init__(self, token):
        self.token = token


def _strict_float(s):
    v = float(s)
    return v if math.isfinite(v) else _Bad(s)


def _strict_int(s):
    if len(s) > 20:
        return _Bad(s[:24] + ("..." if len(s) > 24 else ""))
    v = int(s)
    return v if -_INT64 <= v < _INT64 else _Bad(s)


def _skeleton_counts(raw, max_depth, max_containers, max_items):
    """Bound the structure of JSON text ``raw`` before it is parsed, in chunks (memory: a
    few times the chunk size, plus two copies of ``raw`` when it holds backslashes).

    With the escapes ``\\`` and ``\"`` removed (left to right, as the parser reads them),
    a character is inside a string when an odd number of quotes precede it; outside the
    strings, the brackets give the nesting and the commas the number of items."""
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    b = np.frombuffer(raw, dtype=np.uint8)
    inside, opened, closed, items, depth = False, 0, 0, 1, 0
    for lo in range(0, b.size, _SCAN_CHUNK):
        c = b[lo:lo + _SCAN_CHUNK]
        out = np.logical_xor.accumulate(c == 34)  # 34 = '"': odd quotes so far
        if not inside:
            np.logical_not(out, out=out)  # out: outside the strings
        inside = not bool(out[-1])
        is_open = out & ((c == 91) | (c == 123))  # [ {
        is_close = out & ((c == 93) | (c == 125))  # ] }
        no, nc = int(np.count_nonzero(is_open)), int(np.count_nonzero(is_close))
        opened, closed = opened + no, closed + nc
        items += int(np.count_nonzero(out & (c == 44)))  # ,
        if max(opened, closed) > max_containers:
            raise ValueError(f"more than {max_containers} JSON arrays/objects")
        if max_items is not None and items > max_items:
            raise ValueError(f"more than {max_items} JSON values")
        if no or nc:
            pos = np.flatnonzero(is_open | is_close)
            run = depth + np.cumsum(np.where(is_open[pos], 1, -1))
            if run.max() > max_depth:
                raise ValueError(f"JSON nested deeper than {max_depth} levels")
            depth = int(run[-1])


def strict_json(raw, *, max_depth, max_containers, max_items=None):
    """Parse JSON text ``raw`` (bytes, UTF-8) that may have been written by an attacker.

    Before anything is built, a scan of the text outside its strings bounds the nesting
    depth (``max_depth``), the number of arrays and objects (``max_containers``) and, with
    ``max_items``, the number of items (commas + 1): the parser then builds at most that
    many objects, so its memory is bounded by a small multiple of ``len(raw)``, and it
    never recurses deeply.  Numbers must be finite float64 values or integers of int64:
    ``NaN``, ``Infinity``, ``1e999`` and 10**400 are refused.  Raises ValueError whose
    message names the offending field (``a.b[3]``) where there is one."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    elif not isinstance(raw, bytes):
        raw = bytes(raw)
    _skeleton_counts(raw, max_depth, max_containers, max_items)
    text = raw.decode("utf-8")  # UnicodeDecodeError is a ValueError
    obj = json.loads(text, parse_float=_strict_float, parse_int=_strict_int,
                     parse_constant=_Bad)
    # find the refused numbers (containers are few: only lists are walked item by item)
    stack = [(obj, "")]
    while stack:
        v, where = stack.pop()
        if isinstance(v, _Bad):
            raise ValueError(f"{where or 'value'}: number {v.token} is not allowed (finite "
                             "float64 numbers and 64-bit integers only)")
        if isinstance(v, dict):
            stack.extend((x, f"{where}.{k}" if where else str(k)) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((x, f"{where}[{i}]") for i, x in enumerate(v)
                         if isinstance(x, (_Bad, dict, list)))
    return obj


_MAGIC = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
          (b"\x1f\x8b", "a gzip-compressed file"), (b"\x89HDF", "an HDF5 file"),
          (b"%PDF", "a PDF document"), (b"\x80", "a Python pickle (torch.save writes these)"))


def sniff(path, n=64):
    """What a file is, from its first bytes: ``("npy", None)``, ``("zip", None)`` (.npz and
    torch.save files are zip archives) or ``(None, "it is ...")`` for anything else."""
    with open(path, "rb") as f:
        head = f.read(n)
    if head.startswith(b"\x93NUMPY"):
        return "npy", None
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip", None
    if not head:
        return None, "it is empty"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return None, f"it looks like {what}"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a character cut at the end of the sample is fine
        text = head[:exc.start].decode("utf-8") if exc.start >= len(head) - 3 else None
    if text and all(ch.isprintable() or ch in "\t\r\n" for ch in text):
        first = text.splitlines()[0] if text.strip() else text
        return None, f"it looks like text, starting {first[:40]!r}"
    return None, f"it starts with the bytes {head[:8].hex(' ')}"
