"""The ``dnm`` command line (``dnm ...`` or ``python -m dnm ...``).

Subcommands::

    dnm corpus    a candidate pool by name (preset, ID class-name set, WordNet filters)
                  -> phrases (.txt / .json) and the adjective mask (.npy) for 'dnm mine'
    dnm mine      select negative labels from candidate embeddings (.npy/.npz)
                  -> indices (.npy / .csv / .json) and/or a detector file (.npz)
    dnm score     score image embeddings with a detector file, or with ID labels
                  (+ negatives) given as arrays -> scores (.npy / .csv / .json);
                  for the streaming methods (adaneg, tanl) the images are one test
                  stream, in file order, fed in batches of --batch-size
    dnm evaluate  FPR95 / AUROC / AUPR of ID scores against OOD score files
                  -> Markdown table on stdout, CSV / JSON files
    dnm benchmark methods x seeds on features per dataset -> mean ± std tables (dnm.benchmark)
    dnm demo      every method on the embedded synthetic benchmark (see dnm.demo)
    dnm bench     time dnm's scoring against NumPy's matrix product, in process

Arrays are read as :mod:`dnm._cli_io` says (``.npy``, ``.npz``, ``file.npz:key``, torch files
``.pt`` / ``.pth`` through :func:`dnm.dumps.read_array`).
The methods, their options and defaults come from :mod:`dnm.methods`.
User errors (missing file, wrong shape, bad option, bad key) print one line
``dnm: error: ...`` on stderr and exit with status 2.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import numpy as np

from . import _cli_io as _io
from . import methods as _methods
from . import scores as _scores

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's usage errors -> one line, status 2
        raise _io.UsageError(f"{message} (see '{self.prog} --help')")


# ---------------------------------------------------------------------------------------------
# dnm corpus
# ---------------------------------------------------------------------------------------------

def _id_names(spec):
    """``--id-names``: a shipped class-name set's name, or a text file of names (one a line)."""
    from . import corpus as _corpus

    if os.path.isfile(spec):
        with open(spec, encoding="utf-8") as f:
            names = [ln.strip() for ln in f if ln.strip()]
        if not names:
            raise _io.UsageError(f"--id-names: {spec} holds no names")
        return names, None
    try:
        return _corpus.class_names(spec), spec
    except ValueError:
        raise _io.UsageError(f"--id-names: {spec!r} is neither a file nor a shipped class-name "
                             f"set ({', '.join(_corpus.CLASS_NAME_SETS)})") from None


def cmd_corpus(args):
    from . import corpus as _corpus

    o = _io.Outputs([args.id_names])
    kinds = [o.check(p, ("txt", "json"), "--out") for p in (args.out or [])]
    if args.mask:
        o.check(args.mask, ("npy",), "--mask")
    if not args.out and not args.mask:
        raise _io.UsageError("nothing to write: give --out FILE (.txt/.json) and/or --mask FILE.npy")
    if args.prompts:
        ts = _corpus.template_set(args.preset)
        if len(ts.nouns) != 1 or len(ts.adjectives) != 1:
            raise _io.UsageError(f"--prompts: the {args.preset} preset encodes every phrase under "
                                 f"{len(ts.nouns)} noun / {len(ts.adjectives)} adjective templates "
                                 "(an ensemble); write the phrases and use dnm.corpus.encode")
    names, set_name = _id_names(args.id_names) if args.id_names else (None, None)
    if args.exclude_synonyms and names is None:
        raise _io.UsageError("--exclude-synonyms needs --id-names")
    hyp = args.exclude_hyponyms
    if hyp == "id":
        if set_name is None:
            raise _io.UsageError("--exclude-hyponyms without a value needs --id-names naming a "
                                 "shipped class-name set with WordNet ids (e.g. imagenet)")
        hyp = set_name
    elif hyp is not None and "," in hyp:
        hyp = [h.strip() for h in hyp.split(",") if h.strip()]
    try:
        c = _corpus.load(args.preset, source=args.source, seed=args.seed)
    except (TypeError, ValueError, FileNotFoundError) as e:
        raise _io.UsageError(f"--preset/--source: {e}") from None
    steps = [(f"{args.preset} preset", len(c))]
    if names is not None:
        c = c.exclude(names, synonyms=False)
        steps.append(("ID names", len(c)))
        if args.exclude_synonyms:
            c = c.exclude(names, synonyms=True)
            steps.append(("their WordNet synonyms", len(c)))
    if hyp is not None:
        try:
            c = c.exclude_hyponyms(hyp)
        except (TypeError, ValueError) as e:
            raise _io.UsageError(f"--exclude-hyponyms: {str(e).split(': ', 1)[-1]}") from None
        steps.append(("WordNet hyponyms", len(c)))
    if args.exclude_proper_nouns:
        c = c.exclude_proper_nouns()
        steps.append(("proper nouns", len(c)))
    if len(c) == 0:
        raise _io.UsageError("every phrase was excluded")
    lines = c.prompts() if args.prompts else list(c.phrases)
    for path, kind in zip(map(o.temp, args.out or []), kinds):
        if kind == "txt":
            with open(path, "w", encoding="utf-8") as f:
                f.writelines(line + "\n" for line in lines)
        else:
            _io.write_json(path, {"preset": args.preset, "id_names": args.id_names,
                                  "steps": [{"step": k, "remaining": v} for k, v in steps],
                                  "phrases": list(c.phrases),
                                  "prompts": c.prompts() if args.prompts else None,
                                  "is_adjective": c.is_adjective.tolist(),
                                  "lexname": list(c.lexname)})
    if args.mask:
        np.save(o.temp(args.mask), np.asarray(c.is_adjective, dtype=bool))
    o.commit()
    report = "; ".join(f"{k}: -{prev - v}" for (_, prev), (k, v) in zip(steps, steps[1:]))
    _io.say(args, f"dnm corpus: {steps[0][0]} {steps[0][1]} phrases"
            + (f"; {report}" if report else "")
            + f"; {len(c)} left ({c.n_nouns} nouns, {c.n_adjectives} adjectives); wrote "
            + ", ".join((args.out or []) + ([args.mask] if args.mask else [])))


# ---------------------------------------------------------------------------------------------
# dnm mine
# ---------------------------------------------------------------------------------------------

def _param_overrides(args, names=tuple(_methods.PARAMS)):
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _param_help(name):
    """A parameter's help: which methods use it, with their defaults (DNM's: ViT-B/16)."""
    uses = [f"{m.label} {m.defaults[name]}" for m in _methods.METHODS.values()
            if name in m.defaults]
    return f"{_methods.PARAMS[name].help} ({', '.join(uses)})"


def _add_params(p, *, mining=True):
    g = p.add_argument_group("method parameters (default: the method's, under --preset; "
                             "see dnm.methods)")
    g.add_argument("--preset", default=_methods.DEFAULT_BACKBONE,
                   help=f"CLIP backbone of DNM's parameter rows: {', '.join(_methods.BACKBONES)} "
                        f"(default {_methods.DEFAULT_BACKBONE}; open_clip spellings like "
                        "ViT-B-16 work)")
    for name, param in _methods.PARAMS.items():
        if param.cli_type is None or (param.mining and not mining):
            continue
        g.add_argument("--" + name.replace("_", "-"), type=param.cli_type,
                       help=_param_help(name))
    g.add_argument("--seed", type=_io.seed_arg, default=0,
                   help="seed of the grouping permutation (0)")
    g.add_argument("--guard", choices=tuple(_scores.GUARDS), default="floor",
                   help="DNM: handling of a non-positive denominator (floor)")


def cmd_mine(args):
    from .detector import NegativeLabelDetector

    rec = _methods.get(args.method)

    outs = args.out or []
    o = _io.Outputs([args.candidates, args.id_labels, args.is_adjective, args.phrases])
    kinds = [o.check(p, ("npy", "csv", "json"), "--out") for p in outs]
    if args.detector:
        o.check(args.detector, ("npz",), "--detector")
    if not outs and not args.detector:
        raise _io.UsageError("nothing to write: give --out FILE (.npy/.csv/.json) and/or "
                         "--detector FILE.npz")
    X = _io.matrix(args.candidates, "--candidates")
    n = X.shape[0]
    mask, corpus = _io.is_adjective(args, n)
    phrases = _io.phrases(args, corpus, n)
    P = None
    if args.id_labels is not None:
        P = _io.matrix(args.id_labels, "--id-labels")
        if P.shape[1] != X.shape[1]:
            raise _io.UsageError(f"--id-labels has {P.shape[1]} features per row but --candidates "
                             f"has {X.shape[1]}")
    if P is None and (rec.needs_id_labels_to_mine or args.detector):
        need = "a detector file" if args.detector else f"method {args.method!r}"
        raise _io.UsageError(f"--id-labels is required for {need}")
    Z = None
    if args.noise is not None:
        if not rec.needs_noise:
            raise _io.UsageError(f"--noise: method {args.method!r} does not use noise "
                                 "embeddings (only tanl does)")
        Z = _io.matrix(args.noise, "--noise")
    elif rec.needs_noise and args.detector:
        raise _io.UsageError(f"--noise is required for a {args.method} detector: the (15, D) "
                             "embeddings of dnm.tta.noise_images by your image encoder")
    over = _param_overrides(args)
    t0 = time.perf_counter()
    det = None
    if P is not None:
        det = NegativeLabelDetector(args.method, preset=args.preset, seed=args.seed,
                                    guard=args.guard, num_threads=args.threads,
                                    progress=not args.quiet, **over)
        if Z is None and rec.needs_noise:  # only the selection is asked for: no noise needed
            idx = rec.mine(P, X, mask, _methods.resolve(rec.name, args.preset, check=True,
                                                        **over),
                           num_threads=args.threads, progress=not args.quiet)
        else:
            det.fit(P, X, is_adjective=mask, phrases=phrases, noise=Z)
            idx = det.negative_indices_
        params = {k: v for k, v in _methods.resolve(rec.name, args.preset, **over).items()
                  if v is not None}
    else:  # a rule that does not use the ID labels (DNM's)
        params = {k: v for k, v in _methods.resolve(rec.name, args.preset, **over).items()
                  if v is not None}
        idx = rec.mine(None, X, mask, params, num_threads=args.threads,
                       progress=not args.quiet)
        if idx.size == 0:
            raise _io.UsageError(f"no negative labels selected from {n} candidates; use more "
                             "candidates or larger ratios")
    dt = time.perf_counter() - t0
    idx = np.asarray(idx, dtype=np.int64)
    for path, kind in zip(map(o.temp, outs), kinds):
        if kind == "npy":
            np.save(path, idx)
        elif kind == "csv":
            with open(path, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["rank", "index", "is_adjective"] + (["phrase"] if phrases else []))
                for r, i in enumerate(idx.tolist()):
                    w.writerow([r, i, int(mask[i])] + ([phrases[i]] if phrases else []))
        else:
            _io.write_json(path, {"method": args.method, "preset": _methods.backbone_name(args.preset),
                               "params": params, "n_candidates": n,
                               "n_selected": int(idx.size),
                               "n_selected_adjectives": int(mask[idx].sum()),
                               "indices": idx.tolist(),
                               "phrases": [phrases[i] for i in idx] if phrases else None})
    if args.detector:
        det.save(o.temp(args.detector))
    o.commit()
    _io.say(args, f"dnm mine: {args.method} selected {idx.size} of {n} candidates "
               f"({int(mask[idx].sum())} adjectives) in {dt:.2f}s; wrote "
               + ", ".join(outs + ([args.detector] if args.detector else [])))
    return 0


# ---------------------------------------------------------------------------------------------
# dnm score
# ---------------------------------------------------------------------------------------------

_STREAM_ONLY = ("batch_size", "cache_threshold", "gap", "memory_length", "weight",
                "sample_adaptive", "beta", "replacement", "variant", "top", "step", "alpha",
                "queue_length", "score_queue_length")


def _opt(name):
    return "--" + name.replace("_", "-")


def _score_stream(args, X, method):
    """``dnm score`` of a streaming method: the images are one stream, in file order.
    Returns (scores, method)."""
    from . import tta as _tta

    state_in = args.resume
    if state_in is not None:
        if args.id_labels is not None or args.negatives is not None or args.corpus is not None \
                or args.noise is not None:
            raise _io.UsageError("--resume continues a saved stream: it cannot be combined with "
                                 "--id-labels/--negatives/--corpus/--noise")
        if not os.path.isfile(state_in):
            raise _io.UsageError(f"--resume: file not found: {state_in}")
        obj = None
        for cls in (_tta.AdaNeg, _tta.TANL):
            try:
                obj = cls.load(state_in, num_threads=args.threads)
                break
            except _tta.StateFileError as exc:
                if f"not a {cls._FORMAT} state file" not in str(exc):
                    raise _io.UsageError(f"--resume: {_io.one_line(exc)}") from None
        if obj is None:
            raise _io.UsageError(f"--resume: {state_in} is not an AdaNeg or TANL state file")
        name = "adaneg" if isinstance(obj, _tta.AdaNeg) else "tanl"
        if method is not None and method != name:
            raise _io.UsageError(f"--resume: {state_in} holds a stream of {name}, not of {method}")
        given = [_opt(n) for n in _STREAM_ONLY if n != "batch_size"
                 and getattr(args, n, None) is not None]
        if given:
            raise _io.UsageError(f"{', '.join(given)}: a resumed stream keeps its saved "
                                 "settings")
        bs = _methods.resolve(name, check=True, batch_size=args.batch_size)["batch_size"]
        return _tta._run_stream(obj, X, bs, not args.quiet, name), name, obj
    rec = _methods.get(method)
    if args.id_labels is None:
        raise _io.UsageError(f"--id-labels is required for method {method!r} (or --detector, "
                             "or --resume STATE.npz)")
    P = _io.matrix(args.id_labels, "--id-labels")
    over = _param_overrides(args, [n for n in rec.params if not _methods.PARAMS[n].mining])
    r = _methods.resolve(method, args.preset, check=True, **over)
    if rec.needs_noise:
        if args.negatives is not None:
            raise _io.UsageError("--negatives: tanl scores against the whole corpus; give it as "
                                 "--corpus U.npy (the selected negatives first)")
        if args.corpus is None or args.noise is None:
            raise _io.UsageError("--corpus and --noise are required for method 'tanl' (the "
                                 "candidate corpus and the 15 noise-image embeddings)")
        labels = (_io.matrix(args.corpus, "--corpus"), _io.matrix(args.noise, "--noise"))
    else:
        if args.corpus is not None or args.noise is not None:
            raise _io.UsageError(f"--corpus/--noise: only method 'tanl' uses them, not "
                                 f"{method!r}")
        if args.negatives is None:
            raise _io.UsageError(f"--negatives is required for method {method!r}")
        labels = (_io.matrix(args.negatives, "--negatives"), None)
    obj = rec.stream(P, labels[0], labels[1], r.get("groups"), r, seed=args.seed,
                     num_threads=args.threads, progress=False)  # one bar, over the batches
    return _tta._run_stream(obj, X, r["batch_size"], not args.quiet, method), method, obj


def cmd_score(args):
    from .detector import NegativeLabelDetector

    outs = args.out
    o = _io.Outputs([args.images, args.detector, args.id_labels, args.negatives, args.corpus,
                     args.noise, args.resume])
    kinds = [o.check(p, ("npy", "csv", "json"), "--out") for p in outs]
    if args.save_state is not None:
        o.check(args.save_state, ("npz",), "--save-state")
    X = _io.matrix(args.images, "--images", key=args.key)
    t0 = time.perf_counter()
    obj = None
    method_rec = _methods.get(args.method) if args.method is not None else None
    if args.detector is not None:
        if args.id_labels is not None or args.negatives is not None or args.method is not None \
                or args.corpus is not None or args.noise is not None or args.resume is not None:
            raise _io.UsageError("--detector cannot be combined with --id-labels/--negatives/"
                                 "--corpus/--noise/--method/--resume")
        if not os.path.isfile(args.detector):
            raise _io.UsageError(f"--detector: file not found: {args.detector}")
        det = NegativeLabelDetector.load(args.detector)
        if args.threads is not None:
            det.num_threads = args.threads
        det.progress = not args.quiet
        streaming = _methods.METHODS[det.method_].streaming
        given = [_opt(n) for n in _STREAM_ONLY if getattr(args, n, None) is not None]
        if given and not streaming:
            raise _io.UsageError(f"{', '.join(given)}: not used by the {det.method_} detector "
                                 f"of {args.detector}")
        if [g for g in given if g != "--batch-size"]:
            raise _io.UsageError(f"{', '.join(g for g in given if g != '--batch-size')}: a "
                                 "detector file keeps its settings (only --batch-size may "
                                 "be changed)")
        if streaming:
            bs = det.batch_size_ if args.batch_size is None else _methods.resolve(
                det.method_, check=True, batch_size=args.batch_size)["batch_size"]
            obj = det._stream(False)
            from .tta import _run_stream

            s = _run_stream(obj, X, bs, not args.quiet, det.method_)
        else:
            if args.save_state is not None:
                raise _io.UsageError(f"--save-state: the {det.method_} detector has no stream "
                                     "state (only adaneg and tanl do)")
            s = det.score_samples(X)
        method = det.method_
    elif args.resume is not None or (method_rec is not None and method_rec.streaming):
        s, method, obj = _score_stream(args, X, args.method)
    else:
        if args.id_labels is None:
            raise _io.UsageError("give --detector FILE.npz, or --id-labels (and --negatives)")
        P = _io.matrix(args.id_labels, "--id-labels")
        method = args.method or ("dnm" if args.negatives is not None else "mcm")
        rec = _methods.get(method)
        if rec.needs_negatives and args.negatives is None:
            raise _io.UsageError(f"--negatives is required for method {method!r}")
        if not rec.needs_negatives and args.negatives is not None:
            raise _io.UsageError(f"method {method!r} does not use --negatives")
        bad = [_opt(n) for n in _STREAM_ONLY + ("corpus", "noise", "save_state")
               if getattr(args, n, None) is not None]
        if bad:
            raise _io.UsageError(f"{', '.join(bad)}: only the streaming methods (adaneg, tanl) "
                                 f"use it, not {method!r}")
        over = _param_overrides(args, ("temperature", "tau", "groups"))
        r = _methods.resolve(method, args.preset, check=True, **over)
        Nn = _io.matrix(args.negatives, "--negatives") if rec.needs_negatives else None
        X, P, Nn, index = _scores._checked(X, P, Nn, r["groups"], args.seed)
        s = _scores._score(rec.kind, X, P, Nn, index, temperature=r["temperature"],
                           tau=r["tau"] if rec.kind == "dnm" else 1.0, guard=args.guard,
                           num_threads=args.threads, progress=not args.quiet)
    dt = time.perf_counter() - t0
    s = np.asarray(s, dtype=np.float64)
    if args.save_state is not None:
        obj.save(o.temp(args.save_state))
    for path, kind in zip(map(o.temp, outs), kinds):
        if kind == "npy":
            np.save(path, s)
        elif kind == "csv":
            with open(path, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["index", "score"])
                w.writerows((i, repr(v)) for i, v in enumerate(s.tolist()))
        else:
            finite = np.isfinite(s)
            _io.write_json(path, {"method": method, "n": int(s.size),
                               "scores": [v if ok else None for v, ok in
                                          zip(s.tolist(), finite.tolist())]})
    o.commit()
    wrote = outs + ([args.save_state] if args.save_state else [])
    _io.say(args, f"dnm score: {method}, {s.size} images in {dt:.2f}s; scores min {s.min():.6g}, "
               f"median {np.median(s):.6g}, max {s.max():.6g}; wrote {', '.join(wrote)}")
    return 0


# ---------------------------------------------------------------------------------------------
# dnm evaluate
# ---------------------------------------------------------------------------------------------

def _ood_arg(text):
    if "=" in text:
        name, path = text.split("=", 1)
        if not name:
            raise argparse.ArgumentTypeError(f"empty name in {text!r} (use NAME=PATH)")
    else:
        path = text
        name = os.path.splitext(os.path.basename(text))[0]
    if not path:
        raise argparse.ArgumentTypeError(f"empty path in {text!r} (use NAME=PATH)")
    return name, path


def cmd_evaluate(args):
    from . import metrics as _metrics

    outs = args.out or []
    o = _io.Outputs([args.id] + [path for _, path in args.ood])
    kinds = [o.check(p, ("csv", "json", "md"), "--out") for p in outs]
    a = _io.load_scores(args.id, "--id")
    sets = {}
    for name, path in args.ood:
        if name in sets:
            raise _io.UsageError(f"--ood: duplicate name {name!r}")
        sets[name] = _io.load_scores(path, f"--ood {name}")
    res = _metrics.evaluate(a, sets, tpr=args.tpr, convention=args.convention,
                            num_threads=args.threads)
    md = _metrics.to_markdown(res, percent=not args.fraction, digits=args.digits)
    print(md, end="")
    for path, kind in zip(map(o.temp, outs), kinds):
        if kind == "md":
            with open(path, "w", encoding="utf-8") as f:
                f.write(md)
        elif kind == "csv":
            res.to_csv(path, percent=not args.fraction)
        else:
            _io.write_json(path, {"tpr": args.tpr, "convention": args.convention,
                               "units": "fraction", "columns": list(res.columns),
                               "n_id": int(a.size),
                               "n_ood": {k: int(v.size) for k, v in sets.items()},
                               "rows": list(res)})
    o.commit()
    if outs:
        _io.say(args, f"dnm evaluate: wrote {', '.join(outs)}")
    return 0


# ---------------------------------------------------------------------------------------------
# dnm benchmark / demo / bench
# ---------------------------------------------------------------------------------------------

def cmd_benchmark(args):
    from . import benchmark as _benchmark

    _benchmark.run_args(args)
    return 0


def _demo_methods():
    from .demo import DEMO_METHODS

    return DEMO_METHODS


def cmd_demo(args):
    from .demo import run_demo

    if args.threads is not None:
        from . import set_num_threads

        set_num_threads(args.threads)
    run_demo(args.out, size="small" if args.small else args.size, seed=args.seed,
             methods=args.methods, preset=args.preset, plots=not args.no_plots,
             quiet=args.quiet)
    return 0


def _best(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def cmd_bench(args):
    from . import get_num_threads, set_num_threads
    from . import scores as _scores

    for name in ("n_images", "n_labels", "n_negatives", "dim", "repeat"):
        if getattr(args, name) < 1:
            raise _io.UsageError(f"--{name.replace('_', '-')}: must be >= 1")
    o = _io.Outputs()
    if args.json:
        o.check(args.json, ("json",), "--json")
    if args.threads is not None:
        set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    rng = np.random.default_rng(0)
    N, C, M, D = args.n_images, args.n_labels, args.n_negatives, args.dim
    X = rng.standard_normal((N, D), dtype=np.float32)
    P = rng.standard_normal((C, D), dtype=np.float32)
    Nn = rng.standard_normal((M, D), dtype=np.float32)
    L = np.concatenate([P, Nn])
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Ln = L / np.linalg.norm(L, axis=1, keepdims=True)
    nt = get_num_threads()

    PnT = np.ascontiguousarray(Ln[:C].T)
    LnT = np.ascontiguousarray(Ln.T)
    cases = [("numpy images @ id_labels.T", lambda: Xn @ PnT, C, None),
             ("dnm.mcm_score", lambda: _scores.mcm_score(X, P), C, 0),
             ("dnm.energy_score", lambda: _scores.energy_score(X, P), C, 0),
             ("numpy images @ [id; neg].T", lambda: Xn @ LnT, C + M, None),
             ("dnm.neglabel_score", lambda: _scores.neglabel_score(X, P, Nn), C + M, 3),
             ("dnm.dnm_score", lambda: _scores.dnm_score(X, P, Nn, guard="dcl"), C + M, 3)]
    rows = []
    if threadpool_limits is not None:
        ctx = threadpool_limits(limits=nt, user_api="blas")
    else:
        import contextlib

        ctx = contextlib.nullcontext()
    with ctx:
        for name, fn, labels, base in cases:
            fn()  # warm-up
            t = _best(fn, args.repeat)
            rows.append({"case": name, "labels": labels, "seconds": t,
                         "gflops": 2.0 * N * D * labels / t / 1e9, "base": base})
    print(f"dnm bench: N={N} images, C={C} ID labels, M={M} negatives, D={D}, "
          f"{nt} thread(s), best of {args.repeat}; random data")
    print(f"| {'case':<28} | {'labels':>6} | {'seconds':>9} | {'GFLOP/s':>8} | "
          f"{'vs NumPy product':>16} |")
    print(f"|:{'-' * 29}|{'-' * 7}:|{'-' * 10}:|{'-' * 9}:|{'-' * 17}:|")
    for r in rows:
        b = r.pop("base")
        r["ratio_to_numpy_product"] = r["seconds"] / rows[b]["seconds"] if b is not None else 1.0
        print(f"| {r['case']:<28} | {r['labels']:>6} | {r['seconds']:>9.4f} | "
              f"{r['gflops']:>8.1f} | {r['ratio_to_numpy_product']:>15.2f}x |")
    print("(ratio: dnm's time over NumPy's product with the same labels, same BLAS and "
          "threads; NumPy only multiplies and holds the N x labels matrix, dnm also "
          "normalises, exponentiates and sums groups, in O(tile) memory)")
    if args.json:
        _io.write_json(o.temp(args.json), {"n_images": N, "n_labels": C, "n_negatives": M, "dim": D,
                                "threads": nt, "repeat": args.repeat, "rows": rows})
    o.commit()
    return 0


# ---------------------------------------------------------------------------------------------
# the parser
# ---------------------------------------------------------------------------------------------

def build_parser():
    from . import __version__

    top = _Parser(prog="dnm", description="Zero-shot OOD detection with CLIP negative labels "
                  "(DNM, NegLabel, CSP, MCM, energy) on precomputed embeddings.",
                  epilog="Run 'dnm COMMAND --help' for the options of a command.")
    top.add_argument("--version", action="version", version=f"dnm {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def common(p):
        p.add_argument("--threads", type=int, default=None,
                       help="threads of the C kernels (default: dnm's global setting)")
        p.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bars or status messages")

    # corpus
    from . import corpus as _corpus

    p = sub.add_parser("corpus", help="a candidate pool by name, with the WordNet filters",
                       description="Write a corpus preset's phrases (or prompts) and its "
                       "adjective mask, after excluding ID class names (a shipped set's name "
                       "or a file), their synonyms, WordNet hyponyms of ID classes and proper "
                       "nouns; prints how many phrases each step drops.")
    p.add_argument("--preset", choices=tuple(_corpus.PRESETS), default="dnm",
                   help="the word-list preset (dnm)")
    p.add_argument("--source", choices=_corpus.SOURCES, default=None,
                   help="published (default: the papers' lists) or wordnet (WordNet 3.0)")
    p.add_argument("--seed", type=_io.seed_arg, default=0, help="csp: the conjugation seed (0)")
    p.add_argument("--id-names", metavar="SET|FILE.txt",
                   help="ID class names to drop: a shipped set (" + ", ".join(
                       _corpus.CLASS_NAME_SETS) + ") or a file, one name a line")
    p.add_argument("--exclude-synonyms", action="store_true",
                   help="also drop the WordNet synonyms of the ID names")
    p.add_argument("--exclude-hyponyms", nargs="?", const="id", metavar="SET|SYNSETS",
                   help="drop nouns naming a WordNet synset at or below the ID classes (no "
                        "value: the --id-names set's WordNet ids), a set's name or "
                        "comma-separated synsets (n02084071,dog.n.01)")
    p.add_argument("--exclude-proper-nouns", action="store_true",
                   help="drop nouns WordNet knows only as proper nouns (instances)")
    p.add_argument("--prompts", action="store_true",
                   help="write the prompts (the preset's templates) instead of the phrases")
    p.add_argument("--out", "-o", action="append", metavar="FILE",
                   help="phrases, one a line (.txt) or with the mask and steps (.json)")
    p.add_argument("--mask", metavar="MASK.npy", help="the (N,) is_adjective mask, for "
                   "'dnm mine --is-adjective'")
    p.add_argument("-q", "--quiet", action="store_true", help="no status message")
    p.set_defaults(func=cmd_corpus)

    # mine
    p = sub.add_parser("mine", help="select negative labels from candidate embeddings",
                       description="Select negative labels (DNM, NegLabel or CSP rule) from "
                       "candidate phrase embeddings. Writes the selected row indices "
                       "(.npy int64 / .csv / .json) and/or a detector file for 'dnm score'.")
    p.add_argument("--candidates", required=True, metavar="C.npy",
                   help="(N, D) candidate phrase embeddings; RAW (unnormalised) for DNM")
    p.add_argument("--id-labels", metavar="X.npy",
                   help="(C, D) ID label embeddings (needed by neglabel/csp and for --detector)")
    pos = p.add_mutually_exclusive_group()
    pos.add_argument("--is-adjective", metavar="MASK.npy",
                     help="(N,) bool (or 0/1) mask: which candidates are adjectives")
    pos.add_argument("--adjectives-from", metavar="PRESET", nargs="?", const="method",
                     help="take the mask (and phrases) from the bundled corpus preset "
                          "(dnm, neglabel, csp; no value: the --method's own pool, csp for "
                          "csp); the candidates must be its encodings, in order")
    pos.add_argument("--all-nouns", action="store_true", help="treat every candidate as a noun")
    p.add_argument("--phrases", metavar="FILE.txt",
                   help="candidate phrases, one per line (names the negatives in outputs)")
    p.add_argument("--method", choices=_methods.mining_methods(), default="dnm",
                   help="selection rule (dnm); adaneg: the official AdaNeg selection "
                        "(--n-negatives of lowest closeness); tanl: the whole corpus, that "
                        "selection first (all candidates, in TANL's order)")
    p.add_argument("--noise", metavar="Z.npy", help="tanl with --detector: (15, D) "
                   "embeddings of the noise images (dnm.tta.noise_images)")
    p.add_argument("--out", "-o", action="append", metavar="FILE",
                   help="write the selected indices: .npy, .csv or .json (repeatable)")
    p.add_argument("--detector", metavar="FILE.npz",
                   help="also fit and save a NegativeLabelDetector (needs --id-labels)")
    _add_params(p)
    common(p)
    p.set_defaults(func=cmd_mine)

    # score
    p = sub.add_parser("score", help="score image embeddings (higher = more in-distribution)",
                       description="Score image embeddings with a saved detector, or with ID "
                       "label (and negative label) embeddings. Higher = more in-distribution.")
    p.add_argument("--images", required=True, metavar="X.npy",
                   help="(N, D) image embeddings: .npy, or .npz / .pt / .pth with --key or "
                        "FILE:KEY")
    p.add_argument("--key", help="array name inside an .npz --images file, or key of a dict "
                   "of tensors in a .pt / .pth file")
    p.add_argument("--detector", metavar="FILE.npz", help="a detector from 'dnm mine --detector' "
                   "or NegativeLabelDetector.save")
    p.add_argument("--id-labels", metavar="P.npy", help="(C, D) ID label embeddings")
    p.add_argument("--negatives", metavar="N.npy", help="(M, D) negative label embeddings")
    p.add_argument("--corpus", metavar="U.npy", help="tanl: (K, D) the whole candidate corpus, "
                   "selected negatives first (dnm mine --method tanl gives the order)")
    p.add_argument("--noise", metavar="Z.npy", help="tanl: (15, D) embeddings of the noise "
                   "images (dnm.tta.noise_images)")
    p.add_argument("--method", choices=tuple(_methods.METHODS),
                   help="score (default: dnm with --negatives, else mcm); adaneg and tanl "
                        "treat --images as one stream, in file order")
    p.add_argument("--save-state", metavar="STATE.npz", help="adaneg/tanl: also write the "
                   "stream's state after the last image (continue with --resume)")
    p.add_argument("--resume", metavar="STATE.npz", help="adaneg/tanl: continue a stream "
                   "saved with --save-state (or AdaNeg/TANL.save) with these images")
    p.add_argument("--out", "-o", action="append", required=True, metavar="FILE",
                   help="write scores: .npy (float64), .csv or .json (repeatable)")
    _add_params(p, mining=False)
    common(p)
    p.set_defaults(func=cmd_score)

    # evaluate
    p = sub.add_parser("evaluate", help="FPR95 / AUROC / AUPR of ID vs OOD scores",
                       description="Evaluate ID scores against one or more OOD score sets "
                       "(ID = positive, higher score = more in-distribution). Prints a "
                       "Markdown table; headers and caption name the unit (%% unless "
                       "--fraction) and the FPR convention.")
    p.add_argument("--id", required=True, metavar="SCORES",
                   help="ID scores: .npy/.npz, or .csv/.json written by 'dnm score'")
    p.add_argument("--ood", required=True, action="append", type=_ood_arg, metavar="NAME=SCORES",
                   help="an OOD score set (repeatable); NAME defaults to the file name")
    p.add_argument("--tpr", type=float, default=0.95, help="TPR of the FPR column (0.95)")
    p.add_argument("--convention", choices=("paper", "openood", "interp"), default="paper",
                   help="FPR@TPR convention (paper)")
    p.add_argument("--digits", type=int, default=2, help="decimals in the printed table (2)")
    p.add_argument("--fraction", action="store_true", help="print fractions instead of %%")
    p.add_argument("--out", "-o", action="append", metavar="FILE",
                   help="write the table: .md or .csv (%% unless --fraction; CSV with 4 "
                        "decimals, 6 for fractions) or .json (fractions, full precision); "
                        "repeatable")
    common(p)
    p.set_defaults(func=cmd_evaluate)

    # benchmark
    from . import benchmark as _benchmark

    p = sub.add_parser("benchmark", help="methods x seeds on features per dataset: mean ± std "
                       "tables", description=_benchmark.DESCRIPTION)
    _benchmark.add_arguments(p)
    p.set_defaults(func=cmd_benchmark)

    # demo
    p = sub.add_parser("demo", help="all methods on the embedded SYNTHETIC benchmark",
                       description="Generate the synthetic CLIP-like benchmark (dnm.synthetic; "
                       "NOT real CLIP data), fit every method, score and evaluate them with "
                       "dnm.benchmark.run_benchmark (AdaNeg and TANL as one stream per OOD "
                       "set), print one table with stage timings, and write PNG plots plus "
                       "report.json and metrics.csv into --out.")
    p.add_argument("--out", "-o", default="dnm-demo-output", metavar="DIR",
                   help="output folder (dnm-demo-output)")
    p.add_argument("--small", action="store_true", help="the small benchmark (runs in seconds)")
    p.add_argument("--size", choices=("default", "small"), default="default",
                   help="benchmark size (default)")
    p.add_argument("--seed", type=_io.seed_arg, default=0,
                   help="seed of the benchmark, the groupings and the streams (0)")
    p.add_argument("--methods", default=None, metavar="LIST",
                   help="comma-separated subset of " + ",".join(_demo_methods()))
    p.add_argument("--preset", default=_methods.DEFAULT_BACKBONE,
                   help=f"DNM backbone preset ({_methods.DEFAULT_BACKBONE})")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    common(p)
    p.set_defaults(func=cmd_demo)

    # bench
    p = sub.add_parser("bench", help="time dnm's scoring against NumPy's product",
                       description="In-process timing on random data: NumPy's normalised "
                       "images @ labels.T against dnm's MCM / energy / NegLabel / DNM scores "
                       "(same BLAS, same threads). The repository's benchmarks/ folder has "
                       "the full benchmarks.")
    p.add_argument("--n-images", type=int, default=5000, help="N (5000)")
    p.add_argument("--n-labels", type=int, default=1000, help="C (1000)")
    p.add_argument("--n-negatives", type=int, default=5000, help="M (5000)")
    p.add_argument("--dim", type=int, default=512, help="D (512)")
    p.add_argument("--repeat", type=int, default=3, help="repetitions; the best is kept (3)")
    p.add_argument("--json", metavar="FILE.json", help="also write the results as JSON")
    common(p)
    p.set_defaults(func=cmd_bench)
    return top


def main(argv=None):
    """Entry point of the ``dnm`` console script; returns the exit status."""
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help / --version
            return exc.code if isinstance(exc.code, int) else 0
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        if getattr(args, "threads", None) is not None and args.threads < 1:
            raise _io.UsageError("--threads: must be >= 1")
        with _io.running(args):
            return args.func(args)
    except _io.UsageError as exc:
        msg = _io.one_line(exc)
    except MemoryError as exc:
        msg = f"out of memory: {_io.one_line(exc)}"
    except (ValueError, TypeError, FileNotFoundError, KeyError, ImportError) as exc:
        msg = _io.one_line(exc)
    except OSError as exc:
        msg = f"{exc.strerror or _io.one_line(exc)}" + (f": {exc.filename}" if exc.filename else "")
    except KeyboardInterrupt:
        print("dnm: interrupted", file=sys.stderr)
        return 130
    print(f"dnm: error: {msg}", file=sys.stderr)
    return 2
