"""Fixtures of the job tests: a tiny registered model with two reference sets."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture()
def queue_home(tiny_image):
    """The tiny model (family 'tiny', version '1'), 'ref' (24 samples) and 'big' (64 samples)."""
    from audit.services.core.datasets import add_image_dataset

    g = torch.Generator().manual_seed(7)
    add_image_dataset("big", torch.rand(64, 1, 32, 32, generator=g), [i % 10 for i in range(64)],
                      [{"site": "A"} for _ in range(64)], label_names=[str(i) for i in range(10)])
    return tiny_image

