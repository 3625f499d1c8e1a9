"""Shared fixtures for the attribution tests: tiny seeded models and inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from audit.models.zoo import SmallCNN


def rank_corr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman correlation by scipy (an oracle independent of the engine's own ranking)."""
    return float(spearmanr(np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel())[0])


@pytest.fixture
def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return SmallCNN(in_channels=1, num_classes=10, width=8).eval()


@pytest.fixture
def gray_batch() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(2, 1, 32, 32)


class TinyNonlinear(nn.Module):
    """Smooth nonlinear model (no ReLU kinks) for completeness checks."""

    def __init__(self, channels: int = 3, size: int = 8, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.fc = nn.Linear(4 * size * size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread per module: on 2 shared, busy cores two OpenMP threads stall on each
    other's barriers (the suite ran ~10x slower); results do not depend on the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class ShiftConv(nn.Module):
    """A 3x3 convolution written as nine shifted elementwise products summed per sample.

    BLAS and oneDNN kernels pick their blocking by batch size, so a real conv's per-sample
    results can change in the last bit with the batch; this one cannot, which lets tests check
    "bitwise unchanged" claims about batching.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) / (3.0 * cin**0.5))
        self.bias = nn.Parameter(0.1 * torch.randn(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        xp = torch.nn.functional.pad(x, (1, 1, 1, 1))
        out = self.bias.view(1, -1, 1, 1).expand(x.shape[0], -1, h, w)
        for i in range(3):
            for j in range(3):
                patch = xp[:, None, :, i : i + h, j : j + w]  # [B, 1, Cin, H, W]
                out = out + (patch * self.weight[None, :, :, i, j, None, None]).sum(2)
        return out


class RowwiseLinear(nn.Linear):
    """nn.Linear computed as a per-row product and sum (no GEMM), for the same reason."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, None, :] * self.weight[None]).sum(-1) + self.bias


class BatchInvariantCNN(nn.Module):
    """Conv-ReLU-pool-conv-ReLU, global average pooling, linear head: a GAP model (CAM applies)
    whose per-sample outputs and gradients do not depend on the batch, bit for bit."""

    def __init__(self, channels: int = 1, classes: int = 5, width: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(
            ShiftConv(channels, width), nn.ReLU(), nn.AvgPool2d(2), ShiftConv(width, width), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = RowwiseLinear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def structured_images(n: int, size: int = 32) -> torch.Tensor:
    """``n`` distinct grey images with edges and regions (scikit-image's bundled photos, crops
    and flips), so that superpixels, occlusion windows and masks all see structure."""
    import skimage.data
    import torch.nn.functional as F

    photos = [skimage.data.camera(), skimage.data.coins(), skimage.data.moon(), skimage.data.text()]
    out = []
    for i in range(n):
        img = torch.as_tensor(photos[i % len(photos)], dtype=torch.float32) / 255.0
        if i >= len(photos):
            img = img.flip(-1)
        img = F.interpolate(img[None, None], size=(size, size), mode="bilinear", align_corners=False,
                            antialias=True)[0]
        out.append(img)
    return torch.stack(out)


@pytest.fixture
def invariant_cnn() -> nn.Module:
    torch.manual_seed(0)
    return BatchInvariantCNN().eval()
