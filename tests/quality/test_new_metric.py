"""A new quality metric is one file: a module outside the package declares a metric, and importing it is all it
takes for the report's quality pass to compute it, the report's quality section to print it with its label and
direction, the references to cite its paper, and the Explain and Text pages' services to list it."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap

import pytest
import torch

from audit.models.zoo import SmallCNN
from audit.quality import METRICS, Deletion, default_metrics, deletion_curve, registry
from audit.report import Table
from audit.report.checks import ExplanationQuality, explanation_quality
from audit.report.naming import method_label, references
from audit.report.sections import ModelFacts, quality_section

NAME = "plugin_left_half_mass"
PAPER = "Tester (2026). A Metric Written in One File. Proceedings of the Test Suite."
NEW_METRIC = f'''
"""A test-only metric: the share of a map's absolute relevance in the left half of the image."""
import torch

from audit.quality import QualityMetric, Scores


class LeftHalfMass(QualityMetric):
    name = "{NAME}"
    label = "Left-half mass"
    paper = "{PAPER}"
    direction = "higher"
    category = "localisation"
    value_range = (0.0, 1.0)
    description = "share of the map's absolute relevance in the left half of the image"
    settings = {{"power": 1.0}}
    by_default = True

    def compute(self, model, inputs, targets, maps, **data):
        a = maps.abs().double()
        a = (a.sum(1) if a.ndim == 4 else a) ** self.config["power"]
        left = a[..., : a.shape[-1] // 2].flatten(1).sum(1)
        return Scores(left / a.flatten(1).sum(1), type(self))
'''


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    (tmp_path / f"{NAME}.py").write_text(textwrap.dedent(NEW_METRIC))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        yield importlib.import_module(NAME).LeftHalfMass
    finally:
        registry.unregister(NAME)
        sys.modules.pop(NAME, None)
    assert NAME not in METRICS


def test_a_new_file_in_the_package_registers_when_the_package_is_imported(tmp_path):
    """The same file dropped into audit/quality/ (here: a folder added to the package's path) needs no import line."""
    package = sys.modules["audit.quality"]
    (tmp_path / f"{NAME}.py").write_text(textwrap.dedent(NEW_METRIC))
    package.__path__.append(str(tmp_path))
    try:
        assert NAME not in METRICS
        registry.discover()
        assert METRICS[NAME].label == "Left-half mass" and METRICS[NAME].__module__ == f"audit.quality.{NAME}"
    finally:
        package.__path__.remove(str(tmp_path))
        registry.unregister(NAME)
        sys.modules.pop(f"audit.quality.{NAME}", None)


def _left_share(a: torch.Tensor) -> float:
    """Written out independently of the plugin: mean over samples of |a| left of the middle column / total."""
    a = a.abs().double().sum(1) if a.ndim == 4 else a.abs().double()
    return float((a[:, :, :16].sum(dim=(1, 2)) / a.sum(dim=(1, 2))).mean())


def test_a_new_metric_is_computed_reported_cited_and_listed(plugin):
    from audit.services.analyses.explanations.views import quality_metrics

    assert METRICS[NAME] is plugin and [m.name for m in default_metrics("image")][-1] == NAME
    torch.manual_seed(0)
    model = SmallCNN(width=8).eval()
    x = torch.rand(3, 1, 32, 32)
    saliency = torch.rand(3, 1, 32, 32)
    edge = torch.zeros(3, 32, 32)
    edge[:, :, :8] = 1.0  # all of its relevance on the left
    q = explanation_quality(model, x, [1, 2, 3], {"saliency": saliency.numpy(), "edge": edge.numpy()}, layer=None,
                            steps=4, sanity_methods=[], sanity_samples=0)
    # The report's quality pass computed it on every map, the random reference included ...
    assert q.score(NAME, "saliency") == pytest.approx(_left_share(saliency), abs=1e-9)
    assert q.score(NAME, "edge") == pytest.approx(1.0)
    assert 0.3 < q.score(NAME, "random") < 0.7
    # ... beside the built-in metrics, whose numbers it leaves alone.
    want = deletion_curve(model, x, torch.tensor([1, 2, 3]), saliency, steps=4)
    assert q.deletion_auc["saliency"] == float(want.auc.mean())
    assert NAME in q.cited and Deletion.name in q.cited
    # The section prints it by label with its direction, from what the service stores (JSON).
    back = ExplanationQuality.from_summary(json.loads(json.dumps(q.to_summary())))
    assert back == q
    sec = quality_section(ModelFacts("tiny", "1", "", {"id": 1, "sha256": "ab" * 32, "task": "image-classification",
                                                        "labels": [str(i) for i in range(10)], "status": "draft"}),
                          quality=back, curve_steps=4)
    table = next(b for b in sec.blocks if isinstance(b, Table))
    column = table.columns.index("Left-half mass (higher is better)")
    rows = {r[0]: r for r in table.rows}
    assert rows["Saliency"][column] == f"{_left_share(saliency):.4f}" and rows["edge"][column] == "1.0000"
    assert any("share of the map's absolute relevance in the left half" in getattr(b, "text", "") for b in sec.blocks)
    # Named and cited as it declares.
    assert method_label(NAME) == "Left-half mass"
    assert references(["saliency", NAME]) == [("Saliency", references(["saliency"])[0][1]), ("Left-half mass", PAPER)]
    # Listed for the Explain page through the service, not for the Text page.
    listed = quality_metrics("image")[NAME]
    assert (listed["label"], listed["better"], listed["by_default"], listed["paper"]) == (
        "Left-half mass", "higher is better", True, PAPER)
    assert NAME not in quality_metrics("text")


def test_the_report_keys_its_stored_quality_on_the_metrics_it_scored(audit_home, register_small_cnn, tmp_path,
                                                                    monkeypatch):
    """With the plugin the report's stored quality result has its scores; without it the same report finds no
    stored result for its (other) metric set, instead of reading one that was scored differently."""
    from audit.services.core.datasets import add_image_dataset
    from audit.services.analyses.reports.service import build_document

    register_small_cnn()
    g = torch.Generator().manual_seed(1)
    add_image_dataset("ref", torch.rand(6, 1, 32, 32, generator=g), [0, 1, 2, 3, 4, 5], [{}] * 6,
                      label_names=[str(i) for i in range(10)])
    (tmp_path / f"{NAME}.py").write_text(textwrap.dedent(NEW_METRIC))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module(NAME)
        doc = build_document("tiny", "1", dataset="ref", figure_samples=2)
        section = next(s for s in doc.sections if s.key == "quality")
        table = next(b for b in section.blocks if isinstance(b, Table))
        assert "Left-half mass (higher is better)" in table.columns
        cited = next(s for s in doc.sections if s.key == "appendix")
        assert any(PAPER in " ".join(map(str, r)) for b in cited.blocks if isinstance(b, Table) for r in b.rows)
        again = build_document("tiny", "1", dataset="ref", figure_samples=2, compute_missing=False)
        assert not next(s for s in again.sections if s.key == "quality").missing
    finally:
        registry.unregister(NAME)
        sys.modules.pop(NAME, None)
    without = build_document("tiny", "1", dataset="ref", figure_samples=2, compute_missing=False)
    quality = next(s for s in without.sections if s.key == "quality")
    assert any("not stored" in m for m in quality.missing), quality.missing


def test_the_explain_page_shows_a_new_default_metric_beside_the_curves(plugin, audit_home, register_small_cnn):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from audit.services.governance.principals import Principal
    from audit.services.core.datasets import add_image_dataset

    register_small_cnn()
    add_image_dataset("ref", torch.rand(2, 1, 32, 32), [1, 2], [{}] * 2, label_names=[str(i) for i in range(10)])
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "pages/explain.py"), default_timeout=240)
    at.session_state["principal"] = Principal("tester", "auditor")
    at.run()
    at.multiselect[0].set_value(["saliency"])
    at.button[0].click().run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "Left-half mass (higher is better)" in d.value.columns)
    exp = at.session_state["explanation"]
    want = _left_share(torch.from_numpy(exp.maps["saliency"].attribution).unsqueeze(0))
    assert table.iloc[0]["Left-half mass (higher is better)"] == pytest.approx(want, abs=1e-9)
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Deletion AUC (lower is better)" in t for t in titles)
    assert any("Insertion AUC (higher is better)" in t for t in titles)
