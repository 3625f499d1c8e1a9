"""Explain service: provenance stored, the store is the cache, re-verify, resumable reference runs."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from audit.models.zoo import SmallCNN
from audit.services.governance.principals import PermissionDenied, Principal
from audit.services.core.datasets import add_image_dataset
from audit.services.analyses.explanations.service import (ExplainError, explain_image, explain_reference_set, reverify,
                                    stored_explanations)
from audit.services.core.registry import ModelSource, register_version
from storage.db import transaction
from storage.orm import Explanation, Run

LABELS = [str(i) for i in range(10)]
METHODS = ["saliency", "gradcam", "integrated_gradients"]
OPTS = {"ig_steps": 8}


@pytest.fixture()
def tiny_registry(audit_home, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "w.safetensors"
    save_file(SmallCNN(width=8).state_dict(), str(path))
    register_version(family="tiny", version="1", task="image-classification",
                     source=ModelSource("state_dict", path, "small_cnn", {"width": 8}), labels=LABELS,
                     input_spec={"channels": 1, "height": 32, "width": 32, "mean": [0.5], "std": [0.5]})
    g = torch.Generator().manual_seed(1)
    images = torch.rand(10, 1, 32, 32, generator=g)
    add_image_dataset("ref", images, list(range(10)), [{"site": "A" if i % 2 else "B"} for i in range(10)],
                      label_names=LABELS)
    return audit_home


def _count(model=Explanation) -> int:
    with transaction() as s:
        return s.query(model).count()


def test_explanation_is_stored_with_provenance_and_reused(tiny_registry):
    first = explain_image("tiny", "1", methods=METHODS, dataset="ref", sample_key="ref-0003", options=OPTS)
    assert set(first.maps) == set(METHODS) and not any(m.cached for m in first.maps.values())
    assert first.maps["saliency"].attribution.shape == (1, 32, 32)
    assert first.maps["gradcam"].attribution.shape == (32, 32)
    assert "completeness_delta" in first.maps["integrated_gradients"].metrics
    rows = stored_explanations("tiny", "1")
    assert len(rows) == 3 and all(len(r["attribution_sha256"]) == 64 for r in rows)
    with transaction() as s:
        row = s.query(Explanation).first()
        assert row.library_versions["torch"] and row.device == "cpu" and row.sample_sha256 == first.sample_sha256
    again = explain_image("tiny", "1", methods=METHODS, dataset="ref", sample_key="ref-0003", options=OPTS)
    assert all(m.cached for m in again.maps.values())
    assert _count() == 3
    for m in METHODS:
        assert (again.maps[m].attribution == first.maps[m].attribution).all()
    # Other parameters are another key: computed, not confused with the stored one.
    other = explain_image("tiny", "1", methods=["integrated_gradients"], dataset="ref", sample_key="ref-0003",
                          options={"ig_steps": 12})
    assert not other.maps["integrated_gradients"].cached and _count() == 4


def test_reverify_matches_and_detects_a_changed_artifact(tiny_registry):
    exp = explain_image("tiny", "1", methods=["gradcam"], dataset="ref", sample_key="ref-0001")
    res = reverify(exp.maps["gradcam"].explanation_id, dataset="ref")
    assert res.matches and res.rank_correlation > 0.999


def test_reference_run_is_resumable_without_duplicates(tiny_registry):
    calls = {"n": 0}

    def stop_after_first_batch(frac, msg):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        explain_reference_set("tiny", "1", "ref", methods=METHODS, batch_size=4, options=OPTS,
                              progress=stop_after_first_batch)
    assert _count() == 4 * len(METHODS)  # the whole first batch, nothing partial
    with transaction() as s:
        assert s.query(Run).one().status == "interrupted"
    summary = explain_reference_set("tiny", "1", "ref", methods=METHODS, batch_size=4, options=OPTS)
    assert summary.reused == 4 * len(METHODS) and summary.computed == 6 * len(METHODS)
    assert _count() == 10 * len(METHODS)


def test_viewer_cannot_explain(tiny_registry):
    with pytest.raises(PermissionDenied):
        explain_image("tiny", "1", methods=METHODS, dataset="ref", sample_key="ref-0001",
                      actor=Principal("v", "viewer"))


@pytest.mark.parametrize("bad, match", [(b"", "empty"), (b"not an image at all", "not an image")])
def test_bad_uploads_are_refused(tiny_registry, bad, match):
    with pytest.raises(ValueError, match=match):
        explain_image("tiny", "1", methods=METHODS, image_bytes=bad)
    assert _count() == 0


def test_bad_target_and_no_methods(tiny_registry):
    with pytest.raises(ExplainError, match="not a class"):
        explain_image("tiny", "1", methods=METHODS, dataset="ref", sample_key="ref-0001", target=11)
    with pytest.raises(ExplainError, match="at least one"):
        explain_image("tiny", "1", methods=[], dataset="ref", sample_key="ref-0001")


def _other_value(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 2 + 1
    if isinstance(value, str):
        return value + "-other"
    if isinstance(value, torch.Tensor):
        return value + 1
    if value is None:
        return 1
    if isinstance(value, (list, tuple)):
        return list(value) + [0]
    raise AssertionError(f"no other value for {value!r}")


def test_every_declared_option_of_every_method_changes_the_key():
    """The explanation cache key reads each method's own declaration: none of its result options is lost."""
    from audit.attribution import METHODS, result_option_defaults
    from audit.services.analyses.explanations.service import params_key

    checked = 0
    for method in METHODS:
        declared = result_option_defaults(method)
        _, k0 = params_key(method, "features", {})
        for name, default in declared.items():
            _, k1 = params_key(method, "features", {name: _other_value(default)})
            assert k1 != k0, f"{method}: option {name} does not change the cache key"
            checked += 1
        # an option that does not change results (batching) leaves the key alone
        assert params_key(method, "features", {"batch_size": 3})[1] == k0
    assert checked >= 25


@pytest.mark.parametrize("method, option, values", [
    ("saliency", "saliency_abs", (True, False)),
    ("integrated_gradients", "ig_max_steps", (64, 128)),
    ("occlusion", "occlusion_baseline", (0.0, 0.5)),
])
def test_options_the_old_whitelist_dropped_get_their_own_stored_map(tiny_registry, method, option, values):
    a = explain_image("tiny", "1", methods=[method], dataset="ref", sample_key="ref-0002",
                      options={**OPTS, option: values[0]})
    b = explain_image("tiny", "1", methods=[method], dataset="ref", sample_key="ref-0002",
                      options={**OPTS, option: values[1]})
    assert not b.maps[method].cached and b.maps[method].explanation_id != a.maps[method].explanation_id
    assert b.maps[method].parameters[option] == values[1]


def test_reverify_fails_when_the_stored_map_was_changed(tiny_registry):
    import numpy as np

    from storage.artifacts import ArtifactStore

    exp = explain_image("tiny", "1", methods=["gradcam"], dataset="ref", sample_key="ref-0001")
    sm = exp.maps["gradcam"]
    with transaction() as s:
        sha = s.get(Explanation, sm.explanation_id).attribution_sha256
    store = ArtifactStore()
    path = store.path(sha)
    path.chmod(0o644)
    forged = np.zeros_like(sm.attribution)
    import io
    buf = io.BytesIO()
    np.save(buf, forged)
    path.write_bytes(buf.getvalue())
    res = reverify(sm.explanation_id, dataset="ref")
    assert not res.matches and res.message.startswith("does not match") and "hash" in res.message


def test_reverify_fails_when_the_weights_differ(tiny_registry):
    from audit.services.core.handles import cached_handle, handle_for

    exp = explain_image("tiny", "1", methods=["gradcam", "integrated_gradients"], dataset="ref",
                        sample_key="ref-0001", options=OPTS)
    handle = handle_for("tiny", "1")
    try:
        with torch.no_grad():
            for p in handle.module.parameters():
                p.mul_(-1.5)
        for m in ("gradcam", "integrated_gradients"):
            res = reverify(exp.maps[m].explanation_id, dataset="ref")
            assert not res.matches and res.message.startswith("does not match"), m
    finally:
        cached_handle.cache_clear()
    assert reverify(exp.maps["gradcam"].explanation_id, dataset="ref").matches


def test_reverify_with_a_tensor_baseline(tiny_registry):
    baseline = torch.full((1, 1, 32, 32), 0.25)
    exp = explain_image("tiny", "1", methods=["integrated_gradients"], dataset="ref", sample_key="ref-0004",
                        options={**OPTS, "baseline": baseline})
    plain = explain_image("tiny", "1", methods=["integrated_gradients"], dataset="ref", sample_key="ref-0004",
                          options=OPTS)
    assert plain.maps["integrated_gradients"].explanation_id != exp.maps["integrated_gradients"].explanation_id
    res = reverify(exp.maps["integrated_gradients"].explanation_id, dataset="ref")
    assert res.matches, res.message


@pytest.mark.parametrize("method", ["smoothgrad", "rise"])
def test_reverify_matches_a_map_computed_inside_a_reference_batch(tiny_registry, method):
    opts = {"sg_samples": 6, "rise_masks": 64, "seed": 5}
    explain_reference_set("tiny", "1", "ref", methods=[method], batch_size=5, options=opts, limit=5)
    rows = [r for r in stored_explanations("tiny", "1", method)]
    assert len(rows) == 5
    res = reverify(rows[3]["id"], dataset="ref")  # 4th of its batch, recomputed alone
    assert res.matches, res.message


def test_the_engine_path_is_stored_with_each_map_and_read_back(tiny_registry):
    """What a map was computed on (precision, model copy, crops, the bf16 guard) is stored with the row;
    the cache, the stored listing and the Provenance tab's words read that row."""
    from audit.services.analyses.explanations.views import describe_engine

    opts = {"ig_steps": 8, "fast": True, "fast_min_rank_corr": 1.0, "occlusion_window": 8, "occlusion_stride": 8,
            "optimize": True}
    methods = ["saliency", "integrated_gradients", "occlusion"]
    first = explain_image("tiny", "1", methods=methods, dataset="ref", sample_key="ref-0002", options=opts)
    ig = first.maps["integrated_gradients"].engine
    assert ig["precision"] == "float32" and ig["fast_path"]["requested"] and not ig["fast_path"]["used"]
    assert "fell back to float32" in ig["fast_path"]["reason"]
    assert first.maps["occlusion"].engine["crops"] is True
    assert first.maps["saliency"].engine["model"] == "as loaded"
    with transaction() as s:
        stored = {r.method: r.engine for r in s.query(Explanation)}
    assert stored == {m: first.maps[m].engine for m in methods}
    again = explain_image("tiny", "1", methods=methods, dataset="ref", sample_key="ref-0002", options=opts)
    assert all(sm.cached for sm in again.maps.values())
    assert {m: sm.engine for m, sm in again.maps.items()} == stored
    assert {r["method"]: r["engine"] for r in stored_explanations("tiny", "1")} == stored
    assert "fast path requested, not used" in describe_engine(again.maps["integrated_gradients"].engine)
    # a row stored before the engine path was recorded reads as "not recorded", never as float32
    with transaction() as s:
        s.query(Explanation).filter(Explanation.method == "saliency").update({"engine": None})
    old = explain_image("tiny", "1", methods=["saliency"], dataset="ref", sample_key="ref-0002", options=opts)
    assert old.maps["saliency"].engine is None
    assert describe_engine(old.maps["saliency"].engine).startswith("not recorded")
