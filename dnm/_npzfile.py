"""Checked, pickle-free ``.npz`` files: what detector files and stream state files share.

A file is a plain ``numpy.savez`` archive (uncompressed members): a ``metadata`` member (a
1-D uint8 array holding UTF-8 JSON: a ``format`` name, a ``format_version``, an ``arrays``
table of dtype and shape per member, a ``sha256`` over the JSON and the arrays' little-endian
bytes) and the array members.  Reading never unpickles, never allocates more than a member
really holds (sizes are checked against the archive before any read; data is read in bounded
chunks), parses the JSON with bounded depth and size (:func:`dnm._io.strict_json`), and turns
every failure of a hostile, truncated or tampered file into the caller's error class
(``err``, a ValueError subclass) naming the file.  See docs/design.md, "Detector file format".
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
import zlib

import numpy as np

from ._io import atomic_write, sniff, strict_json

READ_CHUNK = 1 << 20
METADATA_MAX_BYTES = 64 << 20


def little_endian(a):
    a = np.asarray(a)
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))


def checksum(meta, arrays):
    """sha256 of the metadata without its ``sha256`` key and of the arrays, by name."""
    body = {k: v for k, v in meta.items() if k != "sha256"}
    h = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=True, allow_nan=False).encode("ascii"))
    for name in sorted(arrays):
        h.update(name.encode("ascii") + b"\0")
        h.update(little_endian(arrays[name]).tobytes())
    return h.hexdigest()


def write(path, meta, arrays, *, prefix):
    """Write ``meta`` (its ``arrays`` table and ``sha256`` filled in here) and ``arrays``
    atomically (a temporary file beside ``path``, renamed into place); returns ``path``."""
    arrays = {k: little_endian(v) for k, v in arrays.items()}
    meta = {**meta,
            "arrays": {k: {"dtype": v.dtype.str, "shape": list(v.shape)} for k, v in arrays.items()}}
    meta["sha256"] = checksum(meta, arrays)
    blob = np.frombuffer(json.dumps(meta, allow_nan=False).encode("utf-8"), dtype=np.uint8)
    path = os.fspath(path)
    atomic_write(path, lambda fh: np.savez(fh, metadata=blob, **arrays), "wb",
                 prefix=prefix, suffix=".npz")
    return path


@contextlib.contextmanager
def open_archive(path, err, what):
    """The archive at ``path`` as a ZipFile; a non-archive, a corrupt or truncated one is
    ``err`` ("not a valid <what>"), errors raised as ``err`` inside the block pass."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    kind, desc = sniff(path)
    if kind != "zip":
        raise err(f"{path}: not a {what} (those are .npz archives): "
                  + (desc or "it is a .npy array"))
    try:
        with zipfile.ZipFile(path) as zf:
            yield zf
    except err:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
            NotImplementedError) as exc:
        raise err(f"{path}: not a valid {what} (corrupt or truncated): "
                  f"{type(exc).__name__}: {exc}") from None


def _header(f, member, path, err):
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise err(f"{path}: member {member}: unsupported .npy version {version}")


def open_member(zf, name, path, err):
    """(info, shape, fortran, dtype, nbytes) of member ``name`` after the checks that need no
    data: present, neither encrypted nor compressed, no Python objects, and the shape its
    header claims fits in the bytes the archive holds for it."""
    try:
        info = zf.getinfo(name + ".npy")
    except KeyError:
        raise err(f"{path}: member {name}.npy is missing") from None
    if info.flag_bits & 0x1:  # zipfile would raise RuntimeError("... is encrypted")
        raise err(f"{path}: member {name}.npy is marked encrypted; these files are plain "
                  "numpy.savez archives; refused")
    if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
        # the writers store members uncompressed; a compressed one could claim (and inflate
        # to) far more bytes than the file holds, so every size check would be moot
        raise err(f"{path}: member {name}.npy is compressed; these files are uncompressed "
                  "(numpy.savez); refused")
    with zf.open(info) as f:
        shape, fortran, dtype = _header(f, info.filename, path, err)
        hdr = f.tell() if f.seekable() else None
    if dtype.hasobject:
        raise err(f"{path}: member {name}.npy holds Python objects; refused")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize if shape else dtype.itemsize
    if nbytes + (hdr or 0) > info.file_size:
        raise err(f"{path}: member {name}.npy claims shape {shape} ({nbytes} bytes) but holds "
                  f"only {info.file_size} bytes; refused")
    return info, shape, fortran, dtype, nbytes


def read_data(zf, info, dtype, shape, fortran, nbytes, path, err):
    """Read exactly nbytes after the header, in bounded chunks (no up-front allocation)."""
    with zf.open(info) as f:
        _header(f, info.filename, path, err)
        chunks, got = [], 0
        while got < nbytes:
            b = f.read(min(READ_CHUNK, nbytes - got))
            if not b:
                break
            chunks.append(b)
            got += len(b)
        if got != nbytes or f.read(1):
            raise err(f"{path}: member {info.filename}: data size does not match its header "
                      f"({got} of {nbytes} bytes read)")
    data = b"".join(chunks)
    del chunks  # at most two copies of the data alive at once
    a = np.frombuffer(data, dtype=dtype)
    return a.reshape(shape, order="F" if fortran else "C").copy(order="C")


def read_member(zf, name, spec, path, err):
    """Member ``name``, which must have the dtype and shape of its ``spec`` (from the table)."""
    info, shape, fortran, dtype, nbytes = open_member(zf, name, path, err)
    if dtype.str != spec["dtype"] or list(shape) != spec["shape"]:
        raise err(f"{path}: member {name}.npy has {dtype.str} {tuple(shape)} but the metadata "
                  f"says {spec['dtype']} {tuple(spec['shape'])}")
    return read_data(zf, info, dtype, shape, fortran, nbytes, path, err)


def read_metadata(zf, path, err, *, max_depth, max_containers, max_items):
    """The metadata member's JSON object (bounded: bytes, depth, containers, items)."""
    info, shape, fortran, dtype, nbytes = open_member(zf, "metadata", path, err)
    if dtype != np.uint8 or len(shape) != 1 or nbytes > METADATA_MAX_BYTES:
        raise err(f"{path}: metadata must be a 1-D uint8 array of at most "
                  f"{METADATA_MAX_BYTES} bytes, got {dtype} {shape}")
    raw = read_data(zf, info, dtype, shape, fortran, nbytes, path, err).tobytes()
    try:
        meta = strict_json(raw, max_depth=max_depth, max_containers=max_containers,
                           max_items=max_items)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise err(f"{path}: metadata is not valid JSON ({exc})") from None
    except ValueError as exc:
        raise err(f"{path}: metadata refused: {exc}") from None
    if not isinstance(meta, dict):
        raise err(f"{path}: metadata must be a JSON object")
    return meta


def check_version(meta, path, err, newest, what):
    """``format_version`` an int in [1, newest] (a newer file: upgrade dnm)."""
    ver = meta.get("format_version")
    if isinstance(ver, bool) or not isinstance(ver, int) or ver < 1:
        raise err(f"{path}: invalid format_version {ver!r}")
    if ver > newest:
        raise err(f"{path}: written with {what} format_version {ver} (dnm "
                  f"{meta.get('dnm_version', '?')}); this dnm reads format_version <= "
                  f"{newest}: upgrade dnm to load it")
    return ver


def check_table(meta, zf, path, err, dtypes, required=None):
    """The metadata's ``arrays`` table against the archive: the member names (``required``
    ones present, none outside ``dtypes``), each entry a dtype allowed by ``dtypes[name]`` and
    a shape of non-negative ints; returns the table."""
    specs = meta.get("arrays")
    if not isinstance(specs, dict):
        raise err(f"{path}: metadata has no array table")
    required = set(dtypes) if required is None else set(required)
    if not required <= set(specs) or not set(specs) <= set(dtypes):
        raise err(f"{path}: array members {sorted(specs)} do not match the format")
    names = {i.filename for i in zf.infolist()}
    expected = {n + ".npy" for n in specs} | {"metadata.npy"}
    if names != expected:
        raise err(f"{path}: archive members {sorted(names)} do not match the metadata "
                  f"({sorted(expected)})")
    for name, spec in specs.items():
        ok = (isinstance(spec, dict) and spec.get("dtype") in dtypes[name]
              and isinstance(spec.get("shape"), list)
              and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                      for s in spec["shape"]))
        if not ok:
            raise err(f"{path}: invalid dtype/shape for {name}: {spec!r}")
    return specs


def verify(meta, arrays, path, err):
    if checksum(meta, arrays) != meta.get("sha256"):
        raise err(f"{path}: checksum mismatch - the file was modified or corrupted after it "
                  "was saved")
