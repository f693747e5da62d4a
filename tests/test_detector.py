"""NegativeLabelDetector: parameters, presets, fit/score, thresholds, explain, save/load."""
import io
import json
import zipfile

import numpy as np
import pytest

import dnm
import dnm.mining
from dnm import presets as P
from dnm.detector import (DetectorFileError, Explanation, NegativeLabelDetector,
                          NotFittedError)
from slow import detector as twin
from slow import score as score_twin

D = 32


def make_data(seed=0, C=20, n_nouns=240, n_adj=60, n_img=40):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, D))
    ids = rng.normal(size=(C, D)).astype(np.float32)
    # clustered raw candidates with CLIP-like norms (5..10): densities differ between rows
    lab = rng.integers(0, 8, n_nouns + n_adj)
    cand = centres[lab] + rng.normal(scale=rng.uniform(0.3, 2.0, (n_nouns + n_adj, 1)),
                                     size=(n_nouns + n_adj, D))
    cand *= rng.uniform(5, 10, (len(cand), 1)) / np.linalg.norm(cand, axis=1, keepdims=True)
    is_adj = np.zeros(n_nouns + n_adj, bool)
    is_adj[rng.permutation(len(cand))[:n_adj]] = True
    imgs = np.concatenate([ids[rng.integers(0, C, n_img // 2)] + 1.5 * rng.normal(size=(n_img // 2, D)),
                           rng.normal(size=(n_img - n_img // 2, D))]).astype(np.float32)
    phrases = [f"phrase{i}" for i in range(len(cand))]
    return ids, cand.astype(np.float32), is_adj, phrases, imgs


@pytest.fixture(scope="module")
def data():
    return make_data()


def fitted(method, data, **kw):
    ids, cand, is_adj, phrases, _ = data
    kw.setdefault("groups", 5)
    if method not in ("dnm", "neglabel", "csp"):
        kw.pop("groups")
        return NegativeLabelDetector(method, **kw).fit(ids, id_names=[f"id{i}" for i in range(len(ids))])
    return NegativeLabelDetector(method, **kw).fit(ids, cand, is_adj, phrases,
                                                   id_names=[f"id{i}" for i in range(len(ids))])


# ---------------------------------------------------------------------------------------------
# parameters

def test_init_only_stores_and_get_set_params():
    det = NegativeLabelDetector("bogus", preset="nope", tau=-3, groups="x")
    p = det.get_params()
    assert p["method"] == "bogus" and p["tau"] == -3 and p["groups"] == "x"
    assert set(p) == {"method", "preset", "temperature", "tau", "groups", "seed", "k",
                      "noun_ratio", "adj_ratio", "ratio", "percentile", "max_cut", "guard",
                      "num_threads", "progress"} | set(dnm.detector_file.V2_PARAMS)
    assert NegativeLabelDetector().get_params()["method"] == "dnm"
    assert NegativeLabelDetector().get_params()["preset"] == "ViT-B/16"
    assert det.set_params(method="mcm", tau=None) is det
    assert det.method == "mcm" and det.tau is None
    with pytest.raises(ValueError, match="invalid parameter 'bogus'"):
        det.set_params(bogus=1)
    with pytest.raises(ValueError, match="method"):
        NegativeLabelDetector("bogus").fit(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match="preset"):
        NegativeLabelDetector("dnm", preset="ViT-Z/99").fit(np.eye(3, dtype=np.float32))
    assert "tau=0.3" in repr(NegativeLabelDetector(tau=0.3))
    assert repr(NegativeLabelDetector()) == "NegativeLabelDetector()"


def test_sklearn_clone(data):
    base = pytest.importorskip("sklearn.base")
    det = NegativeLabelDetector("neglabel", preset="RN50", tau=0.2, groups=np.arange(6).reshape(2, 3))
    c = base.clone(det)
    assert c is not det and type(c) is NegativeLabelDetector
    p, q = det.get_params(), c.get_params()
    assert np.array_equal(p.pop("groups"), q.pop("groups")) and p == q
    fd = fitted("mcm", data)
    cf = base.clone(fd)
    assert not hasattr(cf, "id_labels_")
    from sklearn.utils.validation import check_is_fitted
    check_is_fitted(fd)
    with pytest.raises(Exception, match="not fitted"):
        check_is_fitted(cf)


# ---------------------------------------------------------------------------------------------
# presets

@pytest.mark.parametrize("preset,row", [
    ("ViT-B/16", (0.23, 0.13, 100, 0.5, 0.01, 100)), ("ViT-L/14", (0.23, 0.13, 100, 0.5, 0.01, 100)),
    ("ViT-B/32", (0.25, 0.13, 10, 0.12, 0.01, 100)), ("RN50", (0.25, 0.13, 100, 0.5, 0.01, 100)),
    ("ViT-L/14@336px", (0.25, 0.08, 100, 0.12, 0.01, 100))])
def test_dnm_presets_table(preset, row, data):
    det = fitted("dnm", data, preset=preset, groups=2, k=5, guard="dcl")  # small data: k, G
    assert (det.noun_ratio_, det.adj_ratio_, det.tau_, det.temperature_) == (row[0], row[1], row[3], row[4])
    assert det.k_ == 5 and det.groups_ == 2
    assert P.resolve("dnm", preset)["k"] == row[2] and P.resolve("dnm", preset)["groups"] == row[5]
    assert dict(P.PRESETS[preset]) == dict(zip(["noun_ratio", "adj_ratio", "k", "tau", "temperature",
                                                "groups"], row))
    assert det.ratio_ is None and det.percentile_ is None and det.max_cut_ is None


def test_preset_aliases_and_other_methods():
    assert P.preset_name("vit-b-16") == "ViT-B/16"
    assert P.preset_name("ViT-L-14-336") == "ViT-L/14@336px"
    assert P.preset_name(None) == "ViT-B/16"
    nl = P.resolve("neglabel", "ViT-B/32")
    assert (nl["ratio"], nl["percentile"], nl["temperature"], nl["groups"], nl["max_cut"]) == \
        (0.15, 0.95, 0.01, 100, None)
    assert P.resolve("csp")["max_cut"] == 0.95 and P.resolve("csp")["ratio"] == 0.15
    assert P.resolve("mcm")["temperature"] == 1.0 and P.resolve("mcm")["tau"] is None
    assert P.resolve("energy")["temperature"] == 0.01
    assert P.resolve("dnm", "RN50", tau=0.3, k=None)["tau"] == 0.3
    assert P.resolve("dnm", "RN50", k=None)["k"] == 100


def test_overrides(data):
    det = fitted("dnm", data, preset="ViT-B/32", tau=0.9, temperature=0.05, noun_ratio=0.1,
                 adj_ratio=0.2, k=3, groups=4)
    assert (det.tau_, det.temperature_, det.noun_ratio_, det.adj_ratio_, det.k_, det.groups_) == \
        (0.9, 0.05, 0.1, 0.2, 3, 4)
    is_adj = data[2]
    assert len(det.negative_indices_) == int(0.1 * (~is_adj).sum()) + int(0.2 * is_adj.sum())
    assert det.groups_index_.shape == (4, len(det.negative_indices_) // 4)
    det = fitted("csp", data, max_cut=0.5, ratio=0.3, percentile=0.5)
    assert (det.max_cut_, det.ratio_, det.percentile_) == (0.5, 0.3, 0.5)
    assert fitted("mcm", data, temperature=0.5).temperature_ == 0.5


# ---------------------------------------------------------------------------------------------
# fit + score

def test_dnm_fit_and_score_equal_direct_calls(data):
    ids, cand, is_adj, phrases, imgs = data
    det = fitted("dnm", data, k=10)
    idx = twin.select_dnm(cand, is_adj, 0.23, 0.13, k=10)
    np.testing.assert_array_equal(det.negative_indices_, idx)
    assert det.negative_indices_.dtype == np.int64
    assert det.negatives_.dtype == np.float32 and np.array_equal(det.negatives_, cand[idx])
    assert det.negative_phrases_ == [phrases[i] for i in idx]
    assert det.n_features_in_ == D and np.array_equal(det.id_labels_, ids)
    assert det.id_labels_ is not ids
    s = det.score_samples(imgs)
    ref = dnm.dnm_score(imgs, ids, cand[idx], temperature=0.01, tau=0.5, groups=5, seed=0)
    np.testing.assert_array_equal(s, ref)
    s64, _ = score_twin.dnm(imgs, ids, cand[idx], 0.01, 0.5, 5, 0)
    np.testing.assert_allclose(s, s64, rtol=1e-4)
    # a different seed gives a different grouping (and scores)
    det2 = fitted("dnm", data, k=10, seed=1)
    assert not np.array_equal(det2.groups_index_, det.groups_index_)
    assert not np.allclose(det2.score_samples(imgs), s)


@pytest.mark.parametrize("method,max_cut", [("neglabel", None), ("csp", 0.95)])
def test_neglabel_csp_fit_and_score(method, max_cut):
    ids, cand, is_adj, phrases, imgs = make_data(1)
    # plant near-duplicates of ID labels among the candidates: CSP must push them out
    cand = cand.copy()
    cand[:10] = ids[:10] * 7.0
    det = NegativeLabelDetector(method, groups=6).fit(ids, cand, is_adj, phrases)
    idx = twin.select_neglabel(ids, cand, is_adj, 0.15, 0.95, max_cut)
    np.testing.assert_array_equal(np.sort(det.negative_indices_), np.sort(idx))
    if method == "csp":
        assert not np.isin(np.arange(10), det.negative_indices_).any()
    ref = dnm.neglabel_score(imgs, ids, det.negatives_, temperature=0.01, groups=det.groups_index_)
    np.testing.assert_array_equal(det.score_samples(imgs), ref)


def test_no_negative_methods(data):
    ids, cand, is_adj, phrases, imgs = data
    for method, fn in (("mcm", lambda x: dnm.mcm_score(x, ids, 1.0)),
                       ("energy", lambda x: dnm.energy_score(x, ids, 0.01)),
                       ("max_logit", lambda x: dnm.max_logit_score(x, ids))):
        det = NegativeLabelDetector(method).fit(ids)
        assert det.negatives_.shape == (0, D) and det.negative_indices_.shape == (0,)
        assert det.groups_index_ is None
        np.testing.assert_array_equal(det.score_samples(imgs), fn(imgs))
    assert NegativeLabelDetector("energy", temperature=0.1).fit(ids, cand).temperature_ == 0.1


def test_corpus_as_phrases(data):
    ids, cand, is_adj, phrases, imgs = data
    corpus = dnm.Corpus(phrases, is_adj, ["x"] * len(phrases))
    a = NegativeLabelDetector(groups=5, k=10).fit(ids, cand, phrases=corpus)
    b = NegativeLabelDetector(groups=5, k=10).fit(ids, cand, is_adj, phrases)
    np.testing.assert_array_equal(a.negative_indices_, b.negative_indices_)
    assert a.negative_phrases_ == b.negative_phrases_
    with pytest.raises(ValueError, match="disagrees"):
        NegativeLabelDetector(groups=5).fit(ids, cand, ~is_adj, corpus)


def test_clear_errors(data):
    ids, cand, is_adj, phrases, imgs = data
    with pytest.raises(ValueError, match="needs `candidates`"):
        NegativeLabelDetector().fit(ids)
    with pytest.raises(ValueError, match="is_adjective is required"):
        NegativeLabelDetector().fit(ids, cand)
    with pytest.raises(ValueError, match="phrases: 3 phrases for 300"):
        NegativeLabelDetector().fit(ids, cand, is_adj, ["a", "b", "c"])
    with pytest.raises(ValueError, match="features"):
        NegativeLabelDetector().fit(ids, cand[:, :5], is_adj)
    with pytest.raises(ValueError, match="tau"):
        NegativeLabelDetector(tau=1.5).fit(ids, cand, is_adj)
    with pytest.raises(ValueError, match="guard"):
        NegativeLabelDetector(guard="nope").fit(ids, cand, is_adj)
    with pytest.raises(ValueError, match="no negative labels selected"):
        NegativeLabelDetector("neglabel", ratio=0.0).fit(ids, cand, is_adj)
    with pytest.raises(ValueError, match="groups"):
        NegativeLabelDetector(groups=10_000).fit(ids, cand, is_adj)
    det = fitted("mcm", data)
    with pytest.raises(ValueError, match="fitted with 32"):
        det.score_samples(imgs[:, :7])


def test_guard_warning_at_fit(data):
    ids, cand, is_adj, phrases, imgs = data
    # C = 3, Q = 12, tau = 0.5: r = 12 * 0.5 / (0.5 * 3) = 4 > 1
    with pytest.warns(dnm.DNMGuardWarning, match="r = Q"):
        det = NegativeLabelDetector(groups=5, k=10).fit(ids[:3], cand, is_adj)
    with pytest.warns(dnm.DNMGuardWarning):
        det.score_samples(imgs)
    NegativeLabelDetector(groups=5, k=10, guard="dcl").fit(ids[:3], cand, is_adj)  # no warning


def test_not_fitted(data):
    det = NegativeLabelDetector()
    for call in (lambda: det.score_samples(data[4]), lambda: det.explain(data[4]),
                 lambda: det.predict(data[4]), lambda: det.save("x.npz")):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)
    det = fitted("mcm", data)
    with pytest.raises(NotFittedError, match="set_threshold"):
        det.decision_function(data[4])


# ---------------------------------------------------------------------------------------------
# thresholds

def test_threshold_rule():
    det = NegativeLabelDetector("mcm")
    s = np.arange(100, dtype=float)[::-1].copy()
    assert det.set_threshold(id_scores=s, tpr=0.95) is det
    assert det.threshold_ == 5.0 and (s >= det.threshold_).sum() == 95
    assert det.set_threshold(id_scores=s, tpr=1.0).threshold_ == 0.0
    assert det.set_threshold(id_scores=s, tpr=0.001).threshold_ == 99.0
    rng = np.random.default_rng(3)
    for n in (1, 7, 20, 333):
        for tpr in (0.5, 0.9, 0.95, 0.99):
            s = np.round(rng.normal(size=n), 1)  # many ties
            t = det.set_threshold(id_scores=s, tpr=tpr).threshold_
            m = int(np.ceil(round(tpr * n, 9)))
            assert (s >= t).sum() >= m
            assert (s > t).sum() < m  # no higher ID score would keep m
    with pytest.raises(ValueError, match="exactly one"):
        det.set_threshold()
    with pytest.raises(ValueError, match="NaN"):
        det.set_threshold(id_scores=[1.0, np.nan])
    with pytest.raises(ValueError, match="tpr"):
        det.set_threshold(id_scores=[1.0], tpr=0)


def test_threshold_decision_predict(data):
    ids, cand, is_adj, phrases, imgs = data
    det = fitted("dnm", data, k=10, temperature=0.1)  # T = 0.01 saturates: many ties
    s = det.score_samples(imgs)
    assert len(np.unique(s[:20])) == 20
    det.set_threshold(imgs[:20], tpr=0.9)
    t = det.threshold_
    # the same 20 images scored as a batch of their own (the BLAS tiles give a row the
    # same bits only on the same tile grid, i.e. in a batch of the same size)
    assert t == det.set_threshold(id_scores=det.score_samples(imgs[:20]), tpr=0.9).threshold_
    assert det.threshold_tpr_ == 0.9
    np.testing.assert_array_equal(det.decision_function(imgs), s - t)
    pred = det.predict(imgs)
    assert pred.dtype == np.int64 and set(np.unique(pred)) <= {-1, 1}
    np.testing.assert_array_equal(pred, np.where(s >= t, 1, -1))
    assert (det.predict(imgs[:20]) == 1).sum() == 18  # the images the threshold came from


# ---------------------------------------------------------------------------------------------
# explain

@pytest.mark.parametrize("method", ["dnm", "neglabel", "mcm", "max_logit"])
def test_explain_matches_brute_force(method, data):
    ids, cand, is_adj, phrases, imgs = data
    det = fitted(method, data, k=10) if method == "dnm" else fitted(method, data)
    T = det.temperature_
    ex = det.explain(imgs, k=4)
    assert isinstance(ex, Explanation) and len(ex) == len(imgs)
    s, u, sh_id, sh_neg, mult = twin.explain(imgs, ids, det.negatives_, det.groups_index_, T)
    top_id = np.argsort(-s, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(ex.id_indices, top_id)
    np.testing.assert_allclose(ex.id_cosines, np.take_along_axis(s, top_id, 1), atol=1e-12)
    np.testing.assert_allclose(ex.id_shares, np.take_along_axis(sh_id, top_id, 1),
                               rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(ex.id_total_share, sh_id.sum(1), rtol=1e-12)
    np.testing.assert_allclose(ex.id_total_share + ex.negative_total_share, 1.0)
    assert np.array_equal(ex.id_names, np.array([f"id{i}" for i in range(len(ids))], object)[top_id])
    if method in ("mcm", "max_logit"):
        assert ex.negative_indices.shape == (len(imgs), 0)
        np.testing.assert_allclose(ex.id_total_share, 1.0)
        if method == "mcm":  # the MCM score is the top-1 share
            np.testing.assert_allclose(ex.id_shares[:, 0], det.score_samples(imgs), rtol=1e-5)
        return
    uu = np.where(mult > 0, u, -np.inf)  # unused negatives are not listed
    top_neg = np.argsort(-uu, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(ex.negative_indices, top_neg)
    np.testing.assert_allclose(ex.negative_cosines, np.take_along_axis(u, top_neg, 1), atol=1e-12)
    np.testing.assert_allclose(ex.negative_shares, np.take_along_axis(sh_neg, top_neg, 1), rtol=1e-9)
    np.testing.assert_array_equal(ex.negative_candidate_indices, det.negative_indices_[top_neg])
    assert all(ex.negative_phrases[i, j] == phrases[ex.negative_candidate_indices[i, j]]
               for i in range(len(imgs)) for j in range(4))
    # with k = everything, the shares of each image sum to one
    full = det.explain(imgs, k=10_000, chunk_size=7)
    np.testing.assert_allclose(full.id_shares.sum(1) + full.negative_shares.sum(1), 1.0, rtol=1e-12)
    assert full.negative_indices.shape[1] == int((mult > 0).sum())
    # chunking does not change anything
    small = det.explain(imgs, k=4, chunk_size=3)
    for f in ("id_indices", "negative_indices"):
        np.testing.assert_array_equal(getattr(small, f), getattr(ex, f))
    for f in ("id_shares", "negative_shares", "id_cosines"):
        np.testing.assert_allclose(getattr(small, f), getattr(ex, f), rtol=1e-12, atol=1e-300)


def test_explain_repeated_group_members(data):
    """A negative in two groups counts twice in S + sum_j N_j; one in no group not at all."""
    ids, cand, is_adj, phrases, imgs = data
    g = np.array([[0, 1, 2, 3], [0, 1, 4, 5], [6, 7, 8, 0]])
    det = NegativeLabelDetector("neglabel", groups=g).fit(ids, cand, is_adj)
    ex = det.explain(imgs, k=100)
    s, u, sh_id, sh_neg, mult = twin.explain(imgs, ids, det.negatives_, g, det.temperature_)
    assert mult[0] == 3 and ex.negative_indices.shape[1] == 9
    np.testing.assert_allclose(ex.id_total_share, sh_id.sum(1), rtol=1e-12)
    got = np.zeros_like(sh_neg)
    np.put_along_axis(got, ex.negative_indices, ex.negative_shares, axis=1)
    np.testing.assert_allclose(got, sh_neg, rtol=1e-9, atol=1e-300)


def test_explain_outputs(data):
    det = fitted("dnm", data, k=10)
    ex = det.explain(data[4][:3], k=2)
    txt = ex.to_text()
    assert txt.count("image ") == 3 and "NEG" in txt and "phrase" in txt
    pytest.importorskip("pandas")
    df = ex.to_frame()
    assert len(df) == 3 * 2 * 2 and set(df["kind"]) == {"id", "negative"}
    with pytest.raises(ValueError, match="k"):
        det.explain(data[4], k=0)


# ---------------------------------------------------------------------------------------------
# save / load

@pytest.mark.parametrize("method", ["dnm", "neglabel", "csp", "mcm", "energy", "max_logit"])
def test_save_load_round_trip(method, data, tmp_path):
    imgs = data[4]
    det = fitted(method, data, k=10) if method == "dnm" else fitted(method, data)
    det.set_threshold(imgs, tpr=0.8)
    path = tmp_path / "det.npz"
    det.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["det.npz"]
    new = NegativeLabelDetector.load(path)
    np.testing.assert_array_equal(new.score_samples(imgs), det.score_samples(imgs))
    np.testing.assert_array_equal(new.predict(imgs), det.predict(imgs))
    assert new.get_params() == det.get_params()
    for name in ("threshold_", "temperature_", "tau_", "groups_", "k_", "method_", "guard_",
                 "negative_phrases_", "id_names_", "n_features_in_"):
        assert getattr(new, name) == getattr(det, name), name
    for name in ("id_labels_", "negatives_", "negative_indices_"):
        a, b = getattr(new, name), getattr(det, name)
        assert a.dtype == b.dtype and np.array_equal(a, b)
    with np.load(path, allow_pickle=False) as z:  # plain npz, no pickles
        meta = json.loads(z["metadata"].tobytes())
    assert meta["format_version"] == 1 and len(meta["sha256"]) == 64


def test_save_load_array_groups_float64(data, tmp_path):
    ids, cand, is_adj, phrases, imgs = data
    g = np.arange(40).reshape(4, 10)[:, ::-1]
    det = NegativeLabelDetector(groups=g, k=10).fit(ids.astype(np.float64), cand, is_adj)
    det.save(tmp_path / "g.npz")
    new = NegativeLabelDetector.load(tmp_path / "g.npz")
    assert np.array_equal(new.groups, g) and new.id_labels_.dtype == np.float64
    np.testing.assert_array_equal(new.score_samples(imgs), det.score_samples(imgs))


@pytest.fixture
def saved(data, tmp_path):
    path = tmp_path / "det.npz"
    fitted("dnm", data, k=10).save(path)
    return path


def _members(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write(path, members):
    with open(path, "wb") as f:
        np.savez(f, **members)


def test_load_truncated(saved):
    raw = saved.read_bytes()
    for cut in (10, len(raw) // 2, len(raw) - 30):
        saved.write_bytes(raw[:cut])
        with pytest.raises(DetectorFileError, match="not a valid dnm detector file"):
            NegativeLabelDetector.load(saved)


def test_load_flipped_byte(saved):
    raw = bytes(saved.read_bytes())
    neg = _members(saved)["negatives"]
    for member, shift in (("negatives", 100), ("metadata", 40)):
        start = raw.find(_members(saved)[member].tobytes()[:64])
        assert start > 0
        bad = bytearray(raw)
        bad[start + shift] ^= 0x01  # inside the member's data
        saved.write_bytes(bytes(bad))
        with pytest.raises(DetectorFileError):
            NegativeLabelDetector.load(saved)
        saved.write_bytes(raw)
    assert np.array_equal(NegativeLabelDetector.load(saved).negatives_, neg)


def test_load_tampered_checksum(saved):
    m = _members(saved)
    m["negatives"] = m["negatives"].copy()
    m["negatives"][0, 0] += 1.0  # valid zip CRCs, wrong content
    _write(saved, m)
    with pytest.raises(DetectorFileError, match="checksum mismatch"):
        NegativeLabelDetector.load(saved)
    m = _members(saved)
    m["negatives"][0, 0] -= 1.0
    meta = json.loads(m["metadata"].tobytes())
    meta["fitted"]["tau_"] = 0.9  # metadata is covered too
    m["metadata"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    _write(saved, m)
    with pytest.raises(DetectorFileError, match="checksum mismatch"):
        NegativeLabelDetector.load(saved)


def test_load_future_version(saved):
    m = _members(saved)
    meta = json.loads(m["metadata"].tobytes())
    meta["format_version"] = 99
    m["metadata"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    _write(saved, m)
    with pytest.raises(DetectorFileError, match="format_version 99.*upgrade dnm"):
        NegativeLabelDetector.load(saved)


def test_load_huge_shape_claim(saved):
    """A member header (and metadata) claiming 10^12 rows is refused before any allocation."""
    m = _members(saved)
    meta = json.loads(m["metadata"].tobytes())
    meta["arrays"]["negatives"]["shape"] = [10**12, D]
    m["metadata"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (10**12, D)})
    with zipfile.ZipFile(saved, "w") as zf:
        for name, arr in m.items():
            b = io.BytesIO()
            np.lib.format.write_array(b, arr)
            data = b.getvalue() if name != "negatives" else buf.getvalue() + arr.tobytes()
            zf.writestr(name + ".npy", data)
    with pytest.raises(DetectorFileError, match="claims shape"):
        NegativeLabelDetector.load(saved)


def test_load_other_bad_files(saved, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"hello, not a zip")
    with pytest.raises(DetectorFileError, match="not a dnm detector file .*looks like text"):
        NegativeLabelDetector.load(bad)
    m = _members(saved)
    m["metadata"] = np.frombuffer(b"{not json", np.uint8)
    _write(bad, m)
    with pytest.raises(DetectorFileError, match="JSON"):
        NegativeLabelDetector.load(bad)
    m = _members(saved)
    m["negatives"] = m["negatives"].astype(np.float64)  # header disagrees with metadata
    _write(bad, m)
    with pytest.raises(DetectorFileError, match="metadata says"):
        NegativeLabelDetector.load(bad)
    m = _members(saved)
    m["negatives"] = np.array([{"x": 1}] * 3, dtype=object)  # a pickle is never loaded
    with open(bad, "wb") as f:
        np.savez(f, **m)
    with pytest.raises(DetectorFileError, match="Python objects"):
        NegativeLabelDetector.load(bad)
    m = _members(saved)
    m["extra"] = np.zeros(3)
    _write(bad, m)
    with pytest.raises(DetectorFileError, match="members"):
        NegativeLabelDetector.load(bad)
    with pytest.raises(FileNotFoundError):
        NegativeLabelDetector.load(tmp_path / "missing.npz")


# ---------------------------------------------------------------------------------------------
# real CLIP geometry

def test_real_clip_geometry(clip_data):
    ids = clip_data["imagenet"]                      # 1000 raw ViT-B/32 class heads
    cand = np.concatenate([clip_data["lvis"], clip_data["coco"], clip_data["objects365"]])
    is_adj = np.zeros(len(cand), bool)
    is_adj[-100:] = True                             # exercise the adjective branch
    id_imgs = clip_data["imagenet80"][::5]           # template-ensembled heads as "ID images"
    det = NegativeLabelDetector("dnm", preset="ViT-B/32").fit(ids, cand, is_adj)
    n_sel = int(0.25 * (~is_adj).sum()) + int(0.13 * 100)
    assert len(det.negative_indices_) == n_sel and det.groups_index_.shape == (100, n_sel // 100)
    np.testing.assert_array_equal(det.negative_indices_,
                                  dnm.mining.select_dnm(cand, is_adj, noun_ratio=0.25, adj_ratio=0.13, k=10))
    np.testing.assert_array_equal(np.sort(det.negative_indices_),
                                  np.sort(twin.select_dnm(cand, is_adj, 0.25, 0.13, k=10)))
    s_id = det.score_samples(id_imgs)
    np.testing.assert_array_equal(
        s_id, dnm.dnm_score(id_imgs, ids, cand[det.negative_indices_], 0.01, 0.12, 100, 0))
    s_neg = det.score_samples(det.negatives_)        # the negatives themselves look OOD
    assert np.isfinite(s_id).all() and np.median(s_id) > np.quantile(s_neg, 0.9)
    ex = det.explain(id_imgs, k=3)
    # the ensembled head of class c is closest to the raw head of class c
    assert (ex.id_indices[:, 0] == np.arange(0, 1000, 5)).mean() > 0.9
    assert (ex.id_shares[:, 0] <= ex.id_total_share + 1e-12).all()

    csp = NegativeLabelDetector("csp").fit(ids, cand, is_adj)
    cos = score_twin.normalize(csp.negatives_) @ score_twin.normalize(ids).T
    assert cos.max() <= 0.95 + 1e-6                  # CSP keeps no near-duplicate of an ID label
    nl = NegativeLabelDetector("neglabel").fit(ids, cand, is_adj)
    assert len(nl.negative_indices_) == int(0.15 * (~is_adj).sum()) + int(0.15 * 100)


# ---------------------------------------------------------------------------------------------
# packed labels, made once per fitted detector (dnm's own kernel)

@pytest.mark.parametrize("method", ["dnm", "neglabel", "csp", "mcm", "energy", "max_logit"])
def test_packed_label_cache_gives_the_same_bits(method, data):
    from dnm import _config, _core

    imgs = data[4]
    det = fitted(method, data)
    first = det.score_samples(imgs)
    # packed for dnm's own kernel (AVX2 or AVX-512 build), never for the BLAS tiles
    assert ("_packed_cache" in det.__dict__) == (_config.resolved_kernel() != "blas")
    again = det.score_samples(imgs[3:9])  # the cached pack, another batch
    with _config.float_kernel("blas"):
        blas = det.score_samples(imgs)  # never cached, never used on the BLAS tiles
    det.__dict__.pop("_packed_cache", None)
    fresh = det._score(det._check_X(imgs), packed=False)  # packs per call
    np.testing.assert_array_equal(first, fresh)
    if _config.resolved_kernel() != "blas":  # dnm's kernel: a row's bits do not depend on its batch
        np.testing.assert_array_equal(again, first[3:9])
    else:  # the BLAS tiles promise that only on the same tile grid
        np.testing.assert_allclose(again, first[3:9], rtol=1e-6)
    np.testing.assert_allclose(blas, first, rtol=1e-4)


def test_packed_label_cache_follows_the_fitted_arrays(data):
    imgs = data[4]
    det = fitted("dnm", data)
    s = det.score_samples(imgs)
    # the fitted arrays are the detector's own and read-only: no change behind the cache
    for name in ("id_labels_", "negatives_", "groups_index_"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(det, name)[0, 0] = 1
    # a writeable array put there by hand is used as is, and never cached
    neg = det.negatives_.copy()
    neg[:] = neg[::-1]
    det.negatives_ = neg
    want = dnm.dnm_score(imgs, det.id_labels_, neg, groups=det.groups_index_)
    np.testing.assert_array_equal(det.score_samples(imgs), want)
    assert not np.array_equal(want, s)
    neg[:] = neg[::-1]  # changed in place: seen at once
    np.testing.assert_array_equal(det.score_samples(imgs), s)
    # pickling drops the cache; the copy scores the same
    import pickle

    det = fitted("dnm", data)
    det.score_samples(imgs)
    blob = pickle.dumps(det)
    assert len(blob) < 2 * (det.id_labels_.nbytes + det.negatives_.nbytes) + 100_000
    np.testing.assert_array_equal(pickle.loads(blob).score_samples(imgs), s)


def test_packed_labels_are_checked():
    from dnm import _config, _core

    rng = np.random.default_rng(3)
    X = rng.normal(size=(4, 16)).astype(np.float32)
    P = rng.normal(size=(5, 16)).astype(np.float32)
    with pytest.raises(ValueError, match="packed"):
        _core.score(0, X, P, None, None, 1.0, 1.0, 0, 0, None, 0, 0, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="packed"):
        _core.score(0, X, P, None, None, 1.0, 1.0, 0, 0, None, 0, 0,
                    np.zeros((1, 14 * 16), np.float64))
    own = {"avx512": 14, "avx2": 6}
    kernels = [k for k in own if getattr(_core, "HAVE_" + k.upper())]
    for k in kernels:
        nr, code = own[k], _config.KERNELS[k]
        packed = _core.pack_labels(P, None, None, 0, code)
        assert packed.shape == (1, nr * 16) and packed.dtype == np.float32
        got = _core.score(0, X, P, None, None, 1.0, 1.0, 0, 0, None, 0, code, packed)[0]
        with _config.float_kernel(k):
            np.testing.assert_array_equal(got, dnm.mcm_score(X, P))
        other = [c for c in kernels if c != k]
        for o in other:  # a pack for the other kernel has the other shape
            with pytest.raises(ValueError, match="packed"):
                _core.score(0, X, P, None, None, 1.0, 1.0, 0, 0, None, 0,
                            _config.KERNELS[o], packed)
        Q = P.copy()
        Q[2, 3] = np.nan
        with pytest.raises(ValueError, match="id_labels.*row 2"):
            _core.pack_labels(Q, None, None, 0, code)
    with pytest.raises(ValueError, match="packs no labels"):
        _core.pack_labels(P, None, None, 0, _config.KERNELS["blas"])


def test_repr_of_fitted_detector(data):
    det = fitted("dnm", data, k=10)
    r = repr(det)
    assert r.startswith("NegativeLabelDetector(groups=5, k=10) [fitted: DNM, preset ViT-B/16, ")
    C, M = det.id_labels_.shape[0], det.negatives_.shape[0]
    G, Q = det.groups_index_.shape
    assert f"{C} ID labels, {M} negatives in {G} groups of {Q}, " in r
    assert f"{det.n_features_in_} features" in r
    assert f"tau={det.tau_!r}" in r and "k=10" in r and f"temperature={det.temperature_!r}" in r
    assert str(det) == r and "\n" not in r
    m = fitted("mcm", data)
    assert "MCM, preset ViT-B/16" in repr(m) and "negatives" not in repr(m)
    ids = data[0]
    m.set_threshold(ids + 0.01, tpr=0.9)
    assert repr(m).endswith(f"; threshold {m.threshold_:.6g} at TPR 0.9]")
    # the unfitted repr stays scikit-learn's
    assert repr(NegativeLabelDetector("mcm")) == "NegativeLabelDetector(method='mcm')"
