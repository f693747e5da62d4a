"""The papers' candidate pools: the published lists shipped as the default source, CSP's
conjugated pool, prompt ensembles, ID class-name sets and WordNet filters (issue 15)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from dnm import corpus
from dnm.data import build_published
from slow import corpus as slow

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REF = SHARED / "reference-corpus"
needs_ref = pytest.mark.skipif(
    not REF.is_dir(), reason=f"reference word lists not found at {REF} (shared/data is not beside the checkout)"
)


# ------------------------------------------------------------------------------------------
# the published lists, shipped
# ------------------------------------------------------------------------------------------

def test_published_files_licences_and_checksums():
    d = corpus.PUBLISHED_DIR
    assert sorted(p.name for p in d.glob("*.txt.gz")) == sorted(f"{n}.txt.gz" for n in corpus.PUBLISHED_FILES)
    assert len(corpus.PUBLISHED_FILES) == 27
    assert not {"noun.animal", "noun.food"} & set(corpus.PUBLISHED_FILES)
    lic = (d / "LICENSE").read_text()
    assert "Apache License" in lic and "Princeton University" in lic and "tmlr-group/NegLabel" in lic
    assert "Apache License" in (d / "LICENSE-Apache-2.0").read_text()
    sums = dict(line.split()[::-1] for line in (d / "SHA256SUMS").read_text().splitlines())
    assert sorted(sums) == sorted(f"{n}.txt" for n in corpus.PUBLISHED_FILES)
    for n in corpus.PUBLISHED_FILES:
        with gzip.open(d / f"{n}.txt.gz", "rb") as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == sums[f"{n}.txt"], n


@needs_ref
def test_published_files_are_the_reference_files():
    files = build_published.build(REF)
    for name, data in files.items():
        assert (corpus.PUBLISHED_DIR / name).read_bytes() == data, name
        assert gzip.decompress(data) == (REF / name[:-3]).read_bytes()
    assert build_published.main(["--from", str(REF), "--check"]) == 0


def test_build_published_missing_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="source"):
        build_published.build(tmp_path)


@pytest.mark.parametrize(
    "preset, nouns, adjectives", [("dnm", 46560, 10060), ("csp", 46560, 10060), ("neglabel", 56909, 13091)]
)
def test_default_presets_are_the_published_pools(preset, nouns, adjectives):
    c = corpus.load(preset)
    assert (c.n_nouns, c.n_adjectives) == (nouns, adjectives)
    assert corpus.load(preset, source="published").phrases == c.phrases
    # fixed order: adjective files first, files sorted, lines in file order
    k = c.n_adjectives
    assert c.is_adjective[:k].all() and not c.is_adjective[k:].any()
    order = [c.lexname[0]] + [b for a, b in zip(c.lexname, c.lexname[1:]) if a != b]
    assert order == sorted(order) == list(corpus.PRESETS[preset])
    base = corpus.load(preset, conjugated=False)
    assert len(set(base.phrases)) == len(base)
    assert base.nouns().phrases == c.nouns().phrases
    first = corpus._published("adj.all")
    assert base.phrases[:5] == list(first[:5])
    assert c.phrases[k] == corpus._published("noun.Tops")[0]


@needs_ref
@pytest.mark.parametrize("preset", ["dnm", "csp", "neglabel"])
def test_default_presets_equal_the_reference_directory(preset):
    assert corpus.load(preset).phrases == corpus.load(preset, source=REF).phrases


def test_wordnet_source_stays_available():
    c = corpus.load("dnm", source="wordnet")
    assert (c.n_nouns, c.n_adjectives) == (46446, 11047)
    assert "abaxial" in c.phrases and "abaxial" not in corpus.load("dnm").phrases  # a cluster head
    assert corpus.load(files=["noun.animal"], source="wordnet").n_nouns > 7000


def test_source_errors(tmp_path):
    with pytest.raises(ValueError, match="lemmas.*wordnet"):
        corpus.load("dnm", lemmas="all")
    with pytest.raises(ValueError, match="lexname.*noun.animal.*wordnet"):
        corpus.load(files=["noun.animal"])
    with pytest.raises(FileNotFoundError, match="source.*published, wordnet"):
        corpus.load("dnm", source="wordnet3")
    with pytest.raises(TypeError, match="source"):
        corpus.load("dnm", source=3)


# ------------------------------------------------------------------------------------------
# CSP's conjugated pool
# ------------------------------------------------------------------------------------------

def test_csp_conjugation_equals_the_construction():
    adjectives = corpus.load("dnm").adjectives().phrases
    for seed in (0, 1, 12345):
        c = corpus.load("csp", seed=seed)
        assert c.adjectives().phrases == slow.csp_conjugated_adjectives(adjectives, seed)
        assert c.nouns().phrases == corpus.load("dnm").nouns().phrases
    assert list(corpus.CSP_SUPERCLASSES) == slow.SUPERCLASS_WORDS
    c0 = corpus.load("csp")
    assert c0.phrases == corpus.load("csp", seed=0).phrases != corpus.load("csp", seed=1).phrases
    # every superclass word is used, and each conjugated phrase is "adjective word"
    words = [p.rsplit(" ", 1)[1] for p in c0.adjectives().phrases]
    assert set(words) == set(corpus.CSP_SUPERCLASSES)
    assert [p.rsplit(" ", 1)[0] for p in c0.adjectives().phrases] == adjectives
    assert c0.lexname == corpus.load("dnm").lexname


def test_conjugate_function_and_exclusion_keep_the_draws():
    base = corpus.load("dnm")
    assert corpus.conjugate(base, 0).phrases == corpus.load("csp").phrases
    assert corpus.load("dnm", conjugated=True, seed=3).phrases == corpus.load("csp", seed=3).phrases
    # excluding names does not shift the other draws
    first_adj = base.adjectives().phrases[0]
    ex = corpus.load("csp", exclude=[first_adj, "airliner"])
    full = corpus.load("csp")
    assert len(ex) == len(full) - 2
    assert ex.adjectives().phrases == full.adjectives().phrases[1:]
    assert "airliner" not in ex.phrases


def test_conjugation_bad_input():
    with pytest.raises(TypeError, match="seed.*int"):
        corpus.load("csp", seed=0.5)
    with pytest.raises(TypeError, match="seed.*int"):
        corpus.load("csp", seed="0")
    with pytest.raises(TypeError, match="seed.*int"):
        corpus.conjugate(corpus.load("dnm"), True)
    with pytest.raises(ValueError, match="words"):
        corpus.conjugate(corpus.load("dnm"), 0, words=[])


# ------------------------------------------------------------------------------------------
# the methods' pools: the registry, the detector, the CLI
# ------------------------------------------------------------------------------------------

def test_registry_names_each_methods_pool():
    from dnm import methods

    assert {n: methods.get(n).pool for n in methods.mining_methods()} == {
        "neglabel": "neglabel", "csp": "csp", "dnm": "dnm", "adaneg": "neglabel",
        "tanl": "neglabel"}
    assert methods.get("mcm").pool is None


def test_detector_candidate_pool_is_the_csp_pool():
    import dnm

    pool = dnm.NegativeLabelDetector("csp").candidate_pool(exclude=["airliner"])
    assert pool.phrases == corpus.load("csp", exclude=["airliner"]).phrases
    assert dnm.NegativeLabelDetector("csp").candidate_pool(seed=2).phrases == corpus.load("csp", seed=2).phrases
    assert dnm.NegativeLabelDetector("neglabel").candidate_pool().phrases == corpus.load("neglabel").phrases
    with pytest.raises(ValueError, match="method.*mcm"):
        dnm.NegativeLabelDetector("mcm").candidate_pool()


def test_cli_mine_csp_uses_the_conjugated_pool(tmp_path, capsys):
    import json

    import dnm
    from dnm import cli

    pool = corpus.load("csp")
    rng = np.random.default_rng(0)
    cand = rng.standard_normal((len(pool), 8)).astype(np.float32)
    ids = rng.standard_normal((20, 8)).astype(np.float32)
    np.save(tmp_path / "cand.npy", cand)
    np.save(tmp_path / "id.npy", ids)
    status = cli.main(["mine", "--candidates", str(tmp_path / "cand.npy"), "--id-labels",
                       str(tmp_path / "id.npy"), "--method", "csp", "--adjectives-from", "-q",
                       "--out", str(tmp_path / "sel.json")])
    err = capsys.readouterr().err
    assert status == 0, err
    js = json.loads((tmp_path / "sel.json").read_text())
    det = dnm.NegativeLabelDetector("csp").fit(ids, cand, phrases=pool)
    assert js["indices"] == det.negative_indices_.tolist()
    assert js["phrases"] == det.negative_phrases_ == [pool.phrases[i] for i in js["indices"]]
    adj = [p for i, p in zip(js["indices"], js["phrases"]) if pool.is_adjective[i]]
    assert adj and all(p.rsplit(" ", 1)[1] in corpus.CSP_SUPERCLASSES for p in adj)


# ------------------------------------------------------------------------------------------
# prompt ensembles
# ------------------------------------------------------------------------------------------

class HashEncoder:
    """Deterministic raw 'embedding' per string (norms far from 1); counts calls."""

    def __init__(self, dim=6):
        self.dim, self.seen = dim, []

    def vec(self, s):
        h = hashlib.sha256(s.encode()).digest()
        return np.frombuffer(h, dtype=np.uint8)[: self.dim].astype(np.float64) / 25.0 - 3.0

    def __call__(self, batch):
        self.seen.extend(batch)
        return np.stack([self.vec(s) for s in batch])


def test_template_sets_as_data():
    assert set(corpus.template_sets()) >= {"neglabel", "dnm", "csp", "clip80", "mcm"}
    csp = corpus.template_set("csp")
    assert csp.nouns == ("a close-up photo of the nice {}.", "a photo with the nice {}.",
                         "a good photo with the nice {}.", "a photo of the nice {}.", "{}",
                         "the {}", "the good {}", "the nice {}")
    assert csp.adjectives == ("{}", "a nice photo of {}", "a good photo of {}", "a close-up photo of {}")
    assert csp.rule == "mean"
    clip = corpus.template_set("clip80")
    assert len(clip.nouns) == len(set(clip.nouns)) == 80 and clip.rule == "normalized_mean"
    assert clip.nouns[:2] == ("a bad photo of a {}.", "a photo of many {}.")
    assert corpus.template_set("neglabel").nouns == (corpus.NOUN_TEMPLATE,)
    assert corpus.template_set("neglabel").adjectives == (corpus.ADJECTIVE_TEMPLATE,)
    assert corpus.template_set("mcm").nouns == ("a photo of a {}",)
    for name in corpus.template_sets():
        ts = corpus.template_set(name)
        assert ts.source and ts.rule in corpus.ENSEMBLE_RULES and ts.nouns and ts.adjectives
        assert all("{}" in t for t in ts.nouns + ts.adjectives)


@pytest.mark.parametrize("rule", ["mean", "normalized_mean"])
def test_ensemble_rules_against_twin(rule):
    phrases = ["tabby cat", "airliner", "gooey landscape"]
    templates = list(corpus.template_set("csp").nouns)
    enc = HashEncoder()
    out = corpus.encode(phrases, enc, templates=templates, rule=rule, batch_size=2, progress=False)
    want = slow.ensemble(HashEncoder(), phrases, templates, rule)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)
    norms = np.linalg.norm(out, axis=1)
    if rule == "normalized_mean":
        np.testing.assert_allclose(norms, 1.0, rtol=1e-6)
    else:
        assert not np.allclose(norms, 1.0)


def test_csp_pool_is_encoded_with_csp_templates():
    pool = corpus.load("csp")[np.r_[0:3, 20000:20003]]
    assert pool.template_set == "csp" and pool.n_adjectives == 3
    enc = HashEncoder()
    out = corpus.encode(pool, enc, progress=False)
    ts = corpus.template_set("csp")
    assert len(enc.seen) == 3 * 8 + 3 * 4
    for i, (p, a) in enumerate(zip(pool.phrases, pool.is_adjective)):
        want = slow.ensemble(HashEncoder(), [p], list(ts.adjectives if a else ts.nouns), "mean")[0]
        np.testing.assert_allclose(out[i], want, rtol=1e-6, atol=1e-6)
    assert pool.prompt_lists()[0] == [t.replace("{}", pool.phrases[0]) for t in ts.adjectives]
    with pytest.raises(ValueError, match="template set 'csp'.*prompt_lists"):
        pool.prompts()
    # dnm / neglabel pools keep their single prompts
    d = corpus.load("dnm")[np.r_[0:2, 20000:20002]]
    assert d.prompts() == ["This is a %s photo" % d.phrases[0], "This is a %s photo" % d.phrases[1],
                           "the nice " + d.phrases[2], "the nice " + d.phrases[3]]
    enc = HashEncoder()
    corpus.encode(d, enc, progress=False)
    assert enc.seen == d.prompts()[2:] + d.prompts()[:2]  # nouns first, then adjectives


def test_named_set_and_cache_key_includes_rule(tmp_path):
    enc = HashEncoder()
    a = corpus.encode(["cat", "dog"], enc, templates="clip80", progress=False)
    assert len(enc.seen) == 160
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    m = corpus.encode(["cat"], HashEncoder(), templates="clip80", rule="mean", progress=False)
    assert not np.allclose(np.linalg.norm(m, axis=1), 1.0)
    corpus.encode(["cat"], HashEncoder(), model_name="m", cache_dir=tmp_path, progress=False)
    e = HashEncoder()
    corpus.encode(["cat"], e, model_name="m", cache_dir=tmp_path, rule="normalized_mean", progress=False)
    assert e.seen == ["cat"]  # another cache entry
    e = HashEncoder()
    corpus.encode(["cat"], e, model_name="m", cache_dir=tmp_path, rule="normalized_mean", progress=False)
    assert e.seen == []


def test_template_bad_input():
    with pytest.raises(ValueError, match="templates.*nope.*template set"):
        corpus.encode(["a"], HashEncoder(), templates="nope", progress=False)
    with pytest.raises(ValueError, match="template set.*nope.*csp"):
        corpus.template_set("nope")
    with pytest.raises(ValueError, match="templates: empty"):
        corpus.encode(["a"], HashEncoder(), templates=[], progress=False)
    with pytest.raises(ValueError, match="adjective_templates: empty"):
        corpus.encode(corpus.load("dnm")[:2], HashEncoder(), adjective_templates=[], progress=False)
    with pytest.raises(ValueError, match="rule"):
        corpus.encode(["a"], HashEncoder(), rule="median", progress=False)
    with pytest.raises(ValueError, match="zero vector"):
        corpus.encode(["a"], lambda b: np.zeros((len(b), 3)), rule="normalized_mean", progress=False)
    with pytest.raises(ValueError, match="template set"):
        corpus.Corpus(["a"], [False], ["x"], "nope")


# ------------------------------------------------------------------------------------------
# ID class-name sets
# ------------------------------------------------------------------------------------------

def test_imagenet_class_names():
    names = corpus.class_names("imagenet")
    assert len(names) == 1000 and len(set(names)) == 998  # missile, sunglasses twice (CLIP's list)
    assert names[:3] == ["tench", "goldfish", "great white shark"] and names[-1] == "toilet paper"
    assert names[134] == "crane bird" and names[517] == "construction crane"
    assert names[657] == names[744] == "missile" and names[836] == names[837] == "sunglasses"
    assert corpus.class_names("ImageNet-1k") == corpus.class_names("imagenet1k") == names
    assert all(n == n.strip() and n for n in names)
    names.append("x")  # a copy: the shipped list is not changed
    assert len(corpus.class_names("imagenet")) == 1000
    assert "imagenet" in corpus.CLASS_NAME_SETS


@pytest.mark.skipif(not (SHARED / "clip").is_dir(), reason="shared/data/clip not beside the checkout")
def test_imagenet_class_names_are_the_shared_file():
    assert corpus.class_names("imagenet") == (SHARED / "clip" / "imagenet1k_classnames.txt").read_text().splitlines()


def test_class_names_bad_input():
    with pytest.raises(ValueError, match="name.*cifar1000.*imagenet"):
        corpus.class_names("cifar1000")
    with pytest.raises(TypeError, match="name"):
        corpus.class_names(1)
