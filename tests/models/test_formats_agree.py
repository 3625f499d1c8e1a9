"""The same weights registered in every format give the same predictions and, where layers can be read,
the same Grad-CAM maps as the eager module."""

from __future__ import annotations

import pytest
import torch

from audit.attribution import attribute
from audit.services.core.registry import ModelSource, load_handle, register_version
from tests.models.model_files import IMPORT_PATH, LABELS, SHAPE, SPEC, write_model_files


@pytest.fixture()
def registered(audit_home, tmp_path):
    files = write_model_files(tmp_path / "files", seed=11)
    sources = {
        "import": ModelSource("import_path", files.weights, IMPORT_PATH, {}),
        "exported": ModelSource("exported", files.exported),
        "onnx": ModelSource("onnx", files.onnx),
        "torchscript": ModelSource("torchscript", files.torchscript),
    }
    for version, source in sources.items():
        register_version(family="same", version=version, task="image-classification", source=source, labels=LABELS,
                         input_spec=SPEC)
    return files.model, {v: load_handle("same", v, device="cpu") for v in sources}


def test_every_format_predicts_what_the_module_predicts(registered):
    model, handles = registered
    # Inputs spread over brightness levels, so that the model's answers differ between them.
    noise = torch.randn(8, *SHAPE, generator=torch.Generator().manual_seed(12))
    x = noise * 2 + torch.linspace(-3, 3, 8).view(-1, 1, 1, 1)
    with torch.no_grad():
        expected = torch.softmax(model(x), dim=-1)
    assert expected.argmax(1).unique().numel() > 1  # a model that says one class for all would prove little
    for version, handle in handles.items():
        probs = handle.predict_proba(x)
        assert torch.equal(probs.argmax(1), expected.argmax(1)), version
        assert torch.allclose(probs, expected, atol=1e-6), version


def test_gradcam_on_import_path_and_archive_equals_the_eager_module(registered):
    model, handles = registered
    x = torch.rand(3, *SHAPE, generator=torch.Generator().manual_seed(13))
    targets = torch.tensor([2, 4, 6])
    eager = attribute(model, x, targets, methods=["gradcam"], layer="stage2")["gradcam"]
    assert eager.abs().sum() > 0
    for version in ("import", "exported"):
        handle = handles[version]
        assert handle.target_layer == "stage2"
        ours = attribute(handle.module, x, targets, methods=["gradcam"])["gradcam"]
        assert torch.allclose(ours, eager, atol=1e-6), version


def test_the_same_weights_in_two_formats_do_not_drift(registered, tmp_path):
    """Drift between the import-path version and the .pt2 archive of the same weights (registered as its
    child) on a reference set: Grad-CAM, saliency and IG maps agree, nothing is flagged."""
    from audit.services.core.datasets import add_image_dataset
    from audit.services.analyses.drift.service import compute_drift

    files = write_model_files(tmp_path / "again", seed=11)
    register_version(family="pair", version="1", task="image-classification",
                     source=ModelSource("import_path", files.weights, IMPORT_PATH, {}), labels=LABELS, input_spec=SPEC)
    register_version(family="pair", version="2", task="image-classification",
                     source=ModelSource("exported", files.exported), labels=LABELS, input_spec=SPEC, parent="1")
    g = torch.Generator().manual_seed(5)
    add_image_dataset("pair-ref", torch.rand(6, *SHAPE, generator=g), [i % len(LABELS) for i in range(6)],
                      [{} for _ in range(6)], label_names=LABELS)
    out = compute_drift("pair", "1", "2", dataset="pair-ref", methods=["saliency", "gradcam", "integrated_gradients"])
    assert out["flagged"] is False, out["flags"]
    for method, m in out["methods"].items():
        assert m["flagged"] is False, (method, m)
