"""The explanation cache key reads each method's declaration both ways: what the class declares (its
result options, the layer where it says ``needs_layer``) changes the key; nothing else does."""

from __future__ import annotations

import pytest
import torch

from audit.attribution import METHODS, method_spec, result_option_defaults
from audit.attribution.registry import option_table
from audit.services.explain import explain_image, params_key

from .test_explain_service import OPTS, _other_value, tiny_registry  # noqa: F401 - the fixture is used by name


def _undeclared(method: str) -> dict[str, object]:
    """Every option some other method (or the engine) declares that ``method`` does not take as a
    result option, each set to a value other than its default."""
    declared = set(result_option_defaults(method))
    return {name: _other_value(opt.default) for name, opt in option_table().items() if name not in declared}


@pytest.mark.parametrize("method", list(METHODS))
def test_an_argument_the_method_does_not_declare_leaves_its_key_alone(method):
    base_params, base = params_key(method, "features.block3", {})
    foreign = _undeclared(method)
    assert foreign, f"{method}: no other method's option to try"
    for name, value in foreign.items():
        assert params_key(method, "features.block3", {name: value})[1] == base, \
            f"{method}: option {name}, which it does not declare, changed its key"
    assert params_key(method, "features.block3", foreign)[1] == base
    if method_spec(method).needs_layer:
        assert base_params["layer"] == "features.block3"
        assert params_key(method, "features.block2", {})[1] != base, f"{method} reads the layer; it must key on it"
    else:
        assert base_params["layer"] is None
        assert params_key(method, "features.block2", {})[1] == base, \
            f"{method} reads no layer, yet the layer changed its key"
        assert params_key(method, None, {})[1] == base


@pytest.mark.parametrize("method", list(METHODS))
def test_every_declared_option_changes_the_key(method):
    _, base = params_key(method, "features.block3", {})
    for name, default in result_option_defaults(method).items():
        assert params_key(method, "features.block3", {name: _other_value(default)})[1] != base, \
            f"{method}: its declared option {name} does not change its key"


def test_both_kinds_of_method_are_in_the_registry():
    """The layer half of the test above checks something only while both kinds exist."""
    layered = {m for m in METHODS if method_spec(m).needs_layer}
    assert {"gradcam", "gradcam_pp", "scorecam"} <= layered
    assert {"saliency", "integrated_gradients", "occlusion", "cam"}.isdisjoint(layered)


def test_a_map_of_a_method_without_a_layer_is_served_whatever_layer_is_asked(tiny_registry):  # noqa: F811
    first = explain_image("tiny", "1", methods=["saliency", "gradcam"], dataset="ref", sample_key="ref-0001",
                          options={**OPTS, "layer": "features.block3"})
    again = explain_image("tiny", "1", methods=["saliency", "gradcam"], dataset="ref", sample_key="ref-0001",
                          options={**OPTS, "layer": "features.block2", "lime_samples": 7})
    assert again.maps["saliency"].cached
    assert again.maps["saliency"].explanation_id == first.maps["saliency"].explanation_id
    assert not again.maps["gradcam"].cached  # Grad-CAM reads the layer: another layer is another map
    assert again.maps["gradcam"].parameters["layer"] == "features.block2"
    assert not torch.equal(torch.as_tensor(again.maps["gradcam"].attribution),
                           torch.as_tensor(first.maps["gradcam"].attribution))
