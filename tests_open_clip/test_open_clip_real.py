"""The open_clip adapter on a real open_clip model (random weights, pretrained=None).

Not part of the main suite: open_clip needs torchvision, which on the project's machines imports
only as torch==2.14.1 + torchvision==0.29.1 (a multi-GB build beside the main venv's
torch==2.13.0 CPU).  Run with ``make test-open-clip`` (own environment .venv-openclip); the
target records its last run in tests_open_clip/LAST_RUN.txt.  The adapter logic itself is
covered in the main suite by an open_clip-shaped stand-in (tests/test_encoders.py).
"""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

import dnm  # noqa: E402
from dnm import images as I  # noqa: E402
from dnm.encoders import OpenClipEncoder  # noqa: E402
import tiny_clip as T  # noqa: E402

NAME = "ViT-B-32"


@pytest.fixture(scope="module")
def enc():
    torch.manual_seed(0)
    return OpenClipEncoder.from_name(NAME, pretrained=None, progress=False, batch_size=8,
                                     image_batch_size=4)


def test_text_raw_and_equal_to_the_model(enc):
    words = ["the nice cat", "a photo of a dog", "This is a red photo"]
    x = enc.encode_text(words)
    with torch.no_grad():
        ref = enc.model.encode_text(open_clip.get_tokenizer(NAME)(words)).numpy()
    np.testing.assert_allclose(x, ref, rtol=1e-4, atol=1e-5)
    assert x.shape == (3, 512)
    assert np.all(np.abs(np.linalg.norm(x, axis=1) - 1) > 1e-3)


def test_images_folder_cache_and_detector(enc, tmp_path):
    T.write_images(tmp_path / "im", 10, seed=1, size=(64, 48))
    (tmp_path / "im" / "zz_bad.png").write_bytes(b"broken")
    with pytest.warns(I.UnreadableImageWarning, match="zz_bad.png"):
        X = enc.encode_images(tmp_path / "im", cache_dir=tmp_path / "c")
    assert X.shape == (10, 512)
    from PIL import Image

    paths = I.from_folder(tmp_path / "im").paths[:3]
    with torch.no_grad():
        ref = enc.model.encode_image(torch.stack([enc.preprocess(Image.open(p).convert("RGB"))
                                                  for p in paths])).numpy()
    np.testing.assert_allclose(X[:3], ref, rtol=1e-4, atol=1e-5)
    with pytest.warns(I.UnreadableImageWarning):
        X2 = enc.encode_images(tmp_path / "im", cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(X, X2)
    id_labels = enc.encode_text(["cat", "dog"], templates="the nice {}")
    det = dnm.NegativeLabelDetector("mcm").fit(id_labels)
    assert np.isfinite(det.score_samples(X)).all()
