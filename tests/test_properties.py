"""Property-based tests (hypothesis) over the public functions (issue 8).

Every call either returns what the NumPy twin (tests/slow/) returns, within a
tolerance that depends on the compute precision, or raises ValueError /
TypeError whose message names an offending argument.  Inputs are never
modified.  Examples per property: DNM_HYPOTHESIS_EXAMPLES (default 30).
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import dnm
from slow import mining as mtwin
from slow import score as stwin

N_EX = int(os.environ.get("DNM_HYPOTHESIS_EXAMPLES", 30))
SETTINGS = settings(max_examples=N_EX, deadline=None, suppress_health_check=list(HealthCheck))

FLOATS = [np.float16, np.float32, np.float64]
OTHER = [np.int32, np.int64, np.uint8, np.bool_, np.complex64, object, np.dtype(">f4"),
         np.longdouble]


@st.composite
def matrix(draw, rows=None, cols=None, bad_ok=True, scale=None):
    """(array, expected problem or None)."""
    r = draw(st.integers(0, 6)) if rows is None else rows
    c = draw(st.integers(0, 5)) if cols is None else cols
    dtype = draw(st.sampled_from(FLOATS + (OTHER if bad_ok else [])))
    sc = draw(st.sampled_from([1.0, 1e-30, 1e-6, 1e6, 1e30])) if scale is None else scale
    seed = draw(st.integers(0, 2**32 - 1))
    base = np.random.default_rng(seed).normal(size=(r, c)) * sc + (0.5 if scale else 0)
    if bad_ok and r and c and draw(st.integers(0, 5)) == 0:
        base[draw(st.integers(0, r - 1)), draw(st.integers(0, c - 1))] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf]))
    with np.errstate(all="ignore"):
        a = base.astype(dtype)
    layout = draw(st.sampled_from(["C", "F", "strided", "T", "neg"]))
    if layout == "F":
        a = np.asfortranarray(a)
    elif layout == "strided":
        big = np.zeros((2 * r, 3 * c), dtype=a.dtype)
        big[::2, ::3] = a
        a = big[::2, ::3]
    elif layout == "T":
        a = np.ascontiguousarray(a.T).T
    elif layout == "neg":
        a = np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]
    return a


def unchanged(a, b):
    """a (after the call) equals its copy b (NaN == NaN; object arrays by element)."""
    assert a.dtype == b.dtype and a.shape == b.shape
    if a.dtype == object:
        assert all(x == y or (x != x and y != y) for x, y in zip(a.ravel(), b.ravel()))
    else:
        np.testing.assert_array_equal(a, b)


def problem(a):
    """None if `a` is a valid float matrix for scores, else 'type' or 'value'."""
    if a.dtype.kind != "f":
        return "type"
    if a.ndim != 2 or 0 in a.shape:
        return "value"
    f = a.astype(np.float64)
    if not np.isfinite(f).all():
        return "value"
    if (np.abs(f).max(axis=1) == 0).any():
        return "value"
    return None


def rnorm(a):
    a = np.asarray(a, dtype=np.float64)
    a = a / np.abs(a).max(axis=1, keepdims=True)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def tol(*arrays):
    return 1e-9 if any(a.dtype == np.float64 for a in arrays) else 2e-4


def expect(call, named, copies_of, extra=()):
    """Run `call`; named: {argname: array}; returns result or None after an error check."""
    before = {k: v.copy() for k, v in copies_of.items()}
    bad = {k: problem(v) for k, v in named.items()}
    dims = {k: v.shape[1] for k, v in named.items() if v.ndim == 2}
    mismatch = len(set(dims.values())) > 1
    try:
        out = call()
    except (ValueError, TypeError) as e:
        msg = str(e)
        culprits = [k for k, p in bad.items() if p] + (list(dims) if mismatch else []) + list(extra)
        assert culprits, f"unexpected {type(e).__name__}: {msg}"
        assert any(k in msg for k in culprits), (msg, culprits)
        out = None
    else:
        assert not any(bad.values()) and not mismatch and not extra, f"accepted bad input {bad}"
    for k, v in copies_of.items():
        unchanged(v, before[k])
    return out


@SETTINGS
@given(X=matrix(), P=matrix(), kind=st.sampled_from(["mcm", "max_logit", "energy"]),
       T=st.sampled_from([1.0, 0.01, 1e-4, 100.0]))
def test_id_only_scores(X, P, kind, T):
    f = {"mcm": dnm.mcm_score, "max_logit": dnm.max_logit_score, "energy": dnm.energy_score}[kind]
    kw = {} if kind == "max_logit" else {"temperature": T}
    out = expect(lambda: f(X, P, **kw), {"images": X, "id_labels": P}, {"X": X, "P": P})
    if out is None:
        return
    assert out.dtype == np.float64 and out.shape == (X.shape[0],)
    twin = {"mcm": stwin.mcm, "max_logit": stwin.max_logit, "energy": stwin.energy}[kind]
    ref = twin(rnorm(X), rnorm(P), **kw)
    t = tol(X, P)
    np.testing.assert_allclose(out, ref, rtol=t * (1 / T if kind == "mcm" else 1),
                               atol=t * (1 if kind != "mcm" else max(1, 1 / T)))


@SETTINGS
@given(X=matrix(), P=matrix(), N=matrix(), G=st.integers(1, 4), seed=st.integers(0, 5),
       kind=st.sampled_from(["neglabel", "dnm"]), tau=st.sampled_from([1.0, 0.5, 0.9]))
def test_grouped_scores(X, P, N, G, seed, kind, tau):
    named = {"images": X, "id_labels": P, "negatives": N}
    if kind == "neglabel":
        call = lambda: dnm.neglabel_score(X, P, N, temperature=0.05, groups=G, seed=seed)  # noqa
    else:
        call = lambda: dnm.dnm_score(X, P, N, temperature=0.05, tau=tau, groups=G,  # noqa
                                     seed=seed, guard="dcl")
    enough = N.ndim == 2 and N.shape[0] >= G
    out = expect(call, named, {"X": X, "P": P, "N": N}, extra=() if enough else ("groups",))
    if out is None:
        return
    if kind == "neglabel":
        ref = stwin.neglabel(rnorm(X), rnorm(P), rnorm(N), 0.05, G, seed)
    else:
        ref = stwin.dnm(rnorm(X), rnorm(P), rnorm(N), 0.05, tau, G, seed, guard="dcl")[0]
    t = tol(X, P, N)
    np.testing.assert_allclose(out, ref, rtol=50 * t, atol=50 * t)


@SETTINGS
@given(data=st.data())
def test_knn_log_distance(data):
    raw = data.draw(matrix(scale=data.draw(st.sampled_from([3.0, 50.0]))))
    k = data.draw(st.integers(-1, 7))
    before = raw.copy()
    p = problem(raw)
    try:
        out = dnm.knn_log_distance(raw, k=k)
    except (ValueError, TypeError) as e:
        msg = str(e)
        assert p or k < 0 or k >= raw.shape[0] or "norm" in msg or "distance" in msg, msg
        assert "raw_candidates" in msg or "k:" in msg, msg
        out = None
    unchanged(raw, before)
    if out is None:
        return
    assert p is None and 0 <= k < raw.shape[0]
    ref = mtwin.knn_log_distance(raw.astype(np.float64), k)
    np.testing.assert_allclose(out, ref, rtol=1e-3 if raw.dtype != np.float64 else 1e-8,
                               atol=1e-3 if raw.dtype != np.float64 else 1e-8)
    adj = np.arange(raw.shape[0]) % 3 == 0
    sel = dnm.select_dnm(raw, adj, noun_ratio=0.5, adj_ratio=0.5, k=k)
    np.testing.assert_array_equal(sel, mtwin._select(out, adj, 0.5, 0.5))


@SETTINGS
@given(P=matrix(), Xc=matrix(), pct=st.sampled_from([0.0, 0.5, 0.95, 1.0, 1.5, -0.1]),
       cut=st.sampled_from([None, 0.95, 0.0, float("nan")]))
def test_neglabel_closeness(P, Xc, pct, cut):
    named = {"id_labels": P, "candidates": Xc}
    before = {"P": P.copy(), "X": Xc.copy()}
    try:
        out = dnm.neglabel_closeness(P, Xc, pct, max_cut=cut)
    except (ValueError, TypeError) as e:
        msg = str(e)
        bad = [k for k, v in named.items() if problem(v)]
        dims = P.ndim == 2 and Xc.ndim == 2 and P.shape[1] != Xc.shape[1]
        assert bad or dims or not 0 <= pct <= 1 or (cut is not None and cut != cut), msg
        assert any(k in msg for k in ["id_labels", "candidates", "percentile", "max_cut"]), msg
        out = None
    unchanged(P, before["P"])
    unchanged(Xc, before["X"])
    if out is None:
        return
    ref = mtwin.neglabel_closeness(rnorm(P), rnorm(Xc), pct, cut)
    t = tol(P, Xc)
    np.testing.assert_allclose(out, ref, rtol=10 * t, atol=10 * t)
    adj = np.arange(Xc.shape[0]) % 2 == 0
    sel = dnm.select_neglabel(P, Xc, adj, ratio=0.5, percentile=pct, max_cut=cut)
    np.testing.assert_array_equal(sel, mtwin._select(out, adj, 0.5, 0.5))


scores_1d = st.one_of(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=0, max_size=40)
    .map(lambda v: np.array(v, dtype=np.float64)),
    st.lists(st.integers(-3, 3), min_size=0, max_size=40).map(np.array),
    st.lists(st.sampled_from([0.0, 1.0, -1.0, 1e-40, 1e38]), min_size=0, max_size=40)
    .map(lambda v: np.array(v, dtype=np.float32)),
    st.sampled_from([np.zeros((2, 2)), np.array(3.0), np.array([1 + 1j, 2]),
                     np.array([True, False]), np.array(["a", "b"])]),
)


@SETTINGS
@given(a=scores_1d, b=scores_1d, tpr=st.sampled_from([0.95, 0.5, 1.0, 0.0, 1.2]),
       conv=st.sampled_from(["paper", "openood", "interp", "bogus"]))
def test_metrics(a, b, tpr, conv):
    from sklearn.metrics import average_precision_score, roc_auc_score

    from slow import metrics as T

    ca, cb = a.copy(), b.copy()
    valid = all(x.ndim == 1 and x.size >= 2 and x.dtype.kind in "iuf"
                and np.isfinite(x.astype(np.float64)).all() for x in (a, b))
    calls = {"auroc": lambda: dnm.metrics.auroc(a, b),
             "aupr_in": lambda: dnm.metrics.aupr_in(a, b),
             "aupr_out": lambda: dnm.metrics.aupr_out(a, b),
             "fpr": lambda: dnm.metrics.fpr_at_tpr(a, b, tpr=tpr, convention=conv)}
    for name, f in calls.items():
        try:
            v = f()
        except (ValueError, TypeError) as e:
            ok_fpr = 0 < tpr <= 1 and conv != "bogus"
            assert not valid or (name == "fpr" and not ok_fpr), str(e)
            assert any(k in str(e) for k in ("id_scores", "ood_scores", "tpr", "convention")), str(e)
            continue
        assert valid
        A, B = a.astype(np.float64), b.astype(np.float64)
        y = np.r_[np.ones(A.size), np.zeros(B.size)]
        s = np.r_[A, B]
        if name == "auroc":
            assert abs(v - roc_auc_score(y, s)) < 1e-12
        elif name == "aupr_in":
            assert abs(v - average_precision_score(y, s)) < 1e-12
        elif name == "aupr_out":
            assert abs(v - average_precision_score(1 - y, -s)) < 1e-12
        else:
            ref = {"paper": T.fpr_paper, "openood": T.fpr_openood, "interp": T.fpr_interp}[conv]
            assert abs(v - ref(A, B, tpr)) < 1e-12
    unchanged(a, ca)
    unchanged(b, cb)


@settings(max_examples=max(10, N_EX // 3), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(method=st.sampled_from(["dnm", "neglabel", "csp", "mcm", "energy", "max_logit"]),
       dtype=st.sampled_from(FLOATS), D=st.integers(1, 6), C=st.integers(1, 5),
       n=st.integers(4, 30), seed=st.integers(0, 100))
def test_detector_fit_score_save_load(tmp_path_factory, method, dtype, D, C, n, seed):
    rng = np.random.default_rng(seed)
    P = rng.normal(size=(C, D)).astype(dtype)
    raw = (rng.normal(size=(n, D)) * 4 + 1).astype(dtype)
    adj = rng.random(n) < 0.3
    X = rng.normal(size=(7, D)).astype(dtype)
    copies = (P.copy(), raw.copy(), adj.copy(), X.copy())
    det = dnm.NegativeLabelDetector(method, k=2, groups=1, noun_ratio=0.5, adj_ratio=0.5,
                                    ratio=0.5, guard="dcl")
    try:
        det.fit(P, raw, adj)
    except ValueError as e:
        assert any(k in str(e) for k in ("raw_candidates", "candidates", "id_labels", "fit",
                                          "groups")), str(e)
        return
    try:
        s = det.score_samples(X)
    except ValueError as e:  # zero rows in float16 and friends
        assert "X" in str(e) or "images" in str(e) or "negatives" in str(e), str(e)
        return
    p = tmp_path_factory.mktemp("det") / "d.npz"
    det.save(p)
    det2 = dnm.NegativeLabelDetector.load(p)
    assert det2.score_samples(X).tobytes() == s.tobytes()
    for a, b in zip((P, raw, adj, X), copies):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="X"):
        det.score_samples(np.ones((2, D + 1), dtype))


@SETTINGS
@given(phrases=st.lists(st.one_of(st.text(max_size=8), st.integers(), st.none()), max_size=6),
       template=st.one_of(st.text(max_size=10), st.integers(), st.just("a {} b")))
def test_corpus_from_list_and_prompts(phrases, template):
    before = list(phrases)
    try:
        c = dnm.corpus.from_list(phrases)
    except (ValueError, TypeError) as e:
        assert "phrases" in str(e) or "corpus" in str(e), str(e)
    else:
        assert len(c) <= len(phrases)
        try:
            out = c.prompts(noun_template=template, adjective_template=template)
        except (ValueError, TypeError) as e:
            assert "template" in str(e), str(e)
        else:
            assert len(out) == len(c)
            assert all(o == template.replace("{}", p) for o, p in zip(out, c.phrases))
    assert phrases == before


def test_cli_bad_input_exits_2(tmp_path):
    cli = pytest.importorskip("dnm.cli")
    for argv in (["score", str(tmp_path / "missing.npy")], ["no-such-command"], ["mine"],
                 ["evaluate", "--id", str(tmp_path / "x.npy")]):
        try:
            rc = cli.main(argv)
        except SystemExit as e:
            rc = e.code
        assert rc == 2, argv
