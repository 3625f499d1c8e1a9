"""A text model gets a report too: token attributions instead of image figures (and it says so), the
stored text probe checked against its threshold, and drift of token attributions against the parent."""

from __future__ import annotations

from audit.services.core.registry import get_version
from audit.services.analyses.reports.service import generate_report, report_bytes


def test_text_model_report(tiny_text_reports, tmp_path, pdf):
    probe = tiny_text_reports.summary
    info = generate_report("notes", "2", author="QA")
    name, data = report_bytes(info["id"])
    path = tmp_path / name
    path.write_bytes(data)
    flat = pdf.flat(path)
    assert get_version("notes", "2")["sha256"] in flat
    assert "image-only figures" in flat and "skipped" in flat
    assert "Most influential words" in flat and "[CLS]" not in flat.split("Most influential words")[1][:200]
    assert f"flip rate {probe['flip_rate']:.4f}" in flat and "text probe flip rate <= 0.05" in flat
    assert "Version 2 compared with 1 on 6 samples of notes-ref" in flat
    statuses = {f["check"]: f["status"] for f in info["findings"]}
    assert statuses["text probe flip rate <= 0.05"] == ("pass" if probe["flip_rate"] <= 0.05 else "fail")
    assert statuses["IG completeness gap"] == "info"
    # ERASER faithfulness of the report's token attributions, by method label, its paper cited once.
    assert statuses["ERASER comprehensiveness / sufficiency"] == "info"
    assert "ERASER faithfulness on the" in flat and "Comprehensiveness Sufficiency" in flat
    refs = flat.split("References: the publication")[0]
    assert refs.count("DeYoung") == 1 and "ERASER: A Benchmark" in refs, refs[-800:]
    assert "Gradient × Input" in flat or "Gradient x Input" in flat
    pages = pdf.page_images(path, tmp_path)
    assert len(pages) == info["pages"] and all(p.std() > 8 for p in pages)
