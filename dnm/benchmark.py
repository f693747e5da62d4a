"""One call for a benchmark run: features per dataset, labels, methods x seeds -> mean ± std tables.

::

    res = dnm.benchmark.run_benchmark(
        "CLIP_features_B16.pth",                     # or {"ImageNet": X_id, "iNaturalist": X1, ...}
        id_labels=id_emb, candidates=cand_emb, is_adjective=corpus.is_adjective,
        methods=["mcm", "neglabel", "csp", "dnm"], seeds=[0, 1, 2, 3, 4], preset="ViT-B/16")
    print(res.to_markdown())                         # mean ± std per OOD set and on average
    res.save("results/")                             # CSV, Markdown, LaTeX, report.json (+ plots)

**Features** (``features``): a mapping ``{name: (N, D) array}`` (the ID set is ``id_name``,
default the first entry), a ``CLIP_features_*.pth`` dump (:mod:`dnm.dumps`), or a folder of
``.npy`` / ``.npz`` / ``.pt`` / ``.pth`` files, one dataset per file named by its stem
(``id_name`` required).  With an ``encoder`` (:mod:`dnm.encoders`), a mapping's values may also
be images: an :class:`dnm.images.ImageList`, a folder, an image-list file or a list of paths.

**Labels**: ``id_labels`` (C, D) and ``candidates`` (N, D) + ``is_adjective`` (or ``phrases``, a
:class:`dnm.Corpus`) as arrays or file paths; or ``dump=`` one or several official dumps
(``neg_dump_new_*.pth`` gives the ID labels and already selected negatives, ``neg_dump.pth``
candidates and their mask, ``pos_dump_new_ens.pth`` ID labels); or, with an ``encoder``,
``id_names`` (class names, encoded as ``"the nice {}"``) and ``corpus`` (a Corpus or a preset
name for :func:`dnm.corpus.load`, the ID names excluded, for every method; ``"own"``, the
default with ``id_names``: each method's own pool, as its paper builds it, ``csp`` CSP's
conjugated pool under its templates, ``dnm`` DNM's lists, ``neglabel`` NegLabel's, each encoded
once).  Without an encoder, ``candidates`` may also be a mapping ``{pool: (N, D)}`` (with
``is_adjective`` / ``phrases`` mappings of the same keys, or one for all): each method takes its
own pool from it.  With already selected
``negatives`` the negative-label methods score them as they are (no mining), grouped by seed.

**Methods** (``methods``): names of :class:`dnm.NegativeLabelDetector` methods (per-method
overrides in ``params={"dnm": {"tau": 0.4}}``), detector instances (unfitted: fitted here, once
per seed; fitted: scored as they are, for every seed), or a mapping ``{label: method}`` where a
method may also be a callable ``f(X, seed) -> scores`` or an object with
``score_stream(X, seed) -> scores``: a test-time adaptive method, run as the official
evaluations do, one stream per OOD set (that set's and the ID features, shuffled with the run's
seed; the scores are put back in order before the metrics).  The registry's streaming methods
``"adaneg"`` and ``"tanl"`` run that way by name: fitted once (the official selection of
negatives from ``candidates``; AdaNeg also scores given ``negatives`` as they are; TANL needs
``candidates``, its corpus, and ``noise=``, the (15, D) noise-image embeddings), then for each
seed one fresh stream per OOD set with that seed (AdaNeg's grouping, TANL's queue orders).

**Seeds**: mining does not depend on the seed (DNM's kNN rule, NegLabel's percentile rule);
the grouping of the negatives does.  A method is fitted once and re-grouped per seed, which is
exactly what fitting with that seed gives.  Methods without negatives score the same for every
seed (std 0).

**Tables**: for every (method, seed) the metrics of each OOD set and their unweighted average
(``per_seed``); over seeds the mean and the standard deviation (``ddof``, default 0: numpy's
``std``) of every metric per OOD set and of the per-seed averages (``summary``).  Metric columns
are ``FPR<tpr> (<convention>)`` for each FPR convention asked (``"paper"``, ``"openood"``,
``"interp"``; see :func:`dnm.metrics.fpr_at_tpr`), ``AUROC``, ``AUPR-In``, ``AUPR-Out``; values
are fractions in [0, 1] at full precision in Python (``summary``, ``per_seed``, ``to_frame``)
and in ``report.json``; the CSV, Markdown and LaTeX writers give percentages (CSV: 4 decimals;
``percent=False``: fractions with 6) and name the unit in every header.
"""
from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import math
import numbers
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["run_benchmark", "BenchmarkResult", "load_features", "main_args", "build_parser",
           "add_arguments", "run_args", "fpr_column", "METRICS"]

#: Metric columns besides the FPR ones, in table order.
METRICS = ("AUROC", "AUPR-In", "AUPR-Out")
_FEATURE_SUFFIXES = (".npy", ".npz", ".pt", ".pth")
_NEEDS_NEGATIVES = ("dnm", "neglabel", "csp", "adaneg", "tanl")


def _method_name(name):
    """A method name as the registry keys spell it: lower case, "-" as "_"."""
    return name.lower().replace("-", "_")


def _record(name):
    from . import methods as _methods

    return _methods.METHODS.get(name)


def fpr_column(tpr, convention):
    """Name of an FPR column, e.g. ``FPR95 (paper)``."""
    return f"FPR{tpr * 100:g} ({convention})"


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------

def load_features(source, *, id_name=None):
    """``(id_name, {name: array})`` from a mapping, a features dump or a folder of files."""
    from . import dumps as _dumps

    if isinstance(source, Mapping):
        feats = dict(source)
    elif isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file()
                           and f.suffix.lower() in _FEATURE_SUFFIXES)
            if not files:
                raise ValueError(f"features: no {'/'.join(_FEATURE_SUFFIXES)} file in {str(p)!r}")
            stems = [f.stem for f in files]
            dup = sorted({s for s in stems if stems.count(s) > 1})
            if dup:
                raise ValueError(f"features: several files per dataset name in {str(p)!r}: {dup}")
            if id_name is None:
                raise ValueError(f"features: a folder has no order; say which of {stems} is the "
                                 "ID set (id_name=...)")
            feats = {f.stem: _dumps.read_array(f) for f in files}
        elif p.is_file():
            feats = _dumps.read_features(p)
        else:
            raise FileNotFoundError(f"features: {str(p)!r} not found")
    else:
        raise TypeError("features: expected a mapping {name: features}, a features dump or a "
                        f"folder, got {type(source).__name__}")
    if len(feats) < 2:
        raise ValueError(f"features: need the ID set and at least one OOD set, got "
                         f"{list(feats)}")
    names = [str(k) for k in feats]
    if len(set(names)) != len(names):
        raise ValueError(f"features: duplicate dataset names {names}")
    if "Average" in names:
        raise ValueError("features: 'Average' is reserved for the average row")
    feats = {str(k): v for k, v in feats.items()}
    if id_name is None:
        id_name = names[0]
    elif id_name not in feats:
        raise ValueError(f"id_name: {id_name!r} is not one of the datasets {names}")
    return str(id_name), feats


def _is_images(v):
    from .images import ImageList

    if isinstance(v, ImageList):
        return True
    if isinstance(v, (str, os.PathLike)):
        return True
    return isinstance(v, (list, tuple)) and bool(v) and isinstance(v[0], (str, os.PathLike))


def _read_arg(value, name):
    """An array argument given as a file name (``PATH`` or ``PATH:KEY``) -> its array."""
    if isinstance(value, (str, os.PathLike)):
        from . import dumps as _dumps

        return _dumps.read_array(*_dumps.split_key(value))
    return value


def _methods_arg(methods):
    from .detector import NegativeLabelDetector
    from .presets import METHODS

    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    if isinstance(methods, Mapping):
        items = [(str(k), v) for k, v in methods.items()]
    else:
        items = []
        for m in methods:
            if isinstance(m, str):
                label = _method_name(m)
            elif isinstance(m, NegativeLabelDetector):
                label = m.method
            else:
                label = getattr(m, "__name__", type(m).__name__)
            items.append((label, m))
        counts = {}
        for label, _ in items:
            counts[label] = counts.get(label, 0) + 1
        seen = {}
        out = []
        for label, m in items:  # several detectors of one method: dnm, dnm#2, ...
            seen[label] = seen.get(label, 0) + 1
            out.append((label if counts[label] == 1 or seen[label] == 1 else
                        f"{label}#{seen[label]}", m))
        items = out
    if not items:
        raise ValueError("methods: no method given")
    labels = [k for k, _ in items]
    if len(set(labels)) != len(labels):
        raise ValueError(f"methods: duplicate labels {labels}")
    for label, m in items:
        if isinstance(m, str):
            if _method_name(m) not in METHODS:
                raise ValueError(f"methods: unknown method {m!r}; expected one of "
                                 f"{list(METHODS)}, a NegativeLabelDetector, a callable "
                                 "f(X, seed) or an object with score_stream(X, seed)")
        elif not (isinstance(m, NegativeLabelDetector) or callable(m)
                  or callable(getattr(m, "score_stream", None))):
            raise TypeError(f"methods[{label!r}]: expected a method name, a "
                            "NegativeLabelDetector, a callable f(X, seed) or an object with "
                            f"score_stream(X, seed), got {type(m).__name__}")
    return items


def _seeds_arg(seeds):
    if isinstance(seeds, (numbers.Integral, np.integer)) and not isinstance(seeds, bool):
        seeds = [seeds]
    if isinstance(seeds, str):
        seeds = [s.strip() for s in seeds.split(",") if s.strip()]
    out = []
    for s in seeds:
        if isinstance(s, str) and s.lstrip("-").isdigit():
            s = int(s)
        if isinstance(s, bool) or not isinstance(s, (numbers.Integral, np.integer)):
            raise TypeError(f"seeds: expected ints, got {s!r}")
        out.append(int(s))
    if not out:
        raise ValueError("seeds: no seed given")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds: duplicate seeds {out}")
    return out


def _conventions_arg(conventions):
    from .metrics import CONVENTIONS

    if isinstance(conventions, str):
        conventions = [c.strip() for c in conventions.split(",") if c.strip()]
    conventions = list(dict.fromkeys(conventions))
    bad = [c for c in conventions if c not in CONVENTIONS]
    if bad or not conventions:
        raise ValueError(f"conventions: expected a non-empty subset of {list(CONVENTIONS)}, "
                         f"got {conventions!r}")
    return conventions


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------

class _Scorer:
    """One method, for every seed: ``scores(seed, X)`` or, for streams, ``stream(seed, X)``."""

    def __init__(self, label, method, ctx):
        from .detector import NegativeLabelDetector

        self.label = label
        self.stream = None
        self.fn = None
        self.fixed = None  # a fitted detector scored as it is
        self.template = None  # a fitted detector re-grouped per seed
        self.direct = None  # (method, params) with given negatives
        self.per_seed = {}
        if isinstance(method, str):
            name = _method_name(method)
            rec = _record(name)
            if rec is not None and rec.streaming:
                self._init_stream(name, rec, ctx)
                return
            if name in _NEEDS_NEGATIVES and ctx["negatives"] is not None:
                from . import presets as _presets

                over = dict(ctx["params"].get(name, {}))
                guard = over.pop("guard", "floor")
                self.direct = (name, _presets.resolve(name, ctx["preset"], **over), guard)
                return
            det = NegativeLabelDetector(name, preset=ctx["preset"], seed=ctx["seeds"][0],
                                        num_threads=ctx["num_threads"],
                                        **ctx["params"].get(name, {}))
            self.template = self._fit(det, ctx)
        elif isinstance(method, NegativeLabelDetector):
            if hasattr(method, "id_labels_"):
                self.fixed = method
            else:
                det = NegativeLabelDetector(**method.get_params())
                det.set_params(seed=ctx["seeds"][0])
                self.template = self._fit(det, ctx)
            rec = _record(getattr(method, "method_", method.method))
            if rec is not None and rec.streaming:  # one stream per OOD set, as by name
                if self.fixed is not None:
                    self.stream = lambda X, seed: self.fixed.score_samples(X)
                else:
                    self.stream = lambda X, seed: self._stream_detector(seed).score_samples(X)
        elif callable(getattr(method, "score_stream", None)):
            self.stream = method.score_stream
        else:
            self.fn = method

    def _init_stream(self, name, rec, ctx):
        """A streaming record by name: ``self.stream(X, seed)`` runs one fresh stream."""
        from . import methods as _methods
        from .detector import NegativeLabelDetector
        from .tta import _run_stream

        over = dict(ctx["params"].get(name, {}))
        if ctx["negatives"] is not None and not rec.needs_noise:  # AdaNeg on given negatives
            r = _methods.resolve(name, ctx["preset"], check=True, **over)

            def run(X, seed):
                obj = rec.stream(ctx["id_labels"], ctx["negatives"], None, r["groups"], r,
                                 seed=seed, num_threads=ctx["num_threads"])
                return _run_stream(obj, X, r["batch_size"], False, name)

            self.stream = run
            return
        det = NegativeLabelDetector(name, preset=ctx["preset"], seed=ctx["seeds"][0],
                                    num_threads=ctx["num_threads"], **over)
        self.template = self._fit(det, ctx)
        self.stream = lambda X, seed: self._stream_detector(seed).score_samples(X)

    def _stream_detector(self, seed):
        """The fitted streaming detector with ``seed`` (its grouping regrouped, TANL's queue
        orders drawn from it): exactly what fitting with that seed gives."""
        det = self.template
        if seed == det.seed_:
            return det
        if seed not in self.per_seed:
            from .scores import make_groups

            d = copy.copy(det)
            d.seed = seed
            d.seed_ = seed
            if det.groups_index_ is not None and isinstance(det.groups_, int):
                d.groups_index_ = _frozen(make_groups(d.negatives_.shape[0], d.groups_, seed))
            self.per_seed = {seed: d}
        return self.per_seed[seed]

    @staticmethod
    def check_inputs(method, ctx):
        """Raise (before any work starts) if ``method`` lacks an input it needs here."""
        from .detector import NegativeLabelDetector

        if isinstance(method, str):
            name = _method_name(method)
        elif isinstance(method, NegativeLabelDetector) and not hasattr(method, "id_labels_"):
            name = method.method
        else:
            return
        if ctx["id_labels"] is None:
            raise ValueError(f"method {name!r} needs id_labels (or a dump, or an encoder "
                             "with id_names)")
        rec = _record(name)
        if rec is not None and rec.needs_noise:
            if ctx["noise"] is None:
                raise ValueError(f"method {name!r} needs noise= (the (15, D) embeddings of "
                                 "dnm.tta.noise_images by the image encoder of the features)")
            if ctx["candidates"] is None:
                raise ValueError(f"method {name!r} scores against the whole corpus and needs "
                                 "candidates (+ is_adjective), not only selected negatives")
        if (name in _NEEDS_NEGATIVES and ctx["candidates"] is None
                and (ctx["negatives"] is None or not isinstance(method, str))):
            raise ValueError(f"method {name!r} mines negative labels and needs candidates "
                             "(+ is_adjective), already selected negatives, or a dump")

    @staticmethod
    def _fit(det, ctx):
        needs = det.method in _NEEDS_NEGATIVES
        _Scorer.check_inputs(det, ctx)
        rec = _record(det.method)
        if needs:
            cand, mask, phrases = _pool_inputs(ctx, det.method, rec)
            det.fit(ctx["id_labels"], cand, mask, phrases,
                    id_names=ctx["id_names"],
                    noise=ctx["noise"] if rec is not None and rec.needs_noise else None)
        else:
            det.fit(ctx["id_labels"], id_names=ctx["id_names"])
        return det

    def _detector(self, seed):
        from .scores import make_groups

        det = self.template
        if seed == det.seed_ or det.groups_index_ is None or not isinstance(det.groups_, int):
            return det
        if seed not in self.per_seed:
            d = copy.copy(det)  # shares the fitted arrays; only the grouping differs
            d.seed = seed
            d.seed_ = seed
            d.groups_index_ = _frozen(make_groups(d.negatives_.shape[0], d.groups_, seed))
            self.per_seed = {seed: d}  # keep one at a time
        return self.per_seed[seed]

    def scores(self, seed, X, ctx):
        if self.fixed is not None:
            return self.fixed.score_samples(X)
        if self.template is not None:
            return self._detector(seed).score_samples(X)
        if self.direct is not None:
            from .scores import dnm_score, neglabel_score

            name, p, guard = self.direct
            kw = dict(temperature=p["temperature"], groups=p["groups"], seed=seed,
                      num_threads=ctx["num_threads"])
            if name == "dnm":
                return dnm_score(X, ctx["id_labels"], ctx["negatives"], tau=p["tau"],
                                 guard=guard, **kw)
            return neglabel_score(X, ctx["id_labels"], ctx["negatives"], **kw)
        return np.asarray(self.fn(X, seed), dtype=np.float64)


def _pool_inputs(ctx, name, rec):
    """(candidates, is_adjective, phrases) for a method: one pool for all, or with a mapping
    ``{pool: candidates}`` the method's own (``dnm.methods``: ``Method.pool``)."""
    cand = ctx["candidates"]
    if not isinstance(cand, Mapping):
        return cand, ctx["is_adjective"], ctx["phrases"]
    pool = rec.pool if rec is not None else None
    if pool not in cand:
        raise ValueError(f"candidates: no pool {pool!r} for method {name!r} (the mapping holds "
                         f"{', '.join(map(repr, cand))}; each method takes its own pool)")
    pick = lambda m: m.get(pool) if isinstance(m, Mapping) else m  # noqa: E731
    return cand[pool], pick(ctx["is_adjective"]), pick(ctx["phrases"])


def _own_pools(items, encoder, id_names, corpus):
    """Encode, once per pool, every method's own candidate pool (the ID names excluded)."""
    from . import corpus as _corpus

    pools = {}
    for _, method in items:
        name = _method_name(method) if isinstance(method, str) else getattr(
            method, "method", None)
        rec = _record(name) if name is not None else None
        if rec is None or rec.pool is None or rec.pool in pools:
            continue
        pools[rec.pool] = _corpus.load(rec.pool, exclude=id_names)
    cand = {k: encoder.encode_text(c) for k, c in pools.items()}
    return cand, {k: c.is_adjective for k, c in pools.items()}, pools


def _frozen(a):
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def run_benchmark(features, *, id_name=None, id_labels=None, candidates=None,
                  is_adjective=None, phrases=None, negatives=None, dump=None, encoder=None,
                  id_names=None, corpus=None, methods=("mcm", "neglabel", "csp", "dnm"),
                  seeds=(0,), preset="ViT-B/16", params=None, tpr=0.95,
                  conventions=("paper",), ddof=0, out_dir=None, plots=False, progress=True,
                  num_threads=None, on_error="skip", noise=None) -> "BenchmarkResult":
    """Run ``methods`` x ``seeds`` on every OOD set; see the module docstring.

    Returns a :class:`BenchmarkResult`; with ``out_dir`` it is also saved there
    (:meth:`BenchmarkResult.save`, plots with ``plots=True``).
    """
    from . import metrics as _metrics
    from ._progress import tqdm_class

    t = _metrics._check_tpr(tpr)
    conventions = _conventions_arg(conventions)
    seeds = _seeds_arg(seeds)
    items = _methods_arg(methods)
    if isinstance(ddof, bool) or not isinstance(ddof, (numbers.Integral, np.integer)) or ddof < 0:
        raise ValueError(f"ddof: expected an int >= 0, got {ddof!r}")
    params = dict(params or {})
    for k, v in params.items():
        if not isinstance(v, Mapping):
            raise TypeError(f"params[{k!r}]: expected a dict of detector parameters")

    # labels from dumps, files, or the encoder
    id_labels = _read_arg(id_labels, "id_labels")
    if isinstance(candidates, Mapping):
        candidates = {k: _read_arg(v, f"candidates[{k!r}]") for k, v in candidates.items()}
    else:
        candidates = _read_arg(candidates, "candidates")
    negatives, is_adjective = _read_arg(negatives, "negatives"), is_adjective
    noise = _read_arg(noise, "noise")
    feats_from_dump = None
    dumps_list = [] if dump is None else (list(dump) if isinstance(dump, (list, tuple))
                                          else [dump])
    from . import dumps as _dumps

    for d in dumps_list:
        d = d if isinstance(d, _dumps.Dump) else _dumps.read_dump(d)
        if d.id_labels is not None and id_labels is None:
            id_labels = d.id_labels
        if d.negatives is not None and negatives is None:
            negatives = d.negatives
        if d.candidates is not None and candidates is None:
            candidates, is_adjective = d.candidates, d.is_adjective
        if d.features is not None and feats_from_dump is None:
            feats_from_dump = d.features
    if features is None:
        if feats_from_dump is None:
            raise ValueError("features: none given (pass features or a features dump)")
        features = feats_from_dump
    id_name, feats = load_features(features, id_name=id_name)

    if encoder is not None:
        from . import corpus as _corpus

        if id_labels is None and id_names is not None:
            id_labels = encoder.encode_text(list(id_names), templates=_corpus.ID_TEMPLATE)
        own = corpus == "own" or (corpus is None and candidates is None and negatives is None
                                  and id_names is not None)
        if candidates is None and negatives is None and own:
            candidates, is_adjective, phrases = _own_pools(items, encoder, id_names, corpus)
        elif candidates is None and negatives is None and corpus is not None:
            if isinstance(corpus, str):
                corpus = _corpus.load(corpus, exclude=id_names)
            candidates = encoder.encode_text(corpus)
            phrases = corpus if phrases is None else phrases
        feats = {k: (encoder.encode_images(v, on_error=on_error) if _is_images(v) else v)
                 for k, v in feats.items()}
    elif any(_is_images(v) for v in feats.values()):
        raise ValueError("features: some datasets are images; pass encoder= to encode them")

    ctx = dict(id_labels=id_labels, candidates=candidates, is_adjective=is_adjective,
               phrases=phrases, negatives=negatives, id_names=None if id_names is None
               else [str(s) for s in id_names], preset=preset, params=params, seeds=seeds,
               num_threads=num_threads, noise=noise)
    ood_names = [k for k in feats if k != id_name]
    X_id = feats[id_name]
    fcols = [fpr_column(t, c) for c in conventions]
    metric_cols = fcols + list(METRICS)

    for _, method in items:
        _Scorer.check_inputs(method, ctx)
    tqdm = tqdm_class()
    per_seed, scores, timings = [], {}, {}
    notes = []
    with tqdm(total=len(items) * len(seeds), disable=not progress, desc="benchmark",
              unit="run", leave=False) as bar:
        for label, method in items:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                t0 = time.perf_counter()
                scorer = _Scorer(label, method, ctx)
                tm = timings[label] = {"fit": time.perf_counter() - t0, "score": 0.0,
                                       "evaluate": 0.0}
                for seed in seeds:
                    got = {}
                    rows = []
                    for name in ood_names:
                        t0 = time.perf_counter()
                        if scorer.stream is not None:
                            a, b = _stream(scorer.stream, X_id, feats[name], seed)
                            got[name] = b
                            got[f"{id_name} (stream with {name})"] = a
                        else:
                            if id_name not in got:
                                got[id_name] = scorer.scores(seed, X_id, ctx)
                            a = got[id_name]
                            b = got[name] = scorer.scores(seed, feats[name], ctx)
                        t1 = time.perf_counter()
                        r = _metrics.all_metrics(a, b, t, num_threads=num_threads)
                        tm["score"] += t1 - t0
                        tm["evaluate"] += time.perf_counter() - t1
                        row = {"method": label, "seed": seed, "dataset": name}
                        for c, col in zip(conventions, fcols):
                            row[col] = float(r[f"fpr_{c}"])
                        row.update({"AUROC": float(r["auroc"]), "AUPR-In": float(r["aupr_in"]),
                                    "AUPR-Out": float(r["aupr_out"])})
                        rows.append(row)
                    avg = {"method": label, "seed": seed, "dataset": "Average"}
                    for col in metric_cols:
                        avg[col] = float(np.mean([r[col] for r in rows]))
                    per_seed += rows + [avg]
                    scores[(label, seed)] = got
                    bar.update(1)
            for w in caught:  # each distinct warning once, not once per seed and set
                msg = f"{label}: {w.category.__name__}: {w.message}"
                if msg not in notes:
                    notes.append(msg)
                    warnings.warn(f"{label}: {w.message}", w.category, stacklevel=2)
    summary = _summarise(per_seed, [k for k, _ in items], ood_names + ["Average"], metric_cols,
                         int(ddof))
    res = BenchmarkResult(
        per_seed=per_seed, summary=summary, metrics=metric_cols,
        methods=[k for k, _ in items], seeds=seeds, datasets=ood_names, id_name=id_name,
        settings={"tpr": t, "conventions": conventions, "ddof": int(ddof), "preset": preset,
                  "params": {k: dict(v) for k, v in params.items()},
                  "n_id": int(np.shape(X_id)[0]),
                  "n_ood": {k: int(np.shape(feats[k])[0]) for k in ood_names},
                  "negatives_given": negatives is not None},
        scores=scores, notes=notes, timings=timings)
    if out_dir is not None:
        res.save(out_dir, plots=plots)
    return res


def _stream(score_stream, X_id, X_ood, seed):
    """Score the ID and one OOD set as one stream shuffled with ``seed``; scores in input order."""
    A, B = np.asarray(X_id), np.asarray(X_ood)
    X = np.concatenate([A, B])
    perm = np.random.default_rng(seed).permutation(X.shape[0])
    s = np.asarray(score_stream(X[perm], seed), dtype=np.float64).reshape(-1)
    if s.shape[0] != X.shape[0]:
        raise ValueError(f"score_stream returned {s.shape[0]} scores for {X.shape[0]} inputs")
    out = np.empty_like(s)
    out[perm] = s
    return out[:A.shape[0]], out[A.shape[0]:]


def _summarise(per_seed, methods, datasets, metric_cols, ddof):
    out = []
    for m in methods:
        for d in datasets:
            rows = [r for r in per_seed if r["method"] == m and r["dataset"] == d]
            row = {"method": m, "dataset": d, "n_seeds": len(rows)}
            for col in metric_cols:
                v = np.array([r[col] for r in rows], dtype=np.float64)
                row[f"{col} mean"] = float(v.mean())
                row[f"{col} std"] = float(v.std(ddof=ddof)) if len(v) > ddof else math.nan
            out.append(row)
    return out


# ---------------------------------------------------------------------------------------------
# results and writers
# ---------------------------------------------------------------------------------------------

@dataclass
class BenchmarkResult:
    """Per-seed rows, the mean ± std summary, and the scores of every (method, seed)."""

    per_seed: list
    summary: list
    metrics: list
    methods: list
    seeds: list
    datasets: list
    id_name: str
    settings: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict, repr=False)
    notes: list = field(default_factory=list)
    #: seconds per method: ``{label: {"fit": s, "score": s, "evaluate": s}}`` (all seeds)
    timings: dict = field(default_factory=dict)

    def to_frame(self, which="summary"):
        """A pandas DataFrame of ``"summary"`` or ``"per_seed"`` (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self._rows(which))

    def _rows(self, which):
        if which not in ("summary", "per_seed"):
            raise ValueError(f"which: expected 'summary' or 'per_seed', got {which!r}")
        return self.summary if which == "summary" else self.per_seed

    def to_csv(self, path=None, which="summary", *, percent=True, digits=None):
        """CSV of ``"summary"`` (mean and std per method and dataset) or ``"per_seed"``, as
        :meth:`dnm.metrics.EvaluationResult.to_csv`: the unit and the FPR convention in every
        metric header (``FPR95 (paper) mean [%]``), values in % with 4 decimals, or fractions
        with 6 (``percent=False``, ``... [fraction]``); ``digits`` overrides.  Full precision
        stays in ``summary`` / ``per_seed``, ``to_frame()`` and ``report.json``.  Returns the
        text; also written to ``path`` when given."""
        from .metrics import _check_digits, _unit_suffix

        rows = self._rows(which)
        digits = (4 if percent else 6) if digits is None else _check_digits(digits)
        scale = 100.0 if percent else 1.0
        values = set(self.metrics) | {f"{c} {s}" for c in self.metrics for s in ("mean", "std")}
        keys = list(rows[0])
        buf = io.StringIO()
        wr = csv.writer(buf, lineterminator="\n")
        wr.writerow([k + _unit_suffix(percent) if k in values else k for k in keys])
        for r in rows:
            wr.writerow([("nan" if math.isnan(r[k]) else f"{r[k] * scale:.{digits}f}")
                         if k in values else r[k] for k in keys])
        return _write(path, buf.getvalue())

    def _cells(self, percent, digits, layout):
        scale = 100.0 if percent else 1.0
        nd = int(digits) if percent else int(digits) + 2
        unit = " [%]" if percent else ""

        def cell(r, col):
            m, s = r[f"{col} mean"] * scale, r[f"{col} std"] * scale
            return (f"{m:.{nd}f}", "nan" if math.isnan(s) else f"{s:.{nd}f}")

        if layout == "long":
            head = ["method", "dataset"] + [c + unit for c in self.metrics]
            body = [[r["method"], r["dataset"]] + [cell(r, c) for c in self.metrics]
                    for r in self.summary]
            return head, body
        if layout != "wide":
            raise ValueError(f"layout: expected 'long' or 'wide', got {layout!r}")
        dsets = self.datasets + ["Average"]
        head = ["method"] + [f"{d} {c}{unit}" for d in dsets for c in self.metrics]
        body = []
        for m in self.methods:
            by = {r["dataset"]: r for r in self.summary if r["method"] == m}
            body.append([m] + [cell(by[d], c) for d in dsets for c in self.metrics])
        return head, body

    def to_markdown(self, path=None, *, percent=True, digits=2, layout="long"):
        """A Markdown table, cells ``mean ± std`` (percent by default); ``layout="wide"``:
        one row per method, a column per (dataset, metric)."""
        head, body = self._cells(percent, digits, layout)
        cells = [[c if isinstance(c, str) else f"{c[0]} ± {c[1]}" for c in r] for r in body]
        nlab = 2 if layout == "long" else 1
        lines = ["| " + " | ".join(head) + " |",
                 "|" + "|".join([":---"] * nlab + ["---:"] * (len(head) - nlab)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        note = (f"\nMean ± std over seeds {self.seeds} (ddof={self.settings.get('ddof', 0)}); "
                f"ID: {self.id_name}; Average: unweighted mean over the OOD sets.\n")
        return _write(path, "\n".join(lines) + "\n" + note)

    def to_latex(self, path=None, *, percent=True, digits=2, layout="long"):
        """A LaTeX ``tabular`` (booktabs), cells ``$mean \\pm std$``."""
        head, body = self._cells(percent, digits, layout)
        nlab = 2 if layout == "long" else 1
        spec = "l" * nlab + "r" * (len(head) - nlab)
        lines = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
                 " & ".join(_tex(h) for h in head) + " \\\\", "\\midrule"]
        for r in body:
            lines.append(" & ".join(_tex(c) if isinstance(c, str) else f"${c[0]} \\pm {c[1]}$"
                                    for c in r) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}"]
        return _write(path, "\n".join(lines) + "\n")

    def save(self, out_dir, *, plots=False):
        """Write per_seed.csv, summary.csv, summary.md, summary.tex, report.json (+ PNGs)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = ["per_seed.csv", "summary.csv", "summary.md", "summary.tex", "report.json"]
        self.to_csv(out / "per_seed.csv", which="per_seed")
        self.to_csv(out / "summary.csv")
        self.to_markdown(out / "summary.md")
        self.to_latex(out / "summary.tex")
        if plots:
            files += self._plots(out)
        report = {"id": self.id_name, "datasets": self.datasets, "methods": self.methods,
                  "seeds": self.seeds, "metrics": self.metrics, "settings": self.settings,
                  "summary": self.summary, "per_seed": self.per_seed, "notes": self.notes,
                  "timings_seconds": self.timings, "files": files}
        _write(out / "report.json", json.dumps(report, indent=1, default=_json_default,
                                               allow_nan=True))
        return files

    def _plots(self, out):
        from . import plot as _plot

        files = []
        seed = self.seeds[0]
        conv = self.settings.get("conventions", ["paper"])[0]
        for m in self.methods:
            got = self.scores.get((m, seed))
            if not got or self.id_name not in got:  # streamed methods: no single ID set
                continue
            ood = {d: got[d] for d in self.datasets}
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in m)
            for kind, fn in (("hist", _plot.score_histograms), ("roc", _plot.roc_curves)):
                kw = {"convention": conv} if kind == "hist" else {}
                name = f"{kind}_{safe}.png"
                fig = fn(got[self.id_name], ood, tpr=self.settings.get("tpr", 0.95), **kw)
                fig.suptitle(f"{m} (seed {seed})")
                fig.savefig(out / name, dpi=100, bbox_inches="tight")
                files.append(name)
        return files


def _json_default(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def _tex(s):
    """Escape LaTeX's special characters in a table cell."""
    s = s.replace("\\", "\0")
    for ch in "&%_#${}":
        s = s.replace(ch, "\\" + ch)
    return s.replace("\0", "\\textbackslash{}").replace("~", "\\textasciitilde{}")


def _write(path, text):
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


DESCRIPTION = (
    "Methods x seeds on precomputed features: per-seed results and mean ± std per OOD set and "
    "on average (CSV, Markdown, LaTeX, report.json).  Array inputs may be .npy, .npz, .pt or "
    ".pth; PATH:KEY picks a member of an .npz or of a dict of tensors.")


def add_arguments(ap):
    """Add the options of ``dnm benchmark`` to the argparse parser ``ap``."""
    ap.add_argument("features", nargs="?", help="a CLIP_features_*.pth dump (dataset -> "
                    "features, ID first) or a folder of feature files (one per dataset)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=PATH",
                    help="one dataset's features (repeatable; the first is the ID set unless "
                    "--id-name)")
    ap.add_argument("--id-name", help="the ID dataset's name")
    ap.add_argument("--id-labels", metavar="PATH", help="ID label embeddings (C, D)")
    ap.add_argument("--candidates", metavar="PATH", help="raw candidate embeddings (N, D)")
    ap.add_argument("--is-adjective", metavar="PATH",
                    help="N booleans (or 0/1) marking adjective candidates (.npy, .npz, .pt)")
    ap.add_argument("--negatives", metavar="PATH", help="already selected negatives (M, D): "
                    "scored as they are, no mining")
    ap.add_argument("--dump", action="append", default=[], metavar="PATH",
                    help="an official dump: neg_dump_new_*.pth, pos_dump_new_ens.pth, "
                    "neg_dump.pth, CLIP_features_*.pth (repeatable)")
    ap.add_argument("--noise", metavar="PATH", help="tanl: the (15, D) embeddings of the noise "
                    "images (dnm.tta.noise_images) by the features' image encoder")
    ap.add_argument("--methods", default="mcm,neglabel,csp,dnm",
                    help="comma-separated methods (default: %(default)s)")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    ap.add_argument("--preset", default="ViT-B/16", help="DNM backbone preset")
    ap.add_argument("--tpr", type=float, default=0.95, help="TPR of the FPR metric")
    ap.add_argument("--conventions", default="paper",
                    help="FPR conventions: paper, openood, interp (comma-separated)")
    ap.add_argument("--ddof", type=int, default=0, help="std's delta degrees of freedom")
    ap.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    ap.add_argument("--plots", action="store_true", help="also write histograms and ROCs")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads of the C kernels (default: dnm's global setting)")
    ap.add_argument("-q", "--quiet", action="store_true",
                    help="no progress bar, no table printed")
    return ap


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors raise (one line, exit status 2), never exit
        raise ValueError(f"{message} (see '{self.prog} --help')")


def build_parser(prog="dnm benchmark"):
    """The argument parser of ``dnm benchmark`` (see :func:`main_args`); a usage error raises
    a ValueError instead of exiting."""
    return add_arguments(_Parser(prog=prog, description=DESCRIPTION))


def run_args(args, *, stdout=None):
    """Run ``dnm benchmark`` on parsed arguments (:func:`add_arguments`), save, print the
    table unless ``args.quiet``; returns the :class:`BenchmarkResult`.  Bad inputs raise
    ValueError / TypeError / FileNotFoundError / ImportError (:mod:`dnm.dumps` errors included)."""
    import sys

    from . import dumps as _dumps

    out = stdout or sys.stdout
    if args.set and args.features:
        raise ValueError("give either FEATURES or --set NAME=PATH, not both")
    if args.threads is not None and args.threads < 1:
        raise ValueError("--threads: must be >= 1")
    features = args.features
    if args.set:
        features = {}
        for item in args.set:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise ValueError(f"--set: expected NAME=PATH, got {item!r}")
            if name in features:
                raise ValueError(f"--set: dataset {name!r} given twice")
            features[name] = _read_arg(path, f"--set {name}")
    is_adj = None
    if args.is_adjective:
        is_adj = _dumps.read_array(*_dumps.split_key(args.is_adjective), ndim=1,
                                   floating=False)
        if is_adj.dtype.kind not in "biu" or (is_adj.dtype.kind != "b"
                                               and not np.isin(is_adj, (0, 1)).all()):
            raise ValueError(f"--is-adjective: expected booleans (or 0/1), got {is_adj.dtype}")
        is_adj = is_adj.astype(bool)
    res = run_benchmark(features, id_name=args.id_name, id_labels=args.id_labels,
                        candidates=args.candidates, is_adjective=is_adj,
                        negatives=args.negatives, dump=args.dump or None, noise=args.noise,
                        methods=args.methods, seeds=args.seeds, preset=args.preset,
                        tpr=args.tpr, conventions=args.conventions, ddof=args.ddof,
                        out_dir=args.out, plots=args.plots, progress=not args.quiet,
                        num_threads=args.threads)
    if not args.quiet:
        print(res.to_markdown(), file=out, end="")
        print(f"written to {args.out}", file=out)
    return res


def main_args(argv=None, *, prog="dnm benchmark", stdout=None, stderr=None) -> int:
    """``dnm benchmark`` without the CLI module: parse ``argv``, run, save, print the table.

    Returns the exit code: 0 (also after ``--help``), or 2 after printing one line
    ``<prog>: error: ...`` for bad arguments or inputs.
    """
    import sys

    err = stderr or sys.stderr
    try:
        try:
            args = build_parser(prog).parse_args(argv)
        except SystemExit as exc:  # --help
            return exc.code if isinstance(exc.code, int) else 0
        run_args(args, stdout=stdout)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as exc:
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=err)
        return 2
    return 0
