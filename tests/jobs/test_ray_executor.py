"""The Ray executor on a local cluster computes the same maps as the local executor (bitwise on CPU for
deterministic methods; SmoothGrad within the re-verify tolerance), and re-verify passes on them."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from audit.services.jobs import queue as J
from audit.services.jobs.kinds import JobError
from audit.services.jobs.worker import Worker

DETERMINISTIC = ["saliency", "grad_x_input", "gradcam", "integrated_gradients"]
METHODS = [*DETERMINISTIC, "smoothgrad"]
OPTIONS = {"ig_steps": 16, "sg_samples": 8}


def _maps(family: str) -> dict[tuple[str, str], np.ndarray]:
    from sqlalchemy import select

    from storage.artifacts import ArtifactStore
    from storage.db import transaction
    from storage.orm import Explanation
    from storage.repositories import ModelRepository

    store = ArtifactStore()
    with transaction() as s:
        mv = ModelRepository(s).version(family, "1")
        rows = s.scalars(select(Explanation).where(Explanation.model_version_id == mv.id)).all()
        return {(r.sample_sha256, r.method): store.get_array(r.attribution_sha256) for r in rows}


def test_ray_maps_equal_local_maps(queue_home, register_small_cnn):
    pytest.importorskip("ray")
    from audit.services.analyses.explanations.service import reverify, stored_explanations

    register_small_cnn("twin", "1")  # the same seeded weights under another family: same SHA-256
    params = {"version": "1", "dataset": "ref", "methods": METHODS, "batch_size": 5, "options": OPTIONS}
    local = J.submit_job("explain", {"family": "tiny", **params})
    Worker(lease_s=30).run(once=True)
    sharded = J.submit_job("explain", {"family": "twin", **params})
    assert Worker(executor="ray", ray_cpus=2, lease_s=30).run(once=True) == 1  # starts and stops a local cluster
    a, b = J.get_job(local.id), J.get_job(sharded.id)
    assert (a.status, a.executor, b.status, b.executor) == ("done", "local", "done", "ray"), (a.error, b.error)
    assert b.result["computed"] == 24 * len(METHODS)
    ma, mb = _maps("tiny"), _maps("twin")
    assert set(ma) == set(mb) and len(ma) == 24 * len(METHODS)
    for (sha, method), arr in ma.items():
        other = mb[(sha, method)]
        if method in DETERMINISTIC:
            assert np.array_equal(arr, other), f"{method} differs on {sha[:8]}"
        else:
            assert np.allclose(arr, other, rtol=0, atol=1e-3 * float(np.abs(arr).max()) + 1e-7), method
    for row in stored_explanations("twin", "1")[:: len(METHODS) * 6]:
        check = reverify(row["id"], dataset="ref")
        assert check.matches, check.message


def test_ray_missing_says_how_to_install_it(queue_home, monkeypatch):
    from audit.services.jobs.ray_executor import RayExecutor

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(JobError, match=r"pip install 'ray"):
        RayExecutor()
    with pytest.raises(JobError, match="--executor local"):
        Worker(executor="ray").run(once=True)
