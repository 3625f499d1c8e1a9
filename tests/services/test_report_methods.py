"""The report's method sets are its choice; which of them need a layer is each class's declaration."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from audit.attribution import registry
from audit.attribution.base import CamMethod
from audit.services.reports import FIGURE_METHODS, SANITY_METHODS, _with_layer_if_needed


@pytest.fixture()
def layer_method():
    class LayerProbe(CamMethod):
        name = "report_layer_probe"
        label = "Layer probe (test)"

        def channel_weights(self, ctx, acts):
            return acts.mean(dim=(2, 3))

    try:
        yield LayerProbe
    finally:
        registry.unregister("report_layer_probe")


def test_a_model_without_a_target_layer_keeps_only_the_methods_that_read_none(layer_method):
    without, with_layer = SimpleNamespace(target_layer=None), SimpleNamespace(target_layer="features")
    assert _with_layer_if_needed(FIGURE_METHODS, without) == ["integrated_gradients", "saliency"]
    assert _with_layer_if_needed(SANITY_METHODS, without) == ["saliency", "integrated_gradients"]
    assert _with_layer_if_needed(FIGURE_METHODS, with_layer) == list(FIGURE_METHODS)
    # a method the report never heard of is judged by its class, not by its name
    chosen = ("saliency", "report_layer_probe", "cam")
    assert _with_layer_if_needed(chosen, without) == ["saliency", "cam"]  # CAM finds its own pooled features
    assert _with_layer_if_needed(chosen, with_layer) == list(chosen)
