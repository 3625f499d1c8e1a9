"""The internal batch follows the memory budget (AUDIT_MEMORY_MB), and chunking changes no result."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from audit.attribution import attribute
from audit.attribution.context import ExplainContext
from audit.attribution.memory import cpu_budget_bytes
from audit.attribution.options import AttributionOptions


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()


def test_env_sets_the_budget_and_bad_values_are_refused():
    assert cpu_budget_bytes({"AUDIT_MEMORY_MB": "3"}) == 3 << 20
    assert 0 < cpu_budget_bytes({}) <= 1 << 30
    for bad in ("-1", "lots"):
        with pytest.raises(ValueError, match="AUDIT_MEMORY_MB"):
            cpu_budget_bytes({"AUDIT_MEMORY_MB": bad})


def test_chunk_size_follows_the_budget(monkeypatch):
    x = torch.rand(2, 3, 24, 24)
    sizes = {}
    for mb in ("0.5", "2"):
        monkeypatch.setenv("AUDIT_MEMORY_MB", mb)
        ctx = ExplainContext(model=_model(), inputs=x, targets=torch.tensor([0, 1]),
                             options=AttributionOptions.from_kwargs())
        per = ctx.sample_bytes() * 3
        sizes[mb] = ctx.chunk(with_grad=True)
        assert sizes[mb] == max(1, min(64, int(float(mb) * (1 << 20)) // per))
    assert sizes["0.5"] < sizes["2"]


@pytest.mark.parametrize("method", ["integrated_gradients", "smoothgrad", "occlusion"])
def test_chunked_equals_one_batch(monkeypatch, method):
    model = _model()
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 3])
    opts = dict(ig_steps=16, sg_samples=8, occlusion_window=8, occlusion_stride=8)
    monkeypatch.setenv("AUDIT_MEMORY_MB", "0.05")  # a few samples per evaluation
    small = attribute(model, x, t, methods=[method], **opts)[method]
    big = attribute(model, x, t, methods=[method], batch_size=64, **opts)[method]
    assert small.abs().sum() > 0
    torch.testing.assert_close(small, big, atol=1e-5, rtol=1e-4)
