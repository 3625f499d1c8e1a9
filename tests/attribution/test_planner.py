"""The planner: one shared pass for the gradient family, hooks always removed, validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from audit.attribution import (
    attribute,
    explain,
    live_hook_count,
    method_costs,
    normalize_for_display,
    total_cost,
)
from audit.attribution.hooks import capture_layer
from audit.models.zoo import SmallCNN


class _CountBackward(torch.autograd.Function):
    calls = 0

    @staticmethod
    def forward(ctx, x):  # noqa: D401 - autograd signature
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        _CountBackward.calls += 1
        return grad


class Counting(nn.Module):
    """Wraps a model; counts forward calls and backward passes through its output."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.forwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        return _CountBackward.apply(self.inner(x))


def test_fused_planner_does_one_forward_and_one_backward(gray_batch):
    torch.manual_seed(0)
    model = Counting(SmallCNN(width=8)).eval()
    _CountBackward.calls = 0
    res = explain(model, gray_batch, torch.tensor([1, 2]), ["saliency", "grad_x_input", "gradcam", "gradcam_pp", "cam"])
    assert model.forwards == 1
    assert _CountBackward.calls == 1
    assert set(res.maps) == {"saliency", "grad_x_input", "gradcam", "gradcam_pp", "cam"}
    assert all(i.shared_pass for i in res.info.values())
    assert res.total_backward_samples == 2 and res.total_forward_samples == 2


def test_separate_calls_cost_one_pass_each(gray_batch):
    torch.manual_seed(0)
    model = Counting(SmallCNN(width=8)).eval()
    _CountBackward.calls = 0
    for m in ("saliency", "grad_x_input", "gradcam"):
        attribute(model, gray_batch, 1, [m])
    assert _CountBackward.calls == 3  # the wrapper really counts


def test_ig_and_smoothgrad_pass_counts(gray_batch):
    torch.manual_seed(0)
    model = Counting(SmallCNN(width=8)).eval()
    _CountBackward.calls = 0
    res = explain(model, gray_batch, 0, ["integrated_gradients", "smoothgrad"], ig_steps=5, sg_samples=3, batch_size=4)
    ig, sg = res.info["integrated_gradients"], res.info["smoothgrad"]
    assert ig.backward_samples == 2 * 5 and ig.backward_calls == 3  # 10 path points in batches of 4
    assert sg.backward_samples == 2 * 3 and sg.backward_calls == 2
    assert _CountBackward.calls == ig.backward_calls + sg.backward_calls


def test_batching_does_not_change_results(gray_batch, small_cnn):
    methods = ["integrated_gradients", "smoothgrad", "occlusion", "rise", "scorecam"]
    opts = dict(ig_steps=6, sg_samples=4, rise_masks=16, occlusion_window=8, occlusion_stride=8)
    a = attribute(small_cnn, gray_batch, 3, methods, batch_size=3, **opts)
    b = attribute(small_cnn, gray_batch, 3, methods, batch_size=64, **opts)
    for m in methods:
        torch.testing.assert_close(a[m], b[m], rtol=1e-4, atol=1e-6)


class Exploding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        raise RuntimeError("boom mid-forward")


@pytest.mark.parametrize(
    "methods", [["gradcam"], ["saliency", "cam"], ["scorecam"], ["integrated_gradients"], ["occlusion"]]
)
def test_hooks_removed_when_model_raises(methods):
    model = Exploding()
    with pytest.raises(RuntimeError, match="boom"):
        attribute(model, torch.rand(1, 1, 8, 8), 0, methods, occlusion_window=4, occlusion_stride=4)
    assert live_hook_count(model) == 0
    for mod in model.modules():
        assert not mod._forward_hooks and not mod._forward_pre_hooks
        assert not mod._backward_hooks and not mod._backward_pre_hooks


def test_capture_layer_removes_hook_on_error():
    model = Exploding()
    with pytest.raises(KeyError):
        with capture_layer(model.conv):
            assert live_hook_count(model) == 1
            raise KeyError("inside")
    assert live_hook_count(model) == 0


def test_training_mode_is_restored(gray_batch):
    model = SmallCNN(width=8)
    model.train()
    attribute(model, gray_batch, 0, ["saliency"])
    assert all(m.training for m in model.modules())


def test_parameters_get_no_grad(gray_batch, small_cnn):
    attribute(small_cnn, gray_batch, 0, ["saliency", "gradcam", "integrated_gradients"], ig_steps=3)
    assert all(p.grad is None for p in small_cnn.parameters())


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (dict(methods=["nope"]), ValueError, "unknown attribution method"),
        (dict(methods=["saliency"], ig_stepz=3), TypeError, "unknown attribution option"),
        (dict(methods=["integrated_gradients"], ig_method="simpson"), ValueError, "ig_method"),
        (dict(methods=["integrated_gradients"], ig_steps=0), ValueError, "ig_steps"),
        (dict(methods=["gradcam"], layer="features.block9"), ValueError, "not a sub-module"),
        (dict(methods=["occlusion"], occlusion_window=64), ValueError, "occlusion_window"),
        (dict(methods=["integrated_gradients"], baseline="grey"), ValueError, "baseline"),
    ],
)
def test_actionable_errors(small_cnn, gray_batch, kwargs, exc, match):
    kwargs = dict(kwargs)
    methods = kwargs.pop("methods")
    layer = kwargs.pop("layer", None)
    with pytest.raises(exc, match=match):
        attribute(small_cnn, gray_batch, 0, methods, layer, **kwargs)


def test_input_and_target_validation(small_cnn, gray_batch):
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        attribute(small_cnn, gray_batch[0], 0, ["saliency"])
    with pytest.raises(ValueError, match="outside the model's 10 outputs"):
        attribute(small_cnn, gray_batch, 10, ["saliency"])
    with pytest.raises(ValueError, match="shape"):
        attribute(small_cnn, gray_batch, torch.tensor([1, 2, 3]), ["saliency"])
    with pytest.raises(TypeError, match="targets"):
        attribute(small_cnn, gray_batch, torch.tensor([1.0, 2.0]), ["saliency"])


def test_predicted_class_when_targets_none(small_cnn, gray_batch):
    res = explain(small_cnn, gray_batch, None, ["saliency"])
    assert torch.equal(res.targets, small_cnn(gray_batch).argmax(1))
    torch.testing.assert_close(res.probabilities.sum(1), torch.ones(2))


def test_fast_path_reports_guard_outcome(small_cnn, gray_batch):
    res = explain(small_cnn, gray_batch, 0, ["saliency", "integrated_gradients"], ig_steps=4, fast=True)
    fp = res.fast_path
    assert fp.requested and fp.rank_corr is not None
    assert fp.used == (fp.rank_corr >= 0.9)
    strict = explain(small_cnn, gray_batch, 0, ["saliency"], fast=True, fast_min_rank_corr=1.0)
    assert not strict.fast_path.used or strict.fast_path.rank_corr == 1.0
    if not strict.fast_path.used:
        assert "fell back" in strict.fast_path.reason
    # the model's weights are back in their original layout
    assert all(p.is_contiguous() for p in small_cnn.parameters())


def test_progress_callback_reports_each_method(small_cnn, gray_batch):
    seen = []
    attribute(small_cnn, gray_batch, 0, ["saliency", "occlusion"], occlusion_window=8, occlusion_stride=8,
              progress=lambda f, msg: seen.append((f, msg)))
    assert seen == [(0.5, "saliency"), (1.0, "occlusion")]


def test_normalize_for_display():
    a = torch.zeros(2, 3, 4, 4)
    a[0, :, 0, 0] = 100.0  # one outlier
    a[0, :, 1, :] = 1.0
    a[1, 0, 2, 2] = -2.0
    out = normalize_for_display(a, mode="abs", percentile=90)
    assert out.shape == (2, 4, 4) and out.min() >= 0 and out.max() <= 1
    assert out[0, 0, 0] == 1.0 and out[0, 1, 0] == 1.0  # the outlier is clipped, not dominating
    signed = normalize_for_display(a, mode="signed", percentile=100)
    assert signed[1, 2, 2] == -1.0
    zeros = normalize_for_display(torch.zeros(1, 5, 5))
    assert torch.equal(zeros, torch.zeros(1, 5, 5))
    with pytest.raises(ValueError, match="mode"):
        normalize_for_display(a, mode="minmax")


def test_method_costs(small_cnn):
    costs = method_costs(small_cnn, (1, 32, 32), methods=["saliency", "gradcam", "integrated_gradients", "occlusion"],
                         batch=2, ig_steps=10, occlusion_window=8, occlusion_stride=8)
    conv_macs = 32 * 32 * 8 * 9 + 16 * 16 * 16 * 8 * 9 + 8 * 8 * 16 * 16 * 9
    macs = conv_macs + 10 * 16
    assert costs["saliency"].flops == pytest.approx(2 * macs * (2 + 2))
    assert costs["integrated_gradients"].forward_samples == 2 * 12
    assert costs["integrated_gradients"].backward_samples == 2 * 10
    assert costs["occlusion"].forward_samples == 2 * (1 + 16)
    total = total_cost(costs)
    assert total.forward_samples == 2 + 24 + 34  # saliency+gradcam share one pass
    assert all(c.peak_mem_bytes > 0 for c in costs.values())


def _resnet_with_stats():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    return model.eval()


def test_optimised_copy_computes_the_same_maps_and_leaves_the_model_alone():
    model = _resnet_with_stats()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 32, 32)
    methods = ["smoothgrad", "occlusion", "integrated_gradients"]
    opts = dict(ig_steps=6, sg_samples=4, occlusion_window=8, occlusion_stride=8)
    plain = explain(model, x, 3, methods, optimize=False, **opts)
    fast = explain(model, x, 3, methods, optimize=True, **opts)
    assert plain.optimized.startswith("off") and fast.optimized.startswith("on")
    for m in methods:
        scale = plain.maps[m].abs().max()
        torch.testing.assert_close(fast.maps[m], plain.maps[m], rtol=0, atol=2e-3 * float(scale))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) and v.is_contiguous()
    assert all(p.requires_grad for p in model.parameters())
    assert live_hook_count(model) == 0


def test_untraceable_model_falls_back_with_a_reason():
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.fc = nn.Linear(2, 3)

        def forward(self, x):
            h = self.conv(x)
            if h.mean() > 0:  # Python control flow on data: not traceable
                h = h * 2
            return self.fc(h.mean(dim=(2, 3)))

    res = explain(DataDependent().eval(), torch.rand(1, 1, 8, 8), 0, ["integrated_gradients"], ig_steps=4, optimize=True)
    assert res.optimized.startswith("off (the model cannot be traced")
    assert torch.isfinite(res.maps["integrated_gradients"]).all()


def test_predicted_targets_come_from_the_shared_pass(gray_batch):
    torch.manual_seed(0)
    model = Counting(SmallCNN(width=8)).eval()
    _CountBackward.calls = 0
    res = explain(model, gray_batch, None, ["saliency", "gradcam"])
    assert model.forwards == 1 and _CountBackward.calls == 1
    with torch.no_grad():
        assert torch.equal(res.targets, model(gray_batch).argmax(1))
