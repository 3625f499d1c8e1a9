"""Project architectures used by the embedded demo.

Each entry is built from a name plus keyword arguments, so a stored model version can be rebuilt
from its metadata and a safetensors file without unpickling anything.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn


class SmallCNN(nn.Module):
    """A compact CNN with global average pooling, so class activation maps (CAM) apply.

    Layout: ``features`` (three conv-batchnorm-relu blocks named ``block1..block3``; ``block3.conv`` is the last
    convolution), ``pool`` (global average pooling) and ``fc`` (the linear classifier).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential()
        chans = [in_channels, width, width * 2, width * 2]
        for i in range(3):
            block = nn.Sequential()
            block.add_module("conv", nn.Conv2d(chans[i], chans[i + 1], 3, padding=1))
            block.add_module("bn", nn.BatchNorm2d(chans[i + 1]))
            block.add_module("relu", nn.ReLU())
            if i < 2:
                block.add_module("pool", nn.MaxPool2d(2))
            self.features.add_module(f"block{i + 1}", block)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(chans[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def _torchvision(name: str) -> Callable[..., nn.Module]:
    def build(**kwargs: Any) -> nn.Module:
        import torchvision

        return torchvision.models.get_model(name, weights=None, **kwargs)

    return build


ZOO: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": SmallCNN,
}


def build_architecture(name: str, **kwargs: Any) -> nn.Module:
    """Build an untrained module by zoo name (``small_cnn``) or torchvision model name (``resnet18``)."""
    if name in ZOO:
        return ZOO[name](**kwargs)
    import torchvision

    if name not in torchvision.models.list_models():
        raise ValueError(
            f"unknown architecture {name!r}: use one of the project zoo ({', '.join(sorted(ZOO))}) "
            "or a torchvision model name such as 'resnet18'"
        )
    return _torchvision(name)(**kwargs)
