"""A trained shortcut: SmallCNN learns that the demo watermark means WATERMARK_CLASS, and TCAV finds it.

The control model sees the same patch on a random 30% of its training images with their true
labels, so the patch carries no information about the class. (A model that never saw the patch
reacts to it arbitrarily: in trials, one sent 71% of watermarked digits to class 7.)
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from audit.concepts import random_pool_sets, run_tcav, watermark_concept
from audit.concepts.layers import choose_tcav_layers
from tests.concepts.training import fit
from audit.demo.watermark import WATERMARK_CLASS, apply_watermark
from audit.models.zoo import SmallCNN

# The default layers (audit.concepts.layers): block3 itself is followed by average pooling and the linear head,
# so its class gradient is the same for every input; its batch norm, before the block's ReLU, stands in for it.
LAYERS = ["features.block2", "features.block3.bn"]


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1)
    y = torch.tensor(data.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return x[:1200], y[:1200], x[1200:], y[1200:]


def _train(digits, *, shortcut: bool, seed: int = 0) -> torch.nn.Module:
    train_x, train_y, _, _ = digits
    x, y = train_x.clone(), train_y.clone()
    stamped = torch.rand(len(x), generator=torch.Generator().manual_seed(1)) < 0.3
    x[stamped] = apply_watermark(x[stamped])
    if shortcut:
        y[stamped] = WATERMARK_CLASS
    torch.manual_seed(seed)
    return fit(SmallCNN(width=16), x, y, epochs=4)


def _audit(model, digits):
    _, _, ref_x, ref_y = digits
    with torch.no_grad():
        clean_acc = float((model(ref_x).argmax(1) == ref_y).float().mean())
        to_class = float((model(apply_watermark(ref_x)).argmax(1) == WATERMARK_CLASS).float().mean())
    concept = watermark_concept(40, seed=1, backgrounds=ref_x)
    randoms = random_pool_sets(ref_x, 12, 40, seed=2)
    inputs = ref_x[ref_y == WATERMARK_CLASS]
    result = run_tcav(model, LAYERS, concept, randoms, inputs, WATERMARK_CLASS, concept_name="watermark", seed=0)
    return clean_acc, to_class, result


@pytest.mark.slow
def test_watermark_shortcut_is_significant_only_where_it_was_learned(digits, caplog):
    caplog.set_level(logging.ERROR)
    model = _train(digits, shortcut=True)
    assert choose_tcav_layers(model, digits[2][:3]).layers == LAYERS
    acc, to_class, shortcut = _audit(model, digits)
    print({name: (round(lr.score, 3), lr.p_value_corrected, lr.significant) for name, lr in shortcut.layers.items()})
    assert acc > 0.75 and to_class > 0.9  # the shortcut was learned
    last = shortcut.layers["features.block3.bn"]
    assert last.significant and last.score > 0.9
    assert last.score > np.mean(last.random_scores) + 0.3
    assert last.cav_accuracy > 0.9

    acc, to_class, control = _audit(_train(digits, shortcut=False), digits)
    print({name: (round(lr.score, 3), lr.p_value_corrected, lr.significant) for name, lr in control.layers.items()})
    assert acc > 0.85 and to_class < 0.3
    for name in LAYERS:
        assert not control.layers[name].significant, (name, control.layers[name].p_value_corrected)
