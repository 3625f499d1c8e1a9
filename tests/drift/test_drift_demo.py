"""On the demo registry, digits-cnn version 2 (trained with the watermark shortcut) drifts from version 1."""

from __future__ import annotations

import json


def test_demo_digits_cnn_drift_is_flagged(in_demo, capsys):
    from audit.cli import main

    rc = main(["drift", "--family", "digits-cnn", "--base", "1", "--new", "2", "--json", "--limit", "24",
               "--methods", "saliency,gradcam,integrated_gradients", "--ig-steps", "16"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["flagged"] is True and out["samples"] == 24
    # The explanations themselves moved, not only the accuracy metrics.
    assert out["flagged_methods"], out["methods"]
    for m in out["flagged_methods"]:
        d = out["methods"][m]
        assert d["rank_correlation"]["mean"] < 0.7 or d["topk_iou"]["mean"] < 0.5
    assert any(d["name"] == "reference_accuracy_watermarked" and d["flagged"] for d in out["metrics"])
