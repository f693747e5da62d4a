"""Execute the notebooks (nbclient, kernel "python3" = this interpreter) and check outputs."""
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _kernel_cmd():
    from jupyter_client.kernelspec import KernelSpecManager

    argv = KernelSpecManager().get_kernel_spec("python3").argv
    return argv


def test_python3_kernel_is_this_interpreter():
    # jupyter_client replaces a bare "python" by sys.executable; anything else must be ours
    exe = _kernel_cmd()[0]
    assert exe in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}") \
        or Path(exe).resolve() == Path(sys.executable).resolve(), exe


def _execute(name, tmp_path):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=300,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    return nb


def _text(cell):
    out = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            out.append(o.get("text", ""))
        elif "data" in o:
            out.append(o["data"].get("text/plain", ""))
    return "".join(out)


def _tagged(nb, tag):
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, tag
    return cells[0]


def _auroc_values(table_text):
    """AUROC column (in %) of every row of a to_markdown table."""
    lines = [ln for ln in table_text.splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    col = head.index("AUROC [%]")
    return {ln.strip("|").split("|")[0].strip(): float(ln.strip("|").split("|")[col])
            for ln in lines[2:]}


def _errors(nb):
    return [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]


def test_committed_without_outputs():
    for name in ("quickstart.ipynb", "bring-your-own-clip.ipynb"):
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        for c in nb.cells:
            if c.cell_type == "code":
                assert c.outputs == [] and c.execution_count is None, name


def test_quickstart(tmp_path):
    nb = _execute("quickstart.ipynb", tmp_path)
    assert not _errors(nb)
    assert "SYNTHETIC" in nb.cells[0].source.upper()
    table = _text(_tagged(nb, "evaluate"))
    auroc = _auroc_values(table)
    assert set(auroc) == {"near", "far", "Average"}
    assert all(50.0 < v <= 100.0 for v in auroc.values()), auroc
    comp = _auroc_values(_text(_tagged(nb, "compare")))
    assert set(comp) == {"mcm", "max_logit", "energy", "neglabel", "csp", "dnm"}
    assert all(50.0 < v <= 100.0 for v in comp.values()), comp
    assert comp["dnm"] == auroc["Average"]
    for tag in ("hist", "roc"):
        outs = _tagged(nb, tag).outputs
        assert any("image/png" in o.get("data", {}) for o in outs), tag
    expl = _text(_tagged(nb, "explain"))
    assert "image 0" in expl and "NEG" in expl and "ID " in expl
    assert "True" in _text(nb.cells[-2])


def test_bring_your_own_clip(tmp_path):
    nb = _execute("bring-your-own-clip.ipynb", tmp_path)
    assert not _errors(nb)
    assert "stand-in" in nb.cells[0].source
    out = _text(_tagged(nb, "evaluate"))
    for method in ("mcm", "neglabel", "dnm"):
        assert re.search(rf"^{method} \(\d+ negatives\)$", out, re.M), method
    auroc = _auroc_values(out.split("dnm (")[1])
    assert 0.0 <= auroc["Average"] <= 100.0
    assert "NEG" in _text(_tagged(nb, "explain"))
