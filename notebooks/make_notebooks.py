"""Write notebooks/quickstart.ipynb and notebooks/bring-your-own-clip.ipynb (without outputs).

Edit the cells here, then run ``python notebooks/make_notebooks.py``.  The test suite
(tests/test_notebooks.py) executes both notebooks and checks their outputs; cells the tests
look at carry a tag in their metadata.
"""
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
# Bring your own CLIP: encode the corpus, the ID names and the images, then feed dnm

`dnm` never runs a model: it takes embeddings as arrays. This notebook shows the whole path
with the encoder as a **parameter**: two functions, `encode_text(list_of_str) -> (n, D)` and
`encode_images(batch) -> (n, D)`.

> **In CI this notebook runs with a small stand-in encoder** — a deterministic hashing /
> random-projection "text encoder" written in NumPy, and fake "images" made from text
> encodings plus noise. It has no notion of meaning, so **the metrics below are meaningless**;
> they only show that the plumbing works. Set `USE_OPEN_CLIP = True` (needs `open_clip_torch`,
> a download of the weights, and your images) to run the same cells with a real CLIP.
"""),
    code("""
import hashlib
from functools import lru_cache

import numpy as np
import dnm

USE_OPEN_CLIP = False   # True: real open_clip ViT-B/16 (not executed in CI)
N_PHRASES = 3000        # a subset of the ~57,000-phrase corpus keeps the stand-in fast; None = all
"""),
    md("""
## The encoder (a parameter)

With open_clip (guarded by the flag, not run in CI). Keep the text features **raw** — do not
normalise them: DNM's mining rule uses the raw norms. dnm normalises where the scores need it.

With Hugging Face `transformers` the same two functions are:

```python
from transformers import CLIPModel, CLIPProcessor
model = CLIPModel.from_pretrained("openai/clip-vit-base-patch16").eval()
proc = CLIPProcessor.from_pretrained("openai/clip-vit-base-patch16")

@torch.no_grad()
def encode_text(prompts):
    return model.get_text_features(**proc(text=prompts, padding=True, return_tensors="pt")).numpy()

@torch.no_grad()
def encode_images(pil_images):
    return model.get_image_features(**proc(images=pil_images, return_tensors="pt")).numpy()
```
"""),
    code("""
if USE_OPEN_CLIP:
    import open_clip, torch
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-16", pretrained="openai")
    tokenizer = open_clip.get_tokenizer("ViT-B-16")
    model.eval()

    @torch.no_grad()
    def encode_text(prompts):
        return model.encode_text(tokenizer(prompts)).float().numpy()      # raw features

    @torch.no_grad()
    def encode_images(pil_images):
        batch = torch.stack([preprocess(im) for im in pil_images])
        return model.encode_image(batch).float().numpy()
    MODEL_NAME = "open_clip ViT-B-16 openai"
    PRESET = "ViT-B/16"
"""),
    md("""
The stand-in used in CI: each word gets a fixed pseudo-random vector (seeded by a hash of the
word); a prompt's embedding is a shared "text" direction plus the sum of its word vectors, so
norms vary from prompt to prompt as raw CLIP norms do. An "image" of a concept is the
embedding of a caption plus an image-only offset (a crude modality gap) and noise.
"""),
    code("""
if not USE_OPEN_CLIP:
    D = 256
    _rng = np.random.default_rng(0)
    COMMON = _rng.standard_normal(D); COMMON *= 6.0 / np.linalg.norm(COMMON)
    IMAGE_ONLY = _rng.standard_normal(D); IMAGE_ONLY *= 1.0 / np.linalg.norm(IMAGE_ONLY)

    @lru_cache(maxsize=None)
    def _word(w):
        seed = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
        return np.random.default_rng(seed).standard_normal(D) / np.sqrt(D)

    def encode_text(prompts):
        out = np.empty((len(prompts), D), np.float32)
        for i, p in enumerate(prompts):
            words = p.lower().replace("-", " ").split()
            out[i] = COMMON + 2.0 * sum(_word(w) for w in words)
        return out

    def encode_images(captions, noise=0.6, seed=0):
        # stand-in "images": caption embeddings, normalised, plus an image-only offset and noise
        t = encode_text(captions).astype(np.float64)
        t /= np.linalg.norm(t, axis=1, keepdims=True)
        eps = np.random.default_rng(seed).standard_normal(t.shape) * noise / np.sqrt(D)
        return (0.5 * t + 0.8 * IMAGE_ONLY + eps).astype(np.float32)
    MODEL_NAME = "stand-in hashing encoder"
    PRESET = "ViT-B/16"
print("encoder:", MODEL_NAME)
"""),
    md("""
## 1. ID class names and their prompts

Your label set; the papers prompt ID classes as `the nice {}`. Excluding the ID names from the
corpus is optional (DNM and NegLabel do not need it).
"""),
    code("""
ID_NAMES = ["goldfish", "great white shark", "tiger shark", "hammerhead", "electric ray",
            "stingray", "cock", "hen", "ostrich", "brambling", "goldfinch", "house finch",
            "junco", "indigo bunting", "robin", "bulbul", "jay", "magpie", "chickadee",
            "water ouzel"]
id_labels = dnm.corpus.encode(ID_NAMES, encode_text, templates="the nice {}", progress=False)
id_labels.shape
"""),
    md("""
## 2. The corpus: load, (subsample), encode

`dnm.corpus.encode` batches the prompts through your encoder and, with `cache_dir=` and
`model_name=`, caches the result on disk (keyed by a hash of the model name, phrases and
templates), so the ~57,000 prompts are encoded once per model.
"""),
    code("""
corpus = dnm.corpus.load("dnm", exclude=ID_NAMES)
if N_PHRASES is not None and N_PHRASES < len(corpus):
    keep = np.sort(np.random.default_rng(0).choice(len(corpus), N_PHRASES, replace=False))
    corpus = corpus[keep]
candidates = dnm.corpus.encode(corpus, encode_text, model_name=MODEL_NAME, batch_size=512,
                               progress=False)   # add cache_dir="~/.cache/dnm" for real models
print(corpus, candidates.shape, "raw norms %.2f-%.2f" % tuple(
    np.percentile(np.linalg.norm(candidates, axis=1), [1, 99])))
"""),
    md("""
## 3. Images

With a real model: `encode_images(list_of_PIL_images)` over your ID validation set and your
OOD sets, batch by batch. The stand-in makes ID "images" from captions of the ID classes and
OOD "images" from captions of other concepts.
"""),
    code("""
rng = np.random.default_rng(1)
id_captions = [f"a photo of a {ID_NAMES[i]}" for i in rng.integers(0, len(ID_NAMES), 400)]
far_words = [p for p, a in zip(corpus.phrases, corpus.is_adjective) if not a][:200]
ood_captions = [f"a photo of a {far_words[i]}" for i in rng.integers(0, len(far_words), 400)]
id_images = encode_images(id_captions, seed=2)
ood_images = {"other-concepts": encode_images(ood_captions, seed=3)}
id_images.shape, ood_images["other-concepts"].shape
"""),
    md("## 4. Fit, score, evaluate"),
    code("""
results = {}
for method in ["mcm", "neglabel", "dnm"]:
    det = dnm.NegativeLabelDetector(method, preset=PRESET, k=10 if N_PHRASES else None)
    det.fit(id_labels, candidates, phrases=corpus, id_names=ID_NAMES)
    s_id = det.score_samples(id_images)
    table = dnm.evaluate(s_id, {k: det.score_samples(X) for k, X in ood_images.items()})
    results[method] = det
    print(method, f"({len(det.negatives_)} negatives)")
    print(table.to_markdown())
""", tag="evaluate"),
    code("""
det = results["dnm"]
print(det.explain(ood_images["other-concepts"][:1], k=3).to_text())
""", tag="explain"),
    md("""
## 5. The same from a shell

Save the arrays and use the command line:

```bash
python -c "import numpy as np; ..."    # np.save("cand.npy", candidates) etc.
dnm mine --candidates cand.npy --id-labels id.npy --adjectives-from dnm --detector det.npz
dnm score --detector det.npz --images id_images.npy --out id_scores.npy
dnm score --detector det.npz --images ood_images.npy --out ood_scores.npy
dnm evaluate --id id_scores.npy --ood myood=ood_scores.npy --out table.csv
```

(`--adjectives-from dnm` takes the noun/adjective mask of the full, unsubsampled corpus preset;
for a subset or your own corpus save the mask and pass `--is-adjective mask.npy`.)
"""),
]


def build(cells, kernel="python3"):
    nb = new_notebook(cells=cells)
    for i, c in enumerate(nb.cells):  # stable ids: regenerating changes only edited cells
        c["id"] = f"cell-{i:02d}"
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def main():
    for name, cells in (("quickstart.ipynb", QUICKSTART), ("bring-your-own-clip.ipynb", BYO)):
        nb = build(cells)
        nbformat.validate(nb)
        nbformat.write(nb, HERE / name)
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
