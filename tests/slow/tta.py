"""Slow, obvious NumPy twins of the test-time adaptive scores AdaNeg and TANL, in float64,
written from the method description (per-image Python loops on purpose: every step is the
text's step, in the text's order).  One storage choice of dnm's is mirrored: TANL's queue
entries are rounded to float32 (their means taken in float64), or kept in float64 with
queue_dtype="float64"."""
import math

import numpy as np


def normalize(a):
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def grouped(a, b, index):
    """NegLabel's grouped score of one image: a = its ID logits (C,), b = its logits against
    the M negatives (or proxies), index = (G, Q) rows of b."""
    out = 0.0
    for g in range(index.shape[0]):
        bg = b[index[g]]
        m = max(a.max(), bg.max())
        s = np.exp(a - m).sum()
        n = np.exp(bg - m).sum()
        out += s / (s + n)
    return out / index.shape[0]


def entropy(z):
    """-sum p log(p + 1e-8), p = softmax(z) (max-shifted)."""
    e = np.exp(z - z.max())
    p = e / e.sum()
    return float(-(p * np.log(p + 1e-8)).sum())


class AdaNegTwin:
    def __init__(self, id_labels, negatives, index, *, threshold=0.5, gap=0.5, memory_length=10,
                 weight=0.1, sample_adaptive=False, beta=5, replacement="entropy",
                 temperature=0.01, output="combined"):
        self.t = normalize(id_labels)
        self.n = normalize(negatives)
        self.C, self.M = self.t.shape[0], self.n.shape[0]
        self.index = np.asarray(index)
        self.hi = threshold + gap * (1 - threshold)
        self.lo = threshold - gap * threshold
        self.L = memory_length
        self.weight = weight
        self.samada = sample_adaptive
        self.beta = float(beta)  # as given (the official script passes 5.5 and casts it to 5)
        self.rule = replacement
        self.T = temperature
        self.output = output
        self.reset()

    def reset(self):
        # per label: list of (image feature, entropy); the text slot is implicit
        self.mem = [[] for _ in range(self.C + self.M)]

    def text(self, label):
        return self.t[label] if label < self.C else self.n[label - self.C]

    def insert(self, label, x, H):
        lst = self.mem[label]
        if len(lst) < self.L - 1:
            lst.append((x, H))
            return
        if self.L - 1 == 0 or self.rule == "first":
            return
        ents = [h for _, h in lst]
        mx = max(ents)
        if H < mx:
            j = max(i for i, h in enumerate(ents) if h == mx)  # last such slot
            lst[j] = (x, H)

    def proxy(self, label, x=None):
        slots = [self.text(label)] + [m for m, _ in self.mem[label]]
        if x is None:
            p = np.sum(slots, axis=0)
        else:
            if len(slots) == 1:
                return slots[0]
            p = np.zeros_like(slots[0])
            for m in slots:
                p = p + np.exp(-self.beta * (1 - x @ m)) * m
        return p / np.linalg.norm(p)

    def batch(self, X):
        X = normalize(X)
        C = self.C
        labels = np.concatenate([self.t, self.n])
        z = X @ labels.T / self.T
        v = np.array([grouped(zi[:C], zi[C:], self.index) for zi in z])
        for i in range(X.shape[0]):  # ID pass, batch order
            if v[i] > self.hi:
                c = int(np.argmax(z[i, :C]))
                self.insert(c, X[i], entropy(z[i, :C]))
        for i in range(X.shape[0]):  # OOD pass, batch order
            if v[i] < self.lo:
                k = int(np.argmax(z[i, C:]))
                self.insert(C + k, X[i], entropy(z[i, C:]))
        a = np.empty(X.shape[0])
        for i in range(X.shape[0]):
            if self.samada:
                P = np.array([self.proxy(lab, X[i]) for lab in range(C + self.M)])
            else:
                P = np.array([self.proxy(lab) for lab in range(C + self.M)])
            zi = P @ X[i] / self.T
            a[i] = grouped(zi[:C], zi[C:], self.index)
        if self.output == "adaptive":
            return a
        if self.output == "vanilla":
            return v
        return a + self.weight * v


def adaneg(stream, id_labels, negatives, index, batch_size=256, **kw):
    tw = AdaNegTwin(id_labels, negatives, index, **kw)
    X = np.asarray(stream, dtype=np.float64)
    return np.concatenate([tw.batch(X[i:i + batch_size]) for i in range(0, len(X), batch_size)])


# ---- TANL ------------------------------------------------------------------------------------

def activation(q, t, u, T):
    """softmax over [t; u] of the logits of q (rows), restricted to the corpus columns."""
    z = normalize(q) @ np.concatenate([t, u]).T / T
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True))[:, t.shape[0]:]


def top(a, beta):
    """the beta largest entries of a, descending, ties lower index first."""
    order = sorted(range(len(a)), key=lambda j: (-a[j], j))
    return np.array(order[:min(beta, len(a))], dtype=np.int64)


def aas(a, b_sel, beta, step):
    """activation-aware score: a = ID logits, b_sel = logits of the selected negatives in
    selection order (n of them)."""
    n = len(b_sel)
    m = max(a.max(), b_sel.max())
    S = np.exp(a - m).sum()
    eb = np.exp(b_sel - m)
    if step == 0:
        return S / (S + eb.sum())
    vals = []
    for k in range(1, math.ceil(beta / step) + 1):
        P = min(k * step, n)
        vals.append(S / (S + eb[:P].sum()))
    return float(np.mean(vals))


def otsu(scores):
    s = np.asarray(scores, dtype=np.float64)
    grid = (np.arange(100) * 0.01).astype(np.float32)
    crit = []
    for th in grid:
        c1 = s[s >= th]
        c0 = s[s < th]
        if len(c1) == 0 or len(c0) == 0:
            crit.append(np.inf)
        else:
            w0, w1 = len(c0) / len(s), len(c1) / len(s)
            crit.append(w0 * c0.var() + w1 * c1.var())
    crit = np.array(crit)
    if np.isinf(crit).all():
        return 0.5
    cand = np.flatnonzero(crit == crit.min())
    return float(grid[cand[len(cand) // 2]])


def f32(row):
    """A queue entry: the float64 activations rounded to nearest float32 (dnm's queues hold
    float32; the C cast rounds the same way)."""
    return np.asarray(row, dtype=np.float64).astype(np.float32)


def qmean(queue):
    """A queue's mean in float64: the float32 rows widened (exactly), added in queue order."""
    return np.mean(np.array(queue, dtype=np.float64), axis=0)


class TANLTwin:
    def __init__(self, id_labels, corpus, noise, id_order, noise_order, *, top=1000, step=1,
                 alpha=0.0, gap=0.5, queue_length=300, score_queue_length=20000,
                 temperature=0.01, queue_dtype="float32"):
        self.t = normalize(id_labels)
        self.u = normalize(corpus)
        self.z = normalize(noise)
        self.C = self.t.shape[0]
        self.beta, self.step, self.alpha, self.gap = top, step, alpha, gap
        self.L, self.SL, self.T = queue_length, score_queue_length, temperature
        self.id_order, self.noise_order = np.asarray(id_order), np.asarray(noise_order)
        # a queue entry: rounded to nearest float32 (the default), or kept in float64
        self.q = f32 if queue_dtype == "float32" else (lambda r: np.asarray(r, dtype=np.float64))
        self.reset()

    def act(self, q):
        return activation(q, self.t, self.u, self.T)

    def score(self, q, sel):
        z = normalize(q) @ np.concatenate([self.t, self.u]).T / self.T
        return np.array([aas(zi[:self.C], zi[self.C:][sel], self.beta, self.step) for zi in z])

    def reset(self):
        self.qpos = [self.q(r) for r in self.act(self.t)[self.id_order]][-self.L:]
        self.qneg = [self.q(r) for r in self.act(self.z)[self.noise_order]][-self.L:]
        sel0 = top(qmean(self.qneg) - qmean(self.qpos), self.beta)
        self.squeue = list(self.score(self.t, sel0)) + list(self.score(self.z, sel0))
        self.squeue = self.squeue[-self.SL:]

    def batch(self, X):
        R = self.act(X)
        mpos, mneg = qmean(self.qpos), qmean(self.qneg)
        sel0 = top(mneg - mpos, self.beta)
        s0 = self.score(X, sel0)
        self.squeue = (self.squeue + list(s0))[-self.SL:]
        th = otsu(self.squeue)
        idl = [i for i in range(len(X)) if s0[i] > th + self.gap * (1 - th)]
        oodl = [i for i in range(len(X)) if s0[i] < th - self.gap * th]
        pos = self.alpha * mpos + (1 - self.alpha) * R[idl].mean(axis=0) if idl else mpos
        neg = self.alpha * mneg + (1 - self.alpha) * R[oodl].mean(axis=0) if oodl else mneg
        sel1 = top(neg - pos, self.beta)
        out = self.score(X, sel1)
        self.qpos = (self.qpos + [self.q(R[i]) for i in idl])[-self.L:]
        self.qneg = (self.qneg + [self.q(R[i]) for i in oodl])[-self.L:]
        return out


def tanl(stream, id_labels, corpus, noise, id_order, noise_order, batch_size=256, **kw):
    tw = TANLTwin(id_labels, corpus, noise, id_order, noise_order, **kw)
    X = np.asarray(stream, dtype=np.float64)
    return np.concatenate([tw.batch(X[i:i + batch_size]) for i in range(0, len(X), batch_size)])


# ---- consumers of unscaled softmax rows (csrc/tta.h) -----------------------------------------

def unpanel(rows, mr, n):
    """The first n rows, row-major, of rows stored in panels of mr (csrc/tta.h: row i's
    column j at ((i // mr) * L + j) * mr + i % mr of the buffer)."""
    L = rows.shape[1]
    return rows.reshape(-1, L, mr).transpose(0, 2, 1).reshape(-1, L)[:n]


def panelled(rows, mr):
    """rows (N, L) in panels of mr (the inverse of unpanel; padding rows 0)."""
    N, L = rows.shape
    n = -(-N // mr) * mr
    pad = np.zeros((n, L), dtype=rows.dtype)
    pad[:N] = rows
    return np.ascontiguousarray(pad.reshape(n // mr, mr, L).transpose(0, 2, 1).reshape(n, L))


def scaled(rows, scales, lb, mr=1):
    """P = rows (in panels of mr, float32 or float64) x the scale of each column's block
    (block = lb columns), in double."""
    R = unpanel(np.asarray(rows, dtype=np.float64), mr, scales.shape[0])
    return R * np.repeat(scales, lb, axis=1)[:, :R.shape[1]]


def mean_in_order(rows):
    """The rows' mean, added one row after another from 0, then divided by their count."""
    acc = np.zeros(rows.shape[1])
    for r in rows:
        acc = acc + r
    return acc / len(rows)


def entropy_of(v, mass):
    """-sum p log(p + 1e-8), p = v / mass (v a row's activations, in float64)."""
    p = np.asarray(v, dtype=np.float64) / mass
    return float(-(p * np.log(p + 1e-8)).sum())
