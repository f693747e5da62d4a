"""Install hints of the optional dependencies work from a source install: they name the pip
package (and the extra as ``pip install '.[extra]'`` in the source folder), never
``pip install dnm[extra]``, which cannot work when dnm is not on an index."""
import os
import subprocess
import sys

import pytest

import dnm.encoders
import dnm.images

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _check(msg, package, extra):
    assert "which is not installed" in msg
    assert f"pip install {package}" in msg
    assert f"pip install '.[{extra}]' in the dnm source folder" in msg
    assert "dnm[" not in msg


def test_hf_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError) as e:
        dnm.encoders.HFClipEncoder.from_pretrained("some/model")
    _check(str(e.value), "transformers tokenizers", "hf")


def test_open_clip_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(ImportError) as e:
        dnm.encoders.OpenClipEncoder.from_name("ViT-B-16")
    _check(str(e.value), "open_clip_torch", "open_clip")


def test_pillow_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError) as e:
        dnm.images._pil()
    _check(str(e.value), "pillow", "images")


def test_dask_hint():
    code = ("import sys; sys.modules['dask'] = None\n"
            "try:\n    import dnm.dask\nexcept ImportError as e:\n    print(e)\n")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    _check(r.stdout, '"dask[array]" distributed', "dask")


def test_no_index_only_hint_left():
    for name in ("encoders.py", "images.py", "dask.py", "plot.py", "demo.py", "dumps.py"):
        with open(os.path.join(ROOT, "dnm", name), encoding="utf-8") as f:
            assert "pip install dnm[" not in f.read(), name
