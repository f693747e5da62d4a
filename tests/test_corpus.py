"""Tests of dnm.corpus and the shipped WordNet 3.0 lists (dnm/data/wordnet)."""

from __future__ import annotations

import gzip
import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from dnm import corpus
from dnm.data import build_wordnet

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REF = SHARED / "reference-corpus"
needs_ref = pytest.mark.skipif(
    not REF.is_dir(), reason=f"reference word lists not found at {REF} (shared/data is not beside the checkout)"
)
WORDNET_DB = Path("/usr/share/wordnet")
needs_wordnet_db = pytest.mark.skipif(
    not (WORDNET_DB / "data.noun").is_file(),
    reason="WordNet database not installed (Debian package wordnet-base)",
)

# Measured: lexname -> (published phrases, of them in our head-lemma list, of them in our all-lemma list).
# Every difference is explained in dnm/data/wordnet/README.md.
COVERAGE = {
    "adj.all": (10007, 9938, 9953),
    "adj.pert": (3400, 3383, 3383),
    "adj.ppl": (60, 60, 60),
    "noun.Tops": (50, 50, 50),
    "noun.act": (5897, 5888, 5891),
    "noun.artifact": (10345, 10322, 10325),
    "noun.attribute": (2729, 2727, 2728),
    "noun.body": (1978, 1976, 1976),
    "noun.cognition": (2775, 2764, 2766),
    "noun.communication": (5090, 5072, 5075),
    "noun.event": (998, 994, 995),
    "noun.feeling": (413, 411, 411),
    "noun.group": (2407, 2401, 2401),
    "noun.location": (2959, 2941, 2941),
    "noun.motive": (41, 41, 41),
    "noun.object": (1501, 1498, 1498),
    "noun.person": (9619, 9606, 9614),
    "noun.phenomenon": (629, 628, 628),
    "noun.plant": (7631, 7627, 7627),
    "noun.possession": (998, 993, 993),
    "noun.process": (719, 719, 719),
    "noun.quantity": (1195, 1193, 1193),
    "noun.relation": (411, 410, 411),
    "noun.shape": (331, 327, 327),
    "noun.state": (3413, 3405, 3406),
    "noun.substance": (2926, 2901, 2902),
    "noun.time": (933, 913, 913),
}


# ------------------------------------------------------------------------------------------
# shipped data
# ------------------------------------------------------------------------------------------

def test_shipped_files_and_licence():
    d = corpus.WORDNET_DIR
    assert len(corpus.LEXNAMES) == 29
    assert sorted(p.name for p in d.glob("*.txt.gz")) == sorted([f"{n}.txt.gz" for n in corpus.LEXNAMES] + ["noun.graph.txt.gz"])
    assert "Princeton University" in (d / "LICENSE").read_text()
    # files are sorted: adjective files first
    assert list(corpus.LEXNAMES) == sorted(corpus.LEXNAMES)
    assert corpus.LEXNAMES[:3] == ("adj.all", "adj.pert", "adj.ppl")


def test_shipped_synset_counts():
    # WordNet 3.0 synset counts per lexicographer file (data.noun / data.adj)
    assert len(corpus._synsets("adj.all")) == 14435
    assert len(corpus._synsets("adj.pert")) == 3661
    assert len(corpus._synsets("adj.ppl")) == 60
    assert len(corpus._synsets("noun.artifact")) == 11587
    assert sum(len(corpus._synsets(n)) for n in corpus.NOUN_FILES) == 82115
    assert corpus._synsets("noun.Tops")[0] == ("entity",)
    # underscores and adjective markers are gone
    for n in corpus.LEXNAMES:
        for syn in corpus._synsets(n):
            for w in syn:
                assert "_" not in w and not w.endswith(("(a)", "(p)", "(ip)")) and w.strip() == w


@needs_wordnet_db
def test_build_script_reproduces_shipped_files():
    files = build_wordnet.build(WORDNET_DB)
    assert files == build_wordnet.build(WORDNET_DB)  # deterministic
    assert set(files) == {f"{n}.txt.gz" for n in corpus.LEXNAMES} | {"noun.graph.txt.gz"}
    for name, data in files.items():
        assert (corpus.WORDNET_DIR / name).read_bytes() == data, name
    assert build_wordnet.main(["--check", "--out", str(corpus.WORDNET_DIR)]) == 0


def test_build_script_missing_db(tmp_path):
    with pytest.raises(FileNotFoundError, match="wordnet_dir"):
        build_wordnet.build(tmp_path)


def test_clean_lemma():
    assert build_wordnet.clean_lemma("full_of_life(a)") == "full of life"
    assert build_wordnet.clean_lemma("in_play(p)") == "in play"
    assert build_wordnet.clean_lemma("Cape_Verde") == "Cape Verde"


def test_read_lexfile_head_and_all():
    head = corpus.read_lexfile("noun.artifact", source="wordnet")
    allw = corpus.read_lexfile("noun.artifact", source="wordnet", lemmas="all")
    assert head[0] == "aba" and len(head) == 10329 and len(allw) == 16322
    assert len(set(head)) == len(head) and len(set(allw)) == len(allw)
    assert set(head) <= set(allw)
    assert "car" in head and "automobile" not in head and "automobile" in allw
    assert all(p == p.lower() for p in head)
    assert "Cape Verde" in corpus.read_lexfile("noun.location", source="wordnet", lowercase=False)


# ------------------------------------------------------------------------------------------
# against the published lists
# ------------------------------------------------------------------------------------------

@needs_ref
@pytest.mark.parametrize("lexname", sorted(COVERAGE))
def test_coverage_of_published_lists(lexname):
    n_ref, n_head, n_all = COVERAGE[lexname]
    ref = corpus.read_lexfile(lexname, source=REF)
    assert len(ref) == n_ref
    assert len(set(ref) & set(corpus.read_lexfile(lexname, source="wordnet"))) == n_head
    assert len(set(ref) & set(corpus.read_lexfile(lexname, source="wordnet", lemmas="all"))) == n_all


@needs_ref
def test_total_coverage():
    n_ref = sum(v[0] for v in COVERAGE.values())
    n_head = sum(v[1] for v in COVERAGE.values())
    assert n_ref == 79455 and n_ref - n_head == 267
    assert n_head / n_ref > 0.996


@needs_ref
@pytest.mark.parametrize(
    "preset, nouns, adjectives", [("dnm", 46560, 10060), ("csp", 46560, 10060), ("neglabel", 56909, 13091)]
)
def test_presets_from_published_lists(preset, nouns, adjectives):
    c = corpus.load(preset, source=REF, conjugated=False)  # csp's conjugation: test_pools.py
    assert (c.n_nouns, c.n_adjectives) == (nouns, adjectives)
    assert len(c) == nouns + adjectives == len(set(c.phrases))
    # fixed order: adjective files first, files in sorted order, lines in file order
    k = c.n_adjectives
    assert c.is_adjective[:k].all() and not c.is_adjective[k:].any()
    order = [c.lexname[0]] + [b for a, b in zip(c.lexname, c.lexname[1:]) if a != b]
    assert order == sorted(order) == sorted(set(c.lexname)) == list(corpus.PRESETS[preset])
    first = (REF / "adj.all.txt").read_text().splitlines()
    assert c.phrases[:5] == first[:5]


@pytest.mark.parametrize(
    "preset, lemmas, nouns, adjectives",
    [
        ("dnm", "head", 46446, 11047),
        ("neglabel", "head", 56788, 14006),
        ("dnm", "all", 78983, 17814),
        ("neglabel", "all", 98790, 21479),
    ],
)
def test_presets_from_shipped_wordnet(preset, lemmas, nouns, adjectives):
    c = corpus.load(preset, source="wordnet", lemmas=lemmas)
    assert (c.n_nouns, c.n_adjectives) == (nouns, adjectives)
    assert len(set(c.phrases)) == len(c)
    assert c.phrases[0] == "able" and c.lexname[0] == "adj.all"
    assert c.counts()["adj.ppl"] <= 76


def test_preset_files():
    assert "noun.animal" not in corpus.PRESETS["neglabel"] and "noun.food" not in corpus.PRESETS["neglabel"]
    assert len(corpus.PRESETS["neglabel"]) == 27 and len(corpus.PRESETS["dnm"]) == 23
    assert set(corpus.PRESETS["neglabel"]) - set(corpus.PRESETS["dnm"]) == {
        "noun.person", "noun.quantity", "noun.group", "adj.pert"
    }
    assert corpus.preset_files("CSP") == corpus.PRESETS["dnm"]


def test_explicit_files_are_sorted_and_deduplicated():
    a = corpus.load(files=["noun.shape", "adj.ppl", "noun.Tops"])
    b = corpus.load(files=["adj.ppl", "noun.Tops", "noun.shape", "noun.shape"])
    assert a.phrases == b.phrases and a.lexname == b.lexname
    assert list(a.counts()) == ["adj.ppl", "noun.Tops", "noun.shape"]
    assert a.n_adjectives == 60
    assert a.counts()["noun.Tops"] == 50


# ------------------------------------------------------------------------------------------
# filters
# ------------------------------------------------------------------------------------------

def test_exclude_id_names_case_and_underscore_insensitive():
    c = corpus.load("dnm")
    assert "airliner" in c.phrases and "hand glass" in c.phrases
    d = corpus.load("dnm", exclude=["AirLiner", "Hand_Glass", "not a word at all"])
    assert "airliner" not in d.phrases and "hand glass" not in d.phrases
    assert len(d) == len(c) - 2
    assert len(c.exclude("airliner")) == len(c) - 1


def test_exclude_synonyms():
    c = corpus.load(files=["noun.artifact"], source="wordnet", lemmas="all")
    syn = {"car", "auto", "automobile", "machine", "motorcar"}
    assert syn <= set(c.phrases)
    plain = c.exclude(["Car"])
    assert "car" not in plain.phrases and "automobile" in plain.phrases and len(plain) == len(c) - 1
    s = c.exclude(["Car"], synonyms=True)
    assert not (syn & set(s.phrases))
    # every synset containing "car" goes: railcar, elevator car, gondola, ...
    assert "railcar" not in s.phrases and "gondola" not in s.phrases
    assert "airliner" in s.phrases
    assert syn <= corpus.synonyms(["CAR"])
    assert corpus.synonyms("tabby_cat") >= {"tabby cat", "tabby"}
    assert corpus.synonyms(["no such phrase zz"]) == {"no such phrase zz"}
    d = corpus.load("dnm", source="wordnet", lemmas="all", exclude=["car"], exclude_synonyms=True)
    assert "automobile" not in d.phrases and "airliner" in d.phrases


def test_exclude_everything_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        corpus.load(files=["noun.Tops"], exclude=corpus.read_lexfile("noun.Tops"))


# ------------------------------------------------------------------------------------------
# corpus object, templates, custom corpora
# ------------------------------------------------------------------------------------------

def test_corpus_object():
    c = corpus.from_list(["red", "apple", "blue", "apple"], [True, False, True, False])
    assert len(c) == 3 and c.phrases == ["red", "apple", "blue"]
    assert c.is_adjective.tolist() == [True, False, True]
    assert c.n_adjectives == 2 and c.n_nouns == 1
    assert c[1] == "apple" and list(c) == c.phrases
    assert c.nouns().phrases == ["apple"] and c.adjectives().phrases == ["red", "blue"]
    assert c[1:].phrases == ["apple", "blue"] and c[np.array([2, 0])].phrases == ["blue", "red"]
    assert "3 phrases" in repr(c)
    with pytest.raises(ValueError, match="same length"):
        corpus.Corpus(["a"], np.array([True, False]), ["x"])


def test_templates_and_prompts():
    c = corpus.from_list(["red", "apple"], [True, False])
    assert c.prompts() == ["This is a red photo", "the nice apple"]
    assert c.prompts("a photo of a {}.", "{} thing") == ["red thing", "a photo of a apple."]
    assert corpus.format_prompts(["tabby cat"], corpus.ID_TEMPLATE) == ["the nice tabby cat"]
    assert corpus.NOUN_TEMPLATE == "the nice {}" and corpus.ADJECTIVE_TEMPLATE == "This is a {} photo"
    with pytest.raises(ValueError, match="noun_template.*placeholder"):
        c.prompts("the nice", "{}")
    with pytest.raises(ValueError, match="template"):
        corpus.format_prompts(["a"], "no placeholder")


def test_from_file(tmp_path):
    p = tmp_path / "words.txt"
    p.write_text("tree\n\n  sky  \ntree\nshiny\n", encoding="utf-8")
    c = corpus.from_file(p, [False, False, False, True])  # one flag per non-blank line
    assert c.phrases == ["tree", "sky", "shiny"] and c.is_adjective.tolist() == [False, False, True]
    assert c.lexname == ["words"] * 3
    c2 = corpus.from_file(p, True, dedup=False, lexname="mine")
    assert len(c2) == 4 and c2.is_adjective.all() and c2.lexname[0] == "mine"
    with pytest.raises(ValueError, match="is_adjective"):
        corpus.from_file(p, [True, False])


def test_bad_input_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="path"):
        corpus.from_file(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="empty"):
        corpus.from_file(tmp_path / "empty.txt")
    with pytest.raises(ValueError, match="empty"):
        corpus.from_list([])
    with pytest.raises(ValueError, match="single string"):
        corpus.from_list("abc")
    with pytest.raises(ValueError, match="item 1"):
        corpus.from_list(["a", ""])
    with pytest.raises(ValueError, match=r"preset.*'nope'.*csp, dnm, neglabel"):
        corpus.load("nope")
    with pytest.raises(ValueError, match=r"files.*noun\.bogus.*noun\.artifact"):
        corpus.load(files=["noun.artifact", "noun.bogus"])
    with pytest.raises(ValueError, match="lexname.*adj.all"):
        corpus.read_lexfile("verb.motion")
    with pytest.raises(ValueError, match="lemmas"):
        corpus.load("dnm", lemmas="some")
    with pytest.raises(FileNotFoundError, match="source"):
        corpus.load("dnm", source=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"source.*adj\.all\.txt"):
        corpus.load("dnm", source=tmp_path)  # directory exists but has no lists


def test_source_directory_of_custom_lists(tmp_path):
    (tmp_path / "adj.all.txt").write_text("Big\nsmall\n")
    (tmp_path / "noun.artifact.txt").write_text("big\nhammer_drill\nnail\n")
    c = corpus.load(files=["noun.artifact", "adj.all"], source=tmp_path)
    assert c.phrases == ["big", "small", "hammer drill", "nail"]
    assert c.is_adjective.tolist() == [True, True, False, False]
    assert c.lexname == ["adj.all", "adj.all", "noun.artifact", "noun.artifact"]


# ------------------------------------------------------------------------------------------
# encoding
# ------------------------------------------------------------------------------------------

class FakeEncoder:
    """Deterministic raw 'embedding' of each string; records every call."""

    def __init__(self, dim=8, kind="numpy"):
        self.dim, self.kind, self.calls, self.seen = dim, kind, 0, []

    def vec(self, s):
        h = hashlib.sha256(s.encode()).digest()
        return np.frombuffer(h, dtype=np.uint8)[: self.dim].astype(np.float64) / 10.0 - 5.0

    def __call__(self, batch):
        self.calls += 1
        self.seen.extend(batch)
        out = np.stack([self.vec(s) for s in batch])
        if self.kind == "list":
            return out.tolist()
        if self.kind == "torch":
            import torch

            return torch.tensor(out, dtype=torch.float32, requires_grad=True) * 1.0
        return out


def test_encode_list_single_template():
    enc = FakeEncoder()
    phrases = ["a", "b", "c", "d", "e"]
    out = corpus.encode(phrases, enc, batch_size=2, progress=False)
    assert out.dtype == np.float32 and out.shape == (5, 8)
    assert enc.calls == 3 and enc.seen == phrases
    np.testing.assert_allclose(out, np.stack([enc.vec(p) for p in phrases]), rtol=1e-6)
    out2 = corpus.encode(phrases, FakeEncoder(), templates="the nice {}", progress=False)
    np.testing.assert_allclose(out2[0], enc.vec("the nice a"), rtol=1e-6)


def test_encode_corpus_templates_and_averaging():
    c = corpus.from_list(["red", "apple", "pear"], [True, False, False])
    enc = FakeEncoder()
    out = corpus.encode(c, enc, progress=False)
    assert set(enc.seen) == {"This is a red photo", "the nice apple", "the nice pear"}
    np.testing.assert_allclose(out[0], enc.vec("This is a red photo"), rtol=1e-6)
    np.testing.assert_allclose(out[1], enc.vec("the nice apple"), rtol=1e-6)
    # several templates: mean of the raw encodings, no normalisation
    nt = ["a {}", "the {}", "many {}"]
    enc = FakeEncoder()
    out = corpus.encode(c, enc, templates=nt, adjective_templates=["{} stuff"], batch_size=1, progress=False)
    assert enc.calls == 3 * 2 + 1
    expect = np.mean([enc.vec(t.format("pear")) for t in nt], axis=0)
    np.testing.assert_allclose(out[2], expect, rtol=1e-6)
    np.testing.assert_allclose(out[0], enc.vec("red stuff"), rtol=1e-6)
    assert not np.allclose(np.linalg.norm(out, axis=1), 1.0)


@pytest.mark.parametrize("kind", ["list", "torch"])
def test_encode_accepts_lists_and_tensors(kind):
    if kind == "torch":
        pytest.importorskip("torch")
    enc = FakeEncoder(kind=kind)
    out = corpus.encode(["x", "y", "z"], enc, batch_size=2, progress=False)
    assert out.dtype == np.float32 and out.shape == (3, 8)
    np.testing.assert_allclose(out[2], enc.vec("z"), rtol=1e-6)


def test_encode_progress_bar(capsys):
    corpus.encode(["a", "b"], FakeEncoder(), progress=False)
    assert capsys.readouterr().err == ""
    corpus.encode(["a", "b"], FakeEncoder(), progress=True, desc="enc-test")
    assert "enc-test" in capsys.readouterr().err


def test_encode_validates_encoder_output():
    with pytest.raises(ValueError, match="rows"):
        corpus.encode(["a", "b"], lambda b: np.zeros((1, 4)), progress=False)
    with pytest.raises(ValueError, match="2-D"):
        corpus.encode(["a", "b"], lambda b: np.zeros(len(b)), progress=False)
    with pytest.raises(ValueError, match="non-finite"):
        corpus.encode(["a"], lambda b: np.full((len(b), 3), np.nan), progress=False)
    with pytest.raises(ValueError, match="dim"):
        dims = iter([3, 4])
        corpus.encode(["a", "b"], lambda b: np.zeros((len(b), next(dims))), batch_size=1, progress=False)
    with pytest.raises(ValueError, match="templates.*placeholder"):
        corpus.encode(["a"], FakeEncoder(), templates=["{} ok", "bad"], progress=False)
    with pytest.raises(ValueError, match="empty"):
        corpus.encode([], FakeEncoder(), progress=False)
    with pytest.raises(ValueError, match="encoder"):
        corpus.encode(["a"], "not callable", progress=False)
    with pytest.raises(ValueError, match="model_name"):
        corpus.encode(["a"], FakeEncoder(), cache_dir="/tmp", progress=False)


def _cache_files(d):
    return sorted(d.glob("*.npy")), sorted(d.glob("*.json"))


def test_cache_hit_and_miss(tmp_path):
    c = corpus.from_list(["red", "apple", "pear"], [True, False, False])
    enc = FakeEncoder()
    a = corpus.encode(c, enc, model_name="fake/B-32", cache_dir=tmp_path, progress=False)
    assert enc.calls == 2
    npys, jsons = _cache_files(tmp_path)
    assert len(npys) == 1 and len(jsons) == 1
    meta = json.loads(jsons[0].read_text())
    assert meta["rows"] == 3 and meta["dim"] == 8 and len(meta["key"]) == 64
    assert meta["sha256"] == hashlib.sha256(np.load(npys[0]).tobytes()).hexdigest()
    # hit: the encoder is not called again
    enc2 = FakeEncoder()
    b = corpus.encode(c, enc2, model_name="fake/B-32", cache_dir=tmp_path, progress=False)
    assert enc2.calls == 0 and np.array_equal(a, b) and b.dtype == np.float32
    # misses: other model name, other templates, other phrases, other adjective mask
    for kwargs, cc in [
        (dict(model_name="fake/L-14"), c),
        (dict(model_name="fake/B-32", templates=["a {}", "the {}"]), c),
        (dict(model_name="fake/B-32"), corpus.from_list(["red", "apple", "plum"], [True, False, False])),
        (dict(model_name="fake/B-32"), corpus.from_list(["red", "apple", "pear"])),
    ]:
        e = FakeEncoder()
        corpus.encode(cc, e, cache_dir=tmp_path, progress=False, **kwargs)
        assert e.calls > 0, kwargs
    assert len(_cache_files(tmp_path)[0]) == 5


@pytest.mark.parametrize("damage", ["flip_bytes", "truncate", "bad_json", "wrong_key", "no_json", "other_array"])
def test_cache_corruption_is_detected_and_rebuilt(tmp_path, damage):
    phrases = ["a", "b", "c"]
    good = corpus.encode(phrases, FakeEncoder(), model_name="m", cache_dir=tmp_path, progress=False)
    (npy,), (js,) = _cache_files(tmp_path)
    if damage == "flip_bytes":
        raw = bytearray(npy.read_bytes())
        raw[-5] ^= 0xFF
        npy.write_bytes(bytes(raw))
    elif damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:40])
    elif damage == "bad_json":
        js.write_text("{not json")
    elif damage == "wrong_key":
        meta = json.loads(js.read_text())
        meta["key"] = "0" * 64
        js.write_text(json.dumps(meta))
    elif damage == "no_json":
        js.unlink()
    elif damage == "other_array":
        np.save(npy, np.ones((3, 8), dtype=np.float32))
    enc = FakeEncoder()
    with pytest.warns(RuntimeWarning, match="re-encoding"):
        again = corpus.encode(phrases, enc, model_name="m", cache_dir=tmp_path, progress=False)
    assert enc.calls == 1
    assert np.array_equal(again, good)
    # the rebuilt cache is valid again: no warning, no call
    enc = FakeEncoder()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third = corpus.encode(phrases, enc, model_name="m", cache_dir=tmp_path, progress=False)
    assert enc.calls == 0 and np.array_equal(third, good)


def test_shipped_file_format():
    with gzip.open(corpus.WORDNET_DIR / "adj.ppl.txt.gz", "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    assert len(lines) == 60 and all(line and "\t\t" not in line for line in lines)
