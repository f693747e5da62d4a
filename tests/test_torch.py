"""dnm.torch.OODHead: a drop-in head for nn.Sequential; zero-copy CPU tensors."""
import functools
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import dnm  # noqa: E402
from dnm.torch import OODHead, to_numpy  # noqa: E402

D = 32


def test_dnm_torch_imports_the_real_torch():
    import dnm.torch as dt
    assert dt.torch is sys.modules["torch"]
    assert hasattr(dt.torch, "nn") and dt.__name__ == "dnm.torch"
    assert sys.modules["dnm.torch"] is dt and sys.modules["torch"] is not dt


@pytest.fixture(scope="module")
def labels():
    rng = np.random.default_rng(7)
    return (rng.normal(size=(50, D)).astype(np.float32),
            rng.normal(size=(400, D)).astype(np.float32))


@pytest.fixture(scope="module")
def score_fn(labels):
    P, M = labels
    return functools.partial(dnm.dnm_score, id_labels=P, negatives=M, groups=20, tau=0.9)


@pytest.fixture(scope="module")
def detector(labels):
    Det = getattr(dnm, "NegativeLabelDetector", None)
    if Det is None:
        pytest.skip("dnm.NegativeLabelDetector not available yet")
    P, _ = labels
    rng = np.random.default_rng(3)
    cand = (rng.normal(size=(1500, D)) * 8).astype(np.float32)
    adj = rng.random(1500) < 0.2
    return Det(method="dnm", groups=20, tau=0.9, k=10).fit(P, cand, is_adjective=adj)


def extractor():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 64),
                               torch.nn.ReLU(), torch.nn.Linear(64, D)).eval()


class Recorder:
    """A stand-in detector recording what reaches score_samples."""

    def __init__(self, fn):
        self.fn, self.seen = fn, []

    def score_samples(self, X):
        self.seen.append(X)
        return self.fn(X)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "grad"])
def test_sequential_with_feature_extractor(score_fn, mode):
    fe = extractor()
    model = torch.nn.Sequential(fe, OODHead(score_fn))
    imgs = torch.randn(40, 3, 8, 8)
    ctx = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode,
           "grad": torch.enable_grad}[mode]
    with ctx():
        s = model(imgs)
    with torch.no_grad():
        ref = score_fn(fe(imgs).numpy())
    assert isinstance(s, torch.Tensor) and s.dtype == torch.float64 and s.device.type == "cpu"
    assert s.shape == (40,) and not s.requires_grad
    np.testing.assert_array_equal(s.numpy(), ref)


def test_with_negative_label_detector(detector):
    fe = extractor()
    model = torch.nn.Sequential(fe, OODHead(detector))
    imgs = torch.randn(30, 3, 8, 8)
    with torch.inference_mode():
        s = model(imgs)
        feats = fe(imgs)
    np.testing.assert_array_equal(s.numpy(), detector.score_samples(feats.numpy()))
    assert "NegativeLabelDetector" in repr(model)
    assert list(OODHead(detector).parameters()) == [] and OODHead(detector).state_dict() == {}


@pytest.mark.parametrize("make", [
    lambda t: t,                                   # contiguous
    lambda t: t.t().contiguous().t(),              # Fortran-ordered
    lambda t: torch.cat([t, t], 1)[:, ::2],        # strided columns
    lambda t: t.requires_grad_(True),              # needs detach
], ids=["contiguous", "fortran", "strided", "requires_grad"])
def test_cpu_float32_tensors_reach_the_core_without_copy(score_fn, make):
    t = make(torch.randn(20, D))
    rec = Recorder(score_fn)
    s = OODHead(rec)(t)
    (X,) = rec.seen
    assert X.dtype == np.float32
    assert np.shares_memory(X, t.detach().numpy())
    np.testing.assert_array_equal(s.numpy(), score_fn(t.detach().numpy()))


def test_inference_tensors_and_float16_without_copy(score_fn):
    rec = Recorder(score_fn)
    with torch.inference_mode():
        t = torch.randn(20, D)
        OODHead(rec)(t)
        h = torch.randn(20, D).half()
        OODHead(rec)(h)
    assert np.shares_memory(rec.seen[0], t.numpy())
    # float16 goes to the C core as float16 (widened per tile there, no N-sized copy)
    assert rec.seen[1].dtype == np.float16 and np.shares_memory(rec.seen[1], h.numpy())


def test_bfloat16_converted_once(score_fn):
    t = torch.randn(20, D).bfloat16()
    rec = Recorder(score_fn)
    s = OODHead(rec)(t)
    (X,) = rec.seen
    assert X.dtype == np.float32 and X.flags.c_contiguous
    np.testing.assert_array_equal(X, t.float().numpy())
    np.testing.assert_array_equal(s.numpy(), score_fn(t.float().numpy()))


def test_output_dtype_device_and_batch_shapes(score_fn):
    t = torch.randn(4, 5, D, dtype=torch.float64)
    s = OODHead(score_fn, dtype=torch.float32)(t)
    assert s.shape == (4, 5) and s.dtype == torch.float32
    np.testing.assert_array_equal(s.numpy(), score_fn(t.reshape(20, D).numpy()).astype(np.float32).reshape(4, 5))
    one = OODHead(score_fn, device="cpu")(t[0, 0])
    assert one.shape == () and one.item() == score_fn(t[0, :1].numpy())[0]


def test_non_cpu_tensors(score_fn):
    meta = torch.empty(3, D, device="meta")
    with pytest.raises(TypeError, match="device meta.*features.cpu()"):
        OODHead(score_fn, allow_device_copy=False)(meta)
    with pytest.raises(TypeError, match="'meta' tensor holds no data"):
        OODHead(score_fn)(meta)


def test_bad_inputs(score_fn):
    with pytest.raises(TypeError, match="score_samples"):
        OODHead(object())
    with pytest.raises(TypeError, match="expected a torch.Tensor"):
        OODHead(score_fn)(np.zeros((2, D), np.float32))
    with pytest.raises(TypeError, match="floating-point tensor"):
        OODHead(score_fn)(torch.zeros(2, D, dtype=torch.int64))
    with pytest.raises(TypeError, match="dtype"):
        OODHead(score_fn, dtype=torch.int32)
    with pytest.raises(ValueError, match="scalar"):
        OODHead(score_fn)(torch.tensor(1.0))
    # errors of the core are passed through with their messages
    bad = torch.randn(3, D)
    bad[1, 0] = float("nan")
    with pytest.raises(ValueError, match="row 1"):
        OODHead(score_fn)(bad)


def test_to_numpy_passes_non_tensors_through():
    a = np.zeros((2, 3))
    assert to_numpy(a) is a


# ---- export: what the docs of dnm.torch claim works, and what fails -------------------------

def _model(detector):
    return torch.nn.Sequential(extractor(), OODHead(detector))


def _images(seed):
    return torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_export_saving_the_model(detector, tmp_path):
    import io

    model = _model(detector)
    x = _images(1)
    with torch.inference_mode():
        want = model(x)
    buf = io.BytesIO()
    torch.save(model, buf)  # the whole module, detector included (pickled with it)
    buf.seek(0)
    again = torch.load(buf, weights_only=False)
    with torch.inference_mode():
        assert torch.equal(again(x), want)
    # the weights way: the head has no state; the detector is saved on its own
    assert list(model[1].state_dict()) == []
    torch.save(model.state_dict(), tmp_path / "w.pt")
    detector.save(tmp_path / "det.npz")
    rebuilt = torch.nn.Sequential(extractor(), OODHead(dnm.NegativeLabelDetector.load(tmp_path / "det.npz")))
    rebuilt.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    with torch.no_grad():
        assert torch.equal(rebuilt(x), want)


def test_export_torch_compile(detector):
    model = _model(detector)
    compiled = torch.compile(model, backend="eager")  # the default backend works too (slow here)
    for seed in (1, 2):
        x = _images(seed)
        with torch.no_grad():
            assert torch.equal(compiled(x), model(x))


@pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")
def test_export_jit_script_and_export_fail(detector):
    model = _model(detector)
    # TorchScript compiles Python source to its own language: NumPy and the C core are not in it
    with pytest.raises(RuntimeError, match="cannot statically infer|Python builtin|not supported"):
        torch.jit.script(model)
    with pytest.raises(Exception, match="numpy"):  # the graph would leave torch at the head
        torch.export.export(model, (_images(1),))


@pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")
def test_export_jit_trace_freezes_the_scores(detector):
    # documented as a trap: tracing records the head's output for the example as a constant
    model = _model(detector)
    with pytest.warns(torch.jit.TracerWarning):
        traced = torch.jit.trace(model, (_images(1),), check_trace=False)
    with torch.no_grad():
        assert torch.equal(traced(_images(2)), model(_images(1)))
        assert not torch.equal(traced(_images(2)), model(_images(2)))
