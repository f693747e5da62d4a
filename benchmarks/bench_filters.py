"""What the WordNet filters against false negatives drop, and what that does to the selections.

    python bench_filters.py [--shared ../../shared/data] [--out results/filters.txt]

1. The presets with ImageNet-1k as the ID classes: phrases dropped by each step in turn (the
   ID names, their synonyms, the hyponyms of the ID synsets, proper nouns), as `dnm corpus` does.
2. The LVIS categories (their rows carry WordNet synsets) as a real candidate pool against the
   ImageNet-1k labels (OpenAI CLIP ViT-B/32 text embeddings, "a {name}"): how many are ImageNet
   classes or their subcategories, and how many of those NegLabel's and DNM's selections take
   as negatives without the filter (false negatives), and with it (none, by construction).
Not a timing: counts, deterministic.
"""
import argparse
import platform
from pathlib import Path

import numpy as np

import dnm
from dnm import corpus, wordnet

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
ap.add_argument("--out", type=Path, default=None)
ap.add_argument("--ratio", type=float, default=0.15, help="selection ratio (NegLabel's 0.15)")
args = ap.parse_args()

lines = [f"bench_filters: dnm {dnm.__version__}, Python {platform.python_version()}"]
names = corpus.class_names("imagenet")
lines.append("1. presets, ImageNet-1k ID classes: phrases dropped by each step, in turn")
lines.append(f"{'preset':9} {'phrases':>8} {'ID names':>9} {'synonyms':>9} {'hyponyms':>9} "
             f"{'proper':>7} {'left':>7}")
for preset in ("dnm", "neglabel", "csp"):
    c0 = corpus.load(preset)
    c1 = c0.exclude(names)
    c2 = c1.exclude(names, synonyms=True)
    c3 = c2.exclude_hyponyms("imagenet")
    c4 = c3.exclude_proper_nouns()
    lines.append(f"{preset:9} {len(c0):8d} {len(c0) - len(c1):9d} {len(c1) - len(c2):9d} "
                 f"{len(c2) - len(c3):9d} {len(c3) - len(c4):7d} {len(c4):7d}")
dnm_pool = corpus.load("dnm")
lines.append("   each filter alone on dnm: hyponyms (with the classes) "
             f"{len(dnm_pool) - len(dnm_pool.exclude_hyponyms('imagenet'))}, hyponyms only "
             f"{len(dnm_pool) - len(dnm_pool.exclude_hyponyms('imagenet', include_self=False))}, "
             f"proper nouns {len(dnm_pool) - len(dnm_pool.exclude_proper_nouns())} "
             f"(rule 'any': {len(dnm_pool) - len(dnm_pool.exclude_proper_nouns(rule='any'))})")

clip = args.shared / "clip"
rows = [r.split("\t") for r in (clip / "lvis_categories.tsv").read_text().splitlines()[1:]]
lvis_names = [r[1].replace("_", " ") for r in rows]
syn = []
for r in rows:
    try:
        syn.append(wordnet.wnid(r[2]))
    except ValueError:
        syn.append(None)
under = set(wordnet.hyponyms(corpus.class_wnids("imagenet")))
ids = set(corpus.class_wnids("imagenet"))
bad = np.array([s in under for s in syn])
same = np.array([s in ids for s in syn])
X = np.load(clip / "imagenet1k_vitb32_a-cname.npy").astype(np.float32)
U = np.load(clip / "lvis_vitb32_a-cname.npy").astype(np.float32)
mask = np.zeros(len(rows), dtype=bool)
keep = np.flatnonzero(~bad)
lines.append(f"2. LVIS pool ({len(rows)} categories; {sum(s is None for s in syn)} synset not in "
             f"WordNet 3.0): {int(same.sum())} are ImageNet-1k classes, "
             f"{int(bad.sum() - same.sum())} more are their subcategories")
lines.append(f"   ratio {args.ratio}: selected / of them ImageNet classes or subcategories "
             "(false negatives)")
for label, sel in (("neglabel", lambda P: dnm.select_neglabel(X, P, np.zeros(len(P), bool), ratio=args.ratio)),
                   ("dnm k=10", lambda P: dnm.select_dnm(P, np.zeros(len(P), bool), noun_ratio=args.ratio, k=10))):
    before = np.asarray(sel(U))
    after = keep[np.asarray(sel(U[keep]))]
    lines.append(f"   {label:9} without the filter {before.size:4d} selected, {int(bad[before].sum()):3d} "
                 f"false negatives ({int(same[before].sum())} ImageNet classes); with it "
                 f"{after.size:4d} selected, {int(bad[after].sum())}; "
                 f"{len(set(before.tolist()) & set(after.tolist()))} in both")
text = "\n".join(lines) + "\n"
print(text, end="")
if args.out:
    args.out.write_text(text)
