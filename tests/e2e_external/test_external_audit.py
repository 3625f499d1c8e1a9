"""The full audit from the command line on data and models the demo did not make (issue 12, "Must show"):
MobileNetV3 trained on generated shapes with a planted corner patch, an HF ViT from a config, a reference
set and a concept set imported from files. Marked slow: training and two full audits take about a minute."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess

import pytest

from tests.e2e_external.conftest import CNN, CONCEPT, REF, VIT, _cli
from tests.e2e_external import shapes as S

pytestmark = pytest.mark.slow
# Budgets as small as the checks allow (the section statuses do not depend on them).
BUDGET = ["--explain-limit", "8", "--cf-limit", "2", "--cf-steps", "20", "--tcav-runs", "16", "--tcav-set-size", "24",
          "--n-boot", "50", "--quiet"]


def test_the_external_models_and_data_were_brought_in_as_a_new_user_would(external):
    acc = external["accuracy"]
    # the shortcut is real: version 2 calls patched circles and squares triangles, version 1 does not
    assert acc["2"]["patched_non_triangles"] < 0.2 < acc["1"]["patched_non_triangles"], acc
    assert acc["1"]["reference"] > 0.6, acc
    listed = {d["name"]: d for d in json.loads(_cli("dataset", "list", "--json"))}
    assert listed[REF]["samples"] == 90 and listed[REF]["groups"] == ["patch", "site"] and listed[REF]["regions"]
    assert listed[CONCEPT]["samples"] == 40
    models = {m["family"]: m for m in json.loads(_cli("models", "--json"))}
    assert [v["version"] for v in models[CNN]["versions"]] == ["1", "2"]
    assert models[VIT]["versions"][0]["labels"] == S.CLASSES


def _pdf_text(path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("poppler's pdftotext is not installed")
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def test_full_audit_of_the_patched_cnn_finds_the_patch(external, tmp_path):
    from audit.report.render import _cell_text
    from audit.services.analyses.concepts.service import stored_concept_tests
    from audit.services.core.runs import stored_analyses

    out = tmp_path / "cnn.pdf"
    res = json.loads(_cli("audit", "--family", CNN, "--version", "2", "--dataset", REF, "--concepts", CONCEPT,
                          "--out", str(out), "--json", *BUDGET))
    # the data allows every analysis (labels, two group columns, regions, a concept set, a parent version)
    assert set(res["sections"]) == {"performance", "bias", "concepts", "quality", "counterfactuals", "drift"}
    assert "MISSING" not in res["sections"].values(), res["sections"]
    assert res["report_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()

    # the concept test ran on the class the "patch" column marks most often (triangle) and finds the patch
    tests = stored_concept_tests(CNN, "2")
    assert [t.target for t in tests] == [S.PATCHED_CLASS]
    cells = [c for c in tests[0].cells if c.concept == CONCEPT]
    assert any(c.significant and c.score > 0.8 for c in cells), [(c.layer, c.score, c.p_value_corrected) for c in cells]
    best = min(cells, key=lambda c: c.p_value_corrected)
    print(f"external TCAV {CNN} 2: " + "; ".join(f"{c.layer} score {c.score:.3f} p {c.p_value:.3g} "
                                                 f"p_corr {c.p_value_corrected:.3g}" for c in cells))

    # the bias audit covers both group columns; drift against version 1 is flagged
    bias = stored_analyses(CNN, "2", "bias")
    assert sorted(tuple(r.parameters["attributes"]) for r in bias) == [("patch",), ("site",)]
    assert res["sections"]["drift"] == "FAIL"
    assert any(f["area"] == "Drift" and "flag" in f["detail"] for f in res["findings"])

    # localisation: the maps of the patched samples concentrate on the declared patch box, far above chance
    loc = next(f for f in res["findings"] if "localisation" in f["check"])
    ratio = float(re.search(r"\(([0-9.]+)x an even map\)", loc["detail"]).group(1))
    assert ratio > 2.0, loc["detail"]

    # the PDF prints the concept row with its numbers, the corrected p-value whole
    text = _pdf_text(out)
    row = next((line for line in text.splitlines() if line.split()[:2] == [CONCEPT, best.layer]), None)
    assert row is not None, text[-3000:]
    for value in (best.score, best.p_value, best.p_value_corrected):
        assert _cell_text(float(value)) in row.split(), (value, row)
    assert "yes" in row.split()


@pytest.mark.parametrize("family, applies, skipped", [
    (CNN, ["saliency", "gradcam", "integrated_gradients"], ["cam", "attention_rollout"]),
    (VIT, ["saliency", "gradcam", "attention_rollout"], ["cam"]),
])
def test_methods_that_do_not_apply_are_skipped_with_their_reason_and_the_rest_run(external, family, applies, skipped):
    """MobileNetV3's head is not pooling-then-linear (a hidden layer follows the pooling) and a CNN has no
    attention; the ViT reads its class token, not a pooled map. The other methods still give maps."""
    from audit.services.core.datasets import load_image_samples
    from audit.services.analyses.explanations.service import explain_image

    key = load_image_samples(REF).keys[1]
    exp = explain_image(family, "2" if family == CNN else "1", methods=applies + skipped, dataset=REF, sample_key=key,
                        options={"ig_steps": 8})
    assert sorted(exp.maps) == sorted(applies)
    assert sorted(exp.skipped) == sorted(skipped)
    assert all(len(reason) > 20 for reason in exp.skipped.values()), exp.skipped
    for m in applies:
        assert exp.maps[m].attribution.shape[-2:] == (S.SIZE if family == CNN else 32,) * 2
