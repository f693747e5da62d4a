"""dnm.encoders with a real transformers CLIPModel (random weights, local tokenizer) and an
open_clip-shaped stand-in; images written by the test; the cache; into the detector."""
import os
import warnings

import numpy as np
import pytest

pytest.importorskip("PIL")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import dnm  # noqa: E402
from dnm import images as I  # noqa: E402
from dnm.encoders import HFClipEncoder, OpenClipEncoder, model_fingerprint  # noqa: E402
import tiny_clip as T  # noqa: E402

PHRASES = ["the nice cat", "dog", "a photo of a tiger", "red ship", "old wooden house"]


@pytest.fixture(scope="module")
def hf():
    return T.hf_clip(seed=0)


def _direct_text(model, processor, prompts):
    tok = processor.tokenizer(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.get_text_features(input_ids=tok["input_ids"],
                                      attention_mask=tok["attention_mask"])
    out = out if isinstance(out, torch.Tensor) else out.pooler_output
    return out.numpy()


def _direct_images(model, processor, paths):
    from PIL import Image

    ims = [Image.open(p).convert("RGB") for p in paths]
    px = processor.image_processor(images=ims, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = model.get_image_features(pixel_values=px)
    out = out if isinstance(out, torch.Tensor) else out.pooler_output
    return out.numpy()


class Counting:
    """Wrap an encoder's forward to count model calls."""

    def __init__(self, enc, attr):
        self.n = 0
        orig = getattr(enc, attr)

        def f(x):
            self.n += 1
            return orig(x)

        setattr(enc, attr, f)


# -- text ------------------------------------------------------------------------------------

def test_hf_text_is_raw_and_matches_the_model(hf):
    model, proc = hf
    enc = HFClipEncoder(model, proc, progress=False, batch_size=2)
    x = enc.encode_text(PHRASES)
    assert x.dtype == np.float32 and x.shape == (5, T.DIM)
    ref = _direct_text(model, proc, PHRASES)
    np.testing.assert_allclose(x, ref, rtol=1e-4, atol=1e-5)
    norms = np.linalg.norm(x, axis=1)
    assert np.all(np.abs(norms - 1) > 1e-2)  # not normalised
    # batch size does not change the rows
    np.testing.assert_allclose(enc.encode_text(PHRASES, batch_size=100), x, rtol=1e-4, atol=1e-5)


def test_hf_templates_and_ensembles(hf):
    model, proc = hf
    enc = HFClipEncoder(model, proc, progress=False)
    words = ["cat", "dog", "red"]
    t1 = enc.encode_text(words, templates="the nice {}")
    t2 = enc.encode_text(words, templates="a photo of a {}")
    both = enc.encode_text(words, templates=["the nice {}", "a photo of a {}"])
    np.testing.assert_allclose(both, (t1 + t2) / 2, rtol=1e-5, atol=1e-6)
    nm = enc.encode_text(words, templates=["the nice {}", "a photo of a {}"],
                         ensemble="normalized_mean")
    u = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(nm, u((u(t1) + u(t2)) / 2), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(nm, axis=1), 1.0, rtol=1e-6)
    # the same rule as dnm.corpus.encode's, and a named set brings its rule (clip80: normalised)
    ref = dnm.corpus.encode(words, lambda p: enc.encode_text(p), templates=["the nice {}", "a photo of a {}"],
                            rule="normalized_mean")
    np.testing.assert_allclose(nm, ref, rtol=1e-5, atol=1e-6)
    c80 = enc.encode_text(words[:1], templates="clip80")
    assert dnm.corpus.template_set("clip80").rule == "normalized_mean"
    np.testing.assert_allclose(np.linalg.norm(c80, axis=1), 1.0, rtol=1e-6)
    corpus = dnm.corpus.from_list(["cat", "red"], is_adjective=[False, True])
    c = enc.encode_text(corpus)
    np.testing.assert_allclose(c[0], enc.encode_text(["the nice cat"])[0], rtol=1e-5)
    np.testing.assert_allclose(c[1], enc.encode_text(["This is a red photo"])[0], rtol=1e-5)
    with pytest.raises(ValueError, match="ensemble"):
        enc.encode_text(words, ensemble="max")


def test_training_flag_restored_and_no_grad(hf):
    model, proc = hf
    model.train()
    try:
        enc = HFClipEncoder(model, proc, progress=False)
        x1 = enc.encode_text(PHRASES[:2])
        assert model.training  # restored
        x2 = enc.encode_text(PHRASES[:2])
        np.testing.assert_array_equal(x1, x2)  # eval mode inside: no dropout randomness
    finally:
        model.eval()


def test_dtype_option_moves_the_model():
    model, proc = T.hf_clip(seed=3)
    ref = HFClipEncoder(model, proc, progress=False).encode_text(PHRASES)
    enc = HFClipEncoder(model, proc, progress=False, device="cpu", dtype="float64")
    assert enc.dtype == torch.float64 and next(model.parameters()).dtype == torch.float64
    x = enc.encode_text(PHRASES)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="dtype"):
        HFClipEncoder(model, proc, dtype="int8")


def test_text_cache_hit_miss_and_keys(hf, tmp_path):
    model, proc = hf
    enc = HFClipEncoder(model, proc, progress=False, cache_dir=tmp_path)
    calls = Counting(enc, "_text_forward")
    a = enc.encode_text(PHRASES)
    n1 = calls.n
    assert n1 >= 1 and len(list(tmp_path.glob("*.npy"))) == 1
    b = enc.encode_text(PHRASES)  # hit
    assert calls.n == n1
    np.testing.assert_array_equal(a, b)
    enc.encode_text(PHRASES, templates="the nice {}")  # other templates: miss
    assert calls.n > n1
    n2 = calls.n
    enc.encode_text(PHRASES, ensemble="normalized_mean")  # other rule: miss
    assert calls.n > n2
    n3 = calls.n
    enc.encode_text(PHRASES, cache_dir=False)  # cache off
    assert calls.n > n3
    # another model with the same architecture and name: other weights, other key
    other, _ = T.hf_clip(seed=1)
    assert model_fingerprint(other) != model_fingerprint(model)
    enc2 = HFClipEncoder(other, proc, progress=False, cache_dir=tmp_path)
    c2 = Counting(enc2, "_text_forward")
    x2 = enc2.encode_text(PHRASES)
    assert c2.n >= 1 and not np.allclose(x2, a)
    # an explicit model_id replaces the derived identity
    enc3 = HFClipEncoder(model, proc, progress=False, cache_dir=tmp_path, model_id="my-ckpt")
    assert enc3.identity("text").startswith("hf-my-ckpt-text-")


def test_hf_from_pretrained_local_folder(hf, tmp_path):
    model, proc = hf
    model.save_pretrained(tmp_path / "m")
    proc.save_pretrained(tmp_path / "m")
    enc = HFClipEncoder.from_pretrained(tmp_path / "m", progress=False)
    np.testing.assert_allclose(enc.encode_text(PHRASES),
                               HFClipEncoder(model, proc, progress=False).encode_text(PHRASES),
                               rtol=1e-4, atol=1e-5)


# -- images ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    """A few hundred PNG/JPEG images in two class folders, plus corrupt files."""
    root = tmp_path_factory.mktemp("imgs")
    write = T.write_images
    write(root / "cat", 120, seed=10)
    write(root / "dog", 110, seed=11)
    (root / "dog" / "zz_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    good = (root / "cat" / "img0000.png").read_bytes()
    (root / "cat" / "zz_trunc.png").write_bytes(good[: len(good) // 3])
    return root


def test_hf_images_folder_failures_and_rows(hf, image_dir):
    model, proc = hf
    enc = HFClipEncoder(model, proc, progress=False, image_batch_size=32)
    il = I.from_folder(image_dir)
    assert len(il) == 232 and il.classes == ["cat", "dog"]
    with pytest.warns(I.UnreadableImageWarning, match=r"(?s)2 of 232.*zz_trunc.png.*zz_bad.png"):
        x, fails = enc.encode_images(il, return_failures=True)
    assert [os.path.basename(f.path) for f in fails] == ["zz_trunc.png", "zz_bad.png"]
    assert x.shape == (230, T.DIM) and x.dtype == np.float32
    kept = il.drop(fails)
    assert kept.labels.tolist() == [0] * 120 + [1] * 110
    pick = [0, 1, 119, 120, 229]  # rows follow the path order
    ref = _direct_images(model, proc, [kept.paths[i] for i in pick])
    np.testing.assert_allclose(x[pick], ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(I.UnreadableImageError, match="2 of 232") as ei:
        enc.encode_images(il, on_error="raise")
    assert len(ei.value.failures) == 2


def test_hf_images_image_list_and_workers(hf, image_dir, tmp_path):
    model, proc = hf
    lst = tmp_path / "list.txt"
    names = [f"dog/img{i:04d}.{'png' if i % 2 == 0 else 'jpg'}" for i in (5, 3, 8)]
    lst.write_text("".join(f"{n} 1\n" for n in names))
    il = I.read_image_list(lst, root=image_dir)
    enc = HFClipEncoder(model, proc, progress=False, image_batch_size=2, num_workers=2)
    x = enc.encode_images(il)
    np.testing.assert_allclose(x, _direct_images(model, proc, il.paths), rtol=1e-4, atol=1e-5)
    # in-memory PIL images and preprocessed pixels give the same rows
    from PIL import Image

    pil = [Image.open(p) for p in il.paths]
    np.testing.assert_allclose(enc.encode_images(pil), x, rtol=1e-5, atol=1e-6)
    px = proc.image_processor(images=[p.convert("RGB") for p in pil],
                              return_tensors="pt")["pixel_values"]
    np.testing.assert_allclose(enc.encode_images(px), x, rtol=1e-5, atol=1e-6)


def test_image_cache_hit_miss_invalidated(hf, tmp_path):
    model, proc = hf
    folder = tmp_path / "imgs"
    paths = T.write_images(folder, 12, seed=20)
    (folder / "zz_bad.jpg").write_bytes(b"nope")
    enc = HFClipEncoder(model, proc, progress=False, image_batch_size=5,
                        cache_dir=tmp_path / "cache")
    calls = Counting(enc, "_image_forward")
    with pytest.warns(I.UnreadableImageWarning):
        a, fa = enc.encode_images(folder, return_failures=True)
    n1 = calls.n
    assert n1 == 3 and a.shape == (12, T.DIM)
    with pytest.warns(I.UnreadableImageWarning, match="zz_bad.jpg: UnidentifiedImageError"):
        b, fb = enc.encode_images(folder, return_failures=True)  # hit: reasons found again
    assert calls.n == n1
    np.testing.assert_array_equal(a, b)
    assert [(f.index, f.path) for f in fb] == [(f.index, f.path) for f in fa]
    # a changed file (new content, new size / mtime) invalidates the cache
    T.write_images(folder, 1, seed=77)  # rewrites img0000.png
    st = os.stat(paths[0])
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.warns(I.UnreadableImageWarning):
        c = enc.encode_images(folder)
    assert calls.n > n1
    assert not np.allclose(c[0], a[0])
    np.testing.assert_allclose(c[1:], a[1:], rtol=1e-5, atol=1e-6)


# -- open_clip-shaped model ------------------------------------------------------------------

def test_open_clip_adapter_logic(tmp_path):
    model, preprocess, tokenizer = T.fake_open_clip(seed=0)
    enc = OpenClipEncoder(model, preprocess, tokenizer, name="fake/B16", progress=False,
                          batch_size=2, image_batch_size=3, cache_dir=tmp_path / "c")
    x = enc.encode_text(PHRASES)
    with torch.no_grad():
        ref = model.encode_text(tokenizer(PHRASES)).numpy()
    np.testing.assert_allclose(x, ref, rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(np.linalg.norm(x, axis=1) - 1) > 1e-2)  # raw
    paths = T.write_images(tmp_path / "im", 7, seed=30)
    f = enc.encode_images([str(p) for p in paths])
    from PIL import Image

    with torch.no_grad():
        ref_i = model.encode_image(torch.stack([preprocess(Image.open(p)) for p in paths]))
    np.testing.assert_allclose(f, ref_i.numpy(), rtol=1e-5, atol=1e-6)
    assert enc.identity("images").startswith("open_clip-fake/B16-images-")
    assert any(p.name.startswith("open_clip-fake_B16") for p in (tmp_path / "c").iterdir())
    with pytest.raises(TypeError, match="no encode_text method"):
        OpenClipEncoder(torch.nn.Linear(2, 2), preprocess, tokenizer)
    with pytest.raises(ValueError, match="no tokenizer"):
        OpenClipEncoder(model, preprocess, None, progress=False).encode_text(["cat"])


def test_all_failed_batch_gets_the_dimension(tmp_path):
    model, preprocess, tokenizer = T.fake_open_clip(seed=0)
    enc = OpenClipEncoder(model, preprocess, tokenizer, progress=False, image_batch_size=2)
    for i in range(2):
        (tmp_path / f"a{i}.png").write_bytes(b"bad")
    T.write_images(tmp_path, 2, seed=1, prefix="b")
    with pytest.warns(I.UnreadableImageWarning, match="2 of 4"):
        x = enc.encode_images(tmp_path)
    assert x.shape == (2, T.DIM)


# -- end to end into the detector ------------------------------------------------------------

def test_end_to_end_detector(hf, image_dir):
    model, proc = hf
    enc = HFClipEncoder(model, proc, progress=False, image_batch_size=64)
    id_names = ["cat", "dog"]
    id_labels = enc.encode_text(id_names, templates=dnm.corpus.ID_TEMPLATE)
    nouns = [w for w in T.WORDS if w not in ("the", "nice", "this", "is", "a", "photo", "of",
                                             "cat", "dog")]
    corpus = dnm.corpus.from_list(nouns + ["red", "blue", "small", "big"],
                                  is_adjective=[False] * len(nouns) + [True] * 4)
    cand = enc.encode_text(corpus)
    det = dnm.NegativeLabelDetector("neglabel", groups=2, ratio=0.5)
    det.fit(id_labels, cand, phrases=corpus, id_names=id_names)
    with pytest.warns(I.UnreadableImageWarning):
        X = enc.encode_images(image_dir)
    s = det.score_samples(X)
    assert s.shape == (230,) and np.isfinite(s).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dnm.DNMGuardWarning)
        d2 = dnm.NegativeLabelDetector("dnm", groups=2, k=3, noun_ratio=0.5, adj_ratio=0.5)
        d2.fit(id_labels, cand, phrases=corpus)
        assert np.isfinite(d2.score_samples(X)).all()


def test_end_to_end_benchmark_from_image_folders(hf, image_dir, tmp_path):
    from dnm.benchmark import run_benchmark

    model, proc = hf
    enc = HFClipEncoder(model, proc, progress=False, image_batch_size=64,
                        cache_dir=tmp_path / "cache")
    T.write_images(tmp_path / "ood", 40, seed=50)
    lst = tmp_path / "ood_list.txt"
    lst.write_text("".join(f"img{i:04d}.{'png' if i % 2 == 0 else 'jpg'} -1\n"
                           for i in range(0, 40, 2)))
    corpus = dnm.corpus.from_list([w for w in T.WORDS if w not in ("cat", "dog")])
    with pytest.warns(I.UnreadableImageWarning):
        res = run_benchmark({"ID": image_dir, "far": tmp_path / "ood",
                             "list": I.read_image_list(lst, root=tmp_path / "ood")},
                            encoder=enc, id_names=["cat", "dog"], corpus=corpus,
                            methods=["mcm", "neglabel"], params={"neglabel": {"groups": 4}},
                            seeds=[0, 1], out_dir=tmp_path / "out", plots=True, progress=False)
    assert res.settings["n_id"] == 230 and res.settings["n_ood"] == {"far": 40, "list": 20}
    assert {r["dataset"] for r in res.summary} == {"far", "list", "Average"}
    X = enc.encode_images(tmp_path / "ood")  # cached: same rows as the run used
    det = dnm.NegativeLabelDetector("mcm").fit(
        enc.encode_text(["cat", "dog"], templates="the nice {}"))
    np.testing.assert_array_equal(res.scores[("mcm", 0)]["far"], det.score_samples(X))
    for f in ("summary.csv", "summary.md", "summary.tex", "per_seed.csv", "report.json",
              "hist_mcm.png", "roc_neglabel.png"):
        assert (tmp_path / "out" / f).is_file(), f
