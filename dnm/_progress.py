"""Progress reporting for C kernels: the core calls back between tiles."""
from __future__ import annotations


def tqdm_class():
    """tqdm's notebook bar where ipywidgets is available, else the text bar.

    (``tqdm.auto`` alone warns "IProgress not found" in Jupyter without ipywidgets.)
    """
    try:
        from IPython import get_ipython

        in_notebook = get_ipython() is not None and "IPKernelApp" in get_ipython().config
    except Exception:  # noqa: BLE001 - IPython absent or unusual shells
        in_notebook = False
    if in_notebook:
        try:
            import ipywidgets  # noqa: F401

            from tqdm.notebook import tqdm

            return tqdm
        except ImportError:
            pass
    from tqdm import tqdm

    return tqdm


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
            self._bar = tqdm_class()(total=int(total), desc=self.desc, unit=self.unit, leave=False)
        self._bar.n = int(done)
        self._bar.refresh()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.close()
        return False
