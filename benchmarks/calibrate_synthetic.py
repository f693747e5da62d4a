"""Calibrate dnm.synthetic against real CLIP text geometry, and measure the methods on it.

    python benchmarks/calibrate_synthetic.py [--size default|small] [--seed 0] [--no-methods]
        [--out benchmarks/results/synthetic_calibration.txt]

Part 1 measures the same statistics on
  * real: OpenAI CLIP ViT-B/32 "a {c}" raw text embeddings in ../shared/data/clip
    (ImageNet-1k as the ID label set; LVIS + COCO + Objects365 as a candidate pool), and
  * synthetic: dnm.synthetic.make_benchmark(size, seed)
and prints them side by side (norms, pairwise / nearest-neighbour cosines among ID
labels, cosine to the common direction (kappa), norm-kappa correlation,
candidate-to-ID cosines, the norms of near-duplicates of ID names, and what the DNM
kNN rule correlates with).  The defaults of SyntheticConfig were chosen from these
numbers; nothing of the real data is copied into the package.

Part 2 mines negatives with NegLabel, CSP and DNM on the synthetic benchmark, scores
ID and every OOD set with MCM, energy, NegLabel and DNM scores, and prints AUROC /
FPR95 and the share of planted near-ID false negatives in each selection.
Uses dnm.select_dnm / dnm.select_neglabel / dnm.metrics when they exist, NumPy
references otherwise.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import dnm  # noqa: E402
try:  # the mining / metrics modules (C kernels); NumPy references below otherwise
    from dnm import metrics as _metrics, mining as _mining  # noqa: E402
except ImportError:  # pragma: no cover
    _metrics = _mining = None
from dnm.synthetic import KIND_NAMES, make_benchmark  # noqa: E402

DATA = os.path.join(os.path.dirname(HERE), "..", "shared", "data", "clip")


# --------------------------------------------------------------------------- helpers
def unit(a):
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def pct(x, q=(1, 5, 50, 95, 99)):
    return " ".join(f"{v:6.3f}" for v in np.percentile(x, q))


def text_stats(id_raw, cand_raw, near_mask=None):
    """Statistics of an ID label set and a candidate pool (raw embeddings)."""
    out = {}
    rI = np.linalg.norm(id_raw.astype(np.float64), axis=1)
    rN = np.linalg.norm(cand_raw.astype(np.float64), axis=1)
    UI, UN = unit(id_raw), unit(cand_raw)
    G = UI @ UI.T
    iu = np.triu_indices(len(UI), 1)
    c = G[iu]
    np.fill_diagonal(G, -2.0)
    nn = G.max(1)
    mdir = np.vstack([UI, UN]).mean(0)
    mdir /= np.linalg.norm(mdir)
    kI, kN = UI @ mdir, UN @ mdir
    CI = UN @ UI.T
    mx = CI.max(1)
    q95 = np.quantile(CI, 0.95, axis=1)
    out["ID norm pct 1/5/50/95/99"] = pct(rI)
    out["cand norm pct 1/5/50/95/99"] = pct(rN)
    out["ID-ID cos mean, sd"] = f"{c.mean():6.3f} {c.std():6.3f}"
    out["ID-ID cos pct 1/5/50/95/99"] = pct(c)
    out["ID nearest-neighbour cos pct"] = pct(nn)
    out["ID kappa (cos to mean dir) pct"] = pct(kI)
    out["cand kappa pct"] = pct(kN)
    out["corr(norm, kappa) ID / cand"] = f"{np.corrcoef(rI, kI)[0, 1]:6.3f} {np.corrcoef(rN, kN)[0, 1]:6.3f}"
    out["cand-ID cos mean"] = f"{CI.mean():6.3f}"
    out["cand max cos to ID pct"] = pct(mx)
    out["cand 0.95-quantile cos to ID pct"] = pct(q95)
    out["cand share max cos > 0.95 / > 0.99"] = f"{(mx > 0.95).mean():6.3f} {(mx > 0.99).mean():6.3f}"
    dup = (mx > 0.99) if near_mask is None else near_mask
    if dup.any():
        out["norm median: near-dup cand / all ID"] = f"{np.median(rN[dup]):6.3f} {np.median(rI):6.3f}"
    return out, mx


def knn_rho(raw, k):
    """DNM kNN log-distance (docs/design.md, "Mining") in NumPy (chunked): mean log of the k+1 smallest d_ij."""
    if _mining is not None:
        return np.asarray(_mining.knn_log_distance(raw, k=k))
    X = np.asarray(raw, dtype=np.float32)
    r = np.linalg.norm(X.astype(np.float64), axis=1).astype(np.float32)
    U = X / r[:, None]
    out = np.empty(len(X))
    for s in range(0, len(X), 2048):
        d = r[s:s + 2048, None] + r[None, :] - 2.0 * (U[s:s + 2048] @ U.T)
        part = np.partition(d, k, axis=1)[:, :k + 1]
        out[s:s + 2048] = np.log(part.astype(np.float64)).mean(1)
    return out


def rank_select(value, is_adj, noun_ratio, adj_ratio):
    idx = []
    for mask, ratio in ((~is_adj, noun_ratio), (is_adj, adj_ratio)):
        ii = np.flatnonzero(mask)
        o = ii[np.argsort(value[ii], kind="stable")]
        idx.append(o[: int(np.floor(ratio * len(ii)))])
    return np.concatenate(idx)


def select_neglabel(id_labels, cand, is_adj, ratio=0.15, csp=False):
    if _mining is not None:
        f = _mining.select_csp if csp else _mining.select_neglabel
        return np.asarray(f(id_labels, cand, is_adj, ratio=ratio))
    C = unit(cand) @ unit(id_labels).T
    q = np.quantile(C, 0.95, axis=1)
    if csp:
        mx = C.max(1)
        q = np.where(mx > 0.95, mx, q)
    return rank_select(q, is_adj, ratio, ratio)


def select_dnm(cand, is_adj, noun_ratio, adj_ratio, k):
    if _mining is not None:
        return np.asarray(_mining.select_dnm(cand, is_adj, noun_ratio=noun_ratio, adj_ratio=adj_ratio, k=k))
    return rank_select(knn_rho(cand, k), is_adj, noun_ratio, adj_ratio)


def auroc(pos, neg):
    if _metrics is not None:
        return float(_metrics.auroc(pos, neg))
    s = np.concatenate([pos, neg])
    from scipy.stats import rankdata
    r = rankdata(s)
    return float((r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def fpr95(pos, neg):
    if _metrics is not None:
        return float(_metrics.fpr_at_tpr(pos, neg, tpr=0.95))
    thr = np.sort(pos)[::-1][int(np.ceil(0.95 * len(pos))) - 1]
    return float((neg >= thr).mean())


# --------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-methods", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    lines = []

    def say(s=""):
        print(s, flush=True)
        lines.append(s)

    t0 = time.perf_counter()
    b = make_benchmark(args.size, seed=args.seed)
    t_gen = time.perf_counter() - t0
    say(f"dnm.synthetic.make_benchmark({args.size!r}, seed={args.seed}): {t_gen:.2f} s; "
        f"ID {b.id_labels.shape}, candidates {b.candidates.shape} "
        f"({b.is_adjective.mean():.3f} adjectives, {b.is_near_id.sum()} planted near-ID), "
        f"ID images {b.id_images.shape}, OOD {[(k, v.shape[0]) for k, v in b.ood_images.items()]}")
    syn, syn_mx = text_stats(b.id_labels, b.candidates[~b.is_adjective], b.is_near_id[~b.is_adjective])

    real = None
    if os.path.isdir(DATA):
        I = np.load(os.path.join(DATA, "imagenet1k_vitb32_a-cname.npy")).astype(np.float32)
        L = np.vstack([np.load(os.path.join(DATA, f"{n}_vitb32_a-cname.npy")).astype(np.float32)
                       for n in ("lvis", "coco", "objects365")])
        real, real_mx = text_stats(I, L)
    else:
        say(f"(real data not found at {DATA}: synthetic column only)")

    say("")
    say("Part 1: text geometry. real = OpenAI ViT-B/32 'a {c}' raw: ImageNet-1k (ID), "
        "LVIS+COCO+O365 (candidates, 1,648); synthetic = ID labels, candidate nouns")
    say(f"{'statistic':40s} | {'real':36s} | synthetic")
    for key in syn:
        say(f"{key:40s} | {(real or {}).get(key, '-'):36s} | {syn[key]}")
    say("  (real near-dups: LVIS/COCO/O365 rows with max cos > 0.99 to an ImageNet row; "
        "synthetic: planted near-ID)")

    # modality gap and adjective geometry (synthetic only; no real images in shared/data)
    rng = np.random.default_rng(0)
    sub = rng.choice(len(b.id_images), min(2000, len(b.id_images)), replace=False)
    X = unit(b.id_images[sub])
    UI = unit(b.id_labels)
    S = X @ UI.T
    own = S[np.arange(len(sub)), b.id_image_labels[sub]]
    acc = (S.argmax(1) == b.id_image_labels[sub]).mean()
    XX = X @ X.T
    iu = np.triu_indices(len(X), 1)
    A = unit(b.candidates[b.is_adjective][:1000])
    Nn = unit(b.candidates[~b.is_adjective][:1000])
    say("")
    say("Synthetic modality gap (real CLIP ViT-B/32 for reference: own-class ~0.3, "
        "zero-shot top-1 ~0.6 on ImageNet, text-text 0.6-0.9)")
    say(f"  image-own-class-text cos mean {own.mean():.3f} (pct 5/50/95 {pct(own, (5, 50, 95))})")
    say(f"  image-other-text cos mean     {S.mean():.3f}; image-image cos mean {XX[iu].mean():.3f}")
    say(f"  zero-shot top-1 accuracy of ID images: {acc:.3f}")
    say(f"  adjective-adjective cos mean {np.mean(A @ A.T):.3f}; adjective-noun {np.mean(A @ Nn.T):.3f}; "
        f"noun-noun {np.mean(Nn @ Nn.T):.3f}")

    # what the DNM rule correlates with
    k = 100 if args.size == "default" else 10
    nouns = ~b.is_adjective
    t0 = time.perf_counter()
    rho = knn_rho(b.candidates, k)
    t_rho = time.perf_counter() - t0
    rN = np.linalg.norm(b.candidates.astype(np.float64), axis=1)
    say("")
    say(f"DNM kNN rule (k={k}, {t_rho:.1f} s) -- rho correlates with the raw norm "
        f"(real LVIS pool, k=10: corr 0.997, corr(rho, max cos to ID) 0.175)")
    say(f"  synthetic nouns: corr(rho, norm) {np.corrcoef(rho[nouns], rN[nouns])[0, 1]:.3f}, "
        f"corr(rho, max cos to ID) {np.corrcoef(rho[nouns], syn_mx)[0, 1]:.3f}")
    kinds = b.candidate_kind
    for kd, nm in enumerate(KIND_NAMES):
        msk = kinds == kd
        if msk.any():
            say(f"  kind {nm:10s}: n={msk.sum():6d}  median norm {np.median(rN[msk]):6.2f}  "
                f"median rho {np.median(rho[msk]):7.3f}")

    if not args.no_methods:
        methods_report(b, say, k)

    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"written {args.out}")


def methods_report(b, say, k):
    P = b.id_labels
    cand = b.candidates
    is_adj = b.is_adjective
    t = {}
    t0 = time.perf_counter()
    sel = {"NegLabel": select_neglabel(P, cand, is_adj, 0.15)}
    sel["CSP"] = select_neglabel(P, cand, is_adj, 0.15, csp=True)
    t["neglabel+csp mining"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sel["DNM"] = select_dnm(cand, is_adj, 0.23, 0.13, k)
    t["dnm mining"] = time.perf_counter() - t0
    say("")
    say("Part 2: methods on the synthetic benchmark (NegLabel ratio 0.15, eta 0.95; CSP = max-cos>0.95 rule; "
        f"DNM ViT-B/16 preset a=0.23/0.13, k={k}, tau=0.5; T=0.01, G=100)")
    base_rate = b.is_near_id.mean()
    for name, s in sel.items():
        say(f"  {name:8s} selects {len(s):6d} negatives; planted near-ID among them: "
            f"{b.is_near_id[s].mean():.4f} (corpus: {base_rate:.4f}); adjectives {is_adj[s].mean():.3f}")
    imgs = {"ID": b.id_images, **b.ood_images}
    G = 100
    scorers = {
        "MCM": lambda X: dnm.mcm_score(X, P),
        "energy": lambda X: dnm.energy_score(X, P),
        "NegLabel": lambda X: dnm.neglabel_score(X, P, cand[sel["NegLabel"]], groups=G),
        "CSP": lambda X: dnm.neglabel_score(X, P, cand[sel["CSP"]], groups=G),
        "DNM": lambda X: dnm.dnm_score(X, P, cand[sel["DNM"]], tau=0.5, groups=G),
        "NegLabel(DNM negs)": lambda X: dnm.neglabel_score(X, P, cand[sel["DNM"]], groups=G),
        "NegLabel(all cand)": lambda X: dnm.neglabel_score(X, P, cand, groups=G),
    }
    ood = list(b.ood_images)
    say(f"  {'method':20s} " + " ".join(f"{o + ' AUROC':>12s} {o + ' FPR95':>12s}" for o in ood))
    for mname, fn in scorers.items():
        t0 = time.perf_counter()
        sc = {k2: fn(v) for k2, v in imgs.items()}
        t[f"score {mname}"] = time.perf_counter() - t0
        say(f"  {mname:20s} " + " ".join(
            f"{auroc(sc['ID'], sc[o]):12.4f} {fpr95(sc['ID'], sc[o]):12.4f}" for o in ood))
    say("  times: " + ", ".join(f"{k2} {v:.2f}s" for k2, v in t.items()))


if __name__ == "__main__":
    main()
