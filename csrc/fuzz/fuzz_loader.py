"""atheris fuzzer for the detector-file loader (issue 8, safe loading).

``dnm.NegativeLabelDetector.load`` is Python (zipfile + numpy.lib.format +
json), so it is fuzzed with atheris rather than libFuzzer-in-C.  Each input is
mutated from a valid saved detector: the fuzz bytes choose (a) raw byte edits of
the archive, or (b) structured edits that keep the zip and checksum valid -
rewritten .npy headers claiming huge shapes or other dtypes, rewritten metadata
JSON (wrong types everywhere), with the sha256 recomputed so the checks after
the checksum are reached too.  The loader must either return a detector that
scores without error, or raise DetectorFileError; anything else is a finding.

Run by csrc/fuzz/run.sh; replay one input with
``python csrc/fuzz/fuzz_loader.py path/to/input``.
"""
import io
import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    import json
    import zipfile

    import numpy as np

    import dnm
    from dnm.detector import DetectorFileError, _checksum

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))
from loader_mutations import base_files, mutate  # noqa: E402

_TMP = tempfile.mkdtemp(prefix="dnm-fuzz-loader-")
_PATH = os.path.join(_TMP, "det.npz")
_BASES = base_files()
_X = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)


def TestOneInput(data):
    blob = mutate(_BASES, data)
    with open(_PATH, "wb") as f:
        f.write(blob)
    try:
        det = dnm.NegativeLabelDetector.load(_PATH)
    except DetectorFileError:
        return
    # a file that loads must be usable (or fail with a clear ValueError/TypeError)
    try:
        det.score_samples(_X[:, : det.n_features_in_] if det.n_features_in_ <= 8 else
                          np.ones((2, det.n_features_in_), np.float32))
    except (ValueError, TypeError):
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
