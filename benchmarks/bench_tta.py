"""Benchmark: dnm's streaming AdaNeg and TANL (dnm.tta) against NumPy's products of the same
shapes and against vectorised PyTorch CPU versions written from the method description.

Run as a script:  python benchmarks/bench_tta.py [--quick] [--n 20000] [--k 69500] ...

Issue 14 shapes (the default): C = 1,000 ID labels, AdaNeg M = 10,000 negatives, TANL
K = 69,500 corpus rows, D = 512, a stream of N = 20,000 images in batches of 256, float32,
synthetic (half the images near an ID label, half pure noise).  In one run, per method:
  (a) dnm: the functional form over the whole stream (state reset included), wall time;
  (b) the yardstick: NumPy's products of the stream against the same label matrix, batch
      by batch (AdaNeg: [ID; negatives] twice, for the vanilla and the adaptive pass;
      TANL: [ID; corpus] once) - NumPy's own OpenBLAS and threads - timed in alternation
      with (a), batch by batch, and reported also as the median over batches of the ratio;
  (c) PyTorch (CPU, float32, torch's threads): the method vectorised over the batch
      (AdaNeg's memory insertion a loop over the cached images, as in the official code; TANL's
      activation-aware score by prefix sums; AdaNeg on dnm's groups of negatives, so both
      compute the same scores: their largest difference is reported), on the batches that
      start among the first --torch-n images, in the same batch-by-batch alternation as (a) and (b) (the reset excluded): the
      speedup over those batches and its median over them; and TANL once more with the official code's
      activation-aware score (ceil(beta / step) softmaxes per image) on --official-n images;
  (d) peak resident memory of the process and the size of the method's state.
--quick: N = 2,048, K = 20,000 (a minute or so).  Writes benchmarks/results/tta.txt (or
tta_quick.txt with --quick) with the CPU, the float kernel and the thread count.
"""
import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

# NumPy's OpenBLAS worker threads spin for about 2^28 cycles (~0.1 s) after every product before
# they sleep; in the batch-by-batch alternation below that takes a core from whichever method
# runs next (measured on the 2-core EPYC: dnm's AdaNeg batch 54 ms alone, 80 ms right after
# NumPy's two products).  A short spin (2^4 cycles) removes that without changing NumPy's own
# product time (19.4 vs 19.2 ms at 256 x 512 x 11,000).  Set before NumPy loads OpenBLAS; an
# explicit setting in the environment is kept.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np  # noqa: E402

try:
    import dnm
except ImportError:  # run from a checkout without installing: use the in-place build
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import dnm

from _bench import proc_status

MIB = 1024 ** 2
KERNEL_TEXT = {
    "avx2": "csrc/tta_simd.h: dnm's register-tile product, fused per-block softmax epilogue",
    "avx512": "csrc/tta_simd.h: dnm's register-tile product, fused per-block softmax epilogue",
    "blas": "csrc/tta.c: OpenBLAS SGEMM tiles + fused softmax epilogue"}


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def data(args, seed=0):
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.standard_normal(s, dtype=np.float32)  # noqa: E731
    t, n, u, z = f(args.c, args.d), f(args.m, args.d), f(args.k, args.d), f(15, args.d)
    X = f(args.n, args.d)
    half = args.n // 2
    X[:half] += 3.0 * t[rng.integers(0, args.c, half)] / np.linalg.norm(t, axis=1).mean()
    X = X[rng.permutation(args.n)]
    return t, n, u, z, X


def round_robin(obj, X, lab, bs, times, torch_steps=(), torch_n=0):
    """The stream through obj and NumPy's product(s) of each batch, batch by batch in
    alternation, so that all see the same load of a shared machine; the PyTorch steppers
    (name, step) take the batches that start among the first torch_n images, in the same
    alternation (which contender goes first rotates batch by batch).  Returns (dnm s, numpy s,
    median over batches of dnm / numpy, images the steppers took, {name: (torch s, dnm s on the
    same batches, median over those batches of torch / dnm, largest |torch score - dnm
    score|)})."""
    L = lab.T.copy()
    td, tn = [], []
    tt = {name: [] for name, _ in torch_steps}
    diff = {name: 0.0 for name, _ in torch_steps}
    n_torch = 0

    def run(c, xb):
        t0 = time.perf_counter()
        if c == 0:
            got = obj.update(xb)
        elif c == 1:
            for _ in range(times):
                xb @ L
            got = None
        else:
            got = torch_steps[c - 2][1](xb)
        return time.perf_counter() - t0, got

    for b, i in enumerate(range(0, len(X), bs)):
        xb = X[i:i + bs]
        order = [0, 1] + ([2 + k for k in range(len(torch_steps))] if i < torch_n else [])
        n_torch += len(xb) if len(order) > 2 else 0
        order = order[b % len(order):] + order[:b % len(order)]
        scores = {}
        for c in order:
            dt, scores[c] = run(c, xb)
            (td if c == 0 else tn if c == 1 else tt[torch_steps[c - 2][0]]).append(dt)
        for k, (name, _) in enumerate(torch_steps):
            if 2 + k in scores:
                diff[name] = max(diff[name], float(np.abs(scores[2 + k] - scores[0]).max()))
    td, tn = np.array(td), np.array(tn)
    versus = {}
    for name, v in tt.items():
        v, d = np.array(v), td[:len(v)]
        versus[name] = (v.sum(), d.sum(), float(np.median(v / d)) if len(v) else float("nan"),
                        diff[name])
    return td.sum(), tn.sum(), float(np.median(td / tn)), n_torch, versus


# ---- PyTorch versions (float32, as the official code on a CPU) --------------------------------

def torch_adaneg(t, n, index, L=10, thr=0.5, gap=0.5, lam=0.1, T=0.01):
    """AdaNeg in PyTorch, float32, with the groups of negatives ``index`` (G, Q) (dnm's, so
    both compute the same scores): returns step(batch) -> the batch's scores (the state kept
    between calls)."""
    import torch
    t = torch.nn.functional.normalize(torch.from_numpy(t), dim=1)
    n = torch.nn.functional.normalize(torch.from_numpy(n), dim=1)
    C, M, D = t.shape[0], n.shape[0], t.shape[1]
    G = index.shape[0]
    perm = torch.from_numpy(np.ascontiguousarray(index.ravel()))
    labels = torch.cat([t, n])
    mem = torch.zeros(C + M, L, D)
    mem[:, 0] = labels
    ent = torch.zeros(C + M, L)
    cnt = torch.ones(C + M, dtype=torch.long)
    hi, lo = thr + gap * (1 - thr), thr - gap * thr

    def grouped(z):
        a, b = z[:, :C], z[:, C:][:, perm].reshape(z.shape[0], G, -1)
        m = torch.maximum(a.max(1).values, b.amax((1, 2)))[:, None]
        S = torch.exp(a - m).sum(1, keepdim=True)
        N = torch.exp(b - m[:, :, None]).sum(2)
        return (S / (S + N)).mean(1)

    def step(xb):
        x = torch.nn.functional.normalize(torch.from_numpy(xb), dim=1)
        z = x @ labels.T / T
        v = grouped(z)
        pid = torch.softmax(z[:, :C], 1)
        pneg = torch.softmax(z[:, C:], 1)
        hid = -(pid * torch.log(pid + 1e-8)).sum(1)
        hneg = -(pneg * torch.log(pneg + 1e-8)).sum(1)
        cid, cneg = z[:, :C].argmax(1), z[:, C:].argmax(1)
        for j in torch.nonzero(v > hi).flatten().tolist() + torch.nonzero(v < lo).flatten().tolist():
            lab, H = (int(cid[j]), hid[j]) if v[j] > hi else (C + int(cneg[j]), hneg[j])
            if cnt[lab] < L:
                mem[lab, cnt[lab]] = x[j]
                ent[lab, cnt[lab]] = H
                cnt[lab] += 1
            else:
                k = int(torch.argmax(ent[lab, 1:])) + 1
                if H < ent[lab, k]:
                    mem[lab, k] = x[j]
                    ent[lab, k] = H
        prox = torch.nn.functional.normalize(mem.sum(1), dim=1)
        a = grouped(x @ prox.T / T)
        return (a + lam * v).numpy()

    return step


def torch_tanl(t, u, z, beta=1000, step=1, gap=0.5, Lq=300, SL=20000, T=0.01,
               official_aas=False, double=False):
    """TANL in PyTorch.  double=False: float32 throughout, torch.topk (its own tie order);
    double=True: as dnm's default computes it - the products in float32, the activations in
    float64 (near-ties in the top beta rank differently in float32), float32 queues with
    their means in float64, top-beta by a stable descending sort (ties: lower index first).
    Returns advance(batch) -> the batch's scores (the state kept between calls)."""
    import torch
    t = torch.nn.functional.normalize(torch.from_numpy(t), dim=1)
    u = torch.nn.functional.normalize(torch.from_numpy(u), dim=1)
    z = torch.nn.functional.normalize(torch.from_numpy(z), dim=1)
    C = t.shape[0]
    lab = torch.cat([t, u])
    g = torch.Generator().manual_seed(0)

    def logits(q):
        z = q @ lab.T
        return (z.double() if double else z) / T

    def act(q):
        return torch.softmax(logits(q), 1)

    def top(a):
        k = min(beta, u.shape[0])
        if double:
            return torch.sort(a, descending=True, stable=True).indices[:k]
        return torch.topk(a, k).indices

    def stored(R):  # a queue's rows (float32 in both versions)
        return R.float()

    def qmean(q):
        return q.double().mean(0) if double else q.mean(0)

    def aas(P, sel, Z=None):
        if official_aas and Z is not None:  # ceil(beta / step) softmaxes, as the official code
            a, b = Z[:, :C], Z[:, C:][:, sel]
            n = sel.numel()
            ks = range(1, math.ceil(beta / step) + 1) if step else [n]
            acc = 0
            for k in ks:
                Pk = min(k * step, n) if step else n
                acc = acc + torch.softmax(torch.cat([a, b[:, :Pk]], 1), 1)[:, :C].sum(1)
            return acc / len(ks)
        A = P[:, :C].sum(1, keepdim=True)
        cs = torch.cumsum(P[:, C:][:, sel], 1)
        n = sel.numel()
        if step == 0:
            return (A / (A + cs[:, -1:]))[:, 0]
        k = torch.arange(1, math.ceil(beta / step) + 1)
        Pk = torch.clamp(k * step, max=n) - 1
        return (A / (A + cs[:, Pk])).mean(1)

    grid = torch.arange(0, 1, 0.01)

    def otsu(s):
        m1 = s[None, :] >= grid[:, None]
        n1 = m1.sum(1)
        n0 = s.numel() - n1
        mu1 = torch.where(m1, s, 0).sum(1) / n1
        mu0 = torch.where(m1, 0, s).sum(1) / n0
        v1 = torch.where(m1, (s - mu1[:, None]) ** 2, 0).sum(1) / n1
        v0 = torch.where(m1, 0, (s - mu0[:, None]) ** 2).sum(1) / n0
        crit = torch.where((n0 == 0) | (n1 == 0), torch.inf, n0 / s.numel() * v0 + n1 / s.numel() * v1)
        if torch.isinf(crit).all():
            return 0.5
        cand = torch.nonzero(crit == crit.min()).flatten()
        return float(grid[cand[len(cand) // 2]])

    Pt = torch.cat([act(t[i:i + 256]) for i in range(0, C, 256)])
    qpos = stored(Pt[torch.randperm(C, generator=g)][-Lq:, C:])
    Pz = act(z)
    qneg = stored(Pz[torch.randperm(15, generator=g)][:, C:])
    sel0 = top(qmean(qneg) - qmean(qpos))
    squeue = torch.cat([aas(Pt, sel0), aas(Pz, sel0)])
    state = {"qpos": qpos, "qneg": qneg, "squeue": squeue}

    def advance(xb):
        qpos, qneg, squeue = state["qpos"], state["qneg"], state["squeue"]
        x = torch.nn.functional.normalize(torch.from_numpy(xb), dim=1)
        Z = logits(x)
        P = torch.softmax(Z, 1)
        R = P[:, C:]
        mpos, mneg = qmean(qpos), qmean(qneg)
        sel0 = top(mneg - mpos)
        s0 = aas(P, sel0, Z)
        squeue = torch.cat([squeue, s0])[-SL:]
        th = otsu(squeue)
        up, down = s0 > th + gap * (1 - th), s0 < th - gap * th
        pos = R[up].mean(0) if up.any() else mpos
        neg = R[down].mean(0) if down.any() else mneg
        sel1 = top(neg - pos)
        out = aas(P, sel1, Z)
        state["qpos"] = torch.cat([qpos, stored(R[up])])[-Lq:]
        state["qneg"] = torch.cat([qneg, stored(R[down])])[-Lq:]
        state["squeue"] = squeue
        return out.numpy()

    return advance


def timed_stream(step, X, bs):
    """Seconds for step over the stream X in batches of bs."""
    t0 = time.perf_counter()
    for i in range(0, len(X), bs):
        step(X[i:i + bs])
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--c", type=int, default=1000)
    ap.add_argument("--m", type=int, default=10000)
    ap.add_argument("--k", type=int, default=None)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--torch-n", type=int, default=512, help="images the PyTorch versions score")
    ap.add_argument("--official-n", type=int, default=256,
                    help="images the PyTorch TANL with the official AAS (ceil(beta/step) "
                         "softmaxes per image) scores")
    ap.add_argument("--methods", default="adaneg,tanl")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    args.n = args.n or (2048 if args.quick else 20000)
    args.k = args.k or (20000 if args.quick else 69500)
    t, n, u, z, X = data(args)
    import torch

    lines = [
        f"bench_tta: C={args.c} M={args.m} K={args.k} D={args.d} N={args.n} batch={args.batch} "
        "float32 synthetic",
        f"CPU: {cpu_name()}; dnm threads {dnm.get_num_threads()}; torch threads "
        f"{torch.get_num_threads()}; float kernel: {dnm._config.resolved_kernel()} "
        f"({KERNEL_TEXT[dnm._config.resolved_kernel()]}); numpy {np.__version__}, "
        f"torch {torch.__version__}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '')}, "
        f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT', '')}",
        f"{'method':8s} {'reset s':>7s} {'dnm s':>8s} {'dnm ms/img':>10s} {'numpy s':>8s} {'ratio':>6s} "
        f"{'median':>6s} "
        f"{'torch ms/img':>12s} {'speedup':>8s} {'median':>7s} {'state MiB':>9s} "
        f"{'peak RSS MiB':>12s}",
    ]
    extra = []
    for method in args.methods.split(","):
        tn = min(args.torch_n, args.n)
        if method == "adaneg":
            t0 = time.perf_counter()
            obj = dnm.AdaNeg(t, n)
            t_reset = time.perf_counter() - t0
            el, yard, med, tn, vs = round_robin(obj, X, np.concatenate([t, n]), args.batch, 2,
                                                [("f32", torch_adaneg(t, n, obj.index))], tn)
            state = (obj._pool[:obj._pool_n].nbytes + obj._proxies.nbytes + obj.entropies_.nbytes
                     + obj._slot.nbytes)
        else:
            t0 = time.perf_counter()
            obj = dnm.TANL(t, u, z)
            t_reset = time.perf_counter() - t0
            el, yard, med, tn, vs = round_robin(obj, X, np.concatenate([t, u]), args.batch, 1,
                                                [("f32", torch_tanl(t, u, z)),
                                                 ("f64", torch_tanl(t, u, z, double=True))], tn)
            state = obj._qpos.buf.nbytes + obj._qneg.buf.nbytes + obj._squeue.nbytes
            ts, ds, dm, _ = vs["f64"]
            extra.append(f"tanl: PyTorch at dnm's precision (float64 activations, float32 queues "
                         f"with float64 means, ties to the lower index; the first {tn} images, "
                         f"in the alternation): {ts / tn * 1e3:.3f} ms/img = {ts / ds:.2f} x dnm "
                         f"on the same batches (median over batches {dm:.2f})")
            on = min(args.official_n, args.n)
            to = timed_stream(torch_tanl(t, u, z, official_aas=True), X[:on], args.batch) / on
            extra.append(f"tanl: PyTorch with the official activation-aware score (one softmax "
                         f"per prefix, {on} images): {to * 1e3:.3f} ms/img = "
                         f"{to / (el / args.n):.1f} x dnm")
        ts, ds, tmed, dmax = vs["f32"]
        tt = ts / tn
        extra.append(f"{method}: float32 PyTorch's scores against dnm's on those batches: largest "
                     f"difference {dmax:.1e}" + ("" if method == "tanl" else
                                                 " (the same groups of negatives)"))
        del obj
        per = el / args.n
        lines.append(f"{method:8s} {t_reset:7.2f} {el:8.2f} {per * 1e3:10.3f} {yard:8.2f} {el / yard:6.2f} "
                     f"{med:6.2f} "
                     f"{tt * 1e3:12.3f} {ts / ds:8.2f} {tmed:7.2f} {state / MIB:9.0f} "
                     f"{proc_status('VmHWM') / MIB:12.0f}")
        print(lines[-1], flush=True)
    lines += extra
    lines.append(f"load average at the end: {os.getloadavg()[0]:.2f} (shared 2-core machine)")
    lines.append("reset s = construction (TANL: the ID texts' activation rows and initial "
                 "scores); dnm s = the stream; ratio = dnm s / numpy products; median = the median over "
                 "batches of dnm / numpy, timed in alternation batch by batch (the figure to quote "
                 "on a loaded machine); speedup = torch s / dnm s over the batches that start "
                 "among the first --torch-n images of the stream (torch: float32 throughout with torch.topk's tie order, its reset "
                 "excluded), both timed in the same alternation batch by batch; its median = the "
                 "median over those batches of torch / dnm.")
    text = "\n".join(lines) + "\n"
    print(text)
    out = args.out or str(Path(__file__).resolve().parent / "results" /
                          ("tta_quick.txt" if args.quick else "tta.txt"))
    with open(out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
