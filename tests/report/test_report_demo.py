"""The demo's digits-cnn version 2 report: every section, the model hash, a recorded metric, the drift
against version 1 flagged, and pages that are not blank."""

from __future__ import annotations

import hashlib

from audit.services.registry import get_version
from audit.services.reports import generate_report, report_bytes

from .test_report_service import SECTION_TITLES


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
