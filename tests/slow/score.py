"""NumPy twins of the scores (docs/design.md, "Numerics"): full (N, C + M) logit matrices in float64,
exponentials shifted by each image's maximum logit."""
import numpy as np


def normalize(a):
    """Rows divided by their L2 norm, scaled first by their largest magnitude (so that a
    norm above the float64 range or a subnormal one does not turn the row into 0 or inf)."""
    a = np.asarray(a, dtype=np.float64)
    a = a / np.abs(a).max(axis=1, keepdims=True)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def groups_index(n_neg, groups, seed=0):
    if isinstance(groups, (int, np.integer)):
        G = int(groups)
        Q = n_neg // G
        return np.random.default_rng(seed).permutation(G * Q).reshape(G, Q)
    return np.asarray(groups)


def mcm(images, id_labels, temperature=1.0):
    s = normalize(images) @ normalize(id_labels).T / temperature
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).max(axis=1)


def max_logit(images, id_labels):
    return (normalize(images) @ normalize(id_labels).T).max(axis=1)


def energy(images, id_labels, temperature=0.01):
    s = normalize(images) @ normalize(id_labels).T
    m = s.max(axis=1, keepdims=True)
    return m[:, 0] + temperature * np.log(np.exp((s - m) / temperature).sum(axis=1))


def _sums(images, id_labels, negatives, temperature, idx):
    x = normalize(images)
    s = x @ normalize(id_labels).T
    u = x @ normalize(negatives).T
    m = np.maximum(s.max(axis=1), u.max(axis=1))[:, None]  # max over the image's logits
    S = np.exp((s - m) / temperature).sum(axis=1)
    eu = np.exp((u - m) / temperature)
    Nj = np.stack([eu[:, g].sum(axis=1) for g in idx], axis=1)  # (N, G)
    return S, Nj


def neglabel(images, id_labels, negatives, temperature=0.01, groups=100, seed=0):
    idx = groups_index(len(negatives), groups, seed)
    S, Nj = _sums(images, id_labels, negatives, temperature, idx)
    return (S[:, None] / (S[:, None] + Nj)).mean(axis=1)


def dnm(images, id_labels, negatives, temperature=0.01, tau=0.5, groups=100, seed=0,
        guard="floor"):
    """Returns (scores, number of floored pairs)."""
    idx = groups_index(len(negatives), groups, seed)
    C = len(id_labels)
    Q = idx.shape[1]
    S, Nj = _sums(images, id_labels, negatives, temperature, idx)
    A = S / C
    Nbar = Nj / Q
    if guard == "dcl":
        m_shift = None  # the clamp is exp(-1/T) in unshifted units: rescale it
        x = normalize(images)
        m_shift = np.maximum((x @ normalize(id_labels).T).max(axis=1),
                             (x @ normalize(negatives).T).max(axis=1))
        lo = np.exp((-1.0 - m_shift) / temperature)[:, None]
        deb = np.maximum((Nbar - (1 - tau) * A[:, None]) / tau, lo)
        Z = S[:, None] + Q * deb
        return (S / C) * (1.0 / Z).mean(axis=1), 0
    Z = S[:, None] + Q * (Nbar / tau - ((1 - tau) / tau) * A[:, None])
    bad = ~(Z > S[:, None] * 1e-6)
    Z = np.where(bad, S[:, None] * 1e-6, Z)
    return (S / C) * (1.0 / Z).mean(axis=1), int(bad.sum())
