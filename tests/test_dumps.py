"""dnm.dumps: the official repositories' .pth structures, written here with torch.save, and
malicious or malformed files."""
import os
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dnm import dumps as D  # noqa: E402

rng = np.random.default_rng(0)


def _t(*shape, dtype=torch.float32):
    return torch.from_numpy(rng.standard_normal(shape).astype(np.float32)).to(dtype)


def test_dnm_negative_dump(tmp_path):
    pos, neg = _t(10, 8), _t(7, 8, dtype=torch.float16)
    p = tmp_path / "neg_dump_new_B16.pth"
    torch.save(dict(pos_emb=pos, neg_emb_selected=neg, noun_length=20, adj_length=5), p)
    d = D.read_dump(p)
    assert d.kind == "dnm_negatives"
    np.testing.assert_array_equal(d.id_labels, pos.numpy())
    np.testing.assert_array_equal(d.negatives, neg.numpy())
    assert d.negatives.dtype == np.float16
    assert (d.noun_length, d.adj_length) == (20, 5) and d.candidates is None


def test_dnm_positive_dump_per_template(tmp_path):
    pos = _t(6, 3, 8)  # (C, T, D) as the DNM code stacks templates on dim 1
    p = tmp_path / "pos_dump_new_ens.pth"
    torch.save(dict(pos_emb=pos), p)
    d = D.read_dump(p)
    assert d.kind == "dnm_positives"
    np.testing.assert_array_equal(d.id_labels_per_template, pos.numpy())
    np.testing.assert_allclose(d.id_labels, pos.numpy().mean(axis=1), rtol=1e-6)


def test_neglabel_dump_mask(tmp_path):
    neg = _t(9, 8)
    neg = neg / neg.norm(dim=-1, keepdim=True)
    p = tmp_path / "neg_dump.pth"
    torch.save(dict(neg_emb=neg, noun_length=torch.tensor(6), adj_length=3), p)
    d = D.read_dump(p)
    assert d.kind == "neglabel_negatives"
    assert d.is_adjective.tolist() == [False] * 6 + [True] * 3
    np.testing.assert_array_equal(d.candidates, neg.numpy())


def test_features_dump_keeps_order_and_bfloat16(tmp_path):
    feats = {"ImageNet": _t(5, 8), "iNaturalist": _t(4, 8, dtype=torch.bfloat16),
             "SUN": _t(3, 8), "dtd": _t(2, 8, dtype=torch.float64)}
    p = tmp_path / "CLIP_features_B16.pth"
    torch.save(feats, p)
    got = D.read_features(p)
    assert list(got) == ["ImageNet", "iNaturalist", "SUN", "dtd"]
    assert got["iNaturalist"].dtype == np.float32 and got["dtd"].dtype == np.float64
    np.testing.assert_array_equal(got["SUN"], feats["SUN"].numpy())


def test_code_running_pickles_are_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    p1 = tmp_path / "evil_torch.pth"
    torch.save({"pos_emb": _t(2, 3), "payload": Evil()}, p1)
    p2 = tmp_path / "evil_pickle.pth"
    with open(p2, "wb") as fh:
        pickle.dump({"neg_emb": Evil()}, fh)
    for p in (p1, p2):
        with pytest.raises(D.DumpError, match="refused"):
            D.read_dump(p)
        with pytest.raises(D.DumpError, match="refused"):
            D.read_array(p)
    assert not marker.exists()
    # and a pickled NumPy array (not code, but not a tensor either): refused as well
    p3 = tmp_path / "numpy.pt"
    torch.save({"a": np.zeros((2, 2))}, p3)
    with pytest.raises(D.DumpError, match="refused"):
        D.read_dump(p3)


@pytest.mark.parametrize("obj, match", [
    ({"pos": _t(2, 3)}, "match no recognised structure"),
    ({"pos_emb": _t(2, 3), "noun_length": 3}, "match no recognised structure"),
    ({"neg_emb_selected": _t(2, 3), "pos_emb": _t(2, 3), "noun_length": 3},
     r"missing key\(s\) \['adj_length'\]"),
    ({"pos_emb": _t(2, 3), "neg_emb_selected": _t(2, 4), "noun_length": 3, "adj_length": 1},
     "dimensions differ"),
    ({"pos_emb": _t(2, 3), "neg_emb_selected": _t(9, 3), "noun_length": 3, "adj_length": 1},
     "more than"),
    ({"neg_emb": _t(5, 3), "noun_length": 3, "adj_length": 1}, "noun_length \\+ adj_length"),
    ({"neg_emb": _t(4, 3), "noun_length": -1, "adj_length": 5}, "non-negative int"),
    ({"neg_emb": _t(4, 3), "noun_length": 2.5, "adj_length": 1}, "non-negative int"),
    ({"pos_emb": _t(2, 3, 4, 5)}, "expected 2 or 3-D"),
    ({"pos_emb": torch.zeros(2, 3, dtype=torch.int64)}, "floating-point"),
    ({"pos_emb": "text"}, "expected a tensor"),
    ({"ImageNet": _t(3, 4), "SUN": _t(3, 5)}, "dimensions differ"),
    ({"ImageNet": _t(3,), "SUN": _t(3, 5)}, "expected 2-D"),
    ({"ImageNet": torch.zeros(0, 5), "SUN": _t(3, 5)}, "empty"),
    ([_t(2, 3)], "expected a dict"),
])
def test_wrong_structures(tmp_path, obj, match):
    p = tmp_path / "x.pth"
    torch.save(obj, p)
    with pytest.raises(D.DumpError, match=match):
        D.read_dump(p)


def test_not_a_torch_file(tmp_path):
    p = tmp_path / "trunc.pth"
    torch.save({"a": _t(3, 3)}, tmp_path / "ok.pth")
    p.write_bytes((tmp_path / "ok.pth").read_bytes()[:60])
    with pytest.raises(D.DumpError, match="not a readable torch file"):
        D.read_dump(p)
    with pytest.raises(FileNotFoundError):
        D.read_dump(tmp_path / "none.pth")
    with pytest.raises(D.DumpError, match="not a features dump"):
        torch.save({"neg_emb": _t(2, 3), "noun_length": 2, "adj_length": 0}, p)
        D.read_features(p)


def test_read_array_all_formats(tmp_path):
    a = rng.standard_normal((4, 3)).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "one.npz", x=a)
    np.savez(tmp_path / "two.npz", x=a, y=a)
    torch.save(torch.from_numpy(a), tmp_path / "t.pt")
    torch.save({"emb": torch.from_numpy(a), "other": torch.zeros(2, 3)}, tmp_path / "d.pth")
    for p, key in (("a.npy", None), ("one.npz", None), ("two.npz", "y"), ("t.pt", None),
                   ("d.pth", "emb")):
        np.testing.assert_array_equal(D.read_array(tmp_path / p, key), a)
    with pytest.raises(ValueError, match="say which one"):
        D.read_array(tmp_path / "d.pth")
    with pytest.raises(ValueError, match="not in"):
        D.read_array(tmp_path / "two.npz", "z")
    with pytest.raises(ValueError, match="no key applies"):
        D.read_array(tmp_path / "t.pt", "emb")
    (tmp_path / "x.csv").write_text("1,2\n3,4\n")
    with pytest.raises(ValueError, match="not a NumPy or torch file; expected a .npy"):
        D.read_array(tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError):
        D.read_array(tmp_path / "none.npy")


def test_read_array_tells_the_format_from_the_content(tmp_path):
    a = rng.standard_normal((4, 3)).astype(np.float32)
    torch.save({"emb": torch.from_numpy(a)}, tmp_path / "torch.npz")
    np.save(tmp_path / "np.npy", a)
    os.rename(tmp_path / "np.npy", tmp_path / "np.pt")
    np.savez(tmp_path / "arch.npz", emb=a)
    os.rename(tmp_path / "arch.npz", tmp_path / "arch.pth")
    torch.save(torch.from_numpy(a), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert [D.file_format(tmp_path / n) for n in ("torch.npz", "np.pt", "arch.pth",
                                                  "legacy.pt")] == ["torch", "npy", "npz",
                                                                    "torch"]
    for n, key in (("torch.npz", "emb"), ("np.pt", None), ("arch.pth", "emb"),
                   ("legacy.pt", None)):
        np.testing.assert_array_equal(D.read_array(tmp_path / n, key), a)
    (tmp_path / "t.txt").write_text("hello")
    assert D.file_format(tmp_path / "t.txt") is None


def test_read_array_masks_and_scores(tmp_path):
    torch.save({"adj": torch.tensor([True, False, True]), "s": torch.arange(3.0)},
               tmp_path / "m.pt")
    m = D.read_array(tmp_path / "m.pt", "adj", ndim=1, floating=False)
    assert m.dtype == bool and m.tolist() == [True, False, True]
    assert D.read_array(tmp_path / "m.pt", "s", ndim=None).tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(D.DumpError, match="expected 2-D"):
        D.read_array(tmp_path / "m.pt", "s")
    with pytest.raises(D.DumpError, match="floating-point"):
        D.read_array(tmp_path / "m.pt", "adj", ndim=1)
    with pytest.raises(D.KeyChoiceError, match="say which one") as e:
        D.read_array(tmp_path / "m.pt", ndim=None)
    assert e.value.keys == ["adj", "s"]


@pytest.mark.parametrize("spec, want", [
    ("a.npz:key", ("a.npz", "key")), ("d/a.PT:emb", ("d/a.PT", "emb")),
    ("a.pth::x/y", ("a.pth", "x/y")), ("a.npy:key", ("a.npy:key", None)),
    ("a.npz", ("a.npz", None)), ("a.pt:", ("a.pt:", None)),
])
def test_split_key(spec, want):
    assert D.split_key(spec) == want


def test_split_key_prefers_an_existing_file(tmp_path):
    p = tmp_path / "odd.npz:name"
    p.write_bytes(b"")
    assert D.split_key(str(p)) == (str(p), None)


def test_a_malformed_pickle_is_one_dump_error(tmp_path):
    """torch's weights-only reader fails on a malformed pickle with whatever error its stack
    machine hits (here IndexError: SETITEM on an empty stack): always one DumpError."""
    from dnm import dumps

    p = tmp_path / "bad.pt"
    p.write_bytes(b"\x80\x02s.")
    with pytest.raises(dumps.DumpError, match=r"bad\.pt: not a readable torch file"):
        dumps.read_array(p)
