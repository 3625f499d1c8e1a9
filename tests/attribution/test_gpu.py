"""CUDA runs agree with CPU runs (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from audit.attribution import explain
from audit.models.zoo import SmallCNN

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_cuda_matches_cpu_and_reports_peak_memory():
    torch.manual_seed(0)
    model = SmallCNN(width=8).eval()
    x = torch.rand(2, 1, 32, 32)
    methods = ["saliency", "gradcam", "integrated_gradients", "smoothgrad", "occlusion"]
    opts = dict(ig_steps=8, sg_samples=4, occlusion_window=8, occlusion_stride=8)
    cpu = explain(model, x, 3, methods, **opts)
    gpu = explain(model.cuda(), x, 3, methods, **opts)
    for m in methods:
        out = gpu.maps[m]
        assert out.is_cuda
        torch.testing.assert_close(out.cpu(), cpu.maps[m], rtol=1e-3, atol=1e-5)
        assert gpu.info[m].peak_mem_bytes is not None and gpu.info[m].peak_mem_bytes > 0


def test_cuda_fast_path_reports_its_guard():
    torch.manual_seed(0)
    model = SmallCNN(width=8).eval().cuda()
    res = explain(model, torch.rand(2, 1, 32, 32), 0, ["saliency", "integrated_gradients"], ig_steps=8, fast=True)
    assert res.fast_path.rank_corr is not None
    assert torch.isfinite(res.maps["integrated_gradients"]).all()
