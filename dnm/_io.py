"""Small file and text helpers shared by the package (no dnm imports)."""
from __future__ import annotations

import os
import tempfile


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
