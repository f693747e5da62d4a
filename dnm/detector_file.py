"""The detector file format: how :class:`dnm.NegativeLabelDetector` is saved and loaded.

File format (``save`` / ``load``), format_version 2
---------------------------------------------------
Version 2 added the streaming methods (``adaneg``, ``tanl``): their constructor parameters
and fitted scalars (``n_negatives``, ``batch_size``, ``cache_threshold``, ``gap``,
``memory_length``, ``weight``, ``sample_adaptive``, ``beta``, ``replacement``, ``variant``,
``top``, ``step``, ``alpha``, ``queue_length``, ``score_queue_length``) and the ``noise``
member.  A detector whose new parameters are all None (every detector of the older methods,
unless one was set by hand) is still written as format_version 1, byte for byte the layout
older dnm versions read; version-1 files load with the new parameters None.

One ``.npz`` archive as written by ``numpy.savez`` (a zip of ``.npy`` members, uncompressed).
It never holds pickled objects and is read without executing code: the ``.npy`` headers are
parsed with ``numpy.lib.format`` (a literal parser) and the data with ``numpy.frombuffer``.
Members:

``metadata.npy``
    uint8, 1-D: UTF-8 JSON object with ``format`` (``"dnm.NegativeLabelDetector"``),
    ``format_version`` (int), ``dnm_version``, ``params`` (the constructor arguments; an
    array-valued ``groups`` is stored as ``{"array": "groups_index"}``), ``fitted`` (the
    resolved scalar attributes: ``method_``, ``temperature_``, ``tau_``, ``groups_``, ``k_``,
    ``noun_ratio_``, ``adj_ratio_``, ``ratio_``, ``percentile_``, ``max_cut_``, ``guard_``,
    ``seed_``, ``n_features_in_``, ``threshold_``, ``threshold_tpr_``), ``negative_phrases`` and
    ``id_names`` (lists of str or null), ``arrays`` (member name -> ``{"dtype", "shape"}``), and
    ``sha256``.
``id_labels.npy``       (C, D) float16/32/64: the ID label embeddings as given to ``fit``.
``negatives.npy``       (M, D) float32: the selected negative rows (raw, as given).
``negative_indices.npy`` (M,) int64: their rows in the candidates given to ``fit``.
``groups_index.npy``    (G, Q) int64, only for dnm / neglabel / csp / adaneg: the grouping of
                        negatives.
``noise.npy``           (15, D) float16/32/64, only for tanl: the noise-image embeddings.
                        (For tanl, ``negatives`` is the whole corpus in TANL's order.)

``sha256`` is the hex SHA-256 of: the canonical JSON (sorted keys, separators ``,`` ``:``,
ASCII) of the metadata object without its ``sha256`` key, then for every array member in
sorted name order its name, a NUL byte, and its C-order little-endian data bytes.

``read`` checks, in order and before trusting anything: the file is a zip archive with exactly
these members; the metadata header is a 1-D uint8 array of at most 64 MiB; the JSON is read
strictly (:func:`dnm._io.strict_json`: before anything is built, at most 8 levels of nesting,
64 arrays/objects and one value per ``id_labels`` / ``negatives`` row plus 512, so the parser's
memory is a small multiple of the file size; numbers finite float64 or int64 only - no
``NaN``, ``Infinity``, ``1e999``), parses and names this format; ``format_version`` is at most the supported version (a newer file asks for
a newer dnm); each member's ``.npy`` header (read with ``read_array_header_1_0/2_0``) agrees
with the metadata's dtype and shape, the dtype is an allowed one, and the claimed size fits in
the member (so a header claiming 10^12 rows is refused without allocating); the data are read
in bounded chunks and must have exactly the claimed size (members must be stored
uncompressed, so no size can exceed the file's); the checksum matches; the shapes are mutually
consistent; every field passes the checks ``fit`` applies (the fitted scalars here, the
constructor parameters by ``NegativeLabelDetector.load`` with the detector's own checks: a
checksum recomputed by an attacker proves nothing); the rows of ``id_labels`` and
``negatives`` are finite and not all zeros.  Any failure raises :class:`DetectorFileError`
(a ``ValueError``) naming the file and the field.
"""
from __future__ import annotations

import numbers
import os

import numpy as np

from . import _npzfile
from . import methods as _methods
from ._validate import check_fraction
from .scores import GUARDS

__all__ = ["DetectorFileError", "FORMAT_VERSION", "FITTED_SCALARS", "write", "read"]

FORMAT_VERSION = 2
_FORMAT_NAME = "dnm.NegativeLabelDetector"
# the metadata's JSON is 4 levels deep, with about 10 arrays/objects and 60 values besides
# the phrase and name lists (one string per array row); these limits leave room to grow
_METADATA_MAX_DEPTH = 8
_METADATA_MAX_CONTAINERS = 64
_METADATA_MAX_OTHER_ITEMS = 512
#: The fitted scalar attributes a file stores.
FITTED_SCALARS = ("method_", "temperature_", "tau_", "groups_", "k_", "noun_ratio_",
                  "adj_ratio_", "ratio_", "percentile_", "max_cut_", "guard_", "seed_",
                  "n_features_in_", "threshold_", "threshold_tpr_",
                  # format_version 2: the streaming methods' parameters
                  "n_negatives_", "batch_size_", "cache_threshold_", "gap_", "memory_length_",
                  "weight_", "sample_adaptive_", "beta_", "replacement_", "variant_", "top_",
                  "step_", "alpha_", "queue_length_", "score_queue_length_")
#: The constructor parameters (and, with a "_", fitted scalars) format_version 2 added.
V2_PARAMS = ("n_negatives", "batch_size", "cache_threshold", "gap", "memory_length", "weight",
             "sample_adaptive", "beta", "replacement", "variant", "top", "step", "alpha",
             "queue_length", "score_queue_length")
_ARRAY_DTYPES = {"id_labels": ("<f2", "<f4", "<f8"), "negatives": ("<f4",),
                 "negative_indices": ("<i8",), "groups_index": ("<i8",),
                 "noise": ("<f2", "<f4", "<f8")}


class DetectorFileError(ValueError):
    """A saved detector file is invalid: not an npz, truncated, tampered with, or too new."""


def write(path, params, fitted, names, arrays, dnm_version):
    """Write a detector file: ``params`` (constructor arguments), ``fitted`` (the
    :data:`FITTED_SCALARS`), ``names`` (``negative_phrases`` and ``id_names``) and the
    array members; atomically (a temporary file beside ``path``, renamed into place)."""
    arrays = {k: np.ascontiguousarray(v, dtype=np.dtype(v.dtype).newbyteorder("<"))
              for k, v in arrays.items()}
    p = {}
    for name, v in params.items():
        if name == "groups" and np.ndim(v) == 2:
            p[name] = {"array": "groups_index"}
        else:
            p[name] = _jsonable(v, f"parameter {name}")
    f = {name: _jsonable(fitted[name], name) for name in FITTED_SCALARS}
    if isinstance(fitted["groups_"], np.ndarray) or np.ndim(fitted["groups_"]) == 2:
        f["groups_"] = {"array": "groups_index"}
    version = FORMAT_VERSION
    if "noise" not in arrays and all(p.get(n) is None and f.get(n + "_") is None
                                     for n in V2_PARAMS):
        version = 1  # what older dnm versions read
        for n in V2_PARAMS:
            p.pop(n, None)
            f.pop(n + "_", None)
    meta = {"format": _FORMAT_NAME, "format_version": version, "dnm_version": dnm_version,
            "params": p, "fitted": f, **names}
    return _npzfile.write(path, meta, arrays, prefix=".dnm-detector-")


def read(path, param_names):
    """Read and check a detector file (every check of the module docstring).

    Returns ``(params, fitted, arrays, names)``: the constructor arguments (an array-valued
    ``groups`` restored), the fitted scalars, the arrays and the ``negative_phrases`` /
    ``id_names`` lists.  Raises DetectorFileError on any invalid, truncated, tampered or
    too-new file.
    """
    path = os.fspath(path)
    err = DetectorFileError
    with _npzfile.open_archive(path, err, "dnm detector file") as zf:
        meta = _read_metadata(zf, path)
        arrays = {name: _npzfile.read_member(zf, name, spec, path, err)
                  for name, spec in meta["arrays"].items()}
    _npzfile.verify(meta, arrays, path, err)
    return _check_parts(meta, arrays, path, param_names)


def _check_parts(meta, arrays, path, param_names):
    """The mutual consistency of a file's parts (its members passed their own checks)."""
    def bad(msg):
        return DetectorFileError(f"{path}: inconsistent detector file: {msg}")

    params = meta.get("params")
    if not isinstance(params, dict):
        raise bad(f"params must be a JSON object, got {type(params).__name__}")
    params = dict(params)
    names = set(param_names)
    if meta.get("format_version") == 1:  # written before the streaming methods
        for n in V2_PARAMS:
            if n in names:
                params.setdefault(n, None)
    if set(params) != names:
        raise bad(f"parameters {sorted(set(params) ^ names)} missing or unknown")
    if isinstance(params.get("groups"), dict):
        params["groups"] = arrays["groups_index"].copy() if "groups_index" in arrays else None
        if params["groups"] is None:
            raise bad("groups refers to a missing groups_index array")
    fitted = meta.get("fitted")
    if isinstance(fitted, dict) and meta.get("format_version") == 1:
        fitted = dict(fitted)
        for n in V2_PARAMS:
            fitted.setdefault(n + "_", None)
    if not isinstance(fitted, dict) or set(fitted) != set(FITTED_SCALARS):
        raise bad("fitted attributes missing or unknown")
    fitted = dict(fitted)
    P, Nn = arrays["id_labels"], arrays["negatives"]
    idx, gi = arrays["negative_indices"], arrays.get("groups_index")
    Z = arrays.get("noise")
    D = fitted["n_features_in_"]
    if isinstance(D, bool) or not isinstance(D, int):
        raise bad(f"n_features_in_ {D!r} is not an integer")
    if P.ndim != 2 or Nn.ndim != 2 or idx.ndim != 1 or P.shape[1] != D or Nn.shape[1] != D \
            or idx.shape[0] != Nn.shape[0] or P.shape[0] == 0 or D == 0:
        raise bad(f"shapes id_labels {P.shape}, negatives {Nn.shape}, negative_indices "
                  f"{idx.shape}, n_features_in_ {D}")
    if idx.size and idx.min() < 0:
        raise bad("negative_indices has negative entries")
    method = fitted["method_"]
    rec = _methods.METHODS.get(method) if isinstance(method, str) else None
    if rec is None:
        raise bad(f"unknown method {method!r}")
    if rec.needs_negatives and "groups" in rec.params:
        if gi is None or gi.ndim != 2 or gi.size == 0 or gi.min() < 0 or gi.max() >= Nn.shape[0]:
            raise bad("groups_index missing or out of range")
    elif gi is not None:
        raise bad(f"groups_index present for method {method!r}")
    if rec.needs_negatives and Nn.shape[0] == 0:
        raise bad(f"no negatives for method {method!r}")
    if rec.needs_noise:
        from .tta import N_NOISE

        if Z is None or Z.ndim != 2 or Z.shape != (N_NOISE, D):
            raise bad(f"noise missing or not ({N_NOISE}, {D})")
    elif Z is not None:
        raise bad(f"noise present for method {method!r}")
    for key, n in (("negative_phrases", Nn.shape[0]), ("id_names", P.shape[0])):
        v = meta.get(key)
        if v is not None and (not isinstance(v, list) or len(v) != n
                              or not all(isinstance(s, str) for s in v)):
            raise bad(f"{key} must be null or a list of {n} strings")
    try:
        _check_fitted(fitted, rec, gi)
        if not isinstance(params.get("progress"), bool):
            raise TypeError(f"params.progress: expected true or false, got {params.get('progress')!r}")
        for name, a in (("id_labels", P), ("negatives", Nn), ("noise", Z)):
            if a is not None:
                _check_rows(a, name)
    except (ValueError, TypeError) as exc:
        raise DetectorFileError(f"{path}: invalid detector file: {exc}") from None
    grp = fitted["groups_"]
    if isinstance(grp, dict):
        fitted["groups_"] = gi.copy()
    names = {"negative_phrases": meta.get("negative_phrases"), "id_names": meta.get("id_names")}
    return params, fitted, arrays, names


def _check_fitted(fitted, rec, gi):
    """The fitted scalars pass the checks ``fit`` applies to the values they come from
    (ValueError / TypeError naming the field).  Those the method does not use are set to
    None, as ``fit`` sets them (their values are never read)."""
    for name in _methods.PARAMS:
        v, field = fitted[name + "_"], f"fitted.{name}_"
        if name not in rec.params:
            fitted[name + "_"] = None
        elif name == "groups" and isinstance(v, dict):
            if v != {"array": "groups_index"} or gi is None:
                raise ValueError(f"{field}: refers to a missing groups_index array")
        else:
            _methods.PARAMS[name].check(v, field)
    if isinstance(fitted["groups_"], int) and fitted["groups_"] != gi.shape[0]:
        raise ValueError(f"fitted.groups_: {fitted['groups_']} groups but groups_index has "
                         f"{gi.shape[0]} rows")
    if fitted["guard_"] not in GUARDS:
        raise ValueError(f"fitted.guard_: expected one of {list(GUARDS)}, got "
                         f"{fitted['guard_']!r}")
    seed = fitted["seed_"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"fitted.seed_: expected an integer, got {seed!r}")
    thr, tpr = fitted["threshold_"], fitted["threshold_tpr_"]
    if (thr is None) != (tpr is None):
        raise ValueError("fitted.threshold_ and fitted.threshold_tpr_: both or neither are set")
    if thr is not None:
        if isinstance(thr, bool) or not isinstance(thr, (int, float)):
            raise TypeError(f"fitted.threshold_: expected a number, got {thr!r}")
        check_fraction(tpr, "fitted.threshold_tpr_")


def _check_rows(a, name, chunk_elems=1 << 20):
    """Every row of a label array is finite and not all zeros (``score_samples`` refuses
    the others), checked in chunks of about ``chunk_elems`` values."""
    step = max(1, chunk_elems // max(1, a.shape[1]))
    for lo in range(0, a.shape[0], step):
        c = a[lo:lo + step]
        fin = np.isfinite(c).all(axis=1)
        if not fin.all():
            raise ValueError(f"{name}: row {lo + int(np.argmin(fin))} contains NaN or Inf")
        nz = (c != 0).any(axis=1)
        if not nz.all():
            raise ValueError(f"{name}: row {lo + int(np.argmin(nz))} is all zeros")


def _jsonable(v, what):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, (numbers.Integral, np.integer)):
        return int(v)
    if isinstance(v, (numbers.Real, np.floating)):
        f = float(v)
        if not np.isfinite(f):
            raise ValueError(f"save: {what} is not finite ({v!r})")
        return f
    if isinstance(v, np.ndarray):
        return {"array": "groups_index"}
    raise TypeError(f"save: {what} of type {type(v).__name__} cannot be stored")


def _read_metadata(zf, path):
    err = DetectorFileError
    # the JSON holds one string per array row (phrases, names) and a few dozen other values:
    # bound what the parser may build by the rows the members' headers claim (each claim is
    # checked against the member's size, so the bound is a multiple of the file size)
    names = {i.filename for i in zf.infolist()}
    rows = 0
    for name in ("id_labels", "negatives"):
        if name + ".npy" in names:
            shp = _npzfile.open_member(zf, name, path, err)[1]
            rows += int(shp[0]) if shp else 0
    meta = _npzfile.read_metadata(zf, path, err, max_depth=_METADATA_MAX_DEPTH,
                                  max_containers=_METADATA_MAX_CONTAINERS,
                                  max_items=rows + _METADATA_MAX_OTHER_ITEMS)
    if meta.get("format") != _FORMAT_NAME:
        raise err(f"{path}: not a dnm detector file (metadata format is "
                  f"{meta.get('format')!r})")
    _npzfile.check_version(meta, path, err, FORMAT_VERSION, "detector file")
    _npzfile.check_table(meta, zf, path, err, _ARRAY_DTYPES,
                         required=("id_labels", "negatives", "negative_indices"))
    return meta
