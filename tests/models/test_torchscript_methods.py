"""A TorchScript model takes no forward hooks: every method that needs none runs through the explain
service and gives the maps of the same weights loaded into the eager architecture; the layer methods are
skipped with their reason, never the whole request."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from audit.services.core.datasets import add_image_dataset
from audit.services.analyses.explanations.service import explain_image
from audit.services.core.registry import ModelSource, register_version
from tests.models.custom_arch import trained
from tests.models.model_files import IMPORT_PATH, LABELS, SHAPE, SPEC

HOOK_FREE = ["saliency", "grad_x_input", "smoothgrad", "integrated_gradients", "occlusion", "rise", "lime", "shap"]
LAYER_METHODS = ["cam", "gradcam", "gradcam_pp", "scorecam"]
OPTIONS = {"sg_samples": 4, "ig_steps": 8, "occlusion_window": 8, "occlusion_stride": 8, "rise_masks": 64,
           "lime_samples": 40, "lime_segments": 12, "shap_samples": 8, "seed": 0}


@pytest.fixture()
def two_formats(audit_home, tmp_path):
    model = trained(7)
    weights = tmp_path / "tiny.safetensors"
    save_file(model.state_dict(), str(weights))
    scripted = tmp_path / "tiny.ts.pt"
    torch.jit.save(torch.jit.script(model), str(scripted))
    for version, source in (("eager", ModelSource("import_path", weights, IMPORT_PATH, {})),
                            ("script", ModelSource("torchscript", scripted))):
        register_version(family="tiny", version=version, task="image-classification", source=source, labels=LABELS,
                         input_spec=SPEC)
    images = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(8))
    add_image_dataset("ref", images, [0, 1], [{}, {}], label_names=LABELS)
    return model


def test_hook_free_methods_run_on_torchscript_and_equal_the_eager_weights(two_formats):
    methods = HOOK_FREE + LAYER_METHODS
    script = explain_image("tiny", "script", methods=methods, dataset="ref", sample_key="ref-0001", target=3,
                           options=dict(OPTIONS))
    eager = explain_image("tiny", "eager", methods=methods, dataset="ref", sample_key="ref-0001", target=3,
                          options=dict(OPTIONS))
    assert sorted(script.maps) == sorted(HOOK_FREE)
    assert sorted(script.skipped) == sorted(LAYER_METHODS)
    assert all("TorchScript" in reason and "hooks" in reason for reason in script.skipped.values())
    # The same request on the eager weights runs the layer methods (CAM needs a pooling module, which
    # TinyResNet's mean over the map is not: skipped there for that reason, not for hooks).
    assert set(eager.maps) == set(methods) - {"cam"} and "TorchScript" not in eager.skipped["cam"]
    for method in HOOK_FREE:
        ours, theirs = script.maps[method].attribution, eager.maps[method].attribution
        scale = float(np.abs(theirs).max())
        assert scale > 0, method
        np.testing.assert_allclose(ours, theirs, atol=1e-4 * scale, rtol=1e-3, err_msg=method)


def test_the_full_audit_explains_a_torchscript_model_with_the_methods_that_apply(two_formats):
    from audit.services.analyses.explanations.step import applicable_methods
    from audit.services.analyses.full_audit.service import FullAuditOptions, run_full_audit
    from audit.services.analyses.reports.service import FIGURE_METHODS

    runs, reasons = applicable_methods("tiny", "script", FIGURE_METHODS)
    assert runs == ["integrated_gradients", "saliency"] and sorted(reasons) == ["gradcam", "gradcam_pp"]
    options = FullAuditOptions(explain_limit=2, explain_options={"ig_steps": 8, "seed": 0}, bias_n_boot=5,
                               cf_limit=1, cf_search={"max_iter": 5, "binary_steps": 1, "restarts": 1}, drift_limit=2)
    audit = run_full_audit("tiny", "script", dataset="ref", options=options)
    assert "explanations" in audit.steps and "explanations" not in audit.skipped
    assert "drift" in audit.steps and "drift" not in audit.skipped  # against its parent, the eager weights
    from sqlalchemy import select

    from storage.db import transaction
    from storage.orm import Explanation

    run_id = audit.results["explanations"][0]
    with transaction() as s:
        stored = sorted(set(s.scalars(select(Explanation.method).where(Explanation.run_id == run_id))))
    assert stored == ["integrated_gradients", "saliency"]
