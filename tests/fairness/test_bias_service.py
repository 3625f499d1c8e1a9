"""The bias service end to end on a tiny registry: group rates against fairlearn, the typed result as
stored and read back, and explanation disparity from declared regions (scaled) or region-free."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from fairlearn.metrics import MetricFrame
from sklearn.metrics import accuracy_score

from audit.drift.deltas import bias_deltas
from audit.results.fairness import BiasAudit

LABELS = [str(i) for i in range(10)]
N = 20


@pytest.fixture()
def registry(audit_home, register_small_cnn):
    """SmallCNN 'tiny' v1 taking 32x32 inputs; reference sets stored at 16x16: 'boxed' declares a region on
    its watermarked samples (every other one), 'plain' declares none."""
    from audit.services.core.datasets import add_image_dataset

    register_small_cnn(labels=LABELS)
    g = torch.Generator().manual_seed(1)
    images = torch.rand(N, 1, 16, 16, generator=g)
    groups = [{"site": "A" if i % 4 < 2 else "B", "watermark": bool(i % 2)} for i in range(N)]
    regions = [[10, 11, 15, 16] if i % 2 else None for i in range(N)]
    labels = [i % 10 for i in range(N)]
    add_image_dataset("boxed", images, labels, groups, label_names=LABELS, regions=regions)
    add_image_dataset("plain", images, labels, groups, label_names=LABELS)
    return images, groups, regions, labels


def test_regions_round_trip_and_are_validated(registry):
    from audit.services.core.datasets import DatasetError, add_image_dataset, list_datasets, load_image_samples

    _, _, regions, _ = registry
    boxed = load_image_samples("boxed")
    assert boxed.regions == regions and boxed.has_regions
    assert load_image_samples("plain").regions == [None] * N
    listed = {d["name"]: d for d in list_datasets()}
    assert listed["boxed"]["regions"] is True and listed["plain"]["regions"] is False
    # same images, labels and groups: only the declared regions tell the two sets apart
    assert listed["boxed"]["sha256"] != listed["plain"]["sha256"]
    with pytest.raises(DatasetError, match="sample 1: region \\[0, 0, 17, 4\\] is not a non-empty box"):
        add_image_dataset("bad", torch.rand(2, 1, 16, 16), [0, 1], [{}, {}], label_names=LABELS,
                          regions=[None, [0, 0, 17, 4]])
    with pytest.raises(DatasetError, match="one entry"):
        add_image_dataset("bad", torch.rand(2, 1, 16, 16), [0, 1], [{}, {}], label_names=LABELS, regions=[None])
    assert "bad" not in {d["name"] for d in list_datasets()}


def test_bias_audit_matches_fairlearn_and_reads_back_the_same(registry):
    from audit.services.core.runs import get_analysis
    from audit.services.core.runs import analysis_key
    from audit.services.analyses.fairness.service import BIAS_SPEC, bias_options, run_bias_audit
    from audit.services.core.handles import handle_for
    from audit.services.core.predict import predict_dataset

    _, groups, _, labels = registry
    audit = run_bias_audit("tiny", "1", dataset="plain", attributes=["site"], n_boot=50)
    assert isinstance(audit, BiasAudit) and not audit.stored.cached
    y_pred = predict_dataset("tiny", "1", "plain").predicted
    site = pd.Series([g["site"] for g in groups], name="site")
    ref = MetricFrame(metrics={"accuracy": accuracy_score}, y_true=labels, y_pred=y_pred, sensitive_features=site)
    for name in ("A", "B"):
        assert audit.group(name).rate("accuracy") == pytest.approx(ref.by_group.loc[name, "accuracy"])
        assert audit.group(name).count == 10
    assert audit.difference["accuracy"] == pytest.approx(ref.difference()["accuracy"])
    assert audit.average == "macro"  # ten classes, no positive label
    # one writer, one reader: what is stored reads back to the same summary
    stored = get_analysis(audit.result_id)
    assert BiasAudit.from_stored(stored).to_summary() == audit.to_summary()
    # the key the service stored under is the spec's key of these options
    handle = handle_for("tiny", "1")
    from audit.services.core.datasets import dataset_key

    sha = dataset_key("plain", handle)  # the set's content and how its label names map to the model's classes
    opts = bias_options(dataset="plain", attributes=["site"], n_boot=50)
    assert stored.key == analysis_key(BIAS_SPEC, model_sha256=handle.sha256, dataset_sha256=sha, options=opts)
    again = run_bias_audit("tiny", "1", dataset="plain", attributes=["site"], n_boot=50)
    assert again.result_id == audit.result_id and again.stored.cached
    # drift reads difference / attributes / dataset of the stored summary (a contract test on real output)
    deltas = bias_deltas([stored.summary], [stored.summary], max_disparity_increase=0.05)
    assert {d.metric for d in deltas} == set(audit.difference)
    assert all(d.delta == 0 for d in deltas if d.delta is not None)
    assert {tuple(d.attributes) for d in deltas} == {("site",)} and {d.dataset for d in deltas} == {"plain"}


def test_disparity_uses_declared_regions_scaled_to_the_model_input(registry):
    from audit.services.analyses.explanations.service import stored_maps_for
    from audit.services.analyses.fairness.service import run_bias_audit

    _, groups, regions, _ = registry
    audit = run_bias_audit("tiny", "1", dataset="boxed", attributes=["site"], n_boot=0, explanation_method="saliency")
    d = audit.explanation_disparity
    assert d.kind == "region" and d.region_source == "declared"
    assert "regions moved from the stored 16x16 images to the model's 32x32 input" in d.note
    assert d.n_without_region == N // 2
    maps = np.abs(stored_maps_for("tiny", "1", "boxed", "saliency")).reshape(N, 32, 32)
    # oracle: the 16x16 box [10, 11, 15, 16] is rows 22..31 and columns 20..29 of the 32x32 map
    share = maps[:, 22:32, 20:30].sum(axis=(1, 2)) / maps.sum(axis=(1, 2))
    for site in ("A", "B"):
        rows = [i for i in range(N) if groups[i]["site"] == site and regions[i] is not None]
        got = next(g for g in d.by_group if g.group == site)
        assert got.count == len(rows) == 5
        assert got.mean == pytest.approx(share[rows].mean(), rel=1e-6)
    assert d.baseline == pytest.approx(100 / 1024)
    assert d.maps is not None and d.maps.pairs[0].groups == ("A", "B")
    assert BiasAudit.from_summary(audit.to_summary()).explanation_disparity == d


def test_disparity_without_regions_compares_mean_maps_and_says_so(registry):
    from audit.services.analyses.explanations.service import stored_maps_for
    from audit.services.analyses.fairness.service import run_bias_audit

    _, groups, _, _ = registry
    audit = run_bias_audit("tiny", "1", dataset="plain", attributes=["site"], n_boot=0, explanation_method="saliency")
    d = audit.explanation_disparity
    assert d.kind == "map_similarity" and d.region_source == "none"
    assert "declares no regions" in d.note and d.baseline is None
    assert [(g.group, g.count, g.mean) for g in d.by_group] == [("A", 10, None), ("B", 10, None)]
    maps = np.abs(stored_maps_for("tiny", "1", "plain", "saliency")).reshape(N, -1).astype(np.float64)
    dist = maps / maps.sum(axis=1, keepdims=True)
    site = np.array([g["site"] for g in groups])
    tv = 0.5 * np.abs(dist[site == "A"].mean(0) - dist[site == "B"].mean(0)).sum()
    assert d.difference == pytest.approx(tv, rel=1e-6)
    assert d.maps.pairs[0].total_variation == pytest.approx(tv, rel=1e-6)
    assert d.maps.n_perm == 200 and d.maps.null_difference is not None and d.maps.most_different == ("A", "B")


def test_text_probe_is_typed_stored_and_matches_the_engine(tiny_text):
    from audit.fairness import text_swap_probe
    from audit.results.fairness import TextSwapProbe
    from audit.services.governance.principals import PermissionDenied, Principal
    from audit.services.core.runs import get_analysis
    from audit.services.core.datasets import load_text_samples
    from audit.services.analyses.fairness.service import run_text_probe
    from audit.services.core.predict import text_predict_proba

    probe = run_text_probe("tiny-text", "1", dataset="notes")
    assert isinstance(probe, TextSwapProbe) and not probe.stored.cached
    ref = text_swap_probe(text_predict_proba("tiny-text", "1"), load_text_samples("notes").texts)
    assert probe.n == ref.n_probed == 40  # every note carries an identity word (she, he, ms, mr, her/his)
    assert probe.flip_rate == pytest.approx(ref.flip_rate)
    assert probe.mean_prob_change == pytest.approx(ref.mean_abs_prob_change)
    assert [e.index for e in probe.examples] == [d.index for d in ref.details if d.flipped][:10]
    assert TextSwapProbe.from_stored(get_analysis(probe.result_id)).to_summary() == probe.to_summary()
    assert run_text_probe("tiny-text", "1", dataset="notes").result_id == probe.result_id
    with pytest.raises(PermissionDenied):
        run_text_probe("tiny-text", "1", dataset="notes", actor=Principal("v", "viewer"))


def test_migration_0002_adds_a_nullable_region_to_existing_samples(tmp_path):
    import sqlalchemy as sa
    from alembic import command

    from storage.db import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0001")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO datasets (id, name, kind, description, content_sha256, labels, created_at) "
                             "VALUES (1, 'old', 'image', '', 'x', '[]', '2026-01-01')")
        conn.exec_driver_sql("INSERT INTO samples (dataset_id, sample_key, content_sha256, label, groups) "
                             "VALUES (1, 'old-0000', 'h', 0, '{}')")
    assert "region" not in {c["name"] for c in sa.inspect(engine).get_columns("samples")}
    command.upgrade(alembic_config(url), "head")
    engine.dispose()
    engine = sa.create_engine(url)
    column = {c["name"]: c for c in sa.inspect(engine).get_columns("samples")}["region"]
    assert column["nullable"]
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT sample_key, region FROM samples").all() == [("old-0000", None)]
    engine.dispose()
    command.downgrade(alembic_config(url), "0001")
    engine = sa.create_engine(url)
    assert "region" not in {c["name"] for c in sa.inspect(engine).get_columns("samples")}
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT sample_key FROM samples").all() == [("old-0000",)]
    engine.dispose()
