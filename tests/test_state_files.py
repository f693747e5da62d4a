"""Hostile stream state files (dnm.AdaNeg / dnm.TANL .load): every failure is a StateFileError
naming the file; the reader is the detector files' (dnm._npzfile)."""
import io
import json
import zipfile

import numpy as np
import pytest

import dnm
from dnm import _npzfile, tta


@pytest.fixture
def saved(tmp_path):
    rng = np.random.default_rng(0)
    t = rng.standard_normal((6, 16)).astype(np.float32)
    n = rng.standard_normal((20, 16)).astype(np.float32)
    obj = dnm.AdaNeg(t, n, groups=2, memory_length=3)
    obj.update(rng.standard_normal((8, 16)).astype(np.float32))
    return obj.save(tmp_path / "state.npz")


def _members(path):
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _meta(members):
    a = np.load(io.BytesIO(members["metadata.npy"]))
    return json.loads(a.tobytes().decode())


def _write(path, members, meta=None, rehash=True, compress=False):
    members = dict(members)
    if meta is not None:
        if rehash:
            arrays = {k[:-4]: np.load(io.BytesIO(v)) for k, v in members.items()
                      if k != "metadata.npy"}
            meta["sha256"] = _npzfile.checksum(meta, arrays)
        buf = io.BytesIO()
        np.save(buf, np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
        members["metadata.npy"] = buf.getvalue()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as zf:
        for k, v in members.items():
            zf.writestr(k, v)
    return path


def test_round_trip_is_the_shared_format(saved):
    back = dnm.AdaNeg.load(saved)
    meta = _meta(_members(saved))
    assert meta["format"] == "dnm.AdaNeg" and meta["format_version"] == tta.FORMAT_VERSION
    assert back.n_images_seen_ == 8


def test_deeply_nested_metadata_is_refused_not_a_recursion_error(saved, tmp_path):
    m = _members(saved)
    meta = _meta(m)
    buf = io.BytesIO()
    text = json.dumps(meta["params"])  # a valid prefix, then the deep list
    raw = ('{"format": "dnm.AdaNeg", "params": ' + text + ', "x": ' + "[" * 100000
           + "]" * 100000 + "}").encode()
    np.save(buf, np.frombuffer(raw, dtype=np.uint8))
    m["metadata.npy"] = buf.getvalue()
    p = _write(tmp_path / "deep.npz", m)
    with pytest.raises(tta.StateFileError, match="deep.npz: metadata refused"):
        dnm.AdaNeg.load(p)


def test_huge_claimed_shape_is_refused_before_reading(saved, tmp_path):
    m = _members(saved)
    hdr = io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": "<f8", "fortran_order": False,
                                               "shape": (1 << 40, 16)})
    m["entropies.npy"] = hdr.getvalue() + b"\0" * 64
    p = _write(tmp_path / "huge.npz", m)
    with pytest.raises(tta.StateFileError, match=r"huge.npz: member entropies.npy claims shape"):
        dnm.AdaNeg.load(p)


def test_compressed_extra_and_missing_members(saved, tmp_path):
    m = _members(saved)
    with pytest.raises(tta.StateFileError, match="compressed"):
        dnm.AdaNeg.load(_write(tmp_path / "z.npz", m, compress=True))
    extra = dict(m, **{"evil.npy": m["counts.npy"]})
    with pytest.raises(tta.StateFileError, match="do not match"):
        dnm.AdaNeg.load(_write(tmp_path / "e.npz", extra))
    missing = {k: v for k, v in m.items() if k != "counts.npy"}
    with pytest.raises(tta.StateFileError, match="do not match"):
        dnm.AdaNeg.load(_write(tmp_path / "m.npz", missing))


def test_newer_version_object_dtype_and_bad_checksum(saved, tmp_path):
    m = _members(saved)
    meta = _meta(m)
    meta["format_version"] = tta.FORMAT_VERSION + 1
    with pytest.raises(tta.StateFileError, match="upgrade dnm"):
        dnm.AdaNeg.load(_write(tmp_path / "v.npz", m, meta))
    meta = _meta(m)
    meta["state"]["n_images_seen"] = 9
    with pytest.raises(tta.StateFileError, match="checksum mismatch"):
        dnm.AdaNeg.load(_write(tmp_path / "c.npz", m, meta, rehash=False))
    obj = io.BytesIO()
    np.save(obj, np.array([1, None], dtype=object), allow_pickle=True)
    bad = dict(m, **{"counts.npy": obj.getvalue()})
    with pytest.raises(tta.StateFileError, match="Python objects"):
        dnm.AdaNeg.load(_write(tmp_path / "o.npz", bad))
    from pathlib import Path

    (tmp_path / "t.npz").write_bytes(Path(saved).read_bytes()[:200])
    with pytest.raises(tta.StateFileError, match="t.npz"):
        dnm.AdaNeg.load(tmp_path / "t.npz")
