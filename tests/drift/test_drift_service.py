"""Drift service on a tiny registry: identical weights show no drift, different weights are flagged,
both versions explain the same target, results are stored, logged, reused, trended and browsable."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr
from sqlalchemy import select

from audit.services.governance.principals import PermissionDenied, Principal
from audit.services.analyses.drift.service import DriftError, compute_drift, get_drift, stored_drift
from audit.services.analyses.drift.views import drift_gallery, drift_trend
from storage.artifacts import ArtifactStore
from storage.db import transaction
from storage.orm import AnalysisResult, AuditLogEntry, Explanation, ModelVersion

def _opts():
    return {"methods": ["saliency", "gradcam", "integrated_gradients"], "options": {"ig_steps": 8, "seed": 0}}


def _version_id(v: str) -> int:
    with transaction() as s:
        return s.scalars(select(ModelVersion).where(ModelVersion.version == v)).one().id


def test_identical_weights_show_no_drift(tiny_family):
    res = compute_drift("tiny", "1", "2", limit=8, **_opts())
    assert res["flagged"] is False and res["flags"] == [] and res["samples"] == 8
    for m in ("saliency", "gradcam", "integrated_gradients"):
        d = res["methods"][m]
        assert not d["flagged"]
        assert d["rank_correlation"]["mean"] == pytest.approx(1.0)
        assert d["topk_iou"]["mean"] == pytest.approx(1.0) and d["ssim"]["mean"] == pytest.approx(1.0)
    assert res["predictions"]["agreement"] == 1.0
    v1, v2 = _version_id("1"), _version_id("2")
    with transaction() as s:
        rows = s.scalars(select(AnalysisResult).where(AnalysisResult.kind == "drift")).all()
        assert len(rows) == 1
        assert rows[0].model_version_id == v2 and rows[0].other_version_id == v1
        log = s.scalars(select(AuditLogEntry).where(AuditLogEntry.action == "drift.create")).all()
        assert len(log) == 1 and log[0].subject == "tiny/1->2"
        assert json.loads(log[0].details)["result_id"] == rows[0].id
    again = compute_drift("tiny", "1", "2", limit=8, **_opts())
    assert again["cached"] is True and again["result_id"] == res["result_id"]
    with transaction() as s:
        assert len(s.scalars(select(AnalysisResult).where(AnalysisResult.kind == "drift")).all()) == 1


def test_different_weights_are_flagged_with_same_targets(tiny_family):
    res = compute_drift("tiny", "2", "3", limit=10, **_opts())
    assert res["flagged"] is True and res["cached"] is False
    assert set(res["flagged_methods"]) >= {"saliency"}
    assert any("reference_accuracy fell" in f for f in res["flags"])
    id2, id3 = _version_id("2"), _version_id("3")
    with transaction() as s:
        rows = s.scalars(select(Explanation).where(Explanation.method == "saliency")).all()
        by_version: dict[int, dict[str, int]] = {}
        for r in rows:
            by_version.setdefault(r.model_version_id, {})[r.sample_sha256] = r.target
        row = s.get(AnalysisResult, res["result_id"])
        artifact = ArtifactStore().get_array(row.artifact_sha256)
    v2, v3 = by_version[id2], by_version[id3]
    assert len(v2) == 10 and v2 == v3  # the same class is explained in both versions
    changed = res["most_changed"]["saliency"]
    assert [p["rank_correlation"] for p in changed] == sorted(p["rank_correlation"] for p in changed)
    # The stored per-sample array agrees with the summary.
    assert artifact.shape == (3, 4, 10)
    assert artifact[0, 0].mean() == pytest.approx(res["methods"]["saliency"]["rank_correlation"]["mean"])


def test_rank_correlation_matches_an_independent_recomputation(tiny_family):
    res = compute_drift("tiny", "2", "3", limit=6, methods=["integrated_gradients"], options={"ig_steps": 8, "seed": 0})
    store = ArtifactStore()
    v2, v3 = _version_id("2"), _version_id("3")
    with transaction() as s:
        rows = s.scalars(select(Explanation).where(Explanation.method == "integrated_gradients")).all()
        maps = {(r.model_version_id, r.sample_sha256): store.get_array(r.attribution_sha256) for r in rows}
        per_sample = store.get_array(s.get(AnalysisResult, res["result_id"]).artifact_sha256)[0, 0]
    shas = [sha for (vid, sha) in maps if vid == v2]
    expected = {}
    for sha in shas:
        a = np.abs(maps[(v2, sha)]).sum(0).ravel()
        b = np.abs(maps[(v3, sha)]).sum(0).ravel()
        expected[sha] = spearmanr(a, b).statistic
    assert sorted(per_sample) == pytest.approx(sorted(expected.values()), abs=1e-9)


def test_trend_gallery_and_stored_results(tiny_family):
    trend = drift_trend("tiny", limit=6, **_opts())
    assert trend["versions"] == ["1", "2", "3"]
    assert [(p["base"], p["new"], p["flagged"]) for p in trend["pairs"]] == [("1", "2", False), ("2", "3", True)]
    assert trend["pairs"][0]["methods"]["saliency"]["rank_correlation_mean"] == pytest.approx(1.0)
    stored = drift_trend("tiny", compute_missing=False, actor=Principal("v", "viewer"))
    assert [p["result_id"] for p in stored["pairs"]] == [p["result_id"] for p in trend["pairs"]]
    rid = trend["pairs"][1]["result_id"]
    assert stored_drift("tiny", new="3")[0]["result_id"] == rid and get_drift(rid)["base"] == "2"
    items = drift_gallery(rid, method="saliency", n=3, actor=Principal("v", "viewer"))
    assert len(items) == 3
    rcs = [it.measures["rank_correlation"] for it in items]
    assert rcs == sorted(rcs)
    assert items[0].image.shape == (1, 32, 32) and items[0].base_map.shape == (1, 32, 32)
    assert not np.array_equal(items[0].base_map, items[0].new_map)


def test_bad_requests_fail_with_a_reason(tiny_family):
    with pytest.raises(DriftError, match="two different versions"):
        compute_drift("tiny", "1", "1")
    with pytest.raises(DriftError, match="unknown method"):
        compute_drift("tiny", "1", "2", methods=["magic"])
    with pytest.raises(DriftError, match="does not exist"):
        compute_drift("tiny", "1", "2", dataset="nope")
    with pytest.raises(DriftError, match="unknown drift threshold"):
        compute_drift("tiny", "1", "2", thresholds={"min_rank": 0.5})
    with pytest.raises(ValueError, match="not registered"):
        compute_drift("tiny", "1", "9")
    with pytest.raises(PermissionDenied):
        compute_drift("tiny", "1", "2", actor=Principal("v", "viewer"))


def test_cli_drift_json(tiny_family, capsys):
    from audit.cli import main

    rc = main(["drift", "--family", "tiny", "--base", "1", "--new", "2", "--json", "--limit", "6",
               "--ig-steps", "8", "--methods", "saliency,gradcam"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["flagged"] is False and set(out["methods"]) == {"saliency", "gradcam"}
    rc = main(["drift", "--family", "tiny", "--base", "2", "--new", "3", "--limit", "6", "--ig-steps", "8",
               "--methods", "saliency", "--fail-on-drift"])
    text = capsys.readouterr().out
    assert rc == 1 and "DRIFT FLAGGED" in text
    rc = main(["drift", "--family", "tiny", "--base", "1", "--new", "7"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "not registered" in err[0]


def test_drift_is_recomputed_when_a_concept_test_it_reads_is_stored(tiny_family):
    """The drift key holds the ids of the stored concept tests and bias audits it read: never stale."""
    import torch

    from audit.services.analyses.concepts.service import run_concept_test
    from audit.services.core.datasets import add_image_dataset

    g = torch.Generator().manual_seed(4)
    add_image_dataset("ref40", torch.rand(40, 1, 32, 32, generator=g), [3 if i < 12 else i % 10 for i in range(40)],
                      [{"site": "A"} for _ in range(40)], label_names=[str(i) for i in range(10)])
    first = compute_drift("tiny", "1", "3", limit=6, dataset="ref40", **_opts())
    assert first["concepts"] == [] and not first["cached"]
    assert compute_drift("tiny", "1", "3", limit=6, dataset="ref40", **_opts())["cached"]
    tests = {v: run_concept_test("tiny", v, concepts=["stripes"], target=3, dataset="ref40", n_random=3,
                                 set_size=6, n_inputs=8) for v in ("1", "3")}
    again = compute_drift("tiny", "1", "3", limit=6, dataset="ref40", **_opts())
    assert not again["cached"] and again["result_id"] != first["result_id"]
    assert len(again["concepts"]) == len(tests["3"].layers)
    for d in again["concepts"]:
        cb, cn = tests["1"].cell("stripes", d["layer"]), tests["3"].cell("stripes", d["layer"])
        assert d["base_score"] == cb.score and d["new_score"] == cn.score
        assert d["delta"] is not None
    with transaction() as s:
        row = s.get(AnalysisResult, again["result_id"])
        assert sorted(row.parameters["inputs"]) == sorted(t.stored.id for t in tests.values())
    # the explanations were reused from the store, only the assessment was redone
    assert compute_drift("tiny", "1", "3", limit=6, dataset="ref40", **_opts())["cached"]
