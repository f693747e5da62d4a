"""AdaNeg and TANL wired in through the method registry: the records, the official negative
selection (against a NumPy twin), the detector (fit, score_samples as one stream, stream(),
save / load, old files), the CLI, dnm.dask.score_streams and the benchmark runner."""
import json
import os
from pathlib import Path

import time

import numpy as np
import pytest

import dnm
from dnm import methods
from dnm.detector import DetectorFileError, NegativeLabelDetector

DATA = Path(__file__).parent / "data"


def normalize(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.fixture
def prob():
    """ID labels, a candidate corpus with a part-of-speech mask, noise and a stream."""
    rng = np.random.default_rng(3)
    C, K, D = 12, 160, 16
    P = rng.normal(size=(C, D)).astype(np.float32)
    U = rng.normal(size=(K, D)).astype(np.float32)
    adj = rng.random(K) < 0.3
    Z = (rng.normal(size=(15, D)) + 1.5).astype(np.float32)
    n_id = 50
    X = np.concatenate([P[rng.integers(0, C, n_id)] + 0.4 * rng.normal(size=(n_id, D)),
                        U[rng.integers(0, K, 60)] + 0.4 * rng.normal(size=(60, D))])
    return P, U, adj, Z, X[rng.permutation(len(X))].astype(np.float32)


def twin_selection(P, U, adj, M, eta=0.95):
    """The official selection in float64, as the official code computes it: order statistic
    floor(eta C), no interpolation; floor(M n_adj / N) adjectives, the rest nouns, lowest
    first."""
    cos = np.sort(normalize(U.astype(np.float64)) @ normalize(P.astype(np.float64)).T, axis=1)
    q = cos[:, int(np.floor(eta * P.shape[0]))]
    m_adj = M * int(adj.sum()) // len(adj)
    nouns, adjs = np.flatnonzero(~adj), np.flatnonzero(adj)
    return np.concatenate([nouns[np.argsort(q[nouns], kind="stable")[:M - m_adj]],
                           adjs[np.argsort(q[adjs], kind="stable")[:m_adj]]])


# ---- the records ---------------------------------------------------------------------------

def test_records_hold_the_official_defaults():
    a, t = methods.get("adaneg"), methods.get("tanl")
    assert a.streaming and t.streaming and a.stream is not None and t.stream is not None
    assert methods.streaming_methods() == ("adaneg", "tanl")
    assert dict(a.defaults) == dict(n_negatives=10000, percentile=0.95, groups=5,
                                    temperature=0.01, batch_size=256, cache_threshold=0.5,
                                    gap=0.5, memory_length=10, weight=0.1,
                                    sample_adaptive=False, beta=5.0, replacement="entropy",
                                    variant="combined")
    assert dict(t.defaults) == dict(n_negatives=10000, percentile=0.95, temperature=0.01,
                                    batch_size=256, top=1000, step=1, alpha=0.0, gap=0.5,
                                    queue_length=300, score_queue_length=20000)
    assert t.needs_noise and not a.needs_noise
    # the static methods are untouched; the demo runs the streaming ones last, once each
    assert not any(methods.get(n).streaming for n in ("dnm", "neglabel", "csp", "mcm"))
    from dnm.demo import DEMO_METHODS
    assert DEMO_METHODS[-2:] == ("adaneg", "tanl") and len(set(DEMO_METHODS)) == len(DEMO_METHODS)


@pytest.mark.parametrize("C", [1, 7, 12, 20, 1000])
def test_official_selection_matches_twin(C):
    rng = np.random.default_rng(C)
    P = rng.normal(size=(C, 8))
    U = rng.normal(size=(90, 8))
    adj = rng.random(90) < 0.4
    got = methods.official_selection(P, U, adj, 40)
    np.testing.assert_array_equal(got, twin_selection(P, U, adj, 40))


def test_official_selection_bad_input(prob):
    P, U, adj, Z, X = prob
    with pytest.raises(ValueError, match="n_negatives: 1000 .* only 160 candidates"):
        methods.official_selection(P, U, adj, 1000)
    with pytest.raises(ValueError, match="n_negatives: must be >= 1"):
        methods.official_selection(P, U, adj, 0)
    with pytest.raises(ValueError, match="is_adjective: expected a 1-D array of length 160"):
        methods.official_selection(P, U, adj[:-1], 10)


# ---- the detector --------------------------------------------------------------------------

def adaneg_det(prob, **kw):
    P, U, adj, Z, X = prob
    kw = dict(dict(n_negatives=60, batch_size=16), **kw)
    return NegativeLabelDetector("adaneg", **kw).fit(P, U, adj)


def tanl_det(prob, **kw):
    P, U, adj, Z, X = prob
    kw = dict(dict(n_negatives=60, batch_size=16, top=40), **kw)
    return NegativeLabelDetector("tanl", **kw).fit(P, U, adj, noise=Z)


def test_adaneg_detector_is_the_functional_form(prob):
    P, U, adj, Z, X = prob
    det = adaneg_det(prob, seed=2, memory_length=4, variant="adaptive")
    sel = twin_selection(P, U, adj, 60)
    np.testing.assert_array_equal(det.negative_indices_, sel)
    assert det.groups_index_.shape == (5, 12) and det.noise_ is None
    ref = dnm.adaneg_score(X, P, U[sel], batch_size=16, groups=5, seed=2, memory_length=4,
                           output="adaptive")
    np.testing.assert_array_equal(det.score_samples(X), ref)
    np.testing.assert_array_equal(det.score_samples(X), ref)  # calls share no state


def test_tanl_detector_is_the_functional_form(prob):
    P, U, adj, Z, X = prob
    det = tanl_det(prob, seed=4, step=2)
    perm = det.negative_indices_
    sel = twin_selection(P, U, adj, 60)
    np.testing.assert_array_equal(perm[:60], sel)  # the selection first, then the rest
    np.testing.assert_array_equal(np.sort(perm), np.arange(len(U)))
    np.testing.assert_array_equal(perm[60:], np.setdiff1d(np.arange(len(U)), sel))
    assert det.groups_index_ is None and det.noise_.shape == (15, 16)
    ref = dnm.tanl_score(X, P, U[perm], Z, batch_size=16, top=40, step=2, seed=4)
    np.testing.assert_array_equal(det.score_samples(X), ref)


@pytest.mark.parametrize("make", [adaneg_det, tanl_det])
def test_stream_objects_are_fresh_and_continue(prob, make, tmp_path):
    X = prob[4]
    det = make(prob)
    whole = det.score_samples(X)
    s = det.stream()
    assert isinstance(s, dnm.AdaNeg if det.method == "adaneg" else dnm.TANL)
    parts = [s.update(X[i:i + 16]) for i in range(0, 64, 16)]
    s.save(tmp_path / "state.npz")  # mid-stream: a restored object goes on with the same bits
    r = type(s).load(tmp_path / "state.npz")
    rest = [r.update(X[i:i + 16]) for i in range(64, len(X), 16)]
    np.testing.assert_array_equal(np.concatenate(parts + rest), whole)
    assert det.stream() is not s and det.stream().n_images_seen_ == 0


@pytest.mark.parametrize("make", [adaneg_det, tanl_det])
def test_detector_file_round_trip(prob, make, tmp_path):
    X = prob[4]
    det = make(prob, seed=3)
    det.set_threshold(X[:30])
    det.save(tmp_path / "d.npz")
    new = NegativeLabelDetector.load(tmp_path / "d.npz")
    assert new.get_params() == det.get_params()
    np.testing.assert_array_equal(new.score_samples(X), det.score_samples(X))
    np.testing.assert_array_equal(new.predict(X), det.predict(X))
    for name in ("negatives_", "negative_indices_", "noise_", "groups_index_"):
        a, b = getattr(new, name), getattr(det, name)
        assert (a is None and b is None) or np.array_equal(a, b), name
    with np.load(tmp_path / "d.npz", allow_pickle=False) as z:
        meta = json.loads(z["metadata"].tobytes())
        assert ("noise" in z.files) == (det.method == "tanl")
    assert meta["format_version"] == 2


def test_old_detector_files_still_load(tmp_path):
    # written by dnm before the streaming methods (format_version 1)
    old = NegativeLabelDetector.load(DATA / "detector_v1_neglabel.npz")
    assert old.method_ == "neglabel" and old.batch_size is None and old.noise_ is None
    assert old.threshold_ is not None and old.groups_index_.shape[0] == 3
    X = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    np.testing.assert_array_equal(old.score_samples(X), dnm.neglabel_score(
        X, old.id_labels_, old.negatives_, groups=old.groups_index_))
    # and a detector of the older methods is still written as that format, byte for byte
    again = tmp_path / "again.npz"
    old.save(again)
    assert again.read_bytes() == (DATA / "detector_v1_neglabel.npz").read_bytes()


def test_tanl_file_without_noise_is_refused(prob, tmp_path):
    import zipfile

    det = tanl_det(prob)
    det.save(tmp_path / "t.npz")
    with zipfile.ZipFile(tmp_path / "t.npz") as zin, \
            zipfile.ZipFile(tmp_path / "bad.npz", "w") as zout:
        for info in zin.infolist():
            if info.filename != "noise.npy":
                zout.writestr(info, zin.read(info))
    with pytest.raises(DetectorFileError, match="noise|members"):
        NegativeLabelDetector.load(tmp_path / "bad.npz")


def test_detector_bad_input(prob):
    P, U, adj, Z, X = prob
    with pytest.raises(ValueError, match="noise: method 'tanl' needs"):
        NegativeLabelDetector("tanl", n_negatives=60).fit(P, U, adj)
    with pytest.raises(ValueError, match="noise: expected the embeddings of the 15"):
        NegativeLabelDetector("tanl", n_negatives=60).fit(P, U, adj, noise=Z[:14])
    with pytest.raises(ValueError, match="noise.*features"):
        NegativeLabelDetector("tanl", n_negatives=60).fit(P, U, adj, noise=Z[:, :8])
    with pytest.raises(ValueError, match="noise: only method 'tanl'"):
        NegativeLabelDetector("adaneg", n_negatives=60).fit(P, U, adj, noise=Z)
    with pytest.raises(ValueError, match="n_negatives: 10000 .* only 160"):
        NegativeLabelDetector("adaneg").fit(P, U, adj)
    for kw, match in ((dict(memory_length=0), "memory_length: must be >= 1"),
                      (dict(batch_size=0), "batch_size: must be >= 1"),
                      (dict(replacement="best"), "replacement: expected one of"),
                      (dict(variant="x"), "variant: expected one of"),
                      (dict(cache_threshold=1.5), "cache_threshold: must lie in"),
                      (dict(sample_adaptive=1), "sample_adaptive: expected a bool")):
        with pytest.raises((ValueError, TypeError), match=match):
            NegativeLabelDetector("adaneg", n_negatives=60, **kw).fit(P, U, adj)
    with pytest.raises(TypeError, match="step: expected an integer"):
        NegativeLabelDetector("tanl", n_negatives=60, step=1.5).fit(P, U, adj, noise=Z)
    det = adaneg_det(prob)
    with pytest.raises(ValueError, match="X: has 8 features"):
        det.score_samples(X[:, :8])
    with pytest.raises(ValueError, match="explain is not defined for the streaming"):
        det.explain(X[:3])
    with pytest.raises(ValueError, match="not a streaming method"):
        NegativeLabelDetector("mcm").fit(P).stream()
    bad = X.copy()
    bad[20, 3] = np.nan
    with pytest.raises(ValueError, match="row 20"):
        det.score_samples(bad)


# ---- the command line ----------------------------------------------------------------------

@pytest.fixture
def files(prob, tmp_path):
    P, U, adj, Z, X = prob
    for name, a in (("P", P), ("U", U), ("adj", adj), ("Z", Z), ("X", X)):
        np.save(tmp_path / f"{name}.npy", a)
    return tmp_path


def run(capsys, *argv):
    from dnm.cli import main

    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def one_error(rc, err, match):
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dnm: error: "), err
    assert match in lines[0], lines[0]


def test_cli_mine_and_score_adaneg(prob, files, capsys):
    P, U, adj, Z, X = prob
    f = files
    rc, err = run(capsys, "mine", "--method", "adaneg", "--candidates", f / "U.npy",
                  "--id-labels", f / "P.npy", "--is-adjective", f / "adj.npy",
                  "--n-negatives", 60, "-o", f / "sel.npy", "--detector", f / "a.npz",
                  "--batch-size", 16, "-q")
    assert rc == 0, err
    sel = np.load(f / "sel.npy")
    np.testing.assert_array_equal(sel, twin_selection(P, U, adj, 60))
    ref = dnm.adaneg_score(X, P, U[sel], batch_size=16)
    rc, err = run(capsys, "score", "--detector", f / "a.npz", "--images", f / "X.npy",
                  "-o", f / "s1.npy", "--save-state", f / "st.npz", "-q")
    assert rc == 0, err
    np.testing.assert_array_equal(np.load(f / "s1.npy"), ref)
    np.save(f / "N.npy", U[sel])
    rc, err = run(capsys, "score", "--method", "adaneg", "--id-labels", f / "P.npy",
                  "--negatives", f / "N.npy", "--images", f / "X.npy", "--batch-size", 16,
                  "-o", f / "s2.npy", "-o", f / "s2.json", "-q")
    assert rc == 0, err
    np.testing.assert_array_equal(np.load(f / "s2.npy"), ref)
    assert json.loads((f / "s2.json").read_text())["method"] == "adaneg"
    # --resume goes on with the saved stream: the same as one object fed both files
    rc, err = run(capsys, "score", "--resume", f / "st.npz", "--images", f / "X.npy",
                  "--batch-size", 16, "-o", f / "s3.npy", "-q")
    assert rc == 0, err
    obj = dnm.AdaNeg(P, U[sel])
    both = np.concatenate([obj.update(X[i:i + 16]) for i in range(0, len(X), 16)]
                          + [obj.update(X[i:i + 16]) for i in range(0, len(X), 16)])
    np.testing.assert_array_equal(np.load(f / "s3.npy"), both[len(X):])


def test_cli_mine_and_score_tanl(prob, files, capsys):
    P, U, adj, Z, X = prob
    f = files
    rc, err = run(capsys, "mine", "--method", "tanl", "--candidates", f / "U.npy",
                  "--id-labels", f / "P.npy", "--is-adjective", f / "adj.npy",
                  "--n-negatives", 60, "-o", f / "perm.npy", "-q")
    assert rc == 0, err  # the corpus order needs no noise
    perm = np.load(f / "perm.npy")
    np.testing.assert_array_equal(perm[:60], twin_selection(P, U, adj, 60))
    rc, err = run(capsys, "mine", "--method", "tanl", "--candidates", f / "U.npy",
                  "--id-labels", f / "P.npy", "--is-adjective", f / "adj.npy",
                  "--n-negatives", 60, "--detector", f / "t.npz", "--noise", f / "Z.npy",
                  "--top", 40, "--batch-size", 16, "-q")
    assert rc == 0, err
    ref = dnm.tanl_score(X, P, U[perm], Z, batch_size=16, top=40)
    rc, err = run(capsys, "score", "--detector", f / "t.npz", "--images", f / "X.npy",
                  "-o", f / "s1.npy", "-q")
    assert rc == 0, err
    np.testing.assert_array_equal(np.load(f / "s1.npy"), ref)
    np.save(f / "C.npy", U[perm])
    rc, err = run(capsys, "score", "--method", "tanl", "--id-labels", f / "P.npy",
                  "--corpus", f / "C.npy", "--noise", f / "Z.npy", "--top", 40,
                  "--batch-size", 16, "--images", f / "X.npy", "-o", f / "s2.npy", "-q")
    assert rc == 0, err
    np.testing.assert_array_equal(np.load(f / "s2.npy"), ref)


def test_cli_user_errors(prob, files, capsys):
    f = files
    np.save(f / "N.npy", prob[1][:40])
    base = ("score", "--id-labels", f / "P.npy", "--images", f / "X.npy", "-o", f / "s.npy")
    for extra, match in (
            (("--method", "tanl", "--negatives", f / "N.npy"), "--negatives: tanl scores"),
            (("--method", "tanl", "--corpus", f / "U.npy"), "--corpus and --noise are required"),
            (("--method", "adaneg"), "--negatives is required for method 'adaneg'"),
            (("--method", "adaneg", "--negatives", f / "N.npy", "--noise", f / "Z.npy"),
             "only method 'tanl' uses them"),
            (("--method", "adaneg", "--negatives", f / "N.npy", "--memory-length", 0),
             "memory_length: must be >= 1"),
            (("--method", "adaneg", "--negatives", f / "N.npy", "--replacement", "best"),
             "replacement: expected one of"),
            (("--method", "adaneg", "--negatives", f / "N.npy", "--sample-adaptive", "maybe"),
             "--sample-adaptive: expected true or false"),
            (("--method", "tanl", "--corpus", f / "U.npy", "--noise", f / "P.npy"),
             "noise: expected the embeddings of the 15"),
            (("--method", "dnm", "--negatives", f / "N.npy", "--batch-size", 8),
             "--batch-size: only the streaming methods"),
            (("--method", "adaneg", "--negatives", f / "N.npy", "--resume", f / "P.npy"),
             "--resume continues a saved stream")):
        one_error(*run(capsys, *base, *extra), match)
    rc, err = run(capsys, "score", "--resume", f / "P.npy", "--images", f / "X.npy", "-o",
                  f / "s.npy")
    one_error(rc, err, "--resume: ")
    assert not (f / "s.npy").exists()
    rc, err = run(capsys, "mine", "--method", "tanl", "--candidates", f / "U.npy",
                  "--id-labels", f / "P.npy", "--is-adjective", f / "adj.npy", "--n-negatives",
                  60, "--detector", f / "t.npz")
    one_error(rc, err, "--noise is required for a tanl detector")
    rc, err = run(capsys, "mine", "--method", "adaneg", "--candidates", f / "U.npy",
                  "--id-labels", f / "P.npy", "--is-adjective", f / "adj.npy", "-o",
                  f / "sel.npy")
    one_error(rc, err, "n_negatives: 10000 negatives asked for but there are only 160")
    NegativeLabelDetector("neglabel", groups=2).fit(prob[0], prob[1], prob[2]).save(f / "n.npz")
    rc, err = run(capsys, "score", "--detector", f / "n.npz", "--images", f / "X.npy", "-o",
                  f / "s.npy", "--batch-size", 4)
    one_error(rc, err, "--batch-size: not used by the neglabel detector")


# ---- dnm.dask: one task per stream ---------------------------------------------------------

def dask_streams(prob):
    X = prob[4]
    rng = np.random.default_rng(5)
    return {"a": X, "b": X[rng.permutation(len(X))][:77], "c": X[::2]}


@pytest.mark.parametrize("make", [adaneg_det, tanl_det])
def test_dask_streams_threaded_equal_one_process(prob, make):
    import dask
    import dask.array as da
    import dnm.dask as dd

    det = make(prob)
    streams = dask_streams(prob)
    lazy = dd.score_streams(det, {k: (da.from_array(v, chunks=(20, v.shape[1])) if k == "b"
                                      else v) for k, v in streams.items()}, client=False)
    assert set(lazy) == set(streams) and all(isinstance(v, da.Array) for v in lazy.values())
    got = dask.compute(lazy, scheduler="threads")[0]
    for k, X in streams.items():
        np.testing.assert_array_equal(got[k], det.score_samples(X))


def test_dask_streams_objects_and_factories(prob):
    import functools

    import dask
    import dnm.dask as dd

    P, U, adj, Z, X = prob
    N = U[:40]
    obj = dnm.AdaNeg(P, N, memory_length=3)
    obj.update(X[:30])  # mid-stream: every task goes on from this state, obj is not changed
    seen = obj.n_images_seen_
    streams = dask_streams(prob)
    got = dask.compute(dd.score_streams(obj, streams, batch_size=8, client=False),
                       scheduler="threads")[0]
    assert obj.n_images_seen_ == seen
    import copy
    for k, Xs in streams.items():
        ref = copy.deepcopy(obj)
        np.testing.assert_array_equal(got[k], np.concatenate(
            [ref.update(Xs[i:i + 8]) for i in range(0, len(Xs), 8)]))
    fac = functools.partial(dnm.TANL, P, U, Z, top=30)
    got = dask.compute(dd.score_streams(fac, streams, client=False), scheduler="threads")[0]
    for k, Xs in streams.items():
        np.testing.assert_array_equal(got[k], dnm.tanl_score(Xs, P, U, Z, top=30))


def test_dask_streams_bad_input(prob):
    import dnm.dask as dd

    P, U, adj, Z, X = prob
    with pytest.raises(dnm.NotFittedError):
        dd.score_streams(NegativeLabelDetector("adaneg"), {"a": X})
    static = NegativeLabelDetector("neglabel", groups=2).fit(P, U, adj)
    with pytest.raises(TypeError, match="does not adapt to the stream; use dnm.dask.score_samples"):
        dd.score_streams(static, {"a": X})
    det = adaneg_det(prob)
    with pytest.raises(ValueError, match="adapts to the test stream.*score_streams"):
        dd.score_samples(det, X)
    with pytest.raises(TypeError, match="streams: expected a non-empty mapping"):
        dd.score_streams(det, X)
    with pytest.raises(ValueError, match="streams\\['a'\\]: expected a 2-D"):
        dd.score_streams(det, {"a": X[0]})
    with pytest.raises(ValueError, match="batch_size: must be >= 1"):
        dd.score_streams(det, {"a": X}, batch_size=0)
    with pytest.raises(TypeError, match="method: expected"):
        dd.score_streams(42, {"a": X})


def test_dask_streams_local_cluster_equal_one_process(client, prob):
    import dask
    import dnm.dask as dd

    streams = dask_streams(prob)
    for det in (adaneg_det(prob), tanl_det(prob)):
        lazy = dd.score_streams(det, streams)
        # this detector on both workers (an earlier one may be being released meanwhile, and
        # the scheduler's view may lag the scatter by a moment on a loaded machine)
        for _ in range(50):
            who = client.who_has()  # one snapshot: keys come and go between two calls
            scattered = [k for k in who if k.startswith("NegativeLabelDetector-")]
            if any(len(who[k]) == 2 for k in scattered):
                break
            time.sleep(0.1)
        assert any(len(who[k]) == 2 for k in scattered), who
        got = dask.compute(lazy)[0]
        for k, X in streams.items():
            np.testing.assert_array_equal(got[k], det.score_samples(X))


# ---- the benchmark runner ------------------------------------------------------------------

def bench_inputs(prob):
    P, U, adj, Z, X = prob
    rng = np.random.default_rng(9)
    feats = {"ID": X[:40], "A": X[40:80], "B": (X[80:] + rng.normal(size=X[80:].shape)
                                             ).astype(np.float32)}
    return feats, dict(id_labels=P, candidates=U, is_adjective=adj, noise=Z)


def official_eval(det, feats, seed, name):
    """The official evaluation: ID + one OOD set, shuffled with the seed, one fresh stream."""
    X = np.concatenate([feats["ID"], feats[name]])
    perm = np.random.default_rng(seed).permutation(len(X))
    s = np.empty(len(X))
    s[perm] = det.score_samples(X[perm])
    return s[:len(feats["ID"])], s[len(feats["ID"]):]


def test_benchmark_runs_adaneg_and_tanl_by_name(prob):
    feats, lab = bench_inputs(prob)
    params = {"adaneg": dict(n_negatives=60, batch_size=16),
              "tanl": dict(n_negatives=60, batch_size=16, top=40)}
    res = dnm.run_benchmark(feats, methods=["adaneg", "tanl", "mcm"], seeds=[0, 1],
                            params=params, progress=False, conventions=["openood"], **lab)
    P, U, adj, Z, X = prob
    for method in ("adaneg", "tanl"):
        for seed in (0, 1):
            det = NegativeLabelDetector(method, seed=seed, **params[method]).fit(
                P, U, adj, noise=Z if method == "tanl" else None)
            got = res.scores[(method, seed)]
            for name in ("A", "B"):
                a, b = official_eval(det, feats, seed, name)
                np.testing.assert_array_equal(got[name], b)
                np.testing.assert_array_equal(got[f"ID (stream with {name})"], a)
                row = [r for r in res.per_seed if (r["method"], r["seed"], r["dataset"])
                       == (method, seed, name)][0]
                assert row["AUROC"] == dnm.metrics.auroc(a, b)
    # the seed matters (grouping, queue orders), so the two seeds' scores differ
    assert not np.array_equal(res.scores[("adaneg", 0)]["A"], res.scores[("adaneg", 1)]["A"])
    assert not np.array_equal(res.scores[("tanl", 0)]["A"], res.scores[("tanl", 1)]["A"])


def test_benchmark_adaneg_on_given_negatives_and_detectors(prob):
    feats, lab = bench_inputs(prob)
    P, U, adj, Z, X = prob
    res = dnm.run_benchmark(feats, id_labels=P, negatives=U[:50], methods=["adaneg"],
                            params={"adaneg": dict(batch_size=16)}, seeds=[3], progress=False)
    ref = dnm.adaneg_score
    Xs = np.concatenate([feats["ID"], feats["A"]])
    perm = np.random.default_rng(3).permutation(len(Xs))
    s = np.empty(len(Xs))
    s[perm] = ref(Xs[perm], P, U[:50], batch_size=16, seed=3)
    np.testing.assert_array_equal(res.scores[("adaneg", 3)]["A"], s[40:])
    # a fitted streaming detector is streamed too (as it is)
    det = NegativeLabelDetector("tanl", n_negatives=60, batch_size=16, top=40).fit(
        P, U, adj, noise=Z)
    res = dnm.run_benchmark(feats, methods={"t": det}, seeds=[2], progress=False)
    np.testing.assert_array_equal(res.scores[("t", 2)]["B"], official_eval(det, feats, 2, "B")[1])


def test_benchmark_streaming_bad_input(prob):
    feats, lab = bench_inputs(prob)
    P, U, adj, Z, X = prob
    with pytest.raises(ValueError, match="'tanl' needs noise="):
        dnm.run_benchmark(feats, id_labels=P, candidates=U, is_adjective=adj,
                          methods=["tanl"], progress=False)
    with pytest.raises(ValueError, match="'tanl' scores against the whole corpus"):
        dnm.run_benchmark(feats, id_labels=P, negatives=U[:50], noise=Z, methods=["tanl"],
                          progress=False)
    with pytest.raises(ValueError, match="n_negatives: 10000 .* only 160"):
        dnm.run_benchmark(feats, methods=["adaneg"], progress=False, **lab)
