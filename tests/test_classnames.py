"""The shipped ID class-name sets (dnm/data/classnames): lengths, order anchors, cleaning, aliases.

The anchors are entries the sources state (dnm/data/classnames/README.md names each source); the
tests read only the shipped files, through ``dnm.corpus.class_names``.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from dnm import corpus

CLASSNAMES = Path(corpus.__file__).resolve().parent / "data" / "classnames"

# set -> (number of classes, {label index: name} stated by the source)
EXPECTED = {
    "imagenet": (1000, {0: "tench", 1: "goldfish", 999: "toilet paper"}),
    "imagenet10": (10, {0: "brambling", 3: "Siamese cat", 9: "military aircraft"}),
    "imagenet20": (20, {0: "tank", 7: "missile", 19: "European green lizard"}),
    "imagenet100": (100, {0: "white stork", 1: "Australian Kelpie", 99: "baseball player"}),
    "cifar10": (10, {0: "airplane", 1: "automobile", 3: "cat", 9: "truck"}),
    "cifar100": (100, {0: "apple", 1: "aquarium fish", 47: "maple tree", 99: "worm"}),
    "cub200": (200, {0: "Black footed Albatross", 16: "Cardinal", 199: "Common Yellowthroat"}),
    "stanford_cars": (196, {0: "AM General Hummer SUV 2000", 195: "smart fortwo Convertible 2012"}),
    "food101": (101, {0: "apple pie", 16: "cheese plate", 17: "cheesecake", 100: "waffles"}),
    "oxford_pets": (37, {0: "Abyssinian", 1: "American Bulldog", 36: "Yorkshire Terrier"}),
    "places365": (365, {0: "airfield", 8: "apartment building outdoor", 364: "zen garden"}),
}

ALIASES = {
    "imagenet1k": "imagenet", "ImageNet-1k": "imagenet", "in1k": "imagenet",
    "imagenet-10": "imagenet10", "IN10": "imagenet10",
    "imagenet-20": "imagenet20", "in20": "imagenet20",
    "ImageNet-100": "imagenet100", "in100": "imagenet100",
    "CIFAR-10": "cifar10", "cifar-100": "cifar100", "CIFAR100": "cifar100",
    "cub": "cub200", "CUB-200-2011": "cub200", "cub-200": "cub200", "bird200": "cub200",
    "cars": "stanford_cars", "stanford-cars": "stanford_cars", "car196": "stanford_cars",
    "Food-101": "food101",
    "pets": "oxford_pets", "Oxford-IIIT-Pet": "oxford_pets", "oxford_iiit_pet": "oxford_pets",
    "pet37": "oxford_pets",
    "Places365": "places365", "places-365": "places365",
}


def test_every_set_is_registered_and_documented():
    assert set(corpus.CLASS_NAME_SETS) == set(EXPECTED)
    files = {p.name for p in CLASSNAMES.glob("*.txt") if not p.name.endswith("_wnids.txt")}
    assert files == {f"{name}.txt" for name in EXPECTED}  # no file shipped without a name, no name without a file
    # WordNet id files: one per set of corpus.class_wnids, beside its names file
    wn = {p.name[:-len("_wnids.txt")] for p in CLASSNAMES.glob("*_wnids.txt")}
    assert wn == set(corpus._CLASS_WNID_FILES) and wn <= set(EXPECTED)
    for name in wn:
        assert len(corpus.class_wnids(name)) == EXPECTED[name][0] == len(corpus.class_names(name))
    readme = (CLASSNAMES / "README.md").read_text(encoding="utf-8")
    for name in EXPECTED:
        assert f"`{name}.txt`" in readme and f"`{name}`" in readme


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_length_and_anchors(name):
    n, anchors = EXPECTED[name]
    names = corpus.class_names(name)
    assert len(names) == n
    for i, want in anchors.items():
        assert names[i] == want, (name, i)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_file_is_clean(name):
    raw = (CLASSNAMES / f"{name}.txt").read_bytes().decode("utf-8")
    assert raw.endswith("\n") and not raw.endswith("\n\n") and "\r" not in raw and "\t" not in raw
    names = corpus.class_names(name)
    assert names == raw.split("\n")[:-1]
    for c in names:
        assert c and c == c.strip() and "  " not in c, repr(c)


@pytest.mark.parametrize("name", ["cifar100", "cub200", "food101", "places365", "oxford_pets"])
def test_underscores_are_spaces(name):
    # the cleaning rule of these sets turns every "_" of the source names into a space
    assert not any("_" in c for c in corpus.class_names(name))


@pytest.mark.parametrize("name", sorted(set(EXPECTED) - {"imagenet"}))
def test_names_are_distinct(name):
    names = corpus.class_names(name)
    assert len(set(names)) == len(names)


def test_source_orders():
    # CIFAR-100 fine_label_names and Food-101 classes.txt are sorted (with their underscores)
    for name in ("cifar100", "food101"):
        src = [c.replace(" ", "_") for c in corpus.class_names(name)]
        assert src == sorted(src), name
    # Oxford-IIIT Pet class ids follow the breed names alphabetically, cats and dogs mixed
    # (not CLIP's case-sensitive order of the raw names, which puts the capitalised cats first)
    pets = corpus.class_names("oxford_pets")
    assert pets == sorted(pets, key=str.lower) and pets[4:7] == ["Beagle", "Bengal", "Birman"]
    # CUB classes.txt groups by family, not alphabetically
    cub = corpus.class_names("cub200")
    assert cub != sorted(cub) and cub[17:19] == ["Spotted Catbird", "Gray Catbird"]


def test_imagenet_subsets_are_imagenet_names():
    # CSP names each subset class by its ImageNet-1k name (CLIP's names, our imagenet.txt)
    in1k = corpus.class_names("imagenet")
    twice = {c for c in in1k if in1k.count(c) > 1}
    assert twice == {"missile", "sunglasses"}
    subsets = {s: corpus.class_names(s) for s in ("imagenet10", "imagenet20", "imagenet100")}
    for s, names in subsets.items():
        assert set(names) <= set(in1k), s
    # the only ambiguous names (documented in the README with their WordNet ids)
    assert set(subsets["imagenet20"]) & twice == {"missile"}
    assert set(subsets["imagenet100"]) & twice == {"sunglasses"}
    assert not set(subsets["imagenet10"]) & twice
    # ImageNet-10 is in ImageNet-1k index (WordNet id) order
    idx = [in1k.index(c) for c in subsets["imagenet10"]]
    assert idx == sorted(idx) and idx[0] == 10 and idx[-1] == 895
    # the ID/OOD pairs CSP evaluates (ImageNet-10 vs -20, ImageNet-10 vs -100) share no class
    assert not set(subsets["imagenet10"]) & set(subsets["imagenet20"])
    assert not set(subsets["imagenet10"]) & set(subsets["imagenet100"])


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_aliases_resolve(alias):
    assert corpus.class_names(alias) == corpus.class_names(ALIASES[alias])


def test_result_is_a_copy():
    names = corpus.class_names("cifar10")
    names[0] = "x"
    names.append("y")
    assert corpus.class_names("cifar10")[0] == "airplane" and len(corpus.class_names("cifar10")) == 10


@pytest.mark.parametrize("bad", ["cifar1000", "", "places", "imagenet-21k", "cub_200", " cifar10"])
def test_unknown_name(bad):
    with pytest.raises(ValueError, match=r"^name: unknown class-name set .*cifar10, cifar100"):
        corpus.class_names(bad)


@pytest.mark.parametrize("bad", [None, 10, b"cifar10", ["cifar10"]])
def test_name_not_a_string(bad):
    with pytest.raises(TypeError, match="^name: "):
        corpus.class_names(bad)
