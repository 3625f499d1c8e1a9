"""Image counterfactuals: closed-form answers on linear models, validity and sparsity on a trained SmallCNN."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from audit.counterfactuals import diverse_counterfactuals, image_counterfactual, image_counterfactuals

FAST = {"restarts": 2, "max_iter": 100, "binary_steps": 4}


def linear_problem(seed: int, gap_in_l1_steps: float = 0.15) -> tuple[nn.Module, torch.Tensor, float, float]:
    """A 2-class linear model on 1x8x8 inputs and an input whose flip distances are known in closed form.

    The decision flips where f(x) = w.x + b changes sign (w, b: class-1 minus class-0 weights).
    Minimal L2 change: |f| / ||w||_2 (the distance to the hyperplane). Minimal L1 change:
    |f| / max|w_i| (move only the coordinate with the largest weight). The bias is set so both
    optimal points lie well inside [0, 1], so the box does not bind.
    """
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2)).eval()
    x = 0.4 + 0.2 * torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        w = model[1].weight[1] - model[1].weight[0]
        f = float(w @ x.flatten() + model[1].bias[1] - model[1].bias[0])
        wanted = gap_in_l1_steps * float(w.abs().max()) * (1 if f >= 0 else -1)
        model[1].bias[1] += wanted - f
        f = wanted
    return model, x, abs(f) / float(w.norm()), abs(f) / float(w.abs().max())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_l2_matches_distance_to_hyperplane_and_never_undercuts_it(seed):
    model, x, d2, _ = linear_problem(seed)
    cf = image_counterfactual(model, x, distance="l2", seed=seed)
    assert cf.valid and cf.cf_class != cf.original_class
    assert cf.l2 >= d2 * (1 - 1e-5)  # no valid point is closer than the hyperplane
    assert cf.l2 <= d2 * 1.05


@pytest.mark.parametrize("seed", [0, 1])
def test_l1_matches_single_coordinate_optimum_and_is_sparse(seed):
    model, x, d2, d1 = linear_problem(seed)
    cf1 = image_counterfactual(model, x, distance="l1", seed=seed)
    cf2 = image_counterfactual(model, x, distance="l2", seed=seed)
    assert cf1.valid
    assert cf1.l1 >= d1 * (1 - 1e-5)  # Hoelder: |w.delta| <= max|w_i| ||delta||_1
    assert cf1.l1 <= d1 * 1.10
    assert cf1.changed_fraction <= 3 / 64
    assert cf2.changed_fraction > 0.5
    assert cf1.l1 < cf2.l1


def test_reported_distances_match_the_returned_point():
    model, x, _, _ = linear_problem(3)
    cf = image_counterfactual(model, x)
    delta = cf.x_cf - x
    assert cf.x_cf.shape == x.shape
    assert cf.l1 == pytest.approx(float(delta.abs().sum()), rel=1e-5)
    assert cf.l2 == pytest.approx(float(delta.norm()), rel=1e-5)
    assert cf.changed_fraction == pytest.approx(float((delta.abs() > 1e-3).float().mean()))
    with torch.no_grad():
        assert int(model(cf.x_cf).argmax()) == cf.cf_class
    assert json.loads(json.dumps(cf.to_dict(include_tensors=True), allow_nan=False))["valid"] is True


def test_custom_input_range_is_respected():
    model, x, _, _ = linear_problem(4, gap_in_l1_steps=3.0)  # far: the box must bind
    x2 = x * 2 - 1  # the same pattern on [-1, 1]
    cf = image_counterfactual(model, x2, input_range=(-1.0, 1.0), distance="l1")
    assert float(cf.x_cf.min()) >= -1.0 and float(cf.x_cf.max()) <= 1.0
    with pytest.raises(ValueError, match="outside input_range"):
        image_counterfactual(model, x2)  # default (0, 1) does not contain x2


def test_smallcnn_counterfactuals_valid_in_range_and_l1_sparser(trained_cnn):
    model, x, _ = trained_cnn
    x = x[:8]
    calls = []
    l2 = image_counterfactuals(model, x, distance="l2", batch_size=4, progress=lambda f, m: calls.append(f), **FAST)
    l1 = image_counterfactuals(model, x, distance="l1", batch_size=8, **FAST)
    assert calls == [0.5, 1.0]
    for res in (l2, l1):
        assert len(res) == 8
        assert res.validity >= 0.9
        for cf in res:
            assert float(cf.x_cf.min()) >= 0.0 and float(cf.x_cf.max()) <= 1.0
            if cf.valid:
                assert cf.cf_class != cf.original_class
    assert l1.sparsity < 0.5 * l2.sparsity
    assert l1.proximity_l1 < l2.proximity_l1
    with torch.no_grad():
        orig = model(x).argmax(1)
    assert [c.original_class for c in l2] == orig.tolist()


def test_refinement_only_shrinks_and_sparsifies(trained_cnn):
    model, x, _ = trained_cnn
    refined = image_counterfactuals(model, x[:5], distance="l1", **FAST)
    raw = image_counterfactuals(model, x[:5], distance="l1", refine=False, **FAST)
    for a, b in zip(refined, raw):
        assert a.valid == b.valid
        assert a.l1 <= b.l1 + 1e-6 and a.changed_fraction <= b.changed_fraction
    assert refined.sparsity < raw.sparsity


def test_targeted_counterfactual_reaches_the_target(trained_cnn):
    model, x, _ = trained_cnn
    cf = image_counterfactual(model, x[:1], target=2, **FAST)
    assert cf.original_class != 2
    assert cf.valid and cf.cf_class == 2 and cf.target == 2
    with pytest.raises(ValueError, match="already predicts"):
        image_counterfactual(model, x[:1], target=cf.original_class)


def test_diverse_counterfactuals_differ(trained_cnn):
    model, x, _ = trained_cnn
    top = diverse_counterfactuals(model, x[:1], k=2, **FAST)
    assert top.validity == 1.0
    assert len({c.cf_class for c in top}) == 2  # the two other classes
    assert top.diversity_l2 > 0
    free = diverse_counterfactuals(model, x[1:2], k=3, targets=None, seed=1, **FAST)
    assert free.validity >= 2 / 3
    points = torch.cat([c.x_cf for c in free]).flatten(1)
    assert torch.cdist(points, points)[torch.triu_indices(3, 3, 1).unbind()].min() > 1e-3
    json.dumps(free.to_dict(), allow_nan=False)


def test_model_is_left_untouched(trained_cnn):
    model, x, _ = trained_cnn
    before = [p.detach().clone() for p in model.parameters()]
    image_counterfactual(model, x[:1], distance="l1", **FAST)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    assert not model.training


def test_impossible_flip_is_reported_invalid():
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.tensor([2.0, 0.0]))

        def forward(self, x):
            return self.bias.expand(len(x), 2) + 0 * x.flatten(1).sum(1, keepdim=True)

    cf = image_counterfactual(Constant().eval(), torch.rand(1, 1, 4, 4), restarts=1, max_iter=40, binary_steps=2)
    assert not cf.valid and cf.cf_class == cf.original_class == 0
    assert cf.margin > 0
    assert float(cf.x_cf.min()) >= 0 and float(cf.x_cf.max()) <= 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"x": torch.rand(2, 1, 8, 8)}, ValueError, "one sample"),
        ({"x": torch.rand(1, 8, 8)}, ValueError, r"\[N, C, H, W\]"),
        ({"x": torch.rand(1, 1, 8, 8) + 2}, ValueError, "outside input_range"),
        ({"distance": "linf"}, ValueError, "distance must be"),
        ({"target": 5}, ValueError, "not a class index"),
        ({"lr": 0}, ValueError, "lr must be > 0"),
        ({"steps": 3}, TypeError, "unknown option"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    model, x, _, _ = linear_problem(0)
    args = {"x": x, **kwargs}
    with pytest.raises(error, match=match):
        image_counterfactual(model, **args)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda_and_returns_on_the_input_device(trained_cnn):
    model, x, _ = trained_cnn
    import copy

    gpu_model = copy.deepcopy(model).cuda()
    cf = image_counterfactual(gpu_model, x[:1].cuda(), **FAST)
    assert cf.x_cf.device.type == "cuda" and cf.valid
    batch = image_counterfactuals(gpu_model, x[:4], **FAST)
    assert batch.validity >= 0.75 and batch[0].x_cf.device.type == "cpu"
