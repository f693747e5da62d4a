"""Progress reporting for C kernels: the core calls back between tiles."""
from __future__ import annotations


class TileProgress:
    """A callable(done, total) handed to the C core; shows a tqdm bar if asked.

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
            from tqdm.auto import tqdm

            self._bar = tqdm(total=int(total), desc=self.desc, unit=self.unit, leave=False)
        self._bar.n = int(done)
        self._bar.refresh()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.close()
        return False
