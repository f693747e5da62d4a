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
