"""Issue 21, "Must show": the pretrained classifier registered by import path, as a ``torch.export`` archive
and as TorchScript through the command line. Every format scores the photographs as the independent oracle
does; Grad-CAM and Integrated Gradients run on the import-path and ``.pt2`` versions and give the same maps;
the import-path version and its ``.pt2`` child do not drift."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audit.bench import pretrained as P
from tests.e2e_pretrained.test_pretrained_audit import DATASET, FAMILY, _floats, import_photos, register_pretrained

pytestmark = pytest.mark.slow


def _archives(tmp_path, weights):  # noqa: ANN001, ANN202
    """The package's model exported by its user: a .pt2 archive (any batch size) and a TorchScript trace."""
    from efficientnet_lite_pytorch.model import EfficientNet

    model = EfficientNet.from_name(**P.ARCH_KWARGS)
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    x = torch.randn(2, 3, *P.CROP)
    ep = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    pt2, ts = tmp_path / "effnet-lite0.pt2", tmp_path / "effnet-lite0.ts"
    torch.export.save(ep, str(pt2))
    torch.jit.trace(model, x).save(str(ts))
    return pt2, ts


def _register_archive(cli, flag: str, path, version: str, labels_file, parent: str | None = None) -> None:  # noqa: ANN001
    cli("register", "--family", FAMILY, "--version", version, "--task", "image-classification", flag, str(path),
        "--labels", str(labels_file), "--resize", str(P.RESIZE), "--crop", ",".join(map(str, P.CROP)),
        "--mean", _floats(P.MEAN), "--std", _floats(P.STD), *(["--parent", parent] if parent else []))


def test_import_path_pt2_and_torchscript_agree_and_explain(pretrained_photos, audit_home, cli, tmp_path):
    from audit.services.analyses.drift.service import compute_drift
    from audit.services.analyses.explanations.service import explain_image
    from audit.services.core.predict import predict_dataset

    photos, oracle = pretrained_photos.photos, pretrained_photos.oracle
    register_pretrained(cli, pretrained_photos.weights, photos.labels_file)  # version "1"
    pt2, ts = _archives(tmp_path, pretrained_photos.weights)
    _register_archive(cli, "--exported", pt2, "2", photos.labels_file, parent="1")
    _register_archive(cli, "--torchscript", ts, "3", photos.labels_file)
    formats = {v["version"]: v["format"] for m in json.loads(cli("models", "--json")) if m["family"] == FAMILY
               for v in m["versions"]}
    assert formats == {"1": "import_path", "2": "exported", "3": "torchscript"}
    import_photos(cli, photos)

    probs = {}
    for version in ("1", "2", "3"):
        p = predict_dataset(FAMILY, version, DATASET)
        accuracy = float(np.mean(p.predicted == np.asarray(p.labels)))
        assert accuracy == oracle.accuracy, (version, accuracy, oracle.accuracy)
        probs[version] = p.probabilities
    assert np.allclose(probs["2"], probs["1"], atol=1e-5) and np.allclose(probs["3"], probs["1"], atol=1e-5)

    from audit.services.core.datasets import sample_index

    key = sample_index(DATASET).keys[0]
    maps = {v: explain_image(FAMILY, v, methods=["gradcam", "integrated_gradients"], dataset=DATASET,
                             sample_key=key, options={"ig_steps": 8}).maps for v in ("1", "2")}
    for method in ("gradcam", "integrated_gradients"):
        a, b = (np.asarray(maps[v][method].attribution) for v in ("1", "2"))
        assert np.abs(a).sum() > 0, method
        assert np.allclose(a, b, atol=1e-4 * np.abs(a).max()), method

    drift = compute_drift(FAMILY, "1", "2", dataset=DATASET, methods=["saliency"], limit=4)
    assert drift["flagged"] is False, drift["flags"]
