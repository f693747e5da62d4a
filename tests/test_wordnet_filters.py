"""WordNet filters against false negatives: synset references, hyponyms of ID classes, proper
nouns; checked against the twin in tests/slow/wordnet.py, which reads the WordNet database."""
import json
import subprocess
import sys

import numpy as np
import pytest

import dnm
from dnm import corpus, wordnet

from slow import wordnet as twin

needs_db = pytest.mark.skipif(not (twin.DB / "data.noun").is_file(),
                              reason="WordNet database not installed (Debian package wordnet-base)")

IMAGENET = corpus.class_wnids("imagenet")

# Measured on the shipped data and documented in docs/design.md ("Mining") and the README:
# phrases each filter drops from the presets with ImageNet-1k as the ID classes.
DROPS = {  # preset: (hyponyms incl. the classes, proper nouns "all", proper nouns "any")
    "dnm": (1707, 3098, 3685),
    "neglabel": (1780, 5887, 6722),
}


def test_imagenet_wnids():
    assert len(IMAGENET) == 1000 == len(set(IMAGENET))
    assert IMAGENET == sorted(IMAGENET)  # the dataset's index order is the sorted ids
    assert IMAGENET[0] == "n01440764" and IMAGENET[-1] == "n15075141"
    assert corpus.class_wnids("ImageNet-1k") == IMAGENET
    # every id is a WordNet 3.0 noun synset, and the class name is one of its lemmas for the
    # classes CLIP did not rename (tench, goldfish, ...)
    names = corpus.class_names("imagenet")
    lem = [{twin.norm(w) for w in wordnet.lemmas(i)} for i in IMAGENET]
    agree = sum(twin.norm(n) in ls for n, ls in zip(names, lem))
    assert agree > 600, agree
    assert twin.norm(names[0]) in lem[0] and twin.norm(names[1]) in lem[1]


@needs_db
def test_references_resolve_like_the_database():
    synsets, senses = twin.database()
    rng = np.random.default_rng(0)
    keys = list(senses)
    for j in rng.choice(len(keys), 300, replace=False).tolist():
        lemma, n = keys[j]
        name = f"{lemma.replace(' ', '_')}.n.{n:02d}"
        assert wordnet.wnid(name) == f"n{senses[keys[j]]:08d}", name
    assert wordnet.wnid("dog.n.01") == "n02084071" == wordnet.wnid(2084071)
    assert wordnet.wnids(["Dog.N.01", "n02084071 "]) == ["n02084071"] * 2
    assert wordnet.lemmas("dog.n.01") == ["dog", "domestic dog", "Canis familiaris"]


@needs_db
@pytest.mark.parametrize("include_self", [True, False])
def test_hyponyms_match_twin(include_self):
    got = wordnet.hyponyms(IMAGENET, include_self=include_self)
    want = sorted(f"n{o:08d}" for o in twin.below(IMAGENET, include_self))
    assert got == want
    assert len(got) > 1000 if include_self else len(got) > 0
    # a known subcategory: the dog breeds below "dog"
    dogs = set(wordnet.hyponyms("dog.n.01", include_self=False))
    assert wordnet.wnid("poodle.n.01") in dogs and wordnet.wnid("dog.n.01") not in dogs
    lem = wordnet.hyponym_lemmas("dog.n.01")
    assert {"poodle", "dog", "corgi"} <= lem and "cat" not in lem


@needs_db
def test_instance_lemmas_match_twin():
    senses = twin.lemma_senses()
    synsets, _ = twin.database()
    want = {w for w, offs in senses.items() if all(synsets[o]["instance_of"] for o in offs)}
    got = wordnet.instance_lemmas()
    assert got == want
    assert "aachen" in got and "mercury" not in got and "dog" not in got


@needs_db
@pytest.mark.parametrize("preset", sorted(DROPS))
def test_filters_on_presets_match_twin_and_documented_counts(preset):
    c = corpus.load(preset)
    hyp = c.exclude_hyponyms("imagenet")
    want = twin.drop_hyponym_nouns(c.phrases, c.is_adjective, IMAGENET)
    assert sorted(set(c.phrases) - set(hyp.phrases)) == sorted(c.phrases[i] for i in want)
    assert hyp.n_adjectives == c.n_adjectives  # adjectives are never dropped
    n_all = len(c) - len(c.exclude_proper_nouns())
    n_any = len(c) - len(c.exclude_proper_nouns(rule="any"))
    assert n_all == len(twin.drop_proper_nouns(c.phrases, c.is_adjective, "all"))
    assert n_any == len(twin.drop_proper_nouns(c.phrases, c.is_adjective, "any"))
    assert (len(c) - len(hyp), n_all, n_any) == DROPS[preset]
    # the order of the kept phrases is the corpus order
    kept = hyp.phrases
    pos = {p: i for i, p in enumerate(c.phrases)}
    assert all(pos[a] < pos[b] for a, b in zip(kept, kept[1:]))


def test_load_applies_the_filters_like_the_methods():
    c = corpus.load("dnm")
    both = corpus.load("dnm", exclude_hyponyms_of="imagenet", exclude_proper_nouns=True)
    assert both.phrases == c.exclude_hyponyms("imagenet").exclude_proper_nouns().phrases
    # csp: the conjugation draws are made before any filter (the kept phrases do not move)
    csp = corpus.load("csp")
    fcsp = corpus.load("csp", exclude_hyponyms_of=IMAGENET[:50])
    assert set(fcsp.phrases) <= set(csp.phrases)
    assert fcsp.adjectives().phrases == csp.adjectives().phrases
    # synonyms too, combined
    s = corpus.load("dnm", exclude=corpus.class_names("imagenet"), exclude_synonyms=True,
                    exclude_hyponyms_of="imagenet")
    assert set(s.phrases) <= set(both.phrases) | set(c.exclude_hyponyms("imagenet").phrases)


def test_exclude_hyponyms_by_phrase_synsets():
    c = corpus.from_list(["poodle", "laptop", "redness", "tabby"], [False, False, True, False])
    syn = ["poodle.n.01", None, None, "n02123045"]
    out = c.exclude_hyponyms("dog.n.01", synsets=syn)
    assert out.phrases == ["laptop", "redness", "tabby"]
    assert c.exclude_hyponyms(["dog.n.01", "cat.n.01"], synsets=syn).phrases == ["laptop", "redness"]
    # adjectives are kept even with a matching synset
    adj = corpus.from_list(["poodle"], [True])
    assert adj.exclude_hyponyms("dog.n.01", synsets=["poodle.n.01"]).phrases == ["poodle"]
    assert len(c.phrases) == 4  # the corpus is not modified


def test_bad_input():
    c = corpus.from_list(["poodle", "laptop"])
    with pytest.raises(ValueError, match=r"^of: 'nodog.n.01' is not a WordNet 3.0 noun synset"):
        c.exclude_hyponyms("nodog.n.01")
    with pytest.raises(ValueError, match="of: 'n99999999'"):
        c.exclude_hyponyms(["n99999999"])
    with pytest.raises(ValueError, match="of: 'cifar1000' is neither a WordNet noun synset"):
        c.exclude_hyponyms("cifar1000")
    with pytest.raises(TypeError, match="of: expected WordNet synset references"):
        c.exclude_hyponyms([1.5])
    with pytest.raises(TypeError, match="of: expected"):
        c.exclude_hyponyms([True])
    with pytest.raises(ValueError, match=r"synsets: expected one synset reference per phrase \(2\), got 1"):
        c.exclude_hyponyms("dog.n.01", synsets=["poodle.n.01"])
    with pytest.raises(ValueError, match="synsets: 'zzzq.n.01'"):
        c.exclude_hyponyms("dog.n.01", synsets=["zzzq.n.01", None])
    with pytest.raises(ValueError, match="rule: expected 'all' or 'any'"):
        c.exclude_proper_nouns(rule="some")
    with pytest.raises(ValueError, match="ref: 'dog.v.01'"):
        wordnet.wnid("dog.v.01")
    with pytest.raises(TypeError, match="name: expected a class-name set name"):
        corpus.class_wnids(3)


# ------------------------------------------------------------------------------------------
# real data: LVIS categories carry WordNet synsets
# ------------------------------------------------------------------------------------------

def _lvis(clip_dir):
    rows = [ln.rstrip("\n").split("\t") for ln in
            (clip_dir / "lvis_categories.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    names = [r[1].replace("_", " ") for r in rows]
    # LVIS names one category by a synset WordNet 3.0 lacks (stop_sign.n.01): None, kept
    synsets = [r[2] if twin.offset(r[2]) is not None else None for r in rows]
    assert sum(s is None for s in synsets) == 1
    return names, synsets


@needs_db
def test_lvis_hyponym_filter_removes_imagenet_classes_and_subcategories(clip_dir):
    names, synsets = _lvis(clip_dir)
    c = corpus.from_list(names)
    kept = c.exclude_hyponyms("imagenet", synsets=synsets)
    under = twin.below(IMAGENET)
    want_dropped = [i for i, s in enumerate(synsets) if s and twin.offset(s) in under]
    same_class = [i for i, s in enumerate(synsets) if s and f"n{twin.offset(s):08d}" in set(IMAGENET)]
    assert len(c) - len(kept) == len(want_dropped)
    assert set(kept.phrases) == {names[i] for i in range(len(names)) if i not in set(want_dropped)}
    # every LVIS category that is an ImageNet class is among them, and some subcategories too
    assert set(same_class) < set(want_dropped)
    assert 240 <= len(same_class) <= 260  # "about 247" in the data's README


@needs_db
def test_lvis_filter_on_selections(clip_data, clip_dir):
    """With the filter, no ImageNet class or subcategory is selected as a negative (NegLabel,
    DNM) from the LVIS pool; without it, the count is what benchmarks/bench_filters.py prints."""
    names, synsets = _lvis(clip_dir)
    X = clip_data["imagenet"]
    U = clip_data["lvis"]
    mask = np.zeros(len(names), dtype=bool)
    under = twin.below(IMAGENET)
    bad = np.array([s is not None and twin.offset(s) in under for s in synsets])
    keep = np.flatnonzero(~bad)
    c = corpus.from_list(names).exclude_hyponyms("imagenet", synsets=synsets)
    assert [names[i] for i in keep] == c.phrases
    for sel in (lambda P, m: dnm.select_neglabel(X, P, m, ratio=0.3),
                lambda P, m: dnm.select_dnm(P, m, noun_ratio=0.3, k=10)):
        before = np.asarray(sel(U, mask))
        after = keep[np.asarray(sel(U[keep], mask[keep]))]
        assert not bad[after].any()
        assert after.size > 0 and before.size > 0


def test_cli_corpus(tmp_path):
    out, mask, js = tmp_path / "p.txt", tmp_path / "m.npy", tmp_path / "p.json"
    r = subprocess.run([sys.executable, "-m", "dnm", "corpus", "--id-names", "imagenet",
                        "--exclude-synonyms", "--exclude-hyponyms", "--exclude-proper-nouns",
                        "-o", str(out), "-o", str(js), "--mask", str(mask)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    want = corpus.load("dnm", exclude=corpus.class_names("imagenet"), exclude_synonyms=True)
    want = want.exclude_hyponyms("imagenet").exclude_proper_nouns()
    assert out.read_text(encoding="utf-8").splitlines() == want.phrases
    assert np.load(mask).tolist() == want.is_adjective.tolist()
    doc = json.loads(js.read_text())
    assert doc["phrases"] == want.phrases and doc["steps"][-1]["remaining"] == len(want)
    assert [s["step"] for s in doc["steps"]] == ["dnm preset", "ID names", "their WordNet synonyms",
                                                  "WordNet hyponyms", "proper nouns"]
    assert "WordNet hyponyms: -" in r.stderr
    # names from a file; prompts
    names = tmp_path / "ids.txt"
    names.write_text("dog\ncat\n", encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "dnm", "corpus", "--preset", "neglabel", "--id-names",
                        str(names), "--exclude-hyponyms", "dog.n.01,cat.n.01", "--prompts",
                        "-o", str(out), "-q"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == ""
    want = corpus.load("neglabel", exclude=["dog", "cat"]).exclude_hyponyms(["dog.n.01", "cat.n.01"])
    assert out.read_text(encoding="utf-8").splitlines() == want.prompts()


@pytest.mark.parametrize("argv, msg", [
    (["--id-names", "cifar1000", "--mask", "M.npy"], "--id-names: 'cifar1000' is neither a file"),
    (["--exclude-hyponyms", "--mask", "M.npy"], "--exclude-hyponyms without a value needs --id-names"),
    (["--exclude-hyponyms", "dog.n.01,zz.n.01", "--mask", "M.npy"], "--exclude-hyponyms: 'zz.n.01' is not"),
    (["--exclude-synonyms", "--mask", "M.npy"], "--exclude-synonyms needs --id-names"),
    (["--preset", "csp", "--prompts", "-o", "x.txt"], "--prompts: the csp preset encodes"),
    ([], "nothing to write"),
    (["-o", "x.csv"], "--out"),
])
def test_cli_corpus_errors(tmp_path, argv, msg):
    r = subprocess.run([sys.executable, "-m", "dnm", "corpus"] + argv, capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.returncode == 2
    assert msg in r.stderr and r.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("subset", ["imagenet10", "imagenet20", "imagenet100"])
def test_imagenet_subset_wnids(subset):
    """The subsets' ids name the same classes as their names (through ImageNet-1k) and, as sets,
    are MCM's class lists (copies in tests/data/mcm/, from deeplearning-wisc/MCM)."""
    from pathlib import Path

    names, ids = corpus.class_names(subset), corpus.class_wnids(subset)
    assert len(names) == len(ids) == len(set(ids)) == int(subset[8:])
    in1k = dict(zip(IMAGENET, corpus.class_names("imagenet")))
    assert [in1k[w] for w in ids] == names
    mcm = Path(__file__).parent / "data" / "mcm" / f"ImageNet{subset[8:]}_class_list.txt"
    assert set(ids) == set(mcm.read_text().split())
    # the filters take them by set name
    assert corpus.load("dnm", exclude_hyponyms_of=subset).phrases == \
        corpus.load("dnm").exclude_hyponyms(ids).phrases
