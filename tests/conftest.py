"""Shared test fixtures.

Real CLIP data lives in ../shared/data beside the checkout (never copied into the
package).  Tests that need it skip with a reason when it is absent - except in
CI, where DNM_REQUIRE_SHARED_DATA=1 turns a missing folder into a failure.
"""
import os
from pathlib import Path

import numpy as np
import pytest

try:  # CI runs the same hypothesis examples every time (no flaky red runs); locally: random
    from hypothesis import settings as _hyp_settings

    _hyp_settings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("DNM_NO_SKIP"):
        _hyp_settings.load_profile("ci")
except ImportError:  # pragma: no cover
    pass

SHARED_DATA = Path(os.environ.get("DNM_SHARED_DATA",
                                  Path(__file__).resolve().parents[2] / "shared" / "data"))


def _need(path):
    if not path.exists():
        if os.environ.get("DNM_REQUIRE_SHARED_DATA"):
            pytest.fail(f"required shared data missing: {path}")
        pytest.skip(f"shared data not available at {path} (only present beside the CI checkout)")
    return path


@pytest.fixture(scope="session")
def clip_dir():
    return _need(SHARED_DATA / "clip")


@pytest.fixture(scope="session")
def reference_corpus_dir():
    return _need(SHARED_DATA / "reference-corpus")


@pytest.fixture(scope="session")
def clip_data(clip_dir):
    """Raw ViT-B/32 text embeddings in one space, as float32."""
    load = lambda name: np.load(clip_dir / name).astype(np.float32)  # noqa: E731
    return {
        "imagenet": load("imagenet1k_vitb32_a-cname.npy"),
        "imagenet80": load("imagenet1k_vitb32_openai80.npy"),
        "lvis": load("lvis_vitb32_a-cname.npy"),
        "coco": load("coco_vitb32_a-cname.npy"),
        "objects365": load("objects365_vitb32_a-cname.npy"),
    }


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def pytest_report_header(config):
    import dnm

    return f"dnm {dnm.__version__} from {dnm.__file__}; core {dnm._core.__file__}"


if os.environ.get("DNM_EXPECT_CORE"):  # make sanitize: be sure the instrumented build is used
    import dnm as _dnm

    assert _dnm._core.__file__.startswith(os.environ["DNM_EXPECT_CORE"]), _dnm._core.__file__


def pytest_sessionfinish(session, exitstatus):
    """In CI (DNM_NO_SKIP=1) a skipped test is a failure: nothing is silently accepted."""
    if not os.environ.get("DNM_NO_SKIP") or exitstatus != 0:
        return
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = tr.stats.get("skipped", []) if tr is not None else []
    if skipped:
        if tr is not None:
            tr.write_line(f"DNM_NO_SKIP: {len(skipped)} test(s) skipped - failing the run",
                          red=True)
        session.exitstatus = 1


@pytest.fixture(scope="module")
def client():
    """A distributed LocalCluster of 2 worker processes x 1 thread (one per test module)."""
    import logging

    distributed = pytest.importorskip("distributed")
    for name in ("distributed", "distributed.scheduler", "distributed.nanny",
                 "distributed.worker", "distributed.core", "distributed.http.proxy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()
