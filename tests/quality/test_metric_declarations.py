"""Every quality metric declares itself completely; bad declarations, clashing names, unknown settings and a
result of the wrong length are refused with a message that says what to do."""

from __future__ import annotations

import pytest
import torch

from audit.models.zoo import SmallCNN
from audit.quality import (METRICS, CurveMetric, Deletion, MaxSensitivity, ModelRandomisation, PointingGame,
                           QualityMetric, RelevanceMass, Scores, SeedStability, default_metrics, find_metric,
                           localisation, method_explainer, metric_class, registered, registry)

BUILT_IN = ("deletion_auc", "insertion_auc", "infidelity", "comprehensiveness", "sufficiency", "completeness_error",
            "relevance_mass_accuracy", "pointing_game", "max_sensitivity", "seed_stability", "randomisation_rank_corr")


def test_importing_the_package_registers_every_built_in_metric_in_listing_order():
    assert tuple(registered()) == BUILT_IN
    assert set(registered("text")) == {"comprehensiveness", "sufficiency", "completeness_error"}
    assert [m.name for m in default_metrics("image")] == ["deletion_auc", "insertion_auc"]
    assert default_metrics("text") == []


@pytest.mark.parametrize("name", BUILT_IN)
def test_each_metric_declares_label_paper_direction_category_and_modality(name):
    cls = METRICS[name]
    assert cls.label and cls.label != name and cls.description
    assert "(" in cls.paper and cls.paper.rstrip().endswith("."), cls.paper
    assert cls.direction in ("higher", "lower") and cls.better_text() == f"{cls.direction} is better"
    low, high = cls.value_range
    assert cls.better(high, low) == (cls.direction == "higher")
    described = cls.describe()
    assert (described["label"], described["category"], described["modalities"]) == (
        cls.label, cls.category, list(cls.modalities))
    assert ("curve" in described) == issubclass(cls, CurveMetric)


def test_aliases_resolve_and_unknown_names_are_refused():
    assert metric_class("sanity") is ModelRandomisation and find_metric("no_such_metric") is None
    with pytest.raises(ValueError, match="unknown quality metric 'no_such_metric'; choose from: deletion_auc"):
        metric_class("no_such_metric")


def test_an_incomplete_declaration_is_refused_and_not_registered():
    with pytest.raises(TypeError, match=r"Half: set `paper`; `direction` must be one of \('higher', 'lower'\)"):
        class Half(QualityMetric):  # noqa: F841
            name = "half_declared"
            label = "Half"
            description = "d"
            category = "faithfulness"
            value_range = (0.0, 1.0)

            def compute(self, model, inputs, targets, maps, **data):  # noqa: ANN001, ANN201
                return Scores(torch.zeros(len(inputs)), type(self))
    with pytest.raises(TypeError, match="say how it is computed"):
        class NoCompute(QualityMetric):  # noqa: F841
            name = "no_compute"
            label, paper, description = "No compute", "A (2020). B. C.", "d"
            direction, category, value_range = "higher", "faithfulness", (0.0, 1.0)
    assert "half_declared" not in METRICS and "no_compute" not in METRICS


def test_a_name_or_alias_taken_by_another_metric_is_refused():
    with pytest.raises(ValueError, match="'sanity' is used by both audit.quality.sanity.ModelRandomisation"):
        class Clash(QualityMetric):  # noqa: F841
            name = "clash"
            aliases = ("sanity",)
            label, paper, description = "Clash", "A (2020). B. C.", "d"
            direction, category, value_range = "higher", "faithfulness", (0.0, 1.0)

            def compute(self, model, inputs, targets, maps, **data):  # noqa: ANN001, ANN201
                return Scores(torch.zeros(len(inputs)), type(self))
    assert "clash" not in METRICS
    registry.unregister("clash")


def test_settings_are_declared_and_results_have_one_value_per_sample(pixel_linear):
    with pytest.raises(TypeError, match="'deletion_auc' has no setting\\(s\\) \\['canvas'\\]; it declares: steps"):
        Deletion(canvas="zeros")
    assert Deletion.configured({"steps": 4, "canvas": "zeros"}).config["steps"] == 4

    class Short(QualityMetric):
        name = "test_short"
        label, paper, description = "Short", "A (2020). B. C.", "d"
        direction, category, value_range = "higher", "faithfulness", (0.0, 1.0)

        def compute(self, model, inputs, targets, maps, **data):  # noqa: ANN001, ANN201
            return Scores(torch.zeros(1), type(self))

    try:
        with pytest.raises(ValueError, match="'test_short' returned \\(1,\\) scores for a batch of 3; give one per"):
            Short()(pixel_linear, torch.rand(3, 1, 8, 8), 0, torch.rand(3, 1, 8, 8))
    finally:
        registry.unregister("test_short")


def test_the_metric_classes_compute_what_the_functions_compute(pixel_linear):
    torch.manual_seed(0)
    x = torch.rand(2, 1, 8, 8)
    maps = x * pixel_linear.w
    res = Deletion(steps=4)(pixel_linear, x, 0, maps)
    assert res.spec is Deletion and torch.equal(res.values, res.auc) and res.curves.shape == (2, 5)
    regions = [[0, 0, 4, 8], [4, 4, 8, 8]]
    loc = localisation(maps, regions)
    assert torch.equal(RelevanceMass()(None, x, None, maps, regions=regions).values, loc.relevance_mass)
    assert torch.equal(PointingGame()(None, x, None, maps, regions=regions).values, loc.pointing_game)
    with pytest.raises(ValueError, match="Relevance mass accuracy scores maps against declared regions"):
        RelevanceMass()(None, x, None, maps)


def test_metrics_that_re_explain_take_the_explainer_or_method_as_a_setting():
    torch.manual_seed(0)
    model = SmallCNN(width=8).eval()
    x = torch.rand(2, 1, 32, 32)
    with pytest.raises(ValueError, match="give MaxSensitivity\\(explainer=...\\)"):
        MaxSensitivity()(model, x, None, None)
    sens = MaxSensitivity(explainer=method_explainer("saliency"), n_samples=2)(model, x, None, None)
    assert sens.spec is MaxSensitivity and sens.values.shape == (2,) and (sens.values >= 0).all()
    stab = SeedStability(method="smoothgrad", seeds=(0, 1), options={"sg_samples": 2})(model, x, None, None)
    assert stab.spec is SeedStability and stab.values.shape == (2,)
    rnd = ModelRandomisation(explainer="gradcam", max_steps=2)(model, x, None, None)
    assert rnd.spec is ModelRandomisation and rnd.values.shape == (2,)
