"""Mutations of saved detector files, shared by the atheris loader fuzzer
(csrc/fuzz/fuzz_loader.py), the hypothesis loader tests and the replay of the
loader regression corpus (tests/fuzz_corpus/loader/).

``mutate(bases, data)`` turns arbitrary bytes into a (usually nearly valid)
detector file, deterministically: the same bytes always give the same file, so a
fuzz input stored in the corpus is a complete regression case.
"""
import io
import json
import zipfile

import numpy as np

HUGE_DIMS = (0, 1, 2, 3, 7, 8, 255, 4096, 2**31 - 1, 2**31, 2**32 + 1, 10**12, 2**62, 2**63 - 1)
JSON_VALUES = (None, True, False, 0, 1, -1, 2, 10**12, 2**64, 0.5, -0.0, 1e308, "", "x", "dnm",
               "mcm", "floor", [], [1], [None], {}, {"array": "groups_index"}, {"a": 1},
               ["x"] * 3)
DTYPES = ("<f2", "<f4", "<f8", ">f4", "<i8", ">i8", "<i4", "|u1", "|b1", "<c16", "|O", "<U3",
          "|V8", "<M8[s]", "[('a', '<f4')]")


class _Bytes:
    """A FuzzedDataProvider-like reader over the fuzz input (zeros past the end)."""

    def __init__(self, data):
        self.data, self.pos = bytes(data), 0

    def int(self, n):
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return int.from_bytes(b.ljust(n, b"\0"), "little")

    def pick(self, seq):
        return seq[self.int(1) % len(seq)]

    def rest(self):
        return self.data[self.pos:]


def base_files():
    """Small valid detector files (bytes) for every kind of content."""
    import tempfile

    import dnm

    rng = np.random.default_rng(7)
    D = 8
    P = rng.normal(size=(4, D)).astype(np.float32)
    raw = (rng.normal(size=(40, D)) * 3 + 0.5).astype(np.float32)
    adj = np.arange(40) % 4 == 0
    dets = [
        dnm.NegativeLabelDetector("dnm", k=3, groups=2, noun_ratio=0.5, adj_ratio=0.5,
                                  guard="dcl").fit(P, raw, adj, phrases=[f"w{i}" for i in range(40)],
                                                   id_names=list("abcd")),
        dnm.NegativeLabelDetector("neglabel", groups=np.array([[0, 1], [2, 3]]), ratio=0.2)
        .fit(P.astype(np.float64), raw, adj),
        dnm.NegativeLabelDetector("mcm").fit(P.astype(np.float16)),
    ]
    dets[0].set_threshold(id_scores=np.arange(10.0))
    out = []
    with tempfile.TemporaryDirectory() as d:
        for i, det in enumerate(dets):
            path = f"{d}/{i}.npz"
            det.save(path)
            with open(path, "rb") as f:
                out.append(f.read())
    return out


def _members(blob):
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _zip(members, compress=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compress) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _npy(array_or_header, data=b""):
    """An .npy member: either a real array, or (header dict, raw data bytes)."""
    buf = io.BytesIO()
    if isinstance(array_or_header, np.ndarray):
        np.lib.format.write_array(buf, array_or_header, allow_pickle=False)
        return buf.getvalue()
    hdr = array_or_header
    try:
        np.lib.format.write_array_header_1_0(buf, hdr)
    except ValueError:  # header too long for 1.0
        np.lib.format.write_array_header_2_0(buf, hdr)
    return buf.getvalue() + data


def _meta(members):
    raw = np.lib.format.read_array(io.BytesIO(members["metadata.npy"]), allow_pickle=False)
    return json.loads(raw.tobytes().decode())


def _arrays(members):
    return {n[:-4]: np.lib.format.read_array(io.BytesIO(b), allow_pickle=False)
            for n, b in members.items() if n != "metadata.npy"}


def _set_meta(members, meta, rehash=True):
    from dnm._npzfile import checksum as _checksum

    if rehash:
        try:
            meta["sha256"] = _checksum(meta, _arrays(members))
        except Exception:  # unhashable edits: leave the old checksum
            pass
    blob = json.dumps(meta, allow_nan=True).encode()
    members["metadata.npy"] = _npy(np.frombuffer(blob, dtype=np.uint8))


def _json_paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k in sorted(obj):
            yield from _json_paths(obj[k], prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:4]):
            yield from _json_paths(v, prefix + (i,))


def _set_path(obj, path, value):
    if not path:
        return value
    cur = obj
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value
    return obj


def mutate(bases, data):
    """Deterministically turn fuzz bytes into a detector file (bytes)."""
    r = _Bytes(data)
    blob = bases[r.int(1) % len(bases)]
    mode = r.int(1) % 6
    if mode == 0:  # raw bit flips / byte writes anywhere in the archive
        b = bytearray(blob)
        for _ in range(1 + r.int(1) % 8):
            pos = r.int(4) % len(b)
            b[pos] ^= 1 << (r.int(1) % 8) if r.int(1) % 2 else r.int(1)
        return bytes(b)
    if mode == 1:  # truncation, optionally followed by fuzz bytes
        cut = r.int(4) % (len(blob) + 1)
        return blob[:cut] + (r.rest()[:64] if r.int(1) % 2 else b"")
    members = _members(blob)
    names = sorted(members)
    if mode == 2:  # rewrite one .npy header: shape (possibly huge), dtype, order
        name = r.pick(names)
        ndim = r.int(1) % 4
        shape = tuple(r.pick(HUGE_DIMS) for _ in range(ndim))
        hdr = {"descr": r.pick(DTYPES) if r.int(1) % 2 else
               np.lib.format.read_array_header_1_0(io.BytesIO(members[name][6:]))
               if False else r.pick(DTYPES[:3]),
               "fortran_order": bool(r.int(1) % 2), "shape": shape}
        if hdr["descr"].startswith("["):
            hdr["descr"] = [("a", "<f4")]
        payload = members[name]
        start = payload.index(b"\n") + 1  # keep the old data after the old header
        members[name] = _npy(hdr, payload[start:])
        if r.int(1) % 2:  # make the metadata agree, so that later checks are reached
            meta = _meta(members) if name != "metadata.npy" else None
            if meta is not None:
                meta.setdefault("arrays", {})[name[:-4]] = {"dtype": str(hdr["descr"]),
                                                           "shape": list(shape)}
                try:
                    _set_meta(members, meta, rehash=False)
                except Exception:
                    pass
        return _zip(members)
    if mode == 3:  # rewrite one JSON value of the metadata, checksum recomputed
        meta = _meta(members)
        paths = list(_json_paths(meta))
        path = paths[r.int(2) % len(paths)]
        meta = _set_path(meta, path, r.pick(JSON_VALUES))
        if not isinstance(meta, dict):
            members["metadata.npy"] = _npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))
        else:
            _set_meta(members, meta, rehash=bool(r.int(1) % 4))
        return _zip(members)
    if mode == 4:  # replace one array member by another array (values / shapes), rehash
        name = r.pick([n for n in names if n != "metadata.npy"])
        arrays = _arrays(members)
        a = arrays[name[:-4]]
        choice = r.int(1) % 6
        if choice == 0:
            a = a[: r.int(1) % (a.shape[0] + 1)]
        elif choice == 1 and a.dtype.kind == "i":
            a = a.copy()
            if a.size:
                a.flat[r.int(2) % a.size] = r.pick((-1, 2**40, -(2**63), 2**63 - 1, 1000))
        elif choice == 2 and a.dtype.kind == "f":
            a = a.copy()
            if a.size:
                with np.errstate(over="ignore"):  # 1e38 overflows float16 to inf: fine here
                    a.flat[r.int(2) % a.size] = np.array(
                        r.pick((np.nan, np.inf, -np.inf, 0.0, 1e38))).astype(a.dtype)
        elif choice == 3:
            a = np.zeros((0,) + a.shape[1:], a.dtype)
        elif choice == 4 and a.ndim == 2:
            a = np.ascontiguousarray(a[:, : r.int(1) % (a.shape[1] + 1)])
        else:
            a = np.asfortranarray(a)
        members[name] = _npy(a)
        meta = _meta(members)
        meta["arrays"][name[:-4]] = {"dtype": a.dtype.str, "shape": list(a.shape)}
        _set_meta(members, meta, rehash=True)
        return _zip(members)
    # mode 5: structural zip edits: extra / missing member, deflate, duplicate
    choice = r.int(1) % 4
    if choice == 0:
        members.pop(r.pick(names))
    elif choice == 1:
        members[r.pick(("extra.npy", "metadata.npy/../x", "../evil.npy"))] = r.rest()[:256]
    elif choice == 2:
        return _zip(members, zipfile.ZIP_DEFLATED)
    else:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for name, d in members.items():
                    zf.writestr(name, d)
                zf.writestr(r.pick(names), b"\x93NUMPY")
        return buf.getvalue()
    return _zip(members)
