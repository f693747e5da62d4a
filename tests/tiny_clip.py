"""Small real CLIP stand-ins for the tests, built locally (no download).

* ``hf_clip(seed)``: a transformers ``CLIPModel`` from a small ``CLIPConfig`` with random
  weights, a ``CLIPProcessor`` made of a ``PreTrainedTokenizerFast`` over a word-level
  vocabulary built with the ``tokenizers`` library and a ``CLIPImageProcessor`` (32 x 32).
* ``FakeOpenClip``: a torch module with open_clip's calling convention (``encode_text``,
  ``encode_image``, a torchvision-free ``preprocess`` and a tokenizer returning a LongTensor
  of fixed context length), for the adapter logic where open_clip itself is not installed.
* ``write_images(folder, n)``: PNG and JPEG files written with Pillow.
"""
from __future__ import annotations

import numpy as np

WORDS = ("the nice this is a photo of cat dog tiger airliner ship car tree house river "
         "mountain red blue green small big old new dark bright wooden metal sky road bird "
         "fish flower stone").split()
SPECIAL = ["<pad>", "<unk>", "<bos>", "<eos>"]
CONTEXT = 16
IMAGE_SIZE = 32
DIM = 24


def hf_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, normalizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL + list(WORDS))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", 2), ("<eos>", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>",
                                   model_max_length=CONTEXT)


def hf_clip(seed=0):
    """(model, processor): random-weight CLIPModel and a local processor."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor

    try:
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:  # transformers < 5
        from transformers import CLIPImageProcessor as ImageProcessor

    tc = dict(vocab_size=len(SPECIAL) + len(WORDS), hidden_size=32, intermediate_size=64,
              num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=CONTEXT,
              pad_token_id=0, bos_token_id=2, eos_token_id=3)
    vc = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
              image_size=IMAGE_SIZE, patch_size=8)
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=tc, vision_config=vc, projection_dim=DIM)).eval()
    improc = ImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return model, CLIPProcessor(image_processor=improc, tokenizer=hf_tokenizer())


class FakeTokenizer:
    """open_clip-style tokenizer: list of str -> LongTensor (n, CONTEXT)."""

    context_length = CONTEXT

    def __init__(self):
        self.encoder = {t: i for i, t in enumerate(SPECIAL + list(WORDS))}

    def __call__(self, texts):
        import torch

        if isinstance(texts, str):
            texts = [texts]
        out = torch.zeros(len(texts), CONTEXT, dtype=torch.long)
        for r, t in enumerate(texts):
            ids = [2] + [self.encoder.get(w, 1) for w in t.lower().split()][:CONTEXT - 2] + [3]
            out[r, :len(ids)] = torch.tensor(ids)
        return out


class FakePreprocess:
    """PIL image -> float tensor (3, IMAGE_SIZE, IMAGE_SIZE), like open_clip's eval transform."""

    def __call__(self, img):
        import torch

        img = img.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE))
        a = np.asarray(img, dtype=np.float32) / 255.0
        return torch.from_numpy(a.transpose(2, 0, 1).copy())

    def __repr__(self):
        return f"FakePreprocess(size={IMAGE_SIZE})"


def fake_open_clip(seed=0):
    """(model, preprocess, tokenizer) with create_model_and_transforms' calling convention."""
    import torch

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.token_embedding = torch.nn.Embedding(len(SPECIAL) + len(WORDS), 16)
            self.text_projection = torch.nn.Linear(16, DIM, bias=False)
            self.visual = torch.nn.Sequential(torch.nn.Flatten(),
                                              torch.nn.Linear(3 * IMAGE_SIZE ** 2, DIM))

        def encode_text(self, tokens, normalize=False):
            mask = (tokens != 0).float().unsqueeze(-1)
            h = (self.token_embedding(tokens) * mask).sum(1) / mask.sum(1)
            x = self.text_projection(h) * 5.0
            return torch.nn.functional.normalize(x, dim=-1) if normalize else x

        def encode_image(self, image, normalize=False):
            x = self.visual(image) * 5.0
            return torch.nn.functional.normalize(x, dim=-1) if normalize else x

    torch.manual_seed(seed)
    return Model().eval(), FakePreprocess(), FakeTokenizer()


def write_images(folder, n, *, seed=0, prefix="img", size=(40, 36)):
    """n small RGB images, alternately PNG and JPEG; returns their paths in write order."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        a = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
        ext = "png" if i % 2 == 0 else "jpg"
        p = folder / f"{prefix}{i:04d}.{ext}"
        Image.fromarray(a).save(p)
        paths.append(p)
    return paths
