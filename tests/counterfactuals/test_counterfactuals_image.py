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
        with torch.no_grad():
            fed_back = model(torch.cat([cf.x_cf for cf in res])).argmax(1).tolist()
        for cf, cls in zip(res, fed_back):
            assert cls == cf.cf_class  # the reported class is the model's on the returned point
            assert cf.valid == (cls != cf.original_class)
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


# --- per-channel ranges and the shown (8-bit) image ---------------------------------------------------

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
CH_LOW = ((0 - IMAGENET_MEAN) / IMAGENET_STD).flatten().tolist()
CH_HIGH = ((1 - IMAGENET_MEAN) / IMAGENET_STD).flatten().tolist()


def shown(x_cf: torch.Tensor) -> torch.Tensor:
    """The model input of the 8-bit image that is shown for x_cf (unnormalise, clamp, round, normalise)."""
    u8 = ((x_cf * IMAGENET_STD + IMAGENET_MEAN).clamp(0, 1) * 255).round()
    return (u8 / 255 - IMAGENET_MEAN) / IMAGENET_STD


def red_heavy_linear() -> tuple[nn.Module, torch.Tensor]:
    """2 classes on 3x8x8; class 1 gains 1.0 per unit of red and 0.2 per unit of green (normalised).

    The red pixels start at 0.9, so red can rise by only 0.437 (normalised) before leaving its range
    [-2.118, 2.249]; the flip needs more than that, so the search must use green too. Under the global
    range [min low, max high] = [-2.118, 2.640], red alone could go far enough."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 2)).eval()
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[1, :64] = 1.0
        model[1].weight[1, 64:128] = 0.2
        model[1].bias.zero_()
    pixels = torch.full((1, 3, 8, 8), 0.5)
    pixels[:, 0] = 0.9
    x = (pixels - IMAGENET_MEAN) / IMAGENET_STD
    with torch.no_grad():
        f = float(model(x)[0, 1] - model(x)[0, 0])
        room_red = 64 * (CH_HIGH[0] - float(x[0, 0, 0, 0]))
        model[1].bias[0] = f + 1.3 * room_red  # class 0 by 1.3x what red alone can make up
    return model, x


def test_each_channel_stays_in_its_own_range_under_imagenet_normalisation():
    model, x = red_heavy_linear()
    cf = image_counterfactual(model, x, input_range=(CH_LOW, CH_HIGH), **FAST)
    assert cf.valid and cf.cf_class == 1
    for c in range(3):
        assert float(cf.x_cf[0, c].min()) >= CH_LOW[c] - 1e-5, c
        assert float(cf.x_cf[0, c].max()) <= CH_HIGH[c] + 1e-5, c
    assert float(cf.x_cf[0, 0].min()) == pytest.approx(CH_HIGH[0], abs=2e-3)  # red (nearly) pinned at its top
    assert float((cf.x_cf - x)[0, 1].mean()) > 0.1  # so green had to move
    assert torch.equal(cf.x_cf[0, 2], x[0, 2])  # blue has no weight: untouched
    # The same search with one range for all channels pushes red past its own top (what per-channel fixes).
    loose = image_counterfactual(model, x, input_range=(min(CH_LOW), max(CH_HIGH)), **FAST)
    assert float(loose.x_cf[0, 0].max()) > CH_HIGH[0] + 0.05


def test_input_outside_its_channel_range_is_rejected():
    x = (torch.full((1, 3, 4, 4), 0.5) - IMAGENET_MEAN) / IMAGENET_STD
    x[0, 0] = CH_HIGH[0] + 0.1  # inside the global range, outside red's
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 2)).eval()
    with pytest.raises(ValueError, match="in channel 0, outside input_range"):
        image_counterfactual(model, x, input_range=(CH_LOW, CH_HIGH))
    with pytest.raises(ValueError, match="3 channels"):
        image_counterfactual(model, x, input_range=([0.0, 0.0], [1.0, 1.0]))
    with pytest.raises(ValueError, match="levels must be"):
        image_counterfactual(model, x, input_range=(min(CH_LOW), max(CH_HIGH)), levels=1)


@pytest.fixture(scope="module")
def rgb_problem():
    from audit.models.zoo import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(in_channels=3, num_classes=3, width=8).eval()
    g = torch.Generator().manual_seed(3)
    pixels = (torch.rand(12, 3, 16, 16, generator=g) * 255).round() / 255
    return model, (pixels - IMAGENET_MEAN) / IMAGENET_STD


def test_valid_counterfactuals_flip_when_the_shown_8bit_image_is_fed_back(rgb_problem):
    model, x = rgb_problem
    res = image_counterfactuals(model, x, input_range=(CH_LOW, CH_HIGH), levels=256, **FAST)
    valid = [cf for cf in res if cf.valid]
    assert len(valid) >= 6  # 8 of 12 measured
    for cf in valid:
        with torch.no_grad():
            assert int(model(shown(cf.x_cf)).argmax()) == cf.cf_class != cf.original_class
        grid = (cf.x_cf * IMAGENET_STD + IMAGENET_MEAN) * 255
        assert torch.allclose(grid, grid.round(), atol=1e-3)  # x_cf is itself the 8-bit image
    # Without the grid, the search stops right at the boundary and 8-bit rounding undoes the flip.
    free = image_counterfactuals(model, x, input_range=(CH_LOW, CH_HIGH), **FAST)
    with torch.no_grad():
        undone = [cf for cf in free if cf.valid and int(model(shown(cf.x_cf)).argmax()) == cf.original_class]
    assert len(undone) >= 1  # all 8 of 8 measured


def test_grid_without_refinement_still_judges_the_shown_image(rgb_problem):
    model, x = rgb_problem
    res = image_counterfactuals(model, x[:6], input_range=(CH_LOW, CH_HIGH), levels=256, refine=False, **FAST)
    assert sum(cf.valid for cf in res) >= 3
    for cf in res:
        with torch.no_grad():
            assert (int(model(shown(cf.x_cf)).argmax()) != cf.original_class) == cf.valid


@pytest.mark.parametrize("distance", ["l2", "l1"])
def test_a_samples_counterfactual_does_not_depend_on_its_batch(trained_cnn, distance):
    """Each row leaves the search on its own convergence test and draws its restarts from (seed, sample):
    the counterfactual of sample i is the same searched alone, first, or beside other samples."""
    model, x, _ = trained_cnn
    X = x[:5]
    opts = {"restarts": 2, "max_iter": 60, "binary_steps": 2}
    together = image_counterfactuals(model, X, distance=distance, seed=3, **opts).items
    reordered = image_counterfactuals(model, X.flip(0), distance=distance, seed=3, batch_size=2, **opts).items[::-1]
    for i in range(len(X)):
        alone = image_counterfactual(model, X[i:i + 1], distance=distance, seed=3, **opts)
        for other in (together[i], reordered[i]):
            assert other.valid == alone.valid and other.cf_class == alone.cf_class
            assert other.iterations == alone.iterations
            torch.testing.assert_close(other.x_cf, alone.x_cf, atol=1e-5, rtol=0)
    # The rows did not all run for the same number of iterations: some stopped early on their own.
    assert len({c.iterations for c in together}) > 1
