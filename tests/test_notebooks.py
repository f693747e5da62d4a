"""The notebooks: stored as notebooks/make_notebooks.py writes them, executed (with outputs);
executed again here (nbclient, kernel "python3" = this interpreter) and their outputs checked,
bring-your-own-clip.ipynb also with its model flag on (a small random-weight transformers CLIP
saved to disk, images written here)."""
import importlib.util
import json
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


def _execute(name, tmp_path, params=None):
    """Execute a stored notebook; ``params`` (name -> value) are set in a cell inserted after
    the cell tagged "parameters", as papermill does."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    if params:
        at = nb.cells.index(_tagged(nb, "parameters")) + 1
        src = "\n".join(f"{k} = {v!r}" for k, v in params.items())
        nb.cells.insert(at, nbformat.v4.new_code_cell(src, metadata={"tags": ["injected"]}))
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=300,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    return nb


def _maker():
    spec = importlib.util.spec_from_file_location("make_notebooks",
                                                  NOTEBOOKS / "make_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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


def test_stored_as_generated_and_executed():
    maker = _maker()
    assert set(maker.NOTEBOOKS) == {"quickstart.ipynb", "bring-your-own-clip.ipynb"}
    for name, cells in maker.NOTEBOOKS.items():
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        # the cells are make_notebooks.py's (edit there, then run it)
        assert [(c.cell_type, c.source) for c in nb.cells] == \
            [(c.cell_type, c.source) for c in cells], name
        code = [c for c in nb.cells if c.cell_type == "code"]
        # executed top to bottom in one run, every code cell but the parameters with an
        # output, no error
        assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), name
        assert all(c.outputs for c in code
                   if "parameters" not in c.metadata.get("tags", [])), name
        assert not _errors(nb), name
        text = json.dumps([c.outputs for c in code])
        for local in ("/tmp/", "/work/", "/home/", "/root/", "\\r"):  # no machine paths, no bars
            assert local not in text, (name, local)


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
    assert "USE_MODEL = False" in nb.cells[0].source and "synthetic" in nb.cells[0].source
    assert "synthetic embeddings stand in" in _text(_tagged(nb, "encoder"))
    auroc = _auroc_values(_text(_tagged(nb, "evaluate")))
    assert set(auroc) == {"near", "far", "Average"}
    assert all(50.0 < v <= 100.0 for v in auroc.values()), auroc
    assert "NEG" in _text(_tagged(nb, "explain"))
    bench = _text(_tagged(nb, "benchmark"))
    for method in ("mcm", "neglabel", "csp", "dnm"):
        assert re.search(rf"^\| {method} \| Average \| \d+\.\d\d ± \d+\.\d\d \|", bench, re.M)
    assert "summary.tex" in bench


def test_bring_your_own_clip_with_a_model(tmp_path):
    """USE_MODEL = True end to end: HFClipEncoder.from_pretrained of a local folder, image
    folders with class subfolders, an image-list file, unreadable files, the cache."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("PIL")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tiny_clip as T

    model, proc = T.hf_clip(seed=0)
    model.save_pretrained(tmp_path / "model")
    proc.save_pretrained(tmp_path / "model")
    T.write_images(tmp_path / "id" / "cat", 30, seed=1)
    T.write_images(tmp_path / "id" / "dog", 25, seed=2)
    (tmp_path / "id" / "dog" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    T.write_images(tmp_path / "ood_a", 20, seed=3)
    T.write_images(tmp_path / "ood_b_files", 16, seed=4)
    (tmp_path / "ood_b.txt").write_text(
        "".join(f"ood_b_files/img{i:04d}.{'png' if i % 2 == 0 else 'jpg'} -1\n"
                for i in range(16)) + "ood_b_files/missing.png -1\n")
    params = dict(USE_MODEL=True, BACKEND="hf", MODEL=str(tmp_path / "model"),
                  CACHE_DIR=str(tmp_path / "cache"), ID_NAMES=["cat", "dog"],
                  ID_IMAGES=str(tmp_path / "id"),
                  OOD_IMAGES={"ood-a": str(tmp_path / "ood_a"), "ood-b": str(tmp_path / "ood_b.txt")},
                  N_PHRASES=400, SEEDS=[0, 1],
                  PARAMS={"neglabel": {"groups": 4}, "csp": {"groups": 4},
                          "dnm": {"groups": 4, "k": 3}})
    nb = _execute("bring-your-own-clip.ipynb", tmp_path, params)
    assert not _errors(nb)
    assert "HFClipEncoder on cpu torch.float32" in _text(_tagged(nb, "encoder"))
    text = _text(_tagged(nb, "text"))
    assert f"ID labels (2, {T.DIM}), candidates (400, {T.DIM})" in text, text
    images = _tagged(nb, "images")
    out = _text(images)
    assert f"ID (55, {T.DIM}) {{'ood-a': (20, {T.DIM}), 'ood-b': (16, {T.DIM})}}" in out, out
    warned = "".join(o.get("text", "") for o in images.outputs if o.get("name") == "stderr")
    assert "zz_broken.png" in warned and "missing.png" in warned, warned
    auroc = _auroc_values(_text(_tagged(nb, "evaluate")))
    assert set(auroc) == {"ood-a", "ood-b", "Average"}
    assert all(0.0 <= v <= 100.0 for v in auroc.values())
    bench = _text(_tagged(nb, "benchmark"))
    for method in ("mcm", "neglabel", "csp", "dnm"):
        for dataset in ("ood-a", "ood-b", "Average"):
            assert re.search(rf"^\| {method} \| {dataset} \| ", bench, re.M), (method, dataset)
    assert any((tmp_path / "cache").iterdir())  # the encodings went through the cache
