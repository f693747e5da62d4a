"""Progress bars: tqdm on a terminal or in Jupyter, one final line per stage in logs.

Every bar of the package is made by the class :func:`tqdm_class` returns (the C core calls
:class:`TileProgress` between tiles).  Where the bar would go decides how it looks:

* a terminal (the stream's ``isatty()``): tqdm's bar, redrawn in place; nested bars stack;
* Jupyter: tqdm's notebook widget when ipywidgets is installed, else the text bar (the
  notebook renders carriage returns);
* anything else (a file, a pipe: SLURM, CI, ``make``, ``nohup``): :class:`LogBar`, which never
  redraws and writes at most one line when its stage ends (``desc: 820/820 tiles in 3.1s``),
  indented by its nesting depth.

``progress=False`` / ``--quiet`` (tqdm's ``disable=True``) silence every kind.
"""
from __future__ import annotations

import sys
import threading
import time

__all__ = ["tqdm_class", "TileProgress", "LogBar"]


def _in_notebook():
    try:
        from IPython import get_ipython

        ip = get_ipython()
        return ip is not None and "IPKernelApp" in ip.config
    except Exception:  # noqa: BLE001 - IPython absent or unusual shells
        return False


def _isatty(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def tqdm_class():
    """The bar class to use: tqdm's notebook bar in Jupyter with ipywidgets, tqdm's text bar
    on a terminal (or in Jupyter without ipywidgets), else a factory that picks per bar
    between tqdm (its ``file`` is a terminal) and :class:`LogBar`.

    (``tqdm.auto`` alone warns "IProgress not found" in Jupyter without ipywidgets.)
    """
    if _in_notebook():
        try:
            import ipywidgets  # noqa: F401

            from tqdm.notebook import tqdm

            return tqdm
        except ImportError:
            from tqdm import tqdm

            return tqdm
    return _bar


def _bar(*args, **kwargs):
    """A tqdm bar when its stream (``file=``, default stderr) is a terminal, else a LogBar."""
    stream = kwargs.get("file")
    if _isatty(sys.stderr if stream is None else stream):
        from tqdm import tqdm

        return tqdm(*args, **kwargs)
    return LogBar(*args, **kwargs)


_depth = threading.local()


class LogBar:
    """A tqdm-compatible bar for logs: no redraws; one line when closed, if anything ran.

    Supports what dnm uses of tqdm: iteration, ``update``, ``n``, ``total``, ``refresh``,
    ``close``, ``set_description``, ``set_postfix``, the context manager.
    """

    def __init__(self, iterable=None, desc=None, total=None, leave=True, file=None,
                 disable=False, unit="it", **_ignored):
        self.iterable = iterable
        self.desc = desc or ""
        if total is None and iterable is not None:
            try:
                total = len(iterable)
            except (TypeError, AttributeError):
                total = None
        self.total = total
        self.unit = unit
        self.file = file
        self.disable = bool(disable)
        self.n = 0
        self._t0 = time.perf_counter()
        self._closed = self.disable
        self._level = getattr(_depth, "n", 0)
        if not self.disable:
            _depth.n = self._level + 1

    def __iter__(self):
        if self.iterable is None:
            raise TypeError("LogBar: no iterable given")
        try:
            for x in self.iterable:
                yield x
                self.n += 1
        finally:
            self.close()

    def __len__(self):
        return self.total if self.total is not None else len(self.iterable)

    def update(self, n=1):
        self.n += n

    def refresh(self, *args, **kwargs):
        pass

    def set_description(self, desc=None, refresh=True):
        self.desc = desc or ""

    def set_postfix(self, *args, **kwargs):
        pass

    def close(self):
        if self._closed:
            return
        self._closed = True
        _depth.n = self._level
        if self.n <= 0:
            return  # nothing ran: nothing to report
        dt = time.perf_counter() - self._t0
        done = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        stream = sys.stderr if self.file is None else self.file
        label = f"{self.desc}: " if self.desc else ""
        try:
            unit = self.unit
            if self.n != 1 and unit.isalpha() and unit != "it" and not unit.endswith("s"):
                unit += "es" if unit.endswith(("ch", "sh", "x")) else "s"
            print(f"{'  ' * self._level}{label}{done} {unit} in {dt:.1f}s", file=stream,
                  flush=True)
        except (ValueError, OSError):  # a closed or broken stream: never fail the work
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class TileProgress:
    """A callable(done, total) handed to the C core; shows a bar if asked (see module doc).

    Use as a context manager so the bar is closed even when the kernel raises.
    """

    def __init__(self, enabled, desc, unit="tile"):
        self.enabled = bool(enabled)
        self.desc = desc
        self.unit = unit
        self._bar = None

    def __call__(self, done, total):
        if not self.enabled:
            return
        if self._bar is None:
            self._bar = tqdm_class()(total=int(total), desc=self.desc, unit=self.unit, leave=False)
        self._bar.n = int(done)
        self._bar.refresh()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.close()
        return False
