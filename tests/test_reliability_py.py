"""Reliability of the Python layer under hostile input (issue 18, items 5, 6, 9 and 10):
explain's row checks, hostile detector-file metadata, the command line's outputs and
messages, and smaller input gaps (masked arrays, float32 range, torch shapes, plot args)."""
import numpy as np
import pytest

import dnm


def _fitted(method="neglabel", seed=0, d=16):
    rng = np.random.default_rng(seed)
    P = rng.normal(size=(6, d)).astype(np.float32)
    cand = (rng.normal(size=(80, d)) + 0.2).astype(np.float32) * 2
    adj = rng.random(80) < 0.3
    det = dnm.NegativeLabelDetector(method, groups=4, k=5, guard="dcl")
    det.fit(P, cand, adj, id_names=[f"id{i}" for i in range(6)])
    return det, rng.normal(size=(9, d)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# item 5: explain rejects the rows score_samples rejects, naming the row
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("bad, why", [(np.nan, "NaN or Inf"), (np.inf, "NaN or Inf"),
                                      (-np.inf, "NaN or Inf"), (0.0, "zero norm")])
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_explain_rejects_bad_rows_like_score_samples(dtype, bad, why, chunk_size):
    det, X = _fitted()
    X = X.astype(dtype)
    if bad == 0.0:
        X[5] = 0
    else:
        X[5, 3] = bad
    with pytest.raises(ValueError, match=f"row 5 .*{why}|row 5 has {why}"):
        det.score_samples(X)
    with pytest.raises(ValueError, match=f"^X: row 5 (contains|has) {why}"):
        det.explain(X, k=3, chunk_size=chunk_size)


def test_explain_first_bad_row_and_good_rows_unaffected():
    det, X = _fitted("dnm")
    X[7] = 0
    X[4, 0] = np.nan
    with pytest.raises(ValueError, match="row 4 contains NaN"):
        det.explain(X, chunk_size=3)
    good = det.explain(X[:4], k=3)
    assert np.isfinite(good.id_shares).all() and np.isfinite(good.negative_shares).all()


def test_explain_float64_rows_beyond_the_norm_range():
    """A float64 row whose norm overflows is still a direction: same explanation as scaled."""
    det, X = _fitted("mcm")
    X64 = X.astype(np.float64)
    big = det.explain(X64 * 1e307, k=3)
    ref = det.explain(X64, k=3)
    np.testing.assert_array_equal(big.id_indices, ref.id_indices)
    np.testing.assert_allclose(big.id_shares, ref.id_shares, rtol=1e-9)


def test_explain_refuses_bad_fitted_labels():
    det, X = _fitted()
    bad = det.negatives_.copy()
    row = int(det.groups_index_[1, 0])
    bad[row] = 0
    det.negatives_ = bad
    with pytest.raises(ValueError, match=f"negatives: row {row} has zero norm"):
        det.explain(X)
