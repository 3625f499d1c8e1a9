"""A small architecture from outside torchvision and the project zoo, for the "any architecture" tests:
imported by path (``tests.models.custom_arch:TinyResNet``), exported with torch.export, and to ONNX."""

from __future__ import annotations

import torch
from torch import nn

NOT_A_CALLABLE = 42


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


class TinyResNet(nn.Module):
    """Stem, two residual stages (the second strided), global average pooling, a linear head."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.stage1 = ResidualBlock(width)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.stage2 = ResidualBlock(2 * width)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(torch.relu(self.down(self.stage1(self.stem(x)))))
        return self.head(x.mean(dim=(2, 3)))


def tiny_resnet(**kwargs: int) -> TinyResNet:
    """A factory, as packages often expose them."""
    return TinyResNet(**kwargs)


def not_a_module() -> str:
    return "a string, not a model"


def trained(seed: int = 0, **kwargs: int) -> TinyResNet:
    """Seeded weights with non-trivial BatchNorm statistics (eval mode), so formats have something to get wrong."""
    torch.manual_seed(seed)
    model = TinyResNet(**kwargs)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return model.eval()
