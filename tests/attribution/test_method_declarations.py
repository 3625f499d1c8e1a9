"""Methods describe themselves: options, result options, randomness, cost; the registry, planner,
cost table and cache-key helpers read those declarations (and the declarations tell the truth)."""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torchvision

import audit.attribution as attribution
from audit.attribution import (
    METHODS,
    STOCHASTIC_METHODS,
    Geometry,
    attribute,
    explain,
    method_costs,
    method_spec,
    registry,
    result_option_defaults,
)
from audit.attribution.options import ENGINE_OPTIONS, AttributionOptions
from audit.models.zoo import SmallCNN

from .conftest import BatchInvariantCNN, structured_images

METHODS_DIR = Path(attribution.__file__).parent / "methods"
CNN_METHODS = [m for m in METHODS if m != "attention_rollout"]

# Small settings so that each run takes milliseconds; the option under test overrides its own.
SMALL = dict(
    ig_steps=4, sg_samples=4, rise_masks=24, rise_cells=4, lime_samples=24, lime_segments=8,
    shap_samples=4, occlusion_window=8, occlusion_stride=8, optimize=False,
)

# For every option a method may declare: a value other than its default (or SMALL value).
ALTERNATIVE = {
    "saliency_abs": False,
    "gradcam_pp_exp_score": True,
    "scorecam_weights": "class_probability",
    "scorecam_max_channels": 3,
    "ig_steps": 7,
    "ig_method": "riemann_left",
    "baseline": 0.5,
    "ig_tolerance": 1e-9,
    "ig_max_steps": 4,
    "blur_sigma": 3.0,
    "seed": 1,
    "fast": True,
    "fast_min_rank_corr": -1.0,
    "sg_samples": 2,
    "sg_stdev": 0.5,
    "occlusion_window": 4,
    "occlusion_stride": 4,
    "occlusion_baseline": 0.5,
    "rise_masks": 16,
    "rise_cells": 3,
    "rise_p": 0.3,
    "lime_samples": 16,
    "lime_segments": 20,
    "lime_compactness": 0.1,
    "lime_kernel_width": 1.0,
    "lime_alpha": 30.0,
    "lime_hide": 0.0,
    "shap_samples": 2,
    "shap_background": "tensor",  # built per test: references of the input's shape
    # engine options (never a result option of any built-in method except fast*)
    "batch_size": 3,
    "memory_budget_bytes": 1 << 14,
    "optimize": True,
    "incremental": False,
    "progress": "callback",
}

# Where an option matters only together with another one, the setting that makes it matter.
CONTEXT = {
    ("integrated_gradients", "blur_sigma"): dict(baseline="blur"),
    ("integrated_gradients", "seed"): dict(baseline="uniform"),
    ("integrated_gradients", "ig_tolerance"): dict(ig_steps=2, ig_max_steps=8),
    ("integrated_gradients", "ig_max_steps"): dict(ig_steps=2, ig_tolerance=1e-9, ig_max_steps=8),
    ("occlusion", "blur_sigma"): dict(occlusion_baseline="blur"),
    ("occlusion", "seed"): dict(occlusion_baseline="uniform"),
    ("lime", "blur_sigma"): dict(lime_hide="blur"),
    # the guard decides whether bf16 is used at all: let it pass, or test the guard's threshold
    **{(m, "fast"): dict(fast_min_rank_corr=-1.0) for m in CNN_METHODS},
    **{(m, "fast_min_rank_corr"): dict(fast=True) for m in CNN_METHODS},
}


def _value(name: str, x: torch.Tensor):
    value = ALTERNATIVE[name]
    if value == "tensor":
        return torch.rand(3, *x.shape[1:], generator=torch.Generator().manual_seed(5))
    if value == "callback":
        return lambda fraction, message: None
    return value


@pytest.fixture(scope="module")
def cnn_case():
    torch.manual_seed(0)
    model = SmallCNN(in_channels=1, num_classes=10, width=8).eval()
    with torch.no_grad():  # logits of a few units: softmax-based methods see real differences
        model.fc.weight.mul_(20.0)
    x = structured_images(2)
    with torch.no_grad():
        targets = model(x).argmax(1)
    return model, x, targets


def _run(model, x, targets, method, **options):
    return attribute(model, x, targets, [method], **{**SMALL, **options})[method]


# ---- the public description -------------------------------------------------------------------

def test_registry_lists_the_documented_methods_with_their_spoken_names():
    expected = {
        "saliency": "Saliency", "integrated_gradients": "Integrated Gradients", "gradcam": "Grad-CAM",
        "gradcam_pp": "Grad-CAM++", "scorecam": "Score-CAM", "smoothgrad": "SmoothGrad", "lime": "LIME",
        "shap": "SHAP", "rise": "RISE", "occlusion": "Occlusion", "cam": "CAM",
    }
    for name, label in expected.items():
        spec = method_spec(name)
        assert spec.name == name and spec.label == label
    assert set(STOCHASTIC_METHODS) == {"smoothgrad", "smoothgrad_sq", "vargrad", "rise", "lime", "shap"}
    assert all(method_spec(m).stochastic == (m in STOCHASTIC_METHODS) for m in METHODS)
    assert list(METHODS)[:3] == ["saliency", "grad_x_input", "smoothgrad"]
    with pytest.raises(ValueError, match="unknown attribution method"):
        method_spec("nope")


def test_result_option_defaults_name_what_changes_each_result():
    ig = result_option_defaults("integrated_gradients")
    assert ig == {"ig_steps": 50, "ig_method": "gausslegendre", "baseline": None, "ig_tolerance": None,
                  "ig_max_steps": 512, "blur_sigma": None, "seed": 0, "fast": False, "fast_min_rank_corr": 0.9}
    assert result_option_defaults("saliency") == {"saliency_abs": True}
    assert result_option_defaults("gradcam") == {}
    assert "layer" not in result_option_defaults("scorecam")
    for m in STOCHASTIC_METHODS:
        assert result_option_defaults(m)["seed"] == 0
    for m in METHODS:
        spec = method_spec(m)
        assert tuple(result_option_defaults(m)) == spec.result_options
        # nothing the engine only uses for batching or reporting is part of a result
        assert not {"batch_size", "memory_budget_bytes", "progress", "optimize", "incremental"} & set(spec.result_options)


def test_the_central_option_set_is_the_union_of_the_declarations():
    declared = {o.name for m in METHODS for o in method_spec(m).options} | {o.name for o in ENGINE_OPTIONS}
    opts = AttributionOptions.from_kwargs()
    assert set(opts.names()) == declared
    assert set(ALTERNATIVE) == declared, "give every declared option an alternative value in this test"
    for m in METHODS:
        for o in method_spec(m).options:
            assert getattr(opts, o.name) is o.default or getattr(opts, o.name) == o.default


# ---- (a) every declared result option changes the result ----------------------------------------

RESULT_CASES = [(m, o) for m in CNN_METHODS for o in method_spec(m).result_options]


@pytest.mark.parametrize(("method", "option"), RESULT_CASES, ids=[f"{m}-{o}" for m, o in RESULT_CASES])
def test_each_result_option_changes_the_output(cnn_case, method, option):
    model, x, targets = cnn_case
    context = CONTEXT.get((method, option), {})
    if option == "fast_min_rank_corr" and explain(model, x, targets, [method], **{**SMALL, **context}).fast_path.used:
        pytest.skip("bf16 passes the default guard here, so a looser threshold cannot change the result")
    before = _run(model, x, targets, method, **context)
    after = _run(model, x, targets, method, **{**context, option: _value(option, x)})
    assert before.shape == after.shape
    assert not torch.allclose(before, after, rtol=1e-4, atol=1e-7), f"{option} did not change {method}"


# ---- (b) an option a method does not declare leaves its output unchanged -------------------------

def _undeclared(method: str) -> list[str]:
    declared = set(method_spec(method).result_options)
    return sorted(name for name in registry.option_table() if name not in declared)


NEUTRAL_CASES = [(m, o) for m in CNN_METHODS for o in _undeclared(m)]
BATCHING = ("batch_size", "memory_budget_bytes")
# settings under which an option would act if the method were affected by it at all
LIVE_WITH = {"fast": dict(fast_min_rank_corr=-1.0), "fast_min_rank_corr": dict(fast=True)}


def _settings(method: str, option: str) -> list[dict]:
    """No setting, and each setting that makes some declared option of ``method`` act (a
    'uniform' baseline reads the seed, ...): an undeclared option must stay inert under all."""
    out = [{}] + [dict(c) for (m, _), c in CONTEXT.items() if m == method]
    unique = [c for i, c in enumerate(out) if c not in out[:i]]
    return [{**c, **LIVE_WITH.get(option, {})} for c in unique]


@pytest.fixture(scope="module")
def invariant_case():
    torch.manual_seed(0)
    model = BatchInvariantCNN().eval()
    x = structured_images(3)
    with torch.no_grad():
        targets = model(x).argmax(1)
    return model, x, targets


@pytest.mark.parametrize("model_name", ["invariant", "cnn"])
@pytest.mark.parametrize(("method", "option"), NEUTRAL_CASES, ids=[f"{m}-{o}" for m, o in NEUTRAL_CASES])
def test_undeclared_options_leave_the_output_bitwise_unchanged(invariant_case, cnn_case, model_name, method, option):
    # On the batch-invariant model even chunk sizes cannot move a bit; real convolutions' kernels
    # depend on the batch at the last bit, so batching options are checked on that model only.
    if model_name == "cnn" and option in BATCHING:
        pytest.skip("conv kernels round differently per batch size; checked on the invariant model")
    model, x, targets = invariant_case if model_name == "invariant" else cnn_case
    declaration = registry.option_table()[option]
    for setting in _settings(method, option):
        before = _run(model, x, targets, method, **setting)
        after = _run(model, x, targets, method, **{**setting, option: _value(option, x)})
        if declaration.exact:
            assert torch.equal(before, after), f"{option} changed {method} (with {setting}) but is not declared by it"
        else:  # optimize: the folded copy computes the same function up to float rounding
            torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-6)


def test_batching_options_leave_results_unchanged_when_chunks_split_samples(invariant_case):
    model, x, targets = invariant_case
    for method in ("integrated_gradients", "smoothgrad", "shap", "rise", "lime", "occlusion", "scorecam"):
        whole = _run(model, x, targets, method, batch_size=1000)
        for size in (1, 5):  # one evaluation per call; chunks that cut through samples
            torch.testing.assert_close(_run(model, x, targets, method, batch_size=size), whole, rtol=0, atol=0)


# ---- (c) a method cannot read an option it does not declare ----------------------------------------

def _option_reads(path: Path) -> set[str]:
    """Names read as ``<x>.options.NAME`` or ``opts.NAME`` where ``opts = <x>.options``."""
    tree = ast.parse(path.read_text())
    aliases = {"opts"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Attribute) and node.value.attr == "options":
            aliases |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    reads = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        base = node.value
        if isinstance(base, ast.Attribute) and base.attr == "options":
            reads.add(node.attr)
        elif isinstance(base, ast.Name) and base.id in aliases:
            reads.add(node.attr)
    return reads - {"get", "replace", "names", "as_record"}


def test_every_option_read_in_a_method_file_is_declared():
    declared = set(registry.option_table())
    files = sorted(METHODS_DIR.glob("*.py"))
    assert len(files) > 10
    seen = set()
    for path in files:
        reads = _option_reads(path)
        seen |= reads
        assert reads <= declared, f"{path.name} reads undeclared options {sorted(reads - declared)}"
    assert {"ig_steps", "lime_hide", "seed", "scorecam_max_channels"} <= seen  # the scan finds reads


def test_a_method_reading_an_undeclared_option_fails_when_it_runs(cnn_case):
    from audit.attribution.base import Evaluations, PerturbationMethod

    class Sneaky(PerturbationMethod):
        name = "sneaky_test_method"
        label = "Sneaky"

        @classmethod
        def evaluations(cls, opts, geometry):
            return Evaluations(forward=0, backward=0)

        def run(self, ctx):
            return torch.zeros_like(ctx.inputs) + ctx.options.ig_steps  # not declared

    model, x, targets = cnn_case
    try:
        with pytest.raises(AttributeError, match="sneaky_test_method.*'ig_steps'.*does not declare"):
            attribute(model, x, targets, ["sneaky_test_method"])
    finally:
        registry.unregister("sneaky_test_method")
    assert "sneaky_test_method" not in METHODS


def test_incomplete_declarations_are_refused_when_the_class_is_defined():
    from audit.attribution.base import PerturbationMethod

    with pytest.raises(TypeError, match="seed.*declare its cost"):
        class _NoSeedNoCost(PerturbationMethod):
            name = "incomplete_test_method"
            label = "Incomplete"
            stochastic = True
    with pytest.raises(TypeError, match="label"):
        class _NoLabel(PerturbationMethod):
            name = "unlabelled_test_method"

            @classmethod
            def evaluations(cls, opts, geometry):
                raise AssertionError("not called")
    assert "incomplete_test_method" not in METHODS and "unlabelled_test_method" not in METHODS


# ---- declared costs are what the methods really do ------------------------------------------------

@pytest.mark.parametrize("method", CNN_METHODS)
def test_declared_evaluations_match_the_counted_passes(cnn_case, method):
    model, x, targets = cnn_case
    res = explain(model, x, targets, [method], batch_size=7, **SMALL)
    info = res.info[method]
    channels = 16 if method == "scorecam" else None  # SmallCNN(width=8) ends in 16 maps
    geometry = Geometry(batch=x.shape[0], height=32, width=32, layer_channels=channels)
    declared = method_spec(method).evaluations(AttributionOptions.from_kwargs(**SMALL), geometry)
    assert (info.forward_samples, info.backward_samples) == (declared.forward, declared.backward)
    cost = method_costs(model, (1, 32, 32), methods=[method], batch=x.shape[0], **SMALL)[method]
    assert (cost.forward_samples, cost.backward_samples) == (declared.forward, declared.backward)


def test_attention_rollout_is_costed_only_for_vision_transformers_and_takes_no_options(cnn_case):
    model = cnn_case[0]
    assert "attention_rollout" not in method_costs(model, (1, 32, 32))
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2,
                                               hidden_dim=8, mlp_dim=16, num_classes=3).eval()
    assert method_costs(vit, (3, 32, 32), methods=None)["attention_rollout"].forward_samples == 1
    assert result_option_defaults("attention_rollout") == {}
    x = torch.rand(2, 3, 32, 32)
    plain = attribute(vit, x, 1, ["attention_rollout"])["attention_rollout"]
    for option in registry.option_table():
        other = attribute(vit, x, 1, ["attention_rollout"], **{option: _value(option, x)})["attention_rollout"]
        assert torch.equal(plain, other), option


# ---- (d) a new method is one new file --------------------------------------------------------------

NEW_METHOD = '''
"""A test-only method: the input times a constant (one forward per input)."""
import torch

from audit.attribution.base import Evaluations, PerturbationMethod
from audit.attribution.options import Option, positive


SCALE = Option("plugin_scale", 2.0, "the constant", check=positive)


class TimesConstant(PerturbationMethod):
    name = "plugin_times_constant"
    label = "Times constant"
    options = (SCALE,)

    @classmethod
    def evaluations(cls, opts, geometry):
        return Evaluations(forward=3 * geometry.batch, backward=0, expanded=3 * geometry.batch)

    def run(self, ctx):
        return ctx.inputs * ctx.options.plugin_scale
'''


def test_a_new_method_is_one_new_file_in_the_methods_package(tmp_path, cnn_case):
    model, x, targets = cnn_case
    (tmp_path / "plugin_times_constant.py").write_text(textwrap.dedent(NEW_METHOD))
    package = sys.modules["audit.attribution.methods"]
    package.__path__.append(str(tmp_path))
    try:
        registry.discover(force=True)
        assert "plugin_times_constant" in METHODS
        assert method_spec("plugin_times_constant").label == "Times constant"
        assert result_option_defaults("plugin_times_constant") == {"plugin_scale": 2.0}
        costs = method_costs(model, (1, 32, 32), batch=2)
        assert costs["plugin_times_constant"].forward_samples == 6
        out = attribute(model, x, targets, ["plugin_times_constant", "saliency"], plugin_scale=3.0)
        torch.testing.assert_close(out["plugin_times_constant"], 3.0 * x)
        with pytest.raises(ValueError, match="plugin_scale"):
            attribute(model, x, targets, ["plugin_times_constant"], plugin_scale=-1.0)
    finally:
        package.__path__.remove(str(tmp_path))
        registry.unregister("plugin_times_constant")
        sys.modules.pop("audit.attribution.methods.plugin_times_constant", None)
    assert "plugin_times_constant" not in METHODS
    with pytest.raises(TypeError, match="unknown attribution option"):
        attribute(model, x, targets, ["saliency"], plugin_scale=3.0)
