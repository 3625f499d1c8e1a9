"""Incremental occlusion: each window re-evaluated on its region of influence only, against full
forwards of the occluded images."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from audit.attribution import explain
from audit.attribution.incremental import IncrementalModel
from audit.attribution.methods.occlusion import window_count
from audit.attribution.optimize import build_inference_copy


class Awkward(nn.Module):
    """Layers whose geometry the crop path must get right: a 5x5 stride-2 conv, dilation, groups,
    an unpadded conv, a padded max-pool, a residual sum of branches with different reach, a
    squeeze-excitation gate (global pooling mid-network) and a function-style ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.BatchNorm2d(8), nn.ReLU())
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.dilated = nn.Conv2d(8, 8, 3, padding=2, dilation=2)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.valid = nn.Conv2d(8, 12, 3, padding="valid")
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(12, 12, 1), nn.Sigmoid())
        self.head = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stem(x))
        x = torch.relu(self.dilated(x) + self.grouped(x))
        x = self.valid(x)
        x = x * self.se(x)
        return self.head(x.mean((2, 3)))


def _seeded(model: nn.Module, seed: int = 0, size: tuple[int, int] = (48, 56)) -> nn.Module:
    """Seeded weights; BatchNorm statistics from a few random batches, so that activations stay
    normalised through the depth and the logits follow the input."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # a plain average of the batches below
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, *size))
    return model.eval()


def _full_forward(gm: nn.Module, clean: torch.Tensor, image: list[int], crops: torch.Tensor, oy: list[int],
                  ox: list[int]) -> torch.Tensor:
    x = clean[image].clone()
    size = crops.shape[-1]
    for i, (y, c) in enumerate(zip(oy, ox)):
        x[i, :, y:y + size, c:c + size] = crops[i]
    with torch.no_grad():
        return gm(x.contiguous(memory_format=torch.channels_last))


@pytest.mark.parametrize("arch", ["awkward", "resnet18", "mobilenet_v3_small"])
def test_crops_anywhere_give_the_full_forwards_logits(arch):
    model = {"awkward": lambda: Awkward(), "resnet18": lambda: torchvision.models.resnet18(num_classes=7),
             "mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(num_classes=7)}[arch]()
    gm = build_inference_copy(_seeded(model))
    gen = torch.Generator().manual_seed(1)
    clean = torch.randn(3, 3, 48, 56, generator=gen).contiguous(memory_format=torch.channels_last)
    size = 9
    # corners on every border, in the middle, and off the stride grid
    oy = [0, 0, 48 - size, 48 - size, 17, 3, 30, 39]
    ox = [0, 56 - size, 0, 56 - size, 23, 40, 5, 11]
    image = [0, 1, 2, 0, 1, 2, 0, 1]
    crops = torch.randn(len(oy), 3, size, size, generator=gen)
    expected = _full_forward(gm, clean, image, crops, oy, ox)
    with torch.no_grad():
        got = IncrementalModel(gm, clean).scores(image, crops, oy, ox)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # the crops matter: the clean images give other logits
    with torch.no_grad():
        assert (gm(clean[image]) - expected).abs().max() > 1e-3


def test_a_crop_path_that_never_materialises_stays_exact():
    """With materialisation only at the layers that mix all positions, the crops run through every
    convolution of the network."""
    gm = build_inference_copy(_seeded(torchvision.models.resnet18(num_classes=4), size=(64, 64)))
    clean = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    crops = torch.randn(4, 3, 8, 8)
    image, oy, ox = [0, 1, 1, 0], [0, 56, 20, 33], [56, 0, 20, 7]
    with torch.no_grad():
        got = IncrementalModel(gm, clean, materialise_fraction=1.0).scores(image, crops, oy, ox)
    torch.testing.assert_close(got, _full_forward(gm, clean, image, crops, oy, ox), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("window,stride", [(16, 16), (12, 10)])
def test_incremental_occlusion_equals_full_forwards(window, stride, monkeypatch):
    model = _seeded(torchvision.models.resnet18(num_classes=6), size=(64, 72))
    x = torch.randn(2, 3, 64, 72)
    calls = []
    original = IncrementalModel.scores

    def spy(self, *args, **kwargs):
        calls.append(len(args[0]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(IncrementalModel, "scores", spy)
    opts = dict(occlusion_window=window, occlusion_stride=stride, optimize=True, batch_size=16)
    full = explain(model, x, None, ["occlusion"], incremental=False, **opts)
    assert calls == []
    inc = explain(model, x, None, ["occlusion"], **opts)
    assert sum(calls) == 2 * window_count(64, 72, window, stride)  # every window, as a crop
    # plus one clean forward of the two images, whose activations the crops are written into, and the
    # one-sample probe that sizes those kept activations to the memory budget
    assert inc.info["occlusion"].forward_samples == full.info["occlusion"].forward_samples + 2 + 1
    assert "re-evaluated as crops" in inc.optimized and "crops" not in full.optimized
    torch.testing.assert_close(inc.maps["occlusion"], full.maps["occlusion"], rtol=1e-4, atol=1e-5)
    assert full.maps["occlusion"].abs().max() > 1e-3


def test_the_clean_activations_kept_follow_the_memory_budget(monkeypatch):
    """A budget that holds one image's clean activations: one incremental copy per image, same map."""
    model = _seeded(torchvision.models.resnet18(num_classes=6), size=(64, 64))
    x = torch.randn(3, 3, 64, 64)
    held = []
    original = IncrementalModel.__init__

    def spy(self, gm, clean, *args, **kwargs):
        held.append(clean.shape[0])
        original(self, gm, clean, *args, **kwargs)

    monkeypatch.setattr(IncrementalModel, "__init__", spy)
    opts = dict(occlusion_window=16, occlusion_stride=16, optimize=True, batch_size=8)
    whole = explain(model, x, None, ["occlusion"], **opts)
    assert held == [3]
    held.clear()
    from audit.attribution.context import ExplainContext

    monkeypatch.setattr(ExplainContext, "budget_bytes", lambda self: 3 * self.sample_bytes())
    split = explain(model, x, None, ["occlusion"], **opts)
    assert held == [1, 1, 1]
    torch.testing.assert_close(split.maps["occlusion"], whole.maps["occlusion"], rtol=1e-4, atol=1e-5)


def test_occlusion_with_a_blur_fill_and_the_awkward_model_matches_full_forwards():
    model = _seeded(Awkward(), size=(40, 40))
    x = torch.randn(3, 3, 40, 40)
    opts = dict(occlusion_window=8, occlusion_stride=6, occlusion_baseline="blur", optimize=True)
    full = explain(model, x, None, ["occlusion"], incremental=False, **opts)
    inc = explain(model, x, None, ["occlusion"], **opts)
    torch.testing.assert_close(inc.maps["occlusion"], full.maps["occlusion"], rtol=1e-4, atol=1e-5)


def test_models_the_copy_does_not_serve_use_full_forwards(monkeypatch):
    """No optimised copy (optimize=False) or the bf16 path: occlusion evaluates whole images."""
    monkeypatch.setattr(IncrementalModel, "scores", lambda *a, **k: pytest.fail("crop path used"))
    model = _seeded(torchvision.models.resnet18(num_classes=3), size=(32, 32))
    x = torch.randn(1, 3, 32, 32)
    explain(model, x, None, ["occlusion"], occlusion_window=8, occlusion_stride=8, optimize=False)
    explain(model, x, None, ["occlusion"], occlusion_window=8, occlusion_stride=8, optimize=True, fast=True,
            fast_min_rank_corr=-1.0)


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_any_materialisation_point_gives_the_full_forwards_logits(fraction):
    """Pasting crops back at the first layer, midway, or only where positions mix: the same logits
    (MobileNetV3 has in-place activations after each convolution)."""
    gm = build_inference_copy(_seeded(torchvision.models.mobilenet_v3_small(num_classes=5)))
    clean = torch.randn(2, 3, 48, 56).contiguous(memory_format=torch.channels_last)
    crops = torch.randn(3, 3, 9, 9)
    image, oy, ox = [0, 1, 0], [0, 39, 20], [47, 0, 30]
    with torch.no_grad():
        got = IncrementalModel(gm, clean, materialise_fraction=fraction).scores(image, crops, oy, ox)
    torch.testing.assert_close(got, _full_forward(gm, clean, image, crops, oy, ox), rtol=1e-4, atol=1e-5)


def test_an_in_place_layer_over_a_shared_input_is_refused():
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            y = self.conv(x)
            return (self.act(y) + y).mean((2, 3))

    with pytest.raises(ValueError, match="in-place act overwrites conv"):
        IncrementalModel(torch.fx.symbolic_trace(Shared().eval()), torch.zeros(1, 3, 8, 8))


def test_a_graph_with_two_inputs_is_refused_with_its_reason():
    class Two(nn.Module):
        def forward(self, a, b):
            return a + b

    with pytest.raises(ValueError, match="takes 2 inputs"):
        IncrementalModel(torch.fx.symbolic_trace(Two()), torch.zeros(1, 3, 4, 4))


def test_a_crop_path_failure_falls_back_to_whole_images_with_the_same_map_and_counts(monkeypatch, caplog):
    model = _seeded(torchvision.models.resnet18(num_classes=3), size=(32, 32))
    x = torch.randn(1, 3, 32, 32)
    opts = dict(occlusion_window=8, occlusion_stride=8, optimize=True, batch_size=4)
    full = explain(model, x, None, ["occlusion"], incremental=False, **opts)
    calls = []

    def broken(self, image, *args):
        calls.append(len(image))
        if len(calls) == 2:  # after one chunk was counted
            raise RuntimeError("unexpected layer")
        return IncrementalModel.__dict__["_ok"](self, image, *args)

    monkeypatch.setattr(IncrementalModel, "_ok", IncrementalModel.scores, raising=False)
    monkeypatch.setattr(IncrementalModel, "scores", broken)
    got = explain(model, x, None, ["occlusion"], **opts)
    assert len(calls) == 2
    assert "incremental occlusion failed (RuntimeError: unexpected layer)" in caplog.text
    assert "incremental" not in got.optimized
    assert got.info["occlusion"].engine["crops"] is False  # what is stored with the map says so too
    torch.testing.assert_close(got.maps["occlusion"], full.maps["occlusion"], rtol=1e-4, atol=1e-5)
    # the failed crops are not counted; the one-sample memory probe that chose the crop path is
    assert got.info["occlusion"].forward_samples == full.info["occlusion"].forward_samples + 1
