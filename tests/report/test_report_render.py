"""Report rendering without a database: a hand-built document becomes a PDF with every section, the
regulatory mapping, figures and missing-result notes; counted pages match the file."""

from __future__ import annotations

import re

import numpy as np
import pytest

from audit.report import (
    ANNEX_IV,
    SECTIONS,
    Figure,
    Finding,
    ManifestEntry,
    ReportDocument,
    ReportThresholds,
    Section,
    Table,
    mapping_rows,
    render_pdf,
    safe_text,
)
from audit.report import figures as figs


def _doc(sections: list[Section]) -> ReportDocument:
    return ReportDocument(
        family="fam", version="7", task="image-classification", model_sha256="ab" * 32,
        created_at="2025-01-02T03:04:05+00:00", author="Grace → Hopper", status="draft",
        findings=[Finding("Performance", "accuracy >= 0.90", "pass", "accuracy 0.9512", "performance"),
                  Finding("Bias", "gap <= 0.10", "missing", "no stored bias audit", "bias")],
        sections=sections, manifest=[ManifestEntry("model", 1, "ab" * 32, "fam 7 artifact")],
        library_versions={"torch": "x"})


def test_rendered_pdf_holds_sections_mapping_figures_and_missing_notes(tmp_path, pdf):
    g = np.random.default_rng(0)
    grid = figs.explanation_grid([g.random((1, 16, 16)), g.random((3, 16, 16))],
                                 [{"ig": g.random((16, 16)), "cam": g.random((16, 16))}] * 2, ["a", "b"], ["ig", "cam"])
    assert grid[:8] == b"\x89PNG\r\n\x1a\n"
    sections = []
    for spec in SECTIONS[1:]:
        sec = Section(spec.key, spec.title)
        sec.text(f"Body of {spec.key} with ρ ≥ 0.5.")
        sections.append(sec)
    sections[0].add(Table(["a", "b"], [[1, 0.123456], [None, True]], caption="A small table."))
    sections[1].add(Figure(grid, "An explanation grid."))
    sections[2].lack("Nothing stored.", "run the thing.")
    rendered = render_pdf(_doc(sections))
    path = tmp_path / "r.pdf"
    path.write_bytes(rendered.pdf)
    assert rendered.pages == len(re.findall(rb"/Type /Page[^s]", rendered.pdf))
    flat = pdf.flat(path)
    for i, spec in enumerate(SECTIONS, start=1):
        assert f"{i}. {spec.title}" in flat
    assert "ab" * 32 in flat and "Grace -> Hopper" in flat and "rho >= 0.5" in flat
    assert "0.1235" in flat and "MISSING: Nothing stored. To produce it: run the thing." in flat
    assert "IV.6 Relevant changes through the lifecycle" in flat and "Validation: ongoing monitoring" in flat
    assert "1 pass, 0 fail, 0 for information, 1 missing" in flat


def test_mapping_and_thresholds_are_complete():
    rows = mapping_rows()
    assert len(rows) == len(SECTIONS) and all(r[2] and r[3] for r in rows)
    assert all(ref in ANNEX_IV for s in SECTIONS for ref in s.annex_iv)
    with pytest.raises(ValueError, match="min_accuracy"):
        ReportThresholds(min_accuracy=1.5)
    with pytest.raises(ValueError, match="status"):
        Finding("a", "b", "great", "c", "d")  # type: ignore[arg-type]
    assert safe_text("a → b ≤ c ✓ 中") == "a -> b <= c yes ?"


def test_figures_are_png_with_content():
    from io import BytesIO

    from PIL import Image

    pngs = [figs.curves([0, 0.5, 1], {"ig": [1, 0.4, 0.1], "random": [1, 0.8, 0.5]}, title="t", xlabel="x",
                        ylabel="y", reference="random"),
            figs.sanity_lines(["fc", "conv"], {"ig": [0.4, 0.1]}, 0.5),
            figs.bars_with_ci(["A", "B"], [0.9, 0.6], [0.8, 0.4], [0.95, 0.75], title="t", ylabel="acc"),
            figs.grouped_bars(["ig", "cam"], {"rho": [0.9, None], "iou": [0.5, 0.4]}, title="t", ylabel="y"),
            figs.confusion_matrix(np.eye(3, dtype=int) * 4, ["a", "b", "c"])]
    for png in pngs:
        img = np.asarray(Image.open(BytesIO(png)).convert("L"), dtype=np.float32)
        assert img.std() > 5
    with pytest.raises(ValueError, match="shape"):
        figs.explanation_grid([np.zeros((1, 8, 8))], [{"m": np.zeros((4, 4))}], ["r"], ["m"])
