"""The demo's digits-cnn version 2 report: every section, the model hash, a recorded metric, the drift
against version 1 flagged, pages that are not blank, and the concept test that exposes the shortcut."""

from __future__ import annotations

import hashlib
import re

from audit.services.core.registry import get_version
from audit.services.analyses.reports.service import generate_report, report_bytes

from .test_report_service import SECTION_TITLES


def _four(v: float) -> str:
    return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"


def test_demo_report_for_the_shortcut_version(in_demo, tmp_path, pdf):
    info = generate_report("digits-cnn", "2", author="Demo auditor")
    name, data = report_bytes(info["id"])
    path = tmp_path / name
    path.write_bytes(data)
    assert hashlib.sha256(data).hexdigest() == info["sha256"]
    version = get_version("digits-cnn", "2")
    flat = pdf.flat(path)
    assert version["sha256"] in flat and "Demo auditor" in flat
    for title in SECTION_TITLES:
        assert title in flat, title
    assert f"{version['metrics']['reference_accuracy_watermarked']:.4f}" in flat
    assert "Version 2 compared with 1" in flat
    statuses = {f["area"]: f["status"] for f in info["findings"]}
    assert statuses["Drift"] == "fail"
    pages = pdf.page_images(path, tmp_path)
    assert len(pages) == info["pages"] >= 8 and all(p.std() > 8 for p in pages)


def test_demo_report_lists_the_watermark_concept_test(demo_concept_test, in_demo, tmp_path, pdf):
    info = generate_report("digits-cnn", "2", compute_missing=False)
    name, data = report_bytes(info["id"])
    path = tmp_path / name
    path.write_bytes(data)
    text = pdf.text(path)
    concepts_part = text[text.index("Concept tests (TCAV)", text.index("Executive summary") + 200):]
    layers = demo_concept_test.summary["concepts"]["watermark"]["layers"]
    assert len(layers) == 2
    for layer, cell in layers.items():
        # One table line per layer: concept, layer, score, random CAVs, magnitude, p, corrected p, significant.
        line = next((ln for ln in concepts_part.splitlines() if re.search(rf"\bwatermark\s+{re.escape(layer)}\b", ln)),
                    None)
        assert line is not None, f"no watermark row at {layer}"
        cells = line.split()
        assert cells[2:9] == [_four(cell["score"]), f"{cell['random_mean']:.3f}", "+/-", f"{cell['random_std']:.3f}",
                              _four(cell["magnitude"]), _four(cell["p_value"]), _four(cell["p_value_corrected"])]
        assert cells[9] == "yes"
    # The executive summary counts the significant tests and names them (its table wraps the names).
    summary_part = text[text.index("Executive summary"):text.index("Concept tests (TCAV)", text.index("Executive summary") + 200)]
    assert "2 of 4 concept/layer tests significant:" in re.sub(r"\s+", " ", summary_part)
    assert all(f"watermark@{layer}" in summary_part for layer in layers)
    detail = next(f["detail"] for f in info["findings"] if f["area"] == "Concept tests")
    assert detail == "2 of 4 concept/layer tests significant: " + ", ".join(f"watermark@{layer}" for layer in layers)
