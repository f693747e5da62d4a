"""Encoders: Hugging Face and open_clip CLIP models as dnm's two needs, text and image features.

::

    from transformers import CLIPModel, CLIPProcessor          # pip install transformers tokenizers
    enc = dnm.encoders.HFClipEncoder(CLIPModel.from_pretrained(name), CLIPProcessor.from_pretrained(name),
                                     device="cuda", dtype="float16", cache_dir="~/.cache/dnm")
    import open_clip                                           # pip install open_clip_torch
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-16", pretrained="openai")
    enc = dnm.encoders.OpenClipEncoder(model, preprocess, open_clip.get_tokenizer("ViT-B-16"))

    id_labels = enc.encode_text(class_names, templates="the nice {}")     # (C, D) float32, raw
    candidates = enc.encode_text(dnm.corpus.load("dnm"))                  # nouns / adjectives templates
    images = enc.encode_images(dnm.images.from_folder("val"))             # (N, D) float32, raw

Both methods return **raw, unnormalised** float32 features, one row per input, in input order:
the scores normalise rows themselves, but DNM's mining measures the kNN log-distance of the
candidate phrases on their raw encoder outputs (the norms carry information the unit vectors do
not), so nothing here normalises.  With several templates, the raw encodings of the prompts are
averaged (``ensemble="mean"``, as the DNM code does) or their unit vectors are, and the mean
renormalised (``ensemble="normalized_mean"``, CLIP's zero-shot recipe, as OpenOOD-VLM, AdaNeg
and TANL build their labels; the same rule as :func:`dnm.corpus.encode`'s).

Everything runs batched under ``torch.inference_mode()`` with the model in eval mode (its
training flag is restored afterwards), on the model's device and dtype; ``device``/``dtype``
given to the constructor move the model there (``model.to``, in place, as for any torch
model).  Progress bars (tqdm) are on by default and silenced with ``progress=False``.

**Cache.** With ``cache_dir``, results are cached on disk through :func:`dnm.corpus.encode`'s
cache (``<name>-<key>.npy`` + ``.json``, checksummed, rebuilt with a warning when corrupt).  The
key covers the model identity (class, name or path, configuration, a fingerprint of the
weights: name, shape, dtype and 256 evenly spaced values of every tensor of the state dict; the
computation dtype), the tokenizer (text) or the image transform (images), the templates and
the ensembling rule; for images each file's absolute path, size and modification time, so a
changed file invalidates the cache.  ``model_id`` replaces the derived model identity (class,
name, configuration, fingerprint) by your own string, e.g. a checkpoint hash.

**Images** are decoded by :mod:`dnm.images` (Pillow in a DataLoader with ``num_workers``
workers).  Unreadable files are skipped with an :class:`~dnm.images.UnreadableImageWarning`
naming each (``on_error="skip"``, default) or refused with an
:class:`~dnm.images.UnreadableImageError` listing all of them after one full pass
(``on_error="raise"``); ``return_failures=True`` also returns them.  In the cache an
unreadable file is an all-zero row; on a cache hit such rows are decoded again to tell an
unreadable file from a (theoretical) all-zero feature.

dnm never downloads anything: pass your own model objects, or use
:meth:`HFClipEncoder.from_pretrained` (``local_files_only=True`` unless you say otherwise) or
:meth:`OpenClipEncoder.from_name` (open_clip's own loading, with your cache and credentials).
The OpenAI ``clip`` package works through :class:`OpenClipEncoder` too:
``OpenClipEncoder(model, preprocess, clip.tokenize)``.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from . import images as _images

__all__ = ["ClipEncoder", "HFClipEncoder", "OpenClipEncoder", "ENSEMBLE_RULES",
           "model_fingerprint"]

#: How the encodings of several templates are combined (see the module docstring).
ENSEMBLE_RULES = ("mean", "normalized_mean")
_FINGERPRINT_VALUES = 256
_DTYPES = ("float32", "float16", "bfloat16", "float64")


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("dnm.encoders needs torch (pip install torch)") from None
    return torch


def _sha(obj) -> str:
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def model_fingerprint(model) -> str:
    """sha256 over the state dict: every tensor's name, shape, dtype and a sample of its values.

    The sample is ``256`` evenly spaced elements (all of them for smaller tensors), so loading
    other weights into the same architecture, fine-tuning or a dtype change alter it; an edit of
    a few elements between the sampled ones does not (pass ``model_id`` then).
    """
    torch = _torch()
    h = hashlib.sha256()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not isinstance(t, torch.Tensor):
                continue
            h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
            flat = t.detach().reshape(-1)
            if flat.numel():
                step = max(1, flat.numel() // _FINGERPRINT_VALUES)
                sample = flat[::step][:_FINGERPRINT_VALUES]
                if sample.is_complex():
                    sample = torch.view_as_real(sample)
                h.update(sample.to("cpu", torch.float64).numpy().tobytes())
    return h.hexdigest()


def _check_dtype(dtype):
    torch = _torch()
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype.replace("torch.", "") in _DTYPES:
        return getattr(torch, dtype.replace("torch.", ""))
    raise ValueError(f"dtype: expected None, a torch dtype or one of {_DTYPES}, got {dtype!r}")


def _check_positive_int(v, name):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
    return int(v)


def _as_features(out, what):
    """The feature tensor of a model call: a tensor, or the pooled output of a ModelOutput."""
    torch = _torch()
    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)  # transformers >= 5: projected features
    if isinstance(pooled, torch.Tensor):
        return pooled
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"{what}: the model returned {type(out).__name__}, expected a tensor of "
                    "features")


class ClipEncoder:
    """Base of the adapters: batching, devices, caching, images.  Use a subclass.

    Subclasses provide ``_text_forward(prompts) -> tensor (b, D)``,
    ``_image_forward(pixels) -> tensor (b, D)``, ``image_transform`` (PIL image -> tensor,
    picklable for worker processes) and ``_identity(kind) -> dict``.
    """

    kind = "clip"

    def __init__(self, model, *, device=None, dtype=None, batch_size=256, image_batch_size=64,
                 num_workers=0, progress=True, cache_dir=None, model_id=None):
        torch = _torch()
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        dtype = _check_dtype(dtype)
        move = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        if move:
            model.to(**move)
        self.model = model
        self.batch_size = _check_positive_int(batch_size, "batch_size")
        self.image_batch_size = _check_positive_int(image_batch_size, "image_batch_size")
        if isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)) \
                or num_workers < 0:
            raise ValueError(f"num_workers: expected an int >= 0, got {num_workers!r}")
        self.num_workers = int(num_workers)
        self.progress = bool(progress)
        self.cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        if model_id is not None and not isinstance(model_id, str):
            raise TypeError(f"model_id: expected a string, got {type(model_id).__name__}")
        self.model_id = model_id
        self._dim = None

    # -- where the model lives ---------------------------------------------------------------

    def _first_param(self):
        for p in self.model.parameters():
            return p
        return None

    @property
    def device(self):
        p = self._first_param()
        return p.device if p is not None else _torch().device("cpu")

    @property
    def dtype(self):
        p = self._first_param()
        return p.dtype if p is not None else _torch().float32

    def _run(self, fn, arg):
        torch = _torch()
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                out = fn(arg)
        finally:
            self.model.train(was_training)
        if out.ndim != 2:
            raise ValueError(f"the model returned features of shape {tuple(out.shape)}, "
                             "expected (batch, dim)")
        self._dim = int(out.shape[1])
        return out.detach().to("cpu", torch.float32).numpy()

    # -- identity ----------------------------------------------------------------------------

    def _model_identity(self) -> dict:
        if self.model_id is not None:
            return {"model_id": self.model_id}
        return {"class": f"{type(self.model).__module__}.{type(self.model).__qualname__}",
                "weights": model_fingerprint(self.model)}

    def identity(self, kind="text", **extra) -> str:
        """The cache's model name: a readable prefix and a sha256 of everything that matters."""
        parts = {"adapter": self.kind, "what": kind, "model": self._model_identity(),
                 "dtype": str(self.dtype), **self._identity(kind), **extra}
        name = self.model_id or self._readable_name()
        return f"{self.kind}-{name}-{kind}-{_sha(parts)[:16]}"

    def _readable_name(self) -> str:
        return type(self.model).__name__

    def _identity(self, kind) -> dict:  # pragma: no cover - overridden
        return {}

    def _cache_arg(self, cache_dir):
        if cache_dir is False:
            return None
        return self.cache_dir if cache_dir is None else os.fspath(cache_dir)

    # -- text --------------------------------------------------------------------------------

    def encode_text(self, phrases, *, templates=None, adjective_templates=None, ensemble=None,
                    batch_size=None, cache_dir=None, progress=None, desc=None) -> np.ndarray:
        """Raw float32 text features (n, D), one row per phrase, in the given order.

        ``phrases``: a list of strings or a :class:`dnm.Corpus`.  Templates as in
        :func:`dnm.corpus.encode` (a Corpus: nouns in ``templates``, default ``"the nice {}"``,
        adjectives in ``adjective_templates``, default ``"This is a {} photo"``; a list: every
        item in ``templates``, default ``"{}"``; or a template set's name, ``"clip80"``...).
        ``ensemble`` (default: the template set's rule, else ``"mean"``): ``"mean"`` averages the
        raw encodings of the templates (unnormalised on purpose: DNM's mining uses the raw
        norms), ``"normalized_mean"`` averages their unit vectors and renormalises the mean.  ``cache_dir`` (None: the encoder's; False:
        no cache), ``batch_size`` and ``progress`` override the encoder's settings.
        """
        if ensemble is not None and ensemble not in ENSEMBLE_RULES:
            raise ValueError(f"ensemble: expected one of {ENSEMBLE_RULES}, got {ensemble!r}")
        from .corpus import encode as _encode

        bs = self.batch_size if batch_size is None else _check_positive_int(batch_size,
                                                                           "batch_size")

        def encoder(prompts):
            return self._run(self._text_forward, list(prompts))

        # the rule is applied (and keyed in the cache) by dnm.corpus.encode
        return _encode(phrases, encoder, model_name=self.identity("text"),
                       templates=templates, adjective_templates=adjective_templates, rule=ensemble,
                       batch_size=bs, cache_dir=self._cache_arg(cache_dir),
                       progress=self.progress if progress is None else bool(progress),
                       desc=desc or "encoding text")

    # -- images ------------------------------------------------------------------------------

    def embed_dim(self) -> int:
        """The feature dimension (known after any call; else found by encoding one prompt)."""
        if self._dim is None:
            self._run(self._text_forward, ["a photo"])
        return self._dim

    def encode_images(self, images, *, on_error="skip", return_failures=False, batch_size=None,
                      num_workers=None, cache_dir=None, progress=None, desc=None):
        """Raw float32 image features (n, D), one row per readable image, in input order.

        ``images``: an :class:`dnm.images.ImageList`, a folder, an image-list file, a list of
        paths (decoded from disk, cached with ``cache_dir``), or in memory: a list of PIL
        images (transformed here) or a tensor of already preprocessed pixels (b, 3, H, W)
        (neither is cached).  ``on_error``: ``"skip"`` drops unreadable files with an
        UnreadableImageWarning, ``"raise"`` raises UnreadableImageError listing them all.
        ``return_failures=True`` returns ``(features, failures)`` (a list of
        :class:`dnm.images.ImageFailure`).
        """
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error: expected 'skip' or 'raise', got {on_error!r}")
        bs = self.image_batch_size if batch_size is None else _check_positive_int(
            batch_size, "batch_size")
        nw = self.num_workers if num_workers is None else int(num_workers)
        show = self.progress if progress is None else bool(progress)
        torch = _torch()
        if isinstance(images, torch.Tensor):
            return self._encode_pixels(images, bs, show, desc, return_failures)
        if isinstance(images, (list, tuple)) and images and _is_pil(images[0]):
            return self._encode_pil(images, bs, show, desc, return_failures)
        ilist = _images.as_image_list(images)
        feats, failures = self._encode_files(ilist.paths, bs, nw, self._cache_arg(cache_dir),
                                             show, desc)
        _images.report_failures(failures, on_error, total=len(ilist), stacklevel=3)
        if failures:
            keep = np.ones(len(ilist), dtype=bool)
            keep[[f.index for f in failures]] = False
            feats = feats[keep]
        return (feats, failures) if return_failures else feats

    def _encode_pixels(self, pixels, bs, show, desc, return_failures):
        if pixels.ndim != 4:
            raise ValueError(f"images: a tensor of pixels must be 4-D (b, 3, H, W), got shape "
                             f"{tuple(pixels.shape)}")
        from ._progress import tqdm_class

        parts = []
        for s in _bar(tqdm_class(), range(0, pixels.shape[0], bs), show, desc):
            parts.append(self._run(self._image_forward, pixels[s:s + bs]))
        out = np.concatenate(parts) if parts else np.zeros((0, self.embed_dim()), np.float32)
        return (out, []) if return_failures else out

    def _encode_pil(self, imgs, bs, show, desc, return_failures):
        torch = _torch()
        from ._progress import tqdm_class

        parts = []
        for s in _bar(tqdm_class(), range(0, len(imgs), bs), show, desc):
            x = torch.stack([_as_tensor(self.image_transform(im.convert("RGB")))
                             for im in imgs[s:s + bs]])
            parts.append(self._run(self._image_forward, x))
        out = np.concatenate(parts)
        return (out, []) if return_failures else out

    def _encode_files(self, paths, bs, nw, cache_dir, show, desc):
        from .corpus import encode as _encode

        keys = [_file_key(p) for p in paths]
        feeder = _ImageFeeder(self, paths, keys, bs, nw)
        feats = _encode(keys, feeder, model_name=self.identity("images"), templates="{}",
                        batch_size=bs, cache_dir=cache_dir, progress=show,
                        desc=desc or "encoding images")
        if feeder.called:
            reasons = feeder.failures
        else:  # cache hit: all-zero rows were unreadable; decode them again for the reasons
            reasons = {}
            for i in np.flatnonzero(~feats.any(axis=1)):
                try:
                    _images.decode(paths[i])
                except Exception as exc:  # noqa: BLE001
                    reasons[int(i)] = _images._reason(exc)
        failures = [_images.ImageFailure(i, paths[i], reasons[i]) for i in sorted(reasons)]
        return feats, failures


def _bar(tqdm, it, show, desc):
    return tqdm(it, disable=not show, desc=desc or "encoding images", unit="batch", leave=False)


def _is_pil(x):
    try:
        from PIL import Image
    except ImportError:
        return False
    return isinstance(x, Image.Image)


def _as_tensor(x):
    torch = _torch()
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _file_key(path) -> str:
    """Cache key of one file: absolute path, size and modification time (or 'missing')."""
    p = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(p)
    except OSError as exc:
        return f"{p}\0missing\0{type(exc).__name__}"
    return f"{p}\0{st.st_size}\0{st.st_mtime_ns}"


class _ImageFeeder:
    """The callable handed to dnm.corpus.encode for images.

    encode passes the file keys in consecutive batches of ``batch_size``; the feeder answers
    each from one DataLoader pass over the paths (workers decode ahead).  A batch that is not
    the next one expected (a change in encode's batching) is decoded in this process instead.
    Unreadable files give all-zero rows and are recorded in ``failures`` (row -> reason).
    """

    def __init__(self, enc, paths, keys, batch_size, num_workers):
        self.enc, self.paths, self.keys = enc, list(paths), list(keys)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.cursor = 0
        self.iterator = None
        self.failures: dict[int, str] = {}
        self.called = False
        self.first_row = {}
        for i, k in enumerate(self.keys):
            self.first_row.setdefault(k, i)

    def __call__(self, batch_keys):
        self.called = True
        n = len(batch_keys)
        if list(batch_keys) == self.keys[self.cursor:self.cursor + n]:
            rows = np.arange(self.cursor, self.cursor + n)
            if self.iterator is None:
                self.iterator = _images.iter_batches(
                    self.paths, self.enc.image_transform, batch_size=self.batch_size,
                    num_workers=self.num_workers, start=self.cursor)
            idx, ok, x, bad = next(self.iterator)
            if not np.array_equal(idx, rows):  # pragma: no cover - defensive
                raise RuntimeError("image loader out of step with the encoder's batches")
            ok_local = ok - self.cursor
            self.cursor += n
        else:  # pragma: no cover - only if dnm.corpus.encode stops batching in order
            rows = np.array([self.first_row[k] for k in batch_keys])
            ds = _images._Dataset([self.paths[i] for i in rows], self.enc.image_transform)
            _, ok_local, x, bad = _images._collate([ds[j] for j in range(n)])
            bad = [(int(rows[j]), r) for j, r in bad]
        dim = self.enc.embed_dim() if x is None else None
        if x is not None:
            feats = self.enc._run(self.enc._image_forward, x)
            dim = feats.shape[1]
        out = np.zeros((n, dim), dtype=np.float32)
        if x is not None:
            out[ok_local] = feats
        for i, reason in bad:
            self.failures[int(i)] = reason
        return out


# ---------------------------------------------------------------------------------------------
# Hugging Face transformers
# ---------------------------------------------------------------------------------------------

class _HFImageTransform:
    """PIL image -> pixel tensor (3, H, W) through a Hugging Face image processor (picklable)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, img):
        return self.processor(images=img, return_tensors="pt")["pixel_values"][0]

    def __repr__(self):
        try:
            cfg = self.processor.to_dict()
        except Exception:  # noqa: BLE001
            cfg = repr(self.processor)
        return f"HFImageTransform({type(self.processor).__name__}, {_sha(cfg)})"


def _tokenizer_identity(tok) -> dict:
    out = {"class": type(tok).__qualname__,
           "name": getattr(tok, "name_or_path", None) or getattr(tok, "__name__", None)}
    get_vocab = getattr(tok, "get_vocab", None)
    if callable(get_vocab):
        out["vocab"] = _sha(sorted(get_vocab().items()))
    else:
        enc = getattr(tok, "encoder", None)  # open_clip / OpenAI SimpleTokenizer
        if isinstance(enc, dict):
            out["vocab"] = _sha(sorted(enc.items()))
    for attr in ("model_max_length", "context_length", "padding_side"):
        v = getattr(tok, attr, None)
        if isinstance(v, (int, str)):
            out[attr] = v
    return out


class HFClipEncoder(ClipEncoder):
    """A Hugging Face ``transformers`` CLIP-style model (``CLIPModel``, ``AutoModel`` of a CLIP
    checkpoint, or any model with ``get_text_features`` / ``get_image_features``).

    ``processor``: a ``CLIPProcessor`` (or ``AutoProcessor``) holding ``tokenizer`` and
    ``image_processor``; or pass ``tokenizer`` / ``image_processor`` separately (the tokenizer
    is enough for text only).  Prompts are padded to the longest in the batch and truncated
    to ``max_length`` (default: the tokenizer's ``model_max_length`` if sensible, else the
    text model's ``max_position_embeddings``).  Other keywords: see :class:`ClipEncoder`.
    """

    kind = "hf"

    def __init__(self, model, processor=None, *, tokenizer=None, image_processor=None,
                 max_length=None, **kwargs):
        super().__init__(model, **kwargs)
        if not (hasattr(model, "get_text_features") or hasattr(model, "get_image_features")):
            raise TypeError(f"model: {type(model).__name__} has neither get_text_features nor "
                            "get_image_features (a transformers CLIPModel is expected)")
        self.tokenizer = tokenizer if tokenizer is not None else getattr(processor, "tokenizer",
                                                                         None)
        self.image_processor = (image_processor if image_processor is not None else
                                getattr(processor, "image_processor", None))
        if self.tokenizer is None and self.image_processor is None:
            raise ValueError("processor: give a CLIPProcessor, or tokenizer= and/or "
                             "image_processor=")
        if max_length is None:
            ml = getattr(self.tokenizer, "model_max_length", None)
            if not isinstance(ml, int) or ml > 100_000:
                cfg = getattr(getattr(model, "config", None), "text_config", None)
                ml = getattr(cfg, "max_position_embeddings", 77)
            max_length = ml
        self.max_length = _check_positive_int(max_length, "max_length")

    @classmethod
    def from_pretrained(cls, name_or_path, *, local_files_only=True, model_kwargs=None,
                        **kwargs):
        """Load ``AutoModel`` and ``AutoProcessor`` from a local folder or your Hugging Face
        cache.  ``local_files_only=True`` (default): dnm does not download; pass False to let
        transformers fetch it with your credentials."""
        try:
            from transformers import AutoModel, AutoProcessor
        except ImportError:
            raise ImportError("HFClipEncoder.from_pretrained needs transformers, which is not "
                              "installed: pip install transformers tokenizers (or pip install "
                              "'.[hf]' in the dnm source folder)") from None
        model = AutoModel.from_pretrained(name_or_path, local_files_only=local_files_only,
                                          **(model_kwargs or {}))
        processor = AutoProcessor.from_pretrained(name_or_path,
                                                  local_files_only=local_files_only)
        return cls(model, processor, **kwargs)

    @property
    def image_transform(self):
        if self.image_processor is None:
            raise ValueError("this encoder has no image processor (pass a CLIPProcessor or "
                             "image_processor=) and cannot encode images")
        return _HFImageTransform(self.image_processor)

    def _readable_name(self):
        return os.path.basename(str(getattr(self.model, "name_or_path", "") or "")) \
            or type(self.model).__name__

    def _model_identity(self):
        out = super()._model_identity()
        if self.model_id is None:
            cfg = getattr(self.model, "config", None)
            out["name"] = str(getattr(self.model, "name_or_path", "") or "")
            out["commit"] = getattr(cfg, "_commit_hash", None)
            if cfg is not None and hasattr(cfg, "to_json_string"):
                out["config"] = _sha(cfg.to_json_string(use_diff=False))
        return out

    def _identity(self, kind):
        if kind == "text":
            return {"tokenizer": _tokenizer_identity(self.tokenizer),
                    "max_length": self.max_length}
        return {"transform": repr(self.image_transform)}

    def _text_forward(self, prompts):
        if self.tokenizer is None:
            raise ValueError("this encoder has no tokenizer (pass a CLIPProcessor or "
                             "tokenizer=) and cannot encode text")
        tok = self.tokenizer(prompts, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        dev = self.device
        kw = {"input_ids": tok["input_ids"].to(dev)}
        if "attention_mask" in tok:
            kw["attention_mask"] = tok["attention_mask"].to(dev)
        return _as_features(self.model.get_text_features(**kw), "get_text_features")

    def _image_forward(self, pixels):
        x = pixels.to(device=self.device, dtype=self.dtype)
        return _as_features(self.model.get_image_features(pixel_values=x), "get_image_features")


# ---------------------------------------------------------------------------------------------
# open_clip (and OpenAI clip)
# ---------------------------------------------------------------------------------------------

class OpenClipEncoder(ClipEncoder):
    """An open_clip model with its ``preprocess`` and ``tokenizer`` (as returned by
    ``open_clip.create_model_and_transforms`` and ``open_clip.get_tokenizer``); also OpenAI
    ``clip.load``'s model and preprocess with ``clip.tokenize``.

    ``model.encode_text(tokens)`` and ``model.encode_image(pixels)`` are called without
    ``normalize`` (raw features).  ``name``: a readable name for cache files (e.g.
    ``"ViT-B-16/openai"``).  Other keywords: see :class:`ClipEncoder`.
    """

    kind = "open_clip"

    def __init__(self, model, preprocess=None, tokenizer=None, *, name=None, **kwargs):
        super().__init__(model, **kwargs)
        for attr in ("encode_text", "encode_image"):
            if not callable(getattr(model, attr, None)):
                raise TypeError(f"model: {type(model).__name__} has no {attr} method (an "
                                "open_clip or OpenAI clip model is expected)")
        if preprocess is not None and not callable(preprocess):
            raise TypeError("preprocess: expected a callable (PIL image -> tensor)")
        if tokenizer is not None and not callable(tokenizer):
            raise TypeError("tokenizer: expected a callable (list of str -> token tensor)")
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.name = None if name is None else str(name)

    @classmethod
    def from_name(cls, name, pretrained=None, *, create_kwargs=None, **kwargs):
        """``open_clip.create_model_and_transforms(name, pretrained=...)`` (its eval transform)
        and ``open_clip.get_tokenizer(name)``.  ``pretrained=None`` gives random weights;
        a tag or a path is loaded by open_clip (from its cache, or downloaded by open_clip)."""
        try:
            import open_clip
        except ImportError:
            raise ImportError("OpenClipEncoder.from_name needs open_clip, which is not "
                              "installed: pip install open_clip_torch (or pip install "
                              "'.[open_clip]' in the dnm source folder)") from None
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, **(create_kwargs or {}))
        tokenizer = open_clip.get_tokenizer(name)
        label = name if pretrained is None else f"{name}/{os.path.basename(str(pretrained))}"
        return cls(model, preprocess, tokenizer, name=label, **kwargs)

    @property
    def image_transform(self):
        if self.preprocess is None:
            raise ValueError("this encoder has no preprocess and cannot encode images")
        return self.preprocess

    def _readable_name(self):
        return self.name or type(self.model).__name__

    def _model_identity(self):
        out = super()._model_identity()
        if self.model_id is None:
            out["name"] = self.name
        return out

    def _identity(self, kind):
        if kind == "text":
            return {"tokenizer": _tokenizer_identity(self.tokenizer)}
        return {"transform": repr(self.image_transform)}

    def _text_forward(self, prompts):
        if self.tokenizer is None:
            raise ValueError("this encoder has no tokenizer and cannot encode text")
        tokens = self.tokenizer(prompts)
        return _as_features(self.model.encode_text(_as_tensor(tokens).to(self.device)),
                            "encode_text")

    def _image_forward(self, pixels):
        x = pixels.to(device=self.device, dtype=self.dtype)
        return _as_features(self.model.encode_image(x), "encode_image")

