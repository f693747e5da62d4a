"""Write notebooks/quickstart.ipynb and notebooks/bring-your-own-clip.ipynb, executed.

Edit the cells here, then run ``python notebooks/make_notebooks.py`` (from the repository, with
dnm importable; needs nbclient, ipykernel and matplotlib): it writes both notebooks and
executes them in a temporary folder, so they are stored with their outputs and read well on a
repository browser (``--no-execute``: without outputs).  The test suite
(tests/test_notebooks.py) checks that the stored cells are these, executes both notebooks and
checks their outputs; cells the tests look at carry a tag in their metadata.
"""
import sys
import tempfile
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def md(text):
    return new_markdown_cell(text.strip("\n"))


def code(text, tag=None):
    c = new_code_cell(text.strip("\n"))
    if tag:
        c.metadata["tags"] = [tag]
    return c


QUICKSTART = [
    md("""
# dnm quickstart: corpus → fit → score → evaluate → plots → explain

> **The data in this notebook is synthetic.** `dnm.synthetic.make_benchmark` draws random
> CLIP-like embeddings (raw text norms, text–text cosines and the image–text modality gap
> were tuned to resemble CLIP ViT-B/32); no CLIP model, image or word is involved. The numbers
> below say how the methods behave on this random model, **not** on ImageNet. To use real CLIP
> features see `bring-your-own-clip.ipynb`.

`SIZE = "small"` runs in seconds (it is what CI executes); `"default"` has ImageNet shapes
(1,000 ID classes, 20,000 candidates, 5,000 ID images) and takes under a minute.
"""),
    code("""
%matplotlib inline
import numpy as np
import dnm
import dnm.plot                      # optional extra: needs matplotlib (pip install dnm[plot])
from dnm.synthetic import make_benchmark

SIZE = "small"   # or "default"
print("dnm", dnm.__version__)
"""),
    md("""
## 1. The corpus

`dnm` ships the WordNet word lists the papers use: nouns and adjectives, grouped by
lexicographer file, with the papers' presets (`dnm`/`csp`, `neglabel`). With a real model you
would encode `corpus.prompts()` (nouns as `the nice {}`, adjectives as `This is a {} photo`)
with its text encoder, **raw** (unnormalised: DNM's rule uses the norms).
"""),
    code("""
corpus = dnm.corpus.load("dnm")
print(corpus)
print(corpus.prompts()[:3], "...", corpus.prompts()[-2:])
"""),
    md("""
The papers' ID class-name sets ship too (`dnm.corpus.class_names`), and WordNet filters drop
candidates that would be *false negatives* for them: the ID names and their synonyms, nouns
naming a kind of an ID class (ImageNet classes are WordNet synsets: a graph query), and proper
nouns. `dnm corpus` does the same on the command line.
"""),
    code("""
print(dnm.corpus.CLASS_NAME_SETS)
names = dnm.corpus.class_names("imagenet")
filtered = dnm.corpus.load("dnm", exclude=names, exclude_synonyms=True,
                           exclude_hyponyms_of="imagenet", exclude_proper_nouns=True)
print(f"{len(corpus)} -> {len(filtered)} phrases for ImageNet-1k as the ID set")
print(sorted(set(corpus.phrases) - set(filtered.phrases))[:8])
"""),
    md("""
Here the synthetic benchmark stands in for those encodings: `bench.candidates` are raw
"phrase embeddings" (nouns and adjectives, some of them planted near-duplicates of ID class
names, i.e. *false negatives*), `bench.id_labels` the ID class prompts, `bench.id_images` and
`bench.ood_images` the image embeddings.
"""),
    code("""
bench = make_benchmark(SIZE, seed=0)
bench.summary()
""", tag="summary"),
    md("## 2. Fit: mine negative labels (DNM, ViT-B/16 preset)"),
    code("""
det = dnm.NegativeLabelDetector("dnm", preset="ViT-B/16")
det.fit(bench.id_labels, bench.candidates, is_adjective=bench.is_adjective,
        phrases=bench.candidate_names, id_names=bench.id_names)
print(det)
print(len(det.negatives_), "negatives, e.g.", det.negative_phrases_[:5])
"""),
    md("## 3. Score (higher = more in-distribution) and evaluate"),
    code("""
s_id = det.score_samples(bench.id_images)
s_ood = {name: det.score_samples(X) for name, X in bench.ood_images.items()}
table = dnm.evaluate(s_id, s_ood)   # an EvaluationResult: FPR95 (paper), AUROC, AUPR-In, AUPR-Out
print(table.to_markdown())          # also .to_csv(), .to_latex(), .to_frame(), .to_dict()
""", tag="evaluate"),
    md("""
Every method on the same data (one estimator, one code path). On this synthetic data DNM's
kNN rule is essentially a ranking of the candidates by raw norm, so read the comparison as a
property of the generator, not as evidence about the methods on real images.
"""),
    code("""
rows = []
for method in ["mcm", "max_logit", "energy", "neglabel", "csp", "dnm"]:
    d = dnm.NegativeLabelDetector(method).fit(bench.id_labels, bench.candidates,
                                              is_adjective=bench.is_adjective)
    a = d.score_samples(bench.id_images)
    t = dnm.evaluate(a, {k: d.score_samples(X) for k, X in bench.ood_images.items()})
    rows.append({**t["Average"], "dataset": method})     # a row: {"dataset": ..., column: value}
print("Average over OOD sets, per method")
print(dnm.metrics.to_markdown(rows))
""", tag="compare"),
    md("## 4. Plots (matplotlib figures; pass `path=` to save a PNG)"),
    code("""
dnm.plot.score_histograms(s_id, s_ood)
""", tag="hist"),
    code("""
dnm.plot.roc_curves(s_id, s_ood)
""", tag="roc"),
    md("## 5. Threshold, predict, explain"),
    code("""
det.set_threshold(bench.id_images, tpr=0.95)      # keep 95% of ID images
for name, X in [("ID", bench.id_images), *bench.ood_images.items()]:
    print(f"{name:>4}: {np.mean(det.predict(X) == 1):.1%} accepted as in-distribution")
"""),
    code("""
expl = det.explain(bench.ood_images["far"][:2], k=3)   # which labels carry each score
print(expl.to_text())
""", tag="explain"),
    md("## 6. Save and load (a checked .npz, no pickle)"),
    code("""
import os, tempfile
path = os.path.join(tempfile.mkdtemp(), "detector.npz")
det.save(path)
same = dnm.NegativeLabelDetector.load(path)
print(np.array_equal(same.score_samples(bench.id_images), s_id))
"""),
    md("""
Next: `bring-your-own-clip.ipynb` (real encoders), or from a shell `dnm demo` (all methods,
plots and a JSON/CSV report) and `dnm mine / score / evaluate` on your own `.npy` files.
"""),
]


BYO = [
    md("""
# Bring your own CLIP: from a model and image folders to dnm's table

`dnm` scores embeddings; `dnm.encoders` turns a CLIP model into them. This notebook goes the
whole way: a Hugging Face `transformers` or `open_clip` model (your own object, or loaded from
your disk / cache; dnm itself downloads nothing) → raw text features of the ID class names
and of the corpus → image features of your ID and OOD folders (`dnm.images`: folders, image
lists, unreadable files reported and skipped) → a detector → the methods × seeds table
(`dnm.benchmark`).

> **The outputs stored here come from `USE_MODEL = False`:** synthetic CLIP-like embeddings
> (`dnm.synthetic`), no model and no image; the numbers say how the methods behave on that
> random generator, **nothing about CLIP**. Set `USE_MODEL = True`, the model and the image
> folders in the next cell to run it on real data (pip install `dnm[hf]` or `dnm[open_clip]`).
> The test suite runs the `USE_MODEL = True` path end to end with a small random-weight
> `transformers` CLIP saved to disk and images it writes.
"""),
    code("""
import numpy as np
import dnm

USE_MODEL = False                        # True: your CLIP and your images (below)
BACKEND = "hf"                           # "hf" (transformers) or "open_clip"
MODEL = "openai/clip-vit-base-patch16"   # HF name in your cache or a local folder; open_clip: e.g. "ViT-B-16"
PRETRAINED = "openai"                    # open_clip only: its weights tag (from your cache)
PRESET = "ViT-B/16"                      # DNM's parameter row for the backbone
DEVICE, DTYPE = "cpu", None              # e.g. "cuda", "float16"
CACHE_DIR = None                         # e.g. "~/.cache/dnm": encodings kept on disk
ID_NAMES = ["goldfish", "great white shark", "tiger shark", "hammerhead", "electric ray"]
ID_IMAGES = "data/id_val"                # a folder (flat, or one subfolder per class),
OOD_IMAGES = {"ood-a": "data/ood_a",     # an image-list file ("path label" lines), or a
              "ood-b": "data/ood_b.txt"} # list of paths
N_PHRASES = 3000                         # a subset of the ~57,000-phrase corpus; None = all
PARAMS = {"dnm": {"k": 10}}              # method overrides (a small kNN for a small corpus)
SEEDS = [0, 1, 2]                        # groupings of the negatives, for mean ± std
""", tag="parameters"),
    md("""
## 1. The encoder

`HFClipEncoder` / `OpenClipEncoder` wrap the model you give them, or load one:
`HFClipEncoder.from_pretrained` from a local folder or your Hugging Face cache only
(`local_files_only=True` unless you pass False), `OpenClipEncoder.from_name` through open_clip
(its cache, or open_clip's own download for a `pretrained` tag). Both
encode batched under `torch.inference_mode()`, on the model's device and dtype, with a
progress bar, and return **raw, unnormalised** float32 features: DNM's mining rule uses the
raw norms of the phrase features; the scores normalise by themselves. With `cache_dir`, the
features are cached on disk, keyed by the model (a fingerprint of the weights), the
tokenizer or image transform, the templates and the ensembling rule; for images also by each
file's path, size and modification time.

Your own objects work the same way:
`dnm.encoders.HFClipEncoder(CLIPModel.from_pretrained(...), CLIPProcessor.from_pretrained(...))`,
`dnm.encoders.OpenClipEncoder(model, preprocess, open_clip.get_tokenizer(name))`, and OpenAI's
`clip` package as `OpenClipEncoder(model, preprocess, clip.tokenize)`.
"""),
    code("""
if USE_MODEL:
    if BACKEND == "hf":
        encoder = dnm.encoders.HFClipEncoder.from_pretrained(MODEL, device=DEVICE, dtype=DTYPE,
                                                             cache_dir=CACHE_DIR)
    elif BACKEND == "open_clip":
        encoder = dnm.encoders.OpenClipEncoder.from_name(MODEL, pretrained=PRETRAINED,
                                                         device=DEVICE, dtype=DTYPE,
                                                         cache_dir=CACHE_DIR)
    else:
        raise ValueError(f"BACKEND: 'hf' or 'open_clip', not {BACKEND!r}")
    print(type(encoder).__name__, "on", encoder.device, encoder.dtype)
else:
    print("USE_MODEL = False: synthetic embeddings stand in for the encoder's output")
""", tag="encoder"),
    md("""
## 2. Text: the ID labels and the corpus

ID classes are prompted as `the nice {}` (`dnm.corpus.ID_TEMPLATE`); the corpus's nouns as
`the nice {}` and its adjectives as `This is a {} photo`, as the papers do. Excluding the ID
names from the corpus is optional.
"""),
    code("""
if USE_MODEL:
    corpus = dnm.corpus.load("dnm", exclude=ID_NAMES)
    if N_PHRASES is not None and N_PHRASES < len(corpus):
        keep = np.sort(np.random.default_rng(0).choice(len(corpus), N_PHRASES, replace=False))
        corpus = corpus[keep]
    id_labels = encoder.encode_text(ID_NAMES, templates=dnm.corpus.ID_TEMPLATE)
    candidates = encoder.encode_text(corpus)          # templates by part of speech
    is_adjective, phrases, id_names = corpus.is_adjective, corpus.phrases, ID_NAMES
else:
    from dnm.synthetic import make_benchmark
    bench = make_benchmark("small", seed=0)           # SYNTHETIC, see the top of the notebook
    id_labels, candidates = bench.id_labels, bench.candidates
    is_adjective, phrases, id_names = bench.is_adjective, bench.candidate_names, bench.id_names
norms = np.linalg.norm(candidates, axis=1)
print(f"ID labels {id_labels.shape}, candidates {candidates.shape} "
      f"({int(np.sum(is_adjective))} adjectives), raw norms {norms.min():.2f} to {norms.max():.2f}")
""", tag="text"),
    md("""
## 3. Images

`encode_images` takes a folder (flat, or one subfolder per class), an OpenOOD-style image-list
file (`path label` lines, paths relative to the list's folder or to `root=` of
`dnm.images.read_image_list`), a list of paths or a `dnm.images.ImageList`. Files are decoded
with Pillow in a `torch.utils.data.DataLoader` (`num_workers=`); the rows follow the order of
the paths (a folder: sorted). An unreadable file is skipped with a warning naming it and the
reason (`on_error="raise"` refuses instead, after one full pass listing all of them).
"""),
    code("""
if USE_MODEL:
    X_id = encoder.encode_images(ID_IMAGES)
    X_ood = {name: encoder.encode_images(src) for name, src in OOD_IMAGES.items()}
else:
    X_id, X_ood = bench.id_images, dict(bench.ood_images)
print("ID", X_id.shape, {name: X.shape for name, X in X_ood.items()})
""", tag="images"),
    md("## 4. One detector: fit, score, evaluate, explain"),
    code("""
det = dnm.NegativeLabelDetector("dnm", preset=PRESET, **PARAMS.get("dnm", {}))
det.fit(id_labels, candidates, is_adjective=is_adjective, phrases=phrases, id_names=id_names)
print(det)
s_id = det.score_samples(X_id)
table = dnm.evaluate(s_id, {name: det.score_samples(X) for name, X in X_ood.items()})
print(table.to_markdown())
""", tag="evaluate"),
    code("""
name = next(iter(X_ood))
print(det.explain(X_ood[name][:1], k=3).to_text())
""", tag="explain"),
    md("""
## 5. Methods × seeds: the table

`dnm.benchmark.run_benchmark` fits each method once, re-groups the negatives for every seed,
and gives the per-seed metrics and mean ± std per OOD set and on average (FPR's convention in
the column names). `res.save(folder)` writes CSV, Markdown, LaTeX and a JSON report.
"""),
    code("""
import tempfile

res = dnm.benchmark.run_benchmark(
    {"ID": X_id, **X_ood}, id_labels=id_labels, candidates=candidates,
    is_adjective=is_adjective, methods=["mcm", "neglabel", "csp", "dnm"], seeds=SEEDS,
    preset=PRESET, params=PARAMS, progress=False)
print(res.to_markdown())
out = tempfile.mkdtemp(prefix="dnm-benchmark-")
print(sorted(res.save(out)))
""", tag="benchmark"),
    md("""
## 6. The same from a shell

Save the features (`np.save`, or `torch.save` of a dict of tensors) and run

```bash
dnm benchmark --set ID=x_id.npy --set ood-a=x_ood_a.npy --set ood-b=feats.pt:ood-b \\
    --id-labels id_labels.npy --candidates candidates.npy --is-adjective is_adjective.npy \\
    --methods mcm,neglabel,csp,dnm --seeds 0,1,2 --out results/
dnm mine --candidates candidates.npy --id-labels id_labels.npy --is-adjective is_adjective.npy \\
    --detector det.npz
dnm score --detector det.npz --images x_id.npy --out id_scores.npy
```

The official DNM / NegLabel / CSP dumps (`neg_dump_new_*.pth`, `pos_dump_new_ens.pth`,
`neg_dump.pth`, `CLIP_features_*.pth`) are read with `dnm.dumps.read_dump` or
`dnm benchmark CLIP_features_B16.pth --dump neg_dump_new_B16.pth --out results/`.
"""),
]


def build(cells, kernel="python3"):
    for i, c in enumerate(cells):  # stable ids: a regenerated notebook differs only where it changed
        c["id"] = f"cell-{i:02d}"
    nb = new_notebook(cells=cells)
    for i, c in enumerate(nb.cells):  # stable ids: regenerating changes only edited cells
        c["id"] = f"cell-{i:02d}"
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


NOTEBOOKS = {"quickstart.ipynb": QUICKSTART, "bring-your-own-clip.ipynb": BYO}


def execute(nb, workdir, timeout=600):
    """Run every cell of ``nb`` in place (kernel python3, cwd ``workdir``), no timing metadata."""
    import nbclient

    nbclient.NotebookClient(nb, kernel_name="python3", timeout=timeout, record_timing=False,
                            resources={"metadata": {"path": str(workdir)}}).execute()
    return nb


def main(argv=None):
    run = "--no-execute" not in (sys.argv[1:] if argv is None else argv)
    for name, cells in NOTEBOOKS.items():
        nb = build(cells)
        if run:
            with tempfile.TemporaryDirectory() as tmp:
                execute(nb, tmp)
        nbformat.validate(nb)
        nbformat.write(nb, HERE / name)
        print("wrote", HERE / name, "(executed)" if run else "(no outputs)")


if __name__ == "__main__":
    main()
