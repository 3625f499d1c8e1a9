"""The counterfactual service on a registered RGB model with ImageNet normalisation: the shown 8-bit image
is what validity is judged on, and the reference-set batch is stored, typed and cached."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.results.counterfactuals import CounterfactualBatch, SampleCounterfactual

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
LABELS = ["a", "b", "c"]
BUDGET = {"max_iter": 100, "restarts": 2, "binary_steps": 5}


@pytest.fixture()
def rgb_registry(audit_home, tmp_path):
    from safetensors.torch import save_file

    from audit.models.zoo import SmallCNN
    from audit.services.core.datasets import add_image_dataset
    from audit.services.core.registry import ModelSource, register_version

    torch.manual_seed(0)
    path = tmp_path / "rgb.safetensors"
    save_file(SmallCNN(in_channels=3, num_classes=3, width=8).state_dict(), str(path))
    register_version(family="rgb", version="1", task="image-classification",
                     source=ModelSource("state_dict", path, "small_cnn", {"width": 8, "in_channels": 3,
                                                                          "num_classes": 3}),
                     labels=LABELS, input_spec={"channels": 3, "height": 16, "width": 16, "mean": MEAN, "std": STD})
    g = torch.Generator().manual_seed(3)
    add_image_dataset("rgb-ref", torch.rand(6, 3, 16, 16, generator=g), [i % 3 for i in range(6)], [{}] * 6,
                      label_names=LABELS)
    return audit_home


def _predict_pixels(pixels_u8: np.ndarray) -> int:
    """Independent of the service: uint8 [C, H, W] -> normalise -> the registered model's class."""
    from audit.services.core.handles import handle_for

    handle = handle_for("rgb", "1")
    x = torch.from_numpy(pixels_u8.astype(np.float32) / 255)[None]
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return int(handle.module(x).argmax())


def test_channel_range_follows_the_input_spec():
    from audit.models.loading import InputSpec
    from audit.services.analyses.counterfactuals.service import channel_range

    low, high = channel_range(InputSpec(channels=3, height=16, width=16, mean=MEAN, std=STD))
    assert low == pytest.approx([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225])
    assert high == pytest.approx([0.515 / 0.229, 0.544 / 0.224, 0.594 / 0.225])
    grey = channel_range(InputSpec(channels=3, height=16, width=16, mean=[0.5], std=[0.25]))
    assert grey == ([-2.0] * 3, [2.0] * 3)


def test_sample_counterfactual_is_judged_on_the_shown_image(rgb_registry):
    from audit.services.analyses.counterfactuals.service import counterfactual_for_sample

    results = [counterfactual_for_sample("rgb", "1", dataset="rgb-ref", sample_key=f"rgb-ref-{i:04d}", **BUDGET)
               for i in range(3)]
    assert all(isinstance(r, SampleCounterfactual) for r in results)
    assert sum(r.valid for r in results) >= 2
    for r in results:
        assert r.counterfactual.dtype == np.uint8 and r.counterfactual.shape == (3, 16, 16)
        assert _predict_pixels(r.original) == r.original_class
        assert _predict_pixels(r.counterfactual) == r.cf_class
        assert r.valid == (r.cf_class != r.original_class)
        assert int(np.argmax(r.probabilities_after)) == r.cf_class
        np.testing.assert_allclose(r.difference, (r.counterfactual.astype(float) - r.original) / 255, atol=1e-6)


def test_reference_batch_is_stored_typed_and_cached(rgb_registry):
    from audit.services.core.runs import get_analysis
    from audit.services.analyses.counterfactuals.service import run_reference_counterfactuals

    calls = []
    batch = run_reference_counterfactuals("rgb", "1", dataset="rgb-ref", limit=4,
                                          progress=lambda f, m: calls.append(f), **BUDGET)
    assert isinstance(batch, CounterfactualBatch) and calls[-1] == 1.0
    assert batch.n == 4 and [o.sample for o in batch.per_sample] == [f"rgb-ref-{i:04d}" for i in range(4)]
    valid = [o for o in batch.per_sample if o.valid]
    assert batch.valid_rate == pytest.approx(len(valid) / 4)
    assert batch.mean_l2 == pytest.approx(np.mean([o.l2 for o in valid]))
    assert all(o.cf != o.original for o in valid)
    assert batch.pixel_levels == 256 and "8-bit" in batch.validity_judged_on
    stored = get_analysis(batch.result_id)
    assert CounterfactualBatch.from_stored(stored).to_summary() == batch.to_summary()
    for key in ("dataset", "n", "valid_rate", "mean_l1", "mean_l2", "mean_changed_fraction"):  # what the report reads
        assert key in stored.summary
    again = run_reference_counterfactuals("rgb", "1", dataset="rgb-ref", limit=4, **BUDGET)
    assert again.result_id == batch.result_id and again.stored.cached
    other = run_reference_counterfactuals("rgb", "1", dataset="rgb-ref", limit=4, **{**BUDGET, "max_iter": 80})
    assert other.result_id != batch.result_id
