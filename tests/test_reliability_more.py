"""Reliability (issue 8), beyond tests/test_reliability.py: determinism of the
mining selections and detector scores (runs, processes, thread counts), leaks
and reference counts of the mining / metrics / detector entry points, one
detector used from 8 threads, Ctrl-C during a long kNN mining call."""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import dnm
from leakcheck import rss_growth


def _data(seed=0, n=600, d=32):
    rng = np.random.default_rng(seed)
    raw = (rng.normal(size=(n, d)) + 0.3).astype(np.float32) * 2.0
    adj = rng.random(n) < 0.2
    P = rng.normal(size=(20, d)).astype(np.float32)
    X = rng.normal(size=(300, d)).astype(np.float32)
    return raw, adj, P, X


_SCRIPT = r"""
import sys, hashlib, numpy as np, dnm
rng = np.random.default_rng(0)
raw = (rng.normal(size=(600, 32)) + 0.3).astype(np.float32) * 2.0
adj = rng.random(600) < 0.2
P = rng.normal(size=(20, 32)).astype(np.float32)
X = rng.normal(size=(300, 32)).astype(np.float32)
nt = int(sys.argv[1])
h = hashlib.sha256()
h.update(dnm.select_dnm(raw, adj, k=10, num_threads=nt).tobytes())
h.update(dnm.select_neglabel(P, raw, adj, num_threads=nt).tobytes())
h.update(dnm.knn_log_distance(raw, k=10, num_threads=nt).tobytes())
for m in ("dnm", "neglabel", "csp"):
    det = dnm.NegativeLabelDetector(m, k=10, groups=5, seed=3, guard="dcl", num_threads=nt)
    h.update(det.fit(P, raw, adj).score_samples(X).tobytes())
print(h.hexdigest())
"""


def test_determinism_across_processes_and_threads():
    outs = set()
    for nt in ("1", "2", "2"):
        r = subprocess.run([sys.executable, "-c", _SCRIPT, nt], capture_output=True, text=True,
                           timeout=300, check=True)
        outs.add(r.stdout.strip())
    assert len(outs) == 1, outs


def test_determinism_in_process():
    raw, adj, P, X = _data()
    a = dnm.select_dnm(raw, adj, k=10, num_threads=1)
    for nt in (1, 2, 2):
        np.testing.assert_array_equal(dnm.select_dnm(raw, adj, k=10, num_threads=nt), a)
    b = dnm.select_neglabel(P, raw, adj, num_threads=1)
    np.testing.assert_array_equal(dnm.select_neglabel(P, raw, adj, num_threads=2), b)
    det = dnm.NegativeLabelDetector("dnm", k=10, groups=5, seed=9, guard="dcl").fit(P, raw, adj)
    det2 = dnm.NegativeLabelDetector("dnm", k=10, groups=5, seed=9, guard="dcl").fit(P, raw, adj)
    np.testing.assert_array_equal(det.groups_index_, det2.groups_index_)
    s = det.score_samples(X)
    assert s.tobytes() == det2.score_samples(X).tobytes()
    det.set_params(num_threads=1)
    assert det.score_samples(X).tobytes() == s.tobytes()


def _calls(tmp_path):
    raw, adj, P, X = _data(n=120, d=16)
    P = P[:, :16]
    X = X[:50, :16]
    bad_raw = raw.copy()
    bad_raw[5, 5] = np.nan
    ids = np.random.default_rng(1).normal(size=200)
    ood = np.random.default_rng(2).normal(size=150) - 1
    det = dnm.NegativeLabelDetector("neglabel", groups=3).fit(P, raw, adj)
    path = tmp_path / "d.npz"
    det.save(path)
    badfile = tmp_path / "bad.npz"
    badfile.write_bytes(path.read_bytes()[:-40])
    arrays = (raw, adj, P, X, bad_raw, ids, ood)
    ok = [
        lambda: dnm.knn_log_distance(raw, k=5),
        lambda: dnm.select_dnm(raw, adj, k=5),
        lambda: dnm.neglabel_closeness(P, raw),
        lambda: dnm.select_neglabel(P, raw, adj),
        lambda: dnm.metrics.auroc(ids, ood),
        lambda: dnm.metrics.fpr_at_tpr(ids, ood, convention="interp"),
        lambda: dnm.metrics.aupr_in(ids, ood),
        lambda: det.score_samples(X),
        lambda: dnm.NegativeLabelDetector.load(path),
    ]
    bad = [
        lambda: dnm.knn_log_distance(bad_raw, k=5),
        lambda: dnm.knn_log_distance(raw, k=500),
        lambda: dnm.select_dnm(raw, adj[:3], k=5),
        lambda: dnm.neglabel_closeness(P, bad_raw),
        lambda: dnm.metrics.auroc(ids, np.r_[ood, np.nan]),
        lambda: dnm.metrics.fpr_at_tpr(ids, ood, tpr=2.0),
        lambda: det.score_samples(bad_raw[:, :16]),
        lambda: dnm.NegativeLabelDetector.load(badfile),
    ]
    return arrays, ok, bad


def test_no_leaks_and_refcounts_mining_metrics_detector(tmp_path):
    arrays, ok, bad = _calls(tmp_path)
    refs = [sys.getrefcount(a) for a in arrays]

    grown = rss_growth(ok, bad, rounds=1000, warmup=50)
    assert grown < 24 << 20, f"RSS grew by {grown / 2**20:.1f} MiB over 1000 rounds"
    assert [sys.getrefcount(a) for a in arrays] == refs


def test_one_detector_from_8_threads():
    raw, adj, P, X = _data()
    det = dnm.NegativeLabelDetector("dnm", k=10, groups=5, guard="dcl").fit(P, raw, adj)
    chunks = [X[i::8] for i in range(8)]
    serial = [det.score_samples(c) for c in chunks]
    expl = det.explain(X[:4], k=3).negative_indices
    results = [None] * 8
    errors = []
    barrier = threading.Barrier(8)

    def work(i):
        try:
            barrier.wait()
            for _ in range(10):
                s = det.score_samples(chunks[i])
                assert s.tobytes() == serial[i].tobytes()
            results[i] = det.explain(X[:4], k=3).negative_indices
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors
    for r in results:
        np.testing.assert_array_equal(r, expl)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_during_knn_mining():
    rng = np.random.default_rng(0)
    big = (rng.normal(size=(40000, 256)) + 0.2).astype(np.float32) * 3
    small = big[:300]
    ref = dnm.knn_log_distance(small, k=5)
    done = {}

    def fire():
        time.sleep(0.5)
        done["sent"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=fire).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        dnm.knn_log_distance(big, k=10, num_threads=2)
        pytest.fail("finished before the signal (input too small for this machine)")
    assert "sent" in done
    latency = time.monotonic() - done["sent"]
    assert latency < 1.5, f"KeyboardInterrupt {latency:.2f} s after SIGINT"
    assert time.monotonic() - t0 < 10
    # still usable and unchanged
    np.testing.assert_array_equal(dnm.knn_log_distance(small, k=5), ref)
