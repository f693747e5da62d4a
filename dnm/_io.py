"""Small file and text helpers shared by the package (no dnm imports)."""
from __future__ import annotations

import os
import tempfile


def atomic_write(path, write, mode, *, prefix=None, suffix=".tmp"):
    """Call ``write(file)`` on a temporary file beside ``path`` opened with ``mode``, then
    rename it onto ``path``: readers see the old file or the whole new one, never a part.
    The temporary file is removed when ``write`` fails (or is interrupted)."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=os.path.basename(path) if prefix is None
                               else prefix, suffix=suffix)
    try:
        with os.fdopen(fd, mode) as fh:
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
