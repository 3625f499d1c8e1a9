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


def test_demo_drift_reads_the_stored_concept_tests(in_demo, capsys):
    """After concept tests of both versions, drift 1 -> 2 has their scores and flags the watermark."""
    from audit.cli import main

    for v in ("1", "2"):
        assert main(["tcav", "--family", "digits-cnn", "--version", v, "--target", "7",
                     "--concepts", "watermark,random-reference", "--json"]) == 0
        capsys.readouterr()
    rc = main(["drift", "--family", "digits-cnn", "--base", "1", "--new", "2", "--json", "--limit", "24",
               "--methods", "saliency,gradcam", "--ig-steps", "16"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    wm = [d for d in out["concepts"] if d["concept"] == "watermark"]
    assert len(wm) == 2, out["concepts"]
    for d in wm:
        assert d["base_score"] is not None and d["new_score"] is not None
        assert d["new_significant"] is True and d["base_significant"] is False
        assert d["flagged"] and "became significant" in d["reason"]
    assert any(f.startswith("TCAV watermark") for f in out["flags"])
    rr = [d for d in out["concepts"] if d["concept"] == "random-reference"]
    assert rr and not any(d["new_significant"] for d in rr)
