"""The Explain page's choices come from the attribution registry: methods, labels, defaults, bounds, and
which methods the sanity check runs (from their declared costs)."""

from __future__ import annotations

import pytest

from audit.attribution import registry
from audit.attribution.base import Evaluations, PerturbationMethod
from audit.services.explain import explain_image
from audit.services.explain_views import SANITY_MAX_EVALUATIONS, explain_form, sanity_methods

from .test_explain_service import OPTS, tiny_registry  # noqa: F401 - the fixture is used by name


@pytest.fixture()
def probe_method():
    """A method declared in a test, registered while the test runs."""
    class FormProbe(PerturbationMethod):
        name = "form_probe"
        label = "Form probe (test)"

        @classmethod
        def evaluations(cls, opts, geometry):
            return Evaluations(forward=geometry.batch, backward=0)

        def run(self, ctx):
            return ctx.inputs

    try:
        yield FormProbe
    finally:
        registry.unregister("form_probe")


def test_the_form_lists_every_registered_method_with_its_label(tiny_registry, probe_method):  # noqa: F811
    form = explain_form("tiny", "1")
    assert form["methods"] == list(registry.registered())
    assert "form_probe" in form["methods"] and form["labels"]["form_probe"] == "Form probe (test)"
    assert form["labels"]["gradcam_pp"] == "Grad-CAM++" and form["labels"]["integrated_gradients"] == "Integrated Gradients"
    assert len(form["methods"]) >= 15  # the 13 the page once listed, SmoothGrad² and VarGrad among the rest
    assert form["default"] == ["saliency", "grad_x_input", "integrated_gradients", "gradcam"]


def test_the_form_defaults_and_bounds_are_the_declared_ones(tiny_registry):  # noqa: F811
    opts = explain_form("tiny", "1")["options"]
    assert opts["ig_steps"] == {"default": 50, "min": 1, "max": 512, "help": "quadrature points on the path"}
    assert (opts["sg_samples"]["default"], opts["sg_samples"]["min"], opts["sg_samples"]["max"]) == (25, 1, None)
    assert (opts["seed"]["default"], opts["seed"]["min"]) == (0, 0)
    # a 32-pixel input: windows up to its side, by default a quarter of it (the declared 16 would give 2 x 2)
    assert (opts["occlusion_window"]["default"], opts["occlusion_window"]["max"]) == (8, 32)
    assert opts["fast"]["default"] is False and opts["fast"]["min"] is None


def test_the_sanity_check_leaves_out_methods_costlier_than_its_budget(tiny_registry):  # noqa: F811
    exp = explain_image("tiny", "1", methods=["saliency", "integrated_gradients", "occlusion", "lime", "rise"],
                        dataset="ref", sample_key="ref-0001", options=OPTS)
    # IG at the check's 16 steps costs 32 evaluations; occlusion on 32 pixels 5 (4 windows and the input);
    # LIME 200; RISE 500
    assert sanity_methods(exp) == ["saliency", "integrated_gradients", "occlusion"]
    assert SANITY_MAX_EVALUATIONS == 64
    assert sanity_methods(exp, max_evaluations=5) == ["saliency", "occlusion"]
    assert sanity_methods(exp, max_evaluations=4) == ["saliency"]
    assert sanity_methods(exp, max_evaluations=1000) == list(exp.maps)
