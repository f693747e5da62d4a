"""Slow, obvious twins of the candidate-pool constructions of dnm.corpus, written from the
issue's description of CSP's code (not from dnm's implementation)."""
import random

import numpy as np

# CSP's superclass words, as the issue lists them.
SUPERCLASS_WORDS = ["environment", "space", "object", "scene", "place", "item", "area", "view",
                    "thing", "pattern", "structure", "landscape", "vista", "creature"]


def csp_conjugated_adjectives(adjectives, seed=0):
    """Each adjective a (in the given order) becomes "a W": W = random.Random(seed).choice over
    the 14 superclass words, one draw per adjective, template "{} W"."""
    rng = random.Random(seed)
    out = []
    for a in adjectives:
        w = rng.choice(SUPERCLASS_WORDS)
        out.append("{} W".replace("W", w).format(a))
    return out


def ensemble(encoder, phrases, templates, rule):
    """One embedding per phrase from several templates, one encoder call per prompt.

    rule "mean": mean of the raw encodings (normalised by the caller when needed);
    rule "normalized_mean": normalise each encoding, average, renormalise."""
    rows = []
    for p in phrases:
        enc = np.array([np.asarray(encoder([t.replace("{}", p)]), dtype=np.float64)[0]
                        for t in templates])
        if rule == "mean":
            rows.append(enc.mean(axis=0))
        else:
            enc = enc / np.linalg.norm(enc, axis=1, keepdims=True)
            m = enc.mean(axis=0)
            rows.append(m / np.linalg.norm(m))
    return np.array(rows)
